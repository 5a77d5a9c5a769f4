//! The blockstore contract as a reusable suite: one async function per rule,
//! runnable against any implementation (the iroh-blobs pattern: one scenario,
//! every store).
//!
//! Each check takes a fresh, empty store and returns `Err` with a description
//! of the first violation; its name says what must hold. This crate's
//! `tests/store_contract.rs` runs each rule as its own test on every store it
//! ships. Run them all at once with [`check_blockstore`] and
//! [`check_stream_store`]:
//!
//! ```
//! use merkle_clock::store::{MemoryBlockstore, contract};
//! futures::executor::block_on(async {
//!     contract::check_stream_store(|| MemoryBlockstore::new()).await?;
//!     Ok::<(), contract::Violation>(())
//! })?;
//! # Ok::<(), contract::Violation>(())
//! ```

use ipld_core::cid::Cid;

use super::{Blockstore, LoggedEvent, StoreError, StreamStore};
use crate::block::Block;
use crate::event::Event;

/// A contract violation: the rule and what was seen.
pub type Violation = String;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn sample(n: u32) -> Block {
    Event::genesis(format!("contract sample {n}")).encode().expect("samples encode")
}

fn err(rule: &str, e: impl std::fmt::Display) -> Violation {
    format!("{rule}: unexpected error: {e}")
}

/// `get` of a CID never put is `Ok(None)`, and `has` is false.
pub async fn get_of_a_missing_block_is_none(store: &dyn Blockstore) -> Result<(), Violation> {
    let b = sample(0);
    ensure!(
        store.get(b.cid()).await.map_err(|e| err("get_of_a_missing_block_is_none", e))?.is_none(),
        "get of a missing block returned a block"
    );
    ensure!(
        !store.has(b.cid()).await.map_err(|e| err("get_of_a_missing_block_is_none", e))?,
        "has of a missing block returned true"
    );
    Ok(())
}

/// A block that was put comes back byte for byte, and `has` is true.
pub async fn get_returns_what_put_stored(store: &dyn Blockstore) -> Result<(), Violation> {
    let b = sample(1);
    store.put(b.clone()).await.map_err(|e| err("get_returns_what_put_stored", e))?;
    let got = store.get(b.cid()).await.map_err(|e| err("get_returns_what_put_stored", e))?;
    ensure!(got.as_ref() == Some(&b), "get returned {got:?}, expected {b:?}");
    ensure!(store.has(b.cid()).await.map_err(|e| err("get_returns_what_put_stored", e))?, "has is false after put");
    Ok(())
}

/// Putting the same block twice succeeds and changes nothing.
pub async fn putting_a_block_again_changes_nothing(store: &dyn Blockstore) -> Result<(), Violation> {
    let b = sample(2);
    store.put(b.clone()).await.map_err(|e| err("putting_a_block_again_changes_nothing", e))?;
    store.put(b.clone()).await.map_err(|e| err("putting_a_block_again_changes_nothing (second put)", e))?;
    store
        .put_many(vec![b.clone(), b.clone()])
        .await
        .map_err(|e| err("putting_a_block_again_changes_nothing (put_many)", e))?;
    let got = store.get(b.cid()).await.map_err(|e| err("putting_a_block_again_changes_nothing", e))?;
    ensure!(got.as_ref() == Some(&b), "block changed after repeated puts: {got:?}");
    Ok(())
}

/// `put_many` stores every block; `get_many` answers one entry per CID, in order, `None` for missing ones.
pub async fn get_many_answers_every_cid_in_order(store: &dyn Blockstore) -> Result<(), Violation> {
    let blocks: Vec<Block> = (10..20).map(sample).collect();
    store.put_many(blocks.clone()).await.map_err(|e| err("get_many_answers_every_cid_in_order", e))?;
    let missing = sample(99);
    let mut cids: Vec<Cid> = blocks.iter().rev().map(|b| *b.cid()).collect();
    cids.insert(3, *missing.cid());
    let got = store.get_many(&cids).await.map_err(|e| err("get_many_answers_every_cid_in_order", e))?;
    ensure!(got.len() == cids.len(), "get_many returned {} entries for {} CIDs", got.len(), cids.len());
    for (cid, g) in cids.iter().zip(&got) {
        if cid == missing.cid() {
            ensure!(g.is_none(), "get_many returned a block for a missing CID");
        } else {
            ensure!(g.as_ref().map(|b| b.cid()) == Some(cid), "get_many entry for {cid} is {g:?}");
        }
    }
    Ok(())
}

