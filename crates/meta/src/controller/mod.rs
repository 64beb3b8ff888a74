//! The controller: the broker-facing half of the controller listener, and the active
//! controller that runs on the Raft leader.
//!
//! Every voter runs a [`Controller`]. It answers `FetchMetadata` from its own applied state
//! (any voter serves followers), forwards other requests to the leader when it is not active,
//! and redirects heartbeats there (the active controller must see a broker's heartbeat
//! connection close). On the leader it becomes active once it has applied everything committed
//! before its term ([`active`]): it keeps broker [`sessions`], fences brokers whose session
//! expired or whose connection closed, unfences brokers that caught up, runs controlled
//! shutdowns, periodic preferred-leader rebalancing, and the [`topics`] decisions. Every
//! decision is taken under one lock against the image as applied on the leader, so two
//! decisions never race on the same partition epoch.
//!
//! Protocol types: [`api`]. Broker side: [`crate::lifecycle`].

pub mod active;
pub mod api;
pub mod sessions;
pub mod topics;
mod voters;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::image::MetadataImage;
use crate::raft::feed::{Feed, FeedRead};
use crate::raft::quorum::quorum_status;
use crate::raft::rpc::{Connection, Request, Response};
use crate::raft::state_machine::AppliedState;
use crate::raft::types::{NodeId, Raft};
pub use api::{
    ControllerError, ControllerRequest, ControllerResponse, Election, ElectionOutcome, MetadataUpdate,
};
pub use sessions::ConnId;

/// Idempotent producer ids are handed out in blocks of this many.
pub const PRODUCER_ID_BLOCK: i64 = 1000;
/// The longest a `FetchMetadata` long poll waits, whatever the follower asks.
pub const MAX_FETCH_WAIT: Duration = Duration::from_secs(10);
/// About the most record bytes one `FetchMetadata` answer carries in batches.
pub const MAX_FETCH_BYTES: usize = 16 * 1024 * 1024;

/// How the active controller judges liveness and how often it rebalances.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`: fence a broker not heard from for this long.
    pub session_timeout: Duration,
    /// Fence a broker whose heartbeat connection closed and that has not heartbeated on
    /// another one within this long.
    pub reconnect_grace: Duration,
    /// What every registered broker gets to reach a controller that just became active.
    pub failover_grace: Duration,
    /// Preferred leader election over every partition this often (`None`: never).
    pub rebalance_interval: Option<Duration>,
    /// How often sessions are checked.
    pub tick: Duration,
    /// How long a proposal may take before the request answers `Timeout`.
    pub propose_timeout: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_millis(1500),
            reconnect_grace: Duration::from_millis(200),
            failover_grace: Duration::from_millis(1000),
            rebalance_interval: Some(Duration::from_secs(30)),
            tick: Duration::from_millis(50),
            propose_timeout: Duration::from_secs(5),
        }
    }
}

/// One voter's controller: request handling, and the active controller while it leads.
pub struct Controller {
    raft: Raft,
    state: watch::Receiver<Arc<AppliedState>>,
    feed: Arc<Mutex<Feed>>,
    config: ControllerConfig,
    active: Mutex<Option<active::ActiveState>>,
    /// Held while a decision is computed from the image and proposed.
    decide: tokio::sync::Mutex<()>,
    next_conn: AtomicU64,
}

impl Controller {
    pub(crate) fn new(
        raft: Raft,
        state: watch::Receiver<Arc<AppliedState>>,
        feed: Arc<Mutex<Feed>>,
        config: ControllerConfig,
    ) -> Self {
        Self {
            raft,
            state,
            feed,
            config,
            active: Mutex::new(None),
            decide: tokio::sync::Mutex::new(()),
            next_conn: AtomicU64::new(1),
        }
    }

    /// A fresh id for an accepted connection.
    pub(crate) fn connection_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether this node is the active controller now.
    pub fn is_active(&self) -> bool {
        self.active.lock().is_some()
    }

    fn image(&self) -> Arc<MetadataImage> {
        self.state.borrow().image.clone()
    }

