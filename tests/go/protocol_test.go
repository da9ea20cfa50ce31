// Request-level sanity with franz-go's kmsg: Metadata, ListOffsets, Fetch and ApiVersions,
// sent at pinned versions over a raw connection and checked field by field against what the
// Kafka protocol specifies and Apache Kafka answers.
//
// Goal: franz-go is strict about protocol details, so the fields it reads must be what Kafka
// sends: broker and partition metadata, topic ids, leader epochs, log start / high watermark /
// last stable offsets, the batch that contains a fetched offset, long polling at the log end,
// and the error codes for the edge cases (OFFSET_OUT_OF_RANGE, UNKNOWN_TOPIC_OR_PARTITION,
// UNKNOWN_TOPIC_ID, INVALID_TOPIC_EXCEPTION, UNSUPPORTED_VERSION).
//
// Method: one broker; a two-partition topic whose partition 0 holds ten uncompressed records
// in two batches (offsets 0-4 and 5-9) with known timestamps, and whose partition 1 holds five
// records of which the first two are deleted. Each request is encoded by kmsg at an explicit
// version (the newest both sides support, and older ones where the semantics change), written
// on a RawConn and decoded at the same version.

package sluicetest

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// protocolFixture is the topic the protocol tests read, with what it holds.
type protocolFixture struct {
	broker  *Broker
	conn    *RawConn
	topic   string
	topicID [16]byte
	epoch   int32            // partition 0's leader epoch, from Metadata
	base    time.Time        // record i of partition 0 has timestamp base + i s
	apiMax  map[int16]int16  // the broker's newest version of each API
	apiMin  map[int16]int16  // the broker's oldest version of each API
	values  map[int64]string // partition 0 offset -> value
	// maxBytes, when positive, replaces the Fetch size limits (request and partition).
	maxBytes int32
}

func (f *protocolFixture) fetchMaxBytes(fallback int32) int32 {
	if f.maxBytes > 0 {
		return f.maxBytes
	}
	return fallback
}

func setupProtocolFixture(t *testing.T) *protocolFixture {
	t.Helper()
	b := StartBroker(t)
	adm := NewAdmin(t, b)
	f := &protocolFixture{
		broker: b,
		topic:  UniqueName(t, "proto"),
		base:   time.UnixMilli(time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()),
		values: make(map[int64]string),
	}
	CreateTopic(t, adm, f.topic, 2, nil)
	producer := NewClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	for batch := range 2 {
		var records []*kgo.Record
		for i := batch * 5; i < batch*5+5; i++ {
			records = append(records, &kgo.Record{Topic: f.topic, Partition: 0, Value: fmt.Appendf(nil, "v%d", i), Timestamp: f.base.Add(time.Duration(i) * time.Second)})
			f.values[int64(i)] = fmt.Sprintf("v%d", i)
		}
		ProduceAll(t, producer, records) // one synchronous produce per batch: two batches
	}
	var p1 []*kgo.Record
	for i := range 5 {
		p1 = append(p1, &kgo.Record{Topic: f.topic, Partition: 1, Value: fmt.Appendf(nil, "p1-%d", i), Timestamp: f.base})
	}
	ProduceAll(t, producer, p1)
	var del kadm.Offsets
	del.Add(kadm.Offset{Topic: f.topic, Partition: 1, At: 2, LeaderEpoch: -1})
	if resp, err := adm.DeleteRecords(testContext(t, opTimeout), del); err != nil || resp.Error() != nil {
		t.Fatalf("deleting records of partition 1: %v / %v", err, resp.Error())
	}

	conn, err := DialRaw(b.Addr(), 15*time.Second)
	if err != nil {
		t.Fatalf("dialing %s: %v", b.Addr(), err)
	}
	t.Cleanup(func() { conn.Close() })
	f.conn = conn

	av := kmsg.NewPtrApiVersionsRequest()
	av.Version = 3
	av.ClientSoftwareName, av.ClientSoftwareVersion = "sluice-go-tests", "1.0.0"
	resp := f.roundTrip(t, av).(*kmsg.ApiVersionsResponse)
	f.apiMax, f.apiMin = make(map[int16]int16), make(map[int16]int16)
	for _, k := range resp.ApiKeys {
		f.apiMax[k.ApiKey], f.apiMin[k.ApiKey] = k.MaxVersion, k.MinVersion
	}

	meta := kmsg.NewPtrMetadataRequest()
	meta.Version = f.newest(t, meta)
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(f.topic)
	meta.Topics = []kmsg.MetadataRequestTopic{mt}
	mresp := f.roundTrip(t, meta).(*kmsg.MetadataResponse)
	if len(mresp.Topics) != 1 || mresp.Topics[0].ErrorCode != 0 {
		t.Fatalf("metadata of %s: %+v", f.topic, mresp.Topics)
	}
	f.topicID = mresp.Topics[0].TopicID
	for _, p := range mresp.Topics[0].Partitions {
		if p.Partition == 0 {
			f.epoch = p.LeaderEpoch
		}
	}
	return f
}

