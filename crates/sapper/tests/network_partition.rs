#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! A network partition isolates a partition leader (issue 5), once a broker that is not the
//! active controller and once the one that is. Each test builds its own network: three
//! namespaces `sapper-np-<pid><b|c>-{1,2,3}`, each joined by a veth pair to a bridge
//! `snp<pid><b|c>br` in the root namespace, on a private /24 of 10.213.0.0/16 picked from the
//! pid (the bridge is `.1`, node N is `.1N`); each broker runs inside its namespace
//! (`ip netns exec NS sapper broker ...`) and the test's clients reach all of them through the
//! bridge. The cut is a pair of blackhole routes per broker pair (inside the namespaces only),
//! so the isolated broker still answers the test's clients but not its peers.
//!
//! Asserted: the cut-off leader acknowledges no acks=all write (a raw Produce to it times out
//! or fails); the majority elects new leaders from the ISR, which acknowledge acks=all writes
//! from an rdkafka producer; after healing, the old leader rejoins every ISR, its log holds no
//! divergent (unacknowledged) record and is batch-for-batch the same as the other replicas',
//! every acknowledged record is read back (checker), and the partitions the majority's brokers
//! led keep their leaders throughout (no live broker is fenced).
//!
//! Needs root (`ip netns add`); without it the test prints why and passes as skipped. The
//! namespaces, links and routes are removed by a guard on drop (also on panic), and stale ones
//! of dead runs (same prefix, pid no longer alive) are removed at start.

mod common;
mod fault_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fault_support::{
    acks_all_producer_config, bootstrap, check_no_acked_loss, consume_all, create_topic, spawn_all,
    try_wait_for_views, wait_registered, Acked, Node, PacedProducer,
};
use sapper_log::batch::testing::simple_batch;
use sapper_log::batch::BatchIter;
use sapper_wire::client::Client;
use sapper_wire::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sapper_wire::kafka_protocol::messages::{ProduceRequest, TopicName};
use sapper_wire::kafka_protocol::protocol::StrBytes;

const NS_PREFIX: &str = "sapper-np-";
const LINK_PREFIX: &str = "snp";
const PARTITIONS: i32 = 6;
const CLIENT_PORT: u16 = 9092;
const CONTROLLER_PORT: u16 = 9093;
const PRODUCE_VERSION: i16 = 9;
/// Payload prefix of the records sent to the cut-off leader (never acknowledged).
const DIVERGENT: &str = "divergent-";

/// Runs `cmd args`, answering stderr on failure.
fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn run_ok(cmd: &str, args: &[&str]) {
    run(cmd, args).unwrap_or_else(|e| panic!("{e}"));
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes namespaces and links of earlier runs whose process is gone.
fn remove_stale() {
    let me = std::process::id();
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            let Some(rest) = name.strip_prefix(NS_PREFIX) else {
                continue;
            };
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let pid = digits.parse::<u32>().ok();
            if pid.is_some_and(|p| p != me && !pid_alive(p)) {
                let _ = run("ip", &["netns", "del", name]);
                println!("removed stale namespace {name}");
            }
        }
    }
    if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "12: snp1234br: <...>" or "13: snp1234v1@if2: <...>"
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or_default();
            let Some(rest) = name.strip_prefix(LINK_PREFIX) else {
                continue;
            };
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let pid = digits.parse::<u32>().ok();
            if pid.is_some_and(|p| p != me && !pid_alive(p)) {
                let _ = run("ip", &["link", "del", name]);
                println!("removed stale link {name}");
            }
        }
    }
}

/// The test's network: namespaces, veths, bridge, and the blackhole routes of a cut.
struct TestNet {
    pid: u32,
    subnet: u8,
    namespaces: Vec<String>,
    bridge: String,
    veths: Vec<String>,
    /// (namespace, destination) of every blackhole route in place.
    cuts: Vec<(String, String)>,
}

