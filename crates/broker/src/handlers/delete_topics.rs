//! DeleteTopics by name (v1-v5) or by name or id (v6), through
//! [`crate::cluster::ClusterView`] (locally, or by the active controller).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use super::str_bytes;
use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let targets: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        request
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|n| (Some(n.clone()), Uuid::nil()))
            .collect()
    };
    let mut responses: Vec<DeletableTopicResult> = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let topic = match &name {
            Some(n) => broker.cluster.topic(broker, n),
            None => broker.cluster.topic_by_id(broker, id),
        };
        let Some(topic) = topic else {
            let code = if name.is_some() {
                ResponseError::UnknownTopicOrPartition
            } else {
                ResponseError::UnknownTopicId
            };
            responses.push(
                DeletableTopicResult::default()
                    .with_name(name)
                    .with_topic_id(id)
                    .with_error_code(code.code()),
            );
            continue;
        };
        let result = DeletableTopicResult::default()
            .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
            .with_topic_id(topic.id);
        responses.push(match broker.cluster.delete_topic(broker, &topic.name).await {
            Ok(()) => {
                tracing::info!(topic = %topic.name, "deleted topic");
                result
            }
            Err(refusal) => result
                .with_error_code(refusal.code)
                .with_error_message(Some(str_bytes(refusal.message))),
        });
    }
    let responses = responses
        .into_iter()
        .map(|mut r: DeletableTopicResult| {
            if version < 6 {
                r.topic_id = Uuid::nil();
            }
            if version < 5 {
                r.error_message = None;
            }
            r
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

pub fn error_response(request: &DeleteTopicsRequest, code: i16) -> DeleteTopicsResponse {
    let mut responses: Vec<DeletableTopicResult> = request
        .topic_names
        .iter()
        .map(|n| {
            DeletableTopicResult::default()
                .with_name(Some(n.clone()))
                .with_error_code(code)
        })
        .collect();
    responses.extend(request.topics.iter().map(|t| {
        DeletableTopicResult::default()
            .with_name(t.name.clone())
            .with_topic_id(t.topic_id)
            .with_error_code(code)
    }));
    DeleteTopicsResponse::default().with_responses(responses)
}
