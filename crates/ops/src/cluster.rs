//! A cluster as the control plane sees it: reached only through the Kafka protocol, starting
//! from one bootstrap broker and then whichever broker Metadata or FindCoordinator names.
//!
//! Each broker connection negotiates versions once (ApiVersions); every request then goes out
//! at the highest version that the broker, the codec and the caller's implemented range share.
//! Every connect and request is bounded in time, so a broker that hangs is an error, not a
//! hang.

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use sapper_wire::client::{BrokerVersions, Client};

use crate::error::OpsError;

/// How long connecting (name resolution, TCP, ApiVersions) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may wait for its response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The `client.id` brokers see.
const CLIENT_ID: &str = "sapper-ops";
/// FindCoordinator answers that say "try again" (a coordinator loading its state) are retried
/// this many times, this far apart.
const COORDINATOR_ATTEMPTS: u32 = 20;
const COORDINATOR_BACKOFF: Duration = Duration::from_millis(250);

/// One broker connection and the versions it serves.
struct Conn {
    client: Client,
    versions: BrokerVersions,
}

/// Connections to the brokers of one cluster, keyed by `host:port`.
pub struct Cluster {
    bootstrap: String,
    conns: HashMap<String, Conn>,
    /// Node id to `host:port`, from the last Metadata response.
    brokers: HashMap<i32, String>,
}

/// The name of a request type's API, for messages.
fn api_name<R: Request>() -> String {
    ApiKey::try_from(R::KEY)
        .map(|k| format!("{k:?}"))
        .unwrap_or_else(|()| format!("API {}", R::KEY))
}

impl Cluster {
    /// Connects to `bootstrap` (`HOST:PORT`) at once, so an unreachable broker is reported
    /// before anything else happens.
    pub async fn connect(bootstrap: &str) -> Result<Self, OpsError> {
        let mut cluster = Cluster {
            bootstrap: bootstrap.to_string(),
            conns: HashMap::new(),
            brokers: HashMap::new(),
        };
        cluster.conn(bootstrap).await?;
        Ok(cluster)
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    async fn conn(&mut self, addr: &str) -> Result<&mut Conn, OpsError> {
        if !self.conns.contains_key(addr) {
            let conn = open(addr).await?;
            self.conns.insert(addr.to_string(), conn);
        }
        self.conns.get_mut(addr).ok_or_else(|| OpsError::Unreachable {
            addr: addr.to_string(),
            reason: "connection lost".into(),
        })
    }

    /// The version range of `api` that the broker at `addr` advertised in ApiVersions, or
    /// `None` if it does not serve it.
    pub async fn api_range(&mut self, addr: &str, api: ApiKey) -> Result<Option<(i16, i16)>, OpsError> {
        Ok(self.conn(addr).await?.versions.range(api as i16))
    }

    /// Sends the request `build(version)` to the broker at `addr`, at the highest version in
    /// `min..=max` it serves; returns that version with the response. `build` must leave
    /// fields the version lacks at their defaults.
    pub async fn call<R: Request>(
        &mut self,
        addr: &str,
        min: i16,
        max: i16,
        build: impl FnOnce(i16) -> R,
    ) -> Result<(i16, R::Response), OpsError> {
        let request_error = |reason: String| OpsError::Request {
            api: api_name::<R>(),
            addr: addr.to_string(),
            reason,
        };
        let conn = self.conn(addr).await?;
        let version = conn
            .versions
            .pick::<R>(min, max)
            .map_err(|e| request_error(e.to_string()))?;
        let request = build(version);
        let result = tokio::time::timeout(REQUEST_TIMEOUT, conn.client.send(&request, version)).await;
        match result {
            Ok(Ok(response)) => Ok((version, response)),
            Ok(Err(e)) => {
                // The connection's state is unknown after a failure: never reuse it.
                self.conns.remove(addr);
                Err(request_error(e.to_string()))
            }
            Err(_) => {
                self.conns.remove(addr);
                Err(request_error(format!("no response within {REQUEST_TIMEOUT:?}")))
            }
        }
    }

    /// Metadata for `topics` (`None`: every topic; `Some(vec![])`: brokers only), from the
    /// bootstrap broker. Remembers the brokers for [`Cluster::broker_addr`]. Never creates a
    /// topic.
    pub async fn metadata(&mut self, topics: Option<&[String]>) -> Result<MetadataResponse, OpsError> {
        let bootstrap = self.bootstrap.clone();
        let (_, response) = self
            .call(&bootstrap, 1, 9, |version| {
                let topics = topics.map(|names| {
                    names
                        .iter()
                        .map(|n| {
                            MetadataRequestTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                        })
                        .collect()
                });
                let request = MetadataRequest::default().with_topics(topics);
                if version >= 4 {
                    request.with_allow_auto_topic_creation(false)
                } else {
                    request
                }
            })
            .await?;
        for b in &response.brokers {
            self.brokers.insert(b.node_id.0, format!("{}:{}", b.host, b.port));
        }
        Ok(response)
    }

    /// Every broker the last Metadata response named (the bootstrap broker if none).
    pub fn broker_addrs(&self) -> Vec<String> {
        let mut addrs: Vec<String> = self.brokers.values().cloned().collect();
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            addrs.push(self.bootstrap.clone());
        }
        addrs
    }

    /// `host:port` of broker `node`, as the last Metadata response gave it.
    pub fn broker_addr(&self, node: i32) -> Option<String> {
        self.brokers.get(&node).cloned()
    }

    /// `host:port` of the coordinator of `group` (FindCoordinator, retried while the
    /// coordinator is loading or not yet available).
    pub async fn coordinator(&mut self, group: &str) -> Result<String, OpsError> {
        let bootstrap = self.bootstrap.clone();
        let mut code = 0;
        for attempt in 0..COORDINATOR_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(COORDINATOR_BACKOFF).await;
            }
            let (_, response) = self
                .call(&bootstrap, 0, 3, |_| {
                    FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()))
                })
                .await?;
            code = response.error_code;
            if code == 0 {
                return Ok(format!("{}:{}", response.host, response.port));
            }
            let retriable = ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable());
            if !retriable {
                break;
            }
        }
        Err(OpsError::Kafka {
            api: "FindCoordinator".into(),
            code,
        })
    }
}

/// Resolves `addr`, connects (trying each resolved address) and negotiates versions.
async fn open(addr: &str) -> Result<Conn, OpsError> {
    let unreachable = |reason: String| OpsError::Unreachable {
        addr: addr.to_string(),
        reason,
    };
    let attempt = async {
        let resolved: Vec<_> = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| OpsError::BadAddress {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?
            .collect();
        let mut last = String::from("the name resolves to no address");
        for socket in resolved {
            match Client::bootstrap(socket).await {
                Ok((mut client, versions)) => {
                    client.set_client_id(CLIENT_ID);
                    return Ok(Conn { client, versions });
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(unreachable(last))
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(unreachable(format!("no answer within {CONNECT_TIMEOUT:?}"))),
    }
}
