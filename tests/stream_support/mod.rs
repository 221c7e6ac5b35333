//! Starts the real `sluice-server` binary on an ephemeral port with a temporary data
//! directory, for the stream black-box tests, and helpers to run raw commands.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::Value;

pub struct Server {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        for _ in 0..20 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-server"))
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn sluice-server");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Server {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("sluice-server did not start");
    }

    /// A connection speaking RESP3 (after HELLO 3) or RESP2.
    pub fn connect(&self, resp3: bool) -> redis::Connection {
        let proto = if resp3 { "?protocol=resp3" } else { "" };
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/{proto}", self.port))
            .expect("client");
        let con = client.get_connection().expect("connect");
        con.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        con
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command given as words, returning the reply or the error line.
pub fn run(con: &mut redis::Connection, words: &[&str]) -> Result<Value, String> {
    let mut cmd = redis::cmd(words[0]);
    for w in &words[1..] {
        cmd.arg(*w);
    }
    cmd.query::<Value>(con).map_err(error_line)
}

/// `run` on a space-separated line.
pub fn line(con: &mut redis::Connection, text: &str) -> Result<Value, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    run(con, &words)
}

/// The error as Redis sent it: `CODE detail`.
pub fn error_line(e: redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

pub fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

/// An entry `[id, [f, v, ...]]`.
pub fn entry(id: &str, fields: &[&str]) -> Value {
    Value::Array(vec![
        bulk(id),
        Value::Array(fields.iter().map(|f| bulk(f)).collect()),
    ])
}

/// XREAD's reply for one or more keys, in the protocol's shape.
pub fn keyed(resp3: bool, pairs: Vec<(&str, Vec<Value>)>) -> Value {
    if resp3 {
        Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (bulk(k), Value::Array(v)))
                .collect(),
        )
    } else {
        Value::Array(
            pairs
                .into_iter()
                .map(|(k, v)| Value::Array(vec![bulk(k), Value::Array(v)]))
                .collect(),
        )
    }
}

/// Field `name` of a map-shaped reply (a RESP3 map or a flat RESP2 array).
pub fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    let key = bulk(name);
    match v {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no field {name} in {v:?}")),
        Value::Array(flat) => flat
            .chunks(2)
            .find(|p| p[0] == key)
            .map(|p| &p[1])
            .unwrap_or_else(|| panic!("no field {name} in {v:?}")),
        other => panic!("not a map: {other:?}"),
    }
}
