//! The classic consumer group protocol as a pure state machine: one [`Group`], its members and
//! its rebalance, driven by requests and by an explicit clock. No IO, no timers, no channels.
//!
//! Requests that Kafka answers later (JoinGroup while the join phase is open, SyncGroup from a
//! follower before the leader's assignment) carry a [`Token`]; every method appends the answers
//! it can give now, for this request or for requests parked earlier, to an [`Effects`]. The IO
//! shell (`coordinator.rs`) maps tokens to channels and calls [`Group::tick`] to let time pass.
//!
//! States follow Kafka's `GroupMetadata`: Empty -> PreparingRebalance (join phase) ->
//! CompletingRebalance (waiting for the leader's SyncGroup) -> Stable, and Dead once deleted.
//! Invariants kept here:
//! - `leader` is a member whenever the group has members and is not Empty.
//! - a member has at most one parked JoinGroup and one parked SyncGroup.
//! - `static_members` maps each group.instance.id to exactly the member that holds it.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;

use super::offsets::Offsets;

/// Identifies a parked JoinGroup or SyncGroup request.
pub type Token = u64;

/// Kafka's group states, with the names DescribeGroups and ListGroups report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
        }
    }
}

/// Broker settings the protocol depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// Kafka `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members.
    pub initial_rebalance_delay_ms: i64,
    /// Kafka `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// Kafka `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
}

impl From<&super::GroupSettings> for GroupConfig {
    fn from(s: &super::GroupSettings) -> Self {
        Self {
            initial_rebalance_delay_ms: s.initial_rebalance_delay_ms,
            min_session_timeout_ms: s.min_session_timeout_ms,
            max_session_timeout_ms: s.max_session_timeout_ms,
        }
    }
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self::from(&super::GroupSettings::default())
    }
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_heartbeat_ms: i64,
    awaiting_join: Option<Token>,
    awaiting_sync: Option<Token>,
}

impl Member {
    /// The member's metadata for `protocol` (empty if it does not support it).
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn session_expired(&self, now_ms: i64) -> bool {
        self.awaiting_join.is_none()
            && self.awaiting_sync.is_none()
            && self.last_heartbeat_ms + i64::from(self.session_timeout_ms) < now_ms
    }
}

/// A JoinGroup as the state machine sees it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a member without an id first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
    /// The id to give this member if it is new (the shell makes it unique).
    pub fresh_member_id: String,
}

/// One member as the leader's JoinGroup response lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinResult {
    pub error: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinedMember>,
    pub skip_assignment: bool,
}

impl JoinResult {
    pub fn error(error: i16, member_id: &str) -> Self {
        Self {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// A SyncGroup as the state machine sees it.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: i16) -> Self {
        Self {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// An answer to a (possibly parked) request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Join(Token, JoinResult),
    Sync(Token, SyncResult),
}

/// What a call decided besides its own state change.
#[derive(Debug, Default)]
pub struct Effects {
    pub replies: Vec<Reply>,
    /// The group's metadata changed in a way that must be persisted (a generation completed).
    pub store_group: bool,
}

/// One member to remove in a LeaveGroup.
#[derive(Debug, Clone)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// One consumer group: membership, rebalance progress and committed offsets.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    static_members: HashMap<String, String>,
    /// Ids handed out with MEMBER_ID_REQUIRED, with the time they expire if unused.
    pending_members: HashMap<String, i64>,
    /// While the first rebalance of an empty group waits for more members.
    initial_delay_until: Option<i64>,
    rebalance_deadline_ms: i64,
    sync_deadline_ms: i64,
    /// When the group last became Empty (offset retention counts from here).
    pub empty_since_ms: i64,
    pub offsets: Offsets,
}

/// What persistence keeps of a group (and what replay restores).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSnapshot {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<MemberSnapshot>,
}

/// One member as persisted: its subscription for the chosen protocol and its assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberSnapshot {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

impl Group {
    pub fn new(id: &str, now_ms: i64) -> Self {
        Self {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            initial_delay_until: None,
            rebalance_deadline_ms: 0,
            sync_deadline_ms: 0,
            empty_since_ms: now_ms,
            offsets: Offsets::default(),
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }
    pub fn generation(&self) -> i32 {
        self.generation
    }
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }
    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    /// Marks the group deleted; the caller checked it has no members.
    pub fn mark_dead(&mut self) {
        self.state = GroupState::Dead;
    }

    // ----- JoinGroup -----

