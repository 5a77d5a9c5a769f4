//! Pure functions over sets of event blocks: [`merge`] (set union),
//! [`heads`] and [`order`].
//!
//! These are the laws the rest of the library implements incrementally: a
//! replica holding the blocks of a [`BlockSet`] has exactly `heads(set)` as its
//! heads and `order(set)` as its total order, whatever order the blocks came in.

// Errors name the CID they concern by value (every variant does), so they
// are larger than clippy's default 128 bytes; they are the rare path.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashSet};

use ipld_core::cid::Cid;

use crate::block::{Block, Digest, cid_from_digest, digest_of};
use crate::error::DecodeError;
use crate::event::{Header, Limits, Parents};

/// A set of verified event blocks, keyed by CID.
///
/// Every block in it decoded as a canonical event when it was inserted; the
/// set may still be open (hold events whose parents it lacks).
///
/// ```
/// use merkle_clock::{BlockSet, Event, merge};
/// let g = Event::genesis("s").encode()?;
/// let a = Event::new(1, vec![*g.cid()], "a").encode()?;
/// let b = Event::new(1, vec![*g.cid()], "b").encode()?;
/// let left = BlockSet::from_blocks([g.clone(), a.clone()])?;
/// let right = BlockSet::from_blocks([g.clone(), b.clone()])?;
/// let both = merge(&left, &right);
/// assert_eq!(both.len(), 3);
/// assert_eq!(merkle_clock::heads(&both).len(), 2);
/// assert_eq!(merkle_clock::order(&both)[0], *g.cid());
/// # Ok::<(), merkle_clock::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockSet {
    entries: BTreeMap<Digest, Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    block: Block,
    height: u64,
    parents: Parents,
}

impl BlockSet {
    /// The empty set: the identity of [`merge`].
    pub fn new() -> Self {
        BlockSet::default()
    }

    /// Verifies and collects blocks (default [`Limits`]).
    ///
    /// # Errors
    /// The first block that is not a canonical event.
    pub fn from_blocks(blocks: impl IntoIterator<Item = Block>) -> Result<Self, DecodeError> {
        let mut set = BlockSet::new();
        for b in blocks {
            set.insert(b)?;
        }
        Ok(set)
    }

    /// Adds one block after checking it decodes as a canonical event. Returns
    /// whether it was new.
    ///
    /// # Errors
    /// [`DecodeError`] if the block is not a canonical event.
    pub fn insert(&mut self, block: Block) -> Result<bool, DecodeError> {
        self.insert_with(block, &Limits::DEFAULT)
    }

    /// As [`BlockSet::insert`], with explicit limits.
    ///
    /// # Errors
    /// [`DecodeError`] if the block is not a canonical event.
    pub fn insert_with(&mut self, block: Block, limits: &Limits) -> Result<bool, DecodeError> {
        block.verify()?;
        let digest = digest_of(block.cid()).expect("verified blocks have event CIDs");
        if self.entries.contains_key(&digest) {
            return Ok(false);
        }
        let header = Header::parse(&block, limits)?;
        self.entries.insert(digest, Entry { block, height: header.height, parents: header.parents });
        Ok(true)
    }

    /// The number of blocks.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the set holds this CID.
    pub fn contains(&self, cid: &Cid) -> bool {
        digest_of(cid).is_some_and(|d| self.entries.contains_key(&d))
    }

    /// The block with this CID.
    pub fn get(&self, cid: &Cid) -> Option<&Block> {
        digest_of(cid).and_then(|d| self.entries.get(&d)).map(|e| &e.block)
    }

    /// The blocks, ascending by CID bytes.
    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.entries.values().map(|e| &e.block)
    }

    /// The CIDs, ascending by CID bytes.
    pub fn cids(&self) -> impl Iterator<Item = Cid> + '_ {
        self.entries.keys().map(cid_from_digest)
    }
}

/// The union of two block sets. Commutative, associative and idempotent, with
/// the empty set as identity (each pinned by a `prop_` test).
pub fn merge(a: &BlockSet, b: &BlockSet) -> BlockSet {
    let (big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    let mut out = big.clone();
    for (d, e) in &small.entries {
        out.entries.entry(*d).or_insert_with(|| e.clone());
    }
    out
}

/// The heads of a block set: the events no other event of the set names as a
/// parent, ascending by CID bytes.
pub fn heads(set: &BlockSet) -> Vec<Cid> {
    let referenced: HashSet<&Digest> = set.entries.values().flat_map(|e| e.parents.iter()).collect();
    set.entries.keys().filter(|d| !referenced.contains(d)).map(cid_from_digest).collect()
}

/// The total order of a block set: ascending by `(height, CID bytes)`.
pub fn order(set: &BlockSet) -> Vec<Cid> {
    let mut keys: Vec<(u64, &Digest)> = set.entries.iter().map(|(d, e)| (e.height, d)).collect();
    keys.sort_unstable();
    keys.into_iter().map(|(_, d)| cid_from_digest(d)).collect()
}
