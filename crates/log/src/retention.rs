//! Which old segments may go: a pure decision over segment summaries, following Kafka's
//! `deleteRetentionMsBreachedSegments`, `deleteRetentionSizeBreachedSegments` and
//! `deleteLogStartOffsetBreachedSegments`. Only a prefix of whole segments is ever deleted, and
//! never the active (last) segment.

use crate::config::LogConfig;

/// What retention needs to know about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentSummary {
    pub base_offset: i64,
    pub size: u64,
    /// The segment's largest record timestamp (or file mtime when it has none).
    pub largest_timestamp: i64,
}

/// How many of the oldest `segments` (ordered by base offset, active last) to delete at
/// `now_ms`: a segment goes if its largest timestamp is more than `retention.ms` old, if the
/// log would still be at least `retention.bytes` without it, or if it lies wholly below
/// `log_start_offset`. Stops at the first segment that must stay.
pub(crate) fn deletable_prefix(
    segments: &[SegmentSummary],
    log_start_offset: i64,
    now_ms: i64,
    config: &LogConfig,
) -> usize {
    let total: u64 = segments.iter().map(|s| s.size).sum();
    let mut excess = if config.retention_bytes >= 0 {
        i128::from(total) - i128::from(config.retention_bytes)
    } else {
        0
    };
    let mut deleted = 0;
    for pair in segments.windows(2) {
        let [seg, next] = pair else { break };
        let by_time =
            config.retention_ms >= 0 && now_ms.saturating_sub(seg.largest_timestamp) > config.retention_ms;
        let by_size = config.retention_bytes >= 0 && excess - i128::from(seg.size) >= 0;
        let by_start = next.base_offset <= log_start_offset;
        if !(by_time || by_size || by_start) {
            break;
        }
        excess -= i128::from(seg.size);
        deleted += 1;
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(list: &[(i64, u64, i64)]) -> Vec<SegmentSummary> {
        list.iter()
            .map(|&(base_offset, size, largest_timestamp)| SegmentSummary {
                base_offset,
                size,
                largest_timestamp,
            })
            .collect()
    }

    fn config(retention_ms: i64, retention_bytes: i64) -> LogConfig {
        LogConfig {
            retention_ms,
            retention_bytes,
            ..LogConfig::default()
        }
    }

    #[test]
    fn time_retention_deletes_expired_prefix_but_never_the_active_segment() {
        let s = segs(&[(0, 10, 100), (5, 10, 200), (9, 10, 1_000), (12, 10, 100)]);
        assert_eq!(deletable_prefix(&s, 0, 1_150, &config(900, -1)), 2);
        assert_eq!(
            deletable_prefix(&s, 0, 10_000, &config(900, -1)),
            3,
            "active stays"
        );
        assert_eq!(deletable_prefix(&s, 0, 10_000, &config(-1, -1)), 0, "unlimited");
    }

    #[test]
    fn size_retention_keeps_at_least_retention_bytes() {
        let s = segs(&[(0, 10, 0), (5, 10, 0), (9, 10, 0), (12, 5, 0)]);
        assert_eq!(deletable_prefix(&s, 0, 0, &config(-1, 25)), 1);
        assert_eq!(deletable_prefix(&s, 0, 0, &config(-1, 15)), 2);
        assert_eq!(deletable_prefix(&s, 0, 0, &config(-1, 0)), 3);
        assert_eq!(deletable_prefix(&s, 0, 0, &config(-1, 35)), 0);
    }

    #[test]
    fn segments_below_log_start_offset_go() {
        let s = segs(&[(0, 10, 0), (5, 10, 0), (9, 10, 0)]);
        assert_eq!(deletable_prefix(&s, 7, 0, &config(-1, -1)), 1);
        assert_eq!(deletable_prefix(&s, 9, 0, &config(-1, -1)), 2);
    }
}
