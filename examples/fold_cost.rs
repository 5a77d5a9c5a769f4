//! What folding costs: an LWW map over 1,000,000 events (1,000 keys), folded
//! from scratch, then kept up to date as one event lands at the end and as
//! late events land 100 to 100,000 positions back (replayed from the
//! nearest checkpoint). Prints figures; asserts nothing about time.
//!
//! Run: `cargo run --release --example fold_cost [events] [keys]`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use merkle_clock::crdt::{CheckpointPolicy, Fold, FoldEvent, LwwMap, MapOp};
use merkle_clock::replica::{Replica, ReplicaConfig};
use merkle_clock::{Blockstore, Cid, Event, MemoryBlockstore};

type Op = MapOp<String, u64>;
type Map = LwwMap<String, u64>;

fn op(i: u64, keys: u64) -> Op {
    let key = format!("key-{:04}", i % keys);
    if i % 20 == 19 { MapOp::Delete { key } } else { MapOp::Set { key, value: i } }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// CPU time of this thread so far (Linux: the scheduler's runtime, in ns;
/// zero elsewhere). The machines this runs on are shared, so wall time
/// alone overstates the cost when other work competes for the CPU.
fn cpu() -> Duration {
    let sched = std::fs::read_to_string("/proc/thread-self/sched").unwrap_or_default();
    let ms: f64 = sched
        .lines()
        .find(|l| l.starts_with("se.sum_exec_runtime"))
        .and_then(|l| l.split(':').nth(1)?.trim().parse().ok())
        .unwrap_or(0.0);
    Duration::from_secs_f64(ms / 1e3)
}

/// Runs `f`, returning its result with its wall and CPU time.
async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration, Duration) {
    let (w, c) = (Instant::now(), cpu());
    let out = f.await;
    (out, w.elapsed(), cpu().saturating_sub(c))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cpus} CPUs")
}

fn main() {
    futures::executor::block_on(run());
}

