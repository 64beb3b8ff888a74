"""One consumer-group member, run as its own process by test_groups.py.

    python group_worker.py --client ck|kp --bootstrap HOST:PORT --group G --topic T --name N
                           [--strategy range|cooperative-sticky] [--max-seconds S]

It subscribes to one topic and processes every record with commit-after-processing: records
are reported (processed) first, then their offsets are committed synchronously, then the
commit is reported. Partitions being revoked get their processed offsets committed in the
revoke callback. Everything it does is one JSON object per line on stdout, each with `ev` and
`t` (time.monotonic(), comparable across processes on one machine):

    {"ev": "started"}
    {"ev": "assign", "parts": [..], "owned": [..]}       (parts: what this callback added)
    {"ev": "revoke", "parts": [..], "owned": [..]}       (also "lost": revoked without commit)
    {"ev": "recs", "recs": [[partition, offset, seq], ..]}
    {"ev": "commit", "offsets": {"partition": next_offset, ..}}
    {"ev": "commit_failed", "offsets": {..}, "error": ".."}
    {"ev": "closed"}

A line "close" on stdin (or stdin reaching EOF) makes it commit what it processed, close the
consumer (leaving the group) and exit 0. --max-seconds bounds its life either way.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import traceback

_out_lock = threading.Lock()


def emit(ev: str, **fields) -> None:
    fields["ev"] = ev
    fields["t"] = time.monotonic()
    line = json.dumps(fields)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Control:
    """Watches stdin for "close" (or EOF) on a daemon thread."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            if line.strip() == "close":
                break
        self.stop.set()


class Member:
    """What both client flavours share: owned partitions and processed-but-uncommitted offsets."""

    def __init__(self) -> None:
        self.owned: set[int] = set()
        self.pending: dict[int, int] = {}  # partition -> next offset to commit

    def process(self, batch: list[tuple[int, int, bytes]]) -> None:
        """batch: (partition, offset, value). Records of partitions no longer owned are dropped
        unprocessed (they were revoked while the batch was being fetched)."""
        recs = []
        for p, o, value in batch:
            if p not in self.owned:
                continue
            recs.append([p, o, int(value)])
            self.pending[p] = o + 1
        if recs:
            emit("recs", recs=recs)

    def to_commit(self, parts=None) -> dict[int, int]:
        wanted = self.owned if parts is None else set(parts)
        return {p: o for p, o in self.pending.items() if p in wanted}

    def committed(self, offsets: dict[int, int]) -> None:
        for p, o in offsets.items():
            if self.pending.get(p) == o:
                del self.pending[p]


def run_confluent(args, ctl: Control) -> None:
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    m = Member()
    conf = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "client.id": args.name,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": args.session_timeout_ms,
        "heartbeat.interval.ms": args.heartbeat_interval_ms,
        "partition.assignment.strategy": args.strategy,
        "topic.metadata.refresh.interval.ms": 2000,
    }
    c = Consumer(conf)

    def commit(offsets: dict[int, int]) -> None:
        if not offsets:
            return
        tps = [TopicPartition(args.topic, p, o) for p, o in offsets.items()]
        try:
            res = c.commit(offsets=tps, asynchronous=False)
        except KafkaException as e:
            emit("commit_failed", offsets=offsets, error=str(e))
            return
        ok = {tp.partition: tp.offset for tp in res or [] if tp.error is None}
        bad = {tp.partition: str(tp.error) for tp in res or [] if tp.error is not None}
        if ok:
            m.committed(ok)
            emit("commit", offsets=ok)
        if bad:
            emit("commit_failed", offsets={p: offsets[p] for p in bad}, error=json.dumps(bad))

    def on_assign(consumer, parts):
        added = sorted(tp.partition for tp in parts)
        m.owned.update(added)
        emit("assign", parts=added, owned=sorted(m.owned))

    def on_revoke(consumer, parts):
        gone = sorted(tp.partition for tp in parts)
        commit(m.to_commit(gone))
        m.owned.difference_update(gone)
        for p in gone:
            m.pending.pop(p, None)
        emit("revoke", parts=gone, owned=sorted(m.owned))

    def on_lost(consumer, parts):
        gone = sorted(tp.partition for tp in parts)
        m.owned.difference_update(gone)
        for p in gone:
            m.pending.pop(p, None)
        emit("lost", parts=gone, owned=sorted(m.owned))

    c.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    emit("started")
    deadline = time.monotonic() + args.max_seconds
    while not ctl.stop.is_set() and time.monotonic() < deadline:
        msgs = c.consume(num_messages=500, timeout=0.2)
        batch = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    emit("error", error=str(err))
                continue
            batch.append((msg.partition(), msg.offset(), msg.value()))
        m.process(batch)
        commit(m.to_commit())
    commit(m.to_commit())
    c.close()
    emit("closed")


def run_kafka_python(args, ctl: Control) -> None:
    from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata

    m = Member()
    c = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        client_id=args.name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=args.heartbeat_interval_ms,
        max_poll_records=500,
        metadata_max_age_ms=2000,
    )

    def commit(offsets: dict[int, int]) -> None:
        if not offsets:
            return
        try:
            c.commit({TopicPartition(args.topic, p): OffsetAndMetadata(o, "", -1)
                      for p, o in offsets.items()})
        except KafkaError as e:
            emit("commit_failed", offsets=offsets, error=repr(e))
            return
        m.committed(offsets)
        emit("commit", offsets=offsets)

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            gone = sorted(tp.partition for tp in revoked)
            commit(m.to_commit(gone))
            m.owned.difference_update(gone)
            for p in gone:
                m.pending.pop(p, None)
            emit("revoke", parts=gone, owned=sorted(m.owned))

        def on_partitions_assigned(self, assigned):
            added = sorted(tp.partition for tp in assigned)
            m.owned.update(added)
            emit("assign", parts=added, owned=sorted(m.owned))

    c.subscribe([args.topic], listener=Listener())
    emit("started")
    deadline = time.monotonic() + args.max_seconds
    while not ctl.stop.is_set() and time.monotonic() < deadline:
        polled = c.poll(timeout_ms=200, max_records=500)
        batch = [(tp.partition, r.offset, r.value) for tp, rs in polled.items() for r in rs]
        m.process(batch)
        commit(m.to_commit())
    commit(m.to_commit())
    c.close(autocommit=False)
    emit("closed")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", choices=["ck", "kp"], required=True)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--strategy", default="range")
    ap.add_argument("--session-timeout-ms", type=int, default=6000)
    ap.add_argument("--heartbeat-interval-ms", type=int, default=500)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    args = ap.parse_args()
    ctl = Control()
    try:
        if args.client == "ck":
            run_confluent(args, ctl)
        else:
            run_kafka_python(args, ctl)
    except Exception:
        emit("crash", error=traceback.format_exc())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
