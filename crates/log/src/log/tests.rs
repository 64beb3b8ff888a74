//! Behaviour of [`Log`] through its public API, on real files in a temporary directory.

use std::fs;

use crate::batch::testing::{batch_with_producer, simple_batch};
use crate::batch::{BatchIter, BatchView};
use crate::producer_state::SequenceError;
use crate::records::testing::batch_with_timestamps;
use crate::segment::{file_name, INDEX_SUFFIX, TIME_INDEX_SUFFIX};
use crate::*;

fn config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn opts(now_ms: i64) -> AppendOptions {
    AppendOptions {
        leader_epoch: 3,
        now_ms,
        log_append_time: false,
    }
}

fn appended(outcome: Result<AppendOutcome, LogError>) -> AppendInfo {
    match outcome {
        Ok(AppendOutcome::Appended(info)) => info,
        other => panic!("expected an append, got {other:?}"),
    }
}

fn append(log: &mut Log, count: i32, ts: i64) -> AppendInfo {
    appended(log.append(&mut simple_batch(count, ts, &[b'v'; 100]), &opts(ts)))
}

/// `(base_offset, last_offset)` of every batch a read from `offset` returns.
fn batches(bytes: &[u8]) -> Vec<(i64, i64)> {
    BatchIter::validated(bytes)
        .map(|b| b.unwrap())
        .map(|b| (b.base_offset(), b.last_offset()))
        .collect()
}

fn read_all(log: &Log) -> Vec<(i64, i64)> {
    batches(
        &log.read(log.log_start_offset(), usize::MAX, i64::MAX)
            .unwrap()
            .bytes,
    )
}

#[test]
fn log_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Log>();
}

#[test]
fn append_assigns_consecutive_offsets_and_stamps_the_leader_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let first = append(&mut log, 3, 10);
    assert_eq!(
        (first.base_offset, first.last_offset, first.record_count),
        (0, 2, 3)
    );
    assert_eq!(first.log_append_time, -1);
    let mut two = simple_batch(2, 20, b"a");
    two.extend(simple_batch(1, 21, b"b"));
    let second = appended(log.append(&mut two, &opts(20)));
    assert_eq!(
        (second.base_offset, second.last_offset, second.record_count),
        (3, 5, 3)
    );
    assert_eq!(log.log_end_offset(), 6);
    let read = log.read(0, usize::MAX, i64::MAX).unwrap();
    assert_eq!(batches(&read.bytes), vec![(0, 2), (3, 4), (5, 5)]);
    assert!(BatchIter::new(&read.bytes).all(|b| b.unwrap().partition_leader_epoch() == 3));
    assert_eq!((read.log_start_offset, read.log_end_offset), (0, 6));
    assert_eq!(log.size_bytes(), read.bytes.len() as u64);
}

#[test]
fn invalid_batches_are_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    let mut bad = simple_batch(2, 0, b"x");
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let mut request = simple_batch(1, 0, b"ok");
    request.extend(&bad);
    assert!(matches!(
        log.append(&mut request, &opts(0)),
        Err(LogError::CorruptBatch(_))
    ));
    assert!(matches!(
        log.append(&mut [], &opts(0)),
        Err(LogError::CorruptBatch(_))
    ));
    assert!(matches!(
        log.append(&mut [0u8; 30], &opts(0)),
        Err(LogError::CorruptBatch(_))
    ));
    assert_eq!((log.log_end_offset(), log.size_bytes()), (0, 0));
}

