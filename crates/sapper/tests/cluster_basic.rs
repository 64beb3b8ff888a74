#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Three `sapper broker` processes with `--voters` form a cluster (issue 5, step 3): a 6-partition
//! RF=3 topic created with rdkafka's admin client is described the same by every broker
//! (3 brokers, leaders spread, ISR = replicas), records produced with acks=1 are read back
//! through the leaders, a `kill -9` of a leader moves its partitions to new leaders from the
//! ISR within about 2 s and producing works again, and the restarted node registers again.
//!
//! Followers replicate their leaders: records written before the kill are read back from the
//! new leaders.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

use common::cluster::{local_nodes, spawn_all, ClusterNode, MetadataReader};
use common::{block_on, client_config, consume_all};

const NODES: i32 = 3;
const PARTITIONS: i32 = 6;
/// Bound of one Metadata round trip.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Failover: the controller's session timeout is 1.5 s, a closed heartbeat connection fences
/// within 0.2 s; "about 2 s" with room for a loaded test machine.
const FAILOVER_BOUND: Duration = Duration::from_secs(4);
/// A fenced broker is listed for 3 s more; the bound leaves slack.
const FENCED_UNLISTED_BOUND: Duration = Duration::from_secs(6);

/// Produces `count` records per partition with acks=1; answers the acknowledged offsets.
fn produce(bootstrap: &str, topic: &str, tag: &str, count: usize) -> Vec<(i32, i64)> {
    let producer: FutureProducer = client_config(bootstrap)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "20000")
        .set("request.timeout.ms", "5000")
        .create()
        .unwrap();
    block_on(async {
        let mut pending = Vec::new();
        for p in 0..PARTITIONS {
            for i in 0..count {
                let payload = format!("{tag}-p{p}-{i}");
                let record = FutureRecord::<(), _>::to(topic).partition(p).payload(&payload);
                pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
            }
        }
        let mut acked = Vec::with_capacity(pending.len());
        for delivery in pending {
            let delivered = delivery.await.expect("the producer dropped a delivery");
            let (partition, offset) = match delivered {
                Ok(d) => (d.partition, d.offset),
                Err((e, _)) => panic!("produce {tag} failed: {e}"),
            };
            acked.push((partition, offset));
        }
        acked
    })
}

