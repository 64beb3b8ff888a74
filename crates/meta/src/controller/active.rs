//! The active controller: what the Raft leader's [`Controller`] does while it leads.
//!
//! [`Controller::run`] follows openraft's metrics. When this node becomes leader it first
//! waits until everything committed before its term is applied here (a linearizable read), so
//! every decision sees the whole image; then it gives every registered broker
//! [`ControllerConfig::failover_grace`] to reach it and starts ticking: fence expired
//! sessions, rebalance leaders every [`ControllerConfig::rebalance_interval`]. When it loses
//! leadership it drops its sessions; a proposal that loses the race answers `NotController`.
//!
//! Every decision (fence, unfence, shutdown, ISR change, topic change, producer ids) is
//! computed from the image and proposed under [`Controller::decide`], and waits until applied
//! here before the lock is released, so the next decision sees its effect.

use std::time::Instant;

use openraft::ServerState;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::api::{ControllerError, ControllerRequest, ControllerResponse};
use super::sessions::{ConnId, Sessions};
use super::topics;
use super::{Controller, PRODUCER_ID_BLOCK};
use crate::election::{
    alter_partition, fence_broker, preferred_leaders, unfence_broker, AlterPartitionError,
};
use crate::image::MetadataImage;
use crate::raft::rpc::LeaderError;
use crate::raft::segment::MAX_ENTRY_BYTES;
use crate::raft::server::propose_local;
use crate::raft::types::{Batch, BatchOutcome};
use crate::records::{BrokerId, BrokerRegistration, MetadataRecord, EPOCH_FROM_LOG_INDEX};

/// Registrations carrying more listeners than this, or longer strings, are refused.
const MAX_LISTENERS: usize = 16;
const MAX_NAME_BYTES: usize = 255;

/// The active controller's in-memory state, for one term.
#[derive(Debug)]
pub struct ActiveState {
    pub term: u64,
    pub sessions: Sessions,
}

