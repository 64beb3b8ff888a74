//! Shared harness of the cluster fault tests (`replication_shutdown`, `two_clusters`,
//! `network_partition`): a paced rdkafka producer that records every delivery report with its
//! latency, and a checker comparing acknowledged records with what is read back. The nodes
//! (optionally inside a network namespace, through `ip netns exec`) and their Metadata views
//! are [`crate::common::cluster`]'s, re-exported here under the names these tests use; a test
//! binary using this module also declares `mod common;`.
//!
//! Everything is bounded in time; every process is killed when its [`Node`] is dropped (also
//! on panic, then with its stderr tail printed).

// Each test binary uses a different part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

pub use crate::common::block_on;
use crate::common::cluster::MetadataReader;
// Not every test binary uses every name.
#[allow(unused_imports)]
pub use crate::common::cluster::{
    bootstrap, local_nodes, spawn_all, ClusterNode as Node, ClusterView as View,
};

/// Bound of one Metadata round trip.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// The test's temporary directory (data directories and stderr files); kept, with its path
/// printed, when `SAPPER_TEST_KEEP` is set.
pub fn test_dir() -> tempfile::TempDir {
    let keep = std::env::var_os("SAPPER_TEST_KEEP").is_some();
    let dir = tempfile::Builder::new()
        .prefix("sapper-fault-")
        .disable_cleanup(keep)
        .tempdir()
        .unwrap();
    if keep {
        println!("keeping {}", dir.path().display());
    }
    dir
}

/// What `node`'s Metadata says about `topic` (`None` when it does not answer in time).
pub fn metadata(node: &Node, topic: &str) -> Option<View> {
    MetadataReader::new(REQUEST_TIMEOUT).view(node.id, node.client, Some(topic))
}

/// Polls `check` against the given nodes' Metadata until it holds for all of them and they
/// agree on the partitions; panics after `bound` with the last views.
pub fn wait_for_views(
    nodes: &[&Node],
    topic: &str,
    bound: Duration,
    what: &str,
    check: impl Fn(&View) -> bool,
) -> View {
    MetadataReader::new(REQUEST_TIMEOUT).wait_for_views(nodes, topic, bound, what, check)
}

/// Waits (up to 30 s) until every one of `nodes` lists exactly them as live brokers.
pub fn wait_registered(nodes: &[Node]) -> View {
    MetadataReader::new(REQUEST_TIMEOUT).wait_registered(nodes)
}

/// [`wait_for_views`] without the panic: the last views on a timeout.
pub fn try_wait_for_views(
    nodes: &[&Node],
    topic: &str,
    bound: Duration,
    check: &dyn Fn(&View) -> bool,
) -> Result<View, Vec<Option<View>>> {
    MetadataReader::new(REQUEST_TIMEOUT).try_wait_for_views(nodes, topic, bound, check)
}

/// [`common::client_config`](crate::common::client_config) with quick metadata refreshes and
/// librdkafka's warnings logged.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = crate::common::client_config(bootstrap);
    config
        .set("topic.metadata.refresh.fast.interval.ms", "50")
        .set_log_level(RDKafkaLogLevel::Warning);
    config
}

/// [`client_config`] for an idempotent acks=all producer (linger 5 ms, request timeout 5 s)
/// that gives up on a record after `message_timeout_ms`.
pub fn acks_all_producer_config(bootstrap: &str, message_timeout_ms: u32) -> ClientConfig {
    let mut config = client_config(bootstrap);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("request.timeout.ms", "5000")
        .set("message.timeout.ms", message_timeout_ms.to_string());
    config
}

/// Creates `topic` through rdkafka's admin client with `configs`, then waits until every
/// given node describes all partitions with a leader and a full ISR.
pub fn create_topic(
    nodes: &[&Node],
    topic: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
) -> View {
    let admin: AdminClient<DefaultClientContext> = client_config(&bootstrap(nodes)).create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(15)));
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    for (key, value) in configs {
        new_topic = new_topic.set(key, value);
    }
    let results = block_on(admin.create_topics([&new_topic], &options)).expect("CreateTopics");
    for result in results {
        result.unwrap_or_else(|(name, code)| panic!("creating {name}: {code}"));
    }
    let want = usize::try_from(replication).unwrap();
    wait_for_views(
        nodes,
        topic,
        Duration::from_secs(15),
        "topic created with full ISRs on every broker",
        |v| {
            v.partitions.len() == usize::try_from(partitions).unwrap()
                && v.partitions
                    .values()
                    .all(|p| p.error == 0 && p.leader > 0 && p.isr.len() == want)
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Producing with a ledger of delivery reports
// ---------------------------------------------------------------------------------------------

/// One acknowledged record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub partition: i32,
    pub offset: i64,
    pub payload: String,
    /// When it was handed to the producer.
    pub sent_at: Instant,
    /// From send to delivery report.
    pub latency: Duration,
}

/// Every delivery report, and the client-level errors and warnings librdkafka raised.
#[derive(Default)]
pub struct Ledger {
    pub acked: Mutex<Vec<Acked>>,
    /// (payload, error) of every record whose delivery failed.
    pub failed: Mutex<Vec<(String, String, Duration)>>,
    /// Client-level errors (`error_cb`) and librdkafka warnings, as text.
    pub client_errors: Mutex<Vec<String>>,
}

/// The producer's context: the shared [`Ledger`].
pub struct LedgerContext(pub Arc<Ledger>);

impl ClientContext for LedgerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        use RDKafkaLogLevel::{Alert, Critical, Emerg, Error, Warning};
        if std::env::var_os("SAPPER_TEST_RDKAFKA_DEBUG").is_some() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            eprintln!(
                "rdkafka {}.{:03} {level:?} {fac}: {log_message}",
                now.as_secs() % 3600,
                now.subsec_millis()
            );
        }
        if matches!(level, Emerg | Alert | Critical | Error | Warning) {
            self.0
                .client_errors
                .lock()
                .unwrap()
                .push(format!("log {level:?} {fac}: {log_message}"));
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0
            .client_errors
            .lock()
            .unwrap()
            .push(format!("error {error}: {reason}"));
    }
}

