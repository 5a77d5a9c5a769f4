//! Shallow bootstrap: a replica that starts from a trusted checkpoint
//! instead of the genesis's whole history.
//!
//! [`Replica::bootstrap`] fetches, each block by CID from a source (any
//! [`Blockstore`]: a peer's store, a gateway client) and each hashed:
//!
//! 1. the genesis and the checkpoint;
//! 2. on a stream with admins, the `flagged` tree and the membership events
//!    in it, in full (few), each signature-checked and judged against the
//!    membership its own skeleton row gives its past;
//! 3. one skeleton lookup per event of the cut (the checkpoint's parents),
//!    which gives their heights (the checkpoint's height must be one above
//!    theirs) and, on a stream with admins, their membership rows: the
//!    checkpoint's author must be an admin in their union;
//! 4. the state blocks.
//!
//! It then records the cut as *anchors* (skeleton-only entries:
//! [`StreamStore::append_skeleton`], [`Dag::insert_anchor`](crate::Dag::insert_anchor)),
//! so they read back pruned, sync answers `pruned` for them and never
//! offers them, and ingests the checkpoint like any event (signature,
//! height, authorship). Events after the cut then come by the ordinary sync
//! protocol. A late event (concurrent with the checkpoint) whose parents are
//! below the cut waits in the pending buffer; [`Replica::admit_late`] looks
//! each such parent up in the skeleton and lets it join as an anchor at the
//! height the skeleton gives, which releases the event if its height agrees
//! (else it is rejected, [`RejectReason::Height`](super::RejectReason)).
//! Until a missing parent was looked up, a replica with anchors does not ask
//! peers for it ([`Replica::missing`]): it may be below the cut, and nobody
//! need hold its bytes.
//!
//! An event whose parents are all anchors or the genesis may itself be
//! below the cut (a peer may send the checkpoint's past). It waits too
//! (parked, at most [`ReplicaConfig::max_pending_events`]) until
//! `admit_late` looks it up: in the skeleton, it joins as an anchor and its
//! bytes are dropped; not, it is ingested. Every other event has a parent
//! held in full (the checkpoint, an event after it or a late one), so it is
//! outside the checkpoint's past and goes through at once. Anchors that are
//! not in the cut are ancestors of it: never heads.
//!
//! **On a stream with admins** an anchor's membership (the membership
//! events in its past) is what its skeleton entry's membership row names
//! ([`SkeletonEntry::members`](crate::checkpoint::SkeletonEntry::members)),
//! built into a state by the same code a full replica's states come from.
//! Late events are then judged by the ordinary ingest path against their
//! parents' membership: a revoked writer's late event is refused with
//! [`RejectReason::Unauthorized`](super::RejectReason), as a full replica
//! refuses it, and a writer's event concurrent with the revocation is
//! admitted. Finding a parent's membership costs its lookup and nothing
//! else: no walk of the history below it. The anchors' membership is kept
//! beside the log ([`StreamStore::put_stream_record`], written before the
//! anchors themselves), and [`Replica::open`] reads it back.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use ipld_core::cid::Cid;
use thiserror::Error;

use super::{OpenError, Rejection, Replica, ReplicaConfig};
use serde::{Deserialize, Serialize};

use crate::auth::{self, AuthorKey, MemberIndex, MemberOp, Members, Policy, Role};
use crate::block::{Block, Digest, cid_from_digest};
use crate::checkpoint::{self, Checkpoint, CheckpointError, skeleton};
use crate::error::BlockError;
use crate::event::{Header, Limits};
use crate::store::{Blockstore, LoggedEvent, StoreError, StreamStore};
use crate::{EventId, Ingest};

