//! The failover benchmark (`sapper bench failover`): how long after a `kill -9` of a
//! partition's leader an acks=all write is acknowledged again, by the new leader.
//!
//! It owns its cluster: three nodes (broker and controller voter each) started as child
//! processes of this very executable (`<exe> broker ...`, the flags `sapper dev` uses) on free
//! 127.0.0.1 ports, data and logs in a fresh temporary directory (or `--data-dir`). Every child
//! is SIGKILLed when the run ends, on every path ([`LocalCluster`]'s `Drop`). It creates one
//! topic, one partition, replication factor 3, `min.insync.replicas` 2.
//!
//! The writer is Sapper's own wire client ([`sapper_wire::client::Client`]), not librdkafka:
//! one single-record acks=all Produce request every `--interval-ms` (10), to the leader named
//! by a Metadata request sent with it, so the figure is the cluster's failover plus at most
//! one interval, without a client library's metadata-refresh and retry back-offs on top.
//! Each trial:
//!
//! 1. writes for `--settle-ms` with the full ISR and checks the last write was acknowledged;
//! 2. SIGKILLs the leader (`kill -9`) and writes every interval to whichever other node the
//!    surviving nodes' Metadata names leader, until one write is acknowledged: `failover_ms`
//!    from just before the kill to that acknowledgement (`elected_ms`: to the first Metadata
//!    naming a new leader);
//! 3. restarts the killed node on its ports and data and keeps writing until Metadata lists it
//!    in the ISR again (`rejoin_ms`, from the restart), so every trial starts from a full ISR.
//!
//! The report lists every trial and p50/p90/max of each figure ([`Percentiles`]).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::OpenOptions;
use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use bytes::{Bytes, BytesMut};
use clap::Args;
use sapper_wire::client::Client;
use sapper_wire::kafka_protocol::error::ResponseError;
use sapper_wire::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use sapper_wire::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sapper_wire::kafka_protocol::messages::{MetadataRequest, ProduceRequest, TopicName};
use sapper_wire::kafka_protocol::protocol::StrBytes;
use sapper_wire::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::MissedTickBehavior;

use crate::client::ensure_replicated_topic;
use crate::produce::payload;
use crate::report::Percentiles;

/// Nodes of the benchmark's cluster.
const NODES: i32 = 3;
/// Replicas of the benchmark's partition.
const REPLICATION_FACTOR: i32 = 3;
/// The partition written to.
const PARTITION: i32 = 0;
/// Payload bytes of each write.
const RECORD_SIZE: usize = 100;
/// The line a broker prints on stdout once its client listener serves.
const LISTEN_PREFIX: &str = "sapper: listening on ";
/// How long a node may take to print [`LISTEN_PREFIX`] (a first start elects the quorum).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the fresh cluster may take to list the topic with a full ISR and take a write.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one Metadata or Produce request (or a connection) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the rejoin wait asks Metadata whether the restarted node is in the ISR, in writes.
const ISR_CHECK_EVERY: u32 = 5;
/// Produce and Metadata versions this client speaks (record batches v2; flexible versions are
/// the codec's business).
const PRODUCE_VERSIONS: (i16, i16) = (3, 9);
const METADATA_VERSIONS: (i16, i16) = (1, 12);

/// Arguments of `sapper bench failover`.
#[derive(Args, Debug, Clone)]
pub struct FailoverArgs {
    /// Leader kills to measure.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub trials: u32,

    /// Milliseconds between two acks=all writes (one record each, one request at a time).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub interval_ms: u64,

    /// Milliseconds of acknowledged writes with a full ISR before each kill.
    #[arg(long, default_value_t = 500)]
    pub settle_ms: u64,

    /// The topic's `min.insync.replicas` (its replication factor is 3).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(i32).range(1..=3))]
    pub min_insync_replicas: i32,

    /// Topic written to (one partition).
    #[arg(long, default_value = "sapper-bench-failover")]
    pub topic: String,

    /// Seconds one failover may take before the run gives up.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub failover_timeout_secs: u64,

    /// Seconds a restarted node may take to be back in the ISR before the run gives up.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub rejoin_timeout_secs: u64,

    /// Hard limit on the whole run; the report is marked `timed_out`.
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,

