//! Controller-listener messages and their framing: a 4-byte big-endian length (the client
//! listener's framing, [`sapper_wire::frame`]) around a serde_json body.
//!
//! One connection carries one request at a time: the caller writes a [`Request`] frame and
//! reads one [`Response`] frame. Raft's own RPCs travel as openraft's request and response
//! types; `Propose`, `AddVoter` and `RemoveVoter` let any node hand work to the leader;
//! `Controller` carries the broker <-> controller protocol ([`crate::controller::api`]). Frames
//! are bounded by [`MAX_FRAME_BYTES`] both ways, checked before any buffer grows.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use sapper_wire::frame::{finish_frame, FrameError, FrameReader};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::types::{Batch, BatchOutcome, NodeId, TypeConfig};
use crate::controller::api::{ControllerError, ControllerRequest, ControllerResponse};

/// The largest frame sent or accepted on the controller listener.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// How long connecting to a peer may take before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// What one node asks another on the controller listener.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Append a batch through the receiving node, which must be the leader.
    Propose(Batch),
    /// Make `id` (listening on `addr`) a voter, through the leader.
    AddVoter {
        id: NodeId,
        addr: String,
    },
    /// Remove `id` from the voters, through the leader.
    RemoveVoter {
        id: NodeId,
    },
    /// A broker's request to the controller (any voter; see [`crate::controller`]).
    Controller(ControllerRequest),
    /// The same, relayed by a voter that is not the active controller: never relayed again.
    ControllerForwarded(ControllerRequest),
}

/// The answer to a [`Request`], same variant.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// The log index of the proposed batch and what applying it did.
    Propose(Result<(u64, BatchOutcome), LeaderError>),
    /// The log index of the membership change.
    Membership(Result<u64, LeaderError>),
    Controller(Result<ControllerResponse, ControllerError>),
}

/// Why the node asked to act as leader did not.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum LeaderError {
    /// Not the leader; try this one (if known). Nothing was appended.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// The leader tried and failed (membership change in progress, raft stopped, ...).
    #[error("{0}")]
    Failed(String),
}

/// Why a call on a connection failed.
#[derive(Debug, Error)]
pub enum RpcError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("connection closed")]
    Closed,
    #[error("message of {0} bytes exceeds the frame limit")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// One framed connection.
pub struct Connection {
    reader: FrameReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

impl Connection {
    pub fn new(stream: TcpStream) -> Self {
        // Small request/response frames: do not wait to coalesce them.
        let _ = stream.set_nodelay(true);
        let (read, writer) = stream.into_split();
        Self {
            reader: FrameReader::new(read, MAX_FRAME_BYTES),
            writer,
        }
    }

    /// Connects to `addr` within [`CONNECT_TIMEOUT`].
    pub async fn connect(addr: &str) -> Result<Self, RpcError> {
        let connect = |source| RpcError::Connect {
            addr: addr.to_string(),
            source,
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| connect(std::io::ErrorKind::TimedOut.into()))?
            .map_err(connect)?;
        Ok(Self::new(stream))
    }

    pub async fn send<T: Serialize>(&mut self, message: &T) -> Result<(), RpcError> {
        let mut buf = BytesMut::with_capacity(256);
        buf.put_bytes(0, 4);
        serde_json::to_writer((&mut buf).writer(), message)?;
        let size = buf.len() - 4;
        if size > MAX_FRAME_BYTES {
            return Err(RpcError::TooLarge(size));
        }
        finish_frame(&mut buf);
        self.writer.write_all(&buf).await.map_err(FrameError::Io)?;
        Ok(())
    }

    /// The next message, `Ok(None)` when the peer closed cleanly between messages.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, RpcError> {
        let Some(frame) = self.reader.read_frame().await? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_slice(&frame)?))
    }

    /// Sends `request` and reads its response.
    pub async fn call(&mut self, request: &Request) -> Result<Response, RpcError> {
        self.send(request).await?;
        self.recv().await?.ok_or(RpcError::Closed)
    }
}
