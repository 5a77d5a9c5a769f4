//! An exhaustive model checker of the sync protocol and the session driver.
//!
//! Each actor is a real [`Replica`](crate::Replica) over a
//! [`MemoryBlockstore`](crate::MemoryBlockstore), driven by a real
//! [`Sessions`](crate::sync::Sessions) running the real Bloom protocol. The
//! network is a multiset of encoded messages in flight. From every state the
//! checker tries every [`Action`]: a replica appends, ticks (its timeouts may
//! fire), time advances by one timeout, any message in flight arrives (in any
//! order), is lost or is duplicated, n0 is cut off from the others and the
//! partition heals, a replica restarts from its store (keeping its durable
//! sync states, or not). Budgets ([`ModelConfig`]) bound the appends, losses,
//! duplicates and restarts; a message in flight must arrive or be lost before
//! time advances twice (a message older than that is as good as lost).
//!
//! # Exploring
//!
//! The replicas and drivers are not `Clone` (a store behind an `Arc`, async
//! calls), so a state is rebuilt by **replaying its trace** from the start:
//! every random choice comes from fixed seeds, so the same actions give the
//! same state. The search is breadth-first with a visited set of **abstract
//! state fingerprints**, so the first violation found has a shortest trace.
//! A replay skips the one-round-trip check (each step was checked when the
//! search first took it). A step that only moves messages (a loss, a
//! duplicate, the cut, its healing: [`Action::network_only`]) is tried on
//! the parent and undone, so a child already seen costs no replay; those
//! steps come first, and the last step takes the parent itself.
//!
//! # The abstraction
//!
//! Two states with the same fingerprint behave alike; the fingerprint is a
//! hash of:
//!
//! - each replica's events and pending events (heads, order and metrics follow);
//! - each driver's per-peer clocks *relative to now*, capped where the driver
//!   stops telling them apart: the time since the session was last calm
//!   (capped at timeout × 2^`max_backoff`), back-off (capped at
//!   `max_backoff`), failures (capped at `max_backoff` + 1), the pause left,
//!   whether it was settled, whether it is quiet (push off); the session's message count is left out (the
//!   cap, [`SessionConfig::max_session_messages`](crate::sync::SessionConfig),
//!   is never reached within the depth bound);
//! - each sync state, field by field, except that a Bloom filter is seen as
//!   *which events of the run it says it holds* (its salt and bits matter
//!   only through that) and the salt generator's position is left out; the
//!   message numbers as they are (a session restarted on a peer's hello
//!   numbers from 1 while the peer keeps the old number, so no abstraction
//!   of them is exact: DESIGN.md, "Model checking");
//! - the messages in flight as a multiset, each decoded, its filter seen the
//!   same way;
//! - the budgets spent and the partition.
//!
//! Absolute time, counters and statistics are left out. Each filter is also
//! seen with which events of the run its sender held (the one-round-trip
//! oracle tells a false positive from a true one by it).
//!
//! **Symmetry.** An appended event names no author (`e1`, `e2`, …): the
//! same append by another replica with the same parents is the same block.
//! So two states that differ only by a renaming of the replicas hold the
//! same blocks under other names, and the fingerprint is the least over the
//! renamings the configuration cannot tell apart (all of them, except that
//! n0 stays n0 when it may be cut off, and appenders stay appenders). The
//! renamed state draws other salts (each driver is seeded by its index):
//! the same caveat as below.
//!
//! The salts are the
//! one thing this merges that could matter: two merged states would draw
//! different salts next, so a false positive seen on one path is not tried on
//! the other. Small filters have many false positives, so both kinds of
//! answer are reached on some path, but not from every state.
//!
//! # Partial-order reduction
//!
//! Once every budget is spent (appends, losses, duplicates, late deliveries,
//! restarts, the partition) and push is on, nothing but deliveries can
//! happen until the network is empty. A replica that then holds every event
//! is *closed*: a delivery to it changes only its state for the sender and
//! answers only the sender (checked on every such step the search takes).
//! So the deliveries between two closed replicas commute with every other
//! step and no other step adds to them: they are a persistent set, and the
//! search takes them alone ([`ModelConfig::reduction`]), unless one of
//! their children was first seen at this level or before (the cycle
//! proviso: every cycle has a fully expanded state). Every reachable state
//! with nothing in flight is still visited, and every reachable violation of
//! safety (which reads only the replicas' DAGs) and of the per-pair
//! in-flight bound has a visited witness (the bound on the whole network is
//! checked on the states visited); the fair run from a skipped
//! state reaches a visited quiet state first. DESIGN.md gives the argument.
//!
//! # Properties
//!
//! Checked on every transition and every reachable state ([`Violation`]):
//! **safety** (a replica holds only appended events; replicas holding the
//! same events have the same heads and order; no replica ever loses an event
//! it held, across a restart too), **no lockup** (no state where, with the
//! partition healed and no message in flight, no tick at any later time
//! sends anything while two replicas differ), **liveness** (from every
//! state, with no more loss and the partition healed, a fair run — every
//! message delivered, time advancing, every replica ticking — brings every
//! replica to the same events and then to silence), **no chatter** (a
//! tick repeated at once says nothing; once synced, a pair says at most a
//! few acknowledgements and filters before falling silent for good; at most
//! [`ModelConfig::max_in_flight`] messages are ever in flight, and at most
//! [`ModelConfig::max_in_flight_pair`] from one replica to another), and **one
//! round trip** (step 2 of the protocol, [`crate::sync`]: while a run has
//! lost nothing, every message a replica sends a peer whose filter it holds
//! brings, with what the peer holds or has on its way, every event the
//! replica holds that the peer lacked when it made the filter, except those
//! the filter holds falsely; the oracle reads the filter's bits with every
//! mutation off).

