package io.sluice.javaclient;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.Node;

/**
 * One real {@code sluice} broker process, started on a free loopback port with a temporary data
 * directory, restartable on the same data directory and port.
 *
 * <p>Goal: let every test talk to the real binary over TCP exactly as an application does, and
 * stop it gracefully (SIGTERM), crash it (SIGKILL) and start it again.
 *
 * <p>Method: the binary ({@code SLUICE_BIN}, default {@code target/release/sluice} under the
 * repository root) runs with {@code --listen 127.0.0.1:PORT --data-dir DIR --metrics-listen
 * 127.0.0.1:PORT2}; stdout and stderr are appended to a log file (kept under
 * {@code target/broker-logs/}). Start-up waits until the port accepts a connection and an
 * AdminClient's describeCluster answers with node 1 on that port, bounded by
 * {@code SLUICE_START_TIMEOUT_S} (30 s). {@link #close()} stops the process and deletes the data
 * directory; a JVM shutdown hook kills any broker a crashed test run left behind.
 *
 * <p>A broker with several listeners: the extra flags name them with {@code --listeners}, using
 * {@code {PORT}} (the broker's port, which must be a PLAINTEXT listener: readiness is probed
 * there) and {@code {PORT2}}, {@code {PORT3}} for free ports of their own; {@code --listen} is
 * then left out.
 */
public final class SluiceBroker implements AutoCloseable {

    public static final String HOST = "127.0.0.1";
    public static final int NODE_ID = 1;

    private static final Duration START_TIMEOUT =
            Duration.ofSeconds(Long.parseLong(envOr("SLUICE_START_TIMEOUT_S", "30")));
    private static final Duration STOP_TIMEOUT = Duration.ofSeconds(15);
    private static final Duration READY_PROBE_INTERVAL = Duration.ofMillis(100);
    private static final int LOG_TAIL_LINES = 60;
    private static final int EXTRA_PORTS = 2;

    /** Brokers still running, killed by the shutdown hook if the JVM exits without closing them. */
    private static final Set<Process> LIVE = ConcurrentHashMap.newKeySet();

    static {
        Runtime.getRuntime().addShutdownHook(new Thread(() -> LIVE.forEach(Process::destroyForcibly)));
    }

    private final String name;
    private final Path workDir;
    private final Path dataDir;
    private final Path logFile;
    private final int port;
    private final int metricsPort;
    /** Free ports for more listeners: {@code {PORT2}}, {@code {PORT3}} in the extra flags. */
    private final int[] extraPorts;
    private final List<String> extraArgs;
    /** Environment variables set for the broker process (Sluice's {@code SLUICE_*} settings). */
    private final Map<String, String> extraEnv;
    private Process process;
    private int starts;
    private boolean stoppedByTest;

    private SluiceBroker(String name, Map<String, String> extraEnv, List<String> extraArgs) throws IOException {
        this.name = name;
        this.extraArgs = List.copyOf(extraArgs);
        this.extraEnv = Map.copyOf(extraEnv);
        this.workDir = Files.createTempDirectory("sluice-java-");
        this.dataDir = Files.createDirectories(workDir.resolve("data"));
        int[] ports = freePorts(2 + EXTRA_PORTS);
        this.port = ports[0];
        this.metricsPort = ports[1];
        this.extraPorts = Arrays.copyOfRange(ports, 2, ports.length);
        Path logDir = Paths.get(System.getProperty("sluice.logDir", workDir.toString()));
        Files.createDirectories(logDir);
        this.logFile = logDir.resolve(safeFileName(name) + "-" + port + ".log");
    }

    /** Starts a new broker with its own data directory; extra command-line flags may follow. */
    public static SluiceBroker start(String name, String... extraArgs) {
        return start(name, Map.of(), extraArgs);
    }

    /**
     * Starts a new broker with these environment variables set (Sluice's {@code SLUICE_*} settings
     * without a flag; {@code tests/java/kafka-as-sluice} maps those it knows to Kafka's configs).
     */
    public static SluiceBroker start(String name, Map<String, String> extraEnv, String... extraArgs) {
        SluiceBroker broker;
        try {
            broker = new SluiceBroker(name, extraEnv, List.of(extraArgs));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot prepare a data directory for " + name, e);
        }
        try {
            broker.startProcess();
        } catch (RuntimeException | Error e) {
            broker.close();
            throw e;
        }
        return broker;
    }

    // ------------------------------------------------------------------ addresses

    public String bootstrapServers() {
        return HOST + ":" + port;
    }

    public int port() {
        return port;
    }

    /** The port {@code {PORT2}} (n = 2) or {@code {PORT3}} (n = 3) stands for in the extra flags. */
    public int extraPort(int n) {
        return extraPorts[n - 2];
    }

    public Path dataDir() {
        return dataDir;
    }

    public Path logFile() {
        return logFile;
    }

    public String name() {
        return name;
    }

