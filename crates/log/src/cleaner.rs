//! Log compaction (`cleanup.policy=compact`): keeps the latest record per key in the non-active
//! segments, drops tombstones once they are older than `delete.retention.ms`, and leaves every
//! kept record at its offset (gaps appear, as in Kafka).
//!
//! A pass has three phases so that it never blocks produce or fetch:
//! 1. [`Log::plan_clean`] (`&self`, a read lock in the broker): picks the cleanable segments —
//!    non-active, and all older than `min.compaction.lag.ms` by their largest timestamp — and
//!    decides from the dirty ratio whether to clean at all. The dirty section starts at the
//!    first dirty offset of the `cleaner-checkpoint.json` file (everything below was compacted
//!    by an earlier pass). The plan holds its own handles on the segment files.
//! 2. [`CleanPlan::execute`] (no lock): builds the offset map (key -> latest offset) over the
//!    dirty section, then writes a cleaned copy of every cleanable segment (dirty and already
//!    clean ones: a newer value in the dirty section supersedes older clean records) to
//!    `{base}.log.cleaned`, fsynced, and indexes it in memory.
//! 3. [`Log::install_cleaned`] (`&mut self`, the write lock): checks that the log was not
//!    truncated since the plan and that each segment is still there, unchanged; then per
//!    segment deletes the old index files, renames the cleaned file over the `.log` and writes
//!    the new indexes; a segment left empty is deleted, except the log's first one, which
//!    stays (empty) so that the log start offset never moves: a consumer committed inside a
//!    removed range must not be told its offset is out of range. Last, the checkpoint moves
//!    the first dirty offset to the end of the cleaned range.
//!
//! Batches are rewritten only when they lose records; then the kept records' bytes are copied
//! unchanged into a batch with the same header (base offset, base timestamp, last offset delta,
//! producer id, epoch and base sequence, attributes and codec), re-compressed with the same
//! codec; only the length, record count, max timestamp and CRC change. Keeping the last offset
//! delta and base sequence is what Kafka does so that an idempotent producer's last sequence
//! read back from the log stays right. A batch that loses every record is dropped (except the
//! last one of a pass, kept as an empty batch; see `CleanPlan::clean_segment`): the
//! in-memory producer state and its snapshots (taken at each roll, newer than any cleanable
//! segment) keep the producer's sequence; only a rebuild from segments alone (every snapshot
//! lost) could forget a producer whose last batch was wholly superseded, after which its next
//! batch is rejected as out of order, as after producer expiry.
//!
//! Choices that differ from Kafka, and why:
//! - A tombstone is removed once its batch's largest timestamp is older than
//!   `delete.retention.ms` (Kafka counts from the first pass that cleaned it). A consumer that
//!   reads the topic within `delete.retention.ms` of a delete therefore sees the tombstone.
//!   The oldest tombstone a pass keeps is remembered (in the checkpoint), and its expiry alone
//!   triggers a pass, so tombstones go even when nothing new is written.
//! - `max.compaction.lag.ms` is judged by the first dirty segment's largest timestamp (we do not
//!   keep a segment's smallest one), so it can force a pass a little later than Kafka would.
//! - Records without a key (written before the topic became compacted) are removed, as Kafka's
//!   cleaner does. Control batches are kept whole.
//! - The offset map holds one entry per distinct key in memory (Kafka bounds it with
//!   `log.cleaner.dedupe.buffer.size`): past [`MAX_OFFSET_MAP_KEYS`] a pass stops at a segment
//!   boundary and the next pass continues.
//!
//! Crash safety: a `.log.cleaned` file is deleted when the log opens; the old index files go
//! before the rename, so a crash never pairs a new segment with old indexes (missing indexes are
//! rebuilt); the rename itself is atomic. Once the checkpoint file exists, recovery and
//! truncation accept offset gaps in this log (see `Log::allow_gaps`).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::batch::{self, BatchError, BatchView};
use crate::codec;
use crate::durable;
use crate::error::LogError;
use crate::log::Log;
use crate::records::{self, RawRecord};
use crate::scan::{self, DEFAULT_CHUNK};
use crate::segment::{self, Segment, CLEANED_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX};

