//! Opening a stream directory: find the segments, replay only the tail segment record by
//! record, tell a torn tail (truncated and counted) from corruption of data that had been
//! fsync'd (reported, skipped by resynchronising on the next valid record, never
//! overwritten), and redo deletes recorded in the tail.

use std::path::{Path, PathBuf};

use crate::{
    index::SegmentIndex,
    io::Mapping,
    meta::{MetaFile, MetaValue, KEY_FILE},
    record::{self, Control, Invalid, Kind, LogPos, StreamState, HEADER_LEN, MAGIC},
    segment::{self, read_record, resync, SegmentData},
    stream::{Ctx, Sealed, Stream, Tail},
    Error, Lsn, RecoveryReport, Result, StreamId,
};

/// How far past a torn record recovery looks to count what it drops.
const TORN_WINDOW: u64 = 1 << 20;

/// The result of replaying a tail segment.
struct Replay {
    state: StreamState,
    index: SegmentIndex,
    /// Deletes found in the tail: `(segment, offset, ID)` of their targets.
    redo: Vec<(u64, u64, StreamId)>,
    /// A valid header record for this segment was found at offset 0.
    header_ok: bool,
    /// Valid records seen at all.
    records: u64,
    torn_bytes: u64,
    torn_records: u64,
    corruptions: Vec<String>,
    /// Taken from the clean-shutdown index instead of replaying.
    fast: bool,
    /// While the state is still the meta file's (no record has carried one yet), entries
    /// below this offset are already counted in it: they are indexed, not counted again.
    counted_until: u64,
}

/// Replays the records of a tail segment mapped with `capacity` bytes, of which the file
/// holds `end` (nothing at or past `end` is read).
fn replay(
    map: &Mapping,
    capacity: u64,
    end: u64,
    durable: u64,
    number: u64,
    fallback: StreamState,
    path: &Path,
) -> std::io::Result<Replay> {
    let mut r = Replay {
        state: fallback,
        index: SegmentIndex {
            spacing: crate::index::spacing_for(capacity),
            ..SegmentIndex::default()
        },
        redo: Vec::new(),
        header_ok: false,
        records: 0,
        torn_bytes: 0,
        torn_records: 0,
        corruptions: Vec::new(),
        fast: false,
        counted_until: durable,
    };
    let mut pos = 0u64;
    loop {
        if pos + HEADER_LEN as u64 > end {
            break;
        }
        match read_record(map, pos, end)? {
            Ok(rec) => {
                r.records += 1;
                apply(&mut r, &rec, number, path);
                pos += rec.len();
            }
            Err(invalid) => {
                if pos < durable {
                    r.corruptions.push(format!(
                        "{}: invalid record ({invalid:?}) at offset {pos}, below the fsync'd offset {durable}; skipped to the next valid record",
                        path.display()
                    ));
                    match resync(map, pos + 1, end)? {
                        Some(p) => {
                            pos = p;
                            continue;
                        }
                        None => {
                            // Nothing valid follows: keep the damaged bytes, append after them.
                            pos = durable.min(end);
                            break;
                        }
                    }
                }
                let window_end = end.min(pos + TORN_WINDOW);
                if invalid == Invalid::Zero && zero_page(map, pos, window_end)? {
                    break;
                }
                // Past the recorded durable offset (it lags behind group commits), a torn
                // write and damage to fsync'd data differ in shape: what a power cut did not
                // write back reads as zeros up to a page boundary, so a damaged region that
                // a valid record follows with no such zeros was written whole, and is
                // corruption, never a reason to drop what follows.
                let next = resync(map, pos + 1, end)?;
                if let Some(len) = one_bit_from_valid(map, pos, next.unwrap_or(end))? {
                    // One flipped bit away from a valid record, and not where a tear's
                    // zeros are: written whole, damaged since.
                    r.corruptions.push(format!(
                        "{}: record at offset {pos} damaged by a flipped bit ({invalid:?}); kept and reported, replay continues after it",
                        path.display()
                    ));
                    pos += len;
                    continue;
                }
                if let Some(next) = next {
                    if !torn_gap(map, pos, next)? {
                        r.corruptions.push(format!(
                            "{}: invalid record ({invalid:?}) at offset {pos}, followed by valid records and not a torn write; skipped to the next valid record at {next}",
                            path.display()
                        ));
                        pos = next;
                        continue;
                    }
                    // A zero byte before a page boundary may just be the record's own data:
                    // one header bit away from a record that verifies and ends exactly where
                    // the next valid one starts, it was written whole and damaged since.
                    if let Some(len) = whole_damaged_record(map, pos, end)? {
                        if pos.saturating_add(len) == next {
                            r.corruptions.push(format!(
                                "{}: record at offset {pos} damaged in its header ({invalid:?}); kept and reported, replay continues after it",
                                path.display()
                            ));
                            pos = next;
                            continue;
                        }
                    }
                } else if let Some(len) = whole_damaged_record(map, pos, end)? {
                    // The last record, written whole and damaged since: keep its bytes
                    // (reads report it) and append after it.
                    r.corruptions.push(format!(
                        "{}: invalid record ({invalid:?}) at offset {pos}, the last one, written whole (not a torn write); kept and reported",
                        path.display()
                    ));
                    pos += len;
                    continue;
                }
                let (bytes, records) = count_torn(map, pos, window_end)?;
                r.torn_bytes = bytes;
                r.torn_records = records;
                break;
            }
        }
    }
    if end < durable {
        r.corruptions.push(format!(
            "{}: the file ends at {end}, before its fsync'd offset {durable}; the rest is lost",
            path.display()
        ));
    }
    r.index.written = pos;
    Ok(r)
}

