use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::image::tests::{registration, three_brokers_one_partition};
use crate::image::MetadataImage;
use crate::placement::{assign_replicas, Candidate};

fn apply_all(image: &mut MetadataImage, records: &[MetadataRecord]) {
    for record in records {
        image
            .apply(record)
            .unwrap_or_else(|e| panic!("controller proposed a record the image refuses: {e}: {record:?}"));
    }
}

fn epoch_of(image: &MetadataImage, id: BrokerId) -> i64 {
    image.brokers[&id].registration.epoch
}

#[test]
fn fencing_the_leader_elects_the_next_in_sync_replica() {
    let (mut image, topic) = three_brokers_one_partition();
    let records = fence_broker(&image, 1);
    apply_all(&mut image, &records);
    let p = image.partition(topic, 0).unwrap();
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (2, vec![2, 3], 1));
    assert!(!image.is_live(1));
    assert!(
        fence_broker(&image, 1).is_empty(),
        "fencing twice proposes nothing"
    );
}

#[test]
fn losing_every_in_sync_replica_leaves_the_partition_offline_until_one_returns() {
    let (mut image, topic) = three_brokers_one_partition();
    for id in [1, 2, 3] {
        let records = fence_broker(&image, id);
        apply_all(&mut image, &records);
    }
    let p = image.partition(topic, 0).unwrap().clone();
    assert_eq!((p.leader, p.isr.clone()), (NO_LEADER, vec![3]));
    // Broker 1 comes back, but it is not in sync: it may not lead (clean election).
    apply_all(&mut image, &[registration(1, 100, None)]);
    let records = unfence_broker(&image, 1, 100);
    assert_eq!(records.len(), 1);
    apply_all(&mut image, &records);
    assert_eq!(image.partition(topic, 0).unwrap().leader, NO_LEADER);
    // Broker 3, the last in-sync replica, comes back and leads again.
    apply_all(&mut image, &[registration(3, 101, None)]);
    let records = unfence_broker(&image, 3, 101);
    apply_all(&mut image, &records);
    assert_eq!(image.partition(topic, 0).unwrap().leader, 3);
}

#[test]
fn unclean_election_lets_an_out_of_sync_replica_lead_when_the_topic_allows_it() {
    let (mut image, topic) = three_brokers_one_partition();
    apply_all(
        &mut image,
        &[MetadataRecord::SetTopicConfig {
            id: topic,
            key: UNCLEAN_ELECTION_CONFIG.into(),
            value: Some("true".into()),
        }],
    );
    // ISR shrinks to the leader alone, then the leader dies.
    let shrink = alter_partition(&image, topic, 0, 1, 0, 0, &[1]).unwrap().unwrap();
    apply_all(&mut image, &[shrink]);
    let records = fence_broker(&image, 1);
    apply_all(&mut image, &records);
    let p = image.partition(topic, 0).unwrap();
    assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
}

#[test]
fn preferred_leader_election_moves_leadership_home() {
    let (mut image, topic) = three_brokers_one_partition();
    let records = fence_broker(&image, 1);
    apply_all(&mut image, &records);
    apply_all(&mut image, &[registration(1, 200, None)]);
    let records = unfence_broker(&image, 1, 200);
    apply_all(&mut image, &records);
    assert!(
        preferred_leaders(&image, |_, _| true).is_empty(),
        "1 is not in sync yet"
    );
    let grow = alter_partition(&image, topic, 0, 2, 1, 1, &[2, 3, 1])
        .unwrap()
        .unwrap();
    apply_all(&mut image, &[grow]);
    let records = preferred_leaders(&image, |_, _| true);
    apply_all(&mut image, &records);
    assert_eq!(image.partition(topic, 0).unwrap().leader, 1);
}

