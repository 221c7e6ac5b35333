//! The memory-only pub/sub hub: channels, shard channels and patterns with their subscribers,
//! fan-out of published messages, output-buffer limits, and keyspace notifications.
//!
//! # Design
//! - A published message is encoded once per protocol it is needed in (RESP2 `*3 message`,
//!   RESP3 `>3` push; a `pmessage` once per matching pattern) and the same [`Bytes`] is queued
//!   to every receiver. Each subscriber has a queue that its connection drains
//!   ([`Session::take_into`]), so a slow reader costs the publisher one push.
//! - Consecutive PUBLISHes to one channel in a client's pipeline are executed together
//!   ([`Hub::publish_run`]): each receiver gets them as one item, encoded once for all, so a
//!   batch costs a lock and a wake-up flag per receiver, not per message. Where a pattern
//!   matches the channel they go one by one, which keeps each `message` before its
//!   `pmessage`.
//! - At the end of its batch of PUBLISHes, the publisher writes a receiver's queue to that
//!   receiver's socket itself, without waiting, if the receiver's connection is parked
//!   (waiting for input with nothing of its own to write). Redis does the same write in its
//!   event loop. A batch reaching a few subscribers then wakes no other task, and so no other
//!   worker thread. A batch reaching more, up to [`IDLE_DIRECT_MAX_FAN_OUT`], is written the
//!   same way if the publisher's connection had waited for it
//!   ([`Session::set_input_waited`]): a burst then costs one pass over the sockets instead
//!   of a task wake-up per subscriber. What a socket does not take at once, a busy
//!   connection's queue, and every queue of a batch that reached more than
//!   [`DIRECT_MAX_FAN_OUT`] subscribers from a publisher whose input was already there are
//!   left to the receivers' own connections, which are woken to write them: a large fan-out
//!   under a saturating publisher is written by every worker thread, and a subscriber behind
//!   by several batches gets them in one write. A publisher never waits on a subscriber's
//!   socket.
//! - A publisher does not run ever further ahead of deliveries that only wait for a CPU: if
//!   its PUBLISHes found a subscriber still holding its earlier messages, woken for them but
//!   not run since, the publisher's replies go out, and its next input is read, only once
//!   that connection has run (or after [`CATCH_UP_MAX`]). Redis gets the same pacing from
//!   writing every subscriber in the loop turn that read the PUBLISH and answers it; without
//!   it a closed-loop publisher fills the queues faster than subscribers are scheduled, and
//!   delivery latency grows without bound. Holding the reply, not only the next read, keeps
//!   such a publisher's next messages in its own process during the wait instead of in the
//!   socket, already sent as far as the sender knows.
//! - A subscriber whose queued bytes exceed `client-output-buffer-limit pubsub` (hard, or soft
//!   for longer than its seconds) is cut off at once: its queue is dropped and
//!   [`Session::ready`] returns false so its connection closes. Nobody else notices.
//! - Patterns are indexed in a byte trie by their literal prefix (the bytes before the first
//!   glob metacharacter, at most [`MAX_INDEXED_PREFIX`]): a publish walks the trie along the
//!   channel name and tests only patterns whose prefix the channel starts with.
//! - Subscribe and unsubscribe confirmations go through the same queue as messages, queued
//!   under the hub's write lock, so a client sees exactly Redis' order: no message of a
//!   channel before its `subscribe` confirmation, none after its `unsubscribe`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::Notify;

use crate::cmd::KeyspaceEvent;
use crate::config::{KeyspaceFlags, OutputLimit};
use crate::glob;
use crate::reply::{Protocol, Reply};
use crate::server::Shared;

/// Patterns are indexed by at most this many bytes of their literal prefix, so the trie's
/// size stays proportional to the number of patterns, not to their lengths.
pub const MAX_INDEXED_PREFIX: usize = 64;

/// [`Session::take_into`] hands at most about this many bytes to the connection at once, and
/// a publisher writes at most about this many to a parked subscriber's socket.
const RECV_BATCH_BYTES: usize = 64 * 1024;

/// A publisher writes its batch's messages to parked subscribers itself only if the batch
/// reached at most this many subscribers; beyond it, their connections are woken to write
/// them, in parallel on every worker.
pub const DIRECT_MAX_FAN_OUT: usize = 16;

/// A publisher whose connection waited for its batch writes the batch's deliveries itself up
/// to this many subscribers. At 3–10 µs per loopback write that holds its worker thread for
/// at most about 10 ms; a larger fan-out is spread over the subscribers' connections, which
/// every worker runs and which yield to other clients.
pub const IDLE_DIRECT_MAX_FAN_OUT: usize = 1024;

/// How long a publisher waits at most for lagging subscribers ([`Session::catch_up`]).
const CATCH_UP_MAX: Duration = Duration::from_millis(10);

/// Lagging subscribers a publisher remembers between two waits: enough for any one round's
/// fan-out to matter, and a bound on memory whatever the pipeline.
const MAX_LAGGING: usize = 4096;

/// Publishers one subscriber's queue holds waiting for its connection at most: a connection
/// that does not run for a while cannot make every later wait register with it.
const MAX_WATCHERS: usize = 64;

/// The write side of a subscriber's socket, which a publisher writes to while the subscriber's
/// connection is parked (see the module's design notes).
pub trait DirectOut: Send + Sync {
    /// Writes what the socket takes now, without waiting (`WouldBlock` if it takes nothing).
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize>;
}

impl DirectOut for tokio::net::tcp::OwnedWriteHalf {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        tokio::net::tcp::OwnedWriteHalf::try_write(self, buf)
    }
}

/// The three subscription namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// SUBSCRIBE / UNSUBSCRIBE / PUBLISH.
    Channel,
    /// PSUBSCRIBE / PUNSUBSCRIBE.
    Pattern,
    /// SSUBSCRIBE / SUNSUBSCRIBE / SPUBLISH.
    Shard,
}

impl Kind {
    fn subscribe_word(self) -> &'static str {
        match self {
            Kind::Channel => "subscribe",
            Kind::Pattern => "psubscribe",
            Kind::Shard => "ssubscribe",
        }
    }

    fn unsubscribe_word(self) -> &'static str {
        match self {
            Kind::Channel => "unsubscribe",
            Kind::Pattern => "punsubscribe",
            Kind::Shard => "sunsubscribe",
        }
    }
}

/// Channels and patterns with their subscribers.
pub struct Hub {
    state: RwLock<State>,
    limit_hard: AtomicU64,
    limit_soft: AtomicU64,
    limit_soft_seconds: AtomicU64,
    /// Subscribers cut off for exceeding their output buffer limit (INFO stats
    /// `client_output_buffer_limit_disconnections`).
    disconnections: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        let d = crate::config::Config::default().output_pubsub;
        Hub {
            state: RwLock::default(),
            limit_hard: AtomicU64::new(d.hard),
            limit_soft: AtomicU64::new(d.soft),
            limit_soft_seconds: AtomicU64::new(d.soft_seconds),
            disconnections: AtomicU64::new(0),
        }
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.read();
        f.debug_struct("Hub")
            .field("channels", &state.channels.len())
            .field("shard_channels", &state.shard_channels.len())
            .field("patterns", &state.patterns.len())
            .finish()
    }
}

#[derive(Default)]
struct State {
    channels: HashMap<Bytes, SubscriberSet>,
    shard_channels: HashMap<Bytes, SubscriberSet>,
    patterns: PatternIndex,
}

impl Hub {
    /// Sets `client-output-buffer-limit pubsub` (CONFIG SET, startup). Applies at the next
    /// message queued to each subscriber.
    pub fn set_output_limit(&self, limit: OutputLimit) {
        self.limit_hard.store(limit.hard, Ordering::Relaxed);
        self.limit_soft.store(limit.soft, Ordering::Relaxed);
        self.limit_soft_seconds
            .store(limit.soft_seconds, Ordering::Relaxed);
    }

    /// The limit currently applied to subscribers.
    pub fn output_limit(&self) -> OutputLimit {
        OutputLimit {
            hard: self.limit_hard.load(Ordering::Relaxed),
            soft: self.limit_soft.load(Ordering::Relaxed),
            soft_seconds: self.limit_soft_seconds.load(Ordering::Relaxed),
        }
    }

    /// Subscribers disconnected for exceeding their output buffer limit since start (or
    /// since [`Hub::reset_stats`]).
    pub fn output_limit_disconnections(&self) -> u64 {
        self.disconnections.load(Ordering::Relaxed)
    }

    /// CONFIG RESETSTAT.
    pub fn reset_stats(&self) {
        self.disconnections.store(0, Ordering::Relaxed);
    }

    /// PUBLISH: queues `message` to the subscribers of `channel` and of every pattern matching
    /// it. Returns the number of receivers, a client counted once per matching subscription.
    pub fn publish(&self, channel: &[u8], message: &[u8]) -> usize {
        let mut wakeups = Wakeups::default();
        self.publish_deferred(channel, message, &mut wakeups)
    }

    /// PUBLISH, leaving the receivers' wake-ups in `wakeups`: a connection executing a
    /// pipeline of PUBLISHes wakes each subscriber once for the batch (as Redis writes to each
    /// client once per event-loop turn), so the subscriber writes the batch in one syscall.
    pub fn publish_deferred(&self, channel: &[u8], message: &[u8], wakeups: &mut Wakeups) -> usize {
        let state = self.read();
        self.publish_locked(&state, channel, message, false, wakeups)
    }

    /// SPUBLISH: queues `message` to the subscribers of shard channel `channel`.
    pub fn spublish(&self, channel: &[u8], message: &[u8]) -> usize {
        let mut wakeups = Wakeups::default();
        self.spublish_deferred(channel, message, &mut wakeups)
    }

    /// SPUBLISH with deferred wake-ups, as [`Hub::publish_deferred`].
    pub fn spublish_deferred(
        &self,
        channel: &[u8],
        message: &[u8],
        wakeups: &mut Wakeups,
    ) -> usize {
        let state = self.read();
        self.spublish_locked(&state, channel, message, wakeups)
    }

    /// A run of PUBLISHes (or SPUBLISHes for [`Kind::Shard`]) to one channel from one
    /// client's pipeline, under one read lock; returns each one's receivers. Where no pattern
    /// matches the channel, each receiver gets the whole run as one queued item: one lock,
    /// one wake-up flag and one reference count per receiver instead of one per message, in
    /// the same order. With patterns (a receiver may get both `message` and `pmessage` for
    /// each publish, in that order) the messages are published one by one.
    pub fn publish_run(
        &self,
        kind: Kind,
        channel: &[u8],
        messages: &[Bytes],
        wakeups: &mut Wakeups,
    ) -> Vec<usize> {
        let state = self.read();
        let mut counts = vec![0; messages.len()];
        let (set, word): (_, &'static [u8]) = match kind {
            Kind::Shard => (state.shard_channels.get(channel), b"smessage"),
            _ => (state.channels.get(channel), b"message"),
        };
        if messages.len() < 2 || (kind != Kind::Shard && state.patterns.any_match(channel)) {
            for (count, message) in counts.iter_mut().zip(messages) {
                *count = match kind {
                    Kind::Shard => self.spublish_locked(&state, channel, message, wakeups),
                    _ => self.publish_locked(&state, channel, message, false, wakeups),
                };
            }
            return counts;
        }
        let Some(set) = set else {
            return counts;
        };
        let limit = self.output_limit();
        let mut run = EncodedRun::new(word, channel, messages);
        for sub in set.iter() {
            let (item, sizes) = run.get(sub.protocol());
            let took = self.push(sub, item, sizes, &limit, false, wakeups);
            for count in &mut counts[..took] {
                *count += 1;
            }
        }
        counts
    }

