//! Rebalance flows, timeouts, static membership and error answers, with time driven by hand.

use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn cfg() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 100,
        ..GroupConfig::default()
    }
}

fn join_req(member_id: &str, fresh: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"m"))],
        require_known_member_id: true,
        fresh_member_id: fresh.into(),
    }
}

fn joins(fx: &Effects) -> Vec<(Token, JoinResult)> {
    fx.replies
        .iter()
        .filter_map(|r| match r {
            Reply::Join(t, j) => Some((*t, j.clone())),
            Reply::Sync(..) => None,
        })
        .collect()
}

fn syncs(fx: &Effects) -> Vec<(Token, SyncResult)> {
    fx.replies
        .iter()
        .filter_map(|r| match r {
            Reply::Sync(t, s) => Some((*t, s.clone())),
            Reply::Join(..) => None,
        })
        .collect()
}

/// Joins `id` (v4 flow: MEMBER_ID_REQUIRED, then join with the id) and returns the effects of the second join.
fn join_new(g: &mut Group, token: Token, id: &str, now: i64) -> Effects {
    let mut fx = Effects::default();
    g.join(token, join_req("", id), &cfg(), now, &mut fx);
    let first = joins(&fx);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1.error, E::MemberIdRequired.code());
    assert_eq!(first[0].1.member_id, id);
    let mut fx = Effects::default();
    g.join(token, join_req(id, "unused"), &cfg(), now, &mut fx);
    fx
}

fn sync(g: &mut Group, token: Token, id: &str, assignments: Vec<(String, Bytes)>, now: i64) -> Effects {
    let mut fx = Effects::default();
    let generation = g.generation();
    g.sync(
        token,
        SyncRequest {
            member_id: id.into(),
            group_instance_id: None,
            generation_id: generation,
            protocol_type: None,
            protocol_name: None,
            assignments,
        },
        now,
        &mut fx,
    );
    fx
}

/// Two members through a full first rebalance; returns the group at `now` = 200 in Stable.
fn stable_pair() -> Group {
    let mut g = Group::new("g", 0);
    let fx = join_new(&mut g, 1, "a", 0);
    assert!(fx.replies.is_empty(), "the initial delay holds the join");
    let fx = join_new(&mut g, 2, "b", 50);
    assert!(fx.replies.is_empty());
    let mut fx = Effects::default();
    g.tick(&cfg(), 200, &mut fx);
    let j = joins(&fx);
    assert_eq!(j.len(), 2);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert_eq!(g.generation(), 1);
    let leader = j
        .iter()
        .find(|(_, r)| r.members.len() == 2)
        .expect("a leader got the members");
    assert_eq!(leader.1.leader, "a");
    assert_eq!(leader.1.protocol_name.as_deref(), Some("range"));
    let fx = sync(&mut g, 12, "b", vec![], 200);
    assert!(fx.replies.is_empty(), "a follower waits for the leader");
    let fx = sync(
        &mut g,
        11,
        "a",
        vec![
            ("a".into(), Bytes::from_static(b"A")),
            ("b".into(), Bytes::from_static(b"B")),
        ],
        200,
    );
    let s = syncs(&fx);
    assert_eq!(s.len(), 2);
    assert!(s.contains(&(
        12,
        SyncResult {
            error: 0,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignment: Bytes::from_static(b"B")
        }
    )));
    assert!(fx.store_group);
    assert_eq!(g.state(), GroupState::Stable);
    g
}

#[test]
fn first_rebalance_waits_initial_delay_then_leader_assigns() {
    stable_pair();
}

#[test]
fn heartbeat_answers_by_state_and_generation() {
    let mut g = stable_pair();
    assert_eq!(g.heartbeat("a", None, 1, 300), 0);
    assert_eq!(g.heartbeat("a", None, 0, 300), E::IllegalGeneration.code());
    assert_eq!(g.heartbeat("zzz", None, 1, 300), E::UnknownMemberId.code());
    // A third member joins: the others are told to rejoin.
    let _ = join_new(&mut g, 3, "c", 400);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.heartbeat("a", None, 1, 400), E::RebalanceInProgress.code());
}

