//! Incremental fetch sessions (KIP-227).
//!
//! A consumer that fetches many partitions can open a session: the first request (epoch 0)
//! lists every partition; later ones (epoch 1, 2, ...) list only partitions whose fetch
//! position changed, plus ones to forget, and responses carry only partitions with news
//! (records, a moved high watermark or log start offset, or an error). Epoch -1 means a
//! sessionless full fetch, which librdkafka uses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::FetchRequest;
use parking_lot::Mutex;

/// Sessions kept at once; the least recently used is evicted beyond this.
pub const MAX_SESSIONS: usize = 1000;

/// A partition a session follows, with what was last sent for it.
#[derive(Debug, Clone)]
struct CachedPartition {
    fetch_offset: i64,
    max_bytes: i32,
    current_leader_epoch: i32,
    last_fetched_epoch: i32,
    last_high_watermark: i64,
    last_log_start_offset: i64,
}

#[derive(Debug)]
struct Session {
    /// The epoch the next request must carry.
    next_epoch: i32,
    /// Insertion-ordered partitions.
    order: Vec<(Arc<str>, i32)>,
    partitions: HashMap<(Arc<str>, i32), CachedPartition>,
    last_used: Instant,
}

/// One partition to read for this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPartition {
    pub topic: Arc<str>,
    pub partition: i32,
    pub fetch_offset: i64,
    pub max_bytes: i32,
    /// The leader epoch the fetcher believes current (-1: unknown, not checked).
    pub current_leader_epoch: i32,
    /// The epoch of the last batch the fetcher has (-1: unknown; followers, Fetch v12+).
    pub last_fetched_epoch: i32,
}

/// What a fetch request asks for, after its session is applied.
#[derive(Debug, Clone)]
pub struct FetchPlan {
    /// Session id to answer with (0 for sessionless).
    pub session_id: i32,
    /// Whether the response may omit partitions without news.
    pub incremental: bool,
    pub partitions: Vec<PlannedPartition>,
}

/// What a response reported for one partition, for deciding what the next incremental
/// response must include.
#[derive(Debug, Clone)]
pub struct PartitionReport {
    pub topic: Arc<str>,
    pub partition: i32,
    pub has_records: bool,
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<i32, Session>,
    next_id: i32,
}

/// All open fetch sessions of this broker.
#[derive(Debug, Default)]
pub struct FetchSessionCache {
    inner: Mutex<Inner>,
}

fn requested(req: &FetchRequest) -> Vec<PlannedPartition> {
    req.topics
        .iter()
        .flat_map(|t| {
            let topic: Arc<str> = Arc::from(t.topic.0.as_str());
            t.partitions.iter().map(move |p| PlannedPartition {
                topic: topic.clone(),
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
                last_fetched_epoch: p.last_fetched_epoch,
            })
        })
        .collect()
}

impl FetchSessionCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `req` to its session (creating, updating or closing one) and returns the
    /// partitions to read, or the top-level Kafka error code.
    pub fn plan(&self, req: &FetchRequest) -> Result<FetchPlan, i16> {
        let mut inner = self.inner.lock();
        let (id, epoch) = (req.session_id, req.session_epoch);
        if epoch == -1 {
            // Sessionless full fetch; an id with epoch -1 closes that session.
            if id != 0 {
                inner.sessions.remove(&id);
            }
            return Ok(FetchPlan {
                session_id: 0,
                incremental: false,
                partitions: requested(req),
            });
        }
        if epoch == 0 {
            if id != 0 {
                inner.sessions.remove(&id);
            }
            let partitions = requested(req);
            let new_id = inner.create(&partitions);
            return Ok(FetchPlan {
                session_id: new_id,
                incremental: false,
                partitions,
            });
        }
        let Some(session) = inner.sessions.get_mut(&id) else {
            return Err(ResponseError::FetchSessionIdNotFound.code());
        };
        if session.next_epoch != epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch.code());
        }
        session.next_epoch = next_epoch(epoch);
        session.last_used = Instant::now();
        for forgotten in &req.forgotten_topics_data {
            let topic: Arc<str> = Arc::from(forgotten.topic.0.as_str());
            for &p in &forgotten.partitions {
                session.partitions.remove(&(topic.clone(), p));
            }
        }
        for p in requested(req) {
            let key = (p.topic.clone(), p.partition);
            match session.partitions.get_mut(&key) {
                Some(cached) => {
                    cached.fetch_offset = p.fetch_offset;
                    cached.max_bytes = p.max_bytes;
                    cached.current_leader_epoch = p.current_leader_epoch;
                    cached.last_fetched_epoch = p.last_fetched_epoch;
                }
                None => {
                    session.order.push(key.clone());
                    session.partitions.insert(key, cached(&p));
                }
            }
        }
        let partitions_map = &session.partitions;
        session.order.retain(|k| partitions_map.contains_key(k));
        let partitions = session
            .order
            .iter()
            .filter_map(|k| {
                session.partitions.get(k).map(|c| PlannedPartition {
                    topic: k.0.clone(),
                    partition: k.1,
                    fetch_offset: c.fetch_offset,
                    max_bytes: c.max_bytes,
                    current_leader_epoch: c.current_leader_epoch,
                    last_fetched_epoch: c.last_fetched_epoch,
                })
            })
            .collect();
        Ok(FetchPlan {
            session_id: id,
            incremental: true,
            partitions,
        })
    }

    /// Records what a response carried and returns, per report, whether it must be included.
    /// Full responses include everything; incremental ones only partitions with news.
    pub fn finish(&self, plan: &FetchPlan, reports: &[PartitionReport]) -> Vec<bool> {
        let mut inner = self.inner.lock();
        let Some(session) = inner.sessions.get_mut(&plan.session_id) else {
            return vec![true; reports.len()];
        };
        reports
            .iter()
            .map(|r| {
                let Some(cached) = session.partitions.get_mut(&(r.topic.clone(), r.partition)) else {
                    return true;
                };
                let news = r.has_records
                    || r.error_code != 0
                    || cached.last_high_watermark != r.high_watermark
                    || cached.last_log_start_offset != r.log_start_offset;
                cached.last_high_watermark = r.high_watermark;
                cached.last_log_start_offset = r.log_start_offset;
                !plan.incremental || news
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn create(&mut self, partitions: &[PlannedPartition]) -> i32 {
        if self.sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| *id)
            {
                self.sessions.remove(&oldest);
            }
        }
        let id = loop {
            self.next_id = if self.next_id == i32::MAX {
                1
            } else {
                self.next_id + 1
            };
            if !self.sessions.contains_key(&self.next_id) {
                break self.next_id;
            }
        };
        let mut session = Session {
            next_epoch: 1,
            order: Vec::new(),
            partitions: HashMap::new(),
            last_used: Instant::now(),
        };
        for p in partitions {
            let key = (p.topic.clone(), p.partition);
            if session.partitions.insert(key.clone(), cached(p)).is_none() {
                session.order.push(key);
            }
        }
        self.sessions.insert(id, session);
        id
    }
}