    /// Publishes keyspace notifications (`__keyspace@<db>__:<key>` / `__keyevent@<db>__:<event>`)
    /// for the events `flags` enables, as Redis' `notifyKeyspaceEvent` does.
    pub fn notify_keyspace(&self, flags: &KeyspaceFlags, events: &[KeyspaceEvent]) {
        if events.is_empty() || !(flags.keyspace || flags.keyevent) {
            return;
        }
        let mut wakeups = Wakeups::default();
        let state = self.read();
        for ev in events.iter().filter(|ev| flags.wants(ev.class)) {
            if flags.keyspace {
                let mut chan = format!("__keyspace@{}__:", ev.db).into_bytes();
                chan.extend_from_slice(&ev.key);
                self.publish_locked(&state, &chan, ev.event.as_bytes(), true, &mut wakeups);
            }
            if flags.keyevent {
                let chan = format!("__keyevent@{}__:{}", ev.db, ev.event);
                self.publish_locked(&state, chan.as_bytes(), &ev.key, true, &mut wakeups);
            }
        }
        drop(state);
        wakeups.wake_all();
    }

    /// PUBSUB CHANNELS / SHARDCHANNELS: active channels matching `pattern` (all without one).
    pub fn channels(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let state = self.read();
        let map = match kind {
            Kind::Shard => &state.shard_channels,
            _ => &state.channels,
        };
        map.keys()
            .filter(|c| pattern.is_none_or(|p| glob::matches(p, c)))
            .cloned()
            .collect()
    }

    /// PUBSUB NUMSUB / SHARDNUMSUB: subscribers of each channel (patterns not counted).
    pub fn numsub(&self, kind: Kind, channels: &[Bytes]) -> Vec<(Bytes, usize)> {
        let state = self.read();
        let map = match kind {
            Kind::Shard => &state.shard_channels,
            _ => &state.channels,
        };
        channels
            .iter()
            .map(|c| (c.clone(), map.get(c).map_or(0, SubscriberSet::len)))
            .collect()
    }

    /// PUBSUB NUMPAT: distinct patterns subscribed to by at least one client.
    pub fn numpat(&self) -> usize {
        self.read().patterns.len()
    }

    fn spublish_locked(
        &self,
        state: &State,
        channel: &[u8],
        message: &[u8],
        wakeups: &mut Wakeups,
    ) -> usize {
        let Some(set) = state.shard_channels.get(channel) else {
            return 0;
        };
        let limit = self.output_limit();
        let mut msg = Encoded::new(b"smessage", None, channel, message);
        set.iter()
            .filter(|sub| self.push_one(sub, msg.get(sub.protocol()), &limit, false, wakeups))
            .count()
    }

    /// `notice`: a keyspace notification (see [`Taken::Notifications`]).
    fn publish_locked(
        &self,
        state: &State,
        channel: &[u8],
        message: &[u8],
        notice: bool,
        wakeups: &mut Wakeups,
    ) -> usize {
        let limit = self.output_limit();
        let mut receivers = 0;
        if let Some(set) = state.channels.get(channel) {
            let mut msg = Encoded::new(b"message", None, channel, message);
            receivers += set
                .iter()
                .filter(|sub| self.push_one(sub, msg.get(sub.protocol()), &limit, notice, wakeups))
                .count();
        }
        state.patterns.for_each_match(channel, |pattern, set| {
            let mut msg = Encoded::new(b"pmessage", Some(pattern), channel, message);
            receivers += set
                .iter()
                .filter(|sub| self.push_one(sub, msg.get(sub.protocol()), &limit, notice, wakeups))
                .count();
        });
        receivers
    }

    /// Queues one message to `sub` (see [`Hub::push`]). False if `sub` is closed.
    fn push_one(
        &self,
        sub: &Arc<Subscriber>,
        item: &Bytes,
        limit: &OutputLimit,
        notice: bool,
        wakeups: &mut Wakeups,
    ) -> bool {
        self.push(sub, item, &[item.len()], limit, notice, wakeups) > 0
    }

    /// Queues `item`, the messages of sizes `sizes` one after the other, to `sub`, applying
    /// the output limit; its wake-up goes to `wakeups`. Returns how many of the messages
    /// count `sub` as a receiver: all of them, none if it was closed, or those up to the one
    /// that took it over its limit.
    fn push(
        &self,
        sub: &Arc<Subscriber>,
        item: &Bytes,
        sizes: &[usize],
        limit: &OutputLimit,
        notice: bool,
        wakeups: &mut Wakeups,
    ) -> usize {
        match sub.push(item.clone(), sizes, limit, notice) {
            Push::Queued { lagging } => {
                wakeups.add(sub, lagging);
                sizes.len()
            }
            Push::Closed => 0,
            Push::CutOff { at } => {
                self.disconnections.fetch_add(1, Ordering::Relaxed);
                // Redis counts a receiver it scheduled to close in the same call.
                at + 1
            }
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A message encoded lazily, at most once per protocol.
struct Encoded<'a> {
    kind: &'static [u8],
    pattern: Option<&'a [u8]>,
    channel: &'a [u8],
    message: &'a [u8],
    resp2: Option<Bytes>,
    resp3: Option<Bytes>,
}

impl<'a> Encoded<'a> {
    fn new(
        kind: &'static [u8],
        pattern: Option<&'a [u8]>,
        channel: &'a [u8],
        message: &'a [u8],
    ) -> Self {
        Encoded {
            kind,
            pattern,
            channel,
            message,
            resp2: None,
            resp3: None,
        }
    }

    fn get(&mut self, proto: Protocol) -> &Bytes {
        let (kind, pattern, channel, message) =
            (self.kind, self.pattern, self.channel, self.message);
        let slot = match proto {
            Protocol::Resp2 => &mut self.resp2,
            Protocol::Resp3 => &mut self.resp3,
        };
        slot.get_or_insert_with(|| encode_message(proto, kind, pattern, channel, message))
    }
}

/// A run of messages to one channel encoded lazily, at most once per protocol, into one
/// buffer, with each message's encoded size (the same in both protocols).
struct EncodedRun<'a> {
    kind: &'static [u8],
    channel: &'a [u8],
    messages: &'a [Bytes],
    sizes: Vec<usize>,
    resp2: Option<Bytes>,
    resp3: Option<Bytes>,
}

impl<'a> EncodedRun<'a> {
    fn new(kind: &'static [u8], channel: &'a [u8], messages: &'a [Bytes]) -> Self {
        EncodedRun {
            kind,
            channel,
            messages,
            sizes: Vec::new(),
            resp2: None,
            resp3: None,
        }
    }

    fn get(&mut self, proto: Protocol) -> (&Bytes, &[usize]) {
        let (kind, channel, messages, sizes) =
            (self.kind, self.channel, self.messages, &mut self.sizes);
        let slot = match proto {
            Protocol::Resp2 => &mut self.resp2,
            Protocol::Resp3 => &mut self.resp3,
        };
        let item = slot.get_or_insert_with(|| {
            let parts = |m: &'a Bytes| [Some(kind), None, Some(channel), Some(&m[..])];
            let size = messages.iter().map(|m| message_size(&parts(m))).sum();
            let mut out = BytesMut::with_capacity(size);
            sizes.clear();
            for message in messages {
                let before = out.len();
                put_message(&mut out, proto, &parts(message));
                sizes.push(out.len() - before);
            }
            out.freeze()
        });
        (item, sizes)
    }
}

/// `*3 message <channel> <message>` (`>` under RESP3), or `*4 pmessage <pattern> ...`, encoded
/// into one exactly-sized buffer.
pub fn encode_message(
    proto: Protocol,
    kind: &[u8],
    pattern: Option<&[u8]>,
    channel: &[u8],
    message: &[u8],
) -> Bytes {
    let parts: [Option<&[u8]>; 4] = [Some(kind), pattern, Some(channel), Some(message)];
    let mut out = BytesMut::with_capacity(message_size(&parts));
    put_message(&mut out, proto, &parts);
    out.freeze()
}

/// An upper bound of the encoded size of a message of these parts.
fn message_size(parts: &[Option<&[u8]>; 4]) -> usize {
    4 + parts.iter().flatten().map(|p| p.len() + 16).sum::<usize>()
}

/// Appends the message of these parts (kind, pattern, channel, message) to `out`.
fn put_message(out: &mut BytesMut, proto: Protocol, parts: &[Option<&[u8]>; 4]) {
    out.put_u8(if proto == Protocol::Resp3 { b'>' } else { b'*' });
    out.put_u8(if parts[1].is_some() { b'4' } else { b'3' });
    out.put_slice(b"\r\n");
    for part in parts.iter().flatten() {
        out.put_u8(b'$');
        crate::reply::put_int(out, i64::try_from(part.len()).unwrap_or(i64::MAX));
        out.put_slice(b"\r\n");
        out.put_slice(part);
        out.put_slice(b"\r\n");
    }
}

/// One connection's queue of encoded messages, shared between the hub (which pushes) and the
/// connection (which drains it).
pub struct Subscriber {
    id: u64,
    resp3: AtomicBool,
    queue: Mutex<Queue>,
    notify: Notify,
    /// A wake-up for this subscriber is pending in some publisher's [`Wakeups`].
    wake_pending: AtomicBool,
    /// Woken (all waiters) when the subscriber is cut off, for a connection that is busy
    /// writing to a client that does not read and so is not waiting in `recv`.
    cut_notify: Notify,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Bytes>,
    /// Bytes in `items`: what the output buffer limit applies to.
    bytes: u64,
    /// When the queue last went over the soft limit (reset when it is back under it).
    soft_since: Option<Instant>,
    /// Cut off for exceeding the limit: nothing is queued any more.
    closed: bool,
    /// A keyspace notification was queued since the queue was last empty.
    notice: bool,
    /// Where a publisher may write this subscriber's items itself (none in unit tests of the
    /// hub alone).
    direct: Option<Arc<dyn DirectOut>>,
    /// The connection waits for input with nothing of its own to write: a publisher may
    /// write queued items to `direct`. Set and cleared only under this lock, and a publisher
    /// writes only while holding it, so the connection's writes and a publisher's never
    /// interleave or reorder.
    parked: bool,
    /// Publishers waiting for this connection to run ([`Wakeups::catch_up`]), released
    /// when [`Queue::waits_for_connection`] stops being true.
    watchers: Vec<Arc<CatchUp>>,
}

impl Queue {
    /// Counts `size` more bytes queued; true if that takes the queue over `limit`: its hard
    /// limit, or its soft limit for longer than the soft limit's seconds.
    fn over_limit_with(&mut self, size: usize, limit: &OutputLimit) -> bool {
        self.bytes += size as u64;
        if !limit.over_soft(self.bytes) {
            self.soft_since = None;
            return limit.over_hard(self.bytes);
        }
        let over_soft = match self.soft_since {
            None => {
                self.soft_since = Some(Instant::now());
                false
            }
            Some(since) => since.elapsed().as_secs() > limit.soft_seconds,
        };
        over_soft || limit.over_hard(self.bytes)
    }

    /// Parked with items queued: the connection was woken to take them and has not run
    /// since (see [`Wakeups::lagging`]).
    fn waits_for_connection(&self) -> bool {
        self.parked && !self.items.is_empty() && !self.closed
    }

    /// Tells the waiting publishers this connection has run (or no longer needs to).
    fn release_watchers(&mut self) {
        for gate in self.watchers.drain(..) {
            gate.arrive();
        }
    }
}

/// A subscriber's queue, locked. Releasing the lock releases the publishers waiting for the
/// connection once it no longer waits, whichever change under the lock ended the wait.
struct QueueGuard<'a>(MutexGuard<'a, Queue>);

impl std::ops::Deref for QueueGuard<'_> {
    type Target = Queue;
    fn deref(&self) -> &Queue {
        &self.0
    }
}

