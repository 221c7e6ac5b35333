//! Black-box tests of the server commands (COMMAND, INFO, CONFIG, TIME, LASTSAVE, SHUTDOWN,
//! DEBUG RELOAD, MONITOR), start-up configuration, the banner, and graceful shutdown on signals.

mod common;

use std::process::Command;

use common::Server;

fn int(reply: &str) -> i64 {
    reply.trim_end()[1..].parse().expect("integer reply")
}

#[test]
fn command_count_info_docs_list() {
    let s = Server::start();
    let mut c = s.raw();
    let count = int(&c.cmd("COMMAND COUNT"));
    assert!(count > 50, "{count}");
    let info = c.cmd("COMMAND INFO xadd nosuch");
    assert!(
        info.starts_with("*2\r\n*10\r\n$4\r\nxadd\r\n:-5\r\n"),
        "{info}"
    );
    assert!(info.ends_with("$-1\r\n"), "{info}");
    let docs = c.cmd("COMMAND DOCS xlen");
    assert!(docs.starts_with("*2\r\n$4\r\nxlen\r\n"), "{docs}");
    assert!(docs.contains("summary"), "{docs}");
    let list = c.cmd("COMMAND LIST FILTERBY PATTERN xa*");
    assert_eq!(
        list,
        "*3\r\n$4\r\nxadd\r\n$4\r\nxack\r\n$10\r\nxautoclaim\r\n"
    );
    let all = c.cmd("COMMAND");
    assert!(all.starts_with(&format!("*{count}\r\n")));
    assert_eq!(
        c.cmd("COMMAND FOO"),
        "-ERR unknown subcommand 'FOO'. Try COMMAND HELP.\r\n"
    );
    // The redis crate and redis-cli read COMMAND DOCS as a map in RESP3.
    c.cmd("HELLO 3");
    assert!(c.cmd("COMMAND DOCS ping").starts_with("%1\r\n"));
}

#[test]
fn info_sections() {
    let s = Server::start();
    let mut c = s.raw();
    c.cmd("XADD s 1-1 a 1");
    c.cmd("XLEN");
    let all = c.cmd("INFO");
    for section in [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Replication",
        "# Errorstats",
        "# Keyspace",
    ] {
        assert!(all.contains(section), "{section} missing: {all}");
    }
    assert!(!all.contains("# Commandstats"));
    assert!(all.contains("redis_version:7.0.15"));
    assert!(all.contains(&format!("tcp_port:{}", s.port)));
    assert!(all.contains("connected_clients:1\r\n"));
    assert!(all.contains("blocked_clients:0\r\n"));
    assert!(all.contains("errorstat_ERR:count=1\r\n"), "{all}");
    assert!(all.contains("db0:keys=1,expires=0"));
    let stats = c.cmd("INFO commandstats");
    assert!(stats.contains("cmdstat_xadd:calls=1,"), "{stats}");
    assert!(stats.contains("rejected_calls=1"), "{stats}");
    let two = c.cmd("INFO clients keyspace");
    assert!(two.contains("# Clients") && two.contains("# Keyspace") && !two.contains("# Server"));
    assert_eq!(c.cmd("INFO nosuchsection"), "$0\r\n\r\n");
    // `all` and `everything` add Commandstats in its place; `default` does not; sections
    // print in Redis' order whatever order they are asked in (checked against 7.0.15).
    for arg in ["all", "everything", "ALL"] {
        let text = c.cmd(&format!("INFO {arg}"));
        let at: Vec<usize> = [
            "# Server",
            "# Modules",
            "# Commandstats",
            "# Errorstats",
            "# Keyspace",
        ]
        .iter()
        .map(|h| {
            text.find(h)
                .unwrap_or_else(|| panic!("INFO {arg}: {h} missing"))
        })
        .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "INFO {arg}: {text}");
    }
    let default = c.cmd("INFO default");
    assert!(default.contains("# Server") && !default.contains("# Commandstats"));
    let swapped = c.cmd("INFO keyspace clients");
    let at = |h: &str| {
        swapped
            .find(h)
            .unwrap_or_else(|| panic!("{h} missing: {swapped}"))
    };
    assert!(at("# Clients") < at("# Keyspace"), "{swapped}");
    assert_eq!(c.cmd("CONFIG RESETSTAT"), "+OK\r\n");
    let stats = c.cmd("INFO commandstats");
    assert!(!stats.contains("cmdstat_xadd"), "{stats}");
}

