#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Robustness: a broker under a storm of hostile frames keeps serving a well-behaved client.
//!
//! One broker process; a librdkafka producer (acks=1) and an assigned consumer work throughout
//! while many connections send more than 10,000 random, mutated, truncated, oversized and
//! unsupported frames. At the end the broker must be alive, answer fresh requests, have
//! printed no panic, and the real client must have seen no error and read back every record
//! it produced, in order. Specific error codes are checked with the project's own client.
//!
//! The fuzz is deterministic per worker: set `ROBUSTNESS_SEED` to replay a run.

mod robust_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use robust_support::good_client::{GoodClient, GOOD_PARTITIONS, GOOD_TOPIC};
use robust_support::requests::{encode_body, encode_header, Reply, FUZZ_PARTITIONS, FUZZ_TOPICS};
use robust_support::storm::{run_fuzz, OWED_READ};
use robust_support::{crc32c, BrokerProcess, Rng};
use sapper_log::batch::testing::simple_batch;
use sapper_log::batch::BatchIter;
use sapper_wire::api::SUPPORTED_APIS;
use sapper_wire::client::Client;
use sapper_wire::kafka_protocol::messages::*;
use sapper_wire::kafka_protocol::protocol::{Decodable, StrBytes};

/// Topic for the error-code checks, with a small `max.message.bytes`.
const CHECK_TOPIC: &str = "robustness-checks";
const CHECK_MAX_MESSAGE_BYTES: usize = 2048;

const DEFAULT_SEED: u64 = 0x5a99_e520_2601;
/// Frames per run (`ROBUSTNESS_FRAMES` overrides, for soaking); at least 10,000 must go out.
const DEFAULT_FRAMES: usize = 24_000;
/// Whole-test bound for the well-behaved client.
const GOOD_CLIENT_BUDGET: Duration = Duration::from_secs(55);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_survives_hostile_frames_while_a_real_client_keeps_working() {
    let started = Instant::now();
    let seed = std::env::var("ROBUSTNESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let frames = std::env::var("ROBUSTNESS_FRAMES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_FRAMES);
    println!("robustness: seed {seed} (set ROBUSTNESS_SEED to replay), {frames} frames");
    generator_covers_every_served_version();

    let mut broker = BrokerProcess::start();
    let addr = broker.addr;
    create_topics(addr).await;

    let good = GoodClient::start(addr, started + GOOD_CLIENT_BUDGET);
    good.wait_for_progress(Duration::from_secs(15)).await;

    let fuzz_started = Instant::now();
    let stats = run_fuzz(addr, seed, frames).await;
    let fuzz_elapsed = fuzz_started.elapsed();
    println!(
        "robustness: {} frames over {} connections in {:.1}s: {} answered, {} closed, {} unanswered; {:?}",
        stats.frames,
        stats.connections,
        fuzz_elapsed.as_secs_f64(),
        stats.answered,
        stats.closed,
        stats.unanswered,
        stats.by_kind
    );
    assert!(
        broker.is_alive(),
        "broker died during the fuzz phase:\n{}",
        tail(&broker.stderr())
    );

    let batches = fuzz_logs_are_intact(addr).await;
    println!("robustness: {batches} batches in the fuzz topics read back valid and contiguous");
    error_code_checks(addr).await;
    still_serves(addr).await;

    let report = good.finish().await;
    println!(
        "robustness: well-behaved client produced {} and consumed {} records; {} librdkafka warnings",
        report.produced_total(),
        report.consumed_total(),
        report.warnings.len()
    );
    for warning in report.warnings.iter().take(10) {
        println!("robustness: librdkafka warning: {warning}");
    }

    let stderr = broker.stderr();
    println!(
        "robustness: broker peak RSS {:?} KiB, {} connections closed for bad input, total {:.1}s",
        broker.peak_rss_kib(),
        stderr.matches("closing connection").count(),
        started.elapsed().as_secs_f64()
    );
    assert!(broker.is_alive(), "broker died:\n{}", tail(&stderr));
    assert!(
        !stderr.contains("panicked"),
        "broker panicked:\n{}",
        tail(&stderr)
    );
    assert!(
        broker.extra_stdout().is_empty(),
        "unexpected stdout: {:?}",
        broker.extra_stdout()
    );
    assert_eq!(
        stats.connect_failures, 0,
        "connections refused during the fuzz phase"
    );
    assert!(
        stats.violations.is_empty(),
        "{} frames got the wrong reaction, first ones:\n{}",
        stats.violation_count,
        stats.violations.join("\n")
    );
    assert!(
        stats.frames >= 10_000,
        "only {} frames sent within the budget",
        stats.frames
    );
    if let Some(peak) = broker.peak_rss_kib() {
        assert!(
            peak < 2 * 1024 * 1024,
            "broker peak RSS {peak} KiB: something allocated from a prefix"
        );
    }
    report.assert_complete();
}

