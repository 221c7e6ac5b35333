//! Generic key commands: DEL, UNLINK, EXISTS, TOUCH, TYPE, KEYS, SCAN, RENAME, RENAMENX, the
//! EXPIRE family, TTL/PTTL/EXPIRETIME/PEXPIRETIME, PERSIST, DBSIZE, FLUSHDB, FLUSHALL.
//! Streams are the only value type, so every key holds a stream.

use bytes::Bytes;

use super::{engine_error, int_arg, syntax_error, Ctx, Outcome};
use crate::reply::Reply;

/// A parsed key command.
#[derive(Debug)]
pub enum KeysCommand {
    Del(Vec<Bytes>),
    Exists(Vec<Bytes>),
    Type(Bytes),
    Keys(Bytes),
    Scan {
        cursor: u64,
        pattern: Option<Bytes>,
        count: usize,
        /// `TYPE x`: only `stream` matches anything.
        only_streams: bool,
    },
    Rename {
        from: Bytes,
        to: Bytes,
        nx: bool,
    },
    Expire {
        key: Bytes,
        /// The deadline as Unix ms.
        at_ms: i64,
        cond: ExpireCond,
    },
    Ttl {
        key: Bytes,
        millis: bool,
        absolute: bool,
    },
    Persist(Bytes),
    DbSize,
    RandomKey,
    FlushDb,
    FlushAll,
}

/// EXPIRE's NX/XX/GT/LT. XX combines with GT or LT: each given condition must hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpireCond {
    pub nx: bool,
    pub xx: bool,
    pub gt: bool,
    pub lt: bool,
}

impl ExpireCond {
    /// Whether a new deadline `at` may replace `current` (`None`: no TTL, which counts as
    /// an infinite one), checked before a deadline in the past deletes the key, as in
    /// Redis.
    fn allows(self, at: u64, current: Option<u64>) -> bool {
        (!self.nx || current.is_none())
            && (!self.xx || current.is_some())
            && (!self.gt || current.is_some_and(|cur| at > cur))
            && (!self.lt || current.is_none_or(|cur| at < cur))
    }
}

/// Parses a key command; `name` is lowercase, `args` exclude the name.
pub fn parse(name: &str, args: &[Bytes]) -> Result<KeysCommand, Reply> {
    Ok(match name {
        "del" | "unlink" => KeysCommand::Del(args.to_vec()),
        "exists" | "touch" => KeysCommand::Exists(args.to_vec()),
        "type" => KeysCommand::Type(args[0].clone()),
        "keys" => KeysCommand::Keys(args[0].clone()),
        "scan" => parse_scan(args)?,
        "rename" | "renamenx" => KeysCommand::Rename {
            from: args[0].clone(),
            to: args[1].clone(),
            nx: name == "renamenx",
        },
        "expire" | "pexpire" | "expireat" | "pexpireat" => parse_expire(name, args)?,
        "ttl" | "pttl" | "expiretime" | "pexpiretime" => KeysCommand::Ttl {
            key: args[0].clone(),
            millis: name.starts_with('p'),
            absolute: name.ends_with("time"),
        },
        "persist" => KeysCommand::Persist(args[0].clone()),
        "dbsize" => KeysCommand::DbSize,
        "randomkey" => KeysCommand::RandomKey,
        "flushdb" | "flushall" => {
            match args {
                [] => {}
                [mode]
                    if mode.eq_ignore_ascii_case(b"ASYNC")
                        || mode.eq_ignore_ascii_case(b"SYNC") => {}
                _ => return Err(syntax_error()),
            }
            if name == "flushdb" {
                KeysCommand::FlushDb
            } else {
                KeysCommand::FlushAll
            }
        }
        _ => return Err(super::unknown_command(name.as_bytes(), args)),
    })
}

