//! SyncGroup (v0-v5): the leader sends the assignment; every member waits for its share.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::state::SyncRequest;

pub async fn handle(broker: &Broker, request: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    if request.group_id.is_empty() {
        return error_response(&request, ResponseError::InvalidGroupId.code());
    }
    let req = SyncRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        generation_id: request.generation_id,
        protocol_type: request.protocol_type.as_ref().map(|s| s.to_string()),
        protocol_name: request.protocol_name.as_ref().map(|s| s.to_string()),
        assignments: request
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    let r = broker
        .groups
        .sync(&broker.topics, &broker.shutdown, &request.group_id, req)
        .await;
    let mut resp = SyncGroupResponse::default()
        .with_error_code(r.error)
        .with_assignment(r.assignment);
    if version >= 5 {
        resp = resp
            .with_protocol_type(r.protocol_type.map(str_bytes))
            .with_protocol_name(r.protocol_name.map(str_bytes));
    }
    resp
}

pub fn error_response(_request: &SyncGroupRequest, code: i16) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(code)
}
