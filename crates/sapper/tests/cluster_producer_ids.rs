#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Producer ids in a cluster come in blocks from the controller (KIP-730), so no two brokers
//! and no two starts of a broker hand out the same id. Three `sapper broker` processes with
//! `--voters`: InitProducerId (raw protocol, `sapper_wire` client) against each broker gives
//! disjoint ids; 1200 ids from one broker cross into a second block without a
//! COORDINATOR_LOAD_IN_PROGRESS answer (the next block was fetched ahead); the ids stay unique
//! after a kill -9 and restart of one broker and after a restart of the whole cluster (the
//! quorum's allocations are durable); an idempotent rdkafka producer (enable.idempotence=true)
//! delivers every record exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sapper_wire::client::Client;
use sapper_wire::kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use common::cluster::{local_nodes, spawn_all, ClusterNode, MetadataReader};
use common::{block_on, client_config, consume_all};

const NODES: i32 = 3;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const INIT_PRODUCER_ID_VERSION: i16 = 4;
/// COORDINATOR_LOAD_IN_PROGRESS: no producer id block yet, retry.
const LOAD_IN_PROGRESS: i16 = 14;
/// The controller's block size (`sapper_meta::controller::PRODUCER_ID_BLOCK`).
const BLOCK: i64 = 1000;

/// What `count` InitProducerId requests against one broker answered.
#[derive(Debug)]
struct IdRun {
    ids: Vec<i64>,
    /// From the first request to the first id (a fresh broker fetches its first block).
    first_wait: Duration,
    /// COORDINATOR_LOAD_IN_PROGRESS answers before the first id / after it.
    not_ready_before_first: u32,
    not_ready_after_first: u32,
    /// The slowest InitProducerId after the first id.
    slowest_after_first: Duration,
}

