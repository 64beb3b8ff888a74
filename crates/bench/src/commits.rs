//! The offset-commit benchmark: how many commits a broker accepts per second when many groups
//! commit at once, next to a produce baseline measured in the same run with as many clients.
//!
//! Each group is one librdkafka consumer on its own thread that never joins its group: it
//! commits explicit offsets (generation -1, no member id, which Kafka accepts for groups
//! without members) and has one commit in flight at a time, the way a consumer committing
//! synchronously after each batch does. Nothing is assigned, so no fetches compete with the
//! commits. The baseline replaces each group by a producer sending one record per acks=1
//! produce request, one in flight at a time. A commit is one append to `__consumer_offsets`
//! plus one to `__sapper_offset_history` on Sapper, so the ratio of the two rates says what
//! the coordinator's bookkeeping costs over a plain append.
//!
//! Both phases start every client first (the first commit finds the coordinator, the first
//! record fetches metadata), then open a common start gate, run for `--duration-secs`, and
//! count only what was answered in that window.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::args::CommitsArgs;
use crate::client::{
    client_config, ensure_topic, error_to_tracing, log_to_tracing, remaining, topic_partitions,
    TracingContext,
};
use crate::latency::LatencyRecorder;
use crate::produce::payload;
use crate::report::{rates, BaselineReport, CommitsReport};

/// Pause between two tries of a client's first request while the broker is not ready.
const SETUP_RETRY: Duration = Duration::from_millis(200);

/// How long the coordinator waits past the deadline for workers to report.
const REPORT_GRACE: Duration = Duration::from_secs(2);

/// Runs the commit benchmark and, unless `--no-baseline`, its produce baseline.
///
/// Errors only when a phase cannot start (bad configuration, topic unusable, a client that
/// never gets its first answer); failures and a hit deadline during the timed window are in
/// the report.
pub async fn run_commits(args: &CommitsArgs) -> anyhow::Result<CommitsReport> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut topics = vec![(&args.topic, args.partitions)];
    if !args.no_baseline {
        topics.push((&args.baseline_topic, args.baseline_partitions));
    }
    for (topic, partitions) in topics {
        if let Err(err) = ensure_topic(&args.bootstrap, &args.properties, topic, partitions, deadline).await {
            tracing::warn!("{err:#}; trying the topic as it is");
        }
    }
    let args = args.clone();
    tokio::task::spawn_blocking(move || commits_blocking(&args, deadline))
        .await
        .context("the benchmark thread panicked")?
}

/// The blocking body of [`run_commits`].
fn commits_blocking(args: &CommitsArgs, deadline: Instant) -> anyhow::Result<CommitsReport> {
    let partitions = Arc::new(partitions_of(args, &args.topic, deadline)?);
    let duration = Duration::from_secs(args.duration_secs);
    let commits = {
        let args = Arc::new(args.clone());
        let partitions = Arc::clone(&partitions);
        run_phase("commit", args.groups, deadline, duration, move |i, gate, tx| {
            commit_worker(&args, &partitions, i, &gate, &tx, deadline);
        })?
    };
    let per_commit = partitions.len();
    let offsets = commits.answered.saturating_mul(per_commit as u64);
    let (commits_per_sec, _) = rates(commits.answered, 0, commits.elapsed);
    let (offsets_per_sec, _) = rates(offsets, 0, commits.elapsed);

    let baseline = if args.no_baseline || Instant::now() >= deadline {
        None
    } else {
        Some(run_baseline(args, deadline, duration)?)
    };
    let ratio = baseline
        .as_ref()
        .filter(|b| b.requests_per_sec > 0.0)
        .map(|b| commits_per_sec / b.requests_per_sec);
    let timed_out = commits.timed_out || (!args.no_baseline && baseline.is_none());
    Ok(CommitsReport {
        topic: args.topic.clone(),
        groups: args.groups,
        partitions_per_commit: per_commit,
        commits: commits.answered,
        offsets,
        errors: commits.errors,
        elapsed_secs: commits.elapsed.as_secs_f64(),
        commits_per_sec,
        offsets_per_sec,
        latency_ms: commits.latency.summary(),
        baseline,
        commits_to_produce_ratio: ratio,
        timed_out,
        first_error: commits.first_error,
    })
}

