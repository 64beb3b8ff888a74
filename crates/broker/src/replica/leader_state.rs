//! A partition leader's view of its followers (Kafka's leader side of `Partition`: the remote
//! replicas' fetch state, `maybeIncrementLeaderHW`, `getOutOfSyncReplicas`, `maybeExpandIsr`),
//! as pure state: no IO, no clock (the caller passes `now_ms`), no locks.
//!
//! The leader calls [`LeaderState::record_fetch`] for every follower fetch,
//! [`LeaderState::leader_appended`] after every produce, [`LeaderState::maybe_shrink_isr`] on a
//! timer, and [`LeaderState::isr_change_committed`] / [`LeaderState::isr_change_refused`] when
//! the controller answers an AlterPartition, then [`LeaderState::isr_change_failed`] once the
//! next proposal may go. Each returns the new high watermark when it moved, and the ISR change
//! to propose when one is due (one in flight at a time, as in Kafka).
//!
//! Invariants (checked by the property tests below):
//! - the high watermark never moves back, never passes the leader's log end offset, and never
//!   passes the log end offset of a member of the *maximal* ISR (the committed ISR plus a
//!   pending expansion: a replica about to join may become leader, so it must hold
//!   everything below the high watermark; an expansion the controller refused no longer
//!   counts, so a refused replica that stops fetching, e.g. a broker leaving under controlled
//!   shutdown, does not hold acks=all produces);
//! - the leader is always in the ISR and never proposed for removal;
//! - a follower is proposed for the ISR only when it has reached the high watermark and the
//!   start of the current leader epoch.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use crate::replica::purgatory::AckState;

/// `replica.lag.time.max.ms` for Sapper: Kafka's default is 30 s (10 s before 2.5); 2 s keeps
/// failover within the aims (an ISR that still lists a dead follower blocks acks=all
/// until it is removed).
pub const DEFAULT_REPLICA_LAG_TIME_MAX_MS: i64 = 2_000;

/// Kafka's "unknown offset": a follower that has not fetched since this leadership began.
pub const UNKNOWN_OFFSET: i64 = -1;

/// [`FollowerState::last_caught_up_ms`] of a follower never caught up under this leader.
pub const NEVER: i64 = i64::MIN;

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// Its log end offset: the fetch offset of its last fetch ([`UNKNOWN_OFFSET`] before one).
    pub log_end_offset: i64,
    /// When it was last caught up (Kafka's `lastCaughtUpTimeMs`): a fetch at or past the
    /// leader's log end offset at the time of that fetch, or at or past the leader's log end
    /// offset at the time of the previous fetch (then as of that previous fetch). [`NEVER`]
    /// when it has not been.
    pub last_caught_up_ms: i64,
    /// The leader's log end offset when the previous fetch arrived, and when that was.
    last_fetch_leader_end_offset: i64,
    last_fetch_ms: i64,
}

impl FollowerState {
    fn new(now_ms: i64, leader_end_offset: i64, in_sync: bool) -> Self {
        Self {
            log_end_offset: UNKNOWN_OFFSET,
            // An ISR member gets a full lag period to show up under a new leader (Kafka's
            // `resetReplicaState`); anyone else has never been caught up.
            last_caught_up_ms: if in_sync { now_ms } else { NEVER },
            last_fetch_leader_end_offset: leader_end_offset,
            last_fetch_ms: now_ms,
        }
    }

    /// Kafka's `isCaughtUp`: at the leader's log end offset, or caught up within `lag_max_ms`.
    pub fn is_caught_up(&self, leader_end_offset: i64, now_ms: i64, lag_max_ms: i64) -> bool {
        self.log_end_offset == leader_end_offset
            || now_ms.saturating_sub(self.last_caught_up_ms) <= lag_max_ms
    }
}

/// How a partition's leadership starts: the metadata's view plus the leader's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInit {
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// The leader's log end offset now (where the new leader epoch starts).
    pub log_end_offset: i64,
    /// The high watermark the log had (from its checkpoint, or from following the old leader).
    pub high_watermark: i64,
    /// `replica.lag.time.max.ms`.
    pub lag_time_max_ms: i64,
    pub now_ms: i64,
}

