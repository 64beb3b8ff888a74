#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Voter changes of the metadata quorum (KIP-853 AddRaftVoter / RemoveRaftVoter, APIs 80/81)
//! against a 3-node cluster of `sapper broker` processes (both roles each) and a fourth node
//! started with `--roles controller` and its own `--controller-listen`, outside the voters.
//!
//! AddRaftVoter(4) sent to a broker makes node 4 a voter (DescribeQuorum lists 1-4; asking
//! again is DUPLICATE_VOTER, naming another cluster INCONSISTENT_CLUSTER_ID); RemoveRaftVoter(3)
//! leaves voters 1, 2, 4 (again: VOTER_NOT_FOUND).
//! Then `kill -9` of node 3 and of node 1: the quorum {1, 2, 4} still commits topic creations
//! with only nodes 2 and 4 up, which the original voters {1, 2, 3} could not have done. No
//! client outside this repository sends these APIs here (librdkafka has no such call and
//! Kafka's Java admin is not installable), so the requests go through `sapper_wire`'s Client.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sapper_wire::client::Client;
use sapper_wire::kafka_protocol::messages::add_raft_voter_request::Listener;
use sapper_wire::kafka_protocol::messages::create_topics_request::CreatableTopic;
use sapper_wire::kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use sapper_wire::kafka_protocol::messages::{
    AddRaftVoterRequest, AddRaftVoterResponse, CreateTopicsRequest, CreateTopicsResponse,
    DescribeQuorumRequest, DescribeQuorumResponse, RemoveRaftVoterRequest, RemoveRaftVoterResponse,
    TopicName,
};
use sapper_wire::kafka_protocol::protocol::{Request, StrBytes};

use common::block_on;
use common::cluster::{free_ports, ClusterNode, TestCluster};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
const QUORUM_BOUND: Duration = Duration::from_secs(20);
const INCONSISTENT_CLUSTER_ID: i16 = 104;
const DUPLICATE_VOTER: i16 = 126;
const VOTER_NOT_FOUND: i16 = 127;

fn send<R: Request>(addr: SocketAddr, request: &R, version: i16) -> R::Response {
    block_on(async {
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            let mut client = Client::connect(addr).await.expect("connecting");
            client.send(request, version).await.expect("request")
        })
        .await
        .expect("answered in time")
    })
}

fn add_voter(addr: SocketAddr, id: i32, controller: SocketAddr) -> AddRaftVoterResponse {
    let request = AddRaftVoterRequest::default()
        .with_cluster_id(None)
        .with_voter_id(id)
        .with_timeout_ms(10_000)
        .with_listeners(vec![Listener::default()
            .with_name(StrBytes::from_static_str("CONTROLLER"))
            .with_host(StrBytes::from_string(controller.ip().to_string()))
            .with_port(controller.port())]);
    send(addr, &request, 0)
}

fn remove_voter(addr: SocketAddr, id: i32) -> RemoveRaftVoterResponse {
    send(
        addr,
        &RemoveRaftVoterRequest::default()
            .with_cluster_id(None)
            .with_voter_id(id),
        0,
    )
}

/// The voters DescribeQuorum reports through `addr` (empty on an error).
fn voters(addr: SocketAddr) -> BTreeSet<i32> {
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let response: DescribeQuorumResponse = send(addr, &request, 0);
    response
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.error_code == 0)
        .flat_map(|p| p.current_voters.iter().map(|v| v.replica_id.0))
        .collect()
}

fn wait_voters(addr: SocketAddr, expected: &[i32]) -> Duration {
    let expected: BTreeSet<i32> = expected.iter().copied().collect();
    let started = Instant::now();
    loop {
        let got = voters(addr);
        if got == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < QUORUM_BOUND,
            "voters {got:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Creates `name` (1 partition, `rf` replicas) through `addr`; answers how long it took.
fn create_topic(addr: SocketAddr, name: &str, rf: i16) -> Duration {
    let request = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(1)
            .with_replication_factor(rf)])
        .with_timeout_ms(15_000);
    let started = Instant::now();
    loop {
        let response: CreateTopicsResponse = send(addr, &request, 5);
        let code = response.topics[0].error_code;
        if code == 0 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < QUORUM_BOUND,
            "creating {name}: error {code} {:?}",
            response.topics[0].error_message
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_controller_joins_the_voters_and_an_old_voter_leaves() {
    let mut cluster = TestCluster::start(3, &[]);
    let voters_flag = (1..=3)
        .map(|id| format!("{id}@{}", cluster.node(id).controller))
        .collect::<Vec<_>>()
        .join(",");
    let dir = tempfile::Builder::new()
        .prefix("sapper-voters")
        .tempdir()
        .unwrap();
    let controller4 = SocketAddr::from(([127, 0, 0, 1], free_ports(1)[0]));
    let mut node4 = ClusterNode::controller_only("node4", 4, controller4, &voters_flag, dir.path());
    node4.spawn();
    let (b1, b2) = (cluster.node(1).client, cluster.node(2).client);
    assert_eq!(voters(b1), BTreeSet::from([1, 2, 3]));

    let started = Instant::now();
    let added = add_voter(b2, 4, controller4);
    assert_eq!(added.error_code, 0, "AddRaftVoter: {:?}", added.error_message);
    println!("AddRaftVoter(4) answered in {:.1?}", started.elapsed());
    wait_voters(b1, &[1, 2, 3, 4]);
    let again = add_voter(b1, 4, controller4);
    assert_eq!(again.error_code, DUPLICATE_VOTER, "{:?}", again.error_message);
    let elsewhere: RemoveRaftVoterResponse = send(
        b1,
        &RemoveRaftVoterRequest::default()
            .with_cluster_id(Some(StrBytes::from_static_str("another-cluster")))
            .with_voter_id(3),
        0,
    );
    assert_eq!(
        elsewhere.error_code, INCONSISTENT_CLUSTER_ID,
        "{:?}",
        elsewhere.error_message
    );

    let started = Instant::now();
    let removed = remove_voter(b1, 3);
    assert_eq!(
        removed.error_code, 0,
        "RemoveRaftVoter: {:?}",
        removed.error_message
    );
    println!("RemoveRaftVoter(3) answered in {:.1?}", started.elapsed());
    wait_voters(b2, &[1, 2, 4]);
    let again = remove_voter(b2, 3);
    assert_eq!(again.error_code, VOTER_NOT_FOUND, "{:?}", again.error_message);

    cluster.kill9(3);
    let took = create_topic(b1, "after-removing-3", 2);
    println!("node 3 killed: a topic created in {took:.1?} (voters 1, 2, 4)");
    cluster.kill9(1);
    let took = create_topic(b2, "with-voters-2-and-4", 1);
    println!("node 1 killed too: a topic created in {took:.1?} with only voters 2 and 4 up");
    assert_eq!(voters(b2), BTreeSet::from([1, 2, 4]));
}
