//! Consumer groups: last-delivered ID, pending entries lists (PEL) and consumers, with durable,
//! crash-consistent state.
//!
//! Redis' documentation of XGROUP, XREADGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM and XINFO is
//! the spec. Where Redis versions differ: entries-read and lag follow Redis 7.0
//! (`streamEstimateDistanceFromFirstEverEntry`, checked against redis-server 7.0.15); consumer
//! seen-time/active-time and "XCLAIM/XAUTOCLAIM create the consumer even when they claim
//! nothing" follow Redis 7.2. One deviation: Redis 7.0 can report a negative lag (ENTRIESREAD
//! above entries-added); [`GroupInfo::lag`] saturates at 0.
//!
//! # Layout
//! - `group/state.rs`: the state machine. Each operation is *planned* against the current state
//!   and the stream (reply + one `Change`), then the `Change` is applied; the journal stores the
//!   same `Change`s, so recovery replays exactly what ran live. Changes carry absolute values, so
//!   replay never reads the stream. Memory is one ordered-map entry per pending entry (a 24-byte
//!   value naming the owner by consumer slot) plus the owner's ID set and one record per
//!   consumer — about 115 bytes per pending entry measured — and nothing per stream entry.
//! - `group/record.rs`: journal records (`magic | length | CRC32 | body`, CRC over all three).
//!   An XREADGROUP batch is one record with delta-encoded IDs (a 100-entry delivery is ~250
//!   bytes).
//! - `group/checkpoint.rs`: the compact snapshot of all groups (~3-5 bytes per pending entry).
//! - `group/store.rs`: files `groups.journal` and `groups.ckpt` in the stream's directory (so
//!   removing or renaming the stream carries them), recovery, clamping and compaction: when the
//!   journal exceeds 1 MiB and twice the checkpoint, a new checkpoint is written atomically
//!   (temp file, fsync, rename, fsync dir) and the journal restarts, so disk use and recovery
//!   time follow the live state, not the history of acknowledgements.
//! - `group/engine_io.rs`: the store's file operations over the engine's `Vfs`, with journal
//!   appends joining the engine's group commit (and a failed write poisoning the engine).
//!
//! # Durability
//! Every change (create, setid, destroy, consumer create/delete, delivery, history re-delivery,
//! ack, claim, autoclaim, and a read that only updates a consumer's seen time) is appended to
//! the journal before it is applied, and the call returns that write's [`Lsn`]: under `always` the
//! caller acknowledges only once it is durable, exactly as for stream writes. Calls that change
//! nothing, and reads or claims that only move an existing consumer's seen time (journaled,
//! but losing that in a crash only makes the consumer look idle longer), return the Lsn of
//! the stream's last group change that mattered, so empty polls do not wait for an fsync.
//!
//! # Crash contract
//! After any crash (process or power) and recovery:
//! 1. A group's last-delivered ID never goes backwards past a delivery whose Lsn was durable;
//!    every pending entry, acknowledgement and claim whose Lsn was durable is there.
//! 2. An XACK whose Lsn was durable never reappears in the PEL.
//! 3. Delivery counts never decrease.
//! 4. Every PEL ID is ≤ the stream's last ID, and so is every last-delivered ID, except one
//!    that a command (XGROUP CREATE/SETID, XCLAIM LASTID) set above the stream's last ID of
//!    that moment, which Redis allows and recovery keeps. PEL IDs are ≤ last-delivered unless
//!    SETID moved it back or XCLAIM FORCE claimed an undelivered entry, both allowed by Redis.
//! 5. If the stream lost its tail (policy `everysec`/`no`), groups are clamped to what the
//!    stream still holds — deliveries of lost entries leave the PEL, last-delivered drops to the
//!    stream's last ID with entries-read re-estimated — the clamp is made durable at once, and
//!    [`crate::RecoveryReport::group_clamps`] says what changed.
//!
//! The journal's torn or CRC-failing tail (never acknowledged under `always`) is cut at the
//! first invalid record; valid records after an invalid one mean damage inside the log and are
//! reported as corruption. A checkpoint that fails its CRC is an error, never silently ignored.
//! Tests: `group::state::tests` (semantics, side by side with redis-server), `group::store::tests`
//! (model with reopen and checkpoints, journal cuts and bit flips, lost stream tails),
//! `tests/group_crash.rs` (the same through the public API, poisoning) and
//! `tests/group_power_loss.rs` (simulated power loss dropping unsynced writes).

