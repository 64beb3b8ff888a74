//! The metadata state machine: openraft's `RaftStateMachine` over [`MetadataImage`], with
//! snapshots on disk.
//!
//! The applied state (image, last applied log id, membership) lives in memory and is published
//! through a `watch` channel as one `Arc`, so readers get a consistent view without locks and
//! the snapshot builder serializes exactly what was applied. Each applied batch also goes out
//! on a broadcast channel as an [`AppliedDelta`].
//!
//! Batches apply all or nothing: a batch of more than one record is applied to a copy that
//! replaces the image only if every record was accepted (a single record is atomic already).
//! A refused batch is answered [`BatchOutcome::Refused`] and changes nothing, on every node.
//! A `RegisterBroker` record proposed with [`EPOCH_FROM_LOG_INDEX`] gets its entry's log index
//! as the broker epoch here, the same on every node. Accepted batches (as applied, epochs
//! filled in) also go into the [`Feed`] ring that metadata followers read.
//!
//! Snapshot file (`snapshot.bin`, replaced atomically): one line of JSON with the format
//! version, openraft's snapshot meta and the CRC-32C of the data, a newline, then the data:
//! the serde_json of the image, exactly the bytes sent to a follower that needs a snapshot.
//! The state machine itself is not persisted between snapshots: on restart it starts from the
//! snapshot and openraft re-applies the committed log after it.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{broadcast, watch};

use super::feed::{Feed, FeedBatch};
use super::fsutil::{atomic_write, read_optional};
use super::types::{BatchOutcome, Entry, LogId, Node, NodeId, StorageError, TypeConfig};
use crate::image::{ApplyError, MetadataDelta, MetadataImage};
use crate::records::{MetadataRecord, EPOCH_FROM_LOG_INDEX};

/// Subscribers that fall further behind than this many batches get `Lagged` and should
/// re-read the whole image.
pub const DELTA_CHANNEL_CAPACITY: usize = 4096;

const SNAPSHOT_FILE: &str = "snapshot.bin";
const SNAPSHOT_VERSION: u8 = 1;

/// The state machine's applied state, published as one consistent value.
#[derive(Debug, Clone, Default)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership<NodeId, Node>,
    pub image: Arc<MetadataImage>,
}

/// What one committed log entry changed, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedDelta {
    /// The Raft log index of the batch (or of the snapshot that replaced the image).
    pub index: u64,
    pub delta: MetadataDelta,
}

/// Why a snapshot could not be read or written.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: damaged snapshot: {why}")]
    Corrupt { path: PathBuf, why: String },
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    version: u8,
    meta: SnapshotMeta<NodeId, Node>,
    crc32c: u32,
}

/// The latest snapshot: its meta and data bytes.
#[derive(Clone)]
struct CurrentSnapshot {
    meta: SnapshotMeta<NodeId, Node>,
    data: Arc<Vec<u8>>,
}

/// The metadata state machine of one node.
pub struct StateMachine {
    dir: PathBuf,
    state: watch::Sender<Arc<AppliedState>>,
    deltas: broadcast::Sender<AppliedDelta>,
    current: Arc<Mutex<Option<CurrentSnapshot>>>,
    feed: Arc<Mutex<Feed>>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn storage_error(verb: ErrorVerb, e: &SnapshotError) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::new(e)).into()
}

impl StateMachine {
    /// Opens the state machine under `dir`, starting from the snapshot there if any.
    pub fn open(dir: &Path) -> Result<Self, SnapshotError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let path = dir.join(SNAPSHOT_FILE);
        let mut initial = AppliedState::default();
        let mut current = None;
        if let Some(bytes) = read_optional(&path).map_err(io_error(&path))? {
            let (meta, data) = decode_snapshot(&path, &bytes)?;
            let image = parse_image(&path, &data)?;
            initial = AppliedState {
                last_applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
                image: Arc::new(image),
            };
            current = Some(CurrentSnapshot {
                meta,
                data: Arc::new(data),
            });
        }
        let floor = initial.last_applied.map_or(0, |l| l.index);
        let (state, _) = watch::channel(Arc::new(initial));
        let (deltas, _) = broadcast::channel(DELTA_CHANNEL_CAPACITY);
        Ok(Self {
            dir: dir.to_path_buf(),
            state,
            deltas,
            current: Arc::new(Mutex::new(current)),
            feed: Arc::new(Mutex::new(Feed::new(floor))),
        })
    }

    /// A receiver of the applied state (image, last applied, membership).
    pub fn state(&self) -> watch::Receiver<Arc<AppliedState>> {
        self.state.subscribe()
    }

    /// The sender applied deltas go out on (call `subscribe` on it for a receiver).
    pub fn deltas(&self) -> broadcast::Sender<AppliedDelta> {
        self.deltas.clone()
    }

    /// The ring of recently applied batches (updated before the applied state is published).
    pub fn feed(&self) -> Arc<Mutex<Feed>> {
        self.feed.clone()
    }

    /// Replaces the image with a snapshot's and tells subscribers what differs.
    fn replace(&self, meta: &SnapshotMeta<NodeId, Node>, image: MetadataImage) {
        let old = self.state.borrow().image.clone();
        let delta = diff(&old, &image);
        self.feed.lock().reset(meta.last_log_id.map_or(0, |l| l.index));
        self.state.send_replace(Arc::new(AppliedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            image: Arc::new(image),
        }));
        let index = meta.last_log_id.map_or(0, |l| l.index);
        // No receiver is fine: nobody is following yet.
        let _ = self.deltas.send(AppliedDelta { index, delta });
    }
}