func (f *protocolFixture) roundTrip(t *testing.T, req kmsg.Request) kmsg.Response {
	t.Helper()
	resp, err := f.conn.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s v%d: %v\n%s", kmsg.NameForKey(req.Key()), req.GetVersion(), err, f.broker.LogTail())
	}
	return resp
}

// newest is the newest version of req's API that both kmsg and the broker support.
func (f *protocolFixture) newest(t *testing.T, req kmsg.Request) int16 {
	t.Helper()
	brokerMax, ok := f.apiMax[req.Key()]
	if !ok {
		t.Fatalf("the broker does not advertise %s", kmsg.NameForKey(req.Key()))
	}
	return min(brokerMax, req.MaxVersion())
}

// requireVersion pins req to version v, and fails the test when the broker does not serve it.
func (f *protocolFixture) requireVersion(t *testing.T, req kmsg.Request, v int16) {
	t.Helper()
	if f.apiMin[req.Key()] > v || f.apiMax[req.Key()] < v {
		t.Fatalf("the broker serves %s v%d..v%d, the test needs v%d", kmsg.NameForKey(req.Key()), f.apiMin[req.Key()], f.apiMax[req.Key()], v)
	}
	req.SetVersion(v)
}

func TestProtocolMetadata(t *testing.T) {
	f := setupProtocolFixture(t)
	unknown := UniqueName(t, "unknown")

	req := kmsg.NewPtrMetadataRequest()
	req.Version = f.newest(t, req)
	req.AllowAutoTopicCreation = false
	for _, name := range []string{f.topic, unknown} {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, rt)
	}
	resp := f.roundTrip(t, req).(*kmsg.MetadataResponse)
	t.Logf("Metadata v%d", req.Version)

	if len(resp.Brokers) != 1 {
		t.Fatalf("%d brokers, want 1", len(resp.Brokers))
	}
	if br := resp.Brokers[0]; br.NodeID != 1 || br.Host != loopbackHost || br.Port != int32(f.broker.Port()) || br.Rack != nil {
		t.Fatalf("broker %d at %s:%d rack %v, want node 1 at %s with no rack", br.NodeID, br.Host, br.Port, br.Rack, f.broker.Addr())
	}
	if resp.ClusterID == nil || *resp.ClusterID == "" || resp.ControllerID != 1 {
		t.Fatalf("cluster id %v, controller %d; want a cluster id and controller 1", resp.ClusterID, resp.ControllerID)
	}
	byName := make(map[string]kmsg.MetadataResponseTopic)
	for _, rt := range resp.Topics {
		if rt.Topic == nil {
			t.Fatalf("a topic answered without its name: %+v", rt)
		}
		byName[*rt.Topic] = rt
	}
	if len(byName) != 2 {
		t.Fatalf("answered %d topics, want the 2 asked for", len(byName))
	}

	known := byName[f.topic]
	if known.ErrorCode != 0 || known.IsInternal || known.TopicID == ([16]byte{}) || len(known.Partitions) != 2 {
		t.Fatalf("%s: error %d internal %t id %x with %d partitions; want no error, not internal, an id, 2 partitions",
			f.topic, known.ErrorCode, known.IsInternal, known.TopicID, len(known.Partitions))
	}
	var partitions []int32
	for _, p := range known.Partitions {
		partitions = append(partitions, p.Partition)
		if p.ErrorCode != 0 || p.Leader != 1 || p.LeaderEpoch < 0 || !slices.Equal(p.Replicas, []int32{1}) ||
			!slices.Equal(p.ISR, []int32{1}) || len(p.OfflineReplicas) != 0 {
			t.Fatalf("%s[%d]: error %d leader %d epoch %d replicas %v isr %v offline %v; want leader 1, epoch >= 0, [1], [1], []",
				f.topic, p.Partition, p.ErrorCode, p.Leader, p.LeaderEpoch, p.Replicas, p.ISR, p.OfflineReplicas)
		}
	}
	slices.Sort(partitions)
	if !slices.Equal(partitions, []int32{0, 1}) {
		t.Fatalf("%s answered partitions %v, want [0 1]", f.topic, partitions)
	}

	missing := byName[unknown]
	if missing.ErrorCode != kerr.UnknownTopicOrPartition.Code || len(missing.Partitions) != 0 || missing.TopicID != ([16]byte{}) {
		t.Fatalf("unknown topic: error %d with %d partitions and id %x; want UNKNOWN_TOPIC_OR_PARTITION (3), none, a zero id",
			missing.ErrorCode, len(missing.Partitions), missing.TopicID)
	}

	// Topics null asks for every topic; the offsets topic, if listed, is marked internal.
	all := kmsg.NewPtrMetadataRequest()
	all.Version = req.Version
	all.Topics = nil
	allResp := f.roundTrip(t, all).(*kmsg.MetadataResponse)
	sawTopic := false
	for _, rt := range allResp.Topics {
		switch *rt.Topic {
		case f.topic:
			sawTopic = true
		case "__consumer_offsets":
			if !rt.IsInternal {
				t.Fatalf("__consumer_offsets is listed as not internal")
			}
		}
	}
	if !sawTopic {
		t.Fatalf("metadata for all topics does not list %s", f.topic)
	}

	// An empty topic list (v1+) asks for no topics at all.
	none := kmsg.NewPtrMetadataRequest()
	none.Version = req.Version
	none.Topics = []kmsg.MetadataRequestTopic{}
	if noneResp := f.roundTrip(t, none).(*kmsg.MetadataResponse); len(noneResp.Topics) != 0 || len(noneResp.Brokers) != 1 {
		t.Fatalf("metadata for no topics answered %d topics and %d brokers, want 0 and 1", len(noneResp.Topics), len(noneResp.Brokers))
	}

	// Auto-creation: Kafka answers LEADER_NOT_AVAILABLE while it creates the topic, or the topic
	// itself; either way the next request shows it with one partition (num.partitions).
	created := UniqueName(t, "autocreated")
	auto := kmsg.NewPtrMetadataRequest()
	auto.Version = req.Version
	auto.AllowAutoTopicCreation = true
	at := kmsg.NewMetadataRequestTopic()
	at.Topic = kmsg.StringPtr(created)
	auto.Topics = []kmsg.MetadataRequestTopic{at}
	first := f.roundTrip(t, auto).(*kmsg.MetadataResponse)
	if code := first.Topics[0].ErrorCode; code != 0 && code != kerr.LeaderNotAvailable.Code {
		t.Fatalf("auto-creating %s answered error %d, want 0 or LEADER_NOT_AVAILABLE (5)", created, code)
	}
	WaitFor(t, 10*time.Second, "the auto-created topic to have a leader", func() bool {
		again := f.roundTrip(t, auto).(*kmsg.MetadataResponse)
		rt := again.Topics[0]
		return rt.ErrorCode == 0 && len(rt.Partitions) == 1 && rt.Partitions[0].Leader == 1
	})

	// A name Kafka cannot accept is refused even with auto-creation on.
	bad := kmsg.NewPtrMetadataRequest()
	bad.Version = req.Version
	bad.AllowAutoTopicCreation = true
	bt := kmsg.NewMetadataRequestTopic()
	bt.Topic = kmsg.StringPtr("bad topic name!")
	bad.Topics = []kmsg.MetadataRequestTopic{bt}
	if code := f.roundTrip(t, bad).(*kmsg.MetadataResponse).Topics[0].ErrorCode; code != kerr.InvalidTopicException.Code {
		t.Fatalf("metadata for an invalid topic name answered error %d, want INVALID_TOPIC_EXCEPTION (17)", code)
	}
}

