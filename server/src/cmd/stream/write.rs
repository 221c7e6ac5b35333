//! Writing commands: XADD, XTRIM, XDEL, XSETID.

use bytes::Bytes;
use sluice_engine::{IdSpec, StreamId, TrimSpec, TrimStrategy};

use super::args::{self, is, IdForm};
use super::engine_error;
use crate::cmd::{int_arg, syntax_error, Ctx};
use crate::reply::Reply;

/// Most field/value pairs one XADD may carry (a limit on everything; Redis' own bound is
/// the request size).
pub const MAX_FIELDS: usize = 1 << 20;

/// `XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] threshold [LIMIT count]] id field value ...`
#[derive(Debug, PartialEq)]
pub struct Add {
    pub key: Bytes,
    pub nomkstream: bool,
    pub trim: Option<TrimSpec>,
    pub id: IdSpec,
    pub fields: Vec<(Bytes, Bytes)>,
}

/// `XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT count]`
#[derive(Debug, PartialEq)]
pub struct Trim {
    pub key: Bytes,
    pub spec: TrimSpec,
}

/// `XDEL key id ...`; an invalid ID is reported only if the key exists, as Redis does.
#[derive(Debug, PartialEq)]
pub struct Del {
    pub key: Bytes,
    pub ids: Result<Vec<StreamId>, Reply>,
}

/// `XSETID key last-id [ENTRIESADDED n] [MAXDELETEDID id]`
#[derive(Debug, PartialEq)]
pub struct SetId {
    pub key: Bytes,
    pub last_id: StreamId,
    pub entries_added: Option<u64>,
    pub max_deleted: Option<StreamId>,
}

/// What the shared XADD/XTRIM option loop found.
struct TrimArgs {
    spec: Option<TrimSpec>,
    nomkstream: bool,
    /// XADD: the ID (`None` for `*`), with whether the sequence was given.
    id: Option<IdSpec>,
    /// Index of the first argument not consumed (XADD: the ID's index).
    next: usize,
}

