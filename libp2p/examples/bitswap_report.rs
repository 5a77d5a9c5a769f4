//! Bitswap figures against Helia 7 on 127.0.0.1 (needs `npm ci` in
//! `tests/helia`):
//!
//! 1. Helia fetches every event of a stream from our node, given their CIDs
//!    (64 gets in flight, every CID recomputed);
//! 2. our replica fills the same history from Helia with
//!    [`fill`](merkle_clock_libp2p::bitswap::fill), level by level from the
//!    head (a chain: one round trip per event), and our `Fetcher` fetches
//!    every CID at once, given the list;
//! 3. the same two from another merkle-clock node, for the ratio.
//!
//! ```sh
//! cargo run --release -p merkle-clock-libp2p --example bitswap_report            # 10,000 events
//! cargo run --release -p merkle-clock-libp2p --example bitswap_report -- --events 1000
//! ```

#[path = "../tests/helia_peer/mod.rs"]
mod helia_peer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use helia_peer::{HeliaServer, helia_fetch, node_binary};
use merkle_clock::sync::transport::Fetcher;
use merkle_clock::{Block, Cid, Event, MemoryBlockstore, Replica, ReplicaConfig, StreamStore};
use merkle_clock_libp2p::bitswap::fill;
use merkle_clock_libp2p::libp2p::Multiaddr;
use merkle_clock_libp2p::libp2p::multiaddr::Protocol;
use merkle_clock_libp2p::{BitswapStats, Node, NodeConfig, NodeHandle};

type Handle = NodeHandle<dyn StreamStore>;

async fn replica(g: &Block) -> Replica<dyn StreamStore> {
    let store: Arc<dyn StreamStore> = Arc::new(MemoryBlockstore::new());
    Replica::create(store, g, ReplicaConfig::default()).await.expect("replica")
}

fn diff(after: &BitswapStats, before: &BitswapStats) -> (u64, u64, u64, u64) {
    (
        after.messages_sent - before.messages_sent,
        after.bytes_sent - before.bytes_sent,
        after.messages_received - before.messages_received,
        after.bytes_received - before.bytes_received,
    )
}

/// A node with no streams connected to `addr`, its fetcher ready.
async fn client(addr: Multiaddr) -> Handle {
    let node = Node::<dyn StreamStore>::spawn(NodeConfig::default()).expect("node");
    node.dial(addr).await.expect("dial");
    let ready = node.bitswap_fetcher().expect("bitswap").wait_for_peers(1, Duration::from_secs(30)).await;
    assert!(ready, "the peer never identified as a bitswap peer");
    node
}

/// Fills a fresh replica from `addr` with `fill`, then fetches every CID in
/// one call from a second node (a peer that asks again for blocks it was
/// sent in the last 5 s gets nothing from Helia); prints both.
async fn our_fetches(label: &str, addr: &Multiaddr, g: &Block, heads: &[Cid], order: &[Cid]) -> f64 {
    let node = client(addr.clone()).await;
    let fetcher = node.bitswap_fetcher().expect("bitswap");
    let before = fetcher.stats();
    let mut lacking = replica(g).await;
    let start = Instant::now();
    let report = fill(&mut lacking, &fetcher, heads).await.expect("fill");
    let fill_secs = start.elapsed().as_secs_f64();
    assert!(report.missing.is_empty() && lacking.order().eq(order.iter().copied()), "{report:?}");
    let (sent, _, received, bytes_in) = diff(&fetcher.stats(), &before);
    println!(
        "{label}: fill level by level: {} events in {fill_secs:.2} s ({:.0} events/s), {} round trips, \
         {sent} messages sent, {received} received, {bytes_in} bytes received",
        report.accepted,
        report.accepted as f64 / fill_secs,
        report.rounds,
    );
    let node = client(addr.clone()).await;
    let fetcher = node.bitswap_fetcher().expect("bitswap");
    let before = fetcher.stats();
    let start = Instant::now();
    let got = fetcher.fetch(order).await.expect("fetch");
    let secs = start.elapsed().as_secs_f64();
    let missing = got.iter().filter(|b| b.is_none()).count();
    assert_eq!(missing, 0, "{missing} blocks not fetched");
    let (sent, _, received, bytes_in) = diff(&fetcher.stats(), &before);
    println!(
        "{label}: fetch of every CID at once: {} blocks in {secs:.2} s ({:.0} blocks/s), \
         {sent} messages sent, {received} received, {bytes_in} bytes received",
        got.len(),
        got.len() as f64 / secs,
    );
    fill_secs
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: usize = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .map_or(10_000, |n| n.parse().expect("--events N"));
    let Some(node_js) = node_binary() else {
        eprintln!("Helia is not installed: run `npm ci` in {}", helia_peer::package_dir().display());
        std::process::exit(2);
    };
    println!("bitswap report: a chain of {events} events (plus the genesis), 127.0.0.1");

    // Our node serving a stream.
    let g = Event::genesis("bitswap report").encode().expect("genesis");
    let stream = *g.cid();
    let server = Node::<dyn StreamStore>::spawn(NodeConfig::default()).expect("node");
    server.add_stream(replica(&g).await).await.expect("stream");
    for chunk in (0..events).collect::<Vec<_>>().chunks(1000) {
        server.append_many(stream, chunk.iter().map(|i| format!("event {i}"))).await.expect("append");
    }
    let order: Vec<Cid> = server.read(stream, |r| r.order().collect()).await.expect("order");
    let heads = server.heads(stream).await.expect("heads");
    let mut blocks = Vec::with_capacity(order.len());
    for b in server.get(stream, order.clone()).await.expect("get") {
        blocks.push(b.expect("held"));
    }
    let event_bytes: usize = blocks.iter().map(Block::len).sum();
    println!("event blocks: {} bytes in all, {:.0} bytes each", event_bytes, event_bytes as f64 / blocks.len() as f64);

    // 1. Helia fetches from us.
    let addr = server.listen_addr().await.expect("addr").with(Protocol::P2p(server.peer_id()));
    let before = server.bitswap_stats().expect("bitswap");
    let (node_js2, addr2, order2) = (node_js.clone(), addr.clone(), order.clone());
    let fetched = tokio::task::spawn_blocking(move || helia_fetch(&node_js2, &addr2, &order2)).await.expect("helia");
    let (sent, bytes_out, received, bytes_in) = diff(&server.bitswap_stats().expect("bitswap"), &before);
    println!(
        "Helia fetches from us: {} blocks ({} bytes) in {:.2} s ({:.0} blocks/s); we got {received} wantlist messages \
         ({bytes_in} bytes) and sent {sent} messages ({bytes_out} bytes)",
        fetched.blocks,
        fetched.bytes,
        fetched.seconds,
        fetched.blocks as f64 / fetched.seconds,
    );

    // 2. We fetch from Helia.
    let helia = tokio::task::spawn_blocking({
        let (node_js, root, blocks) = (node_js.clone(), heads[0], blocks.clone());
        move || HeliaServer::start(&node_js, root, &blocks)
    })
    .await
    .expect("helia");
    let helia_fill = our_fetches("from Helia", &helia.addr, &g, &heads, &order).await;
    drop(helia);

    // 3. The same from our own node.
    let our_fill = our_fetches("from merkle-clock", &addr, &g, &heads, &order).await;
    println!("fill from Helia / fill from merkle-clock: {:.2}x the time", helia_fill / our_fill);
}