// listOffset sends one ListOffsets request for one partition at timestamp ts.
func (f *protocolFixture) listOffset(t *testing.T, version int16, topic string, partition int32, ts int64) kmsg.ListOffsetsResponseTopicPartition {
	t.Helper()
	return f.listOffsetInEpoch(t, version, topic, partition, ts, -1)
}

// listOffsetInEpoch is listOffset with the client's idea of the current leader epoch (v4+).
func (f *protocolFixture) listOffsetInEpoch(t *testing.T, version int16, topic string, partition int32, ts int64, currentEpoch int32) kmsg.ListOffsetsResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	f.requireVersion(t, req, version)
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition = partition
	rp.Timestamp = ts
	rp.CurrentLeaderEpoch = currentEpoch
	rt.Partitions = []kmsg.ListOffsetsRequestTopicPartition{rp}
	req.Topics = []kmsg.ListOffsetsRequestTopic{rt}
	resp := f.roundTrip(t, req).(*kmsg.ListOffsetsResponse)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Topic != topic || resp.Topics[0].Partitions[0].Partition != partition {
		t.Fatalf("ListOffsets v%d for %s[%d] answered %+v", version, topic, partition, resp.Topics)
	}
	return resp.Topics[0].Partitions[0]
}

func TestProtocolListOffsets(t *testing.T) {
	f := setupProtocolFixture(t)
	v := f.newest(t, kmsg.NewPtrListOffsetsRequest())
	t.Logf("ListOffsets v%d", v)
	const (
		latest       = -1
		earliest     = -2
		maxTimestamp = -3 // v7+
	)
	ms := func(i int) int64 { return f.base.Add(time.Duration(i) * time.Second).UnixMilli() }

	check := func(what string, got kmsg.ListOffsetsResponseTopicPartition, wantErr int16, wantOffset, wantTimestamp int64) {
		t.Helper()
		if got.ErrorCode != wantErr || got.Offset != wantOffset || got.Timestamp != wantTimestamp {
			t.Fatalf("%s: error %d offset %d timestamp %d; want error %d offset %d timestamp %d",
				what, got.ErrorCode, got.Offset, got.Timestamp, wantErr, wantOffset, wantTimestamp)
		}
	}
	check("earliest", f.listOffset(t, v, f.topic, 0, earliest), 0, 0, -1)
	check("latest", f.listOffset(t, v, f.topic, 0, latest), 0, 10, -1)
	check("at record 3's timestamp", f.listOffset(t, v, f.topic, 0, ms(3)), 0, 3, ms(3))
	check("between records 6 and 7", f.listOffset(t, v, f.topic, 0, ms(6)+500), 0, 7, ms(7))
	check("before the first record", f.listOffset(t, v, f.topic, 0, ms(0)-10_000), 0, 0, ms(0))
	check("after the last record", f.listOffset(t, v, f.topic, 0, ms(9)+1), 0, -1, -1)
	check("max timestamp", f.listOffset(t, v, f.topic, 0, maxTimestamp), 0, 9, ms(9))
	check("earliest after DeleteRecords", f.listOffset(t, v, f.topic, 1, earliest), 0, 2, -1)
	check("latest after DeleteRecords", f.listOffset(t, v, f.topic, 1, latest), 0, 5, -1)
	if epoch := f.listOffset(t, v, f.topic, 0, latest).LeaderEpoch; epoch != f.epoch {
		t.Fatalf("latest offset answered leader epoch %d, want the partition's epoch %d", epoch, f.epoch)
	}
	// The client's current leader epoch is checked: the broker's own passes, a newer one is
	// UNKNOWN_LEADER_EPOCH (the client knows of a leader this broker has not heard of).
	check("latest in the current epoch", f.listOffsetInEpoch(t, v, f.topic, 0, latest, f.epoch), 0, 10, -1)
	if code := f.listOffsetInEpoch(t, v, f.topic, 0, latest, f.epoch+1).ErrorCode; code != kerr.UnknownLeaderEpoch.Code {
		t.Fatalf("ListOffsets with current leader epoch %d (broker: %d): error %d, want UNKNOWN_LEADER_EPOCH (74)", f.epoch+1, f.epoch, code)
	}

	unknownTopic := f.listOffset(t, v, UniqueName(t, "missing"), 0, latest)
	if unknownTopic.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("ListOffsets for an unknown topic: error %d, want UNKNOWN_TOPIC_OR_PARTITION (3)", unknownTopic.ErrorCode)
	}
	unknownPartition := f.listOffset(t, v, f.topic, 99, latest)
	if unknownPartition.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("ListOffsets for partition 99 of a two-partition topic: error %d, want UNKNOWN_TOPIC_OR_PARTITION (3)", unknownPartition.ErrorCode)
	}

	// v1, the oldest version Kafka 4 serves, has the same answers without leader epochs.
	check("v1 latest", f.listOffset(t, 1, f.topic, 0, latest), 0, 10, -1)
	check("v1 at record 4's timestamp", f.listOffset(t, 1, f.topic, 0, ms(4)), 0, 4, ms(4))
}

