//! Crash recovery at every byte: acceptance property for the log's recovery story.

use std::fs;
use std::path::Path;

use proptest::prelude::*;

use crate::batch::testing::simple_batch;
use crate::*;

/// Byte range of `partitionLeaderEpoch`, which Kafka's CRC does not cover: a flipped bit there
/// leaves a valid batch, so it cannot be detected and is not part of the property.
const UNPROTECTED: std::ops::Range<usize> = 12..16;

fn opts() -> AppendOptions {
    AppendOptions {
        leader_epoch: 1,
        now_ms: 1_000,
        log_append_time: false,
    }
}

/// Every file of a directory, to restore it between trials.
fn save(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().into_string().unwrap(), fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

fn restore(dir: &Path, files: &[(String, Vec<u8>)]) {
    for entry in fs::read_dir(dir).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Where the test writes: tmpfs when there is one, as thousands of reopens each fsync.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

/// Opens the damaged log and checks it holds exactly `kept` (the bytes of the batches before
/// the damaged one, ending at offset `log_end - 1`) and that appending continues at `log_end`.
fn assert_recovers_to(dir: &Path, config: &LogConfig, kept: &[u8], log_end: i64, what: &str) {
    let mut log = Log::open(dir, config.clone(), 2_000).unwrap();
    assert_eq!(log.log_end_offset(), log_end, "{what}");
    let read = log.read(0, usize::MAX, i64::MAX).unwrap();
    assert_eq!(&read.bytes[..], kept, "{what}");
    match log.append(&mut simple_batch(1, 5, b"after"), &opts()).unwrap() {
        AppendOutcome::Appended(info) => assert_eq!(info.base_offset, log_end, "{what}"),
        other => panic!("{what}: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn recovery_keeps_exactly_the_complete_batches_before_a_torn_or_corrupt_tail(
        shapes in prop::collection::vec((1i32..4, 0usize..24), 1..5),
        small_segments in any::<bool>(),
        clean_close in any::<bool>(),
        flip in 1u8..=255,
    ) {
        let dir = scratch_dir();
        let config = LogConfig {
            segment_bytes: if small_segments { 150 } else { 1 << 20 },
            index_interval_bytes: 64,
            ..LogConfig::default()
        };
        let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
        let mut last = (0i64, 0i64);
        for (i, &(count, value_len)) in shapes.iter().enumerate() {
            let batch = &mut simple_batch(count, 100 + i as i64, &vec![b'v'; value_len]);
            match log.append(batch, &opts()).unwrap() {
                AppendOutcome::Appended(info) => last = (info.base_offset, info.last_offset),
                other => panic!("{other:?}"),
            }
        }
        let all = log.read(0, usize::MAX, i64::MAX).unwrap().bytes;
        let last_batch = crate::batch::BatchView::parse(
            &log.read(last.0, 1, i64::MAX).unwrap().bytes,
        ).unwrap().size();
        let kept = &all[..all.len() - last_batch];
        let active = *log.segments.keys().next_back().unwrap();
        let active_name = crate::segment::file_name(active, ".log");
        if clean_close { log.close().unwrap() } else { drop(log) }

        let saved = save(dir.path());
        let segment = saved.iter().find(|(n, _)| *n == active_name).unwrap().1.clone();
        let start = segment.len() - last_batch;
        for cut in 0..last_batch {
            let mut files = saved.clone();
            files.iter_mut().find(|(n, _)| *n == active_name).unwrap().1.truncate(start + cut);
            restore(dir.path(), &files);
            assert_recovers_to(dir.path(), &config, kept, last.0, &format!("cut at +{cut}"));
        }
        for at in (0..last_batch).filter(|at| !UNPROTECTED.contains(at)) {
            let mut files = saved.clone();
            files.iter_mut().find(|(n, _)| *n == active_name).unwrap().1[start + at] ^= flip;
            restore(dir.path(), &files);
            assert_recovers_to(dir.path(), &config, kept, last.0, &format!("byte +{at} ^ {flip:#x}"));
        }
    }
}
