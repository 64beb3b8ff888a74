//! [`MetadataQuorum`]: one node's membership in the cluster's metadata quorum, the API the
//! broker and the controller use.
//!
//! It owns the Raft node, its storage under `data_dir/raft`, and the controller listener.
//! Proposals and voter changes may be made on any node: they run locally when this node leads
//! and are forwarded to the leader otherwise, retried (bounded by [`QuorumConfig::propose_timeout`])
//! while there is no leader or the leader moves. Reads come from the local state machine.
//!
//! A forwarded proposal whose connection breaks after it was sent, or a leader that steps down
//! before answering, may or may not have been committed: records must be safe to retry
//! (epochs fence most of them) or the caller must read the image to find out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{InitializeError, RaftError};
use openraft::{Config, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::log_store::LogStore;
use super::rpc::{Connection, LeaderError, Request, Response, RpcError};
use super::segment::{LogError, MAX_ENTRY_BYTES};
use super::server::{self, add_voter_local, propose_local, remove_voter_local};
use super::state_machine::{AppliedDelta, AppliedState, SnapshotError, StateMachine};
use super::types::{Batch, BatchOutcome, Node, NodeId, Raft};
use crate::controller::{Controller, ControllerConfig};
use crate::image::MetadataImage;
use crate::records::MetadataRecord;

/// How to run one node of the quorum.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: NodeId,
    /// The controller listener to bind (port 0 for an ephemeral one).
    pub listen: SocketAddr,
    /// The initial voters and their controller listeners (Kafka's `controller.quorum.voters`).
    pub voters: BTreeMap<NodeId, SocketAddr>,
    /// The node's data directory; the quorum keeps its files in `data_dir/raft`.
    pub data_dir: PathBuf,
    /// The leader's heartbeat interval (also the AppendEntries timeout).
    pub heartbeat: Duration,
    /// Openraft's election timeout range. Each node draws its timeout once at start; a follower
    /// that knew a leader starts an election after hearing nothing for the leader lease (the
    /// range's maximum) plus its timeout, so failover takes `max + drawn` plus one tick.
    pub election_timeout: (Duration, Duration),
    /// A snapshot is built every this many applied entries, and the log before it purged.
    pub snapshot_every: u64,
    /// How long `propose` and voter changes keep retrying while there is no reachable leader.
    pub propose_timeout: Duration,
    /// The active controller's liveness and rebalance settings.
    pub controller: ControllerConfig,
}

impl QuorumConfig {
    /// Defaults tuned for sub-second failover on a LAN: 100 ms heartbeats, an election timeout
    /// of 200 to 400 ms, so a follower stands for election 600 to 800 ms after the leader's
    /// last heartbeat (and never before 4 missed heartbeats).
    pub fn new(
        node_id: NodeId,
        listen: SocketAddr,
        voters: BTreeMap<NodeId, SocketAddr>,
        data_dir: PathBuf,
    ) -> Self {
        Self {
            node_id,
            listen,
            voters,
            data_dir,
            heartbeat: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(200), Duration::from_millis(400)),
            snapshot_every: 10_000,
            propose_timeout: Duration::from_secs(5),
            controller: ControllerConfig::default(),
        }
    }

    fn raft_config(&self) -> Result<Config, QuorumError> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let config = Config {
            cluster_name: "sapper-metadata".into(),
            heartbeat_interval: millis(self.heartbeat),
            election_timeout_min: millis(self.election_timeout.0),
            election_timeout_max: millis(self.election_timeout.1),
            install_snapshot_timeout: 2_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: self.snapshot_every.max(1) / 2,
            snapshot_max_chunk_size: 1024 * 1024,
            ..Config::default()
        };
        config.validate().map_err(|e| QuorumError::Config(e.to_string()))
    }
}

