//! Appends (memory store, redb batched, redb durable) and the ingest of
//! foreign blocks (verify + decode + insert).
//!
//! `cargo bench --bench append`. Sample sizes are small: the figures that
//! count come from `cargo run --release --example perf_report`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use futures::executor::block_on;
use merkle_clock::replica::{Replica, ReplicaConfig};
use merkle_clock::store::{Durability, RedbBlockstore};
use merkle_clock::{Block, Cid, Event, MemoryBlockstore};
use serde_bytes::ByteBuf;

const PAYLOAD: usize = 128;

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

fn genesis() -> Block {
    Event::genesis("bench append").encode().expect("genesis")
}

fn bench_append(c: &mut Criterion) {
    let g = genesis();
    let mut group = c.benchmark_group("append");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));

    // encode + BLAKE3 only: the limit the appends are measured against.
    group.bench_function("bare_encode_hash", |b| {
        let p = payload(7);
        let parent = *g.cid();
        let mut h = 0u64;
        b.iter(|| {
            h += 1;
            black_box(Event::encode_parts(h, std::slice::from_ref(&parent), &p).expect("encode"))
        });
    });

    // A fresh replica per sample; `iters` single appends into it.
    group.bench_function("memory", |b| {
        b.iter_custom(|iters| {
            let payloads: Vec<ByteBuf> = (0..iters).map(payload).collect();
            let mut r = block_on(Replica::create(Arc::new(MemoryBlockstore::new()), &g, ReplicaConfig::default()))
                .expect("create");
            let start = Instant::now();
            block_on(async {
                for p in &payloads {
                    r.append(p).await.expect("append");
                }
            });
            start.elapsed()
        });
    });

    let dir = tempfile::tempdir().expect("tempdir");

    // Eventual durability, `append_many` batches of 1,000, a flush per sample.
    group.throughput(Throughput::Elements(1000));
    let store =
        Arc::new(RedbBlockstore::open_with(dir.path().join("batched.redb"), Durability::Eventual).expect("redb"));
    let mut r = block_on(Replica::create(store.clone(), &g, ReplicaConfig::default())).expect("create");
    let mut next = 0u64;
    group.bench_function("redb_batched_1000", |b| {
        b.iter_custom(|iters| {
            let batches: Vec<Vec<ByteBuf>> = (0..iters)
                .map(|_| {
                    let batch = (next..next + 1000).map(payload).collect();
                    next += 1000;
                    batch
                })
                .collect();
            let start = Instant::now();
            block_on(async {
                for batch in &batches {
                    r.append_many(batch.iter()).await.expect("append_many");
                }
            });
            store.flush().expect("flush");
            start.elapsed()
        });
    });
    drop(r);

    // Immediate durability: one fsynced commit per append.
    group.throughput(Throughput::Elements(1));
    let store =
        Arc::new(RedbBlockstore::open_with(dir.path().join("durable.redb"), Durability::Immediate).expect("redb"));
    let mut r = block_on(Replica::create(store, &g, ReplicaConfig::default())).expect("create");
    group.bench_function("redb_durable", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            block_on(r.append(&payload(i))).expect("append")
        });
    });
    group.finish();
}

/// A chain of `n` events on top of `genesis`, as foreign (CID, bytes).
fn chain(genesis: &Block, n: usize) -> Vec<(Cid, Bytes)> {
    let mut prev = *genesis.cid();
    (0..n)
        .map(|i| {
            let block =
                Event::encode_parts(i as u64 + 1, std::slice::from_ref(&prev), &payload(i as u64)).expect("encode");
            prev = *block.cid();
            block.into_parts()
        })
        .collect()
}

fn bench_ingest(c: &mut Criterion) {
    let g = genesis();
    let blocks = chain(&g, 1000);
    let mut group = c.benchmark_group("ingest");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(blocks.len() as u64));
    // Block::new (hash check) + ingest_many (strict decode, index insert, one commit).
    group.bench_function("verify_decode_insert_1000", |b| {
        b.iter_batched(
            || {
                block_on(Replica::create(Arc::new(MemoryBlockstore::new()), &g, ReplicaConfig::default()))
                    .expect("create")
            },
            |mut r| {
                let batch: Vec<Block> =
                    blocks.iter().map(|(c, b)| Block::new(*c, b.clone()).expect("verified")).collect();
                let report = block_on(r.ingest_many(batch)).expect("ingest");
                assert_eq!(report.accepted.len(), 1000);
                r
            },
            BatchSize::PerIteration,
        );
    });
    // The hash check alone.
    group.bench_function("verify_1000", |b| {
        b.iter(|| {
            for (c, bytes) in &blocks {
                black_box(Block::new(*c, bytes.clone()).expect("verified"));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, bench_append, bench_ingest);
criterion_main!(benches);
