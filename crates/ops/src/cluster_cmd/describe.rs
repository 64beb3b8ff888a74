//! `sapper cluster describe`: the cluster as its clients see it, from three public requests to
//! the bootstrap broker.
//!
//! - DescribeCluster: cluster id, active controller, brokers with their racks. Kafka lists only
//!   unfenced brokers; from v2 (KIP-1073) it can list fenced ones too, flagged, and we ask for
//!   them. A broker that holds replicas but that no response lists is shown as `absent`
//!   (fenced or down: before v2 the protocol cannot tell which).
//! - Metadata: every partition's leader, replicas, ISR, offline replicas and leader epoch, from
//!   which come the under-replicated partitions (ISR smaller than the replica set, Kafka's
//!   `UnderReplicatedPartitions`) and the offline ones (no leader, Kafka's
//!   `OfflinePartitionsCount`). A partition can be both.
//! - DescribeQuorum (`__cluster_metadata` partition 0), if the broker advertises it: the
//!   metadata quorum's leader and epoch, each voter's and observer's log end offset and its lag
//!   behind the leader's, as `kafka-metadata-quorum describe --replication` computes it.
//!
//! Broker epochs are not on the public protocol (Kafka keeps them between brokers and the
//! controller), so none is shown. Everything here but the requests is a pure function of the
//! responses, tested on hand-built ones.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::describe_quorum_request::{
    PartitionData as QuorumPartitionRequest, TopicData as QuorumTopicRequest,
};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest, DescribeQuorumResponse,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::cluster::Cluster;
use crate::error::{kafka_error_name, OpsError};
use crate::table::{or_dash, Table};
use crate::Report;

/// The topic of the KRaft metadata log, whose partition 0 DescribeQuorum describes.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// What the quorum line says when the broker does not serve DescribeQuorum.
pub const QUORUM_NOT_REPORTED: &str = "not reported by this broker";

/// A broker's state as far as the public protocol shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerState {
    /// Registered and unfenced: it serves clients.
    Alive,
    /// Registered but fenced (reported only by DescribeCluster v2+).
    Fenced,
    /// Named as a replica, but listed by neither DescribeCluster nor Metadata: fenced or down.
    Absent,
}

impl BrokerState {
    fn as_str(self) -> &'static str {
        match self {
            BrokerState::Alive => "alive",
            BrokerState::Fenced => "fenced",
            BrokerState::Absent => "absent",
        }
    }
}

/// One broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerInfo {
    pub id: i32,
    /// `None` for an absent broker.
    pub host: Option<String>,
    pub port: Option<i32>,
    pub rack: Option<String>,
    pub state: BrokerState,
    /// Partitions it leads.
    pub leaders: usize,
    /// Partitions it holds a replica of.
    pub replicas: usize,
}

/// One partition as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    /// `None`: no leader (-1), the partition is offline.
    pub leader: Option<i32>,
    /// `None` when the broker does not report it (Metadata before v7) or reports -1.
    pub leader_epoch: Option<i32>,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline_replicas: Vec<i32>,
    /// Kafka's error name when the broker answered the partition with one
    /// (`LEADER_NOT_AVAILABLE` for an offline partition, typically).
    pub error: Option<String>,
}

impl PartitionState {
    /// Fewer in-sync replicas than replicas.
    pub fn is_under_replicated(&self) -> bool {
        self.isr.len() < self.replicas.len()
    }

    /// No leader: nobody can produce to it or consume from it.
    pub fn is_offline(&self) -> bool {
        self.leader.is_none()
    }
}

/// A topic the broker answered with an error instead of partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicError {
    pub topic: String,
    pub error: String,
}