#[test]
fn rebalance_completes_when_all_rejoin_and_drops_those_that_do_not() {
    let mut g = stable_pair();
    let _ = join_new(&mut g, 3, "c", 1000);
    let mut fx = Effects::default();
    g.join(4, join_req("a", ""), &cfg(), 1000, &mut fx);
    assert!(fx.replies.is_empty(), "b has not rejoined yet");
    // b keeps heartbeating but never rejoins: removed at the rebalance timeout.
    let mut fx = Effects::default();
    assert_eq!(g.heartbeat("b", None, 1, 20_000), E::RebalanceInProgress.code());
    g.tick(&cfg(), 1000 + i64::from(REBALANCE), &mut fx);
    let j = joins(&fx);
    assert_eq!(j.len(), 2);
    assert_eq!(g.generation(), 2);
    assert_eq!(g.members().count(), 2);
    assert!(g.members().all(|m| m.member_id != "b"));
}

#[test]
fn session_timeout_removes_member_and_triggers_rebalance() {
    let mut g = stable_pair();
    let mut fx = Effects::default();
    g.tick(&cfg(), 5000, &mut fx);
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.heartbeat("a", None, 1, 9000), 0);
    let mut fx = Effects::default();
    g.tick(&cfg(), 10_500, &mut fx);
    assert_eq!(g.state(), GroupState::PreparingRebalance, "b expired");
    assert_eq!(g.members().count(), 1);
    let mut fx = Effects::default();
    g.join(5, join_req("a", ""), &cfg(), 10_600, &mut fx);
    let j = joins(&fx);
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].1.generation_id, 2);
    assert_eq!(j[0].1.members.len(), 1);
}

#[test]
fn leave_empties_group_and_bumps_generation() {
    let mut g = stable_pair();
    let mut fx = Effects::default();
    let codes = g.leave(
        &[
            LeavingMember {
                member_id: "a".into(),
                group_instance_id: None,
            },
            LeavingMember {
                member_id: "nobody".into(),
                group_instance_id: None,
            },
        ],
        &cfg(),
        500,
        &mut fx,
    );
    assert_eq!(codes, vec![0, E::UnknownMemberId.code()]);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    let codes = g.leave(
        &[LeavingMember {
            member_id: "b".into(),
            group_instance_id: None,
        }],
        &cfg(),
        600,
        &mut fx,
    );
    assert_eq!(codes, vec![0]);
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.generation(), 2);
    assert!(fx.store_group);
}

#[test]
fn sync_errors() {
    let mut g = stable_pair();
    let mut fx = Effects::default();
    g.sync(
        9,
        SyncRequest {
            member_id: "a".into(),
            group_instance_id: None,
            generation_id: 7,
            protocol_type: None,
            protocol_name: None,
            assignments: vec![],
        },
        300,
        &mut fx,
    );
    assert_eq!(syncs(&fx)[0].1.error, E::IllegalGeneration.code());
    // In Stable a repeated sync returns the member's assignment.
    let fx = sync(&mut g, 10, "b", vec![], 300);
    assert_eq!(syncs(&fx)[0].1.assignment, Bytes::from_static(b"B"));
}

