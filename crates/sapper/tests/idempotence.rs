#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Idempotent produce end to end: connections cut mid-stream make librdkafka retry, and the
//! broker's sequence checks turn every retry into a duplicate answer rather than a second
//! copy, so each partition holds every record exactly once, in send order. The raw-protocol
//! test pins the individual rules (duplicate answered with the original offset, gaps and
//! fenced epochs rejected) and checks that they survive a clean restart and a kill -9.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use sapper_log::batch::testing::batch_with_producer;
use sapper_wire::client::Client;
use sapper_wire::kafka_protocol::error::ResponseError;
use sapper_wire::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sapper_wire::kafka_protocol::messages::produce_response::PartitionProduceResponse;
use sapper_wire::kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProducerId, TopicName};
use sapper_wire::kafka_protocol::protocol::StrBytes;

use common::proxy::{Cut, TcpProxy};
use common::TestBroker;

// ---------------------------------------------------------------------------------------------
// librdkafka through a connection-cutting proxy
// ---------------------------------------------------------------------------------------------

const PARTITIONS: i32 = 3;
const RECORDS: u64 = 50_000;
/// Sending is paced over this long so the cuts land while records are in flight.
const SEND_SPAN: Duration = Duration::from_secs(4);

/// What the delivery reports said, record by record (the opaque is the record's sequence).
#[derive(Default)]
struct DeliveryLog {
    /// (sequence, partition, offset) of every acknowledged record.
    acked: Mutex<Vec<(u64, i32, i64)>>,
    failed: Mutex<Vec<(u64, String)>>,
}

impl ClientContext for DeliveryLog {}

impl ProducerContext for DeliveryLog {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let seq = seq as u64;
        match result {
            Ok(msg) => self
                .acked
                .lock()
                .unwrap()
                .push((seq, msg.partition(), msg.offset())),
            Err((err, _)) => self.failed.lock().unwrap().push((seq, err.to_string())),
        }
    }
}

fn payload(seq: u64) -> String {
    format!("{seq:010}")
}

/// The cut schedule: every kind several times, and one short outage.
const SCHEDULE: &[Option<Cut>] = &[
    Some(Cut::BeforeResponse),
    Some(Cut::MidRequest),
    Some(Cut::Now),
    Some(Cut::BeforeResponse),
    None, // refuse connections for a moment
    Some(Cut::MidRequest),
    Some(Cut::BeforeResponse),
    Some(Cut::Now),
    Some(Cut::MidRequest),
];

