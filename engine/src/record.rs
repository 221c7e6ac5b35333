//! The on-disk record: a 16-byte header then a body.
//!
//! ```text
//! 0..4   magic  b"SLr1"              (non-zero, so an all-zero page never parses)
//! 4      kind   1..=6                (see `Kind`)
//! 5      state  0x0F live / 0xF0 deleted   (NOT covered by the CRC: rewritten in place by XDEL)
//! 6..8   reserved, zero
//! 8..12  body length, u32 LE, 1..=MAX_BODY (length 0 never validates)
//! 12..16 CRC32 (crc32fast) of bytes 0..5, 6..12 and the body
//! ```
//! All integers little-endian. Decoders never index (no panics on hostile bytes).

use crate::id::StreamId;

pub const MAGIC: [u8; 4] = *b"SLr1";
pub const HEADER_LEN: usize = 16;
/// Largest body accepted (1 GiB): bounds every allocation a corrupt length could ask for.
pub const MAX_BODY: u32 = 1 << 30;
/// Offset of the state byte inside a record.
pub const STATE_OFFSET: u64 = 5;
pub const STATE_LIVE: u8 = 0x0F;
pub const STATE_DELETED: u8 = 0xF0;

/// Record types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// First record of every segment: snapshot of the stream state.
    Header = 1,
    Entry = 2,
    /// XDEL of one or more entries (with their locations) plus the resulting state: one
    /// record per command, so a multi-ID XDEL is all-or-nothing on recovery.
    Delete = 3,
    /// XTRIM: the resulting state (new trim point and length).
    Trim = 4,
    /// XSETID: the resulting state.
    SetId = 5,
    /// An opaque payload in an auxiliary log file (consumer-group journal).
    Blob = 6,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Header,
            2 => Kind::Entry,
            3 => Kind::Delete,
            4 => Kind::Trim,
            5 => Kind::SetId,
            6 => Kind::Blob,
            _ => return None,
        })
    }
}

/// Whether a state byte means "deleted": the nearer of the two values by Hamming distance
/// (ties count as live, so a flipped bit never hides data by itself).
pub fn is_deleted_state(b: u8) -> bool {
    (b ^ STATE_DELETED).count_ones() < (b ^ STATE_LIVE).count_ones()
}

/// A parsed, not yet CRC-checked header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub state: u8,
    pub body_len: u32,
    pub crc: u32,
}

impl Header {
    /// Total record size on disk.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.body_len)
    }
}

/// Why bytes are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Every header byte is zero: preallocated space, the normal end of a segment.
    Zero,
    /// Fewer bytes than a header or than the length says.
    Short,
    /// Bad magic, kind, reserved bits or length.
    BadHeader,
    BadCrc,
}

/// Parses a header (`bytes` must hold at least [`HEADER_LEN`] bytes).
pub fn parse_header(bytes: &[u8]) -> Result<Header, Invalid> {
    let h = bytes.get(..HEADER_LEN).ok_or(Invalid::Short)?;
    if h.iter().all(|&b| b == 0) {
        return Err(Invalid::Zero);
    }
    if h.get(..4) != Some(&MAGIC[..]) {
        return Err(Invalid::BadHeader);
    }
    let kind = h
        .get(4)
        .copied()
        .and_then(Kind::from_u8)
        .ok_or(Invalid::BadHeader)?;
    let state = h.get(5).copied().ok_or(Invalid::Short)?;
    if h.get(6..8) != Some(&[0u8, 0][..]) {
        return Err(Invalid::BadHeader);
    }
    let body_len = read_u32(h.get(8..12)).ok_or(Invalid::Short)?;
    if body_len == 0 || body_len > MAX_BODY {
        return Err(Invalid::BadHeader);
    }
    let crc = read_u32(h.get(12..16)).ok_or(Invalid::Short)?;
    Ok(Header {
        kind,
        state,
        body_len,
        crc,
    })
}

/// CRC over the covered header bytes and the body.
fn checksum(header: &[u8], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header.get(..5).unwrap_or(&[]));
    hasher.update(header.get(6..12).unwrap_or(&[]));
    hasher.update(body);
    hasher.finalize()
}

/// Checks a record's CRC: `header_bytes` are its 16 header bytes, `body` its body.
pub fn verify(header_bytes: &[u8], header: &Header, body: &[u8]) -> Result<(), Invalid> {
    if body.len() as u64 != u64::from(header.body_len) {
        return Err(Invalid::Short);
    }
    if checksum(header_bytes, body) == header.crc {
        Ok(())
    } else {
        Err(Invalid::BadCrc)
    }
}

