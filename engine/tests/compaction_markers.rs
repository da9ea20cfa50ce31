//! Goal: compaction removes transaction markers as Kafka's cleaner does (KIP-534): a marker
//! stays while a pass reads a batch of its transaction; the first pass that reads none stamps it
//! with a delete horizon (attribute bit 0x40, base timestamp = pass time + delete.retention.ms)
//! and drops an aborted transaction's `.txnindex` entry; a pass past the horizon removes it.
//! Meanwhile a read_committed consumer sees the same committed values at every stage, and a
//! restart (clean, or with the checkpoint gone so that recovery replays the whole log) reads the
//! same records and leaves no transaction open.
//!
//! Method: a real engine on a `ManualClock`, a compacted topic with 1 KiB segments and
//! `min.cleanable.dirty.ratio` 0. Appends happen while the clock stands still, so maintenance
//! (which sleeps on that clock) does not start passes among them. A pass over everything
//! appended is made to happen by appending a new version of the key "pass" and enough padding
//! to close its segment, then advancing the clock in maintenance-sized steps until the previous
//! version of "pass" is gone. (A tick left pending by the last step may start one more pass
//! while the padding is appended; every check below holds with or without it.) The log is read
//! back through the public API after each pass; read_committed reads are filtered as Kafka's
//! consumer filters a fetch (aborted producers from the response's list, until their abort
//! marker), so a stale `.txnindex` entry would show as a missing committed record.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sluice_engine::batch::builder::{BatchBuilder, BatchOptions, NewRecord};
use sluice_engine::batch::{BatchHeader, ControlType, EndTxnMarker};
use sluice_engine::clock::{Clock, ManualClock};
use sluice_engine::{AppendOptions, Engine, Offset, ReadBound, TopicPartition, block_on};

const HOUR_MS: i64 = 3_600_000;
const START_MS: i64 = 1_700_000_000_000;
const FAST: AppendOptions = AppendOptions { durable: false, leader_epoch: 0 };
/// Real time a pass is given to show once the clock moves.
const ACT_WITHIN: Duration = Duration::from_secs(30);
/// Kafka's delete horizon flag (batch attribute bit 6).
const DELETE_HORIZON_FLAG: i16 = 0x40;

/// One record as a consumer sees it: offset, key, value.
type Visible = (i64, Vec<u8>, Option<Vec<u8>>);

