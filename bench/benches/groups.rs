//! Consumer-group benches: XREADGROUP + XACK of 100 entries per call, and a checkpoint of a
//! group holding one million pending entries.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use sluice_engine::{Engine, FsyncPolicy, GroupStart, IdSpec, Options, StreamId};

fn options() -> Options {
    Options {
        fsync: FsyncPolicy::No,
        ..Options::default()
    }
}

fn fields() -> Vec<(Bytes, Bytes)> {
    vec![(Bytes::from_static(b"field"), Bytes::from(vec![b'x'; 64]))]
}

fn read_and_ack_100(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut engine, _) = Engine::open(dir.path(), options()).expect("open");
    let (stream, _) = engine.create_stream(0, b"s").expect("create stream");
    stream
        .create_group(b"g", StreamId::MIN, Some(0))
        .expect("create group");
    let f = fields();
    let mut now = 1_700_000_000_000u64;
    c.bench_function("groups/xreadgroup+xack 100 entries", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let stream = engine.stream_mut(0, b"s").expect("stream");
                for _ in 0..100 {
                    now += 1;
                    stream.add(IdSpec::Auto, &f, now).expect("add");
                }
                let start = Instant::now();
                let (got, _) = stream
                    .read_group(b"g", b"consumer", GroupStart::New, Some(100), false, now)
                    .expect("read");
                let ids: Vec<StreamId> = got.iter().map(|d| d.id).collect();
                let (acked, _) = stream.ack(b"g", &ids).expect("ack");
                total += start.elapsed();
                assert_eq!(acked, 100);
            }
            total
        })
    });
}

fn checkpoint_1m_pending(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut engine, _) = Engine::open(dir.path(), options()).expect("open");
    let (stream, _) = engine.create_stream(0, b"s").expect("create stream");
    let f = fields();
    let mut now = 1_700_000_000_000u64;
    for i in 0..1_000_000u64 {
        if i % 16 == 0 {
            now += 1;
        }
        stream.add(IdSpec::Auto, &f, now).expect("add");
    }
    stream
        .create_group(b"g", StreamId::MIN, Some(0))
        .expect("create group");
    let anon_before = rss_anon_kib();
    for consumer in [&b"a"[..], b"b", b"c", b"d"] {
        for _ in 0..250 {
            let (got, _) = stream
                .read_group(b"g", consumer, GroupStart::New, Some(1000), false, now)
                .expect("read");
            assert_eq!(got.len(), 1000);
        }
    }
    if let (Some(a), Some(b)) = (anon_before, rss_anon_kib()) {
        println!(
            "RssAnon grew by {} KiB while 1M entries became pending (~{} bytes per entry)",
            b.saturating_sub(a),
            b.saturating_sub(a) * 1024 / 1_000_000
        );
    }
    let mut group = c.benchmark_group("groups");
    group.sample_size(10);
    group.bench_function("checkpoint 1M pending entries", |b| {
        b.iter(|| stream.checkpoint_groups().expect("checkpoint"))
    });
    group.finish();
    let ckpt = std::fs::read_dir(dir.path())
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|e| walk(&e.path()))
        .find(|p| p.file_name().is_some_and(|n| n == "groups.ckpt"));
    if let Some(p) = ckpt {
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        println!("checkpoint file: {len} bytes for 1M pending entries");
    }
}

/// Anonymous resident memory of this process (Linux), excluding mapped segment files.
fn rss_anon_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    if p.is_dir() {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|e| walk(&e.path()))
            .collect()
    } else {
        vec![p.to_path_buf()]
    }
}

criterion_group!(benches, read_and_ack_100, checkpoint_1m_pending);
criterion_main!(benches);
