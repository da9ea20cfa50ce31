"""Power loss: the broker's data directory on a file system that forgets everything not fsynced.

Goal: every record acknowledged at acks=all survives a power loss, at its acknowledged offset,
byte for byte, with dense offsets; this is what a SIGKILL cannot show, since the page cache
outlives a killed process but not a machine that loses power.

Method: the broker runs with its data directory inside a `sluice-powerfail` mount (see
tests/blackbox/powerfail.py and powerfail/README.md): a FUSE passthrough to a backing directory
that keeps every change not made durable (file data before its fsync, names before their
directory's fsync) in memory. One cycle:
1. mount the backing directory (a fresh mount over what the last cycle left) and start the
   broker on <mount>/data; from the second cycle on, first check everything acknowledged so far;
2. produce with confluent-kafka, idempotent (acks=all), records whose bytes are a function of
   their sequence number, three partitions, and the same records at acks=1 to a companion topic,
   while a consumer of a group reads the acks=all topic and commits its positions synchronously
   every N records (a fresh consumer each cycle, assigned at the committed offsets), until a
   random moment (seeded) after at least ACKED_MIN acknowledgments and one confirmed commit;
3. power the mount off, tearing each file's last unsynced write at a random byte (seeded), and
   SIGKILL the broker, in one of three ways (seeded): the power fails right after the N-th
   write from then on (N random), so the broker is cut in the middle of an append, and is killed
   after; or the power first, at once; or the kill first (the kernel then finishes the requests
   already in flight, an fsync included). Then unmount: the backing directory now holds only
   what was durable.
After the last cycle the broker starts directly on the backing directory and everything is
checked once more. The checks: the topic is there, the log starts at 0, every partition's
offsets are dense from 0 to its high watermark, and every acknowledged record is at its offset
with its exact key, value, headers and timestamp; the acks=1 topic may have lost records, but
its offsets are dense from 0 too and each record in it is one that was sent, whole; the
group's committed offsets are at least the last confirmed commit and at most the largest asked
for.

The cluster tests (power_cluster.py) run three nodes, each with its data directory in its own
mount, a topic of 3 partitions with replication factor 3 and min.insync.replicas=2, the
idempotent acks=all load of replication_chaos.py (one producer for the whole test, so that its
retries after a restart meet what the power loss left) and a consumer group that commits its
positions synchronously every N records. Each cycle cuts the power at a random moment (seeded,
in one of the three orders above, torn) of every node at once, or of one node (a partition
leader, the active controller or any node) while the other two go on acknowledging for a few
seconds; the mounts are unmounted and mounted afresh, the nodes restarted, and once every
partition has a leader (every ISR whole, when one node was cut) the checks run with the group
held: every acknowledged record and every record the group was given is at its offset with its
value, offsets are dense from 0, no value appears twice, and each committed offset is at least
the last confirmed commit, at most the largest asked for and within the log. At the end the
load is drained, the whole log read back, the nodes stopped gracefully and each replica's log on
disk (`sluicectl segments dump`) compared: every offset below the high watermark on every
replica, every acknowledged record on each, no offset with two different records.

Environment: POWER_LOSS_CYCLES (default 3) and POWER_LOSS_SEED; for the cluster tests
POWER_LOSS_CLUSTER_CYCLES (default 2), POWER_LOSS_CLUSTER_SEED (default random, printed),
POWER_LOSS_CLUSTER_RATE (records per second, default as fast as acknowledgements come) and
SLUICECTL_BIN. Needs FUSE (root and /dev/fuse): skipped with the reason where it cannot mount.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

import power_cluster
import powerfail
from clients import Rec, assert_dense, assert_matches, base_conf, consume_range, create_topic, watermarks
from conftest import REPO_ROOT, Broker
from crashloop import record_bytes
from power_cluster import Committer, Figures, PowerCluster, Watch
from replication_chaos import Load, wait_until

pytestmark = pytest.mark.sluice_only("mounts Sluice's sluice-powerfail file system under the broker's data directory")

CYCLES = int(os.environ.get("POWER_LOSS_CYCLES", "3"))
SEED = int(os.environ.get("POWER_LOSS_SEED", "20261202"))
PARTITIONS = 3
# Records per cycle at most: the producer stops there even if the kill has not come (at full
# speed it does not get there: tens of thousands of records a second on the development machine).
RECORDS_PER_CYCLE_MAX = 500_000
# The kill comes at a random moment after at least this many acknowledgments ...
ACKED_MIN = 200
# ... within this many seconds after them ...
KILL_AFTER_S = (0.0, 1.0)
# ... and the wait for ACKED_MIN is bounded by this.
ACKED_WAIT_S = 60.0
TIMESTAMP_BASE_MS = 1_760_000_000_000
# segment.bytes of the topic, one chosen per run (seeded): a roll every few hundred records, or
# every few thousand.
SEGMENT_BYTES_CHOICES = [64 * 1024, 1024 * 1024]


class PowerLossBroker(Broker):
    """A sluice broker whose data directory is given (inside a mount, or its backing directory)."""

    def __init__(self, workdir: Path, name: str, data_dir: Path):
        super().__init__(workdir, name)
        self.data_dir = data_dir


@pytest.fixture
def fuse_usable():
    reason = powerfail.fuse_unusable_reason()
    if reason is not None:
        pytest.skip(f"FUSE is not usable here: {reason}")


def record(seq: int) -> Rec:
    """Record `seq`: key, value (0 to 1 KiB) and headers are a function of the number."""
    key, value, headers = record_bytes(seq)
    return Rec(seq, key, value, headers, TIMESTAMP_BASE_MS + seq)


class Producing:
    """One producer thread: records `seqs` to `topic`, as fast as the broker takes them (so that
    batches are in flight, written but not yet fsynced, when the power goes); remembers what was
    acknowledged."""

    def __init__(self, broker: Broker, topic: str, seqs: range, conf: dict[str, object]):
        self.topic = topic
        self.seqs = seqs
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: list[Rec] = []
        self.producer = Producer(base_conf(broker, **conf, **{"message.timeout.ms": 30_000,
                                                             "request.timeout.ms": 5_000, "log_level": 0}))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _report(self, rec: Rec):
        def on_delivery(err, msg):
            if err is None:
                rec.partition, rec.offset = msg.partition(), msg.offset()
                with self.lock:
                    self.acked.append(rec)
        return on_delivery

    def _run(self) -> None:
        for seq in self.seqs:
            rec = record(seq)
            while not self.stop.is_set():
                try:
                    self.producer.produce(self.topic, key=rec.key, value=rec.value, headers=rec.headers,
                                          partition=rec.seq % PARTITIONS, timestamp=rec.timestamp_ms,
                                          on_delivery=self._report(rec))
                    break
                except BufferError:
                    self.producer.poll(0.01)
            if self.stop.is_set():
                return
            self.producer.poll(0)
        while not self.stop.is_set():
            self.producer.poll(0.05)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def finish(self) -> list[Rec]:
        """After the kill: stop, fail whatever was not acknowledged, return what was."""
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), f"the producer thread of {self.topic} did not stop after the kill"
        # Nothing acknowledged later can count, since the broker is gone, but a reply that
        # arrived before the kill is still delivered here.
        self.producer.purge()
        self.producer.flush(10)
        with self.lock:
            return list(self.acked)


def produce_until_killed(broker: Broker, mount: powerfail.PowerfailMount, topic: str, seqs: range,
                         rng: random.Random, committer: Committer
                         ) -> tuple[list[Rec], list[Rec], dict[str, object]]:
    """Produce at acks=all (idempotent) to `topic` and at acks=1 to its companion, while the
    group's consumer reads and commits, until a random moment after at least ACKED_MIN
    acknowledgements and one confirmed commit; then SIGKILL the broker and power the mount off,
    in one of three orders (seeded).

    Returns the records acknowledged at acks=all, at acks=1, and the power-off report."""
    durable = Producing(broker, topic, seqs, {
        "enable.idempotence": True, "acks": "all", "linger.ms": rng.choice([0, 1, 5]),
        "compression.type": rng.choice(["none", "lz4", "zstd"])})
    leader_only = Producing(broker, acks1_topic(topic), seqs, {"acks": 1, "linger.ms": 5})
    commits = committer.commits
    deadline = time.monotonic() + ACKED_WAIT_S
    while durable.count() < ACKED_MIN or committer.commits <= commits:
        assert time.monotonic() < deadline, \
            f"only {durable.count()} records acknowledged and {committer.commits - commits} commits confirmed " \
            f"in {ACKED_WAIT_S} s"
        assert durable.thread.is_alive(), "the producer thread ended before the kill"
        committer.check_alive()
        time.sleep(0.01)
    time.sleep(rng.uniform(*KILL_AFTER_S))
    order = rng.choice(["after a write", "power-off, then SIGKILL", "SIGKILL, then power-off"])
    if order == "after a write":
        # The power fails right after the N-th write from now reaches the file system, so at
        # least that write is not fsynced: what follows fails with EIO, and the broker must not
        # acknowledge it. Then the process dies with the machine.
        report_fields: dict[str, object] = dict(mount.power_off(torn=True, after_writes=rng.randint(1, 100)))
        broker.kill9()
    elif order == "power-off, then SIGKILL":
        report_fields = dict(mount.power_off(torn=True))
        broker.kill9()
    else:
        # The process dies first: the kernel finishes the requests already in flight (an fsync
        # included), then the power goes.
        broker.kill9()
        report_fields = dict(mount.power_off(torn=True))
    report_fields["order"] = order
    committer.abandon()
    return durable.finish(), leader_only.finish(), report_fields


def acks1_topic(topic: str) -> str:
    return f"{topic}-acks1"


def check(broker: Broker, topic: str, acked: list[Rec], acked_leader_only: list[Rec]) -> int:
    """The topic's log is dense from 0 and holds every acknowledged record exactly; its acks=1
    companion may have lost records, but its log is dense from 0 too and every record in it is
    one that was sent, whole. Returns the number of records read."""
    read = 0
    for name, durable in ((topic, True), (acks1_topic(topic), False)):
        marks = watermarks(broker, name, list(range(PARTITIONS)))
        for partition, (low, high) in marks.items():
            assert low == 0, f"{name} partition {partition}: the log start moved to {low}"
            if durable:
                last = max((r.offset for r in acked if r.partition == partition), default=-1)
                assert last < high, f"acknowledged offset {partition}/{last} is at or past the high watermark {high}"
        ranges = {partition: (0, high) for partition, (_, high) in marks.items()}
        got = consume_range(broker, name, ranges, timeout_s=60)
        assert_dense(got, ranges)
        if durable:
            assert_matches(acked, got)
        else:
            for records in got.values():
                for g in records:
                    seq = int(dict(g.headers)["seq"])
                    key, value, _ = record_bytes(seq)
                    assert (g.key, g.value) == (key, value), \
                        f"{name} {g.partition}/{g.offset}: not the record seq {seq} that was sent"
            survived = {(g.partition, g.offset) for records in got.values() for g in records}
            print(f"  acks=1: {sum(1 for r in acked_leader_only if (r.partition, r.offset) in survived)} of "
                  f"{len(acked_leader_only)} acknowledged records kept at their offsets", flush=True)
        read += sum(len(records) for records in got.values())
    return read


class Commits:
    """What the group's consumers asked to commit and saw confirmed, over every broker life."""

    def __init__(self) -> None:
        self.confirmed: dict[int, int] = {}
        self.attempted: dict[int, int] = {}
        self.count = 0

    def take(self, committer: Committer) -> None:
        """After the kill: what this life's consumer did (a confirmation still on its way when the
        thread is read is missed, which only makes the check weaker)."""
        committer.thread.join(timeout=10)
        for mine, theirs in ((self.confirmed, committer.confirmed), (self.attempted, committer.attempted)):
            for partition, offset in dict(theirs).items():
                mine[partition] = max(mine.get(partition, 0), offset)
        self.count += committer.commits
        if not committer.thread.is_alive():
            committer.consumer.close()

    def check(self, broker: Broker, topic: str) -> dict[int, int]:
        """The group's committed offsets are at least the last confirmed commit and at most the
        largest asked for (the log itself may end below: a consumer can be given records that
        were written but not yet fsynced, as on a single Kafka broker)."""
        committed = power_cluster.committed_offsets(broker.bootstrap, topic, PARTITIONS, timeout_s=60)
        for partition in range(PARTITIONS):
            offset = committed.get(partition, -1)
            confirmed = self.confirmed.get(partition)
            attempted = self.attempted.get(partition)
            assert confirmed is None or offset >= confirmed, \
                f"partition {partition}: committed offset {offset} < last confirmed commit {confirmed}"
            assert offset < 0 or (attempted is not None and offset <= attempted), \
                f"partition {partition}: committed offset {offset} > any commit asked for ({attempted})"
        return committed


