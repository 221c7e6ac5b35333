//! Black-box tests of consumer groups (XGROUP, XREADGROUP, XACK, XPENDING, XCLAIM,
//! XAUTOCLAIM, XINFO GROUPS/CONSUMERS/STREAM FULL) against the real binary, RESP2 and RESP3.

mod common;
mod stream_support;

use common::Server;

use redis::streams::{
    StreamClaimOptions, StreamClaimReply, StreamInfoConsumersReply, StreamInfoGroupsReply,
    StreamPendingCountReply, StreamPendingReply, StreamReadOptions, StreamReadReply,
};
use redis::{Commands, Value};
use stream_support::{bulk, entry, field, keyed, line};

#[test]
fn a_group_delivers_acks_and_claims_with_the_typed_client() {
    let server = Server::start();
    for resp3 in [false, true] {
        let mut con = server.client_proto(resp3);
        let key = format!("jobs{resp3}");
        for i in 1..=3 {
            let _: String = con.xadd(&key, format!("{i}-0"), &[("job", i)]).unwrap();
        }
        let _: () = con.xgroup_create(&key, "workers", "0").unwrap();
        let opts = StreamReadOptions::default()
            .group("workers", "alice")
            .count(2);
        let got: StreamReadReply = con.xread_options(&[&key], &[">"], &opts).unwrap();
        assert_eq!(got.keys[0].ids.len(), 2);
        let opts = StreamReadOptions::default().group("workers", "bob");
        let got: StreamReadReply = con.xread_options(&[&key], &[">"], &opts).unwrap();
        assert_eq!(got.keys[0].ids[0].id, "3-0");
        let acked: u64 = con.xack(&key, "workers", &["1-0"]).unwrap();
        assert_eq!(acked, 1);
        match con
            .xpending::<_, _, StreamPendingReply>(&key, "workers")
            .unwrap()
        {
            StreamPendingReply::Data(d) => {
                assert_eq!(d.count, 2);
                assert_eq!((d.start_id.as_str(), d.end_id.as_str()), ("2-0", "3-0"));
                assert_eq!(d.consumers.len(), 2);
            }
            StreamPendingReply::Empty => panic!("pending entries expected"),
        }
        let detail: StreamPendingCountReply =
            con.xpending_count(&key, "workers", "-", "+", 10).unwrap();
        assert_eq!(detail.ids.len(), 2);
        assert_eq!(detail.ids[0].consumer, "alice");
        let claimed: StreamClaimReply = con
            .xclaim_options(
                &key,
                "workers",
                "carol",
                0,
                &["2-0"],
                StreamClaimOptions::default(),
            )
            .unwrap();
        assert_eq!(claimed.ids[0].id, "2-0");
        let groups: StreamInfoGroupsReply = con.xinfo_groups(&key).unwrap();
        assert_eq!(groups.groups[0].name, "workers");
        assert_eq!(groups.groups[0].pending, 2);
        assert_eq!(groups.groups[0].last_delivered_id, "3-0");
        let consumers: StreamInfoConsumersReply = con.xinfo_consumers(&key, "workers").unwrap();
        let names: Vec<&str> = consumers
            .consumers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["alice", "bob", "carol"]);
    }
}

