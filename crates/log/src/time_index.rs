//! The sparse time index of one segment: entries `(T, o)` where `T` is the segment's running
//! maximum timestamp and `o` the offset of the first record that reached it. An entry is added
//! when a batch raises the maximum and at least `index.interval.bytes` were appended since the
//! previous entry (so it stays as sparse as the offset index); the final maximum is always
//! appended before the index is written, so the last entry is the segment's largest timestamp.
//!
//! Invariant that makes lookups correct however sparse the entries are: every record at an
//! offset below `o` has a timestamp <= `T`. So for a target `t`, the last entry with `T < t`
//! proves that nothing before `o` qualifies, and a forward scan from `o`'s batch finds the
//! earliest record with timestamp >= `t`.
//!
//! File `{base_offset:020}.timeindex`: `version: u8 (= 1)` then entries of
//! `timestamp: i64, relative_offset: u32`, big-endian. Rebuilt by recovery like the offset index.

const VERSION: u8 = 1;
const ENTRY_SIZE: usize = 12;

/// In-memory sparse map from running-maximum timestamps to offsets within one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    /// `(timestamp, relative_offset)`, both strictly increasing.
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Appends `(timestamp, relative_offset)` if it raises the last timestamp.
    pub fn push(&mut self, timestamp: i64, relative_offset: u32) {
        if let Some(&(last_ts, last_rel)) = self.entries.last() {
            if timestamp <= last_ts || relative_offset <= last_rel {
                return;
            }
        }
        self.entries.push((timestamp, relative_offset));
    }

    /// The relative offset of the last entry whose timestamp is < `target`: no record before it
    /// has a timestamp >= `target`. `None` means "scan from the segment start".
    pub fn lookup(&self, target: i64) -> Option<u32> {
        let idx = self.entries.partition_point(|&(ts, _)| ts < target);
        idx.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map(|&(_, rel)| rel)
    }

    /// Drops the entries at or after `relative_offset` (the segment was cut there).
    pub fn truncate_from(&mut self, relative_offset: u32) {
        let keep = self.entries.partition_point(|&(_, rel)| rel < relative_offset);
        self.entries.truncate(keep);
    }

    /// The last entry: the segment's largest timestamp and where it first occurs, once the
    /// final maximum has been pushed.
    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    /// Whether all entries are strictly increasing and below `relative_end`.
    pub fn is_consistent_with(&self, relative_end: u64) -> bool {
        let ordered = self.entries.windows(2).all(|w| match w {
            [a, b] => a.0 < b.0 && a.1 < b.1,
            _ => true,
        });
        ordered && self.entries.iter().all(|&(_, rel)| u64::from(rel) < relative_end)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.entries.len() * ENTRY_SIZE);
        out.push(VERSION);
        for &(ts, rel) in &self.entries {
            out.extend_from_slice(&ts.to_be_bytes());
            out.extend_from_slice(&rel.to_be_bytes());
        }
        out
    }

    /// Parses a time index file; `None` if the version or length is wrong.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&version, body) = bytes.split_first()?;
        if version != VERSION || body.len() % ENTRY_SIZE != 0 {
            return None;
        }
        let mut index = Self::default();
        for chunk in body.chunks_exact(ENTRY_SIZE) {
            let (ts, rel) = chunk.split_at(8);
            let ts = i64::from_be_bytes(ts.try_into().ok()?);
            let rel = u32::from_be_bytes(rel.try_into().ok()?);
            index.entries.push((ts, rel));
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_returns_last_entry_strictly_below_target() {
        let mut idx = TimeIndex::default();
        idx.push(100, 0);
        idx.push(200, 5);
        idx.push(150, 9); // does not raise the maximum: ignored
        idx.push(300, 10);
        assert_eq!(idx.lookup(50), None);
        assert_eq!(idx.lookup(100), None);
        assert_eq!(idx.lookup(101), Some(0));
        assert_eq!(idx.lookup(200), Some(0));
        assert_eq!(idx.lookup(250), Some(5));
        assert_eq!(idx.lookup(1000), Some(10));
        assert_eq!(idx.last(), Some((300, 10)));
    }

    #[test]
    fn round_trips_and_checks_consistency() {
        let mut idx = TimeIndex::default();
        idx.push(-1, 0);
        idx.push(7, 3);
        let decoded = TimeIndex::decode(&idx.encode()).unwrap();
        assert_eq!(decoded, idx);
        assert!(decoded.is_consistent_with(4));
        assert!(!decoded.is_consistent_with(3));
        assert_eq!(TimeIndex::decode(&[1, 0]), None);
        assert_eq!(TimeIndex::decode(&[0]), None);
    }
}