/// `get_many` of nothing is empty, and `put_many` of nothing is fine.
pub async fn empty_batches_are_fine(store: &dyn Blockstore) -> Result<(), Violation> {
    store.put_many(Vec::new()).await.map_err(|e| err("empty_batches_are_fine", e))?;
    let got = store.get_many(&[]).await.map_err(|e| err("empty_batches_are_fine", e))?;
    ensure!(got.is_empty(), "get_many(&[]) returned {} entries", got.len());
    Ok(())
}

/// Runs every [`Blockstore`] rule, each on a fresh store from `make`.
pub async fn check_blockstore<S: Blockstore>(make: impl Fn() -> S) -> Result<(), Violation> {
    get_of_a_missing_block_is_none(&make()).await?;
    get_returns_what_put_stored(&make()).await?;
    putting_a_block_again_changes_nothing(&make()).await?;
    get_many_answers_every_cid_in_order(&make()).await?;
    empty_batches_are_fine(&make()).await?;
    Ok(())
}

fn chain(n: usize) -> Vec<Block> {
    let g = Event::genesis("contract stream").encode().expect("encodes");
    let mut out = vec![g];
    for i in 1..n {
        let parent = *out[i - 1].cid();
        out.push(Event::new(i as u64, vec![parent], i as u64).encode().expect("encodes"));
    }
    out
}

/// An unknown stream has no heads and an empty log.
pub async fn an_unknown_stream_has_no_heads_and_no_log(store: &dyn StreamStore) -> Result<(), Violation> {
    let g = chain(1).remove(0);
    ensure!(
        store.heads(g.cid()).await.map_err(|e| err("an_unknown_stream_has_no_heads_and_no_log", e))?.is_none(),
        "heads of an unknown stream is not None"
    );
    ensure!(
        store.log_len(g.cid()).await.map_err(|e| err("an_unknown_stream_has_no_heads_and_no_log", e))? == 0,
        "log of an unknown stream is not empty"
    );
    ensure!(
        store
            .read_log(g.cid(), 0, 10)
            .await
            .map_err(|e| err("an_unknown_stream_has_no_heads_and_no_log", e))?
            .is_empty(),
        "read_log of an unknown stream is not empty"
    );
    Ok(())
}

/// `commit` stores blocks, appends to the log in order and replaces the heads;
/// so does `commit_now` when it returns `Some`.
pub async fn commit_stores_blocks_appends_the_log_and_replaces_heads(store: &dyn StreamStore) -> Result<(), Violation> {
    let blocks = chain(5);
    let stream = *blocks[0].cid();
    store
        .commit(&stream, &blocks[..3], &[*blocks[2].cid()])
        .await
        .map_err(|e| err("commit_stores_blocks_appends_the_log_and_replaces_heads", e))?;
    // The second through `commit_now` where the store has it.
    super::commit(store, &stream, &blocks[3..], &[*blocks[4].cid()])
        .await
        .map_err(|e| err("commit_stores_blocks_appends_the_log_and_replaces_heads", e))?;
    let heads =
        store.heads(&stream).await.map_err(|e| err("commit_stores_blocks_appends_the_log_and_replaces_heads", e))?;
    ensure!(heads == Some(vec![*blocks[4].cid()]), "heads after commit: {heads:?}");
    ensure!(
        store.log_len(&stream).await.map_err(|e| err("commit_stores_blocks_appends_the_log_and_replaces_heads", e))?
            == 5,
        "log_len is not 5"
    );
    let log = store
        .read_log(&stream, 1, 3)
        .await
        .map_err(|e| err("commit_stores_blocks_appends_the_log_and_replaces_heads", e))?;
    let want: Vec<Cid> = blocks[1..4].iter().map(|b| *b.cid()).collect();
    ensure!(log == want, "read_log(1, 3) = {log:?}, want {want:?}");
    let tail = store
        .read_log(&stream, 4, 100)
        .await
        .map_err(|e| err("commit_stores_blocks_appends_the_log_and_replaces_heads", e))?;
    ensure!(tail == vec![*blocks[4].cid()], "read_log past the end = {tail:?}");
    for b in &blocks {
        let got =
            store.get(b.cid()).await.map_err(|e| err("commit_stores_blocks_appends_the_log_and_replaces_heads", e))?;
        ensure!(got.as_ref() == Some(b), "committed block {b:?} reads back as {got:?}");
    }
    Ok(())
}

