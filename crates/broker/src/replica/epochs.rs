//! Leader epochs as both ends of replication check them (KIP-101, KIP-279, KIP-320, KIP-595's
//! truncation on fetch), as pure functions:
//! - a leader fences requests that carry another `current_leader_epoch`
//!   ([`check_current_leader_epoch`]) and tells a fetching follower where its log diverges
//!   ([`diverging_epoch`], Fetch v12+);
//! - a follower turns the leader's answer (OffsetForLeaderEpoch, or a fetch's diverging
//!   epoch) into the offset to truncate to ([`truncation_point`]).

use kafka_protocol::error::ResponseError;
use sapper_log::leader_epoch::{UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
use sapper_log::{EpochEndOffset, LeaderEpochCache};

/// Kafka's `checkCurrentLeaderEpoch`: a request's `current_leader_epoch` against the epoch this
/// replica knows for the partition. -1 (a client that does not know epochs) always passes; an
/// older epoch is FENCED_LEADER_EPOCH (the requester must refresh its metadata), a newer one
/// UNKNOWN_LEADER_EPOCH (this broker has not caught up yet; retriable).
pub fn check_current_leader_epoch(requested: i32, local: i32) -> Result<(), i16> {
    if requested == UNDEFINED_EPOCH || requested == local {
        Ok(())
    } else if requested < local {
        Err(ResponseError::FencedLeaderEpoch.code())
    } else {
        Err(ResponseError::UnknownLeaderEpoch.code())
    }
}

/// OffsetForLeaderEpoch as the leader at `leader_epoch` answers it for `requested`, from its
/// log's epoch cache and end offset. A leader's cache holds its own epoch from the moment it
/// became leader (Kafka assigns it in `makeLeader`; `Log::assign_leader_epoch`); if this log
/// has not recorded it yet (nothing appended in it, or an older log), the answer is the one it
/// would give if it had, so followers and consumers never see a leader that does not know its
/// own epoch.
pub fn leader_end_offset_for(
    cache: &LeaderEpochCache,
    leader_epoch: i32,
    log_end_offset: i64,
    requested: i32,
) -> EpochEndOffset {
    if leader_epoch >= 0 && cache.latest_epoch().is_none_or(|latest| latest < leader_epoch) {
        let mut with_own = cache.clone();
        with_own.assign(leader_epoch, log_end_offset);
        return with_own.end_offset_for(requested, log_end_offset);
    }
    cache.end_offset_for(requested, log_end_offset)
}

/// Whether a follower fetching at `fetch_offset`, whose last batch was written in
/// `last_fetched_epoch`, has diverged from the leader (Kafka's
/// `validateFetchOffsetAndMaybeGetDivergingEpoch`). `end_of_last_fetched` is the leader's
/// `end_offset_for_epoch(last_fetched_epoch)`.
///
/// `Ok(Some(end))`: answer the fetch with no records and `diverging_epoch = end`; the follower
/// truncates. `Ok(None)`: read normally. `Err(OFFSET_OUT_OF_RANGE)`: the leader cannot tell
/// (it knows no epoch at or below the follower's) or the offset is below its log start.
/// A `last_fetched_epoch` of -1 (unknown, or an old follower) skips the check.
pub fn diverging_epoch(
    last_fetched_epoch: i32,
    fetch_offset: i64,
    end_of_last_fetched: EpochEndOffset,
    log_start_offset: i64,
) -> Result<Option<EpochEndOffset>, i16> {
    if last_fetched_epoch < 0 {
        return Ok(None);
    }
    let end = end_of_last_fetched;
    if end.end_offset == UNDEFINED_EPOCH_OFFSET
        || end.epoch == UNDEFINED_EPOCH
        || fetch_offset < log_start_offset
    {
        return Err(ResponseError::OffsetOutOfRange.code());
    }
    if end.epoch < last_fetched_epoch || end.end_offset < fetch_offset {
        return Ok(Some(end));
    }
    Ok(None)
}

/// Where a follower cuts its log, and whether it must ask the leader again afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Truncate to this offset (at or past the log end offset: nothing to cut).
    pub offset: i64,
    /// False when the follower does not know the epoch the leader answered with: it cuts to
    /// the end of its own floor epoch and asks again with its (now older) latest epoch.
    pub complete: bool,
}

