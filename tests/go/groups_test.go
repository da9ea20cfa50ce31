// Consumer groups with franz-go's default balancer for kgo.ConsumerGroup, cooperative-sticky,
// on Kafka's classic group protocol.
//
// Goal: on a six-partition topic, two members share the partitions, a third joins and one
// leaves; every record is consumed exactly once and in offset order, no partition is ever
// owned by two members at once, the committed offsets (kadm FetchOffsets) equal the end
// offsets, and they survive a broker restart: a member joining afterwards reads only records
// produced after the restart.
//
// Method: each member polls with BlockRebalanceOnPoll and auto-commit off, commits what it
// polled (CommitRecords) and only then allows a rebalance, so every hand-over starts at the
// committed offset. A shared tracker records partition ownership from the OnPartitions*
// callbacks (an assignment of a partition still owned elsewhere is a violation) and checks
// each consumed record against the current owner and the next expected offset.

package sluicetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	groupPartitions  = 6
	groupPerPhase    = 50 // records per partition in each phase
	groupSettleLimit = 60 * time.Second
)

// ownershipTracker is the test's view of the group: who owns which partition, and what was
// consumed. Members report to it from their callbacks and poll loops.
type ownershipTracker struct {
	partitions int // how many partitions the topic has
	mu         sync.Mutex
	owner      map[int32]string // partition -> member owning it now
	next       map[int32]int64  // partition -> next offset expected to be consumed
	perMember  map[string]int   // records consumed by each member
	consumed   int
	handovers  int // partitions assigned to a member after another had owned them
	everOwned  map[int32]string
	violations []string
}

func newOwnershipTracker(partitions int) *ownershipTracker {
	return &ownershipTracker{
		partitions: partitions,
		owner:      make(map[int32]string),
		next:       make(map[int32]int64),
		perMember:  make(map[string]int),
		everOwned:  make(map[int32]string),
	}
}

func (o *ownershipTracker) violation(format string, args ...any) {
	o.violations = append(o.violations, fmt.Sprintf(format, args...))
}

func (o *ownershipTracker) assigned(member string, partitions []int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range partitions {
		if current, ok := o.owner[p]; ok && current != member {
			o.violation("partition %d assigned to %s while %s still owns it", p, member, current)
		}
		if previous, ok := o.everOwned[p]; ok && previous != member {
			o.handovers++
		}
		o.owner[p] = member
		o.everOwned[p] = member
	}
}

func (o *ownershipTracker) released(member string, partitions []int32, how string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range partitions {
		if current := o.owner[p]; current != member {
			o.violation("partition %d %s from %s, but the owner is %q", p, how, member, current)
			continue
		}
		delete(o.owner, p)
	}
}

func (o *ownershipTracker) consume(member string, r *kgo.Record) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if current := o.owner[r.Partition]; current != member {
		o.violation("%s consumed partition %d offset %d while %q owns it", member, r.Partition, r.Offset, current)
	}
	if want := o.next[r.Partition]; r.Offset != want {
		o.violation("%s consumed partition %d offset %d, want offset %d (a gap or a duplicate)", member, r.Partition, r.Offset, want)
	}
	o.next[r.Partition] = r.Offset + 1
	o.perMember[member]++
	o.consumed++
}

func (o *ownershipTracker) consumedCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.consumed
}

// owners returns the member owning each partition now.
func (o *ownershipTracker) owners() map[int32]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.owner)
}

// ownedExactlyBy reports whether every partition is owned and the owners are exactly members,
// each owning at least one partition.
func (o *ownershipTracker) ownedExactlyBy(members ...string) bool {
	owners := o.owners()
	if len(owners) != o.partitions {
		return false
	}
	seen := make(map[string]bool)
	for _, m := range owners {
		if !slices.Contains(members, m) {
			return false
		}
		seen[m] = true
	}
	return len(seen) == len(members)
}

// groupMember is one consumer group member polling in its own goroutine.
type groupMember struct {
	name   string
	client *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
	errs   chan error
}

// startMember joins the group with franz-go's default balancer (cooperative-sticky) unless
// extra options say otherwise, and starts its poll loop.
func startMember(t *testing.T, b *Broker, tracker *ownershipTracker, name, group, topic string, extra ...kgo.Opt) *groupMember {
	t.Helper()
	opts := []kgo.Opt{
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.HeartbeatInterval(250 * time.Millisecond),
		kgo.FetchMaxWait(250 * time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			tracker.assigned(name, assigned[topic])
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
			tracker.released(name, revoked[topic], "revoked")
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
			tracker.released(name, lost[topic], "lost")
		}),
	}
	cl := NewClient(t, b, append(opts, extra...)...)
	ctx, cancel := context.WithCancel(context.Background())
	m := &groupMember{name: name, client: cl, cancel: cancel, done: make(chan struct{}), errs: make(chan error, 16)}
	go m.pollLoop(ctx, tracker)
	return m
}

