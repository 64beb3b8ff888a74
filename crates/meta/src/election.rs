//! The active controller's leadership decisions, as pure functions from the image to the
//! records to propose.
//!
//! - [`fence_broker`]: a broker's session expired (or it shuts down): move each of its
//!   leaderships to the first live ISR member in replica order, take it out of every ISR, then
//!   fence it. With no live ISR member a partition goes offline (leader [`NO_LEADER`], ISR
//!   kept so the last in-sync replica can lead again) unless its topic sets
//!   `unclean.leader.election.enable=true`, in which case the first live replica leads alone.
//! - [`unfence_broker`]: a broker is back and caught up on metadata: unfence it and give it
//!   the offline partitions it can lead.
//! - [`preferred_leaders`]: move leadership back to each partition's first replica where it is
//!   live and in sync (preferred leader election, auto leader rebalance).
//! - [`alter_partition`]: check a leader's ISR change request (Kafka's AlterPartition).
//!
//! Records are returned in the order they must be applied: partition changes before the
//! FenceBroker that requires the broker to lead nothing, UnfenceBroker before the partition
//! changes that make the broker a leader.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::image::MetadataImage;
use crate::records::{BrokerId, MetadataRecord, PartitionRecord, NO_LEADER};

/// Kafka's topic config that allows an out-of-sync replica to become leader (losing data).
pub const UNCLEAN_ELECTION_CONFIG: &str = "unclean.leader.election.enable";

/// Records that fence `id`, or nothing if it is unknown or already fenced.
pub fn fence_broker(image: &MetadataImage, id: BrokerId) -> Vec<MetadataRecord> {
    let Some(broker) = image.brokers.get(&id).filter(|b| !b.fenced) else {
        return Vec::new();
    };
    let mut records = leadership_away(image, id);
    records.push(MetadataRecord::FenceBroker {
        id,
        epoch: broker.registration.epoch,
    });
    records
}

/// Partition changes that leave `id` leading nothing and in no ISR (where others remain), for
/// fencing and for controlled shutdown.
pub fn leadership_away(image: &MetadataImage, id: BrokerId) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for (topic, p) in image
        .topics
        .values()
        .flat_map(|t| t.partitions.values().map(move |p| (t, p)))
    {
        let in_isr = p.isr.contains(&id);
        if p.leader != id && !in_isr {
            continue;
        }
        let remaining: Vec<BrokerId> = p.isr.iter().copied().filter(|&b| b != id).collect();
        let next = if p.leader == id {
            let live_isr = p
                .replicas
                .iter()
                .copied()
                .find(|b| remaining.contains(b) && image.is_live(*b));
            match live_isr {
                Some(leader) => p.with_leader_and_isr(leader, remaining),
                None if unclean_allowed(topic.configs.get(UNCLEAN_ELECTION_CONFIG)) => {
                    match p.replicas.iter().copied().find(|&b| b != id && image.is_live(b)) {
                        Some(leader) => p.with_leader_and_isr(leader, vec![leader]),
                        None => offline(p),
                    }
                }
                None => offline(p),
            }
        } else if remaining.is_empty() {
            continue; // the last ISR member of a partition that is already offline
        } else {
            p.with_leader_and_isr(p.leader, remaining)
        };
        records.push(MetadataRecord::Partition(next));
    }
    records
}

/// Records that unfence `id` (registered with `epoch`) and elect it where partitions are
/// offline and it may lead. Nothing if the epoch is stale or the broker is not fenced.
pub fn unfence_broker(image: &MetadataImage, id: BrokerId, epoch: i64) -> Vec<MetadataRecord> {
    let Some(broker) = image.brokers.get(&id) else {
        return Vec::new();
    };
    if !broker.fenced || broker.registration.epoch != epoch {
        return Vec::new();
    }
    let mut records = vec![MetadataRecord::UnfenceBroker { id, epoch }];
    for (topic, p) in image
        .topics
        .values()
        .flat_map(|t| t.partitions.values().map(move |p| (t, p)))
    {
        if p.leader != NO_LEADER || !p.replicas.contains(&id) {
            continue;
        }
        if p.isr.contains(&id) {
            records.push(MetadataRecord::Partition(
                p.with_leader_and_isr(id, p.isr.clone()),
            ));
        } else if unclean_allowed(topic.configs.get(UNCLEAN_ELECTION_CONFIG)) {
            records.push(MetadataRecord::Partition(p.with_leader_and_isr(id, vec![id])));
        }
    }
    records
}