impl TestNet {
    /// Builds the network for `nodes` namespaces, or answers why it cannot.
    fn create(nodes: usize, tag: char) -> Result<TestNet, String> {
        let pid = std::process::id();
        let run_id = format!("{pid}{tag}");
        let mut net = TestNet {
            pid,
            subnet: u8::try_from((pid * 2 + u32::from(tag == 'c')) % 250).unwrap() + 1,
            namespaces: Vec::new(),
            bridge: format!("{LINK_PREFIX}{run_id}br"),
            veths: Vec::new(),
            cuts: Vec::new(),
        };
        // Probe first: without the right to create namespaces, skip.
        let first = format!("{NS_PREFIX}{run_id}-1");
        run("ip", &["netns", "add", &first])?;
        net.namespaces.push(first);
        for i in 2..=nodes {
            let ns = format!("{NS_PREFIX}{run_id}-{i}");
            run("ip", &["netns", "add", &ns])?;
            net.namespaces.push(ns);
        }
        run("ip", &["link", "add", &net.bridge, "type", "bridge"])?;
        // Bridged traffic skips the host's iptables (br_netfilter may be loaded with a DROP
        // forward policy); best effort, older kernels lack the option.
        let _ = run(
            "ip",
            &[
                "link",
                "set",
                &net.bridge,
                "type",
                "bridge",
                "nf_call_iptables",
                "0",
            ],
        );
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("10.213.{}.1/24", net.subnet),
                "dev",
                &net.bridge,
            ],
        )?;
        run("ip", &["link", "set", &net.bridge, "up"])?;
        for i in 1..=nodes {
            let ns = net.namespaces[i - 1].clone();
            let outside = format!("{LINK_PREFIX}{run_id}v{i}");
            let inside = format!("{LINK_PREFIX}{run_id}n{i}");
            run(
                "ip",
                &["link", "add", &outside, "type", "veth", "peer", "name", &inside],
            )?;
            net.veths.push(outside.clone());
            run("ip", &["link", "set", &inside, "netns", &ns])?;
            run("ip", &["link", "set", &outside, "master", &net.bridge])?;
            run("ip", &["link", "set", &outside, "up"])?;
            let addr = format!("{}/24", net.node_ip(i));
            run(
                "ip",
                &["netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", &inside],
            )?;
            run("ip", &["netns", "exec", &ns, "ip", "link", "set", &inside, "up"])?;
            run("ip", &["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn node_ip(&self, node: usize) -> String {
        format!("10.213.{}.{}", self.subnet, 10 + node)
    }

    fn addr(&self, node: usize, port: u16) -> SocketAddr {
        format!("{}:{port}", self.node_ip(node)).parse().unwrap()
    }

    /// Blackholes traffic between `node` and every other node, both ways (the bridge, and so
    /// the test's clients, still reach it).
    fn isolate(&mut self, node: usize, nodes: usize) {
        for other in (1..=nodes).filter(|o| *o != node) {
            for (from, to) in [(node, other), (other, node)] {
                let ns = self.namespaces[from - 1].clone();
                let dest = format!("{}/32", self.node_ip(to));
                run_ok(
                    "ip",
                    &["netns", "exec", &ns, "ip", "route", "add", "blackhole", &dest],
                );
                self.cuts.push((ns, dest));
            }
        }
    }

    fn heal(&mut self) {
        for (ns, dest) in std::mem::take(&mut self.cuts) {
            run_ok(
                "ip",
                &["netns", "exec", &ns, "ip", "route", "del", "blackhole", &dest],
            );
        }
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for (ns, dest) in std::mem::take(&mut self.cuts) {
            let _ = run(
                "ip",
                &["netns", "exec", &ns, "ip", "route", "del", "blackhole", &dest],
            );
        }
        for veth in &self.veths {
            let _ = run("ip", &["link", "del", veth]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
        for ns in &self.namespaces {
            let _ = run("ip", &["netns", "del", ns]);
        }
        let _ = self.pid;
    }
}

/// One line per partition: leader, epoch, ISR.
fn summary(view: &fault_support::View) -> String {
    view.partitions
        .iter()
        .map(|(i, p)| {
            format!(
                "p{i}: leader {} epoch {} isr {:?}",
                p.leader, p.leader_epoch, p.isr
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Sends one acks=all Produce of one record to `addr` for `topic`/`partition`; answers the
/// partition's error code, or `None` if no answer came within `wait`.
fn raw_produce(
    addr: SocketAddr,
    topic: &str,
    partition: i32,
    value: &str,
    wait: Duration,
) -> Option<(i16, i64)> {
    let batch = simple_batch(1, 1_700_000_000_000, value.as_bytes());
    let request = ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(-1)
        .with_timeout_ms(2_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch.into()))])]);
    fault_support::block_on(async {
        tokio::time::timeout(wait, async {
            let mut client = Client::connect(addr).await.ok()?;
            let response = client.send(&request, PRODUCE_VERSION).await.ok()?;
            let p = response.responses.first()?.partition_responses.first()?;
            Some((p.error_code, p.base_offset))
        })
        .await
        .ok()
        .flatten()
    })
}

/// Produces about `count` records over all partitions with an idempotent acks=all producer
/// through `bootstrap`; answers the acknowledged ones and the failed deliveries.
fn produce_acks_all(
    bootstrap: &str,
    topic: &str,
    tag: &str,
    count: usize,
) -> (Vec<Acked>, Vec<(String, String, Duration)>) {
    let config = acks_all_producer_config(bootstrap, 1_0000);
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    let producer = PacedProducer::start(config, topic, &partitions, tag, 400);
    let deadline = Instant::now() + Duration::from_secs(15);
    while producer.acked_count() + producer.ledger.failed.lock().unwrap().len() < count
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ledger = std::sync::Arc::clone(&producer.ledger);
    let (_, send_errors) = producer.finish();
    assert!(send_errors.is_empty(), "{tag}: {send_errors:#?}");
    let acked = ledger.acked.lock().unwrap().clone();
    let failed = ledger.failed.lock().unwrap().clone();
    (acked, failed)
}

/// (base offset, last offset, crc) of every batch in the partition directory's `.log` files.
fn batches_on_disk(partition_dir: &Path) -> Vec<(i64, i64, u32)> {
    let mut logs: Vec<_> = std::fs::read_dir(partition_dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
    logs.sort();
    let mut out = Vec::new();
    for log in logs {
        let bytes = std::fs::read(&log).unwrap();
        for batch in BatchIter::new(&bytes) {
            let Ok(batch) = batch else { break };
            out.push((batch.base_offset(), batch.last_offset(), batch.crc()));
        }
    }
    out
}

/// Whether any `.log` file of the partition directory contains `needle`.
fn log_contains(partition_dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(partition_dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .any(|p| {
                    std::fs::read(&p)
                        .unwrap_or_default()
                        .windows(needle.len())
                        .any(|w| w == needle)
                })
        })
        .unwrap_or(false)
}

/// The tests of this file run one at a time (each runs three brokers and measures failover).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn an_isolated_leader_stops_acknowledging_and_truncates_after_the_partition_heals() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    isolate_a_leader(false);
}

/// The same with the isolated leader also the active controller: the majority elects a new
/// controller first.
#[test]
fn an_isolated_leader_and_active_controller_stops_acknowledging_and_truncates_after_healing() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    isolate_a_leader(true);
}

