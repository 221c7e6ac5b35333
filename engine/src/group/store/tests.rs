//! Persistence tests: a model-based property test of every group operation with reopen and
//! checkpoints in the middle, and crash tests that cut or damage the journal and check the
//! crash contract.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::durability::Durability;
use crate::group::engine_io::EngineIo;
use crate::group::state::{EntrySource, GroupSet};
use crate::group::testutil::MemStream;
use crate::group::{ClaimOptions, Delivery, GroupStart};
use crate::io::{OsVfs, Vfs};
use crate::{FsyncPolicy, StreamId};

const GROUPS: [&str; 2] = ["g1", "g2"];
const CONSUMERS: [&str; 3] = ["a", "b", "c"];
const IDLES: [u64; 3] = [0, 10, 40];

fn id(k: u64) -> StreamId {
    StreamId::new(k, 0)
}

#[derive(Clone, Debug)]
enum Op {
    Add(u64),
    Del(u64),
    Create(usize, u64),
    SetId(usize, u64),
    Destroy(usize),
    CreateConsumer(usize, usize),
    DelConsumer(usize, usize),
    ReadNew(usize, usize, usize, bool),
    ReadHistory(usize, usize, u64, usize),
    Ack(usize, Vec<u64>),
    Claim(usize, usize, usize, Vec<u64>, bool, bool),
    AutoClaim(usize, usize, usize, u64, usize, bool),
    Pending(usize, Option<usize>, usize),
    Reopen,
    Checkpoint,
}

fn op() -> impl Strategy<Value = Op> {
    let g = 0..GROUPS.len();
    let c = 0..CONSUMERS.len();
    let k = 0u64..24;
    let i = 0..IDLES.len();
    prop_oneof![
        3 => (1u64..5).prop_map(Op::Add),
        1 => k.clone().prop_map(Op::Del),
        2 => (g.clone(), k.clone()).prop_map(|(g, k)| Op::Create(g, k)),
        1 => (g.clone(), k.clone()).prop_map(|(g, k)| Op::SetId(g, k)),
        1 => g.clone().prop_map(Op::Destroy),
        1 => (g.clone(), c.clone()).prop_map(|(g, c)| Op::CreateConsumer(g, c)),
        1 => (g.clone(), c.clone()).prop_map(|(g, c)| Op::DelConsumer(g, c)),
        4 => (g.clone(), c.clone(), 0usize..4, any::<bool>()).prop_map(|(g, c, n, na)| Op::ReadNew(g, c, n, na && n % 2 == 0)),
        2 => (g.clone(), c.clone(), k.clone(), 0usize..4).prop_map(|(g, c, k, n)| Op::ReadHistory(g, c, k, n)),
        3 => (g.clone(), proptest::collection::vec(k.clone(), 1..4)).prop_map(|(g, ks)| Op::Ack(g, ks)),
        2 => (g.clone(), c.clone(), i.clone(), proptest::collection::vec(k.clone(), 1..4), any::<bool>(), any::<bool>())
            .prop_map(|(g, c, i, ks, j, f)| Op::Claim(g, c, i, ks, j, f)),
        2 => (g.clone(), c.clone(), i.clone(), k.clone(), 1usize..4, any::<bool>())
            .prop_map(|(g, c, i, k, n, j)| Op::AutoClaim(g, c, i, k, n, j)),
        1 => (g.clone(), proptest::option::of(c.clone()), i).prop_map(|(g, c, i)| Op::Pending(g, c, i)),
        1 => Just(Op::Reopen),
        1 => Just(Op::Checkpoint),
    ]
}

/// The model: the same Redis rules written as plainly as possible.
#[derive(Clone, Debug, Default)]
struct MGroup {
    last: StreamId,
    /// id -> (owner, delivery time, delivery count); owner None only inside a FORCE claim.
    pel: BTreeMap<StreamId, (Option<String>, u64, u64)>,
    /// name -> (seen, active)
    consumers: BTreeMap<String, (u64, Option<u64>)>,
}

