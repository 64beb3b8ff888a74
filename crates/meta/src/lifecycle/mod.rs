//! The broker side of the broker <-> controller protocol: [`BrokerLifecycle`] registers the
//! broker, heartbeats, follows the committed metadata, and runs controlled shutdown; its
//! [`ControllerClient`] carries the broker's other controller requests (AlterPartition,
//! CreateTopic, ...).
//!
//! Tasks and connections:
//! - heartbeats: one persistent connection to the active controller (it must be the same
//!   connection so a killed broker is noticed by its closing). The broker registers (retrying
//!   until a controller answers), then heartbeats every `heartbeat_interval` with its applied
//!   metadata index; a `StaleBrokerEpoch` or `UnknownBroker` answer makes it register again.
//! - metadata: a long poll on another connection ([`follower`]), preferring the broker's own
//!   voter when it is one (any voter answers from its applied state).
//!
//! Dropping the lifecycle (or [`BrokerLifecycle::stop`]) cancels both and closes their
//! connections; the controller then fences the broker within its reconnect grace.

pub mod client;
pub mod follower;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

pub use client::{CallPolicy, ClientError, ControllerClient, Directory, Lane};
pub use follower::BrokerMetadata;

use crate::controller::api::{ControllerError, ControllerRequest, ControllerResponse};
use crate::raft::state_machine::{AppliedDelta, DELTA_CHANNEL_CAPACITY};
use crate::records::{BrokerId, Listener};

/// How a broker takes part in the cluster.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    pub id: BrokerId,
    pub rack: Option<String>,
    pub listeners: Vec<Listener>,
    /// The voters' controller listeners (`controller.quorum.voters`).
    pub controllers: Vec<SocketAddr>,
    /// This node's own controller listener when it is also a voter: metadata is read there.
    pub local_controller: Option<SocketAddr>,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// How long one request may wait for its answer, and keep looking for a controller.
    pub request_timeout: Duration,
    /// How long a metadata long poll waits on the controller.
    pub metadata_max_wait: Duration,
}

impl LifecycleConfig {
    /// Kafka-like defaults: heartbeats every 250 ms, 2 s requests, 1 s metadata polls.
    pub fn new(id: BrokerId, listeners: Vec<Listener>, controllers: Vec<SocketAddr>) -> Self {
        Self {
            id,
            rack: None,
            listeners,
            controllers,
            local_controller: None,
            heartbeat_interval: Duration::from_millis(250),
            request_timeout: Duration::from_secs(2),
            metadata_max_wait: Duration::from_secs(1),
        }
    }
}

/// The broker's standing with the controller, as its last heartbeat answer told it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStatus {
    /// The epoch of the current registration (`None` until registered).
    pub epoch: Option<i64>,
    /// Fenced brokers lead nothing and are in no ISR; a new registration starts fenced.
    pub fenced: bool,
    /// The controller has moved every leadership away after a controlled shutdown request.
    pub shutdown_ok: bool,
}