pub(crate) mod checkpoint;
mod codec;
pub(crate) mod engine_io;
pub(crate) mod record;
pub(crate) mod state;
pub(crate) mod store;
#[cfg(test)]
pub(crate) mod testutil;

use std::ops::Bound;

use bytes::Bytes;

use crate::{Lsn, Result, Stream, StreamId};
use state::{EntrySource, StreamFacts};

/// XINFO GROUPS row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: Bytes,
    pub consumers: u64,
    pub pending: u64,
    pub last_delivered_id: StreamId,
    /// `None` when Redis reports nil (the counter cannot be known).
    pub entries_read: Option<u64>,
    /// `None` when Redis reports nil.
    pub lag: Option<u64>,
}

/// XINFO CONSUMERS row (and XINFO STREAM FULL's consumer fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerInfo {
    pub name: Bytes,
    pub pending: u64,
    /// Last time the consumer attempted an interaction (read, claim, autoclaim), Unix ms.
    pub seen_time_ms: u64,
    /// Last successful interaction (delivered or claimed something), Unix ms; `None` = never.
    pub active_time_ms: Option<u64>,
}

/// One PEL entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEntry {
    pub id: StreamId,
    pub consumer: Bytes,
    pub delivery_time_ms: u64,
    pub delivery_count: u64,
}

/// XPENDING summary form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingSummary {
    pub count: u64,
    /// Smallest and greatest pending IDs, `None` when nothing is pending.
    pub range: Option<(StreamId, StreamId)>,
    /// Consumers with at least one pending entry, with their counts.
    pub consumers: Vec<(Bytes, u64)>,
}

/// Where XREADGROUP reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupStart {
    /// `>`: entries never delivered to the group.
    New,
    /// An explicit ID: the consumer's own PEL after this ID (history).
    History(StreamId),
}

/// An entry handed to a consumer; `fields` is `None` if the entry was deleted from the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub id: StreamId,
    pub fields: Option<Vec<(Bytes, Bytes)>>,
}

/// XCLAIM options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimOptions {
    pub idle_ms: Option<u64>,
    pub time_ms: Option<u64>,
    pub retry_count: Option<u64>,
    pub force: bool,
    pub just_id: bool,
    pub last_id: Option<StreamId>,
}

/// XAUTOCLAIM result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoClaim {
    /// Cursor for the next call (`0-0` when the scan is complete).
    pub next: StreamId,
    pub claimed: Vec<Delivery>,
    /// PEL IDs whose entries no longer exist in the stream (removed from the PEL).
    pub deleted: Vec<StreamId>,
}

impl Stream {
    fn group_facts(&self) -> StreamFacts {
        EntrySource::facts(self)
    }

    /// Journals a planned change and applies it.
    fn commit_group(&mut self, change: Option<state::Change>) -> Result<Lsn> {
        self.group_store_mut()?.commit(change)
    }

    pub fn groups(&self) -> Vec<GroupInfo> {
        self.group_store().set().info(&self.group_facts())
    }

    pub fn group_info(&self, group: &[u8]) -> Option<GroupInfo> {
        self.group_store()
            .set()
            .group_info(group, &self.group_facts())
    }

    /// Whether `group` has a consumer named `consumer` (false if the group does not exist).
    pub fn has_consumer(&self, group: &[u8], consumer: &[u8]) -> bool {
        self.group_store().set().has_consumer(group, consumer)
    }

