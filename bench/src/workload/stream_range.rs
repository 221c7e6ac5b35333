//! `xrange` / `xrevrange`: reads of a fixed number of entries from random points of a
//! prefilled stream.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::client::Conn;
use crate::figure::Figures;
use crate::workload::{
    emit_throughput, prefill, run_clients, ClientStats, EntryShape, Limits, XorShift,
};
use crate::{Error, Result};

pub struct RangeOptions {
    pub reverse: bool,
    pub clients: usize,
    pub pipeline: usize,
    pub duration: Duration,
    pub requests: Option<u64>,
    pub key: String,
    /// Entries in the stream; IDs are `1-0 ..= N-0`.
    pub prefill: u64,
    /// Entries per read (`COUNT`).
    pub count: u64,
    pub shape: EntryShape,
    /// Keep an existing stream of the right length instead of writing it again.
    pub reuse: bool,
}

pub async fn run(addr: SocketAddr, opts: &RangeOptions, tags: &[String]) -> Result<()> {
    if opts.prefill < opts.count.max(1) {
        return Err(Error::Msg("--prefill must be at least --count".into()));
    }
    let mut conn = Conn::connect(addr).await?;
    let len = conn
        .call(&["XLEN", opts.key.as_str()])
        .await?
        .as_int()
        .unwrap_or(-1);
    if !opts.reuse || len != opts.prefill as i64 {
        prefill(addr, &opts.key, opts.prefill, &opts.shape).await?;
    }
    drop(conn);
    let limits = Limits::new(opts.duration, opts.requests);
    let pipeline = opts.pipeline.max(1);
    let (count, n, reverse) = (opts.count.max(1), opts.prefill, opts.reverse);
    let key = opts.key.clone();
    let (stats, elapsed) = run_clients(addr, opts.clients.max(1), |i, mut conn| {
        let limits = limits.clone();
        let key = key.clone();
        async move {
            let mut rng = XorShift::new(i as u64 + 1);
            let mut stats = ClientStats::default();
            let count_arg = count.to_string();
            loop {
                let batch = limits.claim(pipeline);
                if batch == 0 {
                    break;
                }
                for _ in 0..batch {
                    if reverse {
                        let end = format!("{}-0", rng.range(count, n));
                        conn.queue(&["XREVRANGE", &key, &end, "-", "COUNT", &count_arg]);
                    } else {
                        let start = format!("{}-0", rng.range(1, n - count + 1));
                        conn.queue(&["XRANGE", &key, &start, "+", "COUNT", &count_arg]);
                    }
                }
                let sent = Instant::now();
                conn.flush().await?;
                for _ in 0..batch {
                    let frame = conn.read_frame().await?;
                    if frame.kind == b'*' && frame.count == count as i64 {
                        stats.ops += 1;
                        stats.entries += count;
                    } else {
                        let reply = String::from_utf8_lossy(conn.last());
                        stats.error(reply.chars().take(200).collect());
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
        ("count", count.to_string()),
        ("prefill", n.to_string()),
    ];
    params.extend(opts.shape.describe());
    let name = if reverse { "xrevrange" } else { "xrange" };
    let fig = Figures::new(name, &params, tags);
    emit_throughput(&fig, &stats, elapsed);
    Ok(())
}
