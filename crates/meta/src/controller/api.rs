//! The broker <-> controller protocol: what brokers ask the controller on the controller
//! listener, what it answers, and its errors with their Kafka codes.
//!
//! These travel inside [`crate::raft::rpc::Request::Controller`] /
//! [`crate::raft::rpc::Response::Controller`] as serde_json, like the Raft RPCs. Heartbeats
//! are answered by the active controller only (it must see the connection close); every other
//! request may go to any voter, which forwards it to the leader, except `FetchMetadata`, which
//! any voter answers from its own applied state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::election::AlterPartitionError;
use crate::image::MetadataImage;
use crate::raft::QuorumStatus;
use crate::records::{BrokerId, Listener, MetadataRecord, PartitionRecord};

/// What a broker asks the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// Register (or re-register after a restart); answers [`ControllerResponse::Registered`].
    RegisterBroker {
        id: BrokerId,
        incarnation: Uuid,
        rack: Option<String>,
        listeners: Vec<Listener>,
    },
    /// Liveness, metadata progress and controlled shutdown; answers
    /// [`ControllerResponse::Heartbeat`].
    BrokerHeartbeat {
        id: BrokerId,
        epoch: i64,
        applied_index: u64,
        want_shutdown: bool,
    },
    /// A leader changes the ISR of one of its partitions; answers the new state.
    AlterPartition {
        broker: BrokerId,
        broker_epoch: i64,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<BrokerId>,
    },
    CreateTopic {
        name: String,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    },
    /// Grows `name` to `total` partitions.
    CreatePartitions {
        name: String,
        total: i32,
        validate_only: bool,
    },
    DeleteTopic {
        name: String,
    },
    /// Sets (`Some`) or removes (`None`) topic config overrides.
    SetTopicConfig {
        name: String,
        configs: Vec<(String, Option<String>)>,
    },
    /// Preferred (`preferred`) or unclean leader election for the given partitions (all when
    /// `None`).
    ElectLeaders {
        preferred: bool,
        partitions: Option<Vec<(Uuid, i32)>>,
    },
    AllocateProducerIds {
        broker: BrokerId,
        broker_epoch: i64,
    },
    /// The committed metadata after `after_index`, waiting up to `max_wait_ms` for some.
    FetchMetadata {
        after_index: u64,
        max_wait_ms: u64,
    },
    /// The metadata quorum as its leader (the active controller) sees it: Kafka's
    /// DescribeQuorum. Answers [`ControllerResponse::Quorum`].
    DescribeQuorum,
    /// KIP-853 AddRaftVoter: node `id`, whose controller listener is `addr` (HOST:PORT), joins
    /// the metadata quorum as a learner, catches up, then becomes a voter (openraft joint
    /// consensus). Answers [`ControllerResponse::VotersChanged`].
    AddVoter {
        id: BrokerId,
        addr: String,
    },
    /// KIP-853 RemoveRaftVoter: node `id` leaves the voters. Answers
    /// [`ControllerResponse::VotersChanged`].
    RemoveVoter {
        id: BrokerId,
    },
}

/// The controller's answer to a [`ControllerRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerResponse {
    /// The broker's epoch: the Raft index of its registration.
    Registered {
        epoch: i64,
    },
    Heartbeat {
        fenced: bool,
        shutdown_ok: bool,
    },
    /// The partition's state after the change (or unchanged when nothing was asked to change).
    Partition(PartitionRecord),
    /// The new topic's id and partitions (what would be created, for `validate_only`).
    TopicCreated {
        id: Uuid,
        partitions: Vec<PartitionRecord>,
    },
    PartitionsCreated {
        partitions: Vec<PartitionRecord>,
    },
    TopicDeleted {
        id: Uuid,
    },
    ConfigsSet {
        id: Uuid,
    },
    Elections(Vec<Election>),
    ProducerIds {
        first: i64,
        count: i64,
    },
    Metadata(MetadataUpdate),
    Quorum(QuorumStatus),
    /// The voter change is committed, at this Raft log index.
    VotersChanged {
        index: u64,
    },
}

