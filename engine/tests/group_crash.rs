//! Consumer groups through the public engine API: state survives reopen, and the crash
//! contract holds when the group journal is cut or damaged, or when the stream lost its tail.

#![allow(clippy::unwrap_used)] // a test file: failing loudly is the point

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rand::{rngs::StdRng, Rng, SeedableRng};
use sluice_engine::{
    ClaimOptions, ConsumerInfo, Engine, FsyncPolicy, GroupInfo, GroupStart, IdSpec, Options,
    PendingEntry, Stream, StreamId,
};

#[path = "common/failing.rs"]
mod failing;

fn options(fsync: FsyncPolicy) -> Options {
    Options {
        fsync,
        segment_size: 1 << 20,
        ..Options::default()
    }
}

fn fields(i: u64) -> Vec<(Bytes, Bytes)> {
    vec![(Bytes::from_static(b"n"), Bytes::from(i.to_string()))]
}

/// Everything observable about a stream's groups.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Snapshot {
    groups: Vec<GroupInfo>,
    consumers: BTreeMap<Bytes, Vec<ConsumerInfo>>,
    pending: BTreeMap<Bytes, Vec<PendingEntry>>,
}

fn snapshot(s: &Stream) -> Snapshot {
    // Lag depends on the stream, which journal damage does not touch; compare group state only.
    let groups: Vec<GroupInfo> = s
        .groups()
        .into_iter()
        .map(|g| GroupInfo { lag: None, ..g })
        .collect();
    let mut consumers = BTreeMap::new();
    let mut pending = BTreeMap::new();
    for g in &groups {
        consumers.insert(g.name.clone(), s.consumers(&g.name).unwrap());
        pending.insert(
            g.name.clone(),
            s.pending(
                &g.name,
                Bound::Unbounded,
                Bound::Unbounded,
                usize::MAX,
                None,
                None,
                0,
            )
            .unwrap(),
        );
    }
    Snapshot {
        groups,
        consumers,
        pending,
    }
}

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// Runs a seeded mix of group operations under `always`, waiting for each Lsn as a server
/// would, and records after each one the journal length and the acknowledged state.
fn run_ops(dir: &Path, seed: u64, steps: usize) -> Vec<(u64, Snapshot)> {
    let (mut engine, _) = Engine::open(dir, options(FsyncPolicy::Always)).unwrap();
    let durability = engine.durability();
    let mut rng = StdRng::seed_from_u64(seed);
    let (s, lsn) = engine.create_stream(0, b"s").unwrap();
    durability.wait(lsn).unwrap();
    let mut n = 0u64;
    let mut now = 1_000u64;
    for _ in 0..20 {
        n += 1;
        let (_, lsn) = s
            .add(IdSpec::Explicit(StreamId::new(n, 0)), &fields(n), now)
            .unwrap();
        durability.wait(lsn).unwrap();
    }
    let journal = || {
        find(dir, "groups.journal")
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    };
    let mut trace = vec![(0, snapshot(s))];
    let lsn = s.create_group(b"g", StreamId::MIN, Some(0)).unwrap();
    durability.wait(lsn).unwrap();
    trace.push((journal(), snapshot(s)));
    let consumers: [&[u8]; 3] = [b"a", b"b", b"c"];
    for _ in 0..steps {
        now += rng.gen_range(1..30);
        let c = consumers[rng.gen_range(0..3)];
        let lsn = match rng.gen_range(0..8) {
            0 => {
                n += 1;
                s.add(IdSpec::Explicit(StreamId::new(n, 0)), &fields(n), now)
                    .unwrap()
                    .1
            }
            1 | 2 => {
                s.read_group(
                    b"g",
                    c,
                    GroupStart::New,
                    Some(rng.gen_range(1..4)),
                    false,
                    now,
                )
                .unwrap()
                .1
            }
            3 => {
                s.read_group(
                    b"g",
                    c,
                    GroupStart::History(StreamId::MIN),
                    Some(2),
                    false,
                    now,
                )
                .unwrap()
                .1
            }
            4 | 5 => {
                let ids: Vec<StreamId> = (0..3)
                    .map(|_| StreamId::new(rng.gen_range(1..=n), 0))
                    .collect();
                s.ack(b"g", &ids).unwrap().1
            }
            6 => {
                let ids = [StreamId::new(rng.gen_range(1..=n), 0)];
                s.claim(b"g", c, 10, &ids, &ClaimOptions::default(), now)
                    .unwrap()
                    .1
            }
            _ => {
                s.autoclaim(b"g", c, 10, StreamId::MIN, 2, false, now)
                    .unwrap()
                    .1
            }
        };
        durability.wait(lsn).unwrap();
        trace.push((journal(), snapshot(s)));
    }
    engine.close().unwrap();
    trace
}

