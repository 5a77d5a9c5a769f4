//! The simulator at scale: N real replicas of one stream, from 1,000 to
//! 1,000,000.
//!
//! ```text
//! cargo run --release --example scale_report [-- --json] [--max-nodes N] [--seed S]
//!     [--sizes 1000,10000] [--mem-budget GIB] [--repeat K] [--check-hash HEX]
//! cargo run --release --example scale_report -- --floor
//! ```
//!
//! Every node is a real `Replica` over the simulator's shared block arena
//! (`sim::ArenaStore`), driven by the real session driver and the Bloom sync
//! protocol. The scenario: 16 writers append 64 events in all (4 each,
//! 64-byte payloads) during a 40-tick fault phase; 1% of messages are lost;
//! 1% of the nodes crash and restart from their store; 1% join late with
//! only the genesis; each node has a mesh of about 6 peers (3 drawn at
//! random by each node, made symmetric). A node that appends or takes in new
//! events pushes them, with its heads, to the mesh peers not known to hold
//! them (the driver's tick); a peer that cannot place them pulls the rest in
//! the same session; each node runs anti-entropy with a random settled peer
//! every 32 ticks; a session silent for 8 ticks restarts.
//!
//! For each size it prints: `rounds`, the ticks from the last append until
//! every node holds every event, beside the push-gossip bound
//! log2 N + ln N; messages and bytes sent per node per event appended;
//! `redundancy`, copies of a block received per block a node needed
//! (`SimReport::blocks_received` over its non-duplicates); peak RSS divided
//! by N and the peak of live heap bytes per node (a counting allocator),
//! allocations per node; wall and CPU time (the machine may be shared: CPU
//! time is the figure to compare); the trace hash (same seed, same hash).
//!
//! Each size runs in a child process of its own (this program with
//! `--one N`), so each peak RSS is its own. Sizes run in increasing order
//! up to `--max-nodes` (default 1,000,000); before each, the peak RSS per
//! node of the size before is projected, and a size whose projection does
//! not fit in `--mem-budget` GiB (default 16) is skipped and said so.
//!
//! The exit status is 1 when a run does not converge, takes more than twice
//! the gossip bound, or (`--repeat K`: K runs of each size at once) two runs
//! of the same seed give different trace hashes, or (`--check-hash HEX`) the
//! hash is not HEX. CI runs `--sizes 10000 --repeat 2`.
//!
//! `SCALE_DEBUG=1` prints, for `--one N`, the live heap per node at every
//! tick and, at a few ticks, what the sessions hold per node.
//!
//! `--floor` prints what one replica costs at the least (heap bytes per
//! replica over a shared arena: with only the genesis, holding the
//! scenario's 64 events, and a driver with 6 fresh sessions).

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use merkle_clock::sim::{SimConfig, Simulation};

/// Counts live heap bytes, their peak, and allocations.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` with the same arguments; the
// counters are only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SIZES: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];
const WRITERS: usize = 16;
const EVENTS: usize = 64;

/// The scenario at `nodes` nodes.
fn config(nodes: usize, seed: u64) -> SimConfig {
    let one_percent = (nodes / 100).max(1);
    SimConfig {
        seed,
        nodes,
        writers: Some(WRITERS.min(nodes)),
        events_per_node: EVENTS / WRITERS,
        payload_bytes: 64,
        loss: 0.01,
        restarts: one_percent,
        late_joiners: one_percent.min(nodes - 1),
        downtime: 5,
        fault_ticks: 40,
        max_ticks: 400,
        ring: false,
        random_peers: 3,
        session_timeout: Some(8),
        anti_entropy: Some(32),
        ..SimConfig::default()
    }
}

/// One size's figures.
struct Row {
    nodes: usize,
    rounds: u64,
    gossip_bound: f64,
    msgs: f64,
    bytes: f64,
    redundancy: f64,
    rss: f64,
    heap: f64,
    allocs: f64,
    seconds: f64,
    cpu_seconds: f64,
    converged: bool,
    trace_hash: String,
}

