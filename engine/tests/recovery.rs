//! Recovery tests: damage a stream's files the way crashes and disks do (truncation at
//! random offsets, garbage after the tail, zeroed pages, bit flips), reopen, and check the
//! invariants: no corrupt entry is ever served, the fsync'd prefix is intact, IDs never go
//! backwards, and damage inside fsync'd data is reported as corruption instead of being
//! silently truncated. Every random choice derives from a printed seed.

use std::{
    fs::OpenOptions,
    ops::Bound,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use rand::{rngs::StdRng, Rng, SeedableRng};
use sluice_engine::{Direction, Engine, Entry, Error, FsyncPolicy, IdSpec, Options, StreamId};

#[path = "common/failing.rs"]
mod failing;
use failing::FailingVfs;

fn options(fsync: FsyncPolicy, segment_size: u64) -> Options {
    Options {
        fsync,
        segment_size,
        databases: 1,
    }
}

fn fields(i: u64) -> Vec<(Bytes, Bytes)> {
    vec![
        (Bytes::from("n"), Bytes::from(format!("value-{i}-"))),
        (
            Bytes::from("pad"),
            Bytes::from(vec![b'p'; (i % 50) as usize + 20]),
        ),
    ]
}

fn add_range(e: &mut Engine, from: u64, to: u64) {
    let s = e.stream_mut(0, b"s").expect("stream");
    for i in from..=to {
        s.add(IdSpec::Explicit(StreamId::new(i, 0)), &fields(i), 0)
            .expect("add");
    }
}

fn all(e: &Engine) -> Vec<Entry> {
    e.stream(0, b"s")
        .expect("stream")
        .range(
            Bound::Unbounded,
            Bound::Unbounded,
            usize::MAX,
            Direction::Forward,
        )
        .expect("range")
}

fn stream_dir(root: &Path) -> PathBuf {
    root.join("db0").join("ks")
}

/// Segment files of the stream, oldest first.
fn segments(root: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(stream_dir(root))
        .expect("stream dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs
}

/// End of the non-zero bytes of a file (records end with non-zero value bytes).
fn data_end(path: &Path) -> u64 {
    let bytes = std::fs::read(path).expect("read segment");
    bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i as u64 + 1)
}

/// Reads IDs `1..=total` one by one: the IDs served (checked against what was written) and
/// those whose read reports corruption (a damaged record that could be that entry). Any
/// other error fails the test.
fn read_each(e: &Engine, total: u64) -> (Vec<u64>, Vec<u64>) {
    let s = e.stream(0, b"s").expect("stream");
    let mut served = Vec::new();
    let mut damaged = Vec::new();
    for i in 1..=total {
        match s.get(StreamId::new(i, 0)) {
            Ok(Some(entry)) => served.push(entry),
            Ok(None) => {}
            Err(sluice_engine::Error::Corruption { .. }) => damaged.push(i),
            Err(other) => panic!("read of {i}: {other}"),
        }
    }
    (check_served(&served), damaged)
}

/// Every served entry must be exactly what was written; returns the served IDs.
fn check_served(entries: &[Entry]) -> Vec<u64> {
    let mut prev = None;
    for e in entries {
        assert_eq!(
            e.fields,
            fields(e.id.ms),
            "entry {} served with wrong content",
            e.id
        );
        assert!(prev < Some(e.id), "IDs out of order");
        prev = Some(e.id);
    }
    entries.iter().map(|e| e.id.ms).collect()
}

/// Writes 1..=synced and syncs, then synced+1..=total without syncing, then "crashes"
/// (drops the engine). Returns the tail segment and the synced end offset in it.
fn build(root: &Path, synced: u64, total: u64) -> (PathBuf, u64) {
    let (mut e, _) = Engine::open(root, options(FsyncPolicy::No, 1 << 20)).expect("open");
    e.create_stream(0, b"s").expect("create");
    add_range(&mut e, 1, synced);
    e.sync_all().expect("sync");
    let tail = segments(root).pop().expect("a segment");
    let synced_end = data_end(&tail);
    add_range(&mut e, synced + 1, total);
    drop(e);
    (tail, synced_end)
}

fn reopen(root: &Path) -> (Engine, sluice_engine::RecoveryReport) {
    Engine::open(root, options(FsyncPolicy::No, 1 << 20)).expect("reopen")
}

/// After damage above the synced offset: the synced prefix is intact, IDs keep increasing,
/// and either nothing is reported and what is served is a prefix of what was written (a
/// torn tail), or the damage is reported as corruption and every entry but the damaged
/// ones is still served (the meta file's durable offset lags group commits, so damage to
/// records written whole is taken for damage to durable data, never silently dropped).
fn assert_prefix_after_tail_damage(root: &Path, synced: u64, total: u64, seed: u64) {
    let (mut e, report) = reopen(root);
    let (ids, damaged) = read_each(&e, total);
    assert!(
        (1..=synced).all(|i| ids.contains(&i)),
        "seed {seed}: lost synced entries"
    );
    if report.corruptions.is_empty() {
        assert!(damaged.is_empty(), "seed {seed}: unreported damage");
        assert_eq!(
            ids,
            (1..=ids.len() as u64).collect::<Vec<_>>(),
            "seed {seed}: not a prefix"
        );
    } else {
        assert_eq!(report.bytes_truncated, 0, "seed {seed}: {report:?}");
        assert!(!damaged.is_empty(), "seed {seed}: {report:?}");
        let kept: Vec<u64> = (1..=total).filter(|i| !damaged.contains(i)).collect();
        assert_eq!(ids, kept, "seed {seed}: undamaged entries lost");
    }
    let s = e.stream_mut(0, b"s").expect("stream");
    assert!(
        s.last_id() >= StreamId::new(synced, 0),
        "seed {seed}: IDs went backwards"
    );
    assert!(s.len() as usize == ids.len() && ids.len() as u64 <= total);
    // The stream keeps working and a second reopen is clean.
    let next = s.last_id().ms + 1;
    s.add(IdSpec::Explicit(StreamId::new(next, 0)), &fields(next), 0)
        .expect("add after recovery");
    e.close().expect("close");
    let (e, report) = reopen(root);
    assert!(
        report.bytes_truncated == 0 && (report.corruptions.is_empty() || !damaged.is_empty()),
        "seed {seed}: {report:?}"
    );
    assert_eq!(read_each(&e, next).0.len(), ids.len() + 1);
}

fn seeds() -> impl Iterator<Item = u64> {
    let base: u64 = std::env::var("SLUICE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED);
    (0..12).map(move |i| base + i)
}

#[test]
fn torn_tail_truncated_at_random_offsets() {
    for seed in seeds() {
        let dir = tempfile::tempdir().unwrap();
        let (tail, synced_end) = build(dir.path(), 40, 90);
        let end = data_end(&tail);
        let mut rng = StdRng::seed_from_u64(seed);
        let cut = rng.gen_range(synced_end..=end);
        let f = OpenOptions::new().write(true).open(&tail).unwrap();
        f.set_len(cut).unwrap();
        assert_prefix_after_tail_damage(dir.path(), 40, 90, seed);
    }
}

#[test]
fn garbage_after_tail_is_truncated_and_counted() {
    for seed in seeds() {
        let dir = tempfile::tempdir().unwrap();
        let (tail, _) = build(dir.path(), 30, 60);
        let end = data_end(&tail);
        let mut rng = StdRng::seed_from_u64(seed);
        let garbage: Vec<u8> = (0..rng.gen_range(1..3000))
            .map(|_| rng.gen_range(1..=255u8))
            .collect();
        OpenOptions::new()
            .write(true)
            .open(&tail)
            .unwrap()
            .write_all_at(&garbage, end)
            .unwrap();
        let (e, report) = reopen(dir.path());
        assert_eq!(report.bytes_truncated, garbage.len() as u64, "seed {seed}");
        assert!(report.records_truncated >= 1);
        assert_eq!(
            check_served(&all(&e)),
            (1..=60).collect::<Vec<_>>(),
            "seed {seed}"
        );
        drop(e);
        assert_prefix_after_tail_damage(dir.path(), 60, 60, seed);
    }
}

#[test]
fn zeroed_page_in_unsynced_tail() {
    for seed in seeds() {
        let dir = tempfile::tempdir().unwrap();
        let (tail, synced_end) = build(dir.path(), 40, 120);
        let end = data_end(&tail);
        let mut rng = StdRng::seed_from_u64(seed);
        let page = rng.gen_range(synced_end.div_ceil(4096)..=end / 4096) * 4096;
        let page = page.max(synced_end);
        OpenOptions::new()
            .write(true)
            .open(&tail)
            .unwrap()
            .write_all_at(&[0u8; 4096], page)
            .unwrap();
        assert_prefix_after_tail_damage(dir.path(), 40, 120, seed);
    }
}

#[test]
fn bit_flips_in_unsynced_tail() {
    for seed in seeds() {
        let dir = tempfile::tempdir().unwrap();
        let (tail, synced_end) = build(dir.path(), 40, 90);
        let end = data_end(&tail);
        let mut rng = StdRng::seed_from_u64(seed);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&tail)
            .unwrap();
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(synced_end..end);
            let mut b = [0u8];
            f.read_exact_at(&mut b, at).unwrap();
            b[0] ^= 1 << rng.gen_range(0..8);
            f.write_all_at(&b, at).unwrap();
        }
        assert_prefix_after_tail_damage(dir.path(), 40, 90, seed);
    }
}

