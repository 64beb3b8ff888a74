//! Shared harness for the end-to-end tests: a real `sapper broker` process on 127.0.0.1
//! ([`TestBroker`]), topic creation and whole-partition reads through librdkafka, and a TCP
//! proxy that can cut connections ([`proxy::TcpProxy`]).
//!
//! Everything here is blocking and bounded in time: a test that hangs is a failure, reported
//! with the broker's stderr tail.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod checker;
pub mod cluster;
pub mod proxy;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// The line the broker prints on stdout once it accepts connections.
pub const LISTEN_PREFIX: &str = "sapper: listening on ";
/// How long a broker may take to recover its data directory and print [`LISTEN_PREFIX`].
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a broker may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// One `sapper broker` process, restartable on the same data directory and port.
///
/// Dropping it kills the process; if the test is failing at that point the broker's stderr
/// tail is printed, so the failure report carries the broker's side of the story.
pub struct TestBroker {
    /// Where the broker accepts clients.
    pub addr: SocketAddr,
    data_dir: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
    /// Holds one stderr file per start of the process.
    logs: tempfile::TempDir,
    starts: u32,
    stderr_path: PathBuf,
}

impl TestBroker {
    /// Starts a broker (node id 1) on an ephemeral 127.0.0.1 port with `data_dir`, plus
    /// `extra_args`, and waits until it announces that it listens.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> TestBroker {
        let logs = tempfile::Builder::new()
            .prefix("sapper-e2e-logs")
            .tempdir()
            .expect("creating a temporary directory for broker logs");
        let mut broker = TestBroker {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_path_buf(),
            extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
            logs,
            starts: 0,
            stderr_path: PathBuf::new(),
        };
        broker.spawn(0);
        broker
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the broker is not running").id()
    }

    fn spawn(&mut self, port: u16) {
        assert!(self.child.is_none(), "the broker is already running");
        self.starts += 1;
        self.stderr_path = self
            .logs
            .path()
            .join(format!("broker-start{}.stderr", self.starts));
        let mut cmd = sapper_command(&[]);
        cmd.arg("broker")
            .args(["--node-id", "1"])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args);
        let (child, announced) = match start_and_wait(cmd, &self.stderr_path, LISTEN_PREFIX) {
            Ok(started) => started,
            Err(why) => panic!("broker {why}\n{}", self.stderr_tail()),
        };
        self.child = Some(child);
        let addr: SocketAddr = announced.parse().expect("the broker announces host:port");
        assert!(
            addr.ip().is_loopback(),
            "the broker listens on {addr}, not 127.0.0.1"
        );
        if port != 0 {
            assert_eq!(addr.port(), port, "restarted on another port");
        }
        self.addr = addr;
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("polling a child process").is_none(),
            None => false,
        }
    }

    /// Fails the test if the broker died without being asked to (a panic, an abort).
    pub fn assert_running(&mut self) {
        if !self.is_running() {
            let status = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            panic!(
                "the broker died unexpectedly ({status:?})\n{}",
                self.stderr_tail()
            );
        }
    }

    /// SIGKILL, as a crash: no shutdown code runs. The broker must have been running.
    pub fn kill9(&mut self) {
        self.assert_running();
        let mut child = self.child.take().expect("checked running");
        child.kill().expect("sending SIGKILL to the broker");
        let _ = child.wait();
    }

    /// SIGTERM, then waits for the exit and asserts it was clean (status 0).
    pub fn sigterm_and_wait(&mut self) {
        self.assert_running();
        send_signal(self.pid(), "-TERM");
        let mut child = self.child.take().expect("checked running");
        let exit = wait_with_timeout(&mut child, STOP_TIMEOUT);
        match exit {
            Some(status) => assert!(
                status.success(),
                "the broker exited with {status} after SIGTERM\n{}",
                self.stderr_tail()
            ),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the broker did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.stderr_tail()
                );
            }
        }
    }

    /// Starts the broker again on the same data directory and port (stopping it with SIGTERM
    /// first if it is still running), so clients can reconnect to the address they know.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            if self.is_running() {
                self.sigterm_and_wait();
            } else {
                self.assert_running(); // panics: it died without being asked to
            }
        }
        let port = self.addr.port();
        self.spawn(port);
    }

    /// The last few kilobytes of the current (or last) process's stderr.
    pub fn stderr_tail(&self) -> String {
        format!(
            "--- broker stderr ({}, last 8000 bytes) ---\n{}",
            self.stderr_path.display(),
            file_tail(&self.stderr_path, 8_000)
        )
    }

    fn kill_quietly(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.kill_quietly();
        if std::thread::panicking() {
            eprintln!("{}", self.stderr_tail());
        }
    }
}

/// `sapper` (run through `wrapper`, e.g. `ip netns exec NS`, unless it is empty) with stdin
/// closed, colours off, backtraces on, and none of the caller's `SAPPER_*` variables but
/// `SAPPER_LOG`: only the flags the caller adds configure it.
pub fn sapper_command(wrapper: &[String]) -> Command {
    let sapper = env!("CARGO_BIN_EXE_sapper");
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(sapper);
            cmd
        }
        None => Command::new(sapper),
    };
    cmd.stdin(Stdio::null())
        .env("RUST_BACKTRACE", "1")
        .env("NO_COLOR", "1");
    for (key, _) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(|k| k.starts_with("SAPPER_") && k != "SAPPER_LOG")
        {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Spawns `cmd` with stdout piped and stderr into a new file `stderr`, and waits up to
/// [`START_TIMEOUT`] for a stdout line starting with `ready`; answers the process and the rest
/// of that line. Stdout is read for the whole life of the process, so it never blocks on a full
/// pipe. On a timeout the process is killed and the error says whether it had exited.
pub fn start_and_wait(mut cmd: Command, stderr: &Path, ready: &str) -> Result<(Child, String), String> {
    let stderr = File::create(stderr).expect("creating a stderr file");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("spawning target/release/sapper");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    let prefix = ready.to_owned();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent {
                if let Some(rest) = line.strip_prefix(&prefix) {
                    let _ = tx.send(rest.trim().to_owned());
                    sent = true;
                }
            }
        }
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(rest) => Ok((child, rest)),
        Err(_) => {
            let why = match child.try_wait().ok().flatten() {
                Some(status) => format!("exited ({status}) before printing {ready:?}"),
                None => format!("did not print {ready:?} within {START_TIMEOUT:?}"),
            };
            let _ = child.kill();
            let _ = child.wait();
            Err(why)
        }
    }
}

