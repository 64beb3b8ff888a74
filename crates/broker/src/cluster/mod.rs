//! Single node or cluster member: the one place where the broker's answers depend on it.
//!
//! [`ClusterView`] is what handlers ask about brokers, topics, leaders and coordinators, and
//! how they create or delete topics. A single-node broker ([`ClusterView::Single`]) answers
//! from its own [`crate::topics::TopicRegistry`] and leads everything; a cluster member
//! ([`ClusterView::Cluster`], a [`ClusterNode`]) answers from the metadata image it has
//! applied locally and sends topic changes to the active controller. Handlers never test
//! which one they have.
//!
//! - [`settings`]: roles, voters, rack, default replication factor.
//! - [`node`]: a cluster member's broker side (registration, heartbeats, controller calls).
//! - [`controller`]: a controller node (the metadata quorum, the internal topics).
//! - [`sync`]: follows the metadata and makes local logs, partition roles and group
//!   coordination match it; the replication module plugs in there.
//! - [`isr`]: the ISR changes partition leaders ask the controller for.

pub mod controller;
mod isr;
pub mod node;
pub mod settings;
mod single;
pub mod sync;

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::broker::Broker;
use crate::partition::{Partition, PartitionRole};
use crate::replica::leader_state::IsrChange;
use crate::topic_config::TopicOverrides;
use crate::topics::Topic;

pub use controller::ControllerNode;
pub use node::{ClusterError, ClusterNode};
pub use settings::{ClusterArgs, ClusterSettings, Roles};

/// A broker clients may connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEndpoint {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// One partition as Metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub index: i32,
    /// -1 when the partition has no leader (LEADER_NOT_AVAILABLE).
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Replicas on brokers that are fenced or not registered.
    pub offline: Vec<i32>,
}

/// One topic as Metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionView>,
}

/// A topic change refused, with Kafka's error code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: i16,
    pub message: String,
}

impl Refusal {
    pub fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Self {
            code: error.code(),
            message: message.into(),
        }
    }
}

/// A CreateTopics entry after the handler's validation.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub overrides: TopicOverrides,
    pub validate_only: bool,
}

/// What was created (or would be, for `validate_only`).
#[derive(Debug, Clone)]
pub struct CreatedTopic {
    pub id: Uuid,
    pub overrides: TopicOverrides,
}

/// Where this broker's answers about the cluster come from.
#[derive(Debug)]
pub enum ClusterView {
    /// The single-node broker: itself, its registry, every partition led here.
    Single,
    /// A member of a cluster, answering from the metadata image.
    Cluster(Arc<ClusterNode>),
}

impl ClusterView {
    /// The cluster id clients see.
    pub fn cluster_id(&self, broker: &Broker) -> String {
        match self {
            Self::Single => broker.identity.cluster_id.clone(),
            Self::Cluster(node) => node.cluster_id().to_string(),
        }
    }

    /// The controller id clients see (the Raft leader when it is a live broker).
    pub fn controller_id(&self, broker: &Broker) -> i32 {
        match self {
            Self::Single => broker.node_id(),
            Self::Cluster(node) => node.controller_id(),
        }
    }

    /// The brokers clients may use.
    pub fn brokers(&self, broker: &Broker) -> Vec<BrokerEndpoint> {
        match self {
            Self::Single => vec![single::me(broker)],
            Self::Cluster(node) => node.brokers(),
        }
    }

    /// The brokers a Metadata answer lists: [`Self::brokers`], plus, in a cluster, brokers
    /// fenced in the last few seconds (see `ClusterNode::metadata_brokers`).
    pub fn metadata_brokers(&self, broker: &Broker) -> Vec<BrokerEndpoint> {
        match self {
            Self::Single => vec![single::me(broker)],
            Self::Cluster(node) => node.metadata_brokers(),
        }
    }

    pub fn topic(&self, broker: &Broker, name: &str) -> Option<TopicView> {
        match self {
            Self::Single => broker.topics.get(name).map(|t| single::describe(broker, &t)),
            Self::Cluster(node) => node.topic(name),
        }
    }

