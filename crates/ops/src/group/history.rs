//! `sapper group history GROUP [--topic T] [--at TIME]`: every commit of a group, read from
//! the internal topic `__sapper_offset_history` with plain ListOffsets and Fetch requests.
//!
//! The broker appends one record per accepted commit to the partition
//! `sapper_broker::group::store::partition_for(group)`, in the format of
//! `sapper_broker::group::records` (both reused here, never restated). The reader fetches
//! that one partition from its log start to the end offset it saw when it started, so the
//! output is in commit order, oldest first. With `--at`, it keeps per partition the last
//! commit at or before that moment: the offsets a reset to that moment needs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use sapper_broker::group::records::{decode_history_value, HistoryRecord};
use sapper_broker::group::store::{partition_for, HISTORY_TOPIC};
use serde::Serialize;

use crate::cluster::Cluster;
use crate::error::OpsError;
use crate::offsets::{self, EARLIEST, LATEST};
use crate::table::Table;
use crate::time::format_time;
use crate::Report;

/// Bytes asked for per Fetch at first; doubled (up to [`MAX_FETCH_BYTES`]) when one batch does
/// not fit.
const FETCH_BYTES: i32 = 1 << 20;
const MAX_FETCH_BYTES: i32 = 64 << 20;
/// Bounds on reading one partition.
const MAX_FETCHES: u32 = 100_000;
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Record batch v2: the bytes before `batch_length` counts, and the header's full size.
const BATCH_LENGTH_PREFIX: usize = 12;
const BATCH_HEADER_BYTES: usize = 61;

/// One commit as the coordinator accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Commit {
    /// RFC 3339, UTC.
    pub commit_time: String,
    pub commit_time_ms: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub metadata: String,
}

impl From<HistoryRecord> for Commit {
    fn from(r: HistoryRecord) -> Self {
        Commit {
            commit_time: format_time(r.commit_time_ms),
            commit_time_ms: r.commit_time_ms,
            topic: r.topic,
            partition: r.partition,
            offset: r.offset,
            metadata: r.metadata,
        }
    }
}

/// A group's commits: all of them oldest first, or with `at`, the last per partition at or
/// before it (sorted by topic and partition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct History {
    pub group_id: String,
    pub topic: Option<String>,
    pub at: Option<String>,
    pub at_ms: Option<i64>,
    pub commits: Vec<Commit>,
}

impl Report for History {
    fn text(&self) -> String {
        let mut out = String::new();
        if let Some(at) = &self.at {
            out.push_str(&format!(
                "Offsets of group {} at {at} (the last commit at or before it, per partition)\n\n",
                self.group_id
            ));
        }
        let mut table = Table::new(&["COMMIT TIME", "TOPIC", "PARTITION", "OFFSET", "METADATA"]);
        for c in &self.commits {
            table.row(vec![
                c.commit_time.clone(),
                c.topic.clone(),
                c.partition.to_string(),
                c.offset.to_string(),
                c.metadata.clone(),
            ]);
        }
        out.push_str(&table.render());
        out
    }
}

/// Per (topic, partition), the last of `commits` (in commit order) made at or before `at_ms`.
pub fn commits_at(commits: &[Commit], at_ms: i64) -> Vec<Commit> {
    let mut last: BTreeMap<(&str, i32), &Commit> = BTreeMap::new();
    for c in commits.iter().filter(|c| c.commit_time_ms <= at_ms) {
        last.insert((c.topic.as_str(), c.partition), c);
    }
    last.into_values().cloned().collect()
}

pub async fn run(
    cluster: &mut Cluster,
    group: &str,
    topic: Option<&str>,
    at_ms: Option<i64>,
) -> Result<History, OpsError> {
    let records = read_group_history(cluster, group).await?;
    if records.is_empty() {
        return Err(OpsError::NoHistory(group.to_string()));
    }
    let commits: Vec<Commit> = records
        .into_iter()
        .filter(|r| topic.is_none_or(|t| r.topic == t))
        .map(Commit::from)
        .collect();
    let commits = match at_ms {
        Some(at) => commits_at(&commits, at),
        None => commits,
    };
    Ok(History {
        group_id: group.to_string(),
        topic: topic.map(str::to_string),
        at: at_ms.map(format_time),
        at_ms,
        commits,
    })
}

