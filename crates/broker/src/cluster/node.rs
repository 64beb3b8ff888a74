//! [`ClusterNode`]: a broker's membership in its cluster. It runs the
//! [`BrokerLifecycle`] (registration with the advertised client listener and rack, heartbeats,
//! metadata following, controlled shutdown), answers [`super::ClusterView`]'s questions from
//! the image this broker has applied locally, and sends topic changes to the active
//! controller, answering once the local image shows them (bounded).
//!
//! "Applied locally" is the image [`super::sync`] last made the local logs and roles match,
//! not the newest one received: Metadata never names this broker leader of a partition whose
//! log is not open here yet.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use sapper_meta::lifecycle::{
    BrokerLifecycle, BrokerMetadata, BrokerStatus, ClientError, ControllerClient, LifecycleConfig,
};
use sapper_meta::raft::MetadataQuorum;
use sapper_meta::{BrokerState, Listener, MetadataImage, TopicImage, NO_LEADER};
use thiserror::Error;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::settings::{ClusterSettings, Voters};
use super::{BrokerEndpoint, CreatedTopic, NewTopic, PartitionView, Refusal, TopicView};
use crate::group::store::{partition_for, OFFSETS_TOPIC};
use crate::replica::fetcher::FetcherConfig;
use crate::replica::manager::FetcherManager;

/// How long a topic change waits for the local image to show it before answering anyway.
const SHOW_CHANGE_WITHIN: Duration = Duration::from_secs(5);
/// Controlled shutdown: how long to wait for the local image to show the moved leaderships,
/// then how long to keep answering (with NOT_LEADER_OR_FOLLOWER and fresh Metadata) while
/// the other brokers apply the same change.
const LEAVE_WITHIN: Duration = Duration::from_secs(1);
const DRAIN_AFTER_LEAVING: Duration = Duration::from_millis(300);
/// How long Metadata keeps listing a broker after it was fenced (see
/// [`ClusterNode::metadata_brokers`]).
const FENCED_LISTED_FOR: std::time::Duration = std::time::Duration::from_secs(3);

/// The listener name brokers register their client listener under.
const CLIENT_LISTENER: &str = "PLAINTEXT";

/// Why a cluster member could not start.
#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("cluster mode needs controller_quorum_voters")]
    NoVoters,
}

/// A running broker's membership in its cluster.
pub struct ClusterNode {
    node_id: i32,
    settings: ClusterSettings,
    cluster_id: String,
    client: ControllerClient,
    /// What the lifecycle receives from the quorum.
    received: watch::Receiver<Arc<BrokerMetadata>>,
    /// Registration progress: the broker epoch controller requests carry.
    status: watch::Receiver<BrokerStatus>,
    /// The image local state matches (published by [`super::sync`]).
    applied: watch::Sender<Arc<MetadataImage>>,
    /// Set at the first publish: this broker has caught up with the metadata and may serve.
    caught_up: watch::Sender<bool>,
    /// When each fenced broker was first seen fenced here (see [`Self::metadata_brokers`]).
    fenced_since: parking_lot::Mutex<HashMap<i32, std::time::Instant>>,
    lifecycle: tokio::sync::Mutex<Option<BrokerLifecycle>>,
    /// This node's voter, when it is also a controller (attached once it runs).
    quorum: OnceLock<Arc<MetadataQuorum>>,
    /// The replica fetchers of the partitions this broker follows (driven by [`super::sync`]).
    fetchers: FetcherManager,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("node_id", &self.node_id)
            .field("cluster_id", &self.cluster_id)
            .field("voter", &self.quorum.get().is_some())
            .finish_non_exhaustive()
    }
}

impl ClusterNode {
    /// Starts registering broker `node_id`, advertised at `host:port`, and following metadata
    /// (from its own controller listener first when it is also a controller).
    pub fn start(
        node_id: i32,
        settings: &ClusterSettings,
        host: &str,
        port: i32,
    ) -> Result<Self, ClusterError> {
        let voters = settings.voters.as_ref().ok_or(ClusterError::NoVoters)?;
        let listener = Listener {
            name: CLIENT_LISTENER.to_string(),
            host: host.to_string(),
            port: u16::try_from(port).unwrap_or(0),
        };
        let mut config = LifecycleConfig::new(node_id, vec![listener], voters.values().copied().collect());
        config.rack.clone_from(&settings.rack);
        config.local_controller = settings
            .roles
            .controller
            .then(|| settings.controller_listen(node_id))
            .flatten();
        let lifecycle = BrokerLifecycle::start(config);
        let (applied, _) = watch::channel(Arc::new(MetadataImage::default()));
        Ok(Self {
            node_id,
            settings: settings.clone(),
            cluster_id: cluster_id(voters),
            client: lifecycle.client().clone(),
            received: lifecycle.metadata(),
            status: lifecycle.status(),
            applied,
            caught_up: watch::channel(false).0,
            fenced_since: parking_lot::Mutex::default(),
            lifecycle: tokio::sync::Mutex::new(Some(lifecycle)),
            quorum: OnceLock::new(),
            fetchers: FetcherManager::new(FetcherConfig::new(node_id), CancellationToken::new()),
        })
    }

