//! Log truncation for replication: a follower cuts the records it has and the leader does not
//! (after OffsetForLeaderEpoch), or throws its log away when the leader's log starts past it.
//!
//! ## Crash story
//! Every step leaves a directory that recovery turns into a valid log, at worst one still
//! holding (part of) the tail that was to be cut, which the follower cuts again after it
//! restarts (it asks OffsetForLeaderEpoch again before fetching):
//! 1. the recovery checkpoint is rewritten first with `recovery_point <= offset`, so whatever
//!    survives at or past `offset` is re-validated on the next open, indexes included;
//! 2. the leader-epoch cache is cut and written (recovery rebuilds it if the log turns out to
//!    be longer than the cache says);
//! 3. producer-state snapshots above `offset` are deleted (older ones plus a replay give the
//!    same state);
//! 4. whole segments past `offset` are deleted newest first, so a crash never leaves a hole
//!    (a compacted log would take a hole for a legal gap and resurrect the records after it);
//! 5. the segment holding `offset` is cut at the batch boundary (one `set_len`);
//! 6. producer state is rebuilt and the checkpoint written again.

use crate::error::{LogError, ReplicaError};
use crate::log::Log;
use crate::producer_state::ProducerStateManager;
use crate::recovery;
use crate::segment::Segment;