/// `count` InitProducerId requests (null transactional id: idempotent producers) on one
/// connection to `addr`, retrying COORDINATOR_LOAD_IN_PROGRESS and reconnecting as needed;
/// bounded by 30 s.
fn init_producer_ids(rt: &tokio::runtime::Runtime, addr: SocketAddr, count: usize) -> IdRun {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    rt.block_on(async {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(30);
        let mut run = IdRun {
            ids: Vec::with_capacity(count),
            first_wait: Duration::ZERO,
            not_ready_before_first: 0,
            not_ready_after_first: 0,
            slowest_after_first: Duration::ZERO,
        };
        let mut client: Option<Client> = None;
        while run.ids.len() < count {
            assert!(
                Instant::now() < deadline,
                "InitProducerId at {addr}: {} of {count} ids in 30 s ({run:?})",
                run.ids.len()
            );
            let connection = match client.as_mut() {
                Some(c) => c,
                None => match Client::connect(addr).await {
                    Ok(c) => client.insert(c),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let sent = Instant::now();
            let answer = tokio::time::timeout(
                REQUEST_TIMEOUT,
                connection.send(&request, INIT_PRODUCER_ID_VERSION),
            )
            .await;
            let response: InitProducerIdResponse = match answer {
                Ok(Ok(r)) => r,
                _ => {
                    client = None;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let took = sent.elapsed();
            match response.error_code {
                0 => {
                    assert!(response.producer_id.0 >= 0, "{response:?}");
                    assert_eq!(response.producer_epoch, 0, "{response:?}");
                    if run.ids.is_empty() {
                        run.first_wait = started.elapsed();
                    } else {
                        run.slowest_after_first = run.slowest_after_first.max(took);
                    }
                    run.ids.push(response.producer_id.0);
                }
                LOAD_IN_PROGRESS => {
                    if run.ids.is_empty() {
                        run.not_ready_before_first += 1;
                    } else {
                        run.not_ready_after_first += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                code => panic!("InitProducerId at {addr}: error {code}"),
            }
        }
        run
    })
}

/// Every id handed out so far, with who handed it out.
#[derive(Default)]
struct Ledger {
    owner: BTreeMap<i64, String>,
}

impl Ledger {
    /// Records `ids` from `who`; panics on an id handed out before.
    fn record(&mut self, who: &str, ids: &[i64]) {
        for &id in ids {
            if let Some(earlier) = self.owner.insert(id, who.to_string()) {
                panic!("producer id {id} handed out twice: by {earlier} and by {who}");
            }
        }
    }
}

/// The blocks (id / BLOCK) `ids` fall into.
fn blocks(ids: &[i64]) -> BTreeSet<i64> {
    ids.iter().map(|id| id / BLOCK).collect()
}

/// Creates `topic` with replication factor 3, retrying INVALID_REPLICATION_FACTOR (bounded by
/// 30 s): right after a whole-cluster restart the brokers of the old image are still listed
/// until the controller has seen all of them again.
fn create_rf3_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let results = block_on(admin.create_topics(
            [&NewTopic::new(topic, partitions, TopicReplication::Fixed(3))],
            &options,
        ))
        .expect("CreateTopics failed");
        match results.into_iter().next().expect("one topic result") {
            Ok(_) => return,
            Err((_, RDKafkaErrorCode::InvalidReplicationFactor)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err((name, code)) => panic!("creating {name}: {code}"),
        }
    }
}

#[test]
fn brokers_hand_out_disjoint_producer_ids_across_restarts() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // Each node takes its controller listener from its `--voters` entry.
    let mut nodes: Vec<ClusterNode> = local_nodes("node", NODES, dir.path())
        .into_iter()
        .map(ClusterNode::without_controller_listen)
        .collect();
    spawn_all(&mut nodes);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let views = MetadataReader::new(REQUEST_TIMEOUT);
    views.wait_registered(&nodes);
    println!("cluster of {NODES} up in {:?}", started.elapsed());
    let mut ledger = Ledger::default();

    // Every broker hands out ids from its own block.
    let mut first_blocks = BTreeMap::new();
    for node in &nodes {
        let run = init_producer_ids(&rt, node.client, 50);
        ledger.record(&format!("broker {} (start 1)", node.id), &run.ids);
        let own = blocks(&run.ids);
        assert_eq!(own.len(), 1, "broker {}: one block for 50 ids: {own:?}", node.id);
        println!(
            "broker {}: ids {}..={} (first after {:?}, {} not-ready answers first), slowest later {:?}",
            node.id,
            run.ids[0],
            run.ids[run.ids.len() - 1],
            run.first_wait,
            run.not_ready_before_first,
            run.slowest_after_first
        );
        first_blocks.insert(node.id, own);
    }
    let distinct: BTreeSet<i64> = first_blocks.values().flatten().copied().collect();
    assert_eq!(
        distinct.len(),
        NODES as usize,
        "a block per broker: {first_blocks:?}"
    );

    // One broker runs past 90% of its block and on into the next: the next block was fetched
    // ahead, so nobody waits or is told to retry.
    let run = init_producer_ids(&rt, nodes[0].client, 1200);
    ledger.record("broker 1 (start 1, long run)", &run.ids);
    assert!(
        blocks(&run.ids).len() >= 2,
        "1200 ids span two blocks: {:?}",
        blocks(&run.ids)
    );
    assert_eq!(
        run.not_ready_after_first, 0,
        "the block change made a caller wait: {run:?}"
    );
    println!(
        "broker 1: 1200 more ids over blocks {:?}, no not-ready answer, slowest InitProducerId {:?}",
        blocks(&run.ids),
        run.slowest_after_first
    );

    // kill -9 and restart one broker: it gets a new block, never its old one again.
    nodes[1].kill9();
    nodes[1].spawn();
    views.wait_registered(&nodes);
    let run = init_producer_ids(&rt, nodes[1].client, 50);
    ledger.record("broker 2 (start 2)", &run.ids);
    assert!(blocks(&run.ids).is_disjoint(&first_blocks[&2]));
    println!(
        "broker 2 after kill -9 and restart: ids {}..={} (first after {:?})",
        run.ids[0],
        run.ids[run.ids.len() - 1],
        run.first_wait
    );

    // Restart the whole cluster: the quorum remembers what it allocated.
    for node in &mut nodes {
        node.kill9();
    }
    spawn_all(&mut nodes);
    views.wait_registered(&nodes);
    for node in &nodes {
        let run = init_producer_ids(&rt, node.client, 50);
        ledger.record(&format!("broker {} (after cluster restart)", node.id), &run.ids);
        println!(
            "broker {} after the cluster restart: ids {}..={} (first after {:?})",
            node.id,
            run.ids[0],
            run.ids[run.ids.len() - 1],
            run.first_wait
        );
    }
    println!("{} producer ids handed out, none twice", ledger.owner.len());

    // An idempotent librdkafka producer gets its id from the cluster and delivers.
    let topic = "cluster-producer-ids";
    let partitions = 3;
    let bootstrap = common::cluster::bootstrap(&nodes.iter().collect::<Vec<_>>());
    create_rf3_topic(&bootstrap, topic, partitions);
    let producer: FutureProducer = client_config(&bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set("request.timeout.ms", "5000")
        .create()
        .unwrap();
    let per_partition = 100;
    let produce_started = Instant::now();
    block_on(async {
        let mut pending = Vec::new();
        for p in 0..partitions {
            for i in 0..per_partition {
                let payload = format!("p{p}-{i}");
                let record = FutureRecord::<(), _>::to(topic).partition(p).payload(&payload);
                pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
            }
        }
        for delivery in pending {
            match delivery.await.expect("the producer dropped a delivery") {
                Ok(_) => {}
                Err((e, _)) => panic!("idempotent produce failed: {e}"),
            }
        }
    });
    println!(
        "idempotent producer: {} records delivered in {:?}",
        partitions * per_partition,
        produce_started.elapsed()
    );
    let read = consume_all(&bootstrap, topic, partitions);
    for (p, records) in read.iter().enumerate() {
        let payloads: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
            .collect();
        let expected: Vec<String> = (0..per_partition).map(|i| format!("p{p}-{i}")).collect();
        assert_eq!(payloads, expected, "partition {p}: each record once, in order");
    }
    println!("whole test {:?}", started.elapsed());
}
