//! Three controller voters and simulated brokers ([`BrokerLifecycle`]s in this process), all
//! on 127.0.0.1 ephemeral ports. Every wait is bounded; measured times are printed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::net::TcpListener;
use uuid::Uuid;

use super::{ControllerRequest, ControllerResponse, MetadataUpdate};
use crate::image::MetadataImage;
use crate::lifecycle::{BrokerLifecycle, CallPolicy, ClientError, Directory, Lane, LifecycleConfig};
use crate::raft::{MetadataQuorum, NodeId, QuorumConfig};
use crate::records::{BrokerId, Listener};

const WAIT: Duration = Duration::from_secs(10);

struct Cluster {
    _dirs: Vec<TempDir>,
    addrs: Vec<SocketAddr>,
    nodes: BTreeMap<NodeId, MetadataQuorum>,
}

impl Cluster {
    async fn start() -> Self {
        let mut listeners = BTreeMap::new();
        for id in 1..=3u64 {
            listeners.insert(id, TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let voters: BTreeMap<NodeId, SocketAddr> = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().unwrap()))
            .collect();
        let mut dirs = Vec::new();
        let mut nodes = BTreeMap::new();
        for (id, listener) in listeners {
            let dir = TempDir::new().unwrap();
            let mut config = QuorumConfig::new(id, voters[&id], voters.clone(), dir.path().to_path_buf());
            config.controller.rebalance_interval = None;
            nodes.insert(id, MetadataQuorum::start_on(config, listener).await.unwrap());
            dirs.push(dir);
        }
        Self {
            _dirs: dirs,
            addrs: voters.values().copied().collect(),
            nodes,
        }
    }

    fn broker(&self, id: BrokerId) -> BrokerLifecycle {
        let listener = Listener {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9000 + u16::try_from(id).unwrap(),
        };
        BrokerLifecycle::start(LifecycleConfig::new(id, vec![listener], self.addrs.clone()))
    }

