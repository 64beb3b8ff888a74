//! acks=all produces waiting for replication (Kafka's produce purgatory, `DelayedProduce`).
//!
//! After appending, the produce handler registers one wait per partition: it resolves when
//! the partition's high watermark reaches the required offset (the appended records are on
//! every ISR member), or fails when the ISR falls below `min.insync.replicas`
//! (NOT_ENOUGH_REPLICAS_AFTER_APPEND), leadership is lost or the leader epoch moves
//! (NOT_LEADER_OR_FOLLOWER), the request timeout passes (REQUEST_TIMED_OUT), or the broker
//! shuts down (NOT_LEADER_OR_FOLLOWER: the client retries elsewhere).
//!
//! There is no central queue to scan: each wait sleeps on the partition's watch channel (the
//! one fetches already wait on), which the partition bumps whenever the high watermark, the
//! ISR or its role changes, and re-reads the partition's [`AckState`]. The [`Purgatory`] only
//! counts waits (observability) and owns the shutdown signal.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What an acks=all wait reads of its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckState {
    pub high_watermark: i64,
    /// The leader epoch while this broker leads the partition; `None` once it does not.
    pub leader_epoch: Option<i32>,
    /// The committed ISR's size.
    pub isr_size: usize,
    /// The topic's `min.insync.replicas`.
    pub min_insync_replicas: usize,
}

/// A partition as acks=all waits see it (implemented by the broker's `Partition`, and by
/// tests).
pub trait AckSource: Send + Sync {
    fn ack_state(&self) -> AckState;
    /// A receiver that changes whenever [`AckSource::ack_state`] may have changed.
    fn subscribe(&self) -> watch::Receiver<u64>;
}

/// How one partition's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The high watermark reached the required offset with enough replicas in sync.
    Acknowledged,
    NotEnoughReplicasAfterAppend,
    NotLeaderOrFollower,
    RequestTimedOut,
}

impl AckOutcome {
    /// The Kafka error code for the produce response (0 when acknowledged).
    pub fn error_code(self) -> i16 {
        match self {
            Self::Acknowledged => 0,
            Self::NotEnoughReplicasAfterAppend => ResponseError::NotEnoughReplicasAfterAppend.code(),
            Self::NotLeaderOrFollower => ResponseError::NotLeaderOrFollower.code(),
            Self::RequestTimedOut => ResponseError::RequestTimedOut.code(),
        }
    }

    /// Decides a wait from the partition's state, `None` while it must go on (Kafka's
    /// `checkEnoughReplicasReachOffset`, plus an early answer when the ISR already shrank below
    /// the minimum: the producer learns at once instead of at the next high watermark move).
    pub fn decide(state: &AckState, required_offset: i64, leader_epoch: i32) -> Option<Self> {
        if state.leader_epoch != Some(leader_epoch) {
            return Some(Self::NotLeaderOrFollower);
        }
        if state.isr_size < state.min_insync_replicas {
            return Some(Self::NotEnoughReplicasAfterAppend);
        }
        (state.high_watermark >= required_offset).then_some(Self::Acknowledged)
    }
}

/// The broker's acks=all waits.
#[derive(Debug)]
pub struct Purgatory {
    pending: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

/// Decrements the pending count however the wait ends (including being dropped with its
/// connection).
struct PendingGuard(Arc<AtomicUsize>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Purgatory {
    /// Waits end with NOT_LEADER_OR_FOLLOWER when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            pending: Arc::new(AtomicUsize::new(0)),
            shutdown,
        }
    }

