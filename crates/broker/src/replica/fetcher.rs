//! A follower's fetcher for one source broker (Kafka's `ReplicaFetcherThread`): one task and
//! one connection to the leader, fetching every partition this broker follows there in one
//! Fetch request (v12, `replica_id` = our node id, sessionless), and appending the leader's
//! batches verbatim through a [`ReplicaSink`].
//!
//! Each partition is in one [`FetchPhase`]:
//! - `Truncating` (where a partition starts, and after an out-of-range fetch): the fetcher asks
//!   OffsetForLeaderEpoch for the follower's latest epoch and truncates the log where it
//!   diverges from the leader's ([`epochs::truncation_point`]), possibly in several rounds;
//! - `Fetching`: Fetch from the log end offset with `last_fetched_epoch`, append, follow the
//!   leader's high watermark. A response carrying `diverging_epoch` (the leader saw that our
//!   last epoch ends earlier on its side) truncates at once, without another round trip;
//! - `Fenced`: the leader has a newer leader epoch than ours (FENCED_LEADER_EPOCH). Fetching
//!   stops until the metadata gives the partition again with a new epoch
//!   ([`ReplicaFetcher::add_partition`]);
//! - `Failed`: the local log failed (a storage error). It stays stopped; the broker reports the
//!   log offline.
//!
//! Other partition errors (NOT_LEADER_OR_FOLLOWER, UNKNOWN_LEADER_EPOCH, ... : the leader has
//! not applied the same metadata yet) delay only that partition by `error_backoff` and retry,
//! as Kafka does: waiting for a metadata change instead could wait forever, since the
//! metadata that made us follow may already be the newest. While a partition is delayed, the
//! rounds of the others long-poll only until its retry is due: after a leadership change the
//! leader's acks=all produces may wait on exactly that partition, and while they wait the
//! producer sends nothing new that would end the poll early. Connection failures drop the
//! connection and retry with a doubling backoff.
//!
//! A partition added while a Fetch long-polls the leader (up to `max_wait`, 500 ms) must not
//! wait for that poll to end: the metadata sync adds it when this broker becomes its follower,
//! and until it fetches, the leader's ISR and `acks=all` produces wait on it. So a fetch round
//! is raced against [`ReplicaFetcher::add_partition`]'s wake-up, and an add (a new partition,
//! or a fenced one at a new epoch: the fetcher's generation moved past the round's) abandons
//! the round and its connection. Dropping the connection is required, not a shortcut: the
//! wire [`Client`] has one request in flight and no way to skip its answer, and a Kafka
//! broker answers a connection's requests in order, so a new request on the same connection
//! would still wait behind the long poll. Nothing of the abandoned round was applied (answers
//! are applied only once complete); the next round reconnects at once (one TCP connect and
//! ApiVersions to the leader) and starts with OffsetForLeaderEpoch for the new partition. A
//! shorter `max_wait` while partitions are new would not help a partition added during a poll
//! that already started, and would cost idle round trips. Truncation rounds are not raced:
//! OffsetForLeaderEpoch does not wait.
//!
//! Responses are applied under the fetcher's lock, with a generation check per partition: once
//! [`ReplicaFetcher::remove_partition`] returns, nothing more is appended to that partition's
//! log by this fetcher (the broker removes a partition before it becomes its leader). Lock
//! order: fetcher lock, then the sink's (log) lock; never call the fetcher with a log locked.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;
use sapper_log::{EpochEndOffset, LogError, ReplicaError};
use sapper_wire::client::{Client, ClientError};
use thiserror::Error;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::replica::epochs;
use crate::replica::sink::{append, truncate};
pub use crate::replica::sink::{ReplicaSink, TopicPartition};

/// Where a followed partition stands (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchPhase {
    Truncating,
    Fetching,
    Fenced,
    Failed,
}

/// A followed partition, as [`ReplicaFetcher::status`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionStatus {
    pub phase: FetchPhase,
    /// The leader epoch we follow it at.
    pub leader_epoch: i32,
    /// The Kafka error code of the last failure for this partition (0: none since added).
    pub last_error: i16,
    /// Not fetched before this instant (an error backoff).
    pub retry_at: Option<Instant>,
}

