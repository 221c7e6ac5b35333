//! A seeded stream workload run against the engine next to a tiny model, recording the model
//! state after every operation so a recovered state can be matched against every prefix.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::ops::Bound;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;
use sluice_engine::{
    Direction, Engine, Entry, GroupStart, IdSpec, Lsn, StreamId, TrimSpec, TrimStrategy,
};

/// Keys used by the workload; the second one needs escaping to become a directory name.
pub const KEYS: [&[u8]; 2] = [b"alpha", b"be/ta \xff"];
pub const DB: u32 = 0;
pub const GROUP: &[u8] = b"g";

pub type Fields = Vec<(Bytes, Bytes)>;

/// The consumer group `g` of a stream, as XINFO GROUPS and XPENDING show it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupState {
    pub last_delivered: StreamId,
    /// Pending IDs and their delivery counts.
    pub pel: BTreeMap<StreamId, u64>,
}

impl GroupState {
    pub fn fingerprint(group: Option<&GroupState>) -> u64 {
        let mut h = DefaultHasher::new();
        if let Some(g) = group {
            (g.last_delivered.ms, g.last_delivered.seq).hash(&mut h);
            for (id, count) in &g.pel {
                (id.ms, id.seq, count).hash(&mut h);
            }
        }
        h.finish()
    }
}

/// One key's model state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyState {
    pub exists: bool,
    pub entries: BTreeMap<StreamId, Fields>,
    pub last_id: StreamId,
    pub group: Option<GroupState>,
}

impl KeyState {
    pub fn fingerprint(&self) -> u64 {
        fingerprint(self.exists, self.entries.iter().map(|(id, f)| (*id, f)))
    }
}

/// Reads a key's consumer group from the engine (`None` if the stream or group is missing).
pub fn read_group(engine: &Engine, key: usize, now_ms: u64) -> Result<Option<GroupState>, String> {
    let Some(s) = engine.stream(DB, KEYS[key]) else {
        return Ok(None);
    };
    let Some(info) = s.group_info(GROUP) else {
        return Ok(None);
    };
    let pel = s
        .pending(
            GROUP,
            Bound::Unbounded,
            Bound::Unbounded,
            usize::MAX,
            None,
            None,
            now_ms,
        )
        .map_err(|e| format!("pending: {e}"))?;
    Ok(Some(GroupState {
        last_delivered: info.last_delivered_id,
        pel: pel.into_iter().map(|p| (p.id, p.delivery_count)).collect(),
    }))
}

/// A hash of a stream's existence and live entries (IDs and bytes), in order.
pub fn fingerprint<'a>(exists: bool, entries: impl Iterator<Item = (StreamId, &'a Fields)>) -> u64 {
    let mut h = DefaultHasher::new();
    exists.hash(&mut h);
    for (id, fields) in entries {
        (id.ms, id.seq).hash(&mut h);
        for (f, v) in fields {
            f.as_ref().hash(&mut h);
            v.as_ref().hash(&mut h);
        }
    }
    h.finish()
}

/// A hash of one entry's fields.
pub fn fields_hash(fields: &Fields) -> u64 {
    let mut h = DefaultHasher::new();
    for (f, v) in fields {
        f.as_ref().hash(&mut h);
        v.as_ref().hash(&mut h);
    }
    h.finish()
}

/// The model state of one key after the operation at `op` (an index into the history).
#[derive(Clone, Debug)]
pub struct Snap {
    pub op: usize,
    pub fp: u64,
    pub last_id: StreamId,
    pub len: usize,
    /// The live IDs, in order.
    pub ids: Vec<StreamId>,
    pub exists: bool,
    /// Fingerprint of the consumer group, and the group itself.
    pub gfp: u64,
    pub group: Option<GroupState>,
}

/// What the workload did so far.
pub struct History {
    pub keys: Vec<KeyState>,
    /// Per key, the state after each operation that touched it (first: absent, op 0).
    pub snaps: Vec<Vec<Snap>>,
    /// Lsn of each operation, in order.
    pub lsns: Vec<Lsn>,
    /// Every (ID, fields hash) ever added per key, to tell phantoms from reordered states.
    pub added: Vec<HashSet<(StreamId, u64)>>,
    /// Highest Lsn a successful sync covered.
    pub durable_lsn: Lsn,
    /// A group command failed on this key after poisoning: its group state is indeterminate.
    pub group_uncertain: Vec<bool>,
    pub now_ms: u64,
}

impl History {
    pub fn new() -> History {
        let empty = KeyState::default();
        let snap = Snap {
            op: 0,
            fp: empty.fingerprint(),
            last_id: StreamId::default(),
            len: 0,
            ids: Vec::new(),
            exists: false,
            gfp: GroupState::fingerprint(None),
            group: None,
        };
        History {
            keys: vec![KeyState::default(); KEYS.len()],
            snaps: vec![vec![snap]; KEYS.len()],
            lsns: Vec::new(),
            added: vec![HashSet::new(); KEYS.len()],
            durable_lsn: Lsn(0),
            group_uncertain: vec![false; KEYS.len()],
            now_ms: 1_700_000_000_000,
        }
    }

