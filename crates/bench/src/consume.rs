//! The consume benchmark: read every partition of a topic from its first offset up to the high
//! watermark it had when the run started, with a `BaseConsumer` on one blocking thread.
//!
//! Partitions are assigned directly (no group rebalance to wait for) and end-of-partition
//! events are enabled, so the run knows when a partition is drained even when offsets have
//! gaps (compaction, transaction markers) and never waits for records that will not come.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::args::ConsumeArgs;
use crate::client::{client_config, remaining, topic_partitions, TracingContext};
use crate::report::{rates, ConsumeReport};

/// Longest single wait for a record, so the deadline is checked at least this often.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Longest wait for one partition's watermarks.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the consume benchmark described by `args`.
///
/// Errors only when the run cannot start (bad configuration, unknown topic, watermarks
/// unavailable); consumer errors met while reading and a hit deadline are in the report.
pub async fn run_consume(args: &ConsumeArgs) -> anyhow::Result<ConsumeReport> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let args = args.clone();
    tokio::task::spawn_blocking(move || consume_blocking(&args, deadline))
        .await
        .context("the consumer thread panicked")?
}

/// librdkafka properties the benchmark sets; `-X` overrides them.
fn consumer_config() -> Vec<(&'static str, String)> {
    vec![
        // librdkafka only allows assign() with a group id; nothing is committed to it.
        ("group.id", format!("sapper-bench-{}", std::process::id())),
        ("enable.auto.commit", "false".to_owned()),
        ("enable.auto.offset.store", "false".to_owned()),
        ("enable.partition.eof", "true".to_owned()),
        ("auto.offset.reset", "earliest".to_owned()),
        ("fetch.wait.max.ms", "100".to_owned()),
        ("fetch.min.bytes", "1".to_owned()),
        ("fetch.max.bytes", (50 * 1024 * 1024).to_string()),
        ("max.partition.fetch.bytes", (1024 * 1024).to_string()),
    ]
}

/// How far one partition has been read, against the end fixed at start.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionProgress {
    id: i32,
    /// Offset of the next record to read.
    next: i64,
    /// High watermark when the run started: the partition is done once `next` reaches it.
    end: i64,
    /// The consumer reported end-of-partition at or past `end`.
    eof: bool,
}

impl PartitionProgress {
    fn done(&self) -> bool {
        self.eof || self.next >= self.end
    }
}

/// Progress over all partitions, keyed by partition id.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Sorted by `id`.
    partitions: Vec<PartitionProgress>,
}

impl Progress {
    /// Progress for partitions with the given `(id, low, high)` watermarks.
    fn new(mut watermarks: Vec<(i32, i64, i64)>) -> Self {
        watermarks.sort_unstable_by_key(|&(id, _, _)| id);
        let partitions = watermarks
            .into_iter()
            .map(|(id, low, high)| PartitionProgress {
                id,
                next: low,
                end: high,
                eof: false,
            })
            .collect();
        Self { partitions }
    }

    fn get_mut(&mut self, id: i32) -> Option<&mut PartitionProgress> {
        let index = self.partitions.binary_search_by_key(&id, |p| p.id).ok()?;
        self.partitions.get_mut(index)
    }

    /// Notes that the record at `offset` of partition `id` was read.
    fn record(&mut self, id: i32, offset: i64) {
        if let Some(p) = self.get_mut(id) {
            p.next = p.next.max(offset.saturating_add(1));
        }
    }

    /// Notes that partition `id` has no more records for now.
    fn eof(&mut self, id: i32) {
        if let Some(p) = self.get_mut(id) {
            p.eof = true;
        }
    }

    /// Records available below the start-time high watermarks (an upper bound when offsets
    /// have gaps).
    fn available(&self) -> u64 {
        self.partitions
            .iter()
            .map(|p| u64::try_from(p.end.saturating_sub(p.next)).unwrap_or(0))
            .sum()
    }

    fn all_done(&self) -> bool {
        self.partitions.iter().all(PartitionProgress::done)
    }
}