/// Why [`Replica::bootstrap`] or [`Replica::admit_late`] failed. Each
/// variant names what it is about; a failed bootstrap leaves no stream
/// behind in the store unless it says so, and a failed `admit_late` changes
/// nothing.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ShallowError {
    /// The source does not have a block the bootstrap needs.
    #[error("{cid}: the source does not have this block")]
    Missing {
        /// The block.
        cid: Cid,
    },
    /// A fetched block does not hash to its CID.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// The checkpoint, its skeleton or a state is bad or untrusted.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A flagged event's bytes disagree with its skeleton entry.
    #[error("{cid}: flagged at height {listed}, the event says {found}, or its parents differ")]
    Flagged {
        /// The event.
        cid: Cid,
        /// The height its entry gives.
        listed: u64,
        /// The height its header gives.
        found: u64,
    },
    /// The checkpoint itself was not accepted on top of its cut.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The store already holds this stream, or opening failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The store failed (the stream may be half written: use a fresh store).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`Replica::bootstrap`] fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Bootstrap {
    /// The checkpoint started from.
    pub checkpoint: Checkpoint,
    /// Blocks fetched from the source.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// What one [`Replica::admit_late`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LateReport {
    /// Parents found below the cut, now anchors.
    pub anchored: u64,
    /// Parents looked up and not below the cut: [`Replica::missing`] lists
    /// them now, for peers to send.
    pub outside: u64,
    /// Skeleton parts fetched (with repeats: a lookup reads one per level).
    pub parts: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The skeleton entry of `digest` under `checkpoint`, each part checked.
async fn lookup<B: ?Sized + Blockstore>(
    source: &B,
    checkpoint: &Checkpoint,
    digest: &Digest,
) -> Result<Option<skeleton::SkeletonEntry>, ShallowError> {
    let cid = cid_from_digest(digest);
    Ok(skeleton::lookup(source, &checkpoint.skeleton, &cid).await.map_err(CheckpointError::from)?)
}

/// A source read through, counting blocks and bytes.
struct Counting<'a, B: ?Sized> {
    source: &'a B,
    blocks: AtomicU64,
    bytes: AtomicU64,
}

impl<'a, B: ?Sized + Blockstore> Counting<'a, B> {
    fn new(source: &'a B) -> Self {
        Counting { source, blocks: AtomicU64::new(0), bytes: AtomicU64::new(0) }
    }

    fn totals(&self) -> (u64, u64) {
        (self.blocks.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }

    /// A block fetched and hashed.
    async fn fetch(&self, cid: &Cid) -> Result<Block, ShallowError> {
        let block = self.get(cid).await?.ok_or(ShallowError::Missing { cid: *cid })?;
        block.verify()?;
        Ok(block)
    }
}

#[async_trait]
impl<B: ?Sized + Blockstore> Blockstore for Counting<'_, B> {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        let block = self.source.get(cid).await?;
        if let Some(b) = &block {
            self.blocks.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(b.bytes().len() as u64, Ordering::Relaxed);
        }
        Ok(block)
    }

    async fn put(&self, _block: Block) -> Result<(), StoreError> {
        Err(StoreError::Unsupported { operation: "put into a fetch source" })
    }
}

