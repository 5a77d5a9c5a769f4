//! The node: a driver task that owns a swarm and the replicas of its streams.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, MessageAcceptance, TopicHash};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, noise, tcp, yamux};
use merkle_clock::replica::AppendError;
use merkle_clock::{Block, Cid, Ipld, Replica, StoreError, StreamStore};
use rand::Rng;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, trace, warn};

use crate::announce::{Announcement, heads_digest, topic};
use crate::codec::{SYNC_PROTOCOL, SyncCodec, SyncRequest, SyncResponse};
use crate::sync_api::{Message, Received, SyncError, SyncLimits, SyncState, generate_message, receive_message};

/// How a node behaves. `#[non_exhaustive]`: start from [`Config::default()`]
/// and change fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The node's identity; a fresh Ed25519 key when `None`.
    pub keypair: Option<Keypair>,
    /// Where to listen. Default: `/ip4/127.0.0.1/tcp/0` (loopback, any port).
    pub listen: Vec<Multiaddr>,
    /// How often every stream's heads are announced even when nothing changed,
    /// so dormant streams and late joiners catch up. Default: 5 s.
    pub announce_interval: Duration,
    /// The announce interval varies by up to this fraction either way, so
    /// nodes started together do not announce in lockstep. Default: 0.25.
    pub announce_jitter: f64,
    /// Least time between two announcements of one stream when its heads
    /// change (appends and received events are batched). Default: 50 ms.
    pub announce_debounce: Duration,
    /// Most heads listed in an announcement (a digest covers all). Default: 256.
    pub max_announced_heads: usize,
    /// How long one sync request may wait for its response. Default: 10 s.
    pub request_timeout: Duration,
    /// How long one sync session may last in all. Default: 60 s.
    pub session_timeout: Duration,
    /// Most request/response rounds in one session. Default: 64.
    pub max_session_rounds: u32,
    /// Most sync requests this node has in flight at once, over all peers
    /// and streams; further sessions wait in a queue. Default: 16.
    pub max_in_flight: usize,
    /// Limits of the sync messages made and taken. Request and response
    /// frames are bounded by `max_message_bytes` plus a few bytes of framing,
    /// checked before a frame is read.
    pub sync_limits: SyncLimits,
    /// How often addresses given to [`NodeHandle::dial`] are dialed again
    /// while not connected. Default: 1 s.
    pub redial_interval: Duration,
    /// How long a connection with nothing to do stays open. Default: 1 hour.
    pub idle_connection_timeout: Duration,
    /// The gossipsub heartbeat. Default: 500 ms.
    pub gossip_heartbeat: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            keypair: None,
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a valid multiaddr")],
            announce_interval: Duration::from_secs(5),
            announce_jitter: 0.25,
            announce_debounce: Duration::from_millis(50),
            max_announced_heads: 256,
            request_timeout: Duration::from_secs(10),
            session_timeout: Duration::from_secs(60),
            max_session_rounds: 64,
            max_in_flight: 16,
            sync_limits: SyncLimits::default(),
            redial_interval: Duration::from_secs(1),
            idle_connection_timeout: Duration::from_secs(3600),
            gossip_heartbeat: Duration::from_millis(500),
        }
    }
}

/// A node operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The node's task has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// The node has no replica of this stream.
    #[error("{0}: no such stream on this node")]
    UnknownStream(Cid),
    /// The node already has a replica of this stream.
    #[error("{0}: the node already has this stream")]
    DuplicateStream(Cid),
    /// The payload could not be turned into IPLD.
    #[error("the payload is not IPLD: {0}")]
    Payload(String),
    /// The replica refused the append.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Setting up the transport, the behaviour or a listener failed.
    #[error("network setup failed: {0}")]
    Setup(String),
    /// Dialing failed at once (a bad address).
    #[error("dial failed: {0}")]
    Dial(String),
}

/// Where new events came from, in an [`Update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This node appended them.
    Local,
    /// They arrived through a sync session with this peer.
    Peer(PeerId),
}

/// A stream gained events. Read them with [`NodeHandle::read`] and
/// [`Replica::events_since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The stream.
    pub stream: Cid,
    /// Where the events came from.
    pub source: Source,
    /// How many events joined the DAG.
    pub added: usize,
}

/// The node's counters, from [`NodeHandle::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Announcements published.
    pub announcements_sent: u64,
    /// Well-formed announcements received.
    pub announcements_received: u64,
    /// Gossip messages that did not decode or named the wrong stream.
    pub gossip_garbage: u64,
    /// Sync requests sent.
    pub requests_sent: u64,
    /// Sync responses received.
    pub responses_received: u64,
    /// Sync requests answered.
    pub requests_served: u64,
    /// Sync requests or responses that did not decode or were refused by the
    /// sync protocol.
    pub sync_garbage: u64,
    /// Encoded sync message bytes sent (requests and responses).
    pub sync_bytes_sent: u64,
    /// Encoded sync message bytes received (requests and responses).
    pub sync_bytes_received: u64,
    /// Sync sessions this node opened.
    pub sessions_started: u64,
    /// Sessions that ended with both sides having nothing more to say.
    pub sessions_completed: u64,
    /// Sessions stopped at [`Config::max_session_rounds`] while both sides
    /// still had something to say (the heads kept moving under continuous
    /// writes); the next announcement starts a fresh one.
    pub sessions_capped: u64,
    /// Sessions that ended on a failure (timeout, closed connection, garbage).
    pub sessions_failed: u64,
    /// Events added to the DAG from peers.
    pub events_received: u64,
    /// Blocks from peers that the replica held already (the cost of syncing
    /// with several peers at once).
    pub blocks_duplicate: u64,
    /// Blocks from peers that the replica refused (not canonical events of
    /// the stream, a wrong height, a validator said no).
    pub blocks_rejected: u64,
    /// Outbound request failures reported by request-response.
    pub outbound_failures: u64,
    /// Inbound request failures reported by request-response.
    pub inbound_failures: u64,
}

