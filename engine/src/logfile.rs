//! Auxiliary per-stream files for the consumer-group code: an append-only journal whose
//! records join group commit ([`LogFile`]), and atomic replacement of small files
//! ([`rewrite_atomic`], for checkpoints).
//!
//! Only `rewrite_atomic` is used by the engine itself; the rest is the contract offered to
//! `group.rs`, hence `dead_code` is allowed until that code lands.

#![allow(dead_code)]

use std::{io, path::Path, sync::Arc};

use crate::{
    durability::Durability,
    io::{VFile, Vfs},
    record::{self, Kind, HEADER_LEN},
    Error, Lsn, Result,
};

/// Largest journal read back whole at open (bounds memory if a file is damaged or huge):
/// the owner is expected to checkpoint and [`LogFile::reset`] well before this.
pub(crate) const MAX_LOG: u64 = 1 << 30;

/// Replaces `dir/name` atomically with `bytes`: write `name.tmp`, fsync it, rename over
/// `name`, and (if `sync_dir`) fsync the directory. After a crash the file holds either the
/// old or the new contents.
pub(crate) fn rewrite_atomic(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    name: &str,
    bytes: &[u8],
    sync_dir: bool,
) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let file = vfs.open(&tmp, true)?;
    file.set_len(0)?;
    file.write_all_at(bytes, 0)?;
    file.sync_data()?;
    vfs.rename(&tmp, &dir.join(name))?;
    if sync_dir {
        vfs.sync_dir(dir)?;
    }
    Ok(())
}

/// Reads a whole small file, `None` if it does not exist.
pub(crate) fn read_file(vfs: &Arc<dyn Vfs>, path: &Path) -> Result<Option<Vec<u8>>> {
    if !vfs.exists(path) {
        return Ok(None);
    }
    let file = vfs
        .open(path, false)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    read_all(&*file, path).map(Some)
}

fn read_all(file: &dyn VFile, path: &Path) -> Result<Vec<u8>> {
    let len = file
        .len()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
    if len > MAX_LOG {
        return Err(Error::Corruption {
            path: path.to_path_buf(),
            offset: 0,
            detail: format!("file of {len} bytes exceeds the {MAX_LOG}-byte limit"),
        });
    }
    let mut buf = vec![0u8; len as usize];
    let mut at = 0usize;
    while at < buf.len() {
        let Some(rest) = buf.get_mut(at..) else { break };
        let n = file
            .read_at(rest, at as u64)
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        if n == 0 {
            buf.truncate(at);
            break;
        }
        at += n;
    }
    Ok(buf)
}

/// What opening a journal found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogRecovery {
    /// Bytes of a torn or invalid tail that were cut off.
    pub bytes_truncated: u64,
}

/// An append-only journal of framed records (same record format and CRC as segments),
/// participating in group commit: [`LogFile::append`] returns an Lsn that becomes durable
/// with the next sync round, exactly like a stream write.
///
/// Contract for the consumer-group code: open it in `Stream::recover_groups` with the
/// stream's `dir()`, `vfs()` and `durability()`; replay the returned payloads; append one
/// non-empty payload per state change; after writing a checkpoint with
/// [`rewrite_atomic`] (which fsyncs), call [`LogFile::reset`]. The file lives in the
/// stream directory, so it is removed and renamed with the stream.
pub(crate) struct LogFile {
    file: Arc<dyn VFile>,
    len: u64,
    durability: Arc<Durability>,
}

impl LogFile {
    /// Opens (creating) `dir/name` and returns every valid record's payload in order. The
    /// first invalid record ends the log: it and everything after it are truncated.
    pub(crate) fn open(
        vfs: &Arc<dyn Vfs>,
        durability: &Arc<Durability>,
        dir: &Path,
        name: &str,
    ) -> Result<(LogFile, Vec<Vec<u8>>, LogRecovery)> {
        let path = dir.join(name);
        let file = vfs
            .open(&path, true)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let bytes = read_all(&*file, &path)?;
        let mut payloads = Vec::new();
        let mut pos = 0usize;
        while let Some(rest) = bytes.get(pos..) {
            if rest.is_empty() {
                break;
            }
            match record::decode(rest) {
                Ok((h, body)) if h.kind == Kind::Blob => {
                    payloads.push(body.to_vec());
                    pos += HEADER_LEN + body.len();
                }
                _ => break,
            }
        }
        let recovery = LogRecovery {
            bytes_truncated: (bytes.len() - pos) as u64,
        };
        if recovery.bytes_truncated > 0 {
            file.set_len(pos as u64)
                .and_then(|()| file.sync_data())
                .map_err(|e| durability.write_failed("truncate a journal", e))?;
        }
        Ok((
            LogFile {
                file,
                len: pos as u64,
                durability: durability.clone(),
            },
            payloads,
            recovery,
        ))
    }

