//! Real requests for every API the fuzzer knows, with randomised but valid contents, and
//! record batches (plain, idempotent, or crafted with a valid CRC around hostile content).

use sapper_log::batch::testing::{batch_with_producer, simple_batch};
use sapper_wire::kafka_protocol::messages::*;
use sapper_wire::kafka_protocol::protocol::{Encodable, StrBytes};

use super::{crc32c, Rng};

/// Topics the fuzzer produces to, fetches from and describes. Names are three characters so no
/// single mutation of them can spell the well-behaved client's topic. Only the last one is
/// also a target of DeleteTopics (then recreated by Metadata's auto-creation), so deletes race
/// with produces and fetches while the others keep their configs and partitions.
pub const FUZZ_TOPICS: [&str; 5] = ["fz0", "fz1", "fz2", "fz3", "fzd"];
const DELETABLE_TOPIC: &str = "fzd";
pub const FUZZ_PARTITIONS: i32 = 3;

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Encodes a request header for `api` at `version` (header version chosen as a real client
/// would, falling back to v1 outside the codec's range).
pub fn encode_header(api_key: i16, version: i16, correlation_id: i32, client_id: Option<&str>) -> Vec<u8> {
    // Header v0 (no client id) exists only for ControlledShutdown v0; the codec encodes 1-2.
    let header_version = match ApiKey::try_from(api_key) {
        Ok(api) if api.valid_versions().min <= version && version <= api.valid_versions().max => {
            api.request_header_version(version).clamp(1, 2)
        }
        _ => 1,
    };
    let mut buf = Vec::new();
    RequestHeader::default()
        .with_request_api_key(api_key)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.map(|c| StrBytes::from_string(c.to_owned())))
        .encode(&mut buf, header_version)
        .expect("request header encodes");
    buf
}

/// Consumer groups the fuzzer joins, commits for and describes: four characters, so no single
/// mutation spells the well-behaved consumer's group.
pub const FUZZ_GROUPS: [&str; 3] = ["fzg0", "fzg1", "fzg2"];

/// How a broker answers a request it can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Promptly.
    Now,
    /// Never (Produce with acks=0).
    Never,
    /// Possibly much later (JoinGroup and SyncGroup wait for the rebalance).
    Eventually,
}