    /// Waits in progress.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Registers a wait for `source`'s high watermark to reach `required_offset` (the last
    /// appended offset + 1) under `leader_epoch` (the epoch the append was stamped with), until
    /// `deadline`. The wait is registered now (counted, and subscribed so no change after this
    /// call is missed); the returned future owns everything it needs.
    pub fn register<S: AckSource + ?Sized + 'static>(
        &self,
        source: Arc<S>,
        required_offset: i64,
        leader_epoch: i32,
        deadline: Instant,
    ) -> impl Future<Output = AckOutcome> + Send + 'static {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let guard = PendingGuard(self.pending.clone());
        let shutdown = self.shutdown.clone();
        let mut changes = source.subscribe();
        async move {
            let _guard = guard;
            loop {
                changes.borrow_and_update();
                if let Some(outcome) = AckOutcome::decide(&source.ack_state(), required_offset, leader_epoch)
                {
                    return outcome;
                }
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() {
                            // The partition is gone (deleted, or no longer hosted here).
                            return AckOutcome::NotLeaderOrFollower;
                        }
                    }
                    () = tokio::time::sleep_until(deadline) => {
                        // One last look: the change that raced the deadline still counts.
                        return AckOutcome::decide(&source.ack_state(), required_offset, leader_epoch)
                            .unwrap_or(AckOutcome::RequestTimedOut);
                    }
                    () = shutdown.cancelled() => return AckOutcome::NotLeaderOrFollower,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use parking_lot::Mutex;

    use super::*;

    /// A partition whose state tests set by hand.
    struct Fake {
        state: Mutex<AckState>,
        tx: watch::Sender<u64>,
    }

    impl Fake {
        fn new(isr_size: usize) -> Arc<Self> {
            Arc::new(Self {
                state: Mutex::new(AckState {
                    high_watermark: 0,
                    leader_epoch: Some(4),
                    isr_size,
                    min_insync_replicas: 2,
                }),
                tx: watch::channel(0).0,
            })
        }

        fn set(&self, f: impl FnOnce(&mut AckState)) {
            f(&mut self.state.lock());
            self.tx.send_modify(|_| {});
        }
    }

    impl AckSource for Fake {
        fn ack_state(&self) -> AckState {
            *self.state.lock()
        }
        fn subscribe(&self) -> watch::Receiver<u64> {
            self.tx.subscribe()
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn resolves_when_the_high_watermark_reaches_the_offset() {
        let p = Purgatory::new(CancellationToken::new());
        let part = Fake::new(3);
        let wait = tokio::spawn(p.register(part.clone(), 10, 4, soon()));
        assert_eq!(p.pending(), 1);
        part.set(|s| s.high_watermark = 9);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!wait.is_finished(), "one short");
        part.set(|s| s.high_watermark = 12);
        assert_eq!(wait.await.unwrap(), AckOutcome::Acknowledged);
        assert_eq!(p.pending(), 0);
    }

    #[tokio::test]
    async fn already_replicated_resolves_at_once() {
        let p = Purgatory::new(CancellationToken::new());
        let part = Fake::new(2);
        part.set(|s| s.high_watermark = 10);
        assert_eq!(p.register(part, 10, 4, soon()).await, AckOutcome::Acknowledged);
    }

    #[tokio::test]
    async fn isr_below_min_fails_after_append() {
        let p = Purgatory::new(CancellationToken::new());
        let part = Fake::new(2);
        let wait = tokio::spawn(p.register(part.clone(), 10, 4, soon()));
        part.set(|s| s.isr_size = 1);
        let outcome = wait.await.unwrap();
        assert_eq!(outcome, AckOutcome::NotEnoughReplicasAfterAppend);
        assert_eq!(outcome.error_code(), 20);
    }

    #[tokio::test]
    async fn lost_leadership_or_a_new_epoch_fails_with_not_leader() {
        let p = Purgatory::new(CancellationToken::new());
        let part = Fake::new(3);
        let wait = tokio::spawn(p.register(part.clone(), 10, 4, soon()));
        part.set(|s| s.leader_epoch = None);
        assert_eq!(wait.await.unwrap(), AckOutcome::NotLeaderOrFollower);

        let part = Fake::new(3);
        let wait = tokio::spawn(p.register(part.clone(), 10, 4, soon()));
        // Leadership came back in a later epoch: the records of epoch 4 may have been cut.
        part.set(|s| {
            s.leader_epoch = Some(5);
            s.high_watermark = 20;
        });
        assert_eq!(wait.await.unwrap(), AckOutcome::NotLeaderOrFollower);
    }

    #[tokio::test]
    async fn times_out_at_the_deadline() {
        let p = Purgatory::new(CancellationToken::new());
        let part = Fake::new(3);
        let started = Instant::now();
        let outcome = p
            .register(part, 10, 4, Instant::now() + Duration::from_millis(50))
            .await;
        assert_eq!(outcome, AckOutcome::RequestTimedOut);
        assert_eq!(outcome.error_code(), 7);
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(p.pending(), 0);
    }

    #[tokio::test]
    async fn shutdown_and_a_dropped_partition_end_the_wait() {
        let shutdown = CancellationToken::new();
        let p = Purgatory::new(shutdown.clone());
        let part = Fake::new(3);
        let wait = tokio::spawn(p.register(part.clone(), 10, 4, soon()));
        shutdown.cancel();
        assert_eq!(wait.await.unwrap(), AckOutcome::NotLeaderOrFollower);

        // A partition dropped (topic deleted) while a wait is on it.
        struct Gone(AckState, watch::Receiver<u64>);
        impl AckSource for Gone {
            fn ack_state(&self) -> AckState {
                self.0
            }
            fn subscribe(&self) -> watch::Receiver<u64> {
                self.1.clone()
            }
        }
        let (tx, rx) = watch::channel(0);
        let gone = Arc::new(Gone(part.ack_state(), rx));
        let p = Purgatory::new(CancellationToken::new());
        let wait = tokio::spawn(p.register(gone, 10, 4, soon()));
        drop(tx);
        assert_eq!(wait.await.unwrap(), AckOutcome::NotLeaderOrFollower);
    }

    #[tokio::test]
    async fn dropped_waits_are_not_counted() {
        let p = Purgatory::new(CancellationToken::new());
        let wait = p.register(Fake::new(3), 10, 4, soon());
        assert_eq!(p.pending(), 1);
        drop(wait);
        assert_eq!(p.pending(), 0);
    }

    #[tokio::test]
    async fn many_waits_on_one_partition_resolve_in_offset_order() {
        let p = Purgatory::new(CancellationToken::new());
        let part = Fake::new(3);
        let waits: Vec<_> = (1..=20)
            .map(|i| tokio::spawn(p.register(part.clone(), i * 10, 4, soon())))
            .collect();
        for hw in (0..=200).step_by(5) {
            part.set(|s| s.high_watermark = hw);
            tokio::task::yield_now().await;
        }
        for w in waits {
            assert_eq!(w.await.unwrap(), AckOutcome::Acknowledged);
        }
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn decide_checks_leadership_then_isr_then_high_watermark() {
        let s = AckState {
            high_watermark: 10,
            leader_epoch: Some(1),
            isr_size: 1,
            min_insync_replicas: 2,
        };
        assert_eq!(
            AckOutcome::decide(&s, 5, 2),
            Some(AckOutcome::NotLeaderOrFollower)
        );
        assert_eq!(
            AckOutcome::decide(&s, 5, 1),
            Some(AckOutcome::NotEnoughReplicasAfterAppend)
        );
        let s = AckState { isr_size: 2, ..s };
        assert_eq!(AckOutcome::decide(&s, 10, 1), Some(AckOutcome::Acknowledged));
        assert_eq!(AckOutcome::decide(&s, 11, 1), None);
    }
}