mod explore;
mod world;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use explore::{Outcome, check, check_mutation, narrate, replay};

use crate::sync::SessionConfig;

/// What the checker explores.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// A name for reports.
    pub name: &'static str,
    /// Replicas, all connected to each other.
    pub replicas: usize,
    /// Appends in total, each at any point of the run.
    pub appends: usize,
    /// Only replicas below this index append (`None`: any).
    pub appenders: Option<usize>,
    /// Messages the network may lose.
    pub losses: usize,
    /// Messages the network may duplicate.
    pub duplicates: usize,
    /// Times time may advance by a timeout while messages are in flight
    /// (they arrive late, after the sender timed out). Otherwise every
    /// message arrives or is lost within a timeout.
    pub delays: usize,
    /// Whether n0 may be cut off from the others once (and the cut heal).
    pub partition: bool,
    /// Restarts from the store.
    pub restarts: usize,
    /// Start from replicas that already met and fell silent (a fair,
    /// lossless first contact), instead of from their first contact.
    pub warm: bool,
    /// The driver's policy (`timeout` must be set; time advances by it).
    pub session: SessionConfig,
    /// The deepest trace explored.
    pub max_depth: usize,
    /// The most states explored before giving up (the result says so).
    pub max_states: usize,
    /// The most states of the search's frontier kept in memory; beyond,
    /// a state is kept as its trace and rebuilt by replaying it when its
    /// turn comes (slower, but memory stays bounded).
    pub max_kept: usize,
    /// The most messages in flight at once (the no-chatter bound).
    pub max_in_flight: usize,
    /// The most messages in flight at once from one replica to another
    /// (the bound the partial-order reduction preserves; see the module docs).
    pub max_in_flight_pair: usize,
    /// States that differ only by a renaming of the replicas are one
    /// (symmetry reduction; see the module docs).
    pub symmetry: bool,
    /// Once nothing but deliveries can happen, the deliveries between two
    /// replicas that hold every event are explored alone while they last
    /// (partial-order reduction; see the module docs).
    pub reduction: bool,
}

