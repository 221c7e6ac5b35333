//! The checks run after every restart, and the final drain of the consumer group.

use std::collections::{HashMap, HashSet};
use std::io;

use super::model::{decode_entry, Kind, Model, GROUP, KEY};
use super::resp::{cmd, Cmd, Conn, Id, Value};
use super::workload::{record_autoclaim, record_readgroup};

/// Page size for XRANGE / XPENDING / drain reads.
const PAGE: usize = 1000;
/// Upper bound on pages read, so a server that never ends a range cannot hang the test.
const MAX_PAGES: usize = 100_000;

fn call(conn: &mut Conn, c: Cmd) -> io::Result<Value> {
    let name = String::from_utf8_lossy(c.first().map_or(&[][..], Vec::as_slice)).into_owned();
    match conn.call(c)? {
        Value::Error(e) => Err(io::Error::other(format!("{name} answered -{e}"))),
        v => Ok(v),
    }
}

/// The whole stream, in XRANGE order.
fn read_stream(conn: &mut Conn) -> io::Result<Vec<(Id, Value)>> {
    let mut out = Vec::new();
    let mut start = String::from("-");
    for _ in 0..MAX_PAGES {
        let reply = call(
            conn,
            cmd(["XRANGE", KEY, &start, "+", "COUNT", &PAGE.to_string()]),
        )?;
        let page = reply.as_array().unwrap_or_default();
        for e in page {
            match e.as_array() {
                Some([id, fields]) => {
                    let id = id
                        .as_id()
                        .ok_or_else(|| io::Error::other(format!("XRANGE: bad ID {id:?}")))?;
                    out.push((id, fields.clone()));
                }
                _ => return Err(io::Error::other(format!("XRANGE: bad entry {e:?}"))),
            }
        }
        match out.last() {
            Some((last, _)) if page.len() == PAGE => start = last.next().to_string(),
            _ => return Ok(out),
        }
    }
    Err(io::Error::other("XRANGE never ended"))
}

/// The group's PEL: (ID, delivery count).
fn read_pel(conn: &mut Conn) -> io::Result<Vec<(Id, u64)>> {
    let mut out = Vec::new();
    let mut start = String::from("-");
    for _ in 0..MAX_PAGES {
        let reply = call(
            conn,
            cmd(["XPENDING", KEY, GROUP, &start, "+", &PAGE.to_string()]),
        )?;
        let page = reply.as_array().unwrap_or_default();
        for p in page {
            match p.as_array() {
                Some([id, _consumer, _idle, count]) => {
                    let (Some(id), Some(count)) = (id.as_id(), count.as_int()) else {
                        return Err(io::Error::other(format!("XPENDING: bad row {p:?}")));
                    };
                    out.push((id, u64::try_from(count).unwrap_or(0)));
                }
                _ => return Err(io::Error::other(format!("XPENDING: bad row {p:?}"))),
            }
        }
        match out.last() {
            Some((last, _)) if page.len() == PAGE => start = last.next().to_string(),
            _ => return Ok(out),
        }
    }
    Err(io::Error::other("XPENDING never ended"))
}

fn id_field(v: &Value, name: &str, what: &str) -> io::Result<Id> {
    v.field(name)
        .and_then(Value::as_id)
        .ok_or_else(|| io::Error::other(format!("{what}: no {name} in {v:?}")))
}

/// Everything read back from the server after a restart.
struct Snapshot {
    entries: Vec<(Id, Value)>,
    last_generated: Id,
    length: i64,
    last_delivered: Id,
    group_pending: i64,
    pel: Vec<(Id, u64)>,
}

fn snapshot(conn: &mut Conn) -> io::Result<Snapshot> {
    let entries = read_stream(conn)?;
    let info = call(conn, cmd(["XINFO", "STREAM", KEY]))?;
    let last_generated = id_field(&info, "last-generated-id", "XINFO STREAM")?;
    let length = info
        .field("length")
        .and_then(Value::as_int)
        .ok_or_else(|| io::Error::other(format!("XINFO STREAM: no length in {info:?}")))?;
    let groups = call(conn, cmd(["XINFO", "GROUPS", KEY]))?;
    let group = groups
        .as_array()
        .unwrap_or_default()
        .iter()
        .find(|g| g.field("name").and_then(Value::as_bytes) == Some(GROUP.as_bytes()))
        .ok_or_else(|| io::Error::other(format!("XINFO GROUPS: no group {GROUP}: {groups:?}")))?;
    let last_delivered = id_field(group, "last-delivered-id", "XINFO GROUPS")?;
    let group_pending = group
        .field("pending")
        .and_then(Value::as_int)
        .ok_or_else(|| io::Error::other(format!("XINFO GROUPS: no pending in {group:?}")))?;
    let pel = read_pel(conn)?;
    Ok(Snapshot {
        entries,
        last_generated,
        length,
        last_delivered,
        group_pending,
        pel,
    })
}

