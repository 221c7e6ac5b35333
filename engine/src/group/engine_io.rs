//! [`GroupIo`] over the engine's file seam ([`Vfs`]) and group commit ([`Durability`]): journal
//! appends are positional writes that join the next fsync round like any stream write, and a
//! failed write poisons the engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::store::GroupIo;
use crate::durability::Durability;
use crate::io::{VFile, Vfs};
use crate::logfile;
use crate::{Error, Lsn, Result};

pub(crate) struct EngineIo {
    vfs: Arc<dyn Vfs>,
    durability: Arc<Durability>,
    /// The journal being appended to, and its length.
    open: Option<(PathBuf, Arc<dyn VFile>, u64)>,
}

impl EngineIo {
    pub fn new(vfs: Arc<dyn Vfs>, durability: Arc<Durability>) -> Self {
        EngineIo {
            vfs,
            durability,
            open: None,
        }
    }

    fn forget(&mut self, path: &Path) {
        if self.open.as_ref().is_some_and(|(p, _, _)| p == path) {
            self.open = None;
        }
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
            self.open = Some((path.to_path_buf(), file, len));
        }
        let Some((_, file, len)) = self.open.as_mut() else {
            return Err(Error::io(
                "group journal",
                std::io::Error::other("journal not open"),
            ));
        };
        if let Err(e) = file.write_all_at(bytes, *len) {
            let err = self.durability.write_failed("append to a group journal", e);
            self.open = None;
            return Err(err);
        }
        *len += bytes.len() as u64;
        Ok(self.durability.wrote(file, bytes.len() as u64))
    }

    fn truncate(&mut self, path: &Path, len: u64) -> Result<()> {
        self.durability.check()?;
        self.forget(path);
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
        self.forget(path);
        let (dir, name) = split(path)?;
        if let Err(e) = logfile::rewrite_atomic(&self.vfs, dir, name, bytes, true) {
            return Err(self.durability.write_failed("rewrite a group file", e));
        }
        self.durability.count_fsync();
        Ok(self.durability.next_lsn())
    }
}