impl<S: ?Sized + StreamStore> Replica<S> {
    /// Starts a replica of the stream `genesis` in `store` (which must not
    /// hold it yet) from the checkpoint `checkpoint`, fetching only what the
    /// module docs list from `source`. The checkpoint must be trusted: named
    /// in `trusted` (an open stream's only way, like a commit hash), or, on a
    /// stream with admins, written by an admin in its own past, judged by
    /// the membership events of the flagged tree (all below the cut, so all
    /// in the checkpoint's past). Fold from it with
    /// [`Fold::resume`](crate::crdt::Fold::resume).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use merkle_clock::{Event, MemoryBlockstore, Replica, ReplicaConfig};
    /// use merkle_clock::checkpoint::{self, CheckpointConfig};
    /// use merkle_clock::crdt::{Counter, CounterOp, Fold};
    /// # futures::executor::block_on(async {
    /// let genesis = Event::genesis("stock").encode()?;
    /// let full_store = Arc::new(MemoryBlockstore::new());
    /// let mut full = Replica::create(full_store.clone(), &genesis, ReplicaConfig::default()).await?;
    /// full.append_many((1..=100).map(CounterOp::Increment)).await?;
    /// let mut stock = Fold::new(Counter);
    /// stock.update(&full).await?;
    /// let cp = checkpoint::build(&mut full, &[("stock", &stock)], &CheckpointConfig::default()).await?;
    ///
    /// // An open stream: the user names the checkpoint by CID.
    /// let (shallow, fetched) = Replica::bootstrap(
    ///     Arc::new(MemoryBlockstore::new()), full_store.as_ref(), genesis.cid(), &cp.cid, &[cp.cid],
    ///     ReplicaConfig::default(),
    /// ).await?;
    /// assert_eq!(shallow.heads(), full.heads());
    /// assert!(fetched.blocks < 10); // not the 101 events below the cut
    /// let mut from_cp = Fold::resume(Counter, &shallow, &fetched.checkpoint, "stock").await?;
    /// from_cp.update(&shallow).await?;
    /// assert_eq!(*from_cp.state(), 5050);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).map_err(|e| e.to_string())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ShallowError::Missing`] / [`ShallowError::Block`] for a block the
    /// source lacks or that does not hash; [`ShallowError::Checkpoint`]:
    /// not a checkpoint, `Untrusted` / `Unauthorized`, a skeleton part that
    /// does not verify, a cut event the skeleton lacks (`UnknownParent`) or
    /// a checkpoint height that disagrees with its cut's (`LateHeight`), a
    /// state block that does not hash; [`ShallowError::Flagged`];
    /// [`ShallowError::Rejected`] when the checkpoint event breaks a rule,
    /// or a flagged membership event is not valid against its own past;
    /// `Checkpoint(Malformed)` for a membership row that names no
    /// membership event. All of these are found before anything is written.
    /// A store without [`StreamStore::put_stream_record`] cannot hold a
    /// shallow replica of a stream with admins ([`ShallowError::Store`]).
    ///
    /// # Crashes
    /// The writes are several commits (the genesis, the anchors' record and
    /// the cut, the checkpoint). A crash before this returns can leave the
    /// genesis alone or the cut without the checkpoint: a consistent replica
    /// that opens and syncs forward like any other; or call `bootstrap`
    /// again with the same checkpoint, which takes it up where it stopped
    /// (`crash_points.rs::crash_at_every_sync_point_of_a_shallow_start_leaves_a_replica_that_judges_as_before`).
    /// A store whose stream holds anything else is
    /// [`OpenError::StreamExists`].
    pub async fn bootstrap<B: ?Sized + Blockstore>(
        store: Arc<S>,
        source: &B,
        genesis: &Cid,
        checkpoint: &Cid,
        trusted: &[Cid],
        config: ReplicaConfig,
    ) -> Result<(Self, Bootstrap), ShallowError> {
        let source = Counting::new(source);
        let genesis_block = source.fetch(genesis).await?;
        Self::check_genesis(&genesis_block, &config)?;
        let cp_block = source.fetch(checkpoint).await?;
        let cp = Checkpoint::from_block(&cp_block)?.ok_or(CheckpointError::NotACheckpoint { cid: *checkpoint })?;
        // A stream already here is refused, unless it is what a bootstrap
        // from this checkpoint that did not return left (the genesis, then
        // the cut): that one is taken up where it stopped (checked below).
        let left = match store.heads(genesis).await? {
            None => None,
            Some(_) => {
                let len = store.log_len(genesis).await?;
                if len > 1 + cp.parents.len() as u64 {
                    return Err(OpenError::StreamExists { stream: *genesis }.into());
                }
                Some(store.read_log_entries(genesis, 0, len as usize).await?)
            }
        };

        // On a stream with admins: the membership events below the cut, in
        // full and judged, and the membership of each event of the cut.
        let policy = crate::auth::policy_of(&genesis_block).map_err(OpenError::Genesis)?;
        let mut index = match &policy {
            Policy::Open => None,
            Policy::Admins(admins) => Some(MemberIndex::new(admins.clone())),
        };
        let ops = match index.as_mut() {
            Some(index) => flagged_ops(&source, &cp, genesis, index, config.max_flagged_entries).await?,
            None => {
                cp.check_trust(None, trusted)?;
                Vec::new()
            }
        };

        // The cut, from the skeleton: heights the checkpoint must sit on.
        let mut cut = Vec::with_capacity(cp.parents.len());
        let mut cut_ops: Vec<(Cid, Vec<(Cid, MemberOp)>)> = Vec::new();
        let mut expected = 1; // on the genesis alone
        for parent in cp.parents.iter().filter(|p| *p != genesis) {
            let entry = skeleton::lookup(&source, &cp.skeleton, parent)
                .await
                .map_err(CheckpointError::from)?
                .ok_or(CheckpointError::UnknownParent { cid: cp.cid, parent: *parent })?;
            expected = expected.max(entry.height + 1);
            if index.is_some() {
                cut_ops.push((entry.cid, row_ops(&cp, &ops, entry.members, None)?));
            }
            // Logged without parents: an anchor, on every replay.
            cut.push(LoggedEvent { cid: entry.cid, height: entry.height, parents: Vec::new(), pruned: true });
        }
        if let Some(index) = index.as_mut() {
            // The checkpoint's past: the union of its cut's.
            let mut past = vec![index.state(EventId::GENESIS).clone()];
            past.extend(cut_ops.iter().map(|(_, ops)| index.state_of_ops(ops)));
            let below = Members::of(&index.union_of(&past));
            cp.check_trust(Some(&below), trusted)?;
        }
        if cp.height != expected {
            return Err(CheckpointError::LateHeight { cid: cp.cid, claimed: cp.height, expected }.into());
        }
        let mut states = Vec::with_capacity(cp.states.len());
        for cid in cp.states.values() {
            let block = source.get(cid).await?.ok_or(CheckpointError::StateMissing { cid: *cid })?;
            checkpoint::verify_state(cid, block.bytes())?;
            states.push(block);
        }

        // What an unfinished bootstrap of this checkpoint wrote is not
        // written again; anything else in the stream is not ours to add to.
        let (write_genesis, write_cut) = match &left {
            None => (true, true),
            Some(log) if log.len() == 1 => (false, true),
            Some(log)
                if log.len() == 1 + cut.len()
                    && log[1..].iter().zip(&cut).all(|(l, c)| l.pruned && (l.cid, l.height) == (c.cid, c.height)) =>
            {
                (false, false)
            }
            Some(_) => return Err(OpenError::StreamExists { stream: *genesis }.into()),
        };

        // Everything checked: write the genesis, the blocks held in full,
        // the cut as skeleton-only entries, then take the checkpoint.
        if write_genesis {
            store.commit(genesis, std::slice::from_ref(&genesis_block), &[*genesis]).await?;
        }
        // The flagged events served the trust and membership checks; they
        // are below the cut, so they are not kept (a store logs a block it
        // holds as held, not as a skeleton-only anchor). What the anchors'
        // membership is, is: before the anchors, which `open` reads with it.
        if index.is_some() {
            store.put_stream_record(genesis, &encode_record(&cut_ops)).await?;
        }
        store.put_many(states).await?;
        let mut heads: Vec<Cid> = cut.iter().map(|e| e.cid).collect();
        if heads.is_empty() {
            heads.push(*genesis);
        }
        heads.sort_unstable();
        if write_cut && !cut.is_empty() {
            store.append_skeleton(genesis, &cut, &heads).await?;
        }
        let mut replica = Self::open_inner(store, genesis, config).await?;
        // The checkpoint is not below its own cut.
        replica.outside_cut.insert(crate::block::digest_of(&cp.cid).expect("an event CID"));
        match replica.ingest(cp_block).await? {
            Ingest::Accepted | Ingest::Duplicate => {}
            Ingest::Rejected(r) => return Err(r.into()),
            Ingest::Pending { .. } => {
                return Err(StoreError::Corrupt(format!("{}: its cut was just recorded", cp.cid)).into());
            }
        }
        let (blocks, bytes) = source.totals();
        tracing::debug!(checkpoint = %cp.cid, blocks, bytes, "shallow bootstrap");
        Ok((replica, Bootstrap { checkpoint: cp, blocks, bytes }))
    }

