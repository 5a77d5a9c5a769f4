//! The skeleton commitment: a tree of DAG-CBOR blocks over the skeleton
//! entries (digest, height, parents, flags) of every event below a
//! checkpoint's cut, sorted by digest, so that any entry can be fetched and
//! verified alone from the root's CID.
//!
//! ```text
//! branch  {"children": [[first digest (bytes 32), child link], ...]}   first digests ascending
//! leaf    {"entries":  [[digest (bytes 32), height, [parent digests], flags], ...]}   digests ascending
//! flags   bit 0: a membership event; bit 1: a checkpoint
//! entry   [digest, height, parents, flags, row]   row (when not 0): the entry's membership row
//! ```
//!
//! The membership row names the membership events in the entry's causal
//! past (itself included): row `r ≥ 1` is the checkpoint's `members[r - 1]`,
//! a list of positions in its `flagged` tree; row 0, which is not written,
//! is none. It is what lets a shallow replica of a stream with admins judge
//! a late event's author from its parents' entries alone, without walking
//! the history below them (`Replica::admit_late`).
//!
//! Every leaf is at the same depth; a lookup reads one block per level
//! (`⌈log_F(N / L)⌉ + 1` blocks for `N` events, `L` entries per leaf and `F`
//! children per branch), hashes each and checks it against the link that
//! named it, and checks that it lies in the key range its parent gave it.
//! Digests are bytes, not links, on purpose: an IPLD walker given the root
//! (a gateway's `dag-scope=all`) gets the skeleton, not the whole stream.

use ipld_core::cid::Cid;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::block::{Block, Digest, cid_from_digest, digest_of};
use crate::store::{Blockstore, StoreError};

/// The deepest skeleton tree a lookup follows (a tree of 2-child branches
/// over 2^32 leaves); deeper is [`SkeletonError::TooDeep`].
pub const MAX_DEPTH: usize = 32;

/// Flag bit: the event is a membership event (grant or revoke).
const MEMBERSHIP: u8 = 1;
/// Flag bit: the event is a checkpoint.
const CHECKPOINT: u8 = 2;

/// A skeleton part could not be fetched or is not what its parent promised.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SkeletonError {
    /// The source failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source does not hold the part.
    #[error("skeleton part {cid} is not available")]
    Missing {
        /// The part.
        cid: Cid,
    },
    /// The part's bytes do not hash to the link that named it.
    #[error("skeleton part {cid}: the bytes hash to {actual}")]
    Hash {
        /// The link.
        cid: Cid,
        /// What the bytes hash to.
        actual: Cid,
    },
    /// The part is not a skeleton node, is unsorted, or lies outside the key
    /// range its parent gave it.
    #[error("skeleton part {cid}: {reason}")]
    Malformed {
        /// The part.
        cid: Cid,
        /// What is wrong.
        reason: String,
    },
    /// The tree is deeper than [`MAX_DEPTH`].
    #[error("skeleton {root}: deeper than {MAX_DEPTH} levels")]
    TooDeep {
        /// The root.
        root: Cid,
    },
    /// The tree holds more entries than the reader accepts
    /// ([`entries_at_most`]).
    #[error("skeleton {root}: more than {max} entries")]
    TooMany {
        /// The root.
        root: Cid,
        /// The most accepted.
        max: usize,
    },
}

/// One event's skeleton: what a replica needs to place it in the DAG and
/// judge events that name it as a parent, without its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkeletonEntry {
    /// The event.
    pub cid: Cid,
    /// Its height.
    pub height: u64,
    /// Its parents, ascending.
    pub parents: Vec<Cid>,
    /// Whether it is a membership event (a shallow replica fetches those in full).
    pub membership: bool,
    /// Whether it is a checkpoint (fetched in full too).
    pub checkpoint: bool,
    /// Its membership row: the membership events in its past (itself
    /// included), as [`Checkpoint::members_row`](super::Checkpoint::members_row)
    /// reads it; 0 for none (an open stream, or a past without any).
    pub members: u32,
}

/// A skeleton entry as written: `[digest, height, parents, flags]`, and a
/// fifth element, the entry's membership row, when it is not 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry(pub D, pub u64, pub Vec<D>, pub u8, pub u32);

impl Entry {
    pub(crate) fn new(digest: Digest, height: u64, parents: Vec<Digest>, membership: bool, checkpoint: bool) -> Self {
        let flags = if membership { MEMBERSHIP } else { 0 } | if checkpoint { CHECKPOINT } else { 0 };
        Entry(D(digest), height, parents.into_iter().map(D).collect(), flags, 0)
    }

