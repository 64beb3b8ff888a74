//! The one harness for local cluster nodes. [`ClusterNode`] is one `sapper broker` process
//! (both roles, or controller only), restartable on its listeners and data directory, optionally
//! run through a command wrapper such as `ip netns exec NS`, its stderr captured to one file per
//! start; [`local_nodes`] makes N of them on free 127.0.0.1 ports; [`MetadataReader`] reads and
//! waits on their Metadata. [`TestCluster`] bundles N such nodes for the replication tests.
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
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use sapper_wire::client::Client;
use sapper_wire::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use sapper_wire::kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use sapper_wire::kafka_protocol::protocol::StrBytes;

use super::{file_tail, sapper_command, send_signal, start_and_wait, wait_with_timeout, STOP_TIMEOUT};

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
    pub cluster_id: Option<String>,
    pub brokers: BTreeSet<i32>,
    /// Each live broker's rack.
    pub racks: BTreeMap<i32, Option<String>>,
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

/// The stdout line a node with the broker role prints once it accepts clients.
const BROKER_READY: &str = super::LISTEN_PREFIX;
/// The stdout line a controller-only node prints once its controller listener is up.
const CONTROLLER_READY: &str = "sapper: controller listening on ";

/// One `sapper broker` node, restartable on its listeners and data directory. Dropping it kills
/// the process (and prints its stderr tail if the test is failing).
pub struct ClusterNode {
    pub id: i32,
    /// A name for messages and file names ("node2", "A1", ...).
    pub label: String,
    /// The Kafka (client and replication) listener; for a controller-only node, its controller
    /// listener.
    pub client: SocketAddr,
    /// The controller (Raft and broker-to-controller) listener: its entry in the voters.
    pub controller: SocketAddr,
    voters: String,
    pub data_dir: PathBuf,
    logs: PathBuf,
    /// Flags after the standard ones.
    extra_args: Vec<String>,
    /// The command the node runs through (`ip netns exec NS`); empty: run directly.
    wrapper: Vec<String>,
    /// Whether `--controller-listen` is passed (else the node takes its voters entry).
    controller_listen: bool,
    /// Broker and controller (else `--roles controller`, without a client listener).
    broker_role: bool,
    starts: u32,
    child: Option<Child>,
    paused: bool,
}

impl ClusterNode {
    /// A node with both roles (not started) listening on `client` and `controller`; its data
    /// directory is `dir/{label}-data` and each start's stderr `dir/{label}-start{n}.stderr`.
    pub fn new(
        label: &str,
        id: i32,
        client: SocketAddr,
        controller: SocketAddr,
        voters: &str,
        dir: &Path,
    ) -> ClusterNode {
        ClusterNode {
            id,
            label: label.to_owned(),
            client,
            controller,
            voters: voters.to_owned(),
            data_dir: dir.join(format!("{label}-data")),
            logs: dir.to_path_buf(),
            extra_args: Vec::new(),
            wrapper: Vec::new(),
            controller_listen: true,
            broker_role: true,
            starts: 0,
            child: None,
            paused: false,
        }
    }

    /// A controller-only node (`--roles controller`), e.g. one joining the voters later.
    pub fn controller_only(
        label: &str,
        id: i32,
        controller: SocketAddr,
        voters: &str,
        dir: &Path,
    ) -> ClusterNode {
        let mut node = ClusterNode::new(label, id, controller, controller, voters, dir);
        node.broker_role = false;
        node
    }

    /// Adds `args` to the node's command line.
    pub fn with_args<S: AsRef<str>>(mut self, args: &[S]) -> ClusterNode {
        self.extra_args.extend(args.iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Runs the node through `wrapper` (e.g. `["ip", "netns", "exec", NS]`).
    pub fn wrapped_in<S: AsRef<str>>(mut self, wrapper: &[S]) -> ClusterNode {
        self.wrapper = wrapper.iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    /// Leaves out `--controller-listen`: the node listens on its entry in the voters.
    pub fn without_controller_listen(mut self) -> ClusterNode {
        self.controller_listen = false;
        self
    }

    /// Starts the process and waits until it prints that it listens.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.label);
        self.starts += 1;
        self.paused = false;
        let mut cmd = sapper_command(&self.wrapper);
        cmd.arg("broker").args(["--node-id", &self.id.to_string()]);
        if self.broker_role {
            cmd.args(["--listen", &self.client.to_string()]);
        } else {
            cmd.args(["--roles", "controller"]);
        }
        if self.controller_listen {
            cmd.args(["--controller-listen", &self.controller.to_string()]);
        }
        cmd.args(["--voters", &self.voters])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .env(
                "SAPPER_LOG",
                std::env::var("SAPPER_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            );
        let ready = if self.broker_role {
            BROKER_READY
        } else {
            CONTROLLER_READY
        };
        match start_and_wait(cmd, &self.stderr_path(), ready) {
            Ok((child, _)) => self.child = Some(child),
            Err(why) => panic!("{} {why}\n{}", self.label, self.stderr_tail()),
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

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.label))
            .id()
    }

    fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// Sends SIGTERM (controlled shutdown) without waiting.
    pub fn sigterm(&self) {
        self.signal("-TERM");
    }

    /// Waits up to `bound` for the process to exit; `None` if it did not (it is then killed).
    pub fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("{} is not running", self.label));
        self.paused = false;
        let status = wait_with_timeout(&mut child, bound);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }

    /// SIGKILL, as a crash, and waits for the process to be gone.
    pub fn kill9(&mut self) {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("{} is not running", self.label));
        self.paused = false;
        child.kill().expect("sending SIGKILL");
        child.wait().expect("reaping a killed node");
    }

