//! Produce: validate each partition's batches, append them, answer with the base offset.
//!
//! The producer's bytes are appended verbatim except for the fields Kafka itself rewrites
//! (base offset, partition leader epoch, and for LogAppendTime topics the timestamp).
//! Only the partition's leader appends (NOT_LEADER_OR_FOLLOWER elsewhere), stamping its
//! leader epoch.
//!
//! acks=0 and acks=1 are answered once the leader appended. acks=all is refused up front with
//! NOT_ENOUGH_REPLICAS when the ISR is smaller than the topic's `min.insync.replicas`; after
//! the append it waits in the [`crate::replica::purgatory`] until the high watermark passes
//! the appended records (every ISR member has them), answering
//! NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrinks below the minimum meanwhile,
//! NOT_LEADER_OR_FOLLOWER if leadership moves, REQUEST_TIMED_OUT at the request's timeout.
//! All partitions of a request wait together. A standalone (single-node) partition commits
//! at the append, so it never waits.
//!
//! From v10 on (KIP-951), a partition answered NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH
//! names its current leader and epoch (`current_leader`), and the response carries the
//! endpoints of the leaders it names (`node_endpoints`): a client moves to the new leader at
//! once instead of waiting for a metadata refresh.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use sapper_log::batch::BatchIter;
use sapper_log::{AppendOptions, AppendOutcome};
use tokio::time::Instant;

use super::str_bytes;
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::cluster::BrokerEndpoint;
use crate::partition::{AckWait, Partition};
use crate::replica::purgatory::AckOutcome;
use crate::topic_config::TimestampType;
use crate::topics::Topic;

pub async fn handle(broker: &Broker, request: ProduceRequest, version: i16) -> ProduceResponse {
    if !matches!(request.acks, -1..=1) {
        return error_response(&request, ResponseError::InvalidRequiredAcks.code());
    }
    if request.transactional_id.is_some() {
        return error_response(&request, ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0));
    let deadline = Instant::now() + timeout;
    let mut scratch = Vec::new();
    // acks=all partitions still waiting for replication: (topic, partition) positions.
    let mut waiting = Vec::new();
    let mut waits = Vec::new();
    let mut responses: Vec<TopicProduceResponse> = Vec::with_capacity(request.topic_data.len());
    for (ti, t) in request.topic_data.iter().enumerate() {
        let topic = broker.topics.get(&t.name);
        let mut partitions = Vec::with_capacity(t.partition_data.len());
        for (pi, p) in t.partition_data.iter().enumerate() {
            let response = match broker.cluster.led(topic.as_ref(), &t.name, p.index) {
                // `led` only answers with a topic it was given.
                Ok((partition, epoch)) => match topic.as_ref() {
                    Some(topic) => {
                        let append = Append {
                            topic,
                            partition,
                            leader_epoch: epoch,
                            acks: request.acks,
                            version,
                        };
                        let (response, wait) = append.run(p, &mut scratch);
                        if let Some(required_offset) = wait {
                            let source = Arc::new(AckWait {
                                partition: partition.clone(),
                                min_insync_replicas: append.min_insync_replicas(),
                            });
                            waits.push(
                                broker
                                    .purgatory
                                    .register(source, required_offset, epoch, deadline),
                            );
                            waiting.push((ti, pi));
                        }
                        response
                    }
                    None => partition_error(p.index, ResponseError::UnknownTopicOrPartition.code()),
                },
                Err(code) => partition_error(p.index, code),
            };
            partitions.push(response);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_partition_responses(partitions),
        );
    }
    if !waits.is_empty() {
        let outcomes = futures::future::join_all(waits).await;
        for ((ti, pi), outcome) in waiting.into_iter().zip(outcomes) {
            if outcome == AckOutcome::Acknowledged {
                continue;
            }
            if let Some(r) = responses
                .get_mut(ti)
                .and_then(|t| t.partition_responses.get_mut(pi))
            {
                *r = partition_error(r.index, outcome.error_code());
            }
        }
    }
    let mut response = ProduceResponse::default().with_responses(responses);
    if version >= 10 {
        name_current_leaders(
            &mut response,
            |topic, partition| broker.cluster.leader_of(broker, topic, partition),
            || broker.cluster.brokers(broker),
        );
    }
    response
}

