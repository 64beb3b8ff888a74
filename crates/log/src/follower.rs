//! Appending a leader's batches on a follower ([`Log::append_as_follower`]): the bytes are
//! written exactly as fetched, offsets and `partitionLeaderEpoch` included (nothing is patched
//! and nothing re-encoded), after the same CRC and header validation as a produce. Producer
//! state learns every idempotent batch, so a follower that becomes leader deduplicates the
//! retries of producers that failed over to it; the leader-epoch cache learns every new epoch
//! (written before the batches, as on the leader).

use crate::batch::{BatchError, BatchIter};
use crate::error::{LogError, ReplicaError};
use crate::log::{AppendInfo, Log};
use crate::recovery::batch_meta;
use crate::segment::{MAX_RELATIVE_OFFSET, MAX_SEGMENT_BYTES};

/// What the follower append needs of one fetched batch.
#[derive(Debug, Clone, Copy)]
struct Fetched {
    size: usize,
    base_offset: i64,
    last_offset: i64,
    epoch: i32,
    records: i64,
}

impl Log {
    /// Appends whole batches fetched from the leader, verbatim. The first batch must start at
    /// the log end offset (in a compacted log: at or after it), else
    /// [`ReplicaError::UnexpectedAppendOffset`] and nothing is written; later batches must
    /// follow densely (compacted: increasing). A partial batch at the end of `batches` (a fetch
    /// cut by its byte limit) is ignored; an invalid one fails the whole call with
    /// [`LogError::CorruptBatch`] before anything is written. `now_ms` drives `segment.ms`.
    ///
    /// Returns the offsets written (`log_append_time` is -1: the leader already stamped it).
    pub fn append_as_follower(&mut self, batches: &[u8], now_ms: i64) -> Result<AppendInfo, ReplicaError> {
        self.ensure_online()?;
        let fetched = self.validate_fetched(batches)?;
        let result = self.write_fetched(batches, &fetched, now_ms);
        self.guard(result)?;
        let first = fetched.first().map_or(self.log_end_offset(), |b| b.base_offset);
        let last = fetched.last().map_or(first - 1, |b| b.last_offset);
        Ok(AppendInfo {
            base_offset: first,
            last_offset: last,
            log_append_time: -1,
            log_start_offset: self.log_start_offset,
            record_count: fetched.iter().map(|b| b.records).sum(),
        })
    }

    fn validate_fetched(&self, batches: &[u8]) -> Result<Vec<Fetched>, ReplicaError> {
        let mut fetched: Vec<Fetched> = Vec::new();
        for view in BatchIter::validated(batches) {
            let view = match view {
                Ok(view) => view,
                // A batch cut by the end of the buffer is fetched again from its start next
                // time; if it is cut there too (or its length lies), that fetch fails here.
                Err(BatchError::Truncated { .. }) if !fetched.is_empty() => break,
                Err(e) => return Err(LogError::CorruptBatch(e).into()),
            };
            let next = match fetched.last() {
                Some(prev) => prev.last_offset + 1,
                None => self.log_end_offset(),
            };
            let in_order = if self.allow_gaps {
                view.base_offset() >= next
            } else {
                view.base_offset() == next
            };
            if !in_order {
                return Err(match fetched.is_empty() {
                    true => ReplicaError::UnexpectedAppendOffset {
                        first_offset: view.base_offset(),
                        log_end_offset: next,
                    },
                    false => LogError::CorruptBatch(BatchError::Inconsistent(
                        "replicated batches overlap or leave a gap",
                    ))
                    .into(),
                });
            }
            fetched.push(Fetched {
                size: view.size(),
                base_offset: view.base_offset(),
                last_offset: view.last_offset(),
                epoch: view.partition_leader_epoch(),
                records: i64::from(view.records_count()),
            });
        }
        if fetched.is_empty() {
            return Err(LogError::CorruptBatch(BatchError::Truncated {
                needed: crate::batch::HEADER_SIZE,
                available: batches.len(),
            })
            .into());
        }
        Ok(fetched)
    }

    /// Writes the validated batches: epochs first, then runs of batches that fit the active
    /// segment (rolling between runs), each followed by its producer-state updates.
    fn write_fetched(&mut self, batches: &[u8], fetched: &[Fetched], now_ms: i64) -> Result<(), LogError> {
        let mut epochs_changed = false;
        for b in fetched {
            if self.leader_epochs.would_change(b.epoch, b.base_offset) {
                self.leader_epochs.assign(b.epoch, b.base_offset);
                epochs_changed = true;
            }
        }
        if epochs_changed {
            self.write_leader_epochs()?;
        }
        let limit = self.config.segment_bytes.min(MAX_SEGMENT_BYTES);
        let mut start = 0usize;
        let mut pos = 0usize;
        while let Some(first) = fetched.get(start) {
            // The first batch of a run decides whether `write_run` rolls (by its rule); the run
            // then takes the batches that still fit that segment.
            let active = self.active();
            let rolls = !active.is_empty()
                && (!active.fits(first.size as u64, first.last_offset, self.config.segment_bytes)
                    || self.segment_expired(now_ms));
            let (base, used) = if rolls {
                (self.log_end_offset(), 0)
            } else {
                (active.base_offset(), active.size())
            };
            let mut end = start + 1;
            let mut run_bytes = first.size as u64;
            while let Some(next) = fetched.get(end) {
                let bytes = run_bytes + next.size as u64;
                if used + bytes > limit || next.last_offset - base > MAX_RELATIVE_OFFSET {
                    break;
                }
                run_bytes = bytes;
                end += 1;
            }
            let run_len = usize::try_from(run_bytes).unwrap_or(usize::MAX);
            let Some(run) = batches.get(pos..pos.saturating_add(run_len)) else {
                break;
            };
            let last_offset = fetched.get(end - 1).map_or(first.last_offset, |b| b.last_offset);
            self.write_run(run, last_offset, now_ms)?;
            for view in BatchIter::new(run).flatten() {
                if view.has_producer_id() {
                    self.producer_state.update(batch_meta(&view));
                }
            }
            pos += run_len;
            start = end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
