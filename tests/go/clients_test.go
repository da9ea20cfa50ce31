// Client helpers shared by the suites: franz-go clients bound to a test broker, topic
// creation, bounded produce and read-to-end consumption, record comparison and bounded waits.
//
// Goal: each test states what it sends and what it expects in a few lines, with every wait
// bounded in time so that a broker that hangs fails the test instead of stalling the suite.
//
// Method: thin wrappers over kgo and kadm that fail the test on any error, read partitions
// from the start up to the end offsets that kadm lists, and poll conditions on a fixed cadence
// until a deadline.

package sluicetest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// opTimeout bounds one client call (a produce, an admin request).
	opTimeout = 30 * time.Second
	// consumeTimeout bounds reading a topic to its end.
	consumeTimeout = 60 * time.Second
)

var nameCounter atomic.Int64

var unsafeNameChars = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// UniqueName returns a topic or group name unique within the run, derived from the test name.
func UniqueName(t testing.TB, kind string) string {
	name := unsafeNameChars.ReplaceAllString(t.Name(), "-")
	if len(name) > 80 {
		name = name[len(name)-80:]
	}
	return fmt.Sprintf("%s-%s-%d", kind, strings.Trim(name, "-"), nameCounter.Add(1))
}

// clientLogger returns franz-go's logger when SLUICE_GO_CLIENT_LOG names a level.
func clientLogger() (kgo.Opt, bool) {
	var level kgo.LogLevel
	switch strings.ToLower(os.Getenv("SLUICE_GO_CLIENT_LOG")) {
	case "debug":
		level = kgo.LogLevelDebug
	case "info":
		level = kgo.LogLevelInfo
	case "warn":
		level = kgo.LogLevelWarn
	case "error":
		level = kgo.LogLevelError
	default:
		return nil, false
	}
	return kgo.WithLogger(kgo.BasicLogger(os.Stderr, level, nil)), true
}

