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
//!    genesis, and on a signed stream its grants), go down, come back up, and partitions heal.
//! 2. **Appends.** Nodes append the local events due (payloads are random
//!    bytes from the seed). A node that is down appends when it is back.
//! 3. **Deliveries.** Every message due is delivered, by delivery time then
//!    sending order. The receiver takes it in through its session driver
//!    ([`Sessions::receive`](crate::sync::Sessions::receive)) and sends the
//!    reply, if there is one, at once.
//! 4. **Driver ticks.** Every live node with something to do runs its
//!    driver's [`tick`](crate::sync::Sessions::tick) (every
//!    [`SimConfig::sync_interval`] ticks) and sends what is due: new events
//!    for its peers, sessions restarted after a timeout, anti-entropy. A node
//!    has something to do when it started, appended, took in a message or
//!    reconnected a peer since its last tick, or its driver's next deadline
//!    ([`Sessions::next_deadline`](crate::sync::Sessions::next_deadline): a
//!    timeout, the end of a pause, anti-entropy) has come. The others are
//!    not visited: an idle node costs nothing per tick, whatever its number
//!    of peers, and the run is the same as if every node ticked (their
//!    ticks would have said nothing).
//!
//! # Memory
//!
//! Blocks are immutable and content-addressed, so the simulated nodes share
//! their bytes: by default every node's store is an [`ArenaStore`] over one
//! [`BlockArena`], which holds each block once while each store keeps only
//! which blocks it has (a bitset), its log (4 bytes an event) and its heads.
//! What a node costs beyond that is its real [`Replica`] (the DAG index,
//! about 136 bytes an event) and its real [`Sessions`] (a state per peer,
//! whose session remembers the heads both sides said). `examples/scale_report.rs`
//! measures it all at 1,000 to 1,000,000 nodes.
//!
//! Every node is a real [`Replica`] driven by the real session driver
//! ([`Sessions`]), the same one a libp2p node runs:
//! the simulator adds no session logic of its own. A node is connected to its
//! two ring neighbours ([`SimConfig::ring`]) and to
//! [`SimConfig::random_peers`] peers drawn when the run is made (the graph is
//! symmetric: a peer that hears from a node it did not pick connects it too).
//! The network ([`Network`]) applies the faults of the run to every message
//! sent: loss, duplication (each copy with its own delay), a base delay and a
//! random extra delay that reorders messages, and [`Partition`]s that cut
//! groups of nodes apart for a window of time and then heal. Nodes join late
//! with only the genesis, and restart: the [`Replica`] and the ephemeral part
//! of its sync states are dropped, the store (an [`ArenaStore`]) is
//! kept, and after [`SimConfig::downtime`] ticks the replica reopens with
//! [`Replica::open`] and the sync states are rebuilt from their durable
//! bytes. Messages to a node that is down or not yet joined are lost.
//!
//! When two nodes (re)connect (a join, a restart, a healed partition), each
//! restarts its session with the other, as on a new connection
//! ([`Sessions::connect`](crate::sync::Sessions::connect)). Timeouts, their
//! back-off and anti-entropy are the driver's, with the numbers of
//! [`SimConfig::session_timeout`] and [`SimConfig::anti_entropy`] (one tick
//! is one second of the driver's time). Set the timeout to `None` to check
//! that a protocol never needs it on a network that loses nothing.
//!
//! Stores come from a factory ([`Simulation::with_stores`]; by default each
//! node keeps one [`ArenaStore`] over the run's shared [`BlockArena`] for the whole
//! run), asked again when a node comes back up, so a store on disk really
//! reopens. A hook ([`Simulation::run_with`]) sees the simulation after every
//! tick: progress bars, phase reports, pictures.
//!
//! The fault phase lasts [`SimConfig::fault_ticks`] ticks: every append,
//! join and restart falls in it. Then the network becomes perfect (unless
//! [`SimConfig::persistent_faults`]; a partition may outlast the phase too)
//! and anti-entropy runs until every replica holds the same heads and order
//! — quiescence — or [`SimConfig::max_ticks`] more ticks have passed, and
//! then [`SimReport::converged`] is `false`. A run always ends.
//!
//! # Who may write
//!
//! [`Simulation::with_auth`] runs a signed stream ([`crate::auth`]): the
//! genesis names some nodes' keys as admins, every node signs with its own
//! key, and every node starts from the genesis and the first admin's grants
//! of the writer role to all the others (its invitation). An admin revokes
//! a writer with [`Action::Revoke`]; [`Action::KeepWriting`] has the revoked
//! writer go on writing. Until it learns of its revocation its events are
//! valid (concurrent with the revocation); after, its own replica refuses to
//! build them, so the simulator builds each by hand on the writer's heads and
//! offers it to every replica once that replica holds its parents (a writer
//! pushing to everyone, the worst it can do: through sync it would reach
//! fewer, since no replica that refuses an event relays it). Every replica
//! must refuse every one ([`SimReport::refused_after_revocation`],
//! [`Simulation::refused_after_revocation`]); a replica that takes one counts
//! as an error. Quiescence then also waits for every offer to be made.
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
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
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
//! let mut sim = Simulation::new(config.clone())?;
//! let report = sim.run()?;
//! assert!(report.converged, "{report}");
//! assert_eq!(report.events, 1 + 4 * 3); // the genesis and every append
//! let heads = sim.replica(0).ok_or("node 0 is down")?.heads();
//! for n in 1..4 {
//!     assert_eq!(sim.replica(n).ok_or("a node is down")?.heads(), heads);
//!     assert_eq!(sim.replica(n).ok_or("a node is down")?.len(), report.events);
//! }
//! // Same seed, same run.
//! let again = Simulation::new(config)?.run()?;
//! assert_eq!(report.trace_hash, again.trace_hash);
//! # Ok(()) }
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
//! was down), `restart n3:n1 timeout`. After the run,
//! [`Simulation::replica`], [`Simulation::store`] and [`Simulation::sessions`]
//! show where each node stopped.

