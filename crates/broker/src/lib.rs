//! # sapper-broker: one Kafka-compatible broker
//!
//! Owns the network server, request handlers and the broker's view of topics and partitions.
//! It speaks Kafka through `sapper-wire` and stores data through `sapper-log`; it never
//! encodes messages by hand and never reaches into a log's files.
//!
//! ## Layout
//! - [`config`]: broker configuration (file, environment, flags).
//! - [`cluster`]: single node or cluster member (metadata image, controller, roles).
//! - [`server`]: accept loop, background maintenance, shutdown.
//! - [`connection`] and [`dispatch`]: frames in, responses out, in order.
//! - [`handlers`]: one module per Kafka API.
//! - [`topics`], [`partition`], [`topic_config`], [`topic_name`]: what the broker stores.
//! - [`fetch_session`]: incremental fetch sessions (KIP-227).
//! - [`producer_ids`], [`identity`]: ids that must survive restarts.
//! - [`replica`]: replication (follower tracking, acks=all waits, the follower's fetcher).

pub mod broker;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod dispatch;
mod durable_file;
pub mod errors;
pub mod fetch_session;
pub mod group;
pub mod handlers;
pub mod identity;
pub mod partition;
pub mod producer_ids;
pub mod replica;
pub mod server;
pub mod topic_config;
pub mod topic_name;
pub mod topics;

pub use broker::{Broker, BrokerError};
pub use config::{BrokerArgs, BrokerConfig};
