//! What request handlers reach: the broker-wide `Shared` state (engine handle, metadata, config,
//! cluster identity, producer ids, shutdown signal, connection count, metrics), and the
//! per-shard `ShardContext` built on each shard thread around it.
//!
//! `Shared` is `Send + Sync` and read by every thread; it holds no lock on the produce or fetch
//! path. `ShardContext` lives on one shard thread (`Rc`), and is where per-shard state such as the
//! group coordinator's goes. Each shard's context is installed in a thread-local when the shard
//! starts serving, before any client is accepted, so that work forwarded to a shard
//! ([`on_shard`]) finds it there.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use event_listener::Event;
use sluice_engine::io::FaultInjector;
use sluice_engine::{Engine, ShardId};

use crate::config::BrokerConfig;
use crate::groups::GroupShard;
use crate::metrics::ShardMetrics;
use crate::net::limits::ConnectionCounter;
use crate::net::send::PipePool;
use crate::producer_ids::ProducerIds;

/// How clients see this broker.
#[derive(Debug, Clone)]
pub(crate) struct ClusterIdentity {
    /// This broker's node id.
    pub(crate) node_id: i32,
    /// The advertised host.
    pub(crate) host: String,
    /// The advertised port.
    pub(crate) port: i32,
    /// Every advertised listener's endpoint (`host` and `port` are the inter-broker one's).
    pub(crate) listeners: Vec<crate::security::listeners::Endpoint>,
    /// Kafka's `listeners` value, as bound.
    pub(crate) bound: String,
}

/// The broker-wide stop signal: set once, never cleared.
///
/// A task on a shard waits on that shard's own event, and only a task on the same shard notifies
/// it. A notification from another thread would wake the shard's tasks through its runtime's
/// queue of cross-thread wakes while holding the event's lock; with the queue full, it would
/// spin there, while the shard, blocked on that lock to register a listener, could never drain
/// the queue.
#[derive(Debug)]
pub(crate) struct Shutdown {
    started: AtomicBool,
    /// For waiters off the shards (the controller's thread).
    event: Event,
    /// One per shard, notified on that shard's thread.
    shard_events: Vec<Arc<Event>>,
}

impl Shutdown {
    /// A signal for an engine of `shards` shards.
    pub(crate) fn new(shards: u16) -> Self {
        Self {
            started: AtomicBool::new(false),
            event: Event::new(),
            shard_events: (0..shards).map(|_| Arc::new(Event::new())).collect(),
        }
    }

    /// Starts shutdown: listeners stop accepting, connections stop reading, long polls return.
    /// Each shard's waiters are woken by a task spawned on that shard.
    pub(crate) fn trigger(&self, engine: &Engine) {
        self.started.store(true, Ordering::Release);
        self.event.notify(usize::MAX);
        for (index, event) in self.shard_events.iter().enumerate() {
            let event = Arc::clone(event);
            // A shard already stopped has nobody waiting.
            let _spawned = engine.spawn_on(ShardId(index as u16), move || async move {
                event.notify(usize::MAX);
            });
        }
    }

    /// Whether shutdown has started.
    pub(crate) fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Completes once shutdown has started.
    pub(crate) async fn wait(&self, engine: &Engine) {
        let event = engine
            .current_shard()
            .and_then(|shard| self.shard_events.get(usize::from(shard.0)))
            .map_or(&self.event, |event| &**event);
        loop {
            if self.is_started() {
                return;
            }
            let listener = event.listen();
            if self.is_started() {
                return;
            }
            listener.await;
        }
    }
}

