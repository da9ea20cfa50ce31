//! The transaction coordinator's state machine for one transactional id, as Kafka's
//! `TransactionMetadata` runs it. Transaction version 1: the epoch is bumped by InitProducerId
//! and when the coordinator fences a producer. Transaction version 2 (KIP-890 part 2, clients
//! sending EndTxn v5): EndTxn also bumps it, so every transaction has its own epoch and its
//! markers carry it; an epoch running out rotates to the next producer id at completion.
//!
//! States and transitions (each written to `__transaction_state` before it takes effect):
//! ```text
//! Empty ──AddPartitions──▶ Ongoing ──EndTxn(commit)──▶ PrepareCommit ──markers──▶ CompleteCommit
//!   ▲                        │    └──EndTxn(abort) / timeout / fence──▶ PrepareAbort ──markers──▶ CompleteAbort
//!   └──InitProducerId (epoch + 1) ◀──────────────────────────────────────────────── Complete*
//! ```
//! A transition being written is *pending*: every other request for the id gets
//! CONCURRENT_TRANSACTIONS meanwhile, as do requests while markers are being written (Prepare*).
//!
//! Pure: time is passed in, nothing here does I/O. Touched by the coordinator's shard thread.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;

use super::records::{TxnLogValue, TxnStatus};

/// The largest epoch a producer id is used at; InitProducerId past it takes a new producer id
/// (Kafka stops at `Short.MAX_VALUE - 1`, keeping the last value for fencing).
pub(crate) const EPOCH_MAX: i16 = i16::MAX - 1;

/// One transactional id's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnMeta {
    pub(crate) producer_id: i64,
    /// The producer id before the last rotation, or -1.
    pub(crate) previous_producer_id: i64,
    pub(crate) producer_epoch: i16,
    /// The epoch before the last bump, or -1 (Kafka's `lastProducerEpoch`, for retried calls).
    pub(crate) last_producer_epoch: i16,
    pub(crate) timeout_ms: i32,
    pub(crate) status: TxnStatus,
    pub(crate) partitions: BTreeSet<(String, i32)>,
    pub(crate) start_ms: i64,
    pub(crate) last_update_ms: i64,
    /// A transition is being written.
    pub(crate) pending: bool,
    /// The transaction version the client last used (2 for KIP-890 part 2, else 0).
    pub(crate) client_transaction_version: i16,
    /// The producer id the id moves to when this transaction completes (its epochs ran out
    /// under transaction version 2), or -1.
    pub(crate) next_producer_id: i64,
}

/// Transaction version 2: an epoch bump per transaction (KIP-890 part 2).
pub(crate) const TRANSACTION_VERSION_2: i16 = 2;

/// What EndTxn must do under transaction version 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndPlan {
    /// Already done (a retried call): answer with the current producer id and epoch.
    Done,
    /// Store this Prepare state, then write its markers.
    Write(TxnMeta),
    /// As `Write`, but the epochs ran out: allocate a producer id for `next_producer_id` first.
    WriteWithNewProducerId(TxnMeta),
}

/// What InitProducerId must do for an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InitPlan {
    /// Write this state, then answer with its producer id and epoch.
    Write(TxnMeta),
    /// The id needs a fresh producer id: allocate one, then write [`TxnMeta::fresh`].
    NewProducerId,
    /// Abort the open transaction with this fenced state (written, then markers); the client
    /// retries and gets CONCURRENT_TRANSACTIONS meanwhile.
    FenceAndAbort(TxnMeta),
}

impl TxnMeta {
    /// A new id's state (or an id whose epochs ran out) at epoch 0.
    pub(crate) fn fresh(producer_id: i64, previous_producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        Self {
            producer_id,
            previous_producer_id,
            producer_epoch: 0,
            last_producer_epoch: -1,
            timeout_ms,
            status: TxnStatus::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            pending: false,
            client_transaction_version: 0,
            next_producer_id: -1,
        }
    }

