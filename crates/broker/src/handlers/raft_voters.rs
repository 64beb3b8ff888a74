//! What AddRaftVoter and RemoveRaftVoter (KIP-853) share: the cluster id check, the answer of
//! a single-node broker, and controller errors as Kafka codes.

use kafka_protocol::error::ResponseError;
use sapper_meta::controller::api::ControllerError;
use sapper_meta::lifecycle::ClientError;

use crate::cluster::ClusterNode;

/// A (code, message) error answer.
pub type Refused = (i16, String);

/// INCONSISTENT_CLUSTER_ID when the request names another cluster (null: any; so is "",
/// kafka-protocol's default for the field, which no cluster id can be).
pub fn check_cluster_id(node: &ClusterNode, asked: Option<&str>) -> Result<(), Refused> {
    match asked {
        Some(id) if !id.is_empty() && id != node.cluster_id() => Err((
            ResponseError::InconsistentClusterId.code(),
            format!("cluster id {id} is not this cluster's ({})", node.cluster_id()),
        )),
        _ => Ok(()),
    }
}

/// A single-node broker has no quorum to change.
pub fn no_dynamic_quorum() -> Refused {
    (
        ResponseError::UnsupportedVersion.code(),
        "a single-node broker has no metadata quorum to change".into(),
    )
}

/// The controller's refusal or failure; NOT_CONTROLLER when no controller could decide.
pub fn client_error(error: &ClientError) -> Refused {
    let code = match error {
        ClientError::NoController(_) => ControllerError::NotController { leader: None }.kafka_code(),
        other => other.kafka_code(),
    };
    (code, error.to_string())
}
