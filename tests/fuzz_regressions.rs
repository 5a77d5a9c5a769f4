//! The fuzz targets' checks, and the replay of every input a fuzzer ever broke.
//!
//! This file is the single home of the checks: each target in `fuzz/` pulls
//! it in as a module (`#[path = "../../tests/fuzz_regressions.rs"] mod checks;`)
//! and calls the same `check_*` function this file's tests call, so a crasher
//! replays here exactly as it failed there, and the two cannot drift apart.
//! The file uses only the crate and its normal dependencies (no `arbitrary`,
//! no fuzz crate): byte targets read their input with [`Source`]; the
//! structured `merge` target converts its `#[derive(Arbitrary)]` input into a
//! [`MergeScript`], whose text form is what its crashers are kept as.
//!
//! Every file under `tests/fuzz_crashes/<target>/` is replayed by
//! `replay_<target>`, and must have a line in [`PINNED`] naming the bug it
//! pinned (a file without one fails the test). To keep a new crasher:
//!
//! ```text
//! cp fuzz/artifacts/<target>/crash-<hash> tests/fuzz_crashes/<target>/<short-name>
//! # merge: keep the script instead of the raw bytes
//! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz fmt merge artifacts/merge/crash-<hash>) \
//!     > tests/fuzz_crashes/merge/<short-name>.script
//! ```
//!
//! then add its line to [`PINNED`], fix the bug, and run
//! `cargo test --test fuzz_regressions`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::executor::block_on;
use merkle_clock::car::{CarError, CarLimits, CarReader, read_car, write_car};
use merkle_clock::replica::{Rejection, Replica, ReplicaConfig};
use merkle_clock::sync::{
    Bloom, Message, SessionConfig, Sessions, SyncError, SyncLimits, SyncState, generate_message, receive_message,
};
use merkle_clock::{
    Block, BlockSet, Cid, DecodeError, Event, Ingest, Ipld, Limits, MemoryBlockstore, StreamStore, cid_of,
};

/// Every kept crasher: (target, file name, the bug it pinned).
pub const PINNED: &[(&str, &str, &str)] = &[(
    "merge",
    "paused-after-a-lost-message.script",
    "the driver pauses a peer after a lost message; the lockstep harness never advanced its clock, so the sender stayed paused and the sync went silent before the heads agreed",
)];

// ---------------------------------------------------------------------------
// Input reader for byte-driven targets
// ---------------------------------------------------------------------------

/// Reads decisions from fuzz input; past the end every read is 0, so any
/// byte string is a complete program.
pub struct Source<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Source<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Source { data, pos: 0 }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte, or 0 past the end.
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// An index below `len` (0 when `len` is 0).
    pub fn index(&mut self, len: usize) -> usize {
        if len == 0 { 0 } else { usize::from(self.u16()) % len }
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = start + n;
        &self.data[start..end]
    }
}

// ---------------------------------------------------------------------------
// decode_event
// ---------------------------------------------------------------------------

/// Arbitrary bytes as an event block: a typed error naming the block's CID,
/// or an event that re-encodes to the very same bytes (hence the same CID).
pub fn check_decode_event(data: &[u8]) {
    let block = Block::from_bytes(data.to_vec());
    assert_eq!(*block.cid(), cid_of(data));
    assert!(block.verify().is_ok());
    let decoded = Event::<Ipld>::decode(&block);
    let in_set = BlockSet::new().insert(block.clone());
    match decoded {
        Ok(event) => {
            assert_eq!(in_set, Ok(true), "BlockSet and Event::decode disagree");
            assert_eq!(event.height() == 0, event.parents().is_empty(), "height rule");
            assert!(event.parents().windows(2).all(|w| w[0] < w[1]), "parents sorted and unique");
            let again = event.encode().expect("a decoded event re-encodes");
            assert_eq!(again.bytes().as_ref(), data, "re-encoding changed the bytes");
            assert_eq!(again.cid(), block.cid(), "the CID does not recompute");
        }
        Err(e) => {
            assert_eq!(e.cid(), block.cid(), "the error names another CID");
            assert!(
                !matches!(e, DecodeError::Payload { .. }),
                "the strict reader passed a payload that IPLD cannot hold: {e}"
            );
            assert_eq!(in_set, Err(e.clone()), "BlockSet and Event::decode disagree");
            assert!(!e.to_string().is_empty());
        }
    }
}

// ---------------------------------------------------------------------------
// ingest
// ---------------------------------------------------------------------------

type MemReplica = Replica<MemoryBlockstore>;

/// An event the generator made, with the height it claims.
#[derive(Clone)]
struct Made {
    block: Block,
    height: u64,
}

fn make(height: u64, parents: Vec<Cid>, payload: Ipld) -> Made {
    let mut limits = Limits::DEFAULT;
    limits.max_parents = 64;
    let block = Event::new(height, parents, payload).encode_with(&limits).expect("generated events encode");
    Made { block, height }
}

fn pick(src: &mut Source<'_>, pool: &[Made], max: u8) -> Vec<Made> {
    let k = 1 + usize::from(src.byte() % max);
    (0..k).map(|_| pool[src.index(pool.len())].clone()).collect()
}

fn child_of(parents: &[Made], payload: u8, height_delta: i8) -> Made {
    let top = parents.iter().map(|m| m.height).max().unwrap_or(0);
    let height = (top + 1).saturating_add_signed(i64::from(height_delta)).max(1);
    make(height, parents.iter().map(|m| *m.block.cid()).collect(), Ipld::Integer(i128::from(payload)))
}

