// Durability across a crash: kill -9 of the broker while franz-go produces with acks=all.
//
// Goal: every record whose produce promise succeeded before, during or after the crash is in
// the log after the broker restarts on the same data directory, exactly as produced, and the
// log holds nothing but records the test produced, at dense offsets. A graceful restart
// (SIGTERM) keeps everything as well, and an idempotent producer started after a crash gets a
// producer id never handed out before.
//
// Method: a producer with franz-go's defaults (idempotent, acks=all) sends a bounded number of
// uniquely numbered records asynchronously over three partitions, pacing itself; once a share
// of them is acknowledged the broker is killed with SIGKILL, restarted on the same port after a
// short pause, and the producer carries on (franz-go retries what was in flight). Each promise
// records success or failure; after a bounded flush a fresh consumer reads the topic to its end
// and the test checks every acknowledged record is there.

package sluicetest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	crashRecords      = 4000
	crashKillAfterAck = 1000 // the broker is killed once this many records are acknowledged
	crashPaceEvery    = 50   // the producer pauses after this many records...
	crashPause        = 5 * time.Millisecond
	crashFlushLimit   = 60 * time.Second
)

func crashRecordValue(seq int) []byte {
	return fmt.Appendf(nil, "seq=%06d %s", seq, strings.Repeat("x", 64))
}

func TestKill9DuringAcksAllProduceKeepsAcknowledged(t *testing.T) {
	b := StartBroker(t)
	adm := NewAdmin(t, b)
	topic := UniqueName(t, "crash")
	CreateTopic(t, adm, topic, 3, nil)
	producer := NewClient(t, b,
		kgo.RequiredAcks(kgo.AllISRAcks()), // franz-go's default, stated for the reader
		kgo.RecordDeliveryTimeout(45*time.Second),
		kgo.RetryTimeout(45*time.Second),
	)

	var (
		mu       sync.Mutex
		acked    = make(map[int]kgo.Record) // seq -> the record as acknowledged
		failed   = make(map[int]error)
		ackCount atomic.Int64
	)
	done := make(chan struct{})
	var inFlight sync.WaitGroup
	go func() {
		defer close(done)
		base := time.Now()
		for seq := range crashRecords {
			r := &kgo.Record{
				Topic:     topic,
				Key:       []byte(strconv.Itoa(seq)),
				Value:     crashRecordValue(seq),
				Timestamp: base.Add(time.Duration(seq) * time.Millisecond),
			}
			inFlight.Add(1)
			producer.Produce(context.Background(), r, func(r *kgo.Record, err error) {
				defer inFlight.Done()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed[seq] = err
					return
				}
				acked[seq] = *r
				ackCount.Add(1)
			})
			if seq%crashPaceEvery == crashPaceEvery-1 {
				time.Sleep(crashPause)
			}
		}
	}()

	WaitFor(t, 30*time.Second, fmt.Sprintf("%d acknowledged records before the crash", crashKillAfterAck), func() bool {
		return ackCount.Load() >= crashKillAfterAck
	})
	b.Kill()
	ackedAtKill := ackCount.Load()
	if b.Running() {
		t.Fatalf("the broker is still running after SIGKILL")
	}
	time.Sleep(300 * time.Millisecond) // the producer sees the connection drop and retries
	b.Start()

	select {
	case <-done:
	case <-time.After(crashFlushLimit):
		t.Fatalf("the producer did not hand over all %d records within %s", crashRecords, crashFlushLimit)
	}
	flushCtx, cancel := context.WithTimeout(context.Background(), crashFlushLimit)
	defer cancel()
	if err := producer.Flush(flushCtx); err != nil {
		t.Fatalf("flushing the producer after the restart: %v", err)
	}
	inFlight.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("acknowledged %d at the kill, %d in all, %d failed", ackedAtKill, len(acked), len(failed))
	if ackedAtKill >= crashRecords {
		t.Fatalf("every record was acknowledged before the kill: the crash did not interrupt producing")
	}
	if len(acked) < crashKillAfterAck {
		t.Fatalf("only %d records acknowledged", len(acked))
	}

	got := ConsumeToEnd(t, b, topic)
	present := make(map[int][]*kgo.Record) // seq -> every copy in the log
	total := 0
	for p, rs := range got {
		for i, r := range rs {
			total++
			if r.Offset != int64(i) {
				t.Fatalf("partition %d: record %d at offset %d, want dense offsets from 0", p, i, r.Offset)
			}
			seq, err := strconv.Atoi(string(r.Key))
			if err != nil || seq < 0 || seq >= crashRecords || string(r.Value) != string(crashRecordValue(seq)) {
				t.Fatalf("partition %d offset %d holds a record the test never produced: key %q", p, r.Offset, r.Key)
			}
			present[seq] = append(present[seq], r)
		}
	}
	for seq, ack := range acked {
		copies, ok := present[seq]
		if !ok {
			t.Fatalf("record %d was acknowledged at partition %d offset %d but is missing after the crash (acknowledged %d, %d in the log)",
				seq, ack.Partition, ack.Offset, len(acked), total)
		}
		atAck := false
		for _, r := range copies {
			atAck = atAck || (r.Partition == ack.Partition && r.Offset == ack.Offset)
		}
		if !atAck {
			t.Fatalf("record %d was acknowledged at partition %d offset %d, but the log has it at %v",
				seq, ack.Partition, ack.Offset, positions(copies))
		}
	}
	t.Logf("log holds %d records (%d distinct); every acknowledged record is at its acknowledged offset", total, len(present))

	// A graceful restart keeps exactly what is there now.
	before := EndOffsets(t, adm, topic)
	b.Restart()
	after := EndOffsets(t, adm, topic)
	for p, end := range before {
		if after[p] != end {
			t.Fatalf("partition %d end offset %d after a graceful restart, want %d", p, after[p], end)
		}
	}
}

func positions(records []*kgo.Record) []string {
	var out []string
	for _, r := range records {
		out = append(out, fmt.Sprintf("%d/%d", r.Partition, r.Offset))
	}
	return out
}

// TestProducerIDsUniqueAcrossCrash checks that an idempotent producer started after a kill -9
// gets a producer id never handed out before, as Kafka guarantees: were an id reused, the
// broker would take the new producer's first batches for duplicates of the old one's.
func TestProducerIDsUniqueAcrossCrash(t *testing.T) {
	b := StartBroker(t)
	adm := NewAdmin(t, b)
	topic := UniqueName(t, "pid")
	CreateTopic(t, adm, topic, 1, nil)

	produceFresh := func(label string) []*kgo.Record {
		t.Helper()
		producer := NewClient(t, b)
		defer producer.Close()
		records := testRecords(topic, 5, time.UnixMilli(1_700_000_000_000))
		for _, r := range records {
			r.Value = append([]byte(label+" "), r.Value...)
		}
		ProduceAll(t, producer, records)
		return records
	}
	first := produceFresh("before")
	b.Kill()
	b.Start()
	second := produceFresh("after")

	if first[0].ProducerID == second[0].ProducerID {
		t.Fatalf("the producer started after the crash got producer id %d again", second[0].ProducerID)
	}
	got := ConsumeToEnd(t, b, topic)[0]
	want := append(first, second...)
	if len(got) != len(want) {
		t.Fatalf("read %d records, want the %d produced by both producers", len(got), len(want))
	}
	for i, r := range got {
		if err := SameRecord(want[i], r); err != nil {
			t.Fatalf("offset %d: %v", r.Offset, err)
		}
	}
}