    /// The node that is the active controller, waiting for one.
    async fn active(&self) -> NodeId {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((id, _)) = self.nodes.iter().find(|(_, n)| n.controller().is_active()) {
                return *id;
            }
            assert!(Instant::now() < deadline, "no active controller");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the active controller's image satisfies `pred`; answers it.
    async fn wait_image(&self, what: &str, pred: impl Fn(&MetadataImage) -> bool) -> Arc<MetadataImage> {
        let deadline = Instant::now() + WAIT;
        loop {
            let active = self.active().await;
            let image = self.nodes[&active].image();
            if pred(&image) {
                return image;
            }
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn shutdown(self) {
        for node in self.nodes.values() {
            node.shutdown().await;
        }
    }
}

async fn with_timeout<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("test took over 120 s");
}

/// Three unfenced brokers and topic `orders` with 12 partitions, RF 3.
async fn three_brokers_and_a_topic(cluster: &Cluster) -> (Vec<BrokerLifecycle>, Uuid) {
    let brokers: Vec<_> = (1..=3).map(|id| cluster.broker(id)).collect();
    for b in &brokers {
        assert!(b.wait_unfenced(WAIT).await.is_some(), "broker not unfenced");
    }
    let (id, partitions) = brokers[0]
        .client()
        .create_topic("orders", 12, 3, BTreeMap::new(), false)
        .await
        .unwrap();
    assert_eq!(partitions.len(), 12);
    (brokers, id)
}

fn leads(image: &MetadataImage, id: BrokerId) -> usize {
    image.partitions().filter(|p| p.leader == id).count()
}

fn fenced_and_gone(image: &MetadataImage, id: BrokerId) -> bool {
    !image.is_live(id)
        && image
            .partitions()
            .all(|p| p.leader != id && (p.isr == vec![id] || !p.isr.contains(&id)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_register_unfence_and_a_topic_is_placed_balanced() {
    with_timeout(async {
        let cluster = Cluster::start().await;
        let (brokers, topic) = three_brokers_and_a_topic(&cluster).await;
        let image = cluster
            .wait_image("topic", |i| i.topics.contains_key(&topic))
            .await;
        let epochs: Vec<i64> = (1..=3).map(|id| image.brokers[&id].registration.epoch).collect();
        assert!(epochs.iter().all(|e| *e > 0), "{epochs:?}");
        for id in 1..=3 {
            assert_eq!(leads(&image, id), 4, "broker {id} leads 4 of 12");
            assert_eq!(
                image.partitions().filter(|p| p.replicas.contains(&id)).count(),
                12
            );
        }
        assert!(image
            .partitions()
            .all(|p| p.isr == p.replicas && p.leader == p.replicas[0]));

        let client = brokers[1].client();
        let code = |r: Result<(Uuid, Vec<_>), ClientError>| r.unwrap_err().kafka_code();
        assert_eq!(
            code(client.create_topic("orders", 1, 1, BTreeMap::new(), false).await),
            36
        );
        assert_eq!(
            code(client.create_topic("x", 1, 4, BTreeMap::new(), false).await),
            38
        );
        assert_eq!(
            code(client.create_topic("x", 0, 1, BTreeMap::new(), false).await),
            37
        );
        assert_eq!(
            code(client.create_topic("a/b", 1, 1, BTreeMap::new(), false).await),
            17
        );
        let (_, planned) = client
            .create_topic("v", 3, 2, BTreeMap::new(), true)
            .await
            .unwrap();
        assert_eq!(planned.len(), 3);
        assert!(cluster.nodes[&cluster.active().await]
            .image()
            .topic_by_name("v")
            .is_none());
        let first = client.allocate_producer_ids(2, epochs[1]).await.unwrap();
        let second = brokers[2]
            .client()
            .allocate_producer_ids(3, epochs[2])
            .await
            .unwrap();
        assert_eq!((first, second), ((0, 1000), (1000, 1000)));
        assert_eq!(
            client
                .allocate_producer_ids(2, epochs[1] + 1)
                .await
                .unwrap_err()
                .kafka_code(),
            77
        );

        // Every broker's followed image reaches the topic.
        for b in &brokers {
            let mut metadata = b.metadata();
            tokio::time::timeout(WAIT, metadata.wait_for(|m| m.image.topics.contains_key(&topic)))
                .await
                .unwrap()
                .unwrap();
        }
        drop(brokers);
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_broker_is_fenced_within_the_session_timeout_and_comes_back() {
    with_timeout(async {
        let cluster = Cluster::start().await;
        let (brokers, _) = three_brokers_and_a_topic(&cluster).await;
        brokers[1].pause_heartbeats(true);
        let paused = Instant::now();
        let image = cluster
            .wait_image("broker 2 fenced", |i| fenced_and_gone(i, 2))
            .await;
        let fenced_after = paused.elapsed();
        eprintln!(
            "silent broker fenced after {} ms (session timeout 1500 ms)",
            fenced_after.as_millis()
        );
        assert!(fenced_after >= Duration::from_millis(1200), "{fenced_after:?}");
        assert!(fenced_after < Duration::from_millis(2500), "{fenced_after:?}");
        assert!(image.partitions().all(|p| p.leader == 1 || p.leader == 3));
        assert_eq!(leads(&image, 1) + leads(&image, 3), 12);

        brokers[1].pause_heartbeats(false);
        cluster.wait_image("broker 2 back", |i| i.is_live(2)).await;
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_broker_is_fenced_in_under_a_second_and_rejoins_with_a_new_epoch() {
    with_timeout(async {
        let cluster = Cluster::start().await;
        let (mut brokers, _) = three_brokers_and_a_topic(&cluster).await;
        let mut figures = Vec::new();
        for round in 0..3 {
            let victim = brokers.remove(2);
            let old_epoch = victim.status().borrow().epoch.unwrap();
            drop(victim);
            let killed = Instant::now();
            let image = cluster
                .wait_image("broker 3 fenced", |i| fenced_and_gone(i, 3))
                .await;
            let fenced_after = killed.elapsed();
            figures.push(fenced_after.as_millis());
            assert!(
                fenced_after < Duration::from_secs(1),
                "round {round}: {fenced_after:?}"
            );
            assert!(image.partitions().all(|p| p.leader == 1 || p.leader == 2));

            let restarted = cluster.broker(3);
            let epoch = restarted
                .wait_unfenced(WAIT)
                .await
                .expect("restarted broker unfenced");
            assert!(epoch > old_epoch, "new epoch {epoch} after {old_epoch}");
            brokers.push(restarted);
        }
        eprintln!("dropped broker fenced after {figures:?} ms (reconnect grace 200 ms)");
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controlled_shutdown_moves_every_leadership_away_before_shutdown_ok() {
    with_timeout(async {
        let cluster = Cluster::start().await;
        let (mut brokers, _) = three_brokers_and_a_topic(&cluster).await;
        let leaving = brokers.remove(0);
        let asked = Instant::now();
        assert!(leaving.controlled_shutdown(Duration::from_secs(5)).await);
        let took = asked.elapsed();
        let image = cluster.nodes[&cluster.active().await].image();
        assert_eq!(leads(&image, 1), 0, "leads nothing at shutdown_ok");
        assert!(image
            .partitions()
            .all(|p| !p.isr.contains(&1) && (p.leader == 2 || p.leader == 3)));
        eprintln!("controlled shutdown acknowledged after {} ms", took.as_millis());
        leaving.stop().await;
        // Nothing else moves: the others stay live.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let image = cluster.nodes[&cluster.active().await].image();
        assert!(image.is_live(2) && image.is_live(3));
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_active_controller_takes_over_and_fences_a_dead_broker() {
    with_timeout(async {
        let mut cluster = Cluster::start().await;
        let (mut brokers, _) = three_brokers_and_a_topic(&cluster).await;

        // 1. The active controller stops; a new one takes over; live brokers stay unfenced.
        let old = cluster.active().await;
        let stopped = Instant::now();
        let node = cluster.nodes.remove(&old).unwrap();
        node.shutdown().await;
        let new = cluster.active().await;
        let failover = stopped.elapsed();
        assert_ne!(new, old);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let image = cluster.nodes[&new].image();
        assert!(
            (1..=3).all(|id| image.is_live(id)),
            "a live broker was fenced in the failover"
        );

        // 2. The new one fences a dead broker as fast as the old one would.
        let victim = brokers.remove(2);
        drop(victim);
        let killed = Instant::now();
        cluster
            .wait_image("broker 3 fenced", |i| fenced_and_gone(i, 3))
            .await;
        let fenced_after = killed.elapsed();
        assert!(fenced_after < Duration::from_secs(1), "{fenced_after:?}");
        eprintln!(
            "controller failover: new active controller after {} ms; it fenced a dropped broker after {} ms",
            failover.as_millis(),
            fenced_after.as_millis()
        );
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_and_broker_lost_together_the_broker_is_fenced_by_the_next_controller() {
    with_timeout(async {
        let mut cluster = Cluster::start().await;
        let (mut brokers, _) = three_brokers_and_a_topic(&cluster).await;
        // As when a node running both roles is killed: its controller and its broker go at once.
        let old = cluster.active().await;
        let victim = brokers.remove(0);
        let killed = Instant::now();
        drop(victim);
        let node = cluster.nodes.remove(&old).unwrap();
        node.shutdown().await;
        let image = cluster
            .wait_image("broker 1 fenced", |i| fenced_and_gone(i, 1))
            .await;
        let took = killed.elapsed();
        assert!(image.is_live(2) && image.is_live(3));
        assert!(took < Duration::from_secs(3), "{took:?}");
        eprintln!(
            "active controller and a broker lost together: broker fenced, its partitions re-led after {} ms \
             (election + failover grace 1000 ms)",
            took.as_millis()
        );
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_only_node_follows_every_change() {
    with_timeout(async {
        let cluster = Cluster::start().await;
        let (brokers, _) = three_brokers_and_a_topic(&cluster).await;
        let mut deltas = brokers[2].subscribe();
        let client = brokers[0].client();
        for i in 0..20 {
            client
                .create_topic(&format!("t{i}"), 2, 2, BTreeMap::new(), false)
                .await
                .unwrap();
        }
        for i in 0..20 {
            client
                .set_topic_config(
                    &format!("t{i}"),
                    vec![("retention.ms".into(), Some(format!("{i}")))],
                )
                .await
                .unwrap();
        }
        for i in 0..5 {
            client.delete_topic(&format!("t{i}")).await.unwrap();
        }
        client.create_partitions("t10", 6, false).await.unwrap();
        client.elect_leaders(true, None).await.unwrap();
        // A broker that starts now is far enough behind to be sent the whole image.
        let late = cluster.broker(4);
        assert!(late.wait_unfenced(WAIT).await.is_some());
        let mut brokers = brokers;
        brokers.push(late);
        let mut lane = Lane::new(Directory::new(vec![cluster.addrs[0].to_string()]), None);
        let policy = CallPolicy {
            timeout: WAIT,
            retry_for: WAIT,
        };
        let from_scratch = ControllerRequest::FetchMetadata {
            after_index: 0,
            max_wait_ms: 0,
        };
        let answer = lane.call(&from_scratch, policy).await.unwrap();
        assert!(
            matches!(answer, ControllerResponse::Metadata(MetadataUpdate::Image { .. })),
            "a follower that far behind gets the whole image"
        );

        let active = cluster.active().await;
        let last = cluster.nodes[&active].applied().last_applied.unwrap().index;
        let mut images = Vec::new();
        for node in cluster.nodes.values() {
            let state = node.wait_applied(last, WAIT).await.unwrap();
            images.push(state.image.clone());
        }
        for b in &brokers {
            let mut metadata = b.metadata();
            let m = tokio::time::timeout(WAIT, metadata.wait_for(|m| m.index >= last))
                .await
                .unwrap()
                .unwrap()
                .clone();
            // Nothing changes after `last` (heartbeats change no metadata), so images agree.
            assert_eq!(*m.image, *images[0], "broker image differs from the voters'");
        }
        assert!(images.iter().all(|i| **i == *images[0]));
        assert_eq!(images[0].topics.len(), 16);
        let mut created = 0;
        while let Ok(delta) = deltas.try_recv() {
            created += delta.delta.topics_created.len();
        }
        assert!(created >= 20, "deltas told {created} topic creations");
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_partition_shrinks_and_expands_the_isr() {
    with_timeout(async {
        let cluster = Cluster::start().await;
        let (brokers, topic) = three_brokers_and_a_topic(&cluster).await;
        let image = cluster
            .wait_image("topic", |i| i.topics.contains_key(&topic))
            .await;
        let p = image.partition(topic, 0).unwrap().clone();
        let leader = p.leader;
        let follower = *p.replicas.iter().find(|b| **b != leader).unwrap();
        let lc = &brokers[usize::try_from(leader - 1).unwrap()];
        let epoch = lc.status().borrow().epoch.unwrap();
        let shrunk_isr: Vec<BrokerId> = p.isr.iter().copied().filter(|b| *b != follower).collect();
        let shrunk = lc
            .client()
            .alter_partition(
                leader,
                epoch,
                topic,
                0,
                p.leader_epoch,
                p.partition_epoch,
                shrunk_isr.clone(),
            )
            .await
            .unwrap();
        assert_eq!(shrunk.isr, shrunk_isr);
        assert_eq!(
            (shrunk.leader_epoch, shrunk.partition_epoch),
            (p.leader_epoch, p.partition_epoch + 1)
        );
        // The old partition epoch is fenced; a non-leader is refused.
        let stale = lc
            .client()
            .alter_partition(
                leader,
                epoch,
                topic,
                0,
                p.leader_epoch,
                p.partition_epoch,
                p.isr.clone(),
            )
            .await;
        assert_eq!(stale.unwrap_err().kafka_code(), 95);
        let follower_epoch = brokers[usize::try_from(follower - 1).unwrap()]
            .status()
            .borrow()
            .epoch
            .unwrap();
        let not_leader = brokers[usize::try_from(follower - 1).unwrap()]
            .client()
            .alter_partition(
                follower,
                follower_epoch,
                topic,
                0,
                shrunk.leader_epoch,
                shrunk.partition_epoch,
                p.isr.clone(),
            )
            .await;
        assert_eq!(not_leader.unwrap_err().kafka_code(), 6);
        let expanded = lc
            .client()
            .alter_partition(
                leader,
                epoch,
                topic,
                0,
                shrunk.leader_epoch,
                shrunk.partition_epoch,
                p.isr.clone(),
            )
            .await
            .unwrap();
        assert_eq!(expanded.isr, p.isr);
        assert_eq!(expanded.partition_epoch, p.partition_epoch + 2);
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_before_the_session_expires_replaces_the_old_incarnation() {
    with_timeout(async {
        let cluster = Cluster::start().await;
        let (brokers, _) = three_brokers_and_a_topic(&cluster).await;
        let old_epoch = brokers[1].status().borrow().epoch.unwrap();
        // The old process hangs (its connection stays open); a new one starts with the same id.
        brokers[1].pause_heartbeats(true);
        let restarted = cluster.broker(2);
        let epoch = restarted
            .wait_unfenced(WAIT)
            .await
            .expect("new incarnation unfenced");
        assert!(epoch > old_epoch);
        let image = cluster.nodes[&cluster.active().await].image();
        assert_eq!(
            image.brokers[&2].registration.incarnation,
            restarted.incarnation()
        );
        assert_eq!(
            leads(&image, 2),
            0,
            "the old incarnation's leaderships moved away"
        );
        assert!(image.partitions().all(|p| p.leader != crate::records::NO_LEADER));
        cluster.shutdown().await;
    })
    .await;
}
