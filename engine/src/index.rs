//! Sparse ID→offset index of one segment: one point per [`SPACING`] bytes of entries, so
//! memory scales with data size / spacing, not with the number of entries. Persisted as
//! `<segment>.idx` when a segment is sealed and loaded lazily on the first read; a missing
//! or damaged index file is rebuilt by scanning the segment.

use std::{path::Path, sync::Arc};

use crate::{
    id::StreamId,
    io::Vfs,
    record::{put_id, put_u64, Reader},
};

/// Bytes of records between two index points. A read from a random ID CRC-checks about
/// half of this before its first entry (2 KiB: ~12 records of XADD size, where 8 KiB cost
/// XRANGE of 100 entries ~20 % of its time); the price is 24 bytes of memory per 2 KiB of
/// a loaded segment (at most 768 KiB for a 64 MiB segment).
pub const SPACING: u64 = 2048;
const MAGIC: &[u8; 4] = b"SLi1";
/// Upper bound on points accepted from a file (bounds the allocation a corrupt count asks for).
const MAX_POINTS: u64 = 1 << 26;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexPoint {
    pub id: StreamId,
    pub offset: u64,
}

/// The index of one segment plus what a reader needs to know about its extent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    pub points: Vec<IndexPoint>,
    /// End of the valid records.
    pub written: u64,
    /// Entry records in the segment (live or deleted).
    pub entries: u64,
    /// Offset of the last index point's record, to decide when the next point is due.
    pub(crate) last_point_offset: Option<u64>,
    /// Bytes between points for new entries (0 = [`SPACING`]); not persisted.
    pub(crate) spacing: u64,
}

/// Point spacing for a segment of `segment_size` bytes: at least 16 points per segment,
/// at most one per [`SPACING`] bytes.
pub fn spacing_for(segment_size: u64) -> u64 {
    (segment_size / 16).clamp(256, SPACING)
}

impl SegmentIndex {
    /// Notes an entry record at `offset`; adds a point when due.
    pub fn note_entry(&mut self, id: StreamId, offset: u64) {
        self.entries += 1;
        let due = match self.last_point_offset {
            None => true,
            Some(last) => {
                let spacing = if self.spacing == 0 {
                    SPACING
                } else {
                    self.spacing
                };
                offset.saturating_sub(last) >= spacing
            }
        };
        if due {
            self.points.push(IndexPoint { id, offset });
            self.last_point_offset = Some(offset);
        }
    }

    /// Index of the last point whose ID is ≤ `id`.
    pub fn point_at_or_before(&self, id: StreamId) -> Option<usize> {
        let n = self.points.partition_point(|p| p.id <= id);
        n.checked_sub(1)
    }

    /// Where a forward scan for IDs ≥ `id` may start.
    pub fn seek(&self, id: StreamId) -> u64 {
        match self.point_at_or_before(id) {
            Some(i) => self.points.get(i).map_or(0, |p| p.offset),
            None => 0,
        }
    }

    /// The record boundary (an index point, or 0) nearest at or before `offset`: where a
    /// scan may start to reach the records from `offset` on.
    pub fn boundary_at_or_before(&self, offset: u64) -> u64 {
        let n = self.points.partition_point(|p| p.offset <= offset);
        n.checked_sub(1)
            .and_then(|i| self.points.get(i))
            .map_or(0, |p| p.offset)
    }

    pub fn memory_bytes(&self) -> usize {
        self.points.capacity() * std::mem::size_of::<IndexPoint>()
    }

    pub fn encode(&self, segment: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(48 + self.points.len() * 24);
        out.extend_from_slice(MAGIC);
        put_u64(&mut out, segment);
        put_u64(&mut out, self.written);
        put_u64(&mut out, self.entries);
        put_u64(&mut out, self.points.len() as u64);
        for p in &self.points {
            put_id(&mut out, p.id);
            put_u64(&mut out, p.offset);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes an index file; `None` if it is damaged or belongs to another segment.
    pub fn decode(bytes: &[u8], segment: u64) -> Option<SegmentIndex> {
        let split = bytes.len().checked_sub(4)?;
        let (data, crc) = (bytes.get(..split)?, bytes.get(split..)?);
        if crc32fast::hash(data).to_le_bytes() != crc {
            return None;
        }
        let mut r = Reader::new(data);
        if r.take(4)? != MAGIC || r.u64()? != segment {
            return None;
        }
        let written = r.u64()?;
        let entries = r.u64()?;
        let n = r.u64()?;
        if n > MAX_POINTS || n.checked_mul(24)? != (data.len() as u64).checked_sub(36)? {
            return None;
        }
        let mut points = Vec::with_capacity(n as usize);
        for _ in 0..n {
            points.push(IndexPoint {
                id: r.id()?,
                offset: r.u64()?,
            });
        }
        let last_point_offset = points.last().map(|p| p.offset);
        Some(SegmentIndex {
            points,
            written,
            entries,
            last_point_offset,
            spacing: 0,
        })
    }

    /// Reads and decodes an index file, `None` if absent or invalid.
    pub fn load(vfs: &Arc<dyn Vfs>, path: &Path, segment: u64) -> Option<SegmentIndex> {
        let file = vfs.open(path, false).ok()?;
        let len = file.len().ok()?;
        if len > 36 + MAX_POINTS * 24 + 4 {
            return None;
        }
        let mut buf = vec![0u8; usize::try_from(len).ok()?];
        let mut at = 0usize;
        while at < buf.len() {
            let n = file.read_at(buf.get_mut(at..)?, at as u64).ok()?;
            if n == 0 {
                return None;
            }
            at += n;
        }
        SegmentIndex::decode(&buf, segment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_points_and_seek() {
        let mut idx = SegmentIndex::default();
        for i in 0..10_000u64 {
            idx.note_entry(StreamId::new(i + 1, 0), 100 + i * 100);
        }
        assert_eq!(idx.entries, 10_000);
        // 1,000,000 bytes of records: about one point per SPACING bytes.
        let most = (10_000 * 100 / SPACING + 2) as usize;
        assert!(idx.points.len() <= most, "{}", idx.points.len());
        assert!(idx.points.len() >= most / 2, "{}", idx.points.len());
        assert_eq!(idx.seek(StreamId::new(1, 0)), 100);
        let off = idx.seek(StreamId::new(5001, 0));
        assert!(off <= 100 + 5000 * 100 && off + SPACING + 100 > 100 + 5000 * 100);
        assert_eq!(idx.seek(StreamId::MIN), 0);
    }

    #[test]
    fn encode_decode_and_reject_damage() {
        let mut idx = SegmentIndex::default();
        for i in 0..500u64 {
            idx.note_entry(StreamId::new(i, 1), i * 50);
        }
        idx.written = 25_000;
        let bytes = idx.encode(7);
        assert_eq!(SegmentIndex::decode(&bytes, 7), Some(idx.clone()));
        assert_eq!(SegmentIndex::decode(&bytes, 8), None);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert_eq!(SegmentIndex::decode(&b, 7), None);
        }
        assert_eq!(SegmentIndex::decode(&bytes[..bytes.len() - 1], 7), None);
    }
}
