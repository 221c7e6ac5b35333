//! Black-box tests of the stream commands (XADD, XRANGE, XREVRANGE, XREAD, XDEL, XTRIM, XLEN,
//! XSETID, XINFO STREAM) against the real binary, in RESP2 and RESP3.

mod common;
mod stream_support;

use common::Server;

use redis::streams::{StreamMaxlen, StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{Commands, Value};
use stream_support::{bulk, entry, field, keyed, line};

#[test]
fn xadd_and_ranges_with_the_typed_client() {
    let server = Server::start();
    for resp3 in [false, true] {
        let mut con = server.client_proto(resp3);
        let key = format!("typed{resp3}");
        let id: String = con.xadd(&key, "*", &[("a", "1"), ("b", "2")]).unwrap();
        assert!(id.contains('-'));
        let old: redis::RedisResult<String> = con.xadd(&key, "1-*", &[("c", "3")]);
        assert!(old.is_err());
        for i in 0..5 {
            let _: String = con
                .xadd_maxlen(&key, StreamMaxlen::Equals(3), "*", &[("i", i)])
                .unwrap();
        }
        let len: u64 = con.xlen(&key).unwrap();
        assert_eq!(len, 3);
        let all: StreamRangeReply = con.xrange_all(&key).unwrap();
        let values: Vec<String> = all
            .ids
            .iter()
            .map(|e| e.get::<String>("i").unwrap())
            .collect();
        assert_eq!(values, ["2", "3", "4"]);
        let rev: StreamRangeReply = con.xrevrange_count(&key, "+", "-", 1).unwrap();
        assert_eq!(rev.ids.len(), 1);
        assert_eq!(rev.ids[0].get::<String>("i").unwrap(), "4");
        let read: StreamReadReply = con
            .xread_options(&[&key], &[&all.ids[0].id], &StreamReadOptions::default())
            .unwrap();
        assert_eq!(read.keys.len(), 1);
        assert_eq!(read.keys[0].ids.len(), 2);
    }
}

#[test]
fn replies_have_redis_shapes() {
    let server = Server::start();
    for resp3 in [false, true] {
        let mut con = server.client_proto(resp3);
        line(&mut con, "del s").unwrap();
        assert_eq!(line(&mut con, "xadd s 1-1 a b"), Ok(bulk("1-1")));
        assert_eq!(line(&mut con, "xadd s 1-* c d"), Ok(bulk("1-2")));
        assert_eq!(line(&mut con, "xadd s 5 e f"), Ok(bulk("5-0")));
        assert_eq!(
            line(&mut con, "xadd nokey nomkstream * a b"),
            Ok(Value::Nil)
        );
        assert_eq!(line(&mut con, "exists nokey"), Ok(Value::Int(0)));
        assert_eq!(
            line(&mut con, "xrange s - + count 2"),
            Ok(Value::Array(vec![
                entry("1-1", &["a", "b"]),
                entry("1-2", &["c", "d"])
            ]))
        );
        assert_eq!(line(&mut con, "xrange s - + count 0"), Ok(Value::Nil));
        assert_eq!(line(&mut con, "xrange nokey - +"), Ok(Value::Array(vec![])));
        assert_eq!(
            line(&mut con, "xrevrange s (5-0 (1-1"),
            Ok(Value::Array(vec![entry("1-2", &["c", "d"])]))
        );
        assert_eq!(
            line(&mut con, "xread count 1 streams s nokey 1-1 0"),
            Ok(keyed(resp3, vec![("s", vec![entry("1-2", &["c", "d"])])]))
        );
        assert_eq!(line(&mut con, "xread streams s $"), Ok(Value::Nil));
        assert_eq!(line(&mut con, "xdel s 1-2 9-9"), Ok(Value::Int(1)));
        assert_eq!(line(&mut con, "xtrim s maxlen 1"), Ok(Value::Int(1)));
        assert_eq!(line(&mut con, "xlen s"), Ok(Value::Int(1)));
        assert_eq!(
            line(&mut con, "xsetid s 10-0 entriesadded 7"),
            Ok(Value::Okay)
        );
        let info = line(&mut con, "xinfo stream s").unwrap();
        if resp3 {
            assert!(matches!(info, Value::Map(_)), "{info:?}");
        }
        assert_eq!(field(&info, "length"), &Value::Int(1));
        assert_eq!(field(&info, "last-generated-id"), &bulk("10-0"));
        assert_eq!(field(&info, "max-deleted-entry-id"), &bulk("1-2"));
        assert_eq!(field(&info, "entries-added"), &Value::Int(7));
        assert_eq!(field(&info, "first-entry"), &entry("5-0", &["e", "f"]));
        assert_eq!(field(&info, "groups"), &Value::Int(0));
    }
}

#[test]
fn errors_have_redis_texts() {
    let server = Server::start();
    let mut con = server.client_proto(false);
    line(&mut con, "xadd s 5-5 a b").unwrap();
    for (cmd, want) in [
        ("xadd s", "ERR wrong number of arguments for 'xadd' command"),
        ("xadd s * a", "ERR wrong number of arguments for 'xadd' command"),
        ("xadd s 0-0 a b", "ERR The ID specified in XADD must be greater than 0-0"),
        ("xadd s 5-5 a b", "ERR The ID specified in XADD is equal or smaller than the target stream top item"),
        ("xadd s abc a b", "ERR Invalid stream ID specified as stream command argument"),
        ("xadd s maxlen x * a b", "ERR value is not an integer or out of range"),
        ("xadd s maxlen 1 limit 5 * a b", "ERR syntax error, LIMIT cannot be used without the special ~ option"),
        ("xrange s - + foo", "ERR syntax error"),
        ("xrange s (18446744073709551615-18446744073709551615 +", "ERR invalid start ID for the interval"),
        ("xread block -1 streams s 0", "ERR timeout is negative"),
        ("xread streams s t 0", "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified."),
        ("xread streams s >", "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option."),
        ("xtrim s foo 1", "ERR syntax error"),
        ("xsetid nokey 1-1", "ERR no such key"),
        ("xsetid s 1-1", "ERR The ID specified in XSETID is smaller than the target stream top item"),
        ("xinfo stream nokey", "ERR no such key"),
        ("xinfo foo", "ERR unknown subcommand 'foo'. Try XINFO HELP."),
    ] {
        assert_eq!(line(&mut con, cmd), Err(want.to_string()), "{cmd}");
    }
}

#[test]
fn a_large_range_arrives_whole_and_in_order() {
    let server = Server::start();
    let mut con = server.client_proto(false);
    let mut pipe = redis::pipe();
    for i in 1..=5000u64 {
        pipe.cmd("XADD")
            .arg("big")
            .arg(format!("{i}-0"))
            .arg("n")
            .arg(i)
            .ignore();
    }
    pipe.query::<()>(&mut con).unwrap();
    for resp3 in [false, true] {
        let mut con = server.client_proto(resp3);
        let all: StreamRangeReply = con.xrange_all("big").unwrap();
        assert_eq!(all.ids.len(), 5000);
        assert!(all
            .ids
            .iter()
            .enumerate()
            .all(|(i, e)| e.id == format!("{}-0", i + 1)));
        let rev: StreamRangeReply = con.xrevrange("big", "4000", "(10").unwrap();
        assert_eq!(rev.ids.len(), 3990);
        assert_eq!(rev.ids[0].id, "4000-0");
        let read: StreamReadReply = con
            .xread_options(&["big"], &["0"], &StreamReadOptions::default())
            .unwrap();
        assert_eq!(read.keys[0].ids.len(), 5000);
        // The connection is still in step after the chunked replies.
        assert_eq!(line(&mut con, "xlen big"), Ok(Value::Int(5000)));
    }
}

/// Pipelined XADDs to one key are written as one batch; their replies (IDs, per-entry
/// errors, parse errors between them, another key, a trimming XADD) must be exactly those
/// of the same commands sent one at a time.
#[test]
fn pipelined_xadds_reply_as_if_sent_one_by_one() {
    let server = Server::start();
    let script: &[&str] = &[
        "XADD a 5-1 f v",
        "XADD a 5-1 f v",
        "XADD a 0-0 f v",
        "XADD a 5-* f v",
        "XADD a 7 f v g w",
        "XADD b 1 f v",
        "XADD a 8 f",
        "XADD a 9 f v",
        "XLEN a",
        "XADD a MAXLEN 2 10 f v",
        "XADD a 11 f v",
        "XADD a 11 f v",
        "XRANGE a - +",
        "XLEN b",
    ];
    let mut raw = server.raw();
    let mut pipelined = Vec::new();
    for line in script {
        let words: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
        pipelined.extend_from_slice(&common::multibulk(&words));
    }
    raw.send(&pipelined);
    let batched: Vec<String> = script.iter().map(|_| raw.reply()).collect();
    assert_eq!(raw.cmd("FLUSHALL"), "+OK\r\n");
    let one_by_one: Vec<String> = script.iter().map(|line| raw.cmd(line)).collect();
    assert_eq!(batched, one_by_one);
    assert_eq!(batched[0], "$3\r\n5-1\r\n");
    assert!(
        batched[1].starts_with("-ERR The ID specified in XADD is equal or smaller"),
        "{}",
        batched[1]
    );
    assert_eq!(batched[3], "$3\r\n5-2\r\n");
    assert_eq!(batched[5], "$3\r\n1-0\r\n");
    assert!(batched[6].starts_with("-ERR wrong number of arguments"));
    assert_eq!(batched[8], ":4\r\n");
    assert!(batched[11].starts_with("-ERR The ID specified in XADD is equal or smaller"));
    assert!(
        batched[12].starts_with("*3\r\n*2\r\n$3\r\n9-0\r\n"),
        "{}",
        batched[12]
    );
    assert_eq!(batched[13], ":1\r\n");
}
