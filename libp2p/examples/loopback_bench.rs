//! Measures replication over real swarms on 127.0.0.1 (a measurement, not a
//! test: it prints figures and asserts only that the runs converged).
//!
//! ```text
//! cargo run --release -p merkle-clock-libp2p --example loopback_bench -- \
//!     [--json] [--nodes 5,10,20,40] [--events 5000] [--catchup-events 1000000] [--payload 200]
//! ```
//!
//! 1. `converge`, for each N of `--nodes`: N nodes in a full mesh append
//!    `--events` new events between them (events/N each, one append per
//!    event, all nodes at once); timed from the first append until every
//!    node holds all of them with the same heads. `byte_ratio`: the bytes
//!    all nodes read from their connections (TCP payload: encryption,
//!    multiplexing, gossip and sync together) over the bytes of the events
//!    each lacked (every event is needed by N − 1 nodes). `msgs_per_node`:
//!    announcements published plus sync requests sent plus sync responses
//!    sent, per node (gossipsub's forwarding and control messages are in
//!    the bytes, not in this count).
//! 2. `catchup`: the blocks of `--catchup-events` events are first ingested
//!    into a fresh replica with `ingest_many` (one call, in height order:
//!    the local rate); that replica then serves a new node holding only the
//!    genesis, which dials it; timed from the dial until it holds them all.
//!    Both rates come from the same run. `0` skips it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use merkle_clock::replica::ReplicaConfig;
use merkle_clock::{Block, Cid, Event, MemoryBlockstore, Replica, StreamStore};
use merkle_clock_libp2p::{Node, NodeConfig, NodeHandle, Stats};

type Handle = NodeHandle<dyn StreamStore>;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn number(name: &str, default: usize) -> usize {
    arg(name).map_or(default, |v| v.replace('_', "").parse().expect("a number"))
}

fn config() -> NodeConfig {
    let mut c = NodeConfig::default();
    c.announce_interval = Duration::from_secs(2);
    if let Some(ms) = arg("--forward-delay-ms") {
        c.forward_delay = Duration::from_millis(ms.parse().expect("milliseconds"));
    }
    if let Some(ms) = arg("--debounce-ms") {
        c.announce_debounce = Duration::from_millis(ms.parse().expect("milliseconds"));
    }
    if let Some(ms) = arg("--heartbeat-ms") {
        c.gossip_heartbeat = Duration::from_millis(ms.parse().expect("milliseconds"));
    }
    c
}

async fn spawn(genesis: &Block) -> Handle {
    let store: Arc<dyn StreamStore> = Arc::new(MemoryBlockstore::new());
    spawn_with(Replica::create(store, genesis, ReplicaConfig::default()).await.expect("replica")).await
}

async fn spawn_with(replica: Replica<dyn StreamStore>) -> Handle {
    let h = Node::<dyn StreamStore>::spawn(config()).expect("spawn");
    h.add_stream(replica).await.expect("add");
    h
}

#[derive(Default, Debug, Clone, Copy)]
struct Totals {
    announcements: u64,
    requests: u64,
    responses: u64,
    sync_bytes: u64,
    sync_bytes_received: u64,
    announcement_bytes: u64,
    bytes_read: u64,
    duplicate: u64,
    from_announcements: u64,
    pulls: u64,
    restarts: u64,
}

impl Totals {
    fn add(&mut self, s: &Stats) {
        self.announcements += s.announcements_sent;
        self.requests += s.requests_sent;
        self.responses += s.requests_served;
        self.sync_bytes += s.sync_bytes_sent;
        self.sync_bytes_received += s.sync_bytes_received;
        self.announcement_bytes += s.announcement_bytes_received;
        self.bytes_read += s.bytes_read;
        self.duplicate += s.blocks_duplicate;
        self.from_announcements += s.events_from_announcements;
        self.pulls += s.pulls;
        self.restarts += s.sessions.timeouts + s.sessions.failures + s.sessions.capped;
    }
    fn minus(self, o: Totals) -> Totals {
        Totals {
            announcements: self.announcements - o.announcements,
            requests: self.requests - o.requests,
            responses: self.responses - o.responses,
            sync_bytes: self.sync_bytes - o.sync_bytes,
            sync_bytes_received: self.sync_bytes_received - o.sync_bytes_received,
            announcement_bytes: self.announcement_bytes - o.announcement_bytes,
            bytes_read: self.bytes_read - o.bytes_read,
            duplicate: self.duplicate - o.duplicate,
            from_announcements: self.from_announcements - o.from_announcements,
            pulls: self.pulls - o.pulls,
            restarts: self.restarts - o.restarts,
        }
    }
    fn messages(&self) -> u64 {
        self.announcements + self.requests + self.responses
    }
}

