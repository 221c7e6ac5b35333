//! Stream entry IDs: `<milliseconds>-<sequence>`, ordered, as Redis defines them.

use std::fmt;

/// A stream entry ID. Ordered first by milliseconds, then by sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub const fn new(ms: u64, seq: u64) -> Self {
        StreamId { ms, seq }
    }

    /// The smallest ID strictly greater than this one, or `None` at `MAX`.
    pub fn next(self) -> Option<StreamId> {
        if self.seq < u64::MAX {
            Some(StreamId::new(self.ms, self.seq + 1))
        } else if self.ms < u64::MAX {
            Some(StreamId::new(self.ms + 1, 0))
        } else {
            None
        }
    }

    /// The largest ID strictly smaller than this one, or `None` at `MIN`.
    pub fn prev(self) -> Option<StreamId> {
        if self.seq > 0 {
            Some(StreamId::new(self.ms, self.seq - 1))
        } else if self.ms > 0 {
            Some(StreamId::new(self.ms - 1, u64::MAX))
        } else {
            None
        }
    }

    /// Parses `ms-seq` or `ms` (sequence taken as `missing_seq`), as XRANGE bounds and XADD IDs do.
    /// Returns `None` for anything Redis would reject with "Invalid stream ID".
    pub fn parse(s: &[u8], missing_seq: u64) -> Option<StreamId> {
        let (ms, seq) = match s.iter().position(|&b| b == b'-') {
            Some(dash) => (parse_u64(s.get(..dash)?)?, parse_u64(s.get(dash + 1..)?)?),
            None => (parse_u64(s)?, missing_seq),
        };
        Some(StreamId::new(ms, seq))
    }

    /// Big-endian bytes: byte order equals ID order, used for on-disk keys and file names.
    pub fn to_be_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.ms.to_be_bytes());
        out[8..].copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    pub fn from_be_bytes(b: [u8; 16]) -> Self {
        let mut ms = [0u8; 8];
        let mut seq = [0u8; 8];
        ms.copy_from_slice(&b[..8]);
        seq.copy_from_slice(&b[8..]);
        StreamId::new(u64::from_be_bytes(ms), u64::from_be_bytes(seq))
    }
}

/// Strict unsigned decimal, as Redis' `string2ull` accepts for IDs (no sign, no spaces, no overflow).
fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        assert_eq!(StreamId::parse(b"5-3", 0), Some(StreamId::new(5, 3)));
        assert_eq!(StreamId::parse(b"5", 7), Some(StreamId::new(5, 7)));
        assert_eq!(StreamId::parse(b"5-", 0), None);
        assert_eq!(StreamId::parse(b"-5", 0), None);
        assert_eq!(StreamId::parse(b"a-1", 0), None);
        assert_eq!(StreamId::parse(b"18446744073709551616", 0), None);
        assert_eq!(
            StreamId::parse(b"18446744073709551615-18446744073709551615", 0),
            Some(StreamId::MAX)
        );
    }

    #[test]
    fn next_prev_wrap() {
        assert_eq!(StreamId::new(1, u64::MAX).next(), Some(StreamId::new(2, 0)));
        assert_eq!(StreamId::new(2, 0).prev(), Some(StreamId::new(1, u64::MAX)));
        assert_eq!(StreamId::MAX.next(), None);
        assert_eq!(StreamId::MIN.prev(), None);
        assert_eq!(StreamId::new(3, 4).to_string(), "3-4");
        let id = StreamId::new(0x0102, 0x0304);
        assert_eq!(StreamId::from_be_bytes(id.to_be_bytes()), id);
    }
}
