//! The controller listener's protocol: Raft messages between quorum nodes, and controller
//! requests forwarded to the active controller, over TCP.
//!
//! Each message is one frame of the log's framing (`[length][CRC32C][JSON]`); a connection
//! carries one request at a time and its answer. Every request names the node it is meant for,
//! so a connection that reached another node (a restarted process under a new id) is noticed.
//! The server runs one task per connection on the controller thread; clients connect lazily and
//! reconnect after any error. Touched only by the controller thread.
//!
//! Connections run plaintext or TLS, and each accepted one is admitted by its principal first
//! (`security::controller_listener`).

use std::future::Future;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use compio::BufResult;
use compio::buf::{IntoInner as _, IoBuf as _};
use compio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use compio::net::TcpListener;
use futures_util::future::{Either, select};
use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RPCTypes, RaftNetworkV2};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::log_store::{get_frame, put_frame};
use super::state_machine::Handoff;
use super::types::{QuorumNode, Raft, Snapshot, SnapshotData, SnapshotMeta, TypeConfig, Vote};
use super::wire::{ControllerAnswer, ControllerRequest};
use crate::net::peer::PeerStream;
use crate::security::controller_listener::{Acceptor, ControllerTransport};

/// The largest frame accepted: a snapshot of a large cluster's metadata fits; a corrupt length
/// does not make the node allocate gigabytes.
const FRAME_SIZE_BYTES_MAX: usize = 256 << 20;
/// How long a forwarded controller request may take (topic creation opens logs).
pub(crate) const CONTROLLER_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A request to a node.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    /// A whole snapshot in one frame: the metadata image is small next to the frame bound.
    Snapshot {
        vote: Vote,
        meta: SnapshotMeta,
        data: SnapshotData,
    },
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    /// A controller request, for the active controller.
    Controller(ControllerRequest),
}

/// A request with the node it is meant for.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub(crate) target: u64,
    pub(crate) request: Request,
}

/// An answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    AppendEntries(Result<AppendEntriesResponse<TypeConfig>, RaftError<TypeConfig>>),
    Vote(Result<VoteResponse<TypeConfig>, RaftError<TypeConfig>>),
    Snapshot(Result<SnapshotResponse<TypeConfig>, Fatal<TypeConfig>>),
    TransferLeader(Result<TransferLeaderResponse<TypeConfig>, Fatal<TypeConfig>>),
    Controller(ControllerAnswer),
    /// The request reached another node than the one it named.
    WrongNode {
        actual: u64,
    },
}

/// Writes one message as a frame, in one write (with `TCP_NODELAY`, one segment).
pub(crate) async fn write_message<T: Serialize>(stream: &mut impl AsyncWrite, message: &T) -> io::Result<()> {
    let payload = serde_json::to_vec(message).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(payload.len() + 8);
    put_frame(&mut frame, &payload);
    let BufResult(written, _) = stream.write_all(frame).await;
    written
}

/// Reads one message.
pub(crate) async fn read_message<T: DeserializeOwned>(stream: &mut impl AsyncRead) -> io::Result<T> {
    let BufResult(read, header) = stream.read_exact([0u8; 8]).await;
    read?;
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if length > FRAME_SIZE_BYTES_MAX {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "controller frame too large"));
    }
    // `read_exact` fills a buffer's capacity: a slice of exactly `length`.
    let BufResult(read, body) = stream.read_exact(Vec::with_capacity(length).slice(..length)).await;
    read?;
    let mut frame = header.to_vec();
    frame.extend_from_slice(&body.into_inner());
    let (payload, _) =
        get_frame(&frame, 0).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "corrupt controller frame"))?;
    serde_json::from_slice(payload).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// A lazily connected client of one node.
#[derive(Debug)]
pub(crate) struct Client {
    target: u64,
    address: String,
    connection: Option<PeerStream>,
    transport: std::sync::Arc<ControllerTransport>,
}

/// Why a call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// No connection could be made.
    Unreachable(io::Error),
    /// The connection broke or the answer was garbage.
    Network(io::Error),
    /// No answer in time.
    Timeout,
    /// The address answered as another node.
    WrongNode(u64),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(error) => write!(f, "unreachable: {error}"),
            Self::Network(error) => write!(f, "network error: {error}"),
            Self::Timeout => f.write_str("timed out"),
            Self::WrongNode(actual) => write!(f, "the address is node {actual}"),
        }
    }
}

