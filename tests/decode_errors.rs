//! Hand-built blocks, each breaking one rule of the block format, rejected
//! with the matching typed error that names the block's CID.
//!
//! The CBOR is written byte by byte (or by tweaking a valid encoding) and
//! hashed with `Block::from_bytes`, so the CID matches the bytes and the
//! decoder's own rule is the one that fires.

use ipld_core::cid::Cid;
use ipld_core::ipld::Ipld;
use merkle_clock::{Block, BlockError, BlockSet, Dag, DecodeError, EncodeError, Event, InsertError, Limits, cid_of};
use multihash::Multihash;

// ---------------------------------------------------------------------------
// A tiny CBOR writer for tests: every helper writes minimal (canonical) heads
// unless told otherwise.
// ---------------------------------------------------------------------------

fn head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= 0xff {
        out.extend_from_slice(&[m | 24, arg as u8]);
    } else if arg <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

fn uint(n: u64) -> Vec<u8> {
    let mut v = Vec::new();
    head(&mut v, 0, n);
    v
}

fn text(s: &str) -> Vec<u8> {
    let mut v = Vec::new();
    head(&mut v, 3, s.len() as u64);
    v.extend_from_slice(s.as_bytes());
    v
}

fn link(cid: &Cid) -> Vec<u8> {
    let raw = cid.to_bytes();
    let mut v = vec![0xd8, 0x2a];
    head(&mut v, 2, raw.len() as u64 + 1);
    v.push(0);
    v.extend_from_slice(&raw);
    v
}

fn links(cids: &[Cid]) -> Vec<u8> {
    let mut v = Vec::new();
    head(&mut v, 4, cids.len() as u64);
    for c in cids {
        v.extend(link(c));
    }
    v
}

/// A map with these entries, in the order given (keys are not sorted here).
fn map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut v = Vec::new();
    head(&mut v, 5, entries.len() as u64);
    for (k, val) in entries {
        v.extend(text(k));
        v.extend_from_slice(val);
    }
    v
}

/// An event envelope with raw values for each key, in canonical key order.
fn envelope(height: Vec<u8>, parents: Vec<u8>, payload: Vec<u8>) -> Vec<u8> {
    map(&[("height", height), ("parents", parents), ("payload", payload)])
}

fn genesis_with_payload(payload: Vec<u8>) -> Block {
    Block::from_bytes(envelope(uint(0), links(&[]), payload))
}

fn decode(block: &Block) -> DecodeError {
    decode_with(block, &Limits::default())
}

/// Decodes expecting an error; checks the error names the block, and that the
/// header-only path (`BlockSet::insert_with`) rejects it the same way.
fn decode_with(block: &Block, limits: &Limits) -> DecodeError {
    let e = Event::<Ipld>::decode_with(block, limits).expect_err("the block must be rejected");
    assert_eq!(e.cid(), block.cid(), "the error must name the block's CID");
    let again = BlockSet::new().insert_with(block.clone(), limits).expect_err("BlockSet must reject it too");
    assert_eq!(again, e, "BlockSet::insert and Event::decode disagree");
    e
}

fn genesis() -> Block {
    Event::genesis(Ipld::String("decode errors".into())).encode().unwrap()
}

/// Two event CIDs, the first below the second in byte order.
fn two_parents() -> (Cid, Cid) {
    let (a, b) = (cid_of(b"parent one"), cid_of(b"parent two"));
    if a.to_bytes() < b.to_bytes() { (a, b) } else { (b, a) }
}

// ---------------------------------------------------------------------------
// The block and its CID
// ---------------------------------------------------------------------------