/// File name of the cleaner checkpoint inside the log directory.
pub(crate) const CHECKPOINT_FILE: &str = "cleaner-checkpoint.json";
const CHECKPOINT_VERSION: u8 = 1;

/// Most distinct keys one pass keeps in its offset map.
pub const MAX_OFFSET_MAP_KEYS: usize = 1 << 21;

/// `cleaner-checkpoint.json`, replaced atomically:
/// `{"version":1,"first_dirty_offset":N,"oldest_tombstone_ms":T}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CleanerCheckpoint {
    version: u8,
    /// Everything below was compacted by an earlier pass.
    pub first_dirty_offset: i64,
    /// The largest timestamp of the batch of the oldest tombstone a pass kept (it was younger
    /// than `delete.retention.ms`): once that expires, a pass runs even with nothing dirty.
    #[serde(default)]
    pub oldest_tombstone_ms: Option<i64>,
}

impl CleanerCheckpoint {
    pub(crate) fn new(first_dirty_offset: i64, oldest_tombstone_ms: Option<i64>) -> Self {
        Self {
            version: CHECKPOINT_VERSION,
            first_dirty_offset,
            oldest_tombstone_ms,
        }
    }
}

/// The cleaner checkpoint in `dir`, if the cleaner ever ran there.
pub(crate) fn read_checkpoint(dir: &Path) -> Option<CleanerCheckpoint> {
    let bytes = fs::read(dir.join(CHECKPOINT_FILE)).ok()?;
    let checkpoint: CleanerCheckpoint = serde_json::from_slice(&bytes).ok()?;
    (checkpoint.version == CHECKPOINT_VERSION).then_some(checkpoint)
}

fn write_checkpoint(dir: &Path, checkpoint: &CleanerCheckpoint) -> io::Result<()> {
    let bytes = serde_json::to_vec(checkpoint).map_err(io::Error::other)?;
    durable::write_atomic(&dir.join(CHECKPOINT_FILE), &bytes, true)
}

/// What one cleaning pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Segments replaced by a cleaned copy.
    pub segments_rewritten: usize,
    /// Segments deleted because cleaning left nothing in them.
    pub segments_deleted: usize,
    /// Bytes of the cleaned segments before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Records removed: superseded by a newer value, expired tombstones, keyless records.
    pub records_removed: u64,
    /// Of those, tombstones older than `delete.retention.ms`.
    pub tombstones_removed: u64,
    /// The log was truncated or went offline while the pass ran: nothing was swapped in.
    pub aborted: bool,
}

/// Phase 1's decision: the segments to clean, with handles of their own on the files.
#[derive(Debug)]
pub struct CleanPlan {
    dir: PathBuf,
    index_interval: u32,
    /// Tombstones whose batch's largest timestamp is below this are removed.
    tombstone_horizon: i64,
    truncations: u64,
    segments: Vec<PlannedSegment>,
    /// Index in `segments` of the first dirty segment.
    first_dirty: usize,
}

#[derive(Debug)]
struct PlannedSegment {
    base: i64,
    next_offset: i64,
    size: u64,
    file: File,
}

/// Phase 2's result, to be swapped in by [`Log::install_cleaned`].
#[derive(Debug)]
pub struct CleanedSegments {
    dir: PathBuf,
    truncations: u64,
    segments: Vec<CleanedSegment>,
    /// The checkpoint after this pass: the end of the cleaned range.
    first_dirty_offset: i64,
    /// The oldest tombstone kept (by its batch's largest timestamp).
    oldest_tombstone_ms: Option<i64>,
    stats: CleanStats,
}

#[derive(Debug)]
struct CleanedSegment {
    base: i64,
    original_size: u64,
    outcome: Outcome,
    /// Where the cleaned copy is (or was) written.
    path: PathBuf,
}

/// What cleaning made of one segment.
#[derive(Debug)]
enum Outcome {
    /// Nothing was removed: the segment stays as it is.
    Unchanged,
    /// Nothing was left: the segment is deleted.
    Empty,
    /// The cleaned copy, indexed.
    Cleaned(Segment),
}

impl CleanedSegments {
    /// Removes the cleaned files of a pass that will not be installed.
    fn discard(self) {
        for c in self.segments {
            if let Err(e) = durable::remove_if_exists(&c.path) {
                tracing::warn!(path = %c.path.display(), error = %e, "cannot remove cleaned segment");
            }
        }
    }
}

