//! A seeded stream workload run against the engine next to a tiny model, recording the model
//! state after every operation so a recovered state can be matched against every prefix.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::ops::Bound;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;
use sluice_engine::{Direction, Engine, Entry, IdSpec, Lsn, StreamId, TrimSpec, TrimStrategy};

/// Keys used by the workload; the second one needs escaping to become a directory name.
pub const KEYS: [&[u8]; 2] = [b"alpha", b"be/ta \xff"];
pub const DB: u32 = 0;

pub type Fields = Vec<(Bytes, Bytes)>;

/// One key's model state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyState {
    pub exists: bool,
    pub entries: BTreeMap<StreamId, Fields>,
    pub last_id: StreamId,
}

impl KeyState {
    pub fn fingerprint(&self) -> u64 {
        fingerprint(self.exists, self.entries.iter().map(|(id, f)| (*id, f)))
    }
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
        };
        History {
            keys: vec![KeyState::default(); KEYS.len()],
            snaps: vec![vec![snap]; KEYS.len()],
            lsns: Vec::new(),
            added: vec![HashSet::new(); KEYS.len()],
            durable_lsn: Lsn(0),
            now_ms: 1_700_000_000_000,
        }
    }

    /// Number of operations whose Lsn is durable (they form a prefix: Lsns only grow).
    pub fn durable_ops(&self) -> usize {
        self.lsns.partition_point(|l| *l <= self.durable_lsn)
    }

    fn record(&mut self, key: usize, lsn: Lsn) {
        self.lsns.push(lsn);
        let st = &self.keys[key];
        self.snaps[key].push(Snap {
            op: self.lsns.len(),
            fp: st.fingerprint(),
            last_id: st.last_id,
            len: st.entries.len(),
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

/// Runs one random operation; returns its Lsn (or the engine's error as text).
pub fn step(engine: &mut Engine, h: &mut History, rng: &mut StdRng) -> Result<(), String> {
    h.now_ms += rng.gen_range(0..3);
    if rng.gen_bool(0.03) {
        h.now_ms -= rng.gen_range(0..1000);
    }
    let now = h.now_ms;
    let key = rng.gen_range(0..KEYS.len());
    let roll = rng.gen_range(0..100);
    let st = &mut h.keys[key];
    if !st.exists {
        let (_, lsn) = engine
            .create_stream(DB, KEYS[key])
            .map_err(|e| format!("create_stream: {e}"))?;
        st.exists = true;
        st.last_id = StreamId::default();
        h.record(key, lsn);
        return Ok(());
    }
    let stream = engine
        .stream_mut(DB, KEYS[key])
        .ok_or("the model's stream does not exist in the engine")?;
    match roll {
        0..=74 => {
            let fields = payload(rng);
            let (id, lsn) = stream
                .add(IdSpec::Auto, &fields, now)
                .map_err(|e| format!("add: {e}"))?;
            if id <= st.last_id {
                return Err(format!("add returned {id}, not above {}", st.last_id));
            }
            st.last_id = id;
            h.added[key].insert((id, fields_hash(&fields)));
            st.entries.insert(id, fields);
            h.record(key, lsn);
        }
        75..=86 => {
            let mut ids: Vec<StreamId> = Vec::new();
            for _ in 0..rng.gen_range(1..=3) {
                if !st.entries.is_empty() && rng.gen_bool(0.8) {
                    let n = rng.gen_range(0..st.entries.len());
                    ids.extend(st.entries.keys().nth(n).copied());
                } else {
                    ids.push(StreamId::new(rng.gen_range(0..now), 0));
                }
            }
            ids.sort();
            ids.dedup();
            let want = ids.iter().filter(|id| st.entries.contains_key(id)).count() as u64;
            let (n, lsn) = stream.delete(&ids).map_err(|e| format!("delete: {e}"))?;
            if n != want {
                return Err(format!("delete of {ids:?} removed {n}, model says {want}"));
            }
            for id in &ids {
                st.entries.remove(id);
            }
            h.record(key, lsn);
        }
        87..=94 => {
            let strategy = if rng.gen_bool(0.5) && !st.entries.is_empty() {
                let n = rng.gen_range(0..st.entries.len());
                TrimStrategy::MinId(st.entries.keys().nth(n).copied().unwrap_or_default())
            } else {
                TrimStrategy::MaxLen(rng.gen_range(0..=st.entries.len() as u64))
            };
            let spec = TrimSpec {
                strategy,
                approx: false,
                limit: None,
            };
            let (n, lsn) = stream.trim(spec).map_err(|e| format!("trim: {e}"))?;
            let before = st.entries.len();
            match strategy {
                TrimStrategy::MinId(min) => st.entries.retain(|id, _| *id >= min),
                TrimStrategy::MaxLen(max) => {
                    while st.entries.len() as u64 > max {
                        st.entries.pop_first();
                    }
                }
            }
            let want = (before - st.entries.len()) as u64;
            if n != want {
                return Err(format!("trim {strategy:?} removed {n}, model says {want}"));
            }
            h.record(key, lsn);
        }
        95..=96 => {
            let lsn = engine
                .remove_stream(DB, KEYS[key])
                .map_err(|e| format!("remove_stream: {e}"))?
                .ok_or("remove_stream found no stream")?;
            *st = KeyState::default();
            h.record(key, lsn);
        }
        _ => {
            let lsn = engine
                .durability()
                .sync_now()
                .map_err(|e| format!("sync_now: {e}"))?;
            h.durable_lsn = h.durable_lsn.max(lsn);
        }
    }
    Ok(())
}
