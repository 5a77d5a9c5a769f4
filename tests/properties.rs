//! Named quickcheck properties of the core: merge laws, heads, the total
//! order, delivery-order independence, the codec round trip, CIDs, robustness
//! of strict decoding, agreement of the strict reader with
//! `serde_ipld_dagcbor`, and the DAG index against brute-force closures.
//!
//! Every law is its own `#[test]` whose name starts `prop_`, so
//! `cargo test prop_` runs exactly these.

use std::collections::{BTreeMap, BTreeSet};

use ipld_core::cid::Cid;
use ipld_core::ipld::Ipld;
// SplitMix64, seeded: every generated structure is a function of its seed.
use merkle_clock::sim::SimRng as Rng;
use merkle_clock::{Block, BlockSet, ClockOrder, Dag, Event, InsertError, cid_of, heads, merge, order};
use multihash::Multihash;
use quickcheck::{Arbitrary, Gen, QuickCheck};
use serde::Serialize;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// Modest sizes: the whole file runs in a few seconds in debug.
fn qc(tests: u64) -> QuickCheck {
    QuickCheck::new().tests(tests).max_tests(tests * 10).rng(Gen::new(24))
}

// ---------------------------------------------------------------------------
// Random DAGs
// ---------------------------------------------------------------------------

/// A random stream: a genesis name and one seed per further event. Each event
/// takes a random non-empty set of earlier events as parents (mostly recent
/// ones, sometimes any), so DAGs have forks, merges and long edges. Shrinking
/// drops or simplifies ops and the result is still a valid DAG.
#[derive(Clone, Debug)]
struct DagSpec {
    stream: u8,
    ops: Vec<u64>,
}

impl Arbitrary for DagSpec {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = usize::arbitrary(g) % 24;
        DagSpec { stream: u8::arbitrary(g) % 4, ops: (0..n).map(|_| u64::arbitrary(g)).collect() }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let stream = self.stream;
        Box::new(self.ops.shrink().map(move |ops| DagSpec { stream, ops }))
    }
}

/// A built stream: event `i` is `blocks[i]` (0 is the genesis).
struct Built {
    blocks: Vec<Block>,
    parents: Vec<Vec<usize>>,
    heights: Vec<u64>,
}

impl Built {
    fn len(&self) -> usize {
        self.blocks.len()
    }

    fn cid(&self, i: usize) -> Cid {
        *self.blocks[i].cid()
    }

    fn genesis(&self) -> Cid {
        self.cid(0)
    }

    /// The history of `roots`: every root and all its ancestors (brute force).
    fn hist(&self, roots: &[usize]) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<usize> = roots.to_vec();
        while let Some(i) = stack.pop() {
            if seen.insert(i) {
                stack.extend(self.parents[i].iter().copied());
            }
        }
        seen
    }

    /// Brute-force heads of a set of event indices.
    fn heads_of(&self, set: &BTreeSet<usize>) -> Vec<Cid> {
        let referenced: BTreeSet<usize> = set.iter().flat_map(|&i| self.parents[i].iter().copied()).collect();
        sorted_cids(set.iter().filter(|i| !referenced.contains(i)).map(|&i| self.cid(i)))
    }

    fn set(&self, idx: impl IntoIterator<Item = usize>) -> BlockSet {
        BlockSet::from_blocks(idx.into_iter().map(|i| self.blocks[i].clone())).expect("built blocks are valid")
    }
}

fn build(spec: &DagSpec) -> Built {
    let genesis = Event::genesis(Ipld::String(format!("stream {}", spec.stream))).encode().unwrap();
    let mut b = Built { blocks: vec![genesis], parents: vec![vec![]], heights: vec![0] };
    for (i, &op) in spec.ops.iter().enumerate() {
        let mut rng = Rng::new(op);
        let n = b.len();
        let k = 1 + rng.index(n.min(3));
        let mut ps = BTreeSet::new();
        while ps.len() < k {
            let p = if rng.index(4) == 0 { rng.index(n) } else { n - 1 - rng.index(n.min(5)) };
            ps.insert(p);
        }
        let ps: Vec<usize> = ps.into_iter().collect();
        let height = 1 + ps.iter().map(|&p| b.heights[p]).max().unwrap();
        let payload = Ipld::List(vec![Ipld::Integer(i as i128), Ipld::Integer(i128::from(op as u8))]);
        let block = Event::new(height, ps.iter().map(|&p| b.cid(p)).collect(), payload).encode().unwrap();
        b.blocks.push(block);
        b.parents.push(ps);
        b.heights.push(height);
    }
    b
}

/// A random subset (each event with probability 1/2): not closed under parents.
fn any_subset(n: usize, seed: u64) -> BTreeSet<usize> {
    let mut rng = Rng::new(seed);
    (0..n).filter(|_| rng.next_u64() & 1 == 1).collect()
}

