package io.sluice.javaclient;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Goal: what the Java producer writes is what the Java consumer reads back, byte for byte, with
 * the producer's defaults (idempotence on, acks=all) and with every compression codec; and the
 * record-level topic settings the Java client sees (LogAppendTime, max.message.bytes) and the
 * fetch of a record larger than the consumer's fetch limits behave as on Kafka.
 *
 * <p>Method: produce records with explicit partitions, keys (some null), values (some null),
 * headers (repeated keys, null values) and explicit CreateTime timestamps; check each
 * acknowledgement; then read every partition from the beginning with {@code assign()} and compare
 * each record, its offset (dense from 0) and its timestamp with what was sent, and check that
 * nothing more arrives. The other tests check one behaviour each with a few records.
 */
class ProduceConsumeTest {

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

    @Test
    void defaultProducerRecordsReadBackExactly() {
        String topic = Clients.uniqueName("defaults");
        int partitions = 3;
        Clients.createTopic(admin, topic, partitions);
        List<ProducerRecord<String, String>> sent = records(topic, partitions, 600, 7);

        List<RecordMetadata> acks;
        try (KafkaProducer<String, String> producer = Clients.producer(SLUICE.broker())) {
            acks = Clients.sendAll(producer, sent);
        }

        assertAcknowledgedDensely(sent, acks);
        assertReadBackExactly(topic, partitions, sent);
    }

    @ParameterizedTest(name = "compression.type={0}")
    @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
    void everyCompressionCodecReadsBackExactly(String codec) {
        String topic = Clients.uniqueName("codec-" + codec);
        int partitions = 2;
        Clients.createTopic(admin, topic, partitions);
        List<ProducerRecord<String, String>> sent = records(topic, partitions, 1500, 11);

        List<RecordMetadata> acks;
        Map<String, Object> batching = Map.of(
                ProducerConfig.COMPRESSION_TYPE_CONFIG, codec,
                ProducerConfig.LINGER_MS_CONFIG, 50,
                ProducerConfig.BATCH_SIZE_CONFIG, 64 * 1024);
        try (KafkaProducer<String, String> producer = Clients.producer(SLUICE.broker(), batching)) {
            acks = Clients.sendAll(producer, sent);
        }

        assertAcknowledgedDensely(sent, acks);
        assertReadBackExactly(topic, partitions, sent);
    }

    @Test
    void logAppendTimeTopicStampsRecordsWithTheBrokerClock() {
        String topic = Clients.uniqueName("log-append-time");
        Clients.createTopic(admin, topic, 1, Map.of("message.timestamp.type", "LogAppendTime"));
        long producerTimestamp = System.currentTimeMillis() - 3_600_000L;
        long before = System.currentTimeMillis();
        List<RecordMetadata> acks;
        try (KafkaProducer<String, String> producer = Clients.producer(SLUICE.broker())) {
            acks = Clients.sendAll(producer, List.of(
                    new ProducerRecord<>(topic, 0, producerTimestamp, "k0", "v0"),
                    new ProducerRecord<>(topic, 0, producerTimestamp, "k1", "v1")));
        }
        long after = System.currentTimeMillis();
        for (RecordMetadata ack : acks) {
            assertTrue(ack.timestamp() >= before && ack.timestamp() <= after,
                    "acknowledged LogAppendTime " + ack.timestamp() + " within [" + before + ", " + after + "]");
        }
        try (KafkaConsumer<String, String> consumer = Clients.consumer(SLUICE.broker())) {
            consumer.assign(List.of(new TopicPartition(topic, 0)));
            List<ConsumerRecord<String, String>> records = Clients.consumeExactly(consumer, 2);
            for (int i = 0; i < records.size(); i++) {
                assertEquals(TimestampType.LOG_APPEND_TIME, records.get(i).timestampType());
                assertEquals(acks.get(i).timestamp(), records.get(i).timestamp(), "timestamp of record " + i);
            }
        }
    }

    @Test
    void recordAboveTheTopicMaxMessageBytesIsRefused() {
        String topic = Clients.uniqueName("max-message-bytes");
        Clients.createTopic(admin, topic, 1, Map.of("max.message.bytes", "10000"));
        try (KafkaProducer<String, String> producer = Clients.producer(SLUICE.broker())) {
            ExecutionException refused = assertThrows(ExecutionException.class,
                    () -> producer.send(new ProducerRecord<>(topic, 0, "big", "x".repeat(20_000)))
                            .get(Clients.CALL_TIMEOUT.toSeconds(), TimeUnit.SECONDS));
            assertInstanceOf(RecordTooLargeException.class, refused.getCause());
            assertEquals(0, Clients.sendAll(producer, List.of(new ProducerRecord<>(topic, 0, "small", "fits")))
                    .get(0).offset(), "the refused record took no offset");
        }
    }