mod adapter;
mod arena;
mod config;
mod network;
mod wakes;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ipld_core::cid::Cid;
use ipld_core::ipld::Ipld;

use crate::auth::{self, AuthError, AuthorKey, MemberOp, Role, Signer};
use crate::block::{Block, short_cid};
use crate::event::Event;
use crate::replica::{AppendError, Ingest, Rejection, Replica, ReplicaConfig};
use crate::store::{StoreError, StreamStore};
use crate::sync::{SessionConfig, Sessions};

pub use crate::rng::SimRng;
pub use crate::sync::Protocol;
pub use adapter::{SyncProtocol, SyncProtocolState};
pub use arena::{ArenaStore, BlockArena};
pub use config::{Action, Schedule, SimConfig, SimError, SimReport};
pub use network::{Envelope, Faults, Network, NodeId, Partition, Sent, Tick};
use wakes::Wakes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Absent,
    Up,
    Down,
}

/// Makes (and, after a restart, reopens) a node's store.
type StoreFactory = Box<dyn FnMut(NodeId) -> Result<Arc<dyn StreamStore>, StoreError>>;

/// Makes the payload of a node's `k`-th append.
type PayloadFn = Box<dyn FnMut(NodeId, u64) -> Ipld>;

struct Node<P: Protocol> {
    store: Option<Arc<dyn StreamStore>>,
    replica: Option<Replica<dyn StreamStore>>,
    status: Status,
    sessions: Sessions<NodeId, P>,
    /// The peers picked for this node when the run was made, ascending.
    neighbours: Box<[NodeId]>,
    /// Durable parts of the sessions while the node is down.
    saved: BTreeMap<NodeId, Vec<u8>>,
    /// Writes that fell due while the node was down.
    owed: VecDeque<Owed>,
    /// Events this node appended.
    appended: u64,
}

/// A write a node owes: the actions of the schedule that write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    Append,
    KeepWriting,
    Revoke(NodeId),
}

/// The signed policy of a run ([`Simulation::with_auth`]).
struct Auth {
    /// Every node's key.
    signers: Vec<Signer>,
    /// The first admin's grants of the writer role to the other nodes: with
    /// the genesis, every node's invitation.
    grants: Vec<Block>,
    /// Nodes whose key an admin revoked, with the revocation.
    revoked: BTreeMap<NodeId, Cid>,
}