impl std::ops::DerefMut for QueueGuard<'_> {
    fn deref_mut(&mut self) -> &mut Queue {
        &mut self.0
    }
}

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        if !self.0.watchers.is_empty() && !self.0.waits_for_connection() {
            self.0.release_watchers();
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.release_watchers();
    }
}

/// One wait of a publisher for its lagging subscribers: the subscribers still to run, and
/// the publisher's wake-up when none is left.
struct CatchUp {
    left: AtomicUsize,
    done: Notify,
}

impl CatchUp {
    /// One subscriber ran; the last one wakes the publisher (the permit is kept if it is
    /// not waiting yet).
    fn arrive(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }
}

/// What [`Subscriber::deliver`] did.
enum Delivered {
    /// Everything queued was written to the socket: `n` bytes.
    All(usize),
    /// The connection must write (the rest of) it: `n` bytes were written first.
    Wake(usize),
    /// Cut off: nothing to do.
    Closed,
}

/// What [`Session::take_into`] appended to the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    Nothing,
    /// Messages and confirmations only.
    Messages,
    /// Including keyspace notifications: the writes they report may not be durable (or
    /// written) yet, so the output must wait for them as a reply to a read would.
    Notifications,
}

enum Push {
    /// Queued; `lagging` if earlier items still wait for the subscriber's woken connection
    /// to take them (see [`Wakeups::lagging`]).
    Queued { lagging: bool },
    /// The subscriber was already cut off.
    Closed,
    /// The item's message `at` (counting from 0) took the subscriber over its limit: it is
    /// now cut off.
    CutOff { at: usize },
}

impl Subscriber {
    fn new(id: u64) -> Arc<Subscriber> {
        Arc::new(Subscriber {
            id,
            resp3: AtomicBool::new(false),
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            wake_pending: AtomicBool::new(false),
            cut_notify: Notify::new(),
        })
    }

    fn protocol(&self) -> Protocol {
        if self.resp3.load(Ordering::Relaxed) {
            Protocol::Resp3
        } else {
            Protocol::Resp2
        }
    }

    fn lock(&self) -> QueueGuard<'_> {
        QueueGuard(self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Queues `item`, the messages of sizes `sizes` one after the other, applying Redis'
    /// `checkClientOutputBufferLimits` after each: over the hard limit, or over the soft
    /// limit for more than its seconds, cuts the subscriber off. The caller wakes the
    /// subscriber for a queued item (see [`Wakeups`]).
    fn push(&self, item: Bytes, sizes: &[usize], limit: &OutputLimit, notice: bool) -> Push {
        debug_assert_eq!(sizes.iter().sum::<usize>(), item.len());
        let mut q = self.lock();
        if q.closed {
            return Push::Closed;
        }
        let lagging = q.waits_for_connection();
        if let Some(at) = sizes
            .iter()
            .position(|&size| q.over_limit_with(size, limit))
        {
            q.closed = true;
            q.items = VecDeque::new();
            q.bytes = 0;
            drop(q);
            self.notify.notify_one();
            self.cut_notify.notify_waiters();
            return Push::CutOff { at };
        }
        q.notice |= notice;
        q.items.push_back(item);
        Push::Queued { lagging }
    }

    /// Appends queued items to `out`, up to about [`RECV_BATCH_BYTES`] (at least one).
    /// `Err` once cut off.
    fn take_into(&self, out: &mut BytesMut) -> Result<Taken, ()> {
        const CHUNK: usize = 32;
        {
            // Every reply asks first (messages published before a command precede its reply):
            // nothing queued is the common case.
            let mut q = self.lock();
            if q.closed {
                return Err(());
            }
            q.parked = false;
            if q.items.is_empty() {
                q.notice = false;
                return Ok(Taken::Nothing);
            }
        }
        let mut size = 0;
        let mut took = false;
        let mut notice = false;
        loop {
            // Up to CHUNK items at a time, copied outside the lock so publishers never wait
            // for the copy, and without allocating.
            let mut batch: [Bytes; CHUNK] = Default::default();
            let mut n = 0;
            let mut more = false;
            {
                let mut q = self.lock();
                if q.closed {
                    return Err(());
                }
                let before = size;
                notice |= q.notice;
                while let Some(next) = q.items.front().map(Bytes::len) {
                    if n == CHUNK {
                        more = true;
                        break;
                    }
                    if (took || n > 0) && size + next > RECV_BATCH_BYTES {
                        break;
                    }
                    if let Some(item) = q.items.pop_front() {
                        size += item.len();
                        batch[n] = item;
                        n += 1;
                    }
                }
                q.bytes -= (size - before) as u64;
                if q.items.is_empty() {
                    q.notice = false;
                }
            }
            out.reserve(batch[..n].iter().map(Bytes::len).sum());
            for item in &batch[..n] {
                out.put_slice(item);
            }
            took |= n > 0;
            if !more {
                return Ok(match (took, notice) {
                    (false, _) => Taken::Nothing,
                    (true, false) => Taken::Messages,
                    (true, true) => Taken::Notifications,
                });
            }
        }
    }

    /// The connection is about to wait for input with nothing to write: parks it if nothing
    /// is queued (true), else leaves it unparked to take what is (false). `Err` once cut off.
    fn park(&self) -> Result<bool, ()> {
        let mut q = self.lock();
        if q.closed {
            return Err(());
        }
        q.parked = q.items.is_empty() && q.direct.is_some();
        Ok(q.parked)
    }

    /// The connection woke up: from now on only it writes to its socket.
    fn unpark(&self) {
        self.lock().parked = false;
    }

    /// A publisher's end of batch: if the connection is parked, writes what is queued (up
    /// to about [`RECV_BATCH_BYTES`]) to its socket without waiting, under the queue's lock.
    /// `scratch` is the publisher's buffer for joining several items into one write.
    fn deliver(&self, scratch: &mut BytesMut) -> Delivered {
        let mut q = self.lock();
        if q.closed {
            return Delivered::Closed;
        }
        let out = match &q.direct {
            // A keyspace notification must wait until the write it reports is durable,
            // which only the connection knows how to wait for.
            Some(out) if q.parked && !q.notice => out.clone(),
            _ => {
                q.parked = false;
                return Delivered::Wake(0);
            }
        };
        let written = match q.items.len() {
            0 => return Delivered::All(0),
            1 => out.try_write(&q.items[0]),
            _ => {
                scratch.clear();
                for item in &q.items {
                    if !scratch.is_empty() && scratch.len() + item.len() > RECV_BATCH_BYTES {
                        break;
                    }
                    scratch.put_slice(item);
                }
                out.try_write(scratch)
            }
        };
        // A full socket (or a failed one, which the connection will see itself) leaves the
        // rest to the connection.
        let mut left = written.unwrap_or(0);
        let n = left;
        q.bytes -= n as u64;
        while left > 0 {
            let Some(front) = q.items.front_mut() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                q.items.pop_front();
            } else {
                *front = front.slice(left..);
                left = 0;
            }
        }
        if q.items.is_empty() {
            Delivered::All(n)
        } else {
            q.parked = false;
            Delivered::Wake(n)
        }
    }

    /// Takes queued items (see [`Subscriber::take_into`]) as one buffer: a single item as
    /// it was queued, so tests can see it is shared with the other receivers.
    #[cfg(test)]
    fn take(&self) -> Result<Option<Bytes>, ()> {
        {
            let mut q = self.lock();
            if q.closed {
                return Err(());
            }
            if q.items.len() == 1 {
                q.bytes = 0;
                q.notice = false;
                return Ok(q.items.pop_front());
            }
        }
        let mut out = BytesMut::new();
        let taken = self.take_into(&mut out)?;
        Ok((taken != Taken::Nothing).then(|| out.freeze()))
    }

    /// Completes when items are queued (true) or the subscriber is cut off (false).
    /// Cancel-safe: takes nothing.
    async fn ready(&self) -> bool {
        loop {
            {
                let q = self.lock();
                if q.closed {
                    return false;
                }
                if !q.items.is_empty() {
                    return true;
                }
            }
            self.notify.notified().await;
        }
    }

    fn is_cut_off(&self) -> bool {
        self.lock().closed
    }

    /// Completes once the subscriber is cut off.
    async fn cut_off(&self) {
        loop {
            let notified = self.cut_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cut_off() {
                return;
            }
            notified.await;
        }
    }

    /// Bytes waiting in the queue (CLIENT LIST `omem`).
    fn queued_bytes(&self) -> u64 {
        self.lock().bytes
    }
}

/// Subscribers to wake after items were queued to them, each once however many items it got.
/// Dropping it wakes them all, so no wake-up is ever lost.
#[derive(Default)]
pub struct Wakeups {
    subs: Vec<Arc<Subscriber>>,
    /// Subscribers that still held items from an earlier wake-up when this publisher next
    /// queued to them, their connections not having run since: deliveries wait for a CPU,
    /// and the publisher is ahead of them (see [`Session::catch_up`]). A subscriber whose
    /// connection is writing to its socket, or running a command of its own, is not parked
    /// and so never in this list.
    lagging: Vec<Arc<Subscriber>>,
}

impl Wakeups {
    fn add(&mut self, sub: &Arc<Subscriber>, lagging: bool) {
        if !sub.wake_pending.swap(true, Ordering::AcqRel) {
            if lagging && self.lagging.len() < MAX_LAGGING {
                self.lagging.push(sub.clone());
            }
            self.subs.push(sub.clone());
        }
    }

    /// Wakes every subscriber queued to since the last call.
    pub fn wake_all(&mut self) {
        for sub in self.subs.drain(..) {
            sub.wake_pending.store(false, Ordering::Release);
            sub.notify.notify_one();
        }
    }

    /// Writes the queues of the subscribers queued to since the last call, if at most
    /// [`DIRECT_MAX_FAN_OUT`] (or [`IDLE_DIRECT_MAX_FAN_OUT`] for an `idle_publisher`), to
    /// their sockets where their connections are parked, and wakes the others. Returns the
    /// bytes written.
    fn deliver_all(&mut self, scratch: &mut BytesMut, idle_publisher: bool) -> u64 {
        let mut written = 0;
        let max = if idle_publisher {
            IDLE_DIRECT_MAX_FAN_OUT
        } else {
            DIRECT_MAX_FAN_OUT
        };
        let direct = self.subs.len() <= max;
        for sub in self.subs.drain(..) {
            sub.wake_pending.store(false, Ordering::Release);
            let delivered = if direct {
                sub.deliver(scratch)
            } else {
                Delivered::Wake(0)
            };
            match delivered {
                Delivered::All(n) => written += n as u64,
                Delivered::Wake(n) => {
                    written += n as u64;
                    sub.notify.notify_one();
                }
                Delivered::Closed => {}
            }
        }
        if scratch.capacity() > 4 * RECV_BATCH_BYTES {
            *scratch = BytesMut::new();
        }
        written
    }

    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Waits until every lagging subscriber's connection has run, for at most
    /// [`CATCH_UP_MAX`] (see [`Session::catch_up`]). The last of them to run wakes this
    /// task: one wake-up per wait, however many subscribers.
    async fn catch_up(&mut self) {
        if self.lagging.is_empty() {
            return;
        }
        // A fresh gate each time: a subscriber still holding one from a wait that gave up
        // releases that one, never this. `left` starts at 1 for the registration itself.
        let gate = Arc::new(CatchUp {
            left: AtomicUsize::new(1),
            done: Notify::new(),
        });
        for sub in self.lagging.drain(..) {
            let mut q = sub.lock();
            if q.waits_for_connection() && q.watchers.len() < MAX_WATCHERS {
                gate.left.fetch_add(1, Ordering::AcqRel);
                q.watchers.push(gate.clone());
            }
        }
        if gate.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            return;
        }
        let _ = tokio::time::timeout(CATCH_UP_MAX, gate.done.notified()).await;
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        self.wake_all();
    }
}

