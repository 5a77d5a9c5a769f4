//! The replica: the state machine of one stream on one node.
//!
//! It appends local events whose parents are all current heads, takes blocks
//! from anywhere in any order, holds back those whose parents it lacks, and
//! keeps its [`Dag`] index exactly in step with its [`StreamStore`]: the store
//! is written first, in one atomic commit per call, and only then the index.
//! A storage error is returned and leaves the replica as the store holds it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ipld_core::cid::Cid;
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;
use tracing::{Instrument, debug_span, trace};

use crate::block::{Block, Digest, KeyedState, cid_from_digest, digest_of};
use crate::dag::{Dag, EventId, OrderKey};
use crate::error::{DecodeError, EncodeError, InsertError};
use crate::event::{Header, Limits, encode_into};
use crate::store::{StoreError, StreamStore};

/// How a replica behaves. `#[non_exhaustive]`: start from
/// [`ReplicaConfig::default()`] and change fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaConfig {
    /// Limits on every block appended or accepted (see [`Limits`]).
    pub limits: Limits,
    /// Most events held in the pending buffer. Default: 100,000.
    pub max_pending_events: usize,
    /// Most bytes of blocks held in the pending buffer. Default: 64 MiB.
    pub max_pending_bytes: usize,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig { limits: Limits::DEFAULT, max_pending_events: 100_000, max_pending_bytes: 64 << 20 }
    }
}

/// Why a block was refused. The replica is unchanged by a refused block.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The block is not a canonical event within the limits.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The event does not fit the DAG (wrong height, a foreign genesis).
    #[error(transparent)]
    Insert(#[from] InsertError),
    /// An application validator refused it.
    #[error("{cid}: refused by validator {validator:?}: {reason}")]
    Validator {
        /// The refused event.
        cid: Cid,
        /// The validator's name.
        validator: String,
        /// What it said.
        reason: String,
    },
    /// One of its ancestors was rejected, so it can never be accepted.
    #[error("{cid}: its ancestor {ancestor} was rejected")]
    AncestorRejected {
        /// The refused event.
        cid: Cid,
        /// The rejected ancestor.
        ancestor: Cid,
    },
}

impl Rejection {
    /// A short name for the rule broken, used as the metrics key.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Decode(DecodeError::Block(_)) => "block",
            Rejection::Decode(DecodeError::TooManyParents { .. } | DecodeError::TooDeep { .. }) => "limits",
            Rejection::Decode(_) => "decode",
            Rejection::Insert(InsertError::WrongHeight { .. }) => "height",
            Rejection::Insert(InsertError::ForeignGenesis { .. }) => "foreign_genesis",
            Rejection::Insert(_) => "insert",
            Rejection::Validator { .. } => "validator",
            Rejection::AncestorRejected { .. } => "ancestor_rejected",
        }
    }
}

/// What [`Replica::ingest`] did with one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingest {
    /// The event joined the DAG (and with it any pending descendants).
    Accepted,
    /// The event was already in the DAG.
    Duplicate,
    /// The event waits in the pending buffer for these parents.
    Pending {
        /// Its parents not yet in the DAG.
        missing: Vec<Cid>,
    },
    /// The event was refused.
    Rejected(Rejection),
}

/// What [`Replica::ingest_many`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// One outcome per block given, in the same order.
    pub outcomes: Vec<Ingest>,
    /// Every event this call added to the DAG, in the order added (each after
    /// its parents): the blocks given and pending events they released.
    pub accepted: Vec<Cid>,
}

/// Opening a replica failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The genesis block is not a canonical event.
    #[error("the genesis block is invalid: {0}")]
    Genesis(#[source] DecodeError),
    /// The block has parents, so it cannot start a stream.
    #[error("{cid}: not a genesis event (it has parents)")]
    NotGenesis {
        /// The block offered as genesis.
        cid: Cid,
    },
    /// The store holds no stream with this id.
    #[error("{stream}: no such stream in the store")]
    UnknownStream {
        /// The stream asked for.
        stream: Cid,
    },
}

/// A local append failed; the replica is unchanged.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The payload cannot be encoded within the limits.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A validator refused the new event.
    #[error(transparent)]
    Rejected(Rejection),
}