/// One voter or observer of the metadata quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuorumReplica {
    pub id: i32,
    /// Its controller listener, `host:port` (DescribeQuorum v2+, voters only).
    pub endpoint: Option<String>,
    /// `None` when the leader does not know it (-1).
    pub log_end_offset: Option<i64>,
    /// The leader's log end offset minus this one's; 0 for the leader itself.
    pub lag: Option<i64>,
    /// Milliseconds since its last fetch from the leader (v1+; `None` when unknown).
    pub last_fetch_ms_ago: Option<i64>,
    /// Milliseconds since it was last caught up with the leader (v1+; `None` when unknown).
    pub last_caught_up_ms_ago: Option<i64>,
}

/// The metadata quorum (`__cluster_metadata` partition 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quorum {
    /// `None` while there is no leader (an election is under way).
    pub leader_id: Option<i32>,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<QuorumReplica>,
    pub observers: Vec<QuorumReplica>,
}

/// A described cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterDescription {
    /// The broker asked.
    pub bootstrap: String,
    pub cluster_id: Option<String>,
    /// The active controller; `None` when the broker knows none (-1).
    pub controller_id: Option<i32>,
    /// Whether the broker reports fenced brokers (DescribeCluster v2+); if not, a fenced broker
    /// shows as `absent` when it holds replicas and not at all otherwise.
    pub fenced_reported: bool,
    pub brokers: Vec<BrokerInfo>,
    pub topic_count: usize,
    pub partition_count: usize,
    pub under_replicated: Vec<PartitionState>,
    pub offline: Vec<PartitionState>,
    pub topic_errors: Vec<TopicError>,
    /// `None` when it could not be described; `quorum_note` says why.
    pub quorum: Option<Quorum>,
    pub quorum_note: Option<String>,
}

/// `None` for Kafka's "none" id or epoch, -1 (any negative value).
fn known<T: PartialOrd + Default>(value: T) -> Option<T> {
    (value >= T::default()).then_some(value)
}

fn error_name(code: i16) -> Option<String> {
    (code != 0).then(|| kafka_error_name(code))
}

/// Every partition in `metadata`, sorted by topic and partition, and the topics that came back
/// with an error instead.
pub fn partitions_from(metadata: &MetadataResponse) -> (Vec<PartitionState>, Vec<TopicError>) {
    let mut partitions = Vec::new();
    let mut errors = Vec::new();
    for t in &metadata.topics {
        let topic = t
            .name
            .as_ref()
            .map(|n| n.0.to_string())
            .unwrap_or_else(|| t.topic_id.to_string());
        if t.error_code != 0 && t.partitions.is_empty() {
            errors.push(TopicError {
                topic,
                error: kafka_error_name(t.error_code),
            });
            continue;
        }
        for p in &t.partitions {
            partitions.push(PartitionState {
                topic: topic.clone(),
                partition: p.partition_index,
                leader: known(p.leader_id.0),
                leader_epoch: known(p.leader_epoch),
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                offline_replicas: p.offline_replicas.iter().map(|b| b.0).collect(),
                error: error_name(p.error_code),
            });
        }
    }
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    errors.sort_by(|a, b| a.topic.cmp(&b.topic));
    (partitions, errors)
}

