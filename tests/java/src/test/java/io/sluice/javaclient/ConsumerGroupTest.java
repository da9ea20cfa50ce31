package io.sluice.javaclient;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberToRemove;
import org.apache.kafka.clients.admin.RemoveMembersFromConsumerGroupOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Goal: consumer groups on the classic protocol behave as on Kafka: partitions are shared out
 * and moved on join and leave with the eager (range) and the cooperative-sticky assignors,
 * static members rejoin without a rebalance and are handed over when removed by the admin or
 * expired by their session timeout, and committed offsets make every record consumed exactly
 * once, also across a broker restart.
 *
 * <p>Method: real group members ({@link GroupMember}) poll on their own threads and commit after
 * each poll and on revocation. The test produces known records in rounds, changes membership
 * between rounds, waits (bounded) until each member's own view of its assignment shows every
 * partition owned by exactly one member, and finally compares the records consumed, by
 * partition and offset, with the records produced: nothing lost, nothing twice.
 */
class ConsumerGroupTest {

    private static final int PARTITIONS = 4;
    private static final int RECORDS_PER_PARTITION_PER_ROUND = 10;
    private static final Duration REBALANCE_TIMEOUT = Duration.ofSeconds(90);

    @RegisterExtension
    static final SluiceBrokerExtension SLUICE = new SluiceBrokerExtension();

    @Test
    void eagerRangeAssignorRebalancesOnJoinAndLeave() {
        Scenario scenario = new Scenario(SLUICE.broker(), "range");
        Map<String, Object> settings =
                Map.of(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, RangeAssignor.class.getName());
        List<Set<TopicPartition>> revokedFromFirst = scenario.joinThenLeave(settings);
        // Eager: the member that was there first gave up all its partitions when the second joined.
        assertEquals(scenario.allPartitions(), revokedFromFirst.get(0), "first revocation under the eager protocol");
    }

    @Test
    void cooperativeStickyAssignorMovesOnlyWhatChangesOwner() {
        Scenario scenario = new Scenario(SLUICE.broker(), "cooperative");
        Map<String, Object> settings = Map.of(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG,
                CooperativeStickyAssignor.class.getName());
        List<Set<TopicPartition>> revokedFromFirst = scenario.joinThenLeave(settings);
        // Cooperative: only the partitions handed to the newcomer were revoked, never all of them.
        assertEquals(1, revokedFromFirst.size(), "revocations of the first member: " + revokedFromFirst);
        assertEquals(PARTITIONS / 2, revokedFromFirst.get(0).size(), "partitions moved to the second member");
    }

