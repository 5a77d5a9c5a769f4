//! Hostile inputs: what a peer can send, and what each gets. Every row of the
//! bad-input table in `SECURITY.md` names a test here (or in the file that
//! owns that layer). Each test asserts the typed error, that nothing panics,
//! and that the replica is unchanged or stays within its caps.

use std::sync::Arc;

use futures::executor::block_on;
use merkle_clock::replica::{OpenError, RejectReason, Rejection, Replica, ReplicaConfig};
use merkle_clock::{
    Block, BlockError, BlockSet, Cid, DecodeError, Event, Ingest, InsertError, Ipld, Limits, MemoryBlockstore, cid_of,
};
use multihash::Multihash;

type MemReplica = Replica<MemoryBlockstore>;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn genesis() -> Block {
    Event::genesis("hostile").encode().expect("genesis")
}

fn replica_with(config: ReplicaConfig) -> (MemReplica, Block) {
    let g = genesis();
    let r = block_on(MemReplica::create(Arc::new(MemoryBlockstore::new()), &g, config)).expect("create");
    (r, g)
}

fn replica() -> (MemReplica, Block) {
    replica_with(ReplicaConfig::default())
}

fn ingest(r: &mut MemReplica, b: Block) -> Ingest {
    block_on(r.ingest(b)).expect("the memory store does not fail")
}

