//! The metadata quorum: [`MetadataImage`](crate::MetadataImage) replicated by openraft among
//! the cluster's controller voters (issue 5, `docs/design/cluster.md`, ADR 0003).
//!
//! - [`types`]: the openraft type configuration (a log entry is a [`Batch`] of records);
//! - [`segment`] and [`log_store`]: the Raft log, vote and purge point on disk;
//! - [`state_machine`]: the image, applied batch by batch all or nothing, and its snapshots;
//! - [`feed`]: the ring of recently applied batches that metadata followers read;
//! - [`rpc`], [`network`] and [`server`]: framed serde_json over TCP on the controller listener;
//! - [`quorum`]: [`MetadataQuorum`], the handle the broker and the controller use.

pub mod feed;
mod fsutil;
pub mod log_store;
pub mod network;
pub mod quorum;
pub mod rpc;
pub mod segment;
pub mod server;
pub mod state_machine;
pub mod types;

pub use quorum::{MetadataQuorum, QuorumConfig, QuorumError, QuorumStatus, VoterStatus};
pub use state_machine::{AppliedDelta, AppliedState};
pub use types::{Batch, BatchOutcome, NodeId, TypeConfig};

#[cfg(test)]
mod tests;
