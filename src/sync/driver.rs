//! The session driver: every sync session of one replica with its peers.
//!
//! [`generate_message`](super::generate_message) and
//! [`receive_message`](super::receive_message) say *what* to send; they do
//! not say *when*. A transport also needs one state per peer, a timeout for
//! a message that was lost, a back-off so that a peer that is gone is not
//! asked forever, a bound on how long one session may grow, and now and then
//! a fresh session with a random peer. [`Sessions`] is that policy, once,
//! for every transport: the simulator, the CLI, the libp2p node and your own
//! (WebSocket, a queue, HTTP) all drive sessions through it.
//!
//! It does no I/O and reads no clock. The caller passes the time (`now`, a
//! [`Duration`] since any fixed start: a tick count in a simulation,
//! `Instant::elapsed` on a real network) and carries the bytes:
//!
//! - [`Sessions::connect`] when a peer appears (or comes back: its session
//!   restarts), [`Sessions::disconnect`] when it goes (the durable part of
//!   the state is returned, to be kept for next time:
//!   [`Sessions::connect_with`]).
//! - [`Sessions::receive`] with every message from a peer: it returns what
//!   the message brought and the reply to send back, if any.
//! - [`Sessions::tick`] now and then (every few hundred milliseconds, or every
//!   simulated tick): it returns the messages that are due — new local
//!   events for the peers, a session restarted after a timeout, the next
//!   part of a message that did not fit, the anti-entropy session — and the
//!   sessions it restarted, and why.
//!
//! Every number of the policy is in [`SessionConfig`].
//!
//! # The policy
//!
//! - **Settled pairs stay quiet.** A peer is *settled* when it is known to
//!   hold our heads ([`Protocol::settled`]; for the Bloom protocol,
//!   [`SyncState::their_heads`]: the heads it told us). The side that takes in
//!   the last blocks of an exchange acknowledges them with its new heads, so
//!   both sides of a synced pair know it and neither ever times out. A peer
//!   that pruned what we lack is settled too once it holds our heads, we
//!   hold or wait on its heads, and all we still miss is what it said it
//!   pruned ([`SyncState::pruned_by_peer`]): it has nothing more to give.
//! - **Timeouts.** A session that is not settled, and from whose peer nothing
//!   arrived for [`SessionConfig::timeout`] since it was last seen settled
//!   (a local append makes a settled session active again: its clock starts
//!   then), restarts: a message was lost, or the peer went away. Each timeout in a row doubles the wait, up to
//!   2^[`SessionConfig::max_backoff`] times; a message from the peer resets
//!   the back-off.
//! - **Failures pause.** A message the transport could not deliver
//!   ([`Sessions::lost`]) or a bad message from the peer restarts its
//!   session and pauses it for [`SessionConfig::retry`], doubling per
//!   failure in a row: a peer that refuses everything is not asked again
//!   every tick.
//! - **Session cap.** A session that sent [`SessionConfig::max_session_messages`]
//!   messages restarts: what a session remembers (the blocks sent, the CIDs
//!   asked for) grows with it.
//! - **Anti-entropy.** Every [`SessionConfig::anti_entropy`], one settled
//!   peer, drawn at random, gets a fresh session: its filter covers only what
//!   was added since the heads both sides last shared, so it costs a few
//!   bytes when both agree and repairs anything either side's state got
//!   wrong.
//! - **More.** A message that did not fit in the limits says so; the peer
//!   that took it in answers at once (with an empty message if it has nothing
//!   else to say), and the answer brings the next part. The
//!   [protocol](super) does this; the driver only carries it.
//!
//! # Example
//!
//! Two replicas sync over a channel that loses every third message; the
//! driver's timeouts repair the losses.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use merkle_clock::{Event, MemoryBlockstore, Replica, ReplicaConfig};
//! use merkle_clock::sync::{SessionConfig, Sessions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> { futures::executor::block_on(async {
//! let genesis = Event::genesis("notes").encode()?;
//! let mut alice = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
//! let mut bob = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
//! alice.append_many((0..50u32).map(|i| format!("alice {i}"))).await?;
//! bob.append(&"bob").await?;
//!
//! let config = SessionConfig { timeout: Some(Duration::from_secs(2)), ..SessionConfig::default() };
//! let mut a = Sessions::new(config.clone());
//! let mut b = Sessions::new(config);
//! a.connect("bob", Duration::ZERO);
//! b.connect("alice", Duration::ZERO);
//!
//! let (mut to_bob, mut to_alice) = (Vec::new(), Vec::new());
//! let mut sent = 0;
//! for second in 0..30u64 {
//!     let now = Duration::from_secs(second);
//!     to_bob.extend(a.tick(&alice, now).await?.messages.into_iter().map(|m| m.message));
//!     to_alice.extend(b.tick(&bob, now).await?.messages.into_iter().map(|m| m.message));
//!     // Deliver, dropping every third message; replies go back the same way.
//!     while !to_bob.is_empty() || !to_alice.is_empty() {
//!         for m in std::mem::take(&mut to_bob) {
//!             sent += 1;
//!             if sent % 3 == 0 { continue; }
//!             if let Some(reply) = b.receive(&mut bob, &"alice", &m, now).await?.reply { to_alice.push(reply); }
//!         }
//!         for m in std::mem::take(&mut to_alice) {
//!             sent += 1;
//!             if sent % 3 == 0 { continue; }
//!             if let Some(reply) = a.receive(&mut alice, &"bob", &m, now).await?.reply { to_bob.push(reply); }
//!         }
//!     }
//! }
//! assert_eq!(alice.heads(), bob.heads());
//! assert_eq!(alice.len(), 52);
//! // Synced and quiet: both know it, so neither will time out.
//! assert!(a.settled(&alice, &"bob") && b.settled(&bob, &"alice"));
//! # Ok(()) }) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use ipld_core::cid::Cid;
use rand_core::RngCore;

