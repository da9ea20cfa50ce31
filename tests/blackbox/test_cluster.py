"""Multi-broker clusters: three `sluice` processes on loopback that clients use as one Kafka cluster.

Goal: show that nodes started with only Kafka's KRaft-shaped flags (`--node-id`,
`--controller-listen`, `--controller-quorum-voters`, `--process-roles`) form one cluster: every
broker serves the same metadata, partitions are spread over the brokers and led where Metadata
says, admin requests sent to any broker reach the active controller, group coordinators live on
the brokers that lead their `__consumer_offsets` partitions, the quorum survives the loss of its
active controller, a dead broker's partitions go offline until it returns with everything it
acknowledged, and a broker-only node joins a three-voter quorum.

Method: each test starts its own cluster (one unpinned shard per node, a 3 s broker session
timeout so fencing is quick) and drives it with librdkafka (confluent-kafka) and kafka-python;
failures are SIGKILL. Every wait is bounded. Replication is not part of this module: the
partitions here have one replica, or several replicas of which only the leader holds data.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

import clients
import kp
from cluster import SESSION_TIMEOUT_MS, Cluster, cluster_fixture, sluicectl_binary, wait_until  # noqa: F401 - the fixture
from test_sluicectl import ok, sluicectl

pytestmark = pytest.mark.sluice_only("several nodes of one cluster; the reference runs a single node")

OFFSETS_PARTITIONS = 50
WAIT_S = 30.0




def java_hash(text: str) -> int:
    """Java's String.hashCode over UTF-16 code units, as a signed 32-bit int."""
    value = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        value = (31 * value + int.from_bytes(data[i:i + 2], "big")) & 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def offsets_partition(group: str) -> int:
    """The `__consumer_offsets` partition of a group, as Kafka computes it: Utils.abs(hashCode)
    % partitions, where Utils.abs maps Integer.MIN_VALUE to 0."""
    value = java_hash(group)
    return (0 if value == -(1 << 31) else abs(value)) % OFFSETS_PARTITIONS


def create(admin, name: str, partitions: int, replication_factor: int = 1, timeout_s: float = WAIT_S) -> None:
    futures = admin.create_topics([NewTopic(name, partitions, replication_factor)], request_timeout=timeout_s)
    futures[name].result(timeout=timeout_s)


def leaders(admin, topic: str) -> dict[int, int]:
    """Leader per partition, once the broker asked knows the topic: a topic created through one
    broker reaches the others' metadata a moment later, as in Kafka."""
    def known():
        found = admin.list_topics(topic, timeout=10).topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            return None
        return {p.id: p.leader for p in found.partitions.values()}
    return wait_until(f"metadata for {topic}", known)




def offsets_leaders(admin) -> dict[int, int]:
    """Leaders of `__consumer_offsets`, which a cluster creates at the first group lookup."""
    def lookup():
        if "__consumer_offsets" not in admin.list_topics(timeout=10).topics:
            # A group lookup (FindCoordinator) makes the cluster create the topic.
            try:
                admin.describe_consumer_groups(["probe"], request_timeout=5)["probe"].result(timeout=10)
            except KafkaException:
                pass
            return None
        return leaders(admin, "__consumer_offsets")
    return wait_until("the offsets topic exists", lookup)


def groups_led_by(admin, nodes: list[int]) -> dict[int, str]:
    """For each node, a group name whose coordinator it is (it leads the group's offsets partition)."""
    offsets = offsets_leaders(admin)
    chosen: dict[int, str] = {}
    for number in range(10_000):
        name = f"group-{number}"
        leader = offsets[offsets_partition(name)]
        if leader in nodes and leader not in chosen:
            chosen[leader] = name
        if len(chosen) == len(nodes):
            return chosen
    raise AssertionError(f"no group names coordinated by each of {nodes}: {offsets}")


def consume_group(cluster, topic: str, group: str, expected: int, timeout_s: float = 60.0) -> set[bytes]:
    """Join `group`, read `expected` records of `topic`, commit, leave; returns the values."""
    consumer = Consumer(clients.base_conf(cluster, **{"group.id": group, "auto.offset.reset": "earliest",
                                                      "enable.auto.commit": False}))
    values: set[bytes] = set()
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while len(values) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                values.add(message.value())
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert len(values) == expected, f"group {group} read {len(values)} of {expected} records"
    return values