fn rejection(outcome: Ingest) -> Rejection {
    match outcome {
        Ingest::Rejected(r) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn decode_rejection(outcome: Ingest) -> DecodeError {
    match rejection(outcome) {
        Rejection::Decode(e) => e,
        other => panic!("expected a decode rejection, got {other:?}"),
    }
}

/// An event CID nobody holds.
fn phantom(seed: u64) -> Cid {
    cid_of(&seed.to_be_bytes())
}

/// Minimal CBOR heads, for blocks the encoder refuses to write.
fn head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    match arg {
        0..=23 => out.push(m | arg as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, arg as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

fn text(out: &mut Vec<u8>, s: &str) {
    head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn link(out: &mut Vec<u8>, cid: &Cid) {
    let bytes = cid.to_bytes();
    head(out, 6, 42);
    head(out, 2, bytes.len() as u64 + 1);
    out.push(0);
    out.extend_from_slice(&bytes);
}

/// `{height, parents, payload}` with the parents exactly as given (any
/// order, repeats allowed) and the payload's raw bytes.
fn envelope(height: u64, parents: &[Cid], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    head(&mut out, 5, 3);
    text(&mut out, "height");
    head(&mut out, 0, height);
    text(&mut out, "parents");
    head(&mut out, 4, parents.len() as u64);
    for p in parents {
        link(&mut out, p);
    }
    text(&mut out, "payload");
    out.extend_from_slice(payload);
    out
}

const NULL: &[u8] = &[0xf6];

// ---------------------------------------------------------------------------
// Corrupted bytes, hash mismatch, unsupported CIDs
// ---------------------------------------------------------------------------

/// Every truncation of a valid event is a typed decode error; every single
/// byte flipped is either a typed error or (when the flip lands in the
/// payload and still spells a canonical value) a different, valid event.
#[test]
fn corrupted_bytes_are_rejected_with_typed_errors() {
    let (mut r, g) = replica();
    let payload =
        Ipld::Map([("k".to_string(), Ipld::List(vec![Ipld::Integer(-7), Ipld::Bytes(vec![1, 2, 3])]))].into());
    let good = Event::new(1, vec![*g.cid()], payload).encode().expect("event");
    let bytes = good.bytes().to_vec();
    for cut in 0..bytes.len() {
        let e = decode_rejection(ingest(&mut r, Block::from_bytes(bytes[..cut].to_vec())));
        assert!(
            matches!(e, DecodeError::Malformed { .. } | DecodeError::MissingKey { .. } | DecodeError::NotAMap { .. }),
            "truncated at {cut}: {e}"
        );
    }
    let mut rejected = 0;
    for at in 0..bytes.len() {
        for mask in [0x01u8, 0x20, 0x80, 0xff] {
            let mut bad = bytes.clone();
            bad[at] ^= mask;
            let block = Block::from_bytes(bad.clone());
            match ingest(&mut r, block.clone()) {
                Ingest::Rejected(e) => {
                    assert!(!e.to_string().is_empty());
                    rejected += 1;
                }
                Ingest::Accepted | Ingest::Pending { .. } | Ingest::Duplicate => {
                    let again = Event::<Ipld>::decode(&block).expect("accepted bytes decode").encode().expect("encode");
                    assert_eq!(again.bytes().as_ref(), bad.as_slice(), "accepted bytes are canonical");
                }
            }
        }
    }
    assert!(rejected >= bytes.len(), "most flips break the event ({rejected} rejected)");
    assert!(!r.contains(good.cid()));
    assert_eq!(r.metrics().rejected.values().sum::<u64>() as usize, bytes.len() + rejected);
}

fn cid_with(codec: u64, hash_code: u64, digest: &[u8]) -> Cid {
    Cid::new_v1(codec, Multihash::<64>::wrap(hash_code, digest).expect("digest fits"))
}

/// A block under a CID of another codec, hash function, digest size or CID
/// version (one that skipped `Block::new`, which refuses it: see
/// `decode_errors.rs`), or naming such a parent, is refused by the replica
/// and changes nothing.
#[test]
fn replica_refuses_unsupported_cids() {
    let (mut r, g) = replica();
    let bytes = Event::new(1, vec![*g.cid()], 1u8).encode().expect("event").bytes().clone();
    let digest = *blake3::hash(&bytes).as_bytes();
    let raw = cid_with(0x55, 0x1e, &digest);
    let sha = cid_with(0x71, 0x12, &digest);
    let short = cid_with(0x71, 0x1e, &digest[..16]);
    let v0 = Cid::new_v0(Multihash::<64>::wrap(0x12, &digest).expect("fits")).expect("v0");
    for cid in [raw, sha, short, v0] {
        let e = decode_rejection(ingest(&mut r, Block::new_unchecked(cid, bytes.clone())));
        assert!(
            matches!(
                e,
                DecodeError::Block(
                    BlockError::UnsupportedCodec { .. }
                        | BlockError::UnsupportedHash { .. }
                        | BlockError::UnsupportedVersion { .. }
                )
            ),
            "{e}"
        );
    }
    for parent in [raw, sha, short] {
        let block = Block::from_bytes(envelope(1, &[parent], NULL));
        let e = decode_rejection(ingest(&mut r, block));
        assert!(matches!(e, DecodeError::UnsupportedParent { parent: p, .. } if p == parent), "{e}");
    }
    assert_eq!(r.len(), 1);
    assert_eq!(r.pending(), merkle_clock::replica::PendingStats::default());
    assert_eq!(r.metrics().rejected.get(&RejectReason::Block), Some(&4));
}

// ---------------------------------------------------------------------------
// The DAG rules
// ---------------------------------------------------------------------------

/// Another stream's genesis is refused, and events built on it never join:
/// they wait (bounded by the pending caps) for a parent that cannot come.
#[test]
fn foreign_genesis_is_rejected_and_its_descendants_never_join() {
    let (mut r, g) = replica();
    let foreign = Event::genesis("someone else's stream").encode().expect("genesis");
    let child = Event::new(1, vec![*foreign.cid()], "x").encode().expect("event");
    let grandchild = Event::new(2, vec![*child.cid()], "y").encode().expect("event");
    let mixed = Event::new(2, vec![*g.cid(), *child.cid()], "z").encode().expect("event");
    assert_eq!(
        rejection(ingest(&mut r, foreign.clone())),
        Rejection::Insert(InsertError::ForeignGenesis { cid: *foreign.cid(), genesis: *g.cid() })
    );
    let report = block_on(r.ingest_many(vec![grandchild.clone(), mixed.clone(), child.clone(), foreign.clone()]))
        .expect("store");
    assert!(matches!(report.outcomes[0], Ingest::Pending { .. }));
    assert!(matches!(report.outcomes[1], Ingest::Pending { .. }));
    assert!(matches!(report.outcomes[2], Ingest::Pending { .. }));
    assert!(matches!(report.outcomes[3], Ingest::Rejected(Rejection::Insert(InsertError::ForeignGenesis { .. }))));
    assert!(report.accepted.is_empty());
    assert_eq!(r.len(), 1);
    assert_eq!(r.heads(), vec![*g.cid()]);
    assert_eq!(r.missing(), vec![*foreign.cid()]);
    assert_eq!(r.metrics().rejected.get(&RejectReason::ForeignGenesis), Some(&2));
    // A non-genesis cannot start a stream.
    let err = block_on(MemReplica::create(Arc::new(MemoryBlockstore::new()), &child, ReplicaConfig::default()))
        .expect_err("not a genesis");
    assert!(matches!(err, OpenError::NotGenesis { .. }), "{err}");
}

/// A height other than 1 + the highest parent's is refused, whether the
/// event arrives after its parents or before them (then it is refused when
/// they come, and everything waiting on it with it).
#[test]
fn wrong_height_is_rejected() {
    let (mut r, g) = replica();
    for h in [2, 3, u64::MAX] {
        let e = Event::new(h, vec![*g.cid()], "too high").encode().expect("event");
        assert_eq!(
            rejection(ingest(&mut r, e.clone())),
            Rejection::Insert(InsertError::WrongHeight { cid: *e.cid(), expected: 1, found: h })
        );
    }
    let a = Event::new(1, vec![*g.cid()], "a").encode().expect("event");
    let b = Event::new(2, vec![*a.cid()], "b").encode().expect("event");
    let low = Event::new(1, vec![*a.cid(), *b.cid()], "too low").encode().expect("event");
    let on_low = Event::new(2, vec![*low.cid()], "child of a bad event").encode().expect("event");
    // Early: both wait for `a`; when it comes, `low` is refused and `on_low` with it.
    let report = block_on(r.ingest_many(vec![on_low.clone(), low.clone(), b.clone()])).expect("store");
    assert!(report.outcomes.iter().all(|o| matches!(o, Ingest::Pending { .. })));
    let report = block_on(r.ingest_many(vec![a.clone()])).expect("store");
    assert_eq!(report.accepted, vec![*a.cid(), *b.cid()]);
    assert!(!r.contains(low.cid()) && !r.contains(on_low.cid()));
    assert_eq!(r.pending(), merkle_clock::replica::PendingStats::default());
    let m = r.metrics();
    assert_eq!(m.rejected.get(&RejectReason::Height), Some(&4));
    assert_eq!(m.rejected.get(&RejectReason::AncestorRejected), Some(&1));
    // Late: refused on arrival.
    assert!(matches!(rejection(ingest(&mut r, low)), Rejection::Insert(InsertError::WrongHeight { .. })));
    // Height 0 with parents, and a height above 0 without, do not even decode.
    let zero = Block::from_bytes(envelope(0, &[*g.cid()], NULL));
    assert!(matches!(decode_rejection(ingest(&mut r, zero)), DecodeError::ParentsAtHeightZero { .. }));
    let orphan_height = Block::from_bytes(envelope(5, &[], NULL));
    assert!(matches!(decode_rejection(ingest(&mut r, orphan_height)), DecodeError::NoParents { height: 5, .. }));
    assert_eq!(r.heads(), vec![*b.cid()]);
}

/// Parents must be strictly ascending by CID bytes: any other order, or a
/// parent named twice, is a distinct typed error (the encoder cannot write
/// either: `Event::new` sorts and deduplicates).
#[test]
fn unsorted_or_duplicate_parents_are_rejected() {
    let (mut r, g) = replica();
    let a = Event::new(1, vec![*g.cid()], "a").encode().expect("event");
    let b = Event::new(1, vec![*g.cid()], "b").encode().expect("event");
    let (lo, hi) = if a.cid() < b.cid() { (*a.cid(), *b.cid()) } else { (*b.cid(), *a.cid()) };
    block_on(r.ingest_many(vec![a, b])).expect("store");
    let unsorted = Block::from_bytes(envelope(2, &[hi, lo], NULL));
    assert_eq!(
        decode_rejection(ingest(&mut r, unsorted.clone())),
        DecodeError::UnsortedParents { cid: *unsorted.cid(), index: 1 }
    );
    let twice = Block::from_bytes(envelope(2, &[lo, lo], NULL));
    assert_eq!(
        decode_rejection(ingest(&mut r, twice.clone())),
        DecodeError::DuplicateParent { cid: *twice.cid(), parent: lo }
    );
    let three = Block::from_bytes(envelope(2, &[lo, hi, lo], NULL));
    assert!(matches!(decode_rejection(ingest(&mut r, three)), DecodeError::UnsortedParents { index: 2, .. }));
    // The sorted form of the same event is fine.
    assert_eq!(ingest(&mut r, Block::from_bytes(envelope(2, &[lo, hi], NULL))), Ingest::Accepted);
    assert_eq!(Event::new(2, vec![hi, lo, hi], ()).parents(), &[lo, hi]);
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

/// A block over `max_block_bytes` (1 MiB by default) is refused by the
/// replica by its size, before it is parsed (the encoder will not write one:
/// `decode_errors.rs::oversize_block`).
#[test]
fn oversize_block_is_rejected() {
    let (mut r, g) = replica();
    let big = Ipld::Bytes(vec![7; 1 << 20]);
    let mut roomy = Limits::default();
    roomy.max_block_bytes = 4 << 20;
    let block = Event::new(1, vec![*g.cid()], big).encode_with(&roomy).expect("fits the roomy limit");
    let e = decode_rejection(ingest(&mut r, block.clone()));
    assert_eq!(e, DecodeError::Block(BlockError::TooLarge { cid: *block.cid(), size: block.len(), max: 1 << 20 }));
    // Garbage of that size is refused by size too, not by its (absent) structure.
    let junk = Block::from_bytes(vec![0xff; (1 << 20) + 1]);
    assert!(matches!(decode_rejection(ingest(&mut r, junk)), DecodeError::Block(BlockError::TooLarge { .. })));
    // A smaller configured limit holds the same way.
    let mut config = ReplicaConfig::default();
    config.limits.max_block_bytes = 1024;
    let (mut small, g2) = replica_with(config);
    let two_k = Event::new(1, vec![*g2.cid()], Ipld::Bytes(vec![1; 2048])).encode().expect("event");
    assert!(matches!(decode_rejection(ingest(&mut small, two_k)), DecodeError::Block(BlockError::TooLarge { .. })));
    assert_eq!(r.len(), 1);
    assert_eq!(small.len(), 1);
}

/// More than `max_parents` (1024 by default) parents is refused by the
/// replica from the list's length alone: a block claiming 2^32 or 2^64 - 1
/// parents costs nothing (with the limit raised too:
/// `decode_errors.rs::parent_count_beyond_the_input`).
#[test]
fn too_many_parents_are_rejected() {
    let (mut r, _) = replica();
    let parents: Vec<Cid> = (0..1025).map(phantom).collect();
    let mut roomy = Limits::default();
    roomy.max_parents = 4096;
    let block = Event::new(1, parents, ()).encode_with(&roomy).expect("fits the roomy limit");
    assert_eq!(
        decode_rejection(ingest(&mut r, block.clone())),
        DecodeError::TooManyParents { cid: *block.cid(), count: 1025, max: 1024 }
    );
    for claim in [1u64 << 32, u64::MAX] {
        let mut bytes = Vec::new();
        head(&mut bytes, 5, 3);
        text(&mut bytes, "height");
        head(&mut bytes, 0, 1);
        text(&mut bytes, "parents");
        head(&mut bytes, 4, claim);
        let block = Block::from_bytes(bytes);
        assert!(matches!(decode_rejection(ingest(&mut r, block)), DecodeError::TooManyParents { .. }));
    }
    assert_eq!(r.len(), 1);
}

/// A payload nested 100,000 deep (lists, maps, or both) sent to a replica is
/// refused at the depth limit (64 by default) by the iterative reader: no
/// recursion, no stack overflow (with the limit raised as far as it goes:
/// `decode_errors.rs::payload_nested_100_000_deep`).
#[test]
fn payload_nested_100000_deep_is_rejected() {
    const DEPTH: usize = 100_000;
    let (mut r, g) = replica();
    let lists: Vec<u8> = std::iter::repeat_n(0x81, DEPTH).chain([0x00]).collect();
    let maps: Vec<u8> = std::iter::repeat_n([0xa1, 0x61, 0x61], DEPTH).flatten().chain([0x00]).collect();
    let mixed: Vec<u8> = std::iter::repeat_n([0x81, 0xa1, 0x61, 0x61], DEPTH / 2).flatten().chain([0xf6]).collect();
    for payload in [&lists, &maps, &mixed] {
        let block = Block::from_bytes(envelope(1, &[*g.cid()], payload));
        assert_eq!(
            decode_rejection(ingest(&mut r, block.clone())),
            DecodeError::TooDeep { cid: *block.cid(), max: 64 }
        );
        assert_eq!(BlockSet::new().insert(block.clone()), Err(DecodeError::TooDeep { cid: *block.cid(), max: 64 }));
    }
    // Exactly at the limit is fine.
    let ok: Vec<u8> = std::iter::repeat_n(0x81, 64).chain([0x00]).collect();
    assert_eq!(ingest(&mut r, Block::from_bytes(envelope(1, &[*g.cid()], &ok))), Ingest::Accepted);
    let over: Vec<u8> = std::iter::repeat_n(0x81, 65).chain([0x00]).collect();
    assert!(matches!(
        decode_rejection(ingest(&mut r, Block::from_bytes(envelope(1, &[*g.cid()], &over)))),
        DecodeError::TooDeep { .. }
    ));
}

/// Lengths inside a block that claim more than the block holds (a 2^63-byte
/// string, a 2^40-entry map) are refused before anything is allocated.
#[test]
fn huge_length_claims_inside_a_block_cost_nothing() {
    let (mut r, g) = replica();
    for (major, claim) in [(2u8, u64::MAX >> 1), (3, 1 << 40), (4, 1 << 40), (5, u64::MAX)] {
        let mut payload = Vec::new();
        head(&mut payload, major, claim);
        let block = Block::from_bytes(envelope(1, &[*g.cid()], &payload));
        let e = decode_rejection(ingest(&mut r, block));
        assert!(matches!(e, DecodeError::Malformed { reason: "length exceeds the input", .. }), "{e}");
    }
    let mut top = Vec::new();
    head(&mut top, 5, u64::MAX);
    assert!(matches!(decode_rejection(ingest(&mut r, Block::from_bytes(top))), DecodeError::Malformed { .. }));
}

// ---------------------------------------------------------------------------
// The pending buffer
// ---------------------------------------------------------------------------

fn assert_within_caps(r: &MemReplica) {
    let merkle_clock::replica::PendingStats { events, bytes } = r.pending();
    assert!(events <= r.config().max_pending_events, "{events} pending events over the cap");
    assert!(bytes <= r.config().max_pending_bytes, "{bytes} pending bytes over the cap");
}

/// 20,000 orphans (events whose parents nobody has) in batches, then 2,000
/// orphans of 4 KiB each in one batch: the pending buffer never holds more
/// than its caps, the oldest are evicted first, `missing()` stays bounded
/// with it, and real events still get in.
#[test]
fn orphan_flood_keeps_the_pending_buffer_within_its_caps() {
    let mut config = ReplicaConfig::default();
    config.max_pending_events = 100;
    // Room for 100 small orphans with their bookkeeping (about 1 KiB each),
    // not for 100 of 4 KiB.
    config.max_pending_bytes = 256 * 1024;
    let (mut r, g) = replica_with(config);
    let orphans: Vec<Block> =
        (0..20_000u64).map(|i| Event::new(7, vec![phantom(i)], i).encode().expect("event")).collect();
    for batch in orphans.chunks(500) {
        let report = block_on(r.ingest_many(batch.to_vec())).expect("store");
        assert!(report.accepted.is_empty());
        assert!(report.outcomes.iter().all(|o| matches!(o, Ingest::Pending { .. })));
        assert_within_caps(&r);
        assert!(r.missing().len() <= 100);
    }
    assert_eq!(r.pending().events, 100);
    assert_eq!(r.metrics().evicted, 19_900);
    // The newest stay: the last orphan's parent is wanted, the first's is not.
    let missing = r.missing();
    assert!(missing.contains(&phantom(19_999)) && !missing.contains(&phantom(0)));
    // Big orphans: the byte cap holds within one batch.
    let big: Vec<Block> = (0..2_000u64)
        .map(|i| Event::new(3, vec![phantom(1_000_000 + i)], Ipld::Bytes(vec![i as u8; 4096])).encode().expect("event"))
        .collect();
    block_on(r.ingest_many(big)).expect("store");
    assert_within_caps(&r);
    assert!(r.pending().bytes > 32 * 1024, "the byte cap, not the count, is what bound this");
    // The stream still works.
    let a = Event::new(1, vec![*g.cid()], "real").encode().expect("event");
    assert_eq!(ingest(&mut r, a.clone()), Ingest::Accepted);
    assert_eq!(r.heads(), vec![*a.cid()]);
}

/// Builds a chain of `n` events on the genesis, oldest first.
fn chain(g: &Block, n: u64) -> Vec<Block> {
    let mut out = Vec::with_capacity(n as usize);
    let mut prev = *g.cid();
    for h in 1..=n {
        let b = Event::new(h, vec![prev], h).encode().expect("event");
        prev = *b.cid();
        out.push(b);
    }
    out
}

/// A 1,000,000-event chain delivered newest-first, in batches of 10,000, to
/// a replica whose pending buffer holds 1,000 events: the buffer never
/// exceeds its caps, nothing recurses, and when the oldest event arrives it
/// releases what is still buffered in one iterative pass. Delivered again
/// oldest-first, the whole chain is accepted.
///
/// A debug build runs it on 100,000 events (about 4 s; a million took 31 s);
/// CI runs the full size in release:
/// `cargo test --release -p merkle-clock --test hostile million_event`.
#[test]
fn million_event_chain_newest_first_stays_bounded() {
    const N: u64 = if cfg!(debug_assertions) { 100_000 } else { 1_000_000 };
    const CAP: usize = 1_000;
    let mut config = ReplicaConfig::default();
    config.max_pending_events = CAP;
    config.max_pending_bytes = 256 * 1024;
    let (mut r, g) = replica_with(config);
    let blocks = chain(&g, N);
    for batch in blocks.rchunks(10_000) {
        let newest_first: Vec<Block> = batch.iter().rev().cloned().collect();
        block_on(r.ingest_many(newest_first)).expect("store");
        assert_within_caps(&r);
    }
    // The last batch ended with event 1, which released what was still pending.
    let released = r.len() - 1;
    assert!((1..=CAP + 1).contains(&released), "{released} released");
    assert_eq!(r.pending(), merkle_clock::replica::PendingStats::default());
    assert_eq!(r.metrics().evicted as usize + released, N as usize);
    for batch in blocks.chunks(10_000) {
        block_on(r.ingest_many(batch.to_vec())).expect("store");
        assert_within_caps(&r);
    }
    assert_eq!(r.len() as u64, N + 1);
    assert_eq!(r.heads(), vec![*blocks.last().expect("non-empty").cid()]);
    assert_eq!(r.pending(), merkle_clock::replica::PendingStats::default());
}

/// 100,000 events waiting in one chain are released by their root in one
/// ingest call: the release is a loop, not a recursion.
#[test]
fn deep_pending_chain_releases_without_recursion() {
    const N: u64 = 100_000;
    // The byte cap counts each entry's bookkeeping (about 1 KiB): make room
    // for the whole chain, so that the count cap is the one in play.
    let mut config = ReplicaConfig::default();
    config.max_pending_bytes = 256 << 20;
    let (mut r, g) = replica_with(config);
    let blocks = chain(&g, N);
    let newest_first: Vec<Block> = blocks[1..].iter().rev().cloned().collect();
    block_on(r.ingest_many(newest_first)).expect("store");
    assert_eq!(r.pending().events, N as usize - 1);
    let report = block_on(r.ingest_many(vec![blocks[0].clone()])).expect("store");
    assert_eq!(report.accepted.len() as u64, N);
    assert_eq!(r.pending(), merkle_clock::replica::PendingStats::default());
    assert_eq!(r.heads(), vec![*blocks.last().expect("non-empty").cid()]);
}
