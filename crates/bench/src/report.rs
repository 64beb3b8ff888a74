//! Benchmark reports: what a run measured, serialisable to JSON for scripts and printable for
//! people.
//!
//! Throughput counts payload bytes only (no keys, headers or batch framing), the way
//! `kafka-producer-perf-test` does, and "MB" is a mebibyte ([`BYTES_PER_MB`]).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// Bytes in one "MB" of the `mb_per_sec` figures (a mebibyte, as Kafka's perf tools use).
pub const BYTES_PER_MB: f64 = 1024.0 * 1024.0;

/// Records per second and MB per second for `records` records of `bytes` total payload
/// moved in `elapsed`; both zero for an empty or instantaneous run.
pub fn rates(records: u64, bytes: u64, elapsed: Duration) -> (f64, f64) {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return (0.0, 0.0);
    }
    (records as f64 / secs, bytes as f64 / BYTES_PER_MB / secs)
}

/// A latency distribution, in milliseconds.
#[derive(Serialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest observation.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// Outcome of a produce run.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ProduceReport {
    /// Topic written to.
    pub topic: String,
    /// Partitions the records were spread over (round-robin).
    pub partitions: usize,
    /// Payload bytes per record.
    pub record_size: usize,
    /// Records the broker acknowledged.
    pub records: u64,
    /// Payload bytes the broker acknowledged.
    pub bytes: u64,
    /// Records handed to the client (acknowledged, failed, or still in flight at the deadline).
    pub sent: u64,
    /// Records that failed delivery or were still unacknowledged when the run had to stop.
    pub errors: u64,
    /// Seconds from the first send to the last acknowledgement.
    pub elapsed_secs: f64,
    /// Acknowledged records per second.
    pub msgs_per_sec: f64,
    /// Acknowledged payload MB per second.
    pub mb_per_sec: f64,
    /// Time from handing a record to the client to its delivery callback.
    pub latency_ms: LatencySummary,
    /// The run hit `--timeout-secs` before every sent record was acknowledged.
    pub timed_out: bool,
    /// The first delivery error seen, if any, to say what went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// Outcome of a consume run.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ConsumeReport {
    /// Topic read.
    pub topic: String,
    /// Partitions read (all of the topic's).
    pub partitions: usize,
    /// Records the run meant to read: `--records` or the records below the high watermarks
    /// seen at start, whichever is smaller.
    pub expected_records: u64,
    /// Records read.
    pub records: u64,
    /// Payload bytes read.
    pub bytes: u64,
    /// Consumer errors seen (other than end-of-partition notices).
    pub errors: u64,
    /// Seconds from assigning the partitions to the last record read.
    pub elapsed_secs: f64,
    /// Records per second.
    pub msgs_per_sec: f64,
    /// Payload MB per second.
    pub mb_per_sec: f64,
    /// Milliseconds from assigning the partitions to the first record, if any arrived.
    pub first_record_ms: Option<f64>,
    /// The run hit `--timeout-secs` before reading `expected_records`.
    pub timed_out: bool,
    /// The first consumer error seen, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl fmt::Display for ProduceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.latency_ms;
        write!(
            f,
            "produce {topic} ({parts} partitions, {size} B records): {records} acked in {secs:.2}s = \
             {rate:.0} msgs/s, {mb:.2} MB/s; latency ms p50 {p50:.2} p99 {p99:.2} p99.9 {p999:.2} \
             max {max:.2}; {errors} errors",
            topic = self.topic,
            parts = self.partitions,
            size = self.record_size,
            records = self.records,
            secs = self.elapsed_secs,
            rate = self.msgs_per_sec,
            mb = self.mb_per_sec,
            p50 = l.p50,
            p99 = l.p99,
            p999 = l.p999,
            max = l.max,
            errors = self.errors,
        )?;
        if self.timed_out {
            write!(f, " (TIMED OUT)")?;
        }
        if let Some(err) = &self.first_error {
            write!(f, "; first error: {err}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ConsumeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "consume {topic} ({parts} partitions): {records}/{expected} records in {secs:.2}s = \
             {rate:.0} msgs/s, {mb:.2} MB/s",
            topic = self.topic,
            parts = self.partitions,
            records = self.records,
            expected = self.expected_records,
            secs = self.elapsed_secs,
            rate = self.msgs_per_sec,
            mb = self.mb_per_sec,
        )?;
        if let Some(ms) = self.first_record_ms {
            write!(f, "; first record after {ms:.1} ms")?;
        }
        write!(f, "; {} errors", self.errors)?;
        if self.timed_out {
            write!(f, " (TIMED OUT)")?;
        }
        if let Some(err) = &self.first_error {
            write!(f, "; first error: {err}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_divide_by_elapsed_and_use_mebibytes() {
        let (msgs, mb) = rates(2_000_000, 200 * 1024 * 1024, Duration::from_secs(2));
        assert_eq!(msgs, 1_000_000.0);
        assert_eq!(mb, 100.0);
    }

    #[test]
    fn rates_of_an_instantaneous_run_are_zero_not_infinite() {
        assert_eq!(rates(10, 10, Duration::ZERO), (0.0, 0.0));
    }

    fn produce_report() -> ProduceReport {
        ProduceReport {
            topic: "t".into(),
            partitions: 6,
            record_size: 100,
            records: 10,
            bytes: 1000,
            sent: 10,
            errors: 0,
            elapsed_secs: 1.0,
            msgs_per_sec: 10.0,
            mb_per_sec: 0.001,
            latency_ms: LatencySummary {
                p50: 1.0,
                p99: 2.0,
                p999: 3.0,
                max: 4.0,
                mean: 1.5,
            },
            timed_out: false,
            first_error: None,
        }
    }

    #[test]
    fn produce_report_json_has_the_documented_fields() {
        let v = serde_json::to_value(produce_report()).unwrap();
        for key in [
            "records",
            "bytes",
            "elapsed_secs",
            "msgs_per_sec",
            "mb_per_sec",
            "errors",
            "timed_out",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["latency_ms"]["p50"], 1.0);
        assert_eq!(v["latency_ms"]["p99"], 2.0);
        assert_eq!(v["latency_ms"]["p999"], 3.0);
        assert_eq!(v["latency_ms"]["max"], 4.0);
        assert!(v.get("first_error").is_none(), "absent errors are omitted");
    }

    #[test]
    fn consume_report_json_and_display() {
        let r = ConsumeReport {
            topic: "t".into(),
            partitions: 1,
            expected_records: 5,
            records: 5,
            bytes: 500,
            errors: 0,
            elapsed_secs: 0.5,
            msgs_per_sec: 10.0,
            mb_per_sec: 0.001,
            first_record_ms: Some(3.0),
            timed_out: true,
            first_error: Some("boom".into()),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["first_record_ms"], 3.0);
        assert_eq!(v["first_error"], "boom");
        let text = r.to_string();
        assert!(text.contains("5/5 records"), "{text}");
        assert!(text.contains("TIMED OUT"), "{text}");
    }

    #[test]
    fn produce_report_display_mentions_rate_and_latency() {
        let text = produce_report().to_string();
        assert!(text.contains("10 msgs/s"), "{text}");
        assert!(text.contains("p99 2.00"), "{text}");
        assert!(!text.contains("TIMED OUT"), "{text}");
    }
}
