//! The in-memory consumer-group state machine. Every operation is split in two: a *plan* that
//! reads the state (and the stream, through [`EntrySource`]) and produces the reply plus one
//! [`Change`], and [`GroupSet::apply`], the only code that mutates state. The journal stores the
//! same `Change`s, so replaying them after a restart runs exactly the code that ran live.
//!
//! Changes carry absolute values (owner, delivery time, delivery count, last-delivered ID), never
//! increments, so replay never needs the stream's entries.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use bytes::Bytes;

use super::{
    AutoClaim, ClaimOptions, ConsumerInfo, Delivery, GroupInfo, GroupStart, PendingEntry,
    PendingSummary,
};
use crate::{Entry, Error, Result, StreamId};

/// Stream metadata group operations depend on (lag, entries-read, clamping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StreamFacts {
    /// Last generated ID.
    pub last_id: StreamId,
    pub entries_added: u64,
    pub max_deleted_id: StreamId,
    /// First live entry's ID, `0-0` when the stream is empty.
    pub first_id: StreamId,
    pub length: u64,
}

/// Read access to the stream a group set belongs to.
pub(crate) trait EntrySource {
    fn facts(&self) -> StreamFacts;
    /// The fields of the live entry `id`, if it exists.
    fn get(&self, id: StreamId) -> Result<Option<Vec<(Bytes, Bytes)>>>;
    /// Live entries with an ID strictly greater than `after`, ascending, at most `count`.
    fn after(&self, after: StreamId, count: usize) -> Result<Vec<Entry>>;
}

/// One pending entry: who got it last, when, and how many times it was delivered. The owner
/// is a consumer slot, not a name, to keep the entry at 24 bytes (one per pending entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Nack {
    pub consumer: u32,
    pub delivery_time: u64,
    pub delivery_count: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Consumer {
    pub name: Bytes,
    /// IDs of this consumer's pending entries (the data lives in the group PEL).
    pub pel: BTreeSet<StreamId>,
    pub seen_time: u64,
    pub active_time: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Group {
    pub last_id: StreamId,
    /// The last ID was set by a command (CREATE, SETID, XCLAIM LASTID) to an ID above the
    /// stream's last ID at that time. Redis allows that, so recovery keeps it; a last ID that
    /// was reached by delivering entries, or set within the stream, is clamped to the stream.
    pub ahead_of_stream: bool,
    /// `None` is Redis' invalid counter (reported as nil).
    pub entries_read: Option<u64>,
    pub pel: BTreeMap<StreamId, Nack>,
    pub consumers: Consumers,
}

/// A group's consumers: slots that PEL entries point to, and a by-name index (sorted, as
/// Redis lists them). A freed slot is reused by the next consumer, lowest first, so replaying
/// the same changes always yields the same slots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Consumers {
    slots: Vec<Option<Consumer>>,
    by_name: BTreeMap<Bytes, u32>,
}

impl Consumers {
    /// Rebuilds the name index from slots (checkpoint loading).
    pub fn from_slots(slots: Vec<Option<Consumer>>) -> Consumers {
        let by_name = slots
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((c.as_ref()?.name.clone(), u32::try_from(i).ok()?)))
            .collect();
        Consumers { slots, by_name }
    }

    pub fn slots(&self) -> &[Option<Consumer>] {
        &self.slots
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn get(&self, name: &[u8]) -> Option<&Consumer> {
        self.by_slot(*self.by_name.get(name)?)
    }

    pub fn contains_key(&self, name: &[u8]) -> bool {
        self.by_name.contains_key(name)
    }

    /// Consumers in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Consumer)> {
        self.by_name
            .iter()
            .filter_map(|(n, s)| Some((n, self.by_slot(*s)?)))
    }

    pub fn by_slot(&self, slot: u32) -> Option<&Consumer> {
        self.slots.get(slot as usize)?.as_ref()
    }

    fn by_slot_mut(&mut self, slot: u32) -> Option<&mut Consumer> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    /// The slot of consumer `name`, creating it (seen now, never active) if needed.
    fn get_or_insert(&mut self, name: &Bytes, now: u64) -> u32 {
        if let Some(slot) = self.by_name.get(name) {
            return *slot;
        }
        let consumer = Consumer {
            name: name.clone(),
            pel: BTreeSet::new(),
            seen_time: now,
            active_time: None,
        };
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(free) => {
                self.slots[free] = Some(consumer);
                free
            }
            None => {
                self.slots.push(Some(consumer));
                self.slots.len() - 1
            }
        };
        let slot = u32::try_from(slot).unwrap_or(u32::MAX);
        self.by_name.insert(name.clone(), slot);
        slot
    }

    fn remove(&mut self, name: &[u8]) -> Option<Consumer> {
        let slot = self.by_name.remove(name)?;
        let c = self.slots.get_mut(slot as usize)?.take();
        while self.slots.last().is_some_and(Option::is_none) {
            self.slots.pop();
        }
        c
    }
}

/// All consumer groups of one stream, by name (sorted, as Redis' rax orders them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupSet {
    pub groups: BTreeMap<Bytes, Group>,
}

