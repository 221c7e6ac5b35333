//! `xreadgroup`: consumers of one group read `COUNT n` new entries and acknowledge them,
//! the acknowledgement of one batch pipelined with the read of the next.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::client::Conn;
use crate::figure::Figures;
use crate::resp::Value;
use crate::workload::{emit_throughput, prefill, run_clients, ClientStats, EntryShape, Limits};
use crate::{Error, Result};

pub struct ReadGroupOptions {
    /// Consumers, one connection each.
    pub consumers: usize,
    pub duration: Duration,
    pub key: String,
    pub group: String,
    pub prefill: u64,
    /// Entries per read (`COUNT`).
    pub count: u64,
    pub shape: EntryShape,
}

/// The entry IDs of an `XREADGROUP` reply: `[[key, [[id, fields], ...]]]`, or none for nil.
fn entry_ids(reply: &Value) -> Result<Vec<Vec<u8>>> {
    let bad = || Error::Msg(format!("unexpected XREADGROUP reply {reply:?}"));
    let streams = match reply {
        Value::Null => return Ok(Vec::new()),
        Value::Array(streams) => streams,
        _ => return Err(bad()),
    };
    let mut ids = Vec::new();
    for stream in streams {
        let entries = stream.as_array().and_then(|s| s.get(1)).ok_or_else(bad)?;
        for entry in entries.as_array().ok_or_else(bad)? {
            let id = entry
                .as_array()
                .and_then(|e| e.first())
                .and_then(Value::as_bytes);
            ids.push(id.ok_or_else(bad)?.to_vec());
        }
    }
    Ok(ids)
}

pub async fn run(addr: SocketAddr, opts: &ReadGroupOptions, tags: &[String]) -> Result<()> {
    prefill(addr, &opts.key, opts.prefill, &opts.shape).await?;
    let mut admin = Conn::connect(addr).await?;
    admin
        .call(&[
            "XGROUP",
            "CREATE",
            opts.key.as_str(),
            opts.group.as_str(),
            "0",
        ])
        .await?;
    // Reads are bounded by the stream's length; the request budget only guards the loop.
    let limits = Limits::new(opts.duration, None);
    let count = opts.count.max(1);
    let (key, group) = (opts.key.clone(), opts.group.clone());
    let (stats, elapsed) = run_clients(addr, opts.consumers.max(1), |i, mut conn| {
        let limits = limits.clone();
        let (key, group) = (key.clone(), group.clone());
        async move {
            let consumer = format!("consumer-{i}");
            let count_arg = count.to_string();
            let mut stats = ClientStats::default();
            let mut unacked: Vec<Vec<u8>> = Vec::new();
            loop {
                let done = limits.expired();
                if !unacked.is_empty() {
                    let mut args: Vec<&[u8]> = vec![b"XACK", key.as_bytes(), group.as_bytes()];
                    args.extend(unacked.iter().map(Vec::as_slice));
                    conn.queue(&args);
                }
                if !done {
                    conn.queue(&[
                        "XREADGROUP",
                        "GROUP",
                        &group,
                        &consumer,
                        "COUNT",
                        &count_arg,
                        "STREAMS",
                        &key,
                        ">",
                    ]);
                }
                let sent = Instant::now();
                conn.flush().await?;
                if !unacked.is_empty() {
                    let acked = conn.read_value().await?;
                    if acked.as_int() == Some(unacked.len() as i64) {
                        stats.ops += 1;
                        stats.entries += unacked.len() as u64;
                    } else {
                        stats.error(format!("XACK replied {acked:?}"));
                    }
                    unacked.clear();
                }
                if done {
                    break;
                }
                let reply = conn.read_value().await?;
                stats.latency.record(sent.elapsed());
                if let Value::Error(e) = &reply {
                    stats.error(String::from_utf8_lossy(e).into_owned());
                    break;
                }
                stats.ops += 1;
                unacked = entry_ids(&reply)?;
                if unacked.is_empty() {
                    break; // the group has consumed the whole stream
                }
            }
            Ok(stats)
        }
    })
    .await?;
    let pending = admin
        .call(&["XPENDING", opts.key.as_str(), opts.group.as_str()])
        .await?;
    let pending = pending
        .as_array()
        .and_then(|p| p.first())
        .and_then(Value::as_int);
    let mut params = vec![
        ("consumers", opts.consumers.max(1).to_string()),
        ("count", count.to_string()),
        ("prefill", opts.prefill.to_string()),
    ];
    params.extend(opts.shape.describe());
    let fig = Figures::new("xreadgroup", &params, tags);
    if ran_dry(elapsed, opts.duration) {
        eprintln!(
            "xreadgroup: the group consumed all {} entries after {:.2} s of {} s; \
             raise --prefill to measure over the whole duration",
            opts.prefill,
            elapsed.as_secs_f64(),
            opts.duration.as_secs_f64()
        );
    }
    emit_throughput(&fig, &stats, elapsed);
    fig.emit("pending_after", pending.unwrap_or(-1) as f64);
    Ok(())
}

/// Whether the consumers stopped well before the duration because the stream ran out: the
/// figures then cover a short, warm-up-heavy run.
fn ran_dry(elapsed: Duration, duration: Duration) -> bool {
    elapsed.as_secs_f64() < duration.as_secs_f64() * 0.9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_ends_early_is_reported() {
        let five = Duration::from_secs(5);
        assert!(ran_dry(Duration::from_millis(800), five));
        assert!(!ran_dry(Duration::from_millis(4_990), five));
        assert!(!ran_dry(Duration::from_millis(5_010), five));
    }

    #[test]
    fn ids_come_from_every_entry_of_every_stream() {
        let entry = |id: &str| {
            Value::Array(vec![
                Value::Bulk(id.as_bytes().to_vec()),
                Value::Array(vec![Value::Bulk(b"f".to_vec()), Value::Bulk(b"v".to_vec())]),
            ])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Bulk(b"s".to_vec()),
            Value::Array(vec![entry("1-0"), entry("2-0")]),
        ])]);
        assert_eq!(
            entry_ids(&reply).unwrap(),
            vec![b"1-0".to_vec(), b"2-0".to_vec()]
        );
        assert!(entry_ids(&Value::Null).unwrap().is_empty());
        assert!(entry_ids(&Value::Int(3)).is_err());
    }
}
