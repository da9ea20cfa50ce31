"""Dynamic broker configs: AlterConfigs and IncrementalAlterConfigs of BROKER resources.

Goal: broker configs change at run time as in Kafka (KIP-226). A config set for one broker (the
resource named by its id) and one set as the cluster-wide default (the empty name) are stored in
the metadata, so every broker reports them with Kafka's sources (DYNAMIC_BROKER_CONFIG over
DYNAMIC_DEFAULT_BROKER_CONFIG over the static setting) and they survive restarts; a config that
cannot change at run time is refused with Kafka's INVALID_REQUEST and message and leaves no
trace; and a live one takes effect: `message.max.bytes` set as the cluster default bounds the
batches of a topic that does not set `max.message.bytes`, and stops bounding them once deleted.

Method: a three-node cluster per test, driven by confluent-kafka's AdminClient
(`incremental_alter_configs`, `alter_configs`, `describe_configs`) and Producer. librdkafka sends
a BROKER resource named by an id to that broker, so describing broker N asks broker N. librdkafka
(and kafka-python) cannot name the cluster-default resource (the empty name), so it is set,
deleted and described with Kafka 4.4's own `kafka-configs.sh --entity-default` (ConfigCommand,
from the reference jars), described through each broker in turn. Every wait is bounded.
"""

from __future__ import annotations

import subprocess

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewTopic, ResourceType

import clients
import kafka_tools
from cluster import Cluster, cluster_fixture, wait_until  # noqa: F401 - the fixture

pytestmark = pytest.mark.sluice_only("several nodes of one cluster; the reference runs a single node")

WAIT_S = 30.0


def alter(admin, name: str, **settings: str | None) -> None:
    """IncrementalAlterConfigs of BROKER `name`: SET each setting, DELETE those given as None
    (names with dots are passed with underscores)."""
    entries = [
        ConfigEntry(key.replace("_", "."), value,
                    incremental_operation=AlterConfigOpType.DELETE if value is None else AlterConfigOpType.SET)
        for key, value in settings.items()
    ]
    resource = ConfigResource(ResourceType.BROKER, name, incremental_configs=entries)
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=WAIT_S)


