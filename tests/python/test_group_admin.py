"""Group admin APIs and bad group requests (issue 4, acceptance 5 and 7).

Acceptance 5: kafka-python's KafkaAdminClient and confluent-kafka's AdminClient list, describe,
read, alter and delete groups, and every field they return matches what real consumers set up:
a Stable group with two live confluent-kafka consumers, an Empty "consumer" group whose
consumer committed and left, and a "simple" group (offsets committed by an admin client only).

Acceptance 7: bad requests get Kafka's error codes (UNKNOWN_MEMBER_ID 25, ILLEGAL_GENERATION 22,
REBALANCE_IN_PROGRESS 27, UNKNOWN_TOPIC_OR_PARTITION 3, OFFSET_METADATA_TOO_LARGE 12), sent raw
with kafka-python's protocol classes and, where a client exposes it, through confluent-kafka;
after each one the group still works: a real consumer joins, consumes from the committed
offsets and commits.

The module's broker runs with auto-create off and a 200 ms initial rebalance delay.
"""

from __future__ import annotations

import socket
import struct
import time
import uuid

import pytest
from confluent_kafka import (
    ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition,
)
from kafka.admin import KafkaAdminClient, OffsetSpec
import kafka.errors as kerr
import kafka.protocol.consumer as kp
from kafka.protocol.consumer.metadata import (
    ConsumerProtocolAssignment, ConsumerProtocolSubscription,
)
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KTP

from sapper_util import (
    Rec, ck_admin, ck_consumer, ck_create_topic, ck_produce, unique_topic, wait_until,
)

pytestmark = pytest.mark.broker_args("--group-initial-rebalance-delay-ms", "200")

# Kafka error codes.
NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
OFFSET_METADATA_TOO_LARGE = 12
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
REBALANCE_IN_PROGRESS = 27
GROUP_ID_NOT_FOUND = 69
NON_EMPTY_GROUP = 68
GROUP_SUBSCRIBED_TO_TOPIC = 86
MEMBER_ID_REQUIRED = 79

METADATA_MAX = 4096  # offset.metadata.max.bytes
PARTITIONS = 3
PER_PARTITION = 8  # records produced to each partition of the module's topics
WAIT_S = 30.0


