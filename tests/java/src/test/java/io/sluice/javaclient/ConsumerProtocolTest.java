package io.sluice.javaclient;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.function.BooleanSupplier;
import java.util.function.Function;
import java.util.function.Supplier;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.SubscriptionPattern;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Goal: consumer groups on the KIP-848 protocol ({@code group.protocol=consumer}: the
 * coordinator assigns partitions, members reconcile through ConsumerGroupHeartbeat) behave as
 * on Apache Kafka 4.4: every partition is owned by exactly one member at every moment while
 * members join, leave and crash; records are consumed exactly once and no committed offset is
 * lost; a regular-expression subscription is resolved by the coordinator, new topics included; a
 * static member that comes back within its session timeout gets its partitions back without
 * disturbing the others; the admin API describes and lists the group with its type, assignor,
 * epochs and members; and a classic group is upgraded online, member by member, to the new
 * protocol.
 *
 * <p>Method: real members ({@link TrackedMember}) poll on their own threads, commit after each
 * poll and in {@code onPartitionsRevoked}, and write every assignment, revocation and loss into a
 * shared {@link OwnershipLedger}, which flags a partition handed to one member while another
 * still holds it. A crashed member runs in a JVM of its own ({@link MemberProcess}) and is
 * SIGKILLed. The test produces known records in rounds, changes membership between rounds, waits
 * (bounded) until the members' assignments are balanced and cover every partition, and finally
 * compares the records consumed, by partition and offset, with those produced, and the group's
 * committed offsets with the end offsets.
 *
 * <p>Sluice serves the protocol, per-group configs and the online migration of classic members
 * into a consumer group; every test must pass against Sluice and against Apache Kafka
 * ({@code SLUICE_BIN=tests/java/kafka-as-sluice}). The crash test runs on a broker of its own
 * whose smallest allowed session timeout and heartbeat interval are lowered (Kafka's
 * {@code group.consumer.min.session.timeout.ms} and {@code group.consumer.min.heartbeat.interval.ms},
 * as an operator may set them), so it waits out a 10 s session instead of Kafka's default 45 s.
 */
class ConsumerProtocolTest {

    private static final String CONSUMER = TrackedMember.CONSUMER_PROTOCOL;
    private static final String CLASSIC = TrackedMember.CLASSIC_PROTOCOL;

    private static final int PARTITIONS = 6;
    private static final int RECORDS_PER_PARTITION_PER_ROUND = 10;
    /** Bound for one membership change to settle; Kafka needs two or three 5 s heartbeats. */
    private static final Duration REBALANCE_TIMEOUT = Duration.ofSeconds(45);

    /**
     * The crash test's session timeout: its broker's group.consumer.min.session.timeout.ms (Kafka's
     * default is 45 s), so that a value under it is still refused.
     */
    private static final int SESSION_TIMEOUT_MS = 10_000;
    /** The crash test's heartbeat interval: its broker's group.consumer.min.heartbeat.interval.ms (Kafka: 5 s). */
    private static final int HEARTBEAT_INTERVAL_MS = 1_000;
    /** The crash test broker's settings; kafka-as-sluice passes them to Kafka under their config names. */
    private static final Map<String, String> CRASH_BROKER_ENV = Map.of(
            "SLUICE_GROUP_CONSUMER_MIN_SESSION_TIMEOUT_MS", String.valueOf(SESSION_TIMEOUT_MS),
            "SLUICE_GROUP_CONSUMER_MIN_HEARTBEAT_INTERVAL_MS", String.valueOf(HEARTBEAT_INTERVAL_MS));
    /** The assignor Kafka's coordinator uses unless the member asks for another (group.remote.assignor). */
    private static final String DEFAULT_ASSIGNOR = "uniform";

    @RegisterExtension
    static final SluiceBrokerExtension SLUICE = new SluiceBrokerExtension();

