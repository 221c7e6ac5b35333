//! One client connection: read requests (pipelined), execute each, write replies. RESP2 by
//! default, RESP3 after `HELLO 3`. Output is bounded: large replies are produced in chunks
//! and flushed as they are made.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sluice_engine::{Db, Lsn};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::client::ClientHandle;
use crate::cmd::pubsub::PubSubCommand;
use crate::cmd::stream::{write, StreamCommand};
use crate::cmd::{self, Command, Ctx, Effects, Outcome};
use crate::pubsub::PublishRun;
use crate::reply::{Protocol, Reply};
use crate::resp::{Limits, Parser};
use crate::server::{lock, EngineGuard, Shared};

/// Flush the output buffer once it holds this much, before executing more pipelined requests.
const FLUSH_AT: usize = 64 * 1024;
/// Read at most this much per read call.
const READ_CHUNK: usize = 16 * 1024;
/// Most requests executed under one engine lock before it is released for other clients.
const MAX_BATCH: usize = 64;
/// Why a client over its client-output-buffer-limit (normal class) is closed.
const OUTPUT_LIMIT: &str = "client scheduled to be closed for overcoming of output buffer limits";
/// Why a subscriber cut off by the pub/sub hub is closed.
const CUT_OFF: &str = "pub/sub output buffer limit reached";

/// CLIENT REPLY modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    /// Skip the reply of the next command only.
    Skip,
    /// Set while executing the command after CLIENT REPLY SKIP.
    Skipping,
}

/// A queued MULTI transaction.
#[derive(Debug, Default)]
pub struct Multi {
    pub queued: Vec<(Command, &'static cmd::table::Spec, Vec<Bytes>)>,
    /// A command failed to queue: EXEC answers EXECABORT.
    pub aborted: bool,
}

/// Per-connection state that commands may change.
pub struct ClientState {
    pub id: u64,
    pub handle: Arc<ClientHandle>,
    pub proto: Protocol,
    pub db: Db,
    pub authenticated: bool,
    pub multi: Option<Multi>,
    pub watched: Vec<(Db, Bytes)>,
    pub reply_mode: ReplyMode,
    pub pubsub: crate::pubsub::Session,
    /// Close once the current replies are written (QUIT, CLIENT KILL of self).
    pub close_after_reply: bool,
}

impl ClientState {
    /// Whether the client is in RESP2 subscribed mode (only pub/sub commands allowed).
    pub fn subscribed_resp2(&self) -> bool {
        self.proto == Protocol::Resp2
            && (self.pubsub.channels() + self.pubsub.patterns() + self.pubsub.shard_channels()) > 0
    }

    /// Drops every WATCH of this client.
    pub fn unwatch(&mut self, shared: &Shared) {
        if self.watched.is_empty() {
            return;
        }
        let mut watches = lock(&shared.watches);
        for key in self.watched.drain(..) {
            if let Some(set) = watches.get_mut(&key) {
                set.remove(&self.id);
                if set.is_empty() {
                    watches.remove(&key);
                }
            }
        }
        self.handle.dirty_cas.store(false, Ordering::SeqCst);
        lock(&self.handle.info).watch = 0;
    }

