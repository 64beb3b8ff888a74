//! The one error type at the library boundary, phrased for the operator who reads it: what
//! failed, against which broker or group, and Kafka's own error name where the broker gave one.

use kafka_protocol::error::ResponseError;
use thiserror::Error;

/// Why a `sapper group` command failed. Each variant renders as one line.
#[derive(Debug, Error)]
pub enum OpsError {
    #[error("invalid broker address {addr:?}: {reason} (expected HOST:PORT)")]
    BadAddress { addr: String, reason: String },
    #[error("cannot reach the broker at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{api} to {addr} failed: {reason}")]
    Request {
        api: String,
        addr: String,
        reason: String,
    },
    #[error("{api} failed: {}", kafka_error_name(*.code))]
    Kafka { api: String, code: i16 },
    #[error("group {0:?} does not exist")]
    GroupNotFound(String),
    #[error("group {0:?} has no commits in __sapper_offset_history (unknown group, or its history expired)")]
    NoHistory(String),
    #[error(
        "invalid time {0:?}: expected RFC 3339 in UTC (2026-11-25T10:00:00Z), epoch milliseconds, \
         or a duration ago (15m, 2h, 1d)"
    )]
    InvalidTime(String),
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },
    #[error("could not delete {0}")]
    DeleteFailed(String),
}

/// Kafka's name for an error code, as its tools print it: `NON_EMPTY_GROUP` for 68.
pub fn kafka_error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(code)) => format!("UNKNOWN_ERROR_CODE_{code}"),
        // kafka-protocol names its variants after Kafka's in CamelCase (`NonEmptyGroup`).
        Some(known) => screaming_snake(&known.to_string()),
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_get_kafkas_names() {
        assert_eq!(kafka_error_name(68), "NON_EMPTY_GROUP");
        assert_eq!(kafka_error_name(69), "GROUP_ID_NOT_FOUND");
        assert_eq!(kafka_error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(kafka_error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(kafka_error_name(0), "NONE");
        assert_eq!(kafka_error_name(30_000), "UNKNOWN_ERROR_CODE_30000");
    }

    #[test]
    fn errors_render_on_one_line() {
        let e = OpsError::Kafka {
            api: "DeleteGroups".into(),
            code: 68,
        };
        assert_eq!(e.to_string(), "DeleteGroups failed: NON_EMPTY_GROUP");
        assert!(!OpsError::InvalidTime("x".into()).to_string().contains('\n'));
    }
}
