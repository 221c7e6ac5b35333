//! Model-based property test: random sequences of append / range (both directions,
//! inclusive and exclusive bounds) / get / delete / trim (MAXLEN and MINID, exact and
//! approximate) / set-id / reopen / crash-reopen against a tiny in-memory model. Small
//! segments force rolling, sealing and whole-segment trimming.

use std::{collections::BTreeMap, ops::Bound};

use bytes::Bytes;
use proptest::prelude::*;
use sluice_engine::{
    Direction, Engine, Error, FsyncPolicy, IdSpec, Options, StreamId, TrimSpec, TrimStrategy,
};

#[derive(Clone, Debug)]
enum Op {
    Add {
        spec: IdArg,
        now: u64,
        size: usize,
    },
    Range {
        lo: Option<(u64, bool)>,
        hi: Option<(u64, bool)>,
        count: usize,
        back: bool,
    },
    Get(u64),
    Delete(Vec<u64>),
    Trim {
        minid: bool,
        threshold: u64,
        approx: bool,
        limit: Option<u64>,
    },
    SetId {
        ms: u64,
        entries_added: Option<u64>,
        max_deleted: Option<u64>,
    },
    Reopen,
    CrashReopen,
}

#[derive(Clone, Debug)]
enum IdArg {
    Auto,
    /// `last.ms + dms` with sequence `seq`: usually valid, so the stream grows.
    After(u64, u64),
    AutoSeq(u64),
    Explicit(u64, u64),
}

/// IDs are drawn from a small space so collisions, ranges and deletes hit existing entries.
fn id_of(x: u64) -> StreamId {
    StreamId::new(x / 4, x % 4)
}

/// Even `x`: a random ID; odd `x`: an existing entry's ID (picked by `x`), so reads and
/// deletes hit real entries often.
fn pick(m: &Model, x: u64) -> StreamId {
    if x.is_multiple_of(2) || m.entries.is_empty() {
        id_of(x / 2)
    } else {
        let i = (x / 2) as usize % m.entries.len();
        *m.entries.keys().nth(i).expect("index within length")
    }
}

fn op() -> impl Strategy<Value = Op> {
    let add = (
        prop_oneof![
            Just(IdArg::Auto),
            (0u64..3, 0u64..3).prop_map(|(d, s)| IdArg::After(d, s)),
            (0u64..3, 0u64..3).prop_map(|(d, s)| IdArg::After(d, s)),
            (0u64..400).prop_map(IdArg::AutoSeq),
            (0u64..400, 0u64..4).prop_map(|(m, s)| IdArg::Explicit(m, s)),
        ],
        0u64..500,
        1usize..300,
    )
        .prop_map(|(spec, now, size)| Op::Add { spec, now, size });
    let bound = proptest::option::of((0u64..3400, any::<bool>()));
    prop_oneof![
        10 => add,
        3 => (bound.clone(), bound, 0usize..40, any::<bool>())
            .prop_map(|(lo, hi, count, back)| Op::Range { lo, hi, count, back }),
        1 => (0u64..3400).prop_map(Op::Get),
        2 => proptest::collection::vec(0u64..3400, 1..4).prop_map(Op::Delete),
        1 => (any::<bool>(), 0u64..3400, any::<bool>(), proptest::option::of(0u64..60))
            .prop_map(|(minid, threshold, approx, limit)| Op::Trim { minid, threshold, approx, limit }),
        1 => (0u64..500, proptest::option::of(0u64..300), proptest::option::of(0u64..3400))
            .prop_map(|(ms, entries_added, max_deleted)| Op::SetId { ms, entries_added, max_deleted }),
        1 => Just(Op::Reopen),
        1 => Just(Op::CrashReopen),
    ]
}

#[derive(Default)]
struct Model {
    entries: BTreeMap<StreamId, Vec<(Bytes, Bytes)>>,
    last: StreamId,
    max_deleted: StreamId,
    added: u64,
}

fn fields(id: StreamId, size: usize) -> Vec<(Bytes, Bytes)> {
    vec![
        (Bytes::from("k"), Bytes::from(format!("{id}"))),
        (Bytes::from("pad"), Bytes::from(vec![b'x'; size])),
    ]
}

fn kind(e: &Error) -> String {
    format!("{e:?}")
        .chars()
        .take_while(|c| c.is_alphanumeric())
        .collect()
}