async fn run() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let keys: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    println!("fold_cost: LWW map, {n} events over {keys} keys (5% deletes); {}", machine());
    if cfg!(debug_assertions) {
        println!("(debug build: run with --release for meaningful figures)");
    }

    // The stream: one replica, a chain of n events (appended in batches).
    let genesis = Event::genesis("fold cost").encode().unwrap();
    let mut replica =
        Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await.unwrap();
    let t = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + 10_000).min(n);
        replica.append_many((i..end).map(|j| op(j, keys))).await.unwrap();
        i = end;
    }
    println!("setup: appended {n} events in {}", ms(t.elapsed()));
    let order: Vec<Cid> = replica.order().collect();

    // Reference points: reading the order and decoding every block, no reducer.
    let (delta, _, read_cpu) = timed(async { replica.events_since(&merkle_clock::Cursor::start()) }).await;
    let (_, _, fetch_cpu) = timed(async {
        for chunk in delta.events.chunks(1024) {
            replica.store().get_many(chunk).await.unwrap();
        }
    })
    .await;
    let (decoded, _, fetch_decode_cpu) = timed(async {
        let mut decoded = 0usize;
        for chunk in delta.events.chunks(1024) {
            let blocks = replica.store().get_many(chunk).await.unwrap();
            for b in blocks.iter().flatten() {
                decoded += usize::from(FoldEvent::<Op>::decode(b, None).is_ok()); // not the genesis
            }
        }
        decoded
    })
    .await;
    assert_eq!(decoded as u64, n);
    let per = |d: Duration| d.as_nanos() as f64 / n as f64;
    println!(
        "parts, cpu: events_since(start) {:.0} ns/event, get_many from the memory store {:.0} ns/event, \
         get_many + decode {:.0} ns/event",
        per(read_cpu),
        per(fetch_cpu),
        per(fetch_decode_cpu)
    );
    drop(delta);

    // 1. The full fold from scratch, default checkpoints (every 4096, 8
    //    dense), alternating with runs that take no checkpoints.
    let (mut wall, mut cpu_t, mut wall_nc, mut cpu_nc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut fold = Fold::new(Map::new());
    for _ in 0..3 {
        let mut f = Fold::new(Map::new());
        let (r, w, c) = timed(f.update(&replica)).await;
        assert_eq!(r.unwrap().applied as u64, n);
        wall.push(w);
        cpu_t.push(c);
        fold = f;
        let mut f = Fold::with_policy(Map::new(), CheckpointPolicy::new(usize::MAX, 1));
        let (_, w, c) = timed(f.update(&replica)).await;
        wall_nc.push(w);
        cpu_nc.push(c);
    }
    let (full, full_cpu) = (median(wall), median(cpu_t));
    let (nc, nc_cpu) = (median(wall_nc), median(cpu_nc));
    println!(
        "\nfull fold of {n} events (median of 3): wall {}, cpu {} = {:.0} ns/event of cpu",
        ms(full),
        ms(full_cpu),
        full_cpu.as_nanos() as f64 / n as f64
    );
    println!(
        "  state: {} keys; {} checkpoints held: {:?}",
        fold.state().len(),
        fold.checkpoint_positions().len(),
        fold.checkpoint_positions()
    );
    println!(
        "  without checkpoints: wall {}, cpu {} (checkpoints cost {:+.1}% cpu)",
        ms(nc),
        ms(nc_cpu),
        (full_cpu.as_secs_f64() / nc_cpu.as_secs_f64().max(1e-9) - 1.0) * 100.0
    );

    let (_, _, clone_cpu) = timed(async {
        for _ in 0..100 {
            std::hint::black_box(fold.state().clone());
        }
    })
    .await;
    println!("  one clone of the state (a checkpoint): {:.0} µs cpu", clone_cpu.as_secs_f64() * 1e6 / 100.0);

    // 2. One event at the end.
    let mut runs = Vec::new();
    for j in 0..5 {
        replica.append(&op(n + j, keys)).await.unwrap();
        let t = Instant::now();
        let r = fold.update(&replica).await.unwrap();
        runs.push(t.elapsed());
        assert_eq!((r.applied, r.replayed_from), (1, None));
    }
    println!("one new event at the end: {:.1} µs wall (median of 5)", median(runs).as_secs_f64() * 1e6);

    // 3. Late events: a concurrent event whose parent is d positions back lands
    //    among the events of its height and everything after it is re-folded.
    println!("\nlate event landing d positions back (median of 5; each a fresh event):");
    println!(
        "  {:>9}  {:>10}  {:>10}  {:>12}  {:>14}  {:>12}  {:>12}",
        "d", "wall", "cpu", "re-applied", "from checkpt", "cpu/applied", "cpu vs full"
    );
    let mut tag = 0u64;
    for d in [100u64, 1_000, 10_000, 100_000].into_iter().filter(|d| *d + 10 < n) {
        let mut runs = Vec::new();
        let mut cpus = Vec::new();
        let mut applied = Vec::new();
        let mut restored = Vec::new();
        for _ in 0..5 {
            tag += 1;
            let len = replica.len() as u64;
            // The chain's event at height h is at position h, give or take
            // the few late events added before.
            let h = len - d;
            let parent = order[(h - 1) as usize];
            let late = Event::new(h, vec![parent], op(tag * 7919, keys)).encode().unwrap();
            replica.ingest(late).await.unwrap();
            let (r, w, c) = timed(fold.update(&replica)).await;
            let r = r.unwrap();
            runs.push(w);
            cpus.push(c);
            let moved = r.replayed_from.expect("a late event moves the order");
            applied.push(r.applied);
            restored.push(moved - r.restored_from.expect("restored"));
        }
        let (m, c) = (median(runs), median(cpus));
        applied.sort();
        restored.sort();
        println!(
            "  {d:>9}  {:>10}  {:>10}  {:>12}  {:>14}  {:>9.0} ns  {:>11.2}%",
            ms(m),
            ms(c),
            applied[2],
            restored[2],
            c.as_nanos() as f64 / applied[2] as f64,
            c.as_secs_f64() / full_cpu.as_secs_f64() * 100.0
        );
    }
    println!(
        "  (re-applied: events folded again; from checkpt: from the checkpoint restored to the first moved position)"
    );

    // The incremental state equals a fold from scratch.
    let mut check = Fold::new(Map::new());
    check.update(&replica).await.unwrap();
    assert!(check.state() == fold.state(), "incremental fold equals the fold from scratch");
    println!("\nincremental state == fold from scratch: true");
}
