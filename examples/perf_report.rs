//! The performance report: one command, every figure the targets name.
//!
//! ```text
//! cargo run --release --example perf_report [-- --json] [--quick] [--no-pail]
//! cargo run --release --example perf_report -- --profile append|append_many|bare|ingest|redb N
//! ```
//!
//! Rows (one JSON object per line with `--json`):
//!
//! - `append_mem`: single `Replica::append`s of 128-byte payloads over a
//!   `MemoryBlockstore`, against `bare`: encoding and hashing the same events
//!   with the same encoder (`Event::encode_parts`: the envelope writer and
//!   BLAKE3), no store, no index. Rounds alternate bare and append, each on
//!   a fresh replica of `events` events; `ratio_10k_events` is the same ratio
//!   on 10,000-event replicas, whose index and store stay in cache.
//! - `append_mem_batched`: the same events with `Replica::append_many` in
//!   batches of 1,000 (one store commit each), against the same bare rate.
//! - `ingest`: foreign blocks as `(CID, bytes)`, owned (as from a network
//!   buffer; copied before the clock starts): `Block::new` (hash check),
//!   then `Replica::ingest_many` in batches of 1,000 (strict decode, index
//!   insert, one store commit per batch).
//! - `append_redb_batched`: `RedbBlockstore` with `Durability::Eventual`,
//!   `append_many` batches of 1,000, and a `flush` at the end (timed) — the
//!   build of the file `open_redb_1m` reopens.
//! - `append_redb_durable`: `Durability::Immediate`, one fsynced commit per append.
//! - `merge_growth`: a replica holds a shared history of N events plus k
//!   local ones; it ingests k concurrent events from another branch (verify +
//!   decode + insert + commit, one `ingest_many`). Each sample merges a fresh
//!   branch; the figure is the best sample. Ratio: N = 1M over N = 10k.
//! - `index_bytes_per_event`: a `Dag` of 1M events: `Dag::heap_bytes() / len`
//!   (reported as `value`), cross-checked with the growth of `VmRSS`
//!   (`rss_value`); measured first, before anything else has touched the heap.
//! - `open_redb_1m`: `Replica::open` of that redb file (a replay of its log).
//! - `ingest_signed`, `append_signed`, `membership_check_growth`: the
//!   signed-stream rows, measured by the code `auth_report` runs
//!   (`examples/common/auth_rows.rs`, included here; its doc says what each
//!   measures), in this thread's CPU time, best of several rounds.
//! - `pail_*`: `benches/peers/pail_clock.mjs` (if its `node_modules` is
//!   installed), run by this report on the same machine: its append rate
//!   against ours on the same workload (10,000 single appends onto a fresh
//!   memory store, wall time; ours the median of 21 runs, pail's one run,
//!   about a thousand times longer, after a JIT warm-up), and the store reads our replica
//!   makes to merge one concurrent event (counted by a wrapper around the
//!   memory store) against pail's block reads.
//!
//! # Clocks
//!
//! The machine these run on is shared, so throughput rows (`append_mem`,
//! `ingest`, `append_redb_batched`) count this thread's CPU time (from
//! `/proc/thread-self/schedstat`, summed over rounds: it ticks in steps of a
//! few ms) and also give the wall-clock rate of the best round
//! (`wall_*`). Rows that wait on the disk (`append_redb_durable`,
//! `open_redb_*`) and sub-millisecond samples (`merge`, the best of several)
//! use wall time. The pail comparison uses wall time on both sides (Node
//! reports wall time).
//!
//! `--quick` (for CI) uses smaller sizes: 100k instead of 1M and fewer rounds.
//! `--profile` runs one workload alone, for `valgrind --tool=callgrind`.

#[path = "common/auth_rows.rs"]
mod auth_rows;
#[path = "common/cpu.rs"]
mod cpu;

use cpu::{Stopwatch, Took};

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::executor::block_on;
use merkle_clock::replica::{Replica, ReplicaConfig};
use merkle_clock::store::{Durability, RedbBlockstore};
use merkle_clock::{
    Block, Blockstore, Cid, Dag, Event, EventId, LoggedEvent, MemoryBlockstore, StoreError, StreamStore, cid_of,
};
use serde_bytes::ByteBuf;

const PAYLOAD: usize = 128;
const MERGE_K: usize = 100;
const PAIL_HISTORIES: [usize; 3] = [1000, 5000, 20_000];

/// Sizes for a full run or a `--quick` one.
struct Plan {
    quick: bool,
    append_events: usize,
    append_rounds: usize,
    ingest_blocks: usize,
    ingest_rounds: usize,
    durable_events: usize,
    merge_sizes: Vec<usize>,
    merge_samples: usize,
    index_events: usize,
    redb_events: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                quick,
                append_events: 50_000,
                append_rounds: 3,
                ingest_blocks: 50_000,
                ingest_rounds: 2,
                durable_events: 30,
                merge_sizes: vec![10_000, 100_000],
                merge_samples: 5,
                index_events: 100_000,
                redb_events: 100_000,
            }
        } else {
            Plan {
                quick,
                append_events: 300_000,
                append_rounds: 5,
                ingest_blocks: 300_000,
                ingest_rounds: 3,
                durable_events: 200,
                merge_sizes: vec![10_000, 100_000, 1_000_000],
                merge_samples: 15,
                index_events: 1_000_000,
                redb_events: 1_000_000,
            }
        }
    }
}

