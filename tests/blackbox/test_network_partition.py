"""Network partitions and paused processes: a node cut off from the other brokers and from the
controller (or frozen with SIGSTOP) past its session is fenced, its partitions get new leaders
from the ISR, it acknowledges no acks=all write it then loses, and nothing acknowledged is lost.

Goal: Kafka's replication contract under the two faults a kill -9 does not produce: a node that
is alive but unreachable, and a node that stops for longer than the broker session timeout and
then carries on as if nothing had happened. With replication factor 3 and
`min.insync.replicas=2` an acks=all write is acknowledged only once two replicas hold it, and an
ISR shrinks only through the controller; so a leader that reaches neither its followers nor the
controller acknowledges nothing, and what it appended meanwhile is truncated when it comes back
as a follower of the new leader. The rest of the cluster stays available: the victim's
partitions get new leaders within the session timeout, and no other broker is fenced.

Method. The workload of replication_chaos.py: a topic of 3 partitions, replication factor 3,
`min.insync.replicas=2`, and an idempotent acks=all producer (confluent-kafka) in the host
namespace writing `c-<seq>` (partition seq % 3) at a bounded rate to every node, remembering
each acknowledged (partition, offset, value) and when it came; its request timeout is 3 s and
its socket timeout 5 s, as a Kafka user sets them when fail-over must be quick (librdkafka
waits 30-60 s for a silent peer by default). The brokers run with cluster.py's session timeout
(3 s) and `--replica-lag-time-max-ms` 3000, so that a leader whose followers stopped fetching
asks the controller to shrink its ISR while the fault lasts. Each test runs one fault
(NETNS_ROUNDS for more) on its victim: "leader", the leader of the first partition (from 0) not
led by the active controller, or "controller", the active controller (which leads partitions
too). The fault lasts its seeded time, and at least AFTER_FENCE_S after the other nodes fenced
the victim. A monitor asks the other nodes for Metadata every 0.25 s from the fault until every
ISR is whole again.

- Network partition (root and iproute2; netns.py): each node runs in its own network namespace
  on 10.213.X.0/24 (X random per run) behind a bridge; the victim's veth goes down for 7-10 s
  (seeded) while the load goes on. Meanwhile a second producer runs INSIDE the victim's
  namespace (`ip netns exec`, this file run as a script) and talks to the victim only: acks=all,
  not idempotent, no retries, `iso-<round>-<seq>` to the load's partitions the victim still
  believes it leads and to two quiet partitions it leads (topic `quiet-<round>`, created for
  the round: partition 0 empty, partition 1 with QUIET_RECORDS acknowledged records; nobody else
  writes there, so the new leader appends nothing and whatever of the victim's survives shows).
  The victim's log is dumped while it is cut off, to count what it appended that the new leader
  lacks. Strict: the isolated producer gets no acknowledgement at all.
- SIGSTOP (loopback, no privileges): the victim is frozen for 5-8 s (seeded), then SIGCONT. A
  third producer, bootstrapped on the victim alone (acks=all, not idempotent, no retries,
  `pin-<round>-<seq>`), has requests in flight when it freezes and goes on sending 0.2-1 s into
  the pause (they pile up in the frozen node's socket); then it sends nothing new and waits for
  the answers after the SIGCONT. Every acknowledgement it gets, before or after the pause, must
  be durable. A record of it may appear twice: a non-idempotent producer is at-least-once in
  Kafka (the old leader answers NOT_LEADER_OR_FOLLOWER for a pending write that the new leader
  had already replicated, and librdkafka resends after that error without counting a retry);
  such duplicates are counted and printed.

Checks, during the fault: the other nodes fence the victim (it leaves the brokers and every ISR,
its partitions get new leaders with a new leader epoch) within the session timeout plus a
margin, and agree on an active controller other than the victim. After healing (every ISR
whole in every node's view, the load drained): every acknowledged record is at its offset with
its value, offsets are dense from 0 to the high watermark, no value appears twice (but the
pinned producer's, see above); every node is then stopped gracefully and each replica's log on
disk (`sluicectl segments dump`) holds exactly the offsets below the high watermark (no tail the
new leader lacks: the old leader truncated it), the same record as every other replica at each
offset, every acknowledged record, and no record of the isolated producer; each quiet
partition holds exactly its acknowledged records on every replica. Then the isolated producer
must have had no acknowledgement; last, availability: no node but the victim was fenced, the
load was acknowledged on the victim's partitions by their new leaders within
NEW_LEADER_ACKS_WITHIN_S of the fence, and no partition went ACK_GAP_MAX_S without an
acknowledgement until the ISRs were whole again.

The partition and pause checks once found four replication bugs, all fixed and kept as checks
here (docs/reliability.md tells them): a live broker fenced after a controller failover (its
heartbeat waited on the lost controller), an old leader keeping a tail of a partition whose new
leader held no batch, a stale fetch answer applied after leadership moved, and acks=all writes
answered before the ISR had them.

Environment: NETNS_SEED (default random, printed), NETNS_ROUNDS (faults per test, default 1),
NETNS_RATE (records per second of the load, default 3000; 0 for as fast as acknowledgements
come), NETNS_CLIENT_DEBUG (librdkafka debug contexts, e.g. "msg,protocol,broker", for the
isolated and pinned producers, logged next to their results in the test's tmp_path),
SLUICE_BIN, SLUICECTL_BIN. Every wait is bounded; each test takes 20-60 s on the 2-core
development machine.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

import kafka_wire
import power_cluster
from cluster import SESSION_TIMEOUT_MS, Cluster, ClusterNode, sluicectl_binary, wait_until
from replication_chaos import PARTITIONS, TOPIC, Load, on_disk, stop_or_dump_stacks

pytestmark = pytest.mark.sluice_only("several nodes of one cluster, in network namespaces or SIGSTOPped")

REPLICA_LAG_MS = 3_000
EXTRA_ARGS = ["--replica-lag-time-max-ms", str(REPLICA_LAG_MS)]
# How long after the fault the other nodes must have fenced the victim: the session timeout, a
# quorum election when the victim was the active controller, and slack for a loaded machine.
FENCE_WITHIN_S = SESSION_TIMEOUT_MS / 1000 + 20
# The longest a partition may go without an acknowledgement from the fault until the ISRs are
# whole again: session timeout (3 s), an election, the load's request timeout (3 s), slack.
ACK_GAP_MAX_S = 15.0
# The fault lasts at least this long after the others fenced the victim.
AFTER_FENCE_S = 3.0
# The victim's partitions are acknowledged by their new leaders within this long of the fence:
# the load's requests to the victim time out (3 s), librdkafka drains them and finds the leader.
NEW_LEADER_ACKS_WITHIN_S = 10.0
HEAL_WITHIN_S = 60.0
DRAIN_S = 120.0
RATE = float(os.environ.get("NETNS_RATE", "3000")) or None
ROUNDS = int(os.environ.get("NETNS_ROUNDS", "1"))
ISOLATED_PRODUCER = "isolated-producer"
# Records in the second quiet partition before a cut (see NetworkCut).
QUIET_RECORDS = 10


class ControllerFailoverUnavailable(AssertionError):
    """After the active controller was lost, a live broker was fenced or acknowledgements stopped
    for too long."""


class OldLeaderKeptDivergentLog(AssertionError):
    """The cut-off leader kept, after the heal, records of an empty partition that its new leader
    never had."""


VICTIMS_CUT = ["leader", "controller"]
VICTIMS_PAUSE = ["leader", "controller"]


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def network():
    """Namespaces, veths and a bridge on a random 10.213.X.0/24, removed at the end."""
    import netns

    reason = netns.unusable_reason()
    if reason is not None:
        pytest.skip(f"network namespaces are not usable here: {reason}")
    swept = netns.sweep_stale()
    if swept:
        print(f"removed the networks of runs that ended without cleaning up: {swept}")
    net = netns.Network.create([1, 2, 3])
    try:
        yield net
    finally:
        problems = net.remove()
        left = net.leftovers()
        assert not problems and not left, f"network clean-up failed: {problems}, left behind: {left}"


@pytest.fixture
def netns_cluster(network, tmp_path):
    """Three voters, each in its namespace of `network`; on the way out every link is healed (so
    that the graceful stops reach the controller) before the nodes stop."""
    cluster = Cluster(tmp_path, extra_args=EXTRA_ARGS, node_class=network.namespaced_node_class(),
                      addresses={node_id: network.address(node_id) for node_id in (1, 2, 3)})
    try:
        cluster.start()
        yield cluster
    finally:
        for node_id in cluster.nodes:
            try:
                if network.is_cut(node_id):
                    network.heal(node_id)
            except Exception:  # noqa: BLE001 - the network fixture removes it anyway
                pass
        died = cluster.stop()
        if died:
            raise AssertionError(f"nodes exited on their own: {died}\n{cluster.log_tails()}")


@pytest.fixture
def loopback_cluster(tmp_path):
    """Three voters on loopback; on the way out a frozen node gets SIGCONT before the stops."""
    cluster = Cluster(tmp_path, extra_args=EXTRA_ARGS)
    try:
        cluster.start()
        yield cluster
    finally:
        for node in cluster.nodes.values():
            if node.is_running():
                os.kill(node.proc.pid, signal.SIGCONT)
        died = cluster.stop()
        if died:
            raise AssertionError(f"nodes exited on their own: {died}\n{cluster.log_tails()}")


# ---------------------------------------------------------------- what each node says


def metadata(node: ClusterNode, timeout_s: float = 3.0, topic: str = TOPIC) -> dict:
    """Metadata v7 for `topic` from this node alone (librdkafka would ask any node it knows):
    {"brokers": [unfenced ids], "partitions": {p: (leader, leader_epoch, replicas, isr)}}."""
    body = kafka_wire.array([kafka_wire.string(topic)]) + kafka_wire.int8(0)
    with kafka_wire.Connection(node.host, node.port, timeout_s=timeout_s) as conn:
        r = conn.request(kafka_wire.API_METADATA, 7, body, flexible=False)
    r.int32()  # throttle_time_ms
    brokers = []
    for _ in range(r.int32()):
        brokers.append(r.int32())
        r.string()
        r.int32()
        r.string()
    r.string()  # cluster_id
    r.int32()  # controller_id
    found = {}
    for _ in range(r.int32()):
        topic_error = r.int16()
        name = r.string()
        r.int8()
        for _ in range(r.int32()):
            r.int16()
            partition, leader, epoch = r.int32(), r.int32(), r.int32()
            replicas = [r.int32() for _ in range(r.int32())]
            isr = [r.int32() for _ in range(r.int32())]
            [r.int32() for _ in range(r.int32())]  # offline replicas
            if name == topic and topic_error == 0:
                found[partition] = (leader, epoch, replicas, isr)
    return {"brokers": sorted(brokers), "partitions": found}


def whole_everywhere(cluster: Cluster) -> dict | None:
    """Every node's view: every broker unfenced, every partition led, every ISR the three
    replicas, the same leaders and epochs. Returns one view, or None."""
    seen = [metadata(node) for node in cluster.nodes.values()]
    summaries = []
    for view in seen:
        parts = view["partitions"]
        if view["brokers"] != sorted(cluster.nodes) or len(parts) != PARTITIONS:
            return None
        for leader, _, replicas, isr in parts.values():
            if leader < 0 or sorted(isr) != sorted(cluster.nodes) or sorted(replicas) != sorted(cluster.nodes):
                return None
        summaries.append({p: (leader, epoch) for p, (leader, epoch, _, _) in parts.items()})
    return seen[0] if all(summary == summaries[0] for summary in summaries) else None


def fenced_by_the_others(cluster: Cluster, victim: int) -> dict | None:
    """Every other node's view: the victim is fenced, leads nothing and is in no ISR, every
    partition has a leader. Returns one view, or None."""
    seen = [metadata(node) for node_id, node in cluster.nodes.items() if node_id != victim]
    for view in seen:
        parts = view["partitions"]
        if victim in view["brokers"] or len(parts) != PARTITIONS:
            return None
        if any(leader in (-1, victim) or victim in isr for leader, _, _, isr in parts.values()):
            return None
    return seen[0]


def controller_of(nodes: list[ClusterNode]) -> int | None:
    """The active controller the given nodes agree on (metrics endpoint), or None."""
    seen = set()
    for node in nodes:
        found = node.metric("sluice_controller_active_id")
        seen.add(None if found is None else int(found))
    if len(seen) == 1:
        (active,) = seen
        return active
    return None


class Monitor:
    """Asks every node but the victim for Metadata every 0.25 s: which of them the cluster
    fenced (absent from the brokers) and when, and the smallest ISR it saw per partition."""

    def __init__(self, cluster: Cluster, victim: int):
        self.cluster = cluster
        self.victim = victim
        self.live_fenced: dict[int, list[float]] = {}
        self.smallest_isr: dict[int, int] = {}
        self.samples = 0
        self.failures = 0
        self.started = time.monotonic()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        others = [node for node_id, node in self.cluster.nodes.items() if node_id != self.victim]
        while not self._stop.is_set():
            for node in others:
                try:
                    view = metadata(node, timeout_s=2.0)
                except Exception:  # noqa: BLE001 - counted; a node may be busy
                    self.failures += 1
                    continue
                self.samples += 1
                now = time.monotonic() - self.started
                for other in others:
                    if other.node_id not in view["brokers"]:
                        self.live_fenced.setdefault(other.node_id, []).append(round(now, 2))
                for p, (_, _, _, isr) in view["partitions"].items():
                    self.smallest_isr[p] = min(self.smallest_isr.get(p, 99), len(isr))
            self._stop.wait(0.25)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> dict:
        self._stop.set()
        self.thread.join(timeout=10)
        return {"samples": self.samples, "failed_requests": self.failures,
                "live_nodes_fenced": {node: (times[0], times[-1]) for node, times in self.live_fenced.items()},
                "smallest_isr": self.smallest_isr}


# ---------------------------------------------------------------- the producers


class TimedLoad(Load):
    """replication_chaos.Load with short request and socket timeouts (see the module docstring),
    the time of every acknowledgement, and the errors by name."""

    def __init__(self, cluster: Cluster, rate: float | None):
        self.rate = rate
        self.acked: list[tuple[int, int, bytes]] = []
        self.ack_times: list[float] = []
        self.failed = 0
        self.errors: dict[str, int] = {}
        self.stop = threading.Event()
        self.producer = Producer({
            "bootstrap.servers": cluster.bootstrap, "broker.address.family": "v4",
            "acks": "all", "enable.idempotence": True, "linger.ms": 5,
            "message.timeout.ms": 120_000, "request.timeout.ms": 3_000, "socket.timeout.ms": 5_000,
            "reconnect.backoff.max.ms": 500, "log_level": 0,
        })
        self.thread = threading.Thread(target=self.run, daemon=True)

    def report(self, error, message) -> None:
        if error is None:
            self.acked.append((message.partition(), message.offset(), message.value()))
            self.ack_times.append(time.monotonic())
        else:
            self.failed += 1
            self.errors[error.name()] = self.errors.get(error.name(), 0) + 1

    def times(self, start: float, end: float) -> dict[int, list[float]]:
        """{partition: times of its acknowledgements in [start, end)}."""
        count = len(self.ack_times)
        out: dict[int, list[float]] = {p: [] for p in range(PARTITIONS)}
        for (partition, _, _), at in zip(self.acked[:count], self.ack_times[:count]):
            if start <= at < end:
                out[partition].append(at)
        return out

    def longest_gaps(self, start: float, end: float) -> dict[int, float]:
        """Per partition, the longest time without an acknowledgement within [start, end]."""
        gaps = {}
        for partition, times in self.times(start, end).items():
            points = [start, *times, end]
            gaps[partition] = round(max(b - a for a, b in zip(points, points[1:])), 2)
        return gaps


def client_debug(conf: dict, log_path: Path | None) -> dict:
    """With NETNS_CLIENT_DEBUG set, librdkafka's debug contexts it names (e.g. "msg,protocol")
    are logged to `log_path`: which broker answered which produce request, with what offset."""
    contexts = os.environ.get("NETNS_CLIENT_DEBUG")
    if not contexts or log_path is None:
        return conf
    import logging

    logger = logging.getLogger(f"librdkafka.{log_path.name}")
    logger.propagate = False
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return {**conf, "debug": contexts, "log_level": 7, "logger": logger}


class PinnedProducer:
    """acks=all, not idempotent, no retries, bootstrapped on one node: sends `<prefix>-<seq>` to
    `partitions` until `stop_sending()`, then only waits for answers. Remembers every
    acknowledgement with its time, and the errors by name."""

    def __init__(self, node: ClusterNode, partitions: list[int], prefix: str, debug_log: Path | None = None):
        self.partitions = partitions
        self.prefix = prefix
        self.acked: list[tuple[int, int, bytes, float]] = []
        self.errors: dict[str, int] = {}
        self.sent = 0
        self._stop_sending = threading.Event()
        self._done = threading.Event()
        self.producer = Producer(client_debug({
            "bootstrap.servers": node.bootstrap, "broker.address.family": "v4", "acks": "all",
            "enable.idempotence": False, "retries": 0, "linger.ms": 2, "request.timeout.ms": 30_000,
            "message.timeout.ms": 45_000, "log_level": 0,
        }, debug_log))
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _report(self, error, message) -> None:
        if error is None:
            self.acked.append((message.partition(), message.offset(), message.value(), time.monotonic()))
        else:
            self.errors[error.name()] = self.errors.get(error.name(), 0) + 1

    def _run(self) -> None:
        while not self._stop_sending.is_set() and self.sent < 100_000:
            try:
                self.producer.produce(TOPIC, value=f"{self.prefix}-{self.sent}".encode(),
                                      partition=self.partitions[self.sent % len(self.partitions)],
                                      on_delivery=self._report)
                self.sent += 1
            except BufferError:
                pass
            self.producer.poll(0.002)
        while not self._done.is_set():
            self.producer.poll(0.05)

    def start(self) -> None:
        self.thread.start()

    def stop_sending(self) -> None:
        self._stop_sending.set()

    def finish(self, timeout_s: float) -> int:
        """Waits for every answer (bounded); returns how many records got none."""
        self._stop_sending.set()
        self._done.set()
        self.thread.join(timeout=10)
        return self.producer.flush(timeout_s)


def isolated_producer_main(args: dict) -> None:
    """Run inside the isolated node's namespace (see NetworkCut): produce for args["seconds"] to
    the partitions the node names itself leader of, wait for every answer, and write what came
    back to args["out"]."""
    producer = Producer(client_debug({
        "bootstrap.servers": args["bootstrap"], "broker.address.family": "v4", "acks": "all",
        "enable.idempotence": False, "retries": 0, "linger.ms": 5, "request.timeout.ms": 2_000,
        "message.timeout.ms": 2_500, "socket.timeout.ms": 3_000, "log_level": 0,
    }, Path(args["out"]).with_suffix(".client.log")))
    started = time.time()
    led: list[int] = []
    try:
        topic = producer.list_topics(TOPIC, timeout=5).topics[TOPIC]
        led = sorted(p.id for p in topic.partitions.values() if p.leader == args["node_id"])
    except Exception as error:  # noqa: BLE001 - reported, and partition 0 used
        print(f"metadata from the isolated node failed: {error!r}", file=sys.stderr)
    targets = [(TOPIC, p) for p in led or [0]] + [tuple(extra) for extra in args["extra"]]
    acked: list[tuple[str, int, int, str, float]] = []
    errors: dict[str, int] = {}

    def report(error, message):
        if error is None:
            acked.append((message.topic(), message.partition(), message.offset(), message.value().decode(),
                          time.time()))
        else:
            errors[error.name()] = errors.get(error.name(), 0) + 1

    sent = 0
    deadline = time.monotonic() + args["seconds"]
    while time.monotonic() < deadline and sent < 10_000:
        topic, partition = targets[sent % len(targets)]
        try:
            producer.produce(topic, value=f"iso-{args['round']}-{sent}".encode(), partition=partition,
                             on_delivery=report)
            sent += 1
        except BufferError:
            pass
        producer.poll(0.005)
    unanswered = producer.flush(10)
    Path(args["out"]).write_text(json.dumps({
        "started": started, "finished": time.time(), "led": led, "targets": targets, "sent": sent,
        "acked": acked, "errors": errors, "unanswered": unanswered}))


# ---------------------------------------------------------------- the faults


class NetworkCut:
    """The victim's veth down for 7-10 s, with the isolated producer in its namespace. Besides
    the partitions of the load the victim leads, the isolated producer writes to two quiet
    partitions the victim leads (topic `quiet-<round>`, created for the round, no other
    writer): partition 0 empty before the cut, partition 1 holding QUIET_RECORDS acknowledged
    records. There the new leader appends nothing, so whatever of the victim's records survives
    the heal shows (the victim must truncate them all, and no replica may take them)."""

    name = "cut"

    def __init__(self, network, workdir: Path, sluicectl: str):
        self.network = network
        self.workdir = workdir
        self.sluicectl = sluicectl
        self.acked: list[tuple[int, int, bytes]] = []
        self.quiet_topics: list[str] = []
        self.victims: dict[str, int] = {}
        # (topic, partition, offset, value) acknowledged in the quiet partitions: before the cut,
        # and (there should be none) by the isolated producer.
        self.quiet_acked: list[tuple[str, int, int, str]] = []

    def prepare(self, cluster: Cluster, victim: int, partitions: list[int], number: int, rng) -> dict:
        from confluent_kafka.admin import NewTopic

        self.cluster = cluster
        self.node = cluster.nodes[victim]
        self.number = number
        self.lasts = rng.uniform(7.0, 10.0)
        self.produce_for = self.lasts - rng.uniform(3.5, 4.5)
        self.quiet = f"quiet-{number}"
        replicas = [victim] + [node_id for node_id in sorted(cluster.nodes) if node_id != victim]
        cluster.admin().create_topics([NewTopic(self.quiet, num_partitions=2, replica_assignment=[replicas, replicas],
                                                config={"min.insync.replicas": "2"})],
                                      request_timeout=30)[self.quiet].result(30)
        self.quiet_topics.append(self.quiet)
        self.victims[self.quiet] = victim

        def quiet_ready():
            views = [metadata(node, topic=self.quiet)["partitions"] for node in cluster.nodes.values()]
            return all(view.get(p) is not None and view[p][0] == victim
                       and sorted(view[p][3]) == sorted(cluster.nodes) for view in views for p in (0, 1))
        wait_until(f"{self.quiet} led by node {victim} with every replica in sync", quiet_ready, 60, interval_s=0.2)
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "broker.address.family": "v4", "acks": "all",
                             "enable.idempotence": True, "log_level": 0})
        before: list[tuple[str, int, int, str]] = []
        for seq in range(QUIET_RECORDS):
            producer.produce(self.quiet, value=f"q-{number}-{seq}".encode(), partition=1,
                             on_delivery=lambda error, message: before.append(
                                 (message.topic(), message.partition(), message.offset(), message.value().decode()))
                             if error is None else None)
        assert producer.flush(30) == 0 and len(before) == QUIET_RECORDS, f"{self.quiet}-1 not filled: {before}"
        self.quiet_acked += before
        return {"cut_s": round(self.lasts, 1), "quiet_topic": self.quiet}

    def begin(self, victim: int) -> None:
        self.victim = victim
        self.network.cut(victim)
        self.began = time.monotonic()
        self.out = self.workdir / f"isolated-producer-{self.number}.json"
        self.log = self.workdir / f"isolated-producer-{self.number}.log"
        args = {"bootstrap": self.node.bootstrap, "node_id": victim, "round": self.number,
                "seconds": self.produce_for, "out": str(self.out), "extra": [[self.quiet, 0], [self.quiet, 1]]}
        argv = self.network.exec_argv(victim, [sys.executable, str(Path(__file__).resolve()), ISOLATED_PRODUCER,
                                               json.dumps(args)])
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=Path(__file__).resolve().parent)

    def hold(self, figures: dict, until: float) -> None:
        """Until `until` and the isolated producer's end (bounded)."""
        wait_until("the isolated producer ends", lambda: self.proc.poll() is not None,
                   max(5.0, until - time.monotonic()) + 30, interval_s=0.1)
        remaining = until - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        assert self.proc.returncode == 0, \
            f"the isolated producer failed ({self.proc.returncode}): {self.log.read_text()[-3000:]}"
        isolated = json.loads(self.out.read_text())
        # What the victim appended that the others lack (its live log; best effort).
        appended = {}
        for topic, p in isolated["targets"]:
            try:
                records = dump(self.sluicectl, self.node.data_dir, topic, p)
                appended[f"{topic}-{p}"] = count_prefix(records, f"iso-{self.number}-")
            except Exception as error:  # noqa: BLE001 - a live segment may be mid-write
                appended[f"{topic}-{p}"] = f"unreadable: {error!r}"[:200]
        self.isolated_acked = [(p, o, v.encode()) for t, p, o, v, _ in isolated["acked"] if t == TOPIC]
        self.acked += self.isolated_acked
        self.quiet_acked += [(t, p, o, v) for t, p, o, v, _ in isolated["acked"] if t != TOPIC]
        figures["isolated"] = {"believed_led": isolated["led"], "sent": isolated["sent"],
                               "acknowledged": len(isolated["acked"]), "errors": isolated["errors"],
                               "unanswered": isolated["unanswered"], "appended_while_cut": appended,
                               "first_acknowledged": isolated["acked"][:5]}

    def end(self) -> None:
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.network.heal(self.victim)

    def after(self, figures: dict) -> None:
        """The quiet partitions' ISRs after the heal, as their leaders see them (bounded wait for
        the victim to rejoin: a figure, not a check; the logs on disk are checked at the end)."""
        healed = time.monotonic()
        seen: dict = {}

        def rejoined():
            seen.clear()
            for node_id, node in self.cluster.nodes.items():
                view = metadata(node, topic=self.quiet)["partitions"]
                seen[node_id] = {p: (leader, epoch, sorted(isr)) for p, (leader, epoch, _, isr) in view.items()}
            views = list(seen.values())
            return all(view == views[0] for view in views) and len(views[0]) == 2 and all(
                isr == sorted(self.cluster.nodes) for _, _, isr in views[0].values())
        try:
            wait_until("the victim back in the quiet partitions' ISRs", rejoined, 10, interval_s=0.25)
            figures["quiet_isr_whole_after_heal_s"] = round(time.monotonic() - healed, 2)
        except AssertionError:
            figures["quiet_isr_whole_after_heal_s"] = None
        # {node: {partition: (leader, epoch, isr)}}: each node's view when the wait ended.
        figures["quiet_after_heal"] = dict(seen)

    def check_on_disk(self, cluster: Cluster) -> list[AssertionError]:
        """After the graceful stops: every replica of each quiet partition holds exactly the
        records acknowledged there (the ones written before the cut; the isolated producer's
        should be none), at their offsets. An old leader that kept records in the partition that
        was empty (only the victim holds any) is returned, to be raised after the availability
        checks; anything else fails here."""
        problems = []
        found: list[AssertionError] = []
        for topic in self.quiet_topics:
            for partition in (0, 1):
                expected = {o: v for t, p, o, v in self.quiet_acked if (t, p) == (topic, partition)}
                what = "empty before the cut" if partition == 0 else f"{QUIET_RECORDS} records before the cut"
                replicas = {node_id: dump(self.sluicectl, node.data_dir, topic, partition)
                            for node_id, node in cluster.nodes.items()}
                victims = self.victims.get(topic)
                if partition == 0 and not expected and victims is not None and replicas[victims] and not any(
                        records for node_id, records in replicas.items() if node_id != victims):
                    found.append(OldLeaderKeptDivergentLog(
                        f"node {victims}, {topic}-0 (empty before the cut, then written only by the isolated "
                        f"producer, which was acknowledged nothing): after the heal it still holds "
                        f"{len(replicas[victims])} records the new leader never had, first "
                        f"{sorted(replicas[victims].items())[:5]}; the other replicas are empty"))
                    continue
                for node_id, records in replicas.items():
                    stray = sorted((o, v) for o, v in records.items() if expected.get(o) != v)
                    missing = sorted(o for o, v in expected.items() if records.get(o) != v)
                    if stray:
                        problems.append(f"node {node_id}, {topic}-{partition} ({what}, then written only by the "
                                        f"isolated producer): {len(stray)} records of the cut-off leader survived "
                                        f"the heal, first {stray[:5]}")
                    if missing:
                        problems.append(f"node {node_id}, {topic}-{partition}: {len(missing)} acknowledged records "
                                        f"missing, first offsets {missing[:5]}")
                if len({json.dumps(records, sort_keys=True) for records in replicas.values()}) > 1:
                    sizes = {node_id: len(records) for node_id, records in replicas.items()}
                    problems.append(f"{topic}-{partition}: the replicas differ (records per node: {sizes})")
        assert not problems, "\n".join(problems)
        return found