/// Arbitrary bytes drive a small generator of blocks (valid descendants of
/// the genesis, wrong heights, foreign chains, orphans, mutated and random
/// bytes) delivered to one replica in batches of any order. Checks: no panic;
/// every outcome agrees with the replica; the pending buffer stays within its
/// caps; at the end the DAG, the heads, the order, the store, its log and a
/// reopened replica all agree, and the accepted set is exactly what a
/// reference model (decode + height + parents accepted) computes. Returns
/// what happened, so tests can see the generator reach every kind of outcome.
pub fn check_ingest(data: &[u8]) -> IngestStats {
    let mut src = Source::new(data);
    let setup = src.byte();
    let mut config = ReplicaConfig::default();
    config.max_pending_events = [3, 16, 100_000, 100_000][usize::from(setup & 3)];
    if setup & 4 != 0 {
        config.max_pending_bytes = 600;
    }
    if setup & 8 != 0 {
        config.limits.max_parents = 2;
    }
    let genesis = make(0, Vec::new(), Ipld::String(format!("ingest {}", setup >> 4)));
    let foreign = make(0, Vec::new(), Ipld::String("foreign".into()));
    let store = Arc::new(MemoryBlockstore::new());
    let mut replica = block_on(MemReplica::create(store.clone(), &genesis.block, config)).expect("create");

    // good: valid descendants of the genesis (heights right, within 3 parents);
    // other: foreign chains, wrong heights, orphans and their descendants.
    let mut good = vec![genesis.clone()];
    let mut other = vec![foreign];
    let mut delivered: Vec<Block> = Vec::new();
    let mut refused: HashSet<Cid> = HashSet::new();
    let mut steps = 0;
    while !src.is_empty() && steps < 200 {
        steps += 1;
        let mut batch = Vec::new();
        match src.byte() % 10 {
            0 | 1 => {
                let parents = pick(&mut src, &good, 3);
                good.push(child_of(&parents, src.byte(), 0));
            }
            2 | 3 => {
                for _ in 0..1 + src.byte() % 8 {
                    let i = src.index(good.len() + other.len());
                    batch.push(if i < good.len() { &good[i] } else { &other[i - good.len()] }.block.clone());
                }
            }
            4 => {
                let all = good.len() + other.len();
                let i = src.index(all);
                let m = if i < good.len() { &good[i] } else { &other[i - good.len()] };
                let mut bytes = m.block.bytes().to_vec();
                let at = src.index(bytes.len());
                match src.byte() {
                    0 => bytes.truncate(at),
                    x => bytes[at] ^= x,
                }
                batch.push(Block::from_bytes(bytes));
            }
            5 => {
                let n = usize::from(src.byte() % 96);
                batch.push(Block::from_bytes(src.take(n).to_vec()));
            }
            6 => {
                // a wrong height over good parents
                let parents = pick(&mut src, &good, 2);
                let delta = [1, 2, -1, 40][usize::from(src.byte() & 3)];
                let bad = child_of(&parents, src.byte(), delta);
                if delta < 0 && bad.height == parents.iter().map(|m| m.height).max().unwrap_or(0) + 1 {
                    continue; // clamped back to the right height: not bad after all
                }
                other.push(bad);
            }
            7 => {
                // a descendant of something in `other`, maybe with good parents too
                let mut parents = pick(&mut src, &other, 2);
                if src.byte() & 1 == 1 {
                    parents.extend(pick(&mut src, &good, 1));
                }
                other.push(child_of(&parents, src.byte(), 0));
            }
            8 => {
                // an orphan: a parent nobody will ever send
                let phantom =
                    Made { block: Block::from_bytes(src.take(4).to_vec()), height: u64::from(src.byte() % 4) };
                let mut parents = vec![phantom];
                parents.extend(pick(&mut src, &good, 1));
                other.push(child_of(&parents, src.byte(), 0));
            }
            _ => {
                // a run of good events, newest first
                let n = 1 + usize::from(src.byte() % 16);
                batch.extend(good.iter().rev().take(n).map(|m| m.block.clone()));
            }
        }
        if !batch.is_empty() {
            deliver(&mut replica, batch, &mut delivered, &mut refused);
        }
    }
    // Deliver every good event, in the order made (parents first).
    deliver(&mut replica, good.iter().map(|m| m.block.clone()).collect(), &mut delivered, &mut refused);

    let limits = config.limits;
    let expected = reference_accepted(*genesis.block.cid(), &delivered, &limits);
    let actual: Vec<Cid> = replica.order().collect();
    let actual_set: HashSet<Cid> = actual.iter().copied().collect();
    for cid in &actual {
        assert!(expected.contains_key(cid), "{cid}: accepted, but not a valid descendant of the genesis");
    }
    for cid in &refused {
        assert!(!actual_set.contains(cid), "{cid}: rejected, yet in the DAG");
    }
    for m in &good {
        if Event::<Ipld>::decode_with(&m.block, &limits).is_ok() && expected.contains_key(m.block.cid()) {
            assert!(
                actual_set.contains(m.block.cid()),
                "{}: a valid event delivered in order is missing",
                m.block.cid()
            );
        }
    }
    if replica.metrics().evicted == 0 {
        assert_eq!(actual_set.len(), expected.len(), "nothing was evicted, so every valid event is in");
    }
    check_replica_consistent(&replica, &store);
    IngestStats { delivered: delivered.len(), accepted: actual.len() - 1, refused: refused.len() }
}

/// What one `check_ingest` run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestStats {
    /// Blocks delivered (with repeats).
    pub delivered: usize,
    /// Events in the DAG at the end, the genesis not counted.
    pub accepted: usize,
    /// Distinct blocks rejected at least once.
    pub refused: usize,
}

