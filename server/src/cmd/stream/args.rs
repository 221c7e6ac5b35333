//! Argument readers shared by the stream commands: integers and stream IDs parsed exactly as
//! Redis 7.0 parses them (including its quirks), and Redis' error texts for them.

use bytes::Bytes;
use sluice_engine::StreamId;

use crate::cmd::parse_i64;
use crate::reply::Reply;

/// Longest ID argument Redis accepts (it copies IDs into a 128-byte buffer).
const MAX_ID_LEN: usize = 127;

pub const INVALID_ID: &str = "Invalid stream ID specified as stream command argument";

pub fn invalid_id() -> Reply {
    Reply::err(INVALID_ID)
}

/// `ERR wrong number of arguments for 'name' command` (`name` is lowercase, `cmd|sub` for subcommands).
pub fn arity(name: &str) -> Reply {
    Reply::err(format!("wrong number of arguments for '{name}' command"))
}

/// `ERR unknown subcommand or wrong number of arguments for 'sub'. Try CMD HELP.`
pub fn subcommand_syntax(sub: &[u8], cmd: &str) -> Reply {
    Reply::err(format!(
        "unknown subcommand or wrong number of arguments for '{}'. Try {cmd} HELP.",
        lossy(sub, 128)
    ))
}

/// Text of a client-supplied name for an error line, cut at `max` bytes.
pub fn lossy(b: &[u8], max: usize) -> String {
    String::from_utf8_lossy(b.get(..max).unwrap_or(b)).into_owned()
}

/// Case-insensitive comparison with an ASCII keyword.
pub fn is(arg: &[u8], keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}

/// Redis' `string2ull`: `string2ll` for non-negative values, else C's `strtoull` over the
/// whole string (leading spaces, a sign and leading zeros accepted; `-n` wraps as C does).
pub fn parse_u64_like_redis(s: &[u8]) -> Option<u64> {
    if let Some(v) = parse_i64(s) {
        return u64::try_from(v).ok();
    }
    let start = s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))?;
    let rest = s.get(start..)?;
    let (neg, digits) = match rest.split_first() {
        Some((b'-', d)) => (true, d),
        Some((b'+', d)) => (false, d),
        _ => (false, rest),
    };
    if digits.is_empty() || digits.iter().any(|b| !b.is_ascii_digit()) {
        return None;
    }
    let mut v: u64 = 0;
    for &b in digits {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// How an ID argument may be written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum IdForm {
    /// `-` and `+` accepted as the minimum and maximum IDs.
    Lenient,
    /// `-` and `+` rejected.
    Strict,
}

/// Redis' `streamGenericParseIDOrReply` without the `ms-*` form: `ms-seq`, or `ms` with
/// `missing_seq` as the sequence.
pub fn parse_id(s: &[u8], missing_seq: u64, form: IdForm) -> Option<StreamId> {
    match parse_id_or_auto_seq(s, missing_seq, form, false)? {
        (id, true) => Some(id),
        (_, false) => None,
    }
}

/// As [`parse_id`], also accepting `ms-*` when `allow_auto_seq`; the flag returned is false
/// for `ms-*` (the sequence was not given).
pub fn parse_id_or_auto_seq(
    s: &[u8],
    missing_seq: u64,
    form: IdForm,
    allow_auto_seq: bool,
) -> Option<(StreamId, bool)> {
    if s.len() > MAX_ID_LEN {
        return None;
    }
    // Redis copies the argument into a C string: an embedded NUL ends it.
    let s = s.split(|&b| b == 0).next().unwrap_or(s);
    match s {
        b"-" if form == IdForm::Lenient => return Some((StreamId::MIN, true)),
        b"+" if form == IdForm::Lenient => return Some((StreamId::MAX, true)),
        b"-" | b"+" => return None,
        _ => {}
    }
    match s.iter().position(|&b| b == b'-') {
        Some(dash) => {
            let ms = parse_u64_like_redis(s.get(..dash)?)?;
            let seq = s.get(dash + 1..)?;
            if allow_auto_seq && seq == b"*" {
                Some((StreamId::new(ms, 0), false))
            } else {
                Some((StreamId::new(ms, parse_u64_like_redis(seq)?), true))
            }
        }
        None => Some((StreamId::new(parse_u64_like_redis(s)?, missing_seq), true)),
    }
}

/// A strict ID (`ms` means `ms-0`), or the invalid-ID error.
pub fn strict_id(s: &[u8]) -> Result<StreamId, Reply> {
    parse_id(s, 0, IdForm::Strict).ok_or_else(invalid_id)
}

