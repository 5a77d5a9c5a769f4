//! The simulation's parameters, its report and its schedule.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

use super::{NodeId, Partition, SyncProtocol, Tick};
use crate::replica::{AppendError, OpenError};
use crate::rng::SimRng;
use crate::store::StoreError;

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
    /// Whether every node is connected to its two ring neighbours.
    pub ring: bool,
    /// How many random peers each node connects to when it starts (besides
    /// its ring neighbours): the random part of the network's graph.
    pub random_peers: usize,
    /// Nodes run their session driver's tick every this many ticks (at least 1).
    pub sync_interval: Tick,
    /// The driver's [`SessionConfig::timeout`](crate::sync::SessionConfig::timeout),
    /// in ticks: a session that is not settled and heard nothing for this
    /// long restarts (doubling at each timeout in a row, up to 8 times).
    /// `None`: never.
    pub session_timeout: Option<Tick>,
    /// The driver's [`SessionConfig::anti_entropy`](crate::sync::SessionConfig::anti_entropy),
    /// in ticks: every this long, each node restarts its session with one
    /// settled peer drawn at random. `None`: never.
    pub anti_entropy: Option<Tick>,
    /// Whether loss, duplication and reordering go on after the fault phase.
    pub persistent_faults: bool,
    /// Keep every trace line in [`SimReport::trace`] (the hash is always computed).
    pub keep_trace: bool,
    /// The protocol [`Simulation::new`](super::Simulation::new) runs.
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
            anti_entropy: Some(32),
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
    /// [`Simulation::run`](super::Simulation::run) was called twice.
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
    /// A store could not be made or reopened by the store factory.
    #[error("node {node}: {source}")]
    Store {
        /// The node.
        node: NodeId,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// A local append, grant or revocation failed.
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
    /// Blocks in the messages delivered (each copy of a block counts).
    pub blocks_received: u64,
    /// Of those, blocks the receiver already held (in its DAG or pending):
    /// `blocks_received / (blocks_received - blocks_duplicate)` is the
    /// redundancy, copies received per block needed.
    pub blocks_duplicate: u64,
    /// Messages delivered twice.
    pub duplicated: u64,
    /// Messages lost to a partition.
    pub partitioned: u64,
    /// Messages lost because the receiver was down or not yet joined.
    pub undeliverable: u64,
    /// Errors the protocol returned (generating or taking in a message).
    pub errors: u64,
    /// Sessions restarted by a timeout.
    pub timeouts: u64,
    /// Sessions restarted by a (re)connection.
    pub reconnects: u64,
    /// Anti-entropy sessions started.
    pub anti_entropy: u64,
    /// Restarts done.
    pub restarts: usize,
    /// Late joins done.
    pub late_joins: usize,
    /// On a signed stream ([`Simulation::with_auth`](super::Simulation::with_auth)):
    /// appends ([`Action::Append`]) the node's own replica refused because
    /// the node's key was revoked in its past. An honest writer drops them,
    /// as `mclock append` fails.
    pub appends_refused: usize,
    /// Writes by a revoked writer ([`Action::KeepWriting`]) that its replica
    /// let through because it had not yet learned of its revocation: valid
    /// events, concurrent with the revocation, in [`SimReport::appended`]
    /// ([`Replica::written_after_revocation`](crate::Replica::written_after_revocation)
    /// lists them).
    pub concurrent_with_revocation: usize,
    /// Events a revoked writer built by hand after its replica refused them
    /// ([`Action::KeepWriting`] once it knew of its revocation), each
    /// offered to every replica
    /// ([`Simulation::refused_after_revocation`](super::Simulation::refused_after_revocation)).
    pub refused_after_revocation: usize,
    /// Offers of those events that a replica refused because their author
    /// was revoked in their past ([`AuthError::Revoked`](crate::auth::AuthError::Revoked)):
    /// at quiescence, `refused_after_revocation` times [`SimConfig::nodes`].
    pub revocation_refusals: u64,
    /// BLAKE3 of the trace (one line per step, each ending in `\n`), in hex.
    pub trace_hash: String,
    /// The number of trace lines.
    pub trace_lines: u64,
    /// The trace lines, if [`SimConfig::keep_trace`].
    pub trace: Vec<String>,
}