    @Test
    void recordLargerThanTheFetchLimitsIsStillReturned() {
        String topic = Clients.uniqueName("large-record");
        Clients.createTopic(admin, topic, 1);
        String large = "L".repeat(300_000);
        try (KafkaProducer<String, String> producer = Clients.producer(SLUICE.broker())) {
            Clients.sendAll(producer, List.of(
                    new ProducerRecord<>(topic, 0, "large", large),
                    new ProducerRecord<>(topic, 0, "small", "after")));
        }
        Map<String, Object> tinyFetches = Map.of(
                ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, 1024,
                ConsumerConfig.FETCH_MAX_BYTES_CONFIG, 1024);
        try (KafkaConsumer<String, String> consumer = Clients.consumer(SLUICE.broker(), tinyFetches)) {
            consumer.assign(List.of(new TopicPartition(topic, 0)));
            List<ConsumerRecord<String, String>> records = Clients.consumeExactly(consumer, 2);
            assertEquals(large, records.get(0).value(), "the first batch is returned whole despite the limits");
            assertEquals("after", records.get(1).value());
        }
    }

    // ------------------------------------------------------------------ data

    /**
     * {@code count} records spread round-robin over the partitions, with deterministic keys,
     * values, headers and timestamps; every 50th key and every 97th value is null.
     */
    private static List<ProducerRecord<String, String>> records(String topic, int partitions, int count, long seed) {
        Random random = new Random(seed);
        long baseTimestamp = System.currentTimeMillis() - 3_600_000L;
        List<ProducerRecord<String, String>> records = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            String key = i % 50 == 0 ? null : "key-" + i;
            String value = i % 97 == 0 ? null : "value-" + i + "-" + "abcdefgh".repeat(random.nextInt(40));
            byte[] opaque = new byte[random.nextInt(16)];
            random.nextBytes(opaque);
            List<Header> headers = List.of(
                    new RecordHeader("index", ByteBuffer.allocate(4).putInt(i).array()),
                    new RecordHeader("opaque", opaque),
                    new RecordHeader("repeated", "first".getBytes(StandardCharsets.UTF_8)),
                    new RecordHeader("repeated", "second".getBytes(StandardCharsets.UTF_8)),
                    new RecordHeader("no-value", null));
            long timestamp = baseTimestamp + i * 13L + random.nextInt(5);
            records.add(new ProducerRecord<>(topic, i % partitions, timestamp, key, value, headers));
        }
        return records;
    }

    // ------------------------------------------------------------------ checks

    /** Each acknowledgement names the record's partition, the next offset there, and its timestamp. */
    private static void assertAcknowledgedDensely(List<ProducerRecord<String, String>> sent, List<RecordMetadata> acks) {
        Map<Integer, Long> nextOffset = new TreeMap<>();
        for (int i = 0; i < sent.size(); i++) {
            ProducerRecord<String, String> record = sent.get(i);
            RecordMetadata ack = acks.get(i);
            long expectedOffset = nextOffset.merge(record.partition(), 1L, Long::sum) - 1;
            assertEquals(record.partition(), ack.partition(), "partition of ack " + i);
            assertEquals(expectedOffset, ack.offset(), "offset of ack " + i);
            assertEquals(record.timestamp(), ack.timestamp(), "timestamp of ack " + i);
        }
    }

    /** Reads every partition from offset 0 with assign() and compares record by record. */
    private static void assertReadBackExactly(String topic, int partitions, List<ProducerRecord<String, String>> sent) {
        List<TopicPartition> assignment = IntStream.range(0, partitions)
                .mapToObj(p -> new TopicPartition(topic, p)).toList();
        List<ConsumerRecord<String, String>> received;
        try (KafkaConsumer<String, String> consumer = Clients.consumer(SLUICE.broker())) {
            consumer.assign(assignment);
            consumer.seekToBeginning(assignment);
            received = Clients.consumeExactly(consumer, sent.size());
        }
        for (int p = 0; p < partitions; p++) {
            int partition = p;
            List<ProducerRecord<String, String>> expected =
                    sent.stream().filter(r -> r.partition() == partition).toList();
            List<ConsumerRecord<String, String>> actual =
                    received.stream().filter(r -> r.partition() == partition).toList();
            assertEquals(expected.size(), actual.size(), "records in partition " + partition);
            for (int i = 0; i < expected.size(); i++) {
                assertSameRecord(expected.get(i), i, actual.get(i));
            }
        }
    }

    private static void assertSameRecord(ProducerRecord<String, String> expected, long expectedOffset,
            ConsumerRecord<String, String> actual) {
        String where = expected.topic() + "-" + expected.partition() + "@" + expectedOffset;
        assertEquals(expectedOffset, actual.offset(), "offset of " + where);
        assertEquals(expected.key(), actual.key(), "key of " + where);
        assertEquals(expected.value(), actual.value(), "value of " + where);
        assertEquals(TimestampType.CREATE_TIME, actual.timestampType(), "timestamp type of " + where);
        assertEquals(expected.timestamp(), actual.timestamp(), "timestamp of " + where);
        Header[] expectedHeaders = expected.headers().toArray();
        Header[] actualHeaders = actual.headers().toArray();
        assertEquals(expectedHeaders.length, actualHeaders.length, "header count of " + where);
        for (int h = 0; h < expectedHeaders.length; h++) {
            assertEquals(expectedHeaders[h].key(), actualHeaders[h].key(), "header " + h + " key of " + where);
            assertArrayEquals(expectedHeaders[h].value(), actualHeaders[h].value(),
                    "header " + h + " value of " + where);
        }
    }
}
