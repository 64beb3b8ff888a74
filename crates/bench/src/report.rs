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

/// Outcome of `sapper bench commits`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct CommitsReport {
    /// Topic whose offsets were committed.
    pub topic: String,
    /// Groups committing in parallel (one client, one thread and one commit in flight each).
    pub groups: u32,
    /// Partition offsets carried by each commit request.
    pub partitions_per_commit: usize,
    /// Commit requests the broker accepted.
    pub commits: u64,
    /// Partition offsets the broker accepted (`commits` × `partitions_per_commit`).
    pub offsets: u64,
    /// Commit requests that failed, or carried a failed partition, or were unanswered at the
    /// deadline.
    pub errors: u64,
    /// Seconds from the common start to the last answer.
    pub elapsed_secs: f64,
    /// Accepted commit requests per second.
    pub commits_per_sec: f64,
    /// Accepted partition offsets per second.
    pub offsets_per_sec: f64,
    /// Time from handing a commit to the client to its answer.
    pub latency_ms: LatencySummary,
    /// The produce baseline, measured in the same run with as many clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineReport>,
    /// `commits_per_sec` / the baseline's `requests_per_sec`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commits_to_produce_ratio: Option<f64>,
    /// The run hit `--timeout-secs`.
    pub timed_out: bool,
    /// The first error seen, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// The produce baseline of `sapper bench commits`: single-record acks=1 produce requests,
/// one in flight per producer.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct BaselineReport {
    /// Topic produced to.
    pub topic: String,
    /// Partitions of the topic (producer i writes to partition i modulo this).
    pub partitions: usize,
    /// Producers (one client and one sending thread each).
    pub producers: u32,
    /// Payload bytes per record.
    pub record_size: usize,
    /// Produce requests (one record each) acknowledged.
    pub requests: u64,
    /// Records that failed or were unanswered at the deadline.
    pub errors: u64,
    /// Seconds from the common start to the last acknowledgement.
    pub elapsed_secs: f64,
    /// Acknowledged produce requests per second.
    pub requests_per_sec: f64,
    /// Time from handing the record to the client to its delivery report.
    pub latency_ms: LatencySummary,
    /// The first error seen, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// Outcome of `sapper bench rebalance`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct RebalanceReport {
    /// Topic the members subscribed to.
    pub topic: String,
    /// The group's id.
    pub group: String,
    /// Member processes in the stable group.
    pub members: u32,
    /// Partitions of the topic.
    pub partitions: usize,
    /// The members' `session.timeout.ms`, when not the client's default.
    pub session_timeout_ms: Option<u64>,
    /// The members' `heartbeat.interval.ms`, when not the client's default.
    pub heartbeat_interval_ms: Option<u64>,
    /// Milliseconds from the start of the first members to a stable group.
    pub first_join_ms: Option<f64>,
    /// Completed trials.
    pub trials: Vec<RebalanceTrial>,
    /// SIGKILL of a member to the survivors covering every partition again.
    pub kill_ms: TrialSummary,
    /// SIGTERM of a member (close, LeaveGroup) to the survivors covering every partition.
    pub leave_ms: TrialSummary,
    /// Start of a replacement member to a stable group that includes it.
    pub join_ms: TrialSummary,
    /// The run hit `--timeout-secs` (or a wait inside it did) before finishing its trials.
    pub timed_out: bool,
    /// What went wrong, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// One trial of `sapper bench rebalance`, in milliseconds.
#[derive(Serialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct RebalanceTrial {
    /// SIGKILL to the survivors covering every partition.
    pub kill_ms: Option<f64>,
    /// SIGKILL to the first survivor giving up its partitions (the group noticed the death).
    pub kill_detected_ms: Option<f64>,
    /// Replacement start to a stable group again.
    pub join_after_kill_ms: Option<f64>,
    /// SIGTERM to the survivors covering every partition.
    pub leave_ms: Option<f64>,
    /// SIGTERM to the first survivor giving up its partitions.
    pub leave_detected_ms: Option<f64>,
    /// Replacement start to a stable group again.
    pub join_after_leave_ms: Option<f64>,
}

/// p50, p90 and max of a few trials by the nearest-rank rule (the p50 of an even count is the
/// lower median), in milliseconds; `None` without trials.
#[derive(Serialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// Values summarised.
    pub count: usize,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl Percentiles {
    /// Summarises `values` (in any order).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().collect();
        v.sort_by(f64::total_cmp);
        Self {
            count: v.len(),
            p50: nearest_rank(&v, 0.50),
            p90: nearest_rank(&v, 0.90),
            max: v.last().copied(),
        }
    }
}

/// The `q` quantile of `sorted` by the nearest-rank rule: the smallest value with at least
/// `q` of the values at or below it.
fn nearest_rank(sorted: &[f64], q: f64) -> Option<f64> {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.p50, self.p90, self.max) {
            (Some(p50), Some(p90), Some(max)) => write!(
                f,
                "p50 {p50:.0} ms, p90 {p90:.0} ms, max {max:.0} ms (n={})",
                self.count
            ),
            _ => write!(f, "no trials"),
        }
    }
}

/// Median and maximum of a few trials, in milliseconds; `None` without trials.
#[derive(Serialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct TrialSummary {
    /// Trials measured.
    pub count: usize,
    /// Median (the lower one of an even count).
    pub p50: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl TrialSummary {
    /// Summarises `values` (in any order).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let p = Percentiles::of(values);
        Self {
            count: p.count,
            p50: p.p50,
            max: p.max,
        }
    }
}

