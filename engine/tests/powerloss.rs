//! Power-loss tests of the `always` and `everysec`/`no` contracts on the shared simulated
//! file system ([`simfs::SimFs`], also used by `power_loss.rs` and `group_power_loss.rs`).
//! Random operations (across two databases, with RENAME, expiry and XSETID, which the
//! `power_loss` workload does not issue) run, each waited for like a server acknowledging
//! it; at random points a crash image is opened. Under `always` the image holds only what
//! was fsync'd (files and directory entries) and must hold exactly every acknowledged
//! write; under `everysec`/`no` any dirty page may or may not have reached the disk and
//! every stream must be in a state it went through since the last sync round. Seeded; the
//! seed is printed on failure.

#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

#[path = "power_loss/simfs.rs"]
#[allow(dead_code)] // fault injection and helpers used by the other power-loss tests
mod simfs;

use std::{
    collections::{BTreeMap, HashMap},
    ops::Bound,
    sync::Arc,
};

use bytes::Bytes;
use rand::{rngs::StdRng, Rng, SeedableRng};
use simfs::{CrashMode, SimFs};
use sluice_engine::{
    Direction, Engine, FsyncPolicy, IdSpec, Options, StreamId, TrimSpec, TrimStrategy,
};

const ROOT: &str = "/data";

/// What a power loss leaves if nothing but fsync'd data reached the disk.
const SYNCED_ONLY: CrashMode = CrashMode {
    writeback: 0.0,
    torn: 0.0,
    torn_sector: false,
    dir_kept: 0.0,
};

/// Any dirty page written back, torn, or not; un-fsync'd directory entries kept or lost.
fn random_mode(rng: &mut StdRng) -> CrashMode {
    CrashMode {
        writeback: [0.0, 0.25, 0.5, 0.9, 1.0][rng.gen_range(0..5)],
        torn: rng.gen_range(0.0..0.3),
        torn_sector: rng.gen_bool(0.5),
        dir_kept: [0.0, 0.5, 1.0][rng.gen_range(0..3)],
    }
}

type Fields = Vec<(Bytes, Bytes)>;

#[derive(Clone, Default, Debug, PartialEq)]
struct ModelStream {
    entries: BTreeMap<StreamId, Fields>,
    last: StreamId,
    expire: Option<u64>,
}

fn options() -> Options {
    Options {
        fsync: FsyncPolicy::Always,
        segment_size: 4096,
        databases: 2,
    }
}

fn snapshot(e: &Engine) -> BTreeMap<(u32, Vec<u8>), ModelStream> {
    let mut out = BTreeMap::new();
    for db in 0..2 {
        for key in e.keys(db) {
            let s = e.stream(db, key).unwrap();
            let entries = s
                .range(
                    Bound::Unbounded,
                    Bound::Unbounded,
                    usize::MAX,
                    Direction::Forward,
                )
                .unwrap()
                .into_iter()
                .map(|en| (en.id, en.fields))
                .collect();
            out.insert(
                (db, key.to_vec()),
                ModelStream {
                    entries,
                    last: s.last_id(),
                    expire: e.expire_at(db, key),
                },
            );
        }
    }
    out
}

