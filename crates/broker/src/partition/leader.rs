//! The leader side of a partition in a cluster: role changes from the metadata
//! ([`Partition::make_leader`], [`Partition::make_follower`], [`Partition::update_leader`]),
//! the [`LeaderState`] fed by follower fetches and appends, the high watermark it yields, the
//! ISR changes it asks for, and what acks=all produces wait on ([`AckWait`]).
//!
//! The pure decisions live in [`crate::replica::leader_state`]; this module only holds the
//! state under the partition's locks (role, then leader, then log) and moves the log's high
//! watermark and wakes waiters when a decision says so.

use std::sync::Arc;

use sapper_log::LogError;
use tokio::sync::watch;

use super::{Partition, PartitionRole};
use crate::replica::leader_state::{
    AckError, FollowerFetch, IsrChange, LeaderInit, LeaderState, DEFAULT_REPLICA_LAG_TIME_MAX_MS,
};
use crate::replica::purgatory::{AckSource, AckState};

/// A partition's leadership as the metadata gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderUpdate {
    /// This broker.
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl Partition {
    /// This broker becomes the partition's leader at `update.leader_epoch` (the caller has
    /// stopped following it): the epoch starts at the log end offset, and the role and the
    /// leader state change together, so a request that sees the role also finds the state.
    /// Answers the previous role.
    pub fn make_leader(&self, update: LeaderUpdate, now_ms: i64) -> Result<PartitionRole, LogError> {
        self.assign_leader_epoch(update.leader_epoch)?;
        let mut role = self.role.lock();
        let (log_end_offset, high_watermark) = {
            let log = self.log.read();
            (log.log_end_offset(), log.high_watermark())
        };
        let state = LeaderState::become_leader(LeaderInit {
            leader_id: update.leader_id,
            leader_epoch: update.leader_epoch,
            partition_epoch: update.partition_epoch,
            replicas: update.replicas,
            isr: update.isr,
            log_end_offset,
            high_watermark,
            lag_time_max_ms: DEFAULT_REPLICA_LAG_TIME_MAX_MS,
            now_ms,
        });
        let hw = state.high_watermark();
        *self.leader.lock() = Some(state);
        let old = std::mem::replace(
            &mut *role,
            PartitionRole::Leader {
                epoch: update.leader_epoch,
            },
        );
        drop(role);
        self.log.read().set_high_watermark(hw);
        self.wake();
        Ok(old)
    }

    /// The metadata changed the ISR or the replicas of a partition this broker goes on leading
    /// in the same leader epoch.
    pub fn update_leader(&self, update: LeaderUpdate, now_ms: i64) {
        let mut leader = self.leader.lock();
        let Some(state) = leader
            .as_mut()
            .filter(|s| s.leader_epoch() == update.leader_epoch)
        else {
            return;
        };
        if update.partition_epoch == state.partition_epoch() && update.isr == state.isr() {
            return;
        }
        let end = self.log.read().log_end_offset();
        let changed = state.apply_metadata(update.replicas, update.isr, update.partition_epoch, end, now_ms);
        drop(leader);
        if let Some(hw) = changed.high_watermark {
            self.log.read().set_high_watermark(hw);
        }
        // The ISR size may have changed: acks=all waits decide again.
        self.wake();
    }

    /// This broker follows the partition (led by `leader`, [`super::NO_LEADER`] for none) at
    /// `epoch`; answers the previous role.
    pub fn make_follower(&self, leader: i32, epoch: i32) -> PartitionRole {
        let new = PartitionRole::Follower { leader, epoch };
        let mut role = self.role.lock();
        let old = std::mem::replace(&mut *role, new);
        *self.leader.lock() = None;
        drop(role);
        if old != new {
            self.wake();
        }
        old
    }

    /// The leader appended up to `end`: with a one-member ISR that alone commits it.
    pub(super) fn leader_appended(&self, end: i64) {
        let hw = self
            .leader
            .lock()
            .as_mut()
            .and_then(|s| s.leader_appended(end, crate::clock::now_ms()));
        if let Some(hw) = hw {
            self.log.read().set_high_watermark(hw);
        }
    }

    /// A follower's fetch at `fetch_offset` was served: updates what the leader knows of it,
    /// moves the high watermark (waking waiters) and answers the ISR change to propose, if
    /// one is due. `eligible_for_isr` is false for a fenced or shutting-down broker.
    pub fn record_follower_fetch(
        &self,
        replica: i32,
        fetch_offset: i64,
        eligible_for_isr: bool,
        now_ms: i64,
    ) -> Option<IsrChange> {
        let mut leader = self.leader.lock();
        let state = leader.as_mut()?;
        let leader_end_offset = self.log.read().log_end_offset();
        let update = state
            .record_fetch(FollowerFetch {
                replica,
                fetch_offset,
                leader_end_offset,
                now_ms,
                eligible_for_isr,
            })
            .ok()?;
        drop(leader);
        if let Some(hw) = update.high_watermark {
            self.log.read().set_high_watermark(hw);
            self.wake();
        }
        update.isr_change
    }

    /// The periodic ISR check: the change that drops followers lagging for longer than
    /// `replica.lag.time.max.ms`, if one is due.
    pub fn maybe_shrink_isr(&self, now_ms: i64) -> Option<IsrChange> {
        let mut leader = self.leader.lock();
        let state = leader.as_mut()?;
        let end = self.log.read().log_end_offset();
        state.maybe_shrink_isr(end, now_ms)
    }

    /// The controller accepted an ISR change made under `leader_epoch`.
    pub fn isr_change_committed(&self, leader_epoch: i32, isr: Vec<i32>, partition_epoch: i32, now_ms: i64) {
        let mut leader = self.leader.lock();
        let Some(state) = leader.as_mut().filter(|s| s.leader_epoch() == leader_epoch) else {
            return;
        };
        let end = self.log.read().log_end_offset();
        let hw = state.isr_change_committed(isr, partition_epoch, end, now_ms);
        drop(leader);
        if let Some(hw) = hw {
            self.log.read().set_high_watermark(hw);
        }
        self.wake();
    }

    /// The controller refused (or did not answer) an ISR change made under `leader_epoch`:
    /// its ISR stops counting for the high watermark now (acks=all waits may complete), but
    /// the next change waits for [`Self::isr_change_failed`].
    pub fn isr_change_refused(&self, leader_epoch: i32) {
        self.end_isr_change(leader_epoch, LeaderState::isr_change_refused);
    }

    /// An ISR change made under `leader_epoch` is over without committing: the next fetch or
    /// timer tick may propose again.
    pub fn isr_change_failed(&self, leader_epoch: i32) {
        self.end_isr_change(leader_epoch, LeaderState::isr_change_failed);
    }

    fn end_isr_change(&self, leader_epoch: i32, end: impl FnOnce(&mut LeaderState, i64, i64) -> Option<i64>) {
        let mut leader = self.leader.lock();
        let Some(state) = leader.as_mut().filter(|s| s.leader_epoch() == leader_epoch) else {
            return;
        };
        let log_end_offset = self.log.read().log_end_offset();
        let hw = end(state, log_end_offset, crate::clock::now_ms());
        drop(leader);
        if let Some(hw) = hw {
            self.log.read().set_high_watermark(hw);
            self.wake();
        }
    }

    /// The check before an append with `acks`: NOT_ENOUGH_REPLICAS when acks=all and the ISR
    /// is smaller than `min_insync_replicas`.
    pub fn check_min_isr(&self, acks: i16, min_insync_replicas: usize) -> Result<(), AckError> {
        if self.standalone {
            return if acks == -1 && min_insync_replicas > 1 {
                Err(AckError::NotEnoughReplicas)
            } else {
                Ok(())
            };
        }
        match self.leader.lock().as_ref() {
            Some(state) => state.check_min_isr(acks, min_insync_replicas),
            None => Ok(()),
        }
    }

    /// What an acks=all wait reads (see [`crate::replica::purgatory`]).
    pub fn ack_state(&self, min_insync_replicas: usize) -> AckState {
        if self.standalone {
            return AckState {
                high_watermark: self.log.read().high_watermark(),
                leader_epoch: self.role().leader_epoch(),
                isr_size: 1,
                min_insync_replicas,
            };
        }
        let leader = self.leader.lock();
        match leader.as_ref() {
            Some(state) => state.ack_state(min_insync_replicas),
            None => AckState {
                high_watermark: -1,
                leader_epoch: None,
                isr_size: 0,
                min_insync_replicas,
            },
        }
    }

    /// The ISR this broker, as leader, works with (None when it does not lead).
    pub fn leader_isr(&self) -> Option<Vec<i32>> {
        self.leader.lock().as_ref().map(|s| s.isr().to_vec())
    }
}