impl ModelConfig {
    /// A configuration with the checker's driver policy: timeout 1 s,
    /// back-off at most ×2, retry 1 s, no anti-entropy, and no budgets.
    pub fn new(name: &'static str, replicas: usize, appends: usize) -> Self {
        ModelConfig {
            name,
            replicas,
            appends,
            appenders: None,
            losses: 0,
            duplicates: 0,
            delays: 0,
            partition: false,
            restarts: 0,
            warm: false,
            session: SessionConfig {
                timeout: Some(Duration::from_secs(1)),
                max_backoff: 1,
                anti_entropy: None,
                max_session_messages: 10_000,
                retry: Duration::from_secs(1),
                push: true,
            },
            max_depth: 40,
            max_states: 2_000_000,
            max_kept: 20_000,
            max_in_flight: 4 * replicas * (replicas - 1),
            max_in_flight_pair: 6,
            symmetry: true,
            reduction: true,
        }
    }

    /// The libp2p node's setting: [`SessionConfig::push`] off. An append is
    /// announced to every peer (heads and the new block, a message that may
    /// be lost like any other) and the sessions take the peers to hold it
    /// ([`Sessions::delivered`](crate::sync::Sessions::delivered)); a peer
    /// that lacks an announced head pulls it with a fresh session
    /// ([`Sessions::resync`](crate::sync::Sessions::resync)); a tick skips
    /// a peer with a message of ours on its way
    /// ([`Sessions::tick_skipping`](crate::sync::Sessions::tick_skipping));
    /// in the fair run that checks liveness, replicas that differ announce
    /// their heads every step, as the node does periodically.
    pub fn pull(mut self) -> Self {
        self.session.push = false;
        self
    }

    /// Time advances by this much per [`Action::Advance`].
    pub fn step(&self) -> Duration {
        self.session.timeout.unwrap_or(Duration::from_secs(1))
    }

    /// The configurations `.ci/run` checks (in release, a few minutes).
    pub fn ci() -> Vec<ModelConfig> {
        vec![
            ModelConfig { losses: 1, ..ModelConfig::new("2 replicas, 2 appends, 1 loss", 2, 2) },
            ModelConfig {
                losses: 1,
                duplicates: 1,
                ..ModelConfig::new("2 replicas, 1 append, 1 loss, 1 duplicate", 2, 1)
            },
            ModelConfig {
                losses: 1,
                delays: 1,
                ..ModelConfig::new("2 replicas, 1 append, 1 loss, 1 late delivery", 2, 1)
            },
            ModelConfig {
                partition: true,
                restarts: 1,
                warm: true,
                ..ModelConfig::new("2 replicas (met), 2 appends, a partition that heals, 1 restart", 2, 2)
            },
            ModelConfig { losses: 1, warm: true, ..ModelConfig::new("3 replicas (met), 1 append, 1 loss", 3, 1) },
            ModelConfig {
                partition: true,
                warm: true,
                ..ModelConfig::new("3 replicas (met), 1 append, a partition that heals", 3, 1)
            },
            ModelConfig { losses: 1, ..ModelConfig::new("2 replicas, 2 appends, 1 loss, push off", 2, 2).pull() },
            ModelConfig {
                losses: 1,
                duplicates: 1,
                warm: true,
                ..ModelConfig::new("3 replicas (met), 2 appends, 1 loss, 1 duplicate, push off", 3, 2).pull()
            },
            ModelConfig { losses: 2, warm: true, ..ModelConfig::new("2 replicas (met), 3 appends, 2 losses", 2, 3) },
        ]
    }