/// Every served API and version has a real request in the generator, and crafted batches
/// carry the checksum the broker computes.
fn generator_covers_every_served_version() {
    let batch = simple_batch(3, 1, b"crc");
    assert_eq!(
        crc32c(&batch[21..]).to_be_bytes(),
        batch[17..21],
        "test CRC-32C disagrees with sapper-log"
    );
    let mut rng = Rng::new(1);
    let mut names = 0;
    for served in SUPPORTED_APIS {
        for version in served.min..=served.max {
            assert!(
                encode_body(&mut rng, served.key, version, &mut names).is_some(),
                "generator cannot encode {:?} v{version}",
                served.key
            );
        }
    }
}

/// The end of a broker's stderr, led by its first panic or allocation-failure line (which a
/// long backtrace would otherwise push out of view).
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let first_failure = lines
        .iter()
        .find(|l| l.contains("panicked") || l.contains("memory allocation"))
        .copied()
        .unwrap_or_default();
    format!(
        "{first_failure}\n...\n{}",
        lines[lines.len().saturating_sub(40)..].join("\n")
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn creatable(name: &str, partitions: i32) -> create_topics_request::CreatableTopic {
    create_topics_request::CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
}

async fn create_topics(addr: SocketAddr) {
    let mut client = Client::connect(addr).await.unwrap();
    let mut topics = vec![
        creatable(GOOD_TOPIC, GOOD_PARTITIONS),
        creatable(CHECK_TOPIC, 1).with_configs(vec![create_topics_request::CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("max.message.bytes"))
            .with_value(Some(StrBytes::from_string(CHECK_MAX_MESSAGE_BYTES.to_string())))]),
    ];
    // fz0, fz1 and fzd use the defaults; fz2 rolls and deletes tiny segments all the time
    // (retention runs every 500 ms); fz3 stamps LogAppendTime, which rewrites batches on append.
    let fuzz_configs: [&[(&str, &str)]; 5] = [
        &[],
        &[],
        &[
            ("segment.bytes", "16384"),
            ("segment.ms", "1000"),
            ("retention.ms", "2000"),
        ],
        &[("message.timestamp.type", "LogAppendTime")],
        &[],
    ];
    topics.extend(FUZZ_TOPICS.iter().zip(fuzz_configs).map(|(name, configs)| {
        creatable(name, FUZZ_PARTITIONS).with_configs(
            configs
                .iter()
                .map(|(key, value)| {
                    create_topics_request::CreatableTopicConfig::default()
                        .with_name(StrBytes::from_static_str(key))
                        .with_value(Some(StrBytes::from_static_str(value)))
                })
                .collect(),
        )
    }));
    let response = client
        .send(
            &CreateTopicsRequest::default()
                .with_topics(topics)
                .with_timeout_ms(5000),
            7,
        )
        .await
        .unwrap();
    for topic in &response.topics {
        assert_eq!(
            topic.error_code, 0,
            "creating {}: {:?}",
            topic.name.0, topic.error_message
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Specific error codes, with the project's own client
// ---------------------------------------------------------------------------------------------

fn produce_request(topic: &str, records: Vec<u8>) -> ProduceRequest {
    use produce_request::*;
    ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records.into()))])])
}

fn partition_codes(response: &ProduceResponse) -> Vec<i16> {
    response
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
        .collect()
}

async fn produce_code(client: &mut Client, topic: &str, records: Vec<u8>, version: i16) -> Vec<i16> {
    let response = client
        .send(&produce_request(topic, records), version)
        .await
        .unwrap();
    partition_codes(&response)
}