async fn totals(nodes: &[&Handle]) -> Totals {
    let mut t = Totals::default();
    for n in nodes {
        t.add(&n.stats().await.expect("stats"));
    }
    t
}

async fn converged(nodes: &[&Handle], stream: Cid, events: usize) -> bool {
    let mut heads = None;
    for n in nodes {
        if n.len(stream).await.expect("len") != events {
            return false;
        }
        let h = n.heads(stream).await.expect("heads");
        if heads.get_or_insert_with(|| h.clone()) != &h {
            return false;
        }
    }
    true
}

/// Polls every 10 ms, at most `limit`; returns the time when it held.
async fn wait(nodes: &[&Handle], stream: Cid, events: usize, start: Instant, limit: Duration) -> Duration {
    tokio::time::timeout(limit, async {
        while !converged(nodes, stream, events).await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("did not converge within {limit:?}"));
    start.elapsed()
}

/// One convergence run of `n` nodes; prints its figures.
async fn converge(n: usize, events: usize, payload: &str, json: bool) {
    let genesis = Event::genesis(format!("loopback bench: converge {n}")).encode().expect("genesis");
    let stream = *genesis.cid();
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(spawn(&genesis).await);
    }
    for i in 0..n {
        for j in 0..i {
            let addr = nodes[j].listen_addr().await.expect("addr");
            nodes[i].dial(addr).await.expect("dial");
        }
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        for node in &nodes {
            while node.peers().await.expect("peers").len() < n - 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
    .await
    .expect("mesh");
    // Gossipsub subscriptions and meshes, and the first-contact sessions.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let refs: Vec<&Handle> = nodes.iter().collect();
    let before = totals(&refs).await;
    if !json {
        println!(
            "  (setup: {} sync requests, {} restarts, {:.1} MiB read)",
            before.requests,
            before.restarts,
            before.bytes_read as f64 / (1u64 << 20) as f64
        );
    }
    let start = Instant::now();
    let per_node = events / n;
    let mut writers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let node = node.clone();
        let payload = payload.to_string();
        writers.push(tokio::spawn(async move {
            for k in 0..per_node {
                node.append(stream, &format!("{i}:{k}:{payload}")).await.expect("append");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let appended = start.elapsed();
    let total = per_node * n;
    let took = wait(&refs, stream, total + 1, start, Duration::from_secs(600)).await;
    let t = totals(&refs).await.minus(before);
    // The bytes of the new events: each is needed by the n − 1 others.
    let cids: Vec<Cid> = nodes[0].read(stream, |r| r.order().skip(1).collect()).await.expect("order");
    let event_bytes: u64 =
        nodes[0].get(stream, cids).await.expect("get").iter().flatten().map(|b| b.len() as u64).sum();
    let needed = event_bytes * (n as u64 - 1);
    let ratio = t.bytes_read as f64 / needed as f64;
    let msgs = t.messages() as f64 / n as f64;
    if json {
        println!(
            "{{\"metric\":\"libp2p_converge\",\"nodes\":{n},\"events\":{total},\"byte_ratio\":{ratio:.3},\"seconds\":{:.3},\"msgs_per_node\":{msgs:.1}}}",
            took.as_secs_f64()
        );
    } else {
        println!(
            "converge  {n:>3} nodes x {per_node} events: {took:>9.2?} (appends took {appended:.2?}); bytes read {:.2} MiB for {:.2} MiB needed: ratio {ratio:.3} (announcements delivered {:.3}, sync messages {:.3}, the rest: gossip copies, control, envelopes, framing {:.3}); messages/node {msgs:.1} (announcements {}, sync requests {}, responses {}); events via announcements {}, pulls {}, duplicate blocks {}, session restarts {}",
            t.bytes_read as f64 / (1u64 << 20) as f64,
            needed as f64 / (1u64 << 20) as f64,
            t.announcement_bytes as f64 / needed as f64,
            t.sync_bytes_received as f64 / needed as f64,
            t.bytes_read.saturating_sub(t.announcement_bytes + t.sync_bytes_received) as f64 / needed as f64,
            t.announcements,
            t.requests,
            t.responses,
            t.from_announcements,
            t.pulls,
            t.duplicate,
            t.restarts,
        );
    }
    for node in &nodes {
        drop(node.shutdown().await);
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// CPU seconds the process used so far (every thread; /proc, in clock ticks
/// of 10 ms): on a shared machine, what a run cost whatever the wait.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with the last ')'): utime is the 12th, stime the 13th.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// A node with `c` events serves a node with only the genesis.
async fn catchup(c: usize, payload: &str, json: bool) {
    let genesis = Event::genesis("loopback bench: catch-up").encode().expect("genesis");
    let stream = *genesis.cid();
    // The events, made once.
    let blocks: Vec<Block> = {
        let store: Arc<dyn StreamStore> = Arc::new(MemoryBlockstore::new());
        let mut source = Replica::create(store.clone(), &genesis, ReplicaConfig::default()).await.expect("replica");
        let mut left = c;
        while left > 0 {
            let k = left.min(10_000);
            source.append_many((0..k).map(|i| format!("{left}:{i}:{payload}"))).await.expect("append");
            left -= k;
        }
        let order: Vec<Cid> = source.order().skip(1).collect();
        store.get_many(&order).await.expect("get").into_iter().map(|b| b.expect("held")).collect()
    };
    let bytes: usize = blocks.iter().map(Block::len).sum();
    // The local rate: `ingest_many` of the same blocks into a fresh replica.
    let store: Arc<dyn StreamStore> = Arc::new(MemoryBlockstore::new());
    let mut served = Replica::create(store, &genesis, ReplicaConfig::default()).await.expect("replica");
    let (began, cpu_began) = (Instant::now(), cpu_seconds());
    let report = served.ingest_many(blocks).await.expect("ingest");
    let local = began.elapsed();
    let local_cpu = cpu_seconds() - cpu_began;
    assert_eq!(report.accepted.len(), c);
    drop(report);
    let local_rate = c as f64 / local.as_secs_f64();
    // Over libp2p: the replica just filled serves a new node.
    let a = spawn_with(served).await;
    let b = spawn(&genesis).await;
    let before = totals(&[&a, &b]).await;
    let (start, cpu_start) = (Instant::now(), cpu_seconds());
    b.dial(a.listen_addr().await.expect("addr")).await.expect("dial");
    let took = wait(&[&a, &b], stream, c + 1, start, Duration::from_secs(1200)).await;
    let cpu = cpu_seconds() - cpu_start;
    let t = totals(&[&a, &b]).await.minus(before);
    let joiner = b.stats().await.expect("stats");
    let rate = c as f64 / took.as_secs_f64();
    let ratio = rate / local_rate;
    if json {
        println!(
            "{{\"metric\":\"catchup\",\"events\":{c},\"events_per_s\":{rate:.0},\"local_ingest_per_s\":{local_rate:.0},\"ratio\":{ratio:.3}}}"
        );
    } else {
        println!(
            "catch-up  {c} events ({:.1} MiB of blocks): {took:.2?}, {rate:.0} events/s; local ingest_many {local:.2?}, {local_rate:.0} events/s; ratio {ratio:.3}; CPU of the process: {cpu:.2} s for the catch-up (both nodes), {local_cpu:.2} s for ingest_many; messages {} (announcements {}, sync requests {}, responses {}), sync bytes {:.1} MiB (received by the joiner {:.1} MiB, duplicate blocks {}); pulls {}, session restarts {}; peak RSS of the process {:.0} MiB",
            bytes as f64 / (1u64 << 20) as f64,
            t.messages(),
            t.announcements,
            t.requests,
            t.responses,
            t.sync_bytes as f64 / (1u64 << 20) as f64,
            joiner.sync_bytes_received as f64 / (1u64 << 20) as f64,
            joiner.blocks_duplicate,
            t.pulls,
            t.restarts,
            peak_rss_mib(),
        );
    }
    drop(a.shutdown().await);
    drop(b.shutdown().await);
}

#[tokio::main]
async fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let json = std::env::args().any(|a| a == "--json");
    let sizes: Vec<usize> = arg("--nodes")
        .unwrap_or_else(|| "5,10,20,40".into())
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.trim().parse().expect("a node count"))
        .collect();
    let events = number("--events", 5000);
    let c = number("--catchup-events", 1_000_000);
    let payload = "x".repeat(number("--payload", 200));
    if !json {
        println!(
            "loopback_bench: nodes {sizes:?}, {events} new events per run; catch-up of {c} events; {}-byte payloads",
            payload.len()
        );
    }
    for n in sizes {
        assert!(n >= 2, "at least two nodes");
        converge(n, events, &payload, json).await;
    }
    if c > 0 {
        catchup(c, &payload, json).await;
    }
}