def _group(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _result(fut, timeout: float = WAIT_S):
    return fut.result(timeout)


def _ck_error(fut, timeout: float = WAIT_S) -> KafkaError | None:
    try:
        fut.result(timeout)
        return None
    except KafkaException as e:
        return e.args[0]


# --- raw protocol over a plain socket with kafka-python's encoding ----------------------------

class RawConn:
    """One connection that sends kafka-python request objects at a fixed version. send() and
    recv() are separate so a request the broker parks (JoinGroup) can be left pending."""

    def __init__(self, bootstrap: str, client_id: str = "sapper-raw", timeout: float = 15.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.client_id = client_id
        self.corr = 0
        self.pending: dict[int, tuple[type, int]] = {}

    def close(self) -> None:
        self.sock.close()

    def send(self, request, version: int) -> int:
        self.corr += 1
        request.API_VERSION = version
        request.with_header(correlation_id=self.corr, client_id=self.client_id)
        self.sock.sendall(request.encode(header=True, framed=True))
        resp_cls = getattr(kp, type(request).__name__.replace("Request", "Response"))
        self.pending[self.corr] = (resp_cls, version)
        return self.corr

    def _read_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise AssertionError("broker closed the connection")
            buf += chunk
        return bytes(buf)

    def recv(self, corr: int):
        """The next response on the connection, which must answer `corr` (responses come back
        in request order)."""
        (size,) = struct.unpack(">i", self._read_exact(4))
        data = self._read_exact(size)
        resp_cls, version = self.pending.pop(corr)
        resp = resp_cls.decode(data, version=version, header=True)
        assert resp.header.correlation_id == corr, (resp.header.correlation_id, corr)
        return resp

    def call(self, request, version: int):
        return self.recv(self.send(request, version))


JOIN_V, SYNC_V, HB_V, COMMIT_V, FETCH_V = 7, 5, 4, 8, 7


def _subscription(topics: list[str]) -> bytes:
    return ConsumerProtocolSubscription(version=0, topics=topics, user_data=None).encode()


def _assignment(topic: str, partitions: list[int]) -> bytes:
    a = ConsumerProtocolAssignment
    return a(version=0, assigned_partitions=[a.TopicPartition(topic=topic, partitions=partitions)],
             user_data=None).encode()


def _join_request(group: str, topic: str, member_id: str = "", session_ms: int = 10000,
                  rebalance_ms: int = 10000):
    return kp.JoinGroupRequest(
        group_id=group, session_timeout_ms=session_ms, rebalance_timeout_ms=rebalance_ms,
        member_id=member_id, group_instance_id=None, protocol_type="consumer",
        protocols=[kp.JoinGroupRequest.JoinGroupRequestProtocol(
            name="range", metadata=_subscription([topic]))],
        reason=None)


def raw_join(conn: RawConn, group: str, topic: str, member_id: str = ""):
    """JoinGroup, first asking for a member id (MEMBER_ID_REQUIRED) when member_id is empty."""
    resp = conn.call(_join_request(group, topic, member_id), JOIN_V)
    if not member_id:
        assert resp.error_code == MEMBER_ID_REQUIRED, resp
        assert resp.member_id
        resp = conn.call(_join_request(group, topic, resp.member_id), JOIN_V)
    assert resp.error_code == NONE, resp
    return resp


def raw_sync(conn: RawConn, group: str, member_id: str, generation: int,
             assignments: dict[str, bytes] | None = None):
    A = kp.SyncGroupRequest.SyncGroupRequestAssignment
    return conn.call(kp.SyncGroupRequest(
        group_id=group, generation_id=generation, member_id=member_id, group_instance_id=None,
        protocol_type="consumer", protocol_name="range",
        assignments=[A(member_id=m, assignment=a) for m, a in (assignments or {}).items()]),
        SYNC_V)


def raw_heartbeat(conn: RawConn, group: str, member_id: str, generation: int) -> int:
    return conn.call(kp.HeartbeatRequest(group_id=group, generation_id=generation,
                                         member_id=member_id, group_instance_id=None),
                     HB_V).error_code


def raw_commit(conn: RawConn, group: str, member_id: str, generation: int,
               offsets: dict[tuple[str, int], tuple[int, str]],
               version: int = COMMIT_V) -> dict[tuple[str, int], int]:
    T = kp.OffsetCommitRequest.OffsetCommitRequestTopic
    P = T.OffsetCommitRequestPartition
    by_topic: dict[str, list] = {}
    for (t, p), (off, meta) in offsets.items():
        by_topic.setdefault(t, []).append(P(partition_index=p, committed_offset=off,
                                            committed_leader_epoch=-1, committed_metadata=meta))
    resp = conn.call(kp.OffsetCommitRequest(
        group_id=group, generation_id_or_member_epoch=generation, member_id=member_id,
        group_instance_id=None, retention_time_ms=-1,
        topics=[T(name=t, partitions=ps) for t, ps in by_topic.items()]), version)
    return {(t.name, p.partition_index): p.error_code for t in resp.topics for p in t.partitions}


def raw_fetch_offsets(conn: RawConn, group: str) -> dict[tuple[str, int], tuple[int, str]]:
    resp = conn.call(kp.OffsetFetchRequest(group_id=group, topics=None), FETCH_V)
    assert resp.error_code == NONE, resp
    out = {}
    for t in resp.topics:
        for p in t.partitions:
            assert p.error_code == NONE, p
            out[(t.name, p.partition_index)] = (p.committed_offset, p.metadata)
    return out


def raw_leave(conn: RawConn, group: str, member_id: str, version: int = 4) -> int:
    """LeaveGroup for one member; v0-2 carry its id at the top level, v3+ in a batch."""
    if version < 3:
        return conn.call(kp.LeaveGroupRequest(group_id=group, member_id=member_id),
                         version).error_code
    M = kp.LeaveGroupRequest.MemberIdentity
    resp = conn.call(kp.LeaveGroupRequest(
        group_id=group, members=[M(member_id=member_id, group_instance_id=None)]), version)
    assert resp.error_code == NONE, resp
    assert len(resp.members) == 1 and resp.members[0].member_id == member_id, resp
    return resp.members[0].error_code


class RawMember:
    """A group member driven by raw requests: joined, synced (it assigns every partition to
    itself) and Stable at `generation`."""

    def __init__(self, bootstrap: str, group: str, topic: str):
        self.conn = RawConn(bootstrap, client_id="raw-member")
        self.group, self.topic = group, topic
        join = raw_join(self.conn, group, topic)
        self.member_id, self.generation = join.member_id, join.generation_id
        assert join.leader == self.member_id and join.protocol_name == "range", join
        sync = raw_sync(self.conn, group, self.member_id, self.generation,
                        {self.member_id: _assignment(topic, list(range(PARTITIONS)))})
        assert sync.error_code == NONE, sync
        got = ConsumerProtocolAssignment.decode(sync.assignment)
        assert [(a.topic, list(a.partitions)) for a in got.assigned_partitions] == \
            [(topic, list(range(PARTITIONS)))]

    def heartbeat(self) -> int:
        return raw_heartbeat(self.conn, self.group, self.member_id, self.generation)

    def commit(self, offsets: dict[tuple[str, int], tuple[int, str]], **kw) -> dict:
        return raw_commit(self.conn, self.group, self.member_id, self.generation, offsets, **kw)

    def still_works(self, committed: dict[tuple[str, int], tuple[int, str]]) -> None:
        """The member is still in the group at its generation and can commit; `committed`
        grows by the partition it commits."""
        assert self.heartbeat() == NONE
        key = (self.topic, 0)
        off = committed.get(key, (0, ""))[0] + 2
        assert self.commit({key: (off, "still-works")}) == {key: NONE}
        committed[key] = (off, "still-works")
        assert raw_fetch_offsets(self.conn, self.group) == committed

    def leave(self) -> None:
        assert raw_leave(self.conn, self.group, self.member_id) == NONE
        self.conn.close()


def assert_group_usable(bootstrap: str, group: str, topic: str,
                        committed: dict[tuple[str, int], tuple[int, str]]) -> None:
    """A confluent-kafka consumer joins `group`, reads `topic` from the committed offsets
    (earliest where none), commits the end offsets and sees them committed."""
    start = {p: committed.get((topic, p), (0, ""))[0] for p in range(PARTITIONS)}
    want = {p: PER_PARTITION - start[p] for p in range(PARTITIONS)}
    c = ck_consumer(bootstrap, {"group.id": group, "client.id": "usable-check",
                                "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
    try:
        c.subscribe([topic])
        got: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
        eof: set[int] = set()
        deadline = time.monotonic() + WAIT_S
        while len(eof) < PARTITIONS:
            assert time.monotonic() < deadline, f"{group}: consumed {got}, want {want}"
            for m in c.consume(num_messages=100, timeout=0.2):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if len(got[m.partition()]) >= want[m.partition()]:
                            eof.add(m.partition())
                        continue
                    raise KafkaException(err)
                got[m.partition()].append(m.offset())
        for p in range(PARTITIONS):
            assert got[p] == list(range(start[p], PER_PARTITION)), (p, got[p], start[p])
        end = [TopicPartition(topic, p, PER_PARTITION) for p in range(PARTITIONS)]
        res = c.commit(offsets=end, asynchronous=False)
        assert all(tp.error is None for tp in res), res
        back = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        assert sorted((tp.partition, tp.offset) for tp in back) == \
            [(p, PER_PARTITION) for p in range(PARTITIONS)]
    finally:
        c.close()


# --- module fixtures ---------------------------------------------------------------------------

def _produce_topic(bootstrap: str, prefix: str) -> str:
    topic = unique_topic(prefix)
    ck_create_topic(bootstrap, topic, PARTITIONS)
    recs = [Rec(p, b"k%d" % i, b"v%d" % i) for i in range(PER_PARTITION) for p in range(PARTITIONS)]
    ck_produce(bootstrap, topic, recs)
    return topic


@pytest.fixture(scope="module")
def kp_admin(module_broker):
    admin = KafkaAdminClient(bootstrap_servers=module_broker.bootstrap,
                             client_id="group-admin-test", request_timeout_ms=15000)
    yield admin
    admin.close()


class Setup:
    """The groups acceptance 5 checks, and what was done to them."""
    topic: str
    stable: str
    empty: str
    simple: str
    consumers: list            # the Stable group's live consumers
    client_ids: list[str]
    assignments: dict[str, list[int]]   # client.id -> partitions of `topic`
    committed: dict[str, dict[int, tuple[int, str]]]  # group -> partition -> (offset, metadata)


def _poll_until(consumers, pred, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        for c in consumers:
            c.poll(0.1)


@pytest.fixture(scope="module")
def groups(module_broker):
    bs = module_broker.bootstrap
    s = Setup()
    s.topic = _produce_topic(bs, "gadm")
    s.stable, s.empty, s.simple = _group("stable"), _group("empty"), _group("simple")
    s.committed = {}

    # Empty "consumer" group: one consumer reads, commits with metadata, leaves.
    c = ck_consumer(bs, {"group.id": s.empty, "client.id": "empty-c",
                         "session.timeout.ms": 10000})
    c.subscribe([s.topic])
    _poll_until([c], lambda: len(c.assignment()) == PARTITIONS, "empty group's assignment")
    s.committed[s.empty] = {p: (p + 1, f"empty-meta-{p}") for p in range(PARTITIONS)}
    res = c.commit(offsets=[TopicPartition(s.topic, p, o, metadata=m)
                            for p, (o, m) in s.committed[s.empty].items()], asynchronous=False)
    assert all(tp.error is None for tp in res), res
    c.close()

    # Simple group: offsets committed by an admin client, no member ever joined.
    s.committed[s.simple] = {0: (5, "simple-meta"), 2: (7, "")}
    fut = ck_admin(bs).alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
        s.simple, [TopicPartition(s.topic, p, o, metadata=m)
                   for p, (o, m) in s.committed[s.simple].items()])],
        request_timeout=15)[s.simple]
    _result(fut)

    # Stable group: two live consumers sharing the topic's partitions.
    s.client_ids = ["stable-c1", "stable-c2"]
    s.consumers = [ck_consumer(bs, {"group.id": s.stable, "client.id": cid,
                                    "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
                   for cid in s.client_ids]
    for c in s.consumers:
        c.subscribe([s.topic])

    def both_assigned():
        parts = [sorted(tp.partition for tp in c.assignment()) for c in s.consumers]
        return all(parts) and sorted(sum(parts, [])) == list(range(PARTITIONS))

    _poll_until(s.consumers, both_assigned, "two consumers sharing the stable group's partitions")

    def stable_with_two():
        d = _result(ck_admin(bs).describe_consumer_groups([s.stable])[s.stable])
        return d.state == ConsumerGroupState.STABLE and len(d.members) == 2

    _poll_until(s.consumers, stable_with_two, "the stable group to be Stable with 2 members")
    s.assignments = {cid: sorted(tp.partition for tp in c.assignment())
                     for cid, c in zip(s.client_ids, s.consumers)}
    # Each consumer commits its own partitions, with metadata.
    s.committed[s.stable] = {}
    for cid, c in zip(s.client_ids, s.consumers):
        offs = [TopicPartition(s.topic, p, 2 + p, metadata=f"{cid}-p{p}")
                for p in s.assignments[cid]]
        res = c.commit(offsets=offs, asynchronous=False)
        assert all(tp.error is None for tp in res), res
        s.committed[s.stable].update({tp.partition: (tp.offset, tp.metadata) for tp in offs})
    yield s
    for c in s.consumers:
        c.close()


# --- acceptance 5: listing ----------------------------------------------------------------------

def test_kafka_python_list_groups_states_and_types(groups, kp_admin):
    listed = {g["group_id"]: g for g in kp_admin.list_groups()}
    for gid in (groups.stable, groups.empty, groups.simple):
        assert gid in listed, f"{gid} missing from {sorted(listed)}"
    assert listed[groups.stable]["protocol_type"] == "consumer"
    assert listed[groups.empty]["protocol_type"] == "consumer"
    assert listed[groups.simple]["protocol_type"] == ""
    assert listed[groups.stable]["group_state"] == "Stable"
    assert listed[groups.empty]["group_state"] == "Empty"
    assert listed[groups.simple]["group_state"] == "Empty"
    for gid in (groups.stable, groups.empty, groups.simple):
        assert listed[gid]["group_type"] == "classic", listed[gid]

    stable = {g["group_id"] for g in kp_admin.list_groups(states_filter=["Stable"])}
    empty = {g["group_id"] for g in kp_admin.list_groups(states_filter=["Empty"])}
    assert groups.stable in stable and groups.stable not in empty
    assert {groups.empty, groups.simple} <= empty and not ({groups.empty, groups.simple} & stable)
    assert not {g["group_id"] for g in kp_admin.list_groups(states_filter=["preparing-rebalance"])} \
        & {groups.stable, groups.empty, groups.simple}
    classic = {g["group_id"] for g in kp_admin.list_groups(types_filter=["classic"])}
    assert {groups.stable, groups.empty, groups.simple} <= classic
    assert not kp_admin.list_groups(types_filter=["share"])


def test_confluent_list_consumer_groups_with_state_filter(groups, module_broker):
    admin = ck_admin(module_broker.bootstrap)
    res = _result(admin.list_consumer_groups(request_timeout=15))
    assert not res.errors, res.errors
    listed = {g.group_id: g for g in res.valid}
    for gid in (groups.stable, groups.empty, groups.simple):
        assert gid in listed, f"{gid} missing from {sorted(listed)}"
    assert listed[groups.stable].state == ConsumerGroupState.STABLE
    assert listed[groups.empty].state == ConsumerGroupState.EMPTY
    assert listed[groups.simple].state == ConsumerGroupState.EMPTY
    assert listed[groups.stable].is_simple_consumer_group is False
    assert listed[groups.empty].is_simple_consumer_group is False
    assert listed[groups.simple].is_simple_consumer_group is True

    res = _result(admin.list_consumer_groups(request_timeout=15,
                                             states={ConsumerGroupState.STABLE}))
    got = {g.group_id for g in res.valid}
    assert groups.stable in got and not ({groups.empty, groups.simple} & got)
    assert all(g.state == ConsumerGroupState.STABLE for g in res.valid)
    res = _result(admin.list_consumer_groups(request_timeout=15,
                                             states={ConsumerGroupState.EMPTY}))
    got = {g.group_id for g in res.valid}
    assert {groups.empty, groups.simple} <= got and groups.stable not in got
    res = _result(admin.list_consumer_groups(
        request_timeout=15, states={ConsumerGroupState.STABLE, ConsumerGroupState.EMPTY}))
    assert {groups.stable, groups.empty, groups.simple} <= {g.group_id for g in res.valid}


# --- acceptance 5: describing -------------------------------------------------------------------

def test_kafka_python_describe_groups(groups, kp_admin):
    d = kp_admin.describe_groups([groups.stable, groups.empty, groups.simple])
    st = d[groups.stable]
    assert st["error"] is None, st
    assert st["group_id"] == groups.stable
    assert st["group_state"] == "Stable"
    assert st["protocol_type"] == "consumer"
    assert st["protocol_data"] == "range", st  # librdkafka's first default assignor
    members = {m["client_id"]: m for m in st["members"]}
    assert sorted(members) == sorted(groups.client_ids)
    assert len({m["member_id"] for m in st["members"]}) == 2
    for cid, m in members.items():
        assert m["member_id"].startswith(cid), m["member_id"]  # librdkafka: "<client.id>-<uuid>"
        # The member's host: Kafka reports "/<peer ip>". Sapper answered "/" until the peer
        # address reached the handlers; this checks the fix.
        assert "127.0.0.1" in m["client_host"], m["client_host"]
        assert m["group_instance_id"] is None
        assert list(m["member_metadata"]["topics"]) == [groups.topic], m["member_metadata"]
        assigned = m["member_assignment"]["assigned_partitions"]
        assert [(a["topic"], sorted(a["partitions"])) for a in assigned] == \
            [(groups.topic, groups.assignments[cid])], assigned

    for gid in (groups.empty, groups.simple):
        e = d[gid]
        assert e["error"] is None and e["group_state"] == "Empty" and e["members"] == [], e
        assert e["protocol_data"] == ""
    assert d[groups.empty]["protocol_type"] == "consumer"
    assert d[groups.simple]["protocol_type"] == ""

    # An unknown group is Dead with no members (DescribeGroups before v6 has no error for it).
    unknown = _group("nope")
    u = kp_admin.describe_groups([unknown])[unknown]
    assert u["group_state"] == "Dead" and u["members"] == [], u
    assert u["error"] is None, u


def test_confluent_describe_consumer_groups(groups, module_broker):
    admin = ck_admin(module_broker.bootstrap)
    futs = admin.describe_consumer_groups([groups.stable, groups.empty, groups.simple],
                                          request_timeout=15)
    st = _result(futs[groups.stable])
    assert st.group_id == groups.stable
    assert st.state == ConsumerGroupState.STABLE
    assert st.is_simple_consumer_group is False
    assert st.partition_assignor == "range"
    assert st.coordinator.id == module_broker.node_id
    assert (st.coordinator.host, st.coordinator.port) == (module_broker.host, module_broker.port)
    members = {m.client_id: m for m in st.members}
    assert sorted(members) == sorted(groups.client_ids)
    for cid, m in members.items():
        assert m.member_id.startswith(cid), m.member_id
        # Kafka reports the host as "/<peer ip>"; Sapper said "/" before the peer address
        # reached the handlers.
        assert "127.0.0.1" in m.host, m.host
        assert m.group_instance_id is None
        assert sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions) == \
            [(groups.topic, p) for p in groups.assignments[cid]]

    for gid in (groups.empty, groups.simple):
        e = _result(futs[gid])
        assert e.group_id == gid and e.state == ConsumerGroupState.EMPTY and e.members == []
        assert e.partition_assignor == ""
    assert _result(futs[groups.empty]).is_simple_consumer_group is False
    assert _result(futs[groups.simple]).is_simple_consumer_group is True

    unknown = _group("nope")
    fut = admin.describe_consumer_groups([unknown], request_timeout=15)[unknown]
    err = _ck_error(fut)
    if err is None:  # librdkafka passes Kafka's "Dead, no error" answer through
        d = _result(fut)
        assert d.state == ConsumerGroupState.DEAD and d.members == []
    else:
        assert err.code() == KafkaError.GROUP_ID_NOT_FOUND, err


# --- acceptance 5: committed offsets -----------------------------------------------------------

def _ck_written(metadata: str) -> str:
    """Metadata as confluent-kafka puts it on the wire: the Python binding passes librdkafka the
    C string with its terminating NUL (metadata_size = strlen + 1), so other clients read the
    NUL back; librdkafka's own readers stop at it."""
    return metadata + "\x00"


def test_kafka_python_list_group_offsets(groups, kp_admin):
    res = kp_admin.list_group_offsets([groups.stable, groups.empty, groups.simple])
    for gid in (groups.stable, groups.empty, groups.simple):
        got = {tp.partition: (om.offset, om.metadata) for tp, om in res[gid].items()}
        assert {tp.topic for tp in res[gid]} == {groups.topic}
        want = {p: (o, _ck_written(m)) for p, (o, m) in groups.committed[gid].items()}
        assert got == want, (gid, got)
    # Named partitions, one of them never committed: offset -1, empty metadata.
    res = kp_admin.list_group_offsets({groups.simple: [KTP(groups.topic, 0), KTP(groups.topic, 1)]})
    got = {tp.partition: (om.offset, om.metadata) for tp, om in res[groups.simple].items()}
    assert got == {0: (5, _ck_written("simple-meta")), 1: (-1, "")}
    # An unknown group has no offsets (no error, as in Kafka).
    unknown = _group("nope")
    assert kp_admin.list_group_offsets([unknown]) == {unknown: {}}


def test_confluent_list_consumer_group_offsets(groups, module_broker):
    admin = ck_admin(module_broker.bootstrap)
    for gid in (groups.stable, groups.empty, groups.simple):
        fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(gid)],
                                                request_timeout=15)[gid]
        r = _result(fut)
        assert r.group_id == gid
        assert all(tp.error is None and tp.topic == groups.topic for tp in r.topic_partitions)
        got = {tp.partition: (tp.offset, tp.metadata or "") for tp in r.topic_partitions}
        assert got == groups.committed[gid], (gid, got)
    unknown = _group("nope")
    r = _result(admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(unknown)],
                                                  request_timeout=15)[unknown])
    assert r.topic_partitions == []


