"""Restart: data survives a clean stop (SIGTERM, exit 0) and a kill -9; production continues at
the next offset; topics and their configs survive."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import ConfigResource, ResourceType

from sapper_util import (
    assert_partition_equal, by_partition, ck_admin, ck_consume_all, ck_create_topic, ck_msg_to_rec,
    ck_produce, make_records, unique_topic, wait_for_topic_ready,
)

pytestmark = pytest.mark.slow

PARTITIONS = 3


def _read_all(bs, topic, expected):
    msgs = ck_consume_all(bs, topic, PARTITIONS, {p: len(v) for p, v in expected.items()}, timeout=60)
    for p in range(PARTITIONS):
        assert [m.offset() for m in msgs[p]] == list(range(len(expected[p]))), f"partition {p} offsets"
        assert_partition_equal(p, expected[p], [ck_msg_to_rec(m) for m in msgs[p]])


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_restart_keeps_data_and_continues(broker, how):
    bs = broker.bootstrap
    topic = unique_topic(f"restart-{how}")
    ck_create_topic(bs, topic, PARTITIONS, {"retention.ms": "86400000"})
    base = int(time.time() * 1000) - 60_000
    first = make_records(3000, PARTITIONS, base)
    ck_produce(bs, topic, first, {"compression.type": "lz4", "acks": "all"})

    if how == "sigterm":
        broker.stop()  # asserts exit code 0
    else:
        broker.kill9()
    broker.start_again()  # same data dir, same port
    bs = broker.bootstrap
    wait_for_topic_ready(bs, topic, PARTITIONS)

    expected = by_partition(first, PARTITIONS)
    _read_all(bs, topic, expected)

    # Production continues at the next offset of each partition.
    more = make_records(600, PARTITIONS, base + 100_000)
    results = ck_produce(bs, topic, more, {"compression.type": "zstd"})
    next_off = {p: len(expected[p]) for p in range(PARTITIONS)}
    for (p, off), r in zip(results, more):
        assert off == next_off[p], f"partition {p}: new record at {off}, expected {next_off[p]}"
        next_off[p] += 1
        expected[p].append(r)
    _read_all(bs, topic, expected)

    # The topic's config survived.
    (fut,) = ck_admin(bs).describe_configs([ConfigResource(ResourceType.TOPIC, topic)],
                                           request_timeout=15).values()
    assert fut.result(20)["retention.ms"].value == "86400000"

    # And once more, a clean restart after the second round.
    broker.restart()
    wait_for_topic_ready(broker.bootstrap, topic, PARTITIONS)
    _read_all(broker.bootstrap, topic, expected)


def test_producer_survives_restart(broker):
    """A producer that stays connected across a broker restart delivers everything, once."""
    bs = broker.bootstrap
    topic = unique_topic("reconnect")
    ck_create_topic(bs, topic, 1)
    p = Producer({"bootstrap.servers": bs, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 60000, "reconnect.backoff.max.ms": 500})
    delivered, errors = [], []

    def cb(err, msg):
        (errors if err else delivered).append(err or msg.offset())

    for i in range(500):
        p.produce(topic, b"%d" % i, partition=0, on_delivery=cb)
    assert p.flush(30) == 0
    broker.restart()
    for i in range(500, 1000):
        p.produce(topic, b"%d" % i, partition=0, on_delivery=cb)
    assert p.flush(60) == 0
    assert not errors, errors[:5]
    assert delivered == list(range(1000))
    msgs = ck_consume_all(broker.bootstrap, topic, 1, {0: 1000}, timeout=60)[0]
    assert [m.value() for m in msgs] == [b"%d" % i for i in range(1000)]
