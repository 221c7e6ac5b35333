//! Sluice's storage engine: Redis-style streams kept in mmap'd, append-only segment files,
//! with durable consumer-group state. No networking; the server drives it.
//!
//! (Crate docs — on-disk format, durability contract per fsync policy, crash contract of
//! consumer groups, and why appends go through write(2) or the map — are written by the
//! modules' owners as they land.)
//!
//! # Shape of the API
//! [`Engine`] owns a data directory holding many logical databases (Redis `SELECT`), each a
//! map from binary keys to [`Stream`]s. Every mutating call returns an [`Lsn`]: its place in the
//! engine's commit order. A caller acknowledges the write to its client once
//! [`Durability::is_durable`] says so (under `always` that means fsync'd; under `everysec` and
//! `no` every Lsn is acknowledgeable at once). Waiting is the caller's business, so the
//! engine stays independent of any async runtime: [`Durability::wait`] blocks, and
//! [`Durability::set_listener`] lets an async server wake its own waiters.

#![deny(unsafe_code)]

pub mod durability;
mod engine;
pub mod error;
pub mod group;
pub mod id;
mod index;
pub mod io;
mod logfile;
mod meta;
mod record;
mod recovery;
mod segment;
mod stream;

pub use durability::Durability;
pub use engine::Engine;
pub use error::{Error, Result};
pub use group::{
    AutoClaim, ClaimOptions, ConsumerInfo, Delivery, GroupInfo, GroupStart, PendingEntry,
    PendingSummary,
};
pub use id::StreamId;
pub use stream::Stream;

use std::time::Duration;

use bytes::Bytes;

/// A logical database number (`SELECT n`).
pub type Db = u32;

/// Fsync policy, named as Redis' `appendfsync` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// A write is acknowledged only after its bytes are fsync'd; concurrent writes share one fsync.
    Always,
    /// Dirty files are fsync'd once a second; a power loss can lose about the last second.
    EverySec,
    /// The engine never fsyncs on its own (only at seal, checkpoint and shutdown); the OS decides.
    No,
}

impl FsyncPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Some(FsyncPolicy::Always),
            "everysec" => Some(FsyncPolicy::EverySec),
            "no" => Some(FsyncPolicy::No),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::EverySec => "everysec",
            FsyncPolicy::No => "no",
        }
    }
}

/// Engine settings fixed at open (the fsync policy can also change later).
#[derive(Clone, Debug)]
pub struct Options {
    pub fsync: FsyncPolicy,
    /// Maximum size of one segment file; tests use small values to exercise rolling.
    pub segment_size: u64,
    /// Number of logical databases.
    pub databases: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fsync: FsyncPolicy::EverySec,
            segment_size: 64 << 20,
            databases: 16,
        }
    }
}

/// A write's position in the engine's commit order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

/// One stream entry: its ID and its field/value pairs in insertion order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: StreamId,
    pub fields: Vec<(Bytes, Bytes)>,
}

/// How XADD chooses the new entry's ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdSpec {
    /// `*`: current time in ms, sequence after the last ID; monotonic even if the clock goes back.
    Auto,
    /// `ms-*`: the given ms, next free sequence.
    AutoSeq(u64),
    /// `ms-seq`.
    Explicit(StreamId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrimStrategy {
    MaxLen(u64),
    MinId(StreamId),
}

/// XADD/XTRIM trimming: `MAXLEN|MINID [=|~] threshold [LIMIT count]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrimSpec {
    pub strategy: TrimStrategy,
    /// `~`: the engine may keep more entries than asked, trimming whole segments only.
    pub approx: bool,
    /// `LIMIT`: at most this many entries removed (only with `~`; `None` = Redis' default).
    pub limit: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// What opening a directory found and repaired.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    pub streams: u64,
    pub segments: u64,
    pub bytes_truncated: u64,
    pub records_truncated: u64,
    /// Human-readable descriptions of CRC failures inside data that had been durable.
    pub corruptions: Vec<String>,
    /// Group states clamped because the stream's tail was lost (policy everysec/no).
    pub group_clamps: Vec<String>,
    pub elapsed: Duration,
}

/// Counters for INFO persistence.
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    pub fsyncs: u64,
    pub bytes_written: u64,
    pub last_fsync_ok: bool,
    pub poisoned: Option<String>,
}

/// Metadata as XINFO STREAM reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamMeta {
    pub length: u64,
    pub last_generated_id: StreamId,
    pub max_deleted_entry_id: StreamId,
    pub entries_added: u64,
    pub recorded_first_entry_id: StreamId,
    pub segments: u64,
}
