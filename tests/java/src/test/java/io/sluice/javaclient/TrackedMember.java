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
import java.util.function.BiConsumer;

import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.CommitFailedException;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.errors.StaleMemberEpochException;

/**
 * One consumer-group member on either group protocol ({@code consumer}, KIP-848, or
 * {@code classic}) running the usual application loop on its own thread: poll, record what
 * arrived, commit synchronously; and commit again in {@code onPartitionsRevoked}, so that no
 * record is delivered twice when a partition moves. Every assignment, revocation and loss is
 * also written to an {@link OwnershipLedger} shared with the other members of the test.
 *
 * <p>The test thread reads what the member saw (assignment, member epoch, records, revocations)
 * through thread-safe snapshots; {@link #close()} ends the loop and closes the consumer, bounded.
 * A {@code consumer}-protocol member gets none of the classic session settings (the client
 * refuses them: the coordinator decides the session timeout and heartbeat interval).
 */
final class TrackedMember implements AutoCloseable {

    /** How a member subscribes: by topic names or by a {@code SubscriptionPattern}. */
    @FunctionalInterface
    interface Subscription extends BiConsumer<KafkaConsumer<String, String>, ConsumerRebalanceListener> {
    }

    static final String CONSUMER_PROTOCOL = "consumer";
    static final String CLASSIC_PROTOCOL = "classic";

    private static final Duration POLL = Duration.ofMillis(100);
    private static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(30);

    private final String name;
    private final KafkaConsumer<String, String> consumer;
    private final Subscription subscription;
    private final OwnershipLedger ledger;
    private final Thread thread;
    private final List<ConsumerRecord<String, String>> consumed = new CopyOnWriteArrayList<>();
    private final List<Set<TopicPartition>> revocations = new CopyOnWriteArrayList<>();
    private final List<Set<TopicPartition>> losses = new CopyOnWriteArrayList<>();
    private final List<Set<TopicPartition>> additions = new CopyOnWriteArrayList<>();
    private final AtomicInteger skippedCommits = new AtomicInteger();
    private volatile Set<TopicPartition> assignment = Set.of();
    private volatile int memberEpoch = -1;
    private volatile String memberId = "";
    private volatile boolean running = true;
    private volatile Throwable failure;

    /**
     * Starts a member of {@code group} on {@code protocol} with extra consumer settings
     * ({@code group.instance.id}, ...); it subscribes at once and starts polling.
     */
    static TrackedMember start(String name, SluiceBroker broker, String group, String protocol,
            Subscription subscription, OwnershipLedger ledger, Map<String, Object> settings) {
        Map<String, Object> config = new HashMap<>();
        config.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        config.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        config.put(ConsumerConfig.CLIENT_ID_CONFIG, name);
        if (CLASSIC_PROTOCOL.equals(protocol)) {
            config.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 500);
        }
        config.putAll(settings);
        TrackedMember member = new TrackedMember(name, Clients.consumer(broker, config), subscription, ledger);
        member.thread.start();
        return member;
    }

    /** A subscription to one topic by name. */
    static Subscription topic(String topic) {
        return (consumer, listener) -> consumer.subscribe(List.of(topic), listener);
    }

    private TrackedMember(String name, KafkaConsumer<String, String> consumer, Subscription subscription,
            OwnershipLedger ledger) {
        this.name = name;
        this.consumer = consumer;
        this.subscription = subscription;
        this.ledger = ledger;
        this.thread = new Thread(this::run, "member-" + name);
        this.thread.setDaemon(true);
    }

    private void run() {
        try {
            subscription.accept(consumer, new LedgerListener());
            while (running) {
                ConsumerRecords<String, String> records = consumer.poll(POLL);
                records.forEach(consumed::add);
                if (!records.isEmpty()) {
                    commitProcessed();
                }
                assignment = Set.copyOf(consumer.assignment());
                ConsumerGroupMetadata metadata = consumer.groupMetadata();
                memberEpoch = metadata.generationId();
                memberId = metadata.memberId();
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
     * Commits the position of every assigned partition. A commit refused because the assignment
     * is changing is no error: whatever moves away is committed by the revocation callback first.
     */
    private void commitProcessed() {
        try {
            consumer.commitSync();
        } catch (RebalanceInProgressException | CommitFailedException | StaleMemberEpochException e) {
            skippedCommits.incrementAndGet();
        }
    }

    private final class LedgerListener implements ConsumerRebalanceListener {
        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            if (partitions.isEmpty()) {
                return;
            }
            revocations.add(Set.copyOf(partitions));
            try {
                consumer.commitSync();
            } finally {
                ledger.release(name, partitions, "revoked");
            }
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            if (!partitions.isEmpty()) {
                additions.add(Set.copyOf(partitions));
                ledger.take(name, partitions);
            }
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> partitions) {
            if (!partitions.isEmpty()) {
                losses.add(Set.copyOf(partitions));
                ledger.release(name, partitions, "lost");
            }
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

    /** The member epoch (the generation, on the classic protocol) after the last poll; -1 before. */
    int memberEpoch() {
        return memberEpoch;
    }

    /** The member id after the last poll (chosen by the client on the consumer protocol). */
    String memberId() {
        return memberId;
    }

    List<ConsumerRecord<String, String>> consumed() {
        return new ArrayList<>(consumed);
    }

    /** The non-empty sets of partitions each revocation callback took away, in order. */
    List<Set<TopicPartition>> revocations() {
        return new ArrayList<>(revocations);
    }

    /** The non-empty sets of partitions each assignment callback added, in order. */
    List<Set<TopicPartition>> additions() {
        return new ArrayList<>(additions);
    }

    /** The non-empty sets of partitions reported lost (fenced or expired member), in order. */
    List<Set<TopicPartition>> losses() {
        return new ArrayList<>(losses);
    }

    /** The exception that ended the loop, if one did. */
    Throwable failure() {
        return failure;
    }

    @Override
    public String toString() {
        return name + "{assignment=" + OwnershipLedger.sorted(assignment) + ", epoch=" + memberEpoch
                + ", consumed=" + consumed.size() + ", revocations=" + revocations.size()
                + (losses.isEmpty() ? "" : ", lost=" + losses)
                + (skippedCommits.get() == 0 ? "" : ", skippedCommits=" + skippedCommits.get())
                + (failure == null ? "" : ", failure=" + failure) + "}";
    }

    /**
     * Ends the loop and closes the consumer, bounded: a dynamic member leaves the group, a static
     * one ({@code group.instance.id}) stays in it until its session timeout.
     */
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
