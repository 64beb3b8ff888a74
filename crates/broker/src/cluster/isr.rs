//! ISR changes a partition leader asks the controller for (Kafka's `AlterPartition`, API 56,
//! sent over the controller listener), and the periodic check that drops followers which
//! stopped keeping up (Kafka's `isr-expiration` task).
//!
//! The decisions are the leader state's ([`crate::replica::leader_state`]): a follower fetch
//! may propose adding it back, [`expire_lagging_replicas`] proposes removing the ones lagging
//! longer than `replica.lag.time.max.ms`. One change per partition is in flight at a time;
//! the controller fences it by leader and partition epoch, and the partition adopts the ISR
//! the controller answers with. A change the controller refused stops counting for the high
//! watermark at once; a refused or unanswered one is forgotten after [`RETRY_AFTER`], so the
//! next fetch or check may propose again without a request storm.

use std::sync::Arc;
use std::time::Duration;

use sapper_meta::lifecycle::ClientError;
use uuid::Uuid;

use super::ClusterNode;
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::partition::Partition;
use crate::replica::leader_state::{IsrChange, DEFAULT_REPLICA_LAG_TIME_MAX_MS};

/// How long a failed change blocks the next proposal for the partition.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// How often leaders look for lagging followers: a quarter of the lag time, so a dead
/// follower leaves the ISR within 1.25x `replica.lag.time.max.ms`.
const CHECK_EVERY: Duration = Duration::from_millis(DEFAULT_REPLICA_LAG_TIME_MAX_MS.unsigned_abs() / 4);

/// Sends `change` for partition `partition` of topic `topic_id` in the background.
pub(super) fn propose(node: Arc<ClusterNode>, topic_id: Uuid, partition: Arc<Partition>, change: IsrChange) {
    tokio::spawn(async move {
        let leader_epoch = change.leader_epoch;
        let result = match node.broker_epoch() {
            Some(broker_epoch) => node
                .client()
                .alter_partition(
                    node.node_id(),
                    broker_epoch,
                    topic_id,
                    partition.index,
                    leader_epoch,
                    change.partition_epoch,
                    change.isr.clone(),
                )
                .await
                .map_err(|e| {
                    // Only an answer from the controller says the change was not made.
                    let refused = matches!(e, ClientError::Controller(_));
                    (e.to_string(), refused)
                }),
            None => Err(("not registered".to_string(), true)),
        };
        match result {
            Ok(record) => {
                tracing::info!(partition = partition.index, %topic_id, isr = ?record.isr,
                    partition_epoch = record.partition_epoch, "ISR changed");
                partition.isr_change_committed(leader_epoch, record.isr, record.partition_epoch, now_ms());
            }
            Err((error, refused)) => {
                tracing::debug!(partition = partition.index, %topic_id, isr = ?change.isr, %error,
                    refused, "ISR change not made; may propose again");
                // A refused member stops counting for the high watermark now (e.g. a broker in
                // controlled shutdown: it stops fetching when it exits); the next proposal
                // waits. An unanswered change may have been made: it keeps counting until
                // the retry delay is over, as before.
                if refused {
                    partition.isr_change_refused(leader_epoch);
                }
                tokio::time::sleep(RETRY_AFTER).await;
                partition.isr_change_failed(leader_epoch);
            }
        }
    });
}

/// Every [`CHECK_EVERY`], proposes dropping lagging followers from the ISR of every
/// partition led here, until the broker shuts down.
pub(super) async fn expire_lagging_replicas(broker: Arc<Broker>, node: Arc<ClusterNode>) {
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = broker.shutdown.cancelled() => return,
        }
        let now = now_ms();
        for topic in broker.topics.list() {
            for partition in &topic.partitions {
                if let Some(change) = partition.maybe_shrink_isr(now) {
                    tracing::info!(topic = %topic.name, partition = partition.index, isr = ?change.isr,
                        "followers lagging; shrinking the ISR");
                    propose(node.clone(), topic.id, partition.clone(), change);
                }
            }
        }
    }
}