    @Test
    void staticMemberRejoinsWithItsPartitionsAndNoRebalance() {
        Scenario scenario = new Scenario(SLUICE.broker(), "static");
        Map<String, Object> a = Map.of(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-a");
        Map<String, Object> b = Map.of(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-b");
        try (Admin admin = Clients.admin(SLUICE.broker())) {
            GroupMember first = scenario.join("a", a);
            GroupMember second = scenario.join("b", b);
            scenario.awaitOwnedExactlyOnce(first, second);
            scenario.produceRoundAndAwaitConsumed(first, second);
            Set<TopicPartition> ownedByA = first.assignment();
            int generation = second.generation();
            int secondAssignments = second.assignmentCallbacks();

            first.close(); // a static member sends no LeaveGroup: it stays in the group
            ConsumerGroupDescription whileAway = describe(admin, scenario.group);
            assertEquals(Set.of("instance-a", "instance-b"), stableInstanceIds(whileAway),
                    "both static members stay in the group while one is away");

            scenario.produceRound(); // records for A's partitions wait for A
            GroupMember returning = scenario.join("a-again", a);
            scenario.awaitCondition("the returning static member owns its old partitions " + ownedByA,
                    () -> returning.assignment().equals(ownedByA), returning, second);
            scenario.awaitConsumedAll(returning, second);

            assertEquals(generation, returning.generation(), "the rejoin kept the generation");
            assertEquals(generation, second.generation(), "the other member saw no new generation");
            assertEquals(secondAssignments, second.assignmentCallbacks(), "the other member was not rebalanced");
            assertEquals(List.of(), second.revocations(), "nothing was revoked from the other member");
            assertEquals(Set.of("instance-a", "instance-b"), stableInstanceIds(describe(admin, scenario.group)));
            scenario.closeMembers();
            scenario.assertEachRecordConsumedOnce(first, second, returning);
        }
    }

    @Test
    void staticMemberRemovedByAdminHandsItsPartitionsOver() {
        Scenario scenario = new Scenario(SLUICE.broker(), "removed-static");
        GroupMember first = scenario.join("a", Map.of(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-a"));
        GroupMember second = scenario.join("b", Map.of(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-b"));
        scenario.awaitOwnedExactlyOnce(first, second);
        scenario.produceRoundAndAwaitConsumed(first, second);

        first.close(); // still a member until removed
        try (Admin admin = Clients.admin(SLUICE.broker())) {
            RemoveMembersFromConsumerGroupOptions removal =
                    new RemoveMembersFromConsumerGroupOptions(List.of(new MemberToRemove("instance-a")));
            Clients.get(admin.removeMembersFromConsumerGroup(scenario.group, removal).all());
            scenario.awaitOwnedExactlyOnce(second);
            assertEquals(Set.of("instance-b"), stableInstanceIds(describe(admin, scenario.group)));
        }
        scenario.produceRoundAndAwaitConsumed(second);
        scenario.closeMembers();
        scenario.assertEachRecordConsumedOnce(first, second);
    }

    @Test
    void staticMemberThatDoesNotReturnExpiresAfterItsSessionTimeout() {
        Scenario scenario = new Scenario(SLUICE.broker(), "expired-static");
        Map<String, Object> shortSession = Map.of(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 6000);
        Map<String, Object> a = new HashMap<>(shortSession);
        a.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-a");
        Map<String, Object> b = new HashMap<>(shortSession);
        b.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-b");
        GroupMember first = scenario.join("a", a);
        GroupMember second = scenario.join("b", b);
        scenario.awaitOwnedExactlyOnce(first, second);
        scenario.produceRoundAndAwaitConsumed(first, second);

        first.close(); // sends no LeaveGroup; the coordinator expires it after 6 s without heartbeats
        scenario.awaitOwnedExactlyOnce(second);
        try (Admin admin = Clients.admin(SLUICE.broker())) {
            assertEquals(Set.of("instance-b"), stableInstanceIds(describe(admin, scenario.group)));
        }
        scenario.produceRoundAndAwaitConsumed(second);
        scenario.closeMembers();
        scenario.assertEachRecordConsumedOnce(first, second);
    }

    @Test
    void committedOffsetsSurviveGracefulRestartAndCrash() {
        SluiceBroker broker = SLUICE.newBroker("committedOffsetsSurviveGracefulRestartAndCrash");
        String topic = Clients.uniqueName("durable-offsets");
        String group = Clients.uniqueName("durable-group");
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        try (Admin admin = Clients.admin(broker)) {
            Clients.createTopic(admin, topic, 2);
        }
        try (KafkaProducer<String, String> producer = Clients.producer(broker)) {
            List<ProducerRecord<String, String>> records = new ArrayList<>();
            for (int i = 0; i < 10; i++) {
                records.add(new ProducerRecord<>(topic, 0, "k" + i, "p0-" + i));
                records.add(new ProducerRecord<>(topic, 1, "k" + i, "p1-" + i));
            }
            Clients.sendAll(producer, records);
        }
        Map<TopicPartition, OffsetAndMetadata> committed =
                Map.of(p0, new OffsetAndMetadata(6, "six"), p1, new OffsetAndMetadata(10, "ten"));
        try (KafkaConsumer<String, String> consumer = groupConsumer(broker, group)) {
            consumer.subscribe(List.of(topic));
            assertEquals(20, Clients.pollUntilCount(consumer, 20, Clients.CONSUME_TIMEOUT).size());
            consumer.commitSync(committed);
        }

        assertEquals(0, broker.restart(), "exit status after SIGTERM");

        try (KafkaConsumer<String, String> consumer = groupConsumer(broker, group)) {
            assertEquals(committed, consumer.committed(Set.of(p0, p1), Clients.CALL_TIMEOUT),
                    "offsets committed before the restart");
            consumer.subscribe(List.of(topic));
            List<ConsumerRecord<String, String>> rest = Clients.consumeExactly(consumer, 4);
            assertEquals(List.of("p0-6", "p0-7", "p0-8", "p0-9"),
                    rest.stream().map(ConsumerRecord::value).toList(), "consumption resumes at the committed offset");
            consumer.commitSync(Map.of(p0, new OffsetAndMetadata(8, "eight")));
        }

        broker.killAndRestart();

        try (KafkaConsumer<String, String> consumer = groupConsumer(broker, group)) {
            assertEquals(Map.of(p0, new OffsetAndMetadata(8, "eight"), p1, new OffsetAndMetadata(10, "ten")),
                    consumer.committed(Set.of(p0, p1), Clients.CALL_TIMEOUT), "offsets committed before SIGKILL");
        }
    }

    // ------------------------------------------------------------------ scenario

    /** A topic, a group on it, the members started so far, and the records produced so far. */
    private static final class Scenario {
        final SluiceBroker broker;
        final String topic;
        final String group;
        final List<GroupMember> members = new ArrayList<>();
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
            return IntStream.range(0, PARTITIONS).mapToObj(p -> new TopicPartition(topic, p))
                    .collect(Collectors.toSet());
        }

        GroupMember join(String name, Map<String, Object> settings) {
            GroupMember member = GroupMember.start(name, broker, group, topic, settings);
            members.add(member);
            return member;
        }

        /**
         * One member alone; a second joins; the second leaves. Records are produced and consumed
         * in each phase, and the exactly-once check runs at the end. Returns the revocations the
         * first member saw when the second joined.
         */
        List<Set<TopicPartition>> joinThenLeave(Map<String, Object> settings) {
            GroupMember first = join("first", settings);
            awaitOwnedExactlyOnce(first);
            produceRoundAndAwaitConsumed(first);

            GroupMember second = join("second", settings);
            awaitOwnedExactlyOnce(first, second);
            List<Set<TopicPartition>> revokedOnJoin = first.revocations();
            produceRoundAndAwaitConsumed(first, second);
            assertFalse(second.consumed().isEmpty(), "the second member consumed its share");

            second.close();
            awaitOwnedExactlyOnce(first);
            produceRoundAndAwaitConsumed(first);

            closeMembers();
            assertEachRecordConsumedOnce(first, second);
            assertCommittedAtTheEnd();
            return revokedOnJoin;
        }

        /** Waits until the members' assignments are disjoint, non-empty and cover every partition. */
        void awaitOwnedExactlyOnce(GroupMember... owners) {
            awaitCondition("every partition owned by exactly one of " + names(owners), () -> {
                Set<TopicPartition> union = new HashSet<>();
                int total = 0;
                for (GroupMember member : owners) {
                    if (member.assignment().isEmpty()) {
                        return false;
                    }
                    union.addAll(member.assignment());
                    total += member.assignment().size();
                }
                int generation = owners[0].generation();
                boolean sameGeneration = Arrays.stream(owners).allMatch(m -> m.generation() == generation);
                return sameGeneration && total == PARTITIONS && union.equals(allPartitions());
            }, owners);
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

        void produceRoundAndAwaitConsumed(GroupMember... active) {
            produceRound();
            awaitConsumedAll(active);
        }

        /** Waits until the records consumed by every member ever started add up to those produced. */
        void awaitConsumedAll(GroupMember... active) {
            awaitCondition(produced.size() + " records consumed in all",
                    () -> consumedCount() >= produced.size(), active);
        }

        private int consumedCount() {
            return members.stream().mapToInt(m -> m.consumed().size()).sum();
        }

        void closeMembers() {
            for (GroupMember member : members) {
                member.close();
                assertNull(member.failure(), member.name() + " failed");
            }
        }

        /** Every produced record consumed by exactly one member, exactly once, value intact. */
        void assertEachRecordConsumedOnce(GroupMember... everyMember) {
            Map<String, String> consumedValues = new HashMap<>();
            List<String> duplicates = new ArrayList<>();
            for (GroupMember member : everyMember) {
                for (ConsumerRecord<String, String> record : member.consumed()) {
                    String position = record.partition() + "@" + record.offset();
                    if (consumedValues.put(position, record.value()) != null) {
                        duplicates.add(position + " (again by " + member.name() + ")");
                    }
                }
            }
            assertEquals(List.of(), duplicates, "records consumed twice");
            Map<String, String> expected = new HashMap<>();
            Map<Integer, Long> nextOffset = new HashMap<>();
            for (ProducerRecord<String, String> record : produced) {
                long offset = nextOffset.merge(record.partition(), 1L, Long::sum) - 1;
                expected.put(record.partition() + "@" + offset, record.value());
            }
            assertEquals(expected, consumedValues, "records consumed by partition@offset");
        }

        /** The group's committed offsets are the end of every partition once all is consumed. */
        void assertCommittedAtTheEnd() {
            try (Admin admin = Clients.admin(broker)) {
                Map<TopicPartition, OffsetAndMetadata> committed =
                        Clients.get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
                long perPartition = (long) rounds * RECORDS_PER_PARTITION_PER_ROUND;
                for (TopicPartition partition : allPartitions()) {
                    assertEquals(perPartition, committed.get(partition).offset(), "committed offset of " + partition);
                }
            }
        }

        /** A bounded wait that fails at once, with the members' states, if a member's loop died. */
        void awaitCondition(String what, BooleanSupplier condition, GroupMember... watched) {
            Waits.until(what, REBALANCE_TIMEOUT, () -> {
                for (GroupMember member : watched) {
                    if (member.failure() != null) {
                        throw new AssertionError(member.name() + " failed while waiting until " + what,
                                member.failure());
                    }
                }
                return condition.getAsBoolean();
            }, () -> Arrays.toString(watched));
        }

        private static String names(GroupMember... members) {
            return Arrays.stream(members).map(GroupMember::name).collect(Collectors.joining(", "));
        }
    }

    // ------------------------------------------------------------------ helpers

    private static KafkaConsumer<String, String> groupConsumer(SluiceBroker broker, String group) {
        return Clients.consumer(broker, Map.of(
                ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic"));
    }

    private static ConsumerGroupDescription describe(Admin admin, String group) {
        return Clients.get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
    }

    /** The group.instance.id of each member, after checking that the group is Stable. */
    private static Set<String> stableInstanceIds(ConsumerGroupDescription description) {
        assertEquals(GroupState.STABLE, description.groupState(), "group state");
        return description.members().stream()
                .map(member -> member.groupInstanceId().orElse("(dynamic)"))
                .collect(Collectors.toSet());
    }
}
