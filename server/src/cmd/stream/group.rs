//! Consumer-group commands: XGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM.

use std::ops::Bound;

use bytes::Bytes;
use sluice_engine::{ClaimOptions, Delivery, Error, Stream, StreamId};

use super::args::{self, is, IdForm};
use super::{engine_error, fields_reply, no_group_for_key, no_key_or_group};
use crate::cmd::{int_arg, parse_i64, syntax_error, Ctx};
use crate::reply::Reply;

/// `XACK key group id ...`; an invalid ID is reported only if the group exists.
#[derive(Debug, PartialEq)]
pub struct Ack {
    pub key: Bytes,
    pub group: Bytes,
    pub ids: Result<Vec<StreamId>, Reply>,
}

/// `XPENDING key group [[IDLE min-idle] start end count [consumer]]`
#[derive(Debug, PartialEq)]
pub struct Pending {
    pub key: Bytes,
    pub group: Bytes,
    pub extended: Option<PendingRange>,
}

#[derive(Debug, PartialEq)]
pub struct PendingRange {
    /// Entries idle for less than this are skipped (0 = no filter).
    pub min_idle: u64,
    pub lo: StreamId,
    pub hi: StreamId,
    pub count: usize,
    pub consumer: Option<Bytes>,
}

/// `XCLAIM key group consumer min-idle id ... [IDLE ms] [TIME ms] [RETRYCOUNT n] [FORCE]
/// [JUSTID] [LASTID id]`; Redis checks the group before the arguments.
#[derive(Debug, PartialEq)]
pub struct Claim {
    pub key: Bytes,
    pub group: Bytes,
    pub consumer: Bytes,
    pub args: Result<ClaimArgs, Reply>,
}

#[derive(Debug, PartialEq)]
pub struct ClaimArgs {
    pub min_idle: u64,
    pub ids: Vec<StreamId>,
    /// The last of IDLE/TIME given.
    pub delivery: Option<DeliveryTime>,
    /// RETRYCOUNT (negative values are ignored, as in Redis).
    pub retry_count: Option<u64>,
    pub force: bool,
    pub just_id: bool,
    pub last_id: Option<StreamId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryTime {
    Idle(i64),
    Time(i64),
}

/// `XAUTOCLAIM key group consumer min-idle start [COUNT n] [JUSTID]`
#[derive(Debug, PartialEq)]
pub struct AutoClaim {
    pub key: Bytes,
    pub group: Bytes,
    pub consumer: Bytes,
    pub min_idle: u64,
    pub start: StreamId,
    pub count: usize,
    pub just_id: bool,
}

/// The ID argument of XGROUP CREATE/SETID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupId {
    /// `$`: the stream's last ID.
    Last,
    Id(StreamId),
}

/// XGROUP subcommands. Errors Redis raises only after checking the key (and group) are kept
/// in `Result` fields.
#[derive(Debug, PartialEq)]
pub enum GroupCommand {
    Help,
    Create {
        key: Bytes,
        group: Bytes,
        id: Result<GroupId, Reply>,
        mkstream: bool,
        entries_read: Option<u64>,
    },
    SetId {
        key: Bytes,
        group: Bytes,
        args: Result<(GroupId, Option<u64>), Reply>,
    },
    Destroy {
        key: Bytes,
        group: Bytes,
    },
    CreateConsumer {
        key: Bytes,
        group: Bytes,
        consumer: Bytes,
    },
    DelConsumer {
        key: Bytes,
        group: Bytes,
        consumer: Bytes,
    },
}

const XGROUP_HELP: &[&str] = &[
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Prints this help.",
];

/// Redis' help reply: one status line per line of text.
pub fn help(lines: &[&str]) -> Reply {
    Reply::Array(lines.iter().map(|l| Reply::Simple((*l).into())).collect())
}