    /// Keep the nodes' data and logs (`node-i/`, `node-i.log`) here instead of in a temporary
    /// directory that is removed after a successful run.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// One leader kill.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct FailoverTrial {
    /// The leader that was SIGKILLed.
    pub killed: i32,
    /// The killed leader was also the active controller (Metadata's controller id), so the
    /// quorum had to elect a new controller before it could move the leadership.
    pub killed_controller: bool,
    /// The node that acknowledged the first write after the kill.
    pub new_leader: i32,
    /// Milliseconds from the kill to the first Metadata answer naming another leader.
    pub elected_ms: Option<f64>,
    /// Milliseconds from the kill to the first acks=all write acknowledged by the new leader.
    pub failover_ms: f64,
    /// Write intervals after the kill before that write: no new leader named yet, or the
    /// write refused or unanswered.
    pub failed_attempts: u32,
    /// Milliseconds from restarting the killed node to Metadata listing it in the ISR again.
    pub rejoin_ms: Option<f64>,
}

/// Outcome of `sapper bench failover`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct FailoverReport {
    /// Topic written to (one partition).
    pub topic: String,
    /// Nodes in the cluster.
    pub brokers: i32,
    /// Replicas of the partition.
    pub replication_factor: i32,
    /// The topic's `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// Milliseconds between writes.
    pub interval_ms: u64,
    /// Completed trials, in order.
    pub trials: Vec<FailoverTrial>,
    /// Kill to the first acknowledged acks=all write on the new leader.
    pub failover_ms: Percentiles,
    /// The same, over the trials whose killed leader was not the active controller.
    pub failover_ms_leader_only: Percentiles,
    /// The same, over the trials whose killed leader was also the active controller.
    pub failover_ms_leader_and_controller: Percentiles,
    /// Kill to Metadata naming the new leader.
    pub elected_ms: Percentiles,
    /// Restart of the killed node to its return to the ISR.
    pub rejoin_ms: Percentiles,
    /// acks=all writes acknowledged over the whole run.
    pub writes_acked: u64,
    /// Writes refused or unanswered over the whole run (most during failovers).
    pub writes_failed: u64,
    /// The run hit `--timeout-secs` before finishing its trials.
    pub timed_out: bool,
    /// What ended the run early, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl FailoverReport {
    fn new(args: &FailoverArgs) -> Self {
        Self {
            topic: args.topic.clone(),
            brokers: NODES,
            replication_factor: REPLICATION_FACTOR,
            min_insync_replicas: args.min_insync_replicas,
            interval_ms: args.interval_ms,
            trials: Vec::new(),
            failover_ms: Percentiles::default(),
            failover_ms_leader_only: Percentiles::default(),
            failover_ms_leader_and_controller: Percentiles::default(),
            elected_ms: Percentiles::default(),
            rejoin_ms: Percentiles::default(),
            writes_acked: 0,
            writes_failed: 0,
            timed_out: false,
            first_error: None,
        }
    }

    /// Fills the summaries from the trials.
    fn summarise(&mut self) {
        self.failover_ms = Percentiles::of(self.trials.iter().map(|t| t.failover_ms));
        let of_kind = |controller: bool| {
            Percentiles::of(
                self.trials
                    .iter()
                    .filter(|t| t.killed_controller == controller)
                    .map(|t| t.failover_ms),
            )
        };
        self.failover_ms_leader_only = of_kind(false);
        self.failover_ms_leader_and_controller = of_kind(true);
        self.elected_ms = Percentiles::of(self.trials.iter().filter_map(|t| t.elected_ms));
        self.rejoin_ms = Percentiles::of(self.trials.iter().filter_map(|t| t.rejoin_ms));
    }
}

impl fmt::Display for FailoverReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "failover {topic} ({brokers} brokers, RF {rf}, min.insync.replicas {min}, one acks=all \
             write every {interval} ms)",
            topic = self.topic,
            brokers = self.brokers,
            rf = self.replication_factor,
            min = self.min_insync_replicas,
            interval = self.interval_ms,
        )?;
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        for (i, t) in self.trials.iter().enumerate() {
            writeln!(
                f,
                "  trial {n}: kill -9 leader {killed}{controller}: node {new} named leader after \
                 {elected} ms, first acks=all write acked after {failover:.0} ms ({failed} \
                 intervals without); node {killed} back in the ISR {rejoin} ms after its restart",
                n = i + 1,
                killed = t.killed,
                controller = if t.killed_controller {
                    " (also the active controller)"
                } else {
                    ""
                },
                new = t.new_leader,
                elected = ms(t.elected_ms),
                failover = t.failover_ms,
                failed = t.failed_attempts,
                rejoin = ms(t.rejoin_ms),
            )?;
        }
        write!(
            f,
            "  kill -> acks=all write acked by the new leader: {}\n    leader only: {}\n    \
             leader and active controller: {}\n  kill -> new leader in metadata: {}\n  restart \
             -> back in the ISR: {}\n  writes: {} acked, {} failed",
            self.failover_ms,
            self.failover_ms_leader_only,
            self.failover_ms_leader_and_controller,
            self.elected_ms,
            self.rejoin_ms,
            self.writes_acked,
            self.writes_failed
        )?;
        if self.timed_out {
            write!(f, "\n  (TIMED OUT)")?;
        }
        if let Some(err) = &self.first_error {
            write!(f, "\n  error: {err}")?;
        }
        Ok(())
    }
}