    /// This node's own voter, once started: DescribeCluster and Metadata then name the Raft
    /// leader as controller.
    pub fn attach_quorum(&self, quorum: Arc<MetadataQuorum>) {
        let _ = self.quorum.set(quorum);
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The metadata as received from the quorum (ahead of [`Self::image`] while it is applied).
    pub fn received(&self) -> watch::Receiver<Arc<BrokerMetadata>> {
        self.received.clone()
    }

    /// Whether broker `id` is registered and unfenced in the newest metadata received (which
    /// may be ahead of [`Self::image`]).
    pub(super) fn live_in_received(&self, id: i32) -> bool {
        self.received.borrow().image.is_live(id)
    }

    /// The image this broker's logs and roles match.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.applied.borrow().clone()
    }

    /// Called by [`super::sync`] once local state matches `image`.
    pub(super) fn publish(&self, image: Arc<MetadataImage>) {
        {
            let mut fenced_since = self.fenced_since.lock();
            fenced_since.retain(|id, _| image.brokers.get(id).is_some_and(|b| b.fenced));
            for (id, _) in image.brokers.iter().filter(|(_, b)| b.fenced) {
                fenced_since.entry(*id).or_insert_with(std::time::Instant::now);
            }
        }
        self.applied.send_replace(image);
        if !*self.caught_up.borrow() {
            tracing::info!("caught up with the cluster metadata: serving clients");
            self.caught_up.send_replace(true);
        }
    }

    /// Returns once this broker has applied metadata at least up to its own registration
    /// (the first [`Self::publish`]).
    pub async fn wait_caught_up(&self) {
        let mut caught_up = self.caught_up.subscribe();
        // The sender lives as long as `self`, so this only ends once caught up.
        let _ = caught_up.wait_for(|ready| *ready).await;
    }

    /// The controller's client, for requests beyond topic changes (AlterPartition, ...).
    pub fn client(&self) -> &ControllerClient {
        &self.client
    }

    /// This broker's standing with the controller (registration epoch, fenced).
    pub fn status(&self) -> watch::Receiver<BrokerStatus> {
        self.status.clone()
    }

    /// The epoch of this broker's current registration (`None` until registered).
    pub fn broker_epoch(&self) -> Option<i64> {
        self.status.borrow().epoch
    }

    pub(super) fn controller_id(&self) -> i32 {
        let image = self.image();
        self.quorum
            .get()
            .and_then(|q| q.leader())
            .and_then(|id| i32::try_from(id).ok())
            .filter(|id| image.is_live(*id))
            .unwrap_or(self.node_id)
    }

    pub(super) fn brokers(&self) -> Vec<BrokerEndpoint> {
        self.image().live_brokers().filter_map(endpoint).collect()
    }

    /// The brokers a Metadata answer lists: the live ones, plus those fenced less than
    /// [`FENCED_LISTED_FOR`] ago.
    ///
    /// Why the grace: the controller fences a dead broker and moves its leaderships in one
    /// batch, so one Metadata answer both names the new leaders and drops the broker.
    /// librdkafka (2.12) then migrates the partitions to their new leaders and decommissions
    /// the dropped broker in the same pass, and the decommission sends those partitions back to
    /// "no leader" until its next metadata refresh (1 s later with
    /// `topic.metadata.refresh.interval.ms=1000`, 5 min by default): failover took 2 s
    /// instead of 1 s. Listed a little longer, the dead broker is dropped by a later answer,
    /// once no partition points at it. A listed dead broker costs a client nothing unless it
    /// connects to it, and nothing points clients at it (leaders, coordinators and ISRs
    /// already exclude it).
    pub(super) fn metadata_brokers(&self) -> Vec<BrokerEndpoint> {
        let image = self.image();
        let fenced_since = self.fenced_since.lock();
        image
            .brokers
            .iter()
            .filter(|(id, b)| {
                !b.fenced
                    || fenced_since
                        .get(*id)
                        .is_some_and(|since| since.elapsed() < FENCED_LISTED_FOR)
            })
            .filter_map(|(_, b)| endpoint(b))
            .collect()
    }