#[test]
fn bit_flip_in_durable_tail_is_reported_not_truncated() {
    let mut reported = 0;
    for seed in seeds() {
        let crash = seed % 2 == 0;
        let dir = tempfile::tempdir().unwrap();
        let (mut e, _) = Engine::open(dir.path(), options(FsyncPolicy::Always, 1 << 20)).unwrap();
        e.create_stream(0, b"s").unwrap();
        add_range(&mut e, 1, 80);
        e.close().unwrap();
        let tail = segments(dir.path()).pop().unwrap();
        let end = data_end(&tail);
        let mut rng = StdRng::seed_from_u64(seed);
        let at = rng.gen_range(end / 4..end * 3 / 4);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&tail)
            .unwrap();
        let mut b = [0u8];
        f.read_exact_at(&mut b, at).unwrap();
        b[0] ^= 1 << rng.gen_range(0..8);
        f.write_all_at(&b, at).unwrap();
        if crash {
            // Unclean shutdown (no saved tail index): the tail is replayed at open.
            std::fs::remove_file(stream_dir(dir.path()).join(format!("{:016x}.idx", 0))).unwrap();
        }
        let (mut e, report) = reopen(dir.path());
        let (ids, damaged) = read_each(&e, 80);
        assert_eq!(
            report.bytes_truncated, 0,
            "seed {seed}: durable data truncated"
        );
        if ids.len() < 80 {
            // The damaged entry is not served (reading it reports corruption), everything
            // after it still is.
            assert_eq!(
                ids.len(),
                79,
                "seed {seed}: more than the damaged entry lost"
            );
            assert_eq!(damaged.len(), 1, "seed {seed}");
            assert!(
                matches!(
                    e.stream(0, b"s").unwrap().range(
                        Bound::Unbounded,
                        Bound::Unbounded,
                        usize::MAX,
                        Direction::Forward
                    ),
                    Err(sluice_engine::Error::Corruption { .. })
                ),
                "seed {seed}: a read over the damage must report it"
            );
            if crash {
                assert_eq!(report.corruptions.len(), 1, "seed {seed}: {report:?}");
            } else {
                // A clean tail is not replayed: reads find, skip and count the damage.
                assert!(e.stats().corrupt_records_skipped >= 1, "seed {seed}");
            }
            assert!(ids.contains(&80));
            reported += 1;
        }
        // Appending never overwrites the entries after the damage.
        add_range(&mut e, 81, 85);
        e.close().unwrap();
        let (e, _) = reopen(dir.path());
        let after = read_each(&e, 85).0;
        assert_eq!(after.len(), ids.len() + 5, "seed {seed}");
    }
    assert!(
        reported >= 6,
        "flips should mostly hit CRC-covered bytes ({reported})"
    );
}