/// How a fetcher fetches. Defaults follow Kafka's replica fetcher settings, with shorter
/// backoffs for fast failover.
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    /// This broker's id (`replica_id` in Fetch and OffsetForLeaderEpoch).
    pub node_id: i32,
    /// `replica.fetch.wait.max.ms` (Kafka: 500 ms).
    pub max_wait: Duration,
    /// `replica.fetch.min.bytes` (Kafka: 1).
    pub min_bytes: i32,
    /// `replica.fetch.response.max.bytes` (Kafka: 10 MiB).
    pub max_bytes: i32,
    /// `replica.fetch.max.bytes`, per partition (Kafka: 1 MiB).
    pub partition_max_bytes: i32,
    /// How long past `max_wait` an answer may take before the connection is dropped.
    pub request_timeout: Duration,
    /// First pause after a connection failure; doubles up to `max_connect_backoff`.
    pub connect_backoff: Duration,
    pub max_connect_backoff: Duration,
    /// `replica.fetch.backoff.ms`: how long a partition waits after a partition error
    /// (Kafka: 1 s; shorter here so a follower finds its new leader quickly).
    pub error_backoff: Duration,
    pub client_id: String,
}

impl FetcherConfig {
    pub fn new(node_id: i32) -> Self {
        Self {
            node_id,
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 10 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(5),
            connect_backoff: Duration::from_millis(50),
            max_connect_backoff: Duration::from_secs(1),
            error_backoff: Duration::from_millis(100),
            client_id: format!("sapper-replica-fetcher-{node_id}"),
        }
    }
}

/// The Fetch version replication uses: the newest with `replica_id` and topic names, and the
/// first with `last_fetched_epoch` / `diverging_epoch`.
pub const FETCH_VERSION: i16 = 12;
/// OffsetForLeaderEpoch versions with `replica_id`.
const OFFSET_FOR_LEADER_EPOCH_VERSIONS: (i16, i16) = (3, 4);

/// Why a round with the leader failed (the connection is dropped and retried).
#[derive(Debug, Error)]
enum RoundError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("fetch failed with error code {0}")]
    TopLevel(i16),
}

struct Entry {
    sink: Arc<dyn ReplicaSink>,
    leader_epoch: i32,
    generation: u64,
    phase: FetchPhase,
    last_error: i16,
    retry_at: Option<Instant>,
}

impl Entry {
    fn status(&self) -> PartitionStatus {
        PartitionStatus {
            phase: self.phase,
            leader_epoch: self.leader_epoch,
            last_error: self.last_error,
            retry_at: self.retry_at,
        }
    }

    fn delay(&mut self, error: i16, backoff: Duration) {
        self.last_error = error;
        self.retry_at = Some(Instant::now() + backoff);
    }

    fn fail(&mut self, tp: &TopicPartition, error: &ReplicaError) {
        tracing::error!(partition = %tp, %error, "replica log failed; no longer fetching it");
        self.phase = FetchPhase::Failed;
        self.last_error = ResponseError::KafkaStorageError.code();
    }
}

#[derive(Default)]
struct Inner {
    partitions: BTreeMap<TopicPartition, Entry>,
    next_generation: u64,
}

struct Shared {
    inner: Mutex<Inner>,
    wake: Notify,
}

/// One partition of a round, as it was when the request was built.
struct Planned {
    tp: TopicPartition,
    generation: u64,
    leader_epoch: i32,
    sink: Arc<dyn ReplicaSink>,
}

#[derive(Default)]
struct Work {
    truncating: Vec<Planned>,
    fetching: Vec<Planned>,
    /// The earliest retry of a delayed partition.
    next_retry: Option<Instant>,
    /// The fetcher's generation when planned: an add after the plan moves it past this.
    generation: u64,
}

impl Shared {
    fn plan(&self, now: Instant) -> Work {
        let inner = self.inner.lock();
        let mut work = Work {
            generation: inner.next_generation,
            ..Work::default()
        };
        for (tp, e) in &inner.partitions {
            if let Some(at) = e.retry_at.filter(|&at| at > now) {
                work.next_retry = Some(work.next_retry.map_or(at, |n| n.min(at)));
                continue;
            }
            let planned = Planned {
                tp: tp.clone(),
                generation: e.generation,
                leader_epoch: e.leader_epoch,
                sink: e.sink.clone(),
            };
            match e.phase {
                FetchPhase::Truncating => work.truncating.push(planned),
                FetchPhase::Fetching => work.fetching.push(planned),
                FetchPhase::Fenced | FetchPhase::Failed => {}
            }
        }
        work
    }

