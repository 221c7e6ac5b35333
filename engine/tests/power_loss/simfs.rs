//! A simulated file system behind the engine's I/O seam that knows what is durable.
//!
//! Every file keeps two images: `data` (the page cache: what reads and mappings see) and
//! `durable` (what the disk holds). `sync_data` copies the dirty pages to `durable`; a
//! directory's entries become durable only through `sync_dir`. [`SimFs::crash_image`] builds
//! what a power cut could leave: any subset of dirty pages written back (writeback has no
//! order), torn pages and sectors, a grown file's unwritten pages as zeros, the old or new
//! length, and un-fsync'd directory entries lost. Faults (fsync EIO, ENOSPC, short writes) are
//! injected at chosen operation counts.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::rngs::StdRng;
use rand::Rng;
use sluice_engine::io::{MapRegion, Mapping, VFile, Vfs};

pub const PAGE: usize = 4096;
pub const SECTOR: usize = 512;
const ROOT: usize = 0;

enum Inode {
    File {
        data: Vec<u8>,
        durable: Vec<u8>,
        /// Pages written (or length-changed) since the last successful sync.
        dirty: BTreeSet<usize>,
    },
    Dir {
        entries: BTreeMap<OsString, usize>,
        durable: BTreeMap<OsString, usize>,
    },
}

/// Faults to inject, by operation count (0-based) or byte budget.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// The n-th sync (`sync_data` or `sync_dir`) fails with EIO, and so does every one after
    /// it when `sticky`; a failed sync writes back an arbitrary subset of the dirty pages
    /// and marks all of them clean (Linux' behaviour that made fsyncgate).
    pub fail_sync_at: Option<u64>,
    pub sticky: bool,
    /// Total file bytes the "disk" holds; growing past it fails with ENOSPC.
    pub capacity: Option<u64>,
    /// The n-th `write_all_at` writes only a prefix of its buffer, then fails with EIO.
    pub short_write_at: Option<u64>,
}

/// Counters of what happened, for assertions and summaries.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub syncs: u64,
    pub writes: u64,
    pub failed_syncs: u64,
    pub enospc: u64,
    pub short_writes: u64,
}

struct State {
    inodes: Vec<Inode>,
    faults: Faults,
    counts: Counts,
    rng: StdRng,
}

/// The simulated file system; cheap to clone (all clones share one state).
#[derive(Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

fn err(kind: io::ErrorKind, msg: &str) -> io::Error {
    io::Error::new(kind, msg.to_string())
}

fn eio(_what: &str) -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

fn names(path: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(err(io::ErrorKind::InvalidInput, "unsupported path"))
            }
        }
    }
    Ok(out)
}

impl State {
    fn lookup(&self, path: &Path) -> io::Result<Option<usize>> {
        let mut ino = ROOT;
        for name in names(path)? {
            match self.inodes.get(ino) {
                Some(Inode::Dir { entries, .. }) => match entries.get(name) {
                    Some(&child) => ino = child,
                    None => return Ok(None),
                },
                _ => return Err(err(io::ErrorKind::NotFound, "not a directory")),
            }
        }
        Ok(Some(ino))
    }

