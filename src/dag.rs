//! The in-memory index of one stream: an arena of events with compact ids.
//!
//! Layout: at most 64 bytes per event (issue 17's budget for a pruned
//! event, whose skeleton is this index; `index_bytes_per_event` in the perf
//! report, pinned by the test `an_event_costs_at_most_64_bytes`):
//!
//! | part | bytes per event |
//! | --- | --- |
//! | digest (a column of 32-byte lines) | 32 |
//! | height (`u32`: at most the event's id plus the greatest anchor's height) | 4 |
//! | the only parent's id, or where a merge's parent list starts | 4, + 4 × (parents + 1) per merge |
//! | has-children bit (how heads are known) | 1/8 |
//! | id table: a `u32` and a control byte per bucket, at most 7/8 full | 5.7 to 11.4 |
//! | total order: sorted chunks of ids | about 4.1 |
//!
//! The columns are pages of 4096 entries that never move, so growing copies
//! nothing and leaves at most a page spare. No child lists are kept:
//! [`Dag::children`] scans the events that arrived later. Nothing holds a
//! pointer; every walk is a loop over a heap or a stack, never recursion, so
//! histories can be millions deep.
//!
//! # Anchors
//!
//! A replica that starts from a checkpoint (shallow) holds events whose
//! parents it does not: the checkpoint's cut, and the parents of late
//! events below it. [`Dag::insert_anchor`] adds such an event with the
//! height a verified skeleton lookup gave it and no parent edges. It costs
//! what any event costs (its parent slot shares the genesis's empty list),
//! and every walk simply stops at it: heads, the total order and
//! [`Dag::difference`] are those of the events held. Two questions can
//! need the history behind an anchor: [`Dag::is_ancestor`] and
//! [`Dag::compare`] then answer [`Undecided`] naming the anchor, never a
//! guess. The genesis is every event's ancestor, anchors included.

// Errors name the CID they concern by value (every variant does), so they
// are larger than clippy's default 128 bytes; they are the rare path.
#![allow(clippy::result_large_err)]

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;

use hashbrown::HashTable;
use ipld_core::cid::Cid;

use crate::block::{Digest, KeyedState, cid_from_digest, digest_of, event_digest};
use crate::error::{InsertError, UnknownEvent};

/// Anchors' heights are below this (2^31), so that every height in the
/// index fits its 32-bit column (an event's height is at most its id plus
/// the greatest anchor height).
pub const MAX_ANCHOR_HEIGHT: u64 = 1 << 31;

/// Why [`Dag::is_ancestor`] or [`Dag::compare`] gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Undecided {
    /// A CID asked about is not in the index.
    #[error(transparent)]
    Unknown(#[from] UnknownEvent),
    /// The answer depends on history below `anchor`, an event the index
    /// holds without its parents (a shallow replica's skeleton-only event):
    /// the walk reached it above the height it still looked for.
    #[error("{anchor}: the answer needs the history below this anchor, which is not held")]
    BelowAnchor {
        /// The anchor the walk stopped at.
        anchor: Cid,
    },
}

/// What [`Dag::covers`] found.
enum Cover {
    Yes,
    No,
    BelowAnchor(u32),
}

mod nodes;
mod order;

use nodes::Nodes;
use order::Order;

/// A compact handle on an event inside one [`Dag`]: its arrival index.
///
/// Ids are dense (`0..dag.len()`), 0 is the genesis, and an event's id is
/// always larger than its parents' ids. They mean nothing outside their `Dag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(u32);

impl EventId {
    /// The genesis is always id 0.
    pub const GENESIS: EventId = EventId(0);

    /// The arrival index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A position in the total order: events sort by height, then by CID bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderKey {
    /// The event's height.
    pub height: u64,
    digest: Digest,
}

impl OrderKey {
    /// The key of an event with this height and CID. `None` when the CID is
    /// not an event CID.
    pub fn new(height: u64, cid: &Cid) -> Option<Self> {
        digest_of(cid).map(|digest| OrderKey { height, digest })
    }

    /// The CID of the event at this position.
    pub fn cid(&self) -> Cid {
        cid_from_digest(&self.digest)
    }
}

/// How two clocks (sets of heads) relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockOrder {
    /// Both name the same history.
    Equal,
    /// The first history is contained in the second.
    Before,
    /// The second history is contained in the first.
    After,
    /// Each has events the other lacks.
    Concurrent,
}