/// Appends a complete record (header + body) of `kind` to `out`.
pub fn encode(out: &mut Vec<u8>, kind: Kind, body: &[u8]) {
    encode_with(out, kind, |out| out.extend_from_slice(body));
}

/// Appends a record whose body `write_body` appends to `out` (no intermediate buffer).
pub fn encode_with(out: &mut Vec<u8>, kind: Kind, write_body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(kind as u8);
    out.push(STATE_LIVE);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&[0, 0, 0, 0]);
    write_body(out);
    let body_len = (out.len() - start - HEADER_LEN) as u32;
    if let Some(slot) = out.get_mut(start + 8..start + 12) {
        slot.copy_from_slice(&body_len.to_le_bytes());
    }
    let crc = {
        let header = out.get(start..start + HEADER_LEN).unwrap_or(&[]);
        let body = out.get(start + HEADER_LEN..).unwrap_or(&[]);
        checksum(header, body)
    };
    if let Some(slot) = out.get_mut(start + 12..start + 16) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
}

/// Decodes a whole record from `bytes` (starting at its header), verifying the CRC.
/// Returns the header and the body.
pub fn decode(bytes: &[u8]) -> Result<(Header, &[u8]), Invalid> {
    let header = parse_header(bytes)?;
    let end = HEADER_LEN
        .checked_add(header.body_len as usize)
        .ok_or(Invalid::BadHeader)?;
    let body = bytes.get(HEADER_LEN..end).ok_or(Invalid::Short)?;
    verify(
        bytes.get(..HEADER_LEN).ok_or(Invalid::Short)?,
        &header,
        body,
    )?;
    Ok((header, body))
}

fn read_u32(b: Option<&[u8]>) -> Option<u32> {
    let b: [u8; 4] = b?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// A bounds-checked cursor over a body.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let head = self.buf.get(..n)?;
        self.buf = self.buf.get(n..)?;
        Some(head)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    pub fn id(&mut self) -> Option<StreamId> {
        Some(StreamId::new(self.u64()?, self.u64()?))
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_id(out: &mut Vec<u8>, id: StreamId) {
    put_u64(out, id.ms);
    put_u64(out, id.seq);
}

/// The persistent counters of a stream, as snapshotted in segment headers and state records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamState {
    pub last_id: StreamId,
    pub max_deleted: StreamId,
    pub entries_added: u64,
    pub length: u64,
    /// Entries stored before this log position were trimmed away. A position rather than
    /// an ID: after an XSETID lowers the last ID, new entries may have IDs below old,
    /// trimmed ones, but they always come later in the log.
    pub trim_pos: LogPos,
}

/// A place in a stream's log: segment number, then byte offset in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPos {
    pub segment: u64,
    pub offset: u64,
}

impl StreamState {
    pub const ENCODED_LEN: usize = 16 + 16 + 8 + 8 + 8 + 8;

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_id(out, self.last_id);
        put_id(out, self.max_deleted);
        put_u64(out, self.entries_added);
        put_u64(out, self.length);
        put_u64(out, self.trim_pos.segment);
        put_u64(out, self.trim_pos.offset);
    }

    pub fn decode(r: &mut Reader<'_>) -> Option<StreamState> {
        let last_id = r.id()?;
        let max_deleted = r.id()?;
        let entries_added = r.u64()?;
        let length = r.u64()?;
        let trim_pos = LogPos {
            segment: r.u64()?,
            offset: r.u64()?,
        };
        Some(StreamState {
            last_id,
            max_deleted,
            entries_added,
            length,
            trim_pos,
        })
    }

    /// True if the record at `offset` of `segment` was trimmed away.
    pub fn is_trimmed(&self, segment: u64, offset: u64) -> bool {
        LogPos { segment, offset } < self.trim_pos
    }
}

/// One entry removed by a delete record: its ID and where its record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeleteTarget {
    pub id: StreamId,
    pub segment: u64,
    pub offset: u64,
}

/// A decoded non-entry record body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    Header {
        state: StreamState,
        segment: u64,
        base: StreamId,
    },
    /// Every entry one XDEL deleted (at least one), in a single record.
    Delete {
        state: StreamState,
        targets: Vec<DeleteTarget>,
    },
    Trim(StreamState),
    SetId(StreamState),
}

