//! The produce benchmark: fixed-size keyless records sent round-robin over a topic's
//! partitions with a `BaseProducer`, driven from one blocking thread.
//!
//! The send loop is the hot path and is kept allocation-free on our side: one payload buffer is
//! reused for every record, the partition comes from a cycling iterator, and the send time
//! travels to the delivery callback as the record's opaque (nanoseconds since start, a plain
//! `usize`) instead of a boxed value. (librdkafka still copies the payload into its own batch,
//! and the Rust binding makes one small topic-name C string per send.) When the client's queue
//! is full the loop serves delivery reports and retries the same record.
//!
//! Latency is measured from the successful enqueue of a record to its delivery callback, so at
//! an unlimited rate it includes time spent in the client's queue; use `--rate` below the
//! saturation point to see the broker's own latency.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use crate::args::ProduceArgs;
use crate::client::{
    client_config, ensure_replicated_topic, error_to_tracing, log_to_tracing, remaining, topic_partitions,
};
use crate::latency::LatencyRecorder;
use crate::report::{rates, ProduceReport};

/// Records sent between two checks of the clock and two non-blocking polls for delivery
/// reports when running at an unlimited rate.
const CHECK_EVERY: u64 = 256;

/// How long to serve delivery reports when the client's queue is full before retrying.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(1);

/// Records the client may buffer. librdkafka's default (100k) throttles a 2-core machine
/// below a million records a second; each buffered 100-byte record costs a few hundred bytes.
const QUEUE_MAX_MESSAGES: u32 = 500_000;

/// Runs the produce benchmark described by `args` and reports what the broker acknowledged.
///
/// Creates the topic first when it is missing. Errors only when the run cannot start (bad
/// configuration, no usable topic) or a record is rejected outright by the client; delivery
/// failures and a hit deadline are reported in the [`ProduceReport`].
pub async fn run_produce(args: &ProduceArgs) -> anyhow::Result<ProduceReport> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let configs: Vec<(&str, String)> = args
        .min_insync_replicas
        .map(|n| ("min.insync.replicas", n.to_string()))
        .into_iter()
        .collect();
    if let Err(err) = ensure_replicated_topic(
        &args.bootstrap,
        &args.properties,
        &args.topic,
        args.partitions,
        args.replication_factor,
        &configs,
        deadline,
    )
    .await
    {
        // The topic may exist already with creation not allowed, or the broker may create it on
        // first metadata request; the metadata lookup below decides.
        tracing::warn!("{err:#}; trying the topic as it is");
    }
    let args = args.clone();
    tokio::task::spawn_blocking(move || produce_blocking(&args, deadline))
        .await
        .context("the producer thread panicked")?
}

/// librdkafka properties the benchmark sets from its own arguments; `-X` overrides them.
fn producer_config(args: &ProduceArgs) -> Vec<(&'static str, String)> {
    vec![
        ("acks", args.acks.as_config().to_owned()),
        ("compression.type", args.compression.as_config().to_owned()),
        ("linger.ms", args.linger_ms.to_string()),
        ("batch.size", args.batch_size.to_string()),
        ("enable.idempotence", args.idempotent.to_string()),
        ("queue.buffering.max.messages", QUEUE_MAX_MESSAGES.to_string()),
        // Undelivered records fail by the end of the run rather than being retried past it.
        (
            "message.timeout.ms",
            args.timeout_secs.saturating_mul(1000).max(1).to_string(),
        ),
    ]
}

/// A record payload of `size` pseudo-random ASCII letters, like Kafka's perf tool uses:
/// neither all zeros (which would flatter compression) nor incompressible noise.
pub(crate) fn payload(size: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..size)
        .map(|_| {
            // xorshift64: deterministic, dependency-free, good enough for filler.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'A' + (state % 26) as u8
        })
        .collect()
}

