//! Differential test: every script in `tests/scripts/*.txt` runs against the real
//! `sluice-server` binary and against a `redis-server` this test starts itself, in RESP2 and
//! RESP3; the raw replies must be equal. Skipped (with a notice) only when `redis-server` is
//! not installed.
//!
//! Script format: one command per line (redis-cli-style quoting), `#` comments. A line
//! starting with `~` masks every integer in its reply (times, idle counters, ids); a line
//! starting with `!` runs on both servers without comparing. Auto-generated stream IDs are
//! always masked. To add a script, drop a new `.txt` file into `tests/scripts/`.

mod common;

use std::process::{Child, Command, Stdio};

use common::{Raw, Server};

struct Redis {
    child: Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis() -> Option<Redis> {
    for _ in 0..10 {
        let port = common::free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut redis = Redis { child, port };
        if common::wait_for_ping(port, &mut redis.child) {
            return Some(redis);
        }
    }
    None
}

/// Masks auto-generated IDs (13-14 digit milliseconds) with their bulk lengths, timestamps,
/// and with `ints` every integer reply and digit run (same rules as the in-process stream
/// differential, so the scripts mean the same thing in both).
fn mask(raw: &str, ints: bool) -> String {
    let mut out: Vec<String> = Vec::new();
    for line in raw.split("\r\n") {
        let is_auto_id = line.split_once('-').is_some_and(|(ms, seq)| {
            (13..=14).contains(&ms.len())
                && ms.bytes().all(|b| b.is_ascii_digit())
                && seq.bytes().all(|b| b.is_ascii_digit())
                && ms.starts_with('1')
        });
        let is_time = line.len() == 14
            && line.starts_with(":1")
            && line[1..].bytes().all(|b| b.is_ascii_digit());
        let after_radix = out.last().is_some_and(|p| p.starts_with("radix-tree-"));
        if after_radix {
            out.push(":#".into());
        } else if is_auto_id {
            if let Some(prev) = out.last_mut() {
                if prev.starts_with('$') {
                    *prev = "$?".into();
                }
            }
            out.push("<ID>".into());
        } else if is_time || (ints && line.starts_with(':')) {
            out.push(":#".into());
        } else if ints && !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()) {
            if let Some(prev) = out.last_mut() {
                if prev.starts_with('$') {
                    *prev = "$?".into();
                }
            }
            out.push("#".into());
        } else {
            out.push(line.to_string());
        }
    }
    out.join("\\r\\n")
}

fn send_words(c: &mut Raw, words: &[bytes::Bytes]) {
    let refs: Vec<&[u8]> = words.iter().map(|w| &w[..]).collect();
    c.send_cmd(&refs);
}

/// Both servers, or `None` (with a notice) when redis-server is not installed.
fn start_both() -> Option<(Redis, Server)> {
    let Some(redis) = start_redis() else {
        eprintln!("NOTICE: redis-server is not installed; skipping the differential test");
        return None;
    };
    Some((redis, Server::start()))
}

/// A connection to each server, both emptied (FLUSHALL) and in the same protocol.
fn connect_both(sluice: u16, redis: u16, resp3: bool) -> (Raw, Raw) {
    let mut a = Raw::connect(sluice);
    let mut b = Raw::connect(redis);
    for c in [&mut a, &mut b] {
        c.cmd("FLUSHALL");
        if resp3 {
            c.cmd("HELLO 3");
        }
    }
    (a, b)
}

/// Runs one script on both servers in one protocol; returns the mismatches.
fn run_script(name: &str, script: &str, sluice: u16, redis: u16, resp3: bool) -> Vec<String> {
    let mut failures = Vec::new();
    let (mut a, mut b) = connect_both(sluice, redis, resp3);
    for line in script.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (ints, compare, cmd) = match line.as_bytes()[0] {
            b'~' => (true, true, &line[1..]),
            b'!' => (false, false, &line[1..]),
            _ => (false, true, line),
        };
        let Some(words) = sluice_server::resp::split_args(cmd.as_bytes()) else {
            failures.push(format!("{name}: unbalanced quotes in script line: {line}"));
            continue;
        };
        send_words(&mut a, &words);
        send_words(&mut b, &words);
        let got = a.try_reply().unwrap_or_else(|| "<closed>".into());
        let want = b.try_reply().unwrap_or_else(|| "<closed>".into());
        if compare {
            let (want, got) = (mask(&want, ints), mask(&got, ints));
            if want != got {
                failures.push(format!(
                    "{name} {}: {cmd}\n  redis:  {want}\n  sluice: {got}",
                    if resp3 { "RESP3" } else { "RESP2" }
                ));
            }
        }
    }
    failures
}