struct Harness {
    dir: tempfile::TempDir,
    clock: ManualClock,
    engine: Engine,
    partition: TopicPartition,
    passes: u32,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(START_MS);
        let engine = common::open_with_clock(dir.path(), &clock);
        let mut config = common::small_segments(1024);
        for (name, value) in [
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "0"),
            ("delete.retention.ms", &HOUR_MS.to_string()),
        ] {
            config.set(name, value).expect("valid");
        }
        block_on(engine.create_topic("markers", 1, config)).expect("create");
        let harness = Self { dir, clock, engine, partition: TopicPartition::new("markers", 0), passes: 0 };
        harness.append(keyed(b"pass", Some(b"0"), harness.now()));
        harness
    }

    fn now(&self) -> i64 {
        self.clock.unix_ms()
    }

    fn append(&self, batch: Vec<u8>) -> i64 {
        block_on(self.engine.append(&self.partition, batch, FAST)).expect("append").base_offset.0
    }

    /// Appends records of one key, 1.1 KiB in all: the segment holding what came before is
    /// closed after them (segments are 1 KiB).
    fn pad(&self) {
        for _ in 0..5 {
            self.append(keyed(b"pad", Some(&[b'p'; 200]), self.now()));
        }
    }

    /// Makes a compaction pass happen over everything appended so far.
    fn pass(&mut self) {
        self.passes += 1;
        let previous = (self.passes - 1).to_string().into_bytes();
        self.append(keyed(b"pass", Some(self.passes.to_string().as_bytes()), self.now()));
        self.pad();
        let deadline = Instant::now() + ACT_WITHIN;
        let has_previous = |harness: &Self| {
            harness.batches().iter().any(|(_, bytes)| {
                sluice_engine::batch::records(bytes)
                    .any(|record| record.key == Some(b"pass") && record.value == Some(&previous))
            })
        };
        while has_previous(self) {
            assert!(Instant::now() < deadline, "compaction pass {} never ran", self.passes);
            self.clock.advance(Duration::from_millis(100));
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every batch up to the high watermark.
    fn batches(&self) -> Vec<(BatchHeader, Vec<u8>)> {
        common::read_all(&self.engine, &self.partition, 0)
    }

    /// The marker of `producer_id`, if the log still holds it.
    fn marker_of(&self, producer_id: i64) -> Option<(BatchHeader, Vec<u8>)> {
        self.batches().into_iter().find(|(header, _)| header.is_control() && header.producer_id == producer_id)
    }

    /// The delete horizon of `producer_id`'s marker (`None` when it has none), or a panic when
    /// the marker is gone.
    fn horizon_of(&self, producer_id: i64) -> Option<i64> {
        let (header, _) = self.marker_of(producer_id).unwrap_or_else(|| panic!("the marker of {producer_id} is gone"));
        (header.attributes & DELETE_HORIZON_FLAG != 0).then_some(header.base_timestamp)
    }

    /// The producers of the aborted transactions a read_committed read from offset 0 reports.
    fn aborted_producers(&self) -> Vec<i64> {
        let read =
            block_on(self.engine.read(&self.partition, Offset(0), 1 << 20, ReadBound::LastStable)).expect("read");
        read.aborted.iter().map(|aborted| aborted.producer_id).collect()
    }

    fn reopen(&mut self) {
        self.engine.shutdown();
        self.engine = common::open_with_clock(self.dir.path(), &self.clock);
    }
}

fn keyed(key: &[u8], value: Option<&[u8]>, timestamp_ms: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(BatchOptions::default());
    builder.push(&NewRecord { timestamp_ms, key: Some(key), value, ..NewRecord::default() }).expect("push");
    builder.finish().expect("finish").to_vec()
}

/// A one-record transactional batch of `producer_id`.
fn transactional(producer_id: i64, sequence: i32, key: &[u8], value: &[u8], timestamp_ms: i64) -> Vec<u8> {
    let record = NewRecord { timestamp_ms, key: Some(key), value: Some(value), ..NewRecord::default() };
    common::transactional_batch(producer_id, sequence, &[record])
}

fn marker(producer_id: i64, epoch: i16, control_type: ControlType, timestamp_ms: i64) -> Vec<u8> {
    let marker = EndTxnMarker { control_type, coordinator_epoch: 0 };
    sluice_engine::batch::build_control_batch(producer_id, epoch, marker, timestamp_ms)
}

/// What a read_committed consumer sees, as Kafka's consumer filters each fetch: a producer of
/// the response's aborted list is aborted from the batch reaching its first offset until its
/// abort marker; its transactional batches meanwhile, and every control batch, are skipped.
fn read_committed(engine: &Engine, partition: &TopicPartition) -> Vec<Visible> {
    let mut visible = Vec::new();
    let mut offset = 0;
    loop {
        let read = block_on(engine.read(partition, Offset(offset), 64 * 1024, ReadBound::LastStable)).expect("read");
        if read.records.is_empty() {
            assert_eq!(offset, read.offsets.last_stable_offset.0, "an empty read happens only at the LSO");
            return visible;
        }
        let mut pending = read.aborted.clone();
        pending.sort_by_key(|aborted| std::cmp::Reverse(aborted.first_offset));
        let mut aborted_producers = BTreeSet::new();
        for (header, bytes) in common::split_batches(&read.records) {
            offset = header.last_offset() + 1;
            while pending.last().is_some_and(|aborted| aborted.first_offset.0 <= header.last_offset()) {
                aborted_producers.insert(pending.pop().expect("checked above").producer_id);
            }
            if header.is_control() {
                let parsed = sluice_engine::batch::parse_control_batch(&bytes).expect("a valid marker");
                if parsed.control_type == ControlType::Abort {
                    aborted_producers.remove(&header.producer_id);
                }
                continue;
            }
            if header.is_transactional() && aborted_producers.contains(&header.producer_id) {
                continue;
            }
            for record in sluice_engine::batch::records(&bytes) {
                let key = record.key.expect("keyed").to_vec();
                visible.push((record.offset, key, record.value.map(<[u8]>::to_vec)));
            }
        }
    }
}

/// The last value of each key the transactions wrote (the pass and pad keys left out).
fn latest_values(visible: &[Visible]) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    visible
        .iter()
        .filter(|(_, key, _)| key.as_slice() != b"pass" && key.as_slice() != b"pad")
        .map(|(_, key, value)| (key.clone(), value.clone()))
        .collect()
}

fn expected_latest() -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    [(&b"c"[..], &b"plain-c"[..]), (b"d", b"committed-d"), (b"e", b"plain-e")]
        .into_iter()
        .map(|(key, value)| (key.to_vec(), Some(value.to_vec())))
        .collect()
}