/// What the delivery callbacks have seen so far.
#[derive(Debug, Default)]
struct DeliveryTally {
    latency: LatencyRecorder,
    acked: u64,
    failed: u64,
    first_error: Option<String>,
    last_ack: Option<Instant>,
}

/// Producer context that times each record from enqueue to delivery callback.
struct DeliveryContext {
    /// Origin of the send timestamps carried in each record's opaque.
    epoch: Instant,
    /// Only the thread polling the producer writes here, so the lock is never contended.
    tally: Mutex<DeliveryTally>,
}

impl DeliveryContext {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            tally: Mutex::new(DeliveryTally::default()),
        }
    }

    /// Nanoseconds since `epoch`, as the record opaque. A `usize` holds ~584 years of them on
    /// 64-bit targets (and ~4 s on 32-bit ones, where latencies would be wrong but harmless).
    fn stamp(&self) -> usize {
        usize::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(usize::MAX)
    }

    fn take_tally(&self) -> DeliveryTally {
        std::mem::take(&mut *self.tally.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_to_tracing(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        error_to_tracing(&error, reason);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at_ns: usize) {
        let now = Instant::now();
        let sent_at = Duration::from_nanos(u64::try_from(sent_at_ns).unwrap_or(u64::MAX));
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(_) => {
                tally.acked += 1;
                tally.last_ack = Some(now);
                tally
                    .latency
                    .record(now.saturating_duration_since(self.epoch).saturating_sub(sent_at));
            }
            Err((err, _)) => {
                tally.failed += 1;
                if tally.first_error.is_none() {
                    tally.first_error = Some(err.to_string());
                }
            }
        }
    }
}

/// Why the send loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Every requested record was handed to the client.
    AllSent,
    /// `--duration-secs` elapsed.
    Duration,
    /// `--timeout-secs` elapsed.
    Timeout,
}

/// The blocking body of [`run_produce`].
fn produce_blocking(args: &ProduceArgs, deadline: Instant) -> anyhow::Result<ProduceReport> {
    let producer: BaseProducer<DeliveryContext> =
        client_config(&args.bootstrap, &producer_config(args), &args.properties)
            .create_with_context(DeliveryContext::new())
            .context("creating the producer")?;
    let partitions = topic_partitions(producer.client(), &args.topic, deadline)?;
    if i32::try_from(partitions.len()).ok() != Some(args.partitions) {
        tracing::info!(
            "topic `{}` has {} partitions (asked for {}); producing to all of them",
            args.topic,
            partitions.len(),
            args.partitions
        );
    }
    let payload = payload(args.record_size);

    let started = Instant::now();
    let send_until = match args.duration_secs {
        Some(secs) => deadline.min(started + Duration::from_secs(secs)),
        None => deadline,
    };
    let (sent, stop) = send_all(&producer, args, &partitions, &payload, started, send_until)?;
    let stop = if stop == Stop::Duration && send_until >= deadline {
        Stop::Timeout
    } else {
        stop
    };

    let flushed = producer.flush(remaining(deadline)).is_ok();
    let tally = producer.context().take_tally();
    let finished = tally.last_ack.unwrap_or_else(Instant::now);
    let elapsed = finished.saturating_duration_since(started);
    let bytes = tally.acked.saturating_mul(args.record_size as u64);
    let (msgs_per_sec, mb_per_sec) = rates(tally.acked, bytes, elapsed);
    let unacknowledged = sent.saturating_sub(tally.acked + tally.failed);
    Ok(ProduceReport {
        topic: args.topic.clone(),
        partitions: partitions.len(),
        record_size: args.record_size,
        records: tally.acked,
        bytes,
        sent,
        errors: tally.failed + unacknowledged,
        elapsed_secs: elapsed.as_secs_f64(),
        msgs_per_sec,
        mb_per_sec,
        latency_ms: tally.latency.summary(),
        timed_out: stop == Stop::Timeout || !flushed,
        first_error: tally.first_error,
    })
}