// fetchedBatch is one record batch of a Fetch answer, with its records decoded.
type fetchedBatch struct {
	first, last int64 // first and last offset the batch covers
	records     []kmsg.Record
}

// decodeBatches splits a partition's RecordBatches into batches. Kafka may end the bytes with
// a partial batch when the fetch is size-limited; that tail is ignored, as clients do.
func decodeBatches(t *testing.T, raw []byte) []fetchedBatch {
	t.Helper()
	var out []fetchedBatch
	for len(raw) >= 12 {
		length := int(int32(binary.BigEndian.Uint32(raw[8:12])))
		if length <= 0 || len(raw) < 12+length {
			break
		}
		var batch kmsg.RecordBatch
		if err := batch.ReadFrom(raw[:12+length]); err != nil {
			t.Fatalf("decoding a record batch: %v", err)
		}
		if batch.Magic != 2 {
			t.Fatalf("record batch with magic %d, want 2", batch.Magic)
		}
		if codec := batch.Attributes & 0x7; codec != 0 {
			t.Fatalf("record batch compressed with codec %d; the fixture produced uncompressed batches", codec)
		}
		fb := fetchedBatch{first: batch.FirstOffset, last: batch.FirstOffset + int64(batch.LastOffsetDelta)}
		recs := batch.Records
		for range batch.NumRecords {
			size, n := binary.Varint(recs)
			if n <= 0 || int(size)+n > len(recs) {
				t.Fatalf("record batch at %d: truncated record", batch.FirstOffset)
			}
			var r kmsg.Record
			if err := r.ReadFrom(recs[:n+int(size)]); err != nil {
				t.Fatalf("record batch at %d: %v", batch.FirstOffset, err)
			}
			fb.records = append(fb.records, r)
			recs = recs[n+int(size):]
		}
		out = append(out, fb)
		raw = raw[12+length:]
	}
	return out
}