impl MGroup {
    fn touch(&mut self, c: &str, now: u64) {
        self.consumers.entry(c.to_string()).or_insert((now, None)).0 = now;
    }
}

#[derive(Debug, PartialEq)]
enum Reply {
    Err,
    Unit,
    Bool(bool),
    Count(u64),
    Deliveries(Vec<(StreamId, bool)>),
    Auto(StreamId, Vec<(StreamId, bool)>, Vec<StreamId>),
    Pending(Vec<(StreamId, String, u64, u64)>),
}

fn deliveries(d: &[Delivery]) -> Reply {
    Reply::Deliveries(d.iter().map(|d| (d.id, d.fields.is_some())).collect())
}

fn model_apply(m: &mut BTreeMap<String, MGroup>, s: &MemStream, op: &Op, now: u64) -> Reply {
    let exists = |id: &StreamId| s.entries.contains_key(id);
    match op {
        Op::Add(_) | Op::Del(_) | Op::Reopen | Op::Checkpoint => Reply::Unit,
        Op::Create(g, k) => {
            if m.contains_key(GROUPS[*g]) {
                return Reply::Err;
            }
            m.insert(
                GROUPS[*g].into(),
                MGroup {
                    last: id(*k),
                    ..MGroup::default()
                },
            );
            Reply::Unit
        }
        Op::SetId(g, k) => match m.get_mut(GROUPS[*g]) {
            None => Reply::Err,
            Some(gr) => {
                gr.last = id(*k);
                Reply::Unit
            }
        },
        Op::Destroy(g) => Reply::Bool(m.remove(GROUPS[*g]).is_some()),
        Op::CreateConsumer(g, c) => match m.get_mut(GROUPS[*g]) {
            None => Reply::Err,
            Some(gr) => {
                if gr.consumers.contains_key(CONSUMERS[*c]) {
                    return Reply::Bool(false);
                }
                gr.consumers.insert(CONSUMERS[*c].into(), (now, None));
                Reply::Bool(true)
            }
        },
        Op::DelConsumer(g, c) => match m.get_mut(GROUPS[*g]) {
            None => Reply::Err,
            Some(gr) => {
                let name = CONSUMERS[*c];
                if gr.consumers.remove(name).is_none() {
                    return Reply::Count(0);
                }
                let before = gr.pel.len();
                gr.pel.retain(|_, v| v.0.as_deref() != Some(name));
                Reply::Count((before - gr.pel.len()) as u64)
            }
        },
        Op::ReadNew(g, c, n, noack) => match m.get_mut(GROUPS[*g]) {
            None => Reply::Err,
            Some(gr) => {
                let name = CONSUMERS[*c];
                gr.touch(name, now);
                let limit = if *n == 0 { usize::MAX } else { *n };
                let ids: Vec<StreamId> = s
                    .entries
                    .keys()
                    .filter(|i| **i > gr.last)
                    .take(limit)
                    .copied()
                    .collect();
                for i in &ids {
                    gr.last = *i;
                    if !noack {
                        gr.pel.insert(*i, (Some(name.into()), now, 1));
                        gr.touch(name, now);
                        if let Some(c) = gr.consumers.get_mut(name) {
                            c.1 = Some(now);
                        }
                    }
                }
                Reply::Deliveries(ids.into_iter().map(|i| (i, true)).collect())
            }
        },
        Op::ReadHistory(g, c, k, n) => match m.get_mut(GROUPS[*g]) {
            None => Reply::Err,
            Some(gr) => {
                let name = CONSUMERS[*c];
                gr.touch(name, now);
                let limit = if *n == 0 { usize::MAX } else { *n };
                let mut out = Vec::new();
                for (i, v) in gr.pel.iter_mut() {
                    if out.len() >= limit {
                        break;
                    }
                    if *i > id(*k) && v.0.as_deref() == Some(name) {
                        if exists(i) {
                            v.1 = now;
                            v.2 += 1;
                        }
                        out.push((*i, exists(i)));
                    }
                }
                Reply::Deliveries(out)
            }
        },
        Op::Ack(g, ks) => match m.get_mut(GROUPS[*g]) {
            None => Reply::Err,
            Some(gr) => Reply::Count(
                ks.iter()
                    .filter(|k| gr.pel.remove(&id(**k)).is_some())
                    .count() as u64,
            ),
        },
        Op::Claim(g, c, i, ks, justid, force) => match m.get_mut(GROUPS[*g]) {
            None => Reply::Err,
            Some(gr) => {
                let name = CONSUMERS[*c];
                gr.touch(name, now);
                let mut out = Vec::new();
                for k in ks {
                    let i2 = id(*k);
                    if !exists(&i2) {
                        gr.pel.remove(&i2);
                        continue;
                    }
                    if *force && !gr.pel.contains_key(&i2) {
                        gr.pel.insert(i2, (None, now, 1));
                    }
                    let Some(v) = gr.pel.get_mut(&i2) else {
                        continue;
                    };
                    if v.0.is_some() && IDLES[*i] > 0 && now.saturating_sub(v.1) < IDLES[*i] {
                        continue;
                    }
                    v.0 = Some(name.into());
                    v.1 = now;
                    if !justid {
                        v.2 += 1;
                    }
                    out.push((i2, !justid));
                }
                if !out.is_empty() {
                    if let Some(cn) = gr.consumers.get_mut(name) {
                        cn.1 = Some(now);
                    }
                }
                Reply::Deliveries(out)
            }
        },
        Op::AutoClaim(g, c, i, k, n, justid) => match m.get_mut(GROUPS[*g]) {
            None => Reply::Err,
            Some(gr) => {
                let name = CONSUMERS[*c];
                gr.touch(name, now);
                let keys: Vec<StreamId> =
                    gr.pel.keys().filter(|x| **x >= id(*k)).copied().collect();
                let (mut left, mut attempts) = (*n, n * 10);
                let (mut out, mut deleted, mut examined) = (Vec::new(), Vec::new(), 0);
                for key in &keys {
                    if left == 0 || attempts == 0 {
                        break;
                    }
                    attempts -= 1;
                    examined += 1;
                    if !exists(key) {
                        gr.pel.remove(key);
                        deleted.push(*key);
                        left -= 1;
                        continue;
                    }
                    let v = gr.pel.get_mut(key).expect("key from pel");
                    if IDLES[*i] > 0 && now.saturating_sub(v.1) < IDLES[*i] {
                        continue;
                    }
                    v.0 = Some(name.into());
                    v.1 = now;
                    if !justid {
                        v.2 += 1;
                    }
                    out.push((*key, !justid));
                    left -= 1;
                }
                let next = keys.get(examined).copied().unwrap_or(StreamId::MIN);
                if !out.is_empty() {
                    if let Some(cn) = gr.consumers.get_mut(name) {
                        cn.1 = Some(now);
                    }
                }
                Reply::Auto(next, out, deleted)
            }
        },
        Op::Pending(g, c, i) => match m.get(GROUPS[*g]) {
            None => Reply::Err,
            Some(gr) => Reply::Pending(
                gr.pel
                    .iter()
                    .filter(|(_, v)| c.is_none_or(|c| v.0.as_deref() == Some(CONSUMERS[c])))
                    .filter(|(_, v)| IDLES[*i] == 0 || now.saturating_sub(v.1) >= IDLES[*i])
                    .map(|(k, v)| (*k, v.0.clone().unwrap_or_default(), v.1, v.2))
                    .collect(),
            ),
        },
    }
}

