//! The group coordinator's IO shell: every group in memory behind one lock, parked JoinGroup
//! and SyncGroup requests as oneshot channels, a timer task that lets time pass, and the
//! writes to `__consumer_offsets` that make commits and generations durable.
//!
//! Writes happen under the lock, so the order of records per key in the log is the order of
//! decisions in memory, which is what replay relies on.
//!
//! A single-node broker coordinates every group. In a cluster a broker coordinates the groups
//! whose `__consumer_offsets` partition it leads: [`GroupCoordinator::load_partition`] brings
//! a partition's groups in when it becomes leader, [`GroupCoordinator::unload_partition`]
//! drops them (answering parked requests NOT_COORDINATOR) when it stops.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::offsets::CommittedOffset;
use super::records;
use super::settings::GroupSettings;
use super::state::{
    Effects, Group, GroupConfig, GroupState, JoinRequest, JoinResult, LeavingMember, Member, Reply,
    SyncRequest, SyncResult, Token,
};
use super::store::{self, HISTORY_TOPIC, OFFSETS_TOPIC};
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::topics::{TopicError, TopicRegistry};

/// How often timeouts are checked.
const TICK: Duration = Duration::from_millis(100);

/// Every group this broker coordinates.
#[derive(Debug)]
pub struct GroupCoordinator {
    settings: GroupSettings,
    config: GroupConfig,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    groups: HashMap<String, Group>,
    next_token: Token,
    /// Parked requests, with the group they wait on.
    joins: HashMap<Token, (String, oneshot::Sender<JoinResult>)>,
    syncs: HashMap<Token, (String, oneshot::Sender<SyncResult>)>,
    /// The `__consumer_offsets` partitions whose groups this broker coordinates; `None`: all
    /// (a single-node broker).
    owned: Option<HashSet<i32>>,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<Member>,
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

/// One partition's commit request, validated by the handler.
#[derive(Debug, Clone)]
pub struct CommitEntry {
    pub topic: String,
    pub partition: i32,
    pub committed: CommittedOffset,
}

impl GroupCoordinator {
    /// Creates the internal topics if needed and replays `__consumer_offsets`.
    pub fn open(topics: &TopicRegistry, settings: GroupSettings) -> Result<Self, TopicError> {
        store::ensure_topics(topics, settings.offsets_history_retention_ms)?;
        let groups = store::replay(topics, now_ms());
        Ok(Self {
            config: GroupConfig::from(&settings),
            settings,
            inner: Mutex::new(Inner {
                groups,
                ..Inner::default()
            }),
        })
    }

    /// A cluster member's coordinator: no groups until partitions are loaded.
    pub fn for_cluster(settings: GroupSettings) -> Self {
        Self {
            config: GroupConfig::from(&settings),
            settings,
            inner: Mutex::new(Inner {
                owned: Some(HashSet::new()),
                ..Inner::default()
            }),
        }
    }

    /// NOT_COORDINATOR unless this broker coordinates `group_id` now.
    pub fn check_coordinator(&self, group_id: &str) -> Result<(), i16> {
        if self.inner.lock().coordinates(group_id) {
            Ok(())
        } else {
            Err(E::NotCoordinator.code())
        }
    }

    /// Takes over the groups of `__consumer_offsets` partition `partition` (replayed from its
    /// log by the caller) once this broker leads it.
    pub fn load_partition(&self, partition: i32, groups: HashMap<String, Group>) {
        let mut inner = self.inner.lock();
        let count = groups.len();
        for (id, group) in groups {
            if store::partition_for(&id) == partition {
                inner.groups.insert(id, group);
            }
        }
        if let Some(owned) = inner.owned.as_mut() {
            owned.insert(partition);
        }
        tracing::info!(
            partition,
            groups = count,
            "coordinating the groups of {OFFSETS_TOPIC} partition"
        );
    }

