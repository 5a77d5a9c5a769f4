//! The pending buffer's byte cap is the memory it holds: a flood of small
//! orphans (events whose parents nobody has) is measured with a counting
//! allocator, and the bytes the buffer counts must cover what it really
//! allocated.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use futures::executor::block_on;
use merkle_clock::{Block, Cid, Event, Ingest, MemoryBlockstore, Replica, ReplicaConfig};

/// Counts the bytes each thread holds, so tests running in parallel do not
/// see each other's allocations.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn add(delta: isize) {
    // `try_with`: allocations during thread teardown are not counted.
    let _ = LIVE.try_with(|live| live.set(live.get() + delta));
}

fn live() -> isize {
    LIVE.with(Cell::get)
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// wrapper only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        // SAFETY: the caller's layout is passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        // SAFETY: as `GlobalAlloc::realloc` requires of the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A parent nobody has: the genesis of another stream.
fn phantom(i: u64) -> Cid {
    *Event::genesis(format!("phantom {i}")).encode().expect("event").cid()
}

/// `n` small orphans, each waiting on a parent of its own.
fn orphans(n: u64) -> Vec<Block> {
    (0..n).map(|i| Event::new(5, vec![phantom(i)], i).encode().expect("event")).collect()
}

fn replica(config: ReplicaConfig) -> Replica<MemoryBlockstore> {
    let genesis = Event::genesis("pending memory").encode().expect("genesis");
    block_on(Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, config)).expect("create")
}

#[test]
fn a_flood_of_small_orphans_holds_no_more_memory_than_the_byte_cap() {
    let mut config = ReplicaConfig::default();
    config.max_pending_bytes = 4 << 20;
    let mut r = replica(config);
    // Made (and kept alive) before measuring: only what the replica
    // allocates on top is measured.
    let flood = orphans(20_000);
    let before = live();
    for batch in flood.chunks(1000) {
        let report = block_on(r.ingest_many(batch.to_vec())).expect("store");
        assert!(report.outcomes.iter().all(|o| matches!(o, Ingest::Pending { .. })));
        drop(report);
        let counted = r.pending().bytes;
        assert!(counted <= config.max_pending_bytes, "{counted} counted bytes over the cap");
        let held = usize::try_from(live() - before).unwrap_or(0);
        assert!(held <= counted, "the replica holds {held} bytes, the buffer counted {counted}");
    }
    let stats = r.pending();
    assert!(r.metrics().evicted > 0, "the byte cap, not the count, bounds the flood");
    assert!(stats.events < 20_000);
    assert!(stats.bytes <= config.max_pending_bytes);
}

#[test]
fn each_pending_entry_counts_at_least_its_structures() {
    let mut r = replica(ReplicaConfig::default());
    let flood = orphans(1000);
    let block_bytes: usize = flood.iter().map(Block::len).sum();
    block_on(r.ingest_many(flood)).expect("store");
    let stats = r.pending();
    assert_eq!(stats.events, 1000);
    // Per entry, at least: the block's bytes and handle, its key in the
    // event table, its place in the arrival queue, and the missing parent's
    // key and waiter (digest + arrival number) in the waiting table.
    let digest = 32;
    let structures = size_of::<Block>() + digest + (8 + digest) + digest + (digest + 8);
    let overhead = (stats.bytes - block_bytes) / stats.events;
    assert!(overhead >= structures, "{overhead} bytes of bookkeeping counted per entry, below {structures}");
    // And everything is given back when the parents never come but the
    // entries are evicted.
    let mut config = ReplicaConfig::default();
    config.max_pending_events = 1;
    let mut small = replica(config);
    block_on(small.ingest_many(orphans(10))).expect("store");
    assert_eq!(small.pending().events, 1);
    assert!(small.pending().bytes < stats.bytes / 100);
}
