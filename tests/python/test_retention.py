"""Acceptance 6: retention deletes whole old segments; consumers below the log start recover
(auto.offset.reset=earliest) or are told OFFSET_OUT_OF_RANGE (auto.offset.reset=error).

The broker runs with --retention-check-interval-ms 200 so that retention acts within seconds.
Topics use segment.bytes=16384 (below Kafka's 1 MiB minimum; Sapper accepts it for tests).
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, TopicPartition

from sapper_util import (
    Rec, ck_consume_all, ck_consumer, ck_create_topic, ck_msg_to_rec, ck_produce, unique_topic,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.broker_args("--retention-check-interval-ms", "200")]

SEGMENT_BYTES = 16384
RECORDS = 2000
VALUE_SIZE = 500  # ~1 MiB in all: dozens of segments


def _records(n: int) -> list[Rec]:
    return [Rec(0, b"k%d" % i, (b"%08d" % i) * (VALUE_SIZE // 8), [("i", str(i).encode())], None)
            for i in range(n)]


def _produce_batches(bs: str, topic: str, recs: list[Rec]) -> None:
    # Many small batches so segments roll at batch boundaries often.
    for start in range(0, len(recs), 50):
        ck_produce(bs, topic, recs[start:start + 50], {"linger.ms": 0, "batch.num.messages": 10})


def _watermarks(bs: str, topic: str) -> tuple[int, int]:
    c = ck_consumer(bs)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()


def test_retention_bytes_moves_log_start(broker):
    bs = broker.bootstrap
    topic = unique_topic("ret-bytes")
    ck_create_topic(bs, topic, 1, {"segment.bytes": str(SEGMENT_BYTES),
                                   "retention.bytes": str(8 * SEGMENT_BYTES)})
    recs = _records(RECORDS)
    _produce_batches(bs, topic, recs)

    wait_until(lambda: (lambda w: w if w[0] > 0 else None)(_watermarks(bs, topic)),
               30, interval=0.5, what="log start offset to move above 0")

    # Retention runs periodically and may take more than one pass: within the same bound it
    # must bring the partition down to about retention.bytes (records are VALUE_SIZE plus
    # overhead, and the active segment is kept, so allow twice the limit).
    def settled():
        low, high = _watermarks(bs, topic)
        return (low, high) if (high - low) * VALUE_SIZE <= 16 * SEGMENT_BYTES else None

    low, high = wait_until(settled, 30, interval=0.5,
                           what=f"partition to shrink to ~retention.bytes={8 * SEGMENT_BYTES}")
    assert high == RECORDS
    assert 0 < low < high, (low, high)

    # Let retention settle (it only deletes whole segments, so the start is stable after this).
    time.sleep(1.0)
    low, high = _watermarks(bs, topic)

    # A consumer asked for offset 0 with auto.offset.reset=earliest resets to the log start and
    # reads every remaining record, identical to what was produced.
    msgs = ck_consume_all(bs, topic, 1, {0: high - low}, timeout=60, start=0,
                          extra={"auto.offset.reset": "earliest"})[0]
    assert msgs, "nothing consumed after reset"
    assert msgs[0].offset() == low, f"reset to offset {msgs[0].offset()}, log start is {low}"
    assert [m.offset() for m in msgs] == list(range(low, high))
    for m in msgs:
        r, e = ck_msg_to_rec(m), recs[m.offset()]
        assert (r.key, r.value, r.headers) == (e.key, e.value, e.headers), f"offset {m.offset()}"

    # With auto.offset.reset=error the same fetch surfaces OFFSET_OUT_OF_RANGE.
    c = ck_consumer(bs, {"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 20
        err = None
        while time.monotonic() < deadline and err is None:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None and m.error().code() != KafkaError._PARTITION_EOF:
                err = m.error()
            elif m.error() is None:
                pytest.fail(f"got a record at offset {m.offset()} below/at the log start {low} "
                            "instead of an out-of-range error")
        assert err is not None, "no error surfaced for a fetch below the log start"
        # librdkafka reports the broker's OFFSET_OUT_OF_RANGE either as that code or, with
        # auto.offset.reset=error, as _AUTO_OFFSET_RESET carrying the broker's error text.
        assert err.code() == KafkaError.OFFSET_OUT_OF_RANGE or (
            err.code() == KafkaError._AUTO_OFFSET_RESET and "out of range" in err.str().lower()
        ), f"unexpected error {err.code()} {err.str()}"
    finally:
        c.close()

    # Production continues at the end.
    res = ck_produce(bs, topic, [Rec(0, b"after", b"after", [], None)])
    assert res == [(0, high)]


def test_retention_ms_deletes_old_segments(broker):
    bs = broker.bootstrap
    topic = unique_topic("ret-ms")
    ck_create_topic(bs, topic, 1, {"segment.bytes": str(SEGMENT_BYTES), "retention.ms": "1000"})
    _produce_batches(bs, topic, _records(RECORDS // 2))
    low, high = wait_until(lambda: (lambda w: w if w[0] > 0 else None)(_watermarks(bs, topic)),
                           30, interval=0.5, what="log start offset to move above 0 (retention.ms=1000)")
    assert high == RECORDS // 2
    assert 0 < low <= high
    # The high watermark never moves back, even if every segment expired.
    res = ck_produce(bs, topic, [Rec(0, b"after", b"after", [], None)])
    assert res == [(0, high)]
