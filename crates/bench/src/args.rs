//! Command-line arguments of `sapper bench produce` and `sapper bench consume`.
//!
//! The argument structs are `clap::Args` so the `sapper` binary can flatten them into its own
//! subcommands; the defaults here are the one place the benchmark's defaults live.

use clap::{Args, ValueEnum};

/// Topic used when `--topic` is not given.
pub const DEFAULT_TOPIC: &str = "sapper-bench";

/// Acknowledgement level the producer asks for (`acks`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// Fire and forget: the broker sends no response.
    #[value(name = "0")]
    None,
    /// The partition leader has appended the batch.
    #[value(name = "1")]
    Leader,
    /// Every in-sync replica has the batch.
    #[value(name = "all", alias = "-1")]
    All,
}

impl Acks {
    /// The value librdkafka's `acks` property takes.
    pub fn as_config(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }
}

/// Batch compression codec the producer uses (`compression.type`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Batches are sent uncompressed.
    None,
    /// gzip (zlib).
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The value librdkafka's `compression.type` property takes.
    pub fn as_config(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Arguments of `sapper bench produce`: what to write, how fast, and for how long at most.
#[derive(Args, Debug, Clone)]
pub struct ProduceArgs {
    /// Bootstrap broker(s), `host:port[,host:port...]`.
    #[arg(long)]
    pub bootstrap: String,

    /// Topic to produce to; created (with `--replication-factor`) when missing.
    #[arg(long, default_value = DEFAULT_TOPIC)]
    pub topic: String,

    /// Partition count used when the topic has to be created; records go round-robin over the
    /// partitions the topic actually has.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,

    /// Replicas of each partition when the topic has to be created.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub replication_factor: i32,

    /// The created topic's `min.insync.replicas` (unset: the broker's default).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub min_insync_replicas: Option<i32>,

    /// Number of records to send.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,

    /// Payload size of each record, in bytes (records carry no key).
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,

    /// Acknowledgement level: 0, 1 or all.
    #[arg(long, value_enum, default_value = "1", allow_hyphen_values = true)]
    pub acks: Acks,

    /// Batch compression codec.
    #[arg(long, value_enum, default_value = "none")]
    pub compression: Compression,

    /// How long the client waits to fill a batch (`linger.ms`).
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,

    /// Maximum batch size in bytes (`batch.size`).
    #[arg(long, default_value_t = 1_000_000)]
    pub batch_size: u64,

    /// Send at this fixed rate (records per second) instead of as fast as possible.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,

    /// Stop sending after this many seconds even if fewer than `--records` were sent.
    #[arg(long)]
    pub duration_secs: Option<u64>,

    /// Hard limit on the whole run, including topic creation and the final flush; records not
    /// acknowledged by then are counted as errors and the report is marked `timed_out`.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,

    /// Enable the idempotent producer (`enable.idempotence=true`).
    #[arg(long)]
    pub idempotent: bool,

    /// Extra librdkafka property `key=value`; repeatable, applied last so it overrides.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

/// Arguments of `sapper bench consume`: read a topic back from the beginning.
#[derive(Args, Debug, Clone)]
pub struct ConsumeArgs {
    /// Bootstrap broker(s), `host:port[,host:port...]`.
    #[arg(long)]
    pub bootstrap: String,

    /// Topic to read from its first offset.
    #[arg(long, default_value = DEFAULT_TOPIC)]
    pub topic: String,

    /// Stop after this many records; the run also stops once every partition reaches the high
    /// watermark it had when the run started, whichever comes first.
    #[arg(long)]
    pub records: Option<u64>,

    /// Hard limit on the whole run; on expiry the report is marked `timed_out`.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,

    /// Extra librdkafka property `key=value`; repeatable, applied last so it overrides.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

/// Arguments of `sapper bench commits`: offset commits from many groups at once, beside a
/// produce baseline of the same shape.
#[derive(Args, Debug, Clone)]
pub struct CommitsArgs {
    /// Bootstrap broker(s), `host:port[,host:port...]`.
    #[arg(long)]
    pub bootstrap: String,

    /// Topic whose offsets are committed; created (replication factor 1) when missing. Nothing
    /// is produced to it or read from it.
    #[arg(long, default_value = DEFAULT_COMMITS_TOPIC)]
    pub topic: String,

    /// Partitions of `--topic` when it has to be created; each commit request carries one
    /// offset for every partition the topic has.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,

    /// Consumer groups committing in parallel, one client and one thread each; each has at
    /// most one commit in flight.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub groups: u32,

    /// Seconds each phase (commits, then the produce baseline) runs.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration_secs: u64,

    /// Stop a group (or a baseline producer) after this many requests even before
    /// `--duration-secs`.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_requests: u64,

    /// Skip the produce baseline.
    #[arg(long)]
    pub no_baseline: bool,

    /// Topic of the baseline: one acks=1 single-record produce request at a time per
    /// producer, as many producers as groups.
    #[arg(long, default_value = DEFAULT_BASELINE_TOPIC)]
    pub baseline_topic: String,

    /// Partitions of the baseline topic when it has to be created (50, like
    /// `__consumer_offsets`); producer i writes to partition i modulo the count.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i32).range(1..))]
    pub baseline_partitions: i32,

    /// Payload bytes of each baseline record (a commit appends a record of about 100 bytes to
    /// `__consumer_offsets` and one to `__sapper_offset_history`).
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,

    /// Hard limit on the whole run, setup included; the report is marked `timed_out`.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,

    /// Extra librdkafka property `key=value` for every client; repeatable, applied last.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

/// Topic `sapper bench commits` commits offsets of.
pub const DEFAULT_COMMITS_TOPIC: &str = "sapper-bench-commits";
/// Topic of the produce baseline of `sapper bench commits`.
pub const DEFAULT_BASELINE_TOPIC: &str = "sapper-bench-commits-baseline";
/// Topic the members of `sapper bench rebalance` subscribe to.
pub const DEFAULT_REBALANCE_TOPIC: &str = "sapper-bench-rebalance";

/// Arguments of `sapper bench rebalance`: how long a group takes to hand a dead member's
/// partitions to the survivors.
#[derive(Args, Debug, Clone)]
pub struct RebalanceArgs {
    /// Bootstrap broker(s), `host:port[,host:port...]`.
    #[arg(long)]
    pub bootstrap: String,

    /// Topic the members subscribe to; created (replication factor 1) when missing.
    #[arg(long, default_value = DEFAULT_REBALANCE_TOPIC)]
    pub topic: String,

    /// Partitions of `--topic` when it has to be created.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,

    /// Member processes in the group.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=100))]
    pub members: u32,

    /// Trials; each kills one member (SIGKILL), replaces it, stops another gracefully
    /// (SIGTERM), and replaces it. Default: 1 with the client's default session timeout
    /// (45 s), 3 when `--session-timeout-ms` is given.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub trials: Option<u32>,

    /// The members' `session.timeout.ms`; unset keeps librdkafka's default (45000).
    #[arg(long)]
    pub session_timeout_ms: Option<u64>,

    /// The members' `heartbeat.interval.ms`; unset keeps librdkafka's default (3000).
    #[arg(long)]
    pub heartbeat_interval_ms: Option<u64>,

    /// Hard limit on the whole run; members are killed and the report marked `timed_out`.
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,

    /// Extra librdkafka property `key=value` for every member; repeatable, applied last.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

impl RebalanceArgs {
    /// Trials to run: `--trials`, else 1 at the client's default session timeout and 3 with a
    /// shorter one.
    pub fn trials(&self) -> u32 {
        self.trials
            .unwrap_or(if self.session_timeout_ms.is_some() { 3 } else { 1 })
    }
}

/// Arguments of the hidden `sapper bench group-member`: one consumer in a group, printing a
/// JSON line on stdout at every assignment change, run as a child of `sapper bench
/// rebalance`.
#[derive(Args, Debug, Clone)]
pub struct GroupMemberArgs {
    /// Bootstrap broker(s).
    #[arg(long)]
    pub bootstrap: String,

    /// Group to join.
    #[arg(long)]
    pub group: String,

    /// Topic to subscribe to.
    #[arg(long)]
    pub topic: String,

    /// `session.timeout.ms`; unset keeps the client's default.
    #[arg(long)]
    pub session_timeout_ms: Option<u64>,

    /// `heartbeat.interval.ms`; unset keeps the client's default.
    #[arg(long)]
    pub heartbeat_interval_ms: Option<u64>,

    /// Leave the group and exit after this long even if never told to.
    #[arg(long, default_value_t = 3600)]
    pub timeout_secs: u64,

    /// Extra librdkafka property `key=value`; repeatable, applied last.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

/// Parses one `-X key=value` librdkafka property. The value may itself contain `=`.
pub fn parse_property(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got `{s}`"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("empty property name in `{s}`"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    enum Cli {
        Produce(ProduceArgs),
        Consume(ConsumeArgs),
    }

    fn produce(args: &[&str]) -> Result<ProduceArgs, clap::Error> {
        let argv = ["bench", "produce"].iter().chain(args);
        match Cli::try_parse_from(argv)? {
            Cli::Produce(a) => Ok(a),
            Cli::Consume(_) => unreachable!("parsed the produce subcommand"),
        }
    }

    fn consume(args: &[&str]) -> Result<ConsumeArgs, clap::Error> {
        let argv = ["bench", "consume"].iter().chain(args);
        match Cli::try_parse_from(argv)? {
            Cli::Consume(a) => Ok(a),
            Cli::Produce(_) => unreachable!("parsed the consume subcommand"),
        }
    }

    #[test]
    fn produce_defaults_match_the_documented_ones() {
        let a = produce(&["--bootstrap", "127.0.0.1:9092"]).unwrap();
        assert_eq!(a.bootstrap, "127.0.0.1:9092");
        assert_eq!(a.topic, "sapper-bench");
        assert_eq!(a.partitions, 6);
        assert_eq!((a.replication_factor, a.min_insync_replicas), (1, None));
        assert_eq!(a.records, 1_000_000);
        assert_eq!(a.record_size, 100);
        assert_eq!(a.acks, Acks::Leader);
        assert_eq!(a.compression, Compression::None);
        assert_eq!(a.linger_ms, 5);
        assert_eq!(a.batch_size, 1_000_000);
        assert_eq!(a.rate, None);
        assert_eq!(a.duration_secs, None);
        assert_eq!(a.timeout_secs, 300);
        assert!(!a.idempotent);
        assert!(a.properties.is_empty());
    }

    #[test]
    fn produce_creates_replicated_topics_on_request() {
        let a = produce(&[
            "--bootstrap=h:1",
            "--replication-factor=3",
            "--min-insync-replicas=2",
            "--acks=all",
        ])
        .unwrap();
        assert_eq!(
            (a.replication_factor, a.min_insync_replicas, a.acks),
            (3, Some(2), Acks::All)
        );
        assert!(produce(&["--bootstrap=h:1", "--replication-factor=0"]).is_err());
    }

    #[test]
    fn produce_requires_bootstrap() {
        assert!(produce(&[]).is_err());
    }

    #[test]
    fn produce_parses_every_option_and_repeated_properties() {
        let a = produce(&[
            "--bootstrap=b:1",
            "--topic=t",
            "--partitions=1",
            "--records=5",
            "--record-size=1024",
            "--acks=all",
            "--compression=zstd",
            "--linger-ms=0",
            "--batch-size=16384",
            "--rate=1000",
            "--duration-secs=10",
            "--timeout-secs=20",
            "--idempotent",
            "-X",
            "socket.nagle.disable=true",
            "-Xclient.id=a=b",
        ])
        .unwrap();
        assert_eq!(a.topic, "t");
        assert_eq!(a.partitions, 1);
        assert_eq!(a.records, 5);
        assert_eq!(a.record_size, 1024);
        assert_eq!(a.acks.as_config(), "all");
        assert_eq!(a.compression.as_config(), "zstd");
        assert_eq!(a.linger_ms, 0);
        assert_eq!(a.batch_size, 16384);
        assert_eq!(a.rate, Some(1000));
        assert_eq!(a.duration_secs, Some(10));
        assert_eq!(a.timeout_secs, 20);
        assert!(a.idempotent);
        assert_eq!(
            a.properties,
            vec![
                ("socket.nagle.disable".to_owned(), "true".to_owned()),
                ("client.id".to_owned(), "a=b".to_owned()),
            ]
        );
    }

    #[test]
    fn acks_accepts_kafka_spellings_and_rejects_others() {
        let p = |v: &str| produce(&["--bootstrap=b:1", "--acks", v]).map(|a| a.acks);
        assert_eq!(p("0").unwrap(), Acks::None);
        assert_eq!(p("1").unwrap(), Acks::Leader);
        assert_eq!(p("all").unwrap(), Acks::All);
        assert_eq!(p("-1").unwrap(), Acks::All);
        assert_eq!(
            produce(&["--bootstrap=b:1", "--acks=-1"]).unwrap().acks,
            Acks::All
        );
        assert!(p("2").is_err());
    }

    #[test]
    fn produce_rejects_zero_partitions_rate_and_unknown_codec() {
        assert!(produce(&["--bootstrap=b:1", "--partitions=0"]).is_err());
        assert!(produce(&["--bootstrap=b:1", "--rate=0"]).is_err());
        assert!(produce(&["--bootstrap=b:1", "--compression=brotli"]).is_err());
        assert!(produce(&["--bootstrap=b:1", "-X", "novalue"]).is_err());
    }

    #[test]
    fn consume_defaults_and_options() {
        let a = consume(&["--bootstrap", "h:9"]).unwrap();
        assert_eq!(a.topic, "sapper-bench");
        assert_eq!(a.records, None);
        assert_eq!(a.timeout_secs, 120);
        let a = consume(&[
            "--bootstrap=h:9",
            "--topic=x",
            "--records=7",
            "--timeout-secs=3",
            "-Xa=b",
        ])
        .unwrap();
        assert_eq!(a.topic, "x");
        assert_eq!(a.records, Some(7));
        assert_eq!(a.timeout_secs, 3);
        assert_eq!(a.properties, vec![("a".to_owned(), "b".to_owned())]);
    }

    #[test]
    fn parse_property_splits_on_first_equals_and_rejects_malformed() {
        assert_eq!(parse_property("k=v").unwrap(), ("k".into(), "v".into()));
        assert_eq!(parse_property("k=").unwrap(), ("k".into(), String::new()));
        assert_eq!(parse_property("k=v=w").unwrap(), ("k".into(), "v=w".into()));
        assert!(parse_property("kv").is_err());
        assert!(parse_property("=v").is_err());
    }
}