class Pause:
    """SIGSTOP for 5-8 s, with a producer pinned on the victim."""

    name = "pause"

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.acked: list[tuple[int, int, bytes]] = []

    def prepare(self, cluster: Cluster, victim: int, partitions: list[int], number: int, rng) -> dict:
        self.node = cluster.nodes[victim]
        self.lasts = rng.uniform(5.0, 8.0)
        self.pinned = PinnedProducer(self.node, partitions, f"pin-{number}",
                                     self.workdir / f"pinned-producer-{number}.client.log")
        self.pinned.start()
        wait_until("the pinned producer is acknowledged", lambda: len(self.pinned.acked) > 50, 30)
        time.sleep(rng.uniform(0.0, 0.5))
        # It goes on sending a moment into the pause: requests pile up in the frozen node's socket.
        self.send_into_pause = rng.uniform(0.2, 1.0)
        return {"pause_s": round(self.lasts, 1), "pinned_sends_into_pause_s": round(self.send_into_pause, 2)}

    def begin(self, victim: int) -> None:
        os.kill(self.node.proc.pid, signal.SIGSTOP)
        self.began = time.monotonic()
        self.acked_at_pause = len(self.pinned.acked)
        time.sleep(self.send_into_pause)
        self.pinned.stop_sending()

    def check_on_disk(self, cluster: Cluster) -> list[AssertionError]:
        return []

    def hold(self, figures: dict, until: float) -> None:
        remaining = until - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        figures["pinned_acked_while_paused"] = len(self.pinned.acked) - self.acked_at_pause

    def end(self) -> None:
        self.continued = time.monotonic()
        os.kill(self.node.proc.pid, signal.SIGCONT)

    def after(self, figures: dict) -> None:
        unanswered = self.pinned.finish(60)
        after = [a for a in self.pinned.acked if a[3] >= self.continued]
        figures["pinned"] = {"sent": self.pinned.sent,
                             "unacknowledged_at_pause": self.pinned.sent - self.acked_at_pause,
                             "acknowledged": len(self.pinned.acked), "acknowledged_after_sigcont": len(after),
                             "errors": self.pinned.errors, "unanswered": unanswered}
        self.acked += [(p, o, v) for p, o, v, _ in self.pinned.acked]
        # Every acknowledgement, with its time from the SIGCONT, for a failure's diagnosis.
        (self.workdir / f"pinned-producer-{figures['round']}.json").write_text(json.dumps(
            [(p, o, v.decode(), round(at - self.continued, 3)) for p, o, v, at in self.pinned.acked]))
        assert unanswered == 0, f"the pinned producer still waits for {unanswered} answers 60 s after the SIGCONT"


