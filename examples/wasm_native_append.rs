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
//! `{"metric":"native_append","events":…,"events_per_s":…}` and
//! `{"metric":"native_append_many",…}`.

use std::sync::Arc;
use std::time::Instant;

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

fn run(events: u32, many: bool) -> f64 {
    let datas: Vec<Data> = (0..events).map(data).collect();
    let genesis = Event::genesis("side by side").encode().expect("genesis");
    block_on(async {
        let store: Arc<dyn StreamStore> = Arc::new(MemoryBlockstore::new());
        let mut r = Replica::create(store, &genesis, ReplicaConfig::default()).await.expect("create");
        let t0 = Instant::now();
        if many {
            r.append_many(datas.iter()).await.expect("append_many");
        } else {
            for d in &datas {
                r.append(d).await.expect("append");
            }
        }
        let s = t0.elapsed().as_secs_f64();
        assert_eq!(r.len(), events as usize + 1);
        f64::from(events) / s
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
        let best = (0..5).map(|_| run(events, many)).fold(0.0, f64::max);
        println!("{{\"metric\":\"{metric}\",\"events\":{events},\"events_per_s\":{best:.1}}}");
    }
}
