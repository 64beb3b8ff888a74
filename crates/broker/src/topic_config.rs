//! Per-topic configuration: Kafka's names, defaults taken from the broker, validation, and the
//! effective values the log and the produce path use.
//!
//! Only explicitly set keys are stored (as Kafka stores topic overrides); everything else
//! follows the broker's defaults, which DescribeConfigs reports with their source.

use std::collections::BTreeMap;

use sapper_log::config::{DEFAULT_DELETE_RETENTION_MS, DEFAULT_MIN_CLEANABLE_DIRTY_RATIO};
use sapper_log::{CleanupPolicy, LogConfig};

use crate::config::BrokerConfig;

/// Smallest accepted `segment.bytes`. Kafka 4 requires 1 MiB; we allow small segments so
/// retention and rolling can be exercised quickly, and document the difference.
pub const MIN_SEGMENT_BYTES: i64 = 1024;

/// How record timestamps are assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// One topic config Kafka clients may set or describe.
#[derive(Debug, Clone, Copy)]
pub struct ConfigKey {
    pub name: &'static str,
    /// DescribeConfigs v3 `config_type`: 2 STRING, 3 INT, 5 LONG, 6 DOUBLE, 7 LIST.
    pub config_type: i8,
    pub documentation: &'static str,
    /// The broker config (Kafka name) that provides its default.
    pub broker_synonym: &'static str,
}

/// Every topic config Sapper accepts.
pub const TOPIC_CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: "cleanup.policy",
        config_type: 7,
        documentation: "delete: old segments are removed by retention; compact: the cleaner keeps the latest record per key; compact,delete: both.",
        broker_synonym: "log.cleanup.policy",
    },
    ConfigKey {
        name: "delete.retention.ms",
        config_type: 5,
        documentation: "How long a tombstone (null value) of a compacted topic stays readable, from its timestamp.",
        broker_synonym: "log.cleaner.delete.retention.ms",
    },
    ConfigKey {
        name: "min.compaction.lag.ms",
        config_type: 5,
        documentation: "A record stays uncompacted at least this long.",
        broker_synonym: "log.cleaner.min.compaction.lag.ms",
    },
    ConfigKey {
        name: "max.compaction.lag.ms",
        config_type: 5,
        documentation: "A dirty segment older than this is compacted whatever the dirty ratio.",
        broker_synonym: "log.cleaner.max.compaction.lag.ms",
    },
    ConfigKey {
        name: "min.cleanable.dirty.ratio",
        config_type: 6,
        documentation: "Compact once this share of the log (not counting the active segment) is dirty.",
        broker_synonym: "log.cleaner.min.cleanable.ratio",
    },
    ConfigKey {
        name: "retention.ms",
        config_type: 5,
        documentation: "Keep a segment at least this long after its newest record; -1 keeps forever.",
        broker_synonym: "log.retention.ms",
    },
    ConfigKey {
        name: "retention.bytes",
        config_type: 5,
        documentation: "Delete oldest segments while a partition is larger than this; -1 means no limit.",
        broker_synonym: "log.retention.bytes",
    },
    ConfigKey {
        name: "segment.bytes",
        config_type: 3,
        documentation: "Roll a new segment at this size.",
        broker_synonym: "log.segment.bytes",
    },
    ConfigKey {
        name: "segment.ms",
        config_type: 5,
        documentation: "Roll a new segment after this long even if not full.",
        broker_synonym: "log.roll.ms",
    },
    ConfigKey {
        name: "max.message.bytes",
        config_type: 3,
        documentation: "Largest record batch accepted.",
        broker_synonym: "message.max.bytes",
    },
    ConfigKey {
        name: "message.timestamp.type",
        config_type: 2,
        documentation: "CreateTime (producer's) or LogAppendTime (broker's clock).",
        broker_synonym: "log.message.timestamp.type",
    },
    ConfigKey {
        name: "min.insync.replicas",
        config_type: 3,
        documentation:
            "Replicas that must acknowledge an acks=all write (stored; enforced once replication exists).",
        broker_synonym: "min.insync.replicas",
    },
];

/// A topic's explicitly set configs, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicOverrides(pub BTreeMap<String, String>);

/// The values a topic actually uses.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveTopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub max_message_bytes: i32,
    pub timestamp_type: TimestampType,
    pub min_insync_replicas: i32,
    pub cleanup_policy: CleanupPolicy,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
}