#[test]
fn hash_mismatch() {
    let good = genesis();
    let wrong = cid_of(b"other bytes");
    let e = Block::new(wrong, good.bytes().clone()).unwrap_err();
    assert!(matches!(e, BlockError::HashMismatch { cid, actual } if cid == wrong && actual == *good.cid()), "{e:?}");
    assert_eq!(*e.cid(), wrong);
    // Through the decoding path: a block that skipped verification.
    let forged = Block::new_unchecked(wrong, good.bytes().clone());
    assert!(forged.verify().is_err());
    let e = BlockSet::new().insert(forged).unwrap_err();
    assert!(matches!(e, DecodeError::Block(BlockError::HashMismatch { .. })), "{e:?}");
    assert_eq!(*e.cid(), wrong);
    // One flipped byte changes the CID.
    let mut bytes = good.bytes().to_vec();
    *bytes.last_mut().unwrap() ^= 1;
    let e = Block::new(*good.cid(), bytes).unwrap_err();
    assert!(matches!(e, BlockError::HashMismatch { .. }), "{e:?}");
    assert_eq!(e.cid(), good.cid());
    // The right CID is accepted.
    Block::new(*good.cid(), good.bytes().clone()).unwrap();
}

#[test]
fn unsupported_version() {
    let good = genesis();
    let v0 = Cid::new_v0(Multihash::wrap(0x12, &[7; 32]).unwrap()).unwrap();
    let e = Block::new(v0, good.bytes().clone()).unwrap_err();
    assert!(matches!(e, BlockError::UnsupportedVersion { cid, version: 0 } if cid == v0), "{e:?}");
    assert_eq!(*e.cid(), v0);
}

#[test]
fn unsupported_codec() {
    let good = genesis();
    let digest = blake3::hash(good.bytes());
    let raw = Cid::new_v1(0x55, Multihash::wrap(0x1e, digest.as_bytes()).unwrap());
    let e = Block::new(raw, good.bytes().clone()).unwrap_err();
    assert!(matches!(e, BlockError::UnsupportedCodec { cid, codec: 0x55 } if cid == raw), "{e:?}");
    assert_eq!(*e.cid(), raw);
}

#[test]
fn unsupported_hash() {
    let good = genesis();
    let sha = Cid::new_v1(0x71, Multihash::wrap(0x12, &[1; 32]).unwrap());
    let e = Block::new(sha, good.bytes().clone()).unwrap_err();
    assert!(matches!(e, BlockError::UnsupportedHash { cid, code: 0x12, size: 32 } if cid == sha), "{e:?}");
    assert_eq!(*e.cid(), sha);
    // BLAKE3 with a digest that is not 32 bytes is not an event CID either.
    let long = Cid::new_v1(0x71, Multihash::wrap(0x1e, &[1; 64]).unwrap());
    let e = Block::new(long, good.bytes().clone()).unwrap_err();
    assert!(matches!(e, BlockError::UnsupportedHash { code: 0x1e, size: 64, .. }), "{e:?}");
}

#[test]
fn unsupported_parent_cid() {
    let sha = Cid::new_v1(0x71, Multihash::wrap(0x12, &[1; 32]).unwrap());
    let block = Block::from_bytes(envelope(uint(1), links(&[sha]), uint(0)));
    let e = decode(&block);
    assert!(matches!(e, DecodeError::UnsupportedParent { parent, .. } if parent == sha), "{e:?}");
    let e = Event::new(1, vec![sha], 0u8).encode().unwrap_err();
    assert!(matches!(e, EncodeError::UnsupportedParent { parent } if parent == sha), "{e:?}");
}

// ---------------------------------------------------------------------------
// Canonical form
// ---------------------------------------------------------------------------

#[test]
fn trailing_bytes() {
    let mut bytes = genesis().bytes().to_vec();
    bytes.extend_from_slice(&[0x00, 0x01]);
    let block = Block::from_bytes(bytes);
    let e = decode(&block);
    assert!(matches!(e, DecodeError::TrailingBytes { extra: 2, .. }), "{e:?}");
}

