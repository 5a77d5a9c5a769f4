//! Real swarms over TCP on 127.0.0.1: convergence, partitions, late joiners,
//! restarts from redb, a peer that sends garbage, a quiet synced pair, and
//! the core's `Broadcaster` and `Fetcher` traits over the node.
//!
//! Every wait is for a condition, bounded by `tokio::time::timeout`; no test
//! sleeps to let time pass, and none asserts on timing. No test needs more
//! than a few seconds on a quiet machine (each has a 40 s ceiling).

mod garbage_peer;
mod waiting;

use std::sync::Arc;
use std::time::Duration;

use garbage_peer::run_garbage_peer;
use merkle_clock::replica::ReplicaConfig;
use merkle_clock::store::RedbBlockstore;
use merkle_clock::sync::transport::{Broadcaster, Fetcher};
use merkle_clock::{Block, Cid, Event, MemoryBlockstore, Replica, StreamStore};
use merkle_clock_libp2p::{Node, NodeConfig, NodeHandle, Stats};
use tokio::time::timeout;
use waiting::{CONVERGE_LIMIT, converge, wait_for};

type Handle = NodeHandle<dyn StreamStore>;

/// Each test's ceiling.
const TEST_LIMIT: Duration = Duration::from_secs(40);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into()))
        .with_test_writer()
        .try_init();
}

fn genesis(name: &str) -> Block {
    Event::genesis(format!("loopback test: {name}")).encode().unwrap()
}

fn node_config() -> NodeConfig {
    let mut c = NodeConfig::default();
    c.announce_interval = Duration::from_millis(400);
    c.announce_debounce = Duration::from_millis(20);
    c.request_timeout = Duration::from_secs(5);
    c.sessions.timeout = Some(Duration::from_secs(2));
    c.redial_interval = Duration::from_millis(200);
    c.gossip_heartbeat = Duration::from_millis(200);
    c
}

async fn spawn_with(store: Arc<dyn StreamStore>, genesis: &Block) -> Handle {
    spawn_configured(node_config(), store, genesis).await
}

async fn spawn_configured(config: NodeConfig, store: Arc<dyn StreamStore>, genesis: &Block) -> Handle {
    let handle = Node::<dyn StreamStore>::spawn(config).unwrap();
    let replica = Replica::create(store, genesis, ReplicaConfig::default()).await.unwrap();
    handle.add_stream(replica).await.unwrap();
    handle
}

async fn spawn_mem(genesis: &Block) -> Handle {
    spawn_with(Arc::new(MemoryBlockstore::new()), genesis).await
}

/// Node `i` dials every node before it; waits until each sees the others.
async fn mesh(nodes: &[&Handle]) {
    for (i, n) in nodes.iter().enumerate() {
        for m in &nodes[..i] {
            n.dial(m.listen_addr().await.unwrap()).await.unwrap();
        }
    }
    wait_for("full mesh", || async {
        for n in nodes {
            if n.peers().await.unwrap().len() < nodes.len() - 1 {
                return false;
            }
        }
        true
    })
    .await;
}

