//! The index: merging k concurrent events into a history of N (N from 10k to
//! 1M), the difference a sync answer computes, clock comparison and the
//! total-order iteration over 1M events.
//!
//! `cargo bench --bench dag`. The 1M-event index is built once per size
//! (a few seconds); merges insert into a fresh clone of it, made outside the
//! timing. Comparing `before` costs the depth between the two clocks.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use merkle_clock::{Cid, ClockOrder, Dag, cid_of};

const K: usize = 100;

/// Synthetic event CIDs: the index does not look at blocks.
fn cid(tag: u64, i: u64) -> Cid {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&tag.to_le_bytes());
    b[8..].copy_from_slice(&i.to_le_bytes());
    cid_of(&b)
}

/// A chain of `n` events after the genesis; returns the dag and its CIDs by height.
fn linear(n: usize) -> (Dag, Vec<Cid>) {
    let g = cid(0, 0);
    let mut dag = Dag::new(g);
    let mut chain = Vec::with_capacity(n + 1);
    chain.push(g);
    for i in 1..=n as u64 {
        let c = cid(1, i);
        dag.insert(&c, i, &[chain[i as usize - 1]]).expect("insert");
        chain.push(c);
    }
    (dag, chain)
}

/// `k` events forking from `from` (at height `h`), tagged `tag`.
fn branch(tag: u64, from: Cid, h: u64, k: usize) -> Vec<(Cid, u64, Cid)> {
    let mut prev = from;
    (0..k as u64)
        .map(|i| {
            let c = cid(tag, i);
            let e = (c, h + 1 + i, prev);
            prev = c;
            e
        })
        .collect()
}

fn bench_merge(c: &mut Criterion) {
    let mut group = c.benchmark_group("merge_k100");
    // One clone of the base per sample: keep the sample count small and the
    // iterations per sample at one (a clone of a 1M index takes ~0.1 s).
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(1));
    group.throughput(Throughput::Elements(K as u64));
    for n in [10_000usize, 100_000, 1_000_000] {
        // Shared history of n, then K local events on one side.
        let (mut base, chain) = linear(n);
        let fork = chain[n];
        let local = branch(2, fork, n as u64, K);
        for (c, h, p) in &local {
            base.insert(c, *h, &[*p]).expect("insert");
        }
        let other = branch(3, fork, n as u64, K);
        // A clone's vectors are full to capacity, so the first insert into one
        // reallocates them all (amortised away in a live index): the setup
        // inserts one more concurrent event before the timed inserts.
        let (spare, spare_height) = (cid(4, 0), n as u64 + 1);
        group.bench_with_input(BenchmarkId::new("insert", n), &n, |b, _| {
            b.iter_batched(
                || {
                    let mut dag = base.clone();
                    dag.insert(&spare, spare_height, &[fork]).expect("insert");
                    dag
                },
                |mut dag| {
                    for (c, h, p) in &other {
                        dag.insert(c, *h, &[*p]).expect("insert");
                    }
                    dag
                },
                BatchSize::PerIteration,
            );
        });
        // Read-only from here on: the difference a sync answer computes, and the
        // comparison of the two clocks.
        let mut merged = base.clone();
        for (c, h, p) in &other {
            merged.insert(c, *h, &[*p]).expect("insert");
        }
        let (a, b_head) = (local[K - 1].0, other[K - 1].0);
        group.bench_with_input(BenchmarkId::new("difference", n), &n, |b, _| {
            b.iter(|| black_box(merged.difference(&[b_head], &[a]).expect("difference")));
        });
        group.bench_with_input(BenchmarkId::new("compare", n), &n, |b, _| {
            b.iter(|| assert_eq!(merged.compare(&[a], &[b_head]).expect("compare"), ClockOrder::Concurrent));
        });
    }
    group.finish();
}

fn bench_compare(c: &mut Criterion) {
    let (mut dag, chain) = linear(100_000);
    let mut group = c.benchmark_group("compare");
    group.sample_size(10).warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_secs(1));
    // Two branches of depth d each from the head of 100k: cost follows d.
    for (tag, d) in [(10u64, 1usize), (20, 100), (30, 10_000)] {
        let fork = chain[100_000];
        let left = branch(tag, fork, 100_000, d);
        let right = branch(tag + 1, fork, 100_000, d);
        for (c, h, p) in left.iter().chain(&right) {
            dag.insert(c, *h, &[*p]).expect("insert");
        }
        let (a, b_head) = (left[d - 1].0, right[d - 1].0);
        group.bench_with_input(BenchmarkId::new("concurrent", d), &d, |b, _| {
            b.iter(|| assert_eq!(dag.compare(&[a], &[b_head]).expect("compare"), ClockOrder::Concurrent));
        });
        // Before: an ancestor d events below.
        group.bench_with_input(BenchmarkId::new("before", d), &d, |b, _| {
            b.iter(|| assert_eq!(dag.compare(&[fork], &[a]).expect("compare"), ClockOrder::Before));
        });
    }
    group.finish();
}

fn bench_order(c: &mut Criterion) {
    let (dag, _) = linear(1_000_000);
    let mut group = c.benchmark_group("order_1m");
    group.sample_size(10).warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(dag.len() as u64));
    group.bench_function("ids", |b| b.iter(|| black_box(dag.order().fold(0usize, |acc, id| acc ^ id.index()))));
    group.bench_function("cids", |b| {
        b.iter(|| black_box(dag.order().fold(0u8, |acc, id| acc ^ dag.cid(id).hash().digest()[0])))
    });
    group.finish();
}

criterion_group!(benches, bench_merge, bench_compare, bench_order);
criterion_main!(benches);
