//! The controller listener: accepts connections from other nodes and answers their
//! [`Request`]s from the local Raft node, one at a time per connection.
//!
//! Also what a node does when asked to act as leader (`Propose`, `AddVoter`, `RemoveVoter`),
//! whether the ask came from a peer or from this node's own [`super::MetadataQuorum`].
//! Broker requests go to the node's [`Controller`]; a connection that carried a broker's
//! heartbeats reports its closing to it (a killed broker is fenced quickly that way).
//! Connections are bounded by a semaphore; a malformed frame closes that one connection.

use std::collections::BTreeSet;
use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::rpc::{Connection, LeaderError, Request, Response};
use super::types::{Batch, BatchOutcome, Node, NodeId, Raft};
use crate::controller::{Controller, ControllerRequest};
use crate::records::BrokerId;

/// At most this many peer connections are served at once (voters, and each broker's
/// heartbeat, metadata and request connections).
pub const MAX_CONNECTIONS: usize = 1024;

/// Serves the controller listener until `shutdown` is cancelled.
pub(crate) async fn serve(
    listener: TcpListener,
    raft: Raft,
    controller: Arc<Controller>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "controller listener accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let raft = raft.clone();
        let controller = controller.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = serve_connection(Connection::new(stream), raft, controller) => {}
            }
        });
    }
}

async fn serve_connection(mut conn: Connection, raft: Raft, controller: Arc<Controller>) {
    let conn_id = controller.connection_id();
    // The broker whose heartbeats this connection carries, if any.
    let mut heartbeats_of: Option<BrokerId> = None;
    loop {
        let request: Request = match conn.recv().await {
            Ok(Some(request)) => request,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "closing a controller connection");
                break;
            }
        };
        let (request, forwarded) = match request {
            Request::Controller(request) => (request, false),
            Request::ControllerForwarded(request) => (request, true),
            other => {
                let response = answer(&raft, other).await;
                if let Err(e) = conn.send(&response).await {
                    tracing::debug!(error = %e, "closing a controller connection");
                    break;
                }
                continue;
            }
        };
        let heartbeat = match &request {
            ControllerRequest::BrokerHeartbeat { id, .. } => Some(*id),
            _ => None,
        };
        let result = controller.handle(request, conn_id, forwarded).await;
        if result.is_ok() && heartbeat.is_some() {
            heartbeats_of = heartbeat;
        }
        let response = Response::Controller(result);
        if let Err(e) = conn.send(&response).await {
            tracing::debug!(error = %e, "closing a controller connection");
            break;
        }
    }
    if let Some(broker) = heartbeats_of {
        controller.connection_closed(broker, conn_id);
    }
}

async fn answer(raft: &Raft, request: Request) -> Response {
    match request {
        Request::Controller(_) | Request::ControllerForwarded(_) => {
            Response::Membership(Err(LeaderError::Failed("misrouted controller request".into())))
        }
        Request::AppendEntries(rpc) => Response::AppendEntries(raft.append_entries(rpc).await),
        Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await),
        Request::InstallSnapshot(rpc) => Response::InstallSnapshot(raft.install_snapshot(rpc).await),
        Request::Propose(batch) => Response::Propose(propose_local(raft, batch).await),
        Request::AddVoter { id, addr } => Response::Membership(add_voter_local(raft, id, addr).await),
        Request::RemoveVoter { id } => Response::Membership(remove_voter_local(raft, id).await),
    }
}

fn leader_error(e: RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> LeaderError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            LeaderError::NotLeader { leader: f.leader_id }
        }
        other => LeaderError::Failed(other.to_string()),
    }
}

/// Appends `batch` if this node leads, answering its log index once it is applied here.
pub(crate) async fn propose_local(raft: &Raft, batch: Batch) -> Result<(u64, BatchOutcome), LeaderError> {
    let response = raft.client_write(batch).await.map_err(leader_error)?;
    Ok((response.log_id.index, response.data))
}

/// Adds `id` as a learner, waits for it to catch up, then makes it a voter (joint consensus).
pub(crate) async fn add_voter_local(raft: &Raft, id: NodeId, addr: String) -> Result<u64, LeaderError> {
    raft.add_learner(id, Node { addr }, true)
        .await
        .map_err(leader_error)?;
    let response = raft
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await
        .map_err(leader_error)?;
    Ok(response.log_id.index)
}

/// Removes `id` from the voters and from the cluster (joint consensus).
pub(crate) async fn remove_voter_local(raft: &Raft, id: NodeId) -> Result<u64, LeaderError> {
    let response = raft
        .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
        .await
        .map_err(leader_error)?;
    Ok(response.log_id.index)
}
