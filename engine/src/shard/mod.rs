//! Shards: one pinned thread per core, each running a single-threaded compio runtime, plus the
//! bounded mailboxes through which other threads reach them.
//!
//! `Shared` is the engine state every handle points to: config, catalog snapshot, mailbox senders
//! and thread handles. Any thread may use it. `ShardState` lives on one shard thread only (stored
//! in a thread local) and owns that shard's partitions.
//!
//! Routing a partition operation:
//! 1. look up the owning shard in the catalog snapshot;
//! 2. on that shard's own thread, run the operation directly;
//! 3. otherwise send a job through the owner's mailbox (waiting when it is full) and await the
//!    answer on a oneshot channel.

pub(crate) mod admin;
mod maintenance;

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, JoinHandle, Thread};

use arc_swap::ArcSwap;

use crate::catalog::{Catalog, META_FILE_NAME};
use crate::config::EngineConfig;
use crate::error::{AppendError, OpenError, ReadError};
use crate::io::DirLock;
use crate::partition::Partition;
use crate::types::{Offset, ShardId, TopicPartition};
use crate::{AppendOptions, AppendResult, OffsetAnswer, OffsetQuery, PartitionOffsets, ReadResult};

/// A closure run on a shard thread with its state; it typically spawns a task.
type ShardClosure = Box<dyn FnOnce(&Rc<ShardState>) + Send>;

/// Work sent to a shard's mailbox.
enum Job {
    /// Run a closure on the shard thread.
    Run(ShardClosure),
    /// Flush and close every partition, answer, and stop the thread.
    Stop(futures_channel::oneshot::Sender<()>),
}

static NEXT_ENGINE_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static CURRENT: RefCell<Option<Rc<ShardState>>> = const { RefCell::new(None) };
}

/// The state of one shard, owned by its thread.
pub(crate) struct ShardState {
    engine_id: u64,
    pub(crate) id: ShardId,
    pub(crate) stats: Arc<crate::stats::ShardStats>,
    pub(crate) partitions: RefCell<HashMap<TopicPartition, Rc<Partition>>>,
}

impl ShardState {
    pub(crate) fn partition(&self, partition: &TopicPartition) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(partition).cloned()
    }

    /// Every partition of this shard, in a stable order.
    pub(crate) fn partition_list(&self) -> Vec<Rc<Partition>> {
        let mut list: Vec<_> = self.partitions.borrow().values().cloned().collect();
        list.sort_by(|left, right| left.id().cmp(right.id()));
        list
    }
}

/// The state shared by every engine handle.
pub(crate) struct Shared {
    pub(crate) config: EngineConfig,
    engine_id: u64,
    shard_count: u16,
    catalog: ArcSwap<Catalog>,
    admin_lock: futures_util::lock::Mutex<()>,
    mailboxes: Vec<async_channel::Sender<Job>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    shutting_down: AtomicBool,
    stats: Vec<Arc<crate::stats::ShardStats>>,
    /// Held from open until the shard threads have stopped.
    dir_lock: Mutex<Option<DirLock>>,
}

/// Why a routed operation did not run.
pub(crate) enum RouteError {
    /// The partition is not in the catalog or not on its shard.
    Missing,
    /// The engine is stopping.
    ShuttingDown,
    /// The operation panicked: the partition is failed until the engine reopens it.
    Panicked,
}