func (m *groupMember) report(err error) {
	select {
	case m.errs <- fmt.Errorf("%s: %w", m.name, err):
	default:
	}
}

// pollLoop polls, checks and commits each batch of records before allowing a rebalance,
// until its context is cancelled.
func (m *groupMember) pollLoop(ctx context.Context, tracker *ownershipTracker) {
	defer close(m.done)
	for ctx.Err() == nil {
		pollCtx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := m.client.PollRecords(pollCtx, 200)
		cancel()
		if fetches.IsClientClosed() {
			return
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				m.report(fmt.Errorf("fetch %s[%d]: %w", topic, p, err))
			}
		})
		records := fetches.Records()
		for _, r := range records {
			tracker.consume(m.name, r)
		}
		if len(records) > 0 {
			commitCtx, cancel := context.WithTimeout(context.Background(), opTimeout)
			if err := m.client.CommitRecords(commitCtx, records...); err != nil {
				m.report(fmt.Errorf("committing %d records: %w", len(records), err))
			}
			cancel()
		}
		m.client.AllowRebalance()
	}
}

// leave stops the poll loop and closes the client, which revokes its partitions and sends
// LeaveGroup.
func (m *groupMember) leave(t *testing.T) {
	t.Helper()
	m.cancel()
	select {
	case <-m.done:
	case <-time.After(opTimeout):
		t.Fatalf("%s: poll loop did not stop within %s", m.name, opTimeout)
	}
	m.client.Close()
}

func checkMembers(t *testing.T, tracker *ownershipTracker, members ...*groupMember) {
	t.Helper()
	for _, m := range members {
		select {
		case err := <-m.errs:
			t.Fatalf("group member error: %v", err)
		default:
		}
	}
	tracker.mu.Lock()
	defer tracker.mu.Unlock()
	if len(tracker.violations) > 0 {
		t.Fatalf("%d ownership or ordering violations, first: %v", len(tracker.violations), tracker.violations[:min(5, len(tracker.violations))])
	}
}

// producePhase appends perPartition records to each partition in [0, partitions), each
// tagged with its phase.
func producePhase(t *testing.T, producer *kgo.Client, topic string, phase, partitions, perPartition int) {
	t.Helper()
	var records []*kgo.Record
	for i := range perPartition {
		for p := range int32(partitions) {
			records = append(records, &kgo.Record{
				Topic:     topic,
				Partition: p,
				Key:       fmt.Appendf(nil, "p%d", p),
				Value:     fmt.Appendf(nil, "phase-%d-record-%d", phase, i),
			})
		}
	}
	ProduceAll(t, producer, records)
}

// committedOffsets fetches the group's committed offsets for topic through kadm.
func committedOffsets(t *testing.T, adm *kadm.Client, group, topic string) map[int32]int64 {
	t.Helper()
	resp, err := adm.FetchOffsets(testContext(t, opTimeout), group)
	if err != nil {
		t.Fatalf("fetching the offsets of group %s: %v", group, err)
	}
	if err := resp.Error(); err != nil {
		t.Fatalf("fetching the offsets of group %s: %v", group, err)
	}
	out := make(map[int32]int64)
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic {
			out[o.Partition] = o.At
		}
	})
	return out
}

