//! One segment file: appended with pwrite(2) into space preallocated with fallocate (in
//! doubling steps up to the segment's capacity, so thousands of small streams do not each
//! reserve 64 MiB), read through a read-only map of the whole capacity made once. Named `<number:016x>-<ms>-<seq>.seg`: a
//! per-stream sequence number (the order) and the segment's base ID (no entry in it is
//! smaller). Readers never look past the segment's valid end (`written`).

use std::{borrow::Cow, io, path::Path, sync::Arc};

use crate::{
    id::StreamId,
    index::SegmentIndex,
    io::{Mapping, VFile, Vfs},
    record::{self, Header, Invalid, Kind, HEADER_LEN, MAGIC},
};

pub fn file_name(number: u64, base: StreamId) -> String {
    format!("{number:016x}-{}-{}.seg", base.ms, base.seq)
}

pub fn index_file_name(number: u64) -> String {
    format!("{number:016x}.idx")
}

/// Parses a segment file name into its number and base ID.
pub fn parse_file_name(name: &str) -> Option<(u64, StreamId)> {
    let stem = name.strip_suffix(".seg")?;
    let mut parts = stem.splitn(3, '-');
    let number = u64::from_str_radix(parts.next()?, 16).ok()?;
    let ms = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    Some((number, StreamId::new(ms, seq)))
}

/// An open segment: its file, its map and its index (which also knows the valid end).
pub struct SegmentData {
    pub file: Arc<dyn VFile>,
    pub map: Mapping,
    pub index: SegmentIndex,
    /// Size of the map (the most the segment may hold).
    pub capacity: u64,
    /// Bytes allocated in the file so far (≤ capacity; reads never go past `index.written`,
    /// which never exceeds this).
    pub allocated: u64,
}

/// First allocation of a new segment; later ones double up to the capacity.
const FIRST_ALLOCATION: u64 = 64 << 10;

impl SegmentData {
    /// Creates a new segment file: allocated to `capacity`, holding `header` (a complete
    /// encoded record) at offset 0. Not fsync'd: the caller decides.
    pub fn create(
        vfs: &Arc<dyn Vfs>,
        path: &Path,
        capacity: u64,
        header: &[u8],
    ) -> io::Result<SegmentData> {
        let file = vfs.open(path, true)?;
        file.set_len(0)?;
        let allocated = capacity.min(FIRST_ALLOCATION.max(header.len() as u64));
        file.allocate(allocated)?;
        file.write_all_at(header, 0)?;
        let map = file.map(capacity)?;
        let index = SegmentIndex {
            written: header.len() as u64,
            spacing: crate::index::spacing_for(capacity),
            ..SegmentIndex::default()
        };
        Ok(SegmentData {
            file,
            map,
            index,
            capacity,
            allocated,
        })
    }

    /// Makes sure `[0, end)` is allocated (fallocate), growing by doubling.
    pub fn ensure_allocated(&mut self, end: u64) -> io::Result<()> {
        if end <= self.allocated {
            return Ok(());
        }
        let want = end
            .max(self.allocated.saturating_mul(2))
            .max(FIRST_ALLOCATION)
            .min(self.capacity.max(end));
        self.file.allocate(want)?;
        self.allocated = want;
        Ok(())
    }

    pub fn view(&self, number: u64) -> View<'_> {
        View {
            number,
            map: &self.map,
            index: &self.index,
        }
    }
}

/// What a reader needs of one segment.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub number: u64,
    pub map: &'a Mapping,
    pub index: &'a SegmentIndex,
}

impl<'a> View<'a> {
    pub fn records(&self, from: u64) -> Records<'a> {
        Records::new(self.map, from, self.index.written)
    }
}

/// One record read from a map: its header and whole bytes (header + body).
pub struct RawRecord<'a> {
    pub offset: u64,
    pub header: Header,
    pub bytes: Cow<'a, [u8]>,
}

