//! Producer id allocation for InitProducerId.
//!
//! Ids must never repeat, even across restarts, or a new producer would inherit an old one's
//! sequence state; in a cluster they must not repeat across brokers either, since a partition
//! that fails over keeps its producers' state. [`ProducerIdSource`] is where a broker takes
//! them from:
//!
//! - [`ProducerIdSource::File`], the single-node broker: [`ProducerIdAllocator`] reserves
//!   blocks in the file `meta/producer-ids.json`, which records the end of the reserved block
//!   before any id from it is handed out, so a crash skips at most the unused rest of one block.
//! - [`ProducerIdSource::Controller`], a cluster member: [`BlockAllocator`] takes blocks of
//!   1000 ids from the active controller (`AllocateProducerIds`, committed to the metadata
//!   log, so no two brokers and no two starts of one broker get overlapping blocks). As in
//!   Kafka (KIP-730), the next block is fetched in the background once 90% of the current one
//!   is handed out, so InitProducerId waits for the controller only for the first id after a
//!   start, or when the controller has been unreachable for a whole block.
//!
//! When no block arrives within [`BLOCK_WAIT`], InitProducerId answers
//! COORDINATOR_LOAD_IN_PROGRESS (14), the code Kafka's broker answers while its block is not
//! there yet; librdkafka and the Java client retry it. The unused rest of a broker's block is
//! lost when it stops, as in Kafka.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cluster::ClusterNode;
use crate::durable_file::write_atomically;

const BLOCK_SIZE: i64 = 1000;
/// How long InitProducerId waits for a block from the controller before answering
/// COORDINATOR_LOAD_IN_PROGRESS.
pub const BLOCK_WAIT: Duration = Duration::from_secs(1);
/// Pause between attempts to get a block from the controller.
const FETCH_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How long one background fetch keeps retrying; the next InitProducerId starts another.
const FETCH_BUDGET: Duration = Duration::from_secs(30);

/// Why no producer id could be handed out.
#[derive(Debug, Error)]
pub enum ProducerIdError {
    #[error("cannot reserve producer ids: {0}")]
    Storage(#[from] std::io::Error),
    /// No block from the controller yet (with the last fetch error, if any): retry.
    #[error("no producer id block from the controller yet ({0})")]
    NotReady(String),
}

impl ProducerIdError {
    /// KAFKA_STORAGE_ERROR (56) for the file; COORDINATOR_LOAD_IN_PROGRESS (14), retriable,
    /// while the controller's block has not arrived.
    pub fn kafka_code(&self) -> i16 {
        match self {
            Self::Storage(_) => ResponseError::KafkaStorageError.code(),
            Self::NotReady(_) => ResponseError::CoordinatorLoadInProgress.code(),
        }
    }
}

/// Where this broker's producer ids come from.
#[derive(Debug)]
pub enum ProducerIdSource {
    /// The single-node broker: blocks reserved in a local file.
    File(ProducerIdAllocator),
    /// A cluster member: blocks allocated by the active controller.
    Controller(BlockAllocator<ControllerBlocks>),
}

impl ProducerIdSource {
    /// The single-node source, reserving blocks in `path`.
    pub fn file(path: PathBuf) -> std::io::Result<Self> {
        ProducerIdAllocator::open(path).map(Self::File)
    }

    /// The cluster source: blocks for `node` from the active controller.
    pub fn controller(node: Arc<ClusterNode>) -> Self {
        Self::Controller(BlockAllocator::new(ControllerBlocks { node }))
    }

