//! DescribeConfigs for topics (type 2) and this broker (type 4), with sources, synonyms and
//! documentation as requested.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::topic_config::{TopicOverrides, TOPIC_CONFIG_KEYS};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// One config entry before filtering.
struct Entry {
    name: &'static str,
    value: String,
    source: i8,
    config_type: i8,
    documentation: &'static str,
    synonyms: Vec<(&'static str, String, i8)>,
}

pub async fn handle(
    broker: &Broker,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let entries = match r.resource_type {
                RESOURCE_TOPIC => match broker.topics.get(r.resource_name.as_str()) {
                    Some(topic) => TOPIC_CONFIG_KEYS
                        .iter()
                        .map(|key| {
                            let (value, set) = topic.overrides.describe(key, &broker.config);
                            // The broker-level default is what the topic would use with no override.
                            let (default, _) = TopicOverrides::default().describe(key, &broker.config);
                            let mut synonyms = Vec::new();
                            if set {
                                synonyms.push((key.name, value.clone(), SOURCE_DYNAMIC_TOPIC));
                            }
                            synonyms.push((key.broker_synonym, default, SOURCE_DEFAULT));
                            Entry {
                                name: key.name,
                                value,
                                source: if set { SOURCE_DYNAMIC_TOPIC } else { SOURCE_DEFAULT },
                                config_type: key.config_type,
                                documentation: key.documentation,
                                synonyms,
                            }
                        })
                        .collect::<Vec<_>>(),
                    None => {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str_bytes(format!(
                                "Topic '{}' does not exist.",
                                r.resource_name
                            ))))
                    }
                },
                RESOURCE_BROKER => {
                    let name = r.resource_name.as_str();
                    if !name.is_empty() && name != broker.node_id().to_string() {
                        return result
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(str_bytes(format!(
                                "Unexpected broker id, expected {}, got {name}",
                                broker.node_id()
                            ))));
                    }
                    broker_entries(&broker.config)
                }
                other => {
                    return result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(str_bytes(format!("Unsupported resource type {other}"))))
                }
            };
            let configs = entries
                .into_iter()
                .filter(|e| {
                    r.configuration_keys
                        .as_ref()
                        .is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name))
                })
                .map(|e| {
                    let mut c = DescribeConfigsResourceResult::default()
                        .with_name(str_bytes(e.name))
                        .with_value(Some(str_bytes(e.value)))
                        .with_config_source(e.source);
                    if request.include_synonyms {
                        c = c.with_synonyms(
                            e.synonyms
                                .into_iter()
                                .map(|(n, v, s)| {
                                    DescribeConfigsSynonym::default()
                                        .with_name(str_bytes(n))
                                        .with_value(Some(str_bytes(v)))
                                        .with_source(s)
                                })
                                .collect(),
                        );
                    }
                    if version >= 3 {
                        c = c.with_config_type(e.config_type);
                        if request.include_documentation {
                            c = c.with_documentation(Some(str_bytes(e.documentation)));
                        }
                    }
                    c
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn broker_entries(config: &BrokerConfig) -> Vec<Entry> {
    let static_entry =
        |name: &'static str, value: String, config_type: i8, documentation: &'static str| Entry {
            name,
            value: value.clone(),
            source: SOURCE_STATIC_BROKER,
            config_type,
            documentation,
            synonyms: vec![(name, value, SOURCE_STATIC_BROKER)],
        };
    vec![
        static_entry("broker.id", config.node_id.to_string(), 3, "This broker's id."),
        static_entry("node.id", config.node_id.to_string(), 3, "This broker's id."),
        static_entry(
            "log.dirs",
            config.data_dir.display().to_string(),
            2,
            "Where partition logs are stored.",
        ),
        static_entry(
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            1,
            "Create topics on first metadata request.",
        ),
        static_entry(
            "num.partitions",
            config.num_partitions.to_string(),
            3,
            "Default partition count.",
        ),
        static_entry(
            "default.replication.factor",
            "1".into(),
            3,
            "Default replication factor.",
        ),
        static_entry(
            "log.segment.bytes",
            config.log_segment_bytes.to_string(),
            3,
            "Segment size.",
        ),
        static_entry(
            "log.roll.ms",
            config.log_segment_ms.to_string(),
            5,
            "Segment age before rolling.",
        ),
        static_entry(
            "log.retention.ms",
            config.log_retention_ms.to_string(),
            5,
            "Retention time.",
        ),
        static_entry(
            "log.retention.bytes",
            config.log_retention_bytes.to_string(),
            5,
            "Retention size per partition.",
        ),
        static_entry(
            "log.retention.check.interval.ms",
            config.retention_check_interval_ms.to_string(),
            5,
            "Retention check period.",
        ),
        static_entry(
            "message.max.bytes",
            config.message_max_bytes.to_string(),
            3,
            "Largest record batch accepted.",
        ),
        static_entry(
            "socket.request.max.bytes",
            config.socket_request_max_bytes.to_string(),
            3,
            "Largest request accepted.",
        ),
        static_entry(
            "min.insync.replicas",
            "1".into(),
            3,
            "Default min.insync.replicas.",
        ),
    ]
}

pub fn error_response(request: &DescribeConfigsRequest, code: i16) -> DescribeConfigsResponse {
    DescribeConfigsResponse::default().with_results(
        request
            .resources
            .iter()
            .map(|r| {
                DescribeConfigsResult::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone())
                    .with_error_code(code)
            })
            .collect(),
    )
}