/// Why a quorum operation failed.
#[derive(Debug, Error)]
pub enum QuorumError {
    #[error("invalid quorum configuration: {0}")]
    Config(String),
    #[error("binding the controller listener {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the Raft log: {0}")]
    Log(#[from] LogError),
    #[error("opening the metadata snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("starting Raft: {0}")]
    Start(String),
    /// The batch was committed at `index` but the image refused the record at `position`:
    /// nothing of it was applied, on any node.
    #[error("batch at log index {index} refused at record {position}: {reason}")]
    Refused {
        index: u64,
        position: usize,
        reason: String,
    },
    #[error("no reachable leader within {0:?}")]
    NoLeader(Duration),
    /// The request reached the leader but its outcome is unknown (it may have been committed).
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    #[error("the leader refused: {0}")]
    Failed(String),
    #[error("batch of {0} bytes exceeds the entry limit")]
    TooLarge(usize),
    #[error("timed out waiting for log index {0} to be applied")]
    ApplyTimeout(u64),
    #[error("the quorum is shut down")]
    Shutdown,
}

/// One voter as seen from this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterStatus {
    pub id: NodeId,
    pub addr: String,
    /// The last log index known replicated to it (leader only; `None` elsewhere or unknown).
    pub matched: Option<u64>,
    /// How far its matched index is behind the leader's last log index (leader only).
    pub lag: Option<u64>,
}

/// A point-in-time view of the quorum from this node (the leader's is the complete one; the
/// controller answers [`crate::controller::api::ControllerRequest::DescribeQuorum`] with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    pub node_id: NodeId,
    pub state: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    /// The highest log index known committed: on the leader, the highest index a majority of
    /// the voters has (openraft 0.9 does not publish its committed index); elsewhere the last
    /// applied one (applied entries are committed).
    pub committed: Option<u64>,
    /// On the leader, milliseconds since a quorum last acknowledged it (heartbeat or append).
    pub millis_since_quorum_ack: Option<u64>,
    pub voters: Vec<VoterStatus>,
    pub learners: Vec<NodeId>,
}

