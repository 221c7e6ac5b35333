//! Engine hot paths: single and batched appends, 100-entry range reads (warm and cold),
//! and opening a directory holding 10 MiB vs 1 GiB of stream data.
//!
//! `cargo bench -p sluice-bench --bench engine` (add `-- open` etc. to filter). The open
//! datasets are built once per run in a temp directory.

use std::{ops::Bound, path::Path, time::Duration};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::{rngs::StdRng, Rng, SeedableRng};
use sluice_engine::{Direction, Engine, FsyncPolicy, IdSpec, Options, StreamId};

fn opts(fsync: FsyncPolicy, segment_size: u64) -> Options {
    Options {
        fsync,
        segment_size,
        databases: 1,
    }
}

fn fields(size: usize) -> Vec<(Bytes, Bytes)> {
    vec![
        (
            Bytes::from_static(b"sensor"),
            Bytes::from_static(b"temperature-17"),
        ),
        (
            Bytes::from_static(b"payload"),
            Bytes::from(vec![b'x'; size]),
        ),
    ]
}

fn append(c: &mut Criterion) {
    let f = fields(100);
    let mut g = c.benchmark_group("append");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    for policy in [FsyncPolicy::No, FsyncPolicy::Always] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut e, _) = Engine::open(dir.path(), opts(policy, 64 << 20)).expect("open");
        e.create_stream(0, b"s").expect("create");
        let d = e.durability();
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("single/{}", policy.as_str()), |b| {
            b.iter(|| {
                let s = e.stream_mut(0, b"s").expect("stream");
                let (_, lsn) = s.add(IdSpec::Auto, &f, 0).expect("add");
                d.wait(lsn).expect("durable");
            })
        });
        g.throughput(Throughput::Elements(100));
        g.bench_function(format!("batch100/{}", policy.as_str()), |b| {
            b.iter(|| {
                let s = e.stream_mut(0, b"s").expect("stream");
                let mut last = Default::default();
                for _ in 0..100 {
                    last = s.add(IdSpec::Auto, &f, 0).expect("add").1;
                }
                // One wait for the whole batch: group commit shares the fsync.
                d.wait(last).expect("durable");
            })
        });
        // What the server does with a pipelined run of XADDs: one write for the run.
        let run: Vec<(IdSpec, &[(Bytes, Bytes)])> =
            (0..100).map(|_| (IdSpec::Auto, &f[..])).collect();
        g.bench_function(format!("add_batch100/{}", policy.as_str()), |b| {
            b.iter(|| {
                let s = e.stream_mut(0, b"s").expect("stream");
                let (ids, lsn) = s.add_batch(&run, 0).expect("add_batch");
                assert!(ids.iter().all(Result::is_ok));
                d.wait(lsn).expect("durable");
            })
        });
        e.close().expect("close");
    }
    g.finish();
}

/// Fills stream `s` with `n` entries of `size`-byte payloads, IDs `1-0 ..= n-0`.
fn fill(dir: &Path, segment_size: u64, n: u64, size: usize) {
    let (mut e, _) = Engine::open(dir, opts(FsyncPolicy::No, segment_size)).expect("open");
    let (s, _) = e.create_stream(0, b"s").expect("create");
    let f = fields(size);
    for i in 1..=n {
        s.add(IdSpec::Explicit(StreamId::new(i, 0)), &f, 0)
            .expect("add");
    }
    e.close().expect("close");
}

fn range(c: &mut Criterion) {
    let n = 400_000u64;
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path(), 8 << 20, n, 100);
    let mut g = c.benchmark_group("range100");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(100));
    let mut rng = StdRng::seed_from_u64(7);
    {
        let (e, _) = Engine::open(dir.path(), opts(FsyncPolicy::No, 8 << 20)).expect("open");
        let s = e.stream(0, b"s").expect("stream");
        g.bench_function("warm", |b| {
            b.iter(|| {
                let at = StreamId::new(rng.gen_range(1..n - 100), 0);
                let r = s
                    .range(
                        Bound::Included(at),
                        Bound::Unbounded,
                        100,
                        Direction::Forward,
                    )
                    .expect("range");
                assert_eq!(r.len(), 100);
            })
        });
        g.bench_function("warm_backward", |b| {
            b.iter(|| {
                let at = StreamId::new(rng.gen_range(101..n), 0);
                let r = s
                    .range(
                        Bound::Unbounded,
                        Bound::Included(at),
                        100,
                        Direction::Backward,
                    )
                    .expect("range");
                assert_eq!(r.len(), 100);
            })
        });
    }
    let stream_dir = dir.path().join("db0").join("ks");
    g.sample_size(20);
    g.bench_function("cold", |b| {
        b.iter_batched(
            || {
                for f in std::fs::read_dir(&stream_dir).expect("list") {
                    sluice_engine::io::evict_from_page_cache(&f.expect("entry").path())
                        .expect("evict");
                }
                Engine::open(dir.path(), opts(FsyncPolicy::No, 8 << 20))
                    .expect("open")
                    .0
            },
            |e| {
                // An old entry: its sealed segment is opened, mapped and indexed on demand.
                let at = StreamId::new(rng.gen_range(1..n / 2), 0);
                let r = e
                    .stream(0, b"s")
                    .expect("stream")
                    .range(
                        Bound::Included(at),
                        Bound::Unbounded,
                        100,
                        Direction::Forward,
                    )
                    .expect("range");
                assert_eq!(r.len(), 100);
                e
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn open(c: &mut Criterion) {
    let mut g = c.benchmark_group("open");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    // ~1 KiB entries with the default 64 MiB segments.
    for (name, bytes) in [("10MiB", 10u64 << 20), ("1GiB", 1u64 << 30)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let size = 1000;
        fill(dir.path(), 64 << 20, bytes / (size as u64 + 60), size);
        g.bench_function(format!("clean/{name}"), |b| {
            b.iter(|| {
                let (e, report) =
                    Engine::open(dir.path(), opts(FsyncPolicy::EverySec, 64 << 20)).expect("open");
                assert_eq!(report.streams, 1);
                assert_eq!(report.tail_bytes_replayed, 0);
                drop(e);
            })
        });
        // As after a crash: without the saved tail index the tail segment is replayed
        // (dropping the engine without `close` keeps it that way for every iteration).
        let stream_dir = dir.path().join("db0").join("ks");
        for f in std::fs::read_dir(&stream_dir).expect("list") {
            let p = f.expect("entry").path();
            if p.extension().is_some_and(|x| x == "idx") {
                std::fs::remove_file(p).expect("remove index");
            }
        }
        g.bench_function(format!("after_crash/{name}"), |b| {
            b.iter(|| {
                let (e, report) =
                    Engine::open(dir.path(), opts(FsyncPolicy::EverySec, 64 << 20)).expect("open");
                assert!(report.tail_bytes_replayed > 0);
                drop(e);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, append, range, open);
criterion_main!(benches);
