//! Differential test: every script in `tests/scripts/*.txt` runs against the real
//! `sluice-server` binary and against a `redis-server` this test starts itself, in RESP2 and
//! RESP3; the raw replies must be equal. Skipped (with a notice) only when `redis-server` is
//! not installed.
//!
//! Script format: one command per line (redis-cli-style quoting), `#` comments. A line
//! starting with `~` masks every integer in its reply (times, idle counters, ids); a line
//! starting with `!` runs on both servers without comparing. Auto-generated stream IDs are
//! always masked. To add a script, drop a new `.txt` file into `tests/scripts/`.

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Raw, Server};

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
    for _ in 0..10 {
        let port = common::free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut redis = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(redis);
            }
            if let Ok(Some(_)) = redis.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    None
}

/// Masks auto-generated IDs (13-14 digit milliseconds) with their bulk lengths, timestamps,
/// and with `ints` every integer reply and digit run (same rules as the in-process stream
/// differential, so the scripts mean the same thing in both).
fn mask(raw: &str, ints: bool) -> String {
    let mut out: Vec<String> = Vec::new();
    for line in raw.split("\r\n") {
        let is_auto_id = line.split_once('-').is_some_and(|(ms, seq)| {
            (13..=14).contains(&ms.len())
                && ms.bytes().all(|b| b.is_ascii_digit())
                && seq.bytes().all(|b| b.is_ascii_digit())
                && ms.starts_with('1')
        });
        let is_time = line.len() == 14
            && line.starts_with(":1")
            && line[1..].bytes().all(|b| b.is_ascii_digit());
        let after_radix = out.last().is_some_and(|p| p.starts_with("radix-tree-"));
        if after_radix {
            out.push(":#".into());
        } else if is_auto_id {
            if let Some(prev) = out.last_mut() {
                if prev.starts_with('$') {
                    *prev = "$?".into();
                }
            }
            out.push("<ID>".into());
        } else if is_time || (ints && line.starts_with(':')) {
            out.push(":#".into());
        } else if ints && !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()) {
            if let Some(prev) = out.last_mut() {
                if prev.starts_with('$') {
                    *prev = "$?".into();
                }
            }
            out.push("#".into());
        } else {
            out.push(line.to_string());
        }
    }
    out.join("\\r\\n")
}

fn send_words(c: &mut Raw, words: &[bytes::Bytes]) {
    let refs: Vec<&[u8]> = words.iter().map(|w| &w[..]).collect();
    c.send_cmd(&refs);
}

/// Runs one script on both servers in one protocol; returns the mismatches.
fn run_script(name: &str, script: &str, sluice: u16, redis: u16, resp3: bool) -> Vec<String> {
    let mut failures = Vec::new();
    let mut a = Raw::connect(sluice);
    let mut b = Raw::connect(redis);
    for c in [&mut a, &mut b] {
        c.cmd("FLUSHALL");
        if resp3 {
            c.cmd("HELLO 3");
        }
    }
    for line in script.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (ints, compare, cmd) = match line.as_bytes()[0] {
            b'~' => (true, true, &line[1..]),
            b'!' => (false, false, &line[1..]),
            _ => (false, true, line),
        };
        let Some(words) = sluice_server::resp::split_args(cmd.as_bytes()) else {
            failures.push(format!("{name}: unbalanced quotes in script line: {line}"));
            continue;
        };
        send_words(&mut a, &words);
        send_words(&mut b, &words);
        let got = a.try_reply().unwrap_or_else(|| "<closed>".into());
        let want = b.try_reply().unwrap_or_else(|| "<closed>".into());
        if compare {
            let (want, got) = (mask(&want, ints), mask(&got, ints));
            if want != got {
                failures.push(format!(
                    "{name} {}: {cmd}\n  redis:  {want}\n  sluice: {got}",
                    if resp3 { "RESP3" } else { "RESP2" }
                ));
            }
        }
    }
    failures
}

#[test]
fn scripts_match_redis() {
    let Some(redis) = start_redis() else {
        eprintln!("NOTICE: redis-server is not installed; skipping the differential test");
        return;
    };
    let sluice = Server::start();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scripts");
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/scripts")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty());
    let mut failures = Vec::new();
    for path in &scripts {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let script = std::fs::read_to_string(path).unwrap();
        for resp3 in [false, true] {
            failures.extend(run_script(&name, &script, sluice.port, redis.port, resp3));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "differential: {} scripts matched redis-server",
        scripts.len()
    );
}
