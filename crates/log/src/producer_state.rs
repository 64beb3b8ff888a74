//! Idempotent-producer state: per producer id, its current epoch and the metadata of its last
//! [`NUM_BATCHES_TO_RETAIN`] appended batches, so the partition can reject gaps, fence zombie
//! epochs and answer a retried batch with the offsets it was first written at instead of
//! appending it twice. This mirrors Kafka's `ProducerStateManager` / `ProducerAppendInfo`
//! (minus transactions).
//!
//! The state is derived entirely from the log: recovery rebuilds it by replaying batches
//! through [`ProducerStateManager::update`], which never rejects anything (the log is the
//! truth). Snapshots only bound how much must be replayed.
//!
//! ## Snapshot format and recovery story
//! A snapshot `{offset:020}.snapshot` holds the state of every batch whose last offset is below
//! `offset`. It is written to `{offset:020}.snapshot.tmp`, fsynced, renamed into place and the
//! directory fsynced, so a crash leaves either the old set of snapshots or the new one (plus,
//! at worst, a stray `.tmp` file that is never read). Layout, all integers big-endian:
//! ```text
//! version: u8 (= 1)
//! producer_count: u32
//! producer_count times:
//!   producer_id: i64   producer_epoch: i16   last_timestamp: i64   batch_count: u8 (1..=5)
//!   batch_count times, oldest first:
//!     first_seq: i32   last_seq: i32   first_offset: i64   last_offset: i64   max_timestamp: i64
//! crc: u32             CRC32C of every byte before it
//! ```
//! A snapshot that fails its CRC or does not parse is skipped with a warning and the next older
//! one is used; with none left, recovery replays the log from its start. Unlike Kafka (which
//! snapshots only each producer's last batch) all cached batches are kept, so duplicates of
//! any of the last five batches are still detected after a restart.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::batch::NO_PRODUCER_ID;

/// How many of a producer's most recent batches are remembered for duplicate detection
/// (Kafka's `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`; the producer keeps at most five
/// requests in flight, so a retry is always one of them).
pub const NUM_BATCHES_TO_RETAIN: usize = 5;

/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH`: a producer whose epoch is unknown accepts any
/// sequence.
const NO_PRODUCER_EPOCH: i16 = -1;

/// Suffix of a producer state snapshot file.
const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// Suffix of a snapshot being written; never read back.
const TMP_SUFFIX: &str = ".tmp";
const SNAPSHOT_VERSION: u8 = 1;

/// Metadata of one appended batch from an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// Outcome of checking an incoming batch that may be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The batch is the next one expected (or the producer is unknown): append it.
    Accept,
    /// The batch is a retry of one already in the log: answer with its offsets, do not append.
    Duplicate { first_offset: i64, last_offset: i64 },
}

/// Why an incoming batch must be rejected; maps to Kafka's error codes of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SequenceError {
    /// A gap or reordering in the producer's sequence (`OUT_OF_ORDER_SEQUENCE_NUMBER`).
    #[error("out of order sequence for producer {producer_id}: expected {expected}, received {received}")]
    OutOfOrder {
        producer_id: i64,
        expected: i32,
        received: i32,
    },
    /// The producer was fenced by a newer epoch (`INVALID_PRODUCER_EPOCH`).
    #[error("producer {producer_id} has epoch {received}, older than the current epoch {current}")]
    InvalidEpoch {
        producer_id: i64,
        current: i16,
        received: i16,
    },
}

/// One remembered batch; the epoch lives in the owning [`ProducerEntry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CachedBatch {
    first_seq: i32,
    last_seq: i32,
    first_offset: i64,
    last_offset: i64,
    max_timestamp: i64,
}

/// What is known about one producer id.
///
/// Invariant: `batches` is non-empty, holds at most [`NUM_BATCHES_TO_RETAIN`] batches, oldest
/// first, all written with `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<CachedBatch>,
    /// Max timestamp of the last appended batch; drives expiry.
    last_timestamp: i64,
}

impl ProducerEntry {
    fn last_batch(&self) -> Option<&CachedBatch> {
        self.batches.back()
    }

