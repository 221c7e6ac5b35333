//! Black-box tests of blocking reads: XREAD/XREADGROUP BLOCK, wake-ups by other clients,
//! FIFO service, deleted keys and destroyed groups, CLIENT UNBLOCK, MULTI, and INFO's
//! `blocked_clients`, in RESP2 and RESP3.

mod common;
mod stream_support;

use common::Server;

use std::thread;
use std::time::{Duration, Instant};

use redis::Value;
use stream_support::{entry, keyed, line};

/// Runs a blocking command on its own connection and thread.
fn spawn(
    server: &Server,
    resp3: bool,
    cmd: &'static str,
) -> (u64, thread::JoinHandle<Result<Value, String>>) {
    let mut con = server.client_proto(resp3);
    let Ok(Value::Int(id)) = line(&mut con, "client id") else {
        panic!("CLIENT ID failed")
    };
    let handle = thread::spawn(move || line(&mut con, cmd));
    (id as u64, handle)
}

fn blocked_clients(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query(con)
        .expect("INFO clients");
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("blocked_clients in INFO clients")
}

fn until_blocked(con: &mut redis::Connection, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while blocked_clients(con) != n {
        assert!(
            Instant::now() < deadline,
            "never reached {n} blocked clients"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn xread_block_times_out_with_nil() {
    let server = Server::start();
    for resp3 in [false, true] {
        let mut con = server.client_proto(resp3);
        let start = Instant::now();
        assert_eq!(
            line(&mut con, "xread block 100 streams s $"),
            Ok(Value::Nil)
        );
        assert!(start.elapsed() >= Duration::from_millis(90));
        assert_eq!(blocked_clients(&mut con), 0);
    }
}

#[test]
fn xread_block_is_woken_by_a_write_to_any_of_its_keys() {
    let server = Server::start();
    for resp3 in [false, true] {
        let mut con = server.client_proto(resp3);
        line(&mut con, "flushall").unwrap();
        line(&mut con, "xadd a 1-1 old x").unwrap();
        let (_, forever) = spawn(&server, resp3, "xread block 0 streams a b $ $");
        let (_, timed) = spawn(&server, resp3, "xread block 10000 streams b 0");
        until_blocked(&mut con, 2);
        line(&mut con, "xadd b 5-1 f v").unwrap();
        let want = keyed(resp3, vec![("b", vec![entry("5-1", &["f", "v"])])]);
        assert_eq!(forever.join().unwrap(), Ok(want.clone()));
        assert_eq!(timed.join().unwrap(), Ok(want));
        assert_eq!(blocked_clients(&mut con), 0);
    }
}

#[test]
fn xreadgroup_waiters_are_served_in_arrival_order() {
    let server = Server::start();
    for resp3 in [false, true] {
        let mut con = server.client_proto(resp3);
        line(&mut con, "flushall").unwrap();
        line(&mut con, "xgroup create s g $ mkstream").unwrap();
        let (_, first) = spawn(&server, resp3, "xreadgroup group g c1 block 0 streams s >");
        until_blocked(&mut con, 1);
        let (_, second) = spawn(&server, resp3, "xreadgroup group g c2 block 0 streams s >");
        until_blocked(&mut con, 2);
        line(&mut con, "xadd s 1-1 f v").unwrap();
        assert_eq!(
            first.join().unwrap(),
            Ok(keyed(resp3, vec![("s", vec![entry("1-1", &["f", "v"])])]))
        );
        until_blocked(&mut con, 1);
        line(&mut con, "xadd s 2-1 f v").unwrap();
        assert_eq!(
            second.join().unwrap(),
            Ok(keyed(resp3, vec![("s", vec![entry("2-1", &["f", "v"])])]))
        );
        assert_eq!(
            line(&mut con, "xpending s g - + 10 c2").map(|v| match v {
                Value::Array(rows) => rows.len(),
                _ => 99,
            }),
            Ok(1)
        );
    }
}

#[test]
fn deleting_the_key_or_the_group_wakes_xreadgroup_with_an_error() {
    let server = Server::start();
    for resp3 in [false, true] {
        let mut con = server.client_proto(resp3);
        line(&mut con, "flushall").unwrap();
        line(&mut con, "xgroup create a g $ mkstream").unwrap();
        line(&mut con, "xgroup create b g $ mkstream").unwrap();
        let (_, on_a) = spawn(&server, resp3, "xreadgroup group g c block 0 streams a >");
        let (_, on_b) = spawn(&server, resp3, "xreadgroup group g c block 0 streams b >");
        until_blocked(&mut con, 2);
        line(&mut con, "del a").unwrap();
        assert_eq!(
            on_a.join().unwrap(),
            Err("UNBLOCKED the stream key no longer exists".into())
        );
        line(&mut con, "xgroup destroy b g").unwrap();
        assert_eq!(
            on_b.join().unwrap(),
            Err("NOGROUP the consumer group this client was blocked on no longer exists".into())
        );
        assert_eq!(blocked_clients(&mut con), 0);
    }
}

/// CLIENT UNBLOCK wakes a blocked XREAD, and a WAIT for a replica (there are none), with
/// its timeout reply, or with an error.
#[test]
fn client_unblock_wakes_with_timeout_or_error() {
    let server = Server::start();
    for resp3 in [false, true] {
        for (blocking, timed_out) in [
            ("xread block 0 streams s $", Value::Nil),
            ("wait 1 0", Value::Int(0)),
        ] {
            let mut con = server.client_proto(resp3);
            let (id1, w1) = spawn(&server, resp3, blocking);
            let (id2, w2) = spawn(&server, resp3, blocking);
            until_blocked(&mut con, 2);
            assert_eq!(
                line(&mut con, &format!("client unblock {id1}")),
                Ok(Value::Int(1))
            );
            assert_eq!(
                line(&mut con, &format!("client unblock {id2} error")),
                Ok(Value::Int(1))
            );
            assert_eq!(
                line(&mut con, &format!("client unblock {id2}")),
                Ok(Value::Int(0))
            );
            assert_eq!(w1.join().unwrap(), Ok(timed_out));
            assert_eq!(
                w2.join().unwrap(),
                Err("UNBLOCKED client unblocked via CLIENT UNBLOCK".into())
            );
            assert_eq!(blocked_clients(&mut con), 0);
        }
    }
}

/// WAIT for a replica blocks for its whole timeout and answers 0 replicas, as Redis
/// without replicas does; WAIT for none answers at once.
#[test]
fn wait_blocks_until_its_timeout() {
    let server = Server::start();
    for resp3 in [false, true] {
        let mut con = server.client_proto(resp3);
        assert_eq!(line(&mut con, "wait 0 0"), Ok(Value::Int(0)));
        let started = std::time::Instant::now();
        assert_eq!(line(&mut con, "wait 1 100"), Ok(Value::Int(0)));
        assert!(started.elapsed() >= Duration::from_millis(100));
    }
}

#[test]
fn block_inside_multi_does_not_block() {
    let server = Server::start();
    for resp3 in [false, true] {
        let mut con = server.client_proto(resp3);
        line(&mut con, "multi").unwrap();
        assert_eq!(
            line(&mut con, "xread block 0 streams s $"),
            Ok(Value::SimpleString("QUEUED".into()))
        );
        assert_eq!(line(&mut con, "exec"), Ok(Value::Array(vec![Value::Nil])));
    }
}

#[test]
fn a_disconnected_waiter_is_no_longer_counted() {
    let server = Server::start();
    let mut con = server.client_proto(false);
    let mut waiter = server.client_proto(false);
    let t = thread::spawn(move || {
        waiter
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let _ = line(&mut waiter, "xread block 0 streams s $");
        drop(waiter);
    });
    until_blocked(&mut con, 1);
    t.join().unwrap();
    until_blocked(&mut con, 0);
}

#[test]
fn waiters_see_only_their_database_and_their_count() {
    let server = Server::start();
    for resp3 in [false, true] {
        let mut con = server.client_proto(resp3);
        line(&mut con, "flushall").unwrap();
        let mut in_db1 = server.client_proto(resp3);
        line(&mut in_db1, "select 1").unwrap();
        let waiter = thread::spawn(move || line(&mut in_db1, "xread count 1 block 0 streams s 0"));
        until_blocked(&mut con, 1);
        // Same key name in database 0: not for the waiter.
        line(&mut con, "xadd s 1-1 a b").unwrap();
        thread::sleep(Duration::from_millis(50));
        assert_eq!(blocked_clients(&mut con), 1);
        line(&mut con, "select 1").unwrap();
        // A MULTI writing two entries wakes it once, with COUNT honoured.
        line(&mut con, "multi").unwrap();
        line(&mut con, "xadd s 7-1 a b").unwrap();
        line(&mut con, "xadd s 8-1 c d").unwrap();
        line(&mut con, "exec").unwrap();
        assert_eq!(
            waiter.join().unwrap(),
            Ok(keyed(resp3, vec![("s", vec![entry("7-1", &["a", "b"])])]))
        );
        line(&mut con, "select 0").unwrap();
    }
}

#[test]
fn xreadgroup_block_times_out_and_creates_the_consumer_only_when_served() {
    let server = Server::start();
    for resp3 in [false, true] {
        let mut con = server.client_proto(resp3);
        line(&mut con, "flushall").unwrap();
        line(&mut con, "xgroup create s g $ mkstream").unwrap();
        assert_eq!(
            line(&mut con, "xreadgroup group g c block 50 streams s >"),
            Ok(Value::Nil)
        );
        assert_eq!(
            line(&mut con, "xinfo consumers s g"),
            Ok(Value::Array(vec![]))
        );
        let (_, w) = spawn(&server, resp3, "xreadgroup group g c block 0 streams s >");
        until_blocked(&mut con, 1);
        line(&mut con, "xadd s 3-1 f v").unwrap();
        assert_eq!(
            w.join().unwrap(),
            Ok(keyed(resp3, vec![("s", vec![entry("3-1", &["f", "v"])])]))
        );
        let Ok(Value::Array(consumers)) = line(&mut con, "xinfo consumers s g") else {
            panic!("XINFO CONSUMERS")
        };
        assert_eq!(consumers.len(), 1);
    }
}