fn run(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut image_rng = StdRng::seed_from_u64(seed ^ 0x1A6E);
    let fs = SimFs::new(seed);
    let (mut e, _) = Engine::open_with(Arc::new(fs.clone()), ROOT, options()).unwrap();
    let d = e.durability();
    let mut model: BTreeMap<(u32, Vec<u8>), ModelStream> = BTreeMap::new();
    let keys: [&[u8]; 4] = [b"a", b"b", b"c/\x00d", b"e"];
    let mut now = 1000u64;
    for step in 0..160 {
        let db = rng.gen_range(0..2u32);
        let key = keys[rng.gen_range(0..keys.len())];
        let mk = (db, key.to_vec());
        let lsn = match rng.gen_range(0..100) {
            0..=54 => {
                let mut lsn = None;
                if e.stream(db, key).is_none() {
                    lsn = Some(e.create_stream(db, key).unwrap().1);
                    model.insert(mk.clone(), ModelStream::default());
                }
                now += rng.gen_range(0..3);
                let f: Fields = vec![(
                    Bytes::from("v"),
                    Bytes::from(vec![b'x'; rng.gen_range(1..400)]),
                )];
                let (id, l) = e
                    .stream_mut(db, key)
                    .unwrap()
                    .add(IdSpec::Auto, &f, now)
                    .unwrap();
                let m = model.get_mut(&mk).unwrap();
                m.entries.insert(id, f);
                m.last = id;
                lsn.max(Some(l))
            }
            55..=69 => {
                let Some(m) = model.get_mut(&mk) else {
                    continue;
                };
                if m.entries.is_empty() {
                    continue;
                }
                let i = rng.gen_range(0..m.entries.len());
                let id = *m.entries.keys().nth(i).unwrap();
                m.entries.remove(&id);
                let (n, l) = e.stream_mut(db, key).unwrap().delete(&[id]).unwrap();
                assert_eq!(n, 1);
                Some(l)
            }
            70..=77 => {
                let Some(m) = model.get_mut(&mk) else {
                    continue;
                };
                let keep = rng.gen_range(0..20u64);
                let spec = TrimSpec {
                    strategy: TrimStrategy::MaxLen(keep),
                    approx: false,
                    limit: None,
                };
                let (n, l) = e.stream_mut(db, key).unwrap().trim(spec).unwrap();
                assert_eq!(n, (m.entries.len() as u64).saturating_sub(keep));
                while m.entries.len() as u64 > keep {
                    let first = *m.entries.keys().next().unwrap();
                    m.entries.remove(&first);
                }
                Some(l)
            }
            78..=83 => {
                let l = e.remove_stream(db, key).unwrap();
                assert_eq!(l.is_some(), model.remove(&mk).is_some());
                l
            }
            84..=91 => {
                let to = keys[rng.gen_range(0..keys.len())];
                if e.stream(db, key).is_none() || to == key {
                    continue;
                }
                let l = e.rename_stream(db, key, to).unwrap();
                let m = model.remove(&mk).unwrap();
                model.insert((db, to.to_vec()), m);
                Some(l)
            }
            _ => {
                if e.stream(db, key).is_none() {
                    continue;
                }
                let at = rng.gen_bool(0.7).then(|| rng.gen_range(1..1_000_000u64));
                let l = e.set_expire(db, key, at).unwrap();
                model.get_mut(&mk).unwrap().expire = at;
                Some(l)
            }
        };
        if let Some(l) = lsn {
            d.wait(l).unwrap(); // acknowledged
        }
        if step % 40 == 39 {
            let image = fs.crash_image(&mut image_rng, SYNCED_ONLY);
            let (crashed, report) = Engine::open_with(Arc::new(image), ROOT, options()).unwrap();
            assert!(
                report.corruptions.is_empty(),
                "seed {seed} step {step}: {report:?}"
            );
            let got = snapshot(&crashed);
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                model.keys().collect::<Vec<_>>(),
                "seed {seed} step {step}: keys"
            );
            for (k, m) in &model {
                let g = &got[k];
                assert_eq!(
                    g.entries, m.entries,
                    "seed {seed} step {step}: entries of {k:?}"
                );
                assert!(
                    g.last >= m.last,
                    "seed {seed} step {step}: last id of {k:?}"
                );
                assert_eq!(
                    g.expire, m.expire,
                    "seed {seed} step {step}: expiry of {k:?}"
                );
            }
        }
    }
}