fn run_real(store: &mut GroupStore, s: &MemStream, op: &Op, now: u64) -> Result<Reply> {
    let set = store.set();
    let (reply, change) = match op {
        Op::Add(_) | Op::Del(_) | Op::Reopen | Op::Checkpoint => return Ok(Reply::Unit),
        Op::Create(g, k) => {
            match set.plan_create_group(GROUPS[*g].as_bytes(), id(*k), None, s.last_id) {
                Ok(p) => (Reply::Unit, p.change),
                Err(_) => return Ok(Reply::Err),
            }
        }
        Op::SetId(g, k) => match set.plan_set_id(GROUPS[*g].as_bytes(), id(*k), None, s.last_id) {
            Ok(p) => (Reply::Unit, p.change),
            Err(_) => return Ok(Reply::Err),
        },
        Op::Destroy(g) => {
            let p = set.plan_destroy(GROUPS[*g].as_bytes());
            (Reply::Bool(p.reply), p.change)
        }
        Op::CreateConsumer(g, c) => {
            match set.plan_create_consumer(GROUPS[*g].as_bytes(), CONSUMERS[*c].as_bytes(), now) {
                Ok(p) => (Reply::Bool(p.reply), p.change),
                Err(_) => return Ok(Reply::Err),
            }
        }
        Op::DelConsumer(g, c) => {
            match set.plan_delete_consumer(GROUPS[*g].as_bytes(), CONSUMERS[*c].as_bytes()) {
                Ok(p) => (Reply::Count(p.reply), p.change),
                Err(_) => return Ok(Reply::Err),
            }
        }
        Op::ReadNew(g, c, n, noack) => {
            let count = if *n == 0 { None } else { Some(*n) };
            match set.plan_read(
                s,
                GROUPS[*g].as_bytes(),
                CONSUMERS[*c].as_bytes(),
                GroupStart::New,
                count,
                *noack,
                now,
            ) {
                Ok(p) => (deliveries(&p.reply), p.change),
                Err(_) => return Ok(Reply::Err),
            }
        }
        Op::ReadHistory(g, c, k, n) => {
            let count = if *n == 0 { None } else { Some(*n) };
            match set.plan_read(
                s,
                GROUPS[*g].as_bytes(),
                CONSUMERS[*c].as_bytes(),
                GroupStart::History(id(*k)),
                count,
                false,
                now,
            ) {
                Ok(p) => (deliveries(&p.reply), p.change),
                Err(_) => return Ok(Reply::Err),
            }
        }
        Op::Ack(g, ks) => {
            let ids: Vec<StreamId> = ks.iter().map(|k| id(*k)).collect();
            match set.plan_ack(GROUPS[*g].as_bytes(), &ids) {
                Ok(p) => (Reply::Count(p.reply), p.change),
                Err(_) => return Ok(Reply::Err),
            }
        }
        Op::Claim(g, c, i, ks, justid, force) => {
            let ids: Vec<StreamId> = ks.iter().map(|k| id(*k)).collect();
            let o = ClaimOptions {
                just_id: *justid,
                force: *force,
                ..ClaimOptions::default()
            };
            match set.plan_claim(
                s,
                GROUPS[*g].as_bytes(),
                CONSUMERS[*c].as_bytes(),
                IDLES[*i],
                &ids,
                &o,
                now,
            ) {
                Ok(p) => (deliveries(&p.reply), p.change),
                Err(_) => return Ok(Reply::Err),
            }
        }
        Op::AutoClaim(g, c, i, k, n, justid) => {
            match set.plan_autoclaim(
                s,
                GROUPS[*g].as_bytes(),
                CONSUMERS[*c].as_bytes(),
                IDLES[*i],
                id(*k),
                *n,
                *justid,
                now,
            ) {
                Ok(p) => {
                    let r = Reply::Auto(
                        p.reply.next,
                        p.reply
                            .claimed
                            .iter()
                            .map(|d| (d.id, d.fields.is_some()))
                            .collect(),
                        p.reply.deleted.clone(),
                    );
                    (r, p.change)
                }
                Err(_) => return Ok(Reply::Err),
            }
        }
        Op::Pending(g, c, i) => {
            let consumer = c.map(|c| CONSUMERS[c].as_bytes());
            return Ok(
                match set.pending(
                    GROUPS[*g].as_bytes(),
                    Bound::Unbounded,
                    Bound::Unbounded,
                    usize::MAX,
                    consumer,
                    Some(IDLES[*i]),
                    now,
                ) {
                    Ok(v) => Reply::Pending(
                        v.into_iter()
                            .map(|p| {
                                (
                                    p.id,
                                    String::from_utf8_lossy(&p.consumer).into_owned(),
                                    p.delivery_time_ms,
                                    p.delivery_count,
                                )
                            })
                            .collect(),
                    ),
                    Err(_) => Reply::Err,
                },
            );
        }
    };
    store.commit(change)?;
    Ok(reply)
}

