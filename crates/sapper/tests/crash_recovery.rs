#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! kill -9 under an acks=1 producer: every record the broker acknowledged before dying is read
//! back after the restart at exactly its acknowledged offset, the log is contiguous from 0,
//! and new records continue at the high watermark. Three crash/restart cycles per run, so a
//! recovery that leaves something subtly wrong behind is caught by the next one.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig};

use common::TestBroker;

const PARTITIONS: i32 = 2;
const CYCLES: u32 = 3;
/// Bounds on one cycle's producing.
const MAX_RECORDS: u64 = 200_000;
const MAX_SEND_TIME: Duration = Duration::from_secs(10);
/// Records per second: fast enough to keep requests in flight, slow enough that the kill
/// lands mid-stream rather than after the last record.
const RATE: f64 = 40_000.0;

/// Acknowledged records, as the delivery reports told them.
#[derive(Default)]
struct Acks {
    /// (partition, offset, payload) of each acknowledged record.
    acked: Mutex<Vec<(i32, i64, Vec<u8>)>>,
    failed: Mutex<u64>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(msg) => self.acked.lock().unwrap().push((
                msg.partition(),
                msg.offset(),
                msg.payload().unwrap_or_default().to_vec(),
            )),
            Err(_) => *self.failed.lock().unwrap() += 1,
        }
    }
}

fn producer(bootstrap: &str) -> BaseProducer<Acks> {
    common::client_config(bootstrap)
        .set("acks", "1")
        .set("enable.idempotence", "false")
        .set("linger.ms", "5")
        .set("batch.num.messages", "1000")
        .set("message.timeout.ms", "15000")
        .set("request.timeout.ms", "5000")
        .create_with_context(Acks::default())
        .expect("creating the producer")
}

/// Every record acknowledged so far, by (partition, offset).
type History = BTreeMap<(i32, i64), Vec<u8>>;

fn record_acks(history: &mut History, acks: &Acks, cycle: u32) -> usize {
    let acked = std::mem::take(&mut *acks.acked.lock().unwrap());
    let n = acked.len();
    for (partition, offset, payload) in acked {
        assert!(
            offset >= 0,
            "cycle {cycle}: acknowledged record without an offset on partition {partition}"
        );
        if let Some(previous) = history.insert((partition, offset), payload.clone()) {
            panic!(
                "cycle {cycle}: offset {offset} of partition {partition} acknowledged twice: first for {:?}, now for {:?}",
                String::from_utf8_lossy(&previous),
                String::from_utf8_lossy(&payload)
            );
        }
    }
    n
}

/// A cheap, dependency-free pseudo-random delay in `[1000, 2000)` ms for cycle `cycle`.
fn kill_delay(cycle: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_millis(1000 + u64::from((nanos ^ cycle.wrapping_mul(0x9E37_79B9)) % 1000))
}

/// Produces until the kill, kills the broker with SIGKILL from another thread while records
/// are being sent, and returns how many records were acknowledged in this cycle.
fn produce_then_kill(broker: &mut TestBroker, topic: &str, cycle: u32, history: &mut History) -> usize {
    let producer = producer(&broker.bootstrap());
    let start = Instant::now();
    let kill_at = kill_delay(cycle);
    let killed = AtomicBool::new(false);
    let (sent, stopped_by_kill) = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(kill_at);
            broker.kill9();
            killed.store(true, Ordering::SeqCst);
        });
        let mut sent = 0u64;
        while !killed.load(Ordering::SeqCst) && sent < MAX_RECORDS && start.elapsed() < MAX_SEND_TIME {
            let partition = (sent % PARTITIONS as u64) as i32;
            // Unique across cycles, with some padding so batches have a realistic size.
            let value = format!("c{cycle}-p{partition}-n{sent:08}-{}", "x".repeat(48));
            let record = BaseRecord::<(), _, ()>::to(topic)
                .partition(partition)
                .payload(&value);
            match producer.send(record) {
                Ok(()) => sent += 1,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(5));
                    continue;
                }
                Err((e, _)) => panic!("cycle {cycle}: send refused: {e}"),
            }
            if sent.is_multiple_of(100) {
                producer.poll(Duration::ZERO);
                let due = Duration::from_secs_f64(sent as f64 / RATE);
                let elapsed = start.elapsed();
                if due > elapsed {
                    std::thread::sleep(due - elapsed);
                }
            }
        }
        (sent, killed.load(Ordering::SeqCst))
    });
    assert!(
        stopped_by_kill,
        "cycle {cycle}: producing ended ({sent} records, {:?}) before the kill at {kill_at:?}",
        start.elapsed()
    );
    // Serve reports of what the broker answered before it died, then fail whatever is left.
    producer.poll(Duration::from_millis(200));
    producer.purge(PurgeConfig::default().queue().inflight());
    let deadline = Instant::now() + Duration::from_secs(10);
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        producer.poll(Duration::from_millis(50));
    }
    producer.poll(Duration::ZERO);
    let acked = record_acks(history, producer.context(), cycle);
    let failed = *producer.context().failed.lock().unwrap();
    eprintln!(
        "cycle {cycle}: sent {sent} records, killed after {kill_at:?}; {acked} acknowledged, {failed} failed"
    );
    assert!(
        acked > 0,
        "cycle {cycle}: nothing was acknowledged before the kill"
    );
    acked
}

