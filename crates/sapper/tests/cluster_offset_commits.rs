#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Committed offsets survive a coordinator failover (issue 5: "the internal topics are
//! replicated, so group coordinators fail over with their partitions").
//!
//! An OffsetCommit is acknowledged only once the in-sync replicas of the group's
//! `__consumer_offsets` partition have it, as Kafka's `offsets.commit.required.acks=-1` does.
//! The test makes that observable: five nodes (so the metadata quorum survives two paused
//! ones), both followers of the group's offsets partition paused (SIGSTOP) before a commit,
//! then the coordinator killed right after the commit is acknowledged and the followers
//! resumed. Had the coordinator answered after its local append, a resumed follower (still in
//! the ISR) would be elected without the commit, and the group would go back to its older
//! offset. Answering after the ISR has it (here: after the leader dropped the paused followers
//! from the ISR, so neither can be elected) keeps the commit. Real client: librdkafka.

mod common;

use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::{client_config, create_topic};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const OFFSETS_TOPIC: &str = "__consumer_offsets";
const TOPIC: &str = "commits";
const GROUP: &str = "commit-durability";
/// Bound on one commit or committed-offsets lookup, retries included.
const CLIENT_BOUND: Duration = Duration::from_secs(40);
/// Longer than a follower fetch's long poll, shorter than a broker session.
const FOLLOWER_LONG_POLL_END: Duration = Duration::from_millis(800);

/// Kafka's `abs(groupId.hashCode()) % offsets.topic.num.partitions` (50).
fn offsets_partition(group: &str) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    (h & 0x7fff_ffff) % 50
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    client_config(bootstrap)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .create()
        .expect("creating the consumer")
}

fn offset_list(offset: i64) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(TOPIC, 0, Offset::Offset(offset))
        .unwrap();
    list
}

/// Commits `offset` for partition 0 of the topic, retrying retriable failures; answers how
/// long the acknowledged attempt took and how many attempts failed before it.
fn commit(consumer: &BaseConsumer, offset: i64) -> (Duration, Vec<String>) {
    let deadline = Instant::now() + CLIENT_BOUND;
    let mut failures = Vec::new();
    loop {
        let attempt = Instant::now();
        match consumer.commit(&offset_list(offset), CommitMode::Sync) {
            Ok(()) => return (attempt.elapsed(), failures),
            Err(e) => failures.push(format!("{e} after {:.2?}", attempt.elapsed())),
        }
        assert!(
            Instant::now() < deadline,
            "committing {offset} failed for {CLIENT_BOUND:?}: {failures:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The group's committed offset for partition 0, retrying while the coordinator is away.
fn committed(bootstrap: &str) -> i64 {
    let consumer = consumer(bootstrap);
    let deadline = Instant::now() + CLIENT_BOUND;
    let mut failures = Vec::new();
    loop {
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition(TOPIC, 0);
        match consumer.committed_offsets(wanted, Duration::from_secs(5)) {
            Ok(list) => match list.find_partition(TOPIC, 0).map(|e| e.offset()) {
                Some(Offset::Offset(offset)) => return offset,
                other => failures.push(format!("no committed offset: {other:?}")),
            },
            Err(e) => failures.push(e.to_string()),
        }
        assert!(
            Instant::now() < deadline,
            "no committed offset within {CLIENT_BOUND:?}: {failures:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_acknowledged_commit_survives_the_coordinator_crash() {
    let mut cluster = TestCluster::start(5, &[]);
    let bootstrap = cluster.bootstrap();
    create_topic(&bootstrap, TOPIC, 1);
    let partition = offsets_partition(GROUP);
    let (view, _) = cluster
        .wait_for(
            "the group's offsets partition fully in sync",
            Duration::from_secs(30),
            Some(OFFSETS_TOPIC),
            |v| v.partitions.get(&partition).is_some_and(|p| p.fully_in_sync()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let state = view.partitions[&partition].clone();
    let coordinator = state.leader;
    let followers: Vec<i32> = state
        .replicas
        .iter()
        .copied()
        .filter(|r| *r != coordinator)
        .collect();
    println!(
        "{OFFSETS_TOPIC}-{partition}: leader {coordinator}, replicas {:?}",
        state.replicas
    );
    assert_eq!(
        followers.len(),
        2,
        "the offsets topic has three replicas on five nodes"
    );

    let client = consumer(&bootstrap);
    let (took, failures) = commit(&client, 1);
    println!("first commit acknowledged in {took:.2?} (failed attempts: {failures:?})");

    for f in &followers {
        cluster.sigstop(*f);
    }
    // A paused follower's outstanding long poll would still be answered into its socket
    // buffer; let those end empty (they wait at most 500 ms) so the commit below can reach the
    // followers only if they resume. Their sessions (1.5 s) have not expired yet.
    std::thread::sleep(FOLLOWER_LONG_POLL_END);
    let (took, failures) = commit(&client, 42);
    println!("commit with both followers paused acknowledged in {took:.2?} (failed attempts: {failures:?})");
    // Right away: the coordinator crashes and the followers come back.
    cluster.kill9(coordinator);
    for f in &followers {
        cluster.sigcont(*f);
    }
    drop(client);
    std::thread::sleep(Duration::from_secs(2));
    cluster.restart(coordinator);
    let found = committed(&bootstrap);
    let after = cluster
        .metadata(Some(OFFSETS_TOPIC))
        .and_then(|v| v.partitions.get(&partition).cloned());
    assert_eq!(
        found, 42,
        "the acknowledged commit was lost in the failover; {OFFSETS_TOPIC}-{partition} now: {after:?}"
    );
}