    /// Returns once a partition was added (or re-added at a new epoch) after `generation`.
    async fn added_since(&self, generation: u64) {
        loop {
            // A wake-up between the check and the wait is kept as a permit (`notify_one`).
            let woken = self.wake.notified();
            if self.inner.lock().next_generation > generation {
                return;
            }
            woken.await;
        }
    }
}

/// The fetcher for one leader broker.
pub struct ReplicaFetcher {
    leader_id: i32,
    leader_addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl fmt::Debug for ReplicaFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaFetcher")
            .field("leader_id", &self.leader_id)
            .field("leader_addr", &self.leader_addr)
            .field("partitions", &self.len())
            .finish()
    }
}

impl ReplicaFetcher {
    /// Starts fetching from broker `leader_id` at `leader_addr` (on the current tokio
    /// runtime). It idles until partitions are added; `cancel` (or [`Self::shutdown`]) stops it.
    pub fn spawn(
        leader_id: i32,
        leader_addr: SocketAddr,
        config: FetcherConfig,
        cancel: CancellationToken,
    ) -> Self {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
        });
        let task = Task {
            leader_id,
            leader_addr,
            config,
            shared: shared.clone(),
            cancel: cancel.clone(),
        };
        Self {
            leader_id,
            leader_addr,
            shared,
            cancel,
            task: tokio::spawn(task.run()),
        }
    }

    pub fn leader_id(&self) -> i32 {
        self.leader_id
    }

    pub fn leader_addr(&self) -> SocketAddr {
        self.leader_addr
    }

    /// Follows `tp` at `leader_epoch`, appending through `sink`. It starts with an
    /// OffsetForLeaderEpoch round (truncating what the leader does not have). Adding a
    /// partition already followed at the same epoch changes nothing (returns false); at
    /// another epoch it starts over (a fenced partition fetches again). Either way a fetch in
    /// flight is abandoned so that the partition starts at once (see the module documentation).
    pub fn add_partition(&self, tp: TopicPartition, leader_epoch: i32, sink: Arc<dyn ReplicaSink>) -> bool {
        let mut inner = self.shared.inner.lock();
        if inner
            .partitions
            .get(&tp)
            .is_some_and(|e| e.leader_epoch == leader_epoch && Arc::ptr_eq(&e.sink, &sink))
        {
            return false;
        }
        inner.next_generation += 1;
        let generation = inner.next_generation;
        inner.partitions.insert(
            tp,
            Entry {
                sink,
                leader_epoch,
                generation,
                phase: FetchPhase::Truncating,
                last_error: 0,
                retry_at: None,
            },
        );
        drop(inner);
        self.shared.wake.notify_one();
        true
    }

    /// Stops following `tp`. When this returns, no response in flight will touch its log.
    pub fn remove_partition(&self, tp: &TopicPartition) -> bool {
        self.shared.inner.lock().partitions.remove(tp).is_some()
    }

    pub fn status(&self, tp: &TopicPartition) -> Option<PartitionStatus> {
        self.shared.inner.lock().partitions.get(tp).map(Entry::status)
    }

    /// Every followed partition and where it stands.
    pub fn partitions(&self) -> Vec<(TopicPartition, PartitionStatus)> {
        let inner = self.shared.inner.lock();
        inner
            .partitions
            .iter()
            .map(|(tp, e)| (tp.clone(), e.status()))
            .collect()
    }

    /// Stops following every partition and hands them back (epoch and sink), e.g. to move
    /// them to a fetcher for the leader's new address.
    pub fn take_partitions(&self) -> Vec<(TopicPartition, i32, Arc<dyn ReplicaSink>)> {
        std::mem::take(&mut self.shared.inner.lock().partitions)
            .into_iter()
            .map(|(tp, e)| (tp, e.leader_epoch, e.sink))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.shared.inner.lock().partitions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops the task and waits for it (its connection closes).
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "replica fetcher task ended abnormally");
        }
    }
}

/// A connection to the leader and the versions it serves.
struct Connection {
    client: Client,
    fetch_version: i16,
    ofle_version: i16,
}