/// Committed metadata for a follower.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataUpdate {
    /// The accepted batches after the asked index, in order; the follower's position becomes
    /// `last_index` (entries between them changed nothing).
    Batches {
        batches: Vec<(u64, Vec<MetadataRecord>)>,
        last_index: u64,
    },
    /// The whole image as of `index` (the follower was too far behind, or this is shorter).
    Image { index: u64, image: MetadataImage },
}

/// The outcome of electing a leader for one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Election {
    pub topic_id: Uuid,
    pub partition: i32,
    pub outcome: ElectionOutcome,
}

/// What happened to one partition in `ElectLeaders`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionOutcome {
    Elected,
    /// ELECTION_NOT_NEEDED (84)
    NotNeeded,
    /// PREFERRED_LEADER_NOT_AVAILABLE (80)
    PreferredNotAvailable,
    /// ELIGIBLE_LEADERS_NOT_AVAILABLE (83)
    EligibleNotAvailable,
    /// UNKNOWN_TOPIC_OR_PARTITION (3)
    UnknownPartition,
}

impl ElectionOutcome {
    /// Kafka's error code (0 for `Elected`).
    pub fn kafka_code(self) -> i16 {
        match self {
            Self::Elected => 0,
            Self::NotNeeded => 84,
            Self::PreferredNotAvailable => 80,
            Self::EligibleNotAvailable => 83,
            Self::UnknownPartition => 3,
        }
    }
}

/// Why the controller refused or could not complete a request.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum ControllerError {
    /// NOT_CONTROLLER (41): ask `leader` (its controller listener), or retry later.
    #[error("not the active controller (leader: {leader:?})")]
    NotController { leader: Option<String> },
    /// BROKER_ID_NOT_REGISTERED (102): register first.
    #[error("broker {0} is not registered")]
    UnknownBroker(BrokerId),
    /// STALE_BROKER_EPOCH (77): register again.
    #[error("broker {id}: epoch {got} is not the registered {current}")]
    StaleBrokerEpoch { id: BrokerId, got: i64, current: i64 },
    #[error(transparent)]
    AlterPartition(#[from] AlterPartitionError),
    /// TOPIC_ALREADY_EXISTS (36)
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    /// INVALID_TOPIC_EXCEPTION (17)
    #[error("invalid topic name: {0}")]
    InvalidTopic(String),
    /// UNKNOWN_TOPIC_OR_PARTITION (3)
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// INVALID_PARTITIONS (37)
    #[error("{0}")]
    InvalidPartitions(String),
    /// INVALID_REPLICATION_FACTOR (38)
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// DUPLICATE_VOTER (126)
    #[error("node {0} is already a voter")]
    DuplicateVoter(BrokerId),
    /// VOTER_NOT_FOUND (127)
    #[error("node {0} is not a voter")]
    VoterNotFound(BrokerId),
    /// INVALID_REQUEST (42)
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// REQUEST_TIMED_OUT (7): the proposal did not complete in time; its outcome is unknown.
    #[error("timed out: {0}")]
    Timeout(String),
    /// UNKNOWN_SERVER_ERROR (-1)
    #[error("controller failure: {0}")]
    Failed(String),
}

impl ControllerError {
    /// Kafka's error code for this error.
    pub fn kafka_code(&self) -> i16 {
        match self {
            Self::NotController { .. } => 41,
            Self::UnknownBroker(_) => 102,
            Self::StaleBrokerEpoch { .. } => 77,
            Self::AlterPartition(e) => e.kafka_code(),
            Self::TopicAlreadyExists(_) => 36,
            Self::InvalidTopic(_) => 17,
            Self::UnknownTopic(_) => 3,
            Self::InvalidPartitions(_) => 37,
            Self::InvalidReplicationFactor(_) => 38,
            Self::DuplicateVoter(_) => 126,
            Self::VoterNotFound(_) => 127,
            Self::InvalidRequest(_) => 42,
            Self::Timeout(_) => 7,
            Self::Failed(_) => -1,
        }
    }

    /// Worth retrying as is (against the active controller).
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::NotController { .. } | Self::Timeout(_))
    }
}
