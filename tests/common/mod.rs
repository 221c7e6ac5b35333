//! Shared harness for the black-box tests: starts the real `sluice-server` binary on an
//! ephemeral port with a temporary data directory, waits until it answers PING, and kills it
//! on drop. Also a raw-TCP client for tests where exact bytes matter.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server; killed (SIGKILL) on drop.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    args: Vec<String>,
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Server {
    pub fn start() -> Server {
        Server::with_args(&[])
    }

    /// Starts with extra `--directive value` arguments.
    pub fn with_args(args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut s = Server {
            child: None,
            port: 0,
            dir,
            _tmp: Some(tmp),
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        for _ in 0..20 {
            let port = free_port();
            let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-server"))
                .args(["--port", &port.to_string()])
                .arg("--dir")
                .arg(&self.dir)
                .args(&self.args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn sluice-server");
            if wait_for_ping(port, &mut child) {
                self.port = port;
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("sluice-server did not start");
    }

    /// Kills the server (SIGKILL) and starts it again on the same data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status (at most 20 s); returns it and stderr.
    pub fn terminate(&mut self) -> (Option<i32>, String) {
        let Some(mut child) = self.child.take() else {
            return (None, String::new());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        wait_exit(&mut child)
    }

    /// Waits for the server to exit on its own (after SHUTDOWN).
    pub fn wait_exit(&mut self) -> (Option<i32>, String) {
        match self.child.take() {
            Some(mut child) => wait_exit(&mut child),
            None => (None, String::new()),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A `redis` crate connection (RESP2, or RESP3 with `resp3`).
    pub fn client(&self) -> redis::Connection {
        self.client_proto(false)
    }

    pub fn client_proto(&self, resp3: bool) -> redis::Connection {
        let url = if resp3 {
            format!("{}?protocol=resp3", self.url())
        } else {
            self.url()
        };
        let con = redis::Client::open(url)
            .expect("client")
            .get_connection()
            .expect("connect");
        con.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        con
    }

    pub fn raw(&self) -> Raw {
        Raw::connect(self.port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_exit(child: &mut Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st.code(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status, err)
}

/// Waits until `child` (sluice-server or redis-server) answers PING on `port`. Servers start
/// in parallel and a port from [`free_port`] may be taken by another one first (or a
/// connect to a port nobody holds may reach itself), so an answer counts only if
/// `INFO server` names `child`'s process id, or, where the server wants AUTH first, if
/// `child` is still running a moment later. False means: try another port.
pub fn wait_for_ping(port: u16, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Some(reply) = ask(port, b"PING\r\n") {
            if reply.starts_with("+PONG") {
                let pid = format!("process_id:{}\r\n", child.id());
                return ask(port, b"INFO server\r\n").is_some_and(|info| info.contains(&pid));
            }
            if reply.starts_with("-NOAUTH") {
                std::thread::sleep(Duration::from_millis(100));
                return matches!(child.try_wait(), Ok(None));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Sends one inline request on a fresh connection and returns its whole reply; `None` if
/// the connection or the read fails (the server may still be starting).
fn ask(port: u16, request: &[u8]) -> Option<String> {
    let mut c = Raw::try_connect(port)?;
    c.stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    c.stream.write_all(request).ok()?;
    c.try_reply()
}

/// A command as a RESP multibulk request.
pub fn multibulk(words: &[&[u8]]) -> Vec<u8> {
    let mut req = format!("*{}\r\n", words.len()).into_bytes();
    for w in words {
        req.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
        req.extend_from_slice(w);
        req.extend_from_slice(b"\r\n");
    }
    req
}

/// A raw TCP connection: send exact bytes, read exact replies.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        Raw::try_connect(port).expect("connect")
    }

    /// Like [`Raw::connect`], `None` where that panics.
    pub fn try_connect(port: u16) -> Option<Raw> {
        let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        Some(Raw {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends a command as a multibulk request.
    pub fn send_cmd(&mut self, words: &[&[u8]]) {
        self.send(&multibulk(words));
    }

    /// Sends a command (words split on spaces) and returns its raw reply.
    pub fn cmd(&mut self, line: &str) -> String {
        let words: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
        self.send_cmd(&words);
        self.reply()
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                return Some(line);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Reads one complete reply (any RESP2/RESP3 type) and returns its raw text.
    pub fn reply(&mut self) -> String {
        self.try_reply().expect("a reply")
    }

    pub fn try_reply(&mut self) -> Option<String> {
        let mut out = Vec::new();
        let mut pending = 1usize;
        while pending > 0 {
            pending -= 1;
            let line = self.line()?;
            out.extend_from_slice(&line);
            let n: i64 = std::str::from_utf8(&line[1..line.len() - 2])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            match line[0] {
                b'$' | b'=' | b'!' if n >= 0 => {
                    let need = n as usize + 2;
                    while self.buf.len() < need {
                        if !self.fill() {
                            return None;
                        }
                    }
                    out.extend(self.buf.drain(..need));
                }
                b'*' | b'~' | b'>' if n > 0 => pending += n as usize,
                b'%' | b'|' if n > 0 => pending += 2 * n as usize,
                _ => {}
            }
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    /// Reads everything until the server closes the connection (or the read timeout);
    /// returns the text and whether it was closed.
    pub fn read_to_close(&mut self) -> (String, bool) {
        let mut chunk = [0u8; 65536];
        let closed = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        (text, closed)
    }

    /// True if the server closed the connection (reads EOF within the timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.read(&mut probe), Ok(0))
    }
}
