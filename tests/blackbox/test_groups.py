"""Consumer groups: coordinator, rebalances and committed offsets, with real clients.

Goal: consumers in a group split a topic's partitions (each partition to exactly one member),
a member that dies without LeaveGroup is expelled after its session timeout and its partitions
move, a restarted static member gets its assignment back without a rebalance, consumers resume
from committed offsets with no gap (also across a broker restart), separate groups each get
every record, and admin clients list, describe and delete groups and fetch their offsets.

Method: confluent-kafka (librdkafka) is the main client; kafka-python and kafkajs (through
tests/js/driver.js) run the same group protocol with independent implementations. Several
consumers in one process are polled in turn; a member that must die without leaving runs in a
child process that the test SIGKILLs. Every wait has a deadline and every loop a bound; the
broker runs on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from clients import base_conf, create_topic, unique_topic

JS_DIR = Path(__file__).resolve().parents[1] / "js"
WAIT_S = 60.0
# Short but realistic session settings, so that expiry tests take seconds, not minutes.
SESSION_MS = 6_000
HEARTBEAT_MS = 500


def unique_group(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def group_consumer(broker, group: str, **extra) -> Consumer:
    conf = base_conf(broker, **{
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": SESSION_MS,
        "heartbeat.interval.ms": HEARTBEAT_MS,
        "fetch.wait.max.ms": 100,
    })
    conf.update(extra)
    return Consumer(conf)


def produce_values(broker, topic: str, partitions: int, count: int, tag: str) -> list[bytes]:
    """Produce `count` distinct values round-robin over the partitions; returns them."""
    producer = Producer(base_conf(broker, acks="all", **{"linger.ms": 5}))
    values = [f"{tag}-{i}".encode() for i in range(count)]
    failures = []
    for i, value in enumerate(values):
        producer.produce(topic, value=value, key=str(i).encode(), partition=i % partitions,
                         on_delivery=lambda err, _msg: failures.append(err) if err else None)
        producer.poll(0)
    remaining = producer.flush(30)
    assert remaining == 0 and not failures, f"produce failed: {remaining} undelivered, errors {failures[:3]}"
    return values


def assignments(consumers: list[Consumer]) -> list[set[int]]:
    return [{tp.partition for tp in c.assignment()} for c in consumers]


def poll_until(consumers: list[Consumer], done, timeout_s: float = WAIT_S, on_message=None) -> None:
    """Poll every consumer in turn until done() holds; fails at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for index, consumer in enumerate(consumers):
            msg = consumer.poll(0.05)
            if msg is not None and msg.error() is None and on_message is not None:
                on_message(index, msg)
        if done():
            return
    raise AssertionError(f"condition not met within {timeout_s}s; assignments {assignments(consumers)}")


def balanced_cover(consumers: list[Consumer], partitions: int) -> bool:
    sets = assignments(consumers)
    union = set().union(*sets)
    return (all(sets) and sum(len(s) for s in sets) == partitions and union == set(range(partitions)))


def close_all(consumers: list[Consumer]) -> None:
    for consumer in consumers:
        consumer.close()


# ---------------------------------------------------------------- membership and rebalancing


@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_three_members_split_twelve_partitions(broker, strategy):
    topic = unique_topic(f"split-{strategy}")
    create_topic(broker, topic, 12)
    group = unique_group("split")
    consumers = []
    try:
        for _ in range(3):
            consumer = group_consumer(broker, group, **{"partition.assignment.strategy": strategy})
            consumer.subscribe([topic])
            consumers.append(consumer)
        poll_until(consumers, lambda: balanced_cover(consumers, 12))
        sets = assignments(consumers)
        assert sorted(len(s) for s in sets) == [4, 4, 4], sets
    finally:
        close_all(consumers)


