//! The properties each fuzz target checks, shared by the targets (`fuzz_targets/*.rs`) and
//! the regression tests that replay saved inputs in the normal `cargo test` run
//! (`tests/fuzz_regressions.rs`). Every check panics on a violation.

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::{decode::decode as oracle_decode, types::OwnedFrame};
use sluice_server::cmd;
use sluice_server::reply::{Protocol, Reply};
use sluice_server::resp::{Limits, Parser, ProtocolError, MAX_INLINE};

/// What a connection gets out of a byte stream: the requests, then the error that closes it.
type Parsed = (Vec<Vec<Bytes>>, Option<ProtocolError>);

/// Feeds `input` to a fresh parser in pieces of the given sizes (the rest at the end),
/// draining complete requests after each piece, as a connection does.
fn parse_in_pieces(
    input: &[u8],
    limits: &Limits,
    pieces: &mut dyn Iterator<Item = usize>,
) -> Parsed {
    let mut parser = Parser::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let n = pieces.next().unwrap_or(input.len()).max(1);
        let end = input.len().min(at + n);
        buf.extend_from_slice(&input[at..end]);
        at = end;
        loop {
            match parser.next(&mut buf, limits) {
                Ok(Some(args)) => {
                    assert!(!args.is_empty(), "the parser yielded an empty request");
                    out.push(args);
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        // Nothing is held beyond what arrived: unparsed bytes plus collected arguments.
        assert!(
            parser.pending_bytes() <= at,
            "parser holds more than it was given"
        );
    }
    (out, None)
}

/// A small deterministic generator for split points.
struct XorShift(u64);

impl Iterator for XorShift {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // Mostly small pieces, sometimes large ones.
        Some(if self.0.is_multiple_of(8) {
            (self.0 >> 8) as usize % 70_000
        } else {
            (self.0 >> 8) as usize % 17
        })
    }
}

/// `resp_parser`: the first byte picks the limits and an optional long line before the rest
/// (to reach the 64 KiB line limits); the rest is the byte stream. The same bytes fed whole,
/// at pseudo-random split points and (when short) one at a time must give the same
/// requests and error; canonical multibulk frames must match redis-protocol's decoder.
pub fn resp_parser(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_bulk: if sel & 1 != 0 {
            16
        } else {
            Limits::default().max_bulk
        },
        unauthenticated: sel & 2 != 0,
    };
    let mut input = Vec::new();
    if sel & 4 != 0 {
        let len = MAX_INLINE - usize::from(sel >> 4);
        if sel & 8 != 0 {
            input.push(b'*');
            input.resize(len, b'0');
        } else {
            input.resize(len, b'a');
        }
    }
    input.extend_from_slice(rest);

    let whole = parse_in_pieces(&input, &limits, &mut std::iter::empty());
    let seed = input
        .iter()
        .fold(0x9E37_79B9_7F4A_7C15u64 ^ u64::from(sel), |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
        });
    let split = parse_in_pieces(&input, &limits, &mut XorShift(seed | 1));
    assert_eq!(whole, split, "split input parsed differently");
    // Two pieces cut around the 64 KiB line limits, where a verdict could depend on them.
    if input.len() > MAX_INLINE - 16 {
        for cut in MAX_INLINE - 2..=MAX_INLINE + 3 {
            let two = parse_in_pieces(&input, &limits, &mut std::iter::once(cut));
            assert_eq!(whole, two, "input cut at {cut} parsed differently");
        }
    }
    if input.len() <= 2048 {
        let bytewise = parse_in_pieces(&input, &limits, &mut std::iter::repeat(1));
        assert_eq!(whole, bytewise, "byte-at-a-time input parsed differently");
    }
    check_against_oracle(&input, &limits, &whole);
}

/// The canonical RESP2 encoding of a request.
fn canonical(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Walks the input frame by frame with redis-protocol's decoder while it sees canonical
/// arrays of bulk strings within the limits; each must be the parser's next request. The
/// oracle recurses on nested arrays, so it is consulted only when nesting is shallow.
fn check_against_oracle(input: &[u8], limits: &Limits, parsed: &Parsed) {
    if input.iter().filter(|&&b| b == b'*').count() > 64 {
        return;
    }
    let mut at = 0;
    let mut next = 0;
    while at < input.len() {
        let rest = &input[at..];
        let Ok(Some((frame, used))) = oracle_decode(rest) else {
            return;
        };
        let OwnedFrame::Array(items) = frame else {
            return;
        };
        let mut args = Vec::with_capacity(items.len());
        for item in items {
            match item {
                OwnedFrame::BulkString(b) => args.push(b),
                _ => return,
            }
        }
        if canonical(&args) != rest[..used] {
            return;
        }
        let over_limit = args.iter().any(|a| a.len() as u64 > limits.max_bulk)
            || (limits.unauthenticated
                && (args.len() > 10 || args.iter().any(|a| a.len() > 16384)));
        if over_limit {
            return;
        }
        at += used;
        if args.is_empty() {
            continue; // `*0`: an empty request, skipped
        }
        let got = parsed
            .0
            .get(next)
            .map(|v| v.iter().map(|b| b.to_vec()).collect::<Vec<_>>());
        assert_eq!(
            got,
            Some(args),
            "request {next} differs from redis-protocol's decoding"
        );
        next += 1;
    }
}

/// `command_parse`: the input is a request stream (inline or multibulk); every request is
/// parsed into a typed command through the dispatcher. A one-byte command name stands for
/// the command at that index in the table, so every command is reached easily. Parsing must
/// never panic, and error replies must encode as one line.
pub fn command_parse(data: &[u8]) {
    let mut parser = Parser::new();
    let mut buf = BytesMut::from(data);
    let limits = Limits::default();
    while let Ok(Some(mut args)) = parser.next(&mut buf, &limits) {
        if let Some(first) = args.first_mut() {
            if first.len() == 1 {
                let table = cmd::table::COMMANDS;
                *first =
                    Bytes::from_static(table[usize::from(first[0]) % table.len()].name.as_bytes());
            }
        }
        match cmd::parse(&args) {
            Ok(_) => {}
            Err(reply) => check_error_reply(&reply),
        }
        // Stream commands also straight through their family parser (own arity checks).
        if let Some((name, rest)) = args.split_first() {
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            if name.starts_with('x') {
                if let Err(reply) = cmd::stream::parse(&name, rest) {
                    check_error_reply(&reply);
                }
            }
        }
    }
}

fn check_error_reply(reply: &Reply) {
    for proto in [Protocol::Resp2, Protocol::Resp3] {
        let mut out = BytesMut::new();
        reply.encode(proto, &mut out);
        if out.first() == Some(&b'-') {
            let body = &out[..out.len() - 2];
            assert!(out.ends_with(b"\r\n"), "error reply not terminated");
            assert!(
                !body.contains(&b'\r') && !body.contains(&b'\n'),
                "error reply spans lines: {out:?}"
            );
        }
    }
}
