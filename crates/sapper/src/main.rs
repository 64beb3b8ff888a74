//! `sapper`: the one binary. A thin shell that parses flags, calls the library crates and
//! prints; all behaviour lives in `sapper-broker`, `sapper-bench` and friends.

mod dev;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sapper_bench::{BenchCommand, OutputArgs};
use sapper_broker::cluster::ControllerNode;
use sapper_broker::{Broker, BrokerArgs, BrokerConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "sapper",
    version,
    about = "A Kafka-compatible streaming platform that makes cloud Kafka boring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the broker's flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Run a broker.
    Broker(BrokerArgs),
    /// Run a local development cluster: 3 broker processes by default, data in ./sapper-data.
    Dev(dev::DevArgs),
    /// Benchmark any Kafka-compatible broker through librdkafka; prints figures.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Inspect and delete consumer groups, and read their commit history (Kafka protocol only).
    Group(sapper_ops::GroupArgs),
    /// Describe the cluster: brokers, metadata quorum, under-replicated and offline partitions.
    Cluster(sapper_ops::ClusterArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SAPPER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sapper: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Broker(args) => {
                let config = BrokerConfig::load(&args).context("invalid configuration")?;
                run_broker(config, None).await
            }
            Command::Dev(args) => match dev::plan(&args)? {
                dev::Plan::Single(config) => run_broker(*config, Some(dev_banner)).await,
                dev::Plan::Cluster(plan) => dev::run_cluster(plan).await,
            },
            Command::Bench { command, output } => {
                sapper_bench::run_and_print(&command, output).await.map(|_| ())
            }
            Command::Group(args) => sapper_ops::run_and_print(&args).await.map_err(Into::into),
            Command::Cluster(args) => sapper_ops::cluster_cmd::run_and_print(&args)
                .await
                .map_err(Into::into),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sapper: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dev_banner(addr: SocketAddr, data_dir: &std::path::Path) {
    println!(
        "\nSapper dev broker ready.\n  bootstrap: {addr}\n  data:      {}\n\nTry it:\n  echo 'hello sapper' | kcat -P -b {addr} -t demo\n  kcat -C -b {addr} -t demo -e\n",
        data_dir.display()
    );
}

/// How long SIGTERM waits for the controller to move this broker's leaderships away.
const CONTROLLED_SHUTDOWN_BOUND: Duration = Duration::from_secs(5);

/// Binds, opens the data directory (recovering logs), announces readiness and serves until
/// SIGTERM or SIGINT, then shuts down cleanly. With voters (cluster mode) the node also runs
/// its controller role, and a broker asks for a controlled shutdown before it stops.
async fn run_broker(
    config: BrokerConfig,
    banner: Option<fn(SocketAddr, &std::path::Path)>,
) -> anyhow::Result<()> {
    let roles = config.cluster.roles;
    let cluster = config.cluster.is_cluster();
    if cluster && !roles.broker {
        return run_controller_only(config).await;
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = listener.local_addr().context("listener has no local address")?;
    let shutdown = CancellationToken::new();
    let data_dir = config.data_dir.clone();
    let (node_id, settings, history_ms) = (
        config.node_id,
        config.cluster.clone(),
        config.groups.offsets_history_retention_ms,
    );
    let broker = Broker::open(config, bound, shutdown.clone()).context("cannot open the data directory")?;
    let controller = if cluster && roles.controller {
        let controller = ControllerNode::start(node_id, &settings, &data_dir, history_ms)
            .await
            .context("cannot start the metadata quorum")?;
        broker.cluster.attach_controller(&controller);
        println!("sapper: controller listening on {}", controller.local_addr());
        Some(controller)
    } else {
        None
    };
    tracing::info!(node_id = broker.node_id(), %bound, data_dir = %data_dir.display(), cluster, "broker started");
    // The one line tests and scripts wait for.
    println!("sapper: listening on {bound}");
    if let Some(banner) = banner {
        banner(bound, &data_dir);
    }
    let stopper = broker.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        // A no-op on a single node.
        stopper
            .cluster
            .controlled_shutdown(CONTROLLED_SHUTDOWN_BOUND)
            .await;
        stopper.shutdown.cancel();
    });
    sapper_broker::server::run(broker.clone(), listener).await;
    broker.cluster.stop().await;
    if let Some(controller) = controller {
        controller.shutdown().await;
    }
    tracing::info!("broker stopped cleanly");
    Ok(())
}

/// A node with only the controller role: the metadata quorum, no client listener.
async fn run_controller_only(config: BrokerConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).context("cannot create the data directory")?;
    // Keeps a second process off the directory, as a broker's identity does.
    let _identity = sapper_broker::identity::Identity::load_or_create(&config.data_dir, config.node_id)
        .context("cannot open the data directory")?;
    let controller = ControllerNode::start(
        config.node_id,
        &config.cluster,
        &config.data_dir,
        config.groups.offsets_history_retention_ms,
    )
    .await
    .context("cannot start the metadata quorum")?;
    println!("sapper: controller listening on {}", controller.local_addr());
    wait_for_signal().await;
    controller.shutdown().await;
    tracing::info!("controller stopped cleanly");
    Ok(())
}

/// Returns on SIGTERM or SIGINT (never, if the handlers cannot be installed).
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop the broker with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
