//! Durable home of one stream's consumer groups: the in-memory [`GroupSet`] plus its journal
//! (`groups.journal`) and checkpoint (`groups.ckpt`) in the stream's directory.
//!
//! Every change is appended to the journal before it is applied, and acknowledged with the
//! journal write's [`Lsn`]. When the journal outgrows the live state (more than
//! [`GroupStore::compact_min`] bytes and more than twice the last checkpoint) the whole set is
//! checkpointed under a new *epoch* and the journal restarts with a header naming that epoch;
//! a journal whose epoch differs from the checkpoint's is stale (its changes are all in the
//! checkpoint) and is discarded. Disk use and recovery time thus follow the live state.

use std::path::{Path, PathBuf};

use super::checkpoint;
use super::record::{self, Decode, Record};
use super::state::{Change, GroupSet, StreamFacts};
use crate::{Error, Lsn, Result};

pub(crate) const JOURNAL_FILE: &str = "groups.journal";
pub(crate) const CHECKPOINT_FILE: &str = "groups.ckpt";
/// Journal size below which no checkpoint is taken.
pub(crate) const COMPACT_MIN: u64 = 1 << 20;

/// File operations the group store needs; the engine provides its durability machinery here.
pub(crate) trait GroupIo: Send + Sync {
    /// The whole file, or `None` if it does not exist.
    fn read(&mut self, path: &Path) -> Result<Option<Vec<u8>>>;
    /// Appends to `path` (creating it); the returned Lsn is acknowledgeable once the bytes are
    /// durable under the fsync policy.
    fn append(&mut self, path: &Path, bytes: &[u8]) -> Result<Lsn>;
    /// Cuts `path` to `len` bytes and makes that durable (recovery of a torn tail).
    fn truncate(&mut self, path: &Path, len: u64) -> Result<()>;
    /// Replaces `path` atomically and durably: temp file, fsync, rename, fsync dir.
    fn rewrite(&mut self, path: &Path, bytes: &[u8]) -> Result<Lsn>;
}

/// What recovering one stream's groups found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupRecovery {
    pub bytes_truncated: u64,
    pub records_truncated: u64,
    pub records_replayed: u64,
    /// Valid records found after the first bad one: damage inside the log, not a torn tail.
    pub corruptions: Vec<String>,
    pub clamps: Vec<String>,
}

pub(crate) struct GroupStore {
    set: GroupSet,
    dir: PathBuf,
    io: Box<dyn GroupIo>,
    epoch: u64,
    journal_len: u64,
    checkpoint_len: u64,
    last_lsn: Lsn,
    /// Journal size below which no checkpoint is taken.
    pub compact_min: u64,
}

impl GroupStore {
    /// A store with no groups and no files yet (a new stream); files appear on first change.
    pub fn empty(dir: &Path, io: Box<dyn GroupIo>) -> GroupStore {
        GroupStore {
            set: GroupSet::default(),
            dir: dir.to_path_buf(),
            io,
            epoch: 0,
            journal_len: 0,
            checkpoint_len: 0,
            last_lsn: Lsn::default(),
            compact_min: COMPACT_MIN,
        }
    }

