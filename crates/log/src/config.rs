//! Per-log settings, named after the Kafka topic configs they implement (`segment.bytes`,
//! `segment.ms`, `retention.ms`, `retention.bytes`, `index.interval.bytes`, `cleanup.policy`
//! and the compaction settings) plus the flush policy. Defaults are Kafka's, and live here only.

/// Kafka's default `segment.bytes`: 1 GiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;
/// Kafka's default `segment.ms` and `retention.ms`: 7 days.
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's default `index.interval.bytes`.
pub const DEFAULT_INDEX_INTERVAL_BYTES: u32 = 4096;

/// Kafka's default `delete.retention.ms`: 1 day.
pub const DEFAULT_DELETE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
/// Kafka's default `min.cleanable.dirty.ratio`.
pub const DEFAULT_MIN_CLEANABLE_DIRTY_RATIO: f64 = 0.5;

/// Kafka's `cleanup.policy`: what happens to old segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// Retention deletes whole old segments (`delete`).
    #[default]
    Delete,
    /// The cleaner keeps the latest record per key (`compact`); retention deletes nothing.
    Compact,
    /// Both (`compact,delete`).
    CompactDelete,
}

impl CleanupPolicy {
    /// Whether the cleaner compacts this log (and produce requires keys).
    pub fn compacts(self) -> bool {
        matches!(self, Self::Compact | Self::CompactDelete)
    }
    /// Whether time and size retention delete old segments.
    pub fn deletes(self) -> bool {
        matches!(self, Self::Delete | Self::CompactDelete)
    }
}

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
    /// `cleanup.policy`: retention, compaction or both.
    pub cleanup_policy: CleanupPolicy,
    /// `min.compaction.lag.ms`: a record stays uncompacted at least this long (by its segment's
    /// largest timestamp).
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty segment older than this is cleaned whatever the dirty
    /// ratio.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long a tombstone (null value) survives, counted from its
    /// batch's largest timestamp.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: clean only once this share of the cleanable bytes is dirty.
    pub min_cleanable_dirty_ratio: f64,
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
            cleanup_policy: CleanupPolicy::Delete,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: DEFAULT_DELETE_RETENTION_MS,
            min_cleanable_dirty_ratio: DEFAULT_MIN_CLEANABLE_DIRTY_RATIO,
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
        assert_eq!(c.cleanup_policy, CleanupPolicy::Delete);
        assert_eq!((c.min_compaction_lag_ms, c.max_compaction_lag_ms), (0, i64::MAX));
        assert_eq!(c.delete_retention_ms, 86_400_000);
        assert_eq!(c.min_cleanable_dirty_ratio, 0.5);
    }
}