fn parse_scan(args: &[Bytes]) -> Result<KeysCommand, Reply> {
    let cursor = parse_cursor(&args[0]).ok_or_else(|| Reply::err("invalid cursor"))?;
    let mut pattern = None;
    let mut count = 10;
    let mut only_streams = true;
    let mut rest = &args[1..];
    while let Some((opt, tail)) = rest.split_first() {
        let Some((val, tail)) = tail.split_first() else {
            return Err(syntax_error());
        };
        match opt.to_ascii_lowercase().as_slice() {
            b"count" => {
                let n = int_arg(val)?;
                if n < 1 {
                    return Err(syntax_error());
                }
                count = usize::try_from(n).unwrap_or(usize::MAX);
            }
            b"match" => pattern = Some(val.clone()),
            b"type" => only_streams = val.eq_ignore_ascii_case(b"stream"),
            _ => return Err(syntax_error()),
        }
        rest = tail;
    }
    Ok(KeysCommand::Scan {
        cursor,
        pattern,
        count,
        only_streams,
    })
}

/// A SCAN cursor as Redis' `strtoul` reads it (a leading `-` wraps around).
fn parse_cursor(b: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(b).ok()?;
    if let Some(neg) = s.strip_prefix('-') {
        let v: u64 = neg.parse().ok()?;
        return Some(v.wrapping_neg());
    }
    s.parse().ok()
}

