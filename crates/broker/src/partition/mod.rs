//! One partition on this broker: its log behind a lock, and a watch that wakes whatever waits
//! on it (fetches, acks=all produces).
//!
//! Each partition has a [`PartitionRole`]: a single-node broker leads every partition it has;
//! in a cluster the role comes from the metadata image (`crate::cluster::sync` sets it) and
//! only the leader serves produce, client fetches and offsets lookups.
//!
//! The high watermark (the end of what every in-sync replica holds) bounds what consumers
//! read and what ListOffsets calls "latest". On a single-node broker ("standalone") it is the
//! log end offset: the only replica has everything. A cluster leader keeps a
//! [`crate::replica::leader_state::LeaderState`] fed by its followers' fetches
//! ([`leader`]); a follower takes the high watermark its leader sends.
//!
//! Lock order: `role`, then `leader`; the log lock is never held while taking either.

mod leader;

pub use leader::{AckWait, LeaderUpdate};

use std::path::Path;

use parking_lot::{Mutex, RwLock};
use sapper_log::{
    AppendInfo, AppendOptions, AppendOutcome, CleanStats, EpochEndOffset, Log, LogConfig, LogError,
    ReadResult, ReplicaError, TimestampOffset,
};
use tokio::sync::watch;

use crate::replica::leader_state::LeaderState;
use crate::replica::sink::ReplicaSink;

/// What this broker is for one partition, as the metadata says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionRole {
    /// Serves produce and fetch; appends are stamped with `epoch`.
    Leader { epoch: i32 },
    /// Holds a replica led by `leader` ([`NO_LEADER`]: none) at `epoch`.
    Follower { leader: i32, epoch: i32 },
}

/// Kafka's "no leader" id, as [`PartitionRole::Follower`] carries it.
pub const NO_LEADER: i32 = -1;

impl PartitionRole {
    /// The role of every partition of a single-node broker.
    pub const SINGLE_NODE: Self = Self::Leader { epoch: 0 };
    /// A partition opened in a cluster before the metadata has told its role.
    pub const UNKNOWN: Self = Self::Follower {
        leader: NO_LEADER,
        epoch: -1,
    };

    /// The leader epoch when this broker leads.
    pub fn leader_epoch(self) -> Option<i32> {
        match self {
            Self::Leader { epoch } => Some(epoch),
            Self::Follower { .. } => None,
        }
    }
}

/// A partition's log plus the notification fetch requests wait on.
#[derive(Debug)]
pub struct Partition {
    pub index: i32,
    log: RwLock<Log>,
    /// Bumped on every change a waiter may care about: an append, a high watermark move, a
    /// truncation, a role or ISR change.
    changes: watch::Sender<u64>,
    role: Mutex<PartitionRole>,
    /// The leader's view of its followers, while this broker leads the partition in a cluster.
    leader: Mutex<Option<LeaderState>>,
    /// A single-node broker's partition: the high watermark is the log end offset.
    standalone: bool,
}

/// Why a leader append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// This broker no longer leads the partition at the epoch the append was stamped with.
    #[error("not the leader at epoch {epoch} any more")]
    NotLeader { epoch: i32 },
    #[error(transparent)]
    Log(#[from] LogError),
}

impl AppendError {
    /// The Kafka error code for a produce response.
    pub fn code(&self) -> i16 {
        match self {
            Self::NotLeader { .. } => kafka_protocol::error::ResponseError::NotLeaderOrFollower.code(),
            Self::Log(e) => crate::errors::log_error_code(e),
        }
    }
}

/// Offsets a response reports for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
}

/// How far a read may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBound {
    /// Consumers: only what every in-sync replica holds.
    HighWatermark,
    /// Followers (and the group coordinator replaying its own log): everything.
    LogEnd,
}

impl Partition {
    /// Opens (recovering if needed) the partition's log in `dir`, in `role`.
    pub fn open(
        index: i32,
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
        role: PartitionRole,
    ) -> Result<Self, LogError> {
        let log = Log::open(dir, config, now_ms)?;
        let standalone = role == PartitionRole::SINGLE_NODE;
        if standalone {
            log.set_high_watermark(log.log_end_offset());
        }
        let (changes, _) = watch::channel(0);
        Ok(Self {
            index,
            log: RwLock::new(log),
            changes,
            role: Mutex::new(role),
            leader: Mutex::new(None),
            standalone,
        })
    }

    /// This broker's role for the partition now.
    pub fn role(&self) -> PartitionRole {
        *self.role.lock()
    }

