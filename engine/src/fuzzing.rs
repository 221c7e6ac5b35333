//! Entry points for the fuzz targets in `fuzz/` and their regression tests: the private
//! record decoders, and recovery of a stream directory built from arbitrary bytes on an
//! in-memory file system. Not part of the engine's API; nothing else calls it.

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
    io,
    ops::Bound,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
};

use bytes::Bytes;

use crate::{
    group::{self, ClaimOptions, GroupStart},
    io::{MapRegion, Mapping, VFile, Vfs},
    meta::{MetaFile, MetaValue, KEY_FILE},
    record::{self, Control, Kind, StreamState},
    Direction, Engine, Entry, FsyncPolicy, IdSpec, Options, StreamId,
};

/// Largest file the in-memory file system lets grow (larger allocations fail like ENOSPC),
/// so a hostile length can never make a fuzz run allocate without bound.
pub const MAX_FILE: u64 = 8 << 20;
/// Segment size used for fuzzed directories (small, so rolls and preallocation are cheap).
pub const SEGMENT_SIZE: u64 = 64 << 10;
/// The key of the stream a fuzzed directory holds.
pub const KEY: &[u8] = b"k";
/// Entries read back per direction after recovery (bounds work per run).
const READ_LIMIT: usize = 4096;

/// An in-memory [`Vfs`]: files are byte vectors, directories a set of paths. Reading a map
/// past the file's current length panics, because a real map would raise SIGBUS there.
#[derive(Default)]
pub struct MemVfs {
    files: Mutex<BTreeMap<PathBuf, Arc<MemFile>>>,
    dirs: Mutex<BTreeSet<PathBuf>>,
}

#[derive(Default)]
struct MemFile {
    data: Arc<RwLock<Vec<u8>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn enospc() -> io::Error {
    io::Error::other("in-memory file would exceed fuzzing::MAX_FILE")
}

impl MemVfs {
    pub fn new() -> Arc<MemVfs> {
        Arc::new(MemVfs::default())
    }

    /// Creates (or replaces) a file with `bytes`, creating its directories.
    pub fn put(&self, path: &Path, bytes: &[u8]) {
        if let Some(parent) = path.parent() {
            let _ = self.create_dir_all(parent);
        }
        let file = Arc::new(MemFile {
            data: Arc::new(RwLock::new(bytes.to_vec())),
        });
        lock(&self.files).insert(path.to_path_buf(), file);
    }

    /// A file's current bytes.
    pub fn get(&self, path: &Path) -> Option<Vec<u8>> {
        let files = lock(&self.files);
        let f = files.get(path)?;
        let data = f.data.read().unwrap_or_else(|e| e.into_inner());
        Some(data.clone())
    }

    /// Every file's path and bytes.
    pub fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        lock(&self.files)
            .iter()
            .map(|(p, f)| {
                let data = f.data.read().unwrap_or_else(|e| e.into_inner());
                (p.clone(), data.clone())
            })
            .collect()
    }
}

