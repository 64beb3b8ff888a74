//! Calling the controller from a broker: [`Lane`] (one connection that finds the active
//! controller and follows redirects) and [`ControllerClient`] (a small pool of lanes with one
//! typed method per request, for the broker's request handlers).
//!
//! A lane tries the last known active controller, else the voters in turn; `NotController`
//! answers name the leader, and a lane moves there. Connect failures and `NotController` are
//! retried until the call's retry budget runs out. A connection that breaks after a request
//! was sent is retried only for requests that are safe to repeat; otherwise the caller gets
//! [`ClientError::Indeterminate`] (the change may have happened). A call cancelled midway drops
//! its lane's connection with it, so no response is ever read by the wrong caller.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use thiserror::Error;
use uuid::Uuid;

use crate::controller::api::{ControllerError, ControllerRequest, ControllerResponse, Election};
use crate::raft::rpc::{Connection, Request, Response};
use crate::raft::QuorumStatus;
use crate::records::{BrokerId, PartitionRecord};

/// Pause between attempts when no controller could be reached or none is active.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Idle lanes a [`ControllerClient`] keeps.
const MAX_IDLE_LANES: usize = 4;

/// Why a call to the controller failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The controller answered with an error (see [`ControllerError::kafka_code`]).
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("no active controller answered within {0:?}")]
    NoController(Duration),
    /// The request was sent but no answer came: it may or may not have taken effect.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    #[error("the controller answered with the wrong message")]
    Unexpected,
}

impl ClientError {
    /// Kafka's error code for this failure (REQUEST_TIMED_OUT when no controller answered).
    pub fn kafka_code(&self) -> i16 {
        match self {
            Self::Controller(e) => e.kafka_code(),
            Self::NoController(_) | Self::Indeterminate(_) => 7,
            Self::Unexpected => -1,
        }
    }
}

/// The controller voters and the last known active one, shared by every lane of a broker.
#[derive(Debug, Clone)]
pub struct Directory {
    voters: Arc<Vec<String>>,
    leader: Arc<Mutex<Option<String>>>,
}

impl Directory {
    /// The voters' controller listeners (`host:port`).
    pub fn new(voters: Vec<String>) -> Self {
        Self {
            voters: Arc::new(voters),
            leader: Arc::new(Mutex::new(None)),
        }
    }
}

/// How one call may retry.
#[derive(Debug, Clone, Copy)]
pub struct CallPolicy {
    /// The longest one attempt may wait for its answer.
    pub timeout: Duration,
    /// How long to keep trying to reach an active controller.
    pub retry_for: Duration,
}

/// One connection to a controller, moved to the active one as needed.
#[derive(Debug)]
pub struct Lane {
    dir: Directory,
    /// Ask this node first (a broker's own voter, for metadata), unless it fails.
    prefer: Option<String>,
    conn: Option<(String, Connection)>,
    next: usize,
}

/// Requests that change nothing when repeated (or are fenced by epochs when they do).
fn idempotent(request: &ControllerRequest) -> bool {
    !matches!(
        request,
        ControllerRequest::CreateTopic { .. }
            | ControllerRequest::CreatePartitions { .. }
            | ControllerRequest::DeleteTopic { .. }
            | ControllerRequest::AllocateProducerIds { .. }
            // Repeated, a completed change would answer DUPLICATE_VOTER / VOTER_NOT_FOUND.
            | ControllerRequest::AddVoter { .. }
            | ControllerRequest::RemoveVoter { .. }
    )
}

impl Lane {
    pub fn new(dir: Directory, prefer: Option<String>) -> Self {
        Self {
            dir,
            prefer,
            conn: None,
            next: 0,
        }
    }

    fn target(&mut self, use_prefer: bool) -> Option<String> {
        if use_prefer {
            if let Some(prefer) = &self.prefer {
                return Some(prefer.clone());
            }
        }
        if let Some(leader) = self.dir.leader.lock().clone() {
            return Some(leader);
        }
        let count = self.dir.voters.len();
        if count == 0 {
            return None;
        }
        let addr = self.dir.voters.get(self.next % count).cloned();
        self.next = self.next.wrapping_add(1);
        addr
    }