impl Log {
    /// Phase 1: which segments a pass at `now_ms` would clean, or `None` if the policy does not
    /// compact, the log is offline, nothing is cleanable or the dirty ratio is below
    /// `min.cleanable.dirty.ratio` — unless a dirty segment is older than
    /// `max.compaction.lag.ms` or a tombstone kept by an earlier pass has expired.
    pub fn plan_clean(&self, now_ms: i64) -> Result<Option<CleanPlan>, LogError> {
        let config = &self.config;
        if !config.cleanup_policy.compacts() || self.ensure_online().is_err() {
            return Ok(None);
        }
        let active_base = self.active().base_offset();
        let lag_horizon = now_ms.saturating_sub(config.min_compaction_lag_ms);
        let cleanable: Vec<&Segment> = self
            .segments
            .values()
            .take_while(|s| s.base_offset() != active_base)
            .take_while(|s| {
                config.min_compaction_lag_ms <= 0 || s.max_timestamp().is_none_or(|(ts, _)| ts <= lag_horizon)
            })
            .collect();
        let first_dirty_offset = self.first_dirty_offset.max(self.log_start_offset);
        let first_dirty = cleanable
            .iter()
            .position(|s| s.next_offset() > first_dirty_offset)
            .unwrap_or(cleanable.len());
        let tombstone_horizon = now_ms.saturating_sub(config.delete_retention_ms);
        let tombstones_due = self.oldest_tombstone_ms.is_some_and(|ts| ts < tombstone_horizon);
        let total: u64 = cleanable.iter().map(|s| s.size()).sum();
        let dirty: u64 = cleanable.iter().skip(first_dirty).map(|s| s.size()).sum();
        let ratio = if total == 0 {
            0.0
        } else {
            dirty as f64 / total as f64
        };
        let overdue = config.max_compaction_lag_ms < i64::MAX
            && cleanable.get(first_dirty).is_some_and(|s| {
                now_ms.saturating_sub(s.largest_timestamp_for_retention()) > config.max_compaction_lag_ms
            });
        let dirty_enough = dirty > 0 && (ratio >= config.min_cleanable_dirty_ratio || overdue);
        if cleanable.is_empty() || !(dirty_enough || tombstones_due) {
            return Ok(None);
        }
        let io = LogError::io(&self.dir, "open segment for cleaning");
        let segments = cleanable
            .iter()
            .map(|s| {
                Ok(PlannedSegment {
                    base: s.base_offset(),
                    next_offset: s.next_offset(),
                    size: s.size(),
                    file: s.file().try_clone()?,
                })
            })
            .collect::<io::Result<Vec<_>>>()
            .map_err(io)?;
        Ok(Some(CleanPlan {
            dir: self.dir.clone(),
            index_interval: config.index_interval_bytes,
            tombstone_horizon,
            truncations: self.truncations,
            segments,
            first_dirty,
        }))
    }

    /// Phase 3: swaps the cleaned segments in, unless the log was truncated (or went offline)
    /// since the plan; a segment deleted by retention meanwhile is skipped.
    pub fn install_cleaned(&mut self, cleaned: CleanedSegments) -> Result<CleanStats, LogError> {
        if self.truncations != cleaned.truncations || cleaned.dir != self.dir || self.ensure_online().is_err()
        {
            let stats = CleanStats {
                aborted: true,
                ..cleaned.stats
            };
            cleaned.discard();
            return Ok(stats);
        }
        let result = self.swap_in(cleaned);
        self.guard(result)
    }

    /// One whole pass on a log owned by the caller: plan, clean, install.
    pub fn clean(&mut self, now_ms: i64) -> Result<CleanStats, LogError> {
        match self.plan_clean(now_ms)? {
            Some(plan) => {
                let cleaned = plan.execute()?;
                self.install_cleaned(cleaned)
            }
            None => Ok(CleanStats::default()),
        }
    }

