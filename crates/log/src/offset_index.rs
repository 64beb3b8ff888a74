//! The sparse offset index of one segment: which file position a batch with a given base offset
//! starts at, for one batch every `index.interval.bytes` appended. A lookup gives the position
//! of the closest indexed batch at or before the target offset; the caller scans batch headers
//! forward from there.
//!
//! It is kept in memory and written whole to `{base_offset:020}.index`:
//! `version: u8 (= 1)` then entries of `relative_offset: u32, position: u32`, big-endian, where
//! `relative_offset = batch base offset - segment base offset`. The file is only a cache of
//! what a scan of the segment yields: recovery rebuilds it whenever it is missing, has another
//! version, or disagrees with the segment ([`OffsetIndex::is_consistent_with`]).

const VERSION: u8 = 1;
const ENTRY_SIZE: usize = 8;

/// In-memory sparse map from batch base offsets to file positions within one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OffsetIndex {
    /// `(relative_offset, position)`, both strictly increasing.
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Records that the batch with `relative_offset` starts at `position`. Entries that would
    /// break monotonicity are ignored (they can only come from a caller bug).
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        if let Some(&(last_rel, last_pos)) = self.entries.last() {
            if relative_offset <= last_rel || position <= last_pos {
                debug_assert!(false, "offset index entries must increase");
                return;
            }
        }
        self.entries.push((relative_offset, position));
    }

    /// Position of the last indexed batch whose relative base offset is <= `relative_offset`,
    /// or 0 (the segment start) if there is none.
    pub fn lookup(&self, relative_offset: u32) -> u64 {
        let idx = self.entries.partition_point(|&(rel, _)| rel <= relative_offset);
        idx.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map_or(0, |&(_, pos)| u64::from(pos))
    }

    /// Drops the entries at or after file position `position` (the segment was cut there).
    pub fn truncate_from_position(&mut self, position: u64) {
        let keep = self
            .entries
            .partition_point(|&(_, pos)| u64::from(pos) < position);
        self.entries.truncate(keep);
    }

    /// The last entry `(relative_offset, position)`, if any.
    pub fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }

    /// Position of the last entry, or 0.
    pub fn last_position(&self) -> u64 {
        self.last().map_or(0, |(_, pos)| u64::from(pos))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether every entry lies inside a segment of `size` bytes holding relative offsets
    /// below `relative_end`, in strictly increasing order.
    pub fn is_consistent_with(&self, size: u64, relative_end: u64) -> bool {
        let ordered = self.entries.windows(2).all(|w| match w {
            [a, b] => a.0 < b.0 && a.1 < b.1,
            _ => true,
        });
        ordered
            && self
                .entries
                .iter()
                .all(|&(rel, pos)| u64::from(pos) < size && u64::from(rel) < relative_end)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.entries.len() * ENTRY_SIZE);
        out.push(VERSION);
        for &(rel, pos) in &self.entries {
            out.extend_from_slice(&rel.to_be_bytes());
            out.extend_from_slice(&pos.to_be_bytes());
        }
        out
    }

    /// Parses an index file; `None` if the version or length is wrong.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&version, body) = bytes.split_first()?;
        if version != VERSION || body.len() % ENTRY_SIZE != 0 {
            return None;
        }
        let mut index = Self::default();
        for chunk in body.chunks_exact(ENTRY_SIZE) {
            let (rel, pos) = chunk.split_at(4);
            let rel = u32::from_be_bytes(rel.try_into().ok()?);
            let pos = u32::from_be_bytes(pos.try_into().ok()?);
            index.entries.push((rel, pos));
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_closest_entry_at_or_before() {
        let mut idx = OffsetIndex::default();
        assert_eq!(idx.lookup(5), 0);
        idx.push(10, 100);
        idx.push(20, 200);
        assert_eq!(idx.lookup(5), 0);
        assert_eq!(idx.lookup(10), 100);
        assert_eq!(idx.lookup(19), 100);
        assert_eq!(idx.lookup(25), 200);
        assert_eq!(idx.last_position(), 200);
    }

    #[test]
    fn round_trips_and_checks_consistency() {
        let mut idx = OffsetIndex::default();
        idx.push(1, 50);
        idx.push(7, 300);
        let decoded = OffsetIndex::decode(&idx.encode()).unwrap();
        assert_eq!(decoded, idx);
        assert!(decoded.is_consistent_with(301, 8));
        assert!(!decoded.is_consistent_with(300, 8), "position past the end");
        assert!(!decoded.is_consistent_with(301, 7), "offset past the end");
        assert_eq!(OffsetIndex::decode(&[2]), None);
        assert_eq!(OffsetIndex::decode(&[1, 0, 0]), None);
        assert_eq!(OffsetIndex::decode(&[]), None);
        let unordered = OffsetIndex::decode(&[1, 0, 0, 0, 5, 0, 0, 0, 9, 0, 0, 0, 4, 0, 0, 0, 1]).unwrap();
        assert!(!unordered.is_consistent_with(100, 100));
    }
}
