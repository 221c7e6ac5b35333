//! Group checkpoint: a compact snapshot of a whole [`GroupSet`], written atomically (temp file,
//! fsync, rename, fsync dir) so it is either the old or the new one, never torn.
//!
//! Layout: `magic "SGC1" (4) | body length (8) | CRC32 (4) | body`, the CRC covering magic,
//! length and body. Body: the epoch (which journal continues it), then per group its name,
//! last-delivered ID (and whether it was set explicitly), entries-read, consumer slots (name,
//! seen time, active time) and PEL entries (ID delta, owner slot, delivery-time delta, delivery
//! count) — about 5 bytes per pending entry.

use std::collections::{BTreeMap, BTreeSet};

use super::codec::{Decoded, Malformed, Reader, Writer};
use super::state::{Consumer, Consumers, Group, GroupSet, Nack};
use crate::StreamId;

pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"SGC1");
const HEADER_LEN: usize = 16;

fn crc(header: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header);
    h.update(body);
    h.finalize()
}

/// Zigzag so that small negative time deltas stay small.
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn encode(set: &GroupSet, epoch: u64) -> Vec<u8> {
    let mut w = Writer::default();
    w.varint(epoch);
    w.varint(set.groups.len() as u64);
    for (name, g) in &set.groups {
        w.bytes(name);
        w.id(g.last_id);
        w.u8(u8::from(g.ahead_of_stream));
        w.opt(g.entries_read);
        // Slots as they are (free ones included), so PEL owners keep their slot numbers.
        w.varint(g.consumers.slots().len() as u64);
        for slot in g.consumers.slots() {
            match slot {
                None => w.u8(0),
                Some(c) => {
                    w.u8(1);
                    w.bytes(&c.name);
                    w.varint(c.seen_time);
                    w.opt(c.active_time);
                }
            }
        }
        w.varint(g.pel.len() as u64);
        let mut prev = StreamId::MIN;
        let mut prev_time: u64 = 0;
        for (id, n) in &g.pel {
            w.id_delta(prev, *id);
            w.varint(u64::from(n.consumer));
            w.varint(zigzag(n.delivery_time.wrapping_sub(prev_time) as i64));
            w.varint(n.delivery_count);
            prev = *id;
            prev_time = n.delivery_time;
        }
    }
    let body = w.buf;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let c = crc(&out, &body);
    out.extend_from_slice(&c.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes a checkpoint file; `Err` means it is damaged (a checkpoint is never torn).
pub(crate) fn decode(buf: &[u8]) -> Decoded<(GroupSet, u64)> {
    let header = buf.get(..HEADER_LEN).ok_or(Malformed)?;
    let mut magic = [0u8; 4];
    magic.copy_from_slice(&header[..4]);
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[4..12]);
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&header[12..16]);
    if u32::from_le_bytes(magic) != MAGIC {
        return Err(Malformed);
    }
    let len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| Malformed)?;
    let body = buf.get(HEADER_LEN..).ok_or(Malformed)?;
    if body.len() != len || crc(&header[..12], body) != u32::from_le_bytes(stored) {
        return Err(Malformed);
    }
    let mut r = Reader::new(body);
    let epoch = r.varint()?;
    let ngroups = r.count(4)?;
    let mut set = GroupSet::default();
    for _ in 0..ngroups {
        let name = r.bytes()?;
        let last_id = r.id()?;
        let ahead_of_stream = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(Malformed),
        };
        let entries_read = r.opt()?;
        let nslots = r.count(1)?;
        let mut slots = Vec::with_capacity(nslots);
        let mut names = BTreeSet::new();
        for _ in 0..nslots {
            match r.u8()? {
                0 => slots.push(None),
                1 => {
                    let name = r.bytes()?;
                    if !names.insert(name.clone()) {
                        return Err(Malformed);
                    }
                    slots.push(Some(Consumer {
                        name,
                        pel: BTreeSet::new(),
                        seen_time: r.varint()?,
                        active_time: r.opt()?,
                    }));
                }
                _ => return Err(Malformed),
            }
        }
        let npel = r.count(4)?;
        let mut pel = BTreeMap::new();
        let mut prev = StreamId::MIN;
        let mut prev_time: u64 = 0;
        for _ in 0..npel {
            let id = r.id_delta(prev)?;
            if !pel.is_empty() && id <= prev {
                return Err(Malformed);
            }
            let owner = u32::try_from(r.varint()?).map_err(|_| Malformed)?;
            let time = prev_time.wrapping_add(unzigzag(r.varint()?) as u64);
            let count = r.varint()?;
            let Some(Some(c)) = slots.get_mut(owner as usize) else {
                return Err(Malformed);
            };
            c.pel.insert(id);
            pel.insert(
                id,
                Nack {
                    consumer: owner,
                    delivery_time: time,
                    delivery_count: count,
                },
            );
            prev = id;
            prev_time = time;
        }
        set.groups.insert(
            name,
            Group {
                last_id,
                ahead_of_stream,
                entries_read,
                pel,
                consumers: Consumers::from_slots(slots),
            },
        );
    }
    if !r.is_empty() {
        return Err(Malformed);
    }
    Ok((set, epoch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::state::Change;
    use bytes::Bytes;

    #[test]
    fn checkpoint_round_trips_and_detects_damage() {
        let mut set = GroupSet::default();
        let g = Bytes::from_static(b"g");
        set.apply(&Change::CreateGroup {
            group: g.clone(),
            last_id: StreamId::MIN,
            entries_read: Some(0),
            ahead: false,
        });
        for (i, c) in ["a", "b"].iter().enumerate() {
            set.apply(&Change::Deliver {
                group: g.clone(),
                consumer: Bytes::copy_from_slice(c.as_bytes()),
                now: 1000 - i as u64 * 10,
                last_id: StreamId::new(9, i as u64),
                entries_read: None,
                ids: vec![
                    StreamId::new(i as u64 + 1, 0),
                    StreamId::new(i as u64 + 1, 7),
                ],
            });
        }
        set.apply(&Change::CreateConsumer {
            group: g,
            consumer: Bytes::from_static(b"idle"),
            now: 5,
        });
        let bytes = encode(&set, 3);
        let (back, epoch) = decode(&bytes).unwrap();
        assert_eq!(epoch, 3);
        assert_eq!(back, set);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(decode(&b).is_err(), "flip at {i}");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