    fn swap_in(&mut self, cleaned: CleanedSegments) -> Result<CleanStats, LogError> {
        let dir = self.dir.clone();
        let io = |op| LogError::io(&dir, op);
        // From here on the log may have gaps: record that before the first one appears.
        if read_checkpoint(&dir).is_none() {
            let marker = CleanerCheckpoint::new(self.first_dirty_offset, self.oldest_tombstone_ms);
            write_checkpoint(&dir, &marker).map_err(io("write cleaner checkpoint"))?;
        }
        self.allow_gaps = true;
        let mut stats = cleaned.stats;
        let active_base = self.active().base_offset();
        for c in cleaned.segments {
            let unchanged = self
                .segments
                .get(&c.base)
                .is_some_and(|s| s.size() == c.original_size && c.base != active_base);
            if !unchanged {
                durable::remove_if_exists(&c.path).map_err(io("remove cleaned segment"))?;
                continue;
            }
            match c.outcome {
                Outcome::Unchanged => {}
                Outcome::Empty => {
                    if let Some(old) = self.segments.remove(&c.base) {
                        old.delete().map_err(io("delete cleaned-out segment"))?;
                    }
                    stats.segments_deleted += 1;
                }
                Outcome::Cleaned(mut seg) => {
                    durable::remove_if_exists(&dir.join(segment::file_name(c.base, INDEX_SUFFIX)))
                        .map_err(io("delete segment index"))?;
                    durable::remove_if_exists(&dir.join(segment::file_name(c.base, TIME_INDEX_SUFFIX)))
                        .map_err(io("delete segment index"))?;
                    fs::rename(&c.path, seg.log_path()).map_err(io("install cleaned segment"))?;
                    seg.persist_indexes(true).map_err(io("write segment indexes"))?;
                    self.segments.insert(c.base, seg);
                    stats.segments_rewritten += 1;
                }
            }
        }
        durable::sync_dir(&dir).map_err(io("fsync log directory"))?;
        let checkpoint = CleanerCheckpoint::new(cleaned.first_dirty_offset, cleaned.oldest_tombstone_ms);
        write_checkpoint(&dir, &checkpoint).map_err(io("write cleaner checkpoint"))?;
        self.first_dirty_offset = cleaned.first_dirty_offset;
        self.oldest_tombstone_ms = cleaned.oldest_tombstone_ms;
        self.write_checkpoint(false)?;
        tracing::debug!(dir = %dir.display(), ?stats, "cleaned log");
        Ok(stats)
    }
}

impl CleanPlan {
    /// Phase 2, touching no shared state: builds the offset map and writes the cleaned copies.
    /// On failure every cleaned file written so far is removed and the log is left as it was.
    pub fn execute(self) -> Result<CleanedSegments, LogError> {
        let mut written = Vec::new();
        let result = self.execute_into(&mut written);
        if result.is_err() {
            for path in &written {
                let _ = durable::remove_if_exists(path);
            }
        }
        result
    }

    fn execute_into(&self, written: &mut Vec<PathBuf>) -> Result<CleanedSegments, LogError> {
        let (map, end) = self.build_offset_map()?;
        let to_clean = self.segments.get(..end).unwrap_or_default();
        let mut stats = CleanStats::default();
        let mut oldest_tombstone_ms = None;
        let mut segments = Vec::new();
        for (i, planned) in to_clean.iter().enumerate() {
            let path = self.dir.join(format!("{:020}{CLEANED_SUFFIX}", planned.base));
            written.push(path.clone());
            let keep = Keep {
                // The log's first segment: deleting it would move the log start offset.
                segment: i == 0,
                last_batch: i + 1 == to_clean.len(),
            };
            let outcome =
                self.clean_segment(planned, &path, &map, &mut stats, &mut oldest_tombstone_ms, keep)?;
            segments.push(CleanedSegment {
                base: planned.base,
                original_size: planned.size,
                outcome,
                path,
            });
        }
        let first_dirty_offset = to_clean.last().map_or(i64::MIN, |s| s.next_offset);
        Ok(CleanedSegments {
            dir: self.dir.clone(),
            truncations: self.truncations,
            segments,
            first_dirty_offset,
            oldest_tombstone_ms,
            stats,
        })
    }

