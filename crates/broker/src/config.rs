//! Broker configuration: defaults, a TOML file, `SAPPER_*` environment variables and flags.
//!
//! Precedence, lowest to highest: built-in defaults, `--config FILE` (TOML, unknown keys are an
//! error naming the key), environment variables, command-line flags. Keys are Kafka's broker
//! config names in snake_case (`log.retention.ms` -> `log_retention_ms`); `docs/configuration.md`
//! lists them all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use sapper_log::FlushPolicy;

/// Why a configuration could not be assembled.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The broker's effective configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// Kafka `node.id`.
    pub node_id: i32,
    /// Address the client listener binds (`listeners`).
    pub listen: SocketAddr,
    /// host:port clients are told to connect to (`advertised.listeners`); defaults to the bound address.
    pub advertised_listener: Option<String>,
    /// Kafka `log.dirs` (one directory).
    pub data_dir: PathBuf,
    /// Kafka `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Kafka `num.partitions`: partitions of auto-created topics and of CreateTopics with -1.
    pub num_partitions: i32,
    /// Kafka `log.segment.bytes`.
    pub log_segment_bytes: i64,
    /// Kafka `log.roll.ms`.
    pub log_segment_ms: i64,
    /// Kafka `log.retention.ms` (-1: keep forever).
    pub log_retention_ms: i64,
    /// Kafka `log.retention.bytes` (-1: no size limit).
    pub log_retention_bytes: i64,
    /// Kafka `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: u64,
    /// Kafka `log.cleaner.backoff.ms`: pause between two compaction passes over all logs.
    pub cleaner_backoff_ms: u64,
    /// Kafka `message.max.bytes`: default for the topic config `max.message.bytes`.
    pub message_max_bytes: i32,
    /// When data reaches the disk: page cache (Kafka's default), every batch, or every N ms.
    pub flush: FlushPolicy,
    /// Kafka `socket.request.max.bytes`.
    pub socket_request_max_bytes: usize,
    /// Upper bound on concurrent client connections.
    pub max_connections: usize,
    /// Consumer group coordinator and committed offsets.
    pub groups: crate::group::GroupSettings,
    /// Roles, quorum voters, rack: cluster mode when voters are given.
    pub cluster: crate::cluster::ClusterSettings,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_listener: None,
            data_dir: PathBuf::from("./sapper-data"),
            auto_create_topics: true,
            num_partitions: 1,
            log_segment_bytes: 1024 * 1024 * 1024,
            log_segment_ms: 7 * 24 * 3600 * 1000,
            log_retention_ms: 7 * 24 * 3600 * 1000,
            log_retention_bytes: -1,
            retention_check_interval_ms: 300_000,
            cleaner_backoff_ms: 15_000,
            message_max_bytes: 1_048_588,
            flush: FlushPolicy::PageCache,
            socket_request_max_bytes: sapper_wire::frame::DEFAULT_MAX_FRAME_BYTES,
            max_connections: 10_000,
            groups: crate::group::GroupSettings::default(),
            cluster: crate::cluster::ClusterSettings::default(),
        }
    }
}

/// The TOML file's shape: every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub node_id: Option<i32>,
    pub listen: Option<SocketAddr>,
    pub advertised_listener: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub auto_create_topics: Option<bool>,
    pub num_partitions: Option<i32>,
    pub log_segment_bytes: Option<i64>,
    pub log_segment_ms: Option<i64>,
    pub log_retention_ms: Option<i64>,
    pub log_retention_bytes: Option<i64>,
    pub retention_check_interval_ms: Option<u64>,
    pub cleaner_backoff_ms: Option<u64>,
    pub message_max_bytes: Option<i32>,
    /// `page-cache`, `every-batch` or `interval`.
    pub flush: Option<String>,
    pub flush_interval_ms: Option<u64>,
    pub socket_request_max_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub group_initial_rebalance_delay_ms: Option<i64>,
    pub group_min_session_timeout_ms: Option<i32>,
    pub group_max_session_timeout_ms: Option<i32>,
    pub offsets_retention_minutes: Option<i64>,
    pub offset_metadata_max_bytes: Option<usize>,
    /// Sapper's own: retention of the commit history topic.
    pub offsets_history_retention_ms: Option<i64>,
    /// `broker,controller`, `broker` or `controller`.
    pub process_roles: Option<String>,
    pub controller_listener: Option<SocketAddr>,
    /// `1@127.0.0.1:19091,2@127.0.0.1:19092,...`
    pub controller_quorum_voters: Option<String>,
    pub broker_rack: Option<String>,
    pub default_replication_factor: Option<i16>,
}

