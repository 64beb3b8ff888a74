//! JoinGroup (v0-v9): hand the request to the group coordinator and wait for the join phase
//! to end. v4+ members without an id first get MEMBER_ID_REQUIRED with their id, as Kafka does.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::dispatch::RequestContext;
use crate::group::state::{JoinRequest, JoinResult};

/// JoinGroup; the member is recorded with the header's client id and the peer's address
/// (DescribeGroups shows both).
pub async fn handle_in(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    let client_id = ctx.client_id;
    if request.group_id.is_empty() {
        return error_response(&request, ResponseError::InvalidGroupId.code());
    }
    let req = JoinRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: client_id.to_string(),
        client_host: ctx.client_host(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
        fresh_member_id: format!("{client_id}-{}", uuid::Uuid::new_v4()),
    };
    let result = broker
        .groups
        .join(&broker.topics, &broker.shutdown, &request.group_id, req)
        .await;
    response(result, version)
}

fn response(r: JoinResult, version: i16) -> JoinGroupResponse {
    let members = r
        .members
        .into_iter()
        .map(|m| {
            let mut member = JoinGroupResponseMember::default()
                .with_member_id(str_bytes(m.member_id))
                .with_metadata(m.metadata);
            if version >= 5 {
                member = member.with_group_instance_id(m.group_instance_id.map(str_bytes));
            }
            member
        })
        .collect();
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation_id)
        .with_leader(str_bytes(r.leader))
        .with_member_id(str_bytes(r.member_id))
        .with_members(members);
    if version >= 7 {
        resp = resp
            .with_protocol_type(r.protocol_type.map(str_bytes))
            .with_protocol_name(r.protocol_name.map(str_bytes));
    } else {
        // Before v7 the protocol name is not nullable.
        resp = resp.with_protocol_name(Some(str_bytes(r.protocol_name.unwrap_or_default())));
    }
    if version >= 9 {
        resp = resp.with_skip_assignment(r.skip_assignment);
    }
    resp
}

pub fn error_response(request: &JoinGroupRequest, code: i16) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(code)
        .with_member_id(request.member_id.clone())
}