struct Task {
    leader_id: i32,
    leader_addr: SocketAddr,
    config: FetcherConfig,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

impl Task {
    async fn run(self) {
        let mut connection: Option<Connection> = None;
        let mut backoff = self.config.connect_backoff;
        while !self.cancel.is_cancelled() {
            let work = self.shared.plan(Instant::now());
            if work.truncating.is_empty() && work.fetching.is_empty() {
                let retry = work.next_retry;
                tokio::select! {
                    () = self.shared.wake.notified() => {}
                    () = sleep_until(retry) => {}
                    () = self.cancel.cancelled() => return,
                }
                continue;
            }
            let conn = match connection.as_mut() {
                Some(conn) => conn,
                None => match self.connect().await {
                    Ok(conn) => connection.insert(conn),
                    Err(e) => {
                        tracing::debug!(leader = self.leader_id, addr = %self.leader_addr, error = %e,
                            "cannot reach the leader; retrying");
                        self.pause(&mut backoff).await;
                        continue;
                    }
                },
            };
            let round = if work.truncating.is_empty() {
                // A delayed partition must not wait out a whole long poll once its backoff ends.
                let max_wait = work.next_retry.map_or(self.config.max_wait, |at| {
                    at.saturating_duration_since(Instant::now())
                        .min(self.config.max_wait)
                });
                tokio::select! {
                    biased;
                    r = self.fetch_round(conn, work.fetching, max_wait) => Some(r),
                    () = self.shared.added_since(work.generation) => None,
                }
            } else {
                Some(self.truncation_round(conn, work.truncating).await)
            };
            match round {
                None => {
                    tracing::debug!(
                        leader = self.leader_id,
                        "partition added during a fetch; abandoning it and reconnecting"
                    );
                    connection = None;
                }
                Some(Ok(())) => backoff = self.config.connect_backoff,
                Some(Err(e)) => {
                    tracing::debug!(leader = self.leader_id, error = %e, "replica fetch failed; reconnecting");
                    connection = None;
                    self.pause(&mut backoff).await;
                }
            }
        }
    }

    async fn pause(&self, backoff: &mut Duration) {
        tokio::select! {
            () = tokio::time::sleep(*backoff) => {}
            () = self.cancel.cancelled() => {}
        }
        *backoff = (*backoff * 2).min(self.config.max_connect_backoff);
    }

    async fn connect(&self) -> Result<Connection, RoundError> {
        let timeout = self.config.request_timeout;
        let (mut client, versions) = tokio::select! {
            r = tokio::time::timeout(timeout, Client::bootstrap(self.leader_addr)) => {
                r.map_err(|_| RoundError::Timeout(timeout))??
            }
            () = self.cancel.cancelled() => return Err(RoundError::Timeout(Duration::ZERO)),
        };
        client.set_client_id(&self.config.client_id);
        let fetch_version = versions.pick::<FetchRequest>(FETCH_VERSION, FETCH_VERSION)?;
        let (min, max) = OFFSET_FOR_LEADER_EPOCH_VERSIONS;
        let ofle_version = versions.pick::<OffsetForLeaderEpochRequest>(min, max)?;
        Ok(Connection {
            client,
            fetch_version,
            ofle_version,
        })
    }

    /// Sends `request`, bounded by `max_wait + request_timeout` and cancellation.
    async fn send<R: kafka_protocol::protocol::Request>(
        &self,
        conn: &mut Connection,
        request: &R,
        version: i16,
    ) -> Result<R::Response, RoundError> {
        let limit = self.config.max_wait + self.config.request_timeout;
        tokio::select! {
            r = tokio::time::timeout(limit, conn.client.send(request, version)) => {
                Ok(r.map_err(|_| RoundError::Timeout(limit))??)
            }
            () = self.cancel.cancelled() => Err(RoundError::Timeout(Duration::ZERO)),
        }
    }

