//! `sapper group delete`: DeleteGroups, sent to each group's coordinator; every group's result
//! is reported, and any failure makes the command fail after printing them all.

use std::collections::BTreeMap;

use kafka_protocol::messages::{DeleteGroupsRequest, GroupId};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::cluster::Cluster;
use crate::error::{kafka_error_name, OpsError};
use crate::table::Table;
use crate::Report;

/// What happened to one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deletion {
    pub group_id: String,
    /// Kafka's error name (`NON_EMPTY_GROUP`), or `None` when the group was deleted.
    pub error: Option<String>,
}

/// The result of deleting groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeleteReport {
    pub results: Vec<Deletion>,
}

impl DeleteReport {
    /// The error to exit with when any group was not deleted.
    pub fn failure(&self) -> Option<OpsError> {
        let failed: Vec<String> = self
            .results
            .iter()
            .filter_map(|d| d.error.as_ref().map(|e| format!("{} ({e})", d.group_id)))
            .collect();
        (!failed.is_empty()).then(|| OpsError::DeleteFailed(failed.join(", ")))
    }
}

impl Report for DeleteReport {
    fn text(&self) -> String {
        let mut table = Table::new(&["GROUP", "RESULT"]);
        for d in &self.results {
            let result = d.error.clone().unwrap_or_else(|| "deleted".into());
            table.row(vec![d.group_id.clone(), result]);
        }
        table.render()
    }
}

pub async fn run(cluster: &mut Cluster, groups: &[String]) -> Result<DeleteReport, OpsError> {
    let mut errors: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut by_coordinator: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for group in groups {
        match cluster.coordinator(group).await {
            Ok(addr) => by_coordinator.entry(addr).or_default().push(group.clone()),
            Err(OpsError::Kafka { code, .. }) => {
                errors.insert(group.clone(), Some(kafka_error_name(code)));
            }
            Err(e) => return Err(e),
        }
    }
    for (coordinator, names) in by_coordinator {
        let (_, response) = cluster
            .call(&coordinator, 0, 2, |_| {
                DeleteGroupsRequest::default().with_groups_names(
                    names
                        .iter()
                        .map(|n| GroupId(StrBytes::from_string(n.clone())))
                        .collect(),
                )
            })
            .await?;
        for r in response.results {
            let error = (r.error_code != 0).then(|| kafka_error_name(r.error_code));
            errors.insert(r.group_id.0.to_string(), error);
        }
    }
    // In the order given; a group the coordinator did not answer for was not deleted.
    let results = groups
        .iter()
        .map(|g| Deletion {
            group_id: g.clone(),
            error: errors
                .get(g)
                .cloned()
                .unwrap_or_else(|| Some("NO_RESPONSE".into())),
        })
        .collect();
    Ok(DeleteReport { results })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_failed_group_fails_the_command_naming_kafkas_error() {
        let report = DeleteReport {
            results: vec![
                Deletion {
                    group_id: "a".into(),
                    error: None,
                },
                Deletion {
                    group_id: "b".into(),
                    error: Some("NON_EMPTY_GROUP".into()),
                },
            ],
        };
        assert_eq!(
            report.text(),
            "GROUP  RESULT\na      deleted\nb      NON_EMPTY_GROUP\n"
        );
        let failure = report.failure().unwrap().to_string();
        assert_eq!(failure, "could not delete b (NON_EMPTY_GROUP)");
        let ok = DeleteReport {
            results: vec![Deletion {
                group_id: "a".into(),
                error: None,
            }],
        };
        assert!(ok.failure().is_none());
    }
}