pub use behaviour::{Behaviour, BehaviourEvent};

mod behaviour {
    // The derive generates `BehaviourEvent` with one variant per field.
    #![allow(missing_docs)]
    use super::*;

    /// The swarm's behaviour: gossipsub for head announcements,
    /// request-response for sync sessions. [`BehaviourEvent`] has one variant
    /// per field, carrying that behaviour's events.
    #[derive(NetworkBehaviour)]
    pub struct Behaviour {
        /// Head announcements, one topic per stream.
        pub gossipsub: gossipsub::Behaviour,
        /// Sync sessions.
        pub sync: request_response::Behaviour<SyncCodec>,
    }
}

impl Behaviour {
    /// The behaviour a node with this key and configuration runs.
    ///
    /// # Errors
    /// When the gossipsub configuration is inconsistent.
    pub fn new(key: &Keypair, config: &Config) -> Result<Self, NodeError> {
        // Announcements are unsigned: they carry no authority (a CID names
        // its block, and a sync session only ever runs with a connected,
        // noise-authenticated peer), and verifying an Ed25519 signature on
        // every announcement was most of a node's CPU time. A message keeps
        // its author and sequence number (its gossipsub id); signatures that
        // other implementations add are still checked (`Permissive`).
        let gossip_config = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(config.gossip_heartbeat)
            .validation_mode(gossipsub::ValidationMode::Permissive)
            .validate_messages()
            .max_transmit_size(gossip_max_bytes(config.max_announced_heads))
            .build()
            .map_err(|e| NodeError::Setup(format!("gossipsub config: {e}")))?;
        let author = gossipsub::MessageAuthenticity::Author(key.public().to_peer_id());
        let gossipsub = gossipsub::Behaviour::new(author, gossip_config)
            .map_err(|e| NodeError::Setup(format!("gossipsub: {e}")))?;
        let frame = config.sync_limits.max_message_bytes.saturating_add(FRAME_OVERHEAD);
        let codec = SyncCodec { max_request_bytes: frame, max_response_bytes: frame };
        let rr_config = request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(config.max_in_flight.max(1) * 4);
        let sync = request_response::Behaviour::with_codec(codec, [(SYNC_PROTOCOL, ProtocolSupport::Full)], rr_config);
        Ok(Behaviour { gossipsub, sync })
    }
}

/// Bytes a request or response adds around a sync message (version, flags,
/// the stream id).
const FRAME_OVERHEAD: usize = 1024;

/// Gossip frames hold an announcement with this many heads and the signing
/// envelope around it.
fn gossip_max_bytes(max_heads: usize) -> usize {
    (4096 + 80 * max_heads).max(65536)
}

type ReadJob<S> = Box<dyn FnOnce(Option<&Replica<S>>) + Send>;

enum Command<S: ?Sized + StreamStore> {
    AddStream(Box<Replica<S>>, oneshot::Sender<Result<(), NodeError>>),
    Append(Cid, Vec<Ipld>, oneshot::Sender<Result<Vec<Cid>, NodeError>>),
    Read(Cid, ReadJob<S>),
    Get(Cid, Vec<Cid>, oneshot::Sender<Result<Vec<Option<Block>>, NodeError>>),
    Dial(Multiaddr, oneshot::Sender<Result<(), NodeError>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Peers(oneshot::Sender<Vec<PeerId>>),
    SetOffline(bool, oneshot::Sender<()>),
    Stats(oneshot::Sender<Stats>),
    Shutdown(oneshot::Sender<Vec<Replica<S>>>),
}

/// Controls a running [`Node`]. Cheap to clone; every clone drives the same
/// node. The node stops on [`NodeHandle::shutdown`] or when every handle is
/// dropped.
pub struct NodeHandle<S: ?Sized + StreamStore + 'static> {
    commands: mpsc::Sender<Command<S>>,
    updates: broadcast::Sender<Update>,
    peer_id: PeerId,
}

impl<S: ?Sized + StreamStore + 'static> Clone for NodeHandle<S> {
    fn clone(&self) -> Self {
        NodeHandle { commands: self.commands.clone(), updates: self.updates.clone(), peer_id: self.peer_id }
    }
}

impl<S: ?Sized + StreamStore + 'static> fmt::Debug for NodeHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeHandle").field("peer_id", &self.peer_id).finish()
    }
}

