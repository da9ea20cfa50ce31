package io.sluice.javaclient;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

import org.apache.kafka.clients.admin.AbortTransactionSpec;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListConsumerGroupOffsetsSpec;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.streams.StreamsConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * Goal: Kafka transactions, as the Java client, AdminClient and Kafka Streams use them, behave on
 * Sluice as on Apache Kafka: read_committed sees committed transactions only; a second producer
 * with the same transactional.id fences the first and aborts its open transaction; a
 * consume-transform-produce loop with {@code sendOffsetsToTransaction} processes every input
 * exactly once although it aborts and rewinds; the KIP-664 admin calls find an open transaction
 * and abort a hanging one; and a Kafka Streams exactly_once_v2 application killed with SIGKILL
 * mid-stream and started again emits every count exactly once.
 *
 * <p>Method: exact data checks (every record, in order, or every count) with read_committed and
 * read_uncommitted consumers, exact offsets (last stable offset, committed group offsets), and
 * the exact exception the fenced producer gets. Every wait is bounded.
 */
class TransactionsTest {

    /** Log file names of the word count JVMs, next to the broker logs. */
    private static final String CHILD_LOG_PREFIX = "TransactionsTest.word-count-jvm-";
    private static final Comparator<TopicPartition> BY_NAME = Comparator.comparing(TopicPartition::toString);

    @RegisterExtension
    static final SluiceBrokerExtension SLUICE = new SluiceBrokerExtension();

    @TempDir
    Path stateRoot;

    /** Committed transactions are visible to read_committed, the aborted one is not. */
    @Test
    void transactionalProducerWithReadCommittedConsumer() {
        String topic = createTopic(Clients.uniqueName("transactions"), 1);
        Map<String, Object> transactional = Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, Clients.uniqueName("tx"));
        try (KafkaProducer<String, String> producer = Clients.producer(SLUICE.broker(), transactional)) {
            producer.initTransactions();
            sendInTransaction(producer, topic, "committed-a-", 5, true);
            sendInTransaction(producer, topic, "aborted-", 3, false);
            sendInTransaction(producer, topic, "committed-b-", 2, true);
        }

