//! [`GroupIo`] over the engine's file seam ([`Vfs`]) and group commit ([`Durability`]): journal
//! appends are positional writes that join the next fsync round like any stream write
//! (buffered like a stream's tail under write-behind, see [`crate::write_behind`]), and a
//! failed write poisons the engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::store::GroupIo;
use crate::durability::Durability;
use crate::io::Vfs;
use crate::logfile;
use crate::write_behind::TailWrites;
use crate::{Error, Lsn, Result};

pub(crate) struct EngineIo {
    vfs: Arc<dyn Vfs>,
    durability: Arc<Durability>,
    /// The journal being appended to, and its length (including buffered bytes).
    open: Option<(PathBuf, Arc<TailWrites>, u64)>,
}

impl EngineIo {
    pub fn new(vfs: Arc<dyn Vfs>, durability: Arc<Durability>) -> Self {
        EngineIo {
            vfs,
            durability,
            open: None,
        }
    }

    /// Drops the open journal if it is `path`, after writing what it buffered (a truncate
    /// or rewrite follows, which those bytes must precede).
    fn forget(&mut self, path: &Path) -> Result<()> {
        if self.open.as_ref().is_some_and(|(p, _, _)| p == path) {
            if let Some((_, writes, _)) = self.open.take() {
                writes.flush(&self.durability)?;
            }
        }
        Ok(())
    }
}

fn split(path: &Path) -> Result<(&Path, &str)> {
    match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(Error::io(
            format!("group file path {}", path.display()),
            std::io::Error::other("not a file in a directory"),
        )),
    }
}

impl GroupIo for EngineIo {
    fn read(&mut self, path: &Path) -> Result<Option<Vec<u8>>> {
        logfile::read_file(&self.vfs, path)
    }

    fn append(&mut self, path: &Path, bytes: &[u8]) -> Result<Lsn> {
        self.durability.check()?;
        if self.open.as_ref().is_none_or(|(p, _, _)| p != path) {
            // The old journal's buffered bytes go first: after a rename of the stream it is
            // the same file, whose length is read next.
            if let Some((_, old, _)) = self.open.take() {
                old.flush(&self.durability)?;
            }
            let existed = self.vfs.exists(path);
            let file = self
                .vfs
                .open(path, true)
                .map_err(|e| self.durability.write_failed("open a group journal", e))?;
            let len = file
                .len()
                .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
            if !existed {
                self.durability.dir_changed(split(path)?.0);
            }
            self.open = Some((
                path.to_path_buf(),
                TailWrites::new(file, 0, "append to a group journal"),
                len,
            ));
        }
        let Some((_, writes, len)) = self.open.as_mut() else {
            return Err(Error::io(
                "group journal",
                std::io::Error::other("journal not open"),
            ));
        };
        let written = writes.append(&self.durability, bytes, *len, true);
        match written {
            Ok(lsn) => {
                *len += bytes.len() as u64;
                Ok(lsn)
            }
            Err(e) => {
                self.open = None;
                Err(e)
            }
        }
    }

    fn truncate(&mut self, path: &Path, len: u64) -> Result<()> {
        self.durability.check()?;
        self.forget(path)?;
        let file = self
            .vfs
            .open(path, false)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        if let Err(e) = file.set_len(len).and_then(|()| file.sync_data()) {
            return Err(self.durability.write_failed("truncate a group journal", e));
        }
        self.durability.count_fsync();
        Ok(())
    }

    fn rewrite(&mut self, path: &Path, bytes: &[u8]) -> Result<Lsn> {
        self.durability.check()?;
        self.forget(path)?;
        let (dir, name) = split(path)?;
        if let Err(e) = logfile::rewrite_atomic(&self.vfs, dir, name, bytes, true) {
            return Err(self.durability.write_failed("rewrite a group file", e));
        }
        self.durability.count_fsync();
        Ok(self.durability.next_lsn())
    }
}
