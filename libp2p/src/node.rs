//! The node: a task that owns a swarm and the replicas of its streams, and
//! runs the loop that feeds them commands, swarm events and the timer.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::{Transport, upgrade};
use libp2p::gossipsub::{MessageAcceptance, MessageId, TopicHash};
use libp2p::identity::Keypair;
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, noise, tcp, yamux};
use merkle_clock::sync::{Bloom, SessionStats, Sessions};
use merkle_clock::{Cid, Replica, StreamStore};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::announce::topic;
use crate::bitswap::Server;
use crate::config::{Behaviour, BehaviourEvent, NodeConfig};
use crate::fetch::Fetches;
use crate::handle::{Command, NodeError, NodeHandle, Source, Stats, StreamAnnouncement, Update};
use crate::metered::{Meter, Metered};
use crate::pull::Pulls;
use crate::sessions::{Outbox, Pending};

/// One stream the node replicates.
pub(crate) struct StreamSlot<S: ?Sized + StreamStore> {
    pub(crate) replica: Replica<S>,
    /// The session driver: one state per peer that follows the stream.
    pub(crate) sessions: Sessions<PeerId>,
    pub(crate) topic: TopicHash,
    /// The heads changed (or a peer subscribed) since the last announcement.
    pub(crate) dirty: bool,
    pub(crate) last_announce: Option<Instant>,
    pub(crate) next_announce: Instant,
    /// Local events not announced yet (their blocks ride in the next
    /// announcement when they fit in `announce_block_bytes`).
    pub(crate) fresh: Vec<Cid>,
    /// Announced heads wanted from peers.
    pub(crate) pulls: Pulls,
    /// When an announcement last brought events (pulls wait while they flow).
    pub(crate) last_carried: Option<Instant>,
}

/// The node's task: owns the swarm and the replicas; runs on a thread of
/// its own ([`Node::spawn`]) and is controlled through a [`NodeHandle`].
pub struct Node<S: ?Sized + StreamStore + 'static> {
    pub(crate) swarm: Swarm<Behaviour>,
    pub(crate) config: NodeConfig,
    /// The drivers' clock starts here.
    pub(crate) started: Instant,
    pub(crate) streams: HashMap<Cid, StreamSlot<S>>,
    pub(crate) topics: HashMap<TopicHash, Cid>,
    /// The durable part of the sync state of peers that went away, for when
    /// they are back (a few heads per peer and stream ever met).
    pub(crate) durable: HashMap<(PeerId, Cid), Vec<u8>>,
    pub(crate) requests: HashMap<OutboundRequestId, Pending>,
    pub(crate) outbox: Outbox,
    /// Gossip validation results to report, each from its time on
    /// ([`NodeConfig::forward_delay`]).
    pub(crate) validations: VecDeque<(Instant, MessageId, PeerId, MessageAcceptance)>,
    pub(crate) fetches: Fetches,
    pub(crate) connected: HashSet<PeerId>,
    pub(crate) dial_targets: Vec<Multiaddr>,
    pub(crate) target_conns: HashMap<Multiaddr, HashSet<ConnectionId>>,
    pub(crate) pending_dials: HashMap<ConnectionId, Multiaddr>,
    pub(crate) last_redial: Option<Instant>,
    pub(crate) offline: bool,
    pub(crate) listen_addrs: Vec<Multiaddr>,
    listen_waiters: Vec<oneshot::Sender<Vec<Multiaddr>>>,
    pub(crate) updates: broadcast::Sender<Update>,
    pub(crate) announcements: broadcast::Sender<StreamAnnouncement>,
    pub(crate) stats: Stats,
    /// Bitswap's ledgers and writers, when it is on.
    pub(crate) bitswap: Option<Server>,
    /// Invalid events per peer, and banned peers (`ban.rs`).
    pub(crate) bans: crate::ban::Bans,
    /// Bytes every connection read and wrote.
    meter: Arc<Meter>,
    commands: mpsc::Receiver<Command<S>>,
}

impl<S: ?Sized + StreamStore + 'static> fmt::Debug for Node<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", self.swarm.local_peer_id())
            .field("streams", &self.streams.len())
            .field("connected", &self.connected.len())
            .finish()
    }
}

