"""Helpers shared by the end-to-end tests: bounded waits, topic creation, record generators,
and produce/consume loops for confluent-kafka, kafka-python and kcat."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]

_counter = itertools.count()


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


def wait_until(pred, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Polls pred() until it returns a truthy value; bounded by timeout (seconds)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


# --- confluent-kafka admin ------------------------------------------------------------------

_ADMINS: dict[str, AdminClient] = {}


def ck_admin(bootstrap: str) -> AdminClient:
    """One AdminClient per bootstrap address, kept alive: librdkafka fails the futures of an
    AdminClient that is garbage-collected before they resolve (_DESTROY)."""
    admin = _ADMINS.get(bootstrap)
    if admin is None:
        admin = _ADMINS[bootstrap] = AdminClient({"bootstrap.servers": bootstrap})
    return admin


def forget_admin(bootstrap: str) -> None:
    """Drops (and so destroys) the cached AdminClient of a broker that is going away."""
    _ADMINS.pop(bootstrap, None)


def ck_create_topic(bootstrap: str, topic: str, partitions: int, config: dict | None = None,
                    timeout: float = 30.0) -> None:
    admin = ck_admin(bootstrap)
    fut = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                        config=config or {})],
                              operation_timeout=timeout, request_timeout=timeout)[topic]
    fut.result(timeout)
    wait_for_topic_ready(bootstrap, topic, partitions)


def wait_for_topic_ready(bootstrap: str, topic: str, partitions: int, timeout: float = 20.0) -> None:
    admin = ck_admin(bootstrap)

    def ready():
        md = admin.list_topics(topic=topic, timeout=5)
        t = md.topics.get(topic)
        if t is None or t.error is not None or len(t.partitions) != partitions:
            return False
        return all(p.leader >= 0 and p.error is None for p in t.partitions.values())

    wait_until(ready, timeout, what=f"topic {topic} with {partitions} partitions and leaders")


# --- clusters --------------------------------------------------------------------------------

def free_ports(count: int) -> list[int]:
    """`count` distinct ports that were free on 127.0.0.1 a moment ago."""
    import socket
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_cluster(broker_factory, count: int = 3, timeout: float = 30.0) -> list:
    """Starts `count` cluster nodes (ids 1..count, broker and controller roles, `--voters` on
    free ports) with conftest's `broker_factory` fixture; returns them (node i+1 at index i)
    once every node's Metadata lists all of them. The fixture kills them at the end."""
    ports = free_ports(2 * count)
    client_ports, controller_ports = ports[:count], ports[count:]
    voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(controller_ports))
    nodes = [broker_factory(node_id=i + 1, extra_args=["--voters", voters]) for i in range(count)]
    for node, port in zip(nodes, client_ports):
        node.start(port=port)

    def brokers_listed(node) -> int:
        try:
            return len(ck_admin(node.bootstrap).list_topics(timeout=5).brokers)
        except KafkaException:
            return 0  # no metadata yet while the quorum forms

    for node in nodes:
        wait_until(lambda: brokers_listed(node) == count, timeout,
                   what=f"node {node.node_id} listing {count} brokers")
    return nodes


# --- records ---------------------------------------------------------------------------------

@dataclass
class Rec:
    partition: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp: int | None = None