fn apply(r: &mut Replay, rec: &segment::RawRecord<'_>, number: u64, path: &Path) {
    match rec.header.kind {
        Kind::Entry => {
            if let Some(id) = record::entry_id(rec.body()) {
                r.index.note_entry(id, rec.offset);
                if rec.offset < r.counted_until {
                    // A state from the meta file (damaged header) already counts it.
                    return;
                }
                r.state.last_id = id;
                r.state.entries_added = r.state.entries_added.saturating_add(1);
                r.state.length = r.state.length.saturating_add(1);
            }
        }
        Kind::Blob => {}
        kind => match Control::decode(kind, rec.body()) {
            Some(Control::Header { state, segment, .. })
                if rec.offset == 0 && segment == number =>
            {
                r.header_ok = true;
                r.set_state(state, number, rec.offset, path);
            }
            Some(Control::Header { .. }) => {}
            Some(Control::Delete { state, targets }) => {
                r.set_state(state, number, rec.offset, path);
                r.redo
                    .extend(targets.iter().map(|t| (t.segment, t.offset, t.id)));
            }
            Some(Control::Trim(state)) | Some(Control::SetId(state)) => {
                r.set_state(state, number, rec.offset, path)
            }
            None => {}
        },
    }
}

impl Replay {
    /// Takes the state a record at `(segment, offset)` carries. Its trim position can lie
    /// no further than the record itself (a trim of everything ends where its own record
    /// is appended); a damaged but CRC-valid one beyond it would hide the entries written
    /// after the record, so it is clamped there and reported. Clamping to the record, not
    /// to the end of the log, gives the same state at every reopen.
    fn set_state(&mut self, mut state: StreamState, segment: u64, offset: u64, path: &Path) {
        if let Some(was) = clamp_trim(&mut state, LogPos { segment, offset }) {
            self.corruptions.push(format!(
                "{}: a record at offset {offset} puts the trim position (segment {}, offset {}) \
                 beyond itself; clamped to the record",
                path.display(),
                was.segment,
                was.offset
            ));
        }
        self.state = state;
        self.counted_until = 0;
    }
}

/// Moves a recovered trim position back to `bound` if it lies beyond (no valid log puts it
/// there); returns where it was.
fn clamp_trim(state: &mut StreamState, bound: LogPos) -> Option<LogPos> {
    (state.trim_pos > bound).then(|| std::mem::replace(&mut state.trim_pos, bound))
}

/// Page size of the torn-write model: a power cut leaves each page written, unwritten, or
/// written only up to some point, so unwritten bytes always run up to a page boundary.
const PAGE: u64 = 4096;

/// True if `[from, to)` looks torn: the byte before some page boundary in `(from, to]` is
/// zero. A bit flip or other damage to a record that was written whole does not look so
/// (unless the record happens to hold a zero there).
fn torn_gap(map: &Mapping, from: u64, to: u64) -> std::io::Result<bool> {
    let mut b = (from / PAGE + 1) * PAGE;
    while b <= to {
        if map.read(b - 1, 1)?.first() == Some(&0) {
            return Ok(true);
        }
        b += PAGE;
    }
    Ok(false)
}