#[test]
fn non_canonical_non_minimal_height() {
    // height 1 written as 0x18 0x01 instead of 0x01.
    let (p, _) = two_parents();
    let block = Block::from_bytes(envelope(vec![0x18, 0x01], links(&[p]), uint(0)));
    let e = decode(&block);
    assert!(matches!(e, DecodeError::NotCanonical { .. }), "{e:?}");
    // The same event written minimally is fine (height rules are checked by a Dag).
    let ok = Block::from_bytes(envelope(uint(1), links(&[p]), uint(0)));
    let ev: Event<Ipld> = Event::decode(&ok).unwrap();
    assert_eq!(ev.height(), 1);
    assert_eq!(ok, Event::new(1, vec![p], Ipld::Integer(0)).encode().unwrap());
    // A non-minimal integer inside the payload, and a non-minimal string length.
    let e = decode(&genesis_with_payload(vec![0x19, 0x00, 0x10]));
    assert!(matches!(e, DecodeError::NotCanonical { .. }), "{e:?}");
    let e = decode(&genesis_with_payload(vec![0x78, 0x01, b'a']));
    assert!(matches!(e, DecodeError::NotCanonical { .. }), "{e:?}");
}

#[test]
fn non_canonical_map_keys_out_of_order() {
    // Envelope keys: "parents" before "height" (length-first order puts height first).
    let block = Block::from_bytes(map(&[("parents", links(&[])), ("height", uint(0)), ("payload", uint(0))]));
    let e = decode(&block);
    assert!(matches!(e, DecodeError::NotCanonical { .. }), "{e:?}");
    // "payload" before "parents" (same length, bytewise order).
    let block = Block::from_bytes(map(&[("height", uint(0)), ("payload", uint(0)), ("parents", links(&[]))]));
    let e = decode(&block);
    assert!(matches!(e, DecodeError::NotCanonical { .. }), "{e:?}");
    // Inside the payload: {"b": 1, "a": 2}, and {"aa": 1, "b": 2} (shorter keys first).
    let e = decode(&genesis_with_payload(map(&[("b", uint(1)), ("a", uint(2))])));
    assert!(matches!(e, DecodeError::NotCanonical { .. }), "{e:?}");
    let e = decode(&genesis_with_payload(map(&[("aa", uint(1)), ("b", uint(2))])));
    assert!(matches!(e, DecodeError::NotCanonical { .. }), "{e:?}");
    // The canonical order is accepted.
    Event::<Ipld>::decode(&genesis_with_payload(map(&[("b", uint(2)), ("aa", uint(1))]))).unwrap();
}

