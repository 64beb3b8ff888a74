//! Metadata: brokers (just this one), the cluster id, and each requested topic's partitions
//! with leader, replicas and ISR. Unknown topics are created here when auto-creation is on and
//! the client allows it, as in Kafka.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::str_bytes;
use crate::broker::Broker;
use crate::topic_config::TopicOverrides;
use crate::topic_name::{is_internal, validate_topic_name};
use crate::topics::{Topic, TopicError};

pub async fn handle(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    let topics = match &request.topics {
        // v0: an empty list means all topics; v1+: null means all.
        None => all_topics(broker),
        Some(list) if list.is_empty() && version == 0 => all_topics(broker),
        Some(list) => {
            let mut topics = Vec::with_capacity(list.len());
            for t in list {
                topics.push(match (&t.name, t.topic_id) {
                    (Some(name), _) => {
                        describe_named(broker, name, request.allow_auto_topic_creation || version < 4).await
                    }
                    (None, id) if id != Uuid::nil() => match broker.topics.get_by_id(id) {
                        Some(topic) => describe(broker, &topic),
                        None => MetadataResponseTopic::default()
                            .with_topic_id(id)
                            .with_error_code(ResponseError::UnknownTopicId.code()),
                    },
                    (None, _) => {
                        MetadataResponseTopic::default().with_error_code(ResponseError::InvalidRequest.code())
                    }
                });
            }
            topics
        }
    };
    let topics = topics.into_iter().map(|t| for_version(t, version)).collect();
    let response = base(broker).with_topics(topics);
    if version < 2 {
        response.with_cluster_id(None)
    } else {
        response
    }
}

/// Clears fields the requested version does not have (the codec refuses them when set).
fn for_version(mut topic: MetadataResponseTopic, version: i16) -> MetadataResponseTopic {
    if version < 10 {
        topic.topic_id = Uuid::nil();
    }
    if version < 7 {
        for p in &mut topic.partitions {
            p.leader_epoch = -1;
        }
    }
    topic
}

fn base(broker: &Broker) -> MetadataResponse {
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(broker.node_id()))
            .with_host(str_bytes(broker.advertised_host.clone()))
            .with_port(broker.advertised_port)])
        .with_cluster_id(Some(str_bytes(broker.identity.cluster_id.clone())))
        .with_controller_id(BrokerId(broker.node_id()))
        .with_cluster_authorized_operations(i32::MIN)
}

fn all_topics(broker: &Broker) -> Vec<MetadataResponseTopic> {
    broker.topics.list().iter().map(|t| describe(broker, t)).collect()
}

async fn describe_named(broker: &Broker, name: &TopicName, allow_auto_create: bool) -> MetadataResponseTopic {
    let unknown = |code: ResponseError| {
        MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(code.code())
    };
    if let Some(topic) = broker.topics.get(name) {
        return describe(broker, &topic);
    }
    if validate_topic_name(name).is_err() {
        return unknown(ResponseError::InvalidTopicException);
    }
    if !(allow_auto_create && broker.config.auto_create_topics) || is_internal(name) {
        return unknown(ResponseError::UnknownTopicOrPartition);
    }
    let (owned, partitions) = (name.0.to_string(), broker.config.num_partitions);
    match broker
        .topics
        .change(move |topics| topics.create(&owned, partitions, TopicOverrides::default()))
        .await
    {
        Ok(topic) => {
            tracing::info!(topic = %name.0, partitions = topic.partitions.len(), "auto-created topic");
            describe(broker, &topic)
        }
        // Raced with another creator: describe what is there now.
        Err(TopicError::AlreadyExists(_)) => match broker.topics.get(name) {
            Some(topic) => describe(broker, &topic),
            None => unknown(ResponseError::LeaderNotAvailable),
        },
        Err(e) => {
            tracing::warn!(topic = %name.0, error = %e, "auto-create failed");
            unknown(ResponseError::KafkaStorageError)
        }
    }
}

fn describe(broker: &Broker, topic: &Arc<Topic>) -> MetadataResponseTopic {
    let me = BrokerId(broker.node_id());
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.to_string()))))
        .with_topic_id(topic.id)
        .with_is_internal(is_internal(&topic.name))
        .with_topic_authorized_operations(i32::MIN)
        .with_partitions(
            topic
                .partitions
                .iter()
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p.index)
                        .with_leader_id(me)
                        .with_leader_epoch(0)
                        .with_replica_nodes(vec![me])
                        .with_isr_nodes(vec![me])
                })
                .collect(),
        )
}

pub fn error_response(request: &MetadataRequest, code: i16) -> MetadataResponse {
    let topics = request
        .topics
        .iter()
        .flatten()
        .map(|t| {
            MetadataResponseTopic::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_error_code(code)
        })
        .collect();
    MetadataResponse::default()
        .with_topics(topics)
        .with_error_code(code)
}