/// State shared by every shard.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The log engine.
    pub(crate) engine: Engine,
    /// The resolved configuration.
    pub(crate) config: BrokerConfig,
    /// Node id and advertised address (the cluster id is in the metadata image).
    pub(crate) identity: ClusterIdentity,
    /// Producer id blocks.
    pub(crate) producer_ids: ProducerIds,
    /// The stop signal.
    pub(crate) shutdown: Shutdown,
    /// Open connections over all shards.
    pub(crate) connections: Arc<ConnectionCounter>,
    /// Metrics, indexed by shard.
    pub(crate) metrics: Vec<ShardMetrics>,
    /// The storage fault injector, only when `SLUICE_FAULT_INJECTION=1` (see `faults`).
    pub(crate) faults: Option<Arc<FaultInjector>>,
    /// Where time comes from (the config's clock).
    pub(crate) clock: sluice_engine::clock::SharedClock,
    /// The cluster metadata, and the way to the controller.
    pub(crate) metadata: Arc<crate::metadata::Metadata>,
    /// How this broker connects to other brokers (their inter-broker listener).
    pub(crate) peers: crate::net::peer::Connector,
    /// Client quota rates, shared by the shards.
    pub(crate) quotas: crate::quota::Quotas,
}

/// Everything a handler running on one shard can reach.
#[derive(Debug)]
pub(crate) struct ShardContext {
    /// Broker-wide state.
    pub(crate) shared: Arc<Shared>,
    /// The shard this context belongs to.
    pub(crate) shard: ShardId,
    /// This shard's part of the group coordinator.
    pub(crate) groups: GroupShard,
    /// This shard's transaction coordinator.
    pub(crate) transactions: Rc<crate::transactions::TxnCoordinator>,
    /// Keeps transactional producers' pipelined appends in order across verification.
    pub(crate) txn_append_order: Rc<crate::transactions::ordering::AppendOrder>,
    /// Pipes for sending file ranges with `splice`.
    pub(crate) pipes: PipePool,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<ShardContext>>> = const { RefCell::new(None) };
}

impl ShardContext {
    /// Builds the calling shard's context and installs it for work forwarded to this shard.
    pub(crate) fn install(shared: Arc<Shared>, shard: ShardId) -> Rc<Self> {
        let groups = GroupShard::new(&shared, shard);
        let transactions = crate::transactions::TxnCoordinator::start(&shared, shard);
        let context = Rc::new(Self {
            shared,
            shard,
            groups,
            transactions,
            txn_append_order: Rc::default(),
            pipes: PipePool::default(),
        });
        CURRENT.with(|current| *current.borrow_mut() = Some(context.clone()));
        context
    }

    /// The calling shard's installed context.
    pub(crate) fn current() -> Option<Rc<Self>> {
        CURRENT.with(|current| current.borrow().clone())
    }

    /// The metadata image now.
    pub(crate) fn image(&self) -> Arc<crate::metadata::MetadataImage> {
        self.shared.metadata.image()
    }

    /// The metadata image now, for a short look on a hot path (see `Metadata::peek_image`).
    pub(crate) fn peek_image(&self) -> arc_swap::Guard<Arc<crate::metadata::MetadataImage>> {
        self.shared.metadata.peek_image()
    }

    /// This broker's node id.
    pub(crate) fn node_id(&self) -> i32 {
        self.shared.identity.node_id
    }

    /// The engine handle.
    pub(crate) fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// The broker configuration.
    pub(crate) fn config(&self) -> &BrokerConfig {
        &self.shared.config
    }

    /// This shard's metrics.
    pub(crate) fn metrics(&self) -> &ShardMetrics {
        &self.shared.metrics[usize::from(self.shard.0)]
    }
}

/// Why work forwarded to a shard did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShardGone;

/// Runs `task` with the context of shard `target` (directly when the caller is on it, through
/// the engine's mailbox otherwise) and returns its answer.
///
/// # Errors
/// [`ShardGone`] when the shard stopped (shutdown) or has no context installed yet.
pub(crate) async fn on_shard<T, F, Fut>(engine: &Engine, target: ShardId, task: F) -> Result<T, ShardGone>
where
    F: FnOnce(Rc<ShardContext>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    if let Some(context) = ShardContext::current().filter(|context| context.shard == target) {
        return Ok(task(context).await);
    }
    let (sender, receiver) = futures_channel::oneshot::channel();
    let spawned = engine.spawn_on(target, move || async move {
        let Some(context) = ShardContext::current() else {
            tracing::error!(shard = target.0, "work forwarded to a shard that serves nothing yet");
            return;
        };
        let _requester_gone = sender.send(task(context).await);
    });
    if !spawned {
        return Err(ShardGone);
    }
    receiver.await.map_err(|_| ShardGone)
}