/// Sends one raw request payload on a fresh connection and requires the broker to close it
/// without answering.
async fn assert_closed_without_answer(addr: SocketAddr, what: &str, payload: &[u8]) {
    let mut client = Client::connect(addr).await.unwrap();
    let mut framed = (payload.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(payload);
    client.send_raw(&framed).await.unwrap();
    match tokio::time::timeout(OWED_READ, client.read_raw()).await {
        Ok(Ok(None) | Err(_)) => {}
        Ok(Ok(Some(frame))) => panic!(
            "{what}: expected the connection closed, got a {}-byte answer",
            frame.len()
        ),
        Err(_) => panic!("{what}: expected the connection closed, it stayed open"),
    }
}

/// A raw request whose body is encoded at `body_version` but whose header says `version`.
fn raw_request(api: ApiKey, version: i16, body_version: i16) -> Vec<u8> {
    let mut payload = encode_header(api as i16, version, 99, Some("robustness"));
    let (body, _) = encode_body(&mut Rng::new(7), api, body_version, &mut 0).unwrap();
    payload.extend_from_slice(&body);
    payload
}

const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const UNSUPPORTED_VERSION: i16 = 35;

async fn error_code_checks(addr: SocketAddr) {
    let mut client = Client::connect(addr).await.unwrap();

    // Control: a good batch is accepted.
    let ok = produce_code(&mut client, CHECK_TOPIC, simple_batch(2, now_ms(), b"fine"), 9).await;
    assert_eq!(ok, vec![0], "a valid batch must be accepted");

    // CRC mismatch, in the records and in the stored CRC itself.
    let mut batch = simple_batch(2, now_ms(), b"corrupt-me");
    let last = batch.len() - 1;
    batch[last] ^= 0x55;
    let codes = produce_code(&mut client, CHECK_TOPIC, batch, 9).await;
    assert_eq!(codes, vec![CORRUPT_MESSAGE], "payload byte flipped");
    let mut batch = simple_batch(1, now_ms(), b"crc");
    batch[17] ^= 0xff;
    let codes = produce_code(&mut client, CHECK_TOPIC, batch, 3).await;
    assert_eq!(codes, vec![CORRUPT_MESSAGE], "stored CRC flipped");

    // Larger than the topic's max.message.bytes.
    let big = simple_batch(1, now_ms(), &vec![b'x'; CHECK_MAX_MESSAGE_BYTES * 2]);
    let codes = produce_code(&mut client, CHECK_TOPIC, big, 9).await;
    assert_eq!(codes, vec![MESSAGE_TOO_LARGE], "batch over max.message.bytes");

    // Unknown topic (Produce never auto-creates).
    let codes = produce_code(
        &mut client,
        "robustness-no-such-topic",
        simple_batch(1, now_ms(), b"?"),
        9,
    )
    .await;
    assert_eq!(
        codes,
        vec![UNKNOWN_TOPIC_OR_PARTITION],
        "produce to an unknown topic"
    );

    // Versions the codec can decode but we do not serve: UNSUPPORTED_VERSION in the asked shape.
    let metadata: MetadataResponse = client
        .send(&MetadataRequest::default().with_topics(None), 13)
        .await
        .expect("Metadata v13 is answered");
    assert_eq!(metadata.error_code, UNSUPPORTED_VERSION, "Metadata v13");
    let produce: ProduceResponse = client
        .send(
            &produce_request(CHECK_TOPIC, simple_batch(1, now_ms(), b"v12")),
            12,
        )
        .await
        .expect("Produce v12 is answered");
    assert_eq!(
        partition_codes(&produce),
        vec![UNSUPPORTED_VERSION],
        "Produce v12"
    );
    let fetch: FetchResponse = client
        .send(&FetchRequest::default().with_max_wait_ms(0), 13)
        .await
        .expect("Fetch v13 is answered");
    assert_eq!(fetch.error_code, UNSUPPORTED_VERSION, "Fetch v13");

    unsupported_versions_are_answered(addr).await;

    // Versions beyond what the codec knows, and APIs we do not serve: closed, no answer
    // (dispatch.rs cannot decode them, so there is no shape to answer in).
    assert_closed_without_answer(addr, "Metadata v14", &raw_request(ApiKey::Metadata, 14, 12)).await;
    assert_closed_without_answer(addr, "Produce v2", &raw_request(ApiKey::Produce, 2, 3)).await;
    assert_closed_without_answer(addr, "Fetch v19", &raw_request(ApiKey::Fetch, 19, 12)).await;
    let unserved = (0..=100i16)
        .filter_map(|k| ApiKey::try_from(k).ok())
        .find(|&api| sapper_wire::api::supported(api).is_none())
        .expect("some known API is not served");
    let mut not_served = encode_header(unserved as i16, 0, 5, Some("robustness"));
    not_served.extend_from_slice(&[0, 1, b'g', 0, 0, 0, 0]);
    assert_closed_without_answer(addr, &format!("{unserved:?} (not served)"), &not_served).await;
    let mut unknown = encode_header(999, 0, 6, Some("robustness"));
    unknown.extend_from_slice(&[0; 8]);
    assert_closed_without_answer(addr, "API key 999", &unknown).await;
    assert_closed_without_answer(
        addr,
        "truncated Metadata v12",
        &raw_request(ApiKey::Metadata, 12, 12)[..20],
    )
    .await;

    // ApiVersions at a version we do not know: a v0 answer with UNSUPPORTED_VERSION and the
    // full table, so the client can retry at a version we serve.
    let mut raw = Client::connect(addr).await.unwrap();
    let payload = raw_request(ApiKey::ApiVersions, 99, 3);
    let mut framed = (payload.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&payload);
    raw.send_raw(&framed).await.unwrap();
    let mut frame = tokio::time::timeout(OWED_READ, raw.read_raw())
        .await
        .expect("ApiVersions v99 answered in time")
        .unwrap()
        .expect("ApiVersions v99 answered");
    let header = ResponseHeader::decode(&mut frame, 0).unwrap();
    assert_eq!(header.correlation_id, 99);
    let versions = ApiVersionsResponse::decode(&mut frame, 0).expect("a v0 ApiVersions body");
    assert_eq!(versions.error_code, UNSUPPORTED_VERSION, "ApiVersions v99");
    assert_api_table(&versions);

    // Invalid topic names.
    let long = "x".repeat(250);
    for name in ["", ".", "..", "has/slash", "spaced name", "ünï", long.as_str()] {
        let response = client
            .send(
                &CreateTopicsRequest::default()
                    .with_topics(vec![creatable(name, 1)])
                    .with_timeout_ms(5000),
                7,
            )
            .await
            .unwrap();
        let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
        assert_eq!(codes, vec![INVALID_TOPIC_EXCEPTION], "CreateTopics {name:?}");
    }
}

/// Every version the codec decodes but we do not serve, of every served API, is answered with
/// the request's correlation id (UNSUPPORTED_VERSION in the asked shape), never by a closed
/// connection because the error response does not fit the version.
async fn unsupported_versions_are_answered(addr: SocketAddr) {
    let mut rng = Rng::new(11);
    for served in SUPPORTED_APIS.iter().filter(|a| a.key != ApiKey::ApiVersions) {
        let codec = served.key.valid_versions();
        for version in (codec.min..=codec.max).filter(|v| !(served.min..=served.max).contains(v)) {
            // A body that asks for an answer (not Produce acks=0); bounded retries.
            let body = (0..64)
                .filter_map(|_| encode_body(&mut rng, served.key, version, &mut 0))
                .find(|(_, reply)| *reply != Reply::Never);
            let mut payload = encode_header(served.key as i16, version, 4242, Some("robustness"));
            let Some((body, _)) = body else {
                // kafka-protocol 0.18 lists versions its message codec cannot handle
                // (InitProducerId v6, OffsetCommit/OffsetFetch v10): undecodable, so closed.
                payload.extend_from_slice(&[0; 16]);
                let what = format!(
                    "{:?} v{version} (in valid_versions, not in the codec)",
                    served.key
                );
                assert_closed_without_answer(addr, &what, &payload).await;
                continue;
            };
            payload.extend_from_slice(&body);
            let mut framed = (payload.len() as i32).to_be_bytes().to_vec();
            framed.extend_from_slice(&payload);
            let mut client = Client::connect(addr).await.unwrap();
            client.send_raw(&framed).await.unwrap();
            match tokio::time::timeout(OWED_READ, client.read_raw()).await {
                Ok(Ok(Some(frame))) => assert_eq!(
                    frame.get(..4),
                    Some(&4242i32.to_be_bytes()[..]),
                    "{:?} v{version}: wrong correlation id",
                    served.key
                ),
                other => panic!(
                    "{:?} v{version} (decodable, not served) must be answered with UNSUPPORTED_VERSION, got {other:?}",
                    served.key
                ),
            }
        }
    }
}

fn assert_api_table(versions: &ApiVersionsResponse) {
    // Keys and maxima exactly as in the table; an advertised minimum may sit below the lowest
    // version we decode (Produce advertises v0 as Kafka 4 does and refuses v0-2).
    let table: Vec<(i16, i16)> = versions
        .api_keys
        .iter()
        .map(|a| (a.api_key, a.max_version))
        .collect();
    let expected: Vec<(i16, i16)> = SUPPORTED_APIS.iter().map(|a| (a.key as i16, a.max)).collect();
    assert_eq!(table, expected, "advertised API table");
    for (advertised, served) in versions.api_keys.iter().zip(SUPPORTED_APIS) {
        assert!(
            advertised.min_version <= served.min,
            "{:?} advertised from v{}",
            served.key,
            advertised.min_version
        );
    }
}

/// Everything the storm managed to append to the fuzz topics reads back as valid batches
/// (CRC, header) with contiguous offsets: hostile input may be refused, never half-stored.
/// Returns the number of batches checked.
async fn fuzz_logs_are_intact(addr: SocketAddr) -> usize {
    const OFFSET_OUT_OF_RANGE: i16 = 1;
    let mut client = Client::connect(addr).await.unwrap();
    let topics = FUZZ_TOPICS
        .iter()
        .map(|t| metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name(t))))
        .collect();
    let metadata: MetadataResponse = client
        .send(
            &MetadataRequest::default()
                .with_topics(Some(topics))
                .with_allow_auto_topic_creation(false),
            12,
        )
        .await
        .unwrap();
    let mut checked = 0;
    for topic in &metadata.topics {
        println!(
            "robustness: fuzz topic {:?}: error {}, {} partitions",
            topic.name.as_ref().map(|n| n.0.as_str()),
            topic.error_code,
            topic.partitions.len()
        );
    }
    for topic in metadata.topics.iter().filter(|t| t.error_code == 0) {
        let name = topic.name.clone().unwrap();
        for partition in &topic.partitions {
            let index = partition.partition_index;
            let mut offset = 0i64;
            let mut previous_last: Option<i64> = None;
            // Bounded: each round either advances past at least one batch or ends the walk.
            for _ in 0..10_000 {
                use fetch_request::{FetchPartition, FetchTopic};
                let request = FetchRequest::default()
                    .with_max_wait_ms(0)
                    .with_max_bytes(8 << 20)
                    .with_topics(vec![FetchTopic::default()
                        .with_topic(name.clone())
                        .with_partitions(vec![FetchPartition::default()
                            .with_partition(index)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(4 << 20)])]);
                let response: FetchResponse = client.send(&request, 12).await.unwrap();
                let data = &response.responses[0].partitions[0];
                if data.error_code == OFFSET_OUT_OF_RANGE && offset < data.log_start_offset {
                    // Retention (fz2) deleted what we were about to read.
                    offset = data.log_start_offset;
                    previous_last = None;
                    continue;
                }
                assert_eq!(data.error_code, 0, "{}/{index} at {offset}", name.0);
                let records = data.records.clone().unwrap_or_default();
                if records.is_empty() {
                    assert!(
                        offset >= data.high_watermark,
                        "{}/{index}: no data below the high watermark",
                        name.0
                    );
                    break;
                }
                for batch in BatchIter::validated(&records) {
                    let batch = batch.unwrap_or_else(|e| {
                        panic!("{}/{index} at {offset}: stored batch invalid: {e}", name.0)
                    });
                    if let Some(last) = previous_last {
                        assert_eq!(
                            batch.base_offset(),
                            last + 1,
                            "{}/{index}: offsets not contiguous",
                            name.0
                        );
                    }
                    previous_last = Some(batch.last_offset());
                    offset = batch.last_offset() + 1;
                    checked += 1;
                }
            }
        }
    }
    checked
}