impl Shared {
    pub(crate) fn open(config: EngineConfig) -> Result<Arc<Shared>, OpenError> {
        let data_dir = config.data_dir.clone();
        let dir_error = |source| OpenError::DataDir { path: data_dir.clone(), source };
        std::fs::create_dir_all(&data_dir).map_err(dir_error)?;
        let dir_lock = crate::io::lock_dir(&data_dir)
            .map_err(dir_error)?
            .ok_or_else(|| OpenError::Locked { path: data_dir.clone() })?;
        let shard_count = match config.shard_count {
            Some(0) => return Err(OpenError::Config { reason: "shard_count must be at least 1".to_owned() }),
            Some(count) => count,
            None => thread::available_parallelism().map_or(1, |count| count.get().min(usize::from(u16::MAX)) as u16),
        };
        if config.mailbox_depth == 0 {
            return Err(OpenError::Config { reason: "mailbox_depth must be at least 1".to_owned() });
        }
        let meta_path = data_dir.join(META_FILE_NAME);
        let catalog = Catalog::load(&meta_path, shard_count)
            .map_err(|reason| OpenError::Metadata { path: meta_path.clone(), reason })?;
        admin::remove_deleted_dirs(&data_dir).map_err(dir_error)?;
        admin::remove_stray_dirs(&data_dir, &catalog).map_err(dir_error)?;

        let mut senders = Vec::with_capacity(usize::from(shard_count));
        let mut receivers = Vec::with_capacity(usize::from(shard_count));
        for _ in 0..shard_count {
            let (sender, receiver) = async_channel::bounded(config.mailbox_depth);
            senders.push(sender);
            receivers.push(receiver);
        }
        let shared = Arc::new(Shared {
            config,
            engine_id: NEXT_ENGINE_ID.fetch_add(1, Ordering::Relaxed),
            shard_count,
            catalog: ArcSwap::from_pointee(catalog),
            admin_lock: futures_util::lock::Mutex::new(()),
            mailboxes: senders,
            threads: Mutex::new(Vec::new()),
            shutting_down: AtomicBool::new(false),
            stats: (0..shard_count).map(|_| Arc::new(crate::stats::ShardStats::default())).collect(),
            dir_lock: Mutex::new(Some(dir_lock)),
        });
        shared.start_threads(receivers)?;
        if let Err(error) = block_on(admin::recover_all(&shared)) {
            shared.shutdown();
            return Err(error);
        }
        Ok(shared)
    }

    fn start_threads(self: &Arc<Self>, receivers: Vec<async_channel::Receiver<Job>>) -> Result<(), OpenError> {
        crate::io::remember_unpinned_cpus();
        let core_ids =
            if self.config.pin_shards { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };
        let (ready_sender, ready_receiver) = std::sync::mpsc::channel();
        let mut threads = self.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (index, receiver) in receivers.into_iter().enumerate() {
            let shard = ShardId(index as u16);
            let core = (!core_ids.is_empty()).then(|| core_ids[index % core_ids.len()]);
            let ready = ready_sender.clone();
            let shared = Arc::downgrade(self);
            let identity = ShardIdentity { engine_id: self.engine_id, shard, stats: self.stats[index].clone() };
            let handle = thread::Builder::new()
                .name(format!("sluice-shard-{index}"))
                .spawn(move || run_shard(identity, core, receiver, ready, shared))
                .map_err(|source| OpenError::Shard { shard: shard.0, source })?;
            threads.push(handle);
        }
        drop(threads);
        drop(ready_sender);
        for _ in 0..self.shard_count {
            match ready_receiver.recv() {
                Ok(Ok(())) => {}
                Ok(Err((shard, source))) => {
                    self.shutdown();
                    return Err(OpenError::Shard { shard, source });
                }
                Err(_) => {
                    self.shutdown();
                    return Err(OpenError::Shard { shard: 0, source: std::io::Error::other("shard thread exited") });
                }
            }
        }
        Ok(())
    }

    pub(crate) fn shard_count(&self) -> u16 {
        self.shard_count
    }

    pub(crate) fn catalog(&self) -> arc_swap::Guard<Arc<Catalog>> {
        self.catalog.load()
    }

    pub(crate) fn store_catalog(&self, catalog: Catalog) {
        self.catalog.store(Arc::new(catalog));
    }

    pub(crate) fn current_shard(&self) -> Option<ShardId> {
        CURRENT.with(|current| {
            current.borrow().as_ref().filter(|state| state.engine_id == self.engine_id).map(|state| state.id)
        })
    }

    fn local_state(&self, shard: ShardId) -> Option<Rc<ShardState>> {
        CURRENT.with(|current| {
            current.borrow().as_ref().filter(|state| state.engine_id == self.engine_id && state.id == shard).cloned()
        })
    }

