//! KIP-853 voter changes as controller requests: `AddVoter` and `RemoveVoter` reach the active
//! controller (the Raft leader) like any other broker request, and it changes the membership
//! of the metadata quorum with openraft's joint consensus: a new voter first joins as a
//! learner and catches up ([`crate::raft::server::add_voter_local`]), then the voter set
//! changes; a removed voter leaves the voters and the cluster.
//!
//! Refusals are decided here, before openraft is asked: adding a node that already votes is
//! DUPLICATE_VOTER, removing one that does not is VOTER_NOT_FOUND, removing the last voter is
//! INVALID_REQUEST. Each change is bounded by
//! the controller's proposal timeout (REQUEST_TIMED_OUT after it; the change may still
//! complete).

use tokio::time::timeout;

use super::api::{ControllerError, ControllerResponse};
use super::Controller;
use crate::raft::rpc::LeaderError;
use crate::raft::server::{add_voter_local, remove_voter_local};
use crate::raft::types::NodeId;
use crate::records::BrokerId;

impl Controller {
    /// Makes node `id` (controller listener `addr`) a voter.
    pub(crate) async fn add_voter(
        &self,
        id: BrokerId,
        addr: String,
    ) -> Result<ControllerResponse, ControllerError> {
        let node = raft_id(id)?;
        if addr.is_empty() {
            return Err(ControllerError::InvalidRequest(format!(
                "node {id}: no controller listener given"
            )));
        }
        if self.voter_ids().contains(&node) {
            return Err(ControllerError::DuplicateVoter(id));
        }
        tracing::info!(node = id, %addr, "adding a metadata quorum voter");
        self.finish(add_voter_local(&self.raft, node, addr)).await
    }

    /// Removes node `id` from the voters.
    pub(crate) async fn remove_voter(&self, id: BrokerId) -> Result<ControllerResponse, ControllerError> {
        let node = raft_id(id)?;
        let voters = self.voter_ids();
        if !voters.contains(&node) {
            return Err(ControllerError::VoterNotFound(id));
        }
        if voters.len() == 1 {
            return Err(ControllerError::InvalidRequest(format!(
                "node {id} is the last voter"
            )));
        }
        tracing::info!(node = id, "removing a metadata quorum voter");
        self.finish(remove_voter_local(&self.raft, node)).await
    }

    fn voter_ids(&self) -> Vec<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    async fn finish(
        &self,
        change: impl std::future::Future<Output = Result<u64, LeaderError>>,
    ) -> Result<ControllerResponse, ControllerError> {
        match timeout(self.config.propose_timeout, change).await {
            Err(_) => Err(ControllerError::Timeout(
                "the voter change did not complete in time".into(),
            )),
            Ok(Ok(index)) => Ok(ControllerResponse::VotersChanged { index }),
            Ok(Err(LeaderError::NotLeader { leader })) => Err(ControllerError::NotController {
                leader: self.leader_addr(leader),
            }),
            Ok(Err(LeaderError::Failed(e))) => Err(ControllerError::Failed(e)),
        }
    }
}

fn raft_id(id: BrokerId) -> Result<NodeId, ControllerError> {
    NodeId::try_from(id).map_err(|_| ControllerError::InvalidRequest(format!("node id {id} is negative")))
}
