//! XINFO STREAM [FULL [COUNT n]], XINFO GROUPS, XINFO CONSUMERS, XINFO HELP, with Redis 7.0's
//! fields (maps in RESP3, flat arrays in RESP2).

use std::ops::Bound;

use bytes::Bytes;
use sluice_engine::{Direction, Entry, GroupInfo, Stream, StreamId};

use super::args::{self, is};
use super::group::help;
use super::{engine_error, entry_reply, no_group_for_key};
use crate::cmd::{int_arg, Ctx};
use crate::reply::Reply;

/// XINFO FULL's default COUNT.
const FULL_DEFAULT_COUNT: usize = 10;

#[derive(Debug, PartialEq)]
pub enum Info {
    Help,
    /// `full`: `None` for the summary, else the COUNT (0 = everything). Option errors come
    /// after the key check, as in Redis.
    Stream {
        key: Bytes,
        full: Result<Option<usize>, Reply>,
    },
    Groups {
        key: Bytes,
    },
    Consumers {
        key: Bytes,
        group: Bytes,
    },
}

const XINFO_HELP: &[&str] = &[
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
    "HELP",
    "    Prints this help.",
];

pub fn parse(a: &[Bytes]) -> Result<Info, Reply> {
    let sub = &a[0];
    let argc = a.len() + 1;
    let arity = |name: &str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(args::arity(&format!("xinfo|{name}")))
        }
    };
    if is(sub, "help") {
        arity("help", argc == 2)?;
        Ok(Info::Help)
    } else if is(sub, "stream") {
        arity("stream", argc >= 3)?;
        let opts = &a[2..];
        let bad = || args::subcommand_syntax(sub, "XINFO");
        let full = match opts {
            [] => Ok(None),
            [f] if is(f, "full") => Ok(Some(FULL_DEFAULT_COUNT)),
            [f, c, n] if is(f, "full") && is(c, "count") => int_arg(n).map(|n| {
                Some(if n < 0 {
                    FULL_DEFAULT_COUNT
                } else {
                    usize::try_from(n).unwrap_or(usize::MAX)
                })
            }),
            _ => Err(bad()),
        };
        Ok(Info::Stream {
            key: a[1].clone(),
            full,
        })
    } else if is(sub, "groups") {
        arity("groups", argc == 3)?;
        Ok(Info::Groups { key: a[1].clone() })
    } else if is(sub, "consumers") {
        arity("consumers", argc == 4)?;
        Ok(Info::Consumers {
            key: a[1].clone(),
            group: a[2].clone(),
        })
    } else {
        Err(Reply::err(format!(
            "unknown subcommand '{}'. Try XINFO HELP.",
            args::lossy(sub, 128)
        )))
    }
}

fn k(s: &'static str) -> Reply {
    Reply::str(s)
}