    /// The parent directory's inode and the final name.
    fn parent_of<'p>(&self, path: &'p Path) -> io::Result<(usize, &'p OsStr)> {
        let name = path
            .file_name()
            .ok_or_else(|| err(io::ErrorKind::InvalidInput, "no file name"))?;
        let parent = path.parent().unwrap_or(Path::new("/"));
        match self.lookup(parent)? {
            Some(p) if matches!(self.inodes.get(p), Some(Inode::Dir { .. })) => Ok((p, name)),
            _ => Err(err(io::ErrorKind::NotFound, "parent directory missing")),
        }
    }

    fn entries_mut(&mut self, dir: usize) -> io::Result<&mut BTreeMap<OsString, usize>> {
        match self.inodes.get_mut(dir) {
            Some(Inode::Dir { entries, .. }) => Ok(entries),
            _ => Err(err(io::ErrorKind::NotFound, "not a directory")),
        }
    }

    fn used(&self) -> u64 {
        self.inodes
            .iter()
            .map(|i| match i {
                Inode::File { data, .. } => data.len() as u64,
                Inode::Dir { .. } => 0,
            })
            .sum()
    }

    /// ENOSPC if growing some file by `grow` bytes exceeds the capacity.
    fn reserve(&mut self, grow: u64) -> io::Result<()> {
        if let Some(cap) = self.faults.capacity {
            if grow > 0 && self.used().saturating_add(grow) > cap {
                self.counts.enospc += 1;
                return Err(enospc());
            }
        }
        Ok(())
    }

    fn file(&mut self, ino: usize) -> io::Result<(&mut Vec<u8>, &mut BTreeSet<usize>)> {
        match self.inodes.get_mut(ino) {
            Some(Inode::File { data, dirty, .. }) => Ok((data, dirty)),
            _ => Err(err(io::ErrorKind::InvalidInput, "not a file")),
        }
    }

    /// Resizes a file's cached image, marking the pages whose content changes as dirty.
    fn resize(&mut self, ino: usize, len: usize) -> io::Result<()> {
        let (data, dirty) = self.file(ino)?;
        let old = data.len();
        if len == old {
            return Ok(());
        }
        let (lo, hi) = (old.min(len), old.max(len));
        for page in lo / PAGE..=hi.saturating_sub(1) / PAGE {
            dirty.insert(page);
        }
        data.resize(len, 0);
        Ok(())
    }

    /// Counts a sync and decides whether it fails.
    fn sync_fails(&mut self) -> bool {
        let n = self.counts.syncs;
        self.counts.syncs += 1;
        let fails = match self.faults.fail_sync_at {
            Some(at) => n == at || (self.faults.sticky && n > at),
            None => false,
        };
        if fails {
            self.counts.failed_syncs += 1;
        }
        fails
    }

    fn sync_file(&mut self, ino: usize) -> io::Result<()> {
        let fails = self.sync_fails();
        let coin: Vec<bool> = {
            let n = match self.inodes.get(ino) {
                Some(Inode::File { dirty, .. }) => dirty.len(),
                _ => 0,
            };
            (0..n).map(|_| self.rng.gen_bool(0.5)).collect()
        };
        let Some(Inode::File {
            data,
            durable,
            dirty,
        }) = self.inodes.get_mut(ino)
        else {
            return Err(err(io::ErrorKind::InvalidInput, "not a file"));
        };
        if fails {
            // Some pages reach the disk, all are marked clean: the rest is silently lost.
            for (page, write) in dirty.iter().zip(coin) {
                if write {
                    copy_page(data, durable, *page, PAGE);
                }
            }
            dirty.clear();
            return Err(eio("simulated fsync failure"));
        }
        durable.resize(data.len(), 0);
        for page in dirty.iter() {
            copy_page(data, durable, *page, PAGE);
        }
        durable.truncate(data.len());
        dirty.clear();
        Ok(())
    }
}

/// Copies the first `upto` bytes of page `page` of `from` into `to` (within both lengths).
fn copy_page(from: &[u8], to: &mut Vec<u8>, page: usize, upto: usize) {
    let start = page * PAGE;
    let end = (start + upto.min(PAGE)).min(from.len());
    if start >= end {
        return;
    }
    if to.len() < end {
        to.resize(end, 0);
    }
    if let (Some(dst), Some(src)) = (to.get_mut(start..end), from.get(start..end)) {
        dst.copy_from_slice(src);
    }
}

/// How a crash image treats what was not made durable.
#[derive(Clone, Copy, Debug)]
pub struct CrashMode {
    /// Probability that a dirty page was written back before the power cut.
    pub writeback: f64,
    /// Probability that a dirty page was written back only partly (whole sectors, or, with
    /// `torn_sector`, also part of one sector).
    pub torn: f64,
    pub torn_sector: bool,
    /// Probability that an un-fsync'd directory kept its new entries anyway.
    pub dir_kept: f64,
}

impl SimFs {
    pub fn new(seed: u64) -> SimFs {
        SimFs::from_inodes(
            vec![Inode::Dir {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
            }],
            seed,
        )
    }

