//! Commit order and group commit: every write gets an [`Lsn`] and marks the files (and
//! directories) it dirtied; a sync thread fsyncs everything dirtied up to an Lsn, then
//! publishes it as durable. A failed write or fsync poisons the engine: it is never retried.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering},
        Arc, Condvar, Mutex, MutexGuard,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    io::{VFile, Vfs},
    write_behind::WriteBehind,
    Error, FsyncPolicy, Lsn, Result,
};

type Listener = Arc<dyn Fn(Lsn) + Send + Sync>;

/// Tracks which writes are durable, shared with whoever waits on them.
pub struct Durability {
    vfs: Arc<dyn Vfs>,
    inner: Mutex<Inner>,
    /// Wakes the sync thread (new work, policy change, shutdown).
    work: Condvar,
    /// Wakes waiters after a round or a poisoning.
    published: Condvar,
    /// Highest Lsn whose files were fsync'd.
    synced: AtomicU64,
    policy: AtomicU8,
    poisoned_flag: AtomicBool,
    poisoned: Mutex<Option<String>>,
    listener: Mutex<Option<Listener>>,
    /// Serialises sync rounds (sync thread and explicit `sync_now`).
    round: Mutex<()>,
    fsyncs: AtomicU64,
    bytes_written: AtomicU64,
    /// Invalid records (CRC or framing) that reads skipped instead of serving.
    corrupt_skipped: AtomicU64,
    /// Tail appends buffered until the server replies (see [`crate::write_behind`]).
    write_behind: WriteBehind,
}

#[derive(Default)]
struct Inner {
    last_lsn: u64,
    files: HashMap<usize, Arc<dyn VFile>>,
    dirs: HashMap<PathBuf, ()>,
    shutdown: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn policy_code(p: FsyncPolicy) -> u8 {
    match p {
        FsyncPolicy::Always => 0,
        FsyncPolicy::EverySec => 1,
        FsyncPolicy::No => 2,
    }
}

fn file_key(f: &Arc<dyn VFile>) -> usize {
    Arc::as_ptr(f) as *const () as usize
}

impl Durability {
    pub(crate) fn new(vfs: Arc<dyn Vfs>, policy: FsyncPolicy) -> Arc<Durability> {
        Arc::new(Durability {
            vfs,
            inner: Mutex::new(Inner::default()),
            work: Condvar::new(),
            published: Condvar::new(),
            synced: AtomicU64::new(0),
            policy: AtomicU8::new(policy_code(policy)),
            poisoned_flag: AtomicBool::new(false),
            poisoned: Mutex::new(None),
            listener: Mutex::new(None),
            round: Mutex::new(()),
            fsyncs: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            corrupt_skipped: AtomicU64::new(0),
            write_behind: WriteBehind::default(),
        })
    }

    /// True once a write at `lsn` may be acknowledged under the current policy.
    pub fn is_durable(&self, lsn: Lsn) -> bool {
        match self.policy() {
            FsyncPolicy::Always => lsn.0 <= self.synced.load(Ordering::Acquire),
            FsyncPolicy::EverySec | FsyncPolicy::No => true,
        }
    }