    fn find_duplicate(&self, first_seq: i32, last_seq: i32) -> Option<&CachedBatch> {
        self.batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
    }
}

/// The sequence that must follow `last_seq`; sequences wrap from `i32::MAX` to 0.
fn next_sequence(last_seq: i32) -> i32 {
    if last_seq == i32::MAX {
        0
    } else {
        last_seq + 1
    }
}

/// Per-producer sequence and epoch tracking for one partition.
#[derive(Debug, Clone, Default)]
pub struct ProducerStateManager {
    // Ordered so that snapshots of equal state are byte-identical.
    producers: BTreeMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Pure check of an incoming batch against current state, following Kafka's
    /// `ProducerAppendInfo.checkProducerEpoch` / `checkSequence` and the duplicate lookup that
    /// precedes them.
    pub fn check(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Result<SequenceCheck, SequenceError> {
        // Unknown producer: its state may have expired or been removed by retention, so any
        // sequence is accepted, as Kafka does.
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(SequenceCheck::Accept);
        };
        let current = entry.epoch;
        if producer_epoch < current {
            return Err(SequenceError::InvalidEpoch {
                producer_id,
                current,
                received: producer_epoch,
            });
        }
        if producer_epoch > current {
            // A bumped epoch restarts the sequence.
            if first_seq != 0 && current != NO_PRODUCER_EPOCH {
                return Err(SequenceError::OutOfOrder {
                    producer_id,
                    expected: 0,
                    received: first_seq,
                });
            }
            return Ok(SequenceCheck::Accept);
        }
        if let Some(dup) = entry.find_duplicate(first_seq, last_seq) {
            return Ok(SequenceCheck::Duplicate {
                first_offset: dup.first_offset,
                last_offset: dup.last_offset,
            });
        }
        if current == NO_PRODUCER_EPOCH {
            return Ok(SequenceCheck::Accept);
        }
        let expected = entry.last_batch().map_or(0, |b| next_sequence(b.last_seq));
        if first_seq != expected {
            return Err(SequenceError::OutOfOrder {
                producer_id,
                expected,
                received: first_seq,
            });
        }
        Ok(SequenceCheck::Accept)
    }

    /// Records an appended batch. Also used when replaying the log during recovery, so it
    /// accepts whatever it is given: a different epoch (in either direction) replaces the
    /// producer's epoch and forgets its cached batches, as Kafka's `addBatch` does. Batches
    /// without a producer id are ignored.
    pub fn update(&mut self, meta: BatchMeta) {
        if meta.producer_id == NO_PRODUCER_ID {
            return;
        }
        let batch = CachedBatch {
            first_seq: meta.first_seq,
            last_seq: meta.last_seq,
            first_offset: meta.first_offset,
            last_offset: meta.last_offset,
            max_timestamp: meta.max_timestamp,
        };
        let entry = self
            .producers
            .entry(meta.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: meta.producer_epoch,
                batches: VecDeque::with_capacity(NUM_BATCHES_TO_RETAIN),
                last_timestamp: meta.max_timestamp,
            });
        if entry.epoch != meta.producer_epoch {
            entry.epoch = meta.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() >= NUM_BATCHES_TO_RETAIN {
            entry.batches.pop_front();
        }
        entry.batches.push_back(batch);
        entry.last_timestamp = meta.max_timestamp;
        debug_assert!(!entry.batches.is_empty() && entry.batches.len() <= NUM_BATCHES_TO_RETAIN);
    }

    /// Forgets every producer.
    pub fn clear(&mut self) {
        self.producers.clear();
    }

    /// Number of producers tracked.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The producer's current epoch and the last sequence and last offset of its newest batch.
    pub fn last_entry(&self, producer_id: i64) -> Option<(i16, i32, i64)> {
        let entry = self.producers.get(&producer_id)?;
        let last = entry.last_batch()?;
        Some((entry.epoch, last.last_seq, last.last_offset))
    }

    /// Removes producers whose last batch timestamp is at least `max_age_ms` before `now_ms`
    /// (Kafka's `producer.id.expiration.ms`, default one day; Kafka expires at `>=` too).
    pub fn expire(&mut self, now_ms: i64, max_age_ms: i64) {
        // Timestamps come from producers and disk: saturate rather than overflow.
        self.producers
            .retain(|_, entry| now_ms.saturating_sub(entry.last_timestamp) < max_age_ms);
    }

