//! `sapper dev`: a local cluster for development, one command.
//!
//! With `--brokers 1` it is today's single broker, in this process. With more (the default is
//! three, as issue 5 asks) it starts that many separate `sapper broker` processes of this very
//! executable, each a broker and a controller voter, on a fixed port plan: node i's client
//! listener on `base-port + i - 1`, its controller listener on `base-port + 1000 + i - 1`, its
//! data in `DIR/node-i`. A second cluster runs beside the first with another `--base-port`,
//! `--data-dir` and `--name`: clusters share nothing.
//!
//! This process supervises its nodes: it forwards their stderr with a `[node-i]` prefix,
//! reports a node that dies (the others keep running), and on SIGINT, SIGTERM or SIGHUP sends
//! every node SIGTERM and waits for them, bounded, then SIGKILLs stragglers; a second signal
//! (a second later or more) kills at once. The nodes run in their own process group so that
//! Ctrl-C reaches only this supervisor, which stops them all; `kill_on_drop` is the backstop
//! on every error path. If this process itself is SIGKILLed its nodes keep running (stopping
//! them would need the parent-death signal, i.e. `unsafe` in `pre_exec`, which the workspace
//! forbids).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use sapper_broker::BrokerConfig;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What `sapper dev` starts without `--brokers`.
pub const DEFAULT_BROKERS: u16 = 3;
/// Node i's controller port is its client port plus this.
pub const CONTROLLER_PORT_OFFSET: u16 = 1000;
/// The line a broker prints on stdout once its client listener serves.
const LISTEN_PREFIX: &str = "sapper: listening on ";
/// The line this command prints once every node listens: scripts wait for it.
pub const BOOTSTRAP_PREFIX: &str = "sapper: bootstrap ";
/// How long every node together may take to announce its listener (a first start elects the
/// metadata quorum).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the nodes may take to stop after SIGTERM before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the supervisor looks for nodes that died.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Signals this close together are one request to stop, not a request to hurry.
const SIGNAL_DEBOUNCE: Duration = Duration::from_secs(1);
/// How long the forwarders may take to drain a stopped node's last output.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// `sapper dev` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct DevArgs {
    /// How many nodes, each a broker and a controller voter in its own process; 1 runs a single
    /// broker in this process.
    #[arg(long, default_value_t = DEFAULT_BROKERS, value_parser = clap::value_parser!(u16).range(1..))]
    pub brokers: u16,
    /// Node i's client listener is 127.0.0.1:P+i-1, its controller listener 127.0.0.1:P+1000+i-1.
    #[arg(long, alias = "port", value_name = "P", default_value_t = 9092)]
    pub base_port: u16,
    /// Data directory: node i keeps its data in DIR/node-i (with one broker, in DIR itself).
    #[arg(long, value_name = "DIR", default_value = "./sapper-data")]
    pub data_dir: PathBuf,
    /// The cluster's name, printed to tell clusters apart when several run side by side.
    #[arg(long, default_value = "dev")]
    pub name: String,
}

/// What `sapper dev` will run.
#[derive(Debug)]
pub enum Plan {
    /// One broker in this process (`--brokers 1`).
    Single(Box<BrokerConfig>),
    /// Separate broker processes.
    Cluster(ClusterPlan),
}

/// One node of a planned cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    pub id: i32,
    pub client: SocketAddr,
    pub controller: SocketAddr,
    pub data_dir: PathBuf,
}

/// A local cluster: its name and its nodes, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPlan {
    pub name: String,
    pub data_dir: PathBuf,
    pub nodes: Vec<NodePlan>,
}

