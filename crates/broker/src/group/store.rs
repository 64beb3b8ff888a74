//! Where group state is kept: the internal topics `__consumer_offsets` (latest offset and
//! group metadata per key) and `__sapper_offset_history` (every accepted commit), written as
//! ordinary record batches through the partition log and replayed at start.
//!
//! Recovery story: the log's own recovery leaves whole, CRC-valid batches; replay reads every
//! partition of `__consumer_offsets` from its log start in offset order and keeps the latest
//! value per key (a tombstone removes it). A record this broker cannot read is skipped with a
//! warning rather than stopping the broker.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sapper_log::batch::BatchIter;
use sapper_log::AppendOptions;

use super::records::{self, RecordKey};
use super::state::Group;
use crate::topic_config::TopicOverrides;
use crate::topics::{TopicError, TopicRegistry};

/// Kafka's internal topic of committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka `offsets.topic.num.partitions`.
pub const OFFSETS_PARTITIONS: i32 = 50;
/// Every accepted commit, for `sapper group history`.
pub const HISTORY_TOPIC: &str = "__sapper_offset_history";

/// Read size while replaying.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// The `__consumer_offsets` partition of `group`: Kafka's `abs(group.hashCode()) % 50`.
pub fn partition_for(group: &str) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    (h & 0x7fff_ffff) % OFFSETS_PARTITIONS
}

/// Creates the internal topics if they are missing.
///
/// `__consumer_offsets` should be `cleanup.policy=compact`; while the log cannot compact yet
/// (topic_config refuses `compact`) it is created with `retention.ms=-1` so nothing is lost.
pub fn ensure_topics(topics: &TopicRegistry, history_retention_ms: i64) -> Result<(), TopicError> {
    if topics.get(OFFSETS_TOPIC).is_none() {
        let overrides = TopicOverrides::parse([("cleanup.policy", Some("compact"))])
            .or_else(|_| TopicOverrides::parse([("retention.ms", Some("-1"))]))
            .map_err(TopicError::Storage)?;
        topics.create(OFFSETS_TOPIC, OFFSETS_PARTITIONS, overrides)?;
    }
    if topics.get(HISTORY_TOPIC).is_none() {
        let retention = history_retention_ms.to_string();
        let overrides = TopicOverrides::parse([
            ("cleanup.policy", Some("delete")),
            ("retention.ms", Some(retention.as_str())),
        ])
        .map_err(TopicError::Storage)?;
        topics.create(HISTORY_TOPIC, OFFSETS_PARTITIONS, overrides)?;
    }
    Ok(())
}

/// Appends `entries` (key, value or tombstone) as one batch to `topic`'s partition for `group`.
pub fn append(
    topics: &TopicRegistry,
    topic: &str,
    group: &str,
    entries: &[(Bytes, Option<Bytes>)],
    now_ms: i64,
) -> Result<(), String> {
    if entries.is_empty() {
        return Ok(());
    }
    let partition = topics
        .get(topic)
        .and_then(|t| t.partition(partition_for(group)).cloned())
        .ok_or_else(|| format!("internal topic {topic} is missing"))?;
    let records: Vec<Record> = entries
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now_ms,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| format!("encoding a {topic} batch: {e}"))?;
    let options = AppendOptions {
        leader_epoch: 0,
        now_ms,
        log_append_time: false,
    };
    partition
        .append(&mut buf, &options)
        .map(|_| ())
        .map_err(|e| format!("appending to {topic}: {e}"))
}

/// Rebuilds every group from `__consumer_offsets`.
pub fn replay(topics: &TopicRegistry, now_ms: i64) -> HashMap<String, Group> {
    let mut groups: HashMap<String, Group> = HashMap::new();
    let Some(topic) = topics.get(OFFSETS_TOPIC) else {
        return groups;
    };
    let mut records = 0u64;
    for partition in &topic.partitions {
        let end = partition.offsets().high_watermark;
        let mut offset = partition.offsets().log_start_offset;
        while offset < end {
            let read = match partition.read(offset, REPLAY_READ_BYTES) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(partition = partition.index, offset, error = %e, "replaying group state stopped early");
                    break;
                }
            };
            if read.bytes.is_empty() {
                break;
            }
            let mut next = offset;
            for batch in BatchIter::new(&read.bytes) {
                let Ok(batch) = batch else { break };
                next = batch.last_offset() + 1;
                let mut bytes = Bytes::copy_from_slice(batch.as_bytes());
                match RecordBatchDecoder::decode(&mut bytes) {
                    Ok(set) => {
                        for record in set.records {
                            records += 1;
                            apply(&mut groups, record.key, record.value, now_ms);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(partition = partition.index, error = %e, "skipping unreadable group batch")
                    }
                }
            }
            if next <= offset {
                break;
            }
            offset = next;
        }
    }
    groups.retain(|_, g| g.has_members() || !g.offsets.is_empty() || g.generation() > 0);
    tracing::info!(groups = groups.len(), records, "replayed {OFFSETS_TOPIC}");
    groups
}

fn apply(groups: &mut HashMap<String, Group>, key: Option<Bytes>, value: Option<Bytes>, now_ms: i64) {
    let Some(key) = key else { return };
    let key = match records::decode_key(key) {
        Ok(Some(k)) => k,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "skipping unreadable group record key");
            return;
        }
    };
    match key {
        RecordKey::Offset {
            group,
            topic,
            partition,
        } => match value {
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&topic, partition);
                }
            }
            Some(v) => match records::decode_offset_value(v) {
                Ok(c) => groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group, now_ms))
                    .offsets
                    .put(&topic, partition, c),
                Err(e) => tracing::warn!(group, error = %e, "skipping unreadable offset record"),
            },
        },
        RecordKey::Group { group } => match value {
            None => {
                groups.remove(&group);
            }
            Some(v) => match records::decode_group_value(v) {
                Ok(snapshot) => groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group, now_ms))
                    .restore(snapshot, now_ms),
                Err(e) => tracing::warn!(group, error = %e, "skipping unreadable group record"),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_kafka_java_hash() {
        // "my-group".hashCode() is -1906497762 in Java; Kafka masks the sign bit: 240985886 % 50.
        assert_eq!(partition_for("my-group"), 36);
        assert_eq!(partition_for(""), 0);
    }
}
