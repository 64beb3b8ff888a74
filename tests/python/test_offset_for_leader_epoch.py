"""OffsetForLeaderEpoch with a real client: librdkafka validates a consumer's position against
the leader (KIP-320) whenever the position carries a leader epoch (a committed offset, or a
seek with an epoch). The broker must answer so that validation succeeds and consumption
continues where it was, instead of librdkafka "detecting truncation" and resetting the offset.

The librdkafka debug log ("fetch" context) shows the validation request and its outcome.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError
from confluent_kafka import TopicPartition as CkTP

from sapper_util import Rec, ck_consumer, ck_create_topic, ck_produce, unique_topic

N = 20


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _consumer(bootstrap: str, group: str):
    handler = _Lines()
    logger = logging.getLogger(f"rdkafka-{unique_topic('l')}")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    c = ck_consumer(bootstrap, {"group.id": group, "debug": "fetch", "logger": logger})
    return c, handler


def _read(c, count: int, timeout: float = 30.0) -> list:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        for m in c.consume(num_messages=count - len(out), timeout=0.5):
            if m.error() is not None:
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                continue
            out.append(m)
    assert len(out) == count, f"read {len(out)} of {count}"
    return out


def _validated(handler: _Lines) -> list[str]:
    return [line for line in handler.lines if "validation succeeded" in line]


def _truncation(handler: _Lines) -> list[str]:
    return [line for line in handler.lines if "truncation" in line.lower() or "No epoch found" in line]


def test_committed_offset_with_leader_epoch_is_validated_and_kept(module_broker):
    bs = module_broker.bootstrap
    topic = unique_topic("ofle")
    ck_create_topic(bs, topic, 1)
    ck_produce(bs, topic, [Rec(0, b"k%d" % i, b"v%d" % i, [], None) for i in range(N)])
    group = unique_topic("g")

    c, _ = _consumer(bs, group)
    try:
        c.assign([CkTP(topic, 0, 0)])
        first = _read(c, N // 2)
        assert [m.offset() for m in first] == list(range(N // 2))
        assert first[-1].leader_epoch() == 0, "the single-node broker leads in epoch 0"
        c.commit(message=first[-1], asynchronous=False)
        committed = c.committed([CkTP(topic, 0)], timeout=10)[0]
        assert (committed.offset, committed.leader_epoch) == (N // 2, 0)
    finally:
        c.close()

    # A new consumer resumes from the committed position, which carries epoch 0: librdkafka
    # asks OffsetForLeaderEpoch before fetching.
    c, handler = _consumer(bs, group)
    try:
        c.assign([CkTP(topic, 0, committed.offset, leader_epoch=committed.leader_epoch)])
        rest = _read(c, N - N // 2)
        assert [m.offset() for m in rest] == list(range(N // 2, N))
        assert _validated(handler), "librdkafka did not validate the position:\n" + "\n".join(handler.lines[-40:])
        assert not _truncation(handler), _truncation(handler)
    finally:
        c.close()


def test_seek_with_a_leader_epoch_is_validated(module_broker):
    bs = module_broker.bootstrap
    topic = unique_topic("ofle-seek")
    ck_create_topic(bs, topic, 1)
    ck_produce(bs, topic, [Rec(0, b"k%d" % i, b"v%d" % i, [], None) for i in range(N)])
    c, handler = _consumer(bs, unique_topic("g"))
    try:
        c.assign([CkTP(topic, 0, 0)])
        _read(c, N)
        c.seek(CkTP(topic, 0, 5, leader_epoch=0))
        again = _read(c, 5)
        assert [m.offset() for m in again] == [5, 6, 7, 8, 9]
        assert _validated(handler), "no validation after the seek:\n" + "\n".join(handler.lines[-40:])
        assert not _truncation(handler), _truncation(handler)
    finally:
        c.close()
