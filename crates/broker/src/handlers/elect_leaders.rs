//! ElectLeaders (KIP-183 preferred, KIP-460 unclean): `kafka-leader-election.sh` and
//! `Admin.electLeaders` ask for a leader election on some partitions, or on all of them when
//! `topic_partitions` is null.
//!
//! A cluster member resolves topic names against its metadata image and forwards the election
//! to the active controller (`ControllerRequest::ElectLeaders` through
//! [`sapper_meta::lifecycle::ControllerClient`]), which decides on the image it leads with and
//! commits the new leaders before answering; each partition's
//! [`sapper_meta::controller::api::ElectionOutcome`] becomes Kafka's code: NONE (elected),
//! ELECTION_NOT_NEEDED (84), PREFERRED_LEADER_NOT_AVAILABLE (80),
//! ELIGIBLE_LEADERS_NOT_AVAILABLE (83), UNKNOWN_TOPIC_OR_PARTITION (3). Partitions of topics
//! this broker does not know are answered UNKNOWN_TOPIC_OR_PARTITION without asking.
//!
//! As Kafka's controller does, an election over all partitions (null) lists only the
//! partitions where something happened or failed: those that already have the wanted leader
//! (ELECTION_NOT_NEEDED) are left out. When the controller cannot be reached (or refuses), every
//! asked partition carries its error, and so does the top-level error code (v1+).
//!
//! A single-node broker leads every partition it has, which is its only replica: the
//! preferred leader already leads, so every existing partition is ELECTION_NOT_NEEDED.
//!
//! `election_type` exists from v1; v0 requests are preferred elections (the field decodes as
//! 0). Types other than 0 (preferred) and 1 (unclean) are INVALID_REQUEST.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use sapper_meta::controller::api::{Election, ElectionOutcome};
use uuid::Uuid;

use super::str_bytes;
use crate::broker::Broker;
use crate::cluster::ClusterView;

/// Kafka's `ElectionType`: 0 preferred, 1 unclean.
const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

/// One answered partition: (code, message).
type Outcome = (i16, Option<String>);
/// Answers by topic name, then partition.
type Answers = BTreeMap<String, BTreeMap<i32, Outcome>>;

pub async fn handle(broker: &Broker, request: ElectLeadersRequest, version: i16) -> ElectLeadersResponse {
    let preferred = match request.election_type {
        PREFERRED => true,
        UNCLEAN => false,
        other => {
            let code = ResponseError::InvalidRequest.code();
            let message = format!("unknown election type {other}");
            return refuse_all(&request, code, &message, version);
        }
    };
    match &broker.cluster {
        ClusterView::Single => single_node(broker, &request),
        ClusterView::Cluster(node) => {
            let mut answers = Answers::new();
            let mut known: BTreeMap<Uuid, String> = BTreeMap::new();
            let asked: Option<Vec<(Uuid, i32)>> = request.topic_partitions.as_ref().map(|topics| {
                let mut asked = Vec::new();
                for t in topics {
                    let name = t.topic.0.as_str();
                    match broker.cluster.topic(broker, name) {
                        Some(view) => {
                            known.insert(view.id, name.to_string());
                            asked.extend(t.partitions.iter().map(|p| (view.id, *p)));
                        }
                        None => {
                            let answers = answers.entry(name.to_string()).or_default();
                            for p in &t.partitions {
                                answers.insert(*p, unknown_partition());
                            }
                        }
                    }
                }
                asked
            });
            let everything = asked.is_none();
            if asked.as_ref().is_some_and(Vec::is_empty) {
                return response(answers, 0, version);
            }
            match node.client().elect_leaders(preferred, asked.clone()).await {
                Ok(elections) => {
                    for e in elections {
                        let Some(name) = topic_name(broker, &known, e.topic_id) else {
                            continue;
                        };
                        if everything && e.outcome == ElectionOutcome::NotNeeded {
                            continue;
                        }
                        answers
                            .entry(name)
                            .or_default()
                            .insert(e.partition, election_outcome(&e, preferred));
                    }
                    response(answers, 0, version)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "ElectLeaders: the controller did not elect");
                    let code = e.kafka_code();
                    for (topic_id, partition) in asked.unwrap_or_default() {
                        if let Some(name) = known.get(&topic_id) {
                            answers
                                .entry(name.clone())
                                .or_default()
                                .insert(partition, (code, Some(e.to_string())));
                        }
                    }
                    response(answers, code, version)
                }
            }
        }
    }
}

