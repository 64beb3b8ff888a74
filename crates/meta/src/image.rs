//! The metadata image: the state every node builds by applying the committed records in order.
//!
//! [`MetadataImage::apply`] is the Raft state machine's transition. It is deterministic and
//! checks each record against the invariants below; a record that would break one is refused
//! with an [`ApplyError`] and changes nothing, on every node alike (the controller validates
//! before proposing, so a refusal means a bug or a race between two proposals, never a split).
//!
//! Invariants, kept by `apply` and checked by the property tests:
//! - a partition's ISR is a non-empty subset of its replicas, without duplicates;
//! - its leader is [`NO_LEADER`] or a member of the ISR that is registered and not fenced;
//! - leader and partition epochs never go backwards, and the partition epoch advances by
//!   exactly one per change;
//! - a fenced or unregistered broker leads nothing;
//! - producer id blocks never overlap.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::records::{BrokerId, BrokerRegistration, MetadataRecord, PartitionRecord, NO_LEADER};

/// Why a record was not applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApplyError {
    #[error("broker {0} is not registered")]
    UnknownBroker(BrokerId),
    #[error("broker {id}: epoch {got} does not match the registered epoch {current}")]
    StaleBrokerEpoch { id: BrokerId, got: i64, current: i64 },
    #[error("broker {id} still leads {partitions} partition(s)")]
    BrokerStillLeads { id: BrokerId, partitions: usize },
    #[error("topic {0} does not exist")]
    UnknownTopic(Uuid),
    #[error("topic name {0} is taken")]
    TopicNameTaken(String),
    #[error("topic id {0} is taken")]
    TopicIdTaken(Uuid),
    #[error("partition {topic}-{partition}: {why}")]
    InvalidPartition {
        topic: Uuid,
        partition: i32,
        why: &'static str,
    },
    #[error("producer id block [{first}, +{count}) overlaps ids already allocated below {next}")]
    ProducerIdsOverlap { first: i64, count: i64, next: i64 },
}

/// A registered broker as the image knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerState {
    pub registration: BrokerRegistration,
    pub fenced: bool,
}

/// A topic: name, configs and its partitions by index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub configs: BTreeMap<String, String>,
    pub partitions: BTreeMap<i32, PartitionState>,
}

/// The current state of one partition.
pub type PartitionState = PartitionRecord;

/// What one applied record changed, so brokers act on deltas rather than whole images.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataDelta {
    pub brokers: BTreeSet<BrokerId>,
    pub topics_created: BTreeSet<Uuid>,
    pub topics_deleted: BTreeSet<Uuid>,
    pub topic_configs: BTreeSet<Uuid>,
    pub partitions: BTreeSet<(Uuid, i32)>,
}

/// The whole metadata state. Serialized as is for Raft snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub brokers: BTreeMap<BrokerId, BrokerState>,
    pub topics: BTreeMap<Uuid, TopicImage>,
    /// Topic name -> id, kept in step with `topics`.
    pub topic_ids: BTreeMap<String, Uuid>,
    /// The first producer id no block has covered yet.
    pub next_producer_id: i64,
}

impl MetadataImage {
    pub fn topic_by_name(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    pub fn partition(&self, topic: Uuid, partition: i32) -> Option<&PartitionState> {
        self.topics.get(&topic).and_then(|t| t.partitions.get(&partition))
    }

    /// All partitions, in (topic id, index) order.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionState> {
        self.topics.values().flat_map(|t| t.partitions.values())
    }