/// One partition as an acks=all produce waits on it, with the topic's `min.insync.replicas`.
#[derive(Debug, Clone)]
pub struct AckWait {
    pub partition: Arc<Partition>,
    pub min_insync_replicas: usize,
}

impl AckSource for AckWait {
    fn ack_state(&self) -> AckState {
        self.partition.ack_state(self.min_insync_replicas)
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.partition.watch_changes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use sapper_log::{AppendOptions, LogConfig};

    use super::*;
    use crate::replica::fetcher::tests::{everything, write};

    fn leader_partition(dir: &std::path::Path, isr: Vec<i32>) -> Partition {
        let p = Partition::open(0, dir, LogConfig::default(), 0, PartitionRole::UNKNOWN).unwrap();
        p.make_leader(
            LeaderUpdate {
                leader_id: 1,
                leader_epoch: 3,
                partition_epoch: 7,
                replicas: vec![1, 2, 3],
                isr,
            },
            1_000,
        )
        .unwrap();
        p
    }

    /// Appends one batch of three records as the leader.
    fn produce(p: &Partition, tag: &str) {
        let dir = tempfile::tempdir().unwrap();
        let mut scratch = sapper_log::Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        write(&mut scratch, 0, 1, tag);
        let mut batches = everything(&scratch).to_vec();
        p.append(
            &mut batches,
            &AppendOptions {
                leader_epoch: 3,
                now_ms: 1_000,
                log_append_time: false,
            },
        )
        .unwrap();
    }

    #[test]
    fn the_high_watermark_waits_for_the_isr_and_consumers_read_only_below_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = leader_partition(dir.path(), vec![1, 2, 3]);
        assert_eq!(p.role(), PartitionRole::Leader { epoch: 3 });
        produce(&p, "abc");
        let offsets = p.offsets();
        assert_eq!((offsets.high_watermark, offsets.log_end_offset), (0, 3));
        let read = p
            .read(0, 1 << 20, super::super::ReadBound::HighWatermark)
            .unwrap();
        assert!(read.bytes.is_empty(), "nothing committed yet");
        assert!(!p
            .read(0, 1 << 20, super::super::ReadBound::LogEnd)
            .unwrap()
            .bytes
            .is_empty());
        let mut changes = p.watch_changes();
        changes.borrow_and_update();
        assert_eq!(p.record_follower_fetch(2, 3, true, 1_100), None);
        assert_eq!(p.offsets().high_watermark, 0, "broker 3 has not fetched");
        assert_eq!(p.record_follower_fetch(3, 3, true, 1_100), None);
        assert_eq!(p.offsets().high_watermark, 3);
        assert!(changes.has_changed().unwrap());
        let ack = p.ack_state(2);
        assert_eq!(
            (ack.high_watermark, ack.leader_epoch, ack.isr_size),
            (3, Some(3), 3)
        );
    }

