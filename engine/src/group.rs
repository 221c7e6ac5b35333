//! Consumer groups: last-delivered ID, pending entries lists (PEL) and consumers, with durable,
//! crash-consistent state (see the crate docs for the crash contract).

// Not yet reachable from `Stream` (wired once the engine core lands).
#[allow(dead_code)]
mod checkpoint;
#[allow(dead_code)]
mod codec;
#[allow(dead_code)]
mod record;
#[allow(dead_code)]
pub(crate) mod state;
#[allow(dead_code)]
pub(crate) mod store;
#[cfg(test)]
pub(crate) mod testutil;

use std::ops::Bound;

use bytes::Bytes;

use crate::{Lsn, Result, Stream, StreamId};

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
    pub fn groups(&self) -> Vec<GroupInfo> {
        todo!("groups")
    }

    pub fn group_info(&self, group: &[u8]) -> Option<GroupInfo> {
        let _ = group;
        todo!("groups")
    }

    /// XINFO CONSUMERS; errors with `NoGroup`.
    pub fn consumers(&self, group: &[u8]) -> Result<Vec<ConsumerInfo>> {
        let _ = group;
        todo!("groups")
    }

    /// XGROUP CREATE at a resolved ID (the server turns `$` into the last ID); `BusyGroup` if it exists.
    pub fn create_group(
        &mut self,
        group: &[u8],
        id: StreamId,
        entries_read: Option<u64>,
    ) -> Result<Lsn> {
        let _ = (group, id, entries_read);
        todo!("groups")
    }

    /// XGROUP SETID.
    pub fn set_group_id(
        &mut self,
        group: &[u8],
        id: StreamId,
        entries_read: Option<u64>,
    ) -> Result<Lsn> {
        let _ = (group, id, entries_read);
        todo!("groups")
    }

    /// XGROUP DESTROY: whether the group existed.
    pub fn destroy_group(&mut self, group: &[u8]) -> Result<(bool, Lsn)> {
        let _ = group;
        todo!("groups")
    }

    /// XGROUP CREATECONSUMER: whether it was created.
    pub fn create_consumer(
        &mut self,
        group: &[u8],
        consumer: &[u8],
        now_ms: u64,
    ) -> Result<(bool, Lsn)> {
        let _ = (group, consumer, now_ms);
        todo!("groups")
    }

    /// XGROUP DELCONSUMER: how many pending entries the consumer had.
    pub fn delete_consumer(&mut self, group: &[u8], consumer: &[u8]) -> Result<(u64, Lsn)> {
        let _ = (group, consumer);
        todo!("groups")
    }

    /// XREADGROUP for one stream. `count` of `None` means no limit. Creates the consumer if needed.
    pub fn read_group(
        &mut self,
        group: &[u8],
        consumer: &[u8],
        start: GroupStart,
        count: Option<usize>,
        noack: bool,
        now_ms: u64,
    ) -> Result<(Vec<Delivery>, Lsn)> {
        let _ = (group, consumer, start, count, noack, now_ms);
        todo!("groups")
    }

    /// XACK: how many IDs were pending and are now acknowledged.
    pub fn ack(&mut self, group: &[u8], ids: &[StreamId]) -> Result<(u64, Lsn)> {
        let _ = (group, ids);
        todo!("groups")
    }

    pub fn pending_summary(&self, group: &[u8]) -> Result<PendingSummary> {
        let _ = group;
        todo!("groups")
    }

    /// XPENDING extended form.
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
        let _ = (group, start, end, count, consumer, min_idle_ms, now_ms);
        todo!("groups")
    }

    /// XCLAIM. With `just_id` the deliveries carry `fields: None`.
    pub fn claim(
        &mut self,
        group: &[u8],
        consumer: &[u8],
        min_idle_ms: u64,
        ids: &[StreamId],
        options: &ClaimOptions,
        now_ms: u64,
    ) -> Result<(Vec<Delivery>, Lsn)> {
        let _ = (group, consumer, min_idle_ms, ids, options, now_ms);
        todo!("groups")
    }

    /// XAUTOCLAIM.
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
        let _ = (group, consumer, min_idle_ms, start, count, just_id, now_ms);
        todo!("groups")
    }
}
