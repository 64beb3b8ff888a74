//! Where group state is kept: the internal topics `__consumer_offsets` (latest offset and
//! group metadata per key) and `__sapper_offset_history` (every accepted commit), written as
//! ordinary record batches through the partition log and replayed at start.
//!
//! Recovery story: the log's own recovery leaves whole, CRC-valid batches; replay reads every
//! partition of `__consumer_offsets` from its log start in offset order and keeps the latest
//! value per key (a tombstone removes it). A record this broker cannot read is skipped with a
//! warning rather than stopping the broker.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use sapper_log::batch::{BatchIter, Compression};
use sapper_log::keyed_batch::{self, KeyedRecord};
use sapper_log::{AppendOptions, AppendOutcome};

use super::records::{self, RecordKey};
use super::state::Group;
use crate::partition::{Partition, ReadBound};
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

/// `segment.bytes` of a new `__consumer_offsets` (Kafka's `offsets.topic.segment.bytes`).
const OFFSETS_SEGMENT_BYTES: &str = "104857600";

/// Creates the internal topics if they are missing, `__consumer_offsets` with
/// `cleanup.policy=compact`. A `__consumer_offsets` created by an older broker (before the log
/// could compact, with `retention.ms=-1` and the default delete policy) is switched to
/// `compact` here; its other overrides stay.
pub fn ensure_topics(topics: &TopicRegistry, history_retention_ms: i64) -> Result<(), TopicError> {
    match topics.get(OFFSETS_TOPIC) {
        None => {
            let overrides = TopicOverrides(internal_topic_configs(OFFSETS_TOPIC, history_retention_ms));
            topics.create(OFFSETS_TOPIC, OFFSETS_PARTITIONS, overrides)?;
        }
        Some(existing) if !existing.config.cleanup_policy.compacts() => {
            let before = existing
                .overrides
                .get("cleanup.policy")
                .unwrap_or("delete")
                .to_string();
            let mut overrides = existing.overrides.clone();
            overrides
                .0
                .insert("cleanup.policy".to_string(), "compact".to_string());
            topics.alter_config(OFFSETS_TOPIC, overrides)?;
            tracing::info!(
                topic = OFFSETS_TOPIC,
                from = %before,
                "upgraded the offsets topic to cleanup.policy=compact"
            );
        }
        Some(_) => {}
    }
    if topics.get(HISTORY_TOPIC).is_none() {
        let overrides = TopicOverrides(internal_topic_configs(HISTORY_TOPIC, history_retention_ms));
        topics.create(HISTORY_TOPIC, OFFSETS_PARTITIONS, overrides)?;
    }
    Ok(())
}

/// The config overrides an internal topic is created with (single node or cluster):
/// `__consumer_offsets` compacts, with Kafka's `offsets.topic.segment.bytes` (small segments
/// so the cleaner, which never touches the active segment, gets to compact it on a quiet
/// cluster); the history topic deletes after `history_retention_ms`.
pub fn internal_topic_configs(topic: &str, history_retention_ms: i64) -> BTreeMap<String, String> {
    let pairs: &[(&str, String)] = if topic == OFFSETS_TOPIC {
        &[
            ("cleanup.policy", "compact".to_string()),
            ("segment.bytes", OFFSETS_SEGMENT_BYTES.to_string()),
        ]
    } else {
        &[
            ("cleanup.policy", "delete".to_string()),
            ("retention.ms", history_retention_ms.to_string()),
        ]
    };
    pairs.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect()
}

/// Where an [`append`] put its batch: what a wait for the ISR (the
/// [`crate::replica::purgatory`]) needs, as for an acks=all produce.
#[derive(Debug, Clone)]
pub struct Stored {
    pub partition: Arc<Partition>,
    /// The epoch the batch was stamped with; the wait ends NOT_LEADER once it changes.
    pub leader_epoch: i32,
    /// The offset the high watermark must reach (the batch's last offset + 1).
    pub required_offset: i64,
    /// The topic's `min.insync.replicas`.
    pub min_insync_replicas: usize,
}