// fetchOne fetches one partition and returns its answer and how long the broker took.
func (f *protocolFixture) fetchOne(t *testing.T, version int16, topic string, topicID [16]byte, partition int32, offset int64, maxWait time.Duration, isolation int8) (kmsg.FetchResponseTopicPartition, time.Duration) {
	t.Helper()
	return f.fetchInEpoch(t, version, topic, topicID, partition, offset, maxWait, isolation, -1)
}

// fetchInEpoch is fetchOne with the client's idea of the current leader epoch.
func (f *protocolFixture) fetchInEpoch(t *testing.T, version int16, topic string, topicID [16]byte, partition int32, offset int64, maxWait time.Duration, isolation int8, currentEpoch int32) (kmsg.FetchResponseTopicPartition, time.Duration) {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	f.requireVersion(t, req, version)
	req.ReplicaID = -1
	req.MaxWaitMillis = int32(maxWait / time.Millisecond)
	req.MinBytes = 1
	req.MaxBytes = f.fetchMaxBytes(1 << 20)
	req.IsolationLevel = isolation
	req.SessionID = 0
	req.SessionEpoch = -1 // a full fetch without a session
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rt.TopicID = topicID
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = partition
	rp.FetchOffset = offset
	rp.CurrentLeaderEpoch = currentEpoch
	rp.PartitionMaxBytes = f.fetchMaxBytes(1 << 20)
	rt.Partitions = []kmsg.FetchRequestTopicPartition{rp}
	req.Topics = []kmsg.FetchRequestTopic{rt}
	start := time.Now()
	resp := f.roundTrip(t, req).(*kmsg.FetchResponse)
	took := time.Since(start)
	if resp.ErrorCode != 0 {
		t.Fatalf("Fetch v%d: top-level error %d", version, resp.ErrorCode)
	}
	if version >= 7 && resp.SessionID != 0 {
		t.Fatalf("Fetch v%d without a session (epoch -1) answered session id %d, want 0", version, resp.SessionID)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].Partition != partition {
		t.Fatalf("Fetch v%d for one partition answered %d topics: %+v", version, len(resp.Topics), resp.Topics)
	}
	if version >= 13 {
		if resp.Topics[0].TopicID != topicID {
			t.Fatalf("Fetch v%d answered topic id %x, want the id asked for %x", version, resp.Topics[0].TopicID, topicID)
		}
	} else if resp.Topics[0].Topic != topic {
		t.Fatalf("Fetch v%d answered topic %q, want %q", version, resp.Topics[0].Topic, topic)
	}
	return resp.Topics[0].Partitions[0], took
}