    /// Sets the role directly (tests of a standalone partition that act as a cluster leader
    /// or follower); the broker uses [`Self::make_leader`] and [`Self::make_follower`].
    #[cfg(test)]
    pub(crate) fn set_role(&self, role: PartitionRole) -> PartitionRole {
        let old = std::mem::replace(&mut *self.role.lock(), role);
        self.wake();
        old
    }

    /// Appends a produce request's (or the group coordinator's) batches as the leader, moves
    /// the high watermark if that alone commits them (a standalone broker, or a leader alone
    /// in its ISR) and wakes what waits on this partition.
    ///
    /// In a cluster the role is checked, and held, across the append: a request that found this
    /// broker leading `opts.leader_epoch` may reach here after [`Self::make_follower`]; its
    /// batch must not land in what is now a follower's log, after the fetcher's truncation,
    /// where it would stay as a record the leader never had.
    pub fn append(&self, batches: &mut [u8], opts: &AppendOptions) -> Result<AppendOutcome, AppendError> {
        let role = if self.standalone {
            None
        } else {
            let role = self.role.lock();
            if *role
                != (PartitionRole::Leader {
                    epoch: opts.leader_epoch,
                })
            {
                return Err(AppendError::NotLeader {
                    epoch: opts.leader_epoch,
                });
            }
            Some(role)
        };
        let mut log = self.log.write();
        let outcome = log.append(batches, opts)?;
        let end = log.log_end_offset();
        if self.standalone {
            log.set_high_watermark(end);
        }
        drop(log);
        if !self.standalone {
            self.leader_appended(end);
        }
        drop(role);
        self.wake();
        Ok(outcome)
    }

    /// Reads whole batches from `offset`, up to `bound`.
    pub fn read(&self, offset: i64, max_bytes: usize, bound: ReadBound) -> Result<ReadResult, LogError> {
        let log = self.log.read();
        let limit = match bound {
            ReadBound::HighWatermark => log.high_watermark(),
            ReadBound::LogEnd => log.log_end_offset(),
        };
        log.read(offset, max_bytes, limit)
    }

    pub fn offsets(&self) -> PartitionOffsets {
        let log = self.log.read();
        PartitionOffsets {
            log_start_offset: log.log_start_offset(),
            high_watermark: log.high_watermark(),
            log_end_offset: log.log_end_offset(),
        }
    }

    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>, LogError> {
        self.log.read().offset_for_timestamp(timestamp)
    }

    pub fn max_timestamp(&self) -> Option<TimestampOffset> {
        self.log.read().max_timestamp()
    }

    /// The log's leader epochs and its log end offset, read together (OffsetForLeaderEpoch).
    pub fn leader_epochs(&self) -> (sapper_log::LeaderEpochCache, i64) {
        let log = self.log.read();
        (log.leader_epoch_cache().clone(), log.log_end_offset())
    }

