//! The broker's topics: names, ids, partitions and overrides, persisted in
//! `DATA_DIR/meta/topics.json` and reloaded (with each partition's log recovered) at start.
//!
//! A [`Topic`] is immutable; changing one (adding partitions, altering configs) swaps in a new
//! `Arc<Topic>` that shares the existing partitions. Readers therefore never lock a topic.
//! Partition logs live in `DATA_DIR/<topic>-<partition>`, Kafka's layout.
//!
//! In cluster mode ([`TopicRegistry::load_cluster`]) the metadata image is the source of
//! truth and nothing here creates or deletes a topic on its own: [`TopicRegistry::reconcile`]
//! makes the registry match the image (every topic, with logs only for the partitions that
//! have a replica on this node). `topics.json` then records which topic id the local logs
//! belong to (`"mode": "cluster"`, each topic's `local` partitions), so that at the first
//! reconcile after a restart logs of a topic deleted (or deleted and re-created under a new
//! id) while the node was away are removed instead of being served. A data directory is one
//! mode or the other: opening a single-node directory in cluster mode, or the reverse, is an
//! error rather than a silent loss of topics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::durable_file::write_atomically;
use crate::partition::{Partition, PartitionRole};
use crate::topic_config::{EffectiveTopicConfig, TopicOverrides};

/// Upper bound on partitions per topic, so one request cannot exhaust file handles.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

/// Why a topic operation failed; the handler maps each to Kafka's error code.
#[derive(Debug, Error)]
pub enum TopicError {
    #[error("Topic '{0}' already exists.")]
    AlreadyExists(String),
    #[error("Topic '{0}' does not exist.")]
    Unknown(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("storage error: {0}")]
    Storage(String),
}

/// One topic as clients see it.
#[derive(Debug)]
pub struct Topic {
    pub name: Arc<str>,
    pub id: Uuid,
    /// The partitions with a log on this broker, by ascending index (all of them on a
    /// single-node broker; in a cluster, those with a replica here).
    pub partitions: Vec<Arc<Partition>>,
    /// How many partitions the topic has in the cluster.
    pub partition_count: i32,
    pub overrides: TopicOverrides,
    pub config: EffectiveTopicConfig,
}

impl Topic {
    /// The local log of partition `index`, if this broker has one.
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        let position = usize::try_from(index).ok()?;
        match self.partitions.get(position) {
            Some(p) if p.index == index => Some(p),
            _ => self
                .partitions
                .binary_search_by_key(&index, |p| p.index)
                .ok()
                .and_then(|i| self.partitions.get(i)),
        }
    }

    /// Whether partition `index` exists in the cluster (whether or not it is local).
    pub fn has_partition(&self, index: i32) -> bool {
        (0..self.partition_count).contains(&index)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredTopics {
    version: u32,
    /// `Some("cluster")` for a cluster member's directory; absent for a single node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    topics: Vec<StoredTopic>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredTopic {
    name: String,
    id: Uuid,
    partitions: i32,
    configs: std::collections::BTreeMap<String, String>,
    /// Cluster mode: the partitions with a log here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    local: Option<Vec<i32>>,
}

const TOPICS_FILE_VERSION: u32 = 1;
const CLUSTER_MODE: &str = "cluster";

/// One topic as the metadata image has it, for [`TopicRegistry::reconcile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedTopic {
    pub name: String,
    pub id: Uuid,
    pub partition_count: i32,
    /// Partitions with a replica on this broker, ascending.
    pub local: Vec<i32>,
    pub configs: std::collections::BTreeMap<String, String>,
}

/// All topics on this broker.
#[derive(Debug)]
pub struct TopicRegistry {
    config: Arc<BrokerConfig>,
    topics: RwLock<HashMap<Arc<str>, Arc<Topic>>>,
    /// Serializes changes so the persisted file always matches one consistent state.
    change_lock: Mutex<()>,
    /// Cluster mode: what `topics.json` recorded at start, until the first reconcile uses it.
    /// `None` on a single-node broker.
    cluster: Option<Mutex<Option<HashMap<String, StoredTopic>>>>,
}

fn now_ms() -> i64 {
    crate::clock::now_ms()
}

