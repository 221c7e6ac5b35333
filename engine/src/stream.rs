//! One stream: its segments (sealed ones loaded lazily, one open tail), its persistent state
//! counters, and append / read / delete / trim / set-id.
//!
//! Invariants the read path relies on:
//! - inside a segment, entry IDs increase (an XSETID that lowers the last ID rolls the tail
//!   first, so out-of-order IDs never share a segment);
//! - every live entry of segment `i` lies in `[base(i), base(i+1)]`; segments holding no live
//!   entry may have any base, so routing scans the (few) segments linearly instead of
//!   bisecting their bases;
//! - an entry is live unless its state byte says deleted, its location is in `pending_deletes`
//!   (deleted, flag not yet written because the delete record is not yet fsync'd), or it is
//!   at or below the trim point.

use std::{
    collections::{BTreeMap, BTreeSet},
    ops::Bound,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use bytes::Bytes;

use crate::{
    durability::Durability,
    io::{VFile, Vfs},
    logfile::rewrite_atomic,
    meta::{MetaFile, MetaValue},
    record::{
        self, Control, DeleteTarget, EntryRef, LogPos, StreamState, STATE_DELETED, STATE_OFFSET,
    },
    segment::{self, RawRecord, SegmentData, View},
    write_behind::TailWrites,
    Direction, Entry, Error, IdSpec, Lsn, Result, StreamId, StreamMeta, TrimSpec, TrimStrategy,
};

/// Deletes whose flag is still unwritten beyond this count are forced out with an fsync of
/// the tail, bounding the in-memory set.
const PENDING_LIMIT: usize = 4096;
/// The meta file's durable offset is rewritten when it advanced by at least this much.
const META_STEP: u64 = 64 << 10;
/// Largest batch of entries `add_batch` encodes and writes at once.
const BATCH_WRITE_MAX: u64 = 1 << 20;

/// What every stream shares with the engine.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub vfs: Arc<dyn Vfs>,
    pub durability: Arc<Durability>,
    pub segment_size: u64,
}

pub(crate) struct Sealed {
    pub number: u64,
    pub base: StreamId,
    /// Open file, map and index, loaded on first use and dropped again when more than
    /// [`MAX_LOADED_SEALED`] are loaded (least recently used first).
    pub data: Mutex<Option<Arc<SegmentData>>>,
    pub last_used: AtomicU64,
    /// Cached `(live entries, greatest entry ID)`, so approximate trims do not rescan a
    /// segment on every XADD; kept exact by deletes and dropped when a trim cuts into it.
    pub counts: Mutex<Option<(u64, Option<StreamId>)>>,
}

impl Sealed {
    pub(crate) fn new(number: u64, base: StreamId, data: Option<Arc<SegmentData>>) -> Sealed {
        Sealed {
            number,
            base,
            data: Mutex::new(data),
            last_used: AtomicU64::new(0),
            counts: Mutex::new(None),
        }
    }
}

/// Sealed segments kept open (file descriptor + map + index) per stream.
const MAX_LOADED_SEALED: usize = 16;

pub(crate) struct Tail {
    pub number: u64,
    pub base: StreamId,
    pub data: SegmentData,
}

/// A delete whose record is written but whose in-place flag is not (yet).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingDelete {
    pub lsn: Lsn,
    pub segment: u64,
    pub offset: u64,
}

/// One stream: its entries on disk and its consumer groups.
pub struct Stream {
    pub(crate) dir: PathBuf,
    pub(crate) ctx: Ctx,
    pub(crate) state: StreamState,
    pub(crate) sealed: Vec<Sealed>,
    pub(crate) tail: Tail,
    /// Keyed by `(segment, offset)`, not ID: after an XSETID lowers the last ID, a new entry
    /// may reuse the ID of an old, deleted one.
    pub(crate) pending_deletes: BTreeMap<(u64, u64), PendingDelete>,
    /// Smallest Lsn in `pending_deletes` (they are only due once it is fsync'd).
    pub(crate) pending_min_lsn: Option<Lsn>,
    /// Segments holding flag writes not yet fsync'd (synced before a roll).
    pub(crate) flag_dirty: BTreeSet<u64>,
    pub(crate) meta: MetaFile,
    /// The tail's file writes: buffered appends (write-behind) and the meta file's next
    /// durable offset.
    pub(crate) writes: Arc<TailWrites>,
    /// `(tail, written)` of the last tail index file saved by `sync`.
    pub(crate) tail_index_saved: Option<(u64, u64)>,
    /// Clock for the sealed segments' LRU.
    use_tick: AtomicU64,
    /// Cached ID of the first live entry (`None` = unknown).
    pub(crate) first_cache: Mutex<Option<StreamId>>,
    /// Where the last few forward scans stopped, so the next one for later IDs (XREADGROUP
    /// `>` reading on from the previous batch) starts there instead of at an index point.
    /// Several, because a look ahead for one new entry (has-new-entries) must not displace
    /// the position the group's next read starts from.
    seek_hints: Mutex<[Option<SeekHint>; SEEK_HINTS]>,
    scratch: Vec<u8>,
    /// Consumer groups: state plus journal/checkpoint in `dir` (loaded by `recover_groups`).
    pub(crate) groups: crate::group::store::GroupStore,
    /// Found at open with only its first segment and a meta file never advanced past
    /// creation: nothing of it was fsync'd apart from a group commit.
    pub(crate) never_synced_at_open: bool,
    /// The key file, until it is known to be fsync'd: a roll or `sync` fsyncs the stream
    /// directory and other files directly, so it fsyncs this first (recovery must never see
    /// a stream that was made durable without its key).
    pub(crate) key_file_unsynced: Option<Arc<dyn VFile>>,
}

/// A damaged record met while scanning for IDs in `[lo, hi]`. Entries in a segment are
/// ordered, so if it was an entry its ID lies between the valid entries around it: it is
/// reported (as the scan's error) only if that gap meets the range, so reads that cannot
/// include it, like those of the entries after it, still succeed.
struct Damage {
    lo: StreamId,
    hi: StreamId,
    /// Last valid entry ID before the damage.
    prev: Option<StreamId>,
    pending: Option<Error>,
}

