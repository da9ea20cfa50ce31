"""Replicated partitions: followers copy their leaders, acks=all waits for the ISR, and a dead
leader's partitions move to an in-sync follower with nothing acknowledged lost.

Goal: show Kafka's replication contract on three `sluice` processes: every replica of a
replication-factor-3 topic holds the records, an idempotent acks=all producer (librdkafka) keeps
going when the leader of a partition is killed mid-load and every record it had acknowledged is
still at its offset, byte for byte, on the new leader; the killed broker comes back, catches up
and rejoins the ISR; `min.insync.replicas` refuses acks=all (NOT_ENOUGH_REPLICAS) while too few
replicas are in sync, and acks=1 still works.

Method: each test starts its own cluster (cluster.py); failures are SIGKILL; every wait is
bounded in time.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

import clients
import kafka_wire
import replication_chaos
from cluster import SESSION_TIMEOUT_MS, Cluster, cluster_fixture, sluicectl_binary, wait_until  # noqa: F401 - the fixture
from conftest import HOST

pytestmark = pytest.mark.sluice_only("several nodes of one cluster; the reference runs a single node")

WAIT_S = 30.0
ERROR_NOT_ENOUGH_REPLICAS = 19






def partitions(admin, topic: str) -> dict[int, object]:
    found = admin.list_topics(topic, timeout=10).topics.get(topic)
    if found is None or found.error is not None:
        return {}
    return dict(found.partitions)


def create(admin, name: str, count: int, replication_factor: int, config: dict | None = None) -> None:
    futures = admin.create_topics([NewTopic(name, count, replication_factor, config=config or {})],
                                  request_timeout=WAIT_S)
    futures[name].result(timeout=WAIT_S)


def fully_in_sync(admin, topic: str, count: int) -> bool:
    found = partitions(admin, topic)
    return len(found) == count and all(sorted(p.isrs) == sorted(p.replicas) and p.leader >= 0
                                       for p in found.values())


def test_every_replica_holds_the_records_and_a_dead_leader_loses_nothing_acknowledged(cluster):
    admin = cluster.admin()
    topic = clients.unique_topic("replicated")
    create(admin, topic, 3, 3, {"min.insync.replicas": "2"})
    wait_until("every replica in sync", lambda: fully_in_sync(admin, topic, 3))

    # Load in the background; the leader of partition 0 dies a third of the way through.
    records = clients.make_records(6000, "rf3", clients.now_ms())
    producer = clients.confluent_producer(cluster, **{"acks": "all", "enable.idempotence": True,
                                                      "message.timeout.ms": 60_000})
    produced = threading.Event()
    failure: list[BaseException] = []

    def produce():
        try:
            clients.produce(producer, topic, records, check=False)
        except BaseException as error:  # noqa: BLE001 - reported by the test thread
            failure.append(error)
        finally:
            produced.set()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    wait_until("a third of the records acknowledged", lambda: sum(r.offset >= 0 for r in records) >= 2000,
               timeout_s=60, interval_s=0.02)
    victim_id = partitions(admin, topic)[0].leader
    victim = cluster.nodes[victim_id]
    acked_before = [r for r in records if r.offset >= 0]
    victim.kill9()
    assert produced.wait(timeout=120), "the producer did not finish within 120 s"
    thread.join(timeout=10)
    assert not failure, failure

    survivors = [node for node in cluster.nodes.values() if node is not victim]
    survivor_admin = cluster.admin(*survivors)
    wait_until("partition 0 has a new leader",
               lambda: partitions(survivor_admin, topic)[0].leader not in (-1, victim_id),
               timeout_s=SESSION_TIMEOUT_MS / 1000 + WAIT_S)
    acked = [r for r in records if r.offset >= 0 and r.error is None]
    assert set(map(id, acked_before)) <= set(map(id, acked)), "a record acknowledged before the kill lost its ack"
    failed = [r for r in records if r.error is not None]
    assert not failed, f"{len(failed)} records failed, first: {failed[0].error}"
    got = clients.consume_range(survivors[0], topic, clients.partition_ranges(acked))
    clients.assert_matches(acked, got)

    # The killed broker returns, catches up and rejoins the ISR of every partition.
    victim.start()
    wait_until("the returning broker is back in every ISR", lambda: fully_in_sync(survivor_admin, topic, 3),
               timeout_s=60)
    # It holds the same records: kill another broker, so that the partitions that one led move
    # to the returned broker or the third, and read everything again.
    killed = survivors[0]
    killed.kill9()
    wait_until("leaders moved off the second killed broker",
               lambda: all(p.leader not in (-1, killed.node_id) for p in partitions(cluster.admin(victim), topic).values()),
               timeout_s=SESSION_TIMEOUT_MS / 1000 + WAIT_S)
    got = clients.consume_range(victim, topic, clients.partition_ranges(acked))
    clients.assert_matches(acked, got)
    killed.start()


def test_min_insync_replicas_refuses_acks_all_while_too_few_are_in_sync(cluster):
    admin = cluster.admin()
    topic = clients.unique_topic("strict")
    create(admin, topic, 1, 3, {"min.insync.replicas": "3"})
    wait_until("every replica in sync", lambda: fully_in_sync(admin, topic, 1))
    leader = cluster.nodes[partitions(admin, topic)[0].leader]
    batch = kafka_wire.record_batch([(b"k", b"v")], clients.now_ms())
    with kafka_wire.Connection(HOST, leader.port) as conn:
        assert kafka_wire.produce(conn, 9, topic, 0, batch, acks=-1).error_code == 0

    follower = next(node for node in cluster.nodes.values() if node is not leader)
    follower.kill9()
    wait_until("the ISR shrinks to two",
               lambda: len(partitions(cluster.admin(leader), topic)[0].isrs) == 2,
               timeout_s=SESSION_TIMEOUT_MS / 1000 + WAIT_S)
    with kafka_wire.Connection(HOST, leader.port) as conn:
        refused = kafka_wire.produce(conn, 9, topic, 0, batch, acks=-1)
        assert refused.error_code == ERROR_NOT_ENOUGH_REPLICAS, refused
        assert kafka_wire.produce(conn, 9, topic, 0, batch, acks=1).error_code == 0, "acks=1 does not wait"

    follower.start()
    wait_until("the follower rejoins", lambda: fully_in_sync(cluster.admin(leader), topic, 1), timeout_s=60)
    with kafka_wire.Connection(HOST, leader.port) as conn:
        assert kafka_wire.produce(conn, 9, topic, 0, batch, acks=-1).error_code == 0


def test_chaos_kill_nine_under_acks_all_load_loses_nothing(tmp_path):
    """Random SIGKILLs of leaders, the controller and random nodes under acks=all load
    (replication_chaos.py); `SLUICE_CHAOS_KILLS` sets how many (default 4, 200 by hand) and
    `SLUICE_CHAOS_RATE` caps the load in records per second."""
    kills = int(os.environ.get("SLUICE_CHAOS_KILLS", "4"))
    seed = int(os.environ.get("SLUICE_CHAOS_SEED", str(random.randrange(1 << 30))))
    print(f"chaos seed {seed}, {kills} kills")
    cluster = Cluster(tmp_path)
    cluster.start()
    try:
        rate = float(os.environ["SLUICE_CHAOS_RATE"]) if os.environ.get("SLUICE_CHAOS_RATE") else None
        outcome = replication_chaos.run(cluster, sluicectl_binary(), kills, seed, rate)
    finally:
        cluster.stop()
    assert outcome.kills == kills
    assert outcome.lost == 0, f"acknowledged records lost: {outcome}"
    assert outcome.duplicates == 0, f"records written twice: {outcome}"
    assert outcome.divergent_offsets == 0, f"replicas disagree at some offsets: {outcome}"
    assert outcome.acknowledged > 1000 and outcome.read >= outcome.acknowledged
    assert outcome.commits > 0, f"the group never confirmed a commit: {outcome}"




def test_a_rolling_restart_loses_no_availability_and_no_record(cluster):
    """SIGTERM each broker in turn under acks=all load: controlled shutdown moves its leadership
    first, so the producer sees no error and never waits long for an acknowledgement."""
    admin = cluster.admin()
    topic = clients.unique_topic("rolling")
    create(admin, topic, 3, 3, {"min.insync.replicas": "2"})
    wait_until("every replica in sync", lambda: fully_in_sync(admin, topic, 3))
    acked: list[tuple[float, int, int, bytes]] = []
    errors: list[object] = []
    stop = threading.Event()
    producer = clients.confluent_producer(cluster, **{"acks": "all", "enable.idempotence": True, "log_level": 0})

    def report(error, message):
        if error is None:
            acked.append((time.monotonic(), message.partition(), message.offset(), message.value()))
        else:
            errors.append(error)

    def produce():
        seq = 0
        while not stop.is_set() and seq < 2_000_000:
            try:
                producer.produce(topic, value=f"r-{seq}".encode(), partition=seq % 3, on_delivery=report)
                seq += 1
            except BufferError:
                pass
            producer.poll(0.001 if seq % 50 == 0 else 0)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    wait_until("the load is acknowledged", lambda: len(acked) > 1000, timeout_s=60)
    for node in list(cluster.nodes.values()):
        node.stop()
        node.start()
        wait_until(f"{node.name} is back in every ISR", lambda: fully_in_sync(cluster.admin(), topic, 3), timeout_s=60)
    stop.set()
    thread.join(timeout=30)
    assert producer.flush(60) == 0
    assert not errors, f"{len(errors)} delivery errors, first: {errors[0]}"
    times = sorted(at for at, _, _, _ in acked)
    longest = max(later - earlier for earlier, later in zip(times, times[1:]))
    print(f"rolling restart: {len(acked)} records acknowledged, longest wait between acknowledgements {longest:.2f}s")
    assert longest < 10, f"acknowledgements stopped for {longest:.1f}s"
    records = {(p, o): v for _, p, o, v in acked}
    ends = {p: max(o for (q, o) in records if q == p) + 1 for p in range(3)}
    consumer = clients.confluent_consumer(cluster)
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
        seen = {}
        deadline = time.monotonic() + 120
        while len(seen) < sum(ends.values()) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                seen[(message.partition(), message.offset())] = message.value()
    finally:
        consumer.close()
    lost = [key for key, value in records.items() if seen.get(key) != value]
    assert not lost, f"{len(lost)} acknowledged records missing or changed, first at {lost[0]}"


def test_preferred_and_unclean_leader_elections(cluster):
    """ElectLeaders: the preferred replica takes its partition back (librdkafka's AdminClient);
    a partition whose only in-sync replica is down stays offline until an unclean election
    (sluicectl) hands it to a live out-of-sync replica."""
    from confluent_kafka import ElectionType

    admin = cluster.admin()
    topic = clients.unique_topic("elect")
    create(admin, topic, 3, 3)
    wait_until("every replica in sync", lambda: fully_in_sync(admin, topic, 3))
    preferred = {p: found.replicas[0] for p, found in partitions(admin, topic).items()}
    victim = cluster.nodes[preferred[0]]
    victim.kill9()
    survivors = cluster.admin(*[node for node in cluster.nodes.values() if node is not victim])
    wait_until("partition 0 moves", lambda: partitions(survivors, topic)[0].leader not in (-1, victim.node_id),
               timeout_s=SESSION_TIMEOUT_MS / 1000 + WAIT_S)
    victim.start()
    wait_until("the victim rejoins every ISR", lambda: fully_in_sync(admin, topic, 3), timeout_s=60)
    assert partitions(admin, topic)[0].leader != victim.node_id
    result = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0)]).result(timeout=WAIT_S)
    assert all(error is None for error in result.values()), result
    wait_until("the preferred replica leads again", lambda: partitions(admin, topic)[0].leader == victim.node_id)

    # Two broker-only nodes hold the second topic, so that losing both leaves the quorum whole.
    first, second = cluster.add_broker().node_id, cluster.add_broker().node_id
    lonely = clients.unique_topic("unclean")
    futures = admin.create_topics([NewTopic(lonely, num_partitions=1, replica_assignment=[[first, second]])],
                                  request_timeout=WAIT_S)
    futures[lonely].result(timeout=WAIT_S)
    wait_until("both replicas in sync", lambda: fully_in_sync(admin, lonely, 1))
    watcher = cluster.admin(cluster.nodes[1])
    cluster.nodes[second].kill9()
    wait_until("the ISR shrinks to the leader", lambda: partitions(watcher, lonely)[0].isrs == [first],
               timeout_s=SESSION_TIMEOUT_MS / 1000 + WAIT_S)
    cluster.nodes[first].kill9()
    wait_until("the partition is offline", lambda: partitions(watcher, lonely)[0].leader == -1,
               timeout_s=SESSION_TIMEOUT_MS / 1000 + WAIT_S)
    cluster.nodes[second].start()
    time.sleep(1)
    assert partitions(watcher, lonely)[0].leader == -1, "an out-of-sync replica is never elected on its own"
    ctl = sluicectl_binary()
    done = subprocess.run([ctl, "-b", cluster.nodes[1].bootstrap, "topics", "elect-leaders", lonely, "--unclean"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "elected" in done.stdout, done.stdout + done.stderr
    wait_until("the live replica leads", lambda: partitions(watcher, lonely)[0].leader == second)
    assert partitions(watcher, lonely)[0].isrs == [second]
    cluster.nodes[first].start()


def test_eligible_leader_replicas_lead_cleanly_once_every_in_sync_replica_is_gone(cluster):
    """KIP-966 on three broker-only nodes (the quorum stays whole), min.insync.replicas 2. Stopping
    the followers one by one shrinks the ISR below the minimum: the high watermark then holds
    still (acks=1 records stay invisible) and the replicas that leave become eligible leader
    replicas. With the leader stopped too, a returning replica that left while the ISR was big
    enough is not elected; a returning ELR member is, cleanly, with every acknowledged record.
    A member that crashed (kill -9) leaves the ELR when it restarts."""
    a, b, c = (cluster.add_broker().node_id for _ in range(3))
    nodes = cluster.nodes
    admin = cluster.admin(nodes[1])
    topic = clients.unique_topic("elr")
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[a, b, c]],
                                            config={"min.insync.replicas": "2"})], request_timeout=WAIT_S)
    futures[topic].result(timeout=WAIT_S)
    wait_until("every replica in sync", lambda: fully_in_sync(admin, topic, 1))
    records = clients.make_records(2000, "elr", clients.now_ms())
    clients.produce(clients.confluent_producer(cluster, **{"acks": "all", "enable.idempotence": True}), topic, records)
    session_s = SESSION_TIMEOUT_MS / 1000 + WAIT_S

    def state():
        found = partitions(admin, topic)[0]
        return found.leader, sorted(found.isrs)

    nodes[c].stop()
    wait_until("c leaves the ISR", lambda: state() == (a, sorted([a, b])), timeout_s=session_s)
    nodes[b].stop()
    wait_until("b leaves the ISR", lambda: state() == (a, [a]), timeout_s=session_s)
    # Below min.insync.replicas: acks=1 records are appended but the high watermark stays.
    extra = clients.make_records(100, "elr-acks1", clients.now_ms(), seq_base=2000)
    clients.produce(clients.confluent_producer(cluster, **{"acks": "1"}), topic, extra)
    assert all(rec.error is None for rec in extra)
    time.sleep(1)
    assert clients.watermarks(nodes[1], topic, [0])[0][1] == 2000, "the high watermark moved below the minimum"
    nodes[a].stop()
    wait_until("the partition is offline", lambda: state()[0] == -1, timeout_s=session_s)
    # DescribeTopicPartitions shows the ELR (sluicectl's describe asks it).
    done = subprocess.run([sluicectl_binary(), "-b", nodes[1].bootstrap, "topics", "describe", topic, "-o", "json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    described = json.loads(done.stdout)["partitions"][0]
    assert (described["isr"], described["elr"]) == ([], [a, b]), described

    nodes[c].start()
    time.sleep(2)
    assert state()[0] == -1, "c left while the ISR was big enough: not eligible"
    nodes[b].start()
    wait_until("b, an eligible leader replica, leads", lambda: state()[0] == b, timeout_s=session_s)
    wait_until("c rejoins under b", lambda: state() == (b, sorted([b, c])), timeout_s=60)
    got = clients.consume_range(nodes[1], topic, {0: (0, 2000)})
    clients.assert_matches(records, got)
    nodes[a].start()
    wait_until("a rejoins", lambda: fully_in_sync(admin, topic, 1), timeout_s=60)
    assert clients.watermarks(nodes[1], topic, [0])[0][1] == 2000, "a's acks=1 tail, never committed, is gone"

    # A crash takes a member out of the ELR: c stops, a is killed (fenced after its session),
    # b stops; a restarts after its crash and is not elected; b is.
    nodes[c].stop()
    wait_until("c leaves the ISR", lambda: state() == (b, sorted([a, b])), timeout_s=session_s)
    nodes[a].kill9()
    wait_until("a is fenced", lambda: state() == (b, [b]), timeout_s=session_s)
    nodes[b].stop()
    wait_until("the partition is offline", lambda: state()[0] == -1, timeout_s=session_s)
    nodes[a].start()
    time.sleep(2)
    assert state()[0] == -1, "a restarted after a crash: no longer an eligible leader"
    nodes[b].start()
    wait_until("b leads", lambda: state()[0] == b, timeout_s=session_s)
    nodes[c].start()
    wait_until("every replica back in sync", lambda: fully_in_sync(admin, topic, 1), timeout_s=60)
    got = clients.consume_range(nodes[1], topic, {0: (0, 2000)})
    clients.assert_matches(records, got)


def test_a_reassignment_moves_replicas_after_they_catch_up(cluster):
    """AlterPartitionReassignments through sluicectl: a partition on nodes 1 and 2 moves to a
    broker-only node 4 and node 3, growing to three replicas first and ending on the target; the
    records are on the new replicas (read with both old ones down), and the leader moved."""
    added = cluster.add_broker()
    admin = cluster.admin()
    topic = clients.unique_topic("moved")
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[1, 2]])],
                                  request_timeout=WAIT_S)
    futures[topic].result(timeout=WAIT_S)
    wait_until("both replicas in sync", lambda: fully_in_sync(admin, topic, 1))
    records = clients.make_records(3000, "moved", clients.now_ms())
    clients.produce(clients.confluent_producer(cluster, **{"acks": "all", "enable.idempotence": True}), topic, records)

    ctl = sluicectl_binary()
    bootstrap = cluster.nodes[3].bootstrap
    done = subprocess.run([ctl, "-b", bootstrap, "topics", "reassign", topic, "--partition", "0",
                           "--replicas", f"{added.node_id},3"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until("the reassignment completes",
               lambda: sorted(partitions(admin, topic)[0].replicas) == [3, added.node_id]
               and sorted(partitions(admin, topic)[0].isrs) == [3, added.node_id], timeout_s=60)
    listed = subprocess.run([ctl, "-b", bootstrap, "-o", "json", "topics", "reassignments"],
                            capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(listed.stdout)["reassignments"] == [], "nothing under way once done"
    state = partitions(admin, topic)[0]
    assert state.leader in (3, added.node_id), "leadership moved off the replicas that left"

    # The old replicas go down; the new ones serve everything.
    cluster.nodes[1].kill9()
    cluster.nodes[2].kill9()
    got = clients.consume_range(cluster.nodes[3], topic, clients.partition_ranges(records))
    clients.assert_matches(records, got)
    cluster.nodes[1].start()
    cluster.nodes[2].start()


def test_decommission_moves_every_replica_away_then_unregisters_the_broker(cluster):
    """A broker's graceful decommission under acks=all load: `sluicectl cluster decommission`
    moves every replica it holds (topic partitions and __consumer_offsets) to the other brokers,
    keeping the replication factor, and waits until the moves are done; the broker is stopped and
    `sluicectl cluster unregister` removes it (UnregisterBroker); it is gone from Metadata, a second
    unregister is refused, and nothing acknowledged was lost."""
    added = cluster.add_broker()
    node = added.node_id
    admin = cluster.admin()
    topic = replication_chaos.TOPIC
    assignment = [[node, 1, 2], [2, node, 3], [3, 1, node]]
    futures = admin.create_topics([NewTopic(topic, num_partitions=len(assignment), replica_assignment=assignment, config={"min.insync.replicas": "2"})],
                                  request_timeout=WAIT_S)
    futures[topic].result(timeout=WAIT_S)
    wait_until("the topic is in sync", lambda: fully_in_sync(admin, topic, replication_chaos.PARTITIONS))
    # A group's commits create __consumer_offsets; some of its partitions may sit on the node.
    consumer = clients.confluent_consumer(cluster, **{"group.id": "decommissioned", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    consumer.close()
    load = replication_chaos.Load(cluster, rate=500)
    load.thread.start()
    wait_until("the load is acknowledged", lambda: len(load.acked) > 500, 60)

    ctl = sluicectl_binary()
    bootstrap = cluster.nodes[1].bootstrap
    done = subprocess.run([ctl, "-b", bootstrap, "-o", "json", "cluster", "decommission", "--node", str(node),
                           "--timeout-s", "120"], capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    moved = json.loads(done.stdout)["moved"]
    assert {(m["topic"], m["partition"]) for m in moved} >= {(topic, 0), (topic, 1), (topic, 2)}, moved
    everything = admin.list_topics(timeout=10).topics
    for name, found in everything.items():
        for index, state in found.partitions.items():
            assert node not in state.replicas, f"{name}-{index} still has a replica on node {node}: {state.replicas}"
    for index, state in partitions(admin, topic).items():
        assert len(state.replicas) == 3, f"{topic}-{index} kept its replication factor: {state.replicas}"
    wait_until("every ISR whole after the moves", lambda: fully_in_sync(admin, topic, replication_chaos.PARTITIONS))

    added.stop()
    before = len(load.acked)
    gone = subprocess.run([ctl, "-b", bootstrap, "cluster", "unregister", "--node", str(node)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    wait_until("the broker is gone from Metadata", lambda: node not in admin.list_topics(timeout=10).brokers)
    again = subprocess.run([ctl, "-b", bootstrap, "cluster", "unregister", "--node", str(node)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode != 0 and "BrokerIdNotRegistered" in again.stderr, again.stdout + again.stderr

    wait_until("more acknowledged after the broker left", lambda: len(load.acked) > before + 500, 60)
    load.finish(60)
    ends: dict[int, int] = {}
    for p, offset, _ in load.acked:
        ends[p] = max(ends.get(p, 0), offset + 1)
    got = replication_chaos.read_everything(cluster, ends)
    at = {(p, offset): value for p, records in got.items() for offset, value in records}
    lost = [(p, offset) for p, offset, value in load.acked if at.get((p, offset)) != value]
    assert not lost, f"{len(lost)} of {len(load.acked)} acknowledged records lost, e.g. {lost[:5]}"
