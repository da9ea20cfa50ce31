"""An exactly-once (consume-transform-produce) loop under kill -9, with a checker of what it left.

Goal: whatever crashes happen to the broker(s), a transactional application that reads its input
with a read_committed group consumer and writes its output and its input offsets in one
transaction produces every input once, and read_committed consumers never see more:
1. no aborted record is visible: each input id appears at most once in the read_committed output
   (a second copy is an aborted or a second committed transaction made visible), and no record
   of a transaction the client saw aborted (or abandoned before commit) is visible;
2. no committed record is lost: once the loop has consumed all its input, every input id appears
   exactly once, and every record of a transaction the client saw committed is at the offset its
   delivery report gave;
3. no transaction is torn: the records of one transaction are visible all or none, across output
   partitions; checked continuously by an observer (once its read_committed position on a
   partition is past a record of a transaction it saw another record of, it must have seen that
   record) and in the final read;
4. the group's committed offsets match the output: for each input partition, the committed
   offset is 1 + the largest input offset whose output is visible.

Method:
- the input topic is filled first (idempotent acks=all producer) with `records` records whose
  values are unique ids (`in-<id>`, id % partitions is the partition);
- `EosLoop` (a thread) runs a read_committed consumer subscribed to the input in a group and a
  transactional producer. Per transaction: poll a batch of 1..`batch_max` records, begin, produce
  one output record per input record (key: the id; value:
  `<id>|<input partition>|<input offset>|<txn seq>|<records in txn>|<index in txn>`, the output
  partitions spread over the transaction), send_offsets_to_transaction, commit. On an error that
  needs an abort it aborts, then seeks back to the group's committed offsets; on a fatal error
  (fenced, timed out by the coordinator, ...) or an abort that cannot complete it drops both
  clients and creates new ones with the same transactional id and group (init_transactions
  fences and ends what the old producer left). A rebalance during a batch drops the batch and
  rewinds. To exercise the abort and fencing paths whatever the kills do, about 10% of the
  transactions are aborted by choice (most after a flush, so that their records are in the log)
  and about 2% end in a simulated application crash (the producer is dropped mid-transaction and
  a new one with the same transactional id takes over); each transaction's API timeout is drawn
  from 1, 3 and 10 s, so that calls also time out while a broker is down. The client's view of
  each transaction is kept: committed, aborted, abandoned (dropped before commit_transaction was
  called: it can never commit), unknown (commit_transaction was called but its outcome never
  known), with every record's delivery report;
- `Observer` threads read the output from offset 0 with assign(), one read_committed and one
  read_uncommitted, all along, and check (1) and (3) as records arrive; any consumer error other
  than a broker being away (an OFFSET_OUT_OF_RANGE, say) is a violation too;
- a nemesis kills brokers with SIGKILL while the loop runs and restarts them (`run_single`: the
  one broker, `run_cluster`: any node of a three-node cluster, the transaction and group
  coordinators among them); each kill comes a random number of committed transactions after
  the previous restart, plus a random fraction of a second, so kills land in every phase of a
  transaction;
- after the last restart the loop finishes its input, the output's last stable offset must reach
  its high watermark (no transaction left hanging), and `verify` reads the whole output at both
  isolation levels and checks (1)-(4), plus that the observers saw what the final read sees.

The report (`Outcome.report()`, and `eos-report.txt` next to the broker data with every event,
stamped with the UTC time the brokers' logs use, and the brokers' warnings and transaction log
lines) names each violation with its ids, offsets and the client's view of the transactions
involved. SLUICE_EOS_DEBUG=1 turns on librdkafka's debug log of the loop's clients (stderr).
Used by tests/blackbox/test_transactions_crash.py; its SLUICE_EOS_KILLS sets a long run by hand.
"""

from __future__ import annotations

import datetime
import os
import random
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import (OFFSET_BEGINNING, Consumer, IsolationLevel, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

# Transaction timeout of the loop's producer: long enough that a broker restart (a JVM start for
# the reference Kafka) never times out a live transaction, short enough that a transaction left
# open by a bug is aborted by the coordinator within the final wait.
TXN_TIMEOUT_MS = 30_000
OP_TIMEOUT_S = 10.0            # one init/committed call
API_TIMEOUTS_S = (1.0, 3.0, 10.0, 10.0)  # send_offsets/commit/abort/flush, chosen per transaction
COMMIT_RETRY_S = 45.0          # retriable commit errors are retried this long, then abort
ABORT_RETRY_S = 45.0           # retriable abort errors are retried this long, then new clients
IDLE_RECHECK_S = 3.0           # no input for this long: compare the group's offsets with the input's end
PROGRESS_TIMEOUT_S = 60.0      # after a restart the loop must commit again within this
SETTLE_TIMEOUT_S = 90.0        # LSO reaching HW at the end: a txn timeout plus a cleanup interval
READ_TIMEOUT_S = 120.0
READ_COMMITTED = "read_committed"
READ_UNCOMMITTED = "read_uncommitted"
# Every client here. librdkafka's re-bootstrap (KIP-899, on by default since 2.x) decommissions
# the known brokers when none answers, which a single broker's restart always causes; a
# transactional producer then waits forever in send_offsets_to_transaction (its group coordinator
# request holds the decommissioned broker, past the call's timeout). Seen with librdkafka 2.16 and
# Sluice; the brokers' addresses never change here, so re-bootstrapping has nothing to find.
CLIENT_BASE = {"broker.address.family": "v4", "metadata.recovery.strategy": "none"}
# Errors a consumer reports while a broker is down or moving: not a problem of the data.
TRANSIENT_CONSUMER_ERRORS = {
    KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE, KafkaError._TIMED_OUT,
    KafkaError._PARTITION_EOF, KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.REQUEST_TIMED_OUT, KafkaError.NETWORK_EXCEPTION,
    KafkaError.FENCED_LEADER_EPOCH, KafkaError.UNKNOWN_LEADER_EPOCH, KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError._MAX_POLL_EXCEEDED, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION,
    KafkaError.REBALANCE_IN_PROGRESS, KafkaError.OFFSET_NOT_AVAILABLE,
}


def _debug(contexts: str) -> dict:
    """librdkafka debug logging of the loop's clients (on stderr) when SLUICE_EOS_DEBUG is set."""
    if not os.environ.get("SLUICE_EOS_DEBUG"):
        return {}
    return {"debug": contexts, "log_level": 7}


def error_name(err) -> str:
    if isinstance(err, KafkaError):
        return err.name() or str(err.code())
    return type(err).__name__


def describe_error(err) -> str:
    if isinstance(err, KafkaError):
        flags = [flag for flag, on in (("fatal", err.fatal()), ("retriable", err.retriable()),
                                       ("abortable", err.txn_requires_abort())) if on]
        return f"{err.name()} [{','.join(flags) or '-'}]: {err.str()}"
    return repr(err)


# ---------------------------------------------------------------- records


def output_value(ident: int, in_partition: int, in_offset: int, txn: int, count: int, index: int) -> bytes:
    return f"{ident}|{in_partition}|{in_offset}|{txn}|{count}|{index}".encode()


@dataclass(frozen=True)
class Out:
    """One output record as a consumer saw it."""

    partition: int
    offset: int
    ident: int
    in_partition: int
    in_offset: int
    txn: int
    count: int
    index: int

    @property
    def where(self) -> str:
        return f"out {self.partition}/{self.offset}"

    def brief(self) -> str:
        return (f"id {self.ident} at {self.where} (input {self.in_partition}/{self.in_offset}, "
                f"txn {self.txn} record {self.index + 1}/{self.count})")


def parse_output(partition: int, offset: int, key: bytes | None, value: bytes | None) -> Out | None:
    try:
        parts = [int(x) for x in (value or b"").decode().split("|")]
        if len(parts) != 6 or key != str(parts[0]).encode():
            return None
        return Out(partition, offset, *parts)
    except ValueError:
        return None


# ---------------------------------------------------------------- bookkeeping


class Events:
    """A timestamped log of what happened (kills, restarts, errors, new clients), for the report."""

    def __init__(self, log=print):
        self.started = time.monotonic()
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.log = log

    def now(self) -> float:
        return time.monotonic() - self.started

    def stamp(self) -> str:
        """Seconds since the start and the UTC wall clock (as in the brokers' logs)."""
        wall = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3]
        return f"{self.now():7.2f}s {wall}Z"

    def add(self, text: str, echo: bool = False) -> None:
        line = f"[{self.stamp()}] {text}"
        with self.lock:
            self.lines.append(line)
        if echo:
            self.log(line)