#[test]
fn group_replies_have_redis_shapes() {
    let server = Server::start();
    for resp3 in [false, true] {
        let mut con = server.client_proto(resp3);
        line(&mut con, "flushall").unwrap();
        line(&mut con, "xadd s 1-1 a b").unwrap();
        line(&mut con, "xadd s 2-1 c d").unwrap();
        assert_eq!(line(&mut con, "xgroup create s g 0"), Ok(Value::Okay));
        assert_eq!(
            line(&mut con, "xgroup create m g $ mkstream"),
            Ok(Value::Okay)
        );
        assert_eq!(line(&mut con, "xlen m"), Ok(Value::Int(0)));
        assert_eq!(
            line(&mut con, "xreadgroup group g c streams s >"),
            Ok(keyed(
                resp3,
                vec![(
                    "s",
                    vec![entry("1-1", &["a", "b"]), entry("2-1", &["c", "d"])]
                )]
            ))
        );
        assert_eq!(
            line(&mut con, "xreadgroup group g c streams s >"),
            Ok(Value::Nil)
        );
        line(&mut con, "xdel s 1-1").unwrap();
        assert_eq!(
            line(&mut con, "xreadgroup group g c streams s 0"),
            Ok(keyed(
                resp3,
                vec![(
                    "s",
                    vec![
                        Value::Array(vec![bulk("1-1"), Value::Nil]),
                        entry("2-1", &["c", "d"])
                    ]
                )]
            ))
        );
        assert_eq!(
            line(&mut con, "xreadgroup group g other streams s 0"),
            Ok(keyed(resp3, vec![("s", vec![])]))
        );
        assert_eq!(
            line(&mut con, "xpending s g"),
            Ok(Value::Array(vec![
                Value::Int(2),
                bulk("1-1"),
                bulk("2-1"),
                Value::Array(vec![Value::Array(vec![bulk("c"), bulk("2")])]),
            ]))
        );
        assert_eq!(
            line(&mut con, "xpending m g"),
            Ok(Value::Array(vec![
                Value::Int(0),
                Value::Nil,
                Value::Nil,
                Value::Nil
            ]))
        );
        assert_eq!(line(&mut con, "xack s g 1-1 9-9"), Ok(Value::Int(1)));
        assert_eq!(
            line(&mut con, "xclaim s g d 0 2-1 justid"),
            Ok(Value::Array(vec![bulk("2-1")]))
        );
        assert_eq!(
            line(&mut con, "xautoclaim s g e 0 0 count 10"),
            Ok(Value::Array(vec![
                bulk("0-0"),
                Value::Array(vec![entry("2-1", &["c", "d"])]),
                Value::Array(vec![]),
            ]))
        );
        let groups = line(&mut con, "xinfo groups s").unwrap();
        let Value::Array(groups) = groups else {
            panic!("{groups:?}")
        };
        assert_eq!(field(&groups[0], "name"), &bulk("g"));
        assert_eq!(field(&groups[0], "pending"), &Value::Int(1));
        assert_eq!(field(&groups[0], "last-delivered-id"), &bulk("2-1"));
        let full = line(&mut con, "xinfo stream s full").unwrap();
        let Value::Array(fg) = field(&full, "groups") else {
            panic!("{full:?}")
        };
        assert_eq!(field(&fg[0], "pel-count"), &Value::Int(1));
        assert_eq!(
            line(&mut con, "xgroup createconsumer s g z"),
            Ok(Value::Int(1))
        );
        assert_eq!(
            line(&mut con, "xgroup delconsumer s g e"),
            Ok(Value::Int(1))
        );
        assert_eq!(
            line(&mut con, "xgroup setid s g 0 entriesread 0"),
            Ok(Value::Okay)
        );
        assert_eq!(line(&mut con, "xgroup destroy s g"), Ok(Value::Int(1)));
        assert_eq!(line(&mut con, "xgroup destroy s g"), Ok(Value::Int(0)));
        let help = line(&mut con, "xgroup help").unwrap();
        let Value::Array(help) = help else {
            panic!("{help:?}")
        };
        assert_eq!(help.len(), 17);
    }
}

#[test]
fn group_errors_have_redis_texts() {
    let server = Server::start();
    let mut con = server.client_proto(false);
    line(&mut con, "xadd s 1-1 a b").unwrap();
    line(&mut con, "xgroup create s g 0").unwrap();
    for (cmd, want) in [
        ("xgroup create s g 0", "BUSYGROUP Consumer Group name already exists"),
        ("xgroup create nokey g 0", "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically."),
        ("xgroup create s g2 0 foo", "ERR unknown subcommand or wrong number of arguments for 'create'. Try XGROUP HELP."),
        ("xgroup setid s nog 0", "NOGROUP No such consumer group 'nog' for key name 's'"),
        ("xgroup foo", "ERR unknown subcommand 'foo'. Try XGROUP HELP."),
        ("xreadgroup group nog c streams s >", "NOGROUP No such key 's' or consumer group 'nog' in XREADGROUP with GROUP option"),
        ("xreadgroup group g c streams s $", "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set."),
        ("xpending s nog", "NOGROUP No such key 's' or consumer group 'nog'"),
        ("xpending s g - +", "ERR syntax error"),
        ("xclaim s g c x 1-1", "ERR Invalid min-idle-time argument for XCLAIM"),
        ("xclaim s g c 0 1-1 foo", "ERR Unrecognized XCLAIM option 'foo'"),
        ("xautoclaim s g c 0 0 count 0", "ERR COUNT must be > 0"),
        ("xinfo consumers s nog", "NOGROUP No such consumer group 'nog' for key name 's'"),
    ] {
        assert_eq!(line(&mut con, cmd), Err(want.to_string()), "{cmd}");
    }
}