impl<S: ?Sized + StreamStore + 'static> NodeHandle<S> {
    async fn call<R>(&self, make: impl FnOnce(oneshot::Sender<R>) -> Command<S>) -> Result<R, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Starts replicating a stream: subscribes to its topic, announces its
    /// heads and syncs with peers whose heads differ.
    ///
    /// # Errors
    /// [`NodeError::DuplicateStream`] if the node has it already.
    pub async fn add_stream(&self, replica: Replica<S>) -> Result<(), NodeError> {
        self.call(|tx| Command::AddStream(Box::new(replica), tx)).await?
    }

    /// Appends one event to a stream and announces the new head.
    ///
    /// # Errors
    /// [`NodeError::UnknownStream`], [`NodeError::Payload`], or what the
    /// replica's append returned.
    pub async fn append<P: Serialize + ?Sized>(&self, stream: Cid, payload: &P) -> Result<Cid, NodeError> {
        let ipld = ipld_core::serde::to_ipld(payload).map_err(|e| NodeError::Payload(e.to_string()))?;
        let cids = self.call(|tx| Command::Append(stream, vec![ipld], tx)).await??;
        cids.into_iter().next().ok_or(NodeError::Payload("nothing appended".into()))
    }

    /// Appends several events in one store commit (a chain).
    ///
    /// # Errors
    /// As [`NodeHandle::append`].
    pub async fn append_many<P: Serialize>(
        &self,
        stream: Cid,
        payloads: impl IntoIterator<Item = P>,
    ) -> Result<Vec<Cid>, NodeError> {
        let ipld = payloads
            .into_iter()
            .map(|p| ipld_core::serde::to_ipld(p).map_err(|e| NodeError::Payload(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        self.call(|tx| Command::Append(stream, ipld, tx)).await?
    }

    /// Runs `f` on the stream's replica inside the node's task and returns
    /// its result. Keep `f` short: the node does nothing else meanwhile.
    ///
    /// # Errors
    /// [`NodeError::UnknownStream`], [`NodeError::Stopped`].
    pub async fn read<R: Send + 'static>(
        &self,
        stream: Cid,
        f: impl FnOnce(&Replica<S>) -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        let (tx, rx) = oneshot::channel();
        let job: ReadJob<S> = Box::new(move |r| {
            let _ = tx.send(r.map(f));
        });
        self.commands.send(Command::Read(stream, job)).await.map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)?.ok_or(NodeError::UnknownStream(stream))
    }

    /// The stream's heads, ascending.
    ///
    /// # Errors
    /// As [`NodeHandle::read`].
    pub async fn heads(&self, stream: Cid) -> Result<Vec<Cid>, NodeError> {
        self.read(stream, |r| r.heads()).await
    }

    /// The stream's number of events, the genesis included.
    ///
    /// # Errors
    /// As [`NodeHandle::read`].
    pub async fn len(&self, stream: Cid) -> Result<usize, NodeError> {
        self.read(stream, |r| r.len()).await
    }

    /// The blocks of events of the stream (`None` for events it lacks).
    ///
    /// # Errors
    /// [`NodeError::UnknownStream`], [`NodeError::Store`].
    pub async fn get(&self, stream: Cid, cids: Vec<Cid>) -> Result<Vec<Option<Block>>, NodeError> {
        self.call(|tx| Command::Get(stream, cids, tx)).await?
    }

    /// Dials an address now and again every [`Config::redial_interval`]
    /// whenever no connection to it is open.
    ///
    /// # Errors
    /// [`NodeError::Dial`] when the address cannot be dialed at all.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NodeError> {
        self.call(|tx| Command::Dial(addr, tx)).await?
    }

    /// The first address the node listens on (waits until it has one).
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn listen_addr(&self) -> Result<Multiaddr, NodeError> {
        self.listen_addrs().await?.into_iter().next().ok_or(NodeError::Stopped)
    }

    /// Every address the node listens on (waits until it has one).
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NodeError> {
        self.call(Command::ListenAddrs).await
    }

    /// The peers the node is connected to.
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn peers(&self) -> Result<Vec<PeerId>, NodeError> {
        self.call(Command::Peers).await
    }

    /// Cuts the node off (`true`): closes every connection, refuses new
    /// ones and stops dialing; or lets it back (`false`) and dials again.
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn set_offline(&self, offline: bool) -> Result<(), NodeError> {
        self.call(|tx| Command::SetOffline(offline, tx)).await
    }

    /// The node's counters.
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn stats(&self) -> Result<Stats, NodeError> {
        self.call(Command::Stats).await
    }

    /// Updates for every stream from now on. A receiver that lags skips
    /// updates ([`broadcast::error::RecvError::Lagged`]); the replicas stay
    /// the source of truth.
    pub fn updates(&self) -> broadcast::Receiver<Update> {
        self.updates.subscribe()
    }

    /// Stops the node: closes the swarm and returns the replicas (drop them
    /// to close their stores).
    ///
    /// # Errors
    /// [`NodeError::Stopped`] if it had stopped already.
    pub async fn shutdown(&self) -> Result<Vec<Replica<S>>, NodeError> {
        self.call(Command::Shutdown).await
    }
}

struct StreamSlot<S: ?Sized + StreamStore> {
    replica: Replica<S>,
    topic: TopicHash,
    dirty: bool,
    last_announce: Option<Instant>,
    next_announce: Instant,
}

/// The initiator's side of the sync with one peer on one stream.
struct Session {
    state: SyncState,
    active: Option<Active>,
    /// An announcement arrived during the session: check again when it ends.
    again: bool,
    /// The heads the peer announced last.
    announced: Vec<Cid>,
}

struct Active {
    started: Instant,
    rounds: u32,
    request: Option<OutboundRequestId>,
    sent_at: Instant,
}