impl RawRecord<'_> {
    pub fn body(&self) -> &[u8] {
        self.bytes.get(HEADER_LEN..).unwrap_or(&[])
    }

    pub fn len(&self) -> u64 {
        self.header.record_len()
    }

    /// The entry ID, if this is an entry record.
    pub fn entry_id(&self) -> Option<StreamId> {
        if self.header.kind == Kind::Entry {
            record::entry_id(self.body())
        } else {
            None
        }
    }
}

/// Reads and verifies the record at `offset`, not looking at or past `end`.
pub fn read_record(
    map: &Mapping,
    offset: u64,
    end: u64,
) -> io::Result<Result<RawRecord<'_>, Invalid>> {
    if offset.saturating_add(HEADER_LEN as u64) > end {
        return Ok(Err(Invalid::Short));
    }
    let head = map.read(offset, HEADER_LEN)?;
    let header = match record::parse_header(&head) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    let total = header.record_len();
    if offset.saturating_add(total) > end {
        return Ok(Err(Invalid::Short));
    }
    let bytes = map.read(offset, total as usize)?;
    match record::decode(&bytes) {
        Ok(_) => Ok(Ok(RawRecord {
            offset,
            header,
            bytes,
        })),
        Err(e) => Ok(Err(e)),
    }
}

/// The offset of the next valid record at or after `from` (and before `end`), if any.
pub fn resync(map: &Mapping, from: u64, end: u64) -> io::Result<Option<u64>> {
    if from >= end {
        return Ok(None);
    }
    let window = map.read(from, (end - from) as usize)?;
    let mut start = 0usize;
    while let Some(rest) = window.get(start..) {
        let Some(pos) = rest.windows(MAGIC.len()).position(|w| w == MAGIC) else {
            return Ok(None);
        };
        let candidate = from + (start + pos) as u64;
        if read_record(map, candidate, end)?.is_ok() {
            return Ok(Some(candidate));
        }
        start += pos + 1;
    }
    Ok(None)
}

/// Forward iteration over valid records in `[from, end)`. A record failing its checks is
/// never returned: the iterator resynchronises on the next valid record and counts the skip.
pub struct Records<'a> {
    map: &'a Mapping,
    pos: u64,
    end: u64,
    /// Invalid regions skipped so far.
    pub skipped: u64,
    /// Stop (instead of resynchronising) at an all-zero header: rebuilding an index.
    pub stop_at_zero: bool,
    /// Engine-wide count of skipped invalid regions, if the reader reports them.
    pub counter: Option<&'a std::sync::atomic::AtomicU64>,
    /// Yield an `InvalidData` error (after counting it) for an invalid record instead of
    /// skipping it silently: readers of data known valid when written report corruption.
    pub fail_invalid: bool,
}

impl<'a> Records<'a> {
    pub fn new(map: &'a Mapping, from: u64, end: u64) -> Self {
        Records {
            map,
            pos: from,
            end,
            skipped: 0,
            stop_at_zero: false,
            counter: None,
            fail_invalid: false,
        }
    }

    /// Reports every skipped invalid region to `counter`.
    pub fn counting(mut self, counter: &'a std::sync::atomic::AtomicU64) -> Self {
        self.counter = Some(counter);
        self
    }