    /// The configurations with 3 and 4 appends that complete
    /// (`model_check -- --appends`, about 20 minutes): 2 replicas that
    /// already met, 4 appends (either replica, each at any point) and no
    /// fault, or 1 loss; 3 appends with 1 loss and 1 duplicate; and from
    /// first contact, 3 appends by n0 (one writer, each at any point). From
    /// first contact with both replicas appending, the space is far larger
    /// (DESIGN.md, "Model checking").
    pub fn appends() -> Vec<ModelConfig> {
        vec![
            ModelConfig { warm: true, ..ModelConfig::new("2 replicas (met), 4 appends", 2, 4) },
            ModelConfig {
                losses: 1,
                duplicates: 1,
                warm: true,
                ..ModelConfig::new("2 replicas (met), 3 appends, 1 loss, 1 duplicate", 2, 3)
            },
            ModelConfig { appenders: Some(1), ..ModelConfig::new("2 replicas, 3 appends by n0 (first contact)", 2, 3) },
            ModelConfig {
                losses: 1,
                warm: true,
                max_states: 6_000_000,
                ..ModelConfig::new("2 replicas (met), 4 appends, 1 loss", 2, 4)
            },
        ]
    }

    /// Larger configurations (`model_check -- --large`): minutes to hours.
    pub fn large() -> Vec<ModelConfig> {
        vec![
            ModelConfig {
                losses: 2,
                duplicates: 1,
                partition: true,
                restarts: 1,
                ..ModelConfig::new("2 replicas, 4 appends, 2 losses, 1 duplicate, partition, restart", 2, 4)
            },
            ModelConfig { losses: 1, warm: true, ..ModelConfig::new("3 replicas (met), 2 appends, 1 loss", 3, 2) },
            ModelConfig {
                max_depth: 100,
                max_kept: 150_000,
                ..ModelConfig::new("3 replicas, 1 append (first contact)", 3, 1)
            },
            ModelConfig::new("3 replicas, 2 appends (first contact)", 3, 2),
            ModelConfig {
                losses: 1,
                partition: true,
                restarts: 1,
                ..ModelConfig::new("3 replicas, 4 appends, 1 loss, partition, restart", 3, 4)
            },
        ]
    }
}

/// One step of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Replica `i` appends the next event.
    Append(usize),
    /// Replica `i`'s driver ticks at the current time.
    Tick(usize),
    /// Time advances by one timeout.
    Advance,
    /// The `k`-th message in flight arrives; the reply, if any, is sent.
    Deliver(usize),
    /// The `k`-th message in flight is lost.
    Lose(usize),
    /// The `k`-th message in flight is duplicated.
    Duplicate(usize),
    /// n0 is cut off from the others: messages across are lost.
    Partition,
    /// The partition heals.
    Heal,
    /// A replica restarts: reopens from its store, with a new driver that
    /// keeps (`durable`) or forgets the sync states.
    Restart {
        /// Which replica.
        replica: usize,
        /// The durable sync states are kept.
        durable: bool,
    },
}

impl Action {
    /// The step only moves messages (one is lost or duplicated, n0 is cut
    /// off, the cut heals): no replica or driver acts, so it can be undone.
    pub fn network_only(self) -> bool {
        matches!(self, Action::Lose(_) | Action::Duplicate(_) | Action::Partition | Action::Heal)
    }
}

/// Actions as short words: `a0` append, `t1` tick, `+` advance, `d2`
/// deliver, `l0` lose, `x0` duplicate, `p` partition, `h` heal, `r1`
/// restart keeping the sync states, `f1` restart with fresh ones.
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Action::Append(i) => write!(f, "a{i}"),
            Action::Tick(i) => write!(f, "t{i}"),
            Action::Advance => f.write_str("+"),
            Action::Deliver(k) => write!(f, "d{k}"),
            Action::Lose(k) => write!(f, "l{k}"),
            Action::Duplicate(k) => write!(f, "x{k}"),
            Action::Partition => f.write_str("p"),
            Action::Heal => f.write_str("h"),
            Action::Restart { replica, durable: true } => write!(f, "r{replica}"),
            Action::Restart { replica, durable: false } => write!(f, "f{replica}"),
        }
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("not an action: {s:?}");
        let (head, rest) = s.split_at(s.chars().next().map_or(0, char::len_utf8));
        let n = || rest.parse::<usize>().map_err(|_| bad());
        Ok(match head {
            "a" => Action::Append(n()?),
            "t" => Action::Tick(n()?),
            "+" if rest.is_empty() => Action::Advance,
            "d" => Action::Deliver(n()?),
            "l" => Action::Lose(n()?),
            "x" => Action::Duplicate(n()?),
            "p" if rest.is_empty() => Action::Partition,
            "h" if rest.is_empty() => Action::Heal,
            "r" => Action::Restart { replica: n()?, durable: true },
            "f" => Action::Restart { replica: n()?, durable: false },
            _ => return Err(bad()),
        })
    }
}

