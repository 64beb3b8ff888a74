//! Request frames to typed headers and bodies; typed responses to frames.
//!
//! Decoding never panics on peer input: the header's API key and version are read only after
//! the frame is known to be long enough, and bodies go through `kafka-protocol`'s `Result`
//! decoders.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message};
use thiserror::Error;

/// Why a request could not be decoded. All of these close the connection except where the
/// dispatcher can still answer (it has the header and the API is known).
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("malformed request header: {0}")]
    Header(anyhow_string::Message),
    #[error("malformed {api:?} v{version} body: {message}")]
    Body {
        api: ApiKey,
        version: i16,
        message: anyhow_string::Message,
    },
}

/// A String newtype so error enums stay `thiserror`-typed without exposing `anyhow`.
pub mod anyhow_string {
    /// The text of a decode failure reported by the codec.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Message(pub String);
    impl std::fmt::Display for Message {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
}

/// The API key and version at the front of every request, read without decoding the rest.
pub fn peek_api(frame: &[u8]) -> Result<(ApiKey, i16), DecodeError> {
    let (Some(k), Some(v)) = (frame.get(0..2), frame.get(2..4)) else {
        return Err(DecodeError::TooShort(frame.len()));
    };
    let too_short = || DecodeError::TooShort(frame.len());
    let key = i16::from_be_bytes(k.try_into().map_err(|_| too_short())?);
    let version = i16::from_be_bytes(v.try_into().map_err(|_| too_short())?);
    let api = ApiKey::try_from(key).map_err(|()| DecodeError::UnknownApiKey(key))?;
    Ok((api, version))
}

/// Decodes the request header (whose own version depends on the API and its version).
pub fn decode_header(frame: &mut Bytes) -> Result<(ApiKey, RequestHeader), DecodeError> {
    let (api, version) = peek_api(frame)?;
    let header_version = if api.valid_versions().min <= version && version <= api.valid_versions().max {
        api.request_header_version(version)
    } else {
        // Outside what the codec knows: decode the v1 header (no tagged fields), which every
        // version starts with, so we can still answer UNSUPPORTED_VERSION with the right id.
        1
    };
    let header = RequestHeader::decode(frame, header_version)
        .map_err(|e| DecodeError::Header(anyhow_string::Message(e.to_string())))?;
    Ok((api, header))
}

/// Decodes a request body of type `T` at `version`.
pub fn decode_body<T: Decodable>(api: ApiKey, frame: &mut Bytes, version: i16) -> Result<T, DecodeError> {
    T::decode(frame, version).map_err(|e| DecodeError::Body {
        api,
        version,
        message: anyhow_string::Message(e.to_string()),
    })
}

/// Why a response could not be encoded (a bug on our side, never the peer's).
#[derive(Debug, Error)]
#[error("cannot encode {api:?} v{version} response: {message}")]
pub struct EncodeError {
    pub api: ApiKey,
    pub version: i16,
    pub message: String,
}

/// Appends one complete response frame (size, header, body) to `out`.
pub fn encode_response<T: Encodable + HeaderVersion + Message>(
    out: &mut BytesMut,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<(), EncodeError> {
    let err = |e: anyhow_string::Message| EncodeError {
        api,
        version,
        message: e.0,
    };
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api.response_header_version(version);
    let result = header
        .encode(out, header_version)
        .and_then(|()| body.encode(out, version))
        .map_err(|e| anyhow_string::Message(e.to_string()));
    if let Err(e) = result {
        out.truncate(start);
        return Err(err(e));
    }
    let size = (out.len() - start - 4) as i32;
    if let Some(prefix) = out.get_mut(start..start + 4) {
        prefix.copy_from_slice(&size.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsRequest;
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn header_round_trip() {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::ApiVersions as i16)
            .with_request_api_version(3)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        header
            .encode(&mut buf, ApiKey::ApiVersions.request_header_version(3))
            .unwrap();
        ApiVersionsRequest::default().encode(&mut buf, 3).unwrap();
        let mut frame = buf.freeze();
        let (api, decoded) = decode_header(&mut frame).unwrap();
        assert_eq!(api, ApiKey::ApiVersions);
        assert_eq!(decoded.correlation_id, 7);
        let _: ApiVersionsRequest = decode_body(api, &mut frame, 3).unwrap();
    }

    #[test]
    fn short_and_unknown_frames_are_errors() {
        assert!(matches!(peek_api(&[0, 1]), Err(DecodeError::TooShort(2))));
        assert!(matches!(
            peek_api(&[0x7f, 0, 0, 0]),
            Err(DecodeError::UnknownApiKey(_))
        ));
    }
}
