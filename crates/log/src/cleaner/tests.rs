//! Compaction through the public API, on real files in a temporary directory.

use std::fs;

use kafka_protocol::records::RecordBatchDecoder;

use super::testing::keyed_batch;
use crate::batch::{BatchIter, BatchView, Compression};
use crate::*;

const DAY: i64 = 86_400_000;

/// One batch per segment (every append rolls), so tests control segment boundaries.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1,
        index_interval_bytes: 64,
        cleanup_policy: CleanupPolicy::Compact,
        min_cleanable_dirty_ratio: 0.01,
        ..LogConfig::default()
    }
}

fn opts(now_ms: i64) -> AppendOptions {
    AppendOptions {
        leader_epoch: 0,
        now_ms,
        log_append_time: false,
    }
}

type Kv<'a> = (&'a str, Option<&'a str>);

/// Appends one batch of `records` at `ts` and returns its base offset.
fn put_with(log: &mut Log, records: &[Kv<'_>], ts: i64, codec: Compression) -> i64 {
    let records: Vec<(&[u8], Option<&[u8]>)> = records
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.map(str::as_bytes)))
        .collect();
    match log
        .append(&mut keyed_batch(&records, ts, codec), &opts(ts))
        .unwrap()
    {
        AppendOutcome::Appended(info) => info.base_offset,
        other => panic!("{other:?}"),
    }
}

fn put(log: &mut Log, records: &[Kv<'_>], ts: i64) -> i64 {
    put_with(log, records, ts, Compression::None)
}

/// `(offset, key, value)` of every record a consumer reading from the start gets, after
/// checking that every batch is valid (CRC, header) and that offsets only increase.
fn consume(log: &Log) -> Vec<(i64, String, Option<String>)> {
    let bytes = log
        .read(log.log_start_offset(), usize::MAX, i64::MAX)
        .unwrap()
        .bytes;
    let mut last = -1;
    for view in BatchIter::validated(&bytes) {
        let view = view.unwrap();
        assert!(view.base_offset() > last, "offsets increase");
        last = view.last_offset();
    }
    let mut buf = bytes.clone();
    let text = |b: &bytes::Bytes| String::from_utf8(b.to_vec()).unwrap();
    RecordBatchDecoder::decode_all(&mut buf)
        .unwrap()
        .into_iter()
        .flat_map(|set| set.records)
        .map(|r| {
            (
                r.offset,
                text(r.key.as_ref().unwrap()),
                r.value.as_ref().map(text),
            )
        })
        .collect()
}

fn kv(offset: i64, key: &str, value: Option<&str>) -> (i64, String, Option<String>) {
    (offset, key.to_string(), value.map(str::to_string))
}

#[test]
fn keeps_the_latest_value_per_key_at_its_original_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    put(&mut log, &[("a", Some("a1")), ("b", Some("b1"))], 10);
    put(&mut log, &[("a", Some("a2")), ("c", Some("c1"))], 11);
    put(&mut log, &[("b", Some("b2")), ("a", Some("a3"))], 12);
    put(&mut log, &[("d", Some("d1"))], 13); // active segment
    let stats = log.clean(100).unwrap();
    assert_eq!(stats.records_removed, 3, "{stats:?}");
    assert!(!stats.aborted);
    assert_eq!(
        consume(&log),
        vec![
            kv(3, "c", Some("c1")),
            kv(4, "b", Some("b2")),
            kv(5, "a", Some("a3")),
            kv(6, "d", Some("d1")),
        ]
    );
    // The first segment lost everything but stays, empty: the log start offset never moves.
    assert_eq!((stats.segments_deleted, stats.segments_rewritten), (0, 2));
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.log_end_offset(), 7);
    // Fetching inside a gap returns the next batch that exists.
    for offset in [0, 1, 2] {
        let bytes = log.read(offset, usize::MAX, i64::MAX).unwrap().bytes;
        assert_eq!(BatchView::parse(&bytes).unwrap().base_offset(), 2);
    }
    assert_eq!(put(&mut log, &[("e", Some("e1"))], 14), 7, "appends continue");
}

