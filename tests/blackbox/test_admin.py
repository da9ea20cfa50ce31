"""Metadata and topic administration: create, describe, alter, grow and delete topics.

Goal: the admin APIs (Metadata, DescribeCluster, CreateTopics, CreatePartitions, DescribeConfigs,
AlterConfigs, IncrementalAlterConfigs, DeleteTopics) behave as Kafka's do for the clients that
call them, including their error codes.

Method: drive the broker with confluent-kafka's AdminClient, cross-check with kafka-python's
KafkaAdminClient and with kcat's metadata listing, and confirm every change through a second
request (Metadata or DescribeConfigs) and, where it matters, by producing and reading records.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewPartitions,
                                   NewTopic, ResourceType)

from clients import (admin, assert_matches, confluent_producer, create_topic, describe, make_records, now_ms,
                     produce, read_all, unique_topic, wait_all, wait_for_partitions, watermarks)
TOPIC = ResourceType.TOPIC


def kafka_error_code(excinfo) -> int:
    err = excinfo.value.args[0] if excinfo.value.args else None
    assert isinstance(err, KafkaError), f"expected a KafkaError, got {excinfo.value!r}"
    return err.code()


def source_of(entry: ConfigEntry) -> ConfigSource:
    return entry.source if isinstance(entry.source, ConfigSource) else ConfigSource(entry.source)


# ---------------------------------------------------------------- metadata


def test_metadata_advertises_the_broker_at_its_listen_address(broker):
    md = admin(broker).list_topics(timeout=10)
    assert len(md.brokers) == 1, md.brokers
    (node,) = md.brokers.values()
    assert (node.host, node.port) == ("127.0.0.1", broker.port)
    assert md.controller_id == node.id
    assert md.cluster_id, "Metadata carries no cluster id"


def test_describe_cluster_names_this_broker(broker):
    desc = admin(broker).describe_cluster(request_timeout=10).result(timeout=30)
    assert [(n.host, n.port) for n in desc.nodes] == [("127.0.0.1", broker.port)]
    assert desc.cluster_id
    assert desc.controller is not None and desc.controller.id == desc.nodes[0].id


# api key -> (highest allowed min version, lowest allowed max version). Minimums are the Kafka 4.0
# floor (KIP-896), except Produce, which DESIGN.md advertises from v0; maximums are what DESIGN.md
# names for Produce, Fetch and Metadata, and "any" for the rest.
REQUIRED_API_VERSIONS = {
    0: (0, 11),   # Produce
    1: (4, 16),   # Fetch
    2: (1, 1),    # ListOffsets
    3: (0, 12),   # Metadata
    18: (0, 3),   # ApiVersions
    19: (2, 2),   # CreateTopics
    20: (1, 1),   # DeleteTopics
    21: (0, 0),   # DeleteRecords
    22: (0, 0),   # InitProducerId
    23: (2, 2),   # OffsetForLeaderEpoch
    32: (1, 1),   # DescribeConfigs
    33: (0, 0),   # AlterConfigs
    37: (0, 0),   # CreatePartitions
    44: (0, 0),   # IncrementalAlterConfigs
    60: (0, 0),   # DescribeCluster
}


def test_api_versions_cover_kafka_4_floor_and_client_versions(broker):
    wrong = {}
    for key, (min_max, max_min) in REQUIRED_API_VERSIONS.items():
        rng = broker.api_versions.get(key)
        if rng is None or rng.min > min_max or rng.max < max_min:
            wrong[key] = (rng, f"need min <= {min_max}, max >= {max_min}")
    assert not wrong, f"api key: (advertised, needed): {wrong}"


def test_kcat_lists_broker_and_topic_partitions(broker):
    topic = unique_topic("kcat-metadata")
    create_topic(broker, topic, 3)
    out = subprocess.run(["kcat", "-b", broker.bootstrap, "-L", "-J", "-t", topic, "-m", "10"],
                         capture_output=True, timeout=30, check=True)
    md = json.loads(out.stdout)
    assert [(b["name"]) for b in md["brokers"]] == [f"127.0.0.1:{broker.port}"]
    (t,) = md["topics"]
    assert t["topic"] == topic
    assert sorted(p["partition"] for p in t["partitions"]) == [0, 1, 2]


def test_kafka_python_admin_sees_created_topic(broker):
    from kafka.admin import KafkaAdminClient

    topic = unique_topic("kp-admin")
    create_topic(broker, topic, 5)
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15_000)
    try:
        assert topic in client.list_topics()
        (desc,) = client.describe_topics([topic])
        assert desc["error_code"] == 0
        assert sorted(p.get("partition_index", p.get("partition")) for p in desc["partitions"]) == list(range(5))
    finally:
        client.close()


# ---------------------------------------------------------------- create


def test_create_topic_with_eight_partitions_each_led_by_this_broker(broker):
    topic = unique_topic("eight")
    create_topic(broker, topic, 8)
    md = admin(broker).list_topics(topic=topic, timeout=10)
    (node_id,) = md.brokers
    parts = md.topics[topic].partitions
    assert sorted(parts) == list(range(8))
    for p in parts.values():
        assert (p.leader, p.replicas, p.isrs, p.error) == (node_id, [node_id], [node_id], None)
    assert watermarks(broker, topic, list(range(8))) == {p: (0, 0) for p in range(8)}


def test_create_existing_topic_fails_with_topic_already_exists(broker):
    topic = unique_topic("dup")
    create_topic(broker, topic, 2)
    futures = admin(broker).create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    with pytest.raises(KafkaException) as info:
        wait_all(futures)
    assert kafka_error_code(info) == KafkaError.TOPIC_ALREADY_EXISTS
    wait_for_partitions(broker, topic, 2)


def test_create_topic_with_invalid_name_fails(broker):
    futures = admin(broker).create_topics([NewTopic("bad/name?", num_partitions=1, replication_factor=1)])
    with pytest.raises(KafkaException) as info:
        wait_all(futures)
    assert kafka_error_code(info) == KafkaError.TOPIC_EXCEPTION  # INVALID_TOPIC_EXCEPTION (17)


def test_create_topic_with_unknown_config_fails(broker):
    topic = unique_topic("bad-config")
    futures = admin(broker).create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1, config={"no.such.config": "1"})])
    with pytest.raises(KafkaException) as info:
        wait_all(futures)
    assert kafka_error_code(info) == KafkaError.INVALID_CONFIG
    assert topic not in admin(broker).list_topics(timeout=10).topics


def test_create_topic_validate_only_creates_nothing(broker):
    topic = unique_topic("validate-only")
    wait_all(admin(broker).create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)],
                                         validate_only=True))
    assert topic not in admin(broker).list_topics(timeout=10).topics


# ---------------------------------------------------------------- partitions


def test_create_partitions_grows_topic_and_new_partitions_take_records(broker):
    topic = unique_topic("grow")
    create_topic(broker, topic, 8)
    wait_all(admin(broker).create_partitions([NewPartitions(topic, 12)]))
    wait_for_partitions(broker, topic, 12)
    producer = confluent_producer(broker, acks="all")
    records = {p: produce(producer, topic, make_records(20, f"grow{p}", now_ms()), partition=p) for p in (0, 8, 11)}
    got = read_all(broker, topic, 12)
    for p, recs in records.items():
        assert [r.offset for r in recs] == list(range(20))
        assert_matches(recs, {p: got[p]})


def test_create_partitions_cannot_shrink_topic(broker):
    topic = unique_topic("shrink")
    create_topic(broker, topic, 4)
    with pytest.raises(KafkaException) as info:
        wait_all(admin(broker).create_partitions([NewPartitions(topic, 2)]))
    assert kafka_error_code(info) == KafkaError.INVALID_PARTITIONS
    wait_for_partitions(broker, topic, 4)


def test_create_partitions_of_unknown_topic_fails(broker):
    with pytest.raises(KafkaException) as info:
        wait_all(admin(broker).create_partitions([NewPartitions(unique_topic("nope"), 3)]))
    assert kafka_error_code(info) == KafkaError.UNKNOWN_TOPIC_OR_PART


# ---------------------------------------------------------------- configs


def test_describe_configs_lists_topic_configs_with_defaults(broker):
    topic = unique_topic("describe")
    create_topic(broker, topic, 1)
    configs = describe(broker, topic)
    for name in ("cleanup.policy", "retention.ms", "retention.bytes", "segment.bytes", "max.message.bytes",
                 "message.timestamp.type"):
        assert name in configs, f"{name} missing from DescribeConfigs: {sorted(configs)}"
    assert configs["cleanup.policy"].value == "delete"
    assert configs["message.timestamp.type"].value == "CreateTime"
    assert int(configs["max.message.bytes"].value) > 0
    assert configs["retention.ms"].is_default
    assert source_of(configs["retention.ms"]) != ConfigSource.DYNAMIC_TOPIC_CONFIG


def test_configs_given_at_creation_are_described_as_topic_overrides(broker):
    topic = unique_topic("created-with-config")
    create_topic(broker, topic, 1, {"retention.ms": "123456", "cleanup.policy": "compact"})
    configs = describe(broker, topic)
    for name, value in (("retention.ms", "123456"), ("cleanup.policy", "compact")):
        assert configs[name].value == value
        assert not configs[name].is_default
        assert source_of(configs[name]) == ConfigSource.DYNAMIC_TOPIC_CONFIG


def test_describe_configs_reports_synonyms_in_precedence_order(broker):
    """librdkafka asks for synonyms: an override lists itself first, then Kafka's default under
    the broker's name for the setting; a config left alone lists only that default."""
    topic = unique_topic("synonyms")
    create_topic(broker, topic, 1, {"segment.bytes": "2000000"})
    configs = describe(broker, topic)
    chain = [(name, syn.value, source_of(syn)) for name, syn in configs["segment.bytes"].synonyms.items()]
    assert chain == [("segment.bytes", "2000000", ConfigSource.DYNAMIC_TOPIC_CONFIG),
                     ("log.segment.bytes", "1073741824", ConfigSource.DEFAULT_CONFIG)], chain
    defaults = [(name, source_of(syn)) for name, syn in configs["cleanup.policy"].synonyms.items()]
    assert defaults == [("log.cleanup.policy", ConfigSource.DEFAULT_CONFIG)], defaults