    /// Appends one record holding `payload` (must be non-empty) and returns its Lsn.
    pub(crate) fn append(&mut self, payload: &[u8]) -> Result<Lsn> {
        self.durability.check()?;
        let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
        record::encode(&mut buf, Kind::Blob, payload);
        if let Err(e) = self.file.write_all_at(&buf, self.len) {
            return Err(self.durability.write_failed("append to a journal", e));
        }
        self.len += buf.len() as u64;
        Ok(self.durability.wrote(&self.file, buf.len() as u64))
    }

    /// Empties the journal (after a checkpoint made its contents redundant) and fsyncs.
    pub(crate) fn reset(&mut self) -> Result<()> {
        self.durability.check()?;
        if let Err(e) = self.file.set_len(0).and_then(|()| self.file.sync_data()) {
            return Err(self.durability.write_failed("reset a journal", e));
        }
        self.durability.count_fsync();
        self.len = 0;
        Ok(())
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{io::OsVfs, FsyncPolicy};

    #[test]
    fn journal_appends_replays_and_truncates_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let vfs: Arc<dyn Vfs> = Arc::new(OsVfs);
        let d = Durability::new(vfs.clone(), FsyncPolicy::No);
        let (mut log, payloads, rec) = LogFile::open(&vfs, &d, dir.path(), "groups.log").unwrap();
        assert!(payloads.is_empty());
        assert_eq!(rec.bytes_truncated, 0);
        let l1 = log.append(b"one").unwrap();
        let l2 = log.append(b"two").unwrap();
        assert!(l2 > l1);
        let good = log.len();
        // A torn third record.
        let f = vfs.open(&dir.path().join("groups.log"), false).unwrap();
        f.write_all_at(b"SLr1\x06garbage", good).unwrap();
        let (log, payloads, rec) = LogFile::open(&vfs, &d, dir.path(), "groups.log").unwrap();
        assert_eq!(payloads, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(rec.bytes_truncated, 12);
        assert_eq!(log.len(), good);
    }

    #[test]
    fn rewrite_atomic_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let vfs: Arc<dyn Vfs> = Arc::new(OsVfs);
        rewrite_atomic(&vfs, dir.path(), "ckpt", b"v1", true).unwrap();
        rewrite_atomic(&vfs, dir.path(), "ckpt", b"v2", true).unwrap();
        assert_eq!(
            read_file(&vfs, &dir.path().join("ckpt")).unwrap(),
            Some(b"v2".to_vec())
        );
        assert!(!dir.path().join("ckpt.tmp").exists());
        assert_eq!(read_file(&vfs, &dir.path().join("nope")).unwrap(), None);
    }

    #[test]
    fn stream_helpers_for_groups() {
        let dir = tempfile::tempdir().unwrap();
        let (mut e, _) = crate::Engine::open(dir.path(), crate::Options::default()).unwrap();
        let (s, _) = e.create_stream(0, b"g").unwrap();
        let (mut log, payloads, _) = s.open_log("groups.log").unwrap();
        assert!(payloads.is_empty());
        let lsn = log.append(b"ack 1-1").unwrap();
        assert!(lsn > crate::Lsn(0));
        s.rewrite_file("groups.ckpt", b"state").unwrap();
        assert_eq!(s.read_file("groups.ckpt").unwrap(), Some(b"state".to_vec()));
        drop(log);
        e.rename_stream(0, b"g", b"h").unwrap();
        let s = e.stream(0, b"h").unwrap();
        // The files moved with the stream.
        assert_eq!(s.read_file("groups.ckpt").unwrap(), Some(b"state".to_vec()));
        let (_, payloads, _) = s.open_log("groups.log").unwrap();
        assert_eq!(payloads, vec![b"ack 1-1".to_vec()]);
    }
}