def find_coordinator(admin, group: str) -> int:
    description = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    return description.coordinator.id


def test_three_nodes_serve_one_cluster_to_librdkafka_and_kafka_python(cluster):
    admin = cluster.admin()
    metadata = admin.list_topics(timeout=10)
    assert sorted(metadata.brokers) == [1, 2, 3]
    assert metadata.controller_id in (1, 2, 3)

    topic = clients.unique_topic("spread")
    create(admin, topic, 6)
    placed = leaders(admin, topic)
    assert sorted(set(placed.values())) == [1, 2, 3], f"partitions are not spread over the brokers: {placed}"
    for node in cluster.nodes.values():
        seen = leaders(cluster.admin(node), topic)
        assert seen == placed, f"{node.name} sees other leaders: {seen} vs {placed}"

    replicated = clients.unique_topic("replicated")
    create(admin, replicated, 3, replication_factor=3)
    for partition in admin.list_topics(replicated, timeout=10).topics[replicated].partitions.values():
        assert sorted(partition.replicas) == [1, 2, 3]
        assert partition.leader in partition.isrs
    too_many = admin.create_topics([NewTopic(clients.unique_topic("too-many"), 1, 4)], request_timeout=10)
    with pytest.raises(KafkaException, match="INVALID_REPLICATION_FACTOR"):
        next(iter(too_many.values())).result(timeout=15)

    # librdkafka, bootstrapped from one node, finds every leader.
    first = clients.make_records(600, "rdkafka", clients.now_ms())
    producer = clients.confluent_producer(cluster.nodes[1], **{"acks": "all", "enable.idempotence": True})
    clients.produce(producer, topic, first)
    assert {rec.partition for rec in first} == set(range(6))
    # kafka-python, bootstrapped from another.
    second = clients.make_records(300, "kafka-python", clients.now_ms(), null_headers=False, seq_base=600)
    kp_producer = kp.producer(cluster.nodes[2], "all", "none")
    try:
        kp.produce(kp_producer, topic, second)
    finally:
        kp_producer.close(timeout=10)
    produced = first + second
    ranges = clients.partition_ranges(produced)
    clients.assert_matches(produced, clients.consume_range(cluster.nodes[3], topic, ranges))
    clients.assert_matches(produced, kp.consume_range(cluster, topic, ranges), create_time=True)

    # Groups coordinated by each of the three brokers.
    chosen = groups_led_by(admin, [1, 2, 3])
    expected = {rec.value for rec in produced}
    for node_id, group in chosen.items():
        assert consume_group(cluster, topic, group, len(expected)) == expected
        assert find_coordinator(admin, group) == node_id
        committed = admin.list_consumer_group_offsets([_offsets_request(group, topic, 6)])[group].result(timeout=15)
        assert sum(tp.offset for tp in committed.topic_partitions) == len(produced), f"{group} committed offsets"


def _offsets_request(group: str, topic: str, partitions: int):
    from confluent_kafka import ConsumerGroupTopicPartitions
    return ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])


