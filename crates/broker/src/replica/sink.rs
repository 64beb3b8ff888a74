//! The follower's log as replication writes it: [`ReplicaSink`] (what the fetcher needs of a
//! log, implemented over `RwLock<sapper_log::Log>` here and over a partition by the broker),
//! [`TopicPartition`], and the two follower-side log operations that need more than one call
//! (an append that restarts an empty log below its start, a truncation rounded down to a batch
//! boundary).

use std::fmt;
use std::sync::Arc;

use parking_lot::RwLock;
use sapper_log::batch::BatchView;
use sapper_log::{AppendInfo, EpochEndOffset, ReplicaError};

/// The follower's log as the fetcher uses it. The broker implements it over a partition's
/// `RwLock<Log>` (waking what waits on the partition); an implementation for a bare
/// `RwLock<sapper_log::Log>` is below.
pub trait ReplicaSink: Send + Sync {
    /// Appends the leader's batches verbatim ([`sapper_log::Log::append_as_follower`]).
    fn append_as_follower(&self, batches: &[u8], now_ms: i64) -> Result<AppendInfo, ReplicaError>;
    /// Cuts the log at `offset` (a batch boundary).
    fn truncate_to(&self, offset: i64) -> Result<(), ReplicaError>;
    /// Empties the log and restarts it at `offset`.
    fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), ReplicaError>;
    fn log_start_offset(&self) -> i64;
    fn log_end_offset(&self) -> i64;
    fn high_watermark(&self) -> i64;
    /// Moves the high watermark up to `offset` (capped at the log end offset).
    fn set_high_watermark(&self, offset: i64) -> i64;
    fn latest_epoch(&self) -> Option<i32>;
    fn end_offset_for_epoch(&self, epoch: i32) -> EpochEndOffset;
}

impl ReplicaSink for RwLock<sapper_log::Log> {
    fn append_as_follower(&self, batches: &[u8], now_ms: i64) -> Result<AppendInfo, ReplicaError> {
        self.write().append_as_follower(batches, now_ms)
    }
    fn truncate_to(&self, offset: i64) -> Result<(), ReplicaError> {
        self.write().truncate_to(offset)
    }
    fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), ReplicaError> {
        self.write().truncate_fully_and_start_at(offset)
    }
    fn log_start_offset(&self) -> i64 {
        self.read().log_start_offset()
    }
    fn log_end_offset(&self) -> i64 {
        self.read().log_end_offset()
    }
    fn high_watermark(&self) -> i64 {
        self.read().high_watermark()
    }
    fn set_high_watermark(&self, offset: i64) -> i64 {
        self.read().set_high_watermark(offset)
    }
    fn latest_epoch(&self) -> Option<i32> {
        self.read().latest_epoch()
    }
    fn end_offset_for_epoch(&self, epoch: i32) -> EpochEndOffset {
        self.read().end_offset_for_epoch(epoch)
    }
}

/// A partition by topic name and index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: i32) -> Self {
        Self {
            topic: Arc::from(topic),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Appends fetched batches. A log that is still empty at its start offset takes a first batch
/// that begins below it by restarting at the batch's base offset (Kafka does the same: the
/// leader's log start, moved by DeleteRecords, can fall inside a batch).
pub(crate) fn append(
    sink: &dyn ReplicaSink,
    tp: &TopicPartition,
    records: &[u8],
    now: i64,
) -> Result<AppendInfo, ReplicaError> {
    match sink.append_as_follower(records, now) {
        Err(ReplicaError::UnexpectedAppendOffset {
            first_offset,
            log_end_offset,
        }) if log_end_offset == sink.log_start_offset()
            && first_offset < log_end_offset
            && BatchView::parse(records).is_ok_and(|b| b.last_offset() >= log_end_offset) =>
        {
            tracing::info!(partition = %tp, first_offset, log_end_offset,
                "first fetched batch starts below the log start; restarting the log at it");
            sink.truncate_fully_and_start_at(first_offset)?;
            sink.append_as_follower(records, now)
        }
        other => other,
    }
}

/// Truncates at `offset`, or at the start of the batch holding it (a leader's batch
/// boundaries can differ from ours after an unclean history; cutting earlier only refetches).
pub(crate) fn truncate(sink: &dyn ReplicaSink, offset: i64) -> Result<(), ReplicaError> {
    match sink.truncate_to(offset) {
        Err(ReplicaError::NotBatchBoundary {
            batch_base_offset, ..
        }) => sink.truncate_to(batch_base_offset),
        other => other,
    }
}
