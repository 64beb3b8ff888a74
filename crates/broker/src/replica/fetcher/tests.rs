//! The fetcher against an in-process fake leader that serves Fetch v12 and
//! OffsetForLeaderEpoch over the wire from real `sapper_log::Log`s, with the leader-side epoch
//! checks of [`crate::replica::epochs`] (the ones the broker's handlers use); and against a
//! real in-process single-node Sapper broker.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset as WireEpochEndOffset, FetchableTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset as WireEnd, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, FetchResponse, OffsetForLeaderEpochResponse};
use parking_lot::RwLock;
use sapper_log::batch::Compression;
use sapper_log::{AppendOptions, KeyedRecord, Log, LogConfig};
use sapper_wire::codec;
use sapper_wire::frame::{FrameReader, DEFAULT_MAX_FRAME_BYTES};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::*;

const FOLLOWER: i32 = 7;

/// What the fake leader serves and what it saw.
#[derive(Default)]
struct LeaderState {
    logs: BTreeMap<(String, i32), Log>,
    leader_epoch: i32,
    /// Close this many new connections at once before serving any.
    refuse: usize,
    /// Answer OffsetForLeaderEpoch with UNDEFINED (so truncation happens on fetch).
    undefined_epochs: bool,
    /// Answer fetches of these partitions with this error.
    fetch_errors: BTreeMap<(String, i32), i16>,
    offset_for_leader_epoch_requests: usize,
    replica_ids: Vec<i32>,
    /// Hold a fetch with nothing to return for its whole `max_wait_ms`, as a broker does
    /// (otherwise 10 ms).
    long_poll: bool,
    /// Fetches that started waiting out their `max_wait_ms`.
    long_polls: usize,
}

pub(crate) struct FakeLeader {
    pub(crate) addr: SocketAddr,
    state: Arc<Mutex<LeaderState>>,
    accepted: Arc<AtomicUsize>,
    pub(crate) stop: CancellationToken,
    _dirs: Vec<TempDir>,
}

impl FakeLeader {
    pub(crate) async fn start(leader_epoch: i32) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(LeaderState {
            leader_epoch,
            ..LeaderState::default()
        }));
        let stop = CancellationToken::new();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, st, acc) = (state.clone(), stop.clone(), accepted.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    r = listener.accept() => match r { Ok((stream, _)) => stream, Err(_) => return },
                    () = st.cancelled() => return,
                };
                acc.fetch_add(1, Ordering::Relaxed);
                {
                    let mut guard = s.lock();
                    if guard.refuse > 0 {
                        guard.refuse -= 1;
                        continue;
                    }
                }
                tokio::spawn(serve(stream, s.clone(), st.clone()));
            }
        });
        Self {
            addr,
            state,
            accepted,
            stop,
            _dirs: Vec::new(),
        }
    }

    pub(crate) fn add_log(&mut self, topic: &str, partition: i32) -> &mut Self {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        self.state.lock().logs.insert((topic.to_string(), partition), log);
        self._dirs.push(dir);
        self
    }

    pub(crate) fn with_log<R>(&self, topic: &str, partition: i32, f: impl FnOnce(&mut Log) -> R) -> R {
        f(self
            .state
            .lock()
            .logs
            .get_mut(&(topic.to_string(), partition))
            .unwrap())
    }
}