    /// A receiver that changes whenever the log, its high watermark, the role or the ISR
    /// changes (what fetches and acks=all produces wait on).
    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Runs retention (and age-based rolling); returns deleted segments.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        self.log.write().enforce_retention(now_ms)
    }

    /// One compaction pass (a no-op unless the topic compacts): planned under the read lock,
    /// segments read and rewritten with no lock held, swapped in under the write lock, so
    /// produce and fetch are blocked only for the swap. One caller at a time (the cleaner task).
    pub fn clean(&self, now_ms: i64) -> Result<CleanStats, LogError> {
        let plan = self.log.read().plan_clean(now_ms)?;
        let Some(plan) = plan else {
            return Ok(CleanStats::default());
        };
        let cleaned = plan.execute()?;
        self.log.write().install_cleaned(cleaned)
    }

    pub fn flush(&self) -> Result<(), LogError> {
        self.log.write().flush()
    }

    pub fn set_config(&self, config: LogConfig) {
        self.log.write().set_config(config);
    }

    /// Clean shutdown of the log: flush and checkpoint.
    pub fn close(&self) -> Result<(), LogError> {
        self.log.write().close()
    }

    pub fn size_bytes(&self) -> u64 {
        self.log.read().size_bytes()
    }

    /// This replica becomes leader at `epoch`: the epoch starts at the log end offset.
    pub fn assign_leader_epoch(&self, epoch: i32) -> Result<(), LogError> {
        self.log.write().assign_leader_epoch(epoch)
    }

    /// Wakes everything waiting on the partition.
    fn wake(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The follower's log as the replica fetcher writes it (the log lock, plus waking waiters).
impl ReplicaSink for Partition {
    fn append_as_follower(&self, batches: &[u8], now_ms: i64) -> Result<AppendInfo, ReplicaError> {
        let mut log = self.log.write();
        let info = log.append_as_follower(batches, now_ms)?;
        drop(log);
        self.wake();
        Ok(info)
    }
    fn truncate_to(&self, offset: i64) -> Result<(), ReplicaError> {
        let mut log = self.log.write();
        log.truncate_to(offset)?;
        drop(log);
        self.wake();
        Ok(())
    }
    fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), ReplicaError> {
        let mut log = self.log.write();
        log.truncate_fully_and_start_at(offset)?;
        drop(log);
        self.wake();
        Ok(())
    }
    fn log_start_offset(&self) -> i64 {
        self.log.read().log_start_offset()
    }
    fn log_end_offset(&self) -> i64 {
        self.log.read().log_end_offset()
    }
    fn high_watermark(&self) -> i64 {
        self.log.read().high_watermark()
    }
    fn set_high_watermark(&self, offset: i64) -> i64 {
        let log = self.log.read();
        let before = log.high_watermark();
        let after = log.set_high_watermark(offset);
        drop(log);
        if after != before {
            self.wake();
        }
        after
    }
    fn latest_epoch(&self) -> Option<i32> {
        self.log.read().latest_epoch()
    }
    fn end_offset_for_epoch(&self, epoch: i32) -> EpochEndOffset {
        self.log.read().end_offset_for_epoch(epoch)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::replica::fetcher::tests::{everything, write};

    #[test]
    fn a_follower_partition_appends_truncates_and_wakes_waiters() {
        let leader_dir = tempfile::tempdir().unwrap();
        let mut leader = Log::open(leader_dir.path(), LogConfig::default(), 0).unwrap();
        write(&mut leader, 1, 2, "a");
        let batches = everything(&leader);
        let dir = tempfile::tempdir().unwrap();
        let partition =
            Partition::open(0, dir.path(), LogConfig::default(), 0, PartitionRole::UNKNOWN).unwrap();
        let mut watch = partition.watch_changes();
        let sink: &dyn ReplicaSink = &partition;
        sink.append_as_follower(&batches, 1_000).unwrap();
        assert_eq!(sink.log_end_offset(), 6);
        assert!(watch.has_changed().unwrap());
        watch.borrow_and_update();
        assert_eq!(sink.latest_epoch(), Some(1));
        // A follower's high watermark is its leader's; consumers would read nothing yet.
        assert_eq!(partition.offsets().high_watermark, 0);
        assert_eq!(sink.set_high_watermark(4), 4);
        assert!(watch.has_changed().unwrap());
        watch.borrow_and_update();
        sink.truncate_to(3).unwrap();
        assert_eq!(sink.log_end_offset(), 3);
        assert!(watch.has_changed().unwrap());
        partition.assign_leader_epoch(2).unwrap();
        assert_eq!(sink.latest_epoch(), Some(2));
        assert_eq!(sink.end_offset_for_epoch(1).end_offset, 3);
    }

    #[test]
    fn a_leader_append_is_refused_once_the_partition_follows_or_the_epoch_moved() {
        let scratch_dir = tempfile::tempdir().unwrap();
        let mut scratch = Log::open(scratch_dir.path(), LogConfig::default(), 0).unwrap();
        write(&mut scratch, 0, 1, "a");
        let dir = tempfile::tempdir().unwrap();
        let partition =
            Partition::open(0, dir.path(), LogConfig::default(), 0, PartitionRole::UNKNOWN).unwrap();
        let options = |epoch| AppendOptions {
            leader_epoch: epoch,
            now_ms: 1_000,
            log_append_time: false,
        };
        let refused = partition.append(&mut everything(&scratch).to_vec(), &options(3));
        assert!(
            matches!(refused, Err(AppendError::NotLeader { epoch: 3 })),
            "{refused:?}"
        );
        partition.set_role(PartitionRole::Leader { epoch: 3 });
        partition
            .append(&mut everything(&scratch).to_vec(), &options(3))
            .unwrap();
        let stale = partition.append(&mut everything(&scratch).to_vec(), &options(2));
        assert!(
            matches!(stale, Err(AppendError::NotLeader { epoch: 2 })),
            "{stale:?}"
        );
        partition.make_follower(2, 4);
        let refused = partition.append(&mut everything(&scratch).to_vec(), &options(3));
        assert_eq!(
            refused.unwrap_err().code(),
            kafka_protocol::error::ResponseError::NotLeaderOrFollower.code()
        );
        assert_eq!(
            partition.offsets().log_end_offset,
            scratch.log_end_offset(),
            "only the leader's append landed"
        );
    }
}
