//! [`ControllerNode`]: a node with the controller role. It runs this node's voter of the
//! metadata quorum on the controller listener and, while it is the active controller, creates
//! the internal topics (`__consumer_offsets`, `__sapper_offset_history`) through the
//! controller like any other topic. Every controller tries; the one that is active wins and
//! the others see TOPIC_ALREADY_EXISTS or the topics in the image, which is fine.
//!
//! The internal topics get `default_replication_factor` replicas, capped by the live brokers.
//! So that a cluster starting up does not create them with one replica because the first
//! broker registered a moment before the others, creation waits until as many brokers are
//! live as there are voters (the usual cluster: every node has both roles), or 30 s at most.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sapper_meta::controller::ControllerError;
use sapper_meta::lifecycle::{CallPolicy, ClientError, ControllerClient, Directory};
use sapper_meta::raft::{MetadataQuorum, QuorumConfig, QuorumError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::node::quorum_voters;
use super::settings::ClusterSettings;
use crate::group::store::{internal_topic_configs, HISTORY_TOPIC, OFFSETS_PARTITIONS, OFFSETS_TOPIC};

/// The longest internal-topic creation waits for the expected brokers.
const WAIT_FOR_BROKERS: Duration = Duration::from_secs(30);
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// A running controller node.
pub struct ControllerNode {
    quorum: Arc<MetadataQuorum>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for ControllerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerNode")
            .field("node_id", &self.quorum.node_id())
            .field("listener", &self.quorum.local_addr())
            .finish_non_exhaustive()
    }
}

impl ControllerNode {
    /// Binds the controller listener and joins (or initializes) the quorum.
    pub async fn start(
        node_id: i32,
        settings: &ClusterSettings,
        data_dir: &Path,
        history_retention_ms: i64,
    ) -> Result<Self, QuorumError> {
        let voters = settings
            .voters
            .as_ref()
            .ok_or_else(|| QuorumError::Config("a controller needs controller_quorum_voters".into()))?;
        let listen: SocketAddr = settings
            .controller_listen(node_id)
            .ok_or_else(|| QuorumError::Config(format!("node {node_id} has no controller listener")))?;
        let id = u64::try_from(node_id)
            .map_err(|_| QuorumError::Config(format!("node id {node_id} is negative")))?;
        let config = QuorumConfig::new(id, listen, quorum_voters(voters), data_dir.to_path_buf());
        let quorum = Arc::new(MetadataQuorum::start(config).await?);
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let client = ControllerClient::new(
            Directory::new(voters.values().map(ToString::to_string).collect()),
            CallPolicy {
                timeout: Duration::from_secs(5),
                retry_for: Duration::from_secs(5),
            },
        );
        let internal = InternalTopics {
            quorum: quorum.clone(),
            client,
            default_rf: settings.default_replication_factor,
            expected_brokers: voters.len(),
            history_retention_ms,
        };
        tasks.spawn(internal.run(cancel.clone()));
        tasks.close();
        Ok(Self {
            quorum,
            cancel,
            tasks,
        })
    }

    pub fn quorum(&self) -> &Arc<MetadataQuorum> {
        &self.quorum
    }

    /// The bound controller listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.quorum.local_addr()
    }

    /// Stops the internal-topics task and the quorum.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.wait().await;
        self.quorum.shutdown().await;
    }
}

/// Creates the internal topics once, through the active controller.
struct InternalTopics {
    quorum: Arc<MetadataQuorum>,
    client: ControllerClient,
    default_rf: i16,
    expected_brokers: usize,
    history_retention_ms: i64,
}

impl InternalTopics {
    async fn run(self, cancel: CancellationToken) {
        let started = Instant::now();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
            let image = self.quorum.image();
            let missing: Vec<&str> = [OFFSETS_TOPIC, HISTORY_TOPIC]
                .into_iter()
                .filter(|t| image.topic_by_name(t).is_none())
                .collect();
            if missing.is_empty() {
                return;
            }
            if !self.quorum.controller().is_active() {
                continue;
            }
            let live = image.live_brokers().count();
            let wanted = usize::try_from(self.default_rf)
                .unwrap_or(1)
                .min(self.expected_brokers);
            if live == 0 || (live < wanted && started.elapsed() < WAIT_FOR_BROKERS) {
                continue;
            }
            let rf = self.default_rf.min(i16::try_from(live).unwrap_or(i16::MAX));
            for topic in missing {
                let configs: BTreeMap<String, String> =
                    internal_topic_configs(topic, self.history_retention_ms);
                match self
                    .client
                    .create_topic(topic, OFFSETS_PARTITIONS, rf, configs, false)
                    .await
                {
                    Ok((id, _)) => {
                        tracing::info!(topic, %id, replication_factor = rf, "created internal topic")
                    }
                    Err(ClientError::Controller(ControllerError::TopicAlreadyExists(_))) => {}
                    Err(e) => tracing::warn!(topic, error = %e, "creating internal topic failed; retrying"),
                }
            }
        }
    }
}
