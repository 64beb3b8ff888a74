"""Consumer groups with real clients (issue 4, acceptance 1-4).

Each group member is its own process (group_worker.py) that reports, as JSON lines, its
assignment changes, every record it processed and every commit it made. The checks are made
on those reports:
- exact ownership: once stable, every partition is owned by exactly one live member;
- a SIGKILLed member's partitions move to the survivors after its session timeout;
- at least once with commit-after-processing: every produced record is processed; per
  partition, reported commits never go backwards and each commit comes after every record
  below it was processed; the final committed offsets are the end of the log;
- cooperative-sticky: only the partitions that move are revoked;
- a broker restart (SIGTERM, then kill -9) keeps committed offsets, the members keep their
  membership across it, and a new member resumes exactly from the committed offsets.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from sapper_util import ck_create_topic, unique_topic, wait_until

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("group_worker.py")
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_MS = 500
# Joining, rebalancing and reconnecting after a restart all finish well inside this.
STABLE_TIMEOUT_S = 30.0
FAST_REBALANCE = pytest.mark.broker_args("--group-initial-rebalance-delay-ms", "200")
# Outlasts a broker restart (SIGTERM, then start on the same data dir) with a wide margin.
RESTART_SESSION_TIMEOUT_MS = 20000


# --- worker processes ----------------------------------------------------------------------

class Worker:
    """One group_worker.py process and everything it reported so far."""

    def __init__(self, log_dir: Path, name: str, client: str, bootstrap: str, group: str,
                 topic: str, strategy: str = "range", max_seconds: float = 120.0,
                 session_timeout_ms: int = SESSION_TIMEOUT_MS):
        self.name = name
        self.stderr_path = log_dir / f"worker-{name}.stderr"
        cmd = [sys.executable, str(WORKER), "--client", client, "--bootstrap", bootstrap,
               "--group", group, "--topic", topic, "--name", name, "--strategy", strategy,
               "--session-timeout-ms", str(session_timeout_ms),
               "--heartbeat-interval-ms", str(HEARTBEAT_MS), "--max-seconds", str(max_seconds)]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err)
        self.events: list[dict] = []
        self.owned: set[int] = set()
        self.expected_exit = False
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name=f"worker-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                ev = json.loads(raw)
            except ValueError:
                ev = {"ev": "garbage", "line": raw.decode(errors="replace"), "t": time.monotonic()}
            with self._lock:
                self.events.append(ev)
                if "owned" in ev:
                    self.owned = set(ev["owned"])

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.events)

    def owned_now(self) -> set[int]:
        with self._lock:
            return set(self.owned)

    def of(self, kind: str, since: int = 0) -> list[dict]:
        return [e for e in self.snapshot()[since:] if e["ev"] == kind]

    def check_healthy(self) -> None:
        """Fails the test if the worker crashed or exited without being asked to."""
        crashes = self.of("crash")
        if crashes:
            raise AssertionError(f"worker {self.name} crashed:\n{crashes[0]['error']}")
        if not self.expected_exit and self.proc.poll() is not None:
            raise AssertionError(f"worker {self.name} exited with {self.proc.returncode}\n"
                                 f"{self.stderr_tail()}")

    def stderr_tail(self, nbytes: int = 4000) -> str:
        try:
            return self.stderr_path.read_bytes()[-nbytes:].decode(errors="replace")
        except OSError:
            return "(no stderr)"

    def kill(self) -> None:
        self.expected_exit = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self, timeout: float = 20.0) -> float:
        """Asks for a clean close (commit, leave the group); returns how long it took."""
        self.check_healthy()
        self.expected_exit = True
        t0 = time.monotonic()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"close\n")
        self.proc.stdin.flush()
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"worker {self.name} did not close within {timeout}s\n"
                                 f"{self.stderr_tail()}")
        self._reader.join(5)
        self.check_healthy()
        assert rc == 0, f"worker {self.name} exited with {rc}\n{self.stderr_tail()}"
        assert self.of("closed"), f"worker {self.name} exited without closing its consumer"
        return time.monotonic() - t0


@pytest.fixture
def spawn(tmp_path, broker):
    """spawn(name, client, group, topic, ...) starts a worker; all are killed at teardown."""
    made: list[Worker] = []

    def _spawn(name: str, client: str, group: str, topic: str, **kw) -> Worker:
        w = Worker(tmp_path, name, client, broker.bootstrap, group, topic, **kw)
        made.append(w)
        return w

    yield _spawn
    for w in made:
        w.expected_exit = True
        if w.proc.poll() is None:
            w.proc.kill()
            try:
                w.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


def healthy(workers: list[Worker]) -> None:
    for w in workers:
        w.check_healthy()


def exact_ownership(workers: list[Worker], partitions: int) -> dict[int, str] | None:
    """partition -> owner name when every partition has exactly one owner among `workers` and
    every worker owns something; None otherwise."""
    owners: dict[int, str] = {}
    for w in workers:
        owned = w.owned_now()
        if not owned:
            return None
        for p in owned:
            if p in owners:
                return None
            owners[p] = w.name
    return owners if set(owners) == set(range(partitions)) else None


def wait_stable_ownership(workers: list[Worker], partitions: int,
                          timeout: float = STABLE_TIMEOUT_S, settle: float = 0.6,
                          others: list[Worker] = ()) -> dict[int, str]:
    """Waits until exact_ownership holds and stays the same for `settle` seconds."""
    deadline = time.monotonic() + timeout
    seen, since = None, 0.0
    while True:
        healthy(workers + list(others))
        now = time.monotonic()
        owners = exact_ownership(workers, partitions)
        if owners is not None and owners == seen:
            if now - since >= settle:
                return owners
        else:
            seen, since = owners, now
        if now >= deadline:
            state = {w.name: sorted(w.owned_now()) for w in workers}
            raise AssertionError(f"no stable exact ownership of {partitions} partitions after "
                                 f"{timeout}s: {state}")
        time.sleep(0.1)


# --- producing and reading back --------------------------------------------------------------

class SeqProducer(threading.Thread):
    """Writes `total` records, value = the sequence number, record i to partition i % partitions,
    spread evenly over `duration` seconds; collects (partition, offset) -> seq from deliveries."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, total: int, duration: float,
                 first_seq: int = 0):
        super().__init__(name="seq-producer", daemon=True)
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.total, self.duration, self.first_seq = total, duration, first_seq
        self.delivered: dict[tuple[int, int], int] = {}
        self.errors: list[str] = []
        self.sent = 0

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:  # reported by finish()
            self.errors.append(repr(e))

    def _run(self) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "acks": "all",
                             "enable.idempotence": True, "message.timeout.ms": 60000,
                             "reconnect.backoff.max.ms": 500})

        def cb(err, msg):
            if err is not None:
                self.errors.append(str(err))
            else:
                self.delivered[(msg.partition(), msg.offset())] = int(msg.value())

        start = time.monotonic()
        step = max(1, self.total // 200)
        for i in range(self.total):
            seq = self.first_seq + i
            if i % step == 0:
                lag = start + self.duration * i / self.total - time.monotonic()
                if lag > 0:
                    time.sleep(lag)
            while True:
                try:
                    producer.produce(self.topic, value=str(seq).encode(),
                                     partition=seq % self.partitions, on_delivery=cb)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            self.sent = i + 1
        left = producer.flush(60)
        if left:
            self.errors.append(f"{left} records undelivered after 60s")

    def produce_now(self) -> dict[tuple[int, int], int]:
        """Produces everything on the calling thread (no pacing with duration 0)."""
        self.run()
        return self.finish()

    def finish(self, timeout: float = 90.0) -> dict[tuple[int, int], int]:
        if self.ident is not None:
            self.join(timeout)
            assert not self.is_alive(), f"producer still running after {timeout}s"
        assert not self.errors, f"producer errors: {self.errors[:5]}"
        assert len(self.delivered) == self.total, (len(self.delivered), self.total)
        return self.delivered


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("watermarks")})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
    finally:
        c.close()


