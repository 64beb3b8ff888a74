"""ElectLeaders (API 43) through confluent-kafka's AdminClient.elect_leaders, a client written
elsewhere: a single-node broker answers ELECTION_NOT_NEEDED for its partitions and
UNKNOWN_TOPIC_OR_PARTITION for others; in a 3-node cluster, after a kill -9 and restart of the
active controller its partitions are led elsewhere, a preferred election over all partitions
moves them back (Metadata: every partition led by its first replica), and a second election
answers ELECTION_NOT_NEEDED."""

from __future__ import annotations

import time

from confluent_kafka import ElectionType, KafkaError, TopicPartition
from confluent_kafka.admin import NewTopic

from sapper_util import ck_admin, ck_create_topic, forget_admin, start_cluster, unique_topic, wait_until

TIMEOUT = 30.0


def elect(bootstrap: str, election_type, partitions) -> dict:
    """{(topic, partition): error code or 0}."""
    # No timeout keywords: confluent-kafka 2.16's C binding rejects them (TypeError "takes at
    # most 4 arguments" with two, SystemError "more argument specifiers than keyword list
    # entries" with one); the defaults (socket.timeout.ms, 60 s) bound the call.
    fut = ck_admin(bootstrap).elect_leaders(election_type, partitions)
    results = fut.result(TIMEOUT)
    # Values are None or a KafkaError (not a KafkaException, as the docstring says).
    return {(tp.topic, tp.partition): (0 if err is None else err.code())
            for tp, err in results.items()}


def test_single_node_needs_no_election(broker):
    topic = unique_topic("elect")
    ck_create_topic(broker.bootstrap, topic, 3)
    asked = [TopicPartition(topic, p) for p in range(3)] + [TopicPartition("no-such-topic", 0)]
    for election_type in (ElectionType.PREFERRED, ElectionType.UNCLEAN):
        got = elect(broker.bootstrap, election_type, asked)
        assert got == {**{(topic, p): KafkaError.ELECTION_NOT_NEEDED for p in range(3)},
                       ("no-such-topic", 0): KafkaError.UNKNOWN_TOPIC_OR_PART}, got
    assert elect(broker.bootstrap, ElectionType.PREFERRED, None) == {}


def leaders(bootstrap: str, topic: str) -> dict:
    """{partition: (leader, replicas, isr)} from Metadata."""
    md = ck_admin(bootstrap).list_topics(topic=topic, timeout=5)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return {}
    return {p.id: (p.leader, list(p.replicas), sorted(p.isrs)) for p in t.partitions.values()}


def test_preferred_election_after_a_restart(broker_factory):
    nodes = start_cluster(broker_factory, 3)
    by_id = {n.node_id: n for n in nodes}
    topic = unique_topic("elect")
    fut = ck_admin(nodes[0].bootstrap).create_topics(
        [NewTopic(topic, num_partitions=6, replication_factor=3)], operation_timeout=TIMEOUT)[topic]
    fut.result(TIMEOUT)

    def in_sync(bootstrap):
        view = leaders(bootstrap, topic)
        ok = len(view) == 6 and all(l >= 0 and sorted(r) == isr for l, r, isr in view.values())
        return view if ok else None

    view = wait_until(lambda: in_sync(nodes[0].bootstrap), TIMEOUT, what="topic in sync")
    assert all(l == r[0] for l, r, _ in view.values()), view

    victim = ck_admin(nodes[0].bootstrap).list_topics(timeout=5).controller_id
    preferred_by_victim = sorted(p for p, (_, r, _) in view.items() if r[0] == victim)
    assert preferred_by_victim, view
    survivor = next(n for n in nodes if n.node_id != victim)
    killed_at = time.monotonic()
    forget_admin(by_id[victim].bootstrap)
    by_id[victim].kill9()
    wait_until(lambda: (v := leaders(survivor.bootstrap, topic)) and
               all(l not in (-1, victim) for l, _, _ in v.values()),
               TIMEOUT, what="the killed node's partitions led elsewhere")
    by_id[victim].start_again()
    view = wait_until(lambda: in_sync(survivor.bootstrap), TIMEOUT, what="restarted node back in sync")
    moved = sorted(p for p, (l, r, _) in view.items() if l != r[0])
    assert moved == preferred_by_victim, view
    # The new controller's own rebalance runs 30 s after it took over: not yet.
    assert time.monotonic() - killed_at < 30, "the automatic rebalance may have raced the test"

    got = elect(survivor.bootstrap, ElectionType.PREFERRED, None)
    # All partitions: the internal topics' partitions the killed node preferred move back too.
    assert all(code == 0 for code in got.values()), got
    assert {k: v for k, v in got.items() if k[0] == topic} == {(topic, p): 0 for p in moved}, got
    wait_until(lambda: (v := in_sync(survivor.bootstrap)) and all(l == r[0] for l, r, _ in v.values()),
               TIMEOUT, what="every partition led by its preferred replica")

    again = elect(survivor.bootstrap, ElectionType.PREFERRED,
                  [TopicPartition(topic, p) for p in range(6)])
    assert again == {(topic, p): KafkaError.ELECTION_NOT_NEEDED for p in range(6)}, again
