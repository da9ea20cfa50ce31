//! The controller quorum: the metadata log, replicated by Raft (the `openraft` crate) over the
//! controller listeners of the quorum's nodes, and the active controller that writes it.
//!
//! - `types`: openraft's type configuration; an entry is one batch of metadata records;
//! - `log_store`, `state_machine`: the log and the metadata image it builds, on disk;
//! - `network`: the controller listener's protocol (Raft messages and forwarded requests);
//! - `wire`: controller requests and answers;
//! - `active`: the active controller's decisions, pure functions of the image;
//! - `liveness`: broker sessions, fenced when their heartbeats stop;
//! - this module: the controller thread, and [`Handle`], how the rest of the broker reaches it.
//!
//! Everything of the quorum runs on one thread, `sluice-controller`, with its own compio
//! runtime: openraft's core and its storage and network tasks, the controller listener, the
//! publisher that hands each applied image to the broker's [`Metadata`], the broker's heartbeats
//! and, on the active controller, the session checker. Shards reach it through a channel.
//!
//! A request's path: a shard sends it over [`Handle::call`]; the controller thread decides it
//! when this node leads the quorum, or forwards it over the controller listener to the node that
//! does (trying the configured voters when no leader is known), retrying while leadership moves;
//! the active controller decides it against the image (after a read barrier, so a new leader
//! decides on everything committed before it), writes the records as one entry and answers once
//! the entry is committed and applied; the asking node then waits until its own broker has
//! published that entry, and only then answers the shard. So a client that created a topic
//! through a broker finds it in that broker's Metadata at once.
//!
//! A single node (no `--controller-quorum-voters`) is its own one-voter quorum: the same path,
//! with no listener and no network.

pub(crate) mod active;
pub(crate) mod liveness;
pub(crate) mod log_store;
pub(crate) mod network;
pub(crate) mod state_machine;
pub(crate) mod types;
pub(crate) mod wire;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::LocalBoxFuture;
use openraft::async_runtime::WatchReceiver as _;
use openraft::{Config, ReadPolicy, SnapshotPolicy};
use sluice_engine::clock::SharedClock;

use crate::metadata::image::BrokerRegistration;
use crate::metadata::{Metadata, MetadataImage};
use network::{CONTROLLER_CALL_TIMEOUT, Client, ControllerService, Network, Request, Response};
use state_machine::{Handoff, StateMachine};
use types::{MetadataBatch, QuorumNode, Raft};
use wire::{ControllerAnswer, ControllerRequest, Outcome, QuorumDescription, ReplicaProgress};

/// How long a request keeps looking for an active controller before the asker is told none is
/// available.
const FIND_CONTROLLER_TIMEOUT: Duration = Duration::from_secs(15);
/// The pause between attempts while no controller answers.
const RETRY_BACKOFF: Duration = Duration::from_millis(50);
/// How long an answered request waits for this broker to publish what it wrote.
const PUBLISH_WAIT: Duration = Duration::from_secs(10);
/// How often a broker catching up at startup says how far it is.
const CATCH_UP_REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// How often the active controller looks for expired broker sessions.
const SESSION_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// The metadata directory's name in the data directory.
pub(crate) const DIR_NAME: &str = "metadata";

/// Raft timing: a leader heartbeats its followers every 150 ms; a follower that hears nothing
/// for 1 to 2 s starts an election, so a dead controller is replaced within a few seconds
/// (3.4 s median after SIGKILL, measured on loopback: docs/benchmarks.md).
fn raft_config(snapshot_entries: u64) -> Result<Config, String> {
    let config = Config {
        cluster_name: "sluice-metadata".to_owned(),
        heartbeat_interval: 150,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        // A snapshot of the image every `snapshot_entries` entries bounds the log; a node that
        // fell further behind installs the leader's snapshot. A tenth of that stays in the log
        // so that a node just a little behind still catches up from entries.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_entries),
        max_in_snapshot_log_to_keep: snapshot_entries / 10,
        ..Config::default()
    };
    config.validate().map_err(|error| error.to_string())
}

/// What the controller thread needs.
#[derive(Debug)]
pub(crate) struct Setup {
    pub(crate) node_id: i32,
    /// The data directory; the quorum's files are in its `metadata` directory.
    pub(crate) data_dir: PathBuf,
    /// The voters: node id and controller listener. Empty: this node alone.
    pub(crate) voters: Vec<(i32, String)>,
    /// Whether this node votes (otherwise it follows the log as a learner).
    pub(crate) voter: bool,
    /// The controller listener, bound by the caller (`None` for a single node).
    pub(crate) listener: Option<std::net::TcpListener>,
    /// Where other nodes reach this node's listener (a learner tells the leader).
    pub(crate) address: String,
    pub(crate) session_timeout: Duration,
    pub(crate) heartbeat_interval: Duration,
    /// Metadata log entries between snapshots.
    pub(crate) snapshot_entries: u64,
    pub(crate) clock: SharedClock,
    /// How the controller listener's connections are secured, both ends.
    pub(crate) transport: Arc<crate::security::controller_listener::ControllerTransport>,
}

