//! Sluice's storage engine: Redis-style streams kept in mmap'd, append-only segment files,
//! with durable consumer-group state. No networking; the server drives it.
//!
//! # Shape of the API
//! [`Engine`] owns a data directory holding many logical databases (Redis `SELECT`), each a
//! map from binary keys to [`Stream`]s. Every mutating call returns an [`Lsn`]: its place in the
//! engine's commit order. A caller acknowledges the write to its client once
//! [`Durability::is_durable`] says so (under `always` that means fsync'd; under `everysec` and
//! `no` every Lsn is acknowledgeable at once). Waiting is the caller's business, so the
//! engine stays independent of any async runtime: [`Durability::wait`] blocks, and
//! [`Durability::set_listener`] lets an async server wake its own waiters.
//! [`Stream::range`] takes the low bound first and the high bound second in both
//! directions. All file I/O goes through [`io::Vfs`]; [`Engine::open_with`] accepts another
//! implementation (fault injection, simulated crashes).
//!
//! ```
//! use std::ops::Bound;
//! use bytes::Bytes;
//! use sluice_engine::{Direction, Engine, IdSpec, Options};
//!
//! let dir = tempfile::tempdir()?;
//! let (mut engine, _report) = Engine::open(dir.path(), Options::default())?;
//! let (stream, _lsn) = engine.create_stream(0, b"events")?;
//! let (id, lsn) = stream.add(IdSpec::Auto, &[(Bytes::from("k"), Bytes::from("v"))], 1_700_000_000_000)?;
//! engine.durability().wait(lsn)?; // what a server does before replying
//! let stream = engine.stream(0, b"events").expect("created above");
//! let read = stream.range(Bound::Included(id), Bound::Unbounded, 10, Direction::Forward)?;
//! assert_eq!(read[0].id, id);
//! engine.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # On-disk format
//! ```text
//! <dir>/db<N>/<escaped key>/            one directory per stream (see engine::escape_key)
//!     key                               the binary key + db, CRC'd; source of truth for the name
//!     meta                              two 4 KiB slots written alternately: generation, tail
//!                                       segment number, offset below which it was fsync'd,
//!                                       expiry, state snapshot; CRC per slot
//!     <number:016x>-<ms>-<seq>.seg      segments: per-stream sequence number + base ID
//!     <number:016x>.idx                 sparse index of a sealed segment (rebuilt if damaged)
//!     groups.journal, groups.ckpt       consumer-group journal and checkpoint; format,
//!                                       durability and crash contract: group module docs
//! <dir>/trash/                          removed streams, deleted once the removal is durable
//! ```
//! A segment is a sequence of records (`record` module): a 16-byte header — magic `SLr1`,
//! type, a state byte, reserved zeros, body length (1..=1 GiB), CRC32 of header and body —
//! then the body. The magic and the length ≥ 1 mean an all-zero page never parses; the CRC
//! covers everything except the state byte. Record types: segment header (a snapshot of
//! the stream state: last-generated ID, max-deleted ID, entries-added, length, trim
//! position), entry (ID + field/value pairs), delete (target ID and its location + the new
//! state), trim (new state) and set-id (new state). Every segment starts with a header
//! record, so opening a stream after a crash replays only its last ("tail") segment: open
//! cost depends on the tail's size (≤ one segment, 64 MiB by default), not on the
//! stream's. After a clean shutdown (`close` / `sync_all`) not even that: the tail's index
//! is saved and, if the meta file's fsync'd offset matches it and nothing follows, the
//! state comes from the meta file (`RecoveryReport::tail_bytes_replayed` is then 0).
//! Sealed segments are opened, mapped and indexed on first read.
//!
//! **Deletes** (XDEL) append a delete record; once it is fsync'd, the entry's state byte is
//! rewritten in place from `0x0F` (live) to `0xF0` (deleted) — eight bits apart, and a flip
//! of one bit never turns a live entry into a deleted one. Until then the ID sits in a
//! small in-memory set (bounded: past 4096 pending deletes the tail is fsync'd and the
//! flags written). Recovery redoes the deletes recorded in the tail, and sealing a
//! segment first fsyncs every flag, so nothing grows with the number of deleted entries.
//! **Trims** append a trim record carrying a log position (segment, offset) before which
//! entries are gone; whole segments before it are unlinked once the trim record is fsync'd
//! (and again at open, if a crash came between). Approximate trims (`~`) drop whole sealed
//! segments only; with no LIMIT (or `LIMIT 0`) as many as the threshold allows — Redis'
//! default of 100 × node size would almost never permit dropping one of our segments —
//! and with `LIMIT n` only while the entries removed stay ≤ n.
//!
//! **Memory** per stream: the tail's index plus, for the sealed segments kept open (at most
//! 16 per stream, least recently used closed first), one 24-byte index point per 2 KiB of
//! records: 768 KiB per 64 MiB segment, so at most about 13 MiB per stream whatever the
//! entry count. (Points were 8 KiB apart until XRANGE profiling showed that a read from a
//! random ID spent ~20 % of its time CRC-checking the records before its first entry.)
//! Test `memory_scales_with_index_points_not_entries`.
//!
//! # Durability contract
//! Every write is a `pwrite` into the page cache before the call returns; an Lsn marks it.
//! The one exception is opt-in: with [`Engine::set_write_behind`] (the server turns it on)
//! and a policy other than `always`, tail appends wait in memory until
//! [`Engine::flush_writes`], which the server calls before replying, or until anything
//! reads, seals or syncs them ([`write_behind`]). The table holds for what was flushed.
//! A sync round (the `sluice-sync` thread, [`Durability::sync_now`], `sync_all`, `close`)
//! fsyncs every file and directory dirtied up to some Lsn L, then publishes L.
//!
//! | policy | after a process crash (kill -9, panic) | after a power loss / kernel crash |
//! |---|---|---|
//! | `always` | nothing acknowledged is lost (nor anything else written) | nothing acknowledged is lost: a write is acknowledged only after a round covering its Lsn (file data, file size, directory entries) completed; concurrent writers share one fsync |
//! | `everysec` | nothing written is lost: the data was in the page cache | the last ~1 s of acknowledged writes (more if fsync is slower than that) may be lost |
//! | `no` | nothing written is lost | everything since the last segment seal, `sync_all` or `close` may be lost (the kernel usually writes back within ~30 s) |
//!
//! In every case, what survives of one stream is a prefix of its writes in order (recovery
//! truncates at the first invalid record above the last fsync'd offset), its counters and
//! last ID come from that same prefix (so an ID never goes backwards relative to anything
//! that survived), and a record that fails its CRC is never served. There is no ordering
//! between different streams' files after a power loss, except that `always` acknowledges
//! each write only once it is durable. Segment rolls, delete-flag writes of a sealed
//! segment and index files are fsync'd inline under every policy.
//!
//! A failed write or fsync **poisons** the engine: it is never retried (after a failed
//! fsync the kernel may have dropped the dirty pages), [`Durability::poisoned`] says why,
//! every later write returns [`Error::Poisoned`], waiters get the error, reads keep working.
//! Reopening the directory recovers from what the disk really holds.
//!
//! **Recovery** replays the tail record by record. Below the offset the meta file records
//! as fsync'd, an invalid record is corruption: it is reported in
//! [`RecoveryReport::corruptions`], skipped by resynchronising on the next valid record, and
//! never overwritten (entries after it stay readable). Above that offset an invalid record
//! is a torn tail (it and everything after it are cut off and counted in
//! `bytes_truncated` / `records_truncated`) only if it has the shape a power cut leaves:
//! bytes not written back read as zeros up to a page boundary. Damage without that shape
//! (a record of up to 2 KiB one flipped bit away from valid, the bit not in such zeros;
//! valid records following with no such zeros; a last record whole but failing its CRC)
//! is reported as corruption instead. Reads verify the CRC of every record they pass
//! and never serve a failing one: it is counted in
//! [`EngineStats::corrupt_records_skipped`] and, when the damaged record could be an entry
//! of the requested range (it lies between the valid entries around it), the read returns
//! [`Error::Corruption`]; reads of other entries, including those after it, succeed.
//! Damage in sealed segments, or in a tail that was not replayed because the shutdown was
//! clean, is found that way. The meta file's fsync'd offset is refreshed when it has
//! advanced by 64 KiB (and exactly at every seal, `sync_all` and `close`), so damage in
//! the last < 64 KiB of group-committed data that has a torn shape (several bits in a
//! record over 2 KiB next to zeros before a page boundary) can still pass for a torn
//! tail: the price of not fsyncing the meta file in every group commit. (A first segment
//! with no entries whose header replay finds written whole and damaged since is kept and
//! reported, not dropped as a creation the crash tore: `power_loss::bit_flips` seed
//! 1795375513728984501. A record one header bit away from one that verifies and ends
//! where the next valid record starts is damage, not a tear, even when its own data puts a
//! zero byte before a page boundary: seed 1795328252522980100.)
//!
//! How this is checked: `tests/power_loss.rs` (with its simulated file system
//! `tests/power_loss/simfs.rs`, shared by `powerloss.rs` and `group_power_loss.rs`) builds
//! seeded crash images and injects fsync EIO, ENOSPC, short writes and bit flips;
//! `tests/powerloss.rs` opens crash images holding only what was fsync'd (file contents,
//! directory entries) and requires every acknowledged
//! write under `always`, and a state each stream went through since the last sync round
//! under `everysec`/`no`; `tests/recovery.rs` truncates, zeroes, flips bits and appends
//! garbage to tails and sealed segments; `tests/model.rs` compares random operation
//! sequences (with reopens and crash-reopens) against an in-memory model.
//!
//! # Appending through write(2), not the map
//! Measured here (2 vCPU VM, ext4 on virtio, `cargo test --release -p sluice-engine
//! write_vs_map -- --ignored --nocapture`, 200 000 appends of 128 B): without syncing,
//! `pwrite` costs 1.8 µs per append against 0.14 µs for a `memcpy` into a shared writable
//! map; with an fsync (`fdatasync` vs `msync`) every 100 appends both cost ~30 µs per
//! append. So the map only wins when nothing is synced, and then by ~1.7 µs per write,
//! small next to a network round trip. We append with `pwrite` because (1) an I/O error
//! or a full disk comes back as an error value we can turn into poisoning, where a store
//! into a map raises SIGBUS; (2) the file's size and allocation are changed explicitly
//! (fallocate in doubling steps) and never through page faults; (3) reads then only need
//! a read-only map, which cannot corrupt data through a stray write. Reads go through the
//! map (no copies beyond decoding, no syscalls).
//!
//! # Limits
//! Entry records ≤ 1 GiB; segment size 4 KiB ..= 4 GiB (an entry larger than a segment
//! gets a segment of its own size); keys ≤ 512 MiB; at most 4096 deletes pending their
//! in-place flag per stream. Each stream keeps one file descriptor (its tail) and one map
//! of the segment size open, plus up to 16 recently read sealed segments (each a file
//! descriptor, a map and its index; the least recently used is closed beyond that).
//! Resynchronising after a damaged record looks for the next position holding a complete
//! record with a valid CRC; a field value that itself contains such a record could be
//! mistaken for one, but only right after damage. A stream that cannot be opened at all
//! (e.g. EIO reading its tail) makes [`Engine::open`] fail rather than start without it.