/// Subscribers of one channel or pattern: a vector for fast fan-out, plus positions for O(1)
/// removal.
#[derive(Default)]
struct SubscriberSet {
    list: Vec<Arc<Subscriber>>,
    pos: HashMap<u64, usize>,
}

impl SubscriberSet {
    fn insert(&mut self, sub: &Arc<Subscriber>) -> bool {
        if self.pos.contains_key(&sub.id) {
            return false;
        }
        self.pos.insert(sub.id, self.list.len());
        self.list.push(sub.clone());
        true
    }

    fn remove(&mut self, id: u64) -> bool {
        let Some(i) = self.pos.remove(&id) else {
            return false;
        };
        self.list.swap_remove(i);
        if let Some(moved) = self.list.get(i) {
            self.pos.insert(moved.id, i);
        }
        true
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<Subscriber>> {
        self.list.iter()
    }

    fn len(&self) -> usize {
        self.list.len()
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Patterns indexed by literal prefix in a byte trie.
#[derive(Default)]
struct PatternIndex {
    root: TrieNode,
    /// Distinct patterns.
    count: usize,
}

#[derive(Default)]
struct TrieNode {
    /// Sorted by byte.
    children: Vec<(u8, TrieNode)>,
    /// Patterns whose indexed prefix ends at this node.
    patterns: HashMap<Bytes, SubscriberSet>,
}

impl TrieNode {
    fn child(&self, b: u8) -> Option<&TrieNode> {
        let i = self.children.binary_search_by_key(&b, |(k, _)| *k).ok()?;
        self.children.get(i).map(|(_, n)| n)
    }

    fn child_mut(&mut self, b: u8) -> Option<&mut TrieNode> {
        let i = self.children.binary_search_by_key(&b, |(k, _)| *k).ok()?;
        self.children.get_mut(i).map(|(_, n)| n)
    }

    fn child_or_insert(&mut self, b: u8) -> &mut TrieNode {
        let i = match self.children.binary_search_by_key(&b, |(k, _)| *k) {
            Ok(i) => i,
            Err(i) => {
                self.children.insert(i, (b, TrieNode::default()));
                i
            }
        };
        &mut self.children[i].1
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.patterns.is_empty()
    }
}

fn index_key(pattern: &[u8]) -> &[u8] {
    let prefix = glob::literal_prefix(pattern);
    &prefix[..prefix.len().min(MAX_INDEXED_PREFIX)]
}

impl PatternIndex {
    fn len(&self) -> usize {
        self.count
    }

    /// Adds `sub` to `pattern`'s subscribers; false if it already was one.
    fn insert(&mut self, pattern: &Bytes, sub: &Arc<Subscriber>) -> bool {
        let mut node = &mut self.root;
        for &b in index_key(pattern) {
            node = node.child_or_insert(b);
        }
        let count = &mut self.count;
        node.patterns
            .entry(pattern.clone())
            .or_insert_with(|| {
                *count += 1;
                SubscriberSet::default()
            })
            .insert(sub)
    }

    /// Removes subscriber `id` from `pattern`; prunes what becomes empty.
    fn remove(&mut self, pattern: &[u8], id: u64) -> bool {
        let key = index_key(pattern);
        let mut node = &mut self.root;
        for &b in key {
            match node.child_mut(b) {
                Some(n) => node = n,
                None => return false,
            }
        }
        let Some(set) = node.patterns.get_mut(pattern) else {
            return false;
        };
        let removed = set.remove(id);
        if set.is_empty() {
            node.patterns.remove(pattern);
            self.count -= 1;
            if node.is_empty() {
                self.prune(key);
            }
        }
        removed
    }

    /// Removes the chain of now-empty nodes ending at `key`.
    fn prune(&mut self, key: &[u8]) {
        // The deepest node on the path that must stay: the root, or one with patterns or
        // other children. Everything below it on the path goes.
        let mut keep = 0;
        let mut node = &self.root;
        for (depth, &b) in key.iter().enumerate() {
            if depth == 0 || !node.patterns.is_empty() || node.children.len() > 1 {
                keep = depth;
            }
            match node.child(b) {
                Some(n) => node = n,
                None => return,
            }
        }
        let mut node = &mut self.root;
        for &b in &key[..keep] {
            match node.child_mut(b) {
                Some(n) => node = n,
                None => return,
            }
        }
        if let Some(&cut) = key.get(keep) {
            if let Ok(i) = node.children.binary_search_by_key(&cut, |(k, _)| *k) {
                node.children.remove(i);
            }
        }
    }

    /// Whether any pattern matches `channel`.
    fn any_match(&self, channel: &[u8]) -> bool {
        let mut any = false;
        if self.count > 0 {
            self.for_each_match(channel, |_, _| any = true);
        }
        any
    }

    /// Calls `f` for every pattern matching `channel`, with its subscribers.
    fn for_each_match(&self, channel: &[u8], mut f: impl FnMut(&[u8], &SubscriberSet)) {
        let mut visit = |node: &TrieNode| {
            for (pattern, set) in &node.patterns {
                if glob::matches(pattern, channel) {
                    f(pattern, set);
                }
            }
        };
        let mut node = &self.root;
        visit(node);
        for &b in channel.iter().take(MAX_INDEXED_PREFIX) {
            match node.child(b) {
                Some(n) => node = n,
                None => break,
            }
            visit(node);
        }
    }
}

/// One client's subscriptions and its queue, without the server around it (so the hub can be
/// tested alone). Dropping it does not unsubscribe: call [`Subscriptions::clear`].
pub struct Subscriptions {
    sub: Arc<Subscriber>,
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
    shard: HashSet<Bytes>,
}

impl Subscriptions {
    pub fn new(client_id: u64) -> Subscriptions {
        Subscriptions {
            sub: Subscriber::new(client_id),
            channels: HashSet::new(),
            patterns: HashSet::new(),
            shard: HashSet::new(),
        }
    }

    pub fn set_protocol(&mut self, proto: Protocol) {
        self.sub
            .resp3
            .store(proto == Protocol::Resp3, Ordering::Relaxed);
    }

    fn set(&mut self, kind: Kind) -> &mut HashSet<Bytes> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard,
        }
    }

    /// The count Redis reports in confirmations: channels + patterns, or shard channels.
    fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Shard => self.shard.len(),
            _ => self.channels.len() + self.patterns.len(),
        }
    }

    /// Queues a `[word, name, count]` (un)subscribe confirmation behind earlier messages.
    fn confirm(
        &self,
        hub: &Hub,
        kind: Kind,
        word: &'static str,
        name: Reply,
        limit: &OutputLimit,
        wakeups: &mut Wakeups,
    ) {
        let reply = Reply::Push(vec![
            Reply::str(word),
            name,
            Reply::Int(self.count(kind) as i64),
        ]);
        hub.push_one(
            &self.sub,
            &reply.to_bytes(self.sub.protocol()),
            limit,
            false,
            wakeups,
        );
    }

    /// Subscriptions of every kind: non-zero puts a RESP2 client in subscribed mode.
    pub fn total(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shard.len()
    }

    /// (P|S)SUBSCRIBE: subscribes to each name and queues one confirmation per name.
    pub fn subscribe(&mut self, hub: &Hub, kind: Kind, names: &[Bytes]) {
        let mut wakeups = Wakeups::default();
        let limit = hub.output_limit();
        let mut state = hub.write();
        for name in names {
            let new = self.set(kind).insert(name.clone());
            if new {
                match kind {
                    Kind::Channel => {
                        state
                            .channels
                            .entry(name.clone())
                            .or_default()
                            .insert(&self.sub);
                    }
                    Kind::Shard => {
                        state
                            .shard_channels
                            .entry(name.clone())
                            .or_default()
                            .insert(&self.sub);
                    }
                    Kind::Pattern => {
                        state.patterns.insert(name, &self.sub);
                    }
                }
            }
            let name = Reply::Bulk(name.clone());
            self.confirm(hub, kind, kind.subscribe_word(), name, &limit, &mut wakeups);
        }
    }

    /// (P|S)UNSUBSCRIBE: unsubscribes from each name (every subscription of that kind when
    /// `names` is empty) and queues one confirmation per name, or one with a nil name when
    /// there was nothing to unsubscribe from.
    pub fn unsubscribe(&mut self, hub: &Hub, kind: Kind, names: &[Bytes]) {
        let mut wakeups = Wakeups::default();
        let limit = hub.output_limit();
        let mut state = hub.write();
        let all: Vec<Bytes>;
        let names = if names.is_empty() {
            all = self.set(kind).iter().cloned().collect();
            if all.is_empty() {
                let word = kind.unsubscribe_word();
                self.confirm(hub, kind, word, Reply::Null, &limit, &mut wakeups);
                return;
            }
            &all[..]
        } else {
            names
        };
        for name in names {
            if self.set(kind).remove(name) {
                remove_from(&mut state, kind, name, self.sub.id);
            }
            let name = Reply::Bulk(name.clone());
            self.confirm(
                hub,
                kind,
                kind.unsubscribe_word(),
                name,
                &limit,
                &mut wakeups,
            );
        }
    }

    /// Drops every subscription without confirmations (RESET, disconnect).
    pub fn clear(&mut self, hub: &Hub) {
        if self.total() == 0 {
            return;
        }
        let mut state = hub.write();
        for kind in [Kind::Channel, Kind::Pattern, Kind::Shard] {
            for name in std::mem::take(self.set(kind)) {
                remove_from(&mut state, kind, &name, self.sub.id);
            }
        }
    }

    /// The next queued item(s), waiting for one. `None` once cut off by the output limit.
    #[cfg(test)]
    pub async fn recv(&self) -> Option<Bytes> {
        loop {
            match self.sub.take() {
                Err(()) => return None,
                Ok(Some(b)) => return Some(b),
                Ok(None) => self.sub.notify.notified().await,
            }
        }
    }

    /// The queued item(s), without waiting. `Err` once cut off by the output limit.
    #[cfg(test)]
    #[allow(clippy::result_unit_err)]
    pub fn try_recv(&self) -> Result<Option<Bytes>, ()> {
        self.sub.take()
    }

    /// Appends queued items to `out` (about [`RECV_BATCH_BYTES`] at most), without waiting.
    /// `Err` once cut off by the output limit.
    #[allow(clippy::result_unit_err)]
    pub fn take_into(&self, out: &mut BytesMut) -> Result<Taken, ()> {
        self.sub.take_into(out)
    }

    /// Completes once items are queued (true) or the subscriber is cut off (false).
    /// Cancel-safe.
    pub async fn ready(&self) -> bool {
        self.sub.ready().await
    }

    /// Bytes queued and not yet taken by the connection.
    pub fn queued_bytes(&self) -> u64 {
        self.sub.queued_bytes()
    }

    /// Completes once the subscriber has been cut off by the output limit.
    pub async fn cut_off(&self) {
        self.sub.cut_off().await
    }
}

fn remove_from(state: &mut State, kind: Kind, name: &[u8], id: u64) {
    let map = match kind {
        Kind::Channel => &mut state.channels,
        Kind::Shard => &mut state.shard_channels,
        Kind::Pattern => {
            state.patterns.remove(name, id);
            return;
        }
    };
    if let Some(set) = map.get_mut(name) {
        set.remove(id);
        if set.is_empty() {
            map.remove(name);
        }
    }
}

/// A connection's hold on its subscriber while it writes: [`CutOffSignal::wait`] completes
/// once the subscriber is cut off by the output limit.
pub struct CutOffSignal(Arc<Subscriber>);

impl CutOffSignal {
    /// Cancel-safe.
    pub async fn wait(&self) {
        self.0.cut_off().await
    }
}

/// Consecutive PUBLISHes (or SPUBLISHes) to one channel in a client's pipeline, gathered to
/// be executed together by [`Session::publish_run`].
#[derive(Debug)]
pub struct PublishRun {
    kind: Kind,
    channel: Bytes,
    messages: Vec<Bytes>,
    /// Bytes of `messages`: a run ends at about [`RECV_BATCH_BYTES`], so what a subscriber
    /// gets as one item stays about what its connection takes at once.
    bytes: usize,
}

