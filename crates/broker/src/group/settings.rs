//! Broker settings for groups and committed offsets, with Kafka's names and defaults.

/// Group coordinator settings (part of the broker configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    /// Kafka `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i64,
    /// Kafka `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// Kafka `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// Kafka `offsets.retention.minutes`, in ms: offsets of a group Empty this long expire.
    pub offsets_retention_ms: i64,
    /// Kafka `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// Retention of `__sapper_offset_history` (Sapper's `offsets.history.retention.ms`).
    pub offsets_history_retention_ms: i64,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            offset_metadata_max_bytes: 4096,
            offsets_history_retention_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// Command-line flags (and `SAPPER_*` variables) for [`GroupSettings`]; the config file's
/// keys of the same names fill the same struct.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct GroupArgs {
    /// How long the first rebalance of an empty group waits for more members
    /// (group.initial.rebalance.delay.ms).
    #[arg(long, env = "SAPPER_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<i64>,
    /// Smallest session timeout a member may ask for (group.min.session.timeout.ms).
    #[arg(long, env = "SAPPER_GROUP_MIN_SESSION_TIMEOUT_MS")]
    pub group_min_session_timeout_ms: Option<i32>,
    /// Largest session timeout a member may ask for (group.max.session.timeout.ms).
    #[arg(long, env = "SAPPER_GROUP_MAX_SESSION_TIMEOUT_MS")]
    pub group_max_session_timeout_ms: Option<i32>,
    /// Offsets of a group that stayed empty this long expire (offsets.retention.minutes).
    #[arg(long, env = "SAPPER_OFFSETS_RETENTION_MINUTES")]
    pub offsets_retention_minutes: Option<i64>,
    /// Largest metadata string an offset commit may carry (offset.metadata.max.bytes).
    #[arg(long, env = "SAPPER_OFFSET_METADATA_MAX_BYTES")]
    pub offset_metadata_max_bytes: Option<usize>,
    /// How long the commit history is kept (offsets.history.retention.ms, -1 keeps forever).
    #[arg(long, env = "SAPPER_OFFSETS_HISTORY_RETENTION_MS")]
    pub offsets_history_retention_ms: Option<i64>,
}

impl GroupSettings {
    /// Applies the values that were given (flags, variables or config file keys).
    pub fn apply(&mut self, a: &GroupArgs) {
        if let Some(v) = a.group_initial_rebalance_delay_ms {
            self.initial_rebalance_delay_ms = v;
        }
        if let Some(v) = a.group_min_session_timeout_ms {
            self.min_session_timeout_ms = v;
        }
        if let Some(v) = a.group_max_session_timeout_ms {
            self.max_session_timeout_ms = v;
        }
        if let Some(v) = a.offsets_retention_minutes {
            self.offsets_retention_ms = v.saturating_mul(60_000);
        }
        if let Some(v) = a.offset_metadata_max_bytes {
            self.offset_metadata_max_bytes = v;
        }
        if let Some(v) = a.offsets_history_retention_ms {
            self.offsets_history_retention_ms = v;
        }
    }

    /// The first setting out of range, as (config key, what it must be).
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.initial_rebalance_delay_ms < 0 {
            return Err(("group_initial_rebalance_delay_ms", "must be >= 0"));
        }
        if self.min_session_timeout_ms < 1 {
            return Err(("group_min_session_timeout_ms", "must be >= 1"));
        }
        if self.max_session_timeout_ms < self.min_session_timeout_ms {
            return Err((
                "group_max_session_timeout_ms",
                "must be >= group_min_session_timeout_ms",
            ));
        }
        if self.offsets_retention_ms < 60_000 {
            return Err(("offsets_retention_minutes", "must be >= 1"));
        }
        if self.offsets_history_retention_ms < -1 {
            return Err(("offsets_history_retention_ms", "must be >= -1"));
        }
        Ok(())
    }
}