/// Parses a trace written as [`Action`] words separated by spaces.
///
/// # Errors
/// The first word that is not an action.
pub fn parse_trace(s: &str) -> Result<Vec<Action>, String> {
    s.split_whitespace().map(str::parse).collect()
}

/// Writes a trace as [`Action`] words.
pub fn format_trace(trace: &[Action]) -> String {
    trace.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

/// Which property failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Property {
    /// A replica holds an event nobody appended, lost one, or two replicas
    /// with the same events disagree on heads or order.
    Safety,
    /// Nothing in flight, nothing due ever, and two replicas differ.
    Lockup,
    /// A fair lossless run from here does not bring every replica to the
    /// same events and then to silence.
    Liveness,
    /// Messages that say nothing new: a repeated tick speaks, a synced pair
    /// keeps talking, too many messages in flight.
    Chatter,
    /// One round trip: in a run that lost nothing, a replica answered a
    /// peer's filter without an event the peer lacked, that the filter did
    /// not hold and that no message on its way brings.
    RoundTrip,
    /// A replica or driver returned an error (every peer here is honest).
    Error,
}

/// A property that failed, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which property.
    pub property: Property,
    /// What was seen.
    pub detail: String,
    /// The actions from the start to the state where it failed.
    pub trace: Vec<Action>,
    /// Each step in words, then the failure.
    pub steps: Vec<String>,
}

impl Violation {
    fn new(property: Property, detail: String) -> Self {
        Violation { property, detail, trace: Vec::new(), steps: Vec::new() }
    }

    pub(crate) fn error(detail: String) -> Self {
        Violation::new(Property::Error, detail)
    }

    pub(crate) fn chatter(detail: String) -> Self {
        Violation::new(Property::Chatter, detail)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:?} violated: {}", self.property, self.detail)?;
        writeln!(f, "trace: {}", format_trace(&self.trace))?;
        for (i, s) in self.steps.iter().enumerate() {
            writeln!(f, "{:>3}. {s}", i + 1)?;
        }
        Ok(())
    }
}

/// A driver's clocks for one peer, relative to now (read by the checker
/// from [`Sessions`](crate::sync::Sessions)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerClock {
    pub since_calm: Duration,
    pub backoff: u32,
    pub was_settled: bool,
    pub sent: u32,
    pub failures: u32,
    pub paused_for: Duration,
    /// Settled, then our heads changed, and push is off.
    pub quiet: bool,
}

impl PeerClock {
    /// Hashes what decides the driver's next steps (see the module docs).
    fn hash(&self, cfg: &ModelConfig, h: &mut world::Fp) {
        let s = &cfg.session;
        let max = s.max_backoff.min(30);
        let longest = s.timeout.unwrap_or_default().saturating_mul(1 << max);
        h.num(self.since_calm.min(longest).as_millis() as u64);
        h.num(u64::from(self.backoff.min(max)));
        h.flag(self.was_settled);
        h.num(u64::from(self.failures.min(max + 1)));
        h.num(self.paused_for.as_millis() as u64);
        h.flag(self.quiet);
        if s.max_session_messages as usize <= cfg.max_depth {
            h.num(u64::from(self.sent.min(s.max_session_messages)));
        }
    }
}
