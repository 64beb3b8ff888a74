//! The `sapper bench` subcommand tree, ready for the binary to mount and run.
//!
//! The binary only needs `Bench { #[command(subcommand)] command: BenchCommand }` and
//! `run_and_print(&command).await`; output format (one JSON line with `--json`, one line for
//! people otherwise) is decided here so scripts such as `run-comparison.sh` can rely on it.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::args::{CommitsArgs, ConsumeArgs, GroupMemberArgs, ProduceArgs, RebalanceArgs};
use crate::failover::{run_failover, FailoverArgs, FailoverReport};
use crate::report::{CommitsReport, MemberReport, RebalanceReport};
use crate::{
    disk_write_mb_per_sec, run_commits, run_consume, run_group_member, run_produce, run_rebalance,
    ConsumeReport, ProduceReport,
};

/// One benchmark to run.
#[derive(Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// Produce fixed-size records and report throughput and send-to-ack latency.
    Produce(ProduceArgs),
    /// Read a topic back from the beginning and report throughput.
    Consume(ConsumeArgs),
    /// Measure sequential write speed of a directory's disk (like `dd conv=fdatasync`).
    Disk(DiskArgs),
    /// Offset commits per second from many groups at once, beside a produce baseline.
    Commits(CommitsArgs),
    /// Time for a consumer group to rebalance after a member dies or leaves.
    Rebalance(RebalanceArgs),
    /// Time from a kill -9 of a partition leader to the next acks=all write acknowledged by
    /// the new leader, on a 3-node cluster of this executable that it starts and stops itself.
    Failover(FailoverArgs),
    /// One consumer-group member process of `rebalance` (internal).
    #[command(hide = true)]
    GroupMember(GroupMemberArgs),
}

/// Arguments of `sapper bench disk`.
#[derive(Args, Debug, Clone)]
pub struct DiskArgs {
    /// Directory to write the scratch file in (put it on the broker's data disk).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,

    /// MiB to write; use more than the disk's write cache to see the device itself.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub mb: u64,
}

/// Outcome of `sapper bench disk`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct DiskReport {
    /// Directory measured.
    pub dir: PathBuf,
    /// MiB written.
    pub mb: u64,
    /// Sequential write rate including the final fdatasync, MiB/s.
    pub mb_per_sec: f64,
}

impl fmt::Display for DiskReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "disk {}: {} MiB written and synced at {:.1} MB/s",
            self.dir.display(),
            self.mb,
            self.mb_per_sec
        )
    }
}

/// The report of whichever benchmark ran.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum BenchReport {
    /// From `produce`.
    Produce(ProduceReport),
    /// From `consume`.
    Consume(ConsumeReport),
    /// From `disk`.
    Disk(DiskReport),
    /// From `commits`.
    Commits(CommitsReport),
    /// From `rebalance`.
    Rebalance(RebalanceReport),
    /// From `failover`.
    Failover(FailoverReport),
    /// From `group-member`.
    GroupMember(MemberReport),
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchReport::Produce(r) => r.fmt(f),
            BenchReport::Consume(r) => r.fmt(f),
            BenchReport::Disk(r) => r.fmt(f),
            BenchReport::Commits(r) => r.fmt(f),
            BenchReport::Rebalance(r) => r.fmt(f),
            BenchReport::Failover(r) => r.fmt(f),
            BenchReport::GroupMember(r) => r.fmt(f),
        }
    }
}

/// Output switch shared by every `sapper bench` subcommand.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct OutputArgs {
    /// Print the report as one line of JSON on stdout (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

impl BenchCommand {
    /// Runs the benchmark.
    pub async fn run(&self) -> anyhow::Result<BenchReport> {
        Ok(match self {
            BenchCommand::Produce(args) => BenchReport::Produce(run_produce(args).await?),
            BenchCommand::Consume(args) => BenchReport::Consume(run_consume(args).await?),
            BenchCommand::Disk(args) => BenchReport::Disk(run_disk(args).await?),
            BenchCommand::Commits(args) => BenchReport::Commits(run_commits(args).await?),
            BenchCommand::Rebalance(args) => BenchReport::Rebalance(run_rebalance(args).await?),
            BenchCommand::Failover(args) => BenchReport::Failover(run_failover(args).await?),
            BenchCommand::GroupMember(args) => BenchReport::GroupMember(run_group_member(args).await?),
        })
    }
}