    // ------------------------------------------------------------------ lifecycle

    /** SIGTERM, wait for the exit, then start again on the same data directory and port. */
    public int restart() {
        int status = stop();
        startProcess();
        return status;
    }

    /** SIGKILL (a crash with no chance to flush), then start again on the same data directory. */
    public void killAndRestart() {
        kill();
        startProcess();
    }

    /**
     * Graceful stop: SIGTERM ({@link Process#destroy()}) and wait, bounded. Returns the exit
     * status; kills the process and fails if it ignores SIGTERM.
     */
    public int stop() {
        Process p = requireRunning("stop");
        stoppedByTest = true;
        p.destroy();
        try {
            if (!p.waitFor(STOP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
                p.destroyForcibly();
                p.waitFor(STOP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
                throw new BrokerException(describe() + " ignored SIGTERM for " + STOP_TIMEOUT.toSeconds()
                        + " s; killed it\n" + logTail());
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            p.destroyForcibly();
            throw new BrokerException("interrupted while stopping " + describe(), e);
        } finally {
            LIVE.remove(p);
        }
        return p.exitValue();
    }

    /** SIGKILL ({@link Process#destroyForcibly()}); the broker stays down until restarted. */
    public void kill() {
        Process p = requireRunning("kill");
        stoppedByTest = true;
        p.destroyForcibly();
        try {
            if (!p.waitFor(STOP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
                throw new BrokerException(describe() + " survived SIGKILL for " + STOP_TIMEOUT.toSeconds() + " s");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new BrokerException("interrupted while killing " + describe(), e);
        } finally {
            LIVE.remove(p);
        }
    }

    public boolean isRunning() {
        return process != null && process.isAlive();
    }

    /** True when the process is gone although no test stopped or killed it. */
    public boolean diedOnItsOwn() {
        return process != null && !process.isAlive() && !stoppedByTest;
    }

    /** Stops the broker (killing it if SIGTERM is not enough) and deletes its data directory. */
    @Override
    public void close() {
        try {
            if (isRunning()) {
                stop();
            }
        } catch (BrokerException e) {
            System.err.println(e.getMessage());
        } finally {
            if (process != null && process.isAlive()) {
                process.destroyForcibly();
            }
            if (process != null) {
                LIVE.remove(process);
            }
            deleteRecursively(workDir);
        }
    }

    private void startProcess() {
        if (isRunning()) {
            throw new BrokerException(describe() + ": start while it is still running");
        }
        Path binary = binary();
        if (!Files.isExecutable(binary)) {
            throw new BrokerException(binary + " is not an executable file: build it with "
                    + "`cargo build --release --bin sluice` or point SLUICE_BIN at one");
        }
        starts++;
        stoppedByTest = false;
        List<String> args = extraArgs.stream().map(this::withPorts).toList();
        List<String> command = new ArrayList<>(List.of(binary.toString()));
        if (!args.contains("--listeners")) {
            command.addAll(List.of("--listen", bootstrapServers()));
        }
        command.addAll(List.of(
                "--data-dir", dataDir.toString(),
                "--metrics-listen", HOST + ":" + metricsPort));
        command.addAll(args);
        try {
            Files.writeString(logFile, "\n===== start #" + starts + ": " + String.join(" ", command) + "\n",
                    StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
            ProcessBuilder builder = new ProcessBuilder(command)
                    .directory(workDir.toFile())
                    .redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile()))
                    .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
            Map<String, String> env = builder.environment();
            env.putIfAbsent("RUST_LOG", envOr("SLUICE_LOG", "info"));
            env.putIfAbsent("RUST_BACKTRACE", "1");
            env.putAll(extraEnv);
            process = builder.start();
            LIVE.add(process);
        } catch (IOException e) {
            throw new BrokerException("cannot start " + binary + " for " + name, e);
        }
        waitUntilReady();
    }

    /**
     * Polls, bounded by {@link #START_TIMEOUT}, until the port accepts a connection and
     * describeCluster answers with this node; fails at once if the process exits.
     */
    private void waitUntilReady() {
        long deadline = System.nanoTime() + START_TIMEOUT.toNanos();
        int maxProbes = (int) (START_TIMEOUT.toMillis() / READY_PROBE_INTERVAL.toMillis()) + 1;
        String lastProblem = "never accepted a connection";
        for (int probe = 0; probe < maxProbes && System.nanoTime() < deadline; probe++) {
            if (!process.isAlive()) {
                throw new BrokerException(describe() + " exited with status " + process.exitValue()
                        + " before it was ready\n" + logTail());
            }
            if (acceptsConnections()) {
                try {
                    Collection<Node> nodes = describeClusterNodes();
                    if (nodes.size() == 1 && nodes.iterator().next().id() == NODE_ID
                            && nodes.iterator().next().port() == port) {
                        return;
                    }
                    lastProblem = "describeCluster answered " + nodes;
                } catch (Exception e) {
                    lastProblem = "describeCluster failed: " + e;
                }
            } else {
                lastProblem = "connection refused";
            }
            sleep(READY_PROBE_INTERVAL);
        }
        process.destroyForcibly();
        LIVE.remove(process);
        throw new BrokerException(describe() + " was not ready within " + START_TIMEOUT.toSeconds() + " s ("
                + lastProblem + "); killed it\n" + logTail());
    }

    private boolean acceptsConnections() {
        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress(HOST, port), 1000);
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    private Collection<Node> describeClusterNodes() throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers());
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "5000");
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "sluice-ready-probe");
        try (Admin admin = Admin.create(props)) {
            return admin.describeCluster().nodes().get(6, TimeUnit.SECONDS);
        }
    }

