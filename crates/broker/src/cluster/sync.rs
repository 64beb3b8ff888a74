//! Following the metadata: makes this broker's local state match each image it receives.
//!
//! For every image the lifecycle publishes (batches are applied there, in order), [`run`]:
//! 1. reconciles the [`crate::topics::TopicRegistry`] with the image: every topic is known with
//!    its topic id and configs; logs are opened for the partitions with a replica on this node
//!    (same on-disk layout as a single node), and deleted for topics gone from the image;
//! 2. sets each local partition's [`PartitionRole`] from the image (leader and leader epoch),
//!    calling [`on_role_change`] for every change;
//! 3. publishes the image as the one handlers answer from ([`ClusterNode::image`]).
//!
//! It reconciles against the whole image rather than the deltas: a change is
//! O(partitions) comparisons, metadata changes are rare, and a lagged or resynced follower
//! needs no special case. A failed reconcile (disk error) is retried every second.
//!
//! Replication plugs in here: a partition becoming `Follower { leader, epoch }` is where the
//! follower fetcher for `leader` starts (truncating by leader epoch first); one becoming
//! `Leader { epoch }` is where it stops and the leader's follower tracking starts
//! ([`Partition::make_leader`]); a leader whose ISR or replicas changed in the same epoch
//! adopts them ([`Partition::update_leader`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sapper_meta::{MetadataImage, PartitionState};

use super::ClusterNode;
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::group::store::{self, OFFSETS_TOPIC};
use crate::partition::{LeaderUpdate, Partition, PartitionRole, NO_LEADER};
use crate::replica::sink::TopicPartition;
use crate::topics::{TopicError, WantedTopic};

const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Applies every metadata change until the broker shuts down.
pub async fn run(broker: Arc<Broker>, node: Arc<ClusterNode>) {
    // Until the controller unfences this broker (it has received the metadata up to its own
    // registration), what it holds may be a prefix of the metadata: the initial empty image,
    // or a catch-up batch. Topics missing from a prefix would look deleted and their local
    // logs would be removed; so nothing is applied before that.
    let mut status = node.status();
    tokio::select! {
        caught_up = status.wait_for(|s| s.epoch.is_some() && !s.fenced) => if caught_up.is_err() { return },
        () = broker.shutdown.cancelled() => return,
    }
    let mut received = node.received();
    loop {
        let image = received.borrow_and_update().image.clone();
        let failed = match apply(&broker, &node, &image).await {
            Ok(()) => false,
            Err(e) => {
                tracing::error!(error = %e, "cannot apply the metadata to local logs; retrying");
                true
            }
        };
        tokio::select! {
            changed = received.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RETRY_AFTER), if failed => {}
            () = broker.shutdown.cancelled() => return,
        }
    }
}

/// The topics of `image` as this broker should hold them.
pub fn wanted_topics(image: &MetadataImage, me: i32) -> Vec<WantedTopic> {
    image
        .topics
        .values()
        .map(|t| WantedTopic {
            name: t.name.clone(),
            id: t.id,
            partition_count: t
                .partitions
                .keys()
                .next_back()
                .map_or(0, |last| last.saturating_add(1)),
            local: t
                .partitions
                .values()
                .filter(|p| p.replicas.contains(&me))
                .map(|p| p.partition)
                .collect(),
            configs: t.configs.clone(),
        })
        .collect()
}

/// This broker's role for a partition in the image.
pub fn role_of(state: &PartitionState, me: i32) -> PartitionRole {
    if state.leader == me {
        PartitionRole::Leader {
            epoch: state.leader_epoch,
        }
    } else {
        PartitionRole::Follower {
            leader: state.leader,
            epoch: state.leader_epoch,
        }
    }
}