func TestProtocolFetch(t *testing.T) {
	f := setupProtocolFixture(t)
	newest := f.newest(t, kmsg.NewPtrFetchRequest())
	const byName = 12 // the newest Fetch version that names topics; v13+ uses topic ids
	const readUncommitted, readCommitted = 0, 1
	noID := [16]byte{}
	t.Logf("Fetch v%d and v%d", newest, byName)

	for _, v := range []int16{byName, newest} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			// From offset 0: both batches, offsets dense, values as produced.
			p, _ := f.fetchOne(t, v, f.topic, f.topicID, 0, 0, 500*time.Millisecond, readUncommitted)
			if p.ErrorCode != 0 || p.HighWatermark != 10 || p.LastStableOffset != 10 || p.LogStartOffset != 0 {
				t.Fatalf("fetch at 0: error %d hwm %d lso %d log start %d; want 0, 10, 10, 0", p.ErrorCode, p.HighWatermark, p.LastStableOffset, p.LogStartOffset)
			}
			if p.PreferredReadReplica != -1 {
				t.Fatalf("fetch at 0: preferred read replica %d, want -1", p.PreferredReadReplica)
			}
			batches := decodeBatches(t, p.RecordBatches)
			next := int64(0)
			for _, batch := range batches {
				for _, r := range batch.records {
					offset := batch.first + int64(r.OffsetDelta)
					if offset != next || string(r.Value) != f.values[offset] {
						t.Fatalf("fetch at 0: offset %d value %q, want offset %d value %q", offset, r.Value, next, f.values[next])
					}
					next++
				}
			}
			if next != 10 || len(batches) != 2 {
				t.Fatalf("fetch at 0 returned %d records in %d batches, want 10 in the 2 produced", next, len(batches))
			}

			// From the middle of a batch: Kafka returns the whole batch that holds the offset.
			p, _ = f.fetchOne(t, v, f.topic, f.topicID, 0, 3, 500*time.Millisecond, readUncommitted)
			batches = decodeBatches(t, p.RecordBatches)
			if p.ErrorCode != 0 || len(batches) == 0 || batches[0].first > 3 || batches[0].last < 3 {
				t.Fatalf("fetch at 3: error %d, %d batches; want the batch holding offset 3 first", p.ErrorCode, len(batches))
			}

			// Size limits of one byte: Kafka still returns the first batch whole (KIP-74), so
			// that a consumer always makes progress.
			f.maxBytes = 1
			p, _ = f.fetchOne(t, v, f.topic, f.topicID, 0, 0, 500*time.Millisecond, readUncommitted)
			f.maxBytes = 0
			batches = decodeBatches(t, p.RecordBatches)
			if p.ErrorCode != 0 || len(batches) == 0 || batches[0].first != 0 || len(batches[0].records) != 5 {
				t.Fatalf("fetch with 1-byte limits: error %d, %d complete batches; want the first batch (offsets 0-4) whole", p.ErrorCode, len(batches))
			}

			// read_committed with no transactions: the same records, no aborted transactions.
			p, _ = f.fetchOne(t, v, f.topic, f.topicID, 0, 0, 500*time.Millisecond, readCommitted)
			if p.ErrorCode != 0 || p.LastStableOffset != 10 || len(p.AbortedTransactions) != 0 || len(decodeBatches(t, p.RecordBatches)) != 2 {
				t.Fatalf("read_committed fetch: error %d lso %d aborted %v; want 0, 10, none, both batches", p.ErrorCode, p.LastStableOffset, p.AbortedTransactions)
			}

			// At the log end: no records, no error, and the broker holds the request for MaxWait.
			const maxWait = 400 * time.Millisecond
			p, took := f.fetchOne(t, v, f.topic, f.topicID, 0, 10, maxWait, readUncommitted)
			if p.ErrorCode != 0 || len(decodeBatches(t, p.RecordBatches)) != 0 || p.HighWatermark != 10 {
				t.Fatalf("fetch at the log end: error %d, %d bytes, hwm %d; want no error, no records, hwm 10", p.ErrorCode, len(p.RecordBatches), p.HighWatermark)
			}
			if took < maxWait/2 || took > 10*time.Second {
				t.Fatalf("fetch at the log end answered after %s; Kafka waits MaxWait (%s) for data", took, maxWait)
			}

			// The client's current leader epoch: the broker's own passes, a newer one is
			// UNKNOWN_LEADER_EPOCH.
			if p, _ := f.fetchInEpoch(t, v, f.topic, f.topicID, 0, 0, 100*time.Millisecond, readUncommitted, f.epoch); p.ErrorCode != 0 || len(decodeBatches(t, p.RecordBatches)) != 2 {
				t.Fatalf("fetch in the current leader epoch %d: error %d, want the records", f.epoch, p.ErrorCode)
			}
			if p, _ := f.fetchInEpoch(t, v, f.topic, f.topicID, 0, 0, 100*time.Millisecond, readUncommitted, f.epoch+1); p.ErrorCode != kerr.UnknownLeaderEpoch.Code {
				t.Fatalf("fetch with current leader epoch %d (broker: %d): error %d, want UNKNOWN_LEADER_EPOCH (74)", f.epoch+1, f.epoch, p.ErrorCode)
			}

			// Past the log end, and below the log start: OFFSET_OUT_OF_RANGE.
			if p, _ := f.fetchOne(t, v, f.topic, f.topicID, 0, 11, 100*time.Millisecond, readUncommitted); p.ErrorCode != kerr.OffsetOutOfRange.Code || len(p.RecordBatches) != 0 {
				t.Fatalf("fetch past the log end: error %d with %d bytes, want OFFSET_OUT_OF_RANGE (1) and no records", p.ErrorCode, len(p.RecordBatches))
			}
			if p, _ := f.fetchOne(t, v, f.topic, f.topicID, 1, 1, 100*time.Millisecond, readUncommitted); p.ErrorCode != kerr.OffsetOutOfRange.Code {
				t.Fatalf("fetch below the log start: error %d, want OFFSET_OUT_OF_RANGE (1)", p.ErrorCode)
			}
			// At the log start after DeleteRecords: records from there, log start reported.
			p, _ = f.fetchOne(t, v, f.topic, f.topicID, 1, 2, 500*time.Millisecond, readUncommitted)
			batches = decodeBatches(t, p.RecordBatches)
			if p.ErrorCode != 0 || p.LogStartOffset != 2 || p.HighWatermark != 5 || len(batches) == 0 || batches[0].first > 2 || batches[0].last < 2 {
				t.Fatalf("fetch at the log start 2: error %d log start %d hwm %d, %d batches; want 0, 2, 5 and the batch holding offset 2",
					p.ErrorCode, p.LogStartOffset, p.HighWatermark, len(batches))
			}
		})
	}

	// A partition the topic does not have: UNKNOWN_TOPIC_OR_PARTITION whether the topic is
	// named (v12) or given by its id (v13+). Kafka answers UNKNOWN_TOPIC_ID only when the id
	// itself is unknown; a known id resolves to the topic name first, and then the partition
	// is looked up like any other (KafkaApis.handleFetchRequest: "topicIdPartition.topic ==
	// null" gives UNKNOWN_TOPIC_ID, "!metadataCache.contains(topicPartition)" gives
	// UNKNOWN_TOPIC_OR_PARTITION).
	for _, v := range []int16{byName, newest} {
		t.Run(fmt.Sprintf("UnknownPartition/v%d", v), func(t *testing.T) {
			if p, _ := f.fetchOne(t, v, f.topic, f.topicID, 99, 0, 100*time.Millisecond, readUncommitted); p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
				t.Fatalf("Fetch v%d from partition 99 of a two-partition topic: error %d, want UNKNOWN_TOPIC_OR_PARTITION (3)", v, p.ErrorCode)
			}
		})
	}

	t.Run("UnknownTopic", func(t *testing.T) {
		// By name (v12): UNKNOWN_TOPIC_OR_PARTITION.
		p, _ := f.fetchOne(t, byName, UniqueName(t, "missing"), noID, 0, 0, 100*time.Millisecond, readUncommitted)
		if p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("Fetch v%d for an unknown topic: error %d, want UNKNOWN_TOPIC_OR_PARTITION (3)", byName, p.ErrorCode)
		}
		// By id (v13+): UNKNOWN_TOPIC_ID.
		if newest >= 13 {
			unknownID := [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
			p, _ := f.fetchOne(t, newest, "", unknownID, 0, 0, 100*time.Millisecond, readUncommitted)
			if p.ErrorCode != kerr.UnknownTopicID.Code {
				t.Fatalf("Fetch v%d for an unknown topic id: error %d, want UNKNOWN_TOPIC_ID (100)", newest, p.ErrorCode)
			}
		}
	})
}

