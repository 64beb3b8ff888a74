//! A cluster of `sapper broker` processes for the replication tests ([`TestCluster`]): N nodes
//! with both roles (broker and controller voter) on free 127.0.0.1 ports, one data directory
//! per node in a temporary directory, stderr captured to one file per start of each node.
//!
//! Faults are process-level: `kill -9` ([`TestCluster::kill9`]), a pause with SIGSTOP /
//! SIGCONT, SIGTERM (controlled shutdown), and restarts on the same ports and data. The cluster
//! is observed through each node's Kafka Metadata (sapper_wire's [`Client`]): live brokers, the
//! controller id, and each partition's leader, leader epoch, replicas and ISR.
//!
//! Waits return `Err` with the last observed views instead of panicking, so a test can record a
//! finding and still run its data checks. Dropping the cluster kills every node (and prints the
//! stderr tails if the test is failing).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sapper_wire::client::Client;
use sapper_wire::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use sapper_wire::kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use sapper_wire::kafka_protocol::protocol::StrBytes;

use super::{wait_with_timeout, START_TIMEOUT, STOP_TIMEOUT};

/// Bound on one Metadata round trip to one node.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// One partition as a broker's Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub error: i16,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
}

impl PartitionState {
    /// Whether every replica is in the ISR and the partition has a leader.
    pub fn fully_in_sync(&self) -> bool {
        let replicas: BTreeSet<i32> = self.replicas.iter().copied().collect();
        let isr: BTreeSet<i32> = self.isr.iter().copied().collect();
        self.error == 0 && self.leader > 0 && !replicas.is_empty() && replicas == isr
    }
}

/// What one node's Metadata says: live brokers, the controller, the topics' partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// The node that answered.
    pub from: i32,
    pub brokers: BTreeSet<i32>,
    pub controller: i32,
    /// The partitions of the topic asked for (empty when all topics were asked for).
    pub partitions: BTreeMap<i32, PartitionState>,
    /// Every topic in the answer (internal ones too when all topics were asked for).
    pub topics: BTreeMap<String, BTreeMap<i32, PartitionState>>,
}

impl ClusterView {
    /// Partition indexes led by `broker`.
    pub fn led_by(&self, broker: i32) -> Vec<i32> {
        self.partitions
            .iter()
            .filter(|(_, p)| p.leader == broker)
            .map(|(i, _)| *i)
            .collect()
    }

    /// `partition:leader e epoch [isr]` for each partition of the topic asked for, on one line.
    pub fn summary(&self) -> String {
        summarize(&self.partitions)
    }

    /// [`ClusterView::summary`] of `topic` among all topics.
    pub fn topic_summary(&self, topic: &str) -> String {
        self.topics.get(topic).map(summarize).unwrap_or_default()
    }

    /// `topic-partition:leader e epoch [isr]` for each partition of any topic whose ISR is
    /// not all its replicas (or that has no leader).
    pub fn out_of_sync(&self) -> Vec<String> {
        self.topics
            .iter()
            .flat_map(|(name, partitions)| {
                partitions
                    .iter()
                    .filter(|(_, p)| !p.fully_in_sync())
                    .map(move |(i, p)| format!("{name}-{i}:{}e{}{:?}", p.leader, p.leader_epoch, p.isr))
            })
            .collect()
    }
}