def test_acknowledged_records_survive_power_loss(tmp_path, fuse_usable):
    rng = random.Random(SEED)
    backing = tmp_path / "backing"
    backing.mkdir()
    workdir = tmp_path / "broker"
    topic = "power-loss"
    acked: list[Rec] = []
    acked_leader_only: list[Rec] = []
    commits = Commits()
    next_seq = 0
    for cycle in range(CYCLES):
        mount = powerfail.PowerfailMount(backing, tmp_path / "mnt", tmp_path / "control.sock",
                                         seed=SEED + cycle, log_path=tmp_path / "powerfail.log")
        mount.mount()
        broker = None
        try:
            data_dir = mount.mountpoint / "data"
            if cycle == 0:
                powerfail.durable_mkdir(data_dir)
            broker = PowerLossBroker(workdir, f"power-loss-{cycle}", data_dir)
            broker.start()
            if cycle == 0:
                # Small segments, so that segments roll (a new file, a directory fsync) all the time.
                segment_bytes = rng.choice(SEGMENT_BYTES_CHOICES)
                print(f"segment.bytes={segment_bytes}", flush=True)
                for name in (topic, acks1_topic(topic)):
                    create_topic(broker, name, PARTITIONS, {"retention.ms": "-1", "retention.bytes": "-1",
                                                            "segment.bytes": str(segment_bytes)})
            else:
                read = check(broker, topic, acked, acked_leader_only)
                committed = commits.check(broker, topic)
                print(f"cycle {cycle}: after recovery on a fresh mount, {read} records read, "
                      f"{len(acked)} acknowledged ones verified, committed {committed} >= confirmed "
                      f"{dict(sorted(commits.confirmed.items()))}", flush=True)
            seqs = range(next_seq, next_seq + RECORDS_PER_CYCLE_MAX)
            next_seq = seqs.stop
            committer = Committer(broker.bootstrap, every=rng.choice([50, 200, 1000]), topic=topic,
                                  partitions=PARTITIONS, assign=True)
            committer.start()
            new, new_leader_only, power_off = produce_until_killed(broker, mount, topic, seqs, rng, committer)
            commits.take(committer)
            acked += new
            acked_leader_only += new_leader_only
            print(f"cycle {cycle}: {len(new)} acknowledged at acks=all, {len(new_leader_only)} at acks=1, "
                  f"{committer.commits} commits confirmed, then SIGKILL and power-off {power_off}", flush=True)
            mount.unmount()
        except BaseException:
            if broker is not None:
                print(f"cycle {cycle}, seed {SEED}: broker log\n{broker.log_tail()}")
            print(f"sluice-powerfail log\n{mount.log_tail()}")
            raise
        finally:
            if broker is not None and broker.is_running():
                broker.kill9()
            mount.close()
    broker = PowerLossBroker(workdir, "power-loss-final", backing / "data")
    broker.start()
    try:
        read = check(broker, topic, acked, acked_leader_only)
        commits.check(broker, topic)
        print(f"final, on the backing directory: {read} records read, {len(acked)} acknowledged ones verified, "
              f"{commits.count} commits confirmed in all")
    except BaseException:
        print(f"final check, seed {SEED}: broker log\n{broker.log_tail()}")
        raise
    finally:
        broker.stop()
    assert len(acked) >= CYCLES * ACKED_MIN