use super::{Message, NaiveState, Received, SyncError, SyncLimits, SyncState};
use crate::replica::Replica;
use crate::rng::SimRng;
use crate::store::StreamStore;

/// A sync protocol as the driver runs it: a per-peer state, a call that
/// makes the next message for a peer and a call that takes one in, over
/// encoded bytes.
///
/// [`Bloom`] (the Bloom-filter reconciliation, the default) and [`Naive`]
/// (the level-by-level baseline) implement it; implement it to run a
/// protocol of your own through the same driver (and the simulator's faults).
pub trait Protocol {
    /// Per-peer state.
    type State;

    /// A short name for traces and reports.
    fn name(&self) -> &'static str;

    /// A fresh state for a peer never met. `seed`: derive every random choice
    /// from it (reproducible runs); `None`: from OS randomness.
    fn new_state(&self, seed: Option<u64>) -> Self::State;

    /// The durable part of a state, as bytes: what survives a restart.
    fn save(&self, state: &Self::State) -> Vec<u8>;

    /// A state rebuilt from its durable part, with a fresh session. Bytes it
    /// cannot read give [`Protocol::new_state`].
    fn restore(&self, durable: &[u8], seed: Option<u64>) -> Self::State;

    /// Starts a new session in `state`, keeping its durable part (and
    /// whatever else the protocol trusts across sessions). Default: the
    /// state rebuilt from [`Protocol::save`].
    fn restart(&self, state: &mut Self::State, seed: Option<u64>) {
        let durable = self.save(state);
        *state = self.restore(&durable, seed);
    }

    /// The peer was given these events by other means (a broadcast that
    /// reaches every peer): the session should not push them to it (it
    /// still answers a want for them). If the broadcast did not reach the
    /// peer, the session does not notice: the peer learns of the events
    /// otherwise (announced heads) and pulls them ([`Sessions::resync`]).
    /// Default: nothing.
    fn delivered(&self, state: &mut Self::State, cids: &[Cid]) {
        let _ = (state, cids);
    }

    /// The events the peer said it holds only pruned (so it cannot send
    /// them), ascending. Default: none.
    fn pruned_by_peer<'s>(&self, state: &'s Self::State) -> &'s [Cid] {
        let _ = state;
        &[]
    }

    /// Whether, as far as `state` knows, the peer holds exactly what
    /// `replica` holds (for the Bloom protocol: the same heads, or all that
    /// the peer can still give, the rest pruned there). The driver never
    /// times out a settled session.
    /// Default: `false` (every quiet session may time out).
    fn settled<S: ?Sized + StreamStore>(&self, replica: &Replica<S>, state: &Self::State) -> bool {
        let _ = (replica, state);
        false
    }

    /// The next message for the peer, encoded, or `None` when there is
    /// nothing to say.
    ///
    /// # Errors
    /// [`SyncError::Store`] when the store fails.
    fn generate<S: ?Sized + StreamStore>(
        &self,
        replica: &Replica<S>,
        state: &mut Self::State,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, SyncError>>;

    /// Whether the encoded `message` is a part that more parts follow: a
    /// transport may then answer it before taking it in
    /// ([`Sessions::go_on`]). Default: `false`.
    fn says_more(&self, message: &[u8]) -> bool {
        let _ = message;
        false
    }

    /// A message that only asks the peer to go on with the parts it is
    /// sending, for when we have nothing else to say. Default: `None`.
    fn go_on(&self) -> Option<Vec<u8>> {
        None
    }

    /// Takes in an encoded message from the peer.
    ///
    /// # Errors
    /// [`SyncError`] when it does not decode, is beyond the limits, or the
    /// store fails.
    fn receive<S: ?Sized + StreamStore>(
        &self,
        replica: &mut Replica<S>,
        state: &mut Self::State,
        message: &[u8],
    ) -> impl Future<Output = Result<Received, SyncError>>;

    /// [`Protocol::receive`] of a message held in [`Bytes`] (a transport's
    /// frame): the blocks taken in may be slices of it rather than copies.
    /// Default: [`Protocol::receive`].
    ///
    /// # Errors
    /// As [`Protocol::receive`].
    fn receive_shared<S: ?Sized + StreamStore>(
        &self,
        replica: &mut Replica<S>,
        state: &mut Self::State,
        message: &Bytes,
    ) -> impl Future<Output = Result<Received, SyncError>> {
        self.receive(replica, state, message)
    }
}

/// The Bloom-filter reconciliation ([`generate_message`](super::generate_message)
/// and [`receive_message`](super::receive_message) over a [`SyncState`])
/// within `limits`: the protocol [`Sessions::new`] runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bloom {
    /// Limits on every message made and taken.
    pub limits: SyncLimits,
}

