//! A deterministic network simulator for the sync protocols.
//!
//! It runs N replicas of one stream in one thread, moves their sync messages
//! as encoded bytes through a faulty network, and checks that once the
//! faults stop every replica holds the same blocks, heads and order.
//!
//! # The model
//!
//! Time advances in ticks. In each tick, in this order:
//!
//! 1. **Lifecycle.** Scheduled nodes join (late joiners start with only the
//!    genesis), go down, come back up, and partitions heal.
//! 2. **Appends.** Nodes append the local events due (payloads are random
//!    bytes from the seed). A node that is down appends when it is back.
//! 3. **Deliveries.** Every message due is delivered, by delivery time then
//!    sending order. The receiver takes it in with its state for the sender
//!    and at once makes its reply (if it has one) with the same state.
//! 4. **Anti-entropy.** Every live node makes a message for its two ring
//!    neighbours and for [`SimConfig::random_peers`] random peers (gossip:
//!    not all pairs, so 100 nodes stay cheap). A protocol with nothing to
//!    say returns `None` and nothing is sent.
//!
//! Each node keeps one protocol state per peer (created on first contact).
//! The network ([`Network`]) applies the faults of the run to every message
//! sent: loss, duplication (each copy with its own delay), a base delay and a
//! random extra delay that reorders messages, and [`Partition`]s that cut
//! groups of nodes apart for a window of time and then heal. Nodes join late
//! with only the genesis, and restart: the [`Replica`] and the ephemeral part
//! of its sync states are dropped, the store (an `Arc<MemoryBlockstore>`) is
//! kept, and after [`SimConfig::downtime`] ticks the replica reopens with
//! [`Replica::open`] and the sync states are rebuilt from their durable
//! bytes. Messages to a node that is down or not yet joined are lost.
//!
//! Two rules stand in for what an application does about failures, since
//! a protocol cannot tell a lost message from a slow one. When two nodes
//! (re)connect (a join, a restart, a healed partition), each resets the
//! ephemeral part of its state for the other, as on a new connection. And a
//! node that has heard nothing from a peer for [`SimConfig::session_timeout`]
//! ticks, while it does not know that peer to hold what it holds
//! ([`Protocol::settled`]), resets its state for that peer (the timeout
//! doubles at each such reset, up to 8 times, and starts over when the peer
//! speaks). Set the timeout to `None` to check that a protocol never needs
//! it on a network that loses nothing.
//!
//! The fault phase lasts [`SimConfig::fault_ticks`] ticks: every append,
//! join and restart falls in it. Then the network becomes perfect (unless
//! [`SimConfig::persistent_faults`]; a partition may outlast the phase too)
//! and anti-entropy runs until every replica holds the same heads and order
//! — quiescence — or [`SimConfig::max_ticks`] more ticks have passed, and
//! then [`SimReport::converged`] is `false`. A run always ends.
//!
//! # Determinism
//!
//! Every random choice (the schedule, the payloads, the network's faults, the
//! peers, the seeds of the protocol states and so the Bloom filters' salts)
//! comes from [`SimRng`] streams forked from [`SimConfig::seed`]; nodes, peers
//! and messages are visited in a fixed order, and nothing iterates a hash
//! map. Every join, append (with the event's CID), send (with the message's
//! length and hash), delivery, drop and reset is a line of the trace, and
//! [`SimReport::trace_hash`] hashes them all: the same seed and configuration
//! give the same hash on every machine (with the same version of this
//! crate: a protocol change changes the messages), so a failing seed is a
//! reproducible bug report. Set [`SimConfig::keep_trace`] to get the lines themselves.
//!
//! # Running a simulation
//!
//! ```
//! use merkle_clock::sim::{Partition, SimConfig, Simulation};
//!
//! let config = SimConfig {
//!     seed: 7,
//!     nodes: 4,
//!     events_per_node: 3,
//!     loss: 0.1,
//!     dup: 0.1,
//!     reorder: 3,
//!     partitions: vec![Partition::split(2, 5, 15)],
//!     late_joiners: 1,
//!     restarts: 1,
//!     ..SimConfig::default()
//! };
//! let mut sim = Simulation::new(config.clone()).unwrap();
//! let report = sim.run().unwrap();
//! assert!(report.converged, "{report}");
//! assert_eq!(report.events, 1 + 4 * 3); // the genesis and every append
//! let heads = sim.replica(0).unwrap().heads();
//! for n in 1..4 {
//!     assert_eq!(sim.replica(n).unwrap().heads(), heads);
//!     assert_eq!(sim.store(n).len(), report.events);
//! }
//! // Same seed, same run.
//! let again = Simulation::new(config).unwrap().run().unwrap();
//! assert_eq!(report.trace_hash, again.trace_hash);
//! ```
//!
//! [`SyncProtocol::Naive`] runs the level-by-level baseline instead,
//! [`SyncProtocol::BloomWithLimits`] the Bloom protocol with small message
//! limits (blocks split over many messages), and any [`Protocol`] can be run
//! with [`Simulation::with_protocol`].
//!
//! # Reading a failure
//!
//! A run that does not converge is a bug with a seed. Run it again with
//! [`SimConfig::keep_trace`] and read [`SimReport::trace`]: one line per step,
//! `tick what details`, e.g. `12 send n1>n3 175B#5f069f05 @14 dup@16` (a
//! 175-byte message whose BLAKE3 starts `5f069f05`, due at tick 14, and a
//! copy at 16), `14 deliver n1>n3 175B#5f069f05 events=9` (the receiver then
//! held 9 events), `lost`, `cut` (a partition), `undeliverable` (the receiver
//! was down), `reset n3:n1 timeout`. After the run,
//! [`Simulation::replica`], [`Simulation::store`] and [`Simulation::state`]
//! show where each node stopped.

