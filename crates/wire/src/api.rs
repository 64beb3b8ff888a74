//! The one table of Kafka APIs and versions Sapper serves.
//!
//! ApiVersions answers from this table, and the dispatcher refuses anything outside it with
//! UNSUPPORTED_VERSION. A version is listed only when its semantics are implemented, not merely
//! decodable: e.g. Fetch stops at 12 because 13+ address topics by id only.

use kafka_protocol::messages::ApiKey;

/// An API and the inclusive range of versions we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedApi {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> SupportedApi {
    SupportedApi { key, min, max }
}

/// Every API the broker answers, with honest version ranges.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    api(ApiKey::Produce, 3, 11),
    api(ApiKey::Fetch, 4, 12),
    api(ApiKey::ListOffsets, 1, 8),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::InitProducerId, 0, 4),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DescribeCluster, 0, 1),
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
