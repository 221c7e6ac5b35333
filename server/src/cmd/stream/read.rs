//! Reading commands: XLEN, XRANGE, XREVRANGE, XREAD and XREADGROUP (whose BLOCK form hands a
//! [`BlockRequest`] to [`crate::blocking`]).

use std::ops::Bound;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use sluice_engine::{Delivery, Direction, Engine, Entry, GroupStart, StreamId};

use super::args::{self, is};
use super::{engine_error, entry_reply};
use crate::blocking::{BlockRequest, GroupTarget};
use crate::cmd::{int_arg, parse_i64, syntax_error, ChunkedReply, Ctx, Outcome};
use crate::reply::{encode_array_header, Protocol, Reply};

/// Entries read from the engine per chunk of a large reply.
pub const CHUNK: usize = 1000;
/// Most keys one XREAD may name.
pub const MAX_READ_KEYS: usize = 1 << 16;

/// `XRANGE key start end [COUNT n]` / `XREVRANGE key end start [COUNT n]`, bounds inclusive.
#[derive(Debug, PartialEq)]
pub struct Range {
    pub key: Bytes,
    pub lo: StreamId,
    pub hi: StreamId,
    /// `None`: no COUNT; `Some(0)` (or a negative COUNT): nil reply.
    pub count: Option<u64>,
    pub rev: bool,
}

/// An ID argument of XREAD/XREADGROUP, checked during execution as Redis checks it (after
/// the key's group exists).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadId {
    /// `$`: the stream's last ID at the time of the call.
    Last,
    /// `>`: entries never delivered to the group.
    New,
    Id(StreamId),
    Invalid,
}

/// XREAD and XREADGROUP.
#[derive(Debug, PartialEq)]
pub struct Read {
    /// XREADGROUP's `GROUP group consumer`.
    pub group: Option<(Bytes, Bytes)>,
    pub noack: bool,
    /// 0 = no limit.
    pub count: usize,
    /// BLOCK in ms (0 = forever).
    pub block: Option<u64>,
    pub keys: Vec<(Bytes, ReadId)>,
}

pub fn parse_range(a: &[Bytes], rev: bool) -> Result<Range, Reply> {
    let (start, end) = if rev { (&a[2], &a[1]) } else { (&a[1], &a[2]) };
    let (lo, hi) = args::range_bounds(start, end)?;
    let mut count = None;
    let mut j = 3;
    while j < a.len() {
        if is(&a[j], "count") && j + 1 < a.len() {
            count = Some(u64::try_from(int_arg(&a[j + 1])?).unwrap_or(0));
            j += 2;
        } else {
            return Err(syntax_error());
        }
    }
    Ok(Range {
        key: a[0].clone(),
        lo,
        hi,
        count,
        rev,
    })
}

