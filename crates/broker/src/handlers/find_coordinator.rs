//! FindCoordinator: a group's coordinator is the leader of its `__consumer_offsets` partition
//! (on a single broker, this broker; COORDINATOR_NOT_AVAILABLE while the partition has no
//! leader). Transaction coordinators do not exist yet (COORDINATOR_NOT_AVAILABLE). v4+ batches
//! keys.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::broker::Broker;

const KEY_TYPE_GROUP: i8 = 0;

pub async fn handle(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let lookup = |key: &str| -> (i32, String, i32, i16) {
        if request.key_type != KEY_TYPE_GROUP {
            return (
                -1,
                String::new(),
                -1,
                ResponseError::CoordinatorNotAvailable.code(),
            );
        }
        match broker.cluster.coordinator(broker, key) {
            Ok(b) => (b.id, b.host, b.port, 0),
            Err(code) => (-1, String::new(), -1, code),
        }
    };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let (node, host, port, code) = lookup(key);
                Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(host))
                    .with_port(port)
                    .with_error_code(code)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (node, host, port, code) = lookup(&request.key);
    FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_node_id(BrokerId(node))
        .with_host(str_bytes(host))
        .with_port(port)
}

pub fn error_response(request: &FindCoordinatorRequest, code: i16) -> FindCoordinatorResponse {
    // One shape or the other: v0-3 have only the top-level error, v4+ only `coordinators`, and
    // the codec refuses to encode a field the version lacks. Only v4+ requests carry keys.
    if request.coordinator_keys.is_empty() {
        return FindCoordinatorResponse::default().with_error_code(code);
    }
    let keys: Vec<StrBytes> = request.coordinator_keys.clone();
    FindCoordinatorResponse::default().with_coordinators(
        keys.into_iter()
            .map(|key| Coordinator::default().with_key(key).with_error_code(code))
            .collect(),
    )
}