def fault_round(cluster: Cluster, load: TimedLoad, fault, number: int, kind: str, rng: random.Random) -> dict:
    """One fault on the victim `kind` names, under load, and the waits and figures around it."""
    before = wait_until("every ISR whole before the fault", lambda: whole_everywhere(cluster), HEAL_WITHIN_S,
                        interval_s=0.25)
    controller = wait_until("the nodes agree on the active controller",
                            lambda: controller_of(list(cluster.nodes.values())), 30)
    leaders = {p: leader for p, (leader, _, _, _) in before["partitions"].items()}
    if kind == "leader":
        candidates = [p for p in sorted(leaders) if leaders[p] != controller] or sorted(leaders)
        victim = leaders[candidates[0]]
    else:
        victim = controller
    led = sorted(p for p, leader in leaders.items() if leader == victim)
    figures = {"round": number, "kind": kind, "victim": victim, "controller_before": controller,
               "victim_is_controller": victim == controller, "led": led,
               "epochs_before": {p: e for p, (_, e, _, _) in before["partitions"].items()}}
    figures.update(fault.prepare(cluster, victim, led or [0], number, rng))
    acks_before = len(load.ack_times)
    monitor = Monitor(cluster, victim)

    began = time.monotonic()
    fault.begin(victim)
    monitor.start()
    try:
        return fault_window(cluster, load, fault, monitor, figures, victim, led, began, acks_before)
    except BaseException:
        monitor.stop()
        raise