/// Outcome of the hidden `sapper bench group-member`, printed after its assignment lines.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct MemberReport {
    /// The group.
    pub group: String,
    /// Assignment changes seen.
    pub assignments: u64,
    /// Records read (the benchmark does not produce any; anything here came from elsewhere).
    pub records: u64,
    /// Whether the consumer closed (left the group) within its bound.
    pub closed: bool,
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

impl fmt::Display for CommitsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.latency_ms;
        write!(
            f,
            "commits {topic} ({groups} groups, {parts} offsets/commit): {commits} commits in \
             {secs:.2}s = {rate:.0} commits/s, {orate:.0} offsets/s; latency ms p50 {p50:.2} \
             p99 {p99:.2} max {max:.2}; {errors} errors",
            topic = self.topic,
            groups = self.groups,
            parts = self.partitions_per_commit,
            commits = self.commits,
            secs = self.elapsed_secs,
            rate = self.commits_per_sec,
            orate = self.offsets_per_sec,
            p50 = l.p50,
            p99 = l.p99,
            max = l.max,
            errors = self.errors,
        )?;
        if let Some(b) = &self.baseline {
            let l = &b.latency_ms;
            write!(
                f,
                " | baseline produce {topic} ({producers} producers, {size} B, acks=1, one record \
                 per request): {rate:.0} requests/s; latency ms p50 {p50:.2} p99 {p99:.2} max \
                 {max:.2}; {errors} errors",
                topic = b.topic,
                producers = b.producers,
                size = b.record_size,
                rate = b.requests_per_sec,
                p50 = l.p50,
                p99 = l.p99,
                max = l.max,
                errors = b.errors,
            )?;
        }
        if let Some(ratio) = self.commits_to_produce_ratio {
            write!(f, " | commits/produce = {ratio:.2}")?;
        }
        if self.timed_out {
            write!(f, " (TIMED OUT)")?;
        }
        if let Some(err) = &self.first_error {
            write!(f, "; first error: {err}")?;
        }
        Ok(())
    }
}

impl fmt::Display for TrialSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.p50, self.max) {
            (Some(p50), Some(max)) => write!(f, "p50 {p50:.0} ms, max {max:.0} ms (n={})", self.count),
            _ => write!(f, "no trials"),
        }
    }
}

impl fmt::Display for RebalanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let setting = |v: Option<u64>| v.map_or_else(|| "client default".to_owned(), |ms| format!("{ms} ms"));
        writeln!(
            f,
            "rebalance {topic} ({members} members, {parts} partitions, session timeout {session}, \
             heartbeat {heartbeat})",
            topic = self.topic,
            members = self.members,
            parts = self.partitions,
            session = setting(self.session_timeout_ms),
            heartbeat = setting(self.heartbeat_interval_ms),
        )?;
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        for (i, t) in self.trials.iter().enumerate() {
            writeln!(
                f,
                "  trial {n}: kill {kill} ms (noticed {kd} ms), rejoin {jk} ms; leave {leave} ms \
                 (noticed {ld} ms), rejoin {jl} ms",
                n = i + 1,
                kill = ms(t.kill_ms),
                kd = ms(t.kill_detected_ms),
                jk = ms(t.join_after_kill_ms),
                leave = ms(t.leave_ms),
                ld = ms(t.leave_detected_ms),
                jl = ms(t.join_after_leave_ms),
            )?;
        }
        write!(
            f,
            "  kill -> rebalanced: {}\n  leave -> rebalanced: {}\n  join -> rebalanced: {}",
            self.kill_ms, self.leave_ms, self.join_ms
        )?;
        if self.timed_out {
            write!(f, "\n  (TIMED OUT)")?;
        }
        if let Some(err) = &self.first_error {
            write!(f, "\n  error: {err}")?;
        }
        Ok(())
    }
}

impl fmt::Display for MemberReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "group member of {}: {} assignment changes, {} records, closed: {}",
            self.group, self.assignments, self.records, self.closed
        )
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
    #[test]
    fn trial_summary_takes_the_lower_median_and_the_max() {
        assert_eq!(TrialSummary::of([]), TrialSummary::default());
        let s = TrialSummary::of([3.0, 1.0, 2.0]);
        assert_eq!((s.count, s.p50, s.max), (3, Some(2.0), Some(3.0)));
        let s = TrialSummary::of([4.0, 1.0]);
        assert_eq!((s.p50, s.max), (Some(1.0), Some(4.0)));
        assert_eq!(TrialSummary::default().to_string(), "no trials");
    }

    #[test]
    fn commits_report_display_shows_both_rates_and_the_ratio() {
        let r = CommitsReport {
            topic: "c".into(),
            groups: 100,
            partitions_per_commit: 1,
            commits: 1000,
            offsets: 1000,
            errors: 0,
            elapsed_secs: 1.0,
            commits_per_sec: 1000.0,
            offsets_per_sec: 1000.0,
            latency_ms: LatencySummary::default(),
            baseline: Some(BaselineReport {
                topic: "b".into(),
                partitions: 50,
                producers: 100,
                record_size: 100,
                requests: 2000,
                errors: 0,
                elapsed_secs: 1.0,
                requests_per_sec: 2000.0,
                latency_ms: LatencySummary::default(),
                first_error: None,
            }),
            commits_to_produce_ratio: Some(0.5),
            timed_out: false,
            first_error: None,
        };
        let text = r.to_string();
        assert!(text.contains("1000 commits/s"), "{text}");
        assert!(text.contains("2000 requests/s"), "{text}");
        assert!(text.contains("commits/produce = 0.50"), "{text}");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["baseline"]["requests_per_sec"], 2000.0);
        assert_eq!(v["commits_to_produce_ratio"], 0.5);
    }
}
