package io.sluice.javaclient;

import java.time.Duration;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/**
 * Bounded waiting: every loop here stops after a deadline and a maximum number of rounds, and a
 * timeout is an assertion failure that says what was awaited and the last state seen.
 */
public final class Waits {

    /** The default bound for anything a healthy broker does in well under a second. */
    public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(60);

    private static final Duration INTERVAL = Duration.ofMillis(100);

    private Waits() {
    }

    /** Waits until {@code condition} holds; fails with {@code what} and {@code state} on timeout. */
    public static void until(String what, Duration timeout, BooleanSupplier condition, Supplier<String> state) {
        long deadline = System.nanoTime() + timeout.toNanos();
        long maxRounds = timeout.toMillis() / INTERVAL.toMillis() + 1;
        for (long round = 0; round < maxRounds; round++) {
            if (condition.getAsBoolean()) {
                return;
            }
            if (System.nanoTime() > deadline) {
                break;
            }
            sleep(INTERVAL);
        }
        if (condition.getAsBoolean()) {
            return;
        }
        throw new AssertionError("timed out after " + timeout.toSeconds() + " s waiting until " + what
                + "; last state: " + state.get());
    }

    public static void until(String what, Duration timeout, BooleanSupplier condition) {
        until(what, timeout, condition, () -> "(not recorded)");
    }

    public static void sleep(Duration duration) {
        try {
            Thread.sleep(duration.toMillis());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }
}
