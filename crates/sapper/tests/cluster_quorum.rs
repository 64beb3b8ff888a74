#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! DescribeQuorum and DescribeCluster v2 against a 3-node cluster of `sapper broker`
//! processes (both roles each). No client outside this repository sends DescribeQuorum here
//! (librdkafka, hence rdkafka and confluent-kafka, has no such call; Kafka's Java admin is not
//! installable on this machine), so the requests go through `sapper_wire`'s Client and
//! `sapper cluster describe`.
//!
//! Every node answers every version (0 to 2) with the same Raft leader and term, the three
//! voters and their controller listeners (v2). After a `kill -9` of the Raft leader the
//! survivors report a new leader in a higher epoch, the dead node falls behind (no longer
//! caught up), and DescribeCluster v2 lists it as fenced when asked to.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sapper_wire::client::Client;
use sapper_wire::kafka_protocol::messages::describe_quorum_request::{
    PartitionData as AskedPartition, TopicData as AskedTopic,
};
use sapper_wire::kafka_protocol::messages::describe_quorum_response::PartitionData;
use sapper_wire::kafka_protocol::messages::{
    DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use sapper_wire::kafka_protocol::protocol::StrBytes;

use common::block_on;
use common::cluster::TestCluster;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A new Raft leader (election timeout 200-400 ms after a 400 ms lease) and the controller's
/// fencing of the dead broker (1.5 s session), with room for a loaded machine.
const FAILOVER_BOUND: Duration = Duration::from_secs(15);

fn describe_quorum(addr: SocketAddr, version: i16) -> Option<DescribeQuorumResponse> {
    let request = DescribeQuorumRequest::default().with_topics(vec![AskedTopic::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![AskedPartition::default().with_partition_index(0)])]);
    block_on(async {
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            let mut client = Client::connect(addr).await.ok()?;
            client.send(&request, version).await.ok()
        })
        .await
        .ok()
        .flatten()
    })
}

fn describe_cluster(addr: SocketAddr, version: i16, include_fenced: bool) -> DescribeClusterResponse {
    let request = DescribeClusterRequest::default().with_include_fenced_brokers(include_fenced);
    block_on(async {
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            let mut client = Client::connect(addr).await.unwrap();
            client.send(&request, version).await.unwrap()
        })
        .await
        .unwrap()
    })
}

/// The one partition of a successful answer.
fn quorum_partition(response: &DescribeQuorumResponse) -> Option<&PartitionData> {
    let p = response.topics.first()?.partitions.first()?;
    (response.error_code == 0 && p.error_code == 0).then_some(p)
}