@dataclass
class Txn:
    """One transaction the loop attempted, as the client saw it."""

    seq: int
    records: list[tuple[int, int, int, int]]  # (id, input partition, input offset, output partition)
    offsets: dict[int, int]  # input partition -> offset sent with send_offsets_to_transaction
    outcome: str = "open"  # open, committed, aborted, abandoned, unknown
    step: str = "begin"  # the last step started: begin, produce, send_offsets, commit, abort
    commit_called: bool = False  # commit_transaction was called: the outcome may be a commit
    delivered: dict[int, tuple[int, int]] = field(default_factory=dict)  # index -> (out partition, offset)
    failed: dict[int, str] = field(default_factory=dict)  # index -> delivery error
    error: str = ""
    began_s: float = 0.0
    ended_s: float = 0.0

    def brief(self) -> str:
        spots = ", ".join(f"{p}/{o}" for _, (p, o) in sorted(self.delivered.items()))
        commit = ", commit_transaction called" if self.commit_called and self.outcome != "committed" else ""
        return (f"txn {self.seq} ({len(self.records)} records, {self.outcome} at step {self.step}{commit}, "
                f"{self.began_s:.2f}s-{self.ended_s:.2f}s{', ' + self.error if self.error else ''}; "
                f"delivered at {spots or 'nothing'})")


@dataclass
class LoopStats:
    committed: int = 0
    aborted: int = 0
    abandoned: int = 0
    unknown: int = 0
    records_committed: int = 0
    producers: int = 0
    consumers: int = 0
    rewinds: int = 0
    rebalances: int = 0
    dropped_batches: int = 0
    commit_retries: int = 0
    deliberate_aborts: int = 0
    crashes: int = 0
    errors: Counter = field(default_factory=Counter)


# ---------------------------------------------------------------- input


def fill_input(bootstrap: str, topic: str, records: int, partitions: int) -> tuple[dict[tuple[int, int], int],
                                                                                   dict[int, int]]:
    """Write ids 0..records-1 (id % partitions is the partition); returns {(partition, offset): id}
    from the delivery reports and each partition's end offset."""
    producer = Producer({"bootstrap.servers": bootstrap, **CLIENT_BASE, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 120_000,
                         "log_level": 0})
    at: dict[tuple[int, int], int] = {}
    failed: list[tuple[int, object]] = []

    def report(ident):
        def on_delivery(err, msg):
            if err is None:
                at[(msg.partition(), msg.offset())] = ident
            else:
                failed.append((ident, err))
        return on_delivery

    for ident in range(records):
        while True:
            try:
                producer.produce(topic, key=str(ident).encode(), value=f"in-{ident}".encode(),
                                 partition=ident % partitions, on_delivery=report(ident))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(120)
    assert left == 0 and not failed, f"filling the input: {left} undelivered, {len(failed)} failed {failed[:3]}"
    ends = {p: 0 for p in range(partitions)}
    for (p, offset) in at:
        ends[p] = max(ends[p], offset + 1)
    for p in range(partitions):
        assert sorted(o for q, o in at if q == p) == list(range(ends[p])), f"input partition {p} is not dense"
    return at, ends


# ---------------------------------------------------------------- the loop


