//! Where the replicas of new partitions go: rack-aware and balanced, deterministic for a seed.
//!
//! The method follows the idea of Kafka's rack-aware assignment (KIP-36) in our own words:
//! brokers are arranged so that neighbours sit in different racks (racks interleaved, each in
//! broker-id order); partition `p`'s leader is the broker at position `start + p`, so
//! leadership rotates evenly; its followers are taken walking on from `leader + shift`, where
//! the shift changes every full round of brokers so the same pairs of brokers do not always
//! share partitions; while some rack holds none of the partition's replicas, brokers in racks
//! already used are passed over.
//!
//! Guarantees, checked by the property tests: replicas are distinct live brokers; with at least
//! `replication_factor` racks, every replica of a partition is in a different rack; without
//! racks, over any multiple of the broker count every broker leads and holds the same number of
//! partitions.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::records::BrokerId;

/// Why no assignment could be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlacementError {
    #[error("replication factor {replication_factor} is larger than the {live} live broker(s)")]
    NotEnoughBrokers { replication_factor: usize, live: usize },
    #[error("replication factor must be at least 1")]
    ZeroReplicationFactor,
}

/// A broker that may receive replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: BrokerId,
    pub rack: Option<String>,
}

/// Replica lists for `partitions` new partitions (index 0 first); the first replica of each is
/// its preferred leader. `seed` (e.g. derived from the topic id) decides where the rotation
/// starts, so topics created one after another do not all start on the same broker.
pub fn assign_replicas(
    brokers: &[Candidate],
    partitions: u32,
    replication_factor: usize,
    seed: u64,
) -> Result<Vec<Vec<BrokerId>>, PlacementError> {
    if replication_factor == 0 {
        return Err(PlacementError::ZeroReplicationFactor);
    }
    let arranged = arrange_by_rack(brokers);
    let n = arranged.len();
    if replication_factor > n {
        return Err(PlacementError::NotEnoughBrokers {
            replication_factor,
            live: n,
        });
    }
    let rack_count = arranged.iter().map(|c| &c.rack).collect::<BTreeSet<_>>().len();
    // Bounded by the checks above: n >= 1, and the seed is reduced before any arithmetic.
    let start = usize::try_from(seed % n as u64).unwrap_or(0);
    let shift_seed = usize::try_from((seed / n as u64) % n.max(1) as u64).unwrap_or(0);
    let mut assignment = Vec::with_capacity(usize::try_from(partitions).unwrap_or(0));
    for p in 0..usize::try_from(partitions).unwrap_or(0) {
        let leader_pos = (start + p) % n;
        // 1..n-1: never 0, so the first follower is not the leader itself.
        let shift = if n > 1 {
            1 + (shift_seed + p / n) % (n - 1)
        } else {
            0
        };
        let mut replicas = Vec::with_capacity(replication_factor);
        let mut racks_used = BTreeSet::new();
        if let Some(leader) = arranged.get(leader_pos) {
            replicas.push(leader.id);
            racks_used.insert(leader.rack.clone());
        }
        let followers = (0..n)
            .map(|k| (leader_pos + shift + k) % n)
            .filter(|&pos| pos != leader_pos)
            .filter_map(|pos| arranged.get(pos));
        let mut passed_over = Vec::new();
        for candidate in followers {
            if replicas.len() == replication_factor {
                break;
            }
            if racks_used.len() < rack_count && racks_used.contains(&candidate.rack) {
                passed_over.push(candidate.id);
                continue;
            }
            racks_used.insert(candidate.rack.clone());
            replicas.push(candidate.id);
        }
        for id in passed_over {
            if replicas.len() == replication_factor {
                break;
            }
            replicas.push(id);
        }
        assignment.push(replicas);
    }
    Ok(assignment)
}