async fn apply(
    broker: &Arc<Broker>,
    node: &ClusterNode,
    image: &Arc<MetadataImage>,
) -> Result<(), TopicError> {
    let me = node.node_id();
    let wanted = wanted_topics(image, me);
    // Stop following logs the reconcile is about to delete (topic gone, replica moved away).
    let kept: BTreeSet<TopicPartition> = wanted
        .iter()
        .flat_map(|t| t.local.iter().map(|&p| TopicPartition::new(&t.name, p)))
        .collect();
    for (tp, _, _) in node.fetchers().statuses() {
        if !kept.contains(&tp) {
            node.fetchers().unfollow(&tp);
        }
    }
    broker
        .topics
        .change(move |topics| topics.reconcile(&wanted))
        .await?;
    let mut followed = BTreeSet::new();
    let mut addrs: BTreeMap<i32, Option<SocketAddr>> = BTreeMap::new();
    for topic in image.topics.values() {
        let Some(local) = broker.topics.get(&topic.name) else {
            continue;
        };
        for partition in &local.partitions {
            let Some(state) = topic.partitions.get(&partition.index) else {
                continue;
            };
            let role = role_of(state, me);
            let old = partition.role();
            if let PartitionRole::Leader { epoch } = role {
                let update = LeaderUpdate {
                    leader_id: me,
                    leader_epoch: epoch,
                    partition_epoch: state.partition_epoch,
                    replicas: state.replicas.clone(),
                    isr: state.isr.clone(),
                };
                if old == role {
                    partition.update_leader(update, now_ms());
                    continue;
                }
                // No fetcher appends to the log once `unfollow` returns; then the epoch starts
                // at the log end and the leader state takes over.
                node.fetchers()
                    .unfollow(&TopicPartition::new(&topic.name, partition.index));
                if let Err(e) = partition.make_leader(update, now_ms()) {
                    tracing::error!(topic = %topic.name, partition = partition.index, epoch, error = %e,
                        "cannot start the leader epoch; the partition stays unled here");
                    continue;
                }
                on_role_change(broker, &topic.name, partition, old, role).await;
                continue;
            }
            if let PartitionRole::Follower { leader, epoch } = role {
                if partition.make_follower(leader, epoch) != role {
                    on_role_change(broker, &topic.name, partition, old, role).await;
                }
                let addr = *addrs
                    .entry(leader)
                    .or_insert_with(|| ClusterNode::client_addr(image, leader));
                if let (true, Some(addr)) = (leader != NO_LEADER, addr) {
                    let tp = TopicPartition::new(&topic.name, partition.index);
                    // Idempotent for the same leader, address and epoch.
                    node.fetchers()
                        .follow(tp.clone(), leader, addr, epoch, partition.clone());
                    followed.insert(tp);
                }
            }
        }
    }
    // Partitions no longer followed (leaderless, deleted, or led here now).
    for (tp, _, _) in node.fetchers().statuses() {
        if !followed.contains(&tp) {
            node.fetchers().unfollow(&tp);
        }
    }
    node.fetchers().shutdown_idle().await;
    node.publish(image.clone());
    Ok(())
}

/// One partition's role changed (the log and leader state already follow it): the group
/// coordinator loads or unloads the groups of an offsets partition.
async fn on_role_change(
    broker: &Arc<Broker>,
    topic: &str,
    partition: &Arc<Partition>,
    old: PartitionRole,
    new: PartitionRole,
) {
    tracing::debug!(topic, partition = partition.index, ?old, ?new, "partition role");
    if topic != OFFSETS_TOPIC {
        return;
    }
    match (old.leader_epoch(), new.leader_epoch()) {
        (None, Some(_)) => {
            let replayed = partition.clone();
            let groups =
                tokio::task::spawn_blocking(move || store::replay_partition(&replayed, now_ms())).await;
            match groups {
                Ok(groups) => broker.groups.load_partition(partition.index, groups),
                Err(e) => tracing::error!(partition = partition.index, error = %e, "replaying groups failed"),
            }
        }
        (Some(_), None) => broker.groups.unload_partition(partition.index),
        _ => {}
    }
}