#[test]
fn idempotent_producer_through_cut_connections_writes_each_record_once_in_order() {
    let started = Instant::now();
    let data = tempfile::tempdir().unwrap();
    // Bound first: the broker must advertise the proxy so librdkafka never bypasses it.
    let proxy = TcpProxy::bind();
    let advertised = proxy.addr().to_string();
    let mut broker = TestBroker::start(
        data.path(),
        &[
            "--advertised-listener",
            &advertised,
            "--auto-create-topics",
            "false",
        ],
    );
    proxy.set_upstream(broker.addr);
    let bootstrap = proxy.addr().to_string();
    let topic = common::unique_topic("idem-cuts");
    common::create_topic(&bootstrap, &topic, PARTITIONS);

    let producer: BaseProducer<DeliveryLog> = common::client_config(&bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("linger.ms", "2")
        .set("batch.num.messages", "200")
        .set("message.timeout.ms", "60000")
        .set("request.timeout.ms", "10000")
        .create_with_context(DeliveryLog::default())
        .expect("creating the idempotent producer");

    // The cutter runs its whole schedule (about as long as the paced sending) while the
    // records go out; it counts, per kind of cut, (attempted, hit traffic).
    let (tally, refusals) = std::thread::scope(|s| {
        let cutter = s.spawn(|| {
            let mut tally = BTreeMap::<String, (u32, u32)>::new();
            let mut refusals = 0;
            for step in SCHEDULE {
                std::thread::sleep(Duration::from_millis(300));
                match step {
                    Some(cut) => {
                        let hit = proxy.cut(*cut, Duration::from_millis(150));
                        let entry = tally.entry(format!("{cut:?}")).or_default();
                        entry.0 += 1;
                        entry.1 += u32::from(hit);
                    }
                    None => {
                        proxy.refuse_for(Duration::from_millis(300));
                        refusals += 1;
                    }
                }
            }
            (tally, refusals)
        });
        send_paced(&producer, &topic);
        cutter.join().expect("the cutter thread panicked")
    });
    producer
        .flush(Duration::from_secs(70))
        .expect("not every record was delivered within 70 s");
    if let Some(fatal) = producer.client().fatal_error() {
        panic!("the idempotent producer hit a fatal error: {fatal:?}");
    }
    let log = producer.context();
    let failed = log.failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} records failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    let acked = log.acked.lock().unwrap().clone();
    assert_eq!(
        acked.len() as u64,
        RECORDS,
        "every record has a successful delivery report"
    );
    let cuts = proxy.cuts();
    eprintln!(
        "sent {RECORDS} records; proxy: {cuts} cuts, {refusals} outages, {} connections accepted; \
         (attempted, hit traffic) per targeted kind: {tally:?}",
        proxy.accepted()
    );
    assert!(cuts >= 5, "only {cuts} cuts happened while sending");
    let hit = |kind: &str| tally.get(kind).map_or(0, |t| t.1);
    assert!(
        hit("MidRequest") + hit("BeforeResponse") >= 2,
        "too few targeted cuts (torn request, lost response) hit traffic: {tally:?}"
    );

    // Read back and compare with what was sent, partition by partition.
    let read = common::consume_all(&bootstrap, &topic, PARTITIONS);
    let mut dr_offset = vec![-1i64; RECORDS as usize];
    for &(seq, partition, offset) in &acked {
        assert_eq!(
            i64::from(partition),
            (seq % 3) as i64,
            "record {seq} reported on partition {partition}"
        );
        dr_offset[seq as usize] = offset;
    }
    for p in 0..PARTITIONS {
        let expected: Vec<u64> = (0..RECORDS).filter(|s| s % 3 == p as u64).collect();
        let got: Vec<u64> = read[p as usize]
            .iter()
            .map(|r| {
                std::str::from_utf8(&r.payload)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| {
                        panic!(
                            "partition {p} offset {}: unexpected payload {:?}",
                            r.offset, r.payload
                        )
                    })
            })
            .collect();
        if got != expected {
            panic!("partition {p}: {}", describe_mismatch(&expected, &got));
        }
        for (i, r) in read[p as usize].iter().enumerate() {
            assert_eq!(
                r.offset, i as i64,
                "partition {p}: offsets are not contiguous from 0"
            );
            let seq = expected[i];
            assert_eq!(
                dr_offset[seq as usize], r.offset,
                "record {seq}: the delivery report said offset {}, the log has it at {}",
                dr_offset[seq as usize], r.offset
            );
        }
    }
    broker.sigterm_and_wait();
    eprintln!("took {:?}", started.elapsed());
}

/// Sends `RECORDS` records round-robin over the partitions, paced over `SEND_SPAN`.
fn send_paced(producer: &BaseProducer<DeliveryLog>, topic: &str) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(40);
    for seq in 0..RECORDS {
        let partition = (seq % 3) as i32;
        let key = format!("key-{partition}");
        let value = payload(seq);
        loop {
            let record = BaseRecord::with_opaque_to(topic, seq as usize)
                .partition(partition)
                .key(&key)
                .payload(&value);
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    assert!(Instant::now() < deadline, "the producer queue stayed full");
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => panic!("send of record {seq} refused: {e}"),
            }
        }
        if seq.is_multiple_of(250) {
            producer.poll(Duration::ZERO);
            let due = SEND_SPAN.mul_f64(seq as f64 / RECORDS as f64);
            let elapsed = start.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
    }
}