/// What [`Dag::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The event is new; it has this id.
    New(EventId),
    /// The event was already there.
    Existing(EventId),
}

impl Inserted {
    /// The event's id either way.
    pub fn id(self) -> EventId {
        match self {
            Inserted::New(id) | Inserted::Existing(id) => id,
        }
    }
}

/// The index of one stream's events: heads, ancestry, clock comparison and
/// the total order, all without recursion.
///
/// ```
/// use merkle_clock::{Dag, Event, ClockOrder};
/// let g = Event::genesis("stream").encode()?;
/// let a = Event::new(1, vec![*g.cid()], "a").encode()?;
/// let b = Event::new(1, vec![*g.cid()], "b").encode()?;
/// let mut dag = Dag::new(*g.cid());
/// dag.insert(a.cid(), 1, &[*g.cid()])?;
/// dag.insert(b.cid(), 1, &[*g.cid()])?;
/// assert_eq!(dag.heads().len(), 2);
/// assert!(dag.is_ancestor(g.cid(), a.cid())?);
/// assert_eq!(dag.compare(&[*a.cid()], &[*b.cid()])?, ClockOrder::Concurrent);
/// assert_eq!(dag.compare(&[*g.cid()], &[*a.cid()])?, ClockOrder::Before);
/// # Ok::<(), merkle_clock::Error>(())
/// ```
#[derive(Clone)]
pub struct Dag {
    nodes: Nodes,
    /// Every id, keyed by its digest's keyed hash. A slot holds only the id:
    /// hashbrown's 7-bit tag rejects most other probes without reading a
    /// digest, and growing the table hashes each digest again.
    table: HashTable<u32>,
    hasher: KeyedState,
    /// The events without children, in no particular order.
    heads: Vec<u32>,
    order: Order,
    /// The anchors ([`Dag::insert_anchor`]), by id: a shallow replica's cut
    /// and late events' parents, few.
    anchors: Vec<u32>,
}

impl fmt::Debug for Dag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dag")
            .field("genesis", &crate::block::short_cid(&self.genesis()))
            .field("events", &self.nodes.len())
            .field("heads", &self.heads.len())
            .finish()
    }
}

impl Dag {
    /// An index holding only the genesis.
    ///
    /// # Panics
    /// If `genesis` is not a CIDv1 DAG-CBOR BLAKE3 CID; use [`Dag::try_new`] for untrusted input.
    pub fn new(genesis: Cid) -> Self {
        Self::try_new(genesis).expect("the genesis CID must be a dag-cbor blake3 CIDv1")
    }

    /// An index holding only the genesis.
    ///
    /// # Errors
    /// [`InsertError::UnsupportedCid`] if `genesis` is not an event CID.
    pub fn try_new(genesis: Cid) -> Result<Self, InsertError> {
        let digest = digest_of(&genesis).ok_or(InsertError::UnsupportedCid { cid: genesis })?;
        let mut dag = Dag {
            nodes: Nodes::new(),
            table: HashTable::new(),
            hasher: KeyedState::default(),
            heads: Vec::new(),
            order: Order::default(),
            anchors: Vec::new(),
        };
        dag.push_node(&digest, 0, [].into_iter());
        Ok(dag)
    }

    /// The genesis CID: the stream's identity.
    pub fn genesis(&self) -> Cid {
        cid_from_digest(self.nodes.digest(0))
    }

    /// The number of events, the genesis included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: the genesis is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether the event is in the index.
    pub fn contains(&self, cid: &Cid) -> bool {
        self.id(cid).is_some()
    }

    /// The id of an event.
    pub fn id(&self, cid: &Cid) -> Option<EventId> {
        event_digest(cid).and_then(|d| self.find(d)).map(EventId)
    }

    pub(crate) fn find(&self, digest: &Digest) -> Option<u32> {
        self.table.find(self.hasher.hash_digest(digest), |&id| self.nodes.digest(id) == digest).copied()
    }

    /// The CID of an event.
    pub fn cid(&self, id: EventId) -> Cid {
        cid_from_digest(self.nodes.digest(id.0))
    }

    pub(crate) fn digest(&self, id: EventId) -> &Digest {
        self.nodes.digest(id.0)
    }