    /// Blocks until `lsn` is acknowledgeable; fails if the engine was poisoned meanwhile.
    pub fn wait(&self, lsn: Lsn) -> Result<()> {
        let mut inner = lock(&self.inner);
        loop {
            if self.is_durable(lsn) {
                return Ok(());
            }
            if let Some(why) = self.poisoned() {
                return Err(Error::Poisoned(why));
            }
            self.work.notify_all();
            inner = self
                .published
                .wait_timeout(inner, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Called from the sync thread after each completed fsync round with the new durable Lsn.
    pub fn set_listener(&self, listener: Box<dyn Fn(Lsn) + Send + Sync>) {
        *lock(&self.listener) = Some(Arc::from(listener));
    }

    /// Buffered tail appends (write-behind): the server compares [`WriteBehind::appended`]
    /// with [`WriteBehind::written`] to know whether it must flush before replying.
    pub fn write_behind(&self) -> &WriteBehind {
        &self.write_behind
    }

    /// The reason writes are refused, after a failed fsync or write.
    pub fn poisoned(&self) -> Option<String> {
        if !self.poisoned_flag.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.poisoned).clone()
    }

    /// The highest Lsn whose data has actually been fsync'd (whatever the policy).
    pub fn synced_lsn(&self) -> Lsn {
        Lsn(self.synced.load(Ordering::Acquire))
    }

    /// The most recently allocated Lsn.
    pub fn last_lsn(&self) -> Lsn {
        Lsn(lock(&self.inner).last_lsn)
    }

    pub fn policy(&self) -> FsyncPolicy {
        match self.policy.load(Ordering::Acquire) {
            0 => FsyncPolicy::Always,
            1 => FsyncPolicy::EverySec,
            _ => FsyncPolicy::No,
        }
    }

    pub(crate) fn set_policy(&self, policy: FsyncPolicy) {
        self.policy.store(policy_code(policy), Ordering::Release);
        let _inner = lock(&self.inner);
        self.work.notify_all();
        self.published.notify_all();
    }

    /// Fails with [`Error::Poisoned`] once a write or fsync has failed.
    pub(crate) fn check(&self) -> Result<()> {
        match self.poisoned() {
            Some(why) => Err(Error::Poisoned(why)),
            None => Ok(()),
        }
    }

    /// Refuses all further writes; wakes every waiter so it can report the failure.
    pub(crate) fn poison(&self, why: String) {
        {
            let mut p = lock(&self.poisoned);
            if p.is_none() {
                *p = Some(why);
            }
        }
        self.poisoned_flag.store(true, Ordering::Release);
        let _inner = lock(&self.inner);
        self.published.notify_all();
    }

    /// Turns a failed write into poisoning and the matching error.
    pub(crate) fn write_failed(&self, context: &str, err: std::io::Error) -> Error {
        let why = format!("{context}: {err}");
        self.poison(why);
        Error::io(context.to_string(), err)
    }

    /// Records a completed write of `bytes` to `file` and returns its Lsn.
    pub(crate) fn wrote(&self, file: &Arc<dyn VFile>, bytes: u64) -> Lsn {
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        let mut inner = lock(&self.inner);
        let was_idle = !self.has_work(&inner);
        inner.last_lsn += 1;
        inner
            .files
            .entry(file_key(file))
            .or_insert_with(|| file.clone());
        self.work_added(was_idle);
        Lsn(inner.last_lsn)
    }

    /// Wakes the sync thread for new work: at every write under `always` (group commit),
    /// and under `everysec` for the first write after an idle spell, which the thread
    /// otherwise sleeps through (it does not poll; see `run`).
    fn work_added(&self, was_idle: bool) {
        match self.policy() {
            FsyncPolicy::Always => self.work.notify_all(),
            FsyncPolicy::EverySec if was_idle => self.work.notify_all(),
            _ => {}
        }
    }

    /// Records a change to a directory's entries (create/rename/remove) and returns its Lsn.
    pub(crate) fn dir_changed(&self, dir: &Path) -> Lsn {
        let mut inner = lock(&self.inner);
        let was_idle = !self.has_work(&inner);
        inner.last_lsn += 1;
        inner.dirs.insert(dir.to_path_buf(), ());
        self.work_added(was_idle);
        Lsn(inner.last_lsn)
    }

    /// A new Lsn for a write that dirtied nothing (e.g. XDEL of absent IDs).
    pub(crate) fn next_lsn(&self) -> Lsn {
        let mut inner = lock(&self.inner);
        inner.last_lsn += 1;
        Lsn(inner.last_lsn)
    }

    /// Counts an fsync the caller performed itself (seal, checkpoint).
    pub(crate) fn count_fsync(&self) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    pub(crate) fn corrupt_counter(&self) -> &AtomicU64 {
        &self.corrupt_skipped
    }

    pub(crate) fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }

    /// One group-commit round: fsync every file and directory dirtied so far, then publish
    /// the Lsn that covered them. Poisons (and never retries) on failure.
    pub fn sync_now(&self) -> Result<Lsn> {
        let _round = lock(&self.round);
        self.check()?;
        // Buffered appends are normally written before the server replies; write any
        // still waiting so a round covers everything appended before it.
        self.write_behind.flush_listed(self)?;
        let (target, files, dirs) = {
            let mut inner = lock(&self.inner);
            let files: Vec<_> = inner.files.drain().map(|(_, f)| f).collect();
            let dirs: Vec<_> = inner.dirs.drain().map(|(d, ())| d).collect();
            (inner.last_lsn, files, dirs)
        };
        for f in &files {
            if let Err(e) = f.sync_data() {
                let err = self.write_failed("fsync", e);
                return Err(err);
            }
            self.count_fsync();
        }
        for d in &dirs {
            match self.vfs.sync_dir(d) {
                Ok(()) => self.count_fsync(),
                // A directory removed since it was dirtied has nothing left to persist here;
                // its parent was dirtied by the removal.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.write_failed("fsync of a directory", e)),
            }
        }
        self.synced.fetch_max(target, Ordering::AcqRel);
        {
            let _inner = lock(&self.inner);
            self.published.notify_all();
        }
        let listener = lock(&self.listener).clone();
        if let Some(listener) = listener {
            listener(Lsn(target));
        }
        Ok(Lsn(target))
    }

    fn has_work(&self, inner: &Inner) -> bool {
        inner.last_lsn > self.synced.load(Ordering::Acquire)
            || !inner.files.is_empty()
            || !inner.dirs.is_empty()
            || self.write_behind.has_dirty()
    }

    /// Starts the background sync thread (group commit for `always`, 1 s for `everysec`).
    pub(crate) fn start(self: &Arc<Self>) -> Result<SyncThread> {
        let me = self.clone();
        let handle = std::thread::Builder::new()
            .name("sluice-sync".into())
            .spawn(move || me.run())
            .map_err(|e| Error::io("spawn sync thread", e))?;
        Ok(SyncThread {
            durability: self.clone(),
            handle: Some(handle),
        })
    }

    fn run(&self) {
        let mut last_round = Instant::now();
        loop {
            {
                let mut inner = lock(&self.inner);
                loop {
                    if inner.shutdown {
                        return;
                    }
                    let poisoned = self.poisoned_flag.load(Ordering::Acquire);
                    let due = match self.policy() {
                        FsyncPolicy::Always => !poisoned && self.has_work(&inner),
                        FsyncPolicy::EverySec => {
                            !poisoned
                                && self.has_work(&inner)
                                && last_round.elapsed() >= Duration::from_secs(1)
                        }
                        FsyncPolicy::No => false,
                    };
                    if due {
                        break;
                    }
                    // Idle, the thread sleeps up to a second: writers wake it when work
                    // appears (see `wrote`), so an idle server does not poll.
                    let wait = match self.policy() {
                        FsyncPolicy::EverySec if !poisoned && self.has_work(&inner) => {
                            Duration::from_secs(1)
                                .saturating_sub(last_round.elapsed())
                                .max(Duration::from_millis(10))
                        }
                        _ => Duration::from_secs(1),
                    };
                    inner = self
                        .work
                        .wait_timeout(inner, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
            last_round = Instant::now();
            // Errors poison the engine inside sync_now; the loop then idles until shutdown.
            let _ = self.sync_now();
        }
    }
}

/// Owns the sync thread; stops it when dropped.
pub(crate) struct SyncThread {
    durability: Arc<Durability>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for SyncThread {
    fn drop(&mut self) {
        {
            let mut inner = lock(&self.durability.inner);
            inner.shutdown = true;
            self.durability.work.notify_all();
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::OsVfs;

    #[test]
    fn always_group_commit_publishes_and_calls_listener() {
        let dir = tempfile::tempdir().unwrap();
        let vfs: Arc<dyn Vfs> = Arc::new(OsVfs);
        let d = Durability::new(vfs.clone(), FsyncPolicy::Always);
        let seen = Arc::new(AtomicU64::new(0));
        let s2 = seen.clone();
        d.set_listener(Box::new(move |l| {
            s2.fetch_max(l.0, Ordering::SeqCst);
        }));
        let _t = d.start().unwrap();
        let f = vfs.open(&dir.path().join("x"), true).unwrap();
        f.write_all_at(b"abc", 0).unwrap();
        let lsn = d.wrote(&f, 3);
        d.wait(lsn).unwrap();
        assert!(d.is_durable(lsn));
        assert!(d.synced_lsn() >= lsn);
        // The listener runs right after the round publishes; give it a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.load(Ordering::SeqCst) < lsn.0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(seen.load(Ordering::SeqCst) >= lsn.0);
        assert!(d.fsync_count() >= 1);
    }

    #[test]
    fn everysec_and_no_acknowledge_at_once() {
        let vfs: Arc<dyn Vfs> = Arc::new(OsVfs);
        let d = Durability::new(vfs, FsyncPolicy::No);
        let l = d.next_lsn();
        assert!(d.is_durable(l));
        assert_eq!(d.synced_lsn(), Lsn(0));
        d.set_policy(FsyncPolicy::Always);
        assert!(!d.is_durable(l));
        d.sync_now().unwrap();
        assert!(d.is_durable(l));
    }

    /// Idle under `everysec`, the sync thread sleeps in one-second waits instead of polling,
    /// so the write that ends the idle spell must wake it (else it waits up to a second).
    #[test]
    fn everysec_wakes_for_the_first_write_after_an_idle_spell() {
        let dir = tempfile::tempdir().unwrap();
        let vfs: Arc<dyn Vfs> = Arc::new(OsVfs);
        let d = Durability::new(vfs.clone(), FsyncPolicy::EverySec);
        let _t = d.start().unwrap();
        // The thread's one-second waits run from its start: at 1.1 s the next ends at 2 s.
        std::thread::sleep(Duration::from_millis(1100));
        let f = vfs.open(&dir.path().join("x"), true).unwrap();
        f.write_all_at(b"abc", 0).unwrap();
        let written = Instant::now();
        let lsn = d.wrote(&f, 3);
        while d.synced_lsn() < lsn && written.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(d.synced_lsn() >= lsn, "never synced");
        let took = written.elapsed();
        assert!(took < Duration::from_millis(500), "synced after {took:?}");
    }

    #[test]
    fn poison_refuses_and_wakes_waiters() {
        let vfs: Arc<dyn Vfs> = Arc::new(OsVfs);
        let d = Durability::new(vfs, FsyncPolicy::Always);
        let l = d.next_lsn();
        d.poison("fsync: EIO".into());
        assert!(matches!(d.wait(l), Err(Error::Poisoned(_))));
        assert!(matches!(d.check(), Err(Error::Poisoned(_))));
        assert!(d.sync_now().is_err());
    }
}
