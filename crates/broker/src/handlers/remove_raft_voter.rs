//! RemoveRaftVoter (KIP-853, API 81): a node leaves the metadata quorum's voters.
//!
//! Forwarded to the active controller (`ControllerRequest::RemoveVoter`), which changes the
//! membership through openraft's joint consensus; the removed node may then be stopped. Errors
//! as AddRaftVoter's (see [`super::add_raft_voter`]), with VOTER_NOT_FOUND (127) for a node that
//! does not vote and INVALID_REQUEST (42) for the last voter.

use kafka_protocol::messages::{RemoveRaftVoterRequest, RemoveRaftVoterResponse};

use super::raft_voters::{committed, node_for_change};
use super::str_bytes;
use crate::broker::Broker;

pub async fn handle(
    broker: &Broker,
    request: RemoveRaftVoterRequest,
    _version: i16,
) -> RemoveRaftVoterResponse {
    let node = match node_for_change(broker, request.cluster_id.as_deref()) {
        Ok(node) => node,
        Err((code, message)) => return error(code, message),
    };
    let outcome = node.client().remove_voter(request.voter_id).await;
    match committed(outcome, "RemoveRaftVoter", request.voter_id) {
        Ok(()) => RemoveRaftVoterResponse::default(),
        Err((code, message)) => error(code, message),
    }
}

pub fn error_response(_request: &RemoveRaftVoterRequest, code: i16) -> RemoveRaftVoterResponse {
    RemoveRaftVoterResponse::default().with_error_code(code)
}

fn error(code: i16, message: String) -> RemoveRaftVoterResponse {
    RemoveRaftVoterResponse::default()
        .with_error_code(code)
        .with_error_message(Some(str_bytes(message)))
}