def start_member_process(broker, tmp_path: Path, group: str, topic: str, session_ms: int) -> subprocess.Popen:
    """A group member in a child process (its own session), which prints `assigned N` once it
    holds partitions and then keeps polling, so that the test can SIGKILL it: no LeaveGroup."""
    script = tmp_path / f"member-{uuid.uuid4().hex[:6]}.py"
    script.write_text(
        "import sys, time\n"
        "from confluent_kafka import Consumer\n"
        f"c = Consumer({{'bootstrap.servers': '{broker.bootstrap}', 'group.id': '{group}',\n"
        f"  'session.timeout.ms': {session_ms}, 'heartbeat.interval.ms': {HEARTBEAT_MS},\n"
        "  'broker.address.family': 'v4', 'auto.offset.reset': 'earliest'})\n"
        f"c.subscribe(['{topic}'])\n"
        "deadline = time.monotonic() + 120\n"
        "while time.monotonic() < deadline:\n"
        "    c.poll(0.1)\n"
        "    if c.assignment():\n"
        "        print('assigned', len(c.assignment()), flush=True)\n"
        "        break\n"
        "while time.monotonic() < deadline:\n"
        "    c.poll(0.1)\n")
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def wait_assigned(child: subprocess.Popen, others: list[Consumer], timeout_s: float = WAIT_S) -> None:
    """Poll `others` until the child member reports its assignment."""
    os.set_blocking(child.stdout.fileno(), False)
    deadline = time.monotonic() + timeout_s
    line = b""
    while time.monotonic() < deadline and not line.startswith(b"assigned"):
        _poll_for(others, 0.1)
        line += child.stdout.read() or b""
        assert child.poll() is None, f"member exited: {child.stderr.read().decode(errors='replace')}"
    assert line.startswith(b"assigned"), "the child member never got partitions"


def kill_member(child: subprocess.Popen) -> None:
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)


def test_member_killed_without_leaving_is_expired_and_its_partitions_move(broker, tmp_path):
    topic = unique_topic("expire")
    create_topic(broker, topic, 12)
    group = unique_group("expire")
    child = start_member_process(broker, tmp_path, group, topic, SESSION_MS)
    survivor = group_consumer(broker, group)
    try:
        survivor.subscribe([topic])
        wait_assigned(child, [survivor])
        poll_until([survivor], lambda: 0 < len(survivor.assignment()) < 12)
        killed_at = time.monotonic()
        kill_member(child)
        poll_until([survivor], lambda: len(survivor.assignment()) == 12, timeout_s=SESSION_MS / 1000 + 30)
        elapsed = time.monotonic() - killed_at
        # Not before the session timeout could have run out (minus the child's last heartbeat).
        assert elapsed > SESSION_MS / 1000 - 2 * HEARTBEAT_MS / 1000, f"reassigned after {elapsed:.1f}s"
    finally:
        kill_member(child)
        survivor.close()


def test_static_member_restart_gets_its_assignment_back_without_a_rebalance(broker):
    topic = unique_topic("static")
    create_topic(broker, topic, 6)
    group = unique_group("static")
    rebalances = {"b": 0}

    def on_assign_b(_consumer, _partitions):
        rebalances["b"] += 1

    static = {"session.timeout.ms": 30_000}
    a = group_consumer(broker, group, **{"group.instance.id": "member-a"}, **static)
    b = group_consumer(broker, group, **{"group.instance.id": "member-b"}, **static)
    a2 = None
    try:
        a.subscribe([topic])
        b.subscribe([topic], on_assign=on_assign_b)
        poll_until([a, b], lambda: balanced_cover([a, b], 6))
        before = assignments([a])[0]
        count_before = rebalances["b"]
        a.close()  # A static member does not send LeaveGroup on close.
        a2 = group_consumer(broker, group, **{"group.instance.id": "member-a"}, **static)
        a2.subscribe([topic])
        poll_until([a2, b], lambda: bool(a2.assignment()))
        assert assignments([a2])[0] == before
        # Give a rebalance, if one had started, time to reach b.
        _poll_for([a2, b], 3.0)
        assert rebalances["b"] == count_before, "b was rebalanced by a static member's restart"
        assert assignments([b])[0] == set(range(6)) - before
    finally:
        for consumer in (b, a2):
            if consumer is not None:
                consumer.close()