/// One durable state transition; the unit of the group journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    CreateGroup {
        group: Bytes,
        last_id: StreamId,
        entries_read: Option<u64>,
        /// `last_id` was above the stream's last ID when the command ran.
        ahead: bool,
    },
    SetId {
        group: Bytes,
        last_id: StreamId,
        entries_read: Option<u64>,
        ahead: bool,
    },
    DestroyGroup {
        group: Bytes,
    },
    CreateConsumer {
        group: Bytes,
        consumer: Bytes,
        now: u64,
    },
    DeleteConsumer {
        group: Bytes,
        consumer: Bytes,
    },
    /// XREADGROUP `>`: the group's new position and the IDs added to `consumer`'s PEL
    /// (delivery count 1, delivery time `now`); empty under NOACK.
    Deliver {
        group: Bytes,
        consumer: Bytes,
        now: u64,
        last_id: StreamId,
        entries_read: Option<u64>,
        ids: Vec<StreamId>,
    },
    Ack {
        group: Bytes,
        ids: Vec<StreamId>,
    },
    /// XCLAIM, XAUTOCLAIM and history reads: PEL entries now owned by `consumer` with the given
    /// (delivery time, delivery count), PEL entries removed, and an optional new last ID.
    Claim {
        group: Bytes,
        consumer: Bytes,
        now: u64,
        /// Whether the consumer's active time becomes `now`.
        active: bool,
        claimed: Vec<(StreamId, u64, u64)>,
        removed: Vec<StreamId>,
        /// XCLAIM LASTID, and whether it was above the stream's last ID.
        last_id: Option<(StreamId, bool)>,
    },
}

/// Redis' `streamRangeHasTombstones(s, start, NULL)`.
fn has_tombstones_from(facts: &StreamFacts, start: StreamId) -> bool {
    if facts.length == 0 || facts.max_deleted_id == StreamId::MIN {
        return false;
    }
    if facts.first_id > facts.max_deleted_id {
        return false;
    }
    start <= facts.max_deleted_id
}

/// Redis 7's `streamEstimateDistanceFromFirstEverEntry`: the logical read counter of `id`, if
/// it can be known.
pub(crate) fn estimate_entries_read(facts: &StreamFacts, id: StreamId) -> Option<u64> {
    if facts.entries_added == 0 {
        return Some(0);
    }
    if facts.length == 0 && id <= facts.last_id {
        return Some(facts.entries_added);
    }
    if id == facts.last_id {
        return Some(facts.entries_added);
    }
    if id > facts.last_id {
        return None;
    }
    if facts.max_deleted_id == StreamId::MIN || facts.max_deleted_id < facts.first_id {
        let before_first = facts.entries_added.saturating_sub(facts.length);
        if id < facts.first_id {
            return Some(before_first);
        }
        if id == facts.first_id {
            return Some(before_first + 1);
        }
    }
    None
}

/// The group's lag as XINFO reports it (Redis 7.0 `streamReplyWithCGLag`). Redis can report a
/// negative lag when ENTRIESREAD exceeded entries-added; here it saturates at 0.
fn lag(facts: &StreamFacts, group: &Group) -> Option<u64> {
    if facts.entries_added == 0 {
        return Some(0);
    }
    if let Some(read) = group.entries_read {
        if !has_tombstones_from(facts, group.last_id) {
            return Some(facts.entries_added.saturating_sub(read));
        }
    }
    estimate_entries_read(facts, group.last_id).map(|read| facts.entries_added.saturating_sub(read))
}

/// How many entries one `after` call fetches while serving an unbounded read.
const READ_CHUNK: usize = 1000;

/// Most entries one XREADGROUP call delivers, even without COUNT, so that its journal record
/// stays far below the record size limit (a million IDs encode to a few MB).
pub(crate) const MAX_READ: usize = 1_000_000;

/// What one planned operation produced: its reply and the change to apply and journal.
pub(crate) struct Planned<T> {
    pub reply: T,
    pub change: Option<Change>,
}

impl<T> Planned<T> {
    fn new(reply: T, change: Option<Change>) -> Self {
        Planned { reply, change }
    }
}

impl GroupSet {
    fn group(&self, name: &[u8]) -> Result<&Group> {
        self.groups.get(name).ok_or(Error::NoGroup)
    }

    pub fn info(&self, facts: &StreamFacts) -> Vec<GroupInfo> {
        self.groups
            .iter()
            .map(|(name, g)| group_info(name, g, facts))
            .collect()
    }

    pub fn group_info(&self, name: &[u8], facts: &StreamFacts) -> Option<GroupInfo> {
        self.groups
            .get_key_value(name)
            .map(|(name, g)| group_info(name, g, facts))
    }

    /// Whether group `name` has consumer `consumer` (false if there is no such group).
    pub fn has_consumer(&self, name: &[u8], consumer: &[u8]) -> bool {
        self.groups
            .get(name)
            .is_some_and(|g| g.consumers.contains_key(consumer))
    }

    pub fn consumers(&self, name: &[u8]) -> Result<Vec<ConsumerInfo>> {
        let g = self.group(name)?;
        Ok(g.consumers
            .iter()
            .map(|(cname, c)| ConsumerInfo {
                name: cname.clone(),
                pending: c.pel.len() as u64,
                seen_time_ms: c.seen_time,
                active_time_ms: c.active_time,
            })
            .collect())
    }

    /// XGROUP CREATE; `stream_last` is the stream's last ID now.
    pub fn plan_create_group(
        &self,
        name: &[u8],
        id: StreamId,
        entries_read: Option<u64>,
        stream_last: StreamId,
    ) -> Result<Planned<()>> {
        if self.groups.contains_key(name) {
            return Err(Error::BusyGroup);
        }
        Ok(Planned::new(
            (),
            Some(Change::CreateGroup {
                group: Bytes::copy_from_slice(name),
                last_id: id,
                entries_read,
                ahead: id > stream_last,
            }),
        ))
    }

    /// XGROUP SETID; `stream_last` is the stream's last ID now.
    pub fn plan_set_id(
        &self,
        name: &[u8],
        id: StreamId,
        entries_read: Option<u64>,
        stream_last: StreamId,
    ) -> Result<Planned<()>> {
        self.group(name)?;
        Ok(Planned::new(
            (),
            Some(Change::SetId {
                group: Bytes::copy_from_slice(name),
                last_id: id,
                entries_read,
                ahead: id > stream_last,
            }),
        ))
    }

