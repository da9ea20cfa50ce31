// Features Sluice has not built yet, tested as they behave on Apache Kafka: transactions
// (a transactional producer and franz-go's GroupTransactSession) and the KIP-848 consumer
// group protocol (franz-go's ServerSideBalancer).
//
// Goal: the day the broker gains a feature, its test is ready: each test asserts what Kafka
// does (4.x; for KIP-848 4.3+, the first release franz-go recommends ServerSideBalancer
// with), and is skipped with the reason until then (SLUICE_GO_RUN_SKIPPED=1 runs them).
//
// Method: transactions: commit, abort and commit again on one transactional id, then check
// that a read_committed consumer sees exactly the committed records and a read_uncommitted one
// sees all of them, with the end offset counting the commit/abort markers; a consume-transform-
// produce loop in a GroupTransactSession whose output and group offsets move together. KIP-848:
// the broker advertises ConsumerGroupHeartbeat v1+ and ConsumerGroupDescribe, two members with
// ServerSideBalancer split a topic with the server-side "uniform" assignor, and the group is
// listed and described as a "consumer" group.

package sluicetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const txnTimeout = 20 * time.Second

func TestTransactionalProducerCommitAbort(t *testing.T) {
	notBuiltYet(t, "transaction support", "FindCoordinator for a transactional id answers COORDINATOR_NOT_AVAILABLE, so franz-go "+
		"retries InitProducerId until the produce times out, and AddPartitionsToTxn, EndTxn and the other "+
		"transaction APIs are not advertised")
	b := StartBroker(t)
	adm := NewAdmin(t, b)
	topic := UniqueName(t, "txn")
	CreateTopic(t, adm, topic, 1, nil)
	producer := NewClient(t, b, kgo.TransactionalID(UniqueName(t, "txid")), kgo.TransactionTimeout(txnTimeout))
	ctx := testContext(t, opTimeout)

	transact := func(prefix string, n int, end kgo.TransactionEndTry) []*kgo.Record {
		t.Helper()
		if err := producer.BeginTransaction(); err != nil {
			t.Fatalf("beginning the %s transaction: %v", prefix, err)
		}
		var records []*kgo.Record
		for i := range n {
			records = append(records, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "%s-%d", prefix, i), Value: fmt.Appendf(nil, "%s value %d", prefix, i)})
		}
		if err := producer.ProduceSync(ctx, records...).FirstErr(); err != nil {
			t.Fatalf("producing in the %s transaction: %v", prefix, err)
		}
		if err := producer.EndTransaction(ctx, end); err != nil {
			t.Fatalf("ending the %s transaction: %v", prefix, err)
		}
		return records
	}
	committed := transact("committed", 10, kgo.TryCommit)
	aborted := transact("aborted", 5, kgo.TryAbort)
	late := transact("late", 3, kgo.TryCommit)

	// Each transaction ends with one control record: 10 + 1 + 5 + 1 + 3 + 1 offsets.
	if end := EndOffsets(t, adm, topic); end[0] != 21 {
		t.Fatalf("end offset %d, want 21 (18 records and 3 transaction markers)", end[0])
	}

	wantCommitted := append(slices.Clone(committed), late...)
	gotCommitted := ConsumeN(t, b, topic, len(wantCommitted), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if len(gotCommitted) != len(wantCommitted) {
		t.Fatalf("read_committed consumed %d records, want %d", len(gotCommitted), len(wantCommitted))
	}
	for i, r := range gotCommitted {
		if err := SameRecord(wantCommitted[i], r); err != nil {
			t.Fatalf("read_committed record %d (offset %d): %v", i, r.Offset, err)
		}
	}
	if gotCommitted[len(committed)].Offset != 17 {
		t.Fatalf("the first record of the late transaction is at offset %d, want 17", gotCommitted[len(committed)].Offset)
	}

	wantAll := append(append(slices.Clone(committed), aborted...), late...)
	gotAll := ConsumeN(t, b, topic, len(wantAll))
	if len(gotAll) != len(wantAll) {
		t.Fatalf("read_uncommitted consumed %d records, want %d", len(gotAll), len(wantAll))
	}
	for i, r := range gotAll {
		if err := SameRecord(wantAll[i], r); err != nil {
			t.Fatalf("read_uncommitted record %d (offset %d): %v", i, r.Offset, err)
		}
	}
}

