package io.sluice.javaclient;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.InvalidReplicationFactorException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Utils;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.LifecycleMethodExecutionExceptionHandler;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.extension.TestExecutionExceptionHandler;
import org.opentest4j.TestAbortedException;

/**
 * Goal: the Java client (admin, idempotent producer, classic consumer group) uses three Sluice
 * processes as one Kafka cluster: every node describes the same three brokers, a topic's partition
 * leaders are spread over them, a client bootstrapped from one node alone reaches the leaders on
 * the others, and each consumer group is coordinated by the broker that leads the group's
 * {@code __consumer_offsets} partition, as on Kafka.
 *
 * <p>Method: three {@code sluice} processes (nodes 1, 2 and 3, each a broker and a controller-quorum
 * voter, one unpinned shard, a 3 s broker session) are launched together on free loopback ports with
 * their own data directories, since a node serves clients only once the quorum has elected a
 * controller; then the test waits (bounded) until an Admin bootstrapped to each node lists nodes 1,
 * 2 and 3 with their ports. The cluster is shared by the tests of the class; each test uses its own
 * topic and groups. Every process's output is appended to {@code target/broker-logs/ClusterTest-node-
 * <id>-<port>.log}; a failed test carries the tail of each log. At the end every process is stopped
 * (SIGTERM, then SIGKILL if needed; a JVM shutdown hook kills any left) and the data is deleted.
 */
class ClusterTest {

    private static final List<Integer> NODE_IDS = List.of(1, 2, 3);
    private static final int PARTITIONS = 6;
    private static final int RECORDS = 600;
    private static final int FEW_RECORDS = 30;

    @RegisterExtension
    static final ClusterExtension CLUSTER = new ClusterExtension();

    /** An admin bootstrapped from every node. */
    private static Admin admin;

    /** Node id -> an admin bootstrapped from that node alone. */
    private static final Map<Integer, Admin> NODE_ADMINS = new TreeMap<>();

    @BeforeAll
    static void startCluster() {
        CLUSTER.start();
        admin = admin(CLUSTER.bootstrapServers());
        for (int nodeId : NODE_IDS) {
            NODE_ADMINS.put(nodeId, admin(CLUSTER.bootstrapServers(nodeId)));
        }
    }

    @AfterAll
    static void disconnect() {
        if (admin != null) {
            admin.close(Clients.CALL_TIMEOUT);
        }
        NODE_ADMINS.values().forEach(nodeAdmin -> nodeAdmin.close(Clients.CALL_TIMEOUT));
        NODE_ADMINS.clear();
    }

    /**
     * Every node describes nodes 1, 2 and 3 on their own ports, one cluster id and a controller among
     * them; a 6-partition topic created through the admin has one leader per partition, two on each
     * node, and each node's metadata names the same leaders; a replication factor above the number
     * of brokers is refused.
     */
    @Test
    void threeNodesFormOneClusterAndShareTheLeadersOfATopic() {
        Map<Integer, Integer> expectedPorts = CLUSTER.nodePorts();
        Set<String> clusterIds = new HashSet<>();
        for (int nodeId : NODE_IDS) {
            DescribeClusterResult cluster = NODE_ADMINS.get(nodeId).describeCluster();
            Collection<Node> nodes = Clients.get(cluster.nodes());
            assertEquals(expectedPorts, ports(nodes), "nodes described by node " + nodeId + ": " + nodes);
            for (Node node : nodes) {
                assertEquals(SluiceBroker.HOST, node.host(), "host of " + node + " described by node " + nodeId);
            }
            Node controller = Clients.get(cluster.controller());
            assertTrue(NODE_IDS.contains(controller.id()),
                    "controller described by node " + nodeId + " is one of the nodes: " + controller);
            String clusterId = Clients.get(cluster.clusterId());
            assertNotNull(clusterId, "cluster id described by node " + nodeId);
            clusterIds.add(clusterId);
        }
        assertEquals(1, clusterIds.size(), "one cluster id on every node: " + clusterIds);

        String topic = Clients.uniqueName("spread");
        Map<Integer, Integer> leaders = createTopic(topic, PARTITIONS);
        Map<Integer, Long> partitionsLed = leaders.values().stream()
                .collect(Collectors.groupingBy(id -> id, TreeMap::new, Collectors.counting()));
        assertEquals(Map.of(1, 2L, 2, 2L, 3, 2L), partitionsLed,
                "partitions led by each node (partition -> leader: " + leaders + ")");
        TopicDescription description = describeTopic(admin, topic);
        for (TopicPartitionInfo partition : description.partitions()) {
            assertEquals(List.of(partition.leader()), partition.replicas(), "replicas of partition " + partition);
            assertEquals(List.of(partition.leader()), partition.isr(), "in-sync replicas of partition " + partition);
        }

        String tooMany = Clients.uniqueName("too-many-replicas");
        NewTopic fourReplicas = new NewTopic(tooMany, 1, (short) 4);
        assertThrows(InvalidReplicationFactorException.class,
                () -> Clients.get(admin.createTopics(List.of(fourReplicas)).all()),
                "replication factor 4 on three brokers");
        assertFalse(Clients.get(admin.listTopics().names()).contains(tooMany), "the refused topic does not exist");
    }

