#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Request decoding never panics (or aborts on a huge allocation), whatever the bytes.
//!
//! Random frames go through `decode_header` and then the body decoder the header names, as the
//! broker's dispatcher does; random bodies also go straight to every served API's body decoder
//! at every version the codec knows (and one either side). The longer-running, coverage-guided
//! version of this is `fuzz/` (cargo-fuzz).

use bytes::Bytes;
use proptest::prelude::*;
use sapper_wire::api::{self, SUPPORTED_APIS};
use sapper_wire::codec::{decode_body, decode_header};
use sapper_wire::kafka_protocol::messages::*;
use sapper_wire::kafka_protocol::protocol::{Encodable, StrBytes};

/// Decodes `body` as `api`'s request at `version`; true when it decoded. Every served API must
/// have an arm: a missing one fails the test by name.
fn decode_as(api: ApiKey, version: i16, mut body: Bytes) -> bool {
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
        ApiKey::ElectLeaders => decode!(ElectLeadersRequest),
        ApiKey::AddRaftVoter => decode!(AddRaftVoterRequest),
        ApiKey::RemoveRaftVoter => decode!(RemoveRaftVoterRequest),
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
                "{other:?} is served but has no arm in decode_never_panics.rs"
            );
            false
        }
    }
}

/// What the dispatcher does with a frame, minus the handler.
fn decode_frame(frame: &[u8]) {
    let mut frame = Bytes::copy_from_slice(frame);
    if let Ok((api, header)) = decode_header(&mut frame) {
        decode_as(api, header.request_api_version, frame);
    }
}

/// A request header that decodes, for `served` at `version`.
fn header(api: ApiKey, version: i16) -> Vec<u8> {
    let mut buf = Vec::new();
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("proptest")))
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    buf
}

/// Byte patterns decoders trust: huge and negative i32 counts, negative i16 lengths, and
/// unsigned varints of 2^32-1 (compact counts and lengths).
fn hostile_chunk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![0x7f, 0xff, 0xff, 0xff]),
        Just(vec![0xff, 0xff, 0xff, 0xfe]),
        Just(vec![0x80, 0x00, 0x00, 0x00]),
        Just(vec![0x00, 0xff, 0xff, 0xff]),
        Just(vec![0xff, 0xfe]),
        Just(vec![0x80, 0x00]),
        Just(vec![0xff, 0xff, 0xff, 0xff, 0x0f]),
        Just(vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
    ]
}

/// Random bytes with hostile chunks spliced in.
fn body() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(hostile_chunk(), 0..3),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(head, chunks, tail)| {
            let mut out = head;
            for chunk in chunks {
                out.extend(chunk);
            }
            out.extend(tail);
            out
        })
}

/// A served API and a version from one below its codec range to one above.
fn api_and_version() -> impl Strategy<Value = (ApiKey, i16)> {
    (0..SUPPORTED_APIS.len(), any::<u16>()).prop_map(|(i, v)| {
        let key = SUPPORTED_APIS[i].key;
        let codec = key.valid_versions();
        let span = (codec.max - codec.min + 3) as u16;
        (key, codec.min - 1 + (v % span) as i16)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn random_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_frame(&frame);
    }

    #[test]
    fn valid_headers_with_random_bodies_never_panic((api, version) in api_and_version(), body in body()) {
        let served = api::supported(api).unwrap();
        let version = version.clamp(served.min, served.max);
        let mut frame = header(api, version);
        frame.extend(body);
        decode_frame(&frame);
    }

    #[test]
    fn random_bodies_never_panic_in_any_decoder((api, version) in api_and_version(), body in body()) {
        decode_as(api, version, Bytes::from(body));
    }
}

/// The case the vendored patch exists for: a few bytes announcing 2^31-1 array elements
/// must be refused, not pre-allocated (which would abort the process).
#[test]
fn huge_array_counts_are_refused_without_allocating() {
    for served in SUPPORTED_APIS {
        let codec = served.key.valid_versions();
        for version in codec.min..=codec.max {
            for chunk in [&[0x7f, 0xff, 0xff, 0xff][..], &[0xff, 0xff, 0xff, 0xff, 0x0f][..]] {
                for skip in 0..8 {
                    let mut body = vec![0u8; skip];
                    body.extend_from_slice(chunk);
                    body.extend_from_slice(&[0; 4]);
                    decode_as(served.key, version, Bytes::from(body));
                }
            }
        }
    }
}