/// The quorum as this node last saw it, readable from any thread.
#[derive(Debug, Clone, Default)]
pub(crate) struct QuorumStatus {
    /// The active controller's node id.
    pub(crate) leader: Option<i32>,
    pub(crate) term: u64,
}

enum Command {
    Call { request: ControllerRequest, reply: futures_channel::oneshot::Sender<ControllerAnswer> },
    Register { registration: BrokerRegistration, reply: futures_channel::oneshot::Sender<ControllerAnswer> },
    Stop { controlled: bool, reply: std::sync::mpsc::Sender<()> },
}

/// How the broker reaches its controller thread; shared by every thread.
#[derive(Debug)]
pub(crate) struct Handle {
    commands: async_channel::Sender<Command>,
    status: Arc<Mutex<QuorumStatus>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Call { request, .. } => write!(f, "Call({request:?})"),
            Self::Register { registration, .. } => write!(f, "Register({registration:?})"),
            Self::Stop { controlled, .. } => write!(f, "Stop {{ controlled: {controlled} }}"),
        }
    }
}

impl Handle {
    /// Starts the controller thread: opens the metadata log, starts Raft (initializing a new
    /// quorum's log), and the publisher that brings `metadata` in line with every applied
    /// entry. Returns once Raft runs.
    ///
    /// # Errors
    /// A description when the log cannot be opened or Raft does not start.
    pub(crate) fn start(setup: Setup, metadata: Arc<Metadata>) -> Result<Self, String> {
        let (commands, receiver) = async_channel::unbounded();
        let status = Arc::new(Mutex::new(QuorumStatus::default()));
        let (ready, started) = std::sync::mpsc::channel();
        let thread_status = status.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-controller".to_owned())
            .spawn(move || {
                let runtime = match sluice_engine::new_runtime() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _gone = ready.send(Err(format!("controller runtime: {error}")));
                        return;
                    }
                };
                runtime.block_on(crate::crash::abort_on_panic(
                    "controller",
                    run(setup, metadata, receiver, thread_status, ready),
                ));
            })
            .map_err(|error| format!("controller thread: {error}"))?;
        match started.recv() {
            Ok(Ok(())) => Ok(Self { commands, status, thread: Mutex::new(Some(thread)) }),
            Ok(Err(reason)) => {
                let _ended = thread.join();
                Err(reason)
            }
            Err(_) => Err("the controller thread stopped while starting".to_owned()),
        }
    }

    /// Sends `request` to the active controller and returns its answer once this broker has
    /// published what it wrote.
    pub(crate) async fn call(&self, request: ControllerRequest) -> ControllerAnswer {
        let (reply, answer) = futures_channel::oneshot::channel();
        if self.commands.send(Command::Call { request, reply }).await.is_err() {
            return ControllerAnswer::Unavailable("the controller has stopped".to_owned());
        }
        answer.await.unwrap_or_else(|_| ControllerAnswer::Unavailable("the controller has stopped".to_owned()))
    }

    /// Registers this broker, then keeps its session alive with heartbeats.
    pub(crate) async fn register(&self, registration: BrokerRegistration) -> ControllerAnswer {
        let (reply, answer) = futures_channel::oneshot::channel();
        if self.commands.send(Command::Register { registration, reply }).await.is_err() {
            return ControllerAnswer::Unavailable("the controller has stopped".to_owned());
        }
        answer.await.unwrap_or_else(|_| ControllerAnswer::Unavailable("the controller has stopped".to_owned()))
    }

    /// The quorum as this node last saw it.
    pub(crate) fn status(&self) -> QuorumStatus {
        self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Stops the controller thread; with `controlled`, first has the active controller fence
    /// this broker so that what it leads moves at once. Blocks until the thread ends.
    pub(crate) fn stop(&self, controlled: bool) {
        let (reply, stopped) = std::sync::mpsc::channel();
        if self.commands.send_blocking(Command::Stop { controlled, reply }).is_ok() {
            let _stopped_or_gone = stopped.recv();
        }
        let thread = self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the controller thread panicked");
        }
    }
}

