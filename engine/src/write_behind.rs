//! Write-behind for appends. When enabled (the server does) and the policy is not
//! `always`, a record appended to a stream's tail or to a group journal is copied into
//! that file's buffer instead of being written at once; [`crate::Engine::flush_writes`] writes every buffer
//! with one `pwrite` each. The server flushes before it sends any reply, so the appends of
//! all connections served in one turn of its event loop share one system call, as Redis'
//! AOF buffer does, and nothing is acknowledged before its bytes are in the page cache.
//!
//! Anything that needs the bytes in the file writes the buffer first: a read of the tail
//! (`Stream::with_view`), a delete flag, an fsync of the tail (seal, `sync`, `close`), a
//! truncate or rewrite of a journal, a sync round of the sync thread, and a change of
//! policy. A failed write poisons the engine, and what it carried stays in the in-memory
//! state without being in the file: from then on every flush fails, so no reply that may
//! reflect unwritten appends is sent, until a restart recovers what is on disk.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc, Mutex, MutexGuard,
};

use crate::{durability::Durability, io::VFile, Error, FsyncPolicy, Lsn, Result};

/// A buffer past this size is written at once, whatever the policy.
pub(crate) const MAX_BUFFERED: usize = 1 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The end of one append-only file (a stream's tail segment or a group journal): where its
/// next bytes go and those not yet written.
pub(crate) struct TailWrites {
    inner: Mutex<Pending>,
    /// What a failed write reports ("append to a segment").
    context: &'static str,
    /// In [`WriteBehind`]'s dirty list (cleared when the list is taken).
    queued: AtomicBool,
}

struct Pending {
    file: Arc<dyn VFile>,
    segment: u64,
    /// File offset of `buf[0]`.
    at: u64,
    buf: Vec<u8>,
    /// `(lsn, segment, offset)`: once `lsn` is fsync'd, `offset` of `segment` is durable.
    /// Set by the first write after the last [`TailWrites::take_meta_candidate`].
    meta_candidate: Option<(Lsn, u64, u64)>,
}

impl TailWrites {
    pub(crate) fn new(
        file: Arc<dyn VFile>,
        segment: u64,
        context: &'static str,
    ) -> Arc<TailWrites> {
        Arc::new(TailWrites {
            context,
            inner: Mutex::new(Pending {
                file,
                segment,
                at: 0,
                buf: Vec::new(),
                meta_candidate: None,
            }),
            queued: AtomicBool::new(false),
        })
    }

    /// Points at a new tail segment. The old one's buffer must have been written.
    pub(crate) fn retarget(&self, file: Arc<dyn VFile>, segment: u64) {
        let mut p = lock(&self.inner);
        debug_assert!(p.buf.is_empty(), "retarget with unwritten bytes");
        p.file = file;
        p.segment = segment;
        p.buf.clear();
        p.meta_candidate = None;
    }

    /// Buffers `rec`, which belongs at `offset` (right after the bytes already buffered).
    /// Returns the buffered length.
    fn push(&self, rec: &[u8], offset: u64) -> usize {
        let mut p = lock(&self.inner);
        if p.buf.is_empty() {
            p.at = offset;
        }
        debug_assert_eq!(
            p.at + p.buf.len() as u64,
            offset,
            "tail writes out of order"
        );
        p.buf.extend_from_slice(rec);
        p.buf.len()
    }

    /// Appends `rec`, which belongs at `offset`: buffered if `may_buffer`, write-behind is
    /// on and the policy is not `always`, written at once (after whatever is buffered)
    /// otherwise. A buffered append returns a fresh Lsn, above every round already
    /// published; the write that carries it gets a later one, so a concurrent sync round
    /// may publish it first. Nothing waits for Lsns under `everysec` and `no`, and
    /// `set_fsync_policy` flushes before turning `always` on; a caller for whom "synced"
    /// must mean "in the file" passes `may_buffer = false` (deletes, see `Stream::delete`).
    pub(crate) fn append(
        self: &Arc<Self>,
        d: &Durability,
        rec: &[u8],
        offset: u64,
        may_buffer: bool,
    ) -> Result<Lsn> {
        let wb = d.write_behind();
        if may_buffer && wb.enabled() && d.policy() != FsyncPolicy::Always {
            wb.append(d, self, rec, offset)?;
            Ok(d.next_lsn())
        } else {
            self.write_now(d, rec, offset)
        }
    }

    /// Writes `rec` at `offset` now, after whatever is buffered (file order is commit
    /// order). The Lsn of the write.
    fn write_now(&self, d: &Durability, rec: &[u8], offset: u64) -> Result<Lsn> {
        let mut p = lock(&self.inner);
        Self::write_buffer(&mut p, d, self.context)?;
        Self::write_at(&mut p, d, rec, offset, self.context)
    }

    /// Writes the buffered bytes, if any.
    pub(crate) fn flush(&self, d: &Durability) -> Result<()> {
        Self::write_buffer(&mut lock(&self.inner), d, self.context)
    }

    fn write_buffer(p: &mut Pending, d: &Durability, context: &str) -> Result<()> {
        if p.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut p.buf);
        let at = p.at;
        let result = Self::write_at(p, d, &buf, at, context);
        if result.is_err() {
            // These appends are in the engine's memory but not in the file: no reply that
            // may reflect them can ever be sent (see `WriteBehind::flush_all`).
            d.write_behind().failed.store(true, Ordering::Release);
        }
        p.buf = buf;
        p.buf.clear();
        result.map(|_| ())
    }

    fn write_at(
        p: &mut Pending,
        d: &Durability,
        rec: &[u8],
        offset: u64,
        context: &str,
    ) -> Result<Lsn> {
        let len = rec.len() as u64;
        if let Err(e) = p.file.write_all_at(rec, offset) {
            // Best effort: zero what a short write may have left, so a record the caller
            // was told failed cannot be found whole by recovery.
            let _ = p.file.write_all_at(&vec![0u8; rec.len()], offset);
            return Err(d.write_failed(context, e));
        }
        let lsn = d.wrote(&p.file, len);
        if p.meta_candidate.is_none() {
            p.meta_candidate = Some((lsn, p.segment, offset + len));
        }
        Ok(lsn)
    }

    /// The durable-offset candidate of the writes since the last take, once its Lsn is
    /// fsync'd (`synced`).
    pub(crate) fn take_meta_candidate(&self, synced: Lsn) -> Option<(Lsn, u64, u64)> {
        let mut p = lock(&self.inner);
        match p.meta_candidate {
            Some(c) if c.0 <= synced => p.meta_candidate.take(),
            _ => None,
        }
    }

    /// Forgets the candidate (the caller just recorded a newer durable offset).
    pub(crate) fn clear_meta_candidate(&self) {
        lock(&self.inner).meta_candidate = None;
    }
}