pub fn parse_ack(a: &[Bytes]) -> Result<Ack, Reply> {
    Ok(Ack {
        key: a[0].clone(),
        group: a[1].clone(),
        ids: a[2..].iter().map(|s| args::strict_id(s)).collect(),
    })
}

pub fn parse_pending(a: &[Bytes]) -> Result<Pending, Reply> {
    let (key, group) = (a[0].clone(), a[1].clone());
    // Counting the name: 3 args for the summary, 6..=9 for the extended form.
    let argc = a.len() + 1;
    if argc != 3 && !(6..=9).contains(&argc) {
        return Err(syntax_error());
    }
    if argc == 3 {
        return Ok(Pending {
            key,
            group,
            extended: None,
        });
    }
    let mut at = 2;
    let mut min_idle = 0;
    if is(&a[2], "idle") {
        min_idle = int_arg(&a[3])?.max(0) as u64;
        if argc < 8 {
            return Err(syntax_error());
        }
        at += 2;
    }
    let count = usize::try_from(int_arg(&a[at + 2])?.max(0)).unwrap_or(usize::MAX);
    let (lo, hi) = args::range_bounds(&a[at], &a[at + 1])?;
    Ok(Pending {
        key,
        group,
        extended: Some(PendingRange {
            min_idle,
            lo,
            hi,
            count,
            consumer: a.get(at + 3).cloned(),
        }),
    })
}

fn parse_claim_args(a: &[Bytes]) -> Result<ClaimArgs, Reply> {
    let min_idle = parse_i64(&a[3])
        .ok_or_else(|| Reply::err("Invalid min-idle-time argument for XCLAIM"))?
        .max(0) as u64;
    let mut j = 4;
    let mut ids = Vec::new();
    while let Some(id) = a.get(j).and_then(|s| args::parse_id(s, 0, IdForm::Strict)) {
        ids.push(id);
        j += 1;
    }
    let mut out = ClaimArgs {
        min_idle,
        ids,
        delivery: None,
        retry_count: None,
        force: false,
        just_id: false,
        last_id: None,
    };
    let int_option = |s: &[u8], name: &str| {
        parse_i64(s).ok_or_else(|| Reply::err(format!("Invalid {name} option argument for XCLAIM")))
    };
    while j < a.len() {
        let more = a.len() - 1 - j;
        let opt = &a[j];
        if is(opt, "force") {
            out.force = true;
        } else if is(opt, "justid") {
            out.just_id = true;
        } else if is(opt, "idle") && more > 0 {
            j += 1;
            out.delivery = Some(DeliveryTime::Idle(int_option(&a[j], "IDLE")?));
        } else if is(opt, "time") && more > 0 {
            j += 1;
            out.delivery = Some(DeliveryTime::Time(int_option(&a[j], "TIME")?));
        } else if is(opt, "retrycount") && more > 0 {
            j += 1;
            out.retry_count = u64::try_from(int_option(&a[j], "RETRYCOUNT")?).ok();
        } else if is(opt, "lastid") && more > 0 {
            j += 1;
            out.last_id = Some(args::strict_id(&a[j])?);
        } else {
            return Err(Reply::err(format!(
                "Unrecognized XCLAIM option '{}'",
                args::lossy(opt, usize::MAX)
            )));
        }
        j += 1;
    }
    Ok(out)
}

pub fn parse_claim(a: &[Bytes]) -> Result<Claim, Reply> {
    Ok(Claim {
        key: a[0].clone(),
        group: a[1].clone(),
        consumer: a[2].clone(),
        args: parse_claim_args(a),
    })
}