/// How often the node runs its timers: the session drivers' ticks,
/// announcements, redials.
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
    pub fn spawn(config: NodeConfig) -> Result<NodeHandle<S>, NodeError> {
        let (commands_tx, commands) = mpsc::channel(256);
        let (updates, _) = broadcast::channel(4096);
        let (announcements, _) = broadcast::channel(1024);
        let (setup_tx, setup_rx) = std::sync::mpsc::channel();
        let (node_updates, node_announcements) = (updates.clone(), announcements.clone());
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
                    match Node::build(config, commands, node_updates, node_announcements) {
                        Ok(node) => {
                            let bitswap = node.bitswap.as_ref().map(|b| std::sync::Arc::clone(&b.shared));
                            let _ = setup_tx.send(Ok((*node.swarm.local_peer_id(), bitswap)));
                            node.run().await;
                        }
                        Err(e) => {
                            let _ = setup_tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(|e| NodeError::Setup(format!("node thread: {e}")))?;
        let (peer_id, bitswap) = setup_rx.recv().map_err(|_| NodeError::Stopped)??;
        Ok(NodeHandle { commands: commands_tx, updates, announcements, peer_id, bitswap })
    }

    fn build(
        config: NodeConfig,
        commands: mpsc::Receiver<Command<S>>,
        updates: broadcast::Sender<Update>,
        announcements: broadcast::Sender<StreamAnnouncement>,
    ) -> Result<Self, NodeError> {
        let keypair = config.keypair.clone().unwrap_or_else(Keypair::generate_ed25519);
        let setup = |e: &dyn fmt::Display| NodeError::Setup(e.to_string());
        let meter = Arc::new(Meter::default());
        let tcp_meter = meter.clone();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_other_transport(|key| {
                // TCP as `with_tcp` builds it, each connection's bytes counted.
                let noise =
                    noise::Config::new(key).map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                        .map(move |stream, _| Metered::new(stream, tcp_meter.clone()))
                        .upgrade(upgrade::Version::V1Lazy)
                        .authenticate(noise)
                        .multiplex(yamux::Config::default()),
                )
            })
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
        let bitswap = match &config.bitswap {
            Some(c) => Some(Server::start(swarm.behaviour().stream.new_control(), c.clone())?),
            None => None,
        };
        Ok(Node {
            bitswap,
            swarm,
            config,
            started: Instant::now(),
            streams: HashMap::new(),
            topics: HashMap::new(),
            durable: HashMap::new(),
            requests: HashMap::new(),
            outbox: Outbox::default(),
            validations: VecDeque::new(),
            fetches: Fetches::default(),
            connected: HashSet::new(),
            dial_targets: Vec::new(),
            target_conns: HashMap::new(),
            pending_dials: HashMap::new(),
            last_redial: None,
            offline: false,
            listen_addrs: Vec::new(),
            listen_waiters: Vec::new(),
            updates,
            announcements,
            stats: Stats::default(),
            bans: Default::default(),
            meter,
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
                        // Bitswap's fetchers say `Closed` from now on: its
                        // server goes before the reply, not after it.
                        let Node { swarm, streams, bitswap, .. } = self;
                        drop(bitswap);
                        drop(swarm);
                        let _ = reply.send(streams.into_values().map(|s| s.replica).collect());
                        return;
                    }
                    Some(command) => self.on_command(command).await,
                    None => return,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                wants = next_bitswap_wants(&mut self.bitswap) => self.on_bitswap_wants(wants).await,
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.report_validations(Some(now));
                    self.announce_due(now).await;
                    self.redial_due(now);
                    self.tick_sessions().await;
                    self.bitswap_tick().await;
                    self.pull_due(now).await;
                }
            }
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
                            slot.fresh.extend_from_slice(&cids);
                            let _ = self.updates.send(Update { stream, source: Source::Local, added: cids.len() });
                            Ok(cids)
                        }
                        Err(e) => Err(e.into()),
                    },
                };
                let appended = result.is_ok();
                let _ = reply.send(result);
                if appended {
                    // Announce (with the new events) when the debounce allows;
                    // with `sessions.push`, also push to every peer of the stream.
                    if self.config.sessions.push {
                        self.push(stream, None).await;
                    }
                    self.announce_due(Instant::now()).await;
                }
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
            Command::Fetch(stream, cids, reply) => self.fetch(stream, cids, reply),
            Command::Announce(stream, heads, blocks, reply) => {
                let _ = reply.send(self.publish(stream, heads, blocks));
            }
            Command::Dial(addr, reply) => {
                let _ = reply.send(self.dial_target(addr));
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
                self.set_offline(offline);
                let _ = reply.send(());
            }
            Command::Stats(reply) => {
                let mut stats = self.stats.clone();
                stats.bytes_read = self.meter.read.load(Ordering::Relaxed);
                stats.bytes_written = self.meter.written.load(Ordering::Relaxed);
                stats.sessions = self
                    .streams
                    .values()
                    .fold(SessionStats::default(), |sum, s| add_session_stats(sum, s.sessions.stats()));
                let _ = reply.send(stats);
            }
            Command::Unavailable(stream, reply) => {
                let gone = self.streams.get(&stream).map(|s| s.sessions.unavailable(&s.replica));
                let _ = reply.send(gone.ok_or(NodeError::UnknownStream(stream)));
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
        let protocol = Bloom { limits: self.config.sync_limits };
        let sessions = Sessions::with_protocol(protocol, self.config.sessions.clone());
        self.streams.insert(
            stream,
            StreamSlot {
                replica,
                sessions,
                topic: topic.hash(),
                dirty: true,
                last_announce: None,
                next_announce,
                fresh: Vec::new(),
                pulls: Pulls::default(),
                last_carried: None,
            },
        );
        debug!(%stream, "added stream");
        Ok(())
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.on_gossip(e).await,
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.on_sync(e).await,
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                if let Some(b) = &self.bitswap {
                    b.identified(peer_id, &info.protocols);
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.listen_addrs.push(address);
                for w in self.listen_waiters.drain(..) {
                    let _ = w.send(self.listen_addrs.clone());
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                self.on_connection_established(peer_id, connection_id, &endpoint);
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } => {
                if let (0, Some(b)) = (num_established, self.bitswap.as_mut()) {
                    b.peer_gone(&peer_id);
                }
                self.on_connection_closed(peer_id, connection_id, num_established);
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                self.on_dial_failed(connection_id, &error);
            }
            _ => {}
        }
    }
}

