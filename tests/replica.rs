//! The replica's state machine: append, ingest in any order, the pending
//! buffer and its caps, validators, cursors, reopening, and storage faults.
//! Every scenario runs on every store (`replica::<store>::<scenario>`); the
//! fault scenarios wrap each store in a `FaultyStore`. The blocks a scenario
//! receives are made by a replica on the memory store (only the replica under
//! test matters).

#[macro_use]
mod common;

use std::sync::Arc;

use common::Stores;
use futures::executor::block_on;
use merkle_clock::replica::{AppendError, FnValidator, OpenError, PendingStats, RejectReason, Rejection};
use merkle_clock::store::{FaultOp, FaultPlan, FaultyStore, StreamStore};
use merkle_clock::{
    Block, Cursor, Event, Ingest, InsertError, Ipld, MemoryBlockstore, Replica, ReplicaConfig, StoreError, heads, order,
};
use quickcheck::{QuickCheck, TestResult};

every_store!(replica: scenarios
    append_takes_all_heads_as_parents,
    newest_first_delivery_is_buffered_then_released_in_one_pass,
    ingest_reports_every_outcome,
    wrong_height_found_on_release_rejects_the_waiting_descendants,
    pending_buffer_is_capped_by_count_and_bytes,
    evicted_events_become_missing_again_and_can_return,
    validators_refuse_with_their_name,
    append_folds_at_most_max_parents_heads,
    cursor_reports_the_first_position_that_moved,
    reopen_continues_exactly_where_it_stopped,
    opening_bad_streams_is_a_typed_error,
    a_failed_commit_changes_nothing_and_a_retry_succeeds,
    appends_fail_cleanly_after_n_store_operations,
    prop_any_delivery_order_gives_identical_replicas_even_across_reopen,
);

fn genesis() -> Block {
    Event::genesis("replica tests").encode().unwrap()
}

/// A replica of the test stream on the memory store: the maker of the blocks a scenario receives.
async fn fresh() -> Replica<MemoryBlockstore> {
    Replica::create(Arc::new(MemoryBlockstore::new()), &genesis(), ReplicaConfig::default()).await.unwrap()
}

/// A replica of the test stream on a fresh store of the kind under test.
async fn fresh_on<S: Stores>(stores: &S) -> Replica<S::Store> {
    Replica::create(Arc::new(stores.fresh()), &genesis(), ReplicaConfig::default()).await.unwrap()
}

async fn blocks_in_order<S: StreamStore + ?Sized>(r: &Replica<S>) -> Vec<Block> {
    let mut out = Vec::new();
    for cid in r.order().collect::<Vec<_>>() {
        out.push(r.get(&cid).await.unwrap().unwrap());
    }
    out
}

/// A linear history of `n` events after the genesis, built by a replica.
async fn chain(n: usize) -> Vec<Block> {
    let mut a = fresh().await;
    a.append_many((0..n).map(|i| format!("event {i}"))).await.unwrap();
    blocks_in_order(&a).await
}

async fn append_takes_all_heads_as_parents<S: Stores>(stores: &S) {
    let g = genesis();
    let mut a = fresh_on(stores).await;
    let mut b = fresh_on(stores).await;
    let x = a.append(&"x").await.unwrap();
    let y = b.append(&"y").await.unwrap();
    assert_eq!(a.ingest(b.get(&y).await.unwrap().unwrap()).await.unwrap(), Ingest::Accepted);
    let mut both = vec![x, y];
    both.sort();
    assert_eq!(a.heads(), both);
    let z = a.append(&"z").await.unwrap();
    let ev: Event<String> = a.get(&z).await.unwrap().unwrap().decode().unwrap();
    assert_eq!(ev.parents(), &both[..]);
    assert_eq!(ev.height(), 2);
    assert_eq!(a.heads(), vec![z]);
    assert_eq!(a.len(), 4);
    assert!(a.contains(g.cid()));
}