/// Checks the recovered state against the model, then resolves every indeterminate outcome to
/// what the server now holds, so later cycles check against exactly that.
pub fn after_restart(conn: &mut Conn, m: &mut Model, expect_empty_pel: bool) -> io::Result<()> {
    let snap = snapshot(conn)?;
    let present = check_stream(m, &snap);
    check_group(m, &snap, &present, expect_empty_pel);
    resolve(m, &present);
    m.floor_at_start = m.max_known.max(snap.last_generated);
    Ok(())
}

fn check_stream(m: &mut Model, snap: &Snapshot) -> HashMap<(usize, usize), Id> {
    let mut present: HashMap<(usize, usize), Id> = HashMap::new();
    let mut prev: Option<Id> = None;
    for (id, fields) in &snap.entries {
        let id = *id;
        if prev.is_some_and(|p| p >= id) {
            m.fail(
                Kind::IdRegression,
                format!("XRANGE returned {id} after {prev:?}"),
            );
        }
        prev = Some(id);
        let (w, s) = match decode_entry(m.seed, fields) {
            Ok(ws) => ws,
            Err(e) => {
                m.fail(Kind::Phantom, format!("entry {id}: {e}"));
                continue;
            }
        };
        let Some(rec) = m.rec(w, s).cloned() else {
            m.fail(
                Kind::Phantom,
                format!("entry {id}: w={w} s={s} was never sent"),
            );
            continue;
        };
        if present.insert((w, s), id).is_some() {
            m.fail(
                Kind::Phantom,
                format!("entry {id}: w={w} s={s} appears twice"),
            );
        }
        if rec.lost {
            m.fail(
                Kind::Phantom,
                format!("entry {id}: w={w} s={s} was absent after an earlier restart"),
            );
        }
        if rec.deleted {
            m.fail(
                Kind::Phantom,
                format!("entry {id}: w={w} s={s} was deleted by an acknowledged XDEL"),
            );
        }
        if id < m.trim_floor {
            let floor = m.trim_floor;
            m.fail(
                Kind::Phantom,
                format!("entry {id}: w={w} s={s} is below acknowledged XTRIM MINID {floor}"),
            );
        }
        m.learn_id(w, s, id, "XRANGE after restart");
    }

    let mut missing = Vec::new();
    for (w, recs) in m.writers.iter().enumerate() {
        for (s, rec) in recs.iter().enumerate() {
            if m.required(rec) && !present.contains_key(&(w, s)) {
                let why = if rec.acked {
                    "acknowledged by XADD"
                } else if rec.seen {
                    "delivered to the group"
                } else {
                    "recovered after an earlier restart"
                };
                missing.push(format!(
                    "w={w} s={s} id={:?} (sent in cycle {}, {why}) is missing",
                    rec.id, rec.cycle
                ));
            }
        }
    }
    for msg in missing {
        m.fail(Kind::LostAcked, msg);
    }

    if let Some(bound) = m.maybe_trim {
        let floor = m.trim_floor;
        let in_range = |id: Id| id >= floor && id < bound;
        let applied = !present.values().any(|id| in_range(*id));
        if !applied {
            let mut partial = Vec::new();
            for (w, recs) in m.writers.iter().enumerate() {
                for (s, rec) in recs.iter().enumerate() {
                    let durable_in_range = rec.durable()
                        && !rec.deleted
                        && !rec.maybe_deleted
                        && rec.id.is_some_and(in_range);
                    if durable_in_range && !present.contains_key(&(w, s)) {
                        partial.push(format!(
                            "XTRIM MINID {bound} in flight at the kill half-applied: w={w} s={s} {:?} gone",
                            rec.id
                        ));
                    }
                }
            }
            for msg in partial {
                m.fail(Kind::LostAcked, msg);
            }
        } else {
            m.trim_floor = bound;
        }
        m.maybe_trim = None;
    }

    let mut regressions = Vec::new();
    let mut holes = Vec::new();
    for (w, recs) in m.writers.iter().enumerate() {
        let mut last: Option<(usize, Id)> = None;
        let mut first_absent: Option<usize> = None;
        for (s, rec) in recs.iter().enumerate() {
            if let Some(&id) = present.get(&(w, s)) {
                if let Some((ps, pid)) = last {
                    if pid >= id {
                        regressions
                            .push(format!("w={w}: s={s} has {id}, not above s={ps}'s {pid}"));
                    }
                }
                last = Some((s, id));
                if let Some(a) = first_absent {
                    if rec.unresolved() {
                        holes.push(format!(
                            "w={w}: unacknowledged s={s} ({id}) survived but s={a} before it did not"
                        ));
                    }
                }
            } else if rec.unresolved() && first_absent.is_none() {
                first_absent = Some(s);
            }
        }
    }
    for msg in regressions {
        m.fail(Kind::IdRegression, msg);
    }
    for msg in holes {
        m.fail(Kind::Hole, msg);
    }

    let max_present = snap.entries.last().map(|(id, _)| *id).unwrap_or(Id::ZERO);
    if snap.last_generated < m.max_known || snap.last_generated < max_present {
        let known = m.max_known;
        m.fail(
            Kind::IdRegression,
            format!(
                "last-generated-id {} is below {known}, an ID already returned or stored",
                snap.last_generated
            ),
        );
    }
    if usize::try_from(snap.length).ok() != Some(snap.entries.len()) {
        m.fail(
            Kind::Other,
            format!(
                "XINFO STREAM length {} but XRANGE returned {} entries",
                snap.length,
                snap.entries.len()
            ),
        );
    }
    present
}

