//! OffsetCommit (v2-v9): checks each partition (known topic and partition, metadata within
//! `offset.metadata.max.bytes`), then lets the coordinator validate the member and generation
//! (generation -1 without a member id is a "simple" commit) and store the commits durably: the
//! answer waits until the in-sync replicas of the `__consumer_offsets` partition have them.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::group::coordinator::CommitEntry;
use crate::group::offsets::CommittedOffset;
use crate::group::store::Stored;
use crate::partition::AckWait;
use crate::replica::purgatory::AckOutcome;

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
        Ok(None) => 0,
        Ok(Some(stored)) => wait_for_isr(broker, stored).await,
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

/// Kafka's `offsets.commit.timeout.ms`: how long a commit waits for the ISR.
const COMMIT_TIMEOUT: Duration = Duration::from_millis(5_000);

/// Waits until the ISR has the commit (Kafka's `offsets.commit.required.acks` = -1), so a
/// coordinator failover never loses an acknowledged commit. Errors as Kafka's group
/// coordinator maps them: the partition moved → NOT_COORDINATOR (the client looks the
/// coordinator up again); too few replicas or a timeout → COORDINATOR_NOT_AVAILABLE
/// (retriable; the commit may still become visible).
async fn wait_for_isr(broker: &Broker, stored: Stored) -> i16 {
    let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
    let source = Arc::new(AckWait {
        partition: stored.partition,
        min_insync_replicas: stored.min_insync_replicas,
    });
    let outcome = broker
        .purgatory
        .register(source, stored.required_offset, stored.leader_epoch, deadline)
        .await;
    commit_error(outcome)
}

/// The OffsetCommit error code for how the wait for the ISR ended.
fn commit_error(outcome: AckOutcome) -> i16 {
    match outcome {
        AckOutcome::Acknowledged => 0,
        AckOutcome::NotLeaderOrFollower => ResponseError::NotCoordinator.code(),
        AckOutcome::NotEnoughReplicasAfterAppend | AckOutcome::RequestTimedOut => {
            ResponseError::CoordinatorNotAvailable.code()
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_the_isr_did_not_take_gets_the_coordinator_error_kafka_gives() {
        assert_eq!(commit_error(AckOutcome::Acknowledged), 0);
        assert_eq!(
            commit_error(AckOutcome::NotLeaderOrFollower),
            ResponseError::NotCoordinator.code()
        );
        for outcome in [
            AckOutcome::NotEnoughReplicasAfterAppend,
            AckOutcome::RequestTimedOut,
        ] {
            assert_eq!(
                commit_error(outcome),
                ResponseError::CoordinatorNotAvailable.code()
            );
        }
    }
}