    /// Lets the parents of waiting late events join as anchors: each
    /// missing parent of a pending event not looked up before is looked up
    /// in `checkpoint`'s skeleton, read part by part from `source`, each
    /// part checked. Found: it joins at the skeleton's height (store first,
    /// then the index), and the events waiting for it are released, or
    /// rejected if their height disagrees ([`RejectReason::Height`](super::RejectReason)).
    /// Not found: it is not below the cut, and [`Replica::missing`] lists it
    /// from now on. Call it after a sync that left events pending.
    ///
    /// On a stream with admins each new anchor takes the membership its
    /// entry's row names (the membership events it needs are taken from the
    /// replica, or fetched from `checkpoint`'s flagged tree in `source` and
    /// checked, once per call), and the released events are judged by it
    /// exactly as a full replica judges them: admitted, or refused with the
    /// same [`RejectReason`](super::RejectReason). The cost is one lookup
    /// per parent: no walk below it, so a hostile late event costs what an
    /// honest one does (at most [`Limits::max_parents`](crate::Limits)
    /// lookups of at most [`skeleton::MAX_DEPTH`] parts).
    ///
    /// # Errors
    /// [`ShallowError::Checkpoint`] when a skeleton part is missing or does
    /// not verify, or a membership row is malformed; as
    /// [`Replica::bootstrap`] for a flagged membership event;
    /// [`ShallowError::Store`]. Nothing changes then.
    pub async fn admit_late<B: ?Sized + Blockstore>(
        &mut self,
        checkpoint: &Checkpoint,
        source: &B,
    ) -> Result<LateReport, ShallowError> {
        let source = Counting::new(source);
        let mut report = LateReport::default();
        // The checkpoint's membership events, resolved once per call.
        let mut flagged: Option<FlaggedOps> = None;
        // Each round looks up what waits; anchoring a parent can park its
        // waiters (their parents are then all anchors), the next round
        // looks those up. Every round that changes nothing ends it.
        loop {
            let suspects = std::mem::take(&mut self.suspects);
            let parked: HashSet<Digest> =
                suspects.iter().filter_map(|(b, _)| crate::block::digest_of(b.cid())).collect();
            let mut wanted: Vec<Digest> = self
                .pending
                .waiting
                .keys()
                .filter(|d| {
                    !self.pending.events.contains_key(*d)
                        && self.dag.find(d).is_none()
                        && !self.outside_cut.contains(*d)
                        && !parked.contains(*d)
                })
                .copied()
                .collect();
            wanted.sort_unstable();
            if wanted.is_empty() && suspects.is_empty() {
                break;
            }
            let mut anchors = Vec::new();
            let mut outside = HashSet::new();
            let mut cleared = Vec::new();
            let mut anchor_ops: Vec<Vec<(Cid, MemberOp)>> = Vec::new();
            let (stream, max_flagged) = (self.stream, self.config.max_flagged_entries);
            let looked_up: Result<(), ShallowError> = async {
                for d in &wanted {
                    match lookup(&source, checkpoint, d).await? {
                        Some(entry) => anchors.push(entry),
                        None => {
                            outside.insert(*d);
                        }
                    }
                }
                for (block, header) in &suspects {
                    let d = crate::block::digest_of(block.cid()).expect("event CIDs");
                    match lookup(&source, checkpoint, &d).await? {
                        // Below the cut: held as its skeleton, like the cut.
                        Some(entry) if entry.height == header.height => anchors.push(entry),
                        Some(_) | None => {
                            outside.insert(d);
                            cleared.push(block.clone());
                        }
                    }
                }
                anchors.sort_unstable_by_key(|e| e.cid);
                anchors.dedup_by_key(|e| e.cid);
                // On a stream with admins, each anchor's membership: the
                // membership events its skeleton entry's row names.
                if let Some(index) = self.members.as_mut()
                    && !anchors.is_empty()
                {
                    if flagged.is_none() && anchors.iter().any(|e| e.members != 0) {
                        flagged = Some(flagged_ops(&source, checkpoint, &stream, index, max_flagged).await?);
                    }
                    let ops = flagged.as_deref().unwrap_or_default();
                    for e in &anchors {
                        anchor_ops.push(row_ops(checkpoint, ops, e.members, None)?);
                    }
                }
                Ok(())
            }
            .await;
            if let Err(e) = looked_up {
                self.suspects = suspects;
                return Err(e);
            }
            report.outside += (outside.len() - cleared.len()) as u64;
            self.outside_cut.extend(outside);
            report.anchored += anchors.len() as u64;
            self.anchor(&anchors, &anchor_ops, &checkpoint.parents).await?;
            if !cleared.is_empty() {
                self.ingest_many(cleared).await?;
            }
        }
        (report.parts, report.bytes) = source.totals();
        Ok(report)
    }

