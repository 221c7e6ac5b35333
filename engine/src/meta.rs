//! Small per-stream state files.
//!
//! `meta`: two 4 KiB slots written alternately (a torn write damages at most the slot being
//! written; the other keeps the previous value). Each slot holds a generation, the tail
//! segment number and the offset below which that tail was fsync'd (used by recovery to tell
//! corruption from a torn tail), the key's expiry, and a snapshot of the stream state.
//!
//! `key`: the stream's binary key and database, written once at creation (and replaced
//! atomically on RENAME); the source of truth for which key a directory holds.

use std::{path::Path, sync::Arc};

use crate::{
    io::{VFile, Vfs},
    record::{put_u64, Reader, StreamState},
};

pub const META_FILE: &str = "meta";
pub const KEY_FILE: &str = "key";
const SLOT: u64 = 4096;
const META_MAGIC: &[u8; 4] = b"SLm1";
const KEY_MAGIC: &[u8; 4] = b"SLk1";
/// Largest key accepted from a key file (Redis' default proto-max-bulk-len).
pub const MAX_KEY: usize = 512 << 20;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetaValue {
    /// Number of the tail segment `durable` refers to.
    pub tail: u64,
    /// Bytes of the tail segment known to have been fsync'd.
    pub durable: u64,
    pub expire: Option<u64>,
    pub state: StreamState,
}

impl MetaValue {
    fn encode(&self, generation: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(META_MAGIC);
        put_u64(&mut out, generation);
        put_u64(&mut out, self.tail);
        put_u64(&mut out, self.durable);
        out.push(u8::from(self.expire.is_some()));
        put_u64(&mut out, self.expire.unwrap_or(0));
        self.state.encode(&mut out);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(slot: &[u8]) -> Option<(u64, MetaValue)> {
        let len = 4 + 8 * 3 + 1 + 8 + StreamState::ENCODED_LEN;
        let data = slot.get(..len)?;
        let crc = slot.get(len..len + 4)?;
        if crc32fast::hash(data).to_le_bytes() != crc {
            return None;
        }
        let mut r = Reader::new(data);
        if r.take(4)? != META_MAGIC {
            return None;
        }
        let generation = r.u64()?;
        let tail = r.u64()?;
        let durable = r.u64()?;
        let has_expire = r.u8()?;
        let expire = r.u64()?;
        let state = StreamState::decode(&mut r)?;
        Some((
            generation,
            MetaValue {
                tail,
                durable,
                expire: (has_expire == 1).then_some(expire),
                state,
            },
        ))
    }
}

/// The `meta` file of one stream. Not kept open: it is written rarely, and keeping one
/// descriptor per stream (the tail's) lets more streams fit under the descriptor limit.
pub struct MetaFile {
    generation: u64,
    pub value: MetaValue,
}

impl MetaFile {
    /// Reads the newest valid slot of `dir/meta`, if any.
    pub fn open(vfs: &Arc<dyn Vfs>, dir: &Path) -> std::io::Result<(MetaFile, Option<MetaValue>)> {
        let file = match vfs.open(&dir.join(META_FILE), false) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut best: Option<(u64, MetaValue)> = None;
        for slot in 0..2u64 {
            let Some(file) = file.as_ref() else { break };
            let mut buf = vec![0u8; 256];
            let n = file.read_at(&mut buf, slot * SLOT)?;
            if let Some((g, v)) = buf.get(..n).and_then(MetaValue::decode) {
                if best.as_ref().is_none_or(|(bg, _)| g > *bg) {
                    best = Some((g, v));
                }
            }
        }
        let (generation, value) = best.unwrap_or_default();
        let found = best.map(|(_, v)| v);
        Ok((MetaFile { generation, value }, found))
    }

