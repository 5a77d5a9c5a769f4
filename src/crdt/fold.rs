//! Folding a stream into application state: [`Fold`] in the total order,
//! with checkpoints and replay, and [`CausalFeed`] in arrival order for
//! reducers that do not care about the order of concurrent events.

use std::collections::HashSet;
use std::fmt;

use ipld_core::cid::Cid;
use serde::de::DeserializeOwned;
use thiserror::Error;
use tracing::trace;

use crate::block::{Block, cid_from_digest};
use crate::dag::OrderKey;
use crate::error::DecodeError;
use crate::event::{Header, Limits};
use crate::replica::{Cursor, Replica};
use crate::store::{StoreError, StreamStore};

/// Blocks fetched from the store per `get_many` call.
const FETCH_BATCH: usize = 1024;

/// Blocks in the store were checked when they were accepted; reading them
/// back must not fail because the configured limits shrank since.
const TRUSTED: Limits = Limits { max_block_bytes: usize::MAX, max_parents: usize::MAX, max_payload_depth: usize::MAX };

/// One event as a [`Reducer`] sees it: the envelope and the decoded payload.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldEvent<P> {
    /// The event's CID.
    pub cid: Cid,
    /// Its height (1 + the largest parent height).
    pub height: u64,
    /// Its parents, ascending by CID bytes.
    pub parents: Vec<Cid>,
    /// Its index in the total order (the genesis is 0) when delivered by a
    /// [`Fold`]; `None` when delivered by a [`CausalFeed`], which does not
    /// follow the total order.
    pub position: Option<usize>,
    /// The payload, decoded.
    pub payload: P,
}

impl<P: DeserializeOwned> FoldEvent<P> {
    /// Decodes a block into a fold event (for reference folds, tests, tools).
    /// The canonical form is checked but not the size limits: the block is
    /// taken to come from a replica's store, where it was checked on
    /// arrival. Decode untrusted blocks with [`Event::decode_with`](crate::Event::decode_with).
    ///
    /// # Errors
    /// [`DecodeError`] when the block is not a canonical event or its payload
    /// is not a `P`.
    pub fn decode(block: &Block, position: Option<usize>) -> Result<Self, DecodeError> {
        let header = Header::parse(block, &TRUSTED)?;
        let payload = serde_ipld_dagcbor::from_slice(&block.bytes()[header.payload.clone()])
            .map_err(|e| DecodeError::Payload { cid: *block.cid(), message: e.to_string() })?;
        Ok(FoldEvent {
            cid: *block.cid(),
            height: header.height,
            parents: header.parents.iter().map(cid_from_digest).collect(),
            position,
            payload,
        })
    }
}

/// An interpretation of a stream: how one event changes the state.
///
/// A reducer must be deterministic in `(state, event)` alone — no clocks, no
/// randomness, no I/O — so that every replica holding the same events
/// computes the same state. The genesis event is never applied (its payload
/// names the stream; it is not an operation), and events whose payload does
/// not decode as [`Reducer::Payload`] are skipped, identically everywhere
/// (refuse them at ingest with a [`Validator`](crate::replica::Validator) if
/// they should not exist at all).
///
/// ```
/// use merkle_clock::crdt::{FoldEvent, Reducer};
///
/// /// The sum of all payloads.
/// struct Sum;
/// impl Reducer for Sum {
///     type Payload = u64;
///     type State = u64;
///     fn init(&self) -> u64 { 0 }
///     fn apply(&self, state: &mut u64, event: &FoldEvent<u64>) { *state += event.payload; }
/// }
/// ```
pub trait Reducer {
    /// What the events' payloads decode to.
    type Payload: DeserializeOwned;
    /// The materialized state. `Clone` because [`Fold`] keeps checkpoints.
    type State: Clone;
    /// The state before any event.
    fn init(&self) -> Self::State;
    /// Applies one event.
    fn apply(&self, state: &mut Self::State, event: &FoldEvent<Self::Payload>);
}