/// The brokers of the cluster, by id: those DescribeCluster (answered at `version`) and
/// Metadata list, plus any replica holder neither lists (absent), with leader and replica
/// counts from `partitions`.
pub fn brokers_from(
    described: Option<(i16, &DescribeClusterResponse)>,
    metadata: &MetadataResponse,
    partitions: &[PartitionState],
) -> Vec<BrokerInfo> {
    let mut brokers: BTreeMap<i32, BrokerInfo> = BTreeMap::new();
    let listed = |id: i32, host: &StrBytes, port: i32, rack: Option<&StrBytes>, fenced: bool| BrokerInfo {
        id,
        host: Some(host.to_string()),
        port: Some(port),
        rack: rack.map(|r| r.to_string()),
        state: if fenced {
            BrokerState::Fenced
        } else {
            BrokerState::Alive
        },
        leaders: 0,
        replicas: 0,
    };
    // Metadata first: DescribeCluster, when there is one, is the more complete answer.
    for b in &metadata.brokers {
        brokers.insert(
            b.node_id.0,
            listed(b.node_id.0, &b.host, b.port, b.rack.as_ref(), false),
        );
    }
    if let Some((version, d)) = described {
        for b in &d.brokers {
            let fenced = version >= 2 && b.is_fenced;
            brokers.insert(
                b.broker_id.0,
                listed(b.broker_id.0, &b.host, b.port, b.rack.as_ref(), fenced),
            );
        }
    }
    for p in partitions {
        for id in p.replicas.iter().chain(p.leader.iter()) {
            brokers.entry(*id).or_insert(BrokerInfo {
                id: *id,
                host: None,
                port: None,
                rack: None,
                state: BrokerState::Absent,
                leaders: 0,
                replicas: 0,
            });
        }
    }
    for p in partitions {
        let holders: BTreeSet<i32> = p.replicas.iter().copied().collect();
        for id in holders {
            if let Some(b) = brokers.get_mut(&id) {
                b.replicas += 1;
            }
        }
        if let Some(b) = p.leader.and_then(|id| brokers.get_mut(&id)) {
            b.leaders += 1;
        }
    }
    brokers.into_values().collect()
}

/// The quorum of `__cluster_metadata` partition 0 in a DescribeQuorum response answered at
/// `version`, with lags against the leader and ages against `now_ms`; or why there is none.
pub fn quorum_from(response: &DescribeQuorumResponse, version: i16, now_ms: i64) -> Result<Quorum, String> {
    if response.error_code != 0 {
        return Err(describe_error(
            response.error_code,
            response.error_message.as_ref(),
        ));
    }
    let partition = response
        .topics
        .iter()
        .filter(|t| t.topic_name.0.as_str() == METADATA_TOPIC)
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == 0)
        .ok_or_else(|| format!("the response has no {METADATA_TOPIC} partition 0"))?;
    if partition.error_code != 0 {
        return Err(describe_error(
            partition.error_code,
            partition.error_message.as_ref(),
        ));
    }
    let leader_id = known(partition.leader_id.0);
    let leader_end = leader_id.and_then(|leader| {
        partition
            .current_voters
            .iter()
            .find(|r| r.replica_id.0 == leader)
            .and_then(|r| known(r.log_end_offset))
    });
    let endpoints: BTreeMap<i32, String> = if version >= 2 {
        response
            .nodes
            .iter()
            .filter_map(|n| {
                n.listeners
                    .first()
                    .map(|l| (n.node_id.0, format!("{}:{}", l.host, l.port)))
            })
            .collect()
    } else {
        BTreeMap::new()
    };
    let replica = |r: &kafka_protocol::messages::describe_quorum_response::ReplicaState| {
        let log_end_offset = known(r.log_end_offset);
        let ago = |timestamp: i64| {
            (version >= 1)
                .then_some(timestamp)
                .and_then(known)
                .map(|t| now_ms.saturating_sub(t).max(0))
        };
        QuorumReplica {
            id: r.replica_id.0,
            endpoint: endpoints.get(&r.replica_id.0).cloned(),
            log_end_offset,
            lag: quorum_lag(leader_end, log_end_offset),
            last_fetch_ms_ago: ago(r.last_fetch_timestamp),
            last_caught_up_ms_ago: ago(r.last_caught_up_timestamp),
        }
    };
    Ok(Quorum {
        leader_id,
        leader_epoch: partition.leader_epoch,
        high_watermark: partition.high_watermark,
        voters: partition.current_voters.iter().map(replica).collect(),
        observers: partition.observers.iter().map(replica).collect(),
    })
}

/// A replica's lag behind the quorum leader: the leader's log end offset minus its own, never
/// below 0 (a follower's end offset can briefly pass what the leader last heard). Unknown when
/// either end offset is.
pub fn quorum_lag(leader_end: Option<i64>, replica_end: Option<i64>) -> Option<i64> {
    Some(leader_end?.saturating_sub(replica_end?).max(0))
}