impl Protocol for Bloom {
    type State = SyncState;

    fn name(&self) -> &'static str {
        "bloom"
    }

    fn new_state(&self, seed: Option<u64>) -> SyncState {
        let mut state = seed.map_or_else(SyncState::new, SyncState::with_seed);
        state.set_limits(self.limits);
        state
    }

    fn save(&self, state: &SyncState) -> Vec<u8> {
        state.encode()
    }

    fn restore(&self, durable: &[u8], seed: Option<u64>) -> SyncState {
        match SyncState::decode(durable) {
            Ok(mut state) => {
                if let Some(seed) = seed {
                    state.reseed(seed);
                }
                state.set_limits(self.limits);
                state
            }
            Err(_) => self.new_state(seed),
        }
    }

    fn restart(&self, state: &mut SyncState, seed: Option<u64>) {
        state.reset();
        if let Some(seed) = seed {
            state.reseed(seed);
        }
    }

    fn delivered(&self, state: &mut SyncState, cids: &[Cid]) {
        state.note_delivered(cids);
    }

    fn pruned_by_peer<'s>(&self, state: &'s SyncState) -> &'s [Cid] {
        state.pruned_by_peer()
    }

    fn settled<S: ?Sized + StreamStore>(&self, replica: &Replica<S>, state: &SyncState) -> bool {
        let s = &state.session;
        if super::mutation::on(super::mutation::Mutation::AckedPredictionSettles)
            && s.predicted.as_ref() == Some(&replica.heads())
            && s.seq > 0
            && s.their_ack >= s.seq
        {
            return true;
        }
        let Some(theirs) = state.their_heads() else { return false };
        let ours = replica.heads();
        if theirs == ours.as_slice() {
            return true;
        }
        // A peer that pruned what we lack: settled once it holds all we
        // hold (our heads are among its heads), we hold or wait on all its
        // heads, and every parent we still miss is one it said it pruned. It
        // has nothing more to give and we nothing to send; re-polling it
        // would only repeat the exchange (anti-entropy still visits it).
        let pruned = state.pruned_by_peer();
        !pruned.is_empty()
            && ours.iter().all(|h| h == replica.stream_id() || theirs.contains(h))
            && theirs.iter().all(|h| replica.contains(h) || replica.is_pending(h))
            && replica.missing().iter().all(|m| pruned.contains(m))
    }

    async fn generate<S: ?Sized + StreamStore>(
        &self,
        replica: &Replica<S>,
        state: &mut SyncState,
    ) -> Result<Option<Vec<u8>>, SyncError> {
        Ok(super::generate_message(replica, state).await?.map(|m| m.encode_events()))
    }

    fn says_more(&self, message: &[u8]) -> bool {
        Message::says_more(message)
    }

    fn go_on(&self) -> Option<Vec<u8>> {
        // Empty and unnumbered: what the protocol itself sends to a peer
        // that said more follows when there is nothing else to say.
        Some(Message::default().encode())
    }

    async fn receive<S: ?Sized + StreamStore>(
        &self,
        replica: &mut Replica<S>,
        state: &mut SyncState,
        message: &[u8],
    ) -> Result<Received, SyncError> {
        let message = Message::decode(message, state.limits())?;
        super::receive_message(replica, state, message).await
    }

    async fn receive_shared<S: ?Sized + StreamStore>(
        &self,
        replica: &mut Replica<S>,
        state: &mut SyncState,
        message: &Bytes,
    ) -> Result<Received, SyncError> {
        let decoded = Message::decode_shared(message, state.limits())?;
        super::receive_decoded(replica, state, decoded, Some(message.len())).await
    }
}

/// The naive walk ([`naive_generate`](super::naive_generate) and
/// [`naive_receive`](super::naive_receive)): the baseline, one round trip
/// per level of missing history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Naive {
    /// Limits on every message taken.
    pub limits: SyncLimits,
}

impl Protocol for Naive {
    type State = NaiveState;

    fn name(&self) -> &'static str {
        "naive"
    }

    fn new_state(&self, _seed: Option<u64>) -> NaiveState {
        NaiveState::new()
    }

    fn save(&self, _state: &NaiveState) -> Vec<u8> {
        Vec::new()
    }

    fn restore(&self, _durable: &[u8], _seed: Option<u64>) -> NaiveState {
        NaiveState::new()
    }

    async fn generate<S: ?Sized + StreamStore>(
        &self,
        replica: &Replica<S>,
        state: &mut NaiveState,
    ) -> Result<Option<Vec<u8>>, SyncError> {
        Ok(super::naive_generate(replica, state).await?.map(|m| m.encode()))
    }

    async fn receive<S: ?Sized + StreamStore>(
        &self,
        replica: &mut Replica<S>,
        state: &mut NaiveState,
        message: &[u8],
    ) -> Result<Received, SyncError> {
        let message = Message::decode(message, &self.limits)?;
        super::naive_receive(replica, state, message).await
    }
}

/// A message given to [`Sessions::receive`] or [`Sessions::receive_shared`].
#[derive(Clone, Copy)]
enum Incoming<'a> {
    Borrowed(&'a [u8]),
    Shared(&'a Bytes),
}

impl Incoming<'_> {
    fn len(&self) -> usize {
        match self {
            Incoming::Borrowed(m) => m.len(),
            Incoming::Shared(m) => m.len(),
        }
    }
}

