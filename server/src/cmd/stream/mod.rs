//! Stream commands: XADD, XRANGE, XREAD, XREADGROUP, consumer groups and XINFO. Requests are
//! parsed into [`StreamCommand`] with Redis 7.0's exact errors, then executed against the
//! engine. Where Redis checks the key before an argument, the argument's error is kept in the
//! parsed command and raised at the same point during execution.
//!
//! Files by command family: [`write`] (XADD, XTRIM, XDEL, XSETID), [`read`] (XLEN, XRANGE,
//! XREVRANGE, XREAD, XREADGROUP), [`group`] (XGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM),
//! [`info`] (XINFO); [`args`] reads IDs and integers as Redis does.

pub mod args;
pub mod group;
pub mod info;
pub mod read;
pub mod write;

use bytes::Bytes;
use sluice_engine::{Entry, Error};

use super::{Ctx, Outcome};
use crate::reply::Reply;

/// A parsed stream command.
#[derive(Debug)]
pub enum StreamCommand {
    Add(write::Add),
    Trim(write::Trim),
    Del(write::Del),
    SetId(write::SetId),
    Len(Bytes),
    Range(read::Range),
    Read(read::Read),
    Ack(group::Ack),
    Pending(group::Pending),
    Claim(group::Claim),
    AutoClaim(group::AutoClaim),
    Group(group::GroupCommand),
    Info(info::Info),
}

/// Parses a stream command; `name` is lowercase, `args` exclude the name.
pub fn parse(name: &str, args: &[Bytes]) -> Result<StreamCommand, Reply> {
    let min = |n: usize| {
        if args.len() >= n {
            Ok(())
        } else {
            Err(args::arity(name))
        }
    };
    match name {
        "xadd" => min(4).and_then(|_| write::parse_add(args).map(StreamCommand::Add)),
        "xtrim" => min(3).and_then(|_| write::parse_trim(args).map(StreamCommand::Trim)),
        "xdel" => min(2).and_then(|_| write::parse_del(args).map(StreamCommand::Del)),
        "xsetid" => min(2).and_then(|_| write::parse_setid(args).map(StreamCommand::SetId)),
        "xlen" => match args {
            [key] => Ok(StreamCommand::Len(key.clone())),
            _ => Err(args::arity(name)),
        },
        "xrange" | "xrevrange" => min(3)
            .and_then(|_| read::parse_range(args, name == "xrevrange").map(StreamCommand::Range)),
        "xread" => min(3).and_then(|_| read::parse_read(args, false).map(StreamCommand::Read)),
        "xreadgroup" => min(6).and_then(|_| read::parse_read(args, true).map(StreamCommand::Read)),
        "xack" => min(3).and_then(|_| group::parse_ack(args).map(StreamCommand::Ack)),
        "xpending" => min(2).and_then(|_| group::parse_pending(args).map(StreamCommand::Pending)),
        "xclaim" => min(5).and_then(|_| group::parse_claim(args).map(StreamCommand::Claim)),
        "xautoclaim" => {
            min(5).and_then(|_| group::parse_autoclaim(args).map(StreamCommand::AutoClaim))
        }
        "xgroup" => min(1).and_then(|_| group::parse_group(args).map(StreamCommand::Group)),
        "xinfo" => min(1).and_then(|_| info::parse(args).map(StreamCommand::Info)),
        _ => Err(super::unknown_command(name.as_bytes(), args)),
    }
}

/// Executes a parsed stream command under the engine lock.
pub fn execute(cmd: StreamCommand, ctx: &mut Ctx) -> Outcome {
    let result = match cmd {
        StreamCommand::Add(c) => write::add(c, ctx),
        StreamCommand::Trim(c) => write::trim(c, ctx),
        StreamCommand::Del(c) => write::del(c, ctx),
        StreamCommand::SetId(c) => write::setid(c, ctx),
        StreamCommand::Len(key) => Ok(read::len(&key, ctx)),
        StreamCommand::Range(c) => return read::range(c, ctx),
        StreamCommand::Read(c) => return read::read(c, ctx),
        StreamCommand::Ack(c) => group::ack(c, ctx),
        StreamCommand::Pending(c) => group::pending(c, ctx),
        StreamCommand::Claim(c) => group::claim(c, ctx),
        StreamCommand::AutoClaim(c) => group::autoclaim(c, ctx),
        StreamCommand::Group(c) => group::group(c, ctx),
        StreamCommand::Info(c) => info::info(c, ctx),
    };
    Outcome::Reply(result.unwrap_or_else(|e| e))
}

/// The reply for an engine error a client can cause, with Redis' wording.
pub fn engine_error(e: &Error) -> Reply {
    match e {
        Error::BusyGroup => Reply::Error("BUSYGROUP Consumer Group name already exists".into()),
        Error::NoGroup => Reply::Error("NOGROUP No such consumer group".into()),
        Error::Poisoned(why) => Reply::Error(format!(
            "MISCONF Errors writing to disk, writes are refused until restart: {why}"
        )),
        other => Reply::err(other),
    }
}

/// `-NOGROUP No such key '<key>' or consumer group '<group>'` (XPENDING, XCLAIM, XAUTOCLAIM).
pub fn no_key_or_group(key: &[u8], group: &[u8], suffix: &str) -> Reply {
    Reply::Error(format!(
        "NOGROUP No such key '{}' or consumer group '{}'{suffix}",
        args::lossy(key, usize::MAX),
        args::lossy(group, usize::MAX)
    ))
}

/// `-NOGROUP No such consumer group '<group>' for key name '<key>'` (XGROUP, XINFO).
pub fn no_group_for_key(key: &[u8], group: &[u8]) -> Reply {
    Reply::Error(format!(
        "NOGROUP No such consumer group '{}' for key name '{}'",
        args::lossy(group, usize::MAX),
        args::lossy(key, usize::MAX)
    ))
}

/// One entry as Redis replies it: `[id, [field, value, ...]]`.
pub fn entry_reply(entry: &Entry) -> Reply {
    Reply::Array(vec![args::id_reply(entry.id), fields_reply(&entry.fields)])
}

/// Field/value pairs as a flat array.
pub fn fields_reply(fields: &[(Bytes, Bytes)]) -> Reply {
    let mut flat = Vec::with_capacity(fields.len() * 2);
    for (f, v) in fields {
        flat.push(Reply::Bulk(f.clone()));
        flat.push(Reply::Bulk(v.clone()));
    }
    Reply::Array(flat)
}