impl Default for PublishRun {
    fn default() -> Self {
        PublishRun {
            kind: Kind::Channel,
            channel: Bytes::new(),
            messages: Vec::new(),
            bytes: 0,
        }
    }
}

impl PublishRun {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Whether a publish of `kind` to `channel` may join the run: it is empty, or of the same
    /// channel and not full.
    pub fn admits(&self, kind: Kind, channel: &[u8]) -> bool {
        self.messages.is_empty()
            || (self.kind == kind && self.channel == channel && self.bytes < RECV_BATCH_BYTES)
    }

    /// The commandstats name of the run's commands.
    pub fn command_name(&self) -> &'static str {
        match self.kind {
            Kind::Shard => "spublish",
            _ => "publish",
        }
    }

    /// Adds a publish; the caller has checked [`PublishRun::admits`].
    pub fn push(&mut self, kind: Kind, channel: Bytes, message: Bytes) {
        if self.messages.is_empty() {
            self.kind = kind;
            self.channel = channel;
        }
        self.bytes += message.len();
        self.messages.push(message);
    }
}

/// One connection's subscriptions and its queue of messages to deliver. Dropping it
/// unsubscribes from everything.
pub struct Session {
    shared: Arc<Shared>,
    subs: Subscriptions,
    /// Subscribers this client's PUBLISHes queued to and that are not woken yet.
    wakeups: Wakeups,
    /// Joins a subscriber's queued messages into one write.
    scratch: BytesMut,
    /// This client's connection had to wait for the input it is executing: see
    /// [`Session::set_input_waited`].
    input_waited: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("client_id", &self.subs.sub.id)
            .field("channels", &self.subs.channels.len())
            .field("patterns", &self.subs.patterns.len())
            .field("shard_channels", &self.subs.shard.len())
            .finish()
    }
}

impl Session {
    pub fn new(shared: &Arc<Shared>, client_id: u64) -> Session {
        // Picks up the configured limit (startup arguments, or a CONFIG SET that did not
        // call `Hub::set_output_limit` itself) for every subscriber from now on.
        let limit = shared.config().output_pubsub;
        if shared.hub.output_limit() != limit {
            shared.hub.set_output_limit(limit);
        }
        Session {
            shared: shared.clone(),
            subs: Subscriptions::new(client_id),
            wakeups: Wakeups::default(),
            scratch: BytesMut::new(),
            input_waited: false,
        }
    }

    /// The hub this session subscribes in.
    pub fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    /// The protocol messages are encoded for (changes with HELLO).
    pub fn set_protocol(&mut self, proto: Protocol) {
        self.subs.set_protocol(proto);
    }

    /// Channel subscriptions (CLIENT LIST `sub`).
    pub fn channels(&self) -> usize {
        self.subs.channels.len()
    }

    /// Pattern subscriptions (CLIENT LIST `psub`).
    pub fn patterns(&self) -> usize {
        self.subs.patterns.len()
    }

    /// Shard-channel subscriptions (CLIENT LIST `ssub`).
    pub fn shard_channels(&self) -> usize {
        self.subs.shard.len()
    }

    /// True while the client has any subscription: under RESP2 it is then in subscribed mode
    /// and only the (P|S)(UN)SUBSCRIBE family, PING, QUIT and RESET may run.
    pub fn is_subscribed(&self) -> bool {
        self.subs.total() > 0
    }

    /// Bytes queued for the client and not yet taken by the connection (CLIENT LIST `omem`).
    pub fn queued_bytes(&self) -> u64 {
        self.subs.queued_bytes()
    }

    pub fn subscribe(&mut self, kind: Kind, names: &[Bytes]) {
        self.subs.subscribe(&self.shared.hub, kind, names);
    }

    /// PUBLISH (or SPUBLISH for [`Kind::Shard`]) from this client. The receivers are woken by
    /// [`Session::wake_subscribers`], which the connection calls once its run of pipelined
    /// PUBLISHes ends (and before anything else), or when the session is dropped.
    pub fn publish(&mut self, kind: Kind, channel: &[u8], message: &[u8]) -> usize {
        let hub = &self.shared.hub;
        match kind {
            Kind::Shard => hub.spublish_deferred(channel, message, &mut self.wakeups),
            _ => hub.publish_deferred(channel, message, &mut self.wakeups),
        }
    }

    /// Executes `run`'s PUBLISHes (or SPUBLISHes) together (see [`Hub::publish_run`]),
    /// emptying it; returns each one's receivers. Woken as [`Session::publish`]'s.
    pub fn publish_run(&mut self, run: &mut PublishRun) -> Vec<usize> {
        let counts =
            self.shared
                .hub
                .publish_run(run.kind, &run.channel, &run.messages, &mut self.wakeups);
        run.messages.clear();
        run.bytes = 0;
        counts
    }

    /// This client's PUBLISHes queued messages that [`Session::wake_subscribers`] has not
    /// delivered yet.
    pub fn has_deliveries(&self) -> bool {
        !self.wakeups.is_empty()
    }

    /// Delivers what this client's PUBLISHes queued: written to the sockets of parked
    /// subscribers by this call (see the module's notes), the other subscribers woken.
    pub fn wake_subscribers(&mut self) {
        if self.wakeups.is_empty() {
            return;
        }
        let written = self
            .wakeups
            .deliver_all(&mut self.scratch, self.input_waited);
        if written > 0 {
            self.shared
                .stats
                .net_output_bytes
                .fetch_add(written, Ordering::Relaxed);
        }
    }

    /// Whether this client's connection had to wait for the input it executes next. If it
    /// did, the server was idle as far as this publisher goes, and the batch's deliveries
    /// are written by it at once, up to [`IDLE_DIRECT_MAX_FAN_OUT`] subscribers (Redis'
    /// order: one write each, in one pass). If its input was already there, it is
    /// publishing as fast as it is answered, and a fan-out beyond [`DIRECT_MAX_FAN_OUT`] is
    /// left to the subscribers' connections, which coalesce batches.
    pub fn set_input_waited(&mut self, waited: bool) {
        self.input_waited = waited;
    }

    /// Before this client's replies are written and its next input is read: waits until the
    /// subscribers its PUBLISHes found lagging (woken for earlier messages, their connections
    /// not run since) have taken them, for at most [`CATCH_UP_MAX`]. A publisher in a closed
    /// loop then cannot run ever further ahead of deliveries that wait only for a CPU, as
    /// Redis writes every subscriber in the loop turn that read the PUBLISH. Messages still
    /// coalesce: a subscriber gets all it was queued in one write. A subscriber busy writing
    /// to its socket, or with a command of its own, is never waited for.
    pub async fn catch_up(&mut self) {
        self.wakeups.catch_up().await
    }

    /// Whether this client's PUBLISHes found subscribers lagging: its replies then wait for
    /// [`Session::catch_up`].
    pub fn is_ahead(&self) -> bool {
        !self.wakeups.lagging.is_empty()
    }

    /// Lets publishers write this client's messages to `out`, its socket's write side, while
    /// its connection is parked ([`Session::park`]).
    pub fn set_direct(&self, out: Arc<dyn DirectOut>) {
        self.subs.sub.lock().direct = Some(out);
    }

    /// The connection is about to wait for input with nothing of its own to write. True if
    /// it is now parked: publishers may write to its socket until [`Session::unpark`]. False
    /// if messages are queued: take and write them first, then try again. `Err` once cut off.
    #[allow(clippy::result_unit_err)]
    pub fn park(&self) -> Result<bool, ()> {
        self.subs.sub.park()
    }

    /// The connection woke up: it writes to its socket itself from now on.
    pub fn unpark(&self) {
        self.subs.sub.unpark()
    }

    pub fn unsubscribe(&mut self, kind: Kind, names: &[Bytes]) {
        self.subs.unsubscribe(&self.shared.hub, kind, names);
    }

    /// Appends what is queued now to `out`, without waiting: the connection writes it
    /// before a command's reply, so messages published before the command ran precede its
    /// reply. `Err` once cut off by the output limit.
    #[allow(clippy::result_unit_err)]
    pub fn take_into(&self, out: &mut BytesMut) -> Result<Taken, ()> {
        self.subs.take_into(out)
    }

    /// Completes once messages or confirmations are queued (true), or the subscriber is cut
    /// off for exceeding its output limit (false: close the connection). Takes nothing, so
    /// it is cancel-safe (used in `select!`); [`Session::take_into`] takes them.
    pub async fn ready(&self) -> bool {
        self.subs.ready().await
    }

    /// A handle that completes once this subscriber is cut off, for the connection to select
    /// on while it writes (it cannot borrow the session there).
    pub fn cut_off_signal(&self) -> CutOffSignal {
        CutOffSignal(self.subs.sub.clone())
    }

    /// Drops every subscription (RESET, disconnect).
    pub fn clear(&mut self) {
        self.subs.clear(&self.shared.hub);
    }