#[test]
fn read_honours_max_bytes_with_at_least_one_batch_and_the_upper_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    for i in 0..10 {
        append(&mut log, 2, i);
    }
    let one = simple_batch(2, 0, &[b'v'; 100]).len();
    // Starts with the batch holding offset 5 (base 4), whole batches only.
    assert_eq!(
        batches(&log.read(5, 3 * one, i64::MAX).unwrap().bytes),
        vec![(4, 5), (6, 7), (8, 9)]
    );
    assert_eq!(
        batches(&log.read(5, 3 * one - 1, i64::MAX).unwrap().bytes),
        vec![(4, 5), (6, 7)]
    );
    assert_eq!(
        batches(&log.read(5, 1, i64::MAX).unwrap().bytes),
        vec![(4, 5)],
        "minOneMessage"
    );
    assert_eq!(
        batches(&log.read(0, usize::MAX, 6).unwrap().bytes),
        vec![(0, 1), (2, 3), (4, 5)]
    );
    assert!(log.read(6, usize::MAX, 6).unwrap().bytes.is_empty());
    assert!(
        log.read(20, usize::MAX, i64::MAX).unwrap().bytes.is_empty(),
        "log end offset"
    );
    assert!(matches!(
        log.read(21, 100, i64::MAX),
        Err(LogError::OffsetOutOfRange {
            requested: 21,
            log_start_offset: 0,
            log_end_offset: 20
        })
    ));
    assert!(matches!(
        log.read(-1, 100, i64::MAX),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn rolls_by_size_and_reads_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let one = simple_batch(1, 0, &[b'v'; 100]).len() as u64;
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            segment_bytes: 3 * one,
            ..config()
        },
        0,
    )
    .unwrap();
    for i in 0..10 {
        append(&mut log, 1, i);
    }
    assert_eq!(log.segments.keys().copied().collect::<Vec<_>>(), vec![0, 3, 6, 9]);
    assert_eq!(read_all(&log).len(), 10);
    assert_eq!(
        batches(&log.read(4, 2 * one as usize, i64::MAX).unwrap().bytes),
        vec![(4, 4), (5, 5)]
    );
    assert_eq!(
        batches(&log.read(5, 2 * one as usize, i64::MAX).unwrap().bytes),
        vec![(5, 5), (6, 6)]
    );
    // Snapshots are written at each roll and only the newest few kept.
    let snapshots = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".snapshot")
        })
        .count();
    assert!((1..=3).contains(&snapshots), "{snapshots} snapshots");
    log.close().unwrap();
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(read_all(&log).len(), 10);
}

#[test]
fn rolls_by_age_of_the_first_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            segment_ms: 1_000,
            ..config()
        },
        0,
    )
    .unwrap();
    appended(log.append(&mut simple_batch(1, 0, b"a"), &opts(5_000)));
    appended(log.append(&mut simple_batch(1, 0, b"a"), &opts(6_000)));
    assert_eq!(log.segments.len(), 1, "exactly segment.ms old: not yet");
    appended(log.append(&mut simple_batch(1, 0, b"a"), &opts(6_001)));
    assert_eq!(log.segments.keys().copied().collect::<Vec<_>>(), vec![0, 2]);
    // The age survives a clean restart through the checkpoint.
    log.close().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            segment_ms: 1_000,
            ..config()
        },
        99_999,
    )
    .unwrap();
    appended(log.append(&mut simple_batch(1, 0, b"a"), &opts(7_002)));
    assert_eq!(log.segments.keys().copied().collect::<Vec<_>>(), vec![0, 2, 3]);
    // enforce_retention rolls an expired non-empty active segment too.
    assert_eq!(log.enforce_retention(8_003).unwrap(), 0);
    assert_eq!(log.segments.keys().copied().collect::<Vec<_>>(), vec![0, 2, 3, 4]);
    assert_eq!(
        log.enforce_retention(20_000).unwrap(),
        0,
        "empty active segment is not rolled"
    );
    assert_eq!(log.segments.len(), 4);
}

