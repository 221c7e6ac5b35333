//! `xread-latency`: time from sending an `XADD` to a blocked `XREAD` reader holding the entry.
//!
//! Readers block with `XREAD BLOCK` on the last ID they saw; the writer adds one entry
//! carrying its send time, waits until every reader has it and has blocked again (plus a
//! short gap so the server has registered the new `XREAD`), then adds the next.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::client::Conn;
use crate::figure::Figures;
use crate::resp::Value;
use crate::stats::Latencies;
use crate::{Error, Result};

pub struct XreadLatencyOptions {
    pub readers: usize,
    pub samples: u64,
    pub duration: Duration,
    /// Pause between a reader re-blocking and the next XADD.
    pub gap: Duration,
    pub key: String,
}

/// How long a reader blocks before deciding the writer is gone.
const BLOCK_MS: &str = "10000";

/// The `(id, t)` pairs of an `XREAD` reply whose entries carry `t <nanos>` as first field.
fn entries(reply: &Value) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let bad = || Error::Msg(format!("unexpected XREAD reply {reply:?}"));
    let mut out = Vec::new();
    for stream in reply.as_array().ok_or_else(bad)? {
        let list = stream
            .as_array()
            .and_then(|s| s.get(1))
            .and_then(Value::as_array);
        for entry in list.ok_or_else(bad)? {
            let entry = entry.as_array().ok_or_else(bad)?;
            let id = entry.first().and_then(Value::as_bytes).ok_or_else(bad)?;
            let fields = entry.get(1).and_then(Value::as_array).ok_or_else(bad)?;
            let t = fields.get(1).and_then(Value::as_bytes).ok_or_else(bad)?;
            out.push((id.to_vec(), t.to_vec()));
        }
    }
    Ok(out)
}

fn parse_nanos(t: &[u8]) -> Option<u64> {
    std::str::from_utf8(t).ok()?.parse().ok()
}

pub async fn run(addr: SocketAddr, opts: &XreadLatencyOptions, tags: &[String]) -> Result<()> {
    let base = Instant::now();
    let mut writer = Conn::connect(addr).await?;
    writer.call(&["DEL", opts.key.as_str()]).await?;
    let seed = writer
        .call(&["XADD", opts.key.as_str(), "*", "t", "0"])
        .await?;
    let seed = seed
        .as_bytes()
        .ok_or_else(|| Error::Msg("XADD gave no ID".into()))?
        .to_vec();
    let readers = opts.readers.max(1);
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(readers * 2);
    let mut tasks = Vec::with_capacity(readers);
    for _ in 0..readers {
        let mut conn = Conn::connect(addr).await?;
        let (key, ready, mut last) = (opts.key.clone(), ready_tx.clone(), seed.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Latencies::new();
            loop {
                let id = last.clone();
                conn.queue(&[
                    b"XREAD".as_slice(),
                    b"BLOCK",
                    BLOCK_MS.as_bytes(),
                    b"STREAMS",
                    key.as_bytes(),
                    &id,
                ]);
                conn.flush().await?;
                if ready.send(()).await.is_err() {
                    return Ok::<Latencies, Error>(lat);
                }
                let reply = conn.read_value().await?;
                let now = base.elapsed().as_nanos() as u64;
                if reply == Value::Null {
                    return Err(Error::Msg("XREAD timed out waiting for the writer".into()));
                }
                for (id, t) in entries(&reply)? {
                    if t == b"stop" {
                        return Ok(lat);
                    }
                    let sent = parse_nanos(&t).ok_or_else(|| Error::Msg("bad t field".into()))?;
                    lat.record_nanos(now.saturating_sub(sent));
                    last = id;
                }
            }
        }));
    }
    drop(ready_tx);
    let deadline = Instant::now() + opts.duration.min(super::MAX_DURATION);
    let mut written = 0u64;
    while written < opts.samples && Instant::now() < deadline {
        for _ in 0..readers {
            ready_rx
                .recv()
                .await
                .ok_or_else(|| Error::Msg("a reader stopped early".into()))?;
        }
        tokio::time::sleep(opts.gap).await;
        let t = base.elapsed().as_nanos().to_string();
        writer
            .call(&["XADD", opts.key.as_str(), "*", "t", t.as_str()])
            .await?;
        written += 1;
    }
    for _ in 0..readers {
        ready_rx
            .recv()
            .await
            .ok_or_else(|| Error::Msg("a reader stopped early".into()))?;
    }
    writer
        .call(&["XADD", opts.key.as_str(), "*", "t", "stop"])
        .await?;
    drop(ready_rx);
    let mut lat = Latencies::new();
    for task in tasks {
        let l = task
            .await
            .map_err(|e| Error::Msg(format!("reader failed: {e}")))??;
        lat.merge(&l);
    }
    let params = [
        ("readers", readers.to_string()),
        ("gap_us", opts.gap.as_micros().to_string()),
    ];
    let fig = Figures::new("xread-latency", &params, tags);
    fig.emit("samples", lat.count() as f64);
    fig.latencies("wake", &lat);
    Ok(())
}