/// Runs the failover benchmark. Errors only when the cluster cannot be started; a failover or
/// rejoin that takes too long ends the trials early, with what was measured so far and the
/// reason in the report.
pub async fn run_failover(args: &FailoverArgs) -> anyhow::Result<FailoverReport> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let exe = std::env::current_exe().context("finding this executable to run the nodes")?;
    let mut cluster = LocalCluster::plan(exe, args.data_dir.clone())?;
    cluster.start_all().await?;
    let mut report = FailoverReport::new(args);
    let mut prober = Prober::new(&args.topic, cluster.addrs());
    let outcome = async {
        create_topic(args, &cluster.bootstrap(), &mut prober, deadline).await?;
        run_trials(args, &mut cluster, &mut prober, &mut report, deadline).await
    }
    .await;
    (report.writes_acked, report.writes_failed) = (prober.acked, prober.failed);
    if let Err(err) = outcome {
        report.timed_out = Instant::now() >= deadline;
        cluster.keep_dir();
        report.first_error = Some(format!(
            "{err:#} (node data and logs kept in {})",
            cluster.dir.display()
        ));
    }
    cluster.stop_all();
    report.summarise();
    Ok(report)
}

/// Waits until every node is registered with a known controller, then creates the topic
/// (retried: the controller may still be settling).
async fn create_topic(
    args: &FailoverArgs,
    bootstrap: &str,
    prober: &mut Prober,
    deadline: Instant,
) -> anyhow::Result<()> {
    let until = deadline.min(Instant::now() + SETUP_TIMEOUT);
    while prober.registered_brokers().await < Some(NODES) {
        if Instant::now() >= until {
            bail!(
                "the nodes did not all register within {SETUP_TIMEOUT:?}; last problem: {}",
                prober.last_problem
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let configs = [("min.insync.replicas", args.min_insync_replicas.to_string())];
    loop {
        let created = ensure_replicated_topic(
            bootstrap,
            &[],
            &args.topic,
            1,
            REPLICATION_FACTOR,
            &configs,
            until,
        )
        .await;
        match created {
            Ok(()) => return Ok(()),
            Err(err) if Instant::now() >= until => return Err(err),
            Err(err) => {
                tracing::info!("{err:#}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Waits for a writable partition with a full ISR, then kills, measures and restarts per trial.
async fn run_trials(
    args: &FailoverArgs,
    cluster: &mut LocalCluster,
    prober: &mut Prober,
    report: &mut FailoverReport,
    deadline: Instant,
) -> anyhow::Result<()> {
    let interval = Duration::from_millis(args.interval_ms);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let setup_until = deadline.min(Instant::now() + SETUP_TIMEOUT);
    let mut last_ok: Option<PartitionView> = None;
    while last_ok.is_none() {
        if Instant::now() >= setup_until {
            bail!("the new topic had no writable leader with a full ISR within {SETUP_TIMEOUT:?}");
        }
        ticker.tick().await;
        last_ok = prober.write_if_isr_full(REPLICATION_FACTOR).await;
    }
    for trial in 0..args.trials {
        // 1. Steady writes with a full ISR.
        let settle_until = Instant::now() + Duration::from_millis(args.settle_ms);
        let before = loop {
            ticker.tick().await;
            if Instant::now() >= deadline {
                bail!("deadline passed before trial {}", trial + 1);
            }
            match prober.write_if_isr_full(REPLICATION_FACTOR).await {
                Some(view) if Instant::now() >= settle_until => break view,
                _ => {}
            }
        };
        let leader = before.leader;
        // 2. Kill the leader; write to whoever is named leader next.
        let killed_at = cluster.kill9(leader)?;
        let failover_until = deadline.min(killed_at + Duration::from_secs(args.failover_timeout_secs));
        let mut elected = None;
        let mut failed_attempts = 0;
        let (new_leader, acked_at) = loop {
            ticker.tick().await;
            if Instant::now() >= failover_until {
                bail!(
                    "trial {}: no acks=all write acknowledged within {:?} of killing leader {leader}; \
                     last problem: {}",
                    trial + 1,
                    failover_until.saturating_duration_since(killed_at),
                    prober.last_problem
                );
            }
            match prober.leader(Some(leader)).await {
                Some(view) if view.leader >= 0 && view.leader != leader => {
                    elected.get_or_insert_with(|| killed_at.elapsed());
                    if prober.produce(view.leader).await {
                        break (view.leader, Instant::now());
                    }
                }
                _ => {}
            }
            failed_attempts += 1;
        };
        let failover = acked_at.saturating_duration_since(killed_at);
        tracing::info!(
            trial,
            leader,
            new_leader,
            ?failover,
            ?elected,
            "failover measured"
        );
        report.trials.push(FailoverTrial {
            killed: leader,
            killed_controller: before.controller == leader,
            new_leader,
            elected_ms: elected.map(ms),
            failover_ms: ms(failover),
            failed_attempts,
            rejoin_ms: None,
        });
        // 3. Restart the killed node; keep writing until it is in the ISR again.
        let restarted_at = Instant::now();
        cluster.start(leader).await?;
        let rejoin_until = deadline.min(restarted_at + Duration::from_secs(args.rejoin_timeout_secs));
        let mut writes: u32 = 0;
        loop {
            ticker.tick().await;
            if Instant::now() >= rejoin_until {
                bail!(
                    "trial {}: node {leader} not back in the ISR within {:?} of its restart; last \
                     partition state: {}",
                    trial + 1,
                    rejoin_until.saturating_duration_since(restarted_at),
                    prober.last_view
                );
            }
            writes = writes.wrapping_add(1);
            if writes % ISR_CHECK_EVERY == 0 {
                if let Some(view) = prober.leader(None).await {
                    if view.isr.contains(&leader) {
                        break;
                    }
                }
            }
            prober.write_to_leader().await;
        }
        let rejoin = restarted_at.elapsed();
        if let Some(t) = report.trials.last_mut() {
            t.rejoin_ms = Some(ms(rejoin));
        }
        tracing::info!(trial, node = leader, ?rejoin, "back in the ISR");
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One node of [`LocalCluster`].
#[derive(Debug)]
struct LocalNode {
    id: i32,
    client: SocketAddr,
    controller: SocketAddr,
    child: Option<Child>,
}

/// Three `<exe> broker` processes on free local ports, restartable on the same ports and data.
/// Dropping it SIGKILLs every node still running (and removes a temporary data directory).
#[derive(Debug)]
struct LocalCluster {
    exe: PathBuf,
    dir: PathBuf,
    remove_dir: bool,
    nodes: Vec<LocalNode>,
}

impl LocalCluster {
    /// Picks the ports (free a moment ago, held together then released) and the directory.
    fn plan(exe: PathBuf, data_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let held: Vec<TcpListener> = (0..2 * NODES)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()
            .context("finding free local ports")?;
        let addrs: Vec<SocketAddr> = held
            .iter()
            .map(TcpListener::local_addr)
            .collect::<Result<_, _>>()
            .context("finding free local ports")?;
        drop(held);
        let (client_ports, controller_ports) = addrs.split_at(addrs.len() / 2);
        let nodes = (1..=NODES)
            .zip(client_ports.iter().zip(controller_ports))
            .map(|(id, (client, controller))| LocalNode {
                id,
                client: *client,
                controller: *controller,
                child: None,
            })
            .collect();
        let (dir, remove_dir) = match data_dir {
            Some(dir) => (dir, false),
            None => {
                let unix_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                let name = format!("sapper-bench-failover-{}-{unix_ms}", std::process::id());
                (std::env::temp_dir().join(name), true)
            }
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            exe,
            dir,
            remove_dir,
            nodes,
        })
    }

    /// Keeps the data directory after the run (to read the logs of a failed run).
    fn keep_dir(&mut self) {
        self.remove_dir = false;
    }

    fn voters(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{}@{}", n.id, n.controller))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.client.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn addrs(&self) -> BTreeMap<i32, SocketAddr> {
        self.nodes.iter().map(|n| (n.id, n.client)).collect()
    }

    /// Starts every node and waits until each listens (they elect the quorum together).
    async fn start_all(&mut self) -> anyhow::Result<()> {
        let ids: Vec<i32> = self.nodes.iter().map(|n| n.id).collect();
        let mut ready = Vec::with_capacity(ids.len());
        for &id in &ids {
            ready.push((id, self.spawn(id)?));
        }
        let until = tokio::time::Instant::now() + START_TIMEOUT;
        for (id, listening) in ready {
            self.wait_listening(id, listening, until).await?;
        }
        Ok(())
    }

    /// Starts node `id` (again) and waits until it listens.
    async fn start(&mut self, id: i32) -> anyhow::Result<()> {
        let listening = self.spawn(id)?;
        self.wait_listening(id, listening, tokio::time::Instant::now() + START_TIMEOUT)
            .await
    }

    fn node_mut(&mut self, id: i32) -> anyhow::Result<&mut LocalNode> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .ok_or_else(|| anyhow!("no node {id} in the benchmark's cluster"))
    }

    fn log_path(&self, id: i32) -> PathBuf {
        self.dir.join(format!("node-{id}.log"))
    }

    /// Spawns node `id`; the receiver fires once it prints its listening line (and is dropped
    /// unfired if it exits first).
    fn spawn(&mut self, id: i32) -> anyhow::Result<oneshot::Receiver<()>> {
        let voters = self.voters();
        let (exe, data_dir, log_path) = (
            self.exe.clone(),
            self.dir.join(format!("node-{id}")),
            self.log_path(id),
        );
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let node = self.node_mut(id)?;
        if node.child.is_some() {
            bail!("node {id} is already running");
        }
        let mut cmd = Command::new(&exe);
        cmd.arg("broker")
            .args(["--node-id", &id.to_string()])
            .args(["--roles", "broker,controller"])
            .args(["--listen", &node.client.to_string()])
            .args(["--controller-listen", &node.controller.to_string()])
            .args(["--voters", &voters])
            .arg("--data-dir")
            .arg(&data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .env("NO_COLOR", "1");
        // The flags above configure the node, whatever SAPPER_* this process was given.
        for (key, _) in std::env::vars_os() {
            if key
                .to_str()
                .is_some_and(|k| k.starts_with("SAPPER_") && k != "SAPPER_LOG")
            {
                cmd.env_remove(key);
            }
        }
        if std::env::var_os("SAPPER_LOG").is_none() {
            cmd.env("SAPPER_LOG", "info,openraft=warn");
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting node {id} ({})", exe.display()))?;
        let stdout = child.stdout.take();
        node.child = Some(child);
        let (tx, rx) = oneshot::channel();
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                // Drains stdout until the node exits, so it never blocks on a full pipe.
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.starts_with(LISTEN_PREFIX) {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(());
                        }
                    }
                }
            });
        }
        Ok(rx)
    }

    async fn wait_listening(
        &mut self,
        id: i32,
        listening: oneshot::Receiver<()>,
        until: tokio::time::Instant,
    ) -> anyhow::Result<()> {
        let log = self.log_path(id);
        match tokio::time::timeout_at(until, listening).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => {
                let status = self
                    .node_mut(id)?
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                bail!(
                    "node {id} exited ({status:?}) before listening; see {}",
                    log.display()
                )
            }
            Err(_) => bail!(
                "node {id} did not listen within {START_TIMEOUT:?}; see {}",
                log.display()
            ),
        }
    }

    /// SIGKILLs node `id` and reaps it; answers the instant just before the signal.
    fn kill9(&mut self, id: i32) -> anyhow::Result<Instant> {
        let node = self.node_mut(id)?;
        let mut child = node
            .child
            .take()
            .ok_or_else(|| anyhow!("node {id} is not running"))?;
        let at = Instant::now();
        child.kill().with_context(|| format!("killing node {id}"))?;
        child.wait().with_context(|| format!("reaping node {id}"))?;
        Ok(at)
    }

    /// SIGKILLs and reaps every running node.
    fn stop_all(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop_all();
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The benchmark partition as one node's Metadata describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PartitionView {
    /// Node that answered.
    from: i32,
    /// The active controller it names.
    controller: i32,
    leader: i32,
    leader_epoch: i32,
    isr: Vec<i32>,
}

impl fmt::Display for PartitionView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "leader {} (epoch {}), ISR {:?}, controller {}, according to node {}",
            self.leader, self.leader_epoch, self.isr, self.controller, self.from
        )
    }
}

/// One connection with the versions picked for it.
struct Connection {
    client: Client,
    produce_version: i16,
    metadata_version: i16,
}

/// Sapper's wire client, one connection per node, writing single-record acks=all batches to
/// the benchmark partition and reading its state from Metadata.
struct Prober {
    topic: TopicName,
    addrs: BTreeMap<i32, SocketAddr>,
    connections: BTreeMap<i32, Connection>,
    batch: Bytes,
    acked: u64,
    failed: u64,
    last_problem: String,
    last_view: PartitionView,
}

impl Prober {
    fn new(topic: &str, addrs: BTreeMap<i32, SocketAddr>) -> Self {
        Self {
            topic: TopicName(StrBytes::from_string(topic.to_owned())),
            addrs,
            connections: BTreeMap::new(),
            batch: one_record_batch(&payload(RECORD_SIZE)),
            acked: 0,
            failed: 0,
            last_problem: "none".to_owned(),
            last_view: PartitionView::default(),
        }
    }

    /// The open connection to `id`, opened (with a version handshake) if needed.
    async fn connection(&mut self, id: i32) -> anyhow::Result<&mut Connection> {
        if !self.connections.contains_key(&id) {
            let addr = *self
                .addrs
                .get(&id)
                .ok_or_else(|| anyhow!("no address for node {id}"))?;
            let (client, versions) = tokio::time::timeout(REQUEST_TIMEOUT, Client::bootstrap(addr))
                .await
                .map_err(|_| anyhow!("connecting to node {id} timed out"))?
                .with_context(|| format!("connecting to node {id}"))?;
            let connection = Connection {
                client,
                produce_version: versions.pick::<ProduceRequest>(PRODUCE_VERSIONS.0, PRODUCE_VERSIONS.1)?,
                metadata_version: versions
                    .pick::<MetadataRequest>(METADATA_VERSIONS.0, METADATA_VERSIONS.1)?,
            };
            self.connections.insert(id, connection);
        }
        self.connections
            .get_mut(&id)
            .ok_or_else(|| anyhow!("connection to node {id} vanished"))
    }

    /// The partition as the first node (other than `skip`) that answers describes it.
    async fn leader(&mut self, skip: Option<i32>) -> Option<PartitionView> {
        let ids: Vec<i32> = self
            .addrs
            .keys()
            .copied()
            .filter(|id| Some(*id) != skip)
            .collect();
        for id in ids {
            match self.metadata_from(id).await {
                Ok(view) => {
                    self.last_view = view.clone();
                    return Some(view);
                }
                Err(err) => {
                    self.connections.remove(&id);
                    self.last_problem = format!("metadata from node {id}: {err:#}");
                }
            }
        }
        None
    }

    async fn metadata_from(&mut self, id: i32) -> anyhow::Result<PartitionView> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(self.topic.clone()))
            ]))
            .with_allow_auto_topic_creation(false);
        let topic = self.topic.clone();
        let connection = self.connection(id).await?;
        let response = tokio::time::timeout(
            REQUEST_TIMEOUT,
            connection.client.send(&request, connection.metadata_version),
        )
        .await
        .map_err(|_| anyhow!("timed out"))??;
        let partition = response
            .topics
            .iter()
            .filter(|t| t.name.as_ref() == Some(&topic) && t.error_code == 0)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == PARTITION)
            .ok_or_else(|| anyhow!("partition {PARTITION} not in node {id}'s metadata"))?;
        Ok(PartitionView {
            from: id,
            controller: response.controller_id.0,
            leader: partition.leader_id.0,
            leader_epoch: partition.leader_epoch,
            isr: partition.isr_nodes.iter().map(|b| b.0).collect(),
        })
    }

    /// Brokers listed by the first node that answers a topic-less Metadata request naming a
    /// controller; `None` while none does.
    async fn registered_brokers(&mut self) -> Option<i32> {
        let request = MetadataRequest::default()
            .with_topics(Some(Vec::new()))
            .with_allow_auto_topic_creation(false);
        let ids: Vec<i32> = self.addrs.keys().copied().collect();
        for id in ids {
            let answered = match self.connection(id).await {
                Ok(connection) => tokio::time::timeout(
                    REQUEST_TIMEOUT,
                    connection.client.send(&request, connection.metadata_version),
                )
                .await
                .map_err(|_| anyhow!("timed out"))
                .and_then(|r| r.map_err(anyhow::Error::from)),
                Err(err) => Err(err),
            };
            match answered {
                Ok(response) if response.controller_id.0 >= 0 => {
                    return i32::try_from(response.brokers.len()).ok();
                }
                Ok(_) => self.last_problem = format!("node {id} knows no controller yet"),
                Err(err) => {
                    self.connections.remove(&id);
                    self.last_problem = format!("metadata from node {id}: {err:#}");
                }
            }
        }
        None
    }

    /// One acks=all write to node `id`; true when acknowledged.
    async fn produce(&mut self, id: i32) -> bool {
        match self.produce_to(id).await {
            Ok(()) => {
                self.acked += 1;
                true
            }
            Err(err) => {
                self.failed += 1;
                self.last_problem = format!("write to node {id}: {err:#}");
                false
            }
        }
    }

    async fn produce_to(&mut self, id: i32) -> anyhow::Result<()> {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(i32::try_from(REQUEST_TIMEOUT.as_millis()).unwrap_or(i32::MAX))
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(self.topic.clone())
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(PARTITION)
                    .with_records(Some(self.batch.clone()))])]);
        let connection = self.connection(id).await?;
        let sent = tokio::time::timeout(
            REQUEST_TIMEOUT + Duration::from_secs(1),
            connection.client.send(&request, connection.produce_version),
        )
        .await;
        let response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => {
                self.connections.remove(&id);
                return Err(err.into());
            }
            Err(_) => {
                self.connections.remove(&id);
                bail!("no answer within {REQUEST_TIMEOUT:?}");
            }
        };
        let code = response
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == PARTITION)
            .map(|p| p.error_code)
            .ok_or_else(|| anyhow!("the response has no partition {PARTITION}"))?;
        match ResponseError::try_from_code(code) {
            None => Ok(()),
            Some(err) => bail!("{err:?}"),
        }
    }

    /// Writes to the current leader if Metadata lists a full ISR (`replicas` members); answers
    /// the partition state when the write was acknowledged.
    async fn write_if_isr_full(&mut self, replicas: i32) -> Option<PartitionView> {
        let view = self.leader(None).await?;
        if view.leader < 0 || i32::try_from(view.isr.len()).ok() != Some(replicas) {
            return None;
        }
        self.produce(view.leader).await.then_some(view)
    }

    /// One write to whichever node Metadata names leader.
    async fn write_to_leader(&mut self) {
        if let Some(view) = self.leader(None).await {
            if view.leader >= 0 {
                self.produce(view.leader).await;
            }
        }
    }
}

