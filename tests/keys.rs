//! Black-box tests of the generic key commands over streams: DEL, UNLINK, EXISTS, TYPE, KEYS,
//! SCAN, RENAME(NX), the EXPIRE family (durable), TTL/PTTL, PERSIST, DBSIZE, RANDOMKEY,
//! FLUSHDB/FLUSHALL.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::Server;
use redis::Commands;

fn add(con: &mut redis::Connection, key: &str) {
    let _: String = redis::cmd("XADD")
        .arg(key)
        .arg("*")
        .arg("f")
        .arg("v")
        .query(con)
        .expect("XADD");
}

#[test]
fn del_exists_type() {
    let s = Server::start();
    let mut con = s.client();
    add(&mut con, "a");
    add(&mut con, "b");
    let n: i64 = con.exists(&["a", "b", "a", "nokey"]).unwrap();
    assert_eq!(n, 3);
    let t: String = redis::cmd("TYPE").arg("a").query(&mut con).unwrap();
    assert_eq!(t, "stream");
    let t: String = redis::cmd("TYPE").arg("nokey").query(&mut con).unwrap();
    assert_eq!(t, "none");
    let n: i64 = con.del(&["a", "nokey"]).unwrap();
    assert_eq!(n, 1);
    let n: i64 = redis::cmd("UNLINK").arg("b").query(&mut con).unwrap();
    assert_eq!(n, 1);
    let n: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn randomkey_returns_every_live_key_and_no_expired_one() {
    let s = Server::start();
    let mut raw = s.raw();
    assert_eq!(raw.cmd("RANDOMKEY"), "$-1\r\n");
    for k in ["a", "b", "c", "d"] {
        raw.cmd(&format!("XADD {k} 1-1 f v"));
    }
    raw.cmd("DEL b");
    let mut seen = HashSet::new();
    for _ in 0..300 {
        seen.insert(raw.cmd("RANDOMKEY"));
    }
    let want: HashSet<String> = ["a", "c", "d"]
        .iter()
        .map(|k| format!("$1\r\n{k}\r\n"))
        .collect();
    assert_eq!(seen, want);
    assert_eq!(raw.cmd("PEXPIRE a 30"), ":1\r\n");
    assert_eq!(raw.cmd("PEXPIRE c 30"), ":1\r\n");
    std::thread::sleep(Duration::from_millis(60));
    for _ in 0..50 {
        assert_eq!(raw.cmd("RANDOMKEY"), "$1\r\nd\r\n");
    }
    raw.cmd("DEL d");
    assert_eq!(raw.cmd("RANDOMKEY"), "$-1\r\n");
    assert!(raw
        .cmd("RANDOMKEY x")
        .starts_with("-ERR wrong number of arguments"));
}

#[test]
fn keys_and_scan_with_match_count_type() {
    let s = Server::start();
    let mut con = s.client();
    for i in 0..50 {
        add(&mut con, &format!("user:{i}"));
    }
    add(&mut con, "other");
    let mut keys: Vec<String> = con.keys("user:*").unwrap();
    keys.sort();
    assert_eq!(keys.len(), 50);
    let keys: Vec<String> = con.keys("user:1?").unwrap();
    assert_eq!(keys.len(), 10);
    let keys: Vec<String> = con.keys("[o]th*").unwrap();
    assert_eq!(keys, vec!["other".to_string()]);
    // A full SCAN returns every key at least once.
    let mut seen = HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("user:*")
            .arg("COUNT")
            .arg(7)
            .query(&mut con)
            .unwrap();
        seen.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 50);
    let (_, batch): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("TYPE")
        .arg("string")
        .arg("COUNT")
        .arg(1000)
        .query(&mut con)
        .unwrap();
    assert!(batch.is_empty());
    let iter: Vec<String> = con.scan_match("oth*").unwrap().collect();
    assert_eq!(iter, vec!["other".to_string()]);
    let mut raw = s.raw();
    assert_eq!(raw.cmd("SCAN x"), "-ERR invalid cursor\r\n");
    assert_eq!(raw.cmd("SCAN 0 COUNT 0"), "-ERR syntax error\r\n");
}