impl Damage {
    fn new(lo: StreamId, hi: StreamId) -> Damage {
        Damage {
            lo,
            hi,
            prev: None,
            pending: None,
        }
    }

    /// A record failed: corruption waits for the next entry to place it; other errors out.
    fn bad(&mut self, err: Error) -> Result<()> {
        if !matches!(err, Error::Corruption { .. }) {
            return Err(err);
        }
        if self.pending.is_none() && self.prev.is_none_or(|p| p < self.hi) {
            self.pending = Some(err);
        }
        Ok(())
    }

    /// A valid entry: damage before it (and after `prev`) matters if `id` is above `lo`.
    fn entry(&mut self, id: StreamId) -> Result<()> {
        if let Some(err) = self.pending.take() {
            if id > self.lo {
                return Err(err);
            }
        }
        self.prev = Some(id);
        Ok(())
    }

    /// End of the records scanned: damage after the last entry may be in the range.
    fn end(self) -> Result<()> {
        match self.pending {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// A position in a segment after a live entry: every live entry before `offset` in segment
/// `segment` has an ID ≤ `id` (live IDs grow in log order: XSETID cannot go below the last
/// live entry), so a scan for IDs > `id` may start at `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SeekHint {
    segment: u64,
    offset: u64,
    id: StreamId,
}

/// Seek hints kept per stream (most recent first).
const SEEK_HINTS: usize = 4;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Inclusive ID bounds from a pair of `Bound`s; `None` if the range is empty.
fn inclusive(start: Bound<StreamId>, end: Bound<StreamId>) -> Option<(StreamId, StreamId)> {
    let lo = match start {
        Bound::Included(x) => x,
        Bound::Excluded(x) => x.next()?,
        Bound::Unbounded => StreamId::MIN,
    };
    let hi = match end {
        Bound::Included(x) => x,
        Bound::Excluded(x) => x.prev()?,
        Bound::Unbounded => StreamId::MAX,
    };
    (lo <= hi).then_some((lo, hi))
}

/// The ID XADD assigns after `last` for `spec`, or why it cannot.
fn next_id_after(last: StreamId, spec: IdSpec, now_ms: u64) -> Result<StreamId> {
    if last == StreamId::MAX {
        return Err(Error::IdExhausted);
    }
    let id = match spec {
        IdSpec::Auto => {
            if now_ms > last.ms {
                StreamId::new(now_ms, 0)
            } else {
                last.next().ok_or(Error::IdExhausted)?
            }
        }
        IdSpec::AutoSeq(ms) => {
            if ms == last.ms {
                if last.seq == u64::MAX {
                    return Err(Error::IdTooSmall);
                }
                StreamId::new(ms, last.seq + 1)
            } else {
                StreamId::new(ms, 0)
            }
        }
        IdSpec::Explicit(id) => {
            if id == StreamId::MIN {
                return Err(Error::IdZero);
            }
            id
        }
    };
    if id <= last {
        return Err(Error::IdTooSmall);
    }
    Ok(id)
}

impl Stream {
    pub(crate) fn assemble(
        dir: PathBuf,
        ctx: Ctx,
        state: StreamState,
        sealed: Vec<Sealed>,
        tail: Tail,
        meta: MetaFile,
    ) -> Stream {
        let groups = Stream::empty_groups(&ctx, &dir);
        let writes = TailWrites::new(tail.data.file.clone(), tail.number, "append to a segment");
        Stream {
            groups,
            dir,
            ctx,
            state,
            sealed,
            tail,
            pending_deletes: BTreeMap::new(),
            pending_min_lsn: None,
            flag_dirty: BTreeSet::new(),
            meta,
            writes,
            tail_index_saved: None,
            use_tick: AtomicU64::new(0),
            first_cache: Mutex::new(None),
            seek_hints: Mutex::new([None; SEEK_HINTS]),
            scratch: Vec::new(),
            never_synced_at_open: false,
            key_file_unsynced: None,
        }
    }

    /// Fsyncs the key file if it may not be durable yet.
    fn sync_key_file(&mut self) -> Result<()> {
        if let Some(file) = self.key_file_unsynced.take() {
            if let Err(e) = file.sync_data() {
                return Err(self.ctx.durability.write_failed("fsync a key file", e));
            }
            self.ctx.durability.count_fsync();
        }
        Ok(())
    }

    /// Rewrites a key file that recovery found incomplete, and fsyncs it.
    pub(crate) fn rewrite_key_file(&mut self, db: u32, key: &[u8]) -> Result<()> {
        let path = self.dir.join(crate::meta::KEY_FILE);
        let file = match crate::meta::write_key_file(&self.ctx.vfs, &path, db, key) {
            Ok(f) => f,
            Err(e) => return Err(self.ctx.durability.write_failed("rewrite a key file", e)),
        };
        self.ctx.durability.wrote(&file, key.len() as u64);
        self.key_file_unsynced = Some(file);
        self.sync_key_file()
    }

    /// See [`Stream::never_synced_at_open`].
    pub(crate) fn never_synced(&self) -> bool {
        self.never_synced_at_open
    }

    /// The stream's directory (for the consumer-group journal and checkpoint files).
    /// It changes on RENAME: re-read it for every file operation, never cache it.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file system every stream file goes through.
    pub(crate) fn vfs(&self) -> &Arc<dyn Vfs> {
        &self.ctx.vfs
    }

    /// Group commit: writes to auxiliary files call `durability().wrote(file, n)` for their Lsn.
    pub(crate) fn durability(&self) -> &Arc<Durability> {
        &self.ctx.durability
    }

    /// Opens (creating) the journal `name` in the stream's directory and returns it with
    /// the payloads of its valid records, in order (see [`crate::logfile::LogFile`]).
    /// Names must not be `key` or `meta` nor end in `.seg`, `.idx` or `.tmp` (the engine's
    /// own files; `*.tmp` are deleted at open).
    #[allow(dead_code)] // used by group.rs (consumer-group journal)
    pub(crate) fn open_log(
        &self,
        name: &str,
    ) -> Result<(
        crate::logfile::LogFile,
        Vec<Vec<u8>>,
        crate::logfile::LogRecovery,
    )> {
        crate::logfile::LogFile::open(&self.ctx.vfs, &self.ctx.durability, &self.dir, name)
    }

    /// Atomically replaces the small file `name` in the stream's directory (temp file,
    /// fsync, rename, directory fsync), e.g. a consumer-group checkpoint. A failure poisons
    /// the engine, like any failed fsync.
    #[allow(dead_code)] // used by group.rs (consumer-group checkpoint)
    pub(crate) fn rewrite_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.ctx.durability.check()?;
        rewrite_atomic(&self.ctx.vfs, &self.dir, name, bytes, true)
            .map_err(|e| self.ctx.durability.write_failed("rewrite a stream file", e))?;
        self.ctx.durability.count_fsync();
        Ok(())
    }

    /// Reads the small file `name` of the stream's directory, `None` if it does not exist.
    #[allow(dead_code)] // used by group.rs (consumer-group checkpoint)
    pub(crate) fn read_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        crate::logfile::read_file(&self.ctx.vfs, &self.dir.join(name))
    }