    /// Adds skeleton entries as anchors (store first, index second) and
    /// releases what waited for them. Those not in the cut are ancestors of
    /// it: never heads.
    /// On a stream with admins, `ops` gives each anchor's membership
    /// events (aligned with `anchors`): recorded first, then the anchors.
    async fn anchor(
        &mut self,
        anchors: &[skeleton::SkeletonEntry],
        ops: &[Vec<(Cid, MemberOp)>],
        cut: &[Cid],
    ) -> Result<(), StoreError> {
        if anchors.is_empty() {
            return Ok(());
        }
        if let Some(index) = self.members.as_ref() {
            let mut record: Vec<(Cid, Vec<(Cid, MemberOp)>)> = self
                .dag
                .anchors()
                .map(|id| (self.dag.cid(id), index.ops_of(index.state(id)).copied().collect()))
                .collect();
            record.extend(anchors.iter().map(|e| e.cid).zip(ops.iter().cloned()));
            self.store.put_stream_record(&self.stream, &encode_record(&record)).await?;
        }
        let entries: Vec<LoggedEvent> = anchors
            .iter()
            .map(|e| LoggedEvent { cid: e.cid, height: e.height, parents: Vec::new(), pruned: true })
            .collect();
        let mut heads = self.dag.heads();
        heads.extend(entries.iter().map(|e| e.cid).filter(|c| cut.contains(c)));
        heads.sort_unstable();
        heads.dedup();
        self.store.append_skeleton(&self.stream, &entries, &heads).await?;
        let mut cids = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let id = self
                .dag
                .insert_anchor(&e.cid, e.height)
                .map_err(|err| StoreError::Corrupt(format!("a skeleton entry the index refuses: {err}")))?
                .id();
            if let (Some(index), Some(ops)) = (self.members.as_mut(), ops.get(i)) {
                let state = index.state_of_ops(ops);
                index.push_unattributed(id, state);
            }
            self.pruned.insert(id);
            if !cut.contains(&e.cid) {
                self.dag.cover(id);
            }
            cids.push(e.cid);
        }
        self.release_waiters(&cids).await
    }

    /// Whether an event whose parents are all held may be in the
    /// checkpoint's past, on a replica with anchors: every parent is an
    /// anchor or the genesis (an event with a parent held in full, which is
    /// the checkpoint, after it or a late event, is not), and
    /// [`Replica::admit_late`] did not find it outside the skeleton yet.
    pub(super) fn may_be_below_cut(&self, digest: &Digest, header: &Header) -> bool {
        !self.outside_cut.contains(digest)
            && header.parents.iter().all(|p| self.dag.find(p).is_some_and(|id| id == 0 || self.dag.is_anchor_raw(id)))
    }

    /// Holds an event that may be below the cut until
    /// [`Replica::admit_late`] looks it up; at most
    /// [`ReplicaConfig::max_pending_events`] wait, the oldest go first.
    pub(super) fn park(&mut self, block: Block, header: Header) {
        if self.suspects.iter().any(|(b, _)| b.cid() == block.cid()) {
            return;
        }
        if self.suspects.len() >= self.config.max_pending_events.max(1) {
            self.suspects.remove(0);
            self.metrics.evicted += 1;
        }
        self.suspects.push((block, header));
    }

    /// Whether a missing parent may be asked of peers: always on a full
    /// replica; on one with anchors, once [`Replica::admit_late`] found it
    /// is not below the cut.
    pub(super) fn may_want(&self, digest: &Digest) -> bool {
        !self.dag.has_anchors() || self.outside_cut.contains(digest)
    }
}