def describe(admin, name: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(ResourceType.BROKER, name)
    return clients.wait_all(admin.describe_configs([resource]))[resource]


def value_and_source(entries: dict[str, ConfigEntry], name: str) -> tuple[str | None, ConfigSource] | None:
    entry = entries.get(name)
    return None if entry is None else (entry.value, ConfigSource(entry.source))


def kafka_configs(bootstrap: str, *args: str) -> subprocess.CompletedProcess:
    """Kafka's ConfigCommand (`kafka-configs.sh`) for the brokers' cluster-default resource."""
    try:
        java, classpath = kafka_tools.find_java(), kafka_tools.kafka_classpath()
    except kafka_tools.ToolsUnavailable as unavailable:
        pytest.skip(f"Kafka's kafka-configs tool: {unavailable}")
    command = [java, "-Xmx256m", "-cp", classpath, "org.apache.kafka.tools.ConfigCommand",
               "--bootstrap-server", bootstrap, "--entity-type", "brokers", "--entity-default", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=kafka_tools.TOOL_TIMEOUT_S)


def alter_default(bootstrap: str, *args: str) -> None:
    run = kafka_configs(bootstrap, "--alter", *args)
    assert run.returncode == 0, run.stdout + run.stderr


def describe_default(bootstrap: str) -> dict[str, str]:
    """The cluster-default configs, `name -> value`, as kafka-configs lists them; each line's
    synonyms must be the cluster default alone."""
    run = kafka_configs(bootstrap, "--describe")
    assert run.returncode == 0, run.stdout + run.stderr
    configs = {}
    for line in run.stdout.splitlines()[1:]:
        setting, _, rest = line.strip().partition(" ")
        name, _, value = setting.partition("=")
        assert rest == f"sensitive=false synonyms={{DYNAMIC_DEFAULT_BROKER_CONFIG:{setting}}}", line
        configs[name] = value
    return configs


def refusal(admin, name: str, **settings: str) -> KafkaError:
    with pytest.raises(KafkaException) as raised:
        alter(admin, name, **settings)
    return raised.value.args[0]


def test_per_broker_and_cluster_default_configs_are_seen_by_every_broker_and_survive_restarts(cluster):
    admin = cluster.admin()
    alter(admin, "1", log_retention_ms="3600000", sasl_kerberos_min_time_before_relogin="58000")
    alter_default(cluster.nodes[2].bootstrap, "--add-config", "log.retention.ms=7200000,background.threads=9")

    def seen_everywhere() -> bool:
        for node_id, node in cluster.nodes.items():
            entries = describe(admin, str(node_id))
            if node_id == 1:
                assert value_and_source(entries, "log.retention.ms") == ("3600000", ConfigSource.DYNAMIC_BROKER_CONFIG)
                assert value_and_source(entries, "sasl.kerberos.min.time.before.relogin") == (
                    "58000", ConfigSource.DYNAMIC_BROKER_CONFIG)
            else:
                assert value_and_source(entries, "log.retention.ms") == (
                    "7200000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG), f"broker {node_id}"
                assert "sasl.kerberos.min.time.before.relogin" not in entries, "another broker's own config"
            assert value_and_source(entries, "background.threads") == ("9", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
            assert not entries["log.retention.ms"].is_read_only
            assert value_and_source(entries, "num.partitions") == ("1", ConfigSource.STATIC_BROKER_CONFIG)
            assert entries["num.partitions"].is_read_only
        return True

    wait_until("every broker reports the dynamic configs", seen_everywhere, timeout_s=WAIT_S)
    # The empty name: the cluster-wide defaults alone, asked of each broker.
    for node in cluster.nodes.values():
        assert describe_default(node.bootstrap) == {"log.retention.ms": "7200000", "background.threads": "9"}

    for node in cluster.nodes.values():
        node.restart()
    wait_until("the dynamic configs after every broker restarted", seen_everywhere, timeout_s=WAIT_S)

    # AlterConfigs replaces the resource's whole set: what it does not name goes.
    resource = ConfigResource(ResourceType.BROKER, "1", set_config={"log.retention.ms": "1800000"})
    admin = cluster.admin()
    for future in admin.alter_configs([resource]).values():
        future.result(timeout=WAIT_S)
    entries = describe(admin, "1")
    assert value_and_source(entries, "log.retention.ms") == ("1800000", ConfigSource.DYNAMIC_BROKER_CONFIG)
    assert "sasl.kerberos.min.time.before.relogin" not in entries
    alter(admin, "1", log_retention_ms=None)
    assert value_and_source(describe(admin, "1"), "log.retention.ms") == (
        "7200000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG), "deleted, the cluster default shows through"


def test_configs_that_cannot_change_at_run_time_are_refused_with_kafkas_errors(cluster):
    admin = cluster.admin()
    error = refusal(admin, "2", num_partitions="3")
    assert error.code() == KafkaError.INVALID_REQUEST
    assert "Cannot update these configs dynamically: [num.partitions]" in error.str()
    error = refusal(admin, "2", listeners="PLAINTEXT://127.0.0.1:1")
    assert "Cannot update these configs dynamically: [listeners]" in error.str()
    error = refusal(admin, "3", background_threads="none")
    assert "Invalid value none for configuration background.threads: Not a number of type INT" in error.str()
    run = kafka_configs(cluster.bootstrap, "--alter", "--add-config", "sasl.kerberos.min.time.before.relogin=58000")
    assert run.returncode != 0
    assert ("InvalidRequestException: Cannot update these configs at default cluster level, broker id must be "
            "specified: [sasl.kerberos.min.time.before.relogin]") in run.stdout + run.stderr
    entries = describe(admin, "2")
    assert value_and_source(entries, "num.partitions") == ("1", ConfigSource.STATIC_BROKER_CONFIG), "refused: no trace"
    assert entries["num.partitions"].is_read_only
    assert describe_default(cluster.bootstrap) == {}


def produce_one(bootstrap: str, topic: str, size_bytes: int) -> KafkaError | None:
    """Produces one record of `size_bytes` and returns its delivery error (None: delivered)."""
    producer = Producer({"bootstrap.servers": bootstrap, "broker.address.family": "v4",
                         "message.timeout.ms": 10_000, "retries": 0, "compression.type": "none"})
    errors: list = []
    producer.produce(topic, value=b"x" * size_bytes, on_delivery=lambda error, _message: errors.append(error))
    assert producer.flush(15) == 0, "delivery was reported"
    return errors[0]


def test_a_dynamic_message_max_bytes_bounds_the_topics_that_do_not_set_their_own(cluster):
    admin = cluster.admin()
    topic = clients.unique_topic("dynamic-limit")
    for future in admin.create_topics([NewTopic(topic, 1, 3)], operation_timeout=WAIT_S).values():
        future.result(timeout=WAIT_S)
    assert produce_one(cluster.bootstrap, topic, 5_000) is None

    alter_default(cluster.bootstrap, "--add-config", "message.max.bytes=2000")
    wait_until("the leader refuses a batch over the dynamic default",
               lambda: (error := produce_one(cluster.bootstrap, topic, 5_000)) is not None
               and error.code() == KafkaError.MSG_SIZE_TOO_LARGE, timeout_s=WAIT_S)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entry = clients.wait_all(admin.describe_configs([resource]))[resource]["max.message.bytes"]
    assert (entry.value, ConfigSource(entry.source)) == ("2000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)

    alter_default(cluster.bootstrap, "--delete-config", "message.max.bytes")
    wait_until("the batch is accepted again once the dynamic default is gone",
               lambda: produce_one(cluster.bootstrap, topic, 5_000) is None, timeout_s=WAIT_S)
