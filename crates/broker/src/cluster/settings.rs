//! Cluster membership settings, with Kafka's names: `process.roles`, the controller listener,
//! `controller.quorum.voters`, `broker.rack` and `default.replication.factor`.
//!
//! A broker is in cluster mode exactly when it has voters (`--voters` /
//! `controller_quorum_voters`); without them it is the single-node broker it always was, and
//! the other settings here must keep their defaults.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

/// Kafka `process.roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub broker: bool,
    pub controller: bool,
}

impl Default for Roles {
    fn default() -> Self {
        Self {
            broker: true,
            controller: true,
        }
    }
}

impl Roles {
    /// Parses `broker,controller`, `broker` or `controller` (any order, spaces allowed).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut roles = Self {
            broker: false,
            controller: false,
        };
        for role in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match role {
                "broker" => roles.broker = true,
                "controller" => roles.controller = true,
                other => return Err(format!("unknown role '{other}' (broker, controller)")),
            }
        }
        if !roles.broker && !roles.controller {
            return Err("at least one of broker, controller is needed".into());
        }
        Ok(roles)
    }
}

/// Kafka `controller.quorum.voters`: node id -> controller listener.
pub type Voters = BTreeMap<i32, SocketAddr>;

/// Parses `1@127.0.0.1:19091,2@host:19092` (host names are resolved once, here).
pub fn parse_voters(text: &str) -> Result<Voters, String> {
    let mut voters = Voters::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| format!("'{entry}' is not ID@HOST:PORT"))?;
        let id: i32 = id
            .trim()
            .parse()
            .map_err(|_| format!("'{entry}': '{id}' is not a node id"))?;
        if id < 0 {
            return Err(format!("'{entry}': node ids are >= 0"));
        }
        let addr = addr
            .trim()
            .to_socket_addrs()
            .map_err(|e| format!("'{entry}': {e}"))?
            .next()
            .ok_or_else(|| format!("'{entry}': the host resolves to no address"))?;
        if voters.insert(id, addr).is_some() {
            return Err(format!("node {id} is listed twice"));
        }
    }
    if voters.is_empty() {
        return Err("no voters given".into());
    }
    Ok(voters)
}

/// How this node takes part in a cluster (part of the broker configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// Kafka `process.roles`.
    pub roles: Roles,
    /// The controller listener to bind; defaults to this node's entry in `voters`.
    pub controller_listener: Option<SocketAddr>,
    /// Kafka `controller.quorum.voters`; `None` runs the single-node broker.
    pub voters: Option<Voters>,
    /// Kafka `broker.rack`.
    pub rack: Option<String>,
    /// Replication factor of topics created without one (CreateTopics with -1, auto-creation,
    /// the internal topics), capped by the live brokers at creation. Kafka's
    /// `default.replication.factor` is 1; ours is 3, the sane choice for a cluster.
    pub default_replication_factor: i16,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            roles: Roles::default(),
            controller_listener: None,
            voters: None,
            rack: None,
            default_replication_factor: 3,
        }
    }
}

/// Flags (and `SAPPER_*` variables) for [`ClusterSettings`]; the config file's keys
/// `process_roles`, `controller_listener`, `controller_quorum_voters`, `broker_rack` and
/// `default_replication_factor` fill the same struct.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ClusterArgs {
    /// This node's roles: broker,controller (default), broker or controller (process.roles).
    #[arg(long, env = "SAPPER_ROLES")]
    pub roles: Option<String>,
    /// Controller listener address (defaults to this node's entry in --voters).
    #[arg(long, env = "SAPPER_CONTROLLER_LISTEN")]
    pub controller_listen: Option<SocketAddr>,
    /// The metadata quorum's voters, ID@HOST:PORT,... (controller.quorum.voters); turns on
    /// cluster mode.
    #[arg(long, env = "SAPPER_VOTERS")]
    pub voters: Option<String>,
    /// This broker's rack (broker.rack), for rack-aware replica placement.
    #[arg(long, env = "SAPPER_RACK")]
    pub rack: Option<String>,
    /// Replication factor of topics created without one (capped by the live brokers).
    #[arg(long, env = "SAPPER_DEFAULT_REPLICATION_FACTOR")]
    pub default_replication_factor: Option<i16>,
}