impl Control {
    pub fn kind(&self) -> Kind {
        match self {
            Control::Header { .. } => Kind::Header,
            Control::Delete { .. } => Kind::Delete,
            Control::Trim(_) => Kind::Trim,
            Control::SetId(_) => Kind::SetId,
        }
    }

    pub fn state(&self) -> &StreamState {
        match self {
            Control::Header { state, .. }
            | Control::Delete { state, .. }
            | Control::Trim(state)
            | Control::SetId(state) => state,
        }
    }

    pub fn encode_body(&self, out: &mut Vec<u8>) {
        self.state().encode(out);
        match self {
            Control::Header { segment, base, .. } => {
                put_u64(out, *segment);
                put_id(out, *base);
            }
            Control::Delete { targets, .. } => {
                for t in targets {
                    put_id(out, t.id);
                    put_u64(out, t.segment);
                    put_u64(out, t.offset);
                }
            }
            Control::Trim(_) | Control::SetId(_) => {}
        }
    }

    /// Encodes the whole record.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(StreamState::ENCODED_LEN + 32);
        self.encode_body(&mut body);
        encode(out, self.kind(), &body);
    }

    pub fn decode(kind: Kind, body: &[u8]) -> Option<Control> {
        let mut r = Reader::new(body);
        let state = StreamState::decode(&mut r)?;
        let c = match kind {
            Kind::Header => Control::Header {
                state,
                segment: r.u64()?,
                base: r.id()?,
            },
            Kind::Delete => {
                // A single-target record is the format older records used too.
                let mut targets = Vec::new();
                while !r.is_empty() {
                    targets.push(DeleteTarget {
                        id: r.id()?,
                        segment: r.u64()?,
                        offset: r.u64()?,
                    });
                }
                if targets.is_empty() {
                    return None;
                }
                Control::Delete { state, targets }
            }
            Kind::Trim => Control::Trim(state),
            Kind::SetId => Control::SetId(state),
            Kind::Entry | Kind::Blob => return None,
        };
        r.is_empty().then_some(c)
    }
}

/// Encodes an entry record: ID, field count, then length-prefixed fields and values.
pub fn encode_entry(out: &mut Vec<u8>, id: StreamId, fields: &[(bytes::Bytes, bytes::Bytes)]) {
    out.reserve(entry_record_len(fields) as usize);
    encode_with(out, Kind::Entry, |body| {
        put_id(body, id);
        body.extend_from_slice(&(fields.len() as u32).to_le_bytes());
        for (f, v) in fields {
            body.extend_from_slice(&(f.len() as u32).to_le_bytes());
            body.extend_from_slice(f);
            body.extend_from_slice(&(v.len() as u32).to_le_bytes());
            body.extend_from_slice(v);
        }
    });
}

/// Size of an encoded entry record.
pub fn entry_record_len(fields: &[(bytes::Bytes, bytes::Bytes)]) -> u64 {
    HEADER_LEN as u64
        + 20
        + fields
            .iter()
            .map(|(f, v)| 8 + f.len() as u64 + v.len() as u64)
            .sum::<u64>()
}

/// The ID of an entry body, without decoding its fields.
pub fn entry_id(body: &[u8]) -> Option<StreamId> {
    Reader::new(body).id()
}

/// Decodes an entry body (tests; readers use [`entry_ref`]).
#[cfg(test)]
pub fn decode_entry(body: &[u8]) -> Option<crate::Entry> {
    entry_ref(body).map(|e| e.to_entry())
}

/// Checks an entry body's framing and borrows it, without copying fields.
pub fn entry_ref(body: &[u8]) -> Option<EntryRef<'_>> {
    let mut r = Reader::new(body);
    let id = r.id()?;
    let n = r.u32()? as usize;
    // Each pair needs at least 8 bytes.
    if n > body.len() / 8 {
        return None;
    }
    let pairs = r.buf;
    for _ in 0..n {
        let flen = r.u32()? as usize;
        r.take(flen)?;
        let vlen = r.u32()? as usize;
        r.take(vlen)?;
    }
    r.is_empty().then_some(EntryRef { id, n, pairs })
}

/// A stream entry borrowed from a segment (see [`crate::Stream::range_with`]): its ID and its
/// field/value pairs, read in place so a caller can encode them without building an
/// [`crate::Entry`].
#[derive(Clone, Copy, Debug)]
pub struct EntryRef<'a> {
    pub id: StreamId,
    n: usize,
    /// The encoded pairs, framing already checked by [`entry_ref`].
    pairs: &'a [u8],
}

