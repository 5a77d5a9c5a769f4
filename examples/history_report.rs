//! What bounded history costs and saves (issue "Bounded history"):
//!
//! ```text
//! cargo run --release --example history_report [-- --json] [--quick] [--events N] [--keep K] [--shallow-only]
//! ```
//!
//! - `pruned_bytes_per_event`: a stream of 1,000,000 events with 128-byte
//!   payloads in a redb file, pruned to the newest 10,000
//!   (`Replica::prune(PrunePolicy::KeepNewest(10_000))`). **disk**: the
//!   bytes a pruned event still costs in the file, after redb's `compact`:
//!   (size of the pruned file − size of a file holding only the genesis and
//!   the kept events' blocks, built the same way) / pruned events. The
//!   full file's bytes per event are printed beside it. **resident**: a
//!   fresh process (this example run again with `--resident`) opens the
//!   pruned store and a `Replica` over it; its RSS after the open minus its
//!   RSS before, over the pruned events (the kept 1% are counted in, so
//!   this overstates a little), with redb's page cache bounded to 4 MiB
//!   (`RedbConfig::cache_bytes`; `resident_default_cache` is the same with
//!   redb's default of 1 GiB, which keeps the pages of the whole log the
//!   open read). Split into the replica's index (the `Dag`'s own heap
//!   accounting, `Dag::heap_bytes`), the pruned bitset, and the rest
//!   (redb's cache, allocator slack).
//! - `prune`: the seconds `Replica::prune` takes for those events (one
//!   atomic redb transaction, fsynced), wall time.
//!
//! - `shallow_bootstrap`: the same stream (in memory stores), with a
//!   checkpoint after 99% of it (990,000 events; no reducer states, so the
//!   figure is the history's cost alone) and 1% after it. A new replica
//!   syncs it in full from the writer by the sync protocol (**full_sync_bytes**:
//!   every encoded message, both ways; **full_sync_seconds**), and another
//!   one starts from the checkpoint (`Replica::bootstrap`: the genesis, the
//!   checkpoint, the flagged tree, one skeleton lookup per cut event) and
//!   then syncs the rest by the same protocol (**bytes**: the blocks the
//!   bootstrap fetched plus every message; **seconds**). Same run, so
//!   **bytes_ratio** = bytes / full_sync_bytes (goal: at most 0.1).
//!
//! `--quick`: 100,000 events (for CI). `--json` prints one JSON object per
//! line: `{"metric":"pruned_bytes_per_event","disk":…,"resident":…,…}`,
//! `{"metric":"prune","events":…,"seconds":…}` and
//! `{"metric":"shallow_bootstrap","bytes":…,"full_sync_bytes":…,"bytes_ratio":…,"seconds":…,"full_sync_seconds":…}`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures::executor::block_on;
use merkle_clock::checkpoint::{self, CheckpointConfig};
use merkle_clock::replica::PrunePolicy;
use merkle_clock::store::{Durability, RedbBlockstore, RedbConfig};
use merkle_clock::sync::{SyncState, generate_message, receive_message};
use merkle_clock::{Block, Cid, Event, MemoryBlockstore, Replica, ReplicaConfig, StreamStore};

/// The payload of every event: 128 bytes.
const PAYLOAD: usize = 128;
/// Events appended per store commit while building the stream.
const BATCH: usize = 1_000;
/// The page cache of the `resident` row's open (`RedbConfig::cache_bytes`):
/// small, so that the row shows what the replica holds, not what redb caches.
const SMALL_CACHE: usize = 4 << 20;

struct Args {
    json: bool,
    events: usize,
    keep: usize,
    resident: Option<String>,
    cache_bytes: usize,
    /// Only the `shallow_bootstrap` row.
    shallow_only: bool,
}

