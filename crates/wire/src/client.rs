//! A minimal async Kafka client: one connection, one request in flight at a time.
//!
//! It exists for Sapper's own tests and tools (raw-protocol checks, robustness tests, the
//! control plane later). Real-client compatibility is tested with librdkafka, kafka-python
//! and kcat, never with this.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Message, Request, StrBytes};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::frame::{FrameError, FrameReader, DEFAULT_MAX_FRAME_BYTES};

/// Client-side failures.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("connection closed before the response")]
    Closed,
    #[error("codec: {0}")]
    Codec(String),
    #[error("response correlation id {got} does not match request {expected}")]
    Correlation { expected: i32, got: i32 },
    #[error("ApiVersions failed with error code {0}")]
    ApiVersions(i16),
    #[error("the broker serves no {api:?} version in {min}..={max} that this client speaks")]
    NoCommonVersion { api: ApiKey, min: i16, max: i16 },
}

/// The version ranges a broker advertised in ApiVersions, by API key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerVersions(Vec<(i16, i16, i16)>);

impl BrokerVersions {
    /// The broker's inclusive range for `key`, if it serves it.
    pub fn range(&self, key: i16) -> Option<(i16, i16)> {
        self.0
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, min, max)| (*min, *max))
    }

    /// The highest version of `R` within `min..=max` that both the broker and the codec speak.
    pub fn pick<R: Request>(&self, min: i16, max: i16) -> Result<i16, ClientError> {
        let api = ApiKey::try_from(R::KEY).map_err(|()| ClientError::Codec("unknown key".into()))?;
        let codec = <R as Message>::VERSIONS;
        self.range(R::KEY)
            .map(|(broker_min, broker_max)| {
                (
                    min.max(broker_min).max(codec.min),
                    max.min(broker_max).min(codec.max),
                )
            })
            .filter(|(low, high)| low <= high)
            .map(|(_, high)| high)
            .ok_or(ClientError::NoCommonVersion { api, min, max })
    }
}

/// One TCP connection to a Kafka-compatible broker.
#[derive(Debug)]
pub struct Client {
    reader: FrameReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    next_correlation_id: i32,
    client_id: StrBytes,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, writer) = stream.into_split();
        Ok(Self {
            reader: FrameReader::new(read, DEFAULT_MAX_FRAME_BYTES),
            writer,
            next_correlation_id: 1,
            client_id: StrBytes::from_static_str("sapper-wire-client"),
        })
    }

    /// Connects and asks the broker which versions it serves (ApiVersions v0, which every
    /// broker answers), for [`BrokerVersions::pick`].
    pub async fn bootstrap(addr: SocketAddr) -> Result<(Self, BrokerVersions), ClientError> {
        let mut client = Self::connect(addr).await?;
        let response = client.send(&ApiVersionsRequest::default(), 0).await?;
        if response.error_code != 0 {
            return Err(ClientError::ApiVersions(response.error_code));
        }
        let versions = response
            .api_keys
            .iter()
            .map(|a| (a.api_key, a.min_version, a.max_version))
            .collect();
        Ok((client, BrokerVersions(versions)))
    }

    /// Sets the `client.id` sent in every request header (brokers show it in DescribeGroups).
    pub fn set_client_id(&mut self, client_id: &str) {
        self.client_id = StrBytes::from_string(client_id.to_string());
    }

    /// Sends `request` at `version` and waits for its response. Not for acks=0 Produce,
    /// which Kafka answers with silence.
    pub async fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, ClientError> {
        let api = ApiKey::try_from(R::KEY).map_err(|()| ClientError::Codec("unknown key".into()))?;
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        header
            .encode(&mut buf, api.request_header_version(version))
            .and_then(|()| request.encode(&mut buf, version))
            .map_err(|e| ClientError::Codec(e.to_string()))?;
        crate::frame::finish_frame(&mut buf);
        self.writer.write_all(&buf).await?;
        let mut frame = self.reader.read_frame().await?.ok_or(ClientError::Closed)?;
        let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
            .map_err(|e| ClientError::Codec(e.to_string()))?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::Correlation {
                expected: correlation_id,
                got: header.correlation_id,
            });
        }
        R::Response::decode(&mut frame, version).map_err(|e| ClientError::Codec(e.to_string()))
    }

    /// Writes raw bytes (already framed or deliberately not) to the socket.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.writer.write_all(bytes).await?;
        Ok(())
    }

    /// Reads one raw response frame.
    pub async fn read_raw(&mut self) -> Result<Option<Bytes>, ClientError> {
        Ok(self.reader.read_frame().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{FetchRequest, ListGroupsRequest};

    #[test]
    fn pick_takes_the_highest_common_version() {
        let versions = BrokerVersions(vec![
            (ApiKey::Fetch as i16, 4, 12),
            (ApiKey::ListGroups as i16, 0, 2),
        ]);
        assert_eq!(versions.pick::<FetchRequest>(4, 11).unwrap(), 11);
        assert_eq!(versions.pick::<FetchRequest>(0, 99).unwrap(), 12);
        assert_eq!(versions.pick::<ListGroupsRequest>(0, 4).unwrap(), 2);
        assert!(versions.pick::<ListGroupsRequest>(3, 4).is_err());
        assert!(BrokerVersions::default().pick::<FetchRequest>(4, 12).is_err());
    }
}