/// A promise that a [`Reducer`]'s result does not depend on the order of
/// concurrent events: applying any set of events in any order that puts
/// each event after its parents gives the same state. Required by
/// [`CausalFeed`]. Counters and the add-wins set qualify; last-writer-wins
/// types and the ordered log do not.
pub trait OrderInsensitive: Reducer {}

/// How a [`Fold`] keeps checkpoints (clones of its state) to replay from.
///
/// A checkpoint is taken after every `every` events of the total order (at
/// positions that are multiples of `every`). The newest `keep_recent` are
/// all kept; older ones thin out geometrically: a checkpoint at distance `D`
/// from the fold's position survives only if its position is a multiple of
/// `every · 2^L`, with `L = ⌊log2(D / (every · keep_recent))⌋ + 1` once
/// `D ≥ every · keep_recent`. So the gap between the checkpoints around
/// distance `D` is at most about `max(every, 2·D / keep_recent)`, and a late
/// event landing `d` positions back costs at most about
/// `d · (1 + 2 / keep_recent) + every` re-applied events, whatever the
/// length of the history. About `keep_recent · (1 + log2(n / (every ·
/// keep_recent)) / 2)` checkpoints exist for `n` events (28 for a million
/// with the defaults), each a full clone of the state: the memory cost is
/// that many states. A smaller `every` makes replays cheaper and the
/// initial fold slower: each checkpoint clones the state, so a fold pays
/// about `clone cost / every` per event (an LWW map of 1,000 string keys
/// clones in about 0.2 ms: at `every = 4096`, about 50 ns per event, a few
/// percent of the fold in `examples/fold_cost.rs`). For a large state, raise
/// `every`, or make the state cheap to clone by sharing its parts (as
/// [`LogState`](super::LogState) does with `Arc`-shared chunks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointPolicy {
    /// Events between checkpoints. Default: 4096. At least 1.
    pub every: usize,
    /// Checkpoints kept at full density behind the fold's position. Default: 8. At least 1.
    pub keep_recent: usize,
}

impl CheckpointPolicy {
    /// The defaults: a checkpoint every 4096 events, the newest 8 kept dense.
    pub const DEFAULT: CheckpointPolicy = CheckpointPolicy { every: 4096, keep_recent: 8 };

    /// A checkpoint every `every` events, `keep_recent` kept dense.
    pub fn new(every: usize, keep_recent: usize) -> Self {
        CheckpointPolicy { every: every.max(1), keep_recent: keep_recent.max(1) }
    }

    /// Whether a checkpoint at `position` is kept while the fold is at `head`.
    fn keeps(&self, position: usize, head: usize) -> bool {
        let every = self.every.max(1);
        let dense = every.saturating_mul(self.keep_recent.max(1));
        let distance = head.saturating_sub(position);
        let level = if distance < dense { 0 } else { (distance / dense).ilog2() + 1 };
        let step = 1usize.checked_shl(level).and_then(|m| every.checked_mul(m)).unwrap_or(usize::MAX);
        position.is_multiple_of(step)
    }
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy::DEFAULT
    }
}

/// A [`Fold`] or [`CausalFeed`] update failed. The fold stays usable: the
/// next update repairs its state from a checkpoint.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FoldError {
    /// The store failed, or lacks a block the DAG holds.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The fold was built over another stream.
    #[error("this fold follows stream {expected}, not {found}")]
    WrongStream {
        /// The stream the fold follows.
        expected: Cid,
        /// The stream of the replica given.
        found: Cid,
    },
}

/// What one [`Fold::update`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FoldReport {
    /// `Some(p)` when late events moved the order at position `p`.
    pub replayed_from: Option<usize>,
    /// The checkpoint position the state was restored from (0: the initial
    /// state), when it was restored.
    pub restored_from: Option<usize>,
    /// Events applied (re-applied ones included; the genesis is not counted).
    pub applied: usize,
    /// Events skipped because their payload did not decode.
    pub skipped: usize,
    /// The fold's position after the update: events of the order consumed.
    pub position: usize,
    /// Events passed over because the checkpoint a resumed fold started from
    /// holds them already (its past).
    pub covered: usize,
}