/// The 128-byte payload of event `i`: deterministic, different for every `i`.
fn payload(i: u64) -> ByteBuf {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(PAYLOAD);
    for _ in 0..PAYLOAD / 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    ByteBuf::from(out)
}

fn payloads(from: u64, n: usize) -> Vec<ByteBuf> {
    (from..from + n as u64).map(payload).collect()
}

fn genesis(name: &str) -> Block {
    Event::genesis(name).encode().expect("genesis")
}

fn mem_replica(genesis: &Block) -> Replica<MemoryBlockstore> {
    block_on(Replica::create(Arc::new(MemoryBlockstore::new()), genesis, ReplicaConfig::default())).expect("create")
}

fn per_s(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

// ---------------------------------------------------------------- workloads

/// Encode + hash `payloads` as a chain on top of `genesis`: no store, no index.
fn bare(genesis: &Block, payloads: &[ByteBuf]) -> Took {
    let start = Stopwatch::start();
    let mut prev = *genesis.cid();
    for (i, p) in payloads.iter().enumerate() {
        let block = Event::encode_parts(i as u64 + 1, std::slice::from_ref(&prev), p).expect("encode");
        prev = *block.cid();
    }
    std::hint::black_box(prev);
    start.stop()
}

/// Single appends into a fresh replica over a memory store.
fn append_mem(genesis: &Block, payloads: &[ByteBuf]) -> Took {
    let mut r = mem_replica(genesis);
    let start = Stopwatch::start();
    block_on(async {
        for p in payloads {
            r.append(p).await.expect("append");
        }
    });
    let d = start.stop();
    assert_eq!(r.len(), payloads.len() + 1);
    d
}

/// `append_many` batches of 1,000 into a fresh replica over a memory store:
/// what is left when the per-call costs (a store commit, the heads) are shared.
fn append_mem_batched(genesis: &Block, payloads: &[ByteBuf]) -> Took {
    let mut r = mem_replica(genesis);
    let start = Stopwatch::start();
    block_on(async {
        for batch in payloads.chunks(1000) {
            r.append_many(batch.iter()).await.expect("append_many");
        }
    });
    let d = start.stop();
    assert_eq!(r.len(), payloads.len() + 1);
    d
}

/// A linear chain of `n` events on top of `genesis`, as foreign `(CID, bytes)`.
fn chain(genesis: &Block, n: usize, seed: u64) -> Vec<(Cid, Bytes)> {
    let mut prev = *genesis.cid();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let block =
            Event::encode_parts(i as u64 + 1, std::slice::from_ref(&prev), &payload(seed + i as u64)).expect("encode");
        prev = *block.cid();
        out.push(block.into_parts());
    }
    out
}

/// Verify + decode + insert: `Block::new` then `ingest_many` in batches of
/// 1,000. The blocks arrive owned, as from a network buffer: the caller's
/// copy of the list is made before the clock starts.
fn ingest(genesis: &Block, blocks: Vec<(Cid, Bytes)>) -> Took {
    let n = blocks.len();
    let mut r = mem_replica(genesis);
    let start = Stopwatch::start();
    block_on(async {
        let mut arriving = blocks.into_iter();
        loop {
            let batch: Vec<Block> =
                arriving.by_ref().take(1000).map(|(c, b)| Block::new(c, b).expect("verified")).collect();
            if batch.is_empty() {
                break;
            }
            r.ingest_many(batch).await.expect("ingest");
        }
    });
    let d = start.stop();
    assert_eq!(r.len(), n + 1);
    d
}

/// Appends `n` events with `append_many` batches of 1,000 onto `r`.
fn append_batches<S: StreamStore>(r: &mut Replica<S>, from: u64, n: usize) {
    block_on(async {
        let mut i = from;
        let end = from + n as u64;
        while i < end {
            let m = (end - i).min(1000) as usize;
            r.append_many(payloads(i, m)).await.expect("append_many");
            i += m as u64;
        }
    });
}

struct RedbFigures {
    build: Took,
    open: Took,
    file_bytes: u64,
}

/// Builds a redb file of `n` events (Eventual + `append_many` + `flush`),
/// then reopens it with `Replica::open`.
fn redb_build_and_open(dir: &Path, n: usize) -> RedbFigures {
    let path = dir.join("open.redb");
    let g = genesis("perf redb batched");
    let payloads = payloads(0, n);
    let start = Stopwatch::start();
    {
        let store = Arc::new(RedbBlockstore::open_with(&path, Durability::Eventual).expect("redb"));
        let mut r = block_on(Replica::create(store.clone(), &g, ReplicaConfig::default())).expect("create");
        block_on(async {
            for batch in payloads.chunks(1000) {
                r.append_many(batch.iter()).await.expect("append_many");
            }
        });
        store.flush().expect("flush");
        drop(r);
        Arc::try_unwrap(store).unwrap_or_else(|_| panic!("the store has one owner")).close().expect("close");
    }
    let build = start.stop();
    drop(payloads);
    let file_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let start = Stopwatch::start();
    let store = Arc::new(RedbBlockstore::open_with(&path, Durability::Eventual).expect("reopen"));
    let r = block_on(Replica::open(store, g.cid(), ReplicaConfig::default())).expect("open");
    let open = start.stop();
    assert_eq!(r.len(), n + 1);
    RedbFigures { build, open, file_bytes }
}

