//! The leader-epoch cache of one log (Kafka's `LeaderEpochFileCache` and its
//! `leader-epoch-checkpoint` file): which leader epoch wrote which offsets, as a list of
//! `(epoch, start_offset)` entries. It answers OffsetForLeaderEpoch ([`LeaderEpochCache::end_offset_for`]),
//! which a follower uses after a leader change to find where its log diverges from the new
//! leader's (KIP-101, KIP-279).
//!
//! Invariant: epochs and start offsets both strictly increase from one entry to the next, and
//! every epoch and offset is non-negative. [`LeaderEpochCache::assign`] keeps it the way Kafka
//! does: an entry that would break it removes the entries it conflicts with.
//!
//! ## File format and recovery story
//! `leader-epoch-checkpoint`, Kafka's own text format (version 0):
//! ```text
//! 0            version
//! 2            number of entries
//! 0 0          epoch start_offset, one entry per line, oldest first
//! 3 120
//! ```
//! It is replaced atomically (tmp + fsync + rename + directory fsync) whenever the cache
//! changes, and always *before* the log bytes that need the change are written, so after a
//! crash the file can only be ahead of the log (entries at or past the log end offset, which
//! recovery drops), never behind. A missing, unparsable or non-monotonic file, or one that
//! disagrees with the epoch of the log's last batch, is rebuilt from the batches'
//! `partitionLeaderEpoch` fields (`recovery::recover_leader_epochs`).

use std::fs;
use std::io;
use std::path::Path;

use crate::durable;

/// File name of the cache inside the log directory (Kafka's).
pub(crate) const FILE_NAME: &str = "leader-epoch-checkpoint";
/// Kafka's version of the file format.
const VERSION: u32 = 0;

/// Kafka's `UNDEFINED_EPOCH`: no epoch is known.
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's `UNDEFINED_EPOCH_OFFSET`: no end offset is known.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// One leader epoch and the first offset written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The answer to OffsetForLeaderEpoch: the largest epoch at or below the requested one and the
/// offset where it ended (the start of the next epoch, or the log end offset for the latest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEndOffset {
    pub epoch: i32,
    pub end_offset: i64,
}

impl EpochEndOffset {
    /// Nothing is known about the requested epoch.
    pub const UNDEFINED: EpochEndOffset = EpochEndOffset {
        epoch: UNDEFINED_EPOCH,
        end_offset: UNDEFINED_EPOCH_OFFSET,
    };
}

/// Why a `leader-epoch-checkpoint` file was not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CorruptEpochFile {
    Unparsable(&'static str),
    UnsupportedVersion(u32),
    NotMonotonic,
}