    /// The state a stored record describes.
    pub(crate) fn from_record(value: &TxnLogValue) -> Self {
        let partitions = value
            .partitions
            .iter()
            .flat_map(|(topic, indexes)| indexes.iter().map(move |index| (topic.clone(), *index)))
            .collect();
        Self {
            producer_id: value.producer_id,
            previous_producer_id: value.previous_producer_id,
            producer_epoch: value.producer_epoch,
            last_producer_epoch: -1,
            timeout_ms: value.timeout_ms,
            status: value.status,
            partitions,
            start_ms: value.start_ms,
            last_update_ms: value.last_update_ms,
            pending: false,
            client_transaction_version: value.client_transaction_version,
            next_producer_id: value.next_producer_id,
        }
    }

    /// The record storing this state.
    pub(crate) fn to_record(&self) -> TxnLogValue {
        let mut partitions: Vec<(String, Vec<i32>)> = Vec::new();
        for (topic, index) in &self.partitions {
            match partitions.last_mut() {
                Some((last, indexes)) if last == topic => indexes.push(*index),
                _ => partitions.push((topic.clone(), vec![*index])),
            }
        }
        TxnLogValue {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            timeout_ms: self.timeout_ms,
            status: self.status,
            partitions,
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
            client_transaction_version: self.client_transaction_version,
        }
    }

    fn check_busy(&self) -> Result<(), ResponseError> {
        if self.pending || matches!(self.status, TxnStatus::PrepareCommit | TxnStatus::PrepareAbort) {
            return Err(ResponseError::ConcurrentTransactions);
        }
        Ok(())
    }

    /// Checks a request's producer id and epoch against the state.
    fn check_producer(&self, producer_id: i64, producer_epoch: i16) -> Result<(), ResponseError> {
        if producer_id != self.producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if producer_epoch != self.producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        Ok(())
    }

    /// InitProducerId for an existing id. `expected` is the producer id and epoch the client
    /// had (KIP-360), or `None`.
    pub(crate) fn plan_init(
        &self,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now_ms: i64,
    ) -> Result<InitPlan, ResponseError> {
        self.check_busy()?;
        if let Some((producer_id, epoch)) = expected {
            let current = producer_id == self.producer_id && epoch == self.producer_epoch;
            let retried = producer_id == self.producer_id && epoch == self.last_producer_epoch;
            let rotated = producer_id == self.previous_producer_id;
            if !current && !retried && !rotated {
                return Err(ResponseError::ProducerFenced);
            }
        }
        match self.status {
            TxnStatus::Ongoing => Ok(InitPlan::FenceAndAbort(self.fenced_abort(now_ms))),
            TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {
                if self.producer_epoch >= EPOCH_MAX {
                    return Ok(InitPlan::NewProducerId);
                }
                let mut next = self.clone();
                next.last_producer_epoch = self.producer_epoch;
                next.producer_epoch = self.producer_epoch + 1;
                next.timeout_ms = timeout_ms;
                next.status = TxnStatus::Empty;
                next.partitions.clear();
                next.start_ms = -1;
                next.last_update_ms = now_ms;
                Ok(InitPlan::Write(next))
            }
            TxnStatus::Dead | TxnStatus::PrepareEpochFence | TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => {
                Err(ResponseError::ConcurrentTransactions)
            }
        }
    }

    /// The abort of the open transaction by the coordinator (a timeout, or a new producer
    /// instance): the epoch is bumped, which fences the producer that opened it.
    pub(crate) fn fenced_abort(&self, now_ms: i64) -> TxnMeta {
        let mut next = self.clone();
        next.last_producer_epoch = self.producer_epoch;
        next.producer_epoch = self.producer_epoch.saturating_add(1);
        next.status = TxnStatus::PrepareAbort;
        next.last_update_ms = now_ms;
        next
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition): `None`
    /// when every partition is already in the open transaction (nothing to write).
    pub(crate) fn plan_add(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
        now_ms: i64,
    ) -> Result<Option<TxnMeta>, ResponseError> {
        self.check_producer(producer_id, producer_epoch)?;
        self.check_busy()?;
        if matches!(self.status, TxnStatus::Dead | TxnStatus::PrepareEpochFence) {
            return Err(ResponseError::InvalidTxnState);
        }
        let open = self.status == TxnStatus::Ongoing;
        if open && partitions.iter().all(|partition| self.partitions.contains(partition)) {
            return Ok(None);
        }
        let mut next = self.clone();
        if !open {
            next.partitions.clear();
            next.start_ms = now_ms;
        }
        next.status = TxnStatus::Ongoing;
        next.partitions.extend(partitions.iter().cloned());
        next.last_update_ms = now_ms;
        Ok(Some(next))
    }

