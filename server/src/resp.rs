//! The request parser: RESP multibulk (`*N\r\n$len\r\n...`) and inline commands, parsed
//! incrementally as bytes arrive, with Redis' limits and exact protocol-error texts.
//!
//! It never recurses and never allocates what a client merely declares: an argument is taken
//! from the input buffer only once all its bytes have arrived, and the argument vector grows
//! as arguments complete. A nested array in a request is an error, as in Redis.

use bytes::{Buf, Bytes, BytesMut};

/// Longest inline request or `*`/`$` header line without a newline (Redis'
/// `PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE: usize = 64 * 1024;
/// Most arguments in one request.
pub const MAX_ARGS: u64 = 1024 * 1024;
/// Before AUTH (when a password is required): most arguments in a request.
pub const UNAUTH_MAX_ARGS: u64 = 10;
/// Before AUTH (when a password is required): longest argument.
pub const UNAUTH_MAX_BULK: u64 = 16384;

/// Limits applied while parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `proto-max-bulk-len`.
    pub max_bulk: u64,
    /// The client must authenticate first: Redis' tighter limits apply.
    pub unauthenticated: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk: 512 << 20,
            unauthenticated: false,
        }
    }
}

/// A protocol violation: the connection answers `-ERR Protocol error: <text>` and closes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl ProtocolError {
    fn new(text: impl Into<String>) -> Self {
        ProtocolError(text.into())
    }

    /// The error reply line, without the leading `-`.
    pub fn reply_text(&self) -> String {
        format!("ERR Protocol error: {}", self.0)
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Protocol error: {}", self.0)
    }
}

/// Where the parser is inside a multibulk request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between requests.
    Idle,
    /// Inside `*N`: `remaining` arguments to go; `bulk` is the declared length of the next
    /// argument once its `$len` line has been read.
    Multibulk { remaining: u64, bulk: Option<u64> },
}