#[test]
fn offset_for_timestamp_finds_the_exact_record_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            segment_bytes: 150,
            index_interval_bytes: 1,
            ..config()
        },
        0,
    )
    .unwrap();
    // Offsets 0..=4 with timestamps 100, 300, 200, 300, 500; then batches at 600 and 550.
    appended(log.append(&mut batch_with_timestamps(&[100, 300, 200, 300, 500]), &opts(0)));
    appended(log.append(&mut batch_with_timestamps(&[600, 610]), &opts(0)));
    appended(log.append(&mut batch_with_timestamps(&[550]), &opts(0)));
    assert!(log.segments.len() >= 2, "spans segments");
    let at = |log: &Log, ts| {
        log.offset_for_timestamp(ts)
            .unwrap()
            .map(|t| (t.offset, t.timestamp))
    };
    assert_eq!(at(&log, 0), Some((0, 100)));
    assert_eq!(at(&log, 100), Some((0, 100)));
    assert_eq!(at(&log, 101), Some((1, 300)));
    assert_eq!(at(&log, 250), Some((1, 300)));
    assert_eq!(at(&log, 301), Some((4, 500)));
    assert_eq!(at(&log, 501), Some((5, 600)));
    assert_eq!(at(&log, 551), Some((5, 600)));
    assert_eq!(at(&log, 605), Some((6, 610)));
    assert_eq!(at(&log, 611), None);
    assert_eq!(
        log.max_timestamp(),
        Some(TimestampOffset {
            timestamp: 610,
            offset: 6
        })
    );
    log.close().unwrap();
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(at(&log, 250), Some((1, 300)));
    assert_eq!(at(&log, 551), Some((5, 600)));
    assert_eq!(
        log.max_timestamp(),
        Some(TimestampOffset {
            timestamp: 610,
            offset: 6
        })
    );
}

#[test]
fn max_timestamp_prefers_the_first_record_on_ties() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(log.max_timestamp(), None);
    appended(log.append(&mut batch_with_timestamps(&[5, 9, 9]), &opts(0)));
    appended(log.append(&mut batch_with_timestamps(&[9, 1]), &opts(0)));
    assert_eq!(
        log.max_timestamp(),
        Some(TimestampOffset {
            timestamp: 9,
            offset: 1
        })
    );
}

#[test]
fn log_append_time_stamps_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    let lat = AppendOptions {
        log_append_time: true,
        ..opts(7_777)
    };
    let info = appended(log.append(&mut batch_with_timestamps(&[1, 2, 3]), &lat));
    assert_eq!(info.log_append_time, 7_777);
    let read = log.read(0, usize::MAX, i64::MAX).unwrap();
    let view = BatchView::parse_validated(&read.bytes).unwrap();
    assert!(view.is_log_append_time());
    assert_eq!(view.max_timestamp(), 7_777);
    assert_eq!(
        log.offset_for_timestamp(2).unwrap(),
        Some(TimestampOffset {
            timestamp: 7_777,
            offset: 0
        })
    );
    assert_eq!(
        log.max_timestamp(),
        Some(TimestampOffset {
            timestamp: 7_777,
            offset: 0
        })
    );
}

#[test]
fn retention_by_time_deletes_old_segments_but_never_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let one = simple_batch(1, 0, &[b'v'; 100]).len() as u64;
    let cfg = LogConfig {
        segment_bytes: 2 * one,
        retention_ms: 1_000,
        ..config()
    };
    let mut log = Log::open(dir.path(), cfg, 0).unwrap();
    for ts in [100, 200, 300, 400, 500, 5_000] {
        append(&mut log, 1, ts);
    }
    assert_eq!(log.segments.keys().copied().collect::<Vec<_>>(), vec![0, 2, 4]);
    assert_eq!(
        log.enforce_retention(1_250).unwrap(),
        1,
        "segment 0 (max ts 200) expired"
    );
    assert_eq!(log.log_start_offset(), 2);
    assert!(matches!(
        log.read(1, 100, i64::MAX),
        Err(LogError::OffsetOutOfRange {
            log_start_offset: 2,
            ..
        })
    ));
    assert_eq!(read_all(&log)[0], (2, 2));
    assert_eq!(
        log.enforce_retention(1_000_000).unwrap(),
        1,
        "active segment stays"
    );
    assert_eq!(log.segments.keys().copied().collect::<Vec<_>>(), vec![4]);
    assert_eq!(log.log_start_offset(), 4);
    assert!(!dir.path().join(file_name(0, ".log")).exists());
    log.close().unwrap();
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (4, 6));
}

