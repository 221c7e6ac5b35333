//! The clients of one cycle: pipelined XADD writers, a consumer group reader/acker, and a
//! deleter/trimmer. Any connection error means the server died: the thread records what is in
//! flight as indeterminate (by leaving it unresolved in the model) and returns.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::model::{decode_entry, fields, Kind, Model, Rec, GROUP, KEY};
use super::resp::{cmd, Cmd, Conn, Id, Value};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Shared {
    pub model: Mutex<Model>,
    pub stop: AtomicBool,
    pub port: AtomicU16,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Model> {
        // A panicking client thread already failed the test; keep checking what we can.
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn connect(&self) -> Option<Conn> {
        Conn::connect(self.port.load(Ordering::Relaxed), IO_TIMEOUT).ok()
    }
}

/// Writer `w`: sends batches of 1–8 pipelined XADDs and records each reply.
pub fn writer(shared: &Shared, w: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let Some(mut conn) = shared.connect() else {
        return;
    };
    while !shared.stopped() {
        let batch = rng.gen_range(1..=8usize);
        let (first, data_seed) = {
            let mut m = shared.lock();
            let cycle = m.cycle;
            let recs = &mut m.writers[w];
            let first = recs.len();
            for _ in 0..batch {
                recs.push(Rec {
                    cycle,
                    ..Rec::default()
                });
            }
            m.stats.indeterminate += batch as u64;
            (first, m.seed)
        };
        let cmds: Vec<Cmd> = (first..first + batch)
            .map(|s| {
                let mut c = cmd(["XADD", KEY, "*"]);
                c.extend(fields(data_seed, w, s));
                c
            })
            .collect();
        if conn.send(&cmds).is_err() {
            return;
        }
        for s in first..first + batch {
            let reply = match conn.recv() {
                Ok(r) => r,
                Err(_) => return,
            };
            let mut m = shared.lock();
            let Some(id) = reply.as_id() else {
                m.fail(Kind::Other, format!("XADD w={w} s={s} answered {reply:?}"));
                return;
            };
            m.stats.indeterminate -= 1;
            m.stats.acked += 1;
            if id <= m.floor_at_start {
                let floor = m.floor_at_start;
                m.fail(
                    Kind::IdRegression,
                    format!("XADD w={w} s={s} returned {id}, not above {floor} known before the restart"),
                );
            }
            if let Some(prev) = m.last_acked[w] {
                if id <= prev {
                    m.fail(
                        Kind::IdRegression,
                        format!("XADD w={w} s={s} returned {id} after {prev}"),
                    );
                }
            }
            m.learn_id(w, s, id, "XADD reply");
            if let Some(rec) = m.rec_mut(w, s) {
                rec.acked = true;
            }
            m.last_acked[w] = Some(id);
            if m.required_id(id) {
                m.live.insert(id);
            }
        }
    }
}

impl Model {
    /// An acknowledged ID the deleter may pick (not below a trim the test already sent).
    fn required_id(&self, id: Id) -> bool {
        id >= self.trim_floor && self.maybe_trim.iter().all(|&b| id >= b)
    }
}

/// Parses `[[id, [field, value, ...]], ...]`, checking every entry against what was sent.
pub fn record_entries(m: &mut Model, entries: &[Value], how: &str) -> Vec<Id> {
    let mut ids = Vec::new();
    for e in entries {
        let Some([id, f]) = e.as_array().and_then(|a| <&[Value; 2]>::try_from(a).ok()) else {
            m.fail(Kind::Other, format!("{how}: malformed entry {e:?}"));
            continue;
        };
        let Some(id) = id.as_id() else {
            m.fail(Kind::Other, format!("{how}: malformed ID {id:?}"));
            continue;
        };
        match decode_entry(m.seed, f) {
            Ok((w, s)) => {
                m.learn_id(w, s, id, how);
                // (`deleted` is not checked here: a delivery may be answered before an XDEL
                // that was executed after it, yet be processed after the XDEL's reply.)
                if let Some(rec) = m.rec_mut(w, s) {
                    if rec.lost {
                        m.fail(
                            Kind::Phantom,
                            format!("{how} delivered {id} (w={w} s={s}), absent after an earlier restart"),
                        );
                    } else {
                        rec.seen = true;
                    }
                }
            }
            Err(e) => m.fail(Kind::Phantom, format!("{how} delivered {id}: {e}")),
        }
        ids.push(id);
    }
    ids
}

/// The consumer: XREADGROUP new entries, XACK some, now and then XAUTOCLAIM the pending ones.
pub fn consumer(shared: &Shared, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let Some(mut conn) = shared.connect() else {
        return;
    };
    while !shared.stopped() {
        let count = rng.gen_range(1..=64).to_string();
        let claim = rng.gen_bool(0.2);
        let c = if claim {
            shared.lock().group.autoclaim_in_flight = true;
            cmd(["XAUTOCLAIM", KEY, GROUP, "c2", "0", "0-0", "COUNT", &count])
        } else {
            cmd([
                "XREADGROUP",
                "GROUP",
                GROUP,
                "c1",
                "COUNT",
                &count,
                "STREAMS",
                KEY,
                ">",
            ])
        };
        let Ok(reply) = conn.call(c) else {
            return;
        };
        {
            let mut m = shared.lock();
            if claim {
                record_autoclaim(&mut m, &reply, "XAUTOCLAIM");
                m.group.autoclaim_in_flight = false;
            } else {
                record_readgroup(&mut m, &reply, "XREADGROUP");
            }
        }
        let to_ack: Vec<Id> = {
            let mut m = shared.lock();
            let mut ids: Vec<Id> = m.group.pending.keys().copied().collect();
            ids.sort();
            let ids: Vec<Id> = ids
                .into_iter()
                .filter(|_| rng.gen_bool(0.6))
                .take(64)
                .collect();
            for id in &ids {
                if let Some(floor) = m.group.pending.remove(id) {
                    m.group.acking.insert(*id, floor);
                }
            }
            ids
        };
        if !to_ack.is_empty() {
            let cmds: Vec<Cmd> = to_ack
                .iter()
                .map(|id| cmd(["XACK", KEY, GROUP, &id.to_string()]))
                .collect();
            if conn.send(&cmds).is_err() {
                return;
            }
            for id in to_ack {
                let Ok(reply) = conn.recv() else {
                    return;
                };
                let mut m = shared.lock();
                m.group.acking.remove(&id);
                match reply {
                    Value::Int(1) => {
                        m.group.acked.insert(id);
                        m.stats.xacks += 1;
                    }
                    other => m.fail(
                        Kind::Group,
                        format!("XACK of delivered, unacknowledged {id} answered {other:?}"),
                    ),
                }
            }
        }
        if rng.gen_bool(0.3) {
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..4)));
        }
    }
}