/// Reads the whole topic back and checks it against `history`; returns the high watermarks.
fn verify(broker: &TestBroker, topic: &str, cycle: u32, history: &History) -> Vec<i64> {
    let read = common::consume_all(&broker.bootstrap(), topic, PARTITIONS);
    let mut ends = Vec::new();
    for (p, records) in read.iter().enumerate() {
        let partition = p as i32;
        for (i, r) in records.iter().enumerate() {
            assert_eq!(
                r.offset, i as i64,
                "cycle {cycle}: partition {partition} is not contiguous from 0: offset {} at position {i}",
                r.offset
            );
        }
        ends.push(records.len() as i64);
    }
    let mut lost = Vec::new();
    for (&(partition, offset), payload) in history {
        let found = read[partition as usize].get(offset as usize);
        match found {
            Some(r) if r.payload == *payload => {}
            other => lost.push(format!(
                "{partition}/{offset}: acknowledged {:?}, read {:?}",
                String::from_utf8_lossy(payload),
                other.map(|r| String::from_utf8_lossy(&r.payload).into_owned())
            )),
        }
    }
    assert!(
        lost.is_empty(),
        "cycle {cycle}: {} acknowledged records are missing or changed after the restart \
         (partition ends {ends:?}); first ones:\n{}",
        lost.len(),
        lost.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
    ends
}

/// Produces one record per partition and checks each lands exactly at the previous end.
fn produce_at_end(broker: &TestBroker, topic: &str, cycle: u32, ends: &[i64], history: &mut History) {
    let producer = producer(&broker.bootstrap());
    for p in 0..PARTITIONS {
        let value = format!("after-restart-{cycle}-p{p}");
        producer
            .send(BaseRecord::<(), _, ()>::to(topic).partition(p).payload(&value))
            .map_err(|(e, _)| e)
            .expect("sending the post-restart record");
    }
    producer
        .flush(Duration::from_secs(20))
        .expect("post-restart records were not delivered within 20 s");
    let acks = std::mem::take(&mut *producer.context().acked.lock().unwrap());
    assert_eq!(
        acks.len(),
        PARTITIONS as usize,
        "cycle {cycle}: post-restart records failed"
    );
    for (partition, offset, payload) in acks {
        assert_eq!(
            offset, ends[partition as usize],
            "cycle {cycle}: a record produced after the restart landed at offset {offset} of \
             partition {partition}, expected the previous end {}",
            ends[partition as usize]
        );
        history.insert((partition, offset), payload);
    }
}

fn crash_cycles(extra_args: &[&str]) {
    let started = Instant::now();
    let data = tempfile::tempdir().unwrap();
    let mut args = vec!["--auto-create-topics", "false"];
    args.extend_from_slice(extra_args);
    let mut broker = TestBroker::start(data.path(), &args);
    let topic = common::unique_topic("crash");
    common::create_topic(&broker.bootstrap(), &topic, PARTITIONS);
    let mut history = History::new();
    for cycle in 1..=CYCLES {
        produce_then_kill(&mut broker, &topic, cycle, &mut history);
        broker.restart();
        let ends = verify(&broker, &topic, cycle, &history);
        produce_at_end(&broker, &topic, cycle, &ends, &mut history);
        assert_eq!(
            common::high_watermarks(&broker.bootstrap(), &topic, PARTITIONS),
            ends.iter().map(|e| e + 1).collect::<Vec<_>>(),
            "cycle {cycle}: high watermarks after the post-restart records"
        );
        eprintln!(
            "cycle {cycle}: recovered ends {ends:?}, {} acknowledged records checked",
            history.len()
        );
    }
    // A final clean restart must keep everything too.
    broker.restart();
    verify(&broker, &topic, CYCLES + 1, &history);
    broker.sigterm_and_wait();
    eprintln!("took {:?}", started.elapsed());
}

#[test]
fn acknowledged_records_survive_kill9_at_their_offsets() {
    crash_cycles(&[]);
}

#[test]
fn acknowledged_records_survive_kill9_with_flush_every_batch() {
    crash_cycles(&["--flush", "every-batch"]);
}
