//! The recent-batches ring: the last batches this node applied, kept in memory so brokers that
//! follow metadata (`FetchMetadata`) get the records after their last index instead of the
//! whole image.
//!
//! Invariant: every accepted batch with a log index above [`Feed::floor`] is in the ring, in
//! log order. Blank, membership and refused entries change nothing and are never in it, so
//! index gaps are normal. The ring is bounded by a batch count and a byte estimate; evicting a
//! batch raises the floor to its index, and a follower asking for anything older gets the whole
//! image instead. A snapshot that replaces the image empties the ring (floor = its index).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::records::MetadataRecord;

/// At most this many batches are kept.
pub const FEED_MAX_BATCHES: usize = 8192;
/// At most about this many bytes of records (their JSON size) are kept.
pub const FEED_MAX_BYTES: usize = 64 * 1024 * 1024;

/// One applied batch as followers receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedBatch {
    pub index: u64,
    pub records: Arc<Vec<MetadataRecord>>,
    /// The JSON size of `records` (what sending them costs).
    pub bytes: usize,
}

/// What a follower asking for the records after some index gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedRead {
    /// Accepted batches in `(after, upto]`, in order; `complete` is false when the byte budget
    /// cut the list short (ask again after the last one).
    Batches { batches: Vec<FeedBatch>, complete: bool },
    /// The ring no longer reaches back to `after`: send the whole image.
    TooOld,
}

impl FeedBatch {
    /// Measures `records` (outside any lock: it serializes them).
    pub fn new(index: u64, records: Arc<Vec<MetadataRecord>>) -> Self {
        let bytes = serde_json::to_vec(&*records).map_or(0, |b| b.len());
        Self {
            index,
            records,
            bytes,
        }
    }
}

/// The ring of recent batches.
#[derive(Debug, Default)]
pub struct Feed {
    floor: u64,
    batches: VecDeque<FeedBatch>,
    bytes: usize,
}

impl Feed {
    /// An empty ring whose history starts after `floor`.
    pub fn new(floor: u64) -> Self {
        Self {
            floor,
            ..Self::default()
        }
    }

    /// The index below which (inclusive) the ring has forgotten batches.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Appends an applied batch (indexes must increase) and evicts past the bounds.
    pub fn push(&mut self, batch: FeedBatch) {
        debug_assert!(self.batches.back().is_none_or(|b| b.index < batch.index));
        self.bytes = self.bytes.saturating_add(batch.bytes);
        self.batches.push_back(batch);
        while self.batches.len() > FEED_MAX_BATCHES || (self.bytes > FEED_MAX_BYTES && self.batches.len() > 1)
        {
            let Some(old) = self.batches.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(old.bytes);
            self.floor = old.index;
        }
    }

    /// Forgets everything: the image was replaced by a snapshot at `index`.
    pub fn reset(&mut self, index: u64) {
        self.batches.clear();
        self.bytes = 0;
        self.floor = index;
    }

    /// The batches in `(after, upto]`, at most about `max_bytes` of them (always at least one
    /// when there is one), or [`FeedRead::TooOld`].
    pub fn read(&self, after: u64, upto: u64, max_bytes: usize) -> FeedRead {
        if after < self.floor {
            return FeedRead::TooOld;
        }
        let start = self.batches.partition_point(|b| b.index <= after);
        let mut batches = Vec::new();
        let mut bytes = 0usize;
        for batch in self.batches.iter().skip(start).take_while(|b| b.index <= upto) {
            if !batches.is_empty() && bytes.saturating_add(batch.bytes) > max_bytes {
                return FeedRead::Batches {
                    batches,
                    complete: false,
                };
            }
            bytes = bytes.saturating_add(batch.bytes);
            batches.push(batch.clone());
        }
        FeedRead::Batches {
            batches,
            complete: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> Arc<Vec<MetadataRecord>> {
        Arc::new(vec![
            MetadataRecord::DeleteTopic {
                id: uuid::Uuid::nil()
            };
            n
        ])
    }

    fn indexes(read: FeedRead) -> Vec<u64> {
        match read {
            FeedRead::Batches { batches, .. } => batches.iter().map(|b| b.index).collect(),
            FeedRead::TooOld => panic!("too old"),
        }
    }

    #[test]
    fn reads_the_batches_after_an_index_up_to_another() {
        let mut feed = Feed::new(2);
        for i in [3, 5, 6, 9] {
            feed.push(FeedBatch::new(i, batch(1)));
        }
        assert_eq!(indexes(feed.read(2, 9, usize::MAX)), vec![3, 5, 6, 9]);
        assert_eq!(indexes(feed.read(4, 6, usize::MAX)), vec![5, 6]);
        assert_eq!(indexes(feed.read(9, 9, usize::MAX)), Vec::<u64>::new());
        assert_eq!(
            indexes(feed.read(3, 9, 1)),
            vec![5],
            "byte budget keeps at least one"
        );
        assert_eq!(feed.read(1, 9, usize::MAX), FeedRead::TooOld);
    }

    #[test]
    fn eviction_raises_the_floor() {
        let mut feed = Feed::new(0);
        for i in 1..=(FEED_MAX_BATCHES as u64 + 10) {
            feed.push(FeedBatch::new(i, batch(1)));
        }
        assert_eq!(feed.floor(), 10);
        assert_eq!(feed.read(9, u64::MAX, usize::MAX), FeedRead::TooOld);
        assert_eq!(indexes(feed.read(10, 12, usize::MAX)), vec![11, 12]);
        feed.reset(100);
        assert_eq!(feed.read(99, 200, usize::MAX), FeedRead::TooOld);
        assert_eq!(indexes(feed.read(100, 200, usize::MAX)), Vec::<u64>::new());
    }
}