    /// Length of the longest prefix of operations whose Lsns are all durable. (Lsns need not
    /// grow: an operation that changes nothing, e.g. XREADGROUP with nothing new, may return
    /// the Lsn of the last change it depends on.)
    pub fn durable_ops(&self) -> usize {
        self.lsns
            .iter()
            .position(|l| *l > self.durable_lsn)
            .unwrap_or(self.lsns.len())
    }

    fn record(&mut self, key: usize, lsn: Lsn) {
        self.lsns.push(lsn);
        let st = &self.keys[key];
        self.snaps[key].push(Snap {
            op: self.lsns.len(),
            fp: st.fingerprint(),
            last_id: st.last_id,
            len: st.entries.len(),
            ids: st.entries.keys().copied().collect(),
            exists: st.exists,
            gfp: GroupState::fingerprint(st.group.as_ref()),
            group: st.group.clone(),
        });
    }

    /// The snapshots of `key` a recovery may legally show: from the last one covered by the
    /// durable prefix (`durable_ops`) through the last one taken before `ops` operations.
    pub fn candidates(&self, key: usize, durable_ops: usize, ops: usize) -> &[Snap] {
        let snaps = &self.snaps[key];
        let first = snaps
            .partition_point(|s| s.op <= durable_ops)
            .saturating_sub(1);
        let end = snaps.partition_point(|s| s.op <= ops);
        &snaps[first..end.max(first + 1)]
    }
}

fn payload(rng: &mut StdRng) -> Fields {
    let n = rng.gen_range(1..=3);
    (0..n)
        .map(|i| {
            let len = match rng.gen_range(0..10) {
                0..=6 => rng.gen_range(0..40),
                7..=8 => rng.gen_range(40..400),
                _ => rng.gen_range(400..1200),
            };
            let mut v = vec![0u8; len];
            rng.fill(&mut v[..]);
            (Bytes::from(format!("f{i}")), Bytes::from(v))
        })
        .collect()
}

/// Reads a key's whole live state from the engine.
pub fn read_key(engine: &Engine, key: usize) -> Result<(bool, Vec<Entry>), String> {
    match engine.stream(DB, KEYS[key]) {
        None => Ok((false, Vec::new())),
        Some(s) => s
            .range(
                Bound::Unbounded,
                Bound::Unbounded,
                usize::MAX,
                Direction::Forward,
            )
            .map(|e| (true, e))
            .map_err(|e| format!("range: {e}")),
    }
}

/// One planned operation on a key (or a group commit).
#[derive(Clone, Debug)]
pub enum Plan {
    Create,
    Add(Fields),
    Delete(Vec<StreamId>),
    Trim(TrimStrategy),
    Remove,
    Sync,
    CreateGroup,
    ReadGroup(usize),
    Ack(Vec<StreamId>),
    AutoClaim(usize),
}