def test_the_quorum_survives_the_loss_of_its_active_controller(cluster):
    admin = cluster.admin()
    topic = clients.unique_topic("before")
    create(admin, topic, 3)
    # The offsets topic needs offsets.topic.replication.factor (3) live brokers to be created.
    offsets_leaders(admin)
    active = cluster.active_controller()
    survivors = [node for node in cluster.nodes.values() if node is not active]

    active.kill9()
    killed_at = time.monotonic()
    successor = cluster.active_controller()
    elected_s = time.monotonic() - killed_at
    assert successor is not active
    print(f"controller failover: node {active.node_id} killed, node {successor.node_id} active after {elected_s:.2f}s")
    assert elected_s < 15, f"a new controller took {elected_s:.1f}s"

    # Admin requests sent to any survivor reach the new controller; wait for the dead node's
    # fencing so that new partitions go to live brokers only.
    survivor_admin = cluster.admin(*survivors)
    wait_until("the dead broker is fenced", lambda: active.node_id not in survivor_admin.list_topics(timeout=10).brokers,
               timeout_s=SESSION_TIMEOUT_MS / 1000 + WAIT_S)
    after = clients.unique_topic("after")
    create(survivor_admin, after, 4)
    assert set(leaders(survivor_admin, after).values()) <= {node.node_id for node in survivors}

    # A group whose coordinator is a survivor joins and consumes.
    records = clients.make_records(200, "after", clients.now_ms())
    clients.produce(clients.confluent_producer(survivors[0], acks="all"), after, records)
    ids = [node.node_id for node in survivors]
    offsets_admin = cluster.admin(*survivors)
    group = _group_with_live_coordinator(offsets_admin, ids)
    assert consume_group(cluster, after, group, len({rec.value for rec in records})) == {rec.value for rec in records}

    # The killed node comes back and catches up with what was decided without it.
    active.start()
    own = cluster.admin(active)
    wait_until("the restarted node knows the topic created while it was down",
               lambda: after in own.list_topics(timeout=10).topics)
    assert leaders(own, after) == leaders(survivor_admin, after)
    wait_until("the restarted node is a live broker again",
               lambda: sorted(own.list_topics(timeout=10).brokers) == [1, 2, 3])
    assert cluster.active_controller() is successor, "a returning voter does not take leadership back"


def _group_with_live_coordinator(admin, live: list[int]) -> str:
    offsets = offsets_leaders(admin)
    for number in range(10_000):
        name = f"survivor-group-{number}"
        if offsets[offsets_partition(name)] in live:
            return name
    raise AssertionError(f"no group coordinated by {live}: {offsets}")


def test_a_dead_brokers_partitions_go_offline_and_return_with_everything_acknowledged(cluster):
    admin = cluster.admin()
    topic = clients.unique_topic("rf1")
    create(admin, topic, 3)
    placed = leaders(admin, topic)
    assert sorted(placed.values()) == [1, 2, 3]
    records = {}
    producer = clients.confluent_producer(cluster, **{"acks": "all", "enable.idempotence": True})
    for partition in range(3):
        batch = clients.make_records(100, f"p{partition}", clients.now_ms(), seq_base=partition * 1000)
        records[partition] = clients.produce(producer, topic, batch, partition=partition)

    victim = next(node for node in cluster.nodes.values() if node is not cluster.active_controller())
    lost = next(partition for partition, leader in placed.items() if leader == victim.node_id)
    victim.kill9()
    survivors = [node for node in cluster.nodes.values() if node is not victim]
    survivor_admin = cluster.admin(*survivors)
    wait_until(f"partition {lost} reports no leader", lambda: leaders(survivor_admin, topic)[lost] == -1,
               timeout_s=SESSION_TIMEOUT_MS / 1000 + WAIT_S)
    # The others keep serving.
    others = [partition for partition in range(3) if partition != lost]
    more = clients.confluent_producer(survivors[0], acks="all")
    for partition in others:
        batch = clients.make_records(50, f"more{partition}", clients.now_ms(), seq_base=partition * 1000 + 100)
        records[partition] += clients.produce(more, topic, batch, partition=partition)

    victim.start()
    wait_until(f"partition {lost} is led by node {victim.node_id} again",
               lambda: leaders(survivor_admin, topic)[lost] == victim.node_id)
    produced = [rec for partition in range(3) for rec in records[partition]]
    clients.assert_matches(produced, clients.consume_range(cluster, topic, clients.partition_ranges(produced)))


def test_a_broker_only_node_joins_a_three_voter_quorum(cluster):
    joined = cluster.add_broker()
    admin = cluster.admin()
    wait_until("every node lists four brokers",
               lambda: all(sorted(cluster.admin(node).list_topics(timeout=10).brokers) == [1, 2, 3, 4]
                           for node in cluster.nodes.values()))
    active = cluster.active_controller()
    assert active.node_id != joined.node_id, "a broker-only node never leads the quorum"
    assert joined.metric("sluice_controller_active_id") == active.node_id

    topic = clients.unique_topic("four")
    create(cluster.admin(joined), topic, 4)
    placed = leaders(admin, topic)
    assert sorted(placed.values()) == [1, 2, 3, 4]
    records = clients.make_records(400, "four", clients.now_ms())
    clients.produce(clients.confluent_producer(joined, acks="all"), topic, records)
    clients.assert_matches(records, clients.consume_range(joined, topic, clients.partition_ranges(records)))