impl Log {
    /// Removes every batch at and after `offset`, which must be a batch boundary (the base
    /// offset of a batch, or, in a compacted log, any offset not inside a batch); inside a
    /// batch it is [`ReplicaError::NotBatchBoundary`] and nothing changes. At or past the log
    /// end offset nothing happens; below the log start offset the whole log goes
    /// ([`Log::truncate_fully_and_start_at`], as Kafka does). Indexes, producer state, the
    /// leader-epoch cache, the recovery point and the high watermark follow.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), ReplicaError> {
        self.ensure_online()?;
        if offset >= self.log_end_offset() {
            // No record to cut, but an epoch this replica started at its log end without
            // writing in it (it led briefly) is not the leader's: forget it, or the follower
            // keeps fetching with that `last_fetched_epoch` and is told to truncate forever.
            if self.leader_epochs.truncate_from_end(offset) {
                let result = self.write_leader_epochs();
                self.guard(result)?;
            }
            return Ok(());
        }
        if offset < self.log_start_offset {
            return self.truncate_fully_and_start_at(offset);
        }
        self.check_boundary(offset)?;
        let result = self.truncate_inner(offset);
        Ok(self.guard(result)?)
    }

    /// Deletes the whole log and starts it empty at `offset`: log start, log end, recovery
    /// point and high watermark all become `offset`; producer state and leader epochs are
    /// forgotten (Kafka's `truncateFullyAndStartAt`, for a follower whose log is entirely
    /// below or diverged from the leader's log start).
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), ReplicaError> {
        self.ensure_online()?;
        if offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset(),
            }
            .into());
        }
        let result = self.truncate_fully_inner(offset);
        Ok(self.guard(result)?)
    }

    /// Fails unless `offset` starts a batch or lies outside every batch.
    fn check_boundary(&self, offset: i64) -> Result<(), ReplicaError> {
        let Some(seg) = self.segments.range(..=offset).next_back().map(|(_, s)| s) else {
            return Ok(());
        };
        let found = seg
            .locate(offset, self.config.index_interval_bytes)
            .map_err(LogError::io(&self.dir, "read segment"))?;
        match found {
            Some(b) if b.base_offset < offset => Err(ReplicaError::NotBatchBoundary {
                offset,
                batch_base_offset: b.base_offset,
                batch_last_offset: b.last_offset,
            }),
            _ => Ok(()),
        }
    }

    /// Counts a durable step of a truncation; in tests, stops there if asked to (a simulated
    /// kill: the caller then drops the log without closing it).
    fn step(&self, done: &mut usize) -> Result<(), LogError> {
        *done += 1;
        #[cfg(test)]
        if self.crash_after_step == Some(*done) {
            return Err(LogError::Io {
                dir: self.dir.clone(),
                op: "injected crash",
                source: std::io::Error::other("injected crash"),
            });
        }
        Ok(())
    }

    fn truncate_inner(&mut self, offset: i64) -> Result<(), LogError> {
        let dir = self.dir.clone();
        let io = |op| LogError::io(&dir, op);
        let mut done = 0;
        self.truncations += 1;
        self.recovery_point = self.recovery_point.min(offset);
        self.reset_high_watermark(self.high_watermark().min(offset));
        self.write_checkpoint(false)?;
        self.step(&mut done)?;
        if self.leader_epochs.truncate_from_end(offset) {
            self.write_leader_epochs()?;
        }
        self.step(&mut done)?;
        ProducerStateManager::delete_snapshots_after(&dir, offset)
            .map_err(io("delete producer snapshots"))?;
        self.step(&mut done)?;
        // Segments starting at or past `offset` go, newest first; the first segment always
        // stays (cut to empty if need be) so the log keeps its start.
        let first_base = self.segments.keys().next().copied();
        let doomed: Vec<i64> = self
            .segments
            .range(offset..)
            .map(|(&b, _)| b)
            .filter(|&b| Some(b) != first_base)
            .rev()
            .collect();
        for base in doomed {
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete().map_err(io("delete segment"))?;
            }
            self.step(&mut done)?;
        }
        let interval = self.config.index_interval_bytes;
        if let Some(active) = self.segments.values_mut().next_back() {
            active
                .truncate_to(offset, interval)
                .map_err(io("truncate segment"))?;
            if self.allow_gaps {
                // The log ends at `offset` even when the records before it were compacted away.
                active.set_next_offset(offset);
            }
        }
        self.step(&mut done)?;
        let log_end = self.log_end_offset();
        self.producer_state = recovery::rebuild_producer_state(&dir, &self.segments, log_end)
            .map_err(io("rebuild producer state"))?;
        self.write_checkpoint(false)
    }

    fn truncate_fully_inner(&mut self, offset: i64) -> Result<(), LogError> {
        let dir = self.dir.clone();
        let io = |op| LogError::io(&dir, op);
        let mut done = 0;
        self.truncations += 1;
        if self.leader_epochs.clear() {
            self.write_leader_epochs()?;
        }
        self.step(&mut done)?;
        ProducerStateManager::delete_snapshots_after(&dir, i64::MIN)
            .map_err(io("delete producer snapshots"))?;
        self.step(&mut done)?;
        // Oldest first: a crash leaves a suffix of the old log, which is a valid log.
        // The map keeps its (unlinked) segments until the new one exists: a log never lacks an
        // active segment, even when a deletion fails half-way.
        for (&base, seg) in &self.segments {
            tracing::info!(dir = %dir.display(), base_offset = base, "deleting segment (truncate fully)");
            seg.delete_files().map_err(io("delete segment"))?;
            self.step(&mut done)?;
        }
        let segment = Segment::create(&dir, offset).map_err(io("create segment"))?;
        self.segments.clear();
        self.segments.insert(offset, segment);
        crate::durable::sync_dir(&dir).map_err(io("fsync log directory"))?;
        self.step(&mut done)?;
        self.log_start_offset = offset;
        self.recovery_point = offset;
        self.reset_high_watermark(offset);
        self.producer_state = ProducerStateManager::new();
        self.write_checkpoint(false)?;
        // A cleaner checkpoint describes records that are gone.
        crate::durable::remove_if_exists(&dir.join(crate::cleaner::CHECKPOINT_FILE))
            .map_err(io("delete cleaner checkpoint"))?;
        self.first_dirty_offset = i64::MIN;
        self.oldest_tombstone_ms = None;
        self.allow_gaps = self.config.cleanup_policy.compacts();
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
