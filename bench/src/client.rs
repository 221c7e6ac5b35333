//! A small pipelined RESP2 connection: queue requests, flush them in one write, read replies.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::resp::{self, Frame, Value};
use crate::{Error, Result};

/// Largest reply the connection buffers before giving up (a runaway server must not eat RAM).
const MAX_READ_BUFFER: usize = 1 << 30;

/// One connection to the server under test.
pub struct Conn {
    stream: TcpStream,
    wbuf: Vec<u8>,
    /// Received bytes; `rpos..rend` is not yet consumed.
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    /// Where the last reply returned by [`Conn::read_frame`] lies in `rbuf`.
    last: Range<usize>,
}

impl Conn {
    /// Connects with Nagle off, as every Redis client does.
    pub async fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Msg(format!("connect to {addr} timed out")))??;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            wbuf: Vec::with_capacity(64 * 1024),
            rbuf: vec![0; 64 * 1024],
            rpos: 0,
            rend: 0,
            last: 0..0,
        })
    }

    /// Appends one request to the outgoing buffer.
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        resp::encode_command(&mut self.wbuf, args);
    }

    /// Appends already-encoded request bytes to the outgoing buffer.
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Writes every queued request.
    pub async fn flush(&mut self) -> Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Reads more bytes, first moving unread bytes to the front and growing a full buffer.
    /// Cancel-safe: if the read is dropped unfinished, no byte is lost.
    pub async fn fill(&mut self) -> Result<()> {
        if self.rpos > 0 {
            self.rbuf.copy_within(self.rpos..self.rend, 0);
            self.rend -= self.rpos;
            self.rpos = 0;
            self.last = 0..0;
        }
        if self.rend == self.rbuf.len() {
            if self.rbuf.len() >= MAX_READ_BUFFER {
                return Err(Error::Msg("reply larger than the read buffer limit".into()));
            }
            let grown = self.rbuf.len() * 2;
            self.rbuf.resize(grown, 0);
        }
        let n = self.stream.read(&mut self.rbuf[self.rend..]).await?;
        if n == 0 {
            return Err(Error::Msg("server closed the connection".into()));
        }
        self.rend += n;
        Ok(())
    }

    /// Reads one reply without decoding it; its bytes stay readable through [`Conn::last`].
    pub async fn read_frame(&mut self) -> Result<Frame> {
        loop {
            if let Some(frame) = self.buffered_frame()? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    /// The next reply if the bytes already read hold all of it, else `None` (call
    /// [`Conn::fill`]); like [`Conn::read_frame`] otherwise.
    pub fn buffered_frame(&mut self) -> Result<Option<Frame>> {
        let Some(frame) = resp::scan(&self.rbuf[self.rpos..self.rend])? else {
            return Ok(None);
        };
        self.last = self.rpos..self.rpos + frame.len;
        self.rpos += frame.len;
        Ok(Some(frame))
    }

    /// The bytes of the reply last returned by [`Conn::read_frame`]; frame ranges index it.
    pub fn last(&self) -> &[u8] {
        &self.rbuf[self.last.clone()]
    }

    /// Reads one reply and fails if it is an error reply.
    pub async fn expect_ok_frame(&mut self) -> Result<Frame> {
        let frame = self.read_frame().await?;
        if frame.is_error() {
            return Err(Error::Msg(format!(
                "server error: {}",
                String::from_utf8_lossy(self.last()).trim_end()
            )));
        }
        Ok(frame)
    }

    /// Reads and decodes one reply.
    pub async fn read_value(&mut self) -> Result<Value> {
        loop {
            if let Some((value, len)) = resp::parse(&self.rbuf[self.rpos..self.rend])? {
                self.rpos += len;
                return Ok(value);
            }
            self.fill().await?;
        }
    }

    /// Sends one request and returns its decoded reply; an error reply becomes an `Err`.
    pub async fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value> {
        self.queue(args);
        self.flush().await?;
        match self.read_value().await? {
            Value::Error(msg) => Err(Error::Msg(format!(
                "server error: {}",
                String::from_utf8_lossy(&msg)
            ))),
            value => Ok(value),
        }
    }
}
