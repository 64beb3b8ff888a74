//! DescribeQuorum (KIP-595/KIP-836/KIP-853): the metadata quorum as partition 0 of
//! `__cluster_metadata`, as `kafka-metadata-quorum describe` and `Admin.describeMetadataQuorum`
//! read it.
//!
//! A cluster member asks the active controller ([`sapper_meta::lifecycle::ControllerClient`],
//! `ControllerRequest::DescribeQuorum`), which is the Raft leader: any broker answers, as a
//! Kafka broker forwards DescribeQuorum to the active controller, whether or not it runs a
//! voter itself. With no active controller (an election, a lost quorum) the partition carries
//! NOT_LEADER_OR_FOLLOWER, which Kafka's admin client retries. The answer maps Raft onto
//! Kafka's fields:
//! - leader id: the Raft leader; leader epoch: the Raft term;
//! - offsets are Raft log indexes made exclusive like Kafka's: a voter's log end offset is its
//!   last replicated index + 1 (the leader's own last index + 1), and the high watermark is
//!   the committed index + 1 (see [`sapper_meta::raft::QuorumStatus::committed`]);
//! - timestamps (v1+) as Kafka reports them: the leader's last fetch is -1 and its last
//!   caught-up time is now; a follower that has everything the leader has is caught up now;
//!   openraft does not record when a follower last fetched, so that is -1 (unknown);
//! - observers (brokers that only follow the metadata) are not listed: the controller does not
//!   track their log positions;
//! - v2 `nodes`: each voter's controller listener, named `CONTROLLER`.
//!
//! A single-node broker has no quorum; it answers as a single-node KRaft combined server does:
//! itself as the only voter and leader, epoch 0, offsets 0. Admin clients then show a healthy
//! one-voter quorum instead of an error (UNSUPPORTED_VERSION would make
//! `describeMetadataQuorum` fail although ApiVersions advertises the API).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use sapper_meta::controller::api::ControllerError;
use sapper_meta::lifecycle::ClientError;
use sapper_meta::raft::QuorumStatus;

use super::str_bytes;
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::cluster::ClusterView;

/// The topic of the KRaft metadata log; DescribeQuorum describes its partition 0.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// The listener name voters' controller endpoints are reported under (v2).
const CONTROLLER_LISTENER: &str = "CONTROLLER";

pub async fn handle(broker: &Broker, request: DescribeQuorumRequest, version: i16) -> DescribeQuorumResponse {
    if !asks_for_the_metadata_partition(&request) {
        return partition_errors(&request, ResponseError::UnknownTopicOrPartition.code(), version);
    }
    let now = now_ms();
    match &broker.cluster {
        ClusterView::Single => single_node(broker.node_id(), now),
        ClusterView::Cluster(node) => match node.client().describe_quorum().await {
            Ok(status) => from_status(&status, version, now),
            Err(e) => {
                tracing::debug!(error = %e, "DescribeQuorum: no answer from the active controller");
                one_partition(
                    PartitionData::default()
                        .with_error_code(quorum_error_code(&e))
                        .with_leader_id(BrokerId(-1))
                        .with_leader_epoch(-1)
                        .with_high_watermark(-1)
                        .with_error_message((version >= 2).then(|| str_bytes(e.to_string()))),
                )
            }
        },
    }
}

pub fn error_response(_request: &DescribeQuorumRequest, code: i16) -> DescribeQuorumResponse {
    DescribeQuorumResponse::default().with_error_code(code)
}

/// Kafka answers only for `__cluster_metadata` partition 0, asked alone.
fn asks_for_the_metadata_partition(request: &DescribeQuorumRequest) -> bool {
    match request.topics.as_slice() {
        [topic] => {
            topic.topic_name.0.as_str() == METADATA_TOPIC
                && matches!(topic.partitions.as_slice(), [p] if p.partition_index == 0)
        }
        _ => false,
    }
}

/// Every asked partition with `code` (Kafka's partition-level error response).
fn partition_errors(request: &DescribeQuorumRequest, code: i16, version: i16) -> DescribeQuorumResponse {
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    PartitionData::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                        .with_leader_id(BrokerId(-1))
                        .with_leader_epoch(-1)
                        .with_high_watermark(-1)
                        .with_error_message(
                            (version >= 2)
                                .then(|| str_bytes("only __cluster_metadata partition 0 has a quorum")),
                        )
                })
                .collect();
            TopicData::default()
                .with_topic_name(t.topic_name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DescribeQuorumResponse::default().with_topics(topics)
}

/// NOT_LEADER_OR_FOLLOWER while there is no active controller (retriable for Kafka clients).
fn quorum_error_code(error: &ClientError) -> i16 {
    match error {
        ClientError::Controller(ControllerError::NotController { .. }) | ClientError::NoController(_) => {
            ResponseError::NotLeaderOrFollower.code()
        }
        other => other.kafka_code(),
    }
}

fn one_partition(partition: PartitionData) -> DescribeQuorumResponse {
    DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
        .with_partitions(vec![partition.with_partition_index(0)])])
}

/// The single-node broker: itself, the only voter, leading at epoch 0 an empty log.
fn single_node(node_id: i32, now: i64) -> DescribeQuorumResponse {
    let me = ReplicaState::default()
        .with_replica_id(BrokerId(node_id))
        .with_log_end_offset(0)
        .with_last_fetch_timestamp(-1)
        .with_last_caught_up_timestamp(now);
    one_partition(
        PartitionData::default()
            .with_leader_id(BrokerId(node_id))
            .with_leader_epoch(0)
            .with_high_watermark(0)
            .with_current_voters(vec![me]),
    )
}

/// `status` (the Raft leader's view) in Kafka's terms at `version` (see the module docs).
pub fn from_status(status: &QuorumStatus, version: i16, now: i64) -> DescribeQuorumResponse {
    let leader = status.leader.and_then(|l| i32::try_from(l).ok()).unwrap_or(-1);
    let leader_last = status.last_log_index;
    let end_offset = |index: Option<u64>| {
        index
            .and_then(|i| i64::try_from(i).ok())
            .map_or(-1, |i| i.saturating_add(1))
    };
    let voters = status
        .voters
        .iter()
        .filter_map(|v| {
            let id = i32::try_from(v.id).ok()?;
            let is_leader = id == leader;
            let caught_up = is_leader || (v.matched.is_some() && v.matched >= leader_last);
            Some(
                ReplicaState::default()
                    .with_replica_id(BrokerId(id))
                    .with_log_end_offset(end_offset(if is_leader { leader_last } else { v.matched }))
                    .with_last_fetch_timestamp(-1)
                    .with_last_caught_up_timestamp(if caught_up { now } else { -1 }),
            )
        })
        .collect();
    let partition = PartitionData::default()
        .with_leader_id(BrokerId(leader))
        .with_leader_epoch(i32::try_from(status.term).unwrap_or(i32::MAX))
        .with_high_watermark(end_offset(status.committed).max(0))
        .with_current_voters(voters);
    let mut response = one_partition(partition);
    if version >= 2 {
        response.nodes = status
            .voters
            .iter()
            .filter_map(|v| {
                let (host, port) = v.addr.rsplit_once(':')?;
                let listener = Listener::default()
                    .with_name(str_bytes(CONTROLLER_LISTENER))
                    .with_host(str_bytes(host.trim_start_matches('[').trim_end_matches(']')))
                    .with_port(port.parse().ok()?);
                Some(
                    Node::default()
                        .with_node_id(BrokerId(i32::try_from(v.id).ok()?))
                        .with_listeners(vec![listener]),
                )
            })
            .collect();
    }
    response
}

#[cfg(test)]
mod tests;
