#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! ElectLeaders (API 43) against a 3-node cluster of `sapper broker` processes (both roles
//! each): after a `kill -9` and restart of a node, the partitions it prefers to lead are led
//! elsewhere; a preferred election over all partitions moves them back (Metadata shows every
//! partition led by its first replica), and asking again answers ELECTION_NOT_NEEDED.
//!
//! The node killed is the active controller, so the new controller's automatic rebalance
//! (every 30 s from its activation) does not fire before the test's own election; the test
//! checks that this held. Requests go through `sapper_wire`'s Client at every version (0-2) to
//! a node that is not the controller, which forwards them. confluent-kafka's
//! `AdminClient.elect_leaders` is exercised by tests/python/test_elect_leaders.py.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use sapper_wire::client::Client;
use sapper_wire::kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use sapper_wire::kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use sapper_wire::kafka_protocol::protocol::StrBytes;

use common::cluster::{ClusterView, TestCluster};
use common::{block_on, client_config};

const TOPIC: &str = "elect";
const PARTITIONS: i32 = 6;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const FAILOVER_BOUND: Duration = Duration::from_secs(15);
/// The new controller's first automatic rebalance comes 30 s after it activates.
const AUTO_REBALANCE: Duration = Duration::from_secs(30);

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;
const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const ELECTION_NOT_NEEDED: i16 = 84;

/// (topic, partition) -> error code.
type Results = BTreeMap<(String, i32), i16>;

fn elect(
    addr: SocketAddr,
    election_type: i8,
    partitions: Option<&[(&str, i32)]>,
    version: i16,
) -> (i16, Results) {
    let topics = partitions.map(|list| {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, p) in list {
            by_topic.entry(topic).or_default().push(*p);
        }
        by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                TopicPartitions::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(partitions)
            })
            .collect()
    });
    let request = ElectLeadersRequest::default()
        .with_election_type(if version >= 1 { election_type } else { PREFERRED })
        .with_topic_partitions(topics)
        .with_timeout_ms(10_000);
    let response: ElectLeadersResponse = block_on(async {
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            let mut client = Client::connect(addr).await.expect("connecting");
            client.send(&request, version).await.expect("ElectLeaders")
        })
        .await
        .expect("ElectLeaders answered in time")
    });
    let results = response
        .replica_election_results
        .iter()
        .flat_map(|t| {
            t.partition_result
                .iter()
                .map(|p| ((t.topic.0.to_string(), p.partition_id), p.error_code))
        })
        .collect();
    (response.error_code, results)
}

/// Partitions whose leader is not their first (preferred) replica.
fn not_preferred(view: &ClusterView) -> Vec<i32> {
    view.partitions
        .iter()
        .filter(|(_, p)| p.replicas.first() != Some(&p.leader))
        .map(|(i, _)| *i)
        .collect()
}