/// Per group: last ID, PEL rows, consumer rows (name, seen, active, pending).
type Projection = BTreeMap<
    String,
    (
        StreamId,
        Vec<(StreamId, String, u64, u64)>,
        Vec<(String, u64, Option<u64>, usize)>,
    ),
>;

/// The model's view of the real state (entries-read is checked by the semantics tests).
fn project(set: &GroupSet) -> Projection {
    set.groups
        .iter()
        .map(|(name, g)| {
            let pel = g
                .pel
                .iter()
                .map(|(i, n)| {
                    (
                        *i,
                        String::from_utf8_lossy(&g.consumers.by_slot(n.consumer).unwrap().name)
                            .into_owned(),
                        n.delivery_time,
                        n.delivery_count,
                    )
                })
                .collect();
            let cons = g
                .consumers
                .iter()
                .map(|(n, c)| {
                    (
                        String::from_utf8_lossy(n).into_owned(),
                        c.seen_time,
                        c.active_time,
                        c.pel.len(),
                    )
                })
                .collect();
            (
                String::from_utf8_lossy(name).into_owned(),
                (g.last_id, pel, cons),
            )
        })
        .collect()
}

fn project_model(m: &BTreeMap<String, MGroup>) -> Projection {
    m.iter()
        .map(|(name, g)| {
            let pel = g
                .pel
                .iter()
                .map(|(i, v)| (*i, v.0.clone().unwrap_or_default(), v.1, v.2))
                .collect();
            let cons = g
                .consumers
                .iter()
                .map(|(n, c)| {
                    (
                        n.clone(),
                        c.0,
                        c.1,
                        g.pel.values().filter(|v| v.0.as_deref() == Some(n)).count(),
                    )
                })
                .collect();
            (name.clone(), (g.last, pel, cons))
        })
        .collect()
}

