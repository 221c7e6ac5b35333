//! Typed commands: a request's arguments are parsed into a command value (with Redis' exact
//! errors), then executed against the engine under its lock, producing an [`Outcome`].
//!
//! # Contract with the command families
//! Each family module (`stream`, `pubsub`, `keys`, ...) exposes
//! `parse(name: &str, args: &[Bytes]) -> Result<TheirCommand, Reply>` and an `execute`.
//! `name` is the lowercase command name; `args` are the arguments after it (`args[0]` is the
//! first argument). The dispatcher has already checked the arity from the command table
//! ([`table`]), so `parse` only reports syntax errors. Engine-backed families execute with
//! `execute(cmd, &mut Ctx) -> Outcome`, synchronously, with the engine lock held.

pub mod connection;
pub mod keys;
pub mod pubsub;
pub mod server;
pub mod stream;
pub mod table;
mod table_data;
pub mod transaction;

use bytes::{Bytes, BytesMut};
use sluice_engine::{Db, Engine, Lsn};

use crate::reply::{Protocol, Reply};

/// A parsed request, by family.
#[derive(Debug)]
pub enum Command {
    Connection(connection::ConnCommand),
    Keys(keys::KeysCommand),
    Server(server::ServerCommand),
    Transaction(transaction::TxCommand),
    Stream(stream::StreamCommand),
    PubSub(pubsub::PubSubCommand),
    /// A known command whose own syntax check refused its arguments. Redis runs such a
    /// command and the command replies the error, so it passes the NOAUTH and
    /// subscribed-mode checks first, is queued inside MULTI (its error then takes its
    /// place in EXEC's array) and counts as a failed call.
    Invalid(Reply),
}

/// Parses a request (`args[0]` is the command name) into a typed command, checking the
/// command exists and its arity first, with Redis' texts. Returns the table entry too.
/// `Err` is what Redis rejects before running anything (an unknown command or
/// subcommand, a wrong arity); a syntax error is [`Command::Invalid`].
pub fn parse(args: &[Bytes]) -> Result<(Command, &'static table::Spec), Reply> {
    let Some((name, rest)) = args.split_first() else {
        return Err(Reply::err("empty command"));
    };
    let Some(spec) = table::lookup(name) else {
        return Err(unknown_command(name, rest));
    };
    if !spec.arity_ok(args.len()) {
        return Err(wrong_arity(spec.name));
    }
    if let (true, Some(sub)) = (table::is_container(spec.name), rest.first()) {
        let Some(arity) = table::subcommand_arity(spec.name, sub) else {
            return Err(Reply::err(format!(
                "unknown subcommand '{}'. Try {} HELP.",
                String::from_utf8_lossy(&sub[..sub.len().min(128)]),
                spec.name.to_ascii_uppercase()
            )));
        };
        if !table::arity_ok(arity, args.len()) {
            return Err(Reply::err(format!(
                "wrong number of arguments for '{}|{}' command",
                spec.name,
                String::from_utf8_lossy(sub).to_ascii_lowercase()
            )));
        }
    }
    let cmd = match spec.family {
        table::Family::Connection => connection::parse(spec.name, rest).map(Command::Connection),
        table::Family::Keys => keys::parse(spec.name, rest).map(Command::Keys),
        table::Family::Server => server::parse(spec.name, rest).map(Command::Server),
        table::Family::Transaction => transaction::parse(spec.name, rest).map(Command::Transaction),
        table::Family::Stream => stream::parse(spec.name, rest).map(Command::Stream),
        table::Family::PubSub => pubsub::parse(spec.name, rest).map(Command::PubSub),
    };
    Ok((cmd.unwrap_or_else(Command::Invalid), spec))
}

/// `ERR unknown command '<name>', with args beginning with: '<a>' ...`, worded and truncated
/// as Redis does (the name as sent, at most 128 bytes; arguments while under 128 bytes).
pub fn unknown_command(name: &[u8], args: &[Bytes]) -> Reply {
    let mut listed = String::new();
    for a in args {
        if listed.len() >= 128 {
            break;
        }
        let room = 128 - listed.len();
        let shown = &a[..a.len().min(room)];
        listed.push('\'');
        listed.push_str(&String::from_utf8_lossy(shown));
        listed.push_str("' ");
    }
    let name = String::from_utf8_lossy(&name[..name.len().min(128)]).into_owned();
    Reply::err(format!(
        "unknown command '{name}', with args beginning with: {listed}"
    ))
}

/// Redis' `string2ll`: optional `-`, digits without leading zeros, no spaces, no overflow.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    if neg {
        if v <= i64::MAX as u64 + 1 {
            Some((v as i64).wrapping_neg())
        } else {
            None
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// Redis' `getLongLongFromObjectOrReply`: a `string2ll` integer, else the generic error.
pub fn int_arg(s: &[u8]) -> Result<i64, Reply> {
    parse_i64(s).ok_or_else(not_integer)
}

/// `ERR wrong number of arguments for '<name>' command`.
pub fn wrong_arity(name: &str) -> Reply {
    Reply::err(format!("wrong number of arguments for '{name}' command"))
}

/// `ERR value is not an integer or out of range` (Redis' `getLongLongFromObjectOrReply`).
pub fn not_integer() -> Reply {
    Reply::err("value is not an integer or out of range")
}

/// `ERR syntax error`.
pub fn syntax_error() -> Reply {
    Reply::err("syntax error")
}

/// Maps an engine error to its generic reply: MISCONF for a poisoned engine, `ERR <text>`
/// otherwise. Families map client-caused errors with context (NOGROUP, ...) themselves.
pub fn engine_error(e: &sluice_engine::Error) -> Reply {
    match e {
        sluice_engine::Error::Poisoned(why) => misconf(why),
        sluice_engine::Error::BusyGroup => {
            Reply::Error("BUSYGROUP Consumer Group name already exists".to_string())
        }
        other => Reply::err(other),
    }
}

/// A fresh pseudo-random number: a counter hashed with keys the OS seeded (RANDOMKEY's
/// draws, INFO's run_id). Not for secrets.
pub fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    KEYS.get_or_init(Default::default).hash_one(n)
}

