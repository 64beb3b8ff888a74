//! DescribeGroups (v0-v5): state, protocol and members (client id, host, metadata, assignment).
//! An unknown group is described as Dead with no error, as Kafka does before v6. As in Kafka,
//! only a Stable group shows its protocol and the members' metadata and assignments: during a
//! rebalance they are not settled, so they are left empty.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::state::GroupState;

pub async fn handle(broker: &Broker, request: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .iter()
        .map(|id| {
            let group = DescribedGroup::default().with_group_id(id.clone());
            if let Err(code) = broker.groups.check_coordinator(id) {
                return group.with_error_code(code);
            }
            let Some(d) = broker.groups.describe(id) else {
                return group.with_group_state(str_bytes("Dead"));
            };
            let stable = d.state == GroupState::Stable;
            let members = d
                .members
                .iter()
                .map(|m| {
                    let mut member = DescribedGroupMember::default()
                        .with_member_id(str_bytes(m.member_id.clone()))
                        .with_client_id(str_bytes(m.client_id.clone()))
                        .with_client_host(str_bytes(m.client_host.clone()));
                    if stable {
                        member = member
                            .with_member_metadata(m.metadata(&d.protocol))
                            .with_member_assignment(m.assignment.clone());
                    }
                    if version >= 4 {
                        member = member.with_group_instance_id(m.group_instance_id.clone().map(str_bytes));
                    }
                    member
                })
                .collect();
            group
                .with_group_state(str_bytes(d.state.name()))
                .with_protocol_type(str_bytes(d.protocol_type))
                .with_protocol_data(str_bytes(if stable { d.protocol } else { String::new() }))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub fn error_response(request: &DescribeGroupsRequest, code: i16) -> DescribeGroupsResponse {
    DescribeGroupsResponse::default().with_groups(
        request
            .groups
            .iter()
            .map(|id| {
                DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_error_code(code)
            })
            .collect(),
    )
}