# --- acceptance 5: changing offsets and deleting groups ----------------------------------------

def test_confluent_alter_consumer_group_offsets(groups, module_broker):
    admin = ck_admin(module_broker.bootstrap)
    bs = module_broker.bootstrap
    gid = _group("alter")
    new = [TopicPartition(groups.topic, 0, 3, metadata="m0"), TopicPartition(groups.topic, 1, 6)]
    r = _result(admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(gid, new)],
                                                   request_timeout=15)[gid])
    assert r.group_id == gid
    assert sorted((tp.partition, tp.offset, tp.error) for tp in r.topic_partitions) == \
        [(0, 3, None), (1, 6, None)]
    r = _result(admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(gid)],
                                                  request_timeout=15)[gid])
    assert sorted((tp.partition, tp.offset, tp.metadata or "") for tp in r.topic_partitions) == \
        [(0, 3, "m0"), (1, 6, "")]
    # A consumer of the group starts at the altered offsets (earliest where none).
    assert_group_usable(bs, gid, groups.topic, {(groups.topic, 0): (3, ""),
                                                (groups.topic, 1): (6, "")})

    # A group with live members refuses offsets from an admin client (UNKNOWN_MEMBER_ID), and
    # keeps its own.
    fut = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
        groups.stable, [TopicPartition(groups.topic, 0, 0)])], request_timeout=15)[groups.stable]
    try:
        codes = [tp.error.code() for tp in _result(fut).topic_partitions if tp.error is not None]
    except KafkaException as e:  # some librdkafka versions fail the whole request instead
        codes = [e.args[0].code()]
    assert codes == [KafkaError.UNKNOWN_MEMBER_ID], codes
    r = _result(admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(groups.stable)],
                                                  request_timeout=15)[groups.stable])
    assert {tp.partition: tp.offset for tp in r.topic_partitions} == \
        {p: o for p, (o, _) in groups.committed[groups.stable].items()}


