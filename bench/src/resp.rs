//! Client-side RESP: request encoding and a non-recursive reply reader.
//!
//! Two readers over the same grammar: [`scan`] finds where one reply ends without allocating
//! (the hot path of every workload), and [`parse`] builds a [`Value`] tree for the few replies
//! whose content the load tool needs (entry IDs to acknowledge, pub/sub payloads).

use std::fmt;
use std::ops::Range;

/// Largest bulk string the reader accepts (Redis' own `proto-max-bulk-len` default).
pub const MAX_BULK_LEN: usize = 512 * 1024 * 1024;
/// Largest aggregate (array, map, set, push) length the reader accepts.
pub const MAX_AGGREGATE_LEN: usize = 64 * 1024 * 1024;
/// Deepest nesting the reader accepts; stream replies nest four levels.
pub const MAX_DEPTH: usize = 64;

/// A malformed or over-limit reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// Appends one request, a RESP array of bulk strings, to `buf`.
pub fn encode_command<A: AsRef<[u8]>>(buf: &mut Vec<u8>, args: &[A]) {
    buf.push(b'*');
    push_decimal(buf, args.len() as u64);
    buf.extend_from_slice(b"\r\n");
    for arg in args {
        let arg = arg.as_ref();
        buf.push(b'$');
        push_decimal(buf, arg.len() as u64);
        buf.extend_from_slice(b"\r\n");
        buf.extend_from_slice(arg);
        buf.extend_from_slice(b"\r\n");
    }
}

fn push_decimal(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Where one complete reply lies in a buffer, found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Bytes the reply occupies at the start of the buffer.
    pub len: usize,
    /// The reply's type byte (`+`, `-`, `:`, `$`, `*`, `>`, ...).
    pub kind: u8,
    /// Element count of a top-level aggregate (-1 for a null array), else 0.
    pub count: i64,
    /// The first and the last bulk string anywhere in the reply (payload ranges).
    pub first_bulk: Option<Range<usize>>,
    pub last_bulk: Option<Range<usize>>,
}

impl Frame {
    /// True for `-ERR ...` and RESP3 blob errors.
    pub fn is_error(&self) -> bool {
        self.kind == b'-' || self.kind == b'!'
    }
}

/// A decoded reply, for the replies whose content matters.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Vec<u8>),
    Array(Vec<Value>),
    Null,
}

impl Value {
    /// Bytes of a simple or bulk string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Simple(b) | Value::Bulk(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }
}

/// One header line: type byte, the text after it, and the offset just past its CRLF.
fn header(buf: &[u8], at: usize) -> Option<(u8, Range<usize>, usize)> {
    let kind = *buf.get(at)?;
    let start = at + 1;
    let mut from = start;
    loop {
        let cr = from + buf.get(from..)?.iter().position(|&b| b == b'\r')?;
        if *buf.get(cr + 1)? == b'\n' {
            return Some((kind, start..cr, cr + 2));
        }
        from = cr + 1;
    }
}

/// A decimal integer with an optional sign (what `str::parse::<i64>` accepts), parsed
/// without going through `str`: the load tool reads every delivery's headers.
fn parse_int(text: &[u8]) -> Result<i64, ProtocolError> {
    let bad = || ProtocolError(format!("bad integer {:?}", String::from_utf8_lossy(text)));
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(bad());
        }
        let d = i64::from(d - b'0');
        n = n
            .checked_mul(10)
            .and_then(|n| {
                if negative {
                    n.checked_sub(d)
                } else {
                    n.checked_add(d)
                }
            })
            .ok_or_else(bad)?;
    }
    Ok(n)
}

/// Length of a bulk payload from its header, or None for a null bulk.
fn bulk_len(text: &[u8]) -> Result<Option<usize>, ProtocolError> {
    let n = parse_int(text)?;
    if n < 0 {
        return Ok(None);
    }
    let n = usize::try_from(n).map_err(|_| ProtocolError("bulk length".into()))?;
    if n > MAX_BULK_LEN {
        return Err(ProtocolError(format!("bulk of {n} bytes exceeds limit")));
    }
    Ok(Some(n))
}