/// XREADGROUP's `[[key, [entries]]]` (or nil): every entry is now pending with one more delivery.
pub fn record_readgroup(m: &mut Model, reply: &Value, how: &str) -> Vec<Id> {
    let entries = match reply {
        Value::Nil => return Vec::new(),
        Value::Array(streams) => match streams.first().and_then(Value::as_array) {
            Some([_, entries]) => entries.as_array().unwrap_or_default().to_vec(),
            None if streams.is_empty() => return Vec::new(),
            _ => {
                m.fail(Kind::Other, format!("{how}: malformed reply {reply:?}"));
                return Vec::new();
            }
        },
        other => {
            m.fail(Kind::Other, format!("{how} answered {other:?}"));
            return Vec::new();
        }
    };
    let ids = record_entries(m, &entries, how);
    for id in &ids {
        *m.group.pending.entry(*id).or_insert(0) += 1;
        m.group.max_delivered_new = m.group.max_delivered_new.max(*id);
        m.stats.deliveries += 1;
    }
    ids
}

/// XAUTOCLAIM's `[cursor, [entries], [deleted ids]]`; returns (cursor, delivered ids).
pub fn record_autoclaim(m: &mut Model, reply: &Value, how: &str) -> (Option<Id>, Vec<Id>) {
    let Some([cursor, entries, deleted]) = reply
        .as_array()
        .and_then(|a| <&[Value; 3]>::try_from(a).ok())
    else {
        m.fail(Kind::Other, format!("{how} answered {reply:?}"));
        return (None, Vec::new());
    };
    let entries = entries.as_array().unwrap_or_default().to_vec();
    let ids = record_entries(m, &entries, how);
    for id in &ids {
        *m.group.pending.entry(*id).or_insert(0) += 1;
        m.stats.deliveries += 1;
    }
    for d in deleted.as_array().unwrap_or_default() {
        match d.as_id() {
            Some(id) => {
                m.group.pending.remove(&id);
                m.group.dropped.push(id);
            }
            None => m.fail(Kind::Other, format!("{how}: malformed deleted ID {d:?}")),
        }
    }
    (cursor.as_id(), ids)
}

