//! Redis' glob matcher (`stringmatchlen` in Redis 7's util.c), byte for byte: used by
//! PSUBSCRIBE, PUBSUB CHANNELS, KEYS and SCAN MATCH.
//!
//! The rules, including the odd ones, are Redis': `*`, `?`, `[abc]`, `[^a]`, `[a-z]` (reversed
//! ranges are swapped and compared as *signed* chars, as C does), `\` escapes, an unterminated
//! `[` matches one character against the listed set, the empty string matches only the empty
//! pattern, and a match that needs more than [`MAX_NESTING`] nested `*` fails (Redis' guard
//! against abusive patterns). Redis recurses on `*`; this is the same search made iterative with
//! an explicit stack, including Redis' "skip longer matches" cut that keeps `*a*a*a...b` linear.

/// Redis gives up (no match) when a `*` would start a recursion deeper than this.
pub const MAX_NESTING: usize = 1000;

/// Whether `string` matches the glob `pattern`, case-sensitively (PSUBSCRIBE, KEYS, SCAN).
pub fn matches(pattern: &[u8], string: &[u8]) -> bool {
    matches_with(pattern, string, false)
}

/// Whether `string` matches `pattern` ignoring ASCII case (CONFIG GET, COMMAND LIST).
pub fn matches_nocase(pattern: &[u8], string: &[u8]) -> bool {
    matches_with(pattern, string, true)
}

