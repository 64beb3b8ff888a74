//! Shared harness of the cluster fault tests (`replication_shutdown`, `two_clusters`,
//! `network_partition`): restartable `sapper broker` cluster nodes (optionally inside a network
//! namespace, through `ip netns exec`), Metadata views read with `sapper_wire`'s client, a
//! paced rdkafka producer that records every delivery report with its latency, and a checker
//! comparing acknowledged records with what is read back.
//!
//! Everything is bounded in time; every process is killed when its [`Node`] is dropped (also
//! on panic, then with its stderr tail printed).

// Each test binary uses a different part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use sapper_wire::client::Client;
use sapper_wire::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use sapper_wire::kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use sapper_wire::kafka_protocol::protocol::StrBytes;

/// How long a node may take to print that it listens.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound of one Metadata round trip.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// One `sapper broker` cluster node (broker and controller), restartable on its addresses and
/// data directory.
pub struct Node {
    pub id: i32,
    /// Client listener.
    pub client: SocketAddr,
    /// Controller listener (its entry in `voters`).
    pub controller: SocketAddr,
    pub voters: String,
    pub data_dir: PathBuf,
    logs: PathBuf,
    /// Run inside this network namespace (`ip netns exec NS sapper broker ...`).
    pub netns: Option<String>,
    starts: u32,
    child: Option<Child>,
    /// A label for messages ("A1", "node 2", ...).
    pub label: String,
}

impl Node {
    pub fn new(
        label: &str,
        id: i32,
        client: SocketAddr,
        controller: SocketAddr,
        voters: &str,
        dir: &Path,
        netns: Option<String>,
    ) -> Node {
        Node {
            id,
            client,
            controller,
            voters: voters.to_owned(),
            data_dir: dir.join(format!("{label}-data")),
            logs: dir.to_path_buf(),
            netns,
            starts: 0,
            child: None,
            label: label.to_owned(),
        }
    }

    /// Starts the process and waits until it prints that it listens for clients.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.label);
        self.starts += 1;
        let stderr = File::create(self.stderr_path()).unwrap();
        let sapper = env!("CARGO_BIN_EXE_sapper");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, sapper]);
                c
            }
            None => Command::new(sapper),
        };
        cmd.arg("broker")
            .args(["--node-id", &self.id.to_string()])
            .args(["--listen", &self.client.to_string()])
            .args(["--controller-listen", &self.controller.to_string()])
            .args(["--voters", &self.voters])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1")
            .env(
                "SAPPER_LOG",
                std::env::var("SAPPER_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            );
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
            self.kill_quietly();
            panic!("{} did not start listening\n{}", self.label, self.stderr_tail());
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("not running").id()
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("not running");
        child.kill().unwrap();
        let _ = child.wait();
    }

    /// Sends SIGTERM (without waiting).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits up to `bound` for the process to exit; `None` if it did not (it is then killed).
    pub fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take().expect("not running");
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill_quietly(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.logs
            .join(format!("{}-start{}.stderr", self.label, self.starts))
    }

    /// The last few kilobytes of the current (or last) start's stderr.
    pub fn stderr_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(self.stderr_path()) {
            let _ = f.read_to_string(&mut text);
        }
        let mut start = text.len().saturating_sub(6_000);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        format!(
            "--- {} (node {}) stderr, start {} ---\n{}",
            self.label,
            self.id,
            self.starts,
            &text[start..]
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_quietly();
        if std::thread::panicking() {
            eprintln!("{}", self.stderr_tail());
        }
    }
}

/// The test's temporary directory (data directories and stderr files); kept, with its path
/// printed, when `SAPPER_TEST_KEEP` is set.
pub fn test_dir() -> tempfile::TempDir {
    let keep = std::env::var_os("SAPPER_TEST_KEEP").is_some();
    let dir = tempfile::Builder::new()
        .prefix("sapper-fault-")
        .disable_cleanup(keep)
        .tempdir()
        .unwrap();
    if keep {
        println!("keeping {}", dir.path().display());
    }
    dir
}