// NewClient returns a franz-go client seeded with the broker, closed when the test ends.
// Options not given keep franz-go's defaults (idempotent producer, acks=all).
func NewClient(t testing.TB, b *Broker, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(ClientOpts(b, opts...)...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// ClientOpts returns the options every test client starts from (the seed broker, a client id,
// the optional logger), followed by opts.
func ClientOpts(b *Broker, opts ...kgo.Opt) []kgo.Opt {
	all := []kgo.Opt{kgo.SeedBrokers(b.Addr()), kgo.ClientID("sluice-go-tests")}
	if logger, ok := clientLogger(); ok {
		all = append(all, logger)
	}
	return append(all, opts...)
}

// NewAdmin returns a kadm client on its own franz-go client.
func NewAdmin(t testing.TB, b *Broker) *kadm.Client {
	t.Helper()
	return kadm.NewClient(NewClient(t, b))
}

// CreateTopic creates a topic with one replica and fails the test on any error.
func CreateTopic(t testing.TB, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	resp, err := adm.CreateTopic(testContext(t, opTimeout), partitions, 1, configs, topic)
	if err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
	if resp.Err != nil {
		t.Fatalf("creating topic %s: %v (%s)", topic, resp.Err, resp.ErrMessage)
	}
	if resp.NumPartitions != partitions {
		t.Fatalf("topic %s created with %d partitions, want %d", topic, resp.NumPartitions, partitions)
	}
}

// ProduceAll produces the records synchronously and fails the test if any is not acknowledged.
// Each record is updated with the partition and offset the broker assigned.
func ProduceAll(t testing.TB, cl *kgo.Client, records []*kgo.Record) {
	t.Helper()
	ctx := testContext(t, opTimeout)
	if err := cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatalf("producing %d records: %v", len(records), err)
	}
}

// EndOffsets lists the end offset of every partition of the topic.
func EndOffsets(t testing.TB, adm *kadm.Client, topic string) map[int32]int64 {
	t.Helper()
	return listedOffsets(t, topic, "end", func(ctx context.Context) (kadm.ListedOffsets, error) {
		return adm.ListEndOffsets(ctx, topic)
	})
}

// StartOffsets lists the log start offset of every partition of the topic.
func StartOffsets(t testing.TB, adm *kadm.Client, topic string) map[int32]int64 {
	t.Helper()
	return listedOffsets(t, topic, "start", func(ctx context.Context) (kadm.ListedOffsets, error) {
		return adm.ListStartOffsets(ctx, topic)
	})
}

func listedOffsets(t testing.TB, topic, which string, list func(context.Context) (kadm.ListedOffsets, error)) map[int32]int64 {
	t.Helper()
	listed, err := list(testContext(t, opTimeout))
	if err != nil {
		t.Fatalf("listing %s offsets of %s: %v", which, topic, err)
	}
	if err := listed.Error(); err != nil {
		t.Fatalf("listing %s offsets of %s: %v", which, topic, err)
	}
	out := make(map[int32]int64)
	for _, o := range listed[topic] {
		out[o.Partition] = o.Offset
	}
	if len(out) == 0 {
		t.Fatalf("listing %s offsets of %s: no partitions listed", which, topic)
	}
	return out
}

// ConsumeToEnd reads every partition of the topic from its first offset up to the end offset
// listed now, with a direct (group-less) consumer, and returns the records per partition in
// offset order. Extra client options (such as an isolation level) may be given.
func ConsumeToEnd(t testing.TB, b *Broker, topic string, opts ...kgo.Opt) map[int32][]*kgo.Record {
	t.Helper()
	adm := NewAdmin(t, b)
	start := StartOffsets(t, adm, topic)
	end := EndOffsets(t, adm, topic)
	byPartition := make(map[int32][]*kgo.Record)
	remaining := 0
	for p, e := range end {
		byPartition[p] = nil
		remaining += int(e - start[p])
	}
	if remaining == 0 {
		return byPartition
	}
	all := append([]kgo.Opt{
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500 * time.Millisecond),
	}, opts...)
	cl := NewClient(t, b, all...)
	defer cl.Close()
	deadline := time.Now().Add(consumeTimeout)
	for remaining > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("consuming %s: %d records still missing after %s (read %s, want up to %v)",
				topic, remaining, consumeTimeout, countsOf(byPartition), end)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fetches := cl.PollFetches(ctx)
		cancel()
		fetches.EachError(func(tp string, p int32, err error) {
			if err != context.DeadlineExceeded {
				t.Fatalf("consuming %s[%d]: %v", tp, p, err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset >= end[r.Partition] {
				return // produced after the end offsets were listed
			}
			byPartition[r.Partition] = append(byPartition[r.Partition], r)
			remaining--
		})
	}
	return byPartition
}

func countsOf(byPartition map[int32][]*kgo.Record) string {
	keys := make([]int32, 0, len(byPartition))
	for p := range byPartition {
		keys = append(keys, p)
	}
	slices.Sort(keys)
	var parts []string
	for _, p := range keys {
		parts = append(parts, fmt.Sprintf("%d:%d", p, len(byPartition[p])))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// SameRecord reports how got differs from want in key, value, headers and timestamp (to the
// millisecond, the protocol's precision), or nil when they match.
func SameRecord(want, got *kgo.Record) error {
	switch {
	case !bytes.Equal(want.Key, got.Key) || (want.Key == nil) != (got.Key == nil):
		return fmt.Errorf("key %q (nil %t), want %q (nil %t)", got.Key, got.Key == nil, want.Key, want.Key == nil)
	case !bytes.Equal(want.Value, got.Value) || (want.Value == nil) != (got.Value == nil):
		return fmt.Errorf("value of %d bytes (nil %t), want %d bytes (nil %t)", len(got.Value), got.Value == nil, len(want.Value), want.Value == nil)
	case len(want.Headers) != len(got.Headers):
		return fmt.Errorf("%d headers, want %d", len(got.Headers), len(want.Headers))
	case got.Timestamp.UnixMilli() != want.Timestamp.UnixMilli():
		return fmt.Errorf("timestamp %d ms, want %d ms", got.Timestamp.UnixMilli(), want.Timestamp.UnixMilli())
	}
	for i := range want.Headers {
		w, g := want.Headers[i], got.Headers[i]
		if w.Key != g.Key || !bytes.Equal(w.Value, g.Value) || (w.Value == nil) != (g.Value == nil) {
			return fmt.Errorf("header %d is %q=%q, want %q=%q", i, g.Key, g.Value, w.Key, w.Value)
		}
	}
	return nil
}

// WaitFor polls cond every 50 ms until it holds, and fails the test after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ConsumeN reads the topic from the start of every partition with a direct consumer until n
// records have arrived, and returns them in arrival order (offset order within a partition).
// It is for topics whose offsets are not all data records, such as transactional ones.
func ConsumeN(t testing.TB, b *Broker, topic string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	all := append([]kgo.Opt{
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500 * time.Millisecond),
	}, opts...)
	cl := NewClient(t, b, all...)
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(consumeTimeout)
	for len(out) < n {
		if time.Now().After(deadline) {
			t.Fatalf("consuming %s: %d of %d records after %s", topic, len(out), n, consumeTimeout)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fetches := cl.PollFetches(ctx)
		cancel()
		fetches.EachError(func(tp string, p int32, err error) {
			if err != context.DeadlineExceeded {
				t.Fatalf("consuming %s[%d]: %v", tp, p, err)
			}
		})
		out = append(out, fetches.Records()...)
	}
	return out
}
