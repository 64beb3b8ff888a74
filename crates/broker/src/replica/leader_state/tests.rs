//! Leader-side follower tracking: Kafka's examples for caught-up times, the high watermark over
//! the ISR, ISR shrink and expansion, and property tests of the invariants over random runs.

use proptest::prelude::*;

use super::*;

const LAG: i64 = DEFAULT_REPLICA_LAG_TIME_MAX_MS;

fn leader(isr: &[i32], leo: i64, hw: i64, now_ms: i64) -> LeaderState {
    LeaderState::become_leader(LeaderInit {
        leader_id: 1,
        leader_epoch: 5,
        partition_epoch: 9,
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
        log_end_offset: leo,
        high_watermark: hw,
        lag_time_max_ms: LAG,
        now_ms,
    })
}

fn fetch(state: &mut LeaderState, replica: i32, fetch_offset: i64, leader_end: i64, now_ms: i64) -> Update {
    state
        .record_fetch(FollowerFetch {
            replica,
            fetch_offset,
            leader_end_offset: leader_end,
            now_ms,
            eligible_for_isr: true,
        })
        .unwrap()
}

#[test]
fn high_watermark_is_the_smallest_isr_log_end_offset() {
    let mut s = leader(&[1, 2, 3], 10, 0, 0);
    // Follower 3 has not fetched under this leader: its offset is unknown, the HW waits.
    assert_eq!(fetch(&mut s, 2, 5, 10, 1).high_watermark, None);
    assert_eq!(fetch(&mut s, 3, 7, 10, 2).high_watermark, Some(5));
    assert_eq!(fetch(&mut s, 2, 10, 10, 3).high_watermark, Some(7));
    assert_eq!(s.leader_appended(12, 4), None, "followers hold it back");
    assert_eq!(fetch(&mut s, 3, 12, 12, 5).high_watermark, Some(10));
    assert_eq!(fetch(&mut s, 2, 12, 12, 6).high_watermark, Some(12));
    assert_eq!(s.high_watermark(), 12);
}

#[test]
fn a_lone_leader_moves_the_high_watermark_on_append() {
    let mut s = LeaderState::become_leader(LeaderInit {
        leader_id: 1,
        leader_epoch: 0,
        partition_epoch: 0,
        replicas: vec![1],
        isr: vec![1],
        log_end_offset: 3,
        high_watermark: 3,
        lag_time_max_ms: LAG,
        now_ms: 0,
    });
    assert_eq!(s.leader_appended(8, 1), Some(8));
    assert_eq!(s.leader_appended(8, 2), None);
}

#[test]
fn high_watermark_never_moves_back() {
    let mut s = leader(&[1, 2], 10, 0, 0);
    assert_eq!(fetch(&mut s, 2, 10, 10, 1).high_watermark, Some(10));
    // Metadata adds 3 (at an unknown offset) to the ISR: the HW stays.
    let update = s.apply_metadata(vec![1, 2, 3], vec![1, 2, 3], 10, 10, 2);
    assert_eq!(update.high_watermark, None);
    assert_eq!(s.high_watermark(), 10);
    assert_eq!(fetch(&mut s, 3, 4, 12, 3).high_watermark, None);
    assert_eq!(s.high_watermark(), 10);
}

#[test]
fn caught_up_when_at_the_leaders_end_at_fetch_time() {
    let mut s = leader(&[1, 2, 3], 10, 0, 0);
    fetch(&mut s, 2, 10, 10, 500);
    assert_eq!(s.follower(2).unwrap().last_caught_up_ms, 500);
    // Behind this fetch's leader end (12) and the previous one (10): not caught up again.
    fetch(&mut s, 2, 9, 12, 900);
    assert_eq!(s.follower(2).unwrap().last_caught_up_ms, 500);
}

#[test]
fn caught_up_as_of_the_previous_fetch_when_reaching_its_leader_end() {
    // Kafka's "lastCaughtUpTime is the time of the previous fetch when the follower reached
    // the leader's end offset of that fetch": a follower chasing a busy leader stays in sync.
    let mut s = leader(&[1, 2, 3], 10, 0, 0);
    fetch(&mut s, 2, 8, 10, 100); // behind; leader end 10 as of t=100
    assert_eq!(
        s.follower(2).unwrap().last_caught_up_ms,
        0,
        "the leadership start"
    );
    fetch(&mut s, 2, 10, 15, 200); // reached 10 (the previous fetch's end) while the leader grew
    assert_eq!(s.follower(2).unwrap().last_caught_up_ms, 100);
    fetch(&mut s, 2, 15, 21, 300);
    assert_eq!(s.follower(2).unwrap().last_caught_up_ms, 200);
    assert_eq!(s.out_of_sync_replicas(21, 200 + LAG), vec![3]);
}

