"""A three-node cluster whose nodes each keep their data directory in their own `sluice-powerfail`
mount, and the checks of the cluster power-loss tests (tests/blackbox/test_power_loss.py).

Goal: lose power on one node, or on every node at once, under idempotent acks=all load and a
committing consumer group, and then show that nothing the cluster confirmed was lost: every
acknowledged record is at its offset with its value, every record a consumer was given is still
there, offsets are dense, no value was written twice, the group's committed offsets are at least
the last confirmed commit, and the replicas' logs on disk agree.

Method: `PowerCluster` builds a `Cluster` (cluster.py) and points each node's data directory at
`<mnt-N>/data`, where `mnt-N` is a fresh `PowerfailMount` over `backing-N` for every life of the
node. `lose_power` cuts one node, or several at the same instant, in one of three orders
(seeded), as the single-broker test does: the power fails right after the N-th write from then
on to one node's disk (and at that instant on the others), and the processes die with it; or
the power goes at once, then the processes are killed; or the processes are killed first, then
the power goes. Every power-off is torn. Then the mounts are unmounted (the backing directories
now hold only what was durable) and mounted afresh for the restart.

The load is replication_chaos.Load (values `c-<seq>`, partition seq % 3, kept across the power
losses: its retries after a restart exercise idempotence on what the power loss left). The
group is `Committer`: a subscribed consumer that commits its positions synchronously every N
records and remembers, per partition, the last commit the coordinator confirmed and the largest
it asked for. Every wait is bounded.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import OFFSET_STORED, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

import powerfail
from cluster import Cluster, ClusterNode, wait_until
from replication_chaos import PARTITIONS, TOPIC, on_disk, stop_or_dump_stacks

# How the power goes (see the module docstring).
ORDERS = ("after a write", "power-off, then SIGKILL", "SIGKILL, then power-off")
# A node killed after a power-off, or a whole cluster, gets this long to start and serve.
START_TIMEOUT_S = float(os.environ.get("SLUICE_START_TIMEOUT_S", "90"))
# Leaders, ISRs, reads and commits after a restart: each bounded by this.
RECOVERY_TIMEOUT_S = 120.0
GROUP = "power-loss-group"


@dataclass
class Figures:
    """What one test did, printed at its end."""

    cycles: int = 0
    power_offs: int = 0
    exited_on_their_own: int = 0
    acknowledged: int = 0
    failed: int = 0
    read: int = 0
    consumed: int = 0
    commits_confirmed: int = 0
    commits_failed: int = 0
    orders: dict[str, int] = field(default_factory=dict)


class PowerCluster:
    """Three voters (broker+controller), node N's data directory in the mount `root/mnt-N`."""

    def __init__(self, root: Path, seed: int, extra_args: list[str] | None = None):
        self.root = Path(root)
        self.seed = seed
        self.cluster = Cluster(self.root / "nodes", extra_args=extra_args)
        # Unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer.
        self.sockets = Path(tempfile.mkdtemp(prefix="pfc-"))
        self.mounts: dict[int, powerfail.PowerfailMount] = {}
        self.lives = {node_id: 0 for node_id in self.cluster.nodes}

    @property
    def nodes(self) -> dict[int, ClusterNode]:
        return self.cluster.nodes

    def backing(self, node_id: int) -> Path:
        return self.root / f"backing-{node_id}"

    # ------------------------------------------------------------ mounts

    def mount(self, node_id: int) -> None:
        """A fresh mount over node_id's backing directory; its data directory is <mnt>/data."""
        first = not self.backing(node_id).exists()
        self.backing(node_id).mkdir(exist_ok=True)
        life = self.lives[node_id]
        self.lives[node_id] += 1
        mount = powerfail.PowerfailMount(self.backing(node_id), self.root / f"mnt-{node_id}",
                                         self.sockets / f"{node_id}.sock",
                                         seed=self.seed * 1000 + node_id * 100 + life,
                                         log_path=self.root / f"powerfail-{node_id}.log")
        mount.mount()
        self.mounts[node_id] = mount
        data_dir = mount.mountpoint / "data"
        if first:
            powerfail.durable_mkdir(data_dir)
        self.nodes[node_id].data_dir = data_dir

    def unmount(self, node_id: int) -> None:
        self.mounts.pop(node_id).unmount()

    def start(self, node_ids: list[int]) -> None:
        """Mount (where not mounted) and launch every node given, then wait for each: a voter
        serves only once the quorum has a leader, so the nodes of a whole cluster start together."""
        for node_id in node_ids:
            if node_id not in self.mounts:
                self.mount(node_id)
        for node_id in node_ids:
            self.nodes[node_id].launch()
        for node_id in node_ids:
            self.nodes[node_id].wait_ready(START_TIMEOUT_S)

    # ------------------------------------------------------------ power

    def lose_power(self, node_ids: list[int], order: str, rng: random.Random) -> dict[int, dict[str, object]]:
        """Cut the power of every node given at the same instant, in `order`, then unmount their
        mounts. Returns each mount's power-off report, with `exited=STATUS` where the broker had
        already exited on its own before its SIGKILL, and `first=1` on the mount whose N-th write
        was the last (order "after a write")."""
        reports: dict[int, dict[str, object]] = {node_id: {} for node_id in node_ids}

        def at_once(action, ids: list[int]) -> None:
            """`action(node_id)` for every node at the same moment: one thread each, released
            together by a barrier."""
            if not ids:
                return
            barrier = threading.Barrier(len(ids))

            def run(node_id: int) -> None:
                barrier.wait(timeout=30)
                reports[node_id].update(action(node_id))
            with concurrent.futures.ThreadPoolExecutor(len(ids)) as pool:
                for future in [pool.submit(run, node_id) for node_id in ids]:
                    future.result(timeout=90)

        def power_off(node_id: int) -> dict[str, object]:
            return dict(self.mounts[node_id].power_off(torn=True))

        def kill(node_id: int) -> dict[str, object]:
            node = self.nodes[node_id]
            if node.is_running():
                node.kill9()
                return {}
            node.stopped_by_test = True
            return {"exited": node.proc.returncode}

        if order == "after a write":
            # The power fails right after the N-th write from now to one node's disk (waiting up
            # to 30 s for it), in the middle of whatever the cluster was doing, and at that
            # instant on the others; the processes die with their machines.
            first = rng.choice(node_ids)
            reports[first].update(self.mounts[first].power_off(torn=True, after_writes=rng.randint(1, 100)),
                                  first=1)
            at_once(power_off, [node_id for node_id in node_ids if node_id != first])
            at_once(kill, node_ids)
        elif order == "power-off, then SIGKILL":
            at_once(power_off, node_ids)
            at_once(kill, node_ids)
        else:
            # The processes die first: the kernel finishes the requests already in flight (an
            # fsync included), then the power goes.
            at_once(kill, node_ids)
            at_once(power_off, node_ids)
        for node_id in node_ids:
            self.unmount(node_id)
        return reports

    # ------------------------------------------------------------ teardown

    def stop_gracefully(self, log=print) -> None:
        """SIGTERM every node (a node that ignores it has its stacks logged and fails the test)."""
        for node in self.nodes.values():
            if node.is_running():
                stop_or_dump_stacks(node, log)

    def close(self) -> None:
        """Best effort, also after a failure: stop the nodes, detach every mount."""
        self.cluster.stop()
        for mount in self.mounts.values():
            try:
                mount.close()
            except Exception:  # noqa: BLE001 - detach the others whatever one did
                pass
        self.mounts.clear()
        shutil.rmtree(self.sockets, ignore_errors=True)

    def logs(self) -> str:
        """The tails of the brokers' and the mounts' logs, for a failure."""
        out = [self.cluster.log_tails()]
        for node_id in self.nodes:
            path = self.root / f"powerfail-{node_id}.log"
            if path.exists():
                tail = "\n".join(path.read_text(errors="replace").splitlines()[-15:])
                out.append(f"===== powerfail-{node_id}.log\n{tail}")
        return "\n".join(out)