def _poll_for(consumers: list[Consumer], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for consumer in consumers:
            consumer.poll(0.05)


# ---------------------------------------------------------------- committed offsets


def consume_values(consumers: list[Consumer], want: int, timeout_s: float = WAIT_S) -> list[bytes]:
    got: list[bytes] = []
    poll_until(consumers, lambda: len(got) >= want, timeout_s, on_message=lambda _i, m: got.append(m.value()))
    return got


def test_commit_stop_and_resume_sees_no_gap_and_no_repeat(broker):
    topic = unique_topic("resume")
    create_topic(broker, topic, 3)
    group = unique_group("resume")
    values = produce_values(broker, topic, 3, 300, "resume")
    first = group_consumer(broker, group, **{"max.poll.interval.ms": 30_000})
    first.subscribe([topic])
    got_first: list[bytes] = []
    try:
        poll_until([first], lambda: len(got_first) >= 150,
                   on_message=lambda _i, m: got_first.append(m.value()))
        first.commit(asynchronous=False)
    finally:
        first.close()
    second = group_consumer(broker, group)
    second.subscribe([topic])
    try:
        got_second = consume_values([second], 300 - len(got_first))
        _poll_for([second], 1.0)
    finally:
        second.close()
    assert sorted(got_first + got_second) == sorted(values), "a record was skipped or read twice"


def test_committed_offsets_and_groups_survive_a_broker_restart(own_broker):
    broker = own_broker
    topic = unique_topic("restart")
    create_topic(broker, topic, 4)
    group = unique_group("restart")
    values = produce_values(broker, topic, 4, 400, "restart")
    consumer = group_consumer(broker, group)
    consumer.subscribe([topic])
    got: list[bytes] = []
    try:
        poll_until([consumer], lambda: len(got) >= 200, on_message=lambda _i, m: got.append(m.value()))
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, p) for p in range(4)], timeout=10)
    finally:
        consumer.close()
    broker.restart()
    after = group_consumer(broker, group)
    try:
        again = after.committed([TopicPartition(topic, p) for p in range(4)], timeout=30)
        assert [(tp.partition, tp.offset) for tp in again] == [(tp.partition, tp.offset) for tp in committed]
        after.subscribe([topic])
        rest = consume_values([after], 400 - len(got))
        _poll_for([after], 1.0)
    finally:
        after.close()
    assert sorted(got + rest) == sorted(values)
    admin = AdminClient(base_conf(broker))
    listed = admin.list_consumer_groups(request_timeout=30).result(timeout=30)
    assert group in {g.group_id for g in listed.valid}, f"the group did not survive the restart: {listed.errors}"


def test_two_groups_on_one_topic_each_get_every_record(broker):
    topic = unique_topic("two-groups")
    create_topic(broker, topic, 4)
    group_ids = {name: unique_group(name) for name in ("left", "right")}
    groups = {name: [group_consumer(broker, group_id) for _ in range(2)] for name, group_id in group_ids.items()}
    everyone = [consumer for members in groups.values() for consumer in members]
    group_of = [name for name, members in groups.items() for _ in members]
    got: dict[str, list[bytes]] = {name: [] for name in groups}

    def collect(index, msg):
        got[group_of[index]].append(msg.value())

    try:
        for consumer in everyone:
            consumer.subscribe([topic])
        # Every member holds partitions before anything is produced. Otherwise a member could
        # read records, uncommitted, that a later rebalance hands to the other member, which
        # reads them again from the reset position: at least once, as Kafka does, not exactly once.
        poll_until(everyone, lambda: all(balanced_cover(members, 4) for members in groups.values()))
        values = produce_values(broker, topic, 4, 200, "two")
        poll_until(everyone, lambda: all(len(values_read) >= len(values) for values_read in got.values()),
                   on_message=collect)
        settled = time.monotonic() + 1.0
        poll_until(everyone, lambda: time.monotonic() > settled, on_message=collect)  # a duplicate shows here
    finally:
        close_all(everyone)
    for name, values_read in got.items():
        assert sorted(values_read) == sorted(values), f"group {name} did not get every record exactly once"


