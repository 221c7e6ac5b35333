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

pub mod error;
pub mod group;
pub mod id;

pub use error::{Error, Result};
pub use group::{
    AutoClaim, ClaimOptions, ConsumerInfo, Delivery, GroupInfo, GroupStart, PendingEntry,
    PendingSummary,
};
pub use id::StreamId;

use std::{ops::Bound, path::Path, sync::Arc, time::Duration};

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

/// Tracks which writes are durable, shared with whoever waits on them.
pub struct Durability {
    _private: (),
}

impl Durability {
    /// True once a write at `lsn` may be acknowledged under the current policy.
    pub fn is_durable(&self, lsn: Lsn) -> bool {
        let _ = lsn;
        todo!("engine: durability tracking")
    }

    /// Blocks until `lsn` is acknowledgeable; fails if the engine was poisoned meanwhile.
    pub fn wait(&self, lsn: Lsn) -> Result<()> {
        let _ = lsn;
        todo!("engine: durability tracking")
    }

    /// Called from the sync thread after each completed fsync round with the new durable Lsn.
    pub fn set_listener(&self, listener: Box<dyn Fn(Lsn) + Send + Sync>) {
        let _ = listener;
        todo!("engine: durability tracking")
    }

    /// The reason writes are refused, after a failed fsync or write.
    pub fn poisoned(&self) -> Option<String> {
        todo!("engine: durability tracking")
    }
}

/// A data directory of streams.
pub struct Engine {
    _private: (),
}

impl Engine {
    /// Opens (creating if needed) a data directory and recovers every stream in it.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<(Engine, RecoveryReport)> {
        let _ = (dir.as_ref(), options);
        todo!("engine: open")
    }

    /// Makes everything written so far durable (fsync), e.g. for SHUTDOWN and DEBUG RELOAD.
    pub fn sync_all(&mut self) -> Result<()> {
        todo!("engine: sync_all")
    }

    /// Syncs and releases every file; the directory can be reopened afterwards.
    pub fn close(self) -> Result<()> {
        todo!("engine: close")
    }

    pub fn durability(&self) -> Arc<Durability> {
        todo!("engine: durability")
    }

    pub fn fsync_policy(&self) -> FsyncPolicy {
        todo!("engine: policy")
    }

    pub fn set_fsync_policy(&mut self, policy: FsyncPolicy) {
        let _ = policy;
        todo!("engine: policy")
    }

    pub fn stats(&self) -> EngineStats {
        todo!("engine: stats")
    }

    pub fn databases(&self) -> u32 {
        todo!("engine: databases")
    }

    pub fn stream(&self, db: Db, key: &[u8]) -> Option<&Stream> {
        let _ = (db, key);
        todo!("engine: stream lookup")
    }

    pub fn stream_mut(&mut self, db: Db, key: &[u8]) -> Option<&mut Stream> {
        let _ = (db, key);
        todo!("engine: stream lookup")
    }

    /// Creates an empty stream (XADD on a new key, XGROUP CREATE MKSTREAM); errors if it exists.
    pub fn create_stream(&mut self, db: Db, key: &[u8]) -> Result<(&mut Stream, Lsn)> {
        let _ = (db, key);
        todo!("engine: create stream")
    }

    /// Deletes a stream and its files. Returns `None` if there was no such key.
    pub fn remove_stream(&mut self, db: Db, key: &[u8]) -> Result<Option<Lsn>> {
        let _ = (db, key);
        todo!("engine: remove stream")
    }

    /// RENAME: moves `from` to `to`, replacing any stream at `to`. Errors with `NoSuchKey`.
    pub fn rename_stream(&mut self, db: Db, from: &[u8], to: &[u8]) -> Result<Lsn> {
        let _ = (db, from, to);
        todo!("engine: rename")
    }

    /// Number of keys in a database.
    pub fn key_count(&self, db: Db) -> u64 {
        let _ = db;
        todo!("engine: key count")
    }

    /// Iterates a database's keys in unspecified order.
    pub fn keys(&self, db: Db) -> Box<dyn Iterator<Item = &[u8]> + '_> {
        let _ = db;
        todo!("engine: keys")
    }

    /// SCAN: up to about `count` keys from `cursor`; returns the next cursor (0 when done).
    /// Keys present for the whole scan are returned at least once.
    pub fn scan(&self, db: Db, cursor: u64, count: usize) -> (u64, Vec<Bytes>) {
        let _ = (db, cursor, count);
        todo!("engine: scan")
    }

    /// Removes every stream of one database.
    pub fn flush_db(&mut self, db: Db) -> Result<Lsn> {
        let _ = db;
        todo!("engine: flushdb")
    }

    pub fn flush_all(&mut self) -> Result<Lsn> {
        todo!("engine: flushall")
    }

    /// Sets or clears (None) a key's expiry as a Unix time in ms; durable like any write.
    pub fn set_expire(&mut self, db: Db, key: &[u8], at_ms: Option<u64>) -> Result<Lsn> {
        let _ = (db, key, at_ms);
        todo!("engine: expire")
    }

    pub fn expire_at(&self, db: Db, key: &[u8]) -> Option<u64> {
        let _ = (db, key);
        todo!("engine: expire")
    }

    /// Keys whose expiry is ≤ `now_ms`, for the server's active expiry cycle (at most `limit`).
    pub fn expired_keys(&self, now_ms: u64, limit: usize) -> Vec<(Db, Bytes)> {
        let _ = (now_ms, limit);
        todo!("engine: expire")
    }
}