/// Leadership back to the preferred (first) replica wherever it is live and in sync, for the
/// partitions `wanted` selects.
pub fn preferred_leaders(image: &MetadataImage, wanted: impl Fn(Uuid, i32) -> bool) -> Vec<MetadataRecord> {
    image
        .partitions()
        .filter(|p| wanted(p.topic_id, p.partition))
        .filter_map(|p| {
            let preferred = *p.replicas.first()?;
            let eligible = p.leader != preferred && p.isr.contains(&preferred) && image.is_live(preferred);
            eligible.then(|| MetadataRecord::Partition(p.with_leader_and_isr(preferred, p.isr.clone())))
        })
        .collect()
}

/// Why an AlterPartition request is refused; each maps to Kafka's error code.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum AlterPartitionError {
    /// UNKNOWN_TOPIC_OR_PARTITION (3)
    #[error("unknown partition")]
    UnknownPartition,
    /// NOT_LEADER_OR_FOLLOWER (6)
    #[error("broker {0} is not the leader")]
    NotLeader(BrokerId),
    /// FENCED_LEADER_EPOCH (74)
    #[error("leader epoch {got} is not the current {current}")]
    FencedLeaderEpoch { got: i32, current: i32 },
    /// INVALID_UPDATE_VERSION (95)
    #[error("partition epoch {got} is not the current {current}")]
    InvalidUpdateVersion { got: i32, current: i32 },
    /// INELIGIBLE_REPLICA (107)
    #[error("ISR member {0} is not a live replica")]
    IneligibleReplica(BrokerId),
    /// INVALID_REQUEST (42)
    #[error("the ISR must contain the leader, without duplicates")]
    InvalidIsr,
}

impl AlterPartitionError {
    /// Kafka's error code for this refusal.
    pub fn kafka_code(&self) -> i16 {
        match self {
            Self::UnknownPartition => 3,
            Self::NotLeader(_) => 6,
            Self::FencedLeaderEpoch { .. } => 74,
            Self::InvalidUpdateVersion { .. } => 95,
            Self::IneligibleReplica(_) => 107,
            Self::InvalidIsr => 42,
        }
    }
}

/// Checks a leader's request to change the ISR of one partition and returns the record to
/// propose (or, if the ISR is already what it asks, the current state and no record).
pub fn alter_partition(
    image: &MetadataImage,
    topic: Uuid,
    partition: i32,
    leader: BrokerId,
    leader_epoch: i32,
    partition_epoch: i32,
    new_isr: &[BrokerId],
) -> Result<Option<MetadataRecord>, AlterPartitionError> {
    let current = image
        .partition(topic, partition)
        .ok_or(AlterPartitionError::UnknownPartition)?;
    if current.leader != leader {
        return Err(AlterPartitionError::NotLeader(leader));
    }
    if leader_epoch != current.leader_epoch {
        return Err(AlterPartitionError::FencedLeaderEpoch {
            got: leader_epoch,
            current: current.leader_epoch,
        });
    }
    if partition_epoch != current.partition_epoch {
        return Err(AlterPartitionError::InvalidUpdateVersion {
            got: partition_epoch,
            current: current.partition_epoch,
        });
    }
    let mut sorted = new_isr.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != new_isr.len() || !new_isr.contains(&leader) {
        return Err(AlterPartitionError::InvalidIsr);
    }
    // A member joining the ISR must be a live replica; one that is only leaving need not be.
    if let Some(&bad) = new_isr
        .iter()
        .find(|&&b| !current.replicas.contains(&b) || (!current.isr.contains(&b) && !image.is_live(b)))
    {
        return Err(AlterPartitionError::IneligibleReplica(bad));
    }
    if new_isr == current.isr.as_slice() {
        return Ok(None);
    }
    Ok(Some(MetadataRecord::Partition(
        current.with_leader_and_isr(leader, new_isr.to_vec()),
    )))
}

fn offline(p: &PartitionRecord) -> PartitionRecord {
    // The ISR keeps its last member(s): they are the only replicas known to hold every
    // acknowledged record, so one of them must lead again (clean election).
    p.with_leader_and_isr(NO_LEADER, p.isr.clone())
}

fn unclean_allowed(value: Option<&String>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

#[cfg(test)]
mod tests;