def test_standalone_commit_with_manual_assignment(broker):
    topic = unique_topic("standalone")
    create_topic(broker, topic, 2)
    # The committed offsets must lie inside the log. With offsets past the log end the assigned
    # consumer fetches, gets OFFSET_OUT_OF_RANGE (as from Kafka) and starts an offset reset, and
    # librdkafka can deadlock in close() when it races that reset (seen in CI: the suite hung in
    # rd_kafka_destroy with a thread in rd_kafka_offset_reset_op_cb).
    produce_values(broker, topic, 2, 20, "standalone")
    group = unique_group("standalone")
    consumer = group_consumer(broker, group)
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        consumer.commit(offsets=[TopicPartition(topic, 0, 7), TopicPartition(topic, 1, 3)], asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
        assert [(tp.partition, tp.offset) for tp in committed] == [(0, 7), (1, 3)]
    finally:
        consumer.close()


# ---------------------------------------------------------------- admin


def test_admin_lists_describes_fetches_offsets_and_deletes_groups(broker):
    from confluent_kafka import ConsumerGroupTopicPartitions

    topic = unique_topic("admin-groups")
    create_topic(broker, topic, 3)
    produce_values(broker, topic, 3, 30, "admin")
    group = unique_group("admin")
    consumer = group_consumer(broker, group, **{"client.id": "admin-test-client"})
    admin = AdminClient(base_conf(broker))
    try:
        consumer.subscribe([topic])
        got = consume_values([consumer], 30)
        assert len(got) == 30
        consumer.commit(asynchronous=False)
        listed = admin.list_consumer_groups(request_timeout=30).result(timeout=30)
        assert group in {g.group_id for g in listed.valid}
        described = admin.describe_consumer_groups([group], request_timeout=30)[group].result(timeout=30)
        assert described.state.name == "STABLE"
        assert len(described.members) == 1
        assert described.members[0].client_id == "admin-test-client"
        assigned = {tp.partition for tp in described.members[0].assignment.topic_partitions}
        assert assigned == {0, 1, 2}
        offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=30)
        assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [(0, 10), (1, 10), (2, 10)]
        # A group with members cannot be deleted.
        refused = admin.delete_consumer_groups([group], request_timeout=30)[group]
        with pytest.raises(Exception) as caught:
            refused.result(timeout=30)
        assert "NON_EMPTY_GROUP" in str(caught.value)
    finally:
        consumer.close()
    described = admin.describe_consumer_groups([group], request_timeout=30)[group].result(timeout=30)
    assert described.state.name == "EMPTY"
    admin.delete_consumer_groups([group], request_timeout=30)[group].result(timeout=30)
    listed = admin.list_consumer_groups(request_timeout=30).result(timeout=30)
    assert group not in {g.group_id for g in listed.valid}
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=30)
    assert all(tp.offset < 0 for tp in offsets.topic_partitions)


def test_offsets_topic_is_internal_in_metadata(broker):
    md = AdminClient(base_conf(broker)).list_topics(timeout=10)
    topic = md.topics.get("__consumer_offsets")
    assert topic is not None and topic.error is None
    assert len(topic.partitions) > 0


# ---------------------------------------------------------------- kafka-python