/// Where a resumed fold starts: the state at a checkpoint's cut (the
/// checkpoint's past: its parents and all their ancestors).
struct Base<T> {
    state: T,
    /// The greatest height in the cut: every event above it is outside.
    cut_height: u64,
    /// The events at or below `cut_height` that are outside the cut
    /// (concurrent with the checkpoint).
    late: HashSet<Cid>,
    /// Events of the replica's DAG (by arrival) sorted into `late` so far.
    seen: usize,
}

impl<T> Base<T> {
    /// Whether the event `cid` at `height` is outside the cut (must be applied).
    fn outside(&self, height: u64, cid: &Cid) -> bool {
        height > self.cut_height || self.late.contains(cid)
    }
}

struct Checkpoint<T> {
    /// Events of the order folded into `state`.
    position: usize,
    /// The key of the event at `position - 1` (positions are never 0).
    last: OrderKey,
    state: T,
}

/// A reducer's state, folded over a replica's events in the total order and
/// kept up to date incrementally.
///
/// [`Fold::update`] reads [`Replica::events_since`]: new events at the end of
/// the order are applied; when late events sort before events already
/// folded, the state is restored from the latest checkpoint at or before the
/// first moved position and the events from there are applied again (see
/// [`CheckpointPolicy`]). After every update the state equals a fold of the
/// replica's whole order from scratch, so two replicas holding the same
/// events hold the same state.
///
/// A fold follows one replica (or that replica reopened from its store):
/// its cursor counts that replica's arrivals. Give each replica its own
/// fold; one given a replica of another stream refuses it.
///
/// ```
/// use std::sync::Arc;
/// use merkle_clock::{Event, MemoryBlockstore, replica::{ReplicaConfig, Replica}};
/// use merkle_clock::crdt::{Fold, FoldEvent, Reducer};
///
/// /// Concatenates string payloads in the total order.
/// struct Concat;
/// impl Reducer for Concat {
///     type Payload = String;
///     type State = String;
///     fn init(&self) -> String { String::new() }
///     fn apply(&self, s: &mut String, e: &FoldEvent<String>) { s.push_str(&e.payload); }
/// }
///
/// # futures::executor::block_on(async {
/// let genesis = Event::genesis("letters").encode()?;
/// let mut a = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
/// let mut b = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
/// a.append(&"x".to_string()).await?;
/// a.append(&"y".to_string()).await?;
/// let mut fold = Fold::new(Concat);
/// fold.update(&a).await?;
/// assert_eq!(fold.state(), "xy");
///
/// // b appended concurrently: its event has height 1, like "x", so it
/// // lands before "y", and the fold replays from where it landed.
/// let z = b.append(&"z".to_string()).await?;
/// a.ingest(b.get(&z).await?.expect("present")).await?;
/// let report = fold.update(&a).await?;
/// assert!(matches!(report.replayed_from, Some(1 | 2)));
/// assert!(fold.state() == "xzy" || fold.state() == "zxy"); // by CID
///
/// // b gets a's events in another order and reads the same thing.
/// for cid in a.order().collect::<Vec<_>>().into_iter().rev() {
///     b.ingest(a.get(&cid).await?.expect("present")).await?;
/// }
/// let mut fold_b = Fold::new(Concat);
/// fold_b.update(&b).await?;
/// assert_eq!(fold_b.state(), fold.state());
/// # Ok::<(), merkle_clock::Error>(())
/// # })?;
/// # Ok::<(), merkle_clock::Error>(())
/// ```
pub struct Fold<R: Reducer> {
    reducer: R,
    state: R::State,
    cursor: Cursor,
    checkpoints: Vec<Checkpoint<R::State>>,
    policy: CheckpointPolicy,
    stream: Option<Cid>,
    /// Set when an update failed half-way: the state must be restored.
    broken: bool,
    /// For a fold resumed from a checkpoint: the state it starts from.
    base: Option<Base<R::State>>,
}

impl<R: Reducer> fmt::Debug for Fold<R>
where
    R::State: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fold")
            .field("position", &self.cursor.position())
            .field("checkpoints", &self.checkpoint_positions())
            .field("state", &self.state)
            .finish()
    }
}