/// The membership events of a checkpoint's flagged tree, by position:
/// `None` for the genesis and checkpoints.
type FlaggedOps = Vec<Option<(Cid, MemberOp)>>;

/// Resolves the membership events of `cp`'s flagged tree (stream
/// `stream`): one `index` holds (by CID) is taken from it; every other is
/// fetched from `source`, hashed, its header compared with its entry, its
/// signature checked, and its author judged by the rules every replica
/// applies ([`auth::authorize`]) against the membership its own row gives
/// its past (the row less itself, each event in it lower than it): a
/// membership event a checkpoint lists must have been valid where it
/// stands, by induction from the genesis's admins.
async fn flagged_ops<B: ?Sized + Blockstore>(
    source: &Counting<'_, B>,
    cp: &Checkpoint,
    stream: &Cid,
    index: &mut MemberIndex,
    max: usize,
) -> Result<FlaggedOps, ShallowError> {
    let entries = cp.flagged_entries(source, max).await?;
    let mut ops: FlaggedOps = vec![None; entries.len()];
    let mut fetched = Vec::new();
    let mut verifier = auth::Verifier::default();
    for (i, entry) in entries.iter().enumerate() {
        if !entry.membership {
            continue;
        }
        if let Some(op) = index.op(&entry.cid) {
            ops[i] = Some((entry.cid, op));
            continue;
        }
        let block = source.fetch(&entry.cid).await?;
        let header = Header::parse(&block, &Limits::TRUSTED).map_err(CheckpointError::from)?;
        let parents: Vec<Cid> = header.parents.iter().map(cid_from_digest).collect();
        if header.height != entry.height || parents != entry.parents {
            return Err(ShallowError::Flagged { cid: entry.cid, listed: entry.height, found: header.height });
        }
        verifier.verify(stream, &block, &header).map_err(Rejection::from)?;
        let fields = header.auth.as_deref();
        let (Some(author), Some(op)) = (fields.and_then(|a| a.author), fields.and_then(|a| a.member)) else {
            let reason = format!("{} is flagged as a membership event and is not a signed one", entry.cid);
            return Err(CheckpointError::Malformed { cid: cp.cid, reason }.into());
        };
        ops[i] = Some((entry.cid, op));
        fetched.push((i, author, op));
    }
    for (i, author, op) in fetched {
        let entry = &entries[i];
        if let Some(p) = cp
            .members_row(entry.members)?
            .iter()
            .find(|&&p| p as usize != i && entries[p as usize].height >= entry.height)
        {
            let reason = format!("{} has {} in its past, which is not below it", entry.cid, entries[*p as usize].cid);
            return Err(CheckpointError::Malformed { cid: cp.cid, reason }.into());
        }
        let past = row_ops(cp, &ops, entry.members, Some(i))?;
        let past = index.state_of_ops(&past);
        auth::authorize(Some(&past), entry.cid, Some(author), Some(&op)).map_err(Rejection::from)?;
    }
    Ok(ops)
}

