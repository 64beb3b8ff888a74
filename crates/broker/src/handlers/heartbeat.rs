//! Heartbeat (v0-v4): keeps a member's session alive and tells it when to rejoin.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
    if request.group_id.is_empty() {
        return error_response(&request, ResponseError::InvalidGroupId.code());
    }
    let code = broker.groups.heartbeat(
        &request.group_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
        request.generation_id,
    );
    HeartbeatResponse::default().with_error_code(code)
}

pub fn error_response(_request: &HeartbeatRequest, code: i16) -> HeartbeatResponse {
    HeartbeatResponse::default().with_error_code(code)
}
