//! One module per Kafka API. Each has `handle(broker, request, version) -> response` and
//! `error_response(&request, code) -> response` (the same shape with `code` in every error
//! slot, used for UNSUPPORTED_VERSION and request-wide failures). A handler that needs to know
//! who is asking has `handle_in(broker, &RequestContext, request, version)` instead.

pub mod add_raft_voter;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_quorum;
pub mod elect_leaders;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
mod raft_voters;
pub mod remove_raft_voter;
pub mod sync_group;
#[cfg(test)]
pub(crate) mod test_support;

use kafka_protocol::protocol::StrBytes;

/// An owned string as the codec's string type.
pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