    /**
     * A producer with the Java defaults (idempotence, acks=all) bootstrapped from node 1 alone writes
     * 600 keyed records to partitions led by all three nodes, each acknowledged with its partition and
     * the next offset there; a classic-protocol group member bootstrapped from node 2 alone reads
     * exactly those records, partition by partition with dense offsets from 0, and commits; the admin
     * then names the group's coordinator among the nodes and committed offsets that add up to 600.
     */
    @Test
    void producerAndGroupConsumerBootstrappedFromDifferentNodesSeeOneCluster() {
        String topic = Clients.uniqueName("one-cluster");
        Map<Integer, Integer> leaders = createTopic(topic, PARTITIONS);
        List<ProducerRecord<String, String>> sent = new ArrayList<>(RECORDS);
        for (int i = 0; i < RECORDS; i++) {
            sent.add(new ProducerRecord<>(topic, "key-" + i, "value-" + i));
        }

        List<RecordMetadata> acks;
        try (KafkaProducer<String, String> producer = producer(CLUSTER.bootstrapServers(1))) {
            acks = Clients.sendAll(producer, sent);
        }
        Map<Integer, List<ProducerRecord<String, String>>> sentByPartition = new TreeMap<>();
        for (int i = 0; i < RECORDS; i++) {
            RecordMetadata ack = acks.get(i);
            assertTrue(ack.hasOffset(), "ack " + i + " has an offset: " + ack);
            assertTrue(ack.partition() >= 0 && ack.partition() < PARTITIONS, "partition of ack " + i + ": " + ack);
            List<ProducerRecord<String, String>> inPartition =
                    sentByPartition.computeIfAbsent(ack.partition(), p -> new ArrayList<>());
            assertEquals(inPartition.size(), ack.offset(), "offset of ack " + i + " (key-" + i + ")");
            inPartition.add(sent.get(i));
        }
        assertEquals(PARTITIONS, sentByPartition.size(), "the keys spread over every partition");
        Set<Integer> leadersWritten = sentByPartition.keySet().stream()
                .map(leaders::get).collect(Collectors.toCollection(TreeSet::new));
        assertEquals(Set.copyOf(NODE_IDS), leadersWritten, "leaders of the partitions written to");

        String group = Clients.uniqueName("one-cluster-group");
        List<ConsumerRecord<String, String>> received =
                consumeAsGroup(CLUSTER.bootstrapServers(2), topic, group, RECORDS);
        Map<Integer, List<ConsumerRecord<String, String>>> receivedByPartition = new TreeMap<>();
        for (ConsumerRecord<String, String> record : received) {
            receivedByPartition.computeIfAbsent(record.partition(), p -> new ArrayList<>()).add(record);
        }
        assertEquals(sentByPartition.keySet(), receivedByPartition.keySet(), "partitions read");
        for (Map.Entry<Integer, List<ProducerRecord<String, String>>> entry : sentByPartition.entrySet()) {
            int partition = entry.getKey();
            List<ProducerRecord<String, String>> expected = entry.getValue();
            List<ConsumerRecord<String, String>> actual = receivedByPartition.get(partition);
            assertEquals(expected.size(), actual.size(), "records read from partition " + partition);
            for (int offset = 0; offset < expected.size(); offset++) {
                String where = topic + "-" + partition + "@" + offset;
                assertEquals(offset, actual.get(offset).offset(), "offset of " + where);
                assertEquals(expected.get(offset).key(), actual.get(offset).key(), "key of " + where);
                assertEquals(expected.get(offset).value(), actual.get(offset).value(), "value of " + where);
            }
        }

        ConsumerGroupDescription description = describeGroup(admin, group);
        assertTrue(NODE_IDS.contains(description.coordinator().id()),
                "coordinator of " + group + " is one of the nodes: " + description.coordinator());
        assertEquals(GroupType.CLASSIC, description.type(), "type of " + group);
        Map<TopicPartition, OffsetAndMetadata> committed =
                Clients.get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        for (Map.Entry<Integer, List<ProducerRecord<String, String>>> entry : sentByPartition.entrySet()) {
            OffsetAndMetadata offset = committed.get(new TopicPartition(topic, entry.getKey()));
            assertNotNull(offset, "committed offset of partition " + entry.getKey() + ": " + committed);
            assertEquals(entry.getValue().size(), offset.offset(), "committed offset of partition " + entry.getKey());
        }
        assertEquals(RECORDS, committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum(),
                "committed offsets of " + group + ": " + committed);
    }

