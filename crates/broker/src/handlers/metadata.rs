//! Metadata: the brokers, the cluster id, and each requested topic's partitions with leader,
//! leader epoch, replicas, ISR and offline replicas, from [`crate::cluster::ClusterView`] (this
//! broker alone, or the cluster's metadata image). A partition without a leader reports
//! LEADER_NOT_AVAILABLE. Unknown topics are created here when auto-creation is on and the
//! client allows it, as in Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::str_bytes;
use crate::broker::Broker;
use crate::cluster::{NewTopic, TopicView};
use crate::partition::NO_LEADER;
use crate::topic_config::TopicOverrides;
use crate::topic_name::{is_internal, validate_topic_name};

pub async fn handle(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    let view = &broker.cluster;
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
                    (None, id) if id != Uuid::nil() => match view.topic_by_id(broker, id) {
                        Some(topic) => describe(&topic),
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
    let response = base(broker, version).with_topics(topics);
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
    for p in &mut topic.partitions {
        if version < 7 {
            p.leader_epoch = -1;
        }
        if version < 5 {
            p.offline_replicas.clear();
        }
    }
    topic
}

fn base(broker: &Broker, version: i16) -> MetadataResponse {
    let view = &broker.cluster;
    let brokers = view
        .metadata_brokers(broker)
        .into_iter()
        .map(|b| {
            let entry = MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(b.host))
                .with_port(b.port);
            // rack exists from v1 on.
            if version >= 1 {
                entry.with_rack(b.rack.map(str_bytes))
            } else {
                entry
            }
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(view.cluster_id(broker))))
        .with_controller_id(BrokerId(view.controller_id(broker)))
        .with_cluster_authorized_operations(i32::MIN)
}

fn all_topics(broker: &Broker) -> Vec<MetadataResponseTopic> {
    broker.cluster.topics(broker).iter().map(describe).collect()
}

async fn describe_named(broker: &Broker, name: &TopicName, allow_auto_create: bool) -> MetadataResponseTopic {
    let view = &broker.cluster;
    let unknown = |code: ResponseError| {
        MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(code.code())
    };
    if let Some(topic) = view.topic(broker, name) {
        return describe(&topic);
    }
    if validate_topic_name(name).is_err() {
        return unknown(ResponseError::InvalidTopicException);
    }
    if !(allow_auto_create && broker.config.auto_create_topics) || is_internal(name) {
        return unknown(ResponseError::UnknownTopicOrPartition);
    }
    let new = NewTopic {
        name: name.0.to_string(),
        partitions: broker.config.num_partitions,
        replication_factor: view.default_replication_factor(),
        overrides: TopicOverrides::default(),
        validate_only: false,
    };
    match view.create_topic(broker, new).await {
        Ok(_) => tracing::info!(topic = %name.0, "auto-created topic"),
        // Raced with another creator: describe what is there now.
        Err(refusal) if refusal.code == ResponseError::TopicAlreadyExists.code() => {}
        Err(refusal) => {
            tracing::warn!(topic = %name.0, code = refusal.code, error = %refusal.message, "auto-create failed");
            let code = if refusal.code == ResponseError::KafkaStorageError.code() {
                ResponseError::KafkaStorageError
            } else {
                ResponseError::LeaderNotAvailable
            };
            return unknown(code);
        }
    }
    match view.topic(broker, name) {
        Some(topic) => describe(&topic),
        None => unknown(ResponseError::LeaderNotAvailable),
    }
}

fn describe(topic: &TopicView) -> MetadataResponseTopic {
    let ids = |list: &[i32]| list.iter().copied().map(BrokerId).collect::<Vec<_>>();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(is_internal(&topic.name))
        .with_topic_authorized_operations(i32::MIN)
        .with_partitions(
            topic
                .partitions
                .iter()
                .map(|p| {
                    let code = if p.leader == NO_LEADER {
                        ResponseError::LeaderNotAvailable.code()
                    } else {
                        0
                    };
                    MetadataResponsePartition::default()
                        .with_error_code(code)
                        .with_partition_index(p.index)
                        .with_leader_id(BrokerId(p.leader))
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(ids(&p.replicas))
                        .with_isr_nodes(ids(&p.isr))
                        .with_offline_replicas(ids(&p.offline))
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