def test_kafka_python_alter_and_reset_group_offsets(groups, kp_admin):
    gid = _group("kp-alter")
    t = groups.topic
    res = kp_admin.alter_group_offsets(gid, {KTP(t, 0): OffsetAndMetadata(4, "kp-meta", None),
                                             KTP(t, 2): OffsetAndMetadata(1, "", None)})
    assert res == {KTP(t, 0): kerr.NoError, KTP(t, 2): kerr.NoError}
    got = kp_admin.list_group_offsets([gid])[gid]
    assert {tp: (om.offset, om.metadata) for tp, om in got.items()} == \
        {KTP(t, 0): (4, "kp-meta"), KTP(t, 2): (1, "")}
    # Reset: earliest, latest, an explicit offset (clamped to the log by the client).
    res = kp_admin.reset_group_offsets(gid, {KTP(t, 0): OffsetSpec.EARLIEST,
                                             KTP(t, 1): OffsetSpec.LATEST, KTP(t, 2): 5})
    assert {tp: (r["error"], r["offset"]) for tp, r in res.items()} == {
        KTP(t, 0): (kerr.NoError, 0), KTP(t, 1): (kerr.NoError, PER_PARTITION),
        KTP(t, 2): (kerr.NoError, 5)}
    got = kp_admin.list_group_offsets([gid])[gid]
    assert {tp: om.offset for tp, om in got.items()} == {KTP(t, 0): 0, KTP(t, 1): PER_PARTITION,
                                                         KTP(t, 2): 5}
    # Altering a live group is refused per partition.
    res = kp_admin.alter_group_offsets(groups.stable, {KTP(t, 0): OffsetAndMetadata(0, "", None)})
    assert res == {KTP(t, 0): kerr.UnknownMemberIdError}
    # Unknown topic: per-partition UNKNOWN_TOPIC_OR_PARTITION.
    res = kp_admin.alter_group_offsets(gid, {KTP("no-such-topic", 0): OffsetAndMetadata(1, "", None)})
    assert res == {KTP("no-such-topic", 0): kerr.UnknownTopicOrPartitionError}