fn summarize(partitions: &BTreeMap<i32, PartitionState>) -> String {
    partitions
        .iter()
        .map(|(i, p)| format!("{i}:{}e{}{:?}", p.leader, p.leader_epoch, p.isr))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One node: restartable on its ports and data directory.
pub struct ClusterNode {
    pub id: i32,
    /// The Kafka (client and replication) listener.
    pub client: SocketAddr,
    /// The controller (Raft and broker-to-controller) listener.
    pub controller: SocketAddr,
    voters: String,
    data_dir: PathBuf,
    logs: PathBuf,
    extra_args: Vec<String>,
    starts: u32,
    child: Option<Child>,
    paused: bool,
}

impl ClusterNode {
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "node {} is already running", self.id);
        self.starts += 1;
        self.paused = false;
        let stderr = File::create(self.stderr_path()).expect("creating a node's stderr file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sapper"));
        cmd.arg("broker")
            .args(["--node-id", &self.id.to_string()])
            .args(["--listen", &self.client.to_string()])
            .args(["--controller-listen", &self.controller.to_string()])
            .args(["--voters", &self.voters])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .env("RUST_BACKTRACE", "1")
            .env("NO_COLOR", "1")
            .env("SAPPER_LOG", "info,openraft=warn");
        // Only the flags above configure the node, whatever the caller's environment says.
        for (key, _) in std::env::vars_os() {
            if key
                .to_str()
                .is_some_and(|k| k.starts_with("SAPPER_") && k != "SAPPER_LOG")
            {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd.spawn().expect("spawning target/release/sapper");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // Reads stdout for the whole life of the process so it never blocks on a full pipe.
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
            panic!(
                "node {} did not start listening within {START_TIMEOUT:?}\n{}",
                self.id,
                self.stderr_tail()
            );
        }
    }

    /// Whether the process exists (running or paused).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("polling a child process").is_none(),
            None => false,
        }
    }

    /// Running and not paused: expected to answer requests.
    pub fn is_up(&mut self) -> bool {
        !self.paused && self.is_running()
    }

    fn pid(&self) -> String {
        self.child
            .as_ref()
            .unwrap_or_else(|| panic!("node {} is not running", self.id))
            .id()
            .to_string()
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} {pid} (node {}) failed", self.id);
    }

    fn assert_running(&mut self) {
        if !self.is_running() {
            panic!(
                "node {} is not running (died unexpectedly?)\n{}",
                self.id,
                self.stderr_tail()
            );
        }
    }

    fn kill_quietly(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    fn stderr_path(&self) -> PathBuf {
        self.logs
            .join(format!("node{}-start{}.stderr", self.id, self.starts))
    }

    /// The last few kilobytes of the current (or last) process's stderr.
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
            "--- node {} stderr ({}) ---\n{}",
            self.id,
            self.stderr_path().display(),
            text.get(start..).unwrap_or_default()
        )
    }
}

/// N nodes with both roles, started together; see the module documentation.
pub struct TestCluster {
    nodes: Vec<ClusterNode>,
    runtime: tokio::runtime::Runtime,
    /// Data directories and stderr files; removed on drop unless `SAPPER_KEEP_TEST_DIRS` is set.
    dir: Option<tempfile::TempDir>,
}

