//! CreatePartitions: grow a topic (never shrink); assignments may only name this broker.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::topics::{TopicError, MAX_PARTITIONS_PER_TOPIC};

pub async fn handle(
    broker: &Broker,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for t in &request.topics {
        results.push(grow_one(broker, t, request.validate_only).await);
    }
    CreatePartitionsResponse::default().with_results(results)
}

async fn grow_one(
    broker: &Broker,
    t: &CreatePartitionsTopic,
    validate_only: bool,
) -> CreatePartitionsTopicResult {
    let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
    let fail = |code: ResponseError, message: String| {
        result
            .clone()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(message)))
    };
    let Some(topic) = broker.topics.get(&t.name) else {
        return fail(
            ResponseError::UnknownTopicOrPartition,
            format!("The topic '{}' does not exist.", t.name.0),
        );
    };
    let have = topic.partitions.len() as i32;
    if t.count <= have {
        return fail(
            ResponseError::InvalidPartitions,
            format!(
                "Topic currently has {have} partitions, which is higher than the requested {}.",
                t.count
            ),
        );
    }
    if t.count > MAX_PARTITIONS_PER_TOPIC {
        return fail(
            ResponseError::InvalidPartitions,
            format!("At most {MAX_PARTITIONS_PER_TOPIC} partitions per topic."),
        );
    }
    if let Some(assignments) = &t.assignments {
        let wanted = usize::try_from(t.count - have).unwrap_or(0);
        if assignments.len() != wanted {
            return fail(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "Increasing the number of partitions by {wanted} but {} assignments provided.",
                    assignments.len()
                ),
            );
        }
        let me = broker.node_id();
        if assignments
            .iter()
            .any(|a| a.broker_ids.len() != 1 || a.broker_ids.iter().any(|b| b.0 != me))
        {
            return fail(
                ResponseError::InvalidReplicaAssignment,
                format!("Assignments must name exactly broker {me}."),
            );
        }
    }
    if validate_only {
        return result;
    }
    let (name, count) = (topic.name.clone(), t.count);
    match broker
        .topics
        .change(move |topics| topics.add_partitions(&name, count))
        .await
    {
        Ok(_) => result,
        Err(TopicError::Unknown(_)) => fail(
            ResponseError::UnknownTopicOrPartition,
            "The topic was deleted.".into(),
        ),
        Err(TopicError::InvalidPartitions(m)) => fail(ResponseError::InvalidPartitions, m),
        Err(e) => fail(ResponseError::KafkaStorageError, e.to_string()),
    }
}

pub fn error_response(request: &CreatePartitionsRequest, code: i16) -> CreatePartitionsResponse {
    CreatePartitionsResponse::default().with_results(
        request
            .topics
            .iter()
            .map(|t| {
                CreatePartitionsTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(code)
            })
            .collect(),
    )
}