/// Single appends with `Durability::Immediate`: one fsynced commit each.
fn redb_durable(dir: &Path, n: usize) -> Took {
    let path = dir.join("durable.redb");
    let g = genesis("perf redb durable");
    let store = Arc::new(RedbBlockstore::open_with(&path, Durability::Immediate).expect("redb"));
    let mut r = block_on(Replica::create(store, &g, ReplicaConfig::default())).expect("create");
    let payloads = payloads(0, n);
    let start = Stopwatch::start();
    block_on(async {
        for p in &payloads {
            r.append(p).await.expect("append");
        }
    });
    start.stop()
}

struct MergeFigures {
    n: usize,
    best: Duration,
    median: Duration,
    difference: Duration,
}

/// A replica with a shared history of `n` events and `k` local ones merges
/// `samples` concurrent branches of `k` events (each forks where the local
/// events do), one `ingest_many` each. Returns the best and median sample.
fn merge(n: usize, k: usize, samples: usize) -> MergeFigures {
    let g = genesis("perf merge");
    let mut r = mem_replica(&g);
    append_batches(&mut r, 0, n);
    let fork = r.heads()[0];
    let fork_height = r.dag().height(r.dag().id(&fork).expect("fork"));
    append_batches(&mut r, 1 << 40, k);
    let local_head = r.heads()[0];
    let branches: Vec<Vec<(Cid, Bytes)>> = (0..samples)
        .map(|s| {
            let mut prev = fork;
            (0..k)
                .map(|i| {
                    let seed = (2 + s as u64) << 40 | i as u64;
                    let block =
                        Event::encode_parts(fork_height + 1 + i as u64, std::slice::from_ref(&prev), &payload(seed))
                            .expect("encode");
                    prev = *block.cid();
                    block.into_parts()
                })
                .collect()
        })
        .collect();
    let mut times = Vec::with_capacity(samples);
    let mut branch_head = local_head;
    for branch in &branches {
        let start = Instant::now();
        let blocks: Vec<Block> = branch.iter().map(|(c, b)| Block::new(*c, b.clone()).expect("verified")).collect();
        let report = block_on(r.ingest_many(blocks)).expect("ingest");
        times.push(start.elapsed());
        assert_eq!(report.accepted.len(), k);
        branch_head = branch.last().expect("k > 0").0;
    }
    // What a sync answer computes: the events of one side the other lacks.
    let mut diff = Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let d = r.dag().difference(&[branch_head], &[local_head]).expect("difference");
        diff = diff.min(start.elapsed());
        assert_eq!(d.len(), k);
    }
    check_order(r.dag());
    times.sort_unstable();
    MergeFigures { n, best: times[0], median: times[times.len() / 2], difference: diff }
}

/// The merges put late events into the middle of a many-chunk total order:
/// check that it is still the sort by key, and that seeking a key finds it.
fn check_order(dag: &Dag) {
    let ids: Vec<EventId> = dag.order().collect();
    assert_eq!(ids.len(), dag.len(), "the order lists every event once");
    assert!(ids.windows(2).all(|w| dag.key(w[0]) < dag.key(w[1])), "the order is sorted by (height, CID)");
    for pos in [0, 1, ids.len() / 3, ids.len() / 2, ids.len() - 150, ids.len() - 60, ids.len() - 1] {
        let key = dag.key(ids[pos]);
        assert_eq!(dag.position(&key), pos, "position of a key");
        assert_eq!(dag.order_from(&key).next(), Some(ids[pos]), "order_from a key");
    }
}

fn vm_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A `Dag` of `n` events (mostly a chain; every 16th event merges two
/// branches), from synthetic CIDs: heap bytes per event and RSS growth per event.
fn index_bytes(n: usize) -> (f64, Option<f64>) {
    let rss_before = vm_rss_bytes();
    let g = cid_of(b"perf index genesis");
    let mut dag = Dag::new(g);
    let mut prev = g;
    let mut side = g;
    let mut height = 0u64;
    let mut i = 1u64;
    while dag.len() < n {
        let cid = cid_of(&i.to_le_bytes());
        if i.is_multiple_of(16) && side != prev {
            dag.insert(&cid, height + 1, &[prev, side]).expect("insert");
            side = g;
        } else if i % 16 == 8 {
            // A sibling of `prev`: a short concurrent branch.
            let parents: Vec<Cid> = dag.parents(dag.id(&prev).expect("prev")).map(|p| dag.cid(p)).collect();
            dag.insert(&cid, height, &parents).expect("insert");
            side = cid;
            i += 1;
            continue;
        } else {
            dag.insert(&cid, height + 1, &[prev]).expect("insert");
        }
        height += 1;
        prev = cid;
        i += 1;
    }
    let rss_after = vm_rss_bytes();
    let heap = dag.heap_bytes() as f64 / dag.len() as f64;
    let rss = rss_before.zip(rss_after).map(|(b, a)| a.saturating_sub(b) as f64 / dag.len() as f64);
    std::hint::black_box(&dag);
    (heap, rss)
}

// ------------------------------------------------- counting store, for pail

/// A memory store that counts block reads (`get`, `has`, each CID of `get_many`).
#[derive(Default)]
struct CountingStore {
    inner: MemoryBlockstore,
    reads: AtomicU64,
}

#[async_trait]
impl Blockstore for CountingStore {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get(cid).await
    }
    async fn put(&self, block: Block) -> Result<(), StoreError> {
        self.inner.put(block).await
    }
    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.has(cid).await
    }
    async fn put_many(&self, blocks: Vec<Block>) -> Result<(), StoreError> {
        self.inner.put_many(blocks).await
    }
    async fn get_many(&self, cids: &[Cid]) -> Result<Vec<Option<Block>>, StoreError> {
        self.reads.fetch_add(cids.len() as u64, Ordering::Relaxed);
        self.inner.get_many(cids).await
    }
    fn atomic_put_many(&self) -> bool {
        self.inner.atomic_put_many()
    }
}

