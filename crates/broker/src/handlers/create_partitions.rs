//! CreatePartitions: grow a topic (never shrink), through [`crate::cluster::ClusterView`]
//! (locally, where assignments may only name this broker, or by the active controller).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::topics::MAX_PARTITIONS_PER_TOPIC;

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
    let Some(topic) = broker.cluster.topic(broker, &t.name) else {
        return fail(
            ResponseError::UnknownTopicOrPartition,
            format!("The topic '{}' does not exist.", t.name.0),
        );
    };
    let have = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
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
        let lists: Vec<Vec<i32>> = assignments
            .iter()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect();
        if let Err(refusal) = broker
            .cluster
            .check_assignments(broker, lists.iter().map(Vec::as_slice))
        {
            return result
                .with_error_code(refusal.code)
                .with_error_message(Some(str_bytes(refusal.message)));
        }
    }
    match broker
        .cluster
        .create_partitions(broker, &topic.name, t.count, validate_only)
        .await
    {
        Ok(()) => result,
        Err(refusal) => result
            .with_error_code(refusal.code)
            .with_error_message(Some(str_bytes(refusal.message))),
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