/// Every history record of `group`, in log order.
async fn read_group_history(cluster: &mut Cluster, group: &str) -> Result<Vec<HistoryRecord>, OpsError> {
    let partition = partition_for(group);
    let tp = (HISTORY_TOPIC.to_string(), partition);
    let wanted = BTreeSet::from([tp.clone()]);
    let offset_of = |map: &BTreeMap<(String, i32), Result<i64, i16>>| match map.get(&tp) {
        Some(Ok(offset)) => Ok(*offset),
        Some(Err(code)) => Err(OpsError::Kafka {
            api: format!("ListOffsets on {HISTORY_TOPIC}-{partition}"),
            code: *code,
        }),
        None => Err(OpsError::Kafka {
            api: format!("ListOffsets on {HISTORY_TOPIC}-{partition}"),
            code: ResponseError::UnknownTopicOrPartition.code(),
        }),
    };
    let start = offset_of(&offsets::list_offsets(cluster, &wanted, EARLIEST).await?)?;
    let end = offset_of(&offsets::list_offsets(cluster, &wanted, LATEST).await?)?;
    // list_offsets just refreshed Metadata for the topic, so the leader is known.
    let metadata = cluster.metadata(Some(&[HISTORY_TOPIC.to_string()])).await?;
    let leader = metadata
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition)
        .and_then(|p| cluster.broker_addr(p.leader_id.0))
        .ok_or_else(|| OpsError::Kafka {
            api: format!("Metadata for {HISTORY_TOPIC}-{partition}"),
            code: ResponseError::LeaderNotAvailable.code(),
        })?;

    let mut out = Vec::new();
    let mut offset = start;
    let mut max_bytes = FETCH_BYTES;
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut fetches = 0u32;
    while offset < end {
        fetches += 1;
        if fetches > MAX_FETCHES || Instant::now() > deadline {
            return Err(OpsError::Request {
                api: "Fetch".into(),
                addr: leader,
                reason: format!("reading {HISTORY_TOPIC}-{partition} stopped at offset {offset} of {end}"),
            });
        }
        let records = fetch(cluster, &leader, partition, offset, max_bytes).await?;
        let batches = complete_batches(records.clone());
        if batches.is_empty() {
            if records.is_empty() || max_bytes >= MAX_FETCH_BYTES {
                // Nothing more to read below `end` (the log moved under us): stop here.
                break;
            }
            max_bytes = max_bytes.saturating_mul(2).min(MAX_FETCH_BYTES);
            continue;
        }
        for (mut batch, next) in batches {
            let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| OpsError::Malformed {
                what: format!("record batch in {HISTORY_TOPIC}-{partition} before offset {next}"),
                reason: e.to_string(),
            })?;
            for record in set.records {
                if record.offset < offset || record.offset >= end {
                    continue;
                }
                let Some(value) = record.value else { continue };
                // A record of a format this tool does not know is not a commit it can show.
                if let Ok(r) = decode_history_value(value) {
                    if r.group == group {
                        out.push(r);
                    }
                }
            }
            offset = offset.max(next);
        }
    }
    Ok(out)
}

/// One sessionless Fetch of `partition` from `offset`: the raw record bytes.
async fn fetch(
    cluster: &mut Cluster,
    leader: &str,
    partition: i32,
    offset: i64,
    max_bytes: i32,
) -> Result<Bytes, OpsError> {
    let (_, response) = cluster
        .call(leader, 4, 12, |_| {
            FetchRequest::default()
                .with_max_wait_ms(100)
                .with_min_bytes(1)
                .with_max_bytes(max_bytes)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str(HISTORY_TOPIC)))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(max_bytes)])])
        })
        .await?;
    if response.error_code != 0 {
        return Err(OpsError::Kafka {
            api: "Fetch".into(),
            code: response.error_code,
        });
    }
    let data = response
        .responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| OpsError::Malformed {
            what: "Fetch response".into(),
            reason: format!("no data for {HISTORY_TOPIC}-{partition}"),
        })?;
    if data.error_code != 0 {
        return Err(OpsError::Kafka {
            api: format!("Fetch of {HISTORY_TOPIC}-{partition}"),
            code: data.error_code,
        });
    }
    Ok(data.records.unwrap_or_default())
}