#[test]
fn rewritten_batches_keep_their_header_span_and_valid_crc() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    put(
        &mut log,
        &[("a", Some("1")), ("b", Some("1")), ("c", Some("1"))],
        10,
    );
    put(&mut log, &[("a", Some("2"))], 20);
    put(&mut log, &[("z", Some("z"))], 30);
    log.clean(100).unwrap();
    let bytes = log.read(0, 1, i64::MAX).unwrap().bytes;
    let view = BatchView::parse_validated(&bytes).unwrap();
    // Record 0 ("a") is gone, the batch still spans offsets 0..=2 and keeps its base timestamp.
    assert_eq!(
        (view.base_offset(), view.last_offset(), view.records_count()),
        (0, 2, 2)
    );
    assert_eq!(view.base_timestamp(), 10);
    assert_eq!(consume(&log)[..2], [kv(1, "b", Some("1")), kv(2, "c", Some("1"))]);
}

#[test]
fn tombstones_stay_until_delete_retention_ms_then_go() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        delete_retention_ms: 1_000,
        ..config()
    };
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    put(&mut log, &[("a", Some("a1")), ("b", Some("b1"))], 10_000);
    put(&mut log, &[("a", None)], 10_000);
    put(&mut log, &[("x", Some("x"))], 10_000);
    log.clean(10_500).unwrap();
    assert_eq!(
        consume(&log),
        vec![kv(1, "b", Some("b1")), kv(2, "a", None), kv(3, "x", Some("x"))],
        "a young tombstone is kept, the value it deletes is not"
    );
    // Nothing new is dirty: no pass until the kept tombstone expires, which alone triggers
    // one (also after a restart: the checkpoint remembers it).
    assert!(log.plan_clean(10_999).unwrap().is_none());
    log.close().unwrap();
    drop(log);
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    let stats = log.clean(11_001).unwrap();
    assert_eq!(stats.tombstones_removed, 1, "{stats:?}");
    assert_eq!(consume(&log), vec![kv(1, "b", Some("b1")), kv(3, "x", Some("x"))]);
    assert!(
        log.plan_clean(DAY).unwrap().is_none(),
        "no tombstone left to wait for"
    );
}

#[test]
fn min_compaction_lag_protects_recent_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_compaction_lag_ms: 1_000,
        ..config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    put(&mut log, &[("a", Some("1"))], 5_000);
    put(&mut log, &[("a", Some("2"))], 9_500);
    put(&mut log, &[("a", Some("3"))], 9_600);
    // At 10_000 only the first segment is older than the lag: alone it holds nothing stale.
    let stats = log.clean(10_000).unwrap();
    assert_eq!(stats.records_removed, 0);
    assert_eq!(consume(&log).len(), 3);
    // Later, the second is old enough and supersedes the first; the active one never counts.
    let stats = log.clean(10_550).unwrap();
    assert_eq!(stats.records_removed, 1, "{stats:?}");
    assert_eq!(consume(&log), vec![kv(1, "a", Some("2")), kv(2, "a", Some("3"))]);
}

#[test]
fn dirty_ratio_gates_cleaning_and_the_checkpoint_remembers_the_clean_section() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_cleanable_dirty_ratio: 0.5,
        ..config()
    };
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    for i in 0..4 {
        put(&mut log, &[(&format!("k{i}"), Some("v"))], 10);
    }
    put(&mut log, &[("active", Some("v"))], 10);
    assert!(log.plan_clean(100).unwrap().is_some(), "all dirty");
    log.clean(100).unwrap();
    assert!(
        log.plan_clean(100).unwrap().is_none(),
        "nothing dirty after a pass"
    );
    // One new dirty segment out of five cleanable: below 0.5.
    put(&mut log, &[("k0", Some("w"))], 10);
    assert!(log.plan_clean(100).unwrap().is_none());
    // The checkpoint survives a restart.
    log.close().unwrap();
    drop(log);
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    assert!(log.plan_clean(100).unwrap().is_none());
    for i in 0..4 {
        put(&mut log, &[(&format!("k{i}"), Some("x"))], 10);
    }
    let stats = log.clean(100).unwrap();
    assert_eq!(stats.records_removed, 4, "{stats:?}");
    // max.compaction.lag.ms forces a pass below the ratio.
    put(&mut log, &[("k1", Some("y"))], 10);
    assert!(log.plan_clean(100).unwrap().is_none());
    log.set_config(LogConfig {
        max_compaction_lag_ms: 50,
        ..config
    });
    assert!(log.plan_clean(100).unwrap().is_some());
}