/// After the storm: a fresh connection gets ApiVersions and Metadata answers as usual.
async fn still_serves(addr: SocketAddr) {
    let mut client = Client::connect(addr).await.unwrap();
    let versions: ApiVersionsResponse = client
        .send(
            &ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("robustness"))
                .with_client_software_version(StrBytes::from_static_str("1")),
            3,
        )
        .await
        .unwrap();
    assert_eq!(versions.error_code, 0);
    assert_api_table(&versions);
    let metadata: MetadataResponse = client
        .send(
            &MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name(GOOD_TOPIC))),
            ])),
            12,
        )
        .await
        .unwrap();
    assert_eq!(metadata.topics.len(), 1);
    assert_eq!(metadata.topics[0].error_code, 0);
    assert_eq!(metadata.topics[0].partitions.len(), GOOD_PARTITIONS as usize);
}

// ---------------------------------------------------------------------------------------------
// Regressions for two denial-of-service bugs this test found (both fixed)
// ---------------------------------------------------------------------------------------------

/// The vendored kafka-protocol patch bounds an array count by the bytes remaining, but the
/// decoder still pre-allocates `count × size_of::<Element>()`, about 112 bytes per claimed
/// `CreatableTopic`. A 48 MiB CreateTopics frame claiming one topic per byte asks for ~5.6 GB
/// at once; wherever that allocation fails (here `ulimit -v`; in production strict overcommit
/// or a host smaller than the request times the element size) the broker aborts
/// ("memory allocation of N bytes failed"). Fixed in vendor/kafka-protocol: pre-allocation is
/// capped at 1024 elements and the vector grows with what actually decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frame_claiming_many_array_elements_does_not_abort_the_broker() {
    let mut broker = BrokerProcess::start_with_address_space_limit(Some(4 * 1024 * 1024));
    let body_len: usize = 48 << 20;
    let mut payload = encode_header(ApiKey::CreateTopics as i16, 2, 1, Some("robustness"));
    payload.extend_from_slice(&((body_len - 4) as i32).to_be_bytes());
    payload.resize(payload.len() + body_len - 4, 0);
    let mut framed = (payload.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&payload);
    let mut client = Client::connect(broker.addr).await.unwrap();
    let _ = client.send_raw(&framed).await;
    let _ = tokio::time::timeout(Duration::from_secs(20), client.read_raw()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(broker.is_alive(), "broker died:\n{}", tail(&broker.stderr()));
    let mut fresh = Client::connect(broker.addr).await.unwrap();
    let versions: ApiVersionsResponse = fresh.send(&ApiVersionsRequest::default(), 3).await.unwrap();
    assert_eq!(versions.error_code, 0);
}