/// Brokers in an order where neighbours are in different racks as far as the racks allow:
/// one broker of each rack in turn (racks by name, brokers by id). Brokers without a rack form
/// one rack of their own when others have racks; without any racks the order is by id.
fn arrange_by_rack(brokers: &[Candidate]) -> Vec<Candidate> {
    let mut by_rack: BTreeMap<Option<String>, Vec<Candidate>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for broker in brokers {
        if seen.insert(broker.id) {
            by_rack
                .entry(broker.rack.clone())
                .or_default()
                .push(broker.clone());
        }
    }
    for members in by_rack.values_mut() {
        members.sort_by_key(|c| c.id);
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut arranged = Vec::with_capacity(seen.len());
    for round in 0..longest {
        for members in by_rack.values() {
            if let Some(c) = members.get(round) {
                arranged.push(c.clone());
            }
        }
    }
    arranged
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brokers(racks: &[Option<&str>]) -> Vec<Candidate> {
        racks
            .iter()
            .enumerate()
            .map(|(i, rack)| Candidate {
                id: i32::try_from(i).unwrap() + 1,
                rack: rack.map(str::to_string),
            })
            .collect()
    }

    #[test]
    fn three_racks_put_each_replica_in_its_own_rack() {
        let six = brokers(&[Some("a"), Some("a"), Some("b"), Some("b"), Some("c"), Some("c")]);
        let rack_of = |id: BrokerId| six.iter().find(|c| c.id == id).unwrap().rack.clone();
        for replicas in assign_replicas(&six, 12, 3, 5).unwrap() {
            let racks: BTreeSet<_> = replicas.iter().map(|&id| rack_of(id)).collect();
            assert_eq!(racks.len(), 3, "{replicas:?}");
        }
    }

    #[test]
    fn too_few_brokers_is_an_error() {
        assert_eq!(
            assign_replicas(&brokers(&[None, None]), 1, 3, 0),
            Err(PlacementError::NotEnoughBrokers {
                replication_factor: 3,
                live: 2
            })
        );
        assert_eq!(
            assign_replicas(&brokers(&[None]), 1, 0, 0),
            Err(PlacementError::ZeroReplicationFactor)
        );
    }

    proptest! {
        #[test]
        fn replicas_are_distinct_and_racks_diverse(
            racks in proptest::collection::vec(proptest::option::of(0u8..4), 1..9),
            partitions in 0u32..40,
            rf in 1usize..5,
            seed in any::<u64>(),
        ) {
            let names: Vec<Option<String>> = racks.iter().map(|r| r.map(|r| format!("r{r}"))).collect();
            let candidates: Vec<Candidate> = names.iter().enumerate().map(|(i, rack)| Candidate {
                id: i32::try_from(i).unwrap() + 1,
                rack: rack.clone(),
            }).collect();
            let result = assign_replicas(&candidates, partitions, rf, seed);
            if rf > candidates.len() {
                prop_assert!(result.is_err());
                return Ok(());
            }
            let assignment = result.unwrap();
            prop_assert_eq!(assignment.len(), partitions as usize);
            let rack_count = names.iter().collect::<BTreeSet<_>>().len();
            for replicas in &assignment {
                prop_assert_eq!(replicas.len(), rf);
                let distinct: BTreeSet<_> = replicas.iter().collect();
                prop_assert_eq!(distinct.len(), rf);
                let racks: BTreeSet<_> = replicas.iter().map(|&id| &names[(id - 1) as usize]).collect();
                prop_assert_eq!(racks.len(), rf.min(rack_count));
            }
        }

        #[test]
        fn without_racks_leaders_and_replicas_are_even(
            n in 1usize..8,
            rounds in 1u32..5,
            rf_pick in any::<usize>(),
            seed in any::<u64>(),
        ) {
            let candidates = brokers(&vec![None; n]);
            let rf = 1 + rf_pick % n;
            let partitions = rounds * u32::try_from(n).unwrap();
            let assignment = assign_replicas(&candidates, partitions, rf, seed).unwrap();
            let mut leaders: BTreeMap<BrokerId, u32> = BTreeMap::new();
            let mut replicas: BTreeMap<BrokerId, u32> = BTreeMap::new();
            for r in &assignment {
                *leaders.entry(r[0]).or_default() += 1;
                for &id in r {
                    *replicas.entry(id).or_default() += 1;
                }
            }
            prop_assert_eq!(leaders.len(), n);
            prop_assert!(leaders.values().all(|&c| c == rounds));
            prop_assert!(replicas.values().all(|&c| c == rounds * u32::try_from(rf).unwrap()));
        }
    }
}