/// Cuts off a broker that leads partitions: the active controller if `controller`, else
/// another one.
fn isolate_a_leader(controller: bool) {
    let started = Instant::now();
    remove_stale();
    let mut net = match TestNet::create(3, if controller { 'c' } else { 'b' }) {
        Ok(net) => net,
        Err(why) => {
            println!("SKIPPED: cannot build the test network (needs root and iproute2): {why}");
            return;
        }
    };
    let dir = fault_support::test_dir();
    let voters = (1..=3)
        .map(|i| format!("{i}@{}", net.addr(i, CONTROLLER_PORT)))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| {
            Node::new(
                &format!("node{i}"),
                i32::try_from(i).unwrap(),
                net.addr(i, CLIENT_PORT),
                net.addr(i, CONTROLLER_PORT),
                &voters,
                dir.path(),
            )
            .wrapped_in(&["ip", "netns", "exec", &net.namespaces[i - 1]])
        })
        .collect();
    spawn_all(&mut nodes);
    wait_registered(&nodes);
    let refs: Vec<&Node> = nodes.iter().collect();
    let topic = format!("netsplit-{}", std::process::id());
    let created = create_topic(&refs, &topic, PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    let active = created.controller;
    let isolated: i32 = (1..=3)
        .find(|b| (*b == active) == controller && !created.led_by(*b).is_empty())
        .unwrap_or_else(|| panic!("no broker to isolate (controller={controller}): {created:?}"));
    let index = usize::try_from(isolated - 1).unwrap();
    let led = created.led_by(isolated);
    assert!(!led.is_empty(), "node {isolated} leads nothing: {created:?}");
    println!(
        "network 10.213.{}.0/24: cluster up, topic created in {:?}; isolating node {isolated} (active controller: {active}), which leads {led:?}",
        net.subnet,
        started.elapsed()
    );

    // Before the cut: acks=all records on every partition, replicated everywhere.
    let (acked_before, failed) = produce_acks_all(&bootstrap(&refs), &topic, "before", 600);
    assert!(failed.is_empty(), "before the cut: {failed:?}");
    std::thread::sleep(Duration::from_secs(1));
    println!("{} records acknowledged before the cut", acked_before.len());

    let controller_before = fault_support::metadata(&nodes[1], "none").map(|v| v.controller);
    // Cut the node off from its peers (not from the test's clients).
    net.isolate(index + 1, 3);
    let cut_at = Instant::now();

    // The cut-off leader acknowledges no acks=all write: its followers no longer fetch, so the
    // high watermark cannot pass the new records, and the ISR cannot shrink without the quorum.
    // Produced from a thread while the main thread watches the majority's failover.
    let leader_addr = nodes[index].client;
    let (divergent_topic, divergent_led) = (topic.clone(), led.clone());
    let divergent = std::thread::spawn(move || {
        let mut answers = Vec::new();
        for round in 0..3 {
            for p in &divergent_led {
                let value = format!("{DIVERGENT}{round}-p{p}");
                let sent = Instant::now();
                let answer = raw_produce(leader_addr, &divergent_topic, *p, &value, Duration::from_secs(4));
                answers.push((round, *p, answer, sent.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        answers
    });

    // The majority elects new leaders from the ISR for the isolated node's partitions.
    let majority: Vec<&Node> = nodes.iter().filter(|n| n.id != isolated).collect();
    let after = try_wait_for_views(&majority, &topic, Duration::from_secs(15), &|v| {
        v.partitions
            .values()
            .all(|p| p.leader > 0 && p.leader != isolated)
    });
    let failover = cut_at.elapsed();
    let after = after.unwrap_or_else(|views| {
        panic!("no new leaders on the majority side within 15 s of the cut: {views:#?}")
    });
    println!(
        "majority side (active controller before the cut: {controller_before:?}, after: {}): new leaders {failover:?} after the cut: {}",
        after.controller,
        summary(&after)
    );
    // Bystanders: partitions the isolated node did not lead keep their leader (the majority's
    // brokers stay live).
    let moved_bystanders: Vec<String> = after
        .partitions
        .iter()
        .filter(|(i, p)| {
            created.partitions[*i].leader != isolated && p.leader != created.partitions[*i].leader
        })
        .map(|(i, p)| format!("p{i}: leader {} -> {}", created.partitions[i].leader, p.leader))
        .collect();
    let divergent_answers = divergent.join().unwrap();
    println!(
        "acks=all produce to the cut-off leader (round, partition, (error, offset) or None = no answer in 4 s, time): {divergent_answers:?}"
    );
    for p in &led {
        let (before, now) = (&created.partitions[p], &after.partitions[p]);
        assert!(
            before.isr.contains(&now.leader),
            "new leader from the ISR: {now:?}"
        );
        assert!(now.leader_epoch > before.leader_epoch, "{before:?} -> {now:?}");
        assert!(
            !now.isr.contains(&isolated),
            "node {isolated} out of the ISR: {now:?}"
        );
    }

    // The new leaders acknowledge acks=all writes (rdkafka through the majority only).
    let (acked_during, failed_during) = produce_acks_all(&bootstrap(&majority), &topic, "during", 600);
    let mut failed_by_partition: BTreeMap<i32, usize> = BTreeMap::new();
    for (payload, _, _) in &failed_during {
        let seq: i32 = payload.trim_start_matches("during-").parse().unwrap_or(-1);
        *failed_by_partition.entry(seq.rem_euclid(PARTITIONS)).or_default() += 1;
    }
    println!(
        "majority side: {} acks=all records acknowledged, {} failed (by partition {failed_by_partition:?}); now {}",
        acked_during.len(),
        failed_during.len(),
        fault_support::metadata(majority[0], &topic).map_or("no answer".into(), |v| summary(&v))
    );

    // Heal: the isolated node learns the new epochs, truncates its divergent records, catches up and
    // rejoins every ISR.
    net.heal();
    let healed_at = Instant::now();
    let refs: Vec<&Node> = nodes.iter().collect();
    let rejoined = try_wait_for_views(&refs, &topic, Duration::from_secs(20), &|v| {
        v.brokers.iter().copied().eq(1..=3) && v.partitions.values().all(|p| p.isr.len() == 3)
    });
    println!(
        "after healing: {} ({:?})",
        match &rejoined {
            Ok(v) => format!("node {isolated} back in every ISR: {}", summary(v)),
            Err(views) => format!(
                "node {isolated} NOT back in every ISR; views from nodes 1, 2, 3: {:?}",
                views.iter().map(|v| v.as_ref().map(summary)).collect::<Vec<_>>()
            ),
        },
        healed_at.elapsed()
    );

    let acked: Vec<Acked> = acked_before.iter().chain(&acked_during).cloned().collect();
    let read = consume_all(&bootstrap(&refs), &topic, PARTITIONS);
    let divergent_read: Vec<(i32, i64, String)> = read
        .iter()
        .flat_map(|(p, rs)| rs.iter().map(move |r| (*p, r.offset, r.payload.clone())))
        .filter(|(_, _, payload)| payload.starts_with(DIVERGENT))
        .collect();
    let check = std::panic::catch_unwind(|| check_no_acked_loss(&acked, &read));

    // Compare the replicas' logs on disk once every process is stopped (followers append the
    // leader's batches verbatim, so in-sync replicas hold the same batches).
    std::thread::sleep(Duration::from_secs(1));
    for node in &mut nodes {
        node.kill9();
    }
    let mut replica_diffs = Vec::new();
    let mut old_leader_divergent = Vec::new();
    for p in 0..PARTITIONS {
        let dirs: Vec<_> = nodes
            .iter()
            .map(|n| n.data_dir.join(format!("{topic}-{p}")))
            .collect();
        let batches: Vec<Vec<(i64, i64, u32)>> = dirs.iter().map(|d| batches_on_disk(d)).collect();
        let distinct: BTreeSet<&Vec<(i64, i64, u32)>> = batches.iter().collect();
        if distinct.len() > 1 {
            let ends: BTreeMap<i32, Option<i64>> = nodes
                .iter()
                .zip(&batches)
                .map(|(n, b)| (n.id, b.last().map(|x| x.1)))
                .collect();
            replica_diffs.push(format!("partition {p}: replicas differ, last offsets {ends:?}"));
        }
        if log_contains(&dirs[index], DIVERGENT.as_bytes()) {
            old_leader_divergent.push(p);
        }
    }

    // Verdicts.
    let bad_acks: Vec<_> = divergent_answers
        .iter()
        .filter(|(_, _, answer, _)| matches!(answer, Some((0, _))))
        .collect();
    assert!(
        bad_acks.is_empty(),
        "the cut-off leader acknowledged acks=all writes: {bad_acks:?}"
    );
    assert!(
        failed_during.is_empty(),
        "majority side: {} acks=all deliveries failed, first {:#?}",
        failed_during.len(),
        failed_during.iter().take(5).collect::<Vec<_>>()
    );
    assert!(!acked_during.is_empty(), "the majority acknowledged nothing");
    let (read_count, checked) = match check {
        Ok(counts) => counts,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    println!("checker: {checked} acknowledged records all read back ({read_count} read)");
    assert!(
        divergent_read.is_empty(),
        "unacknowledged records of the cut-off leader are readable: {divergent_read:?}"
    );
    if let Err(views) = rejoined {
        panic!("node {isolated} did not rejoin every ISR within 20 s of healing: {views:#?}");
    }
    assert!(
        old_leader_divergent.is_empty(),
        "node {isolated} still holds divergent records in partitions {old_leader_divergent:?}"
    );
    assert!(replica_diffs.is_empty(), "{replica_diffs:#?}");
    println!("on disk: node {isolated} holds no divergent record; the three replicas hold the same batches");
    assert!(
        moved_bystanders.is_empty(),
        "partitions led by the majority side lost their leader when node {isolated} was cut off (a live broker was fenced): {moved_bystanders:?}"
    );
    println!("whole test {:?}", started.elapsed());
}
