//! Differential test of the stream commands over the wire: the scripts in `tests/scripts/`
//! run against the real `sluice-server` and against Debian's `redis-server` (skipped with a
//! message when it is not installed); raw replies must be equal in RESP2 and RESP3 once
//! auto-generated IDs (and, on lines starting with `~`, all integers) are masked.

mod common;
mod stream_support;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Raw, Server};
use stream_support::mask;

struct Redis {
    child: Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis() -> Option<Redis> {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let redis = Redis { child, port };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(redis);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn run_script(name: &str, script: &str) {
    let Some(redis) = start_redis() else {
        eprintln!("redis-server not available: skipping the {name} differential script");
        return;
    };
    let sluice = Server::start();
    let mut failures = Vec::new();
    for resp3 in [false, true] {
        let mut want_con = Raw::connect(redis.port);
        let mut got_con = sluice.raw();
        for con in [&mut want_con, &mut got_con] {
            con.cmd("flushall");
            if resp3 {
                con.cmd("hello 3");
            }
        }
        for line in script.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (ints, cmd) = match line.strip_prefix('~') {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let want = mask(&want_con.cmd(cmd), ints);
            let got = mask(&got_con.cmd(cmd), ints);
            if want != got {
                failures.push(format!(
                    "{name} resp3={resp3}: {cmd}\n  redis:  {want}\n  sluice: {got}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn streams() {
    run_script("streams", include_str!("scripts/streams.txt"));
}

#[test]
fn stream_errors() {
    run_script("stream_errors", include_str!("scripts/stream_errors.txt"));
}

#[test]
fn groups() {
    run_script("groups", include_str!("scripts/groups.txt"));
}

#[test]
fn group_errors() {
    run_script("group_errors", include_str!("scripts/group_errors.txt"));
}

#[test]
fn groups_lag() {
    run_script("groups_lag", include_str!("scripts/groups_lag.txt"));
}
