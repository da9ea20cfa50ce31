package io.sluice.javaclient;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.consumer.OffsetOutOfRangeException;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Goal: the consumer's positioning calls (seek, seekToBeginning/seekToEnd, beginningOffsets,
 * endOffsets, offsetsForTimes) land on exactly the offsets Kafka would give.
 *
 * <p>Method: one partition holds {@value #RECORDS} records whose timestamps step by one second,
 * written as one large batch followed by single-record batches, so lookups by time have to find
 * records inside a batch as well as at batch boundaries. Each call's answer is compared with the
 * offset computed from that layout, and a fetch after each seek checks the first record returned.
 */
class OffsetLookupTest {

    private static final int RECORDS = 20;
    private static final int FIRST_BATCH = 12;
    private static final long STEP_MS = 1000;

    @RegisterExtension
    static final SluiceBrokerExtension SLUICE = new SluiceBrokerExtension();

    private static String topic;
    private static TopicPartition partition;
    private static TopicPartition emptyPartition;
    private static long baseTimestamp;

    @BeforeAll
    static void writeTimeline() {
        topic = Clients.uniqueName("timeline");
        partition = new TopicPartition(topic, 0);
        emptyPartition = new TopicPartition(topic, 1);
        baseTimestamp = System.currentTimeMillis() - 3_600_000L;
        try (Admin admin = Clients.admin(SLUICE.broker())) {
            Clients.createTopic(admin, topic, 2);
        }
        Map<String, Object> oneBatch = Map.of(ProducerConfig.LINGER_MS_CONFIG, 1000);
        try (KafkaProducer<String, String> producer = Clients.producer(SLUICE.broker(), oneBatch)) {
            List<ProducerRecord<String, String>> batch = new ArrayList<>();
            for (int i = 0; i < FIRST_BATCH; i++) {
                batch.add(record(i));
            }
            Clients.sendAll(producer, batch);
            for (int i = FIRST_BATCH; i < RECORDS; i++) {
                Clients.sendAll(producer, List.of(record(i)));
            }
        }
    }

    @Test
    void beginningAndEndOffsets() {
        try (KafkaConsumer<String, String> consumer = Clients.consumer(SLUICE.broker())) {
            Map<TopicPartition, Long> beginning = consumer.beginningOffsets(List.of(partition, emptyPartition));
            Map<TopicPartition, Long> end = consumer.endOffsets(List.of(partition, emptyPartition));
            assertEquals(Map.of(partition, 0L, emptyPartition, 0L), beginning);
            assertEquals(Map.of(partition, (long) RECORDS, emptyPartition, 0L), end);
        }
    }

    @Test
    void seekToAnOffsetInsideABatchAndAtABatchBoundary() {
        try (KafkaConsumer<String, String> consumer = Clients.consumer(SLUICE.broker())) {
            consumer.assign(List.of(partition));
            for (long target : new long[] {7, 0, FIRST_BATCH, RECORDS - 1, 3}) {
                consumer.seek(partition, target);
                List<ConsumerRecord<String, String>> records =
                        Clients.pollUntilCount(consumer, (int) (RECORDS - target), Clients.CONSUME_TIMEOUT);
                assertEquals(RECORDS - target, records.size(), "records from offset " + target);
                for (int i = 0; i < records.size(); i++) {
                    assertEquals(target + i, records.get(i).offset(), "offset after seek to " + target);
                    assertEquals(valueOf((int) (target + i)), records.get(i).value());
                }
                assertEquals(RECORDS, consumer.position(partition), "position after reading to the end");
            }
        }
    }

    @Test
    void seekToBeginningAndEnd() {
        try (KafkaConsumer<String, String> consumer = Clients.consumer(SLUICE.broker())) {
            consumer.assign(List.of(partition));
            consumer.seekToEnd(List.of(partition));
            assertEquals(RECORDS, consumer.position(partition, Duration.ofSeconds(30)));
            consumer.seekToBeginning(List.of(partition));
            assertEquals(0, consumer.position(partition, Duration.ofSeconds(30)));
            List<ConsumerRecord<String, String>> records = Clients.pollUntilCount(consumer, 1, Clients.CONSUME_TIMEOUT);
            assertFalse(records.isEmpty(), "a record after seekToBeginning");
            assertEquals(0, records.get(0).offset());
        }
    }

    @Test
    void offsetsForTimesFindsTheFirstRecordAtOrAfterTheTimestamp() {
        try (KafkaConsumer<String, String> consumer = Clients.consumer(SLUICE.broker())) {
            // {query timestamp, expected offset}: before everything, exact hits inside the first
            // batch, between two records, at the boundary of the batches, the last record.
            long[][] cases = {
                {baseTimestamp - 60_000, 0},
                {baseTimestamp, 0},
                {baseTimestamp + 2_500, 3},
                {baseTimestamp + 5 * STEP_MS, 5},
                {baseTimestamp + (FIRST_BATCH - 1) * STEP_MS + 1, FIRST_BATCH},
                {baseTimestamp + 15 * STEP_MS - 999, 15},
                {baseTimestamp + (RECORDS - 1) * STEP_MS, RECORDS - 1},
            };
            for (long[] c : cases) {
                Map<TopicPartition, OffsetAndTimestamp> found =
                        consumer.offsetsForTimes(Map.of(partition, c[0]), Duration.ofSeconds(30));
                OffsetAndTimestamp hit = found.get(partition);
                assertNotNull(hit, "offsetsForTimes(" + (c[0] - baseTimestamp) + " ms after the base)");
                assertEquals(c[1], hit.offset(), "offset for " + (c[0] - baseTimestamp) + " ms after the base");
                assertEquals(timestampOf((int) c[1]), hit.timestamp(), "timestamp of offset " + c[1]);
            }
        }
    }

    @Test
    void offsetsForTimesAnswersNullPastTheLastRecordAndOnAnEmptyPartition() {
        try (KafkaConsumer<String, String> consumer = Clients.consumer(SLUICE.broker())) {
            Map<TopicPartition, Long> query = new HashMap<>();
            query.put(partition, timestampOf(RECORDS - 1) + 1);
            query.put(emptyPartition, baseTimestamp);
            Map<TopicPartition, OffsetAndTimestamp> found = consumer.offsetsForTimes(query, Duration.ofSeconds(30));
            assertEquals(2, found.size(), "an entry for each partition asked about: " + found);
            assertNull(found.get(partition), "no record at or after the last timestamp + 1");
            assertNull(found.get(emptyPartition), "no record in an empty partition");
        }
    }

    @Test
    void seekPastTheEndResetsByPolicy() {
        Map<String, Object> resetEarliest = Map.of(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        try (KafkaConsumer<String, String> consumer = Clients.consumer(SLUICE.broker(), resetEarliest)) {
            consumer.assign(List.of(partition));
            consumer.seek(partition, RECORDS + 1000);
            List<ConsumerRecord<String, String>> records = Clients.pollUntilCount(consumer, 1, Clients.CONSUME_TIMEOUT);
            assertFalse(records.isEmpty(), "records after the out-of-range reset");
            assertEquals(0, records.get(0).offset(), "reset to earliest");
        }
        Map<String, Object> resetNone = Map.of(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
        try (KafkaConsumer<String, String> consumer = Clients.consumer(SLUICE.broker(), resetNone)) {
            consumer.assign(List.of(partition));
            consumer.seek(partition, RECORDS + 1000);
            OffsetOutOfRangeException error = assertThrows(OffsetOutOfRangeException.class,
                    () -> Clients.pollUntilCount(consumer, 1, Clients.CONSUME_TIMEOUT));
            assertEquals(Map.of(partition, (long) RECORDS + 1000), error.offsetOutOfRangePartitions());
        }
    }

    private static ProducerRecord<String, String> record(int index) {
        return new ProducerRecord<>(topic, 0, timestampOf(index), "key-" + index, valueOf(index));
    }

    private static long timestampOf(int index) {
        return baseTimestamp + index * STEP_MS;
    }

    private static String valueOf(int index) {
        return "value-" + index;
    }
}