/// Creating partitions is synchronous file work (about 10 ms each on this machine) done inside
/// the async request handler, on a runtime worker thread, under the registry's blocking
/// `change_lock`. While one CreateTopics (or CreatePartitions) with thousands of partitions
/// runs (30 s for 3,000 partitions, 105 s for the allowed maximum of 10,000), every other
/// topic change (CreateTopics, DeleteTopics, Metadata auto-creation) parks another worker
/// thread on that lock; once all workers are parked (two on a 2-core host) no client gets any
/// answer. Even with one creation alone, a request on another connection sometimes waited the
/// whole creation out. Any client can do this. Fixed: topic changes run on the blocking pool
/// (`TopicRegistry::change`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_partition_counts_stall_other_clients() {
    let broker = BrokerProcess::start();
    let addr = broker.addr;
    create_topics(addr).await;
    let creator = tokio::spawn(async move {
        let mut client = Client::connect(addr).await.unwrap();
        let request = CreateTopicsRequest::default()
            .with_topics(vec![creatable("wide", 2000)])
            .with_timeout_ms(120_000);
        client.send(&request, 7).await.map(|r| r.topics[0].error_code)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A second topic change waits on the registry's (blocking) change lock, on a second
    // runtime worker: with as many of these as the broker has cores, nothing else runs.
    let second = tokio::spawn(async move {
        let mut client = Client::connect(addr).await.unwrap();
        let request = CreateTopicsRequest::default()
            .with_topics(vec![creatable("narrow", 1)])
            .with_timeout_ms(120_000);
        client.send(&request, 7).await.map(|r| r.topics[0].error_code)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut worst = Duration::ZERO;
    for round in 0..10 {
        let started = Instant::now();
        let mut client = Client::connect(addr).await.unwrap();
        let request = produce_request(GOOD_TOPIC, simple_batch(1, now_ms(), b"during"));
        let codes = tokio::time::timeout(Duration::from_secs(60), client.send(&request, 9))
            .await
            .expect("Produce answered within 60 s")
            .map(|r| partition_codes(&r))
            .unwrap();
        assert_eq!(codes, vec![0], "round {round}");
        let metadata: MetadataResponse = tokio::time::timeout(
            Duration::from_secs(60),
            client.send(&MetadataRequest::default().with_topics(None), 12),
        )
        .await
        .expect("Metadata answered within 60 s")
        .unwrap();
        assert!(!metadata.topics.is_empty());
        worst = worst.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(creator.await.unwrap().unwrap(), 0);
    assert_eq!(second.await.unwrap().unwrap(), 0);
    assert!(
        worst < Duration::from_secs(1),
        "Produce + Metadata on another connection took up to {worst:?} during a 2,000-partition CreateTopics"
    );
}