/// One running node of the metadata quorum.
pub struct MetadataQuorum {
    node_id: NodeId,
    raft: Raft,
    local_addr: SocketAddr,
    state: watch::Receiver<Arc<AppliedState>>,
    deltas: broadcast::Sender<AppliedDelta>,
    controller: Arc<Controller>,
    propose_timeout: Duration,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// What the retry loop asks each attempt.
enum Attempt<T> {
    Done(T),
    Retry,
}

impl MetadataQuorum {
    /// Binds `config.listen` and starts the node.
    pub async fn start(config: QuorumConfig) -> Result<Self, QuorumError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| QuorumError::Bind {
                addr: config.listen,
                source,
            })?;
        Self::start_on(config, listener).await
    }

    /// Starts the node on an already bound controller listener (`config.listen` is ignored).
    ///
    /// If this node is the lowest-id initial voter and its store is empty, it initializes the
    /// cluster with the initial voters; anywhere else, or when already initialized, it waits
    /// to hear from a leader.
    pub async fn start_on(config: QuorumConfig, listener: TcpListener) -> Result<Self, QuorumError> {
        let raft_config = Arc::new(config.raft_config()?);
        let dir = config.data_dir.join("raft");
        let open_dir = dir.clone();
        let (log_store, state_machine) = tokio::task::spawn_blocking(move || {
            Ok::<_, QuorumError>((LogStore::open(&open_dir)?, StateMachine::open(&open_dir)?))
        })
        .await
        .map_err(|e| QuorumError::Start(e.to_string()))??;
        let state = state_machine.state();
        let deltas = state_machine.deltas();
        let feed = state_machine.feed();
        let raft = Raft::new(
            config.node_id,
            raft_config,
            super::network::Network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| QuorumError::Start(e.to_string()))?;
        let local_addr = listener.local_addr().map_err(|source| QuorumError::Bind {
            addr: config.listen,
            source,
        })?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let controller = Arc::new(Controller::new(
            raft.clone(),
            state.clone(),
            feed,
            config.controller.clone(),
        ));
        tasks.spawn(controller.clone().run(shutdown.clone()));
        tasks.spawn(server::serve(
            listener,
            raft.clone(),
            controller.clone(),
            shutdown.clone(),
            tasks.clone(),
        ));

        let quorum = Self {
            node_id: config.node_id,
            raft,
            local_addr,
            state,
            deltas,
            controller,
            propose_timeout: config.propose_timeout,
            shutdown,
            tasks,
        };
        if config.voters.keys().next() == Some(&config.node_id) {
            quorum.initialize(&config.voters).await?;
        }
        Ok(quorum)
    }

    async fn initialize(&self, voters: &BTreeMap<NodeId, SocketAddr>) -> Result<(), QuorumError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| QuorumError::Start(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        let members: BTreeMap<NodeId, Node> =
            voters.iter().map(|(id, addr)| (*id, Node::new(addr))).collect();
        match self.raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(QuorumError::Start(e.to_string())),
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The bound controller listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's controller (active while this node leads).
    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    /// The current leader as this node knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// The image as applied on this node (may trail the leader by the replication delay).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.state.borrow().image.clone()
    }

    /// The applied state: image, last applied log id and membership, consistent together.
    pub fn applied(&self) -> Arc<AppliedState> {
        self.state.borrow().clone()
    }

    /// Every batch applied from now on, with its log index, in log order. A receiver that
    /// lags more than [`super::state_machine::DELTA_CHANNEL_CAPACITY`] batches gets `Lagged`
    /// and should start over from [`Self::image`].
    pub fn subscribe(&self) -> broadcast::Receiver<AppliedDelta> {
        self.deltas.subscribe()
    }

    /// A watch of the applied state, for waiting on it.
    pub fn watch(&self) -> watch::Receiver<Arc<AppliedState>> {
        self.state.clone()
    }

    /// Waits until this node has applied log index `index`.
    pub async fn wait_applied(
        &self,
        index: u64,
        timeout: Duration,
    ) -> Result<Arc<AppliedState>, QuorumError> {
        let mut state = self.state.clone();
        let reached = tokio::time::timeout(
            timeout,
            state.wait_for(|s| s.last_applied.is_some_and(|l| l.index >= index)),
        )
        .await
        .map_err(|_| QuorumError::ApplyTimeout(index))?
        .map_err(|_| QuorumError::Shutdown)?;
        Ok(reached.clone())
    }

    /// Appends `records` as one batch through the leader and waits until it is committed and
    /// applied on the leader; answers its log index. A batch the image refuses is
    /// [`QuorumError::Refused`] and changed nothing.
    pub async fn propose(&self, records: Vec<MetadataRecord>) -> Result<u64, QuorumError> {
        let batch = Batch { records };
        let size = serde_json::to_vec(&batch).map(|b| b.len()).unwrap_or(usize::MAX);
        if size > MAX_ENTRY_BYTES {
            return Err(QuorumError::TooLarge(size));
        }
        let (index, outcome) = self
            .through_leader(
                || propose_local(&self.raft, batch.clone()),
                || Request::Propose(batch.clone()),
                |response| match response {
                    Response::Propose(result) => Some(result),
                    _ => None,
                },
            )
            .await?;
        match outcome {
            BatchOutcome::Applied => Ok(index),
            BatchOutcome::Refused { position, reason } => Err(QuorumError::Refused {
                index,
                position,
                reason,
            }),
        }
    }

    /// Makes `id`, listening on `addr`, a voter: it joins as a learner, catches up, then the
    /// membership changes through joint consensus. Answers the membership entry's log index.
    pub async fn add_voter(&self, id: NodeId, addr: SocketAddr) -> Result<u64, QuorumError> {
        let addr = addr.to_string();
        self.through_leader(
            || add_voter_local(&self.raft, id, addr.clone()),
            || Request::AddVoter {
                id,
                addr: addr.clone(),
            },
            |response| match response {
                Response::Membership(result) => Some(result),
                _ => None,
            },
        )
        .await
    }

    /// Removes `id` from the voters (joint consensus). Answers the membership entry's index.
    pub async fn remove_voter(&self, id: NodeId) -> Result<u64, QuorumError> {
        self.through_leader(
            || remove_voter_local(&self.raft, id),
            || Request::RemoveVoter { id },
            |response| match response {
                Response::Membership(result) => Some(result),
                _ => None,
            },
        )
        .await
    }

    /// Runs an operation locally if this node leads, else sends it to the leader; retries
    /// while there is no leader or it moved, until `propose_timeout`.
    async fn through_leader<T, L, LF, R, P>(&self, local: L, request: R, parse: P) -> Result<T, QuorumError>
    where
        L: Fn() -> LF,
        LF: std::future::Future<Output = Result<T, LeaderError>>,
        R: Fn() -> Request,
        P: Fn(Response) -> Option<Result<T, LeaderError>>,
    {
        let started = Instant::now();
        let mut metrics = self.raft.metrics();
        loop {
            if self.shutdown.is_cancelled() {
                return Err(QuorumError::Shutdown);
            }
            let attempt = match local().await {
                Ok(done) => Attempt::Done(done),
                Err(LeaderError::Failed(e)) => return Err(QuorumError::Failed(e)),
                Err(LeaderError::NotLeader { leader: None }) => Attempt::Retry,
                Err(LeaderError::NotLeader { leader: Some(leader) }) => {
                    self.forward(leader, request(), &parse).await?
                }
            };
            if let Attempt::Done(done) = attempt {
                return Ok(done);
            }
            let left = self.propose_timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(QuorumError::NoLeader(self.propose_timeout));
            }
            // Wait for a leadership change (or a short pause) before the next attempt.
            let pause = left.min(Duration::from_millis(50));
            let _ = tokio::time::timeout(pause, metrics.changed()).await;
        }
    }

    async fn forward<T, P>(
        &self,
        leader: NodeId,
        request: Request,
        parse: &P,
    ) -> Result<Attempt<T>, QuorumError>
    where
        P: Fn(Response) -> Option<Result<T, LeaderError>>,
    {
        let addr = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            metrics
                .membership_config
                .membership()
                .get_node(&leader)
                .map(|n| n.addr.clone())
        };
        let Some(addr) = addr else {
            return Ok(Attempt::Retry);
        };
        let mut conn = match Connection::connect(&addr).await {
            Ok(conn) => conn,
            // Nothing was sent: safe to retry once a leader is reachable.
            Err(RpcError::Connect { .. }) => return Ok(Attempt::Retry),
            Err(e) => return Err(QuorumError::Indeterminate(e.to_string())),
        };
        let response = match conn.call(&request).await {
            Ok(response) => response,
            Err(e) => {
                return Err(QuorumError::Indeterminate(format!(
                    "leader {leader} at {addr}: {e}"
                )))
            }
        };
        match parse(response) {
            Some(Ok(done)) => Ok(Attempt::Done(done)),
            Some(Err(LeaderError::NotLeader { .. })) => Ok(Attempt::Retry),
            Some(Err(LeaderError::Failed(e))) => Err(QuorumError::Failed(e)),
            None => Err(QuorumError::Indeterminate(format!(
                "leader {leader} answered with the wrong message"
            ))),
        }
    }

    /// Leader, term, log positions and the voters with their replication progress.
    pub fn status(&self) -> QuorumStatus {
        quorum_status(&self.raft)
    }

    /// Stops Raft and the controller listener and waits (bounded) for their tasks.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not shut down cleanly");
        }
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("controller listener tasks did not stop within 5 s");
        }
    }
}

