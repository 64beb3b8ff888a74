//! OffsetDelete (v0): removes a group's commits for partitions no member is subscribed to.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: OffsetDeleteRequest, _version: i16) -> OffsetDeleteResponse {
    let mut known = Vec::new();
    for t in &request.topics {
        let topic = broker.topics.get(&t.name);
        for p in &t.partitions {
            if topic
                .as_ref()
                .is_some_and(|topic| topic.has_partition(p.partition_index))
            {
                known.push((t.name.to_string(), p.partition_index));
            }
        }
    }
    let codes = match broker
        .groups
        .delete_offsets(&broker.topics, &request.group_id, &known)
    {
        Ok(codes) => codes,
        Err(code) => return error_response(&request, code),
    };
    let mut codes = known.iter().zip(codes);
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let topic = broker.topics.get(&t.name);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let exists = topic
                        .as_ref()
                        .is_some_and(|topic| topic.has_partition(p.partition_index));
                    let code = if exists {
                        codes.next().map(|(_, c)| c).unwrap_or(0)
                    } else {
                        ResponseError::UnknownTopicOrPartition.code()
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}

pub fn error_response(_request: &OffsetDeleteRequest, code: i16) -> OffsetDeleteResponse {
    OffsetDeleteResponse::default().with_error_code(code)
}