/// An application check run on every event before it is accepted (received
/// or appended locally): a payload schema, a clock-drift rule, an allow-list.
///
/// Validators must be deterministic in the event alone for replicas to
/// converge: a validator that depends on local time or state can make two
/// replicas accept different sets.
pub trait Validator: Send + Sync {
    /// The name reported in [`Rejection::Validator`].
    fn name(&self) -> &str;
    /// `Err(reason)` refuses the event.
    fn validate(&self, event: &EventRef<'_>) -> Result<(), String>;
}

/// A validator made of a name and a closure.
pub struct FnValidator<F> {
    name: String,
    check: F,
}

impl<F> FnValidator<F>
where
    F: Fn(&EventRef<'_>) -> Result<(), String> + Send + Sync,
{
    /// Names a closure as a validator.
    pub fn new(name: impl Into<String>, check: F) -> Self {
        FnValidator { name: name.into(), check }
    }
}

impl<F> Validator for FnValidator<F>
where
    F: Fn(&EventRef<'_>) -> Result<(), String> + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn validate(&self, event: &EventRef<'_>) -> Result<(), String> {
        (self.check)(event)
    }
}

/// A decoded event as a validator sees it.
pub struct EventRef<'a> {
    block: &'a Block,
    header: &'a Header,
}

impl EventRef<'_> {
    /// The event's CID.
    pub fn cid(&self) -> &Cid {
        self.block.cid()
    }
    /// The event's height.
    pub fn height(&self) -> u64 {
        self.header.height
    }
    /// The parents' CIDs.
    pub fn parents(&self) -> Vec<Cid> {
        self.header.parents.iter().map(cid_from_digest).collect()
    }
    /// The whole block.
    pub fn block(&self) -> &Block {
        self.block
    }
    /// The payload, decoded as `P`.
    ///
    /// # Errors
    /// [`DecodeError::Payload`] when it is not a `P`.
    pub fn payload<P: DeserializeOwned>(&self) -> Result<P, DecodeError> {
        serde_ipld_dagcbor::from_slice(&self.block.bytes()[self.header.payload.clone()])
            .map_err(|e| DecodeError::Payload { cid: *self.block.cid(), message: e.to_string() })
    }
}

/// Counters a caller reads as a plain value ([`Replica::metrics`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Events created by [`Replica::append`] and [`Replica::append_many`].
    pub appended: u64,
    /// Received events added to the DAG (released pending ones included).
    pub accepted: u64,
    /// Received events already held.
    pub duplicate: u64,
    /// Received events put in the pending buffer.
    pub pending: u64,
    /// Pending events dropped to keep the buffer within its caps.
    pub evicted: u64,
    /// Refused events by [`Rejection::reason`].
    pub rejected: BTreeMap<&'static str, u64>,
}

/// A reader's place in the total order, for [`Replica::events_since`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Events that had arrived when the reader last read.
    seen: usize,
    /// How many events of the order the reader has consumed.
    position: usize,
    /// The key of the last event consumed.
    last: Option<OrderKey>,
}

impl Cursor {
    /// A cursor before the first event.
    pub fn start() -> Self {
        Cursor::default()
    }
    /// How many events of the order the reader has consumed.
    pub fn position(&self) -> usize {
        self.position
    }
}

/// Events to read after a [`Cursor`], from [`Replica::events_since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// `Some(p)` when events arrived that sort before what the reader already
    /// consumed: the reader must undo what it folded from position `p` on and
    /// fold `events` again from there. `None`: just continue.
    pub replay_from: Option<usize>,
    /// The position of `events[0]` in the total order.
    pub start: usize,
    /// The events to fold, in the total order.
    pub events: Vec<Cid>,
    /// The cursor to pass next time.
    pub cursor: Cursor,
}

/// One stream's replica over a [`StreamStore`].
///
/// ```
/// use std::sync::Arc;
/// use merkle_clock::{Event, Ingest, MemoryBlockstore, replica::{ReplicaConfig, Replica}};
/// # futures::executor::block_on(async {
/// let genesis = Event::genesis("todo list").encode().unwrap();
/// let mut alice = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await.unwrap();
/// let mut bob = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await.unwrap();
/// let a1 = alice.append(&"buy milk").await.unwrap();
/// let a2 = alice.append(&"walk the dog").await.unwrap();
/// // Bob receives them out of order: a2 waits for its parent, a1 releases it.
/// let b2 = alice.get(&a2).await.unwrap().unwrap();
/// let b1 = alice.get(&a1).await.unwrap().unwrap();
/// assert_eq!(bob.ingest(b2).await.unwrap(), Ingest::Pending { missing: vec![a1] });
/// assert_eq!(bob.missing(), vec![a1]);
/// assert_eq!(bob.ingest(b1).await.unwrap(), Ingest::Accepted);
/// assert_eq!(bob.heads(), alice.heads());
/// # });
/// ```
pub struct Replica<S: ?Sized + StreamStore> {
    store: Arc<S>,
    stream: Cid,
    dag: Dag,
    config: ReplicaConfig,
    pending: PendingBuffer,
    validators: Vec<Box<dyn Validator>>,
    metrics: Metrics,
    scratch: AppendScratch,
}