/// An incremental request parser; one per connection.
#[derive(Debug)]
pub struct Parser {
    state: State,
    args: Vec<Bytes>,
    /// Bytes of the arguments collected so far for the request in progress.
    pending_bytes: usize,
    /// Bytes at the front of the input already searched for the current line's end, so a
    /// line arriving a byte at a time is scanned once, not once per byte.
    scanned: usize,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            state: State::Idle,
            args: Vec::new(),
            pending_bytes: 0,
            scanned: 0,
        }
    }
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held for a request not yet complete (counts toward client-query-buffer-limit
    /// together with the unparsed input).
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// True when between requests (nothing partially parsed).
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// Takes the next complete request from `buf`, consuming its bytes. `Ok(None)` means more
    /// bytes are needed (whatever was consumed is remembered). Empty requests (`*0`, blank
    /// inline lines) are skipped, as Redis does.
    pub fn next(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            match self.state {
                State::Idle => {
                    let Some(&first) = buf.first() else {
                        return Ok(None);
                    };
                    if first == b'*' {
                        let Some(line) = self.take_line(buf, "too big mbulk count string")? else {
                            return Ok(None);
                        };
                        let n = match parse_ll(&line[1..]) {
                            Some(n) if n <= MAX_ARGS as i64 => n.max(0) as u64,
                            _ => return Err(ProtocolError::new("invalid multibulk length")),
                        };
                        if n > UNAUTH_MAX_ARGS && limits.unauthenticated {
                            return Err(ProtocolError::new("unauthenticated multibulk length"));
                        }
                        // `*0` and negative counts are empty requests: skip them.
                        if n > 0 {
                            self.args = Vec::with_capacity(n.min(64) as usize);
                            self.pending_bytes = 0;
                            self.state = State::Multibulk {
                                remaining: n,
                                bulk: None,
                            };
                        }
                    } else {
                        match self.inline(buf)? {
                            Inline::Incomplete => return Ok(None),
                            Inline::Empty => {}
                            Inline::Args(args) => return Ok(Some(args)),
                        }
                    }
                }
                State::Multibulk { remaining, bulk } => match bulk {
                    None => {
                        let Some(&first) = buf.first() else {
                            return Ok(None);
                        };
                        if first != b'$' {
                            return Err(ProtocolError(format!(
                                "expected '$', got '{}'",
                                char::from(first)
                            )));
                        }
                        let Some(line) = self.take_line(buf, "too big bulk count string")? else {
                            return Ok(None);
                        };
                        let len = match parse_ll(&line[1..]).map(u64::try_from) {
                            Some(Ok(n)) if n <= limits.max_bulk => n,
                            _ => return Err(ProtocolError::new("invalid bulk length")),
                        };
                        if limits.unauthenticated && len > UNAUTH_MAX_BULK {
                            return Err(ProtocolError::new("unauthenticated bulk length"));
                        }
                        self.state = State::Multibulk {
                            remaining,
                            bulk: Some(len),
                        };
                    }
                    Some(len) => {
                        // `len` ≤ proto-max-bulk-len, which fits usize on 64-bit targets.
                        let len = usize::try_from(len)
                            .map_err(|_| ProtocolError::new("invalid bulk length"))?;
                        // Wait for the data and its CRLF (Redis skips the two bytes unchecked).
                        if buf.len() < len.saturating_add(2) {
                            return Ok(None);
                        }
                        let arg = buf.split_to(len).freeze();
                        buf.advance(2);
                        self.pending_bytes += len;
                        self.args.push(arg);
                        if remaining == 1 {
                            self.state = State::Idle;
                            self.pending_bytes = 0;
                            return Ok(Some(std::mem::take(&mut self.args)));
                        }
                        self.state = State::Multibulk {
                            remaining: remaining - 1,
                            bulk: None,
                        };
                    }
                },
            }
        }
    }

    fn inline(&mut self, buf: &mut BytesMut) -> Result<Inline, ProtocolError> {
        let window = &buf[..buf.len().min(MAX_INLINE + 1)];
        let from = self.scanned.min(window.len());
        let Some(nl) = window[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|off| from + off)
        else {
            if buf.len() > MAX_INLINE {
                return Err(ProtocolError::new("too big inline request"));
            }
            self.scanned = window.len();
            return Ok(Inline::Incomplete);
        };
        self.scanned = 0;
        if nl > MAX_INLINE {
            return Err(ProtocolError::new("too big inline request"));
        }
        let line = buf.split_to(nl + 1);
        let mut line = &line[..nl];
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        let args =
            split_args(line).ok_or_else(|| ProtocolError::new("unbalanced quotes in request"))?;
        if args.is_empty() {
            Ok(Inline::Empty)
        } else {
            Ok(Inline::Args(args))
        }
    }
}

impl Parser {
    /// Takes one `\r\n`-terminated header line (including the tag byte, without CRLF), or
    /// `None` if it has not fully arrived. Errors when the line exceeds [`MAX_INLINE`].
    fn take_line(
        &mut self,
        buf: &mut BytesMut,
        too_big: &str,
    ) -> Result<Option<BytesMut>, ProtocolError> {
        let window = &buf[..buf.len().min(MAX_INLINE + 2)];
        // Resume where the last search stopped (minus one: a CR may have been the last byte).
        let mut from = self.scanned.saturating_sub(1).min(window.len());
        let mut found = None;
        while let Some(off) = window[from..].iter().position(|&b| b == b'\r') {
            let pos = from + off;
            match window.get(pos + 1) {
                Some(b'\n') => {
                    found = Some(pos);
                    break;
                }
                Some(_) => from = pos + 1,
                None => break,
            }
        }
        match found {
            Some(pos) => {
                self.scanned = 0;
                let line = buf.split_to(pos);
                buf.advance(2);
                Ok(Some(line))
            }
            // Too big once no CRLF can end the line within MAX_INLINE bytes: a buffer ending
            // in the CR right after MAX_INLINE bytes may still get its LF.
            None if buf.len() > MAX_INLINE + 1
                || (buf.len() == MAX_INLINE + 1 && buf.last() != Some(&b'\r')) =>
            {
                Err(ProtocolError::new(too_big))
            }
            None => {
                self.scanned = window.len();
                Ok(None)
            }
        }
    }
}

enum Inline {
    Incomplete,
    Empty,
    Args(Vec<Bytes>),
}