#[test]
fn rename_and_renamenx() {
    let s = Server::start();
    let mut raw = s.raw();
    raw.cmd("XADD a 1-1 f 1");
    raw.cmd("XADD b 2-1 f 2");
    assert_eq!(raw.cmd("RENAME nokey x"), "-ERR no such key\r\n");
    assert_eq!(raw.cmd("RENAMENX a b"), ":0\r\n");
    assert_eq!(raw.cmd("RENAME a c"), "+OK\r\n");
    assert_eq!(raw.cmd("EXISTS a"), ":0\r\n");
    assert_eq!(
        raw.cmd("XRANGE c - +"),
        "*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\n1\r\n"
    );
    assert_eq!(raw.cmd("RENAME c b"), "+OK\r\n");
    assert_eq!(raw.cmd("XLEN b"), ":1\r\n");
    assert_eq!(
        raw.cmd("XRANGE b - +"),
        "*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\n1\r\n"
    );
    assert_eq!(raw.cmd("RENAMENX b d"), ":1\r\n");
    assert_eq!(raw.cmd("RENAME d d"), "+OK\r\n");
    assert_eq!(raw.cmd("DBSIZE"), ":1\r\n");
}

#[test]
fn expire_family_options_and_ttls() {
    let s = Server::start();
    let mut raw = s.raw();
    raw.cmd("XADD k 1-1 f v");
    assert_eq!(raw.cmd("TTL k"), ":-1\r\n");
    assert_eq!(raw.cmd("TTL nokey"), ":-2\r\n");
    assert_eq!(raw.cmd("EXPIRE k 100 XX"), ":0\r\n");
    assert_eq!(raw.cmd("EXPIRE k 100 GT"), ":0\r\n");
    assert_eq!(raw.cmd("EXPIRE k 100 NX"), ":1\r\n");
    assert_eq!(raw.cmd("EXPIRE k 50 GT"), ":0\r\n");
    assert_eq!(raw.cmd("EXPIRE k 200 GT"), ":1\r\n");
    assert_eq!(raw.cmd("TTL k"), ":200\r\n");
    let pttl = raw.cmd("PTTL k");
    let pttl: i64 = pttl[1..pttl.len() - 2].parse().unwrap();
    assert!(pttl > 199_000 && pttl <= 200_000, "{pttl}");
    assert_eq!(raw.cmd("PERSIST k"), ":1\r\n");
    assert_eq!(raw.cmd("PERSIST k"), ":0\r\n");
    assert_eq!(raw.cmd("EXPIREAT k 4102444800"), ":1\r\n");
    assert_eq!(raw.cmd("EXPIRETIME k"), ":4102444800\r\n");
    assert_eq!(raw.cmd("PEXPIRETIME k"), ":4102444800000\r\n");
    assert_eq!(raw.cmd("PEXPIREAT k 4102444800001 LT"), ":0\r\n");
    assert_eq!(
        raw.cmd("EXPIRE k 1 NX XX"),
        "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n"
    );
    assert_eq!(
        raw.cmd("EXPIRE k 9223372036854775807"),
        "-ERR invalid expire time in 'expire' command\r\n"
    );
    // A deadline in the past deletes the key.
    assert_eq!(raw.cmd("EXPIRE k -1"), ":1\r\n");
    assert_eq!(raw.cmd("EXISTS k"), ":0\r\n");
}

#[test]
fn keys_expire_lazily_and_actively() {
    let s = Server::start();
    let mut raw = s.raw();
    raw.cmd("XADD lazy 1-1 f v");
    raw.cmd("XADD active 1-1 f v");
    assert_eq!(raw.cmd("PEXPIRE lazy 100"), ":1\r\n");
    assert_eq!(raw.cmd("PEXPIRE active 100"), ":1\r\n");
    std::thread::sleep(Duration::from_millis(150));
    // Lazy: the read sees no key.
    assert_eq!(raw.cmd("XLEN lazy"), ":0\r\n");
    // Active: the background cycle removes it without anyone touching it.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(raw.cmd("DBSIZE"), ":0\r\n");
    let info = raw.cmd("INFO stats");
    assert!(info.contains("expired_keys:2"), "{info}");
}

