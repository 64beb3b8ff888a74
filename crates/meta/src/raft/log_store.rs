//! The Raft log, the vote and the purge point on disk: openraft's `RaftLogStorage`.
//!
//! Layout under the store's directory:
//! - `log/NNNNNNNNNNNNNNNNNNNN.log`: append-only segments (format and recovery in
//!   [`super::segment`]); a new one starts after [`SEGMENT_BYTES`].
//! - `vote.json`: the vote, replaced atomically and fsync'd before `save_vote` returns.
//! - `purged.json`: the last purged log id, durable before any segment is deleted, so the log
//!   never has a hole that openraft does not know about.
//! - `committed.json`: a hint of the last committed log id (not fsync'd: if it is lost or
//!   stale, the node re-applies less on restart and waits for the leader's commit index).
//!
//! All entries after the purge point are also kept in memory (the metadata log is small and
//! snapshots bound it), so reads never touch the disk; file IO runs on the blocking pool.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogReader, StorageIOError, Vote,
};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::fsutil::{atomic_write, read_optional, sync_dir};
use super::segment::{self, LogError};
use super::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

/// A segment is closed and a new one started once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// The on-disk Raft log of one node. Cheap to clone: clones share the same files.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogFiles>>,
}

/// One segment file as the store tracks it.
#[derive(Debug)]
struct Segment {
    first: u64,
    /// Index the next entry appended to this segment must have.
    next: u64,
    len: u64,
    path: PathBuf,
}

/// An entry and where its record starts.
struct Stored {
    entry: Entry,
    segment: u64,
    offset: u64,
}

struct LogFiles {
    dir: PathBuf,
    log_dir: PathBuf,
    segments: Vec<Segment>,
    /// Append handle on the last segment.
    active: Option<File>,
    entries: BTreeMap<u64, Stored>,
    last_purged: Option<LogId>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId>,
}

/// Small JSON files carry a version so the format can change.
#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    version: u8,
    value: T,
}

const FILE_VERSION: u8 = 1;

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, LogError> {
    let Some(bytes) = read_optional(path).map_err(LogError::io(path))? else {
        return Ok(None);
    };
    let parsed: Versioned<T> = serde_json::from_slice(&bytes).map_err(|e| LogError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        why: e.to_string(),
    })?;
    if parsed.version != FILE_VERSION {
        return Err(LogError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            why: format!("unsupported version {}", parsed.version),
        });
    }
    Ok(Some(parsed.value))
}

fn write_json<T: Serialize>(path: &Path, value: T, durable: bool) -> Result<(), LogError> {
    let bytes = serde_json::to_vec(&Versioned {
        version: FILE_VERSION,
        value,
    })
    .map_err(|e| LogError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        why: e.to_string(),
    })?;
    atomic_write(path, &bytes, durable).map_err(LogError::io(path))
}

fn storage_error(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: &LogError) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(e)).into()
}

impl LogStore {
    /// Opens (or creates) the log under `dir`, cutting a torn tail left by a crash.
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        let files = LogFiles::open(dir)?;
        Ok(Self {
            inner: Arc::new(Mutex::new(files)),
        })
    }

    /// Runs `f` on the files on the blocking pool (file IO must not stall the runtime).
    async fn blocking<T, F>(&self, f: F) -> Result<T, LogError>
    where
        T: Send + 'static,
        F: FnOnce(&mut LogFiles) -> Result<T, LogError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&mut inner.lock()))
            .await
            .map_err(|e| LogError::Io {
                path: PathBuf::new(),
                source: std::io::Error::other(e.to_string()),
            })?
    }
}