fn create_topic(cluster: &mut TestCluster) {
    let admin: AdminClient<DefaultClientContext> = client_config(&cluster.bootstrap())
        .create()
        .expect("creating an admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let new_topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(3));
    for result in block_on(admin.create_topics([&new_topic], &options)).expect("CreateTopics") {
        result.unwrap_or_else(|(name, code)| panic!("creating {name}: {code}"));
    }
}

#[test]
fn preferred_election_moves_leaders_back_after_a_restart() {
    let mut cluster = TestCluster::start(3, &[]);
    create_topic(&mut cluster);
    let (view, _) = cluster
        .wait_topic_in_sync(TOPIC, PARTITIONS as usize, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    println!("created: [{}]", view.summary());
    assert!(
        not_preferred(&view).is_empty(),
        "a new topic is led by its preferred replicas"
    );

    let victim = cluster.active_controller().expect("an active controller");
    let preferred_by_victim: Vec<i32> = view
        .partitions
        .iter()
        .filter(|(_, p)| p.replicas.first() == Some(&victim))
        .map(|(i, _)| *i)
        .collect();
    assert!(
        !preferred_by_victim.is_empty(),
        "leaders are spread: {}",
        view.summary()
    );

    cluster.kill9(victim);
    let killed_at = Instant::now();
    let (view, took) = cluster
        .wait_for(
            "the killed node's partitions led elsewhere",
            FAILOVER_BOUND,
            Some(TOPIC),
            |v| {
                v.partitions.len() == PARTITIONS as usize
                    && v.led_by(victim).is_empty()
                    && v.partitions.values().all(|p| p.leader > 0)
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "node {victim} killed; failover in {took:.1?}: [{}]",
        view.summary()
    );

    cluster.restart(victim);
    let (view, took) = cluster
        .wait_topic_in_sync(TOPIC, PARTITIONS as usize, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "node {victim} back in every ISR after {took:.1?}: [{}]",
        view.summary()
    );
    let moved = not_preferred(&view);
    assert_eq!(
        moved,
        preferred_by_victim,
        "still led elsewhere: [{}]",
        view.summary()
    );
    assert!(
        killed_at.elapsed() < AUTO_REBALANCE,
        "the automatic rebalance may have raced the election"
    );

    // Ask a node that is not the active controller: it forwards.
    let controller = cluster.active_controller().expect("an active controller");
    let asked = *cluster.ids().iter().find(|id| **id != controller).unwrap();
    let addr = cluster.node(asked).client;

    // All partitions: the internal topics' partitions the killed node preferred move too.
    let (top, results) = elect(addr, PREFERRED, None, 2);
    assert_eq!(top, NONE);
    assert!(results.values().all(|c| *c == NONE), "{results:?}");
    let ours: Results = results
        .iter()
        .filter(|((t, _), _)| t == TOPIC)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let expected: Results = moved.iter().map(|p| ((TOPIC.to_string(), *p), NONE)).collect();
    assert_eq!(ours, expected, "preferred election over all partitions");
    println!(
        "ElectLeaders(preferred, all) via node {asked}: elected {} partitions, of {TOPIC}: {moved:?}",
        results.len()
    );

    let started = Instant::now();
    let (view, _) = cluster
        .wait_for(
            "every partition led by its preferred replica",
            FAILOVER_BOUND,
            Some(TOPIC),
            |v| not_preferred(v).is_empty() && v.partitions.values().all(|p| p.fully_in_sync()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "preferred leaders in Metadata {:.1?} after the answer: [{}]",
        started.elapsed(),
        view.summary()
    );

    let every: Vec<(&str, i32)> = (0..PARTITIONS).map(|p| (TOPIC, p)).collect();
    for version in 0..=2 {
        let (top, results) = elect(addr, PREFERRED, Some(&every), version);
        assert_eq!(top, NONE);
        assert_eq!(results.len(), PARTITIONS as usize, "v{version}: {results:?}");
        assert!(
            results.values().all(|c| *c == ELECTION_NOT_NEEDED),
            "v{version} second election: {results:?}"
        );
        let (_, all) = elect(addr, PREFERRED, None, version);
        assert!(
            all.keys().all(|(t, _)| t != TOPIC),
            "v{version}: partitions needing no election are not listed: {all:?}"
        );
    }
    println!("second ElectLeaders(preferred): ELECTION_NOT_NEEDED for all {PARTITIONS} partitions (v0-v2)");

    let (_, unclean) = elect(addr, UNCLEAN, Some(&[(TOPIC, 0)]), 1);
    assert_eq!(
        unclean.values().copied().collect::<Vec<_>>(),
        [ELECTION_NOT_NEEDED]
    );
    let (_, unknown) = elect(addr, PREFERRED, Some(&[("no-such-topic", 0), (TOPIC, 99)]), 2);
    assert_eq!(
        unknown,
        Results::from([
            (("no-such-topic".to_string(), 0), UNKNOWN_TOPIC_OR_PARTITION),
            ((TOPIC.to_string(), 99), UNKNOWN_TOPIC_OR_PARTITION),
        ])
    );
    cluster.assert_all_running();
}