/// The driver's policy: start from [`SessionConfig::default()`] and change fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// A session that is not settled restarts when nothing arrived from the
    /// peer for this long. `None`: never (only on a network that loses
    /// nothing). Default: 10 s.
    pub timeout: Option<Duration>,
    /// Each timeout in a row doubles the next wait, at most this many times
    /// (the wait stays at `timeout` × 2^`max_backoff`). Default: 3.
    pub max_backoff: u32,
    /// Every this long, one settled peer drawn at random gets a fresh
    /// session. `None`: never. Default: 60 s.
    pub anti_entropy: Option<Duration>,
    /// A session restarts once it has sent this many messages (what a
    /// session remembers grows with it). Default: 10,000.
    pub max_session_messages: u32,
    /// After a failure (the transport lost a message, [`Sessions::lost`]; a
    /// message from the peer did not decode), the peer's session restarts
    /// but the driver says nothing to it for this long, doubled for each
    /// failure in a row (up to 2^`max_backoff` times); a good message from
    /// the peer ends the pause. So a peer that refuses everything costs one
    /// message per pause, not one per tick. Default: 1 s.
    pub retry: Duration,
    /// Whether [`Sessions::tick`] pushes new local heads to settled peers.
    /// `false` suits a transport that disseminates new events by itself
    /// (gossip announcements that carry them): a settled peer then stays
    /// *quiet* when our heads change (the tick neither speaks to it nor
    /// times it out) until a message arrives from it, the caller speaks to
    /// it ([`Sessions::speak`], [`Sessions::resync`]) or its session
    /// restarts (anti-entropy among them). Default: `true`.
    pub push: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            timeout: Some(Duration::from_secs(10)),
            max_backoff: 3,
            anti_entropy: Some(Duration::from_secs(60)),
            max_session_messages: 10_000,
            retry: Duration::from_secs(1),
            push: true,
        }
    }
}

/// Why the driver restarted a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Restart {
    /// Nothing arrived from the peer for the timeout, and it is not settled.
    Timeout,
    /// The peer (re)connected ([`Sessions::connect`] of a known peer).
    Reconnect,
    /// The transport said a message to the peer was lost ([`Sessions::lost`]).
    Lost,
    /// A message from the peer failed (it did not decode, or the store failed).
    Error,
    /// The session sent [`SessionConfig::max_session_messages`] messages.
    Capped,
    /// The peer was drawn for an anti-entropy session.
    AntiEntropy,
}

impl Restart {
    /// A short lower-case name (`timeout`, `reconnect`, …) for logs and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Timeout => "timeout",
            Restart::Reconnect => "reconnect",
            Restart::Lost => "lost",
            Restart::Error => "error",
            Restart::Capped => "capped",
            Restart::AntiEntropy => "anti-entropy",
        }
    }
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message for a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing<P> {
    /// To whom.
    pub peer: P,
    /// The encoded message.
    pub message: Vec<u8>,
}

/// What [`Sessions::tick`] found due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due<P> {
    /// Messages to send, in the order of the peers.
    pub messages: Vec<Outgoing<P>>,
    /// Sessions restarted by this tick, and why (their new session's first
    /// message is among `messages`).
    pub restarts: Vec<(P, Restart)>,
}

impl<P> Default for Due<P> {
    fn default() -> Self {
        Due { messages: Vec::new(), restarts: Vec::new() }
    }
}

/// What [`Sessions::receive`] did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// What the message brought.
    pub received: Received,
    /// The answer to send back to the peer, if there is one.
    pub reply: Option<Vec<u8>>,
}

/// Counters of a [`Sessions`], as a plain value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Messages made (by [`Sessions::tick`], [`Sessions::receive`] and [`Sessions::speak`]).
    pub messages_sent: u64,
    /// Bytes of those messages.
    pub bytes_sent: u64,
    /// Messages taken in without an error.
    pub messages_received: u64,
    /// Bytes of every message given to [`Sessions::receive`].
    pub bytes_received: u64,
    /// Messages from peers that failed (did not decode, beyond the limits).
    pub errors: u64,
    /// Sessions restarted, by cause.
    pub timeouts: u64,
    /// Known peers that connected again.
    pub reconnects: u64,
    /// Sessions restarted after a transport failure or a bad message.
    pub failures: u64,
    /// Sessions restarted by the cap on their length.
    pub capped: u64,
    /// Anti-entropy sessions started.
    pub anti_entropy: u64,
}

/// The driver's record of one peer.
#[cfg_attr(any(test, feature = "testing"), derive(Clone))]
struct Peer<St> {
    state: St,
    /// The last time the session was known to be fine: a message arrived
    /// from the peer, the session (re)started, or a tick found it settled.
    calm: Duration,
    /// Timeouts in a row since the peer last spoke.
    backoff: u32,
    /// The peer was settled when the driver last looked (after a message
    /// in, after a tick): a session that is not settled now became active
    /// since, by a local append, and its timeout starts now.
    was_settled: bool,
    /// Messages sent in this session.
    sent: u32,
    /// Failures in a row (lost messages, bad messages from the peer).
    failures: u32,
    /// Nothing is said to the peer before this time (after a failure).
    paused_until: Duration,
    /// Settled, then our heads changed and the tick did not push them
    /// ([`SessionConfig::push`] is `false`): no timeout, no tick message.
    quiet: bool,
    /// [`Sessions::go_on`] answered the message being received (its reply
    /// waits for the next part), or [`Sessions::hold_reply`] held it.
    answered: bool,
}