# ---------------------------------------------------------------- the cluster tests

CLUSTER_CYCLES = int(os.environ.get("POWER_LOSS_CLUSTER_CYCLES", "2"))
CLUSTER_RATE = float(os.environ["POWER_LOSS_CLUSTER_RATE"]) if os.environ.get("POWER_LOSS_CLUSTER_RATE") else None
# Each cut comes after at least this many new acknowledgements and one confirmed group commit ...
CLUSTER_ACKED_MIN = 500
# ... at a random moment within this many seconds after them.
CLUSTER_CUT_AFTER_S = (0.0, 1.5)
# One node stays down this long while the other two go on.
NODE_DOWN_S = (2.0, 5.0)


def cluster_seed() -> int:
    return int(os.environ.get("POWER_LOSS_CLUSTER_SEED", str(random.randrange(1 << 30))))


def sluicectl() -> str:
    override = os.environ.get("SLUICECTL_BIN")
    if override:
        return override
    subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "sluicectl"], cwd=REPO_ROOT, check=True,
                   timeout=1800)
    return str(REPO_ROOT / "target" / "release" / "sluicectl")


class ClusterRun:
    """What both cluster tests share: the cluster on its mounts, the load, the group, the checks."""

    def __init__(self, root: Path, seed: int):
        self.seed = seed
        self.rng = random.Random(seed)
        self.pc = PowerCluster(root, seed)
        self.figures = Figures()
        self.load: Load | None = None
        self.committer: Committer | None = None
        self.watch: Watch | None = None
        self.started = time.monotonic()

    def start(self) -> None:
        self.pc.start(list(self.pc.nodes))
        power_cluster.create_topic(self.pc.cluster)
        self.watch = Watch(self.pc.cluster)
        wait_until("the new topic is in sync", self.watch.every_isr_whole, power_cluster.RECOVERY_TIMEOUT_S, 0.25)
        self.load = Load(self.pc.cluster, CLUSTER_RATE)
        self.load.thread.start()
        self.committer = Committer(self.pc.cluster.bootstrap, every=self.rng.choice([100, 500, 2000]))
        self.committer.start()
        print(f"seed {self.seed}: cluster up, group commits every {self.committer.every} records", flush=True)

    def check_alive(self) -> None:
        assert self.load.thread.is_alive(), "the load's producer thread ended (an exception in produce())"
        self.committer.check_alive()

    def await_moment(self) -> None:
        """Until CLUSTER_ACKED_MIN more acknowledgements and one more confirmed commit, then a
        random moment."""
        acked, commits = len(self.load.acked), self.committer.commits

        def progressed():
            self.check_alive()
            return len(self.load.acked) >= acked + CLUSTER_ACKED_MIN and self.committer.commits > commits
        wait_until("acknowledgements and a group commit before the cut", progressed, power_cluster.RECOVERY_TIMEOUT_S,
                   0.02)
        time.sleep(self.rng.uniform(*CLUSTER_CUT_AFTER_S))

    def cut(self, node_ids: list[int]) -> str:
        order = self.rng.choice(power_cluster.ORDERS)
        reports = self.pc.lose_power(node_ids, order, self.rng)
        self.figures.power_offs += len(node_ids)
        self.figures.orders[order] = self.figures.orders.get(order, 0) + 1
        self.figures.exited_on_their_own += sum("exited" in report for report in reports.values())
        return f"{order}: " + "; ".join(
            f"node {node_id} torn_bytes_kept={r['torn_bytes_kept']} "
            f"unsynced_bytes_dropped={r['unsynced_bytes_dropped']}"
            + (" (its N-th write was the last)" if r.get("first") else "")
            + (" armed_timed_out" if r.get("armed_timed_out") else "")
            + (f" exited on its own ({r['exited']})" if "exited" in r else "")
            for node_id, r in reports.items())

    def check_recovered(self) -> str:
        """With the group held: everything acknowledged or consumed so far, and the commits."""
        self.committer.wait_held(power_cluster.RECOVERY_TIMEOUT_S)
        try:
            acked = list(self.load.acked)
            read, highs, _ = power_cluster.check_log(self.pc.cluster, acked, dict(self.committer.seen), whole=False)
            committed = power_cluster.check_commits(self.pc.cluster, self.committer, highs)
        finally:
            self.committer.release()
        return (f"{len(acked)} acknowledged and {len(self.committer.seen)} consumed verified ({read} read), "
                f"committed {committed} >= confirmed {dict(sorted(self.committer.confirmed.items()))}")

    def finish(self) -> Figures:
        """Drain the load, read everything back, stop gracefully, compare the replicas on disk."""
        self.check_alive()
        self.load.finish(180)
        wait_until("every ISR whole at the end", self.watch.every_isr_whole, power_cluster.RECOVERY_TIMEOUT_S, 0.25)
        self.committer.wait_held(power_cluster.RECOVERY_TIMEOUT_S)
        acked = list(self.load.acked)
        read, highs, _ = power_cluster.check_log(self.pc.cluster, acked, dict(self.committer.seen), whole=True)
        power_cluster.check_commits(self.pc.cluster, self.committer, highs)
        self.committer.close()
        self.pc.stop_gracefully()
        power_cluster.check_replicas(self.pc, highs, acked, sluicectl())
        for node_id in list(self.pc.mounts):
            self.pc.unmount(node_id)
        f = self.figures
        f.acknowledged, f.failed, f.read = len(acked), self.load.failed, read
        f.consumed, f.commits_confirmed, f.commits_failed = len(self.committer.seen), self.committer.commits, \
            self.committer.failed_commits
        print(f"seed {self.seed}: {time.monotonic() - self.started:.1f} s, {f}; group consumer errors: "
              f"{power_cluster.error_names(self.committer.errors)}", flush=True)
        return f

    def close(self, failed: bool) -> None:
        if failed:
            print(f"seed {self.seed} (POWER_LOSS_CLUSTER_SEED={self.seed} to repeat the choices)\n{self.pc.logs()}")
        if self.load is not None:
            self.load.stop.set()
        if self.committer is not None and failed:
            self.committer.abandon()
        self.pc.close()