    pub(crate) fn height_raw(&self, id: u32) -> u64 {
        u64::from(self.nodes.height(id))
    }

    /// The height of an event.
    pub fn height(&self, id: EventId) -> u64 {
        self.height_raw(id.0)
    }

    /// The event's position key in the total order.
    pub fn key(&self, id: EventId) -> OrderKey {
        OrderKey { height: self.height(id), digest: *self.digest(id) }
    }

    /// The parents of an event, ascending by CID bytes.
    pub fn parents(&self, id: EventId) -> impl ExactSizeIterator<Item = EventId> + '_ {
        self.nodes.parent_ids(id.0).iter().map(|&p| EventId(p))
    }

    /// The children of an event, ascending by id (arrival).
    ///
    /// The index keeps no child lists (they would cost 8 bytes per event
    /// for the rare reader): a head answers at once, any other event scans
    /// the parents of the events that arrived after it, a few milliseconds
    /// per million events. To walk descendants, collect the children of
    /// every event in one pass over [`Dag::arrived_since`] and
    /// [`Dag::parents`] instead of calling this per event.
    pub fn children(&self, id: EventId) -> impl Iterator<Item = EventId> + '_ {
        let end = self.nodes.len() as u32;
        let start = if self.nodes.has_children(id.0) { id.0 + 1 } else { end };
        (start..end).filter(move |&c| self.nodes.parent_ids(c).contains(&id.0)).map(EventId)
    }

    /// The heads (events with no children), ascending by CID bytes.
    pub fn heads(&self) -> Vec<Cid> {
        self.head_ids().into_iter().map(|id| self.cid(id)).collect()
    }

    /// The heads as ids, ascending by CID bytes.
    pub fn head_ids(&self) -> Vec<EventId> {
        let mut heads = Vec::with_capacity(self.heads.len());
        self.head_ids_into(&mut heads);
        heads
    }

    /// [`Dag::head_ids`] into a buffer the caller reuses.
    pub(crate) fn head_ids_into(&self, out: &mut Vec<EventId>) {
        out.clear();
        out.extend(self.heads.iter().map(|&i| EventId(i)));
        out.sort_unstable_by(|a, b| self.digest(*a).cmp(self.digest(*b)));
    }

    /// The number of heads.
    pub fn head_count(&self) -> usize {
        self.heads.len()
    }

    /// Adds an event whose parents are all present. Idempotent.
    ///
    /// # Errors
    /// [`InsertError::MissingParents`] (nothing changes), [`InsertError::WrongHeight`],
    /// [`InsertError::ForeignGenesis`] for a parentless event other than the
    /// genesis, [`InsertError::UnsupportedCid`].
    pub fn insert(&mut self, cid: &Cid, height: u64, parents: &[Cid]) -> Result<Inserted, InsertError> {
        let digest = digest_of(cid).ok_or(InsertError::UnsupportedCid { cid: *cid })?;
        let mut ds = Vec::with_capacity(parents.len());
        for p in parents {
            ds.push(digest_of(p).ok_or(InsertError::UnsupportedCid { cid: *p })?);
        }
        // Parents are a set kept in CID byte order (`parents()` promises it),
        // whatever order the caller lists them in.
        ds.sort_unstable();
        ds.dedup();
        self.insert_digests(&digest, height, &ds)
    }

    pub(crate) fn insert_digests(
        &mut self,
        digest: &Digest,
        height: u64,
        parents: &[Digest],
    ) -> Result<Inserted, InsertError> {
        if let Some(id) = self.find(digest) {
            return Ok(Inserted::Existing(EventId(id)));
        }
        if parents.is_empty() {
            return Err(InsertError::ForeignGenesis { cid: cid_from_digest(digest), genesis: self.genesis() });
        }
        let mut ids = Vec::with_capacity(parents.len());
        let mut max_height = 0;
        let mut missing = Vec::new();
        for p in parents {
            match self.find(p) {
                Some(id) => {
                    max_height = max_height.max(self.height_raw(id));
                    ids.push(id);
                }
                None => missing.push(cid_from_digest(p)),
            }
        }
        if !missing.is_empty() {
            return Err(InsertError::MissingParents { cid: cid_from_digest(digest), missing });
        }
        let expected = max_height + 1;
        if height != expected {
            return Err(InsertError::WrongHeight { cid: cid_from_digest(digest), expected, found: height });
        }
        Ok(Inserted::New(EventId(self.push_node(digest, height, ids.iter().copied()))))
    }

    /// Adds an event made on top of events already in the index, given by id
    /// (ascending by CID bytes): a local append, which knows the event is new
    /// (its parents are heads, so nothing holds it yet) and its height right.
    /// Skips the lookups of [`Dag::insert_digests`].
    pub(crate) fn push_local(&mut self, digest: &Digest, height: u64, parents: &[EventId]) -> EventId {
        debug_assert!(self.find(digest).is_none(), "a local event is new");
        debug_assert!(!parents.is_empty(), "a local event has parents");
        debug_assert_eq!(
            height,
            parents.iter().map(|p| self.height(*p)).max().unwrap_or(0) + 1,
            "a local event's height is one above its parents'"
        );
        EventId(self.push_node(digest, height, parents.iter().map(|p| p.0)))
    }

    /// Adds an event the caller has checked (new, every parent in the index,
    /// height one above theirs): an ingest's commit. Skips the duplicate and
    /// height checks of [`Dag::insert_digests`] and allocates nothing for
    /// events of up to four parents. `None` if a parent is not in the index.
    pub(crate) fn push_checked(&mut self, digest: &Digest, height: u64, parents: &[Digest]) -> Option<EventId> {
        debug_assert!(self.find(digest).is_none(), "a checked event is new");
        let mut small = [0u32; 4];
        let large: Vec<u32>;
        let ids: &[u32] = if parents.len() <= small.len() {
            for (slot, p) in small.iter_mut().zip(parents) {
                *slot = self.find(p)?;
            }
            &small[..parents.len()]
        } else {
            large = parents.iter().map(|p| self.find(p)).collect::<Option<_>>()?;
            &large
        };
        debug_assert!(!ids.is_empty(), "a checked event has parents");
        debug_assert_eq!(
            height,
            ids.iter().map(|&p| self.height_raw(p)).max().unwrap_or(0) + 1,
            "a checked event's height is one above its parents'"
        );
        Some(EventId(self.push_node(digest, height, ids.iter().copied())))
    }

    /// Adds an *anchor*: an event the index holds without its parents (they
    /// are below a checkpoint's cut), at the height a verified skeleton
    /// lookup gives ([`checkpoint::skeleton::lookup`](crate::checkpoint::skeleton::lookup)).
    /// The caller vouches for the height, as for everything under a trusted
    /// checkpoint. It is a head until an event names it; the genesis, an
    /// ancestor of every event, stops being one. Idempotent at the same
    /// height, whatever the event is held as.
    ///
    /// ```
    /// use merkle_clock::{Dag, Event, Undecided};
    /// let g = Event::genesis("stream").encode()?;
    /// let low = Event::new(41, vec![*g.cid()], "far below").encode()?; // parents not held
    /// let cut = Event::new(42, vec![*g.cid()], "the cut").encode()?;
    /// let mut dag = Dag::new(*g.cid());
    /// dag.insert_anchor(low.cid(), 41)?;
    /// dag.insert_anchor(cut.cid(), 42)?;
    /// let next = Event::new(43, vec![*cut.cid()], "after").encode()?;
    /// dag.insert(next.cid(), 43, &[*cut.cid()])?;
    /// assert!(dag.is_ancestor(cut.cid(), next.cid())?);
    /// assert!(dag.is_ancestor(g.cid(), next.cid())?);
    /// // Whether `low` is below `cut` is a question about history not held.
    /// assert!(matches!(dag.is_ancestor(low.cid(), next.cid()), Err(Undecided::BelowAnchor { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`InsertError::AnchorHeight`] when the index holds the event at
    /// another height, [`InsertError::AnchorOutOfRange`] for a height of 0
    /// or from [`MAX_ANCHOR_HEIGHT`] on, [`InsertError::UnsupportedCid`].
    /// Nothing changes then.
    pub fn insert_anchor(&mut self, cid: &Cid, height: u64) -> Result<Inserted, InsertError> {
        let digest = digest_of(cid).ok_or(InsertError::UnsupportedCid { cid: *cid })?;
        if let Some(id) = self.find(&digest) {
            let held = self.height_raw(id);
            if held != height {
                return Err(InsertError::AnchorHeight { cid: *cid, held, claimed: height });
            }
            return Ok(Inserted::Existing(EventId(id)));
        }
        if height == 0 || height >= MAX_ANCHOR_HEIGHT {
            return Err(InsertError::AnchorOutOfRange { cid: *cid, height });
        }
        self.cover_raw(0);
        let id = self.push_node(&digest, height, [].into_iter());
        self.anchors.push(id);
        Ok(Inserted::New(EventId(id)))
    }

    /// Whether the event is an anchor: held without its parents
    /// ([`Dag::insert_anchor`]).
    pub fn is_anchor(&self, id: EventId) -> bool {
        self.nodes.is_anchor(id.0)
    }

    /// Marks an event as having a child the index does not hold: an anchor
    /// below a checkpoint's cut (an ancestor of the cut), which is never a
    /// head.
    pub(crate) fn cover(&mut self, id: EventId) {
        self.cover_raw(id.0);
    }

    fn cover_raw(&mut self, id: u32) {
        if self.nodes.set_has_children(id)
            && let Some(pos) = self.heads.iter().position(|&h| h == id)
        {
            self.heads.swap_remove(pos);
        }
    }

    pub(crate) fn is_anchor_raw(&self, id: u32) -> bool {
        self.nodes.is_anchor(id)
    }

    /// Whether the index holds any anchor (a shallow replica's).
    pub fn has_anchors(&self) -> bool {
        !self.anchors.is_empty()
    }

    /// The anchors, by arrival.
    pub fn anchors(&self) -> impl ExactSizeIterator<Item = EventId> + '_ {
        self.anchors.iter().map(|&i| EventId(i))
    }

    /// Adds a node whose parents are in the index (ids ascending by CID
    /// bytes) and whose height is one above theirs.
    fn push_node(&mut self, digest: &Digest, height: u64, parents: impl ExactSizeIterator<Item = u32> + Clone) -> u32 {
        let heads = &mut self.heads;
        let id = self.nodes.push(digest, height, parents, |p| {
            // It was a head; it is not any more.
            if let Some(pos) = heads.iter().rposition(|&h| h == p) {
                heads.swap_remove(pos);
            }
        });
        self.heads.push(id);
        self.index(id);
        self.order.insert(id, (height, digest), &self.nodes);
        id
    }

    /// Enters `id` (the newest node) in the table.
    fn index(&mut self, id: u32) {
        let (nodes, hasher) = (&self.nodes, &self.hasher);
        // Growing rehashes every id from its digest. (Rebuilding in id order
        // instead, a sequential read of the digest column, cost more
        // instructions and measured no faster at a million events.)
        let rehash = |&i: &u32| hasher.hash_digest(nodes.digest(i));
        self.table.insert_unique(hasher.hash_digest(nodes.digest(id)), id, rehash);
    }

    pub(crate) fn ids_of(&self, cids: &[Cid]) -> Result<Vec<u32>, UnknownEvent> {
        let mut ids: Vec<u32> =
            cids.iter().map(|c| self.id(c).map(|i| i.0).ok_or(UnknownEvent { cid: *c })).collect::<Result<_, _>>()?;
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Whether `a` is `b` or one of its ancestors (a happened before or is b).
    /// The walk descends from `b` by height and stops below `a`'s height.
    ///
    /// # Errors
    /// [`Undecided::Unknown`] if either is not in the index;
    /// [`Undecided::BelowAnchor`] when the walk reaches an anchor (an event
    /// held without its parents, [`Dag::insert_anchor`]) above `a`'s height,
    /// so the answer lies in history the index does not hold. A full
    /// replica's index has no anchors and always answers.
    pub fn is_ancestor(&self, a: &Cid, b: &Cid) -> Result<bool, Undecided> {
        let a = self.id(a).ok_or(UnknownEvent { cid: *a })?;
        let b = self.id(b).ok_or(UnknownEvent { cid: *b })?;
        self.decide(self.covers(&[b.0], &[a.0]))
    }

    fn decide(&self, cover: Cover) -> Result<bool, Undecided> {
        match cover {
            Cover::Yes => Ok(true),
            Cover::No => Ok(false),
            Cover::BelowAnchor(anchor) => Err(Undecided::BelowAnchor { anchor: self.cid(EventId(anchor)) }),
        }
    }

    /// Compares two clocks (sets of heads, or any sets of events): whether the
    /// history of `a` is contained in that of `b`, the reverse, both, or neither.
    /// Walks only the events above the lower side's lowest height.
    ///
    /// # Errors
    /// [`Undecided::Unknown`] if a CID is not in the index,
    /// [`Undecided::BelowAnchor`] as for [`Dag::is_ancestor`].
    pub fn compare(&self, a: &[Cid], b: &[Cid]) -> Result<ClockOrder, Undecided> {
        let a = self.ids_of(a)?;
        let b = self.ids_of(b)?;
        if a == b {
            return Ok(ClockOrder::Equal);
        }
        Ok(match (self.decide(self.covers(&b, &a))?, self.decide(self.covers(&a, &b))?) {
            (true, true) => ClockOrder::Equal,
            (true, false) => ClockOrder::Before,
            (false, true) => ClockOrder::After,
            (false, false) => ClockOrder::Concurrent,
        })
    }

    /// Whether every target is an ancestor of (or one of) the `from` events.
    /// The genesis is every event's ancestor (anchors' too). A walk that pops an anchor
    /// above the lowest target still looked for cannot tell.
    fn covers(&self, from: &[u32], targets: &[u32]) -> Cover {
        // A set, so that each step of the walk tests membership in O(1) even
        // when a clock holds a thousand heads.
        // The genesis is in the history of any event (not of an empty set).
        let mut remaining: HashSet<u32> = targets.iter().copied().filter(|&t| t != 0 || from.is_empty()).collect();
        if remaining.is_empty() {
            return Cover::Yes;
        }
        let floor_of = |rem: &HashSet<u32>| rem.iter().map(|&t| self.nodes.height(t)).min().unwrap_or(0);
        let mut floor = floor_of(&remaining);
        let mut seen: HashSet<u32> = from.iter().copied().collect();
        let mut heap: BinaryHeap<(u32, u32)> = from.iter().map(|&f| (self.nodes.height(f), f)).collect();
        // The highest anchor reached (the first: the heap pops by height).
        let mut stuck: Option<u32> = None;
        while let Some((height, id)) = heap.pop() {
            if height < floor {
                break;
            }
            if remaining.remove(&id) {
                if remaining.is_empty() {
                    return Cover::Yes;
                }
                if height == floor {
                    floor = floor_of(&remaining);
                }
            }
            if stuck.is_none() && !self.anchors.is_empty() && self.nodes.is_anchor(id) {
                stuck = Some(id);
            }
            for &p in self.nodes.parent_ids(id) {
                let h = self.nodes.height(p);
                if h >= floor && seen.insert(p) {
                    heap.push((h, p));
                }
            }
        }
        // A target below an anchor reached may be in the history it does
        // not hold.
        match stuck {
            Some(anchor) if self.nodes.height(anchor) > floor => Cover::BelowAnchor(anchor),
            _ => Cover::No,
        }
    }

    /// The events in the history of `from` but not in the history of `known`,
    /// ascending by height (a topological order). Unknown CIDs in `known` are
    /// ignored. The walk paints both sides downwards by height and stops as
    /// soon as nothing unpainted by `known` is left, so its cost follows the
    /// size of the difference, not of the history.
    ///
    /// The walk stops at anchors ([`Dag::insert_anchor`]): the answer is
    /// over the events held, and an anchor counts as known only when `known`
    /// reaches it through held events. Anchors carry no payload, so sync
    /// never sends one and a fold skips them.
    ///
    /// # Errors
    /// [`UnknownEvent`] if a CID of `from` is not in the index.
    pub fn difference(&self, from: &[Cid], known: &[Cid]) -> Result<Vec<EventId>, UnknownEvent> {
        let from = self.ids_of(from)?;
        let known: Vec<u32> = known.iter().filter_map(|c| self.id(c)).map(|i| i.0).collect();
        Ok(self.difference_ids(&from, &known).into_iter().map(EventId).collect())
    }

    pub(crate) fn difference_ids(&self, from: &[u32], known: &[u32]) -> Vec<u32> {
        const NEW: bool = true;
        let mut color: HashMap<u32, bool> = HashMap::new();
        let mut heap: BinaryHeap<(u32, u32)> = BinaryHeap::new();
        let mut new_pending = 0usize;
        for &k in known {
            if color.insert(k, !NEW).is_none() {
                heap.push((self.nodes.height(k), k));
            }
        }
        for &f in from {
            if let std::collections::hash_map::Entry::Vacant(e) = color.entry(f) {
                e.insert(NEW);
                new_pending += 1;
                heap.push((self.nodes.height(f), f));
            }
        }
        let mut out = Vec::new();
        while new_pending > 0 {
            let Some((_, id)) = heap.pop() else { break };
            let c = color[&id];
            if c == NEW {
                new_pending -= 1;
                out.push(id);
            }
            for &p in self.nodes.parent_ids(id) {
                match color.get(&p).copied() {
                    None => {
                        color.insert(p, c);
                        if c == NEW {
                            new_pending += 1;
                        }
                        heap.push((self.nodes.height(p), p));
                    }
                    Some(NEW) if c != NEW => {
                        // Still in the heap (parents sort below children): repaint as known.
                        color.insert(p, !NEW);
                        new_pending -= 1;
                    }
                    Some(_) => {}
                }
            }
        }
        out.reverse();
        out
    }

    /// All events in the total order: by height, then by CID bytes.
    pub fn order(&self) -> impl Iterator<Item = EventId> + '_ {
        self.order.chunks.iter().flatten().map(|&i| EventId(i))
    }

    /// The events at or after `key` in the total order.
    pub fn order_from(&self, key: &OrderKey) -> impl Iterator<Item = EventId> + '_ {
        let (ci, pos) = self.order.locate(&(key.height, &key.digest), &self.nodes);
        let first = self.order.chunks.get(ci).map(|c| &c[pos..]).unwrap_or(&[]);
        let rest = self.order.chunks.get(ci + 1..).unwrap_or(&[]);
        first.iter().chain(rest.iter().flatten()).map(|&i| EventId(i))
    }

    /// The number of events strictly before `key` in the total order.
    pub fn position(&self, key: &OrderKey) -> usize {
        let (ci, pos) = self.order.locate(&(key.height, &key.digest), &self.nodes);
        self.order.chunks[..ci].iter().map(Vec::len).sum::<usize>() + pos
    }

    /// Events that arrived after the first `since` (their ids are `since..len`).
    pub fn arrived_since(&self, since: usize) -> impl Iterator<Item = EventId> + '_ {
        (since.min(self.nodes.len())..self.nodes.len()).map(|i| EventId(i as u32))
    }

    /// Approximate heap bytes held by the index (capacity, not length).
    pub fn heap_bytes(&self) -> usize {
        self.nodes.heap_bytes()
            + self.table.allocation_size()
            + (self.heads.capacity() + self.anchors.capacity()) * 4
            + self.order.heap_bytes()
    }
}