func TestGroupTransactSessionConsumeTransformProduce(t *testing.T) {
	notBuiltYet(t, "transaction support", "GroupTransactSession needs a transaction coordinator: FindCoordinator for a "+
		"transactional id answers COORDINATOR_NOT_AVAILABLE, so the first transactional produce times out, and "+
		"AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn are not advertised")
	b := StartBroker(t)
	adm := NewAdmin(t, b)
	input, output := UniqueName(t, "in"), UniqueName(t, "out")
	group := UniqueName(t, "g")
	CreateTopic(t, adm, input, 2, nil)
	CreateTopic(t, adm, output, 2, nil)
	const n = 40
	var inputs []*kgo.Record
	for i := range n {
		inputs = append(inputs, &kgo.Record{Topic: input, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)})
	}
	ProduceAll(t, NewClient(t, b), inputs)

	sess, err := kgo.NewGroupTransactSession(ClientOpts(b,
		kgo.TransactionalID(UniqueName(t, "txid")),
		kgo.TransactionTimeout(txnTimeout),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(input),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.HeartbeatInterval(250*time.Millisecond),
	)...)
	if err != nil {
		t.Fatalf("NewGroupTransactSession: %v", err)
	}
	defer sess.Close()

	processed := 0
	deadline := time.Now().Add(consumeTimeout)
	for processed < n {
		if time.Now().After(deadline) {
			t.Fatalf("processed %d of %d records within %s", processed, n, consumeTimeout)
		}
		pollCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fetches := sess.PollFetches(pollCtx)
		cancel()
		fetches.EachError(func(tp string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("polling %s[%d]: %v", tp, p, err)
			}
		})
		records := fetches.Records()
		if len(records) == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			t.Fatalf("beginning a transaction: %v", err)
		}
		ctx := testContext(t, opTimeout)
		for _, r := range records {
			out := &kgo.Record{Topic: output, Key: r.Key, Value: append([]byte("processed "), r.Value...)}
			if err := sess.ProduceSync(ctx, out).FirstErr(); err != nil {
				t.Fatalf("producing in the transaction: %v", err)
			}
		}
		committed, err := sess.End(ctx, kgo.TryCommit)
		if err != nil {
			t.Fatalf("ending the transaction: %v", err)
		}
		if committed {
			processed += len(records)
		}
	}
	if processed != n {
		t.Fatalf("processed %d records, want exactly %d", processed, n)
	}

	outputs := ConsumeN(t, b, output, n, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	want := make(map[string]int)
	for _, r := range inputs {
		want[string(r.Key)+"="+"processed "+string(r.Value)]++
	}
	got := make(map[string]int)
	for _, r := range outputs {
		got[string(r.Key)+"="+string(r.Value)]++
	}
	if !maps.Equal(got, want) {
		t.Fatalf("committed output holds %d distinct records (%d in all), want each of the %d inputs processed once", len(got), len(outputs), n)
	}
	end := EndOffsets(t, adm, input)
	if offsets := committedOffsets(t, adm, group, input); !maps.Equal(offsets, end) {
		t.Fatalf("the group committed %v in its transactions, want the input end offsets %v", offsets, end)
	}
}

func TestKIP848ConsumerGroupProtocol(t *testing.T) {
	notBuiltYet(t, "the KIP-848 consumer group protocol", "ApiVersions lists neither ConsumerGroupHeartbeat nor "+
		"ConsumerGroupDescribe, so franz-go's ServerSideBalancer silently falls back to the classic protocol")
	b := StartBroker(t)
	adm := NewAdmin(t, b)
	ctx := testContext(t, 2*opTimeout)

	// Kafka 4.0+ serves the consumer protocol: ConsumerGroupHeartbeat v1 (the version franz-go
	// requires) and ConsumerGroupDescribe.
	versions, err := adm.ApiVersions(ctx)
	if err != nil || versions[1].Err != nil {
		t.Fatalf("ApiVersions: %v / %v", err, versions[1].Err)
	}
	v := versions[1]
	for key, atLeast := range map[kmsg.Key]int16{kmsg.ConsumerGroupHeartbeat: 1, kmsg.ConsumerGroupDescribe: 0} {
		if _, hi, ok := v.KeyVersions(int16(key)); !ok || hi < atLeast {
			t.Fatalf("%s advertised %t up to v%d, want at least v%d", key.Name(), ok, hi, atLeast)
		}
	}

	const partitions, perPartition = 4, 10
	topic, group := UniqueName(t, "kip848"), UniqueName(t, "g")
	CreateTopic(t, adm, topic, partitions, nil)
	producePhase(t, NewClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner())), topic, 1, partitions, perPartition)

	tracker := newOwnershipTracker(partitions)
	a := startMember(t, b, tracker, "member-a", group, topic, kgo.ServerSideBalancer())
	bm := startMember(t, b, tracker, "member-b", group, topic, kgo.ServerSideBalancer())
	WaitFor(t, groupSettleLimit, "both members to own partitions", func() bool { return tracker.ownedExactlyBy("member-a", "member-b") })
	WaitFor(t, groupSettleLimit, "every record to be consumed", func() bool { return tracker.consumedCount() >= partitions*perPartition })
	checkMembers(t, tracker, a, bm)
	if got := tracker.consumedCount(); got != partitions*perPartition {
		t.Fatalf("consumed %d records, want exactly %d", got, partitions*perPartition)
	}

	described, err := adm.DescribeConsumerGroups(ctx, group)
	if err != nil {
		t.Fatalf("DescribeConsumerGroups: %v", err)
	}
	g := described[group]
	if g.Err != nil || g.State != "Stable" || g.AssignorName != "uniform" || len(g.Members) != 2 {
		t.Fatalf("described group: err %v state %q assignor %q with %d members; want Stable, uniform, 2", g.Err, g.State, g.AssignorName, len(g.Members))
	}
	for _, m := range g.Members {
		if m.MemberType != 1 || m.MemberEpoch <= 0 || !slices.Equal(m.SubscribedTopics, []string{topic}) {
			t.Fatalf("member %s: type %d epoch %d subscribed %v; want a consumer-protocol member (type 1) of %s", m.MemberID, m.MemberType, m.MemberEpoch, m.SubscribedTopics, topic)
		}
	}
	if assigned := g.AssignedPartitions(); len(assigned[topic]) != partitions {
		t.Fatalf("the group assigns %v, want all %d partitions of %s", assigned, partitions, topic)
	}

	listed, err := adm.ListGroupsByType(ctx, []string{"consumer"})
	if err != nil {
		t.Fatalf("ListGroupsByType(consumer): %v", err)
	}
	if lg, ok := listed[group]; !ok || lg.GroupType != "consumer" {
		t.Fatalf("ListGroups of type consumer: %s listed %t as %+v", group, ok, lg)
	}

	a.leave(t)
	bm.leave(t)
	checkMembers(t, tracker, a, bm)
	end := EndOffsets(t, adm, topic)
	if got := committedOffsets(t, adm, group, topic); !maps.Equal(got, end) {
		t.Fatalf("committed offsets %v, want the end offsets %v", got, end)
	}
}