/// Builds and encodes a real request body for `api` at `version` with randomised but valid
/// contents, falling back to the all-defaults request where a field the builder sets does not
/// exist at `version`. `None` for APIs without a builder or versions the codec refuses.
pub fn encode_body(rng: &mut Rng, api: ApiKey, version: i16, names: &mut u32) -> Option<(Vec<u8>, Reply)> {
    let mut buf = Vec::new();
    let topic = |rng: &mut Rng| rng.pick(&FUZZ_TOPICS);
    let group = |rng: &mut Rng| GroupId(StrBytes::from_static_str(rng.pick(&FUZZ_GROUPS)));
    let mut silent = false;
    let result = match api {
        ApiKey::Produce => {
            use produce_request::*;
            let acks = rng.pick(&[1i16, 1, -1, 0]);
            silent = acks == 0;
            let topics = (0..rng.range(1, 2))
                .map(|_| {
                    let mut t = TopicProduceData::default();
                    if version < 13 {
                        t = t.with_name(topic_name(topic(rng)));
                    }
                    t.with_partition_data(
                        (0..rng.range(1, 2))
                            .map(|_| {
                                let mut records = record_batch(rng);
                                if rng.percent(20) {
                                    records.extend(record_batch(rng));
                                }
                                PartitionProduceData::default()
                                    .with_index(rng.range(0, i64::from(FUZZ_PARTITIONS)) as i32)
                                    .with_records(Some(records.into()))
                            })
                            .collect(),
                    )
                })
                .collect();
            ProduceRequest::default()
                .with_transactional_id(None)
                .with_acks(acks)
                .with_timeout_ms(1000)
                .with_topic_data(topics)
                .encode(&mut buf, version)
        }
        ApiKey::Fetch => {
            use fetch_request::*;
            let topics = (0..rng.range(1, 2))
                .map(|_| {
                    let mut t = FetchTopic::default();
                    if version < 13 {
                        t = t.with_topic(topic_name(topic(rng)));
                    }
                    t.with_partitions(
                        (0..rng.range(1, 3))
                            .map(|_| {
                                FetchPartition::default()
                                    .with_partition(rng.range(-1, i64::from(FUZZ_PARTITIONS)) as i32)
                                    .with_fetch_offset(rng.pick(&[0i64, 0, 1, 5, 100, -1, i64::MAX]))
                                    .with_partition_max_bytes(rng.pick(&[0i32, 1, 1024, 65_536, i32::MAX]))
                            })
                            .collect(),
                    )
                })
                .collect();
            let mut request = FetchRequest::default()
                .with_max_wait_ms(rng.range(0, 20) as i32)
                .with_min_bytes(rng.pick(&[0i32, 1, 1, 1_000_000]))
                .with_max_bytes(rng.pick(&[0i32, 1024, 1 << 20, i32::MAX]))
                .with_topics(topics);
            if version >= 7 {
                // Mostly sessionless (librdkafka's way); sometimes open a session.
                request = request
                    .with_session_id(0)
                    .with_session_epoch(rng.pick(&[-1, -1, 0]));
            }
            request.encode(&mut buf, version)
        }
        ApiKey::ListOffsets => {
            use list_offsets_request::*;
            ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name(topic(rng)))
                    .with_partitions(
                        (0..rng.range(1, 3))
                            .map(|_| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(rng.range(0, i64::from(FUZZ_PARTITIONS)) as i32)
                                    .with_timestamp(rng.pick(&[
                                        -1i64,
                                        -2,
                                        -3,
                                        -4,
                                        0,
                                        1,
                                        now_ms() - 60_000,
                                        now_ms(),
                                        i64::MAX,
                                        i64::MIN,
                                    ]))
                            })
                            .collect(),
                    )])
                .encode(&mut buf, version)
        }
        ApiKey::Metadata => {
            use metadata_request::*;
            let topics = if version >= 1 && rng.percent(20) {
                None
            } else {
                Some(
                    (0..rng.range(1, 3))
                        .map(|_| {
                            let name = if rng.percent(10) {
                                *names += 1;
                                format!("fza{names}")
                            } else {
                                topic(rng).to_owned()
                            };
                            MetadataRequestTopic::default().with_name(Some(topic_name(&name)))
                        })
                        .collect(),
                )
            };
            let mut request = MetadataRequest::default().with_topics(topics);
            if version >= 4 {
                request = request.with_allow_auto_topic_creation(rng.percent(50));
            }
            request.encode(&mut buf, version)
        }
        ApiKey::ApiVersions => {
            let mut request = ApiVersionsRequest::default();
            if version >= 3 {
                request = request
                    .with_client_software_name(StrBytes::from_static_str("sapper-fuzz"))
                    .with_client_software_version(StrBytes::from_static_str("0.1"));
            }
            request.encode(&mut buf, version)
        }
        ApiKey::CreateTopics => {
            use create_topics_request::*;
            // Mostly validate-only or an existing name, so mutations rarely create topics
            // with thousands of partitions.
            *names += 1;
            let name = if rng.percent(30) {
                format!("fzc{names}")
            } else {
                topic(rng).to_owned()
            };
            let mut configs = Vec::new();
            if rng.percent(50) {
                let (key, value) = rng.pick(&[
                    ("retention.ms", "60000"),
                    ("max.message.bytes", "2048"),
                    ("cleanup.policy", "delete"),
                    ("no.such.config", "1"),
                    ("retention.ms", "banana"),
                ]);
                configs.push(
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_static_str(key))
                        .with_value(Some(StrBytes::from_static_str(value))),
                );
            }
            CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic_name(&name))
                    .with_num_partitions(rng.pick(&[1, 1, 2, -1, 0]))
                    .with_replication_factor(rng.pick(&[1, 1, -1, 3]))
                    .with_configs(configs)])
                .with_timeout_ms(1000)
                .with_validate_only(rng.percent(70))
                .encode(&mut buf, version)
        }
        ApiKey::DeleteTopics => {
            use delete_topics_request::*;
            // Only topics the fuzzer created itself, or its deletable topic.
            let name = if rng.percent(90) {
                format!("fzc{}", rng.below(*names as usize + 1))
            } else {
                DELETABLE_TOPIC.to_owned()
            };
            let request = if version >= 6 {
                DeleteTopicsRequest::default().with_topics(vec![
                    DeleteTopicState::default().with_name(Some(topic_name(&name)))
                ])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![topic_name(&name)])
            };
            request.with_timeout_ms(1000).encode(&mut buf, version)
        }
        ApiKey::InitProducerId => InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .encode(&mut buf, version),
        ApiKey::DescribeConfigs => {
            use describe_configs_request::*;
            let (resource_type, resource_name) =
                rng.pick(&[(2i8, "fz0"), (2, "fz1"), (4, "1"), (4, ""), (2, "nope"), (3, "x")]);
            let keys = if rng.percent(50) {
                None
            } else {
                Some(vec![StrBytes::from_static_str("retention.ms")])
            };
            let mut request = DescribeConfigsRequest::default()
                .with_resources(vec![DescribeConfigsResource::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(StrBytes::from_static_str(resource_name))
                    .with_configuration_keys(keys)])
                .with_include_synonyms(rng.percent(50));
            if version >= 3 {
                request = request.with_include_documentation(rng.percent(50));
            }
            request.encode(&mut buf, version)
        }
        ApiKey::CreatePartitions => {
            use create_partitions_request::*;
            // Counts that are not an increase, or validate-only: no real growth.
            let validate_only = rng.percent(50);
            let count = if validate_only {
                rng.range(1, 8) as i32
            } else {
                rng.range(0, 3) as i32
            };
            CreatePartitionsRequest::default()
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(topic_name(topic(rng)))
                    .with_count(count)])
                .with_timeout_ms(1000)
                .with_validate_only(validate_only)
                .encode(&mut buf, version)
        }
        ApiKey::DescribeCluster => {
            let mut request =
                DescribeClusterRequest::default().with_include_cluster_authorized_operations(rng.percent(50));
            if version >= 1 {
                request = request.with_endpoint_type(1);
            }
            request.encode(&mut buf, version)
        }
        ApiKey::FindCoordinator => {
            let key = StrBytes::from_static_str(rng.pick(&FUZZ_GROUPS));
            let mut request = FindCoordinatorRequest::default();
            if version < 4 {
                request = request.with_key(key);
            } else {
                request = request.with_coordinator_keys(vec![key]);
            }
            if version >= 1 {
                // 0 = group; 1 = transaction (not served): answered with an error.
                request = request.with_key_type(rng.pick(&[0, 0, 1]));
            }
            request.encode(&mut buf, version)
        }
        ApiKey::JoinGroup => {
            use join_group_request::*;
            let n = rng.below(32) + 1;
            let metadata = rng.bytes(n);
            JoinGroupRequest::default()
                .with_group_id(group(rng))
                .with_session_timeout_ms(rng.pick(&[6000, 10_000, 1, 1_000_000]))
                .with_rebalance_timeout_ms(rng.pick(&[100, 1000, -1]))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(metadata.into())])
                .encode(&mut buf, version)
        }
        ApiKey::SyncGroup => {
            use sync_group_request::*;
            let n = rng.below(32);
            let assignment = rng.bytes(n);
            SyncGroupRequest::default()
                .with_group_id(group(rng))
                .with_generation_id(rng.range(-1, 3) as i32)
                .with_member_id(StrBytes::from_static_str("fuzz-member"))
                .with_assignments(vec![SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_static_str("fuzz-member"))
                    .with_assignment(assignment.into())])
                .encode(&mut buf, version)
        }
        ApiKey::Heartbeat => HeartbeatRequest::default()
            .with_group_id(group(rng))
            .with_generation_id(rng.range(-1, 3) as i32)
            .with_member_id(StrBytes::from_static_str("fuzz-member"))
            .encode(&mut buf, version),
        ApiKey::LeaveGroup => {
            use leave_group_request::*;
            let request = LeaveGroupRequest::default().with_group_id(group(rng));
            if version < 3 {
                request.with_member_id(StrBytes::from_static_str("fuzz-member"))
            } else {
                request.with_members(vec![
                    MemberIdentity::default().with_member_id(StrBytes::from_static_str("fuzz-member"))
                ])
            }
            .encode(&mut buf, version)
        }
        ApiKey::OffsetCommit => {
            use offset_commit_request::*;
            OffsetCommitRequest::default()
                .with_group_id(group(rng))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic(rng)))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(rng.range(0, i64::from(FUZZ_PARTITIONS)) as i32)
                        .with_committed_offset(rng.pick(&[0, 1, 100, -1, i64::MAX]))
                        .with_committed_metadata(Some(StrBytes::from_static_str("fuzz")))])])
                .encode(&mut buf, version)
        }
        ApiKey::OffsetFetch => {
            use offset_fetch_request::*;
            let partitions = vec![rng.range(0, i64::from(FUZZ_PARTITIONS)) as i32];
            let request = if version < 8 {
                OffsetFetchRequest::default()
                    .with_group_id(group(rng))
                    .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                        .with_name(topic_name(topic(rng)))
                        .with_partition_indexes(partitions)]))
            } else {
                OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                    .with_group_id(group(rng))
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(topic_name(topic(rng)))
                        .with_partition_indexes(partitions)]))])
            };
            request.encode(&mut buf, version)
        }
        ApiKey::ListGroups => ListGroupsRequest::default().encode(&mut buf, version),
        ApiKey::DescribeGroups => DescribeGroupsRequest::default()
            .with_groups(vec![
                group(rng),
                GroupId(StrBytes::from_static_str("fz-no-such-group")),
            ])
            .encode(&mut buf, version),
        ApiKey::DeleteGroups => DeleteGroupsRequest::default()
            .with_groups_names(vec![
                group(rng),
                GroupId(StrBytes::from_static_str("fz-no-such-group")),
            ])
            .encode(&mut buf, version),
        ApiKey::OffsetForLeaderEpoch => {
            use offset_for_leader_epoch_request::*;
            // replica_id exists from v3 on.
            let replica = if version >= 3 {
                rng.pick(&[-1, 0, 1, 2])
            } else {
                -1
            };
            OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(replica))
                .with_topics(vec![OffsetForLeaderTopic::default()
                    .with_topic(topic_name(topic(rng)))
                    .with_partitions(vec![OffsetForLeaderPartition::default()
                        .with_partition(rng.range(0, i64::from(FUZZ_PARTITIONS)) as i32)
                        .with_current_leader_epoch(rng.pick(&[-1, 0, 1, i32::MAX, i32::MIN]))
                        .with_leader_epoch(rng.pick(&[-1, 0, 1, 7, i32::MAX, i32::MIN]))])])
                .encode(&mut buf, version)
        }
        ApiKey::OffsetDelete => {
            use offset_delete_request::*;
            OffsetDeleteRequest::default()
                .with_group_id(group(rng))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(topic_name(topic(rng)))
                    .with_partitions(vec![OffsetDeleteRequestPartition::default()
                        .with_partition_index(
                            rng.range(0, i64::from(FUZZ_PARTITIONS)) as i32
                        )])])
                .encode(&mut buf, version)
        }
        // No randomized generator (the quorum and election admin APIs): the all-defaults
        // request below.
        _ => Err(anyhow::anyhow!("no randomized request for {api:?}")),
    };
    let reply = if silent {
        Reply::Never
    } else if matches!(api, ApiKey::JoinGroup | ApiKey::SyncGroup) {
        Reply::Eventually
    } else {
        Reply::Now
    };
    if result.is_ok() {
        return Some((buf, reply));
    }
    encode_default(api, version).map(|bytes| (bytes, reply))
}

