//! Taking blocks from anywhere: classify, release pending descendants, commit.

use std::collections::{HashMap, HashSet};

use ipld_core::cid::Cid;
use tracing::{Instrument, debug_span};

use super::{EventRef, Ingest, IngestReport, Rejection, Replica};
use crate::auth::{self, AuthError, StateRef};
use crate::block::{Block, Digest, KeyedState, cid_from_digest, digest_of};
use crate::error::InsertError;
use crate::event::Header;
use crate::store::{StoreError, StreamStore, commit};

impl<S: ?Sized + StreamStore> Replica<S> {
    /// Commits what an ingest (or a local append's release) accepted, then
    /// adds it to the index. On a store error nothing is in the index or the
    /// store, and the events go back to waiting where they still can.
    pub(super) async fn commit_batch(&mut self, batch: Batch) -> Result<(), StoreError> {
        if batch.accepted.is_empty() {
            return Ok(());
        }
        let new_heads = self.heads_after(&batch);
        let (blocks, headers): (Vec<Block>, Vec<Header>) = batch.accepted.into_iter().unzip();
        if let Err(e) = commit(&*self.store, &self.stream, &blocks, &new_heads).await {
            for (block, header) in blocks.into_iter().zip(headers) {
                let missing: Vec<Digest> =
                    header.parents.iter().filter(|p| self.dag.find(p).is_none()).copied().collect();
                if !missing.is_empty() {
                    self.buffer(block, header, missing);
                }
            }
            return Err(e);
        }
        let mut states = batch.states;
        for (block, header) in blocks.iter().zip(&headers) {
            let digest = digest_of(block.cid()).expect("event CIDs");
            let Some(id) = self.dag.push_checked(&digest, header.height, &header.parents) else {
                return Err(StoreError::Corrupt(format!(
                    "checked event {} has a parent not in the index",
                    block.cid()
                )));
            };
            let author = header.auth.as_deref().and_then(|a| a.author);
            if let (Some(index), Some(state), Some(author)) = (self.members.as_mut(), states.remove(&digest), author) {
                index.push(id, state, author);
            }
        }
        self.metrics.accepted += blocks.len() as u64;
        Ok(())
    }

    pub(super) fn validate(&self, block: &Block, header: &Header) -> Result<(), Rejection> {
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
        let classified: Vec<Classified> = blocks.into_iter().map(|block| self.classify(block, &mut batch)).collect();
        let accepted: Vec<Cid> = batch.accepted.iter().map(|(b, _)| *b.cid()).collect();
        let rejected = std::mem::take(&mut batch.rejected);
        self.commit_batch(batch).await?;
        let outcomes = classified
            .into_iter()
            .map(|c| match c {
                Classified::Decided(outcome) => outcome,
                Classified::Undecided(digest) => self.settle(&digest, &rejected),
            })
            .collect();
        Ok(IngestReport { outcomes, accepted })
    }

    /// The outcome of a block whose fate depended on the rest of its batch,
    /// now that the batch is committed.
    fn settle(&self, digest: &Digest, rejected: &HashMap<Digest, Rejection, KeyedState>) -> Ingest {
        // Undecided blocks were not in the index before: in it now means accepted.
        if self.dag.find(digest).is_some() {
            Ingest::Accepted
        } else if let Some(p) = self.pending.events.get(digest) {
            Ingest::Pending {
                missing: p.header.parents.iter().filter(|q| self.dag.find(q).is_none()).map(cid_from_digest).collect(),
            }
        } else if let Some(r) = rejected.get(digest) {
            Ingest::Rejected(r.clone())
        } else {
            // Buffered, then evicted within this call.
            Ingest::Pending { missing: Vec::new() }
        }
    }