/// Flags and `SAPPER_*` variables; each overrides the file when given.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct BrokerArgs {
    /// TOML configuration file.
    #[arg(long, env = "SAPPER_CONFIG")]
    pub config: Option<PathBuf>,
    /// This broker's id (Kafka node.id).
    #[arg(long, env = "SAPPER_NODE_ID")]
    pub node_id: Option<i32>,
    /// Client listener address; port 0 picks a free port.
    #[arg(long, env = "SAPPER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// host:port advertised to clients (defaults to the bound address).
    #[arg(long, env = "SAPPER_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,
    /// Directory holding this broker's logs and metadata (Kafka log.dirs).
    #[arg(long, env = "SAPPER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Create topics on first Metadata request (auto.create.topics.enable).
    #[arg(long, env = "SAPPER_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Default partition count (num.partitions).
    #[arg(long, env = "SAPPER_NUM_PARTITIONS")]
    pub num_partitions: Option<i32>,
    /// Default segment size (log.segment.bytes).
    #[arg(long, env = "SAPPER_LOG_SEGMENT_BYTES")]
    pub log_segment_bytes: Option<i64>,
    /// Default segment age before rolling (log.roll.ms).
    #[arg(long, env = "SAPPER_LOG_SEGMENT_MS")]
    pub log_segment_ms: Option<i64>,
    /// Default retention time (log.retention.ms, -1 keeps forever).
    #[arg(long, env = "SAPPER_LOG_RETENTION_MS")]
    pub log_retention_ms: Option<i64>,
    /// Default retention size per partition (log.retention.bytes, -1 unlimited).
    #[arg(long, env = "SAPPER_LOG_RETENTION_BYTES")]
    pub log_retention_bytes: Option<i64>,
    /// How often retention runs (log.retention.check.interval.ms).
    #[arg(long, env = "SAPPER_RETENTION_CHECK_INTERVAL_MS")]
    pub retention_check_interval_ms: Option<u64>,
    /// Pause between compaction passes (log.cleaner.backoff.ms).
    #[arg(long, env = "SAPPER_CLEANER_BACKOFF_MS")]
    pub cleaner_backoff_ms: Option<u64>,
    /// Largest record batch accepted by default (message.max.bytes).
    #[arg(long, env = "SAPPER_MESSAGE_MAX_BYTES")]
    pub message_max_bytes: Option<i32>,
    /// Flush policy: page-cache (default), every-batch, or interval (with --flush-interval-ms).
    #[arg(long, env = "SAPPER_FLUSH")]
    pub flush: Option<String>,
    /// Interval for --flush interval.
    #[arg(long, env = "SAPPER_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    #[command(flatten)]
    pub groups: crate::group::GroupArgs,
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterArgs,
}

