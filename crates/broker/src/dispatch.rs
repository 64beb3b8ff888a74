//! Request dispatch: one frame in, at most one response frame out.
//!
//! Every API is routed through one table-like `match`. A version outside what we serve is
//! answered with UNSUPPORTED_VERSION in the shape the client asked for (ApiVersions falls back
//! to v0, as Kafka does, so the client can learn our ranges). A frame we cannot decode is a
//! [`DispatchError`], and the connection that sent it is closed.
//!
//! Handlers see the request body only; the few that need to know who is asking (JoinGroup
//! records the member's client id and host) also get a [`RequestContext`].

use std::net::SocketAddr;

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

/// Who sent a request: the connection's peer and the request header's client id.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// The client's address, when the socket could tell.
    pub peer: Option<SocketAddr>,
    /// The header's client id ("" when absent).
    pub client_id: &'a str,
}

impl RequestContext<'_> {
    /// The client's host as Kafka reports it (DescribeGroups): "/" and the IP address.
    pub fn client_host(&self) -> String {
        match self.peer {
            Some(addr) => format!("/{}", addr.ip()),
            None => "/".to_string(),
        }
    }
}

/// Decodes `frame`, runs its handler and appends the response frame (if any) to `out`.
/// `peer` is the address of the connection the frame came from.
pub async fn dispatch(
    broker: &Broker,
    peer: Option<SocketAddr>,
    mut frame: Bytes,
    out: &mut BytesMut,
) -> Result<(), DispatchError> {
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
    let ctx = RequestContext {
        peer,
        client_id: header.client_id.as_deref().unwrap_or_default(),
    };

    // `route!(module, Request)` calls `module::handle(broker, request, version)`;
    // `route!(module, Request, ctx)` calls `module::handle_in(broker, &ctx, request, version)`.
    macro_rules! route {
        (@call $module:ident, $request:ident) => {
            handlers::$module::handle(broker, $request, version)
        };
        (@call $module:ident, $request:ident, $ctx:ident) => {
            handlers::$module::handle_in(broker, &$ctx, $request, version)
        };
        ($module:ident, $request:ty $(, $ctx:ident)?) => {{
            let request: $request = codec::decode_body(api_key, &mut frame, version)?;
            let response = if supported {
                route!(@call $module, request $(, $ctx)?).await
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
        ApiKey::DescribeQuorum => route!(describe_quorum, DescribeQuorumRequest),
        ApiKey::ElectLeaders => route!(elect_leaders, ElectLeadersRequest),
        ApiKey::AddRaftVoter => route!(add_raft_voter, AddRaftVoterRequest),
        ApiKey::RemoveRaftVoter => route!(remove_raft_voter, RemoveRaftVoterRequest),
        ApiKey::FindCoordinator => route!(find_coordinator, FindCoordinatorRequest),
        ApiKey::JoinGroup => route!(join_group, JoinGroupRequest, ctx),
        ApiKey::SyncGroup => route!(sync_group, SyncGroupRequest),
        ApiKey::Heartbeat => route!(heartbeat, HeartbeatRequest),
        ApiKey::LeaveGroup => route!(leave_group, LeaveGroupRequest),
        ApiKey::OffsetCommit => route!(offset_commit, OffsetCommitRequest),
        ApiKey::OffsetFetch => route!(offset_fetch, OffsetFetchRequest),
        ApiKey::ListGroups => route!(list_groups, ListGroupsRequest),
        ApiKey::DescribeGroups => route!(describe_groups, DescribeGroupsRequest),
        ApiKey::DeleteGroups => route!(delete_groups, DeleteGroupsRequest),
        ApiKey::OffsetDelete => route!(offset_delete, OffsetDeleteRequest),
        ApiKey::OffsetForLeaderEpoch => route!(offset_for_leader_epoch, OffsetForLeaderEpochRequest),
        other => return Err(DispatchError::UnsupportedApi(other)),
    }
    Ok(())
}