func TestProtocolApiVersionsUnsupportedVersion(t *testing.T) {
	b := StartBroker(t)
	conn, err := DialRaw(b.Addr(), 10*time.Second)
	if err != nil {
		t.Fatalf("dialing: %v", err)
	}
	defer conn.Close()
	// A version newer than any broker serves: Kafka answers UNSUPPORTED_VERSION in a v0
	// response that still lists its ApiVersions range, so that the client can retry lower.
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 127
	resp, err := conn.RoundTripAs(req, 0)
	if err != nil {
		t.Fatalf("ApiVersions v127: %v\n%s", err, b.LogTail())
	}
	av := resp.(*kmsg.ApiVersionsResponse)
	if av.ErrorCode != kerr.UnsupportedVersion.Code {
		t.Fatalf("ApiVersions v127: error %d, want UNSUPPORTED_VERSION (35)", av.ErrorCode)
	}
	found := false
	for _, k := range av.ApiKeys {
		if k.ApiKey == int16(kmsg.ApiVersions) {
			found = k.MinVersion == 0 && k.MaxVersion >= 3
		}
	}
	if !found {
		t.Fatalf("the UNSUPPORTED_VERSION answer does not list ApiVersions v0..v3+: %+v", av.ApiKeys)
	}
	// The connection stays usable: the client retries at a version the broker listed.
	req3 := kmsg.NewPtrApiVersionsRequest()
	req3.Version = 3
	again, err := conn.RoundTrip(req3)
	if err != nil || again.(*kmsg.ApiVersionsResponse).ErrorCode != 0 {
		t.Fatalf("ApiVersions v3 after the UNSUPPORTED_VERSION answer: %v / %+v", err, again)
	}
}

// offsetForLeaderEpoch asks where leader epoch `epoch` of partition ends.
func (f *protocolFixture) offsetForLeaderEpoch(t *testing.T, topic string, partition, currentEpoch, epoch int32) kmsg.OffsetForLeaderEpochResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrOffsetForLeaderEpochRequest()
	req.Version = f.newest(t, req)
	req.ReplicaID = -1 // a consumer
	rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
	rp.Partition = partition
	rp.CurrentLeaderEpoch = currentEpoch
	rp.LeaderEpoch = epoch
	rt.Partitions = []kmsg.OffsetForLeaderEpochRequestTopicPartition{rp}
	req.Topics = []kmsg.OffsetForLeaderEpochRequestTopic{rt}
	resp := f.roundTrip(t, req).(*kmsg.OffsetForLeaderEpochResponse)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].Partition != partition {
		t.Fatalf("OffsetForLeaderEpoch v%d for %s[%d] answered %+v", req.Version, topic, partition, resp.Topics)
	}
	return resp.Topics[0].Partitions[0]
}

