"""Acceptance 1: every record produced by a real client comes back identical.

For each client (confluent-kafka, kafka-python, kcat) and each compression codec, a fresh topic
with 6 partitions gets PER_CODEC records (so each client sends 100,000 in all across the five
codecs) with keys, headers, null values (tombstones) and, where the client can set them,
explicit timestamps; then everything is consumed from the beginning and compared per partition:
count, order (offsets 0..n-1 in produce order), key, value (None preserved), headers, timestamp.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME

from sapper_util import (
    CODEC_IDS, CODECS, Rec, raw_fetch_batches, assert_partition_equal, by_partition, ck_consume_all, ck_create_topic,
    ck_msg_to_rec, ck_produce, kcat, kcat_consume_json, make_records, unique_topic,
    wait_for_topic_ready,
)

PARTITIONS = 6
TOTAL_PER_CLIENT = 100_000
PER_CODEC = TOTAL_PER_CLIENT // len(CODECS)  # 20,000


def _base_ts() -> int:
    # Explicit timestamps a few minutes in the past, well inside any broker timestamp window.
    return int(time.time() * 1000) - 10 * 60 * 1000


def _check_raw_batches(bs: str, topic: str, codec: str, counts: dict[int, int]) -> None:
    """What the broker serves is the producer's batches: magic 2, the producer's codec, a valid
    CRC-32C, and base offsets that tile each partition from 0 without gaps.

    librdkafka sends a batch uncompressed when compressing would not make it smaller (small
    batches of random bytes, especially with lz4's frame overhead), so an uncompressed batch
    is legitimate; but each partition must hold batches in the producer's codec, and no batch
    may carry any other codec (the broker never re-encodes)."""
    for p in range(PARTITIONS):
        nxt = 0
        in_codec = 0
        while nxt < counts[p]:
            err, hw, batches = raw_fetch_batches(bs, topic, p, nxt)
            assert err == 0 and hw == counts[p], f"partition {p}: fetch error {err}, hw {hw}"
            assert batches, f"partition {p}: no whole batch returned at offset {nxt}"
            for b in batches:
                where = f"partition {p} batch at {b.base_offset}"
                assert b.magic == 2, f"{where}: magic {b.magic}"
                assert b.crc_ok, f"{where}: CRC-32C mismatch"
                assert b.codec in (0, CODEC_IDS[codec]), f"{where}: codec {b.codec}, produced with {codec}"
                in_codec += b.codec == CODEC_IDS[codec]
                assert b.base_offset == nxt, f"{where}: expected base offset {nxt}"
                assert b.record_count == b.last_offset_delta + 1, f"{where}: count vs lastOffsetDelta"
                nxt = b.base_offset + b.last_offset_delta + 1
        assert nxt == counts[p], f"partition {p}: batches end at {nxt}, expected {counts[p]}"
        assert in_codec > 0, f"partition {p}: no batch stored with {codec}"


def _check_offsets(results: list[tuple[int, int]], recs: list[Rec]) -> None:
    """Delivery reports: each partition's offsets are 0..n-1 in produce order."""
    next_off = {p: 0 for p in range(PARTITIONS)}
    for i, ((p, off), r) in enumerate(zip(results, recs)):
        assert p == r.partition, f"record {i} went to partition {p}, asked {r.partition}"
        assert off == next_off[p], f"record {i}: partition {p} offset {off}, expected {next_off[p]}"
        next_off[p] += 1


@pytest.mark.slow
@pytest.mark.parametrize("codec", CODECS)
def test_confluent_kafka_roundtrip(module_broker, codec):
    bs = module_broker.bootstrap
    topic = unique_topic(f"rt-ck-{codec}")
    ck_create_topic(bs, topic, PARTITIONS)
    recs = make_records(PER_CODEC, PARTITIONS, _base_ts())

    results = ck_produce(bs, topic, recs, {"compression.type": codec, "linger.ms": 20,
                                           "batch.num.messages": 2000})
    _check_offsets(results, recs)

    expected = by_partition(recs, PARTITIONS)
    _check_raw_batches(bs, topic, codec, {p: len(v) for p, v in expected.items()})
    msgs = ck_consume_all(bs, topic, PARTITIONS, {p: len(v) for p, v in expected.items()})
    for p in range(PARTITIONS):
        got_msgs = msgs[p]
        assert [m.offset() for m in got_msgs] == list(range(len(expected[p]))), f"partition {p} offsets"
        assert all(m.timestamp()[0] == TIMESTAMP_CREATE_TIME for m in got_msgs), f"partition {p}: timestamp type"
        assert_partition_equal(p, expected[p], [ck_msg_to_rec(m) for m in got_msgs])


@pytest.mark.slow
@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_roundtrip(module_broker, codec):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

    bs = module_broker.bootstrap
    topic = unique_topic(f"rt-kp-{codec}")
    admin = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=30000)
    try:
        admin.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1}})
    finally:
        admin.close()
    wait_for_topic_ready(bs, topic, PARTITIONS)

    recs = make_records(PER_CODEC, PARTITIONS, _base_ts(), null_header_values=False,
                        null_key_and_value=False)
    producer = KafkaProducer(bootstrap_servers=bs,
                             compression_type=None if codec == "none" else codec,
                             linger_ms=20, batch_size=256 * 1024)
    try:
        futures = [producer.send(topic, value=r.value, key=r.key, headers=r.headers or None,
                                 partition=r.partition, timestamp_ms=r.timestamp)
                   for r in recs]
        producer.flush(timeout=120)
        results = []
        for i, f in enumerate(futures):
            md = f.get(timeout=30)
            results.append((md.partition, md.offset))
    finally:
        producer.close(timeout=10)
    _check_offsets(results, recs)

    expected = by_partition(recs, PARTITIONS)
    _check_raw_batches(bs, topic, codec, {p: len(v) for p, v in expected.items()})
    consumer = KafkaConsumer(bootstrap_servers=bs, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", max_poll_records=5000,
                             fetch_max_bytes=8 * 1024 * 1024)
    got: dict[int, list] = {p: [] for p in range(PARTITIONS)}
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        want = sum(len(v) for v in expected.values())
        total = 0
        deadline = time.monotonic() + 120
        while total < want and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=500).items():
                got[tp.partition].extend(batch)
                total += len(batch)
    finally:
        consumer.close()
    for p in range(PARTITIONS):
        assert [m.offset for m in got[p]] == list(range(len(expected[p]))), f"partition {p} offsets"
        assert all(m.timestamp_type == 0 for m in got[p]), f"partition {p}: timestamp type not CreateTime"
        recs_got = [Rec(p, m.key, m.value, list(m.headers), m.timestamp) for m in got[p]]
        assert_partition_equal(p, expected[p], recs_got)


