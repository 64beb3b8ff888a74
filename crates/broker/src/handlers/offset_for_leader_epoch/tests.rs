//! OffsetForLeaderEpoch on a single-node broker opened in a temporary directory.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderTopic;
use kafka_protocol::messages::TopicName;
use sapper_log::batch::Compression;
use sapper_log::{AppendOptions, KeyedRecord};

use super::*;
use crate::handlers::str_bytes;
use crate::handlers::test_support::broker_with_topic;
use crate::partition::PartitionRole;

fn append(broker: &Broker, partition: i32, epoch: i32, batches: usize) {
    let topic = broker.topics.get("t").unwrap();
    let part = topic.partition(partition).unwrap();
    for _ in 0..batches {
        let record = KeyedRecord {
            key: b"k",
            value: Some(b"v"),
            timestamp: 1,
        };
        let mut bytes = sapper_log::keyed_batch::encode(&[record, record], Compression::None).unwrap();
        let opts = AppendOptions {
            leader_epoch: epoch,
            now_ms: 1,
            log_append_time: false,
        };
        part.append(&mut bytes, &opts).unwrap();
    }
}

fn set_role(broker: &Broker, partition: i32, role: PartitionRole) {
    broker
        .topics
        .get("t")
        .unwrap()
        .partition(partition)
        .unwrap()
        .set_role(role);
}

/// Asks for one partition: (error, epoch, end offset).
async fn ask(broker: &Broker, topic: &str, partition: i32, current: i32, epoch: i32) -> (i16, i32, i64) {
    let request = OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
        .with_topic(TopicName(str_bytes(topic)))
        .with_partitions(vec![OffsetForLeaderPartition::default()
            .with_partition(partition)
            .with_current_leader_epoch(current)
            .with_leader_epoch(epoch)])]);
    let response = handle(broker, request, 4).await;
    let r = &response.topics[0].partitions[0];
    assert_eq!(r.partition, partition);
    (r.error_code, r.leader_epoch, r.end_offset)
}

#[tokio::test]
async fn answers_the_end_of_each_epoch_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path()).await;
    append(&broker, 0, 0, 3); // offsets 0..5 in epoch 0
    assert_eq!(ask(&broker, "t", 0, -1, 0).await, (0, 0, 6));
    assert_eq!(ask(&broker, "t", 0, 0, 0).await, (0, 0, 6));
    assert_eq!(
        ask(&broker, "t", 0, 0, 1).await,
        (0, -1, -1),
        "an epoch above every known one"
    );
    // Leadership moves on (epoch 2), and the new epoch writes from offset 6.
    set_role(&broker, 0, PartitionRole::Leader { epoch: 2 });
    append(&broker, 0, 2, 2);
    assert_eq!(ask(&broker, "t", 0, 2, 0).await, (0, 0, 6));
    assert_eq!(ask(&broker, "t", 0, 2, 1).await, (0, 0, 6));
    assert_eq!(ask(&broker, "t", 0, 2, 2).await, (0, 2, 10));
}

#[tokio::test]
async fn a_leader_knows_its_own_epoch_before_writing_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path()).await;
    // A new single-node partition: nothing written, epoch 0.
    assert_eq!(ask(&broker, "t", 1, 0, 0).await, (0, 0, 0));
    append(&broker, 1, 0, 1);
    set_role(&broker, 1, PartitionRole::Leader { epoch: 5 });
    assert_eq!(ask(&broker, "t", 1, 5, 0).await, (0, 0, 2));
    assert_eq!(ask(&broker, "t", 1, 5, 5).await, (0, 5, 2));
}

#[tokio::test]
async fn a_current_leader_epoch_other_than_ours_is_fenced_or_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path()).await;
    set_role(&broker, 0, PartitionRole::Leader { epoch: 3 });
    let fenced = ResponseError::FencedLeaderEpoch.code();
    let unknown = ResponseError::UnknownLeaderEpoch.code();
    assert_eq!(ask(&broker, "t", 0, 2, 0).await, (fenced, -1, -1));
    assert_eq!(ask(&broker, "t", 0, 4, 0).await, (unknown, -1, -1));
    assert_eq!(ask(&broker, "t", 0, -1, 3).await.0, 0);
}

#[tokio::test]
async fn only_the_leader_answers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path()).await;
    set_role(&broker, 0, PartitionRole::Follower { leader: 2, epoch: 3 });
    let not_leader = ResponseError::NotLeaderOrFollower.code();
    assert_eq!(ask(&broker, "t", 0, 3, 0).await, (not_leader, -1, -1));
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(ask(&broker, "t", 7, -1, 0).await.0, unknown);
    assert_eq!(ask(&broker, "nope", 0, -1, 0).await.0, unknown);
}

#[test]
fn error_response_names_every_partition() {
    let request = OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
        .with_topic(TopicName(str_bytes("t")))
        .with_partitions(vec![
            OffsetForLeaderPartition::default().with_partition(0),
            OffsetForLeaderPartition::default().with_partition(3),
        ])]);
    let response = error_response(&request, 35);
    let parts = &response.topics[0].partitions;
    assert_eq!(
        parts
            .iter()
            .map(|p| (p.partition, p.error_code))
            .collect::<Vec<_>>(),
        vec![(0, 35), (3, 35)]
    );
}