/// KIP-951 (Produce v10+): each partition answered NOT_LEADER_OR_FOLLOWER or
/// FENCED_LEADER_EPOCH gets the leader and epoch `leader_of` knows, and the response the
/// endpoints (among `brokers`) of the leaders so named. Partitions without a known leader are
/// left as they are.
fn name_current_leaders(
    response: &mut ProduceResponse,
    leader_of: impl Fn(&str, i32) -> Option<(i32, i32)>,
    brokers: impl FnOnce() -> Vec<BrokerEndpoint>,
) {
    let moved = [
        ResponseError::NotLeaderOrFollower.code(),
        ResponseError::FencedLeaderEpoch.code(),
    ];
    let mut named = std::collections::BTreeSet::new();
    for topic in &mut response.responses {
        for p in &mut topic.partition_responses {
            if !moved.contains(&p.error_code) {
                continue;
            }
            let Some((leader, epoch)) = leader_of(topic.name.0.as_str(), p.index).filter(|(l, _)| *l >= 0)
            else {
                continue;
            };
            p.current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(epoch);
            named.insert(leader);
        }
    }
    if named.is_empty() {
        return;
    }
    response.node_endpoints = brokers()
        .into_iter()
        .filter(|b| named.contains(&b.id))
        .map(|b| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(str_bytes))
        })
        .collect();
}

/// One partition's append as its leader.
struct Append<'a> {
    topic: &'a Topic,
    partition: &'a Arc<Partition>,
    leader_epoch: i32,
    acks: i16,
    version: i16,
}

impl Append<'_> {
    fn min_insync_replicas(&self) -> usize {
        usize::try_from(self.topic.config.min_insync_replicas).unwrap_or(1)
    }

    /// Validates and appends; answers the response and, for acks=all records not yet
    /// replicated, the offset the high watermark must reach.
    fn run(
        &self,
        data: &PartitionProduceData,
        scratch: &mut Vec<u8>,
    ) -> (PartitionProduceResponse, Option<i64>) {
        let version = self.version;
        // log_start_offset exists from v5 on; the codec refuses a set field an older version lacks.
        let log_start = |offset: i64| if version >= 5 { offset } else { -1 };
        let records = match &data.records {
            Some(r) if !r.is_empty() => r,
            _ => {
                return (
                    partition_error(data.index, ResponseError::CorruptMessage.code()),
                    None,
                )
            }
        };
        // Kafka checks each batch against max.message.bytes before anything else.
        let max = usize::try_from(self.topic.config.max_message_bytes).unwrap_or(0);
        for batch in BatchIter::new(records) {
            match batch {
                Ok(b) if b.size() > max => {
                    return (
                        partition_error(data.index, ResponseError::MessageTooLarge.code()),
                        None,
                    );
                }
                Ok(_) => {}
                Err(_) => {
                    return (
                        partition_error(data.index, ResponseError::CorruptMessage.code()),
                        None,
                    )
                }
            }
        }
        let min_insync = self.min_insync_replicas();
        if let Err(e) = self.partition.check_min_isr(self.acks, min_insync) {
            return (partition_error(data.index, e.code()), None);
        }
        scratch.clear();
        scratch.extend_from_slice(records);
        let log_append_time = self.topic.config.timestamp_type == TimestampType::LogAppendTime;
        let options = AppendOptions {
            leader_epoch: self.leader_epoch,
            now_ms: now_ms(),
            log_append_time,
        };
        let (response, last_offset) = match self.partition.append(scratch, &options) {
            Ok(AppendOutcome::Appended(info)) => (
                PartitionProduceResponse::default()
                    .with_index(data.index)
                    .with_base_offset(info.base_offset)
                    .with_log_append_time_ms(info.log_append_time)
                    .with_log_start_offset(log_start(info.log_start_offset)),
                info.last_offset,
            ),
            Ok(AppendOutcome::Duplicate {
                base_offset,
                last_offset,
            }) => (
                PartitionProduceResponse::default()
                    .with_index(data.index)
                    .with_base_offset(base_offset)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(log_start(self.partition.offsets().log_start_offset)),
                last_offset,
            ),
            Err(e) => {
                tracing::debug!(topic = %self.topic.name, partition = data.index, error = %e, "produce rejected");
                return (partition_error(data.index, e.code()), None);
            }
        };
        if self.acks != -1 {
            return (response, None);
        }
        let required = last_offset.saturating_add(1);
        let state = self.partition.ack_state(min_insync);
        let wait = match AckOutcome::decide(&state, required, self.leader_epoch) {
            Some(AckOutcome::Acknowledged) => None,
            Some(outcome) => return (partition_error(data.index, outcome.error_code()), None),
            None => Some(required),
        };
        (response, wait)
    }
}

fn partition_error(index: i32, code: i16) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

pub fn error_response(request: &ProduceRequest, code: i16) -> ProduceResponse {
    ProduceResponse::default().with_responses(
        request
            .topic_data
            .iter()
            .map(|t| {
                TopicProduceResponse::default()
                    .with_name(t.name.clone())
                    .with_partition_responses(
                        t.partition_data
                            .iter()
                            .map(|p| partition_error(p.index, code))
                            .collect(),
                    )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests;
