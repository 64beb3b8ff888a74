//! Truncation: boundaries, what follows the cut (indexes, producer state, leader epochs, high
//! watermark, checkpoint), and kills in the middle of it.

use std::fs;
use std::path::Path;

use proptest::prelude::*;

use crate::batch::testing::{batch_with_producer, simple_batch};
use crate::batch::BatchIter;
use crate::producer_state::ProducerStateManager;
use crate::recovery::batch_meta;
use crate::*;

/// One append of the generated history: records, value size, leader epoch, producer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Step {
    pub count: i32,
    pub value_len: usize,
    pub epoch: i32,
    pub producer: Option<i64>,
}

pub(crate) fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec((1i32..4, 0usize..60, any::<bool>(), 0u8..3), 1..12).prop_map(|raw| {
        let mut epoch = 0;
        raw.into_iter()
            .map(|(count, value_len, bump, producer)| {
                epoch += i32::from(bump);
                Step {
                    count,
                    value_len,
                    epoch,
                    producer: (producer > 0).then_some(i64::from(producer)),
                }
            })
            .collect()
    })
}

pub(crate) fn config(small_segments: bool) -> LogConfig {
    LogConfig {
        segment_bytes: if small_segments { 200 } else { 1 << 20 },
        index_interval_bytes: 64,
        ..LogConfig::default()
    }
}

/// Appends `steps` as a leader would; idempotent producers get consecutive sequences.
pub(crate) fn write_history(log: &mut Log, steps: &[Step]) {
    let mut seqs = std::collections::HashMap::new();
    for (i, s) in steps.iter().enumerate() {
        let value = vec![b'v'; s.value_len];
        let mut batch = match s.producer {
            Some(pid) => {
                let seq = seqs.entry(pid).or_insert(0);
                let b = batch_with_producer(s.count, 100 + i as i64, &value, pid, 0, *seq);
                *seq += s.count;
                b
            }
            None => simple_batch(s.count, 100 + i as i64, &value),
        };
        let opts = AppendOptions {
            leader_epoch: s.epoch,
            now_ms: 1_000,
            log_append_time: false,
        };
        assert!(matches!(
            log.append(&mut batch, &opts),
            Ok(AppendOutcome::Appended(_))
        ));
    }
}

pub(crate) fn read_all(log: &Log) -> Vec<u8> {
    log.read(log.log_start_offset(), usize::MAX, i64::MAX)
        .unwrap()
        .bytes
        .to_vec()
}

/// `(base_offset, byte position)` of every batch in `bytes`.
pub(crate) fn boundaries(bytes: &[u8]) -> Vec<(i64, usize)> {
    let mut pos = 0;
    BatchIter::new(bytes)
        .map(|b| {
            let b = b.unwrap();
            let at = (b.base_offset(), pos);
            pos += b.size();
            at
        })
        .collect()
}

/// The producer state and epoch cache that the batches in `bytes` imply, built from scratch.
pub(crate) fn derived_state(bytes: &[u8]) -> (String, Vec<EpochEntry>) {
    let mut producers = ProducerStateManager::new();
    let mut epochs = LeaderEpochCache::new();
    for view in BatchIter::new(bytes) {
        let view = view.unwrap();
        if view.has_producer_id() {
            producers.update(batch_meta(&view));
        }
        if epochs.would_change(view.partition_leader_epoch(), view.base_offset()) {
            epochs.assign(view.partition_leader_epoch(), view.base_offset());
        }
    }
    (format!("{producers:?}"), epochs.entries().to_vec())
}

/// Checks that `log` holds exactly `expected` and that its derived state matches.
pub(crate) fn assert_log_is(log: &Log, expected: &[u8], log_end: i64, what: &str) {
    assert_eq!(log.log_end_offset(), log_end, "{what}: log end");
    assert_eq!(read_all(log), expected, "{what}: bytes");
    let (producers, epochs) = derived_state(expected);
    assert_eq!(
        format!("{:?}", log.producer_state()),
        producers,
        "{what}: producer state"
    );
    assert_eq!(
        log.leader_epoch_cache().entries(),
        &epochs[..],
        "{what}: leader epochs"
    );
    assert!(log.high_watermark() <= log_end, "{what}: high watermark");
}