/// Streams are independent, and may share blocks.
pub async fn streams_are_separate_and_may_share_blocks(store: &dyn StreamStore) -> Result<(), Violation> {
    let a = chain(3);
    let b = Event::genesis("another stream").encode().expect("encodes");
    store
        .commit(a[0].cid(), &a, &[*a[2].cid()])
        .await
        .map_err(|e| err("streams_are_separate_and_may_share_blocks", e))?;
    store
        .commit(b.cid(), std::slice::from_ref(&b), &[*b.cid()])
        .await
        .map_err(|e| err("streams_are_separate_and_may_share_blocks", e))?;
    // The second stream also logs a block the first already stored.
    store
        .commit(b.cid(), std::slice::from_ref(&a[1]), &[*a[1].cid()])
        .await
        .map_err(|e| err("streams_are_separate_and_may_share_blocks", e))?;
    ensure!(
        store.log_len(a[0].cid()).await.map_err(|e| err("streams_are_separate_and_may_share_blocks", e))? == 3,
        "first stream's log changed"
    );
    ensure!(
        store.log_len(b.cid()).await.map_err(|e| err("streams_are_separate_and_may_share_blocks", e))? == 2,
        "second stream's log is wrong"
    );
    let mut streams = store.streams().await.map_err(|e| err("streams_are_separate_and_may_share_blocks", e))?;
    streams.sort_unstable();
    let mut want = vec![*a[0].cid(), *b.cid()];
    want.sort_unstable();
    ensure!(streams == want, "streams() = {streams:?}, want {want:?}");
    Ok(())
}

/// `read_log(stream, start, max)` returns the entries `start..start + max`,
/// cut only by the end of the log: empty for `max == 0` or a start at or past
/// the end (however large), never an error.
pub async fn read_log_is_cut_only_by_the_end_of_the_log(store: &dyn StreamStore) -> Result<(), Violation> {
    let blocks = chain(7);
    let stream = *blocks[0].cid();
    let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
    store
        .commit(&stream, &blocks, &[cids[6]])
        .await
        .map_err(|e| err("read_log_is_cut_only_by_the_end_of_the_log", e))?;
    for start in 0..=9u64 {
        for max in [0usize, 1, 2, 3, 7, 100] {
            let got = store
                .read_log(&stream, start, max)
                .await
                .map_err(|e| err("read_log_is_cut_only_by_the_end_of_the_log", e))?;
            let from = (start as usize).min(cids.len());
            let to = from.saturating_add(max).min(cids.len());
            ensure!(got == cids[from..to], "read_log(start {start}, max {max}) = {got:?}, want {:?}", &cids[from..to]);
        }
    }
    let far = store
        .read_log(&stream, u64::MAX, usize::MAX)
        .await
        .map_err(|e| err("read_log_is_cut_only_by_the_end_of_the_log", e))?;
    ensure!(far.is_empty(), "read_log(u64::MAX, usize::MAX) = {far:?}, want nothing");
    Ok(())
}

/// Each commit replaces the heads with exactly the set given; several heads
/// come back as that set.
pub async fn each_commit_replaces_the_heads(store: &dyn StreamStore) -> Result<(), Violation> {
    let g = Event::genesis("contract heads").encode().expect("encodes");
    let a = Event::new(1, vec![*g.cid()], "a").encode().expect("encodes");
    let b = Event::new(1, vec![*g.cid()], "b").encode().expect("encodes");
    let m = Event::new(2, vec![*a.cid(), *b.cid()], "m").encode().expect("encodes");
    let stream = *g.cid();
    store
        .commit(&stream, std::slice::from_ref(&g), &[stream])
        .await
        .map_err(|e| err("each_commit_replaces_the_heads", e))?;
    store
        .commit(&stream, &[a.clone(), b.clone()], &[*a.cid(), *b.cid()])
        .await
        .map_err(|e| err("each_commit_replaces_the_heads", e))?;
    let mut got = store.heads(&stream).await.map_err(|e| err("each_commit_replaces_the_heads", e))?.unwrap_or_default();
    got.sort_unstable();
    let mut want = vec![*a.cid(), *b.cid()];
    want.sort_unstable();
    ensure!(got == want, "heads after a commit of two concurrent events = {got:?}, want {want:?}");
    store
        .commit(&stream, std::slice::from_ref(&m), &[*m.cid()])
        .await
        .map_err(|e| err("each_commit_replaces_the_heads", e))?;
    let got = store.heads(&stream).await.map_err(|e| err("each_commit_replaces_the_heads", e))?;
    ensure!(got == Some(vec![*m.cid()]), "heads after the merge = {got:?}, want only the merge");
    ensure!(
        store.log_len(&stream).await.map_err(|e| err("each_commit_replaces_the_heads", e))? == 4,
        "log_len is not 4"
    );
    Ok(())
}