/// The controller thread's state.
struct Node {
    id: i32,
    raft: Raft,
    handoff: Rc<Handoff>,
    metadata: Arc<Metadata>,
    voters: Vec<(i32, String)>,
    /// One decision at a time on the active controller, each against the image its
    /// predecessor left.
    decisions: futures_util::lock::Mutex<()>,
    liveness: RefCell<liveness::Liveness>,
    /// Clients of other nodes, for forwarded requests, by node id.
    clients: RefCell<BTreeMap<i32, Client>>,
    /// The voter to try next when no leader is known.
    next_voter: Cell<usize>,
    /// This broker's registration, once registered.
    registration: RefCell<Option<BrokerRegistration>>,
    /// Whether this node is one of several (it then catches up before publishing).
    clustered: bool,
    /// From which log index the publisher hands images to the broker.
    gate: Rc<PublishGate>,
    /// `--broker-session-timeout-ms`: bounds how long a heartbeat may wait on one controller.
    session_timeout: Duration,
    clock: SharedClock,
    /// How connections to other nodes are secured.
    transport: Arc<crate::security::controller_listener::ControllerTransport>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).finish_non_exhaustive()
    }
}

async fn run(
    setup: Setup,
    metadata: Arc<Metadata>,
    commands: async_channel::Receiver<Command>,
    status: Arc<Mutex<QuorumStatus>>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let started = start_raft(&setup).await;
    let (raft, handoff, committed_at_start) = match started {
        Ok(started) => started,
        Err(reason) => {
            let _gone = ready.send(Err(reason));
            return;
        }
    };
    // A single node publishes from what it had committed before it stopped; a node of a
    // cluster, once it has caught up (see the module docs).
    let clustered = !setup.voters.is_empty();
    let gate = Rc::new(PublishGate::new((!clustered).then_some(committed_at_start)));
    let node = Rc::new(Node {
        id: setup.node_id,
        raft: raft.clone(),
        handoff: handoff.clone(),
        metadata: metadata.clone(),
        voters: setup.voters.clone(),
        decisions: futures_util::lock::Mutex::new(()),
        liveness: RefCell::new(liveness::Liveness::new(setup.session_timeout)),
        clients: RefCell::new(BTreeMap::new()),
        next_voter: Cell::new(setup.node_id.unsigned_abs() as usize),
        registration: RefCell::new(None),
        clustered,
        gate: gate.clone(),
        session_timeout: setup.session_timeout,
        clock: setup.clock.clone(),
        transport: setup.transport.clone(),
    });
    let (stop_sender, stop) = futures_channel::oneshot::channel::<()>();
    let stop = stop.shared();
    // Named, so that a task that does not end at shutdown can be told.
    let mut tasks = vec![
        ("publisher", compio::runtime::spawn(publish(handoff, metadata, gate, stop.clone()))),
        ("quorum status", compio::runtime::spawn(watch_status(raft.clone(), status, stop.clone()))),
        ("session checker", compio::runtime::spawn(check_sessions(node.clone(), stop.clone()))),
    ];
    if let Some(listener) = setup.listener {
        match listener.set_nonblocking(true).and_then(|()| compio::net::TcpListener::from_std(listener)) {
            Ok(listener) => {
                let admission = Rc::new(network::Admission {
                    acceptor: setup.transport.acceptor(),
                    handoff: node.handoff.clone(),
                    clock: setup.clock.clone(),
                });
                let id = setup.node_id as u64;
                let server = network::serve(listener, raft.clone(), id, node.clone(), admission, stop.clone());
                tasks.push(("controller listener", compio::runtime::spawn(server)));
            }
            Err(error) => {
                let _gone = ready.send(Err(format!("controller listener: {error}")));
                return;
            }
        }
    }
    if !setup.voter {
        // A broker-only node asks the active controller to replicate the log to it.
        let request = ControllerRequest::AddLearner { node_id: setup.node_id, address: setup.address.clone() };
        let answer = node.clone().serve_local(request).await;
        if !matches!(answer, ControllerAnswer::Done { .. }) {
            let _gone = ready.send(Err(format!("no controller added this node as a learner: {answer:?}")));
            return;
        }
    }
    let _waiting = ready.send(Ok(()));
    let heartbeat_interval = setup.heartbeat_interval;
    while let Ok(command) = commands.recv().await {
        match command {
            Command::Call { request, reply } => {
                let node = node.clone();
                compio::runtime::spawn(async move {
                    let answer = node.call_and_publish(request).await;
                    let _asker_gone = reply.send(answer);
                })
                .detach();
            }
            Command::Register { registration, reply } => {
                // In a task of its own: catching up may take long, and the requests the first
                // published images cause (ISR changes, producer ids) must not wait behind it.
                let task = register_and_heartbeat(node.clone(), registration, reply, heartbeat_interval, stop.clone());
                tasks.push(("registration and heartbeats", compio::runtime::spawn(task)));
            }
            Command::Stop { controlled, reply } => {
                stop_node(&node, controlled, stop_sender, tasks).await;
                let _asker_gone = reply.send(());
                break;
            }
        }
    }
}