impl<'a> EntryRef<'a> {
    /// Number of field/value pairs.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The field/value pairs in insertion order.
    pub fn fields(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let mut r = Reader::new(self.pairs);
        (0..self.n).map_while(move |_| {
            let flen = r.u32()? as usize;
            let f = r.take(flen)?;
            let vlen = r.u32()? as usize;
            let v = r.take(vlen)?;
            Some((f, v))
        })
    }

    /// An owned copy.
    pub fn to_entry(&self) -> crate::Entry {
        let mut fields = Vec::with_capacity(self.n);
        fields.extend(self.fields().map(|(f, v)| {
            (
                bytes::Bytes::copy_from_slice(f),
                bytes::Bytes::copy_from_slice(v),
            )
        }));
        crate::Entry {
            id: self.id,
            fields,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn roundtrip_entry() {
        let fields = vec![
            (Bytes::from("f"), Bytes::from("v")),
            (Bytes::new(), Bytes::from(vec![0u8; 300])),
        ];
        let mut out = Vec::new();
        encode_entry(&mut out, StreamId::new(5, 6), &fields);
        assert_eq!(out.len() as u64, entry_record_len(&fields));
        let (h, body) = decode(&out).unwrap();
        assert_eq!(h.kind, Kind::Entry);
        assert_eq!(h.state, STATE_LIVE);
        let e = decode_entry(body).unwrap();
        assert_eq!(e.id, StreamId::new(5, 6));
        assert_eq!(e.fields, fields);
    }

    #[test]
    fn zero_and_garbage_rejected() {
        assert_eq!(parse_header(&[0u8; 16]), Err(Invalid::Zero));
        assert_eq!(decode(&[0u8; 64]).unwrap_err(), Invalid::Zero);
        assert_eq!(decode(&[1u8; 8]).unwrap_err(), Invalid::Short);
        let mut out = Vec::new();
        encode(&mut out, Kind::Blob, b"x");
        // Length 0 never validates even with a matching CRC.
        let mut zero_len = out.clone();
        zero_len[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert!(decode(&zero_len).is_err());
    }

    #[test]
    fn state_byte_outside_crc_and_bit_flips_caught() {
        let mut out = Vec::new();
        encode(&mut out, Kind::Blob, b"payload");
        out[5] = STATE_DELETED;
        let (h, _) = decode(&out).unwrap();
        assert!(is_deleted_state(h.state));
        for i in 0..out.len() {
            if i == 5 {
                continue;
            }
            for bit in 0..8 {
                let mut c = out.clone();
                c[i] ^= 1 << bit;
                assert!(decode(&c).is_err(), "flip at byte {i} bit {bit} accepted");
            }
        }
        assert!(!is_deleted_state(STATE_LIVE));
        assert!(!is_deleted_state(STATE_LIVE ^ 0x10));
        assert!(is_deleted_state(STATE_DELETED ^ 0x01));
    }

    #[test]
    fn control_roundtrip() {
        let state = StreamState {
            last_id: StreamId::new(9, 1),
            max_deleted: StreamId::new(3, 0),
            entries_added: 12,
            length: 4,
            trim_pos: LogPos {
                segment: 2,
                offset: 7,
            },
        };
        for c in [
            Control::Header {
                state,
                segment: 3,
                base: StreamId::new(1, 1),
            },
            Control::Delete {
                state,
                targets: vec![DeleteTarget {
                    id: StreamId::new(4, 4),
                    segment: 2,
                    offset: 99,
                }],
            },
            Control::Delete {
                state,
                targets: vec![
                    DeleteTarget {
                        id: StreamId::new(4, 4),
                        segment: 2,
                        offset: 99,
                    },
                    DeleteTarget {
                        id: StreamId::new(5, 0),
                        segment: 3,
                        offset: 16,
                    },
                ],
            },
            Control::Trim(state),
            Control::SetId(state),
        ] {
            let mut out = Vec::new();
            c.encode(&mut out);
            let (h, body) = decode(&out).unwrap();
            assert_eq!(Control::decode(h.kind, body), Some(c));
        }
    }

    #[test]
    fn entry_decoder_is_total() {
        let mut out = Vec::new();
        encode_entry(
            &mut out,
            StreamId::new(1, 1),
            &[(Bytes::from("a"), Bytes::from("b"))],
        );
        let body = &out[HEADER_LEN..];
        for cut in 0..body.len() {
            assert!(decode_entry(&body[..cut]).is_none());
        }
        let mut huge = body.to_vec();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_entry(&huge).is_none());
    }
}