fn describe_error(code: i16, message: Option<&StrBytes>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!("DescribeQuorum failed: {} ({m})", kafka_error_name(code)),
        _ => format!("DescribeQuorum failed: {}", kafka_error_name(code)),
    }
}

/// Puts the pieces together: the report for `bootstrap` from its three answers.
pub fn describe(
    bootstrap: &str,
    described: Option<(i16, &DescribeClusterResponse)>,
    metadata: &MetadataResponse,
    quorum: Result<Quorum, String>,
) -> ClusterDescription {
    let (partitions, topic_errors) = partitions_from(metadata);
    let brokers = brokers_from(described, metadata, &partitions);
    let (cluster_id, controller_id) = match described {
        Some((_, d)) => (Some(d.cluster_id.to_string()), known(d.controller_id.0)),
        None => (
            metadata.cluster_id.as_ref().map(|c| c.to_string()),
            known(metadata.controller_id.0),
        ),
    };
    let topic_count = metadata.topics.len();
    let (quorum, quorum_note) = match quorum {
        Ok(q) => (Some(q), None),
        Err(note) => (None, Some(note)),
    };
    ClusterDescription {
        bootstrap: bootstrap.to_string(),
        cluster_id,
        controller_id,
        fenced_reported: described.is_some_and(|(version, _)| version >= 2),
        brokers,
        topic_count,
        partition_count: partitions.len(),
        under_replicated: partitions
            .iter()
            .filter(|p| p.is_under_replicated())
            .cloned()
            .collect(),
        offline: partitions.iter().filter(|p| p.is_offline()).cloned().collect(),
        topic_errors,
        quorum,
        quorum_note,
    }
}

