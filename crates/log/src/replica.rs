//! What replication reads and moves on a [`Log`] besides its bytes: the high watermark (the
//! offset below which every in-sync replica has the records; fetches by consumers stop there)
//! and the leader-epoch cache (which leader epoch wrote which offsets; OffsetForLeaderEpoch).
//!
//! The high watermark lives in memory and in the recovery checkpoint (Kafka keeps it in
//! `replication-offset-checkpoint`, written every few seconds): it is written whenever the
//! checkpoint is (flush, close, retention, truncation) and on demand with
//! [`Log::checkpoint_high_watermark`]. After a crash it can only be behind, which is safe:
//! a leader recomputes it from its followers, a follower learns it from its leader.

use std::sync::atomic::Ordering;

use crate::error::LogError;
use crate::leader_epoch::{EpochEndOffset, LeaderEpochCache};
use crate::log::Log;

impl Log {
    /// The replication high watermark: `log_start_offset <= hw <= log_end_offset`.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// Moves the high watermark up to `offset`, capped at the log end offset; a lower value
    /// changes nothing (only truncation moves it back). Returns the high watermark after the
    /// call. Takes `&self` so a leader can advance it under a read lock while serving
    /// follower fetches (the log end offset cannot change under a read lock).
    pub fn set_high_watermark(&self, offset: i64) -> i64 {
        let target = offset.min(self.log_end_offset());
        let previous = self.high_watermark.fetch_max(target, Ordering::AcqRel);
        previous.max(target)
    }

    /// Sets the high watermark to `offset` clamped to `[log_start_offset, log_end_offset]`,
    /// down as well as up (opening and truncation).
    pub(crate) fn reset_high_watermark(&self, offset: i64) {
        let clamped = offset.min(self.log_end_offset()).max(self.log_start_offset);
        self.high_watermark.store(clamped, Ordering::Release);
    }

    /// Writes the recovery checkpoint now, so the current high watermark survives a restart.
    pub fn checkpoint_high_watermark(&mut self) -> Result<(), LogError> {
        self.ensure_online()?;
        let result = self.write_checkpoint(false);
        self.guard(result)
    }

    /// Which leader epoch wrote which offsets.
    pub fn leader_epoch_cache(&self) -> &LeaderEpochCache {
        &self.leader_epochs
    }

    /// The newest leader epoch this log knows.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.leader_epochs.latest_epoch()
    }

    /// OffsetForLeaderEpoch: the largest epoch `<= epoch` this log knows and the offset it
    /// ended at (see [`LeaderEpochCache::end_offset_for`]).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> EpochEndOffset {
        self.leader_epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// A replica becomes leader with `epoch`: the epoch starts at the log end offset, even
    /// before anything is appended in it (Kafka does this in `makeLeader`, so followers asking
    /// for the previous epoch get the offset where leadership changed).
    pub fn assign_leader_epoch(&mut self, epoch: i32) -> Result<(), LogError> {
        self.ensure_online()?;
        let log_end = self.log_end_offset();
        let result = self.maybe_assign_epoch(epoch, log_end);
        self.guard(result)
    }

    /// Records that `epoch` starts at `start_offset` if that is news, writing the cache file
    /// before the caller writes the batches (so the file is never behind the log).
    pub(crate) fn maybe_assign_epoch(&mut self, epoch: i32, start_offset: i64) -> Result<(), LogError> {
        if self.leader_epochs.would_change(epoch, start_offset) {
            self.leader_epochs.assign(epoch, start_offset);
            self.write_leader_epochs()?;
        }
        Ok(())
    }

    pub(crate) fn write_leader_epochs(&self) -> Result<(), LogError> {
        self.leader_epochs
            .write(&self.dir)
            .map_err(LogError::io(&self.dir, "write leader-epoch-checkpoint"))
    }
}