impl TopicOverrides {
    /// Validates `pairs` (name, value) as Kafka would on CreateTopics: unknown names and bad
    /// values are INVALID_CONFIG with a message naming the key.
    pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for (name, value) in pairs {
            let Some(value) = value else {
                return Err(format!("Null value not supported for topic config {name}"));
            };
            validate(name, value)?;
            map.insert(name.to_string(), value.trim().to_string());
        }
        let lag = |name: &str, default: i64| {
            map.get(name)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(default)
        };
        let (min_lag, max_lag) = (
            lag("min.compaction.lag.ms", 0),
            lag("max.compaction.lag.ms", i64::MAX),
        );
        if min_lag > max_lag {
            return Err(format!(
                "conflict topic config setting min.compaction.lag.ms ({min_lag}) > max.compaction.lag.ms ({max_lag})"
            ));
        }
        Ok(Self(map))
    }

    /// The explicitly set value of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Resolves every value against the broker defaults.
    pub fn effective(&self, broker: &BrokerConfig) -> EffectiveTopicConfig {
        let long = |name: &str, default: i64| self.get(name).and_then(|v| v.parse().ok()).unwrap_or(default);
        EffectiveTopicConfig {
            retention_ms: long("retention.ms", broker.log_retention_ms),
            retention_bytes: long("retention.bytes", broker.log_retention_bytes),
            segment_bytes: long("segment.bytes", broker.log_segment_bytes),
            segment_ms: long("segment.ms", broker.log_segment_ms),
            max_message_bytes: long("max.message.bytes", i64::from(broker.message_max_bytes))
                .clamp(0, i64::from(i32::MAX)) as i32,
            timestamp_type: match self.get("message.timestamp.type") {
                Some("LogAppendTime") => TimestampType::LogAppendTime,
                _ => TimestampType::CreateTime,
            },
            min_insync_replicas: long("min.insync.replicas", 1).clamp(1, i64::from(i32::MAX)) as i32,
            cleanup_policy: self
                .get("cleanup.policy")
                .and_then(parse_cleanup_policy)
                .unwrap_or_default(),
            delete_retention_ms: long("delete.retention.ms", DEFAULT_DELETE_RETENTION_MS),
            min_compaction_lag_ms: long("min.compaction.lag.ms", 0),
            max_compaction_lag_ms: long("max.compaction.lag.ms", i64::MAX),
            min_cleanable_dirty_ratio: self
                .get("min.cleanable.dirty.ratio")
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_MIN_CLEANABLE_DIRTY_RATIO),
        }
    }

    /// The value to describe for `name` and whether it was set on the topic.
    pub fn describe(&self, key: &ConfigKey, broker: &BrokerConfig) -> (String, bool) {
        if let Some(v) = self.get(key.name) {
            return (v.to_string(), true);
        }
        let e = self.effective(broker);
        let value = match key.name {
            "cleanup.policy" => "delete".to_string(),
            "retention.ms" => e.retention_ms.to_string(),
            "retention.bytes" => e.retention_bytes.to_string(),
            "segment.bytes" => e.segment_bytes.to_string(),
            "segment.ms" => e.segment_ms.to_string(),
            "max.message.bytes" => e.max_message_bytes.to_string(),
            "message.timestamp.type" => "CreateTime".to_string(),
            "min.insync.replicas" => e.min_insync_replicas.to_string(),
            "delete.retention.ms" => e.delete_retention_ms.to_string(),
            "min.compaction.lag.ms" => e.min_compaction_lag_ms.to_string(),
            "max.compaction.lag.ms" => e.max_compaction_lag_ms.to_string(),
            "min.cleanable.dirty.ratio" => e.min_cleanable_dirty_ratio.to_string(),
            _ => String::new(),
        };
        (value, false)
    }
}

impl EffectiveTopicConfig {
    /// The part of the config the log itself enforces.
    pub fn log_config(&self, broker: &BrokerConfig) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes.max(MIN_SEGMENT_BYTES) as u64,
            segment_ms: self.segment_ms,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            flush: broker.flush,
            cleanup_policy: self.cleanup_policy,
            delete_retention_ms: self.delete_retention_ms,
            min_compaction_lag_ms: self.min_compaction_lag_ms,
            max_compaction_lag_ms: self.max_compaction_lag_ms,
            min_cleanable_dirty_ratio: self.min_cleanable_dirty_ratio,
            ..LogConfig::default()
        }
    }
}

/// Kafka's `cleanup.policy` list: `delete`, `compact`, or both in either order.
fn parse_cleanup_policy(value: &str) -> Option<CleanupPolicy> {
    let mut compact = false;
    let mut delete = false;
    for item in value.split(',').map(str::trim) {
        match item {
            "compact" => compact = true,
            "delete" => delete = true,
            _ => return None,
        }
    }
    match (compact, delete) {
        (true, true) => Some(CleanupPolicy::CompactDelete),
        (true, false) => Some(CleanupPolicy::Compact),
        (false, true) => Some(CleanupPolicy::Delete),
        (false, false) => None,
    }
}