/// Prunes `entries` of `stream`: `Ok(None)` when the store does not prune
/// (the pruning rules then hold trivially: pruning is optional).
async fn try_prune(
    store: &dyn StreamStore,
    stream: &Cid,
    entries: &[(u64, Cid)],
    rule: &str,
) -> Result<Option<super::PruneStats>, Violation> {
    match store.prune(stream, entries).await {
        Ok(stats) => Ok(Some(stats)),
        Err(StoreError::Unsupported { .. }) => Ok(None),
        Err(e) => Err(err(rule, e)),
    }
}

/// The log entries of a stream, whole.
async fn entries(store: &dyn StreamStore, stream: &Cid, rule: &str) -> Result<Vec<LoggedEvent>, Violation> {
    store.read_log_entries(stream, 0, usize::MAX).await.map_err(|e| err(rule, e))
}

/// `prune` drops the bytes of the events it names and keeps everything else:
/// the log (length, order, heights, parents, each pruned entry flagged), the
/// heads and the other blocks; `get` of a pruned event is `Ok(None)`.
pub async fn pruning_keeps_the_log_and_drops_the_bytes(store: &dyn StreamStore) -> Result<(), Violation> {
    const RULE: &str = "pruning_keeps_the_log_and_drops_the_bytes";
    let blocks = chain(7);
    let stream = *blocks[0].cid();
    let head = *blocks[6].cid();
    store.commit(&stream, &blocks, &[head]).await.map_err(|e| err(RULE, e))?;
    let before = entries(store, &stream, RULE).await?;
    let gone = [1usize, 2, 4];
    let plan: Vec<(u64, Cid)> = gone.iter().map(|&i| (i as u64, *blocks[i].cid())).collect();
    let Some(stats) = try_prune(store, &stream, &plan, RULE).await? else { return Ok(()) };
    let bytes: usize = gone.iter().map(|&i| blocks[i].len()).sum();
    ensure!(
        stats.events == 3 && stats.bytes == bytes as u64,
        "prune reported {stats:?}, want 3 events of {bytes} bytes"
    );
    let after = entries(store, &stream, RULE).await?;
    ensure!(after.len() == before.len(), "the log has {} entries after pruning, {} before", after.len(), before.len());
    for (i, (a, b)) in after.iter().zip(&before).enumerate() {
        let pruned = gone.contains(&i);
        ensure!(
            a.cid == b.cid && a.height == b.height && a.parents == b.parents && a.pruned == pruned,
            "log entry {i} is {a:?} after pruning, was {b:?} (pruned: want {pruned})"
        );
    }
    ensure!(store.log_len(&stream).await.map_err(|e| err(RULE, e))? == 7, "log_len changed");
    let log = store.read_log(&stream, 0, 100).await.map_err(|e| err(RULE, e))?;
    ensure!(log.iter().eq(blocks.iter().map(Block::cid)), "read_log changed: {log:?}");
    ensure!(store.heads(&stream).await.map_err(|e| err(RULE, e))? == Some(vec![head]), "the heads changed");
    for (i, b) in blocks.iter().enumerate() {
        let got = store.get(b.cid()).await.map_err(|e| err(RULE, e))?;
        let has = store.has(b.cid()).await.map_err(|e| err(RULE, e))?;
        if gone.contains(&i) {
            ensure!(got.is_none() && !has, "pruned block {i} is still there (get {got:?}, has {has})");
        } else {
            ensure!(got.as_ref() == Some(b) && has, "block {i}, not pruned, reads back as {got:?}");
        }
    }
    // A page that starts at a pruned entry.
    let page = store.read_log_entries(&stream, 2, 3).await.map_err(|e| err(RULE, e))?;
    ensure!(page == after[2..5], "read_log_entries(2, 3) = {page:?}, want {:?}", &after[2..5]);
    Ok(())
}

