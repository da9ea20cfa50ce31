package io.sluice.javaclient;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.IntStream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Goal: an idempotent producer (the Java default) that keeps sending while the broker restarts
 * gracefully or crashes ends up with every record in the log exactly once and in order: the
 * broker keeps (or rebuilds from the log) each producer's sequence numbers, so batches the
 * producer retries after the restart are recognised as duplicates instead of written twice.
 *
 * <p>Method: a producer sends numbered records asynchronously to two partitions; once part of
 * them is acknowledged, the broker is stopped (SIGTERM) or killed (SIGKILL) and started again on
 * the same data directory, and the producer carries on with the rest. Every send must succeed,
 * and reading the partitions back must give each number once, in order, with dense offsets.
 */
class IdempotentProducerRestartTest {

    private static final int RECORDS = 4000;
    private static final int RESTART_AFTER_SENDS = 1500;
    private static final int RESTART_AFTER_ACKS = 500;

    @RegisterExtension
    static final SluiceBrokerExtension SLUICE = new SluiceBrokerExtension();

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"SIGTERM", "SIGKILL"})
    void everyRecordOnceAndInOrderAcrossARestart(String signal) {
        SluiceBroker broker = SLUICE.newBroker("idempotentAcross" + signal);
        String topic = Clients.uniqueName("idempotent-" + signal.toLowerCase());
        try (Admin admin = Clients.admin(broker)) {
            Clients.createTopic(admin, topic, 2);
        }

        List<Exception> sendErrors = new CopyOnWriteArrayList<>();
        AtomicInteger acknowledged = new AtomicInteger();
        Map<String, Object> settings = Map.of(ProducerConfig.LINGER_MS_CONFIG, 5,
                ProducerConfig.BATCH_SIZE_CONFIG, 4096);
        try (KafkaProducer<String, String> producer = Clients.producer(broker, settings)) {
            for (int i = 0; i < RECORDS; i++) {
                producer.send(new ProducerRecord<>(topic, i % 2, "key-" + i, Integer.toString(i)), (ack, error) -> {
                    if (error != null) {
                        sendErrors.add(error);
                    } else {
                        acknowledged.incrementAndGet();
                    }
                });
                if (i == RESTART_AFTER_SENDS) {
                    Waits.until(RESTART_AFTER_ACKS + " acknowledgements before the restart", Duration.ofSeconds(60),
                            () -> acknowledged.get() >= RESTART_AFTER_ACKS || !sendErrors.isEmpty(),
                            () -> acknowledged.get() + " acknowledged, errors " + sendErrors);
                    if (signal.equals("SIGTERM")) {
                        assertEquals(0, broker.restart(), "exit status after SIGTERM");
                    } else {
                        broker.killAndRestart();
                    }
                }
            }
            producer.flush();
        }
        assertEquals(List.of(), sendErrors, "failed sends");
        assertEquals(RECORDS, acknowledged.get(), "acknowledged sends");

        for (int partition = 0; partition < 2; partition++) {
            List<String> expected = IntStream.iterate(partition, i -> i < RECORDS, i -> i + 2)
                    .mapToObj(Integer::toString).toList();
            List<ConsumerRecord<String, String>> records = readPartition(broker, new TopicPartition(topic, partition),
                    expected.size());
            assertEquals(expected, records.stream().map(ConsumerRecord::value).toList(),
                    "values of partition " + partition + ": each once, in send order");
            for (int i = 0; i < records.size(); i++) {
                assertEquals(i, records.get(i).offset(), "dense offsets in partition " + partition);
            }
        }
    }

    private static List<ConsumerRecord<String, String>> readPartition(SluiceBroker broker, TopicPartition partition,
            int count) {
        try (KafkaConsumer<String, String> consumer = Clients.consumer(broker)) {
            consumer.assign(List.of(partition));
            consumer.seekToBeginning(List.of(partition));
            return Clients.consumeExactly(consumer, count);
        }
    }
}
