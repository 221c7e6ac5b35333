//! `xadd`: closed-loop pipelined `XADD key * field value ...` from many clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Conn;
use crate::figure::Figures;
use crate::resp::encode_command;
use crate::workload::{emit_throughput, run_clients, ClientStats, EntryShape, Limits};
use crate::Result;

pub struct XaddOptions {
    pub clients: usize,
    pub pipeline: usize,
    pub duration: Duration,
    pub requests: Option<u64>,
    /// Clients spread over this many streams (`key`, `key:1`, ...); 1 = all on one stream.
    pub streams: usize,
    pub key: String,
    pub shape: EntryShape,
    /// Delete the streams first so every run starts from empty streams.
    pub fresh: bool,
}

pub async fn run(addr: SocketAddr, opts: &XaddOptions, tags: &[String]) -> Result<()> {
    let streams = opts.streams.max(1);
    let key_of = |i: usize| {
        if i == 0 {
            opts.key.clone()
        } else {
            format!("{}:{i}", opts.key)
        }
    };
    if opts.fresh {
        let mut conn = Conn::connect(addr).await?;
        for s in 0..streams {
            conn.call(&["DEL".to_string(), key_of(s)]).await?;
        }
    }
    // Each stream's request is encoded once and copied into the pipeline.
    let mut requests = Vec::with_capacity(streams);
    let fields = opts.shape.args();
    for s in 0..streams {
        let key = key_of(s);
        let mut args: Vec<&[u8]> = vec![b"XADD", key.as_bytes(), b"*"];
        args.extend(fields.iter().map(Vec::as_slice));
        let mut encoded = Vec::new();
        encode_command(&mut encoded, &args);
        requests.push(encoded);
    }
    let requests = Arc::new(requests);
    let limits = Limits::new(opts.duration, opts.requests);
    let pipeline = opts.pipeline.max(1);
    let (stats, elapsed) = run_clients(addr, opts.clients.max(1), |i, mut conn| {
        let requests = Arc::clone(&requests);
        let limits = limits.clone();
        async move {
            let request = &requests[i % requests.len()];
            let mut stats = ClientStats::default();
            loop {
                let batch = limits.claim(pipeline);
                if batch == 0 {
                    break;
                }
                for _ in 0..batch {
                    conn.queue_raw(request);
                }
                let sent = Instant::now();
                conn.flush().await?;
                for _ in 0..batch {
                    let frame = conn.read_frame().await?;
                    if frame.kind == b'$' && frame.count == 0 {
                        stats.ops += 1;
                    } else {
                        stats.error(String::from_utf8_lossy(conn.last()).trim_end().to_string());
                    }
                }
                stats.latency.record(sent.elapsed());
            }
            Ok(stats)
        }
    })
    .await?;
    let mut params = vec![
        ("clients", opts.clients.max(1).to_string()),
        ("pipeline", pipeline.to_string()),
        ("streams", streams.to_string()),
    ];
    params.extend(opts.shape.describe());
    let fig = Figures::new("xadd", &params, tags);
    emit_throughput(&fig, &stats, elapsed);
    Ok(())
}