def test_retention_ms_synonyms_name_no_broker_default(broker):
    """Kafka sets no log.retention.ms unless told to: an overridden retention.ms lists only the
    override as its synonym, and a default one lists none."""
    topic, plain = unique_topic("retention-synonyms"), unique_topic("retention-default")
    create_topic(broker, topic, 1, {"retention.ms": "123456"})
    create_topic(broker, plain, 1)
    synonyms = describe(broker, topic)["retention.ms"].synonyms
    chain = [(name, syn.value, source_of(syn)) for name, syn in synonyms.items()]
    assert chain == [("retention.ms", "123456", ConfigSource.DYNAMIC_TOPIC_CONFIG)], chain
    default = describe(broker, plain)["retention.ms"]
    assert (default.value, source_of(default)) == ("604800000", ConfigSource.DEFAULT_CONFIG)
    assert list(default.synonyms) == [], [(name, syn.value) for name, syn in default.synonyms.items()]


def test_kafka_python_describe_configs_with_synonyms(broker):
    from kafka.admin import ConfigResource as KpConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    topic = unique_topic("kp-synonyms")
    create_topic(broker, topic, 1, {"cleanup.policy": "compact"})
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15_000)
    try:
        described = client.describe_configs([KpConfigResource(ConfigResourceType.TOPIC, topic)],
                                            include_synonyms=True, config_filter="all")
    finally:
        client.close()
    (by_name,) = [names for names in described.values()]
    entry = by_name[topic]["cleanup.policy"]
    assert (entry["value"], entry["config_source"]) == ("compact", "DYNAMIC_TOPIC_CONFIG"), entry
    assert entry["synonyms"] == [
        {"name": "cleanup.policy", "value": "compact", "source": "DYNAMIC_TOPIC_CONFIG"},
        {"name": "log.cleanup.policy", "value": "delete", "source": "DEFAULT_CONFIG"},
    ], entry