    /// Atomically writes `{offset:020}.snapshot` in `dir` (tmp file, fsync, rename, fsync dir).
    /// `offset` is the log end offset the snapshot reflects: the state of all batches whose
    /// last offset is below it.
    pub fn write_snapshot(&self, dir: &Path, offset: i64) -> io::Result<()> {
        if offset < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("producer state snapshot offset {offset} is negative"),
            ));
        }
        debug_assert!(
            self.producers
                .values()
                .flat_map(|e| e.batches.iter())
                .all(|b| b.last_offset < offset),
            "snapshot at {offset} would include batches at or beyond it"
        );
        let path = snapshot_path(dir, offset);
        let tmp = dir.join(format!("{}{TMP_SUFFIX}", snapshot_file_name(offset)));
        let bytes = self.encode();
        {
            let mut file = File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        sync_dir(dir)
    }

    /// Loads the newest snapshot whose offset is at most `max_offset`. Corrupt snapshots are
    /// skipped with a warning in favour of older ones. `Ok(None)` if no usable snapshot exists
    /// (including when `dir` does not exist). I/O errors other than a vanished file are
    /// returned: they say something about the disk, not about the snapshot.
    pub fn load_latest_snapshot(
        dir: &Path,
        max_offset: i64,
    ) -> io::Result<Option<(ProducerStateManager, i64)>> {
        let mut snapshots = list_snapshots(dir)?;
        snapshots.retain(|(offset, _)| *offset <= max_offset);
        for (offset, path) in snapshots.into_iter().rev() {
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            match Self::decode(&bytes) {
                Ok(state) => return Ok(Some((state, offset))),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e,
                        "ignoring corrupt producer state snapshot, trying an older one");
                }
            }
        }
        Ok(None)
    }

    /// Deletes every snapshot with an offset strictly greater than `offset` (used when the log
    /// is truncated below them).
    pub fn delete_snapshots_after(dir: &Path, offset: i64) -> io::Result<()> {
        let doomed: Vec<PathBuf> = list_snapshots(dir)?
            .into_iter()
            .filter(|(o, _)| *o > offset)
            .map(|(_, p)| p)
            .collect();
        delete_all(dir, &doomed)
    }

    /// Keeps the `keep` snapshots with the highest offsets and deletes the rest.
    pub fn retain_latest_snapshots(dir: &Path, keep: usize) -> io::Result<()> {
        let snapshots = list_snapshots(dir)?;
        let excess = snapshots.len().saturating_sub(keep);
        let doomed: Vec<PathBuf> = snapshots.into_iter().take(excess).map(|(_, p)| p).collect();
        delete_all(dir, &doomed)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 4 + self.producers.len() * (19 + 36) + 4);
        out.push(SNAPSHOT_VERSION);
        let count = u32::try_from(self.producers.len()).expect("fewer than 2^32 producers");
        out.extend_from_slice(&count.to_be_bytes());
        for (producer_id, entry) in &self.producers {
            out.extend_from_slice(&producer_id.to_be_bytes());
            out.extend_from_slice(&entry.epoch.to_be_bytes());
            out.extend_from_slice(&entry.last_timestamp.to_be_bytes());
            let batches = u8::try_from(entry.batches.len()).expect("at most NUM_BATCHES_TO_RETAIN batches");
            out.push(batches);
            for b in &entry.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
                out.extend_from_slice(&b.max_timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, CorruptSnapshot> {
        let split = bytes.len().checked_sub(4).ok_or(CorruptSnapshot::Truncated)?;
        let (content, crc_bytes) = bytes.split_at(split);
        let stored = u32::from_be_bytes(crc_bytes.try_into().map_err(|_| CorruptSnapshot::Truncated)?);
        let computed = crc32c::crc32c(content);
        if stored != computed {
            return Err(CorruptSnapshot::CrcMismatch { stored, computed });
        }
        let mut r = Reader { bytes: content };
        let version = r.u8()?;
        if version != SNAPSHOT_VERSION {
            return Err(CorruptSnapshot::UnsupportedVersion(version));
        }
        let count = r.u32()?;
        let mut producers = BTreeMap::new();
        for _ in 0..count {
            let producer_id = r.i64()?;
            let epoch = r.i16()?;
            let last_timestamp = r.i64()?;
            let batch_count = usize::from(r.u8()?);
            if batch_count == 0 || batch_count > NUM_BATCHES_TO_RETAIN {
                return Err(CorruptSnapshot::Invalid("batch count out of range"));
            }
            let mut batches = VecDeque::with_capacity(batch_count);
            for _ in 0..batch_count {
                batches.push_back(CachedBatch {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                    max_timestamp: r.i64()?,
                });
            }
            let entry = ProducerEntry {
                epoch,
                batches,
                last_timestamp,
            };
            if producer_id == NO_PRODUCER_ID || producers.insert(producer_id, entry).is_some() {
                return Err(CorruptSnapshot::Invalid("invalid or repeated producer id"));
            }
        }
        if !r.bytes.is_empty() {
            return Err(CorruptSnapshot::Invalid("trailing bytes"));
        }
        Ok(Self { producers })
    }
}

/// Why a snapshot file's contents cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
enum CorruptSnapshot {
    #[error("snapshot is truncated")]
    Truncated,
    #[error("snapshot CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("unsupported snapshot version {0}")]
    UnsupportedVersion(u8),
    #[error("snapshot content is invalid: {0}")]
    Invalid(&'static str),
}

/// Bounds-checked big-endian reads over snapshot content.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], CorruptSnapshot> {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or(CorruptSnapshot::Truncated)?;
        self.bytes = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, CorruptSnapshot> {
        Ok(u8::from_be_bytes(self.take()?))
    }
    fn i16(&mut self) -> Result<i16, CorruptSnapshot> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, CorruptSnapshot> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, CorruptSnapshot> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, CorruptSnapshot> {
        Ok(i64::from_be_bytes(self.take()?))
    }
}

fn snapshot_file_name(offset: i64) -> String {
    format!("{offset:020}{SNAPSHOT_SUFFIX}")
}

fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(snapshot_file_name(offset))
}

