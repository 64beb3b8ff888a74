//! CreateTopics, with Kafka's validation order: name, duplicates in the request, existence,
//! partitions and replication factor (one broker: RF 1), configs; `validate_only` stops
//! before anything is created.

use std::collections::HashSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::topic_config::{TopicOverrides, TOPIC_CONFIG_KEYS};
use crate::topic_name::validate_topic_name;
use crate::topics::{TopicError, MAX_PARTITIONS_PER_TOPIC};

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
    if broker.topics.get(name).is_some() {
        return failed(
            t,
            ResponseError::TopicAlreadyExists,
            format!("Topic '{name}' already exists."),
        );
    }
    let (partitions, replication_factor) = match shape(broker, t) {
        Ok(shape) => shape,
        Err((code, message)) => return failed(t, code, message),
    };
    let overrides = match TopicOverrides::parse(
        t.configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
    ) {
        Ok(o) => o,
        Err(message) => return failed(t, ResponseError::InvalidConfig, message),
    };
    let (id, result_overrides) = if validate_only {
        (uuid::Uuid::nil(), overrides)
    } else {
        let owned_name = name.to_string();
        match broker
            .topics
            .change(move |topics| topics.create(&owned_name, partitions, overrides))
            .await
        {
            Ok(topic) => (topic.id, topic.overrides.clone()),
            Err(TopicError::AlreadyExists(_)) => {
                return failed(
                    t,
                    ResponseError::TopicAlreadyExists,
                    format!("Topic '{name}' already exists."),
                )
            }
            Err(e) => return failed(t, ResponseError::KafkaStorageError, e.to_string()),
        }
    };
    if !validate_only {
        tracing::info!(topic = name, partitions, "created topic");
    }
    let mut result = CreatableTopicResult::default().with_name(t.name.clone());
    if version >= 7 {
        result = result.with_topic_id(id);
    }
    if version >= 5 {
        result = result
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor);
        let configs = TOPIC_CONFIG_KEYS
            .iter()
            .map(|key| {
                let (value, set) = result_overrides.describe(key, &broker.config);
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

/// Partition count and replication factor, from explicit assignments or the counts.
fn shape(broker: &Broker, t: &CreatableTopic) -> Result<(i32, i16), (ResponseError, String)> {
    let me = broker.node_id();
    if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err((
                ResponseError::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
            ));
        }
        let mut indexes: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
        indexes.sort_unstable();
        if indexes.iter().enumerate().any(|(i, &p)| p != i as i32) {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                "Partitions should be a consecutive 0-based integer sequence".into(),
            ));
        }
        for a in &t.assignments {
            if a.broker_ids.len() != 1 || a.broker_ids.iter().any(|b| b.0 != me) {
                return Err((
                    ResponseError::InvalidReplicaAssignment,
                    format!("Replica assignment must name exactly broker {me}, the only broker"),
                ));
            }
        }
        let count = i32::try_from(t.assignments.len()).unwrap_or(i32::MAX);
        if count > MAX_PARTITIONS_PER_TOPIC {
            return Err((
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
        return Err((
            ResponseError::InvalidPartitions,
            "Number of partitions must be larger than 0.".into(),
        ));
    }
    if partitions > MAX_PARTITIONS_PER_TOPIC {
        return Err((
            ResponseError::InvalidPartitions,
            format!("Number of partitions must be at most {MAX_PARTITIONS_PER_TOPIC}."),
        ));
    }
    let replication_factor = if t.replication_factor == -1 {
        1
    } else {
        t.replication_factor
    };
    if replication_factor < 1 {
        return Err((
            ResponseError::InvalidReplicationFactor,
            "Replication factor must be larger than 0.".into(),
        ));
    }
    if replication_factor > 1 {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!("Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only 1 broker(s) are registered."),
        ));
    }
    Ok((partitions, replication_factor))
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
