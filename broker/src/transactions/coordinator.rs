//! One shard's transaction coordinator: the transactional ids whose `__transaction_state`
//! partition this broker leads and this shard holds.
//!
//! Every change of an id's state is written before it takes effect: the id is marked pending
//! (other requests for it get CONCURRENT_TRANSACTIONS), the new state's record is appended
//! durably (and replicated), then the state replaces the old one; a failed write leaves the old
//! state. Ending a transaction (EndTxn, a timeout, a fencing InitProducerId) stores a Prepare
//! state, answers, then writes the markers in a task of its own and stores the Complete state.
//!
//! Lifecycle as the group coordinator's: started with the shard, loads a partition when this
//! broker starts leading it (resuming the markers of loaded Prepare states), unloads it when
//! leadership moves. A timer task aborts transactions past their timeout and forgets ids idle
//! past `transactional.id.expiration.ms`.
//!
//! Touched only by its shard thread (`Rc`, `RefCell`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use sluice_engine::{ShardId, TopicPartition};

use super::markers::{self, Marker};
use super::records::{self, TxnStatus};
use super::state::{EndPlan, InitPlan, TRANSACTION_VERSION_2, TxnMeta};
use super::{TXN_TOPIC, TxnConfig};
use crate::context::Shared;
use crate::groups::storage::{self, WriteQueue};

/// A `__transaction_state` partition this shard coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnPartition {
    Loading { leader_epoch: i32 },
    Loaded { leader_epoch: i32 },
}

/// A transaction as ListTransactions and DescribeTransactions show it.
#[derive(Debug, Clone)]
pub(crate) struct DescribedTxn {
    pub(crate) transactional_id: String,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) status: TxnStatus,
    pub(crate) timeout_ms: i32,
    pub(crate) start_ms: i64,
    pub(crate) partitions: Vec<(String, i32)>,
}

/// One shard's transaction coordinator.
#[derive(Debug)]
pub(crate) struct TxnCoordinator {
    shared: Arc<Shared>,
    shard: ShardId,
    config: TxnConfig,
    txns: RefCell<BTreeMap<String, TxnMeta>>,
    partitions: RefCell<BTreeMap<i32, TxnPartition>>,
    writes: WriteQueue,
    /// Fired when a transition finished being written (or failed to be).
    settled: event_listener::Event,
}