def fault_window(cluster: Cluster, load: TimedLoad, fault, monitor: Monitor, figures: dict, victim: int,
                 led: list[int], began: float, acks_before: int) -> dict:
    """From the fault's start: the fence, the rest of the fault, the heal, and the figures."""
    others = [node for node_id, node in cluster.nodes.items() if node_id != victim]
    try:
        fenced = wait_until(f"the other nodes fence node {victim}", lambda: fenced_by_the_others(cluster, victim),
                            FENCE_WITHIN_S, interval_s=0.1)
        fenced_at = time.monotonic()
        figures["fenced_after_s"] = round(fenced_at - began, 2)
        figures["new_leaders"] = {p: fenced["partitions"][p][0] for p in led}
        figures["epochs_after"] = {p: e for p, (_, e, _, _) in fenced["partitions"].items()}
        for p in led:
            assert figures["epochs_after"][p] > figures["epochs_before"][p], \
                f"partition {p} changed leader without a new leader epoch: {figures}"
        figures["controller_during"] = wait_until("the other nodes agree on an active controller",
                                                  lambda: controller_of(others), 30)
        assert figures["controller_during"] != victim, f"node {victim} still leads the quorum from the others' view"
        # The fault lasts its time, and at least AFTER_FENCE_S after the fence.
        fault.hold(figures, max(began + fault.lasts, fenced_at + AFTER_FENCE_S))
        figures["acks_during_fault"] = len(load.ack_times) - acks_before
    finally:
        ended = time.monotonic()
        fault.end()
    figures["fault_s"] = round(ended - began, 2)
    fault.after(figures)
    wait_until("every ISR whole again in every node's view", lambda: whole_everywhere(cluster), HEAL_WITHIN_S,
               interval_s=0.25)
    whole_at = time.monotonic()
    figures["whole_after_end_s"] = round(whole_at - ended, 2)
    figures["monitor"] = monitor.stop()
    figures["longest_ack_gap_s"] = load.longest_gaps(began, whole_at)
    count = len(load.ack_times)
    wait_until("the load goes on after the fault", lambda: len(load.ack_times) > count + 100, 30)
    # The load went on: acknowledgements on every partition the victim led, from new leaders
    # (their epoch changed at the fence), within NEW_LEADER_ACKS_WITHIN_S of the fence.
    time.sleep(max(0.0, fenced_at + NEW_LEADER_ACKS_WITHIN_S - time.monotonic()))
    watched = led or list(range(PARTITIONS))
    after_fence = load.times(fenced_at, fenced_at + NEW_LEADER_ACKS_WITHIN_S)
    figures["acks_from_new_leaders_after_fence"] = {p: len(after_fence[p]) for p in watched}
    resumed = load.times(began + 0.5, float("inf"))
    figures["acks_resumed_after_s"] = {p: round(min(resumed[p]) - began, 2) if resumed[p] else None for p in watched}
    print(f"{fault.name} round {figures['round']}: {json.dumps(figures)}")
    return figures