/// Asks `addr` until `check` holds on its answer (or panics after `bound`).
fn wait_quorum(
    addr: SocketAddr,
    version: i16,
    what: &str,
    bound: Duration,
    check: impl Fn(&PartitionData) -> bool,
) -> DescribeQuorumResponse {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < bound {
        if let Some(response) = describe_quorum(addr, version) {
            if quorum_partition(&response).is_some_and(&check) {
                return response;
            }
            last = Some(response);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {bound:?}; last answer from {addr}: {last:#?}");
}

fn voter_ids(p: &PartitionData) -> BTreeSet<i32> {
    p.current_voters.iter().map(|v| v.replica_id.0).collect()
}

#[test]
fn every_broker_describes_the_metadata_quorum_and_its_failover() {
    let mut cluster = TestCluster::start(3, &[]);
    let ids: BTreeSet<i32> = cluster.ids();

    // Every node, every version: the same leader and term, the three voters.
    let mut seen = BTreeSet::new();
    for id in ids.clone() {
        let node = cluster.node(id);
        for version in 0..=2 {
            let response = wait_quorum(node.client, version, "a quorum answer", REQUEST_TIMEOUT, |p| {
                p.leader_id.0 > 0 && p.high_watermark > 0
            });
            let p = quorum_partition(&response).unwrap();
            assert_eq!(response.topics[0].topic_name.0.as_str(), "__cluster_metadata");
            assert_eq!(voter_ids(p), ids, "{response:#?}");
            assert!(p.leader_epoch >= 1, "{response:#?}");
            let leader = p
                .current_voters
                .iter()
                .find(|v| v.replica_id == p.leader_id)
                .expect("the leader is a voter");
            assert!(leader.log_end_offset >= p.high_watermark, "{response:#?}");
            assert!(
                p.current_voters.iter().all(|v| v.log_end_offset > 0),
                "{response:#?}"
            );
            if version >= 1 {
                assert_eq!(leader.last_fetch_timestamp, -1, "as Kafka reports the leader");
                assert!(leader.last_caught_up_timestamp > 0, "{response:#?}");
            }
            if version >= 2 {
                let endpoints: BTreeSet<(i32, u16)> = response
                    .nodes
                    .iter()
                    .map(|n| (n.node_id.0, n.listeners[0].port))
                    .collect();
                let expected: BTreeSet<(i32, u16)> = ids
                    .iter()
                    .map(|&i| (i, cluster.node(i).controller.port()))
                    .collect();
                assert_eq!(endpoints, expected, "{response:#?}");
            } else {
                assert!(response.nodes.is_empty());
            }
            seen.insert((p.leader_id.0, p.leader_epoch));
        }
    }
    assert_eq!(
        seen.len(),
        1,
        "every node reports the same leader and epoch: {seen:?}"
    );
    let (leader, epoch) = seen.into_iter().next().unwrap();
    eprintln!("quorum leader {leader} in epoch {epoch}");

    // Asking for another partition: UNKNOWN_TOPIC_OR_PARTITION, as Kafka answers.
    let other = DescribeQuorumRequest::default().with_topics(vec![AskedTopic::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![AskedPartition::default().with_partition_index(1)])]);
    let addr = cluster.node(leader).client;
    let refused: DescribeQuorumResponse = block_on(async {
        let mut client = Client::connect(addr).await.unwrap();
        client.send(&other, 1).await.unwrap()
    });
    assert_eq!(refused.topics[0].partitions[0].error_code, 3);

    // `sapper cluster describe` shows the same quorum.
    let bootstrap = cluster.node(*ids.iter().find(|&&i| i != leader).unwrap()).client;
    let d = common::run_cli(
        &[
            "cluster",
            "describe",
            "--bootstrap",
            &bootstrap.to_string(),
            "--output",
            "json",
        ],
        REQUEST_TIMEOUT * 3,
    )
    .json();
    assert_eq!(d["quorum"]["leader_id"], leader, "{d}");
    assert_eq!(d["quorum"]["leader_epoch"], epoch, "{d}");
    assert_eq!(d["quorum"]["voters"].as_array().map(Vec::len), Some(3), "{d}");
    let text = common::run_cli(
        &["cluster", "describe", "--bootstrap", &bootstrap.to_string()],
        REQUEST_TIMEOUT * 3,
    );
    assert_eq!(text.code, 0, "{}", text.stderr);
    eprintln!("sapper cluster describe:\n{}", text.stdout);

    // DescribeCluster v2: nobody fenced yet; a v2 request for the controller endpoint is refused.
    let all = describe_cluster(bootstrap, 2, true);
    assert_eq!(all.error_code, 0);
    assert_eq!(all.brokers.len(), 3);
    assert!(all.brokers.iter().all(|b| !b.is_fenced));
    let controllers = block_on(async {
        let mut client = Client::connect(bootstrap).await.unwrap();
        client
            .send(&DescribeClusterRequest::default().with_endpoint_type(2), 1)
            .await
            .unwrap()
    });
    assert_eq!(controllers.error_code, 114, "MISMATCHED_ENDPOINT_TYPE");

    // The Raft leader dies: a survivor reports a new leader in a higher epoch, with the dead
    // node behind it.
    let killed_at = Instant::now();
    cluster.kill9(leader);
    let survivor = cluster.node(*ids.iter().find(|&&i| i != leader).unwrap()).client;
    let response = wait_quorum(survivor, 1, "a new quorum leader", FAILOVER_BOUND, |p| {
        p.leader_id.0 != leader && p.leader_id.0 > 0 && p.leader_epoch > epoch
    });
    let p = quorum_partition(&response).unwrap();
    eprintln!(
        "new quorum leader {} in epoch {} reported {:?} after the kill",
        p.leader_id.0,
        p.leader_epoch,
        killed_at.elapsed()
    );
    assert_eq!(voter_ids(p), ids, "a dead voter is still a voter");

    // The controller fences the dead broker (a metadata record the dead voter never gets).
    let started = Instant::now();
    let fenced = loop {
        let described = describe_cluster(survivor, 2, true);
        if described
            .brokers
            .iter()
            .any(|b| b.broker_id.0 == leader && b.is_fenced)
        {
            break described;
        }
        assert!(
            started.elapsed() < FAILOVER_BOUND,
            "broker {leader} not listed as fenced: {described:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(fenced.brokers.len(), 3, "{fenced:#?}");
    let unfenced_only = describe_cluster(survivor, 2, false);
    assert_eq!(unfenced_only.brokers.len(), 2, "{unfenced_only:#?}");
    let v1 = describe_cluster(survivor, 1, false);
    assert_eq!(v1.brokers.len(), 2, "{v1:#?}");
    let response = wait_quorum(survivor, 1, "the dead voter falls behind", FAILOVER_BOUND, |p| {
        let leader_end = p
            .current_voters
            .iter()
            .find(|v| v.replica_id == p.leader_id)
            .map(|v| v.log_end_offset);
        p.current_voters.iter().any(|v| {
            v.replica_id.0 == leader
                && v.last_caught_up_timestamp == -1
                && Some(v.log_end_offset) < leader_end
        })
    });
    eprintln!("after the fencing: {:?}", quorum_partition(&response).unwrap());
}