fn parse_expire(name: &str, args: &[Bytes]) -> Result<KeysCommand, Reply> {
    // Redis checks the options before the number.
    let mut cond = ExpireCond::default();
    for opt in &args[2..] {
        match opt.to_ascii_lowercase().as_slice() {
            b"nx" => cond.nx = true,
            b"xx" => cond.xx = true,
            b"gt" => cond.gt = true,
            b"lt" => cond.lt = true,
            _ => {
                return Err(Reply::err(format!(
                    "Unsupported option {}",
                    String::from_utf8_lossy(opt)
                )))
            }
        }
    }
    if cond.nx && (cond.xx || cond.gt || cond.lt) {
        return Err(Reply::err(
            "NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if cond.gt && cond.lt {
        return Err(Reply::err(
            "GT and LT options at the same time are not compatible",
        ));
    }
    let n = int_arg(&args[1])?;
    let invalid = || Reply::err(format!("invalid expire time in '{name}' command"));
    let relative = !name.ends_with("at");
    let millis = name.starts_with('p');
    let mut at = if millis {
        n
    } else {
        n.checked_mul(1000).ok_or_else(invalid)?
    };
    if relative {
        let now = i64::try_from(crate::connection::now_ms()).unwrap_or(i64::MAX);
        at = at.checked_add(now).ok_or_else(invalid)?;
    }
    Ok(KeysCommand::Expire {
        key: args[0].clone(),
        at_ms: at,
        cond,
    })
}

/// Executes a key command under the engine lock.
pub fn execute(cmd: KeysCommand, ctx: &mut Ctx) -> Outcome {
    Outcome::Reply(match run(cmd, ctx) {
        Ok(r) => r,
        Err(e) => e,
    })
}

/// RANDOMKEY's random draws before it looks for any live key in order.
const RANDOMKEY_DRAWS: usize = 100;

/// Whether a key exists and has not expired.
fn alive(ctx: &Ctx, key: &[u8]) -> bool {
    if ctx.engine.stream(ctx.db, key).is_none() {
        return false;
    }
    !matches!(ctx.engine.expire_at(ctx.db, key), Some(at) if at <= ctx.now_ms)
}

/// Removes `key` as DEL does: watchers see it touched and a `del` event goes out. False if
/// there was no such key.
fn delete(ctx: &mut Ctx, key: &Bytes) -> Result<bool, Reply> {
    let db = ctx.db;
    let Some(lsn) = ctx
        .engine
        .remove_stream(db, key)
        .map_err(|e| engine_error(&e))?
    else {
        return Ok(false);
    };
    ctx.effects.wrote(lsn);
    ctx.effects.touch(db, key);
    ctx.effects.event('g', "del", db, key);
    Ok(true)
}

fn run(cmd: KeysCommand, ctx: &mut Ctx) -> Result<Reply, Reply> {
    let db = ctx.db;
    Ok(match cmd {
        KeysCommand::Del(keys) => {
            let mut n = 0;
            for key in keys {
                if alive(ctx, &key) && delete(ctx, &key)? {
                    n += 1;
                }
            }
            Reply::Int(n)
        }
        KeysCommand::Exists(keys) => {
            Reply::Int(keys.iter().filter(|k| alive(ctx, k)).count() as i64)
        }
        KeysCommand::Type(key) => {
            Reply::Simple(if alive(ctx, &key) { "stream" } else { "none" }.into())
        }
        KeysCommand::Keys(pattern) => {
            let all = pattern.as_ref() == b"*";
            let mut out = Vec::new();
            for key in ctx.engine.keys(db) {
                if all || glob_match(&pattern, key) {
                    out.push(Bytes::copy_from_slice(key));
                }
            }
            out.retain(|k| alive(ctx, k));
            Reply::Array(out.into_iter().map(Reply::Bulk).collect())
        }
        KeysCommand::Scan {
            cursor,
            pattern,
            count,
            only_streams,
        } => {
            let (next, keys) = ctx.engine.scan(db, cursor, count);
            let keys = keys
                .into_iter()
                .filter(|k| only_streams && pattern.as_ref().is_none_or(|p| glob_match(p, k)))
                .filter(|k| alive(ctx, k))
                .map(Reply::Bulk)
                .collect();
            Reply::Array(vec![
                Reply::bulk(next.to_string().into_bytes()),
                Reply::Array(keys),
            ])
        }
        KeysCommand::Rename { from, to, nx } => {
            if !alive(ctx, &from) {
                return Err(Reply::err("no such key"));
            }
            if from == to {
                return Ok(if nx { Reply::Int(0) } else { Reply::Ok });
            }
            if nx && alive(ctx, &to) {
                return Ok(Reply::Int(0));
            }
            // A stale (expired) destination is removed first so it cannot resurface.
            if !alive(ctx, &to) && ctx.engine.stream(db, &to).is_some() {
                if let Some(lsn) = ctx
                    .engine
                    .remove_stream(db, &to)
                    .map_err(|e| engine_error(&e))?
                {
                    ctx.effects.wrote(lsn);
                }
            }
            let lsn = ctx
                .engine
                .rename_stream(db, &from, &to)
                .map_err(|e| engine_error(&e))?;
            ctx.effects.wrote(lsn);
            ctx.effects.touch(db, &from);
            ctx.effects.touch(db, &to);
            ctx.effects.event('g', "rename_from", db, &from);
            ctx.effects.event('g', "rename_to", db, &to);
            if nx {
                Reply::Int(1)
            } else {
                Reply::Ok
            }
        }
        KeysCommand::Expire { key, at_ms, cond } => {
            if !alive(ctx, &key) {
                return Ok(Reply::Int(0));
            }
            let current = ctx.engine.expire_at(db, &key);
            let at = at_ms.max(0) as u64;
            if !cond.allows(at, current) {
                return Ok(Reply::Int(0));
            }
            if at_ms <= i64::try_from(ctx.now_ms).unwrap_or(i64::MAX) {
                // A deadline in the past deletes the key (Redis emits `del`).
                delete(ctx, &key)?;
                return Ok(Reply::Int(1));
            }
            let lsn = ctx
                .engine
                .set_expire(db, &key, Some(at))
                .map_err(|e| engine_error(&e))?;
            ctx.effects.wrote(lsn);
            ctx.effects.touch(db, &key);
            ctx.effects.event('g', "expire", db, &key);
            Reply::Int(1)
        }
        KeysCommand::Ttl {
            key,
            millis,
            absolute,
        } => {
            if !alive(ctx, &key) {
                return Ok(Reply::Int(-2));
            }
            match ctx.engine.expire_at(db, &key) {
                None => Reply::Int(-1),
                Some(at) => {
                    let v = if absolute {
                        at
                    } else {
                        at.saturating_sub(ctx.now_ms)
                    };
                    let v = if millis { v } else { (v + 500) / 1000 };
                    Reply::Int(i64::try_from(v).unwrap_or(i64::MAX))
                }
            }
        }
        KeysCommand::Persist(key) => {
            if !alive(ctx, &key) || ctx.engine.expire_at(db, &key).is_none() {
                return Ok(Reply::Int(0));
            }
            let lsn = ctx
                .engine
                .set_expire(db, &key, None)
                .map_err(|e| engine_error(&e))?;
            ctx.effects.wrote(lsn);
            ctx.effects.touch(db, &key);
            ctx.effects.event('g', "persist", db, &key);
            Reply::Int(1)
        }
        KeysCommand::DbSize => Reply::Int(ctx.engine.key_count(db) as i64),
        KeysCommand::RandomKey => {
            // Draws past keys whose deadline has passed (Redis deletes them as it finds
            // them; the expiry cycle does that here), then settles for any live key.
            let mut pick = None;
            for _ in 0..RANDOMKEY_DRAWS {
                match ctx.engine.key_from_seed(db, super::random_u64()) {
                    None => break,
                    Some(k) if alive(ctx, k) => {
                        pick = Some(Bytes::copy_from_slice(k));
                        break;
                    }
                    Some(_) => {}
                }
            }
            if pick.is_none() {
                pick = ctx
                    .engine
                    .keys(db)
                    .find(|k| alive(ctx, k))
                    .map(Bytes::copy_from_slice);
            }
            pick.map_or(Reply::Null, Reply::Bulk)
        }
        KeysCommand::FlushDb => {
            let lsn = ctx.engine.flush_db(db).map_err(|e| engine_error(&e))?;
            ctx.effects.wrote(lsn);
            ctx.effects.flushed.push(db);
            Reply::Ok
        }
        KeysCommand::FlushAll => {
            let lsn = ctx.engine.flush_all().map_err(|e| engine_error(&e))?;
            ctx.effects.wrote(lsn);
            ctx.effects.flushed.extend(0..ctx.engine.databases());
            Reply::Ok
        }
    })
}

/// KEYS / SCAN MATCH matching: Redis' glob ([`crate::glob`]), except that a lone `*` lists
/// every key, the empty name included, because Redis skips the matcher for it.
pub fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    pattern == b"*" || crate::glob::matches(pattern, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"h?llo", b"hello"));
        assert!(glob_match(b"h*llo", b"heeeello"));
        assert!(glob_match(b"h[ae]llo", b"hallo"));
        assert!(!glob_match(b"h[ae]llo", b"hillo"));
        assert!(glob_match(b"h[^e]llo", b"hallo"));
        assert!(!glob_match(b"h[^e]llo", b"hello"));
        assert!(glob_match(b"h[a-b]llo", b"hbllo"));
        assert!(glob_match(b"h\\*llo", b"h*llo"));
        assert!(!glob_match(b"h\\*llo", b"hello"));
        assert!(glob_match(b"*a*b*c*", b"xxaxxbxxcxx"));
        assert!(!glob_match(b"*a*b*c*d", b"xxaxxbxxcxx"));
        assert!(glob_match(b"user:*", b"user:1"));
        // Pathological pattern: linear-ish time, no recursion.
        let s = vec![b'a'; 10_000];
        assert!(!glob_match(b"*a*a*a*a*a*a*a*a*b", &s));
    }

    #[test]
    fn expire_option_errors() {
        let args =
            |v: &[&str]| -> Vec<Bytes> { v.iter().map(|s| Bytes::from(s.to_string())).collect() };
        let e = parse("expire", &args(&["k", "1", "NX", "XX"])).unwrap_err();
        assert_eq!(
            e,
            Reply::err("NX and XX, GT or LT options at the same time are not compatible")
        );
        let e = parse("expire", &args(&["k", "1", "GT", "LT"])).unwrap_err();
        assert_eq!(
            e,
            Reply::err("GT and LT options at the same time are not compatible")
        );
        let e = parse("expire", &args(&["k", "1", "FOO"])).unwrap_err();
        assert_eq!(e, Reply::err("Unsupported option FOO"));
        let e = parse("expire", &args(&["k", "9223372036854775807"])).unwrap_err();
        assert_eq!(e, Reply::err("invalid expire time in 'expire' command"));
        let e = parse("scan", &args(&["0", "COUNT", "0"])).unwrap_err();
        assert_eq!(e, syntax_error());
        let e = parse("scan", &args(&["x"])).unwrap_err();
        assert_eq!(e, Reply::err("invalid cursor"));
    }
}