/// The engine-wide side: whether appends may be buffered, and which tails hold some.
#[derive(Default)]
pub struct WriteBehind {
    enabled: AtomicBool,
    dirty: Mutex<Vec<Arc<TailWrites>>>,
    /// Count of buffered appends so far.
    appended: AtomicU64,
    /// Every append counted up to here has been written (advanced under the engine lock).
    written: AtomicU64,
    /// A buffered write failed: the engine's memory holds appends its files never will.
    failed: AtomicBool,
}

impl WriteBehind {
    pub(crate) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Release);
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Buffers an append to `tail` (see [`TailWrites::push`]); writes the buffer at once if
    /// it grew past [`MAX_BUFFERED`].
    fn append(
        &self,
        d: &Durability,
        tail: &Arc<TailWrites>,
        rec: &[u8],
        offset: u64,
    ) -> Result<()> {
        let buffered = tail.push(rec, offset);
        self.appended.fetch_add(1, Ordering::AcqRel);
        if !tail.queued.swap(true, Ordering::AcqRel) {
            lock(&self.dirty).push(tail.clone());
        }
        if buffered > MAX_BUFFERED {
            tail.flush(d)?;
        }
        Ok(())
    }

    /// Writes every buffer. Returns the append count it covered: every append counted
    /// before the call is written when it returns, provided no append runs concurrently
    /// (the engine calls it under `&mut self`). Once a buffered write has failed it fails
    /// every time: appends that never reached their file may show in any reply, so none
    /// waiting on this may be sent (the engine is poisoned; a restart recovers the disk).
    pub(crate) fn flush_all(&self, d: &Durability) -> Result<u64> {
        if self.failed.load(Ordering::Acquire) {
            return Err(Error::Poisoned(d.poisoned().unwrap_or_default()));
        }
        let covered = self.appended.load(Ordering::Acquire);
        let tails = std::mem::take(&mut *lock(&self.dirty));
        let mut result = Ok(());
        for tail in tails {
            tail.queued.store(false, Ordering::Release);
            if result.is_ok() {
                result = tail.flush(d);
            }
        }
        result.map(|()| covered)
    }

    /// Writes every buffer but leaves the dirty list alone, for callers that may run
    /// concurrently with appends (the sync thread): a concurrent [`WriteBehind::flush_all`]
    /// still finds every tail it must wait for.
    pub(crate) fn flush_listed(&self, d: &Durability) -> Result<()> {
        let tails = lock(&self.dirty).clone();
        tails.iter().try_for_each(|tail| tail.flush(d))
    }

    /// Records that every append up to `covered` is written.
    pub(crate) fn mark_written(&self, covered: u64) {
        self.written.fetch_max(covered, Ordering::AcqRel);
    }

    pub(crate) fn has_dirty(&self) -> bool {
        !lock(&self.dirty).is_empty()
    }

    /// The number of appends buffered so far; a reply that may reflect them must wait
    /// until [`WriteBehind::written`] reaches it.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Acquire)
    }

    /// Every append up to this count has been written to its file.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound::Unbounded;
    use std::path::Path;

    use bytes::Bytes;

    use crate::{Direction, Engine, FsyncPolicy, GroupStart, IdSpec, Options, StreamId};

    /// A fresh directory and an engine holding one empty stream `s`.
    fn with_stream(fsync: FsyncPolicy, segment_size: u64) -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut e = open(dir.path(), fsync, segment_size);
        e.create_stream(0, b"s").expect("create");
        (dir, e)
    }

    fn open(dir: &Path, fsync: FsyncPolicy, segment_size: u64) -> Engine {
        let options = Options {
            fsync,
            segment_size,
            ..Options::default()
        };
        let (mut e, report) = Engine::open(dir, options).expect("open");
        assert!(report.corruptions.is_empty(), "{report:?}");
        e.set_write_behind(true).expect("write-behind on");
        e
    }

    fn add(e: &mut Engine, ms: u64) {
        add_to(e, b"s", ms);
    }

    fn add_to(e: &mut Engine, key: &[u8], ms: u64) {
        let fields = [(Bytes::from_static(b"f"), Bytes::from(ms.to_string()))];
        e.stream_mut(0, key)
            .expect("stream")
            .add(IdSpec::Explicit(StreamId::new(ms, 0)), &fields, 0)
            .expect("add");
    }

    fn ids(e: &Engine) -> Vec<u64> {
        let s = e.stream(0, b"s").expect("stream");
        let all = s.range(Unbounded, Unbounded, usize::MAX, Direction::Forward);
        all.expect("range").iter().map(|x| x.id.ms).collect()
    }

    /// Stream `key` with entries 1..=3 and group `g` at the start, all written.
    fn grouped(dir: &Path, key: &[u8]) -> Engine {
        let mut e = open(dir, FsyncPolicy::No, 1 << 20);
        e.create_stream(0, key).expect("create");
        (1..=3).for_each(|ms| add_to(&mut e, key, ms));
        let s = e.stream_mut(0, key).expect("stream");
        s.create_group(b"g", StreamId::MIN, Some(0)).expect("group");
        e.flush_writes().expect("flush");
        e
    }

    /// XREADGROUP `>` COUNT 1 on `key`'s group `g`: one entry delivered.
    fn read_one(e: &mut Engine, key: &[u8]) {
        let s = e.stream_mut(0, key).expect("stream");
        let got = s.read_group(b"g", b"c", GroupStart::New, Some(1), false, 1);
        assert_eq!(got.expect("read_group").0.len(), 1);
    }

    /// `(pending, last-delivered ms)` of `key`'s group `g`.
    fn delivered(e: &Engine, key: &[u8]) -> (u64, u64) {
        let s = e.stream(0, key).expect("stream");
        let info = s.group_info(b"g").expect("group");
        (info.pending, info.last_delivered_id.ms)
    }

    fn unwritten(e: &Engine) -> u64 {
        let wb = e.durability();
        wb.write_behind().appended() - wb.write_behind().written()
    }

    /// Appends wait in memory until a flush; a crash (dropping the engine) before it loses
    /// exactly them, after it nothing.
    #[test]
    fn flush_writes_what_a_crash_would_otherwise_lose() {
        let (dir, mut e) = with_stream(FsyncPolicy::No, 1 << 20);
        (1..=3).for_each(|ms| add(&mut e, ms));
        assert_eq!(unwritten(&e), 3);
        e.flush_writes().expect("flush");
        assert_eq!(unwritten(&e), 0);
        (4..=6).for_each(|ms| add(&mut e, ms));
        drop(e);
        let e = open(dir.path(), FsyncPolicy::No, 1 << 20);
        assert_eq!(ids(&e), vec![1, 2, 3]);
    }

    /// A read of the tail writes the buffer first, so it sees (and never serves from
    /// memory only) every entry appended before it.
    #[test]
    fn reads_write_the_buffer_first() {
        let (dir, mut e) = with_stream(FsyncPolicy::EverySec, 1 << 20);
        (1..=4).for_each(|ms| add(&mut e, ms));
        assert_eq!(ids(&e), vec![1, 2, 3, 4]);
        drop(e);
        let e = open(dir.path(), FsyncPolicy::EverySec, 1 << 20);
        assert_eq!(ids(&e), vec![1, 2, 3, 4]);
    }

    /// Sealing a tail writes its buffer before the fsync; entries across many rolls read
    /// back whole after a crash that followed only the last flush.
    #[test]
    fn rolls_write_the_buffer_before_sealing() {
        let (dir, mut e) = with_stream(FsyncPolicy::No, 4096);
        (1..=500).for_each(|ms| add(&mut e, ms));
        e.flush_writes().expect("flush");
        drop(e);
        let e = open(dir.path(), FsyncPolicy::No, 4096);
        assert_eq!(ids(&e), (1..=500).collect::<Vec<_>>());
        assert!(e.stream(0, b"s").expect("stream").meta().segments > 3);
    }

    /// Under `always` nothing waits in memory, and switching to it writes what did.
    #[test]
    fn always_writes_at_once_and_switching_to_it_flushes() {
        let (dir, mut e) = with_stream(FsyncPolicy::EverySec, 1 << 20);
        add(&mut e, 1);
        assert_eq!(unwritten(&e), 1);
        e.set_fsync_policy(FsyncPolicy::Always).expect("policy");
        assert_eq!(unwritten(&e), 0);
        add(&mut e, 2);
        assert_eq!(unwritten(&e), 0);
        drop(e);
        let e = open(dir.path(), FsyncPolicy::Always, 1 << 20);
        assert_eq!(ids(&e), vec![1, 2]);
    }

    /// Group journal records wait with the stream's: a crash before the flush loses the
    /// delivery, after it keeps it.
    #[test]
    fn group_journal_appends_are_buffered_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut e = grouped(dir.path(), b"s");
        read_one(&mut e, b"s");
        e.flush_writes().expect("flush");
        read_one(&mut e, b"s");
        assert_eq!(delivered(&e, b"s"), (2, 2));
        drop(e);
        let e = open(dir.path(), FsyncPolicy::No, 1 << 20);
        assert_eq!(
            delivered(&e, b"s"),
            (1, 1),
            "the unflushed delivery is lost, the other kept"
        );
    }

    /// A delete's record is written at once (with what was buffered before it): its flags
    /// follow once its Lsn is fsync'd, which must mean the record is in the file.
    #[test]
    fn deletes_are_written_at_once() {
        let (dir, mut e) = with_stream(FsyncPolicy::No, 1 << 20);
        (1..=3).for_each(|ms| add(&mut e, ms));
        let s = e.stream_mut(0, b"s").expect("stream");
        s.delete(&[StreamId::new(2, 0)]).expect("delete");
        drop(e);
        let e = open(dir.path(), FsyncPolicy::No, 1 << 20);
        assert_eq!(ids(&e), vec![1, 3]);
        assert_eq!(e.stream(0, b"s").expect("stream").len(), 2);
    }

    /// A renamed stream's journal is the same file under a new name: its buffered records
    /// are written before the next append measures it, so none is overwritten.
    #[test]
    fn a_rename_keeps_buffered_journal_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut e = grouped(dir.path(), b"s");
        read_one(&mut e, b"s");
        e.rename_stream(0, b"s", b"t").expect("rename");
        read_one(&mut e, b"t");
        e.flush_writes().expect("flush");
        drop(e);
        let e = open(dir.path(), FsyncPolicy::No, 1 << 20);
        assert_eq!(delivered(&e, b"t"), (2, 2));
    }

    /// A sync round writes buffers it finds before fsyncing, so `everysec` keeps its bound
    /// even for appends nobody flushed.
    #[test]
    fn a_sync_round_writes_buffers_first() {
        let (dir, mut e) = with_stream(FsyncPolicy::EverySec, 1 << 20);
        (1..=2).for_each(|ms| add(&mut e, ms));
        e.durability().sync_now().expect("sync round");
        drop(e);
        let e = open(dir.path(), FsyncPolicy::EverySec, 1 << 20);
        assert_eq!(ids(&e), vec![1, 2]);
    }
}