def fetch_committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets, read by a fresh consumer that does not join the group
    (-1001, OFFSET_INVALID, for none)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=15)
        for tp in tps:
            assert tp.error is None, f"committed() for partition {tp.partition}: {tp.error}"
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def reported_commits(workers: list[Worker], before: float | None = None) -> dict[int, int]:
    """The highest commit per partition the workers reported (before time `before`)."""
    out: dict[int, int] = {}
    for w in workers:
        for e in w.of("commit"):
            if before is not None and e["t"] >= before:
                continue
            for p, o in e["offsets"].items():
                out[int(p)] = max(out.get(int(p), 0), o)
    return out


def wait_all_committed(workers: list[Worker], end: dict[int, int], timeout: float = 40.0,
                       others: list[Worker] = ()) -> None:
    def done():
        healthy(workers + list(others))
        got = reported_commits(workers + list(others))
        return all(got.get(p, 0) >= o for p, o in end.items()) or None

    try:
        wait_until(done, timeout, interval=0.2, what="every partition committed to its end")
    except AssertionError:
        got = reported_commits(workers + list(others))
        lag = {p: (got.get(p, 0), o) for p, o in end.items() if got.get(p, 0) < o}
        state = {w.name: sorted(w.owned_now()) for w in workers}
        raise AssertionError(f"not committed to the end after {timeout}s: (committed, end) "
                             f"{lag}; ownership {state}")