fn reopen_snapshot(dir: &Path) -> (Snapshot, sluice_engine::RecoveryReport) {
    let (engine, report) = Engine::open(dir, options(FsyncPolicy::Always)).unwrap();
    let snap = snapshot(engine.stream(0, b"s").unwrap());
    engine.close().unwrap();
    (snap, report)
}

#[test]
fn group_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let trace = run_ops(dir.path(), 7, 120);
    let (got, report) = reopen_snapshot(dir.path());
    assert_eq!(&got, &trace.last().unwrap().1);
    assert!(report.group_clamps.is_empty());
}

#[test]
fn cut_or_damaged_group_journal_recovers_an_acknowledged_prefix() {
    let base = tempfile::tempdir().unwrap();
    let trace = run_ops(base.path(), 11, 150);
    let journal = find(base.path(), "groups.journal").unwrap();
    let full = std::fs::read(&journal).unwrap();
    let rel = journal.strip_prefix(base.path()).unwrap().to_path_buf();
    let mut rng = StdRng::seed_from_u64(99);
    for round in 0..30 {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let cut = rng.gen_range(0..=full.len());
        let mut bytes = full[..cut].to_vec();
        let valid = if round % 2 == 1 && cut > 0 {
            let at = rng.gen_range(cut.saturating_sub(64)..cut);
            bytes[at] ^= 0x10;
            at
        } else {
            cut
        };
        std::fs::write(dir.path().join(&rel), &bytes).unwrap();
        let (got, _) = reopen_snapshot(dir.path());
        let want = trace
            .iter()
            .rev()
            .find(|(len, _)| *len as usize <= valid)
            .map(|(_, s)| s)
            .expect("the empty journal is a prefix of every journal");
        assert_eq!(
            &got, want,
            "round {round}: cut at {cut}, damage from {valid}"
        );
    }
}

#[test]
fn lost_stream_tail_clamps_groups_and_reports_it() {
    let early = tempfile::tempdir().unwrap();
    let late = tempfile::tempdir().unwrap();
    {
        let (mut engine, _) = Engine::open(early.path(), options(FsyncPolicy::EverySec)).unwrap();
        let (s, _) = engine.create_stream(0, b"s").unwrap();
        for i in 1..=10 {
            s.add(IdSpec::Explicit(StreamId::new(i, 0)), &fields(i), 5)
                .unwrap();
        }
        engine.close().unwrap();
    }
    copy_dir(early.path(), late.path());
    {
        let (mut engine, _) = Engine::open(late.path(), options(FsyncPolicy::EverySec)).unwrap();
        let s = engine.stream_mut(0, b"s").unwrap();
        for i in 11..=20 {
            s.add(IdSpec::Explicit(StreamId::new(i, 0)), &fields(i), 5)
                .unwrap();
        }
        s.create_group(b"g", StreamId::MIN, Some(0)).unwrap();
        s.create_group(b"ahead", StreamId::new(100, 0), None)
            .unwrap();
        let dollar = s.last_id();
        s.create_group(b"dollar", dollar, None).unwrap();
        let (got, _) = s
            .read_group(b"g", b"a", GroupStart::New, None, false, 6)
            .unwrap();
        assert_eq!(got.len(), 20);
        engine.close().unwrap();
    }
    // The group files survive, the stream's last ten entries do not.
    let journal = find(late.path(), "groups.journal").unwrap();
    let rel = journal.strip_prefix(late.path()).unwrap();
    std::fs::copy(&journal, early.path().join(rel)).unwrap();
    let (engine, report) = Engine::open(early.path(), options(FsyncPolicy::EverySec)).unwrap();
    assert_eq!(report.group_clamps.len(), 2, "{:?}", report.group_clamps);
    let s = engine.stream(0, b"s").unwrap();
    let g = s.group_info(b"g").unwrap();
    assert_eq!(g.last_delivered_id, StreamId::new(10, 0));
    assert_eq!(g.pending, 10);
    assert_eq!(g.lag, Some(0));
    assert_eq!(
        s.group_info(b"ahead").unwrap().last_delivered_id,
        StreamId::new(100, 0)
    );
    assert_eq!(
        s.group_info(b"dollar").unwrap().last_delivered_id,
        StreamId::new(10, 0)
    );
    let pel = s
        .pending(b"g", Bound::Unbounded, Bound::Unbounded, 100, None, None, 0)
        .unwrap();
    assert!(pel
        .iter()
        .all(|p| p.id <= StreamId::new(10, 0) && p.delivery_count == 1));
    engine.close().unwrap();
    // The clamp was made durable: a second open finds nothing to clamp.
    let (engine, report) = Engine::open(early.path(), options(FsyncPolicy::EverySec)).unwrap();
    assert!(report.group_clamps.is_empty());
    assert_eq!(
        engine
            .stream(0, b"s")
            .unwrap()
            .group_info(b"g")
            .unwrap()
            .pending,
        10
    );
    engine.close().unwrap();
}

