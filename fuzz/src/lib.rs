//! The bodies of Sapper's fuzz targets, as plain functions.
//!
//! `fuzz_targets/*.rs` are one-line libFuzzer wrappers around these, so the same code also
//! runs on stable: the tests below feed it a bounded number of seeded random and mutated
//! inputs (`cargo test --release` in this directory), and an ignored test writes a seed corpus
//! of real encoded requests and batches for libFuzzer to start from.
//!
//! The property under test is only "never panics, never aborts": decoders must turn any peer
//! input into a value or an error.

use bytes::Bytes;
use sapper_log::batch::BatchIter;
use sapper_wire::api::{self, SUPPORTED_APIS};
use sapper_wire::codec::{decode_body, decode_header};
use sapper_wire::kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest,
    DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, DescribeQuorumRequest, DescribeGroupsRequest, FetchRequest,
    FindCoordinatorRequest, HeartbeatRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetDeleteRequest,
    OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest, SyncGroupRequest,
};

/// Feeds `data` to the request decoder twice:
/// - as a whole frame, exactly as the broker's dispatcher does: `decode_header`, then the body
///   decoder of the API the header names, at the version it names;
/// - as `[api selector, version selector, body...]`, so the fuzzer reaches every served API's
///   body decoder (at every version the codec knows, plus one below and one above) without
///   first having to discover a valid header.
pub fn decode_request(data: &[u8]) {
    let mut frame = Bytes::copy_from_slice(data);
    if let Ok((api, header)) = decode_header(&mut frame) {
        decode_as(api, header.request_api_version, frame);
    }
    if let [selector, version, body @ ..] = data {
        let Some(served) = SUPPORTED_APIS.get(usize::from(*selector) % SUPPORTED_APIS.len()) else {
            return;
        };
        let codec = served.key.valid_versions();
        // min-1 ..= max+1: the out-of-range versions must be refused, not mis-decoded.
        let span = i16::from(*version) % (codec.max - codec.min + 3);
        decode_as(served.key, codec.min - 1 + span, Bytes::copy_from_slice(body));
    }
}

/// Decodes `body` as the request type of `api` at `version`; true when it decoded.
///
/// Every API the broker serves must have an arm here: a served API without one panics, so
/// the fuzzer reports the gap the first time it meets that API.
pub fn decode_as(api: ApiKey, version: i16, mut body: Bytes) -> bool {
    macro_rules! decode {
        ($request:ty) => {
            decode_body::<$request>(api, &mut body, version).is_ok()
        };
    }
    match api {
        ApiKey::Produce => decode!(ProduceRequest),
        ApiKey::Fetch => decode!(FetchRequest),
        ApiKey::ListOffsets => decode!(ListOffsetsRequest),
        ApiKey::Metadata => decode!(MetadataRequest),
        ApiKey::ApiVersions => decode!(ApiVersionsRequest),
        ApiKey::CreateTopics => decode!(CreateTopicsRequest),
        ApiKey::DeleteTopics => decode!(DeleteTopicsRequest),
        ApiKey::InitProducerId => decode!(InitProducerIdRequest),
        ApiKey::DescribeConfigs => decode!(DescribeConfigsRequest),
        ApiKey::CreatePartitions => decode!(CreatePartitionsRequest),
        ApiKey::DescribeCluster => decode!(DescribeClusterRequest),
        ApiKey::DescribeQuorum => decode!(DescribeQuorumRequest),
        // Group APIs: arms ahead of the handlers, so serving one needs no change here.
        ApiKey::FindCoordinator => decode!(FindCoordinatorRequest),
        ApiKey::JoinGroup => decode!(JoinGroupRequest),
        ApiKey::SyncGroup => decode!(SyncGroupRequest),
        ApiKey::Heartbeat => decode!(HeartbeatRequest),
        ApiKey::LeaveGroup => decode!(LeaveGroupRequest),
        ApiKey::OffsetCommit => decode!(OffsetCommitRequest),
        ApiKey::OffsetFetch => decode!(OffsetFetchRequest),
        ApiKey::ListGroups => decode!(ListGroupsRequest),
        ApiKey::DescribeGroups => decode!(DescribeGroupsRequest),
        ApiKey::DeleteGroups => decode!(DeleteGroupsRequest),
        ApiKey::OffsetDelete => decode!(OffsetDeleteRequest),
        ApiKey::OffsetForLeaderEpoch => decode!(OffsetForLeaderEpochRequest),
        other => {
            assert!(
                api::supported(other).is_none(),
                "{other:?} is served but has no arm in sapper_fuzz::decode_as"
            );
            false
        }
    }
}