/// A header number as Redis' `string2ll` reads it: optional `-`, no `+`, no leading zeros,
/// no spaces, within i64.
fn parse_ll(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') || (neg && digits == b"0") {
        return None;
    }
    let mut v: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        let d = i64::from(b - b'0');
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub(d)?
        } else {
            v.checked_add(d)?
        };
    }
    Some(v)
}

/// Splits an inline request like Redis' `sdssplitargs`: whitespace-separated, with
/// double-quoted strings (escapes `\n \r \t \b \a \\ \" \xHH`) and single-quoted strings
/// (escape `\'`). `None` on unbalanced quotes or a closing quote not followed by a space.
/// A NUL byte ends the line, as it ends the C string `sdssplitargs` reads.
pub fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    // Redis' sdssplitargs walks a C string: a NUL byte ends the line.
    let line = &line[..line.iter().position(|&b| b == 0).unwrap_or(line.len())];
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while line
            .get(i)
            .is_some_and(|b| b.is_ascii_whitespace() || *b == 0x0b)
        {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        let mut inq = false;
        let mut insq = false;
        loop {
            let c = line.get(i).copied();
            if inq {
                match c {
                    None => return None,
                    Some(b'\\')
                        if line.get(i + 1) == Some(&b'x')
                            && line.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
                            && line.get(i + 3).is_some_and(u8::is_ascii_hexdigit) =>
                    {
                        let hi = hex(line[i + 2]);
                        let lo = hex(line[i + 3]);
                        cur.push(hi * 16 + lo);
                        i += 3;
                    }
                    Some(b'\\') if i + 1 < line.len() => {
                        i += 1;
                        cur.push(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                    }
                    Some(b'"') => {
                        // The closing quote must be followed by a space or the end.
                        if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(other) => cur.push(other),
                }
            } else if insq {
                match c {
                    None => return None,
                    Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                        i += 1;
                        cur.push(b'\'');
                    }
                    Some(b'\'') => {
                        if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(other) => cur.push(other),
                }
            } else {
                match c {
                    None | Some(b' ' | b'\n' | b'\r' | b'\t' | 0) => break,
                    Some(b'"') => inq = true,
                    Some(b'\'') => insq = true,
                    Some(other) => cur.push(other),
                }
            }
            i += 1;
        }
        args.push(Bytes::from(cur));
    }
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8], limits: Limits) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
        let mut p = Parser::new();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match p.next(&mut buf, &limits) {
                Ok(Some(args)) => out.push(args),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    fn strs(v: &[Bytes]) -> Vec<&str> {
        v.iter().map(|b| std::str::from_utf8(b).unwrap()).collect()
    }

    #[test]
    fn multibulk_and_pipelining() {
        let (reqs, err) = parse_all(
            b"*2\r\n$4\r\nECHO\r\n$2\r\nab\r\n*1\r\n$4\r\nPING\r\n",
            Limits::default(),
        );
        assert_eq!(err, None);
        assert_eq!(reqs.len(), 2);
        assert_eq!(strs(&reqs[0]), ["ECHO", "ab"]);
        assert_eq!(strs(&reqs[1]), ["PING"]);
    }

    #[test]
    fn byte_at_a_time() {
        let input = b"*3\r\n$4\r\nXADD\r\n$1\r\nk\r\n$0\r\n\r\nPING x\r\n";
        let mut p = Parser::new();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            while let Some(r) = p.next(&mut buf, &Limits::default()).unwrap() {
                out.push(r);
            }
        }
        assert_eq!(out.len(), 2);
        assert_eq!(strs(&out[0]), ["XADD", "k", ""]);
        assert_eq!(strs(&out[1]), ["PING", "x"]);
    }

    #[test]
    fn empty_requests_are_skipped() {
        let (reqs, err) = parse_all(b"*0\r\n*-5\r\n\r\n\n  \r\nPING\n", Limits::default());
        assert_eq!(err, None);
        assert_eq!(reqs.len(), 1);
    }

    #[test]
    fn protocol_errors_use_redis_texts() {
        let cases: &[(&[u8], &str)] = &[
            (b"*2147483648\r\n", "invalid multibulk length"),
            (b"*\r\n", "invalid multibulk length"),
            (b"*+1\r\n", "invalid multibulk length"),
            (b"*01\r\n", "invalid multibulk length"),
            (b"*3x\r\n", "invalid multibulk length"),
            (b"*1048577\r\n", "invalid multibulk length"),
            (b"*1\r\n$-1\r\n", "invalid bulk length"),
            (b"*1\r\n$\r\n", "invalid bulk length"),
            (b"*1\r\n$+4\r\n", "invalid bulk length"),
            (b"*1\r\n$536870913\r\n", "invalid bulk length"),
            (b"*2\r\n*1\r\n", "expected '$', got '*'"),
            (b"PING \"a\r\n", "unbalanced quotes in request"),
            (b"ECHO \"a\"b\r\n", "unbalanced quotes in request"),
        ];
        for (input, text) in cases {
            let (_, err) = parse_all(input, Limits::default());
            assert_eq!(err, Some(ProtocolError::new(*text)), "{input:?}");
        }
    }

    #[test]
    fn nested_array_bomb_is_an_error_not_a_stack_overflow() {
        let bomb = b"*1\r\n".repeat(10_000);
        let (reqs, err) = parse_all(&bomb, Limits::default());
        assert!(reqs.is_empty());
        assert_eq!(err, Some(ProtocolError::new("expected '$', got '*'")));
    }

    #[test]
    fn long_lines_are_bounded() {
        let long = vec![b'a'; MAX_INLINE + 1];
        let (_, err) = parse_all(&long, Limits::default());
        assert_eq!(err, Some(ProtocolError::new("too big inline request")));
        let mut mb = b"*".to_vec();
        mb.extend(vec![b'1'; MAX_INLINE + 1]);
        let (_, err) = parse_all(&mb, Limits::default());
        assert_eq!(err, Some(ProtocolError::new("too big mbulk count string")));
        let mut b = b"*1\r\n$".to_vec();
        b.extend(vec![b'1'; MAX_INLINE + 1]);
        let (_, err) = parse_all(&b, Limits::default());
        assert_eq!(err, Some(ProtocolError::new("too big bulk count string")));
    }

    #[test]
    fn declared_sizes_are_not_allocated() {
        // A huge declared bulk with no data keeps the buffer small: nothing is reserved.
        let mut p = Parser::new();
        let mut buf = BytesMut::from(&b"*1048576\r\n$536870912\r\nab"[..]);
        assert_eq!(p.next(&mut buf, &Limits::default()), Ok(None));
        assert!(buf.capacity() < 1024);
        assert!(p.args.capacity() <= 64);
    }

    #[test]
    fn unauthenticated_limits() {
        let l = Limits {
            unauthenticated: true,
            ..Limits::default()
        };
        let (_, err) = parse_all(b"*11\r\n", l);
        assert_eq!(
            err,
            Some(ProtocolError::new("unauthenticated multibulk length"))
        );
        let (_, err) = parse_all(b"*1\r\n$16385\r\n", l);
        assert_eq!(err, Some(ProtocolError::new("unauthenticated bulk length")));
        let (reqs, err) = parse_all(b"*10\r\n", l);
        assert!(reqs.is_empty() && err.is_none());
    }

    #[test]
    fn header_line_at_the_limit_does_not_depend_on_how_it_arrives() {
        // A `*` line of exactly MAX_INLINE bytes, then CRLF: the verdict must not depend on
        // whether the buffer once ended between the CR and the LF.
        let mut input = b"*".to_vec();
        input.resize(MAX_INLINE - 1, b'0');
        input.push(b'1');
        input.extend_from_slice(b"\r\n$4\r\nPING\r\n");
        let whole = parse_all(&input, Limits::default());
        let mut p = Parser::new();
        let mut buf = BytesMut::from(&input[..MAX_INLINE + 1]);
        let first = p.next(&mut buf, &Limits::default());
        buf.extend_from_slice(&input[MAX_INLINE + 1..]);
        let split = match first {
            Err(e) => (Vec::new(), Some(e)),
            Ok(_) => {
                let mut out = Vec::new();
                loop {
                    match p.next(&mut buf, &Limits::default()) {
                        Ok(Some(a)) => out.push(a),
                        Ok(None) => break (out, None),
                        Err(e) => break (out, Some(e)),
                    }
                }
            }
        };
        assert_eq!(whole, split);
        assert_eq!(
            whole.1,
            Some(ProtocolError::new("invalid multibulk length"))
        );
    }

    #[test]
    fn max_bulk_is_configurable() {
        let l = Limits {
            max_bulk: 3,
            unauthenticated: false,
        };
        let (_, err) = parse_all(b"*1\r\n$4\r\nPING\r\n", l);
        assert_eq!(err, Some(ProtocolError::new("invalid bulk length")));
    }

    #[test]
    fn inline_quoting_like_sdssplitargs() {
        let args = split_args(br#"ECHO "a\x41b\n" 'c d' 'it\'s' x"y""#).unwrap();
        assert_eq!(
            args,
            vec![
                Bytes::from_static(b"ECHO"),
                Bytes::from_static(b"aAb\n"),
                Bytes::from_static(b"c d"),
                Bytes::from_static(b"it's"),
                Bytes::from_static(b"xy"),
            ]
        );
        assert_eq!(
            split_args(br#""\x4""#).unwrap(),
            vec![Bytes::from_static(b"x4")]
        );
        assert!(split_args(b"'abc").is_none());
        assert_eq!(
            split_args(b"XLEN k\0\0 zz").unwrap(),
            vec![Bytes::from_static(b"XLEN"), Bytes::from_static(b"k")]
        );
        assert!(split_args(b"ECHO \"a\0b\"").is_none());
        assert!(split_args(b"\0PING").unwrap().is_empty());
        assert!(split_args(br#"x"y"z"#).is_none());
        // A NUL ends the line, as in Redis (and must not loop forever).
        assert_eq!(
            split_args(b"ECHO a\0b c").unwrap(),
            vec![Bytes::from_static(b"ECHO"), Bytes::from_static(b"a")]
        );
        assert!(split_args(b"ECHO \"a\0b\"").is_none());
    }
}

#[cfg(test)]
mod slow_client_tests {
    use super::*;

    #[test]
    fn a_line_arriving_byte_by_byte_is_scanned_once() {
        // 60 KiB inline request one byte at a time: quadratic rescanning would take
        // billions of comparisons; resuming keeps it linear.
        let mut p = Parser::new();
        let mut buf = BytesMut::new();
        for _ in 0..60 * 1024 {
            buf.extend_from_slice(b"a");
            assert_eq!(p.next(&mut buf, &Limits::default()), Ok(None));
        }
        buf.extend_from_slice(b"\r\n");
        let args = p.next(&mut buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(args[0].len(), 60 * 1024);
        let mut hdr = BytesMut::new();
        for &b in b"*1\r\n$3\r\nabc\r\n" {
            hdr.extend_from_slice(&[b]);
            if let Some(r) = p.next(&mut hdr, &Limits::default()).unwrap() {
                assert_eq!(r, vec![Bytes::from_static(b"abc")]);
            }
        }
        assert!(hdr.is_empty());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn encode(reqs: &[Vec<Vec<u8>>]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in reqs {
            out.extend_from_slice(format!("*{}\r\n", r.len()).as_bytes());
            for a in r {
                out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                out.extend_from_slice(a);
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }

    proptest! {
        /// However the bytes are split into reads, the same requests come out.
        #[test]
        fn any_split_gives_the_same_requests(
            reqs in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6),
                1..8,
            ),
            cuts in prop::collection::vec(any::<usize>(), 0..10),
        ) {
            let bytes = encode(&reqs);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.push(bytes.len());
            cuts.sort_unstable();
            let mut p = Parser::new();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut at = 0;
            for cut in cuts {
                buf.extend_from_slice(&bytes[at..cut]);
                at = cut;
                while let Some(r) = p.next(&mut buf, &Limits::default()).unwrap() {
                    got.push(r.into_iter().map(|b| b.to_vec()).collect::<Vec<_>>());
                }
            }
            prop_assert_eq!(got, reqs);
        }

        /// Arbitrary bytes never panic; the parser either waits, yields requests or errs.
        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut p = Parser::new();
            let mut buf = BytesMut::from(&bytes[..]);
            for _ in 0..1000 {
                match p.next(&mut buf, &Limits::default()) {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
