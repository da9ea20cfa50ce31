// Transactions (transaction version 1) with franz-go: a transactional producer, fencing of a
// zombie producer, GroupTransactSession consume-transform-produce (one session, and two
// sessions across a rebalance), and kadm's transaction admin calls on an open transaction.
//
// Goal: what Apache Kafka guarantees and shows holds against Sluice: a read_committed consumer
// sees exactly the committed records, in order, and a read_uncommitted one sees them all; the
// end offset counts one marker per partition per transaction; a consume-transform-produce loop
// that aborts some of its transactions, or loses partitions to a rebalance in the middle of
// one, still turns every input record into exactly one committed output record and leaves the
// group's committed offsets at the input end offsets; ListTransactions, DescribeTransactions,
// DescribeProducers, ListOffsets (read_committed) and OffsetFetch (require_stable) show an
// open transaction as Kafka does, and show it completed once it commits.
//
// Method: real franz-go clients against a broker per test. EndTxn is answered once the
// coordinator has logged PrepareCommit/PrepareAbort, and the markers are written after that
// (as Kafka does), so anything that depends on the markers (end offsets, the last stable
// offset, committed offsets, the Complete* state) is awaited with a bounded WaitFor. Every
// loop is bounded in time and in iterations.

package sluicetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	txnTimeout = 20 * time.Second
	// markerWait bounds the wait for transaction markers (and what follows from them) to land.
	markerWait = 30 * time.Second
	// maxTxns bounds the number of transactions a consume-transform-produce loop may run.
	maxTxns = 200
	// holdLimit bounds how long a transaction is held open waiting for a rebalance: under the
	// transaction timeout and the End context (opTimeout).
	holdLimit = 15 * time.Second
)

// committedEndOffsets lists the read_committed end offsets (the last stable offsets).
func committedEndOffsets(t testing.TB, adm *kadm.Client, topic string) map[int32]int64 {
	t.Helper()
	return listedOffsets(t, topic, "read_committed end", func(ctx context.Context) (kadm.ListedOffsets, error) {
		return adm.ListCommittedOffsets(ctx, topic)
	})
}

