//! Openraft's outgoing network: one [`PeerClient`] per target voter, speaking [`super::rpc`]
//! over TCP to its controller listener.
//!
//! A client keeps one connection and reconnects on demand. The connection is taken out of the
//! client for the duration of a call and put back only after a whole response was read, so a
//! call cancelled by openraft's timeout never leaves a half-read response on a reused socket.
//! Failing to connect is `Unreachable` (openraft backs off), a broken or timed-out call is a
//! `Network` error (openraft retries); neither panics.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::rpc::{Connection, Request, Response, RpcError};
use super::types::{Node, NodeId, TypeConfig};

/// How long openraft waits before retrying an unreachable peer.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(200);

/// Makes [`PeerClient`]s for openraft.
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            conn: None,
        }
    }
}

/// The connection to one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    conn: Option<Connection>,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn call<E: std::error::Error>(
        &mut self,
        request: Request,
        ttl: Duration,
    ) -> RpcResult<Response, E> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => Connection::connect(&self.addr)
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?,
        };
        let response = tokio::time::timeout(ttl, conn.call(&request))
            .await
            .map_err(|_| RPCError::Network(NetworkError::new(&RpcError::Closed)))?
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.conn = Some(conn);
        Ok(response)
    }

    fn unexpected<E: std::error::Error>(
        &self,
        response: &Response,
    ) -> RPCError<NodeId, Node, RaftError<NodeId, E>> {
        let e = std::io::Error::other(format!(
            "peer {} answered with the wrong message: {response:?}",
            self.target
        ));
        RPCError::Network(NetworkError::new(&e))
    }

    // The error type is openraft's, fixed by the trait.
    #[allow(clippy::result_large_err)]
    fn remote<T, E: std::error::Error>(&self, result: Result<T, RaftError<NodeId, E>>) -> RpcResult<T, E> {
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self.call(Request::AppendEntries(rpc), option.hard_ttl()).await? {
            Response::AppendEntries(result) => self.remote(result),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self
            .call(Request::InstallSnapshot(rpc), option.hard_ttl())
            .await?
        {
            Response::InstallSnapshot(result) => self.remote(result),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        match self.call(Request::Vote(rpc), option.hard_ttl()).await? {
            Response::Vote(result) => self.remote(result),
            other => Err(self.unexpected(&other)),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }
}
