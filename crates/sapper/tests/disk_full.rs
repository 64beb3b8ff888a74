#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Disk full end to end: "disk errors (including a full disk) answer KAFKA_STORAGE_ERROR and
//! never corrupt what is already stored".
//!
//! The broker's data directory lives on a small tmpfs the test mounts itself (so it needs
//! root; without permission to mount it says so and skips). A filler file takes part of the
//! space up front so that space can be given back later.
//!
//! 1. The project's own client produces ~64 KiB batches (exact error codes) until a Produce
//!    is refused; that refusal must be KAFKA_STORAGE_ERROR (56), not a crash or a closed
//!    connection, later produces to the partition must be refused the same way, and the
//!    broker must keep answering ApiVersions and Metadata. librdkafka (acks=1) must then get
//!    a storage error (or a retriable one) in its delivery reports, within its
//!    `message.timeout.ms`, never a hang or a false acknowledgement.
//! 2. Everything acknowledged reads back byte for byte at its offset (Fetch with the own
//!    client, and librdkafka's consumer), nothing after it is visible, the log end offset is
//!    the last acknowledged offset + 1, and the segment files hold exactly those bytes.
//! 3. The filler is deleted, the broker restarted (SIGTERM must exit 0): the data is still
//!    intact and producing resumes at the next offset.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use sapper_log::batch::testing::simple_batch;
use sapper_log::batch::{set_base_offset, BatchIter};
use sapper_wire::client::Client;
use sapper_wire::kafka_protocol::error::ResponseError;
use sapper_wire::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use sapper_wire::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use sapper_wire::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sapper_wire::kafka_protocol::messages::produce_response::PartitionProduceResponse;
use sapper_wire::kafka_protocol::messages::{
    ApiVersionsRequest, FetchRequest, MetadataRequest, ProduceRequest, TopicName,
};
use sapper_wire::kafka_protocol::protocol::{Request, StrBytes};

use common::TestBroker;

/// Size of the tmpfs holding the data directory.
const FS_SIZE: &str = "8m";
/// Written before the broker starts and deleted in phase 3 to free space.
const FILLER_BYTES: usize = 2 << 20;
/// The topic's `segment.bytes`: small, so the log rolls several times before the disk fills.
const SEGMENT_BYTES: &str = "1048576";
/// 16 records of 4000 bytes: batches of about 64 KiB.
const RECORDS_PER_BATCH: i32 = 16;
const VALUE_BYTES: usize = 4000;
/// Upper bound on phase 1; the disk fills after roughly a hundred requests.
const MAX_PRODUCE_REQUESTS: usize = 2000;
/// Batches produced after the restart.
const BATCHES_AFTER_RESTART: usize = 3;
const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
const METADATA_VERSION: i16 = 12;
const API_VERSIONS_VERSION: i16 = 3;
/// How long one request of the own client may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// librdkafka's `message.timeout.ms`: every delivery report must come within it (plus slack).
const RDKAFKA_MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);
const RDKAFKA_MESSAGES: usize = 5;
const NONE: i16 = 0;

