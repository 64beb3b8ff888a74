//! Log offsets of partitions by ListOffsets, each partition asked of its leader (found with
//! Metadata), one request per leader.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Cluster;
use crate::error::OpsError;

/// ListOffsets' special timestamp for the log end offset (high watermark).
pub const LATEST: i64 = -1;
/// ListOffsets' special timestamp for the log start offset.
pub const EARLIEST: i64 = -2;

/// A topic partition.
pub type TopicPartition = (String, i32);

/// Each partition's offset at `timestamp` ([`LATEST`], [`EARLIEST`]), or the Kafka error code
/// that explains why there is none (an unknown topic, no leader).
pub async fn list_offsets(
    cluster: &mut Cluster,
    partitions: &BTreeSet<TopicPartition>,
    timestamp: i64,
) -> Result<BTreeMap<TopicPartition, Result<i64, i16>>, OpsError> {
    let mut out: BTreeMap<TopicPartition, Result<i64, i16>> = BTreeMap::new();
    if partitions.is_empty() {
        return Ok(out);
    }
    let topics: Vec<String> = partitions
        .iter()
        .map(|(t, _)| t.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let metadata = cluster.metadata(Some(&topics)).await?;
    let mut by_leader: BTreeMap<String, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for tp in partitions {
        let (topic, partition) = tp;
        let found = metadata
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic));
        let leader = match found {
            None => Err(ResponseError::UnknownTopicOrPartition.code()),
            Some(t) if t.error_code != 0 => Err(t.error_code),
            Some(t) => match t.partitions.iter().find(|p| p.partition_index == *partition) {
                None => Err(ResponseError::UnknownTopicOrPartition.code()),
                Some(p) if p.error_code != 0 => Err(p.error_code),
                Some(p) => cluster
                    .broker_addr(p.leader_id.0)
                    .ok_or(ResponseError::LeaderNotAvailable.code()),
            },
        };
        match leader {
            Ok(addr) => by_leader
                .entry(addr)
                .or_default()
                .entry(topic.clone())
                .or_default()
                .push(*partition),
            Err(code) => {
                out.insert(tp.clone(), Err(code));
            }
        }
    }
    for (leader, topics) in by_leader {
        let (_, response) = cluster
            .call(&leader, 1, 7, |_| {
                let topics = topics
                    .iter()
                    .map(|(name, parts)| {
                        ListOffsetsTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name.clone())))
                            .with_partitions(
                                parts
                                    .iter()
                                    .map(|p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(*p)
                                            .with_timestamp(timestamp)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                // A consumer's request: replica id -1 (the codec's default is 0, a broker's).
                ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(topics)
            })
            .await?;
        for t in &response.topics {
            for p in &t.partitions {
                let value = if p.error_code == 0 {
                    Ok(p.offset)
                } else {
                    Err(p.error_code)
                };
                out.insert((t.name.0.to_string(), p.partition_index), value);
            }
        }
    }
    // A partition the leader left out of its answer has no offset either.
    for tp in partitions {
        out.entry(tp.clone())
            .or_insert(Err(ResponseError::UnknownTopicOrPartition.code()));
    }
    Ok(out)
}