    /// The next unused producer id.
    pub async fn next_id(&self) -> Result<i64, ProducerIdError> {
        match self {
            Self::File(file) => Ok(file.allocate()?),
            Self::Controller(blocks) => blocks.next_id().await,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Reserved {
    version: u32,
    next_block_start: i64,
}

#[derive(Debug)]
struct State {
    next: i64,
    block_end: i64,
}

/// Hands out unique producer ids.
#[derive(Debug)]
pub struct ProducerIdAllocator {
    path: PathBuf,
    state: Mutex<State>,
}

impl ProducerIdAllocator {
    pub fn open(path: PathBuf) -> std::io::Result<Self> {
        let next = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Reserved>(&bytes)
                .map(|r| r.next_block_start)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(Self {
            path,
            state: Mutex::new(State {
                next,
                block_end: next,
            }),
        })
    }

    /// The next unused producer id.
    pub fn allocate(&self) -> std::io::Result<i64> {
        let mut state = self.state.lock();
        if state.next >= state.block_end {
            let block_end = state.next + BLOCK_SIZE;
            let bytes = serde_json::to_vec(&Reserved {
                version: 1,
                next_block_start: block_end,
            })
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            write_atomically(&self.path, &bytes)?;
            state.block_end = block_end;
        }
        let id = state.next;
        state.next += 1;
        Ok(id)
    }
}

/// The ids `first .. first + count`, this broker's alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdBlock {
    pub first: i64,
    pub count: i64,
}

impl IdBlock {
    fn end(&self) -> i64 {
        self.first.saturating_add(self.count)
    }

    /// Once the next id to hand out is this one, 90% of the block is used: fetch the next.
    fn prefetch_at(&self) -> i64 {
        self.first.saturating_add(self.count.saturating_mul(9) / 10)
    }
}

/// Where a [`BlockAllocator`] gets its blocks (the controller; a fake in tests).
pub trait BlockSource: Send + Sync + 'static {
    /// A new block, never handed to anyone before; an error message when there is none.
    fn fetch_block(&self) -> impl Future<Output = Result<IdBlock, String>> + Send;
}

/// Blocks from the active controller for one cluster member.
#[derive(Debug)]
pub struct ControllerBlocks {
    node: Arc<ClusterNode>,
}

impl BlockSource for ControllerBlocks {
    async fn fetch_block(&self) -> Result<IdBlock, String> {
        let broker = self.node.node_id();
        let epoch = self
            .node
            .broker_epoch()
            .ok_or_else(|| format!("broker {broker} is not registered yet"))?;
        let (first, count) = self
            .node
            .client()
            .allocate_producer_ids(broker, epoch)
            .await
            .map_err(|e| e.to_string())?;
        Ok(IdBlock { first, count })
    }
}

/// Hands out ids from blocks of a [`BlockSource`], fetching the next block ahead of need.
#[derive(Debug)]
pub struct BlockAllocator<S> {
    shared: Arc<Shared<S>>,
    /// How long [`Self::next_id`] waits for a block.
    wait: Duration,
}

#[derive(Debug)]
struct Shared<S> {
    source: S,
    blocks: Mutex<Blocks>,
    /// Bumped each time a block arrives.
    arrived: watch::Sender<u64>,
    retry_pause: Duration,
    fetch_budget: Duration,
}

#[derive(Debug, Default)]
struct Blocks {
    /// The block ids are handed out from, and the next id in it.
    current: Option<(IdBlock, i64)>,
    /// The next block, fetched ahead.
    ahead: Option<IdBlock>,
    /// A fetch task is running (at most one at a time).
    fetching: bool,
    last_error: Option<String>,
}

impl<S: BlockSource> BlockAllocator<S> {
    pub fn new(source: S) -> Self {
        Self::with_timing(source, BLOCK_WAIT, FETCH_RETRY_PAUSE, FETCH_BUDGET)
    }

    fn with_timing(source: S, wait: Duration, retry_pause: Duration, fetch_budget: Duration) -> Self {
        let (arrived, _) = watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                source,
                blocks: Mutex::new(Blocks::default()),
                arrived,
                retry_pause,
                fetch_budget,
            }),
            wait,
        }
    }

    /// The next unused id, waiting (up to the allocator's wait) for a block when there is none.
    pub async fn next_id(&self) -> Result<i64, ProducerIdError> {
        let deadline = Instant::now() + self.wait;
        let mut arrived = self.shared.arrived.subscribe();
        // Each round either hands out an id or waits for a block to arrive; it ends by the
        // deadline.
        loop {
            if let Some(id) = self.take() {
                return Ok(id);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let woke = tokio::time::timeout(remaining, arrived.changed()).await;
            if !matches!(woke, Ok(Ok(()))) {
                let last_error = self.shared.blocks.lock().last_error.clone();
                return Err(ProducerIdError::NotReady(
                    last_error.unwrap_or_else(|| format!("none within {:?}", self.wait)),
                ));
            }
        }
    }

    /// An id from the current block (moving to the block fetched ahead once it is used up),
    /// starting a fetch when the blocks run low; `None` when there is no id now.
    fn take(&self) -> Option<i64> {
        let mut blocks = self.shared.blocks.lock();
        if blocks.current.is_none_or(|(block, next)| next >= block.end()) {
            blocks.current = blocks.ahead.take().map(|block| (block, block.first));
        }
        let taken = blocks.current.as_mut().map(|(_, next)| {
            let id = *next;
            *next += 1;
            id
        });
        let running_low = blocks.ahead.is_none()
            && blocks
                .current
                .is_none_or(|(block, next)| next >= block.prefetch_at());
        if running_low && !blocks.fetching {
            blocks.fetching = true;
            tokio::spawn(fetch(Arc::clone(&self.shared)));
        }
        taken
    }
}

