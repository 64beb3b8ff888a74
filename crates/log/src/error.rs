//! [`LogError`]: everything a log operation can fail with, one variant per answer the broker
//! must give (each variant's doc names the Kafka error code).

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::batch::BatchError;
use crate::producer_state::SequenceError;

/// Why a log operation failed, typed by what the broker must answer.
#[derive(Debug, Error)]
pub enum LogError {
    /// The disk failed us (`KAFKA_STORAGE_ERROR`). A failed write also takes the log offline.
    #[error("I/O error while trying to {op} in {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A produced batch failed validation (`CORRUPT_MESSAGE`).
    #[error("corrupt record batch: {0}")]
    CorruptBatch(#[from] BatchError),
    /// An idempotent producer's sequence or epoch was wrong (`OUT_OF_ORDER_SEQUENCE_NUMBER` or
    /// `INVALID_PRODUCER_EPOCH`).
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    /// The offset lies outside `[log_start_offset, log_end_offset]` (`OFFSET_OUT_OF_RANGE`).
    #[error("offset {requested} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        requested: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// An earlier I/O error took this log offline; it refuses writes (`KAFKA_STORAGE_ERROR`).
    #[error("log in {} is offline after an earlier I/O error", dir.display())]
    Offline { dir: PathBuf },
}

impl LogError {
    /// Builds the `map_err` closure for an I/O failure of `op` in `dir`.
    pub(crate) fn io<'a>(dir: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> LogError + 'a {
        move |source| LogError::Io {
            dir: dir.to_path_buf(),
            op,
            source,
        }
    }
}

/// Why a replication operation on the log (follower append, truncation) failed: the log's own
/// failures, plus the outcomes a replica fetcher acts on. Separate from [`LogError`] so that
/// code mapping every `LogError` to a Kafka error code keeps compiling.
#[derive(Debug, Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Log(#[from] LogError),
    /// Truncation must cut between batches, but `offset` lies inside the batch
    /// `[batch_base_offset, batch_last_offset]`: truncate to `batch_base_offset` instead (or
    /// ask the leader again; leaders and followers share batch boundaries).
    #[error("offset {offset} is inside the batch [{batch_base_offset}, {batch_last_offset}], not at a batch boundary")]
    NotBatchBoundary {
        offset: i64,
        batch_base_offset: i64,
        batch_last_offset: i64,
    },
    /// The leader's batches do not start at this log's end offset (Kafka's
    /// `UnexpectedAppendOffsetException`): nothing was written. The fetcher refetches from
    /// `log_end_offset`, or truncates / resets the log if the leader is past it.
    #[error("replicated batches start at offset {first_offset}, but the log ends at {log_end_offset}")]
    UnexpectedAppendOffset { first_offset: i64, log_end_offset: i64 },
}