#[test]
fn the_active_segment_is_never_touched() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    for i in 0..5 {
        put(&mut log, &[("a", Some(&*format!("{i}")))], 10);
    }
    assert!(log.plan_clean(100).unwrap().is_none());
    assert_eq!(log.clean(100).unwrap(), CleanStats::default());
    assert_eq!(consume(&log).len(), 5);
}

#[test]
fn compressed_batches_are_rewritten_with_their_codec() {
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        put_with(
            &mut log,
            &[("a", Some("1")), ("b", Some("1")), ("c", Some("1"))],
            10,
            codec,
        );
        put_with(&mut log, &[("b", Some("2"))], 10, codec);
        put_with(&mut log, &[("x", Some("x"))], 10, codec);
        let stats = log.clean(100).unwrap();
        assert_eq!(
            (stats.records_removed, stats.segments_rewritten),
            (1, 1),
            "{codec:?}"
        );
        let bytes = log.read(0, 1, i64::MAX).unwrap().bytes;
        let view = BatchView::parse_validated(&bytes).unwrap();
        assert_eq!(view.compression(), Some(codec));
        assert_eq!(view.records_count(), 2);
        assert_eq!(
            consume(&log),
            vec![
                kv(0, "a", Some("1")),
                kv(2, "c", Some("1")),
                kv(3, "b", Some("2")),
                kv(4, "x", Some("x"))
            ],
            "{codec:?}"
        );
    }
}

#[test]
fn recovery_accepts_compaction_gaps_after_clean_and_unclean_shutdowns() {
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..config()
    };
    for how in ["close", "drop", "no checkpoint", "no indexes"] {
        let dir = tempfile::tempdir().unwrap();
        // Two batches per segment here: roll by hand between them.
        let mut log = Log::open(
            dir.path(),
            LogConfig {
                segment_bytes: 1,
                ..config.clone()
            },
            0,
        )
        .unwrap();
        put(&mut log, &[("a", Some("1")), ("b", Some("1"))], 10);
        put(&mut log, &[("a", Some("2"))], 10);
        put(&mut log, &[("c", Some("1"))], 10);
        log.set_config(config.clone());
        put(&mut log, &[("c", Some("2"))], 10);
        put(&mut log, &[("d", Some("1"))], 10);
        log.set_config(LogConfig {
            segment_bytes: 1,
            ..config.clone()
        });
        put(&mut log, &[("z", Some("1"))], 10);
        log.clean(100).unwrap();
        let seen = consume(&log);
        assert_eq!(
            seen,
            vec![
                kv(1, "b", Some("1")),
                kv(2, "a", Some("2")),
                kv(4, "c", Some("2")),
                kv(5, "d", Some("1")),
                kv(6, "z", Some("1"))
            ]
        );
        match how {
            "close" => log.close().unwrap(),
            "drop" => drop(log),
            _ => {
                drop(log);
                for entry in fs::read_dir(dir.path()).unwrap() {
                    let path = entry.unwrap().path();
                    let name = path.file_name().unwrap().to_str().unwrap().to_string();
                    let doomed = if how == "no checkpoint" {
                        name == "recovery-checkpoint.json"
                    } else {
                        name.ends_with(".index") || name.ends_with(".timeindex")
                    };
                    if doomed {
                        fs::remove_file(path).unwrap();
                    }
                }
            }
        }
        // Reopened with the delete policy: the cleaner checkpoint still allows the gaps.
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(consume(&log), seen, "{how}");
        assert_eq!(log.log_end_offset(), 7, "{how}");
        assert_eq!(put(&mut log, &[("e", Some("1"))], 10), 7, "{how}");
    }
}

