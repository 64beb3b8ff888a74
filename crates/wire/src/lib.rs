//! # sapper-wire: the Kafka wire, sans semantics
//!
//! Owns how bytes on a socket become typed Kafka requests and responses, and back: the
//! 4-byte length framing, header decoding, the table of API versions Sapper serves, and a
//! small async client used by tests and tools. Message bodies are encoded and decoded by the
//! `kafka-protocol` crate (generated from Apache Kafka's own message specs); nothing here
//! hand-writes a codec. This crate knows nothing of topics, logs or brokers.
//!
//! ## Layout
//! - [`frame`]: reading and writing length-prefixed frames, bounded before allocation.
//! - [`api`]: the API versions Sapper advertises, one table.
//! - [`codec`]: decoding a request frame into header + body, encoding a response frame.
//! - [`client`]: a minimal pipelined-free async client (one request at a time).

pub mod api;
pub mod client;
pub mod codec;
pub mod frame;

pub use kafka_protocol;
