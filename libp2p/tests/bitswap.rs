//! Bitswap 1.2.0 between real swarms on 127.0.0.1: serving by CID,
//! want-have, wants answered when the block arrives, the `Fetcher` and
//! `fill`, and hostile peers (malformed protobuf, a million-entry wantlist,
//! blocks whose bytes do not hash to their CID, a peer that never answers).
//!
//! Every wait is bounded; none asserts on timing.

mod bitswap_peer;

use std::sync::Arc;
use std::time::Duration;

use bitswap_peer::{RawPeer, wants};
use bytes::Bytes;
use merkle_clock::sync::transport::{Fetcher, TransportError};
use merkle_clock::{Block, Cid, Event, MemoryBlockstore, Replica, ReplicaConfig, StreamStore};
use merkle_clock_libp2p::bitswap::message::{
    self, BlockPresence, Entry, Message, PayloadBlock, PresenceType, WantType, Wantlist, prefix_of,
};
use merkle_clock_libp2p::bitswap::{BitswapError, fill};
use merkle_clock_libp2p::{BitswapConfig, Node, NodeConfig, NodeHandle};
use tokio::time::timeout;

type Handle = NodeHandle<dyn StreamStore>;

const TEST_LIMIT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(20);

fn config() -> NodeConfig {
    let mut c = NodeConfig::default();
    let mut b = BitswapConfig::default();
    b.fetch_timeout = Duration::from_secs(2);
    b.message_timeout = Duration::from_secs(2);
    c.bitswap = Some(b);
    c
}

/// A node holding a stream of `n` events after its genesis (a chain):
/// the handle, the genesis and the events' CIDs, oldest first.
async fn server(name: &str, n: usize) -> (Handle, Block, Vec<Cid>) {
    let g = Event::genesis(format!("bitswap test: {name}")).encode().unwrap();
    let node = Node::<dyn StreamStore>::spawn(config()).unwrap();
    let store: Arc<dyn StreamStore> = Arc::new(MemoryBlockstore::new());
    node.add_stream(Replica::create(store, &g, ReplicaConfig::default()).await.unwrap()).await.unwrap();
    let cids = node.append_many(*g.cid(), (0..n).map(|i| format!("event {i}"))).await.unwrap();
    (node, g, cids)
}

/// A node with no streams, connected to `to`, with `to` known to speak Bitswap.
async fn client_of(to: &Handle) -> Handle {
    let node = Node::<dyn StreamStore>::spawn(config()).unwrap();
    node.dial(to.listen_addr().await.unwrap()).await.unwrap();
    assert!(node.bitswap_fetcher().unwrap().wait_for_peers(1, WAIT).await, "identify never listed bitswap");
    node
}