    /// Registered, unfenced brokers.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerState> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    pub fn is_live(&self, id: BrokerId) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// Applies one committed record, or refuses it leaving the image unchanged.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<MetadataDelta, ApplyError> {
        let mut delta = MetadataDelta::default();
        match record {
            MetadataRecord::RegisterBroker(registration) => {
                // A new registration starts fenced: the broker is unfenced once it has caught
                // up on metadata, as in KRaft.
                self.brokers.insert(
                    registration.id,
                    BrokerState {
                        registration: registration.clone(),
                        fenced: true,
                    },
                );
                delta.brokers.insert(registration.id);
            }
            MetadataRecord::FenceBroker { id, epoch } => {
                self.check_epoch(*id, *epoch)?;
                self.check_leads_nothing(*id)?;
                self.set_fenced(*id, true);
                delta.brokers.insert(*id);
            }
            MetadataRecord::UnfenceBroker { id, epoch } => {
                self.check_epoch(*id, *epoch)?;
                self.set_fenced(*id, false);
                delta.brokers.insert(*id);
            }
            MetadataRecord::UnregisterBroker { id, epoch } => {
                self.check_epoch(*id, *epoch)?;
                self.check_leads_nothing(*id)?;
                self.brokers.remove(id);
                delta.brokers.insert(*id);
            }
            MetadataRecord::CreateTopic { name, id, configs } => {
                if self.topic_ids.contains_key(name) {
                    return Err(ApplyError::TopicNameTaken(name.clone()));
                }
                if self.topics.contains_key(id) {
                    return Err(ApplyError::TopicIdTaken(*id));
                }
                self.topic_ids.insert(name.clone(), *id);
                self.topics.insert(
                    *id,
                    TopicImage {
                        name: name.clone(),
                        id: *id,
                        configs: configs.clone(),
                        partitions: BTreeMap::new(),
                    },
                );
                delta.topics_created.insert(*id);
            }
            MetadataRecord::DeleteTopic { id } => {
                let topic = self.topics.remove(id).ok_or(ApplyError::UnknownTopic(*id))?;
                self.topic_ids.remove(&topic.name);
                delta.topics_deleted.insert(*id);
            }
            MetadataRecord::SetTopicConfig { id, key, value } => {
                let topic = self.topics.get_mut(id).ok_or(ApplyError::UnknownTopic(*id))?;
                match value {
                    Some(value) => topic.configs.insert(key.clone(), value.clone()),
                    None => topic.configs.remove(key),
                };
                delta.topic_configs.insert(*id);
            }
            MetadataRecord::Partition(next) => {
                self.check_partition(next)?;
                let topic = self
                    .topics
                    .get_mut(&next.topic_id)
                    .ok_or(ApplyError::UnknownTopic(next.topic_id))?;
                topic.partitions.insert(next.partition, next.clone());
                delta.partitions.insert((next.topic_id, next.partition));
            }
            MetadataRecord::AllocateProducerIds { broker, first, count } => {
                if !self.brokers.contains_key(broker) {
                    return Err(ApplyError::UnknownBroker(*broker));
                }
                if *first < self.next_producer_id || *count <= 0 {
                    return Err(ApplyError::ProducerIdsOverlap {
                        first: *first,
                        count: *count,
                        next: self.next_producer_id,
                    });
                }
                self.next_producer_id = first.saturating_add(*count);
            }
        }
        Ok(delta)
    }

    fn check_epoch(&self, id: BrokerId, epoch: i64) -> Result<(), ApplyError> {
        let broker = self.brokers.get(&id).ok_or(ApplyError::UnknownBroker(id))?;
        if broker.registration.epoch != epoch {
            return Err(ApplyError::StaleBrokerEpoch {
                id,
                got: epoch,
                current: broker.registration.epoch,
            });
        }
        Ok(())
    }

    fn check_leads_nothing(&self, id: BrokerId) -> Result<(), ApplyError> {
        let partitions = self.partitions().filter(|p| p.leader == id).count();
        if partitions > 0 {
            return Err(ApplyError::BrokerStillLeads { id, partitions });
        }
        Ok(())
    }

    fn set_fenced(&mut self, id: BrokerId, fenced: bool) {
        if let Some(broker) = self.brokers.get_mut(&id) {
            broker.fenced = fenced;
        }
    }

    fn check_partition(&self, next: &PartitionRecord) -> Result<(), ApplyError> {
        let invalid = |why| ApplyError::InvalidPartition {
            topic: next.topic_id,
            partition: next.partition,
            why,
        };
        let topic = self
            .topics
            .get(&next.topic_id)
            .ok_or(ApplyError::UnknownTopic(next.topic_id))?;
        if next.partition < 0 {
            return Err(invalid("negative partition index"));
        }
        let replicas: BTreeSet<_> = next.replicas.iter().copied().collect();
        if replicas.is_empty() || replicas.len() != next.replicas.len() {
            return Err(invalid("replicas must be non-empty and distinct"));
        }
        let isr: BTreeSet<_> = next.isr.iter().copied().collect();
        if isr.is_empty() || isr.len() != next.isr.len() || !isr.is_subset(&replicas) {
            return Err(invalid(
                "ISR must be a non-empty, distinct subset of the replicas",
            ));
        }
        if !next
            .adding
            .iter()
            .chain(&next.removing)
            .all(|b| replicas.contains(b))
        {
            return Err(invalid("adding/removing replicas must be replicas"));
        }
        if next.leader != NO_LEADER && (!isr.contains(&next.leader) || !self.is_live(next.leader)) {
            return Err(invalid("leader must be a live member of the ISR"));
        }
        match topic.partitions.get(&next.partition) {
            None => {
                if next.partition_epoch != 0 || next.leader_epoch != 0 {
                    return Err(invalid("a new partition starts at epoch 0"));
                }
            }
            Some(current) => {
                if next.partition_epoch != current.partition_epoch.saturating_add(1) {
                    return Err(invalid("partition epoch must advance by one"));
                }
                let leader_changed = next.leader != current.leader;
                let expected = if leader_changed {
                    current.leader_epoch.saturating_add(1)
                } else {
                    current.leader_epoch
                };
                if next.leader_epoch != expected {
                    return Err(invalid(
                        "leader epoch must advance exactly when the leader changes",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::records::Listener;

    pub(crate) fn registration(id: BrokerId, epoch: i64, rack: Option<&str>) -> MetadataRecord {
        MetadataRecord::RegisterBroker(BrokerRegistration {
            id,
            incarnation: Uuid::from_u128(u128::try_from(epoch).unwrap_or(0)),
            epoch,
            rack: rack.map(str::to_string),
            listeners: vec![Listener {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9091 + u16::try_from(id).unwrap_or(0),
            }],
        })
    }

    /// Three live brokers and one topic with one partition led by 1.
    pub(crate) fn three_brokers_one_partition() -> (MetadataImage, Uuid) {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            image.apply(&registration(id, i64::from(id) * 10, None)).unwrap();
            image
                .apply(&MetadataRecord::UnfenceBroker {
                    id,
                    epoch: i64::from(id) * 10,
                })
                .unwrap();
        }
        let topic = Uuid::from_u128(7);
        image
            .apply(&MetadataRecord::CreateTopic {
                name: "orders".into(),
                id: topic,
                configs: BTreeMap::new(),
            })
            .unwrap();
        image
            .apply(&MetadataRecord::Partition(PartitionRecord {
                topic_id: topic,
                partition: 0,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
                adding: vec![],
                removing: vec![],
            }))
            .unwrap();
        (image, topic)
    }

    #[test]
    fn a_broker_that_leads_cannot_be_fenced() {
        let (mut image, _) = three_brokers_one_partition();
        let err = image
            .apply(&MetadataRecord::FenceBroker { id: 1, epoch: 10 })
            .unwrap_err();
        assert_eq!(err, ApplyError::BrokerStillLeads { id: 1, partitions: 1 });
        assert!(image.is_live(1));
        image
            .apply(&MetadataRecord::FenceBroker { id: 2, epoch: 20 })
            .unwrap();
        assert!(!image.is_live(2));
    }

    #[test]
    fn stale_broker_epochs_are_refused() {
        let (mut image, _) = three_brokers_one_partition();
        image.apply(&registration(2, 99, None)).unwrap();
        let err = image
            .apply(&MetadataRecord::UnfenceBroker { id: 2, epoch: 20 })
            .unwrap_err();
        assert!(matches!(err, ApplyError::StaleBrokerEpoch { current: 99, .. }));
    }

    #[test]
    fn partition_changes_must_advance_epochs_and_keep_the_leader_in_the_isr() {
        let (mut image, topic) = three_brokers_one_partition();
        let current = image.partition(topic, 0).unwrap().clone();
        let moved = current.with_leader_and_isr(2, vec![2, 3]);
        let delta = image.apply(&MetadataRecord::Partition(moved.clone())).unwrap();
        assert!(delta.partitions.contains(&(topic, 0)));
        // Replaying the same record is refused: its partition epoch is no longer next.
        assert!(image.apply(&MetadataRecord::Partition(moved.clone())).is_err());
        // A leader outside the ISR is refused.
        let bad = moved.with_leader_and_isr(1, vec![2, 3]);
        assert!(image.apply(&MetadataRecord::Partition(bad)).is_err());
        assert_eq!(image.partition(topic, 0), Some(&moved));
    }

    #[test]
    fn producer_id_blocks_never_overlap() {
        let (mut image, _) = three_brokers_one_partition();
        let block = |first| MetadataRecord::AllocateProducerIds {
            broker: 1,
            first,
            count: 1000,
        };
        image.apply(&block(0)).unwrap();
        assert!(image.apply(&block(999)).is_err());
        image.apply(&block(1000)).unwrap();
        assert_eq!(image.next_producer_id, 2000);
    }

    #[test]
    fn topics_are_found_by_name_and_deleted_by_id() {
        let (mut image, topic) = three_brokers_one_partition();
        assert_eq!(image.topic_by_name("orders").map(|t| t.id), Some(topic));
        let dup = MetadataRecord::CreateTopic {
            name: "orders".into(),
            id: Uuid::from_u128(8),
            configs: BTreeMap::new(),
        };
        assert_eq!(
            image.apply(&dup).unwrap_err(),
            ApplyError::TopicNameTaken("orders".into())
        );
        image.apply(&MetadataRecord::DeleteTopic { id: topic }).unwrap();
        assert!(image.topic_by_name("orders").is_none());
    }
}