/// Pruning again changes nothing; naming a position past the log's end, or
/// another event than the one logged there, is `Corrupt` and prunes nothing.
pub async fn pruning_is_idempotent_and_checks_what_it_names(store: &dyn StreamStore) -> Result<(), Violation> {
    const RULE: &str = "pruning_is_idempotent_and_checks_what_it_names";
    let blocks = chain(5);
    let stream = *blocks[0].cid();
    store.commit(&stream, &blocks, &[*blocks[4].cid()]).await.map_err(|e| err(RULE, e))?;
    let plan = [(1u64, *blocks[1].cid())];
    let Some(first) = try_prune(store, &stream, &plan, RULE).await? else { return Ok(()) };
    ensure!(first.events == 1, "the first prune reported {first:?}");
    let again = try_prune(store, &stream, &plan, RULE).await?.unwrap_or_default();
    ensure!(again.events == 0 && again.bytes == 0, "pruning again reported {again:?}");
    let before = entries(store, &stream, RULE).await?;
    for bad in
        [vec![(2u64, *blocks[2].cid()), (3, *blocks[2].cid())], vec![(2, *blocks[2].cid()), (9, *blocks[3].cid())]]
    {
        match store.prune(&stream, &bad).await {
            Err(StoreError::Corrupt(_)) => {}
            other => return Err(format!("prune of {bad:?} answered {other:?}, want Corrupt")),
        }
        ensure!(entries(store, &stream, RULE).await? == before, "a refused prune changed the log");
        ensure!(store.has(blocks[2].cid()).await.map_err(|e| err(RULE, e))?, "a refused prune dropped a block");
    }
    Ok(())
}

/// Commits after a prune go on at the end of the log, and a prune of
/// positions on both sides of earlier pruned ones merges with them.
pub async fn commits_after_pruning_go_on_at_the_end(store: &dyn StreamStore) -> Result<(), Violation> {
    const RULE: &str = "commits_after_pruning_go_on_at_the_end";
    let blocks = chain(12);
    let stream = *blocks[0].cid();
    store.commit(&stream, &blocks[..6], &[*blocks[5].cid()]).await.map_err(|e| err(RULE, e))?;
    let plan: Vec<(u64, Cid)> = (2..5).map(|i| (i as u64, *blocks[i].cid())).collect();
    if try_prune(store, &stream, &plan, RULE).await?.is_none() {
        return Ok(());
    }
    store.commit(&stream, &blocks[6..], &[*blocks[11].cid()]).await.map_err(|e| err(RULE, e))?;
    let plan: Vec<(u64, Cid)> = [1usize, 5, 7, 8].iter().map(|&i| (i as u64, *blocks[i].cid())).collect();
    try_prune(store, &stream, &plan, RULE).await?;
    let got = entries(store, &stream, RULE).await?;
    ensure!(got.len() == 12, "the log has {} entries, want 12", got.len());
    for (i, e) in got.iter().enumerate() {
        let pruned = [1usize, 2, 3, 4, 5, 7, 8].contains(&i);
        ensure!(e.cid == *blocks[i].cid() && e.pruned == pruned, "log entry {i} is {e:?} (pruned: want {pruned})");
    }
    Ok(())
}