    pub fn plan_destroy(&self, name: &[u8]) -> Planned<bool> {
        if self.groups.contains_key(name) {
            Planned::new(
                true,
                Some(Change::DestroyGroup {
                    group: Bytes::copy_from_slice(name),
                }),
            )
        } else {
            Planned::new(false, None)
        }
    }

    pub fn plan_create_consumer(
        &self,
        name: &[u8],
        consumer: &[u8],
        now: u64,
    ) -> Result<Planned<bool>> {
        let g = self.group(name)?;
        if g.consumers.contains_key(consumer) {
            return Ok(Planned::new(false, None));
        }
        Ok(Planned::new(
            true,
            Some(Change::CreateConsumer {
                group: Bytes::copy_from_slice(name),
                consumer: Bytes::copy_from_slice(consumer),
                now,
            }),
        ))
    }

    pub fn plan_delete_consumer(&self, name: &[u8], consumer: &[u8]) -> Result<Planned<u64>> {
        let g = self.group(name)?;
        match g.consumers.get(consumer) {
            None => Ok(Planned::new(0, None)),
            Some(c) => Ok(Planned::new(
                c.pel.len() as u64,
                Some(Change::DeleteConsumer {
                    group: Bytes::copy_from_slice(name),
                    consumer: Bytes::copy_from_slice(consumer),
                }),
            )),
        }
    }

    /// XREADGROUP on one stream. `count` of `None` (or `Some(0)`, as Redis treats COUNT 0)
    /// means no limit other than [`MAX_READ`].
    #[allow(clippy::too_many_arguments)]
    pub fn plan_read(
        &self,
        src: &dyn EntrySource,
        name: &[u8],
        consumer: &[u8],
        start: GroupStart,
        count: Option<usize>,
        noack: bool,
        now: u64,
    ) -> Result<Planned<Vec<Delivery>>> {
        let g = self.group(name)?;
        let limit = match count {
            None | Some(0) => MAX_READ,
            Some(n) => n.min(MAX_READ),
        };
        match start {
            GroupStart::New => {
                let facts = src.facts();
                let mut last_id = g.last_id;
                let mut entries_read = g.entries_read;
                let mut out = Vec::new();
                let mut ids = Vec::new();
                while out.len() < limit {
                    let want = (limit - out.len()).min(READ_CHUNK);
                    let chunk = src.after(last_id, want)?;
                    let got = chunk.len();
                    let before = out.len();
                    for entry in chunk {
                        if entry.id <= last_id {
                            continue;
                        }
                        entries_read = match entries_read {
                            Some(read) if !has_tombstones_from(&facts, entry.id) => {
                                Some(read.saturating_add(1))
                            }
                            _ if facts.entries_added != 0 => {
                                estimate_entries_read(&facts, entry.id)
                            }
                            unchanged => unchanged,
                        };
                        last_id = entry.id;
                        if !noack {
                            ids.push(entry.id);
                        }
                        out.push(Delivery {
                            id: entry.id,
                            fields: Some(entry.fields),
                        });
                    }
                    // A short chunk is the end; a chunk without progress would loop forever.
                    if got < want || out.len() == before {
                        break;
                    }
                }
                let change = Change::Deliver {
                    group: Bytes::copy_from_slice(name),
                    consumer: Bytes::copy_from_slice(consumer),
                    now,
                    last_id,
                    entries_read,
                    ids,
                };
                Ok(Planned::new(out, Some(change)))
            }
            GroupStart::History(after) => {
                let mut out = Vec::new();
                let mut claimed = Vec::new();
                if let (Some(c), Some(from)) = (g.consumers.get(consumer), after.next()) {
                    for &id in c.pel.range(from..).take(limit) {
                        match src.get(id)? {
                            Some(fields) => {
                                if let Some(n) = g.pel.get(&id) {
                                    claimed.push((id, now, n.delivery_count.saturating_add(1)));
                                }
                                out.push(Delivery {
                                    id,
                                    fields: Some(fields),
                                });
                            }
                            None => out.push(Delivery { id, fields: None }),
                        }
                    }
                }
                let change = Change::Claim {
                    group: Bytes::copy_from_slice(name),
                    consumer: Bytes::copy_from_slice(consumer),
                    now,
                    active: false,
                    claimed,
                    removed: Vec::new(),
                    last_id: None,
                };
                Ok(Planned::new(out, Some(change)))
            }
        }
    }

    pub fn plan_ack(&self, name: &[u8], ids: &[StreamId]) -> Result<Planned<u64>> {
        let g = self.group(name)?;
        let mut acked = BTreeSet::new();
        for id in ids {
            if g.pel.contains_key(id) {
                acked.insert(*id);
            }
        }
        let n = acked.len() as u64;
        let change = (!acked.is_empty()).then(|| Change::Ack {
            group: Bytes::copy_from_slice(name),
            ids: acked.into_iter().collect(),
        });
        Ok(Planned::new(n, change))
    }

