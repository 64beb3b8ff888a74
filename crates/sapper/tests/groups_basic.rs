#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Consumer groups end to end with librdkafka: two consumers in one group split a 6-partition
//! topic (each partition owned by exactly one), commit what they consumed, the broker restarts
//! (SIGTERM) and a new consumer in the group resumes exactly at the committed offsets.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use common::TestBroker;

const PARTITIONS: i32 = 6;
const RECORDS_PER_PARTITION: i32 = 20;
/// How long a consumer's close (revoke, LeaveGroup) may take against a local broker.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

fn consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    common::client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("creating a consumer")
}

fn produce(bootstrap: &str, topic: &str, round: &str) {
    let producer: BaseProducer = common::client_config(bootstrap).create().expect("producer");
    for p in 0..PARTITIONS {
        for i in 0..RECORDS_PER_PARTITION {
            let payload = format!("{round}-{p}-{i}");
            producer
                .send(BaseRecord::<(), _>::to(topic).partition(p).payload(&payload))
                .expect("enqueue");
        }
    }
    producer.flush(Duration::from_secs(20)).expect("flush");
}

/// Closes `c` the way librdkafka wants (`close_queue`, then poll until `closed()`), failing
/// fast if the close does not complete, then leaks the handle instead of dropping it.
///
/// Why not `drop`: rust-rdkafka 0.39's `BaseConsumer` drops its client (`rd_kafka_destroy`)
/// before its consumer-queue handle, while librdkafka requires that queue to be destroyed
/// first. The close completes at once (the broker answers LeaveGroup, nothing is in flight),
/// but `rd_kafka_destroy` then joins a broker thread whose reference count never drops:
/// gdb shows it in state INIT with no outstanding or queued requests, so no broker answer
/// could release it (cf. rust-rdkafka issue 453). confluent-kafka's `close()`, which holds no
/// such handle, returns at once against the same broker.
fn close(c: BaseConsumer) {
    c.close_queue().expect("starting the consumer close");
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    while !c.closed() {
        assert!(
            Instant::now() < deadline,
            "the consumer did not close within {CLOSE_TIMEOUT:?}"
        );
        let _ = c.poll(Duration::from_millis(50));
    }
    std::mem::forget(c);
}

fn assignment(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .expect("assignment")
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

#[test]
fn two_consumers_split_partitions_and_commits_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = TestBroker::start(dir.path(), &["--group-initial-rebalance-delay-ms", "200"]);
    let bootstrap = broker.bootstrap();
    let topic = common::unique_topic("groups");
    let group = format!("{topic}-group");
    common::create_topic(&bootstrap, &topic, PARTITIONS);
    produce(&bootstrap, &topic, "a");

    let a = consumer(&bootstrap, &group);
    let b = consumer(&bootstrap, &group);
    a.subscribe(&[&topic]).unwrap();
    b.subscribe(&[&topic]).unwrap();

    // Poll both until together they read everything and the assignment is a partition of 0..6.
    let mut seen: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    let mut owner: BTreeMap<i32, usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for (i, c) in [&a, &b].into_iter().enumerate() {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                seen.entry(m.partition()).or_default().insert(m.offset());
                owner.insert(m.partition(), i);
            }
        }
        let (sa, sb) = (assignment(&a), assignment(&b));
        let complete = seen.len() == PARTITIONS as usize
            && seen.values().all(|s| s.len() == RECORDS_PER_PARTITION as usize);
        if complete
            && !sa.is_empty()
            && !sb.is_empty()
            && sa.is_disjoint(&sb)
            && sa.len() + sb.len() == PARTITIONS as usize
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "group never settled: a={sa:?} b={sb:?} seen={:?}",
            seen.iter().map(|(p, s)| (*p, s.len())).collect::<Vec<_>>()
        );
    }
    let (sa, sb) = (assignment(&a), assignment(&b));
    for (p, who) in &owner {
        let owned = if *who == 0 { &sa } else { &sb };
        assert!(
            owned.contains(p),
            "partition {p} read by consumer {who} that does not own it"
        );
    }
    // Commit 15 of 20 on each partition (by whoever owns it).
    for (c, owned) in [(&a, &sa), (&b, &sb)] {
        let mut tpl = TopicPartitionList::new();
        for p in owned {
            tpl.add_partition_offset(&topic, *p, Offset::Offset(15)).unwrap();
        }
        c.commit(&tpl, CommitMode::Sync).expect("commit");
    }
    // The committed offsets are visible to the group.
    let committed = a.committed(Duration::from_secs(10)).expect("committed");
    for e in committed.elements() {
        assert_eq!(e.offset(), Offset::Offset(15), "partition {}", e.partition());
    }
    // Leave the group explicitly (the broker answers LeaveGroup at once, the group goes
    // Empty), then close both consumers; see `close` for why they are not dropped.
    a.unsubscribe();
    b.unsubscribe();
    for _ in 0..10 {
        let _ = a.poll(Duration::from_millis(20));
        let _ = b.poll(Duration::from_millis(20));
    }
    close(a);
    close(b);

    broker.restart();
    let bootstrap = broker.bootstrap();
    let c = consumer(&bootstrap, &group);
    c.subscribe(&[&topic]).unwrap();
    let mut first: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while first.len() < PARTITIONS as usize {
        assert!(Instant::now() < deadline, "resumed only {first:?}");
        if let Some(r) = c.poll(Duration::from_millis(100)) {
            let m = r.expect("consume after restart");
            first.entry(m.partition()).or_insert(m.offset());
        }
    }
    for (p, offset) in first {
        assert_eq!(
            offset, 15,
            "partition {p} resumed at {offset}, not at the committed 15"
        );
    }
    broker.assert_running();
    close(c);
}