impl Ord for ClockOrder {
    fn cmp(&self, other: &Self) -> Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

impl PartialOrd for ClockOrder {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::cid_of;

    fn cid(i: u64) -> Cid {
        cid_of(&i.to_le_bytes())
    }

    /// Issue 17's budget for a pruned event's skeleton, which this index is.
    #[test]
    fn an_event_costs_at_most_64_bytes() {
        let mut dag = Dag::new(cid(0));
        for i in 1..100_000u64 {
            dag.insert(&cid(i), i, &[cid(i - 1)]).unwrap();
        }
        assert_eq!(dag.len(), 100_000);
        let per_event = dag.heap_bytes() as f64 / dag.len() as f64;
        assert!(per_event <= 64.0, "{per_event:.1} bytes per event");
    }

    /// A shallow index: anchors at the cut, events above them. Walks stop
    /// at anchors; heads and order are those of the events held; a question
    /// about history below an anchor is `BelowAnchor`, never a guess.
    #[test]
    fn anchors_stop_walks_and_questions_below_them_are_undecided() {
        let g = cid(0);
        let mut dag = Dag::new(g);
        let (low, x, y) = (cid(1), cid(2), cid(3));
        dag.insert_anchor(&low, 7).unwrap();
        dag.insert_anchor(&x, 9).unwrap();
        dag.insert_anchor(&y, 9).unwrap();
        let before = dag.heap_bytes();
        assert_eq!(dag.insert_anchor(&x, 9).unwrap(), Inserted::Existing(dag.id(&x).unwrap()));
        assert!(matches!(dag.insert_anchor(&x, 8), Err(InsertError::AnchorHeight { held: 9, claimed: 8, .. })));
        assert!(matches!(dag.insert_anchor(&cid(9), 0), Err(InsertError::AnchorOutOfRange { .. })));
        assert!(matches!(dag.insert_anchor(&cid(9), MAX_ANCHOR_HEIGHT), Err(InsertError::AnchorOutOfRange { .. })));
        assert_eq!(dag.heap_bytes(), before, "refused anchors change nothing");
        let mut cut = vec![x, y];
        cut.sort_unstable();
        assert_eq!(dag.heads().len(), 3, "the anchors are heads, the genesis is not");
        assert!(!dag.heads().contains(&g));
        let c = cid(4);
        dag.insert(&c, 10, &cut).unwrap();
        let after = cid(5);
        dag.insert(&after, 11, &[c]).unwrap();
        let late = cid(6);
        dag.insert(&late, 8, &[low]).unwrap();
        let mut heads = vec![after, late];
        heads.sort_unstable();
        assert_eq!(dag.heads(), heads);
        assert!(dag.is_anchor(dag.id(&x).unwrap()) && !dag.is_anchor(EventId::GENESIS));
        // Order by (height, CID) over what is held.
        let heights: Vec<u64> = dag.order().map(|i| dag.height(i)).collect();
        assert_eq!(heights, vec![0, 7, 8, 9, 9, 10, 11]);
        // Decidable: through held edges, the genesis, at or above a target's height.
        assert!(dag.is_ancestor(&x, &after).unwrap());
        assert!(dag.is_ancestor(&g, &late).unwrap());
        assert!(!dag.is_ancestor(&after, &x).unwrap());
        assert_eq!(dag.compare(&[x], &[after]).unwrap(), ClockOrder::Before);
        // Undecidable: `low` may be below `x` in the history not held.
        let below = Undecided::BelowAnchor { anchor: x.min(y) };
        assert_eq!(dag.is_ancestor(&low, &after), Err(below.clone()));
        assert_eq!(dag.compare(&[late], &[after]), Err(below.clone()));
        // A held event at height 8 could be below the cut too.
        assert_eq!(dag.is_ancestor(&late, &after), Err(below));
        // Walks stop at anchors: the difference is over held events.
        let diff: Vec<Cid> = dag.difference(&[after], &[x]).unwrap().into_iter().map(|i| dag.cid(i)).collect();
        assert_eq!(diff, vec![y, c, after]);
    }

