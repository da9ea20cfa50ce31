package io.sluice.javaclient;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.LifecycleMethodExecutionExceptionHandler;
import org.junit.jupiter.api.extension.TestExecutionExceptionHandler;
import org.opentest4j.TestAbortedException;

/**
 * Owns the brokers of one test class: a shared broker started on first use and closed after the
 * class, and brokers of a single test (for restarts and crashes) closed after that test.
 *
 * <p>When a test fails, the tail of each broker's log is printed and attached to the failure as
 * a suppressed exception, so it shows in the Surefire report next to the stack trace. A broker
 * that exits although no test stopped it fails the test that was running.
 *
 * <p>Use: {@code @RegisterExtension static final SluiceBrokerExtension SLUICE = new
 * SluiceBrokerExtension();} then {@code SLUICE.broker()} or {@code SLUICE.newBroker("name")}.
 */
public final class SluiceBrokerExtension implements BeforeAllCallback, AfterEachCallback, AfterAllCallback,
        TestExecutionExceptionHandler, LifecycleMethodExecutionExceptionHandler {

    private SluiceBroker shared;
    private String className = "sluice";
    private final List<SluiceBroker> perTest = new ArrayList<>();

    /** The broker shared by the tests of this class; started on first call. */
    public synchronized SluiceBroker broker() {
        return broker(new String[0]);
    }

    /** The broker shared by the tests of this class, started on first call with these flags. */
    public synchronized SluiceBroker broker(String... extraArgs) {
        if (shared == null) {
            shared = SluiceBroker.start(className, extraArgs);
        }
        return shared;
    }

    /** A broker for the running test alone, closed (and its data deleted) when the test ends. */
    public synchronized SluiceBroker newBroker(String testName, String... extraArgs) {
        SluiceBroker broker = SluiceBroker.start(className + "." + testName, extraArgs);
        perTest.add(broker);
        return broker;
    }

    /** As {@link #newBroker(String, String...)}, with environment variables set for the broker. */
    public synchronized SluiceBroker newBroker(String testName, Map<String, String> extraEnv, String... extraArgs) {
        SluiceBroker broker = SluiceBroker.start(className + "." + testName, extraEnv, extraArgs);
        perTest.add(broker);
        return broker;
    }

    @Override
    public synchronized void beforeAll(ExtensionContext context) {
        className = context.getRequiredTestClass().getSimpleName();
    }

    @Override
    public void handleTestExecutionException(ExtensionContext context, Throwable throwable) throws Throwable {
        throw withBrokerLogs(throwable);
    }

    @Override
    public void handleBeforeAllMethodExecutionException(ExtensionContext context, Throwable throwable)
            throws Throwable {
        throw withBrokerLogs(throwable);
    }

    @Override
    public void handleBeforeEachMethodExecutionException(ExtensionContext context, Throwable throwable)
            throws Throwable {
        throw withBrokerLogs(throwable);
    }

    @Override
    public void handleAfterEachMethodExecutionException(ExtensionContext context, Throwable throwable)
            throws Throwable {
        throw withBrokerLogs(throwable);
    }

    @Override
    public void afterEach(ExtensionContext context) {
        List<SluiceBroker> ownBrokers;
        synchronized (this) {
            ownBrokers = new ArrayList<>(perTest);
            perTest.clear();
        }
        StringBuilder died = new StringBuilder();
        for (SluiceBroker broker : ownBrokers) {
            if (broker.diedOnItsOwn()) {
                died.append(broker.describe()).append(" exited on its own\n").append(broker.logTail());
            }
            broker.close();
        }
        SluiceBroker sharedBroker = sharedBroker();
        if (sharedBroker != null && sharedBroker.diedOnItsOwn()) {
            died.append(sharedBroker.describe()).append(" exited on its own\n").append(sharedBroker.logTail());
        }
        if (died.length() > 0) {
            throw new SluiceBroker.BrokerException(died.toString());
        }
    }

    @Override
    public void afterAll(ExtensionContext context) {
        SluiceBroker sharedBroker;
        synchronized (this) {
            sharedBroker = shared;
            shared = null;
        }
        if (sharedBroker != null) {
            sharedBroker.close();
        }
    }

    private synchronized SluiceBroker sharedBroker() {
        return shared;
    }

    private Throwable withBrokerLogs(Throwable throwable) {
        if (throwable instanceof TestAbortedException) {
            return throwable; // an expected failure (@ExpectedToFail) or an assumption: no noise
        }
        List<SluiceBroker> brokers = new ArrayList<>();
        synchronized (this) {
            if (shared != null) {
                brokers.add(shared);
            }
            brokers.addAll(perTest);
        }
        for (SluiceBroker broker : brokers) {
            String tail = broker.describe() + "\n" + broker.logTail();
            System.err.println(tail);
            throwable.addSuppressed(new BrokerLogTail(tail));
        }
        return throwable;
    }

    /** Carries a broker log tail into the failure report; it has no stack trace of its own. */
    static final class BrokerLogTail extends RuntimeException {
        private static final long serialVersionUID = 1L;

        BrokerLogTail(String tail) {
            super(tail, null, false, false);
        }
    }
}
