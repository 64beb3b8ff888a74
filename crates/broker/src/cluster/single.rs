//! The single-node side of [`super::ClusterView`]: this broker is the cluster, its
//! [`crate::topics::TopicRegistry`] holds every topic and it leads every partition.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;

use super::{BrokerEndpoint, CreatedTopic, NewTopic, PartitionView, Refusal, TopicView};
use crate::broker::Broker;
use crate::topics::{Topic, TopicError};

pub(super) fn me(broker: &Broker) -> BrokerEndpoint {
    BrokerEndpoint {
        id: broker.node_id(),
        host: broker.advertised_host.clone(),
        port: broker.advertised_port,
        rack: None,
    }
}

pub(super) fn describe(broker: &Broker, topic: &Arc<Topic>) -> TopicView {
    let me = broker.node_id();
    TopicView {
        name: topic.name.to_string(),
        id: topic.id,
        partitions: topic
            .partitions
            .iter()
            .map(|p| PartitionView {
                index: p.index,
                leader: me,
                leader_epoch: 0,
                replicas: vec![me],
                isr: vec![me],
                offline: Vec::new(),
            })
            .collect(),
    }
}

pub(super) async fn create_topic(broker: &Broker, topic: NewTopic) -> Result<CreatedTopic, Refusal> {
    if topic.validate_only {
        return Ok(CreatedTopic {
            id: uuid::Uuid::nil(),
            overrides: topic.overrides,
        });
    }
    let NewTopic {
        name,
        partitions,
        overrides,
        ..
    } = topic;
    match broker
        .topics
        .change(move |topics| topics.create(&name, partitions, overrides))
        .await
    {
        Ok(created) => Ok(CreatedTopic {
            id: created.id,
            overrides: created.overrides.clone(),
        }),
        Err(TopicError::AlreadyExists(name)) => Err(Refusal::new(
            ResponseError::TopicAlreadyExists,
            format!("Topic '{name}' already exists."),
        )),
        Err(TopicError::InvalidPartitions(m)) => Err(Refusal::new(ResponseError::InvalidPartitions, m)),
        Err(e) => Err(Refusal::new(ResponseError::KafkaStorageError, e.to_string())),
    }
}

pub(super) async fn delete_topic(broker: &Broker, name: &str) -> Result<(), Refusal> {
    let doomed = name.to_string();
    broker
        .topics
        .change(move |topics| topics.delete(&doomed))
        .await
        .map(|_| ())
        .map_err(|e| Refusal::new(ResponseError::UnknownTopicOrPartition, e.to_string()))
}

pub(super) async fn create_partitions(
    broker: &Broker,
    name: &str,
    count: i32,
    validate_only: bool,
) -> Result<(), Refusal> {
    if validate_only {
        return Ok(());
    }
    let name = name.to_string();
    match broker
        .topics
        .change(move |topics| topics.add_partitions(&name, count))
        .await
    {
        Ok(_) => Ok(()),
        Err(TopicError::Unknown(_)) => Err(Refusal::new(
            ResponseError::UnknownTopicOrPartition,
            "The topic was deleted.",
        )),
        Err(TopicError::InvalidPartitions(m)) => Err(Refusal::new(ResponseError::InvalidPartitions, m)),
        Err(e) => Err(Refusal::new(ResponseError::KafkaStorageError, e.to_string())),
    }
}
