//! The memory-only pub/sub hub. Placeholder until the pub/sub branch lands; the signatures
//! below are what the connection and server call.

use std::sync::Arc;

use bytes::Bytes;

use crate::cmd::KeyspaceEvent;
use crate::config::KeyspaceFlags;
use crate::reply::Protocol;
use crate::server::Shared;

/// Channels and patterns with their subscribers.
#[derive(Debug, Default)]
pub struct Hub {
    _private: (),
}

impl Hub {
    /// Publishes keyspace notifications (`__keyspace@<db>__:<key>` / `__keyevent@<db>__:<event>`)
    /// for the events `flags` enables.
    pub fn notify_keyspace(&self, flags: &KeyspaceFlags, events: &[KeyspaceEvent]) {
        let _ = (flags, events);
    }
}

/// One connection's subscriptions and its bounded queue of messages to deliver.
#[derive(Debug)]
pub struct Session {
    _private: (),
}

impl Session {
    pub fn new(shared: &Arc<Shared>, client_id: u64) -> Session {
        let _ = (shared, client_id);
        Session { _private: () }
    }

    /// The protocol messages are encoded for (changes with HELLO).
    pub fn set_protocol(&mut self, proto: Protocol) {
        let _ = proto;
    }

    /// Channel subscriptions (CLIENT LIST `sub`).
    pub fn channels(&self) -> usize {
        0
    }

    /// Pattern subscriptions (CLIENT LIST `psub`).
    pub fn patterns(&self) -> usize {
        0
    }

    /// Shard-channel subscriptions (CLIENT LIST `ssub`).
    pub fn shard_channels(&self) -> usize {
        0
    }

    /// Next encoded message(s) to write to the client; pending forever when there are none.
    /// `None` means the subscriber was dropped for exceeding its output limit: close it.
    /// Cancel-safe (used in `select!`).
    pub async fn recv(&mut self) -> Option<Bytes> {
        std::future::pending().await
    }

    /// Drops every subscription (RESET, disconnect).
    pub fn clear(&mut self) {}
}
