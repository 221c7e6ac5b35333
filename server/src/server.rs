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
use crate::reply::Reply;

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
    /// The same moment as Unix seconds (LASTSAVE), read once so that it never moves.
    pub started_unix: u64,
    /// Connections between reading a request and sending its reply: with more than one,
    /// a connection about to flush buffered appends yields first so the others' appends
    /// join the same write (see `Conn::await_written`).
    pub busy_clients: std::sync::atomic::AtomicUsize,
    /// Waits of all connections for their buffered appends to be written: a connection
    /// that sees several others wait since its own last one yields before writing, so
    /// that writers served by the same worker share one write (see `Conn::await_written`).
    pub append_waits: std::sync::atomic::AtomicU64,
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
    /// Wraps an opened engine; wires its durability listener to `durable`. Turns on the
    /// engine's write-behind: connections flush buffered appends before replying.
    pub fn new(mut engine: Engine, report: RecoveryReport, config: Config) -> Arc<Shared> {
        // Turning it on writes nothing and cannot fail.
        let _ = engine.set_write_behind(true);
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
            started_unix: crate::connection::now_ms() / 1000,
            busy_clients: Default::default(),
            append_waits: Default::default(),
            recovery: Mutex::new(report),
        });
        shared.listen(&durability);
        shared
    }

    /// A fresh engine in a temporary directory with the default configuration, for unit
    /// tests; the directory lives as long as the returned guard.
    #[cfg(test)]
    pub fn for_test() -> (tempfile::TempDir, Arc<Shared>) {
        let dir = tempfile::tempdir().unwrap();
        let (engine, report) = Engine::open(dir.path(), sluice_engine::Options::default()).unwrap();
        (dir, Shared::new(engine, report, Config::default()))
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
        self.0
            .as_ref()
            .expect("engine present outside DEBUG RELOAD")
    }
}

impl std::ops::DerefMut for EngineGuard<'_> {
    fn deref_mut(&mut self) -> &mut Engine {
        self.0
            .as_mut()
            .expect("engine present outside DEBUG RELOAD")
    }
}

/// Redis' protected-mode refusal, sent to non-loopback clients when no password is set.
const DENIED: &str = "-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Setup a an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.\r\n";

/// Engine options for the current configuration.
pub fn engine_options(config: &Config) -> sluice_engine::Options {
    sluice_engine::Options {
        fsync: config.appendfsync,
        databases: config.databases,
        ..sluice_engine::Options::default()
    }
}

/// Logs what recovery found.
pub fn log_recovery(report: &RecoveryReport) {
    crate::log(&format!(
        "Recovery: {} streams, {} segments, {} bytes / {} records truncated, {} corruptions, {} group clamps, in {:.3}s",
        report.streams,
        report.segments,
        report.bytes_truncated,
        report.records_truncated,
        report.corruptions.len(),
        report.group_clamps.len(),
        report.elapsed.as_secs_f64()
    ));
    for c in &report.corruptions {
        crate::log(&format!("# Corruption: {c}"));
    }
    for c in &report.group_clamps {
        crate::log(&format!("# Group state clamped: {c}"));
    }
}

/// Opens the engine, binds the listeners and serves until shutdown. Returns the exit code.
pub async fn start(config: Config) -> i32 {
    crate::log(&format!(
        "Sluice {} starting (pid {}), data dir {}, appendfsync {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        config.dir.display(),
        config.appendfsync.as_str()
    ));
    if let Err(e) = std::fs::create_dir_all(&config.dir) {
        crate::log(&format!(
            "# Can't create data directory {}: {e}",
            config.dir.display()
        ));
        return 1;
    }
    let dir = config.dir.clone();
    let options = engine_options(&config);
    let opened = tokio::task::spawn_blocking(move || Engine::open(dir, options)).await;
    let (engine, report) = match opened {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            crate::log(&format!("# Can't open the data directory: {e}"));
            return 1;
        }
        Err(e) => {
            crate::log(&format!("# Opening the data directory failed: {e}"));
            return 1;
        }
    };
    log_recovery(&report);
    let mut listeners = Vec::new();
    for addr in &config.bind {
        let optional = addr.starts_with('-');
        let host = addr.trim_start_matches('-');
        let host = match host {
            "*" => "0.0.0.0",
            "::*" => "::",
            h => h,
        };
        let target = if host.contains(':') {
            format!("[{host}]:{}", config.port)
        } else {
            format!("{host}:{}", config.port)
        };
        match tokio::net::TcpListener::bind(&target).await {
            Ok(l) => listeners.push(l),
            Err(e) if optional => crate::log(&format!("Skipping optional bind {target}: {e}")),
            Err(e) => {
                crate::log(&format!(
                    "# Could not create server TCP listening socket {target}: {e}"
                ));
                return 1;
            }
        }
    }
    let shared = Shared::new(engine, report, config);
    for l in &listeners {
        if let Ok(a) = l.local_addr() {
            crate::log(&format!("Ready to accept connections tcp {a}"));
        }
    }
    crate::shutdown::spawn_signal_handler(shared.clone());
    tokio::spawn(crate::expiry::run(shared.clone()));
    let tasks = accept_loop(shared.clone(), listeners).await;
    crate::shutdown::finish(shared, tasks).await
}