def test_incremental_alter_configs_sets_and_deletes_overrides(broker):
    topic = unique_topic("incremental")
    create_topic(broker, topic, 1)
    default_retention = describe(broker, topic)["retention.ms"].value
    client = admin(broker)

    res = ConfigResource(TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "98765", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", "2000000", incremental_operation=AlterConfigOpType.SET)])
    wait_all(client.incremental_alter_configs([res]))
    configs = describe(broker, topic)
    assert (configs["retention.ms"].value, configs["max.message.bytes"].value) == ("98765", "2000000")
    assert source_of(configs["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG

    res = ConfigResource(TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    wait_all(client.incremental_alter_configs([res]))
    configs = describe(broker, topic)
    assert configs["retention.ms"].value == default_retention
    assert configs["retention.ms"].is_default
    assert configs["max.message.bytes"].value == "2000000", "deleting one override must keep the others"


def test_incremental_alter_configs_rejects_unknown_config(broker):
    topic = unique_topic("incremental-bad")
    create_topic(broker, topic, 1)
    res = ConfigResource(TOPIC, topic, incremental_configs=[
        ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as info:
        wait_all(admin(broker).incremental_alter_configs([res]))
    assert kafka_error_code(info) == KafkaError.INVALID_CONFIG


def test_compaction_configs_are_validated_like_kafka(broker):
    topic = unique_topic("compaction-configs")
    create_topic(broker, topic, 1, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.25"})
    assert describe(broker, topic)["min.cleanable.dirty.ratio"].value == "0.25"
    client = admin(broker)
    for name, value in (("min.cleanable.dirty.ratio", "1.5"), ("min.cleanable.dirty.ratio", "half"),
                        ("delete.retention.ms", "-1"), ("min.compaction.lag.ms", "-1"),
                        ("max.compaction.lag.ms", "0")):
        res = ConfigResource(TOPIC, topic, incremental_configs=[
            ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
        with pytest.raises(KafkaException) as info:
            wait_all(client.incremental_alter_configs([res]))
        assert kafka_error_code(info) == KafkaError.INVALID_CONFIG, (name, value)
    assert describe(broker, topic)["min.cleanable.dirty.ratio"].value == "0.25", "rejected changes leave it alone"


def test_incremental_alter_configs_rejects_invalid_value(broker):
    topic = unique_topic("incremental-bad-value")
    create_topic(broker, topic, 1)
    res = ConfigResource(TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "not-a-number", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as info:
        wait_all(admin(broker).incremental_alter_configs([res]))
    assert kafka_error_code(info) == KafkaError.INVALID_CONFIG
    assert describe(broker, topic)["retention.ms"].is_default


def test_alter_configs_replaces_the_whole_override_set(broker):
    topic = unique_topic("alter-legacy")
    create_topic(broker, topic, 1, {"retention.ms": "111111", "max.message.bytes": "3000000"})
    # AlterConfigs (non-incremental) sets exactly the given configs; the others revert to defaults.
    res = ConfigResource(TOPIC, topic, set_config={"retention.ms": "222222"})
    wait_all(admin(broker).alter_configs([res]))
    configs = describe(broker, topic)
    assert configs["retention.ms"].value == "222222"
    assert configs["max.message.bytes"].is_default, configs["max.message.bytes"].value


def test_describe_configs_of_unknown_topic_fails(broker):
    res = ConfigResource(TOPIC, unique_topic("nope"))
    with pytest.raises(KafkaException) as info:
        wait_all(admin(broker).describe_configs([res]))
    assert kafka_error_code(info) == KafkaError.UNKNOWN_TOPIC_OR_PART


# ---------------------------------------------------------------- delete


def test_delete_topic_removes_it_from_metadata(broker):
    topic = unique_topic("delete")
    create_topic(broker, topic, 3)
    produce(confluent_producer(broker, acks="all"), topic, make_records(100, "del", now_ms()))
    wait_all(admin(broker).delete_topics([topic], operation_timeout=30))
    assert topic not in admin(broker).list_topics(timeout=10).topics


def test_recreated_topic_starts_empty(broker):
    topic = unique_topic("recreate")
    create_topic(broker, topic, 2)
    produce(confluent_producer(broker, acks="all"), topic, make_records(300, "old", now_ms()))
    wait_all(admin(broker).delete_topics([topic], operation_timeout=30))
    create_topic(broker, topic, 2)
    assert watermarks(broker, topic, [0, 1]) == {0: (0, 0), 1: (0, 0)}
    fresh = produce(confluent_producer(broker, acks="all"), topic, make_records(10, "new", now_ms()), partition=1)
    assert [r.offset for r in fresh] == list(range(10))
    assert_matches(fresh, read_all(broker, topic, 2))


def test_delete_unknown_topic_fails_with_unknown_topic(broker):
    with pytest.raises(KafkaException) as info:
        wait_all(admin(broker).delete_topics([unique_topic("never-was")], operation_timeout=30))
    assert kafka_error_code(info) == KafkaError.UNKNOWN_TOPIC_OR_PART