mod adapter;
mod network;
mod protocol;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use ipld_core::cid::Cid;
use ipld_core::ipld::Ipld;
use thiserror::Error;

use crate::block::{Block, short_cid};
use crate::event::Event;
use crate::replica::{AppendError, OpenError, Replica, ReplicaConfig};
use crate::store::MemoryBlockstore;

pub use crate::rng::SimRng;
pub use adapter::{SyncProtocol, SyncProtocolState};
pub use network::{Envelope, Faults, Network, NodeId, Partition, Sent, Tick};
pub use protocol::Protocol;

/// The parameters of one run. Start from [`SimConfig::default()`] and change
/// fields.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Seeds every random choice of the run.
    pub seed: u64,
    /// How many replicas.
    pub nodes: usize,
    /// Local events each writer appends during the fault phase.
    pub events_per_node: usize,
    /// How many nodes append events (chosen at random); `None`: every node.
    /// The others only read, as in a stream with few writers and many readers.
    pub writers: Option<usize>,
    /// The size of each event's random payload, in bytes.
    pub payload_bytes: usize,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub dup: f64,
    /// Ticks every message takes (at least 1).
    pub base_delay: Tick,
    /// The most extra random delay per message, in ticks; above 0, messages
    /// are reordered.
    pub reorder: Tick,
    /// Windows during which groups of nodes cannot reach each other.
    pub partitions: Vec<Partition>,
    /// How many nodes (never node 0) join late, at a random tick in the
    /// middle half of the fault phase, with only the genesis.
    pub late_joiners: usize,
    /// How many restarts, each of a random node at a random tick of the fault
    /// phase. A restart that finds no free window is skipped
    /// ([`SimReport::restarts`] counts those done).
    pub restarts: usize,
    /// How many ticks a restarting node stays down.
    pub downtime: Tick,
    /// The length of the fault phase, in ticks: appends, joins and restarts
    /// happen in it; loss, duplication and reordering act in it.
    pub fault_ticks: Tick,
    /// The most anti-entropy ticks after the fault phase before giving up.
    pub max_ticks: Tick,
    /// Whether every node syncs with its two ring neighbours every tick.
    pub ring: bool,
    /// How many random peers each node syncs with every tick.
    pub random_peers: usize,
    /// Nodes start their anti-entropy messages every this many ticks (at least 1).
    pub sync_interval: Tick,
    /// A node that has heard nothing from a peer for this many ticks, and
    /// does not know it to hold what it holds ([`Protocol::settled`]), resets
    /// its state for that peer (the timeout doubles at each reset without an
    /// answer, up to 8 times). `None`: never.
    pub session_timeout: Option<Tick>,
    /// Whether loss, duplication and reordering go on after the fault phase.
    pub persistent_faults: bool,
    /// Keep every trace line in [`SimReport::trace`] (the hash is always computed).
    pub keep_trace: bool,
    /// The protocol [`Simulation::new`] runs.
    pub protocol: SyncProtocol,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            nodes: 4,
            events_per_node: 4,
            writers: None,
            payload_bytes: 16,
            loss: 0.0,
            dup: 0.0,
            base_delay: 1,
            reorder: 0,
            partitions: Vec::new(),
            late_joiners: 0,
            restarts: 0,
            downtime: 5,
            fault_ticks: 40,
            max_ticks: 2000,
            ring: true,
            random_peers: 1,
            sync_interval: 1,
            session_timeout: Some(8),
            persistent_faults: false,
            keep_trace: false,
            protocol: SyncProtocol::Bloom,
        }
    }
}