/// The complete record batches at the front of `bytes`, each with the offset after its last
/// record. A batch cut short at the end (Fetch may return one) is left out.
fn complete_batches(mut bytes: Bytes) -> Vec<(Bytes, i64)> {
    let mut out = Vec::new();
    loop {
        let mut header = bytes.clone();
        let (Ok(base_offset), Ok(length)) = (header.try_get_i64(), header.try_get_i32()) else {
            break;
        };
        let Ok(length) = usize::try_from(length) else {
            break;
        };
        let total = BATCH_LENGTH_PREFIX.saturating_add(length);
        if total < BATCH_HEADER_BYTES || total > bytes.len() {
            break;
        }
        // partition_leader_epoch (4), magic (1), crc (4), attributes (2), last_offset_delta.
        let (Ok(_), Ok(_), Ok(_), Ok(_), Ok(last_offset_delta)) = (
            header.try_get_i32(),
            header.try_get_i8(),
            header.try_get_u32(),
            header.try_get_i16(),
            header.try_get_i32(),
        ) else {
            break;
        };
        let batch = bytes.split_to(total);
        out.push((batch, base_offset + i64::from(last_offset_delta) + 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn batch(base: i64, values: &[&str]) -> Bytes {
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: base + i as i64,
                // The encoder starts a new batch when offset - sequence changes.
                sequence: (base + i as i64) as i32,
                timestamp: 0,
                key: None,
                value: Some(Bytes::from(v.to_string())),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    }

    fn commit(ms: i64, topic: &str, partition: i32, offset: i64) -> Commit {
        Commit::from(HistoryRecord {
            group: "g".into(),
            topic: topic.into(),
            partition,
            commit_time_ms: ms,
            offset,
            metadata: String::new(),
        })
    }

    #[test]
    fn complete_batches_skip_a_truncated_tail() {
        let first = batch(10, &["a", "b", "c"]);
        let second = batch(13, &["d"]);
        let mut bytes = BytesMut::new();
        bytes.extend_from_slice(&first);
        bytes.extend_from_slice(&second);
        let whole = bytes.clone().freeze();
        let found = complete_batches(whole.clone());
        assert_eq!(
            found.iter().map(|(_, next)| *next).collect::<Vec<_>>(),
            vec![13, 14]
        );
        assert_eq!(found[0].0, first);
        let cut = whole.slice(..whole.len() - 3);
        assert_eq!(complete_batches(cut).len(), 1);
        assert!(complete_batches(Bytes::from_static(&[0, 0, 0])).is_empty());
        assert!(complete_batches(Bytes::new()).is_empty());
    }

    #[test]
    fn at_picks_the_last_commit_per_partition_at_or_before() {
        let commits = vec![
            commit(1_000, "t", 0, 3),
            commit(1_000, "t", 1, 4),
            commit(2_000, "t", 0, 5),
            commit(5_000, "t", 0, 7),
            commit(5_000, "t", 1, 9),
            commit(6_000, "u", 0, 1),
        ];
        let offsets = |at| {
            commits_at(&commits, at)
                .iter()
                .map(|c| (c.topic.clone(), c.partition, c.offset))
                .collect::<Vec<_>>()
        };
        assert_eq!(offsets(999), vec![]);
        assert_eq!(offsets(1_000), vec![("t".into(), 0, 3), ("t".into(), 1, 4)]);
        assert_eq!(offsets(4_999), vec![("t".into(), 0, 5), ("t".into(), 1, 4)]);
        assert_eq!(
            offsets(i64::MAX),
            vec![("t".into(), 0, 7), ("t".into(), 1, 9), ("u".into(), 0, 1)]
        );
    }

    #[test]
    fn text_lists_commits_with_utc_times() {
        let h = History {
            group_id: "g".into(),
            topic: None,
            at: Some(format_time(1_795_600_800_000)),
            at_ms: Some(1_795_600_800_000),
            commits: vec![commit(1_795_600_800_000, "t", 0, 3)],
        };
        assert_eq!(
            h.text(),
            "Offsets of group g at 2026-11-25T10:00:00.000Z (the last commit at or before it, per partition)\n\n\
             COMMIT TIME               TOPIC  PARTITION  OFFSET  METADATA\n\
             2026-11-25T10:00:00.000Z  t      0          3\n"
        );
    }
}
