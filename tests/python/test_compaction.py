"""Acceptance 6 (compaction): a compacted topic written with repeated keys and tombstones ends,
after cleaning, with the latest value per key and no tombstone older than delete.retention.ms,
as read by a real consumer from the beginning.

The broker runs retention (which also rolls segments older than segment.ms) and the cleaner
every 200 ms, so a pass happens within about a second of the last write.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, Producer, TopicPartition

from sapper_util import Rec, ck_consume_all, ck_consumer, ck_create_topic, ck_produce, unique_topic, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.broker_args("--retention-check-interval-ms", "200", "--cleaner-backoff-ms", "200"),
]

KEYS = 40
ROUNDS = 6
DELETED = range(0, KEYS, 4)  # every fourth key ends with a tombstone
DELETE_RETENTION_MS = 1000
TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.bytes": "4096",
    "segment.ms": "500",
    "delete.retention.ms": str(DELETE_RETENTION_MS),
    "min.cleanable.dirty.ratio": "0.01",
}


def _key(i: int) -> bytes:
    return b"key-%03d" % i


def _value(i: int, r: int) -> bytes:
    return b"value-%03d-round-%d-" % (i, r) + b"x" * 40


def _read_all(bs: str, topic: str) -> list:
    c = ck_consumer(bs)
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()
    if high == low:
        return []
    # Offsets have gaps after compaction: read until EOF, however many records that is.
    return ck_consume_all(bs, topic, 1, {0: 1}, timeout=60)[0]


def test_compacted_topic_keeps_latest_value_per_key_and_drops_old_tombstones(broker):
    bs = broker.bootstrap
    topic = unique_topic("compact")
    ck_create_topic(bs, topic, 1, TOPIC_CONFIG)

    # Rounds of every key (small batches: many segments), then tombstones.
    for r in range(ROUNDS):
        recs = [Rec(0, _key(i), _value(i, r), [("round", str(r).encode())], None) for i in range(KEYS)]
        ck_produce(bs, topic, recs, {"linger.ms": 0, "batch.num.messages": 8, "compression.type": "lz4"})
    tombstones = [Rec(0, _key(i), None, [], None) for i in DELETED]
    ck_produce(bs, topic, tombstones, {"linger.ms": 0})
    produced = KEYS * ROUNDS + len(DELETED)
    last_write = time.time()

    expected = {_key(i): _value(i, ROUNDS - 1) for i in range(KEYS) if i not in DELETED}

    def compacted():
        msgs = _read_all(bs, topic)
        got = [(m.key(), m.value()) for m in msgs]
        return msgs if len(got) == len(expected) and all(v is not None for _, v in got) else None

    msgs = wait_until(compacted, 60, interval=0.5,
                      what="the cleaner to leave one live record per key and no tombstone")
    assert time.time() - last_write >= DELETE_RETENTION_MS / 1000 - 0.2, "tombstones went too early"

    # Latest value per key, each at the offset it was written at, in offset order.
    offsets = [m.offset() for m in msgs]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert {m.key(): m.value() for m in msgs} == expected
    for m in msgs:
        i = int(m.key()[4:])
        # Round r of key i was the (r * KEYS + i)-th record produced.
        assert m.offset() == (ROUNDS - 1) * KEYS + i, (m.key(), m.offset())
        assert dict(m.headers() or []) == {"round": str(ROUNDS - 1).encode()}

    # The partition keeps its offsets: the high watermark is where writing stopped, and writing
    # continues there.
    c = ck_consumer(bs)
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()
    assert high == produced
    [(_, offset)] = ck_produce(bs, topic, [Rec(0, b"key-new", b"v", [], None)])
    assert offset == produced

    # Stays compacted across a restart (recovery accepts the offset gaps).
    broker.restart()
    msgs = ck_consume_all(bs, topic, 1, {0: len(expected) + 1}, timeout=60)[0]
    assert {m.key(): m.value() for m in msgs} == {**expected, b"key-new": b"v"}


def test_tombstones_are_readable_until_delete_retention_ms(broker):
    bs = broker.bootstrap
    topic = unique_topic("compact-tomb")
    ck_create_topic(bs, topic, 1, {**TOPIC_CONFIG, "delete.retention.ms": "600000"})
    ck_produce(bs, topic, [Rec(0, b"a", b"1", [], None), Rec(0, b"b", b"1", [], None)])
    ck_produce(bs, topic, [Rec(0, b"a", None, [], None), Rec(0, b"b", b"2", [], None)])

    # The superseded values go; the young tombstone stays readable.
    def cleaned():
        msgs = _read_all(bs, topic)
        return msgs if len(msgs) == 2 else None

    msgs = wait_until(cleaned, 30, interval=0.5, what="the superseded values to be compacted away")
    assert [(m.offset(), m.key(), m.value()) for m in msgs] == [(2, b"a", None), (3, b"b", b"2")]


def test_records_without_a_key_are_rejected(broker):
    bs = broker.bootstrap
    topic = unique_topic("compact-nokey")
    ck_create_topic(bs, topic, 1, TOPIC_CONFIG)
    producer = Producer({"bootstrap.servers": bs, "retries": 0, "message.timeout.ms": 10000})
    errors = []
    producer.produce(topic, value=b"no key", partition=0, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(15)
    assert len(errors) == 1 and errors[0] is not None, errors
    assert errors[0].code() == KafkaError.INVALID_MSG, errors[0]  # Kafka's CORRUPT_MESSAGE (2)