/// Ingests one batch and checks each outcome against the replica.
fn deliver(replica: &mut MemReplica, batch: Vec<Block>, delivered: &mut Vec<Block>, refused: &mut HashSet<Cid>) {
    delivered.extend(batch.iter().cloned());
    let report = block_on(replica.ingest_many(batch.clone())).expect("the memory store does not fail");
    assert_eq!(report.outcomes.len(), batch.len(), "one outcome per block");
    for cid in &report.accepted {
        assert!(replica.contains(cid), "{cid}: reported accepted, not in the DAG");
    }
    for (block, outcome) in batch.iter().zip(&report.outcomes) {
        let cid = block.cid();
        match outcome {
            Ingest::Accepted | Ingest::Duplicate => assert!(replica.contains(cid), "{cid}: {outcome:?} but absent"),
            Ingest::Pending { missing } => {
                assert!(!replica.contains(cid), "{cid}: pending but in the DAG");
                assert!(missing.iter().all(|m| !replica.contains(m)), "{cid}: a missing parent is present");
            }
            Ingest::Rejected(r) => {
                assert!(!replica.contains(cid), "{cid}: rejected but in the DAG");
                assert!(!r.to_string().is_empty());
                assert!(!matches!(r, Rejection::Validator { .. }), "no validator is installed");
                refused.insert(*cid);
            }
        }
    }
    let merkle_clock::replica::PendingStats { events, bytes } = replica.pending();
    let config = replica.config();
    assert!(events <= config.max_pending_events, "pending events {events} over the cap");
    assert!(bytes <= config.max_pending_bytes, "pending bytes {bytes} over the cap");
    let missing = replica.missing();
    assert!(missing.windows(2).all(|w| w[0] < w[1]), "missing() sorted");
    assert!(missing.iter().all(|m| !replica.contains(m)), "missing() names an event in the DAG");
}

/// The events a correct replica accepts from `delivered`: canonical events
/// within `limits`, not parentless, whose parents are all accepted and whose
/// height is one above the highest parent. Returns CID → height.
fn reference_accepted(genesis: Cid, delivered: &[Block], limits: &Limits) -> HashMap<Cid, u64> {
    let mut candidates: Vec<(u64, Block, Vec<Cid>)> = Vec::new();
    let mut seen = HashSet::new();
    for b in delivered {
        if !seen.insert(*b.cid()) || b.verify().is_err() {
            continue;
        }
        if let Ok(e) = Event::<Ipld>::decode_with(b, limits)
            && !e.parents().is_empty()
        {
            candidates.push((e.height(), b.clone(), e.parents().to_vec()));
        }
    }
    // A valid event's parents all have lower heights: one pass by height.
    candidates.sort_by_key(|(h, b, _)| (*h, *b.cid()));
    let mut accepted = HashMap::from([(genesis, 0u64)]);
    for (height, block, parents) in candidates {
        let heights: Option<Vec<u64>> = parents.iter().map(|p| accepted.get(p).copied()).collect();
        if let Some(hs) = heights
            && hs.iter().max().map(|m| m + 1) == Some(height)
        {
            accepted.insert(*block.cid(), height);
        }
    }
    accepted
}

/// The DAG, its heads and order, the store's blocks, heads and log, and a
/// replica reopened from the store all describe the same set of events.
fn check_replica_consistent(replica: &MemReplica, store: &Arc<MemoryBlockstore>) {
    let order: Vec<Cid> = replica.order().collect();
    assert_eq!(order.len(), replica.len());
    let mut set = BlockSet::new();
    for cid in &order {
        let block =
            block_on(replica.get(cid)).expect("store").unwrap_or_else(|| panic!("{cid}: in the DAG, not stored"));
        assert_eq!(block.cid(), cid);
        block.verify().expect("stored blocks match their CIDs");
        Event::<Ipld>::decode_with(&block, &replica.config().limits).expect("stored events decode");
        assert_eq!(set.insert(block), Ok(true), "{cid}: twice in the order");
    }
    assert_eq!(replica.heads(), merkle_clock::heads(&set), "heads differ from heads(accepted set)");
    assert_eq!(order, merkle_clock::order(&set), "order differs from order(accepted set)");
    let stream = *replica.stream_id();
    let mut stored_heads = block_on(store.heads(&stream)).expect("store").expect("stream exists");
    stored_heads.sort_unstable();
    assert_eq!(stored_heads, replica.heads(), "stored heads differ");
    let log = block_on(store.read_log(&stream, 0, usize::MAX)).expect("store");
    assert_eq!(log.len(), order.len(), "the log holds each event once");
    let mut earlier = HashSet::new();
    for cid in &log {
        let block = set.get(cid).unwrap_or_else(|| panic!("{cid}: in the log, not in the DAG"));
        let event = Event::<Ipld>::decode_with(block, &replica.config().limits).expect("decodes");
        assert!(event.parents().iter().all(|p| earlier.contains(p)), "{cid}: logged before a parent");
        earlier.insert(*cid);
    }
    let reopened = block_on(MemReplica::open(store.clone(), &stream, *replica.config())).expect("reopen");
    assert_eq!(reopened.heads(), replica.heads(), "reopened heads differ");
    assert!(reopened.order().eq(order.iter().copied()), "reopened order differs");
}

// ---------------------------------------------------------------------------
// merge
// ---------------------------------------------------------------------------

/// One step of the `merge` scenario. Indices are taken modulo what exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOp {
    /// Replica appends an event; it is broadcast to every other replica's inbox.
    Append { replica: usize, payload: u64 },
    /// Replica ingests the first `count` (1..=8) blocks of its inbox in one batch.
    Deliver { replica: usize, count: usize },
    /// A block in the replica's inbox is lost.
    Drop { replica: usize, index: usize },
    /// A block in the replica's inbox arrives twice.
    Duplicate { replica: usize, index: usize },
    /// Two blocks in the replica's inbox swap places.
    Reorder { replica: usize, from: usize, to: usize },
    /// Two replicas run the sync protocol until both are silent (their
    /// sync states persist across syncs, as a long-lived peering would).
    Sync { a: usize, b: usize },
    /// Two replicas exchange every block each holds, without the protocol.
    Exchange { a: usize, b: usize },
    /// A sync in which `a`'s message of round `round` (0..=3) meets `fault`.
    SyncFaulty { a: usize, b: usize, round: usize, fault: Fault },
}

/// What happens to one sync message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Lost; the transport tells its sender's driver (`Sessions::lost`).
    Drop,
    /// Arrives twice.
    Duplicate,
    /// Arrives after the sender's next message.
    Late,
}

impl Fault {
    fn word(self) -> &'static str {
        match self {
            Fault::Drop => "sync_drop",
            Fault::Duplicate => "sync_dup",
            Fault::Late => "sync_late",
        }
    }
}