/// Buffers a local append reuses from call to call, so that a single append
/// allocates nothing of its own in the steady state.
#[derive(Default)]
struct AppendScratch {
    heads: Vec<EventId>,
    parents: Vec<Digest>,
    blocks: Vec<Block>,
    new_heads: Vec<Cid>,
    /// The event being encoded.
    encoded: Vec<u8>,
    /// Where new blocks' bytes go: see [`AppendScratch::block_bytes`].
    chunk: BytesMut,
}

impl AppendScratch {
    /// Empties the buffers (the blocks go: the store holds them) and lets go
    /// of any that a large batch grew.
    fn clear(&mut self) {
        fn clear_shrink<T>(v: &mut Vec<T>) {
            v.clear();
            if v.capacity() > 1024 {
                *v = Vec::new();
            }
        }
        clear_shrink(&mut self.heads);
        clear_shrink(&mut self.parents);
        clear_shrink(&mut self.blocks);
        clear_shrink(&mut self.new_heads);
    }

    /// The encoded event's bytes, copied into a shared 64 KiB chunk: the
    /// blocks of about 300 appends share one allocation (and one reference
    /// count) instead of two allocations each. A chunk is freed when the
    /// last block in it is dropped.
    fn block_bytes(&mut self) -> Bytes {
        const CHUNK: usize = 64 << 10;
        if self.chunk.capacity() - self.chunk.len() < self.encoded.len() {
            self.chunk = BytesMut::with_capacity(CHUNK.max(self.encoded.len()));
        }
        self.chunk.extend_from_slice(&self.encoded);
        self.chunk.split().freeze()
    }
}

impl<S: ?Sized + StreamStore> fmt::Debug for Replica<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replica")
            .field("stream", &crate::block::short_cid(&self.stream))
            .field("events", &self.dag.len())
            .field("heads", &self.dag.head_count())
            .field("pending", &self.pending.events.len())
            .finish()
    }
}

/// Log entries read per page when reopening.
const LOAD_PAGE: usize = 4096;

impl<S: ?Sized + StreamStore> Replica<S> {
    /// Opens the stream whose genesis is `genesis`, creating it in the store
    /// if it is not there yet.
    ///
    /// # Errors
    /// [`OpenError::Genesis`] or [`OpenError::NotGenesis`] for a bad block,
    /// [`OpenError::Store`] when the store fails.
    pub async fn create(store: Arc<S>, genesis: &Block, config: ReplicaConfig) -> Result<Self, OpenError> {
        genesis.verify().map_err(|e| OpenError::Genesis(e.into()))?;
        let header = Header::parse(genesis, &config.limits).map_err(OpenError::Genesis)?;
        if !header.parents.is_empty() {
            return Err(OpenError::NotGenesis { cid: *genesis.cid() });
        }
        if store.heads(genesis.cid()).await?.is_none() {
            store.commit(genesis.cid(), std::slice::from_ref(genesis), &[*genesis.cid()]).await?;
        }
        Self::open(store, genesis.cid(), config).await
    }

    /// Reopens a stream from its store: replays the stream's log into the
    /// index (reading each block's header; no block is hashed again) and
    /// continues exactly where it stopped.
    ///
    /// # Errors
    /// [`OpenError::UnknownStream`] if the store has no such stream,
    /// [`OpenError::Store`] (including [`StoreError::Corrupt`] when the log,
    /// the blocks and the heads disagree).
    pub async fn open(store: Arc<S>, stream: &Cid, config: ReplicaConfig) -> Result<Self, OpenError> {
        Self::open_inner(store, stream, config).instrument(debug_span!("open", stream = %stream)).await
    }

