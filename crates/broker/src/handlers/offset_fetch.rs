//! OffsetFetch (v1-v9): committed offsets of one group (v1-7) or several (v8+), for the listed
//! partitions or, when `topics` is null, every partition with a commit. A partition without a
//! commit answers offset -1 and empty metadata, as Kafka does.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::offsets::CommittedOffset;

type Fetched = Vec<(String, i32, Option<CommittedOffset>)>;

pub async fn handle(broker: &Broker, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request
            .groups
            .iter()
            .map(|g| {
                let requested: Option<Vec<(String, Vec<i32>)>> = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                if let Err(code) = broker.groups.check_coordinator(&g.group_id) {
                    return group.with_error_code(code);
                }
                let fetched = broker.groups.fetch_offsets(&g.group_id, requested.as_deref());
                group.with_topics(group_topics_v8(fetched))
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    if let Err(code) = broker.groups.check_coordinator(&request.group_id) {
        if version >= 2 {
            return error_response(&request, code);
        }
        // v1 has no top-level error: every requested partition carries it.
        let topics = request
            .topics
            .iter()
            .flatten()
            .map(|t| {
                OffsetFetchResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partition_indexes
                            .iter()
                            .map(|p| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(-1)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_topics(topics);
    }
    let requested: Option<Vec<(String, Vec<i32>)>> = request.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let fetched = broker
        .groups
        .fetch_offsets(&request.group_id, requested.as_deref());
    let mut topics: Vec<OffsetFetchResponseTopic> = Vec::new();
    for (topic, partition, c) in fetched {
        let (offset, epoch, metadata) = parts(c);
        let mut p = OffsetFetchResponsePartition::default()
            .with_partition_index(partition)
            .with_committed_offset(offset)
            .with_metadata(Some(str_bytes(metadata)));
        if version >= 5 {
            p = p.with_committed_leader_epoch(epoch);
        }
        match topics.last_mut() {
            Some(last) if last.name.0.as_str() == topic => last.partitions.push(p),
            _ => topics.push(
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(str_bytes(topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    OffsetFetchResponse::default().with_topics(topics)
}

fn parts(c: Option<CommittedOffset>) -> (i64, i32, String) {
    match c {
        Some(c) => (c.offset, c.leader_epoch, c.metadata),
        None => (-1, -1, String::new()),
    }
}

fn group_topics_v8(fetched: Fetched) -> Vec<OffsetFetchResponseTopics> {
    let mut topics: Vec<OffsetFetchResponseTopics> = Vec::new();
    for (topic, partition, c) in fetched {
        let (offset, epoch, metadata) = parts(c);
        let p = OffsetFetchResponsePartitions::default()
            .with_partition_index(partition)
            .with_committed_offset(offset)
            .with_committed_leader_epoch(epoch)
            .with_metadata(Some(str_bytes(metadata)));
        match topics.last_mut() {
            Some(last) if last.name.0.as_str() == topic => last.partitions.push(p),
            _ => topics.push(
                OffsetFetchResponseTopics::default()
                    .with_name(TopicName(str_bytes(topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    topics
}

pub fn error_response(request: &OffsetFetchRequest, code: i16) -> OffsetFetchResponse {
    if !request.groups.is_empty() {
        return OffsetFetchResponse::default().with_groups(
            request
                .groups
                .iter()
                .map(|g| {
                    OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(code)
                })
                .collect(),
        );
    }
    OffsetFetchResponse::default().with_error_code(code)
}