#[test]
fn failed_journal_write_poisons_and_leaves_state_unchanged() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let fail_write = Arc::new(AtomicBool::new(false));
    let vfs = Arc::new(failing::FailingVfs {
        fail_write: fail_write.clone(),
        ..Default::default()
    });
    let (mut engine, _) = Engine::open_with(vfs, dir.path(), options(FsyncPolicy::Always)).unwrap();
    let d = engine.durability();
    let (s, _) = engine.create_stream(0, b"s").unwrap();
    for i in 1..=5 {
        s.add(IdSpec::Explicit(StreamId::new(i, 0)), &fields(i), 1)
            .unwrap();
    }
    s.create_group(b"g", StreamId::MIN, None).unwrap();
    let (got, lsn) = s
        .read_group(b"g", b"a", GroupStart::New, Some(2), false, 2)
        .unwrap();
    assert_eq!(got.len(), 2);
    d.wait(lsn).unwrap();
    let before = snapshot(s);
    fail_write.store(true, Ordering::SeqCst);
    assert!(s
        .read_group(b"g", b"a", GroupStart::New, Some(2), false, 3)
        .is_err());
    assert_eq!(
        snapshot(s),
        before,
        "a change that was not journaled is not applied"
    );
    fail_write.store(false, Ordering::SeqCst);
    assert!(matches!(
        s.ack(b"g", &[StreamId::new(1, 0)]),
        Err(sluice_engine::Error::Poisoned(_))
    ));
    assert_eq!(
        s.pending_summary(b"g").unwrap().count,
        2,
        "reads keep working"
    );
    drop(engine);
    let (got, _) = reopen_snapshot(dir.path());
    assert_eq!(got, before);
}

#[test]
fn groups_move_with_rename_and_go_with_removal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut engine, _) = Engine::open(dir.path(), options(FsyncPolicy::Always)).unwrap();
        let (s, _) = engine.create_stream(0, b"s").unwrap();
        for i in 1..=4 {
            s.add(IdSpec::Explicit(StreamId::new(i, 0)), &fields(i), 1)
                .unwrap();
        }
        s.create_group(b"g", StreamId::MIN, None).unwrap();
        s.read_group(b"g", b"a", GroupStart::New, Some(2), false, 2)
            .unwrap();
        engine.rename_stream(0, b"s", b"t").unwrap();
        let t = engine.stream_mut(0, b"t").unwrap();
        t.read_group(b"g", b"a", GroupStart::New, Some(1), false, 3)
            .unwrap();
        let (n, _) = t.ack(b"g", &[StreamId::new(1, 0)]).unwrap();
        assert_eq!(n, 1);
        engine.close().unwrap();
    }
    {
        let (mut engine, _) = Engine::open(dir.path(), options(FsyncPolicy::Always)).unwrap();
        assert!(engine.stream(0, b"s").is_none());
        let t = engine.stream(0, b"t").unwrap();
        let g = t.group_info(b"g").unwrap();
        assert_eq!((g.last_delivered_id, g.pending), (StreamId::new(3, 0), 2));
        // A new stream under the old name starts without groups.
        let (s, _) = engine.create_stream(0, b"s").unwrap();
        assert!(s.groups().is_empty());
        engine.remove_stream(0, b"t").unwrap();
        let (t, _) = engine.create_stream(0, b"t").unwrap();
        assert!(t.groups().is_empty());
        engine.close().unwrap();
    }
    let (engine, _) = Engine::open(dir.path(), options(FsyncPolicy::Always)).unwrap();
    assert!(engine.stream(0, b"t").unwrap().groups().is_empty());
    engine.close().unwrap();
}