impl Row {
    fn json(&self) -> String {
        format!(
            "{{\"metric\":\"scale\",\"nodes\":{},\"rounds\":{},\"gossip_bound\":{:.1},\"msgs_per_node_per_event\":{:.3},\
             \"bytes_per_node_per_event\":{:.1},\"redundancy\":{:.3},\"rss_bytes_per_node\":{:.0},\
             \"heap_bytes_per_node\":{:.0},\"allocs_per_node\":{:.0},\"seconds\":{:.1},\"cpu_seconds\":{:.1},\"converged\":{},\"trace_hash\":\"{}\"}}",
            self.nodes,
            self.rounds,
            self.gossip_bound,
            self.msgs,
            self.bytes,
            self.redundancy,
            self.rss,
            self.heap,
            self.allocs,
            self.seconds,
            self.cpu_seconds,
            self.converged,
            self.trace_hash
        )
    }

    fn parse(line: &str) -> Option<Row> {
        let field = |k: &str| -> Option<&str> {
            let at = line.find(&format!("\"{k}\":"))? + k.len() + 3;
            let rest = &line[at..];
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            Some(rest[..end].trim_matches('"'))
        };
        let num = |k: &str| field(k).and_then(|v| v.parse::<f64>().ok());
        Some(Row {
            nodes: num("nodes")? as usize,
            rounds: num("rounds")? as u64,
            gossip_bound: num("gossip_bound")?,
            msgs: num("msgs_per_node_per_event")?,
            bytes: num("bytes_per_node_per_event")?,
            redundancy: num("redundancy")?,
            rss: num("rss_bytes_per_node")?,
            heap: num("heap_bytes_per_node")?,
            allocs: num("allocs_per_node")?,
            seconds: num("seconds")?,
            cpu_seconds: num("cpu_seconds")?,
            converged: field("converged")? == "true",
            trace_hash: field("trace_hash")?.to_string(),
        })
    }
}

