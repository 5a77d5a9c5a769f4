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
//! | [`PrunePolicy`], [`PruneReport`], [`PruneError`] | dropping old events' bytes ([`prune`](Replica::prune)) while the clock stays exact |

use std::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ipld_core::cid::Cid;
use serde::Serialize;
use tracing::{Instrument, debug_span, trace};

use crate::auth::{self, AuthorKey, MemberIndex, MemberOp, Members, Policy, Role, Signer, StateRef};
use crate::block::{Block, Digest, cid_from_digest, digest_of};
use crate::dag::{Dag, EventId};
use crate::error::EncodeError;
#[cfg(doc)]
use crate::event::Limits;
use crate::event::{EncodedPayload, Header, WritePayload, encode_into};
use crate::store::{StoreError, StreamStore, commit};
use ipld_core::ipld::Ipld;

mod config;
mod cursor;
mod ingest;
mod outcome;
mod pending;
mod prune;
mod shallow;
mod validator;

pub use config::ReplicaConfig;
pub use cursor::{Cursor, Delta};
pub use outcome::{AppendError, Ingest, IngestReport, Metrics, OpenError, PendingStats, RejectReason, Rejection};
pub use prune::{PruneError, PrunePolicy, PruneReport};
pub use shallow::{Bootstrap, LateReport, ShallowError};
pub use validator::{EventRef, FnValidator, Validator};

use ingest::Batch;
use pending::PendingBuffer;
use prune::PrunedSet;

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
    /// Taken by an append while it runs (a pointer swap), put back after.
    scratch: Option<Box<AppendScratch>>,
    /// The membership of every event, on a stream whose genesis names admins.
    members: Option<MemberIndex>,
    /// The key local appends are signed with.
    signer: Option<Signer>,
    /// Checks received events' signatures.
    verifier: auth::Verifier,
    /// The events whose bytes are pruned.
    pruned: PrunedSet,
    /// On a replica with anchors (shallow): missing parents looked up in a
    /// checkpoint's skeleton and not found there, which peers may be asked
    /// for ([`Replica::admit_late`]).
    outside_cut: std::collections::HashSet<Digest>,
    /// On a replica with anchors: events whose parents are all anchors or
    /// the genesis, waiting for [`Replica::admit_late`] to tell whether
    /// they are below the checkpoint's cut.
    suspects: Vec<(Block, Header)>,
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
    /// A signed event's signing input.
    signing: Vec<u8>,
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

