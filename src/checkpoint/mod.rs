//! Checkpoints: signed events of the stream that carry the folded state of
//! named reducers at a cut, and a commitment to the skeleton of everything
//! below it, so that a replica can drop old payloads, a fold can start late,
//! and a new replica can start from a checkpoint it trusts.
//!
//! A checkpoint is an **ordinary event**: the replica's rules accept it like
//! any other (it is signed on a signed stream), it syncs like any other, and
//! later events descend from it. What makes it a checkpoint is its payload,
//! a one-entry map, the way a membership event is recognised by its
//! `member` key:
//!
//! ```text
//! {"checkpoint": {
//!     "count":    u64,                         events below the cut (the checkpoint's past), the genesis included
//!     "flagged":  link,                        the root of a tree of the same shape over the entries fetched in full:
//!                                              the genesis, membership events and checkpoints below the cut
//!     "skeleton": link,                        the root of the skeleton tree (see below)
//!     "states":   {name: link, ...},           one DAG-CBOR block per named reducer state at the cut
//!     "members":  [[position, ...], ...],      (only when not empty) the membership rows: the membership
//!                                              events in an entry's past, as positions in `flagged`
//! }}
//! ```
//!
//! The **cut** is the checkpoint's parents (the heads of the replica that
//! built it): the states are the folds of exactly the cut's past, and the
//! skeleton lists exactly that past. The parents are in the signed envelope,
//! so the payload does not repeat them.
//!
//! The **skeleton** is a tree of blocks over `(digest, height, parents,
//! flags)` for every event below the cut, sorted by digest ([`skeleton`]'s
//! docs give the layout): one entry can be fetched and verified from the
//! root in `log_F(N)` blocks, so a replica that lacks the history fetches
//! the parts it needs when a late event names a parent below the cut, and
//! never the whole skeleton. The few entries such a replica needs in full
//! (the genesis, membership events, checkpoints: they judge late events'
//! authors) are in a second, small tree, `flagged`; on a stream with
//! admins each entry also names, by its membership row, which of them are
//! in its past, so a late event's author is judged from its parents'
//! entries alone.
//!
//! | item | what it is |
//! | --- | --- |
//! | [`build`], [`CheckpointConfig`] | fold states in, skeleton and state blocks to the store, the event appended |
//! | [`Checkpoint`] | a parsed checkpoint: [`from_block`](Checkpoint::from_block), [`check_trust`](Checkpoint::check_trust), [`state_block`](Checkpoint::state_block), [`verify_against`](Checkpoint::verify_against), [`check_late_event`](Checkpoint::check_late_event), [`members_row`](Checkpoint::members_row) |
//! | [`Fold::resume`] | a fold that starts from a checkpoint's state |
//! | [`latest`] | the newest trusted checkpoint a replica holds |
//! | [`skeleton::lookup`], [`skeleton::entries`] | one entry, or all, verified part by part |
//! | [`CheckpointError`], [`SkeletonError`] | what can be wrong, each a variant naming the CID |
//!
//! **Who may write one.** On a stream with admins, a checkpoint is trusted
//! only when its author is an admin in the checkpoint's own past
//! ([`Members::may_checkpoint`]); a writer may append an event with this
//! payload (the stream's rules do not read payloads), but nobody resumes from
//! it. On an open stream anyone may write one, and a user trusts it by its
//! CID, like a commit hash ([`Checkpoint::check_trust`]).
//!
//! ```
//! use std::sync::Arc;
//! use merkle_clock::{Event, MemoryBlockstore, Replica, ReplicaConfig};
//! use merkle_clock::checkpoint::{self, CheckpointConfig};
//! use merkle_clock::crdt::{Counter, CounterOp, Fold};
//! # futures::executor::block_on(async {
//! let genesis = Event::genesis("likes").encode()?;
//! let mut r = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
//! r.append(&CounterOp::Increment(5)).await?;
//! r.append(&CounterOp::Decrement(2)).await?;
//! let mut likes = Fold::new(Counter);
//! likes.update(&r).await?;
//! let cp = checkpoint::build(&mut r, &[("likes", &likes)], &CheckpointConfig::default()).await?;
//! assert_eq!(cp.count, 3); // the genesis and two events
//! r.append(&CounterOp::Increment(10)).await?;
//!
//! // On an open stream the user names the checkpoint they trust, by CID.
//! cp.check_trust(None, &[cp.cid])?;
//! let mut resumed = Fold::resume(Counter, &r, &cp, "likes").await?;
//! let report = resumed.update(&r).await?;
//! assert_eq!(*resumed.state(), 13);
//! assert_eq!(report.covered, 3); // the three events below the cut are not read
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap, HashSet};

