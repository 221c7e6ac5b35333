//! State shared by every connection ([`Shared`]) and the accept loop.
//!
//! # Contract
//! - `engine` is locked for one command (or one whole EXEC) at a time, never across an
//!   `.await`. Commands run synchronously under it.
//! - After a write, the connection awaits `durable` reaching the command's Lsn (only under
//!   `appendfsync always`; otherwise every Lsn is acknowledgeable at once) before replying.
//!   `durable` is fed by the engine's `Durability::set_listener` from its sync thread.
//! - `blocking` and `hub` belong to the stream-commands and pub/sub modules respectively.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use bytes::Bytes;
use sluice_engine::{Db, Durability, Engine, Lsn, RecoveryReport};
use tokio::sync::watch;

use crate::config::Config;

/// Everything connections share.
pub struct Shared {
    /// The storage engine; lock it with [`Shared::engine`]. `None` only inside DEBUG RELOAD,
    /// which holds the lock while the engine is closed and reopened (and exits the process if
    /// reopening fails), so no other locker ever observes `None`.
    pub engine: Mutex<Option<Engine>>,
    /// The engine's durability tracker (replaced by DEBUG RELOAD along with the engine).
    pub durability: Mutex<Arc<Durability>>,
    /// The greatest durable Lsn, published by the engine's sync thread.
    pub durable: watch::Sender<Lsn>,
    /// Current configuration (CONFIG SET changes it).
    pub config: RwLock<Config>,
    /// Connected clients (CLIENT LIST/KILL, INFO clients).
    pub clients: crate::client::Registry,
    /// Counters for INFO stats/commandstats/errorstats.
    pub stats: Stats,
    /// Readers blocked in XREAD/XREADGROUP.
    pub blocking: crate::blocking::Registry,
    /// Pub/sub channels and subscribers.
    pub hub: crate::pubsub::Hub,
    /// WATCHed keys → ids of the clients watching them.
    pub watches: Mutex<HashMap<(Db, Bytes), HashSet<u64>>>,
    /// Stop accepting and drain connections.
    pub shutdown: crate::shutdown::Shutdown,
    /// When the server started (INFO uptime).
    pub started: Instant,
    /// What recovery found when the engine was last opened.
    pub recovery: Mutex<RecoveryReport>,
}

/// Counters reported by INFO; reset by CONFIG RESETSTAT.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections_received: AtomicU64,
    pub commands_processed: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub expired_keys: AtomicU64,
    pub keyspace_hits: AtomicU64,
    pub keyspace_misses: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    pub total_error_replies: AtomicU64,
    /// Per command: calls, microseconds, rejected calls, failed calls.
    pub commands: Mutex<HashMap<String, CommandStat>>,
    /// Per error code (first word of the error): count.
    pub errors: Mutex<HashMap<String, u64>>,
}

/// One row of INFO commandstats.
#[derive(Clone, Copy, Debug, Default)]
pub struct CommandStat {
    pub calls: u64,
    pub usec: u64,
    pub rejected_calls: u64,
    pub failed_calls: u64,
}

impl Stats {
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// CONFIG RESETSTAT.
    pub fn reset(&self) {
        for c in [
            &self.connections_received,
            &self.commands_processed,
            &self.rejected_connections,
            &self.expired_keys,
            &self.keyspace_hits,
            &self.keyspace_misses,
            &self.net_input_bytes,
            &self.net_output_bytes,
            &self.total_error_replies,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        lock(&self.commands).clear();
        lock(&self.errors).clear();
    }
}

/// Locks a std mutex, recovering from poisoning: shared state here stays consistent because
/// no code path panics halfway through an update.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Wraps an opened engine; wires its durability listener to `durable`.
    pub fn new(engine: Engine, report: RecoveryReport, config: Config) -> Arc<Shared> {
        let durability = engine.durability();
        let (durable, _) = watch::channel(Lsn(0));
        let shared = Arc::new(Shared {
            engine: Mutex::new(Some(engine)),
            durability: Mutex::new(durability.clone()),
            durable,
            config: RwLock::new(config),
            clients: Default::default(),
            stats: Default::default(),
            blocking: Default::default(),
            hub: Default::default(),
            watches: Default::default(),
            shutdown: Default::default(),
            started: Instant::now(),
            recovery: Mutex::new(report),
        });
        shared.listen(&durability);
        shared
    }

    /// Feeds `durable` from an engine's sync thread (again after DEBUG RELOAD).
    pub fn listen(self: &Arc<Self>, durability: &Durability) {
        let weak = Arc::downgrade(self);
        durability.set_listener(Box::new(move |lsn| {
            if let Some(shared) = weak.upgrade() {
                shared.durable.send_if_modified(|cur| {
                    if lsn > *cur {
                        *cur = lsn;
                        true
                    } else {
                        false
                    }
                });
            }
        }));
    }

    /// Locks the engine for one command or transaction.
    pub fn engine(&self) -> EngineGuard<'_> {
        EngineGuard(lock(&self.engine))
    }

    /// A snapshot of the configuration.
    pub fn config(&self) -> std::sync::RwLockReadGuard<'_, Config> {
        self.config.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// The locked engine. Derefs to [`Engine`].
pub struct EngineGuard<'a>(pub MutexGuard<'a, Option<Engine>>);

impl std::ops::Deref for EngineGuard<'_> {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        // DEBUG RELOAD puts an engine back (or exits) before releasing the lock.
        self.0.as_ref().expect("engine present outside DEBUG RELOAD")
    }
}

impl std::ops::DerefMut for EngineGuard<'_> {
    fn deref_mut(&mut self) -> &mut Engine {
        self.0.as_mut().expect("engine present outside DEBUG RELOAD")
    }
}
