//! Blocked XREAD/XREADGROUP readers. Placeholder until the stream-commands branch lands; the
//! signatures below are what the connection calls.

use bytes::Bytes;
use sluice_engine::Db;

use crate::cmd::{Effects, Outcome};
use crate::server::Shared;

/// Everything needed to retry a blocked read when its keys change or it times out.
#[derive(Debug)]
pub struct BlockRequest {
    _private: (),
}

/// All blocked clients, by key, in arrival order.
#[derive(Debug, Default)]
pub struct Registry {
    _private: (),
}

impl Registry {
    /// CLIENT UNBLOCK: wakes `client_id` if it is blocked, with a timeout reply or (when
    /// `error`) `-UNBLOCKED client unblocked via CLIENT UNBLOCK`. True if it was blocked.
    pub fn unblock(&self, client_id: u64, error: bool) -> bool {
        let _ = (client_id, error);
        false
    }

    /// Number of clients currently blocked (INFO clients `blocked_clients`).
    pub fn blocked_clients(&self) -> usize {
        0
    }

    /// Called after every command that modified keys (after the engine lock is released):
    /// wakes readers blocked on them. `flushed` databases count as wholly touched.
    pub fn keys_touched(&self, touched: &[(Db, Bytes)], flushed: &[Db]) {
        let _ = (touched, flushed);
    }
}

/// Waits for a blocked read to be served, time out or be unblocked, and returns its outcome
/// (never `Outcome::Block`). Writes made when serving it (XREADGROUP's PEL) go to `effects`.
/// Cancel-safe: the connection drops this future when the client disconnects or is killed,
/// and dropping it must deregister the waiter.
pub async fn wait(
    shared: &Shared,
    client_id: u64,
    db: Db,
    request: BlockRequest,
    effects: &mut Effects,
) -> Outcome {
    let _ = (shared, client_id, db, request, effects);
    Outcome::Reply(crate::reply::Reply::NullArray)
}
