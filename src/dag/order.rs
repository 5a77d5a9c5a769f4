//! The total order as a list of sorted chunks of ids.

use super::nodes::Nodes;
use crate::block::Digest;

/// Most ids in one chunk of the total order.
const CHUNK: usize = 1024;

/// A position in the order: height, then digest (the CID's bytes after a
/// common prefix, so the same order as the CID bytes).
pub(super) type Key<'a> = (u64, &'a Digest);

#[inline]
pub(super) fn key_of(nodes: &Nodes, id: u32) -> Key<'_> {
    (u64::from(nodes.height(id)), nodes.digest(id))
}

/// The total order as a list of sorted chunks, so that an insert moves at
/// most one chunk and appends in height order are a push.
#[derive(Clone, Default)]
pub(super) struct Order {
    pub(super) chunks: Vec<Vec<u32>>,
}

impl Order {
    /// Places `id`, whose key is `k` and whose node is already in `nodes`.
    pub(super) fn insert(&mut self, id: u32, k: Key<'_>, nodes: &Nodes) {
        let Some(last) = self.chunks.last_mut() else {
            self.chunks.push(Self::chunk_with(id));
            return;
        };
        if key_of(nodes, *last.last().expect("chunks are never empty")) < k {
            if last.len() < CHUNK {
                room_for_one(last);
                last.push(id);
            } else {
                self.chunks.push(Self::chunk_with(id));
            }
            return;
        }
        // First chunk whose last key is above k; search from the end, where late events land.
        let ci = self.chunk_of(&k, nodes);
        let chunk = &mut self.chunks[ci];
        let pos = chunk.partition_point(|&i| key_of(nodes, i) < k);
        room_for_one(chunk);
        chunk.insert(pos, id);
        if chunk.len() <= CHUNK {
            return;
        }
        if self.chunks.get(ci + 1).is_some_and(|next| next.len() < CHUNK) {
            // The next chunk has room (it is the last one, still filling):
            // hand it this chunk's last id rather than split a full chunk.
            let moved = self.chunks[ci].pop().expect("the chunk is full");
            let next = &mut self.chunks[ci + 1];
            room_for_one(next);
            next.insert(0, moved);
            return;
        }
        // Halves, except that a split of the last chunk leaves it full up
        // to the new id: events land there in nearly ascending order
        // (concurrent writers at one height) and the appends after them go
        // to the right, so an even split would leave every chunk of the
        // history half empty.
        let last = ci + 1 == self.chunks.len();
        let chunk = &mut self.chunks[ci];
        let at = if last { pos.max(CHUNK / 2) } else { CHUNK / 2 };
        let tail = chunk.len() - at;
        let mut right =
            Vec::with_capacity(if last { (tail * 2).next_power_of_two().clamp(8, CHUNK + 1) } else { CHUNK + 1 });
        right.extend_from_slice(&chunk[at..]);
        chunk.truncate(at);
        self.chunks.insert(ci + 1, right);
    }

    /// A new last chunk. It starts small and grows as events land in it:
    /// a replica of a short stream (a million of them in a simulation)
    /// does not pay for a full chunk.
    fn chunk_with(id: u32) -> Vec<u32> {
        let mut c = Vec::with_capacity(8);
        c.push(id);
        c
    }

    /// The first chunk whose last key is not below `k` (`chunks.len()` if
    /// none). A gallop back from the end, then a binary search: late events
    /// and readers land near the end, so this touches the last few chunks
    /// (nodes still in cache) instead of log2(chunks) nodes anywhere in the
    /// history.
    fn chunk_of(&self, k: &Key<'_>, nodes: &Nodes) -> usize {
        let below = |c: &Vec<u32>| key_of(nodes, *c.last().expect("chunks are never empty")) < *k;
        let mut hi = self.chunks.len(); // the answer is at most hi
        let mut step = 1;
        loop {
            let lo = hi.saturating_sub(step);
            if lo == 0 || below(&self.chunks[lo - 1]) {
                return lo + self.chunks[lo..hi].partition_point(below);
            }
            hi = lo - 1;
            step *= 2;
        }
    }

    /// The chunk and offset of the first id whose key is not below `k`.
    pub(super) fn locate(&self, k: &Key<'_>, nodes: &Nodes) -> (usize, usize) {
        let ci = self.chunk_of(k, nodes);
        match self.chunks.get(ci) {
            Some(c) => (ci, c.partition_point(|&i| key_of(nodes, i) < *k)),
            None => (ci, 0),
        }
    }

    /// Heap bytes held (capacity, not length).
    pub(super) fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * size_of::<Vec<u32>>() + self.chunks.iter().map(|c| c.capacity() * 4).sum::<usize>()
    }
}

/// Room for one more id in a chunk: doubling, but never past CHUNK + 1 (a
/// full chunk takes one insert before it splits), where `Vec`'s own growth
/// would double a full chunk to 2048.
fn room_for_one(chunk: &mut Vec<u32>) {
    if chunk.len() == chunk.capacity() {
        let target = if chunk.len() * 2 >= CHUNK { CHUNK + 1 } else { (chunk.len() * 2).max(8) };
        chunk.reserve_exact(target - chunk.len());
    }
}