def test_kafka_python_delete_group_offsets(groups, kp_admin):
    gid = _group("kp-deloff")
    t = groups.topic
    kp_admin.alter_group_offsets(gid, {KTP(t, p): OffsetAndMetadata(p + 1, "", None)
                                       for p in range(PARTITIONS)})
    res = kp_admin.delete_group_offsets(gid, [KTP(t, 1), KTP("no-such-topic", 0)])
    assert res == {KTP(t, 1): kerr.NoError,
                   KTP("no-such-topic", 0): kerr.UnknownTopicOrPartitionError}
    got = kp_admin.list_group_offsets([gid])[gid]
    assert {tp.partition: om.offset for tp, om in got.items()} == {0: 1, 2: 3}
    # Members of the Stable group subscribe to the topic: its offsets stay.
    res = kp_admin.delete_group_offsets(groups.stable, [KTP(t, 0)])
    assert res == {KTP(t, 0): kerr.GroupSubscribedToTopicError}
    got = kp_admin.list_group_offsets([groups.stable])[groups.stable]
    assert KTP(t, 0) in got
    with pytest.raises(kerr.GroupIdNotFoundError):
        kp_admin.delete_group_offsets(_group("nope"), [KTP(t, 0)])


def test_kafka_python_delete_groups(groups, module_broker, kp_admin):
    bs = module_broker.bootstrap
    gid = _group("kp-del")
    kp_admin.alter_group_offsets(gid, {KTP(groups.topic, 0): OffsetAndMetadata(5, "x", None)})
    unknown = _group("nope")
    res = kp_admin.delete_groups([gid, groups.stable, unknown])
    assert res == {gid: "OK", groups.stable: "NonEmptyGroupError",
                   unknown: "GroupIdNotFoundError"}, res
    assert kp_admin.list_group_offsets([gid]) == {gid: {}}
    assert gid not in {g["group_id"] for g in kp_admin.list_groups()}
    assert kp_admin.describe_groups([gid])[gid]["group_state"] == "Dead"
    # The non-empty group kept its members and offsets.
    assert kp_admin.describe_groups([groups.stable])[groups.stable]["group_state"] == "Stable"
    assert len(kp_admin.list_group_offsets([groups.stable])[groups.stable]) == PARTITIONS
    # Deleting it again: not found. The id can be reused from scratch.
    assert kp_admin.delete_groups([gid]) == {gid: "GroupIdNotFoundError"}
    assert_group_usable(bs, gid, groups.topic, {})