use ipld_core::cid::Cid;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::auth::{AuthorKey, Members};
use crate::block::{Block, Digest, digest_of};
use crate::crdt::{CheckpointPolicy, Fold, Resumable, StateError};
use crate::dag::EventId;
use crate::error::{DecodeError, UnknownEvent};
use crate::event::{Header, Limits};
use crate::replica::{AppendError, Replica};
use crate::store::{Blockstore, StoreError, StreamStore};

pub mod skeleton;

pub use skeleton::{SkeletonEntry, SkeletonError, SkeletonShape};

use skeleton::Entry;

/// The payload's one key: `checkpoint`.
pub const TAG: &str = "checkpoint";

/// The first bytes of every checkpoint payload: a one-entry map whose key is
/// the 10-byte text `checkpoint`.
const PREFIX: &[u8; 12] = b"\xa1\x6acheckpoint";

/// Blocks read from the store per `get_many` call.
const BATCH: usize = 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    checkpoint: Body,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    count: u64,
    flagged: Cid,
    skeleton: Cid,
    states: BTreeMap<String, Cid>,
    /// Written only when some entry's past holds a membership event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    members: Vec<Vec<u32>>,
}

/// Why a checkpoint cannot be built, trusted or used. Each variant names
/// what it is about.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Appending the checkpoint event failed (the state and skeleton blocks
    /// may be stored; nothing links to them).
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The block is not a canonical event.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// An event the operation needs is not in the replica's DAG.
    #[error(transparent)]
    UnknownEvent(#[from] UnknownEvent),
    /// The event's payload is not a checkpoint.
    #[error("{cid}: not a checkpoint")]
    NotACheckpoint {
        /// The event.
        cid: Cid,
    },
    /// The payload starts as a checkpoint but is not one.
    #[error("{cid}: a malformed checkpoint: {reason}")]
    Malformed {
        /// The event.
        cid: Cid,
        /// What is wrong.
        reason: String,
    },
    /// On a stream with admins, the author is not an admin in the
    /// checkpoint's past (or the checkpoint is unsigned).
    #[error("{cid}: checkpoint by {author:?}, who is not an admin in its past")]
    Unauthorized {
        /// The checkpoint.
        cid: Cid,
        /// Its author, if signed.
        author: Option<AuthorKey>,
    },
    /// On an open stream, a checkpoint the user did not name.
    #[error("{cid}: a checkpoint of an open stream is trusted only by its CID, and this one was not given")]
    Untrusted {
        /// The checkpoint.
        cid: Cid,
    },
    /// The checkpoint has no state of that name.
    #[error("{checkpoint}: no state named {name:?}")]
    NoSuchState {
        /// The checkpoint.
        checkpoint: Cid,
        /// The name asked for.
        name: String,
    },
    /// A state block is not in the store.
    #[error("state block {cid} is not available")]
    StateMissing {
        /// The state block.
        cid: Cid,
    },
    /// A state block's bytes do not hash to its CID.
    #[error("state block {cid}: the bytes hash to {actual}")]
    StateHash {
        /// The link.
        cid: Cid,
        /// What the bytes hash to.
        actual: Cid,
    },
    /// A state block does not decode as the reducer's state, or a state
    /// cannot be encoded.
    #[error("state {name:?}: {error}")]
    State {
        /// The state's name.
        name: String,
        /// What went wrong.
        error: StateError,
    },
    /// A state block is larger than [`CheckpointConfig::max_state_bytes`].
    #[error("state {name:?} is {bytes} bytes, over the limit of {max}")]
    StateTooLarge {
        /// The state's name.
        name: String,
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A fold given to [`build`] has not consumed every event of the replica.
    #[error("state {name:?} was folded over {folded} events, the replica holds {events}: update it first")]
    FoldBehind {
        /// The state's name.
        name: String,
        /// Events it folded.
        folded: usize,
        /// Events in the replica.
        events: usize,
    },
    /// More heads than an event may have parents: append once to merge them.
    #[error("{heads} heads, more than the {max} parents an event may have")]
    TooManyHeads {
        /// The heads.
        heads: usize,
        /// [`Limits::max_parents`].
        max: usize,
    },
    /// A skeleton part is missing, does not hash, or is malformed.
    #[error(transparent)]
    Skeleton(#[from] SkeletonError),
    /// The skeleton is well formed but does not describe the history below
    /// the cut as this replica holds it.
    #[error("{checkpoint}: the skeleton does not match the history: {reason}")]
    SkeletonMismatch {
        /// The checkpoint.
        checkpoint: Cid,
        /// The first difference found.
        reason: String,
    },
    /// A late event names a parent that is neither known nor in the skeleton.
    #[error("{cid}: parent {parent} is neither held nor below the checkpoint's cut")]
    UnknownParent {
        /// The event.
        cid: Cid,
        /// The parent.
        parent: Cid,
    },
    /// A shallow replica of a stream with admins cannot write (or check) a
    /// checkpoint whose history holds membership events below its own
    /// anchors: it does not hold them in full, so the checkpoint could not
    /// list them, and replicas started from it would judge authors without
    /// them. Write checkpoints on a replica that holds the membership events
    /// (a full or pruned one).
    #[error("membership event {event} is below this replica's anchors: it cannot be listed in a checkpoint")]
    MembershipBelowAnchors {
        /// The membership event.
        event: Cid,
    },
    /// A late event's height is not 1 + its parents' greatest, as the
    /// skeleton gives their heights.
    #[error("{cid}: claims height {claimed}, its parents give {expected}")]
    LateHeight {
        /// The event.
        cid: Cid,
        /// The height it claims.
        claimed: u64,
        /// 1 + the greatest parent height.
        expected: u64,
    },
}

/// A checkpoint event, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The checkpoint event.
    pub cid: Cid,
    /// Its height.
    pub height: u64,
    /// Its parents: the cut.
    pub parents: Vec<Cid>,
    /// Who signed it, if anyone.
    pub author: Option<AuthorKey>,
    /// Events below the cut (the checkpoint's past), the genesis included.
    pub count: u64,
    /// The root of the skeleton tree.
    pub skeleton: Cid,
    /// The root of a second tree of the same shape over the entries a
    /// replica without the history fetches in full: the genesis, the
    /// membership events and the checkpoints below the cut.
    pub flagged: Cid,
    /// The state blocks, by reducer name.
    pub states: BTreeMap<String, Cid>,
    /// The membership rows of the skeleton's entries: row `r ≥ 1` is
    /// `members[r - 1]`, the positions in the `flagged` tree (ascending) of
    /// the membership events in the past of an entry whose row is `r`
    /// ([`SkeletonEntry::members`]). Empty on an open stream and on a
    /// stream whose history below the cut holds no membership event.
    pub members: Vec<Vec<u32>>,
}

/// Whether an event's payload bytes are a checkpoint's (by its first bytes).
pub(crate) fn is_checkpoint_payload(payload: &[u8]) -> bool {
    payload.starts_with(PREFIX)
}

impl Checkpoint {
    /// Reads a block: `Ok(None)` when it is an event but not a checkpoint.
    ///
    /// # Errors
    /// [`CheckpointError::Decode`] when the block is not a canonical event,
    /// [`CheckpointError::Malformed`] when its payload is tagged `checkpoint`
    /// but is not exactly `{"count", "flagged", "skeleton", "states"}` (and
    /// optionally `"members"`) as above.
    pub fn from_block(block: &Block) -> Result<Option<Checkpoint>, CheckpointError> {
        let header = Header::parse(block, &Limits::TRUSTED)?;
        let payload = &block.bytes()[header.payload.clone()];
        if !is_checkpoint_payload(payload) {
            return Ok(None);
        }
        let cid = *block.cid();
        let Payload { checkpoint: body } = serde_ipld_dagcbor::from_slice(payload)
            .map_err(|e| CheckpointError::Malformed { cid, reason: e.to_string() })?;
        Ok(Some(Checkpoint {
            cid,
            height: header.height,
            parents: header.parents.iter().map(crate::block::cid_from_digest).collect(),
            author: header.auth.as_deref().and_then(|a| a.author),
            count: body.count,
            skeleton: body.skeleton,
            flagged: body.flagged,
            states: body.states,
            members: body.members,
        }))
    }

    /// The positions in the `flagged` tree of the membership events a
    /// membership row names ([`SkeletonEntry::members`]): none for row 0.
    ///
    /// # Errors
    /// [`CheckpointError::Malformed`] for a row the checkpoint lacks.
    pub fn members_row(&self, row: u32) -> Result<&[u32], CheckpointError> {
        if row == 0 {
            return Ok(&[]);
        }
        self.members.get(row as usize - 1).map(Vec::as_slice).ok_or_else(|| CheckpointError::Malformed {
            cid: self.cid,
            reason: format!("membership row {row}, of {}", self.members.len()),
        })
    }

    /// Whether the checkpoint may be trusted: its CID is one of `trusted`
    /// (the user named it, like a commit hash), or, on a stream with admins,
    /// `members` (the membership of the checkpoint's past:
    /// [`Replica::members_at`]) makes its author an admin.
    ///
    /// # Errors
    /// [`CheckpointError::Unauthorized`] on a stream with admins,
    /// [`CheckpointError::Untrusted`] on an open stream (`members` `None`).
    pub fn check_trust(&self, members: Option<&Members>, trusted: &[Cid]) -> Result<(), CheckpointError> {
        if trusted.contains(&self.cid) {
            return Ok(());
        }
        let Some(members) = members else { return Err(CheckpointError::Untrusted { cid: self.cid }) };
        match self.author {
            Some(author) if members.may_checkpoint(&author) => Ok(()),
            author => Err(CheckpointError::Unauthorized { cid: self.cid, author }),
        }
    }

    /// [`Checkpoint::check_trust`] with the membership `replica` holds for
    /// the checkpoint's past.
    ///
    /// # Errors
    /// As [`Checkpoint::check_trust`]; [`CheckpointError::UnknownEvent`]
    /// when the replica does not hold the checkpoint.
    pub fn check_trust_in<S: ?Sized + StreamStore>(
        &self,
        replica: &Replica<S>,
        trusted: &[Cid],
    ) -> Result<(), CheckpointError> {
        if !replica.contains(&self.cid) {
            return Err(UnknownEvent { cid: self.cid }.into());
        }
        self.check_trust(replica.members_at(&self.cid).as_ref(), trusted)
    }

    /// The state block named `name`, read from `store` and hashed (a block
    /// fetched from a peer is checked, not trusted).
    ///
    /// # Errors
    /// [`CheckpointError::NoSuchState`], [`CheckpointError::StateMissing`],
    /// [`CheckpointError::StateHash`].
    pub async fn state_block<S: ?Sized + Blockstore>(&self, store: &S, name: &str) -> Result<Block, CheckpointError> {
        let cid = *self
            .states
            .get(name)
            .ok_or_else(|| CheckpointError::NoSuchState { checkpoint: self.cid, name: name.to_string() })?;
        let block = store.get(&cid).await?.ok_or(CheckpointError::StateMissing { cid })?;
        verify_state(&cid, block.bytes())?;
        Ok(block)
    }

    /// Checks the checkpoint against a replica that holds its whole past:
    /// `count` is the number of events below the cut, and the skeleton (read
    /// part by part from `source`, each part checked: the replica's own
    /// store, or a peer's) lists exactly those events with their heights,
    /// parents and flags.
    ///
    /// # Errors
    /// [`CheckpointError::SkeletonMismatch`] naming the first difference
    /// (the membership rows included);
    /// [`CheckpointError::Skeleton`] when a part is missing or malformed;
    /// [`CheckpointError::MembershipBelowAnchors`] on a shallow replica.
    pub async fn verify_against<S: ?Sized + StreamStore, B: ?Sized + Blockstore>(
        &self,
        replica: &Replica<S>,
        source: &B,
    ) -> Result<(), CheckpointError> {
        let dag = replica.dag();
        let outside: HashSet<EventId> = dag.difference(&dag.heads(), &self.parents)?.into_iter().collect();
        let below: Vec<EventId> = dag.order().filter(|id| !outside.contains(id)).collect();
        let mismatch = |reason: String| CheckpointError::SkeletonMismatch { checkpoint: self.cid, reason };
        if below.len() as u64 != self.count {
            return Err(mismatch(format!("count {} but {} events below the cut", self.count, below.len())));
        }
        let mut want = entries_of(replica, &below).await?;
        let flagged = skeleton::entries(source, &self.flagged).await?;
        let positions: Vec<Digest> = flagged.iter().filter_map(|e| digest_of(&e.cid)).collect();
        let members = annotate(replica, &below, &mut want, &positions)?;
        if members != self.members {
            return Err(mismatch(format!("membership rows {:?}, the history has {members:?}", self.members)));
        }
        want.sort_unstable_by_key(|e| e.0);
        let got = skeleton::entries(source, &self.skeleton).await?;
        if got.len() != want.len() {
            return Err(mismatch(format!("skeleton: {} entries for {} events", got.len(), want.len())));
        }
        for (g, w) in got.iter().zip(&want) {
            let mut w = w.public();
            // A checkpoint this replica pruned: its flag is the writer's word.
            w.checkpoint |= g.checkpoint && replica.is_pruned(&w.cid);
            if *g != w {
                return Err(mismatch(format!("skeleton: entry {g:?}, the history has {w:?}")));
            }
        }
        // The flagged tree: exactly the skeleton's entries fetched in full.
        let mut expected = got.into_iter().filter(|e| e.height == 0 || e.membership || e.checkpoint);
        if let Some((i, e)) = flagged.iter().enumerate().find(|(_, e)| expected.next().as_ref() != Some(*e)) {
            return Err(mismatch(format!("flagged tree: entry {i} is {e:?}")));
        }
        if let Some(e) = expected.next() {
            return Err(mismatch(format!("flagged tree: lacks {}", e.cid)));
        }
        Ok(())
    }

    /// The entries of the flagged tree, each part checked: the genesis, the
    /// membership events and the checkpoints below the cut, which a replica
    /// without the history fetches in full (to judge late events' authors).
    /// At most `max` ([`ReplicaConfig::max_flagged_entries`](crate::ReplicaConfig::max_flagged_entries)):
    /// the tree is read before the checkpoint is trusted.
    ///
    /// # Errors
    /// As [`skeleton::entries_at_most`].
    pub async fn flagged_entries<S: ?Sized + Blockstore>(
        &self,
        source: &S,
        max: usize,
    ) -> Result<Vec<SkeletonEntry>, CheckpointError> {
        Ok(skeleton::entries_at_most(source, &self.flagged, max).await?)
    }

    /// Checks a late event (one that names parents below the cut) against
    /// the skeleton, as a replica without the history must: each parent is
    /// either known to `held` (which gives its height) or looked up in the
    /// skeleton in `source`, part by part; the event's height must be 1 +
    /// the greatest parent height. Returns the parents' skeleton entries (a
    /// shallow replica fetches those flagged as membership events or
    /// checkpoints in full).
    ///
    /// # Errors
    /// [`CheckpointError::UnknownParent`], [`CheckpointError::LateHeight`],
    /// [`CheckpointError::Skeleton`].
    pub async fn check_late_event<S: ?Sized + Blockstore>(
        &self,
        source: &S,
        block: &Block,
        held: impl Fn(&Cid) -> Option<u64>,
    ) -> Result<Vec<SkeletonEntry>, CheckpointError> {
        let header = Header::parse(block, &Limits::TRUSTED)?;
        let cid = *block.cid();
        let mut found = Vec::new();
        let mut top = 0;
        for parent in header.parents.iter().map(crate::block::cid_from_digest) {
            let height = match held(&parent) {
                Some(h) => h,
                None => {
                    let entry = skeleton::lookup(source, &self.skeleton, &parent)
                        .await?
                        .ok_or(CheckpointError::UnknownParent { cid, parent })?;
                    let h = entry.height;
                    found.push(entry);
                    h
                }
            };
            top = top.max(height);
        }
        if header.height != top + 1 {
            return Err(CheckpointError::LateHeight { cid, claimed: header.height, expected: top + 1 });
        }
        Ok(found)
    }
}

/// Checks a state block on its own: its bytes hash to `cid`.
///
/// # Errors
/// [`CheckpointError::StateHash`].
pub fn verify_state(cid: &Cid, bytes: &[u8]) -> Result<(), CheckpointError> {
    let actual = crate::block::cid_of(bytes);
    if actual != *cid {
        return Err(CheckpointError::StateHash { cid: *cid, actual });
    }
    Ok(())
}

/// How [`build`] writes a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointConfig {
    /// How the skeleton is cut into blocks.
    pub shape: SkeletonShape,
    /// The largest state block written. Default: 1 MiB, the default
    /// [`Limits::max_block_bytes`], so that any replica takes it.
    pub max_state_bytes: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { shape: SkeletonShape::DEFAULT, max_state_bytes: Limits::DEFAULT.max_block_bytes }
    }
}