impl ClusterSettings {
    /// Applies the values that were given; the error is (config key, why).
    pub fn apply(&mut self, a: &ClusterArgs) -> Result<(), (&'static str, String)> {
        if let Some(roles) = &a.roles {
            self.roles = Roles::parse(roles).map_err(|e| ("process_roles", e))?;
        }
        if let Some(listen) = a.controller_listen {
            self.controller_listener = Some(listen);
        }
        if let Some(voters) = &a.voters {
            self.voters = Some(parse_voters(voters).map_err(|e| ("controller_quorum_voters", e))?);
        }
        if let Some(rack) = &a.rack {
            self.rack = Some(rack.clone());
        }
        if let Some(rf) = a.default_replication_factor {
            self.default_replication_factor = rf;
        }
        Ok(())
    }

    /// Whether the node runs as a cluster member (it has voters).
    pub fn is_cluster(&self) -> bool {
        self.voters.is_some()
    }

    /// The controller listener of `node_id`: the explicit one, else its voter entry.
    pub fn controller_listen(&self, node_id: i32) -> Option<SocketAddr> {
        self.controller_listener
            .or_else(|| self.voters.as_ref().and_then(|v| v.get(&node_id).copied()))
    }

    /// The first setting that does not fit, as (config key, why).
    pub fn validate(&self, node_id: i32) -> Result<(), (&'static str, String)> {
        if self.default_replication_factor < 1 {
            return Err(("default_replication_factor", "must be >= 1".into()));
        }
        if self.rack.as_ref().is_some_and(|r| r.is_empty() || r.len() > 255) {
            return Err(("broker_rack", "must be 1 to 255 bytes".into()));
        }
        let Some(voters) = &self.voters else {
            if self.roles != Roles::default() || self.controller_listener.is_some() {
                return Err((
                    "controller_quorum_voters",
                    "process_roles and controller_listener need controller_quorum_voters (cluster mode)"
                        .into(),
                ));
            }
            return Ok(());
        };
        // A controller outside the voters joins the quorum later (AddRaftVoter, KIP-853): it
        // needs its own controller listener, which the voters cannot tell.
        if self.roles.controller && !voters.contains_key(&node_id) && self.controller_listener.is_none() {
            return Err((
                "controller_quorum_voters",
                format!(
                    "node {node_id} has the controller role but is not one of the voters \
                     (a controller joining later needs controller_listener)"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_kafka_syntax() {
        let v = parse_voters("1@127.0.0.1:19091, 2@127.0.0.1:19092").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[&2], "127.0.0.1:19092".parse().unwrap());
        assert!(parse_voters("1@127.0.0.1:1,1@127.0.0.1:2").is_err());
        assert!(parse_voters("x@127.0.0.1:1").is_err());
        assert!(parse_voters("1-127.0.0.1:1").is_err());
        assert!(parse_voters("").is_err());
    }

    #[test]
    fn roles_parse_in_any_order() {
        assert_eq!(Roles::parse("controller,broker").unwrap(), Roles::default());
        assert!(!Roles::parse("broker").unwrap().controller);
        assert!(Roles::parse("zookeeper").is_err());
        assert!(Roles::parse("").is_err());
    }

    #[test]
    fn a_controller_must_be_a_voter() {
        let settings = ClusterSettings {
            voters: Some(parse_voters("1@127.0.0.1:19091").unwrap()),
            ..ClusterSettings::default()
        };
        assert!(settings.validate(1).is_ok());
        assert!(settings.validate(2).is_err());
        let joining = ClusterSettings {
            controller_listener: Some("127.0.0.1:19092".parse().unwrap()),
            ..settings.clone()
        };
        assert!(
            joining.validate(2).is_ok(),
            "a controller to be added as a voter later"
        );
        let broker_only = ClusterSettings {
            roles: Roles::parse("broker").unwrap(),
            ..settings
        };
        assert!(broker_only.validate(2).is_ok());
    }

    #[test]
    fn single_node_mode_refuses_cluster_only_settings() {
        let settings = ClusterSettings {
            roles: Roles::parse("broker").unwrap(),
            ..ClusterSettings::default()
        };
        assert!(settings.validate(1).is_err());
        assert!(ClusterSettings::default().validate(1).is_ok());
    }
}