impl TopicRegistry {
    /// Loads the topic list and opens every partition log (running recovery where needed).
    pub fn load(config: Arc<BrokerConfig>) -> Result<Self, TopicError> {
        let registry = Self {
            config: config.clone(),
            topics: RwLock::new(HashMap::new()),
            change_lock: Mutex::new(()),
            cluster: None,
        };
        let stored = registry.read_stored(false)?;
        let mut topics = HashMap::new();
        for t in stored.topics {
            let overrides = TopicOverrides(t.configs);
            let topic = registry.open_topic(&t.name, t.id, t.partitions, overrides, &[])?;
            topics.insert(topic.name.clone(), Arc::new(topic));
        }
        *registry.topics.write() = topics;
        Ok(registry)
    }

    /// A cluster member's registry: empty until the first [`Self::reconcile`] with the
    /// metadata image, which opens the local logs again.
    pub fn load_cluster(config: Arc<BrokerConfig>) -> Result<Self, TopicError> {
        let mut registry = Self {
            config,
            topics: RwLock::new(HashMap::new()),
            change_lock: Mutex::new(()),
            cluster: None,
        };
        let stored = registry.read_stored(true)?;
        let on_disk = stored.topics.into_iter().map(|t| (t.name.clone(), t)).collect();
        registry.cluster = Some(Mutex::new(Some(on_disk)));
        Ok(registry)
    }

