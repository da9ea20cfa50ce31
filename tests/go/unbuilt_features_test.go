// Features whose tests were written against Apache Kafka before Sluice had them: the KIP-848
// consumer group protocol (franz-go's ServerSideBalancer), built now and run as an ordinary
// test. (Transactions, once here, are built now and tested in transactions_test.go.)
//
// Goal: the day the broker gains a feature, its test is ready: each test asserts what Kafka
// does (4.x; for KIP-848 4.3+, the first release franz-go recommends ServerSideBalancer
// with); a feature not built yet is skipped with the reason (`notBuiltYet`;
// SLUICE_GO_RUN_SKIPPED=1 runs it anyway).
//
// Method: KIP-848: the broker advertises ConsumerGroupHeartbeat v1+ and ConsumerGroupDescribe,
// two members with ServerSideBalancer split a topic with the server-side "uniform" assignor,
// and the group is listed and described as a "consumer" group.

package sluicetest

import (
	"maps"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestKIP848ConsumerGroupProtocol(t *testing.T) {
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
