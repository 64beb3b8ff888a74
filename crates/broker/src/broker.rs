//! The shared state of one running broker, handed to every connection as `Arc<Broker>`.

use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::cluster::{ClusterError, ClusterNode, ClusterView};
use crate::config::BrokerConfig;
use crate::fetch_session::FetchSessionCache;
use crate::group::GroupCoordinator;
use crate::identity::{Identity, IdentityError};
use crate::producer_ids::ProducerIdSource;
use crate::replica::purgatory::Purgatory;
use crate::topics::{TopicError, TopicRegistry};

/// Failures that stop the broker from starting or running.
#[derive(Debug, Error)]
pub enum BrokerError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cannot load topics: {0}")]
    Topics(#[from] TopicError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

/// Everything request handlers share.
#[derive(Debug)]
pub struct Broker {
    pub config: Arc<BrokerConfig>,
    pub identity: Identity,
    /// Shared so slow topic changes can run on the blocking pool ([`TopicRegistry::change`]).
    pub topics: Arc<TopicRegistry>,
    /// A local file on a single node; blocks from the controller in a cluster.
    pub producer_ids: ProducerIdSource,
    pub fetch_sessions: FetchSessionCache,
    /// Consumer groups and committed offsets.
    pub groups: GroupCoordinator,
    /// Host clients are told to connect to.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Single node, or a cluster member: where answers about brokers, leaders and topic
    /// changes come from.
    pub cluster: ClusterView,
    /// acks=all produces waiting for their records to reach the ISR.
    pub purgatory: Purgatory,
    /// Cancelled when the broker begins shutting down.
    pub shutdown: CancellationToken,
}

impl Broker {
    /// Opens the data directory (identity, topics, logs with recovery) for a broker bound at
    /// `bound`. With voters configured it is a cluster member: the topics come from the
    /// metadata, so no log is opened until the first image arrives ([`crate::cluster::sync`]),
    /// and the internal topics are created by the controller; a node that is also a controller
    /// attaches its voter afterwards ([`crate::cluster::ClusterNode::attach_quorum`]).
    pub fn open(
        config: BrokerConfig,
        bound: SocketAddr,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, BrokerError> {
        let config = Arc::new(config);
        std::fs::create_dir_all(&config.data_dir).map_err(|source| BrokerError::Io {
            what: "create data directory",
            source,
        })?;
        let identity = Identity::load_or_create(&config.data_dir, config.node_id)?;
        let (advertised_host, advertised_port) = advertised(&config, bound);
        let (topics, groups, cluster) = if config.cluster.is_cluster() {
            let topics = Arc::new(TopicRegistry::load_cluster(config.clone())?);
            let groups = GroupCoordinator::for_cluster(config.groups.clone());
            let node =
                ClusterNode::start(config.node_id, &config.cluster, &advertised_host, advertised_port)?;
            (topics, groups, ClusterView::Cluster(Arc::new(node)))
        } else {
            let topics = Arc::new(TopicRegistry::load(config.clone())?);
            let groups = GroupCoordinator::open(&topics, config.groups.clone())?;
            (topics, groups, ClusterView::Single)
        };
        // Producer ids must be unique cluster-wide: a cluster member takes them from the
        // controller, never from its own file.
        let producer_ids = match &cluster {
            ClusterView::Single => ProducerIdSource::file(
                config.data_dir.join("meta").join("producer-ids.json"),
            )
            .map_err(|source| BrokerError::Io {
                what: "open producer id allocator",
                source,
            })?,
            ClusterView::Cluster(node) => ProducerIdSource::controller(Arc::clone(node)),
        };
        Ok(Arc::new(Self {
            config,
            identity,
            topics,
            producer_ids,
            fetch_sessions: FetchSessionCache::new(),
            groups,
            advertised_host,
            advertised_port,
            cluster,
            purgatory: Purgatory::new(shutdown.clone()),
            shutdown,
        }))
    }

    pub fn node_id(&self) -> i32 {
        self.identity.node_id
    }
}

fn advertised(config: &BrokerConfig, bound: SocketAddr) -> (String, i32) {
    if let Some(listener) = &config.advertised_listener {
        if let Some((host, port)) = listener.rsplit_once(':') {
            if let Ok(port) = port.parse::<i32>() {
                return (host.to_string(), port);
            }
        }
        tracing::warn!(
            listener,
            "advertised listener is not host:port; advertising the bound address"
        );
    }
    (bound.ip().to_string(), i32::from(bound.port()))
}