    fn forget_leader(&self, addr: &str) {
        let mut leader = self.dir.leader.lock();
        if leader.as_deref() == Some(addr) {
            *leader = None;
        }
    }

    /// Sends `request` to an active controller (or, for `FetchMetadata`, any voter) and
    /// returns its answer, retrying as [`CallPolicy`] allows.
    pub async fn call(
        &mut self,
        request: &ControllerRequest,
        policy: CallPolicy,
    ) -> Result<ControllerResponse, ClientError> {
        let deadline = Instant::now() + policy.retry_for;
        let any_voter = matches!(request, ControllerRequest::FetchMetadata { .. });
        let mut use_prefer = any_voter;
        let message = Request::Controller(request.clone());
        loop {
            let (addr, mut conn) = match self.conn.take() {
                Some(open) => open,
                None => {
                    let Some(addr) = self.target(use_prefer) else {
                        return Err(ClientError::NoController(policy.retry_for));
                    };
                    match Connection::connect(&addr).await {
                        Ok(conn) => (addr, conn),
                        Err(_) => {
                            self.forget_leader(&addr);
                            use_prefer = false;
                            if Instant::now() >= deadline {
                                return Err(ClientError::NoController(policy.retry_for));
                            }
                            tokio::time::sleep(RETRY_PAUSE).await;
                            continue;
                        }
                    }
                }
            };
            match tokio::time::timeout(policy.timeout, conn.call(&message)).await {
                Ok(Ok(Response::Controller(Ok(response)))) => {
                    self.conn = Some((addr, conn));
                    return Ok(response);
                }
                Ok(Ok(Response::Controller(Err(ControllerError::NotController { leader })))) => {
                    let moved = leader.as_ref().is_some_and(|l| *l != addr);
                    *self.dir.leader.lock() = leader;
                    if !moved {
                        // Nobody active yet (or this one is about to be): wait a little.
                        self.conn = Some((addr, conn));
                        if Instant::now() >= deadline {
                            return Err(ClientError::NoController(policy.retry_for));
                        }
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
                Ok(Ok(Response::Controller(Err(e)))) => {
                    self.conn = Some((addr, conn));
                    return Err(e.into());
                }
                Ok(Ok(_)) => return Err(ClientError::Unexpected),
                Ok(Err(e)) => {
                    if !idempotent(request) {
                        return Err(ClientError::Indeterminate(format!("{addr}: {e}")));
                    }
                    self.forget_leader(&addr);
                    use_prefer = false;
                }
                Err(_) => {
                    if !idempotent(request) {
                        return Err(ClientError::Indeterminate(format!(
                            "{addr}: no answer in {:?}",
                            policy.timeout
                        )));
                    }
                    self.forget_leader(&addr);
                    use_prefer = false;
                }
            }
            if Instant::now() >= deadline {
                return Err(ClientError::NoController(policy.retry_for));
            }
        }
    }
}

/// The broker's handle for controller requests: cheap to clone, safe to share.
#[derive(Debug, Clone)]
pub struct ControllerClient {
    dir: Directory,
    idle: Arc<Mutex<Vec<Lane>>>,
    policy: CallPolicy,
}

impl ControllerClient {
    pub fn new(dir: Directory, policy: CallPolicy) -> Self {
        Self {
            dir,
            idle: Arc::new(Mutex::new(Vec::new())),
            policy,
        }
    }

    /// Sends one request through an idle lane (or a new one).
    pub async fn call(&self, request: ControllerRequest) -> Result<ControllerResponse, ClientError> {
        let lane = self.idle.lock().pop();
        let mut lane = lane.unwrap_or_else(|| Lane::new(self.dir.clone(), None));
        let result = lane.call(&request, self.policy).await;
        let mut idle = self.idle.lock();
        if lane.conn.is_some() && idle.len() < MAX_IDLE_LANES {
            idle.push(lane);
        }
        result
    }

    /// AlterPartition: the partition's state after the change.
    #[allow(clippy::too_many_arguments)]
    pub async fn alter_partition(
        &self,
        broker: BrokerId,
        broker_epoch: i64,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<BrokerId>,
    ) -> Result<PartitionRecord, ClientError> {
        let request = ControllerRequest::AlterPartition {
            broker,
            broker_epoch,
            topic_id,
            partition,
            leader_epoch,
            partition_epoch,
            isr,
        };
        match self.call(request).await? {
            ControllerResponse::Partition(p) => Ok(p),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// CreateTopic: the topic id and its partitions (what would be made, if `validate_only`).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: std::collections::BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(Uuid, Vec<PartitionRecord>), ClientError> {
        let request = ControllerRequest::CreateTopic {
            name: name.to_string(),
            partitions,
            replication_factor,
            configs,
            validate_only,
        };
        match self.call(request).await? {
            ControllerResponse::TopicCreated { id, partitions } => Ok((id, partitions)),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// CreatePartitions: the new partitions.
    pub async fn create_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<Vec<PartitionRecord>, ClientError> {
        let request = ControllerRequest::CreatePartitions {
            name: name.to_string(),
            total,
            validate_only,
        };
        match self.call(request).await? {
            ControllerResponse::PartitionsCreated { partitions } => Ok(partitions),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// DeleteTopic: the deleted topic's id.
    pub async fn delete_topic(&self, name: &str) -> Result<Uuid, ClientError> {
        match self
            .call(ControllerRequest::DeleteTopic {
                name: name.to_string(),
            })
            .await?
        {
            ControllerResponse::TopicDeleted { id } => Ok(id),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Sets (`Some`) or removes (`None`) topic config overrides.
    pub async fn set_topic_config(
        &self,
        name: &str,
        configs: Vec<(String, Option<String>)>,
    ) -> Result<Uuid, ClientError> {
        let request = ControllerRequest::SetTopicConfig {
            name: name.to_string(),
            configs,
        };
        match self.call(request).await? {
            ControllerResponse::ConfigsSet { id } => Ok(id),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// ElectLeaders: each partition's outcome.
    pub async fn elect_leaders(
        &self,
        preferred: bool,
        partitions: Option<Vec<(Uuid, i32)>>,
    ) -> Result<Vec<Election>, ClientError> {
        match self
            .call(ControllerRequest::ElectLeaders {
                preferred,
                partitions,
            })
            .await?
        {
            ControllerResponse::Elections(results) => Ok(results),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// DescribeQuorum: the metadata quorum as its leader sees it.
    pub async fn describe_quorum(&self) -> Result<QuorumStatus, ClientError> {
        match self.call(ControllerRequest::DescribeQuorum).await? {
            ControllerResponse::Quorum(status) => Ok(status),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// KIP-853 AddRaftVoter: node `id` with controller listener `addr` joins the voters.
    /// Answers the membership change's Raft log index.
    pub async fn add_voter(&self, id: BrokerId, addr: String) -> Result<u64, ClientError> {
        match self.call(ControllerRequest::AddVoter { id, addr }).await? {
            ControllerResponse::VotersChanged { index } => Ok(index),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// KIP-853 RemoveRaftVoter: node `id` leaves the voters.
    pub async fn remove_voter(&self, id: BrokerId) -> Result<u64, ClientError> {
        match self.call(ControllerRequest::RemoveVoter { id }).await? {
            ControllerResponse::VotersChanged { index } => Ok(index),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// A new block of producer ids for `broker`: `(first, count)`.
    pub async fn allocate_producer_ids(
        &self,
        broker: BrokerId,
        broker_epoch: i64,
    ) -> Result<(i64, i64), ClientError> {
        match self
            .call(ControllerRequest::AllocateProducerIds { broker, broker_epoch })
            .await?
        {
            ControllerResponse::ProducerIds { first, count } => Ok((first, count)),
            _ => Err(ClientError::Unexpected),
        }
    }
}