/// The all-defaults request of `api` at `version`: every field at its default exists at every
/// version, so this encodes wherever the codec knows the version. (Not Produce: its default
/// has acks=0, which is never answered.)
fn encode_default(api: ApiKey, version: i16) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    macro_rules! default {
        ($($key:ident => $request:ty),* $(,)?) => {
            match api {
                $(ApiKey::$key => <$request>::default().encode(&mut buf, version),)*
                _ => return None,
            }
        };
    }
    let result = default!(
        Fetch => FetchRequest,
        ListOffsets => ListOffsetsRequest,
        Metadata => MetadataRequest,
        ApiVersions => ApiVersionsRequest,
        CreateTopics => CreateTopicsRequest,
        DeleteTopics => DeleteTopicsRequest,
        InitProducerId => InitProducerIdRequest,
        DescribeConfigs => DescribeConfigsRequest,
        CreatePartitions => CreatePartitionsRequest,
        DescribeCluster => DescribeClusterRequest,
        DescribeQuorum => DescribeQuorumRequest,
        ElectLeaders => ElectLeadersRequest,
        AddRaftVoter => AddRaftVoterRequest,
        RemoveRaftVoter => RemoveRaftVoterRequest,
        FindCoordinator => FindCoordinatorRequest,
        JoinGroup => JoinGroupRequest,
        SyncGroup => SyncGroupRequest,
        Heartbeat => HeartbeatRequest,
        LeaveGroup => LeaveGroupRequest,
        OffsetCommit => OffsetCommitRequest,
        OffsetFetch => OffsetFetchRequest,
        ListGroups => ListGroupsRequest,
        DescribeGroups => DescribeGroupsRequest,
        DeleteGroups => DeleteGroupsRequest,
        OffsetDelete => OffsetDeleteRequest,
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
    );
    result.ok().map(|()| buf)
}

