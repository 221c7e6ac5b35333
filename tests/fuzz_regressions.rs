//! Replays the fuzz targets' saved inputs in the normal test run, without nightly features:
//! every input that once crashed a target (`fuzz/regressions/<target>/`) and the seed corpora
//! (`fuzz/corpus/<target>/`), through the same checks the targets run (`fuzz/checks.rs`).

use std::path::{Path, PathBuf};

#[path = "../fuzz/checks.rs"]
mod checks;

use sluice_engine::fuzzing;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for kind in ["regressions", "corpus"] {
        let dir = root.join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e.expect("read a fuzz input directory").path();
            if path.is_file() {
                let bytes = std::fs::read(&path).expect("read a fuzz input");
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

fn replay(target: &str, check: impl Fn(&[u8])) {
    let all = inputs(target);
    assert!(!all.is_empty(), "no saved inputs for {target}");
    for (path, bytes) in all {
        eprintln!("replaying {}", path.display());
        check(&bytes);
    }
}

#[test]
fn resp_parser() {
    replay("resp_parser", checks::resp_parser);
}

#[test]
fn command_parse() {
    replay("command_parse", checks::command_parse);
}

#[test]
fn record_decode() {
    replay("record_decode", fuzzing::decode_records);
}

#[test]
fn segment_recovery() {
    replay("segment_recovery", |b| {
        fuzzing::recover(&fuzzing::segment_image(b));
    });
}

#[test]
fn group_recovery() {
    replay("group_recovery", |b| {
        fuzzing::recover(&fuzzing::group_image(b));
    });
}

/// Regenerates the seed corpora (`cargo test -p sluice-server --test fuzz_regressions --
/// --ignored write_seed_corpora`): valid requests of every command and protocol edge cases,
/// and directories written by the real engine, whole and with torn tails.
#[test]
#[ignore]
fn write_seed_corpora() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };

    // Requests: every command and subcommand, valid forms and some errors (inline syntax).
    let lines: &[&str] = &[
        "PING",
        "PING hi",
        "ECHO x",
        "HELLO",
        "HELLO 3",
        "HELLO 2 AUTH default pw SETNAME n",
        "AUTH pw",
        "AUTH default pw",
        "QUIT",
        "RESET",
        "SELECT 1",
        "SELECT -1",
        "SELECT x",
        "CLIENT ID",
        "CLIENT SETNAME n",
        "CLIENT GETNAME",
        "CLIENT SETINFO LIB-NAME x",
        "CLIENT INFO",
        "CLIENT LIST",
        "CLIENT LIST TYPE normal",
        "CLIENT LIST ID 1 2",
        "CLIENT KILL 127.0.0.1:1",
        "CLIENT KILL ID 1 SKIPME no",
        "CLIENT REPLY ON",
        "CLIENT UNBLOCK 1 ERROR",
        "CLIENT NO-EVICT on",
        "CLIENT HELP",
        "CLIENT BOGUS",
        "DEL a b",
        "UNLINK a",
        "EXISTS a a",
        "TYPE a",
        "KEYS *",
        "KEYS h?llo[^e]*",
        "SCAN 0",
        "SCAN 0 MATCH a* COUNT 10 TYPE stream",
        "SCAN x",
        "RENAME a b",
        "RENAMENX a b",
        "EXPIRE a 10",
        "EXPIRE a 10 NX",
        "EXPIRE a 10 XX GT",
        "PEXPIRE a 9223372036854775807",
        "EXPIREAT a 1 LT",
        "PEXPIREAT a -5",
        "EXPIRETIME a",
        "PEXPIRETIME a",
        "TTL a",
        "PTTL a",
        "PERSIST a",
        "TOUCH a b",
        "DBSIZE",
        "FLUSHDB",
        "FLUSHDB ASYNC",
        "FLUSHALL SYNC",
        "FLUSHALL x",
        "MULTI",
        "EXEC",
        "DISCARD",
        "WATCH a b",
        "UNWATCH",
        "COMMAND",
        "COMMAND COUNT",
        "COMMAND INFO xadd get",
        "COMMAND DOCS xadd",
        "COMMAND LIST",
        "COMMAND LIST FILTERBY PATTERN x*",
        "COMMAND HELP",
        "INFO",
        "INFO all",
        "INFO server clients",
        "CONFIG GET *",
        "CONFIG GET maxmemory appendfsync",
        "CONFIG SET appendfsync always",
        "CONFIG SET a b c d",
        "CONFIG RESETSTAT",
        "CONFIG HELP",
        "TIME",
        "SHUTDOWN NOSAVE",
        "SHUTDOWN ABORT",
        "DEBUG SLEEP 0",
        "DEBUG RELOAD",
        "DEBUG JMAP",
        "MONITOR",
        "XADD s * f v",
        "XADD s NOMKSTREAM MAXLEN ~ 10 LIMIT 5 * f v a b",
        "XADD s MINID = 5-0 1-* f v",
        "XADD s 18446744073709551615-18446744073709551615 f v",
        "XADD s 0-0 f v",
        "XADD s * f",
        "XADD s LIMIT 5 * f v",
        "XADD s 1-x f v",
        "XRANGE s - +",
        "XRANGE s (1-0 (2 COUNT 5",
        "XRANGE s 1 2 COUNT -1",
        "XREVRANGE s + - COUNT 3",
        "XREVRANGE s (+ (-",
        "XREAD COUNT 2 STREAMS s t 0 $",
        "XREAD BLOCK 0 STREAMS s +",
        "XREAD STREAMS s",
        "XREAD BLOCK -1 STREAMS s 0",
        "XREADGROUP GROUP g c COUNT 1 BLOCK 10 NOACK STREAMS s >",
        "XREADGROUP GROUP g c STREAMS s t 0 >",
        "XACK s g 1-0 2-0",
        "XACK s g x",
        "XPENDING s g",
        "XPENDING s g IDLE 10 - + 10 c",
        "XPENDING s g - + 10",
        "XPENDING s g (1 (2 -1",
        "XCLAIM s g c 10 1-0 2-0 IDLE 5 TIME 7 RETRYCOUNT 2 FORCE JUSTID LASTID 9-9",
        "XCLAIM s g c -1 1-0",
        "XAUTOCLAIM s g c 10 0-0 COUNT 5 JUSTID",
        "XAUTOCLAIM s g c 10 (0 COUNT 0",
        "XTRIM s MAXLEN 10",
        "XTRIM s MINID ~ 1-0 LIMIT 3",
        "XTRIM s MAXLEN = -1",
        "XDEL s 1-0 2",
        "XLEN s",
        "XINFO STREAM s",
        "XINFO STREAM s FULL COUNT 5",
        "XINFO GROUPS s",
        "XINFO CONSUMERS s g",
        "XINFO HELP",
        "XGROUP CREATE s g $ MKSTREAM ENTRIESREAD 5",
        "XGROUP CREATE s g 0",
        "XGROUP SETID s g 1-0 ENTRIESREAD -1",
        "XGROUP DESTROY s g",
        "XGROUP CREATECONSUMER s g c",
        "XGROUP DELCONSUMER s g c",
        "XGROUP HELP",
        "XSETID s 5-0 ENTRIESADDED 10 MAXDELETEDID 3-0",
        "XSETID s 0",
        "SUBSCRIBE a b",
        "UNSUBSCRIBE",
        "UNSUBSCRIBE a",
        "PSUBSCRIBE h*",
        "PUNSUBSCRIBE",
        "PUBLISH a m",
        "PUBSUB CHANNELS",
        "PUBSUB CHANNELS a*",
        "PUBSUB NUMSUB a b",
        "PUBSUB NUMPAT",
        "PUBSUB SHARDCHANNELS",
        "PUBSUB SHARDNUMSUB a",
        "PUBSUB HELP",
        "SSUBSCRIBE a",
        "SUNSUBSCRIBE a",
        "SPUBLISH a m",
        "NOSUCHCOMMAND a b",
    ];
    let mut all = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let inline = format!("{line}\r\n");
        let args: Vec<Vec<u8>> = line.split(' ').map(|a| a.as_bytes().to_vec()).collect();
        let mut multibulk = format!("*{}\r\n", args.len()).into_bytes();
        for a in &args {
            multibulk.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            multibulk.extend_from_slice(a);
            multibulk.extend_from_slice(b"\r\n");
        }
        let name = line.split(' ').next().unwrap().to_ascii_lowercase();
        write(
            "command_parse",
            &format!("{i:03}-{name}"),
            inline.as_bytes(),
        );
        let mut r = vec![0u8];
        r.extend_from_slice(&multibulk);
        write("resp_parser", &format!("{i:03}-{name}"), &r);
        all.extend_from_slice(&multibulk);
    }
    let mut pipelined = vec![0u8];
    pipelined.extend_from_slice(&all[..all.len().min(3000)]);
    write("resp_parser", "pipelined", &pipelined);
    let edge: &[(&str, &[u8])] = &[
        ("empty-requests", b"\x00*0\r\n*-1\r\n\r\n\n  \r\nPING\n"),
        (
            "inline-quotes",
            b"\x00SET \"a\\x41\\n\" 'b c' \"it's\" 'x\\'y'\r\n",
        ),
        ("unbalanced", b"\x00PING \"a\r\n"),
        ("closing-quote", b"\x00ECHO \"a\"b\r\n"),
        ("null-bulk", b"\x00*1\r\n$-1\r\n"),
        ("bad-lengths", b"\x00*2\r\n$+1\r\na\r\n"),
        ("leading-zero", b"\x00*01\r\n$01\r\na\r\n"),
        ("huge-count", b"\x00*1048576\r\n$536870912\r\nab"),
        ("over-max-args", b"\x00*1048577\r\n"),
        ("nested", b"\x00*2\r\n*1\r\n$1\r\na\r\n"),
        ("not-dollar", b"\x00*1\r\n+OK\r\n"),
        ("small-max-bulk", b"\x01*1\r\n$17\r\naaaaaaaaaaaaaaaaa\r\n"),
        ("unauthenticated", b"\x02*11\r\n$1\r\na\r\n"),
        ("unauth-bulk", b"\x02*1\r\n$16385\r\n"),
        ("near-inline-limit", b"\x14bc\r\nPING\r\n"),
        ("near-header-limit", b"\x1c\r\n$1\r\na\r\n"),
        ("header-at-limit", b"\x0c1\r\n$1\r\na\r\n"),
        ("inline-at-limit", b"\x04\r\nPING\r\n"),
        ("binary", b"\x00*2\r\n$4\r\n\x00\r\n\xff\r\n$0\r\n\r\n"),
        (
            "no-crlf-after-bulk",
            b"\x00*1\r\n$1\r\naXY*1\r\n$4\r\nPING\r\n",
        ),
    ];
    for (name, bytes) in edge {
        write("resp_parser", name, bytes);
    }
    let mut bomb = vec![0u8];
    bomb.extend_from_slice(&b"*1\r\n".repeat(10_000));
    write("resp_parser", "nested-array-bomb", &bomb);
    write(
        "command_parse",
        "nested-array-bomb",
        &b"*1\r\n".repeat(10_000),
    );
    write(
        "command_parse",
        "one-byte-names",
        b"\x01 a b\r\n\x29 s * f v\r\n\x33 s g 1\r\n",
    );

    // Engine directories written by the real engine.
    let plain = fuzzing::sample_dir(30, false);
    let ckpt = fuzzing::sample_dir(60, true);
    let file = |files: &[(String, Vec<u8>)], suffix: &str| -> Vec<Vec<u8>> {
        files
            .iter()
            .filter(|(n, _)| n.ends_with(suffix))
            .map(|(_, b)| b.clone())
            .collect()
    };
    let segs = file(&plain, ".seg");
    let segs2 = file(&ckpt, ".seg");
    let journal = file(&plain, "groups.journal").pop().unwrap_or_default();
    let journal2 = file(&ckpt, "groups.journal").pop().unwrap_or_default();
    let checkpoint2 = file(&ckpt, "groups.ckpt").pop();

    // record_decode: raw files, and single bodies behind a kind selector.
    let trimmed = |b: &[u8]| b[..b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1)].to_vec();
    for (i, s) in segs.iter().enumerate().take(3) {
        let mut d = vec![0u8];
        d.extend_from_slice(&trimmed(s));
        d.truncate(4096);
        write("record_decode", &format!("segment-{i}"), &d);
    }
    let mut d = vec![1u8];
    d.extend_from_slice(&journal[..journal.len().min(4096)]);
    write("record_decode", "journal", &d);
    if let Some(c) = &checkpoint2 {
        write("record_decode", "checkpoint", c);
        let mut d = vec![0u8];
        d.extend_from_slice(&c[16..]);
        write("record_decode", "checkpoint-body", &d);
    }

    // segment_recovery: whole tails, torn tails, several segments, meta offsets.
    let chunks_of =
        |name: &str, flags: u8, durable: Option<u32>, segments: &[Vec<u8>], cut: usize| {
            let mut d = vec![flags];
            if let Some(off) = durable {
                d.extend_from_slice(&off.to_le_bytes());
            }
            for (i, s) in segments.iter().enumerate() {
                if i > 0 {
                    d.extend_from_slice(&[0xA0, 0, 0]);
                }
                d.extend_from_slice(&fuzzing::segment_chunks(s));
            }
            d.truncate(d.len() - cut.min(d.len().saturating_sub(1)));
            write("segment_recovery", name, &d);
        };
    let last = segs.last().cloned().unwrap_or_default();
    chunks_of("tail", 0, None, std::slice::from_ref(&last), 0);
    chunks_of("tail-meta", 1, Some(64), std::slice::from_ref(&last), 0);
    chunks_of("torn-tail", 0, None, std::slice::from_ref(&last), 7);
    chunks_of(
        "torn-tail-meta",
        1,
        Some(200),
        std::slice::from_ref(&last),
        30,
    );
    chunks_of(
        "two-segments",
        1,
        Some(0),
        &segs[segs.len().saturating_sub(2)..],
        0,
    );
    chunks_of("stale-meta", 3, Some(100), &segs[..segs.len().min(3)], 0);
    chunks_of(
        "many-segments",
        1,
        Some(4096),
        &segs2[..segs2.len().min(4)],
        12,
    );
    // A raw torn tail: the last record cut in the middle, left as bytes.
    let t = trimmed(&last);
    let mut raw = vec![0u8, 0x80];
    raw.extend_from_slice(&((t.len() - 9) as u16).to_le_bytes());
    raw.extend_from_slice(&t[..t.len() - 9]);
    write("segment_recovery", "raw-torn", &raw);
    let mut flipped = raw.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x10;
    flipped[0] = 1;
    flipped.splice(1..1, (t.len() as u32).to_le_bytes());
    write("segment_recovery", "raw-bitflip-below-durable", &flipped);
    let mut zeros = fuzzing::segment_chunks(&last);
    zeros.insert(0, 0);
    zeros.extend_from_slice(&[0xC0, 0, 0, 2, 4, 0, 1, 2, 3, 4]);
    write("segment_recovery", "zeros-then-garbage", &zeros);

    // group_recovery: real journals and checkpoints, whole and torn.
    let g1 = fuzzing::group_chunks(&journal, None);
    write("group_recovery", "journal", &g1);
    write("group_recovery", "journal-torn", &g1[..g1.len() - 5]);
    let g2 = fuzzing::group_chunks(&journal2, checkpoint2.as_deref());
    write("group_recovery", "journal-and-checkpoint", &g2);
    let mut raw = vec![1u8];
    raw.extend_from_slice(&(journal.len() as u16).to_le_bytes());
    raw.extend_from_slice(&journal);
    let n = raw.len();
    raw[n / 2] ^= 0x01;
    write("group_recovery", "journal-bitflip", &raw);
    if let Some(c) = &checkpoint2 {
        let mut d = vec![3u8];
        d.extend_from_slice(&(c.len() as u16).to_le_bytes());
        d.extend_from_slice(c);
        write("group_recovery", "checkpoint-only", &d);
    }
}