    pub(crate) fn spawn_on<F, Fut>(&self, shard: ShardId, task: F) -> bool
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let Some(mailbox) = self.mailboxes.get(usize::from(shard.0)) else {
            return false;
        };
        if self.shutting_down.load(Ordering::Acquire) {
            return false;
        }
        let job = Job::Run(Box::new(move |_state: &Rc<ShardState>| compio::runtime::spawn(task()).detach()));
        if self.current_shard().is_some() {
            // On a shard thread a full mailbox must not block the thread (its owner may be
            // waiting on this shard): queue the send as a task instead.
            let mailbox = mailbox.clone();
            compio::runtime::spawn(async move {
                let _dropped_when_stopping = mailbox.send(job).await;
            })
            .detach();
            return true;
        }
        mailbox.send_blocking(job).is_ok()
    }

    /// Runs `operation` with the shard state of `shard`, on that shard's thread.
    pub(crate) async fn on_shard<T, F, Fut>(&self, shard: ShardId, operation: F) -> Result<T, RouteError>
    where
        T: Send + 'static,
        F: FnOnce(Rc<ShardState>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(RouteError::ShuttingDown);
        }
        if let Some(state) = self.local_state(shard) {
            return Ok(operation(state).await);
        }
        let mailbox = self.mailboxes.get(usize::from(shard.0)).ok_or(RouteError::Missing)?;
        let (answer_sender, answer_receiver) = futures_channel::oneshot::channel();
        let job = Job::Run(Box::new(move |state: &Rc<ShardState>| {
            let state = state.clone();
            compio::runtime::spawn(async move {
                let _ignored_if_caller_left = answer_sender.send(operation(state).await);
            })
            .detach();
        }));
        mailbox.send(job).await.map_err(|_| RouteError::ShuttingDown)?;
        answer_receiver.await.map_err(|_| RouteError::ShuttingDown)
    }

    /// Runs `operation` on the partition's owning shard with the partition itself.
    pub(crate) async fn on_partition<T, F, Fut>(
        &self,
        partition: &TopicPartition,
        operation: F,
    ) -> Result<T, RouteError>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Partition>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let shard = self.catalog().shard_of(partition).ok_or(RouteError::Missing)?;
        let key = partition.clone();
        self.on_shard(shard, move |state| {
            let found = state.partition(&key);
            async move {
                let partition = found.ok_or(RouteError::Missing)?;
                crate::panic::contain(&partition, operation(partition.clone())).await.ok_or(RouteError::Panicked)
            }
        })
        .await?
    }

    pub(crate) async fn append(
        &self,
        partition: &TopicPartition,
        batch: Vec<u8>,
        options: AppendOptions,
        require_open_transaction: bool,
    ) -> Result<AppendResult, crate::RefusedAppend> {
        let routed =
            self.on_partition(partition, move |log| async move {
                log.append(batch, options, require_open_transaction).await
            })
            .await;
        match routed {
            Ok(result) => result,
            Err(RouteError::Missing) => Err(AppendError::UnknownPartition { partition: partition.clone() }.into()),
            Err(RouteError::ShuttingDown) => Err(AppendError::ShuttingDown.into()),
            Err(RouteError::Panicked) => Err(AppendError::StorageFailed { partition: partition.clone() }.into()),
        }
    }

    pub(crate) async fn read(
        &self,
        partition: &TopicPartition,
        offset: Offset,
        size_bytes_max: u32,
        bound: crate::ReadBound,
    ) -> Result<ReadResult, ReadError> {
        let routed =
            self.on_partition(partition, move |log| async move { log.read(offset, size_bytes_max, bound).await }).await;
        flatten_read(partition, routed)
    }

    pub(crate) async fn read_range(
        &self,
        partition: &TopicPartition,
        offset: Offset,
        size_bytes_max: u32,
        bound: crate::ReadBound,
    ) -> Result<crate::RangeRead, ReadError> {
        let routed = self
            .on_partition(partition, move |log| async move { log.read_range(offset, size_bytes_max, bound).await })
            .await;
        flatten_read(partition, routed)
    }

    pub(crate) async fn append_replica(
        &self,
        partition: &TopicPartition,
        batches: Vec<u8>,
        durable: bool,
    ) -> Result<AppendResult, AppendError> {
        let routed =
            self.on_partition(partition, move |log| async move { log.append_replica(batches, durable).await }).await;
        match routed {
            Ok(result) => result,
            Err(RouteError::Missing) => Err(AppendError::UnknownPartition { partition: partition.clone() }),
            Err(RouteError::ShuttingDown) => Err(AppendError::ShuttingDown),
            Err(RouteError::Panicked) => Err(AppendError::StorageFailed { partition: partition.clone() }),
        }
    }

    pub(crate) async fn truncate_to(&self, partition: &TopicPartition, offset: Offset) -> Result<Offset, ReadError> {
        let routed = self.on_partition(partition, move |log| async move { log.truncate_to(offset).await }).await;
        flatten_read(partition, routed)
    }

    pub(crate) async fn set_high_watermark(
        &self,
        partition: &TopicPartition,
        high_watermark: Option<Offset>,
    ) -> Result<PartitionOffsets, ReadError> {
        let routed = self
            .on_partition(partition, move |log| async move {
                log.set_high_watermark(high_watermark);
                Ok(log.offsets())
            })
            .await;
        flatten_read(partition, routed)
    }

    pub(crate) async fn end_offset_for_epoch(
        &self,
        partition: &TopicPartition,
        epoch: i32,
    ) -> Result<crate::EpochEnd, ReadError> {
        let routed = self.on_partition(partition, move |log| async move { Ok(log.end_offset_for_epoch(epoch)) }).await;
        flatten_read(partition, routed)
    }

    pub(crate) async fn assign_leader_epoch(
        &self,
        partition: &TopicPartition,
        epoch: i32,
    ) -> Result<Offset, ReadError> {
        let routed = self.on_partition(partition, move |log| async move { Ok(log.assign_leader_epoch(epoch)) }).await;
        flatten_read(partition, routed)
    }

    pub(crate) async fn latest_epoch(&self, partition: &TopicPartition) -> Result<Option<i32>, ReadError> {
        let routed = self.on_partition(partition, |log| async move { Ok(log.latest_epoch()) }).await;
        flatten_read(partition, routed)
    }

    pub(crate) async fn offsets(&self, partition: &TopicPartition) -> Result<PartitionOffsets, ReadError> {
        let routed = self.on_partition(partition, |log| async move { Ok(log.offsets()) }).await;
        flatten_read(partition, routed)
    }

    pub(crate) async fn producers(&self, partition: &TopicPartition) -> Result<Vec<crate::ProducerSummary>, ReadError> {
        let routed = self.on_partition(partition, |log| async move { Ok(log.producers()) }).await;
        flatten_read(partition, routed)
    }

    pub(crate) async fn list_offsets(
        &self,
        partition: &TopicPartition,
        query: OffsetQuery,
    ) -> Result<Option<OffsetAnswer>, ReadError> {
        let routed = self.on_partition(partition, move |log| async move { log.list_offsets(query).await }).await;
        flatten_read(partition, routed)
    }

    pub(crate) async fn delete_records(&self, partition: &TopicPartition, offset: Offset) -> Result<Offset, ReadError> {
        let routed = self.on_partition(partition, move |log| async move { log.delete_records(offset).await }).await;
        flatten_read(partition, routed)
    }

    pub(crate) fn storage_stats(&self, shard: ShardId) -> Option<crate::stats::StorageStats> {
        self.stats.get(usize::from(shard.0)).map(|stats| stats.snapshot())
    }

    pub(crate) async fn size_bytes(&self, partition: &TopicPartition) -> Result<u64, ReadError> {
        let routed = self.on_partition(partition, |log| async move { Ok(log.size_bytes()) }).await;
        flatten_read(partition, routed)
    }

    pub(crate) fn shutdown(&self) {
        if self.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut waits = Vec::new();
        for mailbox in &self.mailboxes {
            let (done_sender, done_receiver) = futures_channel::oneshot::channel();
            if mailbox.send_blocking(Job::Stop(done_sender)).is_ok() {
                waits.push(done_receiver);
            }
        }
        let on_shard_thread = CURRENT.with(|current| current.borrow().is_some());
        if on_shard_thread {
            // Joining from a shard thread would wait on itself; the threads stop on their own.
            return;
        }
        for wait in waits {
            let _stopped_or_already_gone = block_on(wait);
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a shard thread panicked");
            }
        }
        // Every partition is closed: another engine may now open the directory.
        drop(self.dir_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take());
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn flatten_read<T>(
    partition: &TopicPartition,
    routed: Result<Result<T, ReadError>, RouteError>,
) -> Result<T, ReadError> {
    match routed {
        Ok(result) => result,
        Err(RouteError::Missing) => Err(ReadError::UnknownPartition { partition: partition.clone() }),
        Err(RouteError::ShuttingDown) => Err(ReadError::ShuttingDown),
        Err(RouteError::Panicked) => Err(ReadError::StorageFailed { partition: partition.clone() }),
    }
}