def make_value(i: int) -> bytes | None:
    """Deterministic values: every 10th a tombstone (None), every 13th empty, sizes 0..~2 KiB,
    binary (non-UTF-8) content, some highly compressible, some not."""
    if i % 10 == 0:
        return None
    if i % 13 == 0:
        return b""
    seed = hashlib.sha256(i.to_bytes(8, "big")).digest()
    n = (i * 37) % 2048
    if i % 3 == 0:
        body = (seed * (n // 32 + 1))[:n]  # incompressible-ish
    else:
        body = (b"sapper-%d-" % i) * (n // 12 + 1)
        body = body[:n]
    return b"\xff\x00" + body


def make_records(count: int, partitions: int, base_ts: int, null_keys: bool = True,
                 null_header_values: bool = True, null_key_and_value: bool = True) -> list[Rec]:
    """`count` records spread over partitions. Timestamps are explicit, in the recent past, and
    deliberately not monotonic inside a partition (a broker must keep each record's own).
    kafka-python's send() refuses None header values and records with neither key nor value,
    so its tests turn those off (client-side restrictions; the protocol allows both)."""
    recs = []
    for i in range(count):
        p = i % partitions
        key = None if (null_keys and i % 97 == 5) else b"k-%d" % i
        if key is None and make_value(i) is None and not null_key_and_value:
            key = b"k-%d" % i
        headers: list[tuple[str, bytes | None]] = []
        if i % 4 != 0:  # some records have no headers at all
            headers = [("seq", str(i).encode()), ("bin", bytes([i % 256, 0, 255]))]
            if i % 7 == 0:
                headers.append(("dup", b"one"))
                headers.append(("dup", b"two"))
            if i % 11 == 0:
                headers.append(("empty", b""))
            if null_header_values and i % 17 == 0:
                headers.append(("nullval", None))
        ts = base_ts + ((i * 7919) % 50_000)
        recs.append(Rec(p, key, make_value(i), headers, ts))
    return recs


def by_partition(recs: list[Rec], partitions: int) -> dict[int, list[Rec]]:
    out: dict[int, list[Rec]] = {p: [] for p in range(partitions)}
    for r in recs:
        out[r.partition].append(r)
    return out


def assert_partition_equal(p: int, expected: list[Rec], got: list[Rec], check_ts: bool = True) -> None:
    assert len(got) == len(expected), f"partition {p}: expected {len(expected)} records, got {len(got)}"
    for idx, (e, g) in enumerate(zip(expected, got)):
        where = f"partition {p} offset {idx}"
        assert g.key == e.key, f"{where}: key {g.key!r} != {e.key!r}"
        assert g.value == e.value, f"{where}: value {g.value!r:.80} != {e.value!r:.80}"
        assert g.headers == e.headers, f"{where}: headers {g.headers!r} != {e.headers!r}"
        if check_ts:
            assert g.timestamp == e.timestamp, f"{where}: timestamp {g.timestamp} != {e.timestamp}"


# --- confluent-kafka produce / consume -------------------------------------------------------

def ck_produce(bootstrap: str, topic: str, recs: list[Rec], conf: dict | None = None,
               timeout: float = 120.0) -> list[tuple[int, int]]:
    """Produces recs in order; returns [(partition, offset)] per record, from delivery reports.
    Fails on any delivery error."""
    cfg = {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"}
    cfg.update(conf or {})
    producer = Producer(cfg)
    results: list[tuple[int, int] | None] = [None] * len(recs)
    errors: list[str] = []

    def cb_for(i):
        def cb(err, msg):
            if err is not None:
                errors.append(f"record {i}: {err}")
            else:
                results[i] = (msg.partition(), msg.offset())
        return cb

    deadline = time.monotonic() + timeout
    for i, r in enumerate(recs):
        kwargs = {"partition": r.partition, "on_delivery": cb_for(i)}
        if r.timestamp is not None:
            kwargs["timestamp"] = r.timestamp
        if r.headers:
            kwargs["headers"] = r.headers
        while True:
            try:
                producer.produce(topic, value=r.value, key=r.key, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
                assert time.monotonic() < deadline, "produce timed out (queue full)"
        producer.poll(0)
    remaining = producer.flush(max(1.0, deadline - time.monotonic()))
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout}s"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:5]}"
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def ck_consumer(bootstrap: str, extra: dict | None = None) -> Consumer:
    cfg = {
        "bootstrap.servers": bootstrap,
        "group.id": unique_topic("g"),
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }
    cfg.update(extra or {})
    return Consumer(cfg)


def ck_consume_all(bootstrap: str, topic: str, partitions: int, expected_counts: dict[int, int],
                   timeout: float = 120.0, start: int | None = None,
                   extra: dict | None = None) -> dict[int, list]:
    """Assigns all partitions from the beginning (or `start`), reads until every partition has
    reached EOF with at least expected_counts[p] records; returns raw Messages per partition."""
    from confluent_kafka import OFFSET_BEGINNING
    c = ck_consumer(bootstrap, extra)
    try:
        first = OFFSET_BEGINNING if start is None else start
        c.assign([TopicPartition(topic, p, first) for p in range(partitions)])
        out: dict[int, list] = {p: [] for p in range(partitions)}
        eof: set[int] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msgs = c.consume(num_messages=5000, timeout=0.5)
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if len(out[m.partition()]) >= expected_counts.get(m.partition(), 0):
                            eof.add(m.partition())
                        continue
                    raise KafkaException(err)
                out[m.partition()].append(m)
            if len(eof) == partitions:
                return out
        got = {p: len(v) for p, v in out.items()}
        raise AssertionError(f"consume timed out after {timeout}s: got {got}, want {expected_counts}")
    finally:
        c.close()


def ck_msg_to_rec(m) -> Rec:
    hdrs = m.headers() or []
    return Rec(m.partition(), m.key(), m.value(), list(hdrs), m.timestamp()[1])


# --- kcat ------------------------------------------------------------------------------------

def kcat(args: list[str], input_bytes: bytes | None = None, timeout: float = 120.0) -> bytes:
    proc = subprocess.run(["kcat", *args], input=input_bytes, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"kcat {' '.join(args)} exited {proc.returncode}: "
                             f"{proc.stderr.decode(errors='replace')[-3000:]}")
    return proc.stdout


def kcat_consume_json(bootstrap: str, topic: str, timeout: float = 120.0) -> list[dict]:
    """All records of all partitions, from the beginning, until the end of each partition."""
    out = kcat(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-J", "-q",
                "-X", "enable.partition.eof=true"], timeout=timeout)
    return [json.loads(line) for line in out.decode("utf-8").splitlines() if line.strip()]


# --- raw protocol: look at the record batches exactly as the broker returns them --------------

CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


@dataclass
class RawBatch:
    base_offset: int
    last_offset_delta: int
    magic: int
    attributes: int
    record_count: int
    crc_ok: bool

    @property
    def codec(self) -> int:
        return self.attributes & 0x7


def _kstr(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big", signed=True) + b


def raw_fetch_batches(bootstrap: str, topic: str, partition: int, offset: int = 0,
                      max_bytes: int = 1 << 20, timeout: float = 10.0) -> tuple[int, int, list[RawBatch]]:
    """One Fetch v4 request over a plain socket; returns (error_code, high_watermark, batches).
    Whole batches only: a trailing partial batch (allowed by the protocol) is ignored."""
    import socket
    import struct
    from crc32c import crc32c

    host, port = bootstrap.rsplit(":", 1)
    body = struct.pack(">iiiib", -1, 500, 1, max_bytes, 0)
    body += struct.pack(">i", 1) + _kstr(topic) + struct.pack(">i", 1)
    body += struct.pack(">iqi", partition, offset, max_bytes)
    header = struct.pack(">hhi", 1, 4, 7) + _kstr("sapper-tests")
    req = header + body
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(req)) + req)

        def read_exact(n):
            buf = bytearray()
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    raise AssertionError("broker closed the connection during Fetch")
                buf += chunk
            return bytes(buf)

        (size,) = struct.unpack(">i", read_exact(4))
        resp = read_exact(size)
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from(fmt, resp, pos)
        pos += struct.calcsize(fmt)
        return vals

    (corr,) = take(">i")
    assert corr == 7, f"correlation id {corr}"
    take(">i")  # throttle
    (ntopics,) = take(">i")
    assert ntopics == 1, ntopics
    (tlen,) = take(">h")
    pos += tlen
    (nparts,) = take(">i")
    assert nparts == 1, nparts
    part, err, hw, _lso = take(">ihqq")
    assert part == partition
    (naborted,) = take(">i")
    pos += max(naborted, 0) * 16
    (rlen,) = take(">i")
    records = resp[pos:pos + max(rlen, 0)]
    batches = []
    p = 0
    while p + 61 <= len(records):
        base, blen = struct.unpack_from(">qi", records, p)
        end = p + 12 + blen
        if end > len(records):
            break  # partial batch at the end of the response
        _ple, magic, crc, attrs, lod = struct.unpack_from(">ibIhi", records, p + 12)
        (count,) = struct.unpack_from(">i", records, p + 57)
        crc_ok = crc32c(records[p + 21:end]) == crc
        batches.append(RawBatch(base, lod, magic, attrs, count, crc_ok))
        p = end
    return err, hw, batches