    async fn open_inner(store: Arc<S>, stream: &Cid, config: ReplicaConfig) -> Result<Self, OpenError> {
        let stored_heads = store.heads(stream).await?.ok_or(OpenError::UnknownStream { stream: *stream })?;
        let mut dag = Dag::try_new(*stream).map_err(|_| OpenError::UnknownStream { stream: *stream })?;
        let mut start = 0u64;
        let mut parents: Vec<Digest> = Vec::new();
        loop {
            let page = store.read_log_entries(stream, start, LOAD_PAGE).await?;
            if page.is_empty() {
                break;
            }
            start += page.len() as u64;
            for entry in page {
                if entry.parents.is_empty() {
                    continue; // the genesis
                }
                let corrupt =
                    || StoreError::Corrupt(format!("{}: the log of {stream} holds a non-event CID", entry.cid));
                let digest = digest_of(&entry.cid).ok_or_else(corrupt)?;
                parents.clear();
                for p in &entry.parents {
                    parents.push(digest_of(p).ok_or_else(corrupt)?);
                }
                dag.insert_digests(&digest, entry.height, &parents)
                    .map_err(|e| StoreError::Corrupt(format!("log of {stream} out of order: {e}")))?;
            }
        }
        let mut heads = stored_heads;
        heads.sort_unstable();
        if heads != dag.heads() {
            return Err(
                StoreError::Corrupt(format!("stored heads of {stream} differ from the heads of its log")).into()
            );
        }
        Ok(Replica {
            store,
            stream: *stream,
            dag,
            config,
            pending: PendingBuffer::default(),
            validators: Vec::new(),
            metrics: Metrics::default(),
            scratch: AppendScratch::default(),
        })
    }

    /// The stream's identity: its genesis CID.
    pub fn stream_id(&self) -> &Cid {
        &self.stream
    }

    /// The configuration.
    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The index: ancestry, comparison, order.
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// Adds a validator, run on every later event before acceptance.
    pub fn add_validator(&mut self, validator: impl Validator + 'static) {
        self.validators.push(Box::new(validator));
    }

    /// The current heads, ascending by CID bytes.
    pub fn heads(&self) -> Vec<Cid> {
        self.dag.heads()
    }

    /// The number of events in the DAG, the genesis included.
    pub fn len(&self) -> usize {
        self.dag.len()
    }

    /// Always false: the genesis is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether the event is in the DAG (pending events are not).
    pub fn contains(&self, cid: &Cid) -> bool {
        self.dag.contains(cid)
    }

