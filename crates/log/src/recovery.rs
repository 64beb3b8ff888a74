//! Opening a log directory: find the segments, decide how much to trust, re-validate the rest,
//! and rebuild the producer state.
//!
//! Recovery story (see also `docs/log-format.md`):
//! - Stray `.tmp` files (an interrupted atomic write), `.log.cleaned` files (an interrupted
//!   cleaning pass) and index files without a `.log` are deleted.
//! - After a clean shutdown (checkpoint flag set), index files are trusted when they agree with
//!   their segment; only the active segment's tail (the batches after its last index entry)
//!   is re-validated.
//! - Otherwise every segment from the one holding the recovery point onwards is re-validated
//!   batch by batch (CRC, header, dense offsets; only increasing ones in a compacted log) and
//!   its indexes rebuilt; older segments only
//!   get their indexes rebuilt if the files are missing or disagree.
//! - The first segment cut short by validation ends the log: all later segments are deleted.
//! - Producer state: the newest snapshot at or below the log end offset, then the batches
//!   after it replayed through `ProducerStateManager::update`.
//! - Leader epochs: the `leader-epoch-checkpoint` file cut to the recovered log, checked against
//!   the epoch of the log's last batch; rebuilt from every batch's `partitionLeaderEpoch` when
//!   it is missing, unusable or disagrees.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::ops::ControlFlow;
use std::path::Path;

use crate::batch::BatchView;
use crate::checkpoint::Checkpoint;
use crate::durable::{self, TMP_SUFFIX};
use crate::leader_epoch::LeaderEpochCache;
use crate::producer_state::{BatchMeta, ProducerStateManager};
use crate::scan::{self, DEFAULT_CHUNK};
use crate::segment::{self, Segment, CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};

/// What a log directory holds once recovered.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub segments: BTreeMap<i64, Segment>,
    pub log_start_offset: i64,
    pub producer_state: ProducerStateManager,
    pub leader_epochs: LeaderEpochCache,
    /// The high watermark the checkpoint recorded, if any (not yet clamped to the log).
    pub high_watermark: Option<i64>,
}

/// Recovers the log in `dir` (which must exist). Every segment that was re-validated is
/// fsynced, so the whole recovered log is durable when this returns.
///
/// With `allow_gaps` (a compacted log: the policy compacts or the cleaner has run), offsets
/// need only increase, inside and between segments; a segment that ends before the next one
/// begins is a compaction gap. Overlaps are corruption either way.
pub(crate) fn recover(
    dir: &Path,
    index_interval: u32,
    now_ms: i64,
    allow_gaps: bool,
) -> io::Result<Recovered> {
    let checkpoint = Checkpoint::read(dir);
    let bases = clean_directory(dir)?;
    let clean = checkpoint.as_ref().is_some_and(|c| c.clean_shutdown);
    let recovery_point = checkpoint.as_ref().map_or(i64::MIN, |c| c.recovery_point);
    // Re-validate from the segment holding the recovery point (the first one if none does).
    let first_to_validate = bases
        .iter()
        .rev()
        .find(|&&b| b <= recovery_point)
        .or(bases.first())
        .copied()
        .unwrap_or(0);

    let mut segments = BTreeMap::new();
    for (i, &base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        let mut seg = Segment::open(dir, base)?;
        let trusted = if clean {
            seg.load_indexes(next_base) && (next_base.is_some() || seg.check_tail(allow_gaps)?)
        } else {
            base < first_to_validate && seg.load_indexes(next_base)
        };
        let mut ends_log = false;
        if !trusted {
            ends_log = seg.recover(index_interval, allow_gaps)?;
            seg.sync_data()?;
            seg.persist_indexes(true)?;
        }
        let disagrees = |n: i64| {
            if allow_gaps {
                n < seg.next_offset()
            } else {
                n != seg.next_offset()
            }
        };
        if next_base.is_some_and(disagrees) {
            ends_log = true;
        }
        segments.insert(base, seg);
        if ends_log {
            for &later in bases.get(i + 1..).unwrap_or_default() {
                tracing::warn!(dir = %dir.display(), base_offset = later, "deleting segment after truncated log tail");
                Segment::open(dir, later)?.delete()?;
            }
            break;
        }
    }
    let start_hint = checkpoint.as_ref().map_or(0, |c| c.log_start_offset);
    if segments.is_empty() {
        segments.insert(start_hint, Segment::create(dir, start_hint)?);
    }
    durable::sync_dir(dir)?;

    let first_base = segments.keys().next().copied().unwrap_or(start_hint);
    let log_end = segments
        .values()
        .next_back()
        .map_or(first_base, Segment::next_offset);
    let log_start_offset = start_hint.max(first_base).min(log_end);

    if let Some(active) = segments.values_mut().next_back() {
        let remembered = checkpoint
            .as_ref()
            .filter(|c| c.active_segment_base == active.base_offset())
            .and_then(|c| c.active_segment_first_append_ms);
        // Unknown age (no checkpoint for this segment): count from now, which can only delay
        // a time-based roll, never lose data.
        let first_append = remembered.or((!active.is_empty()).then_some(now_ms));
        active.set_first_append_ms(first_append);
    }

    ProducerStateManager::delete_snapshots_after(dir, log_end)?;
    let producer_state = rebuild_producer_state(dir, &segments, log_end)?;
    let leader_epochs = recover_leader_epochs(dir, &segments, log_start_offset, log_end)?;
    Ok(Recovered {
        segments,
        log_start_offset,
        producer_state,
        leader_epochs,
        high_watermark: checkpoint.and_then(|c| c.high_watermark),
    })
}

