//! The follower side of a broker (Kafka's `ReplicaFetcherManager`): one [`ReplicaFetcher`] per
//! leader broker, and which partition is followed where. The metadata sync calls
//! [`FetcherManager::follow`] for every partition this broker follows (with the leader's id,
//! address and epoch) and [`FetcherManager::unfollow`] when it becomes leader, the partition
//! goes away or has no leader; fetchers left without partitions are stopped by
//! [`FetcherManager::shutdown_idle`]. A partition followed at a leader whose fetcher is
//! long-polling starts at once: adding it abandons the poll (see [`crate::replica::fetcher`]).
//!
//! Lock order: the manager's lock, then a fetcher's, then a log's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::replica::fetcher::{FetcherConfig, PartitionStatus, ReplicaFetcher};
use crate::replica::sink::{ReplicaSink, TopicPartition};

#[derive(Default)]
struct Inner {
    fetchers: BTreeMap<i32, ReplicaFetcher>,
    /// The leader each partition is followed at.
    followed: BTreeMap<TopicPartition, i32>,
    /// Fetchers stopped (address changed) but not yet awaited.
    retired: Vec<ReplicaFetcher>,
}

/// Every fetcher of this broker.
pub struct FetcherManager {
    config: FetcherConfig,
    cancel: CancellationToken,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for FetcherManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("FetcherManager")
            .field("fetchers", &inner.fetchers.len())
            .field("followed", &inner.followed.len())
            .finish()
    }
}