#[async_trait]
impl StreamStore for CountingStore {
    async fn commit(&self, stream: &Cid, blocks: &[Block], heads: &[Cid]) -> Result<(), StoreError> {
        self.inner.commit(stream, blocks, heads).await
    }
    async fn heads(&self, stream: &Cid) -> Result<Option<Vec<Cid>>, StoreError> {
        self.inner.heads(stream).await
    }
    async fn log_len(&self, stream: &Cid) -> Result<u64, StoreError> {
        self.inner.log_len(stream).await
    }
    async fn read_log(&self, stream: &Cid, start: u64, max: usize) -> Result<Vec<Cid>, StoreError> {
        self.inner.read_log(stream, start, max).await
    }
    async fn read_log_entries(&self, stream: &Cid, start: u64, max: usize) -> Result<Vec<LoggedEvent>, StoreError> {
        self.inner.read_log_entries(stream, start, max).await
    }
    async fn streams(&self) -> Result<Vec<Cid>, StoreError> {
        self.inner.streams().await
    }
}

/// One history size of the merge workload: the history, then (store reads,
/// microseconds) with the concurrent event a sibling, and forked one lower.
type OurMerge = (usize, (u64, f64), (u64, f64));

/// Our side of pail's merge workload: a linear history of `history` events,
/// the local head A a child of its head, then one concurrent event B whose
/// parent is `fork_depth` events below A's parent. Returns the store reads
/// the replica makes to merge B, and the microseconds it takes.
fn our_merge(history: usize, fork_depth: usize) -> (u64, f64) {
    let g = genesis("perf pail merge");
    let store = Arc::new(CountingStore::default());
    let mut r = block_on(Replica::create(store.clone(), &g, ReplicaConfig::default())).expect("create");
    append_batches(&mut r, 0, history - 1); // the genesis counts as one event of the history
    let order: Vec<Cid> = r.order().collect();
    let below = order[order.len() - 1 - fork_depth];
    let below_height = r.dag().height(r.dag().id(&below).expect("known"));
    let a = block_on(r.append(&payload(1 << 41))).expect("append A");
    let b = Event::encode_parts(below_height + 1, &[below], &payload(1 << 42)).expect("encode B");
    let (cid, bytes) = b.into_parts();
    store.reads.store(0, Ordering::Relaxed);
    let start = Instant::now();
    let block = Block::new(cid, bytes).expect("verified");
    let outcome = block_on(r.ingest(block)).expect("ingest");
    let us = start.elapsed().as_secs_f64() * 1e6;
    assert_eq!(outcome, merkle_clock::Ingest::Accepted);
    let mut want = vec![a, cid];
    want.sort_unstable();
    assert_eq!(r.heads(), want);
    (store.reads.load(Ordering::Relaxed), us)
}

// ------------------------------------------------------------------- pail

/// The figures `pail_clock.mjs --json` printed.
#[derive(Default)]
struct Pail {
    append_per_s: f64,
    /// (history, block reads, ms)
    merges: Vec<(usize, u64, f64)>,
}