# ---------------------------------------------------------------- checks


def check_replicas(cluster: Cluster, highs: dict[int, int], acked: list[tuple[int, int, bytes]],
                   forbidden: tuple[str, ...], sluicectl: str) -> None:
    """After a graceful stop: each replica on disk holds exactly the offsets [0, high watermark),
    every acknowledged record at its offset, the same record as every other replica at each
    offset, and no record whose value starts with one of `forbidden` unless acknowledged."""
    by_offset = {(p, o): v.decode(errors="replace") for p, o, v in acked}
    acked_values = set(by_offset.values())
    problems: list[str] = []
    for partition in range(PARTITIONS):
        replicas = {node_id: on_disk(sluicectl, node.data_dir, partition) for node_id, node in cluster.nodes.items()}
        high = highs[partition]
        for node_id, records in replicas.items():
            missing = [o for o in range(high) if o not in records]
            if missing:
                problems.append(f"node {node_id}, partition {partition}: {len(missing)} offsets below the high "
                                f"watermark {high} missing on disk, first {missing[:5]}")
            extra = sorted(o for o in records if o >= high or o < 0)
            if extra:
                problems.append(f"node {node_id}, partition {partition}: {len(extra)} offsets at or past the high "
                                f"watermark {high} on disk (not truncated), first "
                                f"{[(o, records[o]) for o in extra[:5]]}")
            wrong = [(o, v, records.get(o)) for (p, o), v in by_offset.items()
                     if p == partition and records.get(o) != v]
            if wrong:
                problems.append(f"node {node_id}, partition {partition}: {len(wrong)} acknowledged records differ on "
                                f"disk (offset, acknowledged, on disk): {wrong[:5]}")
            stray = [(o, v) for o, v in records.items()
                     if forbidden and isinstance(v, str) and v.startswith(forbidden) and v not in acked_values]
            if stray:
                problems.append(f"node {node_id}, partition {partition}: {len(stray)} records of the isolated "
                                f"producer on disk (none acknowledged, so none may survive), first {stray[:5]}")
        divergent = 0
        for offset in sorted(set().union(*replicas.values())):
            values = {node_id: records[offset] for node_id, records in replicas.items() if offset in records}
            if len(set(values.values())) > 1:
                divergent += 1
                if divergent <= 5:
                    problems.append(f"partition {partition}, offset {offset}: replicas (node: value) hold {values}")
        if divergent:
            problems.append(f"partition {partition}: {divergent} offsets hold different records on different "
                            f"replicas")
    assert not problems, "\n".join(problems)


