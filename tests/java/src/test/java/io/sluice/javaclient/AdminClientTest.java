package io.sluice.javaclient;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DeletedRecords;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.ListOffsetsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicCollection;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.GroupSubscribedToTopicException;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.OffsetMetadataTooLarge;
import org.apache.kafka.common.errors.OffsetOutOfRangeException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownMemberIdException;
import org.apache.kafka.common.errors.UnknownTopicIdException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junitpioneer.jupiter.ExpectedToFail;

/**
 * Goal: every AdminClient call a Kafka operator relies on answers as Apache Kafka does: topics,
 * partitions, configs, records, offsets, the cluster, log dirs and consumer groups.
 *
 * <p>Method: each test creates its own topic (and group), calls the admin API, and checks the
 * answer against the state the test made, then checks the effect with a producer or consumer
 * where one is visible (a grown partition takes writes, deleted records are no longer fetched,
 * altered group offsets are where a consumer starts). Refusals are checked by exception type.
 */
class AdminClientTest {

    @RegisterExtension
    static final SluiceBrokerExtension SLUICE = new SluiceBrokerExtension();

    private static Admin admin;

    @BeforeAll
    static void connect() {
        admin = Clients.admin(SLUICE.broker());
    }

    @AfterAll
    static void disconnect() {
        if (admin != null) {
            admin.close();
        }
    }

    // ------------------------------------------------------------------ topics

    @Test
    void createListDescribeAndDeleteTopics() {
        String plain = Clients.uniqueName("plain");
        String configured = Clients.uniqueName("configured");
        CreateTopicsResult created = admin.createTopics(List.of(
                new NewTopic(plain, 3, (short) 1),
                new NewTopic(configured, 1, (short) 1).configs(Map.of("retention.ms", "3600000"))));
        Clients.get(created.all());
        assertEquals(3, Clients.get(created.numPartitions(plain)));
        assertEquals(1, Clients.get(created.replicationFactor(plain)));

        Set<String> listed = Clients.get(admin.listTopics().names());
        assertTrue(listed.containsAll(Set.of(plain, configured)), "listTopics: " + listed);

        Map<String, TopicDescription> described =
                Clients.get(admin.describeTopics(List.of(plain, configured)).allTopicNames());
        TopicDescription plainDescription = described.get(plain);
        assertEquals(plain, plainDescription.name());
        assertFalse(plainDescription.isInternal());
        assertEquals(List.of(0, 1, 2),
                plainDescription.partitions().stream().map(TopicPartitionInfo::partition).toList());
        for (TopicPartitionInfo info : plainDescription.partitions()) {
            assertEquals(SluiceBroker.NODE_ID, info.leader().id(), "leader of " + info.partition());
            assertEquals(List.of(SluiceBroker.NODE_ID), info.replicas().stream().map(Node::id).toList());
            assertEquals(List.of(SluiceBroker.NODE_ID), info.isr().stream().map(Node::id).toList());
        }
        assertEquals(1, described.get(configured).partitions().size());

        Uuid topicId = plainDescription.topicId();
        assertNotEquals(Uuid.ZERO_UUID, topicId, "a topic id");
        assertEquals(topicId, Clients.get(created.topicId(plain)), "createTopics and describeTopics agree on the id");

        Throwable exists = failureOf(admin.createTopics(List.of(new NewTopic(plain, 1, (short) 1))).all());
        assertInstanceOf(TopicExistsException.class, exists);

        Clients.get(admin.deleteTopics(List.of(plain)).all());
        Waits.until("listTopics no longer shows " + plain, Duration.ofSeconds(30),
                () -> !Clients.get(admin.listTopics().names()).contains(plain));
        assertTrue(Clients.get(admin.listTopics().names()).contains(configured), "the other topic stays");
        Throwable unknown = failureOf(admin.describeTopics(List.of(plain)).allTopicNames());
        assertInstanceOf(UnknownTopicOrPartitionException.class, unknown);
    }

    /**
     * The Java admin asks for topics by id with Metadata v12 entries that carry the topic id and
     * an empty (not null) name; Kafka looks such entries up by id whenever the id is non-zero.
     */
    @Test
    void describeTopicsByTopicId() {
        String topic = Clients.uniqueName("by-id");
        Clients.createTopic(admin, topic, 2);
        Uuid topicId = Clients.get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic).topicId();

