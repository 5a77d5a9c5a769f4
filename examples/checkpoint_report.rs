//! The size of a checkpoint: its state and skeleton blocks, and what one
//! skeleton lookup reads, for streams of 100,000 and 1,000,000 events with
//! 128-byte payloads, against the bytes of the stream's event blocks in the
//! same run. Sizes do not depend on the build profile.
//!
//! ```sh
//! cargo run --release --example checkpoint_report [-- --json] [-- --events N]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use merkle_clock::checkpoint::{self, CheckpointConfig};
use merkle_clock::crdt::{Counter, Fold, LwwMap, MapOp};
use merkle_clock::{Block, Blockstore, Cid, Event, Ipld, MemoryBlockstore, Replica, ReplicaConfig, StoreError};

/// A view of a store that counts the bytes read through it.
struct Counting<'a> {
    inner: &'a MemoryBlockstore,
    bytes: AtomicUsize,
    blocks: AtomicUsize,
}

#[async_trait]
impl Blockstore for Counting<'_> {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        let block = self.inner.get(cid).await?;
        if let Some(b) = &block {
            self.bytes.fetch_add(b.len(), Ordering::Relaxed);
            self.blocks.fetch_add(1, Ordering::Relaxed);
        }
        Ok(block)
    }

    async fn put(&self, block: Block) -> Result<(), StoreError> {
        self.inner.put(block).await
    }
}

/// Every part under a skeleton root: (blocks, bytes), walked with a stack.
async fn skeleton_size(store: &MemoryBlockstore, root: &Cid) -> (usize, usize) {
    let (mut blocks, mut bytes) = (0, 0);
    let mut stack = vec![*root];
    while let Some(cid) = stack.pop() {
        let block = store.get(&cid).await.unwrap().expect("a part the writer stored");
        blocks += 1;
        bytes += block.len();
        let node: Ipld = serde_ipld_dagcbor::from_slice(block.bytes()).unwrap();
        if let Ipld::Map(m) = node
            && let Some(Ipld::List(children)) = m.get("children")
        {
            for child in children {
                if let Ipld::List(pair) = child
                    && let Some(Ipld::Link(link)) = pair.get(1)
                {
                    stack.push(*link);
                }
            }
        }
    }
    (blocks, bytes)
}

async fn report(events: usize, json: bool) {
    let store = Arc::new(MemoryBlockstore::new());
    let genesis = Event::genesis("checkpoint report").encode().unwrap();
    let mut r = Replica::create(store.clone(), &genesis, ReplicaConfig::default()).await.unwrap();
    let mut event_bytes = genesis.len();
    let mut done = 0;
    while done < events {
        let n = (events - done).min(10_000);
        // 128-byte payloads: an LWW map write of a 100-character value under one of 1,000 keys.
        let payloads: Vec<MapOp<String, String>> = (done..done + n)
            .map(|i| MapOp::Set { key: format!("k{:03}", i % 1000), value: format!("{i:0>100}") })
            .collect();
        for cid in r.append_many(payloads).await.unwrap() {
            event_bytes += store.get(&cid).await.unwrap().unwrap().len();
        }
        done += n;
    }
    let mut map = Fold::new(LwwMap::<String, String>::new());
    let mut counter = Fold::new(Counter);
    map.update(&r).await.unwrap();
    counter.update(&r).await.unwrap();
    let cp =
        checkpoint::build(&mut r, &[("map", &map), ("counter", &counter)], &CheckpointConfig::default()).await.unwrap();
    let cp_block = r.get(&cp.cid).await.unwrap().unwrap().len();
    let mut state_bytes = 0;
    for cid in cp.states.values() {
        state_bytes += store.get(cid).await.unwrap().unwrap().len();
    }
    let (parts, skeleton_bytes) = skeleton_size(&store, &cp.skeleton).await;
    let (_, flagged_bytes) = skeleton_size(&store, &cp.flagged).await;
    let counting = Counting { inner: &store, bytes: AtomicUsize::new(0), blocks: AtomicUsize::new(0) };
    let probe = r.order().nth(events / 2).unwrap();
    checkpoint::skeleton::lookup(&counting, &cp.skeleton, &probe).await.unwrap().expect("below the cut");
    let (lookup_blocks, lookup_bytes) = (counting.blocks.into_inner(), counting.bytes.into_inner());
    let n = events + 1;
    if json {
        println!(
            "{{\"metric\":\"checkpoint_size\",\"events\":{n},\"event_bytes\":{event_bytes},\"checkpoint_event_bytes\":{cp_block},\"state_bytes\":{state_bytes},\"skeleton_bytes\":{skeleton_bytes},\"skeleton_parts\":{parts},\"flagged_bytes\":{flagged_bytes},\"lookup_blocks\":{lookup_blocks},\"lookup_bytes\":{lookup_bytes}}}"
        );
    } else {
        println!(
            "stream of {n} events, 128-byte payloads: {event_bytes} bytes of event blocks ({:.1} per event)",
            event_bytes as f64 / n as f64
        );
        println!("  checkpoint event          {cp_block} bytes");
        println!("  state blocks              {state_bytes} bytes (an LWW map of 1,000 keys and a counter)");
        println!(
            "  skeleton                  {skeleton_bytes} bytes in {parts} parts ({:.1} per event, {:.3} of the event bytes)",
            skeleton_bytes as f64 / n as f64,
            skeleton_bytes as f64 / event_bytes as f64
        );
        println!(
            "  flagged tree              {flagged_bytes} bytes (the genesis: no membership events or checkpoints here)"
        );
        println!(
            "  one lookup                {lookup_blocks} parts, {lookup_bytes} bytes ({:.5} of the event bytes)",
            lookup_bytes as f64 / event_bytes as f64
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let sizes: Vec<usize> = match args.iter().position(|a| a == "--events") {
        Some(i) => vec![args.get(i + 1).and_then(|s| s.parse().ok()).expect("--events N")],
        None => vec![100_000, 1_000_000],
    };
    for events in sizes {
        futures::executor::block_on(report(events, json));
    }
}
