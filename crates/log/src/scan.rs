//! Walks the record batches of a segment file with positional reads, a chunk at a time, so
//! that recovery, index rebuilds, producer-state replay, reads and timestamp lookups never map
//! or load a whole segment. A batch larger than a chunk gets a buffer of its own size, bounded
//! by the bytes actually left in the segment, so a corrupt length field cannot make us
//! allocate more than the file holds.

use std::fs::File;
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;

use crate::batch::{BatchError, BatchIter, BatchView};

/// Default amount read per positional read.
pub(crate) const DEFAULT_CHUNK: usize = 1 << 20;

/// Where a scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScanEnd {
    /// Position just after the last batch handed to the visitor.
    pub position: u64,
    /// The first batch that failed to parse (or validate), if the scan stopped on one.
    pub error: Option<BatchError>,
}

/// Calls `visit(position, batch)` for each batch in `file[start..end]`, in order, until the
/// visitor breaks, a batch is invalid (or torn at `end`), or `end` is reached. With `validate`,
/// each batch's CRC and header consistency are checked too.
pub(crate) fn scan(
    file: &File,
    start: u64,
    end: u64,
    validate: bool,
    chunk: usize,
    mut visit: impl FnMut(u64, BatchView<'_>) -> ControlFlow<()>,
) -> io::Result<ScanEnd> {
    let chunk = chunk.max(crate::batch::HEADER_SIZE);
    let mut buf = Vec::new();
    let mut pos = start;
    let mut want = chunk;
    while pos < end {
        let remaining = usize::try_from(end - pos).unwrap_or(usize::MAX);
        let len = want.min(remaining);
        buf.resize(len, 0);
        file.read_exact_at(&mut buf, pos)?;
        let reaches_end = len == remaining;
        let mut consumed = 0usize;
        want = chunk;
        let iter = if validate {
            BatchIter::validated(&buf)
        } else {
            BatchIter::new(&buf)
        };
        for item in iter {
            match item {
                Ok(view) => {
                    let at = pos + consumed as u64;
                    consumed += view.size();
                    if visit(at, view).is_break() {
                        return Ok(ScanEnd {
                            position: pos + consumed as u64,
                            error: None,
                        });
                    }
                }
                Err(BatchError::Truncated { needed, .. }) if !reaches_end => {
                    // The batch straddles the chunk boundary: read again from its start.
                    want = needed.max(chunk);
                    break;
                }
                Err(error) => {
                    return Ok(ScanEnd {
                        position: pos + consumed as u64,
                        error: Some(error),
                    });
                }
            }
        }
        if consumed == 0 && reaches_end {
            break;
        }
        pos += consumed as u64;
    }
    Ok(ScanEnd {
        position: pos.min(end),
        error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::testing::simple_batch;
    use std::io::Write;

    fn file_with(batches: &[Vec<u8>]) -> (tempfile::NamedTempFile, u64) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for b in batches {
            f.write_all(b).unwrap();
        }
        let len = f.as_file().metadata().unwrap().len();
        (f, len)
    }

    #[test]
    fn visits_every_batch_across_small_chunks() {
        let batches: Vec<_> = (1..6)
            .map(|i| simple_batch(i, 0, &vec![7u8; 40 * i as usize]))
            .collect();
        let (f, len) = file_with(&batches);
        let mut seen = Vec::new();
        let end = scan(f.as_file(), 0, len, true, 70, |pos, v| {
            seen.push((pos, v.records_count()));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(
            end,
            ScanEnd {
                position: len,
                error: None
            }
        );
        assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        assert_eq!(seen[1].0, batches[0].len() as u64);
    }

    #[test]
    fn stops_at_torn_tail_and_at_visitor_break() {
        let batches = vec![simple_batch(1, 0, b"a"), simple_batch(2, 0, b"bb")];
        let (f, len) = file_with(&batches);
        let first = batches[0].len() as u64;
        let torn = scan(f.as_file(), 0, len - 1, true, DEFAULT_CHUNK, |_, _| {
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(torn.position, first);
        assert!(matches!(torn.error, Some(BatchError::Truncated { .. })));
        let stopped = scan(f.as_file(), 0, len, false, 10, |_, _| ControlFlow::Break(())).unwrap();
        assert_eq!(
            stopped,
            ScanEnd {
                position: first,
                error: None
            }
        );
    }
}
