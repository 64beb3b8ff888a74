//! What AddRaftVoter and RemoveRaftVoter (KIP-853) share: the checks before the change goes
//! to the active controller ([`node_for_change`]: a cluster member, this cluster's id) and
//! its outcome as a Kafka answer ([`committed`]).

use kafka_protocol::error::ResponseError;
use sapper_meta::controller::api::ControllerError;
use sapper_meta::lifecycle::ClientError;

use crate::broker::Broker;
use crate::cluster::{ClusterNode, ClusterView};

/// A (code, message) error answer.
pub type Refused = (i16, String);

/// The cluster member that forwards a voter change, after the checks every change needs:
/// a single-node broker has no quorum to change, and the request must name this cluster.
pub fn node_for_change<'a>(broker: &'a Broker, cluster_id: Option<&str>) -> Result<&'a ClusterNode, Refused> {
    let ClusterView::Cluster(node) = &broker.cluster else {
        return Err(no_dynamic_quorum());
    };
    check_cluster_id(node, cluster_id)?;
    Ok(node)
}

/// The active controller's answer to voter change `what` of `voter`, logged when committed.
pub fn committed(outcome: Result<u64, ClientError>, what: &str, voter: i32) -> Result<(), Refused> {
    match outcome {
        Ok(index) => {
            tracing::info!(voter, index, "{what}: committed");
            Ok(())
        }
        Err(e) => Err(client_error(&e)),
    }
}

/// INCONSISTENT_CLUSTER_ID when the request names another cluster (null: any; so is "",
/// kafka-protocol's default for the field, which no cluster id can be).
fn check_cluster_id(node: &ClusterNode, asked: Option<&str>) -> Result<(), Refused> {
    match asked {
        Some(id) if !id.is_empty() && id != node.cluster_id() => Err((
            ResponseError::InconsistentClusterId.code(),
            format!("cluster id {id} is not this cluster's ({})", node.cluster_id()),
        )),
        _ => Ok(()),
    }
}

/// A single-node broker has no quorum to change.
fn no_dynamic_quorum() -> Refused {
    (
        ResponseError::UnsupportedVersion.code(),
        "a single-node broker has no metadata quorum to change".into(),
    )
}

/// The controller's refusal or failure; NOT_CONTROLLER when no controller could decide.
fn client_error(error: &ClientError) -> Refused {
    let code = match error {
        ClientError::NoController(_) => ControllerError::NotController { leader: None }.kafka_code(),
        other => other.kafka_code(),
    };
    (code, error.to_string())
}