pub fn parse_autoclaim(a: &[Bytes]) -> Result<AutoClaim, Reply> {
    let min_idle = parse_i64(&a[3])
        .ok_or_else(|| Reply::err("Invalid min-idle-time argument for XAUTOCLAIM"))?
        .max(0) as u64;
    let (mut start, excl) = args::interval_id(&a[4], 0)?;
    if excl {
        start = start
            .next()
            .ok_or_else(|| Reply::err("invalid start ID for the interval"))?;
    }
    // Redis caps COUNT so that COUNT * 10 attempts cannot overflow.
    let max_count = i64::MAX / 16;
    let mut count = 100usize;
    let mut just_id = false;
    let mut j = 5;
    while j < a.len() {
        let more = a.len() - 1 - j;
        if is(&a[j], "count") && more > 0 {
            count = parse_i64(&a[j + 1])
                .filter(|n| (1..=max_count).contains(n))
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| Reply::err("COUNT must be > 0"))?;
            j += 1;
        } else if is(&a[j], "justid") {
            just_id = true;
        } else {
            return Err(syntax_error());
        }
        j += 1;
    }
    Ok(AutoClaim {
        key: a[0].clone(),
        group: a[1].clone(),
        consumer: a[2].clone(),
        min_idle,
        start,
        count,
        just_id,
    })
}

fn entries_read_arg(s: &[u8]) -> Result<Option<u64>, Reply> {
    match int_arg(s)? {
        -1 => Ok(None),
        n if n < 0 => Err(Reply::err("value for ENTRIESREAD must be positive or -1")),
        n => Ok(Some(n as u64)),
    }
}

fn group_id_arg(s: &[u8], form: IdForm) -> Result<GroupId, Reply> {
    if s == b"$" {
        Ok(GroupId::Last)
    } else {
        args::parse_id(s, 0, form)
            .map(GroupId::Id)
            .ok_or_else(args::invalid_id)
    }
}

pub fn parse_group(a: &[Bytes]) -> Result<GroupCommand, Reply> {
    let sub = &a[0];
    let argc = a.len() + 1;
    let arity = |name: &str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(args::arity(&format!("xgroup|{name}")))
        }
    };
    let key = || a[1].clone();
    let group = || a[2].clone();
    if is(sub, "help") {
        arity("help", argc == 2)?;
        Ok(GroupCommand::Help)
    } else if is(sub, "create") {
        arity("create", argc >= 5)?;
        let mut mkstream = false;
        let mut entries_read = None;
        let mut i = 4;
        while i < a.len() {
            if is(&a[i], "mkstream") {
                mkstream = true;
                i += 1;
            } else if is(&a[i], "entriesread") && i + 1 < a.len() {
                entries_read = entries_read_arg(&a[i + 1])?;
                i += 2;
            } else {
                return Err(args::subcommand_syntax(sub, "XGROUP"));
            }
        }
        if argc > 8 {
            return Err(args::subcommand_syntax(sub, "XGROUP"));
        }
        Ok(GroupCommand::Create {
            key: key(),
            group: group(),
            id: group_id_arg(&a[3], IdForm::Strict),
            mkstream,
            entries_read,
        })
    } else if is(sub, "setid") {
        arity("setid", argc >= 5)?;
        let args = (|| {
            if argc != 5 && argc != 7 {
                return Err(args::subcommand_syntax(sub, "XGROUP"));
            }
            let id = group_id_arg(&a[3], IdForm::Lenient)?;
            let mut entries_read = None;
            if argc == 7 {
                if !is(&a[4], "entriesread") {
                    return Err(args::subcommand_syntax(sub, "XGROUP"));
                }
                entries_read = entries_read_arg(&a[5])?;
            }
            Ok((id, entries_read))
        })();
        Ok(GroupCommand::SetId {
            key: key(),
            group: group(),
            args,
        })
    } else if is(sub, "destroy") {
        arity("destroy", argc == 4)?;
        Ok(GroupCommand::Destroy {
            key: key(),
            group: group(),
        })
    } else if is(sub, "createconsumer") {
        arity("createconsumer", argc == 5)?;
        Ok(GroupCommand::CreateConsumer {
            key: key(),
            group: group(),
            consumer: a[3].clone(),
        })
    } else if is(sub, "delconsumer") {
        arity("delconsumer", argc == 5)?;
        Ok(GroupCommand::DelConsumer {
            key: key(),
            group: group(),
            consumer: a[3].clone(),
        })
    } else {
        Err(Reply::err(format!(
            "unknown subcommand '{}'. Try XGROUP HELP.",
            args::lossy(sub, 128)
        )))
    }
}

