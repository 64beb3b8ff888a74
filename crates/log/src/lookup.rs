//! The read side of [`Log`]: fetching whole batches by offset and ListOffsets by timestamp.
//! Everything here takes `&self` and uses positional reads, so the broker can serve many
//! fetches under a read lock while no append runs.

use std::ops::ControlFlow;

use bytes::Bytes;

use crate::error::LogError;
use crate::log::{Log, ReadResult, TimestampOffset};
use crate::records;
use crate::scan;
use crate::segment::Segment;

/// Smallest and largest positional read a fetch makes at once.
const MIN_READ_CHUNK: usize = 64 << 10;
const MAX_READ_CHUNK: usize = 8 << 20;

impl Log {
    /// Reads whole batches starting with the one that contains `offset`, stopping before
    /// `max_bytes` would be exceeded but always returning at least one batch (Kafka's
    /// minOneMessage), and never a batch whose base offset is >= `upper_bound` (the high
    /// watermark). `offset == log_end_offset` reads nothing; outside
    /// `[log_start_offset, log_end_offset]` is [`LogError::OffsetOutOfRange`].
    pub fn read(&self, offset: i64, max_bytes: usize, upper_bound: i64) -> Result<ReadResult, LogError> {
        let log_end = self.log_end_offset();
        if offset < self.log_start_offset || offset > log_end {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: log_end,
            });
        }
        let mut out: Vec<u8> = Vec::new();
        if offset < log_end && offset < upper_bound {
            self.read_into(&mut out, offset, max_bytes, upper_bound)?;
        }
        Ok(ReadResult {
            bytes: Bytes::from(out),
            log_start_offset: self.log_start_offset,
            log_end_offset: log_end,
        })
    }

    fn read_into(
        &self,
        out: &mut Vec<u8>,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
    ) -> Result<(), LogError> {
        let io = |op| LogError::io(&self.dir, op);
        let chunk = max_bytes.clamp(MIN_READ_CHUNK, MAX_READ_CHUNK);
        let interval = self.config.index_interval_bytes;
        for seg in self.segments_from(offset) {
            let start = if seg.base_offset() > offset {
                0
            } else {
                match seg.find_position(offset, interval).map_err(io("read segment"))? {
                    Some(pos) => pos,
                    None => continue,
                }
            };
            let mut full = false;
            let end = scan::scan(seg.file(), start, seg.size(), false, chunk, |_, view| {
                if view.base_offset() >= upper_bound
                    || (!out.is_empty() && out.len() + view.size() > max_bytes)
                {
                    full = true;
                    return ControlFlow::Break(());
                }
                out.extend_from_slice(view.as_bytes());
                ControlFlow::Continue(())
            })
            .map_err(io("read segment"))?;
            match end.error {
                Some(e) if out.is_empty() => return Err(LogError::CorruptBatch(e)),
                Some(e) => {
                    tracing::warn!(segment = %seg.log_path().display(), error = %e, "invalid batch in segment");
                    return Ok(());
                }
                None if full => return Ok(()),
                None => {}
            }
        }
        Ok(())
    }

    /// The segments that may hold `offset` or later offsets, in order.
    fn segments_from(&self, offset: i64) -> impl Iterator<Item = &Segment> {
        let first = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(&b, _)| b);
        self.segments.range(first..).map(|(_, s)| s)
    }

    /// ListOffsets by timestamp: the earliest offset whose record timestamp is >= `ts`, with
    /// that record's timestamp. The time index picks the segment and a start position; batch
    /// headers are scanned from there. Inside an uncompressed `CreateTime` batch the exact record
    /// is found by walking the records' timestamp deltas; a compressed batch is not
    /// decompressed, so its base offset (and max timestamp) answers if its max timestamp is at
    /// least `ts`, and a `LogAppendTime` batch answers with its base offset since all its
    /// records share the append time. `None` if no record qualifies.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<TimestampOffset>, LogError> {
        let candidates = self
            .segments
            .values()
            .filter(|s| s.next_offset() > self.log_start_offset)
            .filter(|s| s.max_timestamp().is_some_and(|(max, _)| max >= ts));
        for seg in candidates {
            let mut found = None;
            let start = seg.timestamp_scan_start(ts);
            scan::scan(
                seg.file(),
                start,
                seg.size(),
                false,
                scan::DEFAULT_CHUNK,
                |_, view| {
                    if view.max_timestamp() >= ts && view.last_offset() >= self.log_start_offset {
                        found = Some(records::first_record_at_or_after(&view, ts));
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                },
            )
            .map_err(LogError::io(&self.dir, "read segment"))?;
            if let Some((offset, timestamp)) = found {
                return Ok(Some(TimestampOffset {
                    timestamp,
                    offset: offset.max(self.log_start_offset),
                }));
            }
        }
        Ok(None)
    }

    /// ListOffsets `MAX_TIMESTAMP`: the record with the largest timestamp (the first one on
    /// ties); `None` on an empty log. Exact within uncompressed batches; otherwise the batch's
    /// base offset, as for [`Log::offset_for_timestamp`].
    pub fn max_timestamp(&self) -> Option<TimestampOffset> {
        if self.log_start_offset >= self.log_end_offset() {
            return None;
        }
        let mut best: Option<TimestampOffset> = None;
        for (timestamp, offset) in self.segments.values().filter_map(Segment::max_timestamp) {
            if best.is_none_or(|b| timestamp > b.timestamp) {
                best = Some(TimestampOffset {
                    timestamp,
                    offset: offset.max(self.log_start_offset),
                });
            }
        }
        best.map(|b| TimestampOffset {
            offset: self.exact_offset_of_max_timestamp(b.offset),
            ..b
        })
    }

    /// Within the batch starting at (or containing) `offset`, the first record carrying the
    /// batch's max timestamp; `offset` itself if the batch cannot be read.
    fn exact_offset_of_max_timestamp(&self, offset: i64) -> i64 {
        let Ok(read) = self.read(offset, 1, self.log_end_offset()) else {
            return offset;
        };
        match crate::batch::BatchView::parse(&read.bytes) {
            Ok(view) if view.base_offset() <= offset && offset <= view.last_offset() => {
                records::offset_of_max_timestamp(&view).max(offset)
            }
            _ => offset,
        }
    }
}
