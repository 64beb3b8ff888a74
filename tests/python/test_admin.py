"""Admin behaviours through confluent-kafka's AdminClient (librdkafka), and produce errors.

The module's broker runs with --auto-create-topics false.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    ConfigResource, ConfigSource, NewPartitions, NewTopic, ResourceType,
)

from sapper_util import (
    Rec, ck_admin, ck_consume_all, ck_create_topic, ck_produce, unique_topic, wait_for_topic_ready,
    wait_until,
)

# Kafka's INVALID_TOPIC_EXCEPTION (17); librdkafka names it TOPIC_EXCEPTION.
INVALID_TOPIC_EXCEPTION = KafkaError.TOPIC_EXCEPTION


def _topics(bs: str) -> dict:
    return ck_admin(bs).list_topics(timeout=10).topics


def _create_error(bs: str, topic: NewTopic, **kwargs) -> KafkaError | None:
    fut = ck_admin(bs).create_topics([topic], request_timeout=15, operation_timeout=15,
                                     **kwargs)[topic.topic]
    try:
        fut.result(20)
        return None
    except KafkaException as e:
        return e.args[0]


def test_create_topic_validate_only_creates_nothing(module_broker):
    bs = module_broker.bootstrap
    name = unique_topic("validate")
    err = _create_error(bs, NewTopic(name, 3, 1), validate_only=True)
    assert err is None, f"validate_only CreateTopics failed: {err}"
    time.sleep(0.5)
    assert name not in _topics(bs), "validate_only created the topic"
    # An invalid request is still rejected when only validating.
    err = _create_error(bs, NewTopic("a/b", 1, 1), validate_only=True)
    assert err is not None and err.code() == INVALID_TOPIC_EXCEPTION, err


@pytest.mark.parametrize("name", ["a/b", "..", ".", "x" * 250, "bad name", "ä"],
                         ids=["slash", "dotdot", "dot", "250chars", "space", "non-ascii"])
def test_create_topic_invalid_name_rejected(module_broker, name):
    bs = module_broker.bootstrap
    err = _create_error(bs, NewTopic(name, 1, 1))
    assert err is not None, f"topic {name!r} was created"
    assert err.code() == INVALID_TOPIC_EXCEPTION, f"{name!r}: {err.code()} {err.str()}"
    assert name not in _topics(bs)


def test_create_topic_249_chars_accepted(module_broker):
    bs = module_broker.bootstrap
    name = unique_topic("long")
    name = name + "x" * (249 - len(name))
    assert _create_error(bs, NewTopic(name, 1, 1)) is None
    wait_for_topic_ready(bs, name, 1)


def test_create_topic_duplicate(module_broker):
    bs = module_broker.bootstrap
    name = unique_topic("dup")
    ck_create_topic(bs, name, 2)
    err = _create_error(bs, NewTopic(name, 2, 1))
    assert err is not None and err.code() == KafkaError.TOPIC_ALREADY_EXISTS, err
    # The original is untouched.
    assert len(_topics(bs)[name].partitions) == 2


def test_create_topic_bad_partition_count(module_broker):
    bs = module_broker.bootstrap
    err = _create_error(bs, NewTopic(unique_topic("zero"), 0, 1))
    assert err is not None and err.code() == KafkaError.INVALID_PARTITIONS, err


def test_create_topic_bad_replication_factor(module_broker):
    # One broker: a replication factor of 3 cannot be placed.
    bs = module_broker.bootstrap
    name = unique_topic("rf3")
    err = _create_error(bs, NewTopic(name, 1, 3))
    assert err is not None and err.code() == KafkaError.INVALID_REPLICATION_FACTOR, err
    assert name not in _topics(bs)


def test_delete_topic(module_broker):
    bs = module_broker.bootstrap
    name = unique_topic("del")
    ck_create_topic(bs, name, 3)
    ck_produce(bs, name, [Rec(p, b"k", b"v", [], None) for p in range(3)])
    fut = ck_admin(bs).delete_topics([name], request_timeout=15, operation_timeout=15)[name]
    fut.result(20)
    wait_until(lambda: name not in _topics(bs), 15, what=f"{name} gone from metadata")
    # Deleting it again: UNKNOWN_TOPIC_OR_PARTITION.
    fut = ck_admin(bs).delete_topics([name], request_timeout=15, operation_timeout=15)[name]
    with pytest.raises(KafkaException) as ei:
        fut.result(20)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    # The name can be reused; the new topic starts empty.
    ck_create_topic(bs, name, 1)
    res = ck_produce(bs, name, [Rec(0, b"k", b"new", [], None)])
    assert res == [(0, 0)]


def test_create_partitions(module_broker):
    bs = module_broker.bootstrap
    name = unique_topic("grow")
    ck_create_topic(bs, name, 2)
    ck_admin(bs).create_partitions([NewPartitions(name, 5)], request_timeout=15,
                                   operation_timeout=15)[name].result(20)
    wait_for_topic_ready(bs, name, 5)
    res = ck_produce(bs, name, [Rec(p, b"k%d" % p, b"v", [], None) for p in range(5)])
    assert res == [(p, 0) for p in range(5)]
    # Shrinking is refused with INVALID_PARTITIONS.
    fut = ck_admin(bs).create_partitions([NewPartitions(name, 3)], request_timeout=15)[name]
    with pytest.raises(KafkaException) as ei:
        fut.result(20)
    assert ei.value.args[0].code() == KafkaError.INVALID_PARTITIONS
    assert len(_topics(bs)[name].partitions) == 5


def test_describe_topic_configs(module_broker):
    bs = module_broker.bootstrap
    name = unique_topic("cfg")
    ck_create_topic(bs, name, 1, {"retention.ms": "123456", "segment.bytes": "1048576",
                                  "cleanup.policy": "delete"})
    res = ck_admin(bs).describe_configs([ConfigResource(ResourceType.TOPIC, name)],
                                        request_timeout=15)
    (fut,) = res.values()
    entries = fut.result(20)
    assert entries["retention.ms"].value == "123456"
    assert entries["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert entries["segment.bytes"].value == "1048576"
    # Configs not set on the topic are reported too, with their defaults.
    for key in ("max.message.bytes", "message.timestamp.type", "retention.bytes"):
        assert key in entries, f"{key} missing from DescribeConfigs: {sorted(entries)}"
    assert entries["message.timestamp.type"].value == "CreateTime"
    assert entries["retention.bytes"].value == "-1"


def test_describe_unknown_topic_configs(module_broker):
    bs = module_broker.bootstrap
    res = ck_admin(bs).describe_configs(
        [ConfigResource(ResourceType.TOPIC, unique_topic("nope"))], request_timeout=15)
    (fut,) = res.values()
    with pytest.raises(KafkaException) as ei:
        fut.result(20)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_describe_broker_configs(module_broker):
    bs = module_broker.bootstrap
    res = ck_admin(bs).describe_configs([ConfigResource(ResourceType.BROKER, "1")],
                                        request_timeout=15)
    (fut,) = res.values()
    entries = fut.result(20)
    assert entries, "broker DescribeConfigs returned no configs"
    assert "auto.create.topics.enable" in entries, sorted(entries)
    assert entries["auto.create.topics.enable"].value == "false"


def test_describe_cluster(module_broker):
    fut = ck_admin(module_broker.bootstrap).describe_cluster(request_timeout=15)
    desc = fut.result(20)
    nodes = [(n.id, n.host, n.port) for n in desc.nodes]
    assert nodes == [(1, "127.0.0.1", module_broker.port)], nodes
    assert desc.controller is not None and desc.controller.id == 1
    assert desc.cluster_id, "empty cluster id"


def test_metadata_lists_broker(module_broker):
    md = ck_admin(module_broker.bootstrap).list_topics(timeout=10)
    assert {b.id: (b.host, b.port) for b in md.brokers.values()} == {1: ("127.0.0.1", module_broker.port)}
    assert md.controller_id == 1


def test_produce_unknown_topic_auto_create_off(module_broker):
    bs = module_broker.bootstrap
    name = unique_topic("unknown")
    errors = []
    p = Producer({"bootstrap.servers": bs, "message.timeout.ms": 5000,
                  "topic.metadata.propagation.max.ms": 1000})
    p.produce(name, b"v", on_delivery=lambda err, msg: errors.append(err))
    p.flush(15)
    assert len(errors) == 1 and errors[0] is not None, "produce to an unknown topic succeeded"
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC), errors[0]
    # Metadata for it answers UNKNOWN_TOPIC_OR_PARTITION and it was not auto-created.
    md = ck_admin(bs).list_topics(topic=name, timeout=10)
    t = md.topics.get(name)
    assert t is not None and t.error is not None and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, t
    assert name not in _topics(bs)


def test_produce_unknown_partition(module_broker):
    bs = module_broker.bootstrap
    name = unique_topic("twoparts")
    ck_create_topic(bs, name, 2)
    errors = []
    p = Producer({"bootstrap.servers": bs, "message.timeout.ms": 5000})
    p.produce(name, b"v", partition=7, on_delivery=lambda err, msg: errors.append(err))
    p.flush(15)
    assert len(errors) == 1 and errors[0] is not None
    # librdkafka checks the partition against metadata before sending.
    assert errors[0].code() == KafkaError._UNKNOWN_PARTITION, errors[0]


def test_oversize_record_rejected_and_broker_keeps_serving(module_broker):
    import os
    bs = module_broker.bootstrap
    name = unique_topic("big")
    ck_create_topic(bs, name, 1, {"max.message.bytes": "10000"})
    errors = []
    p = Producer({"bootstrap.servers": bs, "message.timeout.ms": 10000,
                  "compression.type": "none"})
    # Random bytes: a 20 kB record cannot fit in a 10 kB batch.
    p.produce(name, os.urandom(20_000), partition=0, on_delivery=lambda err, msg: errors.append(err))
    p.flush(20)
    assert len(errors) == 1 and errors[0] is not None, "oversize record was accepted"
    assert errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errors[0]

    # kafka-python sees MessageSizeTooLargeError from the broker too.
    from kafka import KafkaProducer
    from kafka.errors import MessageSizeTooLargeError
    kp = KafkaProducer(bootstrap_servers=bs, max_request_size=1_000_000)
    try:
        fut = kp.send(name, os.urandom(20_000), partition=0)
        with pytest.raises(MessageSizeTooLargeError):
            fut.get(timeout=20)
    finally:
        kp.close(timeout=10)

    # The broker keeps serving: a record under the limit goes in at offset 0 and reads back.
    assert ck_produce(bs, name, [Rec(0, b"k", b"x" * 5000, [], None)]) == [(0, 0)]
    msgs = ck_consume_all(bs, name, 1, {0: 1}, timeout=30)[0]
    assert [(m.offset(), m.value()) for m in msgs] == [(0, b"x" * 5000)]


def test_log_append_time_topic(module_broker):
    bs = module_broker.bootstrap
    name = unique_topic("lat")
    ck_create_topic(bs, name, 1, {"message.timestamp.type": "LogAppendTime"})
    t_before = int(time.time() * 1000)
    ck_produce(bs, name, [Rec(0, b"k%d" % i, b"v", [], 1_000_000_000_000 + i) for i in range(10)])
    t_after = int(time.time() * 1000)
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
    msgs = ck_consume_all(bs, name, 1, {0: 10}, timeout=30)[0]
    assert len(msgs) == 10
    for m in msgs:
        tstype, ts = m.timestamp()
        assert tstype == TIMESTAMP_LOG_APPEND_TIME, f"offset {m.offset()}: type {tstype}"
        assert t_before - 1000 <= ts <= t_after + 1000, f"offset {m.offset()}: ts {ts}"