def test_acknowledged_records_survive_a_whole_cluster_power_loss(tmp_path, fuse_usable):
    """Every node loses power at once, CLUSTER_CYCLES times; the cluster restarts on what the
    disks kept, and nothing acknowledged, consumed or confirmed committed is lost."""
    run = ClusterRun(tmp_path, cluster_seed())
    failed = True
    try:
        run.start()
        for cycle in range(CLUSTER_CYCLES):
            run.await_moment()
            before = len(run.load.acked)
            how = run.cut(list(run.pc.nodes))
            run.committer.hold()
            down = time.monotonic()
            run.pc.start(list(run.pc.nodes))
            wait_until("every partition has a leader after the restart", run.watch.every_partition_led,
                       power_cluster.RECOVERY_TIMEOUT_S, 0.25)
            back = time.monotonic() - down
            print(f"cycle {cycle + 1}/{CLUSTER_CYCLES}: {before} acknowledged at the cut; {how}; "
                  f"every partition led {back:.1f} s later", flush=True)
            print(f"cycle {cycle + 1}: {run.check_recovered()}", flush=True)
            run.figures.cycles += 1
        figures = run.finish()
        failed = False
    finally:
        run.close(failed)
    assert figures.acknowledged >= CLUSTER_CYCLES * CLUSTER_ACKED_MIN