class EosLoop:
    """The consume-transform-produce application, in a thread of its own (see the module doc)."""

    def __init__(self, bootstrap: str, input_topic: str, output_topic: str, input_partitions: int,
                 output_partitions: int, inputs: dict[tuple[int, int], int], input_ends: dict[int, int],
                 events: Events, seed: int, seconds_max: float, batch_max: int = 20, abort_ratio: float = 0.1,
                 crash_ratio: float = 0.02):
        self.bootstrap = bootstrap
        self.input_topic = input_topic
        self.output_topic = output_topic
        self.input_partitions = input_partitions
        self.output_partitions = output_partitions
        self.inputs = inputs
        self.input_ends = input_ends
        self.events = events
        self.rng = random.Random(seed)
        self.seconds_max = seconds_max
        self.batch_max = batch_max
        self.group = f"eos-group-{uuid.uuid4().hex[:8]}"
        self.txn_id = f"eos-txn-{uuid.uuid4().hex[:8]}"
        self.txns: dict[int, Txn] = {}
        self.stats = LoopStats()
        self.lock = threading.Lock()
        self.committed_positions: dict[int, int] = {}  # what the group is known to have committed
        self.input_problems: list[str] = []
        self.producer: Producer | None = None
        self.consumer: Consumer | None = None
        self.rebalanced = False
        self.in_call: tuple[str, float] | None = None
        self.abort_ratio = abort_ratio
        self.crash_ratio = crash_ratio
        self.timeout_s = OP_TIMEOUT_S
        self.stop = threading.Event()
        self.finished = threading.Event()
        self.done = False  # every input consumed and committed
        self.failure: str | None = None
        self.thread = threading.Thread(target=self._main, name="eos-loop", daemon=True)

    # ------------------------------------------------------------ public

    def start(self) -> None:
        self.thread.start()

    def blocked(self) -> str:
        """The client call the loop is in, and for how long (a call past its timeout is a hang)."""
        call = self.in_call
        if call is None:
            return "in no client call"
        return f"in {call[0]} for {time.monotonic() - call[1]:.1f}s"

    def _call(self, name: str, fn, *args):
        self.in_call = (name, time.monotonic())
        try:
            return fn(*args)
        finally:
            self.in_call = None

    def committed_count(self) -> int:
        return self.stats.committed

    def wait_committed(self, target: int, timeout_s: float) -> bool:
        """Until `target` transactions are committed in all, or the loop ends; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.stats.committed < target and not self.finished.is_set():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def join(self, timeout_s: float) -> None:
        self.finished.wait(timeout_s)

    # ------------------------------------------------------------ clients

    def _producer_conf(self) -> dict:
        return {"bootstrap.servers": self.bootstrap, **CLIENT_BASE,
                "transactional.id": self.txn_id, "transaction.timeout.ms": TXN_TIMEOUT_MS,
                "socket.timeout.ms": 10_000, "linger.ms": self.rng.choice([0, 2, 5]), "retry.backoff.ms": 20,
                "reconnect.backoff.max.ms": 500, "log_level": 0, **_debug("eos,broker,protocol,msg")}

    def _consumer_conf(self) -> dict:
        return {"bootstrap.servers": self.bootstrap, **CLIENT_BASE, "group.id": self.group,
                "isolation.level": READ_COMMITTED, "enable.auto.commit": False,
                "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
                "session.timeout.ms": 6_000, "heartbeat.interval.ms": 500, "max.poll.interval.ms": 60_000,
                "fetch.wait.max.ms": 100, "socket.timeout.ms": 10_000, "reconnect.backoff.max.ms": 500,
                "log_level": 0, **_debug("cgrp,broker,protocol,fetch")}

    def _new_producer(self, purge: bool = True) -> None:
        old, self.producer = self.producer, None
        if old is not None and purge:
            try:
                old.purge()
                old.flush(0)
            except Exception:  # noqa: BLE001 - a fatal producer may refuse: it is dropped anyway
                pass
            del old
        while True:
            self._check_time()
            producer = Producer(self._producer_conf())
            if self._init(producer):
                self.producer = producer
                self.stats.producers += 1
                self.events.add(f"producer #{self.stats.producers} ready ({self.txn_id})")
                return

    def _init(self, producer: Producer) -> bool:
        """init_transactions until it succeeds (True) or fails fatally (False: a new producer)."""
        while True:
            try:
                self._call("init_transactions", producer.init_transactions, OP_TIMEOUT_S)
                return True
            except KafkaException as e:
                err = e.args[0]
                self.stats.errors[f"init:{error_name(err)}"] += 1
                self.events.add(f"init_transactions failed: {describe_error(err)}")
                if err.fatal() or not err.retriable():
                    return False
                # Retriable (no coordinator yet, a timeout): the same call resumes it.
                self._check_time()
                time.sleep(0.2)

    def _new_consumer(self) -> None:
        old, self.consumer = self.consumer, None
        if old is not None:
            try:
                old.close()
            except Exception:  # noqa: BLE001 - closing a consumer that lost its broker
                pass
        consumer = Consumer(self._consumer_conf())
        consumer.subscribe([self.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_revoke)
        self.consumer = consumer
        self.rebalanced = True
        self.stats.consumers += 1
        self.events.add(f"consumer #{self.stats.consumers} subscribed ({self.group})")

    def _on_assign(self, consumer, partitions) -> None:
        self.rebalanced = True
        self.stats.rebalances += 1
        self.events.add(f"assigned {sorted(tp.partition for tp in partitions)}")

    def _on_revoke(self, consumer, partitions) -> None:
        self.rebalanced = True
        self.events.add(f"revoked {sorted(tp.partition for tp in partitions)}")

    # ------------------------------------------------------------ the loop

    def _check_time(self) -> None:
        if self.stop.is_set():
            raise _Stopped("stopped by the test")
        if self.events.now() > self.seconds_max:
            raise _Stopped(f"time bound of {self.seconds_max:.0f}s reached")

    def _main(self) -> None:
        try:
            self._new_producer()
            self._new_consumer()
            idle_since = time.monotonic()
            while True:
                self._check_time()
                batch = self._collect()
                if batch:
                    idle_since = time.monotonic()
                    self._transact(batch)
                    if self._all_committed():
                        self.done = True
                        return
                elif time.monotonic() - idle_since > IDLE_RECHECK_S:
                    idle_since = time.monotonic()
                    self._rewind("idle")
                    if self._all_committed():
                        self.done = True
                        return
        except _Stopped as why:
            self.events.add(f"loop ended: {why}", echo=True)
            self._end_open_txn()
        except BaseException:  # noqa: BLE001 - reported by the checker
            self.failure = traceback.format_exc()
            self.events.add(f"loop crashed: {self.failure}", echo=True)
        finally:
            for client in (self.consumer,):
                try:
                    if client is not None:
                        client.close()
                except Exception:  # noqa: BLE001
                    pass
            self.finished.set()

    def _end_open_txn(self) -> None:
        """Stopped early: abort what is open (best effort), so no transaction is left hanging."""
        txn = self.txns.get(len(self.txns) - 1)
        if txn is None or txn.outcome != "open" or self.producer is None:
            return
        try:
            self.producer.abort_transaction(OP_TIMEOUT_S)
            txn.outcome = "aborted"
        except KafkaException as e:
            txn.outcome = "unknown" if txn.commit_called else "abandoned"
            self.events.add(f"abort of txn {txn.seq} at the stop: {describe_error(e.args[0])}")
        txn.ended_s = self.events.now()

    def _all_committed(self) -> bool:
        return all(self.committed_positions.get(p, 0) >= end for p, end in self.input_ends.items())

    def _collect(self) -> list:
        """Up to a random number of input records, all from one assignment."""
        target = self.rng.randint(1, self.batch_max)
        batch: list = []
        deadline = time.monotonic() + 0.5
        self.rebalanced = False
        while len(batch) < target and time.monotonic() < deadline:
            msg = self._call("poll", self.consumer.poll, 0.1)
            if self.rebalanced:
                # The assignment changed in this poll: what was read before it may be read again
                # from the committed offsets; what this poll returned comes after it.
                if batch:
                    self.stats.dropped_batches += 1
                batch = []
                self.rebalanced = False
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                self.stats.errors[f"consume:{error_name(err)}"] += 1
                if err.fatal():
                    self.events.add(f"consumer fatal error: {describe_error(err)}", echo=True)
                    self._new_consumer()
                    return []
                if err.code() not in TRANSIENT_CONSUMER_ERRORS:
                    self.events.add(f"consumer error: {describe_error(err)}")
                continue
            batch.append(msg)
        return batch

    def _transact(self, batch: list) -> None:
        seq = len(self.txns)
        records = []
        offsets: dict[int, int] = {}
        for index, msg in enumerate(batch):
            p, o = msg.partition(), msg.offset()
            ident = self.inputs.get((p, o))
            if ident is None or msg.value() != f"in-{ident}".encode():
                self.input_problems.append(f"input {p}/{o} read as {msg.value()!r}, written as id {ident}")
                ident = -1 if ident is None else ident
            records.append((ident, p, o, (seq + index) % self.output_partitions))
            offsets[p] = max(offsets.get(p, 0), o + 1)
        txn = Txn(seq, records, offsets, began_s=self.events.now())
        # A short timeout now and then, so that calls also fail while a broker is down.
        self.timeout_s = self.rng.choice(API_TIMEOUTS_S)
        with self.lock:
            self.txns[seq] = txn
        producer = self.producer
        try:
            txn.step = "begin"
            producer.begin_transaction()
            txn.step = "produce"
            for index, (ident, p, o, out_p) in enumerate(records):
                value = output_value(ident, p, o, seq, len(records), index)
                while True:
                    try:
                        producer.produce(self.output_topic, key=str(ident).encode(), value=value, partition=out_p,
                                         on_delivery=self._report(txn, index))
                        break
                    except BufferError:
                        producer.poll(0.05)
            if self.rng.random() < self.crash_ratio:
                self._crash(txn)
                return
            txn.step = "send_offsets"
            self._call("send_offsets_to_transaction", producer.send_offsets_to_transaction,
                       [TopicPartition(self.input_topic, p, o) for p, o in sorted(offsets.items())],
                       self.consumer.consumer_group_metadata(), self.timeout_s)
            if self.rng.random() < self.abort_ratio:
                # The application changes its mind: its records (flushed first, most times, so
                # that they are in the log) and its offsets must vanish.
                txn.step = "flush"
                if self.rng.random() < 0.7:
                    self._call("flush", producer.flush, self.timeout_s)
                txn.error = "aborted by the application"
                self.stats.deliberate_aborts += 1
                self._give_up(txn, may_abort=True)
                return
            txn.step = "commit"
            txn.commit_called = True
            self._commit(producer)
        except KafkaException as e:
            self._failed(txn, e.args[0])
            return
        txn.outcome = "committed"
        txn.ended_s = self.events.now()
        self.stats.committed += 1
        self.stats.records_committed += len(records)
        for p, o in offsets.items():
            self.committed_positions[p] = max(self.committed_positions.get(p, 0), o)

    def _crash(self, txn: Txn) -> None:
        """The application dies in the middle of a transaction (its records sent, most times) and
        comes back: a new producer with the same transactional id, whose init_transactions must
        fence the old one and abort what it left open; a new consumer reading from the group's
        committed offsets."""
        txn.step = "crash"
        if self.rng.random() < 0.7:
            self._call("flush", self.producer.flush, self.timeout_s)
        txn.outcome = "abandoned"
        txn.error = "the application crashed"
        txn.ended_s = self.events.now()
        self.stats.abandoned += 1
        self.stats.crashes += 1
        self.events.add(f"txn {txn.seq}: application crash, new producer and consumer")
        self._new_producer(purge=False)
        self._new_consumer()

    def _report(self, txn: Txn, index: int):
        def on_delivery(err, msg):
            if err is None:
                txn.delivered[index] = (msg.partition(), msg.offset())
            else:
                txn.failed[index] = error_name(err)
        return on_delivery

    def _commit(self, producer: Producer) -> None:
        deadline = time.monotonic() + COMMIT_RETRY_S
        while True:
            try:
                self._call("commit_transaction", producer.commit_transaction, self.timeout_s)
                return
            except KafkaException as e:
                err = e.args[0]
                if err.fatal() or err.txn_requires_abort() or not err.retriable() or time.monotonic() > deadline:
                    raise
                self.stats.commit_retries += 1
                self.stats.errors[f"commit:{error_name(err)}"] += 1
                self.events.add(f"commit retried: {describe_error(err)}")
                self._check_time()

    def _failed(self, txn: Txn, err: KafkaError) -> None:
        txn.error = f"{txn.step}: {describe_error(err)}"
        self.stats.errors[f"{txn.step}:{error_name(err)}"] += 1
        self.events.add(f"txn {txn.seq} failed at {txn.error}")
        self._give_up(txn, may_abort=not err.fatal())

    def _give_up(self, txn: Txn, may_abort: bool) -> None:
        """Abort and rewind; when that is impossible, new clients (the transaction is then
        abandoned, or of unknown outcome when commit_transaction had been called)."""
        if may_abort and self._abort(txn):
            txn.outcome = "aborted"
            txn.ended_s = self.events.now()
            self.stats.aborted += 1
            self._rewind(f"after aborting txn {txn.seq}")
            return
        # Fatal (fenced, timed out by the coordinator, ...) or an abort that could not complete:
        # new clients, as an EOS application does. init_transactions ends whatever is left open.
        if txn.commit_called:
            txn.outcome = "unknown"
            self.stats.unknown += 1
        else:
            txn.outcome = "abandoned"  # commit_transaction was never called: it cannot commit
            self.stats.abandoned += 1
        txn.ended_s = self.events.now()
        self.events.add(f"txn {txn.seq} {txn.outcome}: new producer and consumer", echo=True)
        self._new_producer()
        self._new_consumer()

    def _abort(self, txn: Txn) -> bool:
        txn.step = "abort"
        deadline = time.monotonic() + ABORT_RETRY_S
        while True:
            try:
                self._call("abort_transaction", self.producer.abort_transaction, self.timeout_s)
                return True
            except KafkaException as e:
                err = e.args[0]
                self.stats.errors[f"abort:{error_name(err)}"] += 1
                self.events.add(f"abort of txn {txn.seq}: {describe_error(err)}")
                if err.fatal() or not err.retriable() or time.monotonic() > deadline:
                    return False
                self._check_time()

    def _rewind(self, why: str) -> None:
        """Seek every assigned partition back to the group's committed offset."""
        self.stats.rewinds += 1
        deadline = time.monotonic() + 60
        while True:
            self._check_time()
            assignment = self.consumer.assignment()
            partitions = [TopicPartition(self.input_topic, p) for p in range(self.input_partitions)]
            try:
                committed = self._call("committed", self.consumer.committed, partitions, OP_TIMEOUT_S)
            except KafkaException as e:
                self.stats.errors[f"committed:{error_name(e.args[0])}"] += 1
                if time.monotonic() > deadline:
                    self.events.add(f"rewind ({why}): committed offsets unreadable for 60s: new consumer", echo=True)
                    self._new_consumer()
                    return
                time.sleep(0.2)
                continue
            if any(tp.error is not None for tp in committed):
                time.sleep(0.2)
                continue
            for tp in committed:
                if tp.offset >= 0:
                    self.committed_positions[tp.partition] = tp.offset
            assigned = {tp.partition for tp in assignment}
            try:
                for tp in committed:
                    if tp.partition in assigned:
                        self.consumer.seek(TopicPartition(self.input_topic, tp.partition,
                                                          tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
            except KafkaException as e:
                # A partition assigned a moment ago may not take a seek yet: a new consumer
                # starts from the committed offsets anyway.
                self.events.add(f"rewind ({why}): seek failed ({describe_error(e.args[0])}): new consumer")
                self._new_consumer()
                return
            self.events.add(f"rewound ({why}) to {{{', '.join(f'{tp.partition}: {tp.offset}' for tp in committed)}}}")
            return


class _Stopped(Exception):
    pass


# ---------------------------------------------------------------- observers


class Observer:
    """Reads every output partition from offset 0 with assign() at one isolation level, all along."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, isolation: str, loop: EosLoop, events: Events):
        self.topic = topic
        self.partitions = partitions
        self.isolation = isolation
        self.loop = loop
        self.events = events
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, **CLIENT_BASE,
            "group.id": f"eos-observer-{uuid.uuid4().hex[:8]}", "isolation.level": isolation,
            "enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "error",
            "fetch.wait.max.ms": 100, "reconnect.backoff.max.ms": 500, "log_level": 0})
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.seen: dict[tuple[int, int], Out] = {}
        self.by_id: dict[int, list[Out]] = defaultdict(list)
        self.by_txn: dict[int, dict[int, Out]] = defaultdict(dict)
        self.last_offset = {p: -1 for p in range(partitions)}
        self.positions: dict[int, int] = {}
        self.violations: dict[str, list[str]] = defaultdict(list)
        self.errors: Counter = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"eos-observer-{isolation}", daemon=True)
        self.reported_torn: set[int] = set()
        self.reported_aborted: set[int] = set()

    def start(self) -> None:
        self.thread.start()

    def _violation(self, kind: str, text: str) -> None:
        line = f"[{self.events.stamp()}] {self.isolation} observer: {text}"
        self.violations[kind].append(line)
        self.events.add(f"VIOLATION {kind}: {line}", echo=len(self.violations[kind]) <= 3)

    def _run(self) -> None:
        last_check = time.monotonic()
        try:
            while not self.stop.is_set():
                for msg in self.consumer.consume(num_messages=1_000, timeout=0.2):
                    err = msg.error()
                    if err is not None:
                        self.errors[error_name(err)] += 1
                        if err.code() not in TRANSIENT_CONSUMER_ERRORS:
                            p = msg.partition()
                            self._violation("observer", f"consumer error on {self.topic}/{p} at offset "
                                                        f"{self.last_offset.get(p, -1) + 1}: {describe_error(err)}")
                            if err.code() == KafkaError._AUTO_OFFSET_RESET and p in self.last_offset:
                                # Fetch again from where it was, to go on checking what follows
                                # (a seek is refused in this state; a new assignment is not).
                                time.sleep(0.5)
                                self.consumer.assign([TopicPartition(self.topic, q, self.last_offset[q] + 1)
                                                      for q in range(self.partitions)])
                        continue
                    self._take(msg)
                # Only this thread calls the consumer: position() from another thread while
                # consume() waits was seen to block both.
                self.positions = {tp.partition: tp.offset for tp in self.consumer.position(
                    [TopicPartition(self.topic, p) for p in range(self.partitions)])}
                if self.isolation == READ_COMMITTED and time.monotonic() - last_check > 1.0:
                    self.check_committed_view()
                    last_check = time.monotonic()
        except BaseException:  # noqa: BLE001
            self._violation("observer", f"crashed: {traceback.format_exc()}")

    def _take(self, msg) -> None:
        p, o = msg.partition(), msg.offset()
        out = parse_output(p, o, msg.key(), msg.value())
        if out is None:
            self._violation("garbage", f"{p}/{o} holds key {msg.key()!r} value {msg.value()!r}")
            return
        if o <= self.last_offset[p]:
            before = self.seen.get((p, o))
            if before is not None and before != out:
                self._violation("changed", f"{p}/{o} read again with other content: {before.brief()} "
                                           f"then {out.brief()}")
            else:
                self.errors["offset-read-again"] += 1
            return
        self.last_offset[p] = o
        self.seen[(p, o)] = out
        self.by_txn[out.txn][out.index] = out
        if self.isolation != READ_COMMITTED:
            return
        others = self.by_id[out.ident]
        others.append(out)
        if len(others) > 1:
            txns = "; ".join(self._txn_brief(x.txn) for x in others)
            self._violation("duplicate", f"id {out.ident} visible {len(others)} times: "
                                         f"{', '.join(x.brief() for x in others)}; client view: {txns}")

    def _txn_brief(self, seq: int) -> str:
        txn = self.loop.txns.get(seq)
        return txn.brief() if txn is not None else f"txn {seq} (unknown to the loop)"

    def check_committed_view(self) -> None:
        """(1) nothing of an aborted or abandoned transaction, (3) nothing torn: once past a
        record (a later record of its partition was returned), a read_committed consumer must have
        returned it if it returned any record of the same transaction."""
        for seq, seen in list(self.by_txn.items()):
            txn = self.loop.txns.get(seq)
            if txn is None:
                continue
            if txn.outcome in ("aborted", "abandoned") and seq not in self.reported_aborted:
                self.reported_aborted.add(seq)
                self._violation("aborted-visible", f"{len(seen)} record(s) of {txn.outcome} txn {seq} visible: "
                                                   f"{', '.join(x.brief() for x in seen.values())}; {txn.brief()}")
            count = next(iter(seen.values())).count
            if len(seen) == count or seq in self.reported_torn:
                continue
            passed = [index for index, (p, o) in list(txn.delivered.items())
                      if index not in seen and self.last_offset.get(p, -1) > o]
            if passed:
                self.reported_torn.add(seq)
                skipped = ", ".join(f"{i} at out {txn.delivered[i][0]}/{txn.delivered[i][1]}" for i in passed)
                self._violation("torn", f"txn {seq}: {len(seen)} of {count} records visible "
                                        f"({', '.join(x.where for x in seen.values())}), but records {skipped} "
                                        f"were passed over; {txn.brief()}")

    def wait_caught_up(self, ends: dict[int, int], timeout_s: float) -> str | None:
        """Until the observer's position on every partition reaches `ends`; None, or what is amiss."""
        deadline = time.monotonic() + timeout_s
        while True:
            positions = dict(self.positions)
            if all(positions.get(p, -1) >= end for p, end in ends.items()):
                return None
            if time.monotonic() > deadline:
                return (f"the {self.isolation} observer's positions {positions} did not reach {ends} within "
                        f"{timeout_s:.0f}s (last offsets returned {self.last_offset})")
            time.sleep(0.1)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        if not self.thread.is_alive():
            self.consumer.close()


# ---------------------------------------------------------------- reading and offsets


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **CLIENT_BASE, "socket.timeout.ms": 10_000,
                        "reconnect.backoff.max.ms": 500, "log_level": 0})


