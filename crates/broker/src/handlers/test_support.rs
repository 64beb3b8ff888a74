//! Shared by handler tests: a single-node broker opened in a temporary directory.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::cluster::NewTopic;
use crate::config::BrokerConfig;
use crate::topic_config::TopicOverrides;

/// A single-node broker with data in `dir` and a topic "t" of two partitions.
pub async fn broker_with_topic(dir: &std::path::Path) -> Arc<Broker> {
    let config = BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    };
    let broker = Broker::open(config, "127.0.0.1:0".parse().unwrap(), CancellationToken::new()).unwrap();
    let topic = NewTopic {
        name: "t".into(),
        partitions: 2,
        replication_factor: 1,
        overrides: TopicOverrides::default(),
        validate_only: false,
    };
    broker.cluster.create_topic(&broker, topic).await.unwrap();
    broker
}
