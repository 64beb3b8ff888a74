#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! `sapper group list|describe|history|delete` end to end: a real broker, a librdkafka
//! consumer in a group that commits known offsets in two rounds a few seconds apart, and the
//! built `sapper` binary reading it all back through the Kafka protocol.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use common::{CliRun, TestBroker};

const PARTITIONS: i32 = 2;
const RECORDS_PER_PARTITION: i64 = 10;
const CLIENT_ID: &str = "group-cli-test-client";
/// How long one `sapper group` run may take (its own connect and request timeouts are lower).
const CLI_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs `sapper group ARGS --bootstrap BOOTSTRAP`.
fn sapper_group(bootstrap: &str, args: &[&str]) -> CliRun {
    let mut all = vec!["group"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--bootstrap", bootstrap]);
    common::run_cli(&all, CLI_TIMEOUT)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn commit(consumer: &BaseConsumer, topic: &str, offsets: [i64; 2]) {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets.iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(*o))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
}

/// (topic, partition, offset) of each commit in a history document, in its order.
fn commits(history: &Value) -> Vec<(String, i64, i64)> {
    history["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["topic"].as_str().unwrap().to_string(),
                c["partition"].as_i64().unwrap(),
                c["offset"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn listed(list: &Value, group: &str) -> Option<Value> {
    list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group_id"] == group)
        .cloned()
}

fn assert_one_line_failure(run: &CliRun, needle: &str) {
    assert_eq!(run.code, 1, "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    let stderr = run.stderr.trim();
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.contains(needle), "{stderr:?} does not mention {needle:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn group_commands_show_members_lag_history_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = TestBroker::start(dir.path(), &["--group-initial-rebalance-delay-ms", "200"]);
    let bootstrap = broker.bootstrap();
    let topic = common::unique_topic("group-cli");
    let group = format!("{topic}-group");
    common::create_topic(&bootstrap, &topic, PARTITIONS);

    let producer: BaseProducer = common::client_config(&bootstrap).create().expect("producer");
    for p in 0..PARTITIONS {
        for i in 0..RECORDS_PER_PARTITION {
            let payload = format!("{p}-{i}");
            producer
                .send(BaseRecord::<(), _>::to(&topic).partition(p).payload(&payload))
                .expect("enqueue");
        }
    }
    producer.flush(Duration::from_secs(20)).expect("flush");

    let consumer: BaseConsumer = common::client_config(&bootstrap)
        .set("group.id", &group)
        .set("client.id", CLIENT_ID)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumer.assignment().unwrap().count() < PARTITIONS as usize {
        assert!(
            Instant::now() < deadline,
            "the consumer was never assigned both partitions"
        );
        let _ = consumer.poll(Duration::from_millis(100));
    }

    // Two rounds of commits with a known moment between them.
    commit(&consumer, &topic, [3, 4]);
    let after_round_one = now_ms();
    std::thread::sleep(Duration::from_millis(1_000));
    let between = now_ms();
    std::thread::sleep(Duration::from_millis(1_000));
    let before_round_two = now_ms();
    commit(&consumer, &topic, [7, 9]);
    let _ = consumer.poll(Duration::from_millis(50));

    // list
    let list = sapper_group(&bootstrap, &["list", "--output", "json"]).json();
    let entry = listed(&list, &group).unwrap_or_else(|| panic!("{group} not listed: {list}"));
    assert_eq!(entry["state"], "Stable");
    assert_eq!(entry["protocol_type"], "consumer");
    let empty_only = sapper_group(&bootstrap, &["list", "--state", "Empty", "--output", "json"]).json();
    assert!(listed(&empty_only, &group).is_none(), "{empty_only}");
    let text = sapper_group(&bootstrap, &["list"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(text.stdout.starts_with("GROUP "), "{}", text.stdout);
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with(&group) && l.contains("Stable")),
        "{}",
        text.stdout
    );

    // describe: members, assignment, committed offsets and lag, exactly.
    let described = sapper_group(&bootstrap, &["describe", &group, "--output", "json"]).json();
    assert_eq!(described["state"], "Stable", "{described}");
    assert_eq!(described["protocol_type"], "consumer");
    let members = described["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{described}");
    let member_id = members[0]["member_id"].as_str().unwrap().to_string();
    assert!(!member_id.is_empty());
    assert_eq!(members[0]["client_id"], CLIENT_ID);
    let assigned: BTreeSet<(String, i64)> = members[0]["assignment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["topic"].as_str().unwrap().to_string(),
                a["partition"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(assigned, BTreeSet::from([(topic.clone(), 0), (topic.clone(), 1)]));
    let partitions = described["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 2, "{described}");
    for (p, committed) in [(0, 7), (1, 9)] {
        let row = &partitions[p as usize];
        assert_eq!(row["topic"], topic.as_str());
        assert_eq!(row["partition"], p);
        assert_eq!(row["committed_offset"], committed, "{row}");
        assert_eq!(row["log_end_offset"], RECORDS_PER_PARTITION, "{row}");
        assert_eq!(row["lag"], RECORDS_PER_PARTITION - committed, "{row}");
        assert_eq!(row["member_id"], member_id.as_str());
    }
    let text = sapper_group(&bootstrap, &["describe", &group]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(text.stdout.contains(CLIENT_ID), "{}", text.stdout);
    assert!(text.stdout.contains("LAG"), "{}", text.stdout);

    // history: both rounds, oldest first; --at between the rounds gives round one.
    let history = sapper_group(&bootstrap, &["history", &group, "--output", "json"]).json();
    let all = commits(&history);
    assert_eq!(all.len(), 4, "{history}");
    let round = |i: std::ops::Range<usize>| all[i].iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(
        round(0..2),
        BTreeSet::from([(topic.clone(), 0, 3), (topic.clone(), 1, 4)])
    );
    assert_eq!(
        round(2..4),
        BTreeSet::from([(topic.clone(), 0, 7), (topic.clone(), 1, 9)])
    );
    let times: Vec<i64> = history["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["commit_time_ms"].as_i64().unwrap())
        .collect();
    assert!(
        times[0] <= after_round_one && times[1] <= after_round_one,
        "{times:?}"
    );
    assert!(
        times[2] >= before_round_two && times[3] >= before_round_two,
        "{times:?}"
    );
    assert!(history["commits"][0]["commit_time"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    let at = between.to_string();
    let at_between = sapper_group(&bootstrap, &["history", &group, "--at", &at, "--output", "json"]).json();
    assert_eq!(
        commits(&at_between),
        vec![(topic.clone(), 0, 3), (topic.clone(), 1, 4)],
        "{at_between}"
    );
    let at_now = sapper_group(&bootstrap, &["history", &group, "--at", "0s", "--output", "json"]).json();
    assert_eq!(
        commits(&at_now),
        vec![(topic.clone(), 0, 7), (topic.clone(), 1, 9)]
    );
    let other_topic = sapper_group(
        &bootstrap,
        &["history", &group, "--topic", "other", "--output", "json"],
    )
    .json();
    assert!(commits(&other_topic).is_empty());
    let text = sapper_group(&bootstrap, &["history", &group, "--at", &at]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(text.stdout.contains("COMMIT TIME"), "{}", text.stdout);

    // delete: refused while the consumer is a member, then accepted once it left.
    let refused = sapper_group(&bootstrap, &["delete", &group]);
    assert_one_line_failure(&refused, "NON_EMPTY_GROUP");
    assert!(refused.stdout.contains("NON_EMPTY_GROUP"), "{}", refused.stdout);

    // Leave the group (LeaveGroup is answered at once); the handle is leaked rather than
    // dropped, as in groups_basic.rs, because closing a subscribed consumer can hang.
    consumer.unsubscribe();
    for _ in 0..10 {
        let _ = consumer.poll(Duration::from_millis(20));
    }
    std::mem::forget(consumer);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = sapper_group(&bootstrap, &["describe", &group, "--output", "json"]).json();
        if d["state"] == "Empty" {
            break;
        }
        assert!(Instant::now() < deadline, "the group never became Empty: {d}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let deleted = sapper_group(&bootstrap, &["delete", &group, "--output", "json"]).json();
    assert_eq!(deleted["results"][0]["group_id"], group.as_str());
    assert_eq!(deleted["results"][0]["error"], Value::Null, "{deleted}");
    let list = sapper_group(&bootstrap, &["list", "--output", "json"]).json();
    assert!(listed(&list, &group).is_none(), "{list}");

    // Failures are one line and exit code 1, never a panic.
    let missing = sapper_group(&bootstrap, &["describe", &group]);
    assert_one_line_failure(&missing, "does not exist");
    let unknown = sapper_group(&bootstrap, &["delete", "no-such-group"]);
    assert_one_line_failure(&unknown, "GROUP_ID_NOT_FOUND");
    let bad_time = sapper_group(&bootstrap, &["history", &group, "--at", "yesterday"]);
    assert_one_line_failure(&bad_time, "invalid time");
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let down = sapper_group(&closed_port, &["list"]);
    assert_one_line_failure(&down, "cannot reach the broker");
    broker.assert_running();
}