/// Kafka's `AbstractFetcherThread.getOffsetTruncationState`: the follower's truncation point
/// given the leader's answer for the follower's latest epoch. `follower_end_for(epoch)` is
/// the follower's own `end_offset_for_epoch`; `log_end_offset` its log end offset.
///
/// Never returns an offset past `log_end_offset`, so applying it never grows a log.
pub fn truncation_point(
    leader: EpochEndOffset,
    follower_end_for: impl Fn(i32) -> EpochEndOffset,
    log_end_offset: i64,
) -> Truncation {
    let done = |offset: i64| Truncation {
        offset: offset.min(log_end_offset),
        complete: true,
    };
    if leader.end_offset == UNDEFINED_EPOCH_OFFSET {
        // The leader knows nothing at or below our epoch: keep what we have and let the
        // fetch validate it (Kafka truncates to the initial fetch offset, our log end).
        return done(log_end_offset);
    }
    if leader.epoch == UNDEFINED_EPOCH {
        return done(leader.end_offset);
    }
    let ours = follower_end_for(leader.epoch);
    if ours.epoch == UNDEFINED_EPOCH || ours.end_offset == UNDEFINED_EPOCH_OFFSET {
        // We never saw epochs that old (a new replica, or our log starts later): the leader's
        // end offset for its epoch is where we agree at most.
        return done(leader.end_offset);
    }
    if ours.epoch != leader.epoch {
        return Truncation {
            offset: ours.end_offset.min(log_end_offset),
            complete: false,
        };
    }
    done(ours.end_offset.min(leader.end_offset))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::{any, Strategy};

    use super::*;

    fn eo(epoch: i32, end_offset: i64) -> EpochEndOffset {
        EpochEndOffset { epoch, end_offset }
    }

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::new();
        for &(e, o) in entries {
            c.assign(e, o);
        }
        c
    }

    #[test]
    fn current_leader_epoch_is_fenced_or_unknown_unless_equal() {
        assert_eq!(check_current_leader_epoch(-1, 7), Ok(()));
        assert_eq!(check_current_leader_epoch(7, 7), Ok(()));
        assert_eq!(
            check_current_leader_epoch(6, 7),
            Err(ResponseError::FencedLeaderEpoch.code())
        );
        assert_eq!(
            check_current_leader_epoch(8, 7),
            Err(ResponseError::UnknownLeaderEpoch.code())
        );
    }

    #[test]
    fn a_leader_answers_as_if_its_own_epoch_were_recorded() {
        // Written in epochs 0 and 1; now leading in epoch 3 with nothing appended yet.
        let c = cache(&[(0, 0), (1, 5)]);
        assert_eq!(leader_end_offset_for(&c, 3, 9, 1), eo(1, 9));
        assert_eq!(leader_end_offset_for(&c, 3, 9, 2), eo(1, 9));
        assert_eq!(leader_end_offset_for(&c, 3, 9, 3), eo(3, 9));
        assert_eq!(leader_end_offset_for(&c, 3, 9, 4), EpochEndOffset::UNDEFINED);
        assert_eq!(leader_end_offset_for(&c, 3, 9, 0), eo(0, 5));
        // An empty log leading in epoch 0 (a new single-node partition).
        let empty = LeaderEpochCache::new();
        assert_eq!(leader_end_offset_for(&empty, 0, 0, 0), eo(0, 0));
        // Recorded already: the cache answers as is; the caller's cache is not changed.
        let c = cache(&[(0, 0), (3, 9)]);
        assert_eq!(leader_end_offset_for(&c, 3, 12, 3), eo(3, 12));
        assert_eq!(leader_end_offset_for(&c, -1, 12, 3), eo(3, 12));
        assert_eq!(c.entries().len(), 2);
    }

    #[test]
    fn diverging_epoch_only_when_the_follower_is_past_the_leaders_epoch_end() {
        // Leader: epoch 1 from 0, epoch 3 from 10, log end 15.
        let leader = cache(&[(1, 0), (3, 10)]);
        let end = |e| leader.end_offset_for(e, 15);
        // In sync: last fetched epoch 3, at 12.
        assert_eq!(diverging_epoch(3, 12, end(3), 0), Ok(None));
        // Follower wrote epoch 1 up to 12; the leader's epoch 1 ended at 10.
        assert_eq!(diverging_epoch(1, 12, end(1), 0), Ok(Some(eo(1, 10))));
        assert_eq!(diverging_epoch(1, 10, end(1), 0), Ok(None));
        // Follower has an epoch 2 the leader never had.
        assert_eq!(diverging_epoch(2, 11, end(2), 0), Ok(Some(eo(1, 10))));
        // Unknown epoch, old follower, below log start.
        assert_eq!(diverging_epoch(-1, 99, end(-1), 0), Ok(None));
        let ooor = Err(ResponseError::OffsetOutOfRange.code());
        assert_eq!(diverging_epoch(4, 12, end(4), 0), ooor);
        assert_eq!(diverging_epoch(3, 2, end(3), 5), ooor);
    }

    #[test]
    fn truncation_cuts_to_the_smaller_end_of_the_common_epoch() {
        // Follower: epochs (0,0) (1,5) (2,8), log end 12; leader says epoch 2 ended at 10.
        let f = cache(&[(0, 0), (1, 5), (2, 8)]);
        let ours = |e| f.end_offset_for(e, 12);
        assert_eq!(
            truncation_point(eo(2, 10), ours, 12),
            Truncation {
                offset: 10,
                complete: true
            }
        );
        // The leader is longer: nothing to cut.
        assert_eq!(
            truncation_point(eo(2, 20), ours, 12),
            Truncation {
                offset: 12,
                complete: true
            }
        );
        // The leader's floor is epoch 1, ending at 7 (we wrote epoch 1 up to 8).
        assert_eq!(
            truncation_point(eo(1, 7), ours, 12),
            Truncation {
                offset: 7,
                complete: true
            }
        );
    }

    #[test]
    fn truncation_asks_again_when_the_follower_lacks_the_leaders_epoch() {
        // Follower: (0,0) (2,10), log end 15. Leader: (0,0) (1,8) (3,12): for 2 it answers (1,12).
        let f = cache(&[(0, 0), (2, 10)]);
        let leader = cache(&[(0, 0), (1, 8), (3, 12)]);
        let first = truncation_point(leader.end_offset_for(2, 20), |e| f.end_offset_for(e, 15), 15);
        assert_eq!(
            first,
            Truncation {
                offset: 10,
                complete: false
            }
        );
        // After cutting to 10 the follower's latest epoch is 0; the leader says 0 ended at 8.
        let mut f = f;
        f.truncate_from_end(10);
        let second = truncation_point(leader.end_offset_for(0, 20), |e| f.end_offset_for(e, 10), 10);
        assert_eq!(
            second,
            Truncation {
                offset: 8,
                complete: true
            }
        );
    }

    /// One replica's log as the epoch of each offset, and its epoch cache.
    fn log_of(epochs: &[i32]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::new();
        for (offset, &e) in (0i64..).zip(epochs) {
            c.assign(e, offset);
        }
        c
    }

    /// A shared prefix, then suffixes the leader and the follower wrote in epochs the other
    /// never had (Kafka's guarantee: what two replicas hold of one epoch is a prefix of what
    /// its leader wrote, so past the shared prefix they share no epoch but, on one side at
    /// most, the prefix's last). The leader leads in a newer epoch than any written.
    fn histories() -> impl Strategy<Value = (Vec<i32>, Vec<i32>, Vec<i32>, i32)> {
        (
            proptest::collection::vec((0i32..3, 1usize..4), 0..4),
            proptest::collection::vec((any::<bool>(), 1usize..4), 0..6),
            0u8..3,
            1usize..4,
        )
            .prop_map(|(prefix_runs, new_epochs, extra_side, extra)| {
                let mut prefix = Vec::new();
                let mut epoch = 0;
                for (step, n) in prefix_runs {
                    epoch += step;
                    prefix.extend(std::iter::repeat_n(epoch, n));
                }
                let base = prefix.last().copied();
                let (mut leader, mut follower) = (Vec::new(), Vec::new());
                if let Some(base) = base {
                    match extra_side {
                        0 => leader.extend(std::iter::repeat_n(base, extra)),
                        1 => follower.extend(std::iter::repeat_n(base, extra)),
                        _ => {}
                    }
                }
                let mut next = base.map_or(0, |b| b + 1);
                for (to_leader, n) in new_epochs {
                    let side = if to_leader { &mut leader } else { &mut follower };
                    side.extend(std::iter::repeat_n(next, n));
                    next += 1;
                }
                (prefix, leader, follower, next)
            })
    }

    proptest::proptest! {
        /// However the logs diverged, OffsetForLeaderEpoch rounds with the leader's answers
        /// (at most one per follower epoch) cut the follower back to exactly the shared
        /// prefix, after which the leader's fetch sees no divergence.
        #[test]
        fn truncation_rounds_end_at_the_shared_prefix((prefix, leader_suffix, follower_suffix, leader_epoch) in histories()) {
            let leader: Vec<i32> = prefix.iter().chain(&leader_suffix).copied().collect();
            let follower: Vec<i32> = prefix.iter().chain(&follower_suffix).copied().collect();
            let leader_cache = log_of(&leader);
            let leader_end = leader.len() as i64;
            let mut cache = log_of(&follower);
            let mut end = follower.len() as i64;
            let mut rounds = 0;
            while let Some(latest) = cache.latest_epoch() {
                rounds += 1;
                proptest::prop_assert!(rounds <= 12, "no convergence");
                let answer = leader_end_offset_for(&leader_cache, leader_epoch, leader_end, latest);
                let point = truncation_point(answer, |e| cache.end_offset_for(e, end), end);
                proptest::prop_assert!(point.offset <= end);
                cache.truncate_from_end(point.offset);
                end = end.min(point.offset);
                if point.complete {
                    break;
                }
            }
            proptest::prop_assert_eq!(end, prefix.len() as i64);
            let expected = log_of(&prefix);
            proptest::prop_assert_eq!(cache.entries(), expected.entries());
            let last = cache.latest_epoch().unwrap_or(-1);
            let check = diverging_epoch(last, end, leader_end_offset_for(&leader_cache, leader_epoch, leader_end, last), 0);
            proptest::prop_assert_eq!(check, Ok(None));
        }
    }

    #[test]
    fn truncation_with_undefined_answers() {
        let f = cache(&[(4, 0)]);
        let ours = |e| f.end_offset_for(e, 9);
        assert_eq!(
            truncation_point(EpochEndOffset::UNDEFINED, ours, 9),
            Truncation {
                offset: 9,
                complete: true
            }
        );
        assert_eq!(
            truncation_point(eo(-1, 3), ours, 9),
            Truncation {
                offset: 3,
                complete: true
            }
        );
        // Leader answers epoch 2, older than all we have: our cache says epoch 2 "ended" where
        // our epoch 4 starts, so none of our records is known to the leader.
        assert_eq!(
            truncation_point(eo(2, 6), ours, 9),
            Truncation {
                offset: 0,
                complete: true
            }
        );
        // A follower with no epochs at all takes the leader's end offset.
        let none = LeaderEpochCache::new();
        assert_eq!(
            truncation_point(eo(2, 6), |e| none.end_offset_for(e, 9), 9),
            Truncation {
                offset: 6,
                complete: true
            }
        );
    }
}