    /// Writes `value` into the slot of `dir/meta` not holding the current generation (no
    /// fsync). Returns the file (for the caller to fsync or mark dirty) and the bytes written.
    pub fn write(
        &mut self,
        vfs: &Arc<dyn Vfs>,
        dir: &Path,
        value: MetaValue,
    ) -> std::io::Result<(Arc<dyn VFile>, u64)> {
        let generation = self.generation + 1;
        let bytes = value.encode(generation);
        let file = vfs.open(&dir.join(META_FILE), true)?;
        file.write_all_at(&bytes, (generation % 2) * SLOT)?;
        self.generation = generation;
        self.value = value;
        Ok((file, bytes.len() as u64))
    }
}

/// Writes a stream's `key` file (no fsync; the caller makes it durable).
pub fn write_key_file(
    vfs: &Arc<dyn Vfs>,
    path: &Path,
    db: u32,
    key: &[u8],
) -> std::io::Result<Arc<dyn VFile>> {
    let mut out = Vec::with_capacity(key.len() + 20);
    out.extend_from_slice(KEY_MAGIC);
    out.extend_from_slice(&db.to_le_bytes());
    out.extend_from_slice(&(key.len() as u64).to_le_bytes());
    out.extend_from_slice(key);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    let file = vfs.open(path, true)?;
    file.set_len(0)?;
    file.write_all_at(&out, 0)?;
    Ok(file)
}

/// Reads a `key` file: `(db, key)`, or `None` if missing or damaged.
pub fn read_key_file(vfs: &Arc<dyn Vfs>, path: &Path) -> Option<(u32, Vec<u8>)> {
    let file = vfs.open(path, false).ok()?;
    let len = usize::try_from(file.len().ok()?).ok()?;
    if !(20..=MAX_KEY + 20).contains(&len) {
        return None;
    }
    let mut buf = vec![0u8; len];
    let mut at = 0;
    while at < len {
        let n = file.read_at(buf.get_mut(at..)?, at as u64).ok()?;
        if n == 0 {
            return None;
        }
        at += n;
    }
    let (data, crc) = buf.split_at_checked(len - 4)?;
    if crc32fast::hash(data).to_le_bytes() != crc {
        return None;
    }
    let mut r = Reader::new(data);
    if r.take(4)? != KEY_MAGIC {
        return None;
    }
    let db = u32::from_le_bytes(r.take(4)?.try_into().ok()?);
    let klen = usize::try_from(r.u64()?).ok()?;
    let key = r.take(klen)?.to_vec();
    r.is_empty().then_some((db, key))
}

/// True if the `key` file at `path` never reached the disk whole: missing, shorter than
/// its fixed part, or ending in zeros where its CRC goes (a torn or never written-back
/// page). A complete file that fails its CRC is damage, not an incomplete creation.
pub fn key_file_incomplete(vfs: &Arc<dyn Vfs>, path: &Path) -> bool {
    let Ok(file) = vfs.open(path, false) else {
        return true;
    };
    let Ok(len) = file.len() else {
        return false;
    };
    if len < 20 {
        return true;
    }
    let mut crc = [0u8; 4];
    matches!(file.read_at(&mut crc, len - 4), Ok(4)) && crc == [0u8; 4]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{io::OsVfs, StreamId};

    #[test]
    fn meta_alternates_slots_and_survives_a_torn_slot() {
        let dir = tempfile::tempdir().unwrap();
        let vfs: Arc<dyn Vfs> = Arc::new(OsVfs);
        let (mut m, found) = MetaFile::open(&vfs, dir.path()).unwrap();
        assert!(found.is_none());
        let d = dir.path();
        let mut v = MetaValue {
            tail: 3,
            durable: 100,
            expire: Some(5),
            state: StreamState::default(),
        };
        v.state.last_id = StreamId::new(7, 7);
        m.write(&vfs, d, v).unwrap();
        let mut v2 = v;
        v2.durable = 200;
        let (file, _) = m.write(&vfs, d, v2).unwrap();
        let (_, found) = MetaFile::open(&vfs, dir.path()).unwrap();
        assert_eq!(found, Some(v2));
        // Damage the newer slot (generation 2 lives in slot 0): the older value survives.
        file.write_all_at(&[0xFF; 8], 10).unwrap();
        let (_, found) = MetaFile::open(&vfs, dir.path()).unwrap();
        assert_eq!(found, Some(v));
    }

    #[test]
    fn key_file_roundtrip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let vfs: Arc<dyn Vfs> = Arc::new(OsVfs);
        let p = dir.path().join(KEY_FILE);
        let f = write_key_file(&vfs, &p, 3, b"\x00bin\xffkey").unwrap();
        assert_eq!(
            read_key_file(&vfs, &p),
            Some((3, b"\x00bin\xffkey".to_vec()))
        );
        f.write_all_at(b"X", 17).unwrap();
        assert_eq!(read_key_file(&vfs, &p), None);
    }
}