    pub fn topic_by_id(&self, broker: &Broker, id: Uuid) -> Option<TopicView> {
        match self {
            Self::Single => broker.topics.get_by_id(id).map(|t| single::describe(broker, &t)),
            Self::Cluster(node) => node.topic_by_id(id),
        }
    }

    /// Every topic, by name.
    pub fn topics(&self, broker: &Broker) -> Vec<TopicView> {
        match self {
            Self::Single => broker
                .topics
                .list()
                .iter()
                .map(|t| single::describe(broker, t))
                .collect(),
            Self::Cluster(node) => node.topics(),
        }
    }

    /// The coordinator of `group`, or COORDINATOR_NOT_AVAILABLE.
    pub fn coordinator(&self, broker: &Broker, group: &str) -> Result<BrokerEndpoint, i16> {
        match self {
            Self::Single => Ok(single::me(broker)),
            Self::Cluster(node) => node.coordinator(group),
        }
    }

    /// The error for a partition this broker has no log of: NOT_LEADER_OR_FOLLOWER when it
    /// exists elsewhere in the cluster, UNKNOWN_TOPIC_OR_PARTITION otherwise.
    pub fn missing_partition_code(&self, topic: &str, partition: i32) -> i16 {
        match self {
            Self::Cluster(node) if node.has_partition(topic, partition) => {
                ResponseError::NotLeaderOrFollower.code()
            }
            _ => ResponseError::UnknownTopicOrPartition.code(),
        }
    }