    pub fn pending_summary(&self, name: &[u8]) -> Result<PendingSummary> {
        let g = self.group(name)?;
        let range = match (g.pel.keys().next(), g.pel.keys().next_back()) {
            (Some(a), Some(b)) => Some((*a, *b)),
            _ => None,
        };
        Ok(PendingSummary {
            count: g.pel.len() as u64,
            range,
            consumers: g
                .consumers
                .iter()
                .filter(|(_, c)| !c.pel.is_empty())
                .map(|(n, c)| (n.clone(), c.pel.len() as u64))
                .collect(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn pending(
        &self,
        name: &[u8],
        start: Bound<StreamId>,
        end: Bound<StreamId>,
        count: usize,
        consumer: Option<&[u8]>,
        min_idle_ms: Option<u64>,
        now: u64,
    ) -> Result<Vec<PendingEntry>> {
        let g = self.group(name)?;
        if count == 0 || !valid_range(start, end) {
            return Ok(Vec::new());
        }
        let idle_ok = |n: &Nack| match min_idle_ms {
            None | Some(0) => true,
            Some(min) => i128::from(now) - i128::from(n.delivery_time) >= i128::from(min),
        };
        let entry = |id: StreamId, n: &Nack| PendingEntry {
            id,
            consumer: g
                .consumers
                .by_slot(n.consumer)
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            delivery_time_ms: n.delivery_time,
            delivery_count: n.delivery_count,
        };
        let out = match consumer {
            Some(cname) => match g.consumers.get(cname) {
                None => Vec::new(),
                Some(c) => c
                    .pel
                    .range((start, end))
                    .filter_map(|id| g.pel.get(id).map(|n| (*id, n)))
                    .filter(|(_, n)| idle_ok(n))
                    .take(count)
                    .map(|(id, n)| entry(id, n))
                    .collect(),
            },
            None => g
                .pel
                .range((start, end))
                .filter(|(_, n)| idle_ok(n))
                .take(count)
                .map(|(id, n)| entry(*id, n))
                .collect(),
        };
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn plan_claim(
        &self,
        src: &dyn EntrySource,
        name: &[u8],
        consumer: &[u8],
        min_idle_ms: u64,
        ids: &[StreamId],
        options: &ClaimOptions,
        now: u64,
    ) -> Result<Planned<Vec<Delivery>>> {
        let g = self.group(name)?;
        let requested = match (options.idle_ms, options.time_ms) {
            (Some(idle), _) => Some(i128::from(now) - i128::from(idle)),
            (None, Some(t)) => Some(i128::from(t)),
            (None, None) => None,
        };
        let delivery_time = match requested {
            Some(t) if t >= 0 && t <= i128::from(now) => u64::try_from(t).unwrap_or(now),
            _ => now,
        };
        // Working view of the entries this call touched: None = removed from the PEL;
        // Some((owned_by_someone, time, count)).
        let mut overlay: BTreeMap<StreamId, Option<(bool, u64, u64)>> = BTreeMap::new();
        let mut out = Vec::new();
        for &id in ids {
            let current = match overlay.get(&id) {
                Some(v) => *v,
                None => g
                    .pel
                    .get(&id)
                    .map(|n| (true, n.delivery_time, n.delivery_count)),
            };
            let fields = src.get(id)?;
            let Some(fields) = fields else {
                if current.is_some() {
                    overlay.insert(id, None);
                }
                continue;
            };
            let current = match current {
                None if options.force => Some((false, now, 1)),
                other => other,
            };
            let Some((owned, time, count)) = current else {
                continue;
            };
            if owned
                && min_idle_ms > 0
                && i128::from(now) - i128::from(time) < i128::from(min_idle_ms)
            {
                continue;
            }
            let count = match options.retry_count {
                Some(n) => n,
                None if !options.just_id => count.saturating_add(1),
                None => count,
            };
            overlay.insert(id, Some((true, delivery_time, count)));
            out.push(Delivery {
                id,
                fields: (!options.just_id).then_some(fields),
            });
        }
        let mut claimed = Vec::new();
        let mut removed = Vec::new();
        for (id, v) in overlay {
            match v {
                Some((_, time, count)) => claimed.push((id, time, count)),
                None => removed.push(id),
            }
        }
        let change = Change::Claim {
            group: Bytes::copy_from_slice(name),
            consumer: Bytes::copy_from_slice(consumer),
            now,
            active: !out.is_empty(),
            claimed,
            removed,
            last_id: options
                .last_id
                .filter(|l| *l > g.last_id)
                .map(|l| (l, l > src.facts().last_id)),
        };
        Ok(Planned::new(out, Some(change)))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn plan_autoclaim(
        &self,
        src: &dyn EntrySource,
        name: &[u8],
        consumer: &[u8],
        min_idle_ms: u64,
        start: StreamId,
        count: usize,
        just_id: bool,
        now: u64,
    ) -> Result<Planned<AutoClaim>> {
        let g = self.group(name)?;
        let mut attempts = count.saturating_mul(10);
        let mut left = count;
        let mut last_examined = None;
        let mut claimed_out = Vec::new();
        let mut claimed = Vec::new();
        let mut deleted = Vec::new();
        let mut iter = g.pel.range(start..);
        while attempts > 0 && left > 0 {
            attempts -= 1;
            let Some((&id, nack)) = iter.next() else {
                break;
            };
            last_examined = Some(id);
            let Some(fields) = src.get(id)? else {
                deleted.push(id);
                left -= 1;
                continue;
            };
            if min_idle_ms > 0
                && i128::from(now) - i128::from(nack.delivery_time) < i128::from(min_idle_ms)
            {
                continue;
            }
            let count = if just_id {
                nack.delivery_count
            } else {
                nack.delivery_count.saturating_add(1)
            };
            claimed.push((id, now, count));
            claimed_out.push(Delivery {
                id,
                fields: (!just_id).then_some(fields),
            });
            left -= 1;
        }
        let next = match last_examined {
            Some(last) => g
                .pel
                .range((Bound::Excluded(last), Bound::Unbounded))
                .next(),
            None => g.pel.range(start..).next(),
        }
        .map(|(id, _)| *id)
        .unwrap_or(StreamId::MIN);
        let change = Change::Claim {
            group: Bytes::copy_from_slice(name),
            consumer: Bytes::copy_from_slice(consumer),
            now,
            active: !claimed.is_empty(),
            claimed,
            removed: deleted.clone(),
            last_id: None,
        };
        Ok(Planned::new(
            AutoClaim {
                next,
                claimed: claimed_out,
                deleted,
            },
            Some(change),
        ))
    }

    /// Whether `change` would only move a consumer's seen time (a read or claim that found
    /// nothing for an existing consumer). Such a change is journaled but not waited for:
    /// losing it in a crash only makes the consumer look idle for longer.
    pub fn is_seen_only(&self, change: &Change) -> bool {
        match change {
            Change::Deliver {
                group,
                consumer,
                last_id,
                entries_read,
                ids,
                ..
            } => self.groups.get(group).is_some_and(|g| {
                ids.is_empty()
                    && g.consumers.contains_key(consumer)
                    && g.last_id == *last_id
                    && g.entries_read == *entries_read
            }),
            Change::Claim {
                group,
                consumer,
                claimed,
                removed,
                last_id,
                ..
            } => self.groups.get(group).is_some_and(|g| {
                claimed.is_empty()
                    && removed.is_empty()
                    && last_id.is_none()
                    && g.consumers.contains_key(consumer)
            }),
            _ => false,
        }
    }

    /// Applies one change. Changes that no longer fit (a group that is gone) are ignored, so
    /// replay never fails on a change the state cannot take.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::CreateGroup {
                group,
                last_id,
                entries_read,
                ahead,
            } => {
                self.groups.entry(group.clone()).or_insert_with(|| Group {
                    last_id: *last_id,
                    ahead_of_stream: *ahead,
                    entries_read: *entries_read,
                    ..Group::default()
                });
            }
            Change::SetId {
                group,
                last_id,
                entries_read,
                ahead,
            } => {
                if let Some(g) = self.groups.get_mut(group) {
                    g.last_id = *last_id;
                    g.ahead_of_stream = *ahead;
                    g.entries_read = *entries_read;
                }
            }
            Change::DestroyGroup { group } => {
                self.groups.remove(group);
            }
            Change::CreateConsumer {
                group,
                consumer,
                now,
            } => {
                if let Some(g) = self.groups.get_mut(group) {
                    g.consumers.get_or_insert(consumer, *now);
                }
            }
            Change::DeleteConsumer { group, consumer } => {
                if let Some(g) = self.groups.get_mut(group) {
                    if let Some(c) = g.consumers.remove(consumer) {
                        for id in c.pel {
                            g.pel.remove(&id);
                        }
                    }
                }
            }
            Change::Deliver {
                group,
                consumer,
                now,
                last_id,
                entries_read,
                ids,
            } => {
                if let Some(g) = self.groups.get_mut(group) {
                    if g.last_id != *last_id {
                        g.last_id = *last_id;
                        g.ahead_of_stream = false;
                    }
                    g.entries_read = *entries_read;
                    let slot = g.consumers.get_or_insert(consumer, *now);
                    for id in ids {
                        g.assign(*id, slot, *now, 1);
                    }
                    if let Some(c) = g.consumers.by_slot_mut(slot) {
                        c.seen_time = *now;
                        if !ids.is_empty() {
                            c.active_time = Some(*now);
                        }
                    }
                }
            }
            Change::Ack { group, ids } => {
                if let Some(g) = self.groups.get_mut(group) {
                    for id in ids {
                        g.unassign(*id);
                    }
                }
            }
            Change::Claim {
                group,
                consumer,
                now,
                active,
                claimed,
                removed,
                last_id,
            } => {
                if let Some(g) = self.groups.get_mut(group) {
                    if let Some((l, ahead)) = last_id {
                        if *l > g.last_id {
                            g.last_id = *l;
                            g.ahead_of_stream = *ahead;
                        }
                    }
                    let slot = g.consumers.get_or_insert(consumer, *now);
                    for id in removed {
                        g.unassign(*id);
                    }
                    for (id, time, count) in claimed {
                        g.assign(*id, slot, *time, *count);
                    }
                    if let Some(c) = g.consumers.by_slot_mut(slot) {
                        c.seen_time = *now;
                        if *active {
                            c.active_time = Some(*now);
                        }
                    }
                }
            }
        }
    }

    /// Brings the state in line with a stream whose tail may have been lost: a last-delivered ID
    /// that came from delivering an entry above the stream's last ID drops to that last ID
    /// (entries-read re-estimated), and PEL entries above the stream's last ID (deliveries of
    /// lost entries) are dropped. Returns one description per group changed.
    pub fn clamp(&mut self, facts: &StreamFacts) -> Vec<String> {
        let mut notes = Vec::new();
        for (name, g) in self.groups.iter_mut() {
            let mut note = Vec::new();
            if g.last_id > facts.last_id && !g.ahead_of_stream {
                note.push(format!(
                    "last-delivered-id {} -> {}",
                    g.last_id, facts.last_id
                ));
                g.last_id = facts.last_id;
                g.entries_read = estimate_entries_read(facts, g.last_id);
            }
            let above: Vec<StreamId> = match facts.last_id.next() {
                Some(from) => g.pel.range(from..).map(|(id, _)| *id).collect(),
                None => Vec::new(),
            };
            if !above.is_empty() {
                note.push(format!(
                    "{} pending entries above {} dropped",
                    above.len(),
                    facts.last_id
                ));
                for id in above {
                    g.unassign(id);
                }
            }
            if !note.is_empty() {
                notes.push(format!(
                    "group {}: {}",
                    String::from_utf8_lossy(name),
                    note.join(", ")
                ));
            }
        }
        notes
    }
}

impl Group {
    /// Makes consumer `slot` the owner of PEL entry `id` with the given delivery time and count.
    fn assign(&mut self, id: StreamId, slot: u32, time: u64, count: u64) {
        let nack = Nack {
            consumer: slot,
            delivery_time: time,
            delivery_count: count,
        };
        if let Some(old) = self.pel.insert(id, nack) {
            if old.consumer != slot {
                if let Some(c) = self.consumers.by_slot_mut(old.consumer) {
                    c.pel.remove(&id);
                }
            }
        }
        if let Some(c) = self.consumers.by_slot_mut(slot) {
            c.pel.insert(id);
        }
    }

    fn unassign(&mut self, id: StreamId) {
        if let Some(old) = self.pel.remove(&id) {
            if let Some(c) = self.consumers.by_slot_mut(old.consumer) {
                c.pel.remove(&id);
            }
        }
    }
}

fn group_info(name: &Bytes, g: &Group, facts: &StreamFacts) -> GroupInfo {
    GroupInfo {
        name: name.clone(),
        consumers: g.consumers.len() as u64,
        pending: g.pel.len() as u64,
        last_delivered_id: g.last_id,
        entries_read: g.entries_read,
        lag: lag(facts, g),
    }
}

/// False for ranges BTreeMap::range would panic on (start > end, or equal and both excluded).
pub(crate) fn valid_range(start: Bound<StreamId>, end: Bound<StreamId>) -> bool {
    use Bound::*;
    match (start, end) {
        (Included(a), Included(b)) => a <= b,
        (Included(a), Excluded(b)) | (Excluded(a), Included(b)) => a < b,
        (Excluded(a), Excluded(b)) => a < b,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    //! Semantics checked side by side with redis-server 7.0.15 (consumer seen/active times and
    //! XCLAIM/XAUTOCLAIM consumer creation follow Redis 7.2).

    use super::*;
    use crate::group::testutil::MemStream;

    fn id(ms: u64) -> StreamId {
        StreamId::new(ms, 0)
    }

    #[derive(Default)]
    struct Env {
        s: MemStream,
        set: GroupSet,
    }

    impl Env {
        fn with_entries(n: u64) -> Env {
            let mut e = Env::default();
            e.s.add_n(n);
            e
        }
        fn run<T>(&mut self, p: Result<Planned<T>>) -> T {
            let p = p.unwrap();
            if let Some(c) = &p.change {
                self.set.apply(c);
            }
            p.reply
        }
        fn create(&mut self, g: &str, at: StreamId, er: Option<u64>) {
            let p = self
                .set
                .plan_create_group(g.as_bytes(), at, er, self.s.last_id);
            self.run(p)
        }
        fn read(
            &mut self,
            g: &str,
            c: &str,
            start: GroupStart,
            count: Option<usize>,
            now: u64,
        ) -> Vec<Delivery> {
            let p = self.set.plan_read(
                &self.s,
                g.as_bytes(),
                c.as_bytes(),
                start,
                count,
                false,
                now,
            );
            self.run(p)
        }
        fn ids(d: &[Delivery]) -> Vec<(StreamId, bool)> {
            d.iter().map(|d| (d.id, d.fields.is_some())).collect()
        }
        fn pel(&self, g: &str) -> Vec<(StreamId, String, u64, u64)> {
            self.set
                .pending(
                    g.as_bytes(),
                    Bound::Unbounded,
                    Bound::Unbounded,
                    usize::MAX,
                    None,
                    None,
                    0,
                )
                .unwrap()
                .into_iter()
                .map(|p| {
                    (
                        p.id,
                        String::from_utf8(p.consumer.to_vec()).unwrap(),
                        p.delivery_time_ms,
                        p.delivery_count,
                    )
                })
                .collect()
        }
        fn info(&self, g: &str) -> GroupInfo {
            self.set.group_info(g.as_bytes(), &self.s.facts()).unwrap()
        }
    }

    fn pe(ms: u64, c: &str, t: u64, n: u64) -> (StreamId, String, u64, u64) {
        (id(ms), c.to_string(), t, n)
    }

    #[test]
    fn create_lag_and_entries_read_match_redis() {
        // XADD 1..5; XGROUP CREATE g0 0, g1 $, g2 2-0, g3 0 ENTRIESREAD 1.
        let mut e = Env::with_entries(5);
        e.create("g0", StreamId::MIN, None);
        e.create("g1", id(5), None);
        e.create("g2", id(2), None);
        e.create("g3", StreamId::MIN, Some(1));
        let lags: Vec<_> = ["g0", "g1", "g2", "g3"]
            .iter()
            .map(|g| (e.info(g).entries_read, e.info(g).lag))
            .collect();
        assert_eq!(
            lags,
            vec![
                (None, Some(5)),
                (None, Some(0)),
                (None, None),
                (Some(1), Some(4))
            ]
        );
        assert!(matches!(
            e.set
                .plan_create_group(b"g0", StreamId::MIN, None, e.s.last_id),
            Err(Error::BusyGroup)
        ));
        // XDEL 3-0: lag of g0 and g3 becomes unknown.
        e.s.delete(id(3));
        assert_eq!(e.info("g0").lag, None);
        assert_eq!(e.info("g3").lag, None);
        assert_eq!(e.info("g1").lag, Some(0));
        // Reading 2 entries past a tombstone leaves entries-read unknown.
        e.read("g0", "c", GroupStart::New, Some(2), 1);
        e.read("g3", "c", GroupStart::New, Some(2), 1);
        assert_eq!((e.info("g0").entries_read, e.info("g0").lag), (None, None));
        assert_eq!((e.info("g3").entries_read, e.info("g3").lag), (None, None));
        assert_eq!(e.info("g0").last_delivered_id, id(2));
    }

    #[test]
    fn history_deleted_claim_justid_autoclaim_match_redis() {
        let mut e = Env::with_entries(6);
        e.create("g", StreamId::MIN, None);
        let d = e.read("g", "a", GroupStart::New, Some(3), 10);
        assert_eq!(
            Env::ids(&d),
            vec![(id(1), true), (id(2), true), (id(3), true)]
        );
        e.s.delete(id(2));
        // History: deleted entries come back with nil bodies and keep their delivery count.
        let d = e.read("g", "a", GroupStart::History(StreamId::MIN), None, 20);
        assert_eq!(
            Env::ids(&d),
            vec![(id(1), true), (id(2), false), (id(3), true)]
        );
        assert_eq!(
            e.pel("g"),
            vec![pe(1, "a", 20, 2), pe(2, "a", 10, 1), pe(3, "a", 20, 2)]
        );
        // XCLAIM b 0 2-0 3-0 JUSTID: the deleted 2-0 leaves the PEL; JUSTID keeps the count.
        let opts = ClaimOptions {
            just_id: true,
            ..ClaimOptions::default()
        };
        let p = e
            .set
            .plan_claim(&e.s, b"g", b"b", 0, &[id(2), id(3)], &opts, 30);
        let d = e.run(p);
        assert_eq!(Env::ids(&d), vec![(id(3), false)]);
        assert_eq!(e.pel("g"), vec![pe(1, "a", 20, 2), pe(3, "b", 30, 2)]);
        assert_eq!(
            (e.info("g").entries_read, e.info("g").lag),
            (Some(3), Some(3))
        );
        // XDEL 4-0 5-0, then reading 6-0 still counts (Redis 7.0 looks for tombstones after 6-0).
        e.s.delete(id(4));
        e.s.delete(id(5));
        let d = e.read("g", "a", GroupStart::New, Some(10), 40);
        assert_eq!(Env::ids(&d), vec![(id(6), true)]);
        assert_eq!(
            (e.info("g").entries_read, e.info("g").lag),
            (Some(4), Some(2))
        );
        // XAUTOCLAIM c 0 0 COUNT 2, then COUNT 1: cursors 6-0 and 3-0.
        let p = e
            .set
            .plan_autoclaim(&e.s, b"g", b"c", 0, StreamId::MIN, 2, false, 50);
        let r = e.run(p);
        assert_eq!(
            (r.next, Env::ids(&r.claimed), r.deleted.len()),
            (id(6), vec![(id(1), true), (id(3), true)], 0)
        );
        let p = e
            .set
            .plan_autoclaim(&e.s, b"g", b"c", 0, StreamId::MIN, 1, false, 60);
        let r = e.run(p);
        assert_eq!((r.next, Env::ids(&r.claimed)), (id(3), vec![(id(1), true)]));
        assert_eq!(
            e.pel("g"),
            vec![pe(1, "c", 60, 4), pe(3, "c", 50, 3), pe(6, "a", 40, 1)]
        );
        // SETID 0 (entries-read unknown), then `>` re-delivers and reassigns with count 1.
        let p = e.set.plan_set_id(b"g", StreamId::MIN, None, e.s.last_id);
        e.run(p);
        let d = e.read("g", "d", GroupStart::New, Some(2), 70);
        assert_eq!(Env::ids(&d), vec![(id(1), true), (id(3), true)]);
        assert_eq!(
            e.pel("g"),
            vec![pe(1, "d", 70, 1), pe(3, "d", 70, 1), pe(6, "a", 40, 1)]
        );
        assert_eq!((e.info("g").entries_read, e.info("g").lag), (None, None));
        assert_eq!(e.info("g").consumers, 4);
    }

    #[test]
    fn autoclaim_reports_and_removes_deleted_ids() {
        let mut e = Env::with_entries(6);
        e.create("g", StreamId::MIN, None);
        e.read("g", "a", GroupStart::New, None, 1);
        e.s.delete(id(2));
        e.s.delete(id(3));
        let p = e
            .set
            .plan_autoclaim(&e.s, b"g", b"b", 0, StreamId::MIN, 2, false, 5);
        let r = e.run(p);
        assert_eq!(
            (r.next, Env::ids(&r.claimed), r.deleted.clone()),
            (id(3), vec![(id(1), true)], vec![id(2)])
        );
        let p = e
            .set
            .plan_autoclaim(&e.s, b"g", b"b", 0, StreamId::MIN, 3, false, 6);
        let r = e.run(p);
        assert_eq!(
            (r.next, Env::ids(&r.claimed), r.deleted.clone()),
            (id(5), vec![(id(1), true), (id(4), true)], vec![id(3)])
        );
        let p = e.set.plan_autoclaim(&e.s, b"g", b"b", 0, id(5), 5, true, 7);
        let r = e.run(p);
        assert_eq!(
            (r.next, Env::ids(&r.claimed)),
            (StreamId::MIN, vec![(id(5), false), (id(6), false)])
        );
        let sum = e.set.pending_summary(b"g").unwrap();
        assert_eq!((sum.count, sum.range), (4, Some((id(1), id(6)))));
        assert_eq!(sum.consumers, vec![(Bytes::from_static(b"b"), 4)]);
        // Nothing idle long enough: no claims, cursor 0-0; the consumer is still created (7.2).
        let p = e
            .set
            .plan_autoclaim(&e.s, b"g", b"c", 100_000, StreamId::MIN, 1, false, 8);
        let r = e.run(p);
        assert_eq!((r.next, r.claimed.len()), (StreamId::MIN, 0));
        let cs = e.set.consumers(b"g").unwrap();
        let c = cs.iter().find(|c| &c.name[..] == b"c").unwrap();
        assert_eq!((c.seen_time_ms, c.active_time_ms), (8, None));
        // DELCONSUMER returns the dropped count; CREATECONSUMER 1 then 0; XACK counts once.
        let p = e.set.plan_delete_consumer(b"g", b"b");
        assert_eq!(e.run(p), 4);
        let p = e.set.plan_create_consumer(b"g", b"b", 9);
        assert!(e.run(p));
        let p = e.set.plan_create_consumer(b"g", b"b", 9);
        assert!(!e.run(p));
        let p = e.set.plan_ack(b"g", &[id(4), id(4), id(9)]);
        assert_eq!(e.run(p), 0);
        assert!(e.pel("g").is_empty());
    }

    #[test]
    fn claim_force_retrycount_idle_lastid() {
        let mut e = Env::with_entries(3);
        e.create("g", StreamId::MIN, None);
        // FORCE on an entry never delivered: count starts at 1, +1 unless JUSTID (as Redis).
        let force = ClaimOptions {
            force: true,
            ..ClaimOptions::default()
        };
        let p = e.set.plan_claim(&e.s, b"g", b"c", 0, &[id(1)], &force, 100);
        e.run(p);
        let fj = ClaimOptions {
            force: true,
            just_id: true,
            ..ClaimOptions::default()
        };
        let p = e.set.plan_claim(&e.s, b"g", b"c", 0, &[id(2)], &fj, 100);
        e.run(p);
        assert_eq!(e.pel("g"), vec![pe(1, "c", 100, 2), pe(2, "c", 100, 1)]);
        // min-idle not reached: nothing claimed.
        let p = e.set.plan_claim(
            &e.s,
            b"g",
            b"d",
            50,
            &[id(1)],
            &ClaimOptions::default(),
            120,
        );
        assert!(e.run(p).is_empty());
        // IDLE 30 sets delivery time to now-30; RETRYCOUNT sets the count; LASTID raises last id.
        let o = ClaimOptions {
            idle_ms: Some(30),
            retry_count: Some(7),
            last_id: Some(id(3)),
            ..ClaimOptions::default()
        };
        let p = e
            .set
            .plan_claim(&e.s, b"g", b"d", 10, &[id(1), id(1)], &o, 200);
        assert_eq!(e.run(p).len(), 2);
        assert_eq!(e.pel("g")[0], pe(1, "d", 170, 7));
        assert_eq!(e.info("g").last_delivered_id, id(3));
        // A TIME in the future is replaced by now.
        let o = ClaimOptions {
            time_ms: Some(10_000),
            ..ClaimOptions::default()
        };
        let p = e.set.plan_claim(&e.s, b"g", b"d", 0, &[id(2)], &o, 300);
        e.run(p);
        assert_eq!(e.pel("g")[1], pe(2, "d", 300, 2));
        // XPENDING IDLE and consumer filters.
        let p = e
            .set
            .pending(
                b"g",
                Bound::Unbounded,
                Bound::Unbounded,
                10,
                None,
                Some(100),
                300,
            )
            .unwrap();
        assert_eq!(p.iter().map(|p| p.id).collect::<Vec<_>>(), vec![id(1)]);
        let p = e
            .set
            .pending(
                b"g",
                Bound::Excluded(id(1)),
                Bound::Unbounded,
                10,
                Some(b"d"),
                None,
                300,
            )
            .unwrap();
        assert_eq!(p.iter().map(|p| p.id).collect::<Vec<_>>(), vec![id(2)]);
        assert!(e
            .set
            .pending(
                b"g",
                Bound::Excluded(id(2)),
                Bound::Excluded(id(2)),
                10,
                None,
                None,
                0
            )
            .unwrap()
            .is_empty());
        assert!(matches!(
            e.set.pending(
                b"nope",
                Bound::Unbounded,
                Bound::Unbounded,
                1,
                None,
                None,
                0
            ),
            Err(Error::NoGroup)
        ));
    }

    #[test]
    fn consumer_seen_and_active_times_follow_redis_7_2() {
        let mut e = Env::with_entries(2);
        e.create("g", StreamId::MIN, None);
        let p = e.set.plan_create_consumer(b"g", b"c", 5);
        e.run(p);
        let c = |e: &Env| e.set.consumers(b"g").unwrap()[0].clone();
        assert_eq!((c(&e).seen_time_ms, c(&e).active_time_ms), (5, None));
        // NOACK reads do not make a consumer active; reads that add to the PEL do.
        let p = e
            .set
            .plan_read(&e.s, b"g", b"c", GroupStart::New, Some(1), true, 10);
        assert_eq!(e.run(p).len(), 1);
        assert_eq!(
            (c(&e).seen_time_ms, c(&e).active_time_ms, c(&e).pending),
            (10, None, 0)
        );
        e.read("g", "c", GroupStart::New, None, 20);
        assert_eq!(
            (c(&e).seen_time_ms, c(&e).active_time_ms, c(&e).pending),
            (20, Some(20), 1)
        );
        // An empty read and a history read only update the seen time.
        e.read("g", "c", GroupStart::New, None, 30);
        e.read("g", "c", GroupStart::History(StreamId::MIN), None, 40);
        assert_eq!((c(&e).seen_time_ms, c(&e).active_time_ms), (40, Some(20)));
        // Created without ENTRIESREAD, the counter is recovered from the stream on reading.
        assert_eq!(e.info("g").entries_read, Some(2));
        assert_eq!(e.info("g").lag, Some(0));
    }

    #[test]
    fn clamp_to_a_stream_that_lost_its_tail() {
        let mut e = Env::with_entries(5);
        e.create("g", StreamId::MIN, Some(0));
        e.create("h", id(2), None);
        // Created ahead of the stream on purpose: kept. Created at `$`: clamped.
        e.create("k", id(9), None);
        e.create("dollar", id(5), None);
        e.read("g", "a", GroupStart::New, None, 1);
        let mut lost = MemStream::default();
        lost.add_n(3);
        let notes = e.set.clamp(&lost.facts());
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert_eq!(e.set.groups[&Bytes::from_static(b"dollar")].last_id, id(3));
        let g = &e.set.groups[&Bytes::from_static(b"g")];
        assert_eq!(g.last_id, id(3));
        assert_eq!(g.entries_read, Some(3));
        assert_eq!(
            g.pel.keys().copied().collect::<Vec<_>>(),
            vec![id(1), id(2), id(3)]
        );
        assert_eq!(g.consumers.get(b"a").unwrap().pel.len(), 3);
        assert_eq!(e.set.groups[&Bytes::from_static(b"k")].last_id, id(9));
        assert!(e.set.clamp(&lost.facts()).is_empty());
    }
}