def test_a_node_far_behind_catches_up_from_a_snapshot(tmp_path):
    """With a snapshot every 20 entries, a voter that misses 40 topic creations finds the leader's
    log purged past its own end, so it must install the leader's snapshot to catch up."""
    cluster = Cluster(tmp_path, extra_args=["--metadata-snapshot-entries", "20"])
    cluster.start()
    try:
        binary = sluicectl_binary()
        active = cluster.active_controller()
        lagging = next(node for node in cluster.nodes.values() if node is not active)
        before = json.loads(ok(sluicectl(binary, active, "--output", "json", "cluster", "quorum")))["high_watermark"]
        lagging.kill9()
        survivors = [node for node in cluster.nodes.values() if node is not lagging]
        admin = cluster.admin(*survivors)
        names = [clients.unique_topic("missed") for _ in range(40)]
        for name in names:
            create(admin, name, 1)
        purged_file = active.data_dir / "metadata" / "purged.json"
        # Snapshots and purges run in the background after the entries are applied.
        wait_until(f"the leader purges its log past index {before}",
                   lambda: purged_file.is_file() and _log_index(json.loads(purged_file.read_text())) > before)

        lagging.start()
        own = cluster.admin(lagging)
        wait_until("the lagging node knows every topic created without it",
                   lambda: set(names) <= set(own.list_topics(timeout=10).topics))
        assert (lagging.data_dir / "metadata" / "snapshot").is_file()
        topic = names[-1]
        assert leaders(own, topic) == leaders(admin, topic)
    finally:
        died = cluster.stop()
        assert not died, f"nodes exited on their own: {died}\n{cluster.log_tails()}"


def _log_index(log_id) -> int:
    """The index of a log id as the metadata directory's JSON files store it."""
    if isinstance(log_id, dict):
        if "index" in log_id:
            return int(log_id["index"])
        return max((_log_index(value) for value in log_id.values()), default=-1)
    if isinstance(log_id, list):
        return max((_log_index(value) for value in log_id), default=-1)
    return -1


def test_a_data_directory_from_another_cluster_is_refused(cluster):
    node = cluster.nodes[1]
    node.stop()
    command = [*node.command(), "--cluster-id", "some-other-cluster"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0
    assert "cluster" in done.stderr.lower() and "some-other-cluster" in done.stderr, done.stderr
    node.start()


def test_sluicectl_shows_the_quorum_and_each_partitions_replicas(cluster):
    binary = sluicectl_binary()
    node = cluster.nodes[2]
    quorum = json.loads(ok(sluicectl(binary, node, "--output", "json", "cluster", "quorum")))
    active = cluster.active_controller()
    assert quorum["leader_id"] == active.node_id
    roles = {replica["node_id"]: replica["role"] for replica in quorum["replicas"]}
    assert roles == {n: ("leader" if n == active.node_id else "voter") for n in (1, 2, 3)}

    topic = clients.unique_topic("described")
    ok(sluicectl(binary, node, "topics", "create", topic, "--partitions", "3", "--replication-factor", "2"))
    wait_until("the topic reaches node 3", lambda: leaders(cluster.admin(cluster.nodes[3]), topic))
    described = json.loads(ok(sluicectl(binary, cluster.nodes[3], "--output", "json", "topics", "describe", topic)))
    for partition in described["partitions"]:
        assert len(set(partition["replicas"])) == 2
        assert partition["leader"] == partition["replicas"][0]
        assert sorted(partition["isr"]) == sorted(partition["replicas"])
    info = json.loads(ok(sluicectl(binary, node, "--output", "json", "cluster", "info")))
    assert info["active_controller_id"] == active.node_id
    assert sorted(broker["node_id"] for broker in info["brokers"]) == [1, 2, 3]