    fn assert_running(&mut self) {
        if !self.is_running() {
            panic!(
                "{} is not running (died unexpectedly?)\n{}",
                self.label,
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

    /// The stderr file of the current (or last) start.
    pub fn stderr_path(&self) -> PathBuf {
        self.logs
            .join(format!("{}-start{}.stderr", self.label, self.starts))
    }

    /// The last few kilobytes of the current (or last) process's stderr.
    pub fn stderr_tail(&self) -> String {
        format!(
            "--- {} (node {}) stderr ({}) ---\n{}",
            self.label,
            self.id,
            self.stderr_path().display(),
            file_tail(&self.stderr_path(), 6_000)
        )
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.kill_quietly();
        if std::thread::panicking() {
            eprintln!("{}", self.stderr_tail());
        }
    }
}

/// `count` nodes with both roles (ids 1..=count, labels `{prefix}{id}`) on fresh 127.0.0.1
/// ports, their data and stderr files in `dir`; not started.
pub fn local_nodes(prefix: &str, count: i32, dir: &Path) -> Vec<ClusterNode> {
    let n = usize::try_from(count).expect("node count");
    let ports = free_ports(2 * n);
    let (client_ports, controller_ports) = ports.split_at(n);
    let voters = (1..=count)
        .zip(controller_ports)
        .map(|(id, port)| format!("{id}@127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    (1..=count)
        .zip(client_ports.iter().zip(controller_ports))
        .map(|(id, (client, controller))| {
            ClusterNode::new(
                &format!("{prefix}{id}"),
                id,
                SocketAddr::from(([127, 0, 0, 1], *client)),
                SocketAddr::from(([127, 0, 0, 1], *controller)),
                &voters,
                dir,
            )
        })
        .collect()
}

/// Starts every node of `nodes`, one after the other.
pub fn spawn_all(nodes: &mut [ClusterNode]) {
    for node in nodes {
        node.spawn();
    }
}

/// `host:port,...` of the given nodes' client listeners, for `bootstrap.servers`.
pub fn bootstrap(nodes: &[&ClusterNode]) -> String {
    nodes
        .iter()
        .map(|n| n.client.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads nodes' Metadata ([`ClusterView`]s) with `sapper_wire`'s client on its own runtime,
/// each request bounded.
pub struct MetadataReader {
    runtime: tokio::runtime::Runtime,
    request_timeout: Duration,
}

impl MetadataReader {
    /// A reader whose requests each take at most `request_timeout`.
    pub fn new(request_timeout: Duration) -> MetadataReader {
        MetadataReader {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building a tokio runtime"),
            request_timeout,
        }
    }

    /// What node `id` at `addr` answers for `topic`, or for all topics (`None`); `None` if it
    /// did not answer within the bound.
    pub fn view(&self, id: i32, addr: SocketAddr, topic: Option<&str>) -> Option<ClusterView> {
        let request = MetadataRequest::default()
            .with_topics(topic.map(|name| {
                vec![MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))]
            }))
            .with_allow_auto_topic_creation(false);
        let response: MetadataResponse = self.runtime.block_on(async {
            tokio::time::timeout(self.request_timeout, async {
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
            cluster_id: response.cluster_id.as_ref().map(ToString::to_string),
            brokers: response.brokers.iter().map(|b| b.node_id.0).collect(),
            racks: response
                .brokers
                .iter()
                .map(|b| (b.node_id.0, b.rack.as_ref().map(ToString::to_string)))
                .collect(),
            controller: response.controller_id.0,
            partitions: topic
                .and_then(|name| topics.get(name))
                .cloned()
                .unwrap_or_default(),
            topics,
        })
    }

    /// Polls `nodes`' Metadata for `topic` until `check` holds on every view and they agree on
    /// the partitions; answers that view, or the last views after `bound`.
    pub fn try_wait_for_views(
        &self,
        nodes: &[&ClusterNode],
        topic: &str,
        bound: Duration,
        check: &dyn Fn(&ClusterView) -> bool,
    ) -> Result<ClusterView, Vec<Option<ClusterView>>> {
        let deadline = Instant::now() + bound;
        loop {
            let views: Vec<Option<ClusterView>> = nodes
                .iter()
                .map(|n| self.view(n.id, n.client, Some(topic)))
                .collect();
            let all_ok = views.iter().all(|v| v.as_ref().is_some_and(check));
            let agree = views.windows(2).all(|w| match w {
                [a, b] => a.as_ref().map(|v| &v.partitions) == b.as_ref().map(|v| &v.partitions),
                _ => true,
            });
            if all_ok && agree {
                if let Some(Some(view)) = views.into_iter().next() {
                    return Ok(view);
                }
                return Err(Vec::new());
            }
            if Instant::now() >= deadline {
                return Err(views);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (up to 30 s) until every one of `nodes` lists exactly them as live brokers;
    /// answers the first node's view.
    pub fn wait_registered(&self, nodes: &[ClusterNode]) -> ClusterView {
        let ids: BTreeSet<i32> = nodes.iter().map(|n| n.id).collect();
        let refs: Vec<&ClusterNode> = nodes.iter().collect();
        self.wait_for_views(
            &refs,
            "none",
            Duration::from_secs(30),
            &format!("{} brokers registered", nodes.len()),
            |v| v.brokers == ids,
        )
    }

    /// [`MetadataReader::try_wait_for_views`], panicking with `what` and the last views after
    /// `bound`.
    pub fn wait_for_views(
        &self,
        nodes: &[&ClusterNode],
        topic: &str,
        bound: Duration,
        what: &str,
        check: impl Fn(&ClusterView) -> bool,
    ) -> ClusterView {
        self.try_wait_for_views(nodes, topic, bound, &check)
            .unwrap_or_else(|views| panic!("{what}: not within {bound:?}; last views: {views:#?}"))
    }
}

/// N nodes with both roles, started together; see the module documentation.
pub struct TestCluster {
    nodes: Vec<ClusterNode>,
    reader: MetadataReader,
    /// Data directories and stderr files; removed on drop unless `SAPPER_KEEP_TEST_DIRS` is set.
    dir: Option<tempfile::TempDir>,
}

impl TestCluster {
    /// Starts `count` nodes (ids 1..=count) with `extra_args` each and waits until every node's
    /// Metadata lists all of them.
    pub fn start(count: i32, extra_args: &[&str]) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("sapper-cluster")
            .tempdir()
            .expect("creating the cluster's temporary directory");
        let nodes = local_nodes("node", count, dir.path())
            .into_iter()
            .map(|node| node.with_args(extra_args))
            .collect();
        let mut cluster = TestCluster {
            nodes,
            reader: MetadataReader::new(METADATA_TIMEOUT),
            dir: Some(dir),
        };
        spawn_all(&mut cluster.nodes);
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
        bootstrap(&self.nodes.iter().collect::<Vec<_>>())
    }

    /// SIGKILL, as a crash, and waits for the process to be gone.
    pub fn kill9(&mut self, id: i32) {
        let node = self.node_mut(id);
        node.assert_running();
        node.kill9();
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
        node.sigterm();
        match node.wait_exit(STOP_TIMEOUT) {
            Some(status) => assert!(
                status.success(),
                "node {id} exited with {status} after SIGTERM\n{}",
                node.stderr_tail()
            ),
            None => panic!(
                "node {id} did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                node.stderr_tail()
            ),
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
        self.reader.view(id, self.node(id).client, topic)
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
    /// The nodes kill themselves (and print their stderr tails if the test is failing) when
    /// dropped, after this and before the directory is removed.
    fn drop(&mut self) {
        if std::env::var_os("SAPPER_KEEP_TEST_DIRS").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("keeping the cluster's directory {}", dir.keep().display());
            }
        }
    }
}

/// Every port [`free_ports`] handed out in this test process: a port released after picking
/// may be picked again by the next call (two clusters started side by side collided so)
/// before the node it was meant for binds it.
static HANDED_OUT: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());

/// `n` distinct ports that were free a moment ago (held together, then released), never one
/// this process handed out before.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut held: Vec<TcpListener> = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    // Bounded: each attempt holds its port, so repeats come only from earlier calls.
    for _ in 0..(n + handed_out.len() + 64) {
        if ports.len() == n {
            break;
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port");
        let port = listener.local_addr().expect("a bound listener's address").port();
        if handed_out.insert(port) {
            ports.push(port);
        }
        held.push(listener);
    }
    assert_eq!(ports.len(), n, "no {n} fresh ports");
    ports
}
