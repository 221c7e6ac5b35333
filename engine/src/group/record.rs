//! Group journal records: `magic (4) | body length (4) | CRC32 (4) | body`, all little-endian,
//! the CRC covering magic, length and body. The body is one tag byte and the fields of a
//! [`Change`] (or the journal header). A non-zero magic and a refused zero length mean an
//! all-zero page never decodes as a record.

use super::codec::{Decoded, Malformed, Reader, Writer};
use super::state::Change;

/// "SGJ1" — Sluice group journal, version 1.
pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"SGJ1");
pub(crate) const HEADER_LEN: usize = 12;
/// Largest record body accepted (a delivery batch of ~a million IDs fits).
pub(crate) const MAX_BODY: usize = 64 << 20;

const TAG_HEADER: u8 = 1;
const TAG_CREATE_GROUP: u8 = 2;
const TAG_SET_ID: u8 = 3;
const TAG_DESTROY_GROUP: u8 = 4;
const TAG_CREATE_CONSUMER: u8 = 5;
const TAG_DELETE_CONSUMER: u8 = 6;
const TAG_DELIVER: u8 = 7;
const TAG_ACK: u8 = 8;
const TAG_CLAIM: u8 = 9;

/// A decoded journal record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// First record of every journal file: the checkpoint epoch the journal continues.
    Header {
        epoch: u64,
    },
    Change(Change),
}

fn crc(magic: [u8; 4], len: [u8; 4], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&magic);
    h.update(&len);
    h.update(body);
    h.finalize()
}

/// Appends one framed record to `out`.
pub(crate) fn encode(record: &Record, out: &mut Vec<u8>) {
    let mut w = Writer::default();
    match record {
        Record::Header { epoch } => {
            w.u8(TAG_HEADER);
            w.varint(*epoch);
        }
        Record::Change(c) => write_change(c, &mut w),
    }
    frame(&w.buf, out);
}

/// Appends one framed change record to `out`.
pub(crate) fn encode_change(change: &Change, out: &mut Vec<u8>) {
    let mut w = Writer::default();
    write_change(change, &mut w);
    frame(&w.buf, out);
}

pub(crate) fn frame(body: &[u8], out: &mut Vec<u8>) {
    let magic = MAGIC.to_le_bytes();
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&magic);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc(magic, len, body).to_le_bytes());
    out.extend_from_slice(body);
}

fn write_change(c: &Change, w: &mut Writer) {
    match c {
        Change::CreateGroup {
            group,
            last_id,
            entries_read,
            ahead,
        } => {
            w.u8(TAG_CREATE_GROUP);
            w.bytes(group);
            w.id(*last_id);
            w.opt(*entries_read);
            w.u8(u8::from(*ahead));
        }
        Change::SetId {
            group,
            last_id,
            entries_read,
            ahead,
        } => {
            w.u8(TAG_SET_ID);
            w.bytes(group);
            w.id(*last_id);
            w.opt(*entries_read);
            w.u8(u8::from(*ahead));
        }
        Change::DestroyGroup { group } => {
            w.u8(TAG_DESTROY_GROUP);
            w.bytes(group);
        }
        Change::CreateConsumer {
            group,
            consumer,
            now,
        } => {
            w.u8(TAG_CREATE_CONSUMER);
            w.bytes(group);
            w.bytes(consumer);
            w.varint(*now);
        }
        Change::DeleteConsumer { group, consumer } => {
            w.u8(TAG_DELETE_CONSUMER);
            w.bytes(group);
            w.bytes(consumer);
        }
        Change::Deliver {
            group,
            consumer,
            now,
            last_id,
            entries_read,
            ids,
        } => {
            w.u8(TAG_DELIVER);
            w.bytes(group);
            w.bytes(consumer);
            w.varint(*now);
            w.id(*last_id);
            w.opt(*entries_read);
            w.ids(ids);
        }
        Change::Ack { group, ids } => {
            w.u8(TAG_ACK);
            w.bytes(group);
            w.ids(ids);
        }
        Change::Claim {
            group,
            consumer,
            now,
            active,
            claimed,
            removed,
            last_id,
        } => {
            w.u8(TAG_CLAIM);
            w.bytes(group);
            w.bytes(consumer);
            w.varint(*now);
            w.u8(u8::from(*active));
            w.varint(claimed.len() as u64);
            let mut prev = crate::StreamId::MIN;
            for (id, time, count) in claimed {
                w.id_delta(prev, *id);
                w.varint(*time);
                w.varint(*count);
                prev = *id;
            }
            w.ids(removed);
            match last_id {
                None => w.u8(0),
                Some((id, ahead)) => {
                    w.u8(1 + u8::from(*ahead));
                    w.id(*id);
                }
            }
        }
    }
}

fn flag(r: &mut Reader<'_>) -> Decoded<bool> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Malformed),
    }
}

