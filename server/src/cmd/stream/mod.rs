//! Stream commands: XADD, XRANGE, XREAD, XREADGROUP, consumer groups and XINFO. Requests are
//! parsed into [`StreamCommand`] with Redis 7.0's exact errors, then executed against the
//! engine. Where Redis checks the key before an argument, the argument's error is kept in the
//! parsed command and raised at the same point during execution.
//!
//! Files by command family: [`write`](mod@write) (XADD, XTRIM, XDEL, XSETID), [`read`] (XLEN, XRANGE,
//! XREVRANGE, XREAD, XREADGROUP), [`group`] (XGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM),
//! [`info`] (XINFO); [`args`] reads IDs and integers as Redis does.

pub mod args;
pub mod group;
pub mod info;
pub mod read;
pub mod write;

/// Helpers shared by the parsing tests of the stream command modules.
#[cfg(test)]
mod testutil {
    use bytes::Bytes;

    use crate::reply::Reply;

    /// Splits a command line into arguments.
    pub fn b(args: &str) -> Vec<Bytes> {
        args.split_whitespace()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    /// The error text of a parse that must fail.
    pub fn err(r: Result<impl std::fmt::Debug, Reply>) -> String {
        match r {
            Err(Reply::Error(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }
}

use bytes::{Bytes, BytesMut};
use sluice_engine::{Entry, EntryRef, Error, StreamId};

use super::{Ctx, Outcome};
use crate::reply::{encode_array_header, encode_bulk, Reply};

/// A parsed stream command.
#[derive(Debug)]
pub enum StreamCommand {
    Add(write::Add),
    Trim(write::Trim),
    Del(write::Del),
    SetId(write::SetId),
    Len(Bytes),
    Range(read::Range),
    Read(read::Read),
    Ack(group::Ack),
    Pending(group::Pending),
    Claim(group::Claim),
    AutoClaim(group::AutoClaim),
    Group(group::GroupCommand),
    Info(info::Info),
}

/// Parses a stream command; `name` is lowercase, `args` exclude the name.
pub fn parse(name: &str, args: &[Bytes]) -> Result<StreamCommand, Reply> {
    let min = |n: usize| {
        if args.len() >= n {
            Ok(())
        } else {
            Err(args::arity(name))
        }
    };
    match name {
        "xadd" => min(4).and_then(|_| write::parse_add(args).map(StreamCommand::Add)),
        "xtrim" => min(3).and_then(|_| write::parse_trim(args).map(StreamCommand::Trim)),
        "xdel" => min(2).and_then(|_| write::parse_del(args).map(StreamCommand::Del)),
        "xsetid" => min(2).and_then(|_| write::parse_setid(args).map(StreamCommand::SetId)),
        "xlen" => match args {
            [key] => Ok(StreamCommand::Len(key.clone())),
            _ => Err(args::arity(name)),
        },
        "xrange" | "xrevrange" => min(3)
            .and_then(|_| read::parse_range(args, name == "xrevrange").map(StreamCommand::Range)),
        "xread" => min(3).and_then(|_| read::parse_read(args, false).map(StreamCommand::Read)),
        "xreadgroup" => min(6).and_then(|_| read::parse_read(args, true).map(StreamCommand::Read)),
        "xack" => min(3).and_then(|_| group::parse_ack(args).map(StreamCommand::Ack)),
        "xpending" => min(2).and_then(|_| group::parse_pending(args).map(StreamCommand::Pending)),
        "xclaim" => min(5).and_then(|_| group::parse_claim(args).map(StreamCommand::Claim)),
        "xautoclaim" => {
            min(5).and_then(|_| group::parse_autoclaim(args).map(StreamCommand::AutoClaim))
        }
        "xgroup" => min(1).and_then(|_| group::parse_group(args).map(StreamCommand::Group)),
        "xinfo" => min(1).and_then(|_| info::parse(args).map(StreamCommand::Info)),
        _ => Err(super::unknown_command(name.as_bytes(), args)),
    }
}

/// Executes a parsed stream command under the engine lock.
pub fn execute(cmd: StreamCommand, ctx: &mut Ctx) -> Outcome {
    let result = match cmd {
        StreamCommand::Add(c) => write::add(c, ctx),
        StreamCommand::Trim(c) => write::trim(c, ctx),
        StreamCommand::Del(c) => write::del(c, ctx),
        StreamCommand::SetId(c) => write::setid(c, ctx),
        StreamCommand::Len(key) => Ok(read::len(&key, ctx)),
        StreamCommand::Range(c) => return read::range(c, ctx),
        StreamCommand::Read(c) => return read::read(c, ctx),
        StreamCommand::Ack(c) => group::ack(c, ctx),
        StreamCommand::Pending(c) => group::pending(c, ctx),
        StreamCommand::Claim(c) => group::claim(c, ctx),
        StreamCommand::AutoClaim(c) => group::autoclaim(c, ctx),
        StreamCommand::Group(c) => group::group(c, ctx),
        StreamCommand::Info(c) => info::info(c, ctx),
    };
    Outcome::Reply(result.unwrap_or_else(|e| e))
}

/// The reply for an engine error, with Redis' wording for those a client can cause.
pub fn engine_error(e: &Error) -> Reply {
    match e {
        Error::NoGroup => Reply::Error("NOGROUP No such consumer group".into()),
        other => super::engine_error(other),
    }
}

/// `-NOGROUP No such key '<key>' or consumer group '<group>'` (XPENDING, XCLAIM, XAUTOCLAIM).
pub fn no_key_or_group(key: &[u8], group: &[u8], suffix: &str) -> Reply {
    Reply::Error(format!(
        "NOGROUP No such key '{}' or consumer group '{}'{suffix}",
        args::lossy(key, usize::MAX),
        args::lossy(group, usize::MAX)
    ))
}

/// `-NOGROUP No such consumer group '<group>' for key name '<key>'` (XGROUP, XINFO).
pub fn no_group_for_key(key: &[u8], group: &[u8]) -> Reply {
    Reply::Error(format!(
        "NOGROUP No such consumer group '{}' for key name '{}'",
        args::lossy(group, usize::MAX),
        args::lossy(key, usize::MAX)
    ))
}

/// One entry as Redis replies it: `[id, [field, value, ...]]`.
pub fn entry_reply(entry: &Entry) -> Reply {
    Reply::Array(vec![args::id_reply(entry.id), fields_reply(&entry.fields)])
}

/// Writes `[id, [field, value, ...]]` for an entry borrowed from the engine, exactly as
/// [`entry_reply`] would encode it (in either protocol).
pub fn encode_entry(out: &mut BytesMut, entry: &EntryRef<'_>) {
    encode_array_header(out, 2);
    encode_id(out, entry.id);
    encode_array_header(out, entry.len() * 2);
    for (f, v) in entry.fields() {
        encode_bulk(out, f);
        encode_bulk(out, v);
    }
}

/// Writes `[id, [field, value, ...]]` for an owned entry (as [`entry_reply`] encodes it).
pub fn encode_fields_entry(out: &mut BytesMut, id: StreamId, fields: &[(Bytes, Bytes)]) {
    encode_array_header(out, 2);
    encode_id(out, id);
    encode_array_header(out, fields.len() * 2);
    for (f, v) in fields {
        encode_bulk(out, f);
        encode_bulk(out, v);
    }
}

/// Writes an ID as the bulk string `ms-seq`, without formatting through a `String`.
fn encode_id(out: &mut BytesMut, id: StreamId) {
    let mut buf = [0u8; 41];
    let mut at = crate::reply::digits_before(&mut buf, 41, id.seq) - 1;
    buf[at] = b'-';
    at = crate::reply::digits_before(&mut buf, at, id.ms);
    encode_bulk(out, &buf[at..]);
}

/// Field/value pairs as a flat array.
pub fn fields_reply(fields: &[(Bytes, Bytes)]) -> Reply {
    let mut flat = Vec::with_capacity(fields.len() * 2);
    for (f, v) in fields {
        flat.push(Reply::Bulk(f.clone()));
        flat.push(Reply::Bulk(v.clone()));
    }
    Reply::Array(flat)
}

/// In-process runs of parsed commands against a real engine in a temporary directory, with
/// replies compared byte for byte to what redis-server 7.0.15 sends.
#[cfg(test)]
pub(crate) mod harness {
    use bytes::{Bytes, BytesMut};
    use sluice_engine::{Engine, Options};

    use crate::cmd::{Ctx, Effects, Outcome};
    use crate::reply::Protocol;

    pub struct Harness {
        _dir: tempfile::TempDir,
        pub engine: Engine,
        pub now_ms: u64,
        pub effects: Effects,
        pub in_multi: bool,
    }

    impl Harness {
        pub fn new() -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let (engine, _) = Engine::open(dir.path(), Options::default()).unwrap();
            Harness {
                _dir: dir,
                engine,
                now_ms: 1_700_000_000_000,
                effects: Effects::default(),
                in_multi: false,
            }
        }

        /// Runs one command line (words split on spaces; `''` is the empty string).
        pub fn outcome(&mut self, line: &str) -> Outcome {
            let words: Vec<Bytes> = line
                .split_whitespace()
                .map(|w| Bytes::copy_from_slice(if w == "''" { b"" } else { w.as_bytes() }))
                .collect();
            let name = String::from_utf8_lossy(&words[0]).to_ascii_lowercase();
            match super::parse(&name, &words[1..]) {
                Err(e) => Outcome::Reply(e),
                Ok(cmd) => {
                    let mut ctx = Ctx {
                        engine: &mut self.engine,
                        db: 0,
                        now_ms: self.now_ms,
                        client_id: 1,
                        in_multi: self.in_multi,
                        effects: &mut self.effects,
                    };
                    super::execute(cmd, &mut ctx)
                }
            }
        }

        /// The reply's wire form, with CR/LF shown as `\r\n` text.
        pub fn raw(&mut self, line: &str, proto: Protocol) -> String {
            let mut out = BytesMut::new();
            match self.outcome(line) {
                Outcome::Reply(r) => r.encode(proto, &mut out),
                // As if the BLOCK timed out with nothing written meanwhile.
                Outcome::Block(_) => crate::reply::Reply::NullArray.encode(proto, &mut out),
                Outcome::Chunked(mut c) => {
                    for _ in 0..1_000_000 {
                        if c.next_chunk(&mut self.engine, proto, &mut out).unwrap() {
                            break;
                        }
                    }
                }
            }
            String::from_utf8_lossy(&out).replace("\r\n", "\\r\\n")
        }

        pub fn r2(&mut self, line: &str) -> String {
            self.raw(line, Protocol::Resp2)
        }

        pub fn r3(&mut self, line: &str) -> String {
            self.raw(line, Protocol::Resp3)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Strategy;

    use super::harness::Harness;

    /// Replies recorded from redis-server 7.0.15 (RESP2 unless marked).
    #[test]
    fn write_and_read_commands_match_redis() {
        let mut h = Harness::new();
        let cases: &[(&str, &str)] = &[
            ("xadd s 1-1 a b", "$3\\r\\n1-1\\r\\n"),
            ("xadd s 1-1 a b", "-ERR The ID specified in XADD is equal or smaller than the target stream top item\\r\\n"),
            ("xadd s 0-* a b", "-ERR The ID specified in XADD is equal or smaller than the target stream top item\\r\\n"),
            ("xadd s 1-* c d", "$3\\r\\n1-2\\r\\n"),
            ("xadd s 5 e f", "$3\\r\\n5-0\\r\\n"),
            ("xlen s", ":3\\r\\n"),
            ("xlen nokey", ":0\\r\\n"),
            ("xadd nokey nomkstream * a b", "$-1\\r\\n"),
            ("xlen nokey", ":0\\r\\n"),
            ("xrange s - + count 1", "*1\\r\\n*2\\r\\n$3\\r\\n1-1\\r\\n*2\\r\\n$1\\r\\na\\r\\n$1\\r\\nb\\r\\n"),
            ("xrange s - + count 0", "*-1\\r\\n"),
            ("xrange nokey - + count 0", "*0\\r\\n"),
            ("xrange s 5 +", "*1\\r\\n*2\\r\\n$3\\r\\n5-0\\r\\n*2\\r\\n$1\\r\\ne\\r\\n$1\\r\\nf\\r\\n"),
            ("xrange s (1-1 (5-0", "*1\\r\\n*2\\r\\n$3\\r\\n1-2\\r\\n*2\\r\\n$1\\r\\nc\\r\\n$1\\r\\nd\\r\\n"),
            ("xrevrange s + - count 1", "*1\\r\\n*2\\r\\n$3\\r\\n5-0\\r\\n*2\\r\\n$1\\r\\ne\\r\\n$1\\r\\nf\\r\\n"),
            ("xrevrange s - +", "*0\\r\\n"),
            ("xread streams s 1-2", "*1\\r\\n*2\\r\\n$1\\r\\ns\\r\\n*1\\r\\n*2\\r\\n$3\\r\\n5-0\\r\\n*2\\r\\n$1\\r\\ne\\r\\n$1\\r\\nf\\r\\n"),
            ("xread streams s 9", "*-1\\r\\n"),
            ("xread streams s $", "*-1\\r\\n"),
            ("xread streams nokey s 0 5", "*-1\\r\\n"),
            ("xread streams s >", "-ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.\\r\\n"),
            ("xdel s 1-2 9-9", ":1\\r\\n"),
            ("xdel s bad", "-ERR Invalid stream ID specified as stream command argument\\r\\n"),
            ("xdel nokey bad", ":0\\r\\n"),
            ("xtrim s maxlen 1", ":1\\r\\n"),
            ("xtrim nokey maxlen 1", ":0\\r\\n"),
            ("xsetid nokey 1-1", "-ERR no such key\\r\\n"),
            ("xsetid s 1-1", "-ERR The ID specified in XSETID is smaller than the target stream top item\\r\\n"),
            ("xsetid s 100-1 entriesadded 1", "+OK\\r\\n"),
            ("xadd s 18446744073709551615-18446744073709551615 a b", "$41\\r\\n18446744073709551615-18446744073709551615\\r\\n"),
            ("xadd s * a b", "-ERR The stream has exhausted the last possible ID, unable to add more items\\r\\n"),
            ("xadd t maxlen 0 * a b", "$15\\r\\n1700000000000-0\\r\\n"),
            ("xlen t", ":0\\r\\n"),
        ];
        for (cmd, want) in cases {
            assert_eq!(h.r2(cmd), *want, "{cmd}");
        }
    }

    #[test]
    fn resp3_shapes() {
        let mut h = Harness::new();
        h.r2("xadd s 1-1 a b");
        assert_eq!(h.r3("xread streams s 0"), "%1\\r\\n$1\\r\\ns\\r\\n*1\\r\\n*2\\r\\n$3\\r\\n1-1\\r\\n*2\\r\\n$1\\r\\na\\r\\n$1\\r\\nb\\r\\n");
        assert_eq!(h.r3("xread streams s 9"), "_\\r\\n");
    }

    #[test]
    fn xinfo_stream_resp3() {
        let mut h = Harness::new();
        h.r2("xadd s 1-1 a b");
        h.r2("xdel s 1-1");
        assert_eq!(
            h.r3("xinfo stream s"),
            "%10\\r\\n$6\\r\\nlength\\r\\n:0\\r\\n$15\\r\\nradix-tree-keys\\r\\n:0\\r\\n$16\\r\\nradix-tree-nodes\\r\\n:1\\r\\n$17\\r\\nlast-generated-id\\r\\n$3\\r\\n1-1\\r\\n$20\\r\\nmax-deleted-entry-id\\r\\n$3\\r\\n1-1\\r\\n$13\\r\\nentries-added\\r\\n:1\\r\\n$23\\r\\nrecorded-first-entry-id\\r\\n$3\\r\\n0-0\\r\\n$6\\r\\ngroups\\r\\n:0\\r\\n$11\\r\\nfirst-entry\\r\\n_\\r\\n$10\\r\\nlast-entry\\r\\n_\\r\\n"
        );
    }

    #[test]
    fn block_outcomes() {
        let mut h = Harness::new();
        h.r2("xadd s 1-1 a b");
        assert!(matches!(
            h.outcome("xread block 0 streams s $"),
            crate::cmd::Outcome::Block(_)
        ));
        assert_eq!(h.r2("xread block 10 streams s 0"), "*1\\r\\n*2\\r\\n$1\\r\\ns\\r\\n*1\\r\\n*2\\r\\n$3\\r\\n1-1\\r\\n*2\\r\\n$1\\r\\na\\r\\n$1\\r\\nb\\r\\n");
        h.in_multi = true;
        assert!(matches!(
            h.outcome("xread block 0 streams s $"),
            crate::cmd::Outcome::Reply(crate::reply::Reply::NullArray)
        ));
    }

    #[test]
    fn large_ranges_are_chunked() {
        let mut h = Harness::new();
        for i in 1..=2500 {
            h.r2(&format!("xadd s {i}-1 f {i}"));
        }
        for (cmd, n, first, last) in [
            ("xrange s - +", 2500, 1, 2500),
            ("xrange s 2 + count 2300", 2300, 2, 2301),
            ("xrange s (100-1 2400", 2300, 101, 2400),
            ("xrevrange s + - count 1001", 1001, 2500, 1500),
            ("xrevrange s 2000 -", 2000, 2000, 1),
        ] {
            let raw = h.r2(cmd);
            assert!(
                raw.starts_with(&format!(
                    "*{n}\\r\\n*2\\r\\n${}\\r\\n{first}-1\\r\\n",
                    first.to_string().len() + 2
                )),
                "{cmd}: {}",
                &raw[..60]
            );
            assert_eq!(raw.matches("-1\\r\\n*2\\r\\n").count(), n, "{cmd}");
            assert!(raw.ends_with(&format!("{last}\\r\\n")), "{cmd}");
            assert!(raw.contains(&format!("{last}-1\\r\\n")), "{cmd}");
        }
        h.r2("xadd t 1-1 a b");
        for (cmd, n, first, last) in [
            ("xread streams s t 0 0", 2500, 1, 2500),
            ("xread count 1500 streams t s 0 100-1", 1500, 101, 1600),
        ] {
            for proto in [crate::reply::Protocol::Resp2, crate::reply::Protocol::Resp3] {
                let raw = h.raw(cmd, proto);
                let head = match proto {
                    crate::reply::Protocol::Resp2 => "*2\\r\\n*2\\r\\n",
                    crate::reply::Protocol::Resp3 => "%2\\r\\n",
                };
                assert!(raw.starts_with(head), "{cmd}: {}", &raw[..40]);
                assert!(
                    raw.contains(&format!(
                        "$1\\r\\ns\\r\\n*{n}\\r\\n*2\\r\\n${}\\r\\n{first}-1\\r\\n",
                        first.to_string().len() + 2
                    )),
                    "{cmd}"
                );
                assert!(
                    raw.contains("$1\\r\\nt\\r\\n*1\\r\\n*2\\r\\n$3\\r\\n1-1\\r\\n"),
                    "{cmd}"
                );
                assert_eq!(raw.matches("-1\\r\\n*2\\r\\n").count(), n + 1, "{cmd}");
                assert!(
                    raw.contains(&format!(
                        "{last}-1\\r\\n*2\\r\\n$1\\r\\nf\\r\\n${}\\r\\n{last}\\r\\n",
                        last.to_string().len()
                    )),
                    "{cmd}"
                );
            }
        }
    }

    #[test]
    fn chunked_reply_ignores_later_appends_and_aborts_on_deletes() {
        use bytes::BytesMut;

        use crate::cmd::Outcome;
        use crate::reply::Protocol;

        let mut h = Harness::new();
        for i in 1..=2100 {
            h.r2(&format!("xadd s {i}-1 f v"));
        }
        let Outcome::Chunked(mut c) = h.outcome("xrange s 2 +") else {
            panic!("expected a chunked reply")
        };
        let mut out = BytesMut::new();
        let mut done = false;
        let mut calls = 0;
        while !done {
            done = c
                .next_chunk(&mut h.engine, Protocol::Resp2, &mut out)
                .unwrap();
            calls += 1;
            if calls == 1 {
                h.r2("xadd s 5000-1 f v");
            }
        }
        assert!(out.starts_with(b"*2099\r\n"));
        assert!(!String::from_utf8_lossy(&out).contains("5000-1"));

        let Outcome::Chunked(mut c) = h.outcome("xrange s - +") else {
            panic!("expected a chunked reply")
        };
        let mut out = BytesMut::new();
        c.next_chunk(&mut h.engine, Protocol::Resp2, &mut out)
            .unwrap();
        assert!(out.starts_with(b"*2101\r\n"));
        h.r2("xtrim s maxlen 10");
        let mut result = Ok(false);
        for _ in 0..10 {
            result = c.next_chunk(&mut h.engine, Protocol::Resp2, &mut out);
            if result != Ok(false) {
                break;
            }
        }
        assert!(result.is_err(), "{result:?}");
    }

    /// The keyspace events (and their order) redis-server 7.0.15 raised for this sequence,
    /// recorded with `notify-keyspace-events KEAn`.
    #[test]
    fn keyspace_events_match_redis() {
        let mut h = Harness::new();
        for line in [
            "xadd s 1-1 a b",
            "xgroup create s g 0",
            "xreadgroup group g c streams s >",
            "xgroup createconsumer s g c",
            "xgroup createconsumer s g c2",
            "xclaim s g c3 0 1-1",
            "xgroup delconsumer s g nobody",
            "xgroup delconsumer s g c2",
            "xgroup create s2 g $ mkstream",
            "xtrim s maxlen 5",
            "xdel s 9-9",
            "xgroup setid s g 0",
            "xgroup destroy s g",
            "xgroup destroy s g",
            "xsetid s 5-5",
            "xadd s maxlen 0 6-6 a b",
        ] {
            h.r2(line);
        }
        let got: Vec<(char, &str, &[u8])> = h
            .effects
            .events
            .iter()
            .map(|e| (e.class, e.event, e.key.as_ref()))
            .collect();
        let want: Vec<(char, &str, &[u8])> = vec![
            ('n', "new", b"s"),
            ('t', "xadd", b"s"),
            ('t', "xgroup-create", b"s"),
            ('t', "xgroup-createconsumer", b"s"),
            ('t', "xgroup-createconsumer", b"s"),
            ('t', "xgroup-createconsumer", b"s"),
            ('t', "xgroup-delconsumer", b"s"),
            ('n', "new", b"s2"),
            ('t', "xgroup-create", b"s2"),
            ('t', "xgroup-setid", b"s"),
            ('t', "xgroup-destroy", b"s"),
            ('t', "xsetid", b"s"),
            ('t', "xadd", b"s"),
            ('t', "xtrim", b"s"),
        ];
        assert_eq!(got, want);
    }

    proptest::proptest! {
        /// Parsing never panics, whatever the arguments: every index is guarded by arity.
        #[test]
        fn parse_never_panics(
            name in proptest::sample::select(vec![
                "xadd", "xtrim", "xdel", "xsetid", "xlen", "xrange", "xrevrange", "xread",
                "xreadgroup", "xack", "xpending", "xclaim", "xautoclaim", "xgroup", "xinfo",
            ]),
            args in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        "*", "$", ">", "+", "-", "(", "(1", "0", "1-1", "5-*", "~", "=", "-1",
                        "MAXLEN", "MINID", "LIMIT", "NOMKSTREAM", "COUNT", "BLOCK", "STREAMS",
                        "GROUP", "NOACK", "IDLE", "TIME", "RETRYCOUNT", "FORCE", "JUSTID",
                        "LASTID", "CREATE", "SETID", "DESTROY", "CREATECONSUMER",
                        "DELCONSUMER", "HELP", "MKSTREAM", "ENTRIESREAD", "STREAM", "GROUPS",
                        "CONSUMERS", "FULL", "ENTRIESADDED", "MAXDELETEDID",
                    ]).prop_map(String::from),
                    "[ -~]{0,6}",
                ],
                0..12,
            ),
        ) {
            let args: Vec<bytes::Bytes> = args.into_iter().map(bytes::Bytes::from).collect();
            let _ = super::parse(name, &args);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(24))]
        /// Random command sequences over a few keys and IDs execute without panicking.
        #[test]
        fn execute_never_panics(
            lines in proptest::collection::vec(
                proptest::sample::select(vec![
                    "xadd s * f v", "xadd s 5-* f v", "xadd s maxlen 2 * f v",
                    "xadd s minid 3 * f v", "xadd s nomkstream 9 f v", "xadd t * f v",
                    "xdel s 1-0 5-0", "xtrim s maxlen 1", "xtrim s minid 5",
                    "xsetid s 999-0", "xsetid s 0-1", "xrange s - +", "xrevrange s + - count 1",
                    "xread count 2 streams s t 0 0", "xread block 0 streams s $",
                    "xgroup create s g 0", "xgroup create s g $ mkstream",
                    "xgroup create t g 0 mkstream", "xgroup setid s g 0",
                    "xgroup setid s g $ entriesread 3", "xgroup destroy s g",
                    "xgroup createconsumer s g c", "xgroup delconsumer s g c",
                    "xreadgroup group g c streams s >", "xreadgroup group g c streams s 0",
                    "xreadgroup group g d noack count 1 streams s t > >",
                    "xreadgroup group g c block 0 streams s >", "xack s g 1-0 5-0",
                    "xpending s g", "xpending s g idle 0 - + 5 c",
                    "xclaim s g d 0 1-0 5-0 force", "xclaim s g d 0 5-0 justid lastid 99-0",
                    "xautoclaim s g e 0 0 count 2", "xautoclaim s g e 0 0 justid",
                    "xinfo stream s", "xinfo stream s full count 0", "xinfo groups s",
                    "xinfo consumers s g", "xlen s",
                ]),
                1..40,
            ),
        ) {
            let mut h = Harness::new();
            for line in lines {
                let _ = h.r2(line);
                let _ = h.r3(line);
            }
        }
    }
}
