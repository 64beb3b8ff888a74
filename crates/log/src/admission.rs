//! Admission of a produce request, before anything is written: validates each record batch
//! (CRC, header, record count) and checks idempotent producers' sequences and epochs against
//! the producer state, including several batches of one producer in the same request.
//! Nothing here touches the disk, so it is tested without one.

use crate::batch::{self, BatchError, BatchIter};
use crate::codec;
use crate::error::LogError;
use crate::log::AppendOptions;
use crate::producer_state::{BatchMeta, ProducerStateManager, SequenceCheck};
use crate::records;

/// One validated incoming batch, before offsets are assigned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Incoming {
    pub size: usize,
    pub offset_span: i64,
    pub records: i64,
    pub max_timestamp: i64,
    pub producer: Option<(i64, i16, i32, i32)>,
}

/// The verdict on a request's idempotent batches.
#[derive(Debug, Default)]
pub(crate) struct ProducerVerdict {
    /// The producer state after the request, when it had to be computed on a clone (more than
    /// one idempotent batch); otherwise the caller updates its state after the write.
    pub updated_state: Option<ProducerStateManager>,
    /// `(first_offset, last_offset)` when the whole request is a retry already in the log.
    pub duplicate: Option<(i64, i64)>,
}

/// Checks every idempotent batch against the producer state as updated by the batches
/// before it in the same request (offsets are assigned from `base_offset`). A request mixing
/// retried and new batches is rejected: answering "duplicate" would drop the new ones
/// silently, and Kafka itself accepts one batch per partition.
pub(crate) fn check_producers(
    producer_state: &ProducerStateManager,
    incoming: &[Incoming],
    base_offset: i64,
    opts: &AppendOptions,
) -> Result<ProducerVerdict, LogError> {
    let idempotent = incoming.iter().filter(|b| b.producer.is_some()).count();
    if idempotent == 0 {
        return Ok(ProducerVerdict::default());
    }
    let mut scratch = (idempotent > 1).then(|| producer_state.clone());
    let mut duplicates: Vec<(i64, i64)> = Vec::new();
    let mut offset = base_offset;
    for b in incoming {
        if let Some((pid, epoch, first_seq, last_seq)) = b.producer {
            let state = scratch.as_ref().unwrap_or(producer_state);
            match state.check(pid, epoch, first_seq, last_seq)? {
                SequenceCheck::Accept => {
                    if let (Some(s), Some(meta)) = (scratch.as_mut(), producer_meta(b, offset, opts)) {
                        s.update(meta);
                    }
                }
                SequenceCheck::Duplicate {
                    first_offset,
                    last_offset,
                } => {
                    duplicates.push((first_offset, last_offset));
                }
            }
        }
        offset += b.offset_span;
    }
    match (duplicates.first(), duplicates.last()) {
        (Some(first), Some(last)) if duplicates.len() == incoming.len() => Ok(ProducerVerdict {
            updated_state: None,
            duplicate: Some((first.0, last.1)),
        }),
        (Some(_), _) => Err(LogError::CorruptBatch(BatchError::Inconsistent(
            "request mixes retried and new batches of an idempotent producer",
        ))),
        _ => Ok(ProducerVerdict {
            updated_state: scratch,
            duplicate: None,
        }),
    }
}

/// Validates each batch of a produce request (CRC, header, and that the record count agrees
/// with `lastOffsetDelta`, as it must for a batch fresh from a producer). With `require_keys`
/// (a compacted topic) every record must have a key, which means walking the records and
/// decompressing compressed batches: acceptable for compacted topics only, which are
/// low-volume, and what Kafka does too.
pub(crate) fn validate(batches: &[u8], require_keys: bool) -> Result<Vec<Incoming>, LogError> {
    let mut incoming = Vec::new();
    for view in BatchIter::validated(batches) {
        let view = view?;
        let records = view.records_count();
        if records == 0 || i64::from(records) != i64::from(view.last_offset_delta()) + 1 {
            return Err(BatchError::Inconsistent("record count does not match lastOffsetDelta").into());
        }
        if require_keys && !view.is_control() {
            check_keys(&view)?;
        }
        incoming.push(Incoming {
            size: view.size(),
            offset_span: i64::from(view.last_offset_delta()) + 1,
            records: i64::from(records),
            max_timestamp: view.max_timestamp(),
            producer: view.has_producer_id().then(|| {
                (
                    view.producer_id(),
                    view.producer_epoch(),
                    view.base_sequence(),
                    view.last_sequence(),
                )
            }),
        });
    }
    if incoming.is_empty() {
        return Err(BatchError::Truncated {
            needed: batch::HEADER_SIZE,
            available: 0,
        }
        .into());
    }
    Ok(incoming)
}