/// The deleter: now and then XDEL one acknowledged entry, or XTRIM MINID at an exact bound.
pub fn deleter(shared: &Shared, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let Some(mut conn) = shared.connect() else {
        return;
    };
    let keep = rng.gen_range(50..400usize);
    while !shared.stopped() {
        std::thread::sleep(Duration::from_millis(rng.gen_range(2..30)));
        let trim = {
            let mut m = shared.lock();
            // No in-flight XADD may fall below a trim bound, so that every unacknowledged entry's
            // fate is decided by the crash alone: bound ≤ every writer's last acknowledged ID.
            let cap = m.last_acked.iter().copied().min().flatten();
            let target = m.live.iter().rev().nth(keep).copied();
            match (cap, target) {
                (Some(cap), Some(target)) if m.live.len() > 2 * keep => {
                    let bound = cap.min(target);
                    (bound > m.trim_floor).then(|| {
                        m.maybe_trim = Some(bound);
                        bound
                    })
                }
                _ => None,
            }
        };
        if let Some(bound) = trim {
            let Ok(reply) = conn.call(cmd(["XTRIM", KEY, "MINID", &bound.to_string()])) else {
                return;
            };
            let mut m = shared.lock();
            if !matches!(reply, Value::Int(_)) {
                m.fail(
                    Kind::Other,
                    format!("XTRIM MINID {bound} answered {reply:?}"),
                );
            }
            m.stats.xtrims += 1;
            m.trim_floor = m.trim_floor.max(bound);
            m.maybe_trim = None;
            let gone: Vec<Id> = m.live.range(..bound).copied().collect();
            for id in gone {
                m.live.remove(&id);
            }
            continue;
        }
        if !rng.gen_bool(0.5) {
            continue;
        }
        let victim = {
            let mut m = shared.lock();
            if m.live.is_empty() {
                continue;
            }
            let n = rng.gen_range(0..m.live.len());
            let Some(id) = m.live.iter().nth(n).copied() else {
                continue;
            };
            m.live.remove(&id);
            let Some(&(w, s)) = m.by_id.get(&id) else {
                continue;
            };
            if let Some(rec) = m.rec_mut(w, s) {
                rec.maybe_deleted = true;
            }
            (id, w, s)
        };
        let (id, w, s) = victim;
        let Ok(reply) = conn.call(cmd(["XDEL", KEY, &id.to_string()])) else {
            return;
        };
        let mut m = shared.lock();
        if let Some(rec) = m.rec_mut(w, s) {
            rec.maybe_deleted = false;
            rec.deleted = true;
        }
        m.stats.xdels += 1;
        if reply != Value::Int(1) {
            m.fail(
                Kind::LostAcked,
                format!(
                    "XDEL of acknowledged {id} (w={w} s={s}) answered {reply:?}: it was missing"
                ),
            );
        }
    }
}
