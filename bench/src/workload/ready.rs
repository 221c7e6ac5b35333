//! `wait-ready`: how long a (re)starting server takes until `PING` answers `PONG`, e.g. while
//! Redis loads its AOF (it answers `-LOADING` meanwhile) or Sluice opens its directory.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::client::Conn;
use crate::figure::Figures;
use crate::resp::Value;
use crate::{Error, Result};

pub struct ReadyOptions {
    /// Wall-clock start of the server process (`date +%s%N`); default: this tool's start.
    pub since_unix_ns: Option<u128>,
    pub timeout: Duration,
    /// Poll interval.
    pub interval: Duration,
    /// After `PONG`, report `XLEN` of this key (checks the data came back).
    pub xlen_key: Option<String>,
}

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

async fn ping(addr: SocketAddr) -> Result<Conn> {
    let mut conn = Conn::connect(addr).await?;
    match conn.call(&["PING"]).await? {
        Value::Simple(s) if s == b"PONG" => Ok(conn),
        other => Err(Error::Msg(format!("PING answered {other:?}"))),
    }
}

pub async fn run(addr: SocketAddr, opts: &ReadyOptions, tags: &[String]) -> Result<()> {
    let since = opts.since_unix_ns.unwrap_or_else(unix_ns);
    let deadline = Instant::now() + opts.timeout.min(super::MAX_DURATION);
    let mut conn = loop {
        match tokio::time::timeout(Duration::from_secs(5), ping(addr)).await {
            Ok(Ok(conn)) => break conn,
            _ if Instant::now() >= deadline => {
                return Err(Error::Msg("server did not answer PING in time".into()))
            }
            _ => tokio::time::sleep(opts.interval).await,
        }
    };
    let ready_ms = unix_ns().saturating_sub(since) as f64 / 1e6;
    let fig = Figures::new("startup", &[], tags);
    fig.emit("ready_ms", (ready_ms * 10.0).round() / 10.0);
    if let Some(key) = &opts.xlen_key {
        let len = conn
            .call(&["XLEN", key.as_str()])
            .await?
            .as_int()
            .unwrap_or(-1);
        fig.emit("xlen", len as f64);
    }
    Ok(())
}
