//! CreateTopics, with Kafka's validation order: name, duplicates in the request, existence,
//! partitions and replication factor (one broker: RF 1), configs; `validate_only` stops
//! before anything is created. The topic is made by [`crate::cluster::ClusterView`]: locally
//! on a single node, by the active controller in a cluster (its placement and replication
//! factor checks answer INVALID_REPLICATION_FACTOR and friends).

use std::collections::HashSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::cluster::{NewTopic, Refusal};
use crate::topic_config::{TopicOverrides, TOPIC_CONFIG_KEYS};
use crate::topic_name::validate_topic_name;
use crate::topics::MAX_PARTITIONS_PER_TOPIC;

/// DescribeConfigs/CreateTopics `config_source` values.
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_DEFAULT: i8 = 5;

pub async fn handle(broker: &Broker, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = request
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.to_string()))
        .map(|t| t.name.0.to_string())
        .collect();
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in &request.topics {
        let result = if duplicates.contains(t.name.0.as_str()) {
            failed(
                t,
                ResponseError::InvalidRequest,
                format!(
                    "Create topics request from client contains multiple entries for topic {}",
                    t.name.0
                ),
            )
        } else {
            create_one(broker, t, request.validate_only, version).await
        };
        topics.push(result);
    }
    CreateTopicsResponse::default().with_topics(topics)
}

async fn create_one(
    broker: &Broker,
    t: &CreatableTopic,
    validate_only: bool,
    version: i16,
) -> CreatableTopicResult {
    let name = t.name.0.as_str();
    if let Err(message) = validate_topic_name(name) {
        return failed(t, ResponseError::InvalidTopicException, message);
    }
    if broker.cluster.topic(broker, name).is_some() {
        return failed(
            t,
            ResponseError::TopicAlreadyExists,
            format!("Topic '{name}' already exists."),
        );
    }
    let (partitions, replication_factor) = match shape(broker, t) {
        Ok(shape) => shape,
        Err(refusal) => return refused(t, refusal),
    };
    let overrides = match TopicOverrides::parse(
        t.configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
    ) {
        Ok(o) => o,
        Err(message) => return failed(t, ResponseError::InvalidConfig, message),
    };
    let new = NewTopic {
        name: name.to_string(),
        partitions,
        replication_factor,
        overrides,
        validate_only,
    };
    let created = match broker.cluster.create_topic(broker, new).await {
        Ok(created) => created,
        Err(refusal) => return refused(t, refusal),
    };
    if !validate_only {
        tracing::info!(topic = name, partitions, replication_factor, "created topic");
    }
    let mut result = CreatableTopicResult::default().with_name(t.name.clone());
    if version >= 7 {
        result = result.with_topic_id(created.id);
    }
    if version >= 5 {
        result = result
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor);
        let configs = TOPIC_CONFIG_KEYS
            .iter()
            .map(|key| {
                let (value, set) = created.overrides.describe(key, &broker.config);
                CreatableTopicConfigs::default()
                    .with_name(str_bytes(key.name))
                    .with_value(Some(str_bytes(value)))
                    .with_config_source(if set { SOURCE_DYNAMIC_TOPIC } else { SOURCE_DEFAULT })
            })
            .collect();
        result = result.with_configs(Some(configs));
    }
    result
}

/// Partition count and replication factor, from explicit assignments or the counts. The
/// replication factor defaults to the cluster's (1 on a single node, where more is refused);
/// in a cluster the controller checks it against the live brokers.
fn shape(broker: &Broker, t: &CreatableTopic) -> Result<(i32, i16), Refusal> {
    let view = &broker.cluster;
    if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(Refusal::new(
                ResponseError::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        let mut indexes: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
        indexes.sort_unstable();
        if indexes.iter().enumerate().any(|(i, &p)| p != i as i32) {
            return Err(Refusal::new(
                ResponseError::InvalidReplicaAssignment,
                "Partitions should be a consecutive 0-based integer sequence",
            ));
        }
        let lists: Vec<Vec<i32>> = t
            .assignments
            .iter()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect();
        view.check_assignments(broker, lists.iter().map(Vec::as_slice))?;
        let count = i32::try_from(t.assignments.len()).unwrap_or(i32::MAX);
        if count > MAX_PARTITIONS_PER_TOPIC {
            return Err(Refusal::new(
                ResponseError::InvalidPartitions,
                format!("At most {MAX_PARTITIONS_PER_TOPIC} partitions per topic"),
            ));
        }
        return Ok((count, 1));
    }
    let partitions = if t.num_partitions == -1 {
        broker.config.num_partitions
    } else {
        t.num_partitions
    };
    if partitions < 1 {
        return Err(Refusal::new(
            ResponseError::InvalidPartitions,
            "Number of partitions must be larger than 0.",
        ));
    }
    if partitions > MAX_PARTITIONS_PER_TOPIC {
        return Err(Refusal::new(
            ResponseError::InvalidPartitions,
            format!("Number of partitions must be at most {MAX_PARTITIONS_PER_TOPIC}."),
        ));
    }
    let replication_factor = if t.replication_factor == -1 {
        view.default_replication_factor()
    } else {
        t.replication_factor
    };
    if replication_factor < 1 {
        return Err(Refusal::new(
            ResponseError::InvalidReplicationFactor,
            "Replication factor must be larger than 0.",
        ));
    }
    if let Some(brokers) = view
        .known_broker_limit()
        .filter(|b| i32::from(replication_factor) > *b)
    {
        return Err(Refusal::new(
            ResponseError::InvalidReplicationFactor,
            format!("Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {brokers} broker(s) are registered."),
        ));
    }
    Ok((partitions, replication_factor))
}

fn refused(t: &CreatableTopic, refusal: Refusal) -> CreatableTopicResult {
    CreatableTopicResult::default()
        .with_name(t.name.clone())
        .with_error_code(refusal.code)
        .with_error_message(Some(str_bytes(refusal.message)))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
}

fn failed(t: &CreatableTopic, code: ResponseError, message: String) -> CreatableTopicResult {
    CreatableTopicResult::default()
        .with_name(t.name.clone())
        .with_error_code(code.code())
        .with_error_message(Some(str_bytes(message)))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
}

pub fn error_response(request: &CreateTopicsRequest, code: i16) -> CreateTopicsResponse {
    CreateTopicsResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|t| {
                CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(code)
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            })
            .collect(),
    )
}
