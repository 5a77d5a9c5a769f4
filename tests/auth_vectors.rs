//! Conformance vectors for signed streams, pinned in
//! `tests/vectors/signed.txt` (same line format as `events.txt`): a genesis
//! with a policy, a grant, a signed event and a revocation. Any change to
//! the signed envelope, the signing input or the signature fails here.

use std::collections::BTreeMap;

use merkle_clock::auth::{self, AuthorKey, MemberOp, Policy, Role, Signer};
use merkle_clock::{Block, Cid, Ingest, Ipld, MemoryBlockstore, Replica, ReplicaConfig};

const VECTORS: &str = include_str!("vectors/signed.txt");

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit")).collect()
}

fn admin() -> Signer {
    Signer::from_seed(&[1; 32])
}

fn writer() -> Signer {
    Signer::from_seed(&[2; 32])
}

/// The four blocks, built by the code under test.
fn described() -> Vec<(&'static str, Block)> {
    let (admin, writer) = (admin(), writer());
    let genesis = auth::genesis(&"signed conformance", &[admin.public()]).unwrap();
    let s = *genesis.cid();
    let grant = MemberOp::Grant { key: writer.public(), role: Role::Writer };
    let g = auth::signed_event(&s, 1, &[s], Some(&grant), &Ipld::Null, &admin).unwrap();
    let text = Ipld::Map(BTreeMap::from([("text".to_string(), Ipld::String("hello".into()))]));
    let e = auth::signed_event(&s, 2, &[*g.cid()], None, &text, &writer).unwrap();
    let revoke = MemberOp::Revoke { key: writer.public() };
    let r = auth::signed_event(&s, 3, &[*e.cid()], Some(&revoke), &Ipld::Null, &admin).unwrap();
    vec![("genesis_policy", genesis), ("grant", g), ("signed_event", e), ("revocation", r)]
}

fn load() -> Vec<(String, String, Vec<u8>)> {
    VECTORS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "a vector line is `name cid hex`: {l}");
            (f[0].to_string(), f[1].to_string(), unhex(f[2]))
        })
        .collect()
}

#[test]
fn signed_vectors_match_the_encoder() {
    let described = described();
    let printed: Vec<String> = described.iter().map(|(n, b)| format!("{n} {} {}", b.cid(), hex(b.bytes()))).collect();
    let file = load();
    assert_eq!(file.len(), described.len(), "the file should hold:\n{}", printed.join("\n"));
    for ((name, cid, bytes), (want_name, block)) in file.iter().zip(&described) {
        assert_eq!(name, want_name);
        assert_eq!(hex(bytes), hex(block.bytes()), "{name}: bytes changed");
        assert_eq!(cid, &block.cid().to_string(), "{name}: CID changed");
    }
}

#[test]
fn signed_vectors_decode_verify_and_replay() {
    let (admin, writer) = (admin(), writer());
    let blocks: Vec<Block> = load()
        .into_iter()
        .map(|(_, cid, bytes)| Block::new(cid.parse::<Cid>().unwrap(), bytes).expect("bytes hash to the CID"))
        .collect();
    let genesis = &blocks[0];
    assert_eq!(auth::policy_of(genesis).unwrap(), Policy::Admins(vec![admin.public()]));
    assert_eq!(auth::author_of(&blocks[1]).unwrap(), Some(admin.public()));
    assert_eq!(
        auth::member_op_of(&blocks[1]).unwrap(),
        Some(MemberOp::Grant { key: writer.public(), role: Role::Writer })
    );
    assert_eq!(auth::author_of(&blocks[2]).unwrap(), Some(writer.public()));
    assert_eq!(auth::member_op_of(&blocks[3]).unwrap(), Some(MemberOp::Revoke { key: writer.public() }));
    // The signing input of the signed event starts with the domain and the stream.
    let input = auth::signing_input(genesis.cid(), &blocks[2]).unwrap().unwrap();
    assert_eq!(&input[..31], b"merkle-clock/event-signature/v1");
    assert_eq!(&input[31..67], &genesis.cid().to_bytes()[..]);
    assert_eq!(input[67], 0xa4, "the map without sig has 4 entries");
    assert_eq!(&input[68..], &blocks[2].bytes()[71..]);
    // The keys the vectors name.
    let key: AuthorKey = hex(admin.public().as_bytes()).parse().unwrap();
    assert_eq!(key, admin.public());
    // A replica takes all three events.
    futures::executor::block_on(async {
        let mut r = Replica::create(std::sync::Arc::new(MemoryBlockstore::new()), genesis, ReplicaConfig::default())
            .await
            .unwrap();
        for b in &blocks[1..] {
            assert_eq!(r.ingest(b.clone()).await.unwrap(), Ingest::Accepted);
        }
        assert_eq!(r.members().unwrap().revoked.get(&writer.public()), Some(blocks[3].cid()));
    });
}