def dump(sluicectl: str, data_dir: Path, topic: str, partition: int) -> dict[int, str]:
    """replication_chaos.on_disk for any topic: {offset: value} of a partition's log on disk."""
    directory = data_dir / f"{topic}-{partition}"
    if not directory.is_dir():
        return {}
    done = subprocess.run([sluicectl, "-o", "json", "segments", "dump", "--records", str(directory)],
                          capture_output=True, text=True, timeout=300, check=True)
    return {record["offset"]: record["value"] for segment in json.loads(done.stdout)
            for batch in segment.get("batches", []) for record in batch.get("records", [])}


def count_prefix(records: dict[int, str], prefix: str) -> int:
    return sum(1 for value in records.values() if isinstance(value, str) and value.startswith(prefix))


def availability_problems(figures: dict) -> list[str]:
    problems = []
    fenced = figures["monitor"]["live_nodes_fenced"]
    if fenced:
        problems.append(f"round {figures['round']}: live nodes fenced while node {figures['victim']} was "
                        f"{'cut off' if 'cut_s' in figures else 'paused'} (node: first and last time seen fenced, "
                        f"seconds after the fault): {fenced}")
    silent = [p for p, count in figures["acks_from_new_leaders_after_fence"].items() if not count]
    if silent:
        problems.append(f"round {figures['round']}: no acknowledgement on partitions {silent} from their new leaders "
                        f"within {NEW_LEADER_ACKS_WITHIN_S}s of the fence ({figures['fenced_after_s']}s after the "
                        f"fault began)")
    gaps = {p: gap for p, gap in figures["longest_ack_gap_s"].items() if gap > ACK_GAP_MAX_S}
    if gaps:
        problems.append(f"round {figures['round']}: acknowledgements stopped for longer than {ACK_GAP_MAX_S}s "
                        f"(partition: longest gap, seconds): {gaps}")
    return problems