enum End {
    /// Both sides had nothing more to say.
    Clean,
    /// The session reached its round cap while both sides still spoke (the
    /// heads kept moving); the next announcement starts a fresh one.
    Capped,
    /// A timeout, a closed connection, garbage, a store failure.
    Failed,
}

/// The driver: owns the swarm and the replicas; runs on a thread of its own
/// ([`Node::spawn`]) and is controlled through a [`NodeHandle`].
pub struct Node<S: ?Sized + StreamStore + 'static> {
    swarm: Swarm<Behaviour>,
    config: Config,
    streams: HashMap<Cid, StreamSlot<S>>,
    topics: HashMap<TopicHash, Cid>,
    sessions: HashMap<(PeerId, Cid), Session>,
    /// The responder's side of the sync with one peer on one stream.
    responders: HashMap<(PeerId, Cid), SyncState>,
    requests: HashMap<OutboundRequestId, (PeerId, Cid)>,
    queue: VecDeque<(PeerId, Cid)>,
    queued: HashSet<(PeerId, Cid)>,
    connected: HashSet<PeerId>,
    dial_targets: Vec<Multiaddr>,
    target_conns: HashMap<Multiaddr, HashSet<ConnectionId>>,
    pending_dials: HashMap<ConnectionId, Multiaddr>,
    last_redial: Option<Instant>,
    offline: bool,
    listen_addrs: Vec<Multiaddr>,
    listen_waiters: Vec<oneshot::Sender<Vec<Multiaddr>>>,
    updates: broadcast::Sender<Update>,
    stats: Stats,
    commands: mpsc::Receiver<Command<S>>,
}

/// How often the node checks its timers (announcements, timeouts, redials).
const TICK: Duration = Duration::from_millis(25);