/// An event a revoked writer built by hand, and the replicas offered it.
struct Refused {
    block: Block,
    parents: Vec<Cid>,
    /// Nodes that took the offer in (each once it held the parents).
    offered: BTreeSet<NodeId>,
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
pub struct Simulation<P: Protocol + Clone = SyncProtocol> {
    config: SimConfig,
    genesis: Block,
    nodes: Vec<Node<P>>,
    network: Network,
    schedule: Schedule,
    stores: StoreFactory,
    payloads: PayloadFn,
    trace: Trace,
    report: SimReport,
    appended: BTreeSet<Cid>,
    auth: Option<Auth>,
    refused: BTreeMap<Cid, Refused>,
    /// The nodes each refused event was refused by (kept for callers).
    refused_by: BTreeMap<Cid, BTreeSet<NodeId>>,
    /// Nodes whose driver ticks at the next driver tick (see [`Wakes`]).
    wakes: Wakes,
    now: Tick,
    ran: bool,
}

impl<P: Protocol + Clone> fmt::Debug for Simulation<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulation")
            .field("protocol", &self.report.protocol)
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

/// One tick of simulated time as the driver's time.
fn at(t: Tick) -> Duration {
    Duration::from_secs(t)
}

impl<P: Protocol + Clone> Simulation<P> {
    /// A simulation of any [`Protocol`] (`config.protocol` is ignored).
    ///
    /// # Errors
    /// [`SimError::Config`] when a field is out of range.
    pub fn with_protocol(config: SimConfig, protocol: P) -> Result<Self, SimError> {
        config::validate(&config)?;
        let mut master = SimRng::new(config.seed);
        let mut schedule_rng = master.fork();
        let network_rng = master.fork();
        let mut seeds = master.fork();
        let mut graph = master.fork();
        let mut payload_rng = master.fork();
        let genesis = Event::genesis(Ipld::String(format!("merkle-clock simulation {}", config.seed)))
            .encode()
            .map_err(|e| SimError::Config(format!("genesis: {e}")))?;
        let (schedule, late_joins, restarts) = config::make_schedule(&config, &mut schedule_rng);
        let sessions = SessionConfig {
            timeout: config.session_timeout.map(at),
            anti_entropy: config.anti_entropy.map(at),
            ..SessionConfig::default()
        };
        let neighbours = network_graph(&config, &mut graph);
        let n_nodes = config.nodes;
        let nodes = neighbours
            .into_iter()
            .map(|neighbours| Node {
                store: None,
                replica: None,
                status: Status::Absent,
                sessions: Sessions::with_seed(protocol.clone(), sessions.clone(), seeds.next_u64()),
                neighbours,
                saved: BTreeMap::new(),
                owed: VecDeque::new(),
                appended: 0,
            })
            .collect();
        let faults =
            Faults { loss: config.loss, dup: config.dup, base_delay: config.base_delay, reorder: config.reorder };
        let network = Network::new(network_rng, faults, config.partitions.clone());
        // Each node's store is made when it first joins and kept for the run.
        let arena = Arc::new(BlockArena::new());
        let mut memory: Vec<Option<Arc<ArenaStore>>> = vec![None; config.nodes];
        let payload_bytes = config.payload_bytes;
        let report = SimReport::empty(protocol.name(), config.seed, restarts, late_joins);
        let trace = Trace { hasher: blake3::Hasher::new(), lines: 0, keep: config.keep_trace.then(Vec::new) };
        Ok(Simulation {
            config,
            genesis,
            nodes,
            network,
            schedule,
            stores: Box::new(move |n| {
                let store = memory[n].get_or_insert_with(|| Arc::new(ArenaStore::new(arena.clone())));
                Ok(store.clone() as Arc<dyn StreamStore>)
            }),
            payloads: Box::new(move |_, _| {
                let mut payload = vec![0u8; payload_bytes];
                payload_rng.fill(&mut payload);
                Ipld::Bytes(payload)
            }),
            trace,
            report,
            appended: BTreeSet::new(),
            auth: None,
            refused: BTreeMap::new(),
            refused_by: BTreeMap::new(),
            wakes: Wakes::new(n_nodes),
            now: 0,
            ran: false,
        })
    }

    /// Stores from `factory` instead of one [`ArenaStore`] per node:
    /// it is called when a node joins and again each time it comes back up
    /// (after the simulation dropped its replica and its store), so a store
    /// on disk reopens for real.
    pub fn with_stores(
        mut self,
        factory: impl FnMut(NodeId) -> Result<Arc<dyn StreamStore>, StoreError> + 'static,
    ) -> Self {
        self.stores = Box::new(factory);
        self
    }

    /// Runs `schedule` instead of the one drawn from the configuration
    /// (whose late joiners, restarts and appends it replaces).
    ///
    /// # Errors
    /// [`SimError::Config`] when an action names a node or a partition that
    /// is not in the configuration.
    pub fn with_schedule(mut self, mut schedule: Schedule) -> Result<Self, SimError> {
        for action in schedule.values().flatten() {
            let ok = match *action {
                Action::Join(n) | Action::Down(n) | Action::Up(n) | Action::Append(n) | Action::KeepWriting(n) => {
                    n < self.nodes.len()
                }
                Action::Revoke { admin, writer } => admin < self.nodes.len() && writer < self.nodes.len(),
                Action::Heal(p) => p < self.config.partitions.len(),
            };
            if !ok {
                return Err(SimError::Config(format!("the schedule's {action:?} is out of range")));
            }
        }
        config::sort_within_ticks(&mut schedule);
        self.report.restarts = schedule.values().flatten().filter(|a| matches!(a, Action::Up(_))).count();
        self.report.late_joins =
            schedule.range(1..).flat_map(|(_, a)| a).filter(|a| matches!(a, Action::Join(_))).count();
        self.schedule = schedule;
        Ok(self)
    }

