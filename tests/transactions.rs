//! Black-box tests of MULTI/EXEC/DISCARD/WATCH/UNWATCH.

mod common;

use common::Server;

#[test]
fn multi_exec_runs_queued_commands() {
    let s = Server::start();
    let mut c = s.raw();
    assert_eq!(c.cmd("MULTI"), "+OK\r\n");
    assert_eq!(c.cmd("XADD s 1-1 a 1"), "+QUEUED\r\n");
    assert_eq!(c.cmd("XADD s 2-1 a 2"), "+QUEUED\r\n");
    assert_eq!(c.cmd("XLEN s"), "+QUEUED\r\n");
    assert_eq!(c.cmd("PING"), "+QUEUED\r\n");
    assert_eq!(
        c.cmd("EXEC"),
        "*4\r\n$3\r\n1-1\r\n$3\r\n2-1\r\n:2\r\n+PONG\r\n"
    );
}

#[test]
fn runtime_errors_do_not_abort_the_transaction() {
    let s = Server::start();
    let mut c = s.raw();
    c.cmd("MULTI");
    c.cmd("XADD s 5-1 a 1");
    c.cmd("XADD s 1-1 a 1");
    c.cmd("XLEN s");
    assert_eq!(
        c.cmd("EXEC"),
        "*3\r\n$3\r\n5-1\r\n-ERR The ID specified in XADD is equal or smaller than the target stream top item\r\n:1\r\n"
    );
}