    fn read_stored(&self, cluster: bool) -> Result<StoredTopics, TopicError> {
        let path = self.topics_file();
        let stored = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<StoredTopics>(&bytes)
                .map_err(|e| TopicError::Storage(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoredTopics {
                version: TOPICS_FILE_VERSION,
                mode: None,
                topics: Vec::new(),
            },
            Err(e) => return Err(TopicError::Storage(format!("{}: {e}", path.display()))),
        };
        if stored.version != TOPICS_FILE_VERSION {
            return Err(TopicError::Storage(format!(
                "{}: unknown version {}",
                path.display(),
                stored.version
            )));
        }
        let is_cluster = stored.mode.as_deref() == Some(CLUSTER_MODE);
        if !stored.topics.is_empty() && is_cluster != cluster {
            let (was, now) = if cluster {
                ("a single-node broker", "a cluster member (--voters)")
            } else {
                ("a cluster member", "a single-node broker (no --voters)")
            };
            return Err(TopicError::Storage(format!(
                "{}: this data directory belongs to {was}; it cannot be opened as {now} (use another --data-dir)",
                path.display()
            )));
        }
        Ok(stored)
    }

    /// The role new partition logs start in.
    fn initial_role(&self) -> PartitionRole {
        if self.cluster.is_some() {
            PartitionRole::UNKNOWN
        } else {
            PartitionRole::SINGLE_NODE
        }
    }

    fn topics_file(&self) -> PathBuf {
        self.config.data_dir.join("meta").join("topics.json")
    }

    fn partition_dir(&self, topic: &str, index: i32) -> PathBuf {
        partition_dir(&self.config.data_dir, topic, index)
    }

    fn open_topic(
        &self,
        name: &str,
        id: Uuid,
        partitions: i32,
        overrides: TopicOverrides,
        existing: &[Arc<Partition>],
    ) -> Result<Topic, TopicError> {
        let config = overrides.effective(&self.config);
        let log_config = config.log_config(&self.config);
        let mut opened = existing.to_vec();
        for index in existing.len() as i32..partitions {
            let dir = self.partition_dir(name, index);
            let partition = Partition::open(index, &dir, log_config.clone(), now_ms(), self.initial_role())
                .map_err(|e| TopicError::Storage(e.to_string()))?;
            opened.push(Arc::new(partition));
        }
        Ok(Topic {
            name: Arc::from(name),
            id,
            partitions: opened,
            partition_count: partitions,
            overrides,
            config,
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    pub fn get_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics.read().values().find(|t| t.id == id).cloned()
    }

    /// Every topic, sorted by name.
    pub fn list(&self) -> Vec<Arc<Topic>> {
        let mut topics: Vec<_> = self.topics.read().values().cloned().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    /// Runs a topic change (create, grow, delete) on the blocking thread pool.
    ///
    /// Opening or deleting thousands of partition logs takes seconds of file-system work and
    /// changes are serialized by a lock; on an async worker that would stall every other
    /// client on that thread.
    pub async fn change<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&TopicRegistry) -> Result<T, TopicError> + Send + 'static,
    ) -> Result<T, TopicError> {
        let registry = self.clone();
        tokio::task::spawn_blocking(move || f(&registry))
            .await
            .map_err(|e| TopicError::Storage(format!("topic change task failed: {e}")))?
    }

    /// Creates a topic with `partitions` partitions (already validated by the caller).
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        overrides: TopicOverrides,
    ) -> Result<Arc<Topic>, TopicError> {
        let _guard = self.change_lock.lock();
        if self.topics.read().contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        check_partition_count(partitions)?;
        // A leftover directory from a deleted topic of the same name must not leak old data.
        for index in 0..partitions {
            let dir = self.partition_dir(name, index);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| TopicError::Storage(e.to_string()))?;
            }
        }
        let topic = Arc::new(self.open_topic(name, Uuid::new_v4(), partitions, overrides, &[])?);
        let mut next = self.topics.read().clone();
        next.insert(topic.name.clone(), topic.clone());
        self.persist(&next)?;
        *self.topics.write() = next;
        Ok(topic)
    }

    /// Grows a topic to `count` partitions.
    pub fn add_partitions(&self, name: &str, count: i32) -> Result<Arc<Topic>, TopicError> {
        let _guard = self.change_lock.lock();
        let current = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let have = current.partitions.len() as i32;
        if count <= have {
            return Err(TopicError::InvalidPartitions(format!(
                "Topic currently has {have} partitions, which is higher than the requested {count}."
            )));
        }
        check_partition_count(count)?;
        let topic = Arc::new(self.open_topic(
            name,
            current.id,
            count,
            current.overrides.clone(),
            &current.partitions,
        )?);
        let mut next = self.topics.read().clone();
        next.insert(topic.name.clone(), topic.clone());
        self.persist(&next)?;
        *self.topics.write() = next;
        Ok(topic)
    }

    /// Replaces a topic's config overrides (already validated, e.g. by
    /// [`TopicOverrides::parse`]) and applies them to its partition logs: persisted first, then
    /// each log takes the new settings, then readers see the new `Arc<Topic>`.
    pub fn alter_config(&self, name: &str, overrides: TopicOverrides) -> Result<Arc<Topic>, TopicError> {
        let _guard = self.change_lock.lock();
        let current = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let config = overrides.effective(&self.config);
        let log_config = config.log_config(&self.config);
        let topic = Arc::new(Topic {
            name: current.name.clone(),
            id: current.id,
            partitions: current.partitions.clone(),
            partition_count: current.partition_count,
            overrides,
            config,
        });
        let mut next = self.topics.read().clone();
        next.insert(topic.name.clone(), topic.clone());
        self.persist(&next)?;
        for partition in &topic.partitions {
            partition.set_config(log_config.clone());
        }
        *self.topics.write() = next;
        Ok(topic)
    }

    /// Removes a topic and deletes its data. Requests already holding a partition finish
    /// against unlinked files; new requests no longer find the topic.
    pub fn delete(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        let _guard = self.change_lock.lock();
        let mut next = self.topics.read().clone();
        let topic = next
            .remove(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        self.persist(&next)?;
        *self.topics.write() = next;
        for partition in &topic.partitions {
            self.remove_dir(name, partition.index);
        }
        Ok(topic)
    }

    fn remove_dir(&self, topic: &str, index: i32) {
        let dir = self.partition_dir(topic, index);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not delete partition directory")
            }
        }
    }

    /// Cluster mode: makes the registry match `wanted` (every topic of the metadata image):
    /// opens the logs of partitions newly placed here (recovering logs this node already had
    /// for the same topic id), deletes logs of topics gone from the image or of partitions
    /// moved away, and applies config changes. Persists `topics.json` when anything changed.
    pub fn reconcile(&self, wanted: &[WantedTopic]) -> Result<bool, TopicError> {
        let Some(cluster) = &self.cluster else {
            return Err(TopicError::Storage("reconcile is for cluster mode".into()));
        };
        let _guard = self.change_lock.lock();
        let current = self.topics.read().clone();
        // What the disk held at start, used once: logs there belong to the recorded topic id.
        let on_disk = cluster.lock().take().unwrap_or_default();
        let wanted_ids: HashMap<&str, Uuid> = wanted.iter().map(|w| (w.name.as_str(), w.id)).collect();
        let mut changed = !on_disk.is_empty() && current.is_empty();
        // Remove first: a topic re-created under the same name reuses its directory names.
        for t in current.values() {
            if wanted_ids.get(&*t.name) != Some(&t.id) {
                tracing::info!(topic = %t.name, id = %t.id, "topic gone from the metadata; deleting its local logs");
                for p in &t.partitions {
                    self.remove_dir(&t.name, p.index);
                }
                changed = true;
            }
        }
        let mut recovered: HashMap<&str, Vec<i32>> = HashMap::new();
        for t in on_disk.values() {
            let local = t.local.clone().unwrap_or_else(|| (0..t.partitions).collect());
            if wanted_ids.get(t.name.as_str()) == Some(&t.id) {
                recovered.insert(t.name.as_str(), local);
            } else {
                tracing::info!(topic = %t.name, id = %t.id, "topic deleted while this node was away; deleting its local logs");
                for index in local {
                    self.remove_dir(&t.name, index);
                }
            }
        }
        let mut next: HashMap<Arc<str>, Arc<Topic>> = HashMap::with_capacity(wanted.len());
        for w in wanted {
            let existing = current.get(w.name.as_str()).filter(|t| t.id == w.id);
            let overrides = TopicOverrides(w.configs.clone());
            if let Some(t) = existing {
                let same_local = t.partitions.iter().map(|p| p.index).eq(w.local.iter().copied());
                if same_local && t.partition_count == w.partition_count && t.overrides == overrides {
                    next.insert(t.name.clone(), t.clone());
                    continue;
                }
            }
            changed = true;
            let config = overrides.effective(&self.config);
            let log_config = config.log_config(&self.config);
            let keep: &[i32] = recovered.get(w.name.as_str()).map_or(&[], Vec::as_slice);
            let mut partitions = Vec::with_capacity(w.local.len());
            for &index in &w.local {
                if let Some(p) = existing.and_then(|t| t.partition(index)) {
                    p.set_config(log_config.clone());
                    partitions.push(p.clone());
                    continue;
                }
                if !keep.contains(&index) {
                    // Not known to hold this topic id's data: start from an empty log.
                    self.remove_dir(&w.name, index);
                }
                let dir = self.partition_dir(&w.name, index);
                let partition =
                    Partition::open(index, &dir, log_config.clone(), now_ms(), self.initial_role())
                        .map_err(|e| TopicError::Storage(format!("{}-{index}: {e}", w.name)))?;
                partitions.push(Arc::new(partition));
            }
            if let Some(t) = existing {
                for p in &t.partitions {
                    if !w.local.contains(&p.index) {
                        tracing::info!(topic = %t.name, partition = p.index, "replica moved away; deleting its local log");
                        self.remove_dir(&t.name, p.index);
                    }
                }
            }
            let topic = Topic {
                name: Arc::from(w.name.as_str()),
                id: w.id,
                partitions,
                partition_count: w.partition_count,
                overrides,
                config,
            };
            next.insert(topic.name.clone(), Arc::new(topic));
        }
        if changed {
            self.persist(&next)?;
        }
        *self.topics.write() = next;
        Ok(changed)
    }

    fn persist(&self, topics: &HashMap<Arc<str>, Arc<Topic>>) -> Result<(), TopicError> {
        let cluster = self.cluster.is_some();
        let mut stored: Vec<StoredTopic> = topics
            .values()
            .map(|t| StoredTopic {
                name: t.name.to_string(),
                id: t.id,
                partitions: t.partition_count,
                configs: t.overrides.0.clone(),
                local: cluster.then(|| t.partitions.iter().map(|p| p.index).collect()),
            })
            .collect();
        stored.sort_by(|a, b| a.name.cmp(&b.name));
        let bytes = serde_json::to_vec_pretty(&StoredTopics {
            version: TOPICS_FILE_VERSION,
            mode: cluster.then(|| CLUSTER_MODE.to_string()),
            topics: stored,
        })
        .map_err(|e| TopicError::Storage(e.to_string()))?;
        write_atomically(&self.topics_file(), &bytes).map_err(|e| TopicError::Storage(e.to_string()))
    }

    /// Every partition of every topic, for background work (retention, flush, shutdown).
    pub fn all_partitions(&self) -> Vec<(Arc<Topic>, Arc<Partition>)> {
        self.topics
            .read()
            .values()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.clone(), p.clone())))
            .collect()
    }
}

fn check_partition_count(count: i32) -> Result<(), TopicError> {
    if !(1..=MAX_PARTITIONS_PER_TOPIC).contains(&count) {
        return Err(TopicError::InvalidPartitions(format!(
            "Number of partitions must be between 1 and {MAX_PARTITIONS_PER_TOPIC}, got {count}."
        )));
    }
    Ok(())
}

/// Where partition `index` of `topic` keeps its log.
pub fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}