impl TestCluster {
    /// Starts `count` nodes (ids 1..=count) with `extra_args` each and waits until every node's
    /// Metadata lists all of them.
    pub fn start(count: i32, extra_args: &[&str]) -> TestCluster {
        let n = usize::try_from(count).expect("node count");
        let ports = free_ports(2 * n);
        let (client_ports, controller_ports) = ports.split_at(n);
        let voters = (1..=count)
            .zip(controller_ports)
            .map(|(id, port)| format!("{id}@127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let dir = tempfile::Builder::new()
            .prefix("sapper-cluster")
            .tempdir()
            .expect("creating the cluster's temporary directory");
        let nodes = (1..=count)
            .zip(client_ports.iter().zip(controller_ports))
            .map(|(id, (client, controller))| ClusterNode {
                id,
                client: SocketAddr::from(([127, 0, 0, 1], *client)),
                controller: SocketAddr::from(([127, 0, 0, 1], *controller)),
                voters: voters.clone(),
                data_dir: dir.path().join(format!("node-{id}")),
                logs: dir.path().to_path_buf(),
                extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
                starts: 0,
                child: None,
                paused: false,
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a tokio runtime");
        let mut cluster = TestCluster {
            nodes,
            runtime,
            dir: Some(dir),
        };
        for node in &mut cluster.nodes {
            node.spawn();
        }
        let all = cluster.ids();
        cluster
            .wait_for("every broker registered", Duration::from_secs(30), None, |v| {
                v.brokers == all
            })
            .unwrap_or_else(|e| panic!("{e}"));
        cluster
    }

    /// Every node id.
    pub fn ids(&self) -> BTreeSet<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn node(&self, id: i32) -> &ClusterNode {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: i32) -> &mut ClusterNode {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// `host:port,...` of every node, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.client.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILL, as a crash, and waits for the process to be gone.
    pub fn kill9(&mut self, id: i32) {
        let node = self.node_mut(id);
        node.assert_running();
        node.kill_quietly();
    }

    /// Pauses the node (SIGSTOP): its sockets stay open but nothing answers.
    pub fn sigstop(&mut self, id: i32) {
        let node = self.node_mut(id);
        node.assert_running();
        node.signal("-STOP");
        node.paused = true;
    }

    /// Resumes a node paused by [`TestCluster::sigstop`].
    pub fn sigcont(&mut self, id: i32) {
        let node = self.node_mut(id);
        node.assert_running();
        node.signal("-CONT");
        node.paused = false;
    }

    /// SIGTERM (controlled shutdown), then waits for a clean exit.
    pub fn sigterm_and_wait(&mut self, id: i32) {
        let node = self.node_mut(id);
        node.assert_running();
        node.signal("-TERM");
        let mut child = node.child.take().expect("checked running");
        match wait_with_timeout(&mut child, STOP_TIMEOUT) {
            Some(status) => assert!(
                status.success(),
                "node {id} exited with {status} after SIGTERM\n{}",
                node.stderr_tail()
            ),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "node {id} did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    node.stderr_tail()
                );
            }
        }
    }

    /// Starts the node again on its ports and data (SIGTERM first if it is still running).
    pub fn restart(&mut self, id: i32) {
        if self.node_mut(id).is_running() {
            if self.node(id).paused {
                self.sigcont(id);
            }
            self.sigterm_and_wait(id);
        }
        self.node_mut(id).spawn();
    }

    /// Fails the test if a node that should run has exited on its own.
    pub fn assert_all_running(&mut self) {
        for node in &mut self.nodes {
            if node.child.is_some() {
                node.assert_running();
            }
        }
    }

    /// Ids of the nodes that run and are not paused.
    pub fn up_ids(&mut self) -> Vec<i32> {
        self.nodes
            .iter_mut()
            .filter_map(|n| n.is_up().then_some(n.id))
            .collect()
    }

    /// Node `id`'s Metadata for `topic`, or for all topics (`None`); `None` if it did not
    /// answer within the bound.
    pub fn metadata_from(&self, id: i32, topic: Option<&str>) -> Option<ClusterView> {
        let addr = self.node(id).client;
        let request = MetadataRequest::default()
            .with_topics(topic.map(|name| {
                vec![MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))]
            }))
            .with_allow_auto_topic_creation(false);
        let response: MetadataResponse = self.runtime.block_on(async {
            tokio::time::timeout(METADATA_TIMEOUT, async {
                let mut client = Client::connect(addr).await.ok()?;
                client.send(&request, 9).await.ok()
            })
            .await
            .ok()
            .flatten()
        })?;
        let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
        let topics: BTreeMap<String, BTreeMap<i32, PartitionState>> = response
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .map(|t| {
                let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        (
                            p.partition_index,
                            PartitionState {
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
                (name, partitions)
            })
            .collect();
        Some(ClusterView {
            from: id,
            brokers: response.brokers.iter().map(|b| b.node_id.0).collect(),
            controller: response.controller_id.0,
            partitions: topic
                .and_then(|name| topics.get(name))
                .cloned()
                .unwrap_or_default(),
            topics,
        })
    }

    /// The first answer among the up nodes.
    pub fn metadata(&mut self, topic: Option<&str>) -> Option<ClusterView> {
        self.up_ids()
            .into_iter()
            .find_map(|id| self.metadata_from(id, topic))
    }

    /// The active controller: the controller id most up nodes report (each reports the Raft
    /// leader when it knows one that is a live broker).
    pub fn active_controller(&mut self) -> Option<i32> {
        let mut votes: BTreeMap<i32, usize> = BTreeMap::new();
        for id in self.up_ids() {
            if let Some(view) = self.metadata_from(id, None) {
                *votes.entry(view.controller).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(_, count)| *count)
            .map(|(id, _)| id)
    }

    /// Polls the Metadata of every up node for `topic` (all topics: `None`) until `check`
    /// holds on each view and they agree on the partitions; answers the view and how long it
    /// took, or a description of the last views after `bound`.
    pub fn wait_for(
        &mut self,
        what: &str,
        bound: Duration,
        topic: Option<&str>,
        check: impl Fn(&ClusterView) -> bool,
    ) -> Result<(ClusterView, Duration), String> {
        let started = Instant::now();
        let deadline = started + bound;
        loop {
            let up = self.up_ids();
            let views: Vec<Option<ClusterView>> =
                up.iter().map(|id| self.metadata_from(*id, topic)).collect();
            let all_ok = !views.is_empty() && views.iter().all(|v| v.as_ref().is_some_and(&check));
            let agree = views.windows(2).all(|w| match w {
                [a, b] => a.as_ref().map(|v| &v.topics) == b.as_ref().map(|v| &v.topics),
                _ => true,
            });
            if all_ok && agree {
                if let Some(Some(view)) = views.first().cloned() {
                    return Ok((view, started.elapsed()));
                }
            }
            if Instant::now() >= deadline {
                let described = views
                    .iter()
                    .zip(&up)
                    .map(|(v, id)| match v {
                        Some(v) => format!(
                            "  node {id}: brokers {:?} controller {} partitions [{}]; out of sync: {:?}",
                            v.brokers,
                            v.controller,
                            match topic {
                                Some(name) => v.topic_summary(name),
                                None => String::new(),
                            },
                            v.out_of_sync()
                        ),
                        None => format!("  node {id}: no answer"),
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(format!(
                    "{what}: not within {bound:?} (up nodes {up:?}); last views \
                     (partition:leader e epoch [isr]):\n{described}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every node is listed and `topic` has `partitions` partitions, each with a
    /// leader and all its replicas in the ISR.
    pub fn wait_topic_in_sync(
        &mut self,
        topic: &str,
        partitions: usize,
        bound: Duration,
    ) -> Result<(ClusterView, Duration), String> {
        let all = self.ids();
        self.wait_for(
            &format!("every broker listed and every replica of {topic} in the ISR"),
            bound,
            Some(topic),
            |v| {
                v.brokers == all
                    && v.partitions.len() == partitions
                    && v.partitions.values().all(PartitionState::fully_in_sync)
            },
        )
    }

    /// Waits until every node is listed and every partition of every topic (the internal
    /// `__consumer_offsets` and `__sapper_offset_history` included) has a leader and all its
    /// replicas in the ISR.
    pub fn wait_all_topics_in_sync(&mut self, bound: Duration) -> Result<(ClusterView, Duration), String> {
        let all = self.ids();
        self.wait_for(
            "every broker listed and every replica of every topic in the ISR",
            bound,
            None,
            |v| v.brokers == all && v.out_of_sync().is_empty(),
        )
    }

    /// The stderr tails of every node.
    pub fn stderr_tails(&self) -> String {
        self.nodes
            .iter()
            .map(ClusterNode::stderr_tail)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Where the data directories and stderr files are.
    pub fn dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().to_path_buf())
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill_quietly();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.stderr_tails());
        }
        if std::env::var_os("SAPPER_KEEP_TEST_DIRS").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("keeping the cluster's directory {}", dir.keep().display());
            }
        }
    }
}

/// `n` distinct ports that were free a moment ago (held together, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("a bound listener's address").port())
        .collect()
}