async fn replica_of(g: &Block) -> Replica<dyn StreamStore> {
    let store: Arc<dyn StreamStore> = Arc::new(MemoryBlockstore::new());
    Replica::create(store, g, ReplicaConfig::default()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_fetches_every_event_by_cid_and_unknown_cids_are_none() {
    timeout(TEST_LIMIT, async {
        let (server, g, cids) = server("fetch", 300).await;
        let client = client_of(&server).await;
        let fetcher = client.bitswap_fetcher().unwrap();
        let unknown = *Event::genesis("nobody has this").encode().unwrap().cid();
        let mut ask = vec![*g.cid(), unknown];
        ask.extend(&cids);
        let got = fetcher.fetch(&ask).await.unwrap();
        assert_eq!(got.len(), ask.len());
        assert!(got[1].is_none(), "an unknown CID is None (DONT_HAVE)");
        for (cid, block) in ask.iter().zip(&got).filter(|(c, _)| **c != unknown) {
            let block = block.as_ref().unwrap_or_else(|| panic!("{cid} not fetched"));
            assert_eq!(block.cid(), cid);
            block.verify().unwrap();
        }
        let served = server.bitswap_stats().unwrap();
        assert_eq!(served.blocks_sent, 301);
        assert!(served.dont_haves_sent >= 1);
        assert_eq!(client.bitswap_stats().unwrap().blocks_received, 301);
        client.shutdown().await.unwrap();
        assert!(matches!(fetcher.fetch(&cids[..1]).await, Err(TransportError::Closed)));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_brings_a_replica_level_by_level_to_the_servers_heads() {
    timeout(TEST_LIMIT, async {
        let (server, g, cids) = server("fill", 200).await;
        let client = client_of(&server).await;
        let mut replica = replica_of(&g).await;
        let heads = server.heads(*g.cid()).await.unwrap();
        let report = fill(&mut replica, &client.bitswap_fetcher().unwrap(), &heads).await.unwrap();
        assert_eq!(report.accepted, 200);
        assert!(report.missing.is_empty());
        assert_eq!(replica.heads(), heads);
        assert_eq!(replica.order().skip(1).collect::<Vec<_>>(), cids);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn want_have_gets_have_or_dont_have_and_want_block_gets_the_block() {
    timeout(TEST_LIMIT, async {
        let (server, _g, cids) = server("want-have", 3).await;
        let mut peer = RawPeer::spawn(true).await;
        peer.dial(server.listen_addr().await.unwrap()).await;
        let unknown = *Event::genesis("nobody").encode().unwrap().cid();
        peer.send(server.peer_id(), &wants(&[cids[0], unknown], WantType::Have, true)).await;
        let mut presences: Vec<BlockPresence> = Vec::new();
        while presences.len() < 2 {
            let (_, m) = peer.next(WAIT).await.expect("an answer");
            assert!(m.payload.is_empty());
            presences.extend(m.block_presences);
        }
        let kind = |c: &Cid| presences.iter().find(|p| p.cid == c.to_bytes()).map(|p| p.r#type);
        assert_eq!(kind(&cids[0]), Some(PresenceType::Have as i32));
        assert_eq!(kind(&unknown), Some(PresenceType::DontHave as i32));

        peer.send(server.peer_id(), &wants(&[cids[1]], WantType::Block, false)).await;
        let (_, m) = peer.next(WAIT).await.expect("the block");
        let block = message::block_of(&m.payload[0]).unwrap();
        assert_eq!(block.cid(), &cids[1]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_want_without_send_dont_have_is_answered_when_the_block_arrives() {
    timeout(TEST_LIMIT, async {
        let (server, g, _) = server("later", 0).await;
        let mut peer = RawPeer::spawn(true).await;
        peer.dial(server.listen_addr().await.unwrap()).await;
        // The event the server will append next, known by its CID beforehand.
        let next = Event::new(1, vec![*g.cid()], "later").encode().unwrap();
        peer.send(server.peer_id(), &wants(&[*next.cid()], WantType::Block, false)).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while server.bitswap_stats().unwrap().wants_received == 0 {
            assert!(tokio::time::Instant::now() < deadline, "the want never arrived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(server.append(*g.cid(), "later").await.unwrap(), *next.cid());
        let (_, m) = peer.next(WAIT).await.expect("the block, once appended");
        assert_eq!(message::block_of(&m.payload[0]).unwrap(), next);
    })
    .await
    .unwrap();
}

/// A node holding a chain of `n` events whose oldest are pruned (only the
/// newest `keep` keep their bytes): the handle, the genesis, the events'
/// CIDs oldest first, and which of them are pruned.
async fn pruned_server(n: usize, keep: usize) -> (Handle, Block, Vec<Cid>, Vec<Cid>) {
    let g = Event::genesis("bitswap test: pruned").encode().unwrap();
    let mut replica = replica_of(&g).await;
    for i in 0..n {
        replica.append(&format!("event {i}")).await.unwrap();
    }
    replica.prune(merkle_clock::replica::PrunePolicy::KeepNewest(keep)).await.unwrap();
    let cids: Vec<Cid> = replica.order().skip(1).collect();
    let pruned: Vec<Cid> = cids.iter().copied().filter(|c| replica.is_pruned(c)).collect();
    let node = Node::<dyn StreamStore>::spawn(config()).unwrap();
    node.add_stream(replica).await.unwrap();
    (node, g, cids, pruned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_want_for_a_pruned_block_gets_dont_have_or_nothing_and_the_stream_keeps_serving() {
    timeout(TEST_LIMIT, async {
        let (server, _g, cids, pruned) = pruned_server(12, 4).await;
        assert!(pruned.len() >= 3, "{pruned:?}");
        let kept = *cids.last().unwrap();
        let mut peer = RawPeer::spawn(true).await;
        peer.dial(server.listen_addr().await.unwrap()).await;
        // want-block and want-have with send_dont_have: DONT_HAVE for both.
        peer.send(server.peer_id(), &wants(&pruned[..1], WantType::Block, true)).await;
        peer.send(server.peer_id(), &wants(&pruned[1..2], WantType::Have, true)).await;
        let mut presences: Vec<BlockPresence> = Vec::new();
        while presences.len() < 2 {
            let (_, m) = peer.next(WAIT).await.expect("an answer");
            assert!(m.payload.is_empty(), "a pruned block was sent");
            presences.extend(m.block_presences);
        }
        assert!(presences.iter().all(|p| p.r#type == PresenceType::DontHave as i32), "{presences:?}");
        // Without send_dont_have: nothing, and the same stream still serves.
        // (One wantlist, so the server reads the pruned want first.)
        peer.send(server.peer_id(), &wants(&[pruned[2], kept], WantType::Block, false)).await;
        let (_, m) = peer.next(WAIT).await.expect("the kept block");
        assert!(m.block_presences.is_empty());
        let blocks: Vec<Block> = m.payload.iter().map(|b| message::block_of(b).unwrap()).collect();
        assert_eq!(blocks.iter().map(Block::cid).collect::<Vec<_>>(), vec![&kept]);
        let stats = server.bitswap_stats().unwrap();
        assert_eq!((stats.pruned_wants, stats.blocks_sent, stats.garbage), (3, 1, 0));
        // The fetcher of another node: None for a pruned block (DONT_HAVE).
        let client = client_of(&server).await;
        let got = client.bitswap_fetcher().unwrap().fetch(&[pruned[0], kept]).await.unwrap();
        assert!(got[0].is_none() && got[1].as_ref().map(Block::cid) == Some(&kept));
    })
    .await
    .unwrap();
}

/// A wantlist of `n` entries, each a want-block of a distinct 36-byte CID.
fn big_wantlist(n: usize) -> Message {
    let entries = (0..n as u64)
        .map(|i| {
            let mut block = vec![0x01, 0x71, 0x1e, 0x20];
            block.extend_from_slice(blake3::hash(&i.to_le_bytes()).as_bytes());
            Entry { block, priority: 1, cancel: false, want_type: WantType::Block as i32, send_dont_have: true }
        })
        .collect();
    Message { wantlist: Some(Wantlist { entries, full: false }), ..Message::default() }
}

#[test]
fn hostile_messages_are_typed_errors_before_anything_is_allocated() {
    // Not protobuf.
    let noise = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]);
    assert!(matches!(message::decode(noise, 16_384), Err(BitswapError::Malformed(_))));
    // A field claiming more bytes than the message has.
    let short = Bytes::from_static(&[0x0a, 0x7f, 0x0a]);
    assert!(matches!(message::decode(short, 16_384), Err(BitswapError::Malformed(_))));
    // A million minimal entries (2 bytes each) are counted, not built.
    let mut wantlist = Vec::with_capacity(2_000_000);
    for _ in 0..1_000_000 {
        wantlist.extend_from_slice(&[0x0a, 0x00]);
    }
    let mut body = vec![0x0a];
    message::put_varint(&mut body, wantlist.len() as u64);
    body.extend_from_slice(&wantlist);
    assert!(matches!(
        message::decode(body.into(), 16_384),
        Err(BitswapError::TooManyItems { found: 1_000_000, max: 16_384 })
    ));
    // A block whose prefix names SHA-256, and one whose bytes are not an event.
    let sha = PayloadBlock { prefix: vec![0x01, 0x71, 0x12, 0x20], data: Bytes::from_static(b"x") };
    assert!(matches!(message::block_of(&sha), Err(BitswapError::UnsupportedPrefix { code: 0x12, .. })));
    let g = Event::genesis("prefix").encode().unwrap();
    let raw = PayloadBlock { prefix: vec![0x01, 0x55, 0x1e, 0x20], data: g.bytes().clone() };
    assert!(matches!(message::block_of(&raw), Err(BitswapError::Block(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_a_million_entry_wantlist_are_refused_and_the_node_keeps_serving() {
    timeout(TEST_LIMIT, async {
        let (server, g, cids) = server("garbage", 20).await;
        let mut attacker = RawPeer::spawn(true).await;
        attacker.dial(server.listen_addr().await.unwrap()).await;
        let to = server.peer_id();
        // Not protobuf; a length prefix far beyond the limit; 100,000 minimal
        // entries within the size limit; a million real entries (36 MiB).
        attacker.send(to, &Message::default()).await;
        let noise = [0x05u8, 0xff, 0xff, 0xff, 0xff, 0x0f];
        attacker.send_bytes_retrying(to, &noise).await;
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        let _ = attacker.send_bytes(to, &huge).await;
        let mut tiny = vec![0x0a];
        let entries: Vec<u8> = std::iter::repeat_n([0x0a, 0x00], 100_000).flatten().collect();
        message::put_varint(&mut tiny, entries.len() as u64);
        tiny.extend_from_slice(&entries);
        let mut frame = Vec::new();
        message::put_varint(&mut frame, tiny.len() as u64);
        frame.extend_from_slice(&tiny);
        attacker.send_bytes_retrying(to, &frame).await;
        let million = big_wantlist(1_000_000).to_frame();
        assert!(million.len() > 4 << 20);
        let _ = timeout(Duration::from_secs(5), attacker.send_bytes(to, &million)).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while server.bitswap_stats().unwrap().garbage < 4 {
            assert!(tokio::time::Instant::now() < deadline, "{:?}", server.bitswap_stats());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stats = server.bitswap_stats().unwrap();
        assert_eq!(stats.wants_received, 0, "nothing of a refused message is used");
        // Honest peers are still served.
        let client = client_of(&server).await;
        let mut replica = replica_of(&g).await;
        let heads = server.heads(*g.cid()).await.unwrap();
        fill(&mut replica, &client.bitswap_fetcher().unwrap(), &heads).await.unwrap();
        assert_eq!(replica.order().skip(1).collect::<Vec<_>>(), cids);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_whose_bytes_do_not_hash_to_the_cid_are_never_accepted() {
    timeout(TEST_LIMIT, async {
        let g = Event::genesis("bitswap test: liar").encode().unwrap();
        let wanted = Event::new(1, vec![*g.cid()], "wanted").encode().unwrap();
        let other = Event::new(1, vec![*g.cid()], "other").encode().unwrap();
        let mut liar = RawPeer::spawn(true).await;
        let client = Node::<dyn StreamStore>::spawn(config()).unwrap();
        client.dial(liar.addr.clone()).await.unwrap();
        let fetcher = client.bitswap_fetcher().unwrap();
        assert!(fetcher.wait_for_peers(1, WAIT).await);
        let fetch = tokio::spawn({
            let fetcher = fetcher.clone();
            let cid = *wanted.cid();
            async move { fetcher.fetch(&[cid]).await.unwrap() }
        });
        let (from, m) = liar.next(WAIT).await.expect("a wantlist");
        assert_eq!(m.wantlist.unwrap().entries[0].block, wanted.cid().to_bytes());
        // The wanted CID's prefix over other bytes, then the prefix of SHA-256
        // over the right bytes: neither names the wanted CID.
        let lies = Message {
            payload: vec![
                PayloadBlock { prefix: prefix_of(wanted.cid()), data: other.bytes().clone() },
                PayloadBlock { prefix: vec![0x01, 0x71, 0x12, 0x20], data: wanted.bytes().clone() },
            ],
            ..Message::default()
        };
        liar.send(from, &lies).await;
        let got = fetch.await.unwrap();
        assert!(got[0].is_none(), "nothing that does not verify is returned");
        let stats = client.bitswap_stats().unwrap();
        assert_eq!((stats.blocks_received, stats.blocks_unwanted), (0, 2));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_times_out_and_others_are_still_served() {
    timeout(TEST_LIMIT, async {
        let (server, g, cids) = server("slow", 5).await;
        let mut silent = RawPeer::spawn(false).await;
        let client = Node::<dyn StreamStore>::spawn(config()).unwrap();
        client.dial(silent.addr.clone()).await.unwrap();
        let fetcher = client.bitswap_fetcher().unwrap();
        assert!(fetcher.wait_for_peers(1, WAIT).await);
        // Only the silent peer: the fetch gives up after `fetch_timeout`.
        assert!(fetcher.fetch(&[cids[0]]).await.unwrap()[0].is_none());
        // The silent peer also opens a stream to the server, writes one byte
        // of a length prefix and nothing more: dropped after `message_timeout`.
        silent.dial(server.listen_addr().await.unwrap()).await;
        let _stalled = silent.stall(server.peer_id(), &[0x80]).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while server.bitswap_stats().unwrap().garbage == 0 {
            assert!(tokio::time::Instant::now() < deadline, "the stalled message was never dropped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // With the server too, everything arrives despite the silent peer.
        client.dial(server.listen_addr().await.unwrap()).await.unwrap();
        assert!(fetcher.wait_for_peers(2, WAIT).await);
        let mut replica = replica_of(&g).await;
        let heads = server.heads(*g.cid()).await.unwrap();
        fill(&mut replica, &fetcher, &heads).await.unwrap();
        assert_eq!(replica.order().skip(1).collect::<Vec<_>>(), cids);
    })
    .await
    .unwrap();
}
