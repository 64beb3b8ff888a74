//! Replication building blocks (issue 5, step 4; `docs/design/cluster.md`, "Replication").
//!
//! Each module owns one side of Kafka's leader/follower model and is usable on its own:
//! - [`epochs`]: the leader's answers about leader epochs (current-epoch fencing, the
//!   diverging epoch of a follower fetch), shared by the Fetch and OffsetForLeaderEpoch
//!   handlers and by the fetcher's tests;
//! - [`leader_state`]: a leader's view of its followers (fetch offsets, last caught-up times),
//!   the high watermark, ISR shrink/expand decisions and the `min.insync.replicas` check (pure);
//! - [`purgatory`]: acks=all produces waiting for the high watermark;
//! - [`fetcher`]: a follower's fetcher for one source broker, appending through a
//!   [`sink::ReplicaSink`] and truncating after leader changes; [`manager`]: one fetcher per
//!   leader broker, and which partition is followed where.
//!
//! None of them touches a `Partition` directly: the partition (or a test) supplies the log
//! behind a trait, so each piece is tested without a running broker.

pub mod epochs;
pub mod fetcher;
pub mod leader_state;
pub mod manager;
pub mod purgatory;
pub mod sink;
