//! AddRaftVoter (KIP-853, API 80): a controller node joins the metadata quorum's voters.
//!
//! The node must already run with the controller role and its controller listener (started
//! with `--roles controller --controller-listen HOST:PORT` and the current `--voters`, it waits
//! as an observer). The broker forwards the change to the active controller
//! (`ControllerRequest::AddVoter`), which adds it as an openraft learner, waits for it to catch
//! up, then makes it a voter through joint consensus (see `sapper_meta::controller::voters`).
//! The new voter's address is the first listener's host and port; Sapper has no directory ids,
//! so `voter_directory_id` is ignored.
//!
//! Errors: INCONSISTENT_CLUSTER_ID (104) when `cluster_id` is given and is not ours,
//! INVALID_REQUEST (42) without a listener, DUPLICATE_VOTER (126), the controller's errors
//! otherwise. A single-node broker has no dynamic quorum: UNSUPPORTED_VERSION (35), as a Kafka
//! cluster with a static quorum (kraft.version 0) answers.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{AddRaftVoterRequest, AddRaftVoterResponse};

use super::raft_voters::{committed, node_for_change};
use super::str_bytes;
use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: AddRaftVoterRequest, _version: i16) -> AddRaftVoterResponse {
    let node = match node_for_change(broker, request.cluster_id.as_deref()) {
        Ok(node) => node,
        Err((code, message)) => return error(code, message),
    };
    let Some(listener) = request.listeners.first() else {
        return error(
            ResponseError::InvalidRequest.code(),
            "the new voter needs its controller listener".into(),
        );
    };
    let addr = format!("{}:{}", listener.host.as_str(), listener.port);
    let outcome = node.client().add_voter(request.voter_id, addr).await;
    match committed(outcome, "AddRaftVoter", request.voter_id) {
        Ok(()) => AddRaftVoterResponse::default(),
        Err((code, message)) => error(code, message),
    }
}

pub fn error_response(_request: &AddRaftVoterRequest, code: i16) -> AddRaftVoterResponse {
    AddRaftVoterResponse::default().with_error_code(code)
}

fn error(code: i16, message: String) -> AddRaftVoterResponse {
    AddRaftVoterResponse::default()
        .with_error_code(code)
        .with_error_message(Some(str_bytes(message)))
}
