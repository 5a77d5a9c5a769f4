//! Conformance vectors: a few events pinned as hex bytes and CID strings in
//! `tests/vectors/events.txt`, so that any change of the encoding (key order,
//! integer or float form, link form, hash, CID) fails loudly.
//!
//! The file is a plain line format, one event per line: `name cid hex`.
//! Lines starting with `#` are comments. It was generated once by this code
//! and checked in; it must never be regenerated to make this test pass.

use std::collections::BTreeMap;

use std::sync::Arc;

use futures::executor::block_on;
use ipld_core::cid::Cid;
use ipld_core::ipld::Ipld;
use merkle_clock::auth::{self, Signer};
use merkle_clock::checkpoint::{self, Checkpoint, CheckpointConfig};
use merkle_clock::crdt::{Counter, CounterOp, Fold, Resumable};
use merkle_clock::{
    Block, BlockSet, Blockstore, Dag, Event, Ingest, MemoryBlockstore, Replica, ReplicaConfig, heads, order,
};

const VECTORS: &str = include_str!("vectors/events.txt");
const CHECKPOINT_VECTORS: &str = include_str!("vectors/checkpoint.txt");

struct Vector {
    name: String,
    cid: String,
    bytes: Vec<u8>,
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit")).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn load() -> Vec<Vector> {
    load_from(VECTORS)
}

fn load_from(text: &str) -> Vec<Vector> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "a vector line is `name cid hex`: {l}");
            Vector { name: f[0].to_string(), cid: f[1].to_string(), bytes: unhex(f[2]) }
        })
        .collect()
}

fn map(entries: &[(&str, Ipld)]) -> Ipld {
    Ipld::Map(entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>())
}

/// The events the file describes, encoded by the code under test.
fn described() -> Vec<(&'static str, Event<Ipld>)> {
    let genesis = Event::genesis(map(&[("name", Ipld::String("merkle-clock conformance".into()))]));
    let g = *genesis.encode().unwrap().cid();
    let a = Event::new(
        1,
        vec![g],
        map(&[("op", Ipld::String("put".into())), ("data", Ipld::Bytes(vec![0xde, 0xad, 0xbe, 0xef]))]),
    );
    let b = Event::new(1, vec![g], map(&[("n", Ipld::Integer(-42)), ("x", Ipld::Float(1.5))]));
    let (ca, cb) = (*a.encode().unwrap().cid(), *b.encode().unwrap().cid());
    let merge = Event::new(2, vec![ca, cb], Ipld::String("merge".into()));
    vec![("genesis", genesis), ("child_bytes", a), ("child_numbers", b), ("merge", merge)]
}

#[test]
fn vectors_match_the_encoder() {
    let file = load();
    let events = described();
    assert_eq!(file.len(), events.len(), "the file and the described events differ in number");
    for (v, (name, ev)) in file.iter().zip(&events) {
        assert_eq!(v.name, *name);
        let block = ev.encode().unwrap();
        assert_eq!(hex(block.bytes()), hex(&v.bytes), "{name}: encoded bytes changed");
        assert_eq!(block.cid().to_string(), v.cid, "{name}: CID changed");
        assert!(v.cid.starts_with("bafyr4i"), "{name}: CID string must start bafyr4i");
    }
}

#[test]
fn vectors_decode_to_the_described_events() {
    let file = load();
    let events = described();
    let mut blocks = Vec::new();
    for (v, (name, ev)) in file.iter().zip(&events) {
        let cid: Cid = v.cid.parse().expect("a valid CID string");
        let block = Block::new(cid, v.bytes.clone()).expect("bytes hash to the CID");
        let back: Event<Ipld> = Event::decode(&block).unwrap();
        assert_eq!(&back, ev, "{name}: decoded fields differ");
        blocks.push(block);
    }
    let (g, a, b, m) = (&blocks[0], &blocks[1], &blocks[2], &blocks[3]);
    let ge: Event<Ipld> = Event::decode(g).unwrap();
    assert!(ge.is_genesis());
    assert_eq!(ge.height(), 0);
    assert_eq!(ge.payload(), &map(&[("name", Ipld::String("merkle-clock conformance".into()))]));
    let ae: Event<Ipld> = Event::decode(a).unwrap();
    assert_eq!((ae.height(), ae.parents()), (1, &[*g.cid()][..]));
    assert_eq!(
        ae.payload(),
        &map(&[("op", Ipld::String("put".into())), ("data", Ipld::Bytes(vec![0xde, 0xad, 0xbe, 0xef]))])
    );
    let be: Event<Ipld> = Event::decode(b).unwrap();
    assert_eq!((be.height(), be.parents()), (1, &[*g.cid()][..]));
    assert_eq!(be.payload(), &map(&[("n", Ipld::Integer(-42)), ("x", Ipld::Float(1.5))]));
    let me: Event<Ipld> = Event::decode(m).unwrap();
    assert_eq!(me.height(), 2);
    let mut want = [*a.cid(), *b.cid()];
    want.sort_by_key(|c| c.to_bytes());
    assert_eq!(me.parents(), &want[..]);
    assert_eq!(me.payload(), &Ipld::String("merge".into()));

    // Heads and order of the vector set.
    let set = BlockSet::from_blocks(blocks.iter().cloned()).unwrap();
    assert_eq!(heads(&set), vec![*m.cid()]);
    let mut mid = [*a.cid(), *b.cid()];
    mid.sort_by_key(|c| c.to_bytes());
    assert_eq!(order(&set), vec![*g.cid(), mid[0], mid[1], *m.cid()]);
    let mut dag = Dag::new(*g.cid());
    for blk in &blocks[1..] {
        let ev: Event<Ipld> = Event::decode(blk).unwrap();
        dag.insert(blk.cid(), ev.height(), ev.parents()).unwrap();
    }
    assert_eq!(dag.heads(), vec![*m.cid()]);
}