    private Process requireRunning(String action) {
        if (!isRunning()) {
            throw new BrokerException(action + ": " + describe() + " is not running\n" + logTail());
        }
        return process;
    }

    // ------------------------------------------------------------------ diagnostics

    public String describe() {
        String pid = process == null ? "-" : Long.toString(process.pid());
        return "sluice '" + name + "' on " + bootstrapServers() + " (pid " + pid + ", start #" + starts + ")";
    }

    /**
     * Panic lines first (a backtrace can push them out of the tail), then the last lines of the
     * log, without backtrace frames.
     */
    public String logTail() {
        List<String> lines;
        try {
            lines = Files.readAllLines(logFile, StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "(no broker log at " + logFile + ": " + e + ")";
        }
        StringBuilder out = new StringBuilder();
        List<String> panics = new ArrayList<>();
        for (int i = 0; i < lines.size() && panics.size() < 20; i++) {
            if (lines.get(i).contains("panicked at")) {
                panics.add(lines.get(i));
                if (i + 1 < lines.size()) {
                    panics.add(lines.get(i + 1));
                }
            }
        }
        if (!panics.isEmpty()) {
            out.append("----- broker panics -----\n");
            panics.forEach(line -> out.append(line).append('\n'));
        }
        List<String> tail = lines.stream()
                .filter(line -> !line.stripLeading().startsWith("at /") && !line.stripLeading().startsWith("at ./"))
                .toList();
        out.append("----- broker log tail (").append(logFile.getFileName()).append(") -----\n");
        tail.subList(Math.max(0, tail.size() - LOG_TAIL_LINES), tail.size())
                .forEach(line -> out.append(line).append('\n'));
        return out.toString();
    }

    @Override
    public String toString() {
        return describe();
    }

    // ------------------------------------------------------------------ helpers

    private String withPorts(String arg) {
        String out = arg.replace("{PORT}", Integer.toString(port));
        for (int n = 2; n < 2 + EXTRA_PORTS; n++) {
            out = out.replace("{PORT" + n + "}", Integer.toString(extraPort(n)));
        }
        return out;
    }

    static Path binary() {
        String fromEnv = System.getenv("SLUICE_BIN");
        if (fromEnv != null && !fromEnv.isBlank()) {
            return Paths.get(fromEnv).toAbsolutePath();
        }
        String root = System.getProperty("sluice.repoRoot", "../..");
        return Paths.get(root, "target", "release", "sluice").toAbsolutePath().normalize();
    }

    private static int[] freePorts(int count) throws IOException {
        List<ServerSocket> sockets = new ArrayList<>();
        try {
            int[] ports = new int[count];
            for (int i = 0; i < count; i++) {
                ServerSocket socket = new ServerSocket();
                socket.setReuseAddress(true);
                socket.bind(new InetSocketAddress(HOST, 0));
                sockets.add(socket);
                ports[i] = socket.getLocalPort();
            }
            return ports;
        } finally {
            for (ServerSocket socket : sockets) {
                socket.close();
            }
        }
    }

    private static String envOr(String name, String fallback) {
        String value = System.getenv(name);
        return value == null || value.isBlank() ? fallback : value;
    }

    private static String safeFileName(String name) {
        return name.replaceAll("[^A-Za-z0-9._-]", "_");
    }

    private static void sleep(Duration duration) {
        try {
            Thread.sleep(duration.toMillis());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new BrokerException("interrupted", e);
        }
    }

    private static void deleteRecursively(Path root) {
        if (!Files.exists(root)) {
            return;
        }
        try (Stream<Path> paths = Files.walk(root)) {
            paths.sorted(Comparator.reverseOrder()).forEach(path -> {
                try {
                    Files.deleteIfExists(path);
                } catch (IOException e) {
                    System.err.println("cannot delete " + path + ": " + e);
                }
            });
        } catch (IOException e) {
            System.err.println("cannot delete " + root + ": " + e);
        }
    }

    /** The broker did not start, stop or stay up as expected. */
    public static final class BrokerException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        BrokerException(String message) {
            super(message);
        }

        BrokerException(String message, Throwable cause) {
            super(message, cause);
        }
    }
}
