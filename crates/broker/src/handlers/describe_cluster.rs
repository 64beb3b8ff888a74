//! DescribeCluster: the cluster id, the controller and the brokers, from
//! [`crate::cluster::ClusterView`].

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::broker::Broker;

pub async fn handle(
    broker: &Broker,
    request: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    let view = &broker.cluster;
    let brokers = view
        .brokers(broker)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(str_bytes(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(str_bytes))
        })
        .collect();
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
