//! The workloads, one module each, and what they share: target address, run limits, the
//! closed-loop client runner and the entry layout.

pub mod pubsub;
pub mod ready;
pub mod stream_range;
pub mod xadd;
pub mod xread_latency;
pub mod xreadgroup;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Conn;
use crate::figure::Figures;
use crate::resp::{self, Value};
use crate::stats::Latencies;
use crate::{Error, Result};

/// Longest run any workload accepts, so every run stops by itself.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most client connections any workload opens.
pub const MAX_CLIENTS: usize = 10_000;
/// Deepest pipeline any workload keeps in flight per connection.
pub const MAX_PIPELINE: usize = 10_000;

/// Resolves `host:port`, refusing anything that is not a loopback address: the tool is for
/// benchmarking a server on this machine only.
pub fn loopback_addr(host: &str, port: u16) -> Result<SocketAddr> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::Msg(format!("cannot resolve {host}: {e}")))?;
    let mut first = None;
    for addr in addrs {
        if !is_loopback(addr.ip()) {
            return Err(Error::Msg(format!(
                "{host} is not a loopback address; refusing"
            )));
        }
        first.get_or_insert(addr);
    }
    first.ok_or_else(|| Error::Msg(format!("{host} resolves to nothing")))
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// When a run stops: after a duration, or after a total number of requests if given.
#[derive(Clone)]
pub struct Limits {
    deadline: Instant,
    remaining: Option<Arc<AtomicI64>>,
}

impl Limits {
    pub fn new(duration: Duration, requests: Option<u64>) -> Limits {
        let duration = duration.min(MAX_DURATION);
        Limits {
            deadline: Instant::now() + duration,
            remaining: requests.map(|n| Arc::new(AtomicI64::new(n.min(i64::MAX as u64) as i64))),
        }
    }

    /// Claims up to `want` requests; 0 means the run is over.
    pub fn claim(&self, want: usize) -> usize {
        if Instant::now() >= self.deadline {
            return 0;
        }
        match &self.remaining {
            None => want,
            Some(left) => {
                let want = want as i64;
                let before = left.fetch_sub(want, Ordering::Relaxed);
                before.clamp(0, want) as usize
            }
        }
    }

    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

/// What one client task did.
#[derive(Default)]
pub struct ClientStats {
    /// Requests answered without error.
    pub ops: u64,
    /// Stream entries moved (read or acknowledged), where the workload counts them.
    pub entries: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Round-trip time of each pipelined batch.
    pub latency: Latencies,
}

impl ClientStats {
    pub fn merge(&mut self, other: ClientStats) {
        self.ops += other.ops;
        self.entries += other.entries;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latency.merge(&other.latency);
    }

    pub fn error(&mut self, msg: String) {
        self.errors += 1;
        self.first_error.get_or_insert(msg);
    }
}

/// Runs `clients` tasks of `body` concurrently and returns their merged stats and wall time.
///
/// Every connection is opened before any task starts, so connecting is not measured.
pub async fn run_clients<F, Fut>(
    addr: SocketAddr,
    clients: usize,
    body: F,
) -> Result<(ClientStats, Duration)>
where
    F: Fn(usize, Conn) -> Fut,
    Fut: std::future::Future<Output = Result<ClientStats>> + Send + 'static,
{
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(Conn::connect(addr).await?);
    }
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for (i, conn) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(body(i, conn)));
    }
    let mut total = ClientStats::default();
    for task in tasks {
        let stats = task
            .await
            .map_err(|e| Error::Msg(format!("client task failed: {e}")))??;
        total.merge(stats);
    }
    Ok((total, start.elapsed()))
}

/// Prints the figures every throughput workload shares.
pub fn emit_throughput(fig: &Figures, stats: &ClientStats, elapsed: Duration) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    fig.emit("ops", stats.ops as f64);
    fig.emit("ops_per_sec", (stats.ops as f64 / secs).round());
    if stats.entries > 0 {
        fig.emit("entries_per_sec", (stats.entries as f64 / secs).round());
    }
    fig.emit("errors", stats.errors as f64);
    fig.emit("seconds", (secs * 1000.0).round() / 1000.0);
    fig.latencies("batch_latency", &stats.latency);
    if let Some(e) = &stats.first_error {
        eprintln!("first error: {e}");
    }
}

