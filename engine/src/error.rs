//! The engine's one error type. Variants a client can cause carry enough for the server to
//! produce Redis' exact error text; the rest are I/O and on-disk faults.

use std::{fmt, io, path::PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum Error {
    /// XADD with an ID ≤ the stream's last generated ID.
    IdTooSmall,
    /// XADD with the ID 0-0.
    IdZero,
    /// `*` or `ms-*` cannot produce an ID (the stream is at the maximum ID).
    IdExhausted,
    /// XSETID below the stream's top entry.
    SetIdTooSmall,
    /// XSETID's max-deleted-id above the requested last ID.
    SetIdMaxDeletedTooLarge,
    /// XSETID's entries-added below the stream's current length.
    SetIdEntriesAddedTooSmall,
    /// The consumer group does not exist.
    NoGroup,
    /// XGROUP CREATE of a group that exists.
    BusyGroup,
    /// The key does not hold a stream.
    NoSuchKey,
    /// The key already exists (RENAMENX-style callers check first; this guards the engine).
    KeyExists,
    /// A previous fsync or write failed: the engine refuses writes until it is reopened.
    Poisoned(String),
    /// Data that was durable failed its CRC.
    Corruption {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    Io {
        context: String,
        source: io::Error,
    },
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::IdTooSmall => write!(
                f,
                "The ID specified in XADD is equal or smaller than the target stream top item"
            ),
            Error::IdZero => write!(f, "The ID specified in XADD must be greater than 0-0"),
            Error::IdExhausted => write!(
                f,
                "The stream has exhausted the last possible ID, unable to add more items"
            ),
            Error::SetIdTooSmall => write!(
                f,
                "The ID specified in XSETID is smaller than the target stream top item"
            ),
            Error::SetIdMaxDeletedTooLarge => write!(
                f,
                "The ID specified in XSETID is smaller than the provided max_deleted_entry_id"
            ),
            Error::SetIdEntriesAddedTooSmall => write!(
                f,
                "The entries_added specified in XSETID is smaller than the target stream length"
            ),
            Error::NoGroup => write!(f, "no such consumer group"),
            Error::BusyGroup => write!(f, "Consumer Group name already exists"),
            Error::NoSuchKey => write!(f, "no such key"),
            Error::KeyExists => write!(f, "key exists"),
            Error::Poisoned(why) => write!(f, "writes are disabled after an I/O error: {why}"),
            Error::Corruption {
                path,
                offset,
                detail,
            } => write!(
                f,
                "corruption in {} at offset {offset}: {detail}",
                path.display()
            ),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