    /// Makes the run's stream a signed one ([`crate::auth`]): its genesis
    /// names the keys of `admins`, every node signs its events with its own
    /// Ed25519 key (derived from [`SimConfig::seed`] and the node's number,
    /// so a seed still gives one run), and the first admin grants every
    /// other node the writer role before the run, in a chain of membership
    /// events on the genesis. Every node starts from its invitation: the
    /// genesis and those grants (a late joiner too). Schedules may then
    /// revoke keys ([`Action::Revoke`]) and have revoked writers keep writing
    /// ([`Action::KeepWriting`]).
    ///
    /// ```
    /// use merkle_clock::sim::{Action, SimConfig, Simulation};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = SimConfig { seed: 3, nodes: 4, events_per_node: 2, loss: 0.1, ..SimConfig::default() };
    /// let sim = Simulation::new(config)?.with_auth(&[0])?;
    /// let mut schedule = sim.schedule().clone();
    /// schedule.entry(20).or_default().push(Action::Revoke { admin: 0, writer: 2 });
    /// for t in 24..30 {
    ///     schedule.entry(t).or_default().push(Action::KeepWriting(2));
    /// }
    /// let mut sim = sim.with_schedule(schedule)?;
    /// let report = sim.run()?;
    /// assert!(report.converged, "{report}");
    /// // What n2 wrote once it knew was refused by all four replicas; none holds it.
    /// for (cid, refused_by) in sim.refused_after_revocation() {
    ///     assert_eq!(refused_by.len(), 4);
    ///     assert!((0..4).all(|n| sim.replica(n).is_some_and(|r| !r.contains(cid))));
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`SimError::Config`] when `admins` is empty or names a node that is
    /// not in the configuration.
    pub fn with_auth(mut self, admins: &[NodeId]) -> Result<Self, SimError> {
        let mut admins = admins.to_vec();
        admins.sort_unstable();
        admins.dedup();
        if admins.is_empty() || admins.iter().any(|&a| a >= self.nodes.len()) {
            return Err(SimError::Config(format!(
                "admins {admins:?} must name some of the {} nodes",
                self.nodes.len()
            )));
        }
        let signers: Vec<Signer> = (0..self.nodes.len()).map(|n| node_signer(self.config.seed, n)).collect();
        let keys: Vec<AuthorKey> = admins.iter().map(|&a| signers[a].public()).collect();
        let payload = Ipld::String(format!("merkle-clock simulation {}", self.config.seed));
        let encode = |e: crate::EncodeError| SimError::Config(format!("genesis and grants: {e}"));
        self.genesis = auth::genesis(&payload, &keys).map_err(encode)?;
        let stream = *self.genesis.cid();
        let mut grants: Vec<Block> = Vec::new();
        for (w, height) in (0..self.nodes.len()).filter(|w| !admins.contains(w)).zip(1..) {
            let op = MemberOp::Grant { key: signers[w].public(), role: Role::Writer };
            let parent = grants.last().map_or(stream, |g| *g.cid());
            let grant = auth::signed_event(&stream, height, &[parent], Some(&op), &Ipld::Null, &signers[admins[0]]);
            grants.push(grant.map_err(encode)?);
        }
        self.appended.extend(grants.iter().map(|g| *g.cid()));
        self.auth = Some(Auth { signers, grants, revoked: BTreeMap::new() });
        Ok(self)
    }

    /// A node's signing key, on a signed stream ([`Simulation::with_auth`]).
    ///
    /// # Panics
    /// If `node` is not below [`SimConfig::nodes`].
    pub fn signer(&self, node: NodeId) -> Option<&Signer> {
        self.auth.as_ref().map(|a| &a.signers[node])
    }

    /// The events revoked writers built by hand once their replica refused
    /// them ([`Action::KeepWriting`]), each with the nodes that refused it
    /// because its author was revoked in its past. At quiescence every node
    /// refused every one, and no replica holds any.
    pub fn refused_after_revocation(&self) -> &BTreeMap<Cid, BTreeSet<NodeId>> {
        &self.refused_by
    }

    /// An event of [`Simulation::refused_after_revocation`], as its writer built it.
    pub fn refused_block(&self, cid: &Cid) -> Option<&Block> {
        self.refused.get(cid).map(|r| &r.block)
    }

