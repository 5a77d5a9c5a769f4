//! Bloom-filter sync of two replicas that share a history of 1,000 events and
//! then diverged by `d` events on each side, until both are silent. Each
//! iteration starts from freshly built replicas (built outside the timing);
//! messages go through `Message::encode` / `Message::decode` as on a wire.
//!
//! `cargo bench --bench sync`. Round-trip counts and bytes are in
//! `cargo run --release --example sync_report`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use futures::executor::block_on;
use merkle_clock::replica::{Replica, ReplicaConfig};
use merkle_clock::sync::{Message, SyncLimits, SyncState, generate_message, receive_message};
use merkle_clock::{Block, Event, MemoryBlockstore};

type R = Replica<MemoryBlockstore>;

const SHARED: usize = 1000;

fn payload(side: u64, i: u64) -> Vec<u8> {
    let mut v = vec![0u8; 128];
    v[..8].copy_from_slice(&side.to_le_bytes());
    v[8..16].copy_from_slice(&i.to_le_bytes());
    v
}

fn pair(g: &Block, shared: &[Block], d: usize) -> (R, R) {
    let mk = || {
        let mut r =
            block_on(Replica::create(Arc::new(MemoryBlockstore::new()), g, ReplicaConfig::default())).expect("create");
        block_on(r.ingest_many(shared.to_vec())).expect("ingest");
        r
    };
    let (mut a, mut b) = (mk(), mk());
    block_on(async {
        a.append_many((0..d as u64).map(|i| serde_bytes::ByteBuf::from(payload(1, i)))).await.expect("append");
        b.append_many((0..d as u64).map(|i| serde_bytes::ByteBuf::from(payload(2, i)))).await.expect("append");
    });
    (a, b)
}

/// Both sides speak each step; each message crosses the "wire" as bytes.
fn sync(a: &mut R, b: &mut R) -> usize {
    let limits = SyncLimits::default();
    let (mut to_b, mut to_a) = (SyncState::with_seed(1), SyncState::with_seed(2));
    let mut steps = 0;
    block_on(async {
        loop {
            let from_a = generate_message(a, &mut to_b).await.expect("generate");
            let from_b = generate_message(b, &mut to_a).await.expect("generate");
            if from_a.is_none() && from_b.is_none() {
                break;
            }
            if let Some(m) = from_a {
                let m = Message::decode(&m.encode(), &limits).expect("decode");
                receive_message(b, &mut to_a, m).await.expect("receive");
            }
            if let Some(m) = from_b {
                let m = Message::decode(&m.encode(), &limits).expect("decode");
                receive_message(a, &mut to_b, m).await.expect("receive");
            }
            steps += 1;
            assert!(steps < 100, "sync did not settle");
        }
    });
    steps
}

fn bench_sync(c: &mut Criterion) {
    let g = Event::genesis("bench sync").encode().expect("genesis");
    let mut shared = Vec::with_capacity(SHARED);
    let mut prev = *g.cid();
    for i in 0..SHARED as u64 {
        let block = Event::encode_parts(i + 1, &[prev], &serde_bytes::ByteBuf::from(payload(0, i))).expect("encode");
        prev = *block.cid();
        shared.push(block);
    }
    let mut group = c.benchmark_group("sync_shared_1000");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(1));
    for d in [1usize, 10, 100, 1000] {
        group.throughput(Throughput::Elements(2 * d as u64));
        group.bench_with_input(BenchmarkId::new("diverged_each_side", d), &d, |bench, &d| {
            bench.iter_batched(
                || pair(&g, &shared, d),
                |(mut a, mut b)| {
                    sync(&mut a, &mut b);
                    assert_eq!(a.heads(), b.heads());
                    (a, b)
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, bench_sync);
criterion_main!(benches);