/// Every sync session of one replica with its peers: the per-peer states,
/// timeouts, back-off, session caps and anti-entropy. See the
/// [module documentation](self).
///
/// `P` names a peer (a libp2p peer id, a node index, a URL); `Pr` is the
/// protocol, [`Bloom`] unless chosen otherwise. Peers are visited in `P`'s
/// order, and every random choice comes from one seed when the driver is
/// made with [`Sessions::with_seed`], so a simulation stays reproducible.
pub struct Sessions<P, Pr: Protocol = Bloom> {
    protocol: Pr,
    config: SessionConfig,
    /// Boxed: a map node holds room for 11 entries, and a node with a few
    /// peers (a simulation of a million) should not pay for 11 states.
    peers: BTreeMap<P, Box<Peer<Pr::State>>>,
    /// Seeds the states and draws the anti-entropy peers; `None`: OS randomness.
    rng: Option<SimRng>,
    next_anti_entropy: Option<Duration>,
    stats: SessionStats,
}

/// A copy of the driver, random state included: the model checker forks a
/// state with it.
#[cfg(any(test, feature = "testing"))]
impl<P: Clone, Pr: Protocol + Clone> Clone for Sessions<P, Pr>
where
    Pr::State: Clone,
{
    fn clone(&self) -> Self {
        Sessions {
            protocol: self.protocol.clone(),
            config: self.config.clone(),
            peers: self.peers.clone(),
            rng: self.rng.clone(),
            next_anti_entropy: self.next_anti_entropy,
            stats: self.stats,
        }
    }
}

impl<P: fmt::Debug, Pr: Protocol> fmt::Debug for Sessions<P, Pr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("protocol", &self.protocol.name())
            .field("peers", &self.peers.keys().collect::<Vec<_>>())
            .field("stats", &self.stats)
            .finish()
    }
}

impl<P: Ord + Clone> Sessions<P, Bloom> {
    /// A driver of the Bloom protocol with the default limits; every filter
    /// salt from OS randomness.
    pub fn new(config: SessionConfig) -> Self {
        Sessions::with_protocol(Bloom::default(), config)
    }
}

impl<P: Ord + Clone, Pr: Protocol> Sessions<P, Pr> {
    /// A driver of any protocol; salts and random draws from OS randomness.
    pub fn with_protocol(protocol: Pr, config: SessionConfig) -> Self {
        Sessions {
            protocol,
            config,
            peers: BTreeMap::new(),
            rng: None,
            next_anti_entropy: None,
            stats: SessionStats::default(),
        }
    }

    /// A driver whose every random choice (filter salts, anti-entropy peers)
    /// derives from `seed`: the same seed and calls give the same messages.
    /// For simulations and tests; on a real network use [`Sessions::new`],
    /// or an attacker who knows the seed can mine CIDs that collide in its
    /// filters.
    pub fn with_seed(protocol: Pr, config: SessionConfig, seed: u64) -> Self {
        Sessions { rng: Some(SimRng::new(seed)), ..Sessions::with_protocol(protocol, config) }
    }

    /// The protocol.
    pub fn protocol(&self) -> &Pr {
        &self.protocol
    }