async fn append_n(node: &Handle, stream: Cid, tag: &str, n: usize) {
    for i in 0..n {
        node.append(stream, &format!("{tag} {i}")).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_converge() {
    init_tracing();
    timeout(TEST_LIMIT, async {
        let g = genesis("concurrent");
        let stream = *g.cid();
        let (a, b, c, d) = (spawn_mem(&g).await, spawn_mem(&g).await, spawn_mem(&g).await, spawn_mem(&g).await);
        mesh(&[&a, &b, &c, &d]).await;
        tokio::join!(
            append_n(&a, stream, "a", 25),
            append_n(&b, stream, "b", 25),
            append_n(&c, stream, "c", 25),
            append_n(&d, stream, "d", 25),
        );
        converge(&[&a, &b, &c, &d], stream, 101).await;
        // Only facts that convergence implies, whatever the timing (the old
        // `sessions_completed > 0` was not one: a node's own sessions could
        // still be finishing their last round trip when the others held its
        // events). Each node took in exactly the others' 75 events, and its
        // own 25 left it in sync messages its driver made (in requests or in
        // responses).
        for n in [&a, &b, &c, &d] {
            let s = n.stats().await.unwrap();
            assert_eq!(s.events_received, 75, "{s:?}");
            assert!(s.sessions.messages_sent > 0, "{s:?}");
        }
        for n in [a, b, c, d] {
            n.shutdown().await.unwrap();
        }
    })
    .await
    .expect("test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_streams_per_node() {
    init_tracing();
    timeout(TEST_LIMIT, async {
        let (g1, g2) = (genesis("stream one"), genesis("stream two"));
        let (s1, s2) = (*g1.cid(), *g2.cid());
        let a = spawn_mem(&g1).await;
        let b = spawn_mem(&g1).await;
        let c = spawn_mem(&g2).await;
        // a and b also replicate stream two; c only stream two.
        for n in [&a, &b] {
            let r = Replica::create(
                Arc::new(MemoryBlockstore::new()) as Arc<dyn StreamStore>,
                &g2,
                ReplicaConfig::default(),
            )
            .await
            .unwrap();
            n.add_stream(r).await.unwrap();
        }
        mesh(&[&a, &b, &c]).await;
        tokio::join!(append_n(&a, s1, "a1", 10), append_n(&b, s2, "b2", 10), append_n(&c, s2, "c2", 10));
        converge(&[&a, &b], s1, 11).await;
        converge(&[&a, &b, &c], s2, 21).await;
        assert!(c.len(s1).await.is_err(), "c does not replicate stream one");
    })
    .await
    .expect("test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_node_converges_after_reconnect() {
    init_tracing();
    timeout(TEST_LIMIT, async {
        let g = genesis("partition");
        let stream = *g.cid();
        let (a, b, c) = (spawn_mem(&g).await, spawn_mem(&g).await, spawn_mem(&g).await);
        mesh(&[&a, &b, &c]).await;
        // a dials c too, so that while c is cut off someone keeps knocking.
        a.dial(c.listen_addr().await.unwrap()).await.unwrap();
        append_n(&a, stream, "before", 5).await;
        converge(&[&a, &b, &c], stream, 6).await;

        c.set_offline(true).await.unwrap();
        wait_for("c to be cut off", || async {
            c.peers().await.unwrap().is_empty()
                && !a.peers().await.unwrap().contains(&c.peer_id())
                && !b.peers().await.unwrap().contains(&c.peer_id())
        })
        .await;
        tokio::join!(append_n(&a, stream, "a", 20), append_n(&b, stream, "b", 20), append_n(&c, stream, "c", 7));
        converge(&[&a, &b], stream, 46).await;
        // a keeps redialing c; c refuses. Once c has refused two connections
        // made after a and b converged, a had 46 events to give it on each.
        let refused = c.stats().await.unwrap().offline_refusals;
        wait_for("c to refuse two more connections", || async {
            c.stats().await.unwrap().offline_refusals >= refused + 2
        })
        .await;
        assert_eq!(c.len(stream).await.unwrap(), 13, "an offline node receives nothing");
        assert_eq!(c.stats().await.unwrap().events_received, 5, "only the events from before the cut");

        c.set_offline(false).await.unwrap();
        converge(&[&a, &b, &c], stream, 53).await;
    })
    .await
    .expect("test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_catches_up() {
    init_tracing();
    timeout(TEST_LIMIT, async {
        let g = genesis("late joiner");
        let stream = *g.cid();
        let (a, b, c) = (spawn_mem(&g).await, spawn_mem(&g).await, spawn_mem(&g).await);
        mesh(&[&a, &b, &c]).await;
        a.append_many(stream, (0..300).map(|i| format!("a {i}"))).await.unwrap();
        tokio::join!(append_n(&b, stream, "b", 30), append_n(&c, stream, "c", 30));
        converge(&[&a, &b, &c], stream, 361).await;
        // Everything is quiet now; d joins with only the genesis and dials one peer.
        let d = spawn_mem(&g).await;
        d.dial(c.listen_addr().await.unwrap()).await.unwrap();
        converge(&[&a, &b, &c, &d], stream, 361).await;
        let s = d.stats().await.unwrap();
        assert_eq!(s.events_received, 360, "{s:?}");
    })
    .await
    .expect("test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_part_catch_up_brings_every_event_once_in_parts_within_the_limit() {
    init_tracing();
    timeout(TEST_LIMIT, async {
        let g = genesis("multi-part catch-up");
        let stream = *g.cid();
        // Small limits: 2,000 events of about 850 bytes take a few dozen parts.
        let mut config = node_config();
        config.sync_limits.max_message_bytes = 128 << 10;
        config.sync_limits.max_blocks = 100;
        let a = spawn_configured(config.clone(), Arc::new(MemoryBlockstore::new()), &g).await;
        let payload = "p".repeat(800);
        a.append_many(stream, (0..2000).map(|i| format!("{i} {payload}"))).await.unwrap();
        let d = spawn_configured(config.clone(), Arc::new(MemoryBlockstore::new()), &g).await;
        d.dial(a.listen_addr().await.unwrap()).await.unwrap();
        converge(&[&a, &d], stream, 2001).await;

        let cids: Vec<Cid> = a.read(stream, |r| r.order().skip(1).collect()).await.unwrap();
        let block_bytes: u64 = a.get(stream, cids).await.unwrap().iter().flatten().map(|b| b.len() as u64).sum();
        let (sa, sd) = (a.stats().await.unwrap(), d.stats().await.unwrap());
        // Every event once: no part came twice, none from elsewhere.
        assert_eq!(sd.events_received, 2000, "{sd:?}");
        assert_eq!(sd.blocks_duplicate, 0, "{sd:?}");
        assert_eq!(sa.sync_garbage + sd.sync_garbage, 0, "{sa:?} {sd:?}");
        // In parts, none beyond the configured limit (memory stays within it).
        let limit = config.sync_limits.max_message_bytes as u64;
        assert!(sa.largest_sync_message <= limit && sd.largest_sync_message <= limit, "{sa:?} {sd:?}");
        assert!(sd.sessions.messages_received >= block_bytes / limit, "{sd:?}");
        // What the server sent is the events' bytes and a little per part.
        assert!(
            sa.sync_bytes_sent < block_bytes + block_bytes / 10,
            "{} for {block_bytes}: {sa:?}",
            sa.sync_bytes_sent
        );
    })
    .await
    .expect("test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_catches_up_from_its_redb_store() {
    init_tracing();
    timeout(TEST_LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.redb");
        let g = genesis("restart");
        let stream = *g.cid();
        let (a, b) = (spawn_mem(&g).await, spawn_mem(&g).await);
        let c = spawn_with(Arc::new(RedbBlockstore::open(&path).unwrap()), &g).await;
        mesh(&[&a, &b, &c]).await;
        tokio::join!(append_n(&a, stream, "a", 15), append_n(&c, stream, "c", 15));
        converge(&[&a, &b, &c], stream, 31).await;
        let heads_before = c.heads(stream).await.unwrap();

        // Stop c and drop its replica, closing the redb file.
        drop(c.shutdown().await.unwrap());
        tokio::join!(append_n(&a, stream, "a later", 20), append_n(&b, stream, "b later", 20));
        converge(&[&a, &b], stream, 71).await;

        // Reopen the same file: the node starts where it stopped, then catches up.
        let store: Arc<dyn StreamStore> = Arc::new(RedbBlockstore::open(&path).unwrap());
        let replica = Replica::open(store, &stream, ReplicaConfig::default()).await.unwrap();
        assert_eq!(replica.len(), 31);
        assert_eq!(replica.heads(), heads_before);
        let c = Node::<dyn StreamStore>::spawn(node_config()).unwrap();
        c.add_stream(replica).await.unwrap();
        c.dial(a.listen_addr().await.unwrap()).await.unwrap();
        converge(&[&a, &b, &c], stream, 71).await;
        assert_eq!(c.stats().await.unwrap().events_received, 40);

        // What it caught up on is in the store: reopen once more.
        drop(c.shutdown().await.unwrap());
        let store: Arc<dyn StreamStore> = Arc::new(RedbBlockstore::open(&path).unwrap());
        let replica = Replica::open(store, &stream, ReplicaConfig::default()).await.unwrap();
        assert_eq!(replica.len(), 71);
        assert_eq!(replica.heads(), a.heads(stream).await.unwrap());
    })
    .await
    .expect("test took too long");
}

// ---- a peer that sends garbage (its swarm is in `garbage_peer/`) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_peer_is_ignored() {
    init_tracing();
    timeout(TEST_LIMIT, async {
        let g = genesis("garbage");
        let stream = *g.cid();
        let (a, b, c) = (spawn_mem(&g).await, spawn_mem(&g).await, spawn_mem(&g).await);
        mesh(&[&a, &b, &c]).await;
        let targets =
            vec![a.listen_addr().await.unwrap(), b.listen_addr().await.unwrap(), c.listen_addr().await.unwrap()];
        let garbage = tokio::spawn(run_garbage_peer(stream, targets, 30));
        // The garbage peer is connected to every node before they write.
        wait_for("the garbage peer to connect", || async {
            for n in [&a, &b, &c] {
                if n.peers().await.unwrap().len() < 3 {
                    return false;
                }
            }
            true
        })
        .await;
        tokio::join!(append_n(&a, stream, "a", 15), append_n(&b, stream, "b", 15), append_n(&c, stream, "c", 15));
        converge(&[&a, &b, &c], stream, 46).await;
        timeout(Duration::from_secs(15), garbage).await.expect("garbage peer stops").unwrap();
        // The garbage reached the nodes and was counted, not fatal.
        let mut gossip_garbage = 0;
        let mut sync_garbage = 0;
        let mut failures = 0;
        let mut rejected = 0;
        for n in [&a, &b, &c] {
            let s = n.stats().await.unwrap();
            gossip_garbage += s.gossip_garbage;
            sync_garbage += s.sync_garbage;
            failures += s.inbound_failures + s.outbound_failures + s.sessions.failures;
            rejected += s.blocks_rejected;
        }
        let counts = format!("gossip {gossip_garbage}, sync {sync_garbage}, failures {failures}, rejected {rejected}");
        assert!(gossip_garbage > 0, "garbage gossip was seen: {counts}");
        assert!(sync_garbage > 0, "garbage sync messages were seen: {counts}");
        assert!(failures > 0, "garbage frames failed their sessions: {counts}");
        assert!(rejected > 0, "invalid blocks were refused: {counts}");
        // And the nodes still work: one more round converges.
        append_n(&b, stream, "after", 3).await;
        converge(&[&a, &b, &c], stream, 49).await;
    })
    .await
    .expect("test took too long");
}

// ---- a quiet synced pair, and the core's transport traits ----

async fn stats_of(nodes: &[&Handle]) -> Vec<Stats> {
    let mut out = Vec::new();
    for n in nodes {
        out.push(n.stats().await.unwrap());
    }
    out
}

/// Sync requests sent by the nodes, in all.
fn requests(stats: &[Stats]) -> u64 {
    stats.iter().map(|s| s.requests_sent).sum()
}

/// Waits until every node has received `rounds` more announcements than in
/// `since` (each node announces every `announce_interval`, so this is
/// `rounds` announce intervals of the others, observed, not slept).
async fn announce_rounds(nodes: &[&Handle], since: &[Stats], rounds: u64) {
    wait_for(&format!("{rounds} announce rounds"), || async {
        let now = stats_of(nodes).await;
        now.iter().zip(since).all(|(n, s)| n.announcements_received >= s.announcements_received + rounds)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_synced_pair_sends_no_sync_messages() {
    init_tracing();
    timeout(TEST_LIMIT, async {
        let g = genesis("quiet");
        let stream = *g.cid();
        let (a, b) = (spawn_mem(&g).await, spawn_mem(&g).await);
        mesh(&[&a, &b]).await;
        tokio::join!(append_n(&a, stream, "a", 20), append_n(&b, stream, "b", 20));
        converge(&[&a, &b], stream, 41).await;
        // Settled: the request count did not move over one announce round of each.
        let mut settled = stats_of(&[&a, &b]).await;
        loop {
            announce_rounds(&[&a, &b], &settled, 1).await;
            let now = stats_of(&[&a, &b]).await;
            let quiet = requests(&now) == requests(&settled);
            settled = now;
            if quiet {
                break;
            }
        }
        // Three more announce rounds each (the periodic announcements keep
        // flowing, their heads are equal): not one sync request.
        announce_rounds(&[&a, &b], &settled, 3).await;
        let after = stats_of(&[&a, &b]).await;
        assert_eq!(requests(&after), requests(&settled), "a synced pair stays quiet: {after:?}");
        for (s, before) in after.iter().zip(&settled) {
            assert_eq!(s.sessions.timeouts, before.sessions.timeouts, "settled sessions never time out: {s:?}");
            assert_eq!(s.sessions.messages_sent, before.sessions.messages_sent, "nor speak: {s:?}");
        }
    })
    .await
    .expect("test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcaster_announces_and_receives_on_the_topic() {
    init_tracing();
    timeout(TEST_LIMIT, async {
        let g = genesis("broadcaster");
        let stream = *g.cid();
        let (a, b) = (spawn_mem(&g).await, spawn_mem(&g).await);
        mesh(&[&a, &b]).await;
        let sender = a.broadcaster(stream);
        let mut receiver = b.broadcaster(stream);
        assert_eq!(receiver.topic(), &stream);
        // Heads nobody has, so that the announcement is recognisable among
        // the nodes' own, and a block pushed along.
        let heads = vec![*Event::genesis("broadcast head").encode().unwrap().cid()];
        let block = bytes::Bytes::from_static(b"a pushed block");
        // Publishing fails until gossipsub knows that b follows the topic.
        wait_for("the announcement to be published", || async {
            sender.announce(heads.clone(), vec![block.clone()]).await.is_ok()
        })
        .await;
        let heard = timeout(CONVERGE_LIMIT, async {
            loop {
                let m = receiver.next().await.unwrap().expect("b is running");
                if m.heads == heads {
                    return m;
                }
            }
        })
        .await
        .expect("the announcement arrives");
        assert_eq!(heard.from.as_str(), a.peer_id().to_string());
        assert_eq!(heard.blocks, vec![block]);
        // Once the node stops, the broadcaster ends.
        b.shutdown().await.unwrap();
        let end = timeout(CONVERGE_LIMIT, async {
            loop {
                if let Ok(None) = receiver.next().await {
                    return;
                }
            }
        })
        .await;
        assert!(end.is_ok(), "next() ends with Ok(None) after shutdown");
    })
    .await
    .expect("test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetcher_gets_verified_blocks_from_peers() {
    init_tracing();
    timeout(TEST_LIMIT, async {
        let g = genesis("fetcher");
        let stream = *g.cid();
        let (a, b) = (spawn_mem(&g).await, spawn_mem(&g).await);
        // More CIDs than one request may ask for.
        let mut cids = b.append_many(stream, (0..1100).map(|i| format!("b {i}"))).await.unwrap();
        // a is empty and has no peer: nothing to ask.
        let fetcher = a.fetcher(stream);
        assert_eq!(fetcher.fetch(&cids[..3]).await.unwrap(), vec![None, None, None]);
        mesh(&[&a, &b]).await;
        let unknown = *Event::genesis("nobody has this").encode().unwrap().cid();
        cids.push(unknown);
        cids.push(stream);
        let got = fetcher.fetch(&cids).await.unwrap();
        assert_eq!(got.len(), cids.len());
        for (cid, block) in cids.iter().zip(&got) {
            if *cid == unknown {
                assert!(block.is_none(), "nobody has {cid}");
            } else {
                let block = block.as_ref().unwrap_or_else(|| panic!("b has {cid}"));
                assert_eq!(block.cid(), cid);
            }
        }
        let s = a.stats().await.unwrap();
        assert!(s.fetch_requests_sent >= 2 && s.blocks_fetched >= 1101, "{s:?}");
        // A stream the node does not have is an error, not a hang.
        let other = *genesis("not here").cid();
        assert!(a.fetcher(other).fetch(&[other]).await.is_err());
    })
    .await
    .expect("test took too long");
}

// ---- no duplicate pulls: events in announcements, one exchange per pair ----

/// Waits until the nodes' sync requests stop moving over one announce round
/// (the first-contact sessions are over).
async fn settle(nodes: &[&Handle]) -> Vec<Stats> {
    let mut settled = stats_of(nodes).await;
    loop {
        announce_rounds(nodes, &settled, 1).await;
        let now = stats_of(nodes).await;
        let quiet = requests(&now) == requests(&settled);
        settled = now;
        if quiet {
            return settled;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_events_are_taken_in_without_a_session() {
    init_tracing();
    timeout(TEST_LIMIT, async {
        let g = genesis("announced events");
        let stream = *g.cid();
        let (a, b, c) = (spawn_mem(&g).await, spawn_mem(&g).await, spawn_mem(&g).await);
        mesh(&[&a, &b, &c]).await;
        let before = settle(&[&a, &b, &c]).await;
        append_n(&a, stream, "carried", 10).await;
        converge(&[&a, &b, &c], stream, 11).await;
        let after = stats_of(&[&a, &b, &c]).await;
        for (s, was) in after.iter().zip(&before).skip(1) {
            let got = s.events_received - was.events_received;
            let carried = s.events_from_announcements - was.events_from_announcements;
            assert_eq!((got, carried), (10, 10), "every event came inside an announcement: {s:?}");
            assert_eq!(s.blocks_duplicate, was.blocks_duplicate, "and once: {s:?}");
        }
        assert_eq!(requests(&after), requests(&before), "no sync session was needed: {after:?}");
    })
    .await
    .expect("test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_never_makes_a_node_accept_an_invalid_event() {
    init_tracing();
    timeout(TEST_LIMIT, async {
        let g = genesis("invalid announced");
        let stream = *g.cid();
        let (a, b) = (spawn_mem(&g).await, spawn_mem(&g).await);
        mesh(&[&a, &b]).await;
        // Noise, and a well-formed event that is not of this stream (another
        // stream's genesis), each announced as if it were an event of this one.
        let foreign = genesis("another stream");
        let sender = a.broadcaster(stream);
        for block in [bytes::Bytes::from_static(b"not an event"), foreign.bytes().clone()] {
            let heads = vec![*Block::from_bytes(block.clone()).cid()];
            wait_for("the announcement to be published", || async {
                sender.announce(heads.clone(), vec![block.clone()]).await.is_ok()
            })
            .await;
        }
        wait_for("both blocks to be refused", || async { b.stats().await.unwrap().blocks_rejected >= 2 }).await;
        let s = b.stats().await.unwrap();
        assert_eq!(b.len(stream).await.unwrap(), 1, "nothing was accepted: {s:?}");
        assert_eq!(s.events_from_announcements, 0, "{s:?}");
        assert!(s.gossip_garbage >= 2, "the announcements were refused: {s:?}");
        // A valid event still goes through.
        append_n(&a, stream, "valid", 1).await;
        converge(&[&a, &b], stream, 2).await;
    })
    .await
    .expect("test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_receive_few_duplicate_blocks() {
    init_tracing();
    timeout(TEST_LIMIT, async {
        let g = genesis("few duplicates");
        let stream = *g.cid();
        let (a, b, c, d) = (spawn_mem(&g).await, spawn_mem(&g).await, spawn_mem(&g).await, spawn_mem(&g).await);
        let nodes = [&a, &b, &c, &d];
        mesh(&nodes).await;
        let before = settle(&nodes).await;
        tokio::join!(
            append_n(&a, stream, "a", 25),
            append_n(&b, stream, "b", 25),
            append_n(&c, stream, "c", 25),
            append_n(&d, stream, "d", 25),
        );
        converge(&nodes, stream, 101).await;
        let after = stats_of(&nodes).await;
        let needed: u64 = after.iter().zip(&before).map(|(s, w)| s.events_received - w.events_received).sum();
        let duplicate: u64 = after.iter().zip(&before).map(|(s, w)| s.blocks_duplicate - w.blocks_duplicate).sum();
        assert_eq!(needed, 300, "each node took in the others' 75 events");
        // Pushing to every peer cost two or three copies of each block; now
        // each comes once in an announcement, and a pull (rare: a head that
        // did not arrive within `pull_delay`) brings one more at most.
        assert!(duplicate <= needed, "{duplicate} duplicate blocks for {needed} needed: {after:?}");
    })
    .await
    .expect("test took too long");
}

/// A node whose replica holds `n` events after the genesis, the oldest
/// pruned so that only the newest `keep` keep their bytes. Returns the
/// handle and the pruned events' CIDs.
async fn spawn_pruned(genesis: &Block, n: usize, keep: usize) -> (Handle, Vec<Cid>) {
    let store: Arc<dyn StreamStore> = Arc::new(MemoryBlockstore::new());
    let mut replica = Replica::create(store, genesis, ReplicaConfig::default()).await.unwrap();
    for i in 0..n {
        replica.append(&format!("event {i}")).await.unwrap();
    }
    replica.prune(merkle_clock::replica::PrunePolicy::KeepNewest(keep)).await.unwrap();
    let pruned: Vec<Cid> = replica.order().filter(|c| replica.is_pruned(c)).collect();
    assert!(!pruned.is_empty());
    let handle = Node::<dyn StreamStore>::spawn(node_config()).unwrap();
    handle.add_stream(replica).await.unwrap();
    (handle, pruned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_pruned_what_we_lack_says_so_and_the_node_lists_it_unavailable() {
    init_tracing();
    timeout(TEST_LIMIT, async {
        let g = genesis("pruned peer");
        let (a, pruned) = spawn_pruned(&g, 20, 5).await;
        let b = spawn_mem(&g).await;
        let stream = *g.cid();
        assert!(b.unavailable(stream).await.unwrap().is_empty(), "no peer: nothing is unavailable");
        mesh(&[&a, &b]).await;
        // B gets the kept events, asks for their pruned parent, and A
        // answers `pruned`: nothing waits on it in silence.
        wait_for("the pruned events to be listed unavailable", || async {
            let gone = b.unavailable(stream).await.unwrap();
            !gone.is_empty() && gone == b.read(stream, |r| r.missing()).await.unwrap()
        })
        .await;
        let gone = b.unavailable(stream).await.unwrap();
        assert!(gone.iter().all(|c| pruned.contains(c)), "only pruned events are unavailable: {gone:?}");
        let held = b.get(stream, pruned.clone()).await.unwrap();
        assert!(held.iter().all(Option::is_none), "a pruned block reached the other node");
        // Asked by CID, the pruned peer answers none for them (not an error).
        let fetched = b.fetcher(stream).fetch(&pruned).await.unwrap();
        assert!(fetched.iter().all(Option::is_none), "a pruned block was served");
        // A's own view: it lacks nothing, so nothing is unavailable to it.
        assert!(a.unavailable(stream).await.unwrap().is_empty());
        assert!(matches!(
            b.unavailable(*genesis("no such stream").cid()).await,
            Err(merkle_clock_libp2p::NodeError::UnknownStream(_))
        ));
    })
    .await
    .unwrap();
}