    /// Decides what to do with one block: a final outcome now, or later once
    /// the rest of the batch is decided.
    fn classify(&mut self, block: Block, batch: &mut Batch) -> Classified {
        let Some(digest) = digest_of(block.cid()) else {
            let e = crate::block::check_cid(block.cid()).expect_err("not an event CID");
            return self.reject_now(Rejection::Decode(e.into()));
        };
        if self.dag.find(&digest).is_some() || batch.heights.contains_key(&digest) {
            self.metrics.duplicate += 1;
            return Classified::Decided(Ingest::Duplicate);
        }
        if self.pending.events.contains_key(&digest) {
            self.metrics.duplicate += 1;
            return Classified::Undecided(digest);
        }
        let header = match Header::parse(&block, &self.config.limits) {
            Ok(h) => h,
            Err(e) => return self.reject_now(Rejection::Decode(e)),
        };
        if header.parents.is_empty() {
            let foreign = InsertError::ForeignGenesis { cid: *block.cid(), genesis: self.stream };
            return self.reject_now(Rejection::Insert(foreign));
        }
        // Signatures depend on the event alone: a forged event never waits.
        if let Err(r) = self.check_signature(&block, &header) {
            return self.reject_final(digest, r, batch);
        }
        if !self.validators.is_empty()
            && let Err(r) = self.validate(&block, &header)
        {
            return self.reject_final(digest, r, batch);
        }
        let parents = self.parent_heights(&header, batch);
        if !parents.missing.is_empty() {
            self.metrics.pending += 1;
            self.buffer(block, header, parents.missing);
            return Classified::Undecided(digest);
        }
        if let Err(r) = height_rule(&block, &header, parents.max_height) {
            return self.reject_final(digest, r, batch);
        }
        if self.dag.has_anchors() && self.may_be_below_cut(&digest, &header) {
            self.park(block, header);
            return Classified::Decided(Ingest::Pending { missing: Vec::new() });
        }
        let state = match self.authorize(&block, &header, batch) {
            Ok(state) => state,
            Err(r) => return self.reject_final(digest, r, batch),
        };
        batch.accept(digest, block, header, state);
        self.release(digest, batch);
        Classified::Decided(Ingest::Accepted)
    }

    /// The signature, if any, verifies; an unsigned event only on an open stream.
    fn check_signature(&mut self, block: &Block, header: &Header) -> Result<(), Rejection> {
        self.verifier.verify(&self.stream, block, header)?;
        let signed = header.auth.as_deref().is_some_and(|a| a.author.is_some());
        if self.members.is_some() && !signed {
            return Err(AuthError::Unsigned { cid: *block.cid() }.into());
        }
        Ok(())
    }

    /// The membership rules for an event whose parents are all known (in the
    /// index or this batch): the state its past establishes, with its own
    /// operation added; `None` on an open stream.
    fn authorize(&mut self, block: &Block, header: &Header, batch: &Batch) -> Result<Option<StateRef>, Rejection> {
        let fields = header.auth.as_deref();
        let author = fields.and_then(|a| a.author);
        let op = fields.and_then(|a| a.member);
        let Some(index) = self.members.as_mut() else {
            auth::authorize(None, *block.cid(), author, op.as_ref())?;
            return Ok(None);
        };
        let mut parents: Vec<StateRef> = Vec::with_capacity(header.parents.len());
        for p in &header.parents {
            let state = match self.dag.find(p) {
                Some(id) => index.state_raw(id),
                None => batch.states.get(p).ok_or_else(|| {
                    Rejection::Insert(InsertError::MissingParents {
                        cid: *block.cid(),
                        missing: vec![cid_from_digest(p)],
                    })
                })?,
            };
            parents.push(state.clone());
        }
        let past = index.union_of(&parents);
        auth::authorize(Some(&past), *block.cid(), author, op.as_ref())?;
        Ok(Some(match op {
            Some(op) => index.with_op(&past, *block.cid(), op),
            None => past,
        }))
    }

    /// Refuses a well-formed event (its CID is its bytes' own) for good: the
    /// events waiting on it in the pending buffer can never join either.
    fn reject_final(&mut self, digest: Digest, r: Rejection, batch: &mut Batch) -> Classified {
        self.reject_descendants(digest, batch);
        self.reject_now(r)
    }