    /// OffsetForLeaderEpoch for the truncating partitions, then truncation.
    async fn truncation_round(&self, conn: &mut Connection, planned: Vec<Planned>) -> Result<(), RoundError> {
        let mut asking: Vec<(Planned, i32)> = Vec::new();
        for p in planned {
            match p.sink.latest_epoch() {
                Some(epoch) => asking.push((p, epoch)),
                None => self.apply(&p, |entry| {
                    // No epochs: the log is empty or predates them; keep what is committed.
                    match truncate(&*p.sink, p.sink.high_watermark()) {
                        Ok(()) => entry.phase = FetchPhase::Fetching,
                        Err(e) => entry.fail(&p.tp, &e),
                    }
                }),
            }
        }
        if asking.is_empty() {
            return Ok(());
        }
        let mut topics: Vec<OffsetForLeaderTopic> = Vec::new();
        for (p, epoch) in &asking {
            let partition = OffsetForLeaderPartition::default()
                .with_partition(p.tp.partition)
                .with_current_leader_epoch(p.leader_epoch)
                .with_leader_epoch(*epoch);
            match topics.last_mut() {
                Some(t) if t.topic.0.as_str() == &*p.tp.topic => t.partitions.push(partition),
                _ => topics.push(
                    OffsetForLeaderTopic::default()
                        .with_topic(topic_name(&p.tp))
                        .with_partitions(vec![partition]),
                ),
            }
        }
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(self.config.node_id))
            .with_topics(topics);
        let version = conn.ofle_version;
        let started = Instant::now();
        let response = self.send(conn, &request, version).await?;
        tracing::trace!(leader = self.leader_id, partitions = asking.len(), took = ?started.elapsed(),
            "truncation round answered");
        let mut answers: BTreeMap<(&str, i32), (i16, EpochEndOffset)> = BTreeMap::new();
        for t in &response.topics {
            for r in &t.partitions {
                answers.insert(
                    (t.topic.0.as_str(), r.partition),
                    (
                        r.error_code,
                        EpochEndOffset {
                            epoch: r.leader_epoch,
                            end_offset: r.end_offset,
                        },
                    ),
                );
            }
        }
        let backoff = self.config.error_backoff;
        for (p, _) in &asking {
            let answer = answers.get(&(&*p.tp.topic, p.tp.partition)).copied();
            self.apply(p, |entry| match answer {
                Some((0, leader)) => {
                    let sink = &*p.sink;
                    let point = epochs::truncation_point(
                        leader,
                        |e| sink.end_offset_for_epoch(e),
                        sink.log_end_offset(),
                    );
                    if point.offset < sink.log_end_offset() {
                        tracing::info!(partition = %p.tp, offset = point.offset, leader_epoch = leader.epoch,
                            leader_end_offset = leader.end_offset, "truncating divergent records");
                    }
                    match truncate(sink, point.offset) {
                        Ok(()) if point.complete => entry.phase = FetchPhase::Fetching,
                        Ok(()) => {}
                        Err(e) => entry.fail(&p.tp, &e),
                    }
                }
                Some((code, _)) if code == ResponseError::FencedLeaderEpoch.code() => fence(entry, &p.tp),
                Some((code, _)) => entry.delay(code, backoff),
                None => entry.delay(ResponseError::UnknownServerError.code(), backoff),
            });
        }
        Ok(())
    }