impl Vfs for MemVfs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VFile>> {
        let mut files = lock(&self.files);
        if let Some(f) = files.get(path) {
            return Ok(f.clone());
        }
        if !create {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let f = Arc::new(MemFile::default());
        files.insert(path.to_path_buf(), f.clone());
        Ok(f)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut files = lock(&self.files);
        if let Some(f) = files.remove(from) {
            files.insert(to.to_path_buf(), f);
            return Ok(());
        }
        let mut dirs = lock(&self.dirs);
        if !dirs.contains(from) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let moved: Vec<PathBuf> = dirs
            .iter()
            .filter(|d| d.starts_with(from))
            .cloned()
            .collect();
        for d in moved {
            dirs.remove(&d);
            if let Ok(rest) = d.strip_prefix(from) {
                dirs.insert(to.join(rest));
            }
        }
        let moved: Vec<PathBuf> = files
            .keys()
            .filter(|p| p.starts_with(from))
            .cloned()
            .collect();
        for p in moved {
            if let (Some(f), Ok(rest)) = (files.remove(&p), p.strip_prefix(from)) {
                files.insert(to.join(rest), f);
            }
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        lock(&self.files)
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        lock(&self.dirs).remove(path);
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut dirs = lock(&self.dirs);
        for a in path.ancestors() {
            dirs.insert(a.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let mut names = BTreeSet::new();
        for p in lock(&self.files).keys() {
            if p.parent() == Some(path) {
                if let Some(n) = p.file_name() {
                    names.insert(n.to_os_string());
                }
            }
        }
        for d in lock(&self.dirs).iter() {
            if d.parent() == Some(path) {
                if let Some(n) = d.file_name() {
                    names.insert(n.to_os_string());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    fn is_dir(&self, path: &Path) -> bool {
        lock(&self.dirs).contains(path)
    }

    fn exists(&self, path: &Path) -> bool {
        lock(&self.files).contains_key(path) || self.is_dir(path)
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
}

impl MemFile {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<u8>> {
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<u8>> {
        self.data.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl VFile for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let data = self.read();
        let Some(rest) = usize::try_from(offset).ok().and_then(|o| data.get(o..)) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).ok_or_else(enospc)?;
        if end > MAX_FILE {
            return Err(enospc());
        }
        let mut data = self.write();
        let (start, end) = (offset as usize, end as usize);
        if data.len() < end {
            data.resize(end, 0);
        }
        if let Some(dst) = data.get_mut(start..end) {
            dst.copy_from_slice(buf);
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.read().len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if len > MAX_FILE {
            return Err(enospc());
        }
        self.write().resize(len as usize, 0);
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        if len > MAX_FILE {
            return Err(enospc());
        }
        let mut data = self.write();
        if (data.len() as u64) < len {
            data.resize(len as usize, 0);
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn map(&self, len: u64) -> io::Result<Mapping> {
        if len == 0 {
            return Ok(Mapping::Empty);
        }
        Ok(Mapping::Custom(Box::new(MemMap {
            data: self.data.clone(),
            len,
        })))
    }
}

/// A map of a [`MemFile`]: shares its bytes, so later writes show through as in a real map.
struct MemMap {
    data: Arc<RwLock<Vec<u8>>>,
    len: u64,
}

impl MapRegion for MemMap {
    fn read(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        let end = offset
            .checked_add(len as u64)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let data = self.data.read().unwrap_or_else(|e| e.into_inner());
        assert!(
            end <= data.len() as u64,
            "map read [{offset}, {end}) past the file's end {} would raise SIGBUS",
            data.len()
        );
        Ok(Cow::Owned(
            data.get(offset as usize..end as usize)
                .unwrap_or_default()
                .to_vec(),
        ))
    }
}

/// Runs every record decoder over `data` and checks that what decodes re-encodes faithfully:
/// the engine's record framing (scanning like recovery's resync) and bodies (entries and
/// control records), the group journal's framing and bodies, and the group checkpoint. Each
/// body is also tried with a valid CRC added, so the decoders behind the CRC get exercised.
pub fn decode_records(data: &[u8]) {
    let (selector, body) = data.split_first().unwrap_or((&0, &[]));
    let mut at = 0;
    while let Some(rest) = data.get(at..).filter(|r| !r.is_empty()) {
        match record::decode(rest) {
            Ok((h, body)) => {
                check_engine_body(h.kind, body);
                at += usize::try_from(h.record_len()).unwrap_or(usize::MAX).max(1);
            }
            Err(_) => at += 1,
        }
    }
    if !body.is_empty() && body.len() <= record::MAX_BODY as usize {
        let kinds = [
            Kind::Header,
            Kind::Entry,
            Kind::Delete,
            Kind::Trim,
            Kind::SetId,
            Kind::Blob,
        ];
        let kind = kinds[usize::from(*selector) % kinds.len()];
        let mut out = Vec::new();
        record::encode(&mut out, kind, body);
        let (h, decoded) = record::decode(&out).expect("a freshly encoded record decodes");
        assert_eq!((h.kind, decoded), (kind, body));
        check_engine_body(kind, body);
    }

    let mut at = 0;
    while let Some(rest) = data.get(at..).filter(|r| !r.is_empty()) {
        match group::record::decode(rest) {
            group::record::Decode::Record(r, len) => {
                check_journal_record(&r);
                at += len.max(1);
            }
            group::record::Decode::Invalid => at += 1,
        }
    }
    if !body.is_empty() && body.len() <= group::record::MAX_BODY {
        let mut framed = Vec::new();
        group::record::frame(body, &mut framed);
        if let group::record::Decode::Record(r, len) = group::record::decode(&framed) {
            assert_eq!(len, framed.len());
            check_journal_record(&r);
        }
    }

    if let Ok((set, epoch)) = group::checkpoint::decode(data) {
        check_checkpoint(&set, epoch);
    }
    if let Ok((set, epoch)) = group::checkpoint::decode(&seal_checkpoint(body)) {
        check_checkpoint(&set, epoch);
    }
}

fn check_engine_body(kind: Kind, body: &[u8]) {
    if let Some(c) = Control::decode(kind, body) {
        let mut again = Vec::new();
        c.encode_body(&mut again);
        assert_eq!(again, body, "control record does not re-encode to its body");
    }
    let _ = record::entry_id(body);
    if let Some(e) = record::entry_ref(body).map(|e| e.to_entry()) {
        let mut again = Vec::new();
        record::encode_entry(&mut again, e.id, &e.fields);
        assert_eq!(
            again.get(record::HEADER_LEN..),
            Some(body),
            "entry does not re-encode to its body"
        );
    }
}

fn check_journal_record(r: &group::record::Record) {
    let mut again = Vec::new();
    group::record::encode(r, &mut again);
    match group::record::decode(&again) {
        group::record::Decode::Record(back, len) => {
            assert_eq!(&back, r, "journal record changes across a re-encode");
            assert_eq!(len, again.len());
        }
        group::record::Decode::Invalid => panic!("a re-encoded journal record does not decode"),
    }
}

fn check_checkpoint(set: &group::state::GroupSet, epoch: u64) {
    let again = group::checkpoint::encode(set, epoch);
    let back = group::checkpoint::decode(&again).expect("a re-encoded checkpoint decodes");
    assert_eq!(&back.0, set, "checkpoint changes across a re-encode");
    assert_eq!(back.1, epoch);
}

/// A checkpoint file holding `body` with a valid header and CRC.
pub fn seal_checkpoint(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&group::checkpoint::MAGIC.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&out);
    h.update(body);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// A group journal record framing `body` with a valid CRC.
pub fn seal_journal_record(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    group::record::frame(body, &mut out);
    out
}

/// An engine record of kind byte `kind` (any value, valid or not) and state byte `state`
/// around `body`, with a valid CRC.
pub fn seal_record(kind: u8, state: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    record::encode(&mut out, Kind::Blob, body);
    if let Some(b) = out.get_mut(4) {
        *b = kind;
    }
    let mut h = crc32fast::Hasher::new();
    h.update(out.get(..5).unwrap_or_default());
    h.update(out.get(6..12).unwrap_or_default());
    h.update(body);
    let crc = h.finalize().to_le_bytes();
    if let Some(slot) = out.get_mut(12..16) {
        slot.copy_from_slice(&crc);
    }
    if let Some(b) = out.get_mut(5) {
        *b = state;
    }
    out
}

/// The files of one stream directory, besides its key file (always written, valid).
#[derive(Clone, Debug, Default)]
pub struct StreamImage {
    /// Segment files: sequence number, base ID and bytes.
    pub segments: Vec<(u64, StreamId, Vec<u8>)>,
    /// The meta file: tail segment number, fsync'd offset of the tail, and the stream
    /// state snapshot (last ID ms/seq, max-deleted ms/seq, entries-added, length, trim
    /// segment, trim offset); written with a valid CRC.
    pub meta: Option<(u64, u64, [u64; 8])>,
    /// The tail's saved index file (`<number>.idx`), as raw bytes.
    pub index: Option<(u64, Vec<u8>)>,
    pub journal: Option<Vec<u8>>,
    pub checkpoint: Option<Vec<u8>>,
    /// Other files of the directory, by name, as raw bytes (e.g. a real meta file).
    pub files: Vec<(String, Vec<u8>)>,
}

/// What [`recover`] found.
#[derive(Debug, Default)]
pub struct Recovered {
    pub opened: bool,
    pub entries: usize,
    pub groups: usize,
    pub corruptions: usize,
}

fn data_dir() -> PathBuf {
    PathBuf::from("/fuzz")
}

fn stream_dir() -> PathBuf {
    data_dir().join("db0").join(crate::engine::escape_key(KEY))
}

fn options() -> Options {
    Options {
        fsync: FsyncPolicy::No,
        segment_size: SEGMENT_SIZE,
        databases: 1,
    }
}

/// Writes `image` into a fresh in-memory data directory.
pub fn image_vfs(image: &StreamImage) -> Arc<MemVfs> {
    let vfs = MemVfs::new();
    let dyn_vfs: Arc<dyn Vfs> = vfs.clone();
    let dir = stream_dir();
    let _ = vfs.create_dir_all(&dir);
    let _ = crate::meta::write_key_file(&dyn_vfs, &dir.join(KEY_FILE), 0, KEY);
    for (number, base, bytes) in &image.segments {
        vfs.put(&dir.join(crate::segment::file_name(*number, *base)), bytes);
    }
    if let Some((tail, durable, s)) = image.meta {
        let mut raw = Vec::with_capacity(64);
        for v in s {
            record::put_u64(&mut raw, v);
        }
        let state = StreamState::decode(&mut record::Reader::new(&raw)).unwrap_or_default();
        if let Ok((mut meta, _)) = MetaFile::open(&dyn_vfs, &dir) {
            let _ = meta.write(
                &dyn_vfs,
                &dir,
                MetaValue {
                    tail,
                    durable,
                    expire: None,
                    state,
                },
            );
        }
    }
    if let Some((number, bytes)) = &image.index {
        vfs.put(&dir.join(crate::segment::index_file_name(*number)), bytes);
    }
    if let Some(j) = &image.journal {
        vfs.put(&dir.join(group::store::JOURNAL_FILE), j);
    }
    if let Some(c) = &image.checkpoint {
        vfs.put(&dir.join(group::store::CHECKPOINT_FILE), c);
    }
    for (name, bytes) in &image.files {
        vfs.put(&dir.join(name), bytes);
    }
    vfs
}

/// Opens a data directory holding `image` (recovery), reads everything back, writes a little
/// (an entry, a group delivery and ack), closes, reopens and checks the second open sees the
/// same entries and groups. Recovery may refuse the directory with an error; it must never
/// panic, hang, serve a record that fails its CRC, or lose what the first open showed.
pub fn recover(image: &StreamImage) -> Recovered {
    let vfs = image_vfs(image);
    let mut out = Recovered::default();
    let Ok((mut engine, report)) = Engine::open_with(vfs.clone(), data_dir(), options()) else {
        return out;
    };
    out.opened = true;
    out.corruptions = report.corruptions.len();
    let before = read_back(&mut engine, true);
    out.entries = before.0.len();
    out.groups = before.1.len();
    let meta = engine.stream(0, KEY).map(|s| s.meta());
    let length = meta.as_ref().map_or(0, |m| m.length);
    if engine.close().is_err() {
        return out;
    }
    let Ok((mut engine, _)) = Engine::open_with(vfs, data_dir(), options()) else {
        panic!("a directory recovery produced and closed cleanly fails to reopen");
    };
    let after = read_back(&mut engine, false);
    let meta_after = engine.stream(0, KEY).map(|s| s.meta());
    // Only a self-consistent log must reopen identically: CRC-valid records whose entry IDs
    // do not increase (which no sequence of commands writes) let the groups be clamped to a
    // last ID below entries they were given.
    // Likewise a crafted length counter need not match the entries.
    let increasing = before.0.windows(2).all(|w| w[0].id < w[1].id);
    let counted = before.0.len() >= READ_LIMIT || before.0.len() as u64 == length;
    if increasing && counted {
        // Lag and entries-read are estimates from counters a crafted record can make
        // inconsistent (see fuzz/FINDINGS.md): compare the groups' durable state only.
        let durable = |s: &Snapshot| -> Vec<_> {
            s.1.iter()
                .map(|g| (g.name.clone(), g.consumers, g.pending, g.last_delivered_id))
                .collect()
        };
        assert_eq!(before.0, after.0, "entries differ after a clean reopen");
        assert_eq!(
            durable(&before),
            durable(&after),
            "groups differ after a clean reopen"
        );
        assert_eq!(
            meta, meta_after,
            "stream counters differ after a clean reopen"
        );
    } else {
        assert_eq!(before.0, after.0, "entries differ after a clean reopen");
    }
    let _ = engine.close();
    out
}

type Snapshot = (Vec<Entry>, Vec<group::GroupInfo>);

/// Reads the stream's entries both ways and its groups; with `write`, first appends an
/// entry and exercises the first group. Returns what a later reopen must see again.
fn read_back(engine: &mut Engine, write: bool) -> Snapshot {
    let Some(stream) = engine.stream_mut(0, KEY) else {
        return (Vec::new(), Vec::new());
    };
    let mut added = None;
    if write {
        let now = 1_700_000_000_000;
        let fields = [(Bytes::from_static(b"f"), Bytes::from_static(b"v"))];
        added = stream
            .add(IdSpec::Auto, &fields, now)
            .ok()
            .map(|(id, _)| id);
        let group = stream.groups().first().map(|g| g.name.clone());
        let group = group.unwrap_or_else(|| Bytes::from_static(b"fuzz-g"));
        let _ = stream.create_group(&group, StreamId::MIN, None);
        if let Ok((got, _)) = stream.read_group(&group, b"c", GroupStart::New, Some(2), false, now)
        {
            let ids: Vec<StreamId> = got.iter().map(|d| d.id).collect();
            let _ = stream.ack(&group, ids.get(..1).unwrap_or_default());
        }
        let _ = stream.read_group(
            &group,
            b"c",
            GroupStart::History(StreamId::MIN),
            Some(8),
            false,
            now,
        );
        let opts = ClaimOptions {
            idle_ms: None,
            time_ms: None,
            retry_count: None,
            force: false,
            just_id: false,
            last_id: None,
        };
        let _ = stream.claim(&group, b"d", 0, &[StreamId::MIN], &opts, now);
    }
    let _ = stream.meta();
    let _ = stream.first_entry();
    let _ = stream.last_entry();
    let forward = stream.range(
        Bound::Unbounded,
        Bound::Unbounded,
        READ_LIMIT,
        Direction::Forward,
    );
    let backward = stream.range(
        Bound::Unbounded,
        Bound::Unbounded,
        READ_LIMIT,
        Direction::Backward,
    );
    // A read may refuse with a corruption error (damage that could lie in its range) where
    // the other direction never meets the damage; what both serve must agree. (Reading an
    // error as "no entries" made a refused forward read look like lost entries.)
    if let (Ok(forward), Ok(backward)) = (&forward, &backward) {
        if forward.len() < READ_LIMIT {
            let mut reversed = backward.clone();
            reversed.reverse();
            assert_eq!(*forward, reversed, "forward and backward reads disagree");
        }
    }
    // XADD must never answer with an ID that no read returns (in a log whose IDs increase:
    // crafted out-of-order IDs defeat lookups by ID).
    if let (Some(id), Ok(forward)) = (added, &forward) {
        let increasing = forward.windows(2).all(|w| w[0].id < w[1].id);
        if increasing && forward.len() < READ_LIMIT {
            assert!(
                forward.iter().any(|e| e.id == id),
                "an entry added after recovery is not readable"
            );
        }
    }
    let forward = forward.unwrap_or_default();
    let groups = stream.groups();
    for g in &groups {
        let _ = stream.consumers(&g.name);
        let _ = stream.pending_summary(&g.name);
        let _ = stream.pending(
            &g.name,
            Bound::Unbounded,
            Bound::Unbounded,
            READ_LIMIT,
            None,
            None,
            0,
        );
    }
    (forward, groups)
}

/// Most bytes a fuzz input may expand to (zero fills), so one input stays cheap.
const MAX_IMAGE: usize = 1 << 20;
/// Most segment files a fuzz input may describe.
const MAX_SEGMENTS: u64 = 4;

/// Splits a fuzz input into chunks `tag (1) | length (2, LE) | payload`; a payload cut short
/// by the end of the input is taken as it is.
fn chunks(mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while let Some((&tag, rest)) = data.split_first() {
        let len = match rest {
            [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
            _ => 0,
        };
        let rest = rest.get(2..).unwrap_or_default();
        let (payload, next) = rest.split_at(len.min(rest.len()));
        out.push((tag, payload));
        data = next;
    }
    out
}

fn push_chunk(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    for part in payload.chunks(usize::from(u16::MAX)) {
        out.push(tag);
        out.extend_from_slice(&(part.len() as u16).to_le_bytes());
        out.extend_from_slice(part);
    }
    if payload.is_empty() {
        out.extend_from_slice(&[tag, 0, 0]);
    }
}

/// Chunk tags of the `segment_recovery` input (see [`segment_image`]).
pub mod seg_tag {
    /// `0x00..=0x7F`: a record with a valid CRC: kind = tag & 7, deleted state if tag & 8.
    pub const RECORD: u8 = 0x00;
    pub const DELETED: u8 = 0x08;
    /// Raw bytes.
    pub const RAW: u8 = 0x80;
    /// Start the next segment file; an optional 16-byte payload is its base ID (ms, seq LE).
    pub const NEXT_SEGMENT: u8 = 0xA0;
    /// `0xC0..=0xFF`: 4 KiB × (1 + tag & 0x1F) zero bytes (preallocated space); the
    /// payload is ignored.
    pub const ZEROS: u8 = 0xC0;
}

/// Builds a stream directory from a `segment_recovery` fuzz input: a flags byte (bit 0: a
/// meta file, then 4 bytes of its fsync'd offset; bit 1: the meta file names the segment
/// before the last as tail), then chunks (see [`seg_tag`]) making up segment files.
pub fn segment_image(data: &[u8]) -> StreamImage {
    let (flags, mut rest) = data.split_first().map_or((0, data), |(f, r)| (*f, r));
    let mut durable = None;
    if flags & 1 != 0 {
        let mut b = [0u8; 4];
        let n = rest.len().min(4);
        b[..n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        durable = Some(u64::from(u32::from_le_bytes(b)));
    }
    let mut segments: Vec<(u64, StreamId, Vec<u8>)> = vec![(0, StreamId::MIN, Vec::new())];
    let mut total = 0usize;
    for (tag, payload) in chunks(rest) {
        let Some(seg) = segments.last_mut() else {
            break;
        };
        let bytes = match tag {
            0x00..=0x7F => {
                let state = if tag & seg_tag::DELETED != 0 {
                    record::STATE_DELETED
                } else {
                    record::STATE_LIVE
                };
                seal_record(tag & 7, state, payload)
            }
            0x80..=0x9F => payload.to_vec(),
            0xA0..=0xBF => {
                let n = seg.0 + 1;
                if n >= MAX_SEGMENTS {
                    continue;
                }
                let mut r = record::Reader::new(payload);
                let base = r.id().unwrap_or(StreamId::MIN);
                segments.push((n, base, Vec::new()));
                continue;
            }
            _ => vec![0u8; 4096 * (1 + usize::from(tag & 0x1F))],
        };
        total += bytes.len();
        if total > MAX_IMAGE {
            break;
        }
        seg.2.extend_from_slice(&bytes);
    }
    let last = segments.last().map_or(0, |s| s.0);
    let meta = durable.map(|d| {
        let tail = if flags & 2 != 0 {
            last.saturating_sub(1)
        } else {
            last
        };
        (tail, d, [0u64; 8])
    });
    StreamImage {
        segments,
        meta,
        ..StreamImage::default()
    }
}

/// Chunk tags of the `group_recovery` input (see [`group_image`]), taken modulo 4.
pub mod group_tag {
    /// A journal record with a valid CRC around the payload, appended to the journal.
    pub const JOURNAL_RECORD: u8 = 0;
    /// Raw bytes appended to the journal.
    pub const JOURNAL_RAW: u8 = 1;
    /// The checkpoint: a valid header and CRC around the payload.
    pub const CHECKPOINT: u8 = 2;
    /// The checkpoint as raw bytes.
    pub const CHECKPOINT_RAW: u8 = 3;
}

/// Builds a stream directory from a `group_recovery` fuzz input: a real stream (written by
/// the engine: entries, deletions) plus a group journal and checkpoint made of the input's
/// chunks (see [`group_tag`]).
pub fn group_image(data: &[u8]) -> StreamImage {
    let mut image = base_stream().clone();
    let mut journal: Option<Vec<u8>> = None;
    for (tag, payload) in chunks(data) {
        match tag % 4 {
            group_tag::JOURNAL_RECORD => journal
                .get_or_insert_with(Vec::new)
                .extend_from_slice(&seal_journal_record(payload)),
            group_tag::JOURNAL_RAW => journal
                .get_or_insert_with(Vec::new)
                .extend_from_slice(payload),
            group_tag::CHECKPOINT => image.checkpoint = Some(seal_checkpoint(payload)),
            _ => image.checkpoint = Some(payload.to_vec()),
        }
    }
    image.journal = journal;
    image
}

/// The stream every `group_recovery` input starts from (built once).
fn base_stream() -> &'static StreamImage {
    static BASE: std::sync::OnceLock<StreamImage> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let files = sample_dir(20, false);
        let mut image = StreamImage::default();
        for (name, bytes) in files {
            if name == group::store::JOURNAL_FILE || name == group::store::CHECKPOINT_FILE {
                continue;
            }
            if let Some((n, base)) = crate::segment::parse_file_name(&name) {
                image.segments.push((n, base, bytes));
            } else if name != KEY_FILE {
                image.files.push((name, bytes));
            }
        }
        image
    })
}

/// A stream directory written by the engine: `entries` entries (IDs `1-0`, `2-0`, ...) some
/// deleted, a group `g` with two consumers, deliveries and an ack; with `checkpoint`, the
/// groups are checkpointed halfway. Returns the directory's files by name.
pub fn sample_dir(entries: u64, checkpoint: bool) -> Vec<(String, Vec<u8>)> {
    let vfs = MemVfs::new();
    let opts = Options {
        fsync: FsyncPolicy::No,
        segment_size: 4096,
        databases: 1,
    };
    if let Ok((mut engine, _)) = Engine::open_with(vfs.clone(), data_dir(), opts) {
        if let Ok((stream, _)) = engine.create_stream(0, KEY) {
            let _ = stream.create_group(b"g", StreamId::MIN, None);
            for i in 1..=entries {
                let value = Bytes::from(format!("value-{i}"));
                let fields = [(Bytes::from_static(b"field"), value)];
                let _ = stream.add(IdSpec::Explicit(StreamId::new(i, 0)), &fields, i);
                if i % 7 == 0 {
                    let _ = stream.delete(&[StreamId::new(i - 1, 0)]);
                }
                if i % 5 == 0 {
                    let consumer: &[u8] = if i % 10 == 0 { b"alice" } else { b"bob" };
                    let _ = stream.read_group(b"g", consumer, GroupStart::New, Some(3), false, i);
                    let _ = stream.ack(b"g", &[StreamId::new(i - 4, 0)]);
                }
                if checkpoint && i == entries / 2 {
                    let _ = stream.checkpoint_groups();
                }
            }
        }
        let _ = engine.close();
    }
    let dir = stream_dir();
    vfs.snapshot()
        .into_iter()
        .filter(|(p, _)| p.parent() == Some(dir.as_path()))
        .filter_map(|(p, b)| Some((p.file_name()?.to_str()?.to_string(), b)))
        .collect()
}

/// Rewrites segment bytes as `segment_recovery` chunks: each valid record as a record chunk,
/// anything else as raw bytes, trailing zeros dropped.
pub fn segment_chunks(bytes: &[u8]) -> Vec<u8> {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let bytes = bytes.get(..end).unwrap_or_default();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(rest) = bytes.get(at..).filter(|r| !r.is_empty()) {
        match record::decode(rest) {
            Ok((h, body)) => {
                let mut tag = h.kind as u8;
                if record::is_deleted_state(h.state) {
                    tag |= seg_tag::DELETED;
                }
                push_chunk(&mut out, tag, body);
                at += h.record_len() as usize;
            }
            Err(_) => {
                push_chunk(&mut out, seg_tag::RAW, rest);
                break;
            }
        }
    }
    out
}

/// Rewrites a group journal as `group_recovery` chunks (valid records as record chunks, the
/// rest raw), followed by the checkpoint's body if there is one.
pub fn group_chunks(journal: &[u8], checkpoint: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(rest) = journal.get(at..).filter(|r| !r.is_empty()) {
        match group::record::decode(rest) {
            group::record::Decode::Record(_, len) => {
                let body = rest.get(group::record::HEADER_LEN..len).unwrap_or_default();
                push_chunk(&mut out, group_tag::JOURNAL_RECORD, body);
                at += len;
            }
            group::record::Decode::Invalid => {
                push_chunk(&mut out, group_tag::JOURNAL_RAW, rest);
                break;
            }
        }
    }
    if let Some(c) = checkpoint {
        push_chunk(
            &mut out,
            group_tag::CHECKPOINT,
            c.get(16..).unwrap_or_default(),
        );
    }
    out
}
