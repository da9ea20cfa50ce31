package io.sluice.javaclient;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.IntStream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.streams.StreamsConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * Goal: a stateful Kafka Streams application (word count with a repartition topic and a
 * changelog-backed store) runs on Sluice with processing.guarantee=at_least_once, survives being
 * stopped mid-stream and started again, and ends with exactly the true count for every word.
 *
 * <p>Method: known lines are produced in two halves. The application starts on the first half and
 * is closed as soon as its first results appear, so it stops part-way through; the second half
 * is produced while it is down; a new instance then starts with an empty state directory, so
 * its store must be rebuilt from the changelog topic on the broker. The output topic is read from
 * the beginning until the last count emitted for each word equals the true count (bounded). A
 * graceful close commits what was processed, so no update may exceed the true count either.
 */
class KafkaStreamsWordCountTest {

    private static final int PARTITIONS = 3;
    private static final Duration RESULT_TIMEOUT = Duration.ofSeconds(120);

    @RegisterExtension
    static final SluiceBrokerExtension SLUICE = new SluiceBrokerExtension();

    @TempDir
    Path stateRoot;

    @Test
    void atLeastOnceWordCountIsExactAfterARestartMidStream() {
        SluiceBroker broker = SLUICE.broker();
        String applicationId = Clients.uniqueName("word-count");
        String input = applicationId + "-lines";
        String output = applicationId + "-counts";
        try (Admin admin = Clients.admin(broker)) {
            Clients.createTopic(admin, input, PARTITIONS);
            Clients.createTopic(admin, output, PARTITIONS);
        }
        List<String> lines = WordCountApp.lines(400, 20_240_601L);
        Map<String, Long> expected = WordCountApp.trueCounts(lines);

        try (WordCountApp.OutputReader reader = new WordCountApp.OutputReader(broker, output, PARTITIONS, false)) {
            produceLines(broker, input, lines.subList(0, 200), 0);
            try (WordCountApp first = new WordCountApp(broker, applicationId, input, output,
                    stateRoot.resolve("first"), StreamsConfig.AT_LEAST_ONCE, Map.of())) {
                first.startAndAwaitRunning();
                Waits.until("the first counts appear", RESULT_TIMEOUT, () -> {
                    first.assertHealthy();
                    reader.pollOnce();
                    return reader.records() > 0;
                }, () -> reader.records() + " output records");
            }

            produceLines(broker, input, lines.subList(200, lines.size()), 200);
            try (WordCountApp second = new WordCountApp(broker, applicationId, input, output,
                    stateRoot.resolve("second"), StreamsConfig.AT_LEAST_ONCE, Map.of())) {
                second.startAndAwaitRunning();
                Waits.until("the last count of every word is its true count", RESULT_TIMEOUT, () -> {
                    second.assertHealthy();
                    reader.pollOnce();
                    return reader.lastCount().equals(expected);
                }, () -> "last counts " + reader.lastCount() + ", expected " + expected);
            }
            assertEquals(expected, reader.largestCount(), "no count above the true count was ever emitted");
        }

        assertInternalTopics(broker, applicationId);
    }

    /** The repartition and changelog topics exist, and the changelog is compacted. */
    private static void assertInternalTopics(SluiceBroker broker, String applicationId) {
        String repartition = applicationId + "-by-word-repartition";
        String changelog = applicationId + "-" + WordCountApp.STORE + "-changelog";
        try (Admin admin = Clients.admin(broker)) {
            Set<String> topics = Clients.get(admin.listTopics().names());
            assertTrue(topics.containsAll(Set.of(repartition, changelog)), "internal topics among " + topics);
            ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, changelog);
            Config config = Clients.get(admin.describeConfigs(List.of(resource)).all()).get(resource);
            assertEquals("compact", config.get("cleanup.policy").value(), "cleanup.policy of " + changelog);
            assertEquals(PARTITIONS, Clients.get(admin.describeTopics(List.of(changelog)).allTopicNames())
                    .get(changelog).partitions().size(), "partitions of " + changelog);
        }
    }

    static void produceLines(SluiceBroker broker, String topic, List<String> lines, int firstIndex) {
        List<ProducerRecord<String, String>> records = IntStream.range(0, lines.size())
                .mapToObj(i -> new ProducerRecord<>(topic, "line-" + (firstIndex + i), lines.get(i)))
                .toList();
        try (KafkaProducer<String, String> producer = Clients.producer(broker)) {
            Clients.sendAll(producer, records);
        }
    }
}