    /// The leader's controller listener as this node knows it.
    fn leader_addr(&self, leader: Option<NodeId>) -> Option<String> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let leader = leader.or(metrics.current_leader)?;
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
    }

    fn not_controller(&self) -> ControllerError {
        ControllerError::NotController {
            leader: self.leader_addr(None),
        }
    }

    /// Answers one broker request that arrived on connection `conn`. `forwarded` requests came
    /// from another voter and are never forwarded again.
    pub(crate) async fn handle(
        &self,
        request: ControllerRequest,
        conn: ConnId,
        forwarded: bool,
    ) -> Result<ControllerResponse, ControllerError> {
        match request {
            ControllerRequest::FetchMetadata {
                after_index,
                max_wait_ms,
            } => Ok(self.fetch_metadata(after_index, max_wait_ms).await),
            ControllerRequest::BrokerHeartbeat {
                id,
                epoch,
                applied_index,
                want_shutdown,
            } => {
                if !self.is_active() {
                    return Err(self.not_controller());
                }
                self.heartbeat(id, epoch, applied_index, want_shutdown, conn)
                    .await
            }
            ControllerRequest::DescribeQuorum if self.is_active() => {
                Ok(ControllerResponse::Quorum(quorum_status(&self.raft)))
            }
            ControllerRequest::AddVoter { id, addr } if self.is_active() => self.add_voter(id, addr).await,
            ControllerRequest::RemoveVoter { id } if self.is_active() => self.remove_voter(id).await,
            other if self.is_active() => self.decide(other).await,
            _ if forwarded => Err(self.not_controller()),
            other => self.forward(other).await,
        }
    }

    /// Sends `request` to the leader and relays its answer.
    async fn forward(&self, request: ControllerRequest) -> Result<ControllerResponse, ControllerError> {
        let my_id = self.raft.metrics().borrow().id;
        let leader = self.raft.metrics().borrow().current_leader;
        let Some(addr) = leader
            .filter(|l| *l != my_id)
            .and_then(|l| self.leader_addr(Some(l)))
        else {
            // No leader, or this node leads but is not active yet: the caller retries.
            return Err(ControllerError::NotController { leader: None });
        };
        let mut conn = Connection::connect(&addr)
            .await
            .map_err(|_| ControllerError::NotController { leader: None })?;
        let message = Request::ControllerForwarded(request);
        match tokio::time::timeout(self.config.propose_timeout, conn.call(&message)).await {
            Ok(Ok(Response::Controller(result))) => result,
            Ok(Ok(_)) => Err(ControllerError::Failed(format!(
                "leader at {addr} answered with the wrong message"
            ))),
            Ok(Err(e)) => Err(ControllerError::Timeout(format!("forwarding to {addr}: {e}"))),
            Err(_) => Err(ControllerError::Timeout(format!("forwarding to {addr}"))),
        }
    }

    /// The committed metadata after `after`, waiting up to `max_wait_ms` for something new.
    async fn fetch_metadata(&self, after: u64, max_wait_ms: u64) -> ControllerResponse {
        let wait = Duration::from_millis(max_wait_ms).min(MAX_FETCH_WAIT);
        let applied = |s: &AppliedState| s.last_applied.map_or(0, |l| l.index);
        let mut state = self.state.clone();
        // A timeout or a stopped state machine both mean "answer what there is".
        let _ = tokio::time::timeout(wait, state.wait_for(|s| applied(s) > after)).await;
        let current = self.state.borrow().clone();
        let upto = applied(&current);
        if upto <= after {
            return ControllerResponse::Metadata(MetadataUpdate::Batches {
                batches: Vec::new(),
                last_index: after,
            });
        }
        let read = self.feed.lock().read(after, upto, MAX_FETCH_BYTES);
        let whole = || {
            ControllerResponse::Metadata(MetadataUpdate::Image {
                index: upto,
                image: (*current.image).clone(),
            })
        };
        let FeedRead::Batches { batches, complete } = read else {
            return whole();
        };
        let image_size =
            current.image.brokers.len() + current.image.topics.len() + current.image.partitions().count();
        let records: usize = batches.iter().map(|b| b.records.len()).sum();
        if records > image_size.max(64) {
            return whole();
        }
        let last_index = match (complete, batches.last()) {
            (false, Some(last)) => last.index,
            _ => upto,
        };
        ControllerResponse::Metadata(MetadataUpdate::Batches {
            batches: batches
                .into_iter()
                .map(|b| (b.index, b.records.to_vec()))
                .collect(),
            last_index,
        })
    }

    /// The broker whose heartbeats came on `conn` lost that connection.
    pub(crate) fn connection_closed(&self, broker: crate::records::BrokerId, conn: ConnId) {
        if let Some(active) = self.active.lock().as_mut() {
            active
                .sessions
                .connection_closed(broker, conn, std::time::Instant::now());
        }
    }
}
