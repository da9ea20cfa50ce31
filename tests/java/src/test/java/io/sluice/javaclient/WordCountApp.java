package io.sluice.javaclient;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.IntStream;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;

/**
 * A stateful Kafka Streams word count (split lines, groupBy word through a repartition topic,
 * count into a store backed by a changelog topic), with what the tests need around it: known
 * input lines, the true counts, bounded start and close, and a reader of the output topic.
 */
final class WordCountApp implements AutoCloseable {

    static final String STORE = "word-counts";
    private static final Duration START_TIMEOUT = Duration.ofSeconds(90);
    private static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(30);
    private static final List<String> VOCABULARY = List.of(
            "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
            "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango");

    private final KafkaStreams streams;
    private final AtomicReference<Throwable> failure = new AtomicReference<>();

    /**
     * Builds (but does not start) the application. {@code guarantee} is a
     * {@code processing.guarantee} value; {@code extra} adds or overrides Streams settings.
     */
    WordCountApp(SluiceBroker broker, String applicationId, String inputTopic, String outputTopic, Path stateDir,
            String guarantee, Map<String, Object> extra) {
        this(broker.bootstrapServers(), applicationId, inputTopic, outputTopic, stateDir, guarantee, extra);
    }

    /** The same for a broker known by its address only (the application in a JVM of its own). */
    WordCountApp(String bootstrapServers, String applicationId, String inputTopic, String outputTopic, Path stateDir,
            String guarantee, Map<String, Object> extra) {
        Properties config = new Properties();
        config.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
        config.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
        config.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        config.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        config.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        config.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0); // emit every update
        config.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        config.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 10_000);
        config.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 500);
        config.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        config.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 5);
        config.putAll(extra);
        streams = new KafkaStreams(topology(inputTopic, outputTopic), config);
        streams.setUncaughtExceptionHandler(exception -> {
            failure.compareAndSet(null, exception);
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
    }

    static Topology topology(String inputTopic, String outputTopic) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(inputTopic, Consumed.with(Serdes.String(), Serdes.String()))
                .flatMapValues(line -> Arrays.asList(line.toLowerCase(Locale.ROOT).split("\\s+")))
                .groupBy((key, word) -> word, Grouped.with("by-word", Serdes.String(), Serdes.String()))
                .count(Materialized.as(STORE))
                .toStream()
                .to(outputTopic, Produced.with(Serdes.String(), Serdes.Long()));
        return builder.build();
    }

    /** Starts the application and waits (bounded) until it is RUNNING; fails at once on ERROR. */
    void startAndAwaitRunning() {
        startAndAwaitRunning(START_TIMEOUT);
    }

    void startAndAwaitRunning(Duration timeout) {
        streams.start();
        Waits.until("the streams application is RUNNING", timeout, () -> {
            assertHealthy();
            return streams.state() == KafkaStreams.State.RUNNING;
        }, () -> "state " + streams.state());
    }

    /** Fails the test with the application's own error if it stopped processing. */
    void assertHealthy() {
        Throwable error = failure.get();
        if (error != null || streams.state() == KafkaStreams.State.ERROR
                || streams.state() == KafkaStreams.State.PENDING_ERROR) {
            throw new AssertionError("the streams application failed (state " + streams.state() + ")", error);
        }
    }

    /** Closes the application and leaves the group, so a successor does not wait for a timeout. */
    @Override
    public void close() {
        boolean closed = streams.close(CloseOptions.groupMembershipOperation(
                CloseOptions.GroupMembershipOperation.LEAVE_GROUP).withTimeout(CLOSE_TIMEOUT));
        if (!closed) {
            throw new AssertionError("the streams application did not close within " + CLOSE_TIMEOUT.toSeconds() + " s");
        }
    }

    // ------------------------------------------------------------------ input and expected output

    /** {@code count} lines of 3 to 9 words from a fixed vocabulary, deterministic for a seed. */
    static List<String> lines(int count, long seed) {
        Random random = new Random(seed);
        return IntStream.range(0, count).mapToObj(i -> {
            int words = 3 + random.nextInt(7);
            StringBuilder line = new StringBuilder();
            for (int w = 0; w < words; w++) {
                line.append(w == 0 ? "" : " ").append(VOCABULARY.get(random.nextInt(VOCABULARY.size())));
            }
            return line.toString();
        }).toList();
    }

    static Map<String, Long> trueCounts(List<String> lines) {
        Map<String, Long> counts = new TreeMap<>();
        for (String line : lines) {
            for (String word : line.split("\\s+")) {
                counts.merge(word, 1L, Long::sum);
            }
        }
        return counts;
    }

    /**
     * Reads the output topic from the beginning, keeping the last count per word, which is the
     * final count once all input is processed (records of one word share a partition).
     *
     * <p>It also records every update that is not its word's previous count plus one: with the
     * record cache off, each occurrence of a word emits its new count, so under exactly-once the
     * committed updates of a word are exactly 1, 2, ..., its true count, in order.
     */
    static final class OutputReader implements AutoCloseable {
        private static final int OUT_OF_SEQUENCE_KEPT = 20;

        private final KafkaConsumer<String, Long> consumer;
        private final Map<String, Long> lastCount = new TreeMap<>();
        private final Map<String, Long> largestCount = new HashMap<>();
        private final List<String> outOfSequence = new ArrayList<>();
        private long outOfSequenceCount;
        private long records;

        OutputReader(SluiceBroker broker, String outputTopic, int partitions, boolean readCommitted) {
            Map<String, Object> config = new HashMap<>();
            config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrapServers());
            config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG,
                    StringDeserializer.class.getName());
            config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class.getName());
            config.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, readCommitted ? "read_committed" : "read_uncommitted");
            consumer = new KafkaConsumer<>(config);
            List<TopicPartition> assignment = IntStream.range(0, partitions)
                    .mapToObj(p -> new TopicPartition(outputTopic, p)).toList();
            consumer.assign(assignment);
            consumer.seekToBeginning(assignment);
        }

        /** Polls once (briefly) and folds what arrived into the per-word view. */
        void pollOnce() {
            for (ConsumerRecord<String, Long> record : consumer.poll(Duration.ofMillis(200))) {
                records++;
                long previous = lastCount.getOrDefault(record.key(), 0L);
                if (record.value() == null || record.value() != previous + 1) {
                    outOfSequenceCount++;
                    if (outOfSequence.size() < OUT_OF_SEQUENCE_KEPT) {
                        outOfSequence.add(record.key() + "=" + record.value() + " after " + previous + " (partition "
                                + record.partition() + ", offset " + record.offset() + ")");
                    }
                }
                lastCount.put(record.key(), record.value());
                largestCount.merge(record.key(), record.value(), Math::max);
            }
        }

        Map<String, Long> lastCount() {
            return new TreeMap<>(lastCount);
        }

        /** The largest count ever emitted per word: never above the true count. */
        Map<String, Long> largestCount() {
            return new TreeMap<>(largestCount);
        }

        long records() {
            return records;
        }

        /**
         * The updates that were not their word's previous count plus one (the first
         * {@value #OUT_OF_SEQUENCE_KEPT}, then how many in all); empty when every word counted 1, 2, 3, ...
         */
        String outOfSequence() {
            return outOfSequenceCount == 0 ? ""
                    : outOfSequenceCount + " updates out of sequence, the first: " + outOfSequence;
        }

        @Override
        public void close() {
            consumer.close();
        }
    }
}