    /**
     * Three members join one by one and leave one by one. After each change every partition is
     * owned by exactly one member, balanced; the uniform assignor moves only what must move
     * (sticky); no partition is ever held by two members; every record is consumed once; the
     * committed offsets end at the end offsets; the empty group is still a consumer group.
     */
    @Test
    void membersJoiningAndLeavingShareEveryPartitionExactlyOnce() {
        Scenario scenario = new Scenario(SLUICE.broker(), "join-leave");
        TrackedMember a = scenario.join("a", CONSUMER, Map.of());
        scenario.awaitBalanced(a);
        scenario.produceRoundAndAwaitConsumed(a);

        int aRevocations = a.revocations().size();
        TrackedMember b = scenario.join("b", CONSUMER, Map.of());
        scenario.awaitBalanced(a, b);
        assertEquals(b.assignment(), revokedSince(a, aRevocations), "a gave up exactly what b got");
        scenario.produceRoundAndAwaitConsumed(a, b);

        aRevocations = a.revocations().size();
        int bRevocations = b.revocations().size();
        TrackedMember c = scenario.join("c", CONSUMER, Map.of());
        scenario.awaitBalanced(a, b, c);
        Set<TopicPartition> fromA = revokedSince(a, aRevocations);
        Set<TopicPartition> fromB = revokedSince(b, bRevocations);
        assertEquals(1, fromA.size(), "partitions a gave up for c: " + fromA);
        assertEquals(1, fromB.size(), "partitions b gave up for c: " + fromB);
        assertEquals(union(fromA, fromB), c.assignment(), "c got what a and b gave up");
        scenario.produceRoundAndAwaitConsumed(a, b, c);

        bRevocations = b.revocations().size();
        int cRevocations = c.revocations().size();
        a.close();
        scenario.awaitBalanced(b, c);
        assertEquals(Set.of(), revokedSince(b, bRevocations), "b kept its partitions when a left");
        assertEquals(Set.of(), revokedSince(c, cRevocations), "c kept its partitions when a left");
        scenario.produceRoundAndAwaitConsumed(b, c);

        cRevocations = c.revocations().size();
        b.close();
        scenario.awaitBalanced(c);
        assertEquals(Set.of(), revokedSince(c, cRevocations), "c kept its partitions when b left");
        scenario.produceRoundAndAwaitConsumed(c);

        scenario.closeMembers();
        scenario.assertNoPartitionHeldTwice();
        scenario.assertEachRecordConsumedOnce(scenario.members);
        scenario.assertCommittedAtTheEnd();
        try (Admin admin = Clients.admin(SLUICE.broker())) {
            ConsumerGroupDescription empty = describe(admin, scenario.group);
            assertEquals(GroupType.CONSUMER, empty.type(), "type of the group after everyone left");
            assertEquals(GroupState.EMPTY, empty.groupState(), "state of the group after everyone left");
            assertEquals(List.of(), List.copyOf(empty.members()), "members after everyone left");
        }
    }