/// `n` distinct 127.0.0.1 ports that were free a moment ago.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// Three nodes on 127.0.0.1 with fresh ports (not started); labels `{prefix}{id}`.
pub fn local_nodes(prefix: &str, count: i32, dir: &Path) -> Vec<Node> {
    let n = usize::try_from(count).unwrap();
    let ports = free_ports(2 * n);
    let voters = (0..n)
        .map(|i| format!("{}@127.0.0.1:{}", i + 1, ports[n + i]))
        .collect::<Vec<_>>()
        .join(",");
    (0..n)
        .map(|i| {
            Node::new(
                &format!("{prefix}{}", i + 1),
                i32::try_from(i + 1).unwrap(),
                SocketAddr::from(([127, 0, 0, 1], ports[i])),
                SocketAddr::from(([127, 0, 0, 1], ports[n + i])),
                &voters,
                dir,
                None,
            )
        })
        .collect()
}

/// `host:port,...` of the given nodes' client listeners.
pub fn bootstrap(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| n.client.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// One partition as a broker's Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub error: i16,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
}

/// What one broker's Metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub cluster_id: Option<String>,
    pub brokers: BTreeSet<i32>,
    pub controller: i32,
    pub partitions: BTreeMap<i32, PartitionInfo>,
}

impl View {
    /// Partition indexes led by `broker`.
    pub fn led_by(&self, broker: i32) -> Vec<i32> {
        self.partitions
            .iter()
            .filter(|(_, p)| p.leader == broker)
            .map(|(i, _)| *i)
            .collect()
    }
}

/// The Metadata of `topic` as `addr` answers it (`None` when it does not answer in time).
pub fn metadata(addr: SocketAddr, topic: &str) -> Option<View> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))]))
        .with_allow_auto_topic_creation(false);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
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
        cluster_id: response.cluster_id.as_ref().map(ToString::to_string),
        brokers: response.brokers.iter().map(|b| b.node_id.0).collect(),
        controller: response.controller_id.0,
        partitions,
    })
}

/// Polls `check` against the given nodes' Metadata until it holds for all of them and they
/// agree on the partitions; panics after `bound` with the last views.
pub fn wait_for_views(
    nodes: &[&Node],
    topic: &str,
    bound: Duration,
    what: &str,
    check: impl Fn(&View) -> bool,
) -> View {
    try_wait_for_views(nodes, topic, bound, &check)
        .unwrap_or_else(|views| panic!("{what}: not within {bound:?}; last views: {views:#?}"))
}

/// [`wait_for_views`] without the panic: the last views on a timeout.
pub fn try_wait_for_views(
    nodes: &[&Node],
    topic: &str,
    bound: Duration,
    check: &dyn Fn(&View) -> bool,
) -> Result<View, Vec<Option<View>>> {
    let deadline = Instant::now() + bound;
    loop {
        let views: Vec<Option<View>> = nodes.iter().map(|n| metadata(n.client, topic)).collect();
        let all_ok = views.iter().all(|v| v.as_ref().is_some_and(check));
        let agree = views
            .windows(2)
            .all(|w| w[0].as_ref().map(|v| &v.partitions) == w[1].as_ref().map(|v| &v.partitions));
        if all_ok && agree {
            return Ok(views.into_iter().next().flatten().unwrap());
        }
        if Instant::now() >= deadline {
            return Err(views);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A librdkafka config for `bootstrap` with quick retries, reconnects and metadata refreshes.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "500")
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "200")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("topic.metadata.refresh.fast.interval.ms", "50")
        .set_log_level(RDKafkaLogLevel::Warning);
    config
}

pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Creates `topic` through rdkafka's admin client with `configs`, then waits until every
/// given node describes all partitions with a leader and a full ISR.
pub fn create_topic(
    nodes: &[&Node],
    topic: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
) -> View {
    let admin: AdminClient<DefaultClientContext> = client_config(&bootstrap(nodes)).create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(15)));
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    for (key, value) in configs {
        new_topic = new_topic.set(key, value);
    }
    let results = block_on(admin.create_topics([&new_topic], &options)).expect("CreateTopics");
    for result in results {
        result.unwrap_or_else(|(name, code)| panic!("creating {name}: {code}"));
    }
    let want = usize::try_from(replication).unwrap();
    wait_for_views(
        nodes,
        topic,
        Duration::from_secs(15),
        "topic created with full ISRs on every broker",
        |v| {
            v.partitions.len() == usize::try_from(partitions).unwrap()
                && v.partitions
                    .values()
                    .all(|p| p.error == 0 && p.leader > 0 && p.isr.len() == want)
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Producing with a ledger of delivery reports
// ---------------------------------------------------------------------------------------------

/// One acknowledged record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub partition: i32,
    pub offset: i64,
    pub payload: String,
    /// When it was handed to the producer.
    pub sent_at: Instant,
    /// From send to delivery report.
    pub latency: Duration,
}

/// Every delivery report, and the client-level errors and warnings librdkafka raised.
#[derive(Default)]
pub struct Ledger {
    pub acked: Mutex<Vec<Acked>>,
    /// (payload, error) of every record whose delivery failed.
    pub failed: Mutex<Vec<(String, String, Duration)>>,
    /// Client-level errors (`error_cb`) and librdkafka warnings, as text.
    pub client_errors: Mutex<Vec<String>>,
}

/// The producer's context: the shared [`Ledger`].
pub struct LedgerContext(pub Arc<Ledger>);

impl ClientContext for LedgerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        use RDKafkaLogLevel::{Alert, Critical, Emerg, Error, Warning};
        if std::env::var_os("SAPPER_TEST_RDKAFKA_DEBUG").is_some() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            eprintln!(
                "rdkafka {}.{:03} {level:?} {fac}: {log_message}",
                now.as_secs() % 3600,
                now.subsec_millis()
            );
        }
        if matches!(level, Emerg | Alert | Critical | Error | Warning) {
            self.0
                .client_errors
                .lock()
                .unwrap()
                .push(format!("log {level:?} {fac}: {log_message}"));
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0
            .client_errors
            .lock()
            .unwrap()
            .push(format!("error {error}: {reason}"));
    }
}

impl ProducerContext for LedgerContext {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        let latency = sent.elapsed();
        match result {
            Ok(msg) => self.0.acked.lock().unwrap().push(Acked {
                partition: msg.partition(),
                offset: msg.offset(),
                payload: String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned(),
                sent_at: *sent,
                latency,
            }),
            Err((err, msg)) => self.0.failed.lock().unwrap().push((
                String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned(),
                err.to_string(),
                latency,
            )),
        }
    }
}

/// A producer thread sending `{tag}-{seq}` round-robin over `partitions` at `rate` records/s
/// until stopped, with the given producer settings.
pub struct PacedProducer {
    pub ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, Vec<String>)>>,
}

impl PacedProducer {
    pub fn start(
        config: ClientConfig,
        topic: &str,
        partitions: &[i32],
        tag: &str,
        rate: u32,
    ) -> PacedProducer {
        let ledger = Arc::new(Ledger::default());
        let producer: ThreadedProducer<LedgerContext> = config
            .create_with_context(LedgerContext(Arc::clone(&ledger)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (topic, partitions, tag) = (topic.to_owned(), partitions.to_vec(), tag.to_owned());
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let interval = Duration::from_secs(1) / rate.max(1);
            let started = Instant::now();
            let mut sent = 0u64;
            let mut refused = Vec::new();
            // Bounded: at most 10 minutes of sending even if nobody stops it.
            while !stopping.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(600) {
                let due = started + interval * u32::try_from(sent).unwrap_or(u32::MAX);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let partition = partitions[usize::try_from(sent).unwrap() % partitions.len()];
                let payload = format!("{tag}-{sent}");
                let record = BaseRecord::with_opaque_to(&topic, Box::new(Instant::now()))
                    .partition(partition)
                    .payload(&payload);
                if let Err((e, _)) = producer.send::<(), _>(record) {
                    refused.push(format!("{payload}: {e}"));
                }
                sent += 1;
            }
            // Bounded flush: whatever is still queued after it shows up as not acknowledged.
            if let Err(e) = producer.flush(Duration::from_secs(30)) {
                refused.push(format!("flush: {e}"));
            }
            if let Some(fatal) = producer.client().fatal_error() {
                refused.push(format!("fatal: {fatal:?}"));
            }
            (sent, refused)
        });
        PacedProducer {
            ledger,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sending, flushes, answers (records sent, send-side errors).
    pub fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }

    /// Records acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.ledger.acked.lock().unwrap().len()
    }
}