/// Stops the controller thread's work: with `controlled`, first has the active controller fence
/// this broker; then replication, Raft, and (through `stop_sender`) every task of `tasks`.
async fn stop_node(
    node: &Rc<Node>,
    controlled: bool,
    stop_sender: futures_channel::oneshot::Sender<()>,
    tasks: Vec<(&'static str, compio::runtime::JoinHandle<()>)>,
) {
    let registration = node.registration.borrow().clone();
    if controlled && let Some(registration) = registration {
        let request = ControllerRequest::ControlledShutdown {
            node_id: registration.node_id,
            incarnation: registration.incarnation,
        };
        let shutdown = node.clone().serve_local(request);
        if compio::time::timeout(Duration::from_secs(5), shutdown).await.is_err() {
            tracing::warn!("controlled shutdown: no controller answered in time");
        } else {
            tracing::info!("controlled shutdown: leadership moved away");
        }
    }
    // Fetchers and the ISR check run on this thread too: they end before Raft does.
    node.metadata.replication().stop();
    match compio::time::timeout(Duration::from_secs(10), node.raft.shutdown()).await {
        Ok(Ok(())) => tracing::info!("controller: raft stopped"),
        Ok(Err(error)) => tracing::warn!(%error, "controller: raft did not stop cleanly"),
        Err(_) => tracing::warn!("controller: raft did not stop within 10 s; leaving it"),
    }
    let _stopped = stop_sender.send(());
    for (task_name, task) in tasks {
        if compio::time::timeout(Duration::from_secs(5), task).await.is_err() {
            tracing::warn!(task = task_name, "controller: a task did not end within 5 s; leaving it");
        }
    }
    node.clients.borrow_mut().clear();
}

/// Opens the log and state machine, starts Raft, and initializes a new quorum's log.
async fn start_raft(setup: &Setup) -> Result<(Raft, Rc<Handoff>, u64), String> {
    let dir = setup.data_dir.join(DIR_NAME);
    let fail = |what: &str, error: &dyn std::fmt::Display| format!("{}: {what}: {error}", dir.display());
    let log = log_store::LogStore::open(&dir).map_err(|error| fail("metadata log", &error))?;
    let committed = log.committed_index();
    let handoff = Rc::new(Handoff::default());
    let state_machine = StateMachine::open(&dir, handoff.clone()).map_err(|error| fail("snapshot", &error))?;
    let config = Arc::new(raft_config(setup.snapshot_entries)?);
    let network = Network { node_id: setup.node_id as u64, transport: setup.transport.clone() };
    let raft = Raft::new(setup.node_id as u64, config, network, log, state_machine)
        .await
        .map_err(|error| format!("raft: {error}"))?;
    let initialized = raft.is_initialized().await.map_err(|error| format!("raft: {error}"))?;
    if !initialized && setup.voter {
        // A new quorum: every voter proposes the same membership; Raft elects one leader.
        let members: BTreeMap<u64, QuorumNode> = if setup.voters.is_empty() {
            BTreeMap::from([(setup.node_id as u64, QuorumNode::default())])
        } else {
            setup.voters.iter().map(|(id, address)| (*id as u64, QuorumNode { address: address.clone() })).collect()
        };
        if let Err(error) = raft.initialize(members).await {
            // Another voter's membership reached this node first: nothing to do.
            tracing::debug!(%error, "metadata log already initialized");
        }
    }
    Ok((raft, handoff, committed))
}

/// From which metadata log index this node's publisher hands images to the broker: none
/// before it is opened.
///
/// A single node opens it at once, at the index it knew committed when it stopped (so a
/// restarted broker never goes back to an older image than it served). A node of a cluster
/// opens it at the index of its own registration, once registered: its log on disk may lag
/// the quorum's by any amount, and an image from it may name this broker leader of partitions
/// that have since moved, at epochs since replaced. Acting on such an image (loading
/// coordinators and resuming their transactions, taking the ISR for in sync, fetching from old
/// leaders) would race the brokers that lead now, so nothing is published before then.
#[derive(Debug)]
struct PublishGate {
    floor: Cell<Option<u64>>,
}

impl PublishGate {
    fn new(floor: Option<u64>) -> Self {
        Self { floor: Cell::new(floor) }
    }

    /// The index an image must have reached to be published; `None` while closed.
    fn floor(&self) -> Option<u64> {
        self.floor.get()
    }

    /// Opens the gate at `index` (or keeps a higher floor), waking the publisher.
    fn open(&self, index: u64, handoff: &Handoff) {
        let floor = self.floor.get().map_or(index, |floor| floor.max(index));
        self.floor.set(Some(floor));
        handoff.changed.notify(usize::MAX);
    }
}

/// Hands each applied image to the broker's metadata, in order, once `gate` is open and the
/// state machine has reached its floor.
async fn publish(
    handoff: Rc<Handoff>,
    metadata: Arc<Metadata>,
    gate: Rc<PublishGate>,
    stop: futures_util::future::Shared<futures_channel::oneshot::Receiver<()>>,
) {
    let mut published = 0u64;
    loop {
        let changed = handoff.changed.listen();
        let (image, index) = {
            let latest = handoff.latest.borrow();
            (latest.image.clone(), latest.index)
        };
        let reached = gate.floor().is_some_and(|floor| index >= floor);
        // An image without a cluster id is a new log's, before its first entry: publishing it
        // would remove the logs of a data directory about to be adopted.
        if reached && index > published && !image.cluster_id.is_empty() {
            metadata.publish(image, index).await;
            published = index;
            continue;
        }
        let woken = std::pin::pin!(changed);
        if let futures_util::future::Either::Right(_) = futures_util::future::select(woken, stop.clone()).await {
            return;
        }
    }
}

/// Keeps [`QuorumStatus`] up to date from Raft's metrics.
async fn watch_status(
    raft: Raft,
    status: Arc<Mutex<QuorumStatus>>,
    stop: futures_util::future::Shared<futures_channel::oneshot::Receiver<()>>,
) {
    let mut metrics = raft.metrics();
    let mut last_leader = None;
    loop {
        let next = {
            // Copied at once: holding the borrow across an await would block Raft's core.
            let current = metrics.borrow_watched().clone();
            QuorumStatus { leader: current.current_leader.map(|id| id as i32), term: current.current_term }
        };
        if next.leader != last_leader {
            tracing::info!(leader = ?next.leader, term = next.term, "controller quorum: active controller changed");
            last_leader = next.leader;
        }
        *status.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        let changed = std::pin::pin!(metrics.changed());
        match futures_util::future::select(changed, stop.clone()).await {
            futures_util::future::Either::Left((Ok(()), _)) => {}
            _ => return,
        }
    }
}

/// Registers this broker ([`Node::register`]), answers `reply`, then heartbeats until `stop`.
async fn register_and_heartbeat(
    node: Rc<Node>,
    registration: BrokerRegistration,
    reply: futures_channel::oneshot::Sender<ControllerAnswer>,
    interval: Duration,
    stop: futures_util::future::Shared<futures_channel::oneshot::Receiver<()>>,
) {
    let registering = std::pin::pin!(node.clone().register(registration));
    let answer = match futures_util::future::select(registering, stop.clone()).await {
        futures_util::future::Either::Left((answer, _)) => answer,
        futures_util::future::Either::Right(_) => return,
    };
    let registered = matches!(answer, ControllerAnswer::Done { .. });
    let _asker_gone = reply.send(answer);
    if registered {
        heartbeat(node, interval, stop).await;
    }
}

/// This broker's heartbeats: every `interval`, to the active controller; registers again when
/// the controller no longer knows this incarnation.
async fn heartbeat(
    node: Rc<Node>,
    interval: Duration,
    stop: futures_util::future::Shared<futures_channel::oneshot::Receiver<()>>,
) {
    loop {
        let pause = std::pin::pin!(compio::time::sleep(interval));
        if let futures_util::future::Either::Right(_) = futures_util::future::select(pause, stop.clone()).await {
            return;
        }
        let Some(registration) = node.registration.borrow().clone() else { return };
        let request =
            ControllerRequest::Heartbeat { node_id: registration.node_id, incarnation: registration.incarnation };
        match node.clone().serve_local(request).await {
            ControllerAnswer::Done { outcome: Outcome::Heartbeat { registered: false, .. }, .. } => {
                tracing::warn!("the controller does not know this broker's registration: registering again");
                let answer = node.clone().serve_local(ControllerRequest::RegisterBroker(registration)).await;
                if !matches!(answer, ControllerAnswer::Done { .. }) {
                    tracing::warn!(?answer, "registering again failed; retrying at the next heartbeat");
                }
            }
            ControllerAnswer::Done { .. } => {}
            answer => tracing::debug!(?answer, "heartbeat not answered"),
        }
    }
}

/// On the active controller: fences brokers whose sessions expired.
async fn check_sessions(node: Rc<Node>, stop: futures_util::future::Shared<futures_channel::oneshot::Receiver<()>>) {
    let mut leading = false;
    loop {
        let pause = std::pin::pin!(compio::time::sleep(SESSION_CHECK_INTERVAL));
        if let futures_util::future::Either::Right(_) = futures_util::future::select(pause, stop.clone()).await {
            return;
        }
        let now = node.clock.now();
        if node.raft.as_leader().is_err() {
            leading = false;
            continue;
        }
        let image = node.handoff.latest.borrow().image.clone();
        if !leading {
            leading = true;
            node.liveness.borrow_mut().restart(&image, now);
            continue;
        }
        let expired = node.liveness.borrow_mut().expired(&image, now);
        for node_id in expired {
            if node_id == node.id {
                // This node's own broker heartbeats through this thread; it cannot be silent
                // while the thread runs.
                continue;
            }
            tracing::warn!(node_id, "fencing a broker whose heartbeats stopped");
            let answer = node
                .decide(|image| {
                    let still_live = image.brokers.get(&node_id).is_some_and(|broker| !broker.fenced);
                    let records = if still_live { active::fence(image, node_id) } else { Vec::new() };
                    (records, Outcome::One(Ok(())))
                })
                .await;
            if !matches!(answer, ControllerAnswer::Done { .. }) {
                tracing::warn!(node_id, ?answer, "fencing failed; retrying");
            }
        }
    }
}

impl Node {
    /// Serves a request from this node's broker, then waits for the broker to publish what it
    /// wrote. Before the broker has caught up it publishes nothing, and serves no one to whom
    /// the change must be visible: the only such request, the cluster's initialization at
    /// startup, is answered once committed.
    async fn call_and_publish(self: Rc<Self>, request: ControllerRequest) -> ControllerAnswer {
        let answer = self.clone().serve_local(request).await;
        if let ControllerAnswer::Done { index, .. } = &answer
            && self.gate.floor().is_some()
        {
            let index = *index;
            let waited = compio::time::timeout(PUBLISH_WAIT, self.metadata.wait_published(index)).await;
            if waited.is_err() {
                tracing::warn!(index, "metadata: this broker has not published a committed change in time");
            }
        }
        answer
    }

    /// Registers this broker and returns once it may serve clients: a single node once it has
    /// published its registration; a node of a cluster registers fenced, catches up to its
    /// registration, then is unfenced (the module docs' steps). No deadline: see the module docs.
    async fn register(self: Rc<Self>, registration: BrokerRegistration) -> ControllerAnswer {
        if !self.clustered {
            let answer = self.clone().call_and_publish(ControllerRequest::RegisterBroker(registration.clone())).await;
            if matches!(answer, ControllerAnswer::Done { .. }) {
                *self.registration.borrow_mut() = Some(registration);
            }
            return answer;
        }
        let answer = self.clone().serve_local(ControllerRequest::RegisterBroker(registration.clone())).await;
        let ControllerAnswer::Done { index, .. } = answer else { return answer };
        let request =
            ControllerRequest::Heartbeat { node_id: registration.node_id, incarnation: registration.incarnation };
        *self.registration.borrow_mut() = Some(registration);
        self.catch_up(index).await;
        // Caught up: the heartbeat unfences this broker (and elects it where it is the only
        // eligible leader left); the periodic heartbeats retry if this one fails.
        match self.clone().call_and_publish(request).await {
            ControllerAnswer::Done { outcome: Outcome::Heartbeat { registered: true, .. }, .. } => {}
            answer => tracing::warn!(?answer, "not unfenced yet; the heartbeats will ask again"),
        }
        answer
    }

    /// Opens the publisher's gate at `index` and waits until the broker has published that
    /// index, saying every so often how far it is.
    async fn catch_up(&self, index: u64) {
        tracing::info!(index, "metadata: registered; catching up with the metadata log before serving");
        self.gate.open(index, &self.handoff);
        while compio::time::timeout(CATCH_UP_REPORT_INTERVAL, self.metadata.wait_published(index)).await.is_err() {
            let applied = self.handoff.latest.borrow().index;
            tracing::warn!(
                index,
                applied,
                published = self.metadata.published_index(),
                "metadata: still catching up with the metadata log; not serving clients until then"
            );
        }
        tracing::info!(index, "metadata: caught up with the metadata log");
    }

    /// Serves a request from this node's broker: decides it when this node is the active
    /// controller, forwards it otherwise; retries while no controller answers.
    async fn serve_local(self: Rc<Self>, request: ControllerRequest) -> ControllerAnswer {
        let (call_timeout, give_up) = self.timeouts(&request);
        let deadline = self.clock.now() + give_up;
        let mut target: Option<(i32, String)> = None;
        loop {
            let answer = match &target {
                Some((id, address)) if *id != self.id => {
                    self.forward(*id, address, request.clone(), call_timeout).await
                }
                _ => self.clone().serve_as_leader(request.clone()).await,
            };
            let hint = match answer {
                ControllerAnswer::Done { .. } => return answer,
                ControllerAnswer::NotController { leader: Some((id, ref address)) }
                    if target.as_ref().is_none_or(|(tried, _)| *tried != id as i32) =>
                {
                    Some((id as i32, address.clone()))
                }
                _ => None,
            };
            if let Some(hint) = hint {
                target = Some(hint);
                continue;
            }
            if self.clock.now() >= deadline {
                return answer;
            }
            compio::time::sleep(RETRY_BACKOFF).await;
            target = self.leader_hint();
        }
    }

    /// Where to send a request now: the leader Raft knows of, else the next configured voter.
    fn leader_hint(&self) -> Option<(i32, String)> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        if let Some(leader) = metrics.current_leader {
            let membership = metrics.membership_config.membership();
            if let Some(node) = membership.get_node(&leader) {
                return Some((leader as i32, node.address.clone()));
            }
        }
        if self.voters.is_empty() {
            return None;
        }
        let next = self.next_voter.get();
        self.next_voter.set(next.wrapping_add(1));
        self.voters.get(next % self.voters.len()).cloned()
    }

    /// How long one forwarded call of `request` may take, and how long to keep looking for a
    /// controller that answers it. A heartbeat or an ISR change stuck on a controller that is
    /// paused or cut off must not outlive the broker's session: after a controller failover the
    /// new one would fence a live broker (or keep an ISR) that only waited on the old one.
    fn timeouts(&self, request: &ControllerRequest) -> (Duration, Duration) {
        match request {
            ControllerRequest::Heartbeat { .. } | ControllerRequest::AlterPartition { .. } => {
                let call = (self.session_timeout / 3).max(Duration::from_millis(100));
                (call.min(CONTROLLER_CALL_TIMEOUT), self.session_timeout.min(FIND_CONTROLLER_TIMEOUT))
            }
            _ => (CONTROLLER_CALL_TIMEOUT, FIND_CONTROLLER_TIMEOUT),
        }
    }

    /// Sends a request to node `id` at `address`.
    async fn forward(&self, id: i32, address: &str, request: ControllerRequest, timeout: Duration) -> ControllerAnswer {
        let client = self.clients.borrow_mut().remove(&id);
        let mut client = client.unwrap_or_else(|| Client::new(id as u64, address.to_owned(), self.transport.clone()));
        let answer = match client.call(Request::Controller(request), timeout).await {
            Ok(Response::Controller(answer)) => answer,
            Ok(_) => ControllerAnswer::Unavailable(format!("node {id} answered something else")),
            Err(error) => ControllerAnswer::Unavailable(format!("node {id}: {error}")),
        };
        self.clients.borrow_mut().insert(id, client);
        answer
    }

    /// Where the leader is, for a node that is not it.
    fn not_controller(forward: &openraft::error::ForwardToLeader<types::TypeConfig>) -> ControllerAnswer {
        let leader = match (forward.leader_id, &forward.leader_node) {
            (Some(id), Some(node)) if !node.address.is_empty() => Some((id, node.address.clone())),
            _ => None,
        };
        ControllerAnswer::NotController { leader }
    }

    /// Decides a request as the active controller, or says where it is.
    async fn serve_as_leader(self: Rc<Self>, request: ControllerRequest) -> ControllerAnswer {
        if let Err(forward) = self.raft.as_leader() {
            return Self::not_controller(&forward);
        }
        match request {
            ControllerRequest::Heartbeat { node_id, incarnation } => self.heartbeat_from(node_id, incarnation).await,
            ControllerRequest::AddLearner { node_id, address } => self.add_learner(node_id, address).await,
            ControllerRequest::DescribeQuorum => self.describe_quorum(),
            request => {
                if let ControllerRequest::RegisterBroker(registration) = &request {
                    self.liveness.borrow_mut().heard(registration.node_id, registration.incarnation, self.clock.now());
                }
                let seed = crate::clock::entropy();
                self.decide(|image| active::decide(image, &request, seed)).await
            }
        }
    }

    async fn heartbeat_from(&self, node_id: i32, incarnation: u64) -> ControllerAnswer {
        let image = self.handoff.latest.borrow().image.clone();
        let Some(broker) = image.brokers.get(&node_id).filter(|broker| broker.incarnation == incarnation) else {
            return ControllerAnswer::Done {
                index: 0,
                outcome: Outcome::Heartbeat { fenced: true, registered: false },
            };
        };
        self.liveness.borrow_mut().heard(node_id, incarnation, self.clock.now());
        if !broker.fenced {
            return ControllerAnswer::Done {
                index: 0,
                outcome: Outcome::Heartbeat { fenced: false, registered: true },
            };
        }
        tracing::info!(node_id, "unfencing a broker: caught up after registering, or heard from again");
        self.decide(|image| {
            let fenced =
                image.brokers.get(&node_id).is_some_and(|broker| broker.incarnation == incarnation && broker.fenced);
            let records = if fenced { active::unfence(image, node_id) } else { Vec::new() };
            (records, Outcome::Heartbeat { fenced: false, registered: true })
        })
        .await
    }

    async fn add_learner(&self, node_id: i32, address: String) -> ControllerAnswer {
        let known = {
            let metrics = self.raft.metrics().borrow_watched().clone();
            let membership = metrics.membership_config.membership();
            membership.get_node(&(node_id as u64)).is_some_and(|node| node.address == address)
        };
        if known {
            return ControllerAnswer::Done { index: 0, outcome: Outcome::One(Ok(())) };
        }
        tracing::info!(node_id, %address, "adding a broker-only node as a learner of the metadata log");
        match self.raft.add_learner(node_id as u64, QuorumNode { address }, false).await {
            Ok(written) => ControllerAnswer::Done { index: written.log_id.index(), outcome: Outcome::One(Ok(())) },
            Err(error) => match error.forward_to_leader() {
                Some(forward) => Self::not_controller(forward),
                None => ControllerAnswer::Unavailable(error.to_string()),
            },
        }
    }

    fn describe_quorum(&self) -> ControllerAnswer {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let now_unix_ms = self.clock.unix_ms();
        let replication = metrics.replication.clone().unwrap_or_default();
        let heartbeat = metrics.heartbeat.clone().unwrap_or_default();
        let last_log_end = metrics.last_log_index.map_or(0, |index| index as i64 + 1);
        let progress = |id: u64| {
            let end = replication.get(&id).and_then(Option::as_ref).map_or(-1, |log_id| log_id.index() as i64 + 1);
            let end = if id == self.id as u64 { last_log_end } else { end };
            let last_fetch_ms = if id == self.id as u64 {
                now_unix_ms
            } else {
                heartbeat
                    .get(&id)
                    .and_then(Option::as_ref)
                    .map_or(-1, |at| now_unix_ms - at.elapsed().as_millis() as i64)
            };
            let caught_up = if end >= last_log_end { last_fetch_ms } else { -1 };
            ReplicaProgress { node_id: id as i32, log_end_offset: end, last_fetch_ms, last_caught_up_ms: caught_up }
        };
        let nodes = membership
            .nodes()
            .filter_map(|(id, node)| {
                let (host, port) = node.address.rsplit_once(':')?;
                Some((*id as i32, host.trim_matches(['[', ']']).to_owned(), port.parse().ok()?))
            })
            .collect();
        let description = QuorumDescription {
            leader_id: self.id,
            leader_epoch: i32::try_from(metrics.current_term).unwrap_or(i32::MAX),
            high_watermark: metrics.cluster_committed.as_ref().map_or(0, |log_id| log_id.index() as i64 + 1),
            voters: membership.voter_ids().map(progress).collect(),
            observers: membership.learner_ids().map(progress).collect(),
            nodes,
        };
        ControllerAnswer::Done { index: 0, outcome: Outcome::Quorum(description) }
    }

    /// Runs one decision as the active controller: after a read barrier (this node still
    /// leads, and has applied everything committed before), `decide` sees the current image;
    /// its records are written as one entry, answered once committed and applied.
    async fn decide(
        &self,
        decide: impl FnOnce(&MetadataImage) -> (Vec<crate::metadata::records::MetadataRecord>, Outcome),
    ) -> ControllerAnswer {
        let _turn = self.decisions.lock().await;
        if let Err(error) = self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            return match error.forward_to_leader() {
                Some(forward) => Self::not_controller(forward),
                None => ControllerAnswer::Unavailable(error.to_string()),
            };
        }
        let image = self.handoff.latest.borrow().image.clone();
        let (records, outcome) = decide(&image);
        if records.is_empty() {
            return ControllerAnswer::Done { index: 0, outcome };
        }
        match self.raft.client_write(MetadataBatch { records }).await {
            Ok(written) => ControllerAnswer::Done { index: written.log_id.index(), outcome },
            Err(error) => match error.forward_to_leader() {
                Some(forward) => Self::not_controller(forward),
                None => ControllerAnswer::Unavailable(error.to_string()),
            },
        }
    }
}

impl ControllerService for Node {
    fn serve(self: Rc<Self>, request: ControllerRequest) -> LocalBoxFuture<'static, ControllerAnswer> {
        Box::pin(self.serve_as_leader(request))
    }
}