/// A configuration the simulator cannot run, or a replica that failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SimError {
    /// A field of [`SimConfig`] is out of range.
    #[error("invalid simulation config: {0}")]
    Config(String),
    /// [`Simulation::run`] was called twice.
    #[error("the simulation has run already")]
    AlreadyRan,
    /// A replica could not be created or reopened.
    #[error("node {node}: {source}")]
    Open {
        /// The node.
        node: NodeId,
        /// What failed.
        #[source]
        source: OpenError,
    },
    /// A local append failed.
    #[error("node {node}: {source}")]
    Append {
        /// The node.
        node: NodeId,
        /// What failed.
        #[source]
        source: AppendError,
    },
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimReport {
    /// The protocol's name.
    pub protocol: &'static str,
    /// The seed.
    pub seed: u64,
    /// Whether every replica held the same blocks, heads and order before the bound.
    pub converged: bool,
    /// Anti-entropy ticks from the end of the fault phase to quiescence (to
    /// the bound when it did not converge).
    pub rounds: Tick,
    /// Ticks simulated in all.
    pub ticks: Tick,
    /// Events in node 0's replica at the end, the genesis included.
    pub events: usize,
    /// Events appended in the run.
    pub appended: usize,
    /// Messages sent (a duplicated message counts once).
    pub messages: u64,
    /// Bytes of the messages sent.
    pub bytes: u64,
    /// Messages delivered and taken in (duplicates included).
    pub delivered: u64,
    /// Messages lost at random.
    pub lost: u64,
    /// Messages delivered twice.
    pub duplicated: u64,
    /// Messages lost to a partition.
    pub partitioned: u64,
    /// Messages lost because the receiver was down or not yet joined.
    pub undeliverable: u64,
    /// Errors the protocol returned (generating or taking in a message).
    pub errors: u64,
    /// Per-peer states reset by a session timeout.
    pub timeouts: u64,
    /// Per-peer states reset by a (re)connection.
    pub reconnects: u64,
    /// Restarts done.
    pub restarts: usize,
    /// Late joins done.
    pub late_joins: usize,
    /// BLAKE3 of the trace (one line per step, each ending in `\n`), in hex.
    pub trace_hash: String,
    /// The number of trace lines.
    pub trace_lines: u64,
    /// The trace lines, if [`SimConfig::keep_trace`].
    pub trace: Vec<String>,
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} seed={} converged={} rounds={} ticks={} events={} messages={} bytes={} delivered={} lost={} dup={} \
             cut={} undeliverable={} errors={} timeouts={} reconnects={} restarts={} late_joins={} trace={}",
            self.protocol,
            self.seed,
            self.converged,
            self.rounds,
            self.ticks,
            self.events,
            self.messages,
            self.bytes,
            self.delivered,
            self.lost,
            self.duplicated,
            self.partitioned,
            self.undeliverable,
            self.errors,
            self.timeouts,
            self.reconnects,
            self.restarts,
            self.late_joins,
            &self.trace_hash[..16.min(self.trace_hash.len())],
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Absent,
    Up,
    Down,
}

/// One step of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Join(NodeId),
    Down(NodeId),
    Up(NodeId),
    Append(NodeId),
    Heal(usize),
}

/// What node `a` keeps about its conversation with one peer.
struct Session<St> {
    state: St,
    /// When `a` last heard from the peer, or reset or created this state.
    heard: Tick,
    /// Timeout resets without an answer since the last message received.
    backoff: u32,
}

