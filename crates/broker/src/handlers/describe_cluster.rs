//! DescribeCluster: this broker, the cluster id, and itself as controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::broker::Broker;

pub async fn handle(
    broker: &Broker,
    request: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(str_bytes(broker.identity.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.node_id()))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(broker.node_id()))
            .with_host(str_bytes(broker.advertised_host.clone()))
            .with_port(broker.advertised_port)])
        .with_cluster_authorized_operations(i32::MIN)
}

pub fn error_response(_request: &DescribeClusterRequest, code: i16) -> DescribeClusterResponse {
    DescribeClusterResponse::default().with_error_code(code)
}