/// What the indexes answer: the max timestamp, a timestamp lookup for every timestamp the
/// history used, and the first batch a one-byte read returns from every offset.
fn index_answers(log: &Log, timestamps: usize) -> Vec<String> {
    let mut out = vec![format!("{:?}", log.max_timestamp())];
    for ts in 99..(101 + timestamps as i64) {
        out.push(format!("{ts}: {:?}", log.offset_for_timestamp(ts).unwrap()));
    }
    for offset in log.log_start_offset()..log.log_end_offset() {
        let read = log.read(offset, 1, i64::MAX).unwrap();
        out.push(format!("{offset}: {:?}", boundaries(&read.bytes).first()));
    }
    out
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(to).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

pub(crate) fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn truncating_at_every_batch_boundary_survives_reopen(
        history in steps(),
        small_segments in any::<bool>(),
        clean_close in any::<bool>(),
    ) {
        let template = scratch_dir();
        let config = config(small_segments);
        let mut log = Log::open(template.path(), config.clone(), 0).unwrap();
        write_history(&mut log, &history);
        let all = read_all(&log);
        let log_end = log.log_end_offset();
        log.set_high_watermark(log_end);
        log.close().unwrap();
        let mut cuts = boundaries(&all);
        cuts.push((log_end, all.len()));
        let dir = scratch_dir();
        for &(offset, pos) in &cuts {
            copy_dir(template.path(), dir.path());
            let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
            log.truncate_to(offset).unwrap();
            let kept = &all[..pos];
            assert_log_is(&log, kept, offset, &format!("truncated to {offset}"));
            prop_assert_eq!(log.high_watermark(), offset);
            let answers = index_answers(&log, history.len());
            if clean_close { log.close().unwrap() } else { drop(log) }
            let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
            assert_log_is(&log, kept, offset, &format!("reopened after truncation to {offset}"));
            prop_assert_eq!(log.high_watermark(), offset);
            prop_assert_eq!(index_answers(&log, history.len()), answers);
            // Appending continues at the cut, with the cache following the new epoch.
            write_history(&mut log, &[Step { count: 2, value_len: 5, epoch: 99, producer: None }]);
            prop_assert_eq!(log.end_offset_for_epoch(98).end_offset, offset);
            prop_assert_eq!(log.latest_epoch(), Some(99));
        }
    }

    #[test]
    fn a_kill_at_any_step_of_a_truncation_recovers_to_a_log_that_truncates_again(
        history in steps(),
        small_segments in any::<bool>(),
        pick in any::<prop::sample::Index>(),
        tear in any::<prop::sample::Index>(),
    ) {
        let template = scratch_dir();
        let config = config(small_segments);
        let mut log = Log::open(template.path(), config.clone(), 0).unwrap();
        write_history(&mut log, &history);
        let all = read_all(&log);
        drop(log);
        let cuts = boundaries(&all);
        let (offset, pos) = cuts[pick.index(cuts.len())];
        let dir = scratch_dir();
        for crash_after in 1..64 {
            copy_dir(template.path(), dir.path());
            let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
            log.crash_after_step = Some(crash_after);
            let finished = log.truncate_to(offset).is_ok();
            drop(log);
            if !finished && crash_after == 3 {
                // Also tear the active segment anywhere after the cut (a torn set_len or a
                // power loss): recovery keeps the complete batches.
                let last = fs::read_dir(dir.path()).unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "log"))
                    .max()
                    .unwrap();
                // Only bytes at or past the cut: what is below it was durable before.
                let name = last.file_name().unwrap().to_str().unwrap();
                let base = crate::segment::parse_file_name(name, ".log").unwrap();
                let base_pos = cuts.iter().find(|c| c.0 == base).map_or(0, |c| c.1);
                let keep = if base < offset { (pos - base_pos) as u64 } else { 0 };
                let len = fs::metadata(&last).unwrap().len();
                let f = fs::OpenOptions::new().write(true).open(&last).unwrap();
                f.set_len(keep + tear.index((len - keep) as usize + 1) as u64).unwrap();
            }
            let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
            let end = log.log_end_offset();
            let recovered = read_all(&log);
            prop_assert!(end >= offset, "never below the target");
            prop_assert!(all.starts_with(&recovered), "a prefix of the original log");
            assert_log_is(&log, &recovered, end, &format!("after a kill at step {crash_after}"));
            // The follower redoes the truncation.
            log.truncate_to(offset).unwrap();
            assert_log_is(&log, &all[..pos], offset, &format!("redone after step {crash_after}"));
            if finished {
                break;
            }
        }
    }
}