#[test]
fn retention_by_size_keeps_at_least_retention_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let one = simple_batch(1, 0, &[b'v'; 100]).len() as u64;
    let cfg = LogConfig {
        segment_bytes: 2 * one,
        retention_bytes: (3 * one) as i64,
        retention_ms: -1,
        ..config()
    };
    let mut log = Log::open(dir.path(), cfg, 0).unwrap();
    for ts in 0..7 {
        append(&mut log, 1, ts);
    }
    assert_eq!(log.size_bytes(), 7 * one);
    assert_eq!(log.enforce_retention(0).unwrap(), 2);
    assert_eq!(log.log_start_offset(), 4);
    assert_eq!(log.size_bytes(), 3 * one);
    assert_eq!(log.enforce_retention(0).unwrap(), 0);
}

#[test]
fn advancing_log_start_offset_deletes_segments_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let one = simple_batch(1, 0, &[b'v'; 100]).len() as u64;
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            segment_bytes: 2 * one,
            ..config()
        },
        0,
    )
    .unwrap();
    for ts in 0..5 {
        append(&mut log, 1, ts);
    }
    log.advance_log_start_offset(3).unwrap();
    assert_eq!(log.log_start_offset(), 3);
    assert_eq!(log.segments.keys().copied().collect::<Vec<_>>(), vec![2, 4]);
    assert!(matches!(
        log.read(2, 100, i64::MAX),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        batches(&log.read(3, usize::MAX, i64::MAX).unwrap().bytes),
        vec![(3, 3), (4, 4)]
    );
    assert!(matches!(
        log.advance_log_start_offset(6),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    log.advance_log_start_offset(1).unwrap();
    assert_eq!(log.log_start_offset(), 3, "never moves back");
    drop(log);
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(log.log_start_offset(), 3, "kept by the checkpoint");
}

#[test]
fn truncate_to_removes_the_tail_and_appending_continues() {
    let dir = tempfile::tempdir().unwrap();
    let one = simple_batch(2, 0, &[b'v'; 100]).len() as u64;
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            segment_bytes: 2 * one,
            ..config()
        },
        0,
    )
    .unwrap();
    for ts in 0..5 {
        append(&mut log, 2, ts);
    }
    assert_eq!(log.log_end_offset(), 10);
    assert!(matches!(
        log.truncate_to(5),
        Err(ReplicaError::NotBatchBoundary {
            offset: 5,
            batch_base_offset: 4,
            batch_last_offset: 5
        })
    ));
    assert_eq!(log.log_end_offset(), 10, "a refused truncation changes nothing");
    log.truncate_to(4).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(read_all(&log), vec![(0, 1), (2, 3)]);
    assert_eq!(append(&mut log, 1, 9).base_offset, 4);
    log.truncate_to(0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert_eq!(append(&mut log, 1, 9).base_offset, 0);
    drop(log);
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(read_all(&log), vec![(0, 0)]);
}

#[test]
fn truncate_to_rebuilds_producer_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    appended(log.append(&mut batch_with_producer(2, 0, b"x", 7, 0, 0), &opts(0)));
    appended(log.append(&mut batch_with_producer(2, 0, b"x", 7, 0, 2), &opts(0)));
    log.truncate_to(2).unwrap();
    // Sequence 2..3 is gone, so it is the next expected one again, not a duplicate.
    let info = appended(log.append(&mut batch_with_producer(2, 0, b"x", 7, 0, 2), &opts(0)));
    assert_eq!(info.base_offset, 2);
}