func TestGroupCooperativeStickyJoinLeaveRestart(t *testing.T) {
	b := StartBroker(t)
	adm := NewAdmin(t, b)
	topic := UniqueName(t, "group")
	group := UniqueName(t, "g")
	CreateTopic(t, adm, topic, groupPartitions, nil)
	producer := NewClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	tracker := newOwnershipTracker(groupPartitions)
	perPhaseTotal := groupPartitions * groupPerPhase

	// Phase 1: two members share the six partitions.
	producePhase(t, producer, topic, 1, groupPartitions, groupPerPhase)
	a := startMember(t, b, tracker, "member-a", group, topic)
	bm := startMember(t, b, tracker, "member-b", group, topic)
	WaitFor(t, groupSettleLimit, "members a and b to own every partition", func() bool {
		return tracker.ownedExactlyBy("member-a", "member-b")
	})
	WaitFor(t, groupSettleLimit, "phase 1 to be consumed", func() bool { return tracker.consumedCount() >= perPhaseTotal })
	checkMembers(t, tracker, a, bm)

	// Phase 2: a third member joins; cooperative-sticky moves partitions to it.
	c := startMember(t, b, tracker, "member-c", group, topic)
	WaitFor(t, groupSettleLimit, "member c to join and take partitions", func() bool {
		return tracker.ownedExactlyBy("member-a", "member-b", "member-c")
	})
	producePhase(t, producer, topic, 2, groupPartitions, groupPerPhase)
	WaitFor(t, groupSettleLimit, "phase 2 to be consumed", func() bool { return tracker.consumedCount() >= 2*perPhaseTotal })
	checkMembers(t, tracker, a, bm, c)

	// Phase 3: member a leaves; b and c take over its partitions from its commits.
	a.leave(t)
	WaitFor(t, groupSettleLimit, "members b and c to own every partition", func() bool {
		return tracker.ownedExactlyBy("member-b", "member-c")
	})
	producePhase(t, producer, topic, 3, groupPartitions, groupPerPhase)
	WaitFor(t, groupSettleLimit, "phase 3 to be consumed", func() bool { return tracker.consumedCount() >= 3*perPhaseTotal })
	checkMembers(t, tracker, a, bm, c)

	tracker.mu.Lock()
	consumed, perMember, handovers := tracker.consumed, maps.Clone(tracker.perMember), tracker.handovers
	tracker.mu.Unlock()
	if consumed != 3*perPhaseTotal {
		t.Fatalf("consumed %d records, want exactly %d", consumed, 3*perPhaseTotal)
	}
	for _, name := range []string{"member-a", "member-b", "member-c"} {
		if perMember[name] == 0 {
			t.Fatalf("%s consumed nothing (per member: %v)", name, perMember)
		}
	}
	if handovers == 0 {
		t.Fatalf("no partition ever moved between members")
	}
	t.Logf("consumed per member %v, %d partition hand-overs", perMember, handovers)

	// The committed offsets are the end offsets, before and after a broker restart.
	bm.leave(t)
	c.leave(t)
	checkMembers(t, tracker, a, bm, c)
	end := EndOffsets(t, adm, topic)
	for p := range int32(groupPartitions) {
		if end[p] != 3*groupPerPhase {
			t.Fatalf("partition %d end offset %d, want %d", p, end[p], 3*groupPerPhase)
		}
	}
	if got := committedOffsets(t, adm, group, topic); !maps.Equal(got, end) {
		t.Fatalf("committed offsets %v, want the end offsets %v", got, end)
	}
	lags, err := adm.Lag(testContext(t, opTimeout), group)
	if err != nil || lags.Error() != nil {
		t.Fatalf("kadm Lag: %v / %v", err, lags.Error())
	}
	if lag := lags[group]; lag.State != "Empty" || lag.Lag.Total() != 0 || len(lag.Lag[topic]) != groupPartitions {
		t.Fatalf("group %s lag: state %q, total %d over %d partitions; want Empty, 0 over %d", group, lag.State, lag.Lag.Total(), len(lag.Lag[topic]), groupPartitions)
	}

	b.Restart()
	if got := committedOffsets(t, adm, group, topic); !maps.Equal(got, end) {
		t.Fatalf("after a restart the committed offsets are %v, want %v", got, end)
	}

	// A member joining after the restart resumes at the committed offsets: it reads only the
	// records produced now.
	producePhase(t, producer, topic, 4, groupPartitions, groupPerPhase)
	d := startMember(t, b, tracker, "member-d", group, topic)
	WaitFor(t, groupSettleLimit, "member d to consume phase 4", func() bool { return tracker.consumedCount() >= 4*perPhaseTotal })
	d.leave(t)
	checkMembers(t, tracker, d)
	tracker.mu.Lock()
	if tracker.consumed != 4*perPhaseTotal || tracker.perMember["member-d"] != perPhaseTotal {
		t.Fatalf("after the restart member d consumed %d records (total %d), want %d (total %d)",
			tracker.perMember["member-d"], tracker.consumed, perPhaseTotal, 4*perPhaseTotal)
	}
	tracker.mu.Unlock()
	want := EndOffsets(t, adm, topic)
	if got := committedOffsets(t, adm, group, topic); !maps.Equal(got, want) {
		t.Fatalf("committed offsets after phase 4 %v, want %v", got, want)
	}
}