#[test]
fn full_disk_answers_kafka_storage_error_and_keeps_every_acknowledged_batch() {
    let started = Instant::now();
    let Some(fs) = Tmpfs::mount(FS_SIZE) else {
        return;
    };
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![0xa5u8; FILLER_BYTES]).expect("writing the filler file");
    let data_dir = fs.path().join("data");
    std::fs::create_dir(&data_dir).expect("creating the data directory");

    // Declared after `fs`, so it is dropped (the process killed) before the unmount.
    let mut broker = TestBroker::start(&data_dir, &[]);
    let topic = common::unique_topic("disk-full");
    let partition_dir = data_dir.join(format!("{topic}-0"));
    create_topic_with_small_segments(&broker.bootstrap(), &topic);
    let mut raw = RawClient::connect(broker.addr);
    raw.wait_for_leader(&topic);

    // Phase 1: fill the disk.
    let mut acked = fill_until_refused(&mut raw, &topic);
    let acked_bytes: usize = acked.iter().map(|a| a.bytes.len()).sum();
    println!(
        "disk_full: {} batches ({acked_bytes} bytes, offsets 0..{}) acknowledged, then KAFKA_STORAGE_ERROR",
        acked.len(),
        log_end(&acked)
    );
    if let Some(free) = fs.free_bytes() {
        // Less than a batch but more than nothing means the refused write stored part of the
        // batch before ENOSPC, so the cut-back path ran.
        println!("disk_full: {free} bytes free on the tmpfs after the refusal");
    }
    broker.assert_running();
    let big = make_batch(MAX_PRODUCE_REQUESTS);
    let tiny = simple_batch(1, now_ms(), b"tiny");
    for (what, batch) in [("a full-size batch", &big), ("a one-record batch", &tiny)] {
        let r = raw.produce(&topic, batch);
        assert_eq!(
            r.error_code,
            ResponseError::KafkaStorageError.code(),
            "after the disk filled, produce of {what} ({} bytes): expected KAFKA_STORAGE_ERROR, got {} ({:?}) at base offset {}",
            batch.len(),
            r.error_code,
            ResponseError::try_from_code(r.error_code),
            r.base_offset
        );
    }
    raw.assert_serves(&topic);
    broker.assert_running();
    if let Some(line) = broker
        .stderr_tail()
        .lines()
        .find(|l| l.contains("taking log offline"))
    {
        println!("disk_full: broker said: {}", line.trim());
    }

    let codes = rdkafka_produce_is_refused(&broker.bootstrap(), &topic);
    println!("disk_full: librdkafka delivery errors: {codes:?}");
    broker.assert_running();

    // Phase 2: what was acknowledged is there, whole, and nothing else.
    verify_log(
        &mut raw,
        &broker,
        &topic,
        &partition_dir,
        &acked,
        "with the disk full",
    );
    assert_no_panic(&broker);

    // Phase 3: free space, restart, read back, produce again.
    std::fs::remove_file(&filler).expect("deleting the filler file");
    let restart_started = Instant::now();
    broker.restart(); // SIGTERM must end the process with status 0
    println!(
        "disk_full: SIGTERM exited 0 with the log offline; restarted in {:.1}s",
        restart_started.elapsed().as_secs_f64()
    );
    let mut raw = RawClient::connect(broker.addr);
    raw.wait_for_leader(&topic);
    verify_log(
        &mut raw,
        &broker,
        &topic,
        &partition_dir,
        &acked,
        "after the restart",
    );
    for i in 0..BATCHES_AFTER_RESTART {
        let index = MAX_PRODUCE_REQUESTS + 1 + i;
        let batch = make_batch(index);
        let expected_base = log_end(&acked);
        let r = raw.produce(&topic, &batch);
        assert_eq!(
            (r.error_code, r.base_offset),
            (NONE, expected_base),
            "produce #{i} after freeing space and restarting: expected no error at base offset {expected_base}, got error {} ({:?}) at base offset {}",
            r.error_code,
            ResponseError::try_from_code(r.error_code),
            r.base_offset
        );
        acked.push(Acked::new(index, batch, expected_base));
    }
    verify_log(
        &mut raw,
        &broker,
        &topic,
        &partition_dir,
        &acked,
        "after producing again",
    );
    assert_no_panic(&broker);
    broker.sigterm_and_wait();
    println!("disk_full: passed in {:.1}s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// Phases
// ---------------------------------------------------------------------------------------------

/// One acknowledged batch: where it landed and the bytes the log must hold for it.
struct Acked {
    base_offset: i64,
    /// As sent, with the base offset the broker assigned (the only field it rewrites here).
    bytes: Vec<u8>,
    /// The value of each of its records.
    value: Vec<u8>,
}

impl Acked {
    fn new(index: usize, mut bytes: Vec<u8>, base_offset: i64) -> Acked {
        set_base_offset(&mut bytes, base_offset);
        Acked {
            base_offset,
            bytes,
            value: batch_value(index),
        }
    }

    fn next_offset(&self) -> i64 {
        self.base_offset + i64::from(RECORDS_PER_BATCH)
    }
}

/// The offset after the last acknowledged batch.
fn log_end(acked: &[Acked]) -> i64 {
    acked.last().map_or(0, Acked::next_offset)
}

/// The value every record of batch `index` holds: distinct per batch, so a batch read at the
/// wrong offset shows.
fn batch_value(index: usize) -> Vec<u8> {
    format!("batch-{index:05}|")
        .into_bytes()
        .into_iter()
        .cycle()
        .take(VALUE_BYTES)
        .collect()
}

fn make_batch(index: usize) -> Vec<u8> {
    simple_batch(RECORDS_PER_BATCH, now_ms(), &batch_value(index))
}

/// Produces batches until one is refused, which must be with KAFKA_STORAGE_ERROR; returns the
/// acknowledged ones.
fn fill_until_refused(raw: &mut RawClient, topic: &str) -> Vec<Acked> {
    let mut acked: Vec<Acked> = Vec::new();
    for i in 0..MAX_PRODUCE_REQUESTS {
        let batch = make_batch(i);
        let expected_base = log_end(&acked);
        let r = raw.produce(topic, &batch);
        if r.error_code == NONE {
            assert_eq!(
                r.base_offset, expected_base,
                "produce #{i} acknowledged at base offset {}, expected {expected_base}",
                r.base_offset
            );
            acked.push(Acked::new(i, batch, expected_base));
            continue;
        }
        assert_eq!(
            r.error_code,
            ResponseError::KafkaStorageError.code(),
            "produce #{i} ({} bytes, after {} acknowledged batches) was refused with {} ({:?}), expected KAFKA_STORAGE_ERROR",
            batch.len(),
            acked.len(),
            r.error_code,
            ResponseError::try_from_code(r.error_code)
        );
        // A disk this small must fill after some dozens of batches, past several rolls.
        assert!(
            acked.len() >= 20,
            "the first refusal came after only {} batches",
            acked.len()
        );
        return acked;
    }
    panic!("{MAX_PRODUCE_REQUESTS} produce requests were all acknowledged on a {FS_SIZE} disk");
}

/// Checks, through several readers, that the partition holds exactly `acked`.
fn verify_log(
    raw: &mut RawClient,
    broker: &TestBroker,
    topic: &str,
    partition_dir: &Path,
    acked: &[Acked],
    when: &str,
) {
    let end = log_end(acked);

    // Byte for byte through Fetch.
    let (stored, high_watermark) = raw.fetch_all(topic);
    assert_eq!(
        high_watermark,
        end,
        "{when}: Fetch reports high watermark {high_watermark}, the last acknowledged offset is {}",
        end - 1
    );
    for (i, (want, (base, got))) in acked.iter().zip(&stored).enumerate() {
        assert_eq!(
            *base, want.base_offset,
            "{when}: stored batch #{i} is at offset {base}, expected {}",
            want.base_offset
        );
        if *got != want.bytes {
            let first_diff = got
                .iter()
                .zip(&want.bytes)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.bytes.len()));
            panic!(
                "{when}: batch #{i} at offset {base} differs from what was acknowledged: {} bytes stored, {} sent, first difference at byte {first_diff}",
                got.len(),
                want.bytes.len()
            );
        }
    }
    assert_eq!(
        stored.len(),
        acked.len(),
        "{when}: {} batches stored, {} acknowledged (first extra/missing at offset {:?})",
        stored.len(),
        acked.len(),
        stored
            .get(acked.len())
            .map(|(b, _)| *b)
            .or(acked.get(stored.len()).map(|a| a.base_offset))
    );

    // ListOffsets, through librdkafka.
    let hw = common::high_watermarks(&broker.bootstrap(), topic, 1)[0];
    assert_eq!(hw, end, "{when}: ListOffsets reports log end {hw}");

    // Record by record, through librdkafka's consumer.
    let records = common::consume_all(&broker.bootstrap(), topic, 1).remove(0);
    assert_eq!(
        records.len(),
        usize::try_from(end).unwrap(),
        "{when}: the consumer read {} records below offset {end}",
        records.len()
    );
    for (expected_offset, record) in (0..).zip(&records) {
        assert_eq!(
            record.offset, expected_offset,
            "{when}: consumer offsets have a gap"
        );
        let want = &acked[usize::try_from(expected_offset / i64::from(RECORDS_PER_BATCH)).unwrap()];
        assert!(
            record.payload == want.value,
            "{when}: the record at offset {expected_offset} holds a different value ({} bytes, starts {:?})",
            record.payload.len(),
            String::from_utf8_lossy(&record.payload[..record.payload.len().min(16)])
        );
    }

    // On disk: the segment files hold exactly the acknowledged batches, no torn tail.
    let on_disk = segment_bytes_on_disk(partition_dir);
    let acked_bytes: u64 = acked.iter().map(|a| a.bytes.len() as u64).sum();
    assert_eq!(
        on_disk,
        acked_bytes,
        "{when}: the segment files in {} hold {on_disk} bytes, the acknowledged batches {acked_bytes}",
        partition_dir.display()
    );
    println!(
        "disk_full: {when}: {} batches / {end} records intact, log end {end}, {on_disk} bytes in segments",
        stored.len()
    );
}