impl<S: ?Sized + StreamStore + 'static> Node<S> {
    /// Builds the swarm, starts listening and runs the node on a thread of
    /// its own, with a single-threaded tokio runtime that also drives the
    /// swarm's connections. Returns once the node listens (or failed to).
    ///
    /// A thread of its own keeps the store's blocking work (a redb commit
    /// waits for the disk) off the application's runtime, and lets the node
    /// run futures that are not `Send`. It works from inside or outside a
    /// tokio runtime; the caller's thread blocks only while the swarm is
    /// built. The thread ends after [`NodeHandle::shutdown`] or when every
    /// handle is dropped.
    ///
    /// # Errors
    /// [`NodeError::Setup`] when the runtime, transport, behaviour or
    /// listener cannot be set up.
    pub fn spawn(config: Config) -> Result<NodeHandle<S>, NodeError> {
        let (commands_tx, commands) = mpsc::channel(256);
        let (updates, _) = broadcast::channel(4096);
        let (setup_tx, setup_rx) = std::sync::mpsc::channel();
        let node_updates = updates.clone();
        std::thread::Builder::new()
            .name("merkle-clock-node".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = setup_tx.send(Err(NodeError::Setup(format!("tokio runtime: {e}"))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match Node::build(config, commands, node_updates) {
                        Ok(node) => {
                            let _ = setup_tx.send(Ok(*node.swarm.local_peer_id()));
                            node.run().await;
                        }
                        Err(e) => {
                            let _ = setup_tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(|e| NodeError::Setup(format!("node thread: {e}")))?;
        let peer_id = setup_rx.recv().map_err(|_| NodeError::Stopped)??;
        Ok(NodeHandle { commands: commands_tx, updates, peer_id })
    }

    fn build(
        config: Config,
        commands: mpsc::Receiver<Command<S>>,
        updates: broadcast::Sender<Update>,
    ) -> Result<Self, NodeError> {
        let keypair = config.keypair.clone().unwrap_or_else(Keypair::generate_ed25519);
        let setup = |e: &dyn fmt::Display| NodeError::Setup(e.to_string());
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
            .map_err(|e| setup(&e))?
            .with_behaviour(|key| {
                Behaviour::new(key, &config).map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            })
            .map_err(|e| setup(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection_timeout))
            .build();
        for addr in &config.listen {
            swarm.listen_on(addr.clone()).map_err(|e| setup(&e))?;
        }
        Ok(Node {
            swarm,
            config,
            streams: HashMap::new(),
            topics: HashMap::new(),
            sessions: HashMap::new(),
            responders: HashMap::new(),
            requests: HashMap::new(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            connected: HashSet::new(),
            dial_targets: Vec::new(),
            target_conns: HashMap::new(),
            pending_dials: HashMap::new(),
            last_redial: None,
            offline: false,
            listen_addrs: Vec::new(),
            listen_waiters: Vec::new(),
            updates,
            stats: Stats::default(),
            commands,
        })
    }

    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown(reply)) => {
                        let Node { swarm, streams, .. } = self;
                        drop(swarm);
                        let _ = reply.send(streams.into_values().map(|s| s.replica).collect());
                        return;
                    }
                    Some(command) => self.on_command(command).await,
                    None => return,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                _ = tick.tick() => self.on_tick(),
            }
            self.pump().await;
        }
    }

    async fn on_command(&mut self, command: Command<S>) {
        match command {
            Command::AddStream(replica, reply) => {
                let _ = reply.send(self.add_stream(*replica));
            }
            Command::Append(stream, payloads, reply) => {
                let result = match self.streams.get_mut(&stream) {
                    None => Err(NodeError::UnknownStream(stream)),
                    Some(slot) => match slot.replica.append_many(payloads).await {
                        Ok(cids) => {
                            slot.dirty = true;
                            let _ = self.updates.send(Update { stream, source: Source::Local, added: cids.len() });
                            Ok(cids)
                        }
                        Err(e) => Err(e.into()),
                    },
                };
                let _ = reply.send(result);
                // Announce at once when the debounce allows.
                self.announce_due(Instant::now());
            }
            Command::Read(stream, job) => job(self.streams.get(&stream).map(|s| &s.replica)),
            Command::Get(stream, cids, reply) => {
                let result = match self.streams.get(&stream) {
                    None => Err(NodeError::UnknownStream(stream)),
                    Some(slot) => {
                        let mut out = Vec::with_capacity(cids.len());
                        let mut failed = None;
                        for c in &cids {
                            match slot.replica.get(c).await {
                                Ok(b) => out.push(b),
                                Err(e) => {
                                    failed = Some(e);
                                    break;
                                }
                            }
                        }
                        failed.map_or(Ok(out), |e| Err(e.into()))
                    }
                };
                let _ = reply.send(result);
            }
            Command::Dial(addr, reply) => {
                // Offline, the address is only remembered for when the node is back.
                let result = if self.offline { Ok(()) } else { self.dial(addr.clone()) };
                if result.is_ok() && !self.dial_targets.contains(&addr) {
                    self.dial_targets.push(addr);
                }
                let _ = reply.send(result);
            }
            Command::ListenAddrs(reply) => {
                if self.listen_addrs.is_empty() {
                    self.listen_waiters.push(reply);
                } else {
                    let _ = reply.send(self.listen_addrs.clone());
                }
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.connected.iter().copied().collect());
            }
            Command::SetOffline(offline, reply) => {
                self.offline = offline;
                if offline {
                    info!("going offline");
                    let peers: Vec<PeerId> = self.connected.iter().copied().collect();
                    for p in peers {
                        let _ = self.swarm.disconnect_peer_id(p);
                    }
                } else {
                    info!("going online");
                    self.last_redial = None;
                }
                let _ = reply.send(());
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.stats.clone());
            }
            Command::Shutdown(_) => unreachable!("handled by run"),
        }
    }

    fn add_stream(&mut self, replica: Replica<S>) -> Result<(), NodeError> {
        let stream = *replica.stream_id();
        if self.streams.contains_key(&stream) {
            return Err(NodeError::DuplicateStream(stream));
        }
        let topic = topic(&stream);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .map_err(|e| NodeError::Setup(format!("subscribe: {e}")))?;
        self.topics.insert(topic.hash(), stream);
        let next_announce = Instant::now() + self.jittered_interval();
        self.streams.insert(
            stream,
            StreamSlot { replica, topic: topic.hash(), dirty: true, last_announce: None, next_announce },
        );
        debug!(%stream, "added stream");
        Ok(())
    }

    fn jittered_interval(&self) -> Duration {
        let j = self.config.announce_jitter.clamp(0.0, 0.95);
        let f = if j > 0.0 { rand::thread_rng().gen_range(1.0 - j..=1.0 + j) } else { 1.0 };
        self.config.announce_interval.mul_f64(f)
    }

    fn dial(&mut self, addr: Multiaddr) -> Result<(), NodeError> {
        if self.listen_addrs.contains(&addr) {
            return Err(NodeError::Dial(format!("{addr} is this node's own address")));
        }
        let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
        let id = opts.connection_id();
        self.swarm.dial(opts).map_err(|e| NodeError::Dial(e.to_string()))?;
        self.pending_dials.insert(id, addr);
        Ok(())
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.announce_due(now);
        // Sessions that outlived their time.
        let expired: Vec<(PeerId, Cid)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.active.as_ref().is_some_and(|a| now - a.started > self.config.session_timeout))
            .map(|(k, _)| *k)
            .collect();
        for (peer, stream) in expired {
            warn!(%peer, %stream, "sync session timed out");
            self.end_session(peer, stream, End::Failed);
        }
        if !self.offline && self.last_redial.is_none_or(|t| now - t >= self.config.redial_interval) {
            self.last_redial = Some(now);
            let busy: HashSet<&Multiaddr> = self.pending_dials.values().collect();
            let due: Vec<Multiaddr> = self
                .dial_targets
                .iter()
                .filter(|a| !busy.contains(a) && self.target_conns.get(*a).is_none_or(HashSet::is_empty))
                .cloned()
                .collect();
            for addr in due {
                trace!(%addr, "redialing");
                if let Err(e) = self.dial(addr) {
                    debug!("redial failed: {e}");
                }
            }
        }
    }

    /// Publishes the announcements that are due: changed streams past the
    /// debounce, and every stream whose periodic announcement is due.
    fn announce_due(&mut self, now: Instant) {
        if self.offline {
            return;
        }
        let due: Vec<Cid> = self
            .streams
            .iter()
            .filter(|(_, s)| {
                (s.dirty && s.last_announce.is_none_or(|t| now - t >= self.config.announce_debounce))
                    || now >= s.next_announce
            })
            .map(|(c, _)| *c)
            .collect();
        for stream in due {
            self.announce(stream, now);
        }
    }

    fn announce(&mut self, stream: Cid, now: Instant) {
        let next = now + self.jittered_interval();
        let Some(slot) = self.streams.get_mut(&stream) else { return };
        let heads = slot.replica.heads();
        let a = Announcement::new(stream, slot.replica.len() as u64, &heads, self.config.max_announced_heads);
        slot.dirty = false;
        slot.last_announce = Some(now);
        slot.next_announce = next;
        match self.swarm.behaviour_mut().gossipsub.publish(slot.topic.clone(), a.encode()) {
            Ok(_) => {
                self.stats.announcements_sent += 1;
                trace!(%stream, heads = heads.len(), "announced");
            }
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => trace!(%stream, "no peers to announce to"),
            Err(e) => debug!(%stream, "announcement not published: {e}"),
        }
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.on_gossip(e),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.on_sync(e).await,
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.listen_addrs.push(address);
                for w in self.listen_waiters.drain(..) {
                    let _ = w.send(self.listen_addrs.clone());
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                if let Some(addr) = self.pending_dials.remove(&connection_id) {
                    self.target_conns.entry(addr).or_default().insert(connection_id);
                }
                if self.offline {
                    debug!(%peer_id, "offline: closing a new connection");
                    let _ = self.swarm.close_connection(connection_id);
                    return;
                }
                if self.connected.insert(peer_id) {
                    debug!(%peer_id, addr = %endpoint_addr(&endpoint), "connected");
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } => {
                for conns in self.target_conns.values_mut() {
                    conns.remove(&connection_id);
                }
                if num_established == 0 && self.connected.remove(&peer_id) {
                    debug!(%peer_id, "disconnected");
                }
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                if let Some(addr) = self.pending_dials.remove(&connection_id) {
                    trace!(%addr, "dial failed: {error}");
                }
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message { propagation_source, message_id, message } => {
                let gossip = &mut self.swarm.behaviour_mut().gossipsub;
                let Some(&stream) = self.topics.get(&message.topic) else {
                    gossip.report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        MessageAcceptance::Ignore,
                    );
                    return;
                };
                let announcement = match Announcement::decode(&message.data) {
                    Ok(a) if a.stream == stream => a,
                    Ok(a) => {
                        self.stats.gossip_garbage += 1;
                        warn!(peer = %propagation_source, %stream, other = %a.stream, "announcement for another stream on this topic; ignored");
                        gossip.report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Reject,
                        );
                        return;
                    }
                    Err(e) => {
                        self.stats.gossip_garbage += 1;
                        warn!(peer = %propagation_source, %stream, bytes = message.data.len(), "{e}; ignored");
                        gossip.report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Reject,
                        );
                        return;
                    }
                };
                gossip.report_message_validation_result(&message_id, &propagation_source, MessageAcceptance::Accept);
                self.stats.announcements_received += 1;
                // Sync with the announcer when connected to it, else with the
                // peer that forwarded it.
                let peer = message.source.filter(|p| self.connected.contains(p)).unwrap_or(propagation_source);
                self.on_announcement(peer, announcement);
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                if let Some(slot) = self.topics.get(&topic).and_then(|s| self.streams.get_mut(s)) {
                    trace!(%peer_id, "peer subscribed; announcing soon");
                    slot.dirty = true;
                }
            }
            _ => {}
        }
    }

    fn on_announcement(&mut self, peer: PeerId, a: Announcement) {
        let Some(slot) = self.streams.get(&a.stream) else { return };
        let limits = self.config.sync_limits;
        let session = self.sessions.entry((peer, a.stream)).or_insert_with(|| Session {
            state: new_state(limits),
            active: None,
            again: false,
            announced: Vec::new(),
        });
        session.announced = a.heads.clone();
        let differs = a.heads.iter().any(|h| !slot.replica.contains(h))
            || (!a.is_complete() && a.heads_digest != heads_digest(&slot.replica.heads()));
        if !differs {
            return;
        }
        trace!(%peer, stream = %a.stream, "announced heads differ");
        if session.active.is_some() {
            session.again = true;
        } else {
            self.enqueue(peer, a.stream);
        }
    }

    fn enqueue(&mut self, peer: PeerId, stream: Cid) {
        if self.queued.insert((peer, stream)) {
            self.queue.push_back((peer, stream));
        }
    }

    /// Starts queued sessions while the in-flight bound allows.
    async fn pump(&mut self) {
        while self.requests.len() < self.config.max_in_flight.max(1) {
            let Some((peer, stream)) = self.queue.pop_front() else { break };
            self.queued.remove(&(peer, stream));
            if self.offline || !self.connected.contains(&peer) || !self.streams.contains_key(&stream) {
                continue;
            }
            let Some(session) = self.sessions.get_mut(&(peer, stream)) else { continue };
            if session.active.is_some() {
                session.again = true;
                continue;
            }
            // Each session opens afresh (a hello with a filter of what was
            // added since the heads both sides last shared).
            session.state.reset();
            let now = Instant::now();
            session.active = Some(Active { started: now, rounds: 0, request: None, sent_at: now });
            self.stats.sessions_started += 1;
            debug!(%peer, %stream, "sync session starts");
            // Heads differ, so the peer has something to say even if we do not.
            self.step(peer, stream, true).await;
        }
    }

    /// Takes the session one step on: sends our next message; or, when we
    /// have nothing to say, asks the peer for its next message if it may have
    /// one (`peer_has_more`), else ends the session: both sides are silent.
    ///
    /// The peer only speaks in answer, and says all it has in each answer
    /// unless its limits made it hold blocks back (`more`), so after an answer
    /// without `more` and nothing from us the exchange is over.
    async fn step(&mut self, peer: PeerId, stream: Cid, peer_has_more: bool) {
        let (Some(slot), Some(session)) = (self.streams.get(&stream), self.sessions.get_mut(&(peer, stream))) else {
            return;
        };
        match generate_message(&slot.replica, &mut session.state).await {
            Ok(Some(m)) => self.send_request(peer, stream, Some(m.encode())),
            Ok(None) if peer_has_more => self.send_request(peer, stream, None),
            Ok(None) => self.end_session(peer, stream, End::Clean),
            Err(e) => {
                warn!(%peer, %stream, "generating a sync message failed: {e}");
                self.end_session(peer, stream, End::Failed);
            }
        }
    }

    fn send_request(&mut self, peer: PeerId, stream: Cid, message: Option<Vec<u8>>) {
        let Some(active) = self.sessions.get_mut(&(peer, stream)).and_then(|s| s.active.as_mut()) else { return };
        active.rounds += 1;
        if active.rounds > self.config.max_session_rounds {
            debug!(%peer, %stream, rounds = active.rounds, "sync session reached its round cap; stopped");
            self.end_session(peer, stream, End::Capped);
            return;
        }
        self.stats.requests_sent += 1;
        self.stats.sync_bytes_sent += message.as_ref().map_or(0, |m| m.len() as u64);
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, SyncRequest { stream, message });
        active.request = Some(id);
        active.sent_at = Instant::now();
        self.requests.insert(id, (peer, stream));
    }

    fn end_session(&mut self, peer: PeerId, stream: Cid, end: End) {
        let Some(session) = self.sessions.get_mut(&(peer, stream)) else { return };
        let Some(active) = session.active.take() else { return };
        if let Some(id) = active.request {
            self.requests.remove(&id);
        }
        match end {
            End::Clean | End::Capped => {
                if matches!(end, End::Clean) {
                    self.stats.sessions_completed += 1;
                    debug!(%peer, %stream, rounds = active.rounds, "sync session complete");
                } else {
                    self.stats.sessions_capped += 1;
                }
                if std::mem::take(&mut session.again)
                    && let Some(slot) = self.streams.get(&stream)
                    && session.announced.iter().any(|h| !slot.replica.contains(h))
                {
                    self.enqueue(peer, stream);
                }
            }
            End::Failed => {
                self.stats.sessions_failed += 1;
                session.again = false;
            }
        }
    }

    async fn on_sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.on_request(peer, request, channel).await;
                }
                request_response::Message::Response { request_id, response } => {
                    self.on_response(peer, request_id, response).await;
                }
            },
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                self.stats.outbound_failures += 1;
                if let Some((p, stream)) = self.requests.remove(&request_id) {
                    debug!(%peer, %stream, "sync request failed: {error}");
                    self.end_session(p, stream, End::Failed);
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                self.stats.inbound_failures += 1;
                debug!(%peer, "inbound sync request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    async fn on_request(&mut self, peer: PeerId, request: SyncRequest, channel: ResponseChannel<SyncResponse>) {
        let began = Instant::now();
        self.stats.requests_served += 1;
        let stream = request.stream;
        self.stats.sync_bytes_received += request.message.as_ref().map_or(0, |m| m.len() as u64);
        let response = self.answer(peer, request).await;
        if let SyncResponse::Message(m) = &response {
            self.stats.sync_bytes_sent += m.len() as u64;
        }
        trace!(%peer, %stream, took = ?began.elapsed(), "answered a sync request");
        if self.swarm.behaviour_mut().sync.send_response(channel, response).is_err() {
            debug!(%peer, %stream, "the sync response could not be sent (the connection closed)");
        }
    }

    async fn answer(&mut self, peer: PeerId, request: SyncRequest) -> SyncResponse {
        let stream = request.stream;
        let Some(slot) = self.streams.get_mut(&stream) else {
            debug!(%peer, %stream, "sync request for a stream this node does not have");
            return SyncResponse::UnknownStream;
        };
        // A new session from the peer opens with a hello, which restarts
        // this state's session: nothing to reset here.
        let limits = self.config.sync_limits;
        let state = self.responders.entry((peer, stream)).or_insert_with(|| new_state(limits));
        if let Some(bytes) = request.message {
            let message = match Message::decode(&bytes, &self.config.sync_limits) {
                Ok(m) => m,
                Err(e) => {
                    self.stats.sync_garbage += 1;
                    warn!(%peer, %stream, bytes = bytes.len(), "sync request does not decode: {e}; refused");
                    state.reset();
                    return SyncResponse::Refused;
                }
            };
            let before = slot.replica.len();
            let received = receive_message(&mut slot.replica, state, message).await;
            note_received(slot, &mut self.stats, &self.updates, peer, before, &received);
            if let Err(e) = received {
                self.stats.sync_garbage += 1;
                warn!(%peer, %stream, "sync request refused: {e}");
                state.reset();
                return SyncResponse::Refused;
            }
        }
        match generate_message(&slot.replica, state).await {
            Ok(Some(m)) => SyncResponse::Message(m.encode()),
            Ok(None) => SyncResponse::Done,
            Err(e) => {
                warn!(%peer, %stream, "generating a sync response failed: {e}");
                state.reset();
                SyncResponse::Refused
            }
        }
    }

    async fn on_response(&mut self, peer: PeerId, id: OutboundRequestId, response: SyncResponse) {
        let Some((p, stream)) = self.requests.remove(&id) else { return };
        self.stats.responses_received += 1;
        let Some(active) = self.sessions.get_mut(&(p, stream)).and_then(|s| s.active.as_mut()) else { return };
        active.request = None;
        trace!(%peer, %stream, round = active.rounds, rtt = ?active.sent_at.elapsed(), "sync response");
        let bytes = match response {
            SyncResponse::Message(bytes) => bytes,
            SyncResponse::Done => {
                // The peer has nothing to say: done unless we do.
                self.step(p, stream, false).await;
                return;
            }
            SyncResponse::UnknownStream => {
                debug!(%peer, %stream, "the peer does not have this stream");
                self.end_session(p, stream, End::Clean);
                return;
            }
            SyncResponse::Refused => {
                debug!(%peer, %stream, "the peer refused our sync message");
                self.end_session(p, stream, End::Failed);
                return;
            }
        };
        self.stats.sync_bytes_received += bytes.len() as u64;
        let message = match Message::decode(&bytes, &self.config.sync_limits) {
            Ok(m) => m,
            Err(e) => {
                self.stats.sync_garbage += 1;
                warn!(%peer, %stream, bytes = bytes.len(), "sync response does not decode: {e}; session dropped");
                self.end_session(p, stream, End::Failed);
                return;
            }
        };
        let (Some(slot), Some(session)) = (self.streams.get_mut(&stream), self.sessions.get_mut(&(p, stream))) else {
            return;
        };
        let more = message.more;
        let before = slot.replica.len();
        let received = receive_message(&mut slot.replica, &mut session.state, message).await;
        note_received(slot, &mut self.stats, &self.updates, peer, before, &received);
        if let Err(e) = received {
            self.stats.sync_garbage += 1;
            warn!(%peer, %stream, "sync response refused: {e}; session dropped");
            self.end_session(p, stream, End::Failed);
            return;
        }
        self.step(p, stream, more).await;
    }
}