impl SimReport {
    pub(super) fn empty(protocol: &'static str, seed: u64, restarts: usize, late_joins: usize) -> Self {
        SimReport {
            protocol,
            seed,
            converged: false,
            rounds: 0,
            ticks: 0,
            events: 0,
            appended: 0,
            messages: 0,
            bytes: 0,
            delivered: 0,
            lost: 0,
            blocks_received: 0,
            blocks_duplicate: 0,
            duplicated: 0,
            partitioned: 0,
            undeliverable: 0,
            errors: 0,
            timeouts: 0,
            reconnects: 0,
            anti_entropy: 0,
            restarts,
            late_joins,
            appends_refused: 0,
            concurrent_with_revocation: 0,
            refused_after_revocation: 0,
            revocation_refusals: 0,
            trace_hash: String::new(),
            trace_lines: 0,
            trace: Vec::new(),
        }
    }
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} seed={} converged={} rounds={} ticks={} events={} messages={} bytes={} delivered={} lost={} dup={} \
             cut={} undeliverable={} errors={} timeouts={} reconnects={} anti_entropy={} restarts={} late_joins={} trace={}",
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
            self.anti_entropy,
            self.restarts,
            self.late_joins,
            &self.trace_hash[..16.min(self.trace_hash.len())],
        )?;
        if self.refused_after_revocation + self.concurrent_with_revocation + self.appends_refused > 0 {
            write!(
                f,
                " refused_after_revocation={} refusals={} concurrent_with_revocation={} appends_refused={}",
                self.refused_after_revocation,
                self.revocation_refusals,
                self.concurrent_with_revocation,
                self.appends_refused
            )?;
        }
        Ok(())
    }
}

/// One step of a [`Schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// The node starts, with only the genesis (a fresh store from the
    /// factory); on a signed stream, with the genesis and the writers' grants
    /// ([`Simulation::with_auth`](super::Simulation::with_auth)).
    Join(NodeId),
    /// The node shuts down: its replica and its store are dropped, the
    /// durable part of its sync states kept.
    Down(NodeId),
    /// The node comes back: its store reopens and so does its replica.
    Up(NodeId),
    /// The node appends one event (when it is down, as soon as it is back).
    /// On a signed stream it waits until it knows its grant, and drops the
    /// event if its replica knows its key was revoked
    /// ([`SimReport::appends_refused`]).
    Append(NodeId),
    /// On a signed stream, the node (whose key an admin revoked) keeps
    /// writing. While its replica does not know of the revocation this is
    /// an ordinary append, valid and concurrent with the revocation
    /// ([`SimReport::concurrent_with_revocation`]). Once it knows, its
    /// replica refuses to build the event, so the node builds it by hand on
    /// its heads ([`auth::signed_event`](crate::auth::signed_event)) and
    /// offers it to every replica (its own included), each once it holds the
    /// event's parents: every one must refuse it
    /// ([`SimReport::refused_after_revocation`]).
    KeepWriting(NodeId),
    /// On a signed stream, node `admin` revokes the key of node `writer`
    /// (when the admin is down, as soon as it is back).
    Revoke {
        /// The node that revokes, an admin.
        admin: NodeId,
        /// The node whose key is revoked.
        writer: NodeId,
    },
    /// Partition `i` of [`SimConfig::partitions`] heals: the nodes it
    /// separated reconnect.
    Heal(usize),
}

/// What happens when: the joins, restarts, appends and heals of a run, by
/// tick. [`Simulation::new`](super::Simulation::new)(super::Simulation::new) draws one from the
/// configuration; [`Simulation::with_schedule`](super::Simulation::with_schedule)
/// runs one of your own.
pub type Schedule = BTreeMap<Tick, Vec<Action>>;

pub(super) fn validate(c: &SimConfig) -> Result<(), SimError> {
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
pub(super) fn make_schedule(c: &SimConfig, rng: &mut SimRng) -> (Schedule, usize, usize) {
    let mut schedule = Schedule::new();
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
    sort_within_ticks(&mut schedule);
    (schedule, late.len(), restarts)
}

/// Within a tick: joins and ups first, then downs, then appends, heals last.
pub(super) fn sort_within_ticks(schedule: &mut Schedule) {
    for actions in schedule.values_mut() {
        actions.sort_by_key(|a| match a {
            Action::Join(_) | Action::Up(_) => 0,
            Action::Down(_) => 1,
            Action::Append(_) | Action::KeepWriting(_) | Action::Revoke { .. } => 2,
            Action::Heal(_) => 3,
        });
    }
}
