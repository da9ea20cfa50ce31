// Skips for tests that are written to pass against Apache Kafka but cannot pass against
// Sluice today, each with its reason in the skip message.
//
// Goal: the suite stays green while every known gap stays visible in `go test -v` output and
// can be re-checked at once: SLUICE_GO_RUN_SKIPPED=1 runs these tests instead of skipping
// them, to see whether the broker has caught up.
//
// Method: two helpers called at the top of a test (or subtest): one for a difference from
// Kafka's behaviour, one for a feature the broker has not built yet.

package sluicetest

import (
	"os"
	"testing"
)

func runSkipped() bool { return os.Getenv("SLUICE_GO_RUN_SKIPPED") == "1" }

// knownDifference skips a test that fails because Sluice answers differently from Kafka.
func knownDifference(t *testing.T, reason string) {
	t.Helper()
	if runSkipped() {
		t.Logf("running despite a known difference from Kafka: %s", reason)
		return
	}
	t.Skip("sluice differs from Kafka: " + reason)
}

// notBuiltYet skips a test of a feature the broker does not have yet.
func notBuiltYet(t *testing.T, feature, reason string) {
	t.Helper()
	if runSkipped() {
		t.Logf("running although %s is not built yet: %s", feature, reason)
		return
	}
	t.Skipf("expected to fail until %s is built: %s", feature, reason)
}