    /// The schedule still to run (all of it before the run).
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Payloads from `f(node, k)` for node's `k`-th append (from 0) instead
    /// of [`SimConfig::payload_bytes`] random bytes.
    pub fn with_payloads(mut self, f: impl FnMut(NodeId, u64) -> Ipld + 'static) -> Self {
        self.payloads = Box::new(f);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The genesis block every node shares.
    pub fn genesis(&self) -> &Block {
        &self.genesis
    }

    /// The tick the simulation is at.
    pub fn now(&self) -> Tick {
        self.now
    }

    /// The counters so far (complete once the run returned).
    pub fn progress(&self) -> &SimReport {
        &self.report
    }

    /// A node's store, if the node is up.
    ///
    /// # Panics
    /// If `node` is not below [`SimConfig::nodes`].
    pub fn store(&self, node: NodeId) -> Option<&Arc<dyn StreamStore>> {
        self.nodes[node].store.as_ref()
    }

    /// A node's replica, if the node is up.
    ///
    /// # Panics
    /// If `node` is not below [`SimConfig::nodes`].
    pub fn replica(&self, node: NodeId) -> Option<&Replica<dyn StreamStore>> {
        self.nodes[node].replica.as_ref()
    }

    /// A node's session driver.
    ///
    /// # Panics
    /// If `node` is not below [`SimConfig::nodes`].
    pub fn sessions(&self, node: NodeId) -> &Sessions<NodeId, P> {
        &self.nodes[node].sessions
    }

    /// The protocol state node `a` keeps for peer `b`, if they are connected.
    ///
    /// # Panics
    /// If `a` is not below [`SimConfig::nodes`].
    pub fn state(&self, a: NodeId, b: NodeId) -> Option<&P::State> {
        self.nodes[a].sessions.state(&b)
    }

    /// Every event appended so far: with the genesis, the union of what the
    /// replicas must converge to.
    pub fn appended(&self) -> &BTreeSet<Cid> {
        &self.appended
    }

    /// Runs the simulation to quiescence or the bound, blocking the thread.
    ///
    /// # Errors
    /// [`SimError::AlreadyRan`] on a second call; [`SimError::Open`],
    /// [`SimError::Store`] or [`SimError::Append`] when a replica or its
    /// store fails (the memory store never does). Protocol errors are not
    /// errors of the run: they are counted in [`SimReport::errors`].
    pub fn run(&mut self) -> Result<SimReport, SimError> {
        futures::executor::block_on(self.run_with(|_, _| Ok(())))
    }

    /// [`Simulation::run`] as a future, calling `hook` after every tick
    /// (the simulation never waits on anything outside itself). An error
    /// from the hook ends the run with it.
    ///
    /// # Errors
    /// As [`Simulation::run`], and the hook's.
    pub async fn run_with<E: From<SimError>>(
        &mut self,
        mut hook: impl FnMut(&Self, Tick) -> Result<(), E>,
    ) -> Result<SimReport, E> {
        if self.ran {
            return Err(SimError::AlreadyRan.into());
        }
        self.ran = true;
        if self.auth.is_none()
            && let Some(a) = self.schedule.values().flatten().find(|a| matches!(a, Action::Revoke { .. }))
        {
            return Err(SimError::Config(format!("{a:?} needs a signed stream (Simulation::with_auth)")).into());
        }
        let calm_from = self.config.fault_ticks;
        let bound = calm_from.saturating_add(self.config.max_ticks);
        loop {
            let t = self.now;
            if t == calm_from && !self.config.persistent_faults {
                self.network.faults = Faults { base_delay: self.config.base_delay, ..Faults::NONE };
            }
            self.lifecycle(t).await?;
            self.deliver(t).await;
            self.offer_refused(t).await?;
            if t.is_multiple_of(self.config.sync_interval.max(1)) {
                self.tick_drivers(t).await;
            }
            let quiescent = t >= calm_from && self.quiescent().await;
            hook(self, t)?;
            if quiescent {
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
                    let store = (self.stores)(n).map_err(|source| SimError::Store { node: n, source })?;
                    let mut replica = Replica::create(store.clone(), &self.genesis, ReplicaConfig::default())
                        .await
                        .map_err(|source| SimError::Open { node: n, source })?;
                    replica.set_signer(self.signer(n).cloned());
                    self.invite(t, n, &mut replica).await?;
                    self.start(t, n, store, replica);
                    self.trace.push(format!("{t} join n{n}"));
                }
                Action::Down(n) => {
                    let node = &mut self.nodes[n];
                    node.replica = None;
                    node.store = None;
                    node.status = Status::Down;
                    let peers: Vec<NodeId> = node.sessions.peers().copied().collect();
                    node.saved = peers.iter().filter_map(|p| Some((*p, node.sessions.disconnect(p)?))).collect();
                    self.trace.push(format!("{t} down n{n} saved={}", self.nodes[n].saved.len()));
                }
                Action::Up(n) => {
                    let store = (self.stores)(n).map_err(|source| SimError::Store { node: n, source })?;
                    let stream = *self.genesis.cid();
                    let mut replica = Replica::open(store.clone(), &stream, ReplicaConfig::default())
                        .await
                        .map_err(|source| SimError::Open { node: n, source })?;
                    replica.set_signer(self.signer(n).cloned());
                    for (peer, bytes) in std::mem::take(&mut self.nodes[n].saved) {
                        self.nodes[n].sessions.connect_with(peer, &bytes, at(t));
                    }
                    self.trace.push(format!("{t} up n{n} events={}", replica.len()));
                    self.start(t, n, store, replica);
                }
                Action::Append(n) => self.nodes[n].owed.push_back(Owed::Append),
                Action::KeepWriting(n) => self.nodes[n].owed.push_back(Owed::KeepWriting),
                Action::Revoke { admin, writer } => self.nodes[admin].owed.push_back(Owed::Revoke(writer)),
                Action::Heal(p) => {
                    self.trace.push(format!("{t} heal p{p}"));
                    let partition = self.network.partitions[p].clone();
                    for a in 0..self.nodes.len() {
                        let peers: Vec<NodeId> =
                            self.nodes[a].sessions.peers().copied().filter(|&b| partition.separates(a, b)).collect();
                        for b in peers {
                            self.connect(t, a, b);
                        }
                    }
                }
            }
        }
        for n in 0..self.nodes.len() {
            while self.nodes[n].status == Status::Up {
                let Some(owed) = self.nodes[n].owed.pop_front() else { break };
                self.write(t, n, owed).await?;
            }
        }
        Ok(())
    }