/// Applies `records` to `image` all or nothing, returning their merged delta or the position
/// and reason of the first refusal.
pub fn apply_batch(
    image: &mut MetadataImage,
    records: &[MetadataRecord],
) -> Result<MetadataDelta, (usize, ApplyError)> {
    if let [record] = records {
        return image.apply(record).map_err(|e| (0, e));
    }
    let mut scratch = image.clone();
    let mut merged = MetadataDelta::default();
    for (position, record) in records.iter().enumerate() {
        let delta = scratch.apply(record).map_err(|e| (position, e))?;
        merge(&mut merged, delta);
    }
    *image = scratch;
    Ok(merged)
}

/// Gives every `RegisterBroker` proposed with [`EPOCH_FROM_LOG_INDEX`] the batch's log index
/// as its epoch.
pub fn assign_epochs(records: &mut [MetadataRecord], index: u64) {
    for record in records {
        if let MetadataRecord::RegisterBroker(r) = record {
            if r.epoch == EPOCH_FROM_LOG_INDEX {
                r.epoch = i64::try_from(index).unwrap_or(i64::MAX);
            }
        }
    }
}

fn merge(into: &mut MetadataDelta, from: MetadataDelta) {
    into.brokers.extend(from.brokers);
    into.topics_created.extend(from.topics_created);
    into.topics_deleted.extend(from.topics_deleted);
    into.topic_configs.extend(from.topic_configs);
    into.partitions.extend(from.partitions);
}

/// What differs between two images, as a delta (used when a snapshot replaces the image).
pub fn diff(old: &MetadataImage, new: &MetadataImage) -> MetadataDelta {
    let mut delta = MetadataDelta::default();
    for id in old.brokers.keys().chain(new.brokers.keys()) {
        if old.brokers.get(id) != new.brokers.get(id) {
            delta.brokers.insert(*id);
        }
    }
    for (id, topic) in &new.topics {
        match old.topics.get(id) {
            None => {
                delta.topics_created.insert(*id);
                delta
                    .partitions
                    .extend(topic.partitions.keys().map(|p| (*id, *p)));
            }
            Some(before) => {
                if before.configs != topic.configs {
                    delta.topic_configs.insert(*id);
                }
                for p in before.partitions.keys().chain(topic.partitions.keys()) {
                    if before.partitions.get(p) != topic.partitions.get(p) {
                        delta.partitions.insert((*id, *p));
                    }
                }
            }
        }
    }
    delta
        .topics_deleted
        .extend(old.topics.keys().filter(|id| !new.topics.contains_key(id)));
    delta
}

fn decode_snapshot(
    path: &Path,
    bytes: &[u8],
) -> Result<(SnapshotMeta<NodeId, Node>, Vec<u8>), SnapshotError> {
    let corrupt = |why: String| SnapshotError::Corrupt {
        path: path.to_path_buf(),
        why,
    };
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| corrupt("no header line".into()))?;
    let (header, data) = bytes.split_at(newline);
    let data = data.get(1..).unwrap_or_default();
    let header: SnapshotHeader = serde_json::from_slice(header).map_err(|e| corrupt(e.to_string()))?;
    if header.version != SNAPSHOT_VERSION {
        return Err(corrupt(format!("unsupported version {}", header.version)));
    }
    if crc32c::crc32c(data) != header.crc32c {
        return Err(corrupt("data fails its CRC".into()));
    }
    Ok((header.meta, data.to_vec()))
}

fn parse_image(path: &Path, data: &[u8]) -> Result<MetadataImage, SnapshotError> {
    serde_json::from_slice(data).map_err(|e| SnapshotError::Corrupt {
        path: path.to_path_buf(),
        why: format!("image does not parse: {e}"),
    })
}

