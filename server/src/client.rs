//! The registry of connected clients, for CLIENT LIST/KILL/INFO and INFO clients.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

/// What other connections may read or signal about one client.
#[derive(Debug)]
pub struct ClientHandle {
    pub id: u64,
    pub addr: SocketAddr,
    pub local_addr: SocketAddr,
    pub created: Instant,
    /// Mutable details, updated by the owning connection.
    pub info: Mutex<ClientInfo>,
    /// Set by CLIENT KILL (or a WATCHed key changing, see `dirty_cas`); the connection exits.
    pub killed: AtomicBool,
    /// Woken when `killed` is set.
    pub kill_notify: Notify,
    /// A WATCHed key changed: the next EXEC fails.
    pub dirty_cas: AtomicBool,
    /// Unix ms of the last command (idle time).
    pub last_interaction_ms: AtomicU64,
}

/// Client details shown by CLIENT LIST / CLIENT INFO.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    pub name: Option<String>,
    pub lib_name: Option<String>,
    pub lib_ver: Option<String>,
    pub db: u32,
    pub resp: u8,
    pub sub: usize,
    pub psub: usize,
    pub ssub: usize,
    /// Commands queued in MULTI, or -1 outside MULTI.
    pub multi: i64,
    pub watch: usize,
    pub blocked: bool,
    pub qbuf: usize,
    pub qbuf_free: usize,
    pub obl: usize,
    pub oll: usize,
    pub omem: usize,
    pub tot_mem: usize,
    pub last_cmd: String,
    pub user: String,
}

impl ClientHandle {
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.kill_notify.notify_waiters();
        self.kill_notify.notify_one();
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

/// All connected clients by id.
#[derive(Debug, Default)]
pub struct Registry {
    next_id: AtomicU64,
    clients: Mutex<HashMap<u64, Arc<ClientHandle>>>,
}

impl Registry {
    /// Allocates the next client id (ids start at 1 and are never reused).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn insert(&self, handle: Arc<ClientHandle>) {
        self.lock().insert(handle.id, handle);
    }

    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientHandle>> {
        self.lock().get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Snapshot of every client, ordered by id.
    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        let mut v: Vec<_> = self.lock().values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ClientHandle>>> {
        // A panic while holding this lock leaves the map consistent (single inserts/removes).
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}