def test_confluent_delete_consumer_groups(groups, module_broker):
    bs = module_broker.bootstrap
    admin = ck_admin(bs)
    # The Empty "consumer" group goes, with its offsets.
    futs = admin.delete_consumer_groups([groups.empty], request_timeout=15)
    assert _ck_error(futs[groups.empty]) is None
    r = _result(admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(groups.empty)],
                                                  request_timeout=15)[groups.empty])
    assert r.topic_partitions == []
    listed = {g.group_id for g in _result(admin.list_consumer_groups(request_timeout=15)).valid}
    assert groups.empty not in listed
    # Non-empty and unknown groups.
    unknown = _group("nope")
    futs = admin.delete_consumer_groups([groups.stable, unknown], request_timeout=15)
    err = _ck_error(futs[groups.stable])
    assert err is not None and err.code() == KafkaError.NON_EMPTY_GROUP, err
    err = _ck_error(futs[unknown])
    assert err is not None and err.code() == KafkaError.GROUP_ID_NOT_FOUND, err
    # Once its members leave, the Stable group becomes Empty and can be deleted.
    for c in groups.consumers:
        c.close()
    groups.consumers = []
    wait_until(lambda: _result(admin.describe_consumer_groups([groups.stable])[groups.stable])
               .state == ConsumerGroupState.EMPTY, WAIT_S, what="stable group to become Empty")
    assert _ck_error(admin.delete_consumer_groups([groups.stable])[groups.stable]) is None
    r = _result(admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(groups.stable)],
                                                  request_timeout=15)[groups.stable])
    assert r.topic_partitions == []
    # A new consumer of a deleted group starts from the beginning (auto.offset.reset).
    assert_group_usable(bs, groups.stable, groups.topic, {})


# --- acceptance 7: bad requests ----------------------------------------------------------------

@pytest.fixture(scope="module")
def bad_topic(module_broker):
    return _produce_topic(module_broker.bootstrap, "gbad")


@pytest.fixture
def member(module_broker, bad_topic):
    """A raw member, Stable alone in a fresh group, with one valid commit; after the test
    the member must still work, then leaves, and a real consumer uses the group."""
    bs = module_broker.bootstrap
    m = RawMember(bs, _group("bad"), bad_topic)
    assert m.heartbeat() == NONE
    key = (bad_topic, 1)
    assert m.commit({key: (3, "first")}) == {key: NONE}
    m.committed = {key: (3, "first")}
    yield m
    m.still_works(m.committed)
    m.leave()
    assert_group_usable(bs, m.group, bad_topic, m.committed)