/// Records up to this size are checked exactly for a single flipped bit at recovery.
const FLIP_CHECK_MAX: u64 = 2 << 10;

/// The length of the record at `pos` (ending by `end`, at most [`FLIP_CHECK_MAX`] bytes)
/// if flipping one bit makes it verify, and that bit is not inside a run of zeros reaching
/// a page boundary: there a tear (unwritten bytes read as zeros) can look the same.
fn one_bit_from_valid(map: &Mapping, pos: u64, end: u64) -> std::io::Result<Option<u64>> {
    if pos.saturating_add(HEADER_LEN as u64) > end {
        return Ok(None);
    }
    let head = map.read(pos, HEADER_LEN)?.into_owned();
    // Candidate lengths: the header's own, or one that a flip in the length field gives.
    let mut lens = Vec::new();
    if let Ok(h) = record::parse_header(&head) {
        lens.push(h.record_len());
    }
    for i in 8..12 {
        for bit in 0..8 {
            let mut h = head.clone();
            if let Some(b) = h.get_mut(i) {
                *b ^= 1 << bit;
            }
            if let Ok(parsed) = record::parse_header(&h) {
                lens.push(parsed.record_len());
            }
        }
    }
    for len in lens {
        if len > FLIP_CHECK_MAX || pos.saturating_add(len) > end {
            continue;
        }
        let mut bytes = map.read(pos, len as usize)?.into_owned();
        for i in 0..bytes.len() {
            if i == record::STATE_OFFSET as usize {
                continue;
            }
            for bit in 0..8 {
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= 1 << bit;
                }
                let ok = record::decode(&bytes).is_ok();
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= 1 << bit;
                }
                if ok {
                    let at = pos + i as u64;
                    if in_zero_run_to_page_end(map, at, end)? {
                        return Ok(None);
                    }
                    return Ok(Some(len));
                }
            }
        }
    }
    Ok(None)
}

/// True if the bytes from `at` up to the next page boundary (or `end`) are all zero.
fn in_zero_run_to_page_end(map: &Mapping, at: u64, end: u64) -> std::io::Result<bool> {
    let stop = ((at / PAGE + 1) * PAGE).min(end.max(at + 1));
    Ok(map.read(at, (stop - at) as usize)?.iter().all(|&b| b == 0))
}

/// The length of the record at `pos` if it was evidently written whole and damaged
/// afterwards: its header (or the header with one bit flipped back) gives a length within
/// `end`, and it shows no torn shape (zeros at its end or before a page boundary in it).
fn whole_damaged_record(map: &Mapping, pos: u64, end: u64) -> std::io::Result<Option<u64>> {
    if pos.saturating_add(HEADER_LEN as u64) > end {
        return Ok(None);
    }
    let head = map.read(pos, HEADER_LEN)?.into_owned();
    let len = match record::parse_header(&head) {
        Ok(h) => h.record_len(),
        Err(_) => {
            // A damaged header: one bit away from a header whose record verifies?
            let mut found = None;
            'flip: for i in 0..HEADER_LEN {
                for bit in 0..8 {
                    let mut h = head.clone();
                    if let Some(b) = h.get_mut(i) {
                        *b ^= 1 << bit;
                    }
                    let Ok(parsed) = record::parse_header(&h) else {
                        continue;
                    };
                    let total = parsed.record_len();
                    if pos.saturating_add(total) > end {
                        continue;
                    }
                    let body = map.read(pos + HEADER_LEN as u64, parsed.body_len as usize)?;
                    if record::verify(&h, &parsed, &body).is_ok() {
                        found = Some(total);
                        break 'flip;
                    }
                }
            }
            match found {
                Some(total) => return Ok(Some(total)),
                None => return Ok(None),
            }
        }
    };
    let stop = pos.saturating_add(len);
    if stop > end || len == 0 {
        return Ok(None);
    }
    if map.read(stop - 1, 1)?.first() == Some(&0) || torn_gap(map, pos, stop)? {
        return Ok(None);
    }
    Ok(Some(len))
}

/// The ID of the valid entry record at `offset` of `segment` (tail or sealed), if any.
fn entry_at(stream: &Stream, segment: u64, offset: u64) -> Option<StreamId> {
    let read = |data: &SegmentData| {
        segment::read_record(&data.map, offset, data.index.written)
            .ok()?
            .ok()?
            .entry_id()
    };
    if segment == stream.tail.number {
        return read(&stream.tail.data);
    }
    let sealed = stream.sealed.iter().find(|s| s.number == segment)?;
    let data = stream.load_sealed(sealed).ok()?;
    read(&data)
}