/// Redis' `streamParseAddOrTrimArgsOrReply`; `args[0]` is the key.
fn parse_trim_args(a: &[Bytes], xadd: bool) -> Result<TrimArgs, Reply> {
    let mut strategy: Option<TrimStrategy> = None;
    let mut approx = false;
    let mut limit: Option<i64> = None;
    let mut nomkstream = false;
    let mut id = None;
    let mut i = 1;
    while i < a.len() {
        let more = a.len() - 1 - i;
        let opt = &a[i];
        if xadd && opt.as_ref() == b"*" {
            id = Some(IdSpec::Auto);
            break;
        } else if (is(opt, "maxlen") || is(opt, "minid")) && more > 0 {
            if strategy.is_some() {
                return Err(Reply::err(
                    "syntax error, MAXLEN and MINID options at the same time are not compatible",
                ));
            }
            approx = false;
            let next = a[i + 1].as_ref();
            if more >= 2 && (next == b"~" || next == b"=") {
                approx = next == b"~";
                i += 1;
            }
            let value = &a[i + 1];
            strategy = Some(if is(opt, "maxlen") {
                let n = int_arg(value)?;
                if n < 0 {
                    return Err(Reply::err("The MAXLEN argument must be >= 0."));
                }
                TrimStrategy::MaxLen(n as u64)
            } else {
                TrimStrategy::MinId(args::strict_id(value)?)
            });
            i += 1;
        } else if is(opt, "limit") && more > 0 {
            let n = int_arg(&a[i + 1])?;
            if n < 0 {
                return Err(Reply::err("The LIMIT argument must be >= 0."));
            }
            limit = Some(n);
            i += 1;
        } else if xadd && is(opt, "nomkstream") {
            nomkstream = true;
        } else if !xadd {
            // XTRIM: anything else is a syntax error at once.
            return Err(syntax_error());
        } else {
            let (parsed, seq_given) = args::parse_id_or_auto_seq(opt, 0, IdForm::Strict, true)
                .ok_or_else(args::invalid_id)?;
            id = Some(if seq_given {
                IdSpec::Explicit(parsed)
            } else {
                IdSpec::AutoSeq(parsed.ms)
            });
            break;
        }
        i += 1;
    }
    if limit.is_some_and(|n| n != 0) && strategy.is_none() {
        return Err(Reply::err(
            "syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && strategy.is_none() {
        return Err(Reply::err(
            "syntax error, XTRIM must be called with a trimming strategy",
        ));
    }
    if limit.is_some() && !approx {
        return Err(Reply::err(
            "syntax error, LIMIT cannot be used without the special ~ option",
        ));
    }
    let spec = strategy.map(|strategy| TrimSpec {
        strategy,
        approx,
        // LIMIT 0 means "no limit" in Redis.
        limit: limit.map(|n| if n == 0 { u64::MAX } else { n as u64 }),
    });
    Ok(TrimArgs {
        spec,
        nomkstream,
        id,
        next: i,
    })
}

pub fn parse_add(a: &[Bytes]) -> Result<Add, Reply> {
    let parsed = parse_trim_args(a, true)?;
    let field_pos = parsed.next + 1;
    let rest = a.get(field_pos..).unwrap_or_default();
    if rest.len() < 2 || rest.len() % 2 == 1 {
        return Err(args::arity("xadd"));
    }
    if rest.len() / 2 > MAX_FIELDS {
        return Err(Reply::err("too many fields in one XADD"));
    }
    let id = parsed.id.unwrap_or(IdSpec::Auto);
    if id == IdSpec::Explicit(StreamId::MIN) {
        return Err(Reply::err(
            "The ID specified in XADD must be greater than 0-0",
        ));
    }
    let fields = rest
        .chunks_exact(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    Ok(Add {
        key: a[0].clone(),
        nomkstream: parsed.nomkstream,
        trim: parsed.spec,
        id,
        fields,
    })
}

pub fn parse_trim(a: &[Bytes]) -> Result<Trim, Reply> {
    let parsed = parse_trim_args(a, false)?;
    if parsed.next != a.len() {
        return Err(syntax_error());
    }
    let spec = parsed.spec.ok_or_else(syntax_error)?;
    Ok(Trim {
        key: a[0].clone(),
        spec,
    })
}

pub fn parse_del(a: &[Bytes]) -> Result<Del, Reply> {
    Ok(Del {
        key: a[0].clone(),
        ids: a[1..].iter().map(|s| args::strict_id(s)).collect(),
    })
}

pub fn parse_setid(a: &[Bytes]) -> Result<SetId, Reply> {
    let last_id = args::strict_id(&a[1])?;
    let mut entries_added = None;
    let mut max_deleted = None;
    let mut i = 2;
    while i < a.len() {
        let more = a.len() - 1 - i;
        if is(&a[i], "entriesadded") && more > 0 {
            let n = int_arg(&a[i + 1])?;
            if n < 0 {
                return Err(Reply::err("entries_added must be positive"));
            }
            entries_added = Some(n as u64);
        } else if is(&a[i], "maxdeletedid") && more > 0 {
            let id = args::strict_id(&a[i + 1])?;
            if last_id < id {
                return Err(Reply::err(
                    "The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                ));
            }
            max_deleted = Some(id);
        } else {
            return Err(syntax_error());
        }
        i += 2;
    }
    Ok(SetId {
        key: a[0].clone(),
        last_id,
        entries_added,
        // Redis ignores a MAXDELETEDID of 0-0.
        max_deleted: max_deleted.filter(|id| *id != StreamId::MIN),
    })
}

pub fn add(c: Add, ctx: &mut Ctx) -> Result<Reply, Reply> {
    let db = ctx.db;
    if ctx.engine.stream(db, &c.key).is_none() {
        if c.nomkstream {
            return Ok(Reply::Null);
        }
        let (_, lsn) = ctx
            .engine
            .create_stream(db, &c.key)
            .map_err(|e| engine_error(&e))?;
        ctx.effects.wrote(lsn);
        ctx.effects.touch(db, &c.key);
        ctx.effects.event('n', "new", db, &c.key);
    }
    let stream = ctx
        .engine
        .stream_mut(db, &c.key)
        .ok_or_else(|| Reply::err("no such key"))?;
    if stream.last_id() == StreamId::MAX {
        return Err(Reply::err(
            "The stream has exhausted the last possible ID, unable to add more items",
        ));
    }
    let (id, lsn) = stream
        .add(c.id, &c.fields, ctx.now_ms)
        .map_err(|e| engine_error(&e))?;
    ctx.effects.wrote(lsn);
    ctx.effects.touch(db, &c.key);
    ctx.effects.event('t', "xadd", db, &c.key);
    if let Some(spec) = c.trim {
        match stream.trim(spec) {
            Ok((removed, lsn)) => {
                ctx.effects.wrote(lsn);
                if removed > 0 {
                    ctx.effects.event('t', "xtrim", db, &c.key);
                }
            }
            // The entry is in; Redis cannot fail here, so report the trim failure alone.
            Err(e) => return Err(engine_error(&e)),
        }
    }
    Ok(args::id_reply(id))
}

/// A run of pipelined XADDs to one key, none with NOMKSTREAM or trimming, written with one
/// engine call: the replies (and effects) are those the XADDs give one at a time.
pub fn add_run(run: Vec<Add>, ctx: &mut Ctx) -> Vec<Reply> {
    let n = run.len();
    let Some(key) = run.first().map(|c| c.key.clone()) else {
        return Vec::new();
    };
    if n == 1 {
        return run
            .into_iter()
            .map(|c| add(c, ctx).unwrap_or_else(|e| e))
            .collect();
    }
    let db = ctx.db;
    if ctx.engine.stream(db, &key).is_none() {
        match ctx.engine.create_stream(db, &key) {
            Ok((_, lsn)) => {
                ctx.effects.wrote(lsn);
                ctx.effects.touch(db, &key);
                ctx.effects.event('n', "new", db, &key);
            }
            Err(e) => return vec![engine_error(&e); n],
        }
    }
    let Some(stream) = ctx.engine.stream_mut(db, &key) else {
        return vec![Reply::err("no such key"); n];
    };
    let entries: Vec<(IdSpec, &[(Bytes, Bytes)])> =
        run.iter().map(|c| (c.id, c.fields.as_slice())).collect();
    match stream.add_batch(&entries, ctx.now_ms) {
        Ok((results, lsn)) => {
            ctx.effects.wrote(lsn);
            results
                .into_iter()
                .map(|r| match r {
                    Ok(id) => {
                        ctx.effects.touch(db, &key);
                        ctx.effects.event('t', "xadd", db, &key);
                        args::id_reply(id)
                    }
                    Err(e) => engine_error(&e),
                })
                .collect()
        }
        Err(e) => vec![engine_error(&e); n],
    }
}

pub fn trim(c: Trim, ctx: &mut Ctx) -> Result<Reply, Reply> {
    let db = ctx.db;
    let Some(stream) = ctx.engine.stream_mut(db, &c.key) else {
        return Ok(Reply::Int(0));
    };
    let (removed, lsn) = stream.trim(c.spec).map_err(|e| engine_error(&e))?;
    ctx.effects.wrote(lsn);
    if removed > 0 {
        ctx.effects.touch(db, &c.key);
        ctx.effects.event('t', "xtrim", db, &c.key);
    }
    Ok(Reply::Int(i64::try_from(removed).unwrap_or(i64::MAX)))
}

pub fn del(c: Del, ctx: &mut Ctx) -> Result<Reply, Reply> {
    let db = ctx.db;
    let Some(stream) = ctx.engine.stream_mut(db, &c.key) else {
        return Ok(Reply::Int(0));
    };
    let ids = c.ids?;
    let (deleted, lsn) = stream.delete(&ids).map_err(|e| engine_error(&e))?;
    ctx.effects.wrote(lsn);
    if deleted > 0 {
        ctx.effects.touch(db, &c.key);
        ctx.effects.event('t', "xdel", db, &c.key);
    }
    Ok(Reply::Int(i64::try_from(deleted).unwrap_or(i64::MAX)))
}

pub fn setid(c: SetId, ctx: &mut Ctx) -> Result<Reply, Reply> {
    let db = ctx.db;
    let Some(stream) = ctx.engine.stream_mut(db, &c.key) else {
        return Err(Reply::err("no such key"));
    };
    let lsn = stream
        .set_id(c.last_id, c.entries_added, c.max_deleted)
        .map_err(|e| engine_error(&e))?;
    ctx.effects.wrote(lsn);
    // Redis 7.0 does not signal XSETID as a key modification (WATCH stays valid).
    ctx.effects.event('t', "xsetid", db, &c.key);
    Ok(Reply::Ok)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{b, err};
    use super::*;

    #[test]
    fn xadd_forms() {
        let a = parse_add(&b("k * f v")).unwrap();
        assert_eq!(a.id, IdSpec::Auto);
        assert_eq!(a.fields, vec![(Bytes::from("f"), Bytes::from("v"))]);
        assert!(!a.nomkstream && a.trim.is_none());
        assert_eq!(parse_add(&b("k 5-* f v")).unwrap().id, IdSpec::AutoSeq(5));
        assert_eq!(
            parse_add(&b("k 5 f v")).unwrap().id,
            IdSpec::Explicit(StreamId::new(5, 0))
        );
        assert_eq!(parse_add(&b("k 0-* f v")).unwrap().id, IdSpec::AutoSeq(0));
        let a = parse_add(&b("k NOMKSTREAM maxlen ~ 5 LIMIT 10 * f v g w")).unwrap();
        assert!(a.nomkstream);
        assert_eq!(a.fields.len(), 2);
        assert_eq!(
            a.trim,
            Some(TrimSpec {
                strategy: TrimStrategy::MaxLen(5),
                approx: true,
                limit: Some(10)
            })
        );
        let a = parse_add(&b("k minid = 7-1 * f v")).unwrap();
        assert_eq!(
            a.trim,
            Some(TrimSpec {
                strategy: TrimStrategy::MinId(StreamId::new(7, 1)),
                approx: false,
                limit: None
            })
        );
        assert_eq!(
            parse_add(&b("k maxlen ~ 5 limit 0 * f v"))
                .unwrap()
                .trim
                .unwrap()
                .limit,
            Some(u64::MAX)
        );
        // `maxlen` followed by one argument: the `~` is the threshold.
        assert_eq!(
            err(parse_add(&b("k maxlen ~ f v"))),
            "ERR value is not an integer or out of range"
        );
    }

    #[test]
    fn xadd_errors() {
        let arity = "ERR wrong number of arguments for 'xadd' command";
        assert_eq!(err(parse_add(&b("k * f"))), arity);
        assert_eq!(err(parse_add(&b("k * f v g"))), arity);
        assert_eq!(err(parse_add(&b("k maxlen 3 *"))), arity);
        assert_eq!(
            err(parse_add(&b("k 0-0 f v"))),
            "ERR The ID specified in XADD must be greater than 0-0"
        );
        assert_eq!(
            err(parse_add(&b("k 0 f v"))),
            "ERR The ID specified in XADD must be greater than 0-0"
        );
        for bad in [
            "k abc f v",
            "k -1 f v",
            "k 1-2-3 f v",
            "k (5 f v",
            "k minid abc * f v",
            "k minid 5-* * f v",
        ] {
            assert_eq!(
                err(parse_add(&b(bad))),
                "ERR Invalid stream ID specified as stream command argument",
                "{bad}"
            );
        }
        assert_eq!(
            err(parse_add(&b("k maxlen x * f v"))),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err(parse_add(&b("k maxlen -1 * f v"))),
            "ERR The MAXLEN argument must be >= 0."
        );
        assert_eq!(
            err(parse_add(&b("k maxlen 5 limit 10 * f v"))),
            "ERR syntax error, LIMIT cannot be used without the special ~ option"
        );
        assert_eq!(
            err(parse_add(&b("k limit 0 * f v"))),
            "ERR syntax error, LIMIT cannot be used without the special ~ option"
        );
        assert_eq!(
            err(parse_add(&b("k limit 10 * f v"))),
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy"
        );
        assert_eq!(
            err(parse_add(&b("k limit -1 * f v"))),
            "ERR The LIMIT argument must be >= 0."
        );
        assert_eq!(
            err(parse_add(&b("k maxlen 5 minid 3 * f v"))),
            "ERR syntax error, MAXLEN and MINID options at the same time are not compatible"
        );
    }

    #[test]
    fn xtrim_forms_and_errors() {
        let t = parse_trim(&b("k MAXLEN 0")).unwrap();
        assert_eq!(t.spec.strategy, TrimStrategy::MaxLen(0));
        let t = parse_trim(&b("k minid ~ 5 limit 3")).unwrap();
        assert_eq!(t.spec.strategy, TrimStrategy::MinId(StreamId::new(5, 0)));
        assert_eq!(t.spec.limit, Some(3));
        assert_eq!(err(parse_trim(&b("k maxlen 1 x"))), "ERR syntax error");
        assert_eq!(err(parse_trim(&b("k foo 1"))), "ERR syntax error");
        assert_eq!(
            err(parse_trim(&b("k limit 0"))),
            "ERR syntax error, XTRIM must be called with a trimming strategy"
        );
        assert_eq!(err(parse_trim(&b("k maxlen 1 limit"))), "ERR syntax error");
        assert_eq!(
            err(parse_trim(&b("k maxlen ~ 1 nomkstream"))),
            "ERR syntax error"
        );
        assert_eq!(err(parse_trim(&b("k limit 5 x"))), "ERR syntax error");
        assert_eq!(
            err(parse_trim(&b("k limit 5"))),
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy"
        );
        assert_eq!(
            err(parse_trim(&b("k minid (5"))),
            "ERR Invalid stream ID specified as stream command argument"
        );
    }

    #[test]
    fn xdel_and_xsetid() {
        let d = parse_del(&b("k 1-1 5")).unwrap();
        assert_eq!(d.ids, Ok(vec![StreamId::new(1, 1), StreamId::new(5, 0)]));
        assert_eq!(
            parse_del(&b("k 1-1 bad")).unwrap().ids,
            Err(args::invalid_id())
        );

        let s = parse_setid(&b("k 100-1 ENTRIESADDED 5 maxdeletedid 50")).unwrap();
        assert_eq!(s.last_id, StreamId::new(100, 1));
        assert_eq!(s.entries_added, Some(5));
        assert_eq!(s.max_deleted, Some(StreamId::new(50, 0)));
        assert_eq!(
            parse_setid(&b("k 5 maxdeletedid 0-0")).unwrap().max_deleted,
            None
        );
        assert_eq!(
            err(parse_setid(&b("k x"))),
            "ERR Invalid stream ID specified as stream command argument"
        );
        assert_eq!(
            err(parse_setid(&b("k 5-*"))),
            "ERR Invalid stream ID specified as stream command argument"
        );
        assert_eq!(err(parse_setid(&b("k 1 foo"))), "ERR syntax error");
        assert_eq!(err(parse_setid(&b("k 1 entriesadded"))), "ERR syntax error");
        assert_eq!(
            err(parse_setid(&b("k 1 entriesadded x"))),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err(parse_setid(&b("k 1 entriesadded -1"))),
            "ERR entries_added must be positive"
        );
        assert_eq!(
            err(parse_setid(&b("k 100-1 maxdeletedid 200"))),
            "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id"
        );
    }
}