#[test]
fn non_canonical_float_width() {
    // 1.5 as a 32-bit float, and as a 16-bit float: DAG-CBOR floats are 64-bit.
    let e = decode(&genesis_with_payload(vec![0xfa, 0x3f, 0xc0, 0x00, 0x00]));
    assert!(matches!(e, DecodeError::NotCanonical { .. }), "{e:?}");
    let e = decode(&genesis_with_payload(vec![0xf9, 0x3e, 0x00]));
    assert!(matches!(e, DecodeError::NotCanonical { .. }), "{e:?}");
    // Negative zero is written as zero.
    let e = decode(&genesis_with_payload(vec![0xfb, 0x80, 0, 0, 0, 0, 0, 0, 0]));
    assert!(matches!(e, DecodeError::NotCanonical { .. }), "{e:?}");
    // 1.5 as a 64-bit float is canonical.
    let ok = genesis_with_payload(vec![0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
    assert_eq!(*Event::<Ipld>::decode(&ok).unwrap().payload(), Ipld::Float(1.5));
}

#[test]
fn non_canonical_indefinite_length() {
    // [_ 1, 2] in the payload.
    let e = decode(&genesis_with_payload(vec![0x9f, 0x01, 0x02, 0xff]));
    assert!(matches!(e, DecodeError::NotCanonical { .. }), "{e:?}");
    // An indefinite-length string, and an indefinite-length envelope map.
    let e = decode(&genesis_with_payload(vec![0x7f, 0x61, b'a', 0xff]));
    assert!(matches!(e, DecodeError::NotCanonical { .. }), "{e:?}");
    let mut bytes = vec![0xbf];
    bytes.extend(text("height"));
    bytes.extend(uint(0));
    bytes.extend(text("parents"));
    bytes.extend(links(&[]));
    bytes.extend(text("payload"));
    bytes.extend(uint(0));
    bytes.push(0xff);
    let e = decode(&Block::from_bytes(bytes));
    assert!(matches!(e, DecodeError::NotCanonical { .. }), "{e:?}");
}

#[test]
fn malformed_cbor() {
    // Truncated.
    let good = genesis();
    let block = Block::from_bytes(good.bytes()[..good.len() - 1].to_vec());
    assert!(matches!(decode(&block), DecodeError::Malformed { .. }));
    // Invalid UTF-8, a tag other than 42, NaN, a duplicate key, undefined.
    for payload in [
        vec![0x61, 0xff],
        vec![0xc1, 0x01],
        vec![0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
        map(&[("a", uint(1)), ("a", uint(1))]),
        vec![0xf7],
    ] {
        let e = decode(&genesis_with_payload(payload.clone()));
        assert!(matches!(e, DecodeError::Malformed { .. }), "{payload:02x?}: {e:?}");
    }
    // Not a map at all.
    let e = decode(&Block::from_bytes(vec![0x80]));
    assert!(matches!(e, DecodeError::NotAMap { .. }), "{e:?}");
    // An empty block.
    let e = decode(&Block::from_bytes(Vec::new()));
    assert!(matches!(e, DecodeError::Malformed { .. }), "{e:?}");
}

// ---------------------------------------------------------------------------
// The envelope's keys and types
// ---------------------------------------------------------------------------

#[test]
fn unknown_key() {
    // "extra" sorts before "height", so the order is canonical and the key is the problem.
    let block = Block::from_bytes(map(&[
        ("extra", uint(1)),
        ("height", uint(0)),
        ("parents", links(&[])),
        ("payload", uint(0)),
    ]));
    let e = decode(&block);
    assert!(matches!(&e, DecodeError::UnknownKey { key, .. } if key == "extra"), "{e:?}");
    // A fourth key after the others.
    let block = Block::from_bytes(map(&[
        ("height", uint(0)),
        ("parents", links(&[])),
        ("payload", uint(0)),
        ("timestamp", uint(0)),
    ]));
    let e = decode(&block);
    assert!(matches!(&e, DecodeError::UnknownKey { key, .. } if key == "timestamp"), "{e:?}");
}

#[test]
fn missing_height() {
    let block = Block::from_bytes(map(&[("parents", links(&[])), ("payload", uint(0))]));
    let e = decode(&block);
    assert!(matches!(e, DecodeError::MissingKey { key: "height", .. }), "{e:?}");
}

#[test]
fn missing_parents() {
    let block = Block::from_bytes(map(&[("height", uint(0)), ("payload", uint(0))]));
    let e = decode(&block);
    assert!(matches!(e, DecodeError::MissingKey { key: "parents", .. }), "{e:?}");
}

#[test]
fn missing_payload() {
    let block = Block::from_bytes(map(&[("height", uint(0)), ("parents", links(&[]))]));
    let e = decode(&block);
    assert!(matches!(e, DecodeError::MissingKey { key: "payload", .. }), "{e:?}");
}

#[test]
fn wrong_type() {
    let (p, _) = two_parents();
    // height as a string, as a negative integer, as a float.
    for h in [text("1"), vec![0x20], vec![0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]] {
        let e = decode(&Block::from_bytes(envelope(h, links(&[p]), uint(0))));
        assert!(matches!(e, DecodeError::WrongType { key: "height", .. }), "{e:?}");
    }
    // parents as a map, as a single link, as a list holding an integer.
    for ps in [map(&[]), link(&p), vec![0x81, 0x01]] {
        let e = decode(&Block::from_bytes(envelope(uint(1), ps, uint(0))));
        assert!(matches!(e, DecodeError::WrongType { key: "parents", .. }), "{e:?}");
    }
    // A payload of another type than the caller asked for.
    let block = genesis_with_payload(text("not a number"));
    let e = Event::<u64>::decode(&block).unwrap_err();
    assert!(matches!(e, DecodeError::Payload { .. }), "{e:?}");
    assert_eq!(e.cid(), block.cid());
}

// ---------------------------------------------------------------------------
// Parents and heights
// ---------------------------------------------------------------------------

#[test]
fn unsorted_parents() {
    let (a, b) = two_parents();
    let block = Block::from_bytes(envelope(uint(1), links(&[b, a]), uint(0)));
    let e = decode(&block);
    assert!(matches!(e, DecodeError::UnsortedParents { index: 1, .. }), "{e:?}");
    // Sorted, the same event is fine, and it is what Event::new writes whatever the input order.
    let sorted = Block::from_bytes(envelope(uint(1), links(&[a, b]), uint(0)));
    assert_eq!(Event::new(1, vec![b, a], Ipld::Integer(0)).encode().unwrap(), sorted);
}

#[test]
fn duplicate_parent() {
    let (a, _) = two_parents();
    let block = Block::from_bytes(envelope(uint(1), links(&[a, a]), uint(0)));
    let e = decode(&block);
    assert!(matches!(e, DecodeError::DuplicateParent { parent, .. } if parent == a), "{e:?}");
    // Event::new deduplicates.
    let ev = Event::new(1, vec![a, a], 0u8);
    assert_eq!(ev.parents(), &[a]);
}

#[test]
fn non_genesis_without_parents() {
    let block = Block::from_bytes(envelope(uint(3), links(&[]), uint(0)));
    let e = decode(&block);
    assert!(matches!(e, DecodeError::NoParents { height: 3, .. }), "{e:?}");
    let e = Event::new(3, vec![], 0u8).encode().unwrap_err();
    assert!(matches!(e, EncodeError::InvalidHeight { height: 3, parents: 0 }), "{e:?}");
}

#[test]
fn parents_at_height_zero() {
    let (a, _) = two_parents();
    let block = Block::from_bytes(envelope(uint(0), links(&[a]), uint(0)));
    let e = decode(&block);
    assert!(matches!(e, DecodeError::ParentsAtHeightZero { .. }), "{e:?}");
    let e = Event::new(0, vec![a], 0u8).encode().unwrap_err();
    assert!(matches!(e, EncodeError::InvalidHeight { height: 0, parents: 1 }), "{e:?}");
}

#[test]
fn wrong_height() {
    let g = genesis();
    let a = Event::new(1, vec![*g.cid()], "a").encode().unwrap();
    let mut dag = Dag::new(*g.cid());
    dag.insert(a.cid(), 1, &[*g.cid()]).unwrap();
    // Height 5 over a parent at height 1 (must be 2), and height 1 (too low).
    for h in [5u64, 1] {
        let bad = Event::new(h, vec![*a.cid()], "b").encode().unwrap();
        let ev: Event<Ipld> = Event::decode(&bad).unwrap();
        let e = dag.insert(bad.cid(), ev.height(), ev.parents()).unwrap_err();
        assert!(
            matches!(e, InsertError::WrongHeight { cid, expected: 2, found } if cid == *bad.cid() && found == h),
            "{e:?}"
        );
        assert!(!dag.contains(bad.cid()), "a rejected event must not join the DAG");
    }
    // The height is 1 + the *largest* parent height.
    let b = Event::new(1, vec![*g.cid()], "b").encode().unwrap();
    dag.insert(b.cid(), 1, &[*g.cid()]).unwrap();
    let c_ok = Event::new(2, vec![*a.cid(), *g.cid()], "c").encode().unwrap();
    dag.insert(c_ok.cid(), 2, &[*a.cid(), *g.cid()]).unwrap();
    let e = dag.insert(&cid_of(b"d"), 1, &[*c_ok.cid(), *b.cid()]).unwrap_err();
    assert!(matches!(e, InsertError::WrongHeight { expected: 3, found: 1, .. }), "{e:?}");
    assert_eq!(dag.len(), 4);
}

#[test]
fn foreign_genesis() {
    let g = genesis();
    let other = Event::genesis(Ipld::String("another stream".into())).encode().unwrap();
    let mut dag = Dag::new(*g.cid());
    let e = dag.insert(other.cid(), 0, &[]).unwrap_err();
    assert!(
        matches!(e, InsertError::ForeignGenesis { cid, genesis } if cid == *other.cid() && genesis == *g.cid()),
        "{e:?}"
    );
    // The stream's own genesis is already there.
    assert!(matches!(dag.insert(g.cid(), 0, &[]), Ok(merkle_clock::Inserted::Existing(_))));
    assert_eq!(dag.len(), 1);
}

#[test]
fn missing_parents_in_dag() {
    let g = genesis();
    let a = Event::new(1, vec![*g.cid()], "a").encode().unwrap();
    let b = Event::new(2, vec![*a.cid(), *g.cid()], "b").encode().unwrap();
    let mut dag = Dag::new(*g.cid());
    let e = dag.insert(b.cid(), 2, &[*a.cid(), *g.cid()]).unwrap_err();
    assert!(
        matches!(&e, InsertError::MissingParents { cid, missing } if cid == b.cid() && missing == &vec![*a.cid()]),
        "{e:?}"
    );
    assert_eq!(dag.len(), 1, "nothing changes");
    assert_eq!(dag.heads(), vec![*g.cid()]);
    dag.insert(a.cid(), 1, &[*g.cid()]).unwrap();
    dag.insert(b.cid(), 2, &[*a.cid(), *g.cid()]).unwrap();
    assert_eq!(dag.heads(), vec![*b.cid()]);
    // A CID that is not an event CID is refused.
    let raw = Cid::new_v1(0x55, Multihash::wrap(0x1e, &[0; 32]).unwrap());
    let e = dag.insert(&raw, 1, &[*g.cid()]).unwrap_err();
    assert!(matches!(e, InsertError::UnsupportedCid { cid } if cid == raw), "{e:?}");
    assert!(Dag::try_new(raw).is_err());
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

#[test]
fn oversize_block() {
    let mut limits = Limits::default();
    limits.max_block_bytes = 64;
    let block = genesis_with_payload(text(&"x".repeat(100)));
    let e = decode_with(&block, &limits);
    assert!(
        matches!(e, DecodeError::Block(BlockError::TooLarge { size, max: 64, .. }) if size == block.len()),
        "{e:?}"
    );
    // Within the default limit it is fine.
    Event::<Ipld>::decode(&block).unwrap();
    let e = Event::genesis("x".repeat(100)).encode_with(&limits).unwrap_err();
    assert!(matches!(e, EncodeError::TooLarge { max: 64, .. }), "{e:?}");
    // The default limit: 1 MiB.
    assert_eq!(Limits::default().max_block_bytes, 1 << 20);
    let big = Event::genesis(Ipld::Bytes(vec![0; 1 << 20])).encode().unwrap_err();
    assert!(matches!(big, EncodeError::TooLarge { max, .. } if max == 1 << 20), "{big:?}");
}

#[test]
fn too_many_parents() {
    let mut limits = Limits::default();
    limits.max_parents = 2;
    let mut ps: Vec<Cid> = (0..3u8).map(|i| cid_of(&[i])).collect();
    ps.sort_by_key(|c| c.to_bytes());
    let block = Block::from_bytes(envelope(uint(1), links(&ps), uint(0)));
    let e = decode_with(&block, &limits);
    assert!(matches!(e, DecodeError::TooManyParents { count: 3, max: 2, .. }), "{e:?}");
    Event::<Ipld>::decode(&block).unwrap();
    let e = Event::new(1, ps.clone(), 0u8).encode_with(&limits).unwrap_err();
    assert!(matches!(e, EncodeError::TooManyParents { count: 3, max: 2 }), "{e:?}");
    // The default: 1024 parents pass, 1025 do not.
    let mut many: Vec<Cid> = (0..1025u32).map(|i| cid_of(&i.to_le_bytes())).collect();
    many.sort_by_key(|c| c.to_bytes());
    let e = Event::new(1, many.clone(), 0u8).encode().unwrap_err();
    assert!(matches!(e, EncodeError::TooManyParents { count: 1025, max: 1024 }), "{e:?}");
    let e = decode(&Block::from_bytes(envelope(uint(1), links(&many), uint(0))));
    assert!(matches!(e, DecodeError::TooManyParents { count: 1025, max: 1024, .. }), "{e:?}");
    many.pop();
    let ok = Event::new(1, many, 0u8).encode().unwrap();
    assert_eq!(Event::<u8>::decode(&ok).unwrap().parents().len(), 1024);
}

#[test]
fn parent_count_beyond_the_input() {
    // A list head claiming 2^64 - 1 parents, with limits raised as far as they go:
    // an error, not an allocation of the claimed size.
    let mut limits = Limits::default();
    limits.max_parents = usize::MAX;
    let mut bytes = Vec::new();
    head(&mut bytes, 5, 3);
    bytes.extend(text("height"));
    bytes.extend(uint(1));
    bytes.extend(text("parents"));
    head(&mut bytes, 4, u64::MAX);
    let block = Block::from_bytes(bytes);
    let e = decode_with(&block, &limits);
    assert!(matches!(e, DecodeError::Malformed { .. }), "{e:?}");
}

/// `depth` nested single-item lists around an integer.
fn nested(depth: usize) -> Vec<u8> {
    let mut v = vec![0x81; depth];
    v.push(0x01);
    v
}

#[test]
fn payload_nested_too_deep() {
    assert_eq!(Limits::default().max_payload_depth, 64);
    Event::<Ipld>::decode(&genesis_with_payload(nested(64))).unwrap();
    let e = decode(&genesis_with_payload(nested(65)));
    assert!(matches!(e, DecodeError::TooDeep { max: 64, .. }), "{e:?}");
    // Maps count as well.
    let mut deep_map = Vec::new();
    for _ in 0..65 {
        deep_map.extend([0xa1, 0x61, b'k']);
    }
    deep_map.push(0xf6);
    let e = decode(&genesis_with_payload(deep_map));
    assert!(matches!(e, DecodeError::TooDeep { max: 64, .. }), "{e:?}");
    // A small limit.
    let mut limits = Limits::default();
    limits.max_payload_depth = 2;
    Event::<Ipld>::decode_with(&genesis_with_payload(nested(2)), &limits).unwrap();
    let e = decode_with(&genesis_with_payload(nested(3)), &limits);
    assert!(matches!(e, DecodeError::TooDeep { max: 2, .. }), "{e:?}");
}

#[test]
fn payload_nested_100_000_deep() {
    // Far deeper than any recursive decoder survives on a 2 MiB stack: a typed
    // error, at the default limit and with the limit raised as far as it goes.
    let block = genesis_with_payload(nested(100_000));
    let e = decode(&block);
    assert!(matches!(e, DecodeError::TooDeep { max: 64, .. }), "{e:?}");
    let mut limits = Limits::default();
    limits.max_payload_depth = usize::MAX;
    let e = decode_with(&block, &limits);
    assert!(matches!(e, DecodeError::TooDeep { max: Limits::MAX_PAYLOAD_DEPTH, .. }), "{e:?}");
    // Unclosed, too: 100,000 list heads and nothing inside.
    let e = decode(&genesis_with_payload(vec![0x81; 100_000]));
    assert!(matches!(e, DecodeError::TooDeep { .. }), "{e:?}");
    // Deep maps behave the same.
    let mut deep_map = Vec::with_capacity(300_000);
    for _ in 0..100_000 {
        deep_map.extend([0xa1, 0x61, b'k']);
    }
    deep_map.push(0xf6);
    let e = decode(&genesis_with_payload(deep_map));
    assert!(matches!(e, DecodeError::TooDeep { .. }), "{e:?}");
}

#[test]
fn payload_depth_ceiling_keeps_decoders_in_step() {
    // With the limit raised, everything the strict reader accepts must still
    // decode into a payload: the ceiling is the deepest serde_ipld_dagcbor reads.
    let mut limits = Limits::default();
    limits.max_payload_depth = 1000;
    let max = Limits::MAX_PAYLOAD_DEPTH;
    assert_eq!(limits.payload_depth(), max);
    let ok = genesis_with_payload(nested(max));
    let ev = Event::<Ipld>::decode_with(&ok, &limits).unwrap();
    assert!(BlockSet::new().insert_with(ok.clone(), &limits).unwrap());
    assert_eq!(Event::genesis(ev.payload().clone()).encode_with(&limits).unwrap(), ok);
    let e = decode_with(&genesis_with_payload(nested(max + 1)), &limits);
    assert!(matches!(e, DecodeError::TooDeep { max: m, .. } if m == max), "{e:?}");
}

// ---------------------------------------------------------------------------
// Encoding errors
// ---------------------------------------------------------------------------

fn ipld_nested(depth: usize) -> Ipld {
    let mut v = Ipld::Integer(1);
    for _ in 0..depth {
        v = Ipld::List(vec![v]);
    }
    v
}

#[test]
fn encode_errors() {
    // NaN and infinities have no DAG-CBOR form.
    for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let e = Event::genesis(Ipld::Float(f)).encode().unwrap_err();
        assert!(matches!(e, EncodeError::Payload { .. }), "{e:?}");
        let e = Event::genesis(vec![1.0, f]).encode().unwrap_err();
        assert!(matches!(e, EncodeError::Payload { .. }), "{e:?}");
    }
    // Non-string map keys.
    let mut m = std::collections::BTreeMap::new();
    m.insert(1u32, "one");
    let e = Event::genesis(m).encode().unwrap_err();
    assert!(matches!(e, EncodeError::Payload { .. }), "{e:?}");
    // Integers beyond DAG-CBOR's range (-2^64 ..= 2^64 - 1); the extremes encode.
    for i in [i128::MAX, i128::MIN, 1i128 << 64, -(1i128 << 64) - 1] {
        let e = Event::genesis(Ipld::Integer(i)).encode().unwrap_err();
        assert!(matches!(e, EncodeError::Payload { .. }), "{i}: {e:?}");
    }
    for i in [(1i128 << 64) - 1, -(1i128 << 64)] {
        let b = Event::genesis(Ipld::Integer(i)).encode().unwrap();
        assert_eq!(*Event::<Ipld>::decode(&b).unwrap().payload(), Ipld::Integer(i));
    }
    // Too deep: the default limit and a small one.
    Event::genesis(ipld_nested(64)).encode().unwrap();
    let e = Event::genesis(ipld_nested(65)).encode().unwrap_err();
    assert!(matches!(e, EncodeError::TooDeep { max: 64 }), "{e:?}");
    let mut limits = Limits::default();
    limits.max_payload_depth = 3;
    let e = Event::genesis(ipld_nested(4)).encode_with(&limits).unwrap_err();
    assert!(matches!(e, EncodeError::TooDeep { max: 3 }), "{e:?}");
    // Too many parents.
    limits.max_parents = 1;
    let (a, b) = two_parents();
    let e = Event::new(1, vec![a, b], ()).encode_with(&limits).unwrap_err();
    assert!(matches!(e, EncodeError::TooManyParents { count: 2, max: 1 }), "{e:?}");
    // Negative zero is written as zero, so it encodes like 0.0.
    assert_eq!(Event::genesis(-0.0f64).encode().unwrap(), Event::genesis(0.0f64).encode().unwrap());
}

#[test]
fn dag_insert_takes_parents_as_a_set() {
    // Parents listed out of order and twice are one set, kept in CID byte order.
    let g = genesis();
    let a = Event::new(1, vec![*g.cid()], "a").encode().unwrap();
    let b = Event::new(1, vec![*g.cid()], "b").encode().unwrap();
    let m = Event::new(2, vec![*a.cid(), *b.cid()], "m").encode().unwrap();
    let mut dag = Dag::new(*g.cid());
    dag.insert(a.cid(), 1, &[*g.cid()]).unwrap();
    dag.insert(b.cid(), 1, &[*g.cid(), *g.cid()]).unwrap();
    let (lo, hi) = if a.cid().to_bytes() < b.cid().to_bytes() { (*a.cid(), *b.cid()) } else { (*b.cid(), *a.cid()) };
    let id = dag.insert(m.cid(), 2, &[hi, lo, hi]).unwrap().id();
    let parents: Vec<Cid> = dag.parents(id).map(|p| dag.cid(p)).collect();
    assert_eq!(parents, vec![lo, hi]);
    let ga = dag.id(g.cid()).unwrap();
    assert_eq!(dag.children(ga).count(), 2);
    assert_eq!(dag.children(dag.id(&hi).unwrap()).count(), 1);
    assert_eq!(dag.heads(), vec![*m.cid()]);
}
