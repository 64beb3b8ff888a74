//! DescribeQuorum answers built from hand-made quorum views, encoded at every version we serve
//! (kafka-protocol refuses fields set beyond the negotiated version).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::BytesMut;
use kafka_protocol::messages::describe_quorum_request::{
    PartitionData as AskedPartition, TopicData as AskedTopic,
};
use kafka_protocol::protocol::Encodable;
use sapper_meta::raft::VoterStatus;

use super::*;

const NOW: i64 = 1_700_000_000_000;

fn encodes_at_every_version(response: &DescribeQuorumResponse) {
    for version in 0..=2 {
        let mut buf = BytesMut::new();
        response
            .encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("v{version}: {e}"));
    }
}

fn three_voters() -> QuorumStatus {
    let voter = |id: u64, matched: Option<u64>| VoterStatus {
        id,
        addr: format!("127.0.0.1:{}", 19_090 + id),
        matched,
        lag: None,
    };
    QuorumStatus {
        node_id: 2,
        state: "Leader".into(),
        leader: Some(2),
        term: 4,
        last_log_index: Some(41),
        last_applied: Some(40),
        committed: Some(41),
        millis_since_quorum_ack: Some(12),
        voters: vec![voter(1, Some(41)), voter(2, Some(41)), voter(3, Some(30))],
        learners: Vec::new(),
    }
}

fn request(topic: &str, partitions: &[i32]) -> DescribeQuorumRequest {
    DescribeQuorumRequest::default().with_topics(vec![AskedTopic::default()
        .with_topic_name(TopicName(str_bytes(topic)))
        .with_partitions(
            partitions
                .iter()
                .map(|&p| AskedPartition::default().with_partition_index(p))
                .collect(),
        )])
}

#[test]
fn the_leaders_view_maps_raft_onto_kafka_fields() {
    let status = three_voters();
    for version in 0..=2 {
        let response = from_status(&status, version, NOW);
        encodes_at_every_version(&from_status(&status, 0, NOW));
        let topic = &response.topics[0];
        assert_eq!(topic.topic_name.0.as_str(), METADATA_TOPIC);
        let p = &topic.partitions[0];
        assert_eq!((p.partition_index, p.error_code), (0, 0));
        assert_eq!((p.leader_id.0, p.leader_epoch), (2, 4));
        assert_eq!(p.high_watermark, 42, "committed index 41, exclusive");
        let voters: Vec<(i32, i64, i64, i64)> = p
            .current_voters
            .iter()
            .map(|v| {
                (
                    v.replica_id.0,
                    v.log_end_offset,
                    v.last_fetch_timestamp,
                    v.last_caught_up_timestamp,
                )
            })
            .collect();
        assert_eq!(voters, vec![(1, 42, -1, NOW), (2, 42, -1, NOW), (3, 31, -1, -1)]);
        assert!(p.observers.is_empty());
        if version >= 2 {
            let nodes: Vec<(i32, String, u16)> = response
                .nodes
                .iter()
                .map(|n| {
                    let l = &n.listeners[0];
                    assert_eq!(l.name.as_str(), "CONTROLLER");
                    (n.node_id.0, l.host.to_string(), l.port)
                })
                .collect();
            assert_eq!(
                nodes,
                vec![
                    (1, "127.0.0.1".into(), 19_091),
                    (2, "127.0.0.1".into(), 19_092),
                    (3, "127.0.0.1".into(), 19_093)
                ]
            );
        } else {
            assert!(response.nodes.is_empty());
        }
        let mut buf = BytesMut::new();
        response.encode(&mut buf, version).unwrap();
    }
}

#[test]
fn a_single_node_broker_is_its_own_only_voter() {
    let response = single_node(1, NOW);
    encodes_at_every_version(&response);
    let p = &response.topics[0].partitions[0];
    assert_eq!((p.leader_id.0, p.leader_epoch, p.high_watermark), (1, 0, 0));
    assert_eq!(p.current_voters.len(), 1);
    assert_eq!(p.current_voters[0].replica_id.0, 1);
    assert_eq!(p.current_voters[0].last_caught_up_timestamp, NOW);
}

#[test]
fn only_the_metadata_partition_has_a_quorum() {
    assert!(asks_for_the_metadata_partition(&request(METADATA_TOPIC, &[0])));
    for wrong in [
        request(METADATA_TOPIC, &[1]),
        request(METADATA_TOPIC, &[0, 1]),
        request("orders", &[0]),
        DescribeQuorumRequest::default(),
    ] {
        assert!(!asks_for_the_metadata_partition(&wrong));
    }
    for version in 0..=2 {
        let response = partition_errors(&request("orders", &[0, 3]), 3, version);
        let mut buf = BytesMut::new();
        response.encode(&mut buf, version).unwrap();
        let codes: Vec<(i32, i16)> = response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code))
            .collect();
        assert_eq!(codes, vec![(0, 3), (3, 3)]);
        assert_eq!(
            response.topics[0].partitions[0].error_message.is_some(),
            version >= 2
        );
    }
}

#[test]
fn no_active_controller_is_retriable_for_kafka_clients() {
    let not_controller = ClientError::Controller(ControllerError::NotController { leader: None });
    let timeout = ClientError::NoController(std::time::Duration::from_secs(5));
    for e in [not_controller, timeout] {
        assert_eq!(quorum_error_code(&e), ResponseError::NotLeaderOrFollower.code());
    }
}