def check_at_least_once(workers: list[Worker], delivered: dict[tuple[int, int], int],
                        end: dict[int, int], final_committed: dict[int, int]) -> dict:
    """The at-least-once checker; returns a few figures for the log."""
    first_t: dict[tuple[int, int], float] = {}
    processed = 0
    for w in workers:
        for e in w.of("recs"):
            for p, o, seq in e["recs"]:
                processed += 1
                want = delivered.get((p, o))
                assert want is None or want == seq, \
                    f"{w.name}: partition {p} offset {o} carried seq {seq}, produced as {want}"
                if (p, o) not in first_t or e["t"] < first_t[(p, o)]:
                    first_t[(p, o)] = e["t"]
    for (p, o) in delivered:
        assert o < end[p], f"delivered offset {o} beyond the end {end[p]} of partition {p}"
    missing = [(p, o) for p, n in end.items() for o in range(n) if (p, o) not in first_t]
    assert not missing, f"{len(missing)} records never processed, first: {missing[:10]}"

    # prefix[p][o]: when every record below offset o had been processed at least once.
    prefix: dict[int, list[float]] = {}
    for p, n in end.items():
        acc, arr = float("-inf"), [float("-inf")]
        for o in range(n):
            acc = max(acc, first_t[(p, o)])
            arr.append(acc)
        prefix[p] = arr
    commits = sorted((e["t"], int(p), o, w.name)
                     for w in workers for e in w.of("commit") for p, o in e["offsets"].items())
    last: dict[int, tuple[int, str]] = {}
    for t, p, o, name in commits:
        prev, prev_name = last.get(p, (0, "-"))
        assert o >= prev, f"partition {p}: {name} committed {o} after {prev_name} committed {prev}"
        assert o <= end[p], f"partition {p}: {name} committed {o} beyond the end {end[p]}"
        assert prefix[p][o] <= t, \
            f"partition {p}: {name} committed {o} before every record below it was processed"
        last[p] = (o, name)
    for p, n in end.items():
        assert final_committed[p] == n, \
            f"partition {p}: committed {final_committed[p]}, end of log {n}"
        assert last.get(p, (0, ""))[0] == n, f"partition {p}: last reported commit {last.get(p)}"
    return {"records": sum(end.values()), "processed": processed,
            "reprocessed": processed - len(first_t), "commits": len(commits)}


# --- acceptance 1 and 3: three members, one SIGKILLed, at least once -------------------------

def group_survives_sigkill(broker, spawn, client: str) -> None:
    bs = broker.bootstrap
    partitions, per_partition = 12, 2000
    topic, group = unique_topic(f"grp-{client}"), unique_topic(f"g-{client}")
    ck_create_topic(bs, topic, partitions)
    producer = SeqProducer(bs, topic, partitions, partitions * per_partition, duration=12.0)
    producer.start()
    # Members join one at a time, so partitions change hands (with commits in flight) twice
    # before the kill.
    workers: list[Worker] = []
    for i in range(3):
        workers.append(spawn(f"{client}-{i}", client, group, topic))
        owners = wait_stable_ownership(workers, partitions)
        wait_until(lambda: healthy(workers) or workers[-1].of("commit"), 20,
                   what=f"{workers[-1].name} committing")
    counts = sorted(list(owners.values()).count(w.name) for w in workers)
    assert counts == [4, 4, 4], f"uneven assignment of 12 partitions to 3 members: {owners}"

    # The first member formed the group alone, so it is the leader (a leader stays leader while
    # it is a member): kill the leader with confluent-kafka, a follower with kafka-python.
    victim = workers[0] if client == "ck" else workers[1]
    survivors = [w for w in workers if w is not victim]
    moved = victim.owned_now()
    marks = {w.name: len(w.snapshot()) for w in survivors}
    killed_at = time.monotonic()
    victim.kill()
    owners = wait_stable_ownership(survivors, partitions, timeout=SESSION_TIMEOUT_MS / 1000 + 15)
    # When the last of the victim's partitions was assigned to a survivor.
    taken = [e["t"] for w in survivors for e in w.of("assign", marks[w.name])
             if moved & set(e["parts"])]
    assert taken, "no survivor was assigned the victim's partitions"
    took = max(taken) - killed_at
    print(f"\n{client}: partitions {sorted(moved)} of the killed member moved in {took:.2f}s")
    assert took <= SESSION_TIMEOUT_MS / 1000 + 4.0, f"reassignment took {took:.1f}s"
    assert sorted(list(owners.values()).count(w.name) for w in survivors) == [6, 6], owners

    delivered = producer.finish()
    end = end_offsets(bs, topic, partitions)
    wait_all_committed(survivors, end, others=[victim])
    closes = [round(w.close(), 2) for w in survivors]
    final = fetch_committed(bs, group, topic, partitions)
    figures = check_at_least_once(workers, delivered, end, final)
    print(f"{client}: {figures}, close took {closes}s")