/// An ISR the leader asks the controller for (AlterPartition), fenced by the epochs it was
/// computed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// A follower fetch, as the leader's Fetch handler reports it after a successful read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerFetch {
    pub replica: i32,
    /// The request's fetch offset: the follower's log end offset.
    pub fetch_offset: i64,
    /// The leader's log end offset when the fetch was served.
    pub leader_end_offset: i64,
    pub now_ms: i64,
    /// Whether the replica may join the ISR at all: false for a fenced broker or one in
    /// controlled shutdown (the metadata says).
    pub eligible_for_isr: bool,
}

/// What a state change asks of the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// The new high watermark, when it moved: set it on the log and wake waiters.
    pub high_watermark: Option<i64>,
    /// An ISR change to send to the controller.
    pub isr_change: Option<IsrChange>,
}

/// Why the leader refuses or fails an acks=all produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// The ISR is smaller than `min.insync.replicas`: nothing was appended.
    NotEnoughReplicas,
    /// The ISR shrank below `min.insync.replicas` after the append (the records are in the
    /// log but not acknowledged; the producer retries).
    NotEnoughReplicasAfterAppend,
}

impl AckError {
    pub fn code(self) -> i16 {
        match self {
            Self::NotEnoughReplicas => ResponseError::NotEnoughReplicas.code(),
            Self::NotEnoughReplicasAfterAppend => ResponseError::NotEnoughReplicasAfterAppend.code(),
        }
    }
}

/// A follower fetch from a broker that is not a replica of the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAReplica(pub i32);

/// One partition's leader-side replication state.
#[derive(Debug, Clone)]
pub struct LeaderState {
    leader_id: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    /// The leader's log end offset when this leader epoch began.
    epoch_start_offset: i64,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    /// The ISR of an AlterPartition in flight (or refused, see `pending_refused`): no other
    /// change is proposed while it is set.
    pending_isr: Option<Vec<i32>>,
    /// The controller refused `pending_isr`: it no longer counts for the high watermark, and
    /// only blocks the next proposal until [`LeaderState::isr_change_failed`].
    pending_refused: bool,
    followers: BTreeMap<i32, FollowerState>,
    high_watermark: i64,
    lag_time_max_ms: i64,
}

impl LeaderState {
    /// This broker becomes leader (a new leader epoch). Followers start unknown; ISR members get
    /// `lag_time_max_ms` to fetch before they count as lagging. The leader is added to the ISR
    /// if the metadata somehow lacks it. Read [`LeaderState::high_watermark`] afterwards: a
    /// leader alone in its ISR starts with the high watermark at its log end offset.
    pub fn become_leader(init: LeaderInit) -> Self {
        let mut isr = init.isr;
        if !isr.contains(&init.leader_id) {
            isr.push(init.leader_id);
        }
        let followers = init
            .replicas
            .iter()
            .filter(|&&r| r != init.leader_id)
            .map(|&r| {
                (
                    r,
                    FollowerState::new(init.now_ms, init.log_end_offset, isr.contains(&r)),
                )
            })
            .collect();
        let mut state = Self {
            leader_id: init.leader_id,
            leader_epoch: init.leader_epoch,
            partition_epoch: init.partition_epoch,
            epoch_start_offset: init.log_end_offset,
            replicas: init.replicas,
            isr,
            pending_isr: None,
            pending_refused: false,
            followers,
            high_watermark: init.high_watermark.min(init.log_end_offset),
            lag_time_max_ms: init.lag_time_max_ms,
        };
        // A leader alone in its ISR has everything committed at once.
        state.maybe_advance_high_watermark(init.log_end_offset, init.now_ms);
        state
    }