impl CheckpointConfig {
    /// The defaults with another skeleton shape.
    pub fn with_shape(shape: SkeletonShape) -> Self {
        CheckpointConfig { shape, ..CheckpointConfig::default() }
    }
}

/// A state that [`build`] can write: a [`Fold`] of a [`Resumable`] reducer,
/// up to date with the replica.
pub trait SavedState {
    /// The state as DAG-CBOR.
    ///
    /// # Errors
    /// [`StateError::Encode`].
    fn save_state(&self) -> Result<Vec<u8>, StateError>;
    /// Events of the order folded into it.
    fn folded(&self) -> usize;
}

impl<R: Resumable> SavedState for Fold<R> {
    fn save_state(&self) -> Result<Vec<u8>, StateError> {
        self.reducer().save(self.state())
    }

    fn folded(&self) -> usize {
        self.position()
    }
}

/// Whether a replica without the history fetches this event in full: the
/// genesis, a membership event, a checkpoint.
fn fetched_in_full(e: &Entry) -> bool {
    e.1 == 0 || e.3 != 0
}

/// The skeleton entries of `ids`, reading each held event's header for its
/// flags. A pruned event (its bytes dropped) has no flags: pruning keeps
/// every membership event, and a checkpoint whose bytes are gone cannot be
/// fetched in full by anyone, so it is not flagged.
async fn entries_of<S: ?Sized + StreamStore>(replica: &Replica<S>, ids: &[EventId]) -> Result<Vec<Entry>, StoreError> {
    let dag = replica.dag();
    let mut out = Vec::with_capacity(ids.len());
    for batch in ids.chunks(BATCH) {
        let cids: Vec<Cid> = batch.iter().map(|id| dag.cid(*id)).collect();
        let blocks = replica.store().get_many(&cids).await?;
        for ((id, cid), block) in batch.iter().zip(&cids).zip(blocks) {
            let (membership, checkpoint) = match block {
                Some(block) => {
                    let header = Header::parse(&block, &Limits::TRUSTED)
                        .map_err(|e| StoreError::Corrupt(format!("{cid}: stored block does not decode: {e}")))?;
                    let membership = header.auth.as_deref().is_some_and(|a| a.member.is_some());
                    (membership, is_checkpoint_payload(&block.bytes()[header.payload.clone()]))
                }
                None if replica.is_pruned(cid) => (false, false),
                None => return Err(StoreError::Corrupt(format!("{cid}: in the DAG but not in the store"))),
            };
            let parents = dag.parents(*id).map(|p| *dag.digest(p)).collect();
            out.push(Entry::new(*dag.digest(*id), dag.height(*id), parents, membership, checkpoint));
        }
    }
    Ok(out)
}

