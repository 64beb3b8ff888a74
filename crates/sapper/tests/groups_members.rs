#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Group members as DescribeGroups reports them, and the group settings from the config file,
//! through the project's own client (exact error codes): a member is shown with the client id
//! of its JoinGroup header and "/<ip>" of its connection, a session timeout outside
//! `group_{min,max}_session_timeout_ms` is refused with INVALID_SESSION_TIMEOUT and commit
//! metadata longer than `offset_metadata_max_bytes` with OFFSET_METADATA_TOO_LARGE.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use sapper_wire::client::Client;
use sapper_wire::kafka_protocol::error::ResponseError;
use sapper_wire::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use sapper_wire::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use sapper_wire::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use sapper_wire::kafka_protocol::messages::{
    DescribeGroupsRequest, GroupId, JoinGroupRequest, JoinGroupResponse, OffsetCommitRequest,
    SyncGroupRequest, TopicName,
};
use sapper_wire::kafka_protocol::protocol::{Request, StrBytes};

use common::TestBroker;

/// Every request gets this long to be answered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The client id `sapper_wire::client::Client` puts in every request header.
const CLIENT_ID: &str = "sapper-wire-client";

/// One connection of [`Client`] with the runtime it lives on; every call is bounded in time.
struct RawClient {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl RawClient {
    fn connect(addr: SocketAddr) -> RawClient {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a tokio runtime");
        let client = rt
            .block_on(Client::connect(addr))
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        RawClient { rt, client }
    }

    fn call<R: Request>(&mut self, what: &str, request: &R, version: i16) -> R::Response {
        let client = &mut self.client;
        self.rt
            .block_on(async { tokio::time::timeout(REQUEST_TIMEOUT, client.send(request, version)).await })
            .unwrap_or_else(|_| panic!("{what}: no answer within {REQUEST_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"))
    }

    /// JoinGroup v5 as a "consumer" member with one protocol.
    fn join(&mut self, group: &str, member_id: &str, session_timeout_ms: i32) -> JoinGroupResponse {
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
            .with_session_timeout_ms(session_timeout_ms)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(StrBytes::from_string(member_id.to_owned()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(vec![0, 1, 2].into())]);
        let what = format!("JoinGroup {group} as '{member_id}' (session {session_timeout_ms} ms)");
        self.call(&what, &request, 5)
    }

    /// Commits offset 1 on partition 0 of `topic` as `member` of `generation`.
    fn commit_with_metadata(&mut self, group: &str, member: (&str, i32), topic: &str, metadata: &str) -> i16 {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
            .with_member_id(StrBytes::from_string(member.0.to_owned()))
            .with_generation_id_or_member_epoch(member.1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(1)
                    .with_committed_metadata(Some(StrBytes::from_string(
                        metadata.to_owned(),
                    )))])]);
        let what = format!("OffsetCommit with {} bytes of metadata", metadata.len());
        let response = self.call(&what, &request, 8);
        response.topics[0].partitions[0].error_code
    }
}

#[test]
fn describe_groups_shows_client_id_and_host_and_config_file_limits_apply() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sapper.toml");
    std::fs::write(
        &config,
        "group_initial_rebalance_delay_ms = 0\n\
         group_min_session_timeout_ms = 1000\n\
         group_max_session_timeout_ms = 60000\n\
         offset_metadata_max_bytes = 16\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut broker = TestBroker::start(&data, &["--config", config.to_str().unwrap()]);
    let group = common::unique_topic("members");
    let mut client = RawClient::connect(broker.addr);

    // Session timeouts outside [min, max] are refused before anything else.
    for session in [999, 60_001] {
        let r = client.join(&group, "", session);
        assert_eq!(
            r.error_code,
            ResponseError::InvalidSessionTimeout.code(),
            "session timeout {session}"
        );
    }

    // v4+: a new member first learns its id, then joins with it and leads generation 1.
    let r = client.join(&group, "", 30_000);
    assert_eq!(r.error_code, ResponseError::MemberIdRequired.code());
    let member_id = r.member_id.to_string();
    assert!(
        member_id.starts_with(CLIENT_ID),
        "member id {member_id} is not derived from the client id"
    );
    let r = client.join(&group, &member_id, 30_000);
    assert_eq!(r.error_code, 0, "rejoin with the given member id");
    assert_eq!(r.leader.as_str(), member_id);
    let generation = r.generation_id;

    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.clone())))
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(member_id.clone()))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(StrBytes::from_string(member_id.clone()))
            .with_assignment(vec![9, 9].into())]);
    let r = client.call("SyncGroup", &sync, 3);
    assert_eq!(r.error_code, 0, "SyncGroup");

    let describe =
        DescribeGroupsRequest::default().with_groups(vec![GroupId(StrBytes::from_string(group.clone()))]);
    let r = client.call("DescribeGroups", &describe, 5);
    assert_eq!(r.groups.len(), 1);
    let g = &r.groups[0];
    assert_eq!(g.error_code, 0);
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(g.members.len(), 1);
    let m = &g.members[0];
    assert_eq!(m.member_id.as_str(), member_id);
    assert_eq!(m.client_id.as_str(), CLIENT_ID);
    assert_eq!(m.client_host.as_str(), "/127.0.0.1");
    assert_eq!(&m.member_assignment[..], &[9, 9]);

    // offset_metadata_max_bytes = 16: 16 bytes are accepted, 17 are not.
    let topic = common::unique_topic("members-commit");
    common::create_topic(&broker.bootstrap(), &topic, 1);
    let member = (member_id.as_str(), generation);
    assert_eq!(
        client.commit_with_metadata(&group, member, &topic, &"m".repeat(16)),
        0
    );
    assert_eq!(
        client.commit_with_metadata(&group, member, &topic, &"m".repeat(17)),
        ResponseError::OffsetMetadataTooLarge.code()
    );
    broker.assert_running();
}