#[test]
fn bit_flip_in_sealed_segment_is_never_served() {
    for seed in seeds() {
        let dir = tempfile::tempdir().unwrap();
        let (mut e, _) = Engine::open(dir.path(), options(FsyncPolicy::No, 4096)).unwrap();
        e.create_stream(0, b"s").unwrap();
        add_range(&mut e, 1, 200);
        e.close().unwrap();
        let segs = segments(dir.path());
        assert!(segs.len() > 3);
        let mut rng = StdRng::seed_from_u64(seed);
        let victim = &segs[rng.gen_range(0..segs.len() - 1)];
        let end = data_end(victim);
        let at = rng.gen_range(200..end);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(victim)
            .unwrap();
        let mut b = [0u8];
        f.read_exact_at(&mut b, at).unwrap();
        b[0] ^= 1 << rng.gen_range(0..8);
        f.write_all_at(&b, at).unwrap();
        let (e, _) = Engine::open(dir.path(), options(FsyncPolicy::No, 4096)).unwrap();
        let (ids, damaged) = read_each(&e, 200);
        assert!(
            ids.len() >= 199 && ids.len() + damaged.len() == 200,
            "seed {seed}: {} entries served, {damaged:?} damaged",
            ids.len()
        );
        // A read over the damage reports it (every other entry is served, see above).
        let s = e.stream(0, b"s").unwrap();
        for dir in [Direction::Forward, Direction::Backward] {
            let whole = s.range(Bound::Unbounded, Bound::Unbounded, usize::MAX, dir);
            match whole {
                Ok(all) => {
                    assert!(damaged.is_empty(), "seed {seed}: {dir:?} hid the damage");
                    let mut got = check_served(&all);
                    got.sort();
                    assert_eq!(got, ids, "seed {seed}: {dir:?}");
                }
                Err(Error::Corruption { .. }) => {
                    assert!(!damaged.is_empty(), "seed {seed}: {dir:?}")
                }
                Err(other) => panic!("seed {seed}: {dir:?}: {other}"),
            }
        }
    }
}

