//! `pubsub`: fan-out from publishers to channel subscribers and pattern subscribers,
//! measuring delivered messages/s and publish→receive latency from a timestamp in each
//! message.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::client::Conn;
use crate::figure::Figures;
use crate::stats::Latencies;
use crate::workload::{Limits, MAX_DURATION};
use crate::{Error, Result};

pub struct PubSubOptions {
    /// Connections with `SUBSCRIBE` to one channel each (spread over the channels).
    pub subscribers: usize,
    /// Connections holding the patterns (`PSUBSCRIBE`), the patterns dealt round-robin.
    pub psubscribers: usize,
    /// Patterns in total; `matching` of them match every channel, the rest none.
    pub patterns: usize,
    pub matching: usize,
    /// Subscribers that never read, to show whether one slow reader hurts the others.
    pub slow_subscribers: usize,
    pub channels: usize,
    pub publishers: usize,
    pub pipeline: usize,
    pub message_size: usize,
    pub duration: Duration,
    pub requests: Option<u64>,
    /// Messages per second over all publishers; 0 publishes as fast as replies come back.
    pub rate: u64,
    /// Publishing time before measuring: messages sent in it are delivered and checked for
    /// loss but count in no rate or latency, so a cold start's burst does not set the p99.
    pub warmup: Duration,
    /// How long to wait for in-flight messages after the last publish.
    pub drain: Duration,
}

/// Bytes of the send timestamp at the start of every message.
const STAMP: usize = 8;

fn channel(c: usize) -> String {
    format!("bench:chan:{c}")
}

/// Pattern `i`: the first `matching` match every channel (distinct texts, same cost: Redis
/// collapses repeated stars); the others match no channel.
fn pattern(i: usize, matching: usize) -> String {
    if i < matching {
        format!("bench:chan:{}", "*".repeat(i + 1))
    } else {
        format!("other:{i}:*")
    }
}

/// What one subscriber saw.
struct Received {
    /// Messages sent after the warm-up: their latency, number and the last one's arrival.
    latency: Latencies,
    count: u64,
    last: Option<Instant>,
    /// Every message, warm-up included (for the loss check).
    all: u64,
}

async fn subscribe(addr: SocketAddr, verb: &str, names: &[String]) -> Result<Conn> {
    let mut conn = Conn::connect(addr).await?;
    let mut args = vec![verb.to_string()];
    args.extend(names.iter().cloned());
    conn.queue(&args);
    conn.flush().await?;
    for _ in names {
        conn.expect_ok_frame().await?;
    }
    Ok(conn)
}

/// Reads messages until told to stop, recording the age of each one sent from `measured`
/// (ns after `base`) on: the time from its publish to the read that brought its last byte,
/// so the tool's own parsing is not counted.
async fn receive(
    mut conn: Conn,
    base: Instant,
    measured: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Result<Received> {
    let mut got = Received {
        latency: Latencies::new(),
        count: 0,
        last: None,
        all: 0,
    };
    let mut counted = 0;
    // One stop future for the whole run, not a new one per read.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            read = conn.fill() => read?,
            _ = &mut stopped => return Ok(got),
        }
        let now = Instant::now();
        let at = now.duration_since(base).as_nanos() as u64;
        let from = measured.load(Ordering::Relaxed);
        while let Some(frame) = conn.buffered_frame()? {
            let bytes = conn.last();
            let kind = frame.first_bulk.map(|r| &bytes[r]);
            if !matches!(kind, Some(b"message") | Some(b"pmessage")) {
                continue;
            }
            let payload = frame.last_bulk.map(|r| &bytes[r]).unwrap_or_default();
            let stamp: [u8; STAMP] = payload
                .get(..STAMP)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| Error::Msg("message without timestamp".into()))?;
            let sent = u64::from_le_bytes(stamp);
            got.all += 1;
            if sent >= from {
                got.latency.record_nanos(at.saturating_sub(sent));
                got.count += 1;
                got.last = Some(now);
            }
        }
        // One shared counter update per read, not per message: the readers run on several
        // threads and would otherwise contend on it at every delivery.
        total.fetch_add(got.all - counted, Ordering::Relaxed);
        counted = got.all;
    }
}