    /// Node `n`, up, does a write it owes.
    async fn write(&mut self, t: Tick, n: NodeId, owed: Owed) -> Result<(), SimError> {
        match (owed, self.knows_revoked(n)) {
            (Owed::Revoke(writer), _) => self.revoke(t, n, writer).await,
            (Owed::Append, false) => self.append(t, n).await,
            (Owed::KeepWriting, false) => {
                self.append(t, n).await?;
                if self.auth.as_ref().is_some_and(|a| a.revoked.contains_key(&n)) {
                    self.report.concurrent_with_revocation += 1;
                }
                Ok(())
            }
            (Owed::Append, true) => {
                self.report.appends_refused += 1;
                self.trace.push(format!("{t} append n{n} refused: revoked"));
                Ok(())
            }
            (Owed::KeepWriting, true) => self.keep_writing(t, n).await,
        }
    }

    /// Whether node `n` (up) knows its key was revoked: `false` on an open stream.
    fn knows_revoked(&self, n: NodeId) -> bool {
        let replica = self.nodes[n].replica.as_ref().expect("an up node has a replica");
        let (Some(members), Some(signer)) = (replica.members(), self.signer(n)) else { return false };
        members.revoked.contains_key(&signer.public())
    }

    /// On a signed stream, a joining node takes in its invitation: the
    /// first admin's grants.
    async fn invite(&mut self, t: Tick, n: NodeId, replica: &mut Replica<dyn StreamStore>) -> Result<(), SimError> {
        let Some(auth) = &self.auth else { return Ok(()) };
        let report =
            replica.ingest_many(auth.grants.clone()).await.map_err(|source| SimError::Store { node: n, source })?;
        if report.accepted.len() != auth.grants.len() {
            self.report.errors += 1;
            self.trace.push(format!("{t} error n{n} invitation: {:?}", report.outcomes));
        }
        Ok(())
    }

    /// Admin `n` revokes node `writer`'s key.
    async fn revoke(&mut self, t: Tick, n: NodeId, writer: NodeId) -> Result<(), SimError> {
        let key = self.signer(writer).map(Signer::public).expect("a revocation runs on a signed stream");
        let replica = self.nodes[n].replica.as_mut().expect("an up node has a replica");
        let cid = replica.revoke(key).await.map_err(|source| SimError::Append { node: n, source })?;
        if let Some(auth) = self.auth.as_mut() {
            auth.revoked.entry(writer).or_insert(cid);
        }
        self.local_event(t, n, cid, &format!("revoke n{n}>n{writer}"));
        Ok(())
    }

    /// Records an event node `n` made: the expected set, the trace, a wake.
    fn local_event(&mut self, t: Tick, n: NodeId, cid: Cid, what: &str) {
        self.wakes.wake(n);
        let replica = self.nodes[n].replica.as_ref().expect("an up node has a replica");
        let height = replica.dag().id(&cid).map_or(0, |id| replica.dag().height(id));
        self.appended.insert(cid);
        self.trace.push(format!("{t} {what} {} h{height}", short_cid(&cid)));
    }

