//! # sapper-meta: cluster metadata
//!
//! Owns what a cluster agrees on through its Raft quorum: the metadata records
//! ([`records`]), the image they build when applied in order ([`image`]), and the active
//! controller's decisions as pure functions over that image ([`placement`] of new replicas,
//! [`election`] of leaders when brokers are fenced, come back or are preferred).
//!
//! The records, the image and the decisions know nothing of segments, sockets or Kafka
//! requests: the Raft layer feeds the image committed records, brokers read the deltas it
//! returns, and the controller proposes the records its decision functions produce. Everything
//! there is deterministic so every node that applies the same records holds the same image; see
//! `docs/design/cluster.md`. The Raft layer itself ([`raft`]: log and snapshot storage, the
//! controller-listener transport, and the [`raft::MetadataQuorum`] handle), the active
//! [`controller`] that runs on the Raft leader, and the broker side of the broker <-> controller
//! protocol ([`lifecycle`]) are the modules here that do IO.

pub mod controller;
pub mod election;
pub mod image;
pub mod lifecycle;
pub mod placement;
pub mod raft;
pub mod records;

pub use image::{ApplyError, BrokerState, MetadataDelta, MetadataImage, PartitionState, TopicImage};
pub use records::{BrokerId, BrokerRegistration, Listener, MetadataRecord, PartitionRecord, NO_LEADER};