fn uint(n: u64) -> Reply {
    Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn opt_uint(n: Option<u64>) -> Reply {
    n.map_or(Reply::Null, uint)
}

pub fn info(c: Info, ctx: &mut Ctx) -> Result<Reply, Reply> {
    let no_key = || Reply::err("no such key");
    match c {
        Info::Help => Ok(help(XINFO_HELP)),
        Info::Stream { key, full } => {
            let stream = ctx.engine.stream(ctx.db, &key).ok_or_else(no_key)?;
            match full? {
                None => stream_summary(stream),
                Some(count) => stream_full(stream, count),
            }
        }
        Info::Groups { key } => {
            let stream = ctx.engine.stream(ctx.db, &key).ok_or_else(no_key)?;
            Ok(Reply::Array(
                stream.groups().into_iter().map(group_row).collect(),
            ))
        }
        Info::Consumers { key, group } => {
            let stream = ctx.engine.stream(ctx.db, &key).ok_or_else(no_key)?;
            if stream.group_info(&group).is_none() {
                return Err(no_group_for_key(&key, &group));
            }
            let consumers = stream
                .consumers(&group)
                .map_err(|_| no_group_for_key(&key, &group))?;
            Ok(Reply::Array(
                consumers
                    .into_iter()
                    .map(|c| {
                        Reply::Map(vec![
                            (k("name"), Reply::Bulk(c.name)),
                            (k("pending"), uint(c.pending)),
                            (k("idle"), uint(ctx.now_ms.saturating_sub(c.seen_time_ms))),
                        ])
                    })
                    .collect(),
            ))
        }
    }
}

fn group_row(g: GroupInfo) -> Reply {
    Reply::Map(vec![
        (k("name"), Reply::Bulk(g.name)),
        (k("consumers"), uint(g.consumers)),
        (k("pending"), uint(g.pending)),
        (k("last-delivered-id"), args::id_reply(g.last_delivered_id)),
        (k("entries-read"), opt_uint(g.entries_read)),
        (k("lag"), opt_uint(g.lag)),
    ])
}

/// The fields XINFO STREAM starts with in both forms. Sluice has no radix tree: its
/// "keys" are segments, reported so the shape stays what clients expect.
fn common_fields(stream: &Stream) -> Vec<(Reply, Reply)> {
    let m = stream.meta();
    let keys = if m.length == 0 { 0 } else { m.segments.max(1) };
    vec![
        (k("length"), uint(m.length)),
        (k("radix-tree-keys"), uint(keys)),
        (k("radix-tree-nodes"), uint(keys + 1)),
        (k("last-generated-id"), args::id_reply(m.last_generated_id)),
        (
            k("max-deleted-entry-id"),
            args::id_reply(m.max_deleted_entry_id),
        ),
        (k("entries-added"), uint(m.entries_added)),
        (
            k("recorded-first-entry-id"),
            args::id_reply(m.recorded_first_entry_id),
        ),
    ]
}

fn opt_entry(e: Option<Entry>) -> Reply {
    e.as_ref().map_or(Reply::Null, entry_reply)
}

fn stream_summary(stream: &Stream) -> Result<Reply, Reply> {
    let mut fields = common_fields(stream);
    fields.push((k("groups"), uint(stream.groups().len() as u64)));
    let first = stream.first_entry().map_err(|e| engine_error(&e))?;
    let last = stream.last_entry().map_err(|e| engine_error(&e))?;
    fields.push((k("first-entry"), opt_entry(first)));
    fields.push((k("last-entry"), opt_entry(last)));
    Ok(Reply::Map(fields))
}

fn stream_full(stream: &Stream, count: usize) -> Result<Reply, Reply> {
    let limit = if count == 0 { usize::MAX } else { count };
    let mut fields = common_fields(stream);
    let entries = stream
        .range(
            Bound::Included(StreamId::MIN),
            Bound::Included(StreamId::MAX),
            limit,
            Direction::Forward,
        )
        .map_err(|e| engine_error(&e))?;
    fields.push((
        k("entries"),
        Reply::Array(entries.iter().map(entry_reply).collect()),
    ));
    let mut groups = Vec::new();
    for g in stream.groups() {
        let pel = stream
            .pending(
                &g.name,
                Bound::Unbounded,
                Bound::Unbounded,
                limit,
                None,
                None,
                0,
            )
            .map_err(|e| engine_error(&e))?;
        let pel_rows = pel
            .into_iter()
            .map(|p| {
                Reply::Array(vec![
                    args::id_reply(p.id),
                    Reply::Bulk(p.consumer),
                    uint(p.delivery_time_ms),
                    uint(p.delivery_count),
                ])
            })
            .collect();
        let mut consumers = Vec::new();
        for c in stream.consumers(&g.name).map_err(|e| engine_error(&e))? {
            let own = stream
                .pending(
                    &g.name,
                    Bound::Unbounded,
                    Bound::Unbounded,
                    limit,
                    Some(&c.name),
                    None,
                    0,
                )
                .map_err(|e| engine_error(&e))?;
            consumers.push(Reply::Map(vec![
                (k("name"), Reply::Bulk(c.name)),
                (k("seen-time"), uint(c.seen_time_ms)),
                (k("pel-count"), uint(c.pending)),
                (
                    k("pending"),
                    Reply::Array(
                        own.into_iter()
                            .map(|p| {
                                Reply::Array(vec![
                                    args::id_reply(p.id),
                                    uint(p.delivery_time_ms),
                                    uint(p.delivery_count),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ]));
        }
        groups.push(Reply::Map(vec![
            (k("name"), Reply::Bulk(g.name)),
            (k("last-delivered-id"), args::id_reply(g.last_delivered_id)),
            (k("entries-read"), opt_uint(g.entries_read)),
            (k("lag"), opt_uint(g.lag)),
            (k("pel-count"), uint(g.pending)),
            (k("pending"), Reply::Array(pel_rows)),
            (k("consumers"), Reply::Array(consumers)),
        ]));
    }
    fields.push((k("groups"), Reply::Array(groups)));
    Ok(Reply::Map(fields))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{b, err};
    use super::*;

    fn full(s: &str) -> Result<Option<usize>, Reply> {
        match parse(&b(s)).unwrap() {
            Info::Stream { full, .. } => full,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn xinfo_forms_and_errors() {
        assert_eq!(parse(&b("help")).unwrap(), Info::Help);
        assert_eq!(full("stream k"), Ok(None));
        assert_eq!(full("STREAM k FULL"), Ok(Some(10)));
        assert_eq!(full("stream k full count 0"), Ok(Some(0)));
        assert_eq!(full("stream k full count -1"), Ok(Some(10)));
        assert_eq!(full("stream k full COUNT 3"), Ok(Some(3)));
        let sub = Err(Reply::err(
            "unknown subcommand or wrong number of arguments for 'stream'. Try XINFO HELP.",
        ));
        assert_eq!(full("stream k foo"), sub);
        assert_eq!(full("stream k full count"), sub);
        assert_eq!(full("stream k full foo 1"), sub);
        assert_eq!(full("stream k full count 1 x"), sub);
        assert_eq!(
            full("stream k full count x"),
            Err(crate::cmd::not_integer())
        );
        assert_eq!(
            err(parse(&b("foo"))),
            "ERR unknown subcommand 'foo'. Try XINFO HELP."
        );
        assert_eq!(
            err(parse(&b("help x"))),
            "ERR wrong number of arguments for 'xinfo|help' command"
        );
        assert_eq!(
            err(parse(&b("stream"))),
            "ERR wrong number of arguments for 'xinfo|stream' command"
        );
        assert_eq!(
            err(parse(&b("groups k x"))),
            "ERR wrong number of arguments for 'xinfo|groups' command"
        );
        assert_eq!(
            err(parse(&b("consumers k"))),
            "ERR wrong number of arguments for 'xinfo|consumers' command"
        );
    }
}