// waitEndOffsets waits (bounded) until both the end offsets and the last stable offsets of the
// topic equal want: every marker has been written and no transaction is open.
func waitEndOffsets(t *testing.T, adm *kadm.Client, topic string, want map[int32]int64) {
	t.Helper()
	var end, lso map[int32]int64
	deadline := time.Now().Add(markerWait)
	for {
		end, lso = EndOffsets(t, adm, topic), committedEndOffsets(t, adm, topic)
		if maps.Equal(end, want) && maps.Equal(lso, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: end offsets %v and last stable offsets %v after %s, want both %v", topic, end, lso, markerWait, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkTransactional fails the test unless every record carries the producer id and epoch and
// the transactional attribute.
// The epoch is the first transaction's or later: with transaction.version 2 (KIP-890 part 2,
// Kafka 4.x's default) every transaction bumps it.
func checkTransactional(t *testing.T, what string, records []*kgo.Record, pid int64, epoch int16) {
	t.Helper()
	for _, r := range records {
		if r.ProducerID != pid || r.ProducerEpoch < epoch || !r.Attrs.IsTransactional() || r.Attrs.IsControl() {
			t.Fatalf("%s record at %s[%d]@%d: producer %d epoch %d transactional %t control %t; want producer %d epoch %d or later, transactional, not control",
				what, r.Topic, r.Partition, r.Offset, r.ProducerID, r.ProducerEpoch, r.Attrs.IsTransactional(), r.Attrs.IsControl(), pid, epoch)
		}
	}
}

// checkSameRecords fails the test unless got matches want record for record and sits at the
// offsets given.
func checkSameRecords(t *testing.T, what string, want, got []*kgo.Record, offsets []int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
	for i, r := range got {
		if err := SameRecord(want[i], r); err != nil {
			t.Fatalf("%s: record %d (offset %d): %v", what, i, r.Offset, err)
		}
		if r.Offset != offsets[i] {
			t.Fatalf("%s: record %d (%s) at offset %d, want %d", what, i, r.Value, r.Offset, offsets[i])
		}
	}
}

func offsetRange(from, to int64) []int64 {
	var out []int64
	for o := from; o < to; o++ {
		out = append(out, o)
	}
	return out
}

// logBatch is one record batch header of a raw Fetch answer; for a control batch, marker is
// the control record's type (0 abort, 1 commit), else -1.
type logBatch struct {
	first, last int64
	producerID  int64
	epoch       int16
	control     bool
	marker      int16
}

// rawLog fetches the partition of topic from offset 0 with Fetch v12 at the isolation level
// (0 read_uncommitted, 1 read_committed) and returns the partition's answer and its batches.
func rawLog(t *testing.T, b *Broker, topic string, partition int32, isolation int8) (kmsg.FetchResponseTopicPartition, []logBatch) {
	t.Helper()
	conn, err := DialRaw(b.Addr(), opTimeout)
	if err != nil {
		t.Fatalf("dialing: %v", err)
	}
	defer conn.Close()
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(12)
	req.ReplicaID = -1
	req.MaxBytes = 1 << 20
	req.IsolationLevel = isolation
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = partition
	rp.PartitionMaxBytes = 1 << 20
	rt.Partitions = []kmsg.FetchRequestTopicPartition{rp}
	req.Topics = []kmsg.FetchRequestTopic{rt}
	kresp, err := conn.RoundTrip(req)
	if err != nil {
		t.Fatalf("Fetch v12: %v", err)
	}
	resp := kresp.(*kmsg.FetchResponse)
	if resp.ErrorCode != 0 || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("Fetch v12 of %s[%d]: error %d, topics %+v", topic, partition, resp.ErrorCode, resp.Topics)
	}
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 {
		t.Fatalf("Fetch v12 of %s[%d]: partition error %d", topic, partition, p.ErrorCode)
	}
	var batches []logBatch
	for raw := p.RecordBatches; len(raw) >= 12; {
		length := int(int32(binary.BigEndian.Uint32(raw[8:12])))
		if length <= 0 || len(raw) < 12+length {
			t.Fatalf("Fetch v12 of %s[%d]: truncated batch after %d batches", topic, partition, len(batches))
		}
		var batch kmsg.RecordBatch
		if err := batch.ReadFrom(raw[:12+length]); err != nil {
			t.Fatalf("decoding a record batch: %v", err)
		}
		lb := logBatch{first: batch.FirstOffset, last: batch.FirstOffset + int64(batch.LastOffsetDelta), producerID: batch.ProducerID,
			epoch: batch.ProducerEpoch, control: batch.Attributes&0x20 != 0, marker: -1}
		if lb.control {
			var r kmsg.Record
			size, n := binary.Varint(batch.Records)
			if batch.NumRecords != 1 || n <= 0 || int(size)+n > len(batch.Records) {
				t.Fatalf("control batch at %d: %d records", batch.FirstOffset, batch.NumRecords)
			}
			if err := r.ReadFrom(batch.Records[:n+int(size)]); err != nil || len(r.Key) != 4 {
				t.Fatalf("control batch at %d: record %v, key %x", batch.FirstOffset, err, r.Key)
			}
			lb.marker = int16(binary.BigEndian.Uint16(r.Key[2:4]))
		}
		batches = append(batches, lb)
		raw = raw[12+length:]
	}
	return p, batches
}

// checkMarkers fails the test unless the control batches of the log are exactly want
// (offset -> marker type, 0 abort or 1 commit), each from the producer id with the epoch given
// (or, for transaction.version 2, that epoch bumped).
func checkMarkers(t *testing.T, batches []logBatch, pid int64, want map[int64]int16, epochs map[int64]int16) {
	t.Helper()
	got := make(map[int64]int16)
	for _, lb := range batches {
		if !lb.control {
			continue
		}
		bumped := lb.epoch == epochs[lb.first]+1
		if lb.first != lb.last || lb.producerID != pid || (lb.epoch != epochs[lb.first] && !bumped) {
			t.Fatalf("marker batch at %d-%d from producer %d epoch %d, want one offset from producer %d epoch %d (or one more)", lb.first, lb.last, lb.producerID, lb.epoch, pid, epochs[lb.first])
		}
		got[lb.first] = lb.marker
	}
	if !maps.Equal(got, want) {
		t.Fatalf("markers (offset: 0 abort, 1 commit) %v, want %v", got, want)
	}
}

func TestTransactionalProducerCommitAbort(t *testing.T) {
	b := StartBroker(t)
	adm := NewAdmin(t, b)
	topic := UniqueName(t, "txn")
	CreateTopic(t, adm, topic, 1, nil)
	producer := NewClient(t, b, kgo.TransactionalID(UniqueName(t, "txid")), kgo.TransactionTimeout(txnTimeout))
	ctx := testContext(t, 2*opTimeout)
	pid, epoch, err := producer.ProducerID(ctx)
	if err != nil {
		t.Fatalf("InitProducerId for the transactional id: %v", err)
	}

	transact := func(prefix string, n int, end kgo.TransactionEndTry) []*kgo.Record {
		t.Helper()
		if err := producer.BeginTransaction(); err != nil {
			t.Fatalf("beginning the %s transaction: %v", prefix, err)
		}
		var records []*kgo.Record
		for i := range n {
			records = append(records, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "%s-%d", prefix, i), Value: fmt.Appendf(nil, "%s value %d", prefix, i),
				Headers: []kgo.RecordHeader{{Key: "txn", Value: []byte(prefix)}}})
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

	// Each transaction ends with one control record: 10 + 1 + 5 + 1 + 3 + 1 offsets; with no
	// transaction open, the last stable offset is the end offset.
	waitEndOffsets(t, adm, topic, map[int32]int64{0: 21})

	wantCommitted := append(slices.Clone(committed), late...)
	gotCommitted := ConsumeN(t, b, topic, len(wantCommitted), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	checkSameRecords(t, "read_committed", wantCommitted, gotCommitted, append(offsetRange(0, 10), offsetRange(17, 20)...))
	checkTransactional(t, "read_committed", gotCommitted, pid, epoch)

	wantAll := append(append(slices.Clone(committed), aborted...), late...)
	gotAll := ConsumeN(t, b, topic, len(wantAll))
	checkSameRecords(t, "read_uncommitted", wantAll, gotAll, append(append(offsetRange(0, 10), offsetRange(11, 16)...), offsetRange(17, 20)...))
	checkTransactional(t, "read_uncommitted", gotAll, pid, epoch)

	// The raw log: a commit marker at 10 and 20, an abort marker at 16; a read_committed Fetch
	// names the aborted transaction (producer, first offset 11) and has the last stable offset 21.
	_, batches := rawLog(t, b, topic, 0, 0)
	// Each marker carries its transaction's epoch, or with transaction.version 2 (KIP-890 part 2)
	// that epoch bumped at the transaction's end.
	checkMarkers(t, batches, pid, map[int64]int16{10: 1, 16: 0, 20: 1},
		map[int64]int16{10: gotAll[9].ProducerEpoch, 16: gotAll[14].ProducerEpoch, 20: gotAll[17].ProducerEpoch})
	p, _ := rawLog(t, b, topic, 0, 1)
	if p.HighWatermark != 21 || p.LastStableOffset != 21 || len(p.AbortedTransactions) != 1 ||
		p.AbortedTransactions[0].ProducerID != pid || p.AbortedTransactions[0].FirstOffset != 11 {
		t.Fatalf("read_committed Fetch: high watermark %d, last stable offset %d, aborted transactions %+v; want 21, 21, one of producer %d from offset 11",
			p.HighWatermark, p.LastStableOffset, p.AbortedTransactions, pid)
	}
}

// TestTransactionalProducerFencing: a second producer with the same transactional id fences
// the first one in the middle of its transaction: Kafka aborts the open transaction, bumps
// the epoch, and answers the zombie's EndTxn with PRODUCER_FENCED.
func TestTransactionalProducerFencing(t *testing.T) {
	b := StartBroker(t)
	adm := NewAdmin(t, b)
	topic, txid := UniqueName(t, "txn"), UniqueName(t, "txid")
	CreateTopic(t, adm, topic, 1, nil)
	ctx := testContext(t, 3*opTimeout)

	zombie := NewClient(t, b, kgo.TransactionalID(txid), kgo.TransactionTimeout(txnTimeout))
	if err := zombie.BeginTransaction(); err != nil {
		t.Fatalf("beginning the zombie's transaction: %v", err)
	}
	var zombieRecords []*kgo.Record
	for i := range 3 {
		zombieRecords = append(zombieRecords, &kgo.Record{Topic: topic, Key: []byte("zombie"), Value: fmt.Appendf(nil, "zombie %d", i)})
	}
	if err := zombie.ProduceSync(ctx, zombieRecords...).FirstErr(); err != nil {
		t.Fatalf("producing in the zombie's transaction: %v", err)
	}
	zombieID, zombieEpoch, err := zombie.ProducerID(ctx)
	if err != nil {
		t.Fatalf("the zombie's producer id: %v", err)
	}

	// InitProducerId for the same transactional id fences the open transaction: Kafka bumps
	// the epoch, aborts the transaction with it and answers CONCURRENT_TRANSACTIONS; the retry
	// (franz-go's) bumps the epoch a second time (TransactionCoordinator,
	// prepareInitProducerIdTransit: "the epoch is bumped a second time").
	fresh := NewClient(t, b, kgo.TransactionalID(txid), kgo.TransactionTimeout(txnTimeout))
	freshID, freshEpoch, err := fresh.ProducerID(ctx)
	if err != nil {
		t.Fatalf("InitProducerId for the fencing producer: %v", err)
	}
	if freshID != zombieID || freshEpoch != zombieEpoch+2 {
		t.Fatalf("fencing producer got producer id %d epoch %d, want the same id %d with the epoch bumped twice, to %d", freshID, freshEpoch, zombieID, zombieEpoch+2)
	}
	err = zombie.EndTransaction(ctx, kgo.TryCommit)
	if !errors.Is(err, kerr.ProducerFenced) {
		t.Fatalf("the zombie's EndTxn(commit) after the fence: %v, want PRODUCER_FENCED (90)", err)
	}

	if err := fresh.BeginTransaction(); err != nil {
		t.Fatalf("beginning the fencing producer's transaction: %v", err)
	}
	freshRecords := []*kgo.Record{{Topic: topic, Key: []byte("fresh"), Value: []byte("fresh 0")}, {Topic: topic, Key: []byte("fresh"), Value: []byte("fresh 1")}}
	if err := fresh.ProduceSync(ctx, freshRecords...).FirstErr(); err != nil {
		t.Fatalf("producing in the fencing producer's transaction: %v", err)
	}
	if err := fresh.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("committing the fencing producer's transaction: %v", err)
	}

	// 3 zombie records, the abort marker written by the fence, 2 records, the commit marker.
	waitEndOffsets(t, adm, topic, map[int32]int64{0: 7})
	got := ConsumeN(t, b, topic, len(freshRecords), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	checkSameRecords(t, "read_committed", freshRecords, got, []int64{4, 5})
	checkTransactional(t, "read_committed", got, freshID, freshEpoch)
	all := ConsumeN(t, b, topic, len(zombieRecords)+len(freshRecords))
	checkSameRecords(t, "read_uncommitted", append(slices.Clone(zombieRecords), freshRecords...), all, []int64{0, 1, 2, 4, 5})
	checkTransactional(t, "read_uncommitted zombie", all[:3], zombieID, zombieEpoch)
	// The fence's abort marker carries the first bumped epoch, the commit the fencing producer's.
	_, batches := rawLog(t, b, topic, 0, 0)
	checkMarkers(t, batches, zombieID, map[int64]int16{3: 0, 6: 1}, map[int64]int16{3: zombieEpoch + 1, 6: freshEpoch})
	if p, _ := rawLog(t, b, topic, 0, 1); len(p.AbortedTransactions) != 1 || p.AbortedTransactions[0].ProducerID != zombieID || p.AbortedTransactions[0].FirstOffset != 0 {
		t.Fatalf("read_committed Fetch: aborted transactions %+v, want one of producer %d from offset 0", p.AbortedTransactions, zombieID)
	}

	described, err := adm.DescribeTransactions(ctx, txid)
	if err != nil {
		t.Fatalf("DescribeTransactions: %v", err)
	}
	if d := described[txid]; d.Err != nil || d.State != "CompleteCommit" || d.ProducerID != freshID || d.ProducerEpoch != freshEpoch {
		t.Fatalf("described %s: err %v state %q producer %d epoch %d; want CompleteCommit, producer %d epoch %d", txid, d.Err, d.State, d.ProducerID, d.ProducerEpoch, freshID, freshEpoch)
	}
}

// produceInputs appends perPartition keyed records to each partition of topic and returns
// them per partition, in offset order.
func produceInputs(t *testing.T, b *Broker, topic string, partitions, perPartition int) map[int32][]*kgo.Record {
	t.Helper()
	byPartition := make(map[int32][]*kgo.Record)
	var all []*kgo.Record
	for i := range perPartition {
		for p := range int32(partitions) {
			r := &kgo.Record{Topic: topic, Partition: p, Key: fmt.Appendf(nil, "p%d-%d", p, i), Value: fmt.Appendf(nil, "input %d of partition %d", i, p)}
			byPartition[p] = append(byPartition[p], r)
			all = append(all, r)
		}
	}
	ProduceAll(t, NewClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner())), all)
	return byPartition
}

// transformed is the output record for an input record: same key, same partition.
func transformed(output string, in *kgo.Record) *kgo.Record {
	return &kgo.Record{Topic: output, Partition: in.Partition, Key: in.Key, Value: append([]byte("processed "), in.Value...)}
}

// checkOutputs fails the test unless the committed output holds, in every partition, the
// transformed input records of the same partition, each exactly once and in input order.
func checkOutputs(t *testing.T, b *Broker, output string, inputs map[int32][]*kgo.Record) {
	t.Helper()
	n := 0
	for _, rs := range inputs {
		n += len(rs)
	}
	got := make(map[int32][]*kgo.Record)
	for _, r := range ConsumeN(t, b, output, n, kgo.FetchIsolationLevel(kgo.ReadCommitted())) {
		got[r.Partition] = append(got[r.Partition], r)
	}
	for p, in := range inputs {
		if len(got[p]) != len(in) {
			t.Fatalf("committed output partition %d holds %d records, want %d (one per input record); per partition %s", p, len(got[p]), len(in), countsOf(got))
		}
		for i, r := range got[p] {
			if want := transformed(output, in[i]); !bytes.Equal(r.Key, want.Key) || !bytes.Equal(r.Value, want.Value) {
				t.Fatalf("committed output partition %d, record %d (offset %d): key %q value %q, want key %q value %q", p, i, r.Offset, r.Key, r.Value, want.Key, want.Value)
			}
		}
	}
}

// sessionOpts are the options of a consume-transform-produce GroupTransactSession.
func sessionOpts(t *testing.T, b *Broker, name, group, input string, extra ...kgo.Opt) []kgo.Opt {
	return ClientOpts(b, append([]kgo.Opt{
		kgo.TransactionalID(UniqueName(t, "txid-"+name)),
		kgo.TransactionTimeout(txnTimeout),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(input),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.HeartbeatInterval(250 * time.Millisecond),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	}, extra...)...)
}

// pollErr returns the first poll error other than the poll's own deadline.
func pollErr(fetches kgo.Fetches) error {
	var first error
	fetches.EachError(func(tp string, p int32, err error) {
		if first == nil && !errors.Is(err, context.DeadlineExceeded) {
			first = fmt.Errorf("polling %s[%d]: %w", tp, p, err)
		}
	})
	return first
}

func TestGroupTransactSessionConsumeTransformProduce(t *testing.T) {
	b := StartBroker(t)
	adm := NewAdmin(t, b)
	input, output, group := UniqueName(t, "in"), UniqueName(t, "out"), UniqueName(t, "g")
	const partitions, perPartition = 3, 30
	CreateTopic(t, adm, input, partitions, nil)
	CreateTopic(t, adm, output, partitions, nil)
	inputs := produceInputs(t, b, input, partitions, perPartition)

	sess, err := kgo.NewGroupTransactSession(sessionOpts(t, b, "s", group, input)...)
	if err != nil {
		t.Fatalf("NewGroupTransactSession: %v", err)
	}
	defer sess.Close()

	// next[p] is the offset the session must deliver next on p: after a commit the one after
	// the last committed record, after an abort the same again (the session rewinds to the
	// committed offsets).
	next := make(map[int32]int64)
	abortedPer := make(map[int32]int) // output records produced in aborted transactions
	txnsPer := make(map[int32]int)    // transactions that produced to each output partition
	var txns, aborts int
	done := func() bool {
		for p := range int32(partitions) {
			if next[p] != perPartition {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(consumeTimeout)
	for !done() {
		if time.Now().After(deadline) || txns >= maxTxns {
			t.Fatalf("after %d transactions in %s, committed up to %v of %d records per partition", txns, consumeTimeout, next, perPartition)
		}
		pollCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fetches := sess.PollRecords(pollCtx, 7)
		cancel()
		if err := pollErr(fetches); err != nil {
			t.Fatal(err)
		}
		records := fetches.Records()
		if len(records) == 0 {
			continue
		}
		txns++
		// Every third transaction is aborted on purpose.
		end := kgo.TryCommit
		if txns%3 == 2 {
			end = kgo.TryAbort
		}
		delivered := maps.Clone(next)
		for _, r := range records {
			if r.Offset != delivered[r.Partition] {
				t.Fatalf("transaction %d: got %s[%d]@%d, want offset %d next (the committed position)", txns, r.Topic, r.Partition, r.Offset, delivered[r.Partition])
			}
			delivered[r.Partition]++
		}

		if err := sess.Begin(); err != nil {
			t.Fatalf("transaction %d: Begin: %v", txns, err)
		}
		ctx, cancelTxn := context.WithTimeout(context.Background(), opTimeout)
		var outs []*kgo.Record
		for _, r := range records {
			outs = append(outs, transformed(output, r))
		}
		if err := sess.ProduceSync(ctx, outs...).FirstErr(); err != nil {
			cancelTxn()
			t.Fatalf("transaction %d: producing: %v", txns, err)
		}
		committed, err := sess.End(ctx, end)
		cancelTxn()
		if err != nil {
			t.Fatalf("transaction %d: End(%v): %v", txns, end, err)
		}
		if committed != bool(end) {
			t.Fatalf("transaction %d: End(commit=%t) reported committed=%t; a single member with no rebalance must get what it asked", txns, bool(end), committed)
		}
		for p := range delivered {
			if delivered[p] != next[p] {
				txnsPer[p]++
			}
		}
		if committed {
			next = delivered
		} else {
			aborts++
			for _, r := range records {
				abortedPer[r.Partition]++
			}
		}
	}
	if aborts == 0 {
		t.Fatalf("%d transactions, none aborted: the test did not exercise an abort", txns)
	}
	t.Logf("%d transactions, %d aborted (%v output records aborted per partition)", txns, aborts, abortedPer)

	checkOutputs(t, b, output, inputs)
	// The output log holds the aborted records too, and one marker per transaction per partition.
	wantEnd := make(map[int32]int64)
	totalAborted := 0
	for p := range int32(partitions) {
		wantEnd[p] = int64(perPartition + abortedPer[p] + txnsPer[p])
		totalAborted += abortedPer[p]
	}
	waitEndOffsets(t, adm, output, wantEnd)
	uncommitted := make(map[int32]int)
	for _, r := range ConsumeN(t, b, output, partitions*perPartition+totalAborted) {
		uncommitted[r.Partition]++
	}
	for p := range int32(partitions) {
		if uncommitted[p] != perPartition+abortedPer[p] {
			t.Fatalf("read_uncommitted output partition %d: %d records, want %d committed + %d aborted", p, uncommitted[p], perPartition, abortedPer[p])
		}
	}

	end := EndOffsets(t, adm, input)
	var offsets map[int32]int64
	WaitFor(t, markerWait, "the group's transactional offsets to reach the input end offsets", func() bool {
		offsets = committedOffsets(t, adm, group, input)
		return maps.Equal(offsets, end)
	})
}

// TestGroupTransactSessionRebalance: two sessions in one group. Session a works alone, then
// holds a transaction open (records polled and produced, not ended) while b joins; the
// cooperative rebalance revokes a partition from a, so a's End(TryCommit) must abort; then both
// run until every input record is committed. No input record may be committed twice.
func TestGroupTransactSessionRebalance(t *testing.T) {
	b := StartBroker(t)
	adm := NewAdmin(t, b)
	input, output, group := UniqueName(t, "in"), UniqueName(t, "out"), UniqueName(t, "g")
	const partitions, perPartition = 3, 40
	const n = partitions * perPartition
	CreateTopic(t, adm, input, partitions, nil)
	CreateTopic(t, adm, output, partitions, nil)
	inputs := produceInputs(t, b, input, partitions, perPartition)

	var mu sync.Mutex
	timesCommitted := make(map[int32]map[int64]int) // input partition -> offset -> commits
	committedBy := make(map[string]int)
	abortsBy := make(map[string]int)
	assignedTo := make(map[string]int)
	distinct := 0
	onAssigned := func(name string) kgo.Opt {
		return kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			mu.Lock()
			assignedTo[name] += len(assigned[input])
			mu.Unlock()
		})
	}
	aRevoked := make(chan struct{})
	var revokeOnce sync.Once
	newSession := func(name string, extra ...kgo.Opt) *kgo.GroupTransactSession {
		sess, err := kgo.NewGroupTransactSession(sessionOpts(t, b, name, group, input, append(extra, onAssigned(name))...)...)
		if err != nil {
			t.Fatalf("NewGroupTransactSession %s: %v", name, err)
		}
		return sess
	}

	// runTxn produces the transformed records in one transaction, calls hold (if any) before
	// ending it, and ends it with TryCommit.
	runTxn := func(name string, sess *kgo.GroupTransactSession, records []*kgo.Record, hold func() error) (bool, error) {
		if err := sess.Begin(); err != nil {
			return false, fmt.Errorf("%s: Begin: %w", name, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		var outs []*kgo.Record
		for _, r := range records {
			outs = append(outs, transformed(output, r))
		}
		if err := sess.ProduceSync(ctx, outs...).FirstErr(); err != nil {
			return false, fmt.Errorf("%s: producing: %w", name, err)
		}
		if hold != nil {
			if err := hold(); err != nil {
				return false, err
			}
		}
		committed, err := sess.End(ctx, kgo.TryCommit)
		if err != nil {
			return false, fmt.Errorf("%s: End(TryCommit): %w", name, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if !committed {
			abortsBy[name]++
			return false, nil
		}
		committedBy[name] += len(records)
		for _, r := range records {
			if timesCommitted[r.Partition] == nil {
				timesCommitted[r.Partition] = make(map[int64]int)
			}
			if timesCommitted[r.Partition][r.Offset] == 0 {
				distinct++
			}
			timesCommitted[r.Partition][r.Offset]++
		}
		return true, nil
	}
	poll := func(sess *kgo.GroupTransactSession) ([]*kgo.Record, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		fetches := sess.PollRecords(ctx, 5)
		return fetches.Records(), pollErr(fetches)
	}
	distinctCommitted := func() int {
		mu.Lock()
		defer mu.Unlock()
		return distinct
	}

	a := newSession("a", kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
		if len(revoked[input]) > 0 {
			revokeOnce.Do(func() { close(aRevoked) })
		}
	}))
	defer a.Close()

	// Phase 1: a alone commits at least 15 records (at most 20: 5 per poll), so that no
	// partition is finished before b joins.
	deadline := time.Now().Add(consumeTimeout)
	for i := 0; distinctCommitted() < 15; i++ {
		if time.Now().After(deadline) || i >= maxTxns {
			t.Fatalf("session a alone committed %d records after %d polls", distinctCommitted(), i)
		}
		records, err := poll(a)
		if err != nil {
			t.Fatalf("a: %v", err)
		}
		if len(records) == 0 {
			continue
		}
		if committed, err := runTxn("a", a, records, nil); err != nil || !committed {
			t.Fatalf("a alone: transaction committed %t, error %v; want a commit", committed, err)
		}
	}

	// Phase 2: a has a transaction open with produced records when b joins.
	var held []*kgo.Record
	for i := 0; len(held) == 0; i++ {
		if time.Now().After(deadline) || i >= maxTxns {
			t.Fatalf("session a polled nothing to hold in a transaction after %d polls", i)
		}
		var err error
		if held, err = poll(a); err != nil {
			t.Fatalf("a: %v", err)
		}
	}
	var bs *kgo.GroupTransactSession
	stop := make(chan struct{})
	var stopOnce sync.Once
	stopAll := func() { stopOnce.Do(func() { close(stop) }) }
	defer stopAll()
	errs := make(chan error, 2)
	worker := func(name string, sess *kgo.GroupTransactSession) {
		for i := 0; ; i++ {
			select {
			case <-stop:
				errs <- nil
				return
			default:
			}
			if i >= 10*maxTxns {
				errs <- fmt.Errorf("%s: still running after %d polls", name, i)
				return
			}
			records, err := poll(sess)
			if err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				return
			}
			if len(records) == 0 {
				continue
			}
			if _, err := runTxn(name, sess, records, nil); err != nil {
				errs <- err
				return
			}
		}
	}
	committed, err := runTxn("a", a, held, func() error {
		bs = newSession("b")
		go worker("b", bs)
		select {
		case <-aRevoked:
			return nil
		case <-time.After(holdLimit):
			return fmt.Errorf("a: no partition revoked within %s of b joining", holdLimit)
		}
	})
	if bs != nil {
		defer bs.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if committed {
		t.Fatalf("a's transaction spanning the rebalance committed; GroupTransactSession must abort it after a revoke")
	}

	// Phase 3: both sessions run until every input record has been committed once.
	go worker("a", a)
	WaitFor(t, consumeTimeout, "every input record to be committed", func() bool { return distinctCommitted() == n })
	stopAll()
	for range 2 {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(2 * opTimeout):
			t.Fatalf("a session loop did not stop within %s", 2*opTimeout)
		}
	}

	mu.Lock()
	for p, offsets := range timesCommitted {
		for o, times := range offsets {
			if times != 1 {
				t.Errorf("input %s[%d]@%d committed %d times", input, p, o, times)
			}
		}
	}
	t.Logf("records committed by session %v, aborted transactions %v, partitions assigned %v", committedBy, abortsBy, assignedTo)
	if committedBy["b"] == 0 || assignedTo["b"] == 0 || abortsBy["a"] == 0 {
		t.Errorf("session b was assigned %d partitions and committed %d records, a aborted %d transactions; want all > 0", assignedTo["b"], committedBy["b"], abortsBy["a"])
	}
	mu.Unlock()
	if t.Failed() {
		t.FailNow()
	}

	checkOutputs(t, b, output, inputs)
	end := EndOffsets(t, adm, input)
	WaitFor(t, markerWait, "the group's transactional offsets to reach the input end offsets", func() bool {
		return maps.Equal(committedOffsets(t, adm, group, input), end)
	})
}

// offsetsPartitionFor is Kafka's __consumer_offsets partition for a group:
// Utils.abs(group.hashCode()) % partitions.
func offsetsPartitionFor(group string, partitions int) int32 {
	var h int32
	for _, u := range utf16.Encode([]rune(group)) {
		h = 31*h + int32(u)
	}
	if h == math.MinInt32 {
		h = 0
	} else if h < 0 {
		h = -h
	}
	return h % int32(partitions)
}

// offsetFetchStable sends OffsetFetch v7 for the partitions of topic and returns, per
// partition, the committed offset and the partition's error code.
func offsetFetchStable(t *testing.T, b *Broker, group, topic string, partitions []int32, requireStable bool) map[int32][2]int64 {
	t.Helper()
	conn, err := DialRaw(b.Addr(), opTimeout)
	if err != nil {
		t.Fatalf("dialing: %v", err)
	}
	defer conn.Close()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.SetVersion(7)
	req.Group = group
	req.RequireStable = requireStable
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	rt.Partitions = partitions
	req.Topics = []kmsg.OffsetFetchRequestTopic{rt}
	kresp, err := conn.RoundTrip(req)
	if err != nil {
		t.Fatalf("OffsetFetch v7: %v", err)
	}
	resp := kresp.(*kmsg.OffsetFetchResponse)
	if resp.ErrorCode != 0 || len(resp.Topics) != 1 || resp.Topics[0].Topic != topic {
		t.Fatalf("OffsetFetch v7 (require_stable %t): error %d, topics %+v", requireStable, resp.ErrorCode, resp.Topics)
	}
	out := make(map[int32][2]int64)
	for _, p := range resp.Topics[0].Partitions {
		out[p.Partition] = [2]int64{p.Offset, int64(p.ErrorCode)}
	}
	return out
}

// TestTransactionAdminOpenTransaction: kadm's view of an open transaction that wrote to two
// partitions and holds a group's offsets, then of the same transaction committed.
func TestTransactionAdminOpenTransaction(t *testing.T) {
	b := StartBroker(t)
	cl := NewClient(t, b)
	adm := kadm.NewClient(cl)
	topic, group, txid := UniqueName(t, "txn"), UniqueName(t, "g"), UniqueName(t, "txid")
	CreateTopic(t, adm, topic, 2, nil)
	ctx := testContext(t, 4*opTimeout)
	topics, err := adm.ListTopics(ctx, topic)
	if err != nil || topics[topic].Err != nil {
		t.Fatalf("listing %s: %v / %v", topic, err, topics[topic].Err)
	}
	topicID := topics[topic].ID

	// Before the transaction: three records from a plain idempotent producer on partition 0,
	// and a plain (generation -1) offset commit of 1 on partition 0 for the group.
	plain := NewClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ProduceAll(t, plain, []*kgo.Record{{Topic: topic, Partition: 0, Value: []byte("plain 0")}, {Topic: topic, Partition: 0, Value: []byte("plain 1")}, {Topic: topic, Partition: 0, Value: []byte("plain 2")}})
	plainID, plainEpoch, err := plain.ProducerID(ctx)
	if err != nil {
		t.Fatalf("the plain producer's id: %v", err)
	}
	commits, err := adm.CommitOffsets(ctx, group, kadm.Offsets{topic: {0: {Topic: topic, Partition: 0, At: 1, LeaderEpoch: -1}}})
	if err != nil || commits.Error() != nil {
		t.Fatalf("committing offset 1 for %s: %v / %v", group, err, commits.Error())
	}

	before := time.Now().UnixMilli()
	producer := NewClient(t, b, kgo.TransactionalID(txid), kgo.TransactionTimeout(txnTimeout), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := producer.BeginTransaction(); err != nil {
		t.Fatalf("BeginTransaction: %v", err)
	}
	var txnRecords []*kgo.Record
	for i := range 4 {
		txnRecords = append(txnRecords, &kgo.Record{Topic: topic, Partition: 0, Value: fmt.Appendf(nil, "txn p0 %d", i)})
	}
	for i := range 2 {
		txnRecords = append(txnRecords, &kgo.Record{Topic: topic, Partition: 1, Value: fmt.Appendf(nil, "txn p1 %d", i)})
	}
	if err := producer.ProduceSync(ctx, txnRecords...).FirstErr(); err != nil {
		t.Fatalf("producing in the transaction: %v", err)
	}
	pid, epoch, err := producer.ProducerID(ctx)
	if err != nil {
		t.Fatalf("the transactional producer's id: %v", err)
	}

	// The group's offsets join the transaction as a consume-transform-produce loop sends
	// them: AddOffsetsToTxn, then TxnOffsetCommit (a simple group: generation -1, no member).
	addOffsets := kmsg.NewPtrAddOffsetsToTxnRequest()
	addOffsets.TransactionalID, addOffsets.ProducerID, addOffsets.ProducerEpoch, addOffsets.Group = txid, pid, epoch, group
	addResp, err := addOffsets.RequestWith(ctx, cl)
	if err != nil || addResp.ErrorCode != 0 {
		t.Fatalf("AddOffsetsToTxn: %v, error code %v", err, addResp)
	}
	txnCommit := kmsg.NewPtrTxnOffsetCommitRequest()
	txnCommit.TransactionalID, txnCommit.Group, txnCommit.ProducerID, txnCommit.ProducerEpoch = txid, group, pid, epoch
	txnCommit.Generation, txnCommit.MemberID = -1, ""
	ct := kmsg.NewTxnOffsetCommitRequestTopic()
	ct.Topic, ct.TopicID = topic, topicID
	cp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	cp.Partition, cp.Offset, cp.LeaderEpoch = 0, 2, -1
	ct.Partitions = []kmsg.TxnOffsetCommitRequestTopicPartition{cp}
	txnCommit.Topics = []kmsg.TxnOffsetCommitRequestTopic{ct}
	commitResp, err := txnCommit.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("TxnOffsetCommit: %v", err)
	}
	if len(commitResp.Topics) != 1 || len(commitResp.Topics[0].Partitions) != 1 || commitResp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("TxnOffsetCommit v%d answered %+v, want partition 0 without error", commitResp.Version, commitResp.Topics)
	}
	after := time.Now().UnixMilli()

	internal, err := adm.ListTopicsWithInternal(ctx, "__consumer_offsets")
	if err != nil || internal["__consumer_offsets"].Err != nil {
		t.Fatalf("listing __consumer_offsets: %v / %v", err, internal["__consumer_offsets"].Err)
	}
	offsetsPartition := offsetsPartitionFor(group, len(internal["__consumer_offsets"].Partitions))

	// ListTransactions: listed as Ongoing, and filtered by state and producer id.
	listed, err := adm.ListTransactions(ctx, nil, nil)
	if err != nil {
		t.Fatalf("ListTransactions: %v", err)
	}
	if l, ok := listed[txid]; !ok || l.State != "Ongoing" || l.ProducerID != pid {
		t.Fatalf("ListTransactions: %s listed %t as %+v; want Ongoing with producer %d", txid, ok, l, pid)
	}
	for _, filter := range []struct {
		pids   []int64
		states []string
		want   bool
	}{
		{nil, []string{"Ongoing"}, true},
		{nil, []string{"CompleteCommit", "CompleteAbort", "Empty"}, false},
		{[]int64{pid}, nil, true},
		{[]int64{pid + 1000}, nil, false},
		{[]int64{pid}, []string{"Ongoing"}, true},
	} {
		listed, err := adm.ListTransactions(ctx, filter.pids, filter.states)
		if err != nil {
			t.Fatalf("ListTransactions(producers %v, states %v): %v", filter.pids, filter.states, err)
		}
		if _, ok := listed[txid]; ok != filter.want {
			t.Fatalf("ListTransactions(producers %v, states %v) listed %s: %t, want %t (listed %v)", filter.pids, filter.states, txid, ok, filter.want, listed.TransactionalIDs())
		}
	}

	// DescribeTransactions: Ongoing, with its partitions, producer, timeout and start time.
	described, err := adm.DescribeTransactions(ctx, txid)
	if err != nil {
		t.Fatalf("DescribeTransactions: %v", err)
	}
	d := described[txid]
	if d.Err != nil || d.State != "Ongoing" || d.ProducerID != pid || d.ProducerEpoch != epoch || d.TimeoutMillis != int32(txnTimeout.Milliseconds()) {
		t.Fatalf("described %s: err %v state %q producer %d epoch %d timeout %d ms; want Ongoing, producer %d epoch %d, %d ms",
			txid, d.Err, d.State, d.ProducerID, d.ProducerEpoch, d.TimeoutMillis, pid, epoch, txnTimeout.Milliseconds())
	}
	if d.StartTimestamp < before || d.StartTimestamp > after {
		t.Fatalf("described %s: start timestamp %d, want within [%d, %d]", txid, d.StartTimestamp, before, after)
	}
	wantTopics := kadm.TopicsSet{}
	wantTopics.Add(topic, 0, 1)
	wantTopics.Add("__consumer_offsets", offsetsPartition)
	if got := d.Topics; !sameTopicsSet(got, wantTopics) {
		t.Fatalf("described %s: partitions %v, want %v", txid, got.Sorted(), wantTopics.Sorted())
	}
	unknown := UniqueName(t, "no-such-txid")
	described, err = adm.DescribeTransactions(ctx, unknown)
	if err != nil {
		t.Fatalf("DescribeTransactions(%s): %v", unknown, err)
	}
	if d := described[unknown]; !errors.Is(d.Err, kerr.TransactionalIDNotFound) {
		t.Fatalf("DescribeTransactions of an unknown id: %+v, want TRANSACTIONAL_ID_NOT_FOUND (105)", d)
	}

	// DescribeProducers: partition 0 has the plain producer (no transaction) and the
	// transactional one, whose transaction starts at offset 3; partition 1 only the latter.
	producers, err := adm.DescribeProducers(ctx, kadm.TopicsSet{topic: {0: {}, 1: {}}})
	if err != nil {
		t.Fatalf("DescribeProducers: %v", err)
	}
	type want struct {
		epoch               int16
		lastSequence        int32
		currentTxnStartOffs int64
	}
	checkProducers := func(what string, producers kadm.DescribedProducersTopics, wants map[int32]map[int64]want) {
		t.Helper()
		parts := producers[topic].Partitions
		if len(parts) != len(wants) {
			t.Fatalf("%s: DescribeProducers answered partitions %v, want %d", what, parts.Sorted(), len(wants))
		}
		for p, wantProducers := range wants {
			dp, ok := parts[p]
			if !ok || dp.Err != nil {
				t.Fatalf("%s: DescribeProducers partition %d: listed %t, err %v", what, p, ok, dp.Err)
			}
			if len(dp.ActiveProducers) != len(wantProducers) {
				t.Fatalf("%s: partition %d has active producers %+v, want ids %v", what, p, dp.ActiveProducers.Sorted(), slices.Sorted(maps.Keys(wantProducers)))
			}
			for id, w := range wantProducers {
				got, ok := dp.ActiveProducers[id]
				if !ok || got.ProducerEpoch != w.epoch || got.LastSequence != w.lastSequence || got.CurrentTxnStartOffset != w.currentTxnStartOffs {
					t.Fatalf("%s: partition %d producer %d: listed %t as %+v; want epoch %d, last sequence %d, current transaction start offset %d",
						what, p, id, ok, got, w.epoch, w.lastSequence, w.currentTxnStartOffs)
				}
				// The last timestamp is the newest batch's, a marker's included (the broker's clock).
				if now := time.Now().UnixMilli(); got.LastTimestamp < before-60_000 || got.LastTimestamp > now {
					t.Fatalf("%s: partition %d producer %d: last timestamp %d, want up to now (%d) and within the last minute", what, p, id, got.LastTimestamp, now)
				}
			}
		}
	}
	checkProducers("open transaction", producers, map[int32]map[int64]want{
		0: {plainID: {plainEpoch, 2, -1}, pid: {epoch, 3, 3}},
		1: {pid: {epoch, 1, 0}},
	})

	// ListOffsets: the end offsets include the open transaction, the read_committed ones (the
	// last stable offsets) stop at its first offset; a read_committed consumer sees only the
	// plain records.
	if end, lso := EndOffsets(t, adm, topic), committedEndOffsets(t, adm, topic); !maps.Equal(end, map[int32]int64{0: 7, 1: 2}) || !maps.Equal(lso, map[int32]int64{0: 3, 1: 0}) {
		t.Fatalf("with the transaction open: end offsets %v, last stable offsets %v; want {0:7 1:2} and {0:3 1:0}", end, lso)
	}
	if got := ConsumeN(t, b, topic, 3, kgo.FetchIsolationLevel(kgo.ReadCommitted())); len(got) != 3 || string(got[2].Value) != "plain 2" {
		t.Fatalf("read_committed with the transaction open: %d records, want the 3 plain ones", len(got))
	}

	// OffsetFetch: the pending transactional offset is invisible, and require_stable answers
	// UNSTABLE_OFFSET_COMMIT (88) for its partition.
	if got := offsetFetchStable(t, b, group, topic, []int32{0, 1}, false); !maps.Equal(got, map[int32][2]int64{0: {1, 0}, 1: {-1, 0}}) {
		t.Fatalf("OffsetFetch with the transaction open: %v, want partition 0 at 1 (the plain commit), partition 1 at -1, no errors", got)
	}
	if got := offsetFetchStable(t, b, group, topic, []int32{0, 1}, true); !maps.Equal(got, map[int32][2]int64{0: {-1, 88}, 1: {-1, 0}}) {
		t.Fatalf("OffsetFetch require_stable with the transaction open: %v, want partition 0 at -1 with UNSTABLE_OFFSET_COMMIT (88), partition 1 at -1", got)
	}

	// Commit: the state becomes CompleteCommit with no partitions, the transactional producer
	// has no transaction open, the offset and the records become visible.
	if err := producer.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("committing: %v", err)
	}
	waitEndOffsets(t, adm, topic, map[int32]int64{0: 8, 1: 3})
	WaitFor(t, markerWait, "the transaction to be described as CompleteCommit", func() bool {
		described, err := adm.DescribeTransactions(ctx, txid)
		if err != nil {
			t.Fatalf("DescribeTransactions: %v", err)
		}
		d = described[txid]
		return d.State == "CompleteCommit"
	})
	if d.Err != nil || d.ProducerID != pid || d.ProducerEpoch != epoch || len(d.Topics) != 0 {
		t.Fatalf("described %s after the commit: err %v producer %d epoch %d partitions %v; want producer %d epoch %d, no partitions", txid, d.Err, d.ProducerID, d.ProducerEpoch, d.Topics.Sorted(), pid, epoch)
	}
	listed, err = adm.ListTransactions(ctx, nil, []string{"CompleteCommit"})
	if err != nil {
		t.Fatalf("ListTransactions: %v", err)
	}
	if l, ok := listed[txid]; !ok || l.State != "CompleteCommit" || l.ProducerID != pid {
		t.Fatalf("ListTransactions(CompleteCommit) after the commit: %s listed %t as %+v", txid, ok, l)
	}
	producers, err = adm.DescribeProducers(ctx, kadm.TopicsSet{topic: {0: {}, 1: {}}})
	if err != nil {
		t.Fatalf("DescribeProducers: %v", err)
	}
	checkProducers("committed transaction", producers, map[int32]map[int64]want{
		0: {plainID: {plainEpoch, 2, -1}, pid: {epoch, 3, -1}},
		1: {pid: {epoch, 1, -1}},
	})
	WaitFor(t, markerWait, "the transactional offset to be committed", func() bool {
		return maps.Equal(offsetFetchStable(t, b, group, topic, []int32{0, 1}, true), map[int32][2]int64{0: {2, 0}, 1: {-1, 0}})
	})
	got := ConsumeN(t, b, topic, 9, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if len(got) != 9 {
		t.Fatalf("read_committed after the commit: %d records, want 9", len(got))
	}
	checkTransactional(t, "read_committed after the commit", slices.DeleteFunc(slices.Clone(got), func(r *kgo.Record) bool { return r.ProducerID == plainID }), pid, epoch)
}

// sameTopicsSet reports whether two topic sets hold the same partitions.
func sameTopicsSet(a, b kadm.TopicsSet) bool {
	if len(a) != len(b) {
		return false
	}
	for topic, ps := range a {
		if !maps.Equal(ps, b[topic]) {
			return false
		}
	}
	return true
}
