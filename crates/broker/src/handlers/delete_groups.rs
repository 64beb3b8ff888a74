//! DeleteGroups (v0-v2): removes empty groups and their offsets (NON_EMPTY_GROUP otherwise).

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: DeleteGroupsRequest, _version: i16) -> DeleteGroupsResponse {
    DeleteGroupsResponse::default().with_results(
        request
            .groups_names
            .iter()
            .map(|id| {
                DeletableGroupResult::default()
                    .with_group_id(id.clone())
                    .with_error_code(broker.groups.delete_group(&broker.topics, id))
            })
            .collect(),
    )
}

pub fn error_response(request: &DeleteGroupsRequest, code: i16) -> DeleteGroupsResponse {
    DeleteGroupsResponse::default().with_results(
        request
            .groups_names
            .iter()
            .map(|id| {
                DeletableGroupResult::default()
                    .with_group_id(id.clone())
                    .with_error_code(code)
            })
            .collect(),
    )
}