impl<R: Reducer> Fold<R> {
    /// A fold at the start of the order, with the default [`CheckpointPolicy`].
    pub fn new(reducer: R) -> Self {
        Self::with_policy(reducer, CheckpointPolicy::DEFAULT)
    }

    /// A fold at the start of the order.
    pub fn with_policy(reducer: R, policy: CheckpointPolicy) -> Self {
        let state = reducer.init();
        Fold {
            reducer,
            state,
            cursor: Cursor::start(),
            checkpoints: Vec::new(),
            policy: CheckpointPolicy::new(policy.every, policy.keep_recent),
            stream: None,
            broken: false,
            base: None,
        }
    }

    /// A fold that starts from `state`, the state at the cut `cut` (a
    /// checkpoint's parents) of `replica`'s DAG, which holds the cut and
    /// everything below it: it applies only the events outside the cut's
    /// past, in the total order. [`Fold::resume`] is the public way in.
    pub(crate) fn with_base<S: ?Sized + StreamStore>(
        reducer: R,
        policy: CheckpointPolicy,
        state: R::State,
        cut: &[Cid],
        replica: &Replica<S>,
    ) -> Result<Self, crate::error::UnknownEvent> {
        let dag = replica.dag();
        let mut cut_height = 0;
        for c in cut {
            let id = dag.id(c).ok_or(crate::error::UnknownEvent { cid: *c })?;
            cut_height = cut_height.max(dag.height(id));
        }
        let late: HashSet<Cid> = dag
            .difference(&dag.heads(), cut)?
            .into_iter()
            // Anchors (a shallow replica's skeleton-only events) are below
            // the cut: the state holds them.
            .filter(|id| dag.height(*id) <= cut_height && !dag.is_anchor(*id))
            .map(|id| dag.cid(id))
            .collect();
        let mut fold = Self::with_policy(reducer, policy);
        fold.state = state.clone();
        fold.stream = Some(*replica.stream_id());
        fold.base = Some(Base { state, cut_height, late, seen: dag.len() });
        Ok(fold)
    }

    /// The state after the events folded so far.
    pub fn state(&self) -> &R::State {
        &self.state
    }

    /// Takes the state out.
    pub fn into_state(self) -> R::State {
        self.state
    }

    /// The reducer.
    pub fn reducer(&self) -> &R {
        &self.reducer
    }

    /// Events of the total order folded so far (the genesis included).
    pub fn position(&self) -> usize {
        self.cursor.position()
    }

    /// The positions of the checkpoints held, ascending.
    pub fn checkpoint_positions(&self) -> Vec<usize> {
        self.checkpoints.iter().map(|c| c.position).collect()
    }

    /// Brings the state up to date with the replica's events.
    ///
    /// # Errors
    /// [`FoldError::Store`] when blocks cannot be read (the next update
    /// repairs the state from a checkpoint), [`FoldError::WrongStream`] when
    /// the replica follows another stream than the one this fold began on.
    pub async fn update<S: ?Sized + StreamStore>(&mut self, replica: &Replica<S>) -> Result<FoldReport, FoldError> {
        let stream = *replica.stream_id();
        match self.stream {
            Some(expected) if expected != stream => return Err(FoldError::WrongStream { expected, found: stream }),
            _ => self.stream = Some(stream),
        }
        if let Some(base) = self.base.as_mut() {
            // Every event that arrives after the cut's past is outside it
            // (a replica holds an event's parents before the event), but
            // for anchors: a shallow replica's parents of late events,
            // which are below the cut.
            let dag = replica.dag();
            base.late.extend(
                dag.arrived_since(base.seen)
                    .filter(|id| dag.height(*id) <= base.cut_height && !dag.is_anchor(*id))
                    .map(|id| dag.cid(id)),
            );
            base.seen = dag.len();
        }
        let delta = replica.events_since(&self.cursor);
        trace!(start = delta.start, events = delta.events.len(), replay = ?delta.replay_from, "fold update");
        let mut report = FoldReport { replayed_from: delta.replay_from, ..FoldReport::default() };
        if delta.replay_from.is_some() || self.broken {
            // Everything before `delta.start` is unchanged; restore the
            // latest checkpoint at or before it and re-apply up to it.
            let target = delta.start;
            self.checkpoints.retain(|c| c.position <= target);
            self.broken = true;
            let (from, last) = match self.checkpoints.last() {
                Some(c) => {
                    self.state = c.state.clone();
                    (c.position, Some(c.last))
                }
                None => {
                    self.state = match &self.base {
                        Some(base) => base.state.clone(),
                        None => self.reducer.init(),
                    };
                    (0, None)
                }
            };
            report.restored_from = Some(from);
            trace!(from, target, "restored");
            let dag = replica.dag();
            let cids: Vec<Cid> = match last {
                Some(key) => dag.order_from(&key).skip(1).take(target - from).map(|id| dag.cid(id)).collect(),
                None => dag.order().take(target).map(|id| dag.cid(id)).collect(),
            };
            self.apply_all(replica, from, &cids, &mut report).await?;
        }
        self.broken = true;
        self.apply_all(replica, delta.start, &delta.events, &mut report).await?;
        self.broken = false;
        self.cursor = delta.cursor;
        report.position = self.cursor.position();
        Ok(report)
    }