/// An operation the engine refused: what was attempted, on which key.
#[derive(Debug)]
pub struct Failed {
    pub msg: String,
    pub key: usize,
    pub plan: Plan,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

/// What a group command answered, applied to the model after checking it.
#[derive(Clone, Debug, Default)]
pub struct GroupReply {
    pub delivered: Vec<StreamId>,
    pub deleted: Vec<StreamId>,
}

/// The model state after `plan` on `st`; `added` is the ID an XADD got, `reply` what a group
/// command delivered.
pub fn apply(st: &KeyState, plan: &Plan, added: Option<StreamId>, reply: &GroupReply) -> KeyState {
    let mut next = st.clone();
    match plan {
        Plan::CreateGroup => next.group = Some(GroupState::default()),
        Plan::ReadGroup(_) | Plan::AutoClaim(_) => {
            if let Some(g) = next.group.as_mut() {
                for id in &reply.delivered {
                    *g.pel.entry(*id).or_insert(0) += 1;
                    if matches!(plan, Plan::ReadGroup(_)) {
                        g.last_delivered = g.last_delivered.max(*id);
                    }
                }
                for id in &reply.deleted {
                    g.pel.remove(id);
                }
            }
        }
        Plan::Ack(ids) => {
            if let Some(g) = next.group.as_mut() {
                for id in ids {
                    g.pel.remove(id);
                }
            }
        }
        Plan::Create => {
            next = KeyState {
                exists: true,
                ..KeyState::default()
            }
        }
        Plan::Add(fields) => {
            if let Some(id) = added {
                next.last_id = id;
                next.entries.insert(id, fields.clone());
            }
        }
        Plan::Delete(ids) => {
            for id in ids {
                next.entries.remove(id);
            }
        }
        Plan::Trim(TrimStrategy::MinId(min)) => next.entries.retain(|id, _| id >= min),
        Plan::Trim(TrimStrategy::MaxLen(max)) => {
            while next.entries.len() as u64 > *max {
                next.entries.pop_first();
            }
        }
        Plan::Remove => next = KeyState::default(),
        Plan::Sync => {}
    }
    next
}

impl History {
    /// Records an operation that took effect (`lsn` of `Lsn(u64::MAX)`: never made durable).
    pub fn commit(&mut self, key: usize, next: KeyState, lsn: Lsn) {
        if let Some((&id, fields)) = next.entries.last_key_value() {
            self.added[key].insert((id, fields_hash(fields)));
        }
        self.keys[key] = next;
        self.record(key, lsn);
    }
}

fn plan(h: &History, key: usize, rng: &mut StdRng) -> Plan {
    let st = &h.keys[key];
    if !st.exists {
        return Plan::Create;
    }
    if let Some(g) = &st.group {
        match rng.gen_range(0..100) {
            0..=11 => return Plan::ReadGroup(rng.gen_range(1..8)),
            12..=19 if !g.pel.is_empty() => {
                let mut ids: Vec<StreamId> = g
                    .pel
                    .keys()
                    .copied()
                    .filter(|_| rng.gen_bool(0.5))
                    .collect();
                if ids.is_empty() {
                    ids.extend(g.pel.keys().next().copied());
                }
                return Plan::Ack(ids);
            }
            20..=23 => return Plan::AutoClaim(rng.gen_range(1..6)),
            _ => {}
        }
    } else if rng.gen_bool(0.1) {
        return Plan::CreateGroup;
    }
    match rng.gen_range(0..100) {
        0..=74 => Plan::Add(payload(rng)),
        75..=86 => {
            let mut ids: Vec<StreamId> = Vec::new();
            for _ in 0..rng.gen_range(1..=3) {
                if !st.entries.is_empty() && rng.gen_bool(0.8) {
                    let n = rng.gen_range(0..st.entries.len());
                    ids.extend(st.entries.keys().nth(n).copied());
                } else {
                    ids.push(StreamId::new(rng.gen_range(0..h.now_ms), 0));
                }
            }
            ids.sort();
            ids.dedup();
            Plan::Delete(ids)
        }
        87..=94 => Plan::Trim(if rng.gen_bool(0.5) && !st.entries.is_empty() {
            let n = rng.gen_range(0..st.entries.len());
            TrimStrategy::MinId(st.entries.keys().nth(n).copied().unwrap_or_default())
        } else {
            TrimStrategy::MaxLen(rng.gen_range(0..=st.entries.len() as u64))
        }),
        95..=96 => Plan::Remove,
        _ => Plan::Sync,
    }
}

/// Runs one random operation on the engine and, if it succeeds, on the model.
pub fn step(engine: &mut Engine, h: &mut History, rng: &mut StdRng) -> Result<(), Failed> {
    h.now_ms += rng.gen_range(0..3);
    if rng.gen_bool(0.03) {
        h.now_ms -= rng.gen_range(0..1000);
    }
    let now = h.now_ms;
    let key = rng.gen_range(0..KEYS.len());
    let plan = plan(h, key, rng);
    let fail = |msg: String, plan: &Plan| Failed {
        msg,
        key,
        plan: plan.clone(),
    };
    let st = &h.keys[key];
    let mut reply = GroupReply::default();
    let stream = match plan {
        Plan::Create | Plan::Remove | Plan::Sync => None,
        _ => Some(engine.stream_mut(DB, KEYS[key]).ok_or_else(|| {
            fail(
                "the model's stream does not exist in the engine".into(),
                &plan,
            )
        })?),
    };
    let (lsn, added) = match (&plan, stream) {
        (Plan::Create, _) => {
            let (_, lsn) = engine
                .create_stream(DB, KEYS[key])
                .map_err(|e| fail(format!("create_stream: {e}"), &plan))?;
            (lsn, None)
        }
        (Plan::Add(fields), Some(stream)) => {
            // Adds with an even payload size go through `add_batch`, the server's path for
            // pipelined XADDs (one entry here: the model knows one add per operation).
            let even = fields.iter().map(|(_, v)| v.len()).sum::<usize>() % 2 == 0;
            let (id, lsn) = if even {
                stream
                    .add_batch(&[(IdSpec::Auto, fields.as_slice())], now)
                    .and_then(|(mut ids, lsn)| Ok((ids.remove(0)?, lsn)))
                    .map_err(|e| fail(format!("add_batch: {e}"), &plan))?
            } else {
                stream
                    .add(IdSpec::Auto, fields, now)
                    .map_err(|e| fail(format!("add: {e}"), &plan))?
            };
            if id <= st.last_id {
                return Err(fail(
                    format!("add returned {id}, not above {}", st.last_id),
                    &plan,
                ));
            }
            (lsn, Some(id))
        }
        (Plan::Delete(ids), Some(stream)) => {
            let want = ids.iter().filter(|id| st.entries.contains_key(id)).count() as u64;
            let (n, lsn) = stream
                .delete(ids)
                .map_err(|e| fail(format!("delete: {e}"), &plan))?;
            if n != want {
                return Err(fail(
                    format!("delete of {ids:?} removed {n}, model says {want}"),
                    &plan,
                ));
            }
            (lsn, None)
        }
        (Plan::Trim(strategy), Some(stream)) => {
            let spec = TrimSpec {
                strategy: *strategy,
                approx: false,
                limit: None,
            };
            let (n, lsn) = stream
                .trim(spec)
                .map_err(|e| fail(format!("trim: {e}"), &plan))?;
            let want = (st.entries.len() - apply(st, &plan, None, &reply).entries.len()) as u64;
            if n != want {
                return Err(fail(
                    format!("trim {strategy:?} removed {n}, model says {want}"),
                    &plan,
                ));
            }
            (lsn, None)
        }
        (Plan::CreateGroup, Some(stream)) => {
            let lsn = stream
                .create_group(GROUP, StreamId::MIN, None)
                .map_err(|e| fail(format!("create_group: {e}"), &plan))?;
            (lsn, None)
        }
        (Plan::ReadGroup(count), Some(stream)) => {
            let (deliveries, lsn) = stream
                .read_group(GROUP, b"c1", GroupStart::New, Some(*count), false, now)
                .map_err(|e| fail(format!("read_group: {e}"), &plan))?;
            let g = st.group.clone().unwrap_or_default();
            let mut prev = g.last_delivered;
            for d in &deliveries {
                let ok = d.id > prev
                    && st.entries.get(&d.id) == d.fields.as_ref()
                    && !g.pel.contains_key(&d.id);
                if !ok {
                    return Err(fail(
                        format!("read_group delivered {d:?} after {prev}"),
                        &plan,
                    ));
                }
                prev = d.id;
            }
            let expected = st
                .entries
                .range((Bound::Excluded(g.last_delivered), Bound::Unbounded))
                .take(*count)
                .count();
            if deliveries.len() != expected {
                return Err(fail(
                    format!(
                        "read_group delivered {} entries, model expects {expected}",
                        deliveries.len()
                    ),
                    &plan,
                ));
            }
            reply.delivered = deliveries.iter().map(|d| d.id).collect();
            (lsn, None)
        }
        (Plan::Ack(ids), Some(stream)) => {
            let (n, lsn) = stream
                .ack(GROUP, ids)
                .map_err(|e| fail(format!("ack: {e}"), &plan))?;
            if n != ids.len() as u64 {
                return Err(fail(
                    format!("ack of {} pending IDs acknowledged {n}", ids.len()),
                    &plan,
                ));
            }
            (lsn, None)
        }
        (Plan::AutoClaim(count), Some(stream)) => {
            let (claim, lsn) = stream
                .autoclaim(GROUP, b"c2", 0, StreamId::MIN, *count, false, now)
                .map_err(|e| fail(format!("autoclaim: {e}"), &plan))?;
            let g = st.group.clone().unwrap_or_default();
            for d in &claim.claimed {
                if !g.pel.contains_key(&d.id) || st.entries.get(&d.id) != d.fields.as_ref() {
                    return Err(fail(
                        format!("autoclaim claimed {d:?}, not a pending live entry"),
                        &plan,
                    ));
                }
            }
            for id in &claim.deleted {
                if !g.pel.contains_key(id) || st.entries.contains_key(id) {
                    return Err(fail(format!("autoclaim reported {id} deleted, but it is not a pending deleted entry"), &plan));
                }
            }
            reply.delivered = claim.claimed.iter().map(|d| d.id).collect();
            reply.deleted = claim.deleted.clone();
            (lsn, None)
        }
        (Plan::Remove, _) => {
            let lsn = engine
                .remove_stream(DB, KEYS[key])
                .map_err(|e| fail(format!("remove_stream: {e}"), &plan))?
                .ok_or_else(|| fail("remove_stream found no stream".into(), &plan))?;
            (lsn, None)
        }
        (Plan::Sync, _) => {
            let lsn = engine
                .durability()
                .sync_now()
                .map_err(|e| fail(format!("sync_now: {e}"), &plan))?;
            h.durable_lsn = h.durable_lsn.max(lsn);
            return Ok(());
        }
        (_, None) => return Err(fail("no stream".into(), &plan)),
    };
    let next = apply(&h.keys[key], &plan, added, &reply);
    h.commit(key, next, lsn);
    Ok(())
}