fn args() -> Args {
    let mut a = Args {
        json: false,
        events: 1_000_000,
        keep: 10_000,
        resident: None,
        cache_bytes: RedbConfig::default().cache_bytes,
        shallow_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |what: &str| -> usize {
            it.next().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or_else(|| panic!("{what} takes a number"))
        };
        match arg.as_str() {
            "--json" => a.json = true,
            "--quick" => a.events = 100_000,
            "--events" => a.events = number("--events"),
            "--keep" => a.keep = number("--keep"),
            "--resident" => a.resident = it.next(),
            "--cache-bytes" => a.cache_bytes = number("--cache-bytes"),
            "--shallow-only" => a.shallow_only = true,
            other => {
                panic!(
                    "unknown argument {other}; usage: history_report [--json] [--quick] [--events N] [--keep K] [--shallow-only]"
                )
            }
        }
    }
    a
}

fn genesis() -> Block {
    Event::genesis("history report").encode().expect("genesis encodes")
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).expect("the store file").len()
}

/// Compacts the file (closing the store) and returns its size.
fn compacted_size(mut store: RedbBlockstore, path: &Path) -> u64 {
    while store.compact().expect("compact") {}
    store.close().expect("close");
    file_size(path)
}

/// This process's resident set, in bytes (Linux; 0 elsewhere).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The child run: opens the store at `path` with a page cache of at most
/// `cache_bytes` and prints `rss_delta dag_bytes pruned_bitset_bytes pruned`.
fn resident(path: &str, cache_bytes: usize) {
    let before = rss();
    let mut config = RedbConfig::default();
    config.cache_bytes = cache_bytes;
    let store = Arc::new(RedbBlockstore::open_config(path, &config).expect("open the pruned store"));
    let replica = block_on(Replica::open(store, genesis().cid(), ReplicaConfig::default())).expect("open the replica");
    let after = rss();
    println!(
        "{} {} {} {}",
        after.saturating_sub(before),
        replica.dag().heap_bytes(),
        replica.pruned_index_bytes(),
        replica.metrics().pruned
    );
}

/// Builds the stream: `events` events after the genesis, each with a
/// 128-byte payload, in a redb file at `path`.
fn build(path: &Path, events: usize) -> Replica<RedbBlockstore> {
    let store = Arc::new(RedbBlockstore::open_with(path, Durability::Eventual).expect("a new store"));
    let mut replica = block_on(Replica::create(store.clone(), &genesis(), ReplicaConfig::default())).expect("create");
    append_events(&mut replica, 0, events);
    store.flush().expect("flush");
    replica
}

/// A file with only the genesis and the blocks of `kept`, committed the
/// same way (in batches): what the kept events cost without any skeleton.
fn baseline(path: &Path, kept: &[Block]) -> u64 {
    let store = RedbBlockstore::open_with(path, Durability::Eventual).expect("a new store");
    let g = genesis();
    block_on(store.commit(g.cid(), std::slice::from_ref(&g), &[*g.cid()])).expect("commit");
    for chunk in kept.chunks(BATCH) {
        let head = *chunk[chunk.len() - 1].cid();
        block_on(store.commit(g.cid(), chunk, &[head])).expect("commit");
    }
    compacted_size(store, path)
}