impl LogFiles {
    fn open(dir: &Path) -> Result<Self, LogError> {
        let log_dir = dir.join("log");
        fs::create_dir_all(&log_dir).map_err(LogError::io(&log_dir))?;
        let vote = read_json(&dir.join("vote.json"))?;
        let last_purged: Option<LogId> = read_json(&dir.join("purged.json"))?;
        // Only a hint: a damaged one is ignored rather than refused.
        let committed = read_json(&dir.join("committed.json")).ok().flatten();

        let mut firsts = Vec::new();
        for dirent in fs::read_dir(&log_dir).map_err(LogError::io(&log_dir))? {
            let dirent = dirent.map_err(LogError::io(&log_dir))?;
            if let Some(first) = dirent.file_name().to_str().and_then(segment::parse_file_name) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();

        let mut files = LogFiles {
            dir: dir.to_path_buf(),
            log_dir: log_dir.clone(),
            segments: Vec::new(),
            active: None,
            entries: BTreeMap::new(),
            last_purged,
            vote,
            committed,
        };
        let count = firsts.len();
        for (i, first) in firsts.into_iter().enumerate() {
            let is_last = i + 1 == count;
            files.recover_segment(first, is_last)?;
        }
        if let (Some(purged), Some((first, _))) = (files.last_purged, files.entries.first_key_value()) {
            if *first != purged.index + 1 {
                return Err(LogError::Corrupt {
                    path: log_dir,
                    offset: 0,
                    why: format!("log resumes at {first} after purging up to {}", purged.index),
                });
            }
        }
        // Finish a purge a crash interrupted: drop segments holding only purged entries.
        if let Some(purged) = files.last_purged {
            files.purge_segments(purged.index)?;
        }
        // The committed hint is not fsync'd with the log: past the log's end it is unusable.
        if files
            .committed
            .is_some_and(|c| files.last_log_id().is_none_or(|l| l.index < c.index))
        {
            files.committed = None;
        }
        if let Some(last) = files.segments.last() {
            let file = OpenOptions::new()
                .append(true)
                .open(&last.path)
                .map_err(LogError::io(&last.path))?;
            files.active = Some(file);
        }
        Ok(files)
    }

    fn recover_segment(&mut self, first: u64, is_last: bool) -> Result<(), LogError> {
        let path = self.log_dir.join(segment::file_name(first));
        let bytes = fs::read(&path).map_err(LogError::io(&path))?;
        let scan = segment::scan(&path, &bytes)?;
        if let Some(why) = &scan.torn {
            if !is_last {
                return Err(LogError::Corrupt {
                    path,
                    offset: scan.valid_len,
                    why: format!("{why} (not the last segment, so not a torn tail)"),
                });
            }
            tracing::warn!(path = %path.display(), valid_len = scan.valid_len, %why, "cutting the torn tail of the Raft log");
            if scan.valid_len == 0 {
                // Not even a whole header: the segment was being created.
                fs::remove_file(&path).map_err(LogError::io(&path))?;
                sync_dir(&self.log_dir).map_err(LogError::io(&self.log_dir))?;
                return Ok(());
            }
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(LogError::io(&path))?;
            file.set_len(scan.valid_len).map_err(LogError::io(&path))?;
            file.sync_all().map_err(LogError::io(&path))?;
        }
        let purged_to = self.last_purged.map(|l| l.index);
        let mut next = first;
        for (entry, offset) in scan.entries {
            let index = entry.log_id.index;
            let retained = purged_to.is_none_or(|p| index > p);
            let follows = self
                .entries
                .last_key_value()
                .is_none_or(|(last, _)| last + 1 == index);
            if index != next || (retained && !follows) {
                return Err(LogError::Corrupt {
                    path,
                    offset,
                    why: format!("entry {index} where {next} was expected"),
                });
            }
            if retained {
                let stored = Stored {
                    entry,
                    segment: first,
                    offset,
                };
                self.entries.insert(index, stored);
            }
            next = index + 1;
        }
        self.segments.push(Segment {
            first,
            next,
            len: scan.valid_len,
            path,
        });
        Ok(())
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .last_key_value()
            .map(|(_, s)| s.entry.log_id)
            .or(self.last_purged)
    }

    fn append(&mut self, entries: Vec<Entry>) -> Result<(), LogError> {
        for entry in entries {
            let index = entry.log_id.index;
            // Openraft truncates before it overwrites; an overlapping append means the same.
            if self
                .entries
                .last_key_value()
                .is_some_and(|(last, _)| *last >= index)
            {
                self.truncate(index)?;
            }
            let expected = self.last_log_id().map_or(index, |l| l.index + 1);
            if index != expected {
                return Err(LogError::NotContiguous { expected, got: index });
            }
            let mut record = Vec::new();
            segment::encode(&entry, &mut record)?;
            let roll = match self.segments.last() {
                None => true,
                Some(s) => s.next != index || s.len >= SEGMENT_BYTES || self.active.is_none(),
            };
            if roll {
                self.roll(index)?;
            }
            let (Some(active), Some(seg)) = (self.active.as_mut(), self.segments.last_mut()) else {
                return Err(LogError::NotContiguous { expected, got: index });
            };
            active.write_all(&record).map_err(LogError::io(&seg.path))?;
            let offset = seg.len;
            seg.len += record.len() as u64;
            seg.next = index + 1;
            let segment = seg.first;
            self.entries.insert(
                index,
                Stored {
                    entry,
                    segment,
                    offset,
                },
            );
        }
        if let (Some(active), Some(seg)) = (self.active.as_ref(), self.segments.last()) {
            active.sync_data().map_err(LogError::io(&seg.path))?;
        }
        Ok(())
    }

    /// Closes the active segment and starts one whose first entry is `first`. An empty last
    /// segment (left by a crash right after it was created) is replaced.
    fn roll(&mut self, first: u64) -> Result<(), LogError> {
        if let (Some(active), Some(seg)) = (self.active.take(), self.segments.last()) {
            active.sync_data().map_err(LogError::io(&seg.path))?;
        }
        if self.segments.last().is_some_and(|s| s.next == s.first) {
            if let Some(empty) = self.segments.pop() {
                fs::remove_file(&empty.path).map_err(LogError::io(&empty.path))?;
            }
        }
        let path = self.log_dir.join(segment::file_name(first));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(LogError::io(&path))?;
        file.write_all(segment::HEADER).map_err(LogError::io(&path))?;
        file.sync_all().map_err(LogError::io(&path))?;
        sync_dir(&self.log_dir).map_err(LogError::io(&self.log_dir))?;
        self.segments.push(Segment {
            first,
            next: first,
            len: segment::HEADER.len() as u64,
            path,
        });
        self.active = Some(file);
        Ok(())
    }

    /// Deletes entries from `index` on.
    fn truncate(&mut self, index: u64) -> Result<(), LogError> {
        let Some((&from, cut)) = self
            .entries
            .range(index..)
            .next()
            .map(|(i, s)| (i, (s.segment, s.offset)))
        else {
            return Ok(());
        };
        let index = from;
        self.active = None;
        // Whole segments after the cut go first, newest first, so a crash midway leaves a
        // prefix of the log (the entries being deleted were not committed anyway).
        while let Some(seg) = self.segments.last() {
            if seg.first < index {
                break;
            }
            fs::remove_file(&seg.path).map_err(LogError::io(&seg.path))?;
            self.segments.pop();
        }
        if let Some(seg) = self.segments.last_mut() {
            if seg.first == cut.0 {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&seg.path)
                    .map_err(LogError::io(&seg.path))?;
                file.set_len(cut.1).map_err(LogError::io(&seg.path))?;
                file.sync_all().map_err(LogError::io(&seg.path))?;
                seg.len = cut.1;
                seg.next = index;
            }
            self.active = Some(
                OpenOptions::new()
                    .append(true)
                    .open(&seg.path)
                    .map_err(LogError::io(&seg.path))?,
            );
        }
        sync_dir(&self.log_dir).map_err(LogError::io(&self.log_dir))?;
        self.entries.split_off(&index);
        Ok(())
    }