#[test]
fn expiry_survives_a_crash() {
    let mut s = Server::with_args(&["--appendfsync", "always"]);
    let mut raw = s.raw();
    raw.cmd("XADD k 1-1 f v");
    raw.cmd("XADD p 1-1 f v");
    assert_eq!(raw.cmd("EXPIRE k 1000"), ":1\r\n");
    assert_eq!(raw.cmd("EXPIRE p 1000"), ":1\r\n");
    assert_eq!(raw.cmd("PERSIST p"), ":1\r\n");
    drop(raw);
    s.restart();
    let mut raw = s.raw();
    let ttl = raw.cmd("TTL k");
    let ttl: i64 = ttl[1..ttl.len() - 2].parse().unwrap();
    assert!(ttl > 990 && ttl <= 1000, "{ttl}");
    assert_eq!(raw.cmd("TTL p"), ":-1\r\n");
}

#[test]
fn flushdb_and_flushall() {
    let s = Server::start();
    let mut raw = s.raw();
    raw.cmd("XADD a 1-1 f v");
    raw.cmd("SELECT 1");
    raw.cmd("XADD b 1-1 f v");
    assert_eq!(raw.cmd("FLUSHDB"), "+OK\r\n");
    assert_eq!(raw.cmd("DBSIZE"), ":0\r\n");
    raw.cmd("SELECT 0");
    assert_eq!(raw.cmd("DBSIZE"), ":1\r\n");
    raw.cmd("SELECT 2");
    raw.cmd("XADD c 1-1 f v");
    assert_eq!(raw.cmd("FLUSHALL SYNC"), "+OK\r\n");
    assert_eq!(raw.cmd("DBSIZE"), ":0\r\n");
    raw.cmd("SELECT 0");
    assert_eq!(raw.cmd("DBSIZE"), ":0\r\n");
    assert_eq!(raw.cmd("FLUSHDB FOO"), "-ERR syntax error\r\n");
}

#[test]
fn info_keyspace_counts_keys_and_expires() {
    let s = Server::start();
    let mut raw = s.raw();
    raw.cmd("XADD a 1-1 f v");
    raw.cmd("XADD b 1-1 f v");
    raw.cmd("EXPIRE a 100");
    raw.cmd("SELECT 4");
    raw.cmd("XADD c 1-1 f v");
    let info = raw.cmd("INFO keyspace");
    assert!(info.contains("db0:keys=2,expires=1,avg_ttl=0"), "{info}");
    assert!(info.contains("db4:keys=1,expires=0,avg_ttl=0"), "{info}");
}

#[test]
fn keyspace_events_for_generic_commands_and_expiry() {
    let s = Server::with_args(&["--notify-keyspace-events", "KEgx"]);
    let mut sub = s.raw();
    assert!(sub.cmd("PSUBSCRIBE __key*__:*").contains("psubscribe"));
    let mut c = s.raw();
    c.cmd("XADD k 1-1 f v");
    c.cmd("EXPIRE k 100");
    c.cmd("RENAME k k2");
    c.cmd("PEXPIRE k2 50");
    let mut events = Vec::new();
    while events.len() < 10 {
        let msg = sub.reply();
        let parts: Vec<&str> = msg.split("\r\n").collect();
        // *4 $8 pmessage $pat pat $chan chan $data data
        events.push(format!("{} {}", parts[6], parts[8]));
    }
    assert_eq!(
        events,
        [
            "__keyspace@0__:k expire",
            "__keyevent@0__:expire k",
            "__keyspace@0__:k rename_from",
            "__keyevent@0__:rename_from k",
            "__keyspace@0__:k2 rename_to",
            "__keyevent@0__:rename_to k2",
            "__keyspace@0__:k2 expire",
            "__keyevent@0__:expire k2",
            "__keyspace@0__:k2 expired",
            "__keyevent@0__:expired k2",
        ]
    );
}
