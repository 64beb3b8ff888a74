//! Follower appends: verbatim bytes, offset checks, leader epochs, producer state, and the
//! OffsetForLeaderEpoch truncation dance after a leader change.

use proptest::prelude::*;

use crate::batch::set_base_offset;
use crate::batch::testing::{batch_with_producer, simple_batch};
use crate::truncate::tests::{
    assert_log_is, boundaries, config, derived_state, read_all, scratch_dir, steps, write_history, Step,
};
use crate::*;

/// Fetches from `leader` into `follower` until caught up, `max_bytes` at a time.
fn replicate(leader: &Log, follower: &mut Log, max_bytes: usize) {
    for _ in 0..10_000 {
        let from = follower.log_end_offset();
        if from >= leader.log_end_offset() {
            return;
        }
        let fetched = leader.read(from, max_bytes, i64::MAX).unwrap();
        follower.append_as_follower(&fetched.bytes, 1_000).unwrap();
        follower.set_high_watermark(leader.high_watermark());
    }
    panic!("follower did not catch up");
}

fn epochs(log: &Log) -> Vec<(i32, i64)> {
    log.leader_epoch_cache()
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

fn opts(epoch: i32) -> AppendOptions {
    AppendOptions {
        leader_epoch: epoch,
        now_ms: 1_000,
        log_append_time: false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn follower_append_of_leader_batches_round_trips_byte_for_byte(
        history in steps(),
        leader_small in any::<bool>(),
        follower_small in any::<bool>(),
        max_bytes in 1usize..700,
    ) {
        let (ldir, fdir) = (scratch_dir(), scratch_dir());
        let mut leader = Log::open(ldir.path(), config(leader_small), 0).unwrap();
        write_history(&mut leader, &history);
        leader.set_high_watermark(leader.log_end_offset());
        let mut follower = Log::open(fdir.path(), config(follower_small), 0).unwrap();
        replicate(&leader, &mut follower, max_bytes);
        let all = read_all(&leader);
        assert_log_is(&follower, &all, leader.log_end_offset(), "replicated");
        prop_assert_eq!(epochs(&follower), epochs(&leader));
        prop_assert_eq!(format!("{:?}", follower.producer_state()), format!("{:?}", leader.producer_state()));
        prop_assert_eq!(follower.high_watermark(), leader.log_end_offset());
        for epoch in -1..=history.last().map_or(0, |s| s.epoch) + 1 {
            prop_assert_eq!(follower.end_offset_for_epoch(epoch), leader.end_offset_for_epoch(epoch));
        }
        drop(follower);
        let follower = Log::open(fdir.path(), config(follower_small), 0).unwrap();
        assert_log_is(&follower, &all, leader.log_end_offset(), "reopened");
    }
}

#[test]
fn follower_append_refuses_misplaced_overlapping_or_corrupt_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(false), 0).unwrap();
    let at = |offset: i64, count: i32| {
        let mut b = simple_batch(count, 5, b"v");
        set_base_offset(&mut b, offset);
        b
    };
    assert!(matches!(
        log.append_as_follower(&at(3, 1), 0),
        Err(ReplicaError::UnexpectedAppendOffset {
            first_offset: 3,
            log_end_offset: 0
        })
    ));
    log.append_as_follower(&at(0, 2), 0).unwrap();
    assert!(matches!(
        log.append_as_follower(&at(1, 1), 0),
        Err(ReplicaError::UnexpectedAppendOffset {
            first_offset: 1,
            log_end_offset: 2
        })
    ));
    let mut overlapping = at(2, 2);
    overlapping.extend(at(3, 1));
    assert!(matches!(
        log.append_as_follower(&overlapping, 0),
        Err(ReplicaError::Log(LogError::CorruptBatch(_)))
    ));
    let mut corrupt = at(2, 1);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(matches!(
        log.append_as_follower(&corrupt, 0),
        Err(ReplicaError::Log(LogError::CorruptBatch(_)))
    ));
    assert!(matches!(
        log.append_as_follower(&[], 0),
        Err(ReplicaError::Log(LogError::CorruptBatch(_)))
    ));
    assert_eq!(log.log_end_offset(), 2, "nothing was written");
    // A batch cut by the fetch's byte limit is left for the next fetch.
    let mut partial = at(2, 1);
    let whole = partial.len();
    partial.extend(&at(3, 1)[..20]);
    let info = log.append_as_follower(&partial, 0).unwrap();
    assert_eq!((info.base_offset, info.last_offset, info.record_count), (2, 2, 1));
    assert_eq!(log.size_bytes(), (at(0, 2).len() + whole) as u64);
}

