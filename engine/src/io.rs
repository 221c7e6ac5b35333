//! File I/O seam: every file operation the engine performs goes through [`Vfs`] and
//! [`VFile`], so tests can substitute a simulated, fault-injecting file system. The real
//! implementation ([`OsVfs`]) uses positional I/O (`pread`/`pwrite`), `fallocate` and a
//! read-only `mmap`; this is the only module allowed to use `unsafe`.

#![allow(unsafe_code)]

use std::{
    borrow::Cow,
    ffi::OsString,
    fs::{self, File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::Path,
    sync::Arc,
};

/// A directory tree of files. Implementations must be usable from several threads.
pub trait Vfs: Send + Sync {
    /// Opens `path` read-write, creating it (empty) if `create` and it does not exist.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VFile>>;
    /// Atomically renames a file or directory (POSIX `rename(2)` semantics).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes an empty directory.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and its missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries in a directory (files and subdirectories).
    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>>;
    fn is_dir(&self, path: &Path) -> bool;
    fn exists(&self, path: &Path) -> bool;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (created if needed) for as long as the returned
    /// guard lives, failing at once if another process holds it. Simulated file systems
    /// may keep the default, which locks nothing.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Send + Sync>> {
        let _ = path;
        Ok(Box::new(()))
    }
}

