//! Interop with Helia 7, an IPFS implementation nobody here wrote, over
//! Bitswap 1.2.0 on 127.0.0.1 (`tests/helia/bitswap.mjs`):
//!
//! - Helia fetches 1,000 events of a stream from a merkle-clock node and
//!   recomputes every CID;
//! - a replica that lacks those events fills them from a Helia node that
//!   holds them, through the `Fetcher`.
//!
//! Needs `npm ci` in `tests/helia` (`.ci/run` does it). Without it the
//! tests are skipped loudly, and fail when `CI` is set.

mod helia_peer;

use std::sync::Arc;
use std::time::Duration;

use helia_peer::{HeliaServer, helia_fetch, node_or_skip};
use merkle_clock::{Block, Cid, Event, MemoryBlockstore, Replica, ReplicaConfig, StreamStore};
use merkle_clock_libp2p::bitswap::fill;
use merkle_clock_libp2p::libp2p::multiaddr::Protocol;
use merkle_clock_libp2p::{Node, NodeConfig};
use tokio::time::timeout;

const TEST_LIMIT: Duration = Duration::from_secs(180);
const EVENTS: usize = 1000;

async fn replica(g: &Block) -> Replica<dyn StreamStore> {
    let store: Arc<dyn StreamStore> = Arc::new(MemoryBlockstore::new());
    Replica::create(store, g, ReplicaConfig::default()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helia_fetches_1000_events_from_a_node_over_bitswap_and_recomputes_every_cid() {
    let Some(node_js) = node_or_skip("helia fetch") else { return };
    timeout(TEST_LIMIT, async {
        let g = Event::genesis("helia interop: helia fetches").encode().unwrap();
        let stream = *g.cid();
        let node = Node::<dyn StreamStore>::spawn(NodeConfig::default()).unwrap();
        node.add_stream(replica(&g).await).await.unwrap();
        node.append_many(stream, (0..EVENTS).map(|i| format!("event {i}"))).await.unwrap();
        let cids: Vec<Cid> = node.read(stream, |r| r.order().collect()).await.unwrap();
        assert_eq!(cids.len(), EVENTS + 1);
        let addr = node.listen_addr().await.unwrap().with(Protocol::P2p(node.peer_id()));
        let fetched = tokio::task::spawn_blocking(move || helia_fetch(&node_js, &addr, &cids)).await.unwrap();
        assert_eq!(fetched.blocks, EVENTS as u64 + 1);
        let stats = node.bitswap_stats().unwrap();
        assert!(stats.blocks_sent > EVENTS as u64, "{stats:?}");
        assert_eq!(stats.garbage, 0);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_fills_1000_events_from_helia_over_bitswap_through_the_fetcher() {
    let Some(node_js) = node_or_skip("helia serve") else { return };
    timeout(TEST_LIMIT, async {
        let g = Event::genesis("helia interop: helia serves").encode().unwrap();
        let mut source = replica(&g).await;
        source.append_many((0..EVENTS).map(|i| format!("event {i}"))).await.unwrap();
        let order: Vec<Cid> = source.order().collect();
        let mut blocks = Vec::with_capacity(order.len());
        for cid in &order {
            blocks.push(source.get(cid).await.unwrap().unwrap());
        }
        let heads = source.heads();
        let helia = tokio::task::spawn_blocking({
            let (node_js, root) = (node_js.clone(), heads[0]);
            move || HeliaServer::start(&node_js, root, &blocks)
        })
        .await
        .unwrap();

        let node = Node::<dyn StreamStore>::spawn(NodeConfig::default()).unwrap();
        node.dial(helia.addr.clone()).await.unwrap();
        let fetcher = node.bitswap_fetcher().unwrap();
        assert!(fetcher.wait_for_peers(1, Duration::from_secs(30)).await, "Helia never identified as a bitswap peer");
        let mut lacking = replica(&g).await;
        let report = fill(&mut lacking, &fetcher, &heads).await.unwrap();
        assert!(report.missing.is_empty(), "{report:?}");
        assert_eq!(report.accepted, EVENTS as u64);
        assert_eq!(lacking.order().collect::<Vec<_>>(), order);
        let stats = node.bitswap_stats().unwrap();
        assert_eq!(stats.blocks_received, EVENTS as u64, "{stats:?}");
    })
    .await
    .unwrap();
}
