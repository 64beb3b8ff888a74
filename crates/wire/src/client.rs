//! A minimal async Kafka client: one connection, one request in flight at a time.
//!
//! It exists for Sapper's own tests and tools (raw-protocol checks, robustness tests, the
//! control plane later). Real-client compatibility is tested with librdkafka, kafka-python
//! and kcat, never with this.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
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