/// The membership events membership row `row` of `cp` names, from `ops`;
/// `except` leaves one position out (an event's own: its past).
fn row_ops(
    cp: &Checkpoint,
    ops: &[Option<(Cid, MemberOp)>],
    row: u32,
    except: Option<usize>,
) -> Result<Vec<(Cid, MemberOp)>, CheckpointError> {
    let mut out = Vec::new();
    for &p in cp.members_row(row)? {
        if Some(p as usize) == except {
            continue;
        }
        let op = ops.get(p as usize).copied().flatten().ok_or_else(|| CheckpointError::Malformed {
            cid: cp.cid,
            reason: format!("membership row {row} names position {p}, which is not a membership event"),
        })?;
        out.push(op);
    }
    Ok(out)
}

/// What a shallow replica of a stream with admins keeps beside its log
/// ([`StreamStore::put_stream_record`]): the membership of each anchor
/// whose past holds membership events, which the skeleton gave and the
/// log cannot (an anchor is logged without parents). DAG-CBOR.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnchorRecord {
    /// Membership events: CID, what they do (0 grant writer, 1 grant admin,
    /// 2 revoke), the key.
    ops: Vec<(Cid, u8, serde_bytes::ByteBuf)>,
    /// Anchors, each with positions in `ops`.
    anchors: Vec<(Cid, Vec<u32>)>,
}