/// A log whose first segment lost its last batch: offsets 0..=1 there, 2.. in the next.
fn log_with_a_gap_between_segments(dir: &std::path::Path) -> (Log, Vec<(i64, String, Option<String>)>) {
    let big = LogConfig {
        segment_bytes: 1 << 20,
        ..config()
    };
    let mut log = Log::open(dir, big.clone(), 0).unwrap();
    put(&mut log, &[("x", Some("1"))], 10);
    put(&mut log, &[("y", Some("1"))], 10);
    log.set_config(config());
    put(&mut log, &[("y", Some("2"))], 10);
    put(&mut log, &[("z", Some("1"))], 10);
    log.clean(100).unwrap();
    let seen = consume(&log);
    assert_eq!(
        seen,
        vec![
            kv(0, "x", Some("1")),
            kv(2, "y", Some("2")),
            kv(3, "z", Some("1"))
        ]
    );
    (log, seen)
}

#[test]
fn recovery_accepts_a_segment_that_ends_before_the_next_one_begins() {
    for clean_close in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, seen) = log_with_a_gap_between_segments(dir.path());
        if clean_close {
            log.close().unwrap();
        }
        drop(log);
        if !clean_close {
            fs::remove_file(dir.path().join("recovery-checkpoint.json")).unwrap();
        }
        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        assert_eq!(consume(&log), seen);
        assert_eq!(put(&mut log, &[("w", Some("1"))], 10), 4);
    }
}

#[test]
fn leftover_cleaned_files_are_deleted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (log, seen) = log_with_a_gap_between_segments(dir.path());
    drop(log);
    let stray = dir.path().join("00000000000000000000.log.cleaned");
    fs::write(&stray, b"half written").unwrap();
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert!(!stray.exists());
    assert_eq!(consume(&log), seen);
}

#[test]
fn appends_and_rolls_during_a_pass_do_not_stop_the_swap() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    put(&mut log, &[("a", Some("1"))], 10);
    put(&mut log, &[("a", Some("2"))], 10);
    put(&mut log, &[("b", Some("1"))], 10);
    let plan = log.plan_clean(100).unwrap().unwrap();
    let cleaned = plan.execute().unwrap();
    // Meanwhile: produce goes on and rolls (the planned segments stay non-active).
    put(&mut log, &[("a", Some("3"))], 10);
    put(&mut log, &[("c", Some("1"))], 10);
    let stats = log.install_cleaned(cleaned).unwrap();
    assert!(!stats.aborted);
    assert_eq!(
        consume(&log),
        vec![
            kv(1, "a", Some("2")),
            kv(2, "b", Some("1")),
            kv(3, "a", Some("3")),
            kv(4, "c", Some("1"))
        ]
    );
    // The next pass takes the rest.
    log.clean(100).unwrap();
    assert_eq!(
        consume(&log),
        vec![
            kv(2, "b", Some("1")),
            kv(3, "a", Some("3")),
            kv(4, "c", Some("1"))
        ]
    );
}