    /// Every record in the range was valid when written, so an invalid one is corruption:
    /// yield it as an `InvalidData` error (the iterator then resumes on the next valid
    /// record, so entries after the damage stay reachable).
    pub fn strict(mut self) -> Self {
        self.fail_invalid = true;
        self
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = io::Result<RawRecord<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.pos >= self.end {
                return None;
            }
            match read_record(self.map, self.pos, self.end) {
                Ok(Ok(rec)) => {
                    self.pos += rec.len();
                    return Some(Ok(rec));
                }
                Ok(Err(Invalid::Zero)) if self.stop_at_zero => {
                    self.end = self.pos;
                    return None;
                }
                Ok(Err(invalid)) => {
                    self.skipped += 1;
                    if let Some(c) = self.counter {
                        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let at = self.pos;
                    match resync(self.map, self.pos + 1, self.end) {
                        Ok(Some(p)) => self.pos = p,
                        Ok(None) => self.pos = self.end,
                        Err(e) => return Some(Err(e)),
                    }
                    if self.fail_invalid {
                        return Some(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            CorruptRecord {
                                offset: at,
                                invalid,
                            },
                        )));
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The error a strict [`Records`] yields for an invalid record inside valid data.
#[derive(Debug)]
pub struct CorruptRecord {
    pub offset: u64,
    pub invalid: Invalid,
}

impl std::fmt::Display for CorruptRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid record ({:?}) at offset {}",
            self.invalid, self.offset
        )
    }
}

impl std::error::Error for CorruptRecord {}

/// Opens a sealed segment for reading: maps it and loads (or rebuilds) its index.
pub fn open_sealed(
    vfs: &Arc<dyn Vfs>,
    path: &Path,
    index_path: &Path,
    number: u64,
) -> io::Result<SegmentData> {
    let file = vfs.open(path, false)?;
    let len = file.len()?;
    let map = file.map(len)?;
    let index = match SegmentIndex::load(vfs, index_path, number) {
        Some(index) if index.written <= len => index,
        _ => rebuild_index(&map, len)?,
    };
    Ok(SegmentData {
        file,
        map,
        index,
        capacity: len,
        allocated: len,
    })
}

/// Scans a segment from the start to rebuild its index (stops at preallocated zeros).
pub fn rebuild_index(map: &Mapping, len: u64) -> io::Result<SegmentIndex> {
    let mut index = SegmentIndex::default();
    let mut records = Records::new(map, 0, len);
    records.stop_at_zero = true;
    let mut end = 0;
    for rec in records {
        let rec = rec?;
        if let Some(id) = rec.entry_id() {
            index.note_entry(id, rec.offset);
        }
        end = rec.offset + rec.len();
    }
    index.written = end;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::OsVfs;
    use bytes::Bytes;

    #[test]
    fn names_roundtrip() {
        let n = file_name(42, StreamId::new(1700000000000, 3));
        assert_eq!(
            parse_file_name(&n),
            Some((42, StreamId::new(1700000000000, 3)))
        );
        assert_eq!(parse_file_name("x.seg"), None);
        assert_eq!(parse_file_name("0000000000000001-1-2.idx"), None);
    }

    #[test]
    fn iterate_resync_and_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let vfs: Arc<dyn Vfs> = Arc::new(OsVfs);
        let mut header = Vec::new();
        record::encode(&mut header, Kind::Blob, b"hdr");
        let path = dir.path().join(file_name(0, StreamId::MIN));
        let seg = SegmentData::create(&vfs, &path, 1 << 16, &header).unwrap();
        let mut at = header.len() as u64;
        let mut offsets = Vec::new();
        for i in 0..50u64 {
            let mut rec = Vec::new();
            record::encode_entry(
                &mut rec,
                StreamId::new(i, 0),
                &[(Bytes::from("k"), Bytes::from(vec![b'v'; 100]))],
            );
            seg.file.write_all_at(&rec, at).unwrap();
            offsets.push(at);
            at += rec.len() as u64;
        }
        let idx = rebuild_index(&seg.map, seg.capacity).unwrap();
        assert_eq!(idx.written, at);
        assert_eq!(idx.entries, 50);
        // Corrupt record 10: the iterator skips exactly it.
        seg.file.write_all_at(&[0xEE], offsets[10] + 30).unwrap();
        let ids: Vec<u64> = Records::new(&seg.map, 0, at)
            .filter_map(|r| r.unwrap().entry_id())
            .map(|id| id.ms)
            .collect();
        assert_eq!(ids.len(), 49);
        assert!(!ids.contains(&10));
        let mut it = Records::new(&seg.map, 0, at);
        for _ in it.by_ref() {}
        assert_eq!(it.skipped, 1);
    }
}
