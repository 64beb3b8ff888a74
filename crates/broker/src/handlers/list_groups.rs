//! ListGroups (v0-v5): every group this broker coordinates; v4+ filter by state, v5 by type
//! (all of ours are "classic").

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::broker::Broker;

const GROUP_TYPE: &str = "classic";

pub async fn handle(broker: &Broker, request: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let wants_state = |state: &str| {
        request.states_filter.is_empty()
            || request
                .states_filter
                .iter()
                .any(|s| s.eq_ignore_ascii_case(state))
    };
    let wants_type = request.types_filter.is_empty()
        || request
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case(GROUP_TYPE));
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|g| wants_type && wants_state(g.state.name()))
        .map(|g| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(g.group_id)))
                .with_protocol_type(str_bytes(g.protocol_type));
            if version >= 4 {
                listed = listed.with_group_state(str_bytes(g.state.name()));
            }
            if version >= 5 {
                listed = listed.with_group_type(str_bytes(GROUP_TYPE));
            }
            listed
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub fn error_response(_request: &ListGroupsRequest, code: i16) -> ListGroupsResponse {
    ListGroupsResponse::default().with_error_code(code)
}