    pub(crate) fn public(&self) -> SkeletonEntry {
        SkeletonEntry {
            cid: cid_from_digest(&self.0.0),
            height: self.1,
            parents: self.2.iter().map(|d| cid_from_digest(&d.0)).collect(),
            membership: self.3 & MEMBERSHIP != 0,
            checkpoint: self.3 & CHECKPOINT != 0,
            members: self.4,
        }
    }
}

impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(if self.4 == 0 { 4 } else { 5 })?;
        t.serialize_element(&self.0)?;
        t.serialize_element(&self.1)?;
        t.serialize_element(&self.2)?;
        t.serialize_element(&self.3)?;
        if self.4 != 0 {
            t.serialize_element(&self.4)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<De: Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Entry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a skeleton entry: [digest, height, parents, flags] and a non-zero membership row")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Entry, A::Error> {
                use serde::de::Error;
                let missing = |i| A::Error::invalid_length(i, &self);
                let digest = seq.next_element()?.ok_or_else(|| missing(0))?;
                let height = seq.next_element()?.ok_or_else(|| missing(1))?;
                let parents = seq.next_element()?.ok_or_else(|| missing(2))?;
                let flags = seq.next_element()?.ok_or_else(|| missing(3))?;
                let row: Option<u32> = seq.next_element()?;
                if row == Some(0) {
                    return Err(A::Error::custom("membership row 0 is written by leaving it out"));
                }
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::invalid_length(6, &self));
                }
                Ok(Entry(digest, height, parents, flags, row.unwrap_or(0)))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A digest, written as a 32-byte byte string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct D(pub Digest);

impl Serialize for D {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for D {
    fn deserialize<De: Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?;
        let digest: Digest =
            bytes.as_slice().try_into().map_err(|_| serde::de::Error::custom("a digest is 32 bytes"))?;
        Ok(D(digest))
    }
}

/// A node of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Node {
    /// Children: the first digest under each, and its link.
    Children(Vec<(D, Cid)>),
    /// Entries.
    Entries(Vec<Entry>),
}

impl Node {
    fn first(&self) -> Option<D> {
        match self {
            Node::Children(c) => c.first().map(|c| c.0),
            Node::Entries(e) => e.first().map(|e| e.0),
        }
    }

    fn last(&self) -> Option<D> {
        match self {
            Node::Children(c) => c.last().map(|c| c.0),
            Node::Entries(e) => e.last().map(|e| e.0),
        }
    }
}

/// How a skeleton tree is cut into blocks. Any shape verifies the same way;
/// the shape only changes how many bytes a lookup reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkeletonShape {
    /// Entries per leaf. Default: 256 (about 19 KiB a leaf with one parent each).
    pub leaf: usize,
    /// Children per branch. Default: 256 (about 19 KiB a branch).
    pub fanout: usize,
}

impl SkeletonShape {
    /// 256 entries a leaf, 256 children a branch: three blocks (~40 KiB) per
    /// lookup in a skeleton of a million events.
    pub const DEFAULT: SkeletonShape = SkeletonShape { leaf: 256, fanout: 256 };

    /// A shape; `leaf` at least 1 and `fanout` at least 2.
    pub fn new(leaf: usize, fanout: usize) -> Self {
        SkeletonShape { leaf: leaf.max(1), fanout: fanout.max(2) }
    }
}

impl Default for SkeletonShape {
    fn default() -> Self {
        SkeletonShape::DEFAULT
    }
}

/// Encodes a node.
fn encode(node: &Node) -> Block {
    Block::from_bytes(serde_ipld_dagcbor::to_vec(node).expect("skeleton nodes are plain DAG-CBOR"))
}

/// Builds the tree over `entries` (any order; at least one, as the genesis
/// is always there): the root's CID and every block, the root last.
pub(crate) fn build(mut entries: Vec<Entry>, shape: SkeletonShape) -> (Cid, Vec<Block>) {
    entries.sort_unstable_by_key(|e| e.0);
    let mut blocks = Vec::new();
    let mut level: Vec<(D, Cid)> = Vec::new();
    for chunk in entries.chunks(shape.leaf.max(1)) {
        let block = encode(&Node::Entries(chunk.to_vec()));
        level.push((chunk[0].0, *block.cid()));
        blocks.push(block);
    }
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(shape.fanout));
        for chunk in level.chunks(shape.fanout.max(2)) {
            let block = encode(&Node::Children(chunk.to_vec()));
            next.push((chunk[0].0, *block.cid()));
            blocks.push(block);
        }
        level = next;
    }
    (level[0].1, blocks)
}