/// No aborted value is ever visible, and every key has its last committed value.
fn assert_committed_view(harness: &Harness, stage: &str) -> Vec<Visible> {
    let visible = read_committed(&harness.engine, &harness.partition);
    let aborted: Vec<&Visible> = visible
        .iter()
        .filter(|(_, _, value)| value.as_ref().is_some_and(|value| value.starts_with(b"aborted")))
        .collect();
    assert!(aborted.is_empty(), "{stage}: aborted records are visible: {aborted:?}");
    assert_eq!(latest_values(&visible), expected_latest(), "{stage}: the committed values");
    visible
}

/// The last stable offset is the high watermark and no producer has a transaction open.
fn assert_no_open_transaction(harness: &Harness, stage: &str) {
    let offsets = block_on(harness.engine.offsets(&harness.partition)).expect("offsets");
    assert_eq!(offsets.last_stable_offset, offsets.high_watermark, "{stage}: a transaction is open");
    let producers = block_on(harness.engine.producers(&harness.partition)).expect("producers");
    let open: Vec<i64> = producers
        .iter()
        .filter(|producer| producer.current_txn_start_offset >= 0)
        .map(|producer| producer.producer_id)
        .collect();
    assert!(open.is_empty(), "{stage}: producers {open:?} have a transaction open");
}

/// Producer 7 aborts; 8 commits a value a plain record supersedes; 9 commits a value that
/// stays; 10 commits a value a plain record supersedes with a marker of a bumped epoch
/// (transaction version 2), so its marker carries the epoch that fences it. The transactions'
/// batches and their markers are in different segments.
fn write_transactions(harness: &Harness) {
    let now = harness.now();
    harness.append(transactional(7, 0, b"a", b"aborted-a", now));
    harness.append(transactional(7, 1, b"b", b"aborted-b", now));
    harness.append(transactional(8, 0, b"c", b"committed-c", now));
    harness.append(transactional(9, 0, b"d", b"committed-d", now));
    harness.append(transactional(10, 0, b"e", b"committed-e", now));
    harness.pad();
    harness.append(marker(7, 0, ControlType::Abort, now));
    harness.append(marker(8, 0, ControlType::Commit, now));
    harness.append(marker(9, 0, ControlType::Commit, now));
    harness.append(marker(10, 1, ControlType::Commit, now));
    harness.append(keyed(b"c", Some(b"plain-c"), now));
    harness.append(keyed(b"e", Some(b"plain-e"), now));
}