/// Appends `entries` (key, value or tombstone) to `topic`'s partition for `group` as one
/// record batch, so a request's records (all partitions of one OffsetCommit) are stored whole
/// or not at all. `None` when there was nothing to store.
pub fn append(
    topics: &TopicRegistry,
    topic: &str,
    group: &str,
    entries: &[(Bytes, Option<Bytes>)],
    now_ms: i64,
) -> Result<Option<Stored>, String> {
    if entries.is_empty() {
        return Ok(None);
    }
    let internal = topics.get(topic);
    let min_insync_replicas = internal
        .as_ref()
        .map_or(1, |t| usize::try_from(t.config.min_insync_replicas).unwrap_or(1));
    let partition = internal
        .and_then(|t| t.partition(partition_for(group)).cloned())
        .ok_or_else(|| format!("internal topic {topic} has no local partition for group {group}"))?;
    // Only the leader writes (in a cluster the partition may be led elsewhere).
    let Some(leader_epoch) = partition.role().leader_epoch() else {
        return Err(format!(
            "this broker does not lead {topic} partition {}",
            partition.index
        ));
    };
    let records: Vec<KeyedRecord<'_>> = entries
        .iter()
        .map(|(key, value)| KeyedRecord {
            key,
            value: value.as_deref(),
            timestamp: now_ms,
        })
        .collect();
    let mut batch = keyed_batch::encode(&records, Compression::None)
        .map_err(|e| format!("encoding a {topic} batch: {e}"))?;
    let options = AppendOptions {
        leader_epoch,
        now_ms,
        log_append_time: false,
    };
    let last_offset = match partition.append(&mut batch, &options) {
        Ok(AppendOutcome::Appended(info)) => info.last_offset,
        // Never for these batches (no producer id), but a duplicate is stored already.
        Ok(AppendOutcome::Duplicate { last_offset, .. }) => last_offset,
        Err(e) => return Err(format!("appending to {topic}: {e}")),
    };
    Ok(Some(Stored {
        partition,
        leader_epoch,
        required_offset: last_offset + 1,
        min_insync_replicas,
    }))
}

/// Whether this broker leads `topic`'s partition for `group` (always, on a single node).
pub fn leads(topics: &TopicRegistry, topic: &str, group: &str) -> bool {
    topics
        .get(topic)
        .and_then(|t| {
            t.partition(partition_for(group))
                .map(|p| p.role().leader_epoch().is_some())
        })
        .unwrap_or(false)
}

/// Rebuilds every group from `__consumer_offsets`.
pub fn replay(topics: &TopicRegistry, now_ms: i64) -> HashMap<String, Group> {
    let mut groups: HashMap<String, Group> = HashMap::new();
    let Some(topic) = topics.get(OFFSETS_TOPIC) else {
        return groups;
    };
    let mut records = 0u64;
    for partition in &topic.partitions {
        records += replay_into(&mut groups, partition, now_ms);
    }
    groups.retain(|_, g| g.has_members() || !g.offsets.is_empty() || g.generation() > 0);
    tracing::info!(groups = groups.len(), records, "replayed {OFFSETS_TOPIC}");
    groups
}

/// Rebuilds the groups of one `__consumer_offsets` partition (a cluster member that just
/// became its leader).
pub fn replay_partition(partition: &Partition, now_ms: i64) -> HashMap<String, Group> {
    let mut groups: HashMap<String, Group> = HashMap::new();
    replay_into(&mut groups, partition, now_ms);
    groups.retain(|_, g| g.has_members() || !g.offsets.is_empty() || g.generation() > 0);
    groups
}