#[test]
fn a_follower_lagging_longer_than_the_lag_time_is_removed_from_the_isr() {
    let mut s = leader(&[1, 2, 3], 10, 0, 0);
    fetch(&mut s, 2, 10, 10, 100);
    fetch(&mut s, 3, 10, 10, 100);
    s.leader_appended(20, 150);
    // Follower 2 keeps up; follower 3 is silent.
    for t in (200..=100 + LAG + 300).step_by(100) {
        fetch(&mut s, 2, 20, 20, t);
    }
    assert!(
        s.out_of_sync_replicas(20, 100 + LAG).is_empty(),
        "exactly at the lag time is in sync"
    );
    let now = 100 + LAG + 1;
    assert_eq!(s.out_of_sync_replicas(20, now), vec![3]);
    let change = s.maybe_shrink_isr(20, now).unwrap();
    assert_eq!(
        change,
        IsrChange {
            leader_epoch: 5,
            partition_epoch: 9,
            isr: vec![1, 2]
        }
    );
    assert_eq!(s.maybe_shrink_isr(20, now + 10), None, "one change in flight");
    // Until it commits, 3 still holds the HW (maximal ISR).
    assert_eq!(s.high_watermark(), 10);
    assert_eq!(s.isr_change_committed(vec![1, 2], 10, 20, now + 20), Some(20));
    assert_eq!(s.isr(), &[1, 2]);
    assert_eq!(s.pending_isr(), None);
}

#[test]
fn new_leader_gives_isr_members_a_lag_period_and_never_removes_itself() {
    let s = leader(&[1, 2, 3], 10, 10, 1_000);
    assert!(s.out_of_sync_replicas(10, 1_000 + LAG).is_empty());
    assert_eq!(s.out_of_sync_replicas(10, 1_001 + LAG), vec![2, 3]);
    let mut s = s;
    let change = s.maybe_shrink_isr(10, 1_001 + LAG).unwrap();
    assert_eq!(change.isr, vec![1]);
}

#[test]
fn a_follower_rejoins_once_it_reaches_the_high_watermark_and_the_epoch_start() {
    // ISR {1, 2}; 3 restarted and catches up. The leader epoch started at 10.
    let mut s = leader(&[1, 2], 10, 4, 0);
    assert_eq!(fetch(&mut s, 2, 10, 10, 1).high_watermark, Some(10));
    s.leader_appended(30, 2);
    fetch(&mut s, 2, 25, 30, 3);
    assert_eq!(s.high_watermark(), 25);
    assert_eq!(fetch(&mut s, 3, 20, 30, 4).isr_change, None, "below the HW");
    let update = fetch(&mut s, 3, 25, 30, 5);
    assert_eq!(update.isr_change.map(|c| c.isr), Some(vec![1, 2, 3]));
    // While the expansion is in flight, 3 counts for the HW.
    assert_eq!(fetch(&mut s, 2, 30, 30, 6).high_watermark, None);
    assert_eq!(fetch(&mut s, 3, 28, 30, 7).high_watermark, Some(28));
    // The controller refuses: 3 stops counting at once (2 holds everything), but is not
    // proposed again until the refusal is over.
    assert_eq!(s.isr_change_refused(30, 8), Some(30));
    assert_eq!(s.pending_isr(), None);
    assert!(!s.in_maximal_isr(3));
    assert_eq!(fetch(&mut s, 3, 30, 30, 9).isr_change, None);
    assert_eq!(s.isr_change_failed(30, 10), None);
    let update = fetch(&mut s, 3, 30, 30, 11);
    assert!(update.isr_change.is_some());
    assert_eq!(update.high_watermark, None);
    assert_eq!(s.isr_change_committed(vec![1, 2, 3], 10, 30, 12), None);
    assert_eq!(s.isr(), &[1, 2, 3]);
}

#[test]
fn a_follower_below_the_epoch_start_does_not_rejoin() {
    // HW 0 (follower 3 holds it), epoch started at 10: offset 5 is at the HW but not enough.
    let mut s = leader(&[1, 3], 10, 0, 0);
    assert_eq!(fetch(&mut s, 2, 5, 10, 1).isr_change, None);
    assert!(fetch(&mut s, 2, 10, 10, 2).isr_change.is_some());
}