struct Node<St> {
    store: Arc<MemoryBlockstore>,
    replica: Option<Replica<MemoryBlockstore>>,
    status: Status,
    sessions: BTreeMap<NodeId, Session<St>>,
    /// Durable parts of the sessions while the node is down.
    saved: BTreeMap<NodeId, Vec<u8>>,
    /// Appends that fell due while the node was down.
    owed: usize,
}

struct Trace {
    hasher: blake3::Hasher,
    lines: u64,
    keep: Option<Vec<String>>,
}

impl Trace {
    fn push(&mut self, line: String) {
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
        self.lines += 1;
        if let Some(keep) = &mut self.keep {
            keep.push(line);
        }
    }
}

/// A simulated network of replicas of one stream. See the
/// [module documentation](self).
pub struct Simulation<P: Protocol = SyncProtocol> {
    config: SimConfig,
    protocol: P,
    genesis: Block,
    nodes: Vec<Node<P::State>>,
    network: Network,
    schedule: BTreeMap<Tick, Vec<Action>>,
    salts: SimRng,
    peers: SimRng,
    payloads: SimRng,
    trace: Trace,
    report: SimReport,
    appended: BTreeSet<Cid>,
    now: Tick,
    ran: bool,
}

impl<P: Protocol> fmt::Debug for Simulation<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulation")
            .field("protocol", &self.protocol.name())
            .field("seed", &self.config.seed)
            .field("nodes", &self.nodes.len())
            .field("now", &self.now)
            .field("in_flight", &self.network.in_flight())
            .finish()
    }
}

impl Simulation<SyncProtocol> {
    /// A simulation of `config.protocol`.
    ///
    /// # Errors
    /// [`SimError::Config`] when a field is out of range.
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
        let protocol = config.protocol;
        Simulation::with_protocol(config, protocol)
    }
}

