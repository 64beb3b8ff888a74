//! `sapper`: the one binary. A thin shell that parses flags, calls the library crates and
//! prints; all behaviour lives in `sapper-broker`, `sapper-bench` and friends.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sapper_bench::{BenchCommand, OutputArgs};
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

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a broker.
    Broker(BrokerArgs),
    /// Run a local development broker (data in ./sapper-data, auto topic creation on).
    Dev(DevArgs),
    /// Benchmark any Kafka-compatible broker through librdkafka; prints figures.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Inspect and delete consumer groups, and read their commit history (Kafka protocol only).
    Group(sapper_ops::GroupArgs),
}

#[derive(clap::Args, Debug)]
struct DevArgs {
    /// Where the local broker keeps its data.
    #[arg(long, default_value = "./sapper-data")]
    data_dir: PathBuf,
    /// Client port on 127.0.0.1.
    #[arg(long, default_value_t = 9092)]
    port: u16,
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
            Command::Dev(args) => {
                let config = BrokerConfig {
                    listen: SocketAddr::from(([127, 0, 0, 1], args.port)),
                    data_dir: args.data_dir,
                    auto_create_topics: true,
                    retention_check_interval_ms: 10_000,
                    ..BrokerConfig::default()
                };
                run_broker(config, Some(dev_banner)).await
            }
            Command::Bench { command, output } => {
                sapper_bench::run_and_print(&command, output).await.map(|_| ())
            }
            Command::Group(args) => sapper_ops::run_and_print(&args).await.map_err(Into::into),
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

/// Binds, opens the data directory (recovering logs), announces readiness and serves until
/// SIGTERM or SIGINT, then shuts down cleanly.
async fn run_broker(
    config: BrokerConfig,
    banner: Option<fn(SocketAddr, &std::path::Path)>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = listener.local_addr().context("listener has no local address")?;
    let shutdown = CancellationToken::new();
    let data_dir = config.data_dir.clone();
    let broker = Broker::open(config, bound, shutdown.clone()).context("cannot open the data directory")?;
    tracing::info!(node_id = broker.node_id(), %bound, data_dir = %data_dir.display(), "broker started");
    // The one line tests and scripts wait for.
    println!("sapper: listening on {bound}");
    if let Some(banner) = banner {
        banner(bound, &data_dir);
    }
    tokio::spawn(stop_on_signal(shutdown));
    sapper_broker::server::run(broker, listener).await;
    tracing::info!("broker stopped cleanly");
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop the broker with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