def _kcat_lines(n: int, part: int, codec: str) -> tuple[bytes, list[tuple[bytes | None, bytes | None]]]:
    """kcat input `key:value` lines; an empty side is sent as NULL (-Z)."""
    lines, expect = [], []
    for i in range(n):
        key = b"" if i % 97 == 5 else b"k-%d-%d" % (part, i)
        if i % 10 == 0:
            value = b""  # tombstone (-Z turns it into a NULL value)
        else:
            value = (b"%s-p%d-%d:" % (codec.encode(), part, i)) + b"x" * ((i * 31) % 1500)
        lines.append(key + b":" + value)
        expect.append((key or None, value or None))
    return b"\n".join(lines) + b"\n", expect


@pytest.mark.slow
@pytest.mark.parametrize("codec", CODECS)
def test_kcat_roundtrip(module_broker, codec):
    bs = module_broker.bootstrap
    topic = unique_topic(f"rt-kcat-{codec}")
    ck_create_topic(bs, topic, PARTITIONS)  # kcat has no admin API

    per_part = PER_CODEC // PARTITIONS
    expected: dict[int, list[Rec]] = {}
    t_before = int(time.time() * 1000)
    for p in range(PARTITIONS):
        data, kv = _kcat_lines(per_part, p, codec)
        headers = [("codec", codec.encode()), ("part", str(p).encode()), ("dup", b"a"), ("dup", b"b")]
        hargs = []
        for k, v in headers:
            hargs += ["-H", f"{k}={v.decode()}"]
        kcat(["-P", "-b", bs, "-t", topic, "-p", str(p), "-z", codec, "-K:", "-Z",
              "-X", "linger.ms=20", *hargs], input_bytes=data)
        expected[p] = [Rec(p, k, v, headers) for k, v in kv]
    t_after = int(time.time() * 1000)
    _check_raw_batches(bs, topic, codec, {p: per_part for p in range(PARTITIONS)})

    got: dict[int, list[Rec]] = {p: [] for p in range(PARTITIONS)}
    offsets: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
    for j in kcat_consume_json(bs, topic):
        p = j["partition"]
        hdrs = j.get("headers") or []
        pairs = [(hdrs[i], hdrs[i + 1].encode()) for i in range(0, len(hdrs), 2)]
        key = None if j.get("key") is None else j["key"].encode()
        val = None if j.get("payload") is None else j["payload"].encode()
        assert j.get("tstype") == "create", j
        got[p].append(Rec(p, key, val, pairs, j["ts"]))
        offsets[p].append(j["offset"])
    for p in range(PARTITIONS):
        assert offsets[p] == list(range(per_part)), f"partition {p} offsets"
        assert_partition_equal(p, expected[p], got[p], check_ts=False)
        ts = [r.timestamp for r in got[p]]
        # kcat cannot set timestamps: librdkafka stamps CreateTime at produce time.
        assert all(t_before - 1000 <= t <= t_after + 1000 for t in ts), f"partition {p}: timestamps outside produce window"
        assert ts == sorted(ts), f"partition {p}: CreateTime went backwards"