/// Sets the membership row of each entry (aligned with `ids`) and returns
/// the rows: each the positions in `flagged` (the flagged tree's digests,
/// ascending) of the membership events in the entry's past, numbered from 1
/// in the order they first appear by digest (so the same history gives the
/// same rows). Open streams, and pasts without membership events, are row
/// 0. A membership event the flagged tree lacks is
/// [`CheckpointError::MembershipBelowAnchors`]: a shallow replica does not
/// hold those below its own checkpoint's cut, and rows without them would
/// be wrong.
fn annotate<S: ?Sized + StreamStore>(
    replica: &Replica<S>,
    ids: &[EventId],
    entries: &mut [Entry],
    flagged: &[Digest],
) -> Result<Vec<Vec<u32>>, CheckpointError> {
    let Some(index) = replica.member_index() else { return Ok(Vec::new()) };
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_unstable_by_key(|&i| entries[i].0);
    // States are shared: one row look-up per distinct state.
    let mut by_state: HashMap<usize, u32> = HashMap::new();
    let mut rows: HashMap<Vec<u32>, u32> = HashMap::new();
    let mut table: Vec<Vec<u32>> = Vec::new();
    for i in order {
        let state = index.state(ids[i]);
        let key = std::sync::Arc::as_ptr(state) as usize;
        let row = match by_state.get(&key) {
            Some(row) => *row,
            None => {
                let mut positions = Vec::new();
                for (cid, _) in index.ops_of(state) {
                    let p = digest_of(cid)
                        .and_then(|d| flagged.binary_search(&d).ok())
                        .ok_or(CheckpointError::MembershipBelowAnchors { event: *cid })?;
                    positions.push(u32::try_from(p).expect("fewer than 2^32 flagged events"));
                }
                positions.sort_unstable();
                let row = match positions.is_empty() {
                    true => 0,
                    false => *rows.entry(positions.clone()).or_insert_with(|| {
                        table.push(positions);
                        u32::try_from(table.len()).expect("fewer than 2^32 rows")
                    }),
                };
                by_state.insert(key, row);
                row
            }
        };
        entries[i].4 = row;
    }
    Ok(table)
}