impl BrokerConfig {
    /// Builds the effective configuration from defaults, the optional file and `args`.
    pub fn load(args: &BrokerArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => ConfigFile::default(),
        };
        let mut config = Self::default();
        config.apply_file(&file)?;
        config.apply_args(args)?;
        config.validate()?;
        Ok(config)
    }

    fn apply_file(&mut self, f: &ConfigFile) -> Result<(), ConfigError> {
        set(&mut self.node_id, f.node_id);
        set(&mut self.listen, f.listen);
        if f.advertised_listener.is_some() {
            self.advertised_listener.clone_from(&f.advertised_listener);
        }
        set(&mut self.data_dir, f.data_dir.clone());
        set(&mut self.auto_create_topics, f.auto_create_topics);
        set(&mut self.num_partitions, f.num_partitions);
        set(&mut self.log_segment_bytes, f.log_segment_bytes);
        set(&mut self.log_segment_ms, f.log_segment_ms);
        set(&mut self.log_retention_ms, f.log_retention_ms);
        set(&mut self.log_retention_bytes, f.log_retention_bytes);
        set(
            &mut self.retention_check_interval_ms,
            f.retention_check_interval_ms,
        );
        set(&mut self.cleaner_backoff_ms, f.cleaner_backoff_ms);
        set(&mut self.message_max_bytes, f.message_max_bytes);
        set(&mut self.socket_request_max_bytes, f.socket_request_max_bytes);
        set(&mut self.max_connections, f.max_connections);
        if f.flush.is_some() || f.flush_interval_ms.is_some() {
            self.flush = parse_flush(f.flush.as_deref(), f.flush_interval_ms)?;
        }
        self.groups.apply(&crate::group::GroupArgs {
            group_initial_rebalance_delay_ms: f.group_initial_rebalance_delay_ms,
            group_min_session_timeout_ms: f.group_min_session_timeout_ms,
            group_max_session_timeout_ms: f.group_max_session_timeout_ms,
            offsets_retention_minutes: f.offsets_retention_minutes,
            offset_metadata_max_bytes: f.offset_metadata_max_bytes,
            offsets_history_retention_ms: f.offsets_history_retention_ms,
        });
        self.cluster
            .apply(&crate::cluster::ClusterArgs {
                roles: f.process_roles.clone(),
                controller_listen: f.controller_listener,
                voters: f.controller_quorum_voters.clone(),
                rack: f.broker_rack.clone(),
                default_replication_factor: f.default_replication_factor,
            })
            .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        Ok(())
    }

    fn apply_args(&mut self, a: &BrokerArgs) -> Result<(), ConfigError> {
        set(&mut self.node_id, a.node_id);
        set(&mut self.listen, a.listen);
        if a.advertised_listener.is_some() {
            self.advertised_listener.clone_from(&a.advertised_listener);
        }
        set(&mut self.data_dir, a.data_dir.clone());
        set(&mut self.auto_create_topics, a.auto_create_topics);
        set(&mut self.num_partitions, a.num_partitions);
        set(&mut self.log_segment_bytes, a.log_segment_bytes);
        set(&mut self.log_segment_ms, a.log_segment_ms);
        set(&mut self.log_retention_ms, a.log_retention_ms);
        set(&mut self.log_retention_bytes, a.log_retention_bytes);
        set(
            &mut self.retention_check_interval_ms,
            a.retention_check_interval_ms,
        );
        set(&mut self.cleaner_backoff_ms, a.cleaner_backoff_ms);
        set(&mut self.message_max_bytes, a.message_max_bytes);
        if a.flush.is_some() || a.flush_interval_ms.is_some() {
            self.flush = parse_flush(a.flush.as_deref(), a.flush_interval_ms)?;
        }
        self.groups.apply(&a.groups);
        self.cluster
            .apply(&a.cluster)
            .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_string(),
            })
        };
        if self.node_id < 0 {
            return invalid("node_id", "must be >= 0");
        }
        if self.num_partitions < 1 {
            return invalid("num_partitions", "must be >= 1");
        }
        if self.log_segment_bytes < crate::topic_config::MIN_SEGMENT_BYTES {
            return invalid("log_segment_bytes", "must be >= 1024");
        }
        if self.log_segment_ms < 1 {
            return invalid("log_segment_ms", "must be >= 1");
        }
        if self.log_retention_ms < -1 {
            return invalid("log_retention_ms", "must be >= -1");
        }
        if self.message_max_bytes < 0 {
            return invalid("message_max_bytes", "must be >= 0");
        }
        if self.retention_check_interval_ms == 0 {
            return invalid("retention_check_interval_ms", "must be >= 1");
        }
        if self.cleaner_backoff_ms == 0 {
            return invalid("cleaner_backoff_ms", "must be >= 1");
        }
        if let Err((key, message)) = self.groups.validate() {
            return invalid(key, message);
        }
        if let Err((key, message)) = self.cluster.validate(self.node_id) {
            return invalid(key, &message);
        }
        Ok(())
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn parse_flush(mode: Option<&str>, interval_ms: Option<u64>) -> Result<FlushPolicy, ConfigError> {
    match (mode, interval_ms) {
        (Some("page-cache") | None, None) => Ok(FlushPolicy::PageCache),
        (Some("every-batch"), None) => Ok(FlushPolicy::EveryBatch),
        (Some("interval") | None, Some(ms)) if ms > 0 => Ok(FlushPolicy::IntervalMs(ms)),
        (Some("interval"), None) => Err(ConfigError::Invalid {
            key: "flush",
            message: "flush = interval needs flush_interval_ms".into(),
        }),
        (Some(other), _) => Err(ConfigError::Invalid {
            key: "flush",
            message: format!("unknown flush policy '{other}' (page-cache, every-batch, interval)"),
        }),
        (None, Some(_)) => Err(ConfigError::Invalid {
            key: "flush_interval_ms",
            message: "must be > 0".into(),
        }),
    }
}

fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_toml(&text).map_err(|message| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    })
}