impl Drop for FakeLeader {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(stream: tokio::net::TcpStream, state: Arc<Mutex<LeaderState>>, stop: CancellationToken) {
    let (read, mut write) = stream.into_split();
    let mut reader = FrameReader::new(read, DEFAULT_MAX_FRAME_BYTES);
    loop {
        let frame = tokio::select! {
            f = reader.read_frame() => f,
            () = stop.cancelled() => return,
        };
        let Ok(Some(mut frame)) = frame else { return };
        let (api, header) = codec::decode_header(&mut frame).unwrap();
        let version = header.request_api_version;
        let mut out = BytesMut::new();
        let id = header.correlation_id;
        match api {
            ApiKey::ApiVersions => {
                let keys = [
                    (ApiKey::Fetch, 4, 12),
                    (ApiKey::OffsetForLeaderEpoch, 2, 4),
                    (ApiKey::ApiVersions, 0, 3),
                ]
                .into_iter()
                .map(|(k, min, max)| {
                    ApiVersion::default()
                        .with_api_key(k as i16)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect();
                let response = ApiVersionsResponse::default().with_api_keys(keys);
                codec::encode_response(&mut out, api, version, id, &response).unwrap();
            }
            ApiKey::Fetch => {
                let request: FetchRequest = codec::decode_body(api, &mut frame, version).unwrap();
                let (response, empty) = fake_fetch(&mut state.lock(), &request);
                if empty {
                    let wait = {
                        let mut s = state.lock();
                        if s.long_poll {
                            s.long_polls += 1;
                            Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0))
                        } else {
                            // A short long poll: enough to not spin, short enough for quick tests.
                            Duration::from_millis(10)
                        }
                    };
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = stop.cancelled() => return,
                    }
                }
                codec::encode_response(&mut out, api, version, id, &response).unwrap();
            }
            ApiKey::OffsetForLeaderEpoch => {
                let request: OffsetForLeaderEpochRequest =
                    codec::decode_body(api, &mut frame, version).unwrap();
                let response = fake_offset_for_leader_epoch(&mut state.lock(), &request);
                codec::encode_response(&mut out, api, version, id, &response).unwrap();
            }
            other => panic!("fake leader got {other:?}"),
        }
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn fake_fetch(state: &mut LeaderState, request: &FetchRequest) -> (FetchResponse, bool) {
    state.replica_ids.push(request.replica_id.0);
    let mut empty = true;
    let mut topics = Vec::new();
    for t in &request.topics {
        let mut partitions = Vec::new();
        for p in &t.partitions {
            let key = (t.topic.0.to_string(), p.partition);
            let mut data = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_log_start_offset(-1);
            let injected = state.fetch_errors.get(&key).copied();
            match (state.logs.get(&key), injected) {
                (_, Some(code)) => data.error_code = code,
                (None, None) => data.error_code = ResponseError::UnknownTopicOrPartition.code(),
                (Some(log), None) => {
                    data.high_watermark = log.high_watermark();
                    data.log_start_offset = log.log_start_offset();
                    let checked =
                        epochs::check_current_leader_epoch(p.current_leader_epoch, state.leader_epoch)
                            .and_then(|()| {
                                epochs::diverging_epoch(
                                    p.last_fetched_epoch,
                                    p.fetch_offset,
                                    log.end_offset_for_epoch(p.last_fetched_epoch),
                                    log.log_start_offset(),
                                )
                            });
                    match checked {
                        Err(code) => data.error_code = code,
                        Ok(Some(end)) => {
                            data.diverging_epoch = WireEpochEndOffset::default()
                                .with_epoch(end.epoch)
                                .with_end_offset(end.end_offset);
                        }
                        Ok(None) => {
                            let max = usize::try_from(p.partition_max_bytes).unwrap();
                            match log.read(p.fetch_offset, max, log.log_end_offset()) {
                                Ok(read) => {
                                    empty &= read.bytes.is_empty();
                                    data.records = Some(read.bytes);
                                }
                                Err(_) => data.error_code = ResponseError::OffsetOutOfRange.code(),
                            }
                        }
                    }
                }
            }
            if data.error_code != 0 {
                empty = false;
            }
            partitions.push(data);
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions),
        );
    }
    (FetchResponse::default().with_responses(topics), empty)
}

fn fake_offset_for_leader_epoch(
    state: &mut LeaderState,
    request: &OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    state.offset_for_leader_epoch_requests += 1;
    state.replica_ids.push(request.replica_id.0);
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let key = (t.topic.0.to_string(), p.partition);
                    let answer = WireEnd::default().with_partition(p.partition);
                    let Some(log) = state.logs.get(&key) else {
                        return answer.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    if let Err(code) =
                        epochs::check_current_leader_epoch(p.current_leader_epoch, state.leader_epoch)
                    {
                        return answer
                            .with_error_code(code)
                            .with_leader_epoch(-1)
                            .with_end_offset(-1);
                    }
                    let end = if state.undefined_epochs {
                        EpochEndOffset::UNDEFINED
                    } else {
                        log.end_offset_for_epoch(p.leader_epoch)
                    };
                    answer
                        .with_leader_epoch(end.epoch)
                        .with_end_offset(end.end_offset)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

fn batch(records: usize, tag: &str) -> Vec<u8> {
    let values: Vec<String> = (0..records).map(|i| format!("{tag}-{i}")).collect();
    let keyed: Vec<KeyedRecord<'_>> = values
        .iter()
        .map(|v| KeyedRecord {
            key: b"k",
            value: Some(v.as_bytes()),
            // Now: a broker's retention would delete records from 1970 at once.
            timestamp: now_ms(),
        })
        .collect();
    sapper_log::keyed_batch::encode(&keyed, Compression::None).unwrap()
}

/// Appends `batches` batches of 3 records to `log` as leader in `epoch`.
pub(crate) fn write(log: &mut Log, epoch: i32, batches: usize, tag: &str) {
    for i in 0..batches {
        let mut bytes = batch(3, &format!("{tag}{i}"));
        let opts = AppendOptions {
            leader_epoch: epoch,
            now_ms: 1_000,
            log_append_time: false,
        };
        log.append(&mut bytes, &opts).unwrap();
    }
}

pub(crate) fn everything(log: &Log) -> Bytes {
    log.read(log.log_start_offset(), usize::MAX / 2, log.log_end_offset())
        .unwrap()
        .bytes
}

fn epochs_of(log: &Log) -> Vec<(i32, i64)> {
    log.leader_epoch_cache()
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

pub(crate) struct Follower {
    pub(crate) log: Arc<RwLock<Log>>,
    _dir: TempDir,
}

pub(crate) fn follower() -> Follower {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    Follower {
        log: Arc::new(RwLock::new(log)),
        _dir: dir,
    }
}

impl Follower {
    pub(crate) fn sink(&self) -> Arc<dyn ReplicaSink> {
        self.log.clone()
    }
}

pub(crate) fn config() -> FetcherConfig {
    FetcherConfig {
        max_wait: Duration::from_millis(100),
        connect_backoff: Duration::from_millis(10),
        max_connect_backoff: Duration::from_millis(100),
        error_backoff: Duration::from_millis(20),
        ..FetcherConfig::new(FOLLOWER)
    }
}

/// Polls `done` every 10 ms for at most 10 s.
pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub(crate) async fn caught_up(leader: &FakeLeader, topic: &str, partition: i32, f: &Follower) {
    let target = leader.with_log(topic, partition, |l| l.log_end_offset());
    eventually("the follower catches up", || {
        f.log.read().log_end_offset() == target
    })
    .await;
    let (bytes, epochs) = leader.with_log(topic, partition, |l| (everything(l), epochs_of(l)));
    let log = f.log.read();
    assert_eq!(everything(&log), bytes, "follower bytes differ from the leader's");
    assert_eq!(epochs_of(&log), epochs);
}

#[tokio::test]
async fn replicates_batches_verbatim_and_follows_the_high_watermark() {
    let mut leader = FakeLeader::start(1).await;
    leader.add_log("t", 0);
    leader.with_log("t", 0, |l| {
        write(l, 0, 3, "a");
        write(l, 1, 2, "b");
        l.set_high_watermark(12);
    });
    let f = follower();
    let fetcher = ReplicaFetcher::spawn(1, leader.addr, config(), CancellationToken::new());
    assert!(fetcher.add_partition(TopicPartition::new("t", 0), 1, f.sink()));
    assert!(
        !fetcher.add_partition(TopicPartition::new("t", 0), 1, f.sink()),
        "same epoch: no-op"
    );
    caught_up(&leader, "t", 0, &f).await;
    eventually("the high watermark follows", || {
        f.log.read().high_watermark() == 12
    })
    .await;
    // More records and a higher high watermark arrive by the long poll.
    leader.with_log("t", 0, |l| {
        write(l, 1, 4, "c");
        l.set_high_watermark(l.log_end_offset());
    });
    caught_up(&leader, "t", 0, &f).await;
    eventually("the high watermark follows", || {
        f.log.read().high_watermark() == 27
    })
    .await;
    assert_eq!(
        fetcher.status(&TopicPartition::new("t", 0)).unwrap().phase,
        FetchPhase::Fetching
    );
    assert!(leader.state.lock().replica_ids.iter().all(|&id| id == FOLLOWER));
    fetcher.shutdown().await;
}

/// Follower: epoch 0 (shared with the leader), then epoch 1 records it wrote as a short-lived
/// leader that the new leader (epoch 2) never got.
fn diverged(leader: &mut FakeLeader) -> Follower {
    leader.add_log("t", 0);
    let f = follower();
    leader.with_log("t", 0, |l| {
        write(l, 0, 2, "shared");
        f.log.write().append_as_follower(&everything(l), 1_000).unwrap();
        write(l, 2, 3, "new-leader");
        l.set_high_watermark(l.log_end_offset());
    });
    write(&mut f.log.write(), 1, 4, "lost");
    assert_eq!(epochs_of(&f.log.read()), vec![(0, 0), (1, 6)]);
    f
}

#[tokio::test]
async fn truncates_the_divergent_tail_after_a_leader_change() {
    let mut leader = FakeLeader::start(2).await;
    let f = diverged(&mut leader);
    let fetcher = ReplicaFetcher::spawn(1, leader.addr, config(), CancellationToken::new());
    fetcher.add_partition(TopicPartition::new("t", 0), 2, f.sink());
    caught_up(&leader, "t", 0, &f).await;
    assert_eq!(epochs_of(&f.log.read()), vec![(0, 0), (2, 6)]);
    assert!(leader.state.lock().offset_for_leader_epoch_requests >= 1);
    fetcher.shutdown().await;
}

#[tokio::test]
async fn truncates_on_a_diverging_epoch_in_the_fetch_response() {
    let mut leader = FakeLeader::start(2).await;
    let f = diverged(&mut leader);
    // The leader cannot answer OffsetForLeaderEpoch: the fetch's diverging epoch must do it.
    leader.state.lock().undefined_epochs = true;
    let fetcher = ReplicaFetcher::spawn(1, leader.addr, config(), CancellationToken::new());
    fetcher.add_partition(TopicPartition::new("t", 0), 2, f.sink());
    caught_up(&leader, "t", 0, &f).await;
    assert_eq!(epochs_of(&f.log.read()), vec![(0, 0), (2, 6)]);
    fetcher.shutdown().await;
}

#[tokio::test]
async fn a_fenced_partition_stops_until_added_with_the_new_epoch() {
    let mut leader = FakeLeader::start(3).await;
    leader.add_log("t", 0).add_log("t", 1).add_log("u", 0);
    for (t, p) in [("t", 0), ("t", 1), ("u", 0)] {
        leader.with_log(t, p, |l| write(l, 3, 2, "x"));
    }
    let (f0, f1, fu) = (follower(), follower(), follower());
    let fetcher = ReplicaFetcher::spawn(1, leader.addr, config(), CancellationToken::new());
    let t0 = TopicPartition::new("t", 0);
    fetcher.add_partition(t0.clone(), 2, f0.sink());
    fetcher.add_partition(TopicPartition::new("t", 1), 3, f1.sink());
    fetcher.add_partition(TopicPartition::new("u", 0), 3, fu.sink());
    caught_up(&leader, "t", 1, &f1).await;
    caught_up(&leader, "u", 0, &fu).await;
    eventually("t-0 is fenced", || {
        fetcher.status(&t0).is_some_and(|s| s.phase == FetchPhase::Fenced)
    })
    .await;
    assert_eq!(
        fetcher.status(&t0).unwrap().last_error,
        ResponseError::FencedLeaderEpoch.code()
    );
    assert_eq!(f0.log.read().log_end_offset(), 0);
    // The metadata catches up: the same partition at the leader's epoch.
    assert!(fetcher.add_partition(t0, 3, f0.sink()));
    caught_up(&leader, "t", 0, &f0).await;
    fetcher.shutdown().await;
}

#[tokio::test]
async fn fetching_below_the_leaders_log_start_restarts_the_log_there() {
    let mut leader = FakeLeader::start(0).await;
    leader.add_log("t", 0);
    leader.with_log("t", 0, |l| {
        write(l, 0, 6, "old");
        l.set_high_watermark(l.log_end_offset());
        // Inside the third batch ([6, 8]): the follower must start at that batch.
        l.advance_log_start_offset(7).unwrap();
    });
    let f = follower();
    let fetcher = ReplicaFetcher::spawn(1, leader.addr, config(), CancellationToken::new());
    fetcher.add_partition(TopicPartition::new("t", 0), 0, f.sink());
    let target = leader.with_log("t", 0, |l| l.log_end_offset());
    eventually("caught up", || f.log.read().log_end_offset() == target).await;
    let expected = leader.with_log("t", 0, |l| l.read(7, usize::MAX / 2, target).unwrap().bytes);
    {
        let log = f.log.read();
        assert_eq!(log.log_start_offset(), 6);
        assert_eq!(everything(&log), expected);
    }
    fetcher.shutdown().await;
}

#[tokio::test]
async fn retries_partition_errors_and_lost_connections() {
    let mut leader = FakeLeader::start(0).await;
    leader.add_log("t", 0);
    leader.with_log("t", 0, |l| write(l, 0, 3, "a"));
    {
        let mut s = leader.state.lock();
        s.refuse = 3;
        s.fetch_errors
            .insert(("t".into(), 0), ResponseError::NotLeaderOrFollower.code());
    }
    let f = follower();
    let fetcher = ReplicaFetcher::spawn(1, leader.addr, config(), CancellationToken::new());
    let tp = TopicPartition::new("t", 0);
    fetcher.add_partition(tp.clone(), 0, f.sink());
    eventually("the error is seen", || {
        fetcher
            .status(&tp)
            .is_some_and(|s| s.last_error == ResponseError::NotLeaderOrFollower.code())
    })
    .await;
    assert!(
        leader.accepted.load(Ordering::Relaxed) >= 4,
        "refused connections were retried"
    );
    assert_eq!(fetcher.status(&tp).unwrap().phase, FetchPhase::Fetching);
    // The leader learns it leads.
    leader.state.lock().fetch_errors.clear();
    caught_up(&leader, "t", 0, &f).await;
    fetcher.shutdown().await;
}

#[tokio::test]
async fn partitions_are_added_and_removed_at_runtime() {
    let mut leader = FakeLeader::start(0).await;
    leader.add_log("t", 0).add_log("t", 1);
    leader.with_log("t", 0, |l| write(l, 0, 2, "a"));
    let (f0, f1) = (follower(), follower());
    let fetcher = ReplicaFetcher::spawn(1, leader.addr, config(), CancellationToken::new());
    let (t0, t1) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
    fetcher.add_partition(t0.clone(), 0, f0.sink());
    caught_up(&leader, "t", 0, &f0).await;
    assert!(fetcher.remove_partition(&t0));
    assert!(!fetcher.remove_partition(&t0));
    let before = f0.log.read().log_end_offset();
    leader.with_log("t", 0, |l| write(l, 0, 2, "b"));
    leader.with_log("t", 1, |l| write(l, 0, 5, "c"));
    fetcher.add_partition(t1.clone(), 0, f1.sink());
    caught_up(&leader, "t", 1, &f1).await;
    // Several rounds later, the removed partition got nothing.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(f0.log.read().log_end_offset(), before);
    assert_eq!(fetcher.len(), 1);
    assert_eq!(
        fetcher
            .partitions()
            .into_iter()
            .map(|(tp, _)| tp)
            .collect::<Vec<_>>(),
        vec![t1]
    );
    fetcher.shutdown().await;
}

/// A partition added while the fetcher waits in a 5 s long poll starts fetching at once: the
/// poll is abandoned (one new connection), not waited out.
#[tokio::test]
async fn a_partition_added_during_a_long_poll_is_fetched_at_once() {
    let mut leader = FakeLeader::start(0).await;
    leader.add_log("t", 0).add_log("t", 1);
    leader.with_log("t", 1, |l| write(l, 0, 2, "new"));
    leader.state.lock().long_poll = true;
    let long_poll = Duration::from_secs(5);
    let config = FetcherConfig {
        max_wait: long_poll,
        ..config()
    };
    let (f0, f1) = (follower(), follower());
    let fetcher = ReplicaFetcher::spawn(1, leader.addr, config, CancellationToken::new());
    let (t0, t1) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
    fetcher.add_partition(t0.clone(), 0, f0.sink());
    eventually("t-0 is in a long poll", || leader.state.lock().long_polls == 1).await;
    let connections = leader.accepted.load(Ordering::Relaxed);

    let added = Instant::now();
    assert!(fetcher.add_partition(t1.clone(), 0, f1.sink()));
    caught_up(&leader, "t", 1, &f1).await;
    let took = added.elapsed();
    eprintln!("partition added during a {long_poll:?} long poll caught up in {took:?}");
    assert!(
        took < Duration::from_millis(500),
        "took {took:?}: the long poll was waited out"
    );
    assert_eq!(
        leader.accepted.load(Ordering::Relaxed),
        connections + 1,
        "the abandoned poll's connection was replaced once"
    );
    for tp in [&t0, &t1] {
        assert_eq!(fetcher.status(tp).unwrap().phase, FetchPhase::Fetching);
    }
    // Both are in the next long poll; re-adding at the same epoch changes nothing.
    eventually("both partitions long-poll", || {
        leader.state.lock().long_polls >= 2
    })
    .await;
    assert!(!fetcher.add_partition(t1, 0, f1.sink()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(leader.accepted.load(Ordering::Relaxed), connections + 1);
    tokio::time::timeout(Duration::from_secs(1), fetcher.shutdown())
        .await
        .unwrap();
}

#[tokio::test]
async fn shutdown_is_prompt_while_polling_or_reconnecting() {
    let mut leader = FakeLeader::start(0).await;
    leader.add_log("t", 0);
    let f = follower();
    let fetcher = ReplicaFetcher::spawn(1, leader.addr, config(), CancellationToken::new());
    fetcher.add_partition(TopicPartition::new("t", 0), 0, f.sink());
    tokio::time::sleep(Duration::from_millis(50)).await;
    tokio::time::timeout(Duration::from_secs(1), fetcher.shutdown())
        .await
        .unwrap();

    // Nobody listens at this address (the listener was dropped): connect keeps failing.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cancel = CancellationToken::new();
    let fetcher = ReplicaFetcher::spawn(1, addr, config(), cancel.clone());
    let tp = TopicPartition::new("t", 0);
    fetcher.add_partition(tp.clone(), 0, f.sink());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fetcher.status(&tp).unwrap().phase, FetchPhase::Truncating);
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(1), fetcher.shutdown())
        .await
        .unwrap();
}

/// The fetcher against Sapper's own server (single node, in process): Fetch v12 with a
/// replica id and OffsetForLeaderEpoch as the broker serves them, after a leader change that
/// left the follower with records the leader never had.
#[tokio::test]
async fn replicates_from_a_sapper_broker_after_truncating_by_epoch() {
    use crate::cluster::NewTopic;
    use crate::partition::PartitionRole;

    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let broker_config = crate::config::BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..crate::config::BrokerConfig::default()
    };
    let shutdown = CancellationToken::new();
    let broker = crate::Broker::open(broker_config, addr, shutdown.clone()).unwrap();
    let new_topic = NewTopic {
        name: "t".into(),
        partitions: 1,
        replication_factor: 1,
        overrides: crate::topic_config::TopicOverrides::default(),
        validate_only: false,
    };
    broker.cluster.create_topic(&broker, new_topic).await.unwrap();
    let server = tokio::spawn(crate::server::run(broker.clone(), listener));
    let topic = broker.topics.get("t").unwrap();
    let part = topic.partition(0).unwrap().clone();
    let append = |epoch: i32, tag: &str| {
        let mut bytes = batch(2, tag);
        let opts = AppendOptions {
            leader_epoch: epoch,
            now_ms: 1_000,
            log_append_time: false,
        };
        part.append(&mut bytes, &opts).unwrap();
    };
    append(0, "a");
    append(0, "b");
    let f = follower();
    let shared = part
        .read(0, 1 << 20, crate::partition::ReadBound::LogEnd)
        .unwrap()
        .bytes;
    f.log.write().append_as_follower(&shared, 1_000).unwrap();
    write(&mut f.log.write(), 1, 3, "lost"); // offsets 4..12, epoch 1
    part.set_role(PartitionRole::Leader { epoch: 2 });
    append(2, "c");
    append(2, "d");

    let fetcher = ReplicaFetcher::spawn(1, addr, config(), CancellationToken::new());
    fetcher.add_partition(TopicPartition::new("t", 0), 2, f.sink());
    let end = part.offsets().high_watermark;
    eventually("caught up with the broker", || {
        let log = f.log.read();
        log.log_end_offset() == end && log.high_watermark() == end
    })
    .await;
    assert_eq!(
        everything(&f.log.read()),
        part.read(0, 1 << 20, crate::partition::ReadBound::LogEnd)
            .unwrap()
            .bytes
    );
    assert_eq!(epochs_of(&f.log.read()), vec![(0, 0), (2, 4)]);
    fetcher.shutdown().await;
    shutdown.cancel();
    server.await.unwrap();
}

/// A partition delayed by a partition error is retried when its backoff ends, not when the
/// other partitions' long poll does: the round's `max_wait` stops at the retry.
#[tokio::test]
async fn a_delayed_partition_does_not_wait_out_the_others_long_poll() {
    let mut leader = FakeLeader::start(0).await;
    leader.add_log("t", 0).add_log("t", 1);
    leader.with_log("t", 1, |l| write(l, 0, 2, "late"));
    {
        let mut s = leader.state.lock();
        s.long_poll = true;
        s.fetch_errors
            .insert(("t".into(), 1), ResponseError::NotLeaderOrFollower.code());
    }
    let long_poll = Duration::from_secs(5);
    let config = FetcherConfig {
        max_wait: long_poll,
        ..config()
    };
    let (f0, f1) = (follower(), follower());
    let fetcher = ReplicaFetcher::spawn(1, leader.addr, config, CancellationToken::new());
    let (t0, t1) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
    fetcher.add_partition(t0.clone(), 0, f0.sink());
    fetcher.add_partition(t1.clone(), 0, f1.sink());
    eventually("t-1 is refused", || {
        fetcher
            .status(&t1)
            .is_some_and(|s| s.last_error == ResponseError::NotLeaderOrFollower.code())
    })
    .await;
    // The leader learns it leads t-1 while t-0 (nothing to fetch) long-polls.
    let learned = Instant::now();
    leader.state.lock().fetch_errors.clear();
    caught_up(&leader, "t", 1, &f1).await;
    let took = learned.elapsed();
    eprintln!("a delayed partition caught up {took:?} after its error cleared ({long_poll:?} polls)");
    assert!(
        took < Duration::from_secs(1),
        "took {took:?}: the retry waited out the long poll"
    );
    tokio::time::timeout(Duration::from_secs(1), fetcher.shutdown())
        .await
        .unwrap();
}
