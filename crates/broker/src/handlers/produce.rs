//! Produce: validate each partition's batches, append them, answer with the base offset.
//!
//! The producer's bytes are appended verbatim except for the fields Kafka itself rewrites
//! (base offset, partition leader epoch, and for LogAppendTime topics the timestamp).
//! With one replica, acks=1 and acks=all are both satisfied once the append returns. Only the
//! partition's leader appends (NOT_LEADER_OR_FOLLOWER elsewhere), stamping its leader epoch.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use sapper_log::batch::BatchIter;
use sapper_log::{AppendOptions, AppendOutcome};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::errors::log_error_code;
use crate::partition::Partition;
use crate::topic_config::TimestampType;
use crate::topics::Topic;

pub async fn handle(broker: &Broker, request: ProduceRequest, version: i16) -> ProduceResponse {
    if !matches!(request.acks, -1..=1) {
        return error_response(&request, ResponseError::InvalidRequiredAcks.code());
    }
    if request.transactional_id.is_some() {
        return error_response(&request, ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    let mut scratch = Vec::new();
    let responses = request
        .topic_data
        .iter()
        .map(|t| {
            let topic = broker.topics.get(&t.name);
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| match broker.cluster.led(topic.as_ref(), &t.name, p.index) {
                            Ok((partition, epoch)) => {
                                // `led` only answers with a topic it was given.
                                let Some(topic) = topic.as_ref() else {
                                    return partition_error(
                                        p.index,
                                        ResponseError::UnknownTopicOrPartition.code(),
                                    );
                                };
                                produce_partition(topic, partition, epoch, p, &mut scratch, version)
                            }
                            Err(code) => partition_error(p.index, code),
                        })
                        .collect(),
                )
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

fn produce_partition(
    topic: &Topic,
    partition: &Partition,
    leader_epoch: i32,
    data: &PartitionProduceData,
    scratch: &mut Vec<u8>,
    version: i16,
) -> PartitionProduceResponse {
    // log_start_offset exists from v5 on; the codec refuses a set field an older version lacks.
    let log_start = |offset: i64| if version >= 5 { offset } else { -1 };
    let records = match &data.records {
        Some(r) if !r.is_empty() => r,
        _ => return partition_error(data.index, ResponseError::CorruptMessage.code()),
    };
    // Kafka checks each batch against max.message.bytes before anything else.
    let max = usize::try_from(topic.config.max_message_bytes).unwrap_or(0);
    for batch in BatchIter::new(records) {
        match batch {
            Ok(b) if b.size() > max => {
                return partition_error(data.index, ResponseError::MessageTooLarge.code());
            }
            Ok(_) => {}
            Err(_) => return partition_error(data.index, ResponseError::CorruptMessage.code()),
        }
    }
    scratch.clear();
    scratch.extend_from_slice(records);
    let log_append_time = topic.config.timestamp_type == TimestampType::LogAppendTime;
    let options = AppendOptions {
        leader_epoch,
        now_ms: now_ms(),
        log_append_time,
    };
    match partition.append(scratch, &options) {
        Ok(AppendOutcome::Appended(info)) => PartitionProduceResponse::default()
            .with_index(data.index)
            .with_base_offset(info.base_offset)
            .with_log_append_time_ms(info.log_append_time)
            .with_log_start_offset(log_start(info.log_start_offset)),
        Ok(AppendOutcome::Duplicate { base_offset, .. }) => PartitionProduceResponse::default()
            .with_index(data.index)
            .with_base_offset(base_offset)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(log_start(partition.offsets().log_start_offset)),
        Err(e) => {
            tracing::debug!(topic = %topic.name, partition = data.index, error = %e, "produce rejected");
            partition_error(data.index, log_error_code(&e))
        }
    }
}

fn partition_error(index: i32, code: i16) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

pub fn error_response(request: &ProduceRequest, code: i16) -> ProduceResponse {
    ProduceResponse::default().with_responses(
        request
            .topic_data
            .iter()
            .map(|t| {
                TopicProduceResponse::default()
                    .with_name(t.name.clone())
                    .with_partition_responses(
                        t.partition_data
                            .iter()
                            .map(|p| partition_error(p.index, code))
                            .collect(),
                    )
            })
            .collect(),
    )
}