#[test]
fn acknowledged_writes_survive_power_loss_under_always() {
    let base: u64 = std::env::var("SLUICE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xD15C);
    for seed in base..base + 4 {
        run(seed);
    }
}

/// Under `everysec` and `no`, a power loss may lose recent writes, but what survives of each
/// stream must be a state it actually went through, no older than at the last completed
/// sync round.
fn run_prefix(seed: u64, policy: FsyncPolicy) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut image_rng = StdRng::seed_from_u64(seed ^ 0x9F1C);
    let fs = SimFs::new(seed);
    let opts = Options {
        fsync: policy,
        ..options()
    };
    let (mut e, _) = Engine::open_with(Arc::new(fs.clone()), ROOT, opts.clone()).unwrap();
    let d = e.durability();
    let keys: [&[u8]; 3] = [b"a", b"b", b"c"];
    // Per key: every state it went through (None = absent), and the index of the state
    // at the last completed sync round.
    let mut history: HashMap<&[u8], (Vec<Option<ModelStream>>, usize)> =
        keys.iter().map(|k| (*k, (vec![None], 0))).collect();
    let mut now = 1000u64;
    for step in 0..200 {
        let key = keys[rng.gen_range(0..keys.len())];
        let (states, _) = history.get_mut(key).unwrap();
        let mut m = states.last().cloned().flatten();
        match rng.gen_range(0..100) {
            0..=64 => {
                if e.stream(0, key).is_none() {
                    e.create_stream(0, key).unwrap();
                    m = Some(ModelStream::default());
                    states.push(m.clone());
                }
                now += rng.gen_range(0..3);
                let f: Fields = vec![(
                    Bytes::from("v"),
                    Bytes::from(vec![b'y'; rng.gen_range(1..300)]),
                )];
                let (id, _) = e
                    .stream_mut(0, key)
                    .unwrap()
                    .add(IdSpec::Auto, &f, now)
                    .unwrap();
                let s = m.as_mut().unwrap();
                s.entries.insert(id, f);
                s.last = id;
            }
            65..=79 => {
                let Some(s) = m.as_mut() else { continue };
                let Some(&id) = s
                    .entries
                    .keys()
                    .nth(rng.gen_range(0..s.entries.len().max(1)))
                else {
                    continue;
                };
                s.entries.remove(&id);
                e.stream_mut(0, key).unwrap().delete(&[id]).unwrap();
            }
            80..=89 => {
                let Some(s) = m.as_mut() else { continue };
                let keep = rng.gen_range(0..15u64);
                let spec = TrimSpec {
                    strategy: TrimStrategy::MaxLen(keep),
                    approx: false,
                    limit: None,
                };
                let (n, _) = e.stream_mut(0, key).unwrap().trim(spec).unwrap();
                if n == 0 {
                    continue;
                }
                while s.entries.len() as u64 > keep {
                    let first = *s.entries.keys().next().unwrap();
                    s.entries.remove(&first);
                }
            }
            90..=94 => {
                let Some(s) = m.as_mut() else { continue };
                let top = s.entries.keys().next_back().copied().unwrap_or_default();
                let to = StreamId::new(top.ms.max(s.last.ms.saturating_sub(2)), 7);
                if to < top {
                    continue;
                }
                e.stream_mut(0, key)
                    .unwrap()
                    .set_id(to, None, None)
                    .unwrap();
                s.last = to;
            }
            _ => {
                // A completed sync round: everything so far is durable.
                d.sync_now().unwrap();
                for (states, synced) in history.values_mut() {
                    *synced = states.len() - 1;
                }
                continue;
            }
        }
        let (states, _) = history.get_mut(key).unwrap();
        states.push(m);
        if step % 50 == 49 {
            let mode = random_mode(&mut image_rng);
            let image = fs.crash_image(&mut image_rng, mode);
            let (crashed, report) = Engine::open_with(Arc::new(image), ROOT, opts.clone()).unwrap();
            assert!(
                report.corruptions.is_empty(),
                "seed {seed} step {step} {mode:?}: {report:?}"
            );
            let got = snapshot(&crashed);
            for (key, (states, synced)) in &history {
                let g = got.get(&(0, key.to_vec())).map(|s| ModelStream {
                    expire: None,
                    ..s.clone()
                });
                let found = states.iter().skip(*synced).any(|s| *s == g);
                assert!(
                    found,
                    "seed {seed} step {step} {policy:?} {mode:?}: stream {key:?} is in no state since the last sync:\n got {g:?}\n states {:?}",
                    &states[*synced..]
                );
            }
        }
    }
}

#[test]
fn power_loss_leaves_each_stream_in_a_state_it_went_through() {
    let base: u64 = std::env::var("SLUICE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xBEEF);
    for seed in base..base + 3 {
        run_prefix(seed, FsyncPolicy::EverySec);
        run_prefix(seed, FsyncPolicy::No);
    }
}