    /// Loads the checkpoint, replays the journal up to its first invalid record (cutting the
    /// tail there), then clamps the state to `facts` — the stream as it was recovered.
    pub fn open(
        dir: &Path,
        mut io: Box<dyn GroupIo>,
        facts: &StreamFacts,
    ) -> Result<(GroupStore, GroupRecovery)> {
        let mut report = GroupRecovery::default();
        let ckpt_path = dir.join(CHECKPOINT_FILE);
        let journal_path = dir.join(JOURNAL_FILE);
        let (mut set, epoch, checkpoint_len) = match io.read(&ckpt_path)? {
            None => (GroupSet::default(), 0, 0),
            Some(bytes) => match checkpoint::decode(&bytes) {
                Ok((set, epoch)) => (set, epoch, bytes.len() as u64),
                Err(_) => {
                    return Err(Error::Corruption {
                        path: ckpt_path,
                        offset: 0,
                        detail: "group checkpoint fails its CRC or does not decode".into(),
                    })
                }
            },
        };
        let mut journal_len = 0;
        if let Some(buf) = io.read(&journal_path)? {
            match record::decode(&buf) {
                Decode::Record(Record::Header { epoch: e }, len) if e == epoch => {
                    let mut at = len;
                    while at < buf.len() {
                        match record::decode(&buf[at..]) {
                            Decode::Record(Record::Change(c), len) => {
                                set.apply(&c);
                                report.records_replayed += 1;
                                at += len;
                            }
                            _ => break,
                        }
                    }
                    if at < buf.len() {
                        report.bytes_truncated = (buf.len() - at) as u64;
                        report.records_truncated = 1;
                        if let Some(off) = later_valid_record(&buf, at) {
                            report.corruptions.push(format!(
                                "{}: invalid record at offset {at} followed by a valid one at {off}; dropped {} bytes",
                                journal_path.display(),
                                buf.len() - at
                            ));
                        }
                        io.truncate(&journal_path, at as u64)?;
                    }
                    journal_len = at as u64;
                }
                Decode::Record(Record::Header { epoch: e }, _) if e < epoch => {
                    // A crash between writing a checkpoint and restarting the journal: every
                    // change in this journal is in the checkpoint.
                    journal_len = fresh_journal(&mut *io, &journal_path, epoch)?.0;
                }
                Decode::Record(Record::Header { epoch: e }, _) => {
                    // The checkpoint this journal continues is gone: report, do not guess.
                    report.corruptions.push(format!(
                        "{}: journal continues checkpoint epoch {e} but the checkpoint is at {epoch}; {} bytes of group changes discarded",
                        journal_path.display(),
                        buf.len()
                    ));
                    report.bytes_truncated = buf.len() as u64;
                    journal_len = fresh_journal(&mut *io, &journal_path, epoch)?.0;
                }
                _ => {
                    // A torn header: nothing in this journal was ever durable.
                    report.bytes_truncated = buf.len() as u64;
                    journal_len = fresh_journal(&mut *io, &journal_path, epoch)?.0;
                }
            }
        }
        let mut store = GroupStore {
            set,
            dir: dir.to_path_buf(),
            io,
            epoch,
            journal_len,
            checkpoint_len,
            last_lsn: Lsn::default(),
            compact_min: COMPACT_MIN,
        };
        report.clamps = store.set.clamp(facts);
        if !report.clamps.is_empty() {
            store.checkpoint()?;
        }
        Ok((store, report))
    }

    pub fn set(&self) -> &GroupSet {
        &self.set
    }

    /// Checkpoint generation the current journal continues.
    #[cfg(test)]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    #[cfg(test)]
    pub fn journal_len(&self) -> u64 {
        self.journal_len
    }

    /// The stream's directory moved (RENAME): later writes go to the new place.
    pub fn set_dir(&mut self, dir: &Path) {
        self.dir = dir.to_path_buf();
    }

    /// Journals `change`, then applies it; returns the write's Lsn (or the last one for `None`).
    pub fn commit(&mut self, change: Option<Change>) -> Result<Lsn> {
        let Some(change) = change else {
            return Ok(self.last_lsn);
        };
        let mut buf = Vec::new();
        if self.journal_len == 0 {
            record::encode(&Record::Header { epoch: self.epoch }, &mut buf);
        }
        record::encode_change(&change, &mut buf);
        if buf.len() > record::MAX_BODY {
            // Recovery would refuse such a record: refuse the change instead.
            return Err(Error::io(
                "journal a consumer-group change",
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "change of {} bytes exceeds the {}-byte record limit",
                        buf.len(),
                        record::MAX_BODY
                    ),
                ),
            ));
        }
        let lsn = self.io.append(&self.dir.join(JOURNAL_FILE), &buf)?;
        self.journal_len += buf.len() as u64;
        self.set.apply(&change);
        self.last_lsn = lsn;
        if self.journal_len > self.compact_min && self.journal_len > 2 * self.checkpoint_len {
            self.checkpoint()?;
        }
        Ok(self.last_lsn)
    }

    /// Writes the whole set as a new checkpoint and restarts the journal.
    pub fn checkpoint(&mut self) -> Result<Lsn> {
        let epoch = self.epoch + 1;
        let bytes = checkpoint::encode(&self.set, epoch);
        self.io.rewrite(&self.dir.join(CHECKPOINT_FILE), &bytes)?;
        self.epoch = epoch;
        self.checkpoint_len = bytes.len() as u64;
        let (len, lsn) = fresh_journal(&mut *self.io, &self.dir.join(JOURNAL_FILE), epoch)?;
        self.journal_len = len;
        self.last_lsn = lsn;
        Ok(lsn)
    }
}

fn fresh_journal(io: &mut dyn GroupIo, path: &Path, epoch: u64) -> Result<(u64, Lsn)> {
    let mut buf = Vec::new();
    record::encode(&Record::Header { epoch }, &mut buf);
    let lsn = io.rewrite(path, &buf)?;
    Ok((buf.len() as u64, lsn))
}

/// Offset of a valid record somewhere after `from`, if any: evidence of mid-log damage.
fn later_valid_record(buf: &[u8], from: usize) -> Option<usize> {
    let magic = record::MAGIC.to_le_bytes();
    let mut at = from + 1;
    while at + record::HEADER_LEN <= buf.len() {
        let rest = &buf[at..];
        let pos = rest.windows(4).position(|w| w == magic)?;
        at += pos;
        if let Decode::Record(_, _) = record::decode(&buf[at..]) {
            return Some(at);
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests;
