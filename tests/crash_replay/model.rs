//! What the clients know: every XADD sent and its fate, the test's own deletions and trims,
//! the consumer group as the client saw it, and the violations found so far.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::resp::{Id, Value};

/// The stream and group every client works on.
pub const KEY: &str = "crash:stream";
pub const GROUP: &str = "g1";

/// Mixes values into a seed (SplitMix64 finaliser), so every random choice derives from one seed.
pub fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The payload writer `w` sends as its `s`-th entry: regenerable, so the model stores no bytes.
pub fn payload(seed: u64, w: usize, s: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(mix(seed, 1 + w as u64, s as u64));
    let len = match rng.gen_range(0..100) {
        0..=79 => rng.gen_range(0..64),
        80..=94 => rng.gen_range(64..1024),
        _ => rng.gen_range(1024..8192),
    };
    let mut p = vec![0u8; len];
    rng.fill(&mut p[..]);
    p
}

/// FNV-1a over writer, sequence and payload: an entry checks itself without the model.
pub fn checksum(w: usize, s: usize, p: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = (w as u64)
        .to_le_bytes()
        .into_iter()
        .chain((s as u64).to_le_bytes())
        .chain(p.iter().copied());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The field/value pairs of writer `w`'s `s`-th XADD, exactly as sent.
pub fn fields(seed: u64, w: usize, s: usize) -> Vec<Vec<u8>> {
    let p = payload(seed, w, s);
    let c = checksum(w, s, &p);
    vec![
        b"w".to_vec(),
        w.to_string().into_bytes(),
        b"s".to_vec(),
        s.to_string().into_bytes(),
        b"p".to_vec(),
        p,
        b"c".to_vec(),
        c.into_bytes(),
    ]
}

/// Decodes an entry's field list into (writer, seq) if it is byte-identical to what was sent.
pub fn decode_entry(seed: u64, fields_value: &Value) -> Result<(usize, usize), String> {
    let items = fields_value
        .as_array()
        .ok_or_else(|| format!("fields are not an array: {fields_value:?}"))?;
    let get = |i: usize| items.get(i).and_then(Value::as_bytes);
    let num = |i: usize| -> Option<usize> { std::str::from_utf8(get(i)?).ok()?.parse().ok() };
    let (Some(w), Some(s)) = (num(1), num(3)) else {
        return Err(format!("no writer/seq fields: {}", short(fields_value)));
    };
    let got: Vec<&[u8]> = items.iter().filter_map(Value::as_bytes).collect();
    let want = fields(seed, w, s);
    if got.len() != items.len() || got != want.iter().map(Vec::as_slice).collect::<Vec<_>>() {
        return Err(format!(
            "entry w={w} s={s} differs from what was sent: {}",
            short(fields_value)
        ));
    }
    Ok((w, s))
}

fn short(v: &Value) -> String {
    let s = format!("{v:?}");
    if s.len() > 300 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(300).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

/// One XADD and everything learnt about it.
#[derive(Clone, Debug, Default)]
pub struct Rec {
    /// The cycle (server lifetime) it was sent in.
    pub cycle: u32,
    /// Its ID, once a reply, a delivery or a verification revealed it.
    pub id: Option<Id>,
    /// The XADD reply arrived.
    pub acked: bool,
    /// The group delivered it (the reply of a mutating group command references it).
    pub seen: bool,
    /// Found by a verification after a restart.
    pub present: bool,
    /// Unacknowledged and absent after a restart: it must never appear later.
    pub lost: bool,
    /// Removed by an acknowledged XDEL (or an XDEL in flight that turned out to apply).
    pub deleted: bool,
    /// An XDEL for it was in flight at the kill.
    pub maybe_deleted: bool,
}

impl Rec {
    /// The server promised this entry exists (its XADD, a delivery or a recovery showed it).
    pub fn durable(&self) -> bool {
        self.acked || self.seen || self.present
    }

    /// Not yet resolved: sent, with no reply before the kill.
    pub fn unresolved(&self) -> bool {
        !self.acked && !self.present && !self.lost
    }
}

/// The consumer group as its client saw it.
#[derive(Default)]
pub struct GroupModel {
    /// Delivered, not acknowledged, believed in the PEL → lower bound of its delivery count.
    pub pending: HashMap<Id, u64>,
    /// XACK answered 1: must never be pending again.
    pub acked: HashSet<Id>,
    /// XACKs sent but not answered (delivery-count floor kept to restore them).
    pub acking: HashMap<Id, u64>,
    /// IDs XAUTOCLAIM reported as deleted (and dropped from the PEL).
    pub dropped: Vec<Id>,
    /// The greatest ID delivered by `XREADGROUP ... >`: the group's last-delivered-id floor.
    pub max_delivered_new: Id,
    /// An XAUTOCLAIM was in flight at the kill (it may have dropped deleted IDs from the PEL).
    pub autoclaim_in_flight: bool,
}

/// Counters printed in the summary line.
#[derive(Default, Debug)]
pub struct Stats {
    pub acked: u64,
    pub recovered: u64,
    pub indeterminate: u64,
    pub indeterminate_survived: u64,
    pub deliveries: u64,
    pub xacks: u64,
    pub xdels: u64,
    pub xtrims: u64,
}

/// Kinds of violation, each counted in the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    LostAcked,
    Phantom,
    IdRegression,
    Group,
    Hole,
    Other,
}

#[derive(Default, Debug)]
pub struct Failures {
    pub lost_acked: u64,
    pub phantoms: u64,
    pub id_regressions: u64,
    pub group_violations: u64,
    pub holes: u64,
    pub other: u64,
    pub messages: Vec<String>,
}

impl Failures {
    pub fn total(&self) -> u64 {
        self.lost_acked
            + self.phantoms
            + self.id_regressions
            + self.group_violations
            + self.holes
            + self.other
    }
}

/// Everything the test knows, shared by the client threads behind one mutex.
pub struct Model {
    pub seed: u64,
    pub cycle: u32,
    pub writers: Vec<Vec<Rec>>,
    pub by_id: HashMap<Id, (usize, usize)>,
    /// Entries known to exist and not being deleted: what XDEL/XTRIM may pick.
    pub live: BTreeSet<Id>,
    pub last_acked: Vec<Option<Id>>,
    /// Greatest ID any reply or verification revealed.
    pub max_known: Id,
    /// `max_known` when the current cycle began: every ID issued in it must exceed this.
    pub floor_at_start: Id,
    /// Every entry below this was removed by an acknowledged XTRIM MINID.
    pub trim_floor: Id,
    /// An XTRIM MINID with this bound was in flight at the kill.
    pub maybe_trim: Option<Id>,
    pub group: GroupModel,
    pub stats: Stats,
    pub failures: Failures,
}

/// At most this many messages are kept; the counters keep counting.
const MAX_MESSAGES: usize = 40;

impl Model {
    pub fn new(seed: u64, writers: usize) -> Model {
        Model {
            seed,
            cycle: 0,
            writers: vec![Vec::new(); writers],
            by_id: HashMap::new(),
            live: BTreeSet::new(),
            last_acked: vec![None; writers],
            max_known: Id::ZERO,
            floor_at_start: Id::ZERO,
            trim_floor: Id::ZERO,
            maybe_trim: None,
            group: GroupModel::default(),
            stats: Stats::default(),
            failures: Failures::default(),
        }
    }

    pub fn fail(&mut self, kind: Kind, msg: impl fmt::Display) {
        let f = &mut self.failures;
        match kind {
            Kind::LostAcked => f.lost_acked += 1,
            Kind::Phantom => f.phantoms += 1,
            Kind::IdRegression => f.id_regressions += 1,
            Kind::Group => f.group_violations += 1,
            Kind::Hole => f.holes += 1,
            Kind::Other => f.other += 1,
        }
        if f.messages.len() < MAX_MESSAGES {
            f.messages
                .push(format!("cycle {}: {kind:?}: {msg}", self.cycle));
        }
    }

    /// Records an ID learnt for writer `w`'s `s`-th entry; a conflicting ID is a violation.
    pub fn learn_id(&mut self, w: usize, s: usize, id: Id, how: &str) {
        let Some(rec) = self.writers.get_mut(w).and_then(|r| r.get_mut(s)) else {
            self.fail(Kind::Phantom, format!("{how}: w={w} s={s} was never sent"));
            return;
        };
        match rec.id {
            Some(old) if old != id => {
                self.fail(
                    Kind::Phantom,
                    format!("{how}: w={w} s={s} has ID {id}, earlier {old}"),
                );
            }
            _ => {
                rec.id = Some(id);
                self.by_id.insert(id, (w, s));
                self.max_known = self.max_known.max(id);
            }
        }
    }

    pub fn rec(&self, w: usize, s: usize) -> Option<&Rec> {
        self.writers.get(w).and_then(|r| r.get(s))
    }

    pub fn rec_mut(&mut self, w: usize, s: usize) -> Option<&mut Rec> {
        self.writers.get_mut(w).and_then(|r| r.get_mut(s))
    }

    /// Whether the server must still hold this entry: durable and not (possibly) removed by us.
    pub fn required(&self, rec: &Rec) -> bool {
        if !rec.durable() || rec.deleted || rec.maybe_deleted || rec.lost {
            return false;
        }
        match rec.id {
            Some(id) => id >= self.trim_floor && self.maybe_trim.iter().all(|&b| id >= b),
            None => true,
        }
    }
}