def run(cluster: Cluster, fault, kind: str, label: str) -> tuple[list[dict], dict, list[AssertionError]]:
    """ROUNDS faults under load, then the durable checks (which fail here); returns the rounds'
    figures, the totals, and the on-disk failures found (raised by `finish` once the test's own
    checks are done)."""
    seed = int(os.environ.get("NETNS_SEED", str(random.randrange(1 << 30))))
    print(f"{label}: seed {seed} (NETNS_SEED={seed} repeats the choices), {ROUNDS} round(s)")
    rng = random.Random(seed)
    from power_cluster import create_topic

    create_topic(cluster)
    wait_until("the topic is in sync in every node's view", lambda: whole_everywhere(cluster), 60, interval_s=0.2)
    load = TimedLoad(cluster, RATE)
    load.thread.start()
    rounds = []
    try:
        wait_until("the load is acknowledged", lambda: len(load.acked) > 1000, 60)
        for number in range(1, ROUNDS + 1):
            rounds.append(fault_round(cluster, load, fault, number, kind, rng))
    finally:
        load.stop.set()
    load.finish(DRAIN_S)
    wait_until("every ISR whole after the drain", lambda: whole_everywhere(cluster), HEAL_WITHIN_S, interval_s=0.25)
    acked = list(load.acked) + list(fault.acked)
    read, highs, twice = power_cluster.check_log(cluster, acked, {}, whole=True, at_least_once=("pin-",))
    totals = {"acknowledged": len(load.acked), "load_errors": dict(load.errors),
              "fault_producer_acked": len(fault.acked), "read": read, "high_watermarks": highs,
              "pinned_written_twice": twice}
    for node in cluster.nodes.values():
        stop_or_dump_stacks(node, print)
    check_replicas(cluster, highs, acked, ("iso-",), sluicectl_binary())
    found = fault.check_on_disk(cluster)
    print(f"{label}: {json.dumps(totals)}")
    return rounds, totals, found


