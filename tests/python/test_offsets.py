"""Acceptance 5: ListOffsets by timestamp, earliest and latest, through two real clients.

Partition 0 gets N records with known, strictly increasing explicit timestamps T0 + STEP*i:
the first half one record per batch (flush after each), the second half in one batch. The
answer for a target t is the earliest offset whose timestamp >= t, or "none" past the end.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import TopicPartition as CkTP

from sapper_util import Rec, ck_consumer, ck_create_topic, ck_produce, unique_topic

N = 20
STEP = 1000
PARTITIONS = 2  # partition 1 stays empty


def _expected(t0: int, target: int) -> int | None:
    for i in range(N):
        if t0 + STEP * i >= target:
            return i
    return None


def _targets(t0: int) -> list[int]:
    last = t0 + STEP * (N - 1)
    return [0, t0 - 86_400_000, t0 - 1, t0, t0 + 1, t0 + 500, t0 + STEP, t0 + STEP * 9 + 999,
            t0 + STEP * 10, t0 + STEP * 10 + 1, last - 1, last, last + 1, last + 3_600_000]


@pytest.fixture(scope="module")
def ts_topic(module_broker):
    bs = module_broker.bootstrap
    topic = unique_topic("ts")
    ck_create_topic(bs, topic, PARTITIONS)
    t0 = int(time.time() * 1000) - 3_600_000
    recs = [Rec(0, b"k%d" % i, b"v%d" % i, [], t0 + STEP * i) for i in range(N)]
    for r in recs[: N // 2]:
        ck_produce(bs, topic, [r])  # one batch each
    ck_produce(bs, topic, recs[N // 2:], {"linger.ms": 100})  # one batch
    return topic, t0


def test_confluent_offsets_for_times(module_broker, ts_topic):
    topic, t0 = ts_topic
    c = ck_consumer(module_broker.bootstrap)
    try:
        targets = _targets(t0)
        for target in targets:
            res = c.offsets_for_times([CkTP(topic, 0, target)], timeout=10)
            assert len(res) == 1 and res[0].error is None, f"target {target}: {res}"
            want = _expected(t0, target)
            got = res[0].offset
            assert got == (-1 if want is None else want), \
                f"offsets_for_times(t0{target - t0:+d}): got {got}, want {want}"
        # An empty partition has no record at or after any time.
        res = c.offsets_for_times([CkTP(topic, 1, t0)], timeout=10)
        assert res[0].error is None and res[0].offset == -1, f"empty partition: {res}"
        # Several partitions in one request.
        res = c.offsets_for_times([CkTP(topic, 0, t0 + STEP * 3), CkTP(topic, 1, 0)], timeout=10)
        assert sorted((r.partition, r.offset) for r in res) == [(0, 3), (1, -1)], res
    finally:
        c.close()


def test_confluent_watermarks(module_broker, ts_topic):
    topic, _ = ts_topic
    c = ck_consumer(module_broker.bootstrap)
    try:
        assert c.get_watermark_offsets(CkTP(topic, 0), timeout=10) == (0, N)
        assert c.get_watermark_offsets(CkTP(topic, 1), timeout=10) == (0, 0)
    finally:
        c.close()


def test_kafka_python_offsets_for_times(module_broker, ts_topic):
    from kafka import KafkaConsumer, TopicPartition

    topic, t0 = ts_topic
    c = KafkaConsumer(bootstrap_servers=module_broker.bootstrap, group_id=None,
                      enable_auto_commit=False, request_timeout_ms=30000)
    try:
        tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
        for target in _targets(t0):
            res = c.offsets_for_times({tp0: target}, timeout_ms=10000)
            want = _expected(t0, target)
            got = res.get(tp0)
            if want is None:
                assert got is None, f"offsets_for_times(t0{target - t0:+d}): got {got}, want None"
            else:
                assert got is not None and got.offset == want, \
                    f"offsets_for_times(t0{target - t0:+d}): got {got}, want offset {want}"
                # Kafka answers with the found record's own timestamp.
                assert got.timestamp == t0 + STEP * want, f"target {target}: {got}"
        assert c.offsets_for_times({tp1: t0}, timeout_ms=10000).get(tp1) is None
        assert c.beginning_offsets([tp0, tp1], timeout_ms=10000) == {tp0: 0, tp1: 0}
        assert c.end_offsets([tp0, tp1], timeout_ms=10000) == {tp0: N, tp1: 0}
    finally:
        c.close()