    fn from_inodes(inodes: Vec<Inode>, seed: u64) -> SimFs {
        SimFs {
            state: Arc::new(Mutex::new(State {
                inodes,
                faults: Faults::default(),
                counts: Counts::default(),
                rng: rand::SeedableRng::seed_from_u64(seed),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    pub fn counts(&self) -> Counts {
        self.lock().counts
    }

    /// Everything that the page cache holds becomes durable (a clean shutdown).
    pub fn sync_everything(&self) {
        let mut st = self.lock();
        for inode in st.inodes.iter_mut() {
            match inode {
                Inode::File {
                    data,
                    durable,
                    dirty,
                } => {
                    durable.clone_from(data);
                    dirty.clear();
                }
                Inode::Dir { entries, durable } => durable.clone_from(entries),
            }
        }
    }

    /// Number of dirty pages and un-fsync'd directories (how much a crash can lose).
    pub fn pending(&self) -> (usize, usize) {
        let st = self.lock();
        let mut pages = 0;
        let mut dirs = 0;
        for inode in &st.inodes {
            match inode {
                Inode::File { dirty, .. } => pages += dirty.len(),
                Inode::Dir { entries, durable } => dirs += usize::from(entries != durable),
            }
        }
        (pages, dirs)
    }

    /// A new file system holding what a power cut at this instant could leave on disk.
    pub fn crash_image(&self, rng: &mut StdRng, mode: CrashMode) -> SimFs {
        let st = self.lock();
        let mut inodes = Vec::with_capacity(st.inodes.len());
        for inode in &st.inodes {
            inodes.push(match inode {
                Inode::Dir { entries, durable } => {
                    let kept = if entries != durable && rng.gen_bool(mode.dir_kept) {
                        entries.clone()
                    } else {
                        durable.clone()
                    };
                    Inode::Dir {
                        entries: kept.clone(),
                        durable: kept,
                    }
                }
                Inode::File {
                    data,
                    durable,
                    dirty,
                } => {
                    // The length on disk is the durable one or the new one.
                    let len = if data.len() != durable.len() && rng.gen_bool(0.5) {
                        data.len()
                    } else {
                        durable.len()
                    };
                    let mut img = durable.clone();
                    img.resize(len, 0);
                    for &page in dirty {
                        let roll: f64 = rng.gen();
                        if roll < mode.writeback {
                            copy_page(data, &mut img, page, PAGE);
                        } else if roll < mode.writeback + mode.torn {
                            let upto = if mode.torn_sector && rng.gen_bool(0.3) {
                                rng.gen_range(1..PAGE)
                            } else {
                                rng.gen_range(1..PAGE / SECTOR) * SECTOR
                            };
                            copy_page(data, &mut img, page, upto);
                        }
                        // else: not written back: durable bytes, or zeros past the old length.
                    }
                    img.truncate(len);
                    Inode::File {
                        data: img.clone(),
                        durable: img,
                        dirty: BTreeSet::new(),
                    }
                }
            });
        }
        make_renames_atomic(&st.inodes, &mut inodes, rng);
        SimFs::from_inodes(inodes, rng.gen())
    }

    /// Flips one bit of durable (and cached) data in the file at `path`; returns the offset.
    pub fn flip_bit(&self, path: &Path, rng: &mut StdRng) -> io::Result<Option<u64>> {
        let mut st = self.lock();
        let ino = st
            .lookup(path)?
            .ok_or_else(|| err(io::ErrorKind::NotFound, "no such file"))?;
        let Some(Inode::File { data, durable, .. }) = st.inodes.get_mut(ino) else {
            return Err(err(io::ErrorKind::InvalidInput, "not a file"));
        };
        let len = durable.len().min(data.len());
        if len == 0 {
            return Ok(None);
        }
        let at = rng.gen_range(0..len);
        let bit = 1u8 << rng.gen_range(0..8);
        if let (Some(a), Some(b)) = (durable.get_mut(at), data.get_mut(at)) {
            *a ^= bit;
            *b ^= bit;
        }
        Ok(Some(at as u64))
    }

    /// Every file under `dir` (recursively) with its length, for choosing corruption targets.
    pub fn files(&self, dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
        let st = self.lock();
        let mut out = Vec::new();
        let Ok(Some(start)) = st.lookup(dir) else {
            return out;
        };
        let mut stack = vec![(dir.to_path_buf(), start)];
        while let Some((path, ino)) = stack.pop() {
            match st.inodes.get(ino) {
                Some(Inode::Dir { entries, .. }) => {
                    for (name, &child) in entries {
                        stack.push((path.join(name), child));
                    }
                }
                Some(Inode::File { data, .. }) => out.push((path, data.len() as u64)),
                None => {}
            }
        }
        out.sort();
        out
    }
}

/// Directories are chosen independently, but a journaling file system never shows one rename
/// half done: an inode moved between two directories is kept under exactly one of its names
/// (a duplicate link is dropped, an orphan gets its old or new name back).
fn make_renames_atomic(before: &[Inode], image: &mut [Inode], rng: &mut StdRng) {
    let links = |inodes: &[Inode], durable: bool| {
        let mut links: BTreeMap<usize, Vec<(usize, OsString)>> = BTreeMap::new();
        for (dir, inode) in inodes.iter().enumerate() {
            if let Inode::Dir {
                entries,
                durable: d,
            } = inode
            {
                let map = if durable { d } else { entries };
                for (name, &ino) in map {
                    links.entry(ino).or_default().push((dir, name.clone()));
                }
            }
        }
        links
    };
    let unlink = |image: &mut [Inode], dir: usize, name: &OsStr| {
        if let Some(Inode::Dir { entries, durable }) = image.get_mut(dir) {
            entries.remove(name);
            durable.remove(name);
        }
    };
    for (_, names) in links(image, false) {
        if names.len() > 1 {
            let keep = rng.gen_range(0..names.len());
            for (i, (dir, name)) in names.iter().enumerate() {
                if i != keep {
                    unlink(image, *dir, name);
                }
            }
        }
    }
    let now = links(before, false);
    let was = links(before, true);
    let present = links(image, false);
    for (ino, old) in &was {
        let (Some(new), None) = (now.get(ino), present.get(ino)) else {
            continue;
        };
        let mut options = vec![old.first(), new.first()];
        if rng.gen_bool(0.5) {
            options.reverse();
        }
        for (dir, name) in options.into_iter().flatten() {
            if let Some(Inode::Dir { entries, durable }) = image.get_mut(*dir) {
                if !entries.contains_key(name) {
                    entries.insert(name.clone(), *ino);
                    durable.insert(name.clone(), *ino);
                    break;
                }
            }
        }
    }
}

struct SimFile {
    fs: SimFs,
    ino: usize,
}

struct SimRegion {
    fs: SimFs,
    ino: usize,
    len: u64,
}

impl Vfs for SimFs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VFile>> {
        let mut st = self.lock();
        let ino = match st.lookup(path)? {
            Some(ino) => match st.inodes.get(ino) {
                Some(Inode::File { .. }) => ino,
                _ => return Err(err(io::ErrorKind::InvalidInput, "is a directory")),
            },
            None if create => {
                let (parent, name) = st.parent_of(path)?;
                let ino = st.inodes.len();
                st.inodes.push(Inode::File {
                    data: Vec::new(),
                    durable: Vec::new(),
                    dirty: BTreeSet::new(),
                });
                st.entries_mut(parent)?.insert(name.to_os_string(), ino);
                ino
            }
            None => return Err(err(io::ErrorKind::NotFound, "no such file")),
        };
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            ino,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        let (fp, fname) = st.parent_of(from)?;
        let (tp, tname) = st.parent_of(to)?;
        let ino = st
            .entries_mut(fp)?
            .remove(fname)
            .ok_or_else(|| err(io::ErrorKind::NotFound, "rename: no such file"))?;
        st.entries_mut(tp)?.insert(tname.to_os_string(), ino);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        let (parent, name) = st.parent_of(path)?;
        match st.lookup(path)? {
            Some(ino) if matches!(st.inodes.get(ino), Some(Inode::File { .. })) => {
                st.entries_mut(parent)?.remove(name);
                Ok(())
            }
            Some(_) => Err(err(io::ErrorKind::InvalidInput, "is a directory")),
            None => Err(err(io::ErrorKind::NotFound, "no such file")),
        }
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        let (parent, name) = st.parent_of(path)?;
        match st.lookup(path)?.and_then(|ino| st.inodes.get(ino)) {
            Some(Inode::Dir { entries, .. }) if entries.is_empty() => {
                st.entries_mut(parent)?.remove(name);
                Ok(())
            }
            Some(Inode::Dir { .. }) => Err(err(io::ErrorKind::Other, "directory not empty")),
            Some(_) => Err(err(io::ErrorKind::InvalidInput, "not a directory")),
            None => Err(err(io::ErrorKind::NotFound, "no such directory")),
        }
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        let mut ino = ROOT;
        for name in names(path)? {
            let next = match st.inodes.get(ino) {
                Some(Inode::Dir { entries, .. }) => entries.get(name).copied(),
                _ => return Err(err(io::ErrorKind::Other, "not a directory")),
            };
            ino = match next {
                Some(child) => child,
                None => {
                    let child = st.inodes.len();
                    st.inodes.push(Inode::Dir {
                        entries: BTreeMap::new(),
                        durable: BTreeMap::new(),
                    });
                    st.entries_mut(ino)?.insert(name.to_os_string(), child);
                    child
                }
            };
        }
        match st.inodes.get(ino) {
            Some(Inode::Dir { .. }) => Ok(()),
            _ => Err(err(io::ErrorKind::Other, "exists and is not a directory")),
        }
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let st = self.lock();
        match st.lookup(path)?.and_then(|ino| st.inodes.get(ino)) {
            Some(Inode::Dir { entries, .. }) => Ok(entries.keys().cloned().collect()),
            Some(_) => Err(err(io::ErrorKind::InvalidInput, "not a directory")),
            None => Err(err(io::ErrorKind::NotFound, "no such directory")),
        }
    }

    fn is_dir(&self, path: &Path) -> bool {
        let st = self.lock();
        matches!(
            st.lookup(path)
                .ok()
                .flatten()
                .and_then(|i| st.inodes.get(i)),
            Some(Inode::Dir { .. })
        )
    }

    fn exists(&self, path: &Path) -> bool {
        matches!(self.lock().lookup(path), Ok(Some(_)))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        let ino = st
            .lookup(path)?
            .ok_or_else(|| err(io::ErrorKind::NotFound, "no such directory"))?;
        let fails = st.sync_fails();
        let keep = fails && st.rng.gen_bool(0.5);
        match st.inodes.get_mut(ino) {
            Some(Inode::Dir { entries, durable }) => {
                if !fails || keep {
                    durable.clone_from(entries);
                }
                if fails {
                    Err(eio("simulated directory fsync failure"))
                } else {
                    Ok(())
                }
            }
            _ => Err(err(io::ErrorKind::InvalidInput, "not a directory")),
        }
    }
}

impl VFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut st = self.fs.lock();
        let (data, _) = st.file(self.ino)?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - start);
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), data.get(start..start + n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut st = self.fs.lock();
        let n = st.counts.writes;
        st.counts.writes += 1;
        let offset =
            usize::try_from(offset).map_err(|_| err(io::ErrorKind::InvalidInput, "offset"))?;
        let short = st.faults.short_write_at == Some(n) && !buf.is_empty();
        let len = if short {
            st.counts.short_writes += 1;
            st.rng.gen_range(0..buf.len())
        } else {
            buf.len()
        };
        let cur = st.file(self.ino)?.0.len();
        let end = offset + len;
        if end > cur {
            st.reserve((end - cur) as u64)?;
            st.resize(self.ino, end)?;
        }
        let (data, dirty) = st.file(self.ino)?;
        if len > 0 {
            if let (Some(dst), Some(src)) = (data.get_mut(offset..end), buf.get(..len)) {
                dst.copy_from_slice(src);
            }
            for page in offset / PAGE..=(end - 1) / PAGE {
                dirty.insert(page);
            }
        }
        if short {
            return Err(eio("simulated short write"));
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let mut st = self.fs.lock();
        Ok(st.file(self.ino)?.0.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.fs.lock();
        let len = usize::try_from(len).map_err(|_| err(io::ErrorKind::InvalidInput, "len"))?;
        let cur = st.file(self.ino)?.0.len();
        if len > cur {
            st.reserve((len - cur) as u64)?;
        }
        st.resize(self.ino, len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let mut st = self.fs.lock();
        let len = usize::try_from(len).map_err(|_| err(io::ErrorKind::InvalidInput, "len"))?;
        let cur = st.file(self.ino)?.0.len();
        if len > cur {
            st.reserve((len - cur) as u64)?;
            st.resize(self.ino, len)?;
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.fs.lock().sync_file(self.ino)
    }

    fn map(&self, len: u64) -> io::Result<Mapping> {
        if len == 0 {
            return Ok(Mapping::Empty);
        }
        Ok(Mapping::Custom(Box::new(SimRegion {
            fs: self.fs.clone(),
            ino: self.ino,
            len,
        })))
    }
}

impl MapRegion for SimRegion {
    fn read(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        let end = offset
            .checked_add(len as u64)
            .ok_or_else(|| err(io::ErrorKind::UnexpectedEof, "range overflow"))?;
        if end > self.len {
            return Err(err(
                io::ErrorKind::UnexpectedEof,
                "read outside the mapped range",
            ));
        }
        let mut st = self.fs.lock();
        let (data, _) = st.file(self.ino)?;
        let start = offset as usize;
        // A real mapping would SIGBUS past the end of the file; report it as an error.
        data.get(start..start + len)
            .map(|b| Cow::Owned(b.to_vec()))
            .ok_or_else(|| {
                err(
                    io::ErrorKind::UnexpectedEof,
                    "SIGBUS: read past end of file",
                )
            })
    }
}