    /// Forgets entries up to and including `log_id` (they are in a snapshot).
    fn purge(&mut self, log_id: LogId) -> Result<(), LogError> {
        if self.last_purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        write_json(&self.dir.join("purged.json"), log_id, true)?;
        self.last_purged = Some(log_id);
        self.entries = self.entries.split_off(&(log_id.index + 1));
        self.purge_segments(log_id.index)
    }

    /// Deletes the segments whose entries are all at or below `index`.
    fn purge_segments(&mut self, index: u64) -> Result<(), LogError> {
        let mut removed = false;
        while let Some(seg) = self.segments.first() {
            if seg.next > index + 1 {
                break;
            }
            if self.segments.len() == 1 {
                self.active = None;
            }
            fs::remove_file(&seg.path).map_err(LogError::io(&seg.path))?;
            self.segments.remove(0);
            removed = true;
        }
        if removed {
            sync_dir(&self.log_dir).map_err(LogError::io(&self.log_dir))?;
        }
        Ok(())
    }

    fn read_range(&self, range: (Bound<u64>, Bound<u64>)) -> Vec<Entry> {
        self.entries.range(range).map(|(_, s)| s.entry.clone()).collect()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        Ok(self.inner.lock().read_range(bounds))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let files = self.inner.lock();
        Ok(LogState {
            last_purged_log_id: files.last_purged,
            last_log_id: files.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |files| {
            write_json(&files.dir.join("vote.json"), vote, true)?;
            files.vote = Some(vote);
            Ok(())
        })
        .await
        .map_err(|e| storage_error(ErrorSubject::Vote, ErrorVerb::Write, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.inner.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.blocking(move |files| {
            write_json(&files.dir.join("committed.json"), committed, false)?;
            files.committed = committed;
            Ok(())
        })
        .await
        .map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Write, &e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.inner.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        match self.blocking(move |files| files.append(entries)).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(storage_error(ErrorSubject::Logs, ErrorVerb::Write, &e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |files| files.truncate(log_id.index))
            .await
            .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |files| files.purge(log_id))
            .await
            .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }
}

#[cfg(test)]
mod tests;