/// One stream: its entries on disk and its consumer groups.
pub struct Stream {
    _private: (),
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

impl Stream {
    pub fn len(&self) -> u64 {
        todo!("engine: stream")
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn last_id(&self) -> StreamId {
        todo!("engine: stream")
    }

    pub fn meta(&self) -> StreamMeta {
        todo!("engine: stream")
    }

    pub fn first_entry(&self) -> Result<Option<Entry>> {
        todo!("engine: stream")
    }

    pub fn last_entry(&self) -> Result<Option<Entry>> {
        todo!("engine: stream")
    }

    /// XADD. `fields` must be non-empty (the server checks arity).
    pub fn add(
        &mut self,
        id: IdSpec,
        fields: &[(Bytes, Bytes)],
        now_ms: u64,
    ) -> Result<(StreamId, Lsn)> {
        let _ = (id, fields, now_ms);
        todo!("engine: append")
    }

    /// XRANGE/XREVRANGE/XREAD: at most `count` live entries between the bounds, in `dir` order.
    pub fn range(
        &self,
        start: Bound<StreamId>,
        end: Bound<StreamId>,
        count: usize,
        dir: Direction,
    ) -> Result<Vec<Entry>> {
        let _ = (start, end, count, dir);
        todo!("engine: range")
    }

    /// The live entry with exactly this ID.
    pub fn get(&self, id: StreamId) -> Result<Option<Entry>> {
        let _ = id;
        todo!("engine: get")
    }

    /// XDEL: returns how many of `ids` existed and were deleted.
    pub fn delete(&mut self, ids: &[StreamId]) -> Result<(u64, Lsn)> {
        let _ = ids;
        todo!("engine: delete")
    }

    /// XTRIM (and XADD's trim clause): returns the number of entries removed.
    pub fn trim(&mut self, spec: TrimSpec) -> Result<(u64, Lsn)> {
        let _ = spec;
        todo!("engine: trim")
    }

    /// XSETID.
    pub fn set_id(
        &mut self,
        last_id: StreamId,
        entries_added: Option<u64>,
        max_deleted_entry_id: Option<StreamId>,
    ) -> Result<Lsn> {
        let _ = (last_id, entries_added, max_deleted_entry_id);
        todo!("engine: setid")
    }
}