#[test]
fn markers_of_empty_transactions_go_one_delete_retention_after_a_pass_finds_them_empty() {
    let mut harness = Harness::new();
    write_transactions(&harness);
    assert_committed_view(&harness, "before compaction");
    assert_eq!(harness.aborted_producers(), [7]);

    // Pass 1 reads every transaction's batches: the aborted ones go, and so do the committed
    // ones another record supersedes, but every marker stays as it was.
    harness.pass();
    let values: Vec<Option<Vec<u8>>> = harness
        .batches()
        .iter()
        .filter(|(header, _)| header.is_transactional() && !header.is_control())
        .flat_map(|(_, bytes)| sluice_engine::batch::records(bytes).map(|record| record.value.map(<[u8]>::to_vec)))
        .collect();
    assert_eq!(values, [Some(b"committed-d".to_vec())], "pass 1 leaves only the committed value that stays");
    for producer_id in [7, 8, 9, 10] {
        assert_eq!(harness.horizon_of(producer_id), None, "pass 1 read a batch of {producer_id}'s transaction");
    }
    assert_eq!(harness.aborted_producers(), [7], "the abort stays indexed while a pass reads its data");
    assert_committed_view(&harness, "after pass 1");

    // Pass 2 reads no batch of 7, 8 or 10: their markers get a horizon, and the abort leaves
    // the index; 9's transaction still has its batch.
    let before_ms = harness.now();
    harness.pass();
    let after_ms = harness.now();
    let horizons: Vec<i64> = [7, 8, 10].map(|producer_id| harness.horizon_of(producer_id).expect("a horizon")).to_vec();
    for horizon_ms in &horizons {
        assert!((before_ms + HOUR_MS..=after_ms + HOUR_MS).contains(horizon_ms), "horizon {horizon_ms}");
    }
    assert_eq!(harness.horizon_of(9), None, "a transaction with a batch left keeps its marker as it is");
    assert!(harness.aborted_producers().is_empty(), "an empty abort leaves the .txnindex");
    let (header, bytes) = harness.marker_of(7).expect("the abort marker");
    let parsed = sluice_engine::batch::parse_control_batch(&bytes).expect("still a valid marker");
    assert_eq!(parsed.control_type, ControlType::Abort);
    assert_eq!(header.max_timestamp, START_MS, "the marker keeps its timestamp");
    let stamped = harness.batches();
    assert_committed_view(&harness, "after pass 2");

    // Pass 3 comes before the horizon: the markers stay, their horizons unchanged.
    harness.pass();
    let markers = |batches: &[(BatchHeader, Vec<u8>)]| -> Vec<Vec<u8>> {
        batches.iter().filter(|(header, _)| header.is_control()).map(|(_, bytes)| bytes.clone()).collect()
    };
    assert_eq!(markers(&harness.batches()), markers(&stamped), "no marker changes before its horizon");
    assert_committed_view(&harness, "after pass 3");

    // Past the horizon, pass 4 removes the markers of 7 and 8. 10's marker holds the epoch that
    // fences producer 10 (still known, with no data batch remembered) and stays, as in Kafka.
    harness.clock.advance(Duration::from_millis(HOUR_MS as u64));
    harness.pass();
    assert!(harness.marker_of(7).is_none(), "the abort marker of an empty transaction goes past its horizon");
    assert!(harness.marker_of(8).is_none(), "the commit marker of an empty transaction goes past its horizon");
    assert_eq!(harness.horizon_of(9), None, "a marker whose transaction keeps a record stays");
    assert_eq!(harness.horizon_of(10), Some(horizons[2]), "the marker holding a producer's epoch stays");
    assert!(harness.aborted_producers().is_empty());
    let live = assert_committed_view(&harness, "after pass 4");
    let live_batches = harness.batches();
    assert_no_open_transaction(&harness, "after pass 4");

    // A restart reads back the same log, and so does one that replays the whole log.
    harness.reopen();
    assert_eq!(harness.batches(), live_batches, "after a restart");
    assert_eq!(assert_committed_view(&harness, "after a restart"), live);
    assert_no_open_transaction(&harness, "after a restart");
    harness.engine.shutdown();
    std::fs::remove_file(harness.dir.path().join("markers-0").join("partition.checkpoint"))
        .expect("remove the checkpoint");
    harness.engine = common::open_with_clock(harness.dir.path(), &harness.clock);
    assert_eq!(harness.batches(), live_batches, "after a full re-scan");
    assert_eq!(assert_committed_view(&harness, "after a full re-scan"), live);
    assert_no_open_transaction(&harness, "after a full re-scan");
    assert!(harness.aborted_producers().is_empty(), "recovery indexes no abort for a removed marker");
    harness.engine.shutdown();
}

#[test]
fn a_removed_abort_never_hides_the_producers_later_committed_transaction() {
    // The aborted data and its marker sit in one segment, with a committed transaction of the
    // same producer after them: a consumer given an abort entry whose marker is gone would skip
    // that committed record (its producer stays "aborted" until an abort marker that never
    // comes).
    let mut harness = Harness::new();
    let now = harness.now();
    harness.append(transactional(7, 0, b"a", b"aborted-a", now));
    harness.append(marker(7, 0, ControlType::Abort, now));
    harness.append(transactional(7, 1, b"d", b"committed-d", now));
    harness.append(marker(7, 0, ControlType::Commit, now));
    harness.append(keyed(b"c", Some(b"plain-c"), now));
    harness.append(keyed(b"e", Some(b"plain-e"), now));
    harness.pass();
    let markers = |harness: &Harness| -> Vec<(i64, Option<i64>)> {
        harness
            .batches()
            .iter()
            .filter(|(header, _)| header.is_control())
            .map(|(header, _)| {
                (header.base_offset, (header.attributes & DELETE_HORIZON_FLAG != 0).then_some(header.base_timestamp))
            })
            .collect()
    };
    assert_eq!(markers(&harness), [(2, None), (4, None)], "pass 1 read both transactions' data");
    assert_eq!(harness.aborted_producers(), [7]);
    assert_committed_view(&harness, "after pass 1");
    harness.pass();
    let after_pass_2 = markers(&harness);
    assert!(
        after_pass_2[0].1.is_some() && after_pass_2[1].1.is_none(),
        "only the empty abort is stamped: {after_pass_2:?}"
    );
    assert!(harness.aborted_producers().is_empty());
    assert_committed_view(&harness, "after pass 2");
    harness.clock.advance(Duration::from_millis(HOUR_MS as u64));
    harness.pass();
    assert_eq!(markers(&harness), [(4, None)], "the abort marker goes, the commit of the kept record stays");
    assert_committed_view(&harness, "after pass 3");
    assert_no_open_transaction(&harness, "after pass 3");
    harness.reopen();
    assert_committed_view(&harness, "after a restart");
    assert_no_open_transaction(&harness, "after a restart");
    harness.engine.shutdown();
}
