"""Consumer groups on the KIP-848 protocol (`group.protocol=consumer`) with confluent-kafka.

Goal: with librdkafka's implementation of the new protocol (ConsumerGroupHeartbeat, assignment
computed by the coordinator, incremental reconciliation), members that join and leave one by one
own each partition exactly once at every moment, consume every record exactly once and leave the
committed offsets at the end offsets; and a classic group whose members are replaced one by one
by consumer-protocol members (an online upgrade, allowed by Kafka's default migration policy)
does the same while it is mixed; and a group whose broker restarts is reloaded from
`__consumer_offsets` with its member's epoch, partitions and committed offsets.

Method: every member is a confluent-kafka Consumer polled in turn from the test thread. Its
on_assign, on_revoke and on_lost callbacks write into one ownership ledger, which flags a
partition handed to a member while another still holds it (the next owner must only get it after
the previous owner's revocation, which commits first). Members commit what they consumed after
each batch and in on_revoke. Records are produced in rounds of known values between membership
changes; at the end the records consumed, by partition and offset, are compared with those
acknowledged, and the group's committed offsets with the high watermarks. The restart test speaks
ConsumerGroupHeartbeat and OffsetCommit v9 on the wire, so that it controls the member epoch sent
and sees the one returned.

Sluice serves the protocol but not its online migration (classic members inside a consumer
group): the upgrade test is a strict expected failure against Sluice and a plain test against
Kafka (`--reference kafka`). Every test fails fast: first of all when the broker does not
advertise ConsumerGroupHeartbeat (librdkafka would only retry quietly), else on the first error
the client reports; every wait is bounded as well.
"""

from __future__ import annotations

import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import kafka_wire
from clients import base_conf, create_topic, unique_topic, watermarks

PARTITIONS = 6
RECORDS_PER_PARTITION = 10
# One membership change takes Kafka two or three heartbeats of 5 s (its default and minimum
# group.consumer.heartbeat.interval.ms): the change, the revocation, the new assignment.
REBALANCE_WAIT_S = 45.0
# The classic members' session settings, as in test_groups.py.
CLASSIC_SESSION_MS = 6_000
CLASSIC_HEARTBEAT_MS = 500
# Errors that say the broker does not serve what the client asked: they end the test at once.
UNSERVED = {KafkaError._UNSUPPORTED_FEATURE, KafkaError.UNSUPPORTED_VERSION, KafkaError.INVALID_REQUEST}
# Commit errors a member may see while its assignment changes under it; any other fails the test.
TRANSIENT_COMMIT_ERRORS = {
    KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.STALE_MEMBER_EPOCH, KafkaError._NO_OFFSET, KafkaError._ASSIGNMENT_LOST, KafkaError._STATE,
}


# The KIP-848 APIs: ConsumerGroupHeartbeat and ConsumerGroupDescribe.
KIP_848_APIS = {68: "ConsumerGroupHeartbeat", 69: "ConsumerGroupDescribe"}


def assert_serves_the_consumer_protocol(broker) -> None:
    """Fail at once, not at a rebalance deadline, when the broker does not advertise the
    KIP-848 APIs: librdkafka then retries quietly (it marks the coordinator dead and looks it up
    again, over and over) and reports nothing to the application."""
    with kafka_wire.Connection(broker.host, broker.port, timeout_s=10) as conn:
        error, versions = kafka_wire.api_versions(conn)
    missing = [name for key, name in KIP_848_APIS.items() if key not in versions]
    assert error == kafka_wire.ERROR_NONE and not missing, f"ApiVersions error {error}, missing {missing}"


