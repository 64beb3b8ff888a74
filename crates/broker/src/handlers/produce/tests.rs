//! Produce answers that name the new leader (KIP-951): `current_leader` on partitions refused
//! NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH and `node_endpoints` for the leaders named,
//! from v10 on only; checked on hand-made responses and through a single-node broker opened in
//! a temporary directory, each encoded and decoded at the version it is for.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::{Decodable, Encodable};
use sapper_log::batch::Compression;
use sapper_log::KeyedRecord;

use super::*;
use crate::handlers::test_support::broker_with_topic;
use crate::partition::{PartitionRole, NO_LEADER};

const NOT_LEADER: i16 = 6;
const FENCED_LEADER_EPOCH: i16 = 74;

/// `response` as a client reads it at `version`.
fn round_trip(response: &ProduceResponse, version: i16) -> ProduceResponse {
    let mut buf = BytesMut::new();
    response
        .encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("v{version}: {e}"));
    ProduceResponse::decode(&mut buf.freeze(), version).unwrap()
}

fn endpoint(id: i32) -> BrokerEndpoint {
    BrokerEndpoint {
        id,
        host: format!("broker{id}.local"),
        port: 9090 + id,
        rack: (id == 3).then(|| "rack-c".to_string()),
    }
}

fn answered(codes: &[i16]) -> ProduceResponse {
    let partitions = codes
        .iter()
        .zip(0..)
        .map(|(code, index)| partition_error(index, *code))
        .collect();
    ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(TopicName(str_bytes("t")))
        .with_partition_responses(partitions)])
}

#[test]
fn refused_partitions_name_their_leader_and_its_endpoint() {
    // 0: not leader (led by 2), 1: fenced (led by 3), 2: appended, 3: not leader, no leader
    // known, 4: not leader, led by 2 as well.
    let mut response = answered(&[NOT_LEADER, FENCED_LEADER_EPOCH, 0, NOT_LEADER, NOT_LEADER]);
    name_current_leaders(
        &mut response,
        |topic, partition| {
            assert_eq!(topic, "t");
            match partition {
                0 | 4 => Some((2, 5)),
                1 => Some((3, 7)),
                2 => Some((1, 1)),
                _ => Some((NO_LEADER, 9)),
            }
        },
        || (1..=3).map(endpoint).collect(),
    );
    for version in [10, 11] {
        let read = round_trip(&response, version);
        let leaders: Vec<(i32, i32)> = read.responses[0]
            .partition_responses
            .iter()
            .map(|p| (p.current_leader.leader_id.0, p.current_leader.leader_epoch))
            .collect();
        assert_eq!(
            leaders,
            [(2, 5), (3, 7), (-1, -1), (-1, -1), (2, 5)],
            "v{version}"
        );
        let endpoints: Vec<(i32, &str, i32, Option<&str>)> = read
            .node_endpoints
            .iter()
            .map(|e| {
                (
                    e.node_id.0,
                    e.host.as_str(),
                    e.port,
                    e.rack.as_ref().map(|r| r.as_str()),
                )
            })
            .collect();
        assert_eq!(
            endpoints,
            [
                (2, "broker2.local", 9092, None),
                (3, "broker3.local", 9093, Some("rack-c"))
            ],
            "v{version}"
        );
    }
}

#[test]
fn nothing_is_named_when_no_partition_moved() {
    let mut response = answered(&[0, NOT_LEADER]);
    name_current_leaders(
        &mut response,
        |_, _| None,
        || panic!("no leader named: the brokers are not looked up"),
    );
    assert!(response.node_endpoints.is_empty());
    assert_eq!(
        response.responses[0].partition_responses[1].current_leader,
        LeaderIdAndEpoch::default()
    );
}

fn request() -> ProduceRequest {
    let record = KeyedRecord {
        key: b"k",
        value: Some(b"v"),
        timestamp: 1,
    };
    let records = Bytes::from(sapper_log::keyed_batch::encode(&[record], Compression::None).unwrap());
    let partition = |index| {
        PartitionProduceData::default()
            .with_index(index)
            .with_records(Some(records.clone()))
    };
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(str_bytes("t")))
            .with_partition_data(vec![partition(0), partition(1)])])
}

#[tokio::test]
async fn a_not_leader_answer_names_the_leader_from_v10_only() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path()).await;
    // Partition 1 is not led here (a single node only gets there in tests).
    broker
        .topics
        .get("t")
        .unwrap()
        .partition(1)
        .unwrap()
        .set_role(PartitionRole::UNKNOWN);
    let me = broker.node_id();
    for version in [9, 10, 11] {
        let response = round_trip(&handle(&broker, request(), version).await, version);
        let partitions = &response.responses[0].partition_responses;
        assert_eq!(partitions[0].error_code, 0, "v{version}");
        assert_eq!(partitions[1].error_code, NOT_LEADER, "v{version}");
        assert_eq!(
            partitions[0].current_leader,
            LeaderIdAndEpoch::default(),
            "v{version}: an appended partition names no leader"
        );
        if version >= 10 {
            // A single node's view: it leads everything, at epoch 0.
            assert_eq!(
                (
                    partitions[1].current_leader.leader_id.0,
                    partitions[1].current_leader.leader_epoch
                ),
                (me, 0),
                "v{version}"
            );
            let endpoints: Vec<(i32, &str, i32)> = response
                .node_endpoints
                .iter()
                .map(|e| (e.node_id.0, e.host.as_str(), e.port))
                .collect();
            assert_eq!(
                endpoints,
                [(me, broker.advertised_host.as_str(), broker.advertised_port)],
                "v{version}"
            );
        } else {
            assert_eq!(
                partitions[1].current_leader,
                LeaderIdAndEpoch::default(),
                "v{version}"
            );
            assert!(response.node_endpoints.is_empty(), "v{version}");
        }
    }
}