        List<String> committedValues = readValues(topic, 0, "read_committed", 7);
        List<String> expected = new ArrayList<>();
        IntStream.range(0, 5).forEach(i -> expected.add("committed-a-" + i));
        IntStream.range(0, 2).forEach(i -> expected.add("committed-b-" + i));
        assertEquals(expected, committedValues, "read_committed skips the aborted transaction");
        List<String> everything = new ArrayList<>(expected.subList(0, 5));
        IntStream.range(0, 3).forEach(i -> everything.add("aborted-" + i));
        everything.addAll(expected.subList(5, 7));
        assertEquals(everything, readValues(topic, 0, "read_uncommitted", 10),
                "read_uncommitted sees every record, the aborted ones included, in order");
    }

    /**
     * Zombie fencing: a second producer with the same transactional.id fences the first, whose
     * open transaction is aborted and never visible to read_committed. As on Kafka (transaction
     * version 1): a fenced producer that only commits gets ProducerFencedException; one that
     * sends first has the send refused with InvalidProducerEpochException (the partition leader
     * knows the newer epoch from the abort marker), its commit throws that same exception, and its
     * abort then gets ProducerFencedException from the coordinator.
     */
    @Test
    void aSecondProducerWithTheSameTransactionalIdFencesTheFirst() {
        String topic = createTopic(Clients.uniqueName("zombie"), 1);
        TopicPartition partition = new TopicPartition(topic, 0);
        Map<String, Object> transactional =
                Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, Clients.uniqueName("zombie-tx"));
        KafkaProducer<String, String> first = Clients.producer(SLUICE.broker(), transactional);
        KafkaProducer<String, String> second = Clients.producer(SLUICE.broker(), transactional);
        try (KafkaProducer<String, String> third = Clients.producer(SLUICE.broker(), transactional)) {
            first.initTransactions();
            first.beginTransaction();
            List<RecordMetadata> firstAcks = Clients.sendAll(first, records(topic, 0, "first-", 5));
            assertEquals(List.of(0L, 1L, 2L, 3L, 4L), firstAcks.stream().map(RecordMetadata::offset).toList(),
                    "offsets of the first producer's records");
            assertEquals(0L, endOffset(partition, "read_committed"),
                    "the last stable offset stops at the first producer's open transaction");
            assertEquals(5L, endOffset(partition, "read_uncommitted"),
                    "the high watermark is past the open transaction");

            second.initTransactions(); // a newer epoch: fences the first producer and aborts its transaction
            assertThrows(ProducerFencedException.class, first::commitTransaction,
                    "the first producer's commit after the second one's initTransactions");

            second.beginTransaction();
            List<RecordMetadata> secondAcks = Clients.sendAll(second, records(topic, 0, "second-", 3));
            long secondStart = secondAcks.get(0).offset();
            assertEquals(6L, secondStart, "the second producer's records follow the abort marker at offset 5");
            assertEquals(secondStart, endOffset(partition, "read_committed"),
                    "the last stable offset moved past the aborted transaction to the second one's open transaction");

            third.initTransactions(); // fences the second producer in turn
            Future<RecordMetadata> late = second.send(new ProducerRecord<>(topic, 0, "late", "second-late"));
            ExecutionException lateFailure = assertThrows(ExecutionException.class,
                    () -> late.get(Clients.CALL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS),
                    "a send by the fenced second producer to a partition of its aborted transaction");
            assertInstanceOf(InvalidProducerEpochException.class, lateFailure.getCause(),
                    "the partition leader refuses the old epoch");
            assertThrows(InvalidProducerEpochException.class, second::commitTransaction,
                    "the second producer's commit after its refused send");
            assertThrows(ProducerFencedException.class, second::abortTransaction,
                    "the second producer's abort: the coordinator knows a newer epoch");

            third.beginTransaction();
            Clients.sendAll(third, records(topic, 0, "third-", 3));
            third.commitTransaction();
        } finally {
            first.close(Duration.ZERO);
            second.close(Duration.ZERO);
        }

        assertEquals(List.of("third-0", "third-1", "third-2"), readValues(topic, 0, "read_committed", 3),
                "read_committed sees the third producer's transaction and nothing of the fenced ones");
        assertEquals(List.of("first-0", "first-1", "first-2", "first-3", "first-4", "second-0", "second-1", "second-2",
                "third-0", "third-1", "third-2"), readValues(topic, 0, "read_uncommitted", 11),
                "read_uncommitted sees the aborted records of the fenced producers (never the refused late one), "
                        + "then the third producer's");
    }

    /**
     * A transactional producer with several batches of one partition in flight at once (small
     * batches, the default five requests in flight) commits every transaction, and read_committed
     * returns every record in order. The first batch of a transaction on a partition is the one a
     * broker verifies with the coordinator (KIP-890); the batches behind it must wait for it.
     */
    @Test
    void pipelinedTransactionalBatchesOfOnePartitionAreAppendedInOrder() {
        int partitions = 12;
        int transactions = 20;
        int perTransaction = 3_600;
        String topic = createTopic(Clients.uniqueName("pipelined"), partitions);
        Map<String, Object> settings = Map.of(
                ProducerConfig.TRANSACTIONAL_ID_CONFIG, Clients.uniqueName("pipelined-tx"),
                ProducerConfig.BATCH_SIZE_CONFIG, 512,
                ProducerConfig.LINGER_MS_CONFIG, 0);
        try (KafkaProducer<String, String> producer = Clients.producer(SLUICE.broker(), settings)) {
            producer.initTransactions();
            for (int t = 0; t < transactions; t++) {
                int transaction = t;
                producer.beginTransaction();
                for (int i = 0; i < perTransaction; i++) {
                    producer.send(new ProducerRecord<>(topic, i % partitions, "k", "t" + t + "-" + i));
                }
                assertDoesNotThrow(producer::commitTransaction, () -> "commit of transaction " + transaction);
            }
        }
        for (int p = 0; p < partitions; p++) {
            int partition = p;
            List<String> expected = new ArrayList<>();
            for (int t = 0; t < transactions; t++) {
                for (int i = p; i < perTransaction; i += partitions) {
                    expected.add("t" + t + "-" + i);
                }
            }
            List<String> read = readValues(topic, p, "read_committed", expected.size());
            assertEquals(expected, read,
                    () -> "read_committed of partition " + partition + ": every record once, in order");
        }
    }

    /**
     * Consume-transform-produce with {@code sendOffsetsToTransaction}: every third transaction is
     * aborted and the consumer seeks back to the committed offsets; in the end the output holds
     * every input transformed exactly once, in input order per partition, and the group's
     * committed offsets are the input's end offsets.
     */
    @Test
    void consumeTransformProduceAbortingEveryThirdTransactionProcessesEachInputOnce() {
        int partitions = 3;
        int perPartition = 80;
        String input = createTopic(Clients.uniqueName("ctp-in"), partitions);
        String output = createTopic(Clients.uniqueName("ctp-out"), partitions);
        String group = Clients.uniqueName("ctp-group");
        List<ProducerRecord<String, String>> inputRecords = new ArrayList<>();
        for (int p = 0; p < partitions; p++) {
            inputRecords.addAll(records(input, p, "in-" + p + "-", perPartition));
        }
        try (KafkaProducer<String, String> producer = Clients.producer(SLUICE.broker())) {
            Clients.sendAll(producer, inputRecords);
        }
        Map<TopicPartition, Long> inputEnd = new TreeMap<>(BY_NAME);
        IntStream.range(0, partitions).forEach(p -> inputEnd.put(new TopicPartition(input, p), (long) perPartition));

        Map<String, Object> consumerSettings = Map.of(
                ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed",
                ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 20);
        Map<String, Object> transactional =
                Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, Clients.uniqueName("ctp-tx"));
        int transactions = 0;
        int aborted = 0;
        int abortedRecords = 0;
        try (KafkaConsumer<String, String> consumer = Clients.consumer(SLUICE.broker(), consumerSettings);
                KafkaProducer<String, String> producer = Clients.producer(SLUICE.broker(), transactional)) {
            producer.initTransactions();
            consumer.subscribe(List.of(input));
            Duration timeout = Duration.ofSeconds(120);
            long deadline = System.nanoTime() + timeout.toNanos();
            for (int round = 0; !inputEnd.equals(positions(consumer, inputEnd.keySet())); round++) {
                assertTrue(System.nanoTime() < deadline && round < 2_000,
                        () -> "the loop did not reach the input's end within " + timeout.toSeconds()
                                + " s; positions " + positions(consumer, inputEnd.keySet()));
                ConsumerRecords<String, String> batch = consumer.poll(Duration.ofMillis(200));
                if (batch.isEmpty()) {
                    continue;
                }
                Map<TopicPartition, Long> before = positionsBefore(batch);
                producer.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
                for (ConsumerRecord<String, String> record : batch) {
                    producer.send(
                            new ProducerRecord<>(output, record.partition(), record.key(), "out-" + record.value()));
                    next.put(new TopicPartition(record.topic(), record.partition()),
                            new OffsetAndMetadata(record.offset() + 1));
                }
                producer.sendOffsetsToTransaction(next, consumer.groupMetadata());
                transactions++;
                if (transactions % 3 == 0) {
                    producer.flush(); // the aborted records are all written, so read_uncommitted sees them
                    producer.abortTransaction();
                    aborted++;
                    abortedRecords += batch.count();
                    int abortedTransaction = transactions;
                    Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(before.keySet());
                    for (Map.Entry<TopicPartition, Long> start : before.entrySet()) {
                        OffsetAndMetadata offset = committed.get(start.getKey());
                        long rewindTo = offset == null ? 0L : offset.offset();
                        assertEquals(start.getValue(), rewindTo, () -> "after aborting transaction "
                                + abortedTransaction + ", the committed offset of " + start.getKey()
                                + " is where its batch started");
                        consumer.seek(start.getKey(), rewindTo);
                    }
                } else {
                    producer.commitTransaction();
                }
            }
        }
        assertTrue(aborted >= 2, "aborted transactions: " + aborted + " of " + transactions);

        try (Admin admin = Clients.admin(SLUICE.broker())) {
            Waits.until("the group's committed offsets are the input's end offsets", Duration.ofSeconds(30),
                    () -> inputEnd.equals(committedOffsets(admin, group)),
                    () -> "committed " + committedOffsets(admin, group));
        }
        for (int p = 0; p < partitions; p++) {
            int partition = p;
            List<String> expected =
                    IntStream.range(0, perPartition).mapToObj(i -> "out-in-" + partition + "-" + i).toList();
            assertEquals(expected, readValues(output, p, "read_committed", perPartition),
                    "read_committed output of partition " + p + ": every input once, in order");
        }
        int uncommitted = 0;
        for (int p = 0; p < partitions; p++) {
            uncommitted += (int) recordsIn(new TopicPartition(output, p));
        }
        assertEquals(partitions * perPartition + abortedRecords, uncommitted,
                "read_uncommitted output: every committed record plus the " + abortedRecords + " aborted ones");
    }

    /**
     * The KIP-664 admin calls: listTransactions, describeTransactions and describeProducers show a
     * hanging transaction (its producer closed without ending it); abortTransaction writes the
     * abort markers to the partition leaders and read_committed moves past it.
     */
    @Test
    void adminDescribesAHangingTransactionAndAbortsIt() {
        String topic = createTopic(Clients.uniqueName("hanging"), 2);
        List<TopicPartition> partitions = List.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1));
        String transactionalId = Clients.uniqueName("hanging-tx");
        int transactionTimeoutMs = 600_000;
        Map<String, Object> transactional = Map.of(
                ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId,
                ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, transactionTimeoutMs);
        long[] hangingStart = new long[2];
        long beforeBegin = System.currentTimeMillis();
        KafkaProducer<String, String> hanging = Clients.producer(SLUICE.broker(), transactional);
        try {
            hanging.initTransactions();
            hanging.beginTransaction();
            for (int p = 0; p < 2; p++) {
                Clients.sendAll(hanging, records(topic, p, "before-" + p + "-", 2));
            }
            hanging.commitTransaction();
            hanging.beginTransaction();
            for (int p = 0; p < 2; p++) {
                hangingStart[p] = Clients.sendAll(hanging, records(topic, p, "hanging-" + p + "-", 3)).get(0).offset();
            }
        } finally {
            hanging.close(Duration.ZERO); // no abort: the transaction stays open at the coordinator
        }
        try (KafkaProducer<String, String> plain = Clients.producer(SLUICE.broker())) {
            for (int p = 0; p < 2; p++) {
                Clients.sendAll(plain, records(topic, p, "after-" + p + "-", 2));
            }
        }
        for (int p = 0; p < 2; p++) {
            assertEquals(hangingStart[p], endOffset(partitions.get(p), "read_committed"),
                    "the last stable offset of partition " + p + " stops at the hanging transaction");
        }

        try (Admin admin = Clients.admin(SLUICE.broker())) {
            Map<String, TransactionListing> listed = Clients.get(admin.listTransactions().all()).stream()
                    .collect(Collectors.toMap(TransactionListing::transactionalId, listing -> listing));
            TransactionListing listing = listed.get(transactionalId);
            assertNotNull(listing, "listTransactions names " + transactionalId + " among " + listed.keySet());
            assertEquals(TransactionState.ONGOING, listing.state(), "listed state of " + transactionalId);

            TransactionDescription description =
                    Clients.get(admin.describeTransactions(List.of(transactionalId)).description(transactionalId));
            assertEquals(TransactionState.ONGOING, description.state(), "described state: " + description);
            assertEquals(listing.producerId(), description.producerId(), "producer id: listed and described");
            assertEquals(Set.copyOf(partitions), description.topicPartitions(), "the transaction's partitions");
            assertEquals(SluiceBroker.NODE_ID, description.coordinatorId(), "coordinator id");
            assertEquals(transactionTimeoutMs, description.transactionTimeoutMs(), "transaction timeout");
            OptionalLong started = description.transactionStartTimeMs();
            assertTrue(started.isPresent() && started.getAsLong() >= beforeBegin - 5_000
                    && started.getAsLong() <= System.currentTimeMillis() + 5_000,
                    "transaction start time " + started + " is around now (" + beforeBegin + ")");

            List<AbortTransactionSpec> aborts = new ArrayList<>();
            for (int p = 0; p < 2; p++) {
                TopicPartition partition = partitions.get(p);
                List<ProducerState> producers = producersOf(admin, partition);
                Optional<ProducerState> state = producers.stream()
                        .filter(producer -> producer.producerId() == description.producerId()).findFirst();
                assertTrue(state.isPresent(), "describeProducers of " + partition + " names producer "
                        + description.producerId() + ": " + producers);
                assertEquals(description.producerEpoch(), state.get().producerEpoch(),
                        "producer epoch on " + partition);
                assertEquals(OptionalLong.of(hangingStart[p]), state.get().currentTransactionStartOffset(),
                        "start offset of the open transaction on " + partition);
                // what kafka-transactions.sh abort --start-offset does with what describeProducers answers
                aborts.add(new AbortTransactionSpec(partition, state.get().producerId(),
                        (short) state.get().producerEpoch(), state.get().coordinatorEpoch().orElse(0)));
            }

            for (AbortTransactionSpec abort : aborts) {
                Clients.get(admin.abortTransaction(abort).all());
            }

            for (int p = 0; p < 2; p++) {
                TopicPartition partition = partitions.get(p);
                long logEnd = endOffset(partition, "read_uncommitted");
                assertEquals(logEnd, endOffset(partition, "read_committed"),
                        "after abortTransaction the last stable offset of " + partition + " is the high watermark");
                List<ProducerState> open = producersOf(admin, partition).stream()
                        .filter(producer -> producer.currentTransactionStartOffset().isPresent()).toList();
                assertEquals(List.of(), open,
                        "producers with an open transaction on " + partition + " after the abort");
            }
        }
        for (int p = 0; p < 2; p++) {
            assertEquals(List.of("before-" + p + "-0", "before-" + p + "-1", "after-" + p + "-0", "after-" + p + "-1"),
                    readValues(topic, p, "read_committed", 4),
                    "read_committed of partition " + p
                            + ": the committed transaction and the later records, not the aborted one");
        }
    }

    /**
     * describeProducers names, for a producer whose transaction a marker ended on the partition,
     * the epoch of the coordinator that wrote that marker, as Kafka does; kafka-transactions.sh
     * passes it on to abortTransaction.
     */
    @Test
    void describeProducersNamesTheCoordinatorEpochOfTheLastMarker() {
        String topic = createTopic(Clients.uniqueName("coordinator-epoch"), 1);
        TopicPartition partition = new TopicPartition(topic, 0);
        String transactionalId = Clients.uniqueName("coordinator-epoch-tx");
        try (KafkaProducer<String, String> producer =
                Clients.producer(SLUICE.broker(), Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId))) {
            producer.initTransactions();
            producer.beginTransaction();
            Clients.sendAll(producer, records(topic, 0, "committed-", 2));
            producer.commitTransaction();
        }
        try (Admin admin = Clients.admin(SLUICE.broker())) {
            long producerId = Clients.get(
                    admin.describeTransactions(List.of(transactionalId)).description(transactionalId)).producerId();
            Waits.until("the commit marker is on " + partition, Duration.ofSeconds(30),
                    () -> endOffset(partition, "read_committed") == 3L, () -> "last stable offset "
                            + endOffset(partition, "read_committed"));
            ProducerState state = producersOf(admin, partition).stream()
                    .filter(producer -> producer.producerId() == producerId).findFirst()
                    .orElseThrow(() -> new AssertionError("describeProducers does not name producer " + producerId));
            assertEquals(OptionalLong.empty(), state.currentTransactionStartOffset(), "no open transaction: " + state);
            assertTrue(state.coordinatorEpoch().isPresent() && state.coordinatorEpoch().getAsInt() >= 0,
                    "the coordinator epoch of the commit marker: " + state);
        }
    }

    /** The word count under exactly_once_v2: final counts exact, every count emitted once and in order. */
    @Test
    void exactlyOnceV2WordCount() {
        SluiceBroker broker = SLUICE.broker();
        String applicationId = Clients.uniqueName("eos-word-count");
        String input = createTopic(applicationId + "-lines", 2);
        String output = createTopic(applicationId + "-counts", 2);
        List<String> lines = WordCountApp.lines(100, 7L);
        Map<String, Long> expected = WordCountApp.trueCounts(lines);
        KafkaStreamsWordCountTest.produceLines(broker, input, lines, 0);

        try (WordCountApp.OutputReader reader = new WordCountApp.OutputReader(broker, output, 2, true);
                WordCountApp app = new WordCountApp(broker, applicationId, input, output, stateRoot,
                        StreamsConfig.EXACTLY_ONCE_V2, Map.of())) {
            app.startAndAwaitRunning();
            Waits.until("the last count of every word is its true count", Duration.ofSeconds(120), () -> {
                app.assertHealthy();
                reader.pollOnce();
                return reader.lastCount().equals(expected);
            }, () -> "last counts " + reader.lastCount() + ", expected " + expected);
            assertEquals(expected, reader.largestCount(), "no count above the true count");
            assertEquals("", reader.outOfSequence(), "every word counted 1, 2, 3, ... once each");
        }
    }

    /**
     * exactly_once_v2 across crashes: the application runs in a JVM of its own and is killed with
     * SIGKILL mid-stream twice. The second instance restarts on the first one's state directory
     * (same process id, so the same transactional id: its initTransactions fences the dead
     * instance and aborts its open transaction); the third, in this JVM, starts with an empty
     * state directory (a new transactional id: the dead instance's transaction ends by its
     * timeout, and the store is restored from the changelog). A read_committed reader of the
     * output must see every word counted 1, 2, 3, ... up to its true count, each count once.
     *
     * <p>Restarted instances catch up with a backlog, so several batches of one partition are in
     * flight: this also covers what {@link #pipelinedTransactionalBatchesOfOnePartitionAreAppendedInOrder}
     * pins down.
     */
    @Test
    @Timeout(value = 300, unit = TimeUnit.SECONDS)
    void exactlyOnceV2WordCountKilledMidStreamCountsEveryWordOnce() {
        SluiceBroker broker = SLUICE.broker();
        String applicationId = Clients.uniqueName("eos-crash");
        int partitions = 3;
        String input = createTopic(applicationId + "-lines", partitions);
        String output = createTopic(applicationId + "-counts", partitions);
        int part = 600;
        List<String> lines = WordCountApp.lines(3 * part, 20_261_203L);
        Map<String, Long> expected = WordCountApp.trueCounts(lines);
        Path crashedState = stateRoot.resolve("crashed");

        try (WordCountApp.OutputReader reader = new WordCountApp.OutputReader(broker, output, partitions, true)) {
            for (int instance = 0; instance < 2; instance++) {
                KafkaStreamsWordCountTest.produceLines(broker, input,
                        lines.subList(instance * part, (instance + 1) * part), instance * part);
                Map<String, Long> producedSoFar = WordCountApp.trueCounts(lines.subList(0, (instance + 1) * part));
                long seenBefore = reader.records();
                try (WordCountProcess child = WordCountProcess.start(broker, applicationId, input, output, crashedState,
                        StreamsConfig.EXACTLY_ONCE_V2, CHILD_LOG_PREFIX + applicationId + "-" + instance)) {
                    child.awaitRunning(Duration.ofSeconds(120));
                    Waits.until("instance " + instance + " commits new counts", Duration.ofSeconds(120), () -> {
                        child.assertAlive();
                        reader.pollOnce();
                        return reader.records() >= seenBefore + 200;
                    }, () -> reader.records() + " committed output records, " + seenBefore + " before this instance");
                    assertNotEquals(producedSoFar, reader.lastCount(),
                            "instance " + instance + " is still processing when it is killed (make the input longer)");
                    child.kill();
                }
                System.out.println("instance " + instance + " killed after " + reader.records() + " committed updates");
            }

            KafkaStreamsWordCountTest.produceLines(broker, input, lines.subList(2 * part, lines.size()), 2 * part);
            try (WordCountApp last = new WordCountApp(broker, applicationId, input, output, stateRoot.resolve("fresh"),
                    StreamsConfig.EXACTLY_ONCE_V2, Map.of())) {
                last.startAndAwaitRunning();
                Waits.until("the last count of every word is its true count", Duration.ofSeconds(150), () -> {
                    last.assertHealthy();
                    reader.pollOnce();
                    return reader.lastCount().equals(expected);
                }, () -> "last counts " + reader.lastCount() + ", expected " + expected + "; "
                        + reader.outOfSequence());
            }
            assertEquals(expected, reader.largestCount(), "no count above the true count was ever committed");
            assertEquals("", reader.outOfSequence(), "every word counted 1, 2, 3, ... once each across the crashes");
            assertEquals(expected.values().stream().mapToLong(Long::longValue).sum(), reader.records(),
                    "committed count updates: one per word occurrence");
        }
    }

    // ------------------------------------------------------------------ helpers

    private static String createTopic(String topic, int partitions) {
        try (Admin admin = Clients.admin(SLUICE.broker())) {
            Clients.createTopic(admin, topic, partitions);
        }
        return topic;
    }

    private static List<ProducerRecord<String, String>> records(String topic, int partition, String prefix, int count) {
        return IntStream.range(0, count)
                .mapToObj(i -> new ProducerRecord<>(topic, partition, "k" + i, prefix + i)).toList();
    }

    private static void sendInTransaction(KafkaProducer<String, String> producer, String topic, String prefix,
            int count, boolean commit) {
        producer.beginTransaction();
        for (int i = 0; i < count; i++) {
            producer.send(new ProducerRecord<>(topic, 0, "k" + i, prefix + i));
        }
        if (commit) {
            producer.commitTransaction();
        } else {
            producer.flush();
            producer.abortTransaction();
        }
    }

    /** Exactly {@code count} values of one partition from the beginning, with the given isolation. */
    private static List<String> readValues(String topic, int partition, String isolationLevel, int count) {
        Map<String, Object> isolation = Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolationLevel);
        try (KafkaConsumer<String, String> consumer = Clients.consumer(SLUICE.broker(), isolation)) {
            consumer.assign(List.of(new TopicPartition(topic, partition)));
            return Clients.consumeExactly(consumer, count).stream().map(ConsumerRecord::value).toList();
        }
    }

    /** The end offset a consumer with this isolation sees: the last stable offset for read_committed. */
    private static long endOffset(TopicPartition partition, String isolationLevel) {
        Map<String, Object> isolation = Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolationLevel);
        try (KafkaConsumer<String, String> consumer = Clients.consumer(SLUICE.broker(), isolation)) {
            return consumer.endOffsets(List.of(partition), Clients.CALL_TIMEOUT).get(partition);
        }
    }

    /** How many records (control records excluded) a read_uncommitted consumer reads from the partition. */
    private static long recordsIn(TopicPartition partition) {
        Map<String, Object> isolation = Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_uncommitted");
        try (KafkaConsumer<String, String> consumer = Clients.consumer(SLUICE.broker(), isolation)) {
            consumer.assign(List.of(partition));
            long end = consumer.endOffsets(List.of(partition), Clients.CALL_TIMEOUT).get(partition);
            long records = 0;
            long deadline = System.nanoTime() + Clients.CONSUME_TIMEOUT.toNanos();
            while (consumer.position(partition, Clients.CALL_TIMEOUT) < end) {
                assertTrue(System.nanoTime() < deadline, "read " + partition + " to its end " + end + " in time");
                records += consumer.poll(Duration.ofMillis(200)).count();
            }
            return records;
        }
    }

    private static Map<TopicPartition, Long> positions(KafkaConsumer<String, String> consumer,
            Set<TopicPartition> partitions) {
        Map<TopicPartition, Long> positions = new TreeMap<>(BY_NAME);
        for (TopicPartition partition : consumer.assignment()) {
            if (partitions.contains(partition)) {
                positions.put(partition, consumer.position(partition, Clients.CALL_TIMEOUT));
            }
        }
        return positions;
    }

    private static List<ProducerState> producersOf(Admin admin, TopicPartition partition) {
        return Clients.get(admin.describeProducers(List.of(partition)).partitionResult(partition)).activeProducers();
    }

    /** For each partition of the batch, the offset of its first record in it. */
    private static Map<TopicPartition, Long> positionsBefore(ConsumerRecords<String, String> batch) {
        Map<TopicPartition, Long> first = new HashMap<>();
        for (TopicPartition partition : batch.partitions()) {
            first.put(partition, batch.records(partition).get(0).offset());
        }
        return first;
    }

    private static Map<TopicPartition, Long> committedOffsets(Admin admin, String group) {
        Map<TopicPartition, OffsetAndMetadata> committed = Clients.get(admin.listConsumerGroupOffsets(
                Map.of(group, new ListConsumerGroupOffsetsSpec())).partitionsToOffsetAndMetadata(group));
        Map<TopicPartition, Long> offsets = new TreeMap<>(BY_NAME);
        committed.forEach((partition, offset) -> offsets.put(partition, offset == null ? null : offset.offset()));
        return offsets;
    }
}