    pub fn leader_id(&self) -> i32 {
        self.leader_id
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The committed ISR (what the metadata says).
    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    /// The ISR an AlterPartition in flight asks for (`None` once refused).
    pub fn pending_isr(&self) -> Option<&[i32]> {
        self.pending_isr.as_deref().filter(|_| !self.pending_refused)
    }

    /// Whether `replica` counts for the high watermark as an ISR member: in the committed
    /// ISR or in the one in flight (Kafka's `maximalIsr`).
    pub fn in_maximal_isr(&self, replica: i32) -> bool {
        self.isr.contains(&replica) || self.pending_isr().is_some_and(|p| p.contains(&replica))
    }

    pub fn follower(&self, replica: i32) -> Option<&FollowerState> {
        self.followers.get(&replica)
    }

    /// The state acks=all waits observe ([`crate::replica::purgatory`]).
    pub fn ack_state(&self, min_insync_replicas: usize) -> AckState {
        AckState {
            high_watermark: self.high_watermark,
            leader_epoch: Some(self.leader_epoch),
            isr_size: self.isr.len(),
            min_insync_replicas,
        }
    }

    /// The check before an acks=all append (Kafka uses the committed ISR).
    pub fn check_min_isr(&self, acks: i16, min_insync_replicas: usize) -> Result<(), AckError> {
        if acks == -1 && self.isr.len() < min_insync_replicas {
            Err(AckError::NotEnoughReplicas)
        } else {
            Ok(())
        }
    }

    /// The metadata changed this partition without changing its leader epoch (an ISR change,
    /// a reassignment): adopt the replicas and ISR, keep what we know of followers that stay.
    /// A partition epoch older than ours is stale and ignored. A new leader epoch is a new
    /// leadership: use [`LeaderState::become_leader`] instead.
    pub fn apply_metadata(
        &mut self,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        partition_epoch: i32,
        leader_end_offset: i64,
        now_ms: i64,
    ) -> Update {
        if partition_epoch < self.partition_epoch {
            return Update::default();
        }
        if partition_epoch > self.partition_epoch {
            // A change we proposed committed (or someone else's did): ours is moot either way.
            self.pending_isr = None;
            self.pending_refused = false;
        }
        self.partition_epoch = partition_epoch;
        self.followers.retain(|r, _| replicas.contains(r));
        // A member the controller took out of the ISR (fenced: dead, paused or cut off) is no
        // longer "recently caught up" for the ISR shrink check; if it is alive its next fetch
        // says so again.
        for (r, f) in &mut self.followers {
            if self.isr.contains(r) && !isr.contains(r) {
                f.last_caught_up_ms = NEVER;
            }
        }
        for &r in &replicas {
            if r != self.leader_id {
                self.followers
                    .entry(r)
                    .or_insert_with(|| FollowerState::new(now_ms, leader_end_offset, isr.contains(&r)));
            }
        }
        self.replicas = replicas;
        self.isr = isr;
        if !self.isr.contains(&self.leader_id) {
            self.isr.push(self.leader_id);
        }
        Update {
            high_watermark: self.maybe_advance_high_watermark(leader_end_offset, now_ms),
            isr_change: None,
        }
    }

    /// A follower fetched at `fetch_offset`. Updates its state (Kafka's `updateFetchState`),
    /// proposes it for the ISR when it qualifies, and advances the high watermark.
    pub fn record_fetch(&mut self, fetch: FollowerFetch) -> Result<Update, NotAReplica> {
        let Some(state) = self.followers.get_mut(&fetch.replica) else {
            return Err(NotAReplica(fetch.replica));
        };
        if fetch.fetch_offset >= fetch.leader_end_offset {
            state.last_caught_up_ms = state.last_caught_up_ms.max(fetch.now_ms);
        } else if fetch.fetch_offset >= state.last_fetch_leader_end_offset {
            state.last_caught_up_ms = state.last_caught_up_ms.max(state.last_fetch_ms);
        }
        state.log_end_offset = fetch.fetch_offset.min(fetch.leader_end_offset);
        state.last_fetch_leader_end_offset = fetch.leader_end_offset;
        state.last_fetch_ms = fetch.now_ms;
        let isr_change = if fetch.eligible_for_isr {
            self.maybe_expand_isr(fetch.replica)
        } else {
            None
        };
        Ok(Update {
            high_watermark: self.maybe_advance_high_watermark(fetch.leader_end_offset, fetch.now_ms),
            isr_change,
        })
    }

    /// The leader appended: with a one-member ISR that alone moves the high watermark.
    pub fn leader_appended(&mut self, leader_end_offset: i64, now_ms: i64) -> Option<i64> {
        self.maybe_advance_high_watermark(leader_end_offset, now_ms)
    }

    /// ISR members (not the leader) that have not been caught up for `replica.lag.time.max.ms`
    /// (Kafka's `getOutOfSyncReplicas`).
    pub fn out_of_sync_replicas(&self, leader_end_offset: i64, now_ms: i64) -> Vec<i32> {
        self.isr
            .iter()
            .copied()
            .filter(|&r| r != self.leader_id)
            .filter(|r| {
                self.followers
                    .get(r)
                    .is_none_or(|f| !f.is_caught_up(leader_end_offset, now_ms, self.lag_time_max_ms))
            })
            .collect()
    }

    /// The periodic ISR check: proposes removing the lagging members, unless an ISR change is
    /// already in flight.
    pub fn maybe_shrink_isr(&mut self, leader_end_offset: i64, now_ms: i64) -> Option<IsrChange> {
        if self.pending_isr.is_some() {
            return None;
        }
        let lagging = self.out_of_sync_replicas(leader_end_offset, now_ms);
        if lagging.is_empty() {
            return None;
        }
        let isr: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|r| !lagging.contains(r))
            .collect();
        Some(self.propose(isr))
    }