/// True if the 4 KiB after `pos` are all zero (the normal end of a preallocated tail).
fn zero_page(map: &Mapping, pos: u64, end: u64) -> std::io::Result<bool> {
    let n = end.saturating_sub(pos).min(4096) as usize;
    Ok(map.read(pos, n)?.iter().all(|&b| b == 0))
}

/// Bytes (up to the last non-zero byte in the window) and records (valid ones found
/// after the tear, plus the torn one) dropped by truncating at `pos`.
fn count_torn(map: &Mapping, pos: u64, end: u64) -> std::io::Result<(u64, u64)> {
    let window = map.read(pos, end.saturating_sub(pos) as usize)?;
    let bytes = window
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i as u64 + 1);
    let mut records = u64::from(bytes > 0);
    let mut at = pos + 1;
    let stop = pos + bytes;
    while at < stop {
        let rest = map.read(at, (stop - at) as usize)?;
        let Some(i) = rest.windows(MAGIC.len()).position(|w| w == MAGIC) else {
            break;
        };
        let cand = at + i as u64;
        match read_record(map, cand, stop)? {
            Ok(rec) => {
                records += 1;
                at = cand + rec.len();
            }
            Err(_) => at = cand + 1,
        }
    }
    Ok((bytes, records))
}

/// The fast path after a clean shutdown: the meta file's durable offset matches the tail
/// index saved by `sync` and nothing follows it, so the tail need not be replayed (open
/// cost stays independent of the tail's size).
fn clean_tail(
    vfs: &std::sync::Arc<dyn crate::io::Vfs>,
    dir: &Path,
    map: &Mapping,
    len: u64,
    capacity: u64,
    number: u64,
    found: Option<MetaValue>,
) -> Option<Replay> {
    let m = found.filter(|m| m.tail == number && m.durable <= len)?;
    let index_path = dir.join(segment::index_file_name(number));
    let mut index = SegmentIndex::load(vfs, &index_path, number)?;
    if index.written != m.durable || m.durable == 0 {
        return None;
    }
    let window_end = len.min(m.durable.saturating_add(4096));
    if !zero_page(map, m.durable, window_end).ok()? {
        return None;
    }
    index.spacing = crate::index::spacing_for(capacity);
    Some(Replay {
        state: m.state,
        index,
        redo: Vec::new(),
        header_ok: true,
        records: 1,
        torn_bytes: 0,
        torn_records: 0,
        corruptions: Vec::new(),
        fast: true,
        counted_until: 0,
    })
}

/// What a new stream's directory holds: first segment, meta file, state and key file.
type NewFiles = (
    SegmentData,
    MetaFile,
    StreamState,
    std::sync::Arc<dyn crate::io::VFile>,
);

impl Stream {
    /// Creates a new, empty stream in `dir` (key file, first segment, meta). Nothing is
    /// fsync'd here: the returned Lsn becomes durable with the next group commit, which
    /// fsyncs the files and both directories. A failed write poisons the engine and removes
    /// the half-made directory (best effort; recovery removes what is left), so no later
    /// creation of the same key picks a second directory next to it.
    pub(crate) fn create(ctx: &Ctx, dir: PathBuf, db: u32, key: &[u8]) -> Result<(Stream, Lsn)> {
        let d = &ctx.durability;
        let made = match Stream::create_files(ctx, &dir, db, key) {
            Ok(made) => made,
            Err((context, e)) => {
                let err = d.write_failed(context, e);
                if crate::engine::remove_tree(&ctx.vfs, &dir).is_ok() {
                    if let Some(parent) = dir.parent() {
                        d.dir_changed(parent);
                    }
                }
                return Err(err);
            }
        };
        let (data, meta, state, key_file) = made;
        d.dir_changed(&dir);
        let lsn = match dir.parent() {
            Some(parent) => d.dir_changed(parent),
            None => d.next_lsn(),
        };
        let tail = Tail {
            number: 0,
            base: StreamId::MIN,
            data,
        };
        let mut stream = Stream::assemble(dir, ctx.clone(), state, Vec::new(), tail, meta);
        stream.key_file_unsynced = Some(key_file);
        Ok((stream, lsn))
    }

