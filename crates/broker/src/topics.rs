//! The broker's topics: names, ids, partitions and overrides, persisted in
//! `DATA_DIR/meta/topics.json` and reloaded (with each partition's log recovered) at start.
//!
//! A [`Topic`] is immutable; changing one (adding partitions, altering configs) swaps in a new
//! `Arc<Topic>` that shares the existing partitions. Readers therefore never lock a topic.
//! Partition logs live in `DATA_DIR/<topic>-<partition>`, Kafka's layout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::durable_file::write_atomically;
use crate::partition::Partition;
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
    pub partitions: Vec<Arc<Partition>>,
    pub overrides: TopicOverrides,
    pub config: EffectiveTopicConfig,
}

impl Topic {
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index).ok().and_then(|i| self.partitions.get(i))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredTopics {
    version: u32,
    topics: Vec<StoredTopic>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredTopic {
    name: String,
    id: Uuid,
    partitions: i32,
    configs: std::collections::BTreeMap<String, String>,
}

const TOPICS_FILE_VERSION: u32 = 1;

/// All topics on this broker.
#[derive(Debug)]
pub struct TopicRegistry {
    config: Arc<BrokerConfig>,
    topics: RwLock<HashMap<Arc<str>, Arc<Topic>>>,
    /// Serializes changes so the persisted file always matches one consistent state.
    change_lock: Mutex<()>,
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
        };
        let path = registry.topics_file();
        let stored = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<StoredTopics>(&bytes)
                .map_err(|e| TopicError::Storage(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoredTopics {
                version: TOPICS_FILE_VERSION,
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
        let mut topics = HashMap::new();
        for t in stored.topics {
            let overrides = TopicOverrides(t.configs);
            let topic = registry.open_topic(&t.name, t.id, t.partitions, overrides, &[])?;
            topics.insert(topic.name.clone(), Arc::new(topic));
        }
        *registry.topics.write() = topics;
        Ok(registry)
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
            let partition = Partition::open(index, &dir, log_config.clone(), now_ms())
                .map_err(|e| TopicError::Storage(e.to_string()))?;
            opened.push(Arc::new(partition));
        }
        Ok(Topic {
            name: Arc::from(name),
            id,
            partitions: opened,
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
        for index in 0..topic.partitions.len() as i32 {
            let dir = self.partition_dir(name, index);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not delete partition directory");
            }
        }
        Ok(topic)
    }

    fn persist(&self, topics: &HashMap<Arc<str>, Arc<Topic>>) -> Result<(), TopicError> {
        let mut stored: Vec<StoredTopic> = topics
            .values()
            .map(|t| StoredTopic {
                name: t.name.to_string(),
                id: t.id,
                partitions: t.partitions.len() as i32,
                configs: t.overrides.0.clone(),
            })
            .collect();
        stored.sort_by(|a, b| a.name.cmp(&b.name));
        let bytes = serde_json::to_vec_pretty(&StoredTopics {
            version: TOPICS_FILE_VERSION,
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