impl Client {
    pub(crate) fn new(target: u64, address: String, transport: std::sync::Arc<ControllerTransport>) -> Self {
        Self { target, address, connection: None, transport }
    }

    /// Sends `request` and waits up to `timeout` for the answer.
    pub(crate) async fn call(&mut self, request: Request, timeout: Duration) -> Result<Response, CallError> {
        let outcome = match compio::time::timeout(timeout, self.exchange(request)).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Err(CallError::Timeout),
        };
        if outcome.is_err() {
            // A failed exchange may have left half a frame on the connection.
            self.connection = None;
        }
        match outcome? {
            Response::WrongNode { actual } => {
                self.connection = None;
                Err(CallError::WrongNode(actual))
            }
            response => Ok(response),
        }
    }

    async fn exchange(&mut self, request: Request) -> Result<Response, CallError> {
        if self.connection.is_none() {
            let stream = self.transport.connect(&self.address).await.map_err(CallError::Unreachable)?;
            self.connection = Some(stream);
        }
        let stream = self.connection.as_mut().expect("connected above");
        let envelope = Envelope { target: self.target, request };
        write_message(stream, &envelope).await.map_err(CallError::Network)?;
        read_message(stream).await.map_err(CallError::Network)
    }
}

/// Makes openraft's clients of the other quorum nodes.
#[derive(Debug)]
pub(crate) struct Network {
    pub(crate) node_id: u64,
    pub(crate) transport: std::sync::Arc<ControllerTransport>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &QuorumNode) -> Peer {
        Peer { from: self.node_id, client: Client::new(target, node.address.clone(), self.transport.clone()) }
    }
}

/// openraft's client of one node.
#[derive(Debug)]
pub(crate) struct Peer {
    from: u64,
    client: Client,
}

fn rpc_error(from: u64, target: u64, action: RPCTypes, ttl: Duration, error: CallError) -> RPCError<TypeConfig> {
    match error {
        // openraft backs off before retrying an unreachable node.
        CallError::Unreachable(error) => RPCError::Unreachable(Unreachable::new(&error)),
        CallError::WrongNode(actual) => {
            RPCError::Unreachable(Unreachable::from_string(format!("the address of node {target} is node {actual}")))
        }
        CallError::Network(error) => RPCError::Network(NetworkError::new(&error)),
        CallError::Timeout => RPCError::Timeout(Timeout { action, id: from, target, timeout: ttl }),
    }
}

/// A remote node's fatal error (its Raft is stopping): treated as unreachable.
fn remote_fatal(error: impl std::fmt::Display) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::from_string(format!("remote raft stopped: {error}")))
}

fn unexpected() -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::from_string("unexpected response type"))
}

