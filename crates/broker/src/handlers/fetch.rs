//! Fetch: read whole batches from each requested partition, waiting up to `max_wait_ms` for
//! `min_bytes` without polling (each partition's high-watermark watch wakes the request).
//!
//! Limits follow Kafka: `partition_max_bytes` per partition and `max_bytes` per response, but
//! the first partition with data always returns at least one whole batch so a consumer can
//! never get stuck behind a batch larger than its limits.
//!
//! Only a partition's leader serves it: elsewhere NOT_LEADER_OR_FOLLOWER, with the leader the
//! metadata names from v12 on. A request carrying another `current_leader_epoch` is fenced
//! (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH).
//!
//! Consumers read up to the high watermark. A follower's fetch (`replica_id` >= 0, or
//! `replica_state` from v15) reads up to the log end, is told where its log diverges
//! (`diverging_epoch`, from its `last_fetched_epoch`), and reports its log end offset to the
//! partition's leader state, which may move the high watermark or ask the controller to add
//! it to the ISR ([`crate::cluster::ClusterView::propose_isr`]).

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset as EpochEndOffsetData, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use sapper_log::{EpochEndOffset, LogError};
use tokio::sync::watch;

use super::str_bytes;
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::errors::log_error_code;
use crate::fetch_session::{FetchPlan, PartitionReport, PlannedPartition};
use crate::partition::ReadBound;
use crate::replica::epochs;
use crate::replica::sink::ReplicaSink;

/// Longest a fetch may wait, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(300);

struct PartitionRead {
    planned: PlannedPartition,
    error_code: i16,
    /// For a follower whose log diverges from ours: the epoch and its end offset here.
    diverging: Option<EpochEndOffset>,
    /// With NOT_LEADER_OR_FOLLOWER: the leader and epoch the metadata names (Fetch v12+).
    current_leader: Option<(i32, i32)>,
    high_watermark: i64,
    log_start_offset: i64,
    records: Bytes,
}

pub async fn handle(broker: &Broker, request: FetchRequest, version: i16) -> FetchResponse {
    let plan = match broker.fetch_sessions.plan(&request) {
        Ok(plan) => plan,
        Err(code) => return FetchResponse::default().with_error_code(code),
    };
    let max_wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0)).min(MAX_WAIT_CAP);
    let deadline = tokio::time::Instant::now() + max_wait;
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let replica = if version >= 15 {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    let follower = (replica >= 0).then_some(replica);
    let max_bytes = if version >= 3 {
        usize::try_from(request.max_bytes).unwrap_or(0)
    } else {
        usize::MAX
    };

    let reads = loop {
        // Subscribe before reading so an append between the read and the wait is not missed.
        let mut watches = subscribe(broker, &plan);
        let reads = read_all(broker, &plan, max_bytes, follower);
        let bytes: usize = reads.iter().map(|r| r.records.len()).sum();
        let has_error = reads.iter().any(|r| r.error_code != 0);
        if bytes >= min_bytes || has_error || watches.is_empty() || tokio::time::Instant::now() >= deadline {
            break reads;
        }
        let woke = tokio::select! {
            () = tokio::time::sleep_until(deadline) => false,
            () = any_changed(&mut watches) => true,
            () = broker.shutdown.cancelled() => false,
        };
        if !woke {
            break read_all(broker, &plan, max_bytes, follower);
        }
    };
    respond(broker, &plan, reads, version)
}

fn subscribe(broker: &Broker, plan: &FetchPlan) -> Vec<watch::Receiver<u64>> {
    plan.partitions
        .iter()
        .filter_map(|p| {
            broker
                .topics
                .get(&p.topic)?
                .partition(p.partition)
                .map(|part| part.watch_changes())
        })
        .collect()
}

async fn any_changed(watches: &mut [watch::Receiver<u64>]) {
    let futures = watches.iter_mut().map(|w| Box::pin(w.changed()));
    // Err means the partition was dropped (topic deleted): also a reason to re-read.
    let _ = futures::future::select_all(futures).await;
}

fn read_all(
    broker: &Broker,
    plan: &FetchPlan,
    max_bytes: usize,
    follower: Option<i32>,
) -> Vec<PartitionRead> {
    let mut total = 0usize;
    plan.partitions
        .iter()
        .map(|planned| {
            let read = read_one(
                broker,
                planned,
                max_bytes.saturating_sub(total),
                total == 0,
                follower,
            );
            total += read.records.len();
            read
        })
        .collect()
}