def test_unknown_member_id_on_heartbeat_sync_commit_leave(member):
    c, g, t = member.conn, member.group, member.topic
    assert raw_heartbeat(c, g, "no-such-member", member.generation) == UNKNOWN_MEMBER_ID
    sync = raw_sync(c, g, "no-such-member", member.generation)
    assert sync.error_code == UNKNOWN_MEMBER_ID and sync.assignment == b"", sync
    assert raw_commit(c, g, "no-such-member", member.generation, {(t, 0): (1, "")}) == \
        {(t, 0): UNKNOWN_MEMBER_ID}
    for version in (1, 4):
        assert raw_leave(c, g, "no-such-member", version=version) == UNKNOWN_MEMBER_ID
    # A commit without member id or generation (an admin client's) is refused while the group
    # has members.
    assert raw_commit(c, g, "", -1, {(t, 0): (1, "")}) == {(t, 0): UNKNOWN_MEMBER_ID}
    # Nothing was committed for partition 0.
    assert (t, 0) not in raw_fetch_offsets(c, g)


def test_unknown_member_in_unknown_group(module_broker, bad_topic):
    c = RawConn(module_broker.bootstrap)
    g = _group("ghost")
    try:
        assert raw_heartbeat(c, g, "m", 1) == UNKNOWN_MEMBER_ID
        assert raw_sync(c, g, "m", 1).error_code == UNKNOWN_MEMBER_ID
        assert raw_leave(c, g, "m", version=4) == UNKNOWN_MEMBER_ID
        # A generation the coordinator does not have: ILLEGAL_GENERATION, as in Kafka.
        assert raw_commit(c, g, "m", 1, {(bad_topic, 0): (1, "")}) == \
            {(bad_topic, 0): ILLEGAL_GENERATION}
        assert raw_fetch_offsets(c, g) == {}
        # Generation -1 is a simple commit: accepted while the group is Empty, whatever member
        # id it names (a consumer that left its group and assigns partitions itself).
        assert raw_commit(c, g, "m", -1, {(bad_topic, 2): (5, "simple")}) == {(bad_topic, 2): NONE}
        assert raw_fetch_offsets(c, g) == {(bad_topic, 2): (5, "simple")}
    finally:
        c.close()
    assert_group_usable(module_broker.bootstrap, g, bad_topic, {(bad_topic, 2): (5, "simple")})


def test_stale_generation_is_illegal(member):
    c, g, t, mid = member.conn, member.group, member.topic, member.member_id
    for gen in (member.generation - 1, member.generation + 1):
        assert raw_heartbeat(c, g, mid, gen) == ILLEGAL_GENERATION
        assert raw_sync(c, g, mid, gen).error_code == ILLEGAL_GENERATION
        assert raw_commit(c, g, mid, gen, {(t, 0): (1, "")}) == {(t, 0): ILLEGAL_GENERATION}
    assert (t, 0) not in raw_fetch_offsets(c, g)


def _describe_unsettled(kp_admin, group: str, state: str, members: set[str]) -> None:
    """During a rebalance DescribeGroups shows the members but, as Kafka, no protocol and no
    member metadata or assignment (they are not settled yet)."""
    d = kp_admin.describe_groups([group])[group]
    assert d["group_state"] == state, d
    assert d["protocol_type"] == "consumer" and d["protocol_data"] == "", d
    assert {m["member_id"] for m in d["members"]} == members, d
    for m in d["members"]:
        assert not m["member_metadata"] and not m["member_assignment"], m


def test_heartbeat_during_rebalance(module_broker, member, kp_admin):
    """A second member joins; until the first rejoins, its heartbeats answer
    REBALANCE_IN_PROGRESS, then both get the next generation."""
    c, g, t, mid = member.conn, member.group, member.topic, member.member_id
    other = RawConn(module_broker.bootstrap, client_id="raw-other")
    try:
        resp = other.call(_join_request(g, t), JOIN_V)
        assert resp.error_code == MEMBER_ID_REQUIRED
        other_id = resp.member_id
        pending = other.send(_join_request(g, t, other_id), JOIN_V)  # parked: a rebalance
        deadline = time.monotonic() + 10
        code = NONE
        while code == NONE and time.monotonic() < deadline:
            code = raw_heartbeat(c, g, mid, member.generation)
            time.sleep(0.05)
        assert code == REBALANCE_IN_PROGRESS
        _describe_unsettled(kp_admin, g, "PreparingRebalance", {mid, other_id})
        # Offsets committed during the join phase by a member of the current generation are
        # kept (as Kafka does).
        assert raw_commit(c, g, mid, member.generation, {(t, 2): (4, "during")}) == \
            {(t, 2): NONE}
        member.committed[(t, 2)] = (4, "during")
        # The first member rejoins: both get generation + 1; it stays leader.
        mine = raw_join(c, g, t, mid)
        theirs = other.recv(pending)
        assert theirs.error_code == NONE, theirs
        assert mine.generation_id == theirs.generation_id == member.generation + 1
        assert mine.leader == theirs.leader == mid
        assert sorted(m.member_id for m in mine.members) == sorted([mid, other_id])
        _describe_unsettled(kp_admin, g, "CompletingRebalance", {mid, other_id})
        # CompletingRebalance: commits wait for the assignment.
        assert raw_commit(c, g, mid, mine.generation_id, {(t, 0): (1, "")}) == \
            {(t, 0): REBALANCE_IN_PROGRESS}
        follower = other.send(kp.SyncGroupRequest(
            group_id=g, generation_id=theirs.generation_id, member_id=other_id,
            group_instance_id=None, protocol_type="consumer", protocol_name="range",
            assignments=[]), SYNC_V)
        sync = raw_sync(c, g, mid, mine.generation_id,
                        {mid: _assignment(t, [0, 1]), other_id: _assignment(t, [2])})
        assert sync.error_code == NONE
        fsync = other.recv(follower)
        assert fsync.error_code == NONE
        parts = ConsumerProtocolAssignment.decode(fsync.assignment).assigned_partitions
        assert [(a.topic, list(a.partitions)) for a in parts] == [(t, [2])]
        member.generation = mine.generation_id
        assert raw_heartbeat(other, g, other_id, member.generation) == NONE
        assert raw_leave(other, g, other_id) == NONE
    finally:
        other.close()
    # The leaver triggers another rebalance: the remaining member rejoins alone.
    code = raw_heartbeat(c, g, mid, member.generation)
    assert code in (NONE, REBALANCE_IN_PROGRESS)
    join = raw_join(c, g, t, mid)
    member.generation = join.generation_id
    assert raw_sync(c, g, mid, member.generation,
                    {mid: _assignment(t, list(range(PARTITIONS)))}).error_code == NONE