    /// Counts a refusal decided on the spot.
    fn reject_now(&mut self, r: Rejection) -> Classified {
        *self.metrics.rejected.entry(r.reason()).or_default() += 1;
        Classified::Decided(Ingest::Rejected(r))
    }

    /// Counts a refusal of a released or descendant event, kept in the batch
    /// for [`Replica::settle`].
    fn reject_later(&mut self, digest: Digest, r: Rejection, batch: &mut Batch) {
        *self.metrics.rejected.entry(r.reason()).or_default() += 1;
        batch.rejected.insert(digest, r);
    }

    /// One lookup per parent: whether it is known (in the index or accepted
    /// earlier in this batch), and its height.
    fn parent_heights(&self, header: &Header, batch: &Batch) -> ParentHeights {
        let mut out = ParentHeights { max_height: 0, missing: Vec::new() };
        for p in &header.parents {
            match self.dag.find(p).map(|id| self.dag.height_raw(id)).or_else(|| batch.heights.get(p).copied()) {
                Some(h) => out.max_height = out.max_height.max(h),
                None => out.missing.push(*p),
            }
        }
        out
    }

    fn buffer(&mut self, block: Block, header: Header, missing: Vec<Digest>) {
        let evicted = self.pending.insert(block, header, missing, &self.config);
        self.metrics.evicted += evicted as u64;
    }

    /// Accepts, iteratively, every pending event that `digest` completes.
    pub(super) fn release(&mut self, digest: Digest, batch: &mut Batch) {
        if self.pending.waiting.is_empty() {
            return;
        }
        let mut work = vec![digest];
        while let Some(parent) = work.pop() {
            for (block, header) in self.pending.take_ready(&parent) {
                let d = digest_of(block.cid()).expect("event CIDs");
                // Its last missing parent just joined: every parent is known.
                let max_height = self.parent_heights(&header, batch).max_height;
                if self.dag.has_anchors()
                    && height_rule(&block, &header, max_height).is_ok()
                    && self.may_be_below_cut(&d, &header)
                {
                    self.park(block, header);
                    continue;
                }
                let admitted =
                    height_rule(&block, &header, max_height).and_then(|()| self.authorize(&block, &header, batch));
                match admitted {
                    Ok(state) => {
                        batch.accept(d, block, header, state);
                        work.push(d);
                    }
                    Err(r) => {
                        self.reject_later(d, r, batch);
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
                self.reject_later(child, r, batch);
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

/// The height rule, the one place it is checked: an event's height is 1 +
/// the largest height of its parents.
fn height_rule(block: &Block, header: &Header, max_parent_height: u64) -> Result<(), Rejection> {
    let expected = max_parent_height + 1;
    if header.height != expected {
        return Err(Rejection::Insert(InsertError::WrongHeight { cid: *block.cid(), expected, found: header.height }));
    }
    Ok(())
}

/// What [`Replica::classify`] decided about one block.
enum Classified {
    /// The outcome is known now.
    Decided(Ingest),
    /// The block waits in (or was already in) the pending buffer: whether
    /// it ends accepted, pending or rejected depends on the rest of the
    /// batch, and is read after the commit ([`Replica::settle`]).
    Undecided(Digest),
}

/// The parents of one event as the index and the batch know them.
struct ParentHeights {
    /// The largest height among the known parents (0 if none is known).
    max_height: u64,
    /// The parents neither in the index nor accepted in this batch.
    missing: Vec<Digest>,
}

/// What one ingest call has decided so far.
#[derive(Default)]
pub(super) struct Batch {
    accepted: Vec<(Block, Header)>,
    heights: HashMap<Digest, u64, KeyedState>,
    rejected: HashMap<Digest, Rejection, KeyedState>,
    /// The membership of accepted events, on a stream with admins.
    states: HashMap<Digest, StateRef, KeyedState>,
}

impl Batch {
    pub(super) fn accept(&mut self, digest: Digest, block: Block, header: Header, state: Option<StateRef>) {
        self.heights.insert(digest, header.height);
        if let Some(state) = state {
            self.states.insert(digest, state);
        }
        self.accepted.push((block, header));
    }
}