#[test]
fn lost_tail_never_moves_ids_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let (tail, synced_end) = build(dir.path(), 40, 90);
    OpenOptions::new()
        .write(true)
        .open(&tail)
        .unwrap()
        .set_len(synced_end)
        .unwrap();
    let (mut e, _) = reopen(dir.path());
    let s = e.stream_mut(0, b"s").unwrap();
    assert_eq!(s.last_id(), StreamId::new(40, 0));
    assert!(matches!(
        s.add(IdSpec::Explicit(StreamId::new(40, 0)), &fields(40), 0),
        Err(Error::IdTooSmall)
    ));
    let (id, _) = s.add(IdSpec::Auto, &fields(1), 0).unwrap();
    assert!(id > StreamId::new(40, 0));
}

#[test]
fn deletes_survive_crash_and_roll() {
    let dir = tempfile::tempdir().unwrap();
    let o = options(FsyncPolicy::EverySec, 4096);
    let (mut e, _) = Engine::open(dir.path(), o.clone()).unwrap();
    e.create_stream(0, b"s").unwrap();
    add_range(&mut e, 1, 20);
    let s = e.stream_mut(0, b"s").unwrap();
    s.delete(&[StreamId::new(3, 0), StreamId::new(10, 0)])
        .unwrap();
    drop(e); // process crash: the delete records are in the tail, flags maybe not written
    let (mut e, _) = Engine::open(dir.path(), o.clone()).unwrap();
    let ids = check_served(&all(&e));
    assert!(!ids.contains(&3) && !ids.contains(&10) && ids.len() == 18);
    // Roll past the segment holding the deletes: they must stay deleted (flags durable).
    add_range(&mut e, 21, 200);
    e.stream_mut(0, b"s")
        .unwrap()
        .delete(&[StreamId::new(150, 0)])
        .unwrap();
    drop(e);
    let (e, _) = Engine::open(dir.path(), o).unwrap();
    let ids = check_served(&all(&e));
    assert_eq!(ids.len(), 197);
    assert!(!ids.contains(&3) && !ids.contains(&10) && !ids.contains(&150));
    assert_eq!(e.stream(0, b"s").unwrap().len(), 197);
}