impl<P: Protocol> Simulation<P> {
    /// A simulation of any [`Protocol`] (`config.protocol` is ignored).
    ///
    /// # Errors
    /// [`SimError::Config`] when a field is out of range.
    pub fn with_protocol(config: SimConfig, protocol: P) -> Result<Self, SimError> {
        validate(&config)?;
        let mut master = SimRng::new(config.seed);
        let mut schedule_rng = master.fork();
        let network_rng = master.fork();
        let salts = master.fork();
        let peers = master.fork();
        let payloads = master.fork();
        let genesis = Event::genesis(Ipld::String(format!("merkle-clock simulation {}", config.seed)))
            .encode()
            .map_err(|e| SimError::Config(format!("genesis: {e}")))?;
        let (schedule, late_joins, restarts) = make_schedule(&config, &mut schedule_rng);
        let nodes = (0..config.nodes)
            .map(|_| Node {
                store: Arc::new(MemoryBlockstore::new()),
                replica: None,
                status: Status::Absent,
                sessions: BTreeMap::new(),
                saved: BTreeMap::new(),
                owed: 0,
            })
            .collect();
        let faults =
            Faults { loss: config.loss, dup: config.dup, base_delay: config.base_delay, reorder: config.reorder };
        let network = Network::new(network_rng, faults, config.partitions.clone());
        let report = SimReport {
            protocol: protocol.name(),
            seed: config.seed,
            converged: false,
            rounds: 0,
            ticks: 0,
            events: 0,
            appended: 0,
            messages: 0,
            bytes: 0,
            delivered: 0,
            lost: 0,
            duplicated: 0,
            partitioned: 0,
            undeliverable: 0,
            errors: 0,
            timeouts: 0,
            reconnects: 0,
            restarts,
            late_joins,
            trace_hash: String::new(),
            trace_lines: 0,
            trace: Vec::new(),
        };
        let trace = Trace { hasher: blake3::Hasher::new(), lines: 0, keep: config.keep_trace.then(Vec::new) };
        Ok(Simulation {
            config,
            protocol,
            genesis,
            nodes,
            network,
            schedule,
            salts,
            peers,
            payloads,
            trace,
            report,
            appended: BTreeSet::new(),
            now: 0,
            ran: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The genesis block every node shares.
    pub fn genesis(&self) -> &Block {
        &self.genesis
    }

    /// A node's store (kept across restarts).
    ///
    /// # Panics
    /// If `node` is not below [`SimConfig::nodes`].
    pub fn store(&self, node: NodeId) -> &Arc<MemoryBlockstore> {
        &self.nodes[node].store
    }

    /// A node's replica, if the node is up.
    ///
    /// # Panics
    /// If `node` is not below [`SimConfig::nodes`].
    pub fn replica(&self, node: NodeId) -> Option<&Replica<MemoryBlockstore>> {
        self.nodes[node].replica.as_ref()
    }

    /// The protocol state node `a` keeps for peer `b`, if they have met
    /// (and `a` is not down).
    ///
    /// # Panics
    /// If `a` is not below [`SimConfig::nodes`].
    pub fn state(&self, a: NodeId, b: NodeId) -> Option<&P::State> {
        self.nodes[a].sessions.get(&b).map(|s| &s.state)
    }

    /// Every event appended so far: with the genesis, the union of what the
    /// replicas must converge to.
    pub fn appended(&self) -> &BTreeSet<Cid> {
        &self.appended
    }

    /// Runs the simulation to quiescence or the bound, blocking the thread.
    ///
    /// # Errors
    /// [`SimError::AlreadyRan`] on a second call; [`SimError::Open`] or
    /// [`SimError::Append`] when a replica or its store fails (the memory
    /// store never does). Protocol errors are not errors
    /// of the run: they are counted in [`SimReport::errors`].
    pub fn run(&mut self) -> Result<SimReport, SimError> {
        futures::executor::block_on(self.run_async())
    }

    /// [`Simulation::run`] as a future (it never waits on anything outside
    /// the simulation).
    ///
    /// # Errors
    /// As [`Simulation::run`].
    pub async fn run_async(&mut self) -> Result<SimReport, SimError> {
        if self.ran {
            return Err(SimError::AlreadyRan);
        }
        self.ran = true;
        let calm_from = self.config.fault_ticks;
        let bound = calm_from.saturating_add(self.config.max_ticks);
        loop {
            let t = self.now;
            if t == calm_from && !self.config.persistent_faults {
                self.network.faults = Faults::NONE;
                self.network.faults.base_delay = self.config.base_delay;
            }
            self.lifecycle(t).await?;
            self.deliver(t).await;
            if t.is_multiple_of(self.config.sync_interval.max(1)) {
                self.anti_entropy(t).await;
            }
            if t >= calm_from && self.quiescent() {
                self.report.converged = true;
                self.report.rounds = t - calm_from;
                let r = self.replica(0).expect("quiescent means every node is up");
                let line = format!("{t} converged events={} heads={}", r.len(), r.heads().len());
                self.trace.push(line);
                break;
            }
            if t >= bound {
                self.report.rounds = t - calm_from;
                self.trace.push(format!("{t} gave up in_flight={}", self.network.in_flight()));
                break;
            }
            self.now += 1;
        }
        self.report.ticks = self.now + 1;
        self.report.appended = self.appended.len();
        self.report.events = self.nodes[0].replica.as_ref().map_or(0, Replica::len);
        self.report.trace_hash = self.trace.hasher.finalize().to_hex().to_string();
        self.report.trace_lines = self.trace.lines;
        self.report.trace = self.trace.keep.clone().unwrap_or_default();
        Ok(self.report.clone())
    }

    async fn lifecycle(&mut self, t: Tick) -> Result<(), SimError> {
        let actions = self.schedule.remove(&t).unwrap_or_default();
        for action in actions {
            match action {
                Action::Join(n) => {
                    let config = ReplicaConfig::default();
                    let replica = Replica::create(self.nodes[n].store.clone(), &self.genesis, config)
                        .await
                        .map_err(|source| SimError::Open { node: n, source })?;
                    self.nodes[n].replica = Some(replica);
                    self.nodes[n].status = Status::Up;
                    self.trace.push(format!("{t} join n{n}"));
                    self.reconnect(t, n);
                }
                Action::Down(n) => {
                    let node = &mut self.nodes[n];
                    node.replica = None;
                    node.status = Status::Down;
                    let sessions = std::mem::take(&mut node.sessions);
                    node.saved = sessions.into_iter().map(|(p, s)| (p, self.protocol.save(&s.state))).collect();
                    self.trace.push(format!("{t} down n{n} saved={}", self.nodes[n].saved.len()));
                }
                Action::Up(n) => {
                    let stream = *self.genesis.cid();
                    let replica = Replica::open(self.nodes[n].store.clone(), &stream, ReplicaConfig::default())
                        .await
                        .map_err(|source| SimError::Open { node: n, source })?;
                    let saved = std::mem::take(&mut self.nodes[n].saved);
                    for (peer, bytes) in saved {
                        let state = self.protocol.restore(&bytes, self.salts.next_u64());
                        self.nodes[n].sessions.insert(peer, Session { state, heard: t, backoff: 0 });
                    }
                    self.trace.push(format!("{t} up n{n} events={}", replica.len()));
                    self.nodes[n].replica = Some(replica);
                    self.nodes[n].status = Status::Up;
                    self.reconnect(t, n);
                }
                Action::Append(n) => self.nodes[n].owed += 1,
                Action::Heal(p) => {
                    self.trace.push(format!("{t} heal p{p}"));
                    let partition = self.network.partitions[p].clone();
                    for a in 0..self.nodes.len() {
                        let peers: Vec<NodeId> =
                            self.nodes[a].sessions.keys().copied().filter(|&b| partition.separates(a, b)).collect();
                        for b in peers {
                            self.reset(t, a, b, "heal");
                        }
                    }
                }
            }
        }
        for n in 0..self.nodes.len() {
            while self.nodes[n].owed > 0 && self.nodes[n].status == Status::Up {
                self.nodes[n].owed -= 1;
                self.append(t, n).await?;
            }
        }
        Ok(())
    }

    /// `n` (re)connected with fresh states: every peer resets its state for `n`.
    fn reconnect(&mut self, t: Tick, n: NodeId) {
        for a in 0..self.nodes.len() {
            if a != n && self.nodes[a].sessions.contains_key(&n) {
                self.reset(t, a, n, "reconnect");
            }
        }
    }

    /// Resets `a`'s state for `b` to its durable part.
    fn reset(&mut self, t: Tick, a: NodeId, b: NodeId, why: &str) {
        let seed = self.salts.next_u64();
        let Some(session) = self.nodes[a].sessions.get_mut(&b) else { return };
        let durable = self.protocol.save(&session.state);
        session.state = self.protocol.restore(&durable, seed);
        session.heard = t;
        if why == "timeout" {
            session.backoff += 1;
            self.report.timeouts += 1;
        } else {
            session.backoff = 0;
            self.report.reconnects += 1;
        }
        self.trace.push(format!("{t} reset n{a}:n{b} {why}"));
    }

    async fn append(&mut self, t: Tick, n: NodeId) -> Result<(), SimError> {
        let mut payload = vec![0u8; self.config.payload_bytes];
        self.payloads.fill(&mut payload);
        let replica = self.nodes[n].replica.as_mut().expect("an up node has a replica");
        let cid = replica.append(&Ipld::Bytes(payload)).await.map_err(|source| SimError::Append { node: n, source })?;
        let height = replica.dag().id(&cid).map_or(0, |id| replica.dag().height(id));
        self.appended.insert(cid);
        self.trace.push(format!("{t} append n{n} {} h{height}", short_cid(&cid)));
        Ok(())
    }

    fn session(&mut self, a: NodeId, b: NodeId) -> &mut Session<P::State> {
        if !self.nodes[a].sessions.contains_key(&b) {
            let state = self.protocol.new_state(self.salts.next_u64());
            let now = self.now;
            self.nodes[a].sessions.insert(b, Session { state, heard: now, backoff: 0 });
        }
        self.nodes[a].sessions.get_mut(&b).expect("just inserted")
    }

    async fn deliver(&mut self, t: Tick) {
        while let Some(env) = self.network.next_due(t) {
            let (from, to) = (env.from, env.to);
            let tag = message_tag(&env.bytes);
            if self.nodes[to].status != Status::Up {
                self.report.undeliverable += 1;
                self.trace.push(format!("{t} undeliverable n{from}>n{to} {tag}"));
                continue;
            }
            if self.network.cut(from, to, t) {
                self.report.partitioned += 1;
                self.trace.push(format!("{t} cut n{from}>n{to} {tag}"));
                continue;
            }
            self.report.delivered += 1;
            self.session(to, from);
            let node = &mut self.nodes[to];
            let replica = node.replica.as_mut().expect("an up node has a replica");
            let session = node.sessions.get_mut(&from).expect("created above");
            session.heard = t;
            session.backoff = 0;
            let result = self.protocol.receive(replica, &mut session.state, &env.bytes).await;
            match result {
                Ok(()) => self.trace.push(format!("{t} deliver n{from}>n{to} {tag} events={}", replica.len())),
                Err(e) => {
                    self.report.errors += 1;
                    self.trace.push(format!("{t} error n{from}>n{to} {tag} receive: {e}"));
                }
            }
            self.speak(t, to, from).await;
        }
    }

    async fn anti_entropy(&mut self, t: Tick) {
        let n = self.nodes.len();
        for a in 0..n {
            if self.nodes[a].status != Status::Up {
                continue;
            }
            let mut peers: Vec<NodeId> = Vec::new();
            if self.config.ring && n > 1 {
                peers.push((a + 1) % n);
                peers.push((a + n - 1) % n);
            }
            for _ in 0..self.config.random_peers {
                if n > 1 {
                    let p = (a + 1 + self.peers.index(n - 1)) % n;
                    peers.push(p);
                }
            }
            let mut seen = BTreeSet::new();
            peers.retain(|p| seen.insert(*p));
            for b in peers {
                if self.timed_out(t, a, b) {
                    self.reset(t, a, b, "timeout");
                }
                self.speak(t, a, b).await;
            }
        }
    }

    /// Whether `a` heard nothing from `b` for the timeout and does not know
    /// `b` to hold what it holds.
    fn timed_out(&mut self, t: Tick, a: NodeId, b: NodeId) -> bool {
        let Some(timeout) = self.config.session_timeout else { return false };
        self.session(a, b);
        let node = &self.nodes[a];
        let (Some(replica), Some(session)) = (node.replica.as_ref(), node.sessions.get(&b)) else { return false };
        let wait = timeout.saturating_mul(1 << session.backoff.min(3));
        t >= session.heard.saturating_add(wait) && !self.protocol.settled(replica, &session.state)
    }

    /// Asks `a`'s protocol for a message to `b` and sends it.
    async fn speak(&mut self, t: Tick, a: NodeId, b: NodeId) {
        self.session(a, b);
        let node = &mut self.nodes[a];
        let Some(replica) = node.replica.as_ref() else { return };
        let session = node.sessions.get_mut(&b).expect("created above");
        match self.protocol.generate(replica, &mut session.state).await {
            Ok(None) => {}
            Ok(Some(bytes)) => {
                let tag = message_tag(&bytes);
                self.report.messages += 1;
                self.report.bytes += bytes.len() as u64;
                let line = match self.network.send(t, a, b, bytes) {
                    Sent::Queued(at) => format!("{t} send n{a}>n{b} {tag} @{at}"),
                    Sent::Duplicated(x, y) => {
                        self.report.duplicated += 1;
                        format!("{t} send n{a}>n{b} {tag} @{x} dup@{y}")
                    }
                    Sent::Lost => {
                        self.report.lost += 1;
                        format!("{t} send n{a}>n{b} {tag} lost")
                    }
                    Sent::Partitioned => {
                        self.report.partitioned += 1;
                        format!("{t} send n{a}>n{b} {tag} cut")
                    }
                };
                self.trace.push(line);
            }
            Err(e) => {
                self.report.errors += 1;
                self.trace.push(format!("{t} error n{a}>n{b} generate: {e}"));
            }
        }
    }

    /// Whether every node is up and holds the same blocks, heads and order.
    fn quiescent(&self) -> bool {
        let mut replicas = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            match (&node.replica, node.status) {
                (Some(r), Status::Up) => replicas.push(r),
                _ => return false,
            }
        }
        let first = replicas[0];
        let heads = first.heads();
        if replicas.iter().any(|r| r.len() != first.len() || r.heads() != heads) {
            return false;
        }
        // The cheap test passed; now the whole claim.
        let order: Vec<Cid> = first.order().collect();
        let mut want: BTreeSet<Cid> = self.appended.clone();
        want.insert(*self.genesis.cid());
        if order.iter().copied().collect::<BTreeSet<Cid>>() != want {
            return false;
        }
        for (r, node) in replicas.iter().zip(&self.nodes) {
            if !r.order().eq(order.iter().copied()) {
                return false;
            }
            let stored: BTreeSet<Cid> = node.store.blocks().iter().map(|b| *b.cid()).collect();
            if stored != want {
                return false;
            }
        }
        true
    }
}

/// `len` and the first 4 bytes of the message's BLAKE3, for the trace.
fn message_tag(bytes: &[u8]) -> String {
    let h = blake3::hash(bytes);
    let b = h.as_bytes();
    format!("{}B#{:02x}{:02x}{:02x}{:02x}", bytes.len(), b[0], b[1], b[2], b[3])
}

fn validate(c: &SimConfig) -> Result<(), SimError> {
    let bad = |m: String| Err(SimError::Config(m));
    if c.nodes == 0 {
        return bad("nodes must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&c.loss) || !(0.0..=1.0).contains(&c.dup) {
        return bad(format!("loss ({}) and dup ({}) must be probabilities", c.loss, c.dup));
    }
    if c.writers.is_some_and(|w| w > c.nodes) {
        return bad(format!("writers ({:?}) must not exceed nodes ({})", c.writers, c.nodes));
    }
    if c.late_joiners >= c.nodes {
        return bad(format!("late_joiners ({}) must be below nodes ({})", c.late_joiners, c.nodes));
    }
    if c.persistent_faults && c.loss >= 1.0 {
        return bad("persistent loss of 1.0 can never converge".into());
    }
    if c.base_delay == 0 {
        return bad("base_delay must be at least 1".into());
    }
    for (i, p) in c.partitions.iter().enumerate() {
        if p.end < p.start {
            return bad(format!("partition {i} ends before it starts"));
        }
        if let Some(n) = p.groups.iter().flatten().find(|n| **n >= c.nodes) {
            return bad(format!("partition {i} names node {n}, but there are {} nodes", c.nodes));
        }
    }
    Ok(())
}

/// Draws the joins, restarts, appends and heals. Returns the schedule, the
/// late joins and the restarts in it.
fn make_schedule(c: &SimConfig, rng: &mut SimRng) -> (BTreeMap<Tick, Vec<Action>>, usize, usize) {
    let mut schedule: BTreeMap<Tick, Vec<Action>> = BTreeMap::new();
    let mut at = |t: Tick, a: Action| schedule.entry(t).or_default().push(a);
    let f = c.fault_ticks;
    let mut joins = vec![0; c.nodes];
    let mut late: Vec<NodeId> = (1..c.nodes).collect();
    rng.shuffle(&mut late);
    late.truncate(c.late_joiners);
    late.sort_unstable();
    for &n in &late {
        joins[n] = rng.range((f / 4).max(1), (3 * f / 4).max(1));
    }
    for (n, &j) in joins.iter().enumerate() {
        at(j, Action::Join(n));
    }
    // Restarts: a window [down, down + downtime] inside the fault phase,
    // after the join, not overlapping another restart of the same node.
    let mut windows: Vec<Vec<(Tick, Tick)>> = vec![Vec::new(); c.nodes];
    let mut restarts = 0;
    for _ in 0..c.restarts {
        for _attempt in 0..16 {
            let n = rng.index(c.nodes);
            let lo = joins[n] + 1;
            let hi = f.saturating_sub(c.downtime + 1);
            if hi < lo {
                continue;
            }
            let down = rng.range(lo, hi);
            let up = down + c.downtime.max(1);
            if windows[n].iter().any(|&(d, u)| down <= u + 1 && d <= up + 1) {
                continue;
            }
            windows[n].push((down, up));
            at(down, Action::Down(n));
            at(up, Action::Up(n));
            restarts += 1;
            break;
        }
    }
    let mut writers: Vec<NodeId> = (0..c.nodes).collect();
    rng.shuffle(&mut writers);
    writers.truncate(c.writers.unwrap_or(c.nodes));
    writers.sort_unstable();
    for &n in &writers {
        let j = joins[n];
        let mut times: Vec<Tick> = (0..c.events_per_node).map(|_| rng.range(j, f.saturating_sub(1).max(j))).collect();
        times.sort_unstable();
        for t in times {
            at(t, Action::Append(n));
        }
    }
    for (i, p) in c.partitions.iter().enumerate() {
        at(p.end, Action::Heal(i));
    }
    // Within a tick: joins and ups first, then downs, then appends, heals last.
    for actions in schedule.values_mut() {
        actions.sort_by_key(|a| match a {
            Action::Join(_) | Action::Up(_) => 0,
            Action::Down(_) => 1,
            Action::Append(_) => 2,
            Action::Heal(_) => 3,
        });
    }
    (schedule, late.len(), restarts)
}