    /// Registered brokers that are fenced (DescribeCluster v2 lists them on request).
    pub fn fenced_brokers(&self) -> Vec<BrokerEndpoint> {
        let image = self.image();
        image
            .brokers
            .values()
            .filter(|b| b.fenced)
            .filter_map(endpoint)
            .collect()
    }

    pub(super) fn topic(&self, name: &str) -> Option<TopicView> {
        let image = self.image();
        image.topic_by_name(name).map(|t| describe(&image, t))
    }

    pub(super) fn topic_by_id(&self, id: Uuid) -> Option<TopicView> {
        let image = self.image();
        image.topics.get(&id).map(|t| describe(&image, t))
    }

    pub(super) fn topics(&self) -> Vec<TopicView> {
        let image = self.image();
        image
            .topic_ids
            .values()
            .filter_map(|id| image.topics.get(id))
            .map(|t| describe(&image, t))
            .collect()
    }

    pub(super) fn coordinator(&self, group: &str) -> Result<BrokerEndpoint, i16> {
        let image = self.image();
        let unavailable = ResponseError::CoordinatorNotAvailable.code();
        let leader = image
            .topic_by_name(OFFSETS_TOPIC)
            .and_then(|t| t.partitions.get(&partition_for(group)))
            .map(|p| p.leader)
            .filter(|l| *l != NO_LEADER)
            .ok_or(unavailable)?;
        image
            .brokers
            .get(&leader)
            .filter(|b| !b.fenced)
            .and_then(endpoint)
            .ok_or(unavailable)
    }

    pub(super) fn has_partition(&self, topic: &str, partition: i32) -> bool {
        self.image()
            .topic_by_name(topic)
            .is_some_and(|t| t.partitions.contains_key(&partition))
    }

    pub(super) fn leader_of(&self, topic: &str, partition: i32) -> Option<(i32, i32)> {
        self.image()
            .topic_by_name(topic)
            .and_then(|t| t.partitions.get(&partition))
            .map(|p| (p.leader, p.leader_epoch))
    }

    /// `default_replication_factor`, capped by the live brokers.
    pub fn default_replication_factor(&self) -> i16 {
        let live = self.image().live_brokers().count().max(1);
        self.settings
            .default_replication_factor
            .min(i16::try_from(live).unwrap_or(i16::MAX))
    }

    pub(super) async fn create_topic(&self, topic: NewTopic) -> Result<CreatedTopic, Refusal> {
        let (id, _) = self
            .client
            .create_topic(
                &topic.name,
                topic.partitions,
                topic.replication_factor,
                topic.overrides.0.clone(),
                topic.validate_only,
            )
            .await
            .map_err(refusal)?;
        if !topic.validate_only {
            let name = topic.name.clone();
            self.wait_applied(move |image| image.topic_ids.get(&name) == Some(&id))
                .await;
        }
        Ok(CreatedTopic {
            id,
            overrides: topic.overrides,
        })
    }

    pub(super) async fn delete_topic(&self, name: &str) -> Result<(), Refusal> {
        let id = self.client.delete_topic(name).await.map_err(refusal)?;
        self.wait_applied(move |image| !image.topics.contains_key(&id))
            .await;
        Ok(())
    }