/// `append_skeleton` appends entries without bytes (they read back pruned)
/// and replaces the heads; commits go on after them.
pub async fn skeleton_entries_join_the_log_without_bytes(store: &dyn StreamStore) -> Result<(), Violation> {
    const RULE: &str = "skeleton_entries_join_the_log_without_bytes";
    let blocks = chain(6);
    let stream = *blocks[0].cid();
    store.commit(&stream, &blocks[..1], &[stream]).await.map_err(|e| err(RULE, e))?;
    let skeleton: Vec<LoggedEvent> = blocks[1..4]
        .iter()
        .map(|b| LoggedEvent::from_block(b).map(|e| LoggedEvent { pruned: false, ..e }))
        .collect::<Result<_, _>>()
        .map_err(|e| err(RULE, e))?;
    match store.append_skeleton(&stream, &skeleton, &[*blocks[3].cid()]).await {
        Ok(()) => {}
        Err(StoreError::Unsupported { .. }) => return Ok(()),
        Err(e) => return Err(err(RULE, e)),
    }
    ensure!(
        store.heads(&stream).await.map_err(|e| err(RULE, e))? == Some(vec![*blocks[3].cid()]),
        "append_skeleton did not replace the heads"
    );
    store.commit(&stream, &blocks[4..], &[*blocks[5].cid()]).await.map_err(|e| err(RULE, e))?;
    let got = entries(store, &stream, RULE).await?;
    ensure!(got.len() == 6, "the log has {} entries, want 6", got.len());
    for (i, e) in got.iter().enumerate() {
        let want = LoggedEvent::from_block(&blocks[i]).map_err(|e| err(RULE, e))?;
        let pruned = (1..4).contains(&i);
        ensure!(
            e.cid == want.cid && e.height == want.height && e.parents == want.parents && e.pruned == pruned,
            "log entry {i} is {e:?}, want {want:?} (pruned: {pruned})"
        );
        let got = store.get(&e.cid).await.map_err(|e| err(RULE, e))?;
        ensure!(got.is_some() != pruned, "block {i}: get answered {got:?}");
    }
    Ok(())
}

/// `put_stream_record` replaces a stream's record and `stream_record` reads
/// the last one back; streams' records are separate, and a stream without
/// one answers `None`. A store without `append_skeleton` may not support
/// records (`Unsupported`).
pub async fn stream_records_are_replaced_and_read_back(store: &dyn StreamStore) -> Result<(), Violation> {
    const RULE: &str = "stream_records_are_replaced_and_read_back";
    let (a, b) = (*sample(1).cid(), *sample(2).cid());
    ensure!(store.stream_record(&a).await.map_err(|e| err(RULE, e))?.is_none(), "a record nobody put");
    match store.put_stream_record(&a, b"first").await {
        Ok(()) => {}
        Err(StoreError::Unsupported { .. }) => return Ok(()),
        Err(e) => return Err(err(RULE, e)),
    }
    store.put_stream_record(&a, b"second, longer").await.map_err(|e| err(RULE, e))?;
    store.put_stream_record(&b, b"").await.map_err(|e| err(RULE, e))?;
    let got = store.stream_record(&a).await.map_err(|e| err(RULE, e))?;
    ensure!(got.as_deref() == Some(&b"second, longer"[..]), "the record of a is {got:?}");
    let got = store.stream_record(&b).await.map_err(|e| err(RULE, e))?;
    ensure!(got.as_deref() == Some(&b""[..]), "the record of b is {got:?}");
    ensure!(store.heads(&a).await.map_err(|e| err(RULE, e))?.is_none(), "a record made a stream");
    Ok(())
}

/// Runs every pruning rule, each on a fresh store (a store that does not
/// prune passes them: pruning is optional).
pub async fn check_pruning<S: StreamStore>(make: impl Fn() -> S) -> Result<(), Violation> {
    pruning_keeps_the_log_and_drops_the_bytes(&make()).await?;
    pruning_is_idempotent_and_checks_what_it_names(&make()).await?;
    commits_after_pruning_go_on_at_the_end(&make()).await?;
    skeleton_entries_join_the_log_without_bytes(&make()).await?;
    stream_records_are_replaced_and_read_back(&make()).await?;
    Ok(())
}

/// Runs every [`Blockstore`] and [`StreamStore`] rule, each on a fresh store.
pub async fn check_stream_store<S: StreamStore>(make: impl Fn() -> S) -> Result<(), Violation> {
    check_blockstore(&make).await?;
    an_unknown_stream_has_no_heads_and_no_log(&make()).await?;
    commit_stores_blocks_appends_the_log_and_replaces_heads(&make()).await?;
    streams_are_separate_and_may_share_blocks(&make()).await?;
    read_log_is_cut_only_by_the_end_of_the_log(&make()).await?;
    each_commit_replaces_the_heads(&make()).await?;
    check_pruning(&make).await?;
    Ok(())
}