#![deny(unsafe_code)]

pub mod durability;
mod engine;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
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
pub mod write_behind;

pub use durability::Durability;
pub use engine::Engine;
pub use error::{Error, Result};
pub use group::{
    AutoClaim, ClaimOptions, ConsumerInfo, Delivery, GroupInfo, GroupStart, PendingEntry,
    PendingSummary,
};
pub use id::StreamId;
pub use record::EntryRef;
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
    /// Bytes of tail segments replayed record by record (0 after a clean shutdown, when the
    /// saved tail index is used instead).
    pub tail_bytes_replayed: u64,
    /// Human-readable descriptions of CRC failures inside data that had been durable.
    pub corruptions: Vec<String>,
    /// Group states clamped because the stream's tail was lost (policy everysec/no).
    pub group_clamps: Vec<String>,
    /// Stream directories whose creation never became durable (key file never written
    /// back, nothing fsync'd since), removed: never acknowledged, so nothing was lost.
    pub incomplete_streams_removed: Vec<String>,
    pub elapsed: Duration,
}

/// Counters for INFO persistence.
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    pub fsyncs: u64,
    pub bytes_written: u64,
    pub last_fsync_ok: bool,
    pub poisoned: Option<String>,
    /// Records that failed their CRC (or framing) when read and were skipped, never served.
    pub corrupt_records_skipped: u64,
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
