// Admin calls through kadm, franz-go's admin client.
//
// Goal: every admin call an operator makes with kadm gives Kafka's answer: topics (create,
// list, describe, grow, delete), configs (describe, incremental alter, delete back to the
// default), records (delete before an offset), offsets (start, end, by time), the cluster
// (brokers, DescribeCluster, log dirs, ApiVersions) and groups (list, describe, commit, fetch,
// delete offsets, delete), including the error codes Kafka gives for the usual mistakes.
//
// Method: one broker for the whole test, a unique topic or group per subtest; each subtest
// calls kadm (or sends the request through the kgo client where kadm has no wrapper) and
// compares the answer with the values it set up and with what Kafka documents.

package sluicetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Kafka's defaults for topic configs that the tests read back.
const (
	kafkaDefaultRetentionMs   = "604800000"
	kafkaDefaultCleanupPolicy = "delete"
)

func configValue(t *testing.T, adm *kadm.Client, topic, name string) kadm.Config {
	t.Helper()
	rcs, err := adm.DescribeTopicConfigs(testContext(t, opTimeout), topic)
	if err != nil {
		t.Fatalf("describing the configs of %s: %v", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("describing the configs of %s: %v / %v (%s)", topic, err, rc.Err, rc.ErrMessage)
	}
	for _, c := range rc.Configs {
		if c.Key == name {
			return c
		}
	}
	t.Fatalf("topic %s has no config %q among %d described", topic, name, len(rc.Configs))
	return kadm.Config{}
}

func alterTopicConfig(adm *kadm.Client, ctx context.Context, topic string, op kadm.IncrementalOp, name string, value *string) error {
	resps, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: op, Name: name, Value: value}}, topic)
	if err != nil {
		return err
	}
	r, err := resps.On(topic, nil)
	if err != nil {
		return err
	}
	if r.Err != nil {
		return fmt.Errorf("%w (%s)", r.Err, r.ErrMessage)
	}
	return nil
}

// answered reports whether a kadm call for one resource answered the Kafka error want: the
// per-resource error is want, and the call's own error, which kadm sets to the same error for
// single-resource calls, is nil or want.
func answered(callErr, resourceErr error, want *kerr.Error) bool {
	return errors.Is(resourceErr, want) && (callErr == nil || errors.Is(callErr, want))
}