// ---------------------------------------------------------------------------
// Checkpoints: `tests/vectors/checkpoint.txt`
// ---------------------------------------------------------------------------

fn checkpoint_admin() -> Signer {
    Signer::from_seed(&[1; 32])
}

/// The blocks `checkpoint.txt` describes, built by the code under test.
fn checkpoint_described() -> Vec<(&'static str, Block)> {
    block_on(async {
        let admin = checkpoint_admin();
        let genesis = auth::genesis(&"checkpoint conformance", &[admin.public()]).unwrap();
        let mut r =
            Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await.unwrap();
        r.set_signer(Some(admin));
        let a = r.append(&CounterOp::Increment(2)).await.unwrap();
        let b = r.append(&CounterOp::Increment(3)).await.unwrap();
        let mut counter = Fold::new(Counter);
        counter.update(&r).await.unwrap();
        let cp = checkpoint::build(&mut r, &[("counter", &counter)], &CheckpointConfig::default()).await.unwrap();
        let mut out = vec![("genesis_policy", genesis)];
        for (name, cid) in [("increment_2", a), ("increment_3", b), ("state_counter", cp.states["counter"])] {
            out.push((name, r.store().get(&cid).await.unwrap().unwrap()));
        }
        out.push(("skeleton_leaf", r.store().get(&cp.skeleton).await.unwrap().unwrap()));
        out.push(("flagged_leaf", r.store().get(&cp.flagged).await.unwrap().unwrap()));
        out.push(("checkpoint", r.get(&cp.cid).await.unwrap().unwrap()));
        out
    })
}

#[test]
fn checkpoint_vectors_match_the_encoder() {
    let described = checkpoint_described();
    let printed: Vec<String> = described.iter().map(|(n, b)| format!("{n} {} {}", b.cid(), hex(b.bytes()))).collect();
    let file = load_from(CHECKPOINT_VECTORS);
    assert_eq!(file.len(), described.len(), "the file should hold:\n{}", printed.join("\n"));
    for (v, (name, block)) in file.iter().zip(&described) {
        assert_eq!(v.name, *name);
        assert_eq!(hex(&v.bytes), hex(block.bytes()), "{name}: bytes changed");
        assert_eq!(v.cid, block.cid().to_string(), "{name}: CID changed");
    }
}

/// The file's blocks, hashed, read back as a checkpoint a replica trusts and
/// resumes a fold from; the skeleton leaf answers for each event below the cut.
#[test]
fn checkpoint_vectors_decode_verify_and_resume() {
    block_on(async {
        let blocks: Vec<Block> = load_from(CHECKPOINT_VECTORS)
            .into_iter()
            .map(|v| Block::new(v.cid.parse::<Cid>().unwrap(), v.bytes).expect("bytes hash to the CID"))
            .collect();
        let [genesis, a, b, state, leaf, flagged, cp_block] = &blocks[..] else { panic!("seven blocks") };
        let cp = Checkpoint::from_block(cp_block).unwrap().expect("a checkpoint");
        assert_eq!((cp.count, cp.height, cp.author), (3, 3, Some(checkpoint_admin().public())));
        assert_eq!((cp.parents.as_slice(), cp.skeleton, cp.flagged), (&[*b.cid()][..], *leaf.cid(), *flagged.cid()));
        assert_eq!(cp.states.iter().collect::<Vec<_>>(), [(&"counter".to_string(), state.cid())]);
        checkpoint::verify_state(state.cid(), state.bytes()).unwrap();
        assert_eq!(Counter.load(state.bytes()).unwrap(), 5);

        let mut r =
            Replica::create(Arc::new(MemoryBlockstore::new()), genesis, ReplicaConfig::default()).await.unwrap();
        let report = r.ingest_many(vec![a.clone(), b.clone(), cp_block.clone()]).await.unwrap();
        assert_eq!(report.outcomes, vec![Ingest::Accepted; 3]);
        r.store().put_many(vec![state.clone(), leaf.clone(), flagged.clone()]).await.unwrap();
        let in_full: Vec<Cid> =
            cp.flagged_entries(r.store().as_ref(), usize::MAX).await.unwrap().iter().map(|e| e.cid).collect();
        assert_eq!(in_full, [*genesis.cid()]);
        for (event, height) in [(genesis, 0), (a, 1), (b, 2)] {
            let entry = checkpoint::skeleton::lookup(r.store().as_ref(), &cp.skeleton, event.cid()).await.unwrap();
            assert_eq!(entry.map(|e| (e.height, e.membership, e.checkpoint)), Some((height, false, false)));
        }
        cp.check_trust_in(&r, &[]).unwrap();
        cp.verify_against(&r, r.store().as_ref()).await.unwrap();
        let mut resumed = Fold::resume(Counter, &r, &cp, "counter").await.unwrap();
        resumed.update(&r).await.unwrap();
        assert_eq!(*resumed.state(), 5);
    });
}
