//! Key expiry: the active cycle that removes expired keys in the background, and the lazy
//! check commands run before touching a key. Both emit `expired` keyspace events.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_engine::{Db, Engine};

use crate::cmd::Effects;
use crate::server::Shared;

/// Keys removed per active-expiry round at most; rounds repeat while they find work.
const ROUND_LIMIT: usize = 200;

/// Removes `key` if its expiry has passed. Returns true if it was removed (the key must then
/// be treated as absent). Errors removing it (poisoned engine) leave it in place.
pub fn expire_if_needed(
    engine: &mut Engine,
    db: Db,
    key: &Bytes,
    now_ms: u64,
    effects: &mut Effects,
) -> bool {
    match engine.expire_at(db, key) {
        Some(at) if at <= now_ms => {}
        _ => return false,
    }
    match engine.remove_stream(db, key) {
        Ok(Some(lsn)) => {
            effects.wrote(lsn);
            effects.touch(db, key);
            effects.event('x', "expired", db, key);
            true
        }
        Ok(None) => false,
        Err(_) => false,
    }
}

/// The active expiry cycle: every 100 ms, removes keys whose time has come.
pub async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.shutdown.wait() => return,
        }
        loop {
            let mut effects = Effects::default();
            let found = {
                let mut engine = shared.engine();
                let now = crate::connection::now_ms();
                let keys = engine.expired_keys(now, ROUND_LIMIT);
                let found = keys.len();
                for (db, key) in keys {
                    if expire_if_needed(&mut engine, db, &key, now, &mut effects) {
                        crate::server::Stats::incr(&shared.stats.expired_keys);
                    }
                }
                crate::connection::invalidate_watches(&shared, &effects.touched, &effects.flushed);
                found
            };
            crate::connection::publish_effects(&shared, &effects);
            if found < ROUND_LIMIT {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}