# ---------------------------------------------------------------- the topic and its metadata


def create_topic(cluster: Cluster) -> None:
    admin = cluster.admin()
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3, config={"min.insync.replicas": "2"})],
                        request_timeout=30)[TOPIC].result(30)


class Watch:
    """One AdminClient (on every node's address: librdkafka reconnects after restarts) for the
    metadata waits, so that a wait of a minute does not create hundreds of clients."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.admin = cluster.admin(*cluster.nodes.values())

    def partitions(self) -> dict[int, object]:
        found = self.admin.list_topics(TOPIC, timeout=10).topics.get(TOPIC)
        if found is None or found.error is not None:
            return {}
        return dict(found.partitions)

    def every_partition_led(self) -> bool:
        found = self.partitions()
        return len(found) == PARTITIONS and all(
            p.leader in self.cluster.nodes and self.cluster.nodes[p.leader].is_running() for p in found.values())

    def every_isr_whole(self) -> bool:
        found = self.partitions()
        return len(found) == PARTITIONS and all(
            p.leader >= 0 and sorted(p.isrs) == sorted(self.cluster.nodes) for p in found.values())

    def leader_of(self, partition: int) -> int:
        return self.partitions()[partition].leader


def active_controller(cluster: Cluster, timeout_s: float = 30.0) -> int:
    """The node id a running node names as the active controller."""
    def active():
        for node in cluster.running():
            found = node.metric("sluice_controller_active_id")
            if found is not None and int(found) in cluster.nodes:
                return int(found)
        return None
    return wait_until("a running node names the active controller", active, timeout_s)


# ---------------------------------------------------------------- the consumer group


class Committer:
    """A consumer in GROUP, subscribed to the topic, committing its positions synchronously every
    `every` records; remembers per partition the last confirmed commit and the largest asked for,
    and the value of every record it was given.

    With `assign`, it assigns itself every partition at the group's committed offsets instead
    of subscribing (a group with no members, as a stand-alone consumer commits): a fresh one can
    take over after the broker restarts without waiting for the old member's session to end.

    `hold()` stops it between two polls or commits (a synchronous commit waits for a coordinator
    while none is up, so after a whole-cluster power loss it returns only after the restart), so
    that the group's offsets can be compared with what it saw confirmed; `release()` lets it go on.
    """

    def __init__(self, bootstrap: str, every: int, topic: str = TOPIC, partitions: int = PARTITIONS,
                 assign: bool = False):
        self.every = every
        self.topic = topic
        self.partitions = partitions
        self.assign = assign
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "broker.address.family": "v4", "group.id": GROUP,
            "enable.auto.commit": False, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100,
            "session.timeout.ms": 30_000, "reconnect.backoff.max.ms": 500, "log_level": 0,
        })
        self.confirmed: dict[int, int] = {}
        self.attempted: dict[int, int] = {}
        self.seen: dict[tuple[int, int], bytes] = {}
        self.consumed = 0
        self.commits = 0
        self.failed_commits = 0
        self.errors: dict[str, int] = {}
        self.problem: BaseException | None = None
        self._hold = threading.Event()
        self._held = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            if self.assign:
                self.consumer.assign([TopicPartition(self.topic, p, OFFSET_STORED) for p in range(self.partitions)])
            else:
                self.consumer.subscribe([self.topic])
            positions: dict[int, int] = {}
            since_commit = 0
            while not self._stop.is_set():
                if self._hold.is_set():
                    self._held.set()
                    time.sleep(0.02)
                    continue
                for message in self.consumer.consume(num_messages=1000, timeout=0.2):
                    error = message.error()
                    if error is not None:
                        self.errors[error.name()] = self.errors.get(error.name(), 0) + 1
                        continue
                    where = (message.partition(), message.offset())
                    earlier = self.seen.setdefault(where, message.value())
                    assert earlier == message.value(), \
                        f"the group read {where} twice with different values: {earlier!r}, {message.value()!r}"
                    positions[message.partition()] = message.offset() + 1
                    self.consumed += 1
                    since_commit += 1
                if since_commit < self.every or not positions:
                    continue
                since_commit = 0
                asked = dict(positions)
                for partition, offset in asked.items():
                    self.attempted[partition] = max(self.attempted.get(partition, 0), offset)
                try:
                    result = self.consumer.commit(
                        offsets=[TopicPartition(self.topic, p, o) for p, o in asked.items()], asynchronous=False)
                except KafkaException as error:
                    self.failed_commits += 1
                    name = error.args[0].name() if error.args else repr(error)
                    self.errors[f"commit {name}"] = self.errors.get(f"commit {name}", 0) + 1
                    time.sleep(0.05)
                    continue
                self.commits += 1
                for tp in result or []:
                    if tp.error is None and tp.offset >= 0:
                        self.confirmed[tp.partition] = max(self.confirmed.get(tp.partition, 0), tp.offset)
        except BaseException as error:  # noqa: BLE001 - reported by the test thread
            self.problem = error

    def hold(self) -> None:
        """Ask the thread to stop at its next poll or commit (returns at once)."""
        self._hold.set()

    def wait_held(self, timeout_s: float) -> None:
        self._hold.set()
        deadline = time.monotonic() + timeout_s
        while not self._held.wait(0.1):
            self.check_alive()
            assert time.monotonic() < deadline, \
                f"the group's consumer did not stop within {timeout_s}s (a synchronous commit still waiting?)"

    def release(self) -> None:
        self._held.clear()
        self._hold.clear()

    def check_alive(self) -> None:
        if self.problem is not None:
            raise AssertionError(f"the group's consumer failed: {self.problem!r}") from self.problem
        assert self.thread.is_alive() or self._stop.is_set(), "the group's consumer thread ended"

    def abandon(self) -> None:
        """After a failure: end the thread without waiting for it (a commit may be stuck)."""
        self._stop.set()
        self._hold.clear()

    def close(self) -> None:
        self.check_alive()
        self._stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the group's consumer did not stop within 60 s"
        self.consumer.close()


def committed_offsets(bootstrap: str, topic: str = TOPIC, partitions: int = PARTITIONS,
                      timeout_s: float = RECOVERY_TIMEOUT_S) -> dict[int, int]:
    """The group's committed offsets (OffsetFetch through a consumer that does not join it)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "broker.address.family": "v4", "group.id": GROUP,
                         "enable.auto.commit": False, "log_level": 0})
    try:
        return wait_until("the group's committed offsets are readable",
                          lambda: _committed(consumer, topic, partitions), timeout_s, interval_s=0.5)
    finally:
        consumer.close()


