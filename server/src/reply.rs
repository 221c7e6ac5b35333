//! Typed replies and their RESP2/RESP3 encodings. Commands build a [`Reply`]; the connection
//! encodes it for the protocol the client negotiated with HELLO.

use bytes::{BufMut, Bytes, BytesMut};

/// The protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

/// A reply value. RESP3-only types degrade to their RESP2 forms as Redis sends them.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+OK`
    Ok,
    /// `+<text>`
    Simple(String),
    /// `-<text>`: the full error line, code included (`ERR ...`, `WRONGTYPE ...`).
    Error(String),
    Int(i64),
    Bulk(Bytes),
    /// Nil bulk string: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// Nil array: `*-1` in RESP2, `_` in RESP3.
    NullArray,
    Array(Vec<Reply>),
    /// A flat array of alternating keys and values in RESP2, `%` in RESP3.
    Map(Vec<(Reply, Reply)>),
    /// `%` in RESP3; in RESP2 an array of 2-element `[key, value]` arrays (XREAD's shape, which
    /// Redis sends instead of a flat map there).
    PairMap(Vec<(Reply, Reply)>),
    /// An array in RESP2, `~` in RESP3.
    Set(Vec<Reply>),
    /// A bulk string in RESP2, `,` in RESP3.
    Double(f64),
    /// `:1`/`:0` in RESP2, `#t`/`#f` in RESP3.
    Bool(bool),
    /// A bulk string in RESP2, `=` with a 3-letter format in RESP3.
    Verbatim(&'static str, Bytes),
    /// An array in RESP2, `>` in RESP3 (pub/sub messages).
    Push(Vec<Reply>),
    /// An array of `len` elements already encoded in `body`, in a form RESP2 and RESP3 share
    /// (arrays and bulk strings only): stream entries written straight from the engine,
    /// without a tree of replies per entry.
    RawArray {
        len: usize,
        body: Bytes,
    },
}

impl Reply {
    /// `-ERR <msg>`.
    pub fn err(msg: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {msg}"))
    }

    pub fn bulk(b: impl Into<Bytes>) -> Reply {
        Reply::Bulk(b.into())
    }

