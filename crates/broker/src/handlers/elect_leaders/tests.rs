//! ElectLeaders answers built from hand-made outcomes, encoded at every version we serve
//! (kafka-protocol refuses fields set beyond the negotiated version, e.g. the top-level error
//! code at v0).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::BytesMut;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::protocol::Encodable;

use super::*;

fn encodes(response: &ElectLeadersResponse, version: i16) {
    let mut buf = BytesMut::new();
    response
        .encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("v{version}: {e}"));
}

fn request(topics: Option<&[(&str, &[i32])]>, election_type: i8) -> ElectLeadersRequest {
    ElectLeadersRequest::default()
        .with_election_type(election_type)
        .with_topic_partitions(topics.map(|ts| {
            ts.iter()
                .map(|(name, parts)| {
                    TopicPartitions::default()
                        .with_topic(TopicName(str_bytes(*name)))
                        .with_partitions(parts.to_vec())
                })
                .collect()
        }))
}

#[test]
fn outcomes_map_to_kafka_codes() {
    let cases = [
        (ElectionOutcome::Elected, 0),
        (ElectionOutcome::NotNeeded, 84),
        (ElectionOutcome::PreferredNotAvailable, 80),
        (ElectionOutcome::EligibleNotAvailable, 83),
        (ElectionOutcome::UnknownPartition, 3),
    ];
    for (outcome, code) in cases {
        let e = Election {
            topic_id: Uuid::nil(),
            partition: 0,
            outcome,
        };
        let (got, message) = election_outcome(&e, true);
        assert_eq!(got, code, "{outcome:?}");
        assert_eq!(message.is_none(), code == 0, "{outcome:?}");
    }
}

#[test]
fn answers_encode_at_every_version() {
    let mut answers = Answers::new();
    answers
        .entry("t".into())
        .or_default()
        .insert(1, (84, Some(not_needed_message(true))));
    answers.entry("t".into()).or_default().insert(0, (0, None));
    for version in 0..=2 {
        let r = response(answers.clone(), 41, version);
        assert_eq!(r.error_code, if version >= 1 { 41 } else { 0 });
        let parts = &r.replica_election_results[0].partition_result;
        assert_eq!(parts.iter().map(|p| p.partition_id).collect::<Vec<_>>(), [0, 1]);
        encodes(&r, version);
    }
}

#[test]
fn refusals_cover_every_asked_partition_and_encode() {
    let r = request(Some(&[("a", &[0, 2]), ("b", &[5])]), 7);
    for version in 0..=2 {
        let answer = refuse_all(&r, 42, "unknown election type 7", version);
        let codes: Vec<(String, i32, i16)> = answer
            .replica_election_results
            .iter()
            .flat_map(|t| {
                t.partition_result
                    .iter()
                    .map(|p| (t.topic.0.to_string(), p.partition_id, p.error_code))
            })
            .collect();
        assert_eq!(
            codes,
            [("a".into(), 0, 42), ("a".into(), 2, 42), ("b".into(), 5, 42)]
        );
        encodes(&answer, version);
    }
    let unsupported = error_response(&request(None, 0), 35);
    assert!(unsupported.replica_election_results.is_empty());
    encodes(&unsupported, 0);
}
