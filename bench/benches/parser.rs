//! Request-parser throughput: Sluice's bounded, non-recursive `resp::Parser` against
//! redis-protocol 6's RESP2 decoder, on typical XADD and XREADGROUP requests (pipelined
//! batches, so per-call overhead and per-byte cost both show). Reports bytes/s.

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sluice_server::resp::{Limits, Parser};

fn encode(words: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for w in words {
        out.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
        out.extend_from_slice(w);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn workloads() -> Vec<(&'static str, Vec<u8>)> {
    let payload = vec![b'x'; 100];
    let xadd = encode(&[
        b"XADD",
        b"orders:eu",
        b"MAXLEN",
        b"~",
        b"1000000",
        b"*",
        b"customer",
        b"4711",
        b"amount",
        b"129.95",
        b"payload",
        &payload,
    ]);
    let xreadgroup = encode(&[
        b"XREADGROUP",
        b"GROUP",
        b"billing",
        b"worker-17",
        b"COUNT",
        b"100",
        b"BLOCK",
        b"2000",
        b"STREAMS",
        b"orders:eu",
        b"orders:us",
        b">",
        b">",
    ]);
    vec![
        ("xadd", xadd.repeat(100)),
        ("xreadgroup", xreadgroup.repeat(100)),
    ]
}

fn bench(c: &mut Criterion) {
    for (name, batch) in workloads() {
        let mut group = c.benchmark_group(format!("parse_{name}_x100"));
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function("sluice", |b| {
            let limits = Limits::default();
            b.iter(|| {
                let mut parser = Parser::new();
                let mut buf = BytesMut::from(&batch[..]);
                let mut n = 0;
                while let Ok(Some(args)) = parser.next(&mut buf, &limits) {
                    n += args.len();
                }
                black_box(n)
            })
        });
        group.bench_function("redis_protocol", |b| {
            b.iter(|| {
                let mut buf = BytesMut::from(&batch[..]);
                let mut n = 0;
                while let Ok(Some((frame, _, _))) =
                    redis_protocol::resp2::decode::decode_bytes_mut(&mut buf)
                {
                    n += 1;
                    black_box(frame);
                }
                black_box(n)
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
