//! The one table of Kafka APIs and versions Sapper serves.
//!
//! ApiVersions answers from this table, and the dispatcher refuses anything outside it with
//! UNSUPPORTED_VERSION. A version is listed only when its semantics are implemented, not merely
//! decodable: e.g. Fetch stops at 12 because 13+ address topics by id only. The one deliberate
//! exception is Produce's advertised minimum, see [`SupportedApi::advertised_min`].

use kafka_protocol::messages::ApiKey;

/// An API and the inclusive range of versions we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedApi {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
    /// The minimum told to clients in ApiVersions, when it differs from `min`.
    ///
    /// Only Produce: librdkafka before 2.10 enables gzip, snappy and lz4 only when the broker
    /// advertises Produce v0 (librdkafka issue 4956). Apache Kafka 4 advertises v0 for that
    /// reason and refuses v0-2 requests (KAFKA-18659); so do we. Clients pick the highest
    /// common version, so none of them sends v0-2.
    pub advertised_min: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> SupportedApi {
    SupportedApi {
        key,
        min,
        max,
        advertised_min: min,
    }
}

/// Every API the broker answers, with honest version ranges.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    SupportedApi {
        key: ApiKey::Produce,
        min: 3,
        max: 11,
        advertised_min: 0,
    },
    api(ApiKey::Fetch, 4, 12),
    api(ApiKey::ListOffsets, 1, 8),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::InitProducerId, 0, 4),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::CreatePartitions, 0, 3),
    // v2 (KIP-1073): fenced brokers on request, flagged.
    api(ApiKey::DescribeCluster, 0, 2),
    // The metadata quorum as `__cluster_metadata` partition 0 (crates/meta's Raft).
    api(ApiKey::DescribeQuorum, 0, 2),
    // Preferred / unclean leader election, decided by the active controller.
    api(ApiKey::ElectLeaders, 0, 2),
    // KIP-853 voter changes of the metadata quorum, through the active controller.
    api(ApiKey::AddRaftVoter, 0, 0),
    api(ApiKey::RemoveRaftVoter, 0, 0),
    // Answers "this broker" for groups; librdkafka also enables LZ4 only when it is advertised.
    api(ApiKey::FindCoordinator, 0, 4),
    // Classic consumer groups and committed offsets (crates/broker/src/group).
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::OffsetDelete, 0, 0),
    // Followers after a leader change, and consumers validating positions (KIP-320).
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
];

/// The supported range for `key`, if we serve it at all.
pub fn supported(key: ApiKey) -> Option<SupportedApi> {
    SUPPORTED_APIS.iter().copied().find(|a| a.key == key)
}

/// Whether `key` at `version` is served.
pub fn is_supported(key: ApiKey, version: i16) -> bool {
    supported(key).is_some_and(|a| (a.min..=a.max).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_is_within_what_the_codec_knows() {
        for a in SUPPORTED_APIS {
            let codec = a.key.valid_versions();
            assert!(
                a.min >= codec.min && a.max <= codec.max,
                "{:?} {}..{} vs {}",
                a.key,
                a.min,
                a.max,
                codec
            );
            assert!(a.min <= a.max);
        }
    }

    #[test]
    fn no_api_listed_twice() {
        for (i, a) in SUPPORTED_APIS.iter().enumerate() {
            assert!(SUPPORTED_APIS.iter().skip(i + 1).all(|b| b.key != a.key));
        }
    }
}
