"""ACL authorization: CreateAcls, DescribeAcls and DeleteAcls, and what every API lets through.

Goal: with `--authorizer on` the broker decides every request as Kafka's StandardAuthorizer
does (literal, wildcard and prefixed patterns; ALLOW and DENY, a matching DENY always winning;
DESCRIBE implied by READ and WRITE; super users; `allow.everyone.if.no.acl.found`), answers
with Kafka's error codes (TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED,
CLUSTER_AUTHORIZATION_FAILED, SECURITY_DISABLED), leaves out of Metadata and ListGroups what
the principal may not describe, answers the authorized-operations fields (topic, cluster, group)
and OffsetFetch's per-partition refusals as Kafka does, keeps the ACLs in the metadata log (they
survive a restart) and enforces the same set on every broker of a cluster.

Method: real clients over plaintext, whose principal is Kafka's `User:ANONYMOUS`. Each test
starts its own broker: first with `--super-users User:ANONYMOUS`, as the administrator, to
create topics and ACLs through confluent-kafka's AdminClient; then again on the same data
without super users, so that the same principal is bound by the ACLs it created. The matrix
runs each API group with and without the ACL it needs. One test authenticates SCRAM users over
SASL_PLAINTEXT (`User:alice`, and `User:admin` as the super user); one runs a three-node
cluster; one drives `sluicectl acls`. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

import clients
from cluster import Cluster, sluicectl_binary, wait_until
from conftest import HOST, Broker, new_broker

pytestmark = pytest.mark.sluice_only("the broker is started with Sluice's authorizer flags")

ANONYMOUS = "User:ANONYMOUS"
OP_TIMEOUT_S = 30.0


@contextlib.contextmanager
def started(tmp_path, name: str, *args: str):
    """A broker of its own on `tmp_path`, with `args`; stopped at the end."""
    broker = new_broker(tmp_path / name, name)
    broker.extra_args += list(args)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def restart_with(broker, *args: str) -> None:
    """Stop, replace the authorizer flags, start on the same data."""
    broker.stop()
    broker.extra_args = list(args)
    broker.admin_client = None
    broker.start()


def admin_of(broker) -> AdminClient:
    client = AdminClient(clients.base_conf(broker))
    broker.keep_alive.append(client)
    return client


def acl(resource: ResourceType, name: str, operation: AclOperation,
        permission: AclPermissionType = AclPermissionType.ALLOW,
        pattern: ResourcePatternType = ResourcePatternType.LITERAL, principal: str = ANONYMOUS) -> AclBinding:
    return AclBinding(resource, name, pattern, principal, "*", operation, permission)


def create_acls(admin: AdminClient, bindings: list[AclBinding]) -> None:
    for future in admin.create_acls(bindings, request_timeout=OP_TIMEOUT_S).values():
        future.result(timeout=OP_TIMEOUT_S)


def every_acl() -> AclBindingFilter:
    return AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                            AclPermissionType.ANY)


def describe_acls(admin: AdminClient, acl_filter: AclBindingFilter | None = None) -> set[AclBinding]:
    return set(admin.describe_acls(acl_filter or every_acl(), request_timeout=OP_TIMEOUT_S)
               .result(timeout=OP_TIMEOUT_S))


def describe_refusal(broker) -> str:
    """The error DescribeAcls answers, through kafka-python (librdkafka drops DescribeAcls'
    top-level error and returns no bindings instead)."""
    from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                             KafkaAdminClient, ResourcePatternFilter)
    from kafka.admin import ResourceType as KpResourceType
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=int(OP_TIMEOUT_S * 1000))
    try:
        client.describe_acls(ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                                       permission_type=ACLPermissionType.ANY,
                                       resource_pattern=ResourcePatternFilter(KpResourceType.ANY, None,
                                                                              ACLResourcePatternType.ANY)))
    except Exception as error:  # noqa: BLE001 - the error is what is looked at
        return type(error).__name__
    finally:
        client.close()
    return "no error"


def error_code(error: BaseException) -> int:
    assert isinstance(error, KafkaException), error
    return error.args[0].code()


def produce_one(broker, topic: str, **extra) -> KafkaError | None:
    """One record, acks=all; the delivery error, or None once it is written."""
    producer = Producer(clients.base_conf(broker, **{"message.timeout.ms": 10_000, **extra}))
    outcome: list = []
    producer.produce(topic, b"value", on_delivery=lambda err, _msg: outcome.append(err))
    deadline = time.monotonic() + 20
    while not outcome and time.monotonic() < deadline:
        producer.poll(0.1)
    producer.flush(5)
    assert outcome, f"no delivery report for {topic} within 20 s"
    return outcome[0]


def consume_error(broker, topic: str, group: str) -> int | None:
    """Subscribes `group` to `topic`; the first error code the consumer reports (None: it read
    the record there)."""
    consumer = Consumer(clients.base_conf(broker, **{"group.id": group, "auto.offset.reset": "earliest",
                                                     "session.timeout.ms": 6000}))
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                return message.error().code()
            return None
        raise AssertionError(f"{group} on {topic}: neither a record nor an error within 20 s")
    finally:
        consumer.close()


def create_topics(admin: AdminClient, names: list[str]) -> None:
    for future in admin.create_topics([NewTopic(name, 1, 1) for name in names],
                                      request_timeout=OP_TIMEOUT_S).values():
        future.result(timeout=OP_TIMEOUT_S)


def test_acl_apis_answer_security_disabled_without_an_authorizer(tmp_path):
    with started(tmp_path, "no-authorizer") as broker:
        admin = admin_of(broker)
        with pytest.raises(KafkaException) as refused:
            create_acls(admin, [acl(ResourceType.TOPIC, "t", AclOperation.READ)])
        assert error_code(refused.value) == KafkaError.SECURITY_DISABLED
        assert describe_refusal(broker) == "SecurityDisabledError"
        # Everything else stays allowed, as before.
        assert produce_one(broker, "open-by-default") is None


def test_create_describe_and_delete_acls_with_the_admin_client(tmp_path):
    with started(tmp_path, "acl-apis", "--authorizer", "on", "--super-users", ANONYMOUS) as broker:
        admin = admin_of(broker)
        orders = acl(ResourceType.TOPIC, "orders", AclOperation.READ, principal="User:alice")
        prefixed = acl(ResourceType.TOPIC, "ord", AclOperation.WRITE, pattern=ResourcePatternType.PREFIXED,
                       principal="User:bob")
        wildcard = acl(ResourceType.TOPIC, "*", AclOperation.DESCRIBE, principal="User:*")
        deny = acl(ResourceType.GROUP, "payments", AclOperation.ALL, AclPermissionType.DENY, principal="User:alice")
        cluster = acl(ResourceType.BROKER, "kafka-cluster", AclOperation.ALTER, principal="User:ops")
        create_acls(admin, [orders, prefixed, wildcard, deny, cluster])
        create_acls(admin, [orders])  # an existing binding: success, no second copy
        assert describe_acls(admin) == {orders, prefixed, wildcard, deny, cluster}

        # MATCH finds every pattern that applies to a name: literal, wildcard and prefixes.
        matching = AclBindingFilter(ResourceType.TOPIC, "orders", ResourcePatternType.MATCH, None, None,
                                    AclOperation.ANY, AclPermissionType.ANY)
        assert describe_acls(admin, matching) == {orders, prefixed, wildcard}
        by_principal = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:alice", None,
                                        AclOperation.ANY, AclPermissionType.ANY)
        assert describe_acls(admin, by_principal) == {orders, deny}

        # Kafka's validation: the cluster resource is named kafka-cluster.
        with pytest.raises(KafkaException) as refused:
            create_acls(admin, [acl(ResourceType.BROKER, "other", AclOperation.ALTER)])
        assert error_code(refused.value) == KafkaError.INVALID_REQUEST

        deleted = admin.delete_acls([by_principal], request_timeout=OP_TIMEOUT_S)[by_principal]
        assert set(deleted.result(timeout=OP_TIMEOUT_S)) == {orders, deny}
        assert describe_acls(admin) == {prefixed, wildcard, cluster}


def test_acls_survive_a_restart_and_decide_every_api(tmp_path):
    """The matrix: for each API group, a resource with the ACL it needs and one without."""
    with started(tmp_path, "acl-matrix", "--authorizer", "on", "--super-users", ANONYMOUS) as broker:
        admin = admin_of(broker)
        open_topic, closed_topic, denied_topic = "open-events", "closed-events", "open-denied"
        create_topics(admin, [open_topic, closed_topic, denied_topic])
        for topic in (open_topic, closed_topic, denied_topic):
            assert produce_one(broker, topic) is None
        prefixed = ResourcePatternType.PREFIXED
        # A group this principal will not be allowed to see.
        assert consume_error(broker, open_topic, "hidden-group") is None
        create_acls(admin, [
            acl(ResourceType.TOPIC, "open-", AclOperation.ALL, pattern=prefixed),
            acl(ResourceType.TOPIC, denied_topic, AclOperation.WRITE, AclPermissionType.DENY),
            acl(ResourceType.GROUP, "readers-", AclOperation.READ, pattern=prefixed),
        ])
        assert len(describe_acls(admin)) == 3

        # The same principal without super user rights: bound by the ACLs, which survived the
        # restart in the metadata log.
        restart_with(broker, "--authorizer", "on")
        admin = admin_of(broker)
        assert describe_refusal(broker) == "ClusterAuthorizationFailedError", "DESCRIBE on the cluster"
        with pytest.raises(KafkaException) as refused:
            create_acls(admin, [acl(ResourceType.TOPIC, closed_topic, AclOperation.ALL)])
        assert error_code(refused.value) == KafkaError.CLUSTER_AUTHORIZATION_FAILED, "ALTER on the cluster"

        # Produce: WRITE on the topic; a DENY on a literal name overrides the prefixed ALLOW.
        assert produce_one(broker, open_topic) is None
        assert produce_one(broker, closed_topic).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert produce_one(broker, denied_topic).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        # DENY WRITE does not deny READ: the prefixed ALLOW ALL still reads it.
        assert consume_error(broker, denied_topic, "readers-1") is None

        # Fetch with a group: READ on the topic and on the group.
        assert consume_error(broker, open_topic, "readers-2") is None
        assert consume_error(broker, closed_topic, "readers-3") == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert consume_error(broker, open_topic, "writers-1") == KafkaError.GROUP_AUTHORIZATION_FAILED

        # Metadata leaves out the topics the principal may not describe, and refuses them by name.
        listed = admin.list_topics(timeout=OP_TIMEOUT_S).topics
        assert open_topic in listed and denied_topic in listed
        assert closed_topic not in listed
        named = admin.list_topics(closed_topic, timeout=OP_TIMEOUT_S).topics[closed_topic]
        assert named.error is not None and named.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

        # ListGroups leaves out the groups it may not describe.
        listing = admin.list_consumer_groups(request_timeout=OP_TIMEOUT_S).result(timeout=OP_TIMEOUT_S)
        listed_groups = {group.group_id for group in listing.valid}
        assert {"readers-1", "readers-2"} <= listed_groups
        assert "hidden-group" not in listed_groups

        # Admin APIs: creating a topic needs CREATE, describing configs DESCRIBE_CONFIGS (implied
        # by ALL on the prefix), deleting a topic DELETE.
        with pytest.raises(KafkaException) as refused:
            create_topics(admin, ["elsewhere-new"])
        assert error_code(refused.value) == KafkaError.TOPIC_AUTHORIZATION_FAILED
        create_topics(admin, ["open-new"])
        configs = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, closed_topic)],
                                         request_timeout=OP_TIMEOUT_S)
        with pytest.raises(KafkaException) as refused:
            next(iter(configs.values())).result(timeout=OP_TIMEOUT_S)
        assert error_code(refused.value) == KafkaError.TOPIC_AUTHORIZATION_FAILED
        with pytest.raises(KafkaException) as refused:
            next(iter(admin.delete_topics([closed_topic], request_timeout=OP_TIMEOUT_S).values())).result(
                timeout=OP_TIMEOUT_S)
        assert error_code(refused.value) == KafkaError.TOPIC_AUTHORIZATION_FAILED

        # Idempotent producers need IDEMPOTENT_WRITE on the cluster or WRITE on some topic
        # (they have it on the prefix); transactional ones WRITE on their transactional id.
        assert produce_one(broker, open_topic, **{"enable.idempotence": True}) is None
        transactional = Producer(clients.base_conf(broker, **{"transactional.id": f"tx-{uuid.uuid4().hex[:6]}"}))
        with pytest.raises(KafkaException) as refused:
            transactional.init_transactions(15)
        assert "TRANSACTIONAL_ID_AUTHORIZATION_FAILED" in str(refused.value) or \
            error_code(refused.value) == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_super_users_and_allow_everyone_if_no_acl_found(tmp_path):
    with started(tmp_path, "acl-defaults", "--authorizer", "on") as broker:
        # No ACL, no super user: nothing is allowed.
        assert produce_one(broker, "nobody").code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        with pytest.raises(KafkaException) as refused:
            create_acls(admin_of(broker), [acl(ResourceType.TOPIC, "t", AclOperation.READ)])
        assert error_code(refused.value) == KafkaError.CLUSTER_AUTHORIZATION_FAILED

        restart_with(broker, "--authorizer", "on", "--allow-everyone-if-no-acl-found", "true")
        admin = admin_of(broker)
        assert produce_one(broker, "everyone") is None, "no ACL names the topic: everyone may"
        # An ACL for another principal closes the topic to this one (the cluster has none, so
        # creating ACLs is open too).
        create_acls(admin, [acl(ResourceType.TOPIC, "everyone", AclOperation.WRITE, principal="User:bob")])
        assert produce_one(broker, "everyone").code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

        restart_with(broker, "--authorizer", "on", "--super-users", f"User:admin;{ANONYMOUS}")
        assert produce_one(broker, "everyone") is None, "a super user passes every check"


def test_acls_hold_on_every_broker_of_a_cluster(tmp_path):
    cluster = Cluster(tmp_path, extra_args=["--authorizer", "on", "--super-users", ANONYMOUS])
    cluster.start()
    try:
        admin = cluster.admin(cluster.nodes[1])
        create_topics(admin, ["shared-open", "shared-closed"])
        # The brokers' own requests (replica fetches, markers) come as User:ANONYMOUS here: it
        # keeps CLUSTER_ACTION, and may manage ACLs, but reads and writes only the open topic.
        create_acls(admin, [
            acl(ResourceType.TOPIC, "shared-open", AclOperation.ALL),
            acl(ResourceType.BROKER, "kafka-cluster", AclOperation.CLUSTER_ACTION),
            acl(ResourceType.BROKER, "kafka-cluster", AclOperation.ALTER),
            acl(ResourceType.BROKER, "kafka-cluster", AclOperation.DESCRIBE),
        ])
        expected = describe_acls(admin)
        for node in cluster.nodes.values():
            node_admin = cluster.admin(node)
            wait_until(f"node {node.node_id} has every ACL", lambda: describe_acls(node_admin) == expected)

        cluster.stop()
        for node in cluster.nodes.values():
            node.extra_args = ["--authorizer", "on"]
        cluster.start()
        for node in cluster.nodes.values():
            node_admin = cluster.admin(node)
            assert describe_acls(node_admin) == expected, f"node {node.node_id} after the restart"
            topics = node_admin.list_topics(timeout=OP_TIMEOUT_S).topics
            assert "shared-open" in topics and "shared-closed" not in topics
            assert produce_one(node, "shared-open") is None
            assert produce_one(node, "shared-closed").code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        # A change made through one broker holds on the others.
        closing = AclBindingFilter(ResourceType.TOPIC, "shared-open", ResourcePatternType.LITERAL, None, None,
                                   AclOperation.ANY, AclPermissionType.ANY)
        cluster.admin(cluster.nodes[2]).delete_acls([closing], request_timeout=OP_TIMEOUT_S)[closing].result(
            timeout=OP_TIMEOUT_S)
        for node in cluster.nodes.values():
            wait_until(f"node {node.node_id} refuses the closed topic",
                       lambda: produce_one(node, "shared-open").code() == KafkaError.TOPIC_AUTHORIZATION_FAILED,
                       timeout_s=60)
    finally:
        died = cluster.stop()
        assert not died, f"nodes exited on their own: {died}\n{cluster.log_tails()}"


def sluicectl(broker, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sluicectl_binary(), "--bootstrap-server", broker.bootstrap, "--output", "json", *args],
                          capture_output=True, text=True, timeout=60)


def test_sluicectl_acls_create_list_and_delete(tmp_path):
    with started(tmp_path, "sluicectl-acls", "--authorizer", "on", "--super-users", ANONYMOUS) as broker:
        created = sluicectl(broker, "acls", "create", "--topic", "pay", "--pattern", "prefixed",
                            "--principal", "User:alice", "--operation", "write")
        assert created.returncode == 0, created.stderr
        created = sluicectl(broker, "acls", "create", "--group", "g", "--principal", "User:alice",
                            "--operation", "describe-configs", "--deny")
        assert created.returncode == 0, created.stderr
        listed = sluicectl(broker, "acls", "list", "--principal", "User:alice")
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert {(row["resource_type"], row["name"], row["pattern"], row["operation"], row["permission"])
                for row in rows} == {("TOPIC", "pay", "PREFIXED", "WRITE", "ALLOW"),
                                     ("GROUP", "g", "LITERAL", "DESCRIBE_CONFIGS", "DENY")}
        # The admin client sees what the tool made.
        assert len(describe_acls(admin_of(broker))) == 2
        deleted = sluicectl(broker, "acls", "delete", "--topic", "pay", "--pattern", "match")
        assert deleted.returncode == 0, deleted.stderr
        assert [row["name"] for row in json.loads(deleted.stdout)] == ["pay"]
        assert len(json.loads(sluicectl(broker, "acls", "list").stdout)) == 1
        refused = sluicectl(broker, "acls", "delete")
        assert refused.returncode != 0 and "at least" in refused.stderr


def test_sasl_users_are_the_principals_acls_name(tmp_path):
    """Principals from SASL: `User:alice` after SCRAM, a super user `User:admin`."""
    broker = Broker(tmp_path / "sasl", "acl-sasl")
    broker.listeners = f"SASL_PLAINTEXT://{HOST}:{broker.port}"
    config = tmp_path / "sasl" / "users.toml"
    config.write_text('add_scram = [\n  "SCRAM-SHA-256=[name=admin,password=admin-pw-3d1]",\n'
                      '  "SCRAM-SHA-256=[name=alice,password=alice-pw-8c2]",\n]\n')
    broker.extra_args += ["--config", str(config), "--authorizer", "on", "--super-users", "User:admin"]
    broker.start()
    try:
        def as_user(user: str, password: str) -> dict:
            return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
                    "sasl.username": user, "sasl.password": password}
        admin = AdminClient(clients.base_conf(broker, **as_user("admin", "admin-pw-3d1")))
        alice_admin = AdminClient(clients.base_conf(broker, **as_user("alice", "alice-pw-8c2")))
        broker.keep_alive += [admin, alice_admin]
        create_topics(admin, ["alice-events", "alice-secrets", "bob-events"])
        create_acls(admin, [
            acl(ResourceType.TOPIC, "alice-", AclOperation.WRITE, pattern=ResourcePatternType.PREFIXED,
                principal="User:alice"),
            acl(ResourceType.TOPIC, "*", AclOperation.WRITE, principal="User:*"),
            acl(ResourceType.TOPIC, "alice-secrets", AclOperation.WRITE, AclPermissionType.DENY,
                principal="User:alice"),
        ])
        alice = as_user("alice", "alice-pw-8c2")
        assert produce_one(broker, "alice-events", **alice) is None
        assert produce_one(broker, "bob-events", **alice) is None, "User:* allows everyone"
        assert produce_one(broker, "alice-secrets", **alice).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert produce_one(broker, "alice-secrets", **as_user("admin", "admin-pw-3d1")) is None, "super user"
        with pytest.raises(KafkaException) as refused:
            create_acls(alice_admin, [acl(ResourceType.TOPIC, "bob-events", AclOperation.READ,
                                          principal="User:alice")])
        assert error_code(refused.value) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    finally:
        broker.stop()


def operations(names: list[str]) -> set[AclOperation]:
    return {getattr(AclOperation, name) for name in names}


# Kafka's supported operations per resource type: what a super user is answered.
TOPIC_OPERATIONS = operations(["READ", "WRITE", "CREATE", "DESCRIBE", "DELETE", "ALTER", "DESCRIBE_CONFIGS",
                               "ALTER_CONFIGS"])
CLUSTER_OPERATIONS = operations(["CREATE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS",
                                 "IDEMPOTENT_WRITE", "ALTER", "DESCRIBE"])
GROUP_OPERATIONS = operations(["READ", "DESCRIBE", "DELETE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"])


def authorized_operations(admin: AdminClient, topic: str, group: str) -> tuple[set, set, set]:
    """The topic's, the cluster's and the group's authorized operations, as the admin client
    asks for them (Metadata, DescribeCluster, DescribeGroups or ConsumerGroupDescribe)."""
    described = admin.describe_topics(TopicCollection([topic]), include_authorized_operations=True,
                                      request_timeout=OP_TIMEOUT_S)[topic].result(timeout=OP_TIMEOUT_S)
    cluster = admin.describe_cluster(include_authorized_operations=True,
                                     request_timeout=OP_TIMEOUT_S).result(timeout=OP_TIMEOUT_S)
    groups = admin.describe_consumer_groups([group], include_authorized_operations=True,
                                            request_timeout=OP_TIMEOUT_S)
    group_description = groups[group].result(timeout=OP_TIMEOUT_S)
    return (set(described.authorized_operations), set(cluster.authorized_operations),
            set(group_description.authorized_operations))


def committed_offsets(admin: AdminClient, group: str, partitions: list | None) -> dict[str, tuple[int, int | None]]:
    """OffsetFetch of `group` (all topics when `partitions` is None): per topic, partition 0's
    offset and error code."""
    request = ConsumerGroupTopicPartitions(group, partitions)
    answer = admin.list_consumer_group_offsets([request], request_timeout=OP_TIMEOUT_S)[group]
    return {partition.topic: (partition.offset, partition.error.code() if partition.error else None)
            for partition in answer.result(timeout=OP_TIMEOUT_S).topic_partitions}


def test_authorized_operations_and_offset_fetch_follow_the_acls(tmp_path):
    """Authorized-operations fields are each principal's allowed operations as Kafka's bitfield
    (every supported one for a super user); OffsetFetch answers TOPIC_AUTHORIZATION_FAILED for a
    named topic the principal may not describe and leaves it out when all are asked for;
    ConsumerGroupHeartbeat refuses a subscription to a topic the principal may not describe."""
    readable, hidden, group = "ops-readable", "ops-hidden", "ops-group"
    members, assigned = "ops-members", "ops-assigned"
    with started(tmp_path, "acl-operations", "--authorizer", "on", "--super-users", ANONYMOUS) as broker:
        admin = admin_of(broker)
        create_topics(admin, [readable, hidden])
        for topic in (readable, hidden):
            assert produce_one(broker, topic) is None
        offsets = [TopicPartition(readable, 0, 1), TopicPartition(hidden, 0, 1)]
        altered = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, offsets)],
                                                     request_timeout=OP_TIMEOUT_S)
        altered[group].result(timeout=OP_TIMEOUT_S)
        assert authorized_operations(admin, readable, group) == (TOPIC_OPERATIONS, CLUSTER_OPERATIONS,
                                                                 GROUP_OPERATIONS)
        # A KIP-848 member assigned the hidden topic, for ConsumerGroupDescribe below.
        assert heartbeat_error(broker, assigned, [hidden]) == KafkaError.NO_ERROR
        member, = admin.describe_consumer_groups([assigned], request_timeout=OP_TIMEOUT_S)[assigned].result(
            timeout=OP_TIMEOUT_S).members
        held = [member.assignment, getattr(member, "target_assignment", None)]
        assert hidden in {partition.topic for assignment in held if assignment
                          for partition in assignment.topic_partitions}
        create_acls(admin, [
            acl(ResourceType.TOPIC, readable, AclOperation.READ),
            acl(ResourceType.TOPIC, "ops-", AclOperation.ALTER_CONFIGS, pattern=ResourcePatternType.PREFIXED),
            acl(ResourceType.TOPIC, readable, AclOperation.ALTER_CONFIGS, AclPermissionType.DENY),
            acl(ResourceType.BROKER, "kafka-cluster", AclOperation.DESCRIBE),
            acl(ResourceType.BROKER, "kafka-cluster", AclOperation.IDEMPOTENT_WRITE),
            acl(ResourceType.GROUP, group, AclOperation.READ),
            acl(ResourceType.GROUP, members, AclOperation.READ),
            acl(ResourceType.GROUP, assigned, AclOperation.DESCRIBE),
        ])

        restart_with(broker, "--authorizer", "on")
        admin = admin_of(broker)
        # READ implies DESCRIBE; the prefixed ALTER_CONFIGS would imply DESCRIBE_CONFIGS, but the
        # literal DENY removes ALTER_CONFIGS only.
        topic_ops, cluster_ops, group_ops = authorized_operations(admin, readable, group)
        assert topic_ops == operations(["READ", "DESCRIBE", "DESCRIBE_CONFIGS"])
        assert cluster_ops == operations(["DESCRIBE", "IDEMPOTENT_WRITE"])
        assert group_ops == operations(["READ", "DESCRIBE"])

        named = committed_offsets(admin, group, [TopicPartition(readable, 0), TopicPartition(hidden, 0)])
        assert named[readable] == (1, None)
        assert named[hidden] == (-1001, KafkaError.TOPIC_AUTHORIZATION_FAILED)
        assert committed_offsets(admin, group, None) == {readable: (1, None)}

        # ConsumerGroupHeartbeat: READ on the group, then DESCRIBE on every topic subscribed by
        # name (raw requests: a real client asks Metadata first and stops at its refusal).
        assert heartbeat_error(broker, members, [hidden]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert heartbeat_error(broker, "ops-nobody", [readable]) == KafkaError.GROUP_AUTHORIZATION_FAILED
        assert heartbeat_error(broker, members, [readable]) == KafkaError.NO_ERROR

        # ConsumerGroupDescribe refuses a group whose assignments hold a topic the principal may
        # not describe.
        described = admin.describe_consumer_groups([assigned], request_timeout=OP_TIMEOUT_S)[assigned]
        with pytest.raises(KafkaException) as refused:
            described.result(timeout=OP_TIMEOUT_S)
        assert error_code(refused.value) == KafkaError.TOPIC_AUTHORIZATION_FAILED


API_CONSUMER_GROUP_HEARTBEAT = 68


def heartbeat_error(broker, group: str, topics: list[str]) -> int:
    """The error code of a first ConsumerGroupHeartbeat v0 joining `group` subscribed to `topics`."""
    import kafka_wire as wire
    host, port = broker.bootstrap.rsplit(":", 1)
    body = (wire.compact_string(group) + wire.compact_string("") + wire.int32(0)
            + wire.compact_string(None) + wire.compact_string(None) + wire.int32(30_000)
            + wire.compact_array([wire.compact_string(topic) for topic in topics])
            + wire.compact_string(None) + wire.compact_array([]) + wire.uvarint(0))
    with wire.Connection(host, int(port), timeout_s=OP_TIMEOUT_S) as connection:
        reader = connection.request(API_CONSUMER_GROUP_HEARTBEAT, 0, body, flexible=True)
        reader.int32()  # throttle_time_ms
        return reader.int16()
