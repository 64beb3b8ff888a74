//! `sapper group describe GROUP`: the group's state and members (DescribeGroups, with each
//! consumer's assignment decoded from the consumer protocol bytes), and per partition the
//! committed offset (OffsetFetch), the log end offset (ListOffsets latest), the lag between
//! them and the member that owns it.
//!
//! DescribeGroups (v0-5) carries no generation id, so none is shown.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, Bytes};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, DescribeGroupsRequest, GroupId, OffsetFetchRequest,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde::Serialize;

use crate::cluster::Cluster;
use crate::error::OpsError;
use crate::offsets::{self, TopicPartition, LATEST};
use crate::table::{or_dash, Table};
use crate::Report;

/// The protocol type of Kafka consumers, whose assignments this command can read.
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// A topic partition in JSON.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Assigned {
    pub topic: String,
    pub partition: i32,
}

/// One member of the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Decoded for protocol type `consumer` only; empty before the first assignment.
    pub assignment: Vec<Assigned>,
}

/// One partition the group commits to or is assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: Option<i64>,
    pub log_end_offset: Option<i64>,
    pub lag: Option<i64>,
    /// The member assigned the partition, if any.
    pub member_id: Option<String>,
}

/// A described group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    /// The assignor the members agreed on (`range`, `cooperative-sticky`, ...).
    pub protocol: String,
    pub members: Vec<Member>,
    pub partitions: Vec<PartitionLag>,
}

/// Lag as Kafka's tools compute it: log end offset minus committed offset, unknown when either
/// is. Not clamped: a negative lag means the log was truncated below the commit.
pub fn lag(committed: Option<i64>, log_end: Option<i64>) -> Option<i64> {
    Some(log_end?.saturating_sub(committed?))
}

/// The partitions in consumer-protocol assignment bytes (an `i16` version, then
/// ConsumerProtocolAssignment at that version), sorted. Empty bytes: no assignment yet.
pub fn decode_assignment(bytes: &Bytes) -> Result<Vec<Assigned>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut buf = bytes.clone();
    let version = buf.try_get_i16().map_err(|_| "truncated version".to_string())?;
    if version < 0 {
        return Err(format!("negative version {version}"));
    }
    // Newer versions only append fields, so the highest version we know reads them.
    let assignment =
        ConsumerProtocolAssignment::decode(&mut buf, version.min(3)).map_err(|e| e.to_string())?;
    let mut out: Vec<Assigned> = assignment
        .assigned_partitions
        .iter()
        .flat_map(|tp| {
            tp.partitions.iter().map(|p| Assigned {
                topic: tp.topic.0.to_string(),
                partition: *p,
            })
        })
        .collect();
    out.sort();
    Ok(out)
}

impl Report for GroupDescription {
    fn text(&self) -> String {
        let mut out = format!(
            "Group {} is {} (protocol type {}, protocol {}), {} member(s)\n\n",
            self.group_id,
            self.state,
            or_empty_dash(&self.protocol_type),
            or_empty_dash(&self.protocol),
            self.members.len()
        );
        let mut members = Table::new(&["MEMBER", "INSTANCE", "CLIENT", "HOST", "PARTITIONS"]);
        for m in &self.members {
            members.row(vec![
                m.member_id.clone(),
                or_dash(m.group_instance_id.as_ref()),
                m.client_id.clone(),
                m.client_host.clone(),
                compact_partitions(&m.assignment),
            ]);
        }
        if !members.is_empty() {
            out.push_str(&members.render());
            out.push('\n');
        }
        let mut partitions = Table::new(&["TOPIC", "PARTITION", "COMMITTED", "LOG END", "LAG", "MEMBER"]);
        for p in &self.partitions {
            partitions.row(vec![
                p.topic.clone(),
                p.partition.to_string(),
                or_dash(p.committed_offset),
                or_dash(p.log_end_offset),
                or_dash(p.lag),
                or_dash(p.member_id.as_ref()),
            ]);
        }
        out.push_str(&partitions.render());
        out
    }
}