def _committed(consumer: Consumer, topic: str, partitions: int) -> dict[int, int] | None:
    found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    if any(tp.error is not None for tp in found):
        return None
    return {tp.partition: tp.offset for tp in found}


def check_commits(cluster: Cluster, committer: Committer, highs: dict[int, int]) -> dict[int, int]:
    """With the committer held: every partition's committed offset is at least the last one
    confirmed, at most the largest asked for, and within the log (at most its high watermark:
    a consumer commits only what it was given, which the cluster had confirmed durable)."""
    committed = committed_offsets(",".join(node.bootstrap for node in cluster.nodes.values()))
    problems = []
    for partition in range(PARTITIONS):
        offset = committed.get(partition, -1)
        confirmed = committer.confirmed.get(partition)
        attempted = committer.attempted.get(partition)
        if confirmed is not None and offset < confirmed:
            problems.append(f"partition {partition}: committed offset {offset} < last confirmed commit {confirmed}")
        if offset >= 0 and (attempted is None or offset > attempted):
            problems.append(f"partition {partition}: committed offset {offset} > any commit asked for ({attempted})")
        if offset > highs[partition]:
            problems.append(f"partition {partition}: committed offset {offset} > high watermark {highs[partition]}")
    assert not problems, "; ".join(problems)
    return committed