    /// The local log of partition `index` of `topic` (named `name`) when this broker leads
    /// it, with its leader epoch; else the error code for the client (NOT_LEADER_OR_FOLLOWER
    /// when it is led elsewhere, UNKNOWN_TOPIC_OR_PARTITION when it does not exist).
    pub fn led<'a>(
        &self,
        topic: Option<&'a Arc<Topic>>,
        name: &str,
        index: i32,
    ) -> Result<(&'a Arc<Partition>, i32), i16> {
        let Some(partition) = topic.and_then(|t| t.partition(index)) else {
            return Err(self.missing_partition_code(name, index));
        };
        partition
            .role()
            .leader_epoch()
            .map(|epoch| (partition, epoch))
            .ok_or(ResponseError::NotLeaderOrFollower.code())
    }

    /// The current leader and leader epoch of a partition, if known (for NOT_LEADER answers
    /// that name the leader: Fetch v12+, Produce v10+). In a cluster, the local replica's role
    /// when it is newer than the applied image: [`sync`] sets roles from a new image before
    /// publishing it, and a request refused because leadership just moved away should name
    /// the new leader, not this broker.
    pub fn leader_of(&self, broker: &Broker, topic: &str, partition: i32) -> Option<(i32, i32)> {
        match self {
            Self::Single => Some((broker.node_id(), 0)),
            Self::Cluster(node) => {
                let applied = node.leader_of(topic, partition);
                let local = broker
                    .topics
                    .get(topic)
                    .and_then(|t| t.partition(partition).map(|p| p.role()))
                    .map(|role| match role {
                        PartitionRole::Leader { epoch } => (node.node_id(), epoch),
                        PartitionRole::Follower { leader, epoch } => (leader, epoch),
                    });
                match (applied, local) {
                    (Some(a), Some(l)) if l.1 > a.1 => Some(l),
                    (a, l) => a.or(l),
                }
            }
        }
    }

    /// Whether broker `replica` may join an ISR now (registered and not fenced), in the
    /// applied image and in the newest one received: while [`sync`] applies an image that
    /// fences a broker (controlled shutdown takes it out of every ISR in the same batch), the
    /// leader must not propose it back, or acks=all waits on it until the controller refuses.
    pub fn eligible_for_isr(&self, replica: i32) -> bool {
        match self {
            Self::Single => false,
            Self::Cluster(node) => node.image().is_live(replica) && node.live_in_received(replica),
        }
    }

    /// Sends an ISR change a leader asks for to the controller, in the background; the
    /// partition adopts the answer ([`isr::propose`]).
    pub fn propose_isr(&self, topic_id: Option<Uuid>, partition: &Arc<Partition>, change: IsrChange) {
        match (self, topic_id) {
            (Self::Cluster(node), Some(topic_id)) => {
                isr::propose(node.clone(), topic_id, partition.clone(), change)
            }
            _ => partition.isr_change_failed(change.leader_epoch),
        }
    }

    /// The replication factor of a topic created without one.
    pub fn default_replication_factor(&self) -> i16 {
        match self {
            Self::Single => 1,
            Self::Cluster(node) => node.default_replication_factor(),
        }
    }

    /// How many brokers a replication factor may not exceed, when this broker can tell
    /// without asking the controller (a single node: 1; a cluster's controller checks).
    pub fn known_broker_limit(&self) -> Option<i32> {
        match self {
            Self::Single => Some(1),
            Self::Cluster(_) => None,
        }
    }

    /// Checks explicit replica assignments (one broker list per partition).
    pub fn check_assignments<'a>(
        &self,
        broker: &Broker,
        mut assignments: impl Iterator<Item = &'a [i32]>,
    ) -> Result<(), Refusal> {
        match self {
            Self::Single => {
                let me = broker.node_id();
                if assignments.all(|a| a == [me]) {
                    Ok(())
                } else {
                    Err(Refusal::new(
                        ResponseError::InvalidReplicaAssignment,
                        format!("Replica assignment must name exactly broker {me}, the only broker"),
                    ))
                }
            }
            Self::Cluster(_) => Err(Refusal::new(
                ResponseError::InvalidReplicaAssignment,
                "Explicit replica assignments are not supported yet; give a partition count and replication factor",
            )),
        }
    }

    pub async fn create_topic(&self, broker: &Broker, topic: NewTopic) -> Result<CreatedTopic, Refusal> {
        match self {
            Self::Single => single::create_topic(broker, topic).await,
            Self::Cluster(node) => node.create_topic(topic).await,
        }
    }

    pub async fn delete_topic(&self, broker: &Broker, name: &str) -> Result<(), Refusal> {
        match self {
            Self::Single => single::delete_topic(broker, name).await,
            Self::Cluster(node) => node.delete_topic(name).await,
        }
    }

    /// Grows `name` to `count` partitions (the handler checked the count).
    pub async fn create_partitions(
        &self,
        broker: &Broker,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), Refusal> {
        match self {
            Self::Single => single::create_partitions(broker, name, count, validate_only).await,
            Self::Cluster(node) => node.create_partitions(name, count, validate_only).await,
        }
    }

    /// Tells a cluster member about its own voter (a node with both roles).
    pub fn attach_controller(&self, controller: &ControllerNode) {
        if let Self::Cluster(node) = self {
            node.attach_quorum(controller.quorum().clone());
        }
    }

    /// Returns when this broker may serve clients: at once on a single node; in a cluster once
    /// it has applied the metadata up to its own registration. Before that its image may be
    /// empty or a prefix (a restarted broker): Metadata would call existing topics unknown
    /// (clients then drop what they know of them, or try to auto-create them) and requests
    /// would be refused with errors that send clients in circles. Kafka's brokers likewise
    /// start processing requests only after their initial metadata catch-up.
    pub async fn ready_to_serve(&self) {
        if let Self::Cluster(node) = self {
            node.wait_caught_up().await;
        }
    }

    /// Starts what a cluster member runs beside the server (metadata following).
    pub fn spawn_tasks(&self, broker: &Arc<Broker>, tasks: &mut JoinSet<()>) {
        if let Self::Cluster(node) = self {
            tasks.spawn(sync::run(broker.clone(), node.clone()));
            tasks.spawn(isr::expire_lagging_replicas(broker.clone(), node.clone()));
        }
    }

    /// Controlled shutdown: asks the controller to move this broker's leaderships away and
    /// waits for it, at most `bound`.
    pub async fn controlled_shutdown(&self, bound: std::time::Duration) {
        if let Self::Cluster(node) = self {
            node.controlled_shutdown(bound).await;
        }
    }

    /// Stops heartbeating and metadata following (after the server stopped).
    pub async fn stop(&self) {
        if let Self::Cluster(node) = self {
            node.stop().await;
        }
    }
}