fn test_io() -> Box<dyn GroupIo> {
    let vfs: Arc<dyn Vfs> = Arc::new(OsVfs);
    let durability = Durability::new(vfs.clone(), FsyncPolicy::No);
    Box::new(EngineIo::new(vfs, durability))
}

fn open(dir: &Path, s: &MemStream, compact_min: u64) -> (GroupStore, GroupRecovery) {
    let (mut store, report) = GroupStore::open(dir, test_io(), &s.facts()).unwrap();
    store.compact_min = compact_min;
    (store, report)
}

fn apply_stream_op(s: &mut MemStream, op: &Op) {
    match op {
        Op::Add(n) => {
            for _ in 0..*n {
                if s.last_id.ms < 23 {
                    s.add(id(s.last_id.ms + 1));
                }
            }
        }
        Op::Del(k) => {
            s.delete(id(*k));
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn groups_match_model_across_reopen_and_checkpoint(ops in proptest::collection::vec(op(), 1..70), compact in prop_oneof![Just(200u64), Just(1u64 << 40)]) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = MemStream::default();
        let mut model: BTreeMap<String, MGroup> = BTreeMap::new();
        let (mut store, _) = open(dir.path(), &s, compact);
        for (step, op) in ops.iter().enumerate() {
            let now = 1000 + step as u64 * 7;
            apply_stream_op(&mut s, op);
            let want = model_apply(&mut model, &s, op, now);
            let got = run_real(&mut store, &s, op, now).unwrap();
            prop_assert_eq!(&got, &want, "step {} {:?}", step, op);
            match op {
                Op::Reopen => {
                    let before = store.set().clone();
                    drop(store);
                    let (reopened, report) = open(dir.path(), &s, compact);
                    prop_assert_eq!(report.bytes_truncated, 0);
                    prop_assert!(report.clamps.is_empty());
                    prop_assert_eq!(reopened.set(), &before);
                    store = reopened;
                }
                Op::Checkpoint => {
                    store.checkpoint().unwrap();
                }
                _ => {}
            }
            prop_assert_eq!(project(store.set()), project_model(&model), "state after step {} {:?}", step, op);
        }
        let before = store.set().clone();
        drop(store);
        let (reopened, _) = open(dir.path(), &s, compact);
        prop_assert_eq!(reopened.set(), &before);
    }
}

/// The state after each committed op, with where the journal ended then.
struct Trace {
    points: Vec<(u64, u64, GroupSet)>,
}

fn traced_run(dir: &Path, ops: &[Op], compact: u64) -> (MemStream, Trace) {
    let mut s = MemStream::default();
    let (mut store, _) = open(dir, &s, compact);
    let mut points = vec![(store.epoch(), store.journal_len(), store.set().clone())];
    for (step, op) in ops.iter().enumerate() {
        apply_stream_op(&mut s, op);
        if matches!(op, Op::Reopen | Op::Checkpoint) {
            continue;
        }
        run_real(&mut store, &s, op, 1000 + step as u64 * 7).unwrap();
        points.push((store.epoch(), store.journal_len(), store.set().clone()));
    }
    (s, Trace { points })
}

/// What recovery must produce when the journal keeps only its first `len` bytes valid.
fn expected(trace: &Trace, epoch: u64, len: u64) -> &GroupSet {
    let in_epoch: Vec<&(u64, u64, GroupSet)> =
        trace.points.iter().filter(|p| p.0 == epoch).collect();
    in_epoch
        .iter()
        .rev()
        .find(|p| p.1 <= len)
        .or(in_epoch.first())
        .map(|p| &p.2)
        .expect("some state in the final epoch")
}

/// The crash contract, checked against the state that was durable before the crash.
fn assert_contract(durable: &GroupSet, recovered: &GroupSet, last_stream_id: StreamId) {
    for (name, g) in &recovered.groups {
        for id in g.pel.keys() {
            assert!(
                *id <= last_stream_id,
                "PEL id {id} above the stream's last id"
            );
        }
        if !g.ahead_of_stream {
            assert!(
                g.last_id <= last_stream_id,
                "delivered last id above the stream's last id"
            );
        }
        if let Some(d) = durable.groups.get(name) {
            assert!(
                g.last_id >= d.last_id.min(last_stream_id),
                "last-delivered went backwards"
            );
            for (id, n) in &g.pel {
                if let Some(dn) = d.pel.get(id) {
                    assert!(
                        n.delivery_count >= dn.delivery_count,
                        "delivery count decreased"
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    /// Cutting the journal anywhere recovers exactly the state after the last whole record:
    /// nothing acknowledged before the cut is lost (no acked XACK reappears, no delivery is
    /// forgotten, no count decreases) and nothing after it is half-applied.
    #[test]
    fn journal_cut_anywhere_recovers_a_prefix(ops in proptest::collection::vec(op(), 1..60), cut in 0.0f64..1.0, compact in prop_oneof![Just(300u64), Just(1u64 << 40)]) {
        let dir = tempfile::tempdir().unwrap();
        let (s, trace) = traced_run(dir.path(), &ops, compact);
        let path = dir.path().join(JOURNAL_FILE);
        let Ok(full) = std::fs::read(&path) else { return Ok(()) };
        let len = (full.len() as f64 * cut) as u64;
        std::fs::write(&path, &full[..len as usize]).unwrap();
        let (store, report) = open(dir.path(), &s, compact);
        let epoch = trace.points.last().unwrap().0;
        let want = expected(&trace, epoch, len);
        prop_assert_eq!(store.set(), want);
        prop_assert!(report.corruptions.is_empty());
        assert_contract(want, store.set(), s.last_id);
        // Recovery made the cut durable: reopening again changes nothing.
        drop(store);
        let (again, report) = open(dir.path(), &s, compact);
        prop_assert_eq!(again.set(), want);
        prop_assert_eq!(report.bytes_truncated, 0);
    }

    /// A flipped byte in the journal is caught by the CRC: recovery keeps the records before it.
    #[test]
    fn flipped_journal_byte_recovers_the_records_before_it(ops in proptest::collection::vec(op(), 1..60), at in 0.0f64..1.0, bit in 0u8..8) {
        let dir = tempfile::tempdir().unwrap();
        let (s, trace) = traced_run(dir.path(), &ops, 1 << 40);
        let path = dir.path().join(JOURNAL_FILE);
        let Ok(mut full) = std::fs::read(&path) else { return Ok(()) };
        let pos = ((full.len() as f64 * at) as usize).min(full.len() - 1);
        full[pos] ^= 1 << bit;
        std::fs::write(&path, &full).unwrap();
        let (store, report) = open(dir.path(), &s, 1 << 40);
        let want = expected(&trace, 0, pos as u64);
        prop_assert_eq!(store.set(), want);
        prop_assert_eq!(report.bytes_truncated > 0, true);
        assert_contract(want, store.set(), s.last_id);
    }

    /// If the stream lost its tail, recovery clamps every group to what the stream still holds
    /// and reports each clamp.
    #[test]
    fn lost_stream_tail_clamps_groups(ops in proptest::collection::vec(op(), 1..60), keep in 0u64..24) {
        let dir = tempfile::tempdir().unwrap();
        let (s, trace) = traced_run(dir.path(), &ops, 1 << 40);
        let before = &trace.points.last().unwrap().2;
        let mut lost = s.clone();
        let cut = id(keep);
        lost.entries.retain(|k, _| *k <= cut);
        if lost.last_id > cut {
            lost.last_id = cut;
        }
        let (store, report) = open(dir.path(), &lost, 1 << 40);
        let after = store.set();
        let mut clamped = 0;
        for (name, g) in &after.groups {
            let b = &before.groups[name];
            let want_last = if b.ahead_of_stream { b.last_id } else { b.last_id.min(lost.last_id) };
            prop_assert_eq!(g.last_id, want_last);
            for (i, n) in &g.pel {
                prop_assert!(*i <= lost.last_id);
                prop_assert_eq!(Some(n), b.pel.get(i));
            }
            let dropped = b.pel.keys().filter(|i| **i > lost.last_id).count();
            prop_assert_eq!(g.pel.len() + dropped, b.pel.len());
            if dropped > 0 || b.last_id != want_last {
                clamped += 1;
            }
        }
        prop_assert_eq!(report.clamps.len(), clamped);
        assert_contract(before, after, lost.last_id);
        // The clamp itself is durable.
        let snapshot = after.clone();
        drop(store);
        let (again, report) = open(dir.path(), &lost, 1 << 40);
        prop_assert_eq!(again.set(), &snapshot);
        prop_assert!(report.clamps.is_empty());
    }
}

#[test]
fn journal_compacts_into_checkpoint_and_disk_follows_live_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = MemStream::default();
    let (mut store, _) = open(dir.path(), &s, 4096);
    let set = store
        .set()
        .plan_create_group(b"g", StreamId::MIN, None, s.last_id)
        .unwrap();
    store.commit(set.change).unwrap();
    for round in 0..300u64 {
        s.add_n(100);
        let p = store
            .set()
            .plan_read(&s, b"g", b"c", GroupStart::New, Some(100), false, round)
            .unwrap();
        let ids: Vec<StreamId> = p.reply.iter().map(|d| d.id).collect();
        store.commit(p.change).unwrap();
        let a = store.set().plan_ack(b"g", &ids).unwrap();
        assert_eq!(a.reply, 100);
        store.commit(a.change).unwrap();
    }
    assert!(store.epoch() > 1, "checkpoints were taken");
    let disk = std::fs::metadata(dir.path().join(JOURNAL_FILE))
        .unwrap()
        .len()
        + std::fs::metadata(dir.path().join(CHECKPOINT_FILE))
            .unwrap()
            .len();
    assert!(
        disk < 16 * 1024,
        "group files hold {disk} bytes for an empty PEL"
    );
    let g = &store.set().groups[&Bytes::from_static(b"g")];
    assert_eq!(
        (g.last_id, g.pel.len(), g.entries_read),
        (s.last_id, 0, Some(30_000))
    );
    let before = store.set().clone();
    drop(store);
    let (again, _) = open(dir.path(), &s, 4096);
    assert_eq!(again.set(), &before);
}

#[test]
fn crash_between_checkpoint_and_journal_restart_discards_the_stale_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = MemStream::default();
    s.add_n(10);
    let (mut store, _) = open(dir.path(), &s, 1 << 40);
    let p = store
        .set()
        .plan_create_group(b"g", StreamId::MIN, None, s.last_id)
        .unwrap();
    store.commit(p.change).unwrap();
    let p = store
        .set()
        .plan_read(&s, b"g", b"c", GroupStart::New, Some(4), false, 1)
        .unwrap();
    store.commit(p.change).unwrap();
    let old_journal = std::fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
    let p = store.set().plan_ack(b"g", &[id(1), id(2)]).unwrap();
    store.commit(p.change).unwrap();
    store.checkpoint().unwrap();
    let want = store.set().clone();
    drop(store);
    // Simulate the crash: the new checkpoint is in place but the journal is the old one.
    std::fs::write(dir.path().join(JOURNAL_FILE), old_journal).unwrap();
    let (store, _) = open(dir.path(), &s, 1 << 40);
    assert_eq!(store.set(), &want);
    assert_eq!(store.set().groups[&Bytes::from_static(b"g")].pel.len(), 2);
}

#[test]
fn damaged_checkpoint_is_reported_as_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemStream::default();
    let (mut store, _) = open(dir.path(), &s, 1 << 40);
    let p = store
        .set()
        .plan_create_group(b"g", StreamId::MIN, None, s.last_id)
        .unwrap();
    store.commit(p.change).unwrap();
    store.checkpoint().unwrap();
    drop(store);
    let path = dir.path().join(CHECKPOINT_FILE);
    let mut b = std::fs::read(&path).unwrap();
    let last = b.len() - 1;
    b[last] ^= 0xff;
    std::fs::write(&path, b).unwrap();
    let r = GroupStore::open(dir.path(), test_io(), &s.facts());
    assert!(matches!(r, Err(Error::Corruption { .. })));
}

#[test]
fn journal_ahead_of_its_checkpoint_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemStream::default();
    let (mut store, _) = open(dir.path(), &s, 1 << 40);
    let p = store
        .set()
        .plan_create_group(b"g", StreamId::MIN, None, s.last_id)
        .unwrap();
    store.commit(p.change).unwrap();
    store.checkpoint().unwrap();
    let old_ckpt = std::fs::read(dir.path().join(CHECKPOINT_FILE)).unwrap();
    store.checkpoint().unwrap();
    let p = store.set().plan_destroy(b"g");
    store.commit(p.change).unwrap();
    drop(store);
    std::fs::write(dir.path().join(CHECKPOINT_FILE), old_ckpt).unwrap();
    let (store, report) = open(dir.path(), &s, 1 << 40);
    assert_eq!(report.corruptions.len(), 1, "{report:?}");
    assert_eq!(store.set().groups.len(), 1);
}