/// Shape of the stream entries the workloads write.
#[derive(Clone, Debug)]
pub struct EntryShape {
    pub fields: usize,
    pub field_size: usize,
    pub value_size: usize,
}

impl EntryShape {
    /// The field-value arguments of one entry: `f0`, `f1`, ... padded to the field size,
    /// values of `v` bytes.
    pub fn args(&self) -> Vec<Vec<u8>> {
        let mut args = Vec::with_capacity(self.fields * 2);
        for i in 0..self.fields.max(1) {
            let mut name = format!("f{i}").into_bytes();
            if name.len() < self.field_size {
                name.resize(self.field_size, b'_');
            }
            args.push(name);
            args.push(vec![b'v'; self.value_size]);
        }
        args
    }

    pub fn describe(&self) -> Vec<(&'static str, String)> {
        vec![
            ("fields", self.fields.max(1).to_string()),
            ("field_size", self.field_size.to_string()),
            ("value_size", self.value_size.to_string()),
        ]
    }
}

/// Deletes `key` and writes `count` entries with IDs `1-0`, `2-0`, ... through one pipelined
/// connection, so range reads can pick any start ID.
///
/// Each batch of 1000 XADDs is one MULTI/EXEC, so under `appendfsync always` a batch waits
/// for one fsync however the server orders durability waits within a pipeline (the fill is
/// set-up, not a measurement).
pub async fn prefill(addr: SocketAddr, key: &str, count: u64, shape: &EntryShape) -> Result<()> {
    let mut conn = Conn::connect(addr).await?;
    conn.call(&["DEL", key]).await?;
    let fields = shape.args();
    const BATCH: u64 = 1000;
    let mut next = 1u64;
    while next <= count {
        let end = (next + BATCH).min(count + 1);
        conn.queue(&["MULTI"]);
        for id in next..end {
            let id = format!("{id}-0");
            let mut args: Vec<&[u8]> = vec![b"XADD", key.as_bytes(), id.as_bytes()];
            args.extend(fields.iter().map(Vec::as_slice));
            conn.queue(&args);
        }
        conn.queue(&["EXEC"]);
        conn.flush().await?;
        for _ in next..=end {
            conn.expect_ok_frame().await?; // +OK, then +QUEUED per XADD
        }
        let exec = conn.expect_ok_frame().await?;
        if exec.kind != b'*' || exec.count != (end - next) as i64 {
            let reply = String::from_utf8_lossy(conn.last());
            return Err(Error::Msg(format!(
                "prefill EXEC replied {}",
                reply.trim_end()
            )));
        }
        let ids = resp::parse(conn.last())?.map(|(v, _)| v);
        let failed = ids
            .as_ref()
            .and_then(Value::as_array)
            .and_then(|items| items.iter().find(|v| matches!(v, Value::Error(_))).cloned());
        if let Some(err) = failed {
            return Err(Error::Msg(format!("prefill XADD failed: {err:?}")));
        }
        next = end;
    }
    Ok(())
}

/// A tiny xorshift generator: workloads need cheap, seedable randomness, not quality.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(loopback_addr("127.0.0.1", 6379).is_ok());
        assert!(loopback_addr("localhost", 6379).is_ok());
        assert!(loopback_addr("10.0.0.1", 6379).is_err());
        assert!(loopback_addr("192.168.1.1", 6379).is_err());
    }

    #[test]
    fn a_request_budget_is_shared_and_never_overdrawn() {
        let limits = Limits::new(Duration::from_secs(60), Some(10));
        assert_eq!(limits.claim(4), 4);
        assert_eq!(limits.claim(4), 4);
        assert_eq!(limits.claim(4), 2);
        assert_eq!(limits.claim(4), 0);
        let expired = Limits::new(Duration::ZERO, None);
        assert_eq!(expired.claim(1), 0);
    }
}