    pub fn join(&mut self, token: Token, req: JoinRequest, cfg: &GroupConfig, now: i64, fx: &mut Effects) {
        let reply = |fx: &mut Effects, code: E, id: &str| {
            fx.replies
                .push(Reply::Join(token, JoinResult::error(code.code(), id)));
        };
        if self.state == GroupState::Dead {
            return reply(fx, E::CoordinatorNotAvailable, &req.member_id);
        }
        if !(cfg.min_session_timeout_ms..=cfg.max_session_timeout_ms).contains(&req.session_timeout_ms) {
            return reply(fx, E::InvalidSessionTimeout, &req.member_id);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() || !self.supports(&req) {
            return reply(fx, E::InconsistentGroupProtocol, &req.member_id);
        }
        if req.member_id.is_empty() {
            self.join_unknown(token, req, cfg, now, fx);
        } else {
            self.join_known(token, req, cfg, now, fx);
        }
    }

    /// Whether a member with `req`'s protocols may join: same type, and some protocol every
    /// current member supports too.
    fn supports(&self, req: &JoinRequest) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(req.protocol_type.as_str()) {
            return false;
        }
        req.protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .filter(|m| m.member_id != req.member_id)
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    fn join_unknown(
        &mut self,
        token: Token,
        req: JoinRequest,
        cfg: &GroupConfig,
        now: i64,
        fx: &mut Effects,
    ) {
        let new_id = req.fresh_member_id.clone();
        if let Some(instance) = req.group_instance_id.clone() {
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(token, &old_id, req, cfg, now, fx);
            }
        } else if req.require_known_member_id {
            let session = i64::from(req.session_timeout_ms);
            self.pending_members.insert(new_id.clone(), now + session);
            fx.replies.push(Reply::Join(
                token,
                JoinResult::error(E::MemberIdRequired.code(), &new_id),
            ));
            return;
        }
        self.add_member(token, new_id, req, cfg, now, fx);
    }

    fn join_known(&mut self, token: Token, req: JoinRequest, cfg: &GroupConfig, now: i64, fx: &mut Effects) {
        let id = req.member_id.clone();
        if self.pending_members.remove(&id).is_some() {
            return self.add_member(token, id, req, cfg, now, fx);
        }
        if let Some(code) = self.check_member(&id, req.group_instance_id.as_deref()) {
            fx.replies.push(Reply::Join(token, JoinResult::error(code, &id)));
            return;
        }
        let leader = self.leader.as_deref() == Some(id.as_str());
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        let changed = member.protocols != req.protocols;
        member.protocols = req.protocols;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.last_heartbeat_ms = now;
        if let Some(old) = member.awaiting_join.replace(token) {
            // A retried JoinGroup replaces the parked one; the old connection gets an error.
            fx.replies.push(Reply::Join(
                old,
                JoinResult::error(E::RebalanceInProgress.code(), &id),
            ));
        }
        match self.state {
            GroupState::PreparingRebalance => self.try_complete_join(now, fx),
            GroupState::CompletingRebalance if !changed => {
                let result = self.join_result_for(&id);
                if let Some(m) = self.members.get_mut(&id) {
                    m.awaiting_join = None;
                }
                fx.replies.push(Reply::Join(token, result));
            }
            GroupState::Stable if !changed && !leader => {
                let result = self.join_result_for(&id);
                if let Some(m) = self.members.get_mut(&id) {
                    m.awaiting_join = None;
                }
                fx.replies.push(Reply::Join(token, result));
            }
            _ => self.prepare_rebalance(cfg, now, fx),
        }
    }