/// A random history: the closure of a few random events.
fn closed_subset(b: &Built, seed: u64) -> BTreeSet<usize> {
    let mut rng = Rng::new(seed);
    let k = rng.index(4);
    let tips: Vec<usize> = (0..k).map(|_| rng.index(b.len())).collect();
    let mut h = b.hist(&tips);
    h.insert(0);
    h
}

fn sorted_cids(it: impl IntoIterator<Item = Cid>) -> Vec<Cid> {
    let mut v: Vec<Cid> = it.into_iter().collect();
    v.sort_by_key(|c| c.to_bytes());
    v
}

/// The blocks of two streams, so that sets may mix streams (merge is plain set union).
fn pool(d1: &DagSpec, d2: &DagSpec) -> Vec<Block> {
    let mut all = build(d1).blocks;
    all.extend(build(d2).blocks);
    all
}

fn subset_of(pool: &[Block], seed: u64) -> BlockSet {
    BlockSet::from_blocks(any_subset(pool.len(), seed).into_iter().map(|i| pool[i].clone())).unwrap()
}

fn cid_set(s: &BlockSet) -> BTreeSet<Vec<u8>> {
    s.cids().map(|c| c.to_bytes()).collect()
}

/// Inserts events into a Dag in the order given, retrying the ones whose
/// parents have not arrived yet (a replica's pending buffer, in miniature).
fn deliver(genesis: Cid, blocks: &[Block]) -> Dag {
    let mut dag = Dag::new(genesis);
    let mut pending: Vec<(Cid, Event<Ipld>)> = blocks.iter().map(|b| (*b.cid(), Event::decode(b).unwrap())).collect();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|(cid, ev)| match dag.insert(cid, ev.height(), ev.parents()) {
            Ok(_) => false,
            Err(InsertError::MissingParents { cid: c, missing }) => {
                assert_eq!(c, *cid);
                assert!(!missing.is_empty());
                true
            }
            Err(e) => panic!("unexpected insert error {e}"),
        });
        assert!(pending.len() < before, "delivery made no progress: {} events stuck", pending.len());
    }
    dag
}

fn dag_order(dag: &Dag) -> Vec<Cid> {
    dag.order().map(|id| dag.cid(id)).collect()
}