    /**
     * Kafka keeps group g on {@code __consumer_offsets} partition {@code Utils.abs(g.hashCode()) %
     * partitions}, coordinated by that partition's leader. Once a first group has made the offsets
     * topic exist, group ids are picked whose offsets partitions are led by node 1, node 2 and node 3;
     * a member of each, bootstrapped from another node, reads the records and commits, and the admin
     * names the expected node as the group's coordinator, with the committed offsets.
     */
    @Test
    void eachGroupIsCoordinatedByTheLeaderOfItsOffsetsPartition() {
        String topic = Clients.uniqueName("coordinated");
        createTopic(topic, 3);
        List<ProducerRecord<String, String>> sent = new ArrayList<>(FEW_RECORDS);
        for (int i = 0; i < FEW_RECORDS; i++) {
            sent.add(new ProducerRecord<>(topic, i % 3, "key-" + i, "value-" + i));
        }
        try (KafkaProducer<String, String> producer = producer(CLUSTER.bootstrapServers())) {
            Clients.sendAll(producer, sent);
        }
        Set<String> sentValues = sent.stream().map(ProducerRecord::value).collect(Collectors.toSet());

        String firstGroup = Clients.uniqueName("first-group");
        assertEquals(sentValues, values(consumeAsGroup(CLUSTER.bootstrapServers(), topic, firstGroup, FEW_RECORDS)),
                "records read by " + firstGroup);
        Map<Integer, Integer> offsetsLeaders = offsetsTopicLeaders();

        Map<Integer, String> groupByCoordinator = new TreeMap<>();
        String prefix = Clients.uniqueName("coordinated-by");
        for (int n = 0; n < 10_000 && groupByCoordinator.size() < NODE_IDS.size(); n++) {
            String group = prefix + "-" + n;
            int leader = offsetsLeaders.get(offsetsPartition(group, offsetsLeaders.size()));
            if (NODE_IDS.contains(leader)) {
                groupByCoordinator.putIfAbsent(leader, group);
            }
        }
        assertEquals(Set.copyOf(NODE_IDS), groupByCoordinator.keySet(),
                "group ids found for each node; __consumer_offsets partition -> leader: " + offsetsLeaders);

        for (Map.Entry<Integer, String> entry : groupByCoordinator.entrySet()) {
            int coordinator = entry.getKey();
            String group = entry.getValue();
            int bootstrapNode = coordinator % NODE_IDS.size() + 1;
            assertEquals(sentValues, values(consumeAsGroup(CLUSTER.bootstrapServers(bootstrapNode), topic, group,
                    FEW_RECORDS)), "records read by " + group);
            ConsumerGroupDescription description = describeGroup(admin, group);
            assertEquals(coordinator, description.coordinator().id(),
                    "coordinator of " + group + " (__consumer_offsets partition "
                            + offsetsPartition(group, offsetsLeaders.size()) + ")");
            Map<TopicPartition, OffsetAndMetadata> committed =
                    Clients.get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            assertEquals(FEW_RECORDS, committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum(),
                    "committed offsets of " + group + ": " + committed);
        }
    }