func TestAdmin(t *testing.T) {
	b := StartBroker(t)
	// kadm answers topic listings from franz-go's metadata cache; a short cache age lets the
	// test see a deletion without waiting out the default 5 s.
	adm := kadm.NewClient(NewClient(t, b, kgo.MetadataMinAge(250*time.Millisecond)))
	cl := NewClient(t, b)

	t.Run("CreateListDescribeDeleteTopics", func(t *testing.T) {
		ctx := testContext(t, opTimeout)
		topicA, topicB := UniqueName(t, "a"), UniqueName(t, "b")
		created, err := adm.CreateTopics(ctx, 3, 1, map[string]*string{"retention.ms": kmsg.StringPtr("3600000")}, topicA, topicB)
		if err != nil {
			t.Fatalf("CreateTopics: %v", err)
		}
		for _, name := range []string{topicA, topicB} {
			r, ok := created[name]
			if !ok || r.Err != nil {
				t.Fatalf("creating %s: present %t, err %v (%s)", name, ok, r.Err, r.ErrMessage)
			}
			if r.NumPartitions != 3 || r.ReplicationFactor != 1 {
				t.Fatalf("%s created with %d partitions and replication %d, want 3 and 1", name, r.NumPartitions, r.ReplicationFactor)
			}
			if r.ID == (kadm.TopicID{}) {
				t.Fatalf("%s created without a topic id", name)
			}
			// CreateTopics v5+ answers the new topic's configs (KIP-525).
			if c, ok := r.Configs["retention.ms"]; !ok || c.MaybeValue() != "3600000" {
				t.Fatalf("%s created: retention.ms answered %t as %q, want 3600000 as requested", name, ok, c.MaybeValue())
			}
		}

		again, err := adm.CreateTopic(ctx, 1, 1, nil, topicA)
		if !answered(err, again.Err, kerr.TopicAlreadyExists) {
			t.Fatalf("creating %s twice: %v / %v, want TOPIC_ALREADY_EXISTS", topicA, err, again.Err)
		}
		zero, err := adm.CreateTopic(ctx, 0, 1, nil, UniqueName(t, "zero"))
		if !answered(err, zero.Err, kerr.InvalidPartitions) {
			t.Fatalf("creating a topic with 0 partitions: %v / %v, want INVALID_PARTITIONS", err, zero.Err)
		}

		// The usual mistakes, each refused with Kafka's error code and nothing created.
		refused := []struct {
			what       string
			name       string
			partitions int32
			replicas   int16
			configs    map[string]*string
			want       *kerr.Error
		}{
			{"replication factor 3 on one broker", UniqueName(t, "rf3"), 1, 3, nil, kerr.InvalidReplicationFactor},
			{"an invalid topic name", "bad topic name!", 1, 1, nil, kerr.InvalidTopicException},
			{"an invalid config value", UniqueName(t, "badcfg"), 1, 1, map[string]*string{"retention.ms": kmsg.StringPtr("soon")}, kerr.InvalidConfig},
		}
		for _, r := range refused {
			resp, err := adm.CreateTopic(ctx, r.partitions, r.replicas, r.configs, r.name)
			if !answered(err, resp.Err, r.want) {
				t.Fatalf("creating a topic with %s: %v / %v, want %s", r.what, err, resp.Err, r.want.Message)
			}
		}
		// ValidateOnly checks the request and creates nothing.
		dry := UniqueName(t, "dry")
		validated, err := adm.ValidateCreateTopics(ctx, 2, 1, nil, dry)
		if err != nil || validated[dry].Err != nil {
			t.Fatalf("validating the creation of %s: %v / %v", dry, err, validated[dry].Err)
		}

		listed, err := adm.ListTopics(ctx)
		if err != nil {
			t.Fatalf("ListTopics: %v", err)
		}
		for _, r := range refused {
			if _, ok := listed[r.name]; ok {
				t.Fatalf("the refused topic %q (%s) was created", r.name, r.what)
			}
		}
		if _, ok := listed[dry]; ok {
			t.Fatalf("ValidateOnly created topic %s", dry)
		}
		for _, name := range []string{topicA, topicB} {
			td, ok := listed[name]
			if !ok {
				t.Fatalf("ListTopics does not list %s (listed %v)", name, listed.Names())
			}
			if td.Err != nil || td.IsInternal || len(td.Partitions) != 3 || td.ID != created[name].ID {
				t.Fatalf("%s listed as err %v, internal %t, %d partitions, id %v; want no error, not internal, 3 partitions, id %v",
					name, td.Err, td.IsInternal, len(td.Partitions), td.ID, created[name].ID)
			}
			for p, pd := range td.Partitions {
				if pd.Err != nil || pd.Leader != 1 || !slices.Equal(pd.Replicas, []int32{1}) || !slices.Equal(pd.ISR, []int32{1}) || pd.LeaderEpoch < 0 {
					t.Fatalf("%s[%d]: err %v leader %d epoch %d replicas %v isr %v; want leader 1, replicas and isr [1]",
						name, p, pd.Err, pd.Leader, pd.LeaderEpoch, pd.Replicas, pd.ISR)
				}
			}
		}
		for name := range listed {
			if name == "__consumer_offsets" {
				t.Fatalf("ListTopics (which filters internal topics) lists __consumer_offsets: it must be marked internal")
			}
		}

		deleted, err := adm.DeleteTopics(ctx, topicB)
		if err != nil || deleted[topicB].Err != nil {
			t.Fatalf("deleting %s: %v / %v", topicB, err, deleted[topicB].Err)
		}
		missing, err := adm.DeleteTopic(ctx, UniqueName(t, "never-created"))
		if !answered(err, missing.Err, kerr.UnknownTopicOrPartition) {
			t.Fatalf("deleting an unknown topic: %v / %v, want UNKNOWN_TOPIC_OR_PARTITION", err, missing.Err)
		}
		WaitFor(t, 10*time.Second, "the deleted topic to leave the metadata", func() bool {
			after, err := adm.ListTopics(ctx, topicB)
			return err == nil && errors.Is(after[topicB].Err, kerr.UnknownTopicOrPartition)
		})
		after, err := adm.ListTopics(ctx)
		if err != nil {
			t.Fatalf("ListTopics: %v", err)
		}
		if _, ok := after[topicB]; ok {
			t.Fatalf("deleted topic %s is still listed", topicB)
		}
		if _, ok := after[topicA]; !ok {
			t.Fatalf("topic %s disappeared when %s was deleted", topicA, topicB)
		}
	})

	t.Run("CreatePartitions", func(t *testing.T) {
		ctx := testContext(t, opTimeout)
		topic := UniqueName(t, "grow")
		CreateTopic(t, adm, topic, 2, nil)
		resp, err := adm.CreatePartitions(ctx, 3, topic)
		if err != nil || resp[topic].Err != nil {
			t.Fatalf("adding 3 partitions: %v / %v (%s)", err, resp[topic].Err, resp[topic].ErrMessage)
		}
		WaitFor(t, 10*time.Second, "the topic to show 5 partitions", func() bool {
			td, err := adm.ListTopics(ctx, topic)
			return err == nil && len(td[topic].Partitions) == 5
		})
		shrink, err := adm.UpdatePartitions(ctx, 4, topic)
		if err != nil || !errors.Is(shrink[topic].Err, kerr.InvalidPartitions) {
			t.Fatalf("shrinking to 4 partitions: %v / %v, want INVALID_PARTITIONS", err, shrink[topic].Err)
		}
		// The new partitions take writes and reads like the old ones.
		var records []*kgo.Record
		for p := range int32(5) {
			records = append(records, &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "to-%d", p)})
		}
		ProduceAll(t, NewClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner())), records)
		got := ConsumeToEnd(t, b, topic)
		for p := range int32(5) {
			if len(got[p]) != 1 || string(got[p][0].Value) != fmt.Sprintf("to-%d", p) {
				t.Fatalf("partition %d read back %d records, want the one written to it", p, len(got[p]))
			}
		}
	})

	t.Run("DescribeAndIncrementalAlterConfigs", func(t *testing.T) {
		ctx := testContext(t, opTimeout)
		topic := UniqueName(t, "configs")
		CreateTopic(t, adm, topic, 1, map[string]*string{"cleanup.policy": kmsg.StringPtr("compact")})

		if c := configValue(t, adm, topic, "retention.ms"); c.MaybeValue() != kafkaDefaultRetentionMs || c.Source != kmsg.ConfigSourceDefaultConfig {
			t.Fatalf("retention.ms is %q from %v, want Kafka's default %s from DEFAULT_CONFIG", c.MaybeValue(), c.Source, kafkaDefaultRetentionMs)
		}
		if c := configValue(t, adm, topic, "cleanup.policy"); c.MaybeValue() != "compact" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
			t.Fatalf("cleanup.policy is %q from %v, want compact from DYNAMIC_TOPIC_CONFIG", c.MaybeValue(), c.Source)
		}

		if err := alterTopicConfig(adm, ctx, topic, kadm.SetConfig, "retention.ms", kmsg.StringPtr("3600000")); err != nil {
			t.Fatalf("setting retention.ms: %v", err)
		}
		if c := configValue(t, adm, topic, "retention.ms"); c.MaybeValue() != "3600000" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
			t.Fatalf("after SET retention.ms is %q from %v, want 3600000 from DYNAMIC_TOPIC_CONFIG", c.MaybeValue(), c.Source)
		}
		// An incremental alter leaves the other configs alone.
		if c := configValue(t, adm, topic, "cleanup.policy"); c.MaybeValue() != "compact" {
			t.Fatalf("setting retention.ms changed cleanup.policy to %q", c.MaybeValue())
		}
		if err := alterTopicConfig(adm, ctx, topic, kadm.DeleteConfig, "cleanup.policy", nil); err != nil {
			t.Fatalf("deleting cleanup.policy: %v", err)
		}
		if c := configValue(t, adm, topic, "cleanup.policy"); c.MaybeValue() != kafkaDefaultCleanupPolicy || c.Source != kmsg.ConfigSourceDefaultConfig {
			t.Fatalf("after DELETE cleanup.policy is %q from %v, want the default %q from DEFAULT_CONFIG", c.MaybeValue(), c.Source, kafkaDefaultCleanupPolicy)
		}
		if c := configValue(t, adm, topic, "retention.ms"); c.MaybeValue() != "3600000" {
			t.Fatalf("deleting cleanup.policy changed retention.ms to %q", c.MaybeValue())
		}

		if err := alterTopicConfig(adm, ctx, topic, kadm.SetConfig, "retention.ms", kmsg.StringPtr("not-a-number")); !errors.Is(err, kerr.InvalidConfig) {
			t.Fatalf("setting retention.ms=not-a-number: %v, want INVALID_CONFIG", err)
		}
		if err := alterTopicConfig(adm, ctx, UniqueName(t, "missing"), kadm.SetConfig, "retention.ms", kmsg.StringPtr("1000")); !errors.Is(err, kerr.UnknownTopicOrPartition) {
			t.Fatalf("altering an unknown topic: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
		}
		rcs, err := adm.DescribeTopicConfigs(ctx, UniqueName(t, "missing"))
		if err != nil || len(rcs) != 1 || !errors.Is(rcs[0].Err, kerr.UnknownTopicOrPartition) {
			t.Fatalf("describing an unknown topic's configs: %v / %v, want UNKNOWN_TOPIC_OR_PARTITION", err, rcs)
		}

		brokerConfigs, err := adm.DescribeBrokerConfigs(ctx, 1)
		if err != nil || len(brokerConfigs) != 1 || brokerConfigs[0].Err != nil || len(brokerConfigs[0].Configs) == 0 {
			t.Fatalf("describing broker 1's configs: %v / %+v, want a non-empty list", err, brokerConfigs)
		}
	})

	t.Run("DeleteRecordsAndListOffsets", func(t *testing.T) {
		ctx := testContext(t, opTimeout)
		topic := UniqueName(t, "offsets")
		CreateTopic(t, adm, topic, 1, nil)
		base := time.UnixMilli(time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli())
		var records []*kgo.Record
		for i := range 10 {
			// Timestamps one second apart: record i is at base + i s.
			records = append(records, &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "r%d", i), Timestamp: base.Add(time.Duration(i) * time.Second)})
		}
		ProduceAll(t, cl, records)

		if got := StartOffsets(t, adm, topic); got[0] != 0 {
			t.Fatalf("start offset %d, want 0", got[0])
		}
		if got := EndOffsets(t, adm, topic); got[0] != 10 {
			t.Fatalf("end offset %d, want 10", got[0])
		}

		byTime, err := adm.ListOffsetsAfterMilli(ctx, base.Add(5500*time.Millisecond).UnixMilli(), topic)
		if err != nil || byTime.Error() != nil {
			t.Fatalf("listing offsets by time: %v / %v", err, byTime.Error())
		}
		if o := byTime[topic][0]; o.Offset != 6 || o.Timestamp != base.Add(6*time.Second).UnixMilli() {
			t.Fatalf("first offset at or after base+5.5s is %d at %d ms, want 6 at %d ms", o.Offset, o.Timestamp, base.Add(6*time.Second).UnixMilli())
		}
		exact, err := adm.ListOffsetsAfterMilli(ctx, base.Add(3*time.Second).UnixMilli(), topic)
		if err != nil || exact[topic][0].Offset != 3 {
			t.Fatalf("offset at exactly base+3s: %v / %+v, want 3", err, exact[topic][0])
		}
		future, err := adm.ListOffsetsAfterMilli(ctx, time.Now().Add(time.Hour).UnixMilli(), topic)
		if err != nil || future[topic][0].Offset != 10 {
			t.Fatalf("offset after the last timestamp: %v / %+v, want the end offset 10", err, future[topic][0])
		}
		maxTs, err := adm.ListMaxTimestampOffsets(ctx, topic)
		if err != nil || maxTs[topic][0].Offset != 9 || maxTs[topic][0].Timestamp != base.Add(9*time.Second).UnixMilli() {
			t.Fatalf("max timestamp offset: %v / %+v, want offset 9 at %d ms", err, maxTs[topic][0], base.Add(9*time.Second).UnixMilli())
		}

		var before kadm.Offsets
		before.Add(kadm.Offset{Topic: topic, Partition: 0, At: 4, LeaderEpoch: -1})
		deleted, err := adm.DeleteRecords(ctx, before)
		if err != nil || deleted.Error() != nil {
			t.Fatalf("deleting records before offset 4: %v / %v", err, deleted.Error())
		}
		if r, _ := deleted.Lookup(topic, 0); r.LowWatermark != 4 {
			t.Fatalf("delete records answered low watermark %d, want 4", r.LowWatermark)
		}
		if got := StartOffsets(t, adm, topic); got[0] != 4 {
			t.Fatalf("start offset after deleting records %d, want 4", got[0])
		}
		if got := EndOffsets(t, adm, topic); got[0] != 10 {
			t.Fatalf("end offset after deleting records %d, want 10", got[0])
		}
		rest := ConsumeToEnd(t, b, topic)[0]
		if len(rest) != 6 || rest[0].Offset != 4 || string(rest[0].Value) != "r4" {
			t.Fatalf("after deleting records read %d records starting at offset %d, want 6 from offset 4", len(rest), rest[0].Offset)
		}
		// Offset -1 means the high watermark: everything is deleted.
		var all kadm.Offsets
		all.Add(kadm.Offset{Topic: topic, Partition: 0, At: -1, LeaderEpoch: -1})
		toEnd, err := adm.DeleteRecords(ctx, all)
		if r, _ := toEnd.Lookup(topic, 0); err != nil || r.Err != nil || r.LowWatermark != 10 {
			t.Fatalf("deleting records up to the high watermark (-1): %v / %+v, want low watermark 10", err, r)
		}
		if got := StartOffsets(t, adm, topic); got[0] != 10 {
			t.Fatalf("start offset after deleting every record %d, want 10", got[0])
		}
		var beyond kadm.Offsets
		beyond.Add(kadm.Offset{Topic: topic, Partition: 0, At: 11, LeaderEpoch: -1})
		tooFar, err := adm.DeleteRecords(ctx, beyond)
		if r, _ := tooFar.Lookup(topic, 0); err != nil || !errors.Is(r.Err, kerr.OffsetOutOfRange) {
			t.Fatalf("deleting records beyond the end offset: %v / %v, want OFFSET_OUT_OF_RANGE", err, r.Err)
		}
	})

	t.Run("ClusterBrokersAndLogDirs", func(t *testing.T) {
		ctx := testContext(t, opTimeout)
		meta, err := adm.BrokerMetadata(ctx)
		if err != nil {
			t.Fatalf("BrokerMetadata: %v", err)
		}
		if meta.Cluster == "" || meta.Controller != 1 || len(meta.Brokers) != 1 {
			t.Fatalf("metadata: cluster %q, controller %d, %d brokers; want a cluster id, controller 1, one broker", meta.Cluster, meta.Controller, len(meta.Brokers))
		}
		brokers, err := adm.ListBrokers(ctx)
		if err != nil || len(brokers) != 1 {
			t.Fatalf("ListBrokers: %v / %v, want one broker", err, brokers)
		}
		if br := brokers[0]; br.NodeID != 1 || br.Host != loopbackHost || br.Port != int32(b.Port()) {
			t.Fatalf("broker %d at %s:%d, want node 1 at %s", br.NodeID, br.Host, br.Port, b.Addr())
		}

		req := kmsg.NewPtrDescribeClusterRequest()
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("DescribeCluster: %v", err)
		}
		if resp.ErrorCode != 0 || resp.ClusterID != meta.Cluster || resp.ControllerID != 1 || len(resp.Brokers) != 1 {
			t.Fatalf("DescribeCluster: error %d, cluster %q (metadata says %q), controller %d, %d brokers",
				resp.ErrorCode, resp.ClusterID, meta.Cluster, resp.ControllerID, len(resp.Brokers))
		}
		if br := resp.Brokers[0]; br.NodeID != 1 || br.Host != loopbackHost || br.Port != int32(b.Port()) {
			t.Fatalf("DescribeCluster broker %d at %s:%d, want node 1 at %s", br.NodeID, br.Host, br.Port, b.Addr())
		}

		topic := UniqueName(t, "logdirs")
		CreateTopic(t, adm, topic, 2, nil)
		ProduceAll(t, cl, testRecords(topic, 100, time.Now()))
		dirs, err := adm.DescribeAllLogDirs(ctx, nil)
		if err != nil {
			t.Fatalf("DescribeAllLogDirs: %v", err)
		}
		brokerDirs, ok := dirs[1]
		if !ok || len(brokerDirs) == 0 {
			t.Fatalf("DescribeAllLogDirs has no directory for broker 1: %v", dirs)
		}
		var total int64
		found := 0
		for _, dir := range brokerDirs {
			if dir.Err != nil || dir.Dir == "" {
				t.Fatalf("log dir %q: %v", dir.Dir, dir.Err)
			}
			for p, part := range dir.Topics[topic] {
				found++
				total += part.Size
				if part.Size < 0 || part.Partition != p {
					t.Fatalf("log dir %s lists %s[%d] with size %d", dir.Dir, topic, p, part.Size)
				}
			}
		}
		if found != 2 || total <= 0 {
			t.Fatalf("log dirs hold %d partitions of %s with %d bytes, want 2 partitions with data", found, topic, total)
		}
	})

	t.Run("ApiVersions", func(t *testing.T) {
		ctx := testContext(t, opTimeout)
		versions, err := adm.ApiVersions(ctx)
		if err != nil || len(versions) != 1 {
			t.Fatalf("ApiVersions: %v / %d brokers answered, want 1", err, len(versions))
		}
		v := versions[1]
		if v.Err != nil {
			t.Fatalf("ApiVersions from broker 1: %v", v.Err)
		}
		v.EachKeySorted(func(key, lo, hi int16) {
			if lo < 0 || lo > hi {
				t.Errorf("api key %d advertises versions %d..%d", key, lo, hi)
			}
		})
		// What a franz-go application relies on, with the oldest version Kafka 3.x clients need.
		required := map[kmsg.Key]int16{
			kmsg.Produce: 7, kmsg.Fetch: 11, kmsg.ListOffsets: 5, kmsg.Metadata: 9,
			kmsg.OffsetCommit: 8, kmsg.OffsetFetch: 8, kmsg.FindCoordinator: 3,
			kmsg.JoinGroup: 7, kmsg.Heartbeat: 4, kmsg.LeaveGroup: 4, kmsg.SyncGroup: 5,
			kmsg.DescribeGroups: 5, kmsg.ListGroups: 4, kmsg.ApiVersions: 3,
			kmsg.CreateTopics: 5, kmsg.DeleteTopics: 4, kmsg.DeleteRecords: 2,
			kmsg.InitProducerID: 4, kmsg.DescribeConfigs: 4, kmsg.CreatePartitions: 3,
			kmsg.DeleteGroups: 2, kmsg.IncrementalAlterConfigs: 1, kmsg.OffsetDelete: 0,
			kmsg.DescribeLogDirs: 2, kmsg.DescribeCluster: 0, kmsg.OffsetForLeaderEpoch: 3,
		}
		for key, atLeast := range required {
			_, hi, ok := v.KeyVersions(int16(key))
			if !ok || hi < atLeast {
				t.Errorf("%s: advertised %t up to v%d, want at least v%d", key.Name(), ok, hi, atLeast)
			}
		}
		// The raw v3 answer lists the same keys kadm saw.
		conn, err := DialRaw(b.Addr(), 10*time.Second)
		if err != nil {
			t.Fatalf("dialing: %v", err)
		}
		defer conn.Close()
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = 3
		req.ClientSoftwareName = "sluice-go-tests"
		req.ClientSoftwareVersion = "1.0.0"
		raw, err := conn.RoundTrip(req)
		if err != nil {
			t.Fatalf("ApiVersions v3: %v", err)
		}
		rawKeys := make(map[int16][2]int16)
		for _, k := range raw.(*kmsg.ApiVersionsResponse).ApiKeys {
			rawKeys[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
		}
		kadmKeys := make(map[int16][2]int16)
		v.EachKeySorted(func(key, lo, hi int16) { kadmKeys[key] = [2]int16{lo, hi} })
		if !maps.Equal(rawKeys, kadmKeys) {
			t.Fatalf("ApiVersions v3 over a raw connection %v differs from kadm's %v", rawKeys, kadmKeys)
		}
		t.Logf("franz-go guesses the broker is %s", v.VersionGuess())
	})

	t.Run("GroupsAndOffsets", func(t *testing.T) {
		ctx := testContext(t, opTimeout)
		topic := UniqueName(t, "group-admin")
		group := UniqueName(t, "g")
		CreateTopic(t, adm, topic, 2, nil)
		ProduceAll(t, cl, testRecords(topic, 40, time.Now()))

		// Commit offsets for a group with no members (an admin commit), then read them back.
		var commit kadm.Offsets
		commit.Add(kadm.Offset{Topic: topic, Partition: 0, At: 5, LeaderEpoch: -1, Metadata: "checkpoint-0"})
		commit.Add(kadm.Offset{Topic: topic, Partition: 1, At: 7, LeaderEpoch: -1, Metadata: "checkpoint-1"})
		if err := adm.CommitAllOffsets(ctx, group, commit); err != nil {
			t.Fatalf("committing offsets: %v", err)
		}
		fetched, err := adm.FetchOffsets(ctx, group)
		if err != nil || fetched.Error() != nil {
			t.Fatalf("fetching offsets: %v / %v", err, fetched.Error())
		}
		for p, want := range map[int32]kadm.Offset{0: commit[topic][0], 1: commit[topic][1]} {
			got, ok := fetched.Lookup(topic, p)
			if !ok || got.At != want.At || got.Metadata != want.Metadata {
				t.Fatalf("fetched offset of partition %d: %+v (present %t), want %d with metadata %q", p, got, ok, want.At, want.Metadata)
			}
		}

		listed, err := adm.ListGroups(ctx)
		if err != nil {
			t.Fatalf("ListGroups: %v", err)
		}
		if g, ok := listed[group]; !ok || g.State != "Empty" || g.Coordinator != 1 {
			t.Fatalf("ListGroups: %s listed %t as %+v, want state Empty on coordinator 1", group, ok, g)
		}
		// ListGroups v5 (KIP-848) types every group; a group of Kafka's classic protocol is "classic".
		classic, err := adm.ListGroupsByType(ctx, []string{"classic"})
		if err != nil {
			t.Fatalf("ListGroups of type classic: %v", err)
		}
		if g, ok := classic[group]; !ok || g.GroupType != "classic" {
			t.Fatalf("ListGroups of type classic: %s listed %t as %+v, want group type classic", group, ok, g)
		}
		described, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			t.Fatalf("DescribeGroups: %v", err)
		}
		if g := described[group]; g.Err != nil || g.State != "Empty" || len(g.Members) != 0 {
			t.Fatalf("DescribeGroups: %s is %v / state %q with %d members, want Empty with none", group, g.Err, g.State, len(g.Members))
		}

		// A live member: the group is Stable with one member owning both partitions, and it
		// cannot be deleted while the member is in it.
		member := NewClient(t, b, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.HeartbeatInterval(250*time.Millisecond))
		pollCtx, cancelPoll := context.WithTimeout(ctx, 20*time.Second)
		defer cancelPoll()
		WaitFor(t, 20*time.Second, "the member to consume", func() bool {
			return member.PollFetches(pollCtx).NumRecords() > 0 || pollCtx.Err() != nil
		})
		stable, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			t.Fatalf("DescribeGroups: %v", err)
		}
		g := stable[group]
		if g.Err != nil || g.State != "Stable" || g.ProtocolType != "consumer" || g.Protocol != "cooperative-sticky" || len(g.Members) != 1 {
			t.Fatalf("live group: err %v state %q protocol type %q protocol %q with %d members; want Stable consumer/cooperative-sticky with 1",
				g.Err, g.State, g.ProtocolType, g.Protocol, len(g.Members))
		}
		if assigned := g.AssignedPartitions(); len(assigned[topic]) != 2 {
			t.Fatalf("live group assigns %v, want both partitions of %s", assigned, topic)
		}
		busy, err := adm.DeleteGroup(ctx, group)
		if !answered(err, busy.Err, kerr.NonEmptyGroup) {
			t.Fatalf("deleting a group with a member: %v / %v, want NON_EMPTY_GROUP", err, busy.Err)
		}
		member.Close()

		// Delete one partition's offset, then the group.
		delResp, err := adm.DeleteOffsets(ctx, group, kadm.TopicsSet{topic: {0: {}}})
		if err != nil {
			t.Fatalf("deleting offsets: %v", err)
		}
		if perr, ok := delResp.Lookup(topic, 0); !ok || perr != nil {
			t.Fatalf("deleting the offset of partition 0: present %t, %v", ok, perr)
		}
		fetched, err = adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatalf("fetching offsets: %v", err)
		}
		if o, ok := fetched.Lookup(topic, 0); ok && o.At >= 0 {
			t.Fatalf("partition 0 still has committed offset %d after OffsetDelete", o.At)
		}
		if _, ok := fetched.Lookup(topic, 1); !ok {
			t.Fatalf("partition 1 lost its committed offset when partition 0's was deleted")
		}

		deletedGroup, err := adm.DeleteGroup(ctx, group)
		if err != nil || deletedGroup.Err != nil {
			t.Fatalf("deleting the empty group: %v / %v", err, deletedGroup.Err)
		}
		listed, err = adm.ListGroups(ctx)
		if err != nil {
			t.Fatalf("ListGroups: %v", err)
		}
		if _, ok := listed[group]; ok {
			t.Fatalf("deleted group %s is still listed", group)
		}
		fetched, err = adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatalf("fetching the offsets of a deleted group: %v", err)
		}
		fetched.Each(func(o kadm.OffsetResponse) {
			if o.Topic == topic && o.At >= 0 {
				t.Fatalf("deleted group still has offset %d for %s[%d]", o.At, o.Topic, o.Partition)
			}
		})
		gone, err := adm.DeleteGroup(ctx, group)
		if !answered(err, gone.Err, kerr.GroupIDNotFound) {
			t.Fatalf("deleting a group that does not exist: %v / %v, want GROUP_ID_NOT_FOUND", err, gone.Err)
		}
	})
}