    /// The block of an event in the DAG.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    pub async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        if !self.dag.contains(cid) {
            return Ok(None);
        }
        self.store.get(cid).await
    }

    /// The counters.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// The number of events waiting in the pending buffer, and their bytes.
    pub fn pending(&self) -> (usize, usize) {
        (self.pending.events.len(), self.pending.bytes)
    }

    /// Whether the event waits in the pending buffer for missing parents.
    pub(crate) fn is_pending(&self, cid: &Cid) -> bool {
        digest_of(cid).is_some_and(|d| self.pending.events.contains_key(&d))
    }

    /// The CIDs this replica needs to make progress: parents of pending
    /// events that are neither in the DAG nor pending themselves. Hand them
    /// to a fetcher. Ascending by CID bytes.
    pub fn missing(&self) -> Vec<Cid> {
        let mut out: Vec<Cid> = self
            .pending
            .waiting
            .keys()
            .filter(|d| !self.pending.events.contains_key(*d) && self.dag.find(d).is_none())
            .map(cid_from_digest)
            .collect();
        out.sort_unstable();
        out
    }

    /// The events in the total order: by height, then CID bytes.
    pub fn order(&self) -> impl Iterator<Item = Cid> + '_ {
        self.dag.order().map(|id| self.dag.cid(id))
    }

    /// What to read after `cursor`. When events arrived that sort before the
    /// last one the reader consumed, [`Delta::replay_from`] names the first
    /// position that moved, and the events are given from there.
    pub fn events_since(&self, cursor: &Cursor) -> Delta {
        let moved = cursor.last.and_then(|last| {
            self.dag.arrived_since(cursor.seen).map(|id| self.dag.key(id)).filter(|k| *k < last).min()
        });
        let (replay_from, start, events): (Option<usize>, usize, Vec<EventId>) = match moved {
            Some(key) => {
                let p = self.dag.position(&key);
                (Some(p), p, self.dag.order_from(&key).collect())
            }
            None => match cursor.last {
                None => (None, 0, self.dag.order().collect()),
                Some(last) => {
                    let mut it = self.dag.order_from(&last).peekable();
                    if it.peek().is_some_and(|id| self.dag.key(*id) == last) {
                        it.next();
                    }
                    (None, cursor.position, it.collect())
                }
            },
        };
        let last = events.last().map(|id| self.dag.key(*id)).or(cursor.last);
        let cursor = Cursor { seen: self.dag.len(), position: start + events.len(), last };
        Delta { replay_from, start, events: events.into_iter().map(|id| self.dag.cid(id)).collect(), cursor }
    }

    /// Appends a local event whose parents are the current heads (at most
    /// [`Limits::max_parents`] of them, lowest CIDs first; the rest stay heads
    /// and are folded by the next append). Returns its CID once the store
    /// has committed it.
    ///
    /// # Errors
    /// [`AppendError`]; the replica is unchanged.
    pub async fn append<P: Serialize>(&mut self, payload: &P) -> Result<Cid, AppendError> {
        let span = debug_span!("append");
        // With no subscriber listening the span is disabled: skip the wrapper,
        // which would move the whole append future once more on every call.
        let last = if span.is_disabled() {
            self.append_batch(std::iter::once(payload), None).await?
        } else {
            self.append_batch(std::iter::once(payload), None).instrument(span).await?
        };
        Ok(last.expect("one payload, one event"))
    }

    /// Appends several events in one store commit: the first takes the heads
    /// as parents, each next one the previous event.
    ///
    /// # Errors
    /// [`AppendError`]; the replica is unchanged.
    pub async fn append_many<P: Serialize>(
        &mut self,
        payloads: impl IntoIterator<Item = P>,
    ) -> Result<Vec<Cid>, AppendError> {
        let payloads: Vec<P> = payloads.into_iter().collect();
        let mut out = Vec::with_capacity(payloads.len());
        let span = debug_span!("append_many", events = payloads.len());
        self.append_batch(payloads.iter(), Some(&mut out)).instrument(span).await?;
        Ok(out)
    }

    /// Appends the events of `payloads` in one commit; pushes their CIDs to
    /// `out` and returns the last one.
    async fn append_batch<'p, P: Serialize + 'p>(
        &mut self,
        payloads: impl Iterator<Item = &'p P>,
        mut out: Option<&mut Vec<Cid>>,
    ) -> Result<Option<Cid>, AppendError> {
        // On an error the buffers are dropped with `s`; the next call starts afresh.
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        self.dag.head_ids_into(&mut s.heads);
        let take = s.heads.len().min(self.config.limits.max_parents);
        s.parents.extend(s.heads[..take].iter().map(|id| *self.dag.digest(*id)));
        let first_height = s.heads[..take].iter().map(|id| self.dag.height(*id)).max().unwrap_or(0) + 1;
        for (payload, height) in payloads.zip(first_height..) {
            let payload_start = encode_into(&mut s.encoded, height, &s.parents, payload, &self.config.limits)?;
            let block = Block::from_bytes(s.block_bytes());
            if !self.validators.is_empty() {
                let header =
                    Header { height, parents: s.parents.as_slice().into(), payload: payload_start..block.len() };
                self.validate(&block, &header).map_err(AppendError::Rejected)?;
            }
            // The next event's one parent is this one.
            s.parents.clear();
            s.parents.push(digest_of(block.cid()).expect("event CIDs"));
            s.blocks.push(block);
        }
        let Some(last) = s.blocks.last().map(|b| *b.cid()) else {
            self.scratch = s;
            return Ok(None);
        };
        s.new_heads.extend(s.heads[take..].iter().map(|id| self.dag.cid(*id)));
        s.new_heads.push(last);
        s.new_heads.sort_unstable();
        self.store.commit(&self.stream, &s.blocks, &s.new_heads).await?;
        // Each event is new and its parents are in the index (the heads taken,
        // then the event before it): no lookups needed.
        let mut prev: Option<EventId> = None;
        for (block, height) in s.blocks.iter().zip(first_height..) {
            let digest = digest_of(block.cid()).expect("event CIDs");
            let id = match prev {
                None => self.dag.push_local(&digest, height, &s.heads[..take]),
                Some(p) => self.dag.push_local(&digest, height, &[p]),
            };
            prev = Some(id);
            if let Some(out) = out.as_deref_mut() {
                out.push(*block.cid());
            }
        }
        self.metrics.appended += s.blocks.len() as u64;
        trace!(count = s.blocks.len(), "appended");
        if !self.pending.events.is_empty() {
            let appended: Vec<Cid> = s.blocks.iter().map(|b| *b.cid()).collect();
            self.release_after_local(&appended).await;
        }
        s.clear();
        self.scratch = s;
        Ok(Some(last))
    }

    /// A peer's event may wait on exactly a CID we just appended (the same
    /// payload on the same heads is the same event), or be that event: settle
    /// them as an ingest would. Found by the crdt properties.
    async fn release_after_local(&mut self, cids: &[Cid]) {
        let mut batch = Batch::default();
        for cid in cids {
            let digest = digest_of(cid).expect("event CIDs");
            self.pending.remove(&digest);
            self.release(digest, &mut batch);
        }
        if let Err(e) = self.commit_batch(batch).await {
            // The append itself is durable; the released events are dropped
            // (their parents are all known) and come back when re-sent.
            tracing::warn!(error = %e, "could not commit events released by a local append");
        }
    }

    /// Commits what an ingest (or a local append's release) accepted, then
    /// adds it to the index. On a store error nothing is in the index or the
    /// store, and the events go back to waiting where they still can.
    async fn commit_batch(&mut self, batch: Batch) -> Result<(), StoreError> {
        if batch.accepted.is_empty() {
            return Ok(());
        }
        let new_heads = self.heads_after(&batch);
        let (blocks, headers): (Vec<Block>, Vec<Header>) = batch.accepted.into_iter().unzip();
        if let Err(e) = self.store.commit(&self.stream, &blocks, &new_heads).await {
            for (block, header) in blocks.into_iter().zip(headers) {
                let missing: Vec<Digest> =
                    header.parents.iter().filter(|p| self.dag.find(p).is_none()).copied().collect();
                if !missing.is_empty() {
                    self.buffer(block, header, missing);
                }
            }
            return Err(e);
        }
        for (block, header) in blocks.iter().zip(&headers) {
            let digest = digest_of(block.cid()).expect("event CIDs");
            if self.dag.push_checked(&digest, header.height, &header.parents).is_none() {
                return Err(StoreError::Corrupt(format!(
                    "checked event {} has a parent not in the index",
                    block.cid()
                )));
            }
        }
        self.metrics.accepted += blocks.len() as u64;
        Ok(())
    }

    fn validate(&self, block: &Block, header: &Header) -> Result<(), Rejection> {
        let view = EventRef { block, header };
        for v in &self.validators {
            if let Err(reason) = v.validate(&view) {
                return Err(Rejection::Validator { cid: *block.cid(), validator: v.name().to_string(), reason });
            }
        }
        Ok(())
    }

    /// Takes one block from anywhere. See [`Replica::ingest_many`].
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; the replica is then as the store holds it.
    pub async fn ingest(&mut self, block: Block) -> Result<Ingest, StoreError> {
        let mut report = self.ingest_many(vec![block]).await?;
        Ok(report.outcomes.pop().expect("one outcome per block"))
    }

    /// Takes blocks from anywhere, in any order, and commits everything they
    /// make acceptable in one store commit. A block whose parents are all
    /// known joins the DAG, and with it every pending descendant it completes
    /// (in one iterative pass); one with missing parents waits in the pending
    /// buffer; one that breaks a rule is rejected and changes nothing.
    ///
    /// Blocks should come from [`Block::new`] or [`Block::from_bytes`] (which
    /// check the hash); the CID shape and the canonical encoding are checked here.
    ///
    /// # Errors
    /// [`StoreError`] when the commit fails: nothing of this call is in the
    /// DAG or the store; the blocks that were accepted go back to waiting
    /// where they can (those whose parents are all known are dropped; ingest
    /// them again).
    pub async fn ingest_many(&mut self, blocks: Vec<Block>) -> Result<IngestReport, StoreError> {
        let span = debug_span!("ingest", blocks = blocks.len());
        self.ingest_many_inner(blocks).instrument(span).await
    }

    async fn ingest_many_inner(&mut self, blocks: Vec<Block>) -> Result<IngestReport, StoreError> {
        let mut batch = Batch::default();
        batch.accepted.reserve(blocks.len());
        batch.heights.reserve(blocks.len());
        let mut early: Vec<Option<Ingest>> = Vec::with_capacity(blocks.len());
        let mut digests: Vec<Option<Digest>> = Vec::with_capacity(blocks.len());
        for block in blocks {
            let (outcome, digest) = self.classify(block, &mut batch);
            early.push(outcome);
            digests.push(digest);
        }
        let accepted: Vec<Cid> = batch.accepted.iter().map(|(b, _)| *b.cid()).collect();
        let rejected = std::mem::take(&mut batch.rejected);
        self.commit_batch(batch).await?;
        let batch = Batch { rejected, ..Batch::default() };
        let outcomes = early
            .into_iter()
            .zip(digests)
            .map(|(outcome, digest)| match (outcome, digest) {
                (Some(o), _) => o,
                (None, Some(d)) => {
                    // Undecided blocks were not in the index before: in it now means accepted.
                    if self.dag.find(&d).is_some() {
                        Ingest::Accepted
                    } else if let Some(p) = self.pending.events.get(&d) {
                        Ingest::Pending {
                            missing: p
                                .header
                                .parents
                                .iter()
                                .filter(|q| self.dag.find(q).is_none())
                                .map(cid_from_digest)
                                .collect(),
                        }
                    } else if let Some(r) = batch.rejected.get(&d) {
                        Ingest::Rejected(r.clone())
                    } else {
                        // Buffered, then evicted within this call.
                        Ingest::Pending { missing: Vec::new() }
                    }
                }
                (None, None) => unreachable!("outcome or digest"),
            })
            .collect();
        Ok(IngestReport { outcomes, accepted })
    }

    /// Decides what to do with one block. Returns a final outcome, or `None`
    /// and the digest when the outcome depends on the rest of the batch.
    fn classify(&mut self, block: Block, batch: &mut Batch) -> (Option<Ingest>, Option<Digest>) {
        let reject = |me: &mut Self, r: Rejection| {
            *me.metrics.rejected.entry(r.reason()).or_default() += 1;
            (Some(Ingest::Rejected(r)), None)
        };
        let Some(digest) = digest_of(block.cid()) else {
            let e = crate::block::check_cid(block.cid()).expect_err("not an event CID");
            return reject(self, Rejection::Decode(e.into()));
        };
        if self.dag.find(&digest).is_some() || batch.heights.contains_key(&digest) {
            self.metrics.duplicate += 1;
            return (Some(Ingest::Duplicate), None);
        }
        if self.pending.events.contains_key(&digest) {
            self.metrics.duplicate += 1;
            return (None, Some(digest));
        }
        let header = match Header::parse(&block, &self.config.limits) {
            Ok(h) => h,
            Err(e) => return reject(self, Rejection::Decode(e)),
        };
        if header.parents.is_empty() {
            return reject(
                self,
                Rejection::Insert(InsertError::ForeignGenesis { cid: *block.cid(), genesis: self.stream }),
            );
        }
        if !self.validators.is_empty()
            && let Err(r) = self.validate(&block, &header)
        {
            return reject(self, r);
        }
        // One lookup per parent: whether it is known, and its height.
        let mut missing: Vec<Digest> = Vec::new();
        let mut max = 0;
        for p in &header.parents {
            match self.dag.find(p).map(|id| self.dag.height_raw(id)).or_else(|| batch.heights.get(p).copied()) {
                Some(h) => max = max.max(h),
                None => missing.push(*p),
            }
        }
        if !missing.is_empty() {
            self.metrics.pending += 1;
            self.buffer(block, header, missing);
            return (None, Some(digest));
        }
        if header.height != max + 1 {
            let r = Rejection::Insert(InsertError::WrongHeight {
                cid: *block.cid(),
                expected: max + 1,
                found: header.height,
            });
            return reject(self, r);
        }
        batch.accept(digest, block, header);
        self.release(digest, batch);
        (Some(Ingest::Accepted), None)
    }

    fn check_height(&self, block: &Block, header: &Header, batch: &Batch) -> Result<(), Rejection> {
        let max = header
            .parents
            .iter()
            .map(|p| {
                self.dag
                    .find(p)
                    .map(|id| self.dag.height_raw(id))
                    .or_else(|| batch.heights.get(p).copied())
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        if header.height != max + 1 {
            return Err(Rejection::Insert(InsertError::WrongHeight {
                cid: *block.cid(),
                expected: max + 1,
                found: header.height,
            }));
        }
        Ok(())
    }

    fn buffer(&mut self, block: Block, header: Header, missing: Vec<Digest>) {
        let evicted = self.pending.insert(block, header, missing, &self.config);
        self.metrics.evicted += evicted as u64;
    }

    /// Accepts, iteratively, every pending event that `digest` completes.
    fn release(&mut self, digest: Digest, batch: &mut Batch) {
        if self.pending.waiting.is_empty() {
            return;
        }
        let mut work = vec![digest];
        while let Some(parent) = work.pop() {
            for child in self.pending.take_ready(&parent) {
                let (block, header) = child;
                let cid = *block.cid();
                let d = digest_of(&cid).expect("event CIDs");
                match self.check_height(&block, &header, batch) {
                    Ok(()) => {
                        batch.accept(d, block, header);
                        work.push(d);
                    }
                    Err(r) => {
                        *self.metrics.rejected.entry(r.reason()).or_default() += 1;
                        batch.rejected.insert(d, r);
                        self.reject_descendants(d, batch);
                    }
                }
            }
        }
    }

    /// Drops every pending event that waits, directly or not, on a rejected one.
    fn reject_descendants(&mut self, rejected: Digest, batch: &mut Batch) {
        let mut work = vec![rejected];
        while let Some(d) = work.pop() {
            for (child, _) in self.pending.remove_waiters(&d) {
                let r =
                    Rejection::AncestorRejected { cid: cid_from_digest(&child), ancestor: cid_from_digest(&rejected) };
                *self.metrics.rejected.entry(r.reason()).or_default() += 1;
                batch.rejected.insert(child, r);
                work.push(child);
            }
        }
    }

    fn heads_after(&self, batch: &Batch) -> Vec<Cid> {
        let mut referenced: HashSet<&Digest, KeyedState> = HashSet::default();
        referenced.reserve(batch.accepted.len());
        referenced.extend(batch.accepted.iter().flat_map(|(_, h)| h.parents.iter()));
        let mut heads: Vec<Cid> = self
            .dag
            .head_ids()
            .into_iter()
            .filter(|id| !referenced.contains(self.dag.digest(*id)))
            .map(|id| self.dag.cid(id))
            .chain(
                batch
                    .accepted
                    .iter()
                    .map(|(b, _)| *b.cid())
                    .filter(|c| !referenced.contains(&digest_of(c).expect("event CIDs"))),
            )
            .collect();
        heads.sort_unstable();
        heads
    }
}

/// What one ingest call has decided so far.
#[derive(Default)]
struct Batch {
    accepted: Vec<(Block, Header)>,
    heights: HashMap<Digest, u64, KeyedState>,
    rejected: HashMap<Digest, Rejection, KeyedState>,
}

impl Batch {
    fn accept(&mut self, digest: Digest, block: Block, header: Header) {
        self.heights.insert(digest, header.height);
        self.accepted.push((block, header));
    }
}

/// Events waiting for parents, bounded by count and bytes; the oldest go first.
#[derive(Default)]
struct PendingBuffer {
    events: HashMap<Digest, PendingEvent, KeyedState>,
    /// Missing parent → the events waiting on it (with their arrival number).
    waiting: HashMap<Digest, Vec<(Digest, u64)>, KeyedState>,
    /// Arrival order, for eviction; entries of events gone already are skipped.
    queue: VecDeque<(u64, Digest)>,
    bytes: usize,
    next_seq: u64,
}

struct PendingEvent {
    block: Block,
    header: Header,
    missing: usize,
    seq: u64,
}

impl PendingBuffer {
    /// Buffers an event; returns how many events were evicted to make room.
    fn insert(&mut self, block: Block, header: Header, missing: Vec<Digest>, config: &ReplicaConfig) -> usize {
        let digest = digest_of(block.cid()).expect("event CIDs");
        let seq = self.next_seq;
        self.next_seq += 1;
        for m in &missing {
            self.waiting.entry(*m).or_default().push((digest, seq));
        }
        self.bytes += block.len();
        self.queue.push_back((seq, digest));
        self.events.insert(digest, PendingEvent { block, header, missing: missing.len(), seq });
        let mut evicted = 0;
        while self.events.len() > config.max_pending_events || self.bytes > config.max_pending_bytes {
            let Some((seq, d)) = self.queue.pop_front() else { break };
            if self.events.get(&d).is_some_and(|e| e.seq == seq) {
                self.remove(&d);
                evicted += 1;
            }
        }
        // Keep the queue from filling with entries of events gone already.
        if self.queue.len() > 2 * self.events.len() + 64 {
            let events = &self.events;
            self.queue.retain(|(s, d)| events.get(d).is_some_and(|e| e.seq == *s));
        }
        evicted
    }

    /// Removes an event and its entries in the waiting lists.
    fn remove(&mut self, digest: &Digest) -> Option<PendingEvent> {
        let event = self.events.remove(digest)?;
        self.bytes -= event.block.len();
        for p in &event.header.parents {
            if let Some(list) = self.waiting.get_mut(p) {
                list.retain(|(d, s)| !(d == digest && *s == event.seq));
                if list.is_empty() {
                    self.waiting.remove(p);
                }
            }
        }
        Some(event)
    }

    /// `parent` joined the DAG: returns the waiting events it completed.
    fn take_ready(&mut self, parent: &Digest) -> Vec<(Block, Header)> {
        let Some(waiters) = self.waiting.remove(parent) else { return Vec::new() };
        let mut ready = Vec::new();
        for (child, seq) in waiters {
            let Some(e) = self.events.get_mut(&child) else { continue };
            if e.seq != seq {
                continue;
            }
            e.missing -= 1;
            if e.missing == 0 {
                let e = self.remove(&child).expect("present");
                ready.push((e.block, e.header));
            }
        }
        ready
    }

    /// Removes and returns the events waiting on `parent`.
    fn remove_waiters(&mut self, parent: &Digest) -> Vec<(Digest, u64)> {
        let Some(waiters) = self.waiting.remove(parent) else { return Vec::new() };
        waiters
            .into_iter()
            .filter(|(d, s)| self.events.get(d).is_some_and(|e| e.seq == *s) && self.remove(d).is_some())
            .collect()
    }
}