    /// One Fetch for the fetching partitions (long-polling at most `max_wait`), applied
    /// partition by partition.
    async fn fetch_round(
        &self,
        conn: &mut Connection,
        planned: Vec<Planned>,
        max_wait: Duration,
    ) -> Result<(), RoundError> {
        let mut topics: Vec<FetchTopic> = Vec::new();
        let mut sent: BTreeMap<(Arc<str>, i32), (Planned, i64)> = BTreeMap::new();
        for p in planned {
            let fetch_offset = p.sink.log_end_offset();
            let partition = FetchPartition::default()
                .with_partition(p.tp.partition)
                .with_current_leader_epoch(p.leader_epoch)
                .with_fetch_offset(fetch_offset)
                .with_last_fetched_epoch(p.sink.latest_epoch().unwrap_or(-1))
                .with_log_start_offset(p.sink.log_start_offset())
                .with_partition_max_bytes(self.config.partition_max_bytes);
            match topics.last_mut() {
                Some(t) if t.topic.0.as_str() == &*p.tp.topic => t.partitions.push(partition),
                _ => topics.push(
                    FetchTopic::default()
                        .with_topic(topic_name(&p.tp))
                        .with_partitions(vec![partition]),
                ),
            }
            sent.insert((p.tp.topic.clone(), p.tp.partition), (p, fetch_offset));
        }
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(self.config.node_id))
            .with_max_wait_ms(i32::try_from(max_wait.as_millis()).unwrap_or(i32::MAX))
            .with_min_bytes(self.config.min_bytes)
            .with_max_bytes(self.config.max_bytes)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(topics);
        let version = conn.fetch_version;
        let started = Instant::now();
        tracing::trace!(
            leader = self.leader_id,
            partitions = sent.len(),
            ?max_wait,
            "fetch round sent"
        );
        let response = self.send(conn, &request, version).await?;
        tracing::trace!(leader = self.leader_id, took = ?started.elapsed(),
            with_records = response.responses.iter().flat_map(|t| &t.partitions)
                .filter(|p| p.records.as_ref().is_some_and(|r| !r.is_empty())).count(),
            "fetch round answered");
        if response.error_code != 0 {
            return Err(RoundError::TopLevel(response.error_code));
        }
        let now = now_ms();
        for t in &response.responses {
            for data in &t.partitions {
                let Some((p, fetch_offset)) =
                    sent.get(&(Arc::from(t.topic.0.as_str()), data.partition_index))
                else {
                    continue;
                };
                self.apply(p, |entry| {
                    if entry.phase == FetchPhase::Fetching {
                        self.apply_fetched(entry, p, *fetch_offset, data, now);
                    }
                });
            }
        }
        Ok(())
    }

    /// One partition of a fetch response.
    fn apply_fetched(
        &self,
        entry: &mut Entry,
        p: &Planned,
        fetch_offset: i64,
        data: &PartitionData,
        now: i64,
    ) {
        let sink = &*p.sink;
        if sink.log_end_offset() != fetch_offset {
            // The log moved since the request was built (it cannot while we hold the lock,
            // unless someone else wrote to it): refetch from where it ends.
            return;
        }
        let backoff = self.config.error_backoff;
        match data.error_code {
            0 => {}
            code if code == ResponseError::OffsetOutOfRange.code() => {
                if data.log_start_offset > fetch_offset {
                    // The leader deleted what we would fetch next: start over at its start.
                    tracing::info!(partition = %p.tp, fetch_offset, leader_log_start = data.log_start_offset,
                        "fetch offset below the leader's log start; restarting the log there");
                    if let Err(e) = sink.truncate_fully_and_start_at(data.log_start_offset) {
                        entry.fail(&p.tp, &e);
                    }
                } else {
                    // Past the leader's end (or undecidable): let the epochs decide.
                    entry.phase = FetchPhase::Truncating;
                    entry.delay(code, backoff);
                }
                return;
            }
            code if code == ResponseError::FencedLeaderEpoch.code() => return fence(entry, &p.tp),
            code => {
                tracing::debug!(partition = %p.tp, error = code, "replica fetch partition error; retrying");
                return entry.delay(code, backoff);
            }
        }
        let diverging = &data.diverging_epoch;
        if diverging.epoch >= 0 && diverging.end_offset >= 0 {
            let leader = EpochEndOffset {
                epoch: diverging.epoch,
                end_offset: diverging.end_offset,
            };
            let point = epochs::truncation_point(leader, |e| sink.end_offset_for_epoch(e), fetch_offset);
            tracing::info!(partition = %p.tp, offset = point.offset, leader_epoch = leader.epoch,
                leader_end_offset = leader.end_offset, "leader reported a diverging epoch; truncating");
            if let Err(e) = truncate(sink, point.offset) {
                entry.fail(&p.tp, &e);
            } else if !point.complete {
                entry.phase = FetchPhase::Truncating;
            }
            return;
        }
        if let Some(records) = data.records.as_ref().filter(|r| !r.is_empty()) {
            match append(sink, &p.tp, records, now) {
                Ok(_) => {}
                Err(ReplicaError::Log(LogError::CorruptBatch(e))) => {
                    tracing::warn!(partition = %p.tp, error = %e, "leader sent an invalid batch; retrying");
                    return entry.delay(ResponseError::CorruptMessage.code(), backoff);
                }
                Err(ReplicaError::UnexpectedAppendOffset { .. }) => return,
                Err(e) => return entry.fail(&p.tp, &e),
            }
        }
        if data.high_watermark >= 0 {
            sink.set_high_watermark(data.high_watermark);
        }
        entry.retry_at = None;
    }

    /// Runs `f` on `p`'s entry if it is still the one the round was planned with.
    fn apply(&self, p: &Planned, f: impl FnOnce(&mut Entry)) {
        let mut inner = self.shared.inner.lock();
        if let Some(entry) = inner
            .partitions
            .get_mut(&p.tp)
            .filter(|e| e.generation == p.generation)
        {
            f(entry);
        }
    }
}

fn fence(entry: &mut Entry, tp: &TopicPartition) {
    tracing::info!(partition = %tp, leader_epoch = entry.leader_epoch,
        "the leader has a newer leader epoch; waiting for metadata");
    entry.phase = FetchPhase::Fenced;
    entry.last_error = ResponseError::FencedLeaderEpoch.code();
}

fn topic_name(tp: &TopicPartition) -> TopicName {
    TopicName(StrBytes::from_string(tp.topic.to_string()))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
pub(crate) mod tests;
