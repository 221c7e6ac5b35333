//! Starting, killing and restarting the server under test on one data directory.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::resp::{cmd, Conn, Value};

/// How long a restart may take before the test gives up on the server.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const START_ATTEMPTS: usize = 5;

/// Which binary the test drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `sluice-server --port P --dir D --appendfsync POLICY`.
    Sluice,
    /// Debian's `redis-server` with an fsync-always AOF: a reference that validates the checker.
    Redis,
}

impl Target {
    pub fn from_env() -> Target {
        match std::env::var("SLUICE_CRASH_TARGET").as_deref() {
            Ok("redis") => Target::Redis,
            _ => Target::Sluice,
        }
    }

    fn command(self, port: u16, dir: &Path, fsync: &str) -> Command {
        let port = port.to_string();
        match self {
            Target::Sluice => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_sluice-server"));
                c.arg("--port")
                    .arg(&port)
                    .arg("--dir")
                    .arg(dir)
                    .arg("--appendfsync")
                    .arg(fsync);
                c
            }
            Target::Redis => {
                let mut c = Command::new("redis-server");
                c.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
                    .args(["--appendonly", "yes", "--appendfsync", fsync])
                    .args(["--daemonize", "no", "--dir"])
                    .arg(dir);
                c
            }
        }
    }
}

/// A running server process.
pub struct Server {
    child: Child,
    pub port: u16,
}

/// Asks the kernel for a free port on 127.0.0.1 (a fresh one per start avoids TIME_WAIT).
fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Server {
    /// Starts the server on `dir` and waits until PING answers PONG; returns the time that took.
    pub fn start(
        target: Target,
        fsync: &str,
        dir: &Path,
        log: &Path,
    ) -> Result<(Server, Duration), String> {
        let mut last_err = String::new();
        for _ in 0..START_ATTEMPTS {
            let started = Instant::now();
            let mut server = Server::spawn(target, fsync, dir, log)?;
            match server.wait_ready(started) {
                Ok(()) => return Ok((server, started.elapsed())),
                Err(e) => {
                    last_err = e;
                    server.kill();
                }
            }
        }
        Err(format!(
            "server did not start after {START_ATTEMPTS} attempts: {last_err}\n--- server log tail ---\n{}",
            log_tail(log, 40)
        ))
    }

    /// Starts the process without waiting for it (to kill it again in the middle of recovery).
    pub fn spawn(target: Target, fsync: &str, dir: &Path, log: &Path) -> Result<Server, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("open log {}: {e}", log.display()))?;
        let err_file = log_file
            .try_clone()
            .map_err(|e| format!("clone log handle: {e}"))?;
        let child = target
            .command(port, dir, fsync)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .map_err(|e| format!("spawn {target:?}: {e}"))?;
        Ok(Server { child, port })
    }

    fn wait_ready(&mut self, started: Instant) -> Result<(), String> {
        let mut last = String::from("no reply");
        while started.elapsed() < START_TIMEOUT {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("server exited during start: {status}"));
            }
            match Conn::connect(self.port, Duration::from_secs(5))
                .and_then(|mut c| c.call(cmd(["PING"])))
            {
                Ok(Value::Simple(s)) if s == "PONG" => return Ok(()),
                Ok(other) => last = format!("PING answered {other:?}"),
                Err(e) => last = format!("PING failed: {e}"),
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Err(format!("not ready after {START_TIMEOUT:?}: {last}"))
    }

    /// SIGKILL (kill -9) and reap: nothing the server buffered in user space survives.
    pub fn kill(&mut self) {
        // Both can only fail if the process is already gone, which is what we want.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of the server log, for failure messages.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(log) else {
        return String::from("(no log)");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 << 10)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Total bytes of the files under `dir` (allocated size can differ; this is file lengths).
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Where one run keeps its data directory and server log.
pub struct Workdir {
    _tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub log: PathBuf,
}

impl Workdir {
    /// Keeps the directory (data and log) for inspection after a failure; returns its path.
    pub fn keep(self) -> PathBuf {
        self._tmp.keep()
    }

    pub fn new() -> Workdir {
        let tmp = tempfile::Builder::new()
            .prefix("sluice-crash-")
            .tempdir()
            .expect("create a temporary directory");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).expect("create the data directory");
        let log = tmp.path().join("server.log");
        Workdir {
            _tmp: tmp,
            data,
            log,
        }
    }
}