    /// XINFO CONSUMERS; errors with `NoGroup`.
    pub fn consumers(&self, group: &[u8]) -> Result<Vec<ConsumerInfo>> {
        self.group_store().set().consumers(group)
    }

    /// XGROUP CREATE at a resolved ID (the server turns `$` into the last ID); `BusyGroup` if it exists.
    pub fn create_group(
        &mut self,
        group: &[u8],
        id: StreamId,
        entries_read: Option<u64>,
    ) -> Result<Lsn> {
        let p =
            self.group_store()
                .set()
                .plan_create_group(group, id, entries_read, self.last_id())?;
        self.commit_group(p.change)
    }

    /// XGROUP SETID.
    pub fn set_group_id(
        &mut self,
        group: &[u8],
        id: StreamId,
        entries_read: Option<u64>,
    ) -> Result<Lsn> {
        let p = self
            .group_store()
            .set()
            .plan_set_id(group, id, entries_read, self.last_id())?;
        self.commit_group(p.change)
    }

    /// XGROUP DESTROY: whether the group existed.
    pub fn destroy_group(&mut self, group: &[u8]) -> Result<(bool, Lsn)> {
        let p = self.group_store().set().plan_destroy(group);
        Ok((p.reply, self.commit_group(p.change)?))
    }

    /// XGROUP CREATECONSUMER: whether it was created.
    pub fn create_consumer(
        &mut self,
        group: &[u8],
        consumer: &[u8],
        now_ms: u64,
    ) -> Result<(bool, Lsn)> {
        let p = self
            .group_store()
            .set()
            .plan_create_consumer(group, consumer, now_ms)?;
        Ok((p.reply, self.commit_group(p.change)?))
    }

    /// XGROUP DELCONSUMER: how many pending entries the consumer had.
    pub fn delete_consumer(&mut self, group: &[u8], consumer: &[u8]) -> Result<(u64, Lsn)> {
        let p = self
            .group_store()
            .set()
            .plan_delete_consumer(group, consumer)?;
        Ok((p.reply, self.commit_group(p.change)?))
    }

    /// XREADGROUP for one stream. `count` of `None` (or `Some(0)`, like Redis' COUNT 0) means no
    /// limit but one million entries per call. Creates the consumer if needed.
    pub fn read_group(
        &mut self,
        group: &[u8],
        consumer: &[u8],
        start: GroupStart,
        count: Option<usize>,
        noack: bool,
        now_ms: u64,
    ) -> Result<(Vec<Delivery>, Lsn)> {
        let p = self
            .group_store()
            .set()
            .plan_read(self, group, consumer, start, count, noack, now_ms)?;
        Ok((p.reply, self.commit_group(p.change)?))
    }

    /// XACK: how many IDs were pending and are now acknowledged.
    pub fn ack(&mut self, group: &[u8], ids: &[StreamId]) -> Result<(u64, Lsn)> {
        let p = self.group_store().set().plan_ack(group, ids)?;
        Ok((p.reply, self.commit_group(p.change)?))
    }

    pub fn pending_summary(&self, group: &[u8]) -> Result<PendingSummary> {
        self.group_store().set().pending_summary(group)
    }

