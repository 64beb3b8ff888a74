//! librdkafka client plumbing shared by the producer and consumer benchmarks: building a
//! `ClientConfig` from defaults plus `-X` overrides, creating the benchmark topic, and
//! looking up its partitions.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// How long one metadata or admin request may take before it is retried or given up on.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A client context that routes librdkafka's logs and global errors to `tracing`, so they
/// show up (or not) with the rest of the binary's output.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TracingContext;

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_to_tracing(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        error_to_tracing(&error, reason);
    }
}

impl ConsumerContext for TracingContext {}

/// Forwards one librdkafka log line to `tracing` at the matching level.
pub(crate) fn log_to_tracing(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", "{fac}: {message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{fac}: {message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", "{fac}: {message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "{fac}: {message}"),
    }
}

/// Forwards a librdkafka global error (e.g. all brokers down) to `tracing`. These are
/// usually transient and retried by the client, hence a warning.
pub(crate) fn error_to_tracing(error: &KafkaError, reason: &str) {
    tracing::warn!(target: "librdkafka", "{error}: {reason}");
}

/// Builds a client configuration: `bootstrap.servers`, then `defaults`, then the user's `-X`
/// overrides, so a user property always wins.
pub(crate) fn client_config(
    bootstrap: &str,
    defaults: &[(&str, String)],
    overrides: &[(String, String)],
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in defaults {
        config.set(*key, value);
    }
    for (key, value) in overrides {
        config.set(key, value);
    }
    config
}

/// Time left until `deadline`, zero once it has passed.
pub(crate) fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Creates `topic` with `partitions` partitions and replication factor 1, treating "already
/// exists" as success. Bounded by `deadline`.
pub(crate) async fn ensure_topic(
    bootstrap: &str,
    overrides: &[(String, String)],
    topic: &str,
    partitions: i32,
    deadline: Instant,
) -> anyhow::Result<()> {
    ensure_replicated_topic(bootstrap, overrides, topic, partitions, 1, &[], deadline).await
}

/// Creates `topic` with `partitions` partitions, `replication` replicas each and the topic
/// `configs` (e.g. `min.insync.replicas`), treating "already exists" as success (the existing
/// topic is used as it is). Bounded by `deadline`.
pub(crate) async fn ensure_replicated_topic(
    bootstrap: &str,
    overrides: &[(String, String)],
    topic: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, String)],
    deadline: Instant,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap, &[], overrides)
        .create()
        .context("creating the admin client")?;
    let timeout = remaining(deadline).min(REQUEST_TIMEOUT * 2);
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let new_topic = configs.iter().fold(
        NewTopic::new(topic, partitions, TopicReplication::Fixed(replication)),
        |t, (key, value)| t.set(key, value),
    );
    let results = tokio::time::timeout(timeout, admin.create_topics([&new_topic], &options))
        .await
        .with_context(|| format!("creating topic `{topic}` timed out after {timeout:?}"))?
        .with_context(|| format!("creating topic `{topic}`"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic `{name}` failed: {code}"),
        }
    }
    Ok(())
}

/// Returns the partition ids of `topic`, sorted, retrying until the broker's metadata lists
/// it without error (a freshly created topic may take a moment to appear) or `deadline`.
pub(crate) fn topic_partitions<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    deadline: Instant,
) -> anyhow::Result<Vec<i32>> {
    let mut last_problem = String::from("no metadata request completed");
    loop {
        let timeout = remaining(deadline).min(REQUEST_TIMEOUT);
        if timeout.is_zero() {
            bail!("topic `{topic}` not usable before the deadline: {last_problem}");
        }
        match client.fetch_metadata(Some(topic), timeout) {
            Ok(metadata) => match metadata.topics().iter().find(|t| t.name() == topic) {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                    ids.sort_unstable();
                    return Ok(ids);
                }
                Some(t) => {
                    last_problem = match t.error() {
                        Some(err) => format!("metadata error {:?}", RDKafkaErrorCode::from(err)),
                        None => "topic has no partitions".to_owned(),
                    }
                }
                None => last_problem = "topic missing from metadata".to_owned(),
            },
            Err(err) => last_problem = err.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100).min(remaining(deadline)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_over_defaults() {
        let config = client_config(
            "h:1",
            &[("linger.ms", "5".to_owned()), ("acks", "1".to_owned())],
            &[("acks".to_owned(), "all".to_owned())],
        );
        assert_eq!(config.get("bootstrap.servers"), Some("h:1"));
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert_eq!(config.get("acks"), Some("all"));
    }

    #[test]
    fn remaining_is_zero_after_deadline() {
        let past = Instant::now().checked_sub(Duration::from_secs(1)).unwrap();
        assert_eq!(remaining(past), Duration::ZERO);
        assert!(remaining(Instant::now() + Duration::from_secs(60)) > Duration::from_secs(59));
    }
}