fn check_group(
    m: &mut Model,
    snap: &Snapshot,
    present: &HashMap<(usize, usize), Id>,
    expect_empty_pel: bool,
) {
    let d = snap.last_delivered;
    if d > snap.last_generated {
        m.fail(
            Kind::Group,
            format!(
                "last-delivered-id {d} > last-generated-id {}",
                snap.last_generated
            ),
        );
    }
    if d < m.group.max_delivered_new {
        let max = m.group.max_delivered_new;
        m.fail(
            Kind::Group,
            format!("last-delivered-id {d} went back below {max}, already delivered"),
        );
    }
    if usize::try_from(snap.group_pending).ok() != Some(snap.pel.len()) {
        m.fail(
            Kind::Group,
            format!(
                "XINFO GROUPS pending={} but XPENDING lists {}",
                snap.group_pending,
                snap.pel.len()
            ),
        );
    }
    if expect_empty_pel && !snap.pel.is_empty() {
        m.fail(
            Kind::Group,
            format!(
                "PEL holds {} entries after everything was acknowledged",
                snap.pel.len()
            ),
        );
    }
    let present_ids: HashSet<Id> = present.values().copied().collect();
    let pel: HashMap<Id, u64> = snap.pel.iter().copied().collect();
    for &(id, count) in &snap.pel {
        if id > d {
            m.fail(
                Kind::Group,
                format!("PEL entry {id} > last-delivered-id {d}"),
            );
        }
        if m.group.acked.contains(&id) {
            m.fail(Kind::Group, format!("PEL holds {id}, acknowledged by XACK"));
        }
        let floor = m
            .group
            .pending
            .get(&id)
            .or_else(|| m.group.acking.get(&id))
            .copied();
        match floor {
            Some(f) if count < f => m.fail(
                Kind::Group,
                format!("delivery count of {id} went down: {count} < {f}"),
            ),
            Some(_) => {}
            None if !m.by_id.contains_key(&id) && !present_ids.contains(&id) => m.fail(
                Kind::Group,
                format!("PEL holds {id}, an ID no XADD ever produced"),
            ),
            None => {
                m.group.pending.insert(id, count);
            }
        }
    }
    let mut missing = Vec::new();
    for (&id, _) in m.group.pending.iter() {
        if pel.contains_key(&id) {
            continue;
        }
        let removed = m
            .by_id
            .get(&id)
            .and_then(|&(w, s)| m.rec(w, s))
            .is_some_and(|r| {
                r.deleted
                    || r.maybe_deleted
                    || id < m.trim_floor
                    || m.maybe_trim.is_some_and(|b| id < b)
            });
        if !(m.group.autoclaim_in_flight && removed) {
            missing.push(id);
        }
    }
    for id in missing {
        m.group.pending.remove(&id);
        m.fail(
            Kind::Group,
            format!("{id} was delivered and never acknowledged, but is not in the PEL"),
        );
    }
    m.group.pending.retain(|id, _| pel.contains_key(id));
    for (id, floor) in std::mem::take(&mut m.group.acking) {
        if pel.contains_key(&id) {
            m.group.pending.insert(id, floor);
        } else {
            m.group.acked.insert(id);
        }
    }
    for (id, f) in m.group.pending.iter_mut() {
        if let Some(&c) = pel.get(id) {
            *f = (*f).max(c);
        }
    }
    let dropped = std::mem::take(&mut m.group.dropped);
    for id in dropped {
        if present_ids.contains(&id) {
            m.fail(
                Kind::Group,
                format!("XAUTOCLAIM reported {id} deleted, but the stream holds it"),
            );
        }
    }
    m.group.autoclaim_in_flight = false;
}

