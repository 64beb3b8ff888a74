//! Builds one record batch (magic 2) from keyed records, for the writers that are not a
//! producer: the group coordinator's `__consumer_offsets` and offset history, and the tests of
//! compaction. Kafka clients' encoders (kafka-protocol's among them) split a batch whenever
//! `offset - sequence` changes, which without an idempotent producer means one batch per
//! record; a group's commit must instead be one batch, so that it is appended (and later
//! replicated) whole or not at all.
//!
//! The batch is what a non-idempotent, non-transactional producer would send: base offset 0
//! and partition leader epoch -1 (the log assigns both on append), producer id, epoch and base
//! sequence -1, `CreateTime`, no record headers. Record `i` has offset delta `i`; the base
//! timestamp is the first record's (Kafka's rule), so deltas may be negative; `maxTimestamp` is
//! the largest. The records are compressed with the requested codec as a whole, as Kafka does.

use crate::batch::{self, BatchError, Compression, NewBatch, NO_PRODUCER_ID, NO_SEQUENCE};
use crate::codec;

/// One record to write: its key, its value (`None` is a tombstone: a null value, which
/// compaction reads as a delete) and its `CreateTime` timestamp in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedRecord<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
    pub timestamp: i64,
}

/// Encodes `records`, in order, as one batch compressed with `compression`.
///
/// Errors: no records (a batch holds at least one), a batch too large for its `i32` length,
/// or a codec failure.
pub fn encode(records: &[KeyedRecord<'_>], compression: Compression) -> Result<Vec<u8>, BatchError> {
    let (Some(first), Some(max_timestamp)) = (records.first(), records.iter().map(|r| r.timestamp).max())
    else {
        return Err(BatchError::Inconsistent("a batch needs at least one record"));
    };
    let too_many = BatchError::Inconsistent("too many records for one batch");
    let records_count = i32::try_from(records.len()).map_err(|_| too_many)?;
    let base_timestamp = first.timestamp;
    let mut raw = Vec::new();
    let mut body = Vec::new();
    for (delta, record) in (0i64..).zip(records) {
        body.clear();
        body.push(0u8); // record attributes: unused in magic 2
        put_varlong(&mut body, record.timestamp.wrapping_sub(base_timestamp));
        put_varlong(&mut body, delta);
        put_bytes(&mut body, Some(record.key));
        put_bytes(&mut body, record.value);
        put_varlong(&mut body, 0); // no headers
        put_varlong(&mut raw, body.len() as i64);
        raw.extend_from_slice(&body);
    }
    let packed = codec::compress(compression, &raw)?;
    let header = NewBatch {
        attributes: compression.attribute_code(),
        last_offset_delta: records_count - 1,
        base_timestamp,
        max_timestamp,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: -1,
        base_sequence: NO_SEQUENCE,
        records_count,
    };
    batch::assemble(&header, &packed).ok_or(BatchError::Inconsistent("batch too large"))
}

/// A varint-length-prefixed byte string; `None` is written as length -1 (null).
fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => put_varlong(out, -1),
    }
}

/// Kafka's zigzag varint (the record format's `varint` and `varlong` alike).
fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::records::RecordBatchDecoder;

    use super::*;
    use crate::batch::{BatchIter, BatchView};
    use crate::records::raw_records;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn rec<'a>(key: &'a str, value: Option<&'a str>, timestamp: i64) -> KeyedRecord<'a> {
        KeyedRecord {
            key: key.as_bytes(),
            value: value.map(str::as_bytes),
            timestamp,
        }
    }

    #[test]
    fn many_records_make_one_valid_batch_with_every_codec() {
        let records = [
            rec("a", Some("1"), 1_000),
            rec("b", None, 990),
            rec("c", Some(""), 1_007),
            rec("a", Some("2"), 1_003),
        ];
        for codec in CODECS {
            let bytes = encode(&records, codec).unwrap();
            let batches: Vec<BatchView<'_>> = BatchIter::validated(&bytes).map(Result::unwrap).collect();
            assert_eq!(batches.len(), 1, "{codec:?}: one batch, CRC valid");
            let view = batches[0];
            assert_eq!(view.size(), bytes.len());
            assert_eq!(view.compression(), Some(codec));
            assert_eq!((view.base_offset(), view.last_offset_delta()), (0, 3));
            assert_eq!(view.records_count(), 4);
            assert_eq!((view.base_timestamp(), view.max_timestamp()), (1_000, 1_007));
            assert_eq!(
                (view.producer_id(), view.producer_epoch(), view.base_sequence()),
                (-1, -1, -1)
            );
            assert!(!view.is_log_append_time() && !view.is_transactional() && !view.is_control());

            let body = codec::records_of(&view).unwrap();
            let read: Vec<_> = raw_records(&body, view.records_count())
                .map(Result::unwrap)
                .map(|r| (r.offset_delta, r.timestamp_delta, r.key, r.has_value))
                .collect();
            assert_eq!(
                read,
                vec![
                    (0, 0, Some(&b"a"[..]), true),
                    (1, -10, Some(&b"b"[..]), false),
                    (2, 7, Some(&b"c"[..]), true),
                    (3, 3, Some(&b"a"[..]), true),
                ],
                "{codec:?}"
            );
        }
    }

    #[test]
    fn a_client_decoder_reads_the_same_records() {
        let records = [rec("k1", Some("v1"), 5), rec("k2", None, 6)];
        for codec in CODECS {
            let mut bytes = Bytes::from(encode(&records, codec).unwrap());
            let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
            assert!(bytes.is_empty(), "{codec:?}: one batch");
            let got: Vec<_> = set
                .records
                .iter()
                .map(|r| (r.offset, r.timestamp, r.key.clone(), r.value.clone()))
                .collect();
            assert_eq!(
                got,
                vec![
                    (0, 5, Some(Bytes::from("k1")), Some(Bytes::from("v1"))),
                    (1, 6, Some(Bytes::from("k2")), None),
                ],
                "{codec:?}"
            );
        }
    }

    #[test]
    fn large_deltas_and_keys_round_trip() {
        let key = vec![7u8; 300];
        let records = [
            KeyedRecord {
                key: &key,
                value: Some(&key),
                timestamp: 0,
            },
            KeyedRecord {
                key: b"k",
                value: None,
                timestamp: i64::from(i32::MAX) * 4,
            },
        ];
        let bytes = encode(&records, Compression::None).unwrap();
        let view = BatchView::parse_validated(&bytes).unwrap();
        assert_eq!(view.max_timestamp(), i64::from(i32::MAX) * 4);
        let body = codec::records_of(&view).unwrap();
        let read: Vec<_> = raw_records(&body, 2).map(Result::unwrap).collect();
        assert_eq!(read[0].key, Some(&key[..]));
        assert_eq!(read[1].timestamp_delta, i64::from(i32::MAX) * 4);
        assert!(!read[1].has_value);
    }

    #[test]
    fn an_empty_batch_is_refused() {
        assert!(encode(&[], Compression::None).is_err());
    }
}