    /**
     * The Java client's idempotent acks=all producer against a topic of 3 partitions with
     * replication factor 3 and {@code min.insync.replicas=2}, while the leader of a partition is
     * killed with SIGKILL and restarted, three times (each once every ISR is whole again): every
     * acknowledged record is then at its acknowledged offset with its value, offsets are dense and
     * no value was written twice.
     */
    @Test
    void anIdempotentProducerLosesNothingWhileLeadersAreKilled() throws Exception {
        String topic = Clients.uniqueName("java-chaos");
        int partitions = 3;
        admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 3)
                .configs(Map.of("min.insync.replicas", "2")))).all().get(30, TimeUnit.SECONDS);
        Waits.until("the topic is in sync", Waits.DEFAULT_TIMEOUT, () -> inSync(topic, partitions));
        Map<String, Object> config = new HashMap<>();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, CLUSTER.bootstrapServers());
        config.put(ProducerConfig.CLIENT_ID_CONFIG, Clients.uniqueName("chaos-producer"));
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        config.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        config.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 120_000);
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        // Partition -> offset -> value of every acknowledged record.
        Map<Integer, Map<Long, String>> acked = new ConcurrentHashMap<>();
        AtomicInteger ackedCount = new AtomicInteger();
        AtomicBoolean stop = new AtomicBoolean();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(config)) {
            Thread load = new Thread(() -> {
                // About 1,000 records a second, at most 300,000 in all.
                for (int seq = 0; seq < 300_000 && !stop.get(); seq++) {
                    String value = "j-" + seq;
                    producer.send(new ProducerRecord<>(topic, seq % partitions, null, value), (metadata, error) -> {
                        if (error == null) {
                            acked.computeIfAbsent(metadata.partition(), p -> new ConcurrentSkipListMap<>())
                                    .put(metadata.offset(), value);
                            ackedCount.incrementAndGet();
                        }
                    });
                    if (seq % 10 == 9) {
                        Waits.sleep(Duration.ofMillis(10));
                    }
                }
            }, "java-chaos-load");
            load.start();
            for (int kill = 0; kill < 3; kill++) {
                int before = ackedCount.get();
                Waits.until("acknowledgements before kill " + (kill + 1), Waits.DEFAULT_TIMEOUT,
                        () -> ackedCount.get() > before + 1_000);
                int victim = describeTopic(admin, topic).partitions().get(kill % partitions).leader().id();
                CLUSTER.kill(victim);
                Waits.sleep(Duration.ofSeconds(1));
                CLUSTER.relaunch(victim);
                Waits.until("every ISR whole after the restart of node " + victim, Waits.DEFAULT_TIMEOUT,
                        () -> inSync(topic, partitions));
            }
            int before = ackedCount.get();
            Waits.until("acknowledgements after the last restart", Waits.DEFAULT_TIMEOUT,
                    () -> ackedCount.get() > before + 1_000);
            stop.set(true);
            load.join(30_000);
            producer.flush();
        }
        Map<TopicPartition, List<String>> read = readAll(topic, partitions);
        Set<String> seen = new HashSet<>();
        for (Map.Entry<TopicPartition, List<String>> entry : read.entrySet()) {
            for (String value : entry.getValue()) {
                assertTrue(seen.add(value), value + " appears twice in " + topic);
            }
        }
        int checked = 0;
        for (Map.Entry<Integer, Map<Long, String>> partition : acked.entrySet()) {
            List<String> log = read.get(new TopicPartition(topic, partition.getKey()));
            for (Map.Entry<Long, String> record : partition.getValue().entrySet()) {
                long offset = record.getKey();
                assertTrue(offset < log.size(), "acknowledged offset " + partition.getKey() + "/" + offset
                        + " is past the end of the log (" + log.size() + ")");
                assertEquals(record.getValue(), log.get((int) offset),
                        "the record at " + partition.getKey() + "/" + offset);
                checked++;
            }
        }
        assertTrue(checked > 3_000, "only " + checked + " records were acknowledged");
    }

    /** Every partition of {@code topic} has a leader and all three replicas in its ISR. */
    private static boolean inSync(String topic, int partitions) {
        try {
            List<TopicPartitionInfo> found = describeTopic(admin, topic).partitions();
            return found.size() == partitions && found.stream()
                    .allMatch(info -> info.leader() != null && info.isr().size() == info.replicas().size());
        } catch (RuntimeException e) {
            return false;
        }
    }

    /**
     * Every record of {@code topic} from offset 0 to the end, per partition, in offset order; fails
     * when an offset is missing (offsets must be dense).
     */
    private static Map<TopicPartition, List<String>> readAll(String topic, int partitions) {
        Map<String, Object> config = new HashMap<>();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, CLUSTER.bootstrapServers());
        config.put(ConsumerConfig.CLIENT_ID_CONFIG, Clients.uniqueName("chaos-reader"));
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        Map<TopicPartition, List<String>> read = new TreeMap<>(Comparator.comparing(TopicPartition::partition));
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(config)) {
            List<TopicPartition> assigned = new ArrayList<>();
            for (int partition = 0; partition < partitions; partition++) {
                assigned.add(new TopicPartition(topic, partition));
                read.put(new TopicPartition(topic, partition), new ArrayList<>());
            }
            consumer.assign(assigned);
            consumer.seekToBeginning(assigned);
            Map<TopicPartition, Long> ends = consumer.endOffsets(assigned, Clients.CALL_TIMEOUT);
            long deadline = System.nanoTime() + Waits.DEFAULT_TIMEOUT.toNanos();
            while (read.entrySet().stream().anyMatch(entry -> entry.getValue().size() < ends.get(entry.getKey()))) {
                assertTrue(System.nanoTime() < deadline, "reading " + topic + " back took over "
                        + Waits.DEFAULT_TIMEOUT.toSeconds() + " s");
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(500))) {
                    List<String> log = read.get(new TopicPartition(topic, record.partition()));
                    assertEquals(log.size(), record.offset(), "offsets dense in partition " + record.partition());
                    log.add(record.value());
                }
            }
        }
        return read;
    }

    // ------------------------------------------------------------------ clients on a bootstrap list

    private static Admin admin(String bootstrapServers) {
        Map<String, Object> config = new HashMap<>();
        config.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
        config.put(AdminClientConfig.CLIENT_ID_CONFIG, Clients.uniqueName("admin"));
        return Admin.create(config);
    }

    /** A String producer with the Java client's defaults (acks=all, idempotence on). */
    private static KafkaProducer<String, String> producer(String bootstrapServers) {
        Map<String, Object> config = new HashMap<>();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
        config.put(ProducerConfig.CLIENT_ID_CONFIG, Clients.uniqueName("producer"));
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return new KafkaProducer<>(config);
    }

    /**
     * Joins {@code group} (classic protocol) from {@code bootstrapServers}, subscribes to {@code topic},
     * reads exactly {@code count} records from the earliest offset (bounded), commits them
     * synchronously and leaves the group.
     */
    private static List<ConsumerRecord<String, String>> consumeAsGroup(String bootstrapServers, String topic,
            String group, int count) {
        Map<String, Object> config = new HashMap<>();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
        config.put(ConsumerConfig.CLIENT_ID_CONFIG, Clients.uniqueName("consumer"));
        config.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        config.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(config)) {
            consumer.subscribe(List.of(topic));
            List<ConsumerRecord<String, String>> received = Clients.consumeExactly(consumer, count);
            consumer.commitSync(Clients.CALL_TIMEOUT);
            return received;
        }
    }

    // ------------------------------------------------------------------ admin look-ups

    /**
     * Creates a topic (replication factor 1) through the admin, then waits (bounded) until every
     * node's metadata, asked through an admin bootstrapped from that node alone, names a leader for
     * each of its partitions, the same on every node. As on Kafka, each node's metadata learns of a
     * new topic shortly after CreateTopics answers, and until then a describe sent to that node
     * answers UNKNOWN_TOPIC_OR_PARTITION. Returns partition -> leader.
     */
    private static Map<Integer, Integer> createTopic(String topic, int partitions) {
        Clients.createTopic(admin, topic, partitions);
        return leadersOnEveryNode(topic, partitions);
    }

    /**
     * Waits (bounded) until every node names a leader for each partition of the topic ({@code
     * partitions} of them, or any number when it is 0), the same leaders on every node; returns
     * partition -> leader.
     */
    private static Map<Integer, Integer> leadersOnEveryNode(String topic, int partitions) {
        Map<Integer, Integer> first = waitForLeaders(NODE_IDS.get(0), topic, partitions);
        for (int nodeId : NODE_IDS) {
            Admin nodeAdmin = NODE_ADMINS.get(nodeId);
            Waits.until("node " + nodeId + " names the same leaders of " + topic + " as node " + NODE_IDS.get(0),
                    Clients.CALL_TIMEOUT, () -> first.equals(leadersOrEmpty(nodeAdmin, topic)),
                    () -> "node " + nodeId + " names " + leadersOrEmpty(nodeAdmin, topic) + ", node "
                            + NODE_IDS.get(0) + " " + first);
        }
        return first;
    }

    /** Waits (bounded) until one node's metadata names a leader for each partition of the topic. */
    private static Map<Integer, Integer> waitForLeaders(int nodeId, String topic, int partitions) {
        Admin nodeAdmin = NODE_ADMINS.get(nodeId);
        Waits.until("node " + nodeId + " names a leader for each of the " + (partitions > 0 ? partitions : "")
                + " partitions of " + topic, Clients.CALL_TIMEOUT, () -> {
                    Map<Integer, Integer> leaders = leadersOrEmpty(nodeAdmin, topic);
                    return !leaders.isEmpty() && (partitions <= 0 || leaders.size() == partitions)
                            && !leaders.containsValue(-1);
                }, () -> "partition -> leader: " + leadersOrEmpty(nodeAdmin, topic));
        return leaders(nodeAdmin, topic);
    }

    private static TopicDescription describeTopic(Admin client, String topic) {
        return Clients.get(client.describeTopics(List.of(topic)).allTopicNames()).get(topic);
    }

    /** Partition -> leader node id; a partition without a leader maps to -1. */
    private static Map<Integer, Integer> leaders(Admin client, String topic) {
        Map<Integer, Integer> leaders = new TreeMap<>();
        for (TopicPartitionInfo partition : describeTopic(client, topic).partitions()) {
            Node leader = partition.leader();
            leaders.put(partition.partition(), leader == null || leader.isEmpty() ? -1 : leader.id());
        }
        return leaders;
    }

    /** {@link #leaders} while the topic may not be known yet: empty on any error. */
    private static Map<Integer, Integer> leadersOrEmpty(Admin client, String topic) {
        try {
            return leaders(client, topic);
        } catch (RuntimeException | AssertionError e) {
            return Map.of();
        }
    }

    /** Waits (bounded) until every node names the same leader for each {@code __consumer_offsets} partition. */
    private static Map<Integer, Integer> offsetsTopicLeaders() {
        return leadersOnEveryNode("__consumer_offsets", 0);
    }

    /**
     * Kafka's choice of the {@code __consumer_offsets} partition that holds a group:
     * {@code Utils.abs(groupId.hashCode()) % partitions} (GroupCoordinatorService.partitionFor),
     * where {@code Utils.abs} maps Integer.MIN_VALUE to 0. This is not the producer's
     * {@code toPositive} ({@code & 0x7fffffff}): the two differ for every negative hash.
     */
    private static int offsetsPartition(String group, int partitions) {
        return Utils.abs(group.hashCode()) % partitions;
    }

    private static ConsumerGroupDescription describeGroup(Admin client, String group) {
        return Clients.get(client.describeConsumerGroups(List.of(group)).all()).get(group);
    }

    private static Map<Integer, Integer> ports(Collection<Node> nodes) {
        Map<Integer, Integer> ports = new TreeMap<>();
        nodes.forEach(node -> ports.put(node.id(), node.port()));
        return ports;
    }

    private static Set<String> values(List<ConsumerRecord<String, String>> records) {
        return records.stream().map(ConsumerRecord::value).collect(Collectors.toSet());
    }

    // ------------------------------------------------------------------ the cluster

    /**
     * Three {@code sluice} processes forming one cluster, owned by the test class: started by
     * {@link #start()}, stopped and deleted after the class. A failed test carries the tail of every
     * node's log; a node that exits although no test stopped it fails the test that was running.
     */
    static final class ClusterExtension implements AfterEachCallback, AfterAllCallback,
            TestExecutionExceptionHandler, LifecycleMethodExecutionExceptionHandler {

        /** Bound on launching the three processes until each serves the whole cluster. */
        private static final Duration START_TIMEOUT =
                Duration.ofSeconds(Long.parseLong(envOr("SLUICE_START_TIMEOUT_S", "60")));
        private static final Duration STOP_TIMEOUT = Duration.ofSeconds(15);
        private static final Duration READY_PROBE_INTERVAL = Duration.ofMillis(200);
        private static final int LOG_TAIL_LINES = 40;

        /** Processes still running, killed by the shutdown hook if the JVM exits without stopping them. */
        private static final Set<Process> LIVE = ConcurrentHashMap.newKeySet();

        static {
            Runtime.getRuntime().addShutdownHook(new Thread(() -> LIVE.forEach(Process::destroyForcibly)));
        }

        private final List<ClusterNode> nodes = new ArrayList<>();
        private Path workDir;

        /** Launches the three nodes together, then waits until each describes all three. */
        synchronized void start() {
            if (!nodes.isEmpty()) {
                throw new IllegalStateException("the cluster is already started");
            }
            try {
                workDir = Files.createTempDirectory("sluice-cluster-");
                Path logDir = Paths.get(System.getProperty("sluice.logDir", workDir.toString()));
                Files.createDirectories(logDir);
                int[] ports = freePorts(2 * NODE_IDS.size());
                StringBuilder voters = new StringBuilder();
                for (int i = 0; i < NODE_IDS.size(); i++) {
                    int controllerPort = ports[NODE_IDS.size() + i];
                    voters.append(i == 0 ? "" : ",").append(NODE_IDS.get(i)).append('@')
                            .append(SluiceBroker.HOST).append(':').append(controllerPort);
                }
                for (int i = 0; i < NODE_IDS.size(); i++) {
                    int id = NODE_IDS.get(i);
                    nodes.add(new ClusterNode(id, ports[i], ports[NODE_IDS.size() + i], voters.toString(),
                            Files.createDirectories(workDir.resolve("node-" + id)),
                            logDir.resolve("ClusterTest-node-" + id + "-" + ports[i] + ".log")));
                }
            } catch (IOException e) {
                throw new UncheckedIOException("cannot prepare the cluster's directories", e);
            }
            try {
                for (ClusterNode node : nodes) {
                    node.launch();
                }
                waitUntilReady();
            } catch (RuntimeException | Error e) {
                stopAll();
                throw e;
            }
        }

        /** Every node's address, comma-separated. */
        synchronized String bootstrapServers() {
            return nodes.stream().map(ClusterNode::bootstrapServers).collect(Collectors.joining(","));
        }

        /** The address of one node alone. */
        synchronized String bootstrapServers(int nodeId) {
            return node(nodeId).bootstrapServers();
        }

        /** SIGKILL to one node, and a bounded wait for it to exit. */
        synchronized void kill(int nodeId) {
            ClusterNode node = node(nodeId);
            node.stoppedByTest = true;
            node.process.destroyForcibly();
            node.awaitExit();
        }

        /** Starts a killed node again on its data directory, and waits until it serves the cluster. */
        synchronized void relaunch(int nodeId) {
            ClusterNode node = node(nodeId);
            node.stoppedByTest = false;
            node.launch();
            Map<Integer, Integer> expected = nodePorts();
            Waits.until("node " + nodeId + " serves the cluster again", START_TIMEOUT,
                    () -> node.process.isAlive() && node.probe(expected) == null);
        }

        /** Node id -> Kafka port. */
        synchronized Map<Integer, Integer> nodePorts() {
            Map<Integer, Integer> ports = new TreeMap<>();
            nodes.forEach(node -> ports.put(node.id, node.port));
            return ports;
        }

        private ClusterNode node(int nodeId) {
            return nodes.stream().filter(node -> node.id == nodeId).findFirst()
                    .orElseThrow(() -> new IllegalArgumentException("no node " + nodeId + " in " + nodes));
        }

        /**
         * Polls, bounded by {@link #START_TIMEOUT}, until an Admin bootstrapped to each node alone
         * lists every node with its port; fails at once if a process exits.
         */
        private void waitUntilReady() {
            Map<Integer, Integer> expected = nodePorts();
            Map<Integer, String> notReady = new TreeMap<>();
            nodes.forEach(node -> notReady.put(node.id, "not probed yet"));
            long deadline = System.nanoTime() + START_TIMEOUT.toNanos();
            long maxRounds = START_TIMEOUT.toMillis() / READY_PROBE_INTERVAL.toMillis() + 1;
            for (long round = 0; round < maxRounds && !notReady.isEmpty() && System.nanoTime() < deadline; round++) {
                for (ClusterNode node : nodes) {
                    if (!node.process.isAlive()) {
                        throw new SluiceBroker.BrokerException(node + " exited with status "
                                + node.process.exitValue() + " before the cluster was ready\n" + logTails());
                    }
                    if (notReady.containsKey(node.id)) {
                        String problem = node.probe(expected);
                        if (problem == null) {
                            notReady.remove(node.id);
                        } else {
                            notReady.put(node.id, problem);
                        }
                    }
                }
                if (!notReady.isEmpty()) {
                    Waits.sleep(READY_PROBE_INTERVAL);
                }
            }
            if (!notReady.isEmpty()) {
                throw new SluiceBroker.BrokerException("the cluster was not ready within " + START_TIMEOUT.toSeconds()
                        + " s; nodes not ready: " + notReady + "\n" + logTails());
            }
        }

        /** SIGTERM to every node at once, then a bounded wait for each (SIGKILL if it ignores it). */
        private synchronized void stopAll() {
            for (ClusterNode node : nodes) {
                node.stoppedByTest = true;
                if (node.process != null) {
                    node.process.destroy();
                }
            }
            for (ClusterNode node : nodes) {
                node.awaitExit();
            }
            nodes.clear();
            if (workDir != null) {
                deleteRecursively(workDir);
                workDir = null;
            }
        }

        private synchronized String logTails() {
            StringBuilder out = new StringBuilder();
            for (ClusterNode node : nodes) {
                out.append(node).append('\n').append(node.logTail());
            }
            return out.toString();
        }

        @Override
        public void afterEach(ExtensionContext context) {
            StringBuilder died = new StringBuilder();
            synchronized (this) {
                for (ClusterNode node : nodes) {
                    if (node.process != null && !node.process.isAlive() && !node.stoppedByTest) {
                        died.append(node).append(" exited on its own with status ")
                                .append(node.process.exitValue()).append('\n').append(node.logTail());
                    }
                }
            }
            if (died.length() > 0) {
                throw new SluiceBroker.BrokerException(died.toString());
            }
        }

        @Override
        public void afterAll(ExtensionContext context) {
            stopAll();
        }

        @Override
        public void handleTestExecutionException(ExtensionContext context, Throwable throwable) throws Throwable {
            throw withLogTails(throwable);
        }

        @Override
        public void handleBeforeAllMethodExecutionException(ExtensionContext context, Throwable throwable)
                throws Throwable {
            throw withLogTails(throwable);
        }

        @Override
        public void handleBeforeEachMethodExecutionException(ExtensionContext context, Throwable throwable)
                throws Throwable {
            throw withLogTails(throwable);
        }

        @Override
        public void handleAfterEachMethodExecutionException(ExtensionContext context, Throwable throwable)
                throws Throwable {
            throw withLogTails(throwable);
        }

        private Throwable withLogTails(Throwable throwable) {
            if (throwable instanceof TestAbortedException) {
                return throwable;
            }
            List<ClusterNode> running;
            synchronized (this) {
                running = List.copyOf(nodes);
            }
            for (ClusterNode node : running) {
                String tail = node + "\n" + node.logTail();
                System.err.println(tail);
                throwable.addSuppressed(new SluiceBrokerExtension.BrokerLogTail(tail));
            }
            return throwable;
        }
    }

    /** One node of the cluster: a broker and controller-quorum voter on its own ports and data directory. */
    private static final class ClusterNode {
        private static final long STOP_TIMEOUT_MS = ClusterExtension.STOP_TIMEOUT.toMillis();

        final int id;
        final int port;
        final int controllerPort;
        final String voters;
        final Path dataDir;
        final Path logFile;
        Process process;
        boolean stoppedByTest;

        ClusterNode(int id, int port, int controllerPort, String voters, Path dataDir, Path logFile) {
            this.id = id;
            this.port = port;
            this.controllerPort = controllerPort;
            this.voters = voters;
            this.dataDir = dataDir;
            this.logFile = logFile;
        }

        String bootstrapServers() {
            return SluiceBroker.HOST + ":" + port;
        }

        void launch() {
            Path binary = SluiceBroker.binary();
            if (!Files.isExecutable(binary)) {
                throw new SluiceBroker.BrokerException(binary + " is not an executable file: build it with "
                        + "`cargo build --release --bin sluice` or point SLUICE_BIN at one");
            }
            List<String> command = List.of(
                    binary.toString(),
                    "--listen", bootstrapServers(),
                    "--data-dir", dataDir.toString(),
                    "--node-id", Integer.toString(id),
                    "--process-roles", "broker,controller",
                    "--controller-listen", SluiceBroker.HOST + ":" + controllerPort,
                    "--controller-quorum-voters", voters,
                    "--shards", "1",
                    "--pin-shards", "false",
                    "--broker-session-timeout-ms", "3000",
                    "--broker-heartbeat-interval-ms", "500");
            try {
                Files.writeString(logFile, "\n===== start: " + String.join(" ", command) + "\n",
                        StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
                ProcessBuilder builder = new ProcessBuilder(command)
                        .directory(dataDir.toFile())
                        .redirectErrorStream(true)
                        .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile()))
                        .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
                Map<String, String> env = builder.environment();
                // Raft's own info lines (every vote, every election) would drown the broker's.
                env.put("RUST_LOG", envOr("SLUICE_LOG", "info,openraft=error"));
                env.putIfAbsent("RUST_BACKTRACE", "1");
                process = builder.start();
                ClusterExtension.LIVE.add(process);
            } catch (IOException e) {
                throw new SluiceBroker.BrokerException("cannot start " + binary + " for node " + id, e);
            }
        }

        /** Null when an Admin bootstrapped to this node alone lists exactly the expected nodes; else why not. */
        String probe(Map<Integer, Integer> expected) {
            try (Socket socket = new Socket()) {
                socket.connect(new InetSocketAddress(SluiceBroker.HOST, port), 1000);
            } catch (IOException e) {
                return "connection refused";
            }
            Map<String, Object> config = new HashMap<>();
            config.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers());
            config.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 3000);
            config.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 5000);
            config.put(AdminClientConfig.CLIENT_ID_CONFIG, "sluice-cluster-ready-probe");
            try (Admin probe = Admin.create(config)) {
                Collection<Node> nodes = probe.describeCluster().nodes().get(6, TimeUnit.SECONDS);
                return expected.equals(ports(nodes)) ? null : "describeCluster answered " + nodes;
            } catch (Exception e) {
                return "describeCluster failed: " + e;
            }
        }

        /** Waits (bounded) for the process to exit after SIGTERM; kills it if it does not. */
        void awaitExit() {
            if (process == null) {
                return;
            }
            try {
                if (!process.waitFor(STOP_TIMEOUT_MS, TimeUnit.MILLISECONDS)) {
                    System.err.println(this + " ignored SIGTERM for " + STOP_TIMEOUT_MS + " ms; killing it");
                    process.destroyForcibly();
                    process.waitFor(STOP_TIMEOUT_MS, TimeUnit.MILLISECONDS);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                process.destroyForcibly();
            } finally {
                ClusterExtension.LIVE.remove(process);
            }
        }

        /** Panic lines first, then the last lines of the log, without backtrace frames. */
        String logTail() {
            List<String> lines;
            try {
                lines = Files.readAllLines(logFile, StandardCharsets.UTF_8);
            } catch (IOException e) {
                return "(no log at " + logFile + ": " + e + ")\n";
            }
            StringBuilder out = new StringBuilder();
            List<String> panics = new ArrayList<>();
            for (int i = 0; i < lines.size() && panics.size() < 20; i++) {
                if (lines.get(i).contains("panicked at")) {
                    panics.add(lines.get(i));
                    if (i + 1 < lines.size()) {
                        panics.add(lines.get(i + 1));
                    }
                }
            }
            if (!panics.isEmpty()) {
                out.append("----- node ").append(id).append(" panics -----\n");
                panics.forEach(line -> out.append(line).append('\n'));
            }
            List<String> tail = lines.stream()
                    .filter(line -> !line.stripLeading().startsWith("at /") && !line.stripLeading().startsWith("at ./"))
                    .toList();
            out.append("----- node ").append(id).append(" log tail (").append(logFile.getFileName()).append(") -----\n");
            tail.subList(Math.max(0, tail.size() - ClusterExtension.LOG_TAIL_LINES), tail.size())
                    .forEach(line -> out.append(line).append('\n'));
            return out.toString();
        }

        @Override
        public String toString() {
            String pid = process == null ? "-" : Long.toString(process.pid());
            return "sluice node " + id + " on " + bootstrapServers() + " (controller " + SluiceBroker.HOST + ":"
                    + controllerPort + ", pid " + pid + ")";
        }
    }

    // ------------------------------------------------------------------ helpers

    private static int[] freePorts(int count) throws IOException {
        List<ServerSocket> sockets = new ArrayList<>();
        try {
            int[] ports = new int[count];
            for (int i = 0; i < count; i++) {
                ServerSocket socket = new ServerSocket();
                socket.setReuseAddress(true);
                socket.bind(new InetSocketAddress(SluiceBroker.HOST, 0));
                sockets.add(socket);
                ports[i] = socket.getLocalPort();
            }
            return ports;
        } finally {
            for (ServerSocket socket : sockets) {
                socket.close();
            }
        }
    }

    private static String envOr(String name, String fallback) {
        String value = System.getenv(name);
        return value == null || value.isBlank() ? fallback : value;
    }

    private static void deleteRecursively(Path root) {
        if (!Files.exists(root)) {
            return;
        }
        try (Stream<Path> paths = Files.walk(root)) {
            paths.sorted(Comparator.reverseOrder()).forEach(path -> {
                try {
                    Files.deleteIfExists(path);
                } catch (IOException e) {
                    System.err.println("cannot delete " + path + ": " + e);
                }
            });
        } catch (IOException e) {
            System.err.println("cannot delete " + root + ": " + e);
        }
    }
}