/// The produce baseline: as many producers as groups, one single-record request in flight each.
fn run_baseline(args: &CommitsArgs, deadline: Instant, duration: Duration) -> anyhow::Result<BaselineReport> {
    let partitions = Arc::new(partitions_of(args, &args.baseline_topic, deadline)?);
    let phase = {
        let args = Arc::new(args.clone());
        let partitions = Arc::clone(&partitions);
        run_phase("produce", args.groups, deadline, duration, move |i, gate, tx| {
            produce_worker(&args, &partitions, i, &gate, &tx, deadline);
        })?
    };
    let (requests_per_sec, _) = rates(phase.answered, 0, phase.elapsed);
    Ok(BaselineReport {
        topic: args.baseline_topic.clone(),
        partitions: partitions.len(),
        producers: args.groups,
        record_size: args.record_size,
        requests: phase.answered,
        errors: phase.errors,
        elapsed_secs: phase.elapsed.as_secs_f64(),
        requests_per_sec,
        latency_ms: phase.latency.summary(),
        first_error: phase.first_error,
    })
}

/// The partition ids of `topic`, looked up once for all workers.
fn partitions_of(args: &CommitsArgs, topic: &str, deadline: Instant) -> anyhow::Result<Vec<i32>> {
    let client: BaseConsumer<TracingContext> = client_config(&args.bootstrap, &[], &args.properties)
        .create_with_context(TracingContext)
        .context("creating the metadata client")?;
    topic_partitions(client.client(), topic, deadline)
}

/// Lets every worker start its timed loop at the same moment, once all are ready.
#[derive(Debug, Default)]
struct StartGate {
    state: Mutex<Gate>,
    opened: Condvar,
}

#[derive(Debug, Clone, Copy, Default)]
enum Gate {
    #[default]
    Closed,
    /// Run from `start` and send nothing new after `until`.
    Open {
        start: Instant,
        until: Instant,
    },
    Aborted,
}

impl StartGate {
    fn set(&self, gate: Gate) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = gate;
        self.opened.notify_all();
    }

    /// Waits for the gate to open; `None` if it was aborted or `deadline` passed first.
    fn wait(&self, deadline: Instant) -> Option<(Instant, Instant)> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match *state {
                Gate::Open { start, until } => return Some((start, until)),
                Gate::Aborted => return None,
                Gate::Closed => {}
            }
            let wait = remaining(deadline);
            if wait.is_zero() {
                return None;
            }
            state = self
                .opened
                .wait_timeout(state, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// What one worker did in the timed window.
#[derive(Debug, Default)]
struct Tally {
    answered: u64,
    errors: u64,
    latency: LatencyRecorder,
    first_error: Option<String>,
    last_answer: Option<Instant>,
    /// An answer was still missing at the deadline.
    timed_out: bool,
}

impl Tally {
    fn failed(&mut self, error: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.answered += other.answered;
        self.errors += other.errors;
        self.latency.merge(&other.latency);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.last_answer = self.last_answer.max(other.last_answer);
        self.timed_out |= other.timed_out;
    }
}

/// A worker's messages to the phase coordinator.
#[derive(Debug)]
enum Report {
    Ready,
    SetupFailed(String),
    Done(Tally),
}

/// The merged outcome of one phase.
#[derive(Debug)]
struct Phase {
    answered: u64,
    errors: u64,
    latency: LatencyRecorder,
    first_error: Option<String>,
    elapsed: Duration,
    timed_out: bool,
}

/// Runs `workers` threads of `work`, opens the start gate once all are ready, and merges
/// their tallies. Every worker must send `Ready` or `SetupFailed`, then (unless failed)
/// `Done`, and bound its own waits by `deadline`.
fn run_phase<F>(
    name: &str,
    workers: u32,
    deadline: Instant,
    duration: Duration,
    work: F,
) -> anyhow::Result<Phase>
where
    F: Fn(u32, Arc<StartGate>, mpsc::Sender<(u32, Report)>) + Send + Sync + 'static,
{
    let gate = Arc::new(StartGate::default());
    let work = Arc::new(work);
    let (tx, rx) = mpsc::channel();
    let mut handles: Vec<Option<JoinHandle<()>>> = Vec::new();
    for i in 0..workers {
        let (worker_gate, work, tx) = (Arc::clone(&gate), Arc::clone(&work), tx.clone());
        let handle = std::thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || work(i, worker_gate, tx));
        match handle {
            Ok(h) => handles.push(Some(h)),
            Err(err) => {
                gate.set(Gate::Aborted);
                bail!("starting {name} worker {i}: {err}");
            }
        }
    }
    drop(tx);

    let mut ready = 0;
    while ready < workers {
        match rx.recv_timeout(remaining(deadline)) {
            Ok((_, Report::Ready)) => ready += 1,
            Ok((i, Report::SetupFailed(err))) => {
                gate.set(Gate::Aborted);
                bail!("{name} client {i} could not start: {err}");
            }
            Ok((_, Report::Done(_))) => {}
            Err(_) => {
                gate.set(Gate::Aborted);
                bail!("only {ready} of {workers} {name} clients were ready before the deadline");
            }
        }
    }
    let start = Instant::now();
    let until = (start + duration).min(deadline);
    gate.set(Gate::Open { start, until });

    let mut total = Tally::default();
    let mut done = 0;
    while done < workers {
        match rx.recv_timeout(remaining(deadline + REPORT_GRACE)) {
            Ok((i, Report::Done(tally))) => {
                done += 1;
                total.merge(tally);
                // The worker sent its last message; joining waits only for it to return.
                if let Some(handle) = handles.get_mut(i as usize).and_then(Option::take) {
                    if handle.join().is_err() {
                        total.failed(format!("{name} worker {i} panicked"));
                    }
                }
            }
            Ok(_) => {}
            Err(_) => {
                // Stragglers stay detached; their waits are bounded by the deadline anyway.
                total.timed_out = true;
                total.failed(format!("{} {name} workers did not finish", workers - done));
                break;
            }
        }
    }
    let elapsed = total
        .last_answer
        .map_or(Duration::ZERO, |last| last.saturating_duration_since(start));
    Ok(Phase {
        answered: total.answered,
        errors: total.errors,
        latency: total.latency,
        first_error: total.first_error,
        elapsed,
        timed_out: total.timed_out,
    })
}