    /// XPENDING extended form. A `min_idle_ms` of `Some(0)` filters nothing, as in Redis.
    #[allow(clippy::too_many_arguments)]
    pub fn pending(
        &self,
        group: &[u8],
        start: Bound<StreamId>,
        end: Bound<StreamId>,
        count: usize,
        consumer: Option<&[u8]>,
        min_idle_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<Vec<PendingEntry>> {
        self.group_store()
            .set()
            .pending(group, start, end, count, consumer, min_idle_ms, now_ms)
    }

    /// XCLAIM. With `just_id` the deliveries carry `fields: None`. If both `idle_ms` and
    /// `time_ms` are set, `idle_ms` wins (the server passes whichever came last).
    pub fn claim(
        &mut self,
        group: &[u8],
        consumer: &[u8],
        min_idle_ms: u64,
        ids: &[StreamId],
        options: &ClaimOptions,
        now_ms: u64,
    ) -> Result<(Vec<Delivery>, Lsn)> {
        let p = self.group_store().set().plan_claim(
            self,
            group,
            consumer,
            min_idle_ms,
            ids,
            options,
            now_ms,
        )?;
        Ok((p.reply, self.commit_group(p.change)?))
    }

    /// XAUTOCLAIM. Up to `count` PEL entries are examined per claimed or deleted one, and at
    /// most `10 * count` in all, as in Redis.
    #[allow(clippy::too_many_arguments)]
    pub fn autoclaim(
        &mut self,
        group: &[u8],
        consumer: &[u8],
        min_idle_ms: u64,
        start: StreamId,
        count: usize,
        just_id: bool,
        now_ms: u64,
    ) -> Result<(AutoClaim, Lsn)> {
        let p = self.group_store().set().plan_autoclaim(
            self,
            group,
            consumer,
            min_idle_ms,
            start,
            count,
            just_id,
            now_ms,
        )?;
        Ok((p.reply, self.commit_group(p.change)?))
    }

    /// Writes a checkpoint of this stream's consumer groups now and restarts their journal.
    /// Happens automatically when the journal outgrows the live state; exposed for benches,
    /// DEBUG-style commands and shutdown.
    pub fn checkpoint_groups(&mut self) -> Result<Lsn> {
        self.group_store_mut()?.checkpoint()
    }
}

impl Stream {
    fn group_store(&self) -> &store::GroupStore {
        &self.groups
    }

    fn group_store_mut(&mut self) -> Result<&mut store::GroupStore> {
        self.durability().check()?;
        Ok(&mut self.groups)
    }

    /// A group store with no groups yet for a stream being assembled in `dir`.
    pub(crate) fn empty_groups(
        ctx: &crate::stream::Ctx,
        dir: &std::path::Path,
    ) -> store::GroupStore {
        store::GroupStore::empty(
            dir,
            Box::new(engine_io::EngineIo::new(
                ctx.vfs.clone(),
                ctx.durability.clone(),
            )),
        )
    }

    /// Recovery hook, run once the stream's tail is recovered: loads the checkpoint, replays
    /// the journal (cutting a torn tail), clamps to the recovered stream and reports.
    pub(crate) fn recover_groups(&mut self, report: &mut crate::RecoveryReport) -> Result<()> {
        let io = Box::new(engine_io::EngineIo::new(
            self.vfs().clone(),
            self.durability().clone(),
        ));
        let facts = self.group_facts();
        let (groups, rec) = store::GroupStore::open(self.dir(), io, &facts)?;
        self.groups = groups;
        report.bytes_truncated += rec.bytes_truncated;
        report.records_truncated += rec.records_truncated;
        report.corruptions.extend(rec.corruptions);
        let name = self.dir().display().to_string();
        report
            .group_clamps
            .extend(rec.clamps.into_iter().map(|c| format!("{name}: {c}")));
        Ok(())
    }
}

impl EntrySource for Stream {
    fn facts(&self) -> StreamFacts {
        let meta = self.meta();
        StreamFacts {
            last_id: meta.last_generated_id,
            entries_added: meta.entries_added,
            max_deleted_id: meta.max_deleted_entry_id,
            first_id: meta.recorded_first_entry_id,
            length: meta.length,
        }
    }

    fn get(&self, id: StreamId) -> Result<Option<Vec<(Bytes, Bytes)>>> {
        Ok(Stream::get(self, id)?.map(|e| e.fields))
    }

    fn after(&self, after: StreamId, count: usize) -> Result<Vec<crate::Entry>> {
        self.range(
            Bound::Excluded(after),
            Bound::Unbounded,
            count,
            crate::Direction::Forward,
        )
    }
}