/// Accounts for a message taken in: counts, logs refused blocks, marks the
/// stream for announcement and tells subscribers when events joined.
fn note_received<S: ?Sized + StreamStore>(
    slot: &mut StreamSlot<S>,
    stats: &mut Stats,
    updates: &broadcast::Sender<Update>,
    peer: PeerId,
    before: usize,
    received: &Result<Received, SyncError>,
) {
    let stream = *slot.replica.stream_id();
    if let Ok(r) = received {
        stats.blocks_duplicate += r.duplicate as u64;
    }
    if let Ok(r) = received
        && r.rejected > 0
    {
        stats.blocks_rejected += r.rejected as u64;
        let first = r.rejections.first().map(ToString::to_string).unwrap_or_default();
        warn!(%peer, %stream, refused = r.rejected, "blocks from the peer refused (first: {first}); ignored");
    }
    let added = slot.replica.len().saturating_sub(before);
    if added > 0 {
        slot.dirty = true;
        stats.events_received += added as u64;
        let _ = updates.send(Update { stream, source: Source::Peer(peer), added });
    }
}

fn new_state(limits: SyncLimits) -> SyncState {
    let mut state = SyncState::new();
    state.set_limits(limits);
    state
}

fn endpoint_addr(endpoint: &ConnectedPoint) -> &Multiaddr {
    match endpoint {
        ConnectedPoint::Dialer { address, .. } => address,
        ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use merkle_clock::MemoryBlockstore;

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}

    #[test]
    fn public_types_are_send_and_sync() {
        send_sync::<NodeHandle<dyn StreamStore>>();
        send_sync::<NodeHandle<MemoryBlockstore>>();
        send_sync::<Config>();
        send_sync::<Stats>();
        send_sync::<Update>();
        send_sync::<NodeError>();
    }

    /// The handle's futures only wait on channels, so they are `Send` even
    /// though the replica's own futures need not be.
    #[allow(dead_code)]
    fn handle_futures_are_send(h: NodeHandle<dyn StreamStore>, stream: Cid, replica: Replica<dyn StreamStore>) {
        send(&h.add_stream(replica));
        send(&h.append(stream, "x"));
        send(&h.append_many(stream, ["x", "y"]));
        send(&h.heads(stream));
        send(&h.read(stream, |r| r.len()));
        send(&h.get(stream, Vec::new()));
        send(&h.dial("/ip4/127.0.0.1/tcp/1".parse().expect("valid")));
        send(&h.listen_addr());
        send(&h.set_offline(true));
        send(&h.stats());
        send(&h.shutdown());
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let (commands_tx, commands) = mpsc::channel(1);
        drop(commands_tx);
        let config = Config { announce_interval: Duration::from_secs(4), listen: Vec::new(), ..Config::default() };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let _guard = runtime.enter();
        let node = Node::<dyn StreamStore>::build(config, commands, broadcast::channel(1).0).expect("node");
        for _ in 0..1000 {
            let d = node.jittered_interval();
            assert!(d >= Duration::from_secs(3) && d <= Duration::from_secs(5), "{d:?}");
        }
    }
}
