// Produce and consume with franz-go's defaults: an idempotent producer with acks=all.
//
// Goal: keyed records with headers and explicit timestamps come back exactly as they were
// produced, in order, at dense offsets from 0, with every compression codec franz-go offers
// (none, gzip, snappy, lz4, zstd), and the batches stay compressed with the producer's codec
// (Kafka's default topic `compression.type=producer`).
//
// Also: a LogAppendTime topic stamps records with the broker's clock, and a record larger than
// the topic's max.message.bytes is refused with MESSAGE_TOO_LARGE until the limit is raised.
//
// Method: one broker; one three-partition topic per codec; a producer with franz-go's default
// settings plus the codec; records produced synchronously, each promise giving the partition
// and offset assigned; a direct consumer reads every partition from the start to the listed
// end offset and the test compares each record field by field.

package sluicetest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// codecCase is one compression codec and the attribute value Kafka stores for it.
type codecCase struct {
	name  string
	codec kgo.CompressionCodec
	attr  uint8 // the record batch attributes' compression bits
}

var codecCases = []codecCase{
	{"none", kgo.NoCompression(), 0},
	{"gzip", kgo.GzipCompression(), 1},
	{"snappy", kgo.SnappyCompression(), 2},
	{"lz4", kgo.Lz4Compression(), 3},
	{"zstd", kgo.ZstdCompression(), 4},
}

// testRecords builds n records for topic: keyed (one in 50 without a key), with two headers
// (one with a null value), explicit millisecond timestamps one apart, and values that compress
// well so that franz-go really sends compressed batches.
func testRecords(topic string, n int, base time.Time) []*kgo.Record {
	records := make([]*kgo.Record, n)
	filler := strings.Repeat("sluice-franz-go ", 16)
	for i := range n {
		r := &kgo.Record{
			Topic:     topic,
			Value:     fmt.Appendf(nil, "value-%06d %s", i, filler),
			Timestamp: base.Add(time.Duration(i) * time.Millisecond),
			Headers: []kgo.RecordHeader{
				{Key: "seq", Value: fmt.Appendf(nil, "%d", i)},
				{Key: "empty", Value: nil},
			},
		}
		if i%50 != 7 {
			r.Key = fmt.Appendf(nil, "key-%04d", i%97)
		}
		records[i] = r
	}
	return records
}

func TestProduceConsumeEveryCodec(t *testing.T) {
	b := StartBroker(t)
	adm := NewAdmin(t, b)
	const perCodec = 1500
	base := time.UnixMilli(time.Now().Add(-time.Hour).UnixMilli())

	for _, cc := range codecCases {
		t.Run(cc.name, func(t *testing.T) {
			topic := UniqueName(t, "codec")
			CreateTopic(t, adm, topic, 3, nil)
			producer := NewClient(t, b, kgo.ProducerBatchCompression(cc.codec), kgo.ProducerLinger(5*time.Millisecond))
			sent := testRecords(topic, perCodec, base)
			ProduceAll(t, producer, sent)

			// What the producer learned: idempotent, dense offsets per partition in send order.
			sentByPartition := make(map[int32][]*kgo.Record)
			for _, r := range sent {
				if r.ProducerID < 0 {
					t.Fatalf("record acknowledged without a producer id: the default producer is idempotent")
				}
				sentByPartition[r.Partition] = append(sentByPartition[r.Partition], r)
			}
			for p, rs := range sentByPartition {
				for i, r := range rs {
					if r.Offset != int64(i) {
						t.Fatalf("partition %d: record %d acknowledged at offset %d, want %d", p, i, r.Offset, i)
					}
				}
			}

			got := ConsumeToEnd(t, b, topic)
			if len(got) != 3 {
				t.Fatalf("consumed %d partitions, want 3", len(got))
			}
			compressed := 0
			for p, rs := range got {
				want := sentByPartition[p]
				if len(rs) != len(want) {
					t.Fatalf("partition %d: consumed %d records, want %d", p, len(rs), len(want))
				}
				for i, r := range rs {
					if r.Offset != int64(i) {
						t.Fatalf("partition %d: record %d has offset %d, want dense offsets from 0", p, i, r.Offset)
					}
					if err := SameRecord(want[i], r); err != nil {
						t.Fatalf("partition %d offset %d: %v", p, r.Offset, err)
					}
					if r.Attrs.TimestampType() != 0 {
						t.Fatalf("partition %d offset %d: timestamp type %d, want 0 (CreateTime)", p, r.Offset, r.Attrs.TimestampType())
					}
					if r.LeaderEpoch < 0 {
						t.Fatalf("partition %d offset %d: batch leader epoch %d, want the partition's leader epoch (>= 0)", p, r.Offset, r.LeaderEpoch)
					}
					if r.ProducerID != want[i].ProducerID || r.ProducerEpoch != want[i].ProducerEpoch {
						t.Fatalf("partition %d offset %d: producer %d/%d, want %d/%d", p, r.Offset,
							r.ProducerID, r.ProducerEpoch, want[i].ProducerID, want[i].ProducerEpoch)
					}
					switch codec := r.Attrs.CompressionType(); codec {
					case cc.attr:
						if codec != 0 {
							compressed++
						}
					case 0:
						// franz-go sends a batch uncompressed when compressing does not shrink it.
					default:
						t.Fatalf("partition %d offset %d: stored with codec %d, want %d (%s) as produced", p, r.Offset, codec, cc.attr, cc.name)
					}
				}
			}
			if cc.attr != 0 && compressed == 0 {
				t.Fatalf("no record came back in a %s batch: the producer's codec was not kept", cc.name)
			}
		})
	}
}

