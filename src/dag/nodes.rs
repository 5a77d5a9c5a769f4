//! The columns of the index: one entry per event in each, indexed by id.
//!
//! A struct of arrays rather than an array of structs, so that nothing pads:
//! 32 bytes of digest, 4 of height and 4 of parent per event, plus a bit
//! for "has children". Events with two or more parents (merges) keep their
//! parent lists in a side vector.
//!
//! The three per-event columns are lists of pages of [`PAGE`] entries (the
//! first page grows to that size by doubling, so a short stream stays
//! small). A page never moves: growing never copies the history or leaves
//! the freed copy behind in the allocator, and the spare capacity is at
//! most one page per column (about 150 KiB), not the half of a doubling
//! `Vec` just past a power of two.

use crate::block::Digest;

/// Set in a [`Nodes::parents`] entry that indexes the side list instead of
/// naming the event's only parent. Ids stay below it.
const MULTI: u32 = 1 << 31;

/// Entries per page: 128 KiB of digests.
const PAGE: usize = 4096;
const SHIFT: u32 = PAGE.trailing_zeros();

/// A digest on its own 32-byte line, so that reading one never touches two
/// cache lines.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Line(Digest);

#[derive(Clone)]
pub(super) struct Nodes {
    len: u32,
    digests: Column<Line>,
    /// An event's height fits in 32 bits: it is one above its parents'
    /// (the genesis is 0) and its parents have smaller ids, so it is at most
    /// its own id plus the greatest anchor height, both below 2^31
    /// ([`MAX_ANCHOR_HEIGHT`](super::MAX_ANCHOR_HEIGHT)).
    heights: Column<u32>,
    /// The only parent's id, or `MULTI | i`: the parents are then
    /// `more[i + 1..][..more[i]]` (the genesis: `more[0] == 0`; an anchor,
    /// whose parents the index does not hold, shares the genesis's empty
    /// list: `MULTI | 0`).
    parents: Column<u32>,
    more: Vec<u32>,
    /// One bit per event: whether any event names it as a parent.
    has_children: Vec<u64>,
}

impl Nodes {
    pub(super) fn new() -> Self {
        Nodes {
            len: 0,
            digests: Column::new(),
            heights: Column::new(),
            parents: Column::new(),
            more: Vec::new(),
            has_children: Vec::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    pub(super) fn digest(&self, id: u32) -> &Digest {
        &self.digests.get(id).0
    }

    #[inline]
    pub(super) fn height(&self, id: u32) -> u32 {
        *self.heights.get(id)
    }

    /// The parents of `id`, in the order they were pushed.
    #[inline]
    pub(super) fn parent_ids(&self, id: u32) -> &[u32] {
        let p = self.parents.get(id);
        if p & MULTI == 0 {
            return std::slice::from_ref(p);
        }
        let at = (p & !MULTI) as usize;
        let n = self.more[at] as usize;
        &self.more[at + 1..at + 1 + n]
    }

    /// Whether `id` is an anchor: an event other than the genesis with no
    /// parents in the index.
    #[inline]
    pub(super) fn is_anchor(&self, id: u32) -> bool {
        id > 0 && *self.parents.get(id) == MULTI
    }

    /// Marks `id` as having children (it is not a head); `true` if it had
    /// none before.
    pub(super) fn set_has_children(&mut self, id: u32) -> bool {
        let word = &mut self.has_children[id as usize / 64];
        let bit = 1 << (id % 64);
        let was = *word & bit == 0;
        *word |= bit;
        was
    }

    #[inline]
    pub(super) fn has_children(&self, id: u32) -> bool {
        self.has_children[id as usize / 64] & (1 << (id % 64)) != 0
    }

    /// Appends an event whose parents are already here and returns its id,
    /// and for each parent that had no child yet (it was a head), calls
    /// `was_head`.
    ///
    /// # Panics
    /// Past 2^31 - 1 events, or 2^31 - 1 entries of merge parent lists.
    pub(super) fn push(
        &mut self,
        digest: &Digest,
        height: u64,
        parents: impl ExactSizeIterator<Item = u32> + Clone,
        mut was_head: impl FnMut(u32),
    ) -> u32 {
        let id = self.len;
        assert!(id < MULTI, "more than 2^31 - 1 events in one stream");
        let height = u32::try_from(height).expect("an event's height is at most its id plus an anchor's height");
        let parent = match parents.len() {
            1 => parents.clone().next().expect("one parent"),
            // An anchor: the genesis's empty list (`more[0] == 0`).
            0 if id > 0 => MULTI,
            n => {
                let at = self.more.len() as u32;
                assert!(at < MULTI, "more than 2^31 - 1 entries of merge parents in one stream");
                self.more.push(n as u32);
                self.more.extend(parents.clone());
                MULTI | at
            }
        };
        self.digests.push(id, Line(*digest));
        self.heights.push(id, height);
        self.parents.push(id, parent);
        self.len += 1;
        if id.is_multiple_of(64) {
            self.has_children.push(0);
        }
        for p in parents {
            let word = &mut self.has_children[p as usize / 64];
            let bit = 1 << (p % 64);
            if *word & bit == 0 {
                *word |= bit;
                was_head(p);
            }
        }
        id
    }

    /// Heap bytes held (capacity, not length).
    pub(super) fn heap_bytes(&self) -> usize {
        self.digests.heap_bytes()
            + self.heights.heap_bytes()
            + self.parents.heap_bytes()
            + self.more.capacity() * 4
            + self.has_children.capacity() * 8
    }
}

/// A column of entries by id, in pages of [`PAGE`]. Every page but the last
/// is full; the first grows by doubling (capacities are powers of two, so
/// it stops at `PAGE`), every later one is allocated whole.
struct Column<T> {
    pages: Vec<Vec<T>>,
}

impl<T> Column<T> {
    fn new() -> Self {
        Column { pages: Vec::new() }
    }

    #[inline]
    fn get(&self, id: u32) -> &T {
        &self.pages[(id >> SHIFT) as usize][id as usize % PAGE]
    }

    /// Appends the entry of `id`, which is the column's length.
    #[inline]
    fn push(&mut self, id: u32, value: T) {
        match self.pages.last_mut() {
            Some(last) if !(id as usize).is_multiple_of(PAGE) => last.push(value),
            _ => self.new_page(value),
        }
    }

    #[cold]
    fn new_page(&mut self, value: T) {
        let mut page = Vec::with_capacity(if self.pages.is_empty() { 4 } else { PAGE });
        page.push(value);
        self.pages.push(page);
    }

    fn heap_bytes(&self) -> usize {
        self.pages.capacity() * size_of::<Vec<T>>()
            + self.pages.iter().map(Vec::capacity).sum::<usize>() * size_of::<T>()
    }
}

impl<T: Clone> Clone for Column<T> {
    /// Keeps the last page's capacity (a power of two), where `Vec::clone`
    /// would make it exact and its next doubling overshoot `PAGE`.
    fn clone(&self) -> Self {
        let mut pages = self.pages.clone();
        if let (Some(copy), Some(last)) = (pages.last_mut(), self.pages.last()) {
            copy.reserve_exact(last.capacity() - copy.len());
        }
        Column { pages }
    }
}