        TopicDescription byId = Clients.get(admin.describeTopics(TopicCollection.ofTopicIds(List.of(topicId)))
                .allTopicIds()).get(topicId);
        assertEquals(topic, byId.name());
        assertEquals(topicId, byId.topicId());
        assertEquals(2, byId.partitions().size());
    }

    @Test
    void deleteTopicsByTopicId() {
        String topic = Clients.uniqueName("delete-by-id");
        Clients.createTopic(admin, topic, 1);
        Uuid topicId = Clients.get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic).topicId();

        Clients.get(admin.deleteTopics(TopicCollection.ofTopicIds(List.of(topicId))).all());

        Waits.until("listTopics no longer shows " + topic, Duration.ofSeconds(30),
                () -> !Clients.get(admin.listTopics().names()).contains(topic));
        Throwable again = failureOf(admin.deleteTopics(TopicCollection.ofTopicIds(List.of(topicId))).all());
        assertInstanceOf(UnknownTopicIdException.class, again, "deleting an id that no longer exists");
    }

    @Test
    void createPartitionsGrowsATopicAndRefusesToShrinkIt() {
        String topic = Clients.uniqueName("grow");
        Clients.createTopic(admin, topic, 2);

        Clients.get(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all());

        TopicDescription grown = Clients.get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
        assertEquals(List.of(0, 1, 2, 3, 4), grown.partitions().stream().map(TopicPartitionInfo::partition).toList());
        try (KafkaProducer<String, String> producer = Clients.producer(SLUICE.broker())) {
            long offset = Clients.sendAll(producer, List.of(new ProducerRecord<>(topic, 4, "k", "on a new partition")))
                    .get(0).offset();
            assertEquals(0, offset, "first offset of the new partition 4");
        }

        Throwable shrink = failureOf(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all());
        assertInstanceOf(InvalidPartitionsException.class, shrink);
    }

    @Test
    void producerMetadataAutoCreatesTopicsButAConsumerThatDisallowsItDoesNot() {
        String produced = Clients.uniqueName("auto-created");
        try (KafkaProducer<String, String> producer = Clients.producer(SLUICE.broker())) {
            assertEquals(0, Clients.sendAll(producer, List.of(new ProducerRecord<>(produced, "k", "v"))).get(0).offset());
        }
        TopicDescription created = Clients.get(admin.describeTopics(List.of(produced)).allTopicNames()).get(produced);
        assertEquals(1, created.partitions().size(), "num.partitions of an auto-created topic");

        String looked = Clients.uniqueName("not-created");
        Map<String, Object> noAutoCreate = Map.of(ConsumerConfig.ALLOW_AUTO_CREATE_TOPICS_CONFIG, false);
        try (KafkaConsumer<String, String> consumer = Clients.consumer(SLUICE.broker(), noAutoCreate)) {
            assertEquals(List.of(), consumer.partitionsFor(looked, Clients.CALL_TIMEOUT), "partitions of " + looked);
        }
        assertFalse(Clients.get(admin.listTopics().names()).contains(looked),
                "a metadata request with allow_auto_topic_creation=false created " + looked);
    }

    // ------------------------------------------------------------------ configs

    @Test
    void describeAndIncrementallyAlterTopicConfigs() {
        String topic = Clients.uniqueName("configs");
        Clients.createTopic(admin, topic, 1, Map.of("retention.ms", "3600000"));
        ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);

        ConfigEntry retention = topicConfig(resource).get("retention.ms");
        assertEquals("3600000", retention.value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, retention.source());
        assertEquals("delete", topicConfig(resource).get("cleanup.policy").value());

        alter(resource,
                new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("max.message.bytes", "2000000"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.APPEND));
        Config altered = topicConfig(resource);
        assertEquals("7200000", altered.get("retention.ms").value());
        assertEquals("2000000", altered.get("max.message.bytes").value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, altered.get("max.message.bytes").source());
        assertEquals(Set.of("delete", "compact"), Set.of(altered.get("cleanup.policy").value().split(",")));

        alter(resource,
                new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE),
                new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.SUBTRACT));
        Config reverted = topicConfig(resource);
        assertEquals("604800000", reverted.get("retention.ms").value(), "Kafka's default retention.ms");
        assertTrue(reverted.get("retention.ms").isDefault(), "retention.ms back to its default");
        assertEquals("delete", reverted.get("cleanup.policy").value());

        Throwable unknownName = failureOf(admin.incrementalAlterConfigs(Map.of(resource, List.of(
                new AlterConfigOp(new ConfigEntry("no.such.config", "1"), AlterConfigOp.OpType.SET)))).all());
        assertInstanceOf(InvalidConfigurationException.class, unknownName);
        Throwable badValue = failureOf(admin.incrementalAlterConfigs(Map.of(resource, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "not-a-number"), AlterConfigOp.OpType.SET)))).all());
        assertInstanceOf(InvalidConfigurationException.class, badValue);
        assertEquals("604800000", topicConfig(resource).get("retention.ms").value(), "refused changes leave no trace");
    }

    @Test
    void describeBrokerConfigs() {
        ConfigResource brokerResource = new ConfigResource(ConfigResource.Type.BROKER, "" + SluiceBroker.NODE_ID);
        Config config = Clients.get(admin.describeConfigs(List.of(brokerResource)).all()).get(brokerResource);
        assertNotNull(config.get("num.partitions"), "num.partitions among " + names(config));
        assertEquals("1", config.get("num.partitions").value());
    }

    // ------------------------------------------------------------------ records and offsets

    @Test
    void deleteRecordsMovesTheLogStartOffset() {
        String topic = Clients.uniqueName("trim");
        Clients.createTopic(admin, topic, 1);
        TopicPartition partition = new TopicPartition(topic, 0);
        produceValues(topic, 0, 10, "record-");

        DeletedRecords deleted = Clients.get(
                admin.deleteRecords(Map.of(partition, RecordsToDelete.beforeOffset(4))).lowWatermarks().get(partition));
        assertEquals(4, deleted.lowWatermark());
        assertEquals(4, listOffset(partition, OffsetSpec.earliest()).offset());
        assertEquals(10, listOffset(partition, OffsetSpec.latest()).offset());

        try (KafkaConsumer<String, String> consumer = Clients.consumer(SLUICE.broker())) {
            consumer.assign(List.of(partition));
            consumer.seekToBeginning(List.of(partition));
            List<ConsumerRecord<String, String>> records = Clients.consumeExactly(consumer, 6);
            assertEquals(4, records.get(0).offset());
            assertEquals("record-4", records.get(0).value());
        }

        Throwable pastEnd = failureOf(
                admin.deleteRecords(Map.of(partition, RecordsToDelete.beforeOffset(11))).lowWatermarks().get(partition));
        assertInstanceOf(OffsetOutOfRangeException.class, pastEnd);
        assertEquals(4, listOffset(partition, OffsetSpec.earliest()).offset(), "a refused delete changes nothing");

        DeletedRecords all = Clients.get(
                admin.deleteRecords(Map.of(partition, RecordsToDelete.beforeOffset(-1))).lowWatermarks().get(partition));
        assertEquals(10, all.lowWatermark(), "offset -1 deletes up to the high watermark");
        assertEquals(10, listOffset(partition, OffsetSpec.earliest()).offset());
    }

    @Test
    void listOffsetsEarliestLatestAndByTimestamp() {
        TopicPartition partition = new TopicPartition(Clients.uniqueName("list-offsets"), 0);
        long base = writeOutOfOrderTimestamps(partition);

        assertEquals(0, listOffset(partition, OffsetSpec.earliest()).offset());
        assertEquals(9, listOffset(partition, OffsetSpec.latest()).offset());
        ListOffsetsOptions readCommitted = new ListOffsetsOptions(IsolationLevel.READ_COMMITTED);
        assertEquals(9, Clients.get(admin.listOffsets(Map.of(partition, OffsetSpec.latest()), readCommitted)
                .partitionResult(partition)).offset(), "latest stable offset without transactions");

        // By timestamp: the first record, in offset order, whose timestamp is >= the target.
        ListOffsetsResultInfo at450 = listOffset(partition, OffsetSpec.forTimestamp(base + 450));
        assertEquals(1, at450.offset());
        assertEquals(base + 500, at450.timestamp());
        ListOffsetsResultInfo at800 = listOffset(partition, OffsetSpec.forTimestamp(base + 800));
        assertEquals(3, at800.offset());
        assertEquals(base + 900, at800.timestamp());
        ListOffsetsResultInfo pastMax = listOffset(partition, OffsetSpec.forTimestamp(base + 901));
        assertEquals(-1, pastMax.offset(), "no record at or after the target");
    }

    /**
     * Kafka (3.8 and later) answers MAX_TIMESTAMP with the offset of the record that has the
     * largest timestamp ({@code RecordBatch.offsetOfMaxTimestamp()}), not the last offset of its
     * batch.
     */
    @Test
    void listOffsetsMaxTimestampNamesTheRecordInsideItsBatch() {
        TopicPartition partition = new TopicPartition(Clients.uniqueName("max-timestamp"), 0);
        long base = writeOutOfOrderTimestamps(partition);

        ListOffsetsResultInfo max = listOffset(partition, OffsetSpec.maxTimestamp());
        assertEquals(base + 900, max.timestamp());
        assertEquals(3, max.offset(), "offset of the record with the largest timestamp");
    }

    // ------------------------------------------------------------------ cluster and log dirs

    @Test
    void describeClusterNamesTheOneNode() {
        Collection<Node> nodes = Clients.get(admin.describeCluster().nodes());
        assertEquals(1, nodes.size(), "nodes: " + nodes);
        Node node = nodes.iterator().next();
        assertEquals(SluiceBroker.NODE_ID, node.id());
        assertEquals(SluiceBroker.HOST, node.host());
        assertEquals(SLUICE.broker().port(), node.port());
        assertEquals(SluiceBroker.NODE_ID, Clients.get(admin.describeCluster().controller()).id());
        String clusterId = Clients.get(admin.describeCluster().clusterId());
        assertNotNull(clusterId);
        assertFalse(clusterId.isBlank(), "a cluster id");
    }

    @Test
    void describeLogDirsListsPartitionsWithTheirSizes() {
        String topic = Clients.uniqueName("log-dirs");
        Clients.createTopic(admin, topic, 2);
        produceValues(topic, 0, 50, "payload-");

        Map<Integer, Map<String, LogDirDescription>> byBroker =
                Clients.get(admin.describeLogDirs(List.of(SluiceBroker.NODE_ID)).allDescriptions());
        Map<String, LogDirDescription> dirs = byBroker.get(SluiceBroker.NODE_ID);
        assertNotNull(dirs, "log dirs of node 1: " + byBroker);
        assertFalse(dirs.isEmpty(), "at least one log dir");

        TopicPartition written = new TopicPartition(topic, 0);
        TopicPartition empty = new TopicPartition(topic, 1);
        String dirOfPartition = null;
        for (Map.Entry<String, LogDirDescription> dir : dirs.entrySet()) {
            assertEquals(null, dir.getValue().error(), "error of log dir " + dir.getKey());
            if (dir.getValue().replicaInfos().containsKey(written)) {
                dirOfPartition = dir.getKey();
                ReplicaInfo info = dir.getValue().replicaInfos().get(written);
                assertTrue(info.size() > 50 * "payload-".length(), "size of " + written + ": " + info.size());
                assertFalse(info.isFuture());
                assertTrue(dir.getValue().replicaInfos().containsKey(empty), "the empty partition is listed too");
            }
        }
        assertNotNull(dirOfPartition, written + " in one of " + dirs.keySet());
        Path reported = Paths.get(dirOfPartition);
        assertTrue(reported.isAbsolute(), "an absolute log dir path: " + reported);
        assertTrue(reported.normalize().startsWith(SLUICE.broker().dataDir().normalize()),
                "log dir " + reported + " inside the data dir " + SLUICE.broker().dataDir());
    }

    // ------------------------------------------------------------------ consumer groups

    @Test
    void listDescribeAndDeleteConsumerGroups() {
        String topic = Clients.uniqueName("group-admin");
        String group = Clients.uniqueName("group");
        Clients.createTopic(admin, topic, 2);
        produceValues(topic, 0, 3, "a-");
        Set<TopicPartition> partitions = partitionsOf(topic, 2);

        try (KafkaConsumer<String, String> member = groupConsumer(group)) {
            member.subscribe(List.of(topic));
            awaitAssignment(member, partitions);
            member.commitSync(Map.of(new TopicPartition(topic, 0), new OffsetAndMetadata(2, "checkpoint")));

            GroupListing listing = listedGroup(group);
            assertNotNull(listing, group + " in listGroups");
            assertEquals(Optional.of(GroupType.CLASSIC), listing.type());
            assertEquals(Optional.of(GroupState.STABLE), listing.groupState());
            assertEquals("consumer", listing.protocol());
            assertTrue(deprecatedListConsumerGroups().contains(group), "listConsumerGroups has " + group);

            ConsumerGroupDescription active = describeGroup(group);
            assertEquals(GroupState.STABLE, active.groupState());
            assertEquals(GroupType.CLASSIC, active.type());
            assertEquals("range", active.partitionAssignor());
            assertEquals(SluiceBroker.NODE_ID, active.coordinator().id());
            assertEquals(1, active.members().size());
            MemberDescription description = active.members().iterator().next();
            assertEquals(partitions, description.assignment().topicPartitions());
            assertFalse(description.consumerId().isBlank(), "a member id");

            Throwable notEmpty = failureOf(admin.deleteConsumerGroups(List.of(group)).all());
            assertInstanceOf(GroupNotEmptyException.class, notEmpty);
        }

        Waits.until(group + " is empty after its only member left", Duration.ofSeconds(30),
                () -> describeGroup(group).groupState() == GroupState.EMPTY,
                () -> describeGroup(group).toString());
        assertTrue(describeGroup(group).members().isEmpty());
        assertEquals(Map.of(new TopicPartition(topic, 0), new OffsetAndMetadata(2, "checkpoint")),
                committedOffsets(group));

        Clients.get(admin.deleteConsumerGroups(List.of(group)).all());
        assertEquals(null, listedGroup(group), "a deleted group is not listed");
        assertEquals(Map.of(), committedOffsets(group), "a deleted group has no offsets");
        Throwable gone = failureOf(admin.deleteConsumerGroups(List.of(group)).all());
        assertInstanceOf(GroupIdNotFoundException.class, gone);
        assertDescribedAsGone(group);
    }

    @Test
    void alterAndDeleteConsumerGroupOffsets() {
        String topic = Clients.uniqueName("group-offsets");
        String group = Clients.uniqueName("group");
        Clients.createTopic(admin, topic, 2);
        produceValues(topic, 0, 8, "p0-");
        produceValues(topic, 1, 8, "p1-");
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);

        Map<TopicPartition, OffsetAndMetadata> altered =
                Map.of(p0, new OffsetAndMetadata(3, "set by admin"), p1, new OffsetAndMetadata(5));
        Clients.get(admin.alterConsumerGroupOffsets(group, altered).all());
        assertEquals(altered, committedOffsets(group));

        // Kafka's offset.metadata.max.bytes defaults to 4096.
        Throwable tooLarge = failureOf(admin.alterConsumerGroupOffsets(group,
                Map.of(p0, new OffsetAndMetadata(4, "m".repeat(5000)))).all());
        assertInstanceOf(OffsetMetadataTooLarge.class, tooLarge, "metadata above offset.metadata.max.bytes");
        assertEquals(altered, committedOffsets(group), "a refused commit changes nothing");

        try (KafkaConsumer<String, String> member = groupConsumer(group)) {
            member.subscribe(List.of(topic));
            List<ConsumerRecord<String, String>> records =
                    Clients.pollUntilCount(member, (8 - 3) + (8 - 5), Clients.CONSUME_TIMEOUT);
            assertEquals(8, records.size(), "records after the altered offsets");
            assertEquals(3, records.stream().filter(r -> r.partition() == 0).findFirst().orElseThrow().offset());
            assertEquals(5, records.stream().filter(r -> r.partition() == 1).findFirst().orElseThrow().offset());

            Throwable active = failureOf(admin.alterConsumerGroupOffsets(group,
                    Map.of(p0, new OffsetAndMetadata(0))).all());
            assertInstanceOf(UnknownMemberIdException.class, active, "altering offsets of a group with members");
            Throwable subscribed = failureOf(admin.deleteConsumerGroupOffsets(group, Set.of(p0)).all());
            assertInstanceOf(GroupSubscribedToTopicException.class, subscribed,
                    "deleting offsets of a topic the group consumes");
        }

        Waits.until(group + " is empty", Duration.ofSeconds(30),
                () -> describeGroup(group).groupState() == GroupState.EMPTY);
        Clients.get(admin.deleteConsumerGroupOffsets(group, Set.of(p0)).all());
        assertEquals(Map.of(p1, new OffsetAndMetadata(5)), committedOffsets(group));
    }

    // ------------------------------------------------------------------ helpers

    private static void produceValues(String topic, int partition, int count, String prefix) {
        List<ProducerRecord<String, String>> records = IntStream.range(0, count)
                .mapToObj(i -> new ProducerRecord<String, String>(topic, partition, "key-" + i, prefix + i))
                .toList();
        try (KafkaProducer<String, String> producer = Clients.producer(SLUICE.broker())) {
            Clients.sendAll(producer, records);
        }
    }

    /**
     * Creates the partition's topic and writes two batches with timestamps out of order: the
     * largest (base + 900) is record 3 of the first batch of six, and the second batch of three
     * has only smaller ones. Returns the base timestamp.
     */
    private static long writeOutOfOrderTimestamps(TopicPartition partition) {
        Clients.createTopic(admin, partition.topic(), 1);
        long base = System.currentTimeMillis() - 3_600_000L;
        long[] firstBatch = {base, base + 500, base + 200, base + 900, base + 300, base + 600};
        long[] secondBatch = {base + 100, base + 400, base + 700};
        Map<String, Object> oneBatch = Map.of(ProducerConfig.LINGER_MS_CONFIG, 1000);
        try (KafkaProducer<String, String> producer = Clients.producer(SLUICE.broker(), oneBatch)) {
            for (long[] batch : new long[][] {firstBatch, secondBatch}) {
                List<ProducerRecord<String, String>> records = new ArrayList<>();
                for (long timestamp : batch) {
                    records.add(new ProducerRecord<>(partition.topic(), 0, timestamp, null, "at-" + (timestamp - base)));
                }
                Clients.sendAll(producer, records);
            }
        }
        return base;
    }

    private static ListOffsetsResultInfo listOffset(TopicPartition partition, OffsetSpec spec) {
        return Clients.get(admin.listOffsets(Map.of(partition, spec)).partitionResult(partition));
    }

    private static Config topicConfig(ConfigResource resource) {
        return Clients.get(admin.describeConfigs(List.of(resource)).all()).get(resource);
    }

    private static void alter(ConfigResource resource, AlterConfigOp... ops) {
        Clients.get(admin.incrementalAlterConfigs(Map.of(resource, List.of(ops))).all());
    }

    private static String names(Config config) {
        return config.entries().stream().map(ConfigEntry::name).sorted().collect(Collectors.joining(","));
    }

    private static KafkaConsumer<String, String> groupConsumer(String group) {
        return Clients.consumer(SLUICE.broker(), Map.of(
                ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic"));
    }

    private static Set<TopicPartition> partitionsOf(String topic, int count) {
        return IntStream.range(0, count).mapToObj(p -> new TopicPartition(topic, p)).collect(Collectors.toSet());
    }

    /** Polls the consumer (bounded) until its assignment is exactly {@code expected}. */
    private static void awaitAssignment(KafkaConsumer<String, String> consumer, Set<TopicPartition> expected) {
        Waits.until("assignment " + expected, Duration.ofSeconds(60), () -> {
            consumer.poll(Duration.ofMillis(100));
            return consumer.assignment().equals(expected);
        }, () -> "assignment " + consumer.assignment());
    }

    private static GroupListing listedGroup(String group) {
        return Clients.get(admin.listGroups(ListGroupsOptions.forConsumerGroups()).all()).stream()
                .filter(listing -> listing.groupId().equals(group)).findFirst().orElse(null);
    }

    /** listConsumerGroups is deprecated for removal in favour of listGroups, but still served. */
    @SuppressWarnings({"deprecation", "removal"})
    private static Set<String> deprecatedListConsumerGroups() {
        return Clients.get(admin.listConsumerGroups().all()).stream()
                .map(ConsumerGroupListing::groupId).collect(Collectors.toSet());
    }

    private static ConsumerGroupDescription describeGroup(String group) {
        return Clients.get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
    }

    /**
     * DescribeGroups v6 (KIP-1043) answers GROUP_ID_NOT_FOUND for a group that does not exist;
     * earlier versions answer it as a group in state Dead. Either is Kafka's answer.
     */
    private static void assertDescribedAsGone(String group) {
        KafkaFuture<ConsumerGroupDescription> described =
                admin.describeConsumerGroups(List.of(group)).describedGroups().get(group);
        try {
            ConsumerGroupDescription description = described.get(Clients.CALL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            assertEquals(GroupState.DEAD, description.groupState(), "state of a deleted group");
            assertTrue(description.members().isEmpty());
        } catch (ExecutionException e) {
            assertInstanceOf(GroupIdNotFoundException.class, e.getCause(), "describing a deleted group");
        } catch (Exception e) {
            throw new AssertionError("describing a deleted group", e);
        }
    }

    private static Map<TopicPartition, OffsetAndMetadata> committedOffsets(String group) {
        return Clients.get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
    }

    /** The exception a future failed with, unwrapped; fails the test if it succeeded or hung. */
    private static Throwable failureOf(KafkaFuture<?> future) {
        ExecutionException failure = assertThrows(ExecutionException.class,
                () -> future.get(Clients.CALL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS));
        return failure.getCause();
    }
}
