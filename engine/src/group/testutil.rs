//! Test helpers: an in-memory stream that group operations can run against.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use super::state::{EntrySource, StreamFacts};
use crate::{Entry, Result, StreamId};

#[derive(Clone, Debug, Default)]
pub(crate) struct MemStream {
    pub entries: BTreeMap<StreamId, Vec<(Bytes, Bytes)>>,
    pub last_id: StreamId,
    pub entries_added: u64,
    pub max_deleted: StreamId,
}

impl MemStream {
    pub fn add(&mut self, id: StreamId) {
        assert!(id > self.last_id);
        let v = Bytes::from(format!("v{id}"));
        self.entries.insert(id, vec![(Bytes::from_static(b"f"), v)]);
        self.last_id = id;
        self.entries_added += 1;
    }

    pub fn add_n(&mut self, n: u64) {
        for _ in 0..n {
            let next = StreamId::new(self.last_id.ms + 1, 0);
            self.add(next);
        }
    }

    pub fn delete(&mut self, id: StreamId) -> bool {
        let found = self.entries.remove(&id).is_some();
        if found && id > self.max_deleted {
            self.max_deleted = id;
        }
        found
    }
}

impl EntrySource for MemStream {
    fn facts(&self) -> StreamFacts {
        StreamFacts {
            last_id: self.last_id,
            entries_added: self.entries_added,
            max_deleted_id: self.max_deleted,
            first_id: self.entries.keys().next().copied().unwrap_or(StreamId::MIN),
            length: self.entries.len() as u64,
        }
    }

    fn get(&self, id: StreamId) -> Result<Option<Vec<(Bytes, Bytes)>>> {
        Ok(self.entries.get(&id).cloned())
    }

    fn after(&self, after: StreamId, count: usize) -> Result<Vec<Entry>> {
        Ok(self
            .entries
            .range((Bound::Excluded(after), Bound::Unbounded))
            .take(count)
            .map(|(id, f)| Entry {
                id: *id,
                fields: f.clone(),
            })
            .collect())
    }
}