    #[test]
    fn a_lagging_follower_is_dropped_and_a_caught_up_one_is_proposed_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = leader_partition(dir.path(), vec![1, 2, 3]);
        produce(&p, "ab");
        p.record_follower_fetch(2, 3, true, 1_100);
        // Broker 3 never fetches: past replica.lag.time.max.ms it is proposed out.
        let change = p
            .maybe_shrink_isr(1_000 + DEFAULT_REPLICA_LAG_TIME_MAX_MS + 1)
            .unwrap();
        assert_eq!(change.isr, vec![1, 2]);
        assert_eq!((change.leader_epoch, change.partition_epoch), (3, 7));
        // While the change is in flight broker 3 still counts for the high watermark.
        assert_eq!(p.offsets().high_watermark, 0);
        p.isr_change_committed(3, vec![1, 2], 8, 4_000);
        assert_eq!(p.offsets().high_watermark, 3);
        assert_eq!(p.check_min_isr(-1, 3), Err(AckError::NotEnoughReplicas));
        assert_eq!(p.check_min_isr(-1, 2), Ok(()));
        // Broker 3 comes back and catches up: proposed for the ISR again.
        let back = p.record_follower_fetch(3, 3, true, 4_100).unwrap();
        assert_eq!(back.isr, vec![1, 2, 3]);
        // A fenced broker is never proposed.
        p.isr_change_failed(3);
        assert_eq!(p.record_follower_fetch(3, 3, false, 4_200), None);
    }

    #[test]
    fn becoming_a_follower_ends_acks_all_waits_and_single_isr_commits_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = leader_partition(dir.path(), vec![1]);
        produce(&p, "a");
        assert_eq!(
            p.offsets().high_watermark,
            3,
            "a leader alone in its ISR commits at once"
        );
        p.make_follower(2, 4);
        assert_eq!(p.ack_state(1).leader_epoch, None);
        assert_eq!(p.record_follower_fetch(3, 3, true, 2_000), None);
    }
}
