//! Readers blocked in XREAD/XREADGROUP with BLOCK.
//!
//! A command that finds nothing to read returns [`crate::cmd::Outcome::Block`]; the connection
//! then awaits [`wait`], which registers the reader and sleeps on a oneshot channel (no
//! polling). Readers are queued per (db, key) in arrival order. After every write the
//! connection calls [`Registry::keys_touched`], which serves the queues of the touched keys in
//! order, under the engine lock, as Redis' `handleClientsBlockedOnKeys` does: the first
//! XREADGROUP reader of a group takes the new entries, later ones keep waiting. Deleting the
//! key or destroying the group wakes XREADGROUP readers with Redis' errors.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use sluice_engine::{Db, Direction, Engine, GroupStart, Lsn, StreamId};
use tokio::sync::oneshot;

use crate::cmd::stream::read::{delivery_reply, has_new_entries, keyed_reply};
use crate::cmd::stream::{engine_error, entry_reply};
use crate::cmd::{Effects, Outcome};
use crate::connection::now_ms;
use crate::reply::Reply;
use crate::server::{lock, Shared};

/// COUNT used when a blocked read without COUNT is served (Redis' `XREAD_BLOCKED_DEFAULT_COUNT`).
pub const BLOCKED_DEFAULT_COUNT: usize = 1000;

/// Everything needed to serve a blocked read when its keys change.
#[derive(Debug)]
pub struct BlockRequest {
    /// Keys in command order. For XREAD, entries after the ID are wanted (`$` already
    /// resolved to the stream's last ID at block time); for XREADGROUP the ID is unused (`>`).
    pub keys: Vec<(Bytes, StreamId)>,
    /// Set for XREADGROUP.
    pub group: Option<GroupTarget>,
    /// COUNT; 0 means [`BLOCKED_DEFAULT_COUNT`].
    pub count: usize,
    /// BLOCK in ms; 0 waits forever.
    pub timeout_ms: u64,
    /// The reply on timeout or CLIENT UNBLOCK (without ERROR): a null array for XREAD and
    /// XREADGROUP, the replica count 0 for WAIT (which has no keys and is never served).
    pub timeout_reply: Reply,
}

/// XREADGROUP's group, consumer and NOACK.
#[derive(Debug)]
pub struct GroupTarget {
    pub group: Bytes,
    pub consumer: Bytes,
    pub noack: bool,
}

/// The reply handed to a woken reader, with the Lsn of the writes made to serve it.
#[derive(Debug)]
struct Served {
    reply: Reply,
    lsn: Lsn,
}

struct Waiter {
    client_id: u64,
    db: Db,
    request: BlockRequest,
    tx: oneshot::Sender<Served>,
}

#[derive(Default)]
struct Inner {
    next_ticket: u64,
    /// By ticket; tickets grow with arrival, so they order waiters FIFO.
    waiters: HashMap<u64, Waiter>,
    queues: HashMap<(Db, Bytes), VecDeque<u64>>,
    by_client: HashMap<u64, u64>,
}

/// All blocked readers.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// Registered waiters; changed only under `inner`'s lock, so it is exact at every moment.
    blocked: AtomicUsize,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("blocked", &self.blocked_clients())
            .finish()
    }
}

impl Registry {
    /// CLIENT UNBLOCK: wakes `client_id` if it is blocked, with a timeout reply or (when
    /// `error`) `-UNBLOCKED client unblocked via CLIENT UNBLOCK`. True if it was blocked.
    pub fn unblock(&self, client_id: u64, error: bool) -> bool {
        let mut inner = lock(&self.inner);
        let Some(&ticket) = inner.by_client.get(&client_id) else {
            return false;
        };
        let Some(waiter) = self.remove_locked(&mut inner, ticket) else {
            return false;
        };
        let reply = if error {
            Reply::Error("UNBLOCKED client unblocked via CLIENT UNBLOCK".into())
        } else {
            waiter.request.timeout_reply.clone()
        };
        let _ = waiter.tx.send(Served { reply, lsn: Lsn(0) });
        true
    }

