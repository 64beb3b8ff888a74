//! How internal failures become Kafka error codes. One place, so every handler answers the
//! same failure the same way.

use kafka_protocol::error::ResponseError;
use sapper_log::producer_state::SequenceError;
use sapper_log::LogError;

/// The Kafka error code for a log failure.
pub fn log_error_code(error: &LogError) -> i16 {
    match error {
        LogError::CorruptBatch(_) => ResponseError::CorruptMessage.code(),
        LogError::Sequence(SequenceError::OutOfOrder { .. }) => {
            ResponseError::OutOfOrderSequenceNumber.code()
        }
        LogError::Sequence(SequenceError::InvalidEpoch { .. }) => ResponseError::InvalidProducerEpoch.code(),
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        LogError::Io { .. } | LogError::Offline { .. } => ResponseError::KafkaStorageError.code(),
    }
}

/// Shorthand for a `ResponseError`'s numeric code.
pub fn code(error: ResponseError) -> i16 {
    error.code()
}

pub const NONE: i16 = 0;
