//! `sapper cluster describe`: the flags, and which command runs.
//!
//! - [`describe`]: DescribeCluster, Metadata and DescribeQuorum: brokers, the metadata quorum,
//!   under-replicated and offline partitions.

pub mod describe;

use crate::cluster::Cluster;
use crate::error::OpsError;
use crate::{render, OutputFormat};

/// `sapper cluster ...`: the cluster as a whole, over the Kafka protocol.
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
    /// Any broker of the cluster, HOST:PORT.
    #[arg(
        long,
        global = true,
        env = "SAPPER_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
    /// `text`: aligned tables; `json`: one JSON document.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum ClusterCommand {
    /// Brokers (id, rack, state), the metadata quorum (leader, voters, lag), under-replicated
    /// and offline partitions.
    Describe,
}

/// Runs the command in `args` and renders its result.
pub async fn run(args: &ClusterArgs) -> Result<String, OpsError> {
    let mut cluster = Cluster::connect(&args.bootstrap).await?;
    match &args.command {
        ClusterCommand::Describe => {
            let report = describe::run(&mut cluster, crate::time::now_ms()).await?;
            render(&report, args.output)
        }
    }
}

/// Runs a `sapper cluster` command and prints its result on stdout.
pub async fn run_and_print(args: &ClusterArgs) -> Result<(), OpsError> {
    print!("{}", run(args).await?);
    Ok(())
}
