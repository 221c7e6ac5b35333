//! A minimal blocking RESP2 client: the crash test needs exact control over what was sent and
//! which replies arrived before the kill, which a pooling or reconnecting client would hide.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest bulk string or array the parser accepts; a reply beyond it is a protocol error.
const MAX_BULK: usize = 64 << 20;
const MAX_ARRAY: usize = 1 << 20;
const MAX_DEPTH: usize = 16;

/// A stream entry ID, `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id {
    pub ms: u64,
    pub seq: u64,
}

impl Id {
    pub const ZERO: Id = Id { ms: 0, seq: 0 };

    pub fn parse(b: &[u8]) -> Option<Id> {
        let s = std::str::from_utf8(b).ok()?;
        let (ms, seq) = s.split_once('-')?;
        Some(Id {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// The smallest ID strictly greater than this one (used to page with inclusive ranges).
    pub fn next(self) -> Id {
        if self.seq < u64::MAX {
            Id {
                ms: self.ms,
                seq: self.seq + 1,
            }
        } else {
            Id {
                ms: self.ms + 1,
                seq: 0,
            }
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A decoded reply. RESP3-only types are folded into their RESP2 look-alikes.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Value>),
}

impl Value {
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(b) => Some(b),
            Value::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    pub fn as_id(&self) -> Option<Id> {
        self.as_bytes().and_then(Id::parse)
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bulk(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Looks a field up in a RESP2 flat `[name, value, name, value, ...]` reply (XINFO).
    pub fn field(&self, name: &str) -> Option<&Value> {
        let items = self.as_array()?;
        items
            .chunks(2)
            .find(|pair| pair.first().and_then(Value::as_bytes) == Some(name.as_bytes()))
            .and_then(|pair| pair.get(1))
    }
}

/// One command: its arguments as raw bytes.
pub type Cmd = Vec<Vec<u8>>;

/// Builds a command from anything byte-like.
pub fn cmd<I, A>(args: I) -> Cmd
where
    I: IntoIterator<Item = A>,
    A: AsRef<[u8]>,
{
    args.into_iter().map(|a| a.as_ref().to_vec()).collect()
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A connection that writes pipelines and reads replies one at a time.
pub struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn connect(port: u16, timeout: Duration) -> io::Result<Conn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let reader = BufReader::with_capacity(64 << 10, stream.try_clone()?);
        Ok(Conn {
            writer: stream,
            reader,
        })
    }

    /// Sends every command in one write (a pipeline); replies are read with [`Conn::recv`].
    pub fn send(&mut self, cmds: &[Cmd]) -> io::Result<()> {
        let mut buf = Vec::new();
        for c in cmds {
            buf.extend_from_slice(format!("*{}\r\n", c.len()).as_bytes());
            for arg in c {
                buf.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
                buf.extend_from_slice(arg);
                buf.extend_from_slice(b"\r\n");
            }
        }
        self.writer.write_all(&buf)?;
        self.writer.flush()
    }

    pub fn call(&mut self, c: Cmd) -> io::Result<Value> {
        self.send(&[c])?;
        self.recv()
    }

    /// Reads one complete reply. Iterative (an explicit stack), with limits on sizes and depth.
    pub fn recv(&mut self) -> io::Result<Value> {
        let mut stack: Vec<(usize, Vec<Value>)> = Vec::new();
        loop {
            let line = self.read_line()?;
            let (kind, rest) = line.split_first().ok_or_else(|| invalid("empty line"))?;
            let text = String::from_utf8_lossy(rest).into_owned();
            let len = || -> io::Result<i64> {
                text.parse::<i64>()
                    .map_err(|_| invalid(format!("bad length {text:?}")))
            };
            let mut value = match kind {
                b'+' => Value::Simple(text.clone()),
                b'-' => Value::Error(text.clone()),
                b':' => Value::Int(len()?),
                b'#' => Value::Int(i64::from(text == "t")),
                b',' | b'(' => Value::Simple(text.clone()),
                b'_' => Value::Nil,
                b'$' | b'=' | b'!' => {
                    let n = len()?;
                    if n < 0 {
                        Value::Nil
                    } else {
                        let n = usize::try_from(n).map_err(|_| invalid("bulk length"))?;
                        if n > MAX_BULK {
                            return Err(invalid("bulk too large"));
                        }
                        let mut body = vec![0; n + 2];
                        self.reader.read_exact(&mut body)?;
                        if body.get(n..) != Some(b"\r\n") {
                            return Err(invalid("bulk not terminated by CRLF"));
                        }
                        body.truncate(n);
                        Value::Bulk(body)
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let n = len()?;
                    if n < 0 {
                        Value::Nil
                    } else {
                        let mut n = usize::try_from(n).map_err(|_| invalid("array length"))?;
                        if matches!(kind, b'%' | b'|') {
                            n = n.saturating_mul(2);
                        }
                        if n > MAX_ARRAY {
                            return Err(invalid("array too large"));
                        }
                        if n == 0 {
                            Value::Array(Vec::new())
                        } else {
                            if stack.len() >= MAX_DEPTH {
                                return Err(invalid("nesting too deep"));
                            }
                            stack.push((n, Vec::with_capacity(n.min(1024))));
                            continue;
                        }
                    }
                }
                other => return Err(invalid(format!("unknown reply type {:?}", *other as char))),
            };
            loop {
                let Some((want, items)) = stack.last_mut() else {
                    return Ok(value);
                };
                items.push(value);
                if items.len() < *want {
                    break;
                }
                let (_, items) = stack.pop().ok_or_else(|| invalid("stack underflow"))?;
                value = Value::Array(items);
            }
        }
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_BULK as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        if !line.ends_with(b"\r\n") {
            return Err(invalid("line not terminated by CRLF"));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }
}