# ---------------------------------------------------------------- reading the log back


def high_watermarks(cluster: Cluster, timeout_s: float = RECOVERY_TIMEOUT_S) -> dict[int, int]:
    """(low, high) of every partition; the low must be 0 (nothing is ever deleted here)."""
    consumer = Consumer({"bootstrap.servers": ",".join(node.bootstrap for node in cluster.nodes.values()),
                         "broker.address.family": "v4", "group.id": "power-loss-checker",
                         "enable.auto.commit": False, "log_level": 0})

    def marks():
        return {p: consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10, cached=False)
                for p in range(PARTITIONS)}
    try:
        found = wait_until("every partition answers ListOffsets", marks, timeout_s, interval_s=0.5)
    finally:
        consumer.close()
    for partition, (low, _) in found.items():
        assert low == 0, f"partition {partition}: the log start moved to {low}"
    return {partition: high for partition, (_, high) in found.items()}


def read_log(cluster: Cluster, ends: dict[int, int], timeout_s: float = RECOVERY_TIMEOUT_S
             ) -> dict[int, list[tuple[int, bytes]]]:
    """Offsets [0, end) of every partition, read through the cluster (assign, no group)."""
    consumer = Consumer({"bootstrap.servers": ",".join(node.bootstrap for node in cluster.nodes.values()),
                         "broker.address.family": "v4", "group.id": "power-loss-checker",
                         "enable.auto.commit": False, "enable.partition.eof": False, "fetch.wait.max.ms": 100,
                         "log_level": 0})
    got: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    pending = {p for p in range(PARTITIONS) if ends.get(p, 0) > 0}
    errors: dict[str, int] = {}
    try:
        consumer.assign([TopicPartition(TOPIC, p, 0) for p in pending])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                progress = {p: (got[p][-1][0] if got[p] else None, ends[p]) for p in sorted(pending)}
                raise AssertionError(f"reading the log back timed out after {timeout_s}s: last offset and end per "
                                     f"partition {progress}; consumer errors {errors}")
            for message in consumer.consume(num_messages=10_000, timeout=0.5):
                error = message.error()
                if error is not None:
                    errors[error.name()] = errors.get(error.name(), 0) + 1
                    continue
                partition, offset = message.partition(), message.offset()
                if offset < ends[partition]:
                    got[partition].append((offset, message.value()))
                if offset >= ends[partition] - 1:
                    pending.discard(partition)
    finally:
        consumer.close()
    return got