async fn newest_first_delivery_is_buffered_then_released_in_one_pass<S: Stores>(stores: &S) {
    let blocks = chain(50).await;
    let mut b = fresh_on(stores).await;
    for block in blocks.iter().skip(2).rev() {
        assert!(matches!(b.ingest(block.clone()).await.unwrap(), Ingest::Pending { .. }));
    }
    assert_eq!(b.missing(), vec![*blocks[1].cid()]);
    assert_eq!(b.pending().events, 49);
    assert_eq!(b.ingest(blocks[1].clone()).await.unwrap(), Ingest::Accepted);
    assert_eq!(b.pending(), PendingStats::default());
    assert_eq!(b.len(), 51);
    assert_eq!(b.heads(), vec![*blocks[50].cid()]);
    let m = b.metrics();
    assert_eq!(m.accepted, 50);
    assert_eq!(m.pending, 49);
}

async fn ingest_reports_every_outcome<S: Stores>(stores: &S) {
    let blocks = chain(2).await;
    let mut b = fresh_on(stores).await;
    assert_eq!(b.ingest(blocks[0].clone()).await.unwrap(), Ingest::Duplicate);
    assert_eq!(b.ingest(blocks[2].clone()).await.unwrap(), Ingest::Pending { missing: vec![*blocks[1].cid()] });
    // Asking again about a pending event says it is still pending.
    assert_eq!(b.ingest(blocks[2].clone()).await.unwrap(), Ingest::Pending { missing: vec![*blocks[1].cid()] });
    let report = b.ingest_many(vec![blocks[1].clone(), blocks[1].clone()]).await.unwrap();
    assert_eq!(report.outcomes, vec![Ingest::Accepted, Ingest::Duplicate]);
    assert_eq!(report.accepted, vec![*blocks[1].cid(), *blocks[2].cid()]);

    let foreign = Event::genesis("another stream").encode().unwrap();
    assert!(matches!(
        b.ingest(foreign).await.unwrap(),
        Ingest::Rejected(Rejection::Insert(InsertError::ForeignGenesis { .. }))
    ));
    let garbage = Block::from_bytes(vec![0xff, 0x00, 0x01]);
    assert!(matches!(b.ingest(garbage).await.unwrap(), Ingest::Rejected(Rejection::Decode(_))));
    let wrong_height = Event::new(7, vec![*blocks[2].cid()], "late").encode().unwrap();
    assert!(matches!(
        b.ingest(wrong_height).await.unwrap(),
        Ingest::Rejected(Rejection::Insert(InsertError::WrongHeight { expected: 3, found: 7, .. }))
    ));
    let m = b.metrics();
    assert_eq!(m.rejected.get(&RejectReason::ForeignGenesis), Some(&1));
    assert_eq!(m.rejected.get(&RejectReason::Decode), Some(&1));
    assert_eq!(m.rejected.get(&RejectReason::Height), Some(&1));
    assert_eq!(b.len(), 3);
}

async fn wrong_height_found_on_release_rejects_the_waiting_descendants<S: Stores>(stores: &S) {
    let blocks = chain(1).await;
    let g = *blocks[0].cid();
    let a1 = *blocks[1].cid();
    let bad = Event::new(5, vec![a1], "wrong height").encode().unwrap();
    let child = Event::new(6, vec![*bad.cid()], "child of bad").encode().unwrap();
    let mut b = fresh_on(stores).await;
    assert!(matches!(b.ingest(child.clone()).await.unwrap(), Ingest::Pending { .. }));
    assert!(matches!(b.ingest(bad.clone()).await.unwrap(), Ingest::Pending { .. }));
    let report = b.ingest_many(vec![blocks[1].clone()]).await.unwrap();
    assert_eq!(report.accepted, vec![a1]);
    assert_eq!(b.pending(), PendingStats::default());
    assert_eq!(b.heads(), vec![a1]);
    let m = b.metrics();
    assert_eq!(m.rejected.get(&RejectReason::Height), Some(&1));
    assert_eq!(m.rejected.get(&RejectReason::AncestorRejected), Some(&1));
    assert!(b.contains(&g));
}