fn resolve(m: &mut Model, present: &HashMap<(usize, usize), Id>) {
    let floor = m.trim_floor;
    let mut live = Vec::new();
    let mut recovered = 0;
    let mut survived = 0;
    for (w, recs) in m.writers.iter_mut().enumerate() {
        for (s, rec) in recs.iter_mut().enumerate() {
            match present.get(&(w, s)) {
                Some(&id) => {
                    if rec.unresolved() {
                        survived += 1;
                    }
                    if !rec.present {
                        recovered += 1;
                    }
                    rec.present = true;
                    rec.maybe_deleted = false;
                    if id >= floor {
                        live.push(id);
                    }
                }
                None => {
                    if rec.maybe_deleted {
                        rec.maybe_deleted = false;
                        rec.deleted = true;
                    }
                    if rec.unresolved() || (rec.durable() && !rec.deleted) {
                        rec.lost = true;
                    }
                }
            }
        }
    }
    m.stats.recovered += recovered;
    m.stats.indeterminate_survived += survived;
    m.live = live.into_iter().collect();
}

/// Drains the group: XREADGROUP until nothing is new, XAUTOCLAIM every pending entry, then
/// checks that every surviving entry was delivered (or acknowledged) and acknowledges them all.
pub fn drain(conn: &mut Conn, m: &mut Model) -> io::Result<()> {
    let mut delivered: HashSet<Id> = HashSet::new();
    for _ in 0..MAX_PAGES {
        let reply = call(
            conn,
            cmd([
                "XREADGROUP",
                "GROUP",
                GROUP,
                "c1",
                "COUNT",
                &PAGE.to_string(),
                "STREAMS",
                KEY,
                ">",
            ]),
        )?;
        let ids = record_readgroup(m, &reply, "final XREADGROUP");
        if ids.is_empty() {
            break;
        }
        delivered.extend(ids);
    }
    let mut cursor = Id::ZERO;
    for _ in 0..MAX_PAGES {
        let reply = call(
            conn,
            cmd([
                "XAUTOCLAIM",
                KEY,
                GROUP,
                "c2",
                "0",
                &cursor.to_string(),
                "COUNT",
                &PAGE.to_string(),
            ]),
        )?;
        let (next, ids) = record_autoclaim(m, &reply, "final XAUTOCLAIM");
        delivered.extend(ids);
        match next {
            Some(next) if next != Id::ZERO => cursor = next,
            _ => break,
        }
    }
    let entries = read_stream(conn)?;
    for (id, _) in &entries {
        if !delivered.contains(id) && !m.group.acked.contains(id) {
            m.fail(
                Kind::Group,
                format!("final drain never delivered {id}, which was never acknowledged"),
            );
        }
    }
    let mut ids: Vec<Id> = delivered.into_iter().collect();
    ids.sort();
    for chunk in ids.chunks(PAGE) {
        let cmds: Vec<Cmd> = chunk
            .iter()
            .map(|id| cmd(["XACK", KEY, GROUP, &id.to_string()]))
            .collect();
        conn.send(&cmds)?;
        for id in chunk {
            let reply = conn.recv()?;
            m.group.pending.remove(id);
            if reply == Value::Int(1) {
                m.group.acked.insert(*id);
                m.stats.xacks += 1;
            } else {
                m.fail(
                    Kind::Group,
                    format!("final XACK of drained {id} answered {reply:?}"),
                );
            }
        }
    }
    let summary = call(conn, cmd(["XPENDING", KEY, GROUP]))?;
    let count = summary
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_int);
    if count != Some(0) {
        m.fail(
            Kind::Group,
            format!("after the drain XPENDING says {summary:?}"),
        );
    }
    Ok(())
}