/// Why a request has no success to count.
enum Unanswered {
    Failed(String),
    Deadline,
}

/// Commits `offsets` and waits for the answer.
///
/// The commit is synchronous because librdkafka reports the outcome of a manual asynchronous
/// commit only to an `offset_commit_cb`, which the Rust binding does not install. Once a
/// coordinator is known the wait is bounded by the client's request timeout
/// (`socket.timeout.ms`, set to end by the run's deadline); the phase coordinator stops
/// waiting for a worker at the deadline regardless.
fn commit_once(consumer: &BaseConsumer<TracingContext>, offsets: &TopicPartitionList) -> Result<(), String> {
    consumer
        .commit(offsets, CommitMode::Sync)
        .map_err(|e| e.to_string())
}

/// A request timeout that ends by the run's deadline (librdkafka's minimum is 10 ms).
fn request_timeout_ms(deadline: Instant) -> String {
    remaining(deadline).as_millis().clamp(10, 300_000).to_string()
}

/// One offset per partition, all at `offset`.
fn offsets_at(topic: &str, partitions: &[i32], offset: i64) -> anyhow::Result<TopicPartitionList> {
    let mut list = TopicPartitionList::with_capacity(partitions.len());
    for &p in partitions {
        list.add_partition_offset(topic, p, Offset::Offset(offset))
            .with_context(|| format!("building the offsets of {topic}/{p}"))?;
    }
    Ok(list)
}

