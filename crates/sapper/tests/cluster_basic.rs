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
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sapper_wire::client::Client;
use sapper_wire::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use sapper_wire::kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use sapper_wire::kafka_protocol::protocol::StrBytes;

use common::{block_on, client_config, consume_all};

const NODES: i32 = 3;
const PARTITIONS: i32 = 6;
const START_TIMEOUT: Duration = Duration::from_secs(20);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Failover: the controller's session timeout is 1.5 s, a closed heartbeat connection fences
/// within 0.2 s; "about 2 s" with room for a loaded test machine.
const FAILOVER_BOUND: Duration = Duration::from_secs(4);

/// One `sapper broker` node of the test cluster, restartable on its ports and data.
struct Node {
    id: i32,
    client: SocketAddr,
    voters: String,
    data_dir: PathBuf,
    logs: PathBuf,
    starts: u32,
    child: Option<Child>,
}

impl Node {
    fn spawn(&mut self) {
        assert!(self.child.is_none());
        self.starts += 1;
        let stderr = File::create(self.stderr_path()).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sapper"));
        cmd.arg("broker")
            .args(["--node-id", &self.id.to_string()])
            .args(["--listen", &self.client.to_string()])
            .args(["--voters", &self.voters])
            .args(["--rack", &format!("rack-{}", self.id)])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .env("NO_COLOR", "1")
            .env("SAPPER_LOG", "info,openraft=warn");
        for (key, _) in std::env::vars_os() {
            if key
                .to_str()
                .is_some_and(|k| k.starts_with("SAPPER_") && k != "SAPPER_LOG")
            {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("sapper: listening on ") {
                    let _ = tx.send(());
                }
            }
        });
        self.child = Some(child);
        if rx.recv_timeout(START_TIMEOUT).is_err() {
            panic!("node {} did not start listening\n{}", self.id, self.stderr_tail());
        }
    }

    fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn stderr_path(&self) -> PathBuf {
        self.logs
            .join(format!("node{}-start{}.stderr", self.id, self.starts))
    }

    fn stderr_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(self.stderr_path()) {
            let _ = f.read_to_string(&mut text);
        }
        let start = text.len().saturating_sub(6_000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        format!("--- node {} stderr ---\n{}", self.id, &text[start..])
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.stderr_tail());
        }
    }
}

/// `n` distinct ports that were free a moment ago (held together, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// One partition as a broker's Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionInfo {
    error: i16,
    leader: i32,
    leader_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    offline: Vec<i32>,
}

/// What one broker says: live brokers and the topic's partitions by index.
#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    brokers: BTreeSet<i32>,
    racks: BTreeMap<i32, Option<String>>,
    controller: i32,
    partitions: BTreeMap<i32, PartitionInfo>,
}

fn metadata(rt: &tokio::runtime::Runtime, addr: SocketAddr, topic: &str) -> Option<View> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))]))
        .with_allow_auto_topic_creation(false);
    let response: MetadataResponse = rt.block_on(async {
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            let mut client = Client::connect(addr).await.ok()?;
            client.send(&request, 9).await.ok()
        })
        .await
        .ok()
        .flatten()
    })?;
    let partitions = response
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            let ids = |v: &[sapper_wire::kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect();
            (
                p.partition_index,
                PartitionInfo {
                    error: p.error_code,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: ids(&p.replica_nodes),
                    isr: ids(&p.isr_nodes),
                    offline: ids(&p.offline_replicas),
                },
            )
        })
        .collect();
    Some(View {
        brokers: response.brokers.iter().map(|b| b.node_id.0).collect(),
        racks: response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, b.rack.as_ref().map(ToString::to_string)))
            .collect(),
        controller: response.controller_id.0,
        partitions,
    })
}

/// Polls `check` against the given nodes' Metadata until it holds for all of them (and they
/// agree on the partitions), or panics after `bound` with the last views.
fn wait_for_views(
    rt: &tokio::runtime::Runtime,
    nodes: &[&Node],
    topic: &str,
    bound: Duration,
    what: &str,
    check: impl Fn(&View) -> bool,
) -> View {
    let deadline = Instant::now() + bound;
    loop {
        let views: Vec<Option<View>> = nodes.iter().map(|n| metadata(rt, n.client, topic)).collect();
        let all_ok = views.iter().all(|v| v.as_ref().is_some_and(&check));
        let agree = views
            .windows(2)
            .all(|w| w[0].as_ref().map(|v| &v.partitions) == w[1].as_ref().map(|v| &v.partitions));
        if all_ok && agree {
            return views.into_iter().next().flatten().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {bound:?}; last views: {views:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

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
    let ports = free_ports(2 * NODES as usize);
    let voters = (0..NODES)
        .map(|i| format!("{}@127.0.0.1:{}", i + 1, ports[(NODES + i) as usize]))
        .collect::<Vec<_>>()
        .join(",");
    let dir = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Node> = (0..NODES)
        .map(|i| Node {
            id: i + 1,
            client: SocketAddr::from(([127, 0, 0, 1], ports[i as usize])),
            voters: voters.clone(),
            data_dir: dir.path().join(format!("node-{}", i + 1)),
            logs: dir.path().to_path_buf(),
            starts: 0,
            child: None,
        })
        .collect();
    for node in &mut nodes {
        node.spawn();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let all: BTreeSet<i32> = (1..=NODES).collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let view = wait_for_views(
        &rt,
        &refs,
        "none",
        Duration::from_secs(30),
        "3 brokers registered",
        |v| v.brokers == all,
    );
    assert_eq!(view.racks.get(&2), Some(&Some("rack-2".to_string())));
    println!("cluster of {NODES} up in {:?}", started.elapsed());

    // Create the topic through one broker with rdkafka's admin client.
    let topic = "cluster-basic";
    let bootstrap = nodes
        .iter()
        .map(|n| n.client.to_string())
        .collect::<Vec<_>>()
        .join(",");
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
    let created = wait_for_views(
        &rt,
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
    let survivors: Vec<&Node> = nodes.iter().filter(|n| n.id != victim).collect();
    let after = wait_for_views(
        &rt,
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
    assert!(
        !after.brokers.contains(&victim),
        "a fenced broker is not listed: {:?}",
        after.brokers
    );
    println!("broker {victim} killed; partitions {led:?} have new leaders after {failover:?}");

    let survivors_bootstrap = survivors
        .iter()
        .map(|n| n.client.to_string())
        .collect::<Vec<_>>()
        .join(",");
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
    let refs: Vec<&Node> = nodes.iter().collect();
    let rejoined = wait_for_views(
        &rt,
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