    /// Drops the groups of `partition` (this broker no longer leads it); their parked
    /// JoinGroup and SyncGroup requests answer NOT_COORDINATOR.
    pub fn unload_partition(&self, partition: i32) {
        let mut inner = self.inner.lock();
        let Some(owned) = inner.owned.as_mut() else {
            return;
        };
        owned.remove(&partition);
        let mine = |group: &str| store::partition_for(group) == partition;
        inner.groups.retain(|id, _| !mine(id));
        // Dropping a parked request's sender answers it NOT_COORDINATOR.
        inner.joins.retain(|_, (group, _)| !mine(group));
        inner.syncs.retain(|_, (group, _)| !mine(group));
        tracing::info!(
            partition,
            "no longer coordinating the groups of {OFFSETS_TOPIC} partition"
        );
    }

    pub fn settings(&self) -> &GroupSettings {
        &self.settings
    }

    /// JoinGroup; waits (until answered or shutdown) while the join phase is open.
    pub async fn join(
        &self,
        topics: &TopicRegistry,
        shutdown: &CancellationToken,
        group_id: &str,
        req: JoinRequest,
    ) -> JoinResult {
        let member_id = req.member_id.clone();
        tracing::debug!(group = group_id, member = %member_id, "JoinGroup");
        let rx = {
            let mut inner = self.inner.lock();
            if !inner.coordinates(group_id) {
                return JoinResult::error(E::NotCoordinator.code(), &member_id);
            }
            let token = inner.token();
            let (tx, rx) = oneshot::channel();
            inner.joins.insert(token, (group_id.to_string(), tx));
            let now = now_ms();
            let mut fx = Effects::default();
            inner
                .groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id, now))
                .join(token, req, &self.config, now, &mut fx);
            inner.deliver(topics, group_id, fx, now);
            rx
        };
        let r = tokio::select! {
            r = rx => r.unwrap_or_else(|_| JoinResult::error(E::NotCoordinator.code(), &member_id)),
            () = shutdown.cancelled() => JoinResult::error(E::NotCoordinator.code(), &member_id),
        };
        tracing::debug!(group = group_id, member = %r.member_id, error = r.error, generation = r.generation_id, "JoinGroup answered");
        r
    }

    /// SyncGroup; a follower waits for the leader's assignment.
    pub async fn sync(
        &self,
        topics: &TopicRegistry,
        shutdown: &CancellationToken,
        group_id: &str,
        req: SyncRequest,
    ) -> SyncResult {
        let rx = {
            let mut inner = self.inner.lock();
            if !inner.coordinates(group_id) {
                return SyncResult::error(E::NotCoordinator.code());
            }
            let token = inner.token();
            let (tx, rx) = oneshot::channel();
            inner.syncs.insert(token, (group_id.to_string(), tx));
            let now = now_ms();
            let mut fx = Effects::default();
            match inner.groups.get_mut(group_id) {
                Some(g) => g.sync(token, req, now, &mut fx),
                None => fx
                    .replies
                    .push(Reply::Sync(token, SyncResult::error(E::UnknownMemberId.code()))),
            }
            inner.deliver(topics, group_id, fx, now);
            rx
        };
        let r = tokio::select! {
            r = rx => r.unwrap_or_else(|_| SyncResult::error(E::NotCoordinator.code())),
            () = shutdown.cancelled() => SyncResult::error(E::NotCoordinator.code()),
        };
        tracing::debug!(group = group_id, error = r.error, "SyncGroup answered");
        r
    }

    pub fn heartbeat(&self, group_id: &str, member_id: &str, instance: Option<&str>, generation: i32) -> i16 {
        let mut inner = self.inner.lock();
        let coordinates = inner.coordinates(group_id);
        let code = match inner.groups.get_mut(group_id) {
            _ if !coordinates => E::NotCoordinator.code(),
            Some(g) => g.heartbeat(member_id, instance, generation, now_ms()),
            None => E::UnknownMemberId.code(),
        };
        tracing::debug!(
            group = group_id,
            member = member_id,
            generation,
            code,
            "Heartbeat"
        );
        code
    }

    /// LeaveGroup; one error code per leaving member.
    pub fn leave(&self, topics: &TopicRegistry, group_id: &str, leaving: &[LeavingMember]) -> Vec<i16> {
        let mut inner = self.inner.lock();
        if !inner.coordinates(group_id) {
            return vec![E::NotCoordinator.code(); leaving.len()];
        }
        let now = now_ms();
        let mut fx = Effects::default();
        let codes = match inner.groups.get_mut(group_id) {
            Some(g) => g.leave(leaving, &self.config, now, &mut fx),
            None => vec![E::UnknownMemberId.code(); leaving.len()],
        };
        inner.deliver(topics, group_id, fx, now);
        tracing::debug!(group = group_id, ?codes, "LeaveGroup");
        codes
    }

    /// OffsetCommit after the handler validated topics and metadata: checks membership, then
    /// writes the commits (and their history) and updates memory. `Ok(Some(stored))`: the
    /// caller answers only once the ISR has the commit (see [`store::Stored`]); memory is
    /// updated at once, which is what this log will hold for as long as this broker leads the
    /// partition (another leader replays its own log).
    pub fn commit(
        &self,
        topics: &TopicRegistry,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        entries: &[CommitEntry],
    ) -> Result<Option<store::Stored>, i16> {
        let mut inner = self.inner.lock();
        let now = now_ms();
        if !inner.coordinates(group_id) {
            return Err(E::NotCoordinator.code());
        }
        if !inner.groups.contains_key(group_id) {
            if generation >= 0 {
                // A generation this coordinator does not have (the group expired or was
                // deleted): Kafka's classic coordinator answers ILLEGAL_GENERATION.
                return Err(E::IllegalGeneration.code());
            }
            if entries.is_empty() {
                return Ok(None); // nothing to store: no group is created
            }
        }
        let group = inner
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, now));
        let code = group.validate_commit(member_id, instance, generation, now);
        if code != 0 {
            return Err(code);
        }
        if entries.is_empty() {
            return Ok(None);
        }
        let offsets: Vec<(Bytes, Option<Bytes>)> = entries
            .iter()
            .map(|e| {
                (
                    records::offset_key(group_id, &e.topic, e.partition),
                    Some(records::offset_value(&e.committed)),
                )
            })
            .collect();
        let stored = match store::append(topics, OFFSETS_TOPIC, group_id, &offsets, now) {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(group = group_id, error = %e, "offset commit not stored");
                return Err(E::CoordinatorNotAvailable.code());
            }
        };
        for e in entries {
            group.offsets.put(&e.topic, e.partition, e.committed.clone());
        }
        let history: Vec<(Bytes, Option<Bytes>)> = entries
            .iter()
            .map(|e| {
                (
                    records::offset_key(group_id, &e.topic, e.partition),
                    Some(records::history_value(
                        group_id,
                        &e.topic,
                        e.partition,
                        &e.committed,
                    )),
                )
            })
            .collect();
        if !store::leads(topics, HISTORY_TOPIC, group_id) {
            // In a cluster the history partition may be led elsewhere: not written yet.
            tracing::debug!(
                group = group_id,
                "offset history partition led elsewhere; not stored"
            );
        } else if let Err(e) = store::append(topics, HISTORY_TOPIC, group_id, &history, now) {
            // The commit itself is durable; only its history entry is missing.
            tracing::warn!(group = group_id, error = %e, "offset history not stored");
        }
        Ok(stored)
    }

    /// Committed offsets of `group_id`: for `requested` (topic, partitions) or, when `None`,
    /// every partition with a commit. Unknown group: no offsets (not an error, as in Kafka).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        requested: Option<&[(String, Vec<i32>)]>,
    ) -> Vec<(String, i32, Option<CommittedOffset>)> {
        let inner = self.inner.lock();
        let group = inner
            .groups
            .get(group_id)
            .filter(|g| g.state() != GroupState::Dead);
        match requested {
            Some(req) => req
                .iter()
                .flat_map(|(topic, partitions)| {
                    partitions.iter().map(move |p| {
                        let c = group.and_then(|g| g.offsets.get(topic, *p).cloned());
                        (topic.clone(), *p, c)
                    })
                })
                .collect(),
            None => group
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|(t, p, c)| (t.to_string(), p, Some(c.clone())))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let inner = self.inner.lock();
        let g = inner.groups.get(group_id)?;
        Some(GroupDescription {
            state: g.state(),
            protocol_type: g.protocol_type().unwrap_or_default().to_string(),
            protocol: g.protocol().unwrap_or_default().to_string(),
            members: g.members().cloned().collect(),
        })
    }

    pub fn list(&self) -> Vec<GroupListing> {
        let inner = self.inner.lock();
        let mut out: Vec<GroupListing> = inner
            .groups
            .values()
            .filter(|g| g.state() != GroupState::Dead)
            .map(|g| GroupListing {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type().unwrap_or_default().to_string(),
                state: g.state(),
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// DeleteGroups for one group: NON_EMPTY_GROUP while it has members.
    pub fn delete_group(&self, topics: &TopicRegistry, group_id: &str) -> i16 {
        let mut inner = self.inner.lock();
        if !inner.coordinates(group_id) {
            return E::NotCoordinator.code();
        }
        let Some(group) = inner.groups.get_mut(group_id) else {
            return E::GroupIdNotFound.code();
        };
        if group.state() == GroupState::Dead {
            return E::GroupIdNotFound.code();
        }
        if group.has_members() {
            return E::NonEmptyGroup.code();
        }
        let mut entries: Vec<(Bytes, Option<Bytes>)> = group
            .offsets
            .iter()
            .map(|(t, p, _)| (records::offset_key(group_id, t, p), None))
            .collect();
        entries.push((records::group_key(group_id), None));
        if let Err(e) = store::append(topics, OFFSETS_TOPIC, group_id, &entries, now_ms()) {
            tracing::warn!(group = group_id, error = %e, "group deletion not stored");
            return E::CoordinatorNotAvailable.code();
        }
        group.mark_dead();
        inner.groups.remove(group_id);
        0
    }

    /// OffsetDelete: removes commits unless a member is subscribed to the topic.
    /// Returns per (topic, partition) codes, or a group-level error.
    pub fn delete_offsets(
        &self,
        topics: &TopicRegistry,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, i16> {
        let mut inner = self.inner.lock();
        if !inner.coordinates(group_id) {
            return Err(E::NotCoordinator.code());
        }
        let Some(group) = inner.groups.get_mut(group_id) else {
            return Err(E::GroupIdNotFound.code());
        };
        if group.state() == GroupState::Dead {
            return Err(E::GroupIdNotFound.code());
        }
        let subscribed = subscribed_topics(group);
        let codes: Vec<i16> = partitions
            .iter()
            .map(|(t, _)| {
                if subscribed.iter().any(|s| s == t) {
                    E::GroupSubscribedToTopic.code()
                } else {
                    0
                }
            })
            .collect();
        let entries: Vec<(Bytes, Option<Bytes>)> = partitions
            .iter()
            .zip(&codes)
            .filter(|((t, p), code)| **code == 0 && group.offsets.get(t, *p).is_some())
            .map(|((t, p), _)| (records::offset_key(group_id, t, *p), None))
            .collect();
        if let Err(e) = store::append(topics, OFFSETS_TOPIC, group_id, &entries, now_ms()) {
            tracing::warn!(group = group_id, error = %e, "offset deletion not stored");
            return Err(E::CoordinatorNotAvailable.code());
        }
        for ((t, p), code) in partitions.iter().zip(&codes) {
            if *code == 0 {
                group.offsets.remove(t, *p);
            }
        }
        Ok(codes)
    }

    /// Lets time pass for every group; expires offsets of groups empty for longer than
    /// `offsets.retention.minutes` and forgets groups with nothing left.
    pub fn tick(&self, topics: &TopicRegistry) {
        let mut inner = self.inner.lock();
        let now = now_ms();
        let ids: Vec<String> = inner.groups.keys().cloned().collect();
        for id in ids {
            let mut fx = Effects::default();
            let mut expired = Vec::new();
            if let Some(g) = inner.groups.get_mut(&id) {
                g.tick(&self.config, now, &mut fx);
                let retention = self.settings.offsets_retention_ms;
                if g.state() == GroupState::Empty
                    && !g.offsets.is_empty()
                    && g.empty_since_ms + retention < now
                {
                    expired = g.offsets.clear();
                }
            }
            if !expired.is_empty() {
                tracing::info!(group = %id, partitions = expired.len(), "offsets expired");
                let tombstones: Vec<(Bytes, Option<Bytes>)> = expired
                    .iter()
                    .map(|(t, p)| (records::offset_key(&id, t, *p), None))
                    .collect();
                if let Err(e) = store::append(topics, OFFSETS_TOPIC, &id, &tombstones, now) {
                    tracing::warn!(group = %id, error = %e, "offset expiry not stored");
                }
            }
            inner.deliver(topics, &id, fx, now);
        }
        inner.groups.retain(|_, g| {
            !(g.state() == GroupState::Empty
                && g.offsets.is_empty()
                && !g.has_members()
                && g.generation() == 0)
        });
    }
}

impl Inner {
    fn coordinates(&self, group_id: &str) -> bool {
        self.owned
            .as_ref()
            .is_none_or(|owned| owned.contains(&store::partition_for(group_id)))
    }

    fn token(&mut self) -> Token {
        self.next_token += 1;
        self.next_token
    }

    /// Answers parked requests and persists the group if a generation completed.
    fn deliver(&mut self, topics: &TopicRegistry, group_id: &str, fx: Effects, now: i64) {
        if fx.store_group {
            if let Some(g) = self.groups.get(group_id) {
                let value = records::group_value(&g.snapshot());
                let entry = [(records::group_key(group_id), Some(value))];
                if let Err(e) = store::append(topics, OFFSETS_TOPIC, group_id, &entry, now) {
                    tracing::warn!(group = group_id, error = %e, "group metadata not stored");
                }
            }
        }
        for reply in fx.replies {
            match reply {
                Reply::Join(t, r) => {
                    if let Some((_, tx)) = self.joins.remove(&t) {
                        let _ = tx.send(r);
                    }
                }
                Reply::Sync(t, r) => {
                    if let Some((_, tx)) = self.syncs.remove(&t) {
                        let _ = tx.send(r);
                    }
                }
            }
        }
        // Senders whose requests went away (client disconnected) are dropped here.
        self.joins.retain(|_, (_, tx)| !tx.is_closed());
        self.syncs.retain(|_, (_, tx)| !tx.is_closed());
    }
}

/// Topics any member of a "consumer" group subscribes to (from its subscription metadata).
fn subscribed_topics(group: &Group) -> Vec<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::{Decodable, Message};
    if group.protocol_type() != Some("consumer") {
        return Vec::new();
    }
    let protocol = group.protocol().unwrap_or_default().to_string();
    let mut out = Vec::new();
    for m in group.members() {
        let mut buf = m.metadata(&protocol);
        let Ok(version) = bytes::Buf::try_get_i16(&mut buf) else {
            continue;
        };
        let max = ConsumerProtocolSubscription::VERSIONS.max;
        if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, max)) {
            out.extend(sub.topics.iter().map(|t| t.to_string()));
        }
    }
    out
}

/// Drives session, rebalance and offset-retention timeouts until shutdown.
pub async fn run_timers(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => broker.groups.tick(&broker.topics),
            () = broker.shutdown.cancelled() => return,
        }
    }
}