    /**
     * A member in another JVM is SIGKILLed: no leave, no revocation. Its partitions stay where
     * they are until its session timeout (set on the group with IncrementalAlterConfigs on the
     * GROUP resource; a value under the broker's minimum is refused) runs out, then move to the
     * two survivors, which resume at its committed offsets.
     */
    @Test
    void crashedMemberPartitionsMoveToTheOthersAfterTheSessionTimeout() {
        SluiceBroker broker = SLUICE.newBroker("crash", CRASH_BROKER_ENV);
        Scenario scenario = new Scenario(broker, "crash");
        try (Admin admin = Clients.admin(broker)) {
            InvalidConfigurationException refused = assertThrows(InvalidConfigurationException.class,
                    () -> alterGroupConfig(admin, scenario.group, Map.of("consumer.session.timeout.ms", "6000")),
                    "a session timeout below group.consumer.min.session.timeout.ms");
            assertTrue(refused.getMessage().contains("consumer.session.timeout.ms"), refused.getMessage());
            alterGroupConfig(admin, scenario.group, Map.of(
                    "consumer.session.timeout.ms", String.valueOf(SESSION_TIMEOUT_MS),
                    "consumer.heartbeat.interval.ms", String.valueOf(HEARTBEAT_INTERVAL_MS)));
            // Kafka applies the change through its metadata log: the broker describes it a moment later.
            Waits.until("the altered session timeout described", Duration.ofSeconds(10), () -> String.valueOf(
                    SESSION_TIMEOUT_MS).equals(Clients.get(admin.describeConfigs(List.of(groupResource(scenario.group)))
                    .all()).get(groupResource(scenario.group)).get("consumer.session.timeout.ms").value()));
            Config config = Clients.get(admin.describeConfigs(List.of(groupResource(scenario.group))).all())
                    .get(groupResource(scenario.group));
            assertEquals(String.valueOf(SESSION_TIMEOUT_MS), config.get("consumer.session.timeout.ms").value());
            assertEquals(String.valueOf(HEARTBEAT_INTERVAL_MS), config.get("consumer.heartbeat.interval.ms").value());
        }

        try (MemberProcess doomed = MemberProcess.start(broker, scenario.group, scenario.topic, CONSUMER,
                "ConsumerProtocolTest.doomed-" + scenario.group)) {
            TrackedMember a = scenario.join("a", CONSUMER, Map.of());
            TrackedMember b = scenario.join("b", CONSUMER, Map.of());
            scenario.awaitCondition("the doomed member and a and b each own 2 partitions, all disjoint", () -> {
                doomed.assertAlive();
                Set<TopicPartition> ofDoomed = doomed.assignment();
                Map<String, Set<TopicPartition>> owners = scenario.ledger.byMember();
                return ofDoomed.size() == 2 && owners.keySet().equals(Set.of("a", "b"))
                        && owners.values().stream().allMatch(held -> held.size() == 2)
                        && union(ofDoomed, scenario.ledger.held()).equals(scenario.allPartitions())
                        && a.assignment().equals(owners.get("a")) && b.assignment().equals(owners.get("b"));
            }, () -> doomed + " " + scenario.ledger, a, b);
            scenario.produceRound();
            scenario.awaitCommittedAtTheEnd(doomed::assertAlive);
            Set<TopicPartition> orphaned = doomed.assignment();

            long killedAt = System.nanoTime();
            doomed.kill();
            try (Admin admin = Clients.admin(broker)) {
                assertEquals(3, describe(admin, scenario.group).members().size(),
                        "members right after the crash: the coordinator does not know yet");
            }
            scenario.produceRound(); // the records of the orphaned partitions wait for the takeover

            Duration bound = Duration.ofMillis(SESSION_TIMEOUT_MS + HEARTBEAT_INTERVAL_MS).plusSeconds(20);
            Waits.until("a and b own every partition, 3 each", bound, () -> {
                scenario.assertAlive(a, b);
                Map<String, Set<TopicPartition>> owners = scenario.ledger.byMember();
                return owners.keySet().equals(Set.of("a", "b"))
                        && owners.values().stream().allMatch(held -> held.size() == 3)
                        && a.assignment().equals(owners.get("a")) && b.assignment().equals(owners.get("b"));
            }, () -> scenario.ledger + " " + a + " " + b);
            long elapsedMs = (System.nanoTime() - killedAt) / 1_000_000;
            // Its last heartbeat came at most one interval before the kill; its session ran from there.
            assertTrue(elapsedMs >= SESSION_TIMEOUT_MS - HEARTBEAT_INTERVAL_MS - 1_000,
                    "the crashed member's partitions moved after " + elapsedMs + " ms, before its session timed out");

            scenario.awaitCondition("a and b consumed every record the crashed member left",
                    () -> scenario.consumedCount() >= scenario.produced.size() - orphaned.size()
                            * RECORDS_PER_PARTITION_PER_ROUND, scenario.ledger::toString, a, b);
            scenario.closeMembers();
            scenario.assertNoPartitionHeldTwice();
            // The crashed member read and committed round 0 of its partitions; a and b resumed there.
            Set<String> readByTheCrashedMember = orphaned.stream()
                    .flatMap(tp -> IntStream.range(0, RECORDS_PER_PARTITION_PER_ROUND)
                            .mapToObj(offset -> tp.partition() + "@" + offset))
                    .collect(Collectors.toSet());
            scenario.assertEachRecordConsumedOnce(scenario.members, readByTheCrashedMember);
            scenario.assertCommittedAtTheEnd();
        }
    }

    /**
     * A pattern subscription ({@code subscribe(SubscriptionPattern)}, RE2/J, resolved by the
     * coordinator) assigns the topics that match in full, and a topic created afterwards that
     * matches joins the assignment; topics that do not match never do.
     */
    @Test
    void regexSubscriptionPicksUpANewMatchingTopic() {
        SluiceBroker broker = SLUICE.broker();
        String prefix = Clients.uniqueName("regex");
        String early = prefix + "-early";
        String late = prefix + "-late";
        String otherEarly = prefix + "_other";
        String otherLate = "x" + prefix + "-late"; // matches only as a substring, not in full
        try (Admin admin = Clients.admin(broker)) {
            Clients.createTopic(admin, early, 3);
            Clients.createTopic(admin, otherEarly, 1);
        }
        String group = Clients.uniqueName("regex-group");
        OwnershipLedger ledger = new OwnershipLedger();
        TrackedMember.Subscription pattern =
                (consumer, listener) -> consumer.subscribe(new SubscriptionPattern(prefix + "-.*"), listener);
        List<TrackedMember> members = new ArrayList<>();
        try {
            members.add(TrackedMember.start("a", broker, group, CONSUMER, pattern, ledger, Map.of()));
            members.add(TrackedMember.start("b", broker, group, CONSUMER, pattern, ledger, Map.of()));
            TrackedMember[] both = members.toArray(TrackedMember[]::new);
            awaitCovered(ledger, partitions(early, 3), both);

            try (Admin admin = Clients.admin(broker)) {
                Clients.createTopic(admin, late, 2);
                Clients.createTopic(admin, otherLate, 1);
            }
            Set<TopicPartition> matching = union(partitions(early, 3), partitions(late, 2));
            awaitCovered(ledger, matching, both);

            List<ProducerRecord<String, String>> records = new ArrayList<>();
            for (String topic : List.of(early, late, otherEarly, otherLate)) {
                records.add(new ProducerRecord<>(topic, 0, "k", topic));
            }
            try (KafkaProducer<String, String> producer = Clients.producer(broker)) {
                Clients.sendAll(producer, records);
            }
            Waits.until("the records of both matching topics consumed", REBALANCE_TIMEOUT,
                    () -> members.stream().mapToInt(m -> m.consumed().size()).sum() >= 2,
                    () -> members.toString());
            for (TrackedMember member : members) {
                member.close();
                assertNull(member.failure(), member.name() + " failed");
            }
            List<String> consumedTopics = members.stream().flatMap(m -> m.consumed().stream())
                    .map(ConsumerRecord::topic).sorted().toList();
            assertEquals(List.of(early, late), consumedTopics, "topics of the records consumed");
            Set<TopicPartition> everAssigned = members.stream().flatMap(m -> m.additions().stream())
                    .flatMap(Set::stream).collect(Collectors.toSet());
            assertEquals(matching, everAssigned, "partitions ever assigned to the pattern subscription");
            assertEquals(List.of(), ledger.violations(), ledger.history());
        } finally {
            members.forEach(TrackedMember::close);
        }
    }