/// Topological and sorted by `(height, CID bytes)`.
fn check_order(order: &[Cid], height_of: impl Fn(&Cid) -> u64, parents_of: impl Fn(&Cid) -> Vec<Cid>) {
    let pos: BTreeMap<Vec<u8>, usize> = order.iter().enumerate().map(|(i, c)| (c.to_bytes(), i)).collect();
    assert_eq!(pos.len(), order.len(), "order lists an event twice");
    for w in order.windows(2) {
        let ka = (height_of(&w[0]), w[0].to_bytes());
        let kb = (height_of(&w[1]), w[1].to_bytes());
        assert!(ka < kb, "order not strictly ascending by (height, CID bytes)");
    }
    for (i, c) in order.iter().enumerate() {
        for p in parents_of(c) {
            if let Some(&pi) = pos.get(&p.to_bytes()) {
                assert!(pi < i, "parent after child in the order");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Random IPLD values
// ---------------------------------------------------------------------------

/// An IPLD value of bounded depth covering every kind DAG-CBOR has.
#[derive(Clone, Debug)]
struct ArbIpld(Ipld);

const INT_EDGES: &[i128] = &[
    0,
    1,
    -1,
    23,
    24,
    -24,
    -25,
    255,
    256,
    -256,
    -257,
    65_535,
    65_536,
    -65_536,
    -65_537,
    4_294_967_295,
    4_294_967_296,
    -4_294_967_296,
    -4_294_967_297,
    i64::MAX as i128,
    i64::MIN as i128,
    u64::MAX as i128,
    -(u64::MAX as i128),
    -(u64::MAX as i128) - 1,
];

const FLOAT_EDGES: &[f64] = &[
    0.0,
    -0.0,
    1.0,
    -1.5,
    0.1,
    1e300,
    -1e-300,
    5e-324,
    f64::MIN_POSITIVE,
    f64::MAX,
    f64::MIN,
    65504.0,
    3.4028234663852886e38,
];

fn gen_cid(g: &mut Gen) -> Cid {
    let seed = Vec::<u8>::arbitrary(g);
    match u8::arbitrary(g) % 6 {
        // Event CIDs (v1, dag-cbor, blake3) are the common case.
        0..=2 => cid_of(&seed),
        3 => Cid::new_v1(0x55, Multihash::wrap(0x1e, blake3::hash(&seed).as_bytes()).unwrap()),
        4 => Cid::new_v1(0x70, Multihash::wrap(0x12, blake3::hash(&seed).as_bytes()).unwrap()),
        _ => Cid::new_v0(Multihash::wrap(0x12, blake3::hash(&seed).as_bytes()).unwrap()).unwrap(),
    }
}

fn gen_string(g: &mut Gen) -> String {
    match u8::arbitrary(g) % 4 {
        0 => String::new(),
        1 => ["a", "b", "height", "parents", "payload", "é", "😀", "aa", "ab"][usize::arbitrary(g) % 9].to_string(),
        _ => String::arbitrary(g),
    }
}

fn gen_ipld(g: &mut Gen, depth: usize) -> Ipld {
    let kinds = if depth == 0 { 8 } else { 10 };
    match u8::arbitrary(g) % kinds {
        0 => Ipld::Null,
        1 => Ipld::Bool(bool::arbitrary(g)),
        2 => Ipld::Integer(match u8::arbitrary(g) % 4 {
            0 => *g.choose(INT_EDGES).unwrap(),
            1 => i128::from(i64::arbitrary(g)),
            2 => i128::from(u64::arbitrary(g)),
            _ => i128::from(i8::arbitrary(g)),
        }),
        3 => {
            let f =
                if bool::arbitrary(g) { *g.choose(FLOAT_EDGES).unwrap() } else { f64::from_bits(u64::arbitrary(g)) };
            Ipld::Float(if f.is_finite() { f } else { 2.5 })
        }
        4 => Ipld::String(gen_string(g)),
        5 => Ipld::Bytes(Vec::<u8>::arbitrary(g)),
        6 | 7 => Ipld::Link(gen_cid(g)),
        8 => {
            let n = usize::arbitrary(g) % 5;
            Ipld::List((0..n).map(|_| gen_ipld(g, depth - 1)).collect())
        }
        _ => {
            let n = usize::arbitrary(g) % 5;
            Ipld::Map((0..n).map(|_| (gen_string(g), gen_ipld(g, depth - 1))).collect())
        }
    }
}

impl Arbitrary for ArbIpld {
    fn arbitrary(g: &mut Gen) -> Self {
        ArbIpld(gen_ipld(g, 4))
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let children: Vec<ArbIpld> = match &self.0 {
            Ipld::List(v) => {
                let mut out: Vec<ArbIpld> = v.iter().cloned().map(ArbIpld).collect();
                if !v.is_empty() {
                    out.push(ArbIpld(Ipld::List(v[1..].to_vec())));
                }
                out
            }
            Ipld::Map(m) => {
                let mut out: Vec<ArbIpld> = m.values().cloned().map(ArbIpld).collect();
                if let Some(k) = m.keys().next() {
                    let mut smaller = m.clone();
                    smaller.remove(k);
                    out.push(ArbIpld(Ipld::Map(smaller)));
                }
                out
            }
            Ipld::Null => vec![],
            _ => vec![ArbIpld(Ipld::Null)],
        };
        Box::new(children.into_iter())
    }
}

/// A random event with a random payload: height 0 and no parents, or a random
/// height above 0 with 1..5 random event CIDs as parents.
fn random_event(payload: Ipld, seed: u64) -> Event<Ipld> {
    let mut rng = Rng::new(seed);
    if rng.index(4) == 0 {
        return Event::genesis(payload);
    }
    let n = 1 + rng.index(5);
    let parents: Vec<Cid> = (0..n).map(|_| cid_of(&rng.next_u64().to_le_bytes())).collect();
    let height = match rng.index(3) {
        0 => 1 + rng.index(10) as u64,
        1 => u64::MAX,
        _ => 1 + (rng.next_u64() >> 1),
    };
    Event::new(height, parents, payload)
}

/// The event envelope as a serde struct: what any DAG-CBOR library would write.
#[derive(Serialize)]
struct Envelope<'a> {
    height: u64,
    parents: &'a [Cid],
    payload: &'a Ipld,
}

fn serde_bytes_of(ev: &Event<Ipld>) -> Vec<u8> {
    serde_ipld_dagcbor::to_vec(&Envelope { height: ev.height(), parents: ev.parents(), payload: ev.payload() }).unwrap()
}

fn ipld_of(ev: &Event<Ipld>) -> Ipld {
    let mut m = BTreeMap::new();
    m.insert("height".to_string(), Ipld::Integer(i128::from(ev.height())));
    m.insert("parents".to_string(), Ipld::List(ev.parents().iter().map(|c| Ipld::Link(*c)).collect()));
    m.insert("payload".to_string(), ev.payload().clone());
    Ipld::Map(m)
}

/// `{height: 0, parents: [], payload: <...>`: wrap any bytes as the payload of a genesis.
const GENESIS_PREFIX: &[u8] = &[
    0xa3, 0x66, b'h', b'e', b'i', b'g', b'h', b't', 0x00, 0x67, b'p', b'a', b'r', b'e', b'n', b't', b's', 0x80, 0x67,
    b'p', b'a', b'y', b'l', b'o', b'a', b'd',
];

/// Applies byte-level mutations (overwrite, bit flip, insert, delete, truncate).
fn mutate(mut bytes: Vec<u8>, muts: &[(u16, u8, u8)]) -> Vec<u8> {
    for &(at, kind, val) in muts {
        let len = bytes.len();
        let i = if len == 0 { 0 } else { at as usize % len };
        match kind % 6 {
            0 | 1 if len > 0 => bytes[i] = val,
            2 if len > 0 => bytes[i] ^= 1 << (val % 8),
            3 => bytes.insert(if len == 0 { 0 } else { at as usize % (len + 1) }, val),
            4 if len > 0 => {
                bytes.remove(i);
            }
            5 => bytes.truncate(i),
            _ => {}
        }
    }
    bytes
}

/// The strict decoder on any bytes: never panics; if it accepts, re-encoding
/// the decoded event gives the identical bytes (and serde_ipld_dagcbor agrees),
/// and the header-only path (`BlockSet::insert`) makes the same decision.
fn check_bytes(bytes: Vec<u8>) {
    let block = Block::from_bytes(bytes);
    let decoded = Event::<Ipld>::decode(&block);
    let header_ok = BlockSet::new().insert(block.clone()).is_ok();
    match decoded {
        Ok(ev) => {
            assert!(header_ok, "Event::decode accepted what BlockSet::insert rejected");
            let again = Event::new(ev.height(), ev.parents().to_vec(), ev.payload().clone()).encode().unwrap();
            assert_eq!(again, block, "accepted bytes do not re-encode identically");
            assert_eq!(serde_bytes_of(&ev), block.bytes().as_ref(), "serde struct re-encoding differs");
            assert_eq!(
                serde_ipld_dagcbor::to_vec(&ipld_of(&ev)).unwrap(),
                block.bytes().as_ref(),
                "Ipld re-encoding differs"
            );
        }
        Err(e) => {
            assert!(!header_ok, "BlockSet::insert accepted what Event::decode rejected: {e}");
            assert_eq!(e.cid(), block.cid(), "the error names another CID");
        }
    }
}

// ---------------------------------------------------------------------------
// Merge laws
// ---------------------------------------------------------------------------

#[test]
fn prop_merge_commutative() {
    fn p(d1: DagSpec, d2: DagSpec, s1: u64, s2: u64) -> bool {
        let pool = pool(&d1, &d2);
        let (a, b) = (subset_of(&pool, s1), subset_of(&pool, s2));
        let ab = merge(&a, &b);
        assert_eq!(ab, merge(&b, &a));
        let union: BTreeSet<Vec<u8>> = cid_set(&a).union(&cid_set(&b)).cloned().collect();
        assert_eq!(cid_set(&ab), union, "merge is not the set union");
        true
    }
    qc(60).quickcheck(p as fn(DagSpec, DagSpec, u64, u64) -> bool);
}

#[test]
fn prop_merge_associative() {
    fn p(d1: DagSpec, d2: DagSpec, s1: u64, s2: u64, s3: u64) -> bool {
        let pool = pool(&d1, &d2);
        let (a, b, c) = (subset_of(&pool, s1), subset_of(&pool, s2), subset_of(&pool, s3));
        merge(&merge(&a, &b), &c) == merge(&a, &merge(&b, &c))
    }
    qc(60).quickcheck(p as fn(DagSpec, DagSpec, u64, u64, u64) -> bool);
}

#[test]
fn prop_merge_idempotent() {
    fn p(d1: DagSpec, d2: DagSpec, s1: u64, s2: u64) -> bool {
        let pool = pool(&d1, &d2);
        let (a, b) = (subset_of(&pool, s1), subset_of(&pool, s2));
        let ab = merge(&a, &b);
        merge(&a, &a) == a && merge(&ab, &b) == ab && merge(&ab, &a) == ab && merge(&ab, &ab) == ab
    }
    qc(60).quickcheck(p as fn(DagSpec, DagSpec, u64, u64) -> bool);
}

#[test]
fn prop_merge_empty_identity() {
    fn p(d1: DagSpec, d2: DagSpec, s1: u64) -> bool {
        let pool = pool(&d1, &d2);
        let a = subset_of(&pool, s1);
        let empty = BlockSet::new();
        merge(&a, &empty) == a && merge(&empty, &a) == a && merge(&empty, &empty).is_empty()
    }
    qc(60).quickcheck(p as fn(DagSpec, DagSpec, u64) -> bool);
}

// ---------------------------------------------------------------------------
// Heads and order
// ---------------------------------------------------------------------------

#[test]
fn prop_heads_of_merge_equal_heads_of_union() {
    fn p(d: DagSpec, s1: u64, s2: u64) -> bool {
        let b = build(&d);
        // Two histories of one stream: their union is a history, so a Dag can hold it.
        let (ia, ib) = (closed_subset(&b, s1), closed_subset(&b, s2));
        let (a, bs) = (b.set(ia.iter().copied()), b.set(ib.iter().copied()));
        let merged = merge(&a, &bs);
        let union_idx: BTreeSet<usize> = ia.union(&ib).copied().collect();
        let union = BlockSet::from_blocks(a.blocks().chain(bs.blocks()).cloned()).unwrap();
        let h = heads(&merged);
        assert_eq!(h, heads(&union));
        assert_eq!(h, b.heads_of(&union_idx), "heads differ from the brute-force heads");
        let mut dag = Dag::new(b.genesis());
        for cid in order(&union) {
            let ev: Event<Ipld> = Event::decode(union.get(&cid).unwrap()).unwrap();
            dag.insert(&cid, ev.height(), ev.parents()).unwrap();
        }
        assert_eq!(dag.heads(), h, "a Dag fed the union has other heads");
        assert_eq!(dag.head_count(), h.len());
        // Open sets too (any subsets): heads of the merge are heads of the union.
        let (oa, ob) = (b.set(any_subset(b.len(), s1 ^ 1)), b.set(any_subset(b.len(), s2 ^ 1)));
        let ou = BlockSet::from_blocks(oa.blocks().chain(ob.blocks()).cloned()).unwrap();
        assert_eq!(heads(&merge(&oa, &ob)), heads(&ou));
        true
    }
    qc(60).quickcheck(p as fn(DagSpec, u64, u64) -> bool);
}

/// Seed 000's "stop the world" invariant: whatever order the same blocks
/// arrive in (duplicates included), every replica ends with the same heads
/// and the same total order, equal to the pure functions over the set.
#[test]
fn prop_any_delivery_order_same_heads_and_order() {
    fn p(d: DagSpec, seed1: u64, seed2: u64) -> bool {
        let b = build(&d);
        let set = b.set(0..b.len());
        let want_heads = heads(&set);
        let want_order = order(&set);
        for seed in [seed1, seed2] {
            let mut rng = Rng::new(seed);
            let mut blocks = b.blocks.clone();
            // Some blocks arrive twice.
            for _ in 0..rng.index(4) {
                let i = rng.index(blocks.len());
                blocks.push(blocks[i].clone());
            }
            rng.shuffle(&mut blocks);
            let dag = deliver(b.genesis(), &blocks);
            assert_eq!(dag.len(), b.len());
            assert_eq!(dag.heads(), want_heads);
            assert_eq!(dag_order(&dag), want_order);
        }
        true
    }
    qc(60).quickcheck(p as fn(DagSpec, u64, u64) -> bool);
}

#[test]
fn prop_order_is_topological() {
    fn p(d: DagSpec, seed: u64) -> bool {
        let b = build(&d);
        let idx: BTreeMap<Vec<u8>, usize> = (0..b.len()).map(|i| (b.cid(i).to_bytes(), i)).collect();
        let height_of = |c: &Cid| b.heights[idx[&c.to_bytes()]];
        let parents_of = |c: &Cid| b.parents[idx[&c.to_bytes()]].iter().map(|&p| b.cid(p)).collect::<Vec<_>>();
        // The pure order, on a whole stream and on an open subset.
        let whole = order(&b.set(0..b.len()));
        assert_eq!(whole.len(), b.len());
        check_order(&whole, height_of, parents_of);
        check_order(&order(&b.set(any_subset(b.len(), seed))), height_of, parents_of);
        // The Dag's incremental order, built in a random delivery order.
        let mut blocks = b.blocks.clone();
        Rng::new(seed).shuffle(&mut blocks);
        let dag = deliver(b.genesis(), &blocks);
        let dord = dag_order(&dag);
        check_order(&dord, height_of, parents_of);
        assert_eq!(dord, whole);
        // order_from and position agree with the full order.
        let mut rng = Rng::new(!seed);
        let k = rng.index(dord.len());
        let key = dag.key(dag.id(&dord[k]).unwrap());
        assert_eq!(dag.position(&key), k);
        let tail: Vec<Cid> = dag.order_from(&key).map(|id| dag.cid(id)).collect();
        assert_eq!(tail, dord[k..].to_vec());
        true
    }
    qc(60).quickcheck(p as fn(DagSpec, u64) -> bool);
}

// ---------------------------------------------------------------------------
// Codec
// ---------------------------------------------------------------------------

#[test]
fn prop_encode_decode_round_trip() {
    fn p(payload: ArbIpld, seed: u64) -> bool {
        let ev = random_event(payload.0, seed);
        let block = ev.encode().unwrap();
        block.verify().unwrap();
        let back: Event<Ipld> = Event::decode(&block).unwrap();
        assert_eq!(back, ev);
        assert_eq!(back.encode().unwrap(), block);
        // A typed payload round-trips too.
        let typed = Event::new(ev.height(), ev.parents().to_vec(), (seed, format!("{seed:x}"), seed.is_multiple_of(2)));
        let tb = typed.encode().unwrap();
        let tback: Event<(u64, String, bool)> = Event::decode(&tb).unwrap();
        tback == typed
    }
    qc(200).quickcheck(p as fn(ArbIpld, u64) -> bool);
}

#[test]
fn prop_cid_is_function_of_event() {
    fn p(payload: ArbIpld, other: ArbIpld, seed: u64) -> bool {
        let ev = random_event(payload.0.clone(), seed);
        let b1 = ev.encode().unwrap();
        let b2 = ev.clone().encode().unwrap();
        assert_eq!(b1, b2);
        assert_eq!(*b1.cid(), cid_of(b1.bytes()));
        // The parents' order and repetition do not matter: they are a set.
        let mut shuffled = ev.parents().to_vec();
        if let Some(&first) = shuffled.first() {
            shuffled.push(first);
        }
        Rng::new(seed ^ 7).shuffle(&mut shuffled);
        let b3 = Event::new(ev.height(), shuffled, payload.0.clone()).encode().unwrap();
        assert_eq!(b3, b1);
        // Another payload, height or parent set gives another CID.
        if other.0 != payload.0 {
            let b4 = Event::new(ev.height(), ev.parents().to_vec(), other.0).encode().unwrap();
            assert_ne!(b4.cid(), b1.cid());
        }
        if !ev.is_genesis() && ev.height() < u64::MAX {
            let b5 = Event::new(ev.height() + 1, ev.parents().to_vec(), payload.0.clone()).encode().unwrap();
            assert_ne!(b5.cid(), b1.cid());
            let mut more = ev.parents().to_vec();
            more.push(cid_of(b"another parent"));
            let b6 = Event::new(ev.height(), more, payload.0).encode().unwrap();
            assert_ne!(b6.cid(), b1.cid());
        }
        true
    }
    qc(150).quickcheck(p as fn(ArbIpld, ArbIpld, u64) -> bool);
}

#[test]
fn prop_decoding_arbitrary_bytes_never_panics() {
    fn p(raw: Vec<u8>, payload: ArbIpld, seed: u64, muts: Vec<(u16, u8, u8)>) -> bool {
        // Plain random bytes, and random bytes as the payload of a genesis envelope.
        check_bytes(raw.clone());
        let mut wrapped = GENESIS_PREFIX.to_vec();
        wrapped.extend_from_slice(&raw);
        check_bytes(wrapped);
        // Mutations of a valid event, applied one by one and all together.
        let valid = random_event(payload.0, seed).encode().unwrap().bytes().to_vec();
        check_bytes(valid.clone());
        for m in &muts {
            check_bytes(mutate(valid.clone(), std::slice::from_ref(m)));
        }
        check_bytes(mutate(valid, &muts));
        true
    }
    qc(300).quickcheck(p as fn(Vec<u8>, ArbIpld, u64, Vec<(u16, u8, u8)>) -> bool);
}

/// Random CBOR built from tokens rather than bytes: mostly well formed, with
/// every kind of near miss the canonical form forbids (wide heads, indefinite
/// lengths, short floats, unsorted or duplicate keys, other tags, undefined,
/// bad UTF-8, broken links), so the strict reader meets each rule often.
fn gen_cbor(rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
    fn head(rng: &mut Rng, out: &mut Vec<u8>, major: u8, arg: u64) {
        let m = major << 5;
        let minimal = if arg < 24 {
            0
        } else if arg <= 0xff {
            1
        } else if arg <= 0xffff {
            2
        } else if arg <= 0xffff_ffff {
            3
        } else {
            4
        };
        // One head in eight is wider than it needs to be.
        let width = if rng.index(8) == 0 { (minimal + 1 + rng.index(4 - minimal.min(3))).min(4) } else { minimal };
        match width {
            0 => out.push(m | arg as u8),
            1 => out.extend_from_slice(&[m | 24, arg as u8]),
            2 => {
                out.push(m | 25);
                out.extend_from_slice(&(arg as u16).to_be_bytes());
            }
            3 => {
                out.push(m | 26);
                out.extend_from_slice(&(arg as u32).to_be_bytes());
            }
            _ => {
                out.push(m | 27);
                out.extend_from_slice(&arg.to_be_bytes());
            }
        }
    }
    fn number(rng: &mut Rng) -> u64 {
        match rng.index(4) {
            0 => rng.index(30) as u64,
            1 => [23, 24, 255, 256, 65_535, 65_536, 0xffff_ffff, 1 << 32, u64::MAX][rng.index(9)],
            _ => {
                let shift = rng.index(64) as u32;
                rng.next_u64() >> shift
            }
        }
    }
    const KEYS: &[&str] = &["", "a", "b", "z", "aa", "ab", "é", "height", "payload"];
    let kinds = if depth == 0 { 9 } else { 12 };
    match rng.index(kinds) {
        0 | 1 => {
            let major = rng.index(2) as u8;
            let n = number(rng);
            head(rng, out, major, n);
        }
        2 => {
            let n = rng.index(5);
            head(rng, out, 2, n as u64);
            out.extend((0..n).map(|_| rng.next_u64() as u8));
        }
        3 => {
            let s: &[u8] = match rng.index(8) {
                0 => &[0xff],
                1 => &[0xc0, 0x80],
                _ => KEYS[rng.index(KEYS.len())].as_bytes(),
            };
            head(rng, out, 3, s.len() as u64);
            out.extend_from_slice(s);
        }
        4 => out.extend_from_slice(&[[0xf4], [0xf5], [0xf6], [0xf7], [0xf0], [0xe0]][rng.index(6)]),
        5 => {
            let v: f64 = [0.0, -0.0, 1.5, -2.25, 1e300, f64::NAN, f64::INFINITY, 5e-324][rng.index(8)];
            match rng.index(4) {
                0 => {
                    out.push(0xfa);
                    out.extend_from_slice(&(v as f32).to_bits().to_be_bytes());
                }
                1 => out.extend_from_slice(&[0xf9, 0x3e, 0x00]),
                _ => {
                    out.push(0xfb);
                    out.extend_from_slice(&v.to_bits().to_be_bytes());
                }
            }
        }
        6 => {
            // A link, usually well formed.
            match rng.index(8) {
                0 => out.extend_from_slice(&[0xd9, 0x00, 0x2a]),
                1 => out.extend_from_slice(&[0xd8, 0x2b]),
                _ => out.extend_from_slice(&[0xd8, 0x2a]),
            }
            let seed = rng.next_u64().to_le_bytes();
            let mut raw = match rng.index(4) {
                0 => Cid::new_v0(Multihash::wrap(0x12, blake3::hash(&seed).as_bytes()).unwrap()).unwrap().to_bytes(),
                1 => Cid::new_v1(0x55, Multihash::wrap(0x00, &seed).unwrap()).to_bytes(),
                _ => cid_of(&seed).to_bytes(),
            };
            match rng.index(10) {
                0 => {
                    raw.pop();
                }
                1 => raw.push(0),
                2 => raw[0] = 0x02,
                _ => {}
            }
            let prefix: &[u8] = if rng.index(10) == 0 { &[0x01] } else { &[0x00] };
            head(rng, out, 2, (raw.len() + prefix.len()) as u64);
            out.extend_from_slice(prefix);
            out.extend_from_slice(&raw);
        }
        7 => {
            // A tag other than 42 (a bignum).
            out.extend_from_slice(&[0xc2, 0x41, 0x01]);
        }
        8 => out.push(rng.next_u64() as u8),
        9 => {
            let n = rng.index(4);
            let indefinite = rng.index(10) == 0;
            if indefinite {
                out.push(0x9f);
            } else {
                head(rng, out, 4, n as u64);
            }
            for _ in 0..n {
                gen_cbor(rng, depth - 1, out);
            }
            if indefinite {
                out.push(0xff);
            }
        }
        _ => {
            let n = rng.index(4);
            let mut keys: Vec<&str> = (0..n).map(|_| KEYS[rng.index(KEYS.len())]).collect();
            if rng.index(6) != 0 {
                keys.sort_by_key(|k| (k.len(), k.as_bytes()));
                if rng.index(6) != 0 {
                    keys.dedup();
                }
            }
            let indefinite = rng.index(12) == 0;
            if indefinite {
                out.push(0xbf);
            } else {
                head(rng, out, 5, keys.len() as u64);
            }
            for k in keys {
                if rng.index(20) == 0 {
                    head(rng, out, 0, 1);
                } else {
                    head(rng, out, 3, k.len() as u64);
                    out.extend_from_slice(k.as_bytes());
                }
                gen_cbor(rng, depth - 1, out);
            }
            if indefinite {
                out.push(0xff);
            }
        }
    }
}

/// Whether `serde_ipld_dagcbor` decodes these payload bytes into an Ipld value
/// that re-encodes to the very same bytes.
fn serde_canonical(bytes: &[u8]) -> bool {
    match serde_ipld_dagcbor::from_slice::<Ipld>(bytes) {
        Ok(v) => serde_ipld_dagcbor::to_vec(&v).map(|again| again == bytes).unwrap_or(false),
        Err(_) => false,
    }
}

/// Our verdict on payload bytes equals serde's canonical verdict.
fn check_payload_agreement(bytes: &[u8]) {
    let mut wrapped = GENESIS_PREFIX.to_vec();
    wrapped.extend_from_slice(bytes);
    let block = Block::from_bytes(wrapped);
    let accepted = Event::<Ipld>::decode(&block).is_ok();
    let canonical = serde_canonical(bytes);
    assert_eq!(
        accepted, canonical,
        "strict reader says {accepted}, serde re-encode says {canonical} for payload {bytes:02x?}"
    );
    check_bytes(block.bytes().to_vec());
}

/// The strict one-pass reader accepts exactly what `serde_ipld_dagcbor`
/// decodes and re-encodes to the same bytes (within the depth limit).
#[test]
fn prop_validator_agrees_with_reencode() {
    fn p(payload: ArbIpld, seed: u64, muts: Vec<(u16, u8, u8)>) -> bool {
        // 1. What serde_ipld_dagcbor writes for an event is what we write, and we accept it.
        let ev = random_event(payload.0.clone(), seed);
        let ours = ev.encode().unwrap();
        let theirs = serde_bytes_of(&ev);
        assert_eq!(ours.bytes().as_ref(), theirs.as_slice(), "our envelope differs from serde_ipld_dagcbor's");
        assert_eq!(serde_ipld_dagcbor::to_vec(&ipld_of(&ev)).unwrap(), theirs);
        let back: Event<Ipld> = Event::decode(&Block::from_bytes(theirs)).unwrap();
        assert_eq!(back, ev);

        // 2. Differential on payload bytes: a valid payload encoding, mutated.
        let valid = serde_ipld_dagcbor::to_vec(&payload.0).unwrap();
        let mut candidates = vec![valid.clone(), mutate(valid.clone(), &muts)];
        candidates.extend(muts.iter().map(|m| mutate(valid.clone(), std::slice::from_ref(m))));
        for bytes in candidates {
            check_payload_agreement(&bytes);
        }

        // 3. Differential on token-level random CBOR, full of near misses.
        let mut rng = Rng::new(seed);
        for _ in 0..4 {
            let mut bytes = Vec::new();
            gen_cbor(&mut rng, 3, &mut bytes);
            check_payload_agreement(&bytes);
        }
        true
    }
    qc(300).quickcheck(p as fn(ArbIpld, u64, Vec<(u16, u8, u8)>) -> bool);
}

// ---------------------------------------------------------------------------
// The DAG index against brute force
// ---------------------------------------------------------------------------

fn pick(rng: &mut Rng, n: usize, max: usize) -> Vec<usize> {
    let k = rng.index(max + 1);
    (0..k).map(|_| rng.index(n)).collect()
}

#[test]
fn prop_compare_matches_ancestry() {
    fn p(d: DagSpec, seed: u64) -> bool {
        let b = build(&d);
        let dag = deliver(b.genesis(), &b.blocks);
        let mut rng = Rng::new(seed);
        for _ in 0..8 {
            let (ia, ib) = (pick(&mut rng, b.len(), 3), pick(&mut rng, b.len(), 3));
            let (ha, hb) = (b.hist(&ia), b.hist(&ib));
            let want = match (ha.is_subset(&hb), hb.is_subset(&ha)) {
                (true, true) => ClockOrder::Equal,
                (true, false) => ClockOrder::Before,
                (false, true) => ClockOrder::After,
                (false, false) => ClockOrder::Concurrent,
            };
            let ca: Vec<Cid> = ia.iter().map(|&i| b.cid(i)).collect();
            let cb: Vec<Cid> = ib.iter().map(|&i| b.cid(i)).collect();
            assert_eq!(dag.compare(&ca, &cb).unwrap(), want, "compare({ia:?}, {ib:?})");
            let (x, y) = (rng.index(b.len()), rng.index(b.len()));
            assert_eq!(
                dag.is_ancestor(&b.cid(x), &b.cid(y)).unwrap(),
                b.hist(&[y]).contains(&x),
                "is_ancestor({x}, {y})"
            );
        }
        // Unknown CIDs are an error, not a wrong answer.
        let stranger = cid_of(b"not in this stream");
        assert!(dag.compare(&[stranger], &[b.genesis()]).is_err());
        assert!(dag.is_ancestor(&b.genesis(), &stranger).is_err());
        true
    }
    qc(100).quickcheck(p as fn(DagSpec, u64) -> bool);
}

#[test]
fn prop_difference_matches_closure() {
    fn p(d: DagSpec, seed: u64) -> bool {
        let b = build(&d);
        let dag = deliver(b.genesis(), &b.blocks);
        let mut rng = Rng::new(seed);
        for _ in 0..8 {
            let (ifrom, iknown) = (pick(&mut rng, b.len(), 3), pick(&mut rng, b.len(), 3));
            let want: BTreeSet<Vec<u8>> =
                b.hist(&ifrom).difference(&b.hist(&iknown)).map(|&i| b.cid(i).to_bytes()).collect();
            let from: Vec<Cid> = ifrom.iter().map(|&i| b.cid(i)).collect();
            let mut known: Vec<Cid> = iknown.iter().map(|&i| b.cid(i)).collect();
            if rng.index(2) == 0 {
                // Unknown CIDs among the known side are ignored.
                known.push(cid_of(b"a stranger"));
            }
            let got = dag.difference(&from, &known).unwrap();
            let got_cids: Vec<Vec<u8>> = got.iter().map(|&id| dag.cid(id).to_bytes()).collect();
            let got_set: BTreeSet<Vec<u8>> = got_cids.iter().cloned().collect();
            assert_eq!(got_set.len(), got.len(), "difference lists an event twice");
            assert_eq!(got_set, want, "difference({ifrom:?}, {iknown:?})");
            for w in got.windows(2) {
                assert!(dag.height(w[0]) <= dag.height(w[1]), "difference not ascending by height");
            }
        }
        true
    }
    qc(100).quickcheck(p as fn(DagSpec, u64) -> bool);
}