    /// The files of a new stream; on failure, what failed and the I/O error.
    fn create_files(
        ctx: &Ctx,
        dir: &Path,
        db: u32,
        key: &[u8],
    ) -> std::result::Result<NewFiles, (&'static str, std::io::Error)> {
        let vfs = &ctx.vfs;
        let d = &ctx.durability;
        vfs.create_dir_all(dir)
            .map_err(|e| ("create a stream directory", e))?;
        let key_file = crate::meta::write_key_file(vfs, &dir.join(KEY_FILE), db, key)
            .map_err(|e| ("write a key file", e))?;
        d.wrote(&key_file, key.len() as u64);
        let state = StreamState::default();
        let mut header = Vec::new();
        Control::Header {
            state,
            segment: 0,
            base: StreamId::MIN,
        }
        .encode(&mut header);
        let path = dir.join(segment::file_name(0, StreamId::MIN));
        let data = SegmentData::create(
            vfs,
            &path,
            ctx.segment_size.max(header.len() as u64 * 2),
            &header,
        )
        .map_err(|e| ("create a segment", e))?;
        d.wrote(&data.file, header.len() as u64);
        let (mut meta, _) = MetaFile::open(vfs, dir).map_err(|e| ("create a meta file", e))?;
        let (meta_file, n) = meta
            .write(
                vfs,
                dir,
                MetaValue {
                    tail: 0,
                    durable: 0,
                    expire: None,
                    state,
                },
            )
            .map_err(|e| ("write a meta file", e))?;
        d.wrote(&meta_file, n);
        Ok((data, meta, state, key_file))
    }

    /// Opens an existing stream directory, replaying its tail segment. Returns `None` if
    /// the directory holds a stream whose creation never completed (nothing was ever
    /// acknowledged in it); the caller removes it.
    pub(crate) fn open(
        ctx: &Ctx,
        dir: PathBuf,
        report: &mut RecoveryReport,
    ) -> Result<Option<Stream>> {
        let vfs = &ctx.vfs;
        let names = vfs
            .list_dir(&dir)
            .map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        let mut segs: Vec<(u64, StreamId)> = Vec::new();
        for name in &names {
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") {
                let _ = vfs.remove_file(&dir.join(name));
            } else if let Some(parsed) = segment::parse_file_name(name) {
                segs.push(parsed);
            }
        }
        segs.sort_unstable();
        let (meta, found) =
            MetaFile::open(vfs, &dir).map_err(|e| Error::io("open a meta file", e))?;
        let fallback = found.map(|m| m.state).unwrap_or_default();

        let (number, base, data, rep) = loop {
            let Some(&(number, base)) = segs.last() else {
                if found.is_none() {
                    return Ok(None);
                }
                // Segments vanished: keep the stream with its last known state.
                report.corruptions.push(format!(
                    "{}: no segment files; stream restarted from its meta state",
                    dir.display()
                ));
                let mut header = Vec::new();
                let number = found.map_or(0, |m| m.tail.saturating_add(1));
                let base = fallback.last_id;
                Control::Header {
                    state: fallback,
                    segment: number,
                    base,
                }
                .encode(&mut header);
                let path = dir.join(segment::file_name(number, base));
                let data = SegmentData::create(vfs, &path, ctx.segment_size, &header)
                    .map_err(|e| Error::io("create a segment", e))?;
                let rep = replay(
                    &data.map,
                    data.capacity,
                    data.allocated,
                    0,
                    number,
                    fallback,
                    &path,
                )
                .map_err(|e| Error::io("replay a segment", e))?;
                segs.push((number, base));
                break (number, base, data, rep);
            };
            let path = dir.join(segment::file_name(number, base));
            let file = vfs
                .open(&path, false)
                .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
            let len = file
                .len()
                .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
            let capacity = len.max(ctx.segment_size);
            let map = file
                .map(capacity)
                .map_err(|e| Error::io(format!("map {}", path.display()), e))?;
            let durable = match found {
                Some(m) if m.tail == number => m.durable,
                _ => 0,
            };
            let rep = match clean_tail(vfs, &dir, &map, len, capacity, number, found) {
                Some(rep) => rep,
                None => replay(&map, capacity, len, durable, number, fallback, &path)
                    .map_err(|e| Error::io(format!("replay {}", path.display()), e))?,
            };
            if !rep.header_ok {
                let meta_behind = found.is_none_or(|m| m.tail < number);
                if segs.len() > 1 && meta_behind && rep.records == 0 {
                    // A roll that never completed: the previous segment is still the tail.
                    drop(map);
                    let _ = vfs.remove_file(&path);
                    segs.pop();
                    continue;
                }
                if segs.len() == 1
                    && found.is_none_or(|m| m.durable == 0)
                    && rep.records == 0
                    && rep.corruptions.is_empty()
                {
                    // Creation never completed. (A header that replay found written whole
                    // and damaged since is corruption: it is kept and reported below.)
                    return Ok(None);
                }
                report.corruptions.push(format!(
                    "{}: segment header missing or damaged; state taken from the meta file",
                    path.display()
                ));
            }
            let data = SegmentData {
                file,
                map,
                index: SegmentIndex::default(),
                capacity,
                allocated: len,
            };
            break (number, base, data, rep);
        };