/// Redis' `streamParseIntervalIDOrReply`: a range bound, `(` making it exclusive.
/// Returns the ID and whether it was exclusive.
pub fn interval_id(s: &[u8], missing_seq: u64) -> Result<(StreamId, bool), Reply> {
    match s.split_first() {
        Some((b'(', rest)) if !rest.is_empty() => parse_id(rest, missing_seq, IdForm::Strict)
            .map(|id| (id, true))
            .ok_or_else(invalid_id),
        _ => parse_id(s, missing_seq, IdForm::Lenient)
            .map(|id| (id, false))
            .ok_or_else(invalid_id),
    }
}

/// A range's inclusive bounds from interval arguments, with Redis' errors for `(` at the ends.
pub fn range_bounds(start: &[u8], end: &[u8]) -> Result<(StreamId, StreamId), Reply> {
    let (mut lo, lo_ex) = interval_id(start, 0)?;
    if lo_ex {
        lo = lo
            .next()
            .ok_or_else(|| Reply::err("invalid start ID for the interval"))?;
    }
    let (mut hi, hi_ex) = interval_id(end, u64::MAX)?;
    if hi_ex {
        hi = hi
            .prev()
            .ok_or_else(|| Reply::err("invalid end ID for the interval"))?;
    }
    Ok((lo, hi))
}

/// A stream ID as a bulk string.
pub fn id_reply(id: StreamId) -> Reply {
    Reply::Bulk(Bytes::from(id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_like_string2ull() {
        assert_eq!(parse_u64_like_redis(b"05"), Some(5));
        assert_eq!(parse_u64_like_redis(b"+6"), Some(6));
        assert_eq!(parse_u64_like_redis(b" 7"), Some(7));
        assert_eq!(
            parse_u64_like_redis(b"18446744073709551615"),
            Some(u64::MAX)
        );
        assert_eq!(parse_u64_like_redis(b"18446744073709551616"), None);
        assert_eq!(parse_u64_like_redis(b"-2"), None);
        assert_eq!(parse_u64_like_redis(b""), None);
        assert_eq!(parse_u64_like_redis(b"7 "), None);
        assert_eq!(parse_u64_like_redis(b"+"), None);
    }

    #[test]
    fn ids() {
        let id = |s: &[u8]| parse_id(s, 0, IdForm::Strict);
        assert_eq!(id(b"5"), Some(StreamId::new(5, 0)));
        assert_eq!(id(b"5-3"), Some(StreamId::new(5, 3)));
        assert_eq!(id(b"8-+3"), Some(StreamId::new(8, 3)));
        assert_eq!(id(b"00010"), Some(StreamId::new(10, 0)));
        for bad in [
            &b"-"[..],
            b"+",
            b"-1",
            b"1-",
            b"1-2-3",
            b"abc",
            b"5-*",
            b"(5",
            b"",
        ] {
            assert_eq!(id(bad), None, "{:?}", bad);
        }
        assert_eq!(parse_id(b"+", 0, IdForm::Lenient), Some(StreamId::MAX));
        assert_eq!(
            parse_id(b"7", u64::MAX, IdForm::Lenient),
            Some(StreamId::new(7, u64::MAX))
        );
        assert_eq!(
            parse_id_or_auto_seq(b"5-*", 0, IdForm::Strict, true),
            Some((StreamId::new(5, 0), false))
        );
        assert_eq!(id(&[b'1'; 128]), None);
    }

    #[test]
    fn intervals() {
        assert_eq!(range_bounds(b"-", b"+"), Ok((StreamId::MIN, StreamId::MAX)));
        assert_eq!(
            range_bounds(b"(1-1", b"(5"),
            Ok((StreamId::new(1, 2), StreamId::new(5, u64::MAX - 1)))
        );
        assert_eq!(range_bounds(b"(", b"+"), Err(invalid_id()));
        assert_eq!(range_bounds(b"(-", b"+"), Err(invalid_id()));
        assert_eq!(
            range_bounds(b"(18446744073709551615-18446744073709551615", b"+"),
            Err(Reply::err("invalid start ID for the interval"))
        );
        assert_eq!(
            range_bounds(b"-", b"(0-0"),
            Err(Reply::err("invalid end ID for the interval"))
        );
        assert_eq!(
            range_bounds(b"-", b"(0"),
            Ok((StreamId::MIN, StreamId::new(0, u64::MAX - 1)))
        );
    }
}
