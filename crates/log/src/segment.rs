//! One segment: a `{base_offset:020}.log` file of back-to-back record batches plus its
//! in-memory offset and time indexes (persisted beside it as `.index` and `.timeindex`), and
//! what the log needs to know about it without reading it: size, next offset, largest
//! timestamp and the wall clock of its first append.
//!
//! Bytes are written with positional writes at `size` and read with positional reads, so reads
//! need only `&self`. The segment never holds a partial batch in `size`: a failed append is cut
//! back by the caller with [`Segment::truncate_bytes`], and recovery cuts a torn tail.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::batch::BatchView;
use crate::durable;
use crate::offset_index::OffsetIndex;
use crate::scan::{self, DEFAULT_CHUNK};
use crate::time_index::TimeIndex;

pub(crate) const LOG_SUFFIX: &str = ".log";
pub(crate) const INDEX_SUFFIX: &str = ".index";
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// A segment rewritten by the cleaner, before it replaces the `.log` (deleted when the log opens).
pub(crate) const CLEANED_SUFFIX: &str = ".log.cleaned";

/// Largest segment we create: index positions are `u32`, and Kafka caps `segment.bytes` at
/// `i32::MAX` too.
pub(crate) const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;
/// Largest offset span of one segment: index entries store offsets relative to the base as `u32`.
pub(crate) const MAX_RELATIVE_OFFSET: i64 = u32::MAX as i64;

/// `{base_offset:020}{suffix}`: zero-padded so that names sort by offset.
pub(crate) fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// The base offset encoded in a segment file name, if `name` is one with `suffix`.
pub(crate) fn parse_file_name(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Where a batch lies in a segment, with the header fields truncation and recovery need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchLocation {
    pub position: u64,
    pub base_offset: i64,
    pub last_offset: i64,
    pub partition_leader_epoch: i32,
}

/// One segment of a partition log: its file, indexes and summary.
#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: i64,
    dir: PathBuf,
    file: File,
    size: u64,
    next_offset: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_offset_entry: u64,
    bytes_since_time_entry: u64,
    /// Largest batch `maxTimestamp` seen; `i64::MIN` while empty.
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    first_append_ms: Option<i64>,
    /// Whether the index files on disk match memory and were fsynced.
    indexes_durable: bool,
}

impl Segment {
    /// Creates an empty segment at `base_offset`, replacing any file of that name.
    pub fn create(dir: &Path, base_offset: i64) -> io::Result<Self> {
        let path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        durable::remove_if_exists(&dir.join(file_name(base_offset, INDEX_SUFFIX)))?;
        durable::remove_if_exists(&dir.join(file_name(base_offset, TIME_INDEX_SUFFIX)))?;
        Ok(Self::with_file(dir, base_offset, file, 0))
    }