#[test]
fn idempotent_duplicates_and_gaps_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch_with_producer(1, 0, b"x", 7, 0, 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: 2 * one,
        ..config()
    };
    let mut log = Log::open(dir.path(), cfg.clone(), 0).unwrap();
    for seq in 0..5 {
        appended(log.append(&mut batch_with_producer(1, 0, b"x", 7, 0, seq), &opts(0)));
    }
    let dup = log
        .append(&mut batch_with_producer(1, 0, b"x", 7, 0, 3), &opts(0))
        .unwrap();
    assert_eq!(
        dup,
        AppendOutcome::Duplicate {
            base_offset: 3,
            last_offset: 3
        }
    );
    assert_eq!(log.log_end_offset(), 5, "nothing written");
    let gap = log.append(&mut batch_with_producer(1, 0, b"x", 7, 0, 9), &opts(0));
    assert!(matches!(
        gap,
        Err(LogError::Sequence(SequenceError::OutOfOrder {
            expected: 5,
            received: 9,
            ..
        }))
    ));
    let fenced = log.append(&mut batch_with_producer(1, 0, b"x", 7, -1, 5), &opts(0));
    assert!(matches!(
        fenced,
        Err(LogError::Sequence(SequenceError::InvalidEpoch { .. }))
    ));

    // A crash (no close): the state comes from the roll snapshot plus a replay.
    drop(log);
    let mut log = Log::open(dir.path(), cfg.clone(), 0).unwrap();
    let dup = log
        .append(&mut batch_with_producer(1, 0, b"x", 7, 0, 4), &opts(0))
        .unwrap();
    assert_eq!(
        dup,
        AppendOutcome::Duplicate {
            base_offset: 4,
            last_offset: 4
        }
    );
    appended(log.append(&mut batch_with_producer(1, 0, b"x", 7, 0, 5), &opts(0)));

    // A clean restart: the state comes from the close snapshot alone.
    log.close().unwrap();
    let mut log = Log::open(dir.path(), cfg, 0).unwrap();
    let dup = log
        .append(&mut batch_with_producer(1, 0, b"x", 7, 0, 5), &opts(0))
        .unwrap();
    assert_eq!(
        dup,
        AppendOutcome::Duplicate {
            base_offset: 5,
            last_offset: 5
        }
    );
    assert!(log
        .append(&mut batch_with_producer(1, 0, b"x", 7, 0, 7), &opts(0))
        .is_err());
}

#[test]
fn several_batches_of_one_producer_in_a_request_are_checked_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    let mut request = batch_with_producer(2, 0, b"x", 7, 0, 0);
    request.extend(batch_with_producer(3, 0, b"x", 7, 0, 2));
    let info = appended(log.append(&mut request.clone(), &opts(0)));
    assert_eq!((info.base_offset, info.last_offset), (0, 4));
    // The same request again is a retry of both batches.
    let dup = log.append(&mut request, &opts(0)).unwrap();
    assert_eq!(
        dup,
        AppendOutcome::Duplicate {
            base_offset: 0,
            last_offset: 4
        }
    );
    // A gap inside a request rejects all of it.
    let mut gapped = batch_with_producer(1, 0, b"x", 7, 0, 5);
    gapped.extend(batch_with_producer(1, 0, b"x", 7, 0, 7));
    assert!(matches!(
        log.append(&mut gapped, &opts(0)),
        Err(LogError::Sequence(_))
    ));
    // Retried and new batches mixed: rejected rather than half-answered.
    let mut mixed = batch_with_producer(3, 0, b"x", 7, 0, 2);
    mixed.extend(batch_with_producer(1, 0, b"x", 7, 0, 5));
    assert!(matches!(
        log.append(&mut mixed, &opts(0)),
        Err(LogError::CorruptBatch(_))
    ));
    assert_eq!(log.log_end_offset(), 5);
}