/// Sends `signal` (`-TERM`, `-STOP`, ...) to process `pid` with kill(1).
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill {signal} {pid} failed: {status}");
}

/// The last `keep` bytes (at most) of the file at `path`; empty if it cannot be read.
pub fn file_tail(path: &Path, keep: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let mut start = text.len().saturating_sub(keep);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text.get(start..).unwrap_or_default().to_owned()
}

/// Waits for `child` to exit for at most `timeout`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("polling a child process") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a future to completion on a fresh single-threaded runtime (for rdkafka's admin
/// futures, which its own background thread resolves).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime")
        .block_on(future)
}

/// A librdkafka config for `bootstrap` that keeps retries and reconnects quick.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "500")
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "200")
        .set("topic.metadata.refresh.interval.ms", "1000");
    config
}

/// Creates `topic` with `partitions` partitions (one replica) through the admin API and waits
/// until its metadata shows every partition with a leader.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap)
        .create()
        .expect("creating an admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = block_on(admin.create_topics([&new_topic], &options)).expect("CreateTopics failed");
    for result in results {
        result.unwrap_or_else(|(name, code)| panic!("creating topic {name}: {code}"));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()
            .is_some_and(|md| {
                md.topics().iter().any(|t| {
                    t.name() == topic
                        && t.error().is_none()
                        && t.partitions().len() == usize::try_from(partitions).unwrap_or(0)
                        && t.partitions()
                            .iter()
                            .all(|p| p.leader() >= 0 && p.error().is_none())
                })
            });
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "topic {topic} never showed {partitions} partitions with leaders"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One record read back: its offset and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub offset: i64,
    pub payload: Vec<u8>,
}

/// Reads every partition of `topic` from its first offset up to the high watermark observed
/// when the read starts; returns the records per partition index. Bounded by 45 s.
///
/// No consumer group: partitions are assigned explicitly and nothing is committed (the
/// `group.id` is only there because some librdkafka code paths want one).
pub fn consume_all(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Vec<ReadRecord>> {
    read_back(
        client_config(bootstrap),
        topic,
        partitions,
        Duration::from_secs(45),
    )
}

/// [`consume_all`] with a consumer made from `config` (plus the settings of a group-less read),
/// bounded by `bound`.
pub fn read_back(
    mut config: ClientConfig,
    topic: &str,
    partitions: i32,
    bound: Duration,
) -> Vec<Vec<ReadRecord>> {
    let consumer: BaseConsumer = config
        .set("group.id", format!("sapper-e2e-{topic}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("creating a consumer");
    let count = usize::try_from(partitions).expect("partition count");
    let mut high = Vec::with_capacity(count);
    for p in 0..partitions {
        let (_, hw) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("ListOffsets for {topic}/{p}: {e}"));
        high.push(hw);
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("adding a partition to the assignment");
    }
    consumer.assign(&tpl).expect("assigning partitions");
    let mut out: Vec<Vec<ReadRecord>> = vec![Vec::new(); count];
    let mut next: Vec<i64> = vec![0; count];
    let deadline = Instant::now() + bound;
    while next.iter().zip(&high).any(|(n, h)| n < h) {
        assert!(
            Instant::now() < deadline,
            "reading {topic} back timed out: read up to {next:?}, high watermarks {high:?}"
        );
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = result.unwrap_or_else(|e| panic!("consuming {topic}: {e}"));
        let i = usize::try_from(msg.partition()).expect("partition index");
        if msg.offset() >= high[i] {
            continue; // appended after the read started; not part of this snapshot
        }
        out[i].push(ReadRecord {
            offset: msg.offset(),
            payload: msg.payload().unwrap_or_default().to_vec(),
        });
        next[i] = msg.offset() + 1;
    }
    out
}

/// The high watermark of each partition of `topic`.
pub fn high_watermarks(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = client_config(bootstrap).create().expect("creating a consumer");
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("ListOffsets for {topic}/{p}: {e}"))
                .1
        })
        .collect()
}

/// A topic name no other test uses.
pub fn unique_topic(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// The result of one run of the `sapper` binary as a command-line tool.
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    /// The run's stdout as JSON; fails the test if the run failed or printed something else.
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.code, 0, "sapper failed: {}", self.stderr);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs `sapper ARGS` (without inheriting `SAPPER_BOOTSTRAP`), killing it after `timeout`.
/// Output goes through files so a chatty run can never block on a full pipe.
pub fn run_cli(args: &[&str], timeout: Duration) -> CliRun {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_sapper"))
        .args(args)
        .env_remove("SAPPER_BOOTSTRAP")
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("spawning sapper");
    let Some(status) = wait_with_timeout(&mut child, timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("sapper {args:?} did not finish within {timeout:?}");
    };
    CliRun {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(out_path).unwrap(),
        stderr: std::fs::read_to_string(err_path).unwrap(),
    }
}