/// Peak resident set size of this process, in bytes (Linux; 0 elsewhere).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// CPU time of this process (user and system), in seconds (Linux; 0
/// elsewhere): on a shared machine, wall time says more about the
/// neighbours than about the run.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs one size in `repeat` child processes at once (this program with
/// `--one`); with more than one, their trace hashes must agree.
fn run_child(exe: &std::path::Path, nodes: usize, seed: u64, repeat: usize) -> Option<Row> {
    let children: Vec<_> = (0..repeat.max(1))
        .map(|_| {
            Command::new(exe)
                .args(["--one", &nodes.to_string(), "--seed", &seed.to_string()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
        })
        .collect();
    let mut rows = Vec::new();
    for child in children {
        match child.and_then(std::process::Child::wait_with_output) {
            Ok(o) if o.status.success() => rows.push(Row::parse(String::from_utf8_lossy(&o.stdout).trim())?),
            Ok(o) => {
                eprintln!("{}", String::from_utf8_lossy(&o.stderr));
                return None;
            }
            Err(e) => {
                eprintln!("scale_report: cannot run {}: {e}", exe.display());
                return None;
            }
        }
    }
    let first = rows.swap_remove(0);
    if let Some(other) = rows.iter().find(|r| r.trace_hash != first.trace_hash) {
        eprintln!(
            "scale_report: the same seed gave two trace hashes at {nodes} nodes: {} and {}",
            first.trace_hash, other.trace_hash
        );
        return None;
    }
    Some(first)
}

/// Runs one size in this process.
fn one(nodes: usize, seed: u64) -> Result<Row, Box<dyn std::error::Error>> {
    let start = Instant::now();
    let allocs_before = ALLOCS.load(Ordering::Relaxed);
    let mut sim = Simulation::new(config(nodes, seed))?;
    let total = WRITERS.min(nodes) * (EVENTS / WRITERS);
    let mut last_append: Option<u64> = None;
    let mut all_hold: Option<u64> = None;
    let report = futures::executor::block_on(sim.run_with(|sim, t| -> Result<(), merkle_clock::sim::SimError> {
        if std::env::var_os("SCALE_DEBUG").is_some() {
            let live = LIVE.load(Ordering::Relaxed) / nodes;
            eprintln!("tick {t} live/node {live} appended {} msgs {}", sim.appended().len(), sim.progress().messages);
            if t == 32 || t == 16 || t == 45 {
                let (mut sent, mut heads, mut shared, mut peers) = (0usize, 0usize, 0usize, 0usize);
                for a in 0..nodes {
                    for b in sim.sessions(a).peers() {
                        let d = format!("{:?}", sim.state(a, *b));
                        let num = |k: &str| {
                            d.find(k).map_or(0, |i| {
                                d[i + k.len()..]
                                    .chars()
                                    .take_while(char::is_ascii_digit)
                                    .collect::<String>()
                                    .parse()
                                    .unwrap_or(0)
                            })
                        };
                        sent += num("sent: ");
                        heads += num("their_heads: Some(");
                        shared += d.matches('…').count();
                        peers += 1;
                    }
                }
                eprintln!(
                    "  per node: peers {} sent {} their_heads {} shared {}",
                    peers / nodes,
                    sent / nodes,
                    heads / nodes,
                    shared / nodes
                );
            }
        }
        if last_append.is_none() && sim.appended().len() == total {
            last_append = Some(t);
        }
        if last_append.is_some() && all_hold.is_none() {
            let want = total + 1;
            if (0..nodes).all(|n| sim.replica(n).is_some_and(|r| r.len() == want)) {
                all_hold = Some(t);
            }
        }
        Ok(())
    }))?;
    let seconds = start.elapsed().as_secs_f64();
    let n = nodes as f64;
    let events = report.appended.max(1) as f64;
    let received = report.blocks_received as f64;
    let fresh = (report.blocks_received - report.blocks_duplicate).max(1) as f64;
    Ok(Row {
        nodes,
        rounds: all_hold.zip(last_append).map_or(u64::MAX, |(t, l)| t - l),
        gossip_bound: n.log2() + n.ln(),
        msgs: report.messages as f64 / n / events,
        bytes: report.bytes as f64 / n / events,
        redundancy: received / fresh,
        rss: peak_rss() as f64 / n,
        heap: PEAK.load(Ordering::Relaxed) as f64 / n,
        allocs: (ALLOCS.load(Ordering::Relaxed) - allocs_before) as f64 / n,
        seconds,
        cpu_seconds: cpu_seconds(),
        converged: report.converged && all_hold.is_some(),
        trace_hash: report.trace_hash,
    })
}

/// The floor: what one replica of the scenario costs at the least, in
/// heap bytes, measured on `n` of them: over a shared arena, with only the
/// genesis, then holding the scenario's 64 events (16 writers' concurrent
/// branches of 4), and a fresh session driver with 6 peers.
fn floor(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    use merkle_clock::sim::{ArenaStore, BlockArena, SyncProtocol};
    use merkle_clock::sync::{SessionConfig, Sessions};
    use merkle_clock::{Event, Ipld, Replica, ReplicaConfig};
    use std::sync::Arc;
    futures::executor::block_on(async {
        let genesis = Event::genesis("floor").encode()?;
        let arena = Arc::new(BlockArena::new());
        let mut blocks = Vec::new();
        for w in 0..WRITERS {
            let store = Arc::new(ArenaStore::new(arena.clone()));
            let mut writer = Replica::create(store.clone(), &genesis, ReplicaConfig::default()).await?;
            for k in 0..EVENTS / WRITERS {
                let cid = writer.append(&Ipld::Bytes(vec![(w * 16 + k) as u8; 64])).await?;
                blocks.push(writer.get(&cid).await?.ok_or("appended")?);
            }
        }
        let live = || LIVE.load(Ordering::Relaxed);
        let before = live();
        let mut replicas = Vec::with_capacity(n);
        for _ in 0..n {
            let store = Arc::new(ArenaStore::new(arena.clone()));
            replicas.push(Replica::create(store, &genesis, ReplicaConfig::default()).await?);
        }
        let empty = live();
        for r in &mut replicas {
            r.ingest_many(blocks.clone()).await?;
        }
        let full = live();
        let mut drivers = Vec::with_capacity(n);
        for i in 0..n {
            let mut d = Sessions::with_seed(SyncProtocol::Bloom, SessionConfig::default(), i as u64);
            for p in 0..6usize {
                d.connect(p, std::time::Duration::ZERO);
            }
            drivers.push(d);
        }
        let sessions = live();
        let heads = replicas[0].heads().len();
        println!(
            "per replica (heap bytes, mean of {n}): genesis only {}; holding {} events ({heads} heads) {}; \
             a driver with 6 fresh sessions {}",
            (empty - before) / n,
            replicas[0].len(),
            (full - before) / n,
            (sessions - full) / n
        );
        Ok(())
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut json = false;
    let mut max_nodes = 1_000_000;
    let mut seed = 7;
    let mut sizes: Vec<usize> = SIZES.to_vec();
    let mut budget_gib = 16.0;
    let mut check_hash: Option<String> = None;
    let mut only: Option<usize> = None;
    let mut repeat = 1;
    let mut i = 0;
    let value = |i: usize| args.get(i + 1).cloned().unwrap_or_default();
    while i < args.len() {
        match args[i].as_str() {
            "--json" => json = true,
            "--max-nodes" => {
                max_nodes = value(i).parse().unwrap_or(max_nodes);
                i += 1;
            }
            "--seed" => {
                seed = value(i).parse().unwrap_or(seed);
                i += 1;
            }
            "--sizes" => {
                sizes = value(i).split(',').filter_map(|s| s.trim().parse().ok()).collect();
                i += 1;
            }
            "--mem-budget" => {
                budget_gib = value(i).parse().unwrap_or(budget_gib);
                i += 1;
            }
            "--check-hash" => {
                check_hash = Some(value(i));
                i += 1;
            }
            "--floor" => {
                if let Err(e) = floor(10_000) {
                    eprintln!("scale_report: {e}");
                    std::process::exit(1);
                }
                return;
            }
            "--repeat" => {
                repeat = value(i).parse().unwrap_or(repeat);
                i += 1;
            }
            "--one" => {
                only = value(i).parse().ok();
                i += 1;
            }
            "-h" | "--help" => {
                println!(
                    "usage: scale_report [--json] [--max-nodes N] [--seed S] [--sizes 1000,10000] \
                     [--mem-budget GIB] [--check-hash HEX] [--repeat K] | --floor"
                );
                return;
            }
            other => {
                eprintln!("scale_report: unknown argument {other:?} (try --help)");
                std::process::exit(2);
            }
        }
        i += 1;
    }
    if let Some(nodes) = only {
        match one(nodes, seed) {
            Ok(row) => println!("{}", row.json()),
            Err(e) => {
                eprintln!("scale_report: {nodes} nodes: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let exe = std::env::current_exe().expect("the path of this program");
    if !json {
        println!(
            "{:>9} {:>6} {:>6} {:>9} {:>10} {:>6} {:>10} {:>10} {:>8} {:>8} {:>8}  {:<9} trace",
            "nodes",
            "rounds",
            "bound",
            "msgs/n/e",
            "bytes/n/e",
            "redund",
            "rss/node",
            "heap/node",
            "allocs/n",
            "wall s",
            "cpu s",
            "converged"
        );
    }
    let mut failed = false;
    let mut last_rss_per_node: Option<f64> = None;
    for nodes in sizes.into_iter().filter(|&n| n <= max_nodes) {
        if let Some(per) = last_rss_per_node {
            let projected = per * nodes as f64 / f64::from(1u32 << 30);
            if projected > budget_gib {
                let line = format!(
                    "{nodes} nodes skipped: projected peak RSS {projected:.1} GiB (at {per:.0} B per node) \
                     exceeds the budget of {budget_gib} GiB"
                );
                if json {
                    println!("{{\"metric\":\"scale_skipped\",\"nodes\":{nodes},\"projected_gib\":{projected:.1}}}");
                } else {
                    println!("{line}");
                }
                continue;
            }
        }
        let Some(row) = run_child(&exe, nodes, seed, repeat) else {
            eprintln!("scale_report: the run at {nodes} nodes failed");
            failed = true;
            break;
        };
        last_rss_per_node = Some(row.rss);
        if json {
            println!("{}", row.json());
        } else {
            println!(
                "{:>9} {:>6} {:>6.1} {:>9.3} {:>10.1} {:>6.2} {:>10.0} {:>10.0} {:>8.0} {:>8.1} {:>8.1}  {:<9} {}",
                row.nodes,
                row.rounds,
                row.gossip_bound,
                row.msgs,
                row.bytes,
                row.redundancy,
                row.rss,
                row.heap,
                row.allocs,
                row.seconds,
                row.cpu_seconds,
                row.converged,
                &row.trace_hash[..16.min(row.trace_hash.len())]
            );
        }
        failed |= !row.converged;
        if row.rounds as f64 > 2.0 * row.gossip_bound {
            eprintln!("scale_report: {} rounds at {nodes} nodes, above twice the gossip bound", row.rounds);
            failed = true;
        }
        if let Some(want) = &check_hash
            && *want != row.trace_hash
        {
            eprintln!("scale_report: trace hash {} at {nodes} nodes, expected {want}", row.trace_hash);
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}