/// Turns the flags into a plan, refusing port plans that cannot work.
pub fn plan(args: &DevArgs) -> anyhow::Result<Plan> {
    if args.brokers <= 1 {
        return Ok(Plan::Single(Box::new(BrokerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, args.base_port)),
            data_dir: args.data_dir.clone(),
            auto_create_topics: true,
            retention_check_interval_ms: 10_000,
            ..BrokerConfig::default()
        })));
    }
    let n = args.brokers;
    let p = args.base_port;
    if p == 0 {
        bail!("--base-port 0 picks free ports, which a cluster cannot use: its voters need fixed controller ports");
    }
    if n > CONTROLLER_PORT_OFFSET {
        bail!(
            "{n} brokers need client ports {p}..{} that run into the controller ports from {}: at most {CONTROLLER_PORT_OFFSET} brokers",
            u32::from(p) + u32::from(n) - 1,
            u32::from(p) + u32::from(CONTROLLER_PORT_OFFSET)
        );
    }
    let highest = u32::from(p) + u32::from(CONTROLLER_PORT_OFFSET) + u32::from(n) - 1;
    if highest > u32::from(u16::MAX) {
        bail!(
            "node {n}'s controller listener would need port {highest}, past 65535: use a --base-port of at most {}",
            u32::from(u16::MAX) + 1 - u32::from(CONTROLLER_PORT_OFFSET) - u32::from(n)
        );
    }
    let mut nodes = Vec::with_capacity(usize::from(n));
    for i in 1..=n {
        // Checked above: every port fits in a u16.
        let client = p.checked_add(i - 1).context("port overflow")?;
        let controller = client
            .checked_add(CONTROLLER_PORT_OFFSET)
            .context("port overflow")?;
        nodes.push(NodePlan {
            id: i32::from(i),
            client: SocketAddr::from((Ipv4Addr::LOCALHOST, client)),
            controller: SocketAddr::from((Ipv4Addr::LOCALHOST, controller)),
            data_dir: args.data_dir.join(format!("node-{i}")),
        });
    }
    let plan = ClusterPlan {
        name: args.name.clone(),
        data_dir: args.data_dir.clone(),
        nodes,
    };
    plan.check_distinct_ports()?;
    Ok(Plan::Cluster(plan))
}

