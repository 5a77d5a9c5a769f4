//! The native side of `wasm/bench/side_by_side.mjs`: the append rate of the
//! workload the wasm build runs there, natively, so the script can report
//! wasm over native.
//!
//! ```text
//! cargo run --release --example wasm_native_append [-- EVENTS]
//! ```
//!
//! 10,000 (or EVENTS) single `Replica::append`s of `{payload: <128 bytes>}`
//! (a map holding a byte string, the payload the JS benchmark appends) onto a
//! fresh replica over a `MemoryBlockstore` behind `Arc<dyn StreamStore>`
//! (as the wasm build holds it); then the same events in one
//! `Replica::append_many` (what the JS `appendMany` calls). One untimed
//! warm-up run each, then the best wall-clock rate of 5 runs (as the JS
//! script takes the best of its runs: the one least slowed by other work on a
//! shared machine), printed as
//! one JSON line per way:
//! `{"metric":"native_append","events":…,"events_per_s":…,"cpu_events_per_s":…}`
//! and `{"metric":"native_append_many",…}`. `cpu_events_per_s` divides by
//! the thread's CPU time (Linux's `/proc/thread-self/schedstat`; 0 where
//! that is missing): on a loaded machine it moves far less than the wall
//! clock, since time spent waiting for a core is not counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use merkle_clock::{Event, MemoryBlockstore, Replica, ReplicaConfig, StreamStore};
use serde::Serialize;

#[derive(Serialize)]
struct Data {
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

/// The same bytes as the JS benchmark's `eventData(i)` (an LCG seeded by `i`).
fn data(i: u32) -> Data {
    let mut x = i.wrapping_mul(2_654_435_761).wrapping_add(1);
    let payload = (0..128)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 24) as u8
        })
        .collect();
    Data { payload }
}

/// This thread's CPU time so far, from Linux's `/proc/thread-self/schedstat`
/// (nanoseconds on a CPU); `None` elsewhere.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}

/// One run's rates: by wall clock, and by CPU time (when known).
fn run(events: u32, many: bool) -> (f64, Option<f64>) {
    let datas: Vec<Data> = (0..events).map(data).collect();
    let genesis = Event::genesis("side by side").encode().expect("genesis");
    block_on(async {
        let store: Arc<dyn StreamStore> = Arc::new(MemoryBlockstore::new());
        let mut r = Replica::create(store, &genesis, ReplicaConfig::default()).await.expect("create");
        let (t0, c0) = (Instant::now(), thread_cpu());
        if many {
            r.append_many(datas.iter()).await.expect("append_many");
        } else {
            for d in &datas {
                r.append(d).await.expect("append");
            }
        }
        let s = t0.elapsed().as_secs_f64();
        let cpu = c0.zip(thread_cpu()).map(|(c0, c1)| (c1 - c0).as_secs_f64());
        assert_eq!(r.len(), events as usize + 1);
        (f64::from(events) / s, cpu.map(|c| f64::from(events) / c))
    })
}

fn main() {
    let events: u32 = match std::env::args().nth(1) {
        None => 10_000,
        Some(s) => s.parse().unwrap_or_else(|_| {
            eprintln!("usage: wasm_native_append [EVENTS]");
            std::process::exit(2)
        }),
    };
    for (many, metric) in [(false, "native_append"), (true, "native_append_many")] {
        run(events.min(1000), many);
        let runs: Vec<(f64, Option<f64>)> = (0..5).map(|_| run(events, many)).collect();
        let wall = runs.iter().map(|r| r.0).fold(0.0, f64::max);
        let cpu = runs.iter().filter_map(|r| r.1).fold(0.0, f64::max);
        println!(
            "{{\"metric\":\"{metric}\",\"events\":{events},\"events_per_s\":{wall:.1},\"cpu_events_per_s\":{cpu:.1}}}"
        );
    }
}
