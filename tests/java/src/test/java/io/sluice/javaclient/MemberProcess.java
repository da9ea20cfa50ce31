package io.sluice.javaclient;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import org.apache.kafka.clients.consumer.CommitFailedException;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.errors.StaleMemberEpochException;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * A consumer-group member in a JVM of its own, so that a test can crash it: SIGKILL leaves its
 * membership exactly as it was, with no leave, no revocation and no last commit, and the
 * coordinator can only notice through the missing heartbeats.
 *
 * <p>The child runs {@link #main} with the test classpath: it subscribes to one topic with the
 * given {@code group.protocol}, polls and commits after every poll that returned records, and
 * prints {@value #ASSIGNMENT_LINE} followed by its partitions (comma-separated numbers) each time
 * its assignment changes. It exits on its own only if the loop fails (status 2) or the test JVM
 * goes away (its standard input closes; status 3). Its output goes to a log file next to the
 * broker logs.
 */
final class MemberProcess implements AutoCloseable {

    static final String ASSIGNMENT_LINE = "MEMBER-ASSIGNMENT ";
    private static final Duration KILL_TIMEOUT = Duration.ofSeconds(15);
    private static final int LOG_TAIL_LINES = 40;

    private final Process process;
    private final Path log;
    private final String name;
    private final String topic;

    private MemberProcess(Process process, Path log, String name, String topic) {
        this.process = process;
        this.log = log;
        this.name = name;
        this.topic = topic;
    }

    /** Starts the child JVM; {@link #assignment()} reads what it last reported. */
    static MemberProcess start(SluiceBroker broker, String group, String topic, String protocol, String name) {
        String classpath = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        Path java = Paths.get(System.getProperty("java.home"), "bin", "java");
        Path logDir = Paths.get(System.getProperty("sluice.logDir", System.getProperty("java.io.tmpdir")));
        Path log = logDir.resolve(name.replaceAll("[^A-Za-z0-9._-]", "_") + ".log");
        List<String> command = List.of(java.toString(), "-Xmx256m", "-XX:TieredStopAtLevel=1",
                "-Djava.io.tmpdir=" + System.getProperty("java.io.tmpdir"),
                "-cp", classpath, MemberProcess.class.getName(),
                broker.bootstrapServers(), group, topic, protocol, name);
        try {
            Files.createDirectories(logDir);
            Files.writeString(log, "===== " + name + "\n", StandardCharsets.UTF_8);
            Process process = new ProcessBuilder(command)
                    .redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()))
                    .start();
            return new MemberProcess(process, log, name, topic);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot start the member JVM " + name, e);
        }
    }

    /** The partitions the child last reported holding (empty before its first assignment). */
    Set<TopicPartition> assignment() {
        String last = "";
        for (String line : logText().lines().toList()) {
            if (line.startsWith(ASSIGNMENT_LINE)) {
                last = line.substring(ASSIGNMENT_LINE.length()).trim();
            }
        }
        if (last.isEmpty()) {
            return Set.of();
        }
        return Arrays.stream(last.split(",")).map(p -> new TopicPartition(topic, Integer.parseInt(p)))
                .collect(Collectors.toSet());
    }

    /** Fails with the child's log tail if it exited although the test did not kill it. */
    void assertAlive() {
        if (!process.isAlive()) {
            throw new AssertionError(name + " exited on its own with status " + process.exitValue() + "\n" + logTail());
        }
    }

    /** SIGKILL, and wait (bounded) until the process is gone. */
    void kill() {
        process.destroyForcibly();
        try {
            if (!process.waitFor(KILL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
                throw new AssertionError(name + " survived SIGKILL for " + KILL_TIMEOUT.toSeconds() + " s");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted while killing " + name, e);
        }
    }

    @Override
    public void close() {
        if (process.isAlive()) {
            kill();
        }
    }

    String logTail() {
        List<String> lines = logText().lines().toList();
        return "----- " + log + " -----\n"
                + String.join("\n", lines.subList(Math.max(0, lines.size() - LOG_TAIL_LINES), lines.size()));
    }

    @Override
    public String toString() {
        return name + "{reported=" + OwnershipLedger.sorted(assignment()) + ", alive=" + process.isAlive() + "}";
    }

    private String logText() {
        try {
            return Files.readString(log, StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "(cannot read " + log + ": " + e + ")";
        }
    }

    // ------------------------------------------------------------------ the child JVM

    /** Arguments: bootstrap servers, group, topic, group protocol, client id. */
    public static void main(String[] args) {
        Thread orphanGuard = new Thread(() -> {
            try {
                while (System.in.read() >= 0) {
                    // the test JVM writes nothing; end of input means it is gone
                }
            } catch (IOException e) {
                // the same
            }
            Runtime.getRuntime().halt(3);
        }, "orphan-guard");
        orphanGuard.setDaemon(true);
        orphanGuard.start();

        Map<String, Object> config = new HashMap<>();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        config.put(ConsumerConfig.GROUP_ID_CONFIG, args[1]);
        config.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, args[3]);
        config.put(ConsumerConfig.CLIENT_ID_CONFIG, args[4]);
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(config)) {
            consumer.subscribe(List.of(args[2]));
            Set<Integer> reported = null;
            while (true) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(100));
                if (!records.isEmpty()) {
                    try {
                        consumer.commitSync();
                    } catch (RebalanceInProgressException | CommitFailedException | StaleMemberEpochException e) {
                        // The partitions are moving; whatever this member keeps is committed next time.
                    }
                }
                Set<Integer> now = consumer.assignment().stream().map(TopicPartition::partition)
                        .collect(Collectors.toCollection(TreeSet::new));
                if (!now.equals(reported)) {
                    System.out.println(ASSIGNMENT_LINE
                            + now.stream().map(String::valueOf).collect(Collectors.joining(",")));
                    System.out.flush();
                    reported = now;
                }
            }
        } catch (Throwable t) {
            t.printStackTrace(System.out);
            System.out.flush();
            Runtime.getRuntime().halt(2);
        }
    }
}