/// Applies one partition's records to `groups`; answers how many it read.
fn replay_into(groups: &mut HashMap<String, Group>, partition: &Partition, now_ms: i64) -> u64 {
    let mut records = 0u64;
    {
        // The coordinator's own log, to its end: what it wrote as the previous leader counts
        // even before followers confirmed it (Kafka loads to the log end as well).
        let end = partition.offsets().log_end_offset;
        let mut offset = partition.offsets().log_start_offset;
        while offset < end {
            let read = match partition.read(offset, REPLAY_READ_BYTES, ReadBound::LogEnd) {
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
                            apply(groups, record.key, record.value, now_ms);
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
    records
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
    use std::path::Path;
    use std::sync::Arc;

    use sapper_log::{CleanupPolicy, LogError};

    use super::*;
    use crate::config::BrokerConfig;
    use crate::group::offsets::CommittedOffset;

    fn registry(dir: &Path) -> TopicRegistry {
        let config = BrokerConfig {
            data_dir: dir.to_path_buf(),
            ..BrokerConfig::default()
        };
        TopicRegistry::load(Arc::new(config)).unwrap()
    }

    fn committed(offset: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_time_ms: 1_000,
        }
    }

    #[test]
    fn one_commit_of_many_partitions_is_one_batch_and_replays() {
        let dir = tempfile::tempdir().unwrap();
        let topics = registry(dir.path());
        ensure_topics(&topics, 60_000).unwrap();
        let entries: Vec<(Bytes, Option<Bytes>)> = (0..5)
            .map(|p| {
                (
                    records::offset_key("g", "t", p),
                    Some(records::offset_value(&committed(10 + i64::from(p)))),
                )
            })
            .chain([(records::offset_key("g", "t", 4), None)])
            .collect();
        append(&topics, OFFSETS_TOPIC, "g", &entries, 1_000).unwrap();
        let partition = topics
            .get(OFFSETS_TOPIC)
            .and_then(|t| t.partition(partition_for("g")).cloned())
            .unwrap();
        let read = partition.read(0, usize::MAX, ReadBound::LogEnd).unwrap();
        let batches: Vec<_> = BatchIter::validated(&read.bytes).map(Result::unwrap).collect();
        assert_eq!(batches.len(), 1, "one batch per commit");
        assert_eq!((batches[0].base_offset(), batches[0].records_count()), (0, 6));
        assert_eq!(partition.offsets().high_watermark, 6);

        let groups = replay(&topics, 2_000);
        let offsets = &groups["g"].offsets;
        assert_eq!(offsets.get("t", 0).map(|c| c.offset), Some(10));
        assert_eq!(offsets.get("t", 3).map(|c| c.offset), Some(13));
        assert_eq!(
            offsets.get("t", 4),
            None,
            "the tombstone after it deletes the commit"
        );
    }

    #[test]
    fn a_new_offsets_topic_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let topics = registry(dir.path());
        ensure_topics(&topics, 60_000).unwrap();
        let offsets = topics.get(OFFSETS_TOPIC).unwrap();
        assert_eq!(offsets.config.cleanup_policy, CleanupPolicy::Compact);
        assert_eq!(offsets.partitions.len(), OFFSETS_PARTITIONS as usize);
        let history = topics.get(HISTORY_TOPIC).unwrap();
        assert_eq!(history.config.cleanup_policy, CleanupPolicy::Delete);
        assert_eq!(history.config.retention_ms, 60_000);
    }

    #[test]
    fn an_offsets_topic_from_before_compaction_is_upgraded_at_start() {
        let dir = tempfile::tempdir().unwrap();
        {
            // What a broker without compaction created.
            let topics = registry(dir.path());
            let old = TopicOverrides::parse([("retention.ms", Some("-1"))]).unwrap();
            topics.create(OFFSETS_TOPIC, OFFSETS_PARTITIONS, old).unwrap();
            let entry = [(
                records::offset_key("g", "t", 0),
                Some(records::offset_value(&committed(7))),
            )];
            append(&topics, OFFSETS_TOPIC, "g", &entry, 1_000).unwrap();
            for (_, p) in topics.all_partitions() {
                p.close().unwrap();
            }
        }
        let topics = registry(dir.path());
        assert_eq!(
            topics.get(OFFSETS_TOPIC).unwrap().config.cleanup_policy,
            CleanupPolicy::Delete
        );
        ensure_topics(&topics, 60_000).unwrap();
        let upgraded = topics.get(OFFSETS_TOPIC).unwrap();
        assert_eq!(upgraded.config.cleanup_policy, CleanupPolicy::Compact);
        assert_eq!(upgraded.overrides.get("cleanup.policy"), Some("compact"));
        assert_eq!(
            upgraded.overrides.get("retention.ms"),
            Some("-1"),
            "other overrides stay"
        );
        // The logs took the new policy at once: a compacted log refuses a record without a key.
        let mut keyless = sapper_log::batch::testing::simple_batch(1, 1_000, b"v");
        let options = AppendOptions {
            leader_epoch: 0,
            now_ms: 1_000,
            log_append_time: false,
        };
        assert!(matches!(
            upgraded.partitions[0].append(&mut keyless, &options),
            Err(crate::partition::AppendError::Log(LogError::CorruptBatch(
                sapper_log::batch::BatchError::MissingKey
            )))
        ));
        assert_eq!(
            replay(&topics, 2_000)["g"].offsets.get("t", 0).map(|c| c.offset),
            Some(7)
        );
        for (_, p) in topics.all_partitions() {
            p.close().unwrap();
        }
        drop(topics);
        // Persisted: the next start sees a compacted topic and changes nothing.
        let topics = registry(dir.path());
        assert_eq!(
            topics.get(OFFSETS_TOPIC).unwrap().config.cleanup_policy,
            CleanupPolicy::Compact
        );
        ensure_topics(&topics, 60_000).unwrap();
        assert_eq!(topics.get(OFFSETS_TOPIC).unwrap().overrides, upgraded.overrides);
    }

    #[test]
    fn partition_matches_kafka_java_hash() {
        // "my-group".hashCode() is -1906497762 in Java; Kafka masks the sign bit: 240985886 % 50.
        assert_eq!(partition_for("my-group"), 36);
        assert_eq!(partition_for(""), 0);
    }
}
