//! Named properties of the gateway's snapshots, on random DAGs.

use std::collections::HashSet;
use std::sync::Arc;

use http_body_util::BodyExt;
use merkle_clock::car::{CarLimits, CarReader};
use merkle_clock::{Block, Blockstore, Cid, Event, MemoryBlockstore, Replica, ReplicaConfig};
use merkle_clock_gateway::Gateway;
use quickcheck::{Gen, QuickCheck};

/// A DAG from a script: each step, writer `w % 3` appends, and every step
/// with `merge` set delivers everything that writer holds to the others.
async fn dag(script: &[(u8, bool)]) -> (Arc<MemoryBlockstore>, Replica<MemoryBlockstore>) {
    let genesis = Event::genesis("prop").encode().unwrap();
    let shared = Arc::new(MemoryBlockstore::new());
    let mut writers = Vec::new();
    for _ in 0..3 {
        writers.push(
            Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await.unwrap(),
        );
    }
    for (i, (w, merge)) in script.iter().enumerate() {
        let w = usize::from(*w) % 3;
        writers[w].append(&i).await.unwrap();
        if *merge {
            let order: Vec<Cid> = writers[w].order().collect();
            let blocks: Vec<Block> =
                writers[w].store().get_many(&order).await.unwrap().into_iter().map(Option::unwrap).collect();
            for (j, other) in writers.iter_mut().enumerate() {
                if j != w {
                    other.ingest_many(blocks.clone()).await.unwrap();
                }
            }
        }
    }
    // One replica over the served store holds the union.
    let mut all = Replica::create(Arc::clone(&shared), &genesis, ReplicaConfig::default()).await.unwrap();
    for w in &writers {
        let order: Vec<Cid> = w.order().collect();
        let blocks: Vec<Block> = w.store().get_many(&order).await.unwrap().into_iter().map(Option::unwrap).collect();
        all.ingest_many(blocks).await.unwrap();
    }
    (shared, all)
}

/// For every event of a random DAG, the `dag-scope=all` CAR holds exactly its
/// ancestry as the index computes it (`Dag::difference`), each block once,
/// the event first, and every block after one that links it (depth first).
#[test]
fn prop_a_snapshot_car_is_exactly_the_ancestry_once_each_depth_first() {
    fn p(script: Vec<(u8, bool)>) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let script: Vec<(u8, bool)> = script.into_iter().take(40).collect();
            let (store, all) = dag(&script).await;
            let gateway = Gateway::new(store.clone() as Arc<dyn Blockstore>);
            for cid in all.order().collect::<Vec<_>>() {
                let req = hyper::Request::get(format!("/ipfs/{cid}?format=car&dag-scope=all")).body(()).unwrap();
                let body = gateway.handle(&req).await.into_body().collect().await.unwrap().to_bytes();
                let blocks: Vec<Block> =
                    CarReader::new(body.as_ref(), CarLimits::default()).unwrap().map(Result::unwrap).collect();
                let got: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
                let unique: HashSet<Cid> = got.iter().copied().collect();
                let dag = all.dag();
                let expected: HashSet<Cid> =
                    dag.difference(&[cid], &[]).unwrap().into_iter().map(|id| dag.cid(id)).collect();
                let mut linked: HashSet<Cid> = HashSet::from([cid]);
                let mut in_dfs = got.first() == Some(&cid);
                for b in &blocks {
                    in_dfs &= linked.contains(b.cid());
                    linked.extend(Event::<merkle_clock::Ipld>::decode(b).unwrap().parents().iter().copied());
                }
                if unique.len() != got.len() || unique != expected || !in_dfs {
                    return false;
                }
            }
            true
        })
    }
    QuickCheck::new().tests(30).max_tests(300).rng(Gen::new(40)).quickcheck(p as fn(Vec<(u8, bool)>) -> bool);
}