/// Checks one skeleton part on its own: its bytes hash to `cid` and decode
/// as a non-empty node whose keys ascend strictly. Returns the node.
///
/// # Errors
/// [`SkeletonError::Hash`] or [`SkeletonError::Malformed`].
pub(crate) fn verify_part(cid: &Cid, bytes: &[u8]) -> Result<Node, SkeletonError> {
    let actual = crate::block::cid_of(bytes);
    if actual != *cid {
        return Err(SkeletonError::Hash { cid: *cid, actual });
    }
    let malformed = |reason: String| SkeletonError::Malformed { cid: *cid, reason };
    let node: Node = serde_ipld_dagcbor::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    let ascending = match &node {
        Node::Children(c) => c.windows(2).all(|w| w[0].0 < w[1].0),
        Node::Entries(e) => e.windows(2).all(|w| w[0].0 < w[1].0),
    };
    if node.first().is_none() {
        return Err(malformed("an empty node".into()));
    }
    if !ascending {
        return Err(malformed("keys do not ascend".into()));
    }
    Ok(node)
}

/// Fetches and checks a part that its parent says holds keys in `lo..hi`
/// and starts at `lo` (when the parent names one).
async fn fetch_part<S: ?Sized + Blockstore>(
    source: &S,
    cid: &Cid,
    lo: Option<D>,
    hi: Option<D>,
) -> Result<Node, SkeletonError> {
    let block = source.get(cid).await?.ok_or(SkeletonError::Missing { cid: *cid })?;
    let node = verify_part(cid, block.bytes())?;
    let out_of_range = lo.is_some_and(|lo| node.first() != Some(lo)) || hi.is_some_and(|hi| node.last() >= Some(hi));
    if out_of_range {
        return Err(SkeletonError::Malformed { cid: *cid, reason: "keys outside the range its parent gives".into() });
    }
    Ok(node)
}

/// Looks up one event in the skeleton under `root`, reading one part per
/// level from `source` and checking each (hash, order, range). `Ok(None)`:
/// the event is not below the cut.
///
/// # Errors
/// [`SkeletonError`] when a part is missing, does not hash, or is malformed.
pub async fn lookup<S: ?Sized + Blockstore>(
    source: &S,
    root: &Cid,
    event: &Cid,
) -> Result<Option<SkeletonEntry>, SkeletonError> {
    let Some(target) = digest_of(event).map(D) else { return Ok(None) };
    let (mut cid, mut lo, mut hi) = (*root, None, None);
    for _ in 0..MAX_DEPTH {
        match fetch_part(source, &cid, lo, hi).await? {
            Node::Entries(entries) => {
                return Ok(entries.binary_search_by_key(&target, |e| e.0).ok().map(|i| entries[i].public()));
            }
            Node::Children(children) => {
                let i = children.partition_point(|c| c.0 <= target);
                if i == 0 {
                    return Ok(None);
                }
                (cid, lo, hi) = (children[i - 1].1, Some(children[i - 1].0), children.get(i).map(|c| c.0).or(hi));
            }
        }
    }
    Err(SkeletonError::TooDeep { root: *root })
}

/// Every entry under `root`, ascending by CID, each part checked as
/// [`lookup`] checks it; all leaves must be at the same depth. Reads the
/// whole skeleton: for a replica that holds the history and checks a
/// checkpoint against it.
///
/// # Errors
/// As [`lookup`].
pub async fn entries<S: ?Sized + Blockstore>(source: &S, root: &Cid) -> Result<Vec<SkeletonEntry>, SkeletonError> {
    entries_at_most(source, root, usize::MAX).await
}

/// As [`entries`], for a tree nobody has vouched for yet: reading stops
/// at the first part that takes the count past `max`.
///
/// # Errors
/// As [`lookup`]; [`SkeletonError::TooMany`].
pub async fn entries_at_most<S: ?Sized + Blockstore>(
    source: &S,
    root: &Cid,
    max: usize,
) -> Result<Vec<SkeletonEntry>, SkeletonError> {
    let mut out = Vec::new();
    // (part, its range, depth): a stack, children pushed last-first.
    let mut stack: Vec<(Cid, Option<D>, Option<D>, usize)> = vec![(*root, None, None, 0)];
    let mut leaf_depth: Option<usize> = None;
    while let Some((cid, lo, hi, depth)) = stack.pop() {
        if depth >= MAX_DEPTH {
            return Err(SkeletonError::TooDeep { root: *root });
        }
        match fetch_part(source, &cid, lo, hi).await? {
            Node::Entries(entries) => {
                if *leaf_depth.get_or_insert(depth) != depth {
                    return Err(SkeletonError::Malformed { cid, reason: "leaves at different depths".into() });
                }
                if entries.len() > max - out.len() {
                    return Err(SkeletonError::TooMany { root: *root, max });
                }
                out.extend(entries.iter().map(Entry::public));
            }
            Node::Children(children) => {
                for (i, (first, child)) in children.iter().enumerate().rev() {
                    let next = children.get(i + 1).map(|c| c.0).or(hi);
                    stack.push((*child, Some(*first), next, depth + 1));
                }
            }
        }
    }
    Ok(out)
}
