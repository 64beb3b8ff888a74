#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! `sapper dev --brokers 3` end to end: the built binary starts three broker processes on a
//! free port plan, prints the bootstrap list, every listener answers ApiVersions and Metadata
//! with three brokers, `sapper cluster describe` shows them alive, and SIGTERM to `sapper dev`
//! stops every node (no listener is left).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sapper_wire::client::Client;
use sapper_wire::kafka_protocol::messages::MetadataRequest;

const BROKERS: u16 = 3;
/// `sapper dev` puts node i's controller listener this far above its client listener.
const CONTROLLER_OFFSET: u16 = 1000;
/// How long the whole cluster may take to print its bootstrap list.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `sapper dev` may take to stop its nodes after SIGTERM (its own bound is 20 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(40);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A base port whose whole plan (three client and three controller ports) is free now.
fn free_base_port() -> u16 {
    for _ in 0..50 {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        if u32::from(base) + u32::from(CONTROLLER_OFFSET + BROKERS) > 65_535 {
            continue;
        }
        let plan: Vec<u16> = (0..BROKERS)
            .flat_map(|i| [base + i, base + CONTROLLER_OFFSET + i])
            .collect();
        if plan.iter().all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok()) {
            return base;
        }
    }
    panic!("no free port plan found in 50 tries");
}

/// `sapper dev` running; killed (with its process group's nodes) if the test fails.
struct Dev {
    child: Option<Child>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("sapper dev stderr:\n{}", self.stderr.lock().unwrap());
            }
        }
    }
}

fn send_ok<R: sapper_wire::kafka_protocol::protocol::Request>(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    request: R,
    version: i16,
) -> R::Response {
    rt.block_on(async {
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            let (mut client, _versions) = Client::bootstrap(addr).await?;
            client.send(&request, version).await
        })
        .await
    })
    .unwrap_or_else(|_| panic!("{addr} did not answer within {REQUEST_TIMEOUT:?}"))
    .unwrap_or_else(|e| panic!("{addr}: {e}"))
}

#[test]
fn dev_starts_three_brokers_that_serve_and_stop_together() {
    let data = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sapper"))
        .args(["dev", "--brokers", "3", "--name", "dev-cluster-test"])
        .args(["--base-port", &base.to_string()])
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("SAPPER_BOOTSTRAP")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning sapper dev");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stderr_text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = stderr_text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(list) = line.strip_prefix("sapper: bootstrap ") {
                let _ = tx.send(list.trim().to_string());
            }
        }
    });
    let mut dev = Dev {
        child: Some(child),
        stderr: stderr_text,
    };
    let bootstrap = rx
        .recv_timeout(START_TIMEOUT)
        .unwrap_or_else(|_| panic!("no bootstrap list within {START_TIMEOUT:?}"));
    let expected: Vec<String> = (0..BROKERS).map(|i| format!("127.0.0.1:{}", base + i)).collect();
    assert_eq!(bootstrap, expected.join(","));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for addr in &expected {
        let addr: SocketAddr = addr.parse().unwrap();
        // Client::bootstrap is ApiVersions; then Metadata must name every broker (the cluster
        // may still be registering them: bounded retries).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let metadata = send_ok(&rt, addr, MetadataRequest::default().with_topics(Some(vec![])), 9);
            let mut ids: Vec<i32> = metadata.brokers.iter().map(|b| b.node_id.0).collect();
            ids.sort();
            if ids == [1, 2, 3] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{addr} lists brokers {ids:?}, not [1, 2, 3]"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // `sapper cluster describe` sees the same three brokers, all alive, nothing offline.
    let d = common::run_cli(
        &[
            "cluster",
            "describe",
            "--output",
            "json",
            "--bootstrap",
            &expected[1],
        ],
        Duration::from_secs(60),
    )
    .json();
    let brokers: Vec<(i64, String)> = d["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["id"].as_i64().unwrap(),
                b["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        brokers,
        [
            (1, "alive".to_string()),
            (2, "alive".to_string()),
            (3, "alive".to_string())
        ],
        "{d}"
    );
    assert_eq!(d["offline"].as_array().unwrap().len(), 0, "{d}");

    let mut child = dev.child.take().unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let Some(exit) = common::wait_with_timeout(&mut child, STOP_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("sapper dev did not stop within {STOP_TIMEOUT:?} of SIGTERM");
    };
    assert!(
        exit.success(),
        "sapper dev exited with {exit}\n{}",
        dev.stderr.lock().unwrap()
    );
    // No node outlives it: every client and controller listener is closed.
    for i in 0..BROKERS {
        for port in [base + i, base + CONTROLLER_OFFSET + i] {
            assert!(
                TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(1))
                    .is_err(),
                "port {port} still accepts after sapper dev exited"
            );
        }
    }
}

#[test]
fn dev_refuses_a_taken_port_before_starting_anything() {
    let data = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sapper"))
        .args(["dev", "--base-port", &port.to_string()])
        .arg("--data-dir")
        .arg(data.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning sapper dev");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sapper dev did not give up on a taken port");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "127.0.0.1:{port} (node 1's client listener) is not available"
        )),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(data.path()).unwrap().count(),
        0,
        "nothing was started"
    );
}