def end_offsets(admin: AdminClient, topic: str, partitions: int, isolation: IsolationLevel) -> dict[int, int]:
    specs = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
    futures = admin.list_offsets(specs, isolation_level=isolation, request_timeout=15)
    return {tp.partition: future.result(timeout=20).offset for tp, future in futures.items()}


def settle(admin: AdminClient, topic: str, partitions: int, timeout_s: float) -> tuple[dict, dict, float]:
    """Wait until the last stable offset of every partition reaches its high watermark (every
    transaction ended, its markers written); returns (LSOs, HWs, seconds waited)."""
    start = time.monotonic()
    lso = hw = None
    while True:
        try:
            hw = end_offsets(admin, topic, partitions, IsolationLevel.READ_UNCOMMITTED)
            lso = end_offsets(admin, topic, partitions, IsolationLevel.READ_COMMITTED)
            if lso == hw:
                return lso, hw, time.monotonic() - start
        except Exception:  # noqa: BLE001 - stale leaders after restarts: refresh and retry
            try:
                admin.list_topics(topic, timeout=10)
            except Exception:  # noqa: BLE001
                pass
        if time.monotonic() - start > timeout_s:
            return lso or {}, hw or {}, time.monotonic() - start
        time.sleep(0.2)


def read_output(bootstrap: str, topic: str, partitions: int, isolation: str, ends: dict[int, int],
                timeout_s: float = READ_TIMEOUT_S) -> tuple[dict[tuple[int, int], bytes | None], list[str]]:
    """Every record below `ends` at one isolation level, as {(partition, offset): (key, value)},
    and problems met (a timeout, consumer errors)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, **CLIENT_BASE,
                         "group.id": f"eos-reader-{uuid.uuid4().hex[:8]}", "isolation.level": isolation,
                         "enable.auto.commit": False, "enable.auto.offset.store": False,
                         "auto.offset.reset": "error", "fetch.wait.max.ms": 100, "log_level": 0})
    got: dict[tuple[int, int], tuple] = {}
    problems: list[str] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        deadline = time.monotonic() + timeout_s
        while True:
            positions = {tp.partition: tp.offset for tp in
                         consumer.position([TopicPartition(topic, p) for p in range(partitions)])}
            if all(positions.get(p, -1) >= end for p, end in ends.items() if end > 0):
                break
            if time.monotonic() > deadline:
                problems.append(f"{isolation} read: positions {positions} did not reach {ends} in {timeout_s}s")
                break
            for msg in consumer.consume(num_messages=5_000, timeout=0.2):
                err = msg.error()
                if err is not None:
                    if err.code() not in TRANSIENT_CONSUMER_ERRORS:
                        problems.append(f"{isolation} read: {describe_error(err)}")
                    continue
                if msg.offset() < ends.get(msg.partition(), 0):
                    got[(msg.partition(), msg.offset())] = (msg.key(), msg.value())
    finally:
        consumer.close()
    return got, problems


def group_offsets(bootstrap: str, group: str, topic: str, partitions: int,
                  timeout_s: float = 60) -> dict[int, int] | None:
    """The group's committed offsets (stable: read_committed asks with require_stable), -1 for
    none; None when they cannot be read."""
    consumer = Consumer({"bootstrap.servers": bootstrap, **CLIENT_BASE, "group.id": group,
                         "isolation.level": READ_COMMITTED, "enable.auto.commit": False, "log_level": 0})
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
                if not any(tp.error is not None for tp in found):
                    return {tp.partition: max(tp.offset, -1) for tp in found}
            except KafkaException:
                pass
            if time.monotonic() > deadline:
                return None
            time.sleep(0.3)
    finally:
        consumer.close()


# ---------------------------------------------------------------- the whole run


@dataclass
class Outcome:
    seed: int = 0
    records: int = 0
    kills: list[str] = field(default_factory=list)
    seconds: float = 0.0
    loop: LoopStats = field(default_factory=LoopStats)
    visible: int = 0
    aborted_records_seen: int = 0  # records read_uncommitted saw that read_committed did not
    settle_s: float = 0.0
    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    report_path: Path | None = None
    events: list[str] = field(default_factory=list)
    logs: str = ""

    def ok(self) -> bool:
        return not any(self.violations.values())

    def summary(self) -> str:
        s = self.loop
        return (f"{self.records} input records, {len(self.kills)} kills in {self.seconds:.1f}s; "
                f"transactions: {s.committed} committed ({s.records_committed} records), {s.aborted} aborted "
                f"({s.deliberate_aborts} by choice), "
                f"{s.abandoned} abandoned ({s.crashes} by an application crash), {s.unknown} of unknown outcome; "
                f"{s.producers} producers, "
                f"{s.consumers} consumers, {s.rewinds} rewinds, {s.rebalances} assignments, "
                f"{s.dropped_batches} batches dropped at a rebalance, {s.commit_retries} commit retries; "
                f"{self.visible} records visible to read_committed, {self.aborted_records_seen} aborted ones "
                f"seen by read_uncommitted only; LSO reached HW {self.settle_s:.1f}s after the loop")

    def report(self, limit: int = 12) -> str:
        lines = [f"exactly-once check (seed {self.seed}): {self.summary()}"]
        if self.report_path is not None:
            lines.append(f"full report: {self.report_path}")
        for kind, found in self.violations.items():
            if found:
                lines.append(f"--- {kind}: {len(found)}")
                lines += [f"  {line}" for line in found[:limit]]
        lines.append("--- kills")
        lines += [f"  {k}" for k in self.kills]
        lines.append(f"--- loop errors: {dict(self.loop.errors)}")
        return "\n".join(lines)

    def full_report(self) -> str:
        return "\n".join([self.report(limit=10_000), "--- events", *self.events, "--- broker logs", self.logs])


class Run:
    """One exactly-once run: topics, input, the loop and observers; the nemesis is the caller's."""

    def __init__(self, bootstrap: str, seed: int, records: int, input_partitions: int = 3,
                 output_partitions: int = 3, replication_factor: int = 1, seconds_max: float = 600,
                 log=print):
        self.bootstrap = bootstrap
        self.seed = seed
        self.rng = random.Random(seed)
        self.records = records
        self.input_partitions = input_partitions
        self.output_partitions = output_partitions
        self.events = Events(log)
        self.log = log
        self.outcome = Outcome(seed=seed, records=records)
        suffix = uuid.uuid4().hex[:8]
        self.input_topic = f"eos-in-{suffix}"
        self.output_topic = f"eos-out-{suffix}"
        self.admin = admin_client(bootstrap)
        config = {"min.insync.replicas": "2"} if replication_factor > 1 else {}
        futures = self.admin.create_topics(
            [NewTopic(self.input_topic, input_partitions, replication_factor, config=config),
             NewTopic(self.output_topic, output_partitions, replication_factor, config=config)],
            request_timeout=30, operation_timeout=30)
        for future in futures.values():
            future.result(timeout=60)
        self._wait_served()
        self.inputs, self.input_ends = fill_input(bootstrap, self.input_topic, records, input_partitions)
        self.loop = EosLoop(bootstrap, self.input_topic, self.output_topic, input_partitions, output_partitions,
                            self.inputs, self.input_ends, self.events, seed=self.rng.randrange(1 << 30),
                            seconds_max=seconds_max)
        self.observers = [Observer(bootstrap, self.output_topic, output_partitions, isolation, self.loop, self.events)
                          for isolation in (READ_COMMITTED, READ_UNCOMMITTED)]
        self.events.add(f"input {self.input_topic} ({records} records over {input_partitions} partitions), "
                        f"output {self.output_topic} ({output_partitions} partitions), group {self.loop.group}, "
                        f"transactional id {self.loop.txn_id}", echo=True)

    def _wait_served(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                end_offsets(self.admin, self.input_topic, self.input_partitions, IsolationLevel.READ_UNCOMMITTED)
                end_offsets(self.admin, self.output_topic, self.output_partitions, IsolationLevel.READ_UNCOMMITTED)
                return
            except Exception:  # noqa: BLE001 - a new topic's leaders serve a moment after Metadata names them
                if time.monotonic() > deadline:
                    raise
                # librdkafka's list_offsets uses the leaders it knows and does not ask for them
                # again: a Metadata request does (it knew the topic before it had leaders).
                for topic in (self.input_topic, self.output_topic):
                    try:
                        self.admin.list_topics(topic, timeout=10)
                    except Exception:  # noqa: BLE001 - retried until the deadline
                        pass
                time.sleep(0.1)

    def start(self) -> None:
        self.started = time.monotonic()
        for observer in self.observers:
            observer.start()
        self.loop.start()

    def wait_progress(self, more: int, what: str) -> bool:
        """Wait for `more` transactions committed after now; records a liveness violation if not."""
        target = self.loop.committed_count() + more
        if self.loop.wait_committed(target, PROGRESS_TIMEOUT_S):
            return True
        if not self.loop.finished.is_set():
            self.outcome.violations["liveness"].append(
                f"[{self.events.stamp()}] {what}: no {more} transaction(s) committed within "
                f"{PROGRESS_TIMEOUT_S:.0f}s (committed {self.loop.committed_count()}, target {target}); the loop is "
                f"{self.loop.blocked()}; loop errors {dict(self.loop.stats.errors.most_common(8))}")
        return False

    def abandon(self) -> None:
        """The nemesis failed (a broker did not come back): stop the loop and the observers."""
        self.loop.stop.set()
        self.loop.join(30)
        for observer in self.observers:
            observer.stop.set()

    def loop_timeout(self, seconds_max: float) -> float:
        """How long the loop may still take to finish its input: what is left of its bound, or 30 s
        once it has already been seen stuck."""
        if self.outcome.violations["liveness"]:
            return 30.0
        return max(30.0, seconds_max - self.events.now())

    def killed(self, text: str) -> None:
        self.outcome.kills.append(f"[{self.events.stamp()}] {text}")
        self.events.add(text, echo=True)

    def finish(self, loop_timeout_s: float, log_sources: list[tuple[str, Path]]) -> Outcome:
        """Let the loop end its input, then check everything (see the module doc)."""
        outcome = self.outcome
        self.loop.join(loop_timeout_s)
        if not self.loop.finished.is_set():
            self.loop.stop.set()
            self.loop.join(15)
        if not self.loop.finished.is_set():
            outcome.violations["liveness"].append(f"the loop did not stop: it is {self.loop.blocked()}")
        if self.loop.failure:
            outcome.violations["loop"].append(self.loop.failure)
        if not self.loop.done:
            outcome.violations["liveness"].append(
                f"the loop did not commit all its input: committed offsets known {self.loop.committed_positions}, "
                f"input ends {self.input_ends}")
        outcome.violations["input"] += self.loop.input_problems
        outcome.loop = self.loop.stats
        lso, hw, outcome.settle_s = settle(self.admin, self.output_topic, self.output_partitions, SETTLE_TIMEOUT_S)
        if not hw or lso != hw:
            outcome.violations["hanging"].append(
                f"the output's last stable offsets {lso} did not reach the high watermarks {hw} within "
                f"{SETTLE_TIMEOUT_S:.0f}s of the loop's end: a transaction was left open")
        ends = hw or {}
        committed_ends = lso or {}
        for observer in self.observers:
            target = committed_ends if observer.isolation == READ_COMMITTED else ends
            behind = observer.wait_caught_up(target, 30) if target else None
            if behind:
                outcome.violations["observer"].append(behind)
            observer.close()
            if observer.isolation == READ_COMMITTED:
                observer.check_committed_view()
            for kind, lines in observer.violations.items():
                outcome.violations[kind] += lines
        rc_raw, problems = read_output(self.bootstrap, self.output_topic, self.output_partitions, READ_COMMITTED,
                                       committed_ends)
        ru_raw, more = read_output(self.bootstrap, self.output_topic, self.output_partitions, READ_UNCOMMITTED, ends)
        outcome.violations["read"] += problems + more
        offsets = group_offsets(self.bootstrap, self.loop.group, self.input_topic, self.input_partitions)
        if offsets is None:
            outcome.violations["offsets"].append(f"the committed offsets of {self.loop.group} were not readable")
        verify(outcome, self.inputs, self.input_ends, self.loop.txns, rc_raw, ru_raw, offsets,
               self.observers[0], committed_ends, self.events)
        outcome.seconds = time.monotonic() - self.started
        outcome.events = list(self.events.lines)
        outcome.logs = broker_log_excerpts(log_sources)
        self.log(outcome.summary())
        return outcome


def verify(outcome: Outcome, inputs: dict[tuple[int, int], int], input_ends: dict[int, int], txns: dict[int, Txn],
           rc_raw: dict, ru_raw: dict, group: dict[int, int] | None, observer: Observer,
           committed_ends: dict[int, int],
           events: Events) -> None:
    """The checks (1)-(4) over the final reads; adds what it finds to outcome.violations."""
    v = outcome.violations
    rc: dict[tuple[int, int], Out] = {}
    ru: dict[tuple[int, int], Out] = {}
    for raw, parsed in ((rc_raw, rc), (ru_raw, ru)):
        for (p, o), (key, value) in raw.items():
            out = parse_output(p, o, key, value)
            if out is None:
                v["garbage"].append(f"out {p}/{o} holds key {key!r} value {value!r}")
            else:
                parsed[(p, o)] = out
    outcome.visible = len(rc)
    outcome.aborted_records_seen = len(set(ru) - set(rc))

    def client(seq: int) -> str:
        txn = txns.get(seq)
        return txn.brief() if txn is not None else f"txn {seq} unknown to the loop"

    # What read_committed returns is in the log: read_uncommitted has the same record there.
    for spot, out in rc.items():
        if ru.get(spot) != out:
            v["inconsistent"].append(f"read_committed {out.brief()} but read_uncommitted has "
                                     f"{ru[spot].brief() if spot in ru else 'nothing'} there")
        expected = inputs.get((out.in_partition, out.in_offset))
        if expected != out.ident:
            v["input"].append(f"{out.brief()}: input {out.in_partition}/{out.in_offset} holds id {expected}")

    # (1) no aborted record visible: each id at most once; nothing of an aborted/abandoned txn.
    by_id: dict[int, list[Out]] = defaultdict(list)
    by_txn: dict[int, dict[int, Out]] = defaultdict(dict)
    for out in sorted(rc.values(), key=lambda x: (x.partition, x.offset)):
        by_id[out.ident].append(out)
        by_txn[out.txn][out.index] = out
    for ident, outs in sorted(by_id.items()):
        if len(outs) > 1:
            v["duplicate"].append(f"id {ident} visible {len(outs)} times: {', '.join(x.brief() for x in outs)}; "
                                  f"client view: {'; '.join(client(x.txn) for x in outs)}")
    for seq, seen in sorted(by_txn.items()):
        txn = txns.get(seq)
        if txn is not None and txn.outcome in ("aborted", "abandoned"):
            v["aborted-visible"].append(f"{len(seen)} record(s) of {txn.outcome} txn {seq} visible: "
                                        f"{', '.join(x.where for x in seen.values())}; {txn.brief()}")

    # (2) nothing committed lost: every id exactly once, every committed txn at its offsets.
    missing = sorted(set(inputs.values()) - set(by_id))
    if missing:
        where = {ident: spot for spot, ident in inputs.items()}
        v["lost"].append(f"{len(missing)} input ids have no visible output: "
                         f"{', '.join(f'{i} (input {where[i][0]}/{where[i][1]})' for i in missing[:30])}")
        # Every transaction that carried one of them, and what the log holds where it wrote it.
        carriers = [txn for txn in txns.values() if any(r[0] in missing[:30] for r in txn.records)]
        for txn in sorted(carriers, key=lambda t: t.seq)[:20]:
            spots = "; ".join(f"out {p}/{o}: read_uncommitted {ru[(p, o)].brief() if (p, o) in ru else 'nothing'}"
                              for index, (p, o) in sorted(txn.delivered.items())
                              if txn.records[index][0] in missing[:30])
            v["lost"].append(f"  carried by {txn.brief()}, offsets sent {txn.offsets}; {spots or 'never delivered'}")
    for seq, txn in sorted(txns.items()):
        if txn.outcome != "committed":
            continue
        for index, (p, o) in sorted(txn.delivered.items()):
            got = rc.get((p, o))
            if got is None or got.txn != seq or got.index != index:
                ident = txn.records[index][0]
                v["lost"].append(f"committed txn {seq} record {index} (id {ident}) delivered at out {p}/{o}: "
                                 f"read_committed has {got.brief() if got else 'nothing'} there, read_uncommitted "
                                 f"{ru[(p, o)].brief() if (p, o) in ru else 'nothing'}; {txn.brief()}")
        if len(txn.delivered) != len(txn.records):
            v["lost"].append(f"committed txn {seq} has delivery reports for {len(txn.delivered)} of "
                             f"{len(txn.records)} records ({txn.failed}); {txn.brief()}")

    # (3) no torn transaction: a visible txn is visible whole.
    for seq, seen in sorted(by_txn.items()):
        count = next(iter(seen.values())).count
        if len(seen) != count:
            txn = txns.get(seq)
            absent = [i for i in range(count) if i not in seen]
            spots = []
            for i in absent:
                spot = txn.delivered.get(i) if txn else None
                found = ru.get(spot) if spot else None
                spots.append(f"record {i} delivered at {f'out {spot[0]}/{spot[1]}' if spot else '?'} "
                             f"(read_uncommitted: {found.brief() if found else 'nothing'})")
            v["torn"].append(f"txn {seq}: {len(seen)} of {count} records visible "
                             f"({', '.join(x.where for x in seen.values())}); missing {'; '.join(spots)}; "
                             f"{client(seq)}")

    # (4) the group's committed offsets match the visible output.
    for p in sorted(input_ends) if group is not None else ():
        visible = [out.in_offset for out in rc.values() if out.in_partition == p]
        want = max(visible) + 1 if visible else -1
        got = group.get(p, -1)
        if got != want:
            v["offsets"].append(f"input partition {p}: the group committed {got if got >= 0 else 'nothing'}, but "
                                + (f"the largest input offset with visible output is {want - 1} (so {want} expected)"
                                   if visible else "no input of it has visible output")
                                + f"; input end {input_ends[p]}")

    # The read_committed observer, live through every kill, saw what the final read sees.
    for spot, out in observer.seen.items():
        if spot[1] < committed_ends.get(spot[0], 0) and rc.get(spot) != out:
            v["observer"].append(f"seen live: {out.brief()}; final read_committed has "
                                 f"{rc[spot].brief() if spot in rc else 'nothing'} there ({client(out.txn)})")
    for spot, out in rc.items():
        if spot not in observer.seen:
            v["observer"].append(f"final read_committed has {out.brief()}, the live observer passed over it "
                                 f"({client(out.txn)})")
    for kind in ("observer", "lost", "inconsistent"):
        if len(v[kind]) > 200:
            v[kind] = v[kind][:200] + [f"... and {len(v[kind]) - 200} more"]
    events.add(f"verified: {sum(len(x) for x in v.values())} violation line(s)", echo=True)


LOG_KEYWORDS = ("WARN", "ERROR", "panicked", "transaction", "txn", "marker", "Transaction", "producer")


def broker_log_excerpts(sources: list[tuple[str, Path]], per_source: int = 150) -> str:
    """Warnings, errors and transaction lines of each broker log, plus every start banner."""
    out = []
    for name, path in sources:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            continue
        keep = [line for line in lines if line.startswith("=====") or any(k in line for k in LOG_KEYWORDS)]
        out.append(f"===== {name}: {path} ({len(lines)} lines, {len(keep)} kept, last {per_source})")
        out += keep[-per_source:]
    return "\n".join(out)


def write_report(outcome: Outcome, path: Path) -> None:
    outcome.report_path = path
    path.write_text(outcome.full_report())


# ---------------------------------------------------------------- nemeses


def records_for(kills: int) -> int:
    """Input large enough that the kills happen while the loop still has work: each kill comes
    1-25 committed transactions (of 10.5 records on average) after the previous restart."""
    return 1_000 + 250 * kills


def _nemesis(run: Run, kills: int, rng: random.Random, kill_one) -> None:
    """`kills` times: wait 1-25 committed transactions and a random fraction of a second, then
    `kill_one(kill, after, snapshot)` (which kills, restarts and returns False to stop)."""
    run.wait_progress(3, "start")
    for kill in range(kills):
        if run.loop.finished.is_set():
            run.events.add(f"the loop ended before kill {kill + 1}", echo=True)
            break
        after = rng.randint(1, 25)
        if not run.wait_progress(after, f"before kill {kill + 1}"):
            break
        time.sleep(rng.uniform(0, 0.3))
        txn = run.loop.txns.get(len(run.loop.txns) - 1)
        snapshot = (f"loop at txn {txn.seq if txn else '-'} step {txn.step if txn else '-'}, "
                    f"{run.loop.committed_count()} committed")
        if not kill_one(kill, after, snapshot):
            break
    if not run.outcome.violations["liveness"]:
        run.wait_progress(1, "after the last restart")


def run_single(broker, kills: int, seed: int, workdir: Path, seconds_max: float, log=print,
               records: int | None = None) -> Outcome:
    """The loop against one broker, SIGKILLed `kills` times at random moments and restarted."""
    rng = random.Random(seed)
    run = Run(broker.bootstrap, seed, records or records_for(kills), log=log, seconds_max=seconds_max)

    def kill_one(kill: int, after: int, snapshot: str) -> bool:
        run.events.add(f"SIGKILL the broker ({snapshot})")
        broker.kill9()
        down_s = rng.uniform(0, 2.5)
        time.sleep(down_s)
        broker.start()
        run.killed(f"kill {kill + 1}/{kills}: SIGKILL {after} commits after the last restart ({snapshot}), "
                   f"down {down_s:.2f}s, restarted")
        return True

    run.start()
    try:
        _nemesis(run, kills, rng, kill_one)
    except BaseException:
        run.abandon()
        raise
    sources = [(broker.name, broker.log_path)]
    if broker.is_reference:
        sources.append(("kafka server.log", broker.data_dir / "server.log"))
    outcome = run.finish(loop_timeout_s=run.loop_timeout(seconds_max), log_sources=sources)
    write_report(outcome, workdir / "eos-report.txt")
    return outcome


def java_hash(text: str) -> int:
    """Java's String.hashCode over UTF-16 code units, as a signed 32-bit int."""
    value = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        value = (31 * value + int.from_bytes(data[i:i + 2], "big")) & 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def coordinator_partition(key: str, partitions: int) -> int:
    """Kafka's coordinator partition of a group or transactional id: Utils.abs(hashCode) % count."""
    value = java_hash(key)
    return (0 if value == -(1 << 31) else abs(value)) % partitions


def run_cluster(cluster, kills: int, seed: int, workdir: Path, seconds_max: float, log=print,
                records: int | None = None) -> Outcome:
    """The loop against a three-node cluster (topics with three replicas, min.insync.replicas=2):
    one node at a time is SIGKILLed (the transaction coordinator's, the group coordinator's, an
    output leader, or any), restarted, and every replica of the topics involved (input, output,
    __transaction_state, __consumer_offsets) back in sync before the next kill."""
    rng = random.Random(seed)
    bootstrap = ",".join(node.bootstrap for node in cluster.nodes.values())
    run = Run(bootstrap, seed, records or records_for(kills), replication_factor=3, log=log,
              seconds_max=seconds_max)
    admin = admin_client(bootstrap)
    killed_kinds: Counter = Counter()

    def leader_of(topic: str, key: str | None = None, partition: int | None = None) -> int:
        meta = admin.list_topics(topic, timeout=10).topics[topic]
        if key is not None:
            partition = coordinator_partition(key, len(meta.partitions))
        return meta.partitions[partition].leader

    def in_sync() -> bool:
        for topic in (run.input_topic, run.output_topic, "__transaction_state", "__consumer_offsets"):
            meta = admin.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                return False
            for partition in meta.partitions.values():
                if partition.leader < 0 or sorted(partition.isrs) != sorted(partition.replicas):
                    return False
        return True

    def kill_one(kill: int, after: int, snapshot: str) -> bool:
        roll = rng.random()
        try:
            if roll < 0.35:
                victim_id, kind = leader_of("__transaction_state", key=run.loop.txn_id), "transaction coordinator"
            elif roll < 0.55:
                victim_id, kind = leader_of("__consumer_offsets", key=run.loop.group), "group coordinator"
            elif roll < 0.8:
                partition = rng.randrange(run.output_partitions)
                victim_id, kind = leader_of(run.output_topic, partition=partition), f"leader of output {partition}"
            else:
                victim_id, kind = rng.choice(sorted(cluster.nodes)), "any node"
        except Exception as e:  # noqa: BLE001 - metadata unavailable: a random node
            victim_id, kind = rng.choice(sorted(cluster.nodes)), f"any node (metadata: {e!r})"
        if victim_id not in cluster.nodes:
            victim_id, kind = rng.choice(sorted(cluster.nodes)), f"any node (no leader for {kind})"
        killed_kinds[kind.split(" (")[0]] += 1
        run.events.add(f"SIGKILL node {victim_id} ({kind}; {snapshot})")
        cluster.nodes[victim_id].kill9()
        down_s = rng.uniform(0.2, 3.0)
        time.sleep(down_s)
        cluster.nodes[victim_id].start()
        healed = _wait(in_sync, 90)
        run.killed(f"kill {kill + 1}/{kills}: SIGKILL node {victim_id} ({kind}) {after} commits after the last "
                   f"heal ({snapshot}), down {down_s:.2f}s, restarted, "
                   f"in sync {'again' if healed else 'NOT within 90s'}")
        if not healed:
            run.outcome.violations["liveness"].append(f"after kill {kill + 1} the replicas were not in sync within 90s")
        return healed

    run.start()
    try:
        _nemesis(run, kills, rng, kill_one)
    except BaseException:
        run.abandon()
        raise
    run.events.add(f"victims: {dict(killed_kinds)}", echo=True)
    outcome = run.finish(loop_timeout_s=run.loop_timeout(seconds_max),
                         log_sources=[(node.name, node.log_path) for node in cluster.nodes.values()])
    write_report(outcome, workdir / "eos-report.txt")
    return outcome


def _wait(check, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:  # noqa: BLE001 - retried until the deadline
            pass
        time.sleep(0.25)
    return False