fn main() {
    let args = args();
    if let Some(path) = &args.resident {
        resident(path, args.cache_bytes);
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (events, keep) = (args.events, args.keep.min(args.events));
    if !args.shallow_only {
        pruned_bytes_per_event(dir.path(), events, keep, args.json);
    }
    shallow_bootstrap(events, events / 100, args.json);
}

/// Appends `n` events with 128-byte payloads, numbered from `from`.
fn append_events<S: ?Sized + StreamStore>(replica: &mut Replica<S>, from: usize, n: usize) {
    let mut payload = vec![0u8; PAYLOAD];
    let mut done = 0;
    while done < n {
        let k = BATCH.min(n - done);
        let batch: Vec<serde_bytes::ByteBuf> = (0..k)
            .map(|i| {
                payload[..8].copy_from_slice(&((from + done + i) as u64).to_le_bytes());
                serde_bytes::ByteBuf::from(payload.clone())
            })
            .collect();
        block_on(replica.append_many(batch)).expect("append");
        done += k;
    }
}

type Mem = Replica<MemoryBlockstore>;

/// Syncs `to` from `from` by the sync protocol until both are silent;
/// returns the encoded bytes of every message, both ways.
fn sync_bytes(from: &mut Mem, to: &mut Mem) -> u64 {
    let (mut to_to, mut to_from) = (SyncState::with_seed(1), SyncState::with_seed(2));
    let mut bytes = 0;
    loop {
        let a = block_on(generate_message(from, &mut to_to)).expect("generate");
        let b = block_on(generate_message(to, &mut to_from)).expect("generate");
        if a.is_none() && b.is_none() {
            return bytes;
        }
        if let Some(m) = a {
            bytes += m.encode().len() as u64;
            block_on(receive_message(to, &mut to_from, m)).expect("receive");
        }
        if let Some(m) = b {
            bytes += m.encode().len() as u64;
            block_on(receive_message(from, &mut to_to, m)).expect("receive");
        }
    }
}

/// The `shallow_bootstrap` row: `events` events, the last `after` of them
/// after a checkpoint.
fn shallow_bootstrap(events: usize, after: usize, json: bool) {
    let t = Instant::now();
    let store = Arc::new(MemoryBlockstore::new());
    let mut writer = block_on(Replica::create(store.clone(), &genesis(), ReplicaConfig::default())).expect("create");
    append_events(&mut writer, 0, events - after - 1);
    let cp = block_on(checkpoint::build(&mut writer, &[], &CheckpointConfig::default())).expect("checkpoint");
    append_events(&mut writer, events - after, after);
    let built = t.elapsed();

    let t = Instant::now();
    let mut full = block_on(Replica::create(Arc::new(MemoryBlockstore::new()), &genesis(), ReplicaConfig::default()))
        .expect("create");
    let full_sync_bytes = sync_bytes(&mut writer, &mut full);
    let full_sync_seconds = t.elapsed().as_secs_f64();
    assert_eq!(full.heads(), writer.heads());
    drop(full);

    let t = Instant::now();
    let (mut thin, fetched) = block_on(Replica::bootstrap(
        Arc::new(MemoryBlockstore::new()),
        store.as_ref(),
        genesis().cid(),
        &cp.cid,
        &[cp.cid],
        ReplicaConfig::default(),
    ))
    .expect("bootstrap");
    let synced = sync_bytes(&mut writer, &mut thin);
    let seconds = t.elapsed().as_secs_f64();
    assert_eq!(thin.heads(), writer.heads());
    let bytes = fetched.bytes + synced;
    let bytes_ratio = bytes as f64 / full_sync_bytes as f64;
    if json {
        println!(
            "{{\"metric\":\"shallow_bootstrap\",\"bytes\":{bytes},\"full_sync_bytes\":{full_sync_bytes},\
             \"bytes_ratio\":{bytes_ratio:.4},\"seconds\":{seconds:.3},\"full_sync_seconds\":{full_sync_seconds:.3},\
             \"bootstrap_bytes\":{},\"bootstrap_blocks\":{},\"events\":{events},\"after_checkpoint\":{}}}",
            fetched.bytes,
            fetched.blocks,
            thin.len() - 1 - cp.parents.len(),
        );
        return;
    }
    println!("shallow bootstrap: {events} events ({after} after a checkpoint; built in {:.1} s)", built.as_secs_f64());
    println!("  full sync: {full_sync_bytes} bytes in {full_sync_seconds:.2} s");
    println!(
        "  from the checkpoint: {bytes} bytes in {seconds:.2} s ({} blocks, {} bytes fetched by CID; {synced} bytes of sync)",
        fetched.blocks, fetched.bytes
    );
    println!(
        "  ratio: {bytes_ratio:.4} of the bytes (goal: at most 0.1), {:.3} of the time",
        seconds / full_sync_seconds
    );
}

/// The `pruned_bytes_per_event` and `prune` rows.
fn pruned_bytes_per_event(dir: &Path, events: usize, keep: usize, json: bool) {
    let path = dir.join("stream.redb");
    let t = Instant::now();
    let mut replica = build(&path, events);
    let built = t.elapsed();
    let kept_cids: Vec<Cid> = replica.order().skip(replica.len() - keep).collect();
    let kept: Vec<Block> =
        kept_cids.iter().map(|c| block_on(replica.get(c)).expect("get").expect("an event of the stream")).collect();
    // The full file (as written, not compacted), for reference.
    let full_size = file_size(&path);
    let t = Instant::now();
    let report = block_on(replica.prune(PrunePolicy::KeepNewest(keep))).expect("prune");
    let prune_seconds = t.elapsed().as_secs_f64();
    let pruned = report.events;
    drop(replica);
    let store = RedbBlockstore::open(&path).expect("reopen");
    let pruned_size = compacted_size(store, &path);
    let base_size = baseline(&dir.join("baseline.redb"), &kept);
    let disk = pruned_size.saturating_sub(base_size) as f64 / pruned as f64;

    let open = |cache_bytes: usize| {
        let out = std::process::Command::new(std::env::current_exe().expect("this example"))
            .args(["--resident", path.to_str().expect("a UTF-8 path"), "--cache-bytes", &cache_bytes.to_string()])
            .output()
            .expect("the resident run");
        let line = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<u64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        let [rss_delta, dag_bytes, bitset_bytes, reopened_pruned] = fields[..] else {
            panic!("the resident run printed {line:?} ({})", String::from_utf8_lossy(&out.stderr));
        };
        assert_eq!(reopened_pruned, pruned, "the reopened replica counts every pruned event");
        (rss_delta, dag_bytes, bitset_bytes)
    };
    let (rss_delta, dag_bytes, bitset_bytes) = open(SMALL_CACHE);
    let (rss_default_cache, _, _) = open(RedbConfig::default().cache_bytes);
    let per = |b: u64| b as f64 / pruned as f64;
    let resident = per(rss_delta);
    let store_part = per(rss_delta.saturating_sub(dag_bytes));
    if json {
        println!(
            "{{\"metric\":\"pruned_bytes_per_event\",\"disk\":{disk:.1},\"resident\":{resident:.1},\
             \"resident_dag\":{:.1},\"resident_pruned_bitset\":{:.3},\"resident_rest\":{store_part:.1},\
             \"resident_cache_bytes\":{SMALL_CACHE},\"resident_default_cache\":{:.1},\
             \"full_file_bytes_per_event_uncompacted\":{:.1},\"events\":{events},\"pruned\":{pruned}}}",
            per(dag_bytes),
            per(bitset_bytes),
            per(rss_default_cache),
            full_size as f64 / (events + 1) as f64,
        );
        println!("{{\"metric\":\"prune\",\"events\":{pruned},\"seconds\":{prune_seconds:.3}}}");
        return;
    }
    println!("stream: {events} events of {PAYLOAD}-byte payloads in redb (built in {:.1} s)", built.as_secs_f64());
    println!(
        "  full file (as written, not compacted): {full_size} bytes, {:.1} bytes an event",
        full_size as f64 / (events + 1) as f64
    );
    println!("pruned to the newest {keep}: {pruned} events, {} bytes of blocks, in {prune_seconds:.2} s", report.bytes);
    println!("  file after compact: {pruned_size} bytes; the kept events alone: {base_size} bytes");
    println!("  disk per pruned event: {disk:.1} bytes (goal: at most 64)");
    println!(
        "  resident per pruned event (a fresh process opening the replica): {resident:.1} bytes: \
         the Dag {:.1}, the pruned bitset {:.3}, the rest (redb's cache of {SMALL_CACHE} bytes, allocator) \
         {store_part:.1}; with redb's default cache (1 GiB) {:.1}",
        per(dag_bytes),
        per(bitset_bytes),
        per(rss_default_cache),
    );
}
