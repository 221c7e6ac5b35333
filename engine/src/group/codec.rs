//! Byte-level encoding shared by the group journal and checkpoint: LEB128 varints, IDs,
//! length-prefixed byte strings, and a bounds-checked reader that never panics on bad input.

use bytes::Bytes;

use crate::StreamId;

/// Longest byte string (group or consumer name) the decoder accepts.
pub(crate) const MAX_NAME: usize = 1 << 20;

#[derive(Default)]
pub(crate) struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub fn opt(&mut self, v: Option<u64>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.varint(v);
            }
        }
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    pub fn id(&mut self, id: StreamId) {
        self.varint(id.ms);
        self.varint(id.seq);
    }

    /// An ascending run of IDs, each stored as a delta from the previous one.
    pub fn ids(&mut self, ids: &[StreamId]) {
        self.varint(ids.len() as u64);
        let mut prev = StreamId::MIN;
        for &id in ids {
            self.id_delta(prev, id);
            prev = id;
        }
    }

    /// `id` relative to `prev`: ms delta, then the seq delta when ms is unchanged, else the seq.
    pub fn id_delta(&mut self, prev: StreamId, id: StreamId) {
        let dms = id.ms.wrapping_sub(prev.ms);
        self.varint(dms);
        if dms == 0 {
            self.varint(id.seq.wrapping_sub(prev.seq));
        } else {
            self.varint(id.seq);
        }
    }
}

/// Decoding failure: the bytes are not a well-formed encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

pub(crate) type Decoded<T> = std::result::Result<T, Malformed>;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn u8(&mut self) -> Decoded<u8> {
        let (&b, rest) = self.buf.split_first().ok_or(Malformed)?;
        self.buf = rest;
        Ok(b)
    }

    pub fn varint(&mut self) -> Decoded<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(Malformed);
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed)
    }

    pub fn opt(&mut self) -> Decoded<Option<u64>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.varint()?)),
            _ => Err(Malformed),
        }
    }

    pub fn bytes(&mut self) -> Decoded<Bytes> {
        let len = usize::try_from(self.varint()?).map_err(|_| Malformed)?;
        if len > MAX_NAME || len > self.buf.len() {
            return Err(Malformed);
        }
        let (b, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(Bytes::copy_from_slice(b))
    }

    pub fn id(&mut self) -> Decoded<StreamId> {
        Ok(StreamId::new(self.varint()?, self.varint()?))
    }

    /// A count, refused when it could not fit in the remaining bytes (`min_size` each).
    pub fn count(&mut self, min_size: usize) -> Decoded<usize> {
        let n = usize::try_from(self.varint()?).map_err(|_| Malformed)?;
        if n.saturating_mul(min_size.max(1)) > self.buf.len() {
            return Err(Malformed);
        }
        Ok(n)
    }

    pub fn ids(&mut self) -> Decoded<Vec<StreamId>> {
        let n = self.count(2)?;
        let mut out = Vec::with_capacity(n);
        let mut prev = StreamId::MIN;
        for _ in 0..n {
            prev = self.id_delta(prev)?;
            out.push(prev);
        }
        Ok(out)
    }

    pub fn id_delta(&mut self, prev: StreamId) -> Decoded<StreamId> {
        let dms = self.varint()?;
        let ms = prev.ms.wrapping_add(dms);
        let seq = if dms == 0 {
            prev.seq.wrapping_add(self.varint()?)
        } else {
            self.varint()?
        };
        Ok(StreamId::new(ms, seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_ids_round_trip() {
        let mut w = Writer::default();
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            w.varint(v);
        }
        let ids = vec![
            StreamId::new(0, 1),
            StreamId::new(5, 0),
            StreamId::new(5, 9),
            StreamId::MAX,
        ];
        w.ids(&ids);
        w.opt(None);
        w.opt(Some(u64::MAX));
        w.bytes(b"name");
        let mut r = Reader::new(&w.buf);
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(r.varint().unwrap(), v);
        }
        assert_eq!(r.ids().unwrap(), ids);
        assert_eq!(r.opt().unwrap(), None);
        assert_eq!(r.opt().unwrap(), Some(u64::MAX));
        assert_eq!(&r.bytes().unwrap()[..], b"name");
        assert!(r.is_empty());
        assert_eq!(r.u8(), Err(Malformed));
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
        assert!(Reader::new(&[0x05, b'a']).bytes().is_err());
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0x7f]).ids().is_err());
        assert!(Reader::new(&[2]).opt().is_err());
    }
}
