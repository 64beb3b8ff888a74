//! RemoveRaftVoter (KIP-853, API 81): a node leaves the metadata quorum's voters.
//!
//! Forwarded to the active controller (`ControllerRequest::RemoveVoter`), which changes the
//! membership through openraft's joint consensus; the removed node may then be stopped. Errors
//! as AddRaftVoter's (see [`super::add_raft_voter`]), with VOTER_NOT_FOUND (127) for a node that
//! does not vote and INVALID_REQUEST (42) for the last voter.

use kafka_protocol::messages::{RemoveRaftVoterRequest, RemoveRaftVoterResponse};

use super::raft_voters::{check_cluster_id, client_error, no_dynamic_quorum};
use super::str_bytes;
use crate::broker::Broker;
use crate::cluster::ClusterView;

pub async fn handle(
    broker: &Broker,
    request: RemoveRaftVoterRequest,
    _version: i16,
) -> RemoveRaftVoterResponse {
    let ClusterView::Cluster(node) = &broker.cluster else {
        let (code, message) = no_dynamic_quorum();
        return error(code, message);
    };
    if let Err((code, message)) = check_cluster_id(node, request.cluster_id.as_deref()) {
        return error(code, message);
    }
    match node.client().remove_voter(request.voter_id).await {
        Ok(index) => {
            tracing::info!(voter = request.voter_id, index, "RemoveRaftVoter: committed");
            RemoveRaftVoterResponse::default()
        }
        Err(e) => {
            let (code, message) = client_error(&e);
            error(code, message)
        }
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