fn json_number(line: &str, key: &str) -> Option<f64> {
    let pat = format!("\"{key}\":");
    let at = line.find(&pat)? + pat.len();
    let rest = line[at..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e' || c == '+'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn run_pail(dir: &Path, fork_depth: usize, quick: bool) -> Result<Pail, String> {
    let mut cmd = Command::new("node");
    cmd.current_dir(dir).arg("pail_clock.mjs").arg("--json").arg("--fork-depth").arg(fork_depth.to_string());
    if quick {
        cmd.args(["--events", "2000", "--histories", "1000,5000"]);
    }
    let out = cmd.output().map_err(|e| format!("cannot run node: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let mut pail = Pail::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.contains("\"metric\":\"append\"") {
            pail.append_per_s = json_number(line, "events_per_s").unwrap_or(0.0);
        } else if line.contains("\"metric\":\"merge\"") {
            let h = json_number(line, "history").unwrap_or(0.0) as usize;
            let reads = json_number(line, "block_reads").unwrap_or(0.0) as u64;
            let ms = json_number(line, "ms").unwrap_or(0.0);
            pail.merges.push((h, reads, ms));
        }
    }
    Ok(pail)
}

// ----------------------------------------------------------------- output

enum V {
    F(f64, usize),
    I(u64),
    S(String),
    B(bool),
}

struct Row {
    fields: Vec<(&'static str, V)>,
    /// For the table: the figure, the target and whether it holds.
    figure: String,
    target: &'static str,
    holds: Option<bool>,
}

impl Row {
    fn new(metric: &str) -> Self {
        Row { fields: vec![("metric", V::S(metric.to_string()))], figure: String::new(), target: "", holds: None }
    }
    fn f(mut self, key: &'static str, v: f64, digits: usize) -> Self {
        self.fields.push((key, V::F(v, digits)));
        self
    }
    fn i(mut self, key: &'static str, v: u64) -> Self {
        self.fields.push((key, V::I(v)));
        self
    }
    fn s(mut self, key: &'static str, v: impl Into<String>) -> Self {
        self.fields.push((key, V::S(v.into())));
        self
    }
    fn target(mut self, target: &'static str, holds: bool) -> Self {
        self.target = target;
        self.holds = Some(holds);
        self.fields.push(("target", V::S(target.to_string())));
        self.fields.push(("holds", V::B(holds)));
        self
    }
    fn figure(mut self, figure: String) -> Self {
        self.figure = figure;
        self
    }
    fn json(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{k}\":");
            match v {
                V::F(x, d) => {
                    let _ = write!(out, "{x:.d$}", d = *d);
                }
                V::I(x) => {
                    let _ = write!(out, "{x}");
                }
                V::S(s) => {
                    let _ = write!(out, "\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
                }
                V::B(b) => {
                    let _ = write!(out, "{b}");
                }
            }
        }
        out.push('}');
        out
    }
    fn metric(&self) -> &str {
        match &self.fields[0].1 {
            V::S(s) => s,
            _ => "",
        }
    }
}

/// 1234567.8 -> "1,234,568".
fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

struct Out {
    json: bool,
}

impl Out {
    fn row(&self, row: &Row) {
        if self.json {
            println!("{}", row.json());
        } else {
            let holds = match row.holds {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            };
            println!("{:<26} {:<72} {:<14} {}", row.metric(), row.figure, row.target, holds);
        }
    }
    fn note(&self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }
}

/// The signed-stream rows, from the measurements `auth_report` prints.
fn auth_rows(out: &Out, quick: bool) {
    use auth_rows::{AppendSigned, IngestSigned, MembershipGrowth};
    let (n, rounds, big) = auth_rows::sizes(quick);
    let i = auth_rows::ingest_signed(n, rounds);
    out.row(
        &Row::new("ingest_signed")
            .f("blocks_per_s", i.signed, 0)
            .f("unsigned_per_s", i.unsigned, 0)
            .f("verify_per_s", i.verify, 0)
            .f("ratio", i.ratio, 2)
            .i("events", n as u64)
            .figure(format!("{} blocks/s; (unsigned + bare verify) / signed time {:.2}", thousands(i.signed), i.ratio))
            .target(">= 0.9", i.ratio >= IngestSigned::TARGET),
    );
    let a = auth_rows::append_signed(n, rounds);
    out.row(
        &Row::new("append_signed")
            .f("events_per_s", a.append, 0)
            .f("bare_per_s", a.bare, 0)
            .f("ratio", a.ratio, 2)
            .i("events", n as u64)
            .figure(format!(
                "{} ev/s; bare sign+encode+hash {} ev/s: {:.2}",
                thousands(a.append),
                thousands(a.bare),
                a.ratio
            ))
            .target(">= 0.7", a.ratio >= AppendSigned::TARGET),
    );
    let m = auth_rows::membership_check_growth(big, rounds);
    out.row(
        &Row::new("membership_check_growth")
            .f("large_us", m.large_us, 2)
            .f("small_us", m.small_us, 2)
            .f("ratio", m.ratio, 2)
            .i("events", m.big as u64)
            .figure(format!(
                "one event {:.1} µs at {} events, {:.1} µs at 1,000: {:.2}",
                m.large_us,
                thousands(m.big as f64),
                m.small_us,
                m.ratio
            ))
            .target("<= 1.5", m.ratio <= MembershipGrowth::TARGET),
    );
}

// ------------------------------------------------------------------- main

fn profile(what: &str, n: usize) {
    let g = genesis("perf profile");
    match what {
        "append" => {
            let p = payloads(0, n);
            let d = append_mem(&g, &p);
            println!("append {n}: {:.0} events/s (cpu), {:.0} (wall)", per_s(n, d.cpu), per_s(n, d.wall));
        }
        "append_many" => {
            let p = payloads(0, n);
            let d = append_mem_batched(&g, &p);
            println!("append_many {n}: {:.0} events/s (cpu), {:.0} (wall)", per_s(n, d.cpu), per_s(n, d.wall));
        }
        "bare" => {
            let p = payloads(0, n);
            let d = bare(&g, &p);
            println!("bare {n}: {:.0} events/s (cpu), {:.0} (wall)", per_s(n, d.cpu), per_s(n, d.wall));
        }
        "ingest" => {
            let d = ingest(&g, chain(&g, n, 0));
            println!("ingest {n}: {:.0} blocks/s (cpu), {:.0} (wall)", per_s(n, d.cpu), per_s(n, d.wall));
        }
        "redb" | "open" => {
            let dir = tempfile::tempdir().expect("tempdir");
            let f = redb_build_and_open(dir.path(), n);
            println!(
                "redb {n}: {:.0} events/s batched (cpu), {:.0} (wall); open {:.3} s (cpu), {:.3} s (wall)",
                per_s(n, f.build.cpu),
                per_s(n, f.build.wall),
                f.open.cpu.as_secs_f64(),
                f.open.wall.as_secs_f64()
            );
        }
        other => {
            eprintln!("perf_report: --profile wants append, append_many, bare, ingest, redb or open, got {other:?}");
            std::process::exit(2);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut json = false;
    let mut quick = false;
    let mut pail = true;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--json" => json = true,
            "--quick" => quick = true,
            "--no-pail" => pail = false,
            "--profile" => {
                let what = args.get(i + 1).map(String::as_str).unwrap_or("append");
                let n = args.get(i + 2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
                profile(what, n);
                return;
            }
            "-h" | "--help" => {
                println!(
                    "usage: perf_report [--json] [--quick] [--no-pail] | --profile append|append_many|bare|ingest|redb N"
                );
                return;
            }
            other => {
                eprintln!("perf_report: unknown argument {other:?} (try --help)");
                std::process::exit(2);
            }
        }
        i += 1;
    }
    let plan = Plan::new(quick);
    let out = Out { json };
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    if !json {
        println!(
            "merkle-clock perf report ({}; {} cores, {}; 128-byte payloads)\n",
            if plan.quick { "--quick" } else { "full" },
            cores,
            cpu_model()
        );
        println!("{:<26} {:<72} {:<14} holds", "metric", "figure", "target");
    }
    out.row(
        &Row::new("machine")
            .s("cpu", cpu_model())
            .i("cores", cores as u64)
            .s("mode", if plan.quick { "quick" } else { "full" })
            .figure(format!("{cores} cores, {}", cpu_model())),
    );

    // First, before anything else has grown the heap: the index's size.
    let (heap, rss) = index_bytes(plan.index_events);
    let mut row = Row::new("index_bytes_per_event")
        .f("value", heap, 1)
        .s("source", "Dag::heap_bytes() / len")
        .i("events", plan.index_events as u64);
    if let Some(rss) = rss {
        row = row.f("rss_value", rss, 1);
    }
    let rss_text = rss.map_or("n/a".to_string(), |r| format!("{r:.1}"));
    out.row(
        &row.figure(format!(
            "{heap:.1} B (heap_bytes/len; VmRSS growth {rss_text} B), {} events",
            thousands(plan.index_events as f64)
        ))
        .target("<= 64", heap <= 64.0),
    );

    // append_mem against bare, alternating rounds.
    let g = genesis("perf append");
    let p = payloads(0, plan.append_events);
    let (mut bare_t, mut append_t, mut batched_t) = (Took::START, Took::START, Took::START);
    let _ = bare(&g, &p[..p.len().min(10_000)]); // warm-up
    for _ in 0..plan.append_rounds {
        bare_t = bare_t.add(bare(&g, &p));
        append_t = append_t.add(append_mem(&g, &p));
        batched_t = batched_t.add(append_mem_batched(&g, &p));
    }
    drop(p);
    // The same, on 10,000-event replicas (30 rounds): an index and store that
    // stay in cache, for what growth costs beyond that.
    let p = payloads(1 << 44, 10_000);
    let (mut bare_small, mut append_small) = (Took::START, Took::START);
    for _ in 0..30 {
        bare_small = bare_small.add(bare(&g, &p));
        append_small = append_small.add(append_mem(&g, &p));
    }
    drop(p);
    let ratio_small = bare_small.cpu.as_secs_f64() / append_small.cpu.as_secs_f64();
    let n = plan.append_events;
    let rounds = plan.append_rounds;
    let (bare_rate, append_rate) = (per_s(n * rounds, bare_t.cpu), per_s(n * rounds, append_t.cpu));
    let (bare_wall, append_wall) = (per_s(n, bare_t.wall), per_s(n, append_t.wall));
    let ratio = append_rate / bare_rate;
    out.row(
        &Row::new("append_mem")
            .f("events_per_s", append_rate, 1)
            .f("bare_events_per_s", bare_rate, 1)
            .f("ratio", ratio, 3)
            .f("wall_events_per_s", append_wall, 1)
            .f("wall_bare_events_per_s", bare_wall, 1)
            .f("wall_ratio", append_wall / bare_wall, 3)
            .s("clock", "thread_cpu")
            .i("events", n as u64)
            .i("rounds", plan.append_rounds as u64)
            .f("ratio_10k_events", ratio_small, 3)
            .figure(format!(
                "{} ev/s, bare {} ev/s: {ratio:.3} (10k-event replicas: {ratio_small:.2})",
                thousands(append_rate),
                thousands(bare_rate)
            ))
            .target("ratio >= 0.7", ratio >= 0.7),
    );
    let batched_rate = per_s(n * rounds, batched_t.cpu);
    out.row(
        &Row::new("append_mem_batched")
            .f("events_per_s", batched_rate, 1)
            .f("bare_events_per_s", bare_rate, 1)
            .f("ratio", batched_rate / bare_rate, 3)
            .f("wall_events_per_s", per_s(n, batched_t.wall), 1)
            .s("clock", "thread_cpu")
            .i("events", n as u64)
            .i("batch", 1000)
            .figure(format!(
                "{} ev/s (append_many of 1,000), bare {} ev/s: {:.3}",
                thousands(batched_rate),
                thousands(bare_rate),
                batched_rate / bare_rate
            )),
    );

    // ingest of foreign blocks.
    let blocks = chain(&g, plan.ingest_blocks, 1 << 50);
    let mut took = Took::START;
    for _ in 0..plan.ingest_rounds {
        took = took.add(ingest(&g, blocks.clone()));
    }
    drop(blocks);
    let rate = per_s(plan.ingest_blocks * plan.ingest_rounds, took.cpu);
    out.row(
        &Row::new("ingest")
            .f("blocks_per_s", rate, 1)
            .f("wall_blocks_per_s", per_s(plan.ingest_blocks, took.wall), 1)
            .s("clock", "thread_cpu")
            .i("blocks", plan.ingest_blocks as u64)
            .figure(format!("{} blocks/s (Block::new + ingest_many, batches of 1,000)", thousands(rate)))
            .target(">= 500,000/s", rate >= 500_000.0),
    );

    // merge growth.
    let merges: Vec<MergeFigures> = plan.merge_sizes.iter().map(|&n| merge(n, MERGE_K, plan.merge_samples)).collect();
    for m in &merges {
        out.row(
            &Row::new("merge")
                .i("k", MERGE_K as u64)
                .i("n", m.n as u64)
                .f("best_us", m.best.as_secs_f64() * 1e6, 1)
                .f("median_us", m.median.as_secs_f64() * 1e6, 1)
                .f("difference_us", m.difference.as_secs_f64() * 1e6, 1)
                .figure(format!(
                    "N={}: {:.0} µs best, {:.0} µs median; difference {:.0} µs",
                    thousands(m.n as f64),
                    m.best.as_secs_f64() * 1e6,
                    m.median.as_secs_f64() * 1e6,
                    m.difference.as_secs_f64() * 1e6
                )),
        );
    }
    let (small, large) = (&merges[0], &merges[merges.len() - 1]);
    let growth = large.best.as_secs_f64() / small.best.as_secs_f64();
    out.row(
        &Row::new("merge_growth")
            .i("k", MERGE_K as u64)
            .i("n_small", small.n as u64)
            .i("n_large", large.n as u64)
            .f("ratio", growth, 3)
            .f("median_ratio", large.median.as_secs_f64() / small.median.as_secs_f64(), 3)
            .figure(format!(
                "k={MERGE_K}: N={} over N={}: {growth:.2}",
                thousands(large.n as f64),
                thousands(small.n as f64)
            ))
            .target("ratio <= 2", growth <= 2.0),
    );

    // redb.
    let dir = tempfile::tempdir().expect("tempdir");
    let redb = redb_build_and_open(dir.path(), plan.redb_events);
    let (batched, batched_wall) = (per_s(plan.redb_events, redb.build.cpu), per_s(plan.redb_events, redb.build.wall));
    out.row(
        &Row::new("append_redb_batched")
            .f("events_per_s", batched, 1)
            .f("wall_events_per_s", batched_wall, 1)
            .s("clock", "thread_cpu")
            .i("events", plan.redb_events as u64)
            .figure(format!(
                "{} ev/s (wall {}; Eventual, batches of 1,000, flush; {} events)",
                thousands(batched),
                thousands(batched_wall),
                thousands(plan.redb_events as f64)
            ))
            .target(">= 100,000/s", batched >= 100_000.0),
    );
    let name = if plan.quick { "open_redb_100k" } else { "open_redb_1m" };
    out.row(
        &Row::new(name)
            .f("seconds", redb.open.wall.as_secs_f64(), 3)
            .f("cpu_seconds", redb.open.cpu.as_secs_f64(), 3)
            .i("events", plan.redb_events as u64)
            .i("file_bytes", redb.file_bytes)
            .figure(format!(
                "{:.2} s ({:.2} s CPU) to Replica::open {} events ({} MB file)",
                redb.open.wall.as_secs_f64(),
                redb.open.cpu.as_secs_f64(),
                thousands(plan.redb_events as f64),
                redb.file_bytes / 1_000_000
            )),
    );
    let durable = redb_durable(dir.path(), plan.durable_events);
    let (durable_wall, durable_cpu) =
        (per_s(plan.durable_events, durable.wall), per_s(plan.durable_events, durable.cpu));
    out.row(
        &Row::new("append_redb_durable")
            .f("events_per_s", durable_wall, 1)
            .f("cpu_events_per_s", durable_cpu, 1)
            .s("clock", "wall")
            .i("events", plan.durable_events as u64)
            .figure(format!("{} ev/s (wall: one fsync per append)", thousands(durable_wall))),
    );
    drop(dir);

    auth_rows(&out, plan.quick);

    // The side-by-side with pail.
    let ours: Vec<OurMerge> = PAIL_HISTORIES
        .iter()
        .filter(|&&h| !plan.quick || h <= 5000)
        .map(|&h| (h, our_merge(h, 0), our_merge(h, 1)))
        .collect();
    // pail's append workload, ours: 10,000 single appends of 128-byte payloads
    // onto a fresh store, wall time (as Node reports), measured just before
    // Node runs.
    let pail_events = if plan.quick { 2000 } else { 10_000 };
    let pail_payloads = payloads(1 << 45, pail_events);
    // Our runs take milliseconds where pail's take seconds, so one context
    // switch moves ours a lot: take the median of 21.
    let mut walls: Vec<Duration> = (0..21).map(|_| append_mem(&g, &pail_payloads).wall).collect();
    walls.sort_unstable();
    let ours_pail_rate = per_s(pail_events, walls[walls.len() / 2]);
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers");
    let pail_figures = if !pail {
        Err("skipped (--no-pail)".to_string())
    } else if !peers.join("node_modules").is_dir() {
        Err(format!("not installed: run `cd {} && npm ci` (Node 20)", peers.display()))
    } else {
        run_pail(&peers, 0, plan.quick).and_then(|siblings| Ok((siblings, run_pail(&peers, 1, plan.quick)?)))
    };
    match &pail_figures {
        Ok((siblings, fork1)) => {
            let pail_rate = (siblings.append_per_s + fork1.append_per_s) / 2.0;
            let times = ours_pail_rate / pail_rate;
            out.row(
                &Row::new("pail_append")
                    .f("pail_events_per_s", pail_rate, 1)
                    .f("ours_events_per_s", ours_pail_rate, 1)
                    .i("events", pail_events as u64)
                    .f("ratio", times, 1)
                    .figure(format!(
                        "ours {} ev/s / pail {} ev/s = {times:.0}x (wall)",
                        thousands(ours_pail_rate),
                        thousands(pail_rate)
                    ))
                    .target(">= 100x", times >= 100.0),
            );
            let mut constant = true;
            let mut pail_grows = false;
            for (h, sib, f1) in &ours {
                let ps = siblings.merges.iter().find(|m| m.0 == *h);
                let pf = fork1.merges.iter().find(|m| m.0 == *h);
                constant &= sib.0 == ours[0].1.0 && f1.0 == ours[0].2.0;
                pail_grows |= pf.is_some_and(|p| p.1 as usize >= *h);
                out.row(
                    &Row::new("pail_merge")
                        .i("history", *h as u64)
                        .i("pail_reads_siblings", ps.map_or(0, |p| p.1))
                        .i("pail_reads_fork1", pf.map_or(0, |p| p.1))
                        .f("pail_ms_fork1", pf.map_or(0.0, |p| p.2), 3)
                        .i("ours_reads_siblings", sib.0)
                        .i("ours_reads_fork1", f1.0)
                        .f("ours_ms_fork1", f1.1 / 1000.0, 3)
                        .figure(format!(
                            "H={}: reads pail {}/{}, ours {}/{} (sib/fork1); fork1 {:.0} ms vs {:.3} ms",
                            thousands(*h as f64),
                            ps.map_or(0, |p| p.1),
                            pf.map_or(0, |p| p.1),
                            sib.0,
                            f1.0,
                            pf.map_or(0.0, |p| p.2),
                            f1.1 / 1000.0
                        )),
                );
            }
            out.row(
                &Row::new("pail_merge_reads_constant")
                    .s("ours", if constant { "constant" } else { "varies" })
                    .s("pail_fork1", if pail_grows { "grows with history" } else { "constant" })
                    .figure(format!(
                        "ours {} ({} reads), pail (fork-depth 1) {}",
                        if constant { "constant" } else { "varies" },
                        ours[0].2.0,
                        if pail_grows { "grows with history" } else { "constant" }
                    ))
                    .target("ours constant", constant),
            );
            if !json {
                print_side_by_side(ours_pail_rate, pail_rate, &ours, siblings, fork1);
            }
        }
        Err(why) => {
            out.row(&Row::new("pail").s("skipped", why.clone()).figure(format!("pail not run: {why}")));
            for (h, sib, f1) in &ours {
                out.row(
                    &Row::new("ours_merge")
                        .i("history", *h as u64)
                        .i("ours_reads_siblings", sib.0)
                        .i("ours_reads_fork1", f1.0)
                        .f("ours_ms_fork1", f1.1 / 1000.0, 3)
                        .figure(format!("H={}: store reads {}/{} (sib/fork1)", thousands(*h as f64), sib.0, f1.0)),
                );
            }
        }
    }
    out.note("");
}

fn print_side_by_side(ours_rate: f64, pail_rate: f64, ours: &[OurMerge], sib: &Pail, f1: &Pail) {
    println!("\nside by side with @web3-storage/pail 0.6.2 (Node), same machine, same run\n");
    println!("{:<42} {:>14} {:>14} {:>10}", "", "pail", "merkle-clock", "ratio");
    println!(
        "{:<42} {:>14} {:>14} {:>9.0}x",
        "append 10,000 x 128 B, events/s (wall)",
        thousands(pail_rate),
        thousands(ours_rate),
        ours_rate / pail_rate
    );
    for (h, s, f) in ours {
        let ps = sib.merges.iter().find(|m| m.0 == *h).map_or(0, |m| m.1);
        let pf = f1.merges.iter().find(|m| m.0 == *h);
        println!("{:<42} {:>14} {:>14}", format!("merge, block reads, H={}, siblings", thousands(*h as f64)), ps, s.0);
        println!(
            "{:<42} {:>14} {:>14}",
            format!("merge, block reads, H={}, fork-depth 1", thousands(*h as f64)),
            pf.map_or(0, |m| m.1),
            f.0
        );
        println!(
            "{:<42} {:>14} {:>14}",
            format!("merge, ms, H={}, fork-depth 1", thousands(*h as f64)),
            format!("{:.3}", pf.map_or(0.0, |m| m.2)),
            format!("{:.3}", f.1 / 1000.0)
        );
    }
}