/// A `merge` scenario: replicas (2..=5), their parent limit, and the steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeScript {
    /// Number of replicas, 2 to 5.
    pub replicas: usize,
    /// `Limits::max_parents` for every replica (small values leave heads unfolded).
    pub max_parents: usize,
    /// `SyncLimits::max_blocks` for every sync (0: the default); small values
    /// make a sync span many messages.
    pub sync_max_blocks: usize,
    /// The steps.
    pub ops: Vec<MergeOp>,
}

impl fmt::Display for MergeScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "replicas {}", self.replicas)?;
        writeln!(f, "max_parents {}", self.max_parents)?;
        if self.sync_max_blocks != 0 {
            writeln!(f, "sync_max_blocks {}", self.sync_max_blocks)?;
        }
        for op in &self.ops {
            match op {
                MergeOp::Append { replica, payload } => writeln!(f, "append {replica} {payload}")?,
                MergeOp::Deliver { replica, count } => writeln!(f, "deliver {replica} {count}")?,
                MergeOp::Drop { replica, index } => writeln!(f, "drop {replica} {index}")?,
                MergeOp::Duplicate { replica, index } => writeln!(f, "duplicate {replica} {index}")?,
                MergeOp::Reorder { replica, from, to } => writeln!(f, "reorder {replica} {from} {to}")?,
                MergeOp::Sync { a, b } => writeln!(f, "sync {a} {b}")?,
                MergeOp::Exchange { a, b } => writeln!(f, "exchange {a} {b}")?,
                MergeOp::SyncFaulty { a, b, round, fault } => writeln!(f, "{} {a} {b} {round}", fault.word())?,
            }
        }
        Ok(())
    }
}

impl MergeScript {
    /// Parses the text form written by `Display` (blank lines and `#` comments allowed).
    pub fn parse(text: &str) -> Result<MergeScript, String> {
        let mut script =
            MergeScript { replicas: 2, max_parents: Limits::DEFAULT.max_parents, sync_max_blocks: 0, ops: Vec::new() };
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let num = |i: usize| -> Result<u64, String> {
                words.get(i).and_then(|w| w.parse().ok()).ok_or(format!("line {}: bad number in {line:?}", n + 1))
            };
            let u = |i: usize| num(i).map(|v| v as usize);
            let op = match words[0] {
                "replicas" => {
                    script.replicas = u(1)?;
                    continue;
                }
                "max_parents" => {
                    script.max_parents = u(1)?;
                    continue;
                }
                "sync_max_blocks" => {
                    script.sync_max_blocks = u(1)?;
                    continue;
                }
                "append" => MergeOp::Append { replica: u(1)?, payload: num(2)? },
                "deliver" => MergeOp::Deliver { replica: u(1)?, count: u(2)? },
                "drop" => MergeOp::Drop { replica: u(1)?, index: u(2)? },
                "duplicate" => MergeOp::Duplicate { replica: u(1)?, index: u(2)? },
                "reorder" => MergeOp::Reorder { replica: u(1)?, from: u(2)?, to: u(3)? },
                "sync" => MergeOp::Sync { a: u(1)?, b: u(2)? },
                "exchange" => MergeOp::Exchange { a: u(1)?, b: u(2)? },
                "sync_drop" => MergeOp::SyncFaulty { a: u(1)?, b: u(2)?, round: u(3)?, fault: Fault::Drop },
                "sync_dup" => MergeOp::SyncFaulty { a: u(1)?, b: u(2)?, round: u(3)?, fault: Fault::Duplicate },
                "sync_late" => MergeOp::SyncFaulty { a: u(1)?, b: u(2)?, round: u(3)?, fault: Fault::Late },
                other => return Err(format!("line {}: unknown step {other:?}", n + 1)),
            };
            script.ops.push(op);
        }
        Ok(script)
    }
}

/// The blocks a replica holds, in its order.
fn held(replica: &MemReplica) -> Vec<Block> {
    replica.order().map(|cid| block_on(replica.get(&cid)).expect("store").expect("DAG events are stored")).collect()
}

/// Exchanges every block the two replicas hold (each side's blocks in its
/// order, so parents come first).
fn exchange_all(a: &mut MemReplica, b: &mut MemReplica) {
    let from_a = held(a);
    let from_b = held(b);
    block_on(a.ingest_many(from_b.clone())).expect("store");
    block_on(b.ingest_many(from_a.clone())).expect("store");
    assert!(from_b.iter().all(|x| a.contains(x.cid())), "sync: a lacks a block b had");
    assert!(from_a.iter().all(|x| b.contains(x.cid())), "sync: b lacks a block a had");
}

/// One side of a sync: a replica, its session driver, and its name there.
pub struct Side<'a> {
    /// The replica.
    pub replica: &'a mut MemReplica,
    /// Its sessions with every peer (persistent, as a long-lived peering's).
    pub sessions: &'a mut Sessions<usize>,
    /// Its name in the other side's driver.
    pub id: usize,
}

/// A session driver per replica, seeded so that runs are reproducible.
fn drivers(n: usize, limits: SyncLimits) -> Vec<Sessions<usize>> {
    (0..n).map(|i| Sessions::with_seed(Bloom { limits }, SessionConfig::default(), i as u64)).collect()
}

/// Runs the sync protocol between two replicas through their session
/// drivers (each message through its byte encoding, each reply sent back
/// the next round) until both are silent, which must happen within a bound
/// that grows with the history, and leave them with the same heads and order.
pub fn sync_pair(a: Side<'_>, b: Side<'_>) -> usize {
    sync_pair_with(a, b, None)
}