/// Sum of the sizes of the partition's `.log` files.
fn segment_bytes_on_disk(partition_dir: &Path) -> u64 {
    std::fs::read_dir(partition_dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", partition_dir.display()))
        .map(|entry| entry.expect("reading a directory entry"))
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
        .map(|entry| entry.metadata().expect("stat of a segment file").len())
        .sum()
}

fn assert_no_panic(broker: &TestBroker) {
    let stderr = broker.stderr_tail();
    assert!(!stderr.contains("panicked"), "the broker panicked\n{stderr}");
}

// ---------------------------------------------------------------------------------------------
// librdkafka
// ---------------------------------------------------------------------------------------------

/// librdkafka's delivery reports, by message index.
#[derive(Default)]
struct Deliveries(Mutex<Vec<(usize, Result<i64, KafkaError>)>>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        use rdkafka::message::Message;
        let outcome = match result {
            Ok(msg) => Ok(msg.offset()),
            Err((err, _)) => Err(err.clone()),
        };
        self.0.lock().unwrap().push((index, outcome));
    }
}

/// Errors a producer may report for a partition whose disk is full: the broker's own code, or
/// what librdkafka says when it retried that retriable error until the message timed out.
const ACCEPTABLE_DELIVERY_ERRORS: &[RDKafkaErrorCode] = &[
    RDKafkaErrorCode::KafkaStorageError,
    RDKafkaErrorCode::MessageTimedOut,
    RDKafkaErrorCode::NotLeaderForPartition,
    RDKafkaErrorCode::LeaderNotAvailable,
    RDKafkaErrorCode::RequestTimedOut,
];