    /// The controller accepted an ISR change: adopt it (only if it is newer than what we have).
    pub fn isr_change_committed(
        &mut self,
        isr: Vec<i32>,
        partition_epoch: i32,
        leader_end_offset: i64,
        now_ms: i64,
    ) -> Option<i64> {
        let replicas = self.replicas.clone();
        self.apply_metadata(replicas, isr, partition_epoch, leader_end_offset, now_ms)
            .high_watermark
    }

    /// The controller refused the change in flight (or did not answer): its ISR no longer
    /// counts for the high watermark, which may move at once (answered), but no other change
    /// is proposed until [`Self::isr_change_failed`] (no request storm).
    pub fn isr_change_refused(&mut self, leader_end_offset: i64, now_ms: i64) -> Option<i64> {
        // Nothing in flight: nothing to refuse.
        self.pending_isr.as_ref()?;
        self.pending_refused = true;
        self.maybe_advance_high_watermark(leader_end_offset, now_ms)
    }

    /// The change in flight is over without committing (refused, unanswered): the next fetch
    /// or timer tick may propose again. Answers the high watermark if it moved (the maximal
    /// ISR may have shrunk).
    pub fn isr_change_failed(&mut self, leader_end_offset: i64, now_ms: i64) -> Option<i64> {
        self.pending_isr = None;
        self.pending_refused = false;
        self.maybe_advance_high_watermark(leader_end_offset, now_ms)
    }

    fn maybe_expand_isr(&mut self, replica: i32) -> Option<IsrChange> {
        if self.pending_isr.is_some() || self.isr.contains(&replica) || !self.replicas.contains(&replica) {
            return None;
        }
        let state = self.followers.get(&replica)?;
        // Kafka's `isFollowerInSync`: at the high watermark and inside the current epoch.
        if state.log_end_offset < self.high_watermark || state.log_end_offset < self.epoch_start_offset {
            return None;
        }
        let mut isr = self.isr.clone();
        isr.push(replica);
        Some(self.propose(isr))
    }

    fn propose(&mut self, isr: Vec<i32>) -> IsrChange {
        self.pending_isr = Some(isr.clone());
        IsrChange {
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            isr,
        }
    }

    /// Kafka's `maybeIncrementLeaderHW`: the smallest log end offset among the leader and the
    /// maximal ISR, if that is above the current high watermark.
    ///
    /// Kafka also counts live replicas caught up within the lag time but outside the ISR (one
    /// about to join must not be left behind). Here a follower is proposed for the ISR only
    /// once it holds everything below the high watermark ([`Self::maybe_expand_isr`]), and
    /// from the proposal on it counts as a member of the maximal ISR, so it cannot be left
    /// behind; counting the others too made acks=all wait `replica.lag.time.max.ms` for a
    /// broker that left under controlled shutdown (it fetches until it exits, while the
    /// metadata does not yet say it is gone).
    fn maybe_advance_high_watermark(&mut self, leader_end_offset: i64, _now_ms: i64) -> Option<i64> {
        let mut candidate = leader_end_offset;
        for (&r, f) in &self.followers {
            if self.in_maximal_isr(r) && f.log_end_offset < candidate {
                candidate = f.log_end_offset;
            }
        }
        debug_assert!(self.isr.contains(&self.leader_id));
        (candidate > self.high_watermark).then(|| {
            self.high_watermark = candidate;
            candidate
        })
    }
}

#[cfg(test)]
mod tests;