/// One open file.
#[allow(clippy::len_without_is_empty)]
pub trait VFile: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset` (a short write is an error).
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends (sparsely) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes sure blocks for `[0, len)` are allocated and the file is at least `len` long,
    /// so later writes in that range cannot fail for lack of space and a mapping of it never
    /// faults on a hole. Falls back to writing zeros where `fallocate` is unsupported.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// `fdatasync`: the file's data and the metadata needed to read it back are durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Maps the first `len` bytes read-only. The caller promises never to read past the
    /// bytes it has written (or found) in the file, and the file must stay at least as long
    /// as any range it reads.
    fn map(&self, len: u64) -> io::Result<Mapping>;
}

/// A read-only view of a file's first bytes: a real `mmap`, or anything a simulated file
/// system can back (it receives the reads and may copy).
pub enum Mapping {
    Os(memmap2::Mmap),
    /// A read-only view backed by something else (simulated file systems).
    Custom(Box<dyn MapRegion>),
    /// Nothing mapped (a zero-length file).
    Empty,
}

/// Read access for a [`Mapping::Custom`].
pub trait MapRegion: Send + Sync {
    /// The bytes `[offset, offset + len)`, or an error (e.g. simulated EIO / out of range).
    fn read(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>>;
}

impl Mapping {
    /// The bytes `[offset, offset + len)`; an error if they are outside the mapping.
    pub fn read(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        match self {
            Mapping::Os(map) => {
                let start = usize::try_from(offset).map_err(|_| out_of_range())?;
                let end = start.checked_add(len).ok_or_else(out_of_range)?;
                map.get(start..end)
                    .map(Cow::Borrowed)
                    .ok_or_else(out_of_range)
            }
            Mapping::Custom(region) => region.read(offset, len),
            Mapping::Empty => {
                if len == 0 {
                    Ok(Cow::Borrowed(&[]))
                } else {
                    Err(out_of_range())
                }
            }
        }
    }
}

fn out_of_range() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "read outside the mapped range",
    )
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsVfs;

impl Vfs for OsVfs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(OsFile { file }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            names.push(entry?.file_name());
        }
        Ok(names)
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Send + Sync>> {
        use std::os::fd::AsRawFd;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // SAFETY: flock only reads its integer arguments; the descriptor is owned by `file`,
        // which the returned guard keeps open (closing it releases the lock).
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Box::new(file))
    }
}

/// A file of the real file system.
struct OsFile {
    file: File,
}

impl VFile for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let wanted = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "allocation too large"))?;
        // SAFETY: fallocate only reads its integer arguments; the descriptor is owned by
        // `self.file` and open for the duration of the call.
        let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), 0, 0, wanted) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => self.zero_fill(len),
            _ => Err(err),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn map(&self, len: u64) -> io::Result<Mapping> {
        if len == 0 {
            return Ok(Mapping::Empty);
        }
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mapping too large"))?;
        // SAFETY: the mapping is read-only and private to this process's view of the file.
        // The engine only reads bytes it wrote itself (or validated at recovery) and keeps
        // files at least as long as what it reads (it never truncates below a position a
        // live reader can reach), so no access faults with SIGBUS. Concurrent writes through
        // pwrite only touch bytes past what readers are allowed to see, or the single
        // "deleted" state byte, which readers treat as an advisory value.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&self.file)? };
        Ok(Mapping::Os(map))
    }
}

impl OsFile {
    /// Fallback for file systems without fallocate: write zeros up to `len`.
    fn zero_fill(&self, len: u64) -> io::Result<()> {
        let current = self.file.metadata()?.len();
        let zeros = vec![0u8; 1 << 20];
        let mut at = current;
        while at < len {
            let n = usize::try_from((len - at).min(zeros.len() as u64)).unwrap_or(zeros.len());
            let chunk = zeros.get(..n).unwrap_or(&zeros);
            self.file.write_all_at(chunk, at)?;
            at += n as u64;
        }
        Ok(())
    }
}

/// Asks the kernel to drop a file's cached pages (`posix_fadvise(DONTNEED)`), so a
/// benchmark can measure cold reads without root. Pages mapped by a live map stay.
pub fn evict_from_page_cache(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = File::open(path)?;
    file.sync_all()?;
    // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is owned by
    // `file`, open for the duration of the call.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ad-hoc measurement behind the crate docs' choice of pwrite(2) over writing through a
    /// shared map (`cargo test --release -p sluice-engine write_vs_map -- --ignored
    /// --nocapture`). Prints figures; asserts nothing about speed.
    #[test]
    #[ignore]
    fn write_vs_map() {
        use std::time::Instant;
        let dir = tempfile::tempdir().unwrap();
        let n = 200_000usize;
        let rec = [0xA5u8; 128];
        let size = (n * rec.len()) as u64;
        for sync_every in [0usize, 100] {
            let p = dir.path().join(format!("pwrite{sync_every}"));
            let f = OsVfs.open(&p, true).unwrap();
            f.allocate(size).unwrap();
            let t = Instant::now();
            for i in 0..n {
                f.write_all_at(&rec, (i * rec.len()) as u64).unwrap();
                if sync_every > 0 && i % sync_every == sync_every - 1 {
                    f.sync_data().unwrap();
                }
            }
            let pw = t.elapsed();
            let p = dir.path().join(format!("map{sync_every}"));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .unwrap();
            OsVfs.open(&p, false).unwrap().allocate(size).unwrap();
            // SAFETY: test-only writable mapping of a file this test owns exclusively.
            let mut map = unsafe { memmap2::MmapMut::map_mut(&file).unwrap() };
            let t = Instant::now();
            for i in 0..n {
                let at = i * rec.len();
                map[at..at + rec.len()].copy_from_slice(&rec);
                if sync_every > 0 && i % sync_every == sync_every - 1 {
                    let from = (at + rec.len()).saturating_sub(sync_every * rec.len()) & !4095;
                    map.flush_range(from, at + rec.len() - from).unwrap();
                }
            }
            let mm = t.elapsed();
            println!(
                "{n} appends of {} B, sync every {sync_every}: pwrite {:.0} ns/append, map {:.0} ns/append",
                rec.len(),
                pw.as_nanos() as f64 / n as f64,
                mm.as_nanos() as f64 / n as f64
            );
        }
    }

    #[test]
    fn os_file_roundtrip_and_map() {
        let dir = tempfile::tempdir().unwrap();
        let vfs = OsVfs;
        let path = dir.path().join("f");
        let f = vfs.open(&path, true).unwrap();
        f.allocate(8192).unwrap();
        assert_eq!(f.len().unwrap(), 8192);
        f.write_all_at(b"hello", 100).unwrap();
        let map = f.map(8192).unwrap();
        assert_eq!(&*map.read(100, 5).unwrap(), b"hello");
        f.write_all_at(b"J", 100).unwrap();
        assert_eq!(&*map.read(100, 5).unwrap(), b"Jello");
        assert!(map.read(8190, 5).is_err());
        let mut buf = [0u8; 5];
        assert_eq!(f.read_at(&mut buf, 100).unwrap(), 5);
        assert_eq!(&buf, b"Jello");
        f.sync_data().unwrap();
        vfs.sync_dir(dir.path()).unwrap();
        assert_eq!(vfs.list_dir(dir.path()).unwrap(), vec![OsString::from("f")]);
    }
}