impl FetcherManager {
    /// Fetchers are cancelled with `cancel` (the broker's shutdown) or [`Self::shutdown`].
    pub fn new(config: FetcherConfig, cancel: CancellationToken) -> Self {
        Self {
            config,
            cancel,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Follows `tp` from broker `leader` at `leader_addr`, at `leader_epoch`, writing through
    /// `sink`. A partition followed at another leader moves; a leader whose address changed
    /// gets a new fetcher (its partitions move along and start over with OffsetForLeaderEpoch).
    /// Following again at the same leader and epoch changes nothing. Needs a tokio runtime.
    pub fn follow(
        &self,
        tp: TopicPartition,
        leader: i32,
        leader_addr: SocketAddr,
        leader_epoch: i32,
        sink: Arc<dyn ReplicaSink>,
    ) {
        let mut inner = self.inner.lock();
        if let Some(previous) = inner.followed.get(&tp).copied().filter(|&p| p != leader) {
            if let Some(fetcher) = inner.fetchers.get(&previous) {
                fetcher.remove_partition(&tp);
            }
        }
        let moved = match inner.fetchers.get(&leader) {
            Some(f) if f.leader_addr() != leader_addr => {
                let old = inner.fetchers.remove(&leader);
                let moved = old
                    .as_ref()
                    .map(ReplicaFetcher::take_partitions)
                    .unwrap_or_default();
                inner.retired.extend(old);
                moved
            }
            _ => Vec::new(),
        };
        let fetcher = inner.fetchers.entry(leader).or_insert_with(|| {
            tracing::info!(leader, addr = %leader_addr, "starting a replica fetcher");
            ReplicaFetcher::spawn(
                leader,
                leader_addr,
                self.config.clone(),
                self.cancel.child_token(),
            )
        });
        for (other, epoch, other_sink) in moved {
            if other != tp {
                fetcher.add_partition(other, epoch, other_sink);
            }
        }
        fetcher.add_partition(tp.clone(), leader_epoch, sink);
        inner.followed.insert(tp, leader);
    }

    /// Stops following `tp`. When this returns, no fetcher writes to its log any more.
    pub fn unfollow(&self, tp: &TopicPartition) -> bool {
        let mut inner = self.inner.lock();
        let Some(leader) = inner.followed.remove(tp) else {
            return false;
        };
        if let Some(fetcher) = inner.fetchers.get(&leader) {
            fetcher.remove_partition(tp);
        }
        true
    }

    /// The leader `tp` is followed at, and how its fetching goes.
    pub fn status(&self, tp: &TopicPartition) -> Option<(i32, PartitionStatus)> {
        let inner = self.inner.lock();
        let leader = *inner.followed.get(tp)?;
        inner.fetchers.get(&leader)?.status(tp).map(|s| (leader, s))
    }

    /// Every followed partition: its leader and status.
    pub fn statuses(&self) -> Vec<(TopicPartition, i32, PartitionStatus)> {
        let inner = self.inner.lock();
        inner
            .fetchers
            .iter()
            .flat_map(|(&leader, f)| {
                f.partitions()
                    .into_iter()
                    .map(move |(tp, status)| (tp, leader, status))
            })
            .collect()
    }

    /// Leaders with a running fetcher.
    pub fn leaders(&self) -> Vec<i32> {
        self.inner.lock().fetchers.keys().copied().collect()
    }

    /// Stops the fetchers that follow nothing any more (and the retired ones) and waits for
    /// them.
    pub async fn shutdown_idle(&self) {
        let stopping: Vec<ReplicaFetcher> = {
            let mut inner = self.inner.lock();
            let idle: Vec<i32> = inner
                .fetchers
                .iter()
                .filter(|(_, f)| f.is_empty())
                .map(|(&l, _)| l)
                .collect();
            let mut stopping = std::mem::take(&mut inner.retired);
            stopping.extend(idle.iter().filter_map(|l| inner.fetchers.remove(l)));
            stopping
        };
        for fetcher in stopping {
            fetcher.shutdown().await;
        }
    }

    /// Stops every fetcher and waits for them.
    pub async fn shutdown(&self) {
        let stopping: Vec<ReplicaFetcher> = {
            let mut inner = self.inner.lock();
            inner.followed.clear();
            let mut stopping = std::mem::take(&mut inner.retired);
            stopping.extend(std::mem::take(&mut inner.fetchers).into_values());
            stopping
        };
        for fetcher in stopping {
            fetcher.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::fetcher::tests::{caught_up, config, everything, follower, write, FakeLeader};
    use crate::replica::fetcher::FetchPhase;

    #[tokio::test]
    async fn a_partition_moves_to_its_new_leader() {
        let mut a = FakeLeader::start(1).await;
        let mut b = FakeLeader::start(2).await;
        a.add_log("t", 0);
        b.add_log("t", 0);
        a.with_log("t", 0, |l| write(l, 1, 2, "a"));
        let f = follower();
        let manager = FetcherManager::new(config(), CancellationToken::new());
        let tp = TopicPartition::new("t", 0);
        manager.follow(tp.clone(), 1, a.addr, 1, f.sink());
        caught_up(&a, "t", 0, &f).await;
        // Leader 2 took over in epoch 2 with the same first records plus more.
        let shared = a.with_log("t", 0, |l| everything(l));
        b.with_log("t", 0, |l| {
            l.append_as_follower(&shared, 1_000).unwrap();
            write(l, 2, 3, "b");
        });
        manager.follow(tp.clone(), 2, b.addr, 2, f.sink());
        caught_up(&b, "t", 0, &f).await;
        assert_eq!(
            manager.status(&tp).map(|(l, s)| (l, s.phase)),
            Some((2, FetchPhase::Fetching))
        );
        assert_eq!(manager.leaders(), vec![1, 2]);
        manager.shutdown_idle().await;
        assert_eq!(manager.leaders(), vec![2], "leader 1's fetcher had nothing left");
        assert!(manager.unfollow(&tp));
        assert!(!manager.unfollow(&tp));
        assert!(manager.status(&tp).is_none());
        manager.shutdown().await;
        assert!(manager.leaders().is_empty());
    }

    #[tokio::test]
    async fn a_leader_at_a_new_address_gets_a_new_fetcher_with_its_partitions() {
        let mut old = FakeLeader::start(0).await;
        let mut new = FakeLeader::start(0).await;
        old.add_log("t", 0).add_log("t", 1);
        new.add_log("t", 0).add_log("t", 1);
        for (p, batches) in [(0, 2), (1, 3)] {
            old.with_log("t", p, |l| write(l, 0, batches, "x"));
            let same = old.with_log("t", p, |l| everything(l));
            new.with_log("t", p, |l| l.append_as_follower(&same, 1_000).unwrap());
        }
        let (f0, f1) = (follower(), follower());
        let manager = FetcherManager::new(config(), CancellationToken::new());
        manager.follow(TopicPartition::new("t", 0), 1, old.addr, 0, f0.sink());
        manager.follow(TopicPartition::new("t", 1), 1, old.addr, 0, f1.sink());
        caught_up(&old, "t", 1, &f1).await;
        // Broker 1 restarted on another port; the new leader has one more batch on t-1.
        new.with_log("t", 1, |l| write(l, 0, 1, "z"));
        old.stop.cancel();
        manager.follow(TopicPartition::new("t", 0), 1, new.addr, 0, f0.sink());
        caught_up(&new, "t", 0, &f0).await;
        caught_up(&new, "t", 1, &f1).await;
        assert_eq!(manager.statuses().len(), 2);
        manager.shutdown().await;
    }
}