    pub fn str(s: &'static str) -> Reply {
        Reply::Bulk(Bytes::from_static(s.as_bytes()))
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends this reply's wire form to `out`.
    pub fn encode(&self, proto: Protocol, out: &mut BytesMut) {
        match self {
            Reply::Ok => out.put_slice(b"+OK\r\n"),
            Reply::Simple(s) => line(out, b'+', s.as_bytes()),
            Reply::Error(e) => line(out, b'-', e.as_bytes()),
            Reply::Int(i) => {
                out.put_u8(b':');
                put_int(out, *i);
                out.put_slice(b"\r\n");
            }
            Reply::Bulk(b) => bulk(out, b),
            Reply::Null => match proto {
                Protocol::Resp2 => out.put_slice(b"$-1\r\n"),
                Protocol::Resp3 => out.put_slice(b"_\r\n"),
            },
            Reply::NullArray => match proto {
                Protocol::Resp2 => out.put_slice(b"*-1\r\n"),
                Protocol::Resp3 => out.put_slice(b"_\r\n"),
            },
            Reply::Array(items) => {
                header(out, b'*', items.len());
                items.iter().for_each(|r| r.encode(proto, out));
            }
            Reply::Map(pairs) => {
                match proto {
                    Protocol::Resp2 => header(out, b'*', pairs.len() * 2),
                    Protocol::Resp3 => header(out, b'%', pairs.len()),
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Reply::PairMap(pairs) => {
                match proto {
                    Protocol::Resp2 => header(out, b'*', pairs.len()),
                    Protocol::Resp3 => header(out, b'%', pairs.len()),
                }
                for (k, v) in pairs {
                    if proto == Protocol::Resp2 {
                        header(out, b'*', 2);
                    }
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Reply::Set(items) => {
                let tag = if proto == Protocol::Resp3 { b'~' } else { b'*' };
                header(out, tag, items.len());
                items.iter().for_each(|r| r.encode(proto, out));
            }
            Reply::Push(items) => {
                let tag = if proto == Protocol::Resp3 { b'>' } else { b'*' };
                header(out, tag, items.len());
                items.iter().for_each(|r| r.encode(proto, out));
            }
            Reply::Double(d) => {
                let text = format_double(*d);
                match proto {
                    Protocol::Resp2 => bulk(out, text.as_bytes()),
                    Protocol::Resp3 => line(out, b',', text.as_bytes()),
                }
            }
            Reply::Bool(b) => match proto {
                Protocol::Resp2 => out.put_slice(if *b { b":1\r\n" } else { b":0\r\n" }),
                Protocol::Resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            },
            Reply::RawArray { len, body } => {
                header(out, b'*', *len);
                out.put_slice(body);
            }
            Reply::Verbatim(fmt, body) => match proto {
                Protocol::Resp2 => bulk(out, body),
                Protocol::Resp3 => {
                    header(out, b'=', body.len() + 4);
                    out.put_slice(fmt.as_bytes());
                    out.put_u8(b':');
                    out.put_slice(body);
                    out.put_slice(b"\r\n");
                }
            },
        }
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(&self, proto: Protocol) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(proto, &mut out);
        out.freeze()
    }
}

/// Writes an array header (`*<len>`) for a reply streamed element by element
/// ([`crate::cmd::ChunkedReply`]); the elements follow with [`Reply::encode`].
pub fn encode_array_header(out: &mut BytesMut, len: usize) {
    header(out, b'*', len);
}

/// Writes a bulk string (`$<len>` and the bytes), the same in RESP2 and RESP3.
pub fn encode_bulk(out: &mut BytesMut, b: &[u8]) {
    bulk(out, b);
}

/// Writes a map header: `%<len>` in RESP3, `*<2*len>` in RESP2.
pub fn encode_map_header(proto: Protocol, out: &mut BytesMut, len: usize) {
    match proto {
        Protocol::Resp2 => header(out, b'*', len * 2),
        Protocol::Resp3 => header(out, b'%', len),
    }
}

/// Redis prints doubles with `%.17g`; integral values and infinities have short forms.
fn format_double(d: f64) -> String {
    if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_string()
    } else if d.is_nan() {
        "nan".to_string()
    } else {
        format!("{d}")
    }
}

fn line(out: &mut BytesMut, tag: u8, text: &[u8]) {
    out.put_u8(tag);
    // A simple string or error must not contain CR/LF; replace them as Redis does.
    out.extend(
        text.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.put_slice(b"\r\n");
}

/// The longest `<tag><len>\r\n`: a tag, 20 digits, CRLF.
const HEADER_MAX: usize = 23;

/// Bulk strings up to this length are written with one copy (header, bytes and CRLF
/// assembled on the stack): replies such as XRANGE's are mostly short strings, and one copy
/// per piece cost more than the bytes themselves.
const SMALL_BULK: usize = 64;

/// Writes the decimal digits of `n` into `buf` ending just before `end`; returns where
/// they start. `buf` must have room for them (20 digits at most).
pub(crate) fn digits_before(buf: &mut [u8], end: usize, mut n: u64) -> usize {
    let mut at = end;
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return at;
        }
    }
}

/// Writes `<tag><len>\r\n` into the end of `buf`; returns where it starts.
fn header_into(buf: &mut [u8; HEADER_MAX], tag: u8, len: usize) -> usize {
    buf[HEADER_MAX - 2..].copy_from_slice(b"\r\n");
    let at = digits_before(buf, HEADER_MAX - 2, len as u64) - 1;
    buf[at] = tag;
    at
}

fn header(out: &mut BytesMut, tag: u8, len: usize) {
    let mut buf = [0u8; HEADER_MAX];
    let at = header_into(&mut buf, tag, len);
    out.put_slice(&buf[at..]);
}

fn bulk(out: &mut BytesMut, b: &[u8]) {
    let mut head = [0u8; HEADER_MAX];
    let at = header_into(&mut head, b'$', b.len());
    let head = &head[at..];
    if b.len() <= SMALL_BULK {
        let mut buf = [0u8; HEADER_MAX + SMALL_BULK + 2];
        let end = head.len() + b.len();
        buf[..head.len()].copy_from_slice(head);
        buf[head.len()..end].copy_from_slice(b);
        buf[end..end + 2].copy_from_slice(b"\r\n");
        out.put_slice(&buf[..end + 2]);
    } else {
        out.put_slice(head);
        out.put_slice(b);
        out.put_slice(b"\r\n");
    }
}

/// Appends `i` in decimal, without allocating.
pub(crate) fn put_int(out: &mut BytesMut, i: i64) {
    let mut buf = itoa_buf(i);
    out.put_slice(buf.as_bytes_mut());
}

/// Formats an integer without allocating.
fn itoa_buf(i: i64) -> IntBuf {
    let mut b = IntBuf {
        bytes: [0; 20],
        start: 20,
    };
    let neg = i < 0;
    b.start = digits_before(&mut b.bytes, b.start, i.unsigned_abs());
    if neg {
        b.start -= 1;
        b.bytes[b.start] = b'-';
    }
    b
}

struct IntBuf {
    bytes: [u8; 20],
    start: usize,
}

impl IntBuf {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply, p: Protocol) -> Vec<u8> {
        r.to_bytes(p).to_vec()
    }

    /// Bulk strings on both sides of the one-copy limit, and headers of every width.
    #[test]
    fn bulk_and_header_framing() {
        for n in [
            0,
            1,
            9,
            10,
            SMALL_BULK - 1,
            SMALL_BULK,
            SMALL_BULK + 1,
            1000,
        ] {
            let data: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let mut out = BytesMut::new();
            encode_bulk(&mut out, &data);
            let mut want = format!("${n}\r\n").into_bytes();
            want.extend_from_slice(&data);
            want.extend_from_slice(b"\r\n");
            assert_eq!(&out[..], &want[..], "length {n}");
        }
        for n in [0, 7, 10, 12_345, usize::MAX] {
            let mut out = BytesMut::new();
            encode_array_header(&mut out, n);
            assert_eq!(&out[..], format!("*{n}\r\n").as_bytes());
        }
    }

    #[test]
    fn resp2_and_resp3_forms() {
        assert_eq!(enc(&Reply::Null, Protocol::Resp2), b"$-1\r\n");
        assert_eq!(enc(&Reply::Null, Protocol::Resp3), b"_\r\n");
        assert_eq!(enc(&Reply::NullArray, Protocol::Resp2), b"*-1\r\n");
        assert_eq!(
            enc(&Reply::Int(i64::MIN), Protocol::Resp2),
            b":-9223372036854775808\r\n"
        );
        let m = Reply::Map(vec![(Reply::str("a"), Reply::Int(1))]);
        assert_eq!(enc(&m, Protocol::Resp2), b"*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&m, Protocol::Resp3), b"%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&Reply::Double(1.5), Protocol::Resp3), b",1.5\r\n");
        let pm = Reply::PairMap(vec![(Reply::str("k"), Reply::Int(1))]);
        assert_eq!(enc(&pm, Protocol::Resp2), b"*1\r\n*2\r\n$1\r\nk\r\n:1\r\n");
        assert_eq!(enc(&pm, Protocol::Resp3), b"%1\r\n$1\r\nk\r\n:1\r\n");
        assert_eq!(enc(&Reply::Double(1.5), Protocol::Resp2), b"$3\r\n1.5\r\n");
        assert_eq!(enc(&Reply::Bool(true), Protocol::Resp2), b":1\r\n");
        assert_eq!(
            enc(
                &Reply::Verbatim("txt", Bytes::from_static(b"hi")),
                Protocol::Resp3
            ),
            b"=6\r\ntxt:hi\r\n"
        );
        assert_eq!(
            enc(&Reply::err("x\r\ny"), Protocol::Resp2),
            b"-ERR x  y\r\n"
        );
    }
}
