//! Walks the records inside an uncompressed batch just far enough to read each record's
//! timestamp and offset (attributes, timestampDelta, offsetDelta lead each record body), with
//! no allocation. Used for the exact answer of a timestamp lookup and for which offset holds a
//! segment's largest timestamp. Compressed batches are opaque here: callers fall back to the
//! batch's base offset.

use crate::batch::{BatchView, Compression, HEADER_SIZE};

/// `(offset, timestamp)` of each record of an uncompressed `CreateTime` batch, in order.
/// Yields nothing for compressed batches and stops at the first malformed record.
pub(crate) fn record_timestamps<'a>(view: &BatchView<'a>) -> impl Iterator<Item = (i64, i64)> + 'a {
    let plain = view.compression() == Some(Compression::None);
    let body = if plain {
        view.as_bytes().get(HEADER_SIZE..).unwrap_or_default()
    } else {
        &[]
    };
    RecordTimestamps {
        rest: body,
        left: if plain { view.records_count().max(0) } else { 0 },
        base_offset: view.base_offset(),
        base_timestamp: view.base_timestamp(),
    }
}

/// `(offset, timestamp)` of the first record whose timestamp is >= `target`, for a batch whose
/// `maxTimestamp` is >= `target`. `LogAppendTime` batches give every record the batch
/// timestamp, and compressed batches are not opened, so both answer with the base offset and
/// the batch's `maxTimestamp`, as does a batch whose records contradict its header.
pub(crate) fn first_record_at_or_after(view: &BatchView<'_>, target: i64) -> (i64, i64) {
    let whole_batch = (view.base_offset(), view.max_timestamp());
    if view.is_log_append_time() {
        return whole_batch;
    }
    record_timestamps(view)
        .find(|&(_, ts)| ts >= target)
        .unwrap_or(whole_batch)
}

/// The offset of the first record holding the batch's `maxTimestamp` (see
/// [`first_record_at_or_after`] for the fallbacks).
pub(crate) fn offset_of_max_timestamp(view: &BatchView<'_>) -> i64 {
    first_record_at_or_after(view, view.max_timestamp()).0
}

/// One record as stored inside a batch's (decompressed) records, with the fields compaction
/// looks at. `bytes` is the whole record, length prefix included, so it can be copied as is
/// into a batch with the same base offset and base timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawRecord<'a> {
    pub bytes: &'a [u8],
    pub timestamp_delta: i64,
    pub offset_delta: i64,
    pub key: Option<&'a [u8]>,
    pub has_value: bool,
}

/// The `count` records in `body` (a batch's records, decompressed). Yields an error, once, for
/// a malformed record and then stops; fewer records than `count` is an error too.
pub(crate) fn raw_records(
    body: &[u8],
    count: i32,
) -> impl Iterator<Item = Result<RawRecord<'_>, &'static str>> {
    let mut rest = body;
    let mut left = count.max(0);
    std::iter::from_fn(move || {
        if left <= 0 {
            return None;
        }
        left -= 1;
        let parsed = parse_raw(rest);
        match parsed {
            Some((record, after)) => {
                rest = after;
                Some(Ok(record))
            }
            None => {
                left = 0;
                Some(Err("malformed record"))
            }
        }
    })
}

/// Parses the record at the front of `bytes`; returns it and the bytes after it.
fn parse_raw(bytes: &[u8]) -> Option<(RawRecord<'_>, &[u8])> {
    let (len, rest) = read_varlong(bytes)?;
    let len = usize::try_from(len).ok()?;
    let prefix = bytes.len() - rest.len();
    let whole = bytes.get(..prefix + len)?;
    let after = bytes.get(prefix + len..)?;
    let body = rest.get(..len)?;
    let (_attributes, body) = body.split_first()?;
    let (timestamp_delta, body) = read_varlong(body)?;
    let (offset_delta, body) = read_varlong(body)?;
    let (key, body) = read_nullable(body)?;
    let (value, _headers) = read_nullable(body)?;
    Some((
        RawRecord {
            bytes: whole,
            timestamp_delta,
            offset_delta,
            key,
            has_value: value.is_some(),
        },
        after,
    ))
}

/// A varint-length-prefixed byte string; length -1 is null.
fn read_nullable(bytes: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    let (len, rest) = read_varlong(bytes)?;
    if len < 0 {
        return Some((None, rest));
    }
    let len = usize::try_from(len).ok()?;
    Some((Some(rest.get(..len)?), rest.get(len..)?))
}

struct RecordTimestamps<'a> {
    rest: &'a [u8],
    left: i32,
    base_offset: i64,
    base_timestamp: i64,
}

impl Iterator for RecordTimestamps<'_> {
    type Item = (i64, i64);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left <= 0 {
            return None;
        }
        self.left -= 1;
        let parsed = self.parse_one();
        if parsed.is_none() {
            self.left = 0;
        }
        parsed
    }
}