    /// UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID when `member_id` may not act in this group.
    fn check_member(&self, member_id: &str, instance: Option<&str>) -> Option<i16> {
        if let Some(instance) = instance {
            if let Some(holder) = self.static_members.get(instance) {
                if holder != member_id {
                    return Some(E::FencedInstanceId.code());
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Some(E::UnknownMemberId.code());
        }
        None
    }

    fn add_member(
        &mut self,
        token: Token,
        id: String,
        req: JoinRequest,
        cfg: &GroupConfig,
        now: i64,
        fx: &mut Effects,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(instance) = &req.group_instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        self.members.insert(
            id.clone(),
            Member {
                member_id: id,
                group_instance_id: req.group_instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                session_timeout_ms: req.session_timeout_ms,
                protocols: req.protocols,
                assignment: Bytes::new(),
                last_heartbeat_ms: now,
                awaiting_join: Some(token),
                awaiting_sync: None,
            },
        );
        if self.state == GroupState::PreparingRebalance {
            if let Some(until) = self.initial_delay_until {
                // Kafka's InitialDelayedJoin: each newcomer extends the wait, up to the rebalance timeout.
                let extended = (now + cfg.initial_rebalance_delay_ms).min(self.rebalance_deadline_ms);
                self.initial_delay_until = Some(until.max(extended));
            }
            self.try_complete_join(now, fx);
        } else {
            self.prepare_rebalance(cfg, now, fx);
        }
    }

    /// A static member rejoined without its member id: it takes a new id, and the old id is fenced.
    fn replace_static_member(
        &mut self,
        token: Token,
        old_id: &str,
        req: JoinRequest,
        cfg: &GroupConfig,
        now: i64,
        fx: &mut Effects,
    ) {
        let Some(mut member) = self.members.remove(old_id) else {
            return self.add_member(token, req.fresh_member_id.clone(), req, cfg, now, fx);
        };
        let new_id = req.fresh_member_id.clone();
        if let Some(t) = member.awaiting_join.take() {
            fx.replies.push(Reply::Join(
                t,
                JoinResult::error(E::FencedInstanceId.code(), old_id),
            ));
        }
        if let Some(t) = member.awaiting_sync.take() {
            fx.replies
                .push(Reply::Sync(t, SyncResult::error(E::FencedInstanceId.code())));
        }
        let unchanged = member.protocols == req.protocols;
        member.member_id = new_id.clone();
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.protocols = req.protocols;
        member.last_heartbeat_ms = now;
        member.awaiting_join = Some(token);
        if let Some(instance) = &req.group_instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(new_id.clone(), member);
        match self.state {
            GroupState::Stable if unchanged => {
                // Same subscription: keep the generation and the assignment, no rebalance.
                let mut result = self.join_result_for(&new_id);
                result.skip_assignment = self.leader.as_deref() == Some(new_id.as_str());
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.awaiting_join = None;
                }
                fx.replies.push(Reply::Join(token, result));
                fx.store_group = true;
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, fx),
            _ => self.prepare_rebalance(cfg, now, fx),
        }
    }

    /// The JoinGroup answer for `member_id` in the current generation (the leader gets the members).
    fn join_result_for(&self, member_id: &str) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: m.metadata(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: 0,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: Some(protocol),
            leader,
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    fn prepare_rebalance(&mut self, cfg: &GroupConfig, now: i64, fx: &mut Effects) {
        if self.state == GroupState::CompletingRebalance {
            self.fail_parked_syncs(E::RebalanceInProgress.code(), fx);
        }
        let initial = self.state == GroupState::Empty;
        self.state = GroupState::PreparingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0);
        self.rebalance_deadline_ms = now + timeout;
        self.initial_delay_until =
            initial.then(|| (now + cfg.initial_rebalance_delay_ms).min(self.rebalance_deadline_ms));
        self.try_complete_join(now, fx);
    }

    fn fail_parked_syncs(&mut self, code: i16, fx: &mut Effects) {
        for m in self.members.values_mut() {
            if let Some(t) = m.awaiting_sync.take() {
                fx.replies.push(Reply::Sync(t, SyncResult::error(code)));
            }
        }
    }

    /// Ends the join phase once every member rejoined (and any initial delay passed).
    fn try_complete_join(&mut self, now: i64, fx: &mut Effects) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if let Some(until) = self.initial_delay_until {
            if now < until {
                return;
            }
        }
        let all_joined =
            self.members.values().all(|m| m.awaiting_join.is_some()) && self.pending_members.is_empty();
        if all_joined || now >= self.rebalance_deadline_ms || self.initial_delay_until.is_some() {
            self.complete_join(now, fx);
        }
    }

