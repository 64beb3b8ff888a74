//! The well-behaved client: a librdkafka producer (acks=1) and a consumer with assigned
//! partitions, working on their own topic for the whole test. It records every error librdkafka
//! reports, and at the end must have read back exactly what it produced, in order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

pub const GOOD_TOPIC: &str = "robustness-good-client";
pub const GOOD_PARTITIONS: i32 = 3;

/// Collects every error librdkafka reports (error callback, error-level logs), and warnings.
#[derive(Clone, Default)]
struct Recorder {
    errors: Arc<Mutex<Vec<String>>>,
    warnings: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn error(&self, message: String) {
        self.errors.lock().unwrap().push(message);
    }
}

impl ClientContext for Recorder {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                self.error(format!("log {fac}: {message}"));
            }
            RDKafkaLogLevel::Warning => self.warnings.lock().unwrap().push(format!("{fac}: {message}")),
            _ => {}
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        Recorder::error(self, format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Recorder {}

/// Records per partition: (offset, payload).
type PartitionRecords = Vec<Vec<(i64, String)>>;

fn payload(i: u64) -> String {
    format!("good-{i:07}")
}

/// A librdkafka producer and consumer working on [`GOOD_TOPIC`] in the background.
/// Sets its flag when dropped: a failing test unwinds past [`GoodClient::finish`], and the
/// consumer thread must then stop at once instead of polling until its deadline.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

pub struct GoodClient {
    _abandon: AbandonOnDrop,
    recorder: Recorder,
    stop: Arc<AtomicBool>,
    produced_so_far: Arc<Mutex<usize>>,
    /// Per-partition counts the consumer must reach; set once the producer has stopped.
    target: Arc<Mutex<Option<Vec<usize>>>>,
    producer: tokio::task::JoinHandle<PartitionRecords>,
    consumer: tokio::task::JoinHandle<PartitionRecords>,
}

pub struct GoodReport {
    produced: PartitionRecords,
    consumed: PartitionRecords,
    errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl GoodClient {
    pub fn start(addr: SocketAddr, deadline: Instant) -> Self {
        let recorder = Recorder::default();
        let stop = Arc::new(AtomicBool::new(false));
        let target = Arc::new(Mutex::new(None));
        let produced_so_far = Arc::new(Mutex::new(0));

        let producer: FutureProducer<Recorder> = ClientConfig::new()
            .set("bootstrap.servers", addr.to_string())
            .set("acks", "1")
            .set("enable.idempotence", "false")
            // No retries: a transient failure must show up as an error, not be papered over.
            .set("retries", "0")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create_with_context(recorder.clone())
            .expect("producer");
        let consumer: BaseConsumer<Recorder> = ClientConfig::new()
            .set("bootstrap.servers", addr.to_string())
            // librdkafka only allows assign() with a group id; nothing is committed to it.
            .set("group.id", "robustness-good-client")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "50")
            .create_with_context(recorder.clone())
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for p in 0..GOOD_PARTITIONS {
            assignment
                .add_partition_offset(GOOD_TOPIC, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&assignment).expect("assign");

        let producer = tokio::spawn(produce_loop(
            producer,
            recorder.clone(),
            stop.clone(),
            produced_so_far.clone(),
            deadline,
        ));
        let abandoned = Arc::new(AtomicBool::new(false));
        let consumer = {
            let (recorder, target, abandoned) = (recorder.clone(), target.clone(), abandoned.clone());
            tokio::task::spawn_blocking(move || {
                consume_loop(&consumer, &recorder, &target, &abandoned, deadline)
            })
        };
        Self {
            _abandon: AbandonOnDrop(abandoned),
            recorder,
            stop,
            produced_so_far,
            target,
            producer,
            consumer,
        }
    }

    /// Waits until a first few records are acknowledged, so the client is really running
    /// when the storm starts.
    pub async fn wait_for_progress(&self, limit: Duration) {
        let until = Instant::now() + limit;
        while *self.produced_so_far.lock().unwrap() < 10 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            *self.produced_so_far.lock().unwrap() >= 10,
            "the well-behaved client made no progress before fuzzing: {:?}",
            self.recorder.errors.lock().unwrap()
        );
    }

    pub async fn finish(self) -> GoodReport {
        self.stop.store(true, Ordering::Relaxed);
        let produced = self.producer.await.expect("producer task");
        *self.target.lock().unwrap() = Some(produced.iter().map(Vec::len).collect());
        let consumed = self.consumer.await.expect("consumer task");
        GoodReport {
            produced,
            consumed,
            errors: self.recorder.errors.lock().unwrap().clone(),
            warnings: self.recorder.warnings.lock().unwrap().clone(),
        }
    }
}

async fn produce_loop(
    producer: FutureProducer<Recorder>,
    recorder: Recorder,
    stop: Arc<AtomicBool>,
    produced_so_far: Arc<Mutex<usize>>,
    deadline: Instant,
) -> PartitionRecords {
    let mut produced: PartitionRecords = vec![Vec::new(); GOOD_PARTITIONS as usize];
    let mut next = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut pending = Vec::new();
        for _ in 0..10 {
            let i = next;
            next += 1;
            let partition = (i % GOOD_PARTITIONS as u64) as i32;
            let value = payload(i);
            let record = FutureRecord::to(GOOD_TOPIC)
                .partition(partition)
                .key(value.as_str())
                .payload(value.as_str());
            match producer.send_result(record) {
                Ok(delivery) => pending.push((i, partition, delivery)),
                Err((e, _)) => recorder.error(format!("enqueue of record {i}: {e}")),
            }
        }
        for (i, partition, delivery) in pending {
            match tokio::time::timeout(Duration::from_secs(30), delivery).await {
                Ok(Ok(Ok(d))) if d.partition == partition => {
                    produced[partition as usize].push((d.offset, payload(i)));
                    *produced_so_far.lock().unwrap() += 1;
                }
                Ok(Ok(Ok(d))) => recorder.error(format!("record {i} landed in partition {}", d.partition)),
                Ok(Ok(Err((e, _)))) => recorder.error(format!("delivery of record {i}: {e}")),
                Ok(Err(_)) => recorder.error(format!("delivery of record {i} cancelled")),
                Err(_) => recorder.error(format!("delivery of record {i} timed out")),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    producer.flush(Duration::from_secs(5)).ok();
    produced
}

fn consume_loop(
    consumer: &BaseConsumer<Recorder>,
    recorder: &Recorder,
    target: &Mutex<Option<Vec<usize>>>,
    abandoned: &AtomicBool,
    deadline: Instant,
) -> PartitionRecords {
    let mut consumed: PartitionRecords = vec![Vec::new(); GOOD_PARTITIONS as usize];
    while Instant::now() < deadline && !abandoned.load(Ordering::Relaxed) {
        if let Some(target) = target.lock().unwrap().as_ref() {
            if consumed.iter().zip(target).all(|(got, want)| got.len() >= *want) {
                break;
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                let value = message
                    .payload()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .unwrap_or_default();
                match consumed.get_mut(message.partition() as usize) {
                    Some(records) => records.push((message.offset(), value)),
                    None => recorder.error(format!("record from unknown partition {}", message.partition())),
                }
            }
            Some(Err(e)) => recorder.error(format!("consumer: {e}")),
        }
    }
    consumed
}

impl GoodReport {
    pub fn produced_total(&self) -> usize {
        self.produced.iter().map(Vec::len).sum()
    }
    pub fn consumed_total(&self) -> usize {
        self.consumed.iter().map(Vec::len).sum()
    }

    pub fn assert_complete(&self) {
        assert!(
            self.errors.is_empty(),
            "the well-behaved client saw errors: {:#?}",
            self.errors
        );
        assert!(
            self.produced_total() >= 100,
            "the well-behaved client produced only {} records",
            self.produced_total()
        );
        for (partition, (produced, consumed)) in self.produced.iter().zip(&self.consumed).enumerate() {
            // Records produced to one partition got increasing offsets in send order...
            assert!(
                produced.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1),
                "partition {partition}: acknowledged offsets out of send order"
            );
            // ...and the consumer read exactly those, at those offsets, in that order.
            if produced != consumed {
                let first_diff = produced.iter().zip(consumed).position(|(a, b)| a != b);
                panic!(
                    "partition {partition}: produced {} records, consumed {}; first difference at {first_diff:?}",
                    produced.len(),
                    consumed.len()
                );
            }
        }
    }
}