/// The literal bytes every string matching `pattern` starts with: the pattern up to its first
/// metacharacter. Used to index patterns so a publish tests only plausible ones.
pub fn literal_prefix(pattern: &[u8]) -> &[u8] {
    let end = pattern
        .iter()
        .position(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
        .unwrap_or(pattern.len());
    &pattern[..end]
}

/// How one "call" of Redis' recursive matcher ended.
enum Step {
    Match,
    Fail,
    /// Reached a `*` that is not the pattern's last character with the string at `at`: the
    /// rest of the pattern starts at `rest` and must be tried against every suffix from `at`.
    Star {
        rest: usize,
        at: usize,
    },
}

/// A `*` whose alternatives are being tried: the pattern after it and the string position the
/// current alternative starts at.
struct StarFrame {
    rest: usize,
    at: usize,
}

fn matches_with(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
    let mut stack: Vec<StarFrame> = Vec::new();
    let (mut p, mut s) = (0usize, 0usize);
    loop {
        // The current call runs at nesting depth `stack.len()`, as Redis counts it.
        let step = if stack.len() > MAX_NESTING {
            Step::Fail
        } else {
            run(pattern, p, string, s, nocase)
        };
        match step {
            Step::Match => return true,
            Step::Star { rest, at } => {
                stack.push(StarFrame { rest, at });
                p = rest;
                s = at;
            }
            Step::Fail => {
                // Back to the innermost `*`: try its next alternative. When a `*` has tried
                // every suffix, Redis sets `skipLongerMatches` and every caller gives up too.
                let Some(top) = stack.last_mut() else {
                    return false;
                };
                top.at += 1;
                if top.at >= string.len() {
                    return false;
                }
                p = top.rest;
                s = top.at;
            }
        }
    }
}

/// Byte `i` of `v`, or 0 past the end, as reading a NUL-terminated C string gives.
fn at(v: &[u8], i: usize) -> u8 {
    v.get(i).copied().unwrap_or(0)
}

fn eq(a: u8, b: u8, nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

/// One call of Redis' `stringmatchlen_impl` from pattern offset `p` and string offset `s`, up
/// to the first non-final `*`.
fn run(pat: &[u8], mut p: usize, string: &[u8], mut s: usize, nocase: bool) -> Step {
    let plen = pat.len();
    let slen = string.len();
    while p < plen && s < slen {
        let c = string[s];
        match pat[p] {
            b'*' => {
                while p + 1 < plen && pat[p + 1] == b'*' {
                    p += 1;
                }
                if p + 1 == plen {
                    return Step::Match;
                }
                return Step::Star { rest: p + 1, at: s };
            }
            b'?' => s += 1,
            b'[' => {
                p += 1;
                let not = p < plen && pat[p] == b'^';
                if not {
                    p += 1;
                }
                let mut matched = false;
                loop {
                    let remaining = plen.saturating_sub(p);
                    if at(pat, p) == b'\\' && remaining >= 2 {
                        p += 1;
                        if pat[p] == c {
                            matched = true;
                        }
                    } else if at(pat, p) == b']' {
                        break;
                    } else if remaining == 0 {
                        // Unterminated class: step back so the advance below ends the pattern.
                        p -= 1;
                        break;
                    } else if remaining >= 3 && pat[p + 1] == b'-' {
                        // C compares `char`s, which are signed here: 0x80..0xff sort first.
                        let (mut start, mut end) = (pat[p] as i8, pat[p + 2] as i8);
                        let mut ch = c as i8;
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        if nocase {
                            start = ascii_lower(start);
                            end = ascii_lower(end);
                            ch = ascii_lower(ch);
                        }
                        p += 2;
                        if ch >= start && ch <= end {
                            matched = true;
                        }
                    } else if eq(pat[p], c, nocase) {
                        matched = true;
                    }
                    p += 1;
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return Step::Fail;
                }
                s += 1;
            }
            b'\\' => {
                if plen - p >= 2 {
                    p += 1;
                }
                if !eq(pat[p], c, nocase) {
                    return Step::Fail;
                }
                s += 1;
            }
            other => {
                if !eq(other, c, nocase) {
                    return Step::Fail;
                }
                s += 1;
            }
        }
        p += 1;
        if s == slen {
            while at(pat, p) == b'*' {
                p += 1;
            }
            break;
        }
    }
    if p == plen && s == slen {
        Step::Match
    } else {
        Step::Fail
    }
}

fn ascii_lower(c: i8) -> i8 {
    if (b'A' as i8..=b'Z' as i8).contains(&c) {
        c + 32
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (pattern, string, expected) — expectations checked against redis-server 7.0.15.
    const TABLE: &[(&[u8], &[u8], bool)] = &[
        (b"", b"", true),
        (b"", b"a", false),
        (b"*", b"", false),
        (b"**", b"", false),
        (b"*", b"anything", true),
        (b"a*", b"a", true),
        (b"a*", b"abc", true),
        (b"a**b", b"axxb", true),
        (b"*b", b"ab", true),
        (b"*b", b"ba", false),
        (b"h?llo", b"hello", true),
        (b"h?llo", b"hllo", false),
        (b"h*llo", b"heeeello", true),
        (b"h[ae]llo", b"hallo", true),
        (b"h[ae]llo", b"hillo", false),
        (b"h[^e]llo", b"hallo", true),
        (b"h[^e]llo", b"hello", false),
        (b"h[a-b]llo", b"hbllo", true),
        (b"h[b-a]llo", b"hbllo", true),
        (b"h[b-a]llo", b"hcllo", false),
        (b"[a-]", b"a", true),
        (b"a[a-]a", b"aaa", false),
        (b"a[a-]a", b"aa", true),
        (b"[", b"a", false),
        (b"[", b"", false),
        (b"[^", b"x", true),
        (b"[^", b"xy", false),
        (b"[abc", b"b", true),
        (b"[abc", b"d", false),
        (b"[]", b"]", false),
        (b"[]]", b"]", false),
        (b"[\\]]", b"]", true),
        (b"[\\", b"\\", true),
        (b"\\*", b"*", true),
        (b"\\*", b"a", false),
        (b"\\", b"\\", true),
        (b"a\\", b"a\\", true),
        (b"\\?", b"?", true),
        (b"\\?", b"a", false),
        (b"[\\-]", b"-", true),
        (b"[a\\-z]", b"b", false),
        (b"[a\\-z]", b"-", true),
        (b"*[", b"ab", false),
        (b"*?", b"a", true),
        (b"*?", b"", false),
        (b"?*", b"a", true),
        (b"a*b*c", b"aXbYc", true),
        (b"a*b*c", b"aXbY", false),
        (b"?*?[^", b"*-", false),
        (b"?*?[^", b"*-x", true),
        (b"\x00*", b"\x00abc", true),
        (b"[\x80-\xff]", b"\x90", true),
        (b"[\x80-\xff]", b"a", false),
        // Signed chars: 'a' (97) to 0xff (-1) swaps to -1..97, so '\x00' and 'a' match.
        (b"[a-\xff]", b"\x00", true),
        (b"[a-\xff]", b"b", false),
        (b"[a-\xff]", b"\xff", true),
        (b"[a-\xff]", b"\xfe", false),
    ];

    #[test]
    fn table() {
        for &(p, s, want) in TABLE {
            assert_eq!(
                matches(p, s),
                want,
                "pattern {:?} string {:?}",
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn nocase() {
        assert!(matches_nocase(b"HeLLo*", b"hello world"));
        assert!(matches_nocase(b"[A-C]x", b"bX"));
        assert!(!matches(b"HeLLo*", b"hello world"));
    }

    #[test]
    fn nesting_limit_matches_redis() {
        let key = vec![b'a'; 3000];
        let pat = |n: usize| b"*a".repeat(n);
        assert!(matches(&pat(999), &key));
        assert!(matches(&pat(1000), &key));
        assert!(!matches(&pat(1001), &key));
        let mut trailing = pat(1001);
        trailing.push(b'*');
        assert!(!matches(&trailing, &key));
    }

    #[test]
    fn abusive_patterns_finish() {
        let key = vec![b'a'; 5000];
        let mut p = b"a*".repeat(40);
        p.push(b'b');
        assert!(!matches(&p, &key));
        assert!(!matches(&b"*?".repeat(50_000), &key));
    }

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix(b"news.*"), b"news.");
        assert_eq!(literal_prefix(b"a?b"), b"a");
        assert_eq!(literal_prefix(b"[ab]"), b"");
        assert_eq!(literal_prefix(b"x\\*y"), b"x");
        assert_eq!(literal_prefix(b"plain"), b"plain");
    }

    /// Starts a throwaway `redis-server` on a free port, if one is installed.
    pub(crate) struct RedisServer {
        child: std::process::Child,
        pub port: u16,
    }

    impl RedisServer {
        pub(crate) fn start() -> Option<RedisServer> {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .ok()?
                .local_addr()
                .ok()?
                .port();
            let child = std::process::Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--bind", "127.0.0.1"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .ok()?;
            let server = RedisServer { child, port };
            for _ in 0..100 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(server);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            None
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Random patterns over a metacharacter-heavy alphabet, matched against a fixed key set by
    /// both redis-server (KEYS) and this matcher.
    #[test]
    fn differential_against_redis_server() {
        use rand::{Rng, SeedableRng};
        let Some(server) = RedisServer::start() else {
            eprintln!("redis-server not found: skipping the differential glob test");
            return;
        };
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", server.port)).unwrap();
        let mut con = client.get_connection().unwrap();
        let seed: u64 = rand::random();
        eprintln!("glob differential seed {seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let key_alphabet: &[u8] = b"ab-]\\^*?[\xff\x80";
        let pat_alphabet: &[u8] = b"ab*?[]^-\\\xff\x80";
        let mut keys: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..80 {
            let len = rng.gen_range(1..6);
            keys.push(
                (0..len)
                    .map(|_| key_alphabet[rng.gen_range(0..key_alphabet.len())])
                    .collect(),
            );
        }
        keys.sort();
        keys.dedup();
        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
        for k in &keys {
            let _: () = redis::cmd("SET").arg(k).arg(1).query(&mut con).unwrap();
        }
        for _ in 0..1500 {
            let len = rng.gen_range(0..10);
            let pat: Vec<u8> = (0..len)
                .map(|_| pat_alphabet[rng.gen_range(0..pat_alphabet.len())])
                .collect();
            if pat == b"*" {
                continue; // KEYS * skips the matcher and lists every key, even "".
            }
            let mut want: Vec<Vec<u8>> = redis::cmd("KEYS").arg(&pat).query(&mut con).unwrap();
            want.sort();
            let got: Vec<Vec<u8>> = keys.iter().filter(|k| matches(&pat, k)).cloned().collect();
            assert_eq!(got, want, "pattern {:?}", String::from_utf8_lossy(&pat));
        }
    }
}