    pub fn len(&self) -> u64 {
        self.state.length
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last generated ID (XINFO's last-generated-id).
    pub fn last_id(&self) -> StreamId {
        self.state.last_id
    }

    pub fn meta(&self) -> StreamMeta {
        StreamMeta {
            length: self.state.length,
            last_generated_id: self.state.last_id,
            max_deleted_entry_id: self.state.max_deleted,
            entries_added: self.state.entries_added,
            recorded_first_entry_id: self.first_id().unwrap_or(StreamId::MIN),
            segments: self.sealed.len() as u64 + 1,
        }
    }

    /// ID of the first live entry (0-0 when empty), cached.
    fn first_id(&self) -> Result<StreamId> {
        if self.state.length == 0 {
            return Ok(StreamId::MIN);
        }
        if let Some(id) = *lock(&self.first_cache) {
            return Ok(id);
        }
        let id = self.first_entry()?.map_or(StreamId::MIN, |e| e.id);
        *lock(&self.first_cache) = Some(id);
        Ok(id)
    }

    pub fn first_entry(&self) -> Result<Option<Entry>> {
        Ok(self
            .range(Bound::Unbounded, Bound::Unbounded, 1, Direction::Forward)?
            .pop())
    }

    pub fn last_entry(&self) -> Result<Option<Entry>> {
        Ok(self
            .range(Bound::Unbounded, Bound::Unbounded, 1, Direction::Backward)?
            .pop())
    }

    /// The ID XADD would assign, validated against the last ID.
    fn next_id(&self, spec: IdSpec, now_ms: u64) -> Result<StreamId> {
        next_id_after(self.state.last_id, spec, now_ms)
    }

    /// XADD of several entries with one write to the tail: each entry gets the ID (or the
    /// error) `add` would have given it in turn, and the records of those that succeed go to
    /// disk together, sharing one Lsn. An error from the write fails them all (nothing of
    /// the batch is then in the stream's state). Batches over `BATCH_WRITE_MAX` run as one
    /// `add` per entry instead, each with its own outcome.
    pub fn add_batch(
        &mut self,
        entries: &[(IdSpec, &[(Bytes, Bytes)])],
        now_ms: u64,
    ) -> Result<(Vec<Result<StreamId>>, Lsn)> {
        self.ctx.durability.check()?;
        self.settle()?;
        let total: u64 = entries
            .iter()
            .map(|(_, fields)| record::entry_record_len(fields))
            .sum();
        if total > BATCH_WRITE_MAX {
            let mut lsn = Lsn::default();
            let results = entries
                .iter()
                .map(|(spec, fields)| {
                    let (id, l) = self.add(*spec, fields, now_ms)?;
                    lsn = lsn.max(l);
                    Ok(id)
                })
                .collect();
            return Ok((results, lsn));
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let mut placed = Vec::with_capacity(entries.len());
        let mut results = Vec::with_capacity(entries.len());
        let mut last = self.state.last_id;
        for (spec, fields) in entries {
            match next_id_after(last, *spec, now_ms) {
                Ok(id) => {
                    placed.push((id, buf.len() as u64));
                    record::encode_entry(&mut buf, id, fields);
                    last = id;
                    results.push(Ok(id));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        let Some(&(first, _)) = placed.first() else {
            self.scratch = buf;
            return Ok((results, Lsn::default()));
        };
        let result = self.append_record(&buf, first, false);
        self.scratch = buf;
        let (offset, lsn) = result?;
        for (id, at) in placed {
            self.note_added(id, offset + at);
        }
        Ok((results, lsn))
    }

    /// Brings the index and the state up to an entry just written at `offset` of the tail.
    fn note_added(&mut self, id: StreamId, offset: u64) {
        self.tail.data.index.note_entry(id, offset);
        if self.state.length == 0 {
            *lock(&self.first_cache) = Some(id);
        }
        self.state.last_id = id;
        self.state.entries_added = self.state.entries_added.saturating_add(1);
        self.state.length = self.state.length.saturating_add(1);
    }
    /// XADD. `fields` must be non-empty (the server checks arity).
    pub fn add(
        &mut self,
        id: IdSpec,
        fields: &[(Bytes, Bytes)],
        now_ms: u64,
    ) -> Result<(StreamId, Lsn)> {
        self.ctx.durability.check()?;
        self.settle()?;
        let id = self.next_id(id, now_ms)?;
        if record::entry_record_len(fields) > u64::from(record::MAX_BODY) {
            return Err(Error::io(
                "XADD",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "entry larger than 1 GiB"),
            ));
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        record::encode_entry(&mut buf, id, fields);
        let result = self.append_record(&buf, id, false);
        self.scratch = buf;
        let (offset, lsn) = result?;
        self.note_added(id, offset);
        Ok((id, lsn))
    }

    /// Appends one encoded record to the tail (rolling first if it does not fit).
    /// `base` is the lowest ID a new segment may hold if a roll is needed. Buffered under
    /// write-behind unless `now` (see [`TailWrites::append`]).
    fn append_record(&mut self, rec: &[u8], base: StreamId, now: bool) -> Result<(u64, Lsn)> {
        let len = rec.len() as u64;
        if self.tail.data.index.written + len > self.tail.data.capacity {
            self.roll(base, len)?;
        }
        let offset = self.tail.data.index.written;
        self.tail
            .data
            .ensure_allocated(offset + len)
            .map_err(|e| Error::io("allocate segment space", e))?;
        let lsn = self
            .writes
            .append(&self.ctx.durability, rec, offset, !now)?;
        self.tail.data.index.written += len;
        Ok((offset, lsn))
    }

    /// Appends a control record carrying the current state.
    fn append_control(&mut self, control: &Control) -> Result<Lsn> {
        self.append_control_with(control, false)
    }

    /// Appends a control record at once, never buffered: a delete's in-place flags are
    /// written once its Lsn is fsync'd, which must then mean the delete record is on disk
    /// (a flag without its record would hide an entry the recovered state still counts).
    fn append_control_now(&mut self, control: &Control) -> Result<Lsn> {
        self.append_control_with(control, true)
    }

    fn append_control_with(&mut self, control: &Control, now: bool) -> Result<Lsn> {
        let mut buf = Vec::with_capacity(128);
        control.encode(&mut buf);
        let base = self.state.last_id;
        Ok(self.append_record(&buf, base, now)?.1)
    }

    /// Work that became possible since the last call: flags of deletes now fsync'd, and the
    /// meta file's durable offset.
    pub(crate) fn settle(&mut self) -> Result<()> {
        let synced = self.ctx.durability.synced_lsn();
        if self.pending_min_lsn.is_some_and(|l| l <= synced) {
            self.write_pending_flags(Some(synced))?;
        }
        if let Some((_, tail, offset)) = self.writes.take_meta_candidate(synced) {
            if tail == self.tail.number
                && offset >= self.meta.value.durable.saturating_add(META_STEP)
            {
                self.write_meta(offset, false)?;
            }
        }
        Ok(())
    }

    /// Rewrites the meta file with `durable` as the tail's durable offset; fsyncs it if `sync`
    /// (otherwise it joins the next group commit).
    pub(crate) fn write_meta(&mut self, durable: u64, sync: bool) -> Result<Lsn> {
        let value = MetaValue {
            tail: self.tail.number,
            durable,
            expire: self.meta.value.expire,
            state: self.state,
        };
        self.write_meta_value(value, sync)
    }

    fn write_meta_value(&mut self, value: MetaValue, sync: bool) -> Result<Lsn> {
        let (file, n) = match self.meta.write(&self.ctx.vfs, &self.dir, value) {
            Ok(written) => written,
            Err(e) => return Err(self.ctx.durability.write_failed("write meta file", e)),
        };
        if sync {
            if let Err(e) = file.sync_data() {
                return Err(self.ctx.durability.write_failed("fsync meta file", e));
            }
            self.ctx.durability.count_fsync();
        }
        Ok(self.ctx.durability.wrote(&file, n))
    }

    /// The key's expiry (Unix ms), as stored in the meta file.
    pub(crate) fn expire(&self) -> Option<u64> {
        self.meta.value.expire
    }

    /// Sets or clears the key's expiry (durable with the next group commit).
    pub(crate) fn set_expire(&mut self, at_ms: Option<u64>) -> Result<Lsn> {
        self.ctx.durability.check()?;
        let mut value = self.meta.value;
        value.expire = at_ms;
        value.state = self.state;
        self.write_meta_value(value, false)
    }

    /// The file holding segment `number`, if it still exists.
    fn segment_file(&self, number: u64) -> Result<Option<Arc<dyn VFile>>> {
        if number == self.tail.number {
            self.writes.flush(&self.ctx.durability)?;
            return Ok(Some(self.tail.data.file.clone()));
        }
        let Ok(i) = self.sealed.binary_search_by_key(&number, |s| s.number) else {
            return Ok(None);
        };
        match self.sealed.get(i) {
            Some(s) => Ok(Some(self.load_sealed(s)?.file.clone())),
            None => Ok(None),
        }
    }

    /// Writes the in-place "deleted" state byte of the record at `offset` of `segment`.
    pub(crate) fn write_flag(&mut self, segment: u64, offset: u64) -> Result<()> {
        let Some(file) = self.segment_file(segment)? else {
            return Ok(());
        };
        if let Err(e) = file.write_all_at(&[STATE_DELETED], offset.saturating_add(STATE_OFFSET)) {
            return Err(self.ctx.durability.write_failed("write a delete flag", e));
        }
        self.ctx.durability.wrote(&file, 1);
        self.flag_dirty.insert(segment);
        Ok(())
    }

    /// Fsyncs the tail (so every delete record is durable) and writes all pending flags.
    fn force_pending(&mut self) -> Result<()> {
        if self.pending_deletes.is_empty() {
            return Ok(());
        }
        self.sync_tail()?;
        self.write_pending_flags(None)
    }

    /// Writes the flags of pending deletes whose Lsn is at most `upto` (all if `None`),
    /// each leaving the pending set only once its flag is written: a failed write keeps the
    /// rest pending, so reads never show a deleted entry again.
    fn write_pending_flags(&mut self, upto: Option<Lsn>) -> Result<()> {
        let due: Vec<_> = self
            .pending_deletes
            .iter()
            .filter(|(_, p)| upto.is_none_or(|u| p.lsn <= u))
            .map(|(at, p)| (*at, *p))
            .collect();
        let mut result = Ok(());
        for (at, p) in due {
            if let Err(e) = self.write_flag(p.segment, p.offset) {
                result = Err(e);
                break;
            }
            self.pending_deletes.remove(&at);
        }
        self.pending_min_lsn = self.pending_deletes.values().map(|p| p.lsn).min();
        result
    }

    fn sync_tail(&self) -> Result<()> {
        self.writes.flush(&self.ctx.durability)?;
        if let Err(e) = self.tail.data.file.sync_data() {
            return Err(self.ctx.durability.write_failed("fsync a segment", e));
        }
        self.ctx.durability.count_fsync();
        Ok(())
    }

    /// Fsyncs the key file and the tail (so every delete record is durable), then writes
    /// every pending delete flag and fsyncs the segments holding flags: what a seal and
    /// `sync` both start with.
    fn sync_tail_and_flags(&mut self) -> Result<()> {
        self.ctx.durability.check()?;
        self.sync_key_file()?;
        self.sync_tail()?;
        self.write_pending_flags(None)?;
        for number in std::mem::take(&mut self.flag_dirty) {
            if let Some(file) = self.segment_file(number)? {
                if let Err(e) = file.sync_data() {
                    return Err(self.ctx.durability.write_failed("fsync delete flags", e));
                }
                self.ctx.durability.count_fsync();
            }
        }
        Ok(())
    }

    /// Seals the tail and starts a new one whose header snapshots the current state.
    /// Order: tail fsync'd → pending delete flags written and fsync'd (recovery only redoes
    /// deletes found in the tail) → index file → new segment created and fsync'd with its
    /// directory → meta points at the new tail.
    fn roll(&mut self, base: StreamId, need: u64) -> Result<()> {
        self.sync_tail_and_flags()?;
        let index_bytes = self.tail.data.index.encode(self.tail.number);
        let index_name = segment::index_file_name(self.tail.number);
        if let Err(e) = rewrite_atomic(&self.ctx.vfs, &self.dir, &index_name, &index_bytes, false) {
            return Err(self.ctx.durability.write_failed("write a segment index", e));
        }
        let number = self.tail.number.saturating_add(1);
        let mut header = Vec::new();
        Control::Header {
            state: self.state,
            segment: number,
            base,
        }
        .encode(&mut header);
        let capacity = self.ctx.segment_size.max(need + header.len() as u64);
        let path = self.dir.join(segment::file_name(number, base));
        let data = match SegmentData::create(&self.ctx.vfs, &path, capacity, &header) {
            Ok(d) => d,
            Err(e) => {
                let _ = self.ctx.vfs.remove_file(&path);
                return Err(Error::io("create a segment", e));
            }
        };
        if let Err(e) = data.file.sync_data() {
            return Err(self.ctx.durability.write_failed("fsync a new segment", e));
        }
        if let Err(e) = self.ctx.vfs.sync_dir(&self.dir) {
            return Err(self
                .ctx
                .durability
                .write_failed("fsync a stream directory", e));
        }
        self.ctx.durability.count_fsync();
        self.writes.retarget(data.file.clone(), number);
        let old = std::mem::replace(&mut self.tail, Tail { number, base, data });
        self.sealed
            .push(Sealed::new(old.number, old.base, Some(Arc::new(old.data))));
        self.evict_sealed(old.number);
        self.writes.clear_meta_candidate();
        let durable = self.tail.data.index.written;
        self.write_meta(durable, true)?;
        Ok(())
    }

    /// Loads a sealed segment (map + index) on first use.
    pub(crate) fn load_sealed(&self, s: &Sealed) -> Result<Arc<SegmentData>> {
        let tick = self.use_tick.fetch_add(1, Ordering::Relaxed) + 1;
        s.last_used.store(tick, Ordering::Relaxed);
        let data = {
            let mut slot = lock(&s.data);
            if let Some(d) = slot.as_ref() {
                return Ok(d.clone());
            }
            let path = self.segment_path(s.number, s.base);
            let index_path = self.dir.join(segment::index_file_name(s.number));
            let data = segment::open_sealed(&self.ctx.vfs, &path, &index_path, s.number)
                .map_err(|e| Error::io(format!("open segment {}", path.display()), e))?;
            let data = Arc::new(data);
            *slot = Some(data.clone());
            data
        };
        self.evict_sealed(s.number);
        Ok(data)
    }

    /// Unloads the least recently used sealed segments (other than `keep`) beyond
    /// [`MAX_LOADED_SEALED`]. A reader still holding one keeps it alive until done.
    fn evict_sealed(&self, keep: u64) {
        let mut loaded: Vec<&Sealed> = self
            .sealed
            .iter()
            .filter(|x| x.number != keep && lock(&x.data).is_some())
            .collect();
        if loaded.len() < MAX_LOADED_SEALED {
            return;
        }
        loaded.sort_by_key(|x| x.last_used.load(Ordering::Relaxed));
        let excess = loaded.len() + 1 - MAX_LOADED_SEALED;
        for victim in loaded.into_iter().take(excess) {
            // Unflushed flag writes must not be lost with the handle: keep those open.
            if !self.flag_dirty.contains(&victim.number) {
                *lock(&victim.data) = None;
            }
        }
    }

    /// A failed read of segment `number`: corruption if a record there failed its checks
    /// (every record below a segment's valid end was valid when written), else I/O.
    fn read_error(&self, number: u64, e: std::io::Error) -> Error {
        let corrupt = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<segment::CorruptRecord>())
            .map(|c| (c.offset, c.to_string()));
        match corrupt {
            Some((offset, detail)) => {
                let base = self
                    .sealed_by_number(number)
                    .map_or(self.tail.base, |s| s.base);
                Error::Corruption {
                    path: self.segment_path(number, base),
                    offset,
                    detail,
                }
            }
            None => Error::io("read a segment", e),
        }
    }

    pub(crate) fn segment_path(&self, number: u64, base: StreamId) -> PathBuf {
        self.dir.join(segment::file_name(number, base))
    }

    fn segment_count(&self) -> usize {
        self.sealed.len() + 1
    }

    fn base(&self, i: usize) -> StreamId {
        self.sealed.get(i).map_or(self.tail.base, |s| s.base)
    }

    /// Inclusive upper bound of the live entries of segment `i`.
    fn upper(&self, i: usize) -> StreamId {
        if i + 1 < self.segment_count() {
            self.base(i + 1)
        } else {
            StreamId::MAX
        }
    }

    fn with_view<R>(&self, i: usize, f: impl FnOnce(View<'_>) -> Result<R>) -> Result<R> {
        match self.sealed.get(i) {
            Some(s) => {
                let data = self.load_sealed(s)?;
                f(data.view(s.number))
            }
            None => {
                self.writes.flush(&self.ctx.durability)?;
                f(self.tail.data.view(self.tail.number))
            }
        }
    }

    fn is_live(&self, segment: u64, rec: &RawRecord<'_>) -> bool {
        !record::is_deleted_state(rec.header.state)
            && !self.pending_deletes.contains_key(&(segment, rec.offset))
            && !self.state.is_trimmed(segment, rec.offset)
    }

    /// Where scanning segment `v` may start for IDs ≥ `lo`: its index point, but not before
    /// the record boundary nearest the trim position (the trim offset itself may fall
    /// inside a record; trimmed records are filtered by `is_live`); `None` if the whole
    /// segment is trimmed.
    fn start_in(&self, v: &View<'_>, lo: StreamId) -> Option<u64> {
        let t = self.state.trim_pos;
        let seek = v.index.seek(lo);
        match v.number.cmp(&t.segment) {
            std::cmp::Ordering::Less => None,
            std::cmp::Ordering::Equal => Some(seek.max(v.index.boundary_at_or_before(t.offset))),
            std::cmp::Ordering::Greater => Some(seek),
        }
    }

    /// Whether segment `i` lies entirely before the trim position.
    fn segment_trimmed(&self, i: usize) -> bool {
        let number = self.sealed.get(i).map_or(self.tail.number, |s| s.number);
        number < self.state.trim_pos.segment
    }

    /// Visits live entries with `lo ≤ id ≤ hi` in ID order until `f` returns false.
    /// `f` gets the segment number, the raw record and its ID.
    pub(crate) fn scan_forward(
        &self,
        lo: StreamId,
        hi: StreamId,
        mut f: impl FnMut(u64, &RawRecord<'_>, StreamId) -> Result<bool>,
    ) -> Result<()> {
        if lo > hi {
            return Ok(());
        }
        let hints = *lock(&self.seek_hints);
        let mut last = None;
        let result = self.scan_forward_from(lo, hi, &hints, &mut last, &mut f);
        if let Some(new) = last {
            let mut hints = lock(&self.seek_hints);
            if !hints.contains(&Some(new)) {
                hints.rotate_right(1);
                hints[0] = Some(new);
            }
        }
        result
    }

    fn scan_forward_from(
        &self,
        lo: StreamId,
        hi: StreamId,
        hints: &[Option<SeekHint>],
        last: &mut Option<SeekHint>,
        f: &mut impl FnMut(u64, &RawRecord<'_>, StreamId) -> Result<bool>,
    ) -> Result<()> {
        for i in 0..self.segment_count() {
            if self.upper(i) < lo || self.base(i) > hi || self.segment_trimmed(i) {
                continue;
            }
            let stop = self.with_view(i, |v| {
                let Some(mut start) = self.start_in(&v, lo) else {
                    return Ok(false);
                };
                for h in hints.iter().flatten() {
                    if h.segment == v.number && h.id < lo && h.offset <= v.index.written {
                        start = start.max(h.offset);
                    }
                }
                let mut damage = Damage::new(lo, hi);
                for rec in v
                    .records(start)
                    .counting(self.ctx.durability.corrupt_counter())
                    .strict()
                {
                    let rec = match rec {
                        Ok(rec) => rec,
                        Err(e) => {
                            damage.bad(self.read_error(v.number, e))?;
                            continue;
                        }
                    };
                    let Some(id) = rec.entry_id() else { continue };
                    damage.entry(id)?;
                    if id < lo {
                        continue;
                    }
                    let live = self.is_live(v.number, &rec);
                    if id > hi {
                        // Entries in a segment are ordered: nothing further here matches,
                        // and a live one proves no later segment does either.
                        return Ok(live);
                    }
                    if live {
                        *last = Some(SeekHint {
                            segment: v.number,
                            offset: rec.offset + rec.len(),
                            id,
                        });
                        if !f(v.number, &rec, id)? {
                            return Ok(true);
                        }
                    }
                }
                damage.end()?;
                Ok(false)
            })?;
            if stop {
                break;
            }
        }
        Ok(())
    }

    /// Visits live entries with `lo ≤ id ≤ hi` in descending ID order until `f` returns
    /// false. Each segment is walked one index chunk (≈ [`crate::index::SPACING`] bytes) at
    /// a time, newest chunk first: the chunk's matching records are collected (borrowed from
    /// the map, not decoded) and handed to `f` newest first, so only what `f` takes is
    /// decoded.
    fn scan_backward(
        &self,
        lo: StreamId,
        hi: StreamId,
        mut f: impl FnMut(&RawRecord<'_>, StreamId) -> Result<bool>,
    ) -> Result<()> {
        if lo > hi {
            return Ok(());
        }
        for i in (0..self.segment_count()).rev() {
            if self.upper(i) < lo || self.base(i) > hi || self.segment_trimmed(i) {
                continue;
            }
            let stop = self.with_view(i, |v| {
                let points = &v.index.points;
                let Some(mut j) = v.index.point_at_or_before(hi) else {
                    return Ok(false);
                };
                let mut chunk = Vec::new();
                loop {
                    let Some(p) = points.get(j) else {
                        return Ok(false);
                    };
                    let end = points.get(j + 1).map_or(v.index.written, |n| n.offset);
                    chunk.clear();
                    let records = segment::Records::new(v.map, p.offset, end)
                        .counting(self.ctx.durability.corrupt_counter())
                        .strict();
                    let mut damage = Damage::new(lo, hi);
                    for rec in records {
                        let rec = match rec {
                            Ok(rec) => rec,
                            Err(e) => {
                                damage.bad(self.read_error(v.number, e))?;
                                continue;
                            }
                        };
                        let Some(id) = rec.entry_id() else { continue };
                        damage.entry(id)?;
                        if id < lo || id > hi || !self.is_live(v.number, &rec) {
                            continue;
                        }
                        chunk.push((rec, id));
                    }
                    damage.end()?;
                    for (rec, id) in chunk.iter().rev() {
                        if !f(rec, *id)? {
                            return Ok(true);
                        }
                    }
                    if p.id <= lo || j == 0 {
                        return Ok(false);
                    }
                    j -= 1;
                }
            })?;
            if stop {
                break;
            }
        }
        Ok(())
    }

    /// XRANGE/XREVRANGE/XREAD: at most `count` live entries between the bounds, in `dir`
    /// order. `start` is always the low bound and `end` the high bound, whatever `dir`.
    pub fn range(
        &self,
        start: Bound<StreamId>,
        end: Bound<StreamId>,
        count: usize,
        dir: Direction,
    ) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        self.range_with(start, end, count, dir, |e| out.push(e.to_entry()))?;
        Ok(out)
    }

    /// [`Stream::range`] without copies: hands each entry to `f`, borrowed from the segment,
    /// and returns how many it handed.
    pub fn range_with(
        &self,
        start: Bound<StreamId>,
        end: Bound<StreamId>,
        count: usize,
        dir: Direction,
        mut f: impl FnMut(&EntryRef<'_>),
    ) -> Result<usize> {
        let mut n = 0usize;
        let Some((lo, hi)) = inclusive(start, end) else {
            return Ok(n);
        };
        if count == 0 || self.state.length == 0 {
            return Ok(n);
        }
        let mut visit = |rec: &RawRecord<'_>| {
            if let Some(e) = record::entry_ref(rec.body()) {
                f(&e);
                n += 1;
            }
            Ok(n < count)
        };
        match dir {
            Direction::Forward => self.scan_forward(lo, hi, |_, rec, _| visit(rec))?,
            Direction::Backward => self.scan_backward(lo, hi, |rec, _| visit(rec))?,
        }
        Ok(n)
    }

    /// The live entry with exactly this ID.
    pub fn get(&self, id: StreamId) -> Result<Option<Entry>> {
        Ok(self
            .range(
                Bound::Included(id),
                Bound::Included(id),
                1,
                Direction::Forward,
            )?
            .pop())
    }

    /// Where the live entry `id` is: `(segment number, offset)`.
    fn locate(&self, id: StreamId) -> Result<Option<(u64, u64)>> {
        let mut found = None;
        self.scan_forward(id, id, |number, rec, _| {
            found = Some((number, rec.offset));
            Ok(false)
        })?;
        Ok(found)
    }

    /// XDEL: returns how many of `ids` existed and were deleted. All of them are deleted by
    /// one record, so recovery sees either none or all; memory changes only once it is
    /// written.
    pub fn delete(&mut self, ids: &[StreamId]) -> Result<(u64, Lsn)> {
        self.ctx.durability.check()?;
        self.settle()?;
        let mut seen = BTreeSet::new();
        let mut targets = Vec::new();
        for &id in ids {
            if !seen.insert(id) {
                continue;
            }
            if let Some((segment, offset)) = self.locate(id)? {
                targets.push(DeleteTarget {
                    id,
                    segment,
                    offset,
                });
            }
        }
        if targets.is_empty() {
            return Ok((0, self.ctx.durability.next_lsn()));
        }
        let mut state = self.state;
        state.length = state.length.saturating_sub(targets.len() as u64);
        for t in &targets {
            state.max_deleted = state.max_deleted.max(t.id);
        }
        let control = Control::Delete { state, targets };
        let lsn = self.append_control_now(&control)?;
        let Control::Delete { targets, .. } = control else {
            return Ok((0, lsn));
        };
        self.state = state;
        let mut cache = lock(&self.first_cache);
        if cache.is_some_and(|first| targets.iter().any(|t| t.id == first)) {
            *cache = None;
        }
        drop(cache);
        for t in &targets {
            if let Some(sealed) = self.sealed_by_number(t.segment) {
                if let Some((live, _)) = lock(&sealed.counts).as_mut() {
                    *live = live.saturating_sub(1);
                }
            }
            self.pending_deletes.insert(
                (t.segment, t.offset),
                PendingDelete {
                    lsn,
                    segment: t.segment,
                    offset: t.offset,
                },
            );
        }
        self.pending_min_lsn = Some(self.pending_min_lsn.map_or(lsn, |m| m.min(lsn)));
        if self.pending_deletes.len() > PENDING_LIMIT {
            self.force_pending()?;
        }
        Ok((targets.len() as u64, lsn))
    }

    /// Live entries of segment `i` and the greatest entry ID it holds (live or not).
    fn count_segment(&self, i: usize) -> Result<(u64, Option<StreamId>)> {
        if let Some(cached) = self.sealed.get(i).and_then(|s| *lock(&s.counts)) {
            return Ok(cached);
        }
        let counted = self.with_view(i, |v| {
            let mut live = 0;
            let mut max = None;
            // Counting only (approximate trims): damage is skipped here and reported by
            // the reads that could return it.
            let records = v.records(0).counting(self.ctx.durability.corrupt_counter());
            for rec in records {
                let rec = rec.map_err(|e| self.read_error(v.number, e))?;
                let Some(id) = rec.entry_id() else { continue };
                max = Some(max.map_or(id, |m: StreamId| m.max(id)));
                if self.is_live(v.number, &rec) {
                    live += 1;
                }
            }
            Ok((live, max))
        })?;
        if let Some(s) = self.sealed.get(i) {
            *lock(&s.counts) = Some(counted);
        }
        Ok(counted)
    }

    fn sealed_by_number(&self, number: u64) -> Option<&Sealed> {
        let i = self
            .sealed
            .binary_search_by_key(&number, |s| s.number)
            .ok()?;
        self.sealed.get(i)
    }

    /// XTRIM (and XADD's trim clause): returns the number of entries removed.
    ///
    /// Exact trims move the trim point past the removed entries (partially trimmed segments
    /// keep their bytes until the whole segment falls below the trim point). Approximate
    /// trims (`~`) only ever remove whole sealed segments, oldest first, while the
    /// threshold still holds and the removed count stays within `LIMIT`. Redis' default
    /// LIMIT for `~` (100 × entries per radix node) would almost never allow dropping one of
    /// our much larger segments, so with no LIMIT (or `LIMIT 0`) the engine drops as many
    /// whole segments as the threshold allows: the work per dropped segment is one scan of
    /// its headers and one unlink.
    pub fn trim(&mut self, spec: TrimSpec) -> Result<(u64, Lsn)> {
        self.ctx.durability.check()?;
        self.settle()?;
        let (removed, pos) = if spec.approx {
            self.plan_approx(spec)?
        } else {
            self.plan_exact(spec.strategy)?
        };
        let new_pos = self.state.trim_pos.max(pos);
        if removed == 0 && new_pos == self.state.trim_pos {
            return Ok((0, self.ctx.durability.next_lsn()));
        }
        let mut state = self.state;
        state.length = state.length.saturating_sub(removed);
        state.trim_pos = new_pos;
        let lsn = self.append_control(&Control::Trim(state))?;
        self.state = state;
        *lock(&self.first_cache) = None;
        if let Some(cut) = self.sealed_by_number(new_pos.segment) {
            *lock(&cut.counts) = None;
        }
        self.drop_trimmed_segments()?;
        Ok((removed, lsn))
    }

    /// Removes the files of sealed segments entirely before the trim position.
    pub(crate) fn drop_trimmed_segments(&mut self) -> Result<()> {
        let k = self
            .sealed
            .iter()
            .take_while(|s| s.number < self.state.trim_pos.segment)
            .count();
        self.drop_segments(k)
    }

    /// Exact trim: how many live entries go, and the log position just past the last one.
    fn plan_exact(&self, strategy: TrimStrategy) -> Result<(u64, LogPos)> {
        let none = (0, LogPos::default());
        let (hi, limit) = match strategy {
            TrimStrategy::MaxLen(n) => (StreamId::MAX, self.state.length.saturating_sub(n)),
            TrimStrategy::MinId(m) => match m.prev() {
                Some(hi) => (hi, u64::MAX),
                None => return Ok(none),
            },
        };
        if limit == 0 {
            return Ok(none);
        }
        let mut removed = 0;
        let mut pos = LogPos::default();
        self.scan_forward(StreamId::MIN, hi, |segment, rec, _| {
            removed += 1;
            pos = LogPos {
                segment,
                offset: rec.offset + 1,
            };
            Ok(removed < limit)
        })?;
        Ok((removed, pos))
    }

    /// Approximate trim: whole sealed segments from the front.
    fn plan_approx(&self, spec: TrimSpec) -> Result<(u64, LogPos)> {
        let limit = match spec.limit {
            None | Some(0) => u64::MAX,
            Some(l) => l,
        };
        let mut removed = 0u64;
        let mut pos = LogPos::default();
        for i in 0..self.sealed.len() {
            if self.segment_trimmed(i) {
                continue;
            }
            let (live, max) = self.count_segment(i)?;
            let fits = match spec.strategy {
                TrimStrategy::MaxLen(n) => self.state.length.saturating_sub(removed + live) >= n,
                TrimStrategy::MinId(m) => max.is_none_or(|x| x < m),
            };
            if !fits || removed + live > limit {
                break;
            }
            removed += live;
            // Everything up to the start of the next segment goes.
            pos = LogPos {
                segment: self
                    .sealed
                    .get(i + 1)
                    .map_or(self.tail.number, |s| s.number),
                offset: 0,
            };
        }
        Ok((removed, pos))
    }

    /// Removes the first `k` sealed segments' files, once the trim record is durable.
    fn drop_segments(&mut self, k: usize) -> Result<()> {
        if k == 0 {
            return Ok(());
        }
        self.sync_tail()?;
        let gone: Vec<Sealed> = self.sealed.drain(..k).collect();
        for s in &gone {
            self.flag_dirty.remove(&s.number);
            let path = self.segment_path(s.number, s.base);
            let index = self.dir.join(segment::index_file_name(s.number));
            for p in [path, index] {
                match self.ctx.vfs.remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("remove {}", p.display()), e)),
                }
            }
        }
        self.ctx.durability.dir_changed(&self.dir);
        Ok(())
    }

    /// XSETID.
    pub fn set_id(
        &mut self,
        last_id: StreamId,
        entries_added: Option<u64>,
        max_deleted_entry_id: Option<StreamId>,
    ) -> Result<Lsn> {
        self.ctx.durability.check()?;
        self.settle()?;
        if let Some(md) = max_deleted_entry_id {
            if last_id < md {
                return Err(Error::SetIdMaxDeletedTooLarge);
            }
        }
        if self.state.length > 0 {
            let top = self.last_entry()?.map_or(StreamId::MIN, |e| e.id);
            if last_id < top {
                return Err(Error::SetIdTooSmall);
            }
            if entries_added.is_some_and(|n| n < self.state.length) {
                return Err(Error::SetIdEntriesAddedTooSmall);
            }
        }
        let lowering = last_id < self.state.last_id;
        let mut state = self.state;
        state.last_id = last_id;
        if let Some(n) = entries_added {
            state.entries_added = n;
        }
        if let Some(md) = max_deleted_entry_id {
            if md != StreamId::MIN {
                state.max_deleted = md;
            }
        }
        if lowering && (self.tail.data.index.entries > 0 || last_id < self.tail.base) {
            // Keep IDs increasing inside every segment and no entry below its segment's
            // base: later entries go to a new segment based at the new last ID.
            self.state = state;
            self.roll(last_id, 0)?;
        }
        let lsn = self.append_control(&Control::SetId(state))?;
        self.state = state;
        Ok(lsn)
    }

    /// Makes everything of this stream durable now and records the exact durable offset.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.sync_tail_and_flags()?;
        let durable = self.tail.data.index.written;
        let saved = (self.tail.number, durable);
        if self.tail_index_saved != Some(saved) {
            // Lets a clean reopen skip replaying the tail (see `Stream::open`).
            let bytes = self.tail.data.index.encode(self.tail.number);
            let name = segment::index_file_name(self.tail.number);
            if let Err(e) = rewrite_atomic(&self.ctx.vfs, &self.dir, &name, &bytes, false) {
                return Err(self.ctx.durability.write_failed("write the tail index", e));
            }
            self.ctx.durability.count_fsync();
            self.tail_index_saved = Some(saved);
        }
        // The state too: a clean reopen takes it from here, so a meta file whose offset
        // happens to match but whose state is stale (damaged, or from before recovery)
        // must not survive a sync.
        if self.meta.value.durable != durable
            || self.meta.value.tail != self.tail.number
            || self.meta.value.state != self.state
        {
            self.write_meta(durable, true)?;
        }
        self.writes.clear_meta_candidate();
        Ok(())
    }

    /// Sealed segments currently open (file + map + index).
    pub fn loaded_segments(&self) -> usize {
        self.sealed
            .iter()
            .filter(|s| lock(&s.data).is_some())
            .count()
    }

    /// Bytes of index points held in memory (for tests of the memory bound).
    pub fn index_memory(&self) -> usize {
        let sealed: usize = self
            .sealed
            .iter()
            .filter_map(|s| lock(&s.data).as_ref().map(|d| d.index.memory_bytes()))
            .sum();
        sealed + self.tail.data.index.memory_bytes()
    }
}