/// Produces a few records with librdkafka (acks=1) to the full partition; every delivery
/// report must be an acceptable error and arrive within `message.timeout.ms` (plus slack).
fn rdkafka_produce_is_refused(bootstrap: &str, topic: &str) -> Vec<RDKafkaErrorCode> {
    let producer: BaseProducer<Deliveries> = common::client_config(bootstrap)
        .set("acks", "1")
        .set("enable.idempotence", "false")
        .set("linger.ms", "0")
        .set("retries", "3")
        .set(
            "message.timeout.ms",
            RDKAFKA_MESSAGE_TIMEOUT.as_millis().to_string(),
        )
        .set(
            "request.timeout.ms",
            RDKAFKA_MESSAGE_TIMEOUT.as_millis().to_string(),
        )
        .create_with_context(Deliveries::default())
        .expect("creating the librdkafka producer");
    let sent = Instant::now();
    for i in 0..RDKAFKA_MESSAGES {
        let value = format!("rdkafka-{i}");
        let record = BaseRecord::with_opaque_to(topic, i)
            .partition(0)
            .key("k")
            .payload(&value);
        if let Err((e, _)) = producer.send(record) {
            panic!("librdkafka refused to queue message {i}: {e}");
        }
    }
    let deadline = sent + RDKAFKA_MESSAGE_TIMEOUT + Duration::from_secs(5);
    while producer.context().0.lock().unwrap().len() < RDKAFKA_MESSAGES {
        assert!(
            Instant::now() < deadline,
            "librdkafka got only {} of {RDKAFKA_MESSAGES} delivery reports within {:?} (message.timeout.ms {:?})",
            producer.context().0.lock().unwrap().len(),
            deadline - sent,
            RDKAFKA_MESSAGE_TIMEOUT
        );
        producer.poll(Duration::from_millis(50));
    }
    println!(
        "disk_full: librdkafka had all delivery reports after {:.1}s",
        sent.elapsed().as_secs_f64()
    );
    let reports = std::mem::take(&mut *producer.context().0.lock().unwrap());
    reports
        .into_iter()
        .map(|(i, outcome)| match outcome {
            Ok(offset) => panic!("librdkafka message {i} was acknowledged at offset {offset} on a full disk"),
            Err(e) => match e.rdkafka_error_code() {
                Some(code) if ACCEPTABLE_DELIVERY_ERRORS.contains(&code) => code,
                _ => panic!(
                    "librdkafka message {i} failed with {e}, expected one of {ACCEPTABLE_DELIVERY_ERRORS:?}"
                ),
            },
        })
        .collect()
}