#[test]
fn config_get_set() {
    let s = Server::start();
    let mut c = s.raw();
    assert_eq!(
        c.cmd("CONFIG GET appendfsync"),
        "*2\r\n$11\r\nappendfsync\r\n$8\r\neverysec\r\n"
    );
    assert_eq!(c.cmd("CONFIG SET appendfsync always"), "+OK\r\n");
    assert_eq!(
        c.cmd("CONFIG GET appendfsync"),
        "*2\r\n$11\r\nappendfsync\r\n$6\r\nalways\r\n"
    );
    assert_eq!(c.cmd("XADD s 1-1 a 1"), "$3\r\n1-1\r\n");
    assert_eq!(
        c.cmd("CONFIG SET appendfsync sometimes"),
        "-ERR CONFIG SET failed (possibly related to argument 'appendfsync') - argument(s) must be one of the following: everysec, always, no\r\n"
    );
    assert_eq!(
        c.cmd("CONFIG SET databases 3"),
        "-ERR CONFIG SET failed (possibly related to argument 'databases') - can't set immutable config\r\n"
    );
    assert_eq!(
        c.cmd("CONFIG SET foo 1"),
        "-ERR Unknown option or number of arguments for CONFIG SET - 'foo'\r\n"
    );
    assert_eq!(
        c.cmd("CONFIG SET timeout 1 timeout 2"),
        "-ERR CONFIG SET failed (possibly related to argument 'timeout') - duplicate parameter\r\n"
    );
    // All or nothing: a bad second pair leaves the first unapplied.
    assert_eq!(
        c.cmd("CONFIG SET timeout 5 maxclients 0"),
        "-ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument must be between 1 and 4294967295 inclusive\r\n"
    );
    assert_eq!(
        c.cmd("CONFIG GET timeout"),
        "*2\r\n$7\r\ntimeout\r\n$1\r\n0\r\n"
    );
    assert_eq!(c.cmd("CONFIG SET notify-keyspace-events KExg"), "+OK\r\n");
    assert_eq!(
        c.cmd("CONFIG GET notify-keyspace-events"),
        "*2\r\n$22\r\nnotify-keyspace-events\r\n$4\r\ngxKE\r\n"
    );
    let many = c.cmd("CONFIG GET *");
    assert!(many.starts_with("*28\r\n"), "{many}");
    assert!(
        many.contains("$14\r\nworker-threads\r\n$1\r\n0\r\n"),
        "{many}"
    );
    assert_eq!(
        c.cmd("CONFIG SET worker-threads 1"),
        "-ERR CONFIG SET failed (possibly related to argument 'worker-threads') - can't set immutable config\r\n"
    );
    let out = c.cmd("CONFIG GET client-output-buffer-limit");
    assert!(out.contains("normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"));
    assert_eq!(c.cmd("CONFIG SET requirepass pw"), "+OK\r\n");
    // Existing connections stay authenticated; new ones must AUTH.
    assert_eq!(c.cmd("PING"), "+PONG\r\n");
    assert_eq!(s.raw().cmd("PING"), "-NOAUTH Authentication required.\r\n");
}

#[test]
fn time_and_unsupported_commands() {
    let s = Server::start();
    let mut c = s.raw();
    let t = c.cmd("TIME");
    assert!(t.starts_with("*2\r\n$10\r\n"), "{t}");
    assert_eq!(
        c.cmd("MONITOR"),
        "-ERR MONITOR is not supported by Sluice\r\n"
    );
    assert_eq!(c.cmd("PING"), "+PONG\r\n");
    assert_eq!(
        c.cmd("DEBUG SEGFAULT"),
        "-ERR Unknown subcommand or wrong number of arguments for 'SEGFAULT'. Try DEBUG HELP.\r\n"
    );
}

/// LASTSAVE is the server's start (Redis with AOF only and no RDB save answers the same),
/// does not move with writes, and agrees with INFO's `rdb_last_save_time`.
#[test]
fn lastsave_is_the_start_and_matches_info() {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let before = now();
    let s = Server::start();
    let mut c = s.raw();
    let at = int(&c.cmd("LASTSAVE"));
    assert!(before - 1 <= at && at <= now(), "{before} {at}");
    c.cmd("XADD s 1-1 a 1");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(int(&c.cmd("LASTSAVE")), at);
    let info = c.cmd("INFO persistence");
    assert!(
        info.contains(&format!("rdb_last_save_time:{at}\r\n")),
        "{info}"
    );
    assert!(c
        .cmd("LASTSAVE x")
        .starts_with("-ERR wrong number of arguments"));
}