    /// Node `n`, revoked and knowing it, writes anyway: its replica refuses
    /// to build the event, so it is built by hand on the node's heads, to be
    /// offered to every replica ([`Simulation::offer_refused`]).
    async fn keep_writing(&mut self, t: Tick, n: NodeId) -> Result<(), SimError> {
        let node = &mut self.nodes[n];
        let payload = (self.payloads)(n, node.appended);
        node.appended += 1;
        let replica = node.replica.as_mut().expect("an up node has a replica");
        // Its own replica refuses first: the writer is told no.
        let refusal = match replica.append(&payload).await {
            Err(AppendError::Rejected(Rejection::Auth(e @ AuthError::Revoked { .. }))) => e,
            Err(source) => return Err(SimError::Append { node: n, source }),
            Ok(cid) => {
                // Its replica should have refused: a bug, counted, and the event is one of the run's.
                self.report.errors += 1;
                self.local_event(t, n, cid, &format!("error append n{n} although revoked"));
                return Ok(());
            }
        };
        let parents = replica.heads();
        let dag = replica.dag();
        let height = parents.iter().filter_map(|p| dag.id(p)).map(|id| dag.height(id)).max().unwrap_or(0) + 1;
        let signer = self.auth.as_ref().map(|a| &a.signers[n]).expect("a revoked node is on a signed stream");
        let block = auth::signed_event(replica.stream_id(), height, &parents, None, &payload, signer)
            .map_err(|e| SimError::Append { node: n, source: AppendError::Encode(e) })?;
        let cid = *block.cid();
        self.report.refused_after_revocation += 1;
        self.trace.push(format!(
            "{t} keep-writing n{n} {} h{height} refused by its replica: {}",
            short_cid(&cid),
            short_cid(refusal.cid())
        ));
        self.refused_by.insert(cid, BTreeSet::new());
        self.refused.insert(cid, Refused { block, parents, offered: BTreeSet::new() });
        Ok(())
    }

    /// Offers every event a revoked writer built by hand to every live
    /// replica that holds its parents and was not offered it yet. Each must
    /// refuse it ([`AuthError::Revoked`]); anything else counts as an error.
    async fn offer_refused(&mut self, t: Tick) -> Result<(), SimError> {
        if self.refused.is_empty() {
            return Ok(());
        }
        for (cid, r) in &mut self.refused {
            for (n, node) in self.nodes.iter_mut().enumerate() {
                let Some(replica) = node.replica.as_mut() else { continue };
                if r.offered.contains(&n) || !r.parents.iter().all(|p| replica.contains(p)) {
                    continue;
                }
                r.offered.insert(n);
                let outcome =
                    replica.ingest(r.block.clone()).await.map_err(|source| SimError::Store { node: n, source })?;
                match outcome {
                    Ingest::Rejected(Rejection::Auth(AuthError::Revoked { .. })) => {
                        self.refused_by.entry(*cid).or_default().insert(n);
                        self.report.revocation_refusals += 1;
                        self.trace.push(format!("{t} refuse n{n} {}", short_cid(cid)));
                    }
                    other => {
                        self.report.errors += 1;
                        self.trace.push(format!("{t} error n{n} {}: not refused: {other:?}", short_cid(cid)));
                    }
                }
            }
        }
        Ok(())
    }

    /// Node `n` is up with `replica`: it connects its neighbours, and every
    /// live node connected to it (or picked it) restarts its session with it.
    fn start(&mut self, t: Tick, n: NodeId, store: Arc<dyn StreamStore>, replica: Replica<dyn StreamStore>) {
        let node = &mut self.nodes[n];
        node.store = Some(store);
        node.replica = Some(replica);
        node.status = Status::Up;
        let neighbours = node.neighbours.clone();
        for &b in &neighbours {
            if !self.nodes[n].sessions.contains(&b) {
                self.nodes[n].sessions.connect(b, at(t));
            }
        }
        self.wakes.wake(n);
        // The graph is symmetric and a node only ever talks to its
        // neighbours: those are the nodes that may hold a session with `n`.
        for &a in &neighbours {
            if a != n && self.nodes[a].status == Status::Up {
                self.connect(t, a, n);
            }
        }
    }

    /// `a` connects `b`; a session it had restarts.
    fn connect(&mut self, t: Tick, a: NodeId, b: NodeId) {
        self.wakes.wake(a);
        if self.nodes[a].sessions.connect(b, at(t)) {
            self.report.reconnects += 1;
            self.trace.push(format!("{t} restart n{a}:n{b} reconnect"));
        }
    }