impl ClusterPlan {
    /// Kafka's `controller.quorum.voters`: `1@127.0.0.1:10092,2@...`.
    pub fn voters(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{}@{}", n.id, n.controller))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The planned client listeners, for `bootstrap.servers` (the running cluster prints the
    /// ones its nodes announce).
    #[cfg(test)]
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.client.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `sapper` arguments that start `node`.
    pub fn broker_args(&self, node: &NodePlan) -> Vec<OsString> {
        let mut args: Vec<OsString> = [
            "broker".to_string(),
            "--node-id".into(),
            node.id.to_string(),
            "--roles".into(),
            "broker,controller".into(),
            "--listen".into(),
            node.client.to_string(),
            "--controller-listen".into(),
            node.controller.to_string(),
            "--voters".into(),
            self.voters(),
            "--auto-create-topics".into(),
            "true".into(),
            "--retention-check-interval-ms".into(),
            "10000".into(),
            "--data-dir".into(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        args.push(node.data_dir.clone().into_os_string());
        args
    }

    /// Every listener of every node on its own port (the plan's arithmetic guarantees it; this
    /// says which ones clash if it ever did not).
    fn check_distinct_ports(&self) -> anyhow::Result<()> {
        let mut seen = BTreeSet::new();
        for (addr, what) in self.listeners() {
            if !seen.insert(addr.port()) {
                bail!(
                    "port {} is planned twice (for {what}): choose another --base-port",
                    addr.port()
                );
            }
        }
        Ok(())
    }

    /// Each listener with a description for messages.
    fn listeners(&self) -> Vec<(SocketAddr, String)> {
        self.nodes
            .iter()
            .flat_map(|n| {
                [
                    (n.client, format!("node {}'s client listener", n.id)),
                    (n.controller, format!("node {}'s controller listener", n.id)),
                ]
            })
            .collect()
    }

    /// Fails, naming the port, if a planned port is taken (another cluster or broker): better
    /// now than as a node dying at bind time.
    fn check_ports_free(&self) -> anyhow::Result<()> {
        for (addr, what) in self.listeners() {
            if let Err(e) = std::net::TcpListener::bind(addr) {
                bail!(
                    "{addr} ({what}) is not available: {e}. Is another cluster or broker running? \
                     Start this one elsewhere with --base-port (and its own --data-dir and --name)"
                );
            }
        }
        Ok(())
    }
}

/// A running node: its process and what forwards its output.
struct Node {
    id: i32,
    child: Child,
    /// Fires with the announced address once the node prints [`LISTEN_PREFIX`].
    ready: Option<oneshot::Receiver<String>>,
    /// Set once the process has been seen to exit.
    exited: Option<ExitStatus>,
    forwarders: Vec<JoinHandle<()>>,
}

/// SIGINT, SIGTERM and SIGHUP, as one stream of "stop" requests.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        let install = |kind: SignalKind| signal(kind).context("cannot install signal handlers");
        Ok(Signals {
            int: install(SignalKind::interrupt())?,
            term: install(SignalKind::terminate())?,
            hup: install(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal; returns its name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }

    /// Waits for a signal sent at least [`SIGNAL_DEBOUNCE`] from now, ignoring any already
    /// pending: one stop request often arrives twice at once (`timeout`, a shell or a service
    /// manager signalling the whole process group as well as this process).
    async fn recv_fresh(&mut self) -> &'static str {
        tokio::time::sleep(SIGNAL_DEBOUNCE).await;
        for _ in 0..8 {
            if tokio::time::timeout(Duration::ZERO, self.recv()).await.is_err() {
                break;
            }
        }
        self.recv().await
    }
}

/// Starts the cluster, prints its bootstrap list and supervises it until a signal stops it.
pub async fn run_cluster(plan: ClusterPlan) -> anyhow::Result<()> {
    plan.check_ports_free()?;
    let mut signals = Signals::install()?;
    let exe = std::env::current_exe().context("cannot find this executable to start the nodes")?;
    let mut nodes = Vec::with_capacity(plan.nodes.len());
    for node in &plan.nodes {
        match spawn(&exe, &plan, node) {
            Ok(n) => nodes.push(n),
            Err(e) => {
                stop_all(&mut nodes, &mut signals).await;
                return Err(e);
            }
        }
    }
    let started = tokio::select! {
        result = wait_ready(&mut nodes) => result,
        name = signals.recv() => Err(anyhow!("{name} while the cluster was starting")),
    };
    let addrs = match started {
        Ok(addrs) => addrs,
        Err(e) => {
            stop_all(&mut nodes, &mut signals).await;
            return Err(e);
        }
    };
    let bootstrap = addrs.join(",");
    println!("{BOOTSTRAP_PREFIX}{bootstrap}");
    print!("{}", banner(&plan, &bootstrap));
    let stop = supervise(&mut nodes, &mut signals).await;
    stop_all(&mut nodes, &mut signals).await;
    stop
}

/// Starts one node with its stdout and stderr forwarded.
fn spawn(exe: &std::path::Path, plan: &ClusterPlan, node: &NodePlan) -> anyhow::Result<Node> {
    let mut cmd = Command::new(exe);
    cmd.args(plan.broker_args(node))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // The flags above configure the node, as the single dev broker ignores SAPPER_* too.
    for (key, _) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(|k| k.starts_with("SAPPER_") && k != "SAPPER_LOG")
        {
            cmd.env_remove(key);
        }
    }
    if !std::io::stderr().is_terminal() {
        cmd.env("NO_COLOR", "1");
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start node {} ({})", node.id, exe.display()))?;
    let prefix = format!("[node-{}]", node.id);
    let mut forwarders = Vec::new();
    let (tx, rx) = oneshot::channel();
    if let Some(stdout) = child.stdout.take() {
        let prefix = prefix.clone();
        let mut tx = Some(tx);
        forwarders.push(tokio::spawn(forward_lines(stdout, move |line| {
            match line.strip_prefix(LISTEN_PREFIX) {
                Some(addr) if tx.is_some() => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_string());
                    }
                }
                _ => println!("{prefix} {line}"),
            }
        })));
    }
    if let Some(stderr) = child.stderr.take() {
        forwarders.push(tokio::spawn(forward_lines(stderr, move |line| {
            eprintln!("{prefix} {line}")
        })));
    }
    Ok(Node {
        id: node.id,
        child,
        ready: Some(rx),
        exited: None,
        forwarders,
    })
}

/// Calls `each` with every line `from` produces (invalid UTF-8 replaced), until it closes.
async fn forward_lines(from: impl AsyncRead + Unpin, mut each: impl FnMut(&str)) {
    let mut reader = BufReader::new(from);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                each(line.trim_end_matches(['\n', '\r']));
            }
        }
    }
}

/// Waits until every node announced its listener; returns the announced addresses in node
/// order. Fails on the first node that exits first or on [`START_TIMEOUT`].
async fn wait_ready(nodes: &mut [Node]) -> anyhow::Result<Vec<String>> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut addrs = Vec::with_capacity(nodes.len());
    for node in nodes.iter_mut() {
        let Some(ready) = node.ready.take() else {
            bail!("node {} was already waited for", node.id);
        };
        match tokio::time::timeout_at(deadline, ready).await {
            Ok(Ok(addr)) => addrs.push(addr),
            Ok(Err(_)) => {
                // Its stdout closed without the line: it is exiting.
                let status = tokio::time::timeout(DRAIN_TIMEOUT, node.child.wait()).await;
                let why = match status {
                    Ok(Ok(status)) => {
                        node.exited = Some(status);
                        format!("exited ({status})")
                    }
                    _ => "closed its output".to_string(),
                };
                bail!(
                    "node {} {why} before listening; its stderr is above, prefixed [node-{}]",
                    node.id,
                    node.id
                );
            }
            Err(_) => bail!(
                "node {} did not listen within {START_TIMEOUT:?}; its stderr is above, prefixed [node-{}]",
                node.id,
                node.id
            ),
        }
    }
    Ok(addrs)
}

