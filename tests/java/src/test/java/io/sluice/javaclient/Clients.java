package io.sluice.javaclient;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Java clients pointed at a {@link SluiceBroker}, with the client defaults left alone except
 * where a test needs otherwise, plus bounded produce/consume helpers shared by the tests.
 */
public final class Clients {

    /** Bound for one admin call or one acknowledged send. */
    public static final Duration CALL_TIMEOUT = Duration.ofSeconds(30);

    /** Bound for reading back records that are already written. */
    public static final Duration CONSUME_TIMEOUT = Duration.ofSeconds(60);

    private static final Duration POLL_INTERVAL = Duration.ofMillis(200);
    private static final Duration NOTHING_MORE_WAIT = Duration.ofMillis(500);
    private static final AtomicInteger NAME_COUNTER = new AtomicInteger();

    private Clients() {
    }

    /** A topic, group or application name no other test (or earlier run) uses. */
    public static String uniqueName(String prefix) {
        return prefix + "-" + NAME_COUNTER.incrementAndGet() + "-"
                + Integer.toHexString(ThreadLocalRandom.current().nextInt(1 << 24));
    }

    // ------------------------------------------------------------------ factories

    public static Admin admin(SluiceBroker broker) {
        Map<String, Object> config = new HashMap<>();
        config.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrapServers());
        config.put(AdminClientConfig.CLIENT_ID_CONFIG, uniqueName("admin"));
        return Admin.create(config);
    }

    /** A String producer with the Java client's defaults (acks=all, idempotence on). */
    public static KafkaProducer<String, String> producer(SluiceBroker broker, Map<String, Object> overrides) {
        Map<String, Object> config = new HashMap<>();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrapServers());
        config.put(ProducerConfig.CLIENT_ID_CONFIG, uniqueName("producer"));
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        config.putAll(overrides);
        return new KafkaProducer<>(config);
    }

    public static KafkaProducer<String, String> producer(SluiceBroker broker) {
        return producer(broker, Map.of());
    }

    /**
     * A String consumer that starts from the earliest offset and never commits on its own; it
     * joins no group unless the overrides set {@code group.id}.
     */
    public static KafkaConsumer<String, String> consumer(SluiceBroker broker, Map<String, Object> overrides) {
        Map<String, Object> config = new HashMap<>();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrapServers());
        config.put(ConsumerConfig.CLIENT_ID_CONFIG, uniqueName("consumer"));
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        config.putAll(overrides);
        return new KafkaConsumer<>(config);
    }

    public static KafkaConsumer<String, String> consumer(SluiceBroker broker) {
        return consumer(broker, Map.of());
    }

    // ------------------------------------------------------------------ admin

    public static void createTopic(Admin admin, String topic, int partitions, Map<String, String> configs) {
        NewTopic newTopic = new NewTopic(topic, partitions, (short) 1).configs(configs);
        get(admin.createTopics(List.of(newTopic)).all());
    }

    public static void createTopic(Admin admin, String topic, int partitions) {
        createTopic(admin, topic, partitions, Map.of());
    }

    /** The value of a Kafka future within {@link #CALL_TIMEOUT}; its failure is rethrown unwrapped. */
    public static <T> T get(KafkaFuture<T> future) {
        return get((Future<T>) future);
    }

    public static <T> T get(Future<T> future) {
        try {
            return future.get(CALL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            Throwable cause = e.getCause();
            if (cause instanceof RuntimeException runtime) {
                throw runtime;
            }
            if (cause instanceof Error error) {
                throw error;
            }
            throw new IllegalStateException(cause);
        } catch (TimeoutException e) {
            throw new AssertionError("no answer within " + CALL_TIMEOUT.toSeconds() + " s", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }

    // ------------------------------------------------------------------ produce and consume

    /** Sends every record, flushes, and returns each acknowledgement in order. */
    public static <K, V> List<RecordMetadata> sendAll(KafkaProducer<K, V> producer, List<ProducerRecord<K, V>> records) {
        List<Future<RecordMetadata>> acks = new ArrayList<>(records.size());
        for (ProducerRecord<K, V> record : records) {
            acks.add(producer.send(record));
        }
        producer.flush();
        List<RecordMetadata> metadata = new ArrayList<>(records.size());
        for (Future<RecordMetadata> ack : acks) {
            metadata.add(get(ack));
        }
        return metadata;
    }

    /**
     * Polls until exactly {@code count} records arrived (bounded by {@link #CONSUME_TIMEOUT}), then
     * polls once more briefly and asserts that nothing further arrives.
     */
    public static <K, V> List<ConsumerRecord<K, V>> consumeExactly(KafkaConsumer<K, V> consumer, int count) {
        List<ConsumerRecord<K, V>> received = pollUntilCount(consumer, count, CONSUME_TIMEOUT);
        assertEquals(count, received.size(), "records received within " + CONSUME_TIMEOUT.toSeconds() + " s");
        ConsumerRecords<K, V> extra = consumer.poll(NOTHING_MORE_WAIT);
        assertEquals(0, extra.count(), () -> "records beyond the expected " + count + ": " + extra.count());
        return received;
    }

    /** Polls until at least {@code count} records arrived or the timeout passed; returns what came. */
    public static <K, V> List<ConsumerRecord<K, V>> pollUntilCount(KafkaConsumer<K, V> consumer, int count,
            Duration timeout) {
        List<ConsumerRecord<K, V>> received = new ArrayList<>();
        long deadline = System.nanoTime() + timeout.toNanos();
        long maxPolls = timeout.toMillis() / POLL_INTERVAL.toMillis() + 1;
        for (long polls = 0; polls < maxPolls && received.size() < count && System.nanoTime() < deadline; polls++) {
            for (ConsumerRecord<K, V> record : consumer.poll(POLL_INTERVAL)) {
                received.add(record);
            }
        }
        return received;
    }
}