#[test]
fn scripts_match_redis() {
    let Some((redis, sluice)) = start_both() else {
        return;
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scripts");
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/scripts")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty());
    let mut failures = Vec::new();
    for path in &scripts {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let script = std::fs::read_to_string(path).unwrap();
        for resp3 in [false, true] {
            failures.extend(run_script(&name, &script, sluice.port, redis.port, resp3));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "differential: {} scripts matched redis-server",
        scripts.len()
    );
}

/// Seeds and commands per seed of [`random_stream_commands_match_redis`]: 40,000 requests
/// to each server, a few seconds.
const RANDOM_SEEDS: u64 = 200;
const RANDOM_STEPS: usize = 200;

/// A small deterministic generator (xorshift64*): a failing seed replays exactly.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    /// A stream ID over a small range (so commands collide), sometimes a special or a
    /// malformed one. Never the largest ID: Redis 7.0 wraps it to 0-0 in XREADGROUP's
    /// history read, an overflow Sluice does not copy.
    fn id(&mut self) -> String {
        if self.chance(5) {
            return self
                .pick(&[
                    "-", "+", "0", "0-0", "$", ">", "4-*", "bad", "1-x", "(1-1", "5", "3-",
                ])
                .to_string();
        }
        format!("{}-{}", self.below(13), self.below(4))
    }

    fn count(&mut self) -> String {
        self.pick(&["0", "1", "2", "3", "10", "-1", "x", "100"])
            .to_string()
    }
}

/// Appends `option value` (the value drawn by `value`, possibly invalid) with the given
/// chance.
fn maybe_opt(
    r: &mut Rng,
    a: &mut Vec<String>,
    percent: u64,
    option: &str,
    value: fn(&mut Rng) -> String,
) {
    if r.chance(percent) {
        a.push(option.into());
        a.push(value(r));
    }
}

/// One random stream, group or key-expiry command, valid or not, over keys `s`, `t`, `u`, groups `g`,
/// `h` and consumers `c1`, `c2`. Leaves out what README documents as different: `~`
/// trimming, and auto-generated IDs (they depend on the clock).
fn random_command(r: &mut Rng) -> Vec<String> {
    let key = r.pick(&["s", "t", "u"]).to_string();
    let group = r.pick(&["g", "h"]).to_string();
    let consumer = r.pick(&["c1", "c2"]).to_string();
    let mut a: Vec<String> = Vec::new();
    let push = |a: &mut Vec<String>, words: &[&str]| {
        a.extend(words.iter().map(|w| w.to_string()));
    };
    match r.below(112) {
        0..=21 => {
            push(&mut a, &["XADD", &key]);
            if r.chance(15) {
                push(&mut a, &["NOMKSTREAM"]);
            }
            if r.chance(15) {
                let n = r.count();
                push(&mut a, &["MAXLEN", "=", &n]);
                maybe_opt(r, &mut a, 20, "LIMIT", Rng::count);
            }
            maybe_opt(r, &mut a, 5, "MINID", Rng::id);
            let id = if r.chance(10) {
                format!("{}-*", r.below(13))
            } else {
                r.id()
            };
            push(&mut a, &[&id, "f", "v"]);
            if r.chance(5) {
                a.pop();
            }
        }
        22..=34 => {
            let verb = if r.chance(60) { "XRANGE" } else { "XREVRANGE" };
            let (lo, hi) = (r.id(), r.id());
            push(&mut a, &[verb, &key, &lo, &hi]);
            maybe_opt(r, &mut a, 40, "COUNT", Rng::count);
        }
        35..=37 => {
            push(&mut a, &["XDEL", &key]);
            for _ in 0..r.below(4) {
                let id = r.id();
                push(&mut a, &[&id]);
            }
        }
        38..=40 => {
            let strategy = r.pick(&["MAXLEN", "MINID", "FOO"]);
            let op = r.pick(&["=", "1"]);
            let arg = if r.chance(50) { r.count() } else { r.id() };
            push(&mut a, &["XTRIM", &key, strategy, op, &arg]);
        }
        41..=42 => push(&mut a, &["XLEN", &key]),
        43..=48 => {
            let start = if r.chance(70) { r.id() } else { "$".into() };
            push(&mut a, &["XGROUP", "CREATE", &key, &group, &start]);
            if r.chance(30) {
                push(&mut a, &["MKSTREAM"]);
            }
            maybe_opt(r, &mut a, 10, "ENTRIESREAD", Rng::count);
        }
        49..=50 => {
            let id = r.id();
            push(&mut a, &["XGROUP", "SETID", &key, &group, &id]);
        }
        51 => push(&mut a, &["XGROUP", "DESTROY", &key, &group]),
        52 => {
            let verb = r.pick(&["CREATECONSUMER", "DELCONSUMER"]);
            push(&mut a, &["XGROUP", verb, &key, &group, &consumer]);
        }
        53..=62 => {
            push(&mut a, &["XREADGROUP", "GROUP", &group, &consumer]);
            maybe_opt(r, &mut a, 50, "COUNT", Rng::count);
            if r.chance(10) {
                push(&mut a, &["NOACK"]);
            }
            let keys: Vec<String> = match r.below(3) {
                0 => vec![key.clone()],
                1 => vec!["s".into(), "u".into()],
                _ => vec![key.clone(), "t".into()],
            };
            push(&mut a, &["STREAMS"]);
            a.extend(keys.iter().cloned());
            for _ in &keys {
                let id = match r.below(4) {
                    0 | 1 => ">".to_string(),
                    2 => "0".to_string(),
                    _ => r.id(),
                };
                a.push(id);
            }
            if r.chance(5) {
                a.pop();
            }
        }
        63..=66 => {
            push(&mut a, &["XREAD"]);
            maybe_opt(r, &mut a, 50, "COUNT", Rng::count);
            let id = r.id();
            push(&mut a, &["STREAMS", &key, &id]);
        }
        67..=72 => {
            push(&mut a, &["XACK", &key, &group]);
            for _ in 0..r.below(4) {
                let id = r.id();
                push(&mut a, &[&id]);
            }
        }
        73..=77 => {
            push(&mut a, &["XPENDING", &key, &group]);
            if r.chance(60) {
                let (lo, hi, n) = (r.id(), r.id(), r.count());
                push(&mut a, &[&lo, &hi, &n]);
                if r.chance(40) {
                    push(&mut a, &[&consumer]);
                }
            }
        }
        78..=82 => {
            push(&mut a, &["XCLAIM", &key, &group, &consumer, "0"]);
            for _ in 0..=r.below(3) {
                let id = r.id();
                push(&mut a, &[&id]);
            }
            if r.chance(30) {
                push(&mut a, &["JUSTID"]);
            }
            maybe_opt(r, &mut a, 10, "RETRYCOUNT", Rng::count);
            if r.chance(10) {
                push(&mut a, &["FORCE"]);
            }
        }
        83..=86 => {
            let start = r.id();
            push(
                &mut a,
                &["XAUTOCLAIM", &key, &group, &consumer, "0", &start],
            );
            maybe_opt(r, &mut a, 50, "COUNT", Rng::count);
            if r.chance(30) {
                push(&mut a, &["JUSTID"]);
            }
        }
        87..=88 => {
            let id = r.id();
            push(&mut a, &["XSETID", &key, &id]);
            maybe_opt(r, &mut a, 30, "ENTRIESADDED", Rng::count);
            maybe_opt(r, &mut a, 30, "MAXDELETEDID", Rng::id);
        }
        89..=92 => {
            let what = r.pick(&["GROUPS", "CONSUMERS", "STREAM"]);
            push(&mut a, &["XINFO", what, &key]);
            if r.chance(50) {
                push(&mut a, &[&group]);
            }
        }
        93 => push(&mut a, &["DEL", &key]),
        94 => {
            let to = r.pick(&["s", "t", "u"]);
            push(&mut a, &["RENAME", &key, to]);
        }
        95 => push(&mut a, &["TYPE", &key]),
        96..=97 => {
            let verb = r.pick(&["MULTI", "EXEC", "DISCARD"]);
            push(&mut a, &[verb]);
        }
        98..=103 => {
            let verb = r.pick(&["EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"]);
            let when = r.pick(&["100", "0", "-1", "x", "4000000000000", "99999999999999999"]);
            push(&mut a, &[verb, &key, when]);
            for _ in 0..r.below(3) {
                let opt = r.pick(&["NX", "XX", "GT", "LT", "gt", "FOO"]);
                push(&mut a, &[opt]);
            }
        }
        104..=105 => {
            let verb = r.pick(&["TTL", "PTTL", "PERSIST", "EXPIRETIME"]);
            push(&mut a, &[verb, &key]);
        }
        106..=107 => {
            let verb = r.pick(&["EXISTS", "DEL", "UNLINK", "TOUCH"]);
            push(&mut a, &[verb, &key, "t", "nope"]);
        }
        108 => {
            let to = r.pick(&["s", "t", "u"]);
            push(&mut a, &["RENAMENX", &key, to]);
        }
        109 => push(&mut a, &["DBSIZE"]),
        _ => push(&mut a, &["EXISTS", &key]),
    }
    a
}

/// How a reply is compared: XINFO and XPENDING report idle times and (XINFO) Sluice's
/// segment counts and, where Redis 7.0 would report a negative lag, 0; TTLs depend on the
/// clock; EXEC may hold any of these. XINFO CONSUMERS and CREATECONSUMER also see consumers that XCLAIM and
/// XAUTOCLAIM create as Redis 7.2 does (README, "Known differences"): only the reply's
/// type is compared.
fn masked_reply(cmd: &[String], reply: &str) -> String {
    let verb = cmd[0].as_str();
    let sub = cmd.get(1).map_or("", String::as_str);
    if (verb == "XINFO" && sub == "CONSUMERS") || sub == "CREATECONSUMER" {
        return reply.chars().take(1).collect();
    }
    let ints = matches!(
        verb,
        "XINFO" | "XPENDING" | "EXEC" | "TTL" | "PTTL" | "EXPIRETIME"
    );
    mask(reply, ints)
}

/// Random sequences of stream and group commands, valid and not, in RESP2 (even seeds)
/// and RESP3 (odd seeds): every reply must equal redis-server's. It found that Sluice
/// refused a syntax error inside MULTI instead of queuing it.
#[test]
fn random_stream_commands_match_redis() {
    let Some((redis, sluice)) = start_both() else {
        return;
    };
    let mut failures = Vec::new();
    for seed in 0..RANDOM_SEEDS {
        let (mut a, mut b) = connect_both(sluice.port, redis.port, seed % 2 == 1);
        let mut r = Rng::new(seed);
        let mut sent = Vec::new();
        for _ in 0..RANDOM_STEPS {
            let cmd = random_command(&mut r);
            let words: Vec<&[u8]> = cmd.iter().map(|w| w.as_bytes()).collect();
            a.send_cmd(&words);
            b.send_cmd(&words);
            let got = a.try_reply().unwrap_or_else(|| "<closed>".into());
            let want = b.try_reply().unwrap_or_else(|| "<closed>".into());
            sent.push(cmd.join(" "));
            let (got, want) = (masked_reply(&cmd, &got), masked_reply(&cmd, &want));
            if got != want {
                let from = sent.len().saturating_sub(12);
                failures.push(format!(
                    "seed {seed}, command {}: {}\n  redis:  {want}\n  sluice: {got}\n  \
                     the commands before it:\n    {}",
                    sent.len(),
                    cmd.join(" "),
                    sent[from..sent.len() - 1].join("\n    ")
                ));
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("differential: {RANDOM_SEEDS} random command sequences matched redis-server");
}

/// The harness's start-up check must not take a server that another process runs on the
/// port for the one it started: servers start in parallel on ports that were free a moment
/// before (a test here once talked to a redis-server that was not its own).
#[test]
fn a_server_that_is_not_the_child_does_not_count_as_started() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap_or(0);
            let reply = if buf[..n].starts_with(b"PING") {
                "+PONG\r\n".to_string()
            } else {
                let info = "process_id:1\r\n";
                format!("${}\r\n{info}\r\n", info.len())
            };
            let _ = s.write_all(reply.as_bytes());
        }
    });
    let mut child = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let started = common::wait_for_ping(port, &mut child);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !started,
        "a PONG from another process was taken for the child's"
    );
}