impl RecordTimestamps<'_> {
    fn parse_one(&mut self) -> Option<(i64, i64)> {
        let (len, rest) = read_varlong(self.rest)?;
        let len = usize::try_from(len).ok()?;
        let body = rest.get(..len)?;
        self.rest = rest.get(len..)?;
        let (_attributes, body) = body.split_first()?;
        let (ts_delta, body) = read_varlong(body)?;
        let (offset_delta, _) = read_varlong(body)?;
        Some((
            self.base_offset.checked_add(offset_delta)?,
            self.base_timestamp.checked_add(ts_delta)?,
        ))
    }
}

/// Decodes a zigzag varint (Kafka's varlong) from the front of `bytes`.
fn read_varlong(bytes: &[u8]) -> Option<(i64, &[u8])> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let decoded = ((value >> 1) as i64) ^ -((value & 1) as i64);
            return Some((decoded, bytes.get(i + 1..)?));
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod testing {
    //! A batch builder with a timestamp per record, which `batch::testing` does not offer.
    use crate::batch::{testing::simple_batch, BatchView};

    /// An uncompressed batch whose record `i` has timestamp `timestamps[i]`.
    pub fn batch_with_timestamps(timestamps: &[i64]) -> Vec<u8> {
        let base = timestamps.iter().copied().min().unwrap_or(0);
        let max = timestamps.iter().copied().max().unwrap_or(0);
        // Start from a valid batch and rewrite the record bodies: simplest without a codec.
        let template = simple_batch(timestamps.len() as i32, base, b"v");
        let mut out = template[..crate::batch::HEADER_SIZE].to_vec();
        for (i, ts) in timestamps.iter().enumerate() {
            let mut body = vec![0u8];
            put_varlong(&mut body, ts - base);
            put_varlong(&mut body, i as i64);
            put_varlong(&mut body, -1);
            put_varlong(&mut body, 1);
            body.push(b'v');
            put_varlong(&mut body, 0);
            put_varlong(&mut out, body.len() as i64);
            out.extend_from_slice(&body);
        }
        let length = (out.len() - 12) as i32;
        out[8..12].copy_from_slice(&length.to_be_bytes());
        out[35..43].copy_from_slice(&max.to_be_bytes());
        let crc = crc32c::crc32c(&out[21..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(BatchView::parse_validated(&out).is_ok());
        out
    }

    fn put_varlong(out: &mut Vec<u8>, value: i64) {
        let mut v = ((value << 1) ^ (value >> 63)) as u64;
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::testing::batch_with_timestamps;
    use super::*;
    use crate::batch::{set_base_offset, set_log_append_time};

    #[test]
    fn finds_exact_record_by_timestamp() {
        let mut bytes = batch_with_timestamps(&[100, 300, 200, 300, 500]);
        set_base_offset(&mut bytes, 10);
        let view = BatchView::parse_validated(&bytes).unwrap();
        let all: Vec<_> = record_timestamps(&view).collect();
        assert_eq!(all, vec![(10, 100), (11, 300), (12, 200), (13, 300), (14, 500)]);
        assert_eq!(first_record_at_or_after(&view, 150), (11, 300));
        assert_eq!(first_record_at_or_after(&view, 400), (14, 500));
        assert_eq!(offset_of_max_timestamp(&view), 14);
    }

    #[test]
    fn log_append_time_batches_answer_with_base_offset() {
        let mut bytes = batch_with_timestamps(&[100, 300]);
        set_base_offset(&mut bytes, 4);
        set_log_append_time(&mut bytes, 1_000);
        let view = BatchView::parse_validated(&bytes).unwrap();
        assert_eq!(first_record_at_or_after(&view, 900), (4, 1_000));
        assert_eq!(offset_of_max_timestamp(&view), 4);
    }

    #[test]
    fn raw_records_expose_keys_values_and_exact_bytes() {
        let bytes = crate::batch::testing::simple_batch(2, 7, b"val");
        let body = &bytes[HEADER_SIZE..];
        let records: Vec<_> = raw_records(body, 2).map(Result::unwrap).collect();
        assert_eq!(records.len(), 2);
        assert_eq!(
            (records[1].offset_delta, records[1].key, records[1].has_value),
            (1, None, true)
        );
        let joined: Vec<u8> = records.iter().flat_map(|r| r.bytes.iter().copied()).collect();
        assert_eq!(joined, body);
        assert!(
            raw_records(body, 3).any(|r| r.is_err()),
            "count beyond the records"
        );
        assert!(raw_records(&body[..body.len() - 1], 2).any(|r| r.is_err()));
    }

    #[test]
    fn varlong_decodes_negative_and_rejects_truncation() {
        assert_eq!(read_varlong(&[0x01]), Some((-1, &[][..])));
        assert_eq!(read_varlong(&[0xac, 0x02, 9]), Some((150, &[9u8][..])));
        assert_eq!(read_varlong(&[0x80]), None);
    }
}