def finish(rounds: list[dict], found: list[AssertionError]) -> None:
    """Last, availability (no live node fenced, no long silence), then what the on-disk checks
    found: raised after every other check, so that one failure never hides another."""
    for figures in rounds:
        problems = availability_problems(figures)
        if problems:
            found.append(ControllerFailoverUnavailable("\n".join(problems)) if figures["victim_is_controller"]
                         else AssertionError("\n".join(problems)))
    if found:
        for error in found:
            print(f"found {type(error).__name__}: {error}")
        raise found[0]


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("victim", VICTIMS_CUT)
def test_a_node_cut_off_by_a_network_partition_acknowledges_nothing_and_nothing_acknowledged_is_lost(
        victim, network, netns_cluster, tmp_path):
    fault = NetworkCut(network, tmp_path, sluicectl_binary())
    rounds, _, found = run(netns_cluster, fault, victim, f"network partition ({victim}) on {network.subnet}")
    for figures in rounds:
        # Strict: a leader cut off from its followers and from the controller acknowledges
        # nothing (what it did acknowledge was judged durable or not by the checks above).
        assert not figures["isolated"]["acknowledged"], \
            f"round {figures['round']}: the cut-off node {figures['victim']} acknowledged " \
            f"{figures['isolated']['acknowledged']} acks=all writes while it reached neither its followers nor the " \
            f"controller, first {figures['isolated']['first_acknowledged']}"
    finish(rounds, found)


@pytest.mark.parametrize("victim", VICTIMS_PAUSE)
def test_a_node_paused_past_its_session_is_fenced_and_nothing_acknowledged_is_lost(
        victim, loopback_cluster, tmp_path):
    rounds, _, found = run(loopback_cluster, Pause(tmp_path), victim, f"SIGSTOP ({victim})")
    finish(rounds, found)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == ISOLATED_PRODUCER:
    isolated_producer_main(json.loads(sys.argv[2]))