fn ids(ids: &[i32]) -> String {
    if ids.is_empty() {
        return "-".into();
    }
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

fn partition_table(partitions: &[PartitionState]) -> String {
    let mut table = Table::new(&[
        "TOPIC",
        "PARTITION",
        "LEADER",
        "EPOCH",
        "REPLICAS",
        "ISR",
        "OFFLINE",
        "ERROR",
    ]);
    for p in partitions {
        table.row(vec![
            p.topic.clone(),
            p.partition.to_string(),
            or_dash(p.leader),
            or_dash(p.leader_epoch),
            ids(&p.replicas),
            ids(&p.isr),
            ids(&p.offline_replicas),
            or_dash(p.error.as_ref()),
        ]);
    }
    table.render()
}

fn ms_ago(ms: Option<i64>) -> String {
    ms.map(|ms| format!("{ms} ms ago")).unwrap_or_else(|| "-".into())
}

impl Report for ClusterDescription {
    fn text(&self) -> String {
        let mut out = format!(
            "Cluster {} (asked {}): controller {}, {} broker(s), {} topic(s), {} partition(s), {} under-replicated, {} offline\n\n",
            self.cluster_id.as_deref().unwrap_or("-"),
            self.bootstrap,
            or_dash(self.controller_id),
            self.brokers.len(),
            self.topic_count,
            self.partition_count,
            self.under_replicated.len(),
            self.offline.len(),
        );
        let mut brokers = Table::new(&["BROKER", "HOST", "PORT", "RACK", "STATE", "LEADERS", "REPLICAS"]);
        for b in &self.brokers {
            let id = if Some(b.id) == self.controller_id {
                format!("{} (controller)", b.id)
            } else {
                b.id.to_string()
            };
            brokers.row(vec![
                id,
                or_dash(b.host.as_ref()),
                or_dash(b.port),
                or_dash(b.rack.as_ref()),
                b.state.as_str().to_string(),
                b.leaders.to_string(),
                b.replicas.to_string(),
            ]);
        }
        out.push_str(&brokers.render());
        if !self.fenced_reported {
            out.push_str("(this broker lists only unfenced brokers: a fenced or stopped one shows as absent if it holds replicas)\n");
        }
        out.push('\n');
        match (&self.quorum, &self.quorum_note) {
            (Some(q), _) => {
                out.push_str(&format!(
                    "Quorum ({METADATA_TOPIC}-0): leader {}, epoch {}, high watermark {}\n",
                    or_dash(q.leader_id),
                    q.leader_epoch,
                    q.high_watermark
                ));
                let mut table = Table::new(&[
                    "NODE",
                    "ROLE",
                    "ENDPOINT",
                    "LOG END",
                    "LAG",
                    "LAST FETCH",
                    "LAST CAUGHT UP",
                ]);
                let role = |r: &QuorumReplica, voter: bool| {
                    if voter && Some(r.id) == q.leader_id {
                        "leader"
                    } else if voter {
                        "follower"
                    } else {
                        "observer"
                    }
                };
                let voters = q.voters.iter().map(|r| (r, true));
                for (r, voter) in voters.chain(q.observers.iter().map(|r| (r, false))) {
                    table.row(vec![
                        r.id.to_string(),
                        role(r, voter).to_string(),
                        or_dash(r.endpoint.as_ref()),
                        or_dash(r.log_end_offset),
                        or_dash(r.lag),
                        ms_ago(r.last_fetch_ms_ago),
                        ms_ago(r.last_caught_up_ms_ago),
                    ]);
                }
                out.push_str(&table.render());
            }
            (None, note) => {
                out.push_str(&format!(
                    "quorum: {}\n",
                    note.as_deref().unwrap_or(QUORUM_NOT_REPORTED)
                ));
            }
        }
        out.push('\n');
        if self.under_replicated.is_empty() {
            out.push_str("Under-replicated partitions: none\n");
        } else {
            out.push_str(&format!(
                "Under-replicated partitions ({}):\n",
                self.under_replicated.len()
            ));
            out.push_str(&partition_table(&self.under_replicated));
        }
        if self.offline.is_empty() {
            out.push_str("Offline partitions: none\n");
        } else {
            out.push_str(&format!("Offline partitions ({}):\n", self.offline.len()));
            out.push_str(&partition_table(&self.offline));
        }
        if !self.topic_errors.is_empty() {
            let mut table = Table::new(&["TOPIC", "ERROR"]);
            for e in &self.topic_errors {
                table.row(vec![e.topic.clone(), e.error.clone()]);
            }
            out.push_str("Topics answered with an error:\n");
            out.push_str(&table.render());
        }
        out
    }
}

/// Asks the bootstrap broker and builds the report.
pub async fn run(cluster: &mut Cluster, now_ms: i64) -> Result<ClusterDescription, OpsError> {
    let bootstrap = cluster.bootstrap().to_string();
    let described = if cluster
        .api_range(&bootstrap, ApiKey::DescribeCluster)
        .await?
        .is_some()
    {
        let (version, response) = cluster
            .call(&bootstrap, 0, 2, |version| {
                let request = DescribeClusterRequest::default();
                if version >= 2 {
                    request.with_include_fenced_brokers(true)
                } else {
                    request
                }
            })
            .await?;
        if response.error_code != 0 {
            return Err(OpsError::Kafka {
                api: "DescribeCluster".into(),
                code: response.error_code,
            });
        }
        Some((version, response))
    } else {
        None
    };
    let metadata = cluster.metadata(None).await?;
    let quorum = if cluster
        .api_range(&bootstrap, ApiKey::DescribeQuorum)
        .await?
        .is_some()
    {
        let (version, response) = cluster
            .call(&bootstrap, 0, 2, |_| {
                DescribeQuorumRequest::default().with_topics(vec![QuorumTopicRequest::default()
                    .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
                    .with_partitions(vec![QuorumPartitionRequest::default().with_partition_index(0)])])
            })
            .await?;
        quorum_from(&response, version, now_ms)
    } else {
        Err(QUORUM_NOT_REPORTED.to_string())
    };
    Ok(describe(
        &bootstrap,
        described.as_ref().map(|(v, r)| (*v, r)),
        &metadata,
        quorum,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    use kafka_protocol::messages::describe_quorum_response::{
        Listener, Node, PartitionData, ReplicaState, TopicData,
    };
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::BrokerId;

    fn broker(id: i32, rack: Option<&str>) -> MetadataResponseBroker {
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(id))
            .with_host(StrBytes::from_static_str("127.0.0.1"))
            .with_port(9091 + id)
            .with_rack(rack.map(|r| StrBytes::from_string(r.to_string())))
    }

    fn partition(index: i32, leader: i32, replicas: &[i32], isr: &[i32]) -> MetadataResponsePartition {
        MetadataResponsePartition::default()
            .with_partition_index(index)
            .with_leader_id(BrokerId(leader))
            .with_leader_epoch(if leader >= 0 { 4 } else { -1 })
            .with_replica_nodes(replicas.iter().map(|b| BrokerId(*b)).collect())
            .with_isr_nodes(isr.iter().map(|b| BrokerId(*b)).collect())
    }

    fn topic(name: &str, partitions: Vec<MetadataResponsePartition>) -> MetadataResponseTopic {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
            .with_partitions(partitions)
    }

    /// Three brokers; broker 3 is gone: `orders` 1 lost it from the ISR, `orders` 2 had only
    /// it in the ISR and is offline.
    fn degraded_metadata() -> MetadataResponse {
        MetadataResponse::default()
            .with_cluster_id(Some(StrBytes::from_static_str("c-1")))
            .with_controller_id(BrokerId(1))
            .with_brokers(vec![broker(1, Some("a")), broker(2, Some("b"))])
            .with_topics(vec![
                topic(
                    "orders",
                    vec![
                        partition(2, -1, &[3, 1, 2], &[3]).with_error_code(5),
                        partition(0, 1, &[1, 2, 3], &[1, 2, 3]),
                        partition(1, 2, &[2, 3, 1], &[2, 1]).with_offline_replicas(vec![BrokerId(3)]),
                    ],
                ),
                topic("a-topic", vec![partition(0, 2, &[2], &[2])]),
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("gone"))))
                    .with_error_code(3),
            ])
    }

    #[test]
    fn under_replicated_and_offline_partitions_are_found() {
        let (partitions, errors) = partitions_from(&degraded_metadata());
        let names: Vec<(String, i32)> = partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition))
            .collect();
        assert_eq!(
            names,
            vec![
                ("a-topic".into(), 0),
                ("orders".into(), 0),
                ("orders".into(), 1),
                ("orders".into(), 2)
            ]
        );
        let under: Vec<i32> = partitions
            .iter()
            .filter(|p| p.is_under_replicated())
            .map(|p| p.partition)
            .collect();
        assert_eq!(under, vec![1, 2]);
        let offline: Vec<&PartitionState> = partitions.iter().filter(|p| p.is_offline()).collect();
        assert_eq!(offline.len(), 1);
        assert_eq!(offline[0].partition, 2);
        assert_eq!(offline[0].leader_epoch, None);
        assert_eq!(offline[0].error.as_deref(), Some("LEADER_NOT_AVAILABLE"));
        assert_eq!(partitions[2].offline_replicas, vec![3]);
        assert_eq!(
            errors,
            vec![TopicError {
                topic: "gone".into(),
                error: "UNKNOWN_TOPIC_OR_PARTITION".into()
            }]
        );
    }

    #[test]
    fn a_healthy_single_broker_has_nothing_to_report() {
        let metadata = MetadataResponse::default()
            .with_brokers(vec![broker(1, None)])
            .with_controller_id(BrokerId(1))
            .with_topics(vec![topic(
                "t",
                vec![partition(0, 1, &[1], &[1]), partition(1, 1, &[1], &[1])],
            )]);
        let d = describe("127.0.0.1:9092", None, &metadata, Err(QUORUM_NOT_REPORTED.into()));
        assert!(d.under_replicated.is_empty() && d.offline.is_empty());
        assert_eq!(d.brokers.len(), 1);
        assert_eq!((d.brokers[0].leaders, d.brokers[0].replicas), (2, 2));
        assert_eq!(d.brokers[0].state, BrokerState::Alive);
        let text = d.text();
        assert!(text.contains("quorum: not reported by this broker"), "{text}");
        assert!(text.contains("Under-replicated partitions: none"), "{text}");
        assert!(text.contains("Offline partitions: none"), "{text}");
    }

    #[test]
    fn brokers_merge_describe_cluster_metadata_and_replica_holders() {
        let metadata = degraded_metadata();
        let (partitions, _) = partitions_from(&metadata);
        // Before v2 DescribeCluster lists only unfenced brokers: 3 is absent.
        let described = DescribeClusterResponse::default()
            .with_cluster_id(StrBytes::from_static_str("c-1"))
            .with_controller_id(BrokerId(2))
            .with_brokers(vec![DescribeClusterBroker::default()
                .with_broker_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("10.0.0.1"))
                .with_port(9092)
                .with_rack(Some(StrBytes::from_static_str("a")))]);
        let brokers = brokers_from(Some((1, &described)), &metadata, &partitions);
        let states: Vec<(i32, BrokerState, usize, usize)> = brokers
            .iter()
            .map(|b| (b.id, b.state, b.leaders, b.replicas))
            .collect();
        assert_eq!(
            states,
            vec![
                (1, BrokerState::Alive, 1, 3),
                (2, BrokerState::Alive, 2, 4),
                (3, BrokerState::Absent, 0, 3)
            ]
        );
        assert_eq!(
            brokers[0].host.as_deref(),
            Some("10.0.0.1"),
            "DescribeCluster wins"
        );
        assert_eq!(brokers[1].rack.as_deref(), Some("b"));
        assert_eq!(brokers[2].host, None);

        // v2 (KIP-1073) lists fenced brokers, flagged; a v1 answer's flag is ignored.
        let fenced = described
            .clone()
            .with_brokers(vec![DescribeClusterBroker::default()
                .with_broker_id(BrokerId(3))
                .with_host(StrBytes::from_static_str("10.0.0.3"))
                .with_port(9092)
                .with_is_fenced(true)]);
        let v2 = brokers_from(Some((2, &fenced)), &metadata, &partitions);
        assert_eq!(v2[2].state, BrokerState::Fenced);
        let v1 = brokers_from(Some((1, &fenced)), &metadata, &partitions);
        assert_eq!(v1[2].state, BrokerState::Alive);

        let d = describe("b:9092", Some((2, &fenced)), &metadata, Err("x".into()));
        assert_eq!(d.controller_id, Some(2));
        assert!(d.fenced_reported);
        assert_eq!(d.under_replicated.len(), 2);
        assert_eq!(d.offline.len(), 1);
        let text = d.text();
        assert!(text.contains("2 under-replicated, 1 offline"), "{text}");
        assert!(text.contains("Offline partitions (1):"), "{text}");
        assert!(
            text.contains("orders  2          -       -      3,1,2     3    -        LEADER_NOT_AVAILABLE"),
            "{text}"
        );
    }

    fn replica(id: i32, end: i64, fetch: i64, caught_up: i64) -> ReplicaState {
        ReplicaState::default()
            .with_replica_id(BrokerId(id))
            .with_log_end_offset(end)
            .with_last_fetch_timestamp(fetch)
            .with_last_caught_up_timestamp(caught_up)
    }

    fn quorum_response(
        leader: i32,
        voters: Vec<ReplicaState>,
        observers: Vec<ReplicaState>,
    ) -> DescribeQuorumResponse {
        DescribeQuorumResponse::default()
            .with_topics(vec![TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
                .with_partitions(vec![PartitionData::default()
                    .with_partition_index(0)
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(7)
                    .with_high_watermark(95)
                    .with_current_voters(voters)
                    .with_observers(observers)])])
            .with_nodes(vec![Node::default().with_node_id(BrokerId(2)).with_listeners(
                vec![Listener::default()
                    .with_name(StrBytes::from_static_str("CONTROLLER"))
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(19092)],
            )])
    }

    #[test]
    fn quorum_lag_is_measured_against_the_leaders_log_end() {
        let response = quorum_response(
            1,
            vec![
                replica(1, 100, -1, -1),
                replica(2, 90, 9_900, 9_500),
                replica(3, -1, -1, -1),
            ],
            vec![replica(4, 100, 9_990, 9_990)],
        );
        let q = quorum_from(&response, 2, 10_000).unwrap();
        assert_eq!((q.leader_id, q.leader_epoch, q.high_watermark), (Some(1), 7, 95));
        let lags: Vec<(i32, Option<i64>)> = q.voters.iter().map(|r| (r.id, r.lag)).collect();
        assert_eq!(lags, vec![(1, Some(0)), (2, Some(10)), (3, None)]);
        assert_eq!(q.voters[1].endpoint.as_deref(), Some("127.0.0.1:19092"));
        assert_eq!(q.voters[1].last_fetch_ms_ago, Some(100));
        assert_eq!(q.voters[1].last_caught_up_ms_ago, Some(500));
        assert_eq!(q.voters[0].last_fetch_ms_ago, None);
        assert_eq!(q.observers[0].lag, Some(0));

        // v0 has no timestamps and no endpoints, whatever the struct holds.
        let v0 = quorum_from(&response, 0, 10_000).unwrap();
        assert_eq!(v0.voters[1].last_fetch_ms_ago, None);
        assert_eq!(v0.voters[1].endpoint, None);

        // Without a leader nobody's lag is known.
        let leaderless =
            quorum_from(&quorum_response(-1, vec![replica(1, 100, -1, -1)], vec![]), 2, 0).unwrap();
        assert_eq!(leaderless.leader_id, None);
        assert_eq!(leaderless.voters[0].lag, None);

        assert_eq!(quorum_lag(Some(10), Some(12)), Some(0));
        assert_eq!(quorum_lag(None, Some(12)), None);
    }

    #[test]
    fn quorum_errors_become_the_quorum_note() {
        let err = DescribeQuorumResponse::default().with_error_code(41);
        assert_eq!(
            quorum_from(&err, 2, 0).unwrap_err(),
            "DescribeQuorum failed: NOT_CONTROLLER"
        );
        let empty = DescribeQuorumResponse::default();
        assert!(quorum_from(&empty, 2, 0)
            .unwrap_err()
            .contains("__cluster_metadata partition 0"));
    }

    #[test]
    fn quorum_text_lists_voters_then_observers() {
        let response = quorum_response(
            1,
            vec![replica(1, 100, -1, -1), replica(2, 90, -1, -1)],
            vec![replica(4, 99, -1, -1)],
        );
        let q = quorum_from(&response, 2, 0).unwrap();
        let metadata = MetadataResponse::default().with_brokers(vec![broker(1, None)]);
        let text = describe("x:1", None, &metadata, Ok(q)).text();
        assert!(
            text.contains("Quorum (__cluster_metadata-0): leader 1, epoch 7, high watermark 95"),
            "{text}"
        );
        assert!(
            text.contains(
                "NODE  ROLE      ENDPOINT         LOG END  LAG  LAST FETCH  LAST CAUGHT UP\n\
                 1     leader    -                100      0    -           -\n\
                 2     follower  127.0.0.1:19092  90       10   -           -\n\
                 4     observer  -                99       1    -           -\n"
            ),
            "{text}"
        );
    }
}
