//! A group's committed offsets: the latest commit per (topic, partition), kept in memory and
//! rebuilt from `__consumer_offsets` at start.

use std::collections::BTreeMap;

/// One committed offset as OffsetFetch returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_time_ms: i64,
}

/// The committed offsets of one group, ordered by topic then partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offsets(BTreeMap<(String, i32), CommittedOffset>);

impl Offsets {
    pub fn get(&self, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.0.get(&(topic.to_string(), partition))
    }

    pub fn put(&mut self, topic: &str, partition: i32, committed: CommittedOffset) {
        self.0.insert((topic.to_string(), partition), committed);
    }

    pub fn remove(&mut self, topic: &str, partition: i32) -> Option<CommittedOffset> {
        self.0.remove(&(topic.to_string(), partition))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every (topic, partition, offset), ordered.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i32, &CommittedOffset)> {
        self.0.iter().map(|((t, p), c)| (t.as_str(), *p, c))
    }

    /// Whether any partition of `topic` has a committed offset.
    pub fn has_topic(&self, topic: &str) -> bool {
        self.iter().any(|(t, _, _)| t == topic)
    }

    /// Removes everything; returns the keys removed (for tombstones).
    pub fn clear(&mut self) -> Vec<(String, i32)> {
        std::mem::take(&mut self.0).into_keys().collect()
    }
}