#[test]
fn truncation_below_the_log_start_or_fully_starts_an_empty_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(true), 0).unwrap();
    let history: Vec<Step> = (0..8)
        .map(|i| Step {
            count: 2,
            value_len: 40,
            epoch: i / 3,
            producer: Some(5),
        })
        .collect();
    write_history(&mut log, &history);
    log.set_high_watermark(10);
    log.advance_log_start_offset(6).unwrap();
    assert_eq!(log.leader_epoch_cache().earliest_entry().unwrap().start_offset, 6);
    log.truncate_to(4).unwrap(); // below the log start: everything goes
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset(), log.high_watermark()),
        (4, 4, 4)
    );
    assert!(log.leader_epoch_cache().is_empty() && log.producer_state().is_empty());
    write_history(&mut log, &history[..1]);
    log.truncate_fully_and_start_at(1_000).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (1_000, 1_000));
    drop(log);
    let mut log = Log::open(dir.path(), config(true), 0).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset(), log.high_watermark()),
        (1_000, 1_000, 1_000)
    );
    assert!(log.leader_epoch_cache().is_empty() && log.producer_state().is_empty());
    write_history(&mut log, &history[..2]);
    assert_eq!(log.log_end_offset(), 1_004);
    assert!(matches!(
        log.truncate_fully_and_start_at(-1),
        Err(ReplicaError::Log(LogError::OffsetOutOfRange { .. }))
    ));
}

#[test]
fn a_kill_during_a_full_truncation_leaves_the_old_log_or_the_new_one() {
    let template = tempfile::tempdir().unwrap();
    let mut log = Log::open(template.path(), config(true), 0).unwrap();
    let history: Vec<Step> = (0..6)
        .map(|i| Step {
            count: 1,
            value_len: 60,
            epoch: i,
            producer: None,
        })
        .collect();
    write_history(&mut log, &history);
    let all = read_all(&log);
    drop(log);
    let dir = tempfile::tempdir().unwrap();
    for crash_after in 1..32 {
        copy_dir(template.path(), dir.path());
        let mut log = Log::open(dir.path(), config(true), 0).unwrap();
        log.crash_after_step = Some(crash_after);
        let finished = log.truncate_fully_and_start_at(500).is_ok();
        drop(log);
        let mut log = Log::open(dir.path(), config(true), 0).unwrap();
        let recovered = read_all(&log);
        assert!(
            all.ends_with(&recovered),
            "a suffix of the old log (step {crash_after})"
        );
        assert_log_is(
            &log,
            &recovered,
            log.log_end_offset(),
            &format!("step {crash_after}"),
        );
        log.truncate_fully_and_start_at(500).unwrap();
        assert_log_is(&log, &[], 500, "redone");
        if finished {
            break;
        }
    }
}

#[test]
fn high_watermark_is_capped_monotonic_cut_by_truncation_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(false), 0).unwrap();
    assert_eq!(log.high_watermark(), 0);
    let steps: Vec<Step> = (0..5)
        .map(|_| Step {
            count: 2,
            value_len: 1,
            epoch: 1,
            producer: None,
        })
        .collect();
    write_history(&mut log, &steps);
    assert_eq!(log.set_high_watermark(100), 10, "never above the log end");
    assert_eq!(log.set_high_watermark(4), 10, "never backwards");
    log.truncate_to(6).unwrap();
    assert_eq!(log.high_watermark(), 6, "truncation moves it back");
    log.checkpoint_high_watermark().unwrap();
    drop(log);
    let mut log = Log::open(dir.path(), config(false), 0).unwrap();
    assert_eq!(log.high_watermark(), 6);
    log.advance_log_start_offset(4).unwrap();
    assert_eq!(log.high_watermark(), 6);
    assert_eq!(log.set_high_watermark(2), 6);
    // A bounded read stops at the high watermark.
    let read = log.read(4, usize::MAX, log.high_watermark()).unwrap();
    assert_eq!(boundaries(&read.bytes).last().unwrap().0, 4);
}