/// The error for writes refused after a failed fsync, worded as Redis' AOF write error.
pub fn misconf(why: &str) -> Reply {
    Reply::Error(format!("MISCONF Errors writing to the AOF file: {why}"))
}

/// What a command execution may use: the engine (locked), and who is asking.
pub struct Ctx<'a> {
    /// The engine, locked for the duration of the command (and of a whole EXEC).
    pub engine: &'a mut Engine,
    /// The client's selected database.
    pub db: Db,
    /// Wall-clock time in Unix ms, read once per command (Redis' `commandTimeSnapshot`).
    pub now_ms: u64,
    pub client_id: u64,
    /// True while executing inside EXEC: blocking commands must not block (XREAD BLOCK
    /// replies as if timed out at once).
    pub in_multi: bool,
    /// Side effects the connection acts on after execution.
    pub effects: &'a mut Effects,
}

/// Side effects of executing commands, collected so the connection can act on them after
/// the engine work: await durability, notify keyspace subscribers, invalidate WATCH, wake
/// blocked readers.
#[derive(Debug, Default)]
pub struct Effects {
    /// The greatest Lsn written; the reply waits until it is durable under the fsync policy.
    pub lsn: Lsn,
    /// Keyspace notifications to publish (filtered by `notify-keyspace-events`).
    pub events: Vec<KeyspaceEvent>,
    /// Keys modified: invalidates WATCHes and wakes readers blocked on them.
    pub touched: Vec<(Db, Bytes)>,
    /// Databases emptied wholesale (FLUSHDB/FLUSHALL/SWAPDB-like): every key in them counts
    /// as touched.
    pub flushed: Vec<Db>,
    /// Keys whose blocked readers must look again although the key did not change for WATCH
    /// (XGROUP DESTROY: its XREADGROUP readers get NOGROUP).
    pub ready: Vec<(Db, Bytes)>,
}

impl Effects {
    /// Records a write's Lsn (keeps the maximum).
    pub fn wrote(&mut self, lsn: Lsn) {
        if lsn > self.lsn {
            self.lsn = lsn;
        }
    }

    /// Records that a key changed.
    pub fn touch(&mut self, db: Db, key: &Bytes) {
        self.touched.push((db, key.clone()));
    }

    /// Records that readers blocked on a key must look again, without counting it as
    /// modified.
    pub fn wake_readers(&mut self, db: Db, key: &Bytes) {
        self.ready.push((db, key.clone()));
    }

    /// True if blocked readers may have to look again: keys touched or made ready, or
    /// databases flushed (what [`crate::connection::publish_effects`] wakes them for).
    pub fn wakes_readers(&self) -> bool {
        !self.touched.is_empty() || !self.flushed.is_empty() || !self.ready.is_empty()
    }

    /// Records a keyspace event (`class` is its notify-keyspace-events flag letter).
    pub fn event(&mut self, class: char, event: &'static str, db: Db, key: &Bytes) {
        self.events.push(KeyspaceEvent {
            class,
            event,
            db,
            key: key.clone(),
        });
    }
}

/// One keyspace notification, as Redis' `notifyKeyspaceEvent` raises it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyspaceEvent {
    /// The notify-keyspace-events flag letter of its class: 'g' generic, 't' stream,
    /// 'x' expired, 'e' evicted, 'n' new key.
    pub class: char,
    /// The event name, e.g. `xadd`, `del`, `expire`, `expired`, `rename_from`.
    pub event: &'static str,
    pub db: Db,
    pub key: Bytes,
}

/// What executing a command produced.
pub enum Outcome {
    /// A complete reply.
    Reply(Reply),
    /// The command must wait (XREAD/XREADGROUP BLOCK); the connection hands the request to
    /// [`crate::blocking::wait`]. Never returned when `Ctx::in_multi` is set.
    Block(crate::blocking::BlockRequest),
    /// A reply too large to build in memory at once, produced a chunk at a time.
    Chunked(Box<dyn ChunkedReply>),
}

impl From<Reply> for Outcome {
    fn from(r: Reply) -> Self {
        Outcome::Reply(r)
    }
}

/// A large reply written as it is read, so memory per client stays bounded.
///
/// The connection calls [`ChunkedReply::next_chunk`] repeatedly, re-acquiring the engine lock
/// for each call and flushing `out` to the socket between calls (other clients' commands may
/// run in between). The first call writes the aggregate's header (see
/// [`crate::reply::encode_array_header`]); the producer must then write exactly the elements it
/// declared. Inside EXEC the connection drains all chunks under one lock.
pub trait ChunkedReply: Send {
    /// Appends the next part of the reply (about 1000 elements or a few hundred KiB) to `out`.
    /// Returns `Ok(true)` once the reply is complete. An `Err` (e.g. an I/O error mid-reply)
    /// leaves the reply unfinished: the connection logs it and closes.
    fn next_chunk(
        &mut self,
        engine: &mut Engine,
        proto: Protocol,
        out: &mut BytesMut,
    ) -> Result<bool, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_like_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-5"), Some(-5));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b"01"[..],
            b"-0",
            b"+1",
            b" 1",
            b"1 ",
            b"",
            b"-",
            b"9223372036854775808",
            b"1.0",
            b"-01",
            b"00",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", bad);
        }
    }
}