    /// Whether `partition` is in this producer's open transaction (KIP-890's verification).
    pub(crate) fn verify(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        partition: &(String, i32),
    ) -> Result<(), ResponseError> {
        self.check_producer(producer_id, producer_epoch)?;
        if self.status == TxnStatus::Ongoing && self.partitions.contains(partition) && !self.pending {
            Ok(())
        } else {
            Err(ResponseError::InvalidTxnState)
        }
    }

    /// EndTxn: `Some` state to write (Prepare*), or `None` when the same end was already
    /// reached (a retried call is answered with success).
    pub(crate) fn plan_end(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<Option<TxnMeta>, ResponseError> {
        if producer_id != self.producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        // A retry after the coordinator fenced this producer's transaction by bumping the epoch
        // gets PRODUCER_FENCED, like any older epoch.
        if producer_epoch != self.producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if self.pending {
            return Err(ResponseError::ConcurrentTransactions);
        }
        match (self.status, commit) {
            (TxnStatus::Ongoing, _) => {
                let mut next = self.clone();
                next.status = if commit { TxnStatus::PrepareCommit } else { TxnStatus::PrepareAbort };
                next.last_update_ms = now_ms;
                Ok(Some(next))
            }
            (TxnStatus::CompleteCommit, true) | (TxnStatus::CompleteAbort, false) => Ok(None),
            (TxnStatus::PrepareCommit, true) | (TxnStatus::PrepareAbort, false) => {
                Err(ResponseError::ConcurrentTransactions)
            }
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// EndTxn under transaction version 2 (Kafka's table: a retry carries the epoch before the
    /// bump; aborting an empty transaction is allowed and bumps the epoch too).
    pub(crate) fn plan_end_v2(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<EndPlan, ResponseError> {
        let retry_on_bump = self.producer_epoch == producer_epoch.saturating_add(1);
        let retry_on_rotation =
            self.previous_producer_id == producer_id && producer_epoch == EPOCH_MAX && self.producer_epoch == 0;
        let retry = retry_on_bump || retry_on_rotation;
        let current = producer_epoch == self.producer_epoch;
        let valid_epoch = match self.status {
            TxnStatus::Ongoing | TxnStatus::Empty => current,
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => retry_on_bump,
            TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => retry || current,
            TxnStatus::Dead | TxnStatus::PrepareEpochFence => false,
        };
        if self.pending {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if producer_id != self.producer_id && !retry_on_rotation {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if !valid_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        match (self.status, commit) {
            (TxnStatus::Ongoing, _) => Ok(self.bumped_prepare(commit, now_ms)),
            (TxnStatus::CompleteCommit, true) | (TxnStatus::CompleteAbort, false) if retry => Ok(EndPlan::Done),
            (TxnStatus::CompleteCommit | TxnStatus::CompleteAbort | TxnStatus::Empty, false) if !retry => {
                Ok(self.bumped_prepare(false, now_ms))
            }
            (TxnStatus::PrepareCommit, true) | (TxnStatus::PrepareAbort, false) => {
                Err(ResponseError::ConcurrentTransactions)
            }
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// A Prepare state with the epoch bumped, as transaction version 2 writes it.
    fn bumped_prepare(&self, commit: bool, now_ms: i64) -> EndPlan {
        let mut next = self.clone();
        if self.status != TxnStatus::Ongoing {
            // An empty transaction being aborted: it starts and ends now.
            next.partitions.clear();
            next.start_ms = now_ms;
        }
        next.status = if commit { TxnStatus::PrepareCommit } else { TxnStatus::PrepareAbort };
        next.last_producer_epoch = self.producer_epoch;
        next.producer_epoch = self.producer_epoch.saturating_add(1);
        next.last_update_ms = now_ms;
        next.client_transaction_version = TRANSACTION_VERSION_2;
        if self.producer_epoch >= EPOCH_MAX { EndPlan::WriteWithNewProducerId(next) } else { EndPlan::Write(next) }
    }

    /// The state once every marker of a Prepare* state is written; a pending producer id
    /// rotation takes effect (epoch 0 of the next producer id).
    pub(crate) fn completed(&self, now_ms: i64) -> TxnMeta {
        let mut next = self.clone();
        next.status =
            if self.status == TxnStatus::PrepareCommit { TxnStatus::CompleteCommit } else { TxnStatus::CompleteAbort };
        next.partitions.clear();
        next.last_update_ms = now_ms;
        if self.next_producer_id >= 0 {
            next.previous_producer_id = self.producer_id;
            next.producer_id = self.next_producer_id;
            next.producer_epoch = 0;
            next.next_producer_id = -1;
        }
        next
    }

    /// The open transaction has run past its timeout.
    pub(crate) fn expired(&self, now_ms: i64) -> bool {
        self.status == TxnStatus::Ongoing
            && !self.pending
            && self.start_ms >= 0
            && now_ms.saturating_sub(self.start_ms) > i64::from(self.timeout_ms)
    }

    /// The id has been idle with no transaction past `transactional.id.expiration.ms`.
    pub(crate) fn idle_expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        matches!(self.status, TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort)
            && !self.pending
            && now_ms.saturating_sub(self.last_update_ms) > expiration_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partitions(names: &[(&str, i32)]) -> Vec<(String, i32)> {
        names.iter().map(|(topic, index)| ((*topic).to_owned(), *index)).collect()
    }

    #[test]
    fn a_transaction_goes_through_commit_and_the_next_init_bumps_the_epoch() {
        let empty = TxnMeta::fresh(5, -1, 60_000, 0);
        let ongoing = empty.plan_add(5, 0, &partitions(&[("a", 0), ("a", 1)]), 10).expect("add").expect("a change");
        assert_eq!(ongoing.status, TxnStatus::Ongoing);
        assert_eq!(ongoing.start_ms, 10);
        assert_eq!(ongoing.plan_add(5, 0, &partitions(&[("a", 1)]), 11), Ok(None));
        let prepared = ongoing.plan_end(5, 0, true, 20).expect("end").expect("a change");
        assert_eq!(prepared.status, TxnStatus::PrepareCommit);
        assert_eq!(prepared.plan_add(5, 0, &partitions(&[("b", 0)]), 21), Err(ResponseError::ConcurrentTransactions));
        let complete = prepared.completed(30);
        assert_eq!(complete.status, TxnStatus::CompleteCommit);
        assert!(complete.partitions.is_empty());
        assert_eq!(complete.plan_end(5, 0, true, 31), Ok(None), "a retried commit succeeds");
        assert_eq!(complete.plan_end(5, 0, false, 31), Err(ResponseError::InvalidTxnState));
        let InitPlan::Write(next) = complete.plan_init(60_000, None, 40).expect("init") else { panic!("a bump") };
        assert_eq!((next.producer_id, next.producer_epoch, next.status), (5, 1, TxnStatus::Empty));
    }

    #[test]
    fn init_during_an_open_transaction_fences_and_aborts_it() {
        let ongoing = TxnMeta::fresh(5, -1, 60_000, 0).plan_add(5, 0, &partitions(&[("a", 0)]), 1).unwrap().unwrap();
        let InitPlan::FenceAndAbort(fenced) = ongoing.plan_init(60_000, None, 2).expect("init") else {
            panic!("the open transaction is aborted first")
        };
        assert_eq!((fenced.producer_epoch, fenced.status), (1, TxnStatus::PrepareAbort));
        // The old producer is fenced from then on.
        assert_eq!(fenced.plan_end(5, 0, true, 3), Err(ResponseError::ProducerFenced));
        let complete = fenced.completed(4);
        assert_eq!(complete.plan_add(5, 0, &partitions(&[("a", 0)]), 5), Err(ResponseError::ProducerFenced));
        let InitPlan::Write(next) = complete.plan_init(60_000, None, 6).expect("init") else { panic!("a bump") };
        assert_eq!(next.producer_epoch, 2);
    }

    #[test]
    fn timeouts_and_idle_expiry_follow_the_clock() {
        let ongoing = TxnMeta::fresh(5, -1, 1_000, 0).plan_add(5, 0, &partitions(&[("a", 0)]), 100).unwrap().unwrap();
        assert!(!ongoing.expired(1_100));
        assert!(ongoing.expired(1_101));
        let complete = ongoing.fenced_abort(1_200).completed(1_300);
        assert!(!complete.idle_expired(2_000, 1_000));
        assert!(complete.idle_expired(2_301, 1_000));
    }

    #[test]
    fn epochs_running_out_take_a_new_producer_id() {
        let mut meta = TxnMeta::fresh(5, -1, 1_000, 0);
        meta.producer_epoch = EPOCH_MAX;
        assert_eq!(meta.plan_init(1_000, None, 1), Ok(InitPlan::NewProducerId));
    }

    #[test]
    fn a_stored_state_round_trips_through_its_record() {
        let ongoing = TxnMeta::fresh(5, 4, 1_000, 0)
            .plan_add(5, 0, &partitions(&[("b", 2), ("a", 0), ("a", 1)]), 1)
            .unwrap()
            .unwrap();
        let record = ongoing.to_record();
        assert_eq!(record.partitions, vec![("a".to_owned(), vec![0, 1]), ("b".to_owned(), vec![2])]);
        let back = TxnMeta::from_record(&record);
        assert_eq!(back.partitions, ongoing.partitions);
        assert_eq!((back.producer_id, back.previous_producer_id, back.status), (5, 4, TxnStatus::Ongoing));
    }

    fn prepared(plan: EndPlan) -> TxnMeta {
        match plan {
            EndPlan::Write(next) | EndPlan::WriteWithNewProducerId(next) => next,
            EndPlan::Done => panic!("a state to write was expected"),
        }
    }

    #[test]
    fn transaction_version_2_bumps_the_epoch_at_every_end_and_answers_retries() {
        let ongoing = TxnMeta::fresh(5, -1, 60_000, 0).plan_add(5, 0, &partitions(&[("a", 0)]), 1).unwrap().unwrap();
        let prepared = prepared(ongoing.plan_end_v2(5, 0, true, 2).expect("end"));
        assert_eq!(
            (prepared.status, prepared.producer_epoch, prepared.last_producer_epoch),
            (TxnStatus::PrepareCommit, 1, 0)
        );
        // A retry (the epoch before the bump) while the markers are written, then after.
        assert_eq!(prepared.plan_end_v2(5, 0, true, 3), Err(ResponseError::ConcurrentTransactions));
        let complete = prepared.completed(4);
        assert_eq!(complete.plan_end_v2(5, 0, true, 5), Ok(EndPlan::Done));
        assert_eq!(complete.plan_end_v2(5, 0, false, 5), Err(ResponseError::InvalidTxnState));
        // The next transaction runs at epoch 1; an older epoch is fenced.
        assert_eq!(complete.plan_end_v2(5, 1, true, 6), Err(ResponseError::InvalidTxnState), "nothing to commit");
        let aborted_empty = prepared_state(complete.plan_end_v2(5, 1, false, 6));
        assert_eq!((aborted_empty.status, aborted_empty.producer_epoch), (TxnStatus::PrepareAbort, 2));
        let ongoing = complete.plan_add(5, 1, &partitions(&[("a", 0)]), 7).unwrap().unwrap();
        assert_eq!(ongoing.plan_end_v2(5, 0, true, 8), Err(ResponseError::ProducerFenced));
    }

    fn prepared_state(plan: Result<EndPlan, ResponseError>) -> TxnMeta {
        prepared(plan.expect("a plan"))
    }

    #[test]
    fn transaction_version_2_rotates_the_producer_id_when_epochs_run_out() {
        let mut ongoing =
            TxnMeta::fresh(5, -1, 60_000, 0).plan_add(5, 0, &partitions(&[("a", 0)]), 1).unwrap().unwrap();
        ongoing.producer_epoch = EPOCH_MAX;
        let EndPlan::WriteWithNewProducerId(mut prepared) = ongoing.plan_end_v2(5, EPOCH_MAX, true, 2).expect("end")
        else {
            panic!("the epochs ran out")
        };
        prepared.next_producer_id = 9;
        let complete = prepared.completed(3);
        assert_eq!((complete.producer_id, complete.producer_epoch, complete.previous_producer_id), (9, 0, 5));
        assert_eq!(complete.plan_end_v2(5, EPOCH_MAX, true, 4), Ok(EndPlan::Done), "a retry of the old id");
        assert_eq!(TxnMeta::from_record(&complete.to_record()).producer_id, 9);
    }

    /// One step of a client (or of the coordinator's timers) against one transactional id.
    #[derive(Debug, Clone)]
    enum Step {
        /// InitProducerId, with the client's last producer id and epoch (KIP-360) or not.
        Init { with_expected: bool },
        /// AddPartitionsToTxn from the current producer or from the one before (a zombie).
        Add { zombie: bool, partition: i32 },
        /// EndTxn from the current producer or a zombie, under transaction version 1 or 2.
        End { zombie: bool, commit: bool, version_2: bool },
        /// Every marker of a Prepare state is written.
        Complete,
        /// Time passes; an expired transaction is aborted with an epoch bump.
        Tick { elapsed_ms: i64 },
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            any::<bool>().prop_map(|with_expected| Step::Init { with_expected }),
            (any::<bool>(), 0..3i32).prop_map(|(zombie, partition)| Step::Add { zombie, partition }),
            (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(zombie, commit, version_2)| Step::End {
                zombie,
                commit,
                version_2
            }),
            Just(Step::Complete),
            (0..40_000i64).prop_map(|elapsed_ms| Step::Tick { elapsed_ms }),
        ]
    }

    /// Whether `next` may follow `state` (Kafka's transaction state transitions).
    fn allowed(state: TxnStatus, next: TxnStatus) -> bool {
        use TxnStatus::{CompleteAbort, CompleteCommit, Empty, Ongoing, PrepareAbort, PrepareCommit};
        match state {
            Empty | CompleteCommit | CompleteAbort => matches!(next, Empty | Ongoing | PrepareAbort),
            Ongoing => matches!(next, Ongoing | PrepareCommit | PrepareAbort),
            PrepareCommit => next == CompleteCommit,
            PrepareAbort => next == CompleteAbort,
            TxnStatus::Dead | TxnStatus::PrepareEpochFence => false,
        }
    }

    proptest::proptest! {
        /// Random schedules of a producer, a zombie (the producer of the previous epoch), the
        /// markers and the clock against the state machine, with time passed in. At every step:
        /// a zombie never changes the state, the producer id and epoch never go back, only
        /// Kafka's transitions happen, a Prepare state keeps its transaction's partitions and a
        /// completed one has none, the partitions a producer verifies are exactly those of its
        /// open transaction, and the stored record gives the state back.
        #[test]
        fn schedules_keep_the_transaction_invariants(steps in proptest::collection::vec(step(), 1..60)) {
            let mut now_ms = 0i64;
            let mut state = TxnMeta::fresh(1, -1, 30_000, now_ms);
            let mut zombie: Option<(i64, i16)> = None;
            let mut next_producer_id = 2i64;
            for step in steps {
                now_ms += 1;
                let before = state.clone();
                let next: Option<TxnMeta> = match step {
                    Step::Init { with_expected } => {
                        let expected = with_expected.then_some((state.producer_id, state.producer_epoch));
                        match state.plan_init(30_000, expected, now_ms) {
                            Ok(InitPlan::Write(next) | InitPlan::FenceAndAbort(next)) => Some(next),
                            Ok(InitPlan::NewProducerId) => {
                                next_producer_id += 1;
                                Some(TxnMeta::fresh(next_producer_id, state.producer_id, 30_000, now_ms))
                            }
                            Err(error) => {
                                proptest::prop_assert_eq!(error, ResponseError::ConcurrentTransactions);
                                None
                            }
                        }
                    }
                    Step::Add { zombie: true, partition } => {
                        if let Some((producer_id, epoch)) = zombie {
                            let added = state.plan_add(producer_id, epoch, &[("t".to_owned(), partition)], now_ms);
                            proptest::prop_assert!(added.is_err(), "a zombie added a partition: {:?}", added);
                        }
                        None
                    }
                    Step::Add { zombie: false, partition } => {
                        let (producer_id, epoch) = (state.producer_id, state.producer_epoch);
                        state.plan_add(producer_id, epoch, &[("t".to_owned(), partition)], now_ms).ok().flatten()
                    }
                    Step::End { zombie: true, commit, version_2 } => {
                        if let Some((producer_id, epoch)) = zombie {
                            // Under version 2 the epoch just before the current one is a retry.
                            if !(version_2 && epoch.saturating_add(1) == state.producer_epoch) {
                                let ended = if version_2 {
                                    state.plan_end_v2(producer_id, epoch, commit, now_ms).map(|_| ())
                                } else {
                                    state.plan_end(producer_id, epoch, commit, now_ms).map(|_| ())
                                };
                                proptest::prop_assert!(ended.is_err(), "a zombie ended a transaction");
                            }
                        }
                        None
                    }
                    Step::End { zombie: false, commit, version_2: false } => {
                        let (producer_id, epoch) = (state.producer_id, state.producer_epoch);
                        state.plan_end(producer_id, epoch, commit, now_ms).ok().flatten()
                    }
                    Step::End { zombie: false, commit, version_2: true } => {
                        let (producer_id, epoch) = (state.producer_id, state.producer_epoch);
                        match state.plan_end_v2(producer_id, epoch, commit, now_ms) {
                            Ok(EndPlan::Write(next)) => Some(next),
                            Ok(EndPlan::WriteWithNewProducerId(mut next)) => {
                                next_producer_id += 1;
                                next.next_producer_id = next_producer_id;
                                Some(next)
                            }
                            Ok(EndPlan::Done) | Err(_) => None,
                        }
                    }
                    Step::Complete => {
                        matches!(state.status, TxnStatus::PrepareCommit | TxnStatus::PrepareAbort)
                            .then(|| state.completed(now_ms))
                    }
                    Step::Tick { elapsed_ms } => {
                        now_ms += elapsed_ms;
                        state.expired(now_ms).then(|| state.fenced_abort(now_ms))
                    }
                };
                let Some(next) = next else { continue };
                proptest::prop_assert!(allowed(before.status, next.status), "{:?} -> {:?}", before.status, next.status);
                let rotated = next.producer_id != before.producer_id;
                if rotated {
                    proptest::prop_assert_eq!(next.previous_producer_id, before.producer_id);
                    proptest::prop_assert_eq!(next.producer_epoch, 0);
                } else {
                    proptest::prop_assert!(next.producer_epoch >= before.producer_epoch, "the epoch went back");
                }
                if next.producer_epoch != before.producer_epoch || rotated {
                    zombie = Some((before.producer_id, before.producer_epoch));
                }
                match next.status {
                    TxnStatus::PrepareCommit | TxnStatus::PrepareAbort if before.status == TxnStatus::Ongoing => {
                        proptest::prop_assert_eq!(&next.partitions, &before.partitions);
                    }
                    TxnStatus::CompleteCommit | TxnStatus::CompleteAbort | TxnStatus::Empty => {
                        proptest::prop_assert!(next.partitions.is_empty());
                    }
                    _ => {}
                }
                for partition in 0..3 {
                    let key = ("t".to_owned(), partition);
                    let verified = next.verify(next.producer_id, next.producer_epoch, &key).is_ok();
                    let open = next.status == TxnStatus::Ongoing && next.partitions.contains(&key);
                    proptest::prop_assert_eq!(verified, open);
                }
                let reloaded = TxnMeta::from_record(&next.to_record());
                proptest::prop_assert_eq!(
                    TxnMeta { last_producer_epoch: next.last_producer_epoch, ..reloaded },
                    next.clone()
                );
                state = next;
            }
        }
    }
}