pub async fn run(addr: SocketAddr, opts: &PubSubOptions, tags: &[String]) -> Result<()> {
    let channels = opts.channels.max(1);
    let matching = opts.matching.min(opts.patterns);
    let base = Instant::now();
    let total = Arc::new(AtomicU64::new(0));
    // Until publishing starts, no message counts.
    let measured = Arc::new(AtomicU64::new(u64::MAX));
    let (stop_tx, stop_rx) = watch::channel(false);
    let listen = |conn| {
        let (measured, total, stop) = (measured.clone(), total.clone(), stop_rx.clone());
        tokio::spawn(receive(conn, base, measured, total, stop))
    };
    let mut listeners = Vec::new();
    let mut subs_on = vec![0u64; channels];
    for i in 0..opts.subscribers {
        subs_on[i % channels] += 1;
        let conn = subscribe(addr, "SUBSCRIBE", &[channel(i % channels)]).await?;
        listeners.push((true, listen(conn)));
    }
    let holders = opts.psubscribers.max(1).min(opts.patterns.max(1));
    if opts.patterns > 0 {
        for j in 0..holders {
            let mine: Vec<String> = (j..opts.patterns)
                .step_by(holders)
                .map(|i| pattern(i, matching))
                .collect();
            let conn = subscribe(addr, "PSUBSCRIBE", &mine).await?;
            listeners.push((false, listen(conn)));
        }
    }
    let mut slow = Vec::new();
    for i in 0..opts.slow_subscribers {
        slow.push(subscribe(addr, "SUBSCRIBE", &[channel(i % channels)]).await?);
    }

    let warmup = opts.warmup.min(MAX_DURATION);
    let limits = Limits::new(warmup + opts.duration, opts.requests);
    let pipeline = opts.pipeline.max(1);
    let publishers = opts.publishers.max(1);
    let size = opts.message_size.max(STAMP);
    let start = Instant::now();
    let measure_start = start + warmup;
    let from = measure_start.duration_since(base).as_nanos() as u64;
    measured.store(from, Ordering::Relaxed);
    let mut pubs = Vec::new();
    for q in 0..publishers {
        let mut conn = Conn::connect(addr).await?;
        let limits = limits.clone();
        let rate = opts.rate as f64 / publishers as f64;
        pubs.push(tokio::spawn(async move {
            let names: Vec<String> = (0..channels).map(channel).collect();
            let mut payload = vec![b'p'; size];
            let mut per_channel = vec![0u64; channels];
            let mut counted = 0u64;
            let mut batch_latency = Latencies::new();
            let mut next_channel = q % channels;
            let mut batches = 0u64;
            loop {
                let batch = limits.claim(pipeline);
                if batch == 0 {
                    break;
                }
                if rate > 0.0 {
                    let due =
                        start + Duration::from_secs_f64(batches as f64 * pipeline as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                batches += 1;
                let mut measuring = false;
                for _ in 0..batch {
                    let now = base.elapsed().as_nanos() as u64;
                    measuring = now >= from;
                    counted += u64::from(measuring);
                    payload[..STAMP].copy_from_slice(&now.to_le_bytes());
                    conn.queue(&[
                        b"PUBLISH".as_slice(),
                        names[next_channel].as_bytes(),
                        &payload,
                    ]);
                    per_channel[next_channel] += 1;
                    next_channel = (next_channel + 1) % channels;
                }
                let sent = Instant::now();
                conn.flush().await?;
                for _ in 0..batch {
                    conn.expect_ok_frame().await?;
                }
                if measuring {
                    batch_latency.record(sent.elapsed());
                }
            }
            Ok::<_, Error>((per_channel, counted, batch_latency))
        }));
    }
    let mut published = vec![0u64; channels];
    let mut published_measured = 0u64;
    let mut publish_latency = Latencies::new();
    for p in pubs {
        let (per_channel, counted, lat) = p
            .await
            .map_err(|e| Error::Msg(format!("publisher: {e}")))??;
        for (sum, n) in published.iter_mut().zip(per_channel) {
            *sum += n;
        }
        published_measured += counted;
        publish_latency.merge(&lat);
    }
    let publish_elapsed = measure_start.elapsed();
    let expected: u64 = published
        .iter()
        .zip(&subs_on)
        .map(|(p, s)| p * (s + matching as u64))
        .sum();
    let drain_until = Instant::now() + opts.drain.min(MAX_DURATION);
    while total.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _ = stop_tx.send(true);
    let mut latency = Latencies::new();
    let (mut delivered, mut delivered_all) = (0u64, 0u64);
    let (mut last, mut slowest) = (measure_start, u64::MAX);
    for (channel_subscriber, l) in listeners {
        let got = l
            .await
            .map_err(|e| Error::Msg(format!("subscriber: {e}")))??;
        latency.merge(&got.latency);
        delivered += got.count;
        delivered_all += got.all;
        if channel_subscriber {
            slowest = slowest.min(got.all);
        }
        last = last.max(got.last.unwrap_or(measure_start));
    }
    drop(slow);
    let params = [
        ("subscribers", opts.subscribers.to_string()),
        (
            "psubscribers",
            if opts.patterns > 0 { holders } else { 0 }.to_string(),
        ),
        ("patterns", opts.patterns.to_string()),
        ("matching", matching.to_string()),
        ("slow", opts.slow_subscribers.to_string()),
        ("channels", channels.to_string()),
        ("publishers", publishers.to_string()),
        ("pipeline", pipeline.to_string()),
        ("size", size.to_string()),
        ("rate", opts.rate.to_string()),
        ("warmup_s", warmup.as_secs_f64().to_string()),
    ];
    let fig = Figures::new("pubsub", &params, tags);
    let secs = publish_elapsed.as_secs_f64().max(1e-9);
    fig.emit("published", published.iter().sum::<u64>() as f64);
    fig.emit(
        "published_per_sec",
        (published_measured as f64 / secs).round(),
    );
    fig.emit("expected", expected as f64);
    fig.emit("delivered", delivered_all as f64);
    fig.emit("lost", expected.saturating_sub(delivered_all) as f64);
    let window = last.duration_since(measure_start).as_secs_f64().max(1e-9);
    fig.emit("delivered_per_sec", (delivered as f64 / window).round());
    if slowest != u64::MAX {
        // The fewest messages any channel subscriber got: a stalled one shows here.
        fig.emit("min_per_subscriber", slowest as f64);
    }
    fig.latencies("delivery", &latency);
    fig.latencies("publish_batch", &publish_latency);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_patterns_are_distinct_and_the_rest_cannot_match() {
        assert_eq!(pattern(0, 2), "bench:chan:*");
        assert_eq!(pattern(1, 2), "bench:chan:**");
        assert_eq!(pattern(2, 2), "other:2:*");
    }
}