fn options() -> Options {
    Options {
        fsync: FsyncPolicy::No,
        segment_size: 4096,
        databases: 1,
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let (mut engine, _) = Engine::open(dir.path(), options()).expect("open");
    engine.create_stream(0, b"s").expect("create");
    let mut m = Model::default();
    for op in ops {
        let s = engine.stream_mut(0, b"s").expect("stream exists");
        match op {
            Op::Add { spec, now, size } => {
                let (spec, want) = match spec {
                    IdArg::Auto => (
                        IdSpec::Auto,
                        if m.last == StreamId::MAX {
                            None
                        } else if now > m.last.ms {
                            Some(StreamId::new(now, 0))
                        } else {
                            m.last.next()
                        },
                    ),
                    IdArg::AutoSeq(ms) => (
                        IdSpec::AutoSeq(ms),
                        Some(if ms == m.last.ms {
                            StreamId::new(ms, m.last.seq + 1)
                        } else {
                            StreamId::new(ms, 0)
                        }),
                    ),
                    IdArg::After(d, seq) => {
                        let id = StreamId::new(m.last.ms.saturating_add(d), seq);
                        (IdSpec::Explicit(id), Some(id))
                    }
                    IdArg::Explicit(ms, seq) => (
                        IdSpec::Explicit(StreamId::new(ms, seq)),
                        Some(StreamId::new(ms, seq)),
                    ),
                };
                let want = want.filter(|id| *id > m.last && *id != StreamId::MIN);
                let f = fields(want.unwrap_or_default(), size);
                match (s.add(spec, &f, now), want) {
                    (Ok((id, _)), Some(w)) => {
                        prop_assert_eq!(id, w);
                        m.entries.insert(id, f);
                        m.last = id;
                        m.added += 1;
                    }
                    (Err(Error::IdTooSmall | Error::IdZero), None) => {}
                    (got, want) => prop_assert!(false, "add {spec:?}: {got:?} vs model {want:?}"),
                }
            }
            Op::Range {
                lo,
                hi,
                count,
                back,
            } => {
                let b = |x: Option<(u64, bool)>| match x {
                    None => Bound::Unbounded,
                    Some((v, true)) => Bound::Included(pick(&m, v)),
                    Some((v, false)) => Bound::Excluded(pick(&m, v)),
                };
                let (lo, hi) = (b(lo), b(hi));
                let dir = if back {
                    Direction::Backward
                } else {
                    Direction::Forward
                };
                let got = s.range(lo, hi, count, dir).expect("range");
                let lo_inc = match lo {
                    Bound::Included(a) => Some(a),
                    Bound::Excluded(a) => a.next(),
                    Bound::Unbounded => Some(StreamId::MIN),
                };
                let hi_inc = match hi {
                    Bound::Included(z) => Some(z),
                    Bound::Excluded(z) => z.prev(),
                    Bound::Unbounded => Some(StreamId::MAX),
                };
                let want: Vec<_> = match (lo_inc, hi_inc) {
                    (Some(a), Some(z)) if a <= z => {
                        let it = m.entries.range(a..=z);
                        if back {
                            it.rev().take(count).collect()
                        } else {
                            it.take(count).collect()
                        }
                    }
                    _ => Vec::new(),
                };
                prop_assert_eq!(got.len(), want.len(), "range {:?}..{:?} {:?}", lo, hi, dir);
                for (g, (id, f)) in got.iter().zip(want) {
                    prop_assert_eq!(g.id, *id);
                    prop_assert_eq!(&g.fields, f);
                }
            }
            Op::Get(x) => {
                let id = pick(&m, x);
                let got = s.get(id).expect("get").map(|e| e.fields);
                prop_assert_eq!(got.as_ref(), m.entries.get(&id));
            }
            Op::Delete(xs) => {
                let ids: Vec<_> = xs.into_iter().map(|x| pick(&m, x)).collect();
                let (n, _) = s.delete(&ids).expect("delete");
                let mut want = 0;
                for id in ids {
                    if m.entries.remove(&id).is_some() {
                        want += 1;
                        m.max_deleted = m.max_deleted.max(id);
                    }
                }
                prop_assert_eq!(n, want);
            }
            Op::Trim {
                minid,
                threshold,
                approx,
                limit,
            } => {
                let strategy = if minid {
                    TrimStrategy::MinId(pick(&m, threshold))
                } else {
                    TrimStrategy::MaxLen(threshold / 16)
                };
                let limit = if approx { limit } else { None };
                let (n, _) = s
                    .trim(TrimSpec {
                        strategy,
                        approx,
                        limit,
                    })
                    .expect("trim");
                let exact = match strategy {
                    TrimStrategy::MaxLen(t) => (m.entries.len() as u64).saturating_sub(t),
                    TrimStrategy::MinId(t) => m.entries.range(..t).count() as u64,
                };
                if approx {
                    prop_assert!(n <= exact, "approx trim removed {n} > exact {exact}");
                    if let Some(l) = limit.filter(|l| *l > 0) {
                        prop_assert!(n <= l);
                    }
                } else {
                    prop_assert_eq!(n, exact);
                }
                for _ in 0..n {
                    let first = *m.entries.keys().next().expect("model has entries");
                    m.entries.remove(&first);
                }
            }
            Op::SetId {
                ms,
                entries_added,
                max_deleted,
            } => {
                let id = if ms.is_multiple_of(3) {
                    m.last
                } else {
                    StreamId::new(ms, 0)
                };
                let md = max_deleted.map(|x| pick(&m, x));
                let want = if md.is_some_and(|md| id < md) {
                    Err("SetIdMaxDeletedTooLarge")
                } else if m.entries.keys().next_back().is_some_and(|top| id < *top) {
                    Err("SetIdTooSmall")
                } else if !m.entries.is_empty()
                    && entries_added.is_some_and(|n| n < m.entries.len() as u64)
                {
                    Err("SetIdEntriesAddedTooSmall")
                } else {
                    Ok(())
                };
                let got = s
                    .set_id(id, entries_added, md)
                    .map(|_| ())
                    .map_err(|e| kind(&e));
                prop_assert_eq!(
                    got.clone().map_err(|e| e.to_string()),
                    want.map_err(String::from)
                );
                if got.is_ok() {
                    m.last = id;
                    if let Some(n) = entries_added {
                        m.added = n;
                    }
                    if let Some(md) = md.filter(|md| *md != StreamId::MIN) {
                        m.max_deleted = md;
                    }
                }
            }
            Op::Reopen => {
                engine.close().expect("close");
                let (e, report) = Engine::open(dir.path(), options()).expect("reopen");
                prop_assert!(report.corruptions.is_empty(), "{:?}", report.corruptions);
                prop_assert_eq!(report.bytes_truncated, 0);
                engine = e;
            }
            Op::CrashReopen => {
                // A process crash: nothing synced, but the page cache keeps every write.
                drop(engine);
                let (e, report) = Engine::open(dir.path(), options()).expect("reopen");
                prop_assert!(report.corruptions.is_empty(), "{:?}", report.corruptions);
                prop_assert_eq!(report.bytes_truncated, 0);
                engine = e;
            }
        }
        let s = engine.stream(0, b"s").expect("stream exists");
        let meta = s.meta();
        STATS.with(|st| {
            let mut st = st.borrow_mut();
            st.2 = st.2.max(meta.segments);
        });
        prop_assert_eq!(meta.length, m.entries.len() as u64);
        prop_assert_eq!(meta.last_generated_id, m.last);
        prop_assert_eq!(meta.max_deleted_entry_id, m.max_deleted);
        prop_assert_eq!(meta.entries_added, m.added);
        prop_assert_eq!(
            meta.recorded_first_entry_id,
            m.entries.keys().next().copied().unwrap_or_default()
        );
        let last = s.last_entry().expect("last").map(|e| e.id);
        prop_assert_eq!(last, m.entries.keys().next_back().copied());
    }
    let s = engine.stream(0, b"s").expect("stream exists");
    let all = s
        .range(
            Bound::Unbounded,
            Bound::Unbounded,
            usize::MAX,
            Direction::Forward,
        )
        .expect("range");
    let got: Vec<_> = all.iter().map(|e| e.id).collect();
    let want: Vec<_> = m.entries.keys().copied().collect();
    prop_assert_eq!(got, want);
    STATS.with(|st| {
        let mut st = st.borrow_mut();
        st.0 += 1;
        st.1 = st.1.max(m.added);
    });
    Ok(())
}

thread_local! {
    /// (cases, most entries added in one case, most segments in one case).
    static STATS: std::cell::RefCell<(u64, u64, u64)> = const { std::cell::RefCell::new((0, 0, 0)) };
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops)?;
    }
}

/// The generator really exercises rolling and trimming (guards against a vacuous model test).
#[test]
fn model_test_reaches_multiple_segments() {
    let mut ops = Vec::new();
    for i in 0..200u64 {
        ops.push(Op::Add {
            spec: IdArg::After(1, 0),
            now: 0,
            size: 100,
        });
        if i.is_multiple_of(20) {
            ops.push(Op::Delete(vec![2 * i + 1, 7]));
            ops.push(Op::CrashReopen);
        }
    }
    ops.push(Op::Trim {
        minid: false,
        threshold: 50 * 16,
        approx: true,
        limit: None,
    });
    ops.push(Op::Trim {
        minid: true,
        threshold: 81,
        approx: false,
        limit: None,
    });
    ops.push(Op::Reopen);
    ops.push(Op::Range {
        lo: None,
        hi: None,
        count: 1000,
        back: true,
    });
    run(ops).unwrap();
    STATS.with(|st| assert!(st.borrow().2 > 3, "segments: {:?}", st.borrow()));
}