fn or_empty_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// `orders[0,1] payments[3]`, or `-` for none.
fn compact_partitions(assigned: &[Assigned]) -> String {
    let mut by_topic: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for a in assigned {
        by_topic
            .entry(&a.topic)
            .or_default()
            .push(a.partition.to_string());
    }
    if by_topic.is_empty() {
        return "-".into();
    }
    by_topic
        .iter()
        .map(|(t, ps)| format!("{t}[{}]", ps.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn run(cluster: &mut Cluster, group: &str) -> Result<GroupDescription, OpsError> {
    let coordinator = cluster.coordinator(group).await?;
    let (_, described) = cluster
        .call(&coordinator, 0, 5, |_| {
            DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))])
        })
        .await?;
    let Some(d) = described
        .groups
        .into_iter()
        .find(|g| g.group_id.0.as_str() == group)
    else {
        return Err(OpsError::GroupNotFound(group.to_string()));
    };
    if d.error_code == ResponseError::GroupIdNotFound.code() || d.group_state.as_str() == "Dead" {
        return Err(OpsError::GroupNotFound(group.to_string()));
    }
    if d.error_code != 0 {
        return Err(OpsError::Kafka {
            api: "DescribeGroups".into(),
            code: d.error_code,
        });
    }
    let protocol_type = d.protocol_type.to_string();
    let members: Vec<Member> = d
        .members
        .iter()
        .map(|m| Member {
            member_id: m.member_id.to_string(),
            group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id: m.client_id.to_string(),
            client_host: m.client_host.to_string(),
            // A member whose bytes are not a consumer assignment shows none rather than
            // failing the whole description.
            assignment: if protocol_type == CONSUMER_PROTOCOL_TYPE {
                decode_assignment(&m.member_assignment).unwrap_or_default()
            } else {
                Vec::new()
            },
        })
        .collect();

    let committed = committed_offsets(cluster, &coordinator, group).await?;
    let mut owner: BTreeMap<TopicPartition, String> = BTreeMap::new();
    for m in &members {
        for a in &m.assignment {
            owner.insert((a.topic.clone(), a.partition), m.member_id.clone());
        }
    }
    let all: BTreeSet<TopicPartition> = committed.keys().chain(owner.keys()).cloned().collect();
    let ends = offsets::list_offsets(cluster, &all, LATEST).await?;
    let partitions = all
        .into_iter()
        .map(|tp| {
            let committed_offset = committed.get(&tp).copied();
            let log_end_offset = ends.get(&tp).and_then(|r| r.ok());
            PartitionLag {
                lag: lag(committed_offset, log_end_offset),
                member_id: owner.get(&tp).cloned(),
                topic: tp.0,
                partition: tp.1,
                committed_offset,
                log_end_offset,
            }
        })
        .collect();
    Ok(GroupDescription {
        group_id: group.to_string(),
        state: d.group_state.to_string(),
        protocol_type,
        protocol: d.protocol_data.to_string(),
        members,
        partitions,
    })
}

/// Every committed offset of `group` (OffsetFetch with all topics, v2-7).
async fn committed_offsets(
    cluster: &mut Cluster,
    coordinator: &str,
    group: &str,
) -> Result<BTreeMap<TopicPartition, i64>, OpsError> {
    let (_, response) = cluster
        .call(coordinator, 2, 7, |_| {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_topics(None)
        })
        .await?;
    if response.error_code != 0 {
        return Err(OpsError::Kafka {
            api: "OffsetFetch".into(),
            code: response.error_code,
        });
    }
    let mut out = BTreeMap::new();
    for t in &response.topics {
        for p in &t.partitions {
            // -1: no commit for the partition.
            if p.error_code == 0 && p.committed_offset >= 0 {
                out.insert((t.name.0.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::Encodable;

    fn assignment_bytes(version: i16, topics: &[(&str, &[i32])]) -> Bytes {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
            topics
                .iter()
                .map(|(t, ps)| {
                    AssignedTopic::default()
                        .with_topic(TopicName(StrBytes::from_string((*t).to_string())))
                        .with_partitions(ps.to_vec())
                })
                .collect(),
        );
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&version.to_be_bytes());
        a.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn lag_is_log_end_minus_committed() {
        assert_eq!(lag(Some(7), Some(10)), Some(3));
        assert_eq!(lag(Some(10), Some(10)), Some(0));
        assert_eq!(lag(None, Some(10)), None);
        assert_eq!(lag(Some(3), None), None);
        assert_eq!(lag(Some(12), Some(10)), Some(-2));
    }

    #[test]
    fn assignments_decode_at_every_version() {
        for version in 0..=3 {
            let bytes = assignment_bytes(version, &[("b", &[2]), ("a", &[1, 0])]);
            let decoded = decode_assignment(&bytes).unwrap();
            let pairs: Vec<(&str, i32)> = decoded.iter().map(|a| (a.topic.as_str(), a.partition)).collect();
            assert_eq!(pairs, vec![("a", 0), ("a", 1), ("b", 2)], "version {version}");
        }
        assert_eq!(decode_assignment(&Bytes::new()).unwrap(), Vec::new());
        assert!(decode_assignment(&Bytes::from_static(&[0])).is_err());
        assert!(decode_assignment(&Bytes::from_static(&[0, 0, 0, 0, 0, 9])).is_err());
        assert!(decode_assignment(&Bytes::from_static(&[0xff, 0xff])).is_err());
    }

    #[test]
    fn text_shows_members_and_lag() {
        let d = GroupDescription {
            group_id: "g".into(),
            state: "Stable".into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            members: vec![Member {
                member_id: "m-1".into(),
                group_instance_id: None,
                client_id: "app".into(),
                client_host: "/127.0.0.1".into(),
                assignment: vec![
                    Assigned {
                        topic: "t".into(),
                        partition: 0,
                    },
                    Assigned {
                        topic: "t".into(),
                        partition: 1,
                    },
                ],
            }],
            partitions: vec![PartitionLag {
                topic: "t".into(),
                partition: 0,
                committed_offset: Some(7),
                log_end_offset: Some(10),
                lag: Some(3),
                member_id: Some("m-1".into()),
            }],
        };
        assert_eq!(
            d.text(),
            "Group g is Stable (protocol type consumer, protocol range), 1 member(s)\n\n\
             MEMBER  INSTANCE  CLIENT  HOST        PARTITIONS\n\
             m-1     -         app     /127.0.0.1  t[0,1]\n\n\
             TOPIC  PARTITION  COMMITTED  LOG END  LAG  MEMBER\n\
             t      0          7          10       3    m-1\n"
        );
    }
}