    /// Merges keep their parent lists aside and heads come from a bit, so
    /// check both against what was inserted: parents in CID order, children
    /// by arrival, heads, heights.
    #[test]
    fn merges_keep_their_parents_and_children_are_found_by_scanning() {
        let g = cid(0);
        let mut dag = Dag::new(g);
        let (a, b, c) = (cid(1), cid(2), cid(3));
        for x in [a, b, c] {
            dag.insert(&x, 1, &[g]).unwrap();
        }
        let m = cid(4);
        dag.insert(&m, 2, &[c, a, b]).unwrap();
        let id = |x: &Cid| dag.id(x).unwrap();
        let mut sorted = vec![a, b, c];
        sorted.sort_unstable();
        assert_eq!(dag.parents(id(&m)).map(|p| dag.cid(p)).collect::<Vec<_>>(), sorted);
        assert_eq!(dag.parents(EventId::GENESIS).len(), 0);
        assert_eq!(dag.children(EventId::GENESIS).collect::<Vec<_>>(), vec![id(&a), id(&b), id(&c)]);
        assert_eq!(dag.children(id(&b)).collect::<Vec<_>>(), vec![id(&m)]);
        assert_eq!(dag.children(id(&m)).count(), 0);
        assert_eq!(dag.heads(), vec![m]);
        assert_eq!(dag.height(id(&m)), 2);
        let d = cid(5);
        dag.insert(&d, 2, &[a]).unwrap();
        let mut heads = vec![m, d];
        heads.sort_unstable();
        assert_eq!(dag.heads(), heads);
        let id = |x: &Cid| dag.id(x).unwrap();
        assert_eq!(dag.children(id(&a)).collect::<Vec<_>>(), vec![id(&m), id(&d)]);
    }
}
