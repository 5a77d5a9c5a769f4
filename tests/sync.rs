//! The sync protocol: convergence and round trips in each scenario, mined
//! filter collisions, bad input, the durable state, lossy networks, and the
//! naive baseline. Round trips are counted in message delays, never timed.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::executor::block_on;
// SplitMix64, seeded: every generated structure is a function of its seed.
use merkle_clock::sim::SimRng as Rng;
use merkle_clock::sync::{
    BITS_PER_ELEMENT, BloomFilter, Message, NaiveState, Received, SyncError, SyncLimits, SyncState, generate_message,
    naive_generate, naive_receive, receive_message,
};
use merkle_clock::{Block, Blockstore, Cid, Event, Ipld, MemoryBlockstore, Replica, ReplicaConfig};

type R = Replica<MemoryBlockstore>;

// ---------------------------------------------------------------------------
// Helpers.

fn genesis() -> Block {
    Event::genesis("sync tests").encode().unwrap()
}

async fn fresh() -> R {
    Replica::create(Arc::new(MemoryBlockstore::new()), &genesis(), ReplicaConfig::default()).await.unwrap()
}

/// Appends `n` events with 200-byte payloads; one in eight is a sibling of a
/// head (concurrent with it).
async fn grow(r: &mut R, n: usize, rng: &mut Rng) {
    for _ in 0..n {
        let payload = Ipld::Bytes((0..25).flat_map(|_| rng.next_u64().to_le_bytes()).collect());
        if rng.index(8) == 0 {
            let dag = r.dag();
            let heads = dag.head_ids();
            let head = heads[rng.index(heads.len())];
            let parents: Vec<Cid> = dag.parents(head).map(|p| dag.cid(p)).collect();
            if !parents.is_empty() {
                let block = Event::new(dag.height(head), parents, payload).encode().unwrap();
                r.ingest(block).await.unwrap();
                continue;
            }
        }
        r.append(&payload).await.unwrap();
    }
}

async fn copy_all(from: &R, to: &mut R) {
    let cids: Vec<Cid> = from.order().collect();
    let blocks = from.store().get_many(&cids).await.unwrap().into_iter().map(Option::unwrap).collect();
    to.ingest_many(blocks).await.unwrap();
}

fn cids(r: &R) -> HashSet<Cid> {
    r.order().collect()
}

/// What a lock-step run measured.
#[derive(Debug)]
struct Run {
    /// Round trips until both held the union: message delays / 2, rounded up.
    rtt: u64,
    /// Steps until both were silent.
    steps: u64,
    bytes: usize,
}

/// Delivers every message in flight (one delay), then lets each side speak,
/// until both are silent. Every message goes through encode and decode.
async fn lockstep(a: &mut R, b: &mut R, sa: &mut SyncState, sb: &mut SyncState) -> Run {
    let union = cids(a).union(&cids(b)).count();
    let limits = SyncLimits::default();
    let (mut to_a, mut to_b): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (Vec::new(), Vec::new());
    let mut done = (a.len() == union && b.len() == union).then_some(0);
    let (mut step, mut bytes) = (0u64, 0usize);
    loop {
        if step > 0 {
            for m in std::mem::take(&mut to_b) {
                receive_message(b, sb, Message::decode(&m, &limits).unwrap()).await.unwrap();
            }
            for m in std::mem::take(&mut to_a) {
                receive_message(a, sa, Message::decode(&m, &limits).unwrap()).await.unwrap();
            }
            if done.is_none() && a.len() == union && b.len() == union {
                done = Some(step);
            }
        }
        if let Some(m) = generate_message(a, sa).await.unwrap() {
            bytes += m.encode().len();
            to_b.push(m.encode());
        }
        if let Some(m) = generate_message(b, sb).await.unwrap() {
            bytes += m.encode().len();
            to_a.push(m.encode());
        }
        if to_a.is_empty() && to_b.is_empty() {
            break;
        }
        step += 1;
        assert!(step < 10_000, "no quiescence");
    }
    assert_eq!(a.heads(), b.heads(), "both silent but not converged");
    assert_eq!(a.order().collect::<Vec<_>>(), b.order().collect::<Vec<_>>());
    Run { rtt: done.expect("converged").div_ceil(2), steps: step, bytes }
}

