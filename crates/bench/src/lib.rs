//! Benchmarks for Kafka-compatible brokers, driven through librdkafka.
//!
//! This crate owns the work behind `sapper bench produce|consume|disk|commits|rebalance`: a
//! producer that pushes fixed-size records as fast as the client allows (or at a fixed rate)
//! and measures send-to-acknowledgement latency, a consumer that reads a topic back to the
//! high watermark it saw at start, a sequential-write disk probe that puts broker figures
//! beside what the disk itself can do, offset commits from many groups at once beside a
//! produce baseline, the time a consumer group takes to rebalance when a member dies, and the
//! time a replicated partition takes to accept acks=all writes again after its leader is
//! killed (`failover`, on a 3-node cluster it starts itself). Using a real client (librdkafka, the same one most non-JVM
//! applications use) keeps the numbers comparable across brokers: Sapper, Tansu, Kafka.
//!
//! Every run is bounded both in count (`--records`) and in wall-clock time
//! (`--timeout-secs`), so a broker that stops answering yields a report marked `timed_out`
//! rather than a hung benchmark.
//!
//! The binary is a thin shell. Either it mounts the whole tree:
//!
//! ```ignore
//! #[derive(clap::Args)]
//! struct Bench {
//!     #[command(flatten)]
//!     output: sapper_bench::OutputArgs,
//!     #[command(subcommand)]
//!     command: sapper_bench::BenchCommand,
//! }
//! // ...
//! sapper_bench::run_and_print(&bench.command, bench.output).await?;
//! ```
//!
//! or it parses [`ProduceArgs`] / [`ConsumeArgs`] itself, awaits [`run_produce`] /
//! [`run_consume`], and prints the report (JSON via `serde_json`, or `Display` for people).
//! `run-comparison.sh` relies on the first form: `sapper bench <cmd> ... --json` printing one
//! JSON line on stdout. `rebalance` needs it too: it runs its group members as
//! `<this executable> bench group-member ...` ([`MEMBER_COMMAND`]), a hidden subcommand.

mod args;
mod client;
mod command;
mod commits;
mod consume;
mod disk;
mod failover;
mod latency;
mod member;
mod produce;
mod rebalance;
mod report;

pub use args::{
    parse_property, Acks, CommitsArgs, Compression, ConsumeArgs, GroupMemberArgs, ProduceArgs, RebalanceArgs,
};
pub use command::{run_and_print, run_disk, BenchCommand, BenchReport, DiskArgs, DiskReport, OutputArgs};
pub use commits::run_commits;
pub use consume::run_consume;
pub use disk::disk_write_mb_per_sec;
pub use failover::{run_failover, FailoverArgs, FailoverReport, FailoverTrial};
pub use latency::LatencyRecorder;
pub use member::run_group_member;
pub use produce::run_produce;
pub use rebalance::{run_rebalance, MEMBER_COMMAND};
pub use report::{
    rates, BaselineReport, CommitsReport, ConsumeReport, LatencySummary, MemberReport, Percentiles,
    ProduceReport, RebalanceReport, RebalanceTrial, TrialSummary, BYTES_PER_MB,
};