/// Watches the nodes until a signal asks to stop (then `Ok`), reporting each one that dies;
/// fails when none is left.
async fn supervise(nodes: &mut [Node], signals: &mut Signals) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    loop {
        tokio::select! {
            name = signals.recv() => {
                eprintln!("sapper: {name}: stopping the cluster");
                return Ok(());
            }
            _ = tick.tick() => {
                let mut died = Vec::new();
                for node in nodes.iter_mut().filter(|n| n.exited.is_none()) {
                    if let Ok(Some(status)) = node.child.try_wait() {
                        node.exited = Some(status);
                        died.push((node.id, status));
                    }
                }
                let left = nodes_running(nodes);
                for (id, status) in died {
                    eprintln!("sapper: node {id} exited unexpectedly ({status}); {left} node(s) still running");
                }
                if left == 0 {
                    bail!("every node of the cluster has exited");
                }
            }
        }
    }
}

fn nodes_running(nodes: &[Node]) -> usize {
    nodes.iter().filter(|n| n.exited.is_none()).count()
}

/// SIGTERM to every running node, then waits up to [`STOP_TIMEOUT`] (or until another signal)
/// and SIGKILLs whatever still runs. No node outlives this call.
async fn stop_all(nodes: &mut [Node], signals: &mut Signals) {
    for node in nodes.iter_mut().filter(|n| n.exited.is_none()) {
        if let Some(pid) = node.child.id() {
            terminate(pid).await;
        }
    }
    let graceful = async {
        for node in nodes.iter_mut() {
            if node.exited.is_none() {
                if let Ok(status) = node.child.wait().await {
                    node.exited = Some(status);
                }
            }
        }
    };
    tokio::select! {
        done = tokio::time::timeout(STOP_TIMEOUT, graceful) => {
            if done.is_err() {
                eprintln!("sapper: nodes still running {STOP_TIMEOUT:?} after SIGTERM: killing them");
            }
        }
        name = signals.recv_fresh() => eprintln!("sapper: {name} again: killing the nodes"),
    }
    for node in nodes.iter_mut() {
        if node.exited.is_none() {
            let _ = node.child.start_kill();
            if let Ok(Ok(status)) = tokio::time::timeout(DRAIN_TIMEOUT, node.child.wait()).await {
                node.exited = Some(status);
            }
        }
    }
    for node in nodes.iter_mut() {
        for forwarder in node.forwarders.drain(..) {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, forwarder).await;
        }
    }
    let summary: Vec<String> = nodes
        .iter()
        .map(|n| match n.exited {
            Some(status) => format!("node {}: {status}", n.id),
            None => format!("node {}: still running", n.id),
        })
        .collect();
    if !summary.is_empty() {
        eprintln!("sapper: cluster stopped ({})", summary.join(", "));
    }
}

/// Sends SIGTERM to `pid` with kill(1): std only sends SIGKILL, and this workspace forbids the
/// `unsafe` a direct kill(2) would take. Falls back to nothing: the caller SIGKILLs later.
async fn terminate(pid: u32) {
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        // Out of this process group, so that a signal sent to the group cannot stop it.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if !matches!(sent, Ok(status) if status.success()) {
        eprintln!("sapper: could not send SIGTERM to pid {pid}; it will be killed");
    }
}