/// Two replicas that synced `base` events, then each appended `depth`.
async fn warm(seed: u64, base: usize, depth: usize) -> (R, R, SyncState, SyncState) {
    let mut rng = Rng::new(seed);
    let (mut a, mut b) = (fresh().await, fresh().await);
    grow(&mut a, base, &mut rng).await;
    let (mut sa, mut sb) = (SyncState::with_seed(seed), SyncState::with_seed(seed + 1));
    lockstep(&mut a, &mut b, &mut sa, &mut sb).await;
    assert_eq!(sa.shared_heads(), a.heads().as_slice());
    assert_eq!(sb.shared_heads(), b.heads().as_slice());
    grow(&mut a, depth, &mut rng).await;
    grow(&mut b, depth, &mut rng).await;
    // A reconnect: the shared heads survive, the session does not.
    let sa = SyncState::decode(&sa.encode()).unwrap();
    let sb = SyncState::decode(&sb.encode()).unwrap();
    (a, b, sa, sb)
}

// ---------------------------------------------------------------------------
// Scenarios.

#[test]
fn warm_converges_in_about_one_round_trip() {
    block_on(async {
        let mut rtts = Vec::new();
        for seed in 0..8 {
            for depth in [1, 10, 200] {
                let (mut a, mut b, mut sa, mut sb) = warm(seed, 40, depth).await;
                let run = lockstep(&mut a, &mut b, &mut sa, &mut sb).await;
                assert!(run.rtt <= 3, "seed {seed} depth {depth}: {run:?}");
                rtts.push(run.rtt);
                // Both remember the new shared heads.
                assert_eq!(sa.shared_heads(), a.heads().as_slice());
                assert_eq!(sb.shared_heads(), b.heads().as_slice());
            }
        }
        assert!(rtts.iter().filter(|&&r| r == 1).count() >= rtts.len() - 2, "{rtts:?}");
    });
}

#[test]
fn cold_converges_within_three_round_trips() {
    block_on(async {
        let mut rng = Rng::new(99);
        let mut base = fresh().await;
        grow(&mut base, 2000, &mut rng).await;
        for seed in 0..4 {
            let (mut a, mut b) = (fresh().await, fresh().await);
            copy_all(&base, &mut a).await;
            copy_all(&base, &mut b).await;
            grow(&mut a, 30, &mut Rng::new(seed)).await;
            grow(&mut b, 30, &mut Rng::new(seed + 100)).await;
            let (mut sa, mut sb) = (SyncState::with_seed(seed), SyncState::with_seed(seed + 7));
            let run = lockstep(&mut a, &mut b, &mut sa, &mut sb).await;
            assert!(run.rtt <= 3, "seed {seed}: {run:?}");
            // Two full inventories of ~2030 events at 7 bits, then the 60 missing blocks.
            assert!(run.bytes < 2 * 2030 + 61 * 300, "seed {seed}: {} bytes", run.bytes);
        }
    });
}

#[test]
fn join_takes_one_round_trip() {
    block_on(async {
        for (seed, depth) in [(1, 1), (2, 10), (3, 500)] {
            let mut a = fresh().await;
            grow(&mut a, depth, &mut Rng::new(seed)).await;
            let mut b = fresh().await;
            let (mut sa, mut sb) = (SyncState::with_seed(seed), SyncState::new());
            let run = lockstep(&mut a, &mut b, &mut sa, &mut sb).await;
            assert_eq!(run.rtt, 1, "depth {depth}: {run:?}");
            assert_eq!(b.len(), depth + 1);
        }
    });
}

#[test]
fn in_sync_replicas_say_nothing() {
    block_on(async {
        let (mut a, mut b, mut sa, mut sb) = warm(5, 20, 0).await;
        let run = lockstep(&mut a, &mut b, &mut sa, &mut sb).await;
        // One filter each (empty: nothing since the shared heads), and then silence.
        assert_eq!(run.steps, 1, "{run:?}");
        assert!(generate_message(&a, &mut sa).await.unwrap().is_none());
        // A later append is pushed alone, with no new filter.
        a.append(&"late").await.unwrap();
        let m = generate_message(&a, &mut sa).await.unwrap().unwrap();
        assert!(m.filter.is_none());
        assert_eq!(m.blocks.len(), 1);
        receive_message(&mut b, &mut sb, m).await.unwrap();
        assert_eq!(a.heads(), b.heads());
        // B acknowledges the block with its new heads (one link), so that A
        // knows the pair is in sync (and a timeout rule never restarts it);
        // then both are silent.
        assert_ne!(sa.their_heads(), Some(a.heads().as_slice()));
        let ack = generate_message(&b, &mut sb).await.unwrap().expect("B acknowledges");
        assert!(ack.filter.is_none() && ack.blocks.is_empty() && ack.want.is_empty());
        assert_eq!(ack.heads, b.heads());
        assert!(ack.encode().len() < 64, "{} bytes", ack.encode().len());
        assert_eq!(sb.their_heads(), Some(b.heads().as_slice()));
        receive_message(&mut a, &mut sa, ack).await.unwrap();
        assert_eq!(sa.their_heads(), Some(a.heads().as_slice()));
        assert!(generate_message(&b, &mut sb).await.unwrap().is_none());
        assert!(generate_message(&a, &mut sa).await.unwrap().is_none());
    });
}