/// Parses the TOML text of a config file; the error names the offending key.
pub fn parse_toml(text: &str) -> Result<ConfigFile, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named_in_the_error() {
        let err = parse_toml("node_id = 3\nlog_retention_hours = 5\n").unwrap_err();
        assert!(err.contains("log_retention_hours"), "{err}");
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sapper.toml");
        std::fs::write(
            &path,
            "node_id = 3\nnum_partitions = 4\nflush = \"every-batch\"\n",
        )
        .unwrap();
        let args = BrokerArgs {
            config: Some(path),
            node_id: Some(9),
            ..Default::default()
        };
        let config = BrokerConfig::load(&args).unwrap();
        assert_eq!(config.node_id, 9);
        assert_eq!(config.num_partitions, 4);
        assert_eq!(config.flush, FlushPolicy::EveryBatch);
    }

    #[test]
    fn flush_policy_parsing() {
        assert_eq!(
            parse_flush(Some("interval"), Some(50)).unwrap(),
            FlushPolicy::IntervalMs(50)
        );
        assert!(parse_flush(Some("sometimes"), None).is_err());
        assert!(parse_flush(Some("interval"), None).is_err());
    }

    fn load_toml(text: &str, args: BrokerArgs) -> Result<BrokerConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sapper.toml");
        std::fs::write(&path, text).unwrap();
        BrokerConfig::load(&BrokerArgs {
            config: Some(path),
            ..args
        })
    }

    #[test]
    fn group_settings_come_from_toml_keys() {
        let config = load_toml(
            "group_initial_rebalance_delay_ms = 0\n\
             group_min_session_timeout_ms = 1000\n\
             group_max_session_timeout_ms = 60000\n\
             offsets_retention_minutes = 60\n\
             offset_metadata_max_bytes = 100\n\
             offsets_history_retention_ms = -1\n",
            BrokerArgs::default(),
        )
        .unwrap();
        let g = &config.groups;
        assert_eq!(g.initial_rebalance_delay_ms, 0);
        assert_eq!(g.min_session_timeout_ms, 1000);
        assert_eq!(g.max_session_timeout_ms, 60_000);
        assert_eq!(g.offsets_retention_ms, 3_600_000);
        assert_eq!(g.offset_metadata_max_bytes, 100);
        assert_eq!(g.offsets_history_retention_ms, -1);
    }

    #[test]
    fn group_defaults_are_kafkas() {
        let g = load_toml("", BrokerArgs::default()).unwrap().groups;
        assert_eq!(g.initial_rebalance_delay_ms, 3000);
        assert_eq!(g.min_session_timeout_ms, 6000);
        assert_eq!(g.max_session_timeout_ms, 1_800_000);
        assert_eq!(g.offsets_retention_ms, 7 * 24 * 60 * 60_000);
        assert_eq!(g.offset_metadata_max_bytes, 4096);
    }

    #[test]
    fn group_flags_override_toml_keys() {
        let args = BrokerArgs {
            groups: crate::group::GroupArgs {
                group_max_session_timeout_ms: Some(30_000),
                offset_metadata_max_bytes: Some(10),
                ..Default::default()
            },
            ..Default::default()
        };
        let config = load_toml(
            "group_max_session_timeout_ms = 60000\noffset_metadata_max_bytes = 100\n",
            args,
        )
        .unwrap();
        assert_eq!(config.groups.max_session_timeout_ms, 30_000);
        assert_eq!(config.groups.offset_metadata_max_bytes, 10);
    }

    #[test]
    fn cluster_settings_come_from_toml_keys_and_flags() {
        let config = load_toml(
            "node_id = 2\n\
             process_roles = \"broker\"\n\
             controller_quorum_voters = \"1@127.0.0.1:19091,2@127.0.0.1:19092\"\n\
             broker_rack = \"a\"\n\
             default_replication_factor = 2\n",
            BrokerArgs {
                cluster: crate::cluster::ClusterArgs {
                    rack: Some("b".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .unwrap();
        let c = &config.cluster;
        assert!(c.is_cluster());
        assert!(c.roles.broker && !c.roles.controller);
        assert_eq!(c.rack.as_deref(), Some("b"));
        assert_eq!(c.default_replication_factor, 2);
        assert_eq!(c.controller_listen(2), Some("127.0.0.1:19092".parse().unwrap()));
        let err = load_toml(
            "controller_quorum_voters = \"1@127.0.0.1:1\"\nnode_id = 5\n",
            BrokerArgs::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("controller_quorum_voters"), "{err}");
    }

    #[test]
    fn group_settings_out_of_range_name_the_key() {
        for (text, key) in [
            (
                "group_initial_rebalance_delay_ms = -1\n",
                "group_initial_rebalance_delay_ms",
            ),
            (
                "group_min_session_timeout_ms = 0\n",
                "group_min_session_timeout_ms",
            ),
            (
                "group_max_session_timeout_ms = 5000\n",
                "group_max_session_timeout_ms",
            ),
            ("offsets_retention_minutes = 0\n", "offsets_retention_minutes"),
            (
                "offsets_history_retention_ms = -2\n",
                "offsets_history_retention_ms",
            ),
        ] {
            let err = load_toml(text, BrokerArgs::default()).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        // A negative size is not even a valid value for the key's type.
        let err = parse_toml("offset_metadata_max_bytes = -1\n").unwrap_err();
        assert!(err.contains("offset_metadata_max_bytes"), "{err}");
    }
}