#[test]
fn ineligible_followers_are_not_proposed() {
    let mut s = leader(&[1, 2], 10, 10, 0);
    let update = s
        .record_fetch(FollowerFetch {
            replica: 3,
            fetch_offset: 10,
            leader_end_offset: 10,
            now_ms: 1,
            eligible_for_isr: false,
        })
        .unwrap();
    assert_eq!(update.isr_change, None);
}

#[test]
fn fetches_from_non_replicas_are_refused() {
    let mut s = leader(&[1, 2, 3], 10, 0, 0);
    let err = s.record_fetch(FollowerFetch {
        replica: 7,
        fetch_offset: 0,
        leader_end_offset: 10,
        now_ms: 0,
        eligible_for_isr: true,
    });
    assert_eq!(err, Err(NotAReplica(7)));
    assert_eq!(
        s.record_fetch(FollowerFetch {
            replica: 1,
            fetch_offset: 0,
            leader_end_offset: 10,
            now_ms: 0,
            eligible_for_isr: true,
        }),
        Err(NotAReplica(1)),
        "the leader does not fetch from itself"
    );
}

#[test]
fn min_insync_replicas_gates_acks_all_only() {
    let mut s = leader(&[1, 2], 10, 10, 0);
    assert_eq!(s.check_min_isr(-1, 2), Ok(()));
    assert_eq!(s.check_min_isr(-1, 3), Err(AckError::NotEnoughReplicas));
    assert_eq!(s.check_min_isr(1, 3), Ok(()));
    assert_eq!(s.check_min_isr(0, 3), Ok(()));
    s.apply_metadata(vec![1, 2, 3], vec![1], 10, 10, 1);
    assert_eq!(s.check_min_isr(-1, 2), Err(AckError::NotEnoughReplicas));
    assert_eq!(s.ack_state(2).isr_size, 1);
    assert_eq!(AckError::NotEnoughReplicas.code(), 19);
    assert_eq!(AckError::NotEnoughReplicasAfterAppend.code(), 20);
}

#[test]
fn stale_metadata_is_ignored_and_newer_metadata_clears_the_pending_change() {
    let mut s = leader(&[1, 2, 3], 10, 10, 0);
    s.maybe_shrink_isr(10, 10 + LAG).unwrap();
    s.apply_metadata(vec![1, 2, 3], vec![1], 8, 10, 1);
    assert_eq!((s.isr(), s.pending_isr().is_some()), (&[1, 2, 3][..], true));
    s.apply_metadata(vec![1, 2], vec![1, 2], 10, 10, 2);
    assert_eq!((s.isr(), s.pending_isr()), (&[1, 2][..], None));
    assert!(s.follower(3).is_none(), "no longer a replica");
}