#[test]
fn one_side_initiating_works_too() {
    // Request/response: only the initiator opens; the other answers each message.
    block_on(async {
        let (mut a, mut b, mut sa, mut sb) = warm(11, 30, 25).await;
        let mut exchanges = 0;
        while let Some(m) = generate_message(&a, &mut sa).await.unwrap() {
            exchanges += 1;
            assert!(exchanges < 10);
            receive_message(&mut b, &mut sb, m).await.unwrap();
            if let Some(reply) = generate_message(&b, &mut sb).await.unwrap() {
                receive_message(&mut a, &mut sa, reply).await.unwrap();
            }
        }
        assert_eq!(a.heads(), b.heads());
        assert!(exchanges <= 3, "{exchanges}");
    });
}

// ---------------------------------------------------------------------------
// Mined collisions.

/// The events `b` added since the shared heads, and a filter of them under `salt`
/// sized as the protocol sizes it.
fn filter_of(events: &[Cid], salt: &[u8; 16]) -> BloomFilter {
    let mut f = BloomFilter::new(salt, events.len(), BITS_PER_ELEMENT).unwrap();
    for c in events {
        f.insert(c);
    }
    f
}

/// Appends to `a` a chain of `n` events whose CIDs all collide in `filter`,
/// by trying payloads until one does. Returns them oldest first.
async fn mine(a: &mut R, filter: &BloomFilter, n: usize) -> Vec<Cid> {
    let mut mined = Vec::new();
    let mut nonce = 0u64;
    for _ in 0..n {
        let parents = a.heads();
        let height = parents.iter().map(|c| a.dag().height(a.dag().id(c).unwrap())).max().unwrap() + 1;
        loop {
            nonce += 1;
            let block = Event::new(height, parents.clone(), nonce).encode().unwrap();
            if filter.contains(block.cid()) {
                mined.push(*block.cid());
                a.ingest(block).await.unwrap();
                break;
            }
            assert!(nonce < 1_000_000, "mining should take ~2^7 tries per event");
        }
    }
    mined
}

#[test]
fn mined_collisions_hide_events_only_from_a_fixed_salt() {
    block_on(async {
        let (mut a, mut b, sa, sb) = warm(21, 20, 0).await;
        // B adds a few events; its filter (the events since the shared heads) is small.
        let before = cids(&b);
        grow(&mut b, 4, &mut Rng::new(77)).await;
        let b_new: Vec<Cid> = cids(&b).difference(&before).copied().collect();
        let fixed_salt = [0x5a; 16];
        let fixed = filter_of(&b_new, &fixed_salt);
        // An attacker writing through A mines a chain that collides in it.
        let mined = mine(&mut a, &fixed, 6).await;

        // With the fixed salt, every mined event is "held" by B: a filter answer
        // (send what the filter lacks and all its descendants) sends none of them.
        assert!(mined.iter().all(|c| fixed.contains(c)));
        let sent_with_fixed = mined.iter().filter(|c| !fixed.contains(c)).count();
        assert_eq!(sent_with_fixed, 0, "a fixed-salt filter hides the whole mined chain");

        // A fresh salt per message breaks the collisions: the oldest mined event
        // is (almost surely) not in B's next filter, so it and its descendants go out.
        let mut hidden = 0;
        for i in 0..100u8 {
            let salted = filter_of(&b_new, &[i; 16]);
            if i != 0x5a && salted.contains(&mined[0]) {
                hidden += 1;
            }
        }
        assert!(hidden <= 5, "the oldest mined event collides under {hidden} of 100 fresh salts");

        // And the real protocol (OS-random salts) converges within 3 round trips.
        let (mut sa, mut sb) = (SyncState::decode(&sa.encode()).unwrap(), SyncState::decode(&sb.encode()).unwrap());
        let run = lockstep(&mut a, &mut b, &mut sa, &mut sb).await;
        assert!(run.rtt <= 3, "{run:?}");
        assert!(mined.iter().all(|c| b.contains(c)));
    });
}