// TestProtocolOffsetForLeaderEpoch checks the request franz-go sends to detect truncation after
// a leader change: the end offset of the current epoch is the log end offset.
func TestProtocolOffsetForLeaderEpoch(t *testing.T) {
	f := setupProtocolFixture(t)
	got := f.offsetForLeaderEpoch(t, f.topic, 0, f.epoch, f.epoch)
	if got.ErrorCode != 0 || got.LeaderEpoch != f.epoch || got.EndOffset != 10 {
		t.Fatalf("end of the current epoch %d: error %d, epoch %d, end offset %d; want 0, %d, 10", f.epoch, got.ErrorCode, got.LeaderEpoch, got.EndOffset, f.epoch)
	}
	if code := f.offsetForLeaderEpoch(t, f.topic, 0, f.epoch+1, f.epoch).ErrorCode; code != kerr.UnknownLeaderEpoch.Code {
		t.Fatalf("OffsetForLeaderEpoch with current leader epoch %d (broker: %d): error %d, want UNKNOWN_LEADER_EPOCH (74)", f.epoch+1, f.epoch, code)
	}
	if code := f.offsetForLeaderEpoch(t, UniqueName(t, "missing"), 0, -1, 0).ErrorCode; code != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("OffsetForLeaderEpoch for an unknown topic: error %d, want UNKNOWN_TOPIC_OR_PARTITION (3)", code)
	}
	if code := f.offsetForLeaderEpoch(t, f.topic, 99, -1, 0).ErrorCode; code != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("OffsetForLeaderEpoch for partition 99: error %d, want UNKNOWN_TOPIC_OR_PARTITION (3)", code)
	}
}

// TestProtocolOffsetCommitUnknownTopicOrPartition commits offsets for a group with no members
// (generation -1, the way an admin or a manually assigned consumer commits) at the newest
// version that names topics: the known partition is stored, and both a partition the topic does
// not have and a topic that does not exist answer UNKNOWN_TOPIC_OR_PARTITION, as Kafka's
// KafkaApis.handleOffsetCommitRequest does before it reaches the group coordinator.
func TestProtocolOffsetCommitUnknownTopicOrPartition(t *testing.T) {
	f := setupProtocolFixture(t)
	group := UniqueName(t, "g")
	missing := UniqueName(t, "missing")

	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Version = min(f.newest(t, commit), 9) // v10+ names topics by id
	commit.Group = group
	commit.Generation = -1
	commit.MemberID = ""
	addTopic := func(topic string, partitions ...int32) {
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = topic
		for _, p := range partitions {
			rp := kmsg.NewOffsetCommitRequestTopicPartition()
			rp.Partition = p
			rp.Offset = 3
			rp.LeaderEpoch = -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		commit.Topics = append(commit.Topics, rt)
	}
	addTopic(f.topic, 0, 99)
	addTopic(missing, 0)
	resp := f.roundTrip(t, commit).(*kmsg.OffsetCommitResponse)
	t.Logf("OffsetCommit v%d", commit.Version)
	codes := make(map[string]int16)
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			codes[fmt.Sprintf("%s[%d]", rt.Topic, p.Partition)] = p.ErrorCode
		}
	}
	want := map[string]int16{
		fmt.Sprintf("%s[0]", f.topic):  0,
		fmt.Sprintf("%s[99]", f.topic): kerr.UnknownTopicOrPartition.Code,
		fmt.Sprintf("%s[0]", missing):  kerr.UnknownTopicOrPartition.Code,
	}
	if len(codes) != len(want) {
		t.Fatalf("OffsetCommit answered %v, want %v", codes, want)
	}
	for k, code := range want {
		if codes[k] != code {
			t.Fatalf("OffsetCommit for %s: error %d, want %d (all answers %v)", k, codes[k], code, codes)
		}
	}

	fetch := kmsg.NewPtrOffsetFetchRequest()
	f.requireVersion(t, fetch, 8)
	g := kmsg.NewOffsetFetchRequestGroup()
	g.Group = group
	fetch.Groups = []kmsg.OffsetFetchRequestGroup{g}
	fresp := f.roundTrip(t, fetch).(*kmsg.OffsetFetchResponse)
	if len(fresp.Groups) != 1 || fresp.Groups[0].ErrorCode != 0 {
		t.Fatalf("OffsetFetch v8 for %s answered %+v", group, fresp.Groups)
	}
	stored := make(map[string]int64)
	for _, rt := range fresp.Groups[0].Topics {
		for _, p := range rt.Partitions {
			if p.ErrorCode != 0 {
				t.Fatalf("OffsetFetch %s[%d]: error %d", rt.Topic, p.Partition, p.ErrorCode)
			}
			stored[fmt.Sprintf("%s[%d]", rt.Topic, p.Partition)] = p.Offset
		}
	}
	if len(stored) != 1 || stored[fmt.Sprintf("%s[0]", f.topic)] != 3 {
		t.Fatalf("the group's stored offsets are %v, want only %s[0] at 3", stored, f.topic)
	}
}