    /// Applies `cids`, the events at positions `start..`, in batches. A
    /// resumed fold passes over the events of its checkpoint's past without
    /// reading them (a pruned replica may not hold their payloads).
    async fn apply_all<S: ?Sized + StreamStore>(
        &mut self,
        replica: &Replica<S>,
        start: usize,
        cids: &[Cid],
        report: &mut FoldReport,
    ) -> Result<(), FoldError> {
        let dag = replica.dag();
        let mut position = start;
        for batch in cids.chunks(FETCH_BATCH) {
            // (key, whether to apply) per event; the keys of events in the DAG.
            let marks: Vec<(OrderKey, bool)> = batch
                .iter()
                .map(|cid| {
                    let id = dag.id(cid).ok_or_else(|| StoreError::Corrupt(format!("{cid}: not in the DAG")))?;
                    Ok((dag.key(id), self.base.as_ref().is_none_or(|b| b.outside(dag.height(id), cid))))
                })
                .collect::<Result<_, StoreError>>()?;
            let wanted: Vec<Cid> = batch.iter().zip(&marks).filter(|(_, m)| m.1).map(|(c, _)| *c).collect();
            let mut blocks = fetch(replica, &wanted).await?.into_iter();
            for (key, apply) in marks {
                match if apply { blocks.next() } else { None } {
                    Some(block) => self.apply_block(&block, position, report),
                    None => report.covered += 1,
                }
                position += 1;
                self.mark(position, key);
            }
        }
        Ok(())
    }

    /// Applies one event (never the genesis, at position 0).
    fn apply_block(&mut self, block: &Block, position: usize, report: &mut FoldReport) {
        if position == 0 {
            return;
        }
        match FoldEvent::<R::Payload>::decode(block, Some(position)) {
            Ok(event) => {
                self.reducer.apply(&mut self.state, &event);
                report.applied += 1;
            }
            Err(e) => {
                trace!(cid = %block.cid(), error = %e, "skipped");
                report.skipped += 1;
            }
        }
    }

    /// Takes a checkpoint when `next` events have been consumed and it is
    /// due; `last` is the key of the event at `next - 1`.
    fn mark(&mut self, next: usize, last: OrderKey) {
        if next.is_multiple_of(self.policy.every) && self.checkpoints.last().is_none_or(|c| c.position < next) {
            self.checkpoints.push(Checkpoint { position: next, last, state: self.state.clone() });
            let policy = self.policy;
            self.checkpoints.retain(|c| policy.keeps(c.position, next));
        }
    }
}