/// A readable account of how `got` differs from `expected`: duplicates, gaps, reordering.
fn describe_mismatch(expected: &[u64], got: &[u64]) -> String {
    let mut seen = BTreeMap::<u64, usize>::new();
    for s in got {
        *seen.entry(*s).or_default() += 1;
    }
    let duplicates: Vec<u64> = seen.iter().filter(|(_, n)| **n > 1).map(|(s, _)| *s).collect();
    let missing: Vec<u64> = expected
        .iter()
        .copied()
        .filter(|s| !seen.contains_key(s))
        .collect();
    let first_diff = expected.iter().zip(got).position(|(a, b)| a != b);
    format!(
        "expected {} records, read {}; {} duplicated (first {:?}), {} missing (first {:?}), \
         first difference at index {:?} (expected {:?}, got {:?})",
        expected.len(),
        got.len(),
        duplicates.len(),
        duplicates.iter().take(10).collect::<Vec<_>>(),
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>(),
        first_diff,
        first_diff.and_then(|i| expected.get(i)),
        first_diff.and_then(|i| got.get(i)),
    )
}

// ---------------------------------------------------------------------------------------------
// The rules, one request at a time, with sapper's own client
// ---------------------------------------------------------------------------------------------

const PRODUCE_VERSION: i16 = 9;
const INIT_PRODUCER_ID_VERSION: i16 = 4;
const NONE: i16 = 0;
const OUT_OF_ORDER: i16 = 45;
const INVALID_EPOCH: i16 = 47;

/// One connection plus the topic under test (one partition).
struct Raw {
    rt: tokio::runtime::Runtime,
    client: Client,
    topic: String,
}

