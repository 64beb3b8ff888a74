#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Two independent 3-node clusters on one machine (distinct ports and data directories) share
//! nothing: `kill -9` of two of cluster A's three controllers (a majority, so A has no quorum)
//! leaves cluster B fully available (create a topic, produce with acks=all, read it back) while
//! A is down, and A recovers after the two nodes restart (its topic keeps every acknowledged
//! record and takes acks=all writes again).

mod common;
mod fault_support;

use std::time::{Duration, Instant};

use fault_support::{
    acks_all_producer_config, bootstrap, check_no_acked_loss, client_config, consume_all, create_topic,
    local_nodes, spawn_all, wait_for_views, wait_registered, Acked, Node, PacedProducer,
};

const PARTITIONS: i32 = 3;

/// Produces `count` records round-robin over the partitions with an idempotent acks=all
/// producer; answers the acknowledged ones and fails on any failed delivery.
fn produce_acks_all(bootstrap: &str, topic: &str, tag: &str, count: u32) -> Vec<Acked> {
    let config = acks_all_producer_config(bootstrap, 15_000);
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    // 500 records/s: `count` records take count/500 s.
    let producer = PacedProducer::start(config, topic, &partitions, tag, 500);
    let deadline = Instant::now() + Duration::from_secs(20);
    while producer.acked_count() + producer.ledger.failed.lock().unwrap().len()
        < usize::try_from(count).unwrap()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
        // Stop sending once `count` records went out; the paced thread may send a few more.
        if producer.acked_count() >= usize::try_from(count).unwrap() {
            break;
        }
    }
    let ledger = std::sync::Arc::clone(&producer.ledger);
    let (sent, send_errors) = producer.finish();
    let acked = ledger.acked.lock().unwrap().clone();
    let failed = ledger.failed.lock().unwrap().clone();
    assert!(send_errors.is_empty(), "{tag}: send errors {send_errors:#?}");
    assert!(
        failed.is_empty(),
        "{tag}: {} deliveries failed, first {:#?}",
        failed.len(),
        failed.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(
        u64::try_from(acked.len()).unwrap(),
        sent,
        "{tag}: all acknowledged"
    );
    assert!(
        acked.len() >= usize::try_from(count).unwrap(),
        "{tag}: {} acked",
        acked.len()
    );
    acked
}

#[test]
fn a_cluster_without_quorum_does_not_disturb_another_cluster_on_the_same_machine() {
    let started = Instant::now();
    let dir = fault_support::test_dir();
    let mut a: Vec<Node> = local_nodes("A", 3, dir.path());
    let mut b: Vec<Node> = local_nodes("B", 3, dir.path());
    spawn_all(&mut a);
    spawn_all(&mut b);
    let a_view = wait_registered(&a);
    let b_view = wait_registered(&b);
    let three = |v: &fault_support::View| v.brokers.iter().copied().eq(1..=3);
    let a_refs: Vec<&Node> = a.iter().collect();
    let b_refs: Vec<&Node> = b.iter().collect();
    assert_ne!(
        a_view.cluster_id, b_view.cluster_id,
        "two clusters, two cluster ids"
    );
    println!(
        "clusters A {:?} and B {:?} up in {:?}",
        a_view.cluster_id,
        b_view.cluster_id,
        started.elapsed()
    );

    // A works before the fault.
    let a_topic = format!("a-topic-{}", std::process::id());
    create_topic(&a_refs, &a_topic, PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    let a_acked = produce_acks_all(&bootstrap(&a_refs), &a_topic, "a-before", 300);
    println!("A: {} records acknowledged before the fault", a_acked.len());

    // kill -9 two of A's three controllers: A has no quorum.
    let killed_at = Instant::now();
    a[0].kill9();
    a[1].kill9();
    println!("A: nodes 1 and 2 killed");

    // B stays fully available: a new topic, acks=all produce, read back.
    let b_started = Instant::now();
    let b_topic = format!("b-topic-{}", std::process::id());
    create_topic(&b_refs, &b_topic, PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    let b_acked = produce_acks_all(&bootstrap(&b_refs), &b_topic, "b-during", 1000);
    let b_read = consume_all(&bootstrap(&b_refs), &b_topic, PARTITIONS);
    let (read, checked) = check_no_acked_loss(&b_acked, &b_read);
    assert_eq!(read, checked, "B holds exactly what was acknowledged");
    let b_took = b_started.elapsed();
    println!("B while A is down: topic created, {checked} records acknowledged (acks=all) and read back in {b_took:?}");

    // A's last node has no quorum: it must not pretend otherwise (no acks=all write succeeds).
    let a_survivor = metadata_brokers(&a[2]);
    println!("A node 3 alone answers Metadata with brokers {a_survivor:?}");
    {
        let mut config = client_config(&a[2].client.to_string());
        config
            .set("acks", "all")
            .set("request.timeout.ms", "2000")
            .set("message.timeout.ms", "3000");
        let lone = PacedProducer::start(config, &a_topic, &[0, 1, 2], "a-lone", 20);
        std::thread::sleep(Duration::from_secs(2));
        let ledger = std::sync::Arc::clone(&lone.ledger);
        let _ = lone.finish();
        let acked = ledger.acked.lock().unwrap().clone();
        println!(
            "A node 3 alone: {} acks=all records acknowledged, {} failed",
            acked.len(),
            ledger.failed.lock().unwrap().len()
        );
        assert!(
            acked.is_empty(),
            "A's minority node acknowledged acks=all writes without a quorum: {:?}",
            acked.iter().take(5).collect::<Vec<_>>()
        );
    }

    // A recovers after restart: three brokers, every partition led, old records intact,
    // acks=all writes acknowledged again.
    let restart_at = Instant::now();
    a[0].spawn();
    a[1].spawn();
    let a_refs: Vec<&Node> = a.iter().collect();
    wait_for_views(
        &a_refs,
        &a_topic,
        Duration::from_secs(30),
        "A recovered: 3 brokers, every partition led with a full ISR",
        |v| three(v) && v.partitions.values().all(|p| p.leader > 0 && p.isr.len() == 3),
    );
    let recovered = restart_at.elapsed();
    let a_after = produce_acks_all(&bootstrap(&a_refs), &a_topic, "a-after", 300);
    let all_a: Vec<Acked> = a_acked.iter().chain(&a_after).cloned().collect();
    let a_read = consume_all(&bootstrap(&a_refs), &a_topic, PARTITIONS);
    let (_, checked) = check_no_acked_loss(&all_a, &a_read);
    println!(
        "A recovered {recovered:?} after the restart ({:?} after the kill); {checked} acknowledged records read back; whole test {:?}",
        killed_at.elapsed(),
        started.elapsed()
    );
    // B was never disturbed: it still has its three brokers.
    wait_for_views(&b_refs, &b_topic, Duration::from_secs(5), "B still whole", three);
}

fn metadata_brokers(node: &Node) -> Option<Vec<i32>> {
    fault_support::metadata(node, "none").map(|v| v.brokers.into_iter().collect())
}