#[test]
fn debug_reload_keeps_everything() {
    let s = Server::start();
    let mut c = s.raw();
    c.cmd("XADD s 1-1 a 1");
    c.cmd("XADD s 2-1 b 2");
    c.cmd("XDEL s 1-1");
    c.cmd("XGROUP CREATE s g 0");
    c.cmd("XREADGROUP GROUP g alice COUNT 1 STREAMS s >");
    c.cmd("EXPIRE s 1000");
    c.cmd("SELECT 3");
    c.cmd("XADD t 5-5 x y");
    c.cmd("SELECT 0");
    let probe = |c: &mut common::Raw| {
        vec![
            c.cmd("XRANGE s - +"),
            c.cmd("XINFO STREAM s"),
            c.cmd("XPENDING s g"),
            c.cmd("XINFO GROUPS s"),
            c.cmd("DBSIZE"),
        ]
    };
    let before = probe(&mut c);
    assert_eq!(c.cmd("DEBUG RELOAD"), "+OK\r\n");
    let after = probe(&mut c);
    assert_eq!(before, after);
    let ttl = int(&c.cmd("TTL s"));
    assert!(ttl > 990, "{ttl}");
    c.cmd("SELECT 3");
    assert_eq!(c.cmd("XLEN t"), ":1\r\n");
}

#[test]
fn shutdown_makes_data_durable_and_exits_zero() {
    let mut s = Server::start();
    let mut c = s.raw();
    for i in 1..=100 {
        c.cmd(&format!("XADD s {i}-1 f v"));
    }
    c.send(b"SHUTDOWN\r\n");
    let (text, closed) = c.read_to_close();
    assert_eq!(text, "");
    assert!(closed);
    let (code, log) = s.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("ready to exit"), "{log}");
    s.restart();
    assert_eq!(s.raw().cmd("XLEN s"), ":100\r\n");
}

#[test]
fn sigterm_is_graceful() {
    let mut s = Server::with_args(&["--appendfsync", "no"]);
    let mut c = s.raw();
    for i in 1..=100 {
        c.cmd(&format!("XADD s {i}-1 f v"));
    }
    let (code, log) = s.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("Received SIGTERM"), "{log}");
    // The banner and recovery report were logged at start.
    assert!(
        log.contains("Sluice") && log.contains("appendfsync no"),
        "{log}"
    );
    assert!(log.contains("Recovery:"), "{log}");
    assert!(
        log.contains("Ready to accept connections tcp 127.0.0.1:"),
        "{log}"
    );
    s.restart();
    assert_eq!(s.raw().cmd("XLEN s"), ":100\r\n");
}

#[test]
fn unknown_directive_fails_start_up_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("sluice.conf");
    std::fs::write(&conf, "port 7000\n# comment\nfoo bar\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-server"))
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("*** FATAL CONFIG FILE ERROR"), "{err}");
    assert!(
        err.contains("at line 3\n>>> 'foo bar'\nBad directive or wrong number of arguments"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-server"))
        .args(["--port", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(">>> 'port \"x\"'\nargument couldn't be parsed into an integer"),
        "{err}"
    );
}

#[test]
fn config_file_and_arguments_combine() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("sluice.conf");
    let port = common::free_port();
    std::fs::write(
        &conf,
        format!(
            "port {port}\ndir {}\nappendfsync no\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-server"))
        .arg(&conf)
        .args(["--appendfsync", "always", "--timeout", "7"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut ok = false;
    for _ in 0..200 {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            drop(s);
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(ok);
    let mut c = common::Raw::connect(port);
    assert!(c.cmd("CONFIG GET appendfsync").contains("always"));
    assert!(c.cmd("CONFIG GET timeout").contains("$1\r\n7\r\n"));
    let info = c.cmd("INFO server");
    assert!(info.contains("config_file:"), "{info}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn blocked_clients_show_in_info_and_client_list_and_can_be_unblocked() {
    let s = Server::start();
    let mut blocked = s.raw();
    let id = blocked.cmd("CLIENT ID");
    let id = id.trim_end()[1..].to_string();
    blocked.send(b"XREAD BLOCK 0 STREAMS s $\r\n");
    let mut c = s.raw();
    let mut seen = false;
    for _ in 0..100 {
        if c.cmd("INFO clients").contains("blocked_clients:1\r\n") {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(seen);
    let list = c.cmd("CLIENT LIST");
    let line = list
        .lines()
        .find(|l| l.contains(&format!("id={id} ")))
        .expect("blocked client listed");
    assert!(line.contains(" flags=b "), "{line}");
    assert!(line.contains(" cmd=xread "), "{line}");
    assert_eq!(c.cmd(&format!("CLIENT UNBLOCK {id}")), ":1\r\n");
    assert_eq!(blocked.reply(), "*-1\r\n");
    assert!(c.cmd("INFO clients").contains("blocked_clients:0\r\n"));
    assert_eq!(blocked.cmd("PING"), "+PONG\r\n");
}