impl ProducerContext for LedgerContext {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        let latency = sent.elapsed();
        match result {
            Ok(msg) => self.0.acked.lock().unwrap().push(Acked {
                partition: msg.partition(),
                offset: msg.offset(),
                payload: String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned(),
                sent_at: *sent,
                latency,
            }),
            Err((err, msg)) => self.0.failed.lock().unwrap().push((
                String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned(),
                err.to_string(),
                latency,
            )),
        }
    }
}

/// A producer thread sending `{tag}-{seq}` round-robin over `partitions` at `rate` records/s
/// until stopped, with the given producer settings.
pub struct PacedProducer {
    pub ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, Vec<String>)>>,
}

impl PacedProducer {
    pub fn start(
        config: ClientConfig,
        topic: &str,
        partitions: &[i32],
        tag: &str,
        rate: u32,
    ) -> PacedProducer {
        let ledger = Arc::new(Ledger::default());
        let producer: ThreadedProducer<LedgerContext> = config
            .create_with_context(LedgerContext(Arc::clone(&ledger)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (topic, partitions, tag) = (topic.to_owned(), partitions.to_vec(), tag.to_owned());
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let interval = Duration::from_secs(1) / rate.max(1);
            let started = Instant::now();
            let mut sent = 0u64;
            let mut refused = Vec::new();
            // Bounded: at most 10 minutes of sending even if nobody stops it.
            while !stopping.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(600) {
                let due = started + interval * u32::try_from(sent).unwrap_or(u32::MAX);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let partition = partitions[usize::try_from(sent).unwrap() % partitions.len()];
                let payload = format!("{tag}-{sent}");
                let record = BaseRecord::with_opaque_to(&topic, Box::new(Instant::now()))
                    .partition(partition)
                    .payload(&payload);
                if let Err((e, _)) = producer.send::<(), _>(record) {
                    refused.push(format!("{payload}: {e}"));
                }
                sent += 1;
            }
            // Bounded flush: whatever is still queued after it shows up as not acknowledged.
            if let Err(e) = producer.flush(Duration::from_secs(30)) {
                refused.push(format!("flush: {e}"));
            }
            if let Some(fatal) = producer.client().fatal_error() {
                refused.push(format!("fatal: {fatal:?}"));
            }
            (sent, refused)
        });
        PacedProducer {
            ledger,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sending, flushes, answers (records sent, send-side errors).
    pub fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }

    /// Records acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.ledger.acked.lock().unwrap().len()
    }
}

impl Drop for PacedProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `q`-quantile of `latencies` (sorted in place).
pub fn quantile(latencies: &mut [Duration], q: f64) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    latencies.sort();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((latencies.len() - 1) as f64 * q).round() as usize;
    latencies[i.min(latencies.len() - 1)]
}

// ---------------------------------------------------------------------------------------------
// Reading back and checking
// ---------------------------------------------------------------------------------------------

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub offset: i64,
    pub payload: String,
}

/// Reads `partitions` of `topic` from the beginning up to the high watermarks seen when the
/// read starts, through `bootstrap`. Bounded by 30 s.
pub fn consume_all(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<i32, Vec<ReadRecord>> {
    let read = crate::common::read_back(
        client_config(bootstrap),
        topic,
        partitions,
        Duration::from_secs(30),
    );
    (0..partitions)
        .zip(read)
        .map(|(p, records)| {
            let records = records
                .into_iter()
                .map(|r| ReadRecord {
                    offset: r.offset,
                    payload: String::from_utf8_lossy(&r.payload).into_owned(),
                })
                .collect();
            (p, records)
        })
        .collect()
}

/// Checks what was read against what was acknowledged: every acknowledged record is read at
/// its partition and offset with its payload, offsets increase, no acknowledged payload is read
/// twice (unacknowledged records, e.g. a non-idempotent producer's timed-out retries, may be).
/// Answers (records read, acknowledged records checked).
pub fn check_no_acked_loss(acked: &[Acked], read: &BTreeMap<i32, Vec<ReadRecord>>) -> (usize, usize) {
    let mut at: BTreeMap<(i32, i64), &str> = BTreeMap::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let acked_payloads: BTreeSet<&str> = acked.iter().map(|a| a.payload.as_str()).collect();
    let mut problems = Vec::new();
    for (p, records) in read {
        for pair in records.windows(2) {
            if pair[1].offset <= pair[0].offset {
                problems.push(format!("partition {p}: offsets out of order {pair:?}"));
            }
        }
        for r in records {
            at.insert((*p, r.offset), &r.payload);
            if !seen.insert(&r.payload) && acked_payloads.contains(r.payload.as_str()) {
                problems.push(format!("partition {p}: {} read twice", r.payload));
            }
        }
    }
    for a in acked {
        match at.get(&(a.partition, a.offset)) {
            Some(payload) if *payload == a.payload => {}
            Some(other) => problems.push(format!(
                "acknowledged {} at {}/{} but that offset holds {other}",
                a.payload, a.partition, a.offset
            )),
            None => problems.push(format!(
                "acknowledged {} at {}/{} is lost",
                a.payload, a.partition, a.offset
            )),
        }
    }
    let shown: Vec<&String> = problems.iter().take(20).collect();
    assert!(
        problems.is_empty(),
        "{} checker violations, first ones: {shown:#?}",
        problems.len()
    );
    (read.values().map(Vec::len).sum(), acked.len())
}