/// What the user reads once the cluster is up.
fn banner(plan: &ClusterPlan, bootstrap: &str) -> String {
    let first = plan
        .nodes
        .first()
        .map(|n| n.client.to_string())
        .unwrap_or_default();
    format!(
        "\nSapper dev cluster {name:?} ready: {count} nodes, each a broker and a controller voter.\n  \
         bootstrap:   {bootstrap}\n  \
         controllers: {voters}\n  \
         data:        {data}/node-1 .. node-{count}\n\n\
         Try it:\n  \
         echo 'hello sapper' | kcat -P -b {bootstrap} -t demo\n  \
         kcat -C -b {bootstrap} -t demo -e\n  \
         sapper cluster describe --bootstrap {first}\n\n\
         Ctrl-C stops every node.\n",
        name = plan.name,
        count = plan.nodes.len(),
        voters = plan.voters(),
        data = plan.data_dir.display(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        dev: DevArgs,
    }

    fn args(flags: &[&str]) -> DevArgs {
        Cli::try_parse_from(std::iter::once("dev").chain(flags.iter().copied()))
            .unwrap()
            .dev
    }

    fn cluster(flags: &[&str]) -> ClusterPlan {
        match plan(&args(flags)).unwrap() {
            Plan::Cluster(c) => c,
            Plan::Single(_) => panic!("expected a cluster for {flags:?}"),
        }
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn no_flags_plan_three_nodes_from_9092() {
        let c = cluster(&[]);
        assert_eq!(c.name, "dev");
        assert_eq!(c.nodes.len(), 3);
        assert_eq!(c.bootstrap(), "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094");
        assert_eq!(
            c.voters(),
            "1@127.0.0.1:10092,2@127.0.0.1:10093,3@127.0.0.1:10094"
        );
        assert_eq!(c.nodes[2].data_dir, PathBuf::from("./sapper-data/node-3"));
    }

    #[test]
    fn each_node_gets_kafkas_flags() {
        let c = cluster(&[
            "--brokers",
            "2",
            "--base-port",
            "19200",
            "--data-dir",
            "/tmp/x",
            "--name",
            "b",
        ]);
        assert_eq!(c.name, "b");
        assert_eq!(
            strings(c.broker_args(&c.nodes[1])),
            [
                "broker",
                "--node-id",
                "2",
                "--roles",
                "broker,controller",
                "--listen",
                "127.0.0.1:19201",
                "--controller-listen",
                "127.0.0.1:20201",
                "--voters",
                "1@127.0.0.1:20200,2@127.0.0.1:20201",
                "--auto-create-topics",
                "true",
                "--retention-check-interval-ms",
                "10000",
                "--data-dir",
                "/tmp/x/node-2",
            ]
        );
    }

    #[test]
    fn one_broker_runs_in_process_on_the_base_port() {
        let Plan::Single(config) = plan(&args(&["--brokers", "1", "--base-port", "9300"])).unwrap() else {
            panic!("expected a single broker");
        };
        assert_eq!(config.listen, "127.0.0.1:9300".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("./sapper-data"));
        assert!(config.auto_create_topics);
        // The old flag still works.
        let Plan::Single(config) = plan(&args(&["--brokers", "1", "--port", "0"])).unwrap() else {
            panic!("expected a single broker");
        };
        assert_eq!(config.listen.port(), 0);
        assert!(Cli::try_parse_from(["dev", "--brokers", "0"]).is_err());
    }

    #[test]
    fn impossible_port_plans_are_refused_with_the_reason() {
        let err = |flags: &[&str]| plan(&args(flags)).unwrap_err().to_string();
        assert!(err(&["--base-port", "0"]).contains("fixed controller ports"));
        let e = err(&["--base-port", "64600"]);
        assert!(e.contains("past 65535") && e.contains("at most 64533"), "{e}");
        assert!(plan(&args(&["--base-port", "64533"])).is_ok());
        let e = err(&["--brokers", "1001", "--base-port", "2000"]);
        assert!(e.contains("run into the controller ports"), "{e}");
        let c = cluster(&["--brokers", "1000", "--base-port", "2000"]);
        c.check_distinct_ports().unwrap();
        assert_eq!(c.nodes[999].client.port(), 2999);
        assert_eq!(c.nodes[0].controller.port(), 3000);
    }

    #[test]
    fn a_taken_port_is_named() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        // Ephemeral ports sit far below 65535 - 1002, so the plan is valid.
        let c = cluster(&["--base-port", &port.to_string()]);
        let e = c.check_ports_free().unwrap_err().to_string();
        assert!(
            e.contains(&format!("127.0.0.1:{port} (node 1's client listener)")),
            "{e}"
        );
        assert!(e.contains("--base-port"), "{e}");
    }

    #[test]
    fn the_banner_names_the_cluster_and_its_bootstrap_list() {
        let c = cluster(&["--name", "blue"]);
        let text = banner(&c, &c.bootstrap());
        assert!(text.contains("\"blue\" ready: 3 nodes"), "{text}");
        assert!(
            text.contains("bootstrap:   127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"),
            "{text}"
        );
        assert!(
            text.contains("sapper cluster describe --bootstrap 127.0.0.1:9092"),
            "{text}"
        );
    }
}
