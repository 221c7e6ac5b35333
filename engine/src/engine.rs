//! The data directory: logical databases of streams keyed by binary keys, key→directory
//! naming, SCAN cursors, expiry, rename and flush.
//!
//! Layout: `<dir>/db<N>/<escaped key>/` per stream, `<dir>/trash/` for removed streams
//! awaiting deletion (a stream directory is renamed into `trash` and deleted only once that
//! rename is durable, so a crash never leaves a half-deleted stream under its key).

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use bytes::Bytes;

use crate::{
    durability::{Durability, SyncThread},
    io::{OsVfs, Vfs},
    meta::{key_file_incomplete, read_key_file, KEY_FILE},
    stream::{Ctx, Stream},
    Db, EngineStats, Error, FsyncPolicy, Lsn, Options, RecoveryReport, Result,
};

/// Smallest segment size accepted (a header plus a little data).
const MIN_SEGMENT: u64 = 4096;
/// Escaped key names longer than this use a hash instead (file names are ≤ 255 bytes).
const MAX_NAME: usize = 200;
const TRASH: &str = "trash";

struct Keyed {
    slot: usize,
    stream: Stream,
}

#[derive(Default)]
struct Database {
    dir: PathBuf,
    streams: HashMap<Bytes, Keyed>,
    /// SCAN order: a key keeps its slot for as long as it exists.
    slots: Vec<Option<Bytes>>,
    free: Vec<usize>,
    expiries: BTreeSet<(u64, Bytes)>,
}

impl Database {
    fn insert(&mut self, key: Bytes, stream: Stream) -> &mut Stream {
        let slot = match self.free.pop() {
            Some(s) => {
                if let Some(cell) = self.slots.get_mut(s) {
                    *cell = Some(key.clone());
                }
                s
            }
            None => {
                self.slots.push(Some(key.clone()));
                self.slots.len() - 1
            }
        };
        if let Some(at) = stream.expire() {
            self.expiries.insert((at, key.clone()));
        }
        let entry = self.streams.entry(key).or_insert(Keyed { slot, stream });
        &mut entry.stream
    }

    fn take(&mut self, key: &[u8]) -> Option<(Bytes, Stream)> {
        let (k, keyed) = self.streams.remove_entry(key)?;
        if let Some(cell) = self.slots.get_mut(keyed.slot) {
            *cell = None;
        }
        self.free.push(keyed.slot);
        if let Some(at) = keyed.stream.expire() {
            self.expiries.remove(&(at, k.clone()));
        }
        Some((k, keyed.stream))
    }
}

/// A data directory of streams.
pub struct Engine {
    dir: PathBuf,
    ctx: Ctx,
    options: Options,
    dbs: Vec<Database>,
    trash_seq: u64,
    /// Removed stream directories, deletable once the rename into `trash` is durable.
    trash_pending: Vec<(Lsn, PathBuf)>,
    _sync: SyncThread,
    /// Exclusive lock on `<dir>/LOCK`, released when the engine is dropped.
    _lock: Box<dyn Send + Sync>,
}

/// Maps a key to a directory name: `k` + the key with bytes outside `[A-Za-z0-9_-]`
/// written as `%XX`; keys whose escaped form is too long get `h` + a 64-bit hash. Name
/// clashes get a `~N` suffix; the `key` file inside the directory is the source of truth.
pub(crate) fn escape_key(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len() + 1);
    out.push('k');
    for &b in key {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        if out.len() > MAX_NAME {
            return format!("h{:016x}", fnv1a(key));
        }
    }
    out
}