    /// Number of clients currently blocked (INFO clients `blocked_clients`).
    pub fn blocked_clients(&self) -> usize {
        self.blocked.load(Ordering::SeqCst)
    }

    /// True if `client_id` is blocked (CLIENT LIST's `b` flag).
    pub fn is_blocked(&self, client_id: u64) -> bool {
        lock(&self.inner).by_client.contains_key(&client_id)
    }

    /// Called after every command that modified keys, with the engine lock NOT held: serves
    /// readers blocked on them, in arrival order. `flushed` databases count as wholly touched.
    pub fn keys_touched(&self, shared: &Shared, touched: &[(Db, Bytes)], flushed: &[Db]) {
        if self.blocked_clients() == 0 || (touched.is_empty() && flushed.is_empty()) {
            return;
        }
        if self
            .candidates(&lock(&self.inner), touched, flushed)
            .is_empty()
        {
            return;
        }
        // Lock order: engine, then registry (as in `wait`).
        let mut engine = shared.engine();
        let mut inner = lock(&self.inner);
        let now_ms = now_ms();
        let mut stale = HashSet::new();
        for (ticket, key) in self.candidates(&inner, touched, flushed) {
            let Some(waiter) = inner.waiters.get(&ticket) else {
                continue; // served through an earlier key
            };
            let keys: Vec<(Bytes, StreamId)> = match &key {
                Some(k) => waiter
                    .request
                    .keys
                    .iter()
                    .filter(|(wk, _)| wk == k)
                    .take(1)
                    .cloned()
                    .collect(),
                None => waiter.request.keys.clone(),
            };
            for (k, after) in keys {
                if let Some(served) = try_serve(&mut engine, waiter, &k, after, now_ms) {
                    if let Some(w) = self.take_locked(&mut inner, ticket) {
                        stale.extend(w.request.keys.iter().map(|(k, _)| (w.db, k.clone())));
                        let _ = w.tx.send(served);
                    }
                    break;
                }
            }
        }
        let Inner {
            queues, waiters, ..
        } = &mut *inner;
        for qkey in stale {
            if let Some(q) = queues.get_mut(&qkey) {
                q.retain(|t| waiters.contains_key(t));
                if q.is_empty() {
                    queues.remove(&qkey);
                }
            }
        }
    }

    /// Serves one waiter if any of its keys has something for it.
    fn serve_now(&self, shared: &Shared, ticket: u64) {
        let mut engine = shared.engine();
        let mut inner = lock(&self.inner);
        let Some(waiter) = inner.waiters.get(&ticket) else {
            return;
        };
        let now_ms = now_ms();
        let served = waiter
            .request
            .keys
            .iter()
            .find_map(|(k, after)| try_serve(&mut engine, waiter, k, *after, now_ms));
        if let Some(served) = served {
            if let Some(w) = self.remove_locked(&mut inner, ticket) {
                let _ = w.tx.send(served);
            }
        }
    }

    /// Waiters to try, in order: each touched key's queue, then every waiter of a flushed
    /// database (`None` = try all its keys).
    fn candidates(
        &self,
        inner: &Inner,
        touched: &[(Db, Bytes)],
        flushed: &[Db],
    ) -> Vec<(u64, Option<Bytes>)> {
        let mut out = Vec::new();
        // An EXEC may touch one key thousands of times: look each key up once.
        let mut seen = HashSet::new();
        for (db, key) in touched {
            if !seen.insert((*db, key)) {
                continue;
            }
            if let Some(q) = inner.queues.get(&(*db, key.clone())) {
                out.extend(q.iter().map(|&t| (t, Some(key.clone()))));
            }
        }
        if !flushed.is_empty() {
            let mut all: Vec<u64> = inner
                .waiters
                .iter()
                .filter(|(_, w)| flushed.contains(&w.db))
                .map(|(&t, _)| t)
                .collect();
            all.sort_unstable();
            out.extend(all.into_iter().map(|t| (t, None)));
        }
        out
    }