/// How long AddPartitionsToTxn waits for another transition of the same id to be written (or
/// the previous transaction's markers) before answering CONCURRENT_TRANSACTIONS.
const PENDING_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl TxnCoordinator {
    /// The calling shard's coordinator, with its writer and timer tasks started.
    pub(crate) fn start(shared: &Arc<Shared>, shard: ShardId) -> Rc<Self> {
        let coordinator = Rc::new(Self {
            shared: shared.clone(),
            shard,
            config: TxnConfig::global(),
            txns: RefCell::new(BTreeMap::new()),
            partitions: RefCell::new(BTreeMap::new()),
            writes: WriteQueue::new(TXN_TOPIC),
            settled: event_listener::Event::new(),
        });
        let writer = coordinator.clone();
        compio::runtime::spawn(crate::crash::abort_on_panic("transaction state writer", async move {
            writer.writes.run(&writer.shared).await;
        }))
        .detach();
        let timers = coordinator.clone();
        compio::runtime::spawn(crate::crash::abort_on_panic("transaction timers", async move {
            timers.run_timers().await;
        }))
        .detach();
        coordinator
    }

    fn now_ms(&self) -> i64 {
        self.shared.clock.unix_ms()
    }

    fn partition_count(&self) -> i32 {
        self.shared.metadata.image().topic(TXN_TOPIC).map_or(1, |topic| topic.partition_count())
    }

    fn partition_of(&self, transactional_id: &str) -> i32 {
        crate::groups::Coordinator::partition_of(transactional_id, self.partition_count())
    }

    /// Starts coordinating partition `index`, led here at `leader_epoch`: reads its records,
    /// then serves its ids and resumes the markers of their Prepare states. A partition already
    /// loaded takes the new epoch: the markers still being written stop at their next round
    /// (they carry the old coordinator epoch) and are resumed under the new one.
    pub(crate) async fn load(self: &Rc<Self>, index: i32, leader_epoch: i32) {
        let loading = TxnPartition::Loading { leader_epoch };
        let previous = self.partitions.borrow_mut().insert(index, loading);
        if let Some(TxnPartition::Loaded { leader_epoch: before }) = previous {
            self.partitions.borrow_mut().insert(index, TxnPartition::Loaded { leader_epoch });
            if before != leader_epoch {
                tracing::info!(
                    shard = self.shard.0,
                    partition = index,
                    leader_epoch,
                    "transaction coordinator took a new epoch of a loaded partition"
                );
                for id in self.prepared_in(index) {
                    self.spawn_completion(id);
                }
            }
            return;
        }
        let mut loaded: BTreeMap<String, TxnMeta> = BTreeMap::new();
        let target = TopicPartition::new(TXN_TOPIC, index);
        let read = storage::load_partition(&self.shared.engine, &target, |record| {
            let storage::Loaded::Record { key, value, .. } = record else { return };
            let Ok(id) = records::decode_key(key) else {
                tracing::warn!(partition = index, "skipping an unreadable transaction state key");
                return;
            };
            match value.map(records::decode_value) {
                None => {
                    loaded.remove(&id);
                }
                Some(Ok(value)) => {
                    loaded.insert(id, TxnMeta::from_record(&value));
                }
                Some(Err(error)) => tracing::warn!(id, %error, "skipping an unreadable transaction state"),
            }
        })
        .await;
        if self.partitions.borrow().get(&index) != Some(&loading) {
            return;
        }
        if let Err(error) = read {
            self.partitions.borrow_mut().remove(&index);
            tracing::error!(partition = index, %error, "transaction coordinator failed to load a partition");
            return;
        }
        let unfinished: Vec<String> = loaded
            .iter()
            .filter(|(_, meta)| matches!(meta.status, TxnStatus::PrepareCommit | TxnStatus::PrepareAbort))
            .map(|(id, _)| id.clone())
            .collect();
        let count = loaded.len();
        self.txns.borrow_mut().extend(loaded.into_iter().filter(|(_, meta)| meta.status != TxnStatus::Dead));
        self.partitions.borrow_mut().insert(index, TxnPartition::Loaded { leader_epoch });
        tracing::info!(
            shard = self.shard.0,
            partition = index,
            leader_epoch,
            ids = count,
            "transaction coordinator loaded a partition"
        );
        for id in unfinished {
            self.spawn_completion(id);
        }
    }

    /// The ids of partition `index` in a Prepare state: their markers are to be written.
    fn prepared_in(&self, index: i32) -> Vec<String> {
        let count = self.partition_count();
        self.txns
            .borrow()
            .iter()
            .filter(|(id, meta)| {
                matches!(meta.status, TxnStatus::PrepareCommit | TxnStatus::PrepareAbort)
                    && crate::groups::Coordinator::partition_of(id, count) == index
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Stops coordinating partition `index`: its ids leave memory.
    pub(crate) fn unload(&self, index: i32) {
        if self.partitions.borrow_mut().remove(&index).is_none() {
            return;
        }
        let count = self.partition_count();
        self.txns.borrow_mut().retain(|id, _| crate::groups::Coordinator::partition_of(id, count) != index);
        tracing::info!(shard = self.shard.0, partition = index, "transaction coordinator unloaded a partition");
    }

    /// Whether the id's partition is served here; its leader epoch (the coordinator epoch).
    fn check(&self, transactional_id: &str) -> Result<i32, ResponseError> {
        if transactional_id.is_empty() || transactional_id.len() > records::STRING_SIZE_BYTES_MAX {
            return Err(ResponseError::InvalidRequest);
        }
        let index = self.partition_of(transactional_id);
        match self.partitions.borrow().get(&index) {
            Some(TxnPartition::Loaded { leader_epoch }) => Ok(*leader_epoch),
            Some(TxnPartition::Loading { .. }) => Err(ResponseError::CoordinatorLoadInProgress),
            None => {
                let image = self.shared.metadata.image();
                let led = image
                    .topic(TXN_TOPIC)
                    .and_then(|topic| topic.partition(index))
                    .is_some_and(|state| state.leader == self.shared.identity.node_id);
                Err(if led { ResponseError::CoordinatorLoadInProgress } else { ResponseError::NotCoordinator })
            }
        }
    }

    /// Whether this coordinator still owns the id at `coordinator_epoch`: its partition is loaded
    /// here at that epoch, and the published image (which may be newer than what this shard was
    /// told yet) still says this broker leads it at that epoch.
    fn owns(&self, transactional_id: &str, coordinator_epoch: i32) -> bool {
        if self.check(transactional_id) != Ok(coordinator_epoch) {
            return false;
        }
        let image = self.shared.metadata.image();
        image.topic(TXN_TOPIC).and_then(|topic| topic.partition(self.partition_of(transactional_id))).is_some_and(
            |state| state.leader == self.shared.identity.node_id && state.leader_epoch == coordinator_epoch,
        )
    }

    /// Stores `next` as the id's state: pending while written, applied once written.
    async fn persist(&self, transactional_id: &str, next: TxnMeta) -> Result<(), ResponseError> {
        if let Some(current) = self.txns.borrow_mut().get_mut(transactional_id) {
            current.pending = true;
        }
        let record = (records::encode_key(transactional_id), Some(records::encode_value(&next.to_record())));
        let written = self.writes.write(self.partition_of(transactional_id), vec![record]).await;
        self.settled.notify(usize::MAX);
        let mut txns = self.txns.borrow_mut();
        match written {
            Ok(()) if self.check(transactional_id).is_ok() => {
                txns.insert(transactional_id.to_owned(), next);
                Ok(())
            }
            Ok(()) => Err(ResponseError::NotCoordinator),
            Err(error) => {
                if let Some(current) = txns.get_mut(transactional_id) {
                    current.pending = false;
                }
                Err(error)
            }
        }
    }

    /// InitProducerId for a transactional id: its producer id and new epoch.
    ///
    /// # Errors
    /// INVALID_TRANSACTION_TIMEOUT, CONCURRENT_TRANSACTIONS (an open transaction is being
    /// aborted first: the client retries), PRODUCER_FENCED, or the coordinator's state errors.
    pub(crate) async fn init_producer_id(
        self: &Rc<Self>,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ResponseError> {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        self.check(transactional_id)?;
        let now_ms = self.now_ms();
        let current = self.txns.borrow().get(transactional_id).cloned();
        let plan = match &current {
            Some(meta) => meta.plan_init(timeout_ms, expected, now_ms)?,
            None => InitPlan::NewProducerId,
        };
        let next = match plan {
            InitPlan::Write(next) => next,
            InitPlan::FenceAndAbort(fenced) => {
                self.persist(transactional_id, fenced).await?;
                self.spawn_completion(transactional_id.to_owned());
                return Err(ResponseError::ConcurrentTransactions);
            }
            InitPlan::NewProducerId => {
                let producer_id =
                    self.shared.producer_ids.allocate(&self.shared.metadata).await.map_err(|refusal| {
                        tracing::warn!(reason = %refusal.message, "no producer id block from the controller");
                        ResponseError::CoordinatorLoadInProgress
                    })?;
                if self.txns.borrow().get(transactional_id) != current.as_ref() {
                    return Err(ResponseError::ConcurrentTransactions);
                }
                let previous = current.as_ref().map_or(-1, |meta| meta.producer_id);
                TxnMeta::fresh(producer_id, previous, timeout_ms, now_ms)
            }
        };
        let answer = (next.producer_id, next.producer_epoch);
        self.persist(transactional_id, next).await?;
        Ok(answer)
    }

    /// AddPartitionsToTxn and AddOffsetsToTxn: adds partitions to the open transaction.
    ///
    /// # Errors
    /// INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED, CONCURRENT_TRANSACTIONS, INVALID_TXN_STATE.
    /// `transaction_version` 2 marks the id as run by a KIP-890 part 2 client (partitions
    /// added by its produce and offset commits).
    pub(crate) async fn add_partitions(
        &self,
        transactional_id: &str,
        producer: (i64, i16),
        partitions: &[(String, i32)],
        transaction_version: i16,
    ) -> Result<(), ResponseError> {
        self.check(transactional_id)?;
        // Partitions of one transaction arrive together (a transaction version 2 producer's
        // first batches, each added by its leader): each waits for the one being written. The
        // next transaction's first partitions often arrive while the previous one's markers are
        // written: they wait for its completion too, rather than send the client into backoff.
        let deadline = self.shared.clock.now() + PENDING_WAIT;
        loop {
            let listener = self.settled.listen();
            let pending = self.txns.borrow().get(transactional_id).is_some_and(|meta| {
                meta.pending || matches!(meta.status, TxnStatus::PrepareCommit | TxnStatus::PrepareAbort)
            });
            if !pending || self.shared.clock.now() >= deadline {
                break;
            }
            let timeout = self.shared.clock.sleep(deadline - self.shared.clock.now());
            futures_util::future::select(std::pin::pin!(listener), timeout).await;
        }
        self.check(transactional_id)?;
        let planned = {
            let txns = self.txns.borrow();
            let meta = txns.get(transactional_id).ok_or(ResponseError::InvalidProducerIdMapping)?;
            meta.plan_add(producer.0, producer.1, partitions, self.now_ms())?.map(|mut next| {
                if transaction_version >= TRANSACTION_VERSION_2 {
                    next.client_transaction_version = TRANSACTION_VERSION_2;
                }
                next
            })
        };
        match planned {
            None => Ok(()),
            Some(next) => self.persist(transactional_id, next).await,
        }
    }

    /// KIP-890's verification: whether `partition` is in the producer's open transaction.
    ///
    /// # Errors
    /// INVALID_TXN_STATE when it is not, or the coordinator's errors.
    pub(crate) fn verify(
        &self,
        transactional_id: &str,
        producer: (i64, i16),
        partition: &(String, i32),
    ) -> Result<(), ResponseError> {
        self.check(transactional_id)?;
        let txns = self.txns.borrow();
        let meta = txns.get(transactional_id).ok_or(ResponseError::InvalidProducerIdMapping)?;
        meta.verify(producer.0, producer.1, partition)
    }

    /// EndTxn: stores the Prepare state, then writes the markers in the background. Answers
    /// the producer id and epoch the producer goes on with: under transaction version 2 (EndTxn
    /// v5) those of the completed transaction (the epoch bumped, or the next producer id), under
    /// version 1 the ones it has.
    ///
    /// # Errors
    /// INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED, CONCURRENT_TRANSACTIONS, INVALID_TXN_STATE.
    pub(crate) async fn end_txn(
        self: &Rc<Self>,
        transactional_id: &str,
        producer: (i64, i16),
        commit: bool,
        transaction_version: i16,
    ) -> Result<(i64, i16), ResponseError> {
        self.check(transactional_id)?;
        let now_ms = self.now_ms();
        let current =
            self.txns.borrow().get(transactional_id).cloned().ok_or(ResponseError::InvalidProducerIdMapping)?;
        if transaction_version < TRANSACTION_VERSION_2 {
            let Some(next) = current.plan_end(producer.0, producer.1, commit, now_ms)? else { return Ok(producer) };
            self.persist(transactional_id, next).await?;
            self.spawn_completion(transactional_id.to_owned());
            return Ok(producer);
        }
        let next = match current.plan_end_v2(producer.0, producer.1, commit, now_ms)? {
            EndPlan::Done => return Ok((current.producer_id, current.producer_epoch)),
            EndPlan::Write(next) => next,
            EndPlan::WriteWithNewProducerId(mut next) => {
                next.next_producer_id =
                    self.shared.producer_ids.allocate(&self.shared.metadata).await.map_err(|refusal| {
                        tracing::warn!(reason = %refusal.message, "no producer id block from the controller");
                        ResponseError::CoordinatorLoadInProgress
                    })?;
                if self.txns.borrow().get(transactional_id) != Some(&current) {
                    return Err(ResponseError::ConcurrentTransactions);
                }
                next
            }
        };
        let completed = next.completed(now_ms);
        self.persist(transactional_id, next).await?;
        self.spawn_completion(transactional_id.to_owned());
        Ok((completed.producer_id, completed.producer_epoch))
    }

    /// Writes the markers of the id's Prepare state and stores its Complete state, in a task.
    fn spawn_completion(self: &Rc<Self>, transactional_id: String) {
        let coordinator = self.clone();
        compio::runtime::spawn(async move { coordinator.complete(&transactional_id).await }).detach();
    }

    /// Writes the markers of the id's Prepare state, then stores its Complete state. Every round
    /// of markers first checks that this coordinator still owns the id at the epoch the markers
    /// carry: once leadership of its partition moved (or a new epoch began), another
    /// coordinator (or a new completion here) writes them, and two rounds with different
    /// outcomes must never race.
    async fn complete(self: &Rc<Self>, transactional_id: &str) {
        let Ok(coordinator_epoch) = self.check(transactional_id) else { return };
        let Some(meta) = self.txns.borrow().get(transactional_id).cloned() else { return };
        let commit = match meta.status {
            TxnStatus::PrepareCommit => true,
            TxnStatus::PrepareAbort => false,
            _ => return,
        };
        let marker =
            Marker { producer_id: meta.producer_id, producer_epoch: meta.producer_epoch, commit, coordinator_epoch };
        let owned = || self.owns(transactional_id, coordinator_epoch);
        if !markers::write_all(&self.shared, marker, &meta.partitions, owned).await {
            tracing::info!(transactional_id, "the coordinator moved before the markers were written");
            return;
        }
        let current = self.txns.borrow().get(transactional_id).cloned();
        if current.as_ref() != Some(&meta) {
            return;
        }
        if let Err(error) = self.persist(transactional_id, meta.completed(self.now_ms())).await {
            // The Prepare state stays; the next coordinator to load it writes the markers again.
            tracing::warn!(transactional_id, ?error, "could not store a completed transaction");
        }
    }

    /// The timer task: aborts transactions past their timeout, forgets idle ids.
    async fn run_timers(self: Rc<Self>) {
        let abort_every = Duration::from_millis(u64::try_from(self.config.abort_check_interval_ms).unwrap_or(1));
        let mut last_expiry_ms = self.now_ms();
        loop {
            self.shared.clock.sleep(abort_every).await;
            let now_ms = self.now_ms();
            let expired: Vec<(String, TxnMeta)> = self
                .txns
                .borrow()
                .iter()
                .filter(|(_, meta)| meta.expired(now_ms))
                .map(|(id, meta)| (id.clone(), meta.fenced_abort(now_ms)))
                .collect();
            for (id, fenced) in expired {
                tracing::info!(transactional_id = id, "aborting a transaction past its timeout");
                if self.persist(&id, fenced).await.is_ok() {
                    self.spawn_completion(id);
                }
            }
            if now_ms.saturating_sub(last_expiry_ms) >= self.config.expiry_check_interval_ms {
                last_expiry_ms = now_ms;
                self.forget_idle(now_ms).await;
            }
        }
    }

    /// Writes tombstones for ids idle past `transactional.id.expiration.ms` and forgets them.
    async fn forget_idle(&self, now_ms: i64) {
        let idle: Vec<String> = self
            .txns
            .borrow()
            .iter()
            .filter(|(_, meta)| meta.idle_expired(now_ms, self.config.id_expiration_ms))
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            let record = (records::encode_key(&id), None);
            if self.writes.write(self.partition_of(&id), vec![record]).await.is_ok() {
                self.txns.borrow_mut().remove(&id);
                tracing::info!(transactional_id = id, "forgot an idle transactional id");
            }
        }
    }

    /// The ids this shard coordinates, for ListTransactions.
    pub(crate) fn list(&self) -> Vec<DescribedTxn> {
        self.txns.borrow().iter().map(|(id, meta)| describe(id, meta)).collect()
    }

    /// One id, for DescribeTransactions.
    ///
    /// # Errors
    /// TRANSACTIONAL_ID_NOT_FOUND, or NOT_COORDINATOR and the loading errors.
    pub(crate) fn describe(&self, transactional_id: &str) -> Result<DescribedTxn, ResponseError> {
        self.check(transactional_id)?;
        let txns = self.txns.borrow();
        let meta = txns.get(transactional_id).ok_or(ResponseError::TransactionalIdNotFound)?;
        Ok(describe(transactional_id, meta))
    }
}

fn describe(transactional_id: &str, meta: &TxnMeta) -> DescribedTxn {
    DescribedTxn {
        transactional_id: transactional_id.to_owned(),
        producer_id: meta.producer_id,
        producer_epoch: meta.producer_epoch,
        status: meta.status,
        timeout_ms: meta.timeout_ms,
        start_ms: meta.start_ms,
        partitions: meta.partitions.iter().cloned().collect(),
    }
}
