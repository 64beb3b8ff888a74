//! The hidden `sapper bench group-member`: one consumer in a group, run as a child process of
//! `sapper bench rebalance`, that prints one JSON line on stdout at every assignment change.
//!
//! It subscribes with the client's default rebalance settings (unless told otherwise), polls
//! until SIGTERM, until its stdin closes (the parent went away or asks it to leave), or until
//! `--timeout-secs`, then closes the consumer, which revokes its partitions and sends
//! LeaveGroup: the graceful path. SIGKILL is the other path, the one the benchmark measures.

use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use serde::{Deserialize, Serialize};

use crate::args::GroupMemberArgs;
use crate::client::{client_config, error_to_tracing, log_to_tracing, remaining};
use crate::report::MemberReport;

/// Longest single poll, so a stop request is noticed at least this often.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long closing the consumer (revoke, LeaveGroup) may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(15);

/// One line a member prints on stdout.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum MemberEvent {
    /// The member's whole assignment after a rebalance callback (empty after an eager revoke).
    Assignment { partitions: Vec<i32> },
    /// The client reported a rebalance error.
    Error { error: String },
    /// The consumer closed: it left the group.
    Closed,
}

impl MemberEvent {
    /// Prints the event as one line on stdout, flushed at once so the parent sees it now. A
    /// parent that went away is not an error here: the member notices the closed stdin.
    fn emit(&self) {
        let Ok(line) = serde_json::to_string(self) else {
            return;
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}

/// Consumer context that reports every assignment change.
#[derive(Debug, Default)]
struct MemberContext {
    topic: String,
    assignments: AtomicU64,
}

impl ClientContext for MemberContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_to_tracing(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        error_to_tracing(&error, reason);
    }
}

impl ConsumerContext for MemberContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let event = match rebalance {
            Rebalance::Error(err) => MemberEvent::Error {
                error: err.to_string(),
            },
            // The consumer's whole assignment, whatever the protocol (eager or cooperative).
            Rebalance::Assign(_) | Rebalance::Revoke(_) => {
                let mut partitions: Vec<i32> = consumer
                    .assignment()
                    .map(|list| {
                        list.elements()
                            .iter()
                            .filter(|p| p.topic() == self.topic)
                            .map(|p| p.partition())
                            .collect()
                    })
                    .unwrap_or_default();
                partitions.sort_unstable();
                self.assignments.fetch_add(1, Ordering::Relaxed);
                MemberEvent::Assignment { partitions }
            }
        };
        event.emit();
    }
}

/// Runs one group member until SIGTERM, stdin closing, or `--timeout-secs`.
pub async fn run_group_member(args: &GroupMemberArgs) -> anyhow::Result<MemberReport> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    {
        let stop = Arc::clone(&stop);
        // Detached on purpose: it sits in read(2) on stdin, which nothing can interrupt, and
        // ends with the process.
        std::thread::Builder::new()
            .name("stdin-watch".into())
            .spawn(move || {
                let mut buf = [0u8; 256];
                let mut stdin = std::io::stdin().lock();
                while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
                stop.store(true, Ordering::SeqCst);
            })
            .context("starting the stdin watcher")?;
    }
    let mut member = {
        let (args, stop) = (args.clone(), Arc::clone(&stop));
        tokio::task::spawn_blocking(move || member_blocking(&args, &stop))
    };
    tokio::select! {
        result = &mut member => return result.context("the consumer thread panicked")?,
        _ = sigterm.recv() => stop.store(true, Ordering::SeqCst),
    }
    member.await.context("the consumer thread panicked")?
}

/// The blocking body of [`run_group_member`].
fn member_blocking(args: &GroupMemberArgs, stop: &AtomicBool) -> anyhow::Result<MemberReport> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut defaults = vec![
        ("group.id", args.group.clone()),
        ("enable.auto.commit", "false".to_owned()),
        ("auto.offset.reset", "latest".to_owned()),
    ];
    if let Some(ms) = args.session_timeout_ms {
        defaults.push(("session.timeout.ms", ms.to_string()));
    }
    if let Some(ms) = args.heartbeat_interval_ms {
        defaults.push(("heartbeat.interval.ms", ms.to_string()));
    }
    let context = MemberContext {
        topic: args.topic.clone(),
        ..MemberContext::default()
    };
    let consumer: BaseConsumer<MemberContext> = client_config(&args.bootstrap, &defaults, &args.properties)
        .create_with_context(context)
        .context("creating the consumer")?;
    consumer
        .subscribe(&[args.topic.as_str()])
        .with_context(|| format!("subscribing to `{}`", args.topic))?;

    let mut records = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let wait = remaining(deadline).min(POLL_INTERVAL);
        if wait.is_zero() {
            break;
        }
        match consumer.poll(wait) {
            Some(Ok(_)) => records += 1,
            Some(Err(err)) => tracing::debug!("consumer error: {err}"),
            None => {}
        }
    }

    let closed = close(&consumer);
    if closed {
        MemberEvent::Closed.emit();
    }
    let report = MemberReport {
        group: args.group.clone(),
        assignments: consumer.context().assignments.load(Ordering::Relaxed),
        records,
        closed,
    };
    if !closed {
        // Dropping a consumer that has not closed polls until it does, without bound; the
        // process is about to exit, which releases everything anyway.
        std::mem::forget(consumer);
    }
    Ok(report)
}

/// Closes the consumer (revoke callback, LeaveGroup), serving its events for at most
/// [`CLOSE_TIMEOUT`]. Returns whether it closed.
fn close(consumer: &BaseConsumer<MemberContext>) -> bool {
    if let Err(err) = consumer.close_queue() {
        tracing::warn!("closing the consumer: {err}");
        return false;
    }
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    while !consumer.closed() {
        let wait = remaining(deadline).min(POLL_INTERVAL);
        if wait.is_zero() {
            return false;
        }
        let _ = consumer.poll(wait);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_tagged_json_lines() {
        let event = MemberEvent::Assignment {
            partitions: vec![0, 3],
        };
        let line = serde_json::to_string(&event).unwrap();
        assert_eq!(line, r#"{"event":"assignment","partitions":[0,3]}"#);
        assert_eq!(serde_json::from_str::<MemberEvent>(&line).unwrap(), event);
        let closed = serde_json::to_string(&MemberEvent::Closed).unwrap();
        assert_eq!(closed, r#"{"event":"closed"}"#);
        // The member's final report line is not an event.
        assert!(serde_json::from_str::<MemberEvent>(r#"{"group":"g","closed":true}"#).is_err());
    }
}