// TestProduceDefaultsAutoCreate produces with franz-go's defaults, plus the option that lets
// its Metadata requests create topics, to a topic that does not exist: the broker auto-creates
// it with one partition (Kafka's num.partitions default) and the records read back exactly.
func TestProduceDefaultsAutoCreate(t *testing.T) {
	b := StartBroker(t)
	topic := UniqueName(t, "auto")
	producer := NewClient(t, b, kgo.AllowAutoTopicCreation())
	sent := testRecords(topic, 200, time.UnixMilli(1_700_000_000_000))
	ProduceAll(t, producer, sent)

	got := ConsumeToEnd(t, b, topic)
	if len(got) != 1 || len(got[0]) != len(sent) {
		t.Fatalf("auto-created topic read back as %s, want 1 partition with %d records", countsOf(got), len(sent))
	}
	for i, r := range got[0] {
		if r.Offset != int64(i) {
			t.Fatalf("record %d at offset %d, want %d", i, r.Offset, i)
		}
		if err := SameRecord(sent[i], r); err != nil {
			t.Fatalf("offset %d: %v", i, err)
		}
	}
}

// TestProduceLogAppendTime produces records with old timestamps to a topic with
// message.timestamp.type=LogAppendTime: they come back with timestamp type 1 and the broker's
// append time, not the producer's.
func TestProduceLogAppendTime(t *testing.T) {
	b := StartBroker(t)
	adm := NewAdmin(t, b)
	topic := UniqueName(t, "append-time")
	CreateTopic(t, adm, topic, 1, map[string]*string{"message.timestamp.type": kmsg.StringPtr("LogAppendTime")})
	old := time.UnixMilli(1_000_000_000_000) // 2001
	sent := testRecords(topic, 20, old)
	before := time.Now().Add(-time.Second)
	ProduceAll(t, NewClient(t, b), sent)
	after := time.Now().Add(time.Second)

	got := ConsumeToEnd(t, b, topic)[0]
	if len(got) != len(sent) {
		t.Fatalf("read %d records, want %d", len(got), len(sent))
	}
	for i, r := range got {
		if r.Attrs.TimestampType() != 1 {
			t.Fatalf("offset %d: timestamp type %d, want 1 (LogAppendTime)", r.Offset, r.Attrs.TimestampType())
		}
		if r.Timestamp.Before(before) || r.Timestamp.After(after) {
			t.Fatalf("offset %d: timestamp %s, want the append time between %s and %s", r.Offset, r.Timestamp, before, after)
		}
		withAppendTime := *sent[i]
		withAppendTime.Timestamp = r.Timestamp
		if err := SameRecord(&withAppendTime, r); err != nil {
			t.Fatalf("offset %d: %v", r.Offset, err)
		}
	}
}

// TestProduceRecordTooLarge sends one 2 MiB record (incompressible, uncompressed) to a topic
// with Kafka's default max.message.bytes (1048588): MESSAGE_TOO_LARGE. After the topic's limit
// is raised to 4 MiB the same record is accepted and reads back intact.
func TestProduceRecordTooLarge(t *testing.T) {
	b := StartBroker(t)
	adm := NewAdmin(t, b)
	topic := UniqueName(t, "large")
	CreateTopic(t, adm, topic, 1, nil)
	producer := NewClient(t, b, kgo.ProducerBatchMaxBytes(8<<20), kgo.ProducerBatchCompression(kgo.NoCompression()))
	value := make([]byte, 2<<20)
	if _, err := rand.Read(value); err != nil {
		t.Fatalf("random value: %v", err)
	}
	record := func() *kgo.Record { return &kgo.Record{Topic: topic, Key: []byte("large"), Value: value} }

	ctx := testContext(t, opTimeout)
	if err := producer.ProduceSync(ctx, record()).FirstErr(); !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("producing a 2 MiB record over a 1 MiB max.message.bytes: %v, want MESSAGE_TOO_LARGE", err)
	}
	if end := EndOffsets(t, adm, topic); end[0] != 0 {
		t.Fatalf("the refused record moved the end offset to %d", end[0])
	}

	if err := alterTopicConfig(adm, ctx, topic, kadm.SetConfig, "max.message.bytes", kmsg.StringPtr("4194304")); err != nil {
		t.Fatalf("raising max.message.bytes: %v", err)
	}
	sent := record()
	ProduceAll(t, producer, []*kgo.Record{sent})
	got := ConsumeToEnd(t, b, topic, kgo.FetchMaxBytes(16<<20), kgo.FetchMaxPartitionBytes(8<<20))[0]
	if len(got) != 1 {
		t.Fatalf("read %d records after raising the limit, want 1", len(got))
	}
	if err := SameRecord(sent, got[0]); err != nil {
		t.Fatalf("the large record: %v", err)
	}
}
