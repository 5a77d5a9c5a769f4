//! The replica: the state machine of one stream on one node.
//!
//! It appends local events whose parents are all current heads, takes blocks
//! from anywhere in any order, holds back those whose parents it lacks, and
//! keeps its [`Dag`] index exactly in step with its [`StreamStore`]: the store
//! is written first, in one atomic commit per call, and only then the index.
//! A storage error is returned and leaves the replica as the store holds it.

//!
//! | item | what it is |
//! | --- | --- |
//! | [`Replica`] | the state machine: [`create`](Replica::create), [`open`](Replica::open), [`append`](Replica::append), [`ingest_many`](Replica::ingest_many), [`events_since`](Replica::events_since) |
//! | [`ReplicaConfig`] | limits and the pending buffer's caps |
//! | [`Ingest`], [`IngestReport`], [`Rejection`], [`RejectReason`] | what happened to a received block |
//! | [`OpenError`], [`AppendError`] | what can go wrong opening and appending |
//! | [`Validator`], [`FnValidator`], [`EventRef`] | application checks on every event |
//! | [`Cursor`], [`Delta`] | reading the total order incrementally |
//! | [`Metrics`], [`PendingStats`] | counters as plain values |

use std::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ipld_core::cid::Cid;
use serde::Serialize;
use tracing::{Instrument, debug_span, trace};

use crate::block::{Block, Digest, cid_from_digest, digest_of};
use crate::dag::{Dag, EventId};
#[cfg(doc)]
use crate::event::Limits;
use crate::event::{Header, encode_into};
use crate::store::{StoreError, StreamStore};

mod config;
mod cursor;
mod ingest;
mod outcome;
mod pending;
mod validator;

pub use config::ReplicaConfig;
pub use cursor::{Cursor, Delta};
pub use outcome::{AppendError, Ingest, IngestReport, Metrics, OpenError, PendingStats, RejectReason, Rejection};
pub use validator::{EventRef, FnValidator, Validator};

use ingest::Batch;
use pending::PendingBuffer;

/// One stream's replica over a [`StreamStore`].
///
/// ```
/// use std::sync::Arc;
/// use merkle_clock::{Event, Ingest, MemoryBlockstore, replica::{ReplicaConfig, Replica}};
/// # futures::executor::block_on(async {
/// let genesis = Event::genesis("todo list").encode()?;
/// let mut alice = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
/// let mut bob = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
/// let a1 = alice.append(&"buy milk").await?;
/// let a2 = alice.append(&"walk the dog").await?;
/// // Bob receives them out of order: a2 waits for its parent, a1 releases it.
/// let b2 = alice.get(&a2).await?.expect("present");
/// let b1 = alice.get(&a1).await?.expect("present");
/// assert_eq!(bob.ingest(b2).await?, Ingest::Pending { missing: vec![a1] });
/// assert_eq!(bob.missing(), vec![a1]);
/// assert_eq!(bob.ingest(b1).await?, Ingest::Accepted);
/// assert_eq!(bob.heads(), alice.heads());
/// # Ok::<(), merkle_clock::Error>(())
/// # })?;
/// # Ok::<(), merkle_clock::Error>(())
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
    /// Creates a new stream whose genesis is `genesis` in `store`.
    ///
    /// # Errors
    /// [`OpenError::StreamExists`] when the store already holds the stream
    /// ([`Replica::open`] or [`Replica::open_or_create`] it instead),
    /// [`OpenError::Genesis`] or [`OpenError::NotGenesis`] for a bad block,
    /// [`OpenError::Store`] when the store fails.
    pub async fn create(store: Arc<S>, genesis: &Block, config: ReplicaConfig) -> Result<Self, OpenError> {
        Self::check_genesis(genesis, &config)?;
        if store.heads(genesis.cid()).await?.is_some() {
            return Err(OpenError::StreamExists { stream: *genesis.cid() });
        }
        store.commit(genesis.cid(), std::slice::from_ref(genesis), &[*genesis.cid()]).await?;
        Self::open(store, genesis.cid(), config).await
    }

    /// Opens the stream whose genesis is `genesis`, creating it in the store
    /// if it is not there yet: for a node that joins a stream it may already
    /// hold.
    ///
    /// # Errors
    /// As [`Replica::create`], except that an existing stream is opened.
    pub async fn open_or_create(store: Arc<S>, genesis: &Block, config: ReplicaConfig) -> Result<Self, OpenError> {
        Self::check_genesis(genesis, &config)?;
        if store.heads(genesis.cid()).await?.is_none() {
            store.commit(genesis.cid(), std::slice::from_ref(genesis), &[*genesis.cid()]).await?;
        }
        Self::open(store, genesis.cid(), config).await
    }

    /// The genesis must be a canonical, parentless event.
    fn check_genesis(genesis: &Block, config: &ReplicaConfig) -> Result<(), OpenError> {
        genesis.verify().map_err(|e| OpenError::Genesis(e.into()))?;
        let header = Header::parse(genesis, &config.limits).map_err(OpenError::Genesis)?;
        if !header.parents.is_empty() {
            return Err(OpenError::NotGenesis { cid: *genesis.cid() });
        }
        Ok(())
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

    /// What waits in the pending buffer: how many events, and the memory
    /// counted for them against [`ReplicaConfig::max_pending_bytes`].
    pub fn pending(&self) -> PendingStats {
        PendingStats { events: self.pending.events.len(), bytes: self.pending.bytes }
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
}