/// Gets one block from the source, retrying until it comes or the fetch budget is spent.
async fn fetch<S: BlockSource>(shared: Arc<Shared<S>>) {
    let give_up_at = Instant::now() + shared.fetch_budget;
    let mut failures = 0u32;
    loop {
        let outcome = shared.source.fetch_block().await.and_then(|block| {
            if block.first >= 0 && block.count > 0 {
                Ok(block)
            } else {
                Err(format!("the controller gave an empty block {block:?}"))
            }
        });
        let done = {
            let mut blocks = shared.blocks.lock();
            match outcome {
                Ok(block) => {
                    blocks.ahead = Some(block);
                    blocks.fetching = false;
                    blocks.last_error = None;
                    true
                }
                Err(error) => {
                    if failures == 0 {
                        tracing::warn!(%error, "no producer id block from the controller; retrying");
                    } else {
                        tracing::debug!(%error, failures, "no producer id block from the controller");
                    }
                    failures = failures.saturating_add(1);
                    blocks.last_error = Some(error);
                    let out_of_time = Instant::now() >= give_up_at;
                    if out_of_time {
                        blocks.fetching = false;
                    }
                    out_of_time
                }
            }
        };
        if done {
            shared.arrived.send_modify(|n| *n = n.wrapping_add(1));
            return;
        }
        tokio::time::sleep(shared.retry_pause).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

    use tokio::sync::Semaphore;

    use super::*;

    #[test]
    fn ids_never_repeat_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("producer-ids.json");
        let a = ProducerIdAllocator::open(path.clone()).unwrap();
        let first: Vec<i64> = (0..3).map(|_| a.allocate().unwrap()).collect();
        drop(a);
        let b = ProducerIdAllocator::open(path).unwrap();
        let next = b.allocate().unwrap();
        assert!(first.iter().all(|&id| id < next));
    }

    #[tokio::test]
    async fn the_file_source_hands_out_increasing_ids() {
        let dir = tempfile::tempdir().unwrap();
        let source = ProducerIdSource::file(dir.path().join("producer-ids.json")).unwrap();
        assert_eq!(source.next_id().await.unwrap(), 0);
        assert_eq!(source.next_id().await.unwrap(), 1);
    }

    /// Consecutive blocks of `size`, each fetch waiting for a permit of `gate`; the first
    /// `fail_first` fetches fail.
    struct FakeController {
        size: i64,
        next_first: AtomicI64,
        calls: AtomicU32,
        fail_first: u32,
        gate: Semaphore,
    }

    impl FakeController {
        fn new(size: i64, permits: usize, fail_first: u32) -> Self {
            Self {
                size,
                next_first: AtomicI64::new(0),
                calls: AtomicU32::new(0),
                fail_first,
                gate: Semaphore::new(permits),
            }
        }
    }

    impl BlockSource for Arc<FakeController> {
        async fn fetch_block(&self) -> Result<IdBlock, String> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            self.gate.acquire().await.unwrap().forget();
            if call < self.fail_first {
                return Err(format!("controller down (call {call})"));
            }
            Ok(IdBlock {
                first: self.next_first.fetch_add(self.size, Ordering::SeqCst),
                count: self.size,
            })
        }
    }

    fn allocator(fake: &Arc<FakeController>, wait: Duration) -> BlockAllocator<Arc<FakeController>> {
        BlockAllocator::with_timing(
            Arc::clone(fake),
            wait,
            Duration::from_millis(5),
            Duration::from_secs(5),
        )
    }

    /// Polls `done` every 5 ms for up to 2 s.
    async fn eventually(what: &str, done: impl Fn() -> bool) {
        for _ in 0..400 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("not within 2 s: {what}");
    }

    #[tokio::test]
    async fn the_next_block_is_fetched_once_90_percent_is_used() {
        let fake = Arc::new(FakeController::new(10, 100, 0));
        let ids = allocator(&fake, Duration::from_secs(2));
        let mut handed = Vec::new();
        for _ in 0..8 {
            handed.push(ids.next_id().await.unwrap());
        }
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1, "no prefetch below 90%");
        handed.push(ids.next_id().await.unwrap());
        eventually("prefetch after 90% of the block", || {
            ids.shared.blocks.lock().ahead.is_some()
        })
        .await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        // The second block is there before the first one runs out: no caller waits.
        let no_wait = BlockAllocator {
            shared: Arc::clone(&ids.shared),
            wait: Duration::ZERO,
        };
        for _ in 0..6 {
            handed.push(no_wait.next_id().await.unwrap());
        }
        assert_eq!(handed, (0..15).collect::<Vec<_>>());
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_exhausted_block_waits_then_answers_load_in_progress() {
        // One permit: the first block comes, the prefetch of the second hangs.
        let fake = Arc::new(FakeController::new(2, 1, 0));
        let ids = allocator(&fake, Duration::from_millis(100));
        assert_eq!(ids.next_id().await.unwrap(), 0);
        assert_eq!(ids.next_id().await.unwrap(), 1);
        let started = Instant::now();
        let error = ids.next_id().await.unwrap_err();
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "waited for the block"
        );
        assert_eq!(error.kafka_code(), 14, "{error}");
        assert!(matches!(error, ProducerIdError::NotReady(_)));
        // Waiting callers do not start more fetches.
        assert!(ids.next_id().await.is_err());
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        // The controller answers: the waiting caller gets the next block's first id.
        let waiter = {
            let ids = BlockAllocator {
                shared: Arc::clone(&ids.shared),
                wait: Duration::from_secs(2),
            };
            tokio::spawn(async move { ids.next_id().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        fake.gate.add_permits(10);
        assert_eq!(waiter.await.unwrap().unwrap(), 2);
        assert_eq!(ids.next_id().await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_failing_controller_is_retried() {
        let fake = Arc::new(FakeController::new(1000, 100, 3));
        let ids = allocator(&fake, Duration::from_secs(2));
        assert_eq!(ids.next_id().await.unwrap(), 0);
        assert_eq!(fake.calls.load(Ordering::SeqCst), 4);
        assert!(ids.shared.blocks.lock().last_error.is_none());
    }

    #[tokio::test]
    async fn an_unreachable_controller_reports_its_error() {
        let fake = Arc::new(FakeController::new(1000, 100, u32::MAX));
        let ids = allocator(&fake, Duration::from_millis(50));
        let error = ids.next_id().await.unwrap_err();
        assert_eq!(error.kafka_code(), 14);
        assert!(error.to_string().contains("controller down"), "{error}");
    }

    struct EmptyBlocks;

    impl BlockSource for EmptyBlocks {
        async fn fetch_block(&self) -> Result<IdBlock, String> {
            Ok(IdBlock { first: 5, count: 0 })
        }
    }

    #[tokio::test]
    async fn an_empty_block_is_refused() {
        let ids = BlockAllocator::with_timing(
            EmptyBlocks,
            Duration::from_millis(50),
            Duration::from_millis(5),
            Duration::from_secs(1),
        );
        let error = ids.next_id().await.unwrap_err();
        assert!(error.to_string().contains("empty block"), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_id_is_handed_out_twice_under_concurrency() {
        const TASKS: usize = 8;
        const PER_TASK: usize = 500;
        // Small blocks: many block changes and prefetches while tasks race.
        let fake = Arc::new(FakeController::new(7, usize::MAX >> 4, 0));
        let ids = Arc::new(allocator(&fake, Duration::from_secs(5)));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let ids = Arc::clone(&ids);
                tokio::spawn(async move {
                    let mut mine = Vec::with_capacity(PER_TASK);
                    for _ in 0..PER_TASK {
                        mine.push(ids.next_id().await.unwrap());
                    }
                    mine
                })
            })
            .collect();
        let mut all = BTreeSet::new();
        let mut count = 0;
        for task in tasks {
            let mine = task.await.unwrap();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "each caller sees increasing ids"
            );
            count += mine.len();
            all.extend(mine);
        }
        assert_eq!(count, TASKS * PER_TASK);
        assert_eq!(all.len(), count, "an id was handed out twice");
        // Only ids of fetched blocks, and every fetched block but the last two used up.
        let fetched = i64::from(fake.calls.load(Ordering::SeqCst)) * 7;
        assert!(all.iter().all(|id| (0..fetched).contains(id)));
        assert!(fetched - (count as i64) < 2 * 7, "fetched {fetched} for {count}");
    }
}