#[test]
fn a_truncation_during_a_pass_aborts_the_swap() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    put(&mut log, &[("a", Some("1"))], 10);
    put(&mut log, &[("a", Some("2"))], 10);
    put(&mut log, &[("b", Some("1"))], 10);
    let cleaned = log.plan_clean(100).unwrap().unwrap().execute().unwrap();
    log.truncate_to(2).unwrap();
    let stats = log.install_cleaned(cleaned).unwrap();
    assert!(stats.aborted);
    assert_eq!(consume(&log), vec![kv(0, "a", Some("1")), kv(1, "a", Some("2"))]);
    let leftovers = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .ends_with(".cleaned")
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn segments_deleted_by_retention_during_a_pass_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        cleanup_policy: CleanupPolicy::CompactDelete,
        retention_ms: DAY,
        ..config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    put(&mut log, &[("a", Some("1")), ("b", Some("1"))], 10);
    put(&mut log, &[("a", Some("2"))], 2 * DAY);
    put(&mut log, &[("c", Some("1"))], 2 * DAY);
    let cleaned = log.plan_clean(2 * DAY).unwrap().unwrap().execute().unwrap();
    assert_eq!(
        log.enforce_retention(2 * DAY).unwrap(),
        1,
        "compact,delete applies retention"
    );
    let stats = log.install_cleaned(cleaned).unwrap();
    assert_eq!((stats.aborted, stats.segments_rewritten), (false, 0), "{stats:?}");
    assert_eq!(consume(&log), vec![kv(2, "a", Some("2")), kv(3, "c", Some("1"))]);
}

#[test]
fn compact_only_logs_roll_but_retention_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1 << 20,
        segment_ms: 100,
        retention_ms: 1,
        retention_bytes: 0,
        ..config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    put(&mut log, &[("a", Some("1"))], 10);
    assert_eq!(log.enforce_retention(DAY).unwrap(), 0);
    assert_eq!(log.log_end_offset(), 1);
    assert!(
        log.plan_clean(DAY).unwrap().is_some(),
        "the active segment was rolled"
    );
}

#[test]
fn records_without_a_key_are_rejected_by_compacted_logs_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    let keyless = crate::batch::testing::simple_batch(1, 10, b"v");
    let err = log.append(&mut keyless.clone(), &opts(10)).unwrap_err();
    assert!(
        matches!(err, LogError::CorruptBatch(crate::batch::BatchError::MissingKey)),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "corrupt record batch: Compacted topic cannot accept message without key"
    );
    log.set_config(LogConfig::default());
    assert!(log.append(&mut keyless.clone(), &opts(10)).is_ok());
}

#[test]
fn a_fetch_inside_a_trailing_gap_gets_an_empty_batch_up_to_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        delete_retention_ms: 0,
        segment_ms: 100,
        ..config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    put(&mut log, &[("a", Some("1"))], 10);
    put_with(&mut log, &[("b", Some("1")), ("a", None)], 10, Compression::Zstd);
    put(&mut log, &[("b", None)], 10);
    log.enforce_retention(DAY).unwrap(); // time-based roll: the active segment is empty
    let stats = log.clean(DAY).unwrap();
    assert_eq!(stats.tombstones_removed, 2, "{stats:?}");
    assert_eq!(consume(&log), vec![]);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 4));
    // Offset 1 onwards: the emptied last batch says "nothing up to offset 3".
    let bytes = log.read(1, usize::MAX, i64::MAX).unwrap().bytes;
    let views: Vec<_> = BatchIter::validated(&bytes).map(Result::unwrap).collect();
    assert_eq!(views.len(), 1);
    let view = views[0];
    assert_eq!(
        (view.base_offset(), view.last_offset(), view.records_count()),
        (3, 3, 0)
    );
    assert_eq!(view.compression(), Some(Compression::None));
    // A later pass keeps it while it is still last, and drops it once it is not.
    assert!(log.plan_clean(DAY).unwrap().is_none());
    put(&mut log, &[("c", Some("1"))], 10);
    log.enforce_retention(2 * DAY).unwrap();
    log.clean(2 * DAY).unwrap();
    let bytes = log
        .read(log.log_start_offset(), usize::MAX, i64::MAX)
        .unwrap()
        .bytes;
    let spans: Vec<_> = BatchIter::validated(&bytes)
        .map(Result::unwrap)
        .map(|v| (v.base_offset(), v.records_count()))
        .collect();
    assert_eq!(spans, vec![(4, 1)]);
}
