//! The openraft type configuration of the metadata quorum: what a log entry carries and what
//! applying one answers.
//!
//! A log entry carries a [`Batch`] of [`MetadataRecord`]s, because the controller's decisions
//! (fence a broker and move its leaderships away, for example) are ordered batches that must
//! apply together or not at all. Applying a batch answers a [`BatchOutcome`]: applied, or
//! refused by the image (then nothing of it was applied, on every node alike).

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::records::MetadataRecord;

/// A controller's (and broker's) `node.id` as Raft sees it.
pub type NodeId = u64;

/// A voter's address book entry: its controller listener (`host:port`).
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// The type configuration of Sapper's metadata quorum.
    pub TypeConfig:
        D = Batch,
        R = BatchOutcome,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

/// One Raft log entry's worth of metadata: records applied in order, all or none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub records: Vec<MetadataRecord>,
}

/// What applying a committed [`Batch`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchOutcome {
    /// Every record was applied (also the answer for Raft's own blank and membership entries).
    Applied,
    /// The record at `position` was refused by the image; no record of the batch was applied.
    Refused { position: usize, reason: String },
}

/// A log id as openraft spells it for this configuration.
pub type LogId = openraft::LogId<NodeId>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// Openraft's storage error for this configuration.
pub type StorageError = openraft::StorageError<NodeId>;
/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