async fn pending_buffer_is_capped_by_count_and_bytes<S: Stores>(stores: &S) {
    let mut config = ReplicaConfig::default();
    config.max_pending_events = 10;
    config.max_pending_bytes = 1 << 20;
    let store = Arc::new(stores.fresh());
    let mut b = Replica::create(store, &genesis(), config).await.unwrap();
    let phantom = Event::genesis("never delivered").encode().unwrap();
    for i in 0..100u32 {
        let orphan = Event::new(1, vec![*phantom.cid()], i).encode().unwrap();
        b.ingest(orphan).await.unwrap();
        assert!(b.pending().events <= 10);
    }
    assert_eq!(b.pending().events, 10);
    assert_eq!(b.metrics().evicted, 90);
    assert_eq!(b.missing(), vec![*phantom.cid()]);

    let mut config = ReplicaConfig::default();
    config.max_pending_bytes = 2_000;
    let mut c = Replica::create(Arc::new(stores.fresh()), &genesis(), config).await.unwrap();
    for i in 0..100u32 {
        let orphan = Event::new(1, vec![*phantom.cid()], vec![i; 50]).encode().unwrap();
        c.ingest(orphan).await.unwrap();
        assert!(c.pending().bytes <= 2_000, "pending bytes {}", c.pending().bytes);
    }
    assert!(c.metrics().evicted > 0);
}

async fn evicted_events_become_missing_again_and_can_return<S: Stores>(stores: &S) {
    let blocks = chain(6).await;
    let mut config = ReplicaConfig::default();
    config.max_pending_events = 3;
    let mut b = Replica::create(Arc::new(stores.fresh()), &genesis(), config).await.unwrap();
    // Deliver 2..=6 oldest first without 1: arrivals 2 and 3 are evicted
    // to keep three, and 3 (which 4 waits on) becomes missing again.
    for block in &blocks[2..] {
        b.ingest(block.clone()).await.unwrap();
    }
    assert_eq!(b.pending().events, 3);
    assert_eq!(b.metrics().evicted, 2);
    assert_eq!(b.missing(), vec![*blocks[3].cid()]);
    b.ingest(blocks[1].clone()).await.unwrap();
    assert_eq!(b.heads(), vec![*blocks[1].cid()]);
    b.ingest_many(vec![blocks[2].clone(), blocks[3].clone()]).await.unwrap();
    assert_eq!(b.heads(), vec![*blocks[6].cid()]);
    assert_eq!(b.pending(), PendingStats::default());
}

async fn validators_refuse_with_their_name<S: Stores>(stores: &S) {
    let mut a = fresh_on(stores).await;
    let mut b = fresh_on(stores).await;
    let cid = a.append(&Ipld::String("forbidden".into())).await.unwrap();
    let only_ints = FnValidator::new("only-ints", |e| match e.payload::<Ipld>() {
        Ok(Ipld::Integer(_)) => Ok(()),
        _ => Err("payload must be an integer".to_string()),
    });
    b.add_validator(only_ints);
    let block = a.get(&cid).await.unwrap().unwrap();
    match b.ingest(block).await.unwrap() {
        Ingest::Rejected(Rejection::Validator { validator, cid: c, .. }) => {
            assert_eq!(validator, "only-ints");
            assert_eq!(c, cid);
        }
        other => panic!("expected a validator rejection, got {other:?}"),
    }
    assert!(matches!(b.append(&"text").await, Err(AppendError::Rejected(Rejection::Validator { .. }))));
    b.append(&7).await.unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b.metrics().rejected.get(&RejectReason::Validator), Some(&1));
}

async fn append_folds_at_most_max_parents_heads<S: Stores>(stores: &S) {
    let g = genesis();
    let mut config = ReplicaConfig::default();
    config.limits.max_parents = 2;
    let mut r = Replica::create(Arc::new(stores.fresh()), &g, config).await.unwrap();
    for i in 0..5u32 {
        r.ingest(Event::new(1, vec![*g.cid()], i).encode().unwrap()).await.unwrap();
    }
    assert_eq!(r.heads().len(), 5);
    let before = r.heads();
    let m = r.append(&"merge").await.unwrap();
    let ev: Event<String> = r.get(&m).await.unwrap().unwrap().decode().unwrap();
    assert_eq!(ev.parents(), &before[..2]);
    assert_eq!(r.heads().len(), 4);
    // Each append folds two heads into one: 4 -> 3 -> 2 -> 1.
    for (i, left) in [3, 2, 1].into_iter().enumerate() {
        r.append(&i).await.unwrap();
        assert_eq!(r.heads().len(), left);
    }
}