def test_commit_unknown_topic_or_partition(member):
    t = member.topic
    res = member.commit({("no-such-topic", 0): (1, ""), (t, PARTITIONS): (1, ""),
                         (t, 0): (2, "ok")})
    assert res == {("no-such-topic", 0): UNKNOWN_TOPIC_OR_PARTITION,
                   (t, PARTITIONS): UNKNOWN_TOPIC_OR_PARTITION, (t, 0): NONE}
    member.committed[(t, 0)] = (2, "ok")
    assert raw_fetch_offsets(member.conn, member.group) == member.committed


@pytest.mark.parametrize("version", [2, COMMIT_V])
def test_commit_oversize_metadata(member, version):
    t = member.topic
    res = member.commit({(t, 0): (5, "x" * (METADATA_MAX + 1)),
                         (t, 2): (6, "y" * METADATA_MAX)}, version=version)
    assert res == {(t, 0): OFFSET_METADATA_TOO_LARGE, (t, 2): NONE}
    member.committed[(t, 2)] = (6, "y" * METADATA_MAX)
    assert raw_fetch_offsets(member.conn, member.group) == member.committed


def _ck_commit_error(consumer, offsets) -> KafkaError | None:
    try:
        res = consumer.commit(offsets=offsets, asynchronous=False)
    except KafkaException as e:
        return e.args[0]
    errs = [tp.error for tp in res if tp.error is not None]
    return errs[0] if errs else None


def test_confluent_commit_bad_offsets(module_broker, bad_topic):
    """Through librdkafka: oversize metadata and an unknown topic fail with Kafka's codes; the
    consumer keeps working and its good commits stand."""
    bs = module_broker.bootstrap
    g = _group("ck-bad")
    c = ck_consumer(bs, {"group.id": g, "client.id": "ck-bad",
                         "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
    try:
        c.subscribe([bad_topic])
        _poll_until([c], lambda: len(c.assignment()) == PARTITIONS, "assignment")
        err = _ck_commit_error(c, [TopicPartition(bad_topic, 0, 3,
                                                  metadata="m" * (METADATA_MAX + 1))])
        assert err is not None and err.code() == KafkaError.OFFSET_METADATA_TOO_LARGE, err
        err = _ck_commit_error(c, [TopicPartition("no-such-topic", 0, 3)])
        assert err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err
        err = _ck_commit_error(c, [TopicPartition(bad_topic, 1, 4, metadata="fine")])
        assert err is None, err
        back = c.committed([TopicPartition(bad_topic, p) for p in range(PARTITIONS)], timeout=10)
        assert sorted((tp.partition, tp.offset, tp.metadata or "") for tp in back) == \
            [(0, -1001, ""), (1, 4, "fine"), (2, -1001, "")]
    finally:
        c.close()
    assert_group_usable(bs, g, bad_topic, {(bad_topic, 1): (4, "fine")})


def test_kafka_python_consumer_commit_bad_offsets(module_broker, bad_topic):
    """kafka-python's consumer with assigned partitions (commits without a generation):
    oversize metadata fails with OFFSET_METADATA_TOO_LARGE, and good commits stand."""
    from kafka import KafkaConsumer
    bs = module_broker.bootstrap
    g = _group("kp-bad")
    c = KafkaConsumer(bootstrap_servers=bs, group_id=g, client_id="kp-bad",
                      enable_auto_commit=False, request_timeout_ms=15000)
    try:
        c.assign([KTP(bad_topic, p) for p in range(PARTITIONS)])
        with pytest.raises(kerr.OffsetMetadataTooLargeError):
            c.commit({KTP(bad_topic, 0): OffsetAndMetadata(3, "m" * (METADATA_MAX + 1), -1)})
        # (An unknown topic is not tried here: kafka-python retries UNKNOWN_TOPIC_OR_PARTITION
        # commits until its timeout; the raw and admin tests cover the code.)
        c.commit({KTP(bad_topic, 1): OffsetAndMetadata(4, "fine", -1)})
        assert c.committed(KTP(bad_topic, 0)) is None
        got = c.committed(KTP(bad_topic, 1), metadata=True)
        assert (got.offset, got.metadata) == (4, "fine"), got
    finally:
        c.close()
    assert_group_usable(bs, g, bad_topic, {(bad_topic, 1): (4, "fine")})
