//! InitProducerId for idempotent producers: a fresh producer id with epoch 0 every time, as
//! Kafka does when there is no transactional id (a producer that re-initializes after an
//! error, KIP-360, simply gets a new id). Transactions are not supported yet. Ids come from
//! [`crate::producer_ids::ProducerIdSource`]: a local file on a single node, blocks from the
//! controller in a cluster (COORDINATOR_LOAD_IN_PROGRESS while no block has arrived).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;
use crate::producer_ids::ProducerIdError;

pub async fn handle(
    broker: &Broker,
    request: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    match request.transactional_id.as_ref().map(|id| id.0.as_str()) {
        // Kafka: an empty transactional id is an invalid request.
        Some("") => return error_response(&request, ResponseError::InvalidRequest.code()),
        Some(_) => return error_response(&request, ResponseError::UnsupportedVersion.code()),
        None => {}
    }
    match broker.producer_ids.next_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e @ ProducerIdError::Storage(_)) => {
            tracing::error!(error = %e, "cannot reserve producer ids");
            error_response(&request, e.kafka_code())
        }
        // COORDINATOR_LOAD_IN_PROGRESS: the client retries.
        Err(e @ ProducerIdError::NotReady(_)) => {
            tracing::info!(error = %e, "InitProducerId: no producer id block yet");
            error_response(&request, e.kafka_code())
        }
    }
}

pub fn error_response(_request: &InitProducerIdRequest, code: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