def unique_group(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Ledger:
    """Who holds each partition at every moment, as the members' callbacks say."""

    def __init__(self):
        self.owner: dict[int, str] = {}
        self.violations: list[str] = []
        self.history: list[str] = []
        self.started = time.monotonic()

    def take(self, member: str, partitions: list[int]) -> None:
        for p in partitions:
            previous = self.owner.get(p)
            if previous is not None and previous != member:
                self.violations.append(f"partition {p} assigned to {member} while {previous} held it")
            self.owner[p] = member
        self._log(f"{member} took {sorted(partitions)}")

    def release(self, member: str, partitions: list[int], how: str) -> None:
        for p in partitions:
            if self.owner.get(p) == member:
                del self.owner[p]
        self._log(f"{member} {how} {sorted(partitions)}")

    def by_member(self) -> dict[str, set[int]]:
        held: dict[str, set[int]] = {}
        for p, member in self.owner.items():
            held.setdefault(member, set()).add(p)
        return held

    def _log(self, event: str) -> None:
        self.history.append(f"{time.monotonic() - self.started:8.3f} s  {event}")

    def __str__(self) -> str:
        return "\n".join(self.history)


class Member:
    """A group member on either protocol: consumes, commits after each batch and on revocation,
    and reports every assignment change to the ledger."""

    def __init__(self, broker, group: str, topic: str, name: str, protocol: str, ledger: Ledger):
        conf = base_conf(broker, **{
            "group.id": group,
            "client.id": name,
            "group.protocol": protocol,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
            "error_cb": self._on_error,
        })
        if protocol == "classic":
            conf.update({"session.timeout.ms": CLASSIC_SESSION_MS, "heartbeat.interval.ms": CLASSIC_HEARTBEAT_MS})
        self.name = name
        self.protocol = protocol
        self.topic = topic
        self.ledger = ledger
        self.consumed: list[tuple[int, int, bytes]] = []
        self.pending: dict[int, int] = {}  # partition -> next offset, consumed and not yet committed
        self.revoked: list[set[int]] = []
        self.added: list[set[int]] = []
        self.lost: list[set[int]] = []
        self.errors: list[str] = []  # fatal, or the broker does not serve what is asked
        self.notices: list[str] = []  # errors the client reported and retries by itself
        self.closed = False
        self.consumer = Consumer(conf)
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)

    # ------------------------------------------------------------ callbacks (inside poll)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal() or error.code() in UNSERVED:
            self.errors.append(str(error))

    def _on_assign(self, _consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            numbers = [tp.partition for tp in partitions]
            self.added.append(set(numbers))
            self.ledger.take(self.name, numbers)

    def _on_revoke(self, _consumer, partitions: list[TopicPartition]) -> None:
        if not partitions:
            return
        numbers = [tp.partition for tp in partitions]
        self.revoked.append(set(numbers))
        try:
            self._commit([p for p in numbers if p in self.pending])
        finally:
            for p in numbers:
                self.pending.pop(p, None)
            self.ledger.release(self.name, numbers, "revoked")

    def _on_lost(self, _consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            numbers = [tp.partition for tp in partitions]
            self.lost.append(set(numbers))
            for p in numbers:
                self.pending.pop(p, None)
            self.ledger.release(self.name, numbers, "lost")

    # ------------------------------------------------------------ the application loop

    def poll_once(self, timeout_s: float = 0.05) -> None:
        """One batch: record what arrived, commit it. Fails at once on a fatal client error."""
        if self.errors:
            raise AssertionError(f"{self.name}: client errors {self.errors}")
        messages = self.consumer.consume(num_messages=100, timeout=timeout_s)
        for msg in messages:
            error = msg.error()
            if error is not None:
                # librdkafka also reports what it retries by itself (a JoinGroup answered
                # REBALANCE_IN_PROGRESS, seen against Kafka): only a fatal error ends the test.
                if error.fatal() or error.code() in UNSERVED:
                    raise AssertionError(f"{self.name}: consume error {error}")
                self.notices.append(str(error))
                continue
            self.consumed.append((msg.partition(), msg.offset(), msg.value()))
            self.pending[msg.partition()] = msg.offset() + 1
        if messages:
            self._commit(list(self.pending))

    def _commit(self, partitions: list[int]) -> None:
        if not partitions:
            return
        offsets = [TopicPartition(self.topic, p, self.pending[p]) for p in partitions]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:
            if e.args[0].code() not in TRANSIENT_COMMIT_ERRORS:
                raise
            return  # what this member still holds is committed after its next batch or on revocation
        for p in partitions:
            self.pending.pop(p, None)

    def assignment(self) -> set[int]:
        return set() if self.closed else {tp.partition for tp in self.consumer.assignment()}

    def close(self) -> None:
        """Leave the group: on_revoke commits and releases what the member holds."""
        if not self.closed:
            self.closed = True
            self.consumer.close()

    def __repr__(self) -> str:
        return (f"{self.name}({self.protocol}, assignment={sorted(self.assignment())}, "
                f"consumed={len(self.consumed)}, lost={self.lost}, errors={self.errors}, notices={self.notices[-3:]})")


class Scenario:
    """A topic, a group on it, its ledger, every member started and every record produced."""

    def __init__(self, broker, name: str):
        self.broker = broker
        self.topic = unique_topic(name)
        self.group = unique_group(name)
        self.ledger = Ledger()
        self.members: list[Member] = []
        self.produced: dict[tuple[int, int], bytes] = {}
        self.rounds = 0
        assert_serves_the_consumer_protocol(broker)
        create_topic(broker, self.topic, PARTITIONS)

    def join(self, name: str, protocol: str) -> Member:
        member = Member(self.broker, self.group, self.topic, name, protocol, self.ledger)
        self.members.append(member)
        return member

    def active(self) -> list[Member]:
        return [m for m in self.members if not m.closed]

    def poll_until(self, what: str, done, timeout_s: float = REBALANCE_WAIT_S) -> None:
        """Poll every open member in turn until done() holds; fails at the deadline or at once
        when a partition is held by two members."""
        deadline = time.monotonic() + timeout_s
        while True:
            for member in self.active():
                member.poll_once()
            assert not self.ledger.violations, f"{self.ledger.violations}\n{self.ledger}"
            if done():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout_s}s: {what}; members {self.active()}\n{self.ledger}")

    def await_balanced(self, *owners: Member) -> None:
        """Until exactly these members hold partitions, every partition once, as many each give
        or take one, and each member's own assignment agrees with its callbacks."""
        names = {m.name for m in owners}

        def balanced() -> bool:
            held = self.ledger.by_member()
            sizes = [len(s) for s in held.values()]
            return (set(held) == names and set().union(*held.values()) == set(range(PARTITIONS))
                    and max(sizes) - min(sizes) <= 1 and all(m.assignment() == held[m.name] for m in owners))

        self.poll_until(f"every partition owned by exactly one of {sorted(names)}, balanced", balanced)

    def produce_round(self) -> None:
        producer = Producer(base_conf(self.broker, acks="all", **{"linger.ms": 5}))
        failures: list = []

        def delivered(err, msg):
            if err is not None:
                failures.append(err)
            else:
                self.produced[(msg.partition(), msg.offset())] = msg.value()

        for p in range(PARTITIONS):
            for i in range(RECORDS_PER_PARTITION):
                producer.produce(self.topic, value=f"round-{self.rounds}-p{p}-{i}".encode(), partition=p,
                                 on_delivery=delivered)
        remaining = producer.flush(30)
        assert remaining == 0 and not failures, f"produce failed: {remaining} undelivered, errors {failures[:3]}"
        self.rounds += 1

    def produce_round_and_await_consumed(self) -> None:
        self.produce_round()
        self.poll_until(f"{len(self.produced)} records consumed in all",
                        lambda: sum(len(m.consumed) for m in self.members) >= len(self.produced))

    def close_all(self) -> None:
        for member in self.members:
            member.close()

    def assert_exactly_once_and_committed(self) -> None:
        assert not self.ledger.violations, f"{self.ledger.violations}\n{self.ledger}"
        assert all(not m.lost for m in self.members), f"partitions lost: {self.members}\n{self.ledger}"
        consumed: dict[tuple[int, int], bytes] = {}
        twice = []
        for member in self.members:
            for partition, offset, value in member.consumed:
                if (partition, offset) in consumed:
                    twice.append(f"{partition}@{offset} again by {member.name}")
                consumed[(partition, offset)] = value
        assert not twice, f"records consumed twice: {twice[:10]}\n{self.ledger}"
        assert consumed == self.produced, "records consumed differ from those produced"
        ends = {p: high for p, (_low, high) in watermarks(self.broker, self.topic, list(range(PARTITIONS))).items()}
        assert sum(ends.values()) == len(self.produced)
        assert committed_offsets(self.broker, self.group, self.topic) == ends, "committed offsets against end offsets"


def committed_offsets(broker, group: str, topic: str) -> dict[int, int]:
    return committed_offsets_of(broker, group, topic, PARTITIONS)


def committed_offsets_of(broker, group: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import ConsumerGroupTopicPartitions

    admin = AdminClient(base_conf(broker))
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    answer = admin.list_consumer_group_offsets([request], request_timeout=30)[group].result(timeout=30)
    return {tp.partition: tp.offset for tp in answer.topic_partitions}


def describe_group(broker, group: str):
    admin = AdminClient(base_conf(broker))
    return admin.describe_consumer_groups([group], request_timeout=30)[group].result(timeout=30)


def revoked_since(member: Member, start: int) -> set[int]:
    return set().union(*member.revoked[start:]) if member.revoked[start:] else set()


# ---------------------------------------------------------------- tests


def test_members_joining_and_leaving_own_each_partition_once(broker):
    scenario = Scenario(broker, "kip848-join-leave")
    try:
        a = scenario.join("a", "consumer")
        scenario.await_balanced(a)
        scenario.produce_round_and_await_consumed()

        b = scenario.join("b", "consumer")
        before_a = len(a.revoked)
        scenario.await_balanced(a, b)
        assert revoked_since(a, before_a) == b.assignment(), "a gave up exactly what b got"
        scenario.produce_round_and_await_consumed()

        c = scenario.join("c", "consumer")
        before_a, before_b = len(a.revoked), len(b.revoked)
        scenario.await_balanced(a, b, c)
        # The uniform assignor is sticky: each of a and b gives c one partition, no more.
        assert len(revoked_since(a, before_a)) == 1 and len(revoked_since(b, before_b)) == 1, \
            f"revoked from a {revoked_since(a, before_a)}, from b {revoked_since(b, before_b)}"
        scenario.produce_round_and_await_consumed()

        before_b, before_c = len(b.revoked), len(c.revoked)
        a.close()
        scenario.await_balanced(b, c)
        assert revoked_since(b, before_b) == set() and revoked_since(c, before_c) == set(), \
            "a member that stays lost partitions when another left"
        scenario.produce_round_and_await_consumed()

        b.close()
        scenario.await_balanced(c)
        scenario.produce_round_and_await_consumed()
        assert describe_group(broker, scenario.group).type.name == "CONSUMER"
    finally:
        scenario.close_all()
    scenario.assert_exactly_once_and_committed()
    after = describe_group(broker, scenario.group)
    assert (after.type.name, after.state.name, len(after.members)) == ("CONSUMER", "EMPTY", 0)


def test_classic_group_upgraded_online_member_by_member(broker):
    scenario = Scenario(broker, "kip848-upgrade")
    try:
        classic = [scenario.join(f"classic-{i}", "classic") for i in (1, 2, 3)]
        scenario.await_balanced(*classic)
        scenario.produce_round_and_await_consumed()
        assert describe_group(broker, scenario.group).type.name == "CLASSIC"

        upgraded: list[Member] = []
        for step in range(3):
            classic[step].close()
            upgraded.append(scenario.join(f"new-{step + 1}", "consumer"))
            scenario.await_balanced(*classic[step + 1:], *upgraded)
            scenario.produce_round_and_await_consumed()
            assert describe_group(broker, scenario.group).type.name == "CONSUMER", \
                f"group type with {len(upgraded)} consumer-protocol members"
    finally:
        scenario.close_all()
    scenario.assert_exactly_once_and_committed()


def test_consumer_group_downgraded_online_when_its_last_consumer_member_leaves(broker):
    scenario = Scenario(broker, "kip848-downgrade")
    try:
        classic = [scenario.join(f"classic-{i}", "classic") for i in (1, 2)]
        scenario.await_balanced(*classic)
        scenario.produce_round_and_await_consumed()

        upgraded = scenario.join("new-1", "consumer")
        scenario.await_balanced(*classic, upgraded)
        scenario.produce_round_and_await_consumed()
        assert describe_group(broker, scenario.group).type.name == "CONSUMER"

        # The classic members are all that is left: the group turns classic again and they
        # rebalance as a classic group.
        upgraded.close()
        scenario.await_balanced(*classic)
        scenario.produce_round_and_await_consumed()
        assert describe_group(broker, scenario.group).type.name == "CLASSIC"
    finally:
        scenario.close_all()
    scenario.assert_exactly_once_and_committed()


# ---------------------------------------------------------------- restart, on the wire

# ConsumerGroupHeartbeat and OffsetCommit, spoken directly so that the test controls the member
# epoch it sends and sees the one it gets back (a client hides both).
API_OFFSET_COMMIT = 8
API_FIND_COORDINATOR = 10
API_CONSUMER_GROUP_HEARTBEAT = 68
ERROR_UNKNOWN_MEMBER_ID = 25
ERROR_STALE_MEMBER_EPOCH = 113
# What a client retries while the coordinator (re)loads: COORDINATOR_LOAD_IN_PROGRESS,
# COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR.
COORDINATOR_RETRIABLE = {14, 15, 16}
RESTART_WAIT_S = 60.0


def heartbeat(conn, group: str, member_id: str, epoch: int, topic: str,
              owned: dict[bytes, list[int]]) -> tuple[int, int, dict[bytes, list[int]] | None]:
    """A full ConsumerGroupHeartbeat v1 (rebalance timeout, subscription and owned partitions):
    returns (error code, member epoch, assignment by topic id or None)."""
    owned_topics = [topic_id + kafka_wire.compact_array([kafka_wire.int32(p) for p in sorted(parts)])
                    + kafka_wire.NO_TAGS for topic_id, parts in sorted(owned.items())]
    body = (kafka_wire.compact_string(group) + kafka_wire.compact_string(member_id) + kafka_wire.int32(epoch)
            + kafka_wire.compact_string(None) + kafka_wire.compact_string(None) + kafka_wire.int32(30_000)
            + kafka_wire.compact_array([kafka_wire.compact_string(topic)]) + kafka_wire.compact_string(None)
            + kafka_wire.compact_string(None) + kafka_wire.compact_array(owned_topics) + kafka_wire.NO_TAGS)
    r = conn.request(API_CONSUMER_GROUP_HEARTBEAT, 1, body, flexible=True)
    r.int32()  # throttle
    error = r.int16()
    r.compact_string()  # error message
    r.compact_string()  # member id
    member_epoch = r.int32()
    r.int32()  # heartbeat interval
    assignment = None
    if r.int8() >= 0:
        assignment = {}
        for _ in range(r.array_len(True)):
            topic_id = r.take(16)
            assignment[topic_id] = [r.int32() for _ in range(r.array_len(True))]
            r.tags()
        r.tags()
    return error, member_epoch, assignment


def find_coordinator(conn, group: str) -> tuple[int, int]:
    """FindCoordinator v4 for a group (it creates `__consumer_offsets` when there is none):
    (error code, node id)."""
    body = kafka_wire.int8(0) + kafka_wire.compact_array([kafka_wire.compact_string(group)]) + kafka_wire.NO_TAGS
    r = conn.request(API_FIND_COORDINATOR, 4, body, flexible=True)
    r.int32()  # throttle
    assert r.array_len(True) == 1
    r.compact_string()  # key
    node_id = r.int32()
    r.compact_string()  # host
    r.int32()  # port
    return r.int16(), node_id


def commit(conn, group: str, member_id: str, epoch: int, topic: str, offsets: dict[int, int]) -> list[int]:
    """OffsetCommit v9 as a member of a consumer group: the error code of each partition."""
    partitions = [kafka_wire.int32(p) + kafka_wire.int64(o) + kafka_wire.int32(-1) + kafka_wire.compact_string("")
                  + kafka_wire.NO_TAGS for p, o in sorted(offsets.items())]
    body = (kafka_wire.compact_string(group) + kafka_wire.int32(epoch) + kafka_wire.compact_string(member_id)
            + kafka_wire.compact_string(None)
            + kafka_wire.compact_array([kafka_wire.compact_string(topic) + kafka_wire.compact_array(partitions)
                                        + kafka_wire.NO_TAGS]) + kafka_wire.NO_TAGS)
    r = conn.request(API_OFFSET_COMMIT, 9, body, flexible=True)
    r.int32()  # throttle
    errors = []
    for _ in range(r.array_len(True)):
        r.compact_string()
        for _ in range(r.array_len(True)):
            r.int32()
            errors.append(r.int16())
            r.tags()
        r.tags()
    return errors


def until_served(broker, what: str, attempt):
    """Runs attempt(conn) on fresh connections until its first value is not a coordinator error
    the client would retry; bounded."""
    deadline = time.monotonic() + RESTART_WAIT_S
    while True:
        try:
            with kafka_wire.Connection(broker.host, broker.port, timeout_s=10) as conn:
                answer = attempt(conn)
            if answer[0] not in COORDINATOR_RETRIABLE:
                return answer
        except (kafka_wire.WireError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: the coordinator did not serve the group within {RESTART_WAIT_S}s")
        time.sleep(0.2)


def test_a_restarted_broker_reloads_the_group_with_its_epochs_and_offsets(own_broker):
    """A consumer-protocol group whose broker restarts is loaded back from `__consumer_offsets`:
    its member, still heartbeating with the epoch it had, keeps it and its partitions (no
    rebalance), the member's commits keep being checked against that epoch, and the committed
    offsets are the ones written before the restart."""
    broker = own_broker
    topic = unique_topic("kip848-restart")
    group = unique_group("kip848-restart")
    member_id = uuid.uuid4().hex
    create_topic(broker, topic, 3)
    assert_serves_the_consumer_protocol(broker)
    until_served(broker, "FindCoordinator", lambda conn: find_coordinator(conn, group))

    error, epoch, assignment = until_served(broker, "join", lambda conn: heartbeat(conn, group, member_id, 0, topic, {}))
    assert error == kafka_wire.ERROR_NONE and epoch > 0 and assignment is not None, (error, epoch, assignment)
    assert sorted(p for parts in assignment.values() for p in parts) == [0, 1, 2], assignment
    error, stable_epoch, _ = until_served(broker, "heartbeat",
                                          lambda conn: heartbeat(conn, group, member_id, epoch, topic, assignment))
    assert (error, stable_epoch) == (kafka_wire.ERROR_NONE, epoch)

    committed = {0: 11, 1: 12, 2: 13}
    with kafka_wire.Connection(broker.host, broker.port, timeout_s=10) as conn:
        assert commit(conn, group, member_id, epoch, topic, committed) == [kafka_wire.ERROR_NONE] * 3
        assert commit(conn, group, member_id, epoch + 1, topic, {0: 99}) == [ERROR_STALE_MEMBER_EPOCH]
        assert commit(conn, group, "not-a-member", epoch, topic, {0: 99}) == [ERROR_UNKNOWN_MEMBER_ID]

    broker.restart()

    error, after_epoch, after_assignment = until_served(
        broker, "heartbeat after the restart", lambda conn: heartbeat(conn, group, member_id, epoch, topic, assignment))
    assert (error, after_epoch) == (kafka_wire.ERROR_NONE, epoch), "the member keeps its epoch across the restart"
    assert after_assignment == assignment, "and its partitions"
    with kafka_wire.Connection(broker.host, broker.port, timeout_s=10) as conn:
        assert commit(conn, group, member_id, epoch + 1, topic, {0: 99}) == [ERROR_STALE_MEMBER_EPOCH]
    assert committed_offsets_of(broker, group, topic, 3) == committed
    described = describe_group(broker, group)
    assert (described.type.name, described.state.name) == ("CONSUMER", "STABLE")
    assert [m.member_id for m in described.members] == [member_id]
    assert sorted(tp.partition for tp in described.members[0].assignment.topic_partitions) == [0, 1, 2]


def arm_fault(broker, action: str) -> str:
    request = urllib.request.Request(f"http://{broker.host}:{broker.metrics_port}/faults/{action}", method="POST")
    with urllib.request.urlopen(request, timeout=5) as answer:
        return answer.read().decode()


@pytest.mark.sluice_only("Sluice's fault injection (SLUICE_FAULT_INJECTION, POST /faults)")
def test_a_heartbeat_whose_records_cannot_be_written_leaves_no_trace(own_broker):
    """When a group's records cannot be written, the heartbeat that made them is answered with an
    error, and the group is served again only from its log: while the offsets partition cannot
    be read, its members are told to retry (not that the group is gone); after a restart the
    member that joined before the failure has its epoch and partitions, and the one whose join
    was never written is not in the group."""
    broker = own_broker
    broker.stop()
    broker.extra_env["SLUICE_FAULT_INJECTION"] = "1"
    broker.start()
    topic = unique_topic("kip848-unwritten")
    group = unique_group("kip848-unwritten")
    create_topic(broker, topic, 2)
    until_served(broker, "FindCoordinator", lambda conn: find_coordinator(conn, group))
    error, epoch, assignment = until_served(broker, "join", lambda conn: heartbeat(conn, group, "a", 0, topic, {}))
    assert error == kafka_wire.ERROR_NONE and assignment is not None
    steady = until_served(broker, "heartbeat", lambda conn: heartbeat(conn, group, "a", epoch, topic, assignment))
    assert steady[:2] == (kafka_wire.ERROR_NONE, epoch)

    arm_fault(broker, "fail-writes?topic=__consumer_offsets")
    with kafka_wire.Connection(broker.host, broker.port, timeout_s=10) as conn:
        joined, _, _ = heartbeat(conn, group, "b", 0, topic, {})
        assert joined in COORDINATOR_RETRIABLE, f"a join whose records were not written answered {joined}"
        refused, _, _ = heartbeat(conn, group, "a", epoch, topic, assignment)
        assert refused in COORDINATOR_RETRIABLE, f"a member of a group its log cannot give back: {refused}"

    broker.restart()
    after = until_served(broker, "heartbeat after the restart",
                         lambda conn: heartbeat(conn, group, "a", epoch, topic, assignment))
    assert after == (kafka_wire.ERROR_NONE, epoch, assignment)
    described = describe_group(broker, group)
    assert [m.member_id for m in described.members] == ["a"], "the unwritten join left no member behind"
