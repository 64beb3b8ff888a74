//! Request dispatch: one frame in, at most one response frame out.
//!
//! Every API is routed through one table-like `match`. A version outside what we serve is
//! answered with UNSUPPORTED_VERSION in the shape the client asked for (ApiVersions falls back
//! to v0, as Kafka does, so the client can learn our ranges). A frame we cannot decode is a
//! [`DispatchError`], and the connection that sent it is closed.

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use sapper_wire::api;
use sapper_wire::codec::{self, DecodeError, EncodeError};
use thiserror::Error;

use crate::broker::Broker;
use crate::handlers;

/// A request that cannot be answered; its connection is closed.
#[derive(Debug, Error)]
pub enum DispatchError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("API {0:?} is not served")]
    UnsupportedApi(ApiKey),
}

/// Decodes `frame`, runs its handler and appends the response frame (if any) to `out`.
pub async fn dispatch(broker: &Broker, mut frame: Bytes, out: &mut BytesMut) -> Result<(), DispatchError> {
    let (api_key, header) = codec::decode_header(&mut frame)?;
    let version = header.request_api_version;
    let correlation_id = header.correlation_id;
    let supported = api::is_supported(api_key, version);

    if api_key == ApiKey::ApiVersions {
        let (response, version) = handlers::api_versions::handle(version, supported);
        return Ok(codec::encode_response(
            out,
            api_key,
            version,
            correlation_id,
            &response,
        )?);
    }
    if api::supported(api_key).is_none() {
        return Err(DispatchError::UnsupportedApi(api_key));
    }
    let codec_range = api_key.valid_versions();
    if version < codec_range.min || version > codec_range.max {
        // Not even decodable: nothing sensible to answer with.
        return Err(DispatchError::Decode(DecodeError::Body {
            api: api_key,
            version,
            message: codec::anyhow_string::Message("version outside the codec's range".into()),
        }));
    }
    let unsupported = ResponseError::UnsupportedVersion.code();

    macro_rules! route {
        ($module:ident, $request:ty) => {{
            let request: $request = codec::decode_body(api_key, &mut frame, version)?;
            let response = if supported {
                handlers::$module::handle(broker, request, version).await
            } else {
                handlers::$module::error_response(&request, unsupported)
            };
            codec::encode_response(out, api_key, version, correlation_id, &response)?;
        }};
    }

    match api_key {
        ApiKey::Produce => {
            let request: ProduceRequest = codec::decode_body(api_key, &mut frame, version)?;
            let acks = request.acks;
            let response = if supported {
                handlers::produce::handle(broker, request, version).await
            } else {
                handlers::produce::error_response(&request, unsupported)
            };
            // acks=0: Kafka sends no response at all.
            if acks != 0 {
                codec::encode_response(out, api_key, version, correlation_id, &response)?;
            }
        }
        ApiKey::Fetch => route!(fetch, FetchRequest),
        ApiKey::ListOffsets => route!(list_offsets, ListOffsetsRequest),
        ApiKey::Metadata => route!(metadata, MetadataRequest),
        ApiKey::CreateTopics => route!(create_topics, CreateTopicsRequest),
        ApiKey::DeleteTopics => route!(delete_topics, DeleteTopicsRequest),
        ApiKey::InitProducerId => route!(init_producer_id, InitProducerIdRequest),
        ApiKey::DescribeConfigs => route!(describe_configs, DescribeConfigsRequest),
        ApiKey::CreatePartitions => route!(create_partitions, CreatePartitionsRequest),
        ApiKey::DescribeCluster => route!(describe_cluster, DescribeClusterRequest),
        ApiKey::FindCoordinator => route!(find_coordinator, FindCoordinatorRequest),
        ApiKey::JoinGroup => {
            // JoinGroup also records the client id from the header (DescribeGroups shows it).
            let request: JoinGroupRequest = codec::decode_body(api_key, &mut frame, version)?;
            let client_id = header.client_id.as_deref().unwrap_or_default().to_string();
            let response = if supported {
                handlers::join_group::handle_for_client(broker, request, version, &client_id).await
            } else {
                handlers::join_group::error_response(&request, unsupported)
            };
            codec::encode_response(out, api_key, version, correlation_id, &response)?;
        }
        ApiKey::SyncGroup => route!(sync_group, SyncGroupRequest),
        ApiKey::Heartbeat => route!(heartbeat, HeartbeatRequest),
        ApiKey::LeaveGroup => route!(leave_group, LeaveGroupRequest),
        ApiKey::OffsetCommit => route!(offset_commit, OffsetCommitRequest),
        ApiKey::OffsetFetch => route!(offset_fetch, OffsetFetchRequest),
        ApiKey::ListGroups => route!(list_groups, ListGroupsRequest),
        ApiKey::DescribeGroups => route!(describe_groups, DescribeGroupsRequest),
        ApiKey::DeleteGroups => route!(delete_groups, DeleteGroupsRequest),
        ApiKey::OffsetDelete => route!(offset_delete, OffsetDeleteRequest),
        other => return Err(DispatchError::UnsupportedApi(other)),
    }
    Ok(())
}