    /// Updates what CLIENT LIST shows.
    fn publish_info(&self) {
        let mut info = lock(&self.handle.info);
        info.db = self.db;
        info.resp = match self.proto {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        };
        info.sub = self.pubsub.channels();
        info.psub = self.pubsub.patterns();
        info.ssub = self.pubsub.shard_channels();
        info.omem = usize::try_from(self.pubsub.queued_bytes()).unwrap_or(usize::MAX);
        info.multi = self
            .multi
            .as_ref()
            .map_or(-1, |m| i64::try_from(m.queued.len()).unwrap_or(i64::MAX));
        info.watch = self.watched.len();
    }
}

/// Wall-clock Unix time in ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A client's socket, split so that publishers can write to it while the connection is
/// parked (see [`crate::pubsub`]). Reads go through `AsyncRead`, which makes one `recv` per
/// request where `readable()` + `try_read` would make a second that finds nothing.
struct Socket {
    read: OwnedReadHalf,
    write: Arc<OwnedWriteHalf>,
}

impl Socket {
    /// Writes all of `buf`, waiting while the socket is full.
    async fn write_all(&self, mut buf: &[u8]) -> std::io::Result<()> {
        while !buf.is_empty() {
            match self.write.try_write(buf) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.write.writable().await?
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Serves one client until it disconnects, is killed, errs or the server shuts down.
pub async fn serve(shared: Arc<Shared>, socket: TcpStream, handle: Arc<ClientHandle>) {
    let id = handle.id;
    let (read, write) = socket.into_split();
    let mut socket = Socket {
        read,
        write: Arc::new(write),
    };
    let pubsub = crate::pubsub::Session::new(&shared, id);
    pubsub.set_direct(socket.write.clone());
    let authenticated = shared.config().requirepass.is_none();
    let mut state = ClientState {
        id,
        handle: handle.clone(),
        proto: Protocol::Resp2,
        db: 0,
        authenticated,
        multi: None,
        watched: Vec::new(),
        reply_mode: ReplyMode::On,
        pubsub,
        close_after_reply: false,
    };
    state.publish_info();
    let mut conn = Conn {
        last_append_wait: 0,
        cut_off: state.pubsub.cut_off_signal(),
        shared: shared.clone(),
        input: BytesMut::with_capacity(READ_CHUNK),
        out: BytesMut::new(),
        parser: Parser::new(),
        subscribed: false,
        barrier: Lsn(0),
        unwritten: 0,
        busy: false,
    };
    let result = conn.run(&mut socket, &mut state).await;
    // From here on nothing may be written to the socket but what this task writes.
    state.pubsub.unpark();
    conn.set_busy(false);
    if let Err(why) = result {
        if !why.is_empty() {
            crate::log(&format!("client {id} closed: {why}"));
        }
    }
    state.unwatch(&shared);
    state.pubsub.clear();
    shared.clients.remove(id);
}

struct Conn {
    shared: Arc<Shared>,
    /// `Shared::append_waits` at this connection's last wait for its appends.
    last_append_wait: u64,
    /// Completes when the pub/sub hub cuts this client off (output buffer limit): a flush
    /// to a client that does not read must not wait forever.
    cut_off: crate::pubsub::CutOffSignal,
    input: BytesMut,
    out: BytesMut,
    parser: Parser,
    /// The client has subscriptions (pub/sub output class instead of normal).
    subscribed: bool,
    /// Nothing in `out` may reach the client before this Lsn is durable: the replies of a
    /// pipelined batch share one wait, and a read never shows a write that could still be
    /// lost (Redis writes replies only after the event loop's AOF fsync).
    barrier: Lsn,
    /// Nothing in `out` may reach the client before the engine has written this many
    /// buffered appends (write-behind): a reply may reflect any append made before it.
    unwritten: u64,
    /// Counted in `Shared::busy_clients`.
    busy: bool,
}

/// A connection that saw more than this many waits of other connections for their appends
/// since its own last wait yields before writing (see `Conn::await_written`). With one
/// other writer taking turns, yielding cost more than the write it saved.
const WRITE_COMPANY: u64 = 2;

/// A publisher whose connection waited at least this long for a batch of PUBLISHes is not
/// publishing as fast as it is answered (that wait is a round trip, tens of microseconds
/// here): the batch's deliveries are written at once (see `Session::set_input_waited`).
const PUBLISHER_IDLE: Duration = Duration::from_millis(1);

/// Why the loop stopped; an empty string means a normal close.
type Closed = String;

impl Conn {
    async fn run(&mut self, socket: &mut Socket, state: &mut ClientState) -> Result<(), Closed> {
        let shared = self.shared.clone();
        loop {
            // Execute every complete request already buffered.
            loop {
                match self.run_batch(state) {
                    Batch::Idle => {
                        // End of the pipelined batch: deliver to whom its PUBLISHes reached,
                        // after the reply if it can go now (Redis' order: the client can
                        // send its next requests meanwhile). Not if they found subscribers
                        // still holding this client's earlier messages: then the reply
                        // waits for those (`Session::catch_up`, below).
                        if state.pubsub.has_deliveries() && !state.pubsub.is_ahead() {
                            self.write_ready_reply(socket);
                        }
                        state.pubsub.wake_subscribers();
                        break;
                    }
                    Batch::More => {}
                    Batch::Flush => {
                        state.pubsub.wake_subscribers();
                        self.flush(socket).await?;
                    }
                    Batch::Close => {
                        self.flush(socket).await?;
                        return Ok(());
                    }
                    Batch::Step(step) => {
                        self.finish(socket, state, step).await?;
                        self.after_request(state);
                        if state.close_after_reply {
                            self.flush(socket).await?;
                            return Ok(());
                        }
                        if self.out.len() >= FLUSH_AT {
                            state.pubsub.wake_subscribers();
                            self.flush(socket).await?;
                        }
                    }
                    Batch::ParseError(e) => {
                        Stats::error(&shared, "ERR");
                        Reply::Error(e.reply_text()).encode(state.proto, &mut self.out);
                        self.flush(socket).await?;
                        return Err(format!("{e}"));
                    }
                }
            }
            // Subscribers still waiting to take this client's earlier messages get to run
            // before its replies go out: a closed-loop publisher's next PUBLISHes then wait
            // in its own process, not in this socket as if already sent.
            state.pubsub.catch_up().await;
            self.flush(socket).await?;
            // Waiting with nothing to write, a subscriber parks: publishers write its messages
            // to its socket themselves until it wakes up.
            let parked = state.pubsub.is_subscribed() && self.park(socket, state).await?;
            // The query buffer limit counts unparsed input plus a request's collected args.
            let limit = shared.config().client_query_buffer_limit;
            let held = (self.input.len() + self.parser.pending_bytes()) as u64;
            if held > limit {
                return Err("closing client that reached max query buffer length".into());
            }
            {
                let mut info = lock(&state.handle.info);
                info.qbuf = self.input.len();
                info.qbuf_free = self.input.capacity() - self.input.len();
            }
            let idle = {
                let timeout = shared.config().timeout;
                // Redis' CLIENT_PUBSUB: any subscription, shard channels included.
                let exempt = state.pubsub.is_subscribed();
                (timeout != 0 && !exempt).then(|| Duration::from_secs(timeout))
            };
            // No timer at all without an idle timeout: registering one per loop turn costs a
            // subscriber more than the message it wakes up for.
            let idle_timeout = async move {
                match idle {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            self.input.reserve(READ_CHUNK);
            self.set_busy(false);
            // When the read first found no input: a publisher that then waited long for it
            // is not running ahead of its deliveries. The clock is read only by a read that
            // goes to sleep anyway.
            let mut idle_since: Option<Instant> = None;
            let mut read = std::pin::pin!(socket.read.read_buf(&mut self.input));
            let read = std::future::poll_fn(|cx| {
                let polled = std::future::Future::poll(read.as_mut(), cx);
                if polled.is_pending() && idle_since.is_none() {
                    idle_since = Some(Instant::now());
                }
                polled
            });
            tokio::select! {
                n = read => {
                    if parked {
                        state.pubsub.unpark();
                    }
                    let waited = idle_since.is_some_and(|t| t.elapsed() >= PUBLISHER_IDLE);
                    state.pubsub.set_input_waited(waited);
                    let n = n.map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Ok(());
                    }
                    self.set_busy(true);
                    shared.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    // CLIENT LIST `idle`: since the last read, as Redis counts it (once per
                    // read, not per pipelined request).
                    state.handle.last_interaction_ms.store(now_ms(), Ordering::Relaxed);
                }
                ready = state.pubsub.ready() => {
                    // Taking unparks.
                    if !ready || self.take_pubsub(state).is_err() {
                        return Err(CUT_OFF.into());
                    }
                }
                _ = state.handle.kill_notify.notified() => {}
                _ = shared.shutdown.wait() => {}
                _ = idle_timeout => return Err(String::new()),
            }
            if parked {
                state.pubsub.unpark();
            }
        }
    }

    /// Parks a subscriber's connection (see [`crate::pubsub::Session::park`]) after writing
    /// whatever is queued for it. False if it has nothing to park for.
    async fn park(&mut self, socket: &mut Socket, state: &ClientState) -> Result<bool, Closed> {
        loop {
            match state.pubsub.park() {
                Err(()) => return Err(CUT_OFF.into()),
                Ok(true) => return Ok(true),
                Ok(false) => {
                    if !self.take_pubsub(state).map_err(|()| CUT_OFF)? {
                        return Ok(false);
                    }
                    self.flush(socket).await?;
                }
            }
        }
    }

    /// Writes the replies of a batch of PUBLISHes before their deliveries, if they may go
    /// now (nothing to wait for, within the output limit), as far as the socket takes them
    /// without waiting. `flush` writes the rest.
    fn write_ready_reply(&mut self, socket: &Socket) {
        let limit = self.shared.config().output_normal;
        let n = self.out.len() as u64;
        let within_limit = self.subscribed || !(limit.over_hard(n) || limit.over_soft(n));
        if n == 0 || self.barrier != Lsn(0) || self.unwritten != 0 || !within_limit {
            return;
        }
        if let Ok(n) = socket.write.try_write(&self.out) {
            self.shared
                .stats
                .net_output_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
            bytes::Buf::advance(&mut self.out, n);
        }
    }

    /// The buffered replies acknowledge writes that may not survive: answers with `err`
    /// instead and closes, so the client treats them as indeterminate.
    async fn fail_unacknowledged(&mut self, socket: &mut Socket, err: Reply) -> Result<(), Closed> {
        self.out.clear();
        let text = match &err {
            Reply::Error(text) => text.clone(),
            _ => String::new(),
        };
        err.encode(crate::reply::Protocol::Resp2, &mut self.out);
        let _ = socket.write_all(&self.out).await;
        self.out.clear();
        Err(text)
    }

    fn set_busy(&mut self, busy: bool) {
        if busy != self.busy {
            self.busy = busy;
            let counter = &self.shared.busy_clients;
            if busy {
                counter.fetch_add(1, Ordering::Relaxed);
            } else {
                counter.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn limits(&self, state: &ClientState) -> Limits {
        Limits {
            max_bulk: self.shared.config().proto_max_bulk_len,
            unauthenticated: !state.authenticated,
        }
    }

    async fn flush(&mut self, socket: &mut Socket) -> Result<(), Closed> {
        if self.out.is_empty() && self.unwritten == 0 {
            return Ok(());
        }
        // With nothing to send (CLIENT REPLY OFF), the appends are still written now, as
        // Redis writes its AOF buffer every loop turn: a kill -9 does not lose them.
        if let Err(e) = self.await_written().await {
            self.barrier = Lsn(0);
            return self
                .fail_unacknowledged(socket, cmd::engine_error(&e))
                .await;
        }
        if self.out.is_empty() {
            return Ok(());
        }
        if self.barrier != Lsn(0) {
            let barrier = std::mem::take(&mut self.barrier);
            if let Some(err) = self.await_durable(barrier).await {
                return self.fail_unacknowledged(socket, err).await;
            }
        }
        let n = self.out.len();
        // client-output-buffer-limit, normal class (subscribers are bounded by the hub):
        // over the hard limit closes at once; over the soft limit for soft_seconds of a
        // stalled write closes too.
        let limit = self.shared.config().output_normal;
        let normal = !self.subscribed;
        if normal && limit.over_hard(n as u64) {
            return Err(OUTPUT_LIMIT.into());
        }
        let soft = normal && limit.over_soft(n as u64);
        let stall = async move {
            if soft {
                tokio::time::sleep(Duration::from_secs(limit.soft_seconds)).await
            } else {
                std::future::pending().await
            }
        };
        let written = tokio::select! {
            written = socket.write_all(&self.out) => written.map_err(|e| e.to_string()),
            _ = self.cut_off.wait() => Err(CUT_OFF.into()),
            _ = stall => Err(OUTPUT_LIMIT.into()),
        };
        written?;
        self.shared
            .stats
            .net_output_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
        self.out.clear();
        // Give back memory after a big reply.
        if self.out.capacity() > 4 * FLUSH_AT {
            self.out = BytesMut::new();
        }
        Ok(())
    }

    /// Executes buffered requests, as many as it can under one engine lock: a pipelined
    /// batch pays for the lock (and its hand-over between worker threads) once, not once per
    /// command. Stops at the end of the input, at `MAX_BATCH` commands, when the output must
    /// be flushed, or at a request that has to wait (EXEC, a blocked read, a chunked reply).
    /// Keyspace events and blocked readers are served when the lock is released; a batch
    /// ends early when either is due, so they go out in command order.
    fn run_batch(&mut self, state: &mut ClientState) -> Batch {
        let shared = self.shared.clone();
        let notifying = || {
            let flags = &shared.config().notify_keyspace_events;
            flags.keyspace || flags.keyevent
        };
        let mut notify = notifying();
        let mut engine = None;
        let mut effects = Effects::default();
        let mut executed = 0;
        // Consecutive XADDs to one key, written together when the run ends.
        let mut run = Vec::new();
        // Consecutive PUBLISHes to one channel, the same way.
        let mut publishes = PublishRun::default();
        let batch = loop {
            if state.handle.is_killed() || shared.shutdown.is_triggered() {
                break Batch::Close;
            }
            let limits = self.limits(state);
            let args = match self.parser.next(&mut self.input, &limits) {
                Ok(Some(args)) => args,
                Ok(None) => break Batch::Idle,
                Err(e) => break Batch::ParseError(e),
            };
            let parsed = match cmd::parse(&args) {
                Ok((Command::Stream(StreamCommand::Add(add)), spec))
                    if self.joins_xadd_run(&shared, state, &add, notify) =>
                {
                    if !publishes.is_empty() {
                        self.run_publishes(&shared, state, &mut publishes, &mut engine);
                    }
                    if run.first().is_some_and(|r: &write::Add| r.key != add.key) {
                        self.run_xadds(&shared, state, &mut run, &mut engine, &mut effects);
                    }
                    self.note_request(state, Some(spec), &args);
                    run.push(add);
                    executed += 1;
                    if executed >= MAX_BATCH {
                        break Batch::More;
                    }
                    continue;
                }
                Ok((
                    Command::PubSub(PubSubCommand::Publish {
                        kind,
                        channel,
                        message,
                    }),
                    spec,
                )) if Self::joins_publish_run(state) => {
                    if !run.is_empty() {
                        self.run_xadds(&shared, state, &mut run, &mut engine, &mut effects);
                    }
                    if !publishes.admits(kind, &channel) {
                        self.run_publishes(&shared, state, &mut publishes, &mut engine);
                    }
                    self.note_request(state, Some(spec), &args);
                    publishes.push(kind, channel, message);
                    executed += 1;
                    if executed >= MAX_BATCH {
                        break Batch::More;
                    }
                    continue;
                }
                other => other,
            };
            if !run.is_empty() {
                self.run_xadds(&shared, state, &mut run, &mut engine, &mut effects);
            }
            if !publishes.is_empty() {
                self.run_publishes(&shared, state, &mut publishes, &mut engine);
            }
            let config = parsed.as_ref().is_ok_and(|(_, spec)| spec.name == "config");
            let step = self.start(&shared, state, args, parsed, &mut engine, &mut effects);
            self.after_request(state);
            if config {
                // CONFIG SET may have changed notify-keyspace-events.
                notify = notifying();
            }
            if !matches!(step, Step::Done) {
                break Batch::Step(step);
            }
            if state.close_after_reply {
                break Batch::Close;
            }
            if self.out.len() >= FLUSH_AT {
                break Batch::Flush;
            }
            executed += 1;
            let wakes_readers = effects.wakes_readers() && shared.blocking.blocked_clients() > 0;
            if executed >= MAX_BATCH || wakes_readers || (notify && !effects.events.is_empty()) {
                break Batch::More;
            }
        };
        if !run.is_empty() {
            self.run_xadds(&shared, state, &mut run, &mut engine, &mut effects);
            self.after_request(state);
        }
        if !publishes.is_empty() {
            self.run_publishes(&shared, state, &mut publishes, &mut engine);
            self.after_request(state);
        }
        drop(engine);
        self.after_execute(state, &effects);
        batch
    }

    /// Whether a parsed XADD may wait in a run: `start` would execute it at once (no
    /// MULTI, authenticated, not in RESP2 subscribed mode, replies on), and nothing must
    /// happen between it and the next command (trimming reads the stream; keyspace events
    /// and blocked readers are served in command order).
    fn joins_xadd_run(
        &self,
        shared: &Shared,
        state: &ClientState,
        add: &write::Add,
        notify: bool,
    ) -> bool {
        state.multi.is_none()
            && state.authenticated
            && state.reply_mode == ReplyMode::On
            && !state.subscribed_resp2()
            && add.trim.is_none()
            && !add.nomkstream
            && !notify
            && shared.blocking.blocked_clients() == 0
    }

    /// Whether a parsed PUBLISH may wait in a run: `start` would execute it at once (no
    /// MULTI, authenticated, replies on), and the client subscribes to nothing (its own
    /// messages would otherwise have to precede each reply, and RESP2 subscribed mode
    /// refuses PUBLISH).
    fn joins_publish_run(state: &ClientState) -> bool {
        state.multi.is_none()
            && state.authenticated
            && state.reply_mode == ReplyMode::On
            && !state.pubsub.is_subscribed()
    }

    /// Executes a run of PUBLISHes to one channel together and writes their replies in
    /// order.
    fn run_publishes(
        &mut self,
        shared: &Arc<Shared>,
        state: &mut ClientState,
        run: &mut PublishRun,
        engine: &mut Option<EngineGuard<'_>>,
    ) {
        // Pub/sub needs no engine: run it outside the engine lock.
        *engine = None;
        let name = run.command_name();
        let started = Instant::now();
        let counts = state.pubsub.publish_run(run);
        Stats::calls(shared, name, counts.len(), started.elapsed(), 0);
        for count in counts {
            self.reply(state, Reply::Int(count as i64));
        }
    }

    /// Executes a run of XADDs with one engine call and writes their replies in order.
    fn run_xadds<'s>(
        &mut self,
        shared: &'s Arc<Shared>,
        state: &mut ClientState,
        run: &mut Vec<write::Add>,
        engine: &mut Option<EngineGuard<'s>>,
        effects: &mut Effects,
    ) {
        let run = std::mem::take(run);
        let started = Instant::now();
        let engine = engine.get_or_insert_with(|| shared.engine());
        if let Some(why) = engine.stats().poisoned {
            for _ in 0..run.len() {
                Stats::rejected(shared, "xadd");
                self.reply(state, cmd::misconf(&why));
            }
            return;
        }
        let replies = in_ctx(
            shared,
            (state.db, state.id, false),
            engine,
            effects,
            |ctx| {
                if let Some(key) = run.first().map(|c| c.key.clone()) {
                    if crate::expiry::expire_if_needed(
                        ctx.engine,
                        ctx.db,
                        &key,
                        ctx.now_ms,
                        ctx.effects,
                    ) {
                        crate::server::Stats::incr(&shared.stats.expired_keys);
                    }
                }
                write::add_run(run, ctx)
            },
        );
        self.hold_until_durable(effects.lsn);
        let failed = replies.iter().filter(|r| r.is_error()).count();
        Stats::calls(shared, "xadd", replies.len(), started.elapsed(), failed);
        for reply in replies {
            self.reply(state, reply);
        }
    }

    /// Per-request bookkeeping before execution: idle time, CLIENT LIST's `cmd`, and
    /// subscribers waiting on earlier PUBLISHes (only a run of PUBLISHes defers them).
    fn note_request(
        &self,
        state: &mut ClientState,
        spec: Option<&'static cmd::table::Spec>,
        args: &[Bytes],
    ) {
        let name = args.first().map_or(&[][..], |n| &n[..]);
        {
            // CLIENT LIST `cmd`, as Redis names it; pipelines repeat one name, so it is
            // compared before it is copied.
            let shown = cmd::table::display_name(spec, args);
            let mut info = lock(&state.handle.info);
            let last = info.last_cmd.as_str();
            let same = match shown {
                None => last == "NULL",
                Some((parent, None)) => last == parent,
                Some((parent, Some(sub))) => last
                    .strip_prefix(parent)
                    .and_then(|rest| rest.strip_prefix('|'))
                    .is_some_and(|rest| rest == sub),
            };
            if !same {
                info.last_cmd.clear();
                match shown {
                    None => info.last_cmd.push_str("NULL"),
                    Some((parent, sub)) => {
                        info.last_cmd.push_str(parent);
                        if let Some(sub) = sub {
                            info.last_cmd.push('|');
                            info.last_cmd.push_str(sub);
                        }
                    }
                }
            }
        }
        if !(name.eq_ignore_ascii_case(b"publish") || name.eq_ignore_ascii_case(b"spublish")) {
            state.pubsub.wake_subscribers();
        }
    }

    /// Bookkeeping after each request: CLIENT LIST fields and the output class.
    fn after_request(&mut self, state: &ClientState) {
        state.publish_info();
        self.subscribed =
            state.pubsub.channels() + state.pubsub.patterns() + state.pubsub.shard_channels() > 0;
    }

    /// The synchronous part of one request: checks, queueing in MULTI, execution (taking the
    /// engine lock into `engine` if it is not held yet), the reply. Effects accumulate in
    /// `effects` for the caller to publish once the lock is released. What must wait is
    /// returned as a [`Step`] for [`Conn::finish`].
    fn start<'s>(
        &mut self,
        shared: &'s Arc<Shared>,
        state: &mut ClientState,
        args: Vec<Bytes>,
        parsed: Result<(Command, &'static cmd::table::Spec), Reply>,
        engine: &mut Option<EngineGuard<'s>>,
        effects: &mut Effects,
    ) -> Step {
        if state.reply_mode == ReplyMode::Skip {
            state.reply_mode = ReplyMode::Skipping;
        } else if state.reply_mode == ReplyMode::Skipping {
            state.reply_mode = ReplyMode::On;
        }
        // The parser found the command's spec unless it refused the request; a refused
        // request may still name a known command (a wrong arity).
        let known = match &parsed {
            Ok((_, spec)) => Some(*spec),
            Err(_) => args.first().and_then(|name| cmd::table::lookup(name)),
        };
        self.note_request(state, known, &args);
        let (command, spec) = match parsed {
            Ok(ok) => ok,
            Err(reply) => {
                if let Some(multi) = state.multi.as_mut() {
                    multi.aborted = true;
                }
                if let Some(spec) = known {
                    Stats::rejected(shared, spec.name);
                }
                self.reply(state, reply);
                return Step::Done;
            }
        };
        if !state.authenticated && !spec.flags.contains(&"no_auth") {
            if let Some(multi) = state.multi.as_mut() {
                multi.aborted = true;
            }
            Stats::rejected(shared, spec.name);
            self.reply(
                state,
                Reply::Error("NOAUTH Authentication required.".to_string()),
            );
            return Step::Done;
        }
        if state.subscribed_resp2()
            && !matches!(
                spec.name,
                "subscribe"
                    | "psubscribe"
                    | "ssubscribe"
                    | "unsubscribe"
                    | "punsubscribe"
                    | "sunsubscribe"
                    | "ping"
                    | "quit"
                    | "reset"
            )
        {
            Stats::rejected(shared, spec.name);
            let full_name = match cmd::table::display_name(Some(spec), &args) {
                Some((parent, Some(sub))) => format!("{parent}|{sub}"),
                _ => spec.name.to_string(),
            };
            self.reply(state, crate::pubsub::subscribed_mode_error(&full_name));
            return Step::Done;
        }
        if let Some(multi) = state.multi.as_mut() {
            if !matches!(
                spec.name,
                "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
            ) {
                multi.queued.push((command, spec, args));
                self.reply(state, Reply::Simple("QUEUED".into()));
                return Step::Done;
            }
        }
        if let Command::Invalid(reply) = command {
            Stats::call(shared, spec.name, Instant::now(), true);
            self.reply(state, reply);
            return Step::Done;
        }
        if spec.name == "exec" {
            return Step::Exec;
        }
        let command = match command {
            Command::PubSub(c) => {
                // Pub/sub needs no engine: run it outside the engine lock.
                *engine = None;
                let started = Instant::now();
                let replies = cmd::pubsub::execute(c, &mut state.pubsub);
                let failed = replies.iter().any(Reply::is_error);
                for r in replies {
                    self.reply(state, r);
                }
                Stats::call(shared, spec.name, started, failed);
                return Step::Done;
            }
            other => other,
        };
        let started = Instant::now();
        let engine = engine.get_or_insert_with(|| shared.engine());
        if spec.flags.contains(&"write") {
            if let Some(why) = engine.stats().poisoned {
                Stats::rejected(shared, spec.name);
                self.reply(state, cmd::misconf(&why));
                return Step::Done;
            }
        }
        let (db, id) = (state.db, state.id);
        let outcome = in_ctx(shared, (db, id, false), engine, effects, |ctx| {
            expire_keys(shared, ctx.engine, db, spec, &args, ctx.now_ms, ctx.effects);
            execute(command, ctx, state, shared)
        });
        let outcome = match outcome {
            Execution::Outcome(o) => o,
            Execution::Shutdown => {
                shared.shutdown.trigger();
                state.close_after_reply = true;
                return Step::Done;
            }
            Execution::Reload => return Step::Reload,
            Execution::Replies(replies) => {
                for r in replies {
                    self.reply(state, r);
                }
                Stats::call(shared, spec.name, started, false);
                return Step::Done;
            }
        };
        self.hold_until_durable(effects.lsn);
        match outcome {
            Outcome::Reply(reply) => {
                Stats::call(shared, spec.name, started, reply.is_error());
                self.reply(state, reply);
                Step::Done
            }
            Outcome::Block(request) => Step::Block(request, spec.name, started),
            Outcome::Chunked(chunked) => {
                Stats::call(shared, spec.name, started, false);
                Step::Chunked(chunked)
            }
        }
    }

    /// The part of a request that waits: EXEC, DEBUG RELOAD, a blocked read, a chunked
    /// reply. Runs with no engine lock held and the request's effects published.
    async fn finish(
        &mut self,
        socket: &mut Socket,
        state: &mut ClientState,
        step: Step,
    ) -> Result<(), Closed> {
        let shared = self.shared.clone();
        match step {
            Step::Done => {}
            Step::Exec => self.exec(socket, state).await?,
            Step::Reload => {
                let reply = crate::server::debug_reload(&shared);
                self.reply(state, reply);
            }
            Step::Block(request, name, started) => {
                let mut effects = Effects::default();
                let outcome = self.block(socket, state, request, &mut effects).await?;
                self.after_execute(state, &effects);
                self.hold_until_durable(effects.lsn);
                match outcome {
                    Outcome::Reply(reply) => {
                        Stats::call(&shared, name, started, reply.is_error());
                        self.reply(state, reply);
                    }
                    // blocking::wait never returns anything else; answer as a timeout.
                    _ => self.reply(state, Reply::NullArray),
                }
            }
            Step::Chunked(mut chunked) => {
                self.drain_pubsub(state);
                loop {
                    let done = {
                        let mut engine = shared.engine();
                        chunked.next_chunk(&mut engine, state.proto, &mut self.out)
                    };
                    match done {
                        Ok(true) => break,
                        Ok(false) => self.flush(socket).await?,
                        Err(why) => return Err(why),
                    }
                }
                if state.reply_mode != ReplyMode::On {
                    self.out.clear();
                }
            }
        }
        Ok(())
    }

    /// Waits for a blocked read, while watching the socket for a disconnect and the client
    /// for CLIENT KILL.
    async fn block(
        &mut self,
        socket: &mut Socket,
        state: &mut ClientState,
        request: crate::blocking::BlockRequest,
        effects: &mut Effects,
    ) -> Result<Outcome, Closed> {
        let shared = self.shared.clone();
        lock(&state.handle.info).blocked = true;
        self.set_busy(false);
        let result = {
            let wait = crate::blocking::wait(&shared, state.id, state.db, request, effects);
            tokio::pin!(wait);
            loop {
                self.input.reserve(READ_CHUNK);
                tokio::select! {
                    outcome = &mut wait => break Ok(outcome),
                    n = socket.read.read_buf(&mut self.input) => match n {
                        Ok(0) => break Err(String::new()),
                        Ok(_) => {
                            state.handle.last_interaction_ms.store(now_ms(), Ordering::Relaxed);
                            if self.input.len() as u64 > shared.config().client_query_buffer_limit {
                                break Err("closing client that reached max query buffer length".into());
                            }
                        }
                        Err(e) => break Err(e.to_string()),
                    },
                    _ = state.handle.kill_notify.notified() => break Err(String::new()),
                    _ = shared.shutdown.wait() => break Err(String::new()),
                }
            }
        };
        lock(&state.handle.info).blocked = false;
        self.set_busy(true);
        result
    }

    /// EXEC: runs the queued commands atomically under one engine lock; the reply waits until
    /// the whole transaction is durable.
    async fn exec(&mut self, socket: &mut Socket, state: &mut ClientState) -> Result<(), Closed> {
        let shared = self.shared.clone();
        let Some(multi) = state.multi.take() else {
            self.reply(state, Reply::err("EXEC without MULTI"));
            return Ok(());
        };
        if multi.aborted {
            state.unwatch(&shared);
            self.reply(
                state,
                Reply::Error(
                    "EXECABORT Transaction discarded because of previous errors.".to_string(),
                ),
            );
            return Ok(());
        }
        let mut effects = Effects::default();
        let mut body = BytesMut::new();
        let mut after = Vec::new();
        {
            let mut engine = shared.engine();
            if state.handle.dirty_cas.load(Ordering::SeqCst) {
                drop(engine);
                state.unwatch(&shared);
                self.reply(state, Reply::NullArray);
                return Ok(());
            }
            let poisoned = engine.stats().poisoned;
            crate::reply::encode_array_header(&mut body, multi.queued.len());
            for (command, spec, args) in multi.queued {
                let started = Instant::now();
                let execution = in_ctx(
                    &shared,
                    (state.db, state.id, true),
                    &mut engine,
                    &mut effects,
                    |ctx| {
                        if !matches!(command, Command::Invalid(_)) {
                            expire_keys(
                                &shared,
                                ctx.engine,
                                ctx.db,
                                spec,
                                &args,
                                ctx.now_ms,
                                ctx.effects,
                            );
                        }
                        match &poisoned {
                            Some(why) if spec.flags.contains(&"write") => Err(cmd::misconf(why)),
                            _ => Ok(execute(command, ctx, state, &shared)),
                        }
                    },
                );
                let execution = match execution {
                    Ok(execution) => execution,
                    Err(refused) => {
                        refused.encode(state.proto, &mut body);
                        continue;
                    }
                };
                match execution {
                    Execution::Outcome(Outcome::Reply(r)) => {
                        Stats::call(&shared, spec.name, started, r.is_error());
                        r.encode(state.proto, &mut body);
                    }
                    Execution::Outcome(Outcome::Chunked(mut c)) => {
                        Stats::call(&shared, spec.name, started, false);
                        loop {
                            match c.next_chunk(&mut engine, state.proto, &mut body) {
                                Ok(true) => break,
                                Ok(false) => {}
                                Err(why) => return Err(why),
                            }
                        }
                    }
                    Execution::Outcome(Outcome::Block(_)) => {
                        Reply::NullArray.encode(state.proto, &mut body);
                    }
                    Execution::Replies(replies) => {
                        // Pub/sub inside EXEC: all confirmations as one element each in
                        // Redis; we keep the first (SUBSCRIBE with one channel).
                        let first = replies.into_iter().next().unwrap_or(Reply::Null);
                        first.encode(state.proto, &mut body);
                    }
                    Execution::Shutdown => {
                        after.push(Execution::Shutdown);
                        Reply::Ok.encode(state.proto, &mut body);
                    }
                    Execution::Reload => {
                        Reply::err("DEBUG RELOAD is not allowed inside MULTI")
                            .encode(state.proto, &mut body);
                    }
                }
            }
        }
        state.unwatch(&shared);
        Stats::call(&shared, "exec", Instant::now(), false);
        self.after_execute(state, &effects);
        self.hold_until_durable(effects.lsn);
        if state.reply_mode == ReplyMode::On {
            self.drain_pubsub(state);
            self.out.extend_from_slice(&body);
        }
        if !after.is_empty() {
            shared.shutdown.trigger();
            state.close_after_reply = true;
        }
        let _ = socket;
        Ok(())
    }

    /// Publishes keyspace events and wakes blocked readers (outside the engine lock).
    fn after_execute(&self, state: &ClientState, effects: &Effects) {
        let _ = state;
        publish_effects(&self.shared, effects);
    }

    /// Holds back everything now in the output until `lsn` — and, under `always`, every
    /// write executed so far, which this command's reply may have observed — is durable.
    /// The wait happens once per flush, so a pipelined batch shares one group commit.
    fn hold_until_durable(&mut self, lsn: Lsn) {
        let durability = lock(&self.shared.durability).clone();
        self.unwritten = self.unwritten.max(durability.write_behind().appended());
        let mut barrier = self.barrier.max(lsn);
        if durability.policy() == sluice_engine::FsyncPolicy::Always {
            barrier = barrier.max(durability.last_lsn());
        }
        if !durability.is_durable(barrier) {
            self.barrier = barrier;
        }
    }

    /// Makes sure the appends this client's replies may reflect are written to their files.
    /// When other clients are mid-request, or several others waited here since this one
    /// last did, yields once first: the connections served in the same turn of the worker's
    /// loop append meanwhile, and the first of them to get here writes for all (one `pwrite`
    /// per stream instead of one per connection, as Redis writes its AOF buffer once per
    /// loop turn). A lone client flushes at once.
    async fn await_written(&mut self) -> Result<(), sluice_engine::Error> {
        let target = std::mem::take(&mut self.unwritten);
        if target == 0 {
            return Ok(());
        }
        let wait = self.shared.append_waits.fetch_add(1, Ordering::Relaxed);
        let last = std::mem::replace(&mut self.last_append_wait, wait);
        let others = wait.saturating_sub(last).saturating_sub(1);
        let durability = lock(&self.shared.durability).clone();
        if durability.write_behind().written() >= target {
            return Ok(());
        }
        // Other connections busy now (on other workers), or several that waited for their
        // appends since this one last did (writers taking turns on this worker): let them
        // append too before the one write.
        if self.shared.busy_clients.load(Ordering::Relaxed) > 1 || others > WRITE_COMPANY {
            tokio::task::yield_now().await;
            if durability.write_behind().written() >= target {
                return Ok(());
            }
        }
        let lsn = self.shared.engine().flush_writes()?;
        if durability.policy() == sluice_engine::FsyncPolicy::Always {
            // The policy changed since the appends: they now wait for their fsync.
            self.barrier = self.barrier.max(lsn);
        }
        Ok(())
    }

    /// Waits until `lsn` is durable under the fsync policy. Returns an error reply if the
    /// engine was poisoned meanwhile (the write may not survive a crash).
    async fn await_durable(&self, lsn: Lsn) -> Option<Reply> {
        if lsn == Lsn(0) {
            return None;
        }
        let durability = lock(&self.shared.durability).clone();
        let mut rx = self.shared.durable.subscribe();
        loop {
            if durability.is_durable(lsn) {
                return None;
            }
            if let Some(why) = durability.poisoned() {
                return Some(cmd::misconf(&why));
            }
            // The listener publishes each completed sync round; re-check periodically in
            // case the engine poisons itself without publishing.
            let started = Instant::now();
            let _ =
                tokio::time::timeout(Duration::from_millis(50), rx.wait_for(|d| *d >= lsn)).await;
            if started.elapsed() < Duration::from_micros(100) {
                // The published Lsn is already past ours (e.g. after DEBUG RELOAD) but the
                // engine disagrees: do not spin.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// Moves pub/sub messages and confirmations queued so far into the output, so a reply
    /// written next follows every message published before it (Redis' order). Pushes are
    /// sent even under CLIENT REPLY OFF, as Redis does.
    fn drain_pubsub(&mut self, state: &ClientState) {
        while let Ok(true) = self.take_pubsub(state) {}
    }

    /// Appends queued pub/sub messages to the output: true if any, `Err` once cut off. Keyspace
    /// notifications are held until the writes they report are durable (`always`) or
    /// written (`everysec`, `no`), as a reply that observed them would be: Redis writes
    /// them only after its AOF write and fsync.
    fn take_pubsub(&mut self, state: &ClientState) -> Result<bool, ()> {
        Ok(match state.pubsub.take_into(&mut self.out)? {
            crate::pubsub::Taken::Notifications => {
                self.hold_until_durable(Lsn(0));
                true
            }
            crate::pubsub::Taken::Messages => true,
            crate::pubsub::Taken::Nothing => false,
        })
    }

    fn reply(&mut self, state: &ClientState, reply: Reply) {
        self.drain_pubsub(state);
        if reply.is_error() {
            if let Reply::Error(text) = &reply {
                let code = text.split(' ').next().unwrap_or("ERR");
                Stats::error(&self.shared, code);
            }
        }
        if state.reply_mode == ReplyMode::On {
            reply.encode(state.proto, &mut self.out);
        }
    }
}

/// How [`Conn::run_batch`] stopped.
enum Batch {
    /// No complete request is buffered.
    Idle,
    /// The batch limit was reached, or effects were due: more requests may be buffered.
    More,
    /// The output must be written before executing more.
    Flush,
    /// The client is to be closed (after writing what is buffered).
    Close,
    /// A request has a part that waits.
    Step(Step),
    ParseError(crate::resp::ProtocolError),
}

/// What is left of a request after [`Conn::start`].
enum Step {
    Done,
    Exec,
    Reload,
    Block(crate::blocking::BlockRequest, &'static str, Instant),
    Chunked(Box<dyn cmd::ChunkedReply>),
}

/// What executing one parsed command did.
pub enum Execution {
    Outcome(Outcome),
    /// Pub/sub commands answer with one reply per confirmation.
    Replies(Vec<Reply>),
    /// SHUTDOWN: stop the server after this command.
    Shutdown,
    /// DEBUG RELOAD: close and reopen the engine (done by the caller, which holds no lock).
    Reload,
}

/// Executes one parsed command with the engine locked (in `ctx`).
fn execute(
    command: Command,
    ctx: &mut Ctx,
    state: &mut ClientState,
    shared: &Arc<Shared>,
) -> Execution {
    match command {
        Command::Stream(c) => Execution::Outcome(cmd::stream::execute(c, ctx)),
        Command::Keys(c) => Execution::Outcome(cmd::keys::execute(c, ctx)),
        Command::Connection(c) => Execution::Outcome(Outcome::Reply(cmd::connection::execute(
            c, ctx, state, shared,
        ))),
        Command::Transaction(c) => {
            Execution::Outcome(Outcome::Reply(cmd::transaction::execute(c, state, shared)))
        }
        Command::Server(c) => cmd::server::execute(c, ctx, state, shared),
        Command::PubSub(c) => {
            let replies = cmd::pubsub::execute(c, &mut state.pubsub);
            Execution::Replies(replies)
        }
        Command::Invalid(reply) => Execution::Outcome(Outcome::Reply(reply)),
    }
}

/// The key arguments of a request, from the command table's key positions (XREAD and
/// XREADGROUP: the first half of what follows STREAMS).
pub fn key_args<'a>(spec: &cmd::table::Spec, args: &'a [Bytes]) -> Vec<&'a Bytes> {
    if spec.name == "xread" || spec.name == "xreadgroup" {
        let Some(pos) = args.iter().position(|a| a.eq_ignore_ascii_case(b"STREAMS")) else {
            return Vec::new();
        };
        let rest = &args[pos + 1..];
        return rest[..rest.len() / 2].iter().collect();
    }
    if spec.first_key <= 0 || spec.step <= 0 {
        return Vec::new();
    }
    let first = spec.first_key as usize;
    let last = if spec.last_key < 0 {
        (args.len() as i64 + i64::from(spec.last_key)).max(0) as usize
    } else {
        spec.last_key as usize
    };
    (first..=last.min(args.len().saturating_sub(1)))
        .step_by(spec.step as usize)
        .filter_map(|i| args.get(i))
        .collect()
}

/// Runs `f` (lazy expiry and one command) with a context over the locked engine for client
/// `(db, id, in_multi)`, then marks the clients WATCHing what it touched, under the same lock
/// so that a later EXEC sees it.
fn in_ctx<R>(
    shared: &Shared,
    (db, client_id, in_multi): (Db, u64, bool),
    engine: &mut sluice_engine::Engine,
    effects: &mut Effects,
    f: impl FnOnce(&mut Ctx) -> R,
) -> R {
    let (touched, flushed) = (effects.touched.len(), effects.flushed.len());
    let mut ctx = Ctx {
        engine,
        db,
        now_ms: now_ms(),
        client_id,
        in_multi,
        effects,
    };
    let result = f(&mut ctx);
    invalidate_watches(
        shared,
        &effects.touched[touched..],
        &effects.flushed[flushed..],
    );
    result
}

/// Lazy expiry: removes the request's keys whose deadline has passed before the command
/// sees them.
fn expire_keys(
    shared: &Shared,
    engine: &mut sluice_engine::Engine,
    db: Db,
    spec: &cmd::table::Spec,
    args: &[Bytes],
    now: u64,
    effects: &mut Effects,
) {
    for key in key_args(spec, args) {
        if crate::expiry::expire_if_needed(engine, db, key, now, effects) {
            crate::server::Stats::incr(&shared.stats.expired_keys);
        }
    }
}

/// Publishes keyspace events and wakes blocked readers (call without the engine lock).
pub fn publish_effects(shared: &Shared, effects: &Effects) {
    if !effects.events.is_empty() {
        let flags = shared.config().notify_keyspace_events.clone();
        if flags.keyspace || flags.keyevent {
            shared.hub.notify_keyspace(&flags, &effects.events);
        }
    }
    if !effects.touched.is_empty() || !effects.flushed.is_empty() {
        shared
            .blocking
            .keys_touched(shared, &effects.touched, &effects.flushed);
    }
    if !effects.ready.is_empty() {
        shared.blocking.keys_touched(shared, &effects.ready, &[]);
    }
}

/// Marks clients WATCHing any touched key (called with the engine lock held, so EXEC's check
/// under the same lock sees it).
pub fn invalidate_watches(shared: &Shared, touched: &[(Db, Bytes)], flushed: &[Db]) {
    if touched.is_empty() && flushed.is_empty() {
        return;
    }
    let watches = lock(&shared.watches);
    if watches.is_empty() {
        return;
    }
    let mut dirty = Vec::new();
    for key in touched {
        if let Some(ids) = watches.get(key) {
            dirty.extend(ids.iter().copied());
        }
    }
    for db in flushed {
        for ((wdb, _), ids) in watches.iter() {
            if wdb == db {
                dirty.extend(ids.iter().copied());
            }
        }
    }
    drop(watches);
    for id in dirty {
        if let Some(client) = shared.clients.get(id) {
            client.dirty_cas.store(true, Ordering::SeqCst);
        }
    }
}

/// Stats helpers.
struct Stats;

impl Stats {
    fn call(shared: &Shared, name: &str, started: Instant, failed: bool) {
        Self::calls(shared, name, 1, started.elapsed(), usize::from(failed));
    }

    /// `n` calls of `name` that took `took` together, `failed` of them failing: a run
    /// executed at once is counted under one lock, and its time is not lost to rounding
    /// each call's share down to whole microseconds.
    fn calls(shared: &Shared, name: &str, n: usize, took: Duration, failed: usize) {
        if n == 0 {
            return;
        }
        shared
            .stats
            .commands_processed
            .fetch_add(n as u64, Ordering::Relaxed);
        let mut map = lock(&shared.stats.commands);
        let row = match map.get_mut(name) {
            Some(row) => row,
            None => map.entry(name.to_string()).or_default(),
        };
        row.calls += n as u64;
        row.usec += u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        row.failed_calls += failed as u64;
    }

    fn rejected(shared: &Shared, name: &str) {
        let mut map = lock(&shared.stats.commands);
        map.entry(name.to_string()).or_default().rejected_calls += 1;
    }

    fn error(shared: &Shared, code: &str) {
        shared
            .stats
            .total_error_replies
            .fetch_add(1, Ordering::Relaxed);
        let mut map = lock(&shared.stats.errors);
        *map.entry(code.to_string()).or_default() += 1;
    }
}