@FAST_REBALANCE
def test_confluent_group_at_least_once_with_member_killed(broker, spawn):
    group_survives_sigkill(broker, spawn, "ck")


@FAST_REBALANCE
def test_kafka_python_group_at_least_once_with_member_killed(broker, spawn):
    group_survives_sigkill(broker, spawn, "kp")


# --- acceptance 2: cooperative-sticky moves only what must move --------------------------------

def changes_since(w: Worker, mark: int) -> list[tuple[str, list[int]]]:
    """Assignment changes after event `mark`. Incremental callbacks with nothing in them (every
    cooperative rebalance ends with one) change nothing and are left out."""
    return [(e["ev"], e["parts"]) for e in w.snapshot()[mark:]
            if e["ev"] in ("assign", "revoke", "lost") and e["parts"]]


def join_cooperatively(members: list[Worker], newcomer: Worker, partitions: int) -> None:
    """Waits for `newcomer` to get its share; checks that each earlier member was revoked
    exactly the partitions it gave up (incremental callbacks), that none of them gained or lost
    anything else, and that the newcomer got exactly what they gave up."""
    before = {w.name: w.owned_now() for w in members}
    marks = {w.name: len(w.snapshot()) for w in members}
    everyone = members + [newcomer]
    owners = wait_stable_ownership(everyone, partitions)
    share = partitions // len(everyone)
    assert sorted(list(owners.values()).count(w.name) for w in everyone) == \
        [share] * len(everyone), owners
    moved: set[int] = set()
    for w in members:
        kept = w.owned_now()
        changes = changes_since(w, marks[w.name])
        assert kept <= before[w.name], f"{w.name} gained partitions: {before[w.name]} -> {kept}"
        assert all(ev == "revoke" for ev, _ in changes), \
            f"{w.name} when {newcomer.name} joined: {changes}"
        revoked = sorted(p for _, parts in changes for p in parts)
        assert revoked == sorted(before[w.name] - kept), \
            f"{w.name} was revoked {revoked}, but only {sorted(before[w.name] - kept)} moved"
        moved |= before[w.name] - kept
    assert newcomer.owned_now() == moved, \
        f"{newcomer.name} owns {sorted(newcomer.owned_now())}, moved {sorted(moved)}"
    changes = changes_since(newcomer, 0)
    assert all(ev == "assign" for ev, _ in changes), f"{newcomer.name}: {changes}"


@FAST_REBALANCE
def test_cooperative_sticky_revokes_only_moving_partitions(broker, spawn):
    bs = broker.bootstrap
    partitions = 12
    topic, group = unique_topic("coop"), unique_topic("g-coop")
    ck_create_topic(bs, topic, partitions)
    SeqProducer(bs, topic, partitions, partitions * 50, duration=0.0).produce_now()

    def member(name):
        return spawn(name, "ck", group, topic, strategy="cooperative-sticky")

    # One member, then a second and a third join: every time the members already there give
    # up exactly what the newcomer gets, and nothing else.
    a = member("a")
    wait_stable_ownership([a], partitions)
    b = member("b")
    join_cooperatively([a], b, partitions)
    c = member("c")
    join_cooperatively([a, b], c, partitions)

    # a leaves cleanly: its partitions go to b and c, who keep everything they had.
    before = {w.name: w.owned_now() for w in (b, c)}
    marks = {w.name: len(w.snapshot()) for w in (b, c)}
    left = a.owned_now()
    took = a.close()
    print(f"\ncooperative: close of a member took {took:.2f}s")
    owners = wait_stable_ownership([b, c], partitions, others=[a])
    assert sorted(list(owners.values()).count(n) for n in "bc") == [6, 6], owners
    gained = set()
    for w in (b, c):
        changes = changes_since(w, marks[w.name])
        assert all(ev == "assign" for ev, _ in changes), \
            f"{w.name} was revoked partitions when a left: {changes}"
        assert w.owned_now() >= before[w.name]
        gained |= w.owned_now() - before[w.name]
    assert gained == left, f"a owned {sorted(left)}, b and c gained {sorted(gained)}"
    for w in (b, c):
        w.close()