def test_acknowledged_records_survive_a_node_power_loss(tmp_path, fuse_usable):
    """One node (a partition leader, the active controller or any) loses power while the other
    two go on acknowledging; it comes back on what its disk kept, rejoins every ISR, and nothing
    acknowledged, consumed or confirmed committed is lost; the replicas agree on disk."""
    run = ClusterRun(tmp_path, cluster_seed())
    failed = True
    try:
        run.start()
        for cycle in range(CLUSTER_CYCLES):
            run.await_moment()
            roll = run.rng.random()
            if roll < 0.4:
                victim, kind = run.watch.leader_of(run.rng.randrange(power_cluster.PARTITIONS)), "a leader"
            elif roll < 0.6:
                victim, kind = power_cluster.active_controller(run.pc.cluster), "the controller"
            else:
                victim, kind = run.rng.choice(sorted(run.pc.nodes)), "any node"
            before = len(run.load.acked)
            how = run.cut([victim])
            time.sleep(run.rng.uniform(*NODE_DOWN_S))
            wait_until("the other two nodes go on acknowledging",
                       lambda: run.check_alive() or len(run.load.acked) >= before + CLUSTER_ACKED_MIN,
                       power_cluster.RECOVERY_TIMEOUT_S, 0.1)
            during = len(run.load.acked) - before
            down = time.monotonic()
            run.pc.start([victim])
            wait_until("every ISR whole again", run.watch.every_isr_whole, power_cluster.RECOVERY_TIMEOUT_S, 0.25)
            back = time.monotonic() - down
            print(f"cycle {cycle + 1}/{CLUSTER_CYCLES}: node {victim} ({kind}) cut at {before} acknowledged; {how}; "
                  f"{during} acknowledged without it; every ISR whole {back:.1f} s after its restart", flush=True)
            print(f"cycle {cycle + 1}: {run.check_recovered()}", flush=True)
            run.figures.cycles += 1
        figures = run.finish()
        failed = False
    finally:
        run.close(failed)
    assert figures.acknowledged >= CLUSTER_CYCLES * CLUSTER_ACKED_MIN