    fn register(
        &self,
        client_id: u64,
        db: Db,
        request: BlockRequest,
    ) -> (u64, oneshot::Receiver<Served>) {
        let (tx, rx) = oneshot::channel();
        let mut inner = lock(&self.inner);
        inner.next_ticket += 1;
        let ticket = inner.next_ticket;
        for (i, (key, _)) in request.keys.iter().enumerate() {
            if request.keys[..i].iter().any(|(k, _)| k == key) {
                continue;
            }
            inner
                .queues
                .entry((db, key.clone()))
                .or_default()
                .push_back(ticket);
        }
        // A client blocks at most once; a stale entry would only come from a dropped wait.
        if let Some(old) = inner.by_client.insert(client_id, ticket) {
            self.remove_locked(&mut inner, old);
            inner.by_client.insert(client_id, ticket);
        }
        inner.waiters.insert(
            ticket,
            Waiter {
                client_id,
                db,
                request,
                tx,
            },
        );
        self.blocked.fetch_add(1, Ordering::SeqCst);
        (ticket, rx)
    }

    /// Removes a waiter; `None` if it was already served, unblocked or removed.
    fn remove(&self, ticket: u64) -> Option<Waiter> {
        let mut inner = lock(&self.inner);
        self.remove_locked(&mut inner, ticket)
    }

    fn remove_locked(&self, inner: &mut Inner, ticket: u64) -> Option<Waiter> {
        let waiter = self.take_locked(inner, ticket)?;
        for (key, _) in &waiter.request.keys {
            let qkey = (waiter.db, key.clone());
            if let Some(q) = inner.queues.get_mut(&qkey) {
                q.retain(|&t| t != ticket);
                if q.is_empty() {
                    inner.queues.remove(&qkey);
                }
            }
        }
        Some(waiter)
    }

    /// Removes a waiter but leaves its tickets in the key queues, for the caller to purge in
    /// one pass per queue (serving a thousand readers of one key stays linear).
    fn take_locked(&self, inner: &mut Inner, ticket: u64) -> Option<Waiter> {
        let waiter = inner.waiters.remove(&ticket)?;
        if inner.by_client.get(&waiter.client_id) == Some(&ticket) {
            inner.by_client.remove(&waiter.client_id);
        }
        self.blocked.fetch_sub(1, Ordering::SeqCst);
        Some(waiter)
    }
}

/// Serves `waiter` from `key` if there is something for it: new entries, or (XREADGROUP) the
/// error for a deleted key or destroyed group. `None` leaves it blocked.
fn try_serve(
    engine: &mut Engine,
    waiter: &Waiter,
    key: &Bytes,
    after: StreamId,
    now_ms: u64,
) -> Option<Served> {
    let req = &waiter.request;
    let count = if req.count == 0 {
        BLOCKED_DEFAULT_COUNT
    } else {
        req.count
    };
    let served = |items: Vec<Reply>, lsn: Lsn| Served {
        reply: keyed_reply(vec![(Reply::Bulk(key.clone()), Reply::Array(items))]),
        lsn,
    };
    let failed = |reply: Reply| Served { reply, lsn: Lsn(0) };
    match &req.group {
        None => {
            let stream = engine.stream(waiter.db, key)?;
            if stream.last_id() <= after {
                return None;
            }
            match stream.range(
                Bound::Excluded(after),
                Bound::Unbounded,
                count,
                Direction::Forward,
            ) {
                Ok(entries) if entries.is_empty() => None,
                Ok(entries) => Some(served(entries.iter().map(entry_reply).collect(), Lsn(0))),
                Err(e) => Some(failed(engine_error(&e))),
            }
        }
        Some(g) => {
            let Some(stream) = engine.stream_mut(waiter.db, key) else {
                return Some(failed(Reply::Error(
                    "UNBLOCKED the stream key no longer exists".into(),
                )));
            };
            if stream.group_info(&g.group).is_none() {
                return Some(failed(Reply::Error(
                    "NOGROUP the consumer group this client was blocked on no longer exists".into(),
                )));
            }
            match has_new_entries(stream, &g.group) {
                Ok(false) => return None,
                Ok(true) => {}
                Err(e) => return Some(failed(engine_error(&e))),
            }
            match stream.read_group(
                &g.group,
                &g.consumer,
                GroupStart::New,
                Some(count),
                g.noack,
                now_ms,
            ) {
                Ok((d, _)) if d.is_empty() => None,
                Ok((d, lsn)) => Some(served(d.iter().map(delivery_reply).collect(), lsn)),
                Err(e) => Some(failed(engine_error(&e))),
            }
        }
    }
}

