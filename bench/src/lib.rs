//! Sluice's benchmark support: the `sluice-load` RESP load generator and its pieces.
//!
//! The load tool drives any RESP server (Sluice or redis-server) on the loopback interface and
//! prints one `figure ...` line per measured value, for `bench/compare.sh` to tabulate.

pub mod client;
pub mod figure;
pub mod resp;
pub mod stats;
pub mod workload;

use std::fmt;

/// Everything that can go wrong while driving a server.
#[derive(Debug)]
pub enum Error {
    Io(std::io::Error),
    Protocol(resp::ProtocolError),
    Msg(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::Protocol(e) => write!(f, "{e}"),
            Error::Msg(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<resp::ProtocolError> for Error {
    fn from(e: resp::ProtocolError) -> Self {
        Error::Protocol(e)
    }
}

impl From<tokio::time::error::Elapsed> for Error {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        Error::Msg("timed out".into())
    }
}
