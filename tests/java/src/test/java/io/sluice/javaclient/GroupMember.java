package io.sluice.javaclient;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;

/**
 * One consumer-group member running the usual application loop on its own thread: poll, record
 * what arrived, commit synchronously; and commit again when partitions are revoked, so that no
 * record is delivered twice when ownership moves.
 *
 * <p>The test thread reads what the member saw (assignment, generation, records, revocations)
 * through thread-safe snapshots; {@link #close()} ends the loop and closes the consumer, bounded.
 */
final class GroupMember implements AutoCloseable {

    private static final Duration POLL = Duration.ofMillis(100);
    private static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(30);

    private final String name;
    private final KafkaConsumer<String, String> consumer;
    private final String topic;
    private final Thread thread;
    private final List<ConsumerRecord<String, String>> consumed = new CopyOnWriteArrayList<>();
    private final List<Set<TopicPartition>> revocations = new CopyOnWriteArrayList<>();
    private final AtomicInteger assignmentCallbacks = new AtomicInteger();
    private volatile Set<TopicPartition> assignment = Set.of();
    private volatile int generation = -1;
    private volatile boolean running = true;
    private volatile Throwable failure;

    /**
     * A member of {@code group} on the classic protocol with the given extra consumer settings
     * (assignor, group.instance.id, ...); starts polling {@code topic} at once.
     */
    static GroupMember start(String name, SluiceBroker broker, String group, String topic,
            Map<String, Object> settings) {
        Map<String, Object> config = new HashMap<>();
        config.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        config.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        config.put(ConsumerConfig.CLIENT_ID_CONFIG, name);
        config.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 500);
        config.putAll(settings);
        GroupMember member = new GroupMember(name, Clients.consumer(broker, config), topic);
        member.thread.start();
        return member;
    }

    private GroupMember(String name, KafkaConsumer<String, String> consumer, String topic) {
        this.name = name;
        this.consumer = consumer;
        this.topic = topic;
        this.thread = new Thread(this::run, "member-" + name);
        this.thread.setDaemon(true);
    }

    private void run() {
        try {
            consumer.subscribe(List.of(topic), new CommittingListener());
            while (running) {
                ConsumerRecords<String, String> records = consumer.poll(POLL);
                records.forEach(consumed::add);
                if (!records.isEmpty()) {
                    commitProcessed();
                }
                assignment = Set.copyOf(consumer.assignment());
                generation = consumer.groupMetadata().generationId();
            }
        } catch (Throwable t) {
            failure = t;
        } finally {
            try {
                consumer.close(CloseOptions.timeout(CLOSE_TIMEOUT));
            } catch (Throwable t) {
                if (failure == null) {
                    failure = t;
                }
            }
            assignment = Set.of();
        }
    }

    /**
     * Commits the position of every assigned partition. A rebalance that starts between poll and
     * commit is no error: the revocation callback commits before the partitions move.
     */
    private void commitProcessed() {
        try {
            consumer.commitSync();
        } catch (RebalanceInProgressException e) {
            // The next poll completes the rebalance; onPartitionsRevoked commits what moves away.
        }
    }

    private final class CommittingListener implements ConsumerRebalanceListener {
        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            if (!partitions.isEmpty()) {
                revocations.add(Set.copyOf(partitions));
                consumer.commitSync();
            }
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            assignmentCallbacks.incrementAndGet();
        }
    }

    // ------------------------------------------------------------------ what the member saw

    String name() {
        return name;
    }

    /** The partitions owned after the member's last poll; empty once closed. */
    Set<TopicPartition> assignment() {
        return assignment;
    }

    /** The group generation after the member's last poll (-1 before it first joined). */
    int generation() {
        return generation;
    }

    List<ConsumerRecord<String, String>> consumed() {
        return new ArrayList<>(consumed);
    }

    /** The non-empty sets of partitions each revocation callback took away, in order. */
    List<Set<TopicPartition>> revocations() {
        return new ArrayList<>(revocations);
    }

    /** How many times the assignment callback ran (once per completed rebalance). */
    int assignmentCallbacks() {
        return assignmentCallbacks.get();
    }

    /** The exception that ended the loop, if one did. */
    Throwable failure() {
        return failure;
    }

    @Override
    public String toString() {
        return name + "{assignment=" + assignment + ", generation=" + generation + ", consumed=" + consumed.size()
                + (failure == null ? "" : ", failure=" + failure) + "}";
    }

    /** Ends the loop and closes the consumer (leaving the group unless it is static), bounded. */
    @Override
    public void close() {
        running = false;
        try {
            thread.join(CLOSE_TIMEOUT.plusSeconds(10).toMillis());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (thread.isAlive()) {
            throw new AssertionError("member " + name + " did not stop within "
                    + CLOSE_TIMEOUT.plusSeconds(10).toSeconds() + " s");
        }
    }
}