/// Deregisters a waiter when `wait`'s future is dropped (client gone or killed).
struct Deregister<'a> {
    registry: &'a Registry,
    ticket: u64,
}

impl Drop for Deregister<'_> {
    fn drop(&mut self) {
        self.registry.remove(self.ticket);
    }
}

/// Waits for a blocked read to be served, time out or be unblocked, and returns its outcome
/// (never `Outcome::Block`). Writes made when serving it (XREADGROUP's PEL) go to `effects`.
/// Cancel-safe: dropping the future deregisters the waiter. The engine lock must not be held.
pub async fn wait(
    shared: &Shared,
    client_id: u64,
    db: Db,
    request: BlockRequest,
    effects: &mut Effects,
) -> Outcome {
    let timeout_ms = request.timeout_ms;
    let timed_out = Served {
        reply: request.timeout_reply.clone(),
        lsn: Lsn(0),
    };
    let registry = &shared.blocking;
    let (ticket, mut rx) = registry.register(client_id, db, request);
    let _guard = Deregister { registry, ticket };
    // A write may have landed between the command and the registration, its wake-up pass
    // already done: check once now. (Only this waiter: the earlier ones were registered
    // before that pass or will be served by the one still to come.)
    registry.serve_now(shared, ticket);
    let got = if timeout_ms == 0 {
        (&mut rx).await.ok()
    } else {
        tokio::select! {
            r = &mut rx => r.ok(),
            _ = tokio::time::sleep(Duration::from_millis(timeout_ms)) => None,
        }
    };
    let served = match got {
        Some(s) => s,
        // Timed out, unless served between the timer and now.
        None => match registry.remove(ticket) {
            Some(_) => timed_out,
            None => rx.try_recv().unwrap_or(timed_out),
        },
    };
    effects.wrote(served.lsn);
    Outcome::Reply(served.reply)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sluice_engine::IdSpec;

    use super::*;

    fn xadd(shared: &Shared, key: &'static str, id: u64) {
        {
            let mut engine = shared.engine();
            if engine.stream(0, key.as_bytes()).is_none() {
                engine.create_stream(0, key.as_bytes()).unwrap();
            }
            let s = engine.stream_mut(0, key.as_bytes()).unwrap();
            let fields = [(Bytes::from("f"), Bytes::from("v"))];
            s.add(IdSpec::Explicit(StreamId::new(id, 0)), &fields, 0)
                .unwrap();
        }
        shared
            .blocking
            .keys_touched(shared, &[(0, Bytes::from(key))], &[]);
    }

    fn xread(keys: &[(&'static str, u64)], timeout_ms: u64) -> BlockRequest {
        BlockRequest {
            keys: keys
                .iter()
                .map(|(k, id)| (Bytes::from(*k), StreamId::new(*id, 0)))
                .collect(),
            group: None,
            count: 0,
            timeout_ms,
            timeout_reply: Reply::NullArray,
        }
    }

    async fn until_blocked(shared: &Shared, n: usize) {
        for _ in 0..500 {
            if shared.blocking.blocked_clients() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("never reached {n} blocked clients");
    }

    fn spawn_wait(
        shared: &Arc<Shared>,
        client: u64,
        req: BlockRequest,
    ) -> tokio::task::JoinHandle<Reply> {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut effects = Effects::default();
            match wait(&shared, client, 0, req, &mut effects).await {
                Outcome::Reply(r) => r,
                _ => panic!("wait must end with a reply"),
            }
        })
    }

    fn entry(key: &'static str, id: u64) -> Reply {
        keyed_reply(vec![(
            Reply::str(key),
            Reply::Array(vec![Reply::Array(vec![
                Reply::bulk(format!("{id}-0")),
                Reply::Array(vec![Reply::str("f"), Reply::str("v")]),
            ])]),
        )])
    }

    #[tokio::test]
    async fn readers_on_several_keys_are_woken_by_the_key_written() {
        let (_dir, shared) = Shared::for_test();
        let a = spawn_wait(&shared, 1, xread(&[("a", 0), ("b", 0)], 0));
        let b = spawn_wait(&shared, 2, xread(&[("b", 0)], 0));
        until_blocked(&shared, 2).await;
        xadd(&shared, "b", 7);
        assert_eq!(a.await.unwrap(), entry("b", 7));
        assert_eq!(b.await.unwrap(), entry("b", 7));
        assert_eq!(shared.blocking.blocked_clients(), 0);
    }

    #[tokio::test]
    async fn an_entry_not_after_the_id_does_not_wake() {
        let (_dir, shared) = Shared::for_test();
        xadd(&shared, "a", 5);
        let w = spawn_wait(&shared, 1, xread(&[("a", 9)], 0));
        until_blocked(&shared, 1).await;
        xadd(&shared, "a", 6);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(shared.blocking.blocked_clients(), 1);
        xadd(&shared, "a", 10);
        assert_eq!(w.await.unwrap(), entry("a", 10));
    }

    #[tokio::test]
    async fn timeout_replies_nil_array() {
        let (_dir, shared) = Shared::for_test();
        let w = spawn_wait(&shared, 1, xread(&[("a", 0)], 30));
        assert_eq!(w.await.unwrap(), Reply::NullArray);
        assert_eq!(shared.blocking.blocked_clients(), 0);
    }

    #[tokio::test]
    async fn client_unblock_timeout_and_error() {
        let (_dir, shared) = Shared::for_test();
        let w1 = spawn_wait(&shared, 1, xread(&[("a", 0)], 0));
        let w2 = spawn_wait(&shared, 2, xread(&[("a", 0)], 0));
        until_blocked(&shared, 2).await;
        assert!(shared.blocking.is_blocked(1));
        assert!(shared.blocking.unblock(1, false));
        assert!(!shared.blocking.unblock(1, false));
        assert!(shared.blocking.unblock(2, true));
        assert!(!shared.blocking.unblock(99, true));
        assert_eq!(w1.await.unwrap(), Reply::NullArray);
        assert_eq!(
            w2.await.unwrap(),
            Reply::Error("UNBLOCKED client unblocked via CLIENT UNBLOCK".into())
        );
        assert_eq!(shared.blocking.blocked_clients(), 0);
    }

    #[tokio::test]
    async fn dropping_the_wait_deregisters() {
        let (_dir, shared) = Shared::for_test();
        let w = spawn_wait(&shared, 1, xread(&[("a", 0)], 0));
        until_blocked(&shared, 1).await;
        w.abort();
        let _ = w.await;
        assert_eq!(shared.blocking.blocked_clients(), 0);
        assert!(!shared.blocking.is_blocked(1));
    }

    #[tokio::test]
    async fn a_write_before_registration_is_not_missed() {
        let (_dir, shared) = Shared::for_test();
        // The command saw nothing after 0-0; the entry lands before `wait` registers.
        xadd(&shared, "a", 3);
        let w = spawn_wait(&shared, 1, xread(&[("a", 0)], 0));
        assert_eq!(w.await.unwrap(), entry("a", 3));
    }

    fn xreadgroup(key: &'static str, consumer: &'static str) -> BlockRequest {
        BlockRequest {
            keys: vec![(Bytes::from(key), StreamId::MAX)],
            group: Some(GroupTarget {
                group: Bytes::from("g"),
                consumer: Bytes::from(consumer),
                noack: false,
            }),
            count: 0,
            timeout_ms: 0,
            timeout_reply: Reply::NullArray,
        }
    }

    fn with_group(shared: &Shared, key: &'static str) {
        let mut engine = shared.engine();
        let (s, _) = engine.create_stream(0, key.as_bytes()).unwrap();
        s.create_group(b"g", StreamId::MIN, None).unwrap();
    }

    #[tokio::test]
    async fn group_readers_are_served_first_come_first_served() {
        let (_dir, shared) = Shared::for_test();
        with_group(&shared, "s");
        let first = spawn_wait(&shared, 1, xreadgroup("s", "c1"));
        until_blocked(&shared, 1).await;
        let second = spawn_wait(&shared, 2, xreadgroup("s", "c2"));
        until_blocked(&shared, 2).await;
        xadd(&shared, "s", 1);
        assert_eq!(first.await.unwrap(), entry("s", 1));
        // The entry went to c1: c2 keeps waiting until the next one.
        assert_eq!(shared.blocking.blocked_clients(), 1);
        assert!(shared.blocking.is_blocked(2));
        xadd(&shared, "s", 2);
        assert_eq!(second.await.unwrap(), entry("s", 2));
        let engine = shared.engine();
        let pending = engine
            .stream(0, b"s")
            .unwrap()
            .pending_summary(b"g")
            .unwrap();
        assert_eq!(pending.count, 2);
    }

    #[tokio::test]
    async fn deleting_the_key_or_destroying_the_group_wakes_group_readers() {
        let (_dir, shared) = Shared::for_test();
        with_group(&shared, "a");
        with_group(&shared, "b");
        let on_a = spawn_wait(&shared, 1, xreadgroup("a", "c"));
        let on_b = spawn_wait(&shared, 2, xreadgroup("b", "c"));
        let plain = spawn_wait(&shared, 3, xread(&[("a", 0)], 0));
        until_blocked(&shared, 3).await;
        shared.engine().remove_stream(0, b"a").unwrap();
        shared
            .blocking
            .keys_touched(&shared, &[(0, Bytes::from("a"))], &[]);
        assert_eq!(
            on_a.await.unwrap(),
            Reply::Error("UNBLOCKED the stream key no longer exists".into())
        );
        // XREAD readers stay blocked on a deleted key, as in Redis.
        assert!(shared.blocking.is_blocked(3));
        shared
            .engine()
            .stream_mut(0, b"b")
            .unwrap()
            .destroy_group(b"g")
            .unwrap();
        shared
            .blocking
            .keys_touched(&shared, &[(0, Bytes::from("b"))], &[]);
        assert_eq!(
            on_b.await.unwrap(),
            Reply::Error(
                "NOGROUP the consumer group this client was blocked on no longer exists".into()
            )
        );
        // ...and are served once the key is written again.
        xadd(&shared, "a", 4);
        assert_eq!(plain.await.unwrap(), entry("a", 4));
        assert_eq!(shared.blocking.blocked_clients(), 0);
    }

    #[tokio::test]
    async fn flushing_the_database_wakes_group_readers() {
        let (_dir, shared) = Shared::for_test();
        with_group(&shared, "a");
        let w = spawn_wait(&shared, 1, xreadgroup("a", "c"));
        until_blocked(&shared, 1).await;
        shared.engine().flush_db(0).unwrap();
        shared.blocking.keys_touched(&shared, &[], &[0]);
        assert_eq!(
            w.await.unwrap(),
            Reply::Error("UNBLOCKED the stream key no longer exists".into())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_readers_of_one_key_are_all_served_and_forgotten() {
        let (_dir, shared) = Shared::for_test();
        let waiters: Vec<_> = (0..2000)
            .map(|i| spawn_wait(&shared, i + 1, xread(&[("hot", 0), ("cold", 0)], 0)))
            .collect();
        until_blocked(&shared, 2000).await;
        xadd(&shared, "hot", 1);
        for w in waiters {
            assert_eq!(w.await.unwrap(), entry("hot", 1));
        }
        assert_eq!(shared.blocking.blocked_clients(), 0);
        let inner = lock(&shared.blocking.inner);
        assert!(inner.queues.is_empty() && inner.waiters.is_empty() && inner.by_client.is_empty());
    }
}