/// Whether a group has this consumer (to raise `xgroup-createconsumer` when a read or claim
/// creates it implicitly, as Redis does).
pub fn has_consumer(stream: &Stream, group: &[u8], consumer: &[u8]) -> bool {
    stream.has_consumer(group, consumer)
}

/// Raises `xgroup-createconsumer` if `consumer` exists now but did not before.
pub fn note_created_consumer(
    ctx: &mut Ctx,
    key: &Bytes,
    group: &[u8],
    consumer: &[u8],
    existed: bool,
) {
    if existed {
        return;
    }
    let db = ctx.db;
    if ctx
        .engine
        .stream(db, key)
        .is_some_and(|s| has_consumer(s, group, consumer))
    {
        ctx.effects.event('t', "xgroup-createconsumer", db, key);
    }
}

fn count_reply(n: u64) -> Reply {
    Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

pub fn ack(c: Ack, ctx: &mut Ctx) -> Result<Reply, Reply> {
    let Some(stream) = ctx.engine.stream_mut(ctx.db, &c.key) else {
        return Ok(Reply::Int(0));
    };
    if stream.group_info(&c.group).is_none() {
        return Ok(Reply::Int(0));
    }
    let ids = c.ids?;
    match stream.ack(&c.group, &ids) {
        Ok((n, lsn)) => {
            ctx.effects.wrote(lsn);
            Ok(count_reply(n))
        }
        Err(Error::NoGroup) => Ok(Reply::Int(0)),
        Err(e) => Err(engine_error(&e)),
    }
}

pub fn pending(c: Pending, ctx: &mut Ctx) -> Result<Reply, Reply> {
    let Some(stream) = ctx.engine.stream(ctx.db, &c.key) else {
        return Err(no_key_or_group(&c.key, &c.group, ""));
    };
    let map_err = |e: Error| match e {
        Error::NoGroup => no_key_or_group(&c.key, &c.group, ""),
        e => engine_error(&e),
    };
    let Some(range) = c.extended else {
        let s = stream.pending_summary(&c.group).map_err(map_err)?;
        return Ok(match s.range {
            None => Reply::Array(vec![
                Reply::Int(0),
                Reply::Null,
                Reply::Null,
                Reply::NullArray,
            ]),
            Some((lo, hi)) => Reply::Array(vec![
                count_reply(s.count),
                args::id_reply(lo),
                args::id_reply(hi),
                Reply::Array(
                    s.consumers
                        .into_iter()
                        .map(|(name, n)| {
                            Reply::Array(vec![Reply::Bulk(name), Reply::bulk(n.to_string())])
                        })
                        .collect(),
                ),
            ]),
        });
    };
    if stream.group_info(&c.group).is_none() {
        return Err(no_key_or_group(&c.key, &c.group, ""));
    }
    if range.count == 0 || range.lo > range.hi {
        return Ok(Reply::Array(vec![]));
    }
    let rows = stream
        .pending(
            &c.group,
            Bound::Included(range.lo),
            Bound::Included(range.hi),
            range.count,
            range.consumer.as_deref(),
            (range.min_idle > 0).then_some(range.min_idle),
            ctx.now_ms,
        )
        .map_err(map_err)?;
    Ok(Reply::Array(
        rows.into_iter()
            .map(|p| {
                Reply::Array(vec![
                    args::id_reply(p.id),
                    Reply::Bulk(p.consumer),
                    count_reply(ctx.now_ms.saturating_sub(p.delivery_time_ms)),
                    count_reply(p.delivery_count),
                ])
            })
            .collect(),
    ))
}

/// Claimed entries as XCLAIM/XAUTOCLAIM reply them: IDs with JUSTID, else entries (those
/// deleted from the stream meanwhile are left out).
fn deliveries_reply(deliveries: Vec<Delivery>, just_id: bool) -> Reply {
    Reply::Array(
        deliveries
            .into_iter()
            .filter_map(|d| match (just_id, d.fields) {
                (true, _) => Some(args::id_reply(d.id)),
                (false, Some(f)) => {
                    Some(Reply::Array(vec![args::id_reply(d.id), fields_reply(&f)]))
                }
                (false, None) => None,
            })
            .collect(),
    )
}

pub fn claim(c: Claim, ctx: &mut Ctx) -> Result<Reply, Reply> {
    let nogroup = || no_key_or_group(&c.key, &c.group, "");
    let Some(stream) = ctx.engine.stream_mut(ctx.db, &c.key) else {
        return Err(nogroup());
    };
    if stream.group_info(&c.group).is_none() {
        return Err(nogroup());
    }
    let a = c.args?;
    let now = i64::try_from(ctx.now_ms).unwrap_or(i64::MAX);
    // Redis resets a bogus delivery time (negative or in the future) to now.
    let time_ms = a.delivery.map(|d| {
        let t = match d {
            DeliveryTime::Idle(idle) => now.saturating_sub(idle),
            DeliveryTime::Time(t) => t,
        };
        if t < 0 || t > now {
            ctx.now_ms
        } else {
            t as u64
        }
    });
    let options = ClaimOptions {
        idle_ms: None,
        time_ms,
        retry_count: a.retry_count,
        force: a.force,
        just_id: a.just_id,
        last_id: a.last_id,
    };
    let existed = has_consumer(stream, &c.group, &c.consumer);
    let (deliveries, lsn) = stream
        .claim(
            &c.group,
            &c.consumer,
            a.min_idle,
            &a.ids,
            &options,
            ctx.now_ms,
        )
        .map_err(|e| match e {
            Error::NoGroup => nogroup(),
            e => engine_error(&e),
        })?;
    ctx.effects.wrote(lsn);
    note_created_consumer(ctx, &c.key, &c.group, &c.consumer, existed);
    Ok(deliveries_reply(deliveries, a.just_id))
}

pub fn autoclaim(c: AutoClaim, ctx: &mut Ctx) -> Result<Reply, Reply> {
    let nogroup = || no_key_or_group(&c.key, &c.group, "");
    let Some(stream) = ctx.engine.stream_mut(ctx.db, &c.key) else {
        return Err(nogroup());
    };
    if stream.group_info(&c.group).is_none() {
        return Err(nogroup());
    }
    let existed = has_consumer(stream, &c.group, &c.consumer);
    let (result, lsn) = stream
        .autoclaim(
            &c.group,
            &c.consumer,
            c.min_idle,
            c.start,
            c.count,
            c.just_id,
            ctx.now_ms,
        )
        .map_err(|e| match e {
            Error::NoGroup => nogroup(),
            e => engine_error(&e),
        })?;
    ctx.effects.wrote(lsn);
    note_created_consumer(ctx, &c.key, &c.group, &c.consumer, existed);
    Ok(Reply::Array(vec![
        args::id_reply(result.next),
        deliveries_reply(result.claimed, c.just_id),
        Reply::Array(result.deleted.into_iter().map(args::id_reply).collect()),
    ]))
}

fn key_required() -> Reply {
    Reply::err(
        "The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
    )
}

pub fn group(c: GroupCommand, ctx: &mut Ctx) -> Result<Reply, Reply> {
    let db = ctx.db;
    match c {
        GroupCommand::Help => Ok(help(XGROUP_HELP)),
        GroupCommand::Create {
            key,
            group,
            id,
            mkstream,
            entries_read,
        } => {
            let exists = ctx.engine.stream(db, &key).is_some();
            if !exists && !mkstream {
                return Err(key_required());
            }
            let id = match id? {
                GroupId::Last => ctx
                    .engine
                    .stream(db, &key)
                    .map_or(StreamId::MIN, |s| s.last_id()),
                GroupId::Id(id) => id,
            };
            if !exists {
                let (_, lsn) = ctx
                    .engine
                    .create_stream(db, &key)
                    .map_err(|e| engine_error(&e))?;
                ctx.effects.wrote(lsn);
                ctx.effects.touch(db, &key);
                ctx.effects.event('n', "new", db, &key);
            }
            let stream = ctx.engine.stream_mut(db, &key).ok_or_else(key_required)?;
            let lsn = stream
                .create_group(&group, id, entries_read)
                .map_err(|e| engine_error(&e))?;
            ctx.effects.wrote(lsn);
            ctx.effects.event('t', "xgroup-create", db, &key);
            Ok(Reply::Ok)
        }
        GroupCommand::SetId { key, group, args } => {
            let stream = ctx.engine.stream_mut(db, &key).ok_or_else(key_required)?;
            if stream.group_info(&group).is_none() {
                return Err(no_group_for_key(&key, &group));
            }
            let (id, entries_read) = args?;
            let id = match id {
                GroupId::Last => stream.last_id(),
                GroupId::Id(id) => id,
            };
            let lsn = stream
                .set_group_id(&group, id, entries_read)
                .map_err(|e| engine_error(&e))?;
            ctx.effects.wrote(lsn);
            ctx.effects.event('t', "xgroup-setid", db, &key);
            Ok(Reply::Ok)
        }
        GroupCommand::Destroy { key, group } => {
            let stream = ctx.engine.stream_mut(db, &key).ok_or_else(key_required)?;
            let (existed, lsn) = stream.destroy_group(&group).map_err(|e| engine_error(&e))?;
            ctx.effects.wrote(lsn);
            if existed {
                ctx.effects.event('t', "xgroup-destroy", db, &key);
                // XREADGROUP readers blocked on this group get NOGROUP; as in Redis, WATCH
                // does not see a modification.
                ctx.effects.wake_readers(db, &key);
            }
            Ok(Reply::Int(i64::from(existed)))
        }
        GroupCommand::CreateConsumer {
            key,
            group,
            consumer,
        } => {
            let stream = ctx.engine.stream_mut(db, &key).ok_or_else(key_required)?;
            if stream.group_info(&group).is_none() {
                return Err(no_group_for_key(&key, &group));
            }
            let (created, lsn) = stream
                .create_consumer(&group, &consumer, ctx.now_ms)
                .map_err(|e| engine_error(&e))?;
            ctx.effects.wrote(lsn);
            if created {
                ctx.effects.event('t', "xgroup-createconsumer", db, &key);
            }
            Ok(Reply::Int(i64::from(created)))
        }
        GroupCommand::DelConsumer {
            key,
            group,
            consumer,
        } => {
            let stream = ctx.engine.stream_mut(db, &key).ok_or_else(key_required)?;
            let existed = stream
                .consumers(&group)
                .map_err(|_| no_group_for_key(&key, &group))?
                .iter()
                .any(|c| c.name == consumer);
            if !existed {
                return Ok(Reply::Int(0));
            }
            let (pending, lsn) = stream
                .delete_consumer(&group, &consumer)
                .map_err(|e| engine_error(&e))?;
            ctx.effects.wrote(lsn);
            ctx.effects.event('t', "xgroup-delconsumer", db, &key);
            Ok(count_reply(pending))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{b, err};
    use super::*;

    #[test]
    fn xack_forms() {
        let a = parse_ack(&b("k g 1-1 2")).unwrap();
        assert_eq!(a.ids, Ok(vec![StreamId::new(1, 1), StreamId::new(2, 0)]));
        assert_eq!(parse_ack(&b("k g x")).unwrap().ids, Err(args::invalid_id()));
    }

    #[test]
    fn xpending_forms_and_errors() {
        assert_eq!(parse_pending(&b("k g")).unwrap().extended, None);
        let p = parse_pending(&b("k g IDLE 10 (1 + 5 c")).unwrap();
        assert_eq!(
            p.extended,
            Some(PendingRange {
                min_idle: 10,
                lo: StreamId::new(1, 1),
                hi: StreamId::MAX,
                count: 5,
                consumer: Some(Bytes::from("c"))
            })
        );
        let p = parse_pending(&b("k g - + -1 c x"))
            .unwrap()
            .extended
            .unwrap();
        assert_eq!((p.count, p.consumer), (0, Some(Bytes::from("c"))));
        assert_eq!(
            parse_pending(&b("k g idle -5 - + 1"))
                .unwrap()
                .extended
                .unwrap()
                .min_idle,
            0
        );
        for bad in [
            "k g -",
            "k g - +",
            "k g idle 10",
            "k g idle 10 -",
            "k g - + 1 c x y z",
        ] {
            assert_eq!(err(parse_pending(&b(bad))), "ERR syntax error", "{bad}");
        }
        assert_eq!(
            err(parse_pending(&b("k g - + x"))),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err(parse_pending(&b("k g idle x - + 1"))),
            "ERR value is not an integer or out of range"
        );
        // COUNT is checked before the IDs.
        assert_eq!(
            err(parse_pending(&b("k g x + y"))),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err(parse_pending(&b("k g x + 10"))),
            "ERR Invalid stream ID specified as stream command argument"
        );
    }

    #[test]
    fn xclaim_forms_and_errors() {
        let c = parse_claim(&b(
            "k g c 5 1-1 2 IDLE 7 time 9 RETRYCOUNT 3 FORCE JUSTID LASTID 4-4",
        ))
        .unwrap();
        assert_eq!(
            c.args,
            Ok(ClaimArgs {
                min_idle: 5,
                ids: vec![StreamId::new(1, 1), StreamId::new(2, 0)],
                delivery: Some(DeliveryTime::Time(9)),
                retry_count: Some(3),
                force: true,
                just_id: true,
                last_id: Some(StreamId::new(4, 4)),
            })
        );
        let c = parse_claim(&b("k g c -5 1-1 retrycount -1"))
            .unwrap()
            .args
            .unwrap();
        assert_eq!((c.min_idle, c.retry_count), (0, None));
        let e = |s| match parse_claim(&b(s)).unwrap().args {
            Err(Reply::Error(e)) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            e("k g c x 1-1"),
            "ERR Invalid min-idle-time argument for XCLAIM"
        );
        assert_eq!(e("k g c 0 1-1 foo"), "ERR Unrecognized XCLAIM option 'foo'");
        assert_eq!(e("k g c 0 x 1-1"), "ERR Unrecognized XCLAIM option 'x'");
        assert_eq!(
            e("k g c 0 1-1 idle"),
            "ERR Unrecognized XCLAIM option 'idle'"
        );
        assert_eq!(
            e("k g c 0 1-1 idle x"),
            "ERR Invalid IDLE option argument for XCLAIM"
        );
        assert_eq!(
            e("k g c 0 1-1 time x"),
            "ERR Invalid TIME option argument for XCLAIM"
        );
        assert_eq!(
            e("k g c 0 1-1 retrycount x"),
            "ERR Invalid RETRYCOUNT option argument for XCLAIM"
        );
        assert_eq!(
            e("k g c 0 1-1 lastid x"),
            "ERR Invalid stream ID specified as stream command argument"
        );
    }

    #[test]
    fn xautoclaim_forms_and_errors() {
        let c = parse_autoclaim(&b("k g c 10 (5 COUNT 7 JUSTID")).unwrap();
        assert_eq!(
            (c.min_idle, c.start, c.count, c.just_id),
            (10, StreamId::new(5, 1), 7, true)
        );
        let c = parse_autoclaim(&b("k g c -1 -")).unwrap();
        assert_eq!(
            (c.min_idle, c.start, c.count, c.just_id),
            (0, StreamId::MIN, 100, false)
        );
        assert_eq!(
            err(parse_autoclaim(&b("k g c x 0"))),
            "ERR Invalid min-idle-time argument for XAUTOCLAIM"
        );
        assert_eq!(
            err(parse_autoclaim(&b("k g c 0 x"))),
            "ERR Invalid stream ID specified as stream command argument"
        );
        for bad in ["x", "0", "-1", "576460752303423488"] {
            assert_eq!(
                err(parse_autoclaim(&b(&format!("k g c 0 0 count {bad}")))),
                "ERR COUNT must be > 0"
            );
        }
        assert_eq!(
            err(parse_autoclaim(&b("k g c 0 0 count"))),
            "ERR syntax error"
        );
        assert_eq!(
            err(parse_autoclaim(&b("k g c 0 0 justid foo"))),
            "ERR syntax error"
        );
    }

    #[test]
    fn xgroup_forms_and_errors() {
        assert_eq!(parse_group(&b("HELP")).unwrap(), GroupCommand::Help);
        assert_eq!(
            parse_group(&b("create k g $ MKSTREAM entriesread 5")).unwrap(),
            GroupCommand::Create {
                key: "k".into(),
                group: "g".into(),
                id: Ok(GroupId::Last),
                mkstream: true,
                entries_read: Some(5)
            }
        );
        match parse_group(&b("create k g - ")).unwrap() {
            GroupCommand::Create {
                id, entries_read, ..
            } => {
                assert_eq!(id, Err(args::invalid_id()));
                assert_eq!(entries_read, None);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_group(&b("SETID k g - ENTRIESREAD -1")).unwrap(),
            GroupCommand::SetId {
                key: "k".into(),
                group: "g".into(),
                args: Ok((GroupId::Id(StreamId::MIN), None))
            }
        );
        match parse_group(&b("SETID k g 0 foo")).unwrap() {
            GroupCommand::SetId { args, .. } => assert_eq!(
                args,
                Err(Reply::err(
                    "unknown subcommand or wrong number of arguments for 'SETID'. Try XGROUP HELP."
                ))
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err(parse_group(&b("foo"))),
            "ERR unknown subcommand 'foo'. Try XGROUP HELP."
        );
        assert_eq!(
            err(parse_group(&b("help x"))),
            "ERR wrong number of arguments for 'xgroup|help' command"
        );
        assert_eq!(
            err(parse_group(&b("create k g"))),
            "ERR wrong number of arguments for 'xgroup|create' command"
        );
        assert_eq!(
            err(parse_group(&b("destroy k"))),
            "ERR wrong number of arguments for 'xgroup|destroy' command"
        );
        assert_eq!(
            err(parse_group(&b("createconsumer k g"))),
            "ERR wrong number of arguments for 'xgroup|createconsumer' command"
        );
        assert_eq!(
            err(parse_group(&b("delconsumer k g c x"))),
            "ERR wrong number of arguments for 'xgroup|delconsumer' command"
        );
        assert_eq!(
            err(parse_group(&b("create k g 0 foo"))),
            "ERR unknown subcommand or wrong number of arguments for 'create'. Try XGROUP HELP."
        );
        assert_eq!(
            err(parse_group(&b("create k g 0 entriesread"))),
            "ERR unknown subcommand or wrong number of arguments for 'create'. Try XGROUP HELP."
        );
        assert_eq!(
            err(parse_group(&b("create k g 0 entriesread x"))),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err(parse_group(&b("create k g 0 entriesread -2"))),
            "ERR value for ENTRIESREAD must be positive or -1"
        );
    }
}