#[test]
fn indexes_are_rebuilt_when_missing_or_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 2_000,
        index_interval_bytes: 100,
        ..config()
    };
    let mut log = Log::open(dir.path(), cfg.clone(), 0).unwrap();
    for ts in 0..40 {
        append(&mut log, 1, ts);
    }
    let bases: Vec<i64> = log.segments.keys().copied().collect();
    assert!(bases.len() >= 3);
    let expected: Vec<_> = (0..40)
        .map(|o| batches(&log.read(o, 1, i64::MAX).unwrap().bytes))
        .collect();
    log.close().unwrap();
    let index = |base, suffix| dir.path().join(file_name(base, suffix));
    let original = fs::read(index(bases[0], INDEX_SUFFIX)).unwrap();
    fs::remove_file(index(bases[0], INDEX_SUFFIX)).unwrap();
    fs::write(index(bases[1], INDEX_SUFFIX), b"\x01garbage!").unwrap();
    fs::write(index(bases[1], TIME_INDEX_SUFFIX), b"\x07").unwrap();
    let mut past_end = fs::read(index(bases[2], INDEX_SUFFIX)).unwrap();
    past_end.extend([0, 0, 0, 99, 0, 0, 0xff, 0xff]);
    fs::write(index(bases[2], INDEX_SUFFIX), past_end).unwrap();

    let log = Log::open(dir.path(), cfg, 0).unwrap();
    let actual: Vec<_> = (0..40)
        .map(|o| batches(&log.read(o, 1, i64::MAX).unwrap().bytes))
        .collect();
    assert_eq!(actual, expected);
    assert_eq!(log.offset_for_timestamp(17).unwrap().map(|t| t.offset), Some(17));
    assert_eq!(
        fs::read(index(bases[0], INDEX_SUFFIX)).unwrap(),
        original,
        "rebuilt identically"
    );
}

#[test]
fn crash_recovery_cuts_garbage_after_the_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            segment_bytes: 1_000,
            ..config()
        },
        0,
    )
    .unwrap();
    for ts in 0..20 {
        append(&mut log, 1, ts);
    }
    let active = *log.segments.keys().next_back().unwrap();
    let before = read_all(&log);
    drop(log);
    let path = dir.path().join(file_name(active, ".log"));
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend([0xAB; 77]);
    fs::write(&path, bytes).unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(read_all(&log), before);
    assert_eq!(append(&mut log, 1, 0).base_offset, 20);
}

#[test]
fn a_failed_write_is_cut_back_and_takes_the_log_offline() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            flush: FlushPolicy::EveryBatch,
            ..config()
        },
        0,
    )
    .unwrap();
    append(&mut log, 2, 0);
    let size = log.size_bytes();
    log.fail_next_write_after = Some(30);
    let failed = log.append(&mut simple_batch(1, 0, b"lost"), &opts(0));
    assert!(matches!(
        failed,
        Err(LogError::Io {
            op: "append to segment",
            ..
        })
    ));
    log.fail_next_write_after = None;
    assert_eq!(log.size_bytes(), size);
    assert_eq!(
        fs::metadata(dir.path().join(file_name(0, ".log"))).unwrap().len(),
        size,
        "no partial batch"
    );
    assert!(matches!(
        log.append(&mut simple_batch(1, 0, b"x"), &opts(0)),
        Err(LogError::Offline { .. })
    ));
    assert!(matches!(log.flush(), Err(LogError::Offline { .. })));
    assert!(matches!(
        log.truncate_to(0),
        Err(ReplicaError::Log(LogError::Offline { .. }))
    ));
    assert_eq!(read_all(&log), vec![(0, 1)], "reads still work");
    assert!(
        log.close().is_err(),
        "an offline log cannot claim a clean shutdown"
    );
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(append(&mut log, 1, 0).base_offset, 2);
}

#[test]
fn flush_moves_the_recovery_point_and_delete_removes_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    let mut log = Log::open(&path, config(), 0).unwrap();
    append(&mut log, 3, 0);
    log.flush().unwrap();
    let checkpoint = crate::checkpoint::Checkpoint::read(&path).unwrap();
    assert_eq!((checkpoint.recovery_point, checkpoint.clean_shutdown), (3, false));
    log.set_config(LogConfig {
        retention_ms: 5,
        ..config()
    });
    assert_eq!(log.config().retention_ms, 5);
    log.delete().unwrap();
    assert!(!path.exists());
}