type ReadySender = std::sync::mpsc::Sender<Result<(), (u16, std::io::Error)>>;

/// What a shard thread is told about itself.
struct ShardIdentity {
    engine_id: u64,
    shard: ShardId,
    stats: Arc<crate::stats::ShardStats>,
}

fn run_shard(
    identity: ShardIdentity,
    core: Option<core_affinity::CoreId>,
    mailbox: async_channel::Receiver<Job>,
    ready: ReadySender,
    shared: std::sync::Weak<Shared>,
) {
    if let Some(core) = core {
        // Pinning is best effort: a container may forbid it, and the shard still works unpinned.
        let _pinned = core_affinity::set_for_current(core);
    }
    let runtime = match new_runtime() {
        Ok(runtime) => runtime,
        Err(source) => {
            let _receiver_may_be_gone = ready.send(Err((identity.shard.0, source)));
            return;
        }
    };
    runtime.block_on(async move {
        let state = Rc::new(ShardState {
            engine_id: identity.engine_id,
            id: identity.shard,
            stats: identity.stats,
            partitions: RefCell::new(HashMap::new()),
        });
        CURRENT.with(|current| *current.borrow_mut() = Some(state.clone()));
        let _receiver_may_be_gone = ready.send(Ok(()));
        drop(ready);
        let (interval_ms, clock) = shared.upgrade().map_or_else(
            || (30_000, crate::clock::SystemClock::shared()),
            |shared| (shared.config.retention_check_interval_ms, shared.config.clock.clone()),
        );
        let maintenance = compio::runtime::spawn(maintenance::run(state.clone(), interval_ms, clock));
        while let Ok(job) = mailbox.recv().await {
            match job {
                Job::Run(run) => run(&state),
                Job::Stop(done) => {
                    drop(maintenance);
                    maintenance::close_all(&state).await;
                    let _caller_may_be_gone = done.send(());
                    break;
                }
            }
        }
        CURRENT.with(|current| *current.borrow_mut() = None);
    });
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Room for tasks woken from other threads before the runtime's thread drains them.
///
/// compio's default is 64, and a thread waking a 65th task spins until the owning thread drains
/// the queue. `event-listener` wakes its listeners while holding its lock, so a thread notifying
/// an event that more than 64 tasks of one shard listen to (every connection listens to the
/// shutdown signal) deadlocks with that shard when the shard is registering a listener on the
/// same event at that moment: seen as a broker that ignored SIGTERM with many connections open.
/// A queue this deep (512 KiB per runtime) holds more tasks than a shard has.
pub const CROSS_THREAD_WAKES_MAX: usize = 1 << 16;

/// A compio runtime for a thread of the engine or of an embedder (shards, the broker's
/// controller), with room for [`CROSS_THREAD_WAKES_MAX`] cross-thread wakes.
///
/// # Errors
/// The runtime could not be created (io_uring setup).
pub fn new_runtime() -> std::io::Result<compio::runtime::Runtime> {
    compio::runtime::RuntimeBuilder::new().sync_queue_size(CROSS_THREAD_WAKES_MAX).build()
}

/// Runs a future to completion on the calling thread, parking it while the future waits.
///
/// For embedders without an executor: every [`crate::Engine`] method may be awaited this way.
/// Do not call it on a shard thread (from a task given to `spawn_on`): it would block the shard.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        thread::park();
    }
}