/// Walks `data` as a sequence of record batches the way the log validates producer input,
/// reading every header field the broker reads from a validated batch. Also walks it with the
/// header-only iterator Produce uses for its size check.
pub fn iterate_batches(data: &[u8]) {
    // Each batch is at least a 61-byte header, so neither walk can yield more than this.
    let bound = data.len() / 61 + 1;
    let mut seen = 0usize;
    for batch in BatchIter::validated(data) {
        seen += 1;
        assert!(seen <= bound + 1, "validated iterator did not advance");
        let Ok(view) = batch else { continue };
        assert!(view.size() >= 61 && view.size() <= data.len());
        assert!(view.records_count() >= 0 && view.last_offset_delta() >= 0);
        assert!(view.compression().is_some());
        let _ = (
            view.base_offset(),
            view.last_offset(),
            view.partition_leader_epoch(),
            view.crc(),
            view.is_log_append_time(),
            view.is_transactional(),
            view.is_control(),
            view.base_timestamp(),
            view.max_timestamp(),
            view.producer_id(),
            view.producer_epoch(),
            view.base_sequence(),
            view.last_sequence(),
            view.has_producer_id(),
            view.as_bytes().len(),
        );
    }
    let mut seen = 0usize;
    for batch in BatchIter::new(data) {
        seen += 1;
        assert!(seen <= bound + 1, "header-only iterator did not advance");
        if let Ok(view) = batch {
            assert!(view.size() >= 61 && view.size() <= data.len());
            let _ = view.verify_crc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use sapper_log::batch::testing::simple_batch;
    use sapper_wire::kafka_protocol::messages::{RequestHeader, TopicName};
    use sapper_wire::kafka_protocol::protocol::{Encodable, StrBytes};

    /// xorshift64*: deterministic, dependency-free.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn mutate(rng: &mut Rng, mut data: Vec<u8>) -> Vec<u8> {
        for _ in 0..=rng.below(4) {
            match rng.below(5) {
                0 if !data.is_empty() => {
                    let i = rng.below(data.len());
                    data[i] ^= (rng.next() as u8) | 1;
                }
                1 => data.truncate(rng.below(data.len() + 1)),
                2 => {
                    let n = rng.below(32);
                    data.extend(rng.bytes(n));
                }
                3 if data.len() >= 4 => {
                    let i = rng.below(data.len() - 3);
                    let huge: [[u8; 4]; 4] = [
                        [0x7f, 0xff, 0xff, 0xff],
                        [0xff; 4],
                        [0x80, 0, 0, 0],
                        [0, 0xff, 0xff, 0xff],
                    ];
                    data[i..i + 4].copy_from_slice(&huge[rng.below(4)]);
                }
                _ => {
                    // An unsigned varint of 2^32-1: a huge compact array or string length.
                    let i = rng.below(data.len() + 1);
                    data.splice(i..i, [0xff, 0xff, 0xff, 0xff, 0x0f]);
                }
            }
        }
        data
    }

    /// A real request frame body (header + body) for each served API at `version`.
    fn encoded(api: ApiKey, version: i16) -> Option<Vec<u8>> {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("fuzz")))
            .encode(&mut buf, api.request_header_version(version))
            .ok()?;
        let topic = TopicName(StrBytes::from_static_str("orders"));
        let result = match api {
            ApiKey::Produce => {
                use sapper_wire::kafka_protocol::messages::produce_request::*;
                ProduceRequest::default()
                    .with_acks(1)
                    .with_timeout_ms(1000)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(topic)
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(Bytes::from(simple_batch(2, 1, b"v"))))])])
                    .encode(&mut buf, version)
            }
            ApiKey::Fetch => {
                use sapper_wire::kafka_protocol::messages::fetch_request::*;
                FetchRequest::default()
                    .with_max_wait_ms(10)
                    .with_max_bytes(1 << 20)
                    .with_session_epoch(-1)
                    .with_topics(vec![FetchTopic::default().with_topic(topic).with_partitions(
                        vec![FetchPartition::default().with_partition_max_bytes(1 << 16)],
                    )])
                    .encode(&mut buf, version)
            }
            ApiKey::ListOffsets => {
                use sapper_wire::kafka_protocol::messages::list_offsets_request::*;
                ListOffsetsRequest::default()
                    .with_topics(vec![ListOffsetsTopic::default()
                        .with_name(topic)
                        .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)])])
                    .encode(&mut buf, version)
            }
            ApiKey::Metadata => {
                use sapper_wire::kafka_protocol::messages::metadata_request::*;
                MetadataRequest::default()
                    .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic))]))
                    .encode(&mut buf, version)
            }
            ApiKey::ApiVersions => ApiVersionsRequest::default().encode(&mut buf, version),
            ApiKey::CreateTopics => {
                use sapper_wire::kafka_protocol::messages::create_topics_request::*;
                CreateTopicsRequest::default()
                    .with_topics(vec![CreatableTopic::default()
                        .with_name(topic)
                        .with_num_partitions(1)
                        .with_replication_factor(1)
                        .with_configs(vec![CreatableTopicConfig::default()
                            .with_name(StrBytes::from_static_str("retention.ms"))
                            .with_value(Some(StrBytes::from_static_str("1000")))])])
                    .encode(&mut buf, version)
            }
            ApiKey::DeleteTopics => {
                use sapper_wire::kafka_protocol::messages::delete_topics_request::*;
                let request = if version >= 6 {
                    DeleteTopicsRequest::default()
                        .with_topics(vec![DeleteTopicState::default().with_name(Some(topic))])
                } else {
                    DeleteTopicsRequest::default().with_topic_names(vec![topic])
                };
                request.encode(&mut buf, version)
            }
            ApiKey::InitProducerId => InitProducerIdRequest::default()
                .with_transaction_timeout_ms(1000)
                .encode(&mut buf, version),
            ApiKey::DescribeConfigs => {
                use sapper_wire::kafka_protocol::messages::describe_configs_request::*;
                DescribeConfigsRequest::default()
                    .with_resources(vec![DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("orders"))])
                    .encode(&mut buf, version)
            }
            ApiKey::CreatePartitions => {
                use sapper_wire::kafka_protocol::messages::create_partitions_request::*;
                CreatePartitionsRequest::default()
                    .with_topics(vec![CreatePartitionsTopic::default()
                        .with_name(topic)
                        .with_count(2)])
                    .encode(&mut buf, version)
            }
            ApiKey::DescribeCluster => DescribeClusterRequest::default().encode(&mut buf, version),
            ApiKey::DescribeQuorum => DescribeQuorumRequest::default().encode(&mut buf, version),
            ApiKey::FindCoordinator => FindCoordinatorRequest::default().encode(&mut buf, version),
            ApiKey::JoinGroup => JoinGroupRequest::default().encode(&mut buf, version),
            ApiKey::SyncGroup => SyncGroupRequest::default().encode(&mut buf, version),
            ApiKey::Heartbeat => HeartbeatRequest::default().encode(&mut buf, version),
            ApiKey::LeaveGroup => LeaveGroupRequest::default().encode(&mut buf, version),
            ApiKey::OffsetCommit => OffsetCommitRequest::default().encode(&mut buf, version),
            ApiKey::OffsetFetch => OffsetFetchRequest::default().encode(&mut buf, version),
            ApiKey::ListGroups => ListGroupsRequest::default().encode(&mut buf, version),
            ApiKey::DescribeGroups => DescribeGroupsRequest::default().encode(&mut buf, version),
            ApiKey::DeleteGroups => DeleteGroupsRequest::default().encode(&mut buf, version),
            ApiKey::OffsetDelete => OffsetDeleteRequest::default().encode(&mut buf, version),
            ApiKey::OffsetForLeaderEpoch => OffsetForLeaderEpochRequest::default().encode(&mut buf, version),
            _ => return None,
        };
        result.ok()?;
        Some(buf.to_vec())
    }

    fn seeds() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for served in SUPPORTED_APIS {
            for version in served.min..=served.max {
                if let Some(frame) = encoded(served.key, version) {
                    out.push(frame);
                }
            }
        }
        out
    }

    #[test]
    fn every_served_api_has_a_seed_that_decodes() {
        for served in SUPPORTED_APIS {
            for version in served.min..=served.max {
                let frame =
                    encoded(served.key, version).unwrap_or_else(|| panic!("{:?} v{version}", served.key));
                let mut frame = Bytes::from(frame);
                let (api, header) = decode_header(&mut frame).unwrap();
                assert_eq!(api, served.key);
                assert!(
                    decode_as(api, header.request_api_version, frame),
                    "{api:?} v{version}"
                );
            }
        }
    }

    #[test]
    fn random_and_mutated_requests_never_panic() {
        let mut rng = Rng(0x5eed_0001);
        let seeds = seeds();
        for _ in 0..100_000 {
            let input = match rng.below(3) {
                0 => {
                    let n = rng.below(256);
                    rng.bytes(n)
                }
                _ => {
                    let seed = seeds[rng.below(seeds.len())].clone();
                    mutate(&mut rng, seed)
                }
            };
            decode_request(&input);
        }
    }

    #[test]
    fn random_and_mutated_batches_never_panic() {
        let mut rng = Rng(0x5eed_0002);
        for _ in 0..100_000 {
            let input = if rng.below(4) == 0 {
                let n = rng.below(200);
                rng.bytes(n)
            } else {
                let count = 1 + rng.below(3) as i32;
                let n = rng.below(40);
                let value = rng.bytes(n);
                let mut two = simple_batch(count, 5, &value);
                if rng.below(2) == 0 {
                    two.extend(simple_batch(1, 6, b"x"));
                }
                mutate(&mut rng, two)
            };
            iterate_batches(&input);
        }
    }

    /// Writes the seed corpus libFuzzer starts from: `cargo test --release -- --ignored`.
    #[test]
    #[ignore = "writes fuzz/corpus; run before `cargo fuzz run`"]
    fn write_seed_corpus() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        let requests = root.join("request_decode");
        let batches = root.join("batch_iter");
        std::fs::create_dir_all(&requests).unwrap();
        std::fs::create_dir_all(&batches).unwrap();
        for (i, seed) in seeds().iter().enumerate() {
            std::fs::write(requests.join(format!("seed-{i:03}")), seed).unwrap();
        }
        std::fs::write(batches.join("seed-one"), simple_batch(1, 5, b"hello")).unwrap();
        let mut two = simple_batch(3, 5, b"abc");
        two.extend(simple_batch(2, 6, b"defg"));
        std::fs::write(batches.join("seed-two"), two).unwrap();
    }
}