/// The leader-epoch cache of the recovered log `[log_start, log_end)`: the file's entries cut
/// to the log, if they agree with the epoch of the last batch; otherwise rebuilt from the
/// batches. Written back if it changed.
pub(crate) fn recover_leader_epochs(
    dir: &Path,
    segments: &BTreeMap<i64, Segment>,
    log_start: i64,
    log_end: i64,
) -> io::Result<LeaderEpochCache> {
    let (mut cache, mut dirty) = match LeaderEpochCache::read(dir)? {
        Some(Ok(cache)) => (cache, false),
        Some(Err(e)) => {
            tracing::warn!(dir = %dir.display(), error = ?e, "unusable leader-epoch-checkpoint; rebuilding it from the log");
            (rebuild_leader_epochs(segments)?, true)
        }
        None if log_end > log_start => (rebuild_leader_epochs(segments)?, true),
        None => (LeaderEpochCache::new(), false),
    };
    dirty |= cache.truncate_from_end(log_end);
    dirty |= cache.truncate_from_start(log_start);
    if let Some((last_offset, epoch)) = last_batch_epoch(segments, log_end)? {
        if epoch >= 0 && cache.epoch_for_offset(last_offset) != Some(epoch) {
            tracing::warn!(dir = %dir.display(), epoch, last_offset,
                "leader-epoch-checkpoint disagrees with the log's last batch; rebuilding it from the log");
            cache = rebuild_leader_epochs(segments)?;
            cache.truncate_from_end(log_end);
            cache.truncate_from_start(log_start);
            dirty = true;
        }
    }
    if dirty {
        cache.write(dir)?;
    }
    Ok(cache)
}

/// Kafka's rule while recovering segments: each batch whose epoch is above every epoch seen so
/// far starts that epoch.
fn rebuild_leader_epochs(segments: &BTreeMap<i64, Segment>) -> io::Result<LeaderEpochCache> {
    let mut cache = LeaderEpochCache::new();
    for seg in segments.values() {
        scan::scan(seg.file(), 0, seg.size(), false, DEFAULT_CHUNK, |_, view| {
            let epoch = view.partition_leader_epoch();
            if epoch >= 0 && cache.latest_epoch().is_none_or(|latest| epoch > latest) {
                cache.assign(epoch, view.base_offset());
            }
            ControlFlow::Continue(())
        })?;
    }
    Ok(cache)
}

/// `(last_offset, partitionLeaderEpoch)` of the batch holding `log_end - 1`, if there is one.
fn last_batch_epoch(segments: &BTreeMap<i64, Segment>, log_end: i64) -> io::Result<Option<(i64, i32)>> {
    let last = log_end - 1;
    let Some(seg) = segments.range(..=last).next_back().map(|(_, s)| s) else {
        return Ok(None);
    };
    Ok(seg
        .locate(last, 0)?
        .map(|b| (b.last_offset, b.partition_leader_epoch)))
}

/// Deletes leftovers of interrupted writes and returns the base offsets of the segment files,
/// ascending.
fn clean_directory(dir: &Path) -> io::Result<Vec<i64>> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) || name.ends_with(CLEANED_SUFFIX) {
            durable::remove_if_exists(&entry.path())?;
        } else if let Some(base) = segment::parse_file_name(name, LOG_SUFFIX) {
            logs.push(base);
        } else if segment::parse_file_name(name, INDEX_SUFFIX)
            .or_else(|| segment::parse_file_name(name, TIME_INDEX_SUFFIX))
            .is_some()
        {
            indexes.push((name.to_owned(), entry.path()));
        }
    }
    logs.sort_unstable();
    for (name, path) in indexes {
        let base = segment::parse_file_name(&name, INDEX_SUFFIX)
            .or_else(|| segment::parse_file_name(&name, TIME_INDEX_SUFFIX));
        if base.is_some_and(|b| logs.binary_search(&b).is_err()) {
            durable::remove_if_exists(&path)?;
        }
    }
    Ok(logs)
}

/// The producer state as of `log_end`: the newest usable snapshot plus a replay of the batch
/// headers after it.
pub(crate) fn rebuild_producer_state(
    dir: &Path,
    segments: &BTreeMap<i64, Segment>,
    log_end: i64,
) -> io::Result<ProducerStateManager> {
    let (mut state, from) = match ProducerStateManager::load_latest_snapshot(dir, log_end)? {
        Some((state, offset)) => (state, offset),
        None => (ProducerStateManager::new(), i64::MIN),
    };
    for seg in segments.values().filter(|s| s.next_offset() > from) {
        let start = if seg.base_offset() < from {
            seg.find_position(from, 0)?.unwrap_or(seg.size())
        } else {
            0
        };
        scan::scan(seg.file(), start, seg.size(), false, DEFAULT_CHUNK, |_, view| {
            if view.has_producer_id() && view.base_offset() >= from {
                state.update(batch_meta(&view));
            }
            ControlFlow::Continue(())
        })?;
    }
    Ok(state)
}

/// The producer-state record of a batch as stored in the log.
pub(crate) fn batch_meta(view: &BatchView<'_>) -> BatchMeta {
    BatchMeta {
        producer_id: view.producer_id(),
        producer_epoch: view.producer_epoch(),
        first_seq: view.base_sequence(),
        last_seq: view.last_sequence(),
        first_offset: view.base_offset(),
        last_offset: view.last_offset(),
        max_timestamp: view.max_timestamp(),
    }
}

#[cfg(test)]
mod tests;