        report.segments += segs.len() as u64;
        if !rep.fast {
            report.tail_bytes_replayed += rep.index.written;
        }
        report.bytes_truncated += rep.torn_bytes;
        report.records_truncated += rep.torn_records;
        report.corruptions.extend(rep.corruptions.iter().cloned());
        let written = rep.index.written;
        let mut data = data;
        let path = dir.join(segment::file_name(number, base));
        if rep.torn_bytes > 0 {
            // Cut the torn tail; appends re-allocate (zeroed) space as they need it.
            data.file
                .set_len(written)
                .map_err(|e| Error::io(format!("truncate {}", path.display()), e))?;
            data.allocated = written;
        }
        data.index = rep.index;
        let sealed = segs
            .iter()
            .filter(|(n, _)| *n != number)
            .map(|&(n, b)| Sealed::new(n, b, None))
            .collect();
        // Records clamp the trim position they carry to themselves (`Replay::set_state`);
        // a state taken from the meta file (no usable header) is clamped to the end of the
        // log, and the meta file is rewritten below so a later open finds the same.
        let mut state = rep.state;
        let end = LogPos {
            segment: number,
            offset: written,
        };
        let clamped = clamp_trim(&mut state, end);
        if let Some(was) = clamped {
            report.corruptions.push(format!(
                "{}: trim position (segment {}, offset {}) lies beyond the end of the log; \
                 clamped to its end",
                path.display(),
                was.segment,
                was.offset
            ));
        }
        let tail = Tail { number, base, data };
        let mut stream = Stream::assemble(dir, ctx.clone(), state, sealed, tail, meta);
        stream.never_synced_at_open =
            number == 0 && found.is_none_or(|m| m.tail == 0 && m.durable == 0);
        // A tail that merely holds writes not yet fsync'd at the crash needs nothing: the
        // meta file's offset stays a valid lower bound and the next group commit fsyncs the
        // tail with whatever is appended. After repairs, the repaired tail becomes the
        // durable base (fsync, exact offset in the meta file) before anything acts on it.
        let damaged = found.is_none()
            || rep.torn_bytes > 0
            || !rep.corruptions.is_empty()
            || clamped.is_some();
        if damaged {
            if let Err(e) = stream.tail.data.file.sync_data() {
                return Err(ctx.durability.write_failed("fsync a recovered segment", e));
            }
            ctx.durability.count_fsync();
            stream.write_meta(written, true)?;
        }
        for (segment, offset, target) in rep.redo {
            // Only flag the entry the delete names: a flag written anywhere else would
            // damage another record or grow the file (and reading past its end can SIGBUS).
            match entry_at(&stream, segment, offset) {
                Some(id) if id == target => {}
                Some(_) => {
                    report.corruptions.push(format!(
                        "{}: a delete record names entry {target} at segment {segment} offset {offset}, which holds another entry; not redone",
                        stream.dir.display()
                    ));
                    continue;
                }
                // The segment is gone (trimmed) or holds no entry there.
                None => continue,
            }
            let already = segment == number
                && stream
                    .tail
                    .data
                    .map
                    .read(offset.saturating_add(record::STATE_OFFSET), 1)
                    .ok()
                    .and_then(|b| b.first().copied())
                    .is_some_and(record::is_deleted_state);
            if !already {
                stream.write_flag(segment, offset)?;
            }
        }
        // Segments entirely before the trim position (a crash between trim and unlink).
        stream.drop_trimmed_segments()?;
        stream.recover_groups(report)?;
        report.streams += 1;
        Ok(Some(stream))
    }
}