/// Writes a checkpoint at the replica's heads: saves each named state,
/// builds the skeleton of every event the replica holds, stores the state
/// and skeleton blocks (`put_many`), then appends the checkpoint event
/// (signed by the replica's signer, on a signed stream). Returns it parsed.
///
/// Each state is a [`Fold`] (any [`SavedState`]) updated to the replica's
/// last event. The skeleton costs one read of every event's header; the
/// blocks are about 75 bytes per event (docs/PERFORMANCE.md).
///
/// # Errors
/// [`CheckpointError::FoldBehind`], [`CheckpointError::State`],
/// [`CheckpointError::MembershipBelowAnchors`],
/// [`CheckpointError::StateTooLarge`], [`CheckpointError::TooManyHeads`],
/// [`CheckpointError::Store`], [`CheckpointError::Append`] (for instance
/// [`AppendError::NeedsSigner`] on a signed stream). On an error the replica
/// holds no new event.
pub async fn build<S: ?Sized + StreamStore>(
    replica: &mut Replica<S>,
    states: &[(&str, &dyn SavedState)],
    config: &CheckpointConfig,
) -> Result<Checkpoint, CheckpointError> {
    let heads = replica.heads();
    let max = replica.config().limits.max_parents;
    if heads.len() > max {
        return Err(CheckpointError::TooManyHeads { heads: heads.len(), max });
    }
    let events = replica.len();
    let mut blocks = Vec::new();
    let mut links = BTreeMap::new();
    for (name, state) in states {
        let name = name.to_string();
        if state.folded() != events {
            return Err(CheckpointError::FoldBehind { name, folded: state.folded(), events });
        }
        let bytes = state.save_state().map_err(|error| CheckpointError::State { name: name.clone(), error })?;
        if bytes.len() > config.max_state_bytes {
            return Err(CheckpointError::StateTooLarge { name, bytes: bytes.len(), max: config.max_state_bytes });
        }
        let block = Block::from_bytes(bytes);
        links.insert(name, *block.cid());
        blocks.push(block);
    }
    let ids: Vec<EventId> = replica.dag().order().collect();
    let mut entries = entries_of(replica, &ids).await?;
    let mut positions: Vec<Digest> = entries.iter().filter(|e| fetched_in_full(e)).map(|e| e.0.0).collect();
    positions.sort_unstable();
    let members = annotate(replica, &ids, &mut entries, &positions)?;
    let (flagged, parts) =
        skeleton::build(entries.iter().filter(|e| fetched_in_full(e)).cloned().collect(), config.shape);
    blocks.extend(parts);
    let (root, parts) = skeleton::build(entries, config.shape);
    blocks.extend(parts);
    replica.store().put_many(blocks).await?;
    let payload =
        Payload { checkpoint: Body { count: events as u64, flagged, skeleton: root, states: links, members } };
    let cid = replica.append(&payload).await?;
    let block = replica.get(&cid).await?.ok_or_else(|| StoreError::Corrupt(format!("{cid}: just appended")))?;
    let checkpoint = Checkpoint::from_block(&block)?.ok_or(CheckpointError::NotACheckpoint { cid })?;
    debug_assert_eq!(checkpoint.parents, heads, "an append takes every head");
    Ok(checkpoint)
}