#[test]
fn join_during_completing_rebalance_fails_parked_syncs() {
    let mut g = Group::new("g", 0);
    let _ = join_new(&mut g, 1, "a", 0);
    let _ = join_new(&mut g, 2, "b", 0);
    let mut fx = Effects::default();
    g.tick(&cfg(), 200, &mut fx);
    let fx = sync(&mut g, 12, "b", vec![], 200);
    assert!(fx.replies.is_empty());
    let fx = join_new(&mut g, 3, "c", 300);
    assert_eq!(
        syncs(&fx),
        vec![(12, SyncResult::error(E::RebalanceInProgress.code()))]
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn protocol_vote_prefers_common_protocol() {
    let mut g = Group::new("g", 0);
    let mut a = join_req("", "a");
    a.require_known_member_id = false;
    a.protocols = vec![
        ("range".into(), Bytes::new()),
        ("cooperative-sticky".into(), Bytes::new()),
    ];
    let mut b = join_req("", "b");
    b.require_known_member_id = false;
    b.protocols = vec![("cooperative-sticky".into(), Bytes::new())];
    let mut fx = Effects::default();
    g.join(1, a, &cfg(), 0, &mut fx);
    g.join(2, b, &cfg(), 0, &mut fx);
    g.tick(&cfg(), 500, &mut fx);
    assert_eq!(g.protocol(), Some("cooperative-sticky"));
    let mut c = join_req("", "c");
    c.protocols = vec![("roundrobin".into(), Bytes::new())];
    let mut fx = Effects::default();
    g.join(3, c, &cfg(), 600, &mut fx);
    assert_eq!(joins(&fx)[0].1.error, E::InconsistentGroupProtocol.code());
}

#[test]
fn invalid_session_timeout_is_refused() {
    let mut g = Group::new("g", 0);
    let mut r = join_req("", "a");
    r.session_timeout_ms = 10;
    let mut fx = Effects::default();
    g.join(1, r, &cfg(), 0, &mut fx);
    assert_eq!(joins(&fx)[0].1.error, E::InvalidSessionTimeout.code());
}

fn static_req(instance: &str, fresh: &str) -> JoinRequest {
    let mut r = join_req("", fresh);
    r.group_instance_id = Some(instance.into());
    r
}

#[test]
fn static_member_rejoins_without_rebalance_and_old_id_is_fenced() {
    let mut g = Group::new("g", 0);
    let mut fx = Effects::default();
    g.join(1, static_req("i1", "a"), &cfg(), 0, &mut fx);
    g.join(2, static_req("i2", "b"), &cfg(), 0, &mut fx);
    g.tick(&cfg(), 200, &mut fx);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    let _ = sync(&mut g, 12, "b", vec![], 200);
    let _ = sync(&mut g, 11, "a", vec![("b".into(), Bytes::from_static(b"B"))], 200);
    assert_eq!(g.state(), GroupState::Stable);

    // b restarts: same instance id, no member id, same metadata.
    let mut fx = Effects::default();
    g.join(5, static_req("i2", "b2"), &cfg(), 1000, &mut fx);
    let j = joins(&fx);
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].1.error, 0);
    assert_eq!(j[0].1.member_id, "b2");
    assert_eq!(j[0].1.generation_id, 1);
    assert_eq!(g.state(), GroupState::Stable, "no rebalance");
    let fx = sync(&mut g, 6, "b2", vec![], 1000);
    assert_eq!(
        syncs(&fx)[0].1.assignment,
        Bytes::from_static(b"B"),
        "assignment kept"
    );
    // The old id is fenced.
    assert_eq!(g.heartbeat("b", Some("i2"), 1, 1000), E::FencedInstanceId.code());
    assert_eq!(g.heartbeat("b2", Some("i2"), 1, 1000), 0);
    // Static leave by instance id.
    let mut fx = Effects::default();
    let codes = g.leave(
        &[LeavingMember {
            member_id: String::new(),
            group_instance_id: Some("i2".into()),
        }],
        &cfg(),
        1100,
        &mut fx,
    );
    assert_eq!(codes, vec![0]);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn commits_are_validated_against_membership() {
    let mut g = Group::new("g", 0);
    assert_eq!(
        g.validate_commit("", None, -1, 0),
        0,
        "simple commit to an empty group"
    );
    let mut g = stable_pair();
    assert_eq!(g.validate_commit("", None, -1, 300), E::UnknownMemberId.code());
    assert_eq!(g.validate_commit("a", None, 1, 300), 0);
    assert_eq!(g.validate_commit("a", None, 0, 300), E::IllegalGeneration.code());
    assert_eq!(g.validate_commit("x", None, 1, 300), E::UnknownMemberId.code());
    assert_eq!(g.validate_commit("x", None, -1, 300), E::UnknownMemberId.code());
    assert_eq!(g.validate_commit("a", None, -1, 300), E::IllegalGeneration.code());
}

#[test]
fn simple_commit_to_empty_group_ignores_member_id() {
    let mut g = Group::new("g", 0);
    assert_eq!(g.validate_commit("stale-member", None, -1, 0), 0);
    assert_eq!(
        g.validate_commit("stale-member", None, 0, 0),
        E::UnknownMemberId.code()
    );
}

#[test]
fn pending_member_id_expires() {
    let mut g = Group::new("g", 0);
    let mut fx = Effects::default();
    g.join(1, join_req("", "a"), &cfg(), 0, &mut fx);
    g.tick(&cfg(), i64::from(SESSION) + 1, &mut fx);
    let mut fx = Effects::default();
    g.join(2, join_req("a", ""), &cfg(), i64::from(SESSION) + 2, &mut fx);
    assert_eq!(joins(&fx)[0].1.error, E::UnknownMemberId.code());
}

#[test]
fn snapshot_restore_round_trip() {
    let g = stable_pair();
    let snap = g.snapshot();
    let mut r = Group::new("g", 0);
    r.restore(snap.clone(), 5000);
    assert_eq!(r.state(), GroupState::Stable);
    assert_eq!(r.generation(), 1);
    assert_eq!(r.snapshot(), snap);
    assert_eq!(r.heartbeat("b", None, 1, 6000), 0);
}
