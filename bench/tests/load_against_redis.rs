//! Runs every `sluice-load` workload briefly against a real redis-server and checks the
//! figures say the replies were right (no errors, nothing lost, everything acknowledged).
//! Speeds are printed by the tool, never asserted.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server on a free loopback port, killed on drop.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Option<Redis> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("redis-server is not installed: skipping");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let dir = tempfile::tempdir().expect("a temp dir");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let redis = Redis {
            child,
            port,
            _dir: dir,
        };
        let out = redis.load(&["wait-ready", "--timeout", "20"]);
        assert!(figure(&out, "ready_ms").is_some(), "{out}");
        Some(redis)
    }

    /// Runs sluice-load against this server and returns its stdout.
    fn load(&self, args: &[&str]) -> String {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_sluice-load"))
            .args(["--port", &self.port.to_string()])
            .args(args)
            .output()
            .expect("sluice-load runs");
        assert!(started.elapsed() < Duration::from_secs(60));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?} failed: {stderr}\n{stdout}");
        stdout
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `metric` in the tool's output.
fn figure(out: &str, metric: &str) -> Option<f64> {
    let tag = format!(" metric={metric} value=");
    out.lines()
        .find_map(|l| l.split_once(&tag).and_then(|(_, v)| v.parse().ok()))
}

#[test]
fn every_workload_runs_cleanly_against_redis() {
    let Some(redis) = Redis::start() else { return };

    let out = redis.load(&[
        "xadd",
        "--clients",
        "4",
        "--pipeline",
        "8",
        "--requests",
        "2000",
    ]);
    assert!(
        out.lines().all(|l| l.starts_with("figure workload=xadd ")),
        "{out}"
    );
    assert_eq!(figure(&out, "ops"), Some(2000.0), "{out}");
    assert_eq!(figure(&out, "errors"), Some(0.0), "{out}");
    assert!(figure(&out, "batch_latency_p99_us").is_some(), "{out}");

    for verb in ["xrange", "xrevrange"] {
        let out = redis.load(&[
            verb,
            "--clients",
            "2",
            "--prefill",
            "500",
            "--requests",
            "100",
        ]);
        assert_eq!(figure(&out, "ops"), Some(100.0), "{out}");
        assert_eq!(
            figure(&out, "entries_per_sec").map(|v| v > 0.0),
            Some(true),
            "{out}"
        );
        assert_eq!(figure(&out, "errors"), Some(0.0), "{out}");
    }

    let out = redis.load(&[
        "xreadgroup",
        "--consumers",
        "3",
        "--count",
        "7",
        "--prefill",
        "1000",
    ]);
    assert_eq!(figure(&out, "errors"), Some(0.0), "{out}");
    assert_eq!(figure(&out, "pending_after"), Some(0.0), "{out}");

    let out = redis.load(&["xread-latency", "--readers", "2", "--samples", "50"]);
    assert_eq!(figure(&out, "samples"), Some(100.0), "{out}");
    assert!(figure(&out, "wake_p999_us").is_some(), "{out}");

    let out = redis.load(&[
        "pubsub",
        "--subscribers",
        "3",
        "--psubscribers",
        "2",
        "--patterns",
        "20",
        "--matching",
        "2",
        "--slow-subscribers",
        "1",
        "--channels",
        "2",
        "--requests",
        "500",
        "--warmup",
        "0",
    ]);
    assert_eq!(figure(&out, "published"), Some(500.0), "{out}");
    assert!(
        figure(&out, "published_per_sec").is_some_and(|r| r > 0.0),
        "{out}"
    );
    // 3 subscribers over 2 channels: 250 messages reach 2 of them, 250 reach 1; plus 2 patterns.
    assert_eq!(
        figure(&out, "expected"),
        Some(250.0 * 4.0 + 250.0 * 3.0),
        "{out}"
    );
    assert_eq!(figure(&out, "lost"), Some(0.0), "{out}");
    assert_eq!(figure(&out, "min_per_subscriber"), Some(250.0), "{out}");
    assert!(figure(&out, "delivery_p99_us").is_some(), "{out}");
}

#[test]
fn non_loopback_targets_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-load"))
        .args(["--host", "192.0.2.1", "xadd", "--requests", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
}