async fn cursor_reports_the_first_position_that_moved<S: Stores>(stores: &S) {
    let g = genesis();
    let mut r = fresh_on(stores).await;
    r.append_many(["a", "b", "c"]).await.unwrap();
    let d1 = r.events_since(&Cursor::start());
    assert_eq!(d1.replay_from, None);
    assert_eq!(d1.events.len(), 4);
    assert_eq!(d1.events, r.order().collect::<Vec<_>>());
    // Nothing new.
    let d2 = r.events_since(&d1.cursor);
    assert!(d2.events.is_empty() && d2.replay_from.is_none());
    // A new event on top: no replay.
    r.append(&"d").await.unwrap();
    let d3 = r.events_since(&d2.cursor);
    assert_eq!((d3.replay_from, d3.start, d3.events.len()), (None, 4, 1));
    // A late event at height 1 lands before what was read.
    let late = Event::new(1, vec![*g.cid()], "late").encode().unwrap();
    r.ingest(late.clone()).await.unwrap();
    let d4 = r.events_since(&d3.cursor);
    let all: Vec<_> = r.order().collect();
    let p = all.iter().position(|c| c == late.cid()).unwrap();
    assert!(p <= 2);
    assert_eq!(d4.replay_from, Some(p));
    assert_eq!(d4.start, p);
    assert_eq!(d4.events, all[p..].to_vec());
    assert_eq!(d4.cursor.position(), all.len());
}

async fn reopen_continues_exactly_where_it_stopped<S: Stores>(stores: &S) {
    let store = Arc::new(stores.fresh());
    let g = genesis();
    let mut a = Replica::create(store.clone(), &g, ReplicaConfig::default()).await.unwrap();
    a.append_many(0..100u32).await.unwrap();
    a.ingest(Event::new(1, vec![*g.cid()], "side").encode().unwrap()).await.unwrap();
    let (heads, order_a) = (a.heads(), a.order().collect::<Vec<_>>());
    drop(a);
    let mut b = Replica::open(store.clone(), g.cid(), ReplicaConfig::default()).await.unwrap();
    assert_eq!(b.heads(), heads);
    assert_eq!(b.order().collect::<Vec<_>>(), order_a);
    let next = b.append(&"after reopen").await.unwrap();
    let ev: Event<String> = b.get(&next).await.unwrap().unwrap().decode().unwrap();
    assert_eq!(ev.parents(), &heads[..]);
    // open_or_create() on an existing stream opens it.
    let c = Replica::open_or_create(store, &g, ReplicaConfig::default()).await.unwrap();
    assert_eq!(c.heads(), vec![next]);
}

async fn opening_bad_streams_is_a_typed_error<S: Stores>(stores: &S) {
    let store = Arc::new(stores.fresh());
    let unknown = Event::genesis("unknown").encode().unwrap();
    assert!(matches!(
        Replica::open(store.clone(), unknown.cid(), ReplicaConfig::default()).await,
        Err(OpenError::UnknownStream { .. })
    ));
    let child = Event::new(1, vec![*unknown.cid()], 1).encode().unwrap();
    assert!(matches!(
        Replica::create(store.clone(), &child, ReplicaConfig::default()).await,
        Err(OpenError::NotGenesis { .. })
    ));
    let not_event = Block::from_bytes(vec![0x01]);
    assert!(matches!(Replica::create(store, &not_event, ReplicaConfig::default()).await, Err(OpenError::Genesis(_))));
}

async fn a_failed_commit_changes_nothing_and_a_retry_succeeds<S: Stores>(stores: &S) {
    let blocks = chain(20).await;
    let store = Arc::new(FaultyStore::new(stores.fresh()));
    let mut b = Replica::create(store.clone(), &genesis(), ReplicaConfig::default()).await.unwrap();
    b.ingest_many(blocks[1..5].to_vec()).await.unwrap();
    // Leave 6.. waiting; then fail the commit that 5 would release them with.
    b.ingest_many(blocks[6..].to_vec()).await.unwrap();
    assert_eq!(b.pending().events, 15);
    store.set_plan(FaultPlan::Once(FaultOp::Commit));
    let err = b.ingest(blocks[5].clone()).await;
    assert!(matches!(err, Err(StoreError::Backend(_))));
    assert_eq!(b.len(), 5);
    assert_eq!(b.heads(), vec![*blocks[4].cid()]);
    assert_eq!(store.inner().heads(b.stream_id()).await.unwrap(), Some(vec![*blocks[4].cid()]));
    assert_eq!(store.inner().log_len(b.stream_id()).await.unwrap(), 5);
    // The released descendants went back to waiting; the retry releases them.
    assert_eq!(b.missing(), vec![*blocks[5].cid()]);
    assert_eq!(b.ingest(blocks[5].clone()).await.unwrap(), Ingest::Accepted);
    assert_eq!(b.heads(), vec![*blocks[20].cid()]);
    assert_eq!(b.len(), 21);
}