fn read_one(
    broker: &Broker,
    planned: &PlannedPartition,
    room: usize,
    first_with_data: bool,
    follower: Option<i32>,
) -> PartitionRead {
    let mut read = PartitionRead {
        planned: planned.clone(),
        error_code: 0,
        diverging: None,
        current_leader: None,
        high_watermark: -1,
        log_start_offset: -1,
        records: Bytes::new(),
    };
    let topic = broker.topics.get(&planned.topic);
    let (partition, leader_epoch) =
        match broker
            .cluster
            .led(topic.as_ref(), &planned.topic, planned.partition)
        {
            Ok((partition, epoch)) => (partition.clone(), epoch),
            Err(code) => {
                read.error_code = code;
                if code == ResponseError::NotLeaderOrFollower.code() {
                    read.current_leader = broker
                        .cluster
                        .leader_of(broker, &planned.topic, planned.partition);
                }
                return read;
            }
        };
    if let Err(code) = epochs::check_current_leader_epoch(planned.current_leader_epoch, leader_epoch) {
        read.error_code = code;
        read.current_leader = broker
            .cluster
            .leader_of(broker, &planned.topic, planned.partition);
        return read;
    }
    let offsets = partition.offsets();
    read.high_watermark = offsets.high_watermark;
    read.log_start_offset = offsets.log_start_offset;
    if let Some(replica) = follower {
        let end_of_last_fetched = partition.end_offset_for_epoch(planned.last_fetched_epoch);
        match epochs::diverging_epoch(
            planned.last_fetched_epoch,
            planned.fetch_offset,
            end_of_last_fetched,
            offsets.log_start_offset,
        ) {
            Ok(None) => {}
            Ok(Some(end)) => {
                read.diverging = Some(end);
                return read;
            }
            Err(code) => {
                read.error_code = code;
                return read;
            }
        }
        // The follower has everything below its fetch offset: that may commit records, or
        // make it eligible for the ISR again.
        if planned.fetch_offset <= offsets.log_end_offset && planned.fetch_offset >= offsets.log_start_offset
        {
            let eligible = broker.cluster.eligible_for_isr(replica);
            if let Some(change) =
                partition.record_follower_fetch(replica, planned.fetch_offset, eligible, now_ms())
            {
                broker
                    .cluster
                    .propose_isr(topic.as_ref().map(|t| t.id), &partition, change);
            }
            read.high_watermark = partition.offsets().high_watermark;
        }
    }
    let limit = usize::try_from(planned.max_bytes).unwrap_or(0).min(room);
    if limit == 0 && !first_with_data {
        return read;
    }
    let bound = if follower.is_some() {
        ReadBound::LogEnd
    } else {
        ReadBound::HighWatermark
    };
    match partition.read(planned.fetch_offset, limit, bound) {
        Ok(result) => {
            read.log_start_offset = result.log_start_offset;
            // Only the first partition with data may exceed the limits (one whole batch).
            if first_with_data || result.bytes.len() <= limit {
                read.records = result.bytes;
            }
        }
        Err(e) => {
            if !matches!(e, LogError::OffsetOutOfRange { .. }) {
                tracing::warn!(topic = %planned.topic, partition = planned.partition, error = %e, "fetch read failed");
            }
            read.error_code = log_error_code(&e);
        }
    }
    read
}

fn respond(broker: &Broker, plan: &FetchPlan, reads: Vec<PartitionRead>, version: i16) -> FetchResponse {
    let reports: Vec<PartitionReport> = reads
        .iter()
        .map(|r| PartitionReport {
            topic: r.planned.topic.clone(),
            partition: r.planned.partition,
            has_records: !r.records.is_empty(),
            error_code: r.error_code,
            high_watermark: r.high_watermark,
            log_start_offset: r.log_start_offset,
        })
        .collect();
    let include = broker.fetch_sessions.finish(plan, &reports);
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for (read, keep) in reads.into_iter().zip(include) {
        if !keep {
            continue;
        }
        let mut data = PartitionData::default();
        if let (Some(end), true) = (read.diverging, version >= 12) {
            data = data.with_diverging_epoch(
                EpochEndOffsetData::default()
                    .with_epoch(end.epoch)
                    .with_end_offset(end.end_offset),
            );
        }
        if let (Some((leader, epoch)), true) = (read.current_leader, version >= 12) {
            data = data.with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(epoch),
            );
        }
        let data = data
            .with_partition_index(read.planned.partition)
            .with_error_code(read.error_code)
            .with_high_watermark(read.high_watermark)
            .with_last_stable_offset(read.high_watermark)
            .with_log_start_offset(if version >= 5 { read.log_start_offset } else { -1 })
            .with_aborted_transactions(None)
            .with_preferred_read_replica(BrokerId(-1))
            .with_records(Some(read.records));
        match topics.last_mut() {
            Some(last) if last.topic.0.as_str() == &*read.planned.topic => last.partitions.push(data),
            _ => topics.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(str_bytes(read.planned.topic.to_string())))
                    .with_partitions(vec![data]),
            ),
        }
    }
    FetchResponse::default()
        .with_session_id(plan.session_id)
        .with_responses(topics)
}

pub fn error_response(_request: &FetchRequest, code: i16) -> FetchResponse {
    FetchResponse::default().with_error_code(code)
}
