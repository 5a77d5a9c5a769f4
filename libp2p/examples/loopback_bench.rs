//! Measures convergence over real swarms on 127.0.0.1 (a measurement, not a
//! test: it prints figures and asserts only that the runs converged).
//!
//! ```text
//! cargo run --release -p merkle-clock-libp2p --example loopback_bench [-- --nodes 5 --events 1000 --catchup 10000 --payload 200]
//! ```
//!
//! 1. `converge`: N nodes in a full mesh each append E events (one append per
//!    event, all nodes at once); timed until every node holds all N×E events
//!    with the same heads.
//! 2. `catch-up`: one node holds C events; a new node with only the genesis
//!    dials it; timed until the new node holds them all.
//!
//! Messages counted: gossip announcements published, sync requests sent and
//! sync responses sent (each request-response exchange counts 2).

use std::sync::Arc;
use std::time::{Duration, Instant};

use merkle_clock::replica::ReplicaConfig;
use merkle_clock::{Block, Cid, Event, MemoryBlockstore, Replica, StreamStore};
use merkle_clock_libp2p::{Node, NodeConfig, NodeHandle, Stats};

type Handle = NodeHandle<dyn StreamStore>;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn config() -> NodeConfig {
    let mut c = NodeConfig::default();
    c.announce_interval = Duration::from_secs(1);
    c
}

async fn spawn(genesis: &Block) -> Handle {
    let h = Node::<dyn StreamStore>::spawn(config()).expect("spawn");
    let store: Arc<dyn StreamStore> = Arc::new(MemoryBlockstore::new());
    h.add_stream(Replica::create(store, genesis, ReplicaConfig::default()).await.expect("replica")).await.expect("add");
    h
}

#[derive(Default, Debug, Clone, Copy)]
struct Totals {
    announcements: u64,
    requests: u64,
    responses: u64,
    bytes: u64,
    /// Sync messages made by the session drivers.
    sync_messages: u64,
    /// Sessions restarted after a timeout, a failure or a garbage message.
    failed: u64,
    /// Sessions restarted by the cap on their length.
    capped: u64,
    duplicate: u64,
}

impl Totals {
    fn add(&mut self, s: &Stats) {
        self.announcements += s.announcements_sent;
        self.requests += s.requests_sent;
        self.responses += s.requests_served;
        self.bytes += s.sync_bytes_sent;
        self.sync_messages += s.sessions.messages_sent;
        self.failed += s.sessions.timeouts + s.sessions.failures;
        self.capped += s.sessions.capped;
        self.duplicate += s.blocks_duplicate;
    }
    fn minus(self, o: Totals) -> Totals {
        Totals {
            announcements: self.announcements - o.announcements,
            requests: self.requests - o.requests,
            responses: self.responses - o.responses,
            bytes: self.bytes - o.bytes,
            sync_messages: self.sync_messages - o.sync_messages,
            failed: self.failed - o.failed,
            capped: self.capped - o.capped,
            duplicate: self.duplicate - o.duplicate,
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

fn report(name: &str, took: Duration, events: usize, t: Totals) {
    println!(
        "{name:<10} {took:>10.2?}  {:>9.0} events/s  messages {:>6} (announcements {}, sync requests {}, responses {})  sync messages {} (restarts: capped {}, failed {})  sync bytes {:.2} MiB, duplicate blocks {}",
        events as f64 / took.as_secs_f64(),
        t.messages(),
        t.announcements,
        t.requests,
        t.responses,
        t.sync_messages,
        t.capped,
        t.failed,
        t.bytes as f64 / (1 << 20) as f64,
        t.duplicate,
    );
}

#[tokio::main]
async fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let n = arg("--nodes", 5);
    let e = arg("--events", 1000);
    let c = arg("--catchup", 10_000);
    let payload = "x".repeat(arg("--payload", 200));
    let limit = Duration::from_secs(600);
    println!("loopback_bench: {n} nodes x {e} events; catch-up of {c} events; {}-byte payloads", payload.len());

    // 1. N nodes, each appending E events at once.
    let genesis = Event::genesis("loopback bench: converge").encode().expect("genesis");
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
    tokio::time::timeout(Duration::from_secs(30), async {
        for node in &nodes {
            while node.peers().await.expect("peers").len() < n - 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
    .await
    .expect("mesh");
    tokio::time::sleep(Duration::from_millis(500)).await; // gossipsub subscriptions
    let refs: Vec<&Handle> = nodes.iter().collect();
    let before = totals(&refs).await;
    let start = Instant::now();
    let mut writers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let node = node.clone();
        let payload = payload.clone();
        writers.push(tokio::spawn(async move {
            for k in 0..e {
                node.append(stream, &format!("{i}:{k}:{payload}")).await.expect("append");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let appended = start.elapsed();
    let took = wait(&refs, stream, n * e + 1, start, limit).await;
    let t = totals(&refs).await.minus(before);
    println!("  (appends finished after {appended:.2?})");
    report("converge", took, n * e, t);
    for node in &nodes {
        drop(node.shutdown().await);
    }

    // 2. A node that missed C events catches up.
    let genesis = Event::genesis("loopback bench: catch-up").encode().expect("genesis");
    let stream = *genesis.cid();
    let a = spawn(&genesis).await;
    let mut left = c;
    while left > 0 {
        let k = left.min(1000);
        a.append_many(stream, (0..k).map(|i| format!("{left}:{i}:{payload}"))).await.expect("append");
        left -= k;
    }
    let b = spawn(&genesis).await;
    let before = totals(&[&a, &b]).await;
    let start = Instant::now();
    b.dial(a.listen_addr().await.expect("addr")).await.expect("dial");
    let took = wait(&[&a, &b], stream, c + 1, start, limit).await;
    let t = totals(&[&a, &b]).await.minus(before);
    report("catch-up", took, c, t);
    println!("  (from the dial: connection, gossipsub subscription, announcement, then the sync)");
    drop(a.shutdown().await);
    drop(b.shutdown().await);
}
