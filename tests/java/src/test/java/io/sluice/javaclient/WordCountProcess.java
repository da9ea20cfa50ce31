package io.sluice.javaclient;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * A {@link WordCountApp} in a JVM of its own, so that a test can crash it: SIGKILL leaves its
 * open transaction, its group membership and its state directory exactly as they were, with no
 * close, commit or abort.
 *
 * <p>The child runs {@link #main} with the test classpath; it prints {@value #RUNNING_LINE} once
 * the application is RUNNING and exits on its own only if the application fails (status 2) or
 * the test JVM goes away (its standard input closes; status 3). Its output goes to a log file
 * next to the broker logs.
 */
final class WordCountProcess implements AutoCloseable {

    static final String RUNNING_LINE = "WORD-COUNT-RUNNING";
    private static final Duration KILL_TIMEOUT = Duration.ofSeconds(15);
    private static final int LOG_TAIL_LINES = 40;

    private final Process process;
    private final Path log;
    private final String name;

    private WordCountProcess(Process process, Path log, String name) {
        this.process = process;
        this.log = log;
        this.name = name;
    }

    /** Starts the child JVM; {@link #awaitRunning} waits until its application is RUNNING. */
    static WordCountProcess start(SluiceBroker broker, String applicationId, String inputTopic, String outputTopic,
            Path stateDir, String guarantee, String name) {
        String classpath = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        Path java = Paths.get(System.getProperty("java.home"), "bin", "java");
        Path logDir = Paths.get(System.getProperty("sluice.logDir", System.getProperty("java.io.tmpdir")));
        Path log = logDir.resolve(name.replaceAll("[^A-Za-z0-9._-]", "_") + ".log");
        List<String> command = List.of(java.toString(), "-Xmx512m",
                "-Djava.io.tmpdir=" + System.getProperty("java.io.tmpdir"),
                "-cp", classpath, WordCountProcess.class.getName(),
                broker.bootstrapServers(), applicationId, inputTopic, outputTopic, stateDir.toString(), guarantee);
        try {
            Files.createDirectories(logDir);
            Files.writeString(log, "===== " + name + "\n", StandardCharsets.UTF_8);
            Process process = new ProcessBuilder(command)
                    .redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()))
                    .start();
            return new WordCountProcess(process, log, name);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot start the word count JVM " + name, e);
        }
    }

    /** Waits (bounded) until the child's application is RUNNING; fails at once if the child exits. */
    void awaitRunning(Duration timeout) {
        Waits.until(name + " is RUNNING", timeout, () -> {
            assertAlive();
            return logText().contains(RUNNING_LINE);
        }, this::logTail);
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

    private String logText() {
        try {
            return Files.readString(log, StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "(cannot read " + log + ": " + e + ")";
        }
    }

    // ------------------------------------------------------------------ the child JVM

    /** Arguments: bootstrap servers, application id, input topic, output topic, state dir, guarantee. */
    public static void main(String[] args) throws InterruptedException {
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

        WordCountApp app = new WordCountApp(args[0], args[1], args[2], args[3], new File(args[4]).toPath(), args[5],
                Map.of());
        try {
            app.startAndAwaitRunning();
            System.out.println(RUNNING_LINE);
            System.out.flush();
            while (true) {
                app.assertHealthy();
                Thread.sleep(100);
            }
        } catch (AssertionError e) {
            e.printStackTrace(System.out);
            System.out.flush();
            Runtime.getRuntime().halt(2);
        }
    }
}
