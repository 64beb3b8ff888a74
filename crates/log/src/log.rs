//! [`Log`]: the public handle on one partition's log directory. It owns the ordered segments,
//! the log start offset, the recovery point and the producer state, and keeps their invariants:
//! - offsets are dense: each batch's base offset is the previous batch's last offset + 1 (in a
//!   compacted log, `allow_gaps`, they only increase: the cleaner removes records and batches);
//! - there is always at least one segment, the last one is the active one, and only it grows;
//! - a segment never holds a partial batch (a failed write is cut back and the log goes offline);
//! - `log_start_offset` lies between the first segment's base offset and the log end offset;
//! - `log_start_offset <= high_watermark <= log_end_offset`;
//! - the leader-epoch cache has no entry at or past the log end offset once an append or a
//!   truncation returns, and it is written to disk before the batches that extend it.
//!
//! Reads and lookups live in `lookup`; opening and recovery in `recovery`; compaction in
//! `cleaner`; truncation in `truncate`; follower appends in `follower`; the high watermark and
//! leader-epoch queries in `replica`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};

use crate::admission::{self, Incoming};
use crate::batch;
use crate::checkpoint::Checkpoint;
use crate::cleaner;
use crate::config::{FlushPolicy, LogConfig};
use crate::durable;
use crate::error::LogError;
use crate::leader_epoch::LeaderEpochCache;
use crate::producer_state::ProducerStateManager;
use crate::recovery;
use crate::retention::{self, SegmentSummary};
use crate::segment::Segment;

/// How many producer-state snapshots are kept (older ones only shorten no replay).
const SNAPSHOTS_TO_KEEP: usize = 3;

/// How one append is to be stamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOptions {
    /// The appending leader's epoch: written into each batch's `partitionLeaderEpoch`, and
    /// recorded in the leader-epoch cache as starting at this append when it is new. A
    /// negative epoch is stamped but never recorded.
    pub leader_epoch: i32,
    /// Wall clock of the append: segment age, and the timestamp for `LogAppendTime`.
    pub now_ms: i64,
    /// The topic uses `LogAppendTime`: stamp batches with `now_ms`.
    pub log_append_time: bool,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The stamped time for `LogAppendTime` topics, -1 otherwise.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    pub record_count: i64,
}

/// Result of an append that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    Appended(AppendInfo),
    /// An idempotent producer's retried batch already in the log: nothing was written and
    /// these are the offsets it was first written at.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
    },
}

/// Whole batches read from the log, with the offsets a fetch response reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole batches only, back to back.
    pub bytes: bytes::Bytes,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// A record's timestamp and offset, as ListOffsets answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: i64,
}

/// One partition's log on local disk.
#[derive(Debug)]
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// Keyed by base offset; never empty; the last one is active.
    pub(crate) segments: BTreeMap<i64, Segment>,
    pub(crate) log_start_offset: i64,
    /// Everything below this offset is fsynced.
    pub(crate) recovery_point: i64,
    pub(crate) producer_state: ProducerStateManager,
    offline: bool,
    /// Which leader epoch wrote which offsets (`leader-epoch-checkpoint`).
    pub(crate) leader_epochs: LeaderEpochCache,
    /// Replication high watermark; atomic so a leader can move it under a read lock.
    pub(crate) high_watermark: AtomicI64,
    /// Offsets may have gaps: the policy compacts, or the cleaner has run on this log (its
    /// checkpoint file exists), so recovery and truncation must not treat gaps as damage.
    pub(crate) allow_gaps: bool,
    /// The cleaner's first dirty offset: everything below was compacted by an earlier pass.
    pub(crate) first_dirty_offset: i64,
    /// The batch timestamp of the oldest tombstone the cleaner kept, if any.
    pub(crate) oldest_tombstone_ms: Option<i64>,
    /// Bumped by every truncation: a cleaning pass planned before one must not swap its result
    /// in after it.
    pub(crate) truncations: u64,
    /// Test hook: the next write stores only this many bytes and then fails.
    #[cfg(test)]
    pub(crate) fail_next_write_after: Option<usize>,
    /// Test hook: a truncation stops (as if killed) after this many of its durable steps.
    #[cfg(test)]
    pub(crate) crash_after_step: Option<usize>,
}