/// The membership of some anchors, each by CID with its membership events.
pub(super) type AnchorOps = HashMap<Cid, Vec<(Cid, MemberOp)>>;

/// Encodes anchors' membership as an [`AnchorRecord`] (anchors without
/// membership events are left out).
fn encode_record(anchors: &[(Cid, Vec<(Cid, MemberOp)>)]) -> Vec<u8> {
    let mut record = AnchorRecord { ops: Vec::new(), anchors: Vec::new() };
    let mut positions: HashMap<Cid, u32> = HashMap::new();
    for (anchor, ops) in anchors.iter().filter(|(_, ops)| !ops.is_empty()) {
        let mut row = Vec::with_capacity(ops.len());
        for (cid, op) in ops {
            let p = *positions.entry(*cid).or_insert_with(|| {
                let (kind, key) = match op {
                    MemberOp::Grant { key, role: Role::Writer } => (0, key),
                    MemberOp::Grant { key, role: Role::Admin } => (1, key),
                    MemberOp::Revoke { key } => (2, key),
                };
                record.ops.push((*cid, kind, serde_bytes::ByteBuf::from(key.as_bytes().to_vec())));
                u32::try_from(record.ops.len() - 1).expect("fewer than 2^32 membership events")
            });
            row.push(p);
        }
        record.anchors.push((*anchor, row));
    }
    serde_ipld_dagcbor::to_vec(&record).expect("a record is plain DAG-CBOR")
}

/// Reads the anchors' membership back ([`Replica::open`]); `None` when the
/// store holds no record.
pub(super) async fn load_record<S: ?Sized + StreamStore>(
    store: &S,
    stream: &Cid,
) -> Result<Option<AnchorOps>, StoreError> {
    let Some(bytes) = store.stream_record(stream).await? else { return Ok(None) };
    let corrupt = |why: String| StoreError::Corrupt(format!("the anchors' membership record of {stream}: {why}"));
    let record: AnchorRecord = serde_ipld_dagcbor::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut ops = Vec::with_capacity(record.ops.len());
    for (cid, kind, key) in record.ops {
        let key = AuthorKey::from_bytes(
            key.as_slice().try_into().map_err(|_| corrupt("a key of other than 32 bytes".into()))?,
        );
        ops.push((
            cid,
            match kind {
                0 => MemberOp::Grant { key, role: Role::Writer },
                1 => MemberOp::Grant { key, role: Role::Admin },
                2 => MemberOp::Revoke { key },
                k => return Err(corrupt(format!("operation kind {k}"))),
            },
        ));
    }
    let mut out = AnchorOps::new();
    for (anchor, row) in record.anchors {
        let row = row
            .iter()
            .map(|&p| ops.get(p as usize).copied().ok_or_else(|| corrupt(format!("position {p}"))))
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(anchor, row);
    }
    Ok(Some(out))
}