def test_kafka_python_group_splits_partitions_and_resumes_from_commits(broker):
    from kafka import KafkaConsumer

    topic = unique_topic("kp-group")
    create_topic(broker, topic, 6)
    group = unique_group("kp")

    def consumer():
        member = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group, auto_offset_reset="earliest",
                               enable_auto_commit=False, session_timeout_ms=SESSION_MS,
                               heartbeat_interval_ms=HEARTBEAT_MS, fetch_max_wait_ms=100, request_timeout_ms=30_000)
        # Know the topic's partitions before joining: a kafka-python group leader whose metadata
        # does not have the topic yet assigns nothing ("No partition metadata for topic"), and
        # was seen (against Kafka) to stay that way for a minute.
        assert member.partitions_for_topic(topic) == set(range(6))
        return member

    def split(members) -> bool:
        parts = [{tp.partition for tp in c.assignment()} for c in members]
        return all(parts) and not (parts[0] & parts[1]) and parts[0] | parts[1] == set(range(6))

    def poll_into(members, got, timeout_ms):
        for c in members:
            for records in c.poll(timeout_ms=timeout_ms).values():
                got.extend(r.value for r in records)

    first, second = consumer(), consumer()
    got: list[bytes] = []
    try:
        # Both members hold partitions before anything is produced, so that no record read
        # (uncommitted) before the split is read again by the other member after it.
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and not split((first, second)):
            poll_into((first, second), got, 100)
        assert split((first, second)), [c.assignment() for c in (first, second)]
        values = produce_values(broker, topic, 6, 120, "kp")
        while time.monotonic() < deadline and len(got) < 60:
            poll_into((first, second), got, 100)
        assert len(got) >= 60 and split((first, second)), (len(got), [c.assignment() for c in (first, second)])
        first.commit()
        second.commit()
    finally:
        first.close()
        second.close()
    third = consumer()
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and len(got) < len(values):
            for records in third.poll(timeout_ms=200).values():
                got.extend(r.value for r in records)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            for records in third.poll(timeout_ms=100).values():
                got.extend(r.value for r in records)
    finally:
        third.close()
    assert sorted(got) == sorted(values), "kafka-python skipped or repeated records across commits"


# ---------------------------------------------------------------- kafkajs


def run_driver(tmp_path: Path, command: str, request: dict, timeout_s: float = 150) -> dict:
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (JS_DIR / "node_modules" / "kafkajs").is_dir(), "kafkajs is not installed: run ./tests/run setup"
    req_file = tmp_path / f"{command}-{uuid.uuid4().hex[:6]}.json"
    req_file.write_text(json.dumps(request))
    proc = subprocess.run([node, str(JS_DIR / "driver.js"), command, str(req_file)], capture_output=True,
                          timeout=timeout_s, cwd=JS_DIR)
    assert proc.returncode == 0, f"driver {command} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}"
    return json.loads(proc.stdout)


def test_kafkajs_group_splits_partitions_and_resumes_from_commits(broker, tmp_path):
    topic = unique_topic("js-group")
    create_topic(broker, topic, 6)
    group = unique_group("js")
    first_values = produce_values(broker, topic, 6, 120, "js-a")
    answer = run_driver(tmp_path, "group", {"brokers": [broker.bootstrap], "topic": topic, "groupId": group,
                                            "consumers": 3, "expected": len(first_values)})
    sets = [set(a) for a in answer["assignments"]]
    assert all(sets) and sum(len(s) for s in sets) == 6 and set().union(*sets) == set(range(6)), sets
    # At least once: a record may be read again after a rebalance, but none may be missing.
    assert {v.encode() for v in answer["values"]} == set(first_values)
    second_values = produce_values(broker, topic, 6, 60, "js-b")
    answer = run_driver(tmp_path, "group", {"brokers": [broker.bootstrap], "topic": topic, "groupId": group,
                                            "consumers": 1, "expected": len(second_values)})
    assert {v.encode() for v in answer["values"]} == set(second_values), "kafkajs did not resume from its commits"