/// As [`sync_pair`], with `a`'s message of one round dropped (and the
/// transport telling `a`'s driver: [`Sessions::lost`]), duplicated, or
/// delivered late.
pub fn sync_pair_with(a: Side<'_>, b: Side<'_>, fault: Option<(usize, Fault)>) -> usize {
    // An hour passes each round (on one clock for every sync, as the drivers
    // persist): any pause the driver took after a lost message is over by
    // the next round, and nothing here waits on a timeout.
    static CLOCK: AtomicU64 = AtomicU64::new(0);
    let mut now = Duration::from_secs(CLOCK.fetch_add(3600, Ordering::Relaxed));
    let max_rounds = 64 + 4 * (a.replica.len() + b.replica.len());
    let (mut to_b, mut to_a): (VecDeque<Vec<u8>>, VecDeque<Vec<u8>>) = (VecDeque::new(), VecDeque::new());
    let mut late: Option<Vec<u8>> = None;
    let deliver = |side: &mut Side<'_>, from: usize, m: &[u8], replies: &mut VecDeque<Vec<u8>>, now: Duration| {
        let reply = block_on(side.sessions.receive(side.replica, &from, m, now)).expect("receive");
        replies.extend(reply.reply);
    };
    let (mut a, mut b) = (a, b);
    for round in 0..max_rounds {
        now = Duration::from_secs(CLOCK.fetch_add(3600, Ordering::Relaxed)).max(now);
        let from_a = match to_b.pop_front() {
            Some(m) => Some(m),
            None => block_on(a.sessions.speak(a.replica, &b.id, now)).expect("generate"),
        };
        let from_b = match to_a.pop_front() {
            Some(m) => Some(m),
            None => block_on(b.sessions.speak(b.replica, &a.id, now)).expect("generate"),
        };
        if from_a.is_none() && from_b.is_none() && late.is_none() {
            assert_eq!(a.replica.heads(), b.replica.heads(), "sync went silent before the heads agreed");
            assert!(a.replica.order().eq(b.replica.order()), "sync went silent before the orders agreed");
            return round;
        }
        if let Some(m) = from_a {
            match fault {
                Some((r, Fault::Drop)) if r == round => a.sessions.lost(&b.id, now),
                Some((r, Fault::Duplicate)) if r == round => {
                    deliver(&mut b, a.id, &m, &mut to_a, now);
                    deliver(&mut b, a.id, &m, &mut to_a, now);
                }
                Some((r, Fault::Late)) if r == round => late = Some(m),
                _ => {
                    deliver(&mut b, a.id, &m, &mut to_a, now);
                    if let Some(m) = late.take() {
                        deliver(&mut b, a.id, &m, &mut to_a, now);
                    }
                }
            }
        } else if let Some(m) = late.take() {
            deliver(&mut b, a.id, &m, &mut to_a, now);
        }
        if let Some(m) = from_b {
            deliver(&mut a, b.id, &m, &mut to_b, now);
        }
    }
    panic!("sync did not go silent within {max_rounds} rounds");
}

/// Replicas append, and blocks travel through lossy, duplicating,
/// reordering inboxes or by syncs; after a final exchange of every block
/// ever created, each replica holds exactly the reference model (the
/// [`BlockSet`] of all created blocks): the same blocks, heads and order,
/// with nothing left pending.
pub fn check_merge(script: &MergeScript) {
    let n = script.replicas.clamp(2, 5);
    let mut config = ReplicaConfig::default();
    config.limits.max_parents = script.max_parents.clamp(1, Limits::DEFAULT.max_parents);
    let genesis = Event::genesis(Ipld::String("merge".into())).encode().expect("genesis");
    let mut replicas: Vec<MemReplica> = (0..n)
        .map(|_| block_on(MemReplica::create(Arc::new(MemoryBlockstore::new()), &genesis, config)).expect("create"))
        .collect();
    let mut inboxes: Vec<Vec<Block>> = vec![Vec::new(); n];
    let mut sync_limits = SyncLimits::default();
    if script.sync_max_blocks != 0 {
        sync_limits.max_blocks = script.sync_max_blocks;
    }
    let mut drivers = drivers(n, sync_limits);
    let mut model = BlockSet::from_blocks([genesis.clone()]).expect("genesis");
    let mut created: Vec<Block> = Vec::new();
    for op in &script.ops {
        match *op {
            MergeOp::Append { replica, payload } => {
                let r = replica % n;
                let cid = block_on(replicas[r].append(&payload)).expect("append");
                let block = block_on(replicas[r].get(&cid)).expect("store").expect("appended");
                let parents = Event::<Ipld>::decode_with(&block, &config.limits).expect("decodes").parents().len();
                assert!(parents <= config.limits.max_parents, "append took too many heads");
                model.insert(block.clone()).expect("appended blocks are events");
                created.push(block.clone());
                for (i, inbox) in inboxes.iter_mut().enumerate() {
                    if i != r {
                        inbox.push(block.clone());
                    }
                }
            }
            MergeOp::Deliver { replica, count } => {
                let r = replica % n;
                let take = count.clamp(1, 8).min(inboxes[r].len());
                let batch: Vec<Block> = inboxes[r].drain(..take).collect();
                let report = block_on(replicas[r].ingest_many(batch)).expect("store");
                for o in &report.outcomes {
                    assert!(!matches!(o, Ingest::Rejected(_)), "a valid block was rejected: {o:?}");
                }
            }
            MergeOp::Drop { replica, index } => {
                let inbox = &mut inboxes[replica % n];
                if !inbox.is_empty() {
                    let i = index % inbox.len();
                    inbox.remove(i);
                }
            }
            MergeOp::Duplicate { replica, index } => {
                let inbox = &mut inboxes[replica % n];
                if !inbox.is_empty() && inbox.len() < 256 {
                    let i = index % inbox.len();
                    inbox.push(inbox[i].clone());
                }
            }
            MergeOp::Reorder { replica, from, to } => {
                let inbox = &mut inboxes[replica % n];
                if !inbox.is_empty() {
                    let len = inbox.len();
                    inbox.swap(from % len, to % len);
                }
            }
            MergeOp::Sync { a, b } | MergeOp::Exchange { a, b } | MergeOp::SyncFaulty { a, b, .. } => {
                let (a, b) = (a % n, b % n);
                if a != b {
                    let (lo, hi) = (a.min(b), a.max(b));
                    let (left, right) = replicas.split_at_mut(hi);
                    let (x, y) = (&mut left[lo], &mut right[0]);
                    let (dleft, dright) = drivers.split_at_mut(hi);
                    let lo_side = Side { replica: x, sessions: &mut dleft[lo], id: lo };
                    let hi_side = Side { replica: y, sessions: &mut dright[0], id: hi };
                    // The faulty side is `a`, whichever index it has.
                    let (x, y) = if a == lo { (lo_side, hi_side) } else { (hi_side, lo_side) };
                    match *op {
                        MergeOp::Exchange { .. } => exchange_all(x.replica, y.replica),
                        MergeOp::SyncFaulty { round, fault, .. } => {
                            sync_pair_with(x, y, Some((round % 4, fault)));
                        }
                        _ => {
                            sync_pair(x, y);
                        }
                    }
                }
            }
        }
    }
    // Everything a replica holds is a created block, and its heads are the
    // heads of what it holds.
    for r in &replicas {
        let mine = BlockSet::from_blocks(held(r)).expect("events");
        assert!(mine.cids().all(|c| model.contains(&c)), "a replica holds a block nobody created");
        assert_eq!(r.heads(), merkle_clock::heads(&mine));
    }
    // The final full exchange: every created block, newest first.
    let want_order = merkle_clock::order(&model);
    let want_heads = merkle_clock::heads(&model);
    for r in &mut replicas {
        let report = block_on(r.ingest_many(created.iter().rev().cloned().collect())).expect("store");
        assert!(report.outcomes.iter().all(|o| !matches!(o, Ingest::Rejected(_))), "a valid block was rejected");
        assert_eq!(
            r.pending(),
            merkle_clock::replica::PendingStats::default(),
            "nothing may stay pending once every block arrived"
        );
        let order: Vec<Cid> = r.order().collect();
        assert_eq!(order, want_order, "order differs from the model");
        assert_eq!(r.heads(), want_heads, "heads differ from the model");
        for cid in &order {
            let block = block_on(r.get(cid)).expect("store").expect("stored");
            assert_eq!(Some(&block), model.get(cid), "{cid}: stored bytes differ from the model");
        }
    }
}