/// Hands `args.records` records to the client, round-robin over `partitions`, until done or
/// `send_until`. Returns how many were enqueued and why it stopped.
fn send_all(
    producer: &BaseProducer<DeliveryContext>,
    args: &ProduceArgs,
    partitions: &[i32],
    payload: &[u8],
    started: Instant,
    send_until: Instant,
) -> anyhow::Result<(u64, Stop)> {
    let context = producer.context();
    let nanos_per_record = args.rate.map(|rate| 1e9 / rate as f64);
    let mut sent: u64 = 0;
    for (i, &partition) in (0..args.records).zip(partitions.iter().cycle()) {
        if let Some(ns) = nanos_per_record {
            // Fixed rate: record i is due at started + i / rate; serve callbacks until then.
            let due = started + Duration::from_nanos((i as f64 * ns) as u64);
            if due >= send_until {
                return Ok((sent, Stop::Duration));
            }
            let wait = due.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                producer.poll(wait);
            }
        } else if i % CHECK_EVERY == 0 {
            if Instant::now() >= send_until {
                return Ok((sent, Stop::Duration));
            }
            producer.poll(Duration::ZERO);
        }

        let mut record: BaseRecord<'_, (), [u8], usize> =
            BaseRecord::with_opaque_to(&args.topic, context.stamp())
                .partition(partition)
                .payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    if Instant::now() >= send_until {
                        return Ok((sent, Stop::Duration));
                    }
                    producer.poll(QUEUE_FULL_WAIT);
                    record = returned;
                    // Time the record from when the client accepts it, not from the first try.
                    record.delivery_opaque = context.stamp();
                }
                Err((err, _)) => bail!("the client rejected record {i} for partition {partition}: {err}"),
            }
        }
        sent += 1;
    }
    Ok((sent, Stop::AllSent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Acks, Compression};

    fn args() -> ProduceArgs {
        ProduceArgs {
            bootstrap: "127.0.0.1:1".into(),
            topic: "t".into(),
            partitions: 3,
            replication_factor: 3,
            min_insync_replicas: Some(2),
            records: 10,
            record_size: 100,
            acks: Acks::All,
            compression: Compression::Lz4,
            linger_ms: 7,
            batch_size: 1234,
            rate: None,
            duration_secs: None,
            timeout_secs: 30,
            idempotent: true,
            properties: vec![],
        }
    }

    #[test]
    fn payload_is_letters_of_the_requested_size_and_varied() {
        let p = payload(1000);
        assert_eq!(p.len(), 1000);
        assert!(p.iter().all(u8::is_ascii_uppercase));
        let distinct: std::collections::BTreeSet<u8> = p.iter().copied().collect();
        assert!(distinct.len() > 20, "only {} distinct letters", distinct.len());
        assert!(payload(0).is_empty());
    }

    #[test]
    fn producer_config_reflects_the_arguments() {
        let config = producer_config(&args());
        let get = |k: &str| config.iter().find(|(key, _)| *key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("acks"), Some("all"));
        assert_eq!(get("compression.type"), Some("lz4"));
        assert_eq!(get("linger.ms"), Some("7"));
        assert_eq!(get("batch.size"), Some("1234"));
        assert_eq!(get("enable.idempotence"), Some("true"));
        assert_eq!(get("message.timeout.ms"), Some("30000"));
    }

    #[test]
    fn delivery_context_stamps_increase() {
        let ctx = DeliveryContext::new();
        let a = ctx.stamp();
        std::thread::sleep(Duration::from_millis(1));
        assert!(ctx.stamp() > a);
        let tally = ctx.take_tally();
        assert_eq!((tally.acked, tally.failed), (0, 0));
    }

    /// Nothing listens on port 1: the run must give up at its deadline, not hang.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_broker_fails_within_the_timeout() {
        let mut a = args();
        a.timeout_secs = 2;
        let started = Instant::now();
        let result = run_produce(&a).await;
        assert!(result.is_err(), "{result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }
}
