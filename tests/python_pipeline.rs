//! End-to-end: the Python document pipeline in `examples/python` (plain redis-py) against the
//! real `sluice-server`, with a worker SIGKILLed and the server killed -9 and restarted on the
//! same data directory and port in the middle of the run.
//!
//! The Python driver (`examples/python/e2e_check.py`) runs the pipeline and does the checks;
//! this test owns the server: when the driver prints `E2E:KILL-SERVER` it kills the server
//! with SIGKILL, restarts it and answers `RESTARTED` on the driver's stdin. It needs python3
//! with redis-py (`.ci/run` installs it with `python3 -m pip install redis`) and fails, rather
//! than skips, without them.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The whole test, drain included, must finish within this.
const BUDGET: Duration = Duration::from_secs(130);

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// The server process, started on a fixed data dir and port, with its output appended to
/// `log` (across restarts).
struct Server {
    dir: PathBuf,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// Starts the server on a free port, trying another if the port was taken meanwhile.
    fn start(dir: &Path, log: &Path) -> Server {
        let mut server = Server {
            dir: dir.to_path_buf(),
            port: 0,
            log: log.to_path_buf(),
            child: None,
        };
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(err) => last = err,
            }
        }
        panic!("{last}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the server log");
        let err = out.try_clone().expect("clone the server log handle");
        std::fs::create_dir_all(&self.dir).expect("create the data directory");
        let child = server_command()
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendfsync", "always"])
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start sluice-server");
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until the port accepts connections and our process is still alive (a
    /// connection alone could reach another process that holds the port).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let connected = TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if connected {
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "the server exited during start-up on port {} ({status}); its log:\n{}",
                        self.port,
                        read_to_string(&self.log)
                    ));
                }
            }
            if connected {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "the server did not accept connections on port {} within 20s; its log:\n{}",
            self.port,
            read_to_string(&self.log)
        ))
    }

    /// kill -9, then start again on the same directory and port.
    fn crash_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL sluice-server");
            child.wait().expect("reap sluice-server");
        }
        if let Err(err) = self.spawn() {
            panic!("restart on the same directory and port failed: {err}");
        }
    }
}

/// The server to test: `sluice-server`, or, to compare behaviour, the command in
/// `PIPELINE_E2E_SERVER` (e.g. `redis-server --appendonly yes --save ''`), which gets the
/// same `--port`, `--dir` and `--appendfsync always` arguments.
fn server_command() -> Command {
    match std::env::var("PIPELINE_E2E_SERVER") {
        Ok(cmd) if !cmd.trim().is_empty() => {
            let mut words = cmd.split_whitespace();
            let mut command = Command::new(words.next().expect("a non-empty command"));
            command.args(words);
            command
        }
        _ => Command::new(env!("CARGO_BIN_EXE_sluice-server")),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The driver runs in its own process group so that every pipeline process it started can
/// be killed with it if the test gives up.
struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group, so no worker outlives a failed test (the `kill` command rather
        // than libc::kill, which would need `unsafe`).
        let _ = Command::new("kill")
            .args(["-9", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        // Should `kill` be missing, the driver at least dies; its children follow within half
        // a second (PIPELINE_EXIT_WITH_PARENT).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_to_string(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    text
}

fn require_python() {
    const HOW: &str = "this test needs python3 with redis-py; `.ci/run` installs redis-py \
                       with `python3 -m pip install redis`";
    match Command::new("python3")
        .args(["-c", "import redis; print(redis.__version__)"])
        .output()
    {
        Err(err) => panic!("cannot run python3 ({err}): {HOW}"),
        Ok(out) if !out.status.success() => panic!(
            "python3 cannot import redis ({}): {HOW}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Ok(_) => {}
    }
}

#[test]
fn python_pipeline_survives_worker_and_server_crashes() {
    require_python();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let server_log = tmp.path().join("server.log");
    let driver_log = tmp.path().join("driver.log");
    let mut server = Server::start(&data, &server_log);
    let port = server.port;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/e2e_check.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg("--port")
        .arg(port.to_string())
        .arg("--workdir")
        .arg(&work)
        .args(["--control", "stdio", "--timeout", "80"])
        .env("PYTHONUNBUFFERED", "1")
        .env("PIPELINE_EXIT_WITH_PARENT", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(File::create(&driver_log).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stdin = child.stdin.take();
    let mut driver = Driver { child, stdin };

    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut lines = Vec::new();
    let mut restarts = 0;
    let report = |lines: &[String], why: &str| -> String {
        format!(
            "{why}\n--- driver stdout ---\n{}\n--- driver stderr (tail) ---\n{}\n--- server log (tail) ---\n{}",
            lines.join("\n"),
            tail(&read_to_string(&driver_log), 60),
            tail(&read_to_string(&server_log), 40),
        )
    };
    loop {
        let left = BUDGET.saturating_sub(started.elapsed());
        if left.is_zero() {
            panic!(
                "{}",
                report(&lines, "the end-to-end run exceeded its time budget")
            );
        }
        match rx.recv_timeout(left) {
            Ok(line) => {
                if line == "E2E:KILL-SERVER" {
                    server.crash_and_restart();
                    restarts += 1;
                    let stdin = driver.stdin.as_mut().unwrap();
                    writeln!(stdin, "RESTARTED").unwrap();
                    stdin.flush().unwrap();
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = driver.child.wait().unwrap();
    for line in lines.iter().filter(|l| l.starts_with("E2E:SUMMARY")) {
        println!("{line}");
    }
    assert_eq!(
        restarts,
        1,
        "{}",
        report(&lines, "the driver never asked for the server crash")
    );
    assert!(
        status.success() && lines.last().map(String::as_str) == Some("E2E:PASS"),
        "{}",
        report(&lines, &format!("the pipeline check failed ({status})"))
    );
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
