//! # sapper-log: the partition log
//!
//! Owns everything one partition keeps on local disk: segmented log files, the sparse offset
//! and time indexes beside them, crash recovery, retention, flush policy, recovery checkpoints
//! and the idempotent-producer state that is snapshotted with the log.
//!
//! It knows nothing of networking, topics or Kafka requests: the broker hands it record batches
//! (validated here again, by CRC) and asks for byte ranges of whole batches back.
//!
//! ## Layout
//! - [`batch`]: read-only view of a record batch header and the allowed in-place patches.
//! - [`config`]: [`LogConfig`] and [`FlushPolicy`].
//! - [`error`]: [`LogError`], typed by what the caller must answer.
//! - [`producer_state`]: per-producer sequence tracking and its snapshots.
//! - [`leader_epoch`]: the leader-epoch cache (`leader-epoch-checkpoint`) and OffsetForLeaderEpoch.
//! - `log`: [`Log`], the public handle (append, retention, truncation, flush, close), with
//!   `admission` validating a produce request and checking producer sequences first;
//!   `lookup`: its read side (fetch by offset, ListOffsets by timestamp).
//! - `segment`: one `.log` file with its in-memory `offset_index` and `time_index`;
//!   `scan` walks a segment's batches with positional reads; `records` walks the records of an
//!   uncompressed batch for their timestamps.
//! - Replication: `follower` appends a leader's batches verbatim, `truncate` cuts a diverged
//!   tail (or the whole log), `replica` holds the high watermark and the leader-epoch queries;
//!   their failures are [`ReplicaError`].
//! - `recovery`: opening a directory (what to trust, what to re-validate), with the
//!   `checkpoint` file and `durable` (atomic file replacement) helpers.
//! - `retention`: the pure decision of which old segments to delete.
//! - [`cleaner`]: log compaction (`cleanup.policy=compact`) in three phases that never hold
//!   the log's lock while reading or writing segments; `codec` opens compressed batches for it
//!   and for the key check of compacted topics.
//! - [`keyed_batch`]: builds one batch from many keyed records (or tombstones), for writers
//!   that are not producers (the group coordinator's internal topics).
//!
//! See `docs/log-format.md` for the on-disk format and its recovery story.

pub mod batch;
pub mod cleaner;
pub mod config;
pub mod error;
pub mod keyed_batch;
pub mod leader_epoch;
pub mod producer_state;

mod admission;
mod checkpoint;
mod codec;
mod durable;
mod follower;
mod log;
mod lookup;
mod offset_index;
mod records;
mod recovery;
mod replica;
mod retention;
mod scan;
mod segment;
mod time_index;
mod truncate;

pub use cleaner::{CleanPlan, CleanStats, CleanedSegments};
pub use config::{CleanupPolicy, FlushPolicy, LogConfig};
pub use error::{LogError, ReplicaError};
pub use keyed_batch::KeyedRecord;
pub use leader_epoch::{EpochEndOffset, EpochEntry, LeaderEpochCache};
pub use log::{AppendInfo, AppendOptions, AppendOutcome, Log, ReadResult, TimestampOffset};