// ---------------------------------------------------------------------------
// car
// ---------------------------------------------------------------------------

/// Arbitrary bytes as a CAR v1 file: the streaming reader and `read_car`
/// agree; every block it hands out verifies and is within the limit; a
/// successful read consumed every byte; a read CAR writes back and reads
/// back the same.
pub fn check_car(data: &[u8]) {
    let mut limits = CarLimits::default();
    limits.max_blocks = 10_000;
    let streamed = read_streaming(data, limits);
    let whole = read_car(data, limits);
    match (streamed, whole) {
        (Ok((roots, blocks)), Ok((roots2, blocks2))) => {
            assert_eq!((&roots, &blocks), (&roots2, &blocks2), "read_car and CarReader disagree");
            let written = write_car(Vec::new(), &roots, &blocks).expect("writing to a Vec");
            let (roots3, blocks3) = read_car(written.as_slice(), limits).expect("a written CAR reads back");
            assert_eq!((roots3, blocks3), (roots, blocks), "the round trip changed the CAR");
        }
        (Err(e), Err(e2)) => {
            assert_eq!(e.to_string(), e2.to_string(), "read_car and CarReader fail differently");
        }
        (a, b) => panic!("read_car and CarReader disagree: {:?} vs {:?}", a.map(|_| ()), b.map(|_| ())),
    }
}

fn read_streaming(data: &[u8], limits: CarLimits) -> Result<(Vec<Cid>, Vec<Block>), CarError> {
    let mut reader = CarReader::new(data, limits)?;
    let mut blocks = Vec::new();
    loop {
        match reader.next_block() {
            Ok(Some(block)) => {
                block.verify().expect("a block from the CAR reader verifies");
                assert!(block.len() <= limits.max_block_bytes);
                blocks.push(block);
            }
            Ok(None) => break,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                assert!(matches!(reader.next_block(), Ok(None)), "the reader goes on after an error");
                return Err(e);
            }
        }
    }
    assert_eq!(reader.bytes_read(), data.len() as u64, "a finished read consumed every byte");
    assert_eq!(reader.blocks_read(), blocks.len() as u64);
    assert!(matches!(reader.next_block(), Ok(None)));
    Ok((reader.roots().to_vec(), blocks))
}

// ---------------------------------------------------------------------------
// sync_message
// ---------------------------------------------------------------------------

/// A fixed diverged history: a shared trunk, then a branch only "mine" holds
/// and a branch only "theirs" holds.
pub struct SyncFixture {
    /// The genesis.
    pub genesis: Block,
    /// The trunk both hold, oldest first.
    pub shared: Vec<Block>,
    /// Events only the replica under test holds.
    pub mine: Vec<Block>,
    /// Events only the peer holds.
    pub theirs: Vec<Block>,
}

/// The fixture, built once per process.
pub fn sync_fixture() -> &'static SyncFixture {
    static FIXTURE: OnceLock<SyncFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let genesis = Event::genesis(Ipld::String("sync".into())).encode().expect("genesis");
        let grow = |from: &Block, height: u64, n: u64, tag: &str| -> Vec<Block> {
            let mut prev = *from.cid();
            (0..n)
                .map(|i| {
                    let b =
                        Event::new(height + i, vec![prev], Ipld::String(format!("{tag} {i}"))).encode().expect("event");
                    prev = *b.cid();
                    b
                })
                .collect()
        };
        let shared = grow(&genesis, 1, 8, "trunk");
        let mine = grow(&shared[7], 9, 5, "mine");
        let theirs = grow(&shared[3], 5, 6, "theirs");
        SyncFixture { genesis, shared, mine, theirs }
    })
}

/// A replica holding the genesis and `blocks`.
pub fn replica_holding(genesis: &Block, blocks: &[Block]) -> (MemReplica, Arc<MemoryBlockstore>) {
    let store = Arc::new(MemoryBlockstore::new());
    let mut r = block_on(MemReplica::create(store.clone(), genesis, ReplicaConfig::default())).expect("create");
    let report = block_on(r.ingest_many(blocks.to_vec())).expect("store");
    assert_eq!(report.accepted.len(), blocks.len());
    (r, store)
}