/// Creates `topic` (one partition, one replica) with `segment.bytes` = [`SEGMENT_BYTES`].
fn create_topic_with_small_segments(bootstrap: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = common::client_config(bootstrap)
        .create()
        .expect("creating an admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set("segment.bytes", SEGMENT_BYTES);
    let results = common::block_on(admin.create_topics([&new_topic], &options)).expect("CreateTopics failed");
    for result in results {
        result.unwrap_or_else(|(name, code)| panic!("creating topic {name}: {code}"));
    }
}

// ---------------------------------------------------------------------------------------------
// The project's own client, for exact error codes
// ---------------------------------------------------------------------------------------------

/// One connection of [`Client`] with the runtime it lives on; every call is bounded in time.
struct RawClient {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl RawClient {
    fn connect(addr: SocketAddr) -> RawClient {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a tokio runtime");
        let client = rt
            .block_on(Client::connect(addr))
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        RawClient { rt, client }
    }

    fn call<R: Request>(&mut self, what: &str, request: &R, version: i16) -> R::Response {
        let client = &mut self.client;
        self.rt
            .block_on(async { tokio::time::timeout(REQUEST_TIMEOUT, client.send(request, version)).await })
            .unwrap_or_else(|_| panic!("{what}: no answer within {REQUEST_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"))
    }

    /// Produces `batch` to partition 0 with acks=1 and returns the partition's answer.
    fn produce(&mut self, topic: &str, batch: &[u8]) -> PartitionProduceResponse {
        let request = ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch.to_vec().into()))])]);
        let what = format!("Produce of {} bytes to {topic}/0", batch.len());
        let response = self.call(&what, &request, PRODUCE_VERSION);
        assert_eq!(response.responses.len(), 1, "{what}: one topic answered");
        let partitions = &response.responses[0].partition_responses;
        assert_eq!(partitions.len(), 1, "{what}: one partition answered");
        partitions[0].clone()
    }

    /// Waits until Metadata shows partition 0 of `topic` with a leader.
    fn wait_for_leader(&mut self, topic: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.leader(topic).is_some_and(|leader| leader >= 0) {
                return;
            }
            assert!(Instant::now() < deadline, "{topic}/0 never showed a leader");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Partition 0's leader, if Metadata reports the topic without error.
    fn leader(&mut self, topic: &str) -> Option<i32> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
            ]))
            .with_allow_auto_topic_creation(false);
        let response = self.call("Metadata", &request, METADATA_VERSION);
        let t = response.topics.first()?;
        if t.error_code != NONE {
            return None;
        }
        let p = t.partitions.iter().find(|p| p.partition_index == 0)?;
        (p.error_code == NONE).then_some(p.leader_id.0)
    }

    /// The broker still answers ApiVersions and Metadata on this connection.
    fn assert_serves(&mut self, topic: &str) {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("disk-full"))
            .with_client_software_version(StrBytes::from_static_str("1"));
        let versions = self.call("ApiVersions", &request, API_VERSIONS_VERSION);
        assert_eq!(versions.error_code, NONE, "ApiVersions error with the disk full");
        assert!(!versions.api_keys.is_empty(), "ApiVersions listed no APIs");
        assert!(
            self.leader(topic).is_some_and(|leader| leader >= 0),
            "Metadata with the disk full: {topic}/0 has no leader or an error"
        );
    }

    /// Every batch of partition 0 from offset 0 to the high watermark, each validated (CRC)
    /// and returned with its base offset; and the high watermark.
    fn fetch_all(&mut self, topic: &str) -> (Vec<(i64, Vec<u8>)>, i64) {
        let mut batches = Vec::new();
        let mut offset = 0i64;
        // Bounded: each round advances past at least one batch or ends the walk.
        for _ in 0..10_000 {
            let request = FetchRequest::default()
                .with_replica_id((-1).into())
                .with_max_wait_ms(0)
                .with_min_bytes(1)
                .with_max_bytes(8 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(4 << 20)])]);
            let what = format!("Fetch {topic}/0 at {offset}");
            let response = self.call(&what, &request, FETCH_VERSION);
            assert_eq!(response.error_code, NONE, "{what}: top-level error");
            let data = &response.responses[0].partitions[0];
            assert_eq!(
                data.error_code,
                NONE,
                "{what}: error {} ({:?})",
                data.error_code,
                ResponseError::try_from_code(data.error_code)
            );
            let records = data.records.clone().unwrap_or_default();
            if records.is_empty() {
                assert!(
                    offset >= data.high_watermark,
                    "{what}: no data below the high watermark {}",
                    data.high_watermark
                );
                return (batches, data.high_watermark);
            }
            for batch in BatchIter::validated(&records) {
                let batch = batch.unwrap_or_else(|e| panic!("{what}: a stored batch is invalid: {e}"));
                assert_eq!(
                    batch.base_offset(),
                    offset,
                    "{what}: stored offsets are not contiguous"
                );
                batches.push((batch.base_offset(), batch.as_bytes().to_vec()));
                offset = batch.last_offset() + 1;
            }
        }
        panic!("Fetch of {topic}/0 did not reach the end");
    }
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The small filesystem
// ---------------------------------------------------------------------------------------------

/// A tmpfs of a fixed size mounted on a fresh temporary directory; unmounted on drop, also
/// when the test panics.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size`, or explains why not and returns `None` (not root, no
    /// permission to mount): the test is then skipped.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::Builder::new()
            .prefix("sapper-disk-full")
            .tempdir()
            .expect("creating a mount point");
        let result = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size}"))
            .arg("sapper-disk-full")
            .arg(dir.path())
            .output();
        match result {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            Ok(out) => {
                eprintln!(
                    "disk_full: SKIPPED: cannot mount a {size} tmpfs on {} ({}): {}",
                    dir.path().display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("disk_full: SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Bytes available on the filesystem, as `df` reports them.
    fn free_bytes(&self) -> Option<u64> {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(self.dir.path())
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path = self.dir.path();
        let unmounted = Command::new("umount")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still holds a file there; detach it so the mount does not outlive us.
            let lazy = Command::new("umount").arg("-l").arg(path).status();
            eprintln!(
                "disk_full: umount {} failed; lazy unmount: {lazy:?}",
                path.display()
            );
        }
    }
}