/// One record batch with a valid CRC: plain, from an idempotent producer, or crafted (odd
/// attributes, extreme timestamps, garbage records, counts that disagree), so the broker's
/// admission, offset assignment, time index and record walking all see hostile content that
/// its checksum check lets through.
pub fn record_batch(rng: &mut Rng) -> Vec<u8> {
    let count = rng.range(1, 4) as i32;
    let n = rng.below(64);
    let value = rng.bytes(n);
    match rng.below(10) {
        0..=4 => simple_batch(count, now_ms(), &value),
        5 | 6 => {
            let producer_id = rng.range(0, 3);
            let epoch = rng.range(0, 2) as i16;
            let sequence = rng.pick(&[0, 0, 1, 2, 5, i32::MAX - 1, i32::MAX, -1]);
            batch_with_producer(count, now_ms(), &value, producer_id, epoch, sequence)
        }
        _ => crafted_batch(rng, count, &value),
    }
}

fn crafted_batch(rng: &mut Rng, count: i32, value: &[u8]) -> Vec<u8> {
    let mut batch = simple_batch(count, now_ms(), value);
    let put =
        |batch: &mut Vec<u8>, at: usize, bytes: &[u8]| batch[at..at + bytes.len()].copy_from_slice(bytes);
    let attributes: i16 = rng.pick(&[0, 0, 1, 2, 3, 4, 5, 7, 8, 0x10, 0x20, 0x30, 0x18, -1]);
    put(&mut batch, 21, &attributes.to_be_bytes());
    let timestamps = [
        now_ms(),
        0,
        -1,
        i64::MIN,
        i64::MAX,
        now_ms() + 1_000_000_000,
        now_ms() - 86_400_000,
    ];
    put(&mut batch, 27, &rng.pick(&timestamps).to_be_bytes());
    put(&mut batch, 35, &rng.pick(&timestamps).to_be_bytes());
    if rng.percent(50) {
        // Records replaced by garbage, or mangled in place.
        let records_len = batch.len() - 61;
        if rng.percent(50) {
            batch.truncate(61);
            let n = rng.below(records_len * 2 + 8);
            batch.extend(rng.bytes(n));
        } else if records_len > 0 {
            for _ in 0..=rng.below(4) {
                let i = 61 + rng.below(records_len);
                batch[i] = rng.next_u64() as u8;
            }
        }
    }
    if rng.percent(20) {
        let (records, delta) = rng.pick(&[(0, -1), (1, 5), (3, 0), (i32::MAX, i32::MAX - 1), (2, i32::MAX)]);
        put(&mut batch, 57, &records.to_be_bytes());
        put(&mut batch, 23, &delta.to_be_bytes());
    }
    let length = (batch.len() - 12) as i32;
    put(&mut batch, 8, &length.to_be_bytes());
    let crc = crc32c(&batch[21..]);
    put(&mut batch, 17, &crc.to_be_bytes());
    batch
}