/// Arbitrary bytes as a sync message to a replica with history, in the
/// middle of a session: a typed error, or progress (the message round-trips
/// through its encoding, is taken in, taken again as a duplicate, and the
/// replica can still answer). Never a panic, never an allocation beyond
/// what the bytes hold (fuzzed with `-malloc_limit_mb`); the replica stays
/// consistent and keeps its history; and after a reset it still converges
/// with an honest peer.
pub fn check_sync_message(data: &[u8]) {
    let fx = sync_fixture();
    let mine: Vec<Block> = fx.shared.iter().chain(&fx.mine).cloned().collect();
    let (mut replica, store) = replica_holding(&fx.genesis, &mine);
    let mut state = SyncState::with_seed(7);
    block_on(generate_message(&replica, &mut state)).expect("generate").expect("a first message");
    let limits = SyncLimits::default();
    match Message::decode(data, &limits) {
        Err(e) => {
            assert!(!matches!(e, SyncError::Store(_)), "decoding touched no store: {e}");
            assert!(!e.to_string().is_empty());
        }
        Ok(msg) => {
            let again = Message::decode(&msg.encode(), &limits).expect("an encoded message decodes");
            assert_eq!(again, msg, "the message changed through its encoding");
            match block_on(receive_message(&mut replica, &mut state, msg.clone())) {
                Ok(received) => {
                    assert!(received.accepted_cids.iter().all(|c| replica.contains(c)));
                    assert_eq!(received.rejections.len(), received.rejected);
                    assert!(
                        received.accepted + received.duplicate + received.pending + received.rejected
                            <= msg.blocks.len()
                    );
                }
                Err(e) => assert!(matches!(e, SyncError::LimitExceeded { .. }), "{e}"),
            }
            let _ = block_on(receive_message(&mut replica, &mut state, msg));
            for _ in 0..3 {
                if block_on(generate_message(&replica, &mut state)).expect("generate").is_none() {
                    break;
                }
            }
        }
    }
    assert!(mine.iter().all(|b| replica.contains(b.cid())), "the replica lost history");
    check_replica_consistent(&replica, &store);
    // A hostile message cannot wedge the peering: after a restart of the
    // session from its durable part, an honest peer and this replica converge.
    let mut mine_driver = Sessions::with_seed(Bloom::default(), SessionConfig::default(), 7);
    mine_driver.connect_with(1, &state.encode(), Duration::ZERO);
    let mut peer_driver = Sessions::with_seed(Bloom::default(), SessionConfig::default(), 8);
    let theirs: Vec<Block> = fx.shared.iter().chain(&fx.theirs).cloned().collect();
    let (mut peer, _) = replica_holding(&fx.genesis, &theirs);
    sync_pair(
        Side { replica: &mut replica, sessions: &mut mine_driver, id: 0 },
        Side { replica: &mut peer, sessions: &mut peer_driver, id: 1 },
    );
    assert!(fx.theirs.iter().all(|b| replica.contains(b.cid())));
}

// ---------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------

/// The kept inputs of one target, with their bytes. Fails on a file without
/// a line in [`PINNED`].
#[cfg(test)]
fn kept(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_crashes").join(target);
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else { return out };
    for entry in entries {
        let path = entry.expect("readable directory").path();
        let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with(".md") {
            continue;
        }
        assert!(
            PINNED.iter().any(|(t, f, _)| *t == target && *f == name),
            "tests/fuzz_crashes/{target}/{name} has no line in PINNED naming the bug it pinned"
        );
        out.push((name, std::fs::read(&path).expect("readable file")));
    }
    out.sort();
    out
}

#[cfg(test)]
fn replay(target: &str, check: impl Fn(&[u8])) {
    for (name, bytes) in kept(target) {
        eprintln!("replaying {target}/{name}");
        check(&bytes);
    }
}

/// The checked-in seeds of a byte target pass its check too.
#[cfg(test)]
fn seeds(target: &str, check: impl Fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    for entry in entries {
        check(&std::fs::read(entry.expect("readable directory").path()).expect("readable file"));
    }
}

#[test]
fn every_pinned_file_exists() {
    for (target, file, bug) in PINNED {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_crashes").join(target).join(file);
        assert!(path.is_file(), "PINNED names {target}/{file} ({bug}), which is not there");
    }
}

#[test]
fn replay_decode_event() {
    replay("decode_event", check_decode_event);
    seeds("decode_event", check_decode_event);
}

#[test]
fn replay_ingest() {
    replay("ingest", |b| {
        check_ingest(b);
    });
    seeds("ingest", |b| {
        check_ingest(b);
    });
}

#[test]
fn replay_merge() {
    replay("merge", |bytes| {
        let text = std::str::from_utf8(bytes).expect("merge crashers are kept as text scripts");
        check_merge(&MergeScript::parse(text).expect("a valid script"));
    });
}

#[test]
fn replay_car() {
    replay("car", check_car);
    seeds("car", check_car);
}

#[test]
fn replay_sync_message() {
    replay("sync_message", check_sync_message);
    seeds("sync_message", check_sync_message);
}

#[test]
fn merge_script_text_round_trips() {
    let script = MergeScript {
        replicas: 3,
        max_parents: 2,
        sync_max_blocks: 3,
        ops: vec![
            MergeOp::Append { replica: 0, payload: 7 },
            MergeOp::Deliver { replica: 1, count: 2 },
            MergeOp::Drop { replica: 1, index: 0 },
            MergeOp::Duplicate { replica: 2, index: 1 },
            MergeOp::Reorder { replica: 2, from: 0, to: 1 },
            MergeOp::Sync { a: 0, b: 1 },
            MergeOp::Exchange { a: 2, b: 1 },
            MergeOp::SyncFaulty { a: 1, b: 0, round: 1, fault: Fault::Late },
        ],
    };
    assert_eq!(MergeScript::parse(&script.to_string()), Ok(script.clone()));
    check_merge(&script);
}

