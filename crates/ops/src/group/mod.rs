//! `sapper group list|describe|delete|history`: the flags, and which command runs.
//!
//! - [`list`]: ListGroups on every broker.
//! - [`describe`]: DescribeGroups, OffsetFetch and ListOffsets: members, assignments, lag.
//! - [`delete`]: DeleteGroups, with Kafka's error name per group.
//! - [`history`]: every commit of a group, read from `__sapper_offset_history` with Fetch.

pub mod delete;
pub mod describe;
pub mod history;
pub mod list;

use crate::cluster::Cluster;
use crate::error::OpsError;
use crate::{render, OutputFormat};

/// `sapper group ...`: consumer groups, over the Kafka protocol.
#[derive(clap::Args, Debug, Clone)]
pub struct GroupArgs {
    #[command(subcommand)]
    pub command: GroupCommand,
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
pub enum GroupCommand {
    /// List groups: id, state and protocol type.
    List {
        /// Only groups in this state (Empty, Stable, PreparingRebalance, CompletingRebalance).
        #[arg(long)]
        state: Option<String>,
    },
    /// Describe a group: members, their partitions, committed offsets and lag.
    Describe { group: String },
    /// Delete groups; a group with members cannot be deleted (NON_EMPTY_GROUP).
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// A group's committed offsets over time, from `__sapper_offset_history`.
    History {
        group: String,
        /// Only commits of this topic.
        #[arg(long)]
        topic: Option<String>,
        /// Per partition, the last commit at or before TIME: RFC 3339 in UTC
        /// (2026-11-25T10:00:00Z), epoch milliseconds, or a duration ago (15m, 2h, 1d).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
}

/// What a command printed, and the failure to report after printing it, if any.
pub struct Outcome {
    pub text: String,
    pub failure: Option<OpsError>,
}

/// Runs the command in `args` and renders its result.
pub async fn run(args: &GroupArgs) -> Result<Outcome, OpsError> {
    // Validate what the user typed before touching the network.
    let at_ms = match &args.command {
        GroupCommand::History { at: Some(at), .. } => {
            Some(crate::time::parse_time(at, crate::time::now_ms())?)
        }
        _ => None,
    };
    let mut cluster = Cluster::connect(&args.bootstrap).await?;
    let done = |text: String| Outcome { text, failure: None };
    match &args.command {
        GroupCommand::List { state } => {
            let report = list::run(&mut cluster, state.as_deref()).await?;
            render(&report, args.output).map(done)
        }
        GroupCommand::Describe { group } => {
            let report = describe::run(&mut cluster, group).await?;
            render(&report, args.output).map(done)
        }
        GroupCommand::Delete { groups } => {
            let report = delete::run(&mut cluster, groups).await?;
            let text = render(&report, args.output)?;
            Ok(Outcome {
                text,
                failure: report.failure(),
            })
        }
        GroupCommand::History { group, topic, .. } => {
            let report = history::run(&mut cluster, group, topic.as_deref(), at_ms).await?;
            render(&report, args.output).map(done)
        }
    }
}