#[test]
fn queueing_errors_give_execabort() {
    let s = Server::start();
    let mut c = s.raw();
    c.cmd("MULTI");
    assert_eq!(c.cmd("XADD s 1-1 a 1"), "+QUEUED\r\n");
    assert_eq!(
        c.cmd("XLEN"),
        "-ERR wrong number of arguments for 'xlen' command\r\n"
    );
    assert_eq!(
        c.cmd("GET x"),
        "-ERR unknown command 'GET', with args beginning with: 'x' \r\n"
    );
    assert_eq!(
        c.cmd("EXEC"),
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(c.cmd("EXISTS s"), ":0\r\n");
}

#[test]
fn nesting_and_misuse_errors() {
    let s = Server::start();
    let mut c = s.raw();
    assert_eq!(c.cmd("EXEC"), "-ERR EXEC without MULTI\r\n");
    assert_eq!(c.cmd("DISCARD"), "-ERR DISCARD without MULTI\r\n");
    c.cmd("MULTI");
    assert_eq!(c.cmd("MULTI"), "-ERR MULTI calls can not be nested\r\n");
    assert_eq!(
        c.cmd("WATCH a"),
        "-ERR WATCH inside MULTI is not allowed\r\n"
    );
    assert_eq!(c.cmd("DISCARD"), "+OK\r\n");
    assert_eq!(c.cmd("PING"), "+PONG\r\n");
}

#[test]
fn watch_aborts_exec_when_another_client_writes() {
    let s = Server::start();
    let mut a = s.raw();
    let mut b = s.raw();
    a.cmd("XADD s 1-1 a 1");
    assert_eq!(a.cmd("WATCH s"), "+OK\r\n");
    b.cmd("XADD s 2-1 a 2");
    a.cmd("MULTI");
    a.cmd("XADD s 3-1 a 3");
    assert_eq!(a.cmd("EXEC"), "*-1\r\n");
    assert_eq!(a.cmd("XLEN s"), ":2\r\n");
    // The watch is gone after EXEC: a new transaction succeeds.
    a.cmd("MULTI");
    a.cmd("XADD s 3-1 a 3");
    assert_eq!(a.cmd("EXEC"), "*1\r\n$3\r\n3-1\r\n");
    // RESP3 null for an aborted EXEC.
    a.cmd("HELLO 3");
    a.cmd("WATCH s");
    b.cmd("DEL s");
    a.cmd("MULTI");
    a.cmd("XLEN s");
    assert_eq!(a.cmd("EXEC"), "_\r\n");
}

/// Redis 7.0 counts no consumer-group command as a modification for WATCH, XGROUP DESTROY
/// included (checked side by side with redis-server 7.0.15).
#[test]
fn group_commands_do_not_abort_a_watching_exec() {
    let s = Server::start();
    let mut a = s.raw();
    let mut b = s.raw();
    a.cmd("XADD s 1-1 a 1");
    a.cmd("XGROUP CREATE s g 0");
    for other in [
        "XGROUP CREATECONSUMER s g c2",
        "XREADGROUP GROUP g c STREAMS s >",
        "XACK s g 1-1",
        "XGROUP SETID s g 0",
        "XGROUP DELCONSUMER s g c2",
        "XGROUP CREATE s g2 0",
        "XCLAIM s g c3 0 1-1",
        "XGROUP DESTROY s g",
    ] {
        assert_eq!(a.cmd("WATCH s"), "+OK\r\n");
        assert!(!b.cmd(other).starts_with('-'), "{other} failed");
        a.cmd("MULTI");
        a.cmd("XLEN s");
        assert_eq!(a.cmd("EXEC"), "*1\r\n:1\r\n", "after {other}");
    }
}

#[test]
fn watch_untouched_and_unwatch() {
    let s = Server::start();
    let mut a = s.raw();
    let mut b = s.raw();
    a.cmd("WATCH s other");
    b.cmd("XADD unrelated 1-1 a 1");
    a.cmd("MULTI");
    a.cmd("XADD s 1-1 a 1");
    assert_eq!(a.cmd("EXEC"), "*1\r\n$3\r\n1-1\r\n");
    a.cmd("WATCH s");
    assert_eq!(a.cmd("UNWATCH"), "+OK\r\n");
    b.cmd("XADD s 2-1 a 1");
    a.cmd("MULTI");
    a.cmd("XLEN s");
    assert_eq!(a.cmd("EXEC"), "*1\r\n:2\r\n");
    // FLUSHALL invalidates every watch.
    a.cmd("WATCH s");
    b.cmd("FLUSHALL");
    a.cmd("MULTI");
    a.cmd("XLEN s");
    assert_eq!(a.cmd("EXEC"), "*-1\r\n");
}

#[test]
fn redis_crate_atomic_pipeline() {
    let s = Server::start();
    let mut con = s.client();
    let (id1, id2, len): (String, String, i64) = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg("p")
        .arg("1-1")
        .arg("f")
        .arg("v")
        .cmd("XADD")
        .arg("p")
        .arg("2-1")
        .arg("f")
        .arg("v")
        .cmd("XLEN")
        .arg("p")
        .query(&mut con)
        .unwrap();
    assert_eq!((id1.as_str(), id2.as_str(), len), ("1-1", "2-1", 2));
}

#[test]
fn transaction_is_atomic_for_other_clients() {
    let s = Server::start();
    let port = s.port;
    let writer = std::thread::spawn(move || {
        let mut c = common::Raw::connect(port);
        for round in 0..200 {
            c.cmd("MULTI");
            c.cmd(&format!("XADD a {}-1 f v", round + 1));
            c.cmd(&format!("XADD b {}-1 f v", round + 1));
            c.cmd("EXEC");
        }
    });
    let mut r = s.raw();
    for _ in 0..200 {
        r.cmd("MULTI");
        r.cmd("XLEN a");
        r.cmd("XLEN b");
        let reply = r.cmd("EXEC");
        let lens: Vec<&str> = reply.split("\r\n").filter(|l| l.starts_with(':')).collect();
        assert_eq!(lens[0], lens[1], "{reply}");
    }
    writer.join().unwrap();
}

#[test]
fn exec_under_always_is_durable_before_reply() {
    let mut s = Server::with_args(&["--appendfsync", "always"]);
    let mut c = s.raw();
    c.cmd("MULTI");
    for i in 1..=50 {
        c.cmd(&format!("XADD s {i}-1 f v"));
    }
    let reply = c.cmd("EXEC");
    assert!(reply.starts_with("*50\r\n"));
    drop(c);
    s.restart(); // SIGKILL right after the reply
    let mut c = s.raw();
    assert_eq!(c.cmd("XLEN s"), ":50\r\n");
}