    /// Opens an existing segment file. Its indexes and summary are unknown until
    /// [`Segment::load_indexes`] or [`Segment::recover`] runs.
    pub fn open(dir: &Path, base_offset: i64) -> io::Result<Self> {
        let path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self::with_file(dir, base_offset, file, size))
    }

    /// A segment over `file`, a cleaned copy that will be renamed to this segment's `.log`;
    /// its indexes are unknown until [`Segment::recover`] runs.
    pub fn over_cleaned(dir: &Path, base_offset: i64, file: File, size: u64) -> Self {
        Self::with_file(dir, base_offset, file, size)
    }

    fn with_file(dir: &Path, base_offset: i64, file: File, size: u64) -> Self {
        Self {
            base_offset,
            dir: dir.to_path_buf(),
            file,
            size,
            next_offset: base_offset,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_offset_entry: 0,
            bytes_since_time_entry: 0,
            max_timestamp: i64::MIN,
            offset_of_max_timestamp: base_offset,
            first_append_ms: None,
            indexes_durable: false,
        }
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    /// Offset the next appended batch gets (the segment's last offset + 1).
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn file(&self) -> &File {
        &self.file
    }
    pub fn first_append_ms(&self) -> Option<i64> {
        self.first_append_ms
    }
    pub fn set_first_append_ms(&mut self, ms: Option<i64>) {
        self.first_append_ms = ms;
    }
    /// After compaction a segment still covers the offsets up to its original end, even when
    /// its last batches were removed.
    pub fn set_next_offset(&mut self, next_offset: i64) {
        self.next_offset = self.next_offset.max(next_offset);
    }

    /// The largest timestamp and the base offset of the batch holding it; `None` if empty.
    /// (Finding the exact record means walking the batch's records, which the append path
    /// must not do per batch; `Log::max_timestamp` refines it when asked.)
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        (self.max_timestamp != i64::MIN).then_some((self.max_timestamp, self.offset_of_max_timestamp))
    }

    /// What retention compares with `retention.ms`: the largest timestamp, or the file's
    /// modification time when no batch carries one (as Kafka does).
    pub fn largest_timestamp_for_retention(&self) -> i64 {
        if self.max_timestamp >= 0 {
            return self.max_timestamp;
        }
        self.file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    fn relative(&self, offset: i64) -> Option<u32> {
        u32::try_from(offset.checked_sub(self.base_offset)?).ok()
    }

    /// Whether appending `bytes` more bytes ending at `last_offset` still fits this segment.
    pub fn fits(&self, bytes: u64, last_offset: i64, segment_bytes: u64) -> bool {
        let limit = segment_bytes.min(MAX_SEGMENT_BYTES);
        self.size + bytes <= limit && last_offset - self.base_offset <= MAX_RELATIVE_OFFSET
    }

    /// Writes already-validated, offset-assigned batches at the end in one positional write.
    /// On error nothing is recorded in memory; the caller cuts the file back.
    pub fn write(&self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, self.size)
    }

    /// Records in memory the batches just written by [`Segment::write`].
    pub fn track_appended(&mut self, bytes: &[u8], index_interval: u32, now_ms: i64) {
        let mut pos = self.size;
        for view in crate::batch::BatchIter::new(bytes).flatten() {
            self.track_batch(pos, &view, index_interval);
            pos += view.size() as u64;
        }
        self.size = pos;
        self.first_append_ms.get_or_insert(now_ms);
        self.indexes_durable = false;
    }

    /// Cuts the file back to `size` bytes (undoing a failed append).
    pub fn truncate_bytes(&mut self, size: u64) -> io::Result<()> {
        self.file.set_len(size)?;
        self.size = size;
        Ok(())
    }

    pub fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Updates indexes and summary for the batch at `pos`.
    fn track_batch(&mut self, pos: u64, view: &BatchView<'_>, index_interval: u32) {
        let interval = u64::from(index_interval);
        let size = view.size() as u64;
        if pos > 0 && self.bytes_since_offset_entry >= interval {
            if let (Some(rel), Ok(pos32)) = (self.relative(view.base_offset()), u32::try_from(pos)) {
                self.offset_index.push(rel, pos32);
                self.bytes_since_offset_entry = 0;
            }
        }
        self.bytes_since_offset_entry += size;
        if view.max_timestamp() > self.max_timestamp {
            self.max_timestamp = view.max_timestamp();
            // The batch's base offset, not the exact record: walking every record of every
            // batch on the append path cost ~6% of produce CPU. Time-index lookups scan
            // forward from this offset, so an earlier offset is still correct.
            self.offset_of_max_timestamp = view.base_offset();
            if self.time_index.last().is_none() || self.bytes_since_time_entry >= interval {
                if let Some(rel) = self.relative(self.offset_of_max_timestamp) {
                    self.time_index.push(self.max_timestamp, rel);
                    self.bytes_since_time_entry = 0;
                }
            }
        }
        self.bytes_since_time_entry += size;
        self.next_offset = view.last_offset() + 1;
    }

    fn reset_indexes(&mut self) {
        self.offset_index = OffsetIndex::default();
        self.time_index = TimeIndex::default();
        self.bytes_since_offset_entry = 0;
        self.bytes_since_time_entry = 0;
        self.max_timestamp = i64::MIN;
        self.offset_of_max_timestamp = self.base_offset;
        self.next_offset = self.base_offset;
        self.indexes_durable = false;
    }

    /// Re-validates every batch (CRC, header, and that offsets are dense from the base offset,
    /// or only increasing with `allow_gaps`, for compacted logs), rebuilds the indexes, and
    /// cuts the file at the first invalid or torn batch. Returns whether anything was cut.
    pub fn recover(&mut self, index_interval: u32, allow_gaps: bool) -> io::Result<bool> {
        self.reset_indexes();
        let mut bad_at = None;
        let end = scan::scan(
            &self.file.try_clone()?,
            0,
            self.size,
            true,
            DEFAULT_CHUNK,
            |pos, view| {
                let ordered = if allow_gaps {
                    view.base_offset() >= self.next_offset
                } else {
                    view.base_offset() == self.next_offset
                };
                if !ordered || view.last_offset() - self.base_offset > MAX_RELATIVE_OFFSET {
                    bad_at = Some(pos);
                    return ControlFlow::Break(());
                }
                self.track_batch(pos, &view, index_interval);
                ControlFlow::Continue(())
            },
        )?;
        let valid = bad_at.unwrap_or(end.position);
        if valid < self.size {
            tracing::warn!(
                segment = %self.log_path().display(),
                valid_bytes = valid,
                size = self.size,
                error = ?end.error,
                "truncating invalid tail of segment"
            );
            self.truncate_bytes(valid)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Loads the persisted indexes, trusting them if they agree with a segment that ends at
    /// `next_offset` (unknown for the active segment). Returns false if they are missing or
    /// disagree; the caller then runs [`Segment::recover`].
    pub fn load_indexes(&mut self, next_offset: Option<i64>) -> bool {
        self.reset_indexes();
        let read = |suffix| fs::read(self.dir.join(file_name(self.base_offset, suffix))).ok();
        let (Some(offset_bytes), Some(time_bytes)) = (read(INDEX_SUFFIX), read(TIME_INDEX_SUFFIX)) else {
            return false;
        };
        let (Some(offset_index), Some(time_index)) =
            (OffsetIndex::decode(&offset_bytes), TimeIndex::decode(&time_bytes))
        else {
            return false;
        };
        let relative_end = next_offset.map_or(u64::MAX, |n| u64::try_from(n - self.base_offset).unwrap_or(0));
        if !offset_index.is_consistent_with(self.size, relative_end)
            || !time_index.is_consistent_with(relative_end)
        {
            return false;
        }
        if time_index.last().is_none() != (self.size == 0) {
            return false;
        }
        if let Some((ts, rel)) = time_index.last() {
            self.max_timestamp = ts;
            self.offset_of_max_timestamp = self.base_offset + i64::from(rel);
        }
        self.bytes_since_offset_entry = self.size - offset_index.last_position();
        self.bytes_since_time_entry = self.bytes_since_offset_entry;
        self.offset_index = offset_index;
        self.time_index = time_index;
        self.next_offset = next_offset.unwrap_or(self.base_offset);
        self.indexes_durable = true;
        true
    }

    /// For the active segment after a clean shutdown: validates the batches after the last
    /// index entry (cheap: at most about `index.interval.bytes`) and learns the next offset.
    /// Returns false if the tail is not a run of valid batches ending exactly at the file end.
    /// With `allow_gaps` (compacted logs) offsets need only increase.
    pub fn check_tail(&mut self, allow_gaps: bool) -> io::Result<bool> {
        if self.size == 0 {
            self.next_offset = self.base_offset;
            return Ok(true);
        }
        // The batch at the last entry must carry the entry's offset, and offsets stay dense.
        let (rel, start) = self
            .offset_index
            .last()
            .map_or((0, 0), |(rel, pos)| (rel, u64::from(pos)));
        let mut expected = self.base_offset + i64::from(rel);
        let mut seen_any = false;
        let mut dense = true;
        let end = scan::scan(&self.file, start, self.size, true, DEFAULT_CHUNK, |_, view| {
            let ordered = if allow_gaps {
                view.base_offset() >= expected
            } else {
                view.base_offset() == expected
            };
            if !ordered {
                dense = false;
                return ControlFlow::Break(());
            }
            seen_any = true;
            expected = view.last_offset() + 1;
            ControlFlow::Continue(())
        })?;
        let next = expected;
        if !seen_any {
            return Ok(false);
        }
        let in_range = self
            .time_index
            .is_consistent_with(u64::try_from(next - self.base_offset).unwrap_or(0));
        if !dense || end.error.is_some() || end.position != self.size || !in_range {
            return Ok(false);
        }
        self.next_offset = next;
        Ok(true)
    }

    /// Writes both index files (atomically; with `sync`, durably), adding the final maximum
    /// timestamp to the time index first.
    pub fn persist_indexes(&mut self, sync: bool) -> io::Result<()> {
        if self.indexes_durable {
            return Ok(());
        }
        if let Some((ts, rel)) = self
            .max_timestamp()
            .and_then(|(ts, off)| Some((ts, self.relative(off)?)))
        {
            self.time_index.push(ts, rel);
        }
        durable::write_atomic(
            &self.dir.join(file_name(self.base_offset, INDEX_SUFFIX)),
            &self.offset_index.encode(),
            sync,
        )?;
        durable::write_atomic(
            &self.dir.join(file_name(self.base_offset, TIME_INDEX_SUFFIX)),
            &self.time_index.encode(),
            sync,
        )?;
        self.indexes_durable = sync;
        Ok(())
    }

    /// Position of the first batch whose last offset is >= `offset`, or `None` past the end.
    pub fn find_position(&self, offset: i64, index_interval: u32) -> io::Result<Option<u64>> {
        Ok(self.locate(offset, index_interval)?.map(|b| b.position))
    }

    /// The first batch whose last offset is >= `offset`, or `None` past the end.
    pub fn locate(&self, offset: i64, index_interval: u32) -> io::Result<Option<BatchLocation>> {
        let start = self
            .relative(offset)
            .map_or(0, |rel| self.offset_index.lookup(rel));
        let chunk = (2 * index_interval as usize).clamp(16 << 10, DEFAULT_CHUNK);
        let mut found = None;
        scan::scan(&self.file, start, self.size, false, chunk, |pos, view| {
            if view.last_offset() >= offset {
                found = Some(BatchLocation {
                    position: pos,
                    base_offset: view.base_offset(),
                    last_offset: view.last_offset(),
                    partition_leader_epoch: view.partition_leader_epoch(),
                });
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(found)
    }

    /// Position from which a forward scan finds the earliest record with timestamp >= `ts`.
    pub fn timestamp_scan_start(&self, ts: i64) -> u64 {
        self.time_index
            .lookup(ts)
            .map_or(0, |rel| self.offset_index.lookup(rel))
    }

    /// Removes every batch at and after the one containing `offset` (the segment then ends
    /// at `offset`, or at that batch's base offset if it starts below `offset`). The indexes
    /// are cut in memory, not rebuilt: only the batches after the last kept time-index entry
    /// are read again, to find the largest remaining timestamp (as Kafka does). The index
    /// files on disk are stale until the next [`Segment::persist_indexes`]; callers make sure
    /// a crash before then re-validates this segment (recovery point at or below `offset`).
    pub fn truncate_to(&mut self, offset: i64, index_interval: u32) -> io::Result<()> {
        let next_offset = match self.locate(offset, index_interval)? {
            Some(batch) => {
                self.truncate_bytes(batch.position)?;
                offset.min(batch.base_offset)
            }
            None => offset.min(self.next_offset),
        };
        self.offset_index.truncate_from_position(self.size);
        let relative_end = self.relative(next_offset).unwrap_or(0);
        self.time_index.truncate_from(relative_end);
        let (mut max_ts, mut max_offset, start) = match self.time_index.last() {
            Some((ts, rel)) => (
                ts,
                self.base_offset + i64::from(rel),
                self.offset_index.lookup(rel),
            ),
            None => (i64::MIN, self.base_offset, 0),
        };
        scan::scan(&self.file, start, self.size, false, DEFAULT_CHUNK, |_, view| {
            if view.max_timestamp() > max_ts {
                max_ts = view.max_timestamp();
                max_offset = view.base_offset();
            }
            ControlFlow::Continue(())
        })?;
        self.max_timestamp = max_ts;
        self.offset_of_max_timestamp = max_offset;
        self.next_offset = next_offset;
        self.bytes_since_offset_entry = self.size - self.offset_index.last_position();
        self.bytes_since_time_entry = self.bytes_since_offset_entry;
        if self.size == 0 {
            self.first_append_ms = None;
        }
        self.indexes_durable = false;
        Ok(())
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(file_name(self.base_offset, LOG_SUFFIX))
    }

    /// Deletes the segment's files: indexes first, so a crash never leaves an index without
    /// its log (an orphan log simply gets its indexes rebuilt).
    pub fn delete(self) -> io::Result<()> {
        self.delete_files()
    }

    /// [`Segment::delete`] keeping the handle: reads through it still work (the file is only
    /// unlinked), so a log whose deletion fails half-way keeps a readable segment map.
    pub fn delete_files(&self) -> io::Result<()> {
        durable::remove_if_exists(&self.dir.join(file_name(self.base_offset, INDEX_SUFFIX)))?;
        durable::remove_if_exists(&self.dir.join(file_name(self.base_offset, TIME_INDEX_SUFFIX)))?;
        durable::remove_if_exists(&self.log_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{set_base_offset, testing::simple_batch};

    fn batch_at(offset: i64, count: i32, ts: i64) -> Vec<u8> {
        let mut b = simple_batch(count, ts, &[1u8; 100]);
        set_base_offset(&mut b, offset);
        b
    }

    fn append(seg: &mut Segment, bytes: &[u8]) {
        seg.write(bytes).unwrap();
        seg.track_appended(bytes, 200, 0);
    }

    #[test]
    fn file_names_sort_and_parse() {
        assert_eq!(file_name(42, LOG_SUFFIX), "00000000000000000042.log");
        assert_eq!(parse_file_name("00000000000000000042.log", LOG_SUFFIX), Some(42));
        assert_eq!(parse_file_name("42.log", LOG_SUFFIX), None);
        assert_eq!(parse_file_name("00000000000000000042.index", LOG_SUFFIX), None);
    }

    #[test]
    fn indexes_round_trip_and_positions_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 10).unwrap();
        let mut offset = 10;
        let mut positions = Vec::new();
        for i in 0..20 {
            positions.push((offset, seg.size()));
            append(&mut seg, &batch_at(offset, 2, 1_000 + i));
            offset += 2;
        }
        assert_eq!(seg.next_offset(), 50);
        assert!(seg.offset_index.len() > 5);
        for &(off, pos) in &positions {
            assert_eq!(seg.find_position(off + 1, 200).unwrap(), Some(pos));
        }
        assert_eq!(seg.max_timestamp(), Some((1_019, 48)));
        seg.persist_indexes(true).unwrap();
        let (oi, ti) = (seg.offset_index.clone(), seg.time_index.clone());

        let mut reopened = Segment::open(dir.path(), 10).unwrap();
        assert!(reopened.load_indexes(None));
        assert!(reopened.check_tail(false).unwrap());
        assert_eq!(reopened.next_offset(), 50);
        assert_eq!((&reopened.offset_index, &reopened.time_index), (&oi, &ti));
        assert_eq!(reopened.max_timestamp(), Some((1_019, 48)));

        let mut rebuilt = Segment::open(dir.path(), 10).unwrap();
        assert!(!rebuilt.recover(200, false).unwrap());
        assert_eq!(rebuilt.offset_index, oi);
        assert_eq!(rebuilt.max_timestamp(), Some((1_019, 48)));
    }

    #[test]
    fn recover_cuts_batches_with_wrong_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 0).unwrap();
        append(&mut seg, &batch_at(0, 3, 5));
        let good = seg.size();
        append(&mut seg, &batch_at(7, 1, 5)); // gap: 3 expected
        let all = seg.size();
        assert!(
            !seg.recover(200, true).unwrap(),
            "a forward gap is fine in a compacted log"
        );
        assert_eq!((seg.size(), seg.next_offset()), (all, 8));
        assert!(seg.recover(200, false).unwrap());
        assert_eq!((seg.size(), seg.next_offset()), (good, 3));
        append(&mut seg, &batch_at(1, 1, 5)); // overlap: never fine
        assert!(seg.recover(200, true).unwrap());
        assert_eq!((seg.size(), seg.next_offset()), (good, 3));
    }

    #[test]
    fn truncate_to_drops_the_containing_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 0).unwrap();
        append(&mut seg, &batch_at(0, 3, 5));
        let first = seg.size();
        append(&mut seg, &batch_at(3, 3, 9));
        seg.truncate_to(4, 200).unwrap();
        assert_eq!((seg.size(), seg.next_offset()), (first, 3));
        assert_eq!(seg.max_timestamp(), Some((5, 0)));
    }
}