/// The leader epochs of one log, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache over `entries`, or `None` if they break the invariant.
    pub fn from_entries(entries: Vec<EpochEntry>) -> Option<Self> {
        let valid = entries.iter().all(|e| e.epoch >= 0 && e.start_offset >= 0)
            && entries.windows(2).all(|w| match w {
                [a, b] => a.epoch < b.epoch && a.start_offset < b.start_offset,
                _ => true,
            });
        valid.then_some(Self { entries })
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn latest_entry(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.latest_entry().map(|e| e.epoch)
    }

    pub fn earliest_entry(&self) -> Option<EpochEntry> {
        self.entries.first().copied()
    }

    /// Whether [`LeaderEpochCache::assign`] would change anything: a new epoch, or the latest
    /// one starting earlier (Kafka's `isUpdateNeeded`). Cheap: the append path asks per request.
    pub fn would_change(&self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        self.latest_entry()
            .is_none_or(|latest| latest.epoch != epoch || start_offset < latest.start_offset)
    }

    /// Records that `epoch` starts at `start_offset`. Entries that would break monotonicity
    /// (an epoch at or above `epoch`, or a start offset at or above `start_offset`) are removed
    /// first, as Kafka does. Negative arguments are ignored. Returns whether anything changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if !self.would_change(epoch, start_offset) {
            return false;
        }
        let keep = self
            .entries
            .iter()
            .rposition(|e| e.epoch < epoch && e.start_offset < start_offset)
            .map_or(0, |i| i + 1);
        let removed = self.entries.len() - keep;
        if removed > 1
            || self
                .entries
                .get(keep)
                .is_some_and(|e| e.start_offset != start_offset)
        {
            tracing::warn!(epoch, start_offset, removed = ?self.entries.get(keep..),
                "new leader epoch entry removed conflicting entries");
        }
        self.entries.truncate(keep);
        self.entries.push(EpochEntry { epoch, start_offset });
        true
    }

    /// OffsetForLeaderEpoch with Kafka's semantics (`LeaderEpochFileCache.endOffsetFor`):
    /// - the requested epoch is undefined, or above every known one, or nothing is known:
    ///   [`EpochEndOffset::UNDEFINED`];
    /// - it is the latest epoch: `(epoch, log_end_offset)`;
    /// - it is below the earliest epoch: `(requested, start of the earliest epoch)` (the data of
    ///   older epochs is gone; the follower truncates to where this log starts knowing epochs);
    /// - otherwise: the largest known epoch `<= requested` and the start offset of the first
    ///   epoch above the requested one.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> EpochEndOffset {
        if requested == UNDEFINED_EPOCH {
            return EpochEndOffset::UNDEFINED;
        }
        if self.latest_epoch() == Some(requested) {
            return EpochEndOffset {
                epoch: requested,
                end_offset: log_end_offset,
            };
        }
        let higher = self.entries.partition_point(|e| e.epoch <= requested);
        let Some(next) = self.entries.get(higher) else {
            return EpochEndOffset::UNDEFINED;
        };
        match higher.checked_sub(1).and_then(|i| self.entries.get(i)) {
            Some(floor) => EpochEndOffset {
                epoch: floor.epoch,
                end_offset: next.start_offset,
            },
            None => EpochEndOffset {
                epoch: requested,
                end_offset: next.start_offset,
            },
        }
    }

    /// The epoch that wrote `offset`: the last entry starting at or before it.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let idx = self.entries.partition_point(|e| e.start_offset <= offset);
        idx.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map(|e| e.epoch)
    }

    /// Log truncation: removes the entries starting at or after `end_offset` (Kafka's
    /// `truncateFromEnd`). A negative offset changes nothing. Returns whether anything changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        if end_offset < 0 {
            return false;
        }
        let keep = self.entries.partition_point(|e| e.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// The log start offset moved to `start_offset`: removes the entries starting at or
    /// before it, keeping the last of them with its start moved up to `start_offset` (Kafka's
    /// `truncateFromStart`). A negative offset changes nothing. Returns whether anything changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        if start_offset < 0 {
            return false;
        }
        let covered = self.entries.partition_point(|e| e.start_offset <= start_offset);
        let Some(last_covered) = covered.checked_sub(1) else {
            return false;
        };
        let changed = last_covered > 0
            || self
                .entries
                .first()
                .is_some_and(|e| e.start_offset != start_offset);
        self.entries.drain(..last_covered);
        if let Some(first) = self.entries.first_mut() {
            first.start_offset = start_offset;
        }
        changed
    }

    /// Forgets every epoch. Returns whether anything changed.
    pub fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = format!("{VERSION}\n{}\n", self.entries.len());
        for e in &self.entries {
            out.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        out.into_bytes()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, CorruptEpochFile> {
        let text = std::str::from_utf8(bytes).map_err(|_| CorruptEpochFile::Unparsable("not UTF-8"))?;
        let mut lines = text.lines();
        let mut next_line = |what| {
            lines
                .next()
                .map(str::trim)
                .ok_or(CorruptEpochFile::Unparsable(what))
        };
        let version: u32 = next_line("missing version")?
            .parse()
            .map_err(|_| CorruptEpochFile::Unparsable("bad version"))?;
        if version != VERSION {
            return Err(CorruptEpochFile::UnsupportedVersion(version));
        }
        let count: usize = next_line("missing entry count")?
            .parse()
            .map_err(|_| CorruptEpochFile::Unparsable("bad entry count"))?;
        // Bounded by what the file holds, not by the count it claims.
        let mut entries = Vec::with_capacity(count.min(bytes.len() / 4));
        for _ in 0..count {
            let line = next_line("fewer entries than announced")?;
            let mut fields = line.split_whitespace();
            let (Some(epoch), Some(offset), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(CorruptEpochFile::Unparsable("entry is not `epoch offset`"));
            };
            entries.push(EpochEntry {
                epoch: epoch
                    .parse()
                    .map_err(|_| CorruptEpochFile::Unparsable("bad epoch"))?,
                start_offset: offset
                    .parse()
                    .map_err(|_| CorruptEpochFile::Unparsable("bad start offset"))?,
            });
        }
        if lines.any(|l| !l.trim().is_empty()) {
            return Err(CorruptEpochFile::Unparsable("more entries than announced"));
        }
        Self::from_entries(entries).ok_or(CorruptEpochFile::NotMonotonic)
    }

    /// Reads the cache file in `dir`: `Ok(None)` if there is none, `Ok(Some(Err(_)))` if it is
    /// unusable (the caller rebuilds it from the log).
    pub(crate) fn read(dir: &Path) -> io::Result<Option<Result<Self, CorruptEpochFile>>> {
        match fs::read(dir.join(FILE_NAME)) {
            Ok(bytes) => Ok(Some(Self::decode(&bytes))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Durably replaces the cache file in `dir`.
    pub(crate) fn write(&self, dir: &Path) -> io::Result<()> {
        durable::write_atomic(&dir.join(FILE_NAME), &self.encode(), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::new();
        for &(epoch, start) in entries {
            c.assign(epoch, start);
        }
        c
    }

    fn entries(c: &LeaderEpochCache) -> Vec<(i32, i64)> {
        c.entries().iter().map(|e| (e.epoch, e.start_offset)).collect()
    }

    fn end(c: &LeaderEpochCache, epoch: i32, log_end: i64) -> (i32, i64) {
        let r = c.end_offset_for(epoch, log_end);
        (r.epoch, r.end_offset)
    }

    // The cases below are the examples of Kafka's LeaderEpochFileCacheTest.

    #[test]
    fn latest_epoch_answers_the_log_end_offset() {
        let c = cache(&[(2, 10)]);
        assert_eq!((c.latest_epoch(), end(&c, 2, 11)), (Some(2), (2, 11)));
        let c = cache(&[(2, 11), (2, 12)]);
        assert_eq!(end(&c, 2, 14), (2, 14));
        assert_eq!(
            entries(&c),
            vec![(2, 11)],
            "an assigned start offset is not moved up"
        );
    }

    #[test]
    fn undefined_requests_and_empty_caches_answer_undefined() {
        let c = cache(&[(2, 11), (3, 12)]);
        assert_eq!(end(&c, UNDEFINED_EPOCH, 0), (-1, -1));
        let empty = LeaderEpochCache::new();
        assert_eq!(end(&empty, 0, 0), (-1, -1));
        assert_eq!(end(&empty, UNDEFINED_EPOCH, 73), (-1, -1));
        assert_eq!(end(&empty, 7, 0), (-1, -1));
        assert_eq!(
            end(&cache(&[(2, 100)]), 3, 100),
            (-1, -1),
            "above every known epoch"
        );
    }

    #[test]
    fn below_the_earliest_epoch_answers_its_start_offset() {
        let c = cache(&[(5, 11), (6, 12), (7, 13)]);
        assert_eq!(end(&c, 4, 0), (4, 11));
    }

    #[test]
    fn between_epochs_answers_the_floor_epoch_and_the_next_start() {
        let c = cache(&[(1, 11), (1, 12), (2, 13), (2, 14), (3, 15), (3, 16)]);
        assert_eq!(end(&c, 2, 17), (2, 15));
        let c = cache(&[(0, 10), (2, 13), (4, 17)]);
        assert_eq!(end(&c, 1, 0), (0, 13));
        assert_eq!(end(&c, 2, 0), (2, 17));
        assert_eq!(end(&c, 3, 0), (2, 17));
    }

    #[test]
    fn assign_keeps_both_columns_monotonic() {
        assert_eq!(entries(&cache(&[(2, 9), (3, 9)])), vec![(3, 9)]);
        assert_eq!(entries(&cache(&[(2, 6), (2, 10)])), vec![(2, 6)]);
        assert_eq!(entries(&cache(&[(2, 6), (3, 5)])), vec![(3, 5)]);
        let c = cache(&[(5, 11), (6, 12), (7, 13), (7, 12)]);
        assert_eq!(end(&c, 5, 0), (5, 12));
        assert_eq!(end(&c, 6, 0), (5, 12));
        let c = cache(&[(1, 5), (2, 6), (1, 7)]);
        assert_eq!(entries(&c), vec![(1, 7)]);
        assert_eq!(end(&c, 1, 8), (1, 8));
        assert_eq!(end(&c, 2, 8), (-1, -1));
        let mut c = LeaderEpochCache::new();
        assert!(!c.assign(-1, 5) && !c.assign(1, -1) && c.is_empty());
    }

    #[test]
    fn epochs_tracked_as_leaders_change() {
        let c = cache(&[(0, 0), (1, 0)]);
        assert_eq!(c.latest_epoch(), Some(1));
        assert_eq!((end(&c, 1, 0), end(&c, 0, 0)), ((1, 0), (0, 0)));
        assert_eq!((end(&c, 1, 5), end(&c, 0, 5)), ((1, 5), (0, 0)));
        let c = cache(&[(0, 0), (1, 0), (2, 5)]);
        assert_eq!(
            (end(&c, 2, 10), end(&c, 1, 10), end(&c, 0, 10)),
            ((2, 10), (1, 5), (0, 0))
        );
        let c = cache(&[
            (0, 0),
            (0, 1),
            (0, 2),
            (1, 3),
            (1, 4),
            (1, 5),
            (2, 6),
            (2, 7),
            (2, 8),
        ]);
        assert_eq!(
            (end(&c, 2, 9), end(&c, 0, 9), end(&c, 1, 9)),
            ((2, 9), (0, 3), (1, 6))
        );
    }

    #[test]
    fn truncate_from_end_drops_entries_at_or_after_the_offset() {
        let mut c = cache(&[(2, 6), (3, 8), (4, 11)]);
        assert!(c.truncate_from_end(8));
        assert_eq!(entries(&c), vec![(2, 6)]);
        let mut c = cache(&[(2, 6), (3, 8), (4, 11)]);
        c.truncate_from_end(9);
        assert_eq!((entries(&c), c.latest_epoch()), (vec![(2, 6), (3, 8)], Some(3)));
        assert!(!c.truncate_from_end(UNDEFINED_EPOCH_OFFSET));
        assert!(!LeaderEpochCache::new().truncate_from_end(7));
    }

    #[test]
    fn truncate_from_start_keeps_the_covering_epoch_at_the_new_start() {
        let base = [(2, 6), (3, 8), (4, 11)];
        for (start, want) in [
            (8, vec![(3, 8), (4, 11)]),
            (1, vec![(2, 6), (3, 8), (4, 11)]),
            (6, vec![(2, 6), (3, 8), (4, 11)]),
            (11, vec![(4, 11)]),
            (9, vec![(3, 9), (4, 11)]),
            (15, vec![(4, 15)]),
            (-1, vec![(2, 6), (3, 8), (4, 11)]),
        ] {
            let mut c = cache(&base);
            let changed = c.truncate_from_start(start);
            assert_eq!(entries(&c), want, "start {start}");
            assert_eq!(changed, entries(&c) != base.to_vec(), "start {start}");
        }
        let mut c = cache(&[(0, 0), (1, 7), (2, 10)]);
        c.truncate_from_start(5);
        assert_eq!(entries(&c), vec![(0, 5), (1, 7), (2, 10)]);
        assert!(!LeaderEpochCache::new().truncate_from_start(7));
    }

    #[test]
    fn epoch_for_offset_finds_the_writer() {
        let c = cache(&[(0, 10), (1, 20), (5, 30)]);
        assert_eq!(c.epoch_for_offset(25), Some(1));
        assert_eq!(c.epoch_for_offset(20), Some(1));
        assert_eq!(c.epoch_for_offset(30), Some(5));
        assert_eq!(c.epoch_for_offset(50), Some(5));
        assert_eq!(c.epoch_for_offset(5), None);
    }

    #[test]
    fn file_round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LeaderEpochCache::read(dir.path()).unwrap(), None);
        let c = cache(&[(2, 6), (3, 8)]);
        c.write(dir.path()).unwrap();
        assert_eq!(fs::read(dir.path().join(FILE_NAME)).unwrap(), b"0\n2\n2 6\n3 8\n");
        assert_eq!(LeaderEpochCache::read(dir.path()).unwrap(), Some(Ok(c)));
        assert_eq!(LeaderEpochCache::decode(b"0\n0\n"), Ok(LeaderEpochCache::new()));
        for bad in [
            &b""[..],
            b"1\n0\n",
            b"0\n2\n2 6\n",
            b"0\n1\n2 6\n3 8\n",
            b"0\n1\n2\n",
            b"0\n1\n2 6 7\n",
            b"0\n2\n3 6\n2 8\n",
            b"0\n2\n2 8\n3 8\n",
            b"0\n1\n-1 8\n",
            b"0\n99999999999\n",
            b"\xff",
        ] {
            assert!(LeaderEpochCache::decode(bad).is_err(), "{bad:?}");
        }
    }
}
