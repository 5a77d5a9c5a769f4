//! The blockstore contract suite, each rule its own test on every store
//! (`contract::<store>::<rule>`), plus the whole suite at once per store, so a
//! rule added to the suite but not listed here still runs.
//!
//! Memory only: `memory_put_keeps_the_first_block` pins `MemoryBlockstore`'s
//! own accounting (`len`, `total_bytes`) for a forged block, which is not part
//! of the contract; redb's own behaviour is in `tests/store_redb.rs`.

#[macro_use]
mod common;

use std::sync::Arc;

use common::Stores;
use futures::executor::block_on;
use merkle_clock::store::MemoryBlockstore;
use merkle_clock::store::contract as suite;

every_store!(contract: rules
    get_of_a_missing_block_is_none,
    get_returns_what_put_stored,
    putting_a_block_again_changes_nothing,
    get_many_answers_every_cid_in_order,
    empty_batches_are_fine,
    an_unknown_stream_has_no_heads_and_no_log,
    commit_stores_blocks_appends_the_log_and_replaces_heads,
    streams_are_separate_and_may_share_blocks,
    read_log_is_cut_only_by_the_end_of_the_log,
    each_commit_replaces_the_heads,
    pruning_keeps_the_log_and_drops_the_bytes,
    pruning_is_idempotent_and_checks_what_it_names,
    commits_after_pruning_go_on_at_the_end,
    skeleton_entries_join_the_log_without_bytes,
);

every_store!(store: scenarios passes_the_whole_suite, a_store_shared_by_threads_stores_a_block_once);

/// Every rule, each on a fresh store; the blockstore rules alone too.
async fn passes_the_whole_suite(stores: &impl Stores) -> Result<(), suite::Violation> {
    suite::check_stream_store(|| stores.fresh()).await?;
    suite::check_blockstore(|| stores.fresh()).await
}

/// The suite takes `&dyn Blockstore`; a store behind an `Arc` is shared by
/// threads that put the same block at once, and holds it once.
async fn a_store_shared_by_threads_stores_a_block_once<S: Stores>(stores: &S) {
    let store = Arc::new(stores.fresh());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let s = Arc::clone(&store);
            std::thread::spawn(move || block_on(suite::putting_a_block_again_changes_nothing(&*s)))
        })
        .collect();
    for h in handles {
        common::Outcome::check(h.join().expect("the thread panicked"));
    }
    assert_eq!(S::block_count(&store), 1);
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