    fn complete_join(&mut self, now: i64, fx: &mut Effects) {
        self.initial_delay_until = None;
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id, fx);
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.become_empty(now);
            fx.store_group = true;
            return;
        }
        self.protocol = self.select_protocol();
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0);
        self.sync_deadline_ms = now + timeout;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result_for(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.assignment = Bytes::new();
                m.last_heartbeat_ms = now;
                if let Some(t) = m.awaiting_join.take() {
                    fx.replies.push(Reply::Join(t, result));
                }
            }
        }
    }

    fn become_empty(&mut self, now: i64) {
        self.state = GroupState::Empty;
        self.protocol = None;
        self.leader = None;
        self.empty_since_ms = now;
    }

    /// Kafka's vote: candidates are the protocols every member supports; each member votes for
    /// its first candidate; most votes wins, ties go to the leader's (or first member's) order.
    fn select_protocol(&self) -> Option<String> {
        let first = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .or_else(|| self.members.values().next())?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| &p == n))
            })
            .collect();
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(p, _)| candidates.contains(&p)) {
                *votes.entry(name).or_default() += 1;
            }
        }
        let best = votes.values().copied().max().unwrap_or(0);
        candidates
            .into_iter()
            .find(|c| votes.get(c).copied().unwrap_or(0) == best)
            .cloned()
    }

    fn remove_member(&mut self, id: &str, fx: &mut Effects) {
        let Some(m) = self.members.remove(id) else { return };
        if let Some(instance) = &m.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(id) {
                self.static_members.remove(instance);
            }
        }
        if let Some(t) = m.awaiting_join {
            fx.replies
                .push(Reply::Join(t, JoinResult::error(E::UnknownMemberId.code(), id)));
        }
        if let Some(t) = m.awaiting_sync {
            fx.replies
                .push(Reply::Sync(t, SyncResult::error(E::UnknownMemberId.code())));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    /// A member left or was expelled: the rest must rebalance.
    fn member_gone(&mut self, cfg: &GroupConfig, now: i64, fx: &mut Effects) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(cfg, now, fx),
            GroupState::PreparingRebalance => self.try_complete_join(now, fx),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    // ----- SyncGroup -----

    pub fn sync(&mut self, token: Token, req: SyncRequest, now: i64, fx: &mut Effects) {
        let reply =
            |fx: &mut Effects, code: i16| fx.replies.push(Reply::Sync(token, SyncResult::error(code)));
        if self.state == GroupState::Dead {
            return reply(fx, E::CoordinatorNotAvailable.code());
        }
        if let Some(code) = self.check_member(&req.member_id, req.group_instance_id.as_deref()) {
            return reply(fx, code);
        }
        if req.generation_id != self.generation {
            return reply(fx, E::IllegalGeneration.code());
        }
        let type_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref());
        let name_mismatch = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != self.protocol.as_ref());
        if type_mismatch || name_mismatch {
            return reply(fx, E::InconsistentGroupProtocol.code());
        }
        match self.state {
            GroupState::Empty => reply(fx, E::UnknownMemberId.code()),
            GroupState::PreparingRebalance => reply(fx, E::RebalanceInProgress.code()),
            GroupState::CompletingRebalance => {
                let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
                if let Some(m) = self.members.get_mut(&req.member_id) {
                    m.last_heartbeat_ms = now;
                    if let Some(old) = m.awaiting_sync.replace(token) {
                        fx.replies
                            .push(Reply::Sync(old, SyncResult::error(E::RebalanceInProgress.code())));
                    }
                }
                if is_leader {
                    let mut given: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.member_id).unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    fx.store_group = true;
                    let protocol_type = self.protocol_type.clone();
                    let protocol_name = self.protocol.clone();
                    for m in self.members.values_mut() {
                        if let Some(t) = m.awaiting_sync.take() {
                            fx.replies.push(Reply::Sync(
                                t,
                                SyncResult {
                                    error: 0,
                                    protocol_type: protocol_type.clone(),
                                    protocol_name: protocol_name.clone(),
                                    assignment: m.assignment.clone(),
                                },
                            ));
                        }
                    }
                }
            }
            GroupState::Stable => {
                let Some(m) = self.members.get_mut(&req.member_id) else {
                    return;
                };
                m.last_heartbeat_ms = now;
                let assignment = m.assignment.clone();
                fx.replies.push(Reply::Sync(
                    token,
                    SyncResult {
                        error: 0,
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol.clone(),
                        assignment,
                    },
                ));
            }
            GroupState::Dead => reply(fx, E::CoordinatorNotAvailable.code()),
        }
    }

    // ----- Heartbeat, LeaveGroup, commits -----

    /// Heartbeat: refreshes the member's session and tells it whether to rejoin.
    pub fn heartbeat(&mut self, member_id: &str, instance: Option<&str>, generation: i32, now: i64) -> i16 {
        match self.state {
            GroupState::Dead => return E::CoordinatorNotAvailable.code(),
            GroupState::Empty => return E::UnknownMemberId.code(),
            _ => {}
        }
        if let Some(code) = self.check_member(member_id, instance) {
            return code;
        }
        if generation != self.generation {
            return E::IllegalGeneration.code();
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat_ms = now;
        }
        match self.state {
            GroupState::PreparingRebalance => E::RebalanceInProgress.code(),
            _ => 0,
        }
    }

    /// LeaveGroup for each of `leaving`; returns one error code per entry.
    pub fn leave(
        &mut self,
        leaving: &[LeavingMember],
        cfg: &GroupConfig,
        now: i64,
        fx: &mut Effects,
    ) -> Vec<i16> {
        let mut codes = Vec::with_capacity(leaving.len());
        let mut removed = false;
        for l in leaving {
            if self.state == GroupState::Dead {
                codes.push(E::CoordinatorNotAvailable.code());
                continue;
            }
            if self.pending_members.remove(&l.member_id).is_some() {
                codes.push(0);
                continue;
            }
            let id = match (&l.group_instance_id, l.member_id.is_empty()) {
                (Some(instance), true) => match self.static_members.get(instance) {
                    Some(id) => id.clone(),
                    None => {
                        codes.push(E::UnknownMemberId.code());
                        continue;
                    }
                },
                _ => l.member_id.clone(),
            };
            if let Some(code) = self.check_member(&id, l.group_instance_id.as_deref()) {
                codes.push(code);
                continue;
            }
            self.remove_member(&id, fx);
            removed = true;
            codes.push(0);
        }
        if removed {
            self.member_gone(cfg, now, fx);
        }
        codes
    }

    /// Whether an OffsetCommit from (`member_id`, `generation`) may write; 0 if so.
    /// Generation -1 is a "simple" commit (an admin client, or a consumer that assigns its own
    /// partitions), allowed while the group is Empty whatever member id it names, as in Kafka;
    /// otherwise the member must belong to the current generation.
    pub fn validate_commit(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now: i64,
    ) -> i16 {
        if self.state == GroupState::Dead {
            return E::CoordinatorNotAvailable.code();
        }
        if generation < 0 && self.state == GroupState::Empty {
            return 0;
        }
        if let Some(code) = self.check_member(member_id, instance) {
            return code;
        }
        if generation != self.generation {
            return E::IllegalGeneration.code();
        }
        if self.state == GroupState::CompletingRebalance {
            return E::RebalanceInProgress.code();
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat_ms = now;
        }
        0
    }

    // ----- time -----

    /// Lets time pass: expires sessions, pending member ids, the join phase and the sync phase.
    pub fn tick(&mut self, cfg: &GroupConfig, now: i64, fx: &mut Effects) {
        self.pending_members.retain(|_, deadline| *deadline >= now);
        if matches!(self.state, GroupState::Empty | GroupState::Dead) {
            return;
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.session_expired(now))
            .map(|m| m.member_id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                tracing::info!(group = %self.id, member = %id, "session timed out; removing member");
                self.remove_member(id, fx);
            }
            self.member_gone(cfg, now, fx);
        }
        match self.state {
            GroupState::PreparingRebalance => self.try_complete_join(now, fx),
            GroupState::CompletingRebalance if now >= self.sync_deadline_ms => {
                // The leader never sent its assignment: drop members that did not sync, start over.
                let silent: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| m.awaiting_sync.is_none())
                    .map(|m| m.member_id.clone())
                    .collect();
                for id in &silent {
                    self.remove_member(id, fx);
                }
                if self.members.is_empty() {
                    self.fail_parked_syncs(E::RebalanceInProgress.code(), fx);
                    self.generation += 1;
                    self.become_empty(now);
                    fx.store_group = true;
                } else {
                    self.prepare_rebalance(cfg, now, fx);
                }
            }
            _ => {}
        }
    }

    // ----- persistence -----

    pub fn snapshot(&self) -> GroupSnapshot {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupSnapshot {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .values()
                .map(|m| MemberSnapshot {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Rebuilds membership from a persisted snapshot: Stable with its members (who must
    /// heartbeat within their session timeout from `now`), or Empty.
    pub fn restore(&mut self, snap: GroupSnapshot, now: i64) {
        self.generation = snap.generation;
        self.protocol_type = (!snap.protocol_type.is_empty()).then_some(snap.protocol_type);
        self.members.clear();
        self.static_members.clear();
        let protocol = snap.protocol.clone().unwrap_or_default();
        for m in snap.members {
            if let Some(instance) = &m.group_instance_id {
                self.static_members.insert(instance.clone(), m.member_id.clone());
            }
            self.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocols: vec![(protocol.clone(), m.subscription)],
                    assignment: m.assignment,
                    last_heartbeat_ms: now,
                    awaiting_join: None,
                    awaiting_sync: None,
                },
            );
        }
        if self.members.is_empty() {
            self.become_empty(now);
        } else {
            self.state = GroupState::Stable;
            self.protocol = snap.protocol;
            self.leader = snap.leader.filter(|l| self.members.contains_key(l));
            if self.leader.is_none() {
                self.leader = self.members.keys().next().cloned();
            }
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
