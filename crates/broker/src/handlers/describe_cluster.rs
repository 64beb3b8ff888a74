//! DescribeCluster: the cluster id, the controller and the brokers, from
//! [`crate::cluster::ClusterView`]. v1 asks for an endpoint type: a broker serves `BROKER` (1)
//! only and answers MISMATCHED_ENDPOINT_TYPE for `CONTROLLER` (2), UNSUPPORTED_ENDPOINT_TYPE for
//! anything else, as Kafka does. v2 (KIP-1073) adds fenced brokers, flagged `is_fenced`, when
//! the request includes them.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::cluster::{BrokerEndpoint, ClusterView};

/// Kafka's `EndpointType.BROKER` and `EndpointType.CONTROLLER`.
const BROKER_ENDPOINT: i8 = 1;
const CONTROLLER_ENDPOINT: i8 = 2;

pub async fn handle(
    broker: &Broker,
    request: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    if request.endpoint_type != BROKER_ENDPOINT {
        let (error, message) = if request.endpoint_type == CONTROLLER_ENDPOINT {
            (
                ResponseError::MismatchedEndpointType,
                "the request was sent to a broker endpoint, not a controller one",
            )
        } else {
            (ResponseError::UnsupportedEndpointType, "unknown endpoint type")
        };
        return error_response(&request, error.code())
            .with_error_message(Some(str_bytes(message)))
            .with_endpoint_type(request.endpoint_type);
    }
    let view = &broker.cluster;
    let listed = |b: BrokerEndpoint, fenced: bool| {
        DescribeClusterBroker::default()
            .with_broker_id(BrokerId(b.id))
            .with_host(str_bytes(b.host))
            .with_port(b.port)
            .with_rack(b.rack.map(str_bytes))
            .with_is_fenced(fenced)
    };
    let mut brokers: Vec<DescribeClusterBroker> = view
        .brokers(broker)
        .into_iter()
        .map(|b| listed(b, false))
        .collect();
    if let ClusterView::Cluster(node) = view {
        if version >= 2 && request.include_fenced_brokers {
            brokers.extend(node.fenced_brokers().into_iter().map(|b| listed(b, true)));
            brokers.sort_by_key(|b| b.broker_id.0);
        }
    }
    DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(str_bytes(view.cluster_id(broker)))
        .with_controller_id(BrokerId(view.controller_id(broker)))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}

pub fn error_response(_request: &DescribeClusterRequest, code: i16) -> DescribeClusterResponse {
    DescribeClusterResponse::default().with_error_code(code)
}