    async fn append(&mut self, t: Tick, n: NodeId) -> Result<(), SimError> {
        let node = &mut self.nodes[n];
        let payload = (self.payloads)(n, node.appended);
        node.appended += 1;
        let replica = node.replica.as_mut().expect("an up node has a replica");
        let cid = replica.append(&payload).await.map_err(|source| SimError::Append { node: n, source })?;
        self.local_event(t, n, cid, &format!("append n{n}"));
        Ok(())
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
            self.wakes.wake(to);
            let node = &mut self.nodes[to];
            let replica = node.replica.as_mut().expect("an up node has a replica");
            match node.sessions.receive(replica, &from, &env.bytes, at(t)).await {
                Ok(reply) => {
                    let r = &reply.received;
                    self.report.blocks_received += (r.accepted + r.duplicate + r.pending + r.rejected) as u64;
                    self.report.blocks_duplicate += r.duplicate as u64;
                    self.trace.push(format!("{t} deliver n{from}>n{to} {tag} events={}", replica.len()));
                    // Honest peers never send a block that is refused: one is a bug.
                    if let Some(first) = reply.received.rejections.first() {
                        self.report.errors += 1;
                        self.trace.push(format!("{t} error n{from}>n{to} {tag} rejected: {first}"));
                    }
                    if let Some(message) = reply.reply {
                        self.send(t, to, from, message);
                    }
                }
                Err(e) => {
                    self.report.errors += 1;
                    self.trace.push(format!("{t} error n{from}>n{to} {tag} receive: {e}"));
                }
            }
        }
    }

    /// The driver tick of every live node woken since the last one:
    /// restarts and messages due.
    async fn tick_drivers(&mut self, t: Tick) {
        for a in self.wakes.take(t) {
            let node = &mut self.nodes[a];
            let Some(replica) = node.replica.as_ref() else { continue };
            let result = node.sessions.tick(replica, at(t)).await;
            if let Some(next) = node.sessions.next_deadline(at(t)) {
                self.wakes.at(next.as_secs().max(t + 1), a);
            }
            match result {
                Ok(due) => {
                    for (b, why) in due.restarts {
                        match why {
                            crate::sync::Restart::Timeout => self.report.timeouts += 1,
                            crate::sync::Restart::AntiEntropy => self.report.anti_entropy += 1,
                            _ => {}
                        }
                        self.trace.push(format!("{t} restart n{a}:n{b} {why}"));
                    }
                    for m in due.messages {
                        self.send(t, a, m.peer, m.message);
                    }
                }
                Err(e) => {
                    self.report.errors += 1;
                    self.trace.push(format!("{t} error n{a} tick: {e}"));
                }
            }
        }
    }

    /// Puts a message on the wire.
    fn send(&mut self, t: Tick, a: NodeId, b: NodeId, bytes: Vec<u8>) {
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

    /// Whether every node is up and holds the same blocks, heads and order,
    /// in its index and in its store.
    async fn quiescent(&self) -> bool {
        let mut replicas = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            match (&node.replica, node.status) {
                (Some(r), Status::Up) if node.owed.is_empty() => replicas.push(r),
                _ => return false,
            }
        }
        if self.refused.values().any(|r| r.offered.len() < self.nodes.len()) {
            return false;
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
        let stream = self.genesis.cid();
        for r in replicas {
            if !r.order().eq(order.iter().copied()) {
                return false;
            }
            let store = r.store();
            let stored = store.heads(stream).await.ok().flatten().is_some_and(|h| h == heads)
                && store.log_len(stream).await.ok() == Some(want.len() as u64);
            if !stored {
                return false;
            }
        }
        true
    }
}

/// Each node's neighbours, ascending: its two ring neighbours and
/// `random_peers` random others, made symmetric.
fn network_graph(c: &SimConfig, rng: &mut SimRng) -> Vec<Box<[NodeId]>> {
    let n = c.nodes;
    let mut graph = vec![BTreeSet::new(); n];
    let link = |graph: &mut Vec<BTreeSet<NodeId>>, a: NodeId, b: NodeId| {
        if a != b {
            graph[a].insert(b);
            graph[b].insert(a);
        }
    };
    for a in 0..n {
        if c.ring && n > 1 {
            link(&mut graph, a, (a + 1) % n);
        }
        for _ in 0..c.random_peers {
            if n > 1 {
                let b = (a + 1 + rng.index(n - 1)) % n;
                link(&mut graph, a, b);
            }
        }
    }
    graph.into_iter().map(|peers| peers.into_iter().collect()).collect()
}

/// Node `n`'s signing key in a run seeded `seed`.
fn node_signer(seed: u64, n: NodeId) -> Signer {
    let mut h = blake3::Hasher::new_derive_key("merkle-clock simulation node key v1");
    h.update(&seed.to_le_bytes());
    h.update(&(n as u64).to_le_bytes());
    Signer::from_seed(h.finalize().as_bytes())
}

/// `len` and the first 4 bytes of the message's BLAKE3, for the trace.
fn message_tag(bytes: &[u8]) -> String {
    let h = blake3::hash(bytes);
    let b = h.as_bytes();
    format!("{}B#{:02x}{:02x}{:02x}{:02x}", bytes.len(), b[0], b[1], b[2], b[3])
}