pub fn error_response(request: &ElectLeadersRequest, code: i16) -> ElectLeadersResponse {
    // Built for the version that was refused, which may be any: no top-level code (v1+ only).
    refuse_all(request, code, "", 0)
}

/// Every asked partition with `code`, and `code` at the top level from v1.
fn refuse_all(request: &ElectLeadersRequest, code: i16, message: &str, version: i16) -> ElectLeadersResponse {
    let message = (!message.is_empty()).then(|| message.to_string());
    let mut answers = Answers::new();
    for t in request.topic_partitions.iter().flatten() {
        let answers = answers.entry(t.topic.0.to_string()).or_default();
        for p in &t.partitions {
            answers.insert(*p, (code, message.clone()));
        }
    }
    response(answers, code, version)
}

/// The single-node broker: each existing partition already has its preferred (and only)
/// replica as leader.
fn single_node(broker: &Broker, request: &ElectLeadersRequest) -> ElectLeadersResponse {
    let Some(topics) = &request.topic_partitions else {
        // All partitions: none needs an election, and those are not listed.
        return response(Answers::new(), 0, 0);
    };
    let mut answers = Answers::new();
    for t in topics {
        let name = t.topic.0.as_str();
        let view = broker.cluster.topic(broker, name);
        let answers = answers.entry(name.to_string()).or_default();
        for p in &t.partitions {
            let exists = view
                .as_ref()
                .is_some_and(|v| v.partitions.iter().any(|x| x.index == *p));
            let outcome = if exists {
                (
                    ElectionOutcome::NotNeeded.kafka_code(),
                    Some(not_needed_message(true)),
                )
            } else {
                unknown_partition()
            };
            answers.insert(*p, outcome);
        }
    }
    response(answers, 0, 0)
}

fn topic_name(broker: &Broker, known: &BTreeMap<Uuid, String>, id: Uuid) -> Option<String> {
    known
        .get(&id)
        .cloned()
        .or_else(|| broker.cluster.topic_by_id(broker, id).map(|t| t.name))
}

fn unknown_partition() -> Outcome {
    (
        ResponseError::UnknownTopicOrPartition.code(),
        Some("this server does not host this topic-partition".to_string()),
    )
}

fn not_needed_message(preferred: bool) -> String {
    if preferred {
        "the preferred replica is already the leader".to_string()
    } else {
        "the partition already has a leader".to_string()
    }
}

/// A controller outcome as Kafka's (code, message).
fn election_outcome(e: &Election, preferred: bool) -> Outcome {
    let message = match e.outcome {
        ElectionOutcome::Elected => None,
        ElectionOutcome::NotNeeded => Some(not_needed_message(preferred)),
        ElectionOutcome::PreferredNotAvailable => {
            Some("the preferred replica is not live and in sync".to_string())
        }
        ElectionOutcome::EligibleNotAvailable => Some("no replica is live".to_string()),
        ElectionOutcome::UnknownPartition => return unknown_partition(),
    };
    (e.outcome.kafka_code(), message)
}

/// The response at `version`: `top_level` only where the field exists (v1+).
fn response(answers: Answers, top_level: i16, version: i16) -> ElectLeadersResponse {
    let results = answers
        .into_iter()
        .map(|(topic, partitions)| {
            ReplicaElectionResult::default()
                .with_topic(TopicName(str_bytes(topic)))
                .with_partition_result(
                    partitions
                        .into_iter()
                        .map(|(partition, (code, message))| {
                            PartitionResult::default()
                                .with_partition_id(partition)
                                .with_error_code(code)
                                .with_error_message(message.map(str_bytes))
                        })
                        .collect(),
                )
        })
        .collect();
    ElectLeadersResponse::default()
        .with_error_code(if version >= 1 { top_level } else { 0 })
        .with_replica_election_results(results)
}

#[cfg(test)]
mod tests;
