//! The Sluice RESP server: connections, request parsing, typed commands, blocking reads and
//! the pub/sub hub, over the storage engine in `sluice-engine`.

#![deny(unsafe_code)]

pub mod glob;
pub mod reply;