impl<S: ?Sized + StreamStore> Replica<S> {
    /// A copy of the replica over `store`, a copy of its store: the model
    /// checker forks a state with it. Caches and scratch buffers start
    /// empty (the chunk for appended blocks' bytes small). `None` for a
    /// replica with validators or a membership index, which are not copied.
    #[cfg(any(test, feature = "testing"))]
    pub fn fork(&self, store: Arc<S>) -> Option<Self> {
        if !self.validators.is_empty() || self.members.is_some() {
            return None;
        }
        Some(Replica {
            store,
            stream: self.stream,
            dag: self.dag.clone(),
            config: self.config,
            pending: self.pending.clone(),
            validators: Vec::new(),
            metrics: self.metrics.clone(),
            // A fork appends a few events: a small chunk for their bytes
            // (a 64 KiB one per fork is most of a model checker's memory).
            scratch: Some(Box::new(AppendScratch {
                chunk: BytesMut::with_capacity(1 << 10),
                ..AppendScratch::default()
            })),
            members: None,
            signer: self.signer.clone(),
            verifier: auth::Verifier::default(),
            pruned: self.pruned.clone(),
            outside_cut: self.outside_cut.clone(),
            suspects: self.suspects.clone(),
        })
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

    pub(super) async fn open_inner(store: Arc<S>, stream: &Cid, config: ReplicaConfig) -> Result<Self, OpenError> {
        let stored_heads = store.heads(stream).await?.ok_or(OpenError::UnknownStream { stream: *stream })?;
        let mut dag = Dag::try_new(*stream).map_err(|_| OpenError::UnknownStream { stream: *stream })?;
        let mut members = Self::load_policy(&store, stream).await?;
        // A shallow replica's anchors' membership (`Replica::bootstrap`).
        let anchor_ops = match members {
            Some(_) => shallow::load_record(store.as_ref(), stream).await?,
            None => None,
        };
        let mut pruned = PrunedSet::default();
        let mut start = 0u64;
        let mut parents: Vec<Digest> = Vec::new();
        loop {
            let page = store.read_log_entries(stream, start, LOAD_PAGE).await?;
            if page.is_empty() {
                break;
            }
            let page_start = start;
            start += page.len() as u64;
            let headers = match members {
                Some(_) => Self::load_headers(&store, &page).await?,
                None => Vec::new(),
            };
            for (i, entry) in page.into_iter().enumerate() {
                if entry.parents.is_empty() && entry.cid == *stream {
                    continue; // the genesis
                }
                let corrupt =
                    || StoreError::Corrupt(format!("{}: the log of {stream} holds a non-event CID", entry.cid));
                let digest = digest_of(&entry.cid).ok_or_else(corrupt)?;
                parents.clear();
                for p in &entry.parents {
                    parents.push(digest_of(p).ok_or_else(corrupt)?);
                }
                // A skeleton-only entry whose parents the log does not hold
                // is an anchor: below the checkpoint a shallow replica
                // started from (`Replica::bootstrap`).
                // (`admit_late` logs anchors without parents, so they replay
                // as anchors even when their parents are held.)
                let anchor = entry.pruned && (parents.is_empty() || parents.iter().any(|p| dag.find(p).is_none()));
                let inserted = if anchor {
                    dag.insert_anchor(&entry.cid, entry.height)
                } else {
                    dag.insert_digests(&digest, entry.height, &parents)
                }
                .map_err(|e| StoreError::Corrupt(format!("log of {stream} out of order: {e}")))?;
                let id = inserted.id();
                // Pruning names events by log position: it must be the id.
                if id.index() as u64 != page_start + i as u64 {
                    return Err(StoreError::Corrupt(format!(
                        "{}: at position {} of the log of {stream}, index {}",
                        entry.cid,
                        page_start + i as u64,
                        id.index()
                    ))
                    .into());
                }
                if entry.pruned {
                    pruned.insert(id);
                    if let Some(index) = members.as_mut() {
                        // Never a membership event (those are not pruned): its
                        // state is its parents'; its author is not known. An
                        // anchor's is what the stream's record says (the
                        // genesis's when it names none).
                        let past = match (anchor, anchor_ops.as_ref().and_then(|a| a.get(&entry.cid))) {
                            (true, Some(ops)) => index.state_of_ops(ops),
                            (true, None) => index.state(EventId::GENESIS).clone(),
                            (false, _) => index.merge_ids(dag.parents(id)),
                        };
                        index.push_unattributed(id, past);
                    }
                    continue;
                }
                if let (Some(index), Some(Some(header))) = (members.as_mut(), headers.get(i)) {
                    let fields = header.auth.as_deref();
                    let author = fields.and_then(|a| a.author).ok_or_else(|| {
                        StoreError::Corrupt(format!("{}: an unsigned event in a signed stream", entry.cid))
                    })?;
                    let past = index.merge_ids(dag.parents(id));
                    let state = match fields.and_then(|a| a.member) {
                        Some(op) => index.with_op(&past, entry.cid, op),
                        None => past,
                    };
                    index.push(id, state, author);
                }
            }
        }
        if members.is_some() && dag.has_anchors() && anchor_ops.is_none() {
            return Err(OpenError::ShallowSigned { stream: *stream });
        }
        let mut heads = stored_heads;
        heads.sort_unstable();
        // Anchors below a checkpoint's cut have children the log does not
        // hold: they are heads in the index only, never in the store.
        let covered: Vec<EventId> = dag.anchors().filter(|id| heads.binary_search(&dag.cid(*id)).is_err()).collect();
        for id in covered {
            dag.cover(id);
        }
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
            scratch: None,
            members,
            signer: None,
            verifier: auth::Verifier::default(),
            pruned,
            outside_cut: Default::default(),
            suspects: Vec::new(),
        })
    }

    /// The membership index a stream's genesis calls for: `None` when its
    /// policy is open.
    async fn load_policy(store: &Arc<S>, stream: &Cid) -> Result<Option<MemberIndex>, OpenError> {
        let genesis = store
            .get(stream)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("the store holds no genesis block for {stream}")))?;
        let policy = auth::policy_of(&genesis).map_err(|e| StoreError::Corrupt(format!("stored genesis: {e}")))?;
        Ok(match policy {
            Policy::Open => None,
            Policy::Admins(admins) => Some(MemberIndex::new(admins)),
        })
    }

    /// The headers of a page of log entries (read from the trusted store);
    /// `None` for a pruned entry.
    async fn load_headers(
        store: &Arc<S>,
        page: &[crate::store::LoggedEvent],
    ) -> Result<Vec<Option<Header>>, StoreError> {
        let cids: Vec<Cid> = page.iter().filter(|e| !e.pruned).map(|e| e.cid).collect();
        let mut blocks = store.get_many(&cids).await?.into_iter();
        page.iter()
            .map(|e| {
                if e.pruned {
                    return Ok(None);
                }
                let cid = &e.cid;
                let block = blocks
                    .next()
                    .flatten()
                    .ok_or_else(|| StoreError::Corrupt(format!("{cid}: in the log, not in the store")))?;
                Header::parse(&block, &crate::event::Limits::TRUSTED)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt(format!("{cid}: stored block does not decode: {e}")))
            })
            .collect()
    }

    /// The genesis's policy.
    pub fn policy(&self) -> Policy {
        match &self.members {
            None => Policy::Open,
            Some(index) => Policy::Admins(index.genesis_admins().to_vec()),
        }
    }

    /// Sets the key that signs local appends, grants and revocations (`None`:
    /// unsigned appends, which only an open stream takes).
    pub fn set_signer(&mut self, signer: Option<Signer>) {
        self.signer = signer;
    }

    /// The key that signs local appends, if any.
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_ref()
    }

    /// The membership at the current heads (the union of their pasts):
    /// `None` on an open stream.
    pub fn members(&self) -> Option<Members> {
        let index = self.members.as_ref()?;
        let heads = self.dag.head_ids();
        let states: Vec<StateRef> = heads.iter().map(|id| index.state(*id).clone()).collect();
        Some(Members::of(&index.peek_union(&states)))
    }

    /// The membership an event's causal past establishes, the event itself
    /// included: `None` on an open stream or for an event not in the DAG.
    pub fn members_at(&self, cid: &Cid) -> Option<Members> {
        let index = self.members.as_ref()?;
        let id = self.dag.id(cid)?;
        Some(Members::of(index.state(id)))
    }

    /// The events a strict reading leaves out: on a stream with admins, those
    /// by an author revoked at the current heads that are not in the causal
    /// past of a revocation of that author (written concurrently with it:
    /// valid, since their past did not know, but an application may prefer
    /// not to show them). In the total order. Walks every event (an O(n)
    /// reading, not a per-event cost); empty on an open stream.
    pub fn written_after_revocation(&self) -> Vec<Cid> {
        let Some(index) = self.members.as_ref() else { return Vec::new() };
        let heads: Vec<StateRef> = self.dag.head_ids().iter().map(|id| index.state(*id).clone()).collect();
        let at_heads = index.peek_union(&heads);
        if at_heads.revoked.is_empty() {
            return Vec::new();
        }
        let revocations = index.revocations(&at_heads);
        self.dag
            .order()
            .filter(|id| {
                // A pruned event's author is not known after a reopen: it is
                // never listed (its payload is gone anyway).
                !self.pruned.contains(*id)
                    && index.author(*id).and_then(|a| revocations.get(&a)).is_some_and(|revs| {
                        let cid = self.dag.cid(*id);
                        !revs.iter().any(|r| self.dag.is_ancestor(&cid, r).unwrap_or(false))
                    })
            })
            .map(|id| self.dag.cid(id))
            .collect()
    }

    /// On a stream with admins: makes `key` a member with `role`, in a
    /// membership event signed by this replica's signer (an admin).
    ///
    /// # Errors
    /// [`AppendError::NeedsSigner`] without a signer; [`AppendError::Rejected`]
    /// with [`Rejection::Auth`] when replicas would refuse the event (the
    /// signer is no admin here, the key was revoked, the stream is open).
    pub async fn grant(&mut self, key: AuthorKey, role: Role) -> Result<Cid, AppendError> {
        self.append_member(MemberOp::Grant { key, role }).await
    }

    /// On a stream with admins: revokes `key` for good, in a membership event
    /// signed by this replica's signer (an admin). Events by `key` that do
    /// not descend from the revocation stay valid (see DESIGN.md).
    ///
    /// # Errors
    /// As [`Replica::grant`]; also when `key` is the last admin.
    pub async fn revoke(&mut self, key: AuthorKey) -> Result<Cid, AppendError> {
        self.append_member(MemberOp::Revoke { key }).await
    }

    async fn append_member(&mut self, op: MemberOp) -> Result<Cid, AppendError> {
        let last = self.append_batch(std::iter::once(&Ipld::Null), Some(op), None).await?;
        Ok(last.expect("one event"))
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

    /// The membership of every event, on a stream with admins.
    pub(crate) fn member_index(&self) -> Option<&MemberIndex> {
        self.members.as_ref()
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

    /// The block of an event in the DAG (`None` for an event not in it).
    ///
    /// # Errors
    /// [`StoreError::Pruned`] for an event whose bytes were pruned
    /// ([`Replica::prune`]); [`StoreError`] when the store fails.
    pub async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        let Some(id) = self.dag.id(cid) else { return Ok(None) };
        if self.pruned.contains(id) {
            return Err(StoreError::Pruned { cid: *cid });
        }
        self.store.get(cid).await
    }

    /// The counters.
    pub fn metrics(&self) -> Metrics {
        Metrics { pruned: self.pruned.len() as u64, ..self.metrics.clone() }
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
    /// to a fetcher. Ascending by CID bytes. A shallow replica (one with
    /// anchors) lists only those [`Replica::admit_late`] found are not below
    /// its checkpoint's cut: nobody need hold the bytes of the others.
    pub fn missing(&self) -> Vec<Cid> {
        let mut out: Vec<Cid> = self
            .pending
            .waiting
            .keys()
            .filter(|d| !self.pending.events.contains_key(*d) && self.dag.find(d).is_none() && self.may_want(d))
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
            self.append_batch(std::iter::once(payload), None, None).await?
        } else {
            self.append_batch(std::iter::once(payload), None, None).instrument(span).await?
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
        self.append_batch(payloads.iter(), None, Some(&mut out)).instrument(span).await?;
        Ok(out)
    }

    /// [`Replica::append`] of a payload given as its DAG-CBOR bytes (one
    /// canonical item, as `serde_ipld_dagcbor` or any canonical DAG-CBOR
    /// encoder writes it): the bytes go into the event as they are, with no
    /// decode and re-encode, and make the same block as `append` of the
    /// decoded value. For callers that encode payloads themselves (the JS
    /// package).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use merkle_clock::{Event, MemoryBlockstore, Replica, ReplicaConfig};
    /// # futures::executor::block_on(async {
    /// # let genesis = Event::genesis("notes").encode()?;
    /// let mut r = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
    /// let bytes = serde_ipld_dagcbor::to_vec(&"buy milk").expect("a string encodes");
    /// let cid = r.append_encoded(&bytes).await?;
    /// assert_eq!(r.get(&cid).await?.expect("held").decode::<String>()?.payload(), "buy milk");
    /// // Not canonical DAG-CBOR (a 16-bit float): refused, not rewritten.
    /// assert!(r.append_encoded(&[0xf9, 0x3c, 0x00]).await.is_err());
    /// # Ok::<(), merkle_clock::Error>(())
    /// # })?;
    /// # Ok::<(), merkle_clock::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Replica::append`]; [`AppendError::Encode`] when the bytes are not
    /// exactly one canonical DAG-CBOR item within the limits.
    pub async fn append_encoded(&mut self, payload: &[u8]) -> Result<Cid, AppendError> {
        let last = self.append_batch(std::iter::once(&EncodedPayload(payload)), None, None).await?;
        Ok(last.expect("one payload, one event"))
    }

    /// [`Replica::append_many`] of payloads given as their DAG-CBOR bytes
    /// (each as [`Replica::append_encoded`] takes it), in one store commit.
    ///
    /// # Errors
    /// As [`Replica::append_encoded`]; the replica is unchanged.
    pub async fn append_many_encoded<'a>(
        &mut self,
        payloads: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<Cid>, AppendError> {
        let payloads: Vec<EncodedPayload<'_>> = payloads.into_iter().map(EncodedPayload).collect();
        let mut out = Vec::with_capacity(payloads.len());
        self.append_batch(payloads.iter(), None, Some(&mut out)).await?;
        Ok(out)
    }

    /// Appends the events of `payloads` in one commit; pushes their CIDs to
    /// `out` and returns the last one. `payloads` are values to serialize
    /// or [`EncodedPayload`] bytes (the `append_encoded` path).
    async fn append_batch<'p, P: WritePayload + ?Sized + 'p>(
        &mut self,
        payloads: impl Iterator<Item = &'p P>,
        member: Option<MemberOp>,
        mut out: Option<&mut Vec<Cid>>,
    ) -> Result<Option<Cid>, AppendError> {
        if (self.members.is_some() || member.is_some()) && self.signer.is_none() {
            return Err(AppendError::NeedsSigner { stream: self.stream });
        }
        // Put back cleared; on an error the buffers are dropped with `s` and
        // the next call starts afresh.
        let mut s = self.scratch.take().unwrap_or_default();
        self.dag.head_ids_into(&mut s.heads);
        let take = s.heads.len().min(self.config.limits.max_parents);
        s.parents.extend(s.heads[..take].iter().map(|id| *self.dag.digest(*id)));
        let first_height = s.heads[..take].iter().map(|id| self.dag.height(*id)).max().unwrap_or(0) + 1;
        // The membership of the new events' past: the heads taken. A batch's
        // events after the first have the same (they change nothing).
        let mut state: Option<StateRef> = self.members.as_mut().map(|index| {
            let states: Vec<StateRef> = s.heads[..take].iter().map(|id| index.state(*id).clone()).collect();
            index.union_of(&states)
        });
        let mut states: Vec<StateRef> = Vec::new();
        for (payload, height) in payloads.zip(first_height..) {
            let payload_start = match &self.signer {
                None => encode_into(&mut s.encoded, height, &s.parents, payload, &self.config.limits)?,
                Some(signer) => auth::encode_signed_into(
                    &mut s.encoded,
                    &mut s.signing,
                    &self.stream,
                    height,
                    &s.parents,
                    member.as_ref(),
                    payload,
                    &self.config.limits,
                    signer,
                )?,
            };
            let block = Block::from_bytes(s.block_bytes());
            let author = self.signer.as_ref().map(Signer::public);
            auth::authorize(state.as_deref(), *block.cid(), author, member.as_ref())
                .map_err(|e| AppendError::Rejected(Rejection::Auth(e)))?;
            if let (Some(index), Some(op), Some(past)) = (self.members.as_mut(), member, state.as_ref()) {
                state = Some(index.with_op(past, *block.cid(), op));
            }
            if let Some(state) = &state {
                states.push(state.clone());
            }
            if !self.validators.is_empty() {
                let header = match self.signer {
                    None => Header {
                        height,
                        parents: s.parents.as_slice().into(),
                        payload: payload_start..block.len(),
                        auth: None,
                    },
                    // A signed event's header has more parts: read them back.
                    Some(_) => Header::parse(&block, &self.config.limits)
                        .map_err(|e| EncodeError::Payload { message: e.to_string() })?,
                };
                self.validate(&block, &header).map_err(AppendError::Rejected)?;
            }
            // The next event's one parent is this one.
            s.parents.clear();
            s.parents.push(digest_of(block.cid()).expect("event CIDs"));
            s.blocks.push(block);
        }
        let Some(last) = s.blocks.last().map(|b| *b.cid()) else {
            s.clear();
            self.scratch = Some(s);
            return Ok(None);
        };
        s.new_heads.extend(s.heads[take..].iter().map(|id| self.dag.cid(*id)));
        s.new_heads.push(last);
        s.new_heads.sort_unstable();
        commit(&*self.store, &self.stream, &s.blocks, &s.new_heads).await?;
        // Each event is new and its parents are in the index (the heads taken,
        // then the event before it): no lookups needed.
        let mut prev: Option<EventId> = None;
        for (i, (block, height)) in s.blocks.iter().zip(first_height..).enumerate() {
            let digest = digest_of(block.cid()).expect("event CIDs");
            let id = match prev {
                None => self.dag.push_local(&digest, height, &s.heads[..take]),
                Some(p) => self.dag.push_local(&digest, height, &[p]),
            };
            if let (Some(index), Some(state), Some(signer)) = (self.members.as_mut(), states.get(i), &self.signer) {
                index.push(id, state.clone(), signer.public());
            }
            prev = Some(id);
            if let Some(out) = out.as_deref_mut() {
                out.push(*block.cid());
            }
        }
        self.metrics.appended += s.blocks.len() as u64;
        trace!(count = s.blocks.len(), "appended");
        if !self.pending.events.is_empty() {
            let appended: Vec<Cid> = s.blocks.iter().map(|b| *b.cid()).collect();
            // Boxed: the rare path's future (a whole commit of released
            // events) would otherwise be part of every append's, which a
            // caller's `pin!` copies whole.
            Box::pin(self.release_after_local(&appended)).await;
        }
        s.clear();
        self.scratch = Some(s);
        Ok(Some(last))
    }

    /// A peer's event may wait on exactly a CID we just appended (the same
    /// payload on the same heads is the same event), or be that event: settle
    /// them as an ingest would. Found by the crdt properties.
    async fn release_after_local(&mut self, cids: &[Cid]) {
        if let Err(e) = self.release_waiters(cids).await {
            // The append itself is durable; the released events are dropped
            // (their parents are all known) and come back when re-sent.
            tracing::warn!(error = %e, "could not commit events released by a local append");
        }
    }

    /// Releases, and commits, the pending events that waited for `cids`,
    /// which just joined the index.
    async fn release_waiters(&mut self, cids: &[Cid]) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        for cid in cids {
            let digest = digest_of(cid).expect("event CIDs");
            self.pending.remove(&digest);
            self.release(digest, &mut batch);
        }
        self.commit_batch(batch).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use futures::executor::block_on;
    use ipld_core::ipld::Ipld;

    use super::{AppendError, Replica, ReplicaConfig};
    use crate::auth::{self, Role, Signer};
    use crate::error::EncodeError;
    use crate::{Block, Event, MemoryBlockstore, cid_of};

    /// Payloads that exercise every DAG-CBOR kind the encoders must agree on.
    fn payloads() -> Vec<Ipld> {
        let map = |entries: &[(&str, Ipld)]| {
            Ipld::Map(entries.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect::<BTreeMap<_, _>>())
        };
        vec![
            map(&[("payload", Ipld::Bytes((0..128).collect()))]),
            Ipld::Null,
            Ipld::Bool(true),
            Ipld::Integer(-(1 << 64)),
            Ipld::Integer(u64::MAX.into()),
            Ipld::Float(-0.5),
            Ipld::Float(1e300),
            Ipld::String("héllo, wörld".to_owned()),
            Ipld::List(vec![Ipld::Integer(1), Ipld::List(vec![]), Ipld::Link(cid_of(b"x"))]),
            // Keys in canonical order: by length, then bytes ("b" before "aa").
            map(&[("aa", Ipld::Integer(2)), ("b", Ipld::Integer(1)), ("é", map(&[("z", Ipld::Null)]))]),
        ]
    }

    fn cbor(p: &Ipld) -> Vec<u8> {
        serde_ipld_dagcbor::to_vec(p).expect("IPLD encodes")
    }

    /// Two replicas of one stream: one appends values, one their bytes.
    async fn pair(genesis: &Block) -> (Replica<MemoryBlockstore>, Replica<MemoryBlockstore>) {
        let open = || Replica::create(Arc::new(MemoryBlockstore::new()), genesis, ReplicaConfig::default());
        (open().await.expect("create"), open().await.expect("create"))
    }

    async fn same_blocks(a: &Replica<MemoryBlockstore>, b: &Replica<MemoryBlockstore>) {
        let (order_a, order_b): (Vec<_>, Vec<_>) = (a.order().collect(), b.order().collect());
        assert_eq!(order_a, order_b);
        for cid in &order_a {
            let (x, y) = (a.get(cid).await.expect("store"), b.get(cid).await.expect("store"));
            assert_eq!(x.expect("held").bytes(), y.expect("held").bytes(), "{cid}");
        }
    }

    #[test]
    fn append_encoded_makes_the_blocks_append_makes_one_at_a_time_and_in_batches() {
        block_on(async {
            let genesis = Event::genesis("encoded").encode().expect("genesis");
            let (mut by_value, mut by_bytes) = pair(&genesis).await;
            for p in payloads() {
                let cid = by_value.append(&p).await.expect("append");
                assert_eq!(by_bytes.append_encoded(&cbor(&p)).await.expect("append_encoded"), cid);
            }
            let many = by_value.append_many(payloads()).await.expect("append_many");
            let encoded: Vec<Vec<u8>> = payloads().iter().map(cbor).collect();
            assert_eq!(by_bytes.append_many_encoded(encoded.iter().map(Vec::as_slice)).await.expect("many"), many);
            same_blocks(&by_value, &by_bytes).await;
        });
    }

    #[test]
    fn append_encoded_signs_the_same_events_on_a_stream_with_admins() {
        block_on(async {
            let (admin, writer) = (Signer::from_seed(&[1; 32]), Signer::from_seed(&[2; 32]));
            let genesis = auth::genesis(&"signed", &[admin.public()]).expect("genesis");
            let (mut by_value, mut by_bytes) = pair(&genesis).await;
            for r in [&mut by_value, &mut by_bytes] {
                r.set_signer(Some(admin.clone()));
                r.grant(writer.public(), Role::Writer).await.expect("grant");
                r.set_signer(Some(writer.clone()));
            }
            for p in payloads() {
                let cid = by_value.append(&p).await.expect("append");
                assert_eq!(by_bytes.append_encoded(&cbor(&p)).await.expect("append_encoded"), cid);
            }
            same_blocks(&by_value, &by_bytes).await;
        });
    }

    #[test]
    fn append_encoded_refuses_bytes_that_are_not_one_canonical_item_and_changes_nothing() {
        block_on(async {
            let genesis = Event::genesis("refusals").encode().expect("genesis");
            let (mut r, _) = pair(&genesis).await;
            let mut deep = vec![0x81; 200];
            deep.push(0xf6);
            let refused: [(&str, Vec<u8>); 6] = [
                ("empty", vec![]),
                ("two items", vec![0xf6, 0xf6]),
                ("truncated", vec![0x82, 0x01]),
                ("a 16-bit float", vec![0xf9, 0x3c, 0x00]),
                ("an integer not in its shortest form", vec![0x18, 0x01]),
                ("keys out of order", vec![0xa2, 0x62, b'a', b'a', 0x01, 0x61, b'b', 0x02]),
            ];
            for (what, bytes) in refused {
                let e = r.append_encoded(&bytes).await.expect_err(what);
                assert!(matches!(e, AppendError::Encode(EncodeError::Payload { .. })), "{what}: {e:?}");
            }
            let e = r.append_encoded(&deep).await.expect_err("too deep");
            assert!(matches!(e, AppendError::Encode(EncodeError::TooDeep { .. })), "{e:?}");
            assert!(r.append_many_encoded([&[0xf6][..], &[0x18, 0x01]]).await.is_err());
            assert_eq!(r.len(), 1, "nothing appended");
            assert_eq!(r.heads(), vec![*genesis.cid()]);
            r.append_encoded(&[0xf6]).await.expect("a good payload after the refusals");
        });
    }
}