impl Log {
    /// Opens (creating if missing) the log in `dir`, running recovery as needed.
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig, now_ms: i64) -> Result<Log, LogError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(LogError::io(&dir, "create log directory"))?;
        let cleaner_checkpoint = cleaner::read_checkpoint(&dir);
        let allow_gaps = config.cleanup_policy.compacts() || cleaner_checkpoint.is_some();
        let recovered = recovery::recover(&dir, config.index_interval_bytes, now_ms, allow_gaps)
            .map_err(LogError::io(&dir, "recover log"))?;
        let mut log = Log {
            dir,
            config,
            segments: recovered.segments,
            log_start_offset: recovered.log_start_offset,
            recovery_point: 0,
            producer_state: recovered.producer_state,
            offline: false,
            leader_epochs: recovered.leader_epochs,
            high_watermark: AtomicI64::new(recovered.log_start_offset),
            allow_gaps,
            first_dirty_offset: cleaner_checkpoint.map_or(i64::MIN, |c| c.first_dirty_offset),
            oldest_tombstone_ms: cleaner_checkpoint.and_then(|c| c.oldest_tombstone_ms),
            truncations: 0,
            #[cfg(test)]
            fail_next_write_after: None,
            #[cfg(test)]
            crash_after_step: None,
        };
        // Recovery fsynced what it re-validated; a clean shutdown fsynced everything.
        log.recovery_point = log.log_end_offset();
        // Kafka's default for a log without a recorded high watermark is its start.
        let hw = recovered.high_watermark.unwrap_or(log.log_start_offset);
        log.reset_high_watermark(hw);
        // Clears the clean-shutdown flag: from now on a crash must trigger recovery.
        log.write_checkpoint(false)?;
        Ok(log)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// Bytes of all segment files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: LogConfig) {
        self.allow_gaps |= config.cleanup_policy.compacts();
        self.config = config;
    }

    pub fn producer_state(&self) -> &ProducerStateManager {
        &self.producer_state
    }

    pub(crate) fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    pub(crate) fn ensure_online(&self) -> Result<(), LogError> {
        if self.offline {
            return Err(LogError::Offline {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Takes the log offline if `result` is an I/O failure: after one, memory and disk may
    /// disagree, so the log refuses writes until reopened.
    pub(crate) fn guard<T>(&mut self, result: Result<T, LogError>) -> Result<T, LogError> {
        if let Err(LogError::Io { op, source, .. }) = &result {
            tracing::error!(dir = %self.dir.display(), op, error = %source, "log I/O failed; taking log offline");
            self.offline = true;
        }
        result
    }

    /// Appends one or more record batches given back to back, as they arrive in a Produce
    /// request. See the crate docs for validation, producer checks, rolling and indexing.
    pub fn append(&mut self, batches: &mut [u8], opts: &AppendOptions) -> Result<AppendOutcome, LogError> {
        self.ensure_online()?;
        let incoming = admission::validate(batches, self.config.cleanup_policy.compacts())?;
        let base_offset = self.log_end_offset();
        let verdict = admission::check_producers(&self.producer_state, &incoming, base_offset, opts)?;
        if let Some((first, last)) = verdict.duplicate {
            return Ok(AppendOutcome::Duplicate {
                base_offset: first,
                last_offset: last,
            });
        }
        let span: i64 = incoming.iter().map(|b| b.offset_span).sum();
        let last_offset = base_offset + span - 1;
        let result = self
            .maybe_assign_epoch(opts.leader_epoch, base_offset)
            .and_then(|()| self.write_batches(batches, &incoming, base_offset, last_offset, opts));
        self.guard(result)?;
        match verdict.updated_state {
            Some(state) => self.producer_state = state,
            None => {
                let mut offset = base_offset;
                for b in &incoming {
                    if let Some(meta) = admission::producer_meta(b, offset, opts) {
                        self.producer_state.update(meta);
                    }
                    offset += b.offset_span;
                }
            }
        }
        Ok(AppendOutcome::Appended(AppendInfo {
            base_offset,
            last_offset,
            log_append_time: if opts.log_append_time { opts.now_ms } else { -1 },
            log_start_offset: self.log_start_offset,
            record_count: incoming.iter().map(|b| b.records).sum(),
        }))
    }

    /// Rolls if needed, stamps offsets and epochs, writes in one call and indexes.
    fn write_batches(
        &mut self,
        batches: &mut [u8],
        incoming: &[Incoming],
        base_offset: i64,
        last_offset: i64,
        opts: &AppendOptions,
    ) -> Result<(), LogError> {
        let mut pos = 0usize;
        let mut offset = base_offset;
        for b in incoming {
            if let Some(bytes) = batches.get_mut(pos..pos + b.size) {
                batch::set_base_offset(bytes, offset);
                batch::set_partition_leader_epoch(bytes, opts.leader_epoch);
                if opts.log_append_time {
                    batch::set_log_append_time(bytes, opts.now_ms);
                }
            }
            pos += b.size;
            offset += b.offset_span;
        }
        self.write_run(batches, last_offset, opts.now_ms)
    }

    /// Appends `bytes` (whole batches with final offsets, ending at `last_offset`) to the
    /// active segment in one write, rolling first if they do not fit or the segment is too old.
    pub(crate) fn write_run(&mut self, bytes: &[u8], last_offset: i64, now_ms: i64) -> Result<(), LogError> {
        let active = self.active();
        let too_big = !active.fits(bytes.len() as u64, last_offset, self.config.segment_bytes);
        if !active.is_empty() && (too_big || self.segment_expired(now_ms)) {
            self.roll()?;
        }
        let previous_size = self.active().size();
        if let Err(source) = self.write_and_sync(bytes) {
            // Never leave a partial batch behind; if even this fails, recovery will cut it.
            if let Err(e) = self.active_mut().truncate_bytes(previous_size) {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot cut back failed append");
            }
            return Err(LogError::Io {
                dir: self.dir.clone(),
                op: "append to segment",
                source,
            });
        }
        let interval = self.config.index_interval_bytes;
        self.active_mut().track_appended(bytes, interval, now_ms);
        Ok(())
    }

    fn write_and_sync(&self, bytes: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if let Some(n) = self.fail_next_write_after {
            self.active().write(bytes.get(..n).unwrap_or(bytes))?;
            return Err(io::Error::other("injected write failure"));
        }
        self.active().write(bytes)?;
        if self.config.flush == FlushPolicy::EveryBatch {
            self.active().sync_data()?;
        }
        Ok(())
    }

    /// Whether the active segment's first append is older than `segment.ms`.
    pub(crate) fn segment_expired(&self, now_ms: i64) -> bool {
        self.active()
            .first_append_ms()
            .is_some_and(|first| now_ms.saturating_sub(first) > self.config.segment_ms)
    }

    /// Starts a new active segment at the log end offset, persisting the old one's indexes
    /// and a producer-state snapshot.
    fn roll(&mut self) -> Result<(), LogError> {
        let dir = self.dir.clone();
        let log_end = self.log_end_offset();
        self.active_mut()
            .persist_indexes(false)
            .map_err(LogError::io(&dir, "write segment indexes"))?;
        let segment = Segment::create(&dir, log_end).map_err(LogError::io(&dir, "create segment"))?;
        self.segments.insert(log_end, segment);
        self.producer_state
            .write_snapshot(&dir, log_end)
            .map_err(LogError::io(&dir, "write producer snapshot"))?;
        ProducerStateManager::retain_latest_snapshots(&dir, SNAPSHOTS_TO_KEEP)
            .map_err(LogError::io(&dir, "delete old producer snapshots"))?;
        tracing::debug!(dir = %dir.display(), base_offset = log_end, "rolled new segment");
        Ok(())
    }

    /// Deletes whole non-active segments past `retention.ms` (by largest timestamp), beyond
    /// `retention.bytes`, or below the log start offset, and first rolls an active segment
    /// older than `segment.ms`. Returns how many segments were deleted. A `compact`-only log
    /// is only rolled (the cleaner needs non-active segments); nothing is deleted.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        self.ensure_online()?;
        let result = self.enforce_retention_inner(now_ms);
        self.guard(result)
    }

    fn enforce_retention_inner(&mut self, now_ms: i64) -> Result<usize, LogError> {
        if !self.active().is_empty() && self.segment_expired(now_ms) {
            self.roll()?;
        }
        if !self.config.cleanup_policy.deletes() {
            return Ok(0);
        }
        let summaries: Vec<SegmentSummary> = self
            .segments
            .values()
            .map(|s| SegmentSummary {
                base_offset: s.base_offset(),
                size: s.size(),
                largest_timestamp: s.largest_timestamp_for_retention(),
            })
            .collect();
        let count = retention::deletable_prefix(&summaries, self.log_start_offset, now_ms, &self.config);
        if count > 0 {
            self.delete_oldest(count)?;
            self.write_checkpoint(false)?;
        }
        Ok(count)
    }

    /// Deletes the `count` oldest segments (never the active one) and moves the log start
    /// offset up to the first remaining segment. The caller writes the checkpoint.
    fn delete_oldest(&mut self, count: usize) -> Result<(), LogError> {
        let count = count.min(self.segments.len().saturating_sub(1));
        if count == 0 {
            return Ok(());
        }
        for _ in 0..count {
            if let Some((base, seg)) = self.segments.pop_first() {
                tracing::info!(dir = %self.dir.display(), base_offset = base, "deleting segment");
                seg.delete().map_err(LogError::io(&self.dir, "delete segment"))?;
            }
        }
        let first = self
            .segments
            .keys()
            .next()
            .copied()
            .unwrap_or(self.log_start_offset);
        self.log_start_offset = self.log_start_offset.max(first);
        self.log_start_moved()
    }

    /// After the log start offset moved up: the high watermark follows, and the leader-epoch
    /// cache forgets what lies below it.
    fn log_start_moved(&mut self) -> Result<(), LogError> {
        self.high_watermark
            .fetch_max(self.log_start_offset, Ordering::AcqRel);
        if self.leader_epochs.truncate_from_start(self.log_start_offset) {
            self.write_leader_epochs()?;
        }
        Ok(())
    }

    /// Advances the log start offset (DeleteRecords); deletes segments wholly below it.
    pub fn advance_log_start_offset(&mut self, offset: i64) -> Result<(), LogError> {
        self.ensure_online()?;
        let log_end = self.log_end_offset();
        if offset > log_end {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: log_end,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(());
        }
        self.log_start_offset = offset;
        if let Err(e) = self.log_start_moved() {
            return self.guard(Err(e));
        }
        let below = self
            .segments
            .iter()
            .zip(self.segments.keys().skip(1))
            .filter(|(_, &next)| next <= offset)
            .count();
        let result = self
            .delete_oldest(below)
            .and_then(|()| self.write_checkpoint(false));
        self.guard(result)
    }

    /// Fsyncs data and indexes up to the log end offset, then records it as the recovery point.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.ensure_online()?;
        let result = self.flush_inner(false);
        self.guard(result)
    }

    fn flush_inner(&mut self, include_active_indexes: bool) -> Result<(), LogError> {
        let dir = self.dir.clone();
        let recovery_point = self.recovery_point;
        let active_base = self.active().base_offset();
        for seg in self
            .segments
            .values_mut()
            .filter(|s| s.next_offset() > recovery_point || s.base_offset() == active_base)
        {
            seg.sync_data().map_err(LogError::io(&dir, "fsync segment"))?;
            // The active segment's indexes are rebuilt by recovery after a crash anyway.
            if include_active_indexes || seg.base_offset() != active_base {
                seg.persist_indexes(true)
                    .map_err(LogError::io(&dir, "write segment indexes"))?;
            }
        }
        durable::sync_dir(&dir).map_err(LogError::io(&dir, "fsync log directory"))?;
        self.recovery_point = self.log_end_offset();
        self.write_checkpoint(false)
    }

    /// Clean shutdown: flush, persist indexes and a producer-state snapshot, then mark the
    /// shutdown clean so the next open skips re-validation.
    pub fn close(&mut self) -> Result<(), LogError> {
        self.ensure_online()?;
        let dir = self.dir.clone();
        self.flush_inner(true)?;
        let log_end = self.log_end_offset();
        self.producer_state
            .write_snapshot(&dir, log_end)
            .map_err(LogError::io(&dir, "write producer snapshot"))?;
        ProducerStateManager::retain_latest_snapshots(&dir, SNAPSHOTS_TO_KEEP)
            .map_err(LogError::io(&dir, "delete old producer snapshots"))?;
        self.write_checkpoint(true)
    }

    /// Deletes the whole log directory (DeleteTopics).
    pub fn delete(self) -> Result<(), LogError> {
        fs::remove_dir_all(&self.dir).map_err(LogError::io(&self.dir, "delete log directory"))
    }

    pub(crate) fn write_checkpoint(&self, clean_shutdown: bool) -> Result<(), LogError> {
        let active = self.active();
        Checkpoint::new(
            self.log_start_offset,
            self.recovery_point,
            clean_shutdown,
            active.base_offset(),
            active.first_append_ms(),
        )
        .with_high_watermark(self.high_watermark())
        .write(&self.dir)
        .map_err(LogError::io(&self.dir, "write recovery checkpoint"))
    }
}

#[cfg(test)]
mod tests;