/// Element count of an aggregate header (maps count key and value), or None for null.
fn aggregate_len(kind: u8, text: &[u8]) -> Result<Option<usize>, ProtocolError> {
    let n = parse_int(text)?;
    if n < 0 {
        return Ok(None);
    }
    let n = usize::try_from(n).map_err(|_| ProtocolError("aggregate length".into()))?;
    if n > MAX_AGGREGATE_LEN {
        return Err(ProtocolError(format!(
            "aggregate of {n} items exceeds limit"
        )));
    }
    Ok(Some(if matches!(kind, b'%' | b'|') {
        n * 2
    } else {
        n
    }))
}

fn is_aggregate(kind: u8) -> bool {
    matches!(kind, b'*' | b'%' | b'~' | b'>' | b'|')
}

fn is_blob(kind: u8) -> bool {
    matches!(kind, b'$' | b'!' | b'=')
}

/// Finds the end of the first complete reply in `buf` without allocating.
///
/// Returns `Ok(None)` when more bytes are needed. Iterative: a counter of items still owed
/// replaces recursion; a stack of per-level counts only enforces the depth limit.
pub fn scan(buf: &[u8]) -> Result<Option<Frame>, ProtocolError> {
    let mut at = 0;
    // Items still owed at each open level; the reply itself is one item at level 0. A fixed
    // array: this runs once per delivery and must not allocate.
    let mut owed = [0usize; MAX_DEPTH];
    owed[0] = 1;
    let mut depth = 1;
    let mut frame = Frame {
        len: 0,
        kind: 0,
        count: 0,
        first_bulk: None,
        last_bulk: None,
    };
    let mut first = true;
    while depth > 0 {
        let top = &mut owed[depth - 1];
        if *top == 0 {
            depth -= 1;
            continue;
        }
        *top -= 1;
        let Some((kind, text, next)) = header(buf, at) else {
            return Ok(None);
        };
        if first {
            frame.kind = kind;
        }
        at = next;
        if is_blob(kind) {
            if let Some(n) = bulk_len(&buf[text])? {
                if buf.len() < at + n + 2 {
                    return Ok(None);
                }
                let range = at..at + n;
                if frame.first_bulk.is_none() {
                    frame.first_bulk = Some(range.clone());
                }
                frame.last_bulk = Some(range);
                at += n + 2;
            }
        } else if is_aggregate(kind) {
            let n = aggregate_len(kind, &buf[text.clone()])?;
            if first {
                frame.count = match n {
                    Some(n) => n as i64,
                    None => -1,
                };
            }
            if let Some(n) = n {
                if n > 0 {
                    if depth >= MAX_DEPTH {
                        return Err(ProtocolError("reply nested too deeply".into()));
                    }
                    owed[depth] = n;
                    depth += 1;
                }
            }
        } else if !matches!(kind, b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(') {
            return Err(ProtocolError(format!(
                "unknown reply type byte {kind:#04x}"
            )));
        }
        first = false;
    }
    frame.len = at;
    Ok(Some(frame))
}

/// Decodes the first complete reply in `buf` into a [`Value`], with its length in bytes.
///
/// Returns `Ok(None)` when more bytes are needed. Iterative: open arrays wait on a stack.
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
    let mut at = 0;
    // Open aggregates: items collected so far and how many are still owed.
    let mut stack: Vec<(Vec<Value>, usize)> = Vec::new();
    loop {
        let Some((kind, text, next)) = header(buf, at) else {
            return Ok(None);
        };
        at = next;
        let text = &buf[text];
        let mut value = if is_blob(kind) {
            match bulk_len(text)? {
                None => Value::Null,
                Some(n) => {
                    if buf.len() < at + n + 2 {
                        return Ok(None);
                    }
                    let bytes = buf[at..at + n].to_vec();
                    at += n + 2;
                    if kind == b'!' {
                        Value::Error(bytes)
                    } else {
                        Value::Bulk(bytes)
                    }
                }
            }
        } else if is_aggregate(kind) {
            match aggregate_len(kind, text)? {
                None => Value::Null,
                Some(0) => Value::Array(Vec::new()),
                Some(n) => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(ProtocolError("reply nested too deeply".into()));
                    }
                    stack.push((Vec::with_capacity(n.min(1024)), n));
                    continue;
                }
            }
        } else {
            match kind {
                b'+' => Value::Simple(text.to_vec()),
                b'-' => Value::Error(text.to_vec()),
                b':' => Value::Int(parse_int(text)?),
                b'_' => Value::Null,
                b',' | b'#' | b'(' => Value::Simple(text.to_vec()),
                other => {
                    return Err(ProtocolError(format!(
                        "unknown reply type byte {other:#04x}"
                    )))
                }
            }
        };
        // Hand the finished value to its parent, closing every aggregate it completes.
        loop {
            match stack.last_mut() {
                None => return Ok(Some((value, at))),
                Some((items, owed)) => {
                    items.push(value);
                    *owed -= 1;
                    if *owed > 0 {
                        break;
                    }
                }
            }
            match stack.pop() {
                Some((items, _)) => value = Value::Array(items),
                None => return Err(ProtocolError("reader stack underflow".into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_command_as_an_array_of_bulk_strings() {
        let mut buf = Vec::new();
        encode_command(&mut buf, &["XADD", "s", "*", "f", ""]);
        assert_eq!(
            buf,
            b"*5\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n*\r\n$1\r\nf\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn scan_and_parse_agree_on_a_stream_reply_split_at_every_byte() {
        let reply =
            b"*1\r\n*2\r\n$1\r\ns\r\n*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$2\r\nv1\r\n\
*2\r\n$3\r\n2-0\r\n*2\r\n$1\r\nf\r\n$2\r\nv2\r\n+OK\r\n";
        let whole = reply.len() - 5;
        for cut in 0..whole {
            assert_eq!(scan(&reply[..cut]).unwrap(), None, "cut {cut}");
            assert_eq!(parse(&reply[..cut]).unwrap(), None, "cut {cut}");
        }
        let frame = scan(reply).unwrap().unwrap();
        assert_eq!(frame.len, whole);
        assert_eq!(frame.kind, b'*');
        assert_eq!(frame.count, 1);
        assert_eq!(&reply[frame.first_bulk.unwrap()], b"s");
        assert_eq!(&reply[frame.last_bulk.unwrap()], b"v2");
        let (value, len) = parse(reply).unwrap().unwrap();
        assert_eq!(len, whole);
        let entries = &value.as_array().unwrap()[0].as_array().unwrap()[1];
        let second = &entries.as_array().unwrap()[1].as_array().unwrap()[0];
        assert_eq!(second.as_bytes(), Some(&b"2-0"[..]));
    }

    #[test]
    fn reads_scalars_nulls_and_errors() {
        assert_eq!(parse(b":42\r\n").unwrap(), Some((Value::Int(42), 5)));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Some((Value::Null, 5)));
        assert_eq!(parse(b"*-1\r\n").unwrap(), Some((Value::Null, 5)));
        assert_eq!(parse(b"*0\r\n").unwrap(), Some((Value::Array(vec![]), 4)));
        assert_eq!(
            parse(b"-ERR no\r\n").unwrap(),
            Some((Value::Error(b"ERR no".to_vec()), 9))
        );
        let frame = scan(b"-ERR no\r\n").unwrap().unwrap();
        assert!(frame.is_error());
        assert_eq!(scan(b"*-1\r\n").unwrap().unwrap().count, -1);
    }

    #[test]
    fn parses_integers_as_the_standard_library_does() {
        let cases = [
            "0",
            "7",
            "-7",
            "+7",
            "-0",
            "007",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "-9223372036854775809",
            "",
            "-",
            "+",
            "1a",
            " 1",
            "1 ",
            "--1",
            "18446744073709551616",
        ];
        for case in cases {
            let ours = parse_int(case.as_bytes()).ok();
            assert_eq!(ours, case.parse::<i64>().ok(), "{case:?}");
        }
    }

    #[test]
    fn a_header_ends_at_the_first_crlf_only() {
        assert_eq!(header(b"+a\rb\r\nrest", 0), Some((b'+', 1..4, 6)));
        assert_eq!(header(b"+ab\r", 0), None);
        assert_eq!(header(b"+ab", 0), None);
        assert_eq!(header(b"", 0), None);
        assert_eq!(header(b":1\r\n:2\r\n", 4), Some((b':', 5..6, 8)));
    }

    #[test]
    fn rejects_garbage_and_deep_nesting_without_recursing() {
        assert!(scan(b"?x\r\n").is_err());
        assert!(parse(b"$abc\r\n").is_err());
        let deep = "*1\r\n".repeat(100_000);
        assert!(scan(deep.as_bytes()).is_err());
        assert!(parse(deep.as_bytes()).is_err());
        assert!(scan(b"$999999999999\r\n").is_err());
    }
}
