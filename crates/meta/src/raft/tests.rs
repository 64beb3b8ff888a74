//! Clusters of real quorum nodes on 127.0.0.1 ephemeral ports, each with its own data
//! directory. Every wait is bounded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::net::TcpListener;
use uuid::Uuid;

use super::*;
use crate::image::tests::registration;
use crate::image::MetadataImage;
use crate::records::{MetadataRecord, PartitionRecord};

const WAIT: Duration = Duration::from_secs(10);

struct Cluster {
    dirs: BTreeMap<NodeId, TempDir>,
    addrs: BTreeMap<NodeId, SocketAddr>,
    voters: BTreeMap<NodeId, SocketAddr>,
    nodes: BTreeMap<NodeId, MetadataQuorum>,
    snapshot_every: u64,
}

impl Cluster {
    async fn start(n: u64, snapshot_every: u64) -> Self {
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listeners.insert(id, listener);
        }
        let addrs: BTreeMap<_, _> = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().unwrap()))
            .collect();
        let mut cluster = Cluster {
            dirs: BTreeMap::new(),
            addrs: addrs.clone(),
            voters: addrs,
            nodes: BTreeMap::new(),
            snapshot_every,
        };
        for (id, listener) in listeners {
            cluster.dirs.insert(id, TempDir::new().unwrap());
            cluster.start_node(id, Some(listener)).await;
        }
        cluster
    }

    fn config(&self, id: NodeId) -> QuorumConfig {
        let mut config = QuorumConfig::new(
            id,
            self.addrs[&id],
            self.voters.clone(),
            self.dirs[&id].path().to_path_buf(),
        );
        config.snapshot_every = self.snapshot_every;
        // These tests propose broker records directly; no controller should fence them.
        config.controller.session_timeout = Duration::from_secs(3600);
        config.controller.failover_grace = Duration::from_secs(3600);
        config
    }

    async fn start_node(&mut self, id: NodeId, listener: Option<TcpListener>) {
        let config = self.config(id);
        let node = match listener {
            Some(listener) => MetadataQuorum::start_on(config, listener).await.unwrap(),
            None => MetadataQuorum::start(config).await.unwrap(),
        };
        self.nodes.insert(id, node);
    }

    /// Starts a node that is not an initial voter (it waits to be added).
    async fn start_extra(&mut self, id: NodeId) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.addrs.insert(id, listener.local_addr().unwrap());
        self.dirs.insert(id, TempDir::new().unwrap());
        self.start_node(id, Some(listener)).await;
    }

    async fn stop(&mut self, id: NodeId) {
        let node = self.nodes.remove(&id).unwrap();
        node.shutdown().await;
    }

    fn node(&self, id: NodeId) -> &MetadataQuorum {
        &self.nodes[&id]
    }

    /// Waits until every running node names the same leader, and that leader is running.
    async fn wait_leader(&self, timeout: Duration) -> NodeId {
        let deadline = Instant::now() + timeout;
        loop {
            let leaders: Vec<_> = self.nodes.values().map(|n| n.status().leader).collect();
            if let Some(Some(leader)) = leaders.first() {
                if leaders.iter().all(|l| *l == Some(*leader))
                    && self
                        .nodes
                        .get(leader)
                        .is_some_and(|n| n.status().state == "Leader")
                {
                    return *leader;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {timeout:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until every running node applied `index`, then checks their images are equal.
    async fn wait_converged(&self, index: u64) -> Arc<MetadataImage> {
        let mut images = Vec::new();
        for node in self.nodes.values() {
            images.push(node.wait_applied(index, WAIT).await.unwrap().image.clone());
        }
        for image in &images {
            assert_eq!(**image, *images[0]);
        }
        images[0].clone()
    }

    async fn shutdown(self) {
        for node in self.nodes.values() {
            node.shutdown().await;
        }
    }
}

fn topic(i: u32) -> MetadataRecord {
    MetadataRecord::CreateTopic {
        name: format!("topic-{i}"),
        id: Uuid::from_u128(u128::from(i) + 1000),
        configs: BTreeMap::new(),
    }
}

async fn with_timeout<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(90), f)
        .await
        .expect("test took over 90 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_apply_in_the_same_order() {
    with_timeout(async {
        let cluster = Cluster::start(3, 10_000).await;
        let leader = cluster.wait_leader(WAIT).await;
        let mut subscriptions: Vec<_> = cluster.nodes.values().map(|n| n.subscribe()).collect();
        let mut last = 0;
        // Proposals from every node, the followers' forwarded to the leader.
        for i in 0..30u32 {
            let id = u64::from(i % 3) + 1;
            last = cluster.node(id).propose(vec![topic(i)]).await.unwrap();
        }
        let image = cluster.wait_converged(last).await;
        assert_eq!(image.topics.len(), 30);
        let mut orders = Vec::new();
        for sub in &mut subscriptions {
            let mut order = Vec::new();
            while order.len() < 30 {
                let delta = tokio::time::timeout(WAIT, sub.recv()).await.unwrap().unwrap();
                order.push((delta.index, delta.delta.topics_created.iter().next().copied()));
            }
            orders.push(order);
        }
        assert!(orders.iter().all(|o| *o == orders[0]));
        let status = cluster.node(leader).status();
        assert_eq!(status.voters.len(), 3);
        assert!(status.voters.iter().all(|v| v.matched.is_some()), "{status:?}");
        // Applied everywhere, so committed: the leader's majority index is at least there.
        assert!(status.committed >= Some(last), "{status:?}");
        assert!(status.committed <= status.last_log_index, "{status:?}");
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        let seen = cluster.node(follower).status();
        assert_eq!((seen.leader, seen.term), (Some(leader), status.term));
        assert_eq!(
            seen.committed, seen.last_applied,
            "a follower reports what it applied"
        );
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_changes_nothing_anywhere_and_reaches_the_proposer() {
    with_timeout(async {
        let cluster = Cluster::start(3, 10_000).await;
        let leader = cluster.wait_leader(WAIT).await;
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        let orders = Uuid::from_u128(7);
        let mut setup = Vec::new();
        for id in 1..=3 {
            setup.push(registration(id, i64::from(id) * 10, None));
            setup.push(MetadataRecord::UnfenceBroker {
                id,
                epoch: i64::from(id) * 10,
            });
        }
        setup.push(MetadataRecord::CreateTopic {
            name: "orders".into(),
            id: orders,
            configs: BTreeMap::new(),
        });
        setup.push(MetadataRecord::Partition(PartitionRecord {
            topic_id: orders,
            partition: 0,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: vec![],
            removing: vec![],
        }));
        let applied = cluster.node(follower).propose(setup).await.unwrap();
        let before = cluster.wait_converged(applied).await;

        // The first record is fine on its own; the second fences a broker that still leads.
        let batch = vec![topic(1), MetadataRecord::FenceBroker { id: 1, epoch: 10 }];
        let err = cluster.node(follower).propose(batch).await.unwrap_err();
        let QuorumError::Refused {
            index,
            position,
            reason,
        } = err
        else {
            panic!("expected a refusal, got {err:?}");
        };
        assert_eq!(position, 1);
        assert!(reason.contains("still leads"), "{reason}");
        let after = cluster.wait_converged(index).await;
        assert_eq!(*after, *before, "a refused batch must change nothing");
        // The quorum goes on.
        let next = cluster.node(leader).propose(vec![topic(2)]).await.unwrap();
        assert!(next > index);
        assert!(cluster
            .wait_converged(next)
            .await
            .topic_by_name("topic-2")
            .is_some());
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_and_restart_from_the_data_dir() {
    with_timeout(async {
        let mut cluster = Cluster::start(3, 10_000).await;
        let mut leader = cluster.wait_leader(WAIT).await;
        let mut figures = Vec::new();
        let mut n = 0u32;
        for _trial in 0..8 {
            for _ in 0..5 {
                cluster.node(leader).propose(vec![topic(n)]).await.unwrap();
                n += 1;
            }
            let stopped = Instant::now();
            cluster.stop(leader).await;
            let new_leader = cluster.wait_leader(Duration::from_secs(5)).await;
            let elected = stopped.elapsed();
            assert_ne!(new_leader, leader);
            // Proposals continue under the new leader, from any node.
            let first = *cluster.nodes.keys().next().unwrap();
            let index = cluster.node(first).propose(vec![topic(n)]).await.unwrap();
            n += 1;
            let committed = stopped.elapsed();
            figures.push((elected, committed));
            // Typically 0.7-0.9 s; the bound leaves room for a split vote on a loaded machine.
            assert!(elected < Duration::from_secs(3), "failover took {elected:?}");
            // The old leader restarts from its data dir (same vote and log) and catches up.
            cluster.start_node(leader, None).await;
            let image = cluster.wait_converged(index).await;
            assert_eq!(image.topics.len(), n as usize);
            leader = cluster.wait_leader(WAIT).await;
        }
        let mut elected: Vec<_> = figures.iter().map(|f| f.0.as_millis()).collect();
        elected.sort_unstable();
        eprintln!(
            "leader failover over {} trials (heartbeat 100 ms, election timeout 200-400 ms): \
             new leader elected in {:?} ms (sorted), first commit after failover at {:?} ms",
            figures.len(),
            elected,
            figures.iter().map(|f| f.1.as_millis()).collect::<Vec<_>>()
        );
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_torn_log_tail_restarts_and_catches_up() {
    with_timeout(async {
        let mut cluster = Cluster::start(3, 10_000).await;
        let leader = cluster.wait_leader(WAIT).await;
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        for i in 0..10 {
            cluster.node(leader).propose(vec![topic(i)]).await.unwrap();
        }
        cluster.stop(follower).await;
        let log_dir = cluster.dirs[&follower].path().join("raft").join("log");
        let last = std::fs::read_dir(&log_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .max()
            .unwrap();
        let len = std::fs::metadata(&last).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let mut index = 0;
        for i in 10..20 {
            index = cluster.node(leader).propose(vec![topic(i)]).await.unwrap();
        }
        cluster.start_node(follower, None).await;
        let image = cluster.wait_converged(index).await;
        assert_eq!(image.topics.len(), 20);
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voters_are_added_and_removed_and_a_new_voter_gets_a_snapshot() {
    with_timeout(async {
        // Snapshots every 10 entries, so the new node's first entries are purged on the leader.
        let mut cluster = Cluster::start(3, 10).await;
        let leader = cluster.wait_leader(WAIT).await;
        for i in 0..40 {
            cluster.node(leader).propose(vec![topic(i)]).await.unwrap();
        }
        cluster.start_extra(4).await;
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        let addr = cluster.addrs[&4];
        cluster.node(follower).add_voter(4, addr).await.unwrap();
        let status = cluster.node(leader).status();
        assert_eq!(
            status.voters.iter().map(|v| v.id).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        let index = cluster.node(4).propose(vec![topic(100)]).await.unwrap();
        let image = cluster.wait_converged(index).await;
        assert_eq!(image.topics.len(), 41);

        // Remove a voter that is not the leader, then stop it: the other three go on.
        let removed = (1..=3).find(|id| *id != leader && *id != follower).unwrap();
        cluster.node(4).remove_voter(removed).await.unwrap();
        cluster.stop(removed).await;
        let status = cluster.node(leader).status();
        assert_eq!(status.voters.len(), 3, "{status:?}");
        assert!(status.voters.iter().all(|v| v.id != removed));
        let index = cluster.node(follower).propose(vec![topic(101)]).await.unwrap();
        assert_eq!(cluster.wait_converged(index).await.topics.len(), 42);
        cluster.shutdown().await;
    })
    .await;
}
