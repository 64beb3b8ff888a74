#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! `sapper bench failover --trials 2` end to end: the benchmark starts its own 3-node cluster
//! of this binary, kills the partition leader twice, sees an acks=all write acknowledged by a
//! new leader each time and the killed node back in the ISR, and prints one JSON report.
//! Bounded: the benchmark's own `--timeout-secs` well inside the runner's kill timeout.

mod common;

use std::time::Duration;

use common::run_cli;

#[test]
fn two_failover_trials_report_json() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("failover");
    let run = run_cli(
        &[
            "bench",
            "failover",
            "--trials",
            "2",
            "--settle-ms",
            "200",
            "--failover-timeout-secs",
            "15",
            "--rejoin-timeout-secs",
            "20",
            "--timeout-secs",
            "50",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--json",
        ],
        Duration::from_secs(58),
    );
    let report = run.json();
    assert!(report.get("first_error").is_none(), "{report:#}\n{}", run.stderr);
    assert_eq!(report["timed_out"], false);
    assert_eq!(report["replication_factor"], 3);
    assert_eq!(report["min_insync_replicas"], 2);
    let trials = report["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 2, "{report:#}");
    for trial in trials {
        let failover = trial["failover_ms"].as_f64().unwrap();
        assert!(failover > 0.0 && failover < 15_000.0, "{trial}");
        assert_ne!(trial["killed"], trial["new_leader"], "{trial}");
        assert!(trial["rejoin_ms"].as_f64().is_some(), "{trial}");
    }
    assert_eq!(report["failover_ms"]["count"], 2);
    assert!(report["writes_acked"].as_u64().unwrap() > 0);
    // The nodes kept their logs in --data-dir (removed with `dir`).
    assert!(data_dir.join("node-1.log").is_file());
}