/// One group: set up, commit once, wait for the gate, then commit until the window closes.
fn commit_worker(
    args: &CommitsArgs,
    partitions: &[i32],
    index: u32,
    gate: &StartGate,
    tx: &mpsc::Sender<(u32, Report)>,
    deadline: Instant,
) {
    let group = format!("sapper-bench-commits-{}-{index}", std::process::id());
    let defaults = [
        ("group.id", group),
        ("enable.auto.commit", "false".to_owned()),
        ("enable.auto.offset.store", "false".to_owned()),
        ("socket.timeout.ms", request_timeout_ms(deadline)),
    ];
    let consumer: BaseConsumer<TracingContext> =
        match client_config(&args.bootstrap, &defaults, &args.properties).create_with_context(TracingContext)
        {
            Ok(c) => c,
            Err(err) => {
                let _ = tx.send((
                    index,
                    Report::SetupFailed(format!("creating the consumer: {err}")),
                ));
                return;
            }
        };
    let mut offset: i64 = 0;
    let next = |offset: &mut i64| {
        *offset += 1;
        offsets_at(&args.topic, partitions, *offset)
    };

    // The first commit looks the coordinator up; retry until the broker answers it.
    loop {
        let result = next(&mut offset).map_err(|e| format!("{e:#}"));
        match result.and_then(|list| commit_once(&consumer, &list)) {
            Ok(()) => break,
            Err(err) if !remaining(deadline).is_zero() => {
                tracing::debug!(index, "first commit failed, retrying: {err}");
                std::thread::sleep(SETUP_RETRY.min(remaining(deadline)));
            }
            Err(err) => {
                let _ = tx.send((index, Report::SetupFailed(format!("first commit: {err}"))));
                return;
            }
        }
    }
    let _ = tx.send((index, Report::Ready));

    let mut tally = Tally::default();
    if let Some((_, until)) = gate.wait(deadline) {
        let mut sent = 0;
        while sent < args.max_requests && Instant::now() < until {
            let list = match next(&mut offset) {
                Ok(list) => list,
                Err(err) => {
                    tally.failed(format!("{err:#}"));
                    break;
                }
            };
            sent += 1;
            let asked = Instant::now();
            match commit_once(&consumer, &list) {
                Ok(()) => {
                    let now = Instant::now();
                    tally.answered += 1;
                    tally.latency.record(now - asked);
                    tally.last_answer = Some(now);
                }
                Err(err) => tally.failed(err),
            }
        }
    }
    // Close the client before reporting so that closing never overlaps the next phase.
    drop(consumer);
    let _ = tx.send((index, Report::Done(tally)));
}

/// Producer context that hands the one record in flight's delivery report to the sender.
#[derive(Debug, Default)]
struct BaselineContext {
    answer: Mutex<Option<Result<(), String>>>,
    delivered: Condvar,
}

impl BaselineContext {
    /// Waits for the delivery report, at most until `deadline`.
    fn wait(&self, deadline: Instant) -> Result<(), Unanswered> {
        let mut answer = self.answer.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(result) = answer.take() {
                return result.map_err(Unanswered::Failed);
            }
            let wait = remaining(deadline);
            if wait.is_zero() {
                return Err(Unanswered::Deadline);
            }
            answer = self
                .delivered
                .wait_timeout(answer, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl ClientContext for BaselineContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_to_tracing(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        error_to_tracing(&error, reason);
    }
}

impl ProducerContext for BaselineContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let answer = result.as_ref().map(|_| ()).map_err(|(e, _)| e.to_string());
        *self.answer.lock().unwrap_or_else(PoisonError::into_inner) = Some(answer);
        self.delivered.notify_all();
    }
}

/// Sends one record and waits for its delivery report.
fn produce_once(
    producer: &ThreadedProducer<BaselineContext>,
    topic: &str,
    partition: i32,
    payload: &[u8],
    deadline: Instant,
) -> Result<(), Unanswered> {
    let record: BaseRecord<'_, (), [u8], ()> = BaseRecord::to(topic).partition(partition).payload(payload);
    producer
        .send(record)
        .map_err(|(e, _)| Unanswered::Failed(e.to_string()))?;
    producer.context().wait(deadline)
}