// ---------------------------------------------------------------------------
// Bad input.

#[test]
fn garbage_is_a_typed_error() {
    let limits = SyncLimits::default();
    let mut rng = Rng::new(3);
    for len in 0..300 {
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        match Message::decode(&bytes, &limits) {
            Err(SyncError::Decode { .. } | SyncError::LimitExceeded { .. } | SyncError::UnsupportedVersion { .. }) => {}
            Ok(_) => {} // a random valid message is fine too
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert!(matches!(Message::decode(b"", &limits), Err(SyncError::Decode { offset: 0, .. })));
    assert!(matches!(Message::decode(b"\xa0", &limits), Err(SyncError::Decode { .. })));
    // Another version is refused as such.
    assert!(matches!(Message::decode(&[0x81, 0x02], &limits), Err(SyncError::UnsupportedVersion { version: 2 })));
    // A valid message with a byte more.
    let mut bytes = Message::default().encode();
    bytes.push(0);
    assert!(
        matches!(Message::decode(&bytes, &limits), Err(SyncError::Decode { rule, .. }) if rule.contains("trailing"))
    );
}

/// Messages whose lists and byte strings claim 2^62 items or bytes. Were a
/// claim ever used to size an allocation before being checked against the
/// input, the process would abort (capacity overflow or out of memory).
fn huge_claims() -> Vec<(&'static str, Vec<u8>)> {
    let prefix = [0x88, 0x01, 0x00, 0x01, 0x00];
    let huge = [0x1b, 0x40, 0, 0, 0, 0, 0, 0, 0]; // argument 2^62, minimal 8-byte form
    let claim = |major: u8| {
        let mut h = huge.to_vec();
        h[0] |= major << 5;
        h
    };
    let salt = [[0x50].as_slice(), &[0u8; 16]].concat();
    let cases: Vec<(&'static str, Vec<Vec<u8>>)> = vec![
        ("heads", vec![claim(4)]),
        ("wants", vec![vec![0x80], claim(4)]),
        ("filter since", vec![vec![0x80, 0x80, 0x85], claim(4)]),
        ("filter salt", vec![vec![0x80, 0x80, 0x85, 0x80, 0x07, 0x00], claim(2)]),
        ("filter bits", vec![vec![0x80, 0x80, 0x85, 0x80, 0x07, 0x00], salt, claim(2)]),
        ("blocks", vec![vec![0x80, 0x80, 0xf6], claim(4)]),
        ("a block", vec![vec![0x80, 0x80, 0xf6, 0x81], claim(2)]),
        ("an embedded block", vec![vec![0x80, 0x80, 0xf6, 0x81], claim(5)]),
    ];
    cases.into_iter().map(|(name, parts)| (name, [prefix.to_vec(), parts.concat()].concat())).collect()
}

#[test]
fn huge_claimed_lengths_are_typed_errors_without_allocation() {
    let defaults = SyncLimits::default();
    let mut unbounded = SyncLimits::default();
    unbounded.max_blocks = usize::MAX;
    unbounded.max_wants = usize::MAX;
    unbounded.max_heads = usize::MAX;
    unbounded.max_filter_bytes = usize::MAX;
    for (name, bytes) in huge_claims() {
        // With no count limit, only the input bounds them: "length exceeds the input".
        match Message::decode(&bytes, &unbounded) {
            Err(SyncError::Decode { rule, .. }) => assert!(rule.contains("exceeds the input"), "{name}: {rule}"),
            other => panic!("{name}: {other:?}"),
        }
        // With the default limits, counts beyond them are refused as such.
        match Message::decode(&bytes, &defaults) {
            Err(SyncError::LimitExceeded { .. } | SyncError::Decode { .. }) => {}
            other => panic!("{name}: {other:?}"),
        }
    }
    let heads = &huge_claims()[0].1;
    assert!(matches!(Message::decode(heads, &defaults), Err(SyncError::LimitExceeded { what: "heads", .. })));
    // A message bigger than the limit is refused before it is read.
    let mut tiny = defaults;
    tiny.max_message_bytes = 4;
    assert!(matches!(
        Message::decode(&Message::default().encode(), &tiny),
        Err(SyncError::LimitExceeded { what: "size in bytes", .. })
    ));
}

#[test]
fn a_corrupted_block_is_rejected_and_the_rest_kept() {
    block_on(async {
        let (mut a, mut b, mut sa, mut sb) = warm(31, 10, 0).await;
        a.append_many((0..10).map(|i| format!("event {i}"))).await.unwrap();
        // B opens; A answers with the 10 events B lacks.
        let open = generate_message(&b, &mut sb).await.unwrap().unwrap();
        receive_message(&mut a, &mut sa, open).await.unwrap();
        let mut reply = generate_message(&a, &mut sa).await.unwrap().unwrap();
        assert_eq!(reply.blocks.len(), 10);
        // On the way, block 4 gets a wrong height and block 7 becomes garbage.
        let mut bad = reply.blocks[4].to_vec();
        let at = bad.windows(7).position(|w| w == b"\x66height").unwrap() + 7;
        bad[at] ^= 0x01;
        reply.blocks[4] = Bytes::from(bad);
        reply.blocks[7] = Bytes::from_static(b"\xff\x00garbage");
        let reply = Message::decode(&reply.encode(), &SyncLimits::default()).unwrap();
        let got: Received = receive_message(&mut b, &mut sb, reply).await.unwrap();
        assert_eq!(got.rejected, 2, "{got:?}");
        assert_eq!(got.accepted, 4, "the blocks before the corrupted one are kept");
        assert_eq!(got.pending, 4, "the ones after wait for the lost parents");
        assert_eq!(got.rejections.len(), 2);
        // The next exchange repairs it: B wants what is missing, A sends it.
        let run = lockstep(&mut a, &mut b, &mut sa, &mut sb).await;
        assert!(run.rtt <= 2, "{run:?}");
    });
}

#[test]
fn a_message_that_does_not_decode_leaves_the_state_alone() {
    block_on(async {
        let (mut a, mut b, mut sa, mut sb) = warm(41, 10, 5).await;
        let from_a = generate_message(&a, &mut sa).await.unwrap().unwrap().encode();
        let before = sb.encode();
        let mut corrupted = from_a.clone();
        corrupted.truncate(corrupted.len() / 2);
        assert!(Message::decode(&corrupted, &SyncLimits::default()).is_err());
        assert_eq!(sb.encode(), before);
        // The sender learns of the loss (a timeout) and starts over.
        sa.reset();
        let run = lockstep(&mut a, &mut b, &mut sa, &mut sb).await;
        assert!(run.rtt <= 2, "{run:?}");
    });
}

#[test]
fn limits_apply_to_messages_made_in_memory() {
    block_on(async {
        let mut b = fresh().await;
        let mut state = SyncState::new();
        let mut limits = SyncLimits::default();
        limits.max_wants = 1;
        state.set_limits(limits);
        let mut m = Message::default();
        m.want = vec![*genesis().cid(); 2];
        assert!(matches!(
            receive_message(&mut b, &mut state, m).await,
            Err(SyncError::LimitExceeded { what: "wants", found: 2, max: 1 })
        ));
    });
}

#[test]
fn large_answers_are_split_within_the_limits() {
    block_on(async {
        let mut a = fresh().await;
        grow(&mut a, 120, &mut Rng::new(5)).await;
        let mut b = fresh().await;
        let mut limits = SyncLimits::default();
        limits.max_blocks = 25;
        let (mut sa, mut sb) = (SyncState::with_seed(1), SyncState::with_seed(2));
        sa.set_limits(limits);
        sb.set_limits(limits);
        let run = lockstep(&mut a, &mut b, &mut sa, &mut sb).await;
        assert!(run.steps >= 5, "{run:?}");
        assert_eq!(b.len(), 121);
    });
}

#[test]
fn a_want_larger_than_a_message_is_answered_in_parts() {
    block_on(async {
        let mut a = fresh().await;
        let cids = a.append_many((0..10u32).map(|i| format!("w {i}"))).await.unwrap();
        let mut state = SyncState::with_seed(3);
        let mut limits = SyncLimits::default();
        limits.max_blocks = 3;
        state.set_limits(limits);
        // A peer whose heads A does not know asks for all ten.
        let mut ask = Message::default();
        ask.seq = 1;
        ask.heads = vec![*Event::new(1, vec![*genesis().cid()], "elsewhere").encode().unwrap().cid()];
        ask.want = cids.clone();
        receive_message(&mut a, &mut state, ask).await.unwrap();
        let mut got = Vec::new();
        while let Some(m) = generate_message(&a, &mut state).await.unwrap() {
            assert!(m.blocks.len() <= 3);
            got.extend(m.blocks.into_iter().map(|b| *Block::from_bytes(b).cid()));
            assert!(got.len() <= 10);
        }
        assert_eq!(got, cids, "every wanted event, parents first");
    });
}

// ---------------------------------------------------------------------------
// The durable state.

#[test]
fn sync_state_round_trips() {
    block_on(async {
        let (a, _b, sa, _sb) = warm(51, 30, 0).await;
        let bytes = sa.encode();
        let back = SyncState::decode(&bytes).unwrap();
        assert_eq!(back.shared_heads(), sa.shared_heads());
        assert_eq!(back.shared_heads(), a.heads().as_slice());
        assert_eq!(back.encode(), bytes);
        assert_eq!(SyncState::decode(&SyncState::new().encode()).unwrap().shared_heads(), &[] as &[Cid]);
        for cut in 0..bytes.len() {
            assert!(SyncState::decode(&bytes[..cut]).is_err());
        }
        let mut v2 = bytes.clone();
        v2[1] = 2;
        assert!(matches!(SyncState::decode(&v2), Err(SyncError::UnsupportedVersion { version: 2 })));
    });
}

#[test]
fn seeded_states_give_identical_messages() {
    block_on(async {
        let mut traces = Vec::new();
        for _ in 0..2 {
            let (mut a, mut b) = (fresh().await, fresh().await);
            grow(&mut a, 50, &mut Rng::new(8)).await;
            grow(&mut b, 50, &mut Rng::new(9)).await;
            let (mut sa, mut sb) = (SyncState::with_seed(10), SyncState::with_seed(11));
            let mut trace = Vec::new();
            for _ in 0..4 {
                let ma = generate_message(&a, &mut sa).await.unwrap();
                let mb = generate_message(&b, &mut sb).await.unwrap();
                for (m, to, st) in [(ma, &mut b, &mut sb), (mb, &mut a, &mut sa)] {
                    if let Some(m) = m {
                        trace.push(m.encode());
                        receive_message(to, st, m).await.unwrap();
                    }
                }
            }
            traces.push(trace);
        }
        assert_eq!(traces[0], traces[1]);
    });
}

// ---------------------------------------------------------------------------
// A lossy network: loss, duplicates, reordering; a side that waited too long resets.

/// Runs a faulty lock-step network for a while (messages duplicated and
/// delayed by up to 3 steps, so reordered; with `loss`, one in four lost;
/// appends keep coming), then a perfect one until both agree. With `reset`,
/// a side that heard nothing for 6 steps resets its state (a timeout).
async fn faulty_network(seed: u64, loss: bool, reset: bool) -> u64 {
    let limits = SyncLimits::default();
    let mut rng = Rng::new(seed * 7 + 1);
    let (mut a, mut b, mut sa, mut sb) = warm(seed, 15, 12).await;
    let mut to: [Vec<(u64, Vec<u8>)>; 2] = [Vec::new(), Vec::new()];
    let mut idle = [0u64; 2];
    let mut resets = 0;
    let faulty = 60;
    for t in 1.. {
        assert!(t < 2000, "seed {seed}: no convergence");
        // Deliver what is due, in a shuffled order.
        for side in 0..2 {
            let mut due: Vec<Vec<u8>> = Vec::new();
            to[side].retain(|(at, m)| {
                if *at <= t {
                    due.push(m.clone());
                    false
                } else {
                    true
                }
            });
            for i in (1..due.len()).rev() {
                due.swap(i, rng.index(i + 1));
            }
            for m in due {
                let m = Message::decode(&m, &limits).unwrap();
                let (r, s) = if side == 0 { (&mut a, &mut sa) } else { (&mut b, &mut sb) };
                receive_message(r, s, m).await.unwrap();
                idle[side] = 0;
            }
        }
        if t > faulty && to[0].is_empty() && to[1].is_empty() && a.heads() == b.heads() {
            break;
        }
        let mut spoken = [None, None];
        for side in 0..2 {
            let (r, s) = if side == 0 { (&a, &mut sa) } else { (&b, &mut sb) };
            idle[side] += 1;
            if reset && idle[side] > 6 {
                s.reset();
                resets += 1;
                idle[side] = 0;
            }
            spoken[side] = generate_message(r, s).await.unwrap();
        }
        if !loss && t > faulty && spoken.iter().all(Option::is_none) && to.iter().all(Vec::is_empty) {
            // Nothing was lost and both are silent: they must agree.
            assert_eq!(a.heads(), b.heads(), "seed {seed}: both silent at {t}, not converged");
        }
        for (side, m) in spoken.into_iter().enumerate() {
            if let Some(m) = m {
                let bytes = m.encode();
                let other = 1 - side;
                if t <= faulty && loss && rng.index(4) == 0 {
                    continue;
                }
                let delay = if t <= faulty { 1 + rng.index(3) as u64 } else { 1 };
                if t <= faulty && rng.index(6) == 0 {
                    to[other].push((t + delay + rng.index(3) as u64, bytes.clone()));
                }
                to[other].push((t + delay, bytes));
            }
        }
        if t <= faulty && rng.index(10) == 0 {
            let r = if rng.index(2) == 0 { &mut a } else { &mut b };
            r.append(&format!("late {t}")).await.unwrap();
        }
    }
    assert_eq!(a.order().collect::<Vec<_>>(), b.order().collect::<Vec<_>>(), "seed {seed}");
    resets
}

fn seeds() -> u64 {
    std::env::var("SYNC_NETWORK_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(16)
}

#[test]
fn lossy_networks_converge_after_resets() {
    block_on(async {
        let mut resets = 0;
        for seed in 0..seeds() {
            resets += faulty_network(seed, true, true).await;
        }
        assert!(resets > 0, "the loss should have needed some resets");
    });
}

#[test]
fn duplicates_and_reordering_need_no_reset() {
    block_on(async {
        for seed in 0..seeds() {
            faulty_network(seed + 1000, false, false).await;
        }
    });
}

// ---------------------------------------------------------------------------
// The naive baseline.

async fn naive_lockstep(a: &mut R, b: &mut R) -> u64 {
    let union = cids(a).union(&cids(b)).count();
    let (mut sa, mut sb) = (NaiveState::new(), NaiveState::new());
    let (mut to_a, mut to_b): (Vec<Message>, Vec<Message>) = (Vec::new(), Vec::new());
    let (mut step, mut done) = (0u64, None);
    loop {
        for m in std::mem::take(&mut to_b) {
            naive_receive(b, &mut sb, m).await.unwrap();
        }
        for m in std::mem::take(&mut to_a) {
            naive_receive(a, &mut sa, m).await.unwrap();
        }
        if done.is_none() && a.len() == union && b.len() == union {
            done = Some(step);
        }
        to_b.extend(naive_generate(a, &mut sa).await.unwrap());
        to_a.extend(naive_generate(b, &mut sb).await.unwrap());
        if to_a.is_empty() && to_b.is_empty() {
            break;
        }
        step += 1;
        assert!(step < 10_000);
    }
    assert_eq!(a.heads(), b.heads());
    done.unwrap().div_ceil(2)
}

#[test]
fn naive_walk_costs_a_round_trip_per_level() {
    block_on(async {
        for depth in [1usize, 5, 20] {
            let mut a = fresh().await;
            a.append_many((0..depth).map(|i| i as u64)).await.unwrap();
            let mut b = fresh().await;
            let rtt = naive_lockstep(&mut a, &mut b).await;
            assert!(rtt as usize >= depth, "naive depth {depth}: {rtt} round trips");
            let (mut a2, mut b2) = (fresh().await, fresh().await);
            a2.append_many((0..depth).map(|i| i as u64)).await.unwrap();
            let bloom = lockstep(&mut a2, &mut b2, &mut SyncState::new(), &mut SyncState::new()).await;
            assert_eq!(bloom.rtt, 1);
        }
    });
}

/// Runs the naive walk in lock step until both sides are silent; `lose`
/// decides which of A's messages the network loses. Returns the messages sent.
async fn naive_until_silent(
    a: &mut R,
    b: &mut R,
    sa: &mut NaiveState,
    sb: &mut NaiveState,
    mut lose: impl FnMut(&Message) -> bool,
) -> usize {
    let mut sent = 0;
    for _ in 0..1000 {
        let from_a = naive_generate(a, sa).await.unwrap();
        let from_b = naive_generate(b, sb).await.unwrap();
        if from_a.is_none() && from_b.is_none() {
            return sent;
        }
        sent += usize::from(from_a.is_some()) + usize::from(from_b.is_some());
        if let Some(m) = from_a.filter(|m| !lose(m)) {
            naive_receive(b, sb, m).await.unwrap();
        }
        if let Some(m) = from_b {
            naive_receive(a, sa, m).await.unwrap();
        }
    }
    panic!("the naive walk never went silent");
}

/// B walks down A's 12-event chain; the third of A's answers is lost, so B
/// holds the levels above it pending and stalls.
async fn naive_stalled() -> (R, R, NaiveState, NaiveState) {
    let mut a = fresh().await;
    a.append_many((0..12u64).map(|i| format!("level {i}"))).await.unwrap();
    let mut b = fresh().await;
    let (mut sa, mut sb) = (NaiveState::new(), NaiveState::new());
    let mut answers = 0;
    naive_until_silent(&mut a, &mut b, &mut sa, &mut sb, |m| {
        answers += usize::from(!m.blocks.is_empty());
        answers == 3
    })
    .await;
    assert!(b.pending().events > 0 && b.len() == 1, "B stalled with pending events");
    (a, b, sa, sb)
}

#[test]
fn naive_walk_asks_again_for_what_is_missing_after_a_reset() {
    block_on(async {
        let (mut a, mut b, mut sa, mut sb) = naive_stalled().await;
        // A timeout on B's side only: its hello restarts A's session too.
        sb.reset();
        naive_until_silent(&mut a, &mut b, &mut sa, &mut sb, |_| false).await;
        assert_eq!(a.heads(), b.heads());
        assert_eq!(b.len(), 13);
        assert_eq!(b.pending().events, 0);
    });
}

#[test]
fn naive_walk_asks_again_when_the_peer_acknowledged_a_want_it_did_not_answer() {
    block_on(async {
        let (mut a, mut b, mut sa, mut sb) = naive_stalled().await;
        // No reset: A's next message (new heads) acknowledges B's lost want.
        a.append(&"one more").await.unwrap();
        naive_until_silent(&mut a, &mut b, &mut sa, &mut sb, |_| false).await;
        assert_eq!(a.heads(), b.heads());
        assert_eq!(b.len(), 14);
    });
}

/// What neither side holds is asked for once per session, not in every
/// message: both go silent.
#[test]
fn naive_walk_does_not_ask_forever_for_what_the_peer_lacks() {
    block_on(async {
        let mut c = fresh().await;
        c.append_many((0..3u64).map(|i| format!("c {i}"))).await.unwrap();
        let top = c.heads()[0];
        let (mut a, mut b) = (fresh().await, fresh().await);
        b.ingest(c.get(&top).await.unwrap().unwrap()).await.unwrap();
        assert_eq!(b.missing().len(), 1);
        let (mut sa, mut sb) = (NaiveState::new(), NaiveState::new());
        let sent = naive_until_silent(&mut a, &mut b, &mut sa, &mut sb, |_| false).await;
        assert!(sent <= 4, "{sent} messages");
        // A later message from A acknowledges that want: still not asked again.
        a.append(&"news").await.unwrap();
        let sent = naive_until_silent(&mut a, &mut b, &mut sa, &mut sb, |_| false).await;
        assert!(sent <= 4, "{sent} messages");
        assert_eq!(b.missing().len(), 1);
        // A reset asks again, once.
        sb.reset();
        let sent = naive_until_silent(&mut a, &mut b, &mut sa, &mut sb, |_| false).await;
        assert!(sent <= 4, "{sent} messages");
    });
}

#[test]
fn futures_and_states_are_send() {
    fn is_send<T: Send>(_: &T) {}
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<SyncState>();
    is_send_sync::<Message>();
    is_send_sync::<NaiveState>();
    block_on(async {
        let mut a = fresh().await;
        let mut s = SyncState::new();
        let fut = generate_message(&a, &mut s);
        is_send(&fut);
        let m = fut.await.unwrap().unwrap();
        // receive_message awaits Replica::ingest_many, whose future is not Send
        // yet (it holds an entered tracing span across an await): checked there.
        receive_message(&mut a, &mut s, m).await.unwrap();
    });
}