fn decode_body(body: &[u8]) -> Decoded<Record> {
    let mut r = Reader::new(body);
    let record = match r.u8()? {
        TAG_HEADER => Record::Header { epoch: r.varint()? },
        TAG_CREATE_GROUP => Record::Change(Change::CreateGroup {
            group: r.bytes()?,
            last_id: r.id()?,
            entries_read: r.opt()?,
            ahead: flag(&mut r)?,
        }),
        TAG_SET_ID => Record::Change(Change::SetId {
            group: r.bytes()?,
            last_id: r.id()?,
            entries_read: r.opt()?,
            ahead: flag(&mut r)?,
        }),
        TAG_DESTROY_GROUP => Record::Change(Change::DestroyGroup { group: r.bytes()? }),
        TAG_CREATE_CONSUMER => Record::Change(Change::CreateConsumer {
            group: r.bytes()?,
            consumer: r.bytes()?,
            now: r.varint()?,
        }),
        TAG_DELETE_CONSUMER => Record::Change(Change::DeleteConsumer {
            group: r.bytes()?,
            consumer: r.bytes()?,
        }),
        TAG_DELIVER => Record::Change(Change::Deliver {
            group: r.bytes()?,
            consumer: r.bytes()?,
            now: r.varint()?,
            last_id: r.id()?,
            entries_read: r.opt()?,
            ids: r.ids()?,
        }),
        TAG_ACK => Record::Change(Change::Ack {
            group: r.bytes()?,
            ids: r.ids()?,
        }),
        TAG_CLAIM => {
            let group = r.bytes()?;
            let consumer = r.bytes()?;
            let now = r.varint()?;
            let active = flag(&mut r)?;
            let n = r.count(4)?;
            let mut claimed = Vec::with_capacity(n);
            let mut prev = crate::StreamId::MIN;
            for _ in 0..n {
                prev = r.id_delta(prev)?;
                claimed.push((prev, r.varint()?, r.varint()?));
            }
            let removed = r.ids()?;
            let last_id = match r.u8()? {
                0 => None,
                1 => Some((r.id()?, false)),
                2 => Some((r.id()?, true)),
                _ => return Err(Malformed),
            };
            Record::Change(Change::Claim {
                group,
                consumer,
                now,
                active,
                claimed,
                removed,
                last_id,
            })
        }
        _ => return Err(Malformed),
    };
    if !r.is_empty() {
        return Err(Malformed);
    }
    Ok(record)
}

/// Outcome of decoding the record at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decode {
    /// A valid record and its framed length.
    Record(Record, usize),
    /// Not a valid record here (torn, zeroed, CRC mismatch or malformed body).
    Invalid,
}

/// Decodes the framed record at the start of `buf`.
pub(crate) fn decode(buf: &[u8]) -> Decode {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Decode::Invalid;
    };
    let word = |i: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&header[i..i + 4]);
        b
    };
    let (magic, len, stored_crc) = (word(0), word(4), u32::from_le_bytes(word(8)));
    if u32::from_le_bytes(magic) != MAGIC {
        return Decode::Invalid;
    }
    let body_len = u32::from_le_bytes(len) as usize;
    if body_len == 0 || body_len > MAX_BODY {
        return Decode::Invalid;
    }
    let Some(body) = buf.get(HEADER_LEN..HEADER_LEN + body_len) else {
        return Decode::Invalid;
    };
    if crc(magic, len, body) != stored_crc {
        return Decode::Invalid;
    }
    match decode_body(body) {
        Ok(record) => Decode::Record(record, HEADER_LEN + body_len),
        Err(Malformed) => Decode::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StreamId;
    use bytes::Bytes;

    fn samples() -> Vec<Record> {
        let g = Bytes::from_static(b"g");
        let c = Bytes::from_static(b"alice");
        vec![
            Record::Header { epoch: 7 },
            Record::Change(Change::CreateGroup {
                group: g.clone(),
                last_id: StreamId::new(1, 2),
                entries_read: None,
                ahead: false,
            }),
            Record::Change(Change::SetId {
                group: g.clone(),
                last_id: StreamId::MAX,
                entries_read: Some(3),
                ahead: true,
            }),
            Record::Change(Change::DestroyGroup { group: g.clone() }),
            Record::Change(Change::CreateConsumer {
                group: g.clone(),
                consumer: c.clone(),
                now: 99,
            }),
            Record::Change(Change::DeleteConsumer {
                group: g.clone(),
                consumer: c.clone(),
            }),
            Record::Change(Change::Deliver {
                group: g.clone(),
                consumer: c.clone(),
                now: 5,
                last_id: StreamId::new(9, 0),
                entries_read: Some(9),
                ids: vec![
                    StreamId::new(1, 0),
                    StreamId::new(1, 5),
                    StreamId::new(9, 0),
                ],
            }),
            Record::Change(Change::Ack {
                group: g.clone(),
                ids: vec![StreamId::new(1, 0)],
            }),
            Record::Change(Change::Claim {
                group: g,
                consumer: c,
                now: 42,
                active: true,
                claimed: vec![(StreamId::new(1, 5), 40, 3), (StreamId::new(2, 0), 41, 1)],
                removed: vec![StreamId::new(1, 0)],
                last_id: Some((StreamId::new(3, 3), true)),
            }),
        ]
    }

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        let recs = samples();
        for r in &recs {
            encode(r, &mut buf);
        }
        let mut at = 0;
        for r in &recs {
            match decode(&buf[at..]) {
                Decode::Record(got, len) => {
                    assert_eq!(&got, r);
                    at += len;
                }
                Decode::Invalid => panic!("record at {at} did not decode"),
            }
        }
        assert_eq!(at, buf.len());
    }

    #[test]
    fn damaged_records_are_invalid() {
        let mut buf = Vec::new();
        encode(&samples()[6], &mut buf);
        assert_eq!(decode(&[0u8; 64]), Decode::Invalid);
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut]), Decode::Invalid, "cut at {cut}");
        }
        for i in 0..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x40;
            assert_eq!(decode(&b), Decode::Invalid, "flip at {i}");
        }
    }
}
