#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! `sapper cluster describe` end to end against one real broker: one alive broker that is the
//! controller, every partition led and fully in sync, and the quorum line as the broker reports
//! it (a broker that does not serve DescribeQuorum gets "not reported by this broker").

mod common;

use std::time::Duration;

use serde_json::Value;

use common::TestBroker;

const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `sapper cluster describe --bootstrap BOOTSTRAP ARGS`; returns (exit code, stdout, stderr).
fn describe(bootstrap: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["cluster", "describe", "--bootstrap", bootstrap];
    all.extend_from_slice(args);
    let run = common::run_cli(&all, CLI_TIMEOUT);
    (run.code, run.stdout, run.stderr)
}

#[test]
fn describe_shows_one_healthy_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), &[]);
    let bootstrap = broker.bootstrap();
    let topic = common::unique_topic("cluster-cli");
    common::create_topic(&bootstrap, &topic, 3);

    let (code, stdout, stderr) = describe(&bootstrap, &["--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let d: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"));
    assert_eq!(d["bootstrap"], bootstrap.as_str());
    assert!(d["cluster_id"].as_str().is_some_and(|id| !id.is_empty()), "{d}");
    assert_eq!(d["controller_id"], 1, "{d}");
    let brokers = d["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 1, "{d}");
    assert_eq!(brokers[0]["id"], 1);
    assert_eq!(brokers[0]["state"], "alive");
    assert_eq!(brokers[0]["port"], i64::from(broker.addr.port()));
    let partitions = d["partition_count"].as_u64().unwrap();
    assert!(partitions >= 3, "{d}");
    assert_eq!(brokers[0]["leaders"].as_u64(), Some(partitions), "{d}");
    assert_eq!(brokers[0]["replicas"].as_u64(), Some(partitions), "{d}");
    assert_eq!(d["under_replicated"].as_array().unwrap().len(), 0, "{d}");
    assert_eq!(d["offline"].as_array().unwrap().len(), 0, "{d}");
    // The quorum as this broker reports it: described, or the note that it is not.
    match d["quorum"].as_object() {
        Some(q) => {
            assert!(q["voters"].as_array().is_some_and(|v| !v.is_empty()), "{d}");
            assert!(d["quorum_note"].is_null(), "{d}");
        }
        None => assert_eq!(d["quorum_note"], "not reported by this broker", "{d}"),
    }

    let (code, text, stderr) = describe(&bootstrap, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        text.contains("1 broker(s)") && text.contains("0 under-replicated, 0 offline"),
        "{text}"
    );
    assert!(text.contains("Under-replicated partitions: none"), "{text}");
    assert!(text.contains("Offline partitions: none"), "{text}");
    assert!(
        text.contains("1 (controller)") && text.contains("alive"),
        "{text}"
    );
    if d["quorum"].is_null() {
        assert!(text.contains("quorum: not reported by this broker"), "{text}");
    }
}

#[test]
fn describe_of_an_unreachable_broker_fails_in_one_line() {
    // A port nothing listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, stdout, stderr) = describe(&format!("127.0.0.1:{port}"), &[]);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot reach the broker"), "{stderr}");
}