    /// The policy.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The counters so far.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The peers, in order.
    pub fn peers(&self) -> impl Iterator<Item = &P> + '_ {
        self.peers.keys()
    }

    /// Whether `peer` is connected.
    pub fn contains(&self, peer: &P) -> bool {
        self.peers.contains_key(peer)
    }

    /// The protocol state kept for `peer`.
    pub fn state(&self, peer: &P) -> Option<&Pr::State> {
        self.peers.get(peer).map(|p| &p.state)
    }

    /// Whether `peer` is known to hold exactly what `replica` holds.
    pub fn settled<S: ?Sized + StreamStore>(&self, replica: &Replica<S>, peer: &P) -> bool {
        self.peers.get(peer).is_some_and(|p| self.protocol.settled(replica, &p.state))
    }

    /// The events `replica` lacks (pending events wait for them) that no
    /// connected peer can supply: every peer said it holds them only pruned.
    /// Nothing waits on them in silence: fetch them from another source, or
    /// bootstrap from a checkpoint. Empty with no peer connected. Ascending.
    pub fn unavailable<S: ?Sized + StreamStore>(&self, replica: &Replica<S>) -> Vec<Cid> {
        if self.peers.is_empty() {
            return Vec::new();
        }
        replica
            .missing()
            .into_iter()
            .filter(|c| self.peers.values().all(|p| self.protocol.pruned_by_peer(&p.state).binary_search(c).is_ok()))
            .collect()
    }

    fn seed(&mut self) -> Option<u64> {
        self.rng.as_mut().map(SimRng::next_u64)
    }

    /// A peer appeared: a fresh session with it. A peer already connected
    /// (it reconnected) restarts its session, keeping the durable part.
    /// Returns whether the peer was known.
    pub fn connect(&mut self, peer: P, now: Duration) -> bool {
        if self.peers.contains_key(&peer) {
            self.restart(&peer, now, Restart::Reconnect);
            return true;
        }
        let seed = self.seed();
        let state = self.protocol.new_state(seed);
        self.peers.insert(
            peer,
            Box::new(Peer {
                state,
                calm: now,
                backoff: 0,
                was_settled: false,
                sent: 0,
                failures: 0,
                paused_until: Duration::ZERO,
                quiet: false,
                answered: false,
            }),
        );
        false
    }

    /// A peer appeared whose durable state was kept
    /// ([`Sessions::disconnect`], [`Sessions::save`]): its session starts
    /// from what both sides last shared. Replaces a session already there.
    pub fn connect_with(&mut self, peer: P, durable: &[u8], now: Duration) {
        let seed = self.seed();
        let state = self.protocol.restore(durable, seed);
        self.peers.insert(
            peer,
            Box::new(Peer {
                state,
                calm: now,
                backoff: 0,
                was_settled: false,
                sent: 0,
                failures: 0,
                paused_until: Duration::ZERO,
                quiet: false,
                answered: false,
            }),
        );
    }

    /// A peer went away: forgets its session and returns the durable part of
    /// its state, to give to [`Sessions::connect_with`] when it is back.
    pub fn disconnect(&mut self, peer: &P) -> Option<Vec<u8>> {
        self.peers.remove(peer).map(|p| self.protocol.save(&p.state))
    }

    /// The durable part of `peer`'s state (to keep across a restart).
    pub fn save(&self, peer: &P) -> Option<Vec<u8>> {
        self.peers.get(peer).map(|p| self.protocol.save(&p.state))
    }

    /// The transport could not deliver a message to `peer` (a failed
    /// request, a closed stream): its session restarts now instead of at
    /// the timeout.
    pub fn lost(&mut self, peer: &P, now: Duration) {
        if self.peers.contains_key(peer) {
            self.restart(peer, now, Restart::Lost);
        }
    }

    /// Every peer was given these events by other means (a broadcast that
    /// reaches them all, e.g. an announcement that carried them): open
    /// sessions do not push them, but answer a peer that asks
    /// ([`Protocol::delivered`]); a peer the broadcast missed pulls them
    /// when it learns of them ([`Sessions::resync`]).
    pub fn delivered(&mut self, cids: &[Cid]) {
        for p in self.peers.values_mut() {
            self.protocol.delivered(&mut p.state, cids);
        }
    }

    /// Starts a fresh session with `peer` now, as anti-entropy would (and
    /// counted with it): for a transport that learned, from an announcement,
    /// that the peer holds events we lack. Its next message
    /// ([`Sessions::speak`]) opens the session with our filter, which the
    /// peer answers with what we lack. Connects the peer if it was not.
    pub fn resync(&mut self, peer: P, now: Duration) {
        if !self.peers.contains_key(&peer) {
            self.connect(peer, now);
            return;
        }
        self.restart(&peer, now, Restart::AntiEntropy);
    }

    /// Restarts `peer`'s session from its durable part and counts why.
    fn restart(&mut self, peer: &P, now: Duration, why: Restart) {
        let seed = self.seed();
        let Some(p) = self.peers.get_mut(peer) else { return };
        self.protocol.restart(&mut p.state, seed);
        p.calm = now;
        p.sent = 0;
        p.was_settled = false;
        p.quiet = false;
        match why {
            Restart::Timeout => {
                p.backoff = p.backoff.saturating_add(1);
                self.stats.timeouts += 1;
            }
            Restart::Reconnect => {
                p.backoff = 0;
                self.stats.reconnects += 1;
            }
            Restart::Lost | Restart::Error => {
                p.failures = p.failures.saturating_add(1);
                let doublings = (p.failures - 1).min(self.config.max_backoff.min(30));
                p.paused_until = now.saturating_add(self.config.retry.saturating_mul(1 << doublings));
                self.stats.failures += 1;
            }
            Restart::Capped => self.stats.capped += 1,
            Restart::AntiEntropy => self.stats.anti_entropy += 1,
        }
    }

    /// Takes in a message from `peer` (connecting it if it was not) and
    /// makes the reply, if there is one.
    ///
    /// A message that fails (it does not decode, is beyond the limits)
    /// restarts the peer's session, so the next exchange starts clean, and
    /// is returned as the error; nothing it carried is kept then, except
    /// blocks already verified and stored.
    ///
    /// # Errors
    /// [`SyncError`] from the protocol: a message that does not decode or
    /// is beyond the limits, or a store failure.
    pub async fn receive<S: ?Sized + StreamStore>(
        &mut self,
        replica: &mut Replica<S>,
        peer: &P,
        message: &[u8],
        now: Duration,
    ) -> Result<Reply, SyncError> {
        self.take_in(replica, peer, Incoming::Borrowed(message), now).await
    }

    /// [`Sessions::receive`] of a message that arrived in [`Bytes`] (a
    /// transport's frame): the blocks taken in are slices of it, not copies
    /// ([`Message::decode_shared`]), unless most of it is blocks already
    /// held (then the new ones are copied, so that they do not keep the
    /// whole message alive).
    ///
    /// # Errors
    /// As [`Sessions::receive`].
    pub async fn receive_shared<S: ?Sized + StreamStore>(
        &mut self,
        replica: &mut Replica<S>,
        peer: &P,
        message: &Bytes,
        now: Duration,
    ) -> Result<Reply, SyncError> {
        self.take_in(replica, peer, Incoming::Shared(message), now).await
    }

    async fn take_in<S: ?Sized + StreamStore>(
        &mut self,
        replica: &mut Replica<S>,
        peer: &P,
        message: Incoming<'_>,
        now: Duration,
    ) -> Result<Reply, SyncError> {
        if !self.peers.contains_key(peer) {
            self.connect(peer.clone(), now);
        }
        self.stats.bytes_received += message.len() as u64;
        let p = self.peers.get_mut(peer).expect("connected above");
        p.calm = now;
        p.backoff = 0;
        p.quiet = false;
        let answered = std::mem::take(&mut p.answered);
        let received = match message {
            Incoming::Borrowed(m) => self.protocol.receive(replica, &mut p.state, m).await,
            Incoming::Shared(m) => self.protocol.receive_shared(replica, &mut p.state, m).await,
        };
        let received = match received {
            Ok(r) => {
                (p.failures, p.paused_until) = (0, Duration::ZERO);
                r
            }
            Err(e) => {
                self.stats.errors += 1;
                self.restart(peer, now, Restart::Error);
                return Err(e);
            }
        };
        self.stats.messages_received += 1;
        let reply = if answered { None } else { self.speak(replica, peer, now).await? };
        if let Some(p) = self.peers.get_mut(peer) {
            p.was_settled = self.protocol.settled(replica, &p.state);
        }
        Ok(Reply { received, reply })
    }

    /// For a message from `peer` that says more parts follow, before it is
    /// given to [`Sessions::receive`]: the answer to send now, so that the
    /// peer makes its next part while this one is taken in (a long catch-up
    /// then costs the larger of the two sides' work, not their sum, and no
    /// round trip per part). The answer is what is owed so far (the
    /// acknowledgement of the previous part, with our heads), or a bare
    /// request to go on; the `receive` that follows returns no reply, since
    /// the next part brings the next chance to speak (and if none comes,
    /// [`Sessions::tick`] says what is owed). `None` for any other message,
    /// and for a peer not connected or paused.
    ///
    /// At most one part is taken in while the next is made: memory stays
    /// within two messages of [`SyncLimits::max_message_bytes`] per peer.
    ///
    /// # Errors
    /// [`SyncError::Store`] when the store fails.
    pub async fn go_on<S: ?Sized + StreamStore>(
        &mut self,
        replica: &Replica<S>,
        peer: &P,
        message: &[u8],
        now: Duration,
    ) -> Result<Option<Vec<u8>>, SyncError> {
        if !self.protocol.says_more(message) || self.peers.get(peer).is_none_or(|p| now < p.paused_until) {
            return Ok(None);
        }
        let answer = match self.speak(replica, peer, now).await? {
            Some(m) => Some(m),
            None => self.protocol.go_on().inspect(|m| {
                self.stats.messages_sent += 1;
                self.stats.bytes_sent += m.len() as u64;
            }),
        };
        if let Some(p) = self.peers.get_mut(peer) {
            p.answered = answer.is_some();
        }
        Ok(answer)
    }

    /// The next message from `peer` is taken in without a reply: the
    /// transport has an exchange with it under way whose next request will
    /// carry what we owe (a long reply in parts, [`Sessions::go_on`]), and a
    /// second one beside it would make parts cross. What is owed stays owed:
    /// the next [`Sessions::speak`] or tick says it.
    pub fn hold_reply(&mut self, peer: &P) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.answered = true;
        }
    }

    /// Makes the next message for `peer` now, if there is something to say
    /// (connecting it if it was not): for a transport that pushes at once
    /// (after a local append, on an announcement) instead of at the next tick.
    ///
    /// # Errors
    /// [`SyncError::Store`] when the store fails.
    pub async fn speak<S: ?Sized + StreamStore>(
        &mut self,
        replica: &Replica<S>,
        peer: &P,
        now: Duration,
    ) -> Result<Option<Vec<u8>>, SyncError> {
        if !self.peers.contains_key(peer) {
            self.connect(peer.clone(), now);
        }
        let cap = self.config.max_session_messages;
        if self.peers.get(peer).is_some_and(|p| p.sent >= cap) {
            self.restart(peer, now, Restart::Capped);
        }
        let p = self.peers.get_mut(peer).expect("connected above");
        p.quiet = false;
        if now < p.paused_until {
            return Ok(None);
        }
        let message = self.protocol.generate(replica, &mut p.state).await?;
        if let Some(m) = &message {
            p.sent = p.sent.saturating_add(1);
            self.stats.messages_sent += 1;
            self.stats.bytes_sent += m.len() as u64;
        }
        Ok(message)
    }

    /// What is due at `now`: restarts the sessions that timed out (and, every
    /// [`SessionConfig::anti_entropy`], one random settled peer's), then
    /// makes the next message for every peer that has something to say.
    ///
    /// # Errors
    /// [`SyncError::Store`] when the store fails (the messages made before
    /// it are lost with the call; the next tick makes them again).
    pub async fn tick<S: ?Sized + StreamStore>(
        &mut self,
        replica: &Replica<S>,
        now: Duration,
    ) -> Result<Due<P>, SyncError> {
        self.tick_skipping(replica, now, |_| false).await
    }

    /// [`Sessions::tick`], making no message for the peers `busy` names
    /// (a transport with an exchange already under way with them: what they
    /// are owed goes in the reply to that exchange, or at a later tick).
    /// Their timeouts still run.
    ///
    /// # Errors
    /// As [`Sessions::tick`].
    pub async fn tick_skipping<S: ?Sized + StreamStore>(
        &mut self,
        replica: &Replica<S>,
        now: Duration,
        busy: impl Fn(&P) -> bool,
    ) -> Result<Due<P>, SyncError> {
        let mut due = Due::default();
        if let Some(timeout) = self.config.timeout {
            let max_backoff = self.config.max_backoff.min(30);
            let mut expired: Vec<P> = Vec::new();
            for (peer, p) in &mut self.peers {
                if p.was_settled || p.quiet || self.protocol.settled(replica, &p.state) {
                    p.calm = now;
                } else if now >= p.calm.saturating_add(timeout.saturating_mul(1 << p.backoff.min(max_backoff))) {
                    expired.push(peer.clone());
                }
            }
            if super::mutation::on(super::mutation::Mutation::NeverResend) {
                expired.clear();
            }
            for peer in expired {
                self.restart(&peer, now, Restart::Timeout);
                due.restarts.push((peer, Restart::Timeout));
            }
        }
        if let Some(peer) = self.anti_entropy_peer(replica, now) {
            self.restart(&peer, now, Restart::AntiEntropy);
            due.restarts.push((peer, Restart::AntiEntropy));
        }
        let peers: Vec<P> = self.peers.keys().cloned().collect();
        for peer in peers {
            if busy(&peer) {
                continue;
            }
            if !self.config.push
                && let Some(p) = self.peers.get_mut(&peer)
                && (p.quiet || p.was_settled)
                && !self.protocol.settled(replica, &p.state)
            {
                p.quiet = true;
                continue;
            }
            if let Some(message) = self.speak(replica, &peer, now).await? {
                due.messages.push(Outgoing { peer, message });
            }
        }
        for p in self.peers.values_mut() {
            p.was_settled = self.protocol.settled(replica, &p.state);
        }
        Ok(due)
    }

    /// The earliest time after `now` at which [`Sessions::tick`] may find
    /// something due that no call since made due: a session's timeout, the
    /// end of a pause, the next anti-entropy. `None`: nothing is scheduled.
    ///
    /// For a transport with many idle peers (a simulation of a million
    /// nodes): it need not tick this driver before that time unless it
    /// called [`Sessions::connect`], [`Sessions::receive`] or
    /// [`Sessions::lost`], or the replica changed (a local append), since
    /// the last tick. Before the first tick, anti-entropy is not scheduled
    /// yet: tick once to start its clock.
    pub fn next_deadline(&self, now: Duration) -> Option<Duration> {
        let max_backoff = self.config.max_backoff.min(30);
        let timeouts = self.config.timeout.into_iter().flat_map(|timeout| {
            self.peers
                .values()
                .filter(|p| !p.was_settled && !p.quiet)
                .map(move |p| p.calm.saturating_add(timeout.saturating_mul(1 << p.backoff.min(max_backoff))))
        });
        let pauses = self.peers.values().map(|p| p.paused_until);
        timeouts.chain(pauses).chain(self.next_anti_entropy).filter(|&t| t > now).min()
    }

    /// For the model checker: every peer's state and its clocks relative
    /// to `now` (the driver keeps absolute times; the checker abstracts them).
    #[cfg(feature = "testing")]
    #[allow(clippy::type_complexity)]
    pub(crate) fn model_view(
        &self,
        now: Duration,
    ) -> (Option<Duration>, Vec<(&P, &Pr::State, super::model::PeerClock)>) {
        let clocks = self.peers.iter().map(|(peer, p)| {
            let clock = super::model::PeerClock {
                since_calm: now.saturating_sub(p.calm),
                backoff: p.backoff,
                was_settled: p.was_settled,
                sent: p.sent,
                failures: p.failures,
                paused_for: p.paused_until.saturating_sub(now),
                quiet: p.quiet,
            };
            (peer, &p.state, clock)
        });
        (self.next_anti_entropy.map(|t| t.saturating_sub(now)), clocks.collect())
    }

    /// The peer drawn for anti-entropy, when one is due.
    fn anti_entropy_peer<S: ?Sized + StreamStore>(&mut self, replica: &Replica<S>, now: Duration) -> Option<P> {
        let every = self.config.anti_entropy?;
        let next = *self.next_anti_entropy.get_or_insert(now.saturating_add(every));
        if now < next {
            return None;
        }
        self.next_anti_entropy = Some(now.saturating_add(every));
        let settled: Vec<&P> = self
            .peers
            .iter()
            .filter(|(_, p)| p.quiet || self.protocol.settled(replica, &p.state))
            .map(|(k, _)| k)
            .collect();
        if settled.is_empty() {
            return None;
        }
        let draw = match &mut self.rng {
            Some(rng) => rng.below(settled.len() as u64),
            None => rand_core::OsRng.next_u64() % settled.len() as u64,
        };
        Some(settled[draw as usize].clone())
    }
}