/// Inverse of [`escape_key`] for `k` names (used only if a key file is lost).
pub(crate) fn unescape_key(name: &str) -> Option<Vec<u8>> {
    let rest = name.strip_prefix('k')?;
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if b == b'~' {
            break;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn invalid(what: &str) -> Error {
    Error::io(
        what.to_string(),
        std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string()),
    )
}

/// Removes a directory tree without recursion (stream directories are one level deep,
/// `trash` two).
pub(crate) fn remove_tree(vfs: &Arc<dyn Vfs>, root: &Path) -> std::io::Result<()> {
    let mut stack = vec![(root.to_path_buf(), false)];
    while let Some((dir, listed)) = stack.pop() {
        if listed {
            match vfs.remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        stack.push((dir.clone(), true));
        let names = match vfs.list_dir(&dir) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for name in names {
            let p = dir.join(name);
            if vfs.is_dir(&p) {
                stack.push((p, false));
            } else {
                match vfs.remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

impl Engine {
    /// Opens (creating if needed) a data directory and recovers every stream in it.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<(Engine, RecoveryReport)> {
        Engine::open_with(Arc::new(OsVfs), dir, options)
    }

    /// [`Engine::open`] through another file system (tests: simulated crashes and faults).
    pub fn open_with(
        vfs: Arc<dyn Vfs>,
        dir: impl AsRef<Path>,
        options: Options,
    ) -> Result<(Engine, RecoveryReport)> {
        let started = Instant::now();
        let dir = dir.as_ref().to_path_buf();
        if options.databases == 0 {
            return Err(invalid("at least one database is required"));
        }
        if options.segment_size < MIN_SEGMENT || options.segment_size > u64::from(u32::MAX) {
            return Err(invalid("segment size must be between 4 KiB and 4 GiB"));
        }
        let durability = Durability::new(vfs.clone(), options.fsync);
        let ctx = Ctx {
            vfs: vfs.clone(),
            durability: durability.clone(),
            segment_size: options.segment_size,
        };
        let mkdir = |p: &Path| {
            vfs.create_dir_all(p)
                .map_err(|e| Error::io(format!("create {}", p.display()), e))
        };
        mkdir(&dir)?;
        let lock = vfs.lock(&dir.join("LOCK")).map_err(|e| {
            Error::io(
                format!("lock {} (is another server using it?)", dir.display()),
                e,
            )
        })?;
        let trash = dir.join(TRASH);
        remove_tree(&vfs, &trash).map_err(|e| Error::io("empty the trash", e))?;
        mkdir(&trash)?;
        let mut report = RecoveryReport::default();
        let mut dbs = Vec::with_capacity(options.databases as usize);
        for n in 0..options.databases {
            let db_dir = dir.join(format!("db{n}"));
            mkdir(&db_dir)?;
            let mut db = Database {
                dir: db_dir.clone(),
                ..Database::default()
            };
            let names = vfs
                .list_dir(&db_dir)
                .map_err(|e| Error::io(format!("list {}", db_dir.display()), e))?;
            let mut names: Vec<_> = names.into_iter().collect();
            names.sort();
            for name in names {
                let stream_dir = db_dir.join(&name);
                if !vfs.is_dir(&stream_dir) {
                    continue;
                }
                let key = match read_key_file(&vfs, &stream_dir.join(KEY_FILE)) {
                    Some((_, key)) => Some(key),
                    None => name.to_str().and_then(unescape_key),
                };
                let key_path = stream_dir.join(KEY_FILE);
                let key_ok = read_key_file(&vfs, &key_path).is_some();
                let key_incomplete = !key_ok && key_file_incomplete(&vfs, &key_path);
                let opened = Stream::open(&ctx, stream_dir.clone(), &mut report)?;
                let opened = match opened {
                    Some(stream) if key_incomplete && stream.never_synced() => {
                        // The key file never reached the disk and nothing of the stream
                        // was fsync'd on its own since: its creation never completed, so
                        // nothing in it was acknowledged.
                        report
                            .incomplete_streams_removed
                            .push(stream_dir.display().to_string());
                        drop(stream);
                        None
                    }
                    other => other,
                };
                match (opened, key) {
                    (Some(mut stream), Some(key)) => {
                        if key_incomplete {
                            // Never written back whole (not damage): rewrite it from the
                            // directory name before anything else acts on the stream.
                            stream.rewrite_key_file(n, &key)?;
                        } else if !key_ok {
                            report.corruptions.push(format!(
                                "{}: key file damaged; key recovered from the directory name",
                                stream_dir.display()
                            ));
                        }
                        let key = Bytes::from(key);
                        if db.streams.contains_key(&key) {
                            report.corruptions.push(format!(
                                "{}: a second directory for the same key; left alone",
                                stream_dir.display()
                            ));
                            continue;
                        }
                        db.insert(key, stream);
                    }
                    (Some(_), None) => report.corruptions.push(format!(
                        "{}: key file damaged and the name cannot be decoded; stream left alone",
                        stream_dir.display()
                    )),
                    (None, _) => {
                        // Creation never completed: nothing in it was ever acknowledged.
                        remove_tree(&vfs, &stream_dir)
                            .map_err(|e| Error::io("remove an incomplete stream", e))?;
                        durability.dir_changed(&db_dir);
                    }
                }
            }
            dbs.push(db);
        }
        // The database and trash directories themselves (and the data directory, if new)
        // must be durable entries before any stream inside them is acknowledged.
        durability.dir_changed(&dir);
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            durability.dir_changed(parent);
        }
        // Anything recovery changed becomes durable before new writes are accepted.
        durability.sync_now()?;
        let sync = durability.start()?;
        report.elapsed = started.elapsed();
        Ok((
            Engine {
                dir,
                ctx,
                options,
                dbs,
                trash_seq: 0,
                trash_pending: Vec::new(),
                _sync: sync,
                _lock: lock,
            },
            report,
        ))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes everything written so far durable (fsync), e.g. for SHUTDOWN and DEBUG RELOAD.
    pub fn sync_all(&mut self) -> Result<()> {
        self.ctx.durability.check()?;
        self.flush_writes()?;
        for db in &mut self.dbs {
            for keyed in db.streams.values_mut() {
                keyed.stream.sync()?;
            }
        }
        self.ctx.durability.sync_now()?;
        self.settle_trash();
        Ok(())
    }

    /// Syncs and releases every file; the directory can be reopened afterwards.
    pub fn close(mut self) -> Result<()> {
        self.sync_all()
    }

    pub fn durability(&self) -> Arc<Durability> {
        self.ctx.durability.clone()
    }

    pub fn fsync_policy(&self) -> FsyncPolicy {
        self.ctx.durability.policy()
    }

    /// Changes the policy. Buffered appends are written first, so a write made under the
    /// old policy is never covered by the new one's promise without being in the file.
    pub fn set_fsync_policy(&mut self, policy: FsyncPolicy) -> Result<()> {
        self.flush_writes()?;
        self.options.fsync = policy;
        self.ctx.durability.set_policy(policy);
        Ok(())
    }

    /// Lets appends under `everysec` and `no` wait in memory until [`Engine::flush_writes`]
    /// (write-behind, see [`crate::write_behind`]). Off by default: every append is then in
    /// the file when its call returns. Whoever turns it on must flush before acknowledging.
    pub fn set_write_behind(&mut self, on: bool) -> Result<()> {
        if !on {
            self.flush_writes()?;
        }
        self.ctx.durability.write_behind().set_enabled(on);
        Ok(())
    }

    /// Writes every buffered append to its file (one `pwrite` per stream) and returns the
    /// Lsn of the last write so far: under `always`, a reply that reflects the buffered
    /// appends waits for it. Advances [`crate::write_behind::WriteBehind::written`].
    pub fn flush_writes(&mut self) -> Result<Lsn> {
        let d = &self.ctx.durability;
        let covered = d.write_behind().flush_all(d)?;
        d.write_behind().mark_written(covered);
        Ok(d.last_lsn())
    }

    pub fn stats(&self) -> EngineStats {
        let poisoned = self.ctx.durability.poisoned();
        EngineStats {
            fsyncs: self.ctx.durability.fsync_count(),
            bytes_written: self.ctx.durability.bytes_written(),
            last_fsync_ok: poisoned.is_none(),
            poisoned,
            corrupt_records_skipped: self
                .ctx
                .durability
                .corrupt_counter()
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    pub fn databases(&self) -> u32 {
        self.options.databases
    }

    fn db(&self, db: Db) -> Option<&Database> {
        self.dbs.get(db as usize)
    }

    fn db_mut(&mut self, db: Db) -> Result<&mut Database> {
        self.dbs
            .get_mut(db as usize)
            .ok_or_else(|| invalid("no such database"))
    }

    pub fn stream(&self, db: Db, key: &[u8]) -> Option<&Stream> {
        self.db(db)?.streams.get(key).map(|k| &k.stream)
    }

    pub fn stream_mut(&mut self, db: Db, key: &[u8]) -> Option<&mut Stream> {
        self.dbs
            .get_mut(db as usize)?
            .streams
            .get_mut(key)
            .map(|k| &mut k.stream)
    }

    /// A directory name for `key` in `db` that is not taken yet.
    fn fresh_dir(&self, db: &Database, key: &[u8]) -> PathBuf {
        let name = escape_key(key);
        let mut candidate = db.dir.join(&name);
        let mut n = 1u64;
        while self.ctx.vfs.exists(&candidate) {
            candidate = db.dir.join(format!("{name}~{n}"));
            n += 1;
        }
        candidate
    }

    /// Creates an empty stream (XADD on a new key, XGROUP CREATE MKSTREAM); errors if it exists.
    pub fn create_stream(&mut self, db: Db, key: &[u8]) -> Result<(&mut Stream, Lsn)> {
        self.ctx.durability.check()?;
        self.settle_trash();
        let d = self
            .dbs
            .get(db as usize)
            .ok_or_else(|| invalid("no such database"))?;
        if d.streams.contains_key(key) {
            return Err(Error::KeyExists);
        }
        let dir = self.fresh_dir(d, key);
        let (stream, lsn) = Stream::create(&self.ctx, dir, db, key)?;
        let d = self.db_mut(db)?;
        Ok((d.insert(Bytes::copy_from_slice(key), stream), lsn))
    }

    /// Moves a stream's directory into the trash (deleted once that is durable).
    fn discard(&mut self, db: Db, stream: Stream) -> Result<Lsn> {
        let from = stream.dir.clone();
        drop(stream);
        self.trash_seq += 1;
        let to = self
            .dir
            .join(TRASH)
            .join(format!("{}-{}", std::process::id(), self.trash_seq));
        if let Err(e) = self.ctx.vfs.rename(&from, &to) {
            return Err(self
                .ctx
                .durability
                .write_failed("move a stream to the trash", e));
        }
        let d = &self.ctx.durability;
        d.dir_changed(&self.dir.join(TRASH));
        let db_dir = self
            .dbs
            .get(db as usize)
            .map(|d| d.dir.clone())
            .unwrap_or_default();
        let lsn = d.dir_changed(&db_dir);
        self.trash_pending.push((lsn, to));
        Ok(lsn)
    }

    /// Deletes trashed directories whose move into the trash is durable.
    fn settle_trash(&mut self) {
        let synced = self.ctx.durability.synced_lsn();
        let vfs = self.ctx.vfs.clone();
        self.trash_pending.retain(|(lsn, path)| {
            if *lsn <= synced {
                // Best effort: whatever is left is removed at the next open.
                let _ = remove_tree(&vfs, path);
                false
            } else {
                true
            }
        });
    }

    /// Deletes a stream and its files. Returns `None` if there was no such key.
    pub fn remove_stream(&mut self, db: Db, key: &[u8]) -> Result<Option<Lsn>> {
        self.ctx.durability.check()?;
        let Some(d) = self.dbs.get_mut(db as usize) else {
            return Ok(None);
        };
        let Some((_, stream)) = d.take(key) else {
            return Ok(None);
        };
        let lsn = self.discard(db, stream)?;
        self.settle_trash();
        Ok(Some(lsn))
    }

    /// RENAME: moves `from` to `to`, replacing any stream at `to`. Errors with `NoSuchKey`.
    /// The expiry moves with the stream (Redis keeps the TTL on RENAME).
    pub fn rename_stream(&mut self, db: Db, from: &[u8], to: &[u8]) -> Result<Lsn> {
        self.ctx.durability.check()?;
        if self.stream(db, from).is_none() {
            return Err(Error::NoSuchKey);
        }
        if from == to {
            return Ok(self.ctx.durability.next_lsn());
        }
        if self.stream(db, to).is_some() {
            self.remove_stream(db, to)?;
        }
        let d = self.db_mut(db)?;
        let Some((_, mut stream)) = d.take(from) else {
            return Err(Error::NoSuchKey);
        };
        let d = self
            .dbs
            .get(db as usize)
            .ok_or_else(|| invalid("no such database"))?;
        let new_dir = self.fresh_dir(d, to);
        let db_dir = d.dir.clone();
        if let Err(e) = self.ctx.vfs.rename(&stream.dir, &new_dir) {
            let err = self
                .ctx
                .durability
                .write_failed("rename a stream directory", e);
            self.db_mut(db)?
                .insert(Bytes::copy_from_slice(from), stream);
            return Err(err);
        }
        stream.dir = new_dir.clone();
        stream.groups.set_dir(&new_dir);
        {
            // Same encoding as creation, replaced atomically inside the renamed directory.
            let tmp_dir = &new_dir;
            let tmp = crate::meta::write_key_file(&self.ctx.vfs, &tmp_dir.join("key.tmp"), db, to)
                .and_then(|f| f.sync_data())
                .and_then(|()| {
                    self.ctx
                        .vfs
                        .rename(&tmp_dir.join("key.tmp"), &tmp_dir.join(KEY_FILE))
                });
            if let Err(e) = tmp {
                let err = self.ctx.durability.write_failed("rewrite a key file", e);
                self.db_mut(db)?.insert(Bytes::copy_from_slice(to), stream);
                return Err(err);
            }
        }
        self.ctx.durability.dir_changed(&new_dir);
        let lsn = self.ctx.durability.dir_changed(&db_dir);
        self.db_mut(db)?.insert(Bytes::copy_from_slice(to), stream);
        Ok(lsn)
    }

    /// Number of keys in a database.
    pub fn key_count(&self, db: Db) -> u64 {
        self.db(db).map_or(0, |d| d.streams.len() as u64)
    }

    /// Iterates a database's keys in unspecified order.
    pub fn keys(&self, db: Db) -> Box<dyn Iterator<Item = &[u8]> + '_> {
        match self.db(db) {
            Some(d) => Box::new(d.streams.keys().map(|k| k.as_ref())),
            None => Box::new(std::iter::empty()),
        }
    }

    /// RANDOMKEY's pick: the key in the first occupied slot at or after `seed` modulo the
    /// slot count, wrapping; `None` for an empty database. Every key can be picked (a key
    /// after freed slots more often, as Redis' bucket sampling favours some keys too).
    pub fn key_from_seed(&self, db: Db, seed: u64) -> Option<&[u8]> {
        let d = self.db(db)?;
        let n = d.slots.len();
        if n == 0 {
            return None;
        }
        let start = (seed % n as u64) as usize;
        d.slots[start..]
            .iter()
            .chain(&d.slots[..start])
            .find_map(|slot| slot.as_deref())
    }

    /// SCAN: up to about `count` keys from `cursor`; returns the next cursor (0 when done).
    /// Keys present for the whole scan are returned at least once: the cursor is a slot
    /// number and a key keeps its slot for as long as it exists.
    pub fn scan(&self, db: Db, cursor: u64, count: usize) -> (u64, Vec<Bytes>) {
        let Some(d) = self.db(db) else {
            return (0, Vec::new());
        };
        let mut i = usize::try_from(cursor).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut examined = 0;
        while examined < count.max(1) {
            let Some(slot) = d.slots.get(i) else { break };
            if let Some(k) = slot {
                out.push(k.clone());
            }
            i += 1;
            examined += 1;
        }
        let next = if i >= d.slots.len() { 0 } else { i as u64 };
        (next, out)
    }

    /// Removes every stream of one database.
    pub fn flush_db(&mut self, db: Db) -> Result<Lsn> {
        self.ctx.durability.check()?;
        let keys: Vec<Bytes> = match self.db(db) {
            Some(d) => d.streams.keys().cloned().collect(),
            None => return Err(invalid("no such database")),
        };
        let mut lsn = None;
        for k in keys {
            if let Some(l) = self.remove_stream(db, &k)? {
                lsn = Some(l);
            }
        }
        Ok(lsn.unwrap_or_else(|| self.ctx.durability.next_lsn()))
    }

    pub fn flush_all(&mut self) -> Result<Lsn> {
        let mut lsn = self.ctx.durability.next_lsn();
        for db in 0..self.options.databases {
            lsn = lsn.max(self.flush_db(db)?);
        }
        Ok(lsn)
    }

    /// Sets or clears (None) a key's expiry as a Unix time in ms; durable like any write.
    pub fn set_expire(&mut self, db: Db, key: &[u8], at_ms: Option<u64>) -> Result<Lsn> {
        let d = self.db_mut(db)?;
        let Some(keyed) = d.streams.get_mut(key) else {
            return Err(Error::NoSuchKey);
        };
        let old = keyed.stream.expire();
        let lsn = keyed.stream.set_expire(at_ms)?;
        let k = Bytes::copy_from_slice(key);
        if let Some(at) = old {
            d.expiries.remove(&(at, k.clone()));
        }
        if let Some(at) = at_ms {
            d.expiries.insert((at, k));
        }
        Ok(lsn)
    }

    pub fn expire_at(&self, db: Db, key: &[u8]) -> Option<u64> {
        self.stream(db, key)?.expire()
    }

    /// Keys whose expiry is ≤ `now_ms`, for the server's active expiry cycle (at most `limit`).
    pub fn expired_keys(&self, now_ms: u64, limit: usize) -> Vec<(Db, Bytes)> {
        let mut out = Vec::new();
        for (n, d) in self.dbs.iter().enumerate() {
            for (at, key) in &d.expiries {
                if *at > now_ms || out.len() >= limit {
                    break;
                }
                out.push((n as Db, key.clone()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Direction, IdSpec, StreamId, TrimSpec, TrimStrategy};
    use std::ops::Bound;

    fn opts(fsync: FsyncPolicy, segment_size: u64) -> Options {
        Options {
            fsync,
            segment_size,
            databases: 4,
        }
    }

    fn f(v: &str) -> Vec<(Bytes, Bytes)> {
        vec![(Bytes::from("f"), Bytes::from(v.to_string()))]
    }

    fn ids(entries: &[crate::Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.id.ms).collect()
    }

    /// `add_batch` gives each entry what one `add` after another would, across segment
    /// rolls, and what it wrote survives a reopen, including after a crash (no close).
    #[test]
    fn add_batch_matches_one_add_at_a_time() {
        let batch_dir = tempfile::tempdir().unwrap();
        let single_dir = tempfile::tempdir().unwrap();
        let (mut b, _) = Engine::open(batch_dir.path(), opts(FsyncPolicy::No, 4096)).unwrap();
        let (mut a, _) = Engine::open(single_dir.path(), opts(FsyncPolicy::No, 4096)).unwrap();
        b.create_stream(0, b"s").unwrap();
        a.create_stream(0, b"s").unwrap();
        let fields: Vec<Vec<(Bytes, Bytes)>> = (0..400).map(|i| f(&format!("v{i}"))).collect();
        let mut want = Vec::new();
        let mut got = Vec::new();
        for (round, chunk) in fields.chunks(16).enumerate() {
            let now = 1000 + round as u64 / 3;
            let specs: Vec<(IdSpec, &[(Bytes, Bytes)])> = chunk
                .iter()
                .enumerate()
                .map(|(i, fv)| {
                    let spec = match i % 5 {
                        // Too small once a stream has entries at `now`: a per-entry error.
                        1 => IdSpec::Explicit(StreamId::new(5, 0)),
                        2 => IdSpec::AutoSeq(now),
                        3 => IdSpec::Explicit(StreamId::new(0, 0)),
                        _ => IdSpec::Auto,
                    };
                    (spec, fv.as_slice())
                })
                .collect();
            let stream = b.stream_mut(0, b"s").unwrap();
            let (results, _) = stream.add_batch(&specs, now).unwrap();
            got.extend(results.into_iter().map(|r| r.map_err(|e| e.to_string())));
            let stream = a.stream_mut(0, b"s").unwrap();
            for (spec, fv) in &specs {
                want.push(
                    stream
                        .add(*spec, fv, now)
                        .map(|(id, _)| id)
                        .map_err(|e| e.to_string()),
                );
            }
        }
        assert_eq!(got, want);
        assert!(got.iter().any(Result::is_err) && got.iter().filter(|r| r.is_ok()).count() > 200);
        let all = |e: &Engine| {
            e.stream(0, b"s")
                .unwrap()
                .range(
                    Bound::Unbounded,
                    Bound::Unbounded,
                    usize::MAX,
                    Direction::Forward,
                )
                .unwrap()
        };
        let expected = all(&a);
        assert_eq!(all(&b), expected);
        assert!(b.stream(0, b"s").unwrap().meta().segments > 3);
        assert_eq!(b.stream(0, b"s").unwrap().len(), expected.len() as u64);
        // Crash: drop without closing, then recover from the files alone.
        b.sync_all().unwrap();
        drop(b);
        let (b, _) = Engine::open(batch_dir.path(), opts(FsyncPolicy::No, 4096)).unwrap();
        assert_eq!(all(&b), expected);
        assert_eq!(
            b.stream(0, b"s").unwrap().last_id(),
            a.stream(0, b"s").unwrap().last_id()
        );
    }

    #[test]
    fn append_range_get_reopen_with_rolling() {
        let dir = tempfile::tempdir().unwrap();
        let (mut e, _) = Engine::open(dir.path(), opts(FsyncPolicy::No, 4096)).unwrap();
        let (s, _) = e.create_stream(0, b"s").unwrap();
        for i in 1..=300u64 {
            s.add(
                IdSpec::Explicit(StreamId::new(i, 0)),
                &f(&format!("v{i}")),
                0,
            )
            .unwrap();
        }
        assert!(s.meta().segments > 3, "segments: {}", s.meta().segments);
        let all = s
            .range(
                Bound::Unbounded,
                Bound::Unbounded,
                usize::MAX,
                Direction::Forward,
            )
            .unwrap();
        assert_eq!(ids(&all), (1..=300).collect::<Vec<_>>());
        let back = s
            .range(
                Bound::Excluded(StreamId::new(10, 0)),
                Bound::Included(StreamId::new(200, 0)),
                5,
                Direction::Backward,
            )
            .unwrap();
        assert_eq!(ids(&back), vec![200, 199, 198, 197, 196]);
        let fwd = s
            .range(
                Bound::Excluded(StreamId::new(10, 0)),
                Bound::Unbounded,
                3,
                Direction::Forward,
            )
            .unwrap();
        assert_eq!(ids(&fwd), vec![11, 12, 13]);
        assert_eq!(
            s.get(StreamId::new(77, 0)).unwrap().unwrap().fields,
            f("v77")
        );
        assert_eq!(s.get(StreamId::new(77, 1)).unwrap(), None);
        e.close().unwrap();
        let (e, report) = Engine::open(dir.path(), opts(FsyncPolicy::No, 4096)).unwrap();
        assert_eq!(report.streams, 1);
        assert_eq!(
            report.tail_bytes_replayed, 0,
            "clean reopen replays nothing"
        );
        assert!(report.corruptions.is_empty(), "{:?}", report.corruptions);
        assert_eq!(report.bytes_truncated, 0);
        let s = e.stream(0, b"s").unwrap();
        assert_eq!(s.len(), 300);
        let all = s
            .range(
                Bound::Unbounded,
                Bound::Unbounded,
                usize::MAX,
                Direction::Backward,
            )
            .unwrap();
        assert_eq!(ids(&all), (1..=300).rev().collect::<Vec<_>>());
        assert_eq!(s.first_entry().unwrap().unwrap().id, StreamId::new(1, 0));
        assert_eq!(s.last_entry().unwrap().unwrap().id, StreamId::new(300, 0));
    }

    #[test]
    fn id_rules_and_state_survive_restart_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (mut e, _) = Engine::open(dir.path(), opts(FsyncPolicy::EverySec, 1 << 20)).unwrap();
        let (s, _) = e.create_stream(0, b"s").unwrap();
        assert!(matches!(
            s.add(IdSpec::Explicit(StreamId::MIN), &f("x"), 0),
            Err(Error::IdZero)
        ));
        let (a, _) = s.add(IdSpec::AutoSeq(0), &f("x"), 0).unwrap();
        assert_eq!(a, StreamId::new(0, 1));
        let (b, _) = s.add(IdSpec::Auto, &f("x"), 1000).unwrap();
        assert_eq!(b, StreamId::new(1000, 0));
        // Clock going backwards: still monotonic.
        let (c, _) = s.add(IdSpec::Auto, &f("x"), 10).unwrap();
        assert_eq!(c, StreamId::new(1000, 1));
        assert!(matches!(
            s.add(IdSpec::AutoSeq(999), &f("x"), 0),
            Err(Error::IdTooSmall)
        ));
        assert!(matches!(
            s.add(IdSpec::Explicit(StreamId::new(1000, 1)), &f("x"), 0),
            Err(Error::IdTooSmall)
        ));
        let (n, _) = s.delete(&[a, b, c, StreamId::new(5, 5)]).unwrap();
        assert_eq!(n, 3);
        assert!(s.is_empty());
        let m = s.meta();
        assert_eq!(m.max_deleted_entry_id, c);
        assert_eq!(m.entries_added, 3);
        assert_eq!(m.recorded_first_entry_id, StreamId::MIN);
        e.close().unwrap();
        let (mut e, _) = Engine::open(dir.path(), opts(FsyncPolicy::EverySec, 1 << 20)).unwrap();
        let s = e.stream_mut(0, b"s").unwrap();
        assert!(s.is_empty());
        assert_eq!(s.last_id(), c);
        assert!(matches!(
            s.add(IdSpec::Explicit(c), &f("x"), 0),
            Err(Error::IdTooSmall)
        ));
        let m = s.meta();
        assert_eq!((m.entries_added, m.max_deleted_entry_id), (3, c));
        s.add(IdSpec::Explicit(StreamId::new(2000, 0)), &f("y"), 0)
            .unwrap();
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn policies_acknowledge_as_documented() {
        for policy in [FsyncPolicy::Always, FsyncPolicy::EverySec, FsyncPolicy::No] {
            let dir = tempfile::tempdir().unwrap();
            let (mut e, _) = Engine::open(dir.path(), opts(policy, 1 << 16)).unwrap();
            let d = e.durability();
            let (s, l0) = e.create_stream(1, b"k").unwrap();
            let (_, l1) = s.add(IdSpec::Auto, &f("x"), 5).unwrap();
            assert!(l1 > l0);
            d.wait(l1).unwrap();
            assert!(d.is_durable(l1));
            if policy == FsyncPolicy::Always {
                assert!(d.synced_lsn() >= l1);
            }
            e.sync_all().unwrap();
            assert!(d.synced_lsn() >= l1);
            assert!(e.stats().fsyncs > 0);
            assert!(e.stats().last_fsync_ok);
        }
    }

    /// Every seed picks a live key, every key is picked by some seed, and an empty or
    /// missing database has none, also with freed slots in between.
    #[test]
    fn key_from_seed_picks_only_live_keys_and_each_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut e, _) = Engine::open(dir.path(), opts(FsyncPolicy::No, 1 << 16)).unwrap();
        assert_eq!(e.key_from_seed(0, 7), None);
        assert_eq!(e.key_from_seed(99, 7), None);
        for k in ["a", "b", "c", "d", "e"] {
            e.create_stream(0, k.as_bytes()).unwrap();
        }
        e.remove_stream(0, b"a").unwrap();
        e.remove_stream(0, b"d").unwrap();
        let mut picked = std::collections::BTreeSet::new();
        for seed in 0..20 {
            let k = e.key_from_seed(0, seed).unwrap().to_vec();
            assert!(e.stream(0, &k).is_some(), "{k:?}");
            picked.insert(k);
        }
        let want: std::collections::BTreeSet<Vec<u8>> =
            [b"b".to_vec(), b"c".to_vec(), b"e".to_vec()].into();
        assert_eq!(picked, want);
        assert!(e.key_from_seed(0, u64::MAX).is_some());
        for k in ["b", "c", "e"] {
            e.remove_stream(0, k.as_bytes()).unwrap();
        }
        assert_eq!(e.key_from_seed(0, 3), None);
    }

    #[test]
    fn keyspace_create_remove_rename_scan_flush_expire() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(FsyncPolicy::No, 1 << 16);
        let (mut e, _) = Engine::open(dir.path(), o.clone()).unwrap();
        let weird: &[u8] = b"a/b\x00\xff..";
        let long = vec![b'x'; 500];
        for k in [&b"a"[..], b"b", weird, &long[..]] {
            let (s, _) = e.create_stream(0, k).unwrap();
            s.add(IdSpec::Auto, &f("v"), 1).unwrap();
        }
        assert!(matches!(e.create_stream(0, b"a"), Err(Error::KeyExists)));
        assert_eq!(e.key_count(0), 4);
        assert_eq!(e.key_count(1), 0);
        let mut seen = Vec::new();
        let mut cursor = 0;
        loop {
            let (next, keys) = e.scan(0, cursor, 1);
            seen.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        seen.sort();
        let mut want: Vec<Bytes> = e.keys(0).map(Bytes::copy_from_slice).collect();
        want.sort();
        assert_eq!(seen, want);
        e.set_expire(0, b"a", Some(100)).unwrap();
        assert_eq!(e.expired_keys(99, 10), vec![]);
        assert_eq!(e.expired_keys(100, 10), vec![(0, Bytes::from("a"))]);
        e.rename_stream(0, b"a", b"b").unwrap();
        assert!(e.stream(0, b"a").is_none());
        assert_eq!(e.expire_at(0, b"b"), Some(100));
        assert!(matches!(
            e.rename_stream(0, b"zz", b"y"),
            Err(Error::NoSuchKey)
        ));
        assert!(e.remove_stream(0, weird).unwrap().is_some());
        assert_eq!(e.remove_stream(0, weird).unwrap(), None);
        e.create_stream(2, b"other").unwrap();
        e.close().unwrap();
        let (mut e, r) = Engine::open(dir.path(), o.clone()).unwrap();
        assert_eq!(r.streams, 3, "{r:?}");
        let mut keys: Vec<Vec<u8>> = e.keys(0).map(<[u8]>::to_vec).collect();
        keys.sort();
        assert_eq!(keys, vec![b"b".to_vec(), long.clone()]);
        assert_eq!(e.expire_at(0, b"b"), Some(100));
        assert_eq!(e.stream(0, &long).unwrap().len(), 1);
        e.flush_db(0).unwrap();
        assert_eq!(e.key_count(0), 0);
        assert_eq!(e.key_count(2), 1);
        e.flush_all().unwrap();
        assert_eq!(e.key_count(2), 0);
        e.close().unwrap();
        let (e, r) = Engine::open(dir.path(), o).unwrap();
        assert_eq!(r.streams, 0);
        assert_eq!(e.key_count(0) + e.key_count(2), 0);
        // The trash is emptied.
        assert_eq!(
            std::fs::read_dir(dir.path().join("trash")).unwrap().count(),
            0
        );
    }

    #[test]
    fn trim_exact_and_approx_drop_segments() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(FsyncPolicy::No, 4096);
        let (mut e, _) = Engine::open(dir.path(), o.clone()).unwrap();
        let (s, _) = e.create_stream(0, b"s").unwrap();
        for i in 1..=400u64 {
            s.add(IdSpec::Explicit(StreamId::new(i, 0)), &f("value-value"), 0)
                .unwrap();
        }
        let segs = s.meta().segments;
        let spec = |strategy, approx, limit| TrimSpec {
            strategy,
            approx,
            limit,
        };
        let (n, _) = s
            .trim(spec(TrimStrategy::MaxLen(390), false, None))
            .unwrap();
        assert_eq!(n, 10);
        assert_eq!(s.first_entry().unwrap().unwrap().id, StreamId::new(11, 0));
        let (n, _) = s
            .trim(spec(TrimStrategy::MinId(StreamId::new(21, 0)), false, None))
            .unwrap();
        assert_eq!(n, 10);
        assert_eq!(s.len(), 380);
        let (n, _) = s
            .trim(spec(TrimStrategy::MaxLen(100), true, Some(1)))
            .unwrap();
        assert_eq!(n, 0, "LIMIT 1 forbids dropping a whole segment");
        let (n, _) = s.trim(spec(TrimStrategy::MaxLen(100), true, None)).unwrap();
        assert!(n > 0 && s.len() >= 100 && s.len() == 380 - n, "{n}");
        assert!(s.meta().segments < segs);
        let first = s.first_entry().unwrap().unwrap().id;
        assert_eq!(first.ms, 400 - s.len() + 1);
        assert_eq!(s.meta().recorded_first_entry_id, first);
        let len = s.len();
        e.close().unwrap();
        let (e, _) = Engine::open(dir.path(), o).unwrap();
        let s = e.stream(0, b"s").unwrap();
        assert_eq!(s.len(), len);
        assert_eq!(s.first_entry().unwrap().unwrap().id, first);
        let all = s
            .range(
                Bound::Unbounded,
                Bound::Unbounded,
                usize::MAX,
                Direction::Forward,
            )
            .unwrap();
        assert_eq!(all.len() as u64, len);
    }

    #[test]
    fn memory_scales_with_index_points_not_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (mut e, _) = Engine::open(dir.path(), opts(FsyncPolicy::No, 1 << 20)).unwrap();
        let (s, _) = e.create_stream(0, b"s").unwrap();
        let n = 100_000u64;
        for i in 1..=n {
            s.add(
                IdSpec::Explicit(StreamId::new(i, 0)),
                &f("0123456789012345678901234567890123456789"),
                0,
            )
            .unwrap();
        }
        // Read everything, so every sealed segment's index is loaded.
        let all = s
            .range(
                Bound::Unbounded,
                Bound::Unbounded,
                usize::MAX,
                Direction::Forward,
            )
            .unwrap();
        assert_eq!(all.len() as u64, n);
        let bytes = s.index_memory();
        // About one 24-byte point per SPACING (2 KiB) of records, whatever the number of
        // entries: these ~80-byte records need ~1 byte of index each, not one point each.
        let records = n * 80;
        let points = records / crate::index::SPACING;
        assert!(
            bytes < (points * 24 * 2) as usize && bytes < n as usize * 2,
            "{bytes} bytes of index for {n} entries"
        );
    }

    #[test]
    fn a_directory_is_opened_by_one_engine_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(FsyncPolicy::No, 1 << 16);
        let (e, _) = Engine::open(dir.path(), o.clone()).unwrap();
        assert!(matches!(
            Engine::open(dir.path(), o.clone()),
            Err(Error::Io { .. })
        ));
        drop(e);
        Engine::open(dir.path(), o).unwrap();
    }

    #[test]
    fn engine_can_move_between_threads() {
        fn send<T: Send>() {}
        fn sync<T: Send + Sync>() {}
        send::<Engine>();
        sync::<Stream>();
        sync::<Durability>();
    }

    #[test]
    fn many_streams_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(FsyncPolicy::EverySec, 64 << 20);
        let (mut e, _) = Engine::open(dir.path(), o.clone()).unwrap();
        for i in 0..200u32 {
            let key = format!("stream:{i}");
            let (s, _) = e.create_stream(i % 4, key.as_bytes()).unwrap();
            s.add(
                IdSpec::Explicit(StreamId::new(u64::from(i) + 1, 0)),
                &f("v"),
                0,
            )
            .unwrap();
        }
        drop(e); // crash: every tail is replayed
        let (e, r) = Engine::open(dir.path(), o.clone()).unwrap();
        assert_eq!(r.streams, 200);
        assert!(r.corruptions.is_empty());
        // Small streams must not each reserve a whole 64 MiB segment on disk.
        let used: u64 = std::fs::read_dir(dir.path().join("db0"))
            .unwrap()
            .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
            .map(|f| f.unwrap().metadata().unwrap().len())
            .sum();
        assert!(used < 50 * (1 << 20), "{used} bytes for 50 tiny streams");
        e.close().unwrap();
        let (e, r) = Engine::open(dir.path(), o).unwrap();
        assert_eq!(r.tail_bytes_replayed, 0);
        assert_eq!((0..4).map(|d| e.key_count(d)).sum::<u64>(), 200);
        assert_eq!(
            e.stream(3, b"stream:199").unwrap().last_id(),
            StreamId::new(200, 0)
        );
    }

    #[test]
    fn entry_larger_than_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(FsyncPolicy::No, 4096);
        let (mut e, _) = Engine::open(dir.path(), o.clone()).unwrap();
        let (s, _) = e.create_stream(0, b"s").unwrap();
        let big = vec![(Bytes::from("f"), Bytes::from(vec![7u8; 20_000]))];
        s.add(IdSpec::Explicit(StreamId::new(1, 0)), &f("small"), 0)
            .unwrap();
        s.add(IdSpec::Explicit(StreamId::new(2, 0)), &big, 0)
            .unwrap();
        s.add(IdSpec::Explicit(StreamId::new(3, 0)), &f("small"), 0)
            .unwrap();
        s.add(IdSpec::Explicit(StreamId::new(4, 0)), &big, 0)
            .unwrap();
        drop(e);
        let (e, r) = Engine::open(dir.path(), o).unwrap();
        assert!(r.corruptions.is_empty() && r.bytes_truncated == 0, "{r:?}");
        let s = e.stream(0, b"s").unwrap();
        assert_eq!(s.get(StreamId::new(2, 0)).unwrap().unwrap().fields, big);
        assert_eq!(s.get(StreamId::new(4, 0)).unwrap().unwrap().fields, big);
        let all = s
            .range(Bound::Unbounded, Bound::Unbounded, 10, Direction::Backward)
            .unwrap();
        assert_eq!(ids(&all), vec![4, 3, 2, 1]);
    }
}
