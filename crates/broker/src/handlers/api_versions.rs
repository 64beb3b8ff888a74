//! ApiVersions: the table in `sapper_wire::api`, or v0 with UNSUPPORTED_VERSION when the
//! client asked for a version we do not serve (Kafka's rule, so it can retry lower).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;
use sapper_wire::api::SUPPORTED_APIS;

/// The response and the version to encode it at.
pub fn handle(requested_version: i16, supported: bool) -> (ApiVersionsResponse, i16) {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.advertised_min)
                .with_max_version(a.max)
        })
        .collect();
    let response = ApiVersionsResponse::default().with_api_keys(api_keys);
    if supported {
        (response, requested_version)
    } else {
        (
            response.with_error_code(ResponseError::UnsupportedVersion.code()),
            0,
        )
    }
}