#[derive(Debug, Clone)]
enum Op {
    Append(i64),
    Fetch { follower: usize, progress: u8 },
    Tick(i64),
    Shrink,
    Commit,
    Refuse,
    Fail,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1i64..20).prop_map(Op::Append),
        (0usize..4, any::<u8>()).prop_map(|(follower, progress)| Op::Fetch { follower, progress }),
        (1i64..1_500).prop_map(Op::Tick),
        Just(Op::Shrink),
        Just(Op::Commit),
        Just(Op::Refuse),
        Just(Op::Fail),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Over any run of appends, follower fetches (each follower only moves forward), time,
    /// shrinks and controller answers: the HW never moves back, never passes the leader's end,
    /// and whenever it moves it is at or below every maximal-ISR member's log end offset;
    /// proposals never drop the leader and only add followers at the HW.
    #[test]
    fn leader_state_invariants(ops in proptest::collection::vec(op(), 1..120), isr_mask in 0u8..16) {
        let followers = [2, 3, 4, 5];
        let isr: Vec<i32> = std::iter::once(1)
            .chain(followers.iter().copied().filter(|f| isr_mask & (1 << (f - 2)) != 0))
            .collect();
        let mut s = LeaderState::become_leader(LeaderInit {
            leader_id: 1,
            leader_epoch: 3,
            partition_epoch: 1,
            replicas: vec![1, 2, 3, 4, 5],
            isr,
            log_end_offset: 50,
            high_watermark: 40,
            lag_time_max_ms: LAG,
            now_ms: 1_000,
        });
        let mut leo = 50i64;
        let mut now = 1_000i64;
        let mut offsets = [40i64; 4];
        let mut pending: Option<IsrChange> = None;
        let mut partition_epoch = 1;
        for op in ops {
            let before = s.high_watermark();
            let mut proposal = None;
            match op {
                Op::Append(n) => {
                    leo += n;
                    s.leader_appended(leo, now);
                }
                Op::Fetch { follower, progress } => {
                    let at = &mut offsets[follower];
                    *at += (leo - *at) * i64::from(progress) / 255;
                    let hw_before = s.high_watermark();
                    let update = fetch(&mut s, followers[follower], *at, leo, now);
                    if update.isr_change.is_some() {
                        prop_assert!(*at >= hw_before, "proposed below the HW");
                        prop_assert!(*at >= 50, "proposed below the epoch start");
                    }
                    proposal = update.isr_change;
                }
                Op::Tick(ms) => now += ms,
                Op::Shrink => proposal = s.maybe_shrink_isr(leo, now),
                Op::Commit => {
                    if let Some(change) = pending.take() {
                        partition_epoch += 1;
                        s.isr_change_committed(change.isr, partition_epoch, leo, now);
                    }
                }
                Op::Refuse => {
                    s.isr_change_refused(leo, now);
                }
                Op::Fail => {
                    pending = None;
                    s.isr_change_failed(leo, now);
                }
            }
            if let Some(change) = proposal {
                prop_assert!(pending.is_none(), "two changes in flight");
                prop_assert!(change.isr.contains(&1), "the leader left the ISR");
                prop_assert_eq!(change.leader_epoch, 3);
                pending = Some(change);
            }
            let hw = s.high_watermark();
            prop_assert!(hw >= before, "HW moved back from {} to {}", before, hw);
            prop_assert!(hw <= leo);
            if hw > before {
                for f in followers.iter().copied().filter(|&f| s.in_maximal_isr(f)) {
                    let at = s.follower(f).map_or(UNKNOWN_OFFSET, |st| st.log_end_offset);
                    prop_assert!(at != UNKNOWN_OFFSET && hw <= at, "HW {} passed ISR member {} at {}", hw, f, at);
                }
            }
            prop_assert!(s.isr().contains(&1));
        }
    }
}

#[test]
fn a_fenced_follower_that_keeps_fetching_does_not_hold_the_high_watermark() {
    // Controlled shutdown: the controller takes broker 3 out of the ISR (it is fenced) while its
    // fetcher still runs until the process exits.
    let mut s = leader(&[1, 2, 3], 10, 0, 0);
    fetch(&mut s, 2, 10, 10, 1);
    fetch(&mut s, 3, 10, 10, 1);
    assert_eq!(s.high_watermark(), 10);
    let update = s.apply_metadata(vec![1, 2, 3], vec![1, 2], 10, 10, 2);
    assert_eq!(update.high_watermark, None);
    let fenced = s
        .record_fetch(FollowerFetch {
            replica: 3,
            fetch_offset: 10,
            leader_end_offset: 10,
            now_ms: 3,
            eligible_for_isr: false,
        })
        .unwrap();
    assert_eq!(fenced.isr_change, None, "never proposed back while fenced");
    // It exits; the leader appends and broker 2 alone commits.
    assert_eq!(s.leader_appended(15, 4), None);
    assert_eq!(fetch(&mut s, 2, 15, 15, 5).high_watermark, Some(15));
}

#[test]
fn a_refused_expansion_does_not_hold_the_high_watermark_for_a_replica_that_stops_fetching() {
    // Controlled shutdown of broker 3: the leader took it out of the ISR, then a fetch it sent
    // before the fencing was applied here proposed it back. It exits; the controller refuses.
    let mut s = leader(&[1, 2], 10, 10, 0);
    let back = fetch(&mut s, 3, 10, 10, 1);
    assert_eq!(back.isr_change.map(|c| c.isr), Some(vec![1, 2, 3]));
    s.leader_appended(15, 2);
    assert_eq!(
        fetch(&mut s, 2, 15, 15, 3).high_watermark,
        None,
        "3 counts while in flight"
    );
    assert_eq!(
        s.isr_change_refused(15, 4),
        Some(15),
        "2 alone commits once refused"
    );
    assert_eq!(s.isr_change_failed(15, 5), None);
}