/// Fails with [`BatchError::MissingKey`] if a record of `view` has no key.
fn check_keys(view: &crate::batch::BatchView<'_>) -> Result<(), BatchError> {
    let body = codec::records_of(view)?;
    for record in records::raw_records(&body, view.records_count()) {
        let record = record.map_err(BatchError::MalformedRecords)?;
        if record.key.is_none() {
            return Err(BatchError::MissingKey);
        }
    }
    Ok(())
}

/// The producer-state record of an accepted batch written at `first_offset`.
pub(crate) fn producer_meta(b: &Incoming, first_offset: i64, opts: &AppendOptions) -> Option<BatchMeta> {
    let (producer_id, producer_epoch, first_seq, last_seq) = b.producer?;
    Some(BatchMeta {
        producer_id,
        producer_epoch,
        first_seq,
        last_seq,
        first_offset,
        last_offset: first_offset + b.offset_span - 1,
        max_timestamp: if opts.log_append_time {
            opts.now_ms
        } else {
            b.max_timestamp
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::testing::{batch_with_producer, simple_batch};
    use crate::batch::Compression;

    const OPTS: AppendOptions = AppendOptions {
        leader_epoch: 0,
        now_ms: 50,
        log_append_time: true,
    };

    #[test]
    fn validate_reads_every_batch_and_rejects_bad_ones() {
        let mut request = simple_batch(3, 1, b"a");
        request.extend(batch_with_producer(2, 9, b"b", 4, 1, 10));
        let incoming = validate(&request, false).unwrap();
        assert_eq!(incoming.len(), 2);
        assert_eq!((incoming[0].offset_span, incoming[0].producer), (3, None));
        assert_eq!(incoming[1].producer, Some((4, 1, 10, 11)));
        request.push(0);
        assert!(matches!(
            validate(&request, false),
            Err(LogError::CorruptBatch(_))
        ));
        assert!(matches!(validate(&[], false), Err(LogError::CorruptBatch(_))));
    }

    #[test]
    fn compacted_topics_require_a_key_on_every_record() {
        let keyless = simple_batch(2, 1, b"a");
        assert!(validate(&keyless, false).is_ok());
        assert!(matches!(
            validate(&keyless, true),
            Err(LogError::CorruptBatch(BatchError::MissingKey))
        ));
        for codec in [Compression::None, Compression::Lz4] {
            let keyed = crate::cleaner::testing::keyed_batch(&[(b"k", Some(b"v")), (b"j", None)], 5, codec);
            assert!(validate(&keyed, true).is_ok(), "{codec:?}");
        }
    }

    #[test]
    fn later_batches_are_checked_against_earlier_ones() {
        let mut request = batch_with_producer(2, 0, b"x", 4, 0, 0);
        request.extend(batch_with_producer(1, 0, b"x", 4, 0, 2));
        let incoming = validate(&request, false).unwrap();
        let state = ProducerStateManager::new();
        let verdict = check_producers(&state, &incoming, 10, &OPTS).unwrap();
        let updated = verdict.updated_state.unwrap();
        assert_eq!(verdict.duplicate, None);
        // Retrying the whole request against the updated state is a duplicate of both.
        let again = check_producers(&updated, &incoming, 13, &OPTS).unwrap();
        assert_eq!(again.duplicate, Some((10, 12)));
        assert_eq!(producer_meta(&incoming[1], 12, &OPTS).unwrap().max_timestamp, 50);
    }
}