#[test]
fn three_brokers_serve_an_rf3_topic_and_fail_over_after_kill9() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // Each node takes its controller listener from its `--voters` entry.
    let mut nodes: Vec<ClusterNode> = local_nodes("node", NODES, dir.path())
        .into_iter()
        .map(|node| {
            let rack = format!("rack-{}", node.id);
            node.without_controller_listen().with_args(&["--rack", &rack])
        })
        .collect();
    spawn_all(&mut nodes);
    let views = MetadataReader::new(REQUEST_TIMEOUT);
    let all: BTreeSet<i32> = (1..=NODES).collect();
    let view = views.wait_registered(&nodes);
    let refs: Vec<&ClusterNode> = nodes.iter().collect();
    assert_eq!(view.racks.get(&2), Some(&Some("rack-2".to_string())));
    println!("cluster of {NODES} up in {:?}", started.elapsed());

    // Create the topic through one broker with rdkafka's admin client.
    let topic = "cluster-basic";
    let bootstrap = common::cluster::bootstrap(&refs);
    let admin: AdminClient<DefaultClientContext> = client_config(&bootstrap).create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let results = block_on(admin.create_topics(
        [&NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(3))],
        &options,
    ))
    .expect("CreateTopics failed");
    for result in results {
        result.unwrap_or_else(|(name, code)| panic!("creating {name}: {code}"));
    }
    let created = views.wait_for_views(
        &refs,
        topic,
        Duration::from_secs(15),
        "topic on every broker",
        |v| v.brokers == all && v.partitions.len() == PARTITIONS as usize,
    );
    let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
    for (index, p) in &created.partitions {
        assert_eq!(p.error, 0, "partition {index}: {p:?}");
        assert_eq!(
            p.replicas.iter().copied().collect::<BTreeSet<_>>(),
            all,
            "partition {index}: {p:?}"
        );
        assert_eq!(
            p.isr.iter().copied().collect::<BTreeSet<_>>(),
            all,
            "ISR = replicas: {p:?}"
        );
        assert!(p.offline.is_empty(), "{p:?}");
        assert_eq!(
            p.leader, p.replicas[0],
            "the preferred replica leads a new partition: {p:?}"
        );
        *leaders.entry(p.leader).or_default() += 1;
    }
    assert_eq!(
        leaders.len(),
        NODES as usize,
        "leaders spread over every broker: {leaders:?}"
    );
    println!("topic created; leaders per broker {leaders:?}");

    // acks=1 produce, then read everything back through the leaders.
    let acked = produce(&bootstrap, topic, "before", 50);
    assert_eq!(acked.len(), 50 * PARTITIONS as usize);
    // acks=1 records become visible to consumers once every ISR member has them (the high
    // watermark): wait for the followers.
    let replicated = Instant::now();
    while common::high_watermarks(&bootstrap, topic, PARTITIONS) != vec![50; PARTITIONS as usize] {
        assert!(
            replicated.elapsed() < Duration::from_secs(10),
            "high watermarks stuck below 50"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("replicated to every ISR member in {:?}", replicated.elapsed());
    let read = consume_all(&bootstrap, topic, PARTITIONS);
    for (p, records) in read.iter().enumerate() {
        let payloads: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
            .collect();
        let expected: Vec<String> = (0..50).map(|i| format!("before-p{p}-{i}")).collect();
        assert_eq!(payloads, expected, "partition {p} read back");
    }

    // Give the followers time to catch up (a new partition joins its fetcher's next request,
    // after the in-flight long poll of up to 500 ms): acks=1 records not yet replicated when
    // the leader dies are lost, as in Kafka.
    std::thread::sleep(Duration::from_secs(2));

    // kill -9 the broker leading partition 0.
    let victim = created.partitions[&0].leader;
    let led: Vec<i32> = created
        .partitions
        .iter()
        .filter(|(_, p)| p.leader == victim)
        .map(|(i, _)| *i)
        .collect();
    let killed_at = Instant::now();
    nodes[(victim - 1) as usize].kill9();
    let survivors: Vec<&ClusterNode> = nodes.iter().filter(|n| n.id != victim).collect();
    let after = views.wait_for_views(
        &survivors,
        topic,
        FAILOVER_BOUND,
        "new leaders after kill -9",
        |v| v.partitions.values().all(|p| p.leader != victim && p.leader > 0),
    );
    let failover = killed_at.elapsed();
    for index in &led {
        let (before, now) = (&created.partitions[index], &after.partitions[index]);
        assert!(
            before.isr.contains(&now.leader),
            "new leader from the ISR: {now:?}"
        );
        assert!(
            now.leader_epoch > before.leader_epoch,
            "leader epoch advanced: {before:?} -> {now:?}"
        );
        assert!(!now.isr.contains(&victim), "the victim left the ISR: {now:?}");
        assert_eq!(now.offline, vec![victim], "{now:?}");
    }
    println!("broker {victim} killed; partitions {led:?} have new leaders after {failover:?}");
    // Metadata keeps listing a fenced broker for 3 s (so librdkafka migrates its partitions
    // before it decommissions the broker), then drops it.
    views.wait_for_views(
        &survivors,
        topic,
        FENCED_UNLISTED_BOUND,
        "the fenced broker no longer listed",
        |v| !v.brokers.contains(&victim),
    );

    let survivors_bootstrap = common::cluster::bootstrap(&survivors);
    let produce_started = Instant::now();
    let acked = produce(&survivors_bootstrap, topic, "after", 20);
    assert_eq!(acked.len(), 20 * PARTITIONS as usize);
    println!(
        "produce after failover succeeded in {:?}",
        produce_started.elapsed()
    );

    // Replication: the followers had caught up before the kill, so the new leaders hold the
    // records produced before it, followed by the ones produced after.
    let replicated = wait_replicated(&survivors_bootstrap, topic, 70);
    println!("replicated to the remaining ISR in {replicated:?}");
    let read = consume_all(&survivors_bootstrap, topic, PARTITIONS);
    for (p, records) in read.iter().enumerate() {
        let payloads: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
            .collect();
        let expected: Vec<String> = (0..50)
            .map(|i| format!("before-p{p}-{i}"))
            .chain((0..20).map(|i| format!("after-p{p}-{i}")))
            .collect();
        assert_eq!(payloads, expected, "partition {p} read back after failover");
    }
    println!("every record produced before the kill was read back from the new leaders");

    // The killed node comes back: it registers again, is unfenced and listed.
    nodes[(victim - 1) as usize].spawn();
    let refs: Vec<&ClusterNode> = nodes.iter().collect();
    let rejoined = views.wait_for_views(
        &refs,
        topic,
        Duration::from_secs(15),
        "the restarted node is listed",
        |v| v.brokers == all,
    );
    for p in rejoined.partitions.values() {
        assert!(p.leader > 0, "{p:?}");
        assert!(
            p.offline.is_empty(),
            "nothing offline once the node is back: {p:?}"
        );
    }
    println!("node {victim} rejoined; whole test {:?}", started.elapsed());
}

/// Waits until every partition's high watermark is `expected` (acks=1 records become visible
/// to consumers once every ISR member has them); answers how long that took.
fn wait_replicated(bootstrap: &str, topic: &str, expected: i64) -> Duration {
    let started = Instant::now();
    loop {
        let hws = common::high_watermarks(bootstrap, topic, PARTITIONS);
        if hws.iter().all(|&hw| hw == expected) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "high watermarks stuck at {hws:?}, expected {expected}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