/// Small hand-written scenarios through the merge check, so the check itself
/// is exercised by `cargo test` and not only by the fuzzer.
#[test]
fn merge_scenarios() {
    let scenarios = [
        "replicas 2\nappend 0 1\nappend 1 2\ndeliver 0 8\ndeliver 1 8\n",
        "replicas 3\nmax_parents 1\nappend 0 1\nappend 1 1\nappend 2 3\nsync 0 1\nappend 0 4\nappend 2 5\n",
        "replicas 3\nappend 0 1\nappend 1 2\ndeliver 2 1\nsync 2 0\nappend 2 3\nexchange 0 1\nsync 1 2\nsync 0 2\n",
        "replicas 2\nsync_max_blocks 1\nappend 0 1\nappend 0 2\nappend 0 3\nappend 1 4\nsync_drop 0 1 0\nappend 1 5\n\
         sync_dup 1 0 1\nappend 0 6\nappend 1 7\nsync_late 0 1 1\nappend 0 8\nsync_drop 1 0 2\n",
        "replicas 5\nappend 0 1\nappend 0 2\nappend 0 3\nreorder 1 0 2\ndrop 2 1\nduplicate 3 0\ndeliver 1 8\n\
         deliver 2 8\ndeliver 3 8\nappend 1 9\nsync 1 4\nappend 4 9\n",
    ];
    for s in scenarios {
        check_merge(&MergeScript::parse(s).expect("valid"));
    }
}

/// Deterministic bytes (SplitMix64), for fixed programs and seeds.
#[cfg(test)]
fn pseudo_random(mut seed: u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

/// A few fixed inputs through the byte checks.
#[test]
fn byte_checks_on_fixed_inputs() {
    let g = Event::genesis("x").encode().expect("genesis");
    let e = Event::new(1, vec![*g.cid()], 1u8).encode().expect("event");
    for data in [&[][..], &[0xa0], &[0xff; 40], g.bytes(), e.bytes()] {
        check_decode_event(data);
        check_ingest(data);
        check_car(data);
        check_sync_message(data);
    }
    // A program that makes events, delivers them out of order and mixes in
    // every kind of bad block reaches accepted and refused outcomes.
    let car = write_car(Vec::new(), &[*g.cid()], [&g, &e]).expect("write");
    check_car(&car);
    let runs: Vec<IngestStats> = (0..8).map(|seed| check_ingest(&pseudo_random(seed, 1500))).collect();
    assert!(runs.iter().map(|s| s.accepted).sum::<usize>() > 40, "{runs:?}");
    assert!(runs.iter().all(|s| s.refused > 0), "{runs:?}");
}

/// Writes the seed corpora under `fuzz/corpus/` (run by hand:
/// `cargo test --test fuzz_regressions -- --ignored write_seed_corpora`).
/// Seeds are small valid inputs the fuzzer mutates from.
#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn write_seed_corpora() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(name), bytes).expect("write");
    };
    let mut seed = 0x5eed_u64;
    let mut random = |n: usize| {
        seed += 1;
        pseudo_random(seed, n)
    };
    let fx = sync_fixture();
    let rich = Ipld::Map(
        [
            ("bytes".to_string(), Ipld::Bytes(vec![0, 1, 2])),
            ("float".to_string(), Ipld::Float(1.5)),
            ("link".to_string(), Ipld::Link(*fx.genesis.cid())),
            ("list".to_string(), Ipld::List(vec![Ipld::Integer(-300), Ipld::Bool(true), Ipld::Null])),
            ("text".to_string(), Ipld::String("héllo".into())),
        ]
        .into(),
    );
    let merge_event = Event::new(9, vec![*fx.mine[4].cid(), *fx.theirs[5].cid()], rich).encode().expect("event");
    write("decode_event", "genesis", fx.genesis.bytes());
    write("decode_event", "chain-event", fx.shared[0].bytes());
    write("decode_event", "two-parents-rich-payload", merge_event.bytes());
    write("decode_event", "empty-map", &[0xa0]);

    write("ingest", "small-caps", &[0x05, 0, 0, 0, 0, 0, 1, 0, 0, 1, 9, 3, 9, 8, 2, 3, 0, 0, 0, 1, 6, 0, 0, 1, 7]);
    write("ingest", "random-a", &random(256));
    write("ingest", "random-b", &random(512));

    for (i, n) in [48, 96, 160, 256].into_iter().enumerate() {
        write("merge", &format!("random-{i}"), &random(n));
    }

    let blocks: Vec<Block> = std::iter::once(fx.genesis.clone()).chain(fx.shared.iter().cloned()).collect();
    let car = write_car(Vec::new(), &[*fx.shared[7].cid()], &blocks).expect("car");
    write("car", "trunk", &car);
    write("car", "no-roots-no-blocks", &write_car(Vec::new(), &[], Vec::<Block>::new()).expect("car"));
    write("car", "one-block", &write_car(Vec::new(), &[*fx.genesis.cid()], [&fx.genesis]).expect("car"));

    // What an honest peer says to the replica under test, step by step.
    let mine: Vec<Block> = fx.shared.iter().chain(&fx.mine).cloned().collect();
    let theirs: Vec<Block> = fx.shared.iter().chain(&fx.theirs).cloned().collect();
    let (mut a, _) = replica_holding(&fx.genesis, &mine);
    let (mut b, _) = replica_holding(&fx.genesis, &theirs);
    let (mut sa, mut sb) = (SyncState::with_seed(7), SyncState::with_seed(8));
    for step in 0..3 {
        let from_a = block_on(generate_message(&a, &mut sa)).expect("generate");
        let from_b = block_on(generate_message(&b, &mut sb)).expect("generate");
        if let Some(m) = from_b {
            write("sync_message", &format!("peer-step-{step}"), &m.encode());
            block_on(receive_message(&mut a, &mut sa, m)).expect("receive");
        }
        if let Some(m) = from_a {
            block_on(receive_message(&mut b, &mut sb, m)).expect("receive");
        }
    }
    write("sync_message", "empty-message", &Message::default().encode());
}