/// Writes `snapshot` as the current one unless a newer one is already there.
fn store_snapshot(
    dir: &Path,
    current: &Mutex<Option<CurrentSnapshot>>,
    snapshot: CurrentSnapshot,
) -> Result<(), SnapshotError> {
    let mut current = current.lock();
    if current
        .as_ref()
        .is_some_and(|c| c.meta.last_log_id > snapshot.meta.last_log_id)
    {
        return Ok(());
    }
    let path = dir.join(SNAPSHOT_FILE);
    let header = SnapshotHeader {
        version: SNAPSHOT_VERSION,
        meta: snapshot.meta.clone(),
        crc32c: crc32c::crc32c(&snapshot.data),
    };
    let mut bytes = serde_json::to_vec(&header).map_err(|e| SnapshotError::Corrupt {
        path: path.clone(),
        why: e.to_string(),
    })?;
    bytes.push(b'\n');
    bytes.extend_from_slice(&snapshot.data);
    atomic_write(&path, &bytes, true).map_err(io_error(&path))?;
    *current = Some(snapshot);
    Ok(())
}

/// Builds a snapshot of the state as it was when the builder was made.
pub struct SnapshotBuilder {
    dir: PathBuf,
    state: Arc<AppliedState>,
    current: Arc<Mutex<Option<CurrentSnapshot>>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let state = self.state.clone();
        let dir = self.dir.clone();
        let current = self.current.clone();
        let built = tokio::task::spawn_blocking(move || {
            let path = dir.join(SNAPSHOT_FILE);
            let data = serde_json::to_vec(&*state.image).map_err(|e| SnapshotError::Corrupt {
                path: path.clone(),
                why: e.to_string(),
            })?;
            let snapshot_id = match state.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, crc32c::crc32c(&data)),
                None => format!("empty-{}", crc32c::crc32c(&data)),
            };
            let snapshot = CurrentSnapshot {
                meta: SnapshotMeta {
                    last_log_id: state.last_applied,
                    last_membership: state.membership.clone(),
                    snapshot_id,
                },
                data: Arc::new(data),
            };
            store_snapshot(&dir, &current, snapshot.clone())?;
            Ok::<_, SnapshotError>(snapshot)
        })
        .await
        .map_err(|e| StorageIOError::new(ErrorSubject::Snapshot(None), ErrorVerb::Write, AnyError::error(e)))?
        .map_err(|e| storage_error(ErrorVerb::Write, &e))?;
        Ok(Snapshot {
            meta: built.meta,
            snapshot: Box::new(Cursor::new(built.data.to_vec())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, Node>), StorageError> {
        let state = self.state.borrow();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let published = self.state.borrow().clone();
        let mut working: Option<MetadataImage> = None;
        let mut last_applied = published.last_applied;
        let mut membership = published.membership.clone();
        let mut outcomes = Vec::new();
        let mut deltas = Vec::new();
        let mut accepted = Vec::new();
        for entry in entries {
            last_applied = Some(entry.log_id);
            let outcome = match entry.payload {
                EntryPayload::Blank => BatchOutcome::Applied,
                EntryPayload::Membership(m) => {
                    membership = StoredMembership::new(Some(entry.log_id), m);
                    BatchOutcome::Applied
                }
                EntryPayload::Normal(mut batch) => {
                    let image = working.get_or_insert_with(|| (*published.image).clone());
                    assign_epochs(&mut batch.records, entry.log_id.index);
                    match apply_batch(image, &batch.records) {
                        Ok(delta) => {
                            deltas.push(AppliedDelta {
                                index: entry.log_id.index,
                                delta,
                            });
                            accepted.push(FeedBatch::new(entry.log_id.index, Arc::new(batch.records)));
                            BatchOutcome::Applied
                        }
                        Err((position, e)) => {
                            tracing::warn!(index = entry.log_id.index, position, error = %e, "metadata batch refused");
                            BatchOutcome::Refused {
                                position,
                                reason: e.to_string(),
                            }
                        }
                    }
                }
            };
            outcomes.push(outcome);
        }
        let image = working.map_or(published.image.clone(), Arc::new);
        if !accepted.is_empty() {
            let mut feed = self.feed.lock();
            for batch in accepted {
                feed.push(batch);
            }
        }
        self.state.send_replace(Arc::new(AppliedState {
            last_applied,
            membership,
            image,
        }));
        for delta in deltas {
            // No receiver is fine: nobody is following yet.
            let _ = self.deltas.send(delta);
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            dir: self.dir.clone(),
            state: self.state.borrow().clone(),
            current: self.current.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let path = self.dir.join(SNAPSHOT_FILE);
        let image = parse_image(&path, &data).map_err(|e| storage_error(ErrorVerb::Read, &e))?;
        let dir = self.dir.clone();
        let current = self.current.clone();
        let stored = CurrentSnapshot {
            meta: meta.clone(),
            data: Arc::new(data),
        };
        tokio::task::spawn_blocking(move || store_snapshot(&dir, &current, stored))
            .await
            .map_err(|e| {
                StorageIOError::new(ErrorSubject::Snapshot(None), ErrorVerb::Write, AnyError::error(e))
            })?
            .map_err(|e| storage_error(ErrorVerb::Write, &e))?;
        self.replace(meta, image);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self.current.lock().clone();
        Ok(current.map(|c| Snapshot {
            meta: c.meta,
            snapshot: Box::new(Cursor::new(c.data.to_vec())),
        }))
    }
}