/// A v2 record batch holding one keyless record with `value`.
fn one_record_batch(value: &[u8]) -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 0,
        key: None,
        value: Some(Bytes::copy_from_slice(value)),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    if let Err(err) = RecordBatchEncoder::encode(&mut buf, [&record], &options) {
        // Cannot happen for one small uncompressed record; an empty batch makes every write
        // fail visibly rather than the benchmark panic.
        tracing::error!("encoding the benchmark record: {err}");
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use sapper_wire::kafka_protocol::records::RecordBatchDecoder;

    /// An address nothing listens on (a port free a moment ago).
    fn unused_port_addr() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        assert_eq!(Percentiles::of([]), Percentiles::default());
        assert_eq!(Percentiles::default().to_string(), "no trials");
        let one = Percentiles::of([7.0]);
        assert_eq!(
            (one.count, one.p50, one.p90, one.max),
            (1, Some(7.0), Some(7.0), Some(7.0))
        );
        // 1..=20 shuffled: p50 is the 10th value, p90 the 18th.
        let values = (1..=20).rev().map(f64::from);
        let s = Percentiles::of(values);
        assert_eq!(
            (s.count, s.p50, s.p90, s.max),
            (20, Some(10.0), Some(18.0), Some(20.0))
        );
        let s = Percentiles::of([400.0, 100.0, 300.0, 200.0]);
        assert_eq!((s.p50, s.p90, s.max), (Some(200.0), Some(400.0), Some(400.0)));
        assert_eq!(s.to_string(), "p50 200 ms, p90 400 ms, max 400 ms (n=4)");
    }

    fn trial(killed: i32, failover_ms: f64, rejoin_ms: Option<f64>) -> FailoverTrial {
        FailoverTrial {
            killed,
            killed_controller: killed == 1,
            new_leader: killed % 3 + 1,
            elected_ms: Some(failover_ms - 10.0),
            failover_ms,
            failed_attempts: 3,
            rejoin_ms,
        }
    }

    fn args() -> FailoverArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: FailoverArgs,
        }
        Cli::try_parse_from(["failover"]).unwrap().args
    }

    #[test]
    fn the_report_summarises_its_trials_and_a_missing_rejoin() {
        let mut report = FailoverReport::new(&args());
        report.trials = vec![
            trial(1, 300.0, Some(900.0)),
            trial(2, 100.0, Some(700.0)),
            trial(3, 200.0, None),
        ];
        report.summarise();
        assert_eq!(report.failover_ms.count, 3);
        assert_eq!(
            (report.failover_ms.p50, report.failover_ms.max),
            (Some(200.0), Some(300.0))
        );
        assert_eq!(
            (report.elected_ms.p50, report.elected_ms.max),
            (Some(190.0), Some(290.0))
        );
        assert_eq!((report.rejoin_ms.count, report.rejoin_ms.max), (2, Some(900.0)));
        let text = report.to_string();
        assert!(
            text.contains("trial 3: kill -9 leader 3: node 1 named leader after 190 ms"),
            "{text}"
        );
        assert!(
            text.contains("leader 1 (also the active controller): node 2"),
            "{text}"
        );
        assert_eq!(report.failover_ms_leader_and_controller.max, Some(300.0));
        assert_eq!(report.failover_ms_leader_only.count, 2);
        assert!(text.contains("back in the ISR - ms after"), "{text}");
        assert!(
            text.contains("write acked by the new leader: p50 200 ms, p90 300 ms, max 300 ms (n=3)"),
            "{text}"
        );
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["failover_ms"]["p90"], 300.0);
        assert_eq!(v["trials"][1]["killed"], 2);
        assert!(v.get("first_error").is_none());
    }

    #[test]
    fn defaults_are_twenty_trials_every_ten_ms_with_min_isr_two() {
        let a = args();
        assert_eq!((a.trials, a.interval_ms, a.min_insync_replicas), (20, 10, 2));
        assert!(a.data_dir.is_none());
    }

    #[test]
    fn the_benchmark_batch_decodes_to_one_record_of_the_payload() {
        let mut batch = one_record_batch(&payload(RECORD_SIZE));
        let set = RecordBatchDecoder::decode(&mut batch).unwrap();
        assert_eq!(set.records.len(), 1);
        assert_eq!(set.records[0].value.as_ref().unwrap().len(), RECORD_SIZE);
    }

    #[test]
    fn a_planned_cluster_has_distinct_ports_and_removes_its_temporary_dir() {
        let cluster = LocalCluster::plan(PathBuf::from("/bin/false"), None).unwrap();
        let dir = cluster.dir.clone();
        assert!(dir.is_dir());
        let mut ports: Vec<u16> = cluster
            .nodes
            .iter()
            .flat_map(|n| [n.client.port(), n.controller.port()])
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 6);
        assert_eq!(cluster.voters().split(',').count(), 3);
        assert!(cluster.voters().starts_with("1@127.0.0.1:"));
        drop(cluster);
        assert!(!dir.exists());
    }

    /// A node that never prints its listening line (here: exits at once) is an error naming it,
    /// not a hang.
    #[tokio::test]
    async fn a_node_that_exits_before_listening_is_reported() {
        let mut cluster = LocalCluster::plan(PathBuf::from("/bin/false"), None).unwrap();
        let err = cluster.start(2).await.unwrap_err().to_string();
        assert!(err.contains("node 2 exited"), "{err}");
        assert!(cluster.kill9(1).is_err(), "node 1 was never started");
    }

    /// Nothing listens: every probe fails, and says where.
    #[tokio::test]
    async fn probes_of_a_dead_node_fail_and_are_counted() {
        let mut prober = Prober::new("t", BTreeMap::from([(1, unused_port_addr())]));
        assert!(prober.leader(None).await.is_none());
        assert!(
            prober.last_problem.contains("metadata from node 1"),
            "{}",
            prober.last_problem
        );
        assert!(!prober.produce(1).await);
        assert_eq!((prober.acked, prober.failed), (0, 1));
        assert!(prober.write_if_isr_full(3).await.is_none());
    }
}