#[test]
fn failed_fsync_poisons_writes_but_not_reads() {
    let dir = tempfile::tempdir().unwrap();
    let fail_sync = Arc::new(AtomicBool::new(false));
    let fail_write = Arc::new(AtomicBool::new(false));
    let vfs = Arc::new(FailingVfs {
        fail_sync: fail_sync.clone(),
        fail_write: fail_write.clone(),
    });
    let (mut e, _) =
        Engine::open_with(vfs, dir.path(), options(FsyncPolicy::Always, 1 << 20)).unwrap();
    let d = e.durability();
    let (s, _) = e.create_stream(0, b"s").unwrap();
    let (_, ok) = s
        .add(IdSpec::Explicit(StreamId::new(1, 0)), &fields(1), 0)
        .unwrap();
    d.wait(ok).unwrap();
    fail_sync.store(true, Ordering::SeqCst);
    let s = e.stream_mut(0, b"s").unwrap();
    let (_, lsn) = s
        .add(IdSpec::Explicit(StreamId::new(2, 0)), &fields(2), 0)
        .unwrap();
    assert!(matches!(d.wait(lsn), Err(Error::Poisoned(_))));
    assert!(!d.is_durable(lsn));
    assert!(d.poisoned().is_some());
    // Never retried: even once the disk "recovers", writes stay refused.
    fail_sync.store(false, Ordering::SeqCst);
    let s = e.stream_mut(0, b"s").unwrap();
    assert!(matches!(
        s.add(IdSpec::Auto, &fields(3), 0),
        Err(Error::Poisoned(_))
    ));
    assert!(matches!(
        s.delete(&[StreamId::new(1, 0)]),
        Err(Error::Poisoned(_))
    ));
    assert!(matches!(e.create_stream(0, b"t"), Err(Error::Poisoned(_))));
    assert!(e.sync_all().is_err());
    assert_eq!(check_served(&all(&e)), vec![1, 2]);
    assert!(e.stats().poisoned.is_some() && !e.stats().last_fsync_ok);
}

/// An `everysec` engine in `dir` whose writes fail (ENOSPC) while the returned switch is on.
fn open_failing_writes(dir: &Path) -> (Engine, Arc<AtomicBool>) {
    let fail_write = Arc::new(AtomicBool::new(false));
    let vfs = Arc::new(FailingVfs {
        fail_write: fail_write.clone(),
        ..FailingVfs::default()
    });
    let (e, _) =
        Engine::open_with(vfs, dir, options(FsyncPolicy::EverySec, 1 << 20)).expect("open");
    (e, fail_write)
}

#[test]
fn failed_write_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let (mut e, fail_write) = open_failing_writes(dir.path());
    e.create_stream(0, b"s").unwrap();
    add_range(&mut e, 1, 5);
    fail_write.store(true, Ordering::SeqCst);
    let s = e.stream_mut(0, b"s").unwrap();
    assert!(matches!(
        s.add(IdSpec::Auto, &fields(9), 0),
        Err(Error::Io { .. })
    ));
    fail_write.store(false, Ordering::SeqCst);
    let s = e.stream_mut(0, b"s").unwrap();
    assert!(matches!(
        s.add(IdSpec::Auto, &fields(9), 0),
        Err(Error::Poisoned(_))
    ));
    assert_eq!(check_served(&all(&e)), vec![1, 2, 3, 4, 5]);
    drop(e);
    // Reopening clears the poisoning (a new process) and recovers what was written.
    let (e, report) = Engine::open(dir.path(), options(FsyncPolicy::EverySec, 1 << 20)).unwrap();
    assert!(report.corruptions.is_empty());
    assert_eq!(check_served(&all(&e)), vec![1, 2, 3, 4, 5]);
}

/// Under write-behind a failed write happens at the flush, after the appends it carried
/// joined the in-memory state: that flush and every later one fail (so the server never
/// acknowledges them, nor any reply that may reflect them), appends are refused, and a
/// restart recovers what the disk holds.
#[test]
fn failed_buffered_write_fails_every_later_flush() {
    let dir = tempfile::tempdir().unwrap();
    let (mut e, fail_write) = open_failing_writes(dir.path());
    e.set_write_behind(true).unwrap();
    e.create_stream(0, b"s").unwrap();
    add_range(&mut e, 1, 3);
    e.flush_writes().unwrap();
    add_range(&mut e, 4, 5);
    fail_write.store(true, Ordering::SeqCst);
    assert!(matches!(e.flush_writes(), Err(Error::Io { .. })));
    fail_write.store(false, Ordering::SeqCst);
    assert!(matches!(e.flush_writes(), Err(Error::Poisoned(_))));
    let s = e.stream_mut(0, b"s").unwrap();
    assert!(matches!(
        s.add(IdSpec::Auto, &fields(9), 0),
        Err(Error::Poisoned(_))
    ));
    drop(e);
    let (e, report) = Engine::open(dir.path(), options(FsyncPolicy::EverySec, 1 << 20)).unwrap();
    assert!(report.corruptions.is_empty(), "{report:?}");
    assert_eq!(check_served(&all(&e)), vec![1, 2, 3]);
}