fn cached(p: &PlannedPartition) -> CachedPartition {
    CachedPartition {
        fetch_offset: p.fetch_offset,
        max_bytes: p.max_bytes,
        current_leader_epoch: p.current_leader_epoch,
        last_fetched_epoch: p.last_fetched_epoch,
        last_high_watermark: -1,
        last_log_start_offset: -1,
    }
}

/// Epochs wrap from i32::MAX to 1, as in Kafka.
fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    fn request(id: i32, epoch: i32, parts: &[(i32, i64)], forget: &[i32]) -> FetchRequest {
        let topic = TopicName(StrBytes::from_static_str("t"));
        FetchRequest::default()
            .with_session_id(id)
            .with_session_epoch(epoch)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic.clone())
                .with_partitions(
                    parts
                        .iter()
                        .map(|&(p, o)| FetchPartition::default().with_partition(p).with_fetch_offset(o))
                        .collect(),
                )])
            .with_forgotten_topics_data(if forget.is_empty() {
                vec![]
            } else {
                vec![ForgottenTopic::default()
                    .with_topic(topic)
                    .with_partitions(forget.to_vec())]
            })
    }

    fn report(p: i32, hw: i64, records: bool) -> PartitionReport {
        PartitionReport {
            topic: Arc::from("t"),
            partition: p,
            has_records: records,
            error_code: 0,
            high_watermark: hw,
            log_start_offset: 0,
        }
    }

    #[test]
    fn full_then_incremental_session() {
        let cache = FetchSessionCache::new();
        let full = cache.plan(&request(0, 0, &[(0, 0), (1, 0)], &[])).unwrap();
        assert!(full.session_id > 0 && !full.incremental);
        assert_eq!(
            cache.finish(&full, &[report(0, 5, true), report(1, 0, false)]),
            vec![true, true]
        );
        // Incremental: only partition 0 moved; partition 1 stays in the session.
        let inc = cache.plan(&request(full.session_id, 1, &[(0, 5)], &[])).unwrap();
        assert_eq!(inc.partitions.len(), 2);
        assert_eq!(inc.partitions[0].fetch_offset, 5);
        assert_eq!(
            cache.finish(&inc, &[report(0, 5, false), report(1, 0, false)]),
            vec![false, false]
        );
        // Forget partition 1.
        let inc2 = cache.plan(&request(full.session_id, 2, &[], &[1])).unwrap();
        assert_eq!(inc2.partitions.len(), 1);
    }

    #[test]
    fn wrong_epoch_and_unknown_session_are_errors() {
        let cache = FetchSessionCache::new();
        let full = cache.plan(&request(0, 0, &[(0, 0)], &[])).unwrap();
        assert_eq!(
            cache.plan(&request(full.session_id, 5, &[], &[])).unwrap_err(),
            ResponseError::InvalidFetchSessionEpoch.code()
        );
        assert_eq!(
            cache.plan(&request(999, 1, &[], &[])).unwrap_err(),
            ResponseError::FetchSessionIdNotFound.code()
        );
    }

    #[test]
    fn sessionless_fetch_creates_nothing() {
        let cache = FetchSessionCache::new();
        let plan = cache.plan(&request(0, -1, &[(0, 0)], &[])).unwrap();
        assert_eq!(plan.session_id, 0);
        assert!(cache.is_empty());
    }
}