/// The newest checkpoint `replica` holds (the last in the total order)
/// that passes [`Checkpoint::check_trust_in`] with `trusted`. Reads events
/// from the end of the order until it finds one: the cost follows the
/// events after it.
///
/// # Errors
/// [`CheckpointError::Store`].
pub async fn latest<S: ?Sized + StreamStore>(
    replica: &Replica<S>,
    trusted: &[Cid],
) -> Result<Option<Checkpoint>, CheckpointError> {
    let order: Vec<Cid> = replica.order().collect();
    for batch in order.rchunks(BATCH) {
        let blocks = replica.store().get_many(batch).await?;
        for block in blocks.iter().rev().flatten() {
            if let Ok(Some(cp)) = Checkpoint::from_block(block)
                && cp.check_trust_in(replica, trusted).is_ok()
            {
                return Ok(Some(cp));
            }
        }
    }
    Ok(None)
}

impl<R: Resumable> Fold<R> {
    /// A fold that starts from `checkpoint`'s state named `name` instead of
    /// the genesis: it never reads the events below the checkpoint's cut
    /// (a replica that pruned their payloads can fold), and applies every
    /// other event in the total order, the checkpoint included — the late
    /// ones, concurrent with the checkpoint, after the checkpoint's state
    /// (see [`Resumable`] for when that equals the fold from the genesis).
    ///
    /// Trust is the caller's: check the checkpoint first
    /// ([`Checkpoint::check_trust_in`], or [`latest`]). The replica must
    /// hold the checkpoint; the state block is read from its store and
    /// hashed.
    ///
    /// # Errors
    /// [`CheckpointError::UnknownEvent`] when the replica lacks the
    /// checkpoint; as [`Checkpoint::state_block`]; [`CheckpointError::State`]
    /// when the block is not a state of this reducer.
    pub async fn resume<S: ?Sized + StreamStore>(
        reducer: R,
        replica: &Replica<S>,
        checkpoint: &Checkpoint,
        name: &str,
    ) -> Result<Self, CheckpointError> {
        Self::resume_with_policy(reducer, CheckpointPolicy::DEFAULT, replica, checkpoint, name).await
    }

    /// [`Fold::resume`] with a [`CheckpointPolicy`] for the fold's own
    /// in-memory checkpoints.
    ///
    /// # Errors
    /// As [`Fold::resume`].
    pub async fn resume_with_policy<S: ?Sized + StreamStore>(
        reducer: R,
        policy: CheckpointPolicy,
        replica: &Replica<S>,
        checkpoint: &Checkpoint,
        name: &str,
    ) -> Result<Self, CheckpointError> {
        if !replica.contains(&checkpoint.cid) {
            return Err(UnknownEvent { cid: checkpoint.cid }.into());
        }
        let block = checkpoint.state_block(replica.store().as_ref(), name).await?;
        let state = <R as Resumable>::load(&reducer, block.bytes())
            .map_err(|error| CheckpointError::State { name: name.to_string(), error })?;
        Ok(Fold::with_base(reducer, policy, state, &checkpoint.parents, replica)?)
    }
}