#[test]
fn a_follower_that_becomes_leader_deduplicates_retries() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = Log::open(ldir.path(), config(true), 0).unwrap();
    let mut follower = Log::open(fdir.path(), config(false), 0).unwrap();
    for seq in [0, 2, 4] {
        let mut b = batch_with_producer(2, 0, b"p", 42, 3, seq);
        assert!(matches!(
            leader.append(&mut b, &opts(1)),
            Ok(AppendOutcome::Appended(_))
        ));
    }
    replicate(&leader, &mut follower, 100);
    drop(leader); // killed
    follower.assign_leader_epoch(2).unwrap();
    // The producer never saw the answer for sequence 4 and retries it on the new leader.
    let retry = follower.append(&mut batch_with_producer(2, 0, b"p", 42, 3, 4), &opts(2));
    assert!(matches!(
        retry,
        Ok(AppendOutcome::Duplicate {
            base_offset: 4,
            last_offset: 5
        })
    ));
    let next = follower.append(&mut batch_with_producer(2, 0, b"p", 42, 3, 6), &opts(2));
    assert!(matches!(
        next,
        Ok(AppendOutcome::Appended(AppendInfo { base_offset: 6, .. }))
    ));
    assert!(
        follower
            .append(&mut batch_with_producer(1, 0, b"p", 42, 2, 0), &opts(2))
            .is_err(),
        "an older producer epoch is fenced"
    );
    assert_eq!(epochs(&follower), vec![(1, 0), (2, 6)]);
}

/// KIP-101's scenario: a follower with records the new leader never got truncates them after
/// asking OffsetForLeaderEpoch, and the two logs converge.
#[test]
fn a_diverged_follower_truncates_by_leader_epoch_and_converges() {
    let (adir, bdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Log::open(adir.path(), config(true), 0).unwrap();
    let mut b = Log::open(bdir.path(), config(false), 0).unwrap();
    let step = |epoch, count| Step {
        count,
        value_len: 20,
        epoch,
        producer: None,
    };
    // A leads epoch 1; B replicates the first two batches only.
    write_history(&mut a, &[step(1, 2), step(1, 3)]);
    replicate(&a, &mut b, usize::MAX);
    write_history(&mut a, &[step(1, 2), step(1, 1)]); // offsets 5..8, never replicated
                                                      // A dies; B leads epoch 2 and takes new writes.
    b.assign_leader_epoch(2).unwrap();
    write_history(&mut b, &[step(2, 4), step(2, 1)]);
    // A comes back as a follower of epoch 2 and asks where its latest epoch ends on B.
    let answer = b.end_offset_for_epoch(a.latest_epoch().unwrap());
    assert_eq!(
        answer,
        EpochEndOffset {
            epoch: 1,
            end_offset: 5
        }
    );
    let own = a.end_offset_for_epoch(answer.epoch).end_offset;
    a.truncate_to(answer.end_offset.min(own)).unwrap();
    assert_eq!(a.log_end_offset(), 5);
    replicate(&b, &mut a, 64);
    assert_eq!(read_all(&a), read_all(&b));
    assert_eq!(epochs(&a), vec![(1, 0), (2, 5)]);
    assert_eq!(derived_state(&read_all(&a)).1, a.leader_epoch_cache().entries());
    assert_eq!(boundaries(&read_all(&a)).len(), 4);
}

#[test]
fn a_compacted_follower_accepts_gaps_and_truncates_inside_one() {
    let dir = tempfile::tempdir().unwrap();
    let compacted = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..config(false)
    };
    let mut log = Log::open(dir.path(), compacted, 0).unwrap();
    let at = |offset: i64| {
        let mut b = simple_batch(1, 5, b"v");
        set_base_offset(&mut b, offset);
        b
    };
    let mut fetched = at(3);
    fetched.extend(at(7));
    let info = log.append_as_follower(&fetched, 0).unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, log.log_end_offset()),
        (3, 7, 8)
    );
    assert!(matches!(
        log.append_as_follower(&at(7), 0),
        Err(ReplicaError::UnexpectedAppendOffset { .. })
    ));
    log.truncate_to(5).unwrap();
    assert_eq!(log.log_end_offset(), 5, "the log ends at the cut, inside the gap");
    log.append_as_follower(&at(5), 0).unwrap();
    assert_eq!(boundaries(&read_all(&log)), vec![(3, 0), (5, at(3).len())]);
}