/// [`MetadataQuorum::status`] of the node running `raft`.
pub(crate) fn quorum_status(raft: &Raft) -> QuorumStatus {
    let metrics = raft.metrics();
    let m = metrics.borrow();
    let membership = m.membership_config.membership();
    let voter_ids: BTreeSet<NodeId> = membership.voter_ids().collect();
    let voters = voter_ids
        .iter()
        .map(|id| {
            let matched = if *id == m.id && m.state == ServerState::Leader {
                m.last_log_index
            } else {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(id))
                    .and_then(|l| l.as_ref())
                    .map(|l| l.index)
            };
            let lag = match (m.state == ServerState::Leader, matched, m.last_log_index) {
                (true, Some(matched), Some(last)) => Some(last.saturating_sub(matched)),
                (true, None, Some(last)) => Some(last + 1),
                _ => None,
            };
            VoterStatus {
                id: *id,
                addr: membership
                    .get_node(id)
                    .map(|n| n.addr.clone())
                    .unwrap_or_default(),
                matched,
                lag,
            }
        })
        .collect::<Vec<VoterStatus>>();
    let last_applied = m.last_applied.map(|l| l.index);
    let leading = m.state == ServerState::Leader;
    let committed = if leading {
        majority_matched(voters.iter().map(|v| v.matched)).max(last_applied)
    } else {
        last_applied
    };
    QuorumStatus {
        node_id: m.id,
        state: format!("{:?}", m.state),
        leader: m.current_leader,
        term: m.current_term,
        last_log_index: m.last_log_index,
        last_applied,
        committed,
        millis_since_quorum_ack: if leading { m.millis_since_quorum_ack } else { None },
        voters,
        learners: membership.learner_ids().collect(),
    }
}

/// The highest index a majority of the voters (whose matched indexes are `matched`) holds.
fn majority_matched(matched: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    let mut matched: Vec<Option<u64>> = matched.collect();
    // Highest first; `None` (nothing known replicated) sorts last.
    matched.sort_unstable_by(|a, b| b.cmp(a));
    let majority = matched.len() / 2;
    matched.get(majority).copied().flatten()
}

impl Drop for MetadataQuorum {
    /// Stops the listener; Raft stops once its last handle (held by the listener) is gone.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
