//! OffsetCommit (v2-v9): checks each partition (known topic and partition, metadata within
//! `offset.metadata.max.bytes`), then lets the coordinator validate the member and generation
//! (generation -1 without a member id is a "simple" commit) and store the commits durably.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::group::coordinator::CommitEntry;
use crate::group::offsets::CommittedOffset;

pub async fn handle(broker: &Broker, request: OffsetCommitRequest, version: i16) -> OffsetCommitResponse {
    if request.group_id.is_empty() {
        return error_response(&request, ResponseError::InvalidGroupId.code());
    }
    let max_metadata = broker.groups.settings().offset_metadata_max_bytes;
    let now = now_ms();
    // Per partition: Err(code) decided here, or Ok(index into `entries`).
    let mut entries = Vec::new();
    let mut verdicts: Vec<Vec<Result<(), i16>>> = Vec::new();
    for t in &request.topics {
        let topic = broker.topics.get(&t.name);
        let mut per_topic = Vec::new();
        for p in &t.partitions {
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let verdict = if topic
                .as_ref()
                .is_none_or(|topic| !topic.has_partition(p.partition_index))
            {
                Err(ResponseError::UnknownTopicOrPartition.code())
            } else if metadata.len() > max_metadata {
                Err(ResponseError::OffsetMetadataTooLarge.code())
            } else {
                entries.push(CommitEntry {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    committed: CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata,
                        commit_time_ms: now,
                    },
                });
                Ok(())
            };
            per_topic.push(verdict);
        }
        verdicts.push(per_topic);
    }
    let group_code = match broker.groups.commit(
        &broker.topics,
        &request.group_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
        request.generation_id_or_member_epoch,
        &entries,
    ) {
        Ok(()) => 0,
        Err(code) => code,
    };
    let topics = request
        .topics
        .iter()
        .zip(verdicts)
        .map(|(t, per_topic)| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .zip(per_topic)
                        .map(|(p, verdict)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(verdict.err().unwrap_or(group_code))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

pub fn error_response(request: &OffsetCommitRequest, code: i16) -> OffsetCommitResponse {
    OffsetCommitResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|t| {
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