async fn appends_fail_cleanly_after_n_store_operations<S: Stores>(stores: &S) {
    for n in 0..6 {
        let store = Arc::new(FaultyStore::new(stores.fresh()));
        let g = genesis();
        let mut r = Replica::create(store.clone(), &g, ReplicaConfig::default()).await.unwrap();
        store.set_plan(FaultPlan::AfterOps(n));
        let mut ok = 0;
        for i in 0..10u32 {
            match r.append(&i).await {
                Ok(_) => ok += 1,
                Err(AppendError::Store(_)) => break,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(ok, n as usize, "one store operation per append");
        // The in-memory state equals what the store holds.
        assert_eq!(store.inner().heads(g.cid()).await.unwrap().unwrap(), r.heads());
        assert_eq!(store.inner().log_len(g.cid()).await.unwrap() as usize, r.len());
        store.set_plan(FaultPlan::Never);
        r.append(&"retry").await.unwrap();
        let reopened = Replica::open(store.clone(), g.cid(), ReplicaConfig::default()).await.unwrap();
        assert_eq!(reopened.heads(), r.heads());
    }
}

/// Random DAG of blocks built by three replicas appending and exchanging.
fn random_dag(seed: u64, steps: usize) -> Vec<Block> {
    block_on(async {
        let mut rs = vec![fresh().await, fresh().await, fresh().await];
        let mut x = seed | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..steps {
            let i = (next() % 3) as usize;
            rs[i].append(&(step as u64)).await.unwrap();
            if next() % 3 == 0 {
                let j = (next() % 3) as usize;
                let blocks = blocks_in_order(&rs[i]).await;
                rs[j].ingest_many(blocks).await.unwrap();
            }
        }
        let mut all = Vec::new();
        for r in &rs {
            all.extend(blocks_in_order(r).await);
        }
        all.sort_by_key(|b| *b.cid());
        all.dedup_by_key(|b| *b.cid());
        all
    })
}

fn shuffled(blocks: &[Block], seed: u64) -> Vec<Block> {
    let mut v = blocks.to_vec();
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// Runs the law before the returned future is polled: the law blocks on its
/// own futures, and quickcheck takes a plain `fn`, so the stores come from
/// `S::default()` inside it.
fn prop_any_delivery_order_gives_identical_replicas_even_across_reopen<S: Stores>(_: &S) -> std::future::Ready<()> {
    fn law<S: Stores>(seed: u64, order_a: u64, order_b: u64, reopen_at: u8) -> TestResult {
        let stores = S::default();
        let blocks = random_dag(seed, 30);
        let set = merkle_clock::BlockSet::from_blocks(blocks.clone()).unwrap();
        block_on(async {
            let mut a = fresh().await;
            for chunk in shuffled(&blocks, order_a).chunks(3) {
                a.ingest_many(chunk.to_vec()).await.unwrap();
            }
            let store = Arc::new(stores.fresh());
            let g = genesis();
            let mut b = Replica::create(store.clone(), &g, ReplicaConfig::default()).await.unwrap();
            let delivery = shuffled(&blocks, order_b);
            let cut = usize::from(reopen_at) % (delivery.len() + 1);
            b.ingest_many(delivery[..cut].to_vec()).await.unwrap();
            // Reopen midway: the pending buffer is lost, so re-deliver everything after.
            drop(b);
            let mut b = Replica::open(store.clone(), g.cid(), ReplicaConfig::default()).await.unwrap();
            for block in delivery.iter().rev() {
                b.ingest(block.clone()).await.unwrap();
            }
            let same = a.heads() == b.heads()
                && a.heads() == heads(&set)
                && a.order().collect::<Vec<_>>() == b.order().collect::<Vec<_>>()
                && a.order().collect::<Vec<_>>() == order(&set)
                && blocks_in_order(&a).await == blocks_in_order(&b).await
                && S::block_count(&store) == set.len() as u64;
            TestResult::from_bool(same)
        })
    }
    QuickCheck::new().tests(25).quickcheck(law::<S> as fn(u64, u64, u64, u8) -> TestResult);
    std::future::ready(())
}
