package io.sluice.javaclient;

import java.lang.reflect.Method;
import java.nio.file.Path;
import java.nio.file.Paths;

import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.InvocationInterceptor;
import org.junit.jupiter.api.extension.ReflectiveInvocationContext;
import org.junit.platform.commons.support.AnnotationSupport;
import org.junit.platform.commons.support.ReflectionSupport;
import org.junitpioneer.jupiter.ExpectedToFail;

/**
 * Lets the tests of a class marked {@code @ExpectedToFail} run as ordinary tests against the
 * reference broker, where they must pass; against Sluice, {@code @ExpectedToFail} keeps its usual
 * meaning (a failure is reported as skipped, a success as a failure that says to remove the
 * marker).
 *
 * <p>Why: junit-pioneer's extension inverts every result. In a reference run (the suite pointed at
 * Apache Kafka through {@code SLUICE_BIN=.../kafka-as-sluice}) a test of a feature Sluice has not
 * built yet passes, and would be reported as failed; a test that is wrong would fail and be
 * reported as skipped, so the run could not tell them apart.
 *
 * <p>How: register it on the class ({@code @ExtendWith(ExpectedToFailOnSluiceOnly.class)}). Class
 * extensions wrap method extensions, so this interceptor runs outside pioneer's. In a reference
 * run it invokes the test method itself and skips the rest of the interceptor chain (pioneer's
 * inversion), so the test's own result is reported; otherwise it only proceeds. JUnit's timeout
 * still applies: its interceptor is registered before any class extension and wraps this one.
 *
 * <p>A reference run is one whose {@code SLUICE_BIN} names a file called {@code kafka-as-sluice}.
 */
public final class ExpectedToFailOnSluiceOnly implements InvocationInterceptor {

    /** The stand-in for the broker binary that runs Apache Kafka (tests/java/kafka-as-sluice). */
    static final String REFERENCE_STAND_IN = "kafka-as-sluice";

    /** True when this JVM's tests run against the reference broker rather than Sluice. */
    static boolean referenceRun() {
        String bin = System.getenv("SLUICE_BIN");
        if (bin == null || bin.isBlank()) {
            return false;
        }
        Path name = Paths.get(bin).getFileName();
        return name != null && name.toString().equals(REFERENCE_STAND_IN);
    }

    @Override
    public void interceptTestMethod(Invocation<Void> invocation, ReflectiveInvocationContext<Method> invocationContext,
            ExtensionContext extensionContext) throws Throwable {
        Method method = invocationContext.getExecutable();
        if (!referenceRun() || !AnnotationSupport.isAnnotated(method, ExpectedToFail.class)) {
            invocation.proceed();
            return;
        }
        invocation.skip();
        // Rethrows what the test threw, unwrapped, so it is reported as the test's own failure.
        ReflectionSupport.invokeMethod(method, invocationContext.getTarget().orElse(null),
                invocationContext.getArguments().toArray());
    }
}