/// Redis' `getTimeoutFromObjectOrReply` for milliseconds.
pub fn parse_timeout(s: &[u8]) -> Result<u64, Reply> {
    let ms = parse_i64(s).ok_or_else(|| Reply::err("timeout is not an integer or out of range"))?;
    if ms < 0 {
        return Err(Reply::err("timeout is negative"));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    if ms > 0 && ms > i64::MAX - now {
        return Err(Reply::err("timeout is out of range"));
    }
    Ok(ms as u64)
}

pub fn parse_read(a: &[Bytes], xreadgroup: bool) -> Result<Read, Reply> {
    let mut group = None;
    let mut noack = false;
    let mut count = 0usize;
    let mut block = None;
    let mut streams_at = None;
    let mut i = 0;
    while i < a.len() {
        let more = a.len() - 1 - i;
        let o = &a[i];
        if is(o, "block") && more > 0 {
            block = Some(parse_timeout(&a[i + 1])?);
            i += 1;
        } else if is(o, "count") && more > 0 {
            count = usize::try_from(int_arg(&a[i + 1])?.max(0)).unwrap_or(usize::MAX);
            i += 1;
        } else if is(o, "streams") && more > 0 {
            if more % 2 == 1 {
                return Err(Reply::err(
                    "Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.",
                ));
            }
            streams_at = Some(i + 1);
            break;
        } else if is(o, "group") && more >= 2 {
            if !xreadgroup {
                return Err(Reply::err(
                    "The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            group = Some((a[i + 1].clone(), a[i + 2].clone()));
            i += 2;
        } else if is(o, "noack") {
            if !xreadgroup {
                return Err(Reply::err(
                    "The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            noack = true;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }
    let Some(at) = streams_at else {
        return Err(syntax_error());
    };
    if xreadgroup && group.is_none() {
        return Err(Reply::err("Missing GROUP option for XREADGROUP"));
    }
    let n = (a.len() - at) / 2;
    if n > MAX_READ_KEYS {
        return Err(Reply::err("too many keys in one XREAD"));
    }
    let keys = (0..n)
        .map(|k| {
            let raw = &a[at + n + k];
            let id = match raw.as_ref() {
                b"$" => ReadId::Last,
                b">" => ReadId::New,
                other => args::parse_id(other, 0, args::IdForm::Strict)
                    .map_or(ReadId::Invalid, ReadId::Id),
            };
            (a[at + k].clone(), id)
        })
        .collect();
    Ok(Read {
        group,
        noack,
        count,
        block,
        keys,
    })
}

pub fn len(key: &[u8], ctx: &mut Ctx) -> Reply {
    let n = ctx.engine.stream(ctx.db, key).map_or(0, |s| s.len());
    Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Inclusive range bounds and the direction to walk them.
#[derive(Clone, Copy, Debug)]
struct Span {
    lo: StreamId,
    hi: StreamId,
    dir: Direction,
}

/// Reads the next slice of a range in its direction, after `cursor` (exclusive) when given.
fn read_slice(
    engine: &Engine,
    db: sluice_engine::Db,
    key: &[u8],
    span: Span,
    cursor: Option<StreamId>,
    count: usize,
) -> Result<Option<Vec<Entry>>, Reply> {
    let Some(stream) = engine.stream(db, key) else {
        return Ok(None);
    };
    let Span { lo, hi, dir } = span;
    let (start, end) = match (dir, cursor) {
        (Direction::Forward, Some(c)) => (Bound::Excluded(c), Bound::Included(hi)),
        (Direction::Backward, Some(c)) => (Bound::Included(lo), Bound::Excluded(c)),
        (_, None) => (Bound::Included(lo), Bound::Included(hi)),
    };
    stream
        .range(start, end, count, dir)
        .map(Some)
        .map_err(|e| engine_error(&e))
}

pub fn range(c: Range, ctx: &mut Ctx) -> Outcome {
    let Some(stream) = ctx.engine.stream(ctx.db, &c.key) else {
        return Reply::Array(vec![]).into();
    };
    let limit = match c.count {
        Some(0) => return Reply::NullArray.into(),
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => usize::MAX,
    };
    if c.lo > c.hi {
        return Reply::Array(vec![]).into();
    }
    let dir = if c.rev {
        Direction::Backward
    } else {
        Direction::Forward
    };
    if limit <= CHUNK {
        // Fits in one chunk: encode straight from the segment maps.
        let hi = c.hi.min(stream.last_id());
        let mut body = BytesMut::with_capacity(1024);
        let mut first = true;
        let visit = |e: &sluice_engine::EntryRef<'_>| {
            super::encode_entry(&mut body, e);
            if first {
                // Room for the rest at the first entry's size, instead of growing by doubling.
                first = false;
                body.reserve((body.len() * (limit - 1)).min(1 << 20));
            }
        };
        let len = match stream.range_with(
            Bound::Included(c.lo),
            Bound::Included(hi),
            limit,
            dir,
            visit,
        ) {
            Ok(len) => len,
            Err(e) => return engine_error(&e).into(),
        };
        return Reply::RawArray {
            len,
            body: body.freeze(),
        }
        .into();
    }
    let part = match Part::start(stream, c.key, c.lo, c.hi, dir, limit) {
        Ok(part) => part,
        Err(e) => return e.into(),
    };
    if part.complete() {
        return Reply::Array(part.first.iter().map(entry_reply).collect()).into();
    }
    Outcome::Chunked(Box::new(ChunkedEntries::new(ctx.db, false, vec![part])))
}

/// One key's share of a reply of entries: its bounds, the first chunk read when the command
/// ran, and (once known) how many entries it will carry.
struct Part {
    key: Bytes,
    span: Span,
    limit: usize,
    /// Read under the command's lock; emitted first.
    first: Vec<Entry>,
    /// While counting: entries counted and the last ID counted.
    counted: usize,
    count_cursor: Option<StreamId>,
    /// `None` until counted. Set at once when the range fits in the first chunk or covers
    /// the whole stream.
    total: Option<usize>,
}

impl Part {
    /// Reads the first chunk of `lo..=hi` (capped at the stream's current top, so entries
    /// added while a chunked reply is written do not leak into it).
    fn start(
        stream: &sluice_engine::Stream,
        key: Bytes,
        lo: StreamId,
        hi: StreamId,
        dir: Direction,
        limit: usize,
    ) -> Result<Part, Reply> {
        let hi = hi.min(stream.last_id());
        let span = Span { lo, hi, dir };
        let first = if lo > hi {
            Vec::new()
        } else {
            stream
                .range(
                    Bound::Included(lo),
                    Bound::Included(hi),
                    limit.min(CHUNK),
                    dir,
                )
                .map_err(|e| engine_error(&e))?
        };
        let total = if first.len() < CHUNK || limit <= CHUNK {
            Some(first.len())
        } else {
            let whole = stream
                .first_entry()
                .map_err(|e| engine_error(&e))?
                .is_some_and(|e| lo <= e.id)
                && hi >= stream.last_id();
            whole.then(|| {
                usize::try_from(stream.len())
                    .unwrap_or(usize::MAX)
                    .min(limit)
            })
        };
        Ok(Part {
            key,
            span,
            limit,
            counted: first.len(),
            count_cursor: first.last().map(|e| e.id),
            first,
            total,
        })
    }

    /// True when the first chunk is the whole part (no chunked reply needed).
    fn complete(&self) -> bool {
        self.total == Some(self.first.len())
    }

    /// Counts one more slice; sets `total` when done.
    fn count_more(&mut self, engine: &Engine, db: sluice_engine::Db) -> Result<(), String> {
        let want = (self.limit - self.counted).min(CHUNK * 4);
        let slice = read_slice(engine, db, &self.key, self.span, self.count_cursor, want)
            .map_err(|e| format!("{e:?}"))?
            .unwrap_or_default();
        self.counted += slice.len();
        self.count_cursor = slice.last().map(|e| e.id).or(self.count_cursor);
        if slice.len() < want || self.counted >= self.limit {
            self.total = Some(self.counted);
        }
        Ok(())
    }
}

/// XRANGE/XREVRANGE and XREAD replies produced a chunk at a time (see [`ChunkedReply`]).
/// Element counts must be known before the first byte, so each part whose size is unknown
/// is counted first, in chunks. If other clients delete entries between chunks so that
/// fewer remain than announced, the reply is aborted with an error (the connection closes).
struct ChunkedEntries {
    db: sluice_engine::Db,
    /// XREAD's `key → entries` wrapping (a map in RESP3, `[[key, entries]]` in RESP2).
    keyed: bool,
    parts: Vec<Part>,
    started: bool,
    /// The part being written, whether its headers are out, and its progress.
    current: usize,
    part_started: bool,
    emitted: usize,
    cursor: Option<StreamId>,
}

impl ChunkedEntries {
    fn new(db: sluice_engine::Db, keyed: bool, parts: Vec<Part>) -> Self {
        ChunkedEntries {
            db,
            keyed,
            parts,
            started: false,
            current: 0,
            part_started: false,
            emitted: 0,
            cursor: None,
        }
    }
}

impl ChunkedReply for ChunkedEntries {
    fn next_chunk(
        &mut self,
        engine: &mut Engine,
        proto: Protocol,
        out: &mut BytesMut,
    ) -> Result<bool, String> {
        if let Some(part) = self.parts.iter_mut().find(|p| p.total.is_none()) {
            part.count_more(engine, self.db)?;
            return Ok(false);
        }
        if !self.started {
            self.started = true;
            if self.keyed {
                match proto {
                    Protocol::Resp2 => encode_array_header(out, self.parts.len()),
                    Protocol::Resp3 => {
                        crate::reply::encode_map_header(proto, out, self.parts.len())
                    }
                }
            }
        }
        let Some(part) = self.parts.get_mut(self.current) else {
            return Ok(true);
        };
        let total = part.total.unwrap_or(0);
        if !self.part_started {
            self.part_started = true;
            if self.keyed {
                if proto == Protocol::Resp2 {
                    encode_array_header(out, 2);
                }
                Reply::Bulk(part.key.clone()).encode(proto, out);
            }
            encode_array_header(out, total);
            let first = std::mem::take(&mut part.first);
            for e in first.iter().take(total) {
                entry_reply(e).encode(proto, out);
            }
            self.emitted = first.len().min(total);
            self.cursor = first.last().map(|e| e.id);
        } else {
            let want = (total - self.emitted).min(CHUNK);
            let slice = read_slice(engine, self.db, &part.key, part.span, self.cursor, want)
                .map_err(|e| format!("{e:?}"))?
                .unwrap_or_default();
            if slice.is_empty() {
                return Err("stream changed during a chunked reply".into());
            }
            for e in &slice {
                entry_reply(e).encode(proto, out);
            }
            self.emitted += slice.len();
            self.cursor = slice.last().map(|e| e.id);
        }
        if self.emitted >= total {
            self.current += 1;
            self.part_started = false;
        }
        Ok(self.current >= self.parts.len())
    }
}

/// Whether the stream has a live entry after the group's last-delivered ID (what `>` would
/// read).
pub fn has_new_entries(
    stream: &sluice_engine::Stream,
    group: &[u8],
) -> Result<bool, sluice_engine::Error> {
    let Some(info) = stream.group_info(group) else {
        return Ok(false);
    };
    if stream.last_id() <= info.last_delivered_id {
        return Ok(false);
    }
    // A forward look for one live entry after the group's position: the engine's seek hint
    // (left there by the group's last read) makes it start at that entry, where a backward
    // look for the last entry re-verifies the whole last index chunk.
    let found = stream.range_with(
        Bound::Excluded(info.last_delivered_id),
        Bound::Unbounded,
        1,
        Direction::Forward,
        |_| {},
    )?;
    Ok(found > 0)
}

/// XREADGROUP's entries as one reply: encoded directly when every entry still exists (the
/// usual case), else as a tree (a deleted entry's nil differs between protocols).
fn deliveries_reply(deliveries: &[Delivery]) -> Reply {
    if deliveries.iter().any(|d| d.fields.is_none()) {
        return Reply::Array(deliveries.iter().map(delivery_reply).collect());
    }
    let mut body = BytesMut::new();
    for d in deliveries {
        super::encode_fields_entry(&mut body, d.id, d.fields.as_deref().unwrap_or_default());
    }
    Reply::RawArray {
        len: deliveries.len(),
        body: body.freeze(),
    }
}

/// An XREADGROUP entry: `[id, [field, value, ...]]`, or `[id, nil]` if it was deleted.
pub fn delivery_reply(d: &Delivery) -> Reply {
    match &d.fields {
        Some(f) => Reply::Array(vec![args::id_reply(d.id), super::fields_reply(f)]),
        None => Reply::Array(vec![args::id_reply(d.id), Reply::NullArray]),
    }
}

/// XREAD/XREADGROUP's reply: `key → entries`, a map in RESP3 and `[[key, entries], ...]` in
/// RESP2.
pub fn keyed_reply(pairs: Vec<(Reply, Reply)>) -> Reply {
    Reply::PairMap(pairs)
}

pub fn read(c: Read, ctx: &mut Ctx) -> Outcome {
    match read_inner(c, ctx) {
        Ok(o) => o,
        Err(e) => e.into(),
    }
}

fn read_inner(c: Read, ctx: &mut Ctx) -> Result<Outcome, Reply> {
    let db = ctx.db;
    // Resolve IDs and check groups, key by key, in Redis' order.
    let mut resolved = Vec::with_capacity(c.keys.len());
    for (key, id) in &c.keys {
        let stream = ctx.engine.stream(db, key);
        if let Some((group, _)) = &c.group {
            let has_group = stream.is_some_and(|s| s.group_info(group).is_some());
            if !has_group {
                return Err(Reply::Error(format!(
                    "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                    args::lossy(key, usize::MAX),
                    args::lossy(group, usize::MAX)
                )));
            }
        }
        let id = match id {
            ReadId::Last if c.group.is_some() => {
                return Err(Reply::err(
                    "The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
                ))
            }
            ReadId::Last => ReadId::Id(stream.map_or(StreamId::MIN, |s| s.last_id())),
            ReadId::New if c.group.is_none() => {
                return Err(Reply::err(
                    "The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
                ))
            }
            ReadId::Invalid => return Err(args::invalid_id()),
            other => *other,
        };
        resolved.push((key.clone(), id));
    }
    let count = (c.count > 0).then_some(c.count);
    let mut served = Vec::new();
    let mut parts = Vec::new();
    for (key, id) in &resolved {
        match &c.group {
            Some((group, consumer)) => {
                let Some(stream) = ctx.engine.stream_mut(db, key) else {
                    continue;
                };
                let (start, history) = match id {
                    ReadId::Id(id) => (GroupStart::History(*id), true),
                    _ => (GroupStart::New, false),
                };
                // Redis touches the consumer (creating it) only when it serves this key.
                if !history && !has_new_entries(stream, group).map_err(|e| engine_error(&e))? {
                    continue;
                }
                let existed = super::group::has_consumer(stream, group, consumer);
                let (deliveries, lsn) = stream
                    .read_group(group, consumer, start, count, c.noack, ctx.now_ms)
                    .map_err(|e| engine_error(&e))?;
                ctx.effects.wrote(lsn);
                super::group::note_created_consumer(ctx, key, group, consumer, existed);
                if history || !deliveries.is_empty() {
                    served.push((Reply::Bulk(key.clone()), deliveries_reply(&deliveries)));
                }
            }
            None => {
                let ReadId::Id(after) = id else { continue };
                let Some(stream) = ctx.engine.stream(db, key) else {
                    continue;
                };
                let Some(lo) = after.next() else { continue };
                if stream.last_id() < lo {
                    continue;
                }
                let part = Part::start(
                    stream,
                    key.clone(),
                    lo,
                    StreamId::MAX,
                    Direction::Forward,
                    count.unwrap_or(usize::MAX),
                )?;
                if !part.first.is_empty() {
                    parts.push(part);
                }
            }
        }
    }
    if !parts.iter().all(Part::complete) {
        return Ok(Outcome::Chunked(Box::new(ChunkedEntries::new(
            db, true, parts,
        ))));
    }
    for part in parts {
        served.push((
            Reply::Bulk(part.key),
            Reply::Array(part.first.iter().map(entry_reply).collect()),
        ));
    }
    if !served.is_empty() {
        return Ok(keyed_reply(served).into());
    }
    match c.block {
        Some(timeout_ms) if !ctx.in_multi => Ok(Outcome::Block(BlockRequest {
            keys: resolved
                .into_iter()
                .map(|(k, id)| match id {
                    ReadId::Id(id) => (k, id),
                    _ => (k, StreamId::MAX),
                })
                .collect(),
            group: c.group.map(|(group, consumer)| GroupTarget {
                group,
                consumer,
                noack: c.noack,
            }),
            count: c.count,
            timeout_ms,
            timeout_reply: Reply::NullArray,
        })),
        _ => Ok(Reply::NullArray.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{b, err};
    use super::*;

    #[test]
    fn xrange_forms() {
        let r = parse_range(&b("k - + COUNT 5"), false).unwrap();
        assert_eq!(
            (r.lo, r.hi, r.count),
            (StreamId::MIN, StreamId::MAX, Some(5))
        );
        let r = parse_range(&b("k + - count -1"), true).unwrap();
        assert_eq!(
            (r.lo, r.hi, r.count),
            (StreamId::MIN, StreamId::MAX, Some(0))
        );
        let r = parse_range(&b("k (5 (7-1"), false).unwrap();
        assert_eq!((r.lo, r.hi), (StreamId::new(5, 1), StreamId::new(7, 0)));
        let r = parse_range(&b("k 3 1 count 1 count 2"), false).unwrap();
        assert_eq!(
            (r.lo, r.hi, r.count),
            (StreamId::new(3, 0), StreamId::new(1, u64::MAX), Some(2))
        );
        // XREVRANGE takes the end first.
        let r = parse_range(&b("k 9 (2"), true).unwrap();
        assert_eq!(
            (r.lo, r.hi),
            (StreamId::new(2, 1), StreamId::new(9, u64::MAX))
        );
    }

    #[test]
    fn xrange_errors() {
        assert_eq!(
            err(parse_range(&b("k - + count"), false)),
            "ERR syntax error"
        );
        assert_eq!(err(parse_range(&b("k - + foo"), false)), "ERR syntax error");
        assert_eq!(
            err(parse_range(&b("k - + count x"), false)),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err(parse_range(&b("k x +"), false)),
            "ERR Invalid stream ID specified as stream command argument"
        );
        assert_eq!(
            err(parse_range(&b("k - (+"), false)),
            "ERR Invalid stream ID specified as stream command argument"
        );
        assert_eq!(
            err(parse_range(
                &b("k (18446744073709551615-18446744073709551615 +"),
                false
            )),
            "ERR invalid start ID for the interval"
        );
        assert_eq!(
            err(parse_range(&b("k - (0-0"), false)),
            "ERR invalid end ID for the interval"
        );
    }

    #[test]
    fn xread_forms() {
        let r = parse_read(&b("COUNT 2 BLOCK 0 STREAMS a b $ 5-1"), false).unwrap();
        assert_eq!(r.count, 2);
        assert_eq!(r.block, Some(0));
        assert_eq!(
            r.keys,
            vec![
                (Bytes::from("a"), ReadId::Last),
                (Bytes::from("b"), ReadId::Id(StreamId::new(5, 1)))
            ]
        );
        let r = parse_read(&b("count -1 block 1 block 2 streams s x"), false).unwrap();
        assert_eq!((r.count, r.block), (0, Some(2)));
        assert_eq!(r.keys[0].1, ReadId::Invalid);
        let r = parse_read(&b("GROUP g c NOACK count 3 STREAMS s >"), true).unwrap();
        assert_eq!(r.group, Some((Bytes::from("g"), Bytes::from("c"))));
        assert!(r.noack);
        assert_eq!(r.keys[0].1, ReadId::New);
        // The first STREAMS ends the options: later words are keys and IDs.
        let r = parse_read(&b("streams count 1"), false).unwrap();
        assert_eq!(
            r.keys,
            vec![(Bytes::from("count"), ReadId::Id(StreamId::new(1, 0)))]
        );
    }

    #[test]
    fn xread_errors() {
        let unbalanced =
            "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.";
        assert_eq!(
            err(parse_read(&b("block 10 streams s k 0"), false)),
            unbalanced
        );
        assert_eq!(
            err(parse_read(&b("group g c streams s k >"), true)),
            unbalanced
        );
        assert_eq!(
            err(parse_read(&b("count x streams s 0"), false)),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err(parse_read(&b("block x streams s 0"), false)),
            "ERR timeout is not an integer or out of range"
        );
        assert_eq!(
            err(parse_read(&b("block -1 streams s 0"), false)),
            "ERR timeout is negative"
        );
        assert_eq!(
            err(parse_read(
                &b("block 9223372036854775807 streams s 0"),
                false
            )),
            "ERR timeout is out of range"
        );
        assert_eq!(
            err(parse_read(&b("foo streams s 0"), false)),
            "ERR syntax error"
        );
        assert_eq!(
            err(parse_read(&b("count 1 foo"), false)),
            "ERR syntax error"
        );
        assert_eq!(
            err(parse_read(&b("count 1 block 1"), false)),
            "ERR syntax error"
        );
        assert_eq!(
            err(parse_read(&b("noack streams s 0"), false)),
            "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead."
        );
        assert_eq!(
            err(parse_read(&b("group g c streams s 0"), false)),
            "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead."
        );
        assert_eq!(
            err(parse_read(&b("count 1 block 1 streams s >"), true)),
            "ERR Missing GROUP option for XREADGROUP"
        );
        assert_eq!(
            err(parse_read(&b("group g streams s >"), true)),
            "ERR syntax error"
        );
    }
}
