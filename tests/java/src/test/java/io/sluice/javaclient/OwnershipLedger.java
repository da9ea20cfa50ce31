package io.sluice.javaclient;

import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.stream.Collectors;

import org.apache.kafka.common.TopicPartition;

/**
 * Who owns each partition of a group at every moment, as the members' own rebalance callbacks
 * say, shared by the members of one test.
 *
 * <p>A member takes a partition when its {@code onPartitionsAssigned} names it, and gives it up
 * when {@code onPartitionsRevoked} (after the callback's commit) or {@code onPartitionsLost}
 * names it. Both protocols hand a partition to its next owner only after its previous owner's
 * revocation callback returned, so a partition taken while another member still holds it is a
 * violation: two members could be reading it at once. Violations are kept, not thrown, so that
 * the callback (on the member's thread) does not break the member; tests assert there are none.
 *
 * <p>Every method is synchronized: the members' threads write, the test thread reads.
 */
final class OwnershipLedger {

    private final long startNanos = System.nanoTime();
    private final Map<TopicPartition, String> owners = new HashMap<>();
    private final List<String> violations = new ArrayList<>();
    private final List<String> events = new ArrayList<>();

    /** {@code member} now holds {@code partitions}; one still held by another member is a violation. */
    synchronized void take(String member, Collection<TopicPartition> partitions) {
        for (TopicPartition partition : partitions) {
            String previous = owners.putIfAbsent(partition, member);
            if (previous != null && !previous.equals(member)) {
                violations.add(partition + " assigned to " + member + " while " + previous + " held it");
                owners.put(partition, member);
            }
        }
        log(member + " took " + sorted(partitions));
    }

    /** {@code member} no longer holds {@code partitions} (revoked after its commit, or lost). */
    synchronized void release(String member, Collection<TopicPartition> partitions, String how) {
        for (TopicPartition partition : partitions) {
            owners.remove(partition, member);
        }
        log(member + " " + how + " " + sorted(partitions));
    }

    /** The partitions each member holds now (members holding none are absent). */
    synchronized Map<String, Set<TopicPartition>> byMember() {
        return owners.entrySet().stream().collect(Collectors.groupingBy(Map.Entry::getValue, TreeMap::new,
                Collectors.mapping(Map.Entry::getKey, Collectors.toSet())));
    }

    synchronized Set<TopicPartition> held() {
        return Set.copyOf(owners.keySet());
    }

    synchronized List<String> violations() {
        return List.copyOf(violations);
    }

    /** Every take and release so far, with its time since the ledger was created, for failure messages. */
    synchronized String history() {
        return String.join("\n", events);
    }

    @Override
    public synchronized String toString() {
        return "owners " + byMember() + (violations.isEmpty() ? "" : ", violations " + violations);
    }

    private void log(String event) {
        events.add(String.format("%8.3f s  %s", (System.nanoTime() - startNanos) / 1e9, event));
    }

    static List<String> sorted(Collection<TopicPartition> partitions) {
        return partitions.stream().map(TopicPartition::toString).sorted().toList();
    }
}