    /// Completes once the subscriber has been cut off by the output limit. A connection
    /// awaiting a socket write (to a client that does not read) selects on this to close
    /// instead of waiting forever. Cancel-safe.
    pub async fn cut_off(&self) {
        self.subs.cut_off().await
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The error for any other command in RESP2 subscribed mode; `full_name` is lowercase with
/// the subcommand as Redis names it (`get`, `pubsub|numpat`).
pub fn subscribed_mode_error(full_name: &str) -> Reply {
    Reply::err(format!(
        "Can't execute '{full_name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn drain(s: &Subscriptions) -> Vec<u8> {
        let mut out = Vec::new();
        while let Ok(Some(b)) = s.try_recv() {
            out.extend_from_slice(&b);
        }
        out
    }

    #[test]
    fn subscribe_confirmations_and_counts() {
        let hub = Hub::default();
        let mut a = Subscriptions::new(1);
        a.subscribe(&hub, Kind::Channel, &[b("c1"), b("c1")]);
        a.subscribe(&hub, Kind::Pattern, &[b("p*")]);
        assert_eq!(
            drain(&a),
            b"*3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:1\r\n\
              *3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:2\r\n"
        );
        a.unsubscribe(&hub, Kind::Channel, &[b("zz")]);
        assert_eq!(drain(&a), b"*3\r\n$11\r\nunsubscribe\r\n$2\r\nzz\r\n:2\r\n");
        a.unsubscribe(&hub, Kind::Channel, &[]);
        assert_eq!(drain(&a), b"*3\r\n$11\r\nunsubscribe\r\n$2\r\nc1\r\n:1\r\n");
        a.unsubscribe(&hub, Kind::Channel, &[]);
        assert_eq!(drain(&a), b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:1\r\n");
        a.set_protocol(Protocol::Resp3);
        a.unsubscribe(&hub, Kind::Pattern, &[]);
        assert_eq!(
            drain(&a),
            b">3\r\n$12\r\npunsubscribe\r\n$2\r\np*\r\n:0\r\n"
        );
        a.subscribe(&hub, Kind::Shard, &[b("s1"), b("s2")]);
        a.subscribe(&hub, Kind::Channel, &[b("c")]);
        assert_eq!(
            drain(&a),
            b">3\r\n$10\r\nssubscribe\r\n$2\r\ns1\r\n:1\r\n>3\r\n$10\r\nssubscribe\r\n$2\r\ns2\r\n:2\r\n\
              >3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"
        );
        assert_eq!(a.total(), 3);
        a.clear(&hub);
        assert_eq!(a.total(), 0);
        assert_eq!(hub.numpat(), 0);
        assert!(hub.channels(Kind::Channel, None).is_empty());
        assert!(hub.channels(Kind::Shard, None).is_empty());
    }

    #[test]
    fn publish_counts_patterns_and_channels() {
        let hub = Hub::default();
        let mut a = Subscriptions::new(1);
        let mut c = Subscriptions::new(2);
        a.subscribe(&hub, Kind::Channel, &[b("news.tech")]);
        a.subscribe(&hub, Kind::Pattern, &[b("news.*"), b("*")]);
        c.subscribe(&hub, Kind::Pattern, &[b("news.*")]);
        c.subscribe(&hub, Kind::Shard, &[b("news.tech")]);
        drain(&a);
        drain(&c);
        assert_eq!(hub.publish(b"news.tech", b"hi"), 4);
        assert_eq!(hub.publish(b"other", b"x"), 1);
        assert_eq!(hub.spublish(b"news.tech", b"s"), 1);
        assert_eq!(hub.numpat(), 2);
        assert_eq!(
            hub.numsub(Kind::Channel, &[b("news.tech"), b("nope")]),
            vec![(b("news.tech"), 1), (b("nope"), 0)]
        );
        let got = drain(&a);
        let text = String::from_utf8(got).unwrap();
        assert!(text.starts_with("*3\r\n$7\r\nmessage\r\n$9\r\nnews.tech\r\n$2\r\nhi\r\n"));
        assert!(text
            .contains("*4\r\n$8\r\npmessage\r\n$6\r\nnews.*\r\n$9\r\nnews.tech\r\n$2\r\nhi\r\n"));
        assert!(text.contains("*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$9\r\nnews.tech\r\n$2\r\nhi\r\n"));
        assert!(text.ends_with("*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$5\r\nother\r\n$1\r\nx\r\n"));
        let text = String::from_utf8(drain(&c)).unwrap();
        assert!(text.ends_with("*3\r\n$8\r\nsmessage\r\n$9\r\nnews.tech\r\n$1\r\ns\r\n"));
        let mut chans = hub.channels(Kind::Channel, Some(b"news.*"));
        chans.sort();
        assert_eq!(chans, vec![b("news.tech")]);
        a.clear(&hub);
        c.clear(&hub);
        assert_eq!(hub.publish(b"news.tech", b"hi"), 0);
    }

    #[test]
    fn shared_encoding_per_protocol() {
        let hub = Hub::default();
        let mut subs: Vec<Subscriptions> = (0..4).map(Subscriptions::new).collect();
        for (i, s) in subs.iter_mut().enumerate() {
            if i % 2 == 1 {
                s.set_protocol(Protocol::Resp3);
            }
            s.subscribe(&hub, Kind::Channel, &[b("c")]);
            drain(s);
        }
        assert_eq!(hub.publish(b"c", b"m"), 4);
        let got: Vec<Bytes> = subs
            .iter()
            .map(|s| s.try_recv().unwrap().unwrap())
            .collect();
        assert_eq!(
            &got[0][..],
            b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n"
        );
        assert_eq!(
            &got[1][..],
            b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n"
        );
        // One buffer per protocol, shared by every receiver.
        assert_eq!(got[0].as_ptr(), got[2].as_ptr());
        assert_eq!(got[1].as_ptr(), got[3].as_ptr());
    }

    fn run(hub: &Hub, kind: Kind, channel: &str, msgs: &[&str]) -> Vec<usize> {
        let msgs: Vec<Bytes> = msgs.iter().map(|m| b(m)).collect();
        let mut wakeups = Wakeups::default();
        hub.publish_run(kind, channel.as_bytes(), &msgs, &mut wakeups)
    }

    fn encoded(proto: Protocol, kind: &[u8], pattern: Option<&str>, chan: &str, m: &str) -> Bytes {
        let pattern = pattern.map(str::as_bytes);
        encode_message(proto, kind, pattern, chan.as_bytes(), m.as_bytes())
    }

    #[test]
    fn a_run_reaches_each_subscriber_as_one_item_in_order() {
        let hub = Hub::default();
        let mut subs: Vec<Subscriptions> = (0..3).map(Subscriptions::new).collect();
        subs[1].set_protocol(Protocol::Resp3);
        for s in &mut subs {
            s.subscribe(&hub, Kind::Channel, &[b("c")]);
            s.subscribe(&hub, Kind::Shard, &[b("c")]);
            drain(s);
        }
        let check = |kind: &[u8], msgs: &[&str]| {
            let got: Vec<Bytes> = subs
                .iter()
                .map(|s| s.try_recv().unwrap().unwrap())
                .collect();
            for (i, got) in got.iter().enumerate() {
                let proto = if i == 1 {
                    Protocol::Resp3
                } else {
                    Protocol::Resp2
                };
                let mut want = BytesMut::new();
                for m in msgs {
                    want.put_slice(&encoded(proto, kind, None, "c", m));
                }
                assert_eq!(got, &want);
            }
            // The whole run is one queued item, shared by the receivers of a protocol.
            assert_eq!(got[0].as_ptr(), got[2].as_ptr());
            for s in &subs {
                assert_eq!(s.queued_bytes(), 0);
            }
        };
        assert_eq!(
            run(&hub, Kind::Channel, "c", &["m1", "m2", "m3"]),
            [3, 3, 3]
        );
        check(b"message", &["m1", "m2", "m3"]);
        assert_eq!(run(&hub, Kind::Shard, "c", &["s1", "s2"]), [3, 3]);
        check(b"smessage", &["s1", "s2"]);
        assert_eq!(run(&hub, Kind::Channel, "none", &["x", "y"]), [0, 0]);
    }

    #[test]
    fn a_run_to_a_channel_a_pattern_matches_keeps_each_message_before_its_pmessage() {
        let hub = Hub::default();
        let mut both = Subscriptions::new(1);
        let mut plain = Subscriptions::new(2);
        both.subscribe(&hub, Kind::Channel, &[b("c")]);
        both.subscribe(&hub, Kind::Pattern, &[b("c*")]);
        plain.subscribe(&hub, Kind::Channel, &[b("c")]);
        drain(&both);
        drain(&plain);
        assert_eq!(run(&hub, Kind::Channel, "c", &["m1", "m2"]), [3, 3]);
        let mut want = Vec::new();
        for m in ["m1", "m2"] {
            want.extend_from_slice(&encoded(Protocol::Resp2, b"message", None, "c", m));
            want.extend_from_slice(&encoded(Protocol::Resp2, b"pmessage", Some("c*"), "c", m));
        }
        assert_eq!(drain(&both), want);
        let mut want = Vec::new();
        for m in ["m1", "m2"] {
            want.extend_from_slice(&encoded(Protocol::Resp2, b"message", None, "c", m));
        }
        assert_eq!(drain(&plain), want);
    }

    #[test]
    fn a_run_cuts_a_subscriber_off_at_the_message_that_takes_it_over_its_limit() {
        let hub = Hub::default();
        let one = encoded(Protocol::Resp2, b"message", None, "c", "m").len() as u64;
        hub.set_output_limit(OutputLimit {
            hard: 3 * one,
            soft: 0,
            soft_seconds: 0,
        });
        let mut empty = Subscriptions::new(1);
        let mut behind = Subscriptions::new(2);
        let mut reading = Subscriptions::new(3);
        for s in [&mut empty, &mut behind, &mut reading] {
            s.subscribe(&hub, Kind::Channel, &[b("c")]);
            drain(s);
        }
        assert_eq!(hub.publish(b"c", b"m"), 3);
        drain(&empty);
        drain(&reading);
        // `behind` holds one message: its second of the run reaches the limit, `empty`'s
        // third does; as when they are published one by one, a receiver counts up to and
        // including the message that cut it off.
        assert_eq!(run(&hub, Kind::Channel, "c", &["m", "m"]), [3, 3]);
        drain(&reading);
        assert!(behind.try_recv().is_err());
        assert_eq!(run(&hub, Kind::Channel, "c", &["m", "m"]), [2, 1]);
        assert!(empty.try_recv().is_err());
        assert_eq!(hub.output_limit_disconnections(), 2);
        assert_eq!(drain(&reading).len() as u64, 2 * one);
    }

    #[test]
    fn take_into_appends_in_order_and_caps_a_batch() {
        let hub = Hub::default();
        let mut s = Subscriptions::new(1);
        s.subscribe(&hub, Kind::Channel, &[b("c")]);
        drain(&s);
        // More items than one lock round takes: all of them, in order.
        for i in 0..100 {
            hub.publish(b"c", format!("m{i}").as_bytes());
        }
        let mut out = BytesMut::from(&b"reply;"[..]);
        assert_eq!(s.take_into(&mut out), Ok(Taken::Messages));
        let mut want = b"reply;".to_vec();
        for i in 0..100 {
            want.extend_from_slice(&encode_message(
                Protocol::Resp2,
                b"message",
                None,
                b"c",
                format!("m{i}").as_bytes(),
            ));
        }
        assert_eq!(&out[..], &want[..]);
        assert_eq!(s.queued_bytes(), 0);
        assert_eq!(s.take_into(&mut out), Ok(Taken::Nothing));
        // About RECV_BATCH_BYTES per call, and always at least one item.
        let big = vec![b'x'; RECV_BATCH_BYTES * 2 / 3];
        for _ in 0..3 {
            hub.publish(b"c", &big);
        }
        let one = encode_message(Protocol::Resp2, b"message", None, b"c", &big).len();
        for left in [2, 1, 0] {
            let mut out = BytesMut::new();
            assert_eq!(s.take_into(&mut out), Ok(Taken::Messages));
            assert_eq!(out.len(), one);
            assert_eq!(s.queued_bytes(), (left * one) as u64);
        }
        s.clear(&hub);
    }

    #[test]
    fn hard_limit_cuts_off_only_the_slow_subscriber() {
        let hub = Hub::default();
        hub.set_output_limit(OutputLimit {
            hard: 1000,
            soft: 0,
            soft_seconds: 0,
        });
        let mut slow = Subscriptions::new(1);
        let mut fast = Subscriptions::new(2);
        slow.subscribe(&hub, Kind::Channel, &[b("c")]);
        fast.subscribe(&hub, Kind::Channel, &[b("c")]);
        drain(&slow);
        drain(&fast);
        let payload = [b'x'; 100];
        let mut received = 0;
        for _ in 0..50 {
            hub.publish(b"c", &payload);
            while let Ok(Some(b)) = fast.try_recv() {
                received += b.len();
            }
        }
        assert_eq!(received, 50 * (payload.len() + 32));
        assert!(slow.try_recv().is_err());
        assert_eq!(hub.output_limit_disconnections(), 1);
        // A cut-off subscriber no longer counts as a receiver.
        assert_eq!(hub.publish(b"c", b"m"), 1);
        slow.clear(&hub);
        fast.clear(&hub);
    }

    #[test]
    fn soft_limit_needs_time_over_it() {
        let hub = Hub::default();
        hub.set_output_limit(OutputLimit {
            hard: 0,
            soft: 100,
            soft_seconds: 0,
        });
        let mut s = Subscriptions::new(1);
        s.subscribe(&hub, Kind::Channel, &[b("c")]);
        let big = [b'x'; 200];
        hub.publish(b"c", &big);
        assert!(
            s.try_recv().unwrap().is_some(),
            "first time over: only noted"
        );
        hub.publish(b"c", &big);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        hub.publish(b"c", &big);
        assert!(s.try_recv().is_err(), "over the soft limit for > 0 s");
        s.clear(&hub);
    }

    #[tokio::test]
    async fn cut_off_wakes_a_writer_and_recv_ends() {
        let hub = Arc::new(Hub::default());
        hub.set_output_limit(OutputLimit {
            hard: 100,
            soft: 0,
            soft_seconds: 0,
        });
        let mut s = Subscriptions::new(1);
        s.subscribe(&hub, Kind::Channel, &[b("c")]);
        let h = hub.clone();
        let t = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            h.publish(b"c", &[b'x'; 200])
        });
        tokio::time::timeout(std::time::Duration::from_secs(5), s.cut_off())
            .await
            .unwrap();
        assert_eq!(
            t.await.unwrap(),
            1,
            "counted in the publish that cut it off"
        );
        assert!(s.recv().await.is_none());
        s.clear(&hub);
    }

    #[tokio::test]
    async fn deferred_wakeups_wake_once_at_the_end() {
        let hub = Hub::default();
        let mut s = Subscriptions::new(1);
        s.subscribe(&hub, Kind::Channel, &[b("c")]);
        assert!(s.recv().await.is_some());
        // The confirmation's wake-up left a permit behind (recv found the item first).
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(10),
            s.sub.notify.notified(),
        )
        .await;
        let mut wakeups = Wakeups::default();
        for _ in 0..16 {
            assert_eq!(hub.publish_deferred(b"c", b"m", &mut wakeups), 1);
        }
        assert_eq!(wakeups.subs.len(), 1, "one wake-up for the whole batch");
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), async {
            s.sub.notify.notified().await
        });
        assert!(waiting.await.is_err(), "nobody woken before wake_all");
        drop(wakeups);
        let batch = tokio::time::timeout(std::time::Duration::from_secs(5), s.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            batch.len(),
            16 * b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n".len()
        );
        s.clear(&hub);
    }

    /// Publishes `n` messages to `c` as one round of a publisher, waking the subscribers;
    /// returns how many subscribers the round found lagging.
    fn round(hub: &Hub, wakeups: &mut Wakeups, n: usize) -> usize {
        for _ in 0..n {
            hub.publish_deferred(b"c", b"m", wakeups);
        }
        wakeups.wake_all();
        std::mem::take(&mut wakeups.lagging).len()
    }

    #[test]
    fn a_subscriber_lags_only_while_woken_and_not_run() {
        let hub = Hub::default();
        let (mut s, _out) = parked_subscriber(&hub, 0);
        let mut wakeups = Wakeups::default();
        assert_eq!(
            round(&hub, &mut wakeups, 16),
            0,
            "nothing was queued before"
        );
        assert_eq!(round(&hub, &mut wakeups, 1), 1, "woken, parked, not run");
        // Its connection runs: taking unparks it.
        assert!(s.try_recv().unwrap().is_some());
        assert_eq!(round(&hub, &mut wakeups, 1), 0, "taken since");
        // Unparked with messages queued: busy writing to its socket or running a command
        // of its own. A slow socket never paces the publisher.
        assert_eq!(round(&hub, &mut wakeups, 1), 0);
        // Parked again (its queue drained): lags again once woken and not run.
        while s.try_recv().unwrap().is_some() {}
        assert_eq!(s.sub.park(), Ok(true));
        assert_eq!(round(&hub, &mut wakeups, 1), 0);
        assert_eq!(round(&hub, &mut wakeups, 1), 1);
        s.clear(&hub);
    }

    #[tokio::test]
    async fn catch_up_lets_lagging_connections_run_first() {
        let hub = Hub::default();
        let (s, _out) = parked_subscriber(&hub, 0);
        let s = Arc::new(Mutex::new(vec![s]));
        let mut wakeups = Wakeups::default();
        round(&hub, &mut wakeups, 3);
        for _ in 0..3 {
            hub.publish_deferred(b"c", b"m", &mut wakeups);
        }
        wakeups.wake_all();
        assert_eq!(wakeups.lagging.len(), 1);
        // The subscriber's connection, woken, runs on the same thread once the publisher
        // waits, and its taking wakes the publisher.
        let taker = run_connections(&s);
        let started = Instant::now();
        wakeups.catch_up().await;
        assert!(started.elapsed() < CATCH_UP_MAX);
        assert!(taker.is_finished(), "caught up before the subscriber ran");
        assert_eq!(taker.await.unwrap(), 6 * message_bytes("c", "m").len());
        assert!(wakeups.lagging.is_empty());
        s.lock().unwrap()[0].clear(&hub);
    }

    /// What the subscribers' connections do once they run: take their queues. The task
    /// returns the bytes taken.
    fn run_connections(subs: &Arc<Mutex<Vec<Subscriptions>>>) -> tokio::task::JoinHandle<usize> {
        let subs = subs.clone();
        tokio::spawn(async move {
            let mut out = BytesMut::new();
            for s in subs.lock().unwrap().iter() {
                s.take_into(&mut out).unwrap();
            }
            out.len()
        })
    }

    /// Two publishes to `c`, the subscriber's connection not running between them: it lags.
    fn lag(hub: &Hub, wakeups: &mut Wakeups) {
        round(hub, wakeups, 1);
        hub.publish_deferred(b"c", b"m", wakeups);
        wakeups.wake_all();
        assert_eq!(wakeups.lagging.len(), 1);
    }

    #[tokio::test]
    async fn a_publisher_is_ahead_while_its_batch_found_a_subscriber_not_run() {
        let (_dir, shared) = Shared::for_test();
        // More parked subscribers than a publisher whose input was already there writes to
        // itself ([`DIRECT_MAX_FAN_OUT`]): its end of batch wakes their connections.
        let out = fake(usize::MAX);
        let subs: Vec<Subscriptions> = (0..=DIRECT_MAX_FAN_OUT as u64)
            .map(|id| {
                let s = direct_subscriber(&shared.hub, id + 10, "c", &out);
                assert_eq!(s.sub.park(), Ok(true));
                s
            })
            .collect();
        let receivers = subs.len();
        let mut p = Session::new(&shared, 2);
        assert_eq!(p.publish(Kind::Channel, b"c", b"m"), receivers);
        assert!(!p.is_ahead(), "the subscribers held nothing before");
        p.wake_subscribers();
        assert_eq!(p.publish(Kind::Channel, b"c", b"m"), receivers);
        assert!(
            p.is_ahead(),
            "woken for the first message and not run since"
        );
        p.wake_subscribers();
        assert!(
            p.is_ahead(),
            "until their connections run, or the wait gives up"
        );
        let subs = Arc::new(Mutex::new(subs));
        let takers = run_connections(&subs);
        let started = Instant::now();
        p.catch_up().await;
        assert!(started.elapsed() < CATCH_UP_MAX);
        assert!(takers.is_finished(), "caught up before the connections ran");
        assert_eq!(
            takers.await.unwrap(),
            receivers * 2 * message_bytes("c", "m").len()
        );
        assert!(!p.is_ahead());
        for s in subs.lock().unwrap().iter_mut() {
            s.clear(&shared.hub);
        }
    }

    #[tokio::test]
    async fn catch_up_ends_when_a_lagging_connection_goes_away() {
        let hub = Hub::default();
        let (mut s, _out) = parked_subscriber(&hub, 0);
        let mut wakeups = Wakeups::default();
        lag(&hub, &mut wakeups);
        s.clear(&hub);
        // The connection closes without taking its messages: its queue is dropped.
        let closer = tokio::spawn(async move { drop(s) });
        let started = Instant::now();
        wakeups.catch_up().await;
        assert!(closer.is_finished());
        assert!(started.elapsed() < CATCH_UP_MAX);
    }

    #[tokio::test]
    async fn catch_up_gives_up_on_a_connection_that_does_not_run() {
        let hub = Hub::default();
        let (mut s, _out) = parked_subscriber(&hub, 0);
        let mut wakeups = Wakeups::default();
        lag(&hub, &mut wakeups);
        let started = Instant::now();
        wakeups.catch_up().await;
        assert!(started.elapsed() >= CATCH_UP_MAX);
        assert!(wakeups.lagging.is_empty());
        s.clear(&hub);
    }

    #[tokio::test]
    async fn recv_wakes_on_publish() {
        let hub = Arc::new(Hub::default());
        let mut s = Subscriptions::new(1);
        s.subscribe(&hub, Kind::Channel, &[b("c")]);
        assert!(s.recv().await.is_some());
        let h = hub.clone();
        let t = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            h.publish(b"c", b"late")
        });
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), s.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(got.ends_with(b"late\r\n"));
        assert_eq!(t.await.unwrap(), 1);
        s.clear(&hub);
    }

    #[test]
    fn prefixes_longer_than_the_index_still_match_exactly() {
        let hub = Hub::default();
        let mut s = Subscriptions::new(1);
        let long = "a".repeat(MAX_INDEXED_PREFIX + 36);
        s.subscribe(&hub, Kind::Pattern, &[b(&format!("{long}*")), b(&long)]);
        assert_eq!(hub.publish(format!("{long}xyz").as_bytes(), b"m"), 1);
        assert_eq!(hub.publish(long.as_bytes(), b"m"), 2);
        assert_eq!(hub.publish(&long.as_bytes()[1..], b"m"), 0);
        let mut other = long.clone().into_bytes();
        other[MAX_INDEXED_PREFIX + 1] = b'b';
        assert_eq!(hub.publish(&other, b"m"), 0);
        s.clear(&hub);
        assert!(hub.read().patterns.root.is_empty());
    }

    #[test]
    fn trie_prunes_to_empty() {
        let hub = Hub::default();
        let mut s = Subscriptions::new(1);
        let pats = [b("abc*"), b("ab*"), b("abd?"), b("*"), b("x[yz]")];
        s.subscribe(&hub, Kind::Pattern, &pats);
        assert_eq!(hub.numpat(), 5);
        s.unsubscribe(&hub, Kind::Pattern, &[b("ab*")]);
        assert_eq!(hub.publish(b"abcd", b"m"), 2);
        s.clear(&hub);
        let state = hub.read();
        assert!(state.patterns.root.is_empty());
        assert_eq!(state.patterns.len(), 0);
    }

    #[test]
    fn keyspace_notifications() {
        let hub = Hub::default();
        let mut s = Subscriptions::new(1);
        s.subscribe(&hub, Kind::Pattern, &[b("__key*__:*")]);
        drain(&s);
        let events = [
            KeyspaceEvent {
                class: 't',
                event: "xadd",
                db: 0,
                key: b("s1"),
            },
            KeyspaceEvent {
                class: 'g',
                event: "del",
                db: 3,
                key: b("k"),
            },
        ];
        hub.notify_keyspace(&KeyspaceFlags::parse("KEt").unwrap(), &events);
        let text = String::from_utf8(drain(&s)).unwrap();
        assert_eq!(
            text,
            "*4\r\n$8\r\npmessage\r\n$10\r\n__key*__:*\r\n$17\r\n__keyspace@0__:s1\r\n$4\r\nxadd\r\n\
             *4\r\n$8\r\npmessage\r\n$10\r\n__key*__:*\r\n$19\r\n__keyevent@0__:xadd\r\n$2\r\ns1\r\n"
        );
        s.clear(&hub);
    }

    #[test]
    fn taking_a_keyspace_notification_is_reported() {
        let hub = Hub::default();
        let mut s = Subscriptions::new(1);
        s.subscribe(&hub, Kind::Pattern, &[b("__key*__:*")]);
        s.subscribe(&hub, Kind::Channel, &[b("c")]);
        drain(&s);
        let mut out = BytesMut::new();
        hub.publish(b"c", b"m");
        assert_eq!(s.take_into(&mut out), Ok(Taken::Messages));
        let xadd = KeyspaceEvent {
            class: 't',
            event: "xadd",
            db: 0,
            key: b("s"),
        };
        hub.notify_keyspace(&KeyspaceFlags::parse("Et").unwrap(), &[xadd]);
        hub.publish(b"c", b"m");
        assert_eq!(s.take_into(&mut out), Ok(Taken::Notifications));
        // The queue was emptied: what follows is plain again.
        hub.publish(b"c", b"m");
        assert_eq!(s.take_into(&mut out), Ok(Taken::Messages));
        assert_eq!(s.take_into(&mut out), Ok(Taken::Nothing));
        s.clear(&hub);
    }

    fn brute_force(patterns: &[Vec<u8>], channel: &[u8]) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = patterns
            .iter()
            .filter(|p| glob::matches(p, channel))
            .cloned()
            .collect();
        v.sort();
        v.dedup();
        v
    }

    proptest! {
        /// The trie finds exactly the patterns a scan of all of them finds, through
        /// subscribes and unsubscribes.
        #[test]
        fn pattern_index_matches_brute_force(
            patterns in proptest::collection::vec(proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'b'), Just(b'*'), Just(b'?'), Just(b'['),
                            Just(b']'), Just(b'\\'), Just(b'-')], 0..6), 1..20),
            removed in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
            channels in proptest::collection::vec(proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'b'), Just(b'-'), Just(b'*')], 0..6), 1..20),
        ) {
            let mut index = PatternIndex::default();
            let sub = Subscriber::new(1);
            for p in &patterns {
                index.insert(&Bytes::copy_from_slice(p), &sub);
            }
            let mut live: Vec<Vec<u8>> = patterns.clone();
            for r in &removed {
                let p = patterns[r.index(patterns.len())].clone();
                index.remove(&p, 1);
                live.retain(|q| *q != p);
            }
            let mut distinct = live.clone();
            distinct.sort();
            distinct.dedup();
            prop_assert_eq!(index.len(), distinct.len());
            for c in &channels {
                let mut got = Vec::new();
                index.for_each_match(c, |p, _| got.push(p.to_vec()));
                got.sort();
                prop_assert_eq!(got, brute_force(&live, c));
            }
        }
    }

    /// A socket that takes `room` more bytes in all, then reports `WouldBlock`.
    #[derive(Default)]
    struct FakeOut {
        taken: Mutex<Vec<u8>>,
        room: Mutex<usize>,
        calls: AtomicU64,
    }

    impl DirectOut for FakeOut {
        fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut room = self.room.lock().unwrap();
            if *room == 0 {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(*room);
            *room -= n;
            self.taken.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }
    }

    /// A subscriber of `channel` whose socket is `out`, with its confirmation taken.
    fn direct_subscriber(hub: &Hub, id: u64, channel: &str, out: &Arc<FakeOut>) -> Subscriptions {
        let mut s = Subscriptions::new(id);
        s.subscribe(hub, Kind::Channel, &[b(channel)]);
        drain(&s);
        s.sub.lock().direct = Some(out.clone());
        s
    }

    /// Subscriber 1 of channel "c", parked, whose socket takes `room` bytes.
    fn parked_subscriber(hub: &Hub, room: usize) -> (Subscriptions, Arc<FakeOut>) {
        let out = fake(room);
        let a = direct_subscriber(hub, 1, "c", &out);
        assert_eq!(a.sub.park(), Ok(true));
        (a, out)
    }

    fn fake(room: usize) -> Arc<FakeOut> {
        let out = Arc::new(FakeOut::default());
        *out.room.lock().unwrap() = room;
        out
    }

    fn message_bytes(channel: &str, msg: &str) -> Vec<u8> {
        format!(
            "*3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n${}\r\n{msg}\r\n",
            channel.len(),
            msg.len()
        )
        .into_bytes()
    }

    /// Publishes each message with deferred wake-ups, then delivers as a publisher's end of
    /// batch does.
    fn publish_batch(hub: &Hub, channel: &str, msgs: &[&str]) -> u64 {
        publish_batch_after(hub, channel, msgs, false)
    }

    /// [`publish_batch`] by a publisher whose connection had (`waited`) or had not to wait
    /// for the batch.
    fn publish_batch_after(hub: &Hub, channel: &str, msgs: &[&str], waited: bool) -> u64 {
        let mut w = Wakeups::default();
        for m in msgs {
            hub.publish_deferred(channel.as_bytes(), m.as_bytes(), &mut w);
        }
        w.deliver_all(&mut BytesMut::new(), waited)
    }

    #[test]
    fn a_parked_subscriber_gets_a_batch_in_one_write_by_the_publisher() {
        let hub = Hub::default();
        let (a, out) = parked_subscriber(&hub, usize::MAX);
        let written = publish_batch(&hub, "c", &["one", "two"]);
        let want = [message_bytes("c", "one"), message_bytes("c", "two")].concat();
        assert_eq!(written, want.len() as u64);
        assert_eq!(*out.taken.lock().unwrap(), want);
        assert_eq!(out.calls.load(Ordering::Relaxed), 1);
        assert_eq!(a.queued_bytes(), 0);
        assert!(a.sub.lock().items.is_empty());
        // Still parked: the next batch goes the same way.
        publish_batch(&hub, "c", &["three"]);
        assert!(out
            .taken
            .lock()
            .unwrap()
            .ends_with(&message_bytes("c", "three")));
        assert_eq!(a.try_recv(), Ok(None));
    }

    #[test]
    fn what_a_full_socket_does_not_take_is_left_in_order_to_the_connection() {
        let hub = Hub::default();
        let (a, out) = parked_subscriber(&hub, 30);
        let written = publish_batch(&hub, "c", &["one", "two", "three"]);
        assert_eq!(written, 30);
        // Unparked: the connection, woken, writes the rest, and later batches are queued.
        assert!(!a.sub.lock().parked);
        let rest_before = a.queued_bytes();
        assert_eq!(publish_batch(&hub, "c", &["four"]), 0);
        assert_eq!(out.calls.load(Ordering::Relaxed), 1);
        let mut all = out.taken.lock().unwrap().clone();
        assert_eq!(all.len(), 30);
        all.extend_from_slice(&drain(&a));
        let want = ["one", "two", "three", "four"]
            .iter()
            .map(|m| message_bytes("c", m))
            .collect::<Vec<_>>()
            .concat();
        assert_eq!(all, want);
        assert_eq!(
            rest_before,
            (want.len() - 30 - message_bytes("c", "four").len()) as u64
        );
    }

    #[test]
    fn a_socket_that_takes_nothing_leaves_everything_queued() {
        let hub = Hub::default();
        let (a, out) = parked_subscriber(&hub, 0);
        assert_eq!(publish_batch(&hub, "c", &["x"]), 0);
        assert_eq!(out.calls.load(Ordering::Relaxed), 1);
        assert!(!a.sub.lock().parked);
        assert_eq!(drain(&a), message_bytes("c", "x"));
    }

    #[test]
    fn only_a_parked_connection_with_nothing_queued_is_written_by_publishers() {
        let hub = Hub::default();
        let out = fake(usize::MAX);
        let a = direct_subscriber(&hub, 1, "c", &out);
        // Not parked: queued for the connection.
        publish_batch(&hub, "c", &["busy"]);
        assert_eq!(out.calls.load(Ordering::Relaxed), 0);
        // Something queued: it cannot park before taking it.
        assert_eq!(a.sub.park(), Ok(false));
        assert_eq!(drain(&a), message_bytes("c", "busy"));
        assert_eq!(a.sub.park(), Ok(true));
        // Waking up (unpark) or taking ends the publishers' turn.
        a.sub.unpark();
        publish_batch(&hub, "c", &["later"]);
        assert_eq!(out.calls.load(Ordering::Relaxed), 0);
        assert_eq!(drain(&a), message_bytes("c", "later"));
        assert_eq!(a.sub.park(), Ok(true));
        assert_eq!(a.try_recv(), Ok(None));
        assert!(!a.sub.lock().parked);
        // Without a socket (the hub alone) nothing parks.
        let plain = Subscriptions::new(2);
        assert_eq!(plain.sub.park(), Ok(false));
    }

    #[test]
    fn a_keyspace_notification_is_left_to_the_connection() {
        let hub = Hub::default();
        let (a, out) = parked_subscriber(&hub, usize::MAX);
        // A notification queued (its wake-up pending) while the connection was parked.
        let mut w = Wakeups::default();
        hub.publish_locked(&hub.read(), b"c", b"event", true, &mut w);
        drop(w);
        assert_eq!(publish_batch(&hub, "c", &["m"]), 0);
        assert_eq!(out.calls.load(Ordering::Relaxed), 0);
        let mut got = BytesMut::new();
        assert_eq!(a.take_into(&mut got), Ok(Taken::Notifications));
        assert_eq!(
            &got[..],
            [message_bytes("c", "event"), message_bytes("c", "m")].concat()
        );
    }

    #[test]
    fn a_large_fan_out_is_left_to_the_subscribers_connections() {
        let hub = Hub::default();
        let out = fake(usize::MAX);
        let subs: Vec<_> = (0..DIRECT_MAX_FAN_OUT as u64 + 1)
            .map(|id| direct_subscriber(&hub, id, "c", &out))
            .collect();
        for s in &subs {
            assert_eq!(s.sub.park(), Ok(true));
        }
        publish_batch(&hub, "c", &["x"]);
        assert_eq!(out.calls.load(Ordering::Relaxed), 0);
        let m = message_bytes("c", "x");
        for s in &subs {
            assert_eq!(drain(s), m);
        }
        // One fewer subscriber: all written by the publisher.
        let mut subs = subs;
        if let Some(mut last) = subs.pop() {
            last.clear(&hub);
        }
        for s in &subs {
            assert_eq!(s.sub.park(), Ok(true));
        }
        publish_batch(&hub, "c", &["x"]);
        assert_eq!(
            out.taken.lock().unwrap().len(),
            DIRECT_MAX_FAN_OUT * m.len()
        );
        assert!(subs.iter().all(|s| s.queued_bytes() == 0));
    }

    #[test]
    fn a_publisher_that_waited_for_its_batch_writes_a_larger_fan_out() {
        let hub = Hub::default();
        let out = fake(usize::MAX);
        let subs: Vec<_> = (0..4 * DIRECT_MAX_FAN_OUT as u64)
            .map(|id| direct_subscriber(&hub, id, "c", &out))
            .collect();
        for s in &subs {
            assert_eq!(s.sub.park(), Ok(true));
        }
        let m = message_bytes("c", "x");
        let written = publish_batch_after(&hub, "c", &["x"], true);
        assert_eq!(written, (subs.len() * m.len()) as u64);
        assert_eq!(out.calls.load(Ordering::Relaxed), subs.len() as u64);
        assert!(subs.iter().all(|s| s.queued_bytes() == 0));
        // Parked still: the next batch goes the same way, unless its input was already
        // there, when it is left to the connections.
        publish_batch_after(&hub, "c", &["y"], false);
        assert_eq!(out.calls.load(Ordering::Relaxed), subs.len() as u64);
        for s in &subs {
            assert_eq!(drain(s), message_bytes("c", "y"));
        }
        // Beyond the idle bound, the connections write it whether or not the publisher
        // waited.
        let mut subs = subs;
        subs.extend(
            (subs.len()..=IDLE_DIRECT_MAX_FAN_OUT)
                .map(|id| direct_subscriber(&hub, id as u64, "c", &out)),
        );
        for s in &subs {
            assert_eq!(s.sub.park(), Ok(true));
        }
        publish_batch_after(&hub, "c", &["z"], true);
        assert_eq!(
            out.calls.load(Ordering::Relaxed),
            4 * DIRECT_MAX_FAN_OUT as u64
        );
        for s in &subs {
            assert_eq!(drain(s), message_bytes("c", "z"));
        }
    }

    #[test]
    fn a_cut_off_subscriber_is_not_written() {
        let hub = Hub::default();
        let out = fake(usize::MAX);
        let a = direct_subscriber(&hub, 1, "c", &out);
        hub.set_output_limit(OutputLimit {
            hard: 10,
            soft: 0,
            soft_seconds: 0,
        });
        assert_eq!(a.sub.park(), Ok(true));
        publish_batch(&hub, "c", &["longer than ten bytes"]);
        assert_eq!(out.calls.load(Ordering::Relaxed), 0);
        assert_eq!(a.sub.park(), Err(()));
        assert_eq!(hub.output_limit_disconnections(), 1);
    }
}
