//! One Raft log segment file: its on-disk format, and the scan that recovers it after a crash.
//!
//! Format (version 1): an 8-byte header, `SAPRLOG` then the version byte, followed by records
//! `[len: u32 BE][crc32c(payload): u32 BE][payload: serde_json of one openraft Entry]`. A
//! segment is named after the index of its first entry (`00000000000000000042.log`) and holds
//! consecutive indexes.
//!
//! Recovery story: entries are appended then fsync'd before openraft is told they are
//! durable, so after a kill -9 or a power loss only the tail of the *last* segment can be
//! damaged. [`scan`] stops at the first record that is short or fails its CRC and reports the
//! valid length, and the log store cuts the file there. A damaged record anywhere else, a
//! wrong header or a CRC-valid record that does not parse is corruption, reported as an error,
//! never a panic.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::types::Entry;

/// The header every segment starts with.
pub(crate) const HEADER: &[u8; 8] = b"SAPRLOG\x01";
/// Bytes before each record's payload: length and CRC.
const RECORD_OVERHEAD: usize = 8;
/// The largest entry accepted, in JSON bytes (a batch of ~24,000 partition records is ~5 MB).
/// Half the controller listener's frame limit, so an entry always fits in an AppendEntries.
pub(crate) const MAX_ENTRY_BYTES: usize = 32 * 1024 * 1024;

/// Why a log segment could not be read or written.
#[derive(Debug, Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} at byte {offset}: {why}")]
    Corrupt { path: PathBuf, offset: u64, why: String },
    #[error("entry {index} is {size} bytes, over the limit of {MAX_ENTRY_BYTES}")]
    EntryTooLarge { index: u64, size: usize },
    #[error("entry {got} appended where {expected} was expected")]
    NotContiguous { expected: u64, got: u64 },
}

impl LogError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
        move |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The file name of the segment whose first entry is `first`.
pub(crate) fn file_name(first: u64) -> String {
    format!("{first:020}.log")
}

/// The first index a segment file name stands for, `None` for any other file.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Appends one encoded record for `entry` to `out`.
pub(crate) fn encode(entry: &Entry, out: &mut Vec<u8>) -> Result<(), LogError> {
    let payload = serde_json::to_vec(entry).map_err(|e| LogError::Corrupt {
        path: PathBuf::new(),
        offset: 0,
        why: format!("entry {} does not serialize: {e}", entry.log_id.index),
    })?;
    if payload.len() > MAX_ENTRY_BYTES {
        return Err(LogError::EntryTooLarge {
            index: entry.log_id.index,
            size: payload.len(),
        });
    }
    // Bounded by MAX_ENTRY_BYTES above, so it fits in a u32.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// What a scan of one segment found.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Entries with the byte offset of their record.
    pub entries: Vec<(Entry, u64)>,
    /// Length of the valid prefix (header plus whole, CRC-valid records).
    pub valid_len: u64,
    /// Why the scan stopped before the end of the file, if it did.
    pub torn: Option<String>,
}

/// Reads every whole record of a segment's bytes. A short header counts as a torn tail
/// (nothing valid at all); a wrong header is corruption.
pub(crate) fn scan(path: &Path, bytes: &[u8]) -> Result<Scan, LogError> {
    let corrupt = |offset: usize, why: String| LogError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        why,
    };
    let Some(header) = bytes.get(..HEADER.len()) else {
        return Ok(Scan {
            entries: Vec::new(),
            valid_len: 0,
            torn: Some(format!("header cut at {} bytes", bytes.len())),
        });
    };
    if header != HEADER {
        return Err(corrupt(
            0,
            "not a Sapper Raft log segment (bad header or version)".into(),
        ));
    }
    let mut entries = Vec::new();
    let mut offset = HEADER.len();
    let torn = loop {
        let Some(rest) = bytes.get(offset..) else {
            break None;
        };
        if rest.is_empty() {
            break None;
        }
        let (Some(len), Some(crc)) = (read_u32(rest, 0), read_u32(rest, 4)) else {
            break Some(format!("record header cut at byte {offset}"));
        };
        let len = len as usize;
        if len > MAX_ENTRY_BYTES {
            break Some(format!("record length {len} at byte {offset} is over the limit"));
        }
        let Some(payload) = rest.get(RECORD_OVERHEAD..RECORD_OVERHEAD + len) else {
            break Some(format!("record at byte {offset} cut short"));
        };
        if crc32c::crc32c(payload) != crc {
            break Some(format!("record at byte {offset} fails its CRC"));
        }
        let entry: Entry = serde_json::from_slice(payload)
            .map_err(|e| corrupt(offset, format!("CRC-valid record does not parse: {e}")))?;
        entries.push((entry, offset as u64));
        offset += RECORD_OVERHEAD + len;
    };
    Ok(Scan {
        entries,
        valid_len: offset as u64,
        torn,
    })
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let word: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::{Batch, TypeConfig};
    use openraft::{EntryPayload, LogId};

    fn entry(index: u64) -> Entry {
        openraft::Entry::<TypeConfig> {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Batch::default()),
        }
    }

    fn segment(n: u64) -> Vec<u8> {
        let mut bytes = HEADER.to_vec();
        for i in 1..=n {
            encode(&entry(i), &mut bytes).unwrap();
        }
        bytes
    }

    #[test]
    fn scan_recovers_every_whole_record_at_every_cut() {
        let full = segment(3);
        let whole = scan(Path::new("x"), &full).unwrap();
        assert_eq!(whole.entries.len(), 3);
        assert!(whole.torn.is_none());
        for cut in 0..full.len() {
            let s = scan(Path::new("x"), &full[..cut]).unwrap();
            // Every cut keeps exactly the records that end at or before it.
            let kept = whole.entries.iter().filter(|(_, off)| {
                let next = whole
                    .entries
                    .iter()
                    .map(|(_, o)| *o)
                    .find(|o| o > off)
                    .unwrap_or(full.len() as u64);
                next <= cut as u64
            });
            assert_eq!(s.entries.len(), kept.count(), "cut at {cut}");
            assert!(s.valid_len <= cut as u64);
        }
    }

    #[test]
    fn a_flipped_byte_stops_the_scan_and_a_bad_header_is_an_error() {
        let mut bytes = segment(3);
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff;
        let s = scan(Path::new("x"), &bytes).unwrap();
        assert_eq!(s.entries.len(), 2);
        assert!(s.torn.unwrap().contains("CRC"));
        bytes[0] = b'X';
        assert!(matches!(
            scan(Path::new("x"), &bytes),
            Err(LogError::Corrupt { .. })
        ));
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name("42.log"), None);
        assert_eq!(parse_file_name("00000000000000000042.tmp"), None);
    }
}
