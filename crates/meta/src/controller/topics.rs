//! The controller's topic decisions, as pure functions from the image to the records to
//! propose: create a topic or more partitions (placed by [`assign_replicas`] over the live
//! brokers), delete a topic, change its configs, and elect leaders on request.
//!
//! New partitions start with ISR = replicas, the first replica leading, epochs 0 (Kafka's
//! PartitionRecord at creation).

use std::collections::BTreeMap;

use uuid::Uuid;

use super::api::{ControllerError, Election, ElectionOutcome};
use crate::image::MetadataImage;
use crate::placement::{assign_replicas, Candidate, PlacementError};
use crate::records::{BrokerId, MetadataRecord, PartitionRecord, NO_LEADER};

/// The most partitions a topic may have (keeps a creation batch well inside a log entry).
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

/// Kafka's topic-name rule: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let invalid = |why: &str| Err(ControllerError::InvalidTopic(format!("{name:?}: {why}")));
    if name.is_empty() || name.len() > 249 {
        return invalid("must be 1 to 249 characters");
    }
    if name == "." || name == ".." {
        return invalid("cannot be '.' or '..'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// The live brokers that may receive new replicas (`excluded`: shutting down).
pub fn candidates(image: &MetadataImage, excluded: impl Fn(BrokerId) -> bool) -> Vec<Candidate> {
    image
        .live_brokers()
        .filter(|b| !excluded(b.registration.id))
        .map(|b| Candidate {
            id: b.registration.id,
            rack: b.registration.rack.clone(),
        })
        .collect()
}

fn seed(id: Uuid) -> u64 {
    id.as_u64_pair().0
}

fn placement_error(e: PlacementError) -> ControllerError {
    ControllerError::InvalidReplicationFactor(e.to_string())
}

fn new_partition(topic_id: Uuid, partition: i32, replicas: Vec<BrokerId>) -> PartitionRecord {
    PartitionRecord {
        topic_id,
        partition,
        leader: replicas.first().copied().unwrap_or(NO_LEADER),
        isr: replicas.clone(),
        replicas,
        leader_epoch: 0,
        partition_epoch: 0,
        adding: Vec::new(),
        removing: Vec::new(),
    }
}

/// Records creating topic `name` with id `id`, and its partitions.
pub fn create_topic(
    image: &MetadataImage,
    brokers: &[Candidate],
    id: Uuid,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &BTreeMap<String, String>,
) -> Result<(Vec<MetadataRecord>, Vec<PartitionRecord>), ControllerError> {
    validate_topic_name(name)?;
    if image.topic_ids.contains_key(name) {
        return Err(ControllerError::TopicAlreadyExists(name.to_string()));
    }
    if !(1..=MAX_PARTITIONS_PER_TOPIC).contains(&partitions) {
        return Err(ControllerError::InvalidPartitions(format!(
            "number of partitions must be 1 to {MAX_PARTITIONS_PER_TOPIC}, not {partitions}"
        )));
    }
    let rf = usize::try_from(replication_factor).map_err(|_| {
        ControllerError::InvalidReplicationFactor(format!(
            "replication factor must be at least 1, not {replication_factor}"
        ))
    })?;
    let count = u32::try_from(partitions).unwrap_or(0);
    let assignment = assign_replicas(brokers, count, rf, seed(id)).map_err(placement_error)?;
    let created: Vec<PartitionRecord> = (0..partitions)
        .zip(assignment)
        .map(|(p, replicas)| new_partition(id, p, replicas))
        .collect();
    let mut records = vec![MetadataRecord::CreateTopic {
        name: name.to_string(),
        id,
        configs: configs.clone(),
    }];
    records.extend(created.iter().cloned().map(MetadataRecord::Partition));
    Ok((records, created))
}

/// New partitions that grow `name` to `total`, with the topic's replication factor.
pub fn create_partitions(
    image: &MetadataImage,
    brokers: &[Candidate],
    name: &str,
    total: i32,
) -> Result<Vec<PartitionRecord>, ControllerError> {
    let topic = image
        .topic_by_name(name)
        .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
    let current = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    if total <= current || total > MAX_PARTITIONS_PER_TOPIC {
        return Err(ControllerError::InvalidPartitions(format!(
            "topic {name} has {current} partitions; the new count must be above that and at most {MAX_PARTITIONS_PER_TOPIC}, not {total}"
        )));
    }
    let rf = topic.partitions.values().next().map_or(1, |p| p.replicas.len());
    // The full rotation for `total` partitions, of which the new ones take the tail: new
    // partitions continue the pattern of the existing ones.
    let assignment = assign_replicas(brokers, u32::try_from(total).unwrap_or(0), rf, seed(topic.id))
        .map_err(placement_error)?;
    Ok((current..total)
        .zip(assignment.into_iter().skip(usize::try_from(current).unwrap_or(0)))
        .map(|(p, replicas)| new_partition(topic.id, p, replicas))
        .collect())
}

/// The record deleting `name`.
pub fn delete_topic(image: &MetadataImage, name: &str) -> Result<(Uuid, MetadataRecord), ControllerError> {
    let id = *image
        .topic_ids
        .get(name)
        .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
    Ok((id, MetadataRecord::DeleteTopic { id }))
}

/// Records setting (or removing) config overrides of `name`.
pub fn set_topic_configs(
    image: &MetadataImage,
    name: &str,
    configs: &[(String, Option<String>)],
) -> Result<(Uuid, Vec<MetadataRecord>), ControllerError> {
    let id = *image
        .topic_ids
        .get(name)
        .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
    if configs.iter().any(|(key, _)| key.is_empty()) {
        return Err(ControllerError::InvalidRequest("empty config name".into()));
    }
    let records = configs
        .iter()
        .map(|(key, value)| MetadataRecord::SetTopicConfig {
            id,
            key: key.clone(),
            value: value.clone(),
        })
        .collect();
    Ok((id, records))
}

/// Preferred (first live in-sync replica that is first in replica order) or unclean (any live
/// replica of an offline partition) leader election for the partitions asked (all when
/// `None`), with each partition's outcome.
pub fn elect_leaders(
    image: &MetadataImage,
    preferred: bool,
    partitions: Option<&[(Uuid, i32)]>,
) -> (Vec<MetadataRecord>, Vec<Election>) {
    let wanted: Vec<(Uuid, i32)> = match partitions {
        Some(list) => list.to_vec(),
        None => image.partitions().map(|p| (p.topic_id, p.partition)).collect(),
    };
    let mut records = Vec::new();
    let mut results = Vec::with_capacity(wanted.len());
    for (topic_id, partition) in wanted {
        let outcome = match image.partition(topic_id, partition) {
            None => ElectionOutcome::UnknownPartition,
            Some(p) if preferred => match p.replicas.first() {
                Some(&first) if first == p.leader => ElectionOutcome::NotNeeded,
                Some(&first) if p.isr.contains(&first) && image.is_live(first) => {
                    records.push(MetadataRecord::Partition(
                        p.with_leader_and_isr(first, p.isr.clone()),
                    ));
                    ElectionOutcome::Elected
                }
                _ => ElectionOutcome::PreferredNotAvailable,
            },
            Some(p) if p.leader != NO_LEADER => ElectionOutcome::NotNeeded,
            Some(p) => {
                let in_sync = p
                    .replicas
                    .iter()
                    .copied()
                    .find(|b| p.isr.contains(b) && image.is_live(*b));
                let any = p.replicas.iter().copied().find(|b| image.is_live(*b));
                match (in_sync, any) {
                    (Some(leader), _) => {
                        records.push(MetadataRecord::Partition(
                            p.with_leader_and_isr(leader, p.isr.clone()),
                        ));
                        ElectionOutcome::Elected
                    }
                    (None, Some(leader)) => {
                        records.push(MetadataRecord::Partition(
                            p.with_leader_and_isr(leader, vec![leader]),
                        ));
                        ElectionOutcome::Elected
                    }
                    (None, None) => ElectionOutcome::EligibleNotAvailable,
                }
            }
        };
        results.push(Election {
            topic_id,
            partition,
            outcome,
        });
    }
    (records, results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::election::fence_broker;
    use crate::image::tests::three_brokers_one_partition;

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for r in records {
            image.apply(r).unwrap();
        }
    }

    #[test]
    fn topic_names_follow_kafka() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "a b", "é", &"x".repeat(250)] {
            assert_eq!(validate_topic_name(bad).unwrap_err().kafka_code(), 17, "{bad}");
        }
    }

    #[test]
    fn creating_topics_and_partitions_checks_and_places() {
        let (mut image, _) = three_brokers_one_partition();
        let live = candidates(&image, |_| false);
        let id = Uuid::from_u128(42);
        let none = BTreeMap::new();
        fn code<T>(r: Result<T, ControllerError>) -> i16 {
            r.map(|_| ()).unwrap_err().kafka_code()
        }
        assert_eq!(code(create_topic(&image, &live, id, "orders", 1, 1, &none)), 36);
        assert_eq!(code(create_topic(&image, &live, id, "t", 0, 1, &none)), 37);
        assert_eq!(code(create_topic(&image, &live, id, "t", 1, 4, &none)), 38);
        assert_eq!(code(create_topic(&image, &live, id, "t", 1, 0, &none)), 38);
        let (records, created) = create_topic(&image, &live, id, "t", 6, 2, &none).unwrap();
        apply(&mut image, &records);
        assert_eq!(created.len(), 6);
        assert!(created
            .iter()
            .all(|p| p.isr == p.replicas && p.leader == p.replicas[0]));
        assert_eq!(code(create_partitions(&image, &live, "t", 6)), 37);
        let more = create_partitions(&image, &live, "t", 9).unwrap();
        assert_eq!(
            more.iter().map(|p| p.partition).collect::<Vec<_>>(),
            vec![6, 7, 8]
        );
        assert!(more.iter().all(|p| p.replicas.len() == 2));
        apply(
            &mut image,
            &more
                .into_iter()
                .map(MetadataRecord::Partition)
                .collect::<Vec<_>>(),
        );
        assert_eq!(image.topic_by_name("t").unwrap().partitions.len(), 9);
    }

    #[test]
    fn elections_report_each_partition() {
        let (mut image, topic) = three_brokers_one_partition();
        let (records, results) = elect_leaders(&image, true, None);
        assert!(records.is_empty());
        assert_eq!(results[0].outcome, ElectionOutcome::NotNeeded);
        let records = fence_broker(&image, 1);
        apply(&mut image, &records);
        let unknown = [(topic, 0), (topic, 5)];
        let (_, results) = elect_leaders(&image, true, Some(&unknown));
        let outcomes: Vec<_> = results.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            vec![
                ElectionOutcome::PreferredNotAvailable,
                ElectionOutcome::UnknownPartition
            ]
        );
        // Every in-sync replica gone: unclean election picks the one live replica.
        let records = fence_broker(&image, 2);
        apply(&mut image, &records);
        let records = fence_broker(&image, 3);
        apply(&mut image, &records);
        image
            .apply(&MetadataRecord::UnfenceBroker { id: 1, epoch: 10 })
            .unwrap();
        let (records, results) = elect_leaders(&image, false, None);
        assert_eq!(results[0].outcome, ElectionOutcome::Elected);
        apply(&mut image, &records);
        let p = image.partition(topic, 0).unwrap();
        assert_eq!((p.leader, p.isr.clone()), (1, vec![1]));
    }
}
