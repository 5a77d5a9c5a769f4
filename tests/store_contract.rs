//! The blockstore contract suite against the in-memory store: the whole suite
//! at once, and one test per rule so that a failure names the rule.

use futures::executor::block_on;
use merkle_clock::store::{MemoryBlockstore, contract};

fn run(r: Result<(), contract::Violation>) {
    if let Err(v) = r {
        panic!("contract violated: {v}");
    }
}

#[test]
fn memory_store_passes_the_whole_suite() {
    run(block_on(contract::check_stream_store(MemoryBlockstore::new)));
    run(block_on(contract::check_blockstore(MemoryBlockstore::new)));
}

#[test]
fn missing_is_none() {
    run(block_on(contract::missing_is_none(&MemoryBlockstore::new())));
}

#[test]
fn put_then_get() {
    run(block_on(contract::put_then_get(&MemoryBlockstore::new())));
}

#[test]
fn put_is_idempotent() {
    run(block_on(contract::put_is_idempotent(&MemoryBlockstore::new())));
}

#[test]
fn many_round_trip() {
    run(block_on(contract::many_round_trip(&MemoryBlockstore::new())));
}

#[test]
fn empty_batches() {
    run(block_on(contract::empty_batches(&MemoryBlockstore::new())));
}

#[test]
fn unknown_stream() {
    run(block_on(contract::unknown_stream(&MemoryBlockstore::new())));
}

#[test]
fn commit_round_trip() {
    run(block_on(contract::commit_round_trip(&MemoryBlockstore::new())));
}

#[test]
fn streams_are_separate() {
    run(block_on(contract::streams_are_separate(&MemoryBlockstore::new())));
}

#[test]
fn read_log_pages() {
    run(block_on(contract::read_log_pages(&MemoryBlockstore::new())));
}

#[test]
fn heads_are_replaced() {
    run(block_on(contract::heads_are_replaced(&MemoryBlockstore::new())));
}

#[test]
fn memory_store_is_object_safe_and_shared() {
    // The suite takes `&dyn Blockstore`; a store behind an Arc is shared by threads.
    let store = std::sync::Arc::new(MemoryBlockstore::new());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let s = std::sync::Arc::clone(&store);
            std::thread::spawn(move || block_on(contract::put_is_idempotent(&*s)))
        })
        .collect();
    for h in handles {
        run(h.join().unwrap());
    }
    assert_eq!(store.len(), 1);
}

#[test]
fn memory_put_keeps_the_first_block() {
    // A second put under a CID already stored changes nothing, even for a
    // block that skipped verification.
    use merkle_clock::{Block, Blockstore, Event};
    let store = MemoryBlockstore::new();
    let b = Event::genesis("first").encode().unwrap();
    block_on(store.put(b.clone())).unwrap();
    let forged = Block::new_unchecked(*b.cid(), b"other bytes".to_vec());
    block_on(store.put(forged.clone())).unwrap();
    block_on(store.put_many(vec![forged])).unwrap();
    assert_eq!(block_on(store.get(b.cid())).unwrap(), Some(b.clone()));
    assert_eq!(store.total_bytes(), b.len());
    assert_eq!(store.len(), 1);
}
