//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4, the same as
//! earliest without tiered storage), or the earliest offset whose timestamp is >= a target.
//! Answered by the partition's leader only (NOT_LEADER_OR_FOLLOWER elsewhere).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::Broker;
use crate::errors::log_error_code;
use crate::partition::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub async fn handle(broker: &Broker, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let topic = broker.topics.get(&t.name);
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(
                            |p| match broker.cluster.led(topic.as_ref(), &t.name, p.partition_index) {
                                Ok((partition, epoch)) => {
                                    lookup(partition, epoch, p.partition_index, p.timestamp)
                                }
                                Err(code) => partition_error(p.partition_index, code),
                            },
                        )
                        .collect(),
                )
        })
        .collect();
    let mut response = ListOffsetsResponse::default().with_topics(topics);
    if version < 4 {
        // leader_epoch exists from v4 on.
        for p in response.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
            p.leader_epoch = -1;
        }
    }
    response
}

fn lookup(
    partition: &Partition,
    leader_epoch: i32,
    index: i32,
    timestamp: i64,
) -> ListOffsetsPartitionResponse {
    let found = |ts: i64, offset: i64| {
        ListOffsetsPartitionResponse::default()
            .with_partition_index(index)
            .with_timestamp(ts)
            .with_offset(offset)
            .with_leader_epoch(leader_epoch)
    };
    let offsets = partition.offsets();
    match timestamp {
        LATEST => found(-1, offsets.high_watermark),
        EARLIEST | EARLIEST_LOCAL => found(-1, offsets.log_start_offset),
        MAX_TIMESTAMP => match partition.max_timestamp() {
            Some(t) => found(t.timestamp, t.offset),
            None => found(-1, -1),
        },
        ts if ts < 0 => partition_error(index, ResponseError::InvalidRequest.code()),
        ts => match partition.offset_for_timestamp(ts) {
            Ok(Some(t)) => found(t.timestamp, t.offset),
            Ok(None) => found(-1, -1),
            Err(e) => partition_error(index, log_error_code(&e)),
        },
    }
}

fn partition_error(index: i32, code: i16) -> ListOffsetsPartitionResponse {
    ListOffsetsPartitionResponse::default()
        .with_partition_index(index)
        .with_error_code(code)
        .with_timestamp(-1)
        .with_offset(-1)
        .with_leader_epoch(-1)
}

pub fn error_response(request: &ListOffsetsRequest, code: i16) -> ListOffsetsResponse {
    ListOffsetsResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|t| {
                ListOffsetsTopicResponse::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| partition_error(p.partition_index, code))
                            .collect(),
                    )
            })
            .collect(),
    )
}