def check_log(cluster: Cluster, acked: list[tuple[int, int, bytes]], seen: dict[tuple[int, int], bytes],
              whole: bool, at_least_once: tuple[str, ...] = ()) -> tuple[int, dict[int, int], int]:
    """Every acknowledged record, and every record the group was given, is at its offset with its
    value; offsets are dense from 0; no value appears twice, except values starting with one of
    `at_least_once` (a producer without idempotence may write a record twice). Reads to the high
    watermark (`whole`) or to the last acknowledged offset. Returns the records read, the high
    watermarks and how many values allowed twice appeared twice.

    Right after a restart a leader's high watermark is the one it last checkpointed, and it holds
    there while the ISR is below min.insync.replicas (KIP-966), as in Kafka: acknowledged records
    become readable once the followers have rejoined and fetched. So the high watermarks are read
    until they cover every acknowledged and consumed offset, for at most RECOVERY_TIMEOUT_S."""
    ends: dict[int, int] = {p: 0 for p in range(PARTITIONS)}
    for partition, offset, _ in acked:
        ends[partition] = max(ends[partition], offset + 1)
    for (partition, offset) in seen:
        ends[partition] = max(ends[partition], offset + 1)
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    highs = high_watermarks(cluster)
    while any(ends[p] > highs[p] for p in range(PARTITIONS)) and time.monotonic() < deadline:
        time.sleep(0.5)
        highs = high_watermarks(cluster)
    problems: list[str] = []
    beyond = {p: (ends[p], highs[p]) for p in range(PARTITIONS) if ends[p] > highs[p]}
    if beyond:
        problems.append(f"acknowledged or consumed offsets lie past the high watermark: (end, high) per partition "
                        f"{beyond}")
    ends = dict(highs) if whole else {p: min(ends[p], highs[p]) for p in range(PARTITIONS)}
    got = read_log(cluster, ends)
    for partition, records in got.items():
        offsets = [offset for offset, _ in records]
        if offsets != list(range(ends[partition])):
            problems.append(f"partition {partition}: offsets not dense 0..{ends[partition] - 1}: "
                            f"{len(offsets)} read, first {offsets[:3]}, last {offsets[-3:]}")
    at = {(p, offset): value for p, records in got.items() for offset, value in records}
    counts: dict[bytes, list[tuple[int, int]]] = {}
    for where, value in at.items():
        counts.setdefault(value, []).append(where)
    twice = {value: where for value, where in counts.items() if len(where) > 1}
    allowed = {value for value in twice if value.decode(errors="replace").startswith(at_least_once)}
    if len(twice) > len(allowed):
        sample = [(value, where) for value, where in twice.items() if value not in allowed][:5]
        problems.append(f"{len(twice) - len(allowed)} values appear more than once, e.g. {sample}")
    if allowed:
        print(f"values written twice, as at-least-once allows: {[(v, twice[v]) for v in sorted(allowed)][:10]}")
    lost = [(p, o, v) for p, o, v in acked if at.get((p, o)) != v]
    if lost:
        sample = [(p, o, v, at.get((p, o))) for p, o, v in lost[:10]]
        past = sum(1 for p, o, _ in lost if o >= highs[p])
        problems.append(f"{len(lost)} of {len(acked)} acknowledged records lost or changed, {past} of them at or "
                        f"past the high watermark (partition, offset, acknowledged value, value read): {sample}")
    changed = [(where, value, at.get(where)) for where, value in seen.items() if at.get(where) != value]
    if changed:
        problems.append(f"{len(changed)} of {len(seen)} records the group was given are gone or changed "
                        f"((partition, offset), value given, value read): {changed[:10]}")
    assert not problems, "\n".join(problems)
    return len(at), highs, len(allowed)