/// The offset named by a snapshot file name, if it is one (`.tmp` files are not).
fn parse_snapshot_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Snapshots in `dir`, oldest first. A missing directory has none.
fn list_snapshots(dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut snapshots = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(offset) = name.to_str().and_then(parse_snapshot_name) {
            snapshots.push((offset, entry.path()));
        }
    }
    snapshots.sort_unstable_by_key(|(offset, _)| *offset);
    Ok(snapshots)
}

fn delete_all(dir: &Path, paths: &[PathBuf]) -> io::Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    for path in paths {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    // Make the deletions durable: a snapshot past a truncation point must not come back.
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID: i64 = 42;

    fn meta(epoch: i16, first_seq: i32, last_seq: i32, first_offset: i64, ts: i64) -> BatchMeta {
        let count = i64::from(last_seq.wrapping_sub(first_seq)).rem_euclid(1 << 31);
        BatchMeta {
            producer_id: PID,
            producer_epoch: epoch,
            first_seq,
            last_seq,
            first_offset,
            last_offset: first_offset + count,
            max_timestamp: ts,
        }
    }

    /// Appends six batches of 3 records each: sequences 0..=17, offsets 100..=117.
    fn six_batches() -> ProducerStateManager {
        let mut state = ProducerStateManager::new();
        for i in 0..6 {
            state.update(meta(0, i * 3, i * 3 + 2, 100 + i64::from(i) * 3, 1000));
        }
        state
    }

    #[test]
    fn unknown_producer_accepts_any_sequence() {
        let state = ProducerStateManager::new();
        assert_eq!(state.check(PID, 3, 57, 60), Ok(SequenceCheck::Accept));
        assert!(state.is_empty());
    }

    #[test]
    fn detects_duplicate_of_each_of_last_five_batches() {
        let state = six_batches();
        for i in 1..6 {
            assert_eq!(
                state.check(PID, 0, i * 3, i * 3 + 2),
                Ok(SequenceCheck::Duplicate {
                    first_offset: 100 + i64::from(i) * 3,
                    last_offset: 102 + i64::from(i) * 3
                })
            );
        }
        // The oldest batch has fallen out of the cache: it is now simply out of order.
        assert_eq!(
            state.check(PID, 0, 0, 2),
            Err(SequenceError::OutOfOrder {
                producer_id: PID,
                expected: 18,
                received: 0
            })
        );
        assert_eq!(state.check(PID, 0, 18, 20), Ok(SequenceCheck::Accept));
        assert_eq!(state.last_entry(PID), Some((0, 17, 117)));
    }

    #[test]
    fn rejects_sequence_gap() {
        let state = six_batches();
        assert_eq!(
            state.check(PID, 0, 19, 19),
            Err(SequenceError::OutOfOrder {
                producer_id: PID,
                expected: 18,
                received: 19
            })
        );
        // Same first sequence as a cached batch but a different range is not a duplicate.
        assert_eq!(
            state.check(PID, 0, 15, 16),
            Err(SequenceError::OutOfOrder {
                producer_id: PID,
                expected: 18,
                received: 15
            })
        );
    }

    #[test]
    fn fences_older_epoch() {
        let mut state = ProducerStateManager::new();
        state.update(meta(5, 0, 0, 0, 1));
        assert_eq!(
            state.check(PID, 4, 1, 1),
            Err(SequenceError::InvalidEpoch {
                producer_id: PID,
                current: 5,
                received: 4
            })
        );
    }

    #[test]
    fn new_epoch_must_start_at_zero() {
        let mut state = six_batches();
        assert_eq!(
            state.check(PID, 1, 18, 18),
            Err(SequenceError::OutOfOrder {
                producer_id: PID,
                expected: 0,
                received: 18
            })
        );
        assert_eq!(state.check(PID, 1, 0, 4), Ok(SequenceCheck::Accept));

        // Appending with the new epoch forgets the old epoch's batches.
        state.update(meta(1, 0, 4, 118, 2000));
        assert_eq!(state.last_entry(PID), Some((1, 4, 122)));
        assert_eq!(
            state.check(PID, 0, 15, 17),
            Err(SequenceError::InvalidEpoch {
                producer_id: PID,
                current: 1,
                received: 0
            })
        );
        assert_eq!(
            state.check(PID, 1, 0, 4),
            Ok(SequenceCheck::Duplicate {
                first_offset: 118,
                last_offset: 122
            })
        );
        assert_eq!(state.check(PID, 1, 5, 5), Ok(SequenceCheck::Accept));
    }

    #[test]
    fn sequence_wraps_from_max_to_zero() {
        let mut state = ProducerStateManager::new();
        state.update(meta(0, i32::MAX - 2, i32::MAX, 10, 1));
        assert_eq!(state.check(PID, 0, 0, 4), Ok(SequenceCheck::Accept));
        assert_eq!(
            state.check(PID, 0, i32::MIN, i32::MIN),
            Err(SequenceError::OutOfOrder {
                producer_id: PID,
                expected: 0,
                received: i32::MIN
            })
        );
        // A batch that itself wraps: last sequence is below its first.
        state.update(meta(0, i32::MAX - 1, 1, 13, 1));
        assert_eq!(state.last_entry(PID), Some((0, 1, 16)));
        assert_eq!(
            state.check(PID, 0, i32::MAX - 1, 1),
            Ok(SequenceCheck::Duplicate {
                first_offset: 13,
                last_offset: 16
            })
        );
        assert_eq!(state.check(PID, 0, 2, 2), Ok(SequenceCheck::Accept));
    }

    #[test]
    fn update_replays_log_without_validation() {
        let mut state = ProducerStateManager::new();
        state.update(meta(3, 10, 12, 0, 1));
        state.update(meta(3, 50, 50, 3, 1)); // gap
        state.update(meta(2, 7, 7, 4, 1)); // older epoch
        assert_eq!(state.last_entry(PID), Some((2, 7, 4)));
        state.update(BatchMeta {
            producer_id: NO_PRODUCER_ID,
            ..meta(0, 0, 0, 5, 1)
        });
        assert_eq!(state.len(), 1);
        state.clear();
        assert!(state.is_empty());
    }

    #[test]
    fn expires_idle_producers() {
        let mut state = ProducerStateManager::new();
        state.update(BatchMeta {
            producer_id: 1,
            ..meta(0, 0, 0, 0, 1_000)
        });
        state.update(BatchMeta {
            producer_id: 2,
            ..meta(0, 0, 0, 1, 5_000)
        });
        state.update(BatchMeta {
            producer_id: 3,
            ..meta(0, 0, 0, 2, 6_000)
        });
        // A timestamp far in the past must not overflow the age computation.
        state.update(BatchMeta {
            producer_id: 4,
            ..meta(0, 0, 0, 3, i64::MIN)
        });
        state.expire(10_000, 5_000);
        // Exactly max_age old counts as expired, as in Kafka.
        assert_eq!(state.len(), 1);
        assert_eq!(state.last_entry(3), Some((0, 0, 2)));
        assert_eq!(state.check(1, 0, 9, 9), Ok(SequenceCheck::Accept));
    }

    fn snapshot_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn snapshot_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = six_batches();
        state.update(BatchMeta {
            producer_id: 7,
            ..meta(3, i32::MAX, 0, 118, -5)
        });
        state.write_snapshot(dir.path(), 120).unwrap();
        assert_eq!(snapshot_names(dir.path()), vec!["00000000000000000120.snapshot"]);

        let (loaded, offset) = ProducerStateManager::load_latest_snapshot(dir.path(), 120)
            .unwrap()
            .unwrap();
        assert_eq!(offset, 120);
        assert_eq!(loaded.producers, state.producers);
        assert_eq!(
            loaded.check(PID, 0, 6, 8),
            Ok(SequenceCheck::Duplicate {
                first_offset: 106,
                last_offset: 108
            })
        );
        assert_eq!(loaded.check(7, 3, 1, 1), Ok(SequenceCheck::Accept));

        // Nothing at or below max_offset, or no directory at all.
        assert!(ProducerStateManager::load_latest_snapshot(dir.path(), 119)
            .unwrap()
            .is_none());
        assert!(
            ProducerStateManager::load_latest_snapshot(&dir.path().join("absent"), 1000)
                .unwrap()
                .is_none()
        );

        // An empty state round-trips too.
        ProducerStateManager::new().write_snapshot(dir.path(), 0).unwrap();
        let (empty, offset) = ProducerStateManager::load_latest_snapshot(dir.path(), 0)
            .unwrap()
            .unwrap();
        assert_eq!((empty.len(), offset), (0, 0));
    }

    #[test]
    fn loads_newest_snapshot_not_past_max_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = ProducerStateManager::new();
        for (i, offset) in [10i64, 20, 30].into_iter().enumerate() {
            state.update(meta(0, i as i32, i as i32, offset - 1, 0));
            state.write_snapshot(dir.path(), offset).unwrap();
        }
        let (loaded, offset) = ProducerStateManager::load_latest_snapshot(dir.path(), 25)
            .unwrap()
            .unwrap();
        assert_eq!(offset, 20);
        assert_eq!(loaded.last_entry(PID), Some((0, 1, 19)));
    }

    #[test]
    fn corrupt_snapshot_falls_back_to_older() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = six_batches();
        state.write_snapshot(dir.path(), 118).unwrap();
        state.update(meta(0, 18, 18, 118, 0));
        state.write_snapshot(dir.path(), 119).unwrap();
        state.update(meta(0, 19, 19, 119, 0));
        state.write_snapshot(dir.path(), 120).unwrap();

        // Flip a byte in the newest, truncate the middle one.
        let newest = snapshot_path(dir.path(), 120);
        let mut bytes = fs::read(&newest).unwrap();
        bytes[10] ^= 0x40;
        fs::write(&newest, &bytes).unwrap();
        let middle = snapshot_path(dir.path(), 119);
        let bytes = fs::read(&middle).unwrap();
        fs::write(&middle, &bytes[..bytes.len() / 2]).unwrap();
        // Stray files are not snapshots.
        fs::write(dir.path().join("00000000000000000200.snapshot.tmp"), b"junk").unwrap();
        fs::write(dir.path().join("notes.snapshot"), b"junk").unwrap();

        let (loaded, offset) = ProducerStateManager::load_latest_snapshot(dir.path(), 1000)
            .unwrap()
            .unwrap();
        assert_eq!(offset, 118);
        assert_eq!(loaded.last_entry(PID), Some((0, 17, 117)));

        // With every snapshot corrupt there is nothing to load.
        fs::write(snapshot_path(dir.path(), 118), []).unwrap();
        assert!(ProducerStateManager::load_latest_snapshot(dir.path(), 1000)
            .unwrap()
            .is_none());
    }

    #[test]
    fn decode_rejects_bad_content_with_valid_crc() {
        let with_crc = |mut content: Vec<u8>| {
            let crc = crc32c::crc32c(&content);
            content.extend_from_slice(&crc.to_be_bytes());
            content
        };
        // Wrong version.
        assert_eq!(
            ProducerStateManager::decode(&with_crc(vec![9, 0, 0, 0, 0])).unwrap_err(),
            CorruptSnapshot::UnsupportedVersion(9)
        );
        // Claims a huge producer count it does not contain.
        assert_eq!(
            ProducerStateManager::decode(&with_crc(vec![1, 0xff, 0xff, 0xff, 0xff])).unwrap_err(),
            CorruptSnapshot::Truncated
        );
        // Trailing bytes.
        assert!(ProducerStateManager::decode(&with_crc(vec![1, 0, 0, 0, 0, 0])).is_err());
        // Zero batches for a producer.
        let mut content = vec![1, 0, 0, 0, 1];
        content.extend_from_slice(&PID.to_be_bytes());
        content.extend_from_slice(&0i16.to_be_bytes());
        content.extend_from_slice(&0i64.to_be_bytes());
        content.push(0);
        assert!(ProducerStateManager::decode(&with_crc(content)).is_err());
        assert!(ProducerStateManager::decode(&[1, 2, 3]).is_err());
    }

    #[test]
    fn deletes_snapshots_after_offset() {
        let dir = tempfile::tempdir().unwrap();
        let state = ProducerStateManager::new();
        for offset in [5, 10, 15, 20] {
            state.write_snapshot(dir.path(), offset).unwrap();
        }
        ProducerStateManager::delete_snapshots_after(dir.path(), 10).unwrap();
        assert_eq!(
            snapshot_names(dir.path()),
            vec!["00000000000000000005.snapshot", "00000000000000000010.snapshot"]
        );
        ProducerStateManager::delete_snapshots_after(dir.path(), -1).unwrap();
        assert!(snapshot_names(dir.path()).is_empty());
        ProducerStateManager::delete_snapshots_after(&dir.path().join("absent"), 0).unwrap();
    }

    #[test]
    fn retains_latest_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let state = ProducerStateManager::new();
        // 100 sorts before 20 as a string: the offsets must be compared as numbers.
        for offset in [3, 100, 20, 7] {
            state.write_snapshot(dir.path(), offset).unwrap();
        }
        fs::write(dir.path().join("00000000000000000001.log"), b"").unwrap();
        ProducerStateManager::retain_latest_snapshots(dir.path(), 2).unwrap();
        assert_eq!(
            snapshot_names(dir.path()),
            vec![
                "00000000000000000001.log",
                "00000000000000000020.snapshot",
                "00000000000000000100.snapshot"
            ]
        );
        ProducerStateManager::retain_latest_snapshots(dir.path(), 5).unwrap();
        assert_eq!(snapshot_names(dir.path()).len(), 3);
        ProducerStateManager::retain_latest_snapshots(dir.path(), 0).unwrap();
        assert_eq!(snapshot_names(dir.path()), vec!["00000000000000000001.log"]);
    }

    #[test]
    fn write_snapshot_rejects_negative_offset() {
        let dir = tempfile::tempdir().unwrap();
        let err = ProducerStateManager::new()
            .write_snapshot(dir.path(), -1)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