def test_kafka_python_admin_manages_groups_and_offsets(broker):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KpTopicPartition
    from kafka.admin import KafkaAdminClient, MemberToRemove
    from kafka.structs import OffsetAndMetadata

    topic = unique_topic("kp-admin")
    create_topic(broker, topic, 2)
    produce_values(broker, topic, 2, 20, "kp-admin")
    group = unique_group("kp-admin")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30_000)
    member = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group, group_instance_id="kp-static",
                           auto_offset_reset="earliest", enable_auto_commit=False, session_timeout_ms=30_000,
                           heartbeat_interval_ms=HEARTBEAT_MS, fetch_max_wait_ms=100)
    try:
        got = 0
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and got < 20:
            got += sum(len(records) for records in member.poll(timeout_ms=200).values())
        assert got == 20
        member.commit()
        stable = admin.list_groups(states_filter=["Stable"])
        assert group in [entry["group_id"] if isinstance(entry, dict) else entry[0] for entry in stable], stable
        described = admin.describe_groups([group])
        assert described, described
        offsets = admin.list_group_offsets({group: None})[group]
        assert {tp.partition: meta.offset for tp, meta in offsets.items()} == {0: 10, 1: 10}
        removed = admin.remove_group_members(group, [MemberToRemove(group_instance_id="kp-static")])
        assert all(error.errno == 0 for error in removed.values()), removed
    finally:
        member.close()
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        empty = admin.list_groups(states_filter=["Empty"])
        if group in [entry["group_id"] if isinstance(entry, dict) else entry[0] for entry in empty]:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the group never became Empty after its static member was removed")
    altered = admin.alter_group_offsets(group, {KpTopicPartition(topic, 0): OffsetAndMetadata(3, "", -1)})
    assert all(error.errno == 0 for error in altered.values()), altered
    deleted = admin.delete_group_offsets(group, [KpTopicPartition(topic, 1)])
    assert all(error.errno == 0 for error in deleted.values()), deleted
    offsets = admin.list_group_offsets({group: None})[group]
    assert {tp.partition: meta.offset for tp, meta in offsets.items()} == {0: 3}
    admin.delete_groups([group])
    assert group not in [entry["group_id"] if isinstance(entry, dict) else entry[0] for entry in admin.list_groups()]
    admin.close()


def test_a_stable_group_keeps_its_generation_across_a_broker_restart(own_broker):
    broker = own_broker
    topic = unique_topic("restart-live")
    create_topic(broker, topic, 4)
    group = unique_group("restart-live")
    assigned = {0: 0, 1: 0}
    consumers = []
    for index in range(2):
        consumer = group_consumer(broker, group, **{"session.timeout.ms": 30_000})
        consumer.subscribe([topic], on_assign=lambda _c, _p, index=index: assigned.__setitem__(index, assigned[index] + 1))
        consumers.append(consumer)
    try:
        poll_until(consumers, lambda: balanced_cover(consumers, 4))
        before = (dict(assigned), assignments(consumers))
        broker.restart()
        values = produce_values(broker, topic, 4, 80, "after-restart")
        got = consume_values(consumers, len(values))
        assert sorted(got) == sorted(values)
        assert (assigned, assignments(consumers)) == before, "the restart caused a rebalance"
    finally:
        close_all(consumers)


def test_broker_restart_during_a_pending_rebalance_stops_promptly_and_the_group_recovers(own_broker, tmp_path):
    broker = own_broker
    topic = unique_topic("restart-pending")
    create_topic(broker, topic, 4)
    group = unique_group("restart-pending")
    member_session_ms = 8_000
    child = start_member_process(broker, tmp_path, group, topic, member_session_ms)
    joiner = group_consumer(broker, group)
    try:
        wait_assigned(child, [])
        kill_member(child)
        # The joiner's JoinGroup now waits for the dead member to rejoin (until its session ends).
        joiner.subscribe([topic])
        _poll_for([joiner], 1.5)
        started = time.monotonic()
        status = broker.stop()
        assert status == 0 and time.monotonic() - started < 10, "shutdown waited for a pending JoinGroup"
        broker.start()
        poll_until([joiner], lambda: len(joiner.assignment()) == 4, timeout_s=member_session_ms / 1000 + 40)
    finally:
        kill_member(child)
        joiner.close()
