//! Per-log settings, named after the Kafka topic configs they implement (`segment.bytes`,
//! `segment.ms`, `retention.ms`, `retention.bytes`, `index.interval.bytes`) plus the flush
//! policy. Defaults are Kafka's, and live here only.

/// Kafka's default `segment.bytes`: 1 GiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;
/// Kafka's default `segment.ms` and `retention.ms`: 7 days.
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's default `index.interval.bytes`.
pub const DEFAULT_INDEX_INTERVAL_BYTES: u32 = 4096;

/// When appended bytes are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Leave durability to the page cache and to replication (Kafka's default).
    PageCache,
    /// `fdatasync` the segment after every append, before answering.
    EveryBatch,
    /// The broker calls [`crate::Log::flush`] every this many milliseconds.
    IntervalMs(u64),
}

/// The settings of one partition log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll to a new segment before the active one would exceed this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll a non-empty active segment once its first append is this old.
    pub segment_ms: i64,
    /// `retention.ms`: delete segments whose largest timestamp is older; -1 = unlimited.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while the log is larger; -1 = unlimited.
    pub retention_bytes: i64,
    /// `index.interval.bytes`: bytes appended between two sparse index entries.
    pub index_interval_bytes: u32,
    /// When appends are fsynced.
    pub flush: FlushPolicy,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: DEFAULT_RETENTION_MS,
            retention_ms: DEFAULT_RETENTION_MS,
            retention_bytes: -1,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            flush: FlushPolicy::PageCache,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_kafka() {
        let c = LogConfig::default();
        assert_eq!(c.segment_bytes, 1_073_741_824);
        assert_eq!(c.segment_ms, 604_800_000);
        assert_eq!(c.retention_ms, 604_800_000);
        assert_eq!(c.retention_bytes, -1);
        assert_eq!(c.index_interval_bytes, 4096);
        assert_eq!(c.flush, FlushPolicy::PageCache);
    }
}