/// Accepts clients until shutdown; returns the connection tasks still running.
async fn accept_loop(
    shared: Arc<Shared>,
    listeners: Vec<tokio::net::TcpListener>,
) -> tokio::task::JoinSet<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let mut acceptors = tokio::task::JoinSet::new();
    for l in listeners {
        let tx = tx.clone();
        acceptors.spawn(async move {
            loop {
                match l.accept().await {
                    Ok(pair) => {
                        if tx.send(pair).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        crate::log(&format!("# Accepting client connection: {e}"));
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
        });
    }
    drop(tx);
    loop {
        tokio::select! {
            accepted = rx.recv() => {
                let Some((socket, addr)) = accepted else { break };
                if let Some(task) = admit(&shared, socket, addr).await {
                    tasks.spawn(task);
                }
            }
            _ = shared.shutdown.wait() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    acceptors.abort_all();
    tasks
}

/// Applies maxclients and protected mode; registers the client and returns its task.
async fn admit(
    shared: &Arc<Shared>,
    mut socket: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
) -> Option<impl std::future::Future<Output = ()>> {
    use tokio::io::AsyncWriteExt;
    Stats::incr(&shared.stats.connections_received);
    let (maxclients, protected) = {
        let c = shared.config();
        (c.maxclients, c.protected_mode && c.requirepass.is_none())
    };
    if protected && !addr.ip().is_loopback() {
        let _ = socket.write_all(DENIED.as_bytes()).await;
        Stats::incr(&shared.stats.rejected_connections);
        return None;
    }
    if shared.clients.len() as u64 >= maxclients {
        let _ = socket
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        Stats::incr(&shared.stats.rejected_connections);
        return None;
    }
    let _ = socket.set_nodelay(true);
    let local_addr = socket.local_addr().unwrap_or(addr);
    let id = shared.clients.next_id();
    let handle = Arc::new(crate::client::ClientHandle {
        id,
        addr,
        local_addr,
        created: Instant::now(),
        info: Mutex::new(crate::client::ClientInfo {
            multi: -1,
            resp: 2,
            user: "default".to_string(),
            ..Default::default()
        }),
        killed: Default::default(),
        kill_notify: Default::default(),
        dirty_cas: Default::default(),
        last_interaction_ms: AtomicU64::new(crate::connection::now_ms()),
    });
    shared.clients.insert(handle.clone());
    Some(crate::connection::serve(shared.clone(), socket, handle))
}

/// DEBUG RELOAD: makes everything durable, closes the engine and reopens it from disk, in
/// place, holding the engine lock throughout. Exits the process if reopening fails (there
/// is no engine to serve with).
pub fn debug_reload(shared: &Arc<Shared>) -> Reply {
    let mut guard = lock(&shared.engine);
    let Some(engine) = guard.take() else {
        return Reply::err("engine unavailable");
    };
    let mut options = engine_options(&shared.config());
    options.fsync = engine.fsync_policy();
    if let Err(e) = engine.close() {
        crate::log(&format!("# DEBUG RELOAD: closing the engine failed: {e}"));
    }
    let dir = shared.config().dir.clone();
    match Engine::open(&dir, options) {
        Ok((mut engine, report)) => {
            log_recovery(&report);
            let _ = engine.set_write_behind(true);
            let durability = engine.durability();
            shared.durable.send_replace(Lsn(0));
            shared.listen(&durability);
            *lock(&shared.durability) = durability;
            *lock(&shared.recovery) = report;
            *guard = Some(engine);
            Reply::Ok
        }
        Err(e) => {
            crate::log(&format!(
                "# DEBUG RELOAD: reopening {} failed: {e}; exiting",
                dir.display()
            ));
            std::process::exit(1);
        }
    }
}