/// The blocking body of [`run_consume`].
fn consume_blocking(args: &ConsumeArgs, deadline: Instant) -> anyhow::Result<ConsumeReport> {
    let consumer: BaseConsumer<TracingContext> =
        client_config(&args.bootstrap, &consumer_config(), &args.properties)
            .create_with_context(TracingContext)
            .context("creating the consumer")?;
    let ids = topic_partitions(consumer.client(), &args.topic, deadline)?;
    let mut watermarks = Vec::with_capacity(ids.len());
    for &id in &ids {
        let timeout = remaining(deadline).min(WATERMARK_TIMEOUT);
        let (low, high) = consumer
            .fetch_watermarks(&args.topic, id, timeout)
            .with_context(|| format!("reading the watermarks of {}/{id}", args.topic))?;
        watermarks.push((id, low, high));
    }
    let mut progress = Progress::new(watermarks);
    let limit = args.records.unwrap_or(u64::MAX);
    let expected = limit.min(progress.available());

    let mut assignment = TopicPartitionList::with_capacity(ids.len());
    for &id in &ids {
        assignment
            .add_partition_offset(&args.topic, id, Offset::Beginning)
            .with_context(|| format!("assigning {}/{id}", args.topic))?;
    }
    consumer.assign(&assignment).context("assigning the partitions")?;

    let started = Instant::now();
    let mut records: u64 = 0;
    let mut bytes: u64 = 0;
    let mut errors: u64 = 0;
    let mut first_error = None;
    let mut first_record = None;
    let mut last_record = started;
    let mut timed_out = false;
    while records < limit && !progress.all_done() {
        let wait = remaining(deadline).min(POLL_INTERVAL);
        if wait.is_zero() {
            timed_out = true;
            break;
        }
        match consumer.poll(wait) {
            None => {}
            Some(Ok(message)) => {
                let now = Instant::now();
                first_record.get_or_insert(now);
                last_record = now;
                records += 1;
                bytes += message.payload_len() as u64;
                progress.record(message.partition(), message.offset());
            }
            Some(Err(KafkaError::PartitionEOF(id))) => progress.eof(id),
            Some(Err(err)) => {
                errors += 1;
                tracing::debug!("consumer error: {err}");
                first_error.get_or_insert_with(|| err.to_string());
            }
        }
    }

    let elapsed = last_record.saturating_duration_since(started);
    let (msgs_per_sec, mb_per_sec) = rates(records, bytes, elapsed);
    Ok(ConsumeReport {
        topic: args.topic.clone(),
        partitions: ids.len(),
        expected_records: expected,
        records,
        bytes,
        errors,
        elapsed_secs: elapsed.as_secs_f64(),
        msgs_per_sec,
        mb_per_sec,
        first_record_ms: first_record.map(|t| t.saturating_duration_since(started).as_secs_f64() * 1e3),
        timed_out,
        first_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_partitions_are_done_from_the_start() {
        let p = Progress::new(vec![(0, 0, 0), (1, 5, 5)]);
        assert_eq!(p.available(), 0);
        assert!(p.all_done());
    }

    #[test]
    fn progress_tracks_offsets_per_partition_until_the_start_watermarks() {
        let mut p = Progress::new(vec![(1, 0, 2), (0, 10, 13)]);
        assert_eq!(p.available(), 5);
        p.record(0, 10);
        p.record(1, 0);
        p.record(1, 1);
        assert!(!p.all_done(), "partition 0 still has offsets 11 and 12");
        assert_eq!(p.available(), 2);
        p.record(0, 12); // 11 was a gap (e.g. a transaction marker)
        assert!(p.all_done());
        assert_eq!(p.available(), 0);
    }

    #[test]
    fn eof_finishes_a_partition_whose_offsets_stop_short() {
        let mut p = Progress::new(vec![(0, 0, 3)]);
        p.record(0, 0);
        assert!(!p.all_done());
        p.eof(0);
        assert!(p.all_done());
    }

    #[test]
    fn records_past_the_start_watermark_and_unknown_partitions_are_harmless() {
        let mut p = Progress::new(vec![(0, 0, 1)]);
        p.record(0, 5);
        p.record(7, 0);
        p.eof(7);
        p.record(0, 2); // out of order: never moves backwards
        assert!(p.all_done());
        assert_eq!(p.available(), 0);
    }

    #[test]
    fn consumer_config_enables_eof_and_disables_commits() {
        let config = consumer_config();
        let get = |k: &str| config.iter().find(|(key, _)| *key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("enable.partition.eof"), Some("true"));
        assert_eq!(get("enable.auto.commit"), Some("false"));
        assert!(get("group.id").is_some_and(|g| g.starts_with("sapper-bench-")));
    }

    /// Nothing listens on port 1: the run must give up at its deadline, not hang.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_broker_fails_within_the_timeout() {
        let args = ConsumeArgs {
            bootstrap: "127.0.0.1:1".into(),
            topic: "t".into(),
            records: None,
            timeout_secs: 2,
            properties: vec![],
        };
        let started = Instant::now();
        let result = run_consume(&args).await;
        assert!(result.is_err(), "{result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }
}