#[test]
fn leader_epoch_cache_is_recovered_rebuilt_or_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(true), 0).unwrap();
    let steps: Vec<Step> = [0, 0, 2, 2, 5, 7]
        .iter()
        .map(|&epoch| Step {
            count: 2,
            value_len: 30,
            epoch,
            producer: None,
        })
        .collect();
    write_history(&mut log, &steps);
    let want = vec![(0, 0), (2, 4), (5, 8), (7, 10)];
    let entries = |log: &Log| -> Vec<(i32, i64)> {
        log.leader_epoch_cache()
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    };
    assert_eq!(entries(&log), want);
    assert_eq!(
        log.end_offset_for_epoch(2),
        EpochEndOffset {
            epoch: 2,
            end_offset: 8
        }
    );
    assert_eq!(
        log.end_offset_for_epoch(6),
        EpochEndOffset {
            epoch: 5,
            end_offset: 10
        }
    );
    assert_eq!(
        log.end_offset_for_epoch(7),
        EpochEndOffset {
            epoch: 7,
            end_offset: 12
        }
    );
    assert_eq!(log.end_offset_for_epoch(8), EpochEndOffset::UNDEFINED);
    drop(log);
    let file = dir.path().join(crate::leader_epoch::FILE_NAME);
    for (content, what) in [
        (None, "missing"),
        (Some(&b"garbage"[..]), "garbage"),
        (Some(&b"0\n2\n0 0\n2 4\n"[..]), "behind the log"),
        (
            Some(&b"0\n5\n0 0\n2 4\n5 8\n7 10\n9 12\n"[..]),
            "ahead of the log",
        ),
    ] {
        match content {
            None => fs::remove_file(&file).unwrap(),
            Some(bytes) => fs::write(&file, bytes).unwrap(),
        }
        let log = Log::open(dir.path(), config(true), 0).unwrap();
        assert_eq!(entries(&log), want, "{what}");
        drop(log);
        assert_eq!(
            fs::read(&file).unwrap(),
            b"0\n4\n0 0\n2 4\n5 8\n7 10\n",
            "{what}: rewritten"
        );
    }
    let mut log = Log::open(dir.path(), config(true), 0).unwrap();
    log.assign_leader_epoch(9).unwrap();
    assert_eq!(
        log.end_offset_for_epoch(7).end_offset,
        12,
        "a new leader fixes the old epoch's end"
    );
    log.advance_log_start_offset(9).unwrap();
    assert_eq!(entries(&log), vec![(5, 9), (7, 10), (9, 12)]);
    drop(log);
    let log = Log::open(dir.path(), config(true), 0).unwrap();
    // As in Kafka, an epoch with no batch yet does not survive a restart (the cache is cut at
    // the log end offset); the restarted broker assigns its new epoch again.
    assert_eq!(entries(&log), vec![(5, 9), (7, 10)]);
}

#[test]
fn producer_state_after_truncation_accepts_the_cut_batches_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(true), 0).unwrap();
    let opts = AppendOptions {
        leader_epoch: 1,
        now_ms: 0,
        log_append_time: false,
    };
    for seq in 0..6 {
        let mut b = batch_with_producer(1, 0, &[b'x'; 50], 7, 0, seq);
        assert!(matches!(
            log.append(&mut b, &opts),
            Ok(AppendOutcome::Appended(_))
        ));
    }
    log.truncate_to(3).unwrap();
    assert_eq!(log.producer_state().last_entry(7), Some((0, 2, 2)));
    // The retry of sequence 2 is a duplicate; sequence 3 is new again; 4 would be a gap.
    let retry = log.append(&mut batch_with_producer(1, 0, &[b'x'; 50], 7, 0, 2), &opts);
    assert!(matches!(
        retry,
        Ok(AppendOutcome::Duplicate {
            base_offset: 2,
            last_offset: 2
        })
    ));
    assert!(log
        .append(&mut batch_with_producer(1, 0, &[b'x'; 50], 7, 0, 4), &opts)
        .is_err());
    let again = log.append(&mut batch_with_producer(1, 0, &[b'x'; 50], 7, 0, 3), &opts);
    assert!(matches!(
        again,
        Ok(AppendOutcome::Appended(AppendInfo { base_offset: 3, .. }))
    ));
}

#[test]
fn truncating_at_the_log_end_forgets_an_epoch_started_there_without_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(true), 0).unwrap();
    let history: Vec<Step> = (0..2)
        .map(|_| Step {
            count: 2,
            value_len: 10,
            epoch: 0,
            producer: None,
        })
        .collect();
    write_history(&mut log, &history);
    // This replica led briefly at epoch 3 without writing, then follows a leader that never
    // knew epoch 3: the truncation point is its log end.
    log.assign_leader_epoch(3).unwrap();
    assert_eq!(log.latest_epoch(), Some(3));
    log.truncate_to(4).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(log.latest_epoch(), Some(0));
    drop(log);
    let log = Log::open(dir.path(), config(true), 0).unwrap();
    assert_eq!(log.latest_epoch(), Some(0), "the cut is on disk");
}
