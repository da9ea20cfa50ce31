import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Time from a consumer joining a group to a stable assignment, with the classic protocol or
 * KIP-848's consumer protocol, members added one at a time.
 *
 * <pre>java -cp KAFKA_CLASSPATH GroupJoinLatency.java BOOTSTRAP PROTOCOL MEMBERS PARTITIONS [HEARTBEAT_MS]</pre>
 *
 * A topic of PARTITIONS partitions is created; then members join one after another. For each,
 * the clock starts when its thread first calls poll and stops when the group is stable: every
 * partition owned by exactly one member (as the members' rebalance callbacks report), every
 * member owning at least one (MEMBERS <= PARTITIONS). Client settings are the Java client's
 * defaults (classic: range assignor, eager; consumer: the broker's uniform assignor), so what is
 * measured is what an application sees; HEARTBEAT_MS sets the classic members' heartbeat.interval.ms
 * (the consumer protocol's interval is the broker's group.consumer.heartbeat.interval.ms). One
 * tab-separated line per join: protocol, members in
 * the group after the join, milliseconds. Each join is bounded by 60 s.
 */
public final class GroupJoinLatency {

    private static final Duration JOIN_BOUND = Duration.ofSeconds(60);

    private static final class Member implements Runnable {
        final Set<TopicPartition> owned = ConcurrentHashMap.newKeySet();
        final AtomicBoolean stop = new AtomicBoolean();
        volatile long firstPollNanos;
        private final Properties config;
        private final String topic;

        Member(Properties config, String topic) {
            this.config = config;
            this.topic = topic;
        }

        @Override
        public void run() {
            try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(config)) {
                consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                    @Override
                    public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                        owned.removeAll(partitions);
                    }

                    @Override
                    public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                        owned.addAll(partitions);
                    }

                    @Override
                    public void onPartitionsLost(Collection<TopicPartition> partitions) {
                        owned.removeAll(partitions);
                    }
                });
                firstPollNanos = System.nanoTime();
                while (!stop.get()) {
                    consumer.poll(Duration.ofMillis(20));
                }
            }
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String protocol = args[1];
        int members = Integer.parseInt(args[2]);
        int partitions = Integer.parseInt(args[3]);
        String topic = "join-" + protocol + "-" + System.nanoTime();
        Properties adminConfig = new Properties();
        adminConfig.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(adminConfig)) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get(30, TimeUnit.SECONDS);
        }
        Properties config = new Properties();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ConsumerConfig.GROUP_ID_CONFIG, topic);
        config.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        if (args.length > 4 && protocol.equals("classic")) {
            config.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, args[4]);
        }
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        List<Member> group = new ArrayList<>();
        List<Thread> threads = new ArrayList<>();
        try {
            for (int i = 0; i < members; i++) {
                Member member = new Member(config, topic);
                group.add(member);
                Thread thread = new Thread(member, "member-" + i);
                threads.add(thread);
                thread.start();
                long deadline = System.nanoTime() + JOIN_BOUND.toNanos();
                while (member.firstPollNanos == 0 || !stable(group, partitions)) {
                    if (System.nanoTime() > deadline) {
                        throw new IllegalStateException("no stable assignment within " + JOIN_BOUND.toSeconds()
                                + " s after member " + (i + 1) + " joined");
                    }
                    Thread.sleep(2);
                }
                long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - member.firstPollNanos);
                System.out.println(protocol + "\t" + (i + 1) + "\t" + millis);
            }
        } finally {
            group.forEach(member -> member.stop.set(true));
            for (Thread thread : threads) {
                thread.join(30_000);
            }
        }
    }

    private static boolean stable(List<Member> group, int partitions) {
        Set<TopicPartition> seen = new HashSet<>();
        for (Member member : group) {
            Set<TopicPartition> owned = Set.copyOf(member.owned);
            if (owned.isEmpty()) {
                return false;
            }
            for (TopicPartition partition : owned) {
                if (!seen.add(partition)) {
                    return false;
                }
            }
        }
        return seen.size() == partitions;
    }

    private GroupJoinLatency() {
    }
}