/// A running broker's membership in the cluster.
pub struct BrokerLifecycle {
    incarnation: Uuid,
    client: ControllerClient,
    metadata: watch::Receiver<Arc<BrokerMetadata>>,
    deltas: broadcast::Sender<AppliedDelta>,
    status: watch::Receiver<BrokerStatus>,
    want_shutdown: watch::Sender<bool>,
    paused: Arc<AtomicBool>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl BrokerLifecycle {
    /// Starts registering, heartbeating and following metadata (in the background: watch
    /// [`Self::status`] for the registration).
    pub fn start(config: LifecycleConfig) -> Self {
        let dir = Directory::new(config.controllers.iter().map(ToString::to_string).collect());
        let policy = CallPolicy {
            timeout: config.request_timeout,
            retry_for: config.request_timeout,
        };
        let client = ControllerClient::new(dir.clone(), policy);
        let (metadata_tx, metadata) = watch::channel(Arc::new(BrokerMetadata::default()));
        let (deltas, _) = broadcast::channel(DELTA_CHANNEL_CAPACITY);
        let (status_tx, status) = watch::channel(BrokerStatus::default());
        let (want_shutdown, want_rx) = watch::channel(false);
        let paused = Arc::new(AtomicBool::new(false));
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let incarnation = Uuid::new_v4();

        let follower_lane = Lane::new(dir.clone(), config.local_controller.map(|a| a.to_string()));
        tasks.spawn(follower::follow(
            follower_lane,
            config.metadata_max_wait,
            config.request_timeout,
            follower::Outputs {
                metadata: metadata_tx,
                deltas: deltas.clone(),
            },
            cancel.clone(),
        ));
        let heartbeats = Heartbeats {
            config,
            incarnation,
            lane: Lane::new(dir, None),
            policy,
            metadata: metadata.clone(),
            status: status_tx,
            want_shutdown: want_rx,
            paused: paused.clone(),
        };
        tasks.spawn(heartbeats.run(cancel.clone()));
        tasks.close();
        Self {
            incarnation,
            client,
            metadata,
            deltas,
            status,
            want_shutdown,
            paused,
            cancel,
            tasks,
        }
    }

    /// Random per start: tells the controller this process from an earlier one.
    pub fn incarnation(&self) -> Uuid {
        self.incarnation
    }

    /// The metadata applied here (image and log index), updated as it changes.
    pub fn metadata(&self) -> watch::Receiver<Arc<BrokerMetadata>> {
        self.metadata.clone()
    }

    /// What each metadata change touched, in order. A receiver that lags gets `Lagged` and
    /// should start over from [`Self::metadata`].
    pub fn subscribe(&self) -> broadcast::Receiver<AppliedDelta> {
        self.deltas.subscribe()
    }

    /// Registration, fencing and shutdown progress.
    pub fn status(&self) -> watch::Receiver<BrokerStatus> {
        self.status.clone()
    }

    /// For AlterPartition, CreateTopic and the other controller requests.
    pub fn client(&self) -> &ControllerClient {
        &self.client
    }

    /// Waits until registered and unfenced; answers the epoch, or `None` after `timeout`.
    pub async fn wait_unfenced(&self, timeout: Duration) -> Option<i64> {
        let mut status = self.status.clone();
        let reached =
            tokio::time::timeout(timeout, status.wait_for(|s| s.epoch.is_some() && !s.fenced)).await;
        match reached {
            Ok(Ok(s)) => s.epoch,
            _ => None,
        }
    }

    /// Controlled shutdown: asks the controller to move every leadership away and waits (up
    /// to `bound`) until it says so. True when it did; stop the lifecycle afterwards either way.
    pub async fn controlled_shutdown(&self, bound: Duration) -> bool {
        self.want_shutdown.send_replace(true);
        let mut status = self.status.clone();
        let reached = tokio::time::timeout(bound, status.wait_for(|s| s.shutdown_ok)).await;
        reached.is_ok_and(|r| r.is_ok())
    }

    /// Stops heartbeating while keeping the connection open (a paused or cut-off broker), for
    /// fault tests.
    pub fn pause_heartbeats(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// Stops the tasks and waits for them (their connections close).
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tasks.wait().await;
    }
}

impl Drop for BrokerLifecycle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The registration and heartbeat task.
struct Heartbeats {
    config: LifecycleConfig,
    incarnation: Uuid,
    lane: Lane,
    policy: CallPolicy,
    metadata: watch::Receiver<Arc<BrokerMetadata>>,
    status: watch::Sender<BrokerStatus>,
    want_shutdown: watch::Receiver<bool>,
    paused: Arc<AtomicBool>,
}

impl Heartbeats {
    async fn run(mut self, cancel: CancellationToken) {
        loop {
            let epoch = tokio::select! {
                _ = cancel.cancelled() => return,
                epoch = self.register() => epoch,
            };
            self.status.send_replace(BrokerStatus {
                epoch: Some(epoch),
                fenced: true,
                shutdown_ok: false,
            });
            tracing::info!(broker = self.config.id, epoch, "registered with the controller");
            tokio::select! {
                _ = cancel.cancelled() => return,
                () = self.heartbeat(epoch) => {}
            }
        }
    }

    /// Registers, retrying until an active controller answers.
    async fn register(&mut self) -> i64 {
        let request = ControllerRequest::RegisterBroker {
            id: self.config.id,
            incarnation: self.incarnation,
            rack: self.config.rack.clone(),
            listeners: self.config.listeners.clone(),
        };
        loop {
            match self.lane.call(&request, self.policy).await {
                Ok(ControllerResponse::Registered { epoch }) => return epoch,
                Ok(_) => tracing::warn!("registration answered with the wrong message"),
                Err(e) => tracing::debug!(error = %e, "registration failed; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Heartbeats until the registration is no longer valid.
    async fn heartbeat(&mut self, epoch: i64) {
        let mut ticker = tokio::time::interval(self.config.heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A heartbeat answers in milliseconds; one that hangs (an active controller cut off
        // from the network closes nothing) must give up soon enough to find the new one
        // within a new controller's failover grace (1 s), or every broker is fenced.
        let policy = CallPolicy {
            timeout: self.policy.timeout.min(self.config.heartbeat_interval * 2),
            retry_for: self.config.heartbeat_interval,
        };
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                changed = self.want_shutdown.changed() => if changed.is_err() { return },
            }
            if self.paused.load(Ordering::Relaxed) {
                continue;
            }
            let request = ControllerRequest::BrokerHeartbeat {
                id: self.config.id,
                epoch,
                applied_index: self.metadata.borrow().index,
                want_shutdown: *self.want_shutdown.borrow(),
            };
            match self.lane.call(&request, policy).await {
                Ok(ControllerResponse::Heartbeat { fenced, shutdown_ok }) => {
                    self.status.send_if_modified(|s| {
                        let next = BrokerStatus {
                            epoch: Some(epoch),
                            fenced,
                            shutdown_ok,
                        };
                        let changed = *s != next;
                        *s = next;
                        changed
                    });
                }
                Ok(_) => tracing::warn!("heartbeat answered with the wrong message"),
                Err(ClientError::Controller(
                    ControllerError::StaleBrokerEpoch { .. } | ControllerError::UnknownBroker(_),
                )) => {
                    tracing::warn!(
                        broker = self.config.id,
                        epoch,
                        "registration no longer valid; registering again"
                    );
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
            }
        }
    }
}
