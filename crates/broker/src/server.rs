//! The broker's run loop: accept connections, run background maintenance, shut down cleanly.
//!
//! Shutdown is one tree rooted in the broker's `CancellationToken`: the accept loop stops,
//! each connection finishes the request it is handling and exits, background tasks stop, then
//! every partition log is closed (flushed and checkpointed) so the next start skips recovery.

use std::sync::Arc;
use std::time::Duration;

use sapper_log::FlushPolicy;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::connection::serve_connection;
use crate::partition::Partition;
use crate::topics::Topic;

/// How long in-flight requests get to finish after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves clients on `listener` until `broker.shutdown` is cancelled, then closes all logs.
pub async fn run(broker: Arc<Broker>, listener: TcpListener) {
    let mut background = JoinSet::new();
    background.spawn(retention_loop(broker.clone()));
    background.spawn(cleaner_loop(broker.clone()));
    background.spawn(crate::group::coordinator::run_timers(broker.clone()));
    if let FlushPolicy::IntervalMs(ms) = broker.config.flush {
        background.spawn(flush_loop(broker.clone(), Duration::from_millis(ms)));
    }
    broker.cluster.spawn_tasks(&broker, &mut background);
    // Connections wait in the listen backlog until the broker may answer them.
    tokio::select! {
        () = broker.cluster.ready_to_serve() => {}
        () = broker.shutdown.cancelled() => {}
    }

    let limit = Arc::new(Semaphore::new(broker.config.max_connections));
    let mut connections = JoinSet::new();
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => permit,
            () = broker.shutdown.cancelled() => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = broker.shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(10);
                let broker = broker.clone();
                connections.spawn(async move {
                    serve_connection(broker, stream).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Usually EMFILE: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
        // Reap finished connection tasks so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("connections still busy after the grace period; aborting them");
        connections.abort_all();
    }
    background.abort_all();
    while background.join_next().await.is_some() {}
    close_logs(&broker);
}

/// Threads that close logs at shutdown. Closing is fsync-bound (indexes, producer snapshot,
/// checkpoint per partition), so a few closes in flight hide the disk's latency; one at a time
/// made a broker with only its 100 internal partitions take seconds to stop.
const CLOSE_THREADS: usize = 8;

fn close_logs(broker: &Broker) {
    let partitions = broker.topics.all_partitions();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..CLOSE_THREADS.min(partitions.len()) {
            scope.spawn(|| {
                while let Some((topic, partition)) =
                    partitions.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                {
                    if let Err(e) = partition.close() {
                        tracing::error!(topic = %topic.name, partition = partition.index, error = %e, "clean close failed");
                    }
                }
            });
        }
    });
}

/// Every `every`, runs `work` on each partition on the blocking pool (file work must not
/// stall the async workers), stopping early when the broker shuts down. Ticks never overlap.
async fn every_partition<F>(broker: Arc<Broker>, every: Duration, work: F)
where
    F: Fn(&Topic, &Partition) + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (b, work) = (broker.clone(), work.clone());
        let _ = tokio::task::spawn_blocking(move || {
            for (topic, partition) in b.topics.all_partitions() {
                if b.shutdown.is_cancelled() {
                    return;
                }
                work(&topic, &partition);
            }
        })
        .await;
    }
}

async fn retention_loop(broker: Arc<Broker>) {
    let every = Duration::from_millis(broker.config.retention_check_interval_ms);
    every_partition(broker, every, |topic, partition| match partition.enforce_retention(now_ms()) {
        Ok(0) => {}
        Ok(n) => tracing::info!(topic = %topic.name, partition = partition.index, segments = n, "retention deleted segments"),
        Err(e) => tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "retention failed"),
    })
    .await;
}

/// Log compaction: every `cleaner_backoff_ms`, one pass over each partition of a compacted
/// topic (`Partition::clean` is a no-op for the others). The heavy work holds no log lock.
async fn cleaner_loop(broker: Arc<Broker>) {
    let every = Duration::from_millis(broker.config.cleaner_backoff_ms);
    every_partition(broker, every, |topic, partition| match partition.clean(now_ms()) {
        Ok(stats) if stats.segments_rewritten + stats.segments_deleted > 0 => tracing::info!(
            topic = %topic.name,
            partition = partition.index,
            rewritten = stats.segments_rewritten,
            deleted = stats.segments_deleted,
            records_removed = stats.records_removed,
            bytes_before = stats.bytes_before,
            bytes_after = stats.bytes_after,
            "cleaner compacted segments"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "cleaning failed"),
    })
    .await;
}

async fn flush_loop(broker: Arc<Broker>, every: Duration) {
    every_partition(broker, every, |topic, partition| {
        if let Err(e) = partition.flush() {
            tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "flush failed");
        }
    })
    .await;
}