    /// Key -> offset of its latest record in the dirty section, and how many planned segments
    /// the map covers (all, unless it reached [`MAX_OFFSET_MAP_KEYS`]).
    fn build_offset_map(&self) -> Result<(HashMap<Vec<u8>, i64>, usize), LogError> {
        let mut map: HashMap<Vec<u8>, i64> = HashMap::new();
        let mut end = self.segments.len();
        for (i, planned) in self.segments.iter().enumerate().skip(self.first_dirty) {
            self.for_each_batch(planned, |view, _| {
                if view.is_control() {
                    return Ok(());
                }
                let body = codec::records_of(view)?;
                for record in records::raw_records(&body, view.records_count()) {
                    let record = record.map_err(BatchError::MalformedRecords)?;
                    if let Some(key) = record.key {
                        let offset = view.base_offset() + record.offset_delta;
                        map.insert(key.to_vec(), offset);
                    }
                }
                Ok(())
            })?;
            if map.len() >= MAX_OFFSET_MAP_KEYS {
                end = i + 1;
                break;
            }
        }
        Ok((map, end))
    }

    /// Calls `visit(batch, position)` for each batch of the planned segment, CRC-checked.
    fn for_each_batch(
        &self,
        planned: &PlannedSegment,
        mut visit: impl FnMut(&BatchView<'_>, u64) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        let mut failed = None;
        let end = scan::scan(
            &planned.file,
            0,
            planned.size,
            true,
            DEFAULT_CHUNK,
            |pos, view| match visit(&view, pos) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    failed = Some(e);
                    ControlFlow::Break(())
                }
            },
        )
        .map_err(LogError::io(&self.dir, "read segment for cleaning"))?;
        if let Some(e) = failed {
            return Err(e);
        }
        match end.error {
            Some(e) => Err(LogError::CorruptBatch(e)),
            None => Ok(()),
        }
    }

    /// Writes the cleaned copy of one segment to `path`, fsynced, and indexes it. If nothing
    /// changed, or nothing is left (and `keep.segment` is not set), the file is removed again.
    ///
    /// Empty batches (kept by an earlier pass) go, except that with `keep.last_batch` (the last
    /// segment of the pass) the segment's last batch stays, emptied if need be: the segments
    /// after it may hold nothing up to the high watermark (the active one is empty after a
    /// time-based roll), and without a batch at the end of the gap a consumer fetching inside
    /// it would get nothing, forever, instead of moving on to the log end.
    fn clean_segment(
        &self,
        planned: &PlannedSegment,
        path: &Path,
        map: &HashMap<Vec<u8>, i64>,
        stats: &mut CleanStats,
        oldest_tombstone_ms: &mut Option<i64>,
        keep: Keep,
    ) -> Result<Outcome, LogError> {
        let io = |op| LogError::io(&self.dir, op);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io("create cleaned segment"))?;
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        let mut size = 0u64;
        let mut changed = false;
        self.for_each_batch(planned, |view, pos| {
            let last = keep.last_batch && pos + view.size() as u64 == planned.size;
            let mut cleaned = self.clean_batch(view, map, stats, oldest_tombstone_ms)?;
            if view.records_count() == 0 && !view.is_control() {
                cleaned = Cleaned::Dropped;
            }
            if last && matches!(cleaned, Cleaned::Dropped) {
                cleaned = Cleaned::Rewritten(batch::emptied(view));
            }
            let bytes = match &cleaned {
                Cleaned::Unchanged => view.as_bytes(),
                Cleaned::Dropped => {
                    changed = true;
                    return Ok(());
                }
                Cleaned::Rewritten(bytes) => {
                    changed |= bytes.as_slice() != view.as_bytes();
                    bytes.as_slice()
                }
            };
            out.write_all(bytes).map_err(io("write cleaned segment"))?;
            size += bytes.len() as u64;
            Ok(())
        })?;
        out.flush().map_err(io("write cleaned segment"))?;
        drop(out);
        stats.bytes_before += planned.size;
        stats.bytes_after += size;
        if !changed || (size == 0 && !keep.segment) {
            durable::remove_if_exists(path).map_err(io("remove cleaned segment"))?;
            return Ok(if changed {
                Outcome::Empty
            } else {
                Outcome::Unchanged
            });
        }
        file.sync_data().map_err(io("fsync cleaned segment"))?;
        let mut segment = Segment::over_cleaned(&self.dir, planned.base, file, size);
        // Re-reads what was just written: CRCs, increasing offsets, and the indexes.
        if segment
            .recover(self.index_interval, true)
            .map_err(io("index cleaned segment"))?
        {
            return Err(LogError::CorruptBatch(BatchError::Inconsistent(
                "cleaned segment failed validation",
            )));
        }
        segment.set_next_offset(planned.next_offset);
        Ok(Outcome::Cleaned(segment))
    }

    /// Which records of `view` survive.
    fn clean_batch(
        &self,
        view: &BatchView<'_>,
        map: &HashMap<Vec<u8>, i64>,
        stats: &mut CleanStats,
        oldest_tombstone_ms: &mut Option<i64>,
    ) -> Result<Cleaned, LogError> {
        if view.is_control() {
            return Ok(Cleaned::Unchanged);
        }
        let body = codec::records_of(view)?;
        let mut kept: Vec<RawRecord<'_>> = Vec::new();
        let mut removed = 0u64;
        for record in records::raw_records(&body, view.records_count()) {
            let record = record.map_err(BatchError::MalformedRecords)?;
            match self.verdict(view, &record, map) {
                Verdict::Keep => {
                    if !record.has_value {
                        let ts = view.max_timestamp();
                        *oldest_tombstone_ms = Some(oldest_tombstone_ms.map_or(ts, |t| t.min(ts)));
                    }
                    kept.push(record);
                }
                Verdict::Remove => removed += 1,
                Verdict::RemoveTombstone => {
                    removed += 1;
                    stats.tombstones_removed += 1;
                }
            }
        }
        stats.records_removed += removed;
        if removed == 0 {
            return Ok(Cleaned::Unchanged);
        }
        if kept.is_empty() {
            return Ok(Cleaned::Dropped);
        }
        let max_timestamp = if view.is_log_append_time() {
            view.max_timestamp()
        } else {
            let max_delta = kept.iter().map(|r| r.timestamp_delta).max().unwrap_or(0);
            view.base_timestamp().saturating_add(max_delta)
        };
        let raw: Vec<u8> = kept.iter().flat_map(|r| r.bytes.iter().copied()).collect();
        let codec = view
            .compression()
            .ok_or(BatchError::Inconsistent("unknown compression codec"))?;
        let packed = codec::compress(codec, &raw)?;
        let count = i32::try_from(kept.len()).unwrap_or(i32::MAX);
        Ok(Cleaned::Rewritten(batch::with_records(
            view,
            count,
            max_timestamp,
            &packed,
        )))
    }

    fn verdict(&self, view: &BatchView<'_>, record: &RawRecord<'_>, map: &HashMap<Vec<u8>, i64>) -> Verdict {
        let Some(key) = record.key else {
            return Verdict::Remove;
        };
        let offset = view.base_offset() + record.offset_delta;
        if map.get(key).is_some_and(|&latest| offset < latest) {
            return Verdict::Remove;
        }
        if !record.has_value && view.max_timestamp() < self.tombstone_horizon {
            return Verdict::RemoveTombstone;
        }
        Verdict::Keep
    }
}