/// Fetches blocks that the replica's DAG holds: a pruned one is
/// [`StoreError::Pruned`] (fold from a checkpoint that covers it:
/// [`Fold::resume`]), any other missing one is corruption.
async fn fetch<S: ?Sized + StreamStore>(replica: &Replica<S>, cids: &[Cid]) -> Result<Vec<Block>, StoreError> {
    let found = replica.store().get_many(cids).await?;
    cids.iter()
        .zip(found)
        .map(|(cid, b)| match b {
            Some(b) => Ok(b),
            None if replica.is_pruned(cid) => Err(StoreError::Pruned { cid: *cid }),
            None => Err(StoreError::Corrupt(format!("{cid}: in the DAG but not in the store"))),
        })
        .collect()
}

/// A reducer's state fed every event once, in arrival order (each event after
/// its parents), with no replay: for [`OrderInsensitive`] reducers, whose
/// result does not depend on the order of concurrent events.
///
/// Cheaper than a [`Fold`] — no checkpoints, nothing re-applied — and, for
/// such reducers, equal to it. The arrival order is the replica's (events
/// are accepted only after their parents), so the feed follows one replica.
///
/// ```
/// use std::sync::Arc;
/// use merkle_clock::{Event, MemoryBlockstore, replica::{ReplicaConfig, Replica}};
/// use merkle_clock::crdt::{CausalFeed, Counter, CounterOp};
/// # futures::executor::block_on(async {
/// let genesis = Event::genesis("likes").encode()?;
/// let mut r = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
/// let mut feed = CausalFeed::new(Counter);
/// r.append(&CounterOp::Increment(3)).await?;
/// feed.update(&r).await?;
/// r.append(&CounterOp::Decrement(1)).await?;
/// assert_eq!(feed.update(&r).await?, 1); // only the new event
/// assert_eq!(*feed.state(), 2);
/// # Ok::<(), merkle_clock::Error>(())
/// # })?;
/// # Ok::<(), merkle_clock::Error>(())
/// ```
pub struct CausalFeed<R: OrderInsensitive> {
    reducer: R,
    state: R::State,
    /// Events of the replica's DAG (by arrival index) already delivered.
    seen: usize,
    stream: Option<Cid>,
    skipped: usize,
}

impl<R: OrderInsensitive> fmt::Debug for CausalFeed<R>
where
    R::State: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CausalFeed").field("seen", &self.seen).field("state", &self.state).finish()
    }
}

impl<R: OrderInsensitive> CausalFeed<R> {
    /// A feed that has delivered nothing yet.
    pub fn new(reducer: R) -> Self {
        let state = reducer.init();
        CausalFeed { reducer, state, seen: 0, stream: None, skipped: 0 }
    }

    /// The state after the events delivered so far.
    pub fn state(&self) -> &R::State {
        &self.state
    }

    /// Takes the state out.
    pub fn into_state(self) -> R::State {
        self.state
    }

    /// Events delivered so far (the genesis included).
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Events skipped so far because their payload did not decode.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Applies every event that joined the replica's DAG since the last
    /// update, in arrival order. Returns how many were applied.
    ///
    /// # Errors
    /// [`FoldError::Store`] (the events not applied are delivered by the next
    /// update), [`FoldError::WrongStream`].
    pub async fn update<S: ?Sized + StreamStore>(&mut self, replica: &Replica<S>) -> Result<usize, FoldError> {
        let stream = *replica.stream_id();
        match self.stream {
            Some(expected) if expected != stream => return Err(FoldError::WrongStream { expected, found: stream }),
            _ => self.stream = Some(stream),
        }
        let dag = replica.dag();
        let mut applied = 0;
        while self.seen < dag.len() {
            let ids: Vec<_> = dag.arrived_since(self.seen).take(FETCH_BATCH).collect();
            let cids: Vec<Cid> = ids.iter().map(|id| dag.cid(*id)).collect();
            let blocks = fetch(replica, &cids).await?;
            for (id, block) in ids.iter().zip(&blocks) {
                if id.index() == 0 {
                    continue; // the genesis
                }
                match FoldEvent::<R::Payload>::decode(block, None) {
                    Ok(event) => {
                        self.reducer.apply(&mut self.state, &event);
                        applied += 1;
                    }
                    Err(_) => self.skipped += 1,
                }
            }
            self.seen += ids.len();
        }
        Ok(applied)
    }
}