    pub(super) async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), Refusal> {
        self.client
            .create_partitions(name, count, validate_only)
            .await
            .map_err(refusal)?;
        if !validate_only {
            let name = name.to_string();
            let wanted = usize::try_from(count).unwrap_or(0);
            self.wait_applied(move |image| {
                image
                    .topic_by_name(&name)
                    .is_none_or(|t| t.partitions.len() >= wanted)
            })
            .await;
        }
        Ok(())
    }

    /// Waits (bounded) until the applied image satisfies `done`.
    async fn wait_applied(&self, done: impl Fn(&MetadataImage) -> bool) {
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(SHOW_CHANGE_WITHIN, applied.wait_for(|i| done(i))).await;
        if reached.is_err() {
            tracing::warn!("a committed topic change is not applied here after {SHOW_CHANGE_WITHIN:?}");
        }
    }

    pub(super) async fn controlled_shutdown(&self, bound: Duration) {
        let guard = self.lifecycle.lock().await;
        let Some(lifecycle) = guard.as_ref() else {
            return;
        };
        if !lifecycle.controlled_shutdown(bound).await {
            tracing::warn!("controlled shutdown: no confirmation within {bound:?}; stopping anyway");
            return;
        }
        tracing::info!("controlled shutdown: the controller moved every leadership away");
        drop(guard);
        // Keep serving a moment: the other brokers apply the moves tens of milliseconds after
        // the controller confirms them, and a client that loses its connection to this broker
        // asks them for metadata at once; if they still name this broker it waits for its next
        // periodic refresh (librdkafka: 1 s). Until we stop, produce requests here get
        // NOT_LEADER_OR_FOLLOWER and this broker's own Metadata already names the new leaders.
        let me = self.node_id;
        let mut applied = self.applied.subscribe();
        let moved = applied.wait_for(|image| image.partitions().all(|p| p.leader != me));
        if tokio::time::timeout(LEAVE_WITHIN, moved).await.is_err() {
            tracing::warn!(
                "controlled shutdown: this broker's image still shows it leading after {LEAVE_WITHIN:?}"
            );
        }
        tokio::time::sleep(DRAIN_AFTER_LEAVING).await;
    }

    /// The follower side: one replica fetcher per leader this broker follows partitions at.
    pub fn fetchers(&self) -> &FetcherManager {
        &self.fetchers
    }

    /// The client address of broker `id` in the applied image.
    pub(super) fn client_addr(image: &MetadataImage, id: i32) -> Option<SocketAddr> {
        let b = image.brokers.get(&id)?;
        let e = endpoint(b)?;
        let port = u16::try_from(e.port).ok()?;
        // IP literals need no lookup; a host name is resolved (rarely: at role changes).
        std::net::ToSocketAddrs::to_socket_addrs(&(e.host.as_str(), port))
            .ok()?
            .next()
    }

    pub(super) async fn stop(&self) {
        self.fetchers.shutdown().await;
        if let Some(lifecycle) = self.lifecycle.lock().await.take() {
            lifecycle.stop().await;
        }
    }
}

fn refusal(e: ClientError) -> Refusal {
    Refusal {
        code: e.kafka_code(),
        message: e.to_string(),
    }
}

/// A registered broker's client endpoint (its first listener).
fn endpoint(b: &BrokerState) -> Option<BrokerEndpoint> {
    let listener = b
        .registration
        .listeners
        .iter()
        .find(|l| l.name == CLIENT_LISTENER)
        .or_else(|| b.registration.listeners.first())?;
    Some(BrokerEndpoint {
        id: b.registration.id,
        host: listener.host.clone(),
        port: i32::from(listener.port),
        rack: b.registration.rack.clone(),
    })
}

fn describe(image: &MetadataImage, topic: &TopicImage) -> TopicView {
    TopicView {
        name: topic.name.clone(),
        id: topic.id,
        partitions: topic
            .partitions
            .values()
            .map(|p| PartitionView {
                index: p.partition,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                offline: p
                    .replicas
                    .iter()
                    .copied()
                    .filter(|r| !image.is_live(*r))
                    .collect(),
            })
            .collect(),
    }
}

/// The cluster id every member derives from the initial voters (the image has none yet):
/// 22 URL-safe characters of a 128-bit FNV-1a hash of `id@addr,...`, the shape of Kafka's.
/// Two clusters with different voters get different ids; changing `--voters` changes it.
pub fn cluster_id(voters: &Voters) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let text: Vec<String> = voters.iter().map(|(id, addr)| format!("{id}@{addr}")).collect();
    let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for byte in text.join(",").bytes() {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    (0..22)
        .map(|i| {
            ALPHABET
                .get(((hash >> (i * 6)) & 63) as usize)
                .copied()
                .unwrap_or(b'A') as char
        })
        .collect()
}

/// The voters' controller listeners as [`MetadataQuorum`] takes them.
pub fn quorum_voters(voters: &Voters) -> BTreeMap<u64, SocketAddr> {
    voters
        .iter()
        .filter_map(|(id, addr)| u64::try_from(*id).ok().map(|id| (id, *addr)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_stable_and_differ_per_voter_set() {
        let a = super::super::settings::parse_voters("1@127.0.0.1:1,2@127.0.0.1:2").unwrap();
        let b = super::super::settings::parse_voters("1@127.0.0.1:1,2@127.0.0.1:3").unwrap();
        assert_eq!(cluster_id(&a), cluster_id(&a.clone()));
        assert_ne!(cluster_id(&a), cluster_id(&b));
        assert_eq!(cluster_id(&a).len(), 22);
    }
}
