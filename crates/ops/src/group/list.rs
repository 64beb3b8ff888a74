//! `sapper group list`: ListGroups on every broker of the cluster (each lists the groups it
//! coordinates), merged and sorted by group id.

use kafka_protocol::messages::ListGroupsRequest;
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::cluster::Cluster;
use crate::error::OpsError;
use crate::table::Table;
use crate::Report;

/// One listed group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedGroup {
    pub group_id: String,
    /// Empty when the broker predates ListGroups v4, which added the state.
    pub state: String,
    pub protocol_type: String,
}

/// The groups of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupList {
    pub groups: Vec<ListedGroup>,
}

impl Report for GroupList {
    fn text(&self) -> String {
        let mut table = Table::new(&["GROUP", "STATE", "PROTOCOL TYPE"]);
        for g in &self.groups {
            table.row(vec![g.group_id.clone(), g.state.clone(), g.protocol_type.clone()]);
        }
        table.render()
    }
}

pub async fn run(cluster: &mut Cluster, state: Option<&str>) -> Result<GroupList, OpsError> {
    cluster.metadata(Some(&[])).await?;
    let mut groups = Vec::new();
    for broker in cluster.broker_addrs() {
        let (version, response) = cluster
            .call(&broker, 0, 4, |version| {
                let request = ListGroupsRequest::default();
                match state {
                    Some(s) if version >= 4 => {
                        request.with_states_filter(vec![StrBytes::from_string(s.to_string())])
                    }
                    _ => request,
                }
            })
            .await?;
        if response.error_code != 0 {
            return Err(OpsError::Kafka {
                api: "ListGroups".into(),
                code: response.error_code,
            });
        }
        groups.extend(response.groups.into_iter().map(|g| ListedGroup {
            group_id: g.group_id.0.to_string(),
            state: if version >= 4 {
                g.group_state.to_string()
            } else {
                String::new()
            },
            protocol_type: g.protocol_type.to_string(),
        }));
    }
    Ok(GroupList {
        groups: select(groups, state),
    })
}

/// Sorted by id, one entry per group, only those in `state` (case-insensitive) if given.
fn select(mut groups: Vec<ListedGroup>, state: Option<&str>) -> Vec<ListedGroup> {
    if let Some(state) = state {
        groups.retain(|g| g.state.eq_ignore_ascii_case(state));
    }
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    groups.dedup_by(|a, b| a.group_id == b.group_id);
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(id: &str, state: &str) -> ListedGroup {
        ListedGroup {
            group_id: id.into(),
            state: state.into(),
            protocol_type: "consumer".into(),
        }
    }

    #[test]
    fn groups_are_sorted_deduplicated_and_filtered() {
        let all = vec![g("b", "Empty"), g("a", "Stable"), g("b", "Empty")];
        assert_eq!(select(all.clone(), None), vec![g("a", "Stable"), g("b", "Empty")]);
        assert_eq!(select(all, Some("stable")), vec![g("a", "Stable")]);
    }

    #[test]
    fn text_is_a_table() {
        let list = GroupList {
            groups: vec![g("orders", "Stable")],
        };
        assert_eq!(
            list.text(),
            "GROUP   STATE   PROTOCOL TYPE\norders  Stable  consumer\n"
        );
    }
}
