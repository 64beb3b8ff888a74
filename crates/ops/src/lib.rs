//! # sapper-ops: operating a cluster through the Kafka protocol
//!
//! The control plane's commands (`sapper group list|describe|delete|history`, `sapper cluster
//! describe`). They reach brokers only through the public Kafka protocol, over
//! `sapper_wire::client`, exactly as any admin client would; the one thing shared with the
//! broker is the documented record format of its internal topics
//! (`sapper_broker::group::records`), so the history reader can never drift from the writer.
//!
//! ## Layout
//! - [`cluster`]: connections, version negotiation, Metadata and FindCoordinator.
//! - [`group`]: the four group commands, each a pure report plus the requests that fill it.
//! - [`cluster_cmd`]: `sapper cluster describe`: brokers, the metadata quorum, under-replicated
//!   and offline partitions.
//! - [`offsets`]: log offsets (ListOffsets) asked of each partition's leader.
//! - [`table`], [`time`]: aligned text tables; times as operators type and read them.
//! - [`error`]: the one error type at the boundary.

pub mod cluster;
pub mod cluster_cmd;
pub mod error;
pub mod group;
pub mod offsets;
pub mod table;
pub mod time;

pub use cluster_cmd::{ClusterArgs, ClusterCommand};
pub use error::OpsError;
pub use group::{GroupArgs, GroupCommand};

use serde::Serialize;

/// How results are printed.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Aligned tables for people.
    #[default]
    Text,
    /// One JSON document for programs.
    Json,
}

/// A command's result: printable as text and as JSON.
pub trait Report: Serialize {
    /// The text form, ending in a newline.
    fn text(&self) -> String;
}

/// `report` in `format`, ready to print.
pub fn render<R: Report>(report: &R, format: OutputFormat) -> Result<String, OpsError> {
    match format {
        OutputFormat::Text => Ok(report.text()),
        OutputFormat::Json => serde_json::to_string_pretty(report)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|e| OpsError::Malformed {
                what: "JSON output".into(),
                reason: e.to_string(),
            }),
    }
}

/// Runs a `sapper group` command and prints its result on stdout. A failed deletion prints
/// every group's result first and then returns the error (the binary exits 1).
pub async fn run_and_print(args: &GroupArgs) -> Result<(), OpsError> {
    let out = group::run(args).await?;
    print!("{}", out.text);
    match out.failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