impl Raw {
    fn connect(broker: &TestBroker, topic: &str) -> Raw {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(10), Client::connect(broker.addr)).await
            })
            .expect("connect timed out")
            .expect("connecting to the broker");
        Raw {
            rt,
            client,
            topic: topic.to_owned(),
        }
    }

    fn init_producer_id(&mut self) -> (i64, i16) {
        // Null transactional id: an idempotent, non-transactional producer.
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let response = self
            .rt
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    self.client.send(&request, INIT_PRODUCER_ID_VERSION),
                )
                .await
            })
            .expect("InitProducerId timed out")
            .expect("InitProducerId failed");
        assert_eq!(response.error_code, NONE, "InitProducerId error");
        assert!(
            response.producer_id.0 >= 0,
            "InitProducerId gave producer id {:?}",
            response.producer_id
        );
        assert_eq!(response.producer_epoch, 0);
        (response.producer_id.0, response.producer_epoch)
    }

    fn produce(&mut self, batch: &[u8]) -> PartitionProduceResponse {
        let request = ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch.to_vec().into()))])]);
        let response = self
            .rt
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    self.client.send(&request, PRODUCE_VERSION),
                )
                .await
            })
            .expect("Produce timed out")
            .expect("Produce failed");
        assert_eq!(response.responses.len(), 1, "one topic answered");
        let partitions = &response.responses[0].partition_responses;
        assert_eq!(partitions.len(), 1, "one partition answered");
        partitions[0].clone()
    }

    /// Produces `batch` and asserts it is answered without error at `base_offset`.
    fn expect_offset(&mut self, what: &str, batch: &[u8], base_offset: i64) {
        let r = self.produce(batch);
        assert_eq!(
            (r.error_code, r.base_offset),
            (NONE, base_offset),
            "{what}: expected no error at base offset {base_offset}, got error {} ({:?}) at base offset {}",
            r.error_code,
            ResponseError::try_from_code(r.error_code),
            r.base_offset
        );
    }

    /// Produces `batch` and asserts it is rejected with `code`.
    fn expect_error(&mut self, what: &str, batch: &[u8], code: i16) {
        let r = self.produce(batch);
        assert_eq!(
            r.error_code,
            code,
            "{what}: expected error {code} ({:?}), got {} ({:?}) with base offset {}",
            ResponseError::try_from_code(code),
            r.error_code,
            ResponseError::try_from_code(r.error_code),
            r.base_offset
        );
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Five records from `pid` at `epoch` starting at sequence `seq`.
fn batch(pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
    batch_with_producer(
        5,
        now_ms(),
        format!("p{pid}-e{epoch}-s{seq}").as_bytes(),
        pid,
        epoch,
        seq,
    )
}

fn high_watermark(broker: &TestBroker, topic: &str) -> i64 {
    common::high_watermarks(&broker.bootstrap(), topic, 1)[0]
}

#[test]
fn retried_batches_get_their_original_offsets_and_bad_sequences_are_refused_across_restarts() {
    let started = Instant::now();
    let data = tempfile::tempdir().unwrap();
    let mut broker = TestBroker::start(data.path(), &["--auto-create-topics", "false"]);
    let topic = common::unique_topic("idem-raw");
    common::create_topic(&broker.bootstrap(), &topic, 1);

    let mut raw = Raw::connect(&broker, &topic);
    let (pid, epoch) = raw.init_producer_id();
    let b0 = batch(pid, epoch, 0);
    raw.expect_offset("first batch, seq 0..4", &b0, 0);
    raw.expect_offset("the same batch again", &b0, 0);
    let b1 = batch(pid, epoch, 5);
    raw.expect_offset("seq 5..9", &b1, 5);
    let b2 = batch(pid, epoch, 10);
    raw.expect_offset("seq 10..14", &b2, 10);
    raw.expect_offset("seq 5..9 again (not the last batch)", &b1, 5);
    raw.expect_offset("seq 10..14 again", &b2, 10);
    assert_eq!(
        high_watermark(&broker, &topic),
        15,
        "duplicates must not be appended"
    );

    raw.expect_error("a gap: seq 20 after 14", &batch(pid, epoch, 20), OUT_OF_ORDER);
    raw.expect_error(
        "an overlap: seq 12 after 14",
        &batch(pid, epoch, 12),
        OUT_OF_ORDER,
    );
    assert_eq!(
        high_watermark(&broker, &topic),
        15,
        "rejected batches must not be appended"
    );

    // The producer moves to epoch 1 (sequences restart at 0); epoch 0 is now fenced.
    let e1_first = batch(pid, epoch + 1, 0);
    raw.expect_offset("epoch 1, seq 0..4", &e1_first, 15);
    raw.expect_error("epoch 0 after epoch 1", &batch(pid, epoch, 15), INVALID_EPOCH);
    let e1_second = batch(pid, epoch + 1, 5);
    raw.expect_offset("epoch 1, seq 5..9", &e1_second, 20);
    raw.expect_offset("epoch 1, seq 5..9 again", &e1_second, 20);
    assert_eq!(high_watermark(&broker, &topic), 25);
    drop(raw);

    // A clean restart: the producer state comes back from the data directory.
    broker.sigterm_and_wait();
    broker.restart();
    let mut raw = Raw::connect(&broker, &topic);
    raw.expect_offset("after SIGTERM restart: last batch again", &e1_second, 20);
    raw.expect_offset("after SIGTERM restart: earlier batch again", &e1_first, 15);
    raw.expect_error(
        "after SIGTERM restart: a gap",
        &batch(pid, epoch + 1, 15),
        OUT_OF_ORDER,
    );
    raw.expect_error(
        "after SIGTERM restart: epoch 0",
        &batch(pid, epoch, 15),
        INVALID_EPOCH,
    );
    let e1_third = batch(pid, epoch + 1, 10);
    raw.expect_offset("after SIGTERM restart: seq 10..14", &e1_third, 25);
    assert_eq!(high_watermark(&broker, &topic), 30);
    let (pid_after_restart, _) = raw.init_producer_id();
    assert_ne!(
        pid_after_restart, pid,
        "a producer id was handed out twice across a restart"
    );
    drop(raw);

    // A crash: the producer state is rebuilt from whatever is on disk.
    broker.kill9();
    broker.restart();
    let mut raw = Raw::connect(&broker, &topic);
    raw.expect_offset("after kill -9: last batch again", &e1_third, 25);
    raw.expect_offset("after kill -9: earlier batch again", &e1_second, 20);
    raw.expect_error("after kill -9: a gap", &batch(pid, epoch + 1, 16), OUT_OF_ORDER);
    raw.expect_error("after kill -9: epoch 0", &batch(pid, epoch, 15), INVALID_EPOCH);
    raw.expect_offset("after kill -9: seq 15..19", &batch(pid, epoch + 1, 15), 30);
    assert_eq!(high_watermark(&broker, &topic), 35);
    let (pid_after_crash, _) = raw.init_producer_id();
    assert!(
        pid_after_crash != pid && pid_after_crash != pid_after_restart,
        "a producer id was handed out twice across a crash ({pid}, {pid_after_restart}, {pid_after_crash})"
    );
    drop(raw);
    broker.sigterm_and_wait();
    eprintln!("took {:?}", started.elapsed());
}