impl Peer {
    async fn call(
        &mut self,
        request: Request,
        action: RPCTypes,
        ttl: Duration,
    ) -> Result<Response, RPCError<TypeConfig>> {
        let (from, target) = (self.from, self.client.target);
        self.client.call(request, ttl).await.map_err(|error| rpc_error(from, target, action, ttl, error))
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(Request::AppendEntries(rpc), RPCTypes::AppendEntries, option.soft_ttl()).await? {
            Response::AppendEntries(answer) => answer.map_err(remote_fatal),
            _ => Err(unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(Request::Vote(rpc), RPCTypes::Vote, option.soft_ttl()).await? {
            Response::Vote(answer) => answer.map_err(remote_fatal),
            _ => Err(unexpected()),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(Request::PreVote(rpc), RPCTypes::Vote, option.soft_ttl()).await? {
            Response::Vote(answer) => answer.map_err(remote_fatal),
            _ => Err(unexpected()),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let request = Request::Snapshot { vote, meta: snapshot.meta, data: snapshot.snapshot };
        let outcome = {
            let call = std::pin::pin!(self.call(request, RPCTypes::InstallSnapshot, option.hard_ttl()));
            let cancel = std::pin::pin!(cancel);
            match select(call, cancel).await {
                Either::Left((outcome, _)) => Ok(outcome),
                Either::Right((closed, _)) => Err(closed),
            }
        };
        match outcome {
            Ok(outcome) => match outcome? {
                Response::Snapshot(answer) => answer.map_err(|error| StreamingError::from(remote_fatal(error))),
                _ => Err(unexpected().into()),
            },
            Err(closed) => {
                // The call was dropped mid-frame: the connection is unusable.
                self.client.connection = None;
                Err(StreamingError::Closed(closed))
            }
        }
    }

    async fn transfer_leader(
        &mut self,
        request: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(Request::TransferLeader(request), RPCTypes::TransferLeader, option.soft_ttl()).await? {
            Response::TransferLeader(answer) => answer.map_err(remote_fatal),
            _ => Err(unexpected()),
        }
    }
}

/// What the server hands controller requests to.
pub(crate) trait ControllerService {
    /// Answers a controller request (as the active controller, or with where it is).
    fn serve(
        self: Rc<Self>,
        request: ControllerRequest,
    ) -> futures_util::future::LocalBoxFuture<'static, ControllerAnswer>;
}

/// What the controller listener admits connections with: the acceptor, the image whose ACLs it
/// reads, and the clock.
#[derive(Debug)]
pub(crate) struct Admission {
    pub(crate) acceptor: Acceptor,
    pub(crate) handoff: Rc<Handoff>,
    pub(crate) clock: sluice_engine::clock::SharedClock,
}

/// Serves the controller listener until `stop` completes.
pub(crate) async fn serve<S: ControllerService + 'static>(
    listener: TcpListener,
    raft: Raft,
    node_id: u64,
    service: Rc<S>,
    admission: Rc<Admission>,
    stop: futures_util::future::Shared<futures_channel::oneshot::Receiver<()>>,
) {
    let mut connections = Vec::new();
    loop {
        let accepted = {
            let accept = std::pin::pin!(listener.accept());
            match select(accept, stop.clone()).await {
                Either::Left((accepted, _)) => Some(accepted),
                Either::Right(_) => None,
            }
        };
        match accepted {
            None => break,
            Some(Ok((stream, peer))) => {
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "controller listener: cannot set TCP_NODELAY");
                }
                connections.retain(|task: &compio::runtime::JoinHandle<()>| !task.is_finished());
                let admitted = {
                    let admission = admission.clone();
                    async move {
                        let now = admission.clock.now();
                        let image = || admission.handoff.latest.borrow().image.clone();
                        admission.acceptor.accept(stream, peer, now, image).await
                    }
                };
                let (raft, service, stop) = (raft.clone(), service.clone(), stop.clone());
                let task = async move {
                    if let Some(stream) = admitted.await {
                        serve_connection(stream, raft, node_id, service, stop).await;
                    }
                };
                connections.push(compio::runtime::spawn(task));
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "controller listener: accept failed");
                compio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    for connection in connections {
        let _finished_or_cancelled = connection.await;
    }
    // Closing waits for the cancelled accept to release the socket, so that a restart in the
    // same process can bind the port again at once.
    if let Err(error) = listener.close().await {
        tracing::debug!(%error, "controller listener: close failed");
    }
}

async fn serve_connection<S: ControllerService + 'static>(
    mut stream: PeerStream,
    raft: Raft,
    node_id: u64,
    service: Rc<S>,
    stop: futures_util::future::Shared<futures_channel::oneshot::Receiver<()>>,
) {
    loop {
        let message = {
            let read = std::pin::pin!(read_message::<Envelope>(&mut stream));
            match select(read, stop.clone()).await {
                Either::Left((message, _)) => message,
                Either::Right(_) => break,
            }
        };
        let Ok(envelope) = message else { break };
        let response = if envelope.target == node_id {
            answer(&raft, &service, envelope.request).await
        } else {
            Response::WrongNode { actual: node_id }
        };
        if write_message(&mut stream, &response).await.is_err() {
            break;
        }
    }
    if let Err(error) = stream.shutdown().await {
        tracing::debug!(%error, "controller connection: close failed");
    }
}

async fn answer<S: ControllerService + 'static>(raft: &Raft, service: &Rc<S>, request: Request) -> Response {
    match request {
        Request::AppendEntries(request) => Response::AppendEntries(raft.append_entries(request).await),
        Request::Vote(request) => Response::Vote(raft.vote(request).await),
        Request::PreVote(request) => Response::Vote(raft.pre_vote(request).await),
        Request::Snapshot { vote, meta, data } => {
            Response::Snapshot(raft.install_full_snapshot(vote, Snapshot { meta, snapshot: data }).await)
        }
        Request::TransferLeader(request) => Response::TransferLeader(raft.handle_transfer_leader(request).await),
        Request::Controller(request) => Response::Controller(service.clone().serve(request).await),
    }
}
