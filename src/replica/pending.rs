//! The pending buffer: events waiting for parents, bounded by count and by
//! the memory they hold.
//!
//! What an entry costs is computed from the sizes of the structures below,
//! not guessed: see [`entry_cost`]. The buffer counts it against
//! [`ReplicaConfig::max_pending_bytes`], so the cap is the memory held.

use std::collections::{HashMap, VecDeque};
use std::mem::size_of;

use bytes::Bytes;

use super::ReplicaConfig;
use crate::block::{Block, Digest, KeyedState, digest_of};
use crate::event::{Header, Parents};

/// A waiting event's entry in the missing parent's list: the child and its
/// arrival number.
type Waiter = (Digest, u64);

/// Events waiting for parents, bounded by count and bytes; the oldest go first.
#[derive(Default)]
#[cfg_attr(any(test, feature = "testing"), derive(Clone))]
pub(super) struct PendingBuffer {
    pub(super) events: HashMap<Digest, PendingEvent, KeyedState>,
    /// Missing parent → the events waiting on it (with their arrival number).
    pub(super) waiting: HashMap<Digest, Vec<Waiter>, KeyedState>,
    /// Arrival order, for eviction; entries of events gone already are skipped.
    queue: VecDeque<(u64, Digest)>,
    /// The memory counted for the events held: blocks plus [`entry_cost`].
    pub(super) bytes: usize,
    next_seq: u64,
}

#[cfg_attr(any(test, feature = "testing"), derive(Clone))]
pub(super) struct PendingEvent {
    pub(super) block: Block,
    pub(super) header: Header,
    missing: usize,
    seq: u64,
    /// What this entry added to [`PendingBuffer::bytes`].
    cost: usize,
}

/// A hash table's share of one entry, counted at its worst: tables grow by
/// doubling and are at most 7/8 full, so just after growing one holds 7/16 of
/// its slots, 16/7 slots (each with a control byte) per entry.
const fn table_slot<T>() -> usize {
    (size_of::<T>() + 1) * 16 / 7
}

/// The arrival queue's share of one entry, counted at its worst: the queue
/// keeps at most about two entries per event (stale ones are swept out), and
/// a `VecDeque` that just doubled is half full.
const QUEUE_PER_EVENT: usize = 4 * size_of::<(u64, Digest)>();

/// A waiter list's first allocation holds four waiters (`Vec`'s smallest
/// non-zero capacity for elements of this size); a longer list at most
/// doubles, so four waiters per missing parent bound every list.
const WAITERS_PER_LIST: usize = 4;

/// What one missing parent costs: a slot in the waiting table and a minimal
/// waiter list.
const PER_MISSING_PARENT: usize = table_slot::<(Digest, Vec<Waiter>)>() + WAITERS_PER_LIST * size_of::<Waiter>();

/// The bookkeeping of one pending event, on top of its block's bytes: its
/// slot in the event table (the key, the block's handle and CID, the header),
/// its share of the arrival queue, its parents when they do not fit inline in
/// the header, and the waiting-list cost of each missing parent.
pub(super) fn entry_cost(parents: usize, missing: usize) -> usize {
    let spilled = if parents > Parents::INLINE { parents * size_of::<Digest>() } else { 0 };
    table_slot::<(Digest, PendingEvent)>() + QUEUE_PER_EVENT + spilled + missing * PER_MISSING_PARENT
}

impl PendingBuffer {
    /// Buffers an event; returns how many events were evicted to make room.
    pub(super) fn insert(
        &mut self,
        block: Block,
        header: Header,
        missing: Vec<Digest>,
        config: &ReplicaConfig,
    ) -> usize {
        let digest = digest_of(block.cid()).expect("event CIDs");
        // An allocation of its own: a block sliced from a larger buffer (a
        // sync message, a CAR file) would otherwise keep all of it alive.
        let block = Block::new_unchecked(*block.cid(), Bytes::copy_from_slice(block.bytes()));
        let seq = self.next_seq;
        self.next_seq += 1;
        for m in &missing {
            self.waiting.entry(*m).or_default().push((digest, seq));
        }
        // A signed event's header holds its signed-stream fields on the heap.
        let boxed = header.auth.as_ref().map_or(0, |_| size_of::<crate::auth::AuthFields>());
        let cost = block.len() + entry_cost(header.parents.len(), missing.len()) + boxed;
        self.bytes += cost;
        self.queue.push_back((seq, digest));
        self.events.insert(digest, PendingEvent { block, header, missing: missing.len(), seq, cost });
        let mut evicted = 0;
        while self.events.len() > config.max_pending_events || self.bytes > config.max_pending_bytes {
            let Some((seq, d)) = self.queue.pop_front() else { break };
            if self.events.get(&d).is_some_and(|e| e.seq == seq) {
                self.remove(&d);
                evicted += 1;
            }
        }
        // Keep the queue from filling with entries of events gone already.
        if self.queue.len() > 2 * self.events.len() + 64 {
            let events = &self.events;
            self.queue.retain(|(s, d)| events.get(d).is_some_and(|e| e.seq == *s));
        }
        evicted
    }

    /// Removes an event and its entries in the waiting lists.
    pub(super) fn remove(&mut self, digest: &Digest) -> Option<PendingEvent> {
        let event = self.events.remove(digest)?;
        self.bytes -= event.cost;
        for p in &event.header.parents {
            if let Some(list) = self.waiting.get_mut(p) {
                list.retain(|(d, s)| !(d == digest && *s == event.seq));
                if list.is_empty() {
                    self.waiting.remove(p);
                }
            }
        }
        Some(event)
    }

    /// `parent` joined the DAG: returns the waiting events it completed.
    pub(super) fn take_ready(&mut self, parent: &Digest) -> Vec<(Block, Header)> {
        let Some(waiters) = self.waiting.remove(parent) else { return Vec::new() };
        let mut ready = Vec::new();
        for (child, seq) in waiters {
            let Some(e) = self.events.get_mut(&child) else { continue };
            if e.seq != seq {
                continue;
            }
            e.missing -= 1;
            if e.missing == 0 {
                let e = self.remove(&child).expect("present");
                ready.push((e.block, e.header));
            }
        }
        ready
    }

    /// Removes and returns the events waiting on `parent`.
    pub(super) fn remove_waiters(&mut self, parent: &Digest) -> Vec<Waiter> {
        let Some(waiters) = self.waiting.remove(parent) else { return Vec::new() };
        waiters
            .into_iter()
            .filter(|(d, s)| self.events.get(d).is_some_and(|e| e.seq == *s) && self.remove(d).is_some())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counted bookkeeping covers at least the structures themselves.
    #[test]
    fn an_entry_counts_at_least_its_structures() {
        let one_parent = entry_cost(1, 1);
        let structures = size_of::<Digest>()
            + size_of::<PendingEvent>()
            + size_of::<(u64, Digest)>()
            + size_of::<(Digest, Vec<Waiter>)>()
            + size_of::<Waiter>();
        assert!(one_parent >= structures, "{one_parent} < {structures}");
        // Spilled parents and every missing parent add to it.
        assert!(entry_cost(5, 5) >= one_parent + 5 * size_of::<Digest>() + 4 * size_of::<Waiter>());
    }
}
