//! A file system over the real one whose writes (ENOSPC) or fsyncs (EIO) start failing on
//! demand, for the engine's fault tests.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sluice_engine::io::{Mapping, OsVfs, VFile, Vfs};

#[derive(Default)]
pub struct FailingVfs {
    /// While set, fsyncs of files and directories fail with EIO.
    pub fail_sync: Arc<AtomicBool>,
    /// While set, writes fail with ENOSPC.
    pub fail_write: Arc<AtomicBool>,
}

struct FailingFile {
    inner: Arc<dyn VFile>,
    fail_sync: Arc<AtomicBool>,
    fail_write: Arc<AtomicBool>,
}

fn eio() -> std::io::Error {
    std::io::Error::from_raw_os_error(5)
}

impl Vfs for FailingVfs {
    fn open(&self, path: &Path, create: bool) -> std::io::Result<Arc<dyn VFile>> {
        Ok(Arc::new(FailingFile {
            inner: OsVfs.open(path, create)?,
            fail_sync: self.fail_sync.clone(),
            fail_write: self.fail_write.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        OsVfs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        OsVfs.remove_file(path)
    }
    fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
        OsVfs.remove_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        OsVfs.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
        OsVfs.list_dir(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        OsVfs.is_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        OsVfs.exists(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(eio());
        }
        OsVfs.sync_dir(path)
    }
}

impl VFile for FailingFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        if self.fail_write.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        self.inner.write_all_at(buf, offset)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn allocate(&self, len: u64) -> std::io::Result<()> {
        self.inner.allocate(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(eio());
        }
        self.inner.sync_data()
    }
    fn map(&self, len: u64) -> std::io::Result<Mapping> {
        self.inner.map(len)
    }
}
