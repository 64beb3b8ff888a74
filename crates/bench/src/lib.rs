//! Benchmarks for Kafka-compatible brokers, driven through librdkafka.
//!
//! This crate owns the work behind `sapper bench produce|consume`: a producer that pushes
//! fixed-size records as fast as the client allows (or at a fixed rate) and measures
//! send-to-acknowledgement latency, a consumer that reads a topic back to the high watermark
//! it saw at start, and a sequential-write disk probe that puts broker figures beside what
//! the disk itself can do. Using a real client (librdkafka, the same one most non-JVM
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
//! JSON line on stdout.

mod args;
mod client;
mod command;
mod consume;
mod disk;
mod latency;
mod produce;
mod report;

pub use args::{parse_property, Acks, Compression, ConsumeArgs, ProduceArgs};
pub use command::{run_and_print, run_disk, BenchCommand, BenchReport, DiskArgs, DiskReport, OutputArgs};
pub use consume::run_consume;
pub use disk::disk_write_mb_per_sec;
pub use latency::LatencyRecorder;
pub use produce::run_produce;
pub use report::{rates, ConsumeReport, LatencySummary, ProduceReport, BYTES_PER_MB};
