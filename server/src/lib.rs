//! The Sluice RESP server: connections, request parsing, typed commands, blocking reads and
//! the pub/sub hub, over the storage engine in `sluice-engine`.

#![deny(unsafe_code)]

pub mod blocking;
pub mod client;
pub mod cmd;
pub mod config;
pub mod pubsub;
pub mod reply;
pub mod resp;
pub mod server;
pub mod shutdown;