/// What a segment must keep even if cleaning would empty it.
#[derive(Debug, Clone, Copy)]
struct Keep {
    /// The segment itself (the log's first: its base is where the log starts).
    segment: bool,
    /// Its last batch, emptied if need be.
    last_batch: bool,
}

/// What cleaning did to one batch.
enum Cleaned {
    Unchanged,
    Dropped,
    Rewritten(Vec<u8>),
}

enum Verdict {
    Keep,
    Remove,
    RemoveTombstone,
}

/// Keyed batches for tests, through [`crate::keyed_batch`] (the encoder the broker uses).
#[cfg(test)]
pub(crate) mod testing {
    use crate::batch::Compression;
    use crate::keyed_batch::{self, KeyedRecord};

    /// One batch of `(key, value)` records (`None` value: a tombstone), all at `timestamp`.
    pub fn keyed_batch(
        records: &[(&[u8], Option<&[u8]>)],
        timestamp: i64,
        compression: Compression,
    ) -> Vec<u8> {
        let records: Vec<KeyedRecord<'_>> = records
            .iter()
            .map(|&(key, value)| KeyedRecord {
                key,
                value,
                timestamp,
            })
            .collect();
        keyed_batch::encode(&records, compression).unwrap()
    }
}

#[cfg(test)]
mod tests;