def check_replicas(pc: PowerCluster, highs: dict[int, int], acked: list[tuple[int, int, bytes]],
                   sluicectl: str) -> None:
    """After a graceful stop of every node: each replica's log on disk holds every offset below
    the high watermark, every acknowledged record at its offset, and no offset holds two
    different records on two replicas."""
    by_offset = {(p, o): v.decode(errors="replace") for p, o, v in acked}
    problems: list[str] = []
    divergent = 0
    for partition in range(PARTITIONS):
        replicas = {node_id: on_disk(sluicectl, node.data_dir, partition) for node_id, node in pc.nodes.items()}
        for node_id, records in replicas.items():
            missing = [o for o in range(highs[partition]) if o not in records]
            if missing:
                problems.append(f"node {node_id}, partition {partition}: {len(missing)} offsets below the high "
                                f"watermark {highs[partition]} missing on disk, first {missing[:5]}")
            wrong = [(o, v, records.get(o)) for (p, o), v in by_offset.items()
                     if p == partition and records.get(o) != v]
            if wrong:
                problems.append(f"node {node_id}, partition {partition}: {len(wrong)} acknowledged records differ on "
                                f"disk (offset, acknowledged, on disk): {wrong[:5]}")
        for offset in sorted(set().union(*replicas.values())):
            values = {node_id: records[offset] for node_id, records in replicas.items() if offset in records}
            if len(set(values.values())) > 1:
                divergent += 1
                if divergent <= 5:
                    problems.append(f"partition {partition}, offset {offset}: replicas (node: value) hold {values}")
    if divergent:
        problems.append(f"{divergent} offsets hold different records on different replicas")
    assert not problems, "\n".join(problems)


def error_names(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} x{count}" for name, count in sorted(counts.items())) or "none"