    /**
     * A static member ({@code group.instance.id}) closes and comes back within its session
     * timeout: it gets exactly its partitions back, under its new member id, while the other
     * member is neither revoked nor given anything meanwhile.
     */
    @Test
    void staticMemberRestartingWithinItsSessionGetsItsPartitionsBack() {
        Scenario scenario = new Scenario(SLUICE.broker(), "static");
        Map<String, Object> instanceA = Map.of(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-a");
        Map<String, Object> instanceB = Map.of(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-b");
        TrackedMember a = scenario.join("a", CONSUMER, instanceA);
        TrackedMember b = scenario.join("b", CONSUMER, instanceB);
        scenario.awaitBalanced(a, b);
        scenario.produceRoundAndAwaitConsumed(a, b);
        Set<TopicPartition> ownedByA = a.assignment();
        Set<TopicPartition> ownedByB = b.assignment();
        int bAdditions = b.additions().size();
        int bRevocations = b.revocations().size();

        try (Admin admin = Clients.admin(SLUICE.broker())) {
            a.close(); // a static member leaves for now: the coordinator keeps its place and partitions
            ConsumerGroupDescription whileAway = describe(admin, scenario.group);
            assertEquals(Set.of("instance-a", "instance-b"), instanceIds(whileAway),
                    "both static members stay in the group while one is away");
            assertEquals(ownedByA, memberWithInstance(whileAway, "instance-a").assignment().topicPartitions(),
                    "the partitions kept for the absent member");

            scenario.produceRound(); // records for a's partitions wait for a
            TrackedMember returning = scenario.join("a-again", CONSUMER, instanceA);
            scenario.awaitCondition("the returning static member owns its old partitions " + ownedByA,
                    () -> returning.assignment().equals(ownedByA)
                            && scenario.ledger.byMember().equals(Map.of("a-again", ownedByA, "b", ownedByB)),
                    scenario.ledger::toString, returning, b);
            scenario.awaitConsumedAll(returning, b);

            assertEquals(bAdditions, b.additions().size(), "assignments to b while a was away: " + b.additions());
            assertEquals(bRevocations, b.revocations().size(), "revocations from b: " + b.revocations());
            assertEquals(ownedByB, b.assignment(), "b's partitions");
            ConsumerGroupDescription after = describe(admin, scenario.group);
            assertEquals(GroupState.STABLE, after.groupState());
            assertEquals(Set.of("instance-a", "instance-b"), instanceIds(after));
            assertEquals(returning.memberId(), memberWithInstance(after, "instance-a").consumerId(),
                    "instance-a is now the returning consumer");
        }
        scenario.closeMembers();
        scenario.assertNoPartitionHeldTwice();
        scenario.assertEachRecordConsumedOnce(scenario.members);
        scenario.assertCommittedAtTheEnd();
    }

    /**
     * describeConsumerGroups reports a consumer-protocol group as type CONSUMER, Stable, with the
     * uniform assignor, its group and target assignment epochs, and each member's id, client id,
     * host, epoch, assignment and target assignment; listGroups and listConsumerGroups report the
     * type (CONSUMER next to a CLASSIC group on the same topic) and filter by it.
     */
    @Test
    @SuppressWarnings("deprecation") // listConsumerGroups: still served, and still used by tools
    void adminDescribesAndListsAConsumerProtocolGroup() {
        Scenario scenario = new Scenario(SLUICE.broker(), "admin");
        TrackedMember a = scenario.join("a", CONSUMER, Map.of());
        TrackedMember b = scenario.join("b", CONSUMER, Map.of());
        scenario.awaitBalanced(a, b);
        String classicGroup = Clients.uniqueName("admin-classic-group");
        try (TrackedMember classic = TrackedMember.start("classic", SLUICE.broker(), classicGroup, CLASSIC,
                TrackedMember.topic(scenario.topic), new OwnershipLedger(), Map.of());
                Admin admin = Clients.admin(SLUICE.broker())) {
            scenario.awaitCondition("the classic member owns every partition",
                    () -> classic.assignment().size() == PARTITIONS, classic::toString, classic);

            ConsumerGroupDescription description = describe(admin, scenario.group);
            assertEquals(scenario.group, description.groupId());
            assertEquals(GroupType.CONSUMER, description.type());
            assertEquals(GroupState.STABLE, description.groupState());
            assertEquals(DEFAULT_ASSIGNOR, description.partitionAssignor());
            assertFalse(description.isSimpleConsumerGroup());
            assertEquals(SluiceBroker.NODE_ID, description.coordinator().id());
            assertTrue(description.groupEpoch().isPresent(), "group epoch: " + description);
            assertEquals(description.groupEpoch(), description.targetAssignmentEpoch(),
                    "a Stable group's target assignment is at the group epoch");
            Map<String, MemberDescription> byClient = description.members().stream()
                    .collect(Collectors.toMap(MemberDescription::clientId, Function.identity()));
            assertEquals(Set.of("a", "b"), byClient.keySet(), "client ids of the members");
            for (TrackedMember member : List.of(a, b)) {
                MemberDescription described = byClient.get(member.name());
                assertEquals(member.memberId(), described.consumerId(), "member id of " + member.name());
                assertEquals("/127.0.0.1", described.host(), "host of " + member.name());
                assertEquals(Optional.empty(), described.groupInstanceId());
                assertEquals(member.assignment(), described.assignment().topicPartitions(),
                        "assignment of " + member.name());
                assertEquals(Optional.of(member.assignment()),
                        described.targetAssignment().map(target -> target.topicPartitions()),
                        "target assignment of " + member.name());
                assertEquals(description.groupEpoch(), described.memberEpoch(), "epoch of " + member.name());
                assertEquals(Optional.of(member.memberEpoch()), described.memberEpoch(),
                        "the epoch " + member.name() + " was given");
                assertEquals(Optional.of(true), described.upgraded(), "a consumer-protocol member is 'upgraded'");
            }
            ConsumerGroupDescription classicDescription = describe(admin, classicGroup);
            assertEquals(GroupType.CLASSIC, classicDescription.type());
            assertEquals(GroupState.STABLE, classicDescription.groupState());

            Map<String, GroupListing> listed = Clients.get(admin.listGroups().all()).stream()
                    .collect(Collectors.toMap(GroupListing::groupId, Function.identity()));
            assertEquals(Optional.of(GroupType.CONSUMER), listed.get(scenario.group).type(), "listGroups type");
            assertEquals("consumer", listed.get(scenario.group).protocol(), "listGroups protocol type");
            assertEquals(Optional.of(GroupState.STABLE), listed.get(scenario.group).groupState());
            assertEquals(Optional.of(GroupType.CLASSIC), listed.get(classicGroup).type(), "classic group's type");
            assertEquals("consumer", listed.get(classicGroup).protocol(), "classic group's protocol type");

            Set<String> consumerTyped = Clients.get(admin.listGroups(
                    ListGroupsOptions.forConsumerGroups().withTypes(Set.of(GroupType.CONSUMER))).all()).stream()
                    .map(GroupListing::groupId).collect(Collectors.toSet());
            assertTrue(consumerTyped.contains(scenario.group), "listGroups(types=CONSUMER): " + consumerTyped);
            assertFalse(consumerTyped.contains(classicGroup), "listGroups(types=CONSUMER): " + consumerTyped);

            Map<String, ConsumerGroupListing> consumerGroups = Clients.get(admin.listConsumerGroups().all()).stream()
                    .collect(Collectors.toMap(ConsumerGroupListing::groupId, Function.identity()));
            assertEquals(Optional.of(GroupType.CONSUMER), consumerGroups.get(scenario.group).type());
            assertEquals(Optional.of(GroupType.CLASSIC), consumerGroups.get(classicGroup).type());
        }
        scenario.closeMembers();
        scenario.assertNoPartitionHeldTwice();
    }

    /**
     * Online upgrade: three classic members consume; one by one each is replaced by a
     * consumer-protocol member in the same group (Kafka's default migration policy converts the
     * classic group into a consumer group when the first such member joins, and serves the
     * classic members that remain). Each partition has exactly one owner at every moment, every
     * record is consumed once, and the committed offsets end at the end offsets.
     */
    @Test
    void classicGroupUpgradedOnlineMemberByMember() {
        Scenario scenario = new Scenario(SLUICE.broker(), "upgrade");
        TrackedMember c1 = scenario.join("classic-1", CLASSIC, Map.of());
        TrackedMember c2 = scenario.join("classic-2", CLASSIC, Map.of());
        TrackedMember c3 = scenario.join("classic-3", CLASSIC, Map.of());
        scenario.awaitBalanced(c1, c2, c3);
        scenario.produceRoundAndAwaitConsumed(c1, c2, c3);
        try (Admin admin = Clients.admin(SLUICE.broker())) {
            assertEquals(GroupType.CLASSIC, describe(admin, scenario.group).type(), "before the upgrade");

            c1.close();
            scenario.awaitBalanced(c2, c3);
            TrackedMember n1 = scenario.join("new-1", CONSUMER, Map.of());
            scenario.awaitBalanced(c2, c3, n1);
            scenario.produceRoundAndAwaitConsumed(c2, c3, n1);
            ConsumerGroupDescription mixed = describe(admin, scenario.group);
            assertEquals(GroupType.CONSUMER, mixed.type(), "once a consumer-protocol member joined");
            assertEquals(Map.of("classic-2", Optional.of(false), "classic-3", Optional.of(false),
                    "new-1", Optional.of(true)), upgradedByClient(mixed), "members' protocols in the mixed group");

            c2.close();
            TrackedMember n2 = scenario.join("new-2", CONSUMER, Map.of());
            scenario.awaitBalanced(c3, n1, n2);
            scenario.produceRoundAndAwaitConsumed(c3, n1, n2);

            c3.close();
            TrackedMember n3 = scenario.join("new-3", CONSUMER, Map.of());
            scenario.awaitBalanced(n1, n2, n3);
            scenario.produceRoundAndAwaitConsumed(n1, n2, n3);
            ConsumerGroupDescription upgraded = describe(admin, scenario.group);
            assertEquals(GroupType.CONSUMER, upgraded.type());
            assertEquals(DEFAULT_ASSIGNOR, upgraded.partitionAssignor());
            assertEquals(Map.of("new-1", Optional.of(true), "new-2", Optional.of(true), "new-3", Optional.of(true)),
                    upgradedByClient(upgraded), "members' protocols after the upgrade");
        }
        scenario.closeMembers();
        scenario.assertNoPartitionHeldTwice();
        scenario.assertEachRecordConsumedOnce(scenario.members);
        scenario.assertCommittedAtTheEnd();
    }

    // ------------------------------------------------------------------ scenario

    /** A topic, a group on it, its ownership ledger, the members started so far and the records produced. */
    private static final class Scenario {
        final SluiceBroker broker;
        final String topic;
        final String group;
        final OwnershipLedger ledger = new OwnershipLedger();
        final List<TrackedMember> members = new ArrayList<>();
        final List<ProducerRecord<String, String>> produced = new ArrayList<>();
        private int rounds;

        Scenario(SluiceBroker broker, String name) {
            this.broker = broker;
            this.topic = Clients.uniqueName(name + "-topic");
            this.group = Clients.uniqueName(name + "-group");
            try (Admin admin = Clients.admin(broker)) {
                Clients.createTopic(admin, topic, PARTITIONS);
            }
        }

        Set<TopicPartition> allPartitions() {
            return partitions(topic, PARTITIONS);
        }

        TrackedMember join(String name, String protocol, Map<String, Object> settings) {
            TrackedMember member = TrackedMember.start(name, broker, group, protocol, TrackedMember.topic(topic),
                    ledger, settings);
            members.add(member);
            return member;
        }

        /**
         * Waits until exactly {@code owners} hold partitions, as many each give or take one, every
         * partition held once, and each member's own assignment matches what its callbacks said.
         */
        void awaitBalanced(TrackedMember... owners) {
            awaitCovered(ledger, allPartitions(), owners);
        }

        void produceRound() {
            List<ProducerRecord<String, String>> round = new ArrayList<>();
            for (int p = 0; p < PARTITIONS; p++) {
                for (int i = 0; i < RECORDS_PER_PARTITION_PER_ROUND; i++) {
                    round.add(new ProducerRecord<>(topic, p, "key-" + p + "-" + i,
                            "round-" + rounds + "-partition-" + p + "-record-" + i));
                }
            }
            rounds++;
            try (KafkaProducer<String, String> producer = Clients.producer(broker)) {
                Clients.sendAll(producer, round);
            }
            produced.addAll(round);
        }

        void produceRoundAndAwaitConsumed(TrackedMember... active) {
            produceRound();
            awaitConsumedAll(active);
        }

        /** Waits until the records consumed by every member ever started add up to those produced. */
        void awaitConsumedAll(TrackedMember... active) {
            awaitCondition(produced.size() + " records consumed in all", () -> consumedCount() >= produced.size(),
                    ledger::toString, active);
        }

        int consumedCount() {
            return members.stream().mapToInt(m -> m.consumed().size()).sum();
        }

        /** Waits until the group's committed offset of every partition is its end offset. */
        void awaitCommittedAtTheEnd(Runnable check) {
            try (Admin admin = Clients.admin(broker)) {
                Map<TopicPartition, Long> end = endOffsets(admin);
                Waits.until("the group committed every end offset " + end, REBALANCE_TIMEOUT, () -> {
                    check.run();
                    return committedOffsets(admin).equals(end);
                }, () -> committedOffsets(admin).toString());
            }
        }

        void closeMembers() {
            for (TrackedMember member : members) {
                member.close();
                assertNull(member.failure(), member.name() + " failed");
            }
        }

        void assertNoPartitionHeldTwice() {
            assertEquals(List.of(), ledger.violations(), "partitions held by two members at once; history:\n"
                    + ledger.history());
            for (TrackedMember member : members) {
                assertEquals(List.of(), member.losses(), member.name() + " lost partitions; history:\n"
                        + ledger.history());
            }
        }

        void assertEachRecordConsumedOnce(Collection<TrackedMember> everyMember) {
            assertEachRecordConsumedOnce(everyMember, Set.of());
        }

        /**
         * Every produced record, except those at {@code readElsewhere} (partition@offset), consumed
         * by exactly one member, exactly once, value intact.
         */
        void assertEachRecordConsumedOnce(Collection<TrackedMember> everyMember, Set<String> readElsewhere) {
            Map<String, String> consumedValues = new HashMap<>();
            List<String> duplicates = new ArrayList<>();
            for (TrackedMember member : everyMember) {
                for (ConsumerRecord<String, String> record : member.consumed()) {
                    String position = record.partition() + "@" + record.offset();
                    if (consumedValues.put(position, record.value()) != null) {
                        duplicates.add(position + " (again by " + member.name() + ")");
                    }
                }
            }
            assertEquals(List.of(), duplicates, "records consumed twice; history:\n" + ledger.history());
            Map<String, String> expected = new HashMap<>();
            Map<Integer, Long> nextOffset = new HashMap<>();
            for (ProducerRecord<String, String> record : produced) {
                long offset = nextOffset.merge(record.partition(), 1L, Long::sum) - 1;
                String position = record.partition() + "@" + offset;
                if (!readElsewhere.contains(position)) {
                    expected.put(position, record.value());
                }
            }
            assertEquals(expected, consumedValues, "records consumed by partition@offset");
        }

        /** The group's committed offsets are the end of every partition once all is consumed. */
        void assertCommittedAtTheEnd() {
            try (Admin admin = Clients.admin(broker)) {
                Map<TopicPartition, Long> end = endOffsets(admin);
                assertEquals((long) rounds * RECORDS_PER_PARTITION_PER_ROUND * PARTITIONS,
                        end.values().stream().mapToLong(Long::longValue).sum(), "records in the topic");
                assertEquals(end, committedOffsets(admin), "committed offsets against end offsets");
            }
        }

        private Map<TopicPartition, Long> endOffsets(Admin admin) {
            Map<TopicPartition, OffsetSpec> latest = allPartitions().stream()
                    .collect(Collectors.toMap(tp -> tp, tp -> OffsetSpec.latest()));
            return Clients.get(admin.listOffsets(latest).all()).entrySet().stream()
                    .collect(Collectors.toMap(Map.Entry::getKey, e -> e.getValue().offset()));
        }

        private Map<TopicPartition, Long> committedOffsets(Admin admin) {
            Map<TopicPartition, OffsetAndMetadata> committed =
                    Clients.get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            Map<TopicPartition, Long> offsets = new HashMap<>();
            committed.forEach((tp, offset) -> {
                if (offset != null) {
                    offsets.put(tp, offset.offset());
                }
            });
            return offsets;
        }

        /** A bounded wait that fails at once, with the members' states, if a member's loop died. */
        void awaitCondition(String what, BooleanSupplier condition, Supplier<String> state,
                TrackedMember... watched) {
            Waits.until(what, REBALANCE_TIMEOUT, () -> {
                assertAlive(watched);
                return condition.getAsBoolean();
            }, () -> Arrays.toString(watched) + " " + state.get());
        }

        void assertAlive(TrackedMember... watched) {
            for (TrackedMember member : watched) {
                if (member.failure() != null) {
                    throw new AssertionError(member.name() + " failed", member.failure());
                }
            }
            List<String> violations = ledger.violations();
            if (!violations.isEmpty()) {
                throw new AssertionError("partitions held by two members at once: " + violations + "; history:\n"
                        + ledger.history());
            }
        }
    }

    // ------------------------------------------------------------------ helpers

    /**
     * Waits until exactly {@code owners} hold {@code expected} between them according to the
     * ledger, as many each give or take one, and each member's own assignment agrees.
     */
    private static void awaitCovered(OwnershipLedger ledger, Set<TopicPartition> expected, TrackedMember... owners) {
        Set<String> names = Arrays.stream(owners).map(TrackedMember::name).collect(Collectors.toSet());
        Waits.until("every partition of " + OwnershipLedger.sorted(expected) + " owned by exactly one of " + names
                + ", balanced", REBALANCE_TIMEOUT, () -> {
                    for (TrackedMember member : owners) {
                        if (member.failure() != null) {
                            throw new AssertionError(member.name() + " failed", member.failure());
                        }
                    }
                    if (!ledger.violations().isEmpty()) {
                        throw new AssertionError("partitions held by two members at once: " + ledger.violations()
                                + "; history:\n" + ledger.history());
                    }
                    Map<String, Set<TopicPartition>> held = ledger.byMember();
                    if (!held.keySet().equals(names) || !ledger.held().equals(expected)) {
                        return false;
                    }
                    int fewest = held.values().stream().mapToInt(Set::size).min().orElse(0);
                    int most = held.values().stream().mapToInt(Set::size).max().orElse(0);
                    return most - fewest <= 1
                            && Arrays.stream(owners).allMatch(m -> m.assignment().equals(held.get(m.name())));
                }, () -> Arrays.toString(owners) + " " + ledger);
    }

    private static Set<TopicPartition> partitions(String topic, int count) {
        return IntStream.range(0, count).mapToObj(p -> new TopicPartition(topic, p)).collect(Collectors.toSet());
    }

    @SafeVarargs
    private static Set<TopicPartition> union(Set<TopicPartition>... sets) {
        Set<TopicPartition> all = new HashSet<>();
        for (Set<TopicPartition> set : sets) {
            all.addAll(set);
        }
        return all;
    }

    /** The partitions revoked from {@code member} by its revocation callbacks after the first {@code from}. */
    private static Set<TopicPartition> revokedSince(TrackedMember member, int from) {
        List<Set<TopicPartition>> revocations = member.revocations();
        return revocations.subList(Math.min(from, revocations.size()), revocations.size()).stream()
                .flatMap(Set::stream).collect(Collectors.toSet());
    }

    private static ConsumerGroupDescription describe(Admin admin, String group) {
        return Clients.get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
    }

    private static Set<String> instanceIds(ConsumerGroupDescription description) {
        return description.members().stream().map(member -> member.groupInstanceId().orElse("(dynamic)"))
                .collect(Collectors.toSet());
    }

    private static MemberDescription memberWithInstance(ConsumerGroupDescription description, String instanceId) {
        return description.members().stream()
                .filter(member -> member.groupInstanceId().equals(Optional.of(instanceId))).findFirst()
                .orElseThrow(() -> new AssertionError("no member " + instanceId + " in " + description));
    }

    private static Map<String, Optional<Boolean>> upgradedByClient(ConsumerGroupDescription description) {
        return description.members().stream()
                .collect(Collectors.toMap(MemberDescription::clientId, MemberDescription::upgraded));
    }

    private static ConfigResource groupResource(String group) {
        return new ConfigResource(ConfigResource.Type.GROUP, group);
    }

    /** IncrementalAlterConfigs SET on the GROUP resource; the admin's error is rethrown unwrapped. */
    private static void alterGroupConfig(Admin admin, String group, Map<String, String> settings) {
        List<AlterConfigOp> ops = settings.entrySet().stream()
                .map(e -> new AlterConfigOp(new ConfigEntry(e.getKey(), e.getValue()), AlterConfigOp.OpType.SET))
                .toList();
        Clients.get(admin.incrementalAlterConfigs(Map.of(groupResource(group), ops)).all());
    }
}