impl Drop for PacedProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `q`-quantile of `latencies` (sorted in place).
pub fn quantile(latencies: &mut [Duration], q: f64) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    latencies.sort();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((latencies.len() - 1) as f64 * q).round() as usize;
    latencies[i.min(latencies.len() - 1)]
}

// ---------------------------------------------------------------------------------------------
// Reading back and checking
// ---------------------------------------------------------------------------------------------

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub offset: i64,
    pub payload: String,
}

/// Reads `partitions` of `topic` from the beginning up to the high watermarks seen when the
/// read starts, through `bootstrap`. Bounded by 30 s.
pub fn consume_all(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<i32, Vec<ReadRecord>> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", format!("sapper-fault-{topic}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    let mut high = BTreeMap::new();
    for p in 0..partitions {
        let (_, hw) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("ListOffsets {topic}/{p}: {e}"));
        high.insert(p, hw);
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out: BTreeMap<i32, Vec<ReadRecord>> = (0..partitions).map(|p| (p, Vec::new())).collect();
    let mut next: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while next.iter().any(|(p, n)| *n < high[p]) {
        assert!(
            Instant::now() < deadline,
            "reading {topic} timed out: read up to {next:?}, high watermarks {high:?}"
        );
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = result.unwrap_or_else(|e| panic!("consuming {topic}: {e}"));
        let p = msg.partition();
        if msg.offset() >= high[&p] {
            continue;
        }
        out.get_mut(&p).unwrap().push(ReadRecord {
            offset: msg.offset(),
            payload: String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned(),
        });
        next.insert(p, msg.offset() + 1);
    }
    out
}

/// Checks what was read against what was acknowledged: every acknowledged record is read at
/// its partition and offset with its payload, offsets increase, no acknowledged payload is read
/// twice (unacknowledged records, e.g. a non-idempotent producer's timed-out retries, may be).
/// Answers (records read, acknowledged records checked).
pub fn check_no_acked_loss(acked: &[Acked], read: &BTreeMap<i32, Vec<ReadRecord>>) -> (usize, usize) {
    let mut at: BTreeMap<(i32, i64), &str> = BTreeMap::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let acked_payloads: BTreeSet<&str> = acked.iter().map(|a| a.payload.as_str()).collect();
    let mut problems = Vec::new();
    for (p, records) in read {
        for pair in records.windows(2) {
            if pair[1].offset <= pair[0].offset {
                problems.push(format!("partition {p}: offsets out of order {pair:?}"));
            }
        }
        for r in records {
            at.insert((*p, r.offset), &r.payload);
            if !seen.insert(&r.payload) && acked_payloads.contains(r.payload.as_str()) {
                problems.push(format!("partition {p}: {} read twice", r.payload));
            }
        }
    }
    for a in acked {
        match at.get(&(a.partition, a.offset)) {
            Some(payload) if *payload == a.payload => {}
            Some(other) => problems.push(format!(
                "acknowledged {} at {}/{} but that offset holds {other}",
                a.payload, a.partition, a.offset
            )),
            None => problems.push(format!(
                "acknowledged {} at {}/{} is lost",
                a.payload, a.partition, a.offset
            )),
        }
    }
    let shown: Vec<&String> = problems.iter().take(20).collect();
    assert!(
        problems.is_empty(),
        "{} checker violations, first ones: {shown:#?}",
        problems.len()
    );
    (read.values().map(Vec::len).sum(), acked.len())
}