impl Controller {
    /// Follows leadership until `shutdown`: activates on becoming leader, deactivates on
    /// losing it, and ticks while active.
    pub(crate) async fn run(self: std::sync::Arc<Self>, shutdown: CancellationToken) {
        let mut metrics = self.raft.metrics();
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_rebalance: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = metrics.changed() => if changed.is_err() { break },
                _ = tick.tick() => {}
            }
            let (leader, term) = {
                let m = metrics.borrow();
                (m.state == ServerState::Leader, m.current_term)
            };
            let active_term = self.active.lock().as_ref().map(|a| a.term);
            if !leader {
                if active_term.is_some() {
                    tracing::info!(term, "no longer the active controller");
                    *self.active.lock() = None;
                }
                continue;
            }
            if active_term != Some(term) {
                if !self.activate(term).await {
                    continue;
                }
                next_rebalance = self.config.rebalance_interval.map(|i| Instant::now() + i);
            }
            self.fence_expired().await;
            if let (Some(at), Some(every)) = (next_rebalance, self.config.rebalance_interval) {
                if Instant::now() >= at {
                    self.rebalance().await;
                    next_rebalance = Some(Instant::now() + every);
                }
            }
        }
        *self.active.lock() = None;
    }

    /// Becomes active for `term` once everything committed before it is applied here.
    async fn activate(&self, term: u64) -> bool {
        let read = tokio::time::timeout(self.config.propose_timeout, self.raft.ensure_linearizable()).await;
        if !matches!(read, Ok(Ok(_))) {
            return false;
        }
        let image = self.image();
        let sessions = Sessions::new(
            &image,
            Instant::now(),
            self.config.session_timeout,
            self.config.reconnect_grace,
            self.config.failover_grace,
        );
        tracing::info!(term, brokers = image.brokers.len(), "active controller");
        *self.active.lock() = Some(ActiveState { term, sessions });
        true
    }

    /// Fences every unfenced broker whose session expired.
    async fn fence_expired(&self) {
        let expired = {
            let image = self.image();
            match self.active.lock().as_mut() {
                Some(active) => active.sessions.expired(&image, Instant::now()),
                None => return,
            }
        };
        for id in expired {
            let _decide = self.decide.lock().await;
            let records = fence_broker(&self.image(), id);
            if records.is_empty() {
                continue;
            }
            match self.propose(records).await {
                Ok(index) => tracing::info!(broker = id, index, "fenced broker (session expired)"),
                Err(e) => tracing::warn!(broker = id, error = %e, "could not fence broker"),
            }
        }
    }

    /// Moves leadership back to preferred replicas where they are live and in sync.
    async fn rebalance(&self) {
        let _decide = self.decide.lock().await;
        let records = preferred_leaders(&self.image(), |_, _| true);
        if records.is_empty() {
            return;
        }
        let moved = records.len();
        match self.propose(records).await {
            Ok(_) => tracing::info!(partitions = moved, "preferred leaders restored"),
            Err(e) => tracing::warn!(error = %e, "preferred leader rebalance failed"),
        }
    }

    /// Appends `records` as one batch (this node must lead) and waits until applied here.
    async fn propose(&self, records: Vec<MetadataRecord>) -> Result<u64, ControllerError> {
        let batch = Batch { records };
        let size = serde_json::to_vec(&batch).map_or(usize::MAX, |b| b.len());
        if size > MAX_ENTRY_BYTES {
            return Err(ControllerError::InvalidRequest(format!(
                "the change is {size} bytes, over the {MAX_ENTRY_BYTES}-byte entry limit"
            )));
        }
        let proposed =
            tokio::time::timeout(self.config.propose_timeout, propose_local(&self.raft, batch)).await;
        match proposed {
            Err(_) => Err(ControllerError::Timeout("proposal not committed in time".into())),
            Ok(Err(LeaderError::NotLeader { leader })) => Err(ControllerError::NotController {
                leader: self.leader_addr(leader),
            }),
            Ok(Err(LeaderError::Failed(e))) => Err(ControllerError::Failed(e)),
            Ok(Ok((index, BatchOutcome::Applied))) => Ok(index),
            Ok(Ok((index, BatchOutcome::Refused { position, reason }))) => Err(ControllerError::Failed(
                format!("batch at log index {index} refused at record {position}: {reason}"),
            )),
        }
    }

    /// The registered epoch of `id`, checked against the one a request carries.
    fn check_broker(image: &MetadataImage, id: BrokerId, epoch: i64) -> Result<(), ControllerError> {
        let broker = image.brokers.get(&id).ok_or(ControllerError::UnknownBroker(id))?;
        if broker.registration.epoch != epoch {
            return Err(ControllerError::StaleBrokerEpoch {
                id,
                got: epoch,
                current: broker.registration.epoch,
            });
        }
        Ok(())
    }

    fn shutting_down(&self) -> impl Fn(BrokerId) -> bool + '_ {
        move |id| {
            self.active
                .lock()
                .as_ref()
                .is_some_and(|a| a.sessions.is_shutting_down(id))
        }
    }

    /// A heartbeat: refresh the session, unfence a caught-up broker, run controlled shutdown.
    pub(crate) async fn heartbeat(
        &self,
        id: BrokerId,
        epoch: i64,
        applied_index: u64,
        want_shutdown: bool,
        conn: ConnId,
    ) -> Result<ControllerResponse, ControllerError> {
        let image = self.image();
        Self::check_broker(&image, id, epoch)?;
        let session = {
            let mut active = self.active.lock();
            let active = active.as_mut().ok_or_else(|| self.not_controller())?;
            active
                .sessions
                .heartbeat(id, epoch, conn, applied_index, want_shutdown, Instant::now())
                .clone()
        };
        let caught_up = u64::try_from(epoch).is_ok_and(|e| session.applied_index >= e);
        let live = image.is_live(id);
        if session.shutting_down && (live || leads_any(&image, id)) {
            // Controlled shutdown: move its leaderships away and fence it in one batch.
            let _decide = self.decide.lock().await;
            let records = fence_broker(&self.image(), id);
            if !records.is_empty() {
                self.propose(records).await?;
                tracing::info!(
                    broker = id,
                    "controlled shutdown: leaderships moved, broker fenced"
                );
            }
        } else if !session.shutting_down && !live && caught_up {
            let _decide = self.decide.lock().await;
            let records = unfence_broker(&self.image(), id, epoch);
            if !records.is_empty() {
                self.propose(records).await?;
                tracing::info!(broker = id, epoch, "unfenced broker");
            }
        }
        let image = self.image();
        Ok(ControllerResponse::Heartbeat {
            fenced: !image.is_live(id),
            shutdown_ok: session.shutting_down && !leads_any(&image, id),
        })
    }

    /// Requests that change metadata, on the active controller.
    pub(crate) async fn decide(
        &self,
        request: ControllerRequest,
    ) -> Result<ControllerResponse, ControllerError> {
        let _decide = self.decide.lock().await;
        let image = self.image();
        match request {
            ControllerRequest::RegisterBroker {
                id,
                incarnation,
                rack,
                listeners,
            } => {
                if id < 0
                    || listeners.len() > MAX_LISTENERS
                    || rack.as_ref().is_some_and(|r| r.len() > MAX_NAME_BYTES)
                    || listeners
                        .iter()
                        .any(|l| l.name.len() > MAX_NAME_BYTES || l.host.len() > MAX_NAME_BYTES)
                {
                    return Err(ControllerError::InvalidRequest(format!(
                        "registration of broker {id} is malformed"
                    )));
                }
                if let Some(b) = image.brokers.get(&id) {
                    if b.registration.incarnation == incarnation {
                        // A retried registration of the same process: same epoch.
                        return Ok(ControllerResponse::Registered {
                            epoch: b.registration.epoch,
                        });
                    }
                }
                // A restarted broker: its old incarnation leads nothing and leaves every ISR
                // before the new registration (which starts fenced) replaces it.
                let mut records = fence_broker(&image, id);
                records.push(MetadataRecord::RegisterBroker(BrokerRegistration {
                    id,
                    incarnation,
                    epoch: EPOCH_FROM_LOG_INDEX,
                    rack,
                    listeners,
                }));
                let index = self.propose(records).await?;
                let epoch = i64::try_from(index).unwrap_or(i64::MAX);
                if let Some(active) = self.active.lock().as_mut() {
                    active.sessions.registered(id, epoch, Instant::now());
                }
                tracing::info!(broker = id, epoch, "registered broker");
                Ok(ControllerResponse::Registered { epoch })
            }
            ControllerRequest::AlterPartition {
                broker,
                broker_epoch,
                topic_id,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                Self::check_broker(&image, broker, broker_epoch)?;
                let shutting_down = self.shutting_down();
                // A broker in controlled shutdown may leave ISRs but not join one.
                if let Some(current) = image.partition(topic_id, partition) {
                    if let Some(&joining) = isr
                        .iter()
                        .find(|b| !current.isr.contains(b) && shutting_down(**b))
                    {
                        return Err(AlterPartitionError::IneligibleReplica(joining).into());
                    }
                }
                let change = alter_partition(
                    &image,
                    topic_id,
                    partition,
                    broker,
                    leader_epoch,
                    partition_epoch,
                    &isr,
                )?;
                if let Some(record) = change {
                    self.propose(vec![record]).await?;
                }
                self.image()
                    .partition(topic_id, partition)
                    .cloned()
                    .map(ControllerResponse::Partition)
                    .ok_or(AlterPartitionError::UnknownPartition.into())
            }
            ControllerRequest::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
                validate_only,
            } => {
                let brokers = topics::candidates(&image, self.shutting_down());
                let id = Uuid::new_v4();
                let (records, created) = topics::create_topic(
                    &image,
                    &brokers,
                    id,
                    &name,
                    partitions,
                    replication_factor,
                    &configs,
                )?;
                if !validate_only {
                    self.propose(records).await?;
                }
                Ok(ControllerResponse::TopicCreated {
                    id,
                    partitions: created,
                })
            }
            ControllerRequest::CreatePartitions {
                name,
                total,
                validate_only,
            } => {
                let brokers = topics::candidates(&image, self.shutting_down());
                let created = topics::create_partitions(&image, &brokers, &name, total)?;
                if !validate_only {
                    self.propose(created.iter().cloned().map(MetadataRecord::Partition).collect())
                        .await?;
                }
                Ok(ControllerResponse::PartitionsCreated { partitions: created })
            }
            ControllerRequest::DeleteTopic { name } => {
                let (id, record) = topics::delete_topic(&image, &name)?;
                self.propose(vec![record]).await?;
                Ok(ControllerResponse::TopicDeleted { id })
            }
            ControllerRequest::SetTopicConfig { name, configs } => {
                let (id, records) = topics::set_topic_configs(&image, &name, &configs)?;
                if !records.is_empty() {
                    self.propose(records).await?;
                }
                Ok(ControllerResponse::ConfigsSet { id })
            }
            ControllerRequest::ElectLeaders {
                preferred,
                partitions,
            } => {
                let (records, results) = topics::elect_leaders(&image, preferred, partitions.as_deref());
                if !records.is_empty() {
                    self.propose(records).await?;
                }
                Ok(ControllerResponse::Elections(results))
            }
            ControllerRequest::AllocateProducerIds { broker, broker_epoch } => {
                Self::check_broker(&image, broker, broker_epoch)?;
                let first = image.next_producer_id;
                self.propose(vec![MetadataRecord::AllocateProducerIds {
                    broker,
                    first,
                    count: PRODUCER_ID_BLOCK,
                }])
                .await?;
                Ok(ControllerResponse::ProducerIds {
                    first,
                    count: PRODUCER_ID_BLOCK,
                })
            }
            ControllerRequest::BrokerHeartbeat { .. }
            | ControllerRequest::FetchMetadata { .. }
            | ControllerRequest::DescribeQuorum
            | ControllerRequest::AddVoter { .. }
            | ControllerRequest::RemoveVoter { .. } => {
                Err(ControllerError::InvalidRequest("not a metadata change".into()))
            }
        }
    }
}

fn leads_any(image: &MetadataImage, id: BrokerId) -> bool {
    image.partitions().any(|p| p.leader == id)
}