/// One baseline producer: set up, send once, wait for the gate, then send until the window
/// closes.
fn produce_worker(
    args: &CommitsArgs,
    partitions: &[i32],
    index: u32,
    gate: &StartGate,
    tx: &mpsc::Sender<(u32, Report)>,
    deadline: Instant,
) {
    let defaults = [
        ("acks", "1".to_owned()),
        ("linger.ms", "0".to_owned()),
        ("enable.idempotence", "false".to_owned()),
        ("message.timeout.ms", request_timeout_ms(deadline)),
    ];
    let producer: ThreadedProducer<BaselineContext> =
        match client_config(&args.bootstrap, &defaults, &args.properties)
            .create_with_context(BaselineContext::default())
        {
            Ok(p) => p,
            Err(err) => {
                let _ = tx.send((
                    index,
                    Report::SetupFailed(format!("creating the producer: {err}")),
                ));
                return;
            }
        };
    let Some(&partition) = partitions.get(index as usize % partitions.len().max(1)) else {
        let _ = tx.send((index, Report::SetupFailed("the topic has no partitions".into())));
        return;
    };
    let payload = payload(args.record_size);
    let topic = args.baseline_topic.as_str();
    match produce_once(&producer, topic, partition, &payload, deadline) {
        Ok(()) => {
            let _ = tx.send((index, Report::Ready));
        }
        Err(Unanswered::Failed(err)) => {
            let _ = tx.send((index, Report::SetupFailed(format!("first record: {err}"))));
            return;
        }
        Err(Unanswered::Deadline) => {
            let _ = tx.send((index, Report::SetupFailed("first record unanswered".into())));
            return;
        }
    }

    let mut tally = Tally::default();
    if let Some((_, until)) = gate.wait(deadline) {
        let mut sent = 0;
        while sent < args.max_requests && Instant::now() < until {
            sent += 1;
            let asked = Instant::now();
            match produce_once(&producer, topic, partition, &payload, deadline) {
                Ok(()) => {
                    let now = Instant::now();
                    tally.answered += 1;
                    tally.latency.record(now - asked);
                    tally.last_answer = Some(now);
                }
                Err(Unanswered::Failed(err)) => tally.failed(err),
                Err(Unanswered::Deadline) => {
                    tally.timed_out = true;
                    tally.failed("record unanswered at the deadline".into());
                    break;
                }
            }
        }
    }
    drop(producer);
    let _ = tx.send((index, Report::Done(tally)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_opens_for_every_waiter_and_abort_releases_them() {
        let gate = Arc::new(StartGate::default());
        let deadline = Instant::now() + Duration::from_secs(10);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let gate = Arc::clone(&gate);
                std::thread::spawn(move || gate.wait(deadline))
            })
            .collect();
        let start = Instant::now();
        gate.set(Gate::Open { start, until: start });
        for w in waiters {
            assert_eq!(w.join().unwrap(), Some((start, start)));
        }
        let gate = StartGate::default();
        gate.set(Gate::Aborted);
        assert_eq!(gate.wait(deadline), None);
    }

    #[test]
    fn closed_gate_gives_up_at_the_deadline() {
        let gate = StartGate::default();
        let started = Instant::now();
        assert_eq!(gate.wait(started + Duration::from_millis(50)), None);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn offsets_cover_every_partition_at_one_offset() {
        let list = offsets_at("t", &[0, 1, 2], 7).unwrap();
        let elements = list.elements();
        assert_eq!(elements.len(), 3);
        assert!(elements
            .iter()
            .all(|e| e.offset() == Offset::Offset(7) && e.topic() == "t"));
    }

    #[test]
    fn tallies_merge_counts_latest_answer_and_first_error() {
        let now = Instant::now();
        let mut a = Tally {
            answered: 2,
            last_answer: Some(now),
            ..Tally::default()
        };
        let mut b = Tally::default();
        b.failed("x".into());
        b.failed("y".into());
        b.answered = 1;
        b.last_answer = Some(now + Duration::from_secs(1));
        a.merge(b);
        assert_eq!((a.answered, a.errors), (3, 2));
        assert_eq!(a.first_error.as_deref(), Some("x"));
        assert_eq!(a.last_answer, Some(now + Duration::from_secs(1)));
    }

    /// Nothing listens on port 1: the run must give up at its deadline, not hang.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_broker_fails_within_the_timeout() {
        let args = CommitsArgs {
            bootstrap: "127.0.0.1:1".into(),
            topic: "t".into(),
            partitions: 1,
            groups: 2,
            duration_secs: 1,
            max_requests: 10,
            no_baseline: false,
            baseline_topic: "b".into(),
            baseline_partitions: 1,
            record_size: 10,
            timeout_secs: 2,
            properties: vec![],
        };
        let started = Instant::now();
        let result = run_commits(&args).await;
        assert!(result.is_err(), "{result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }
}