fn validate(name: &str, value: &str) -> Result<(), String> {
    let value = value.trim();
    let long = |min: i64| -> Result<(), String> {
        match value.parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            _ => Err(format!(
                "Invalid value {value} for configuration {name}: must be an integer >= {min}"
            )),
        }
    };
    let int = |min: i64| -> Result<(), String> {
        match value.parse::<i32>() {
            Ok(v) if i64::from(v) >= min => Ok(()),
            _ => Err(format!(
                "Invalid value {value} for configuration {name}: must be an int >= {min}"
            )),
        }
    };
    match name {
        "cleanup.policy" => match parse_cleanup_policy(value) {
            Some(_) => Ok(()),
            None => Err(format!("Invalid value {value} for configuration cleanup.policy: String must be one of: compact, delete")),
        },
        "retention.ms" | "retention.bytes" => long(-1),
        "delete.retention.ms" | "min.compaction.lag.ms" => long(0),
        "max.compaction.lag.ms" => long(1),
        "min.cleanable.dirty.ratio" => match value.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            _ => Err(format!(
                "Invalid value {value} for configuration min.cleanable.dirty.ratio: Value must be between 0 and 1"
            )),
        },
        "segment.bytes" => int(MIN_SEGMENT_BYTES),
        "segment.ms" => long(1),
        "max.message.bytes" => int(0),
        "min.insync.replicas" => int(1),
        "message.timestamp.type" => match value {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err(format!(
                "Invalid value {value} for configuration message.timestamp.type: String must be one of: CreateTime, LogAppendTime"
            )),
        },
        _ => Err(format!("Unknown topic config name: {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_known_keys_and_resolves_defaults() {
        let o = TopicOverrides::parse([
            ("retention.ms", Some("1000")),
            ("message.timestamp.type", Some("LogAppendTime")),
        ])
        .unwrap();
        let e = o.effective(&BrokerConfig::default());
        assert_eq!(e.retention_ms, 1000);
        assert_eq!(e.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(e.max_message_bytes, 1_048_588);
    }

    #[test]
    fn rejects_unknown_and_bad_values() {
        assert!(TopicOverrides::parse([("retention.hours", Some("1"))])
            .unwrap_err()
            .contains("retention.hours"));
        assert!(TopicOverrides::parse([("segment.bytes", Some("12"))]).is_err());
        assert!(TopicOverrides::parse([("retention.ms", Some("-2"))]).is_err());
        assert!(TopicOverrides::parse([("message.timestamp.type", Some("Now"))]).is_err());
        assert!(TopicOverrides::parse([("retention.ms", None)]).is_err());
    }

    #[test]
    fn compaction_configs_are_validated_and_reach_the_log() {
        for (value, policy) in [
            ("delete", CleanupPolicy::Delete),
            ("compact", CleanupPolicy::Compact),
            ("compact,delete", CleanupPolicy::CompactDelete),
            ("delete, compact", CleanupPolicy::CompactDelete),
        ] {
            let o = TopicOverrides::parse([("cleanup.policy", Some(value))]).unwrap();
            assert_eq!(
                o.effective(&BrokerConfig::default()).cleanup_policy,
                policy,
                "{value}"
            );
        }
        for bad in ["", "compacted", "compact,,delete"] {
            assert!(
                TopicOverrides::parse([("cleanup.policy", Some(bad))]).is_err(),
                "{bad}"
            );
        }
        let o = TopicOverrides::parse([
            ("cleanup.policy", Some("compact")),
            ("delete.retention.ms", Some("100")),
            ("min.compaction.lag.ms", Some("5")),
            ("max.compaction.lag.ms", Some("50")),
            ("min.cleanable.dirty.ratio", Some("0.01")),
        ])
        .unwrap();
        let broker = BrokerConfig::default();
        let log = o.effective(&broker).log_config(&broker);
        assert_eq!(log.cleanup_policy, CleanupPolicy::Compact);
        assert_eq!(
            (
                log.delete_retention_ms,
                log.min_compaction_lag_ms,
                log.max_compaction_lag_ms
            ),
            (100, 5, 50)
        );
        assert_eq!(log.min_cleanable_dirty_ratio, 0.01);
        let defaults = TopicOverrides::default().effective(&broker).log_config(&broker);
        assert_eq!(defaults.cleanup_policy, CleanupPolicy::Delete);
        assert_eq!(defaults.delete_retention_ms, 86_400_000);
        assert!(TopicOverrides::parse([("min.cleanable.dirty.ratio", Some("1.5"))]).is_err());
        assert!(TopicOverrides::parse([("max.compaction.lag.ms", Some("0"))]).is_err());
        assert!(TopicOverrides::parse([("delete.retention.ms", Some("-1"))]).is_err());
        assert!(TopicOverrides::parse([
            ("min.compaction.lag.ms", Some("10")),
            ("max.compaction.lag.ms", Some("5")),
        ])
        .unwrap_err()
        .contains("conflict"));
    }
}