# --- acceptance 4: a broker restart keeps committed offsets ------------------------------------

@FAST_REBALANCE
def test_broker_restart_keeps_committed_offsets(broker, spawn):
    bs = broker.bootstrap
    partitions, per_partition = 6, 1500
    topic, group = unique_topic("grp-restart"), unique_topic("g-restart")
    ck_create_topic(bs, topic, partitions)
    producer = SeqProducer(bs, topic, partitions, partitions * per_partition, duration=8.0)
    producer.start()
    # A session long enough to outlast the restart: the members should keep their membership
    # (the group is replayed from __consumer_offsets as Stable, with its generation).
    w1, w2 = (spawn(f"r-{i}", "ck", group, topic, session_timeout_ms=RESTART_SESSION_TIMEOUT_MS)
              for i in (1, 2))
    owners = wait_stable_ownership([w1, w2], partitions)
    marks = {w.name: len(w.snapshot()) for w in (w1, w2)}
    wait_until(lambda: healthy([w1, w2]) or sum(reported_commits([w1, w2]).values()) >= 1500,
               20, what="some progress before the restart")

    # Restart while the members consume and commit: every commit acknowledged before SIGTERM
    # is still there afterwards.
    stopping = time.monotonic()
    acked = reported_commits([w1, w2], before=stopping)
    broker.restart()
    restarted = time.monotonic()
    after = fetch_committed(bs, group, topic, partitions)
    for p, o in acked.items():
        assert after[p] >= o, f"partition {p}: committed {o} before the restart, {after[p]} after"
    print(f"\nrestart: broker down for {restarted - stopping:.2f}s; committed before {acked}, "
          f"read back after {after}")

    # The members carry on, in the same generation: both commit again after the restart and
    # neither lost or gave up a partition.
    wait_until(lambda: healthy([w1, w2]) or all(
        any(e["t"] > restarted for e in w.of("commit")) for w in (w1, w2)), 30,
        what="both members committing after the restart")
    assert exact_ownership([w1, w2], partitions) == owners
    for w in (w1, w2):
        changes = changes_since(w, marks[w.name])
        assert not changes, f"{w.name} did not keep its membership across the restart: " \
            f"{changes}, {[e['error'] for e in w.of('commit_failed', marks[w.name])][:3]}"
    delivered = producer.finish()
    end = end_offsets(bs, topic, partitions)
    wait_all_committed([w1, w2], end)
    w1.close()
    w2.close()

    # With the members gone, committed == what they last reported, also across a kill -9
    # (no clean shutdown: __consumer_offsets is recovered and replayed).
    last = reported_commits([w1, w2])
    assert fetch_committed(bs, group, topic, partitions) == last
    broker.kill9()
    broker.start_again()
    assert fetch_committed(bs, group, topic, partitions) == last

    # More records; a new member resumes exactly at the committed offsets.
    more = SeqProducer(bs, topic, partitions, partitions * 200, duration=0.0,
                       first_seq=partitions * per_partition)
    delivered.update(more.produce_now())
    end = end_offsets(bs, topic, partitions)
    w3 = spawn("r-3", "ck", group, topic)
    wait_all_committed([w3], end, others=[w1, w2])
    first_seen: dict[int, int] = {}
    for e in w3.of("recs"):
        for p, o, _ in e["recs"]:
            first_seen.setdefault(p, o)
    assert first_seen == last, f"new member started at {first_seen}, committed were {last}"
    w3.close()
    final = fetch_committed(bs, group, topic, partitions)
    figures = check_at_least_once([w1, w2, w3], delivered, end, final)
    print(f"restart: {figures}")