/// The next wantlist for the node's Bitswap server; never, when it is off.
async fn next_bitswap_wants(server: &mut Option<Server>) -> crate::bitswap::InboundWants {
    match server {
        Some(s) => s.next_wants().await,
        None => futures::future::pending().await,
    }
}

/// The sum of two drivers' counters.
fn add_session_stats(mut a: SessionStats, b: SessionStats) -> SessionStats {
    a.messages_sent += b.messages_sent;
    a.bytes_sent += b.bytes_sent;
    a.messages_received += b.messages_received;
    a.bytes_received += b.bytes_received;
    a.errors += b.errors;
    a.timeouts += b.timeouts;
    a.reconnects += b.reconnects;
    a.failures += b.failures;
    a.capped += b.capped;
    a.anti_entropy += b.anti_entropy;
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::StreamFetcher;
    use crate::gossip::NodeBroadcaster;
    use merkle_clock::MemoryBlockstore;

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}

    #[test]
    fn public_types_are_send_and_sync() {
        send_sync::<NodeHandle<dyn StreamStore>>();
        send_sync::<NodeHandle<MemoryBlockstore>>();
        send_sync::<NodeBroadcaster<dyn StreamStore>>();
        send_sync::<StreamFetcher<dyn StreamStore>>();
        send_sync::<NodeConfig>();
        send_sync::<crate::BitswapFetcher>();
        send_sync::<crate::BitswapStats>();
        send_sync::<crate::bitswap::BitswapError>();
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
        let config =
            NodeConfig { announce_interval: Duration::from_secs(4), listen: Vec::new(), ..NodeConfig::default() };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let _guard = runtime.enter();
        let node = Node::<dyn StreamStore>::build(config, commands, broadcast::channel(1).0, broadcast::channel(1).0)
            .expect("node");
        for _ in 0..1000 {
            let d = node.jittered_interval();
            assert!(d >= Duration::from_secs(3) && d <= Duration::from_secs(5), "{d:?}");
        }
    }
}