#[test]
fn alter_partition_checks_leader_epochs_and_eligibility() {
    let (mut image, topic) = three_brokers_one_partition();
    assert_eq!(
        alter_partition(&image, topic, 0, 2, 0, 0, &[2]),
        Err(AlterPartitionError::NotLeader(2))
    );
    assert!(matches!(
        alter_partition(&image, topic, 0, 1, 3, 0, &[1]),
        Err(AlterPartitionError::FencedLeaderEpoch { .. })
    ));
    assert!(matches!(
        alter_partition(&image, topic, 0, 1, 0, 5, &[1]),
        Err(AlterPartitionError::InvalidUpdateVersion { .. })
    ));
    assert_eq!(
        alter_partition(&image, topic, 0, 1, 0, 0, &[2, 3]),
        Err(AlterPartitionError::InvalidIsr)
    );
    assert_eq!(alter_partition(&image, topic, 0, 1, 0, 0, &[1, 2, 3]), Ok(None));
    let shrink = alter_partition(&image, topic, 0, 1, 0, 0, &[1, 3])
        .unwrap()
        .unwrap();
    apply_all(&mut image, &[shrink]);
    // Broker 2 is fenced while out of the ISR: it cannot rejoin until it is live again.
    let records = fence_broker(&image, 2);
    apply_all(&mut image, &records);
    assert_eq!(
        alter_partition(&image, topic, 0, 1, 0, 1, &[1, 3, 2]),
        Err(AlterPartitionError::IneligibleReplica(2))
    );
    assert_eq!(epoch_of(&image, 2), 20);
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Event {
    Fence(BrokerId),
    Restart(BrokerId),
    CatchUp { partition: usize, broker: BrokerId },
    Preferred,
}

fn event(brokers: i32, partitions: usize) -> impl Strategy<Value = Event> {
    prop_oneof![
        (1..=brokers).prop_map(Event::Fence),
        (1..=brokers).prop_map(Event::Restart),
        (0..partitions, 1..=brokers).prop_map(|(partition, broker)| Event::CatchUp { partition, broker }),
        Just(Event::Preferred),
    ]
}

proptest! {
    /// Any sequence of fences, restarts, ISR growth and preferred elections: every record the
    /// controller proposes applies, the invariants hold, and a partition is offline only when
    /// none of its in-sync replicas is live.
    #[test]
    fn controller_decisions_keep_the_invariants(
        brokers in 3i32..6,
        partitions in 1usize..8,
        events in proptest::collection::vec(event(5, 8), 0..60),
        unclean in any::<bool>(),
    ) {
        let mut image = MetadataImage::default();
        let mut next_epoch = 1i64;
        for id in 1..=brokers {
            image.apply(&registration(id, next_epoch, None)).unwrap();
            image.apply(&MetadataRecord::UnfenceBroker { id, epoch: next_epoch }).unwrap();
            next_epoch += 1;
        }
        let topic = Uuid::from_u128(1);
        let mut configs = BTreeMap::new();
        if unclean {
            configs.insert(UNCLEAN_ELECTION_CONFIG.to_string(), "true".to_string());
        }
        image.apply(&MetadataRecord::CreateTopic { name: "t".into(), id: topic, configs }).unwrap();
        let candidates: Vec<Candidate> = (1..=brokers).map(|id| Candidate { id, rack: None }).collect();
        let assignment = assign_replicas(&candidates, u32::try_from(partitions).unwrap(), 3, 0).unwrap();
        for (index, replicas) in assignment.into_iter().enumerate() {
            image.apply(&MetadataRecord::Partition(PartitionRecord {
                topic_id: topic,
                partition: i32::try_from(index).unwrap(),
                leader: replicas[0],
                isr: replicas.clone(),
                replicas,
                leader_epoch: 0,
                partition_epoch: 0,
                adding: vec![],
                removing: vec![],
            })).unwrap();
        }
        for event in events {
            let records = match event {
                Event::Fence(id) => fence_broker(&image, id),
                Event::Restart(id) if image.brokers.contains_key(&id) && image.brokers[&id].fenced => {
                    image.apply(&registration(id, next_epoch, None)).unwrap();
                    next_epoch += 1;
                    unfence_broker(&image, id, next_epoch - 1)
                }
                Event::Restart(_) => Vec::new(),
                Event::CatchUp { partition, broker } => {
                    let index = i32::try_from(partition % partitions).unwrap();
                    let p = image.partition(topic, index).unwrap().clone();
                    if p.leader == NO_LEADER || p.isr.contains(&broker) || !p.replicas.contains(&broker) {
                        Vec::new()
                    } else {
                        let mut isr = p.isr.clone();
                        isr.push(broker);
                        match alter_partition(&image, topic, index, p.leader, p.leader_epoch, p.partition_epoch, &isr) {
                            Ok(record) => record.into_iter().collect(),
                            Err(AlterPartitionError::IneligibleReplica(b)) => {
                                prop_assert!(!image.is_live(b));
                                Vec::new()
                            }
                            Err(e) => return Err(TestCaseError::fail(format!("unexpected {e}"))),
                        }
                    }
                }
                Event::Preferred => preferred_leaders(&image, |_, _| true),
            };
            for record in &records {
                prop_assert!(image.apply(record).is_ok(), "refused {:?}", record);
            }
            for p in image.partitions() {
                prop_assert!(!p.isr.is_empty());
                prop_assert!(p.isr.iter().all(|b| p.replicas.contains(b)));
                if p.leader == NO_LEADER {
                    if !unclean {
                        prop_assert!(p.isr.iter().all(|&b| !image.is_live(b)), "offline with a live ISR member: {:?}", p);
                    }
                } else {
                    prop_assert!(image.is_live(p.leader) && p.isr.contains(&p.leader));
                }
            }
            for (id, b) in &image.brokers {
                if b.fenced {
                    prop_assert!(image.partitions().all(|p| p.leader != *id));
                }
            }
        }
    }
}