/// Runs `command` and prints its report on stdout: one JSON line when `output.json`, one line
/// for people otherwise.
pub async fn run_and_print(command: &BenchCommand, output: OutputArgs) -> anyhow::Result<BenchReport> {
    let report = command.run().await?;
    let line = if output.json {
        serde_json::to_string(&report).context("serialising the report")?
    } else {
        report.to_string()
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").context("writing the report to stdout")?;
    Ok(report)
}

/// Runs the disk probe off the async runtime.
pub async fn run_disk(args: &DiskArgs) -> anyhow::Result<DiskReport> {
    let dir = args.dir.clone();
    let mb = usize::try_from(args.mb).context("--mb does not fit in memory addressing")?;
    let mb_per_sec = tokio::task::spawn_blocking(move || disk_write_mb_per_sec(&dir, mb))
        .await
        .context("the disk probe thread panicked")?
        .with_context(|| format!("writing {mb} MiB in {}", args.dir.display()))?;
    Ok(DiskReport {
        dir: args.dir.clone(),
        mb: args.mb,
        mb_per_sec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        output: OutputArgs,
        #[command(subcommand)]
        command: BenchCommand,
    }

    #[test]
    fn subcommands_parse_with_json_anywhere() {
        let cli = Cli::try_parse_from(["bench", "produce", "--bootstrap=h:1", "--json"]).unwrap();
        assert!(cli.output.json);
        assert!(matches!(cli.command, BenchCommand::Produce(_)));
        let cli = Cli::try_parse_from(["bench", "--json", "consume", "--bootstrap=h:1"]).unwrap();
        assert!(cli.output.json);
        assert!(matches!(cli.command, BenchCommand::Consume(_)));
        let cli = Cli::try_parse_from(["bench", "disk", "--mb=5", "--dir=/tmp"]).unwrap();
        assert!(!cli.output.json);
        match cli.command {
            BenchCommand::Disk(d) => assert_eq!((d.mb, d.dir), (5, PathBuf::from("/tmp"))),
            other => panic!("parsed {other:?}"),
        }
        assert!(Cli::try_parse_from(["bench", "disk", "--mb=0"]).is_err());
    }

    #[test]
    fn group_subcommands_parse_and_the_member_is_hidden() {
        let cli = Cli::try_parse_from(["bench", "commits", "--bootstrap=h:1", "--groups=7"]).unwrap();
        match cli.command {
            BenchCommand::Commits(a) => {
                assert_eq!((a.groups, a.partitions, a.duration_secs), (7, 1, 10));
                assert_eq!((a.baseline_partitions, a.record_size), (50, 100));
                assert!(!a.no_baseline);
            }
            other => panic!("parsed {other:?}"),
        }
        let cli = Cli::try_parse_from(["bench", "rebalance", "--bootstrap=h:1"]).unwrap();
        match cli.command {
            BenchCommand::Rebalance(a) => {
                assert_eq!((a.members, a.partitions, a.trials()), (3, 12, 1));
                assert_eq!(a.session_timeout_ms, None);
            }
            other => panic!("parsed {other:?}"),
        }
        let cli = Cli::try_parse_from([
            "bench",
            "rebalance",
            "--bootstrap=h:1",
            "--session-timeout-ms=6000",
        ])
        .unwrap();
        assert!(matches!(cli.command, BenchCommand::Rebalance(a) if a.trials() == 3));
        assert!(Cli::try_parse_from(["bench", "rebalance", "--bootstrap=h:1", "--members=1"]).is_err());
        let member = [
            "bench",
            "group-member",
            "--bootstrap=h:1",
            "--group=g",
            "--topic=t",
            "--json",
        ];
        let cli = Cli::try_parse_from(member).unwrap();
        assert!(cli.output.json);
        assert!(matches!(cli.command, BenchCommand::GroupMember(a) if a.group == "g"));
        let mut help = Vec::new();
        <Cli as clap::CommandFactory>::command()
            .write_long_help(&mut help)
            .unwrap();
        let help = String::from_utf8(help).unwrap();
        assert!(
            help.contains("rebalance") && !help.contains("group-member"),
            "{help}"
        );
    }

    #[tokio::test]
    async fn disk_command_reports_json_with_rate() {
        let dir = tempfile::tempdir().unwrap();
        let command = BenchCommand::Disk(DiskArgs {
            dir: dir.path().to_owned(),
            mb: 1,
        });
        let report = command.run().await.unwrap();
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["mb"], 1);
        assert!(v["mb_per_sec"].as_f64().unwrap() > 0.0);
        assert!(report.to_string().starts_with("disk "));
    }
}
