//! OffsetForLeaderEpoch (API 23, v2-4): for each partition, the largest leader epoch at or
//! below the requested one and the offset where it ended on this leader (the start of the next
//! epoch, or the log end offset for the latest).
//!
//! Followers ask after a leader change to find where their log diverges (`replica_id` = their
//! id, v3+); consumers ask after a leader change or a seek to a position carrying an epoch, to
//! detect truncated records (KIP-320, `replica_id` -1). Only the leader answers
//! (NOT_LEADER_OR_FOLLOWER elsewhere, UNKNOWN_TOPIC_OR_PARTITION when nobody has it); a
//! `current_leader_epoch` other than the partition's is FENCED_LEADER_EPOCH (older) or
//! UNKNOWN_LEADER_EPOCH (newer), -1 skips that check. A single-node broker leads in epoch 0.

use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderPartition;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::broker::Broker;
use crate::partition::Partition;
use crate::replica::epochs;

pub async fn handle(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let topic = broker.topics.get(&t.topic);
            let partitions = t
                .partitions
                .iter()
                .map(
                    |p| match broker.cluster.led(topic.as_ref(), &t.topic, p.partition) {
                        Ok((partition, leader_epoch)) => answer(partition, leader_epoch, p),
                        Err(code) => partition_error(p.partition, code),
                    },
                )
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

fn answer(partition: &Partition, leader_epoch: i32, p: &OffsetForLeaderPartition) -> EpochEndOffset {
    if let Err(code) = epochs::check_current_leader_epoch(p.current_leader_epoch, leader_epoch) {
        return partition_error(p.partition, code);
    }
    let (cache, log_end_offset) = partition.leader_epochs();
    let end = epochs::leader_end_offset_for(&cache, leader_epoch, log_end_offset, p.leader_epoch);
    EpochEndOffset::default()
        .with_partition(p.partition)
        .with_leader_epoch(end.epoch)
        .with_end_offset(end.end_offset)
}

fn partition_error(partition: i32, code: i16) -> EpochEndOffset {
    EpochEndOffset::default()
        .with_partition(partition)
        .with_error_code(code)
        .with_leader_epoch(-1)
        .with_end_offset(-1)
}

pub fn error_response(request: &OffsetForLeaderEpochRequest, code: i16) -> OffsetForLeaderEpochResponse {
    OffsetForLeaderEpochResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|t| {
                OffsetForLeaderTopicResult::default()
                    .with_topic(t.topic.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| partition_error(p.partition, code))
                            .collect(),
                    )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests;
