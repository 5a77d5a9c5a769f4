//! Unit tests of the protocol's internals (`advance`, the fixed-salt attack).
use std::sync::Arc;

use futures::executor::block_on;

use super::*;
use crate::dag::ClockOrder;
use crate::replica::ReplicaConfig;
use crate::rng::SimRng;
use crate::{Event, MemoryBlockstore};

type R = Replica<MemoryBlockstore>;

async fn fresh(genesis: &Block) -> R {
    Replica::create(Arc::new(MemoryBlockstore::new()), genesis, ReplicaConfig::default()).await.unwrap()
}

/// Drives both sides in lock step; `check(delays, a, b)` runs after each
/// delivery. Returns the round trips until both held `union` events.
async fn lockstep(
    a: &mut R,
    b: &mut R,
    sa: &mut SyncState,
    sb: &mut SyncState,
    union: usize,
    check: impl Fn(u64, &R, &R),
) -> u64 {
    let mut inflight = (generate_message(a, sa).await.unwrap(), generate_message(b, sb).await.unwrap());
    let (mut delays, mut done) = (0u64, None);
    while inflight.0.is_some() || inflight.1.is_some() {
        delays += 1;
        assert!(delays < 40);
        if let Some(m) = inflight.0.take() {
            receive_message(b, sb, m).await.unwrap();
        }
        if let Some(m) = inflight.1.take() {
            receive_message(a, sa, m).await.unwrap();
        }
        check(delays, a, b);
        if done.is_none() && a.len() == union && b.len() == union {
            done = Some(delays);
        }
        inflight = (generate_message(a, sa).await.unwrap(), generate_message(b, sb).await.unwrap());
    }
    assert_eq!(a.heads(), b.heads());
    done.unwrap_or(0).div_ceil(2)
}

/// The former `advance`: ~h² `is_ancestor` walks over the union of both
/// head sets. The oracle for the one-walk version.
fn advance_oracle(dag: &Dag, shared: &[Cid], theirs: &[Cid]) -> Vec<Cid> {
    let known: Vec<Cid> = shared.iter().filter(|c| dag.contains(c)).copied().collect();
    if known.is_empty() {
        return theirs.to_vec();
    }
    match dag.compare(&known, theirs) {
        Ok(ClockOrder::Equal | ClockOrder::Before) | Err(_) => theirs.to_vec(),
        Ok(ClockOrder::After) => known,
        Ok(ClockOrder::Concurrent) => {
            let mut all: Vec<Cid> = known.into_iter().chain(theirs.iter().copied()).collect();
            all.sort_unstable();
            all.dedup();
            all.iter()
                .filter(|a| !all.iter().any(|b| b != *a && dag.is_ancestor(a, b).unwrap_or(false)))
                .copied()
                .collect()
        }
    }
}

/// A DAG of `n` events besides the genesis, each with 1..=`fan` parents
/// among the `window` events before it (a small window makes long chains
/// and many concurrent heads). Returns the DAG and its CIDs, genesis first.
fn random_dag(g: &mut SimRng, n: usize, fan: usize, window: usize) -> (Dag, Vec<Cid>) {
    let genesis = crate::block::cid_of(b"advance genesis");
    let mut dag = Dag::new(genesis);
    let mut cids = vec![genesis];
    let mut heights = vec![0u64];
    for i in 1..=n {
        let lo = i.saturating_sub(window.max(1));
        let mut parents: Vec<usize> = (0..1 + g.index(fan.max(1))).map(|_| lo + g.index(i - lo)).collect();
        parents.sort_unstable();
        parents.dedup();
        let height = 1 + parents.iter().map(|&p| heights[p]).max().unwrap_or(0);
        let cid = crate::block::cid_of(format!("advance {} {i}", g.next_u64()).as_bytes());
        let pcids: Vec<Cid> = parents.iter().map(|&p| cids[p]).collect();
        dag.insert(&cid, height, &pcids).unwrap();
        cids.push(cid);
        heights.push(height);
    }
    (dag, cids)
}

fn pick(g: &mut SimRng, cids: &[Cid], max: usize) -> Vec<Cid> {
    (0..g.index(max + 1)).map(|_| cids[g.index(cids.len())]).collect()
}

#[test]
fn advance_agrees_with_the_quadratic_oracle() {
    fn prop(seed: u64, n: u8, fan: u8, window: u8, sorted: bool) -> bool {
        let mut g = SimRng::new(seed);
        let (dag, cids) =
            random_dag(&mut g, usize::from(n % 40), usize::from(fan % 4) + 1, usize::from(window % 8) + 1);
        let stranger = crate::block::cid_of(format!("not in the dag {seed}").as_bytes());
        let mut shared = pick(&mut g, &cids, 6);
        if g.index(4) == 0 {
            shared.push(stranger);
        }
        let mut theirs = pick(&mut g, &cids, 6);
        if theirs.is_empty() {
            theirs.push(cids[g.index(cids.len())]);
        }
        if sorted {
            // As receive_message calls it: their heads sorted and deduplicated.
            theirs.sort_unstable();
            theirs.dedup();
        }
        advance(&dag, &shared, &theirs) == advance_oracle(&dag, &shared, &theirs)
    }
    quickcheck::QuickCheck::new().tests(3000).quickcheck(prop as fn(u64, u8, u8, u8, bool) -> bool);
}

/// Every pair of subsets of a small DAG with diamonds, chains and
/// concurrent branches.
#[test]
fn advance_agrees_with_the_oracle_on_every_pair_of_subsets() {
    let mut g = SimRng::new(7);
    let (dag, cids) = random_dag(&mut g, 6, 2, 3);
    let subset = |mask: u32| -> Vec<Cid> { (0..cids.len()).filter(|i| mask >> i & 1 == 1).map(|i| cids[i]).collect() };
    for s in 0..1u32 << cids.len() {
        for t in 1..1u32 << cids.len() {
            let (shared, theirs) = (subset(s), subset(t));
            assert_eq!(advance(&dag, &shared, &theirs), advance_oracle(&dag, &shared, &theirs), "{s:b} {t:b}");
        }
    }
}

/// Many concurrent heads on both sides (where the oracle needs ~h² walks).
#[test]
fn advance_with_a_hundred_concurrent_heads_on_each_side() {
    let mut g = SimRng::new(11);
    let genesis = crate::block::cid_of(b"wide genesis");
    let mut dag = Dag::new(genesis);
    let mut tips = Vec::new();
    for branch in 0..200u32 {
        let mut parent = genesis;
        for h in 1..=1 + g.index(20) as u64 {
            let cid = crate::block::cid_of(format!("wide {branch} {h}").as_bytes());
            dag.insert(&cid, h, &[parent]).unwrap();
            parent = cid;
        }
        tips.push(parent);
    }
    let (shared, theirs) = tips.split_at(100);
    let mut theirs = theirs.to_vec();
    theirs.sort_unstable();
    let got = advance(&dag, shared, &theirs);
    assert_eq!(got.len(), 200);
    assert_eq!(got, advance_oracle(&dag, shared, &theirs));
}

/// Even a peer whose filters all use one known salt (so mined CIDs hide in
/// every one of them) gets the hidden events in 2 round trips, not one per
/// level: once B's heads are known A sends the exact difference, and B's
/// batched want covers the rest.
#[test]
fn a_fixed_salt_costs_one_more_round_trip_not_one_per_level() {
    block_on(async {
        let g = Event::genesis("attack").encode().unwrap();
        let (mut a, mut b) = (fresh(&g).await, fresh(&g).await);
        a.append_many((0..5u32).map(|i| format!("base {i}"))).await.unwrap();
        let salt = [0x42; 16];
        let (mut sa, mut sb) = (SyncState::with_seed(1), SyncState::with_fixed_salt(salt));
        lockstep(&mut a, &mut b, &mut sa, &mut sb, 6, |_, _, _| {}).await;
        let b_new = b.append_many((0..4u32).map(|i| format!("b {i}"))).await.unwrap();
        // B's next filter holds its 4 new events under the fixed salt.
        let mut filter = BloomFilter::new(&salt, b_new.len(), BITS_PER_ELEMENT).unwrap();
        for c in &b_new {
            filter.insert(c);
        }
        let mut mined = Vec::new();
        let mut nonce = 0u64;
        for _ in 0..8 {
            let parents = a.heads();
            let height = a.dag().height(a.dag().id(&parents[0]).unwrap()) + 1;
            loop {
                nonce += 1;
                let block = Event::new(height, parents.clone(), nonce).encode().unwrap();
                if filter.contains(block.cid()) {
                    mined.push(*block.cid());
                    a.ingest(block).await.unwrap();
                    break;
                }
            }
        }
        // New sessions that do not know the other's heads (as after a
        // restart), so that A's answer goes through B's filter.
        sa.reset();
        sb.reset();
        sa.session.their_heads = None;
        sb.session.their_heads = None;
        let union = a.len() + b_new.len();
        let rtt = lockstep(&mut a, &mut b, &mut sa, &mut sb, union, |delays, _, b| {
            if delays == 2 {
                assert!(mined.iter().all(|c| !b.contains(c)), "the filter answer hid every mined event");
            }
        })
        .await;
        assert!(mined.iter().all(|c| b.contains(c)));
        assert!(rtt <= 2, "{rtt} round trips");
    });
}

/// Blocks taken in from a message held in `Bytes` are slices of it while
/// most of it is new; when most of it is blocks already held, the new ones
/// are copied out, so that a few new blocks never keep a large message
/// alive (`Sessions::receive_shared`, `unshare`).
#[test]
fn shared_blocks_are_slices_unless_the_message_is_mostly_held_blocks() {
    block_on(async {
        use crate::store::Blockstore;
        let g = Event::genesis("shared").encode().unwrap();
        let mut a = fresh(&g).await;
        let cids = a.append_many((0..20u32).map(|i| format!("event {i}"))).await.unwrap();
        let blocks: Vec<bytes::Bytes> =
            a.store().get_many(&cids).await.unwrap().into_iter().map(|b| b.unwrap().into_parts().1).collect();
        let frame_of = |blocks: &[bytes::Bytes]| {
            bytes::Bytes::from(Message { blocks: blocks.to_vec(), ..Message::default() }.encode())
        };
        let within = |frame: &bytes::Bytes, b: &bytes::Bytes| {
            let (f, p) = (frame.as_ptr() as usize, b.as_ptr() as usize);
            (f..f + frame.len()).contains(&p)
        };
        let mut b = fresh(&g).await;
        let mut sessions = Sessions::new(SessionConfig::default());
        // All new: the stored blocks are slices of the frame.
        let frame = frame_of(&blocks[..10]);
        sessions.receive_shared(&mut b, &1u8, &frame, std::time::Duration::ZERO).await.unwrap();
        for c in &cids[..10] {
            assert!(within(&frame, b.store().get(c).await.unwrap().unwrap().bytes()));
        }
        // Ten held and one new: the new one is a copy.
        let frame = frame_of(&blocks[..11]);
        sessions.receive_shared(&mut b, &1u8, &frame, std::time::Duration::ZERO).await.unwrap();
        assert!(!within(&frame, b.store().get(&cids[10]).await.unwrap().unwrap().bytes()));
        assert_eq!(b.len(), 12);
    });
}

/// What a peer holding only the genesis lacks is read from the DAG's order
/// (`beyond`): the same events, in the same order, as the walk and sort.
#[test]
fn beyond_the_genesis_is_the_walk_in_order() {
    fn prop(seed: u64, n: u8, fan: u8, window: u8) -> bool {
        let (dag, cids) = random_dag(&mut SimRng::new(seed), usize::from(n), usize::from(fan % 4), usize::from(window));
        let heads = dag.heads();
        let mut walked = dag.difference(&heads, &cids[..1]).unwrap();
        walked.sort_unstable_by_key(|id| dag.key(*id));
        beyond(&dag, &heads, &cids[..1]).unwrap() == walked
    }
    quickcheck::QuickCheck::new().tests(200).quickcheck(prop as fn(u64, u8, u8, u8) -> bool);
}

/// A catch-up in parts through the driver: every message within the
/// limits, every block sent once, recorded as runs of the backlog (not one
/// by one), also when the server's heads move halfway (the backlog is made
/// again and what its runs carried is kept).
#[test]
fn a_reply_in_parts_sends_each_block_once_within_the_limits() {
    block_on(async {
        let g = Event::genesis("parts").encode().unwrap();
        let (mut a, mut b) = (fresh(&g).await, fresh(&g).await);
        a.append_many((0..400u32).map(|i| format!("event {i}"))).await.unwrap();
        let limits = SyncLimits { max_message_bytes: 64 << 10, ..SyncLimits::default() };
        let protocol = Bloom { limits };
        let (mut sa, mut sb) = (
            Sessions::with_seed(protocol, SessionConfig::default(), 1),
            Sessions::with_seed(protocol, SessionConfig::default(), 2),
        );
        let now = std::time::Duration::ZERO;
        sa.connect(2u8, now);
        sb.connect(1u8, now);
        let mut to_b: Vec<Vec<u8>> = sa.speak(&a, &2, now).await.unwrap().into_iter().collect();
        let mut to_a: Vec<Vec<u8>> = sb.speak(&b, &1, now).await.unwrap().into_iter().collect();
        let (mut parts, mut duplicate) = (0, 0);
        while !to_a.is_empty() || !to_b.is_empty() {
            for m in std::mem::take(&mut to_b) {
                assert!(m.len() <= limits.max_message_bytes, "{} bytes", m.len());
                parts += usize::from(Message::says_more(&m));
                let reply = sb.receive(&mut b, &1, &m, now).await.unwrap();
                duplicate += reply.received.duplicate;
                to_a.extend(reply.reply);
            }
            if parts == 2 && a.len() == 401 {
                a.append(&"while serving").await.unwrap();
            }
            for m in std::mem::take(&mut to_a) {
                to_b.extend(sa.receive(&mut a, &2, &m, now).await.unwrap().reply);
            }
            let s = &sa.state(&2).unwrap().session;
            assert!(s.sent.is_empty(), "{} blocks recorded one by one", s.sent.len());
        }
        assert!(parts >= 3, "{parts} parts");
        assert_eq!(duplicate, 0);
        assert_eq!((b.len(), b.heads()), (402, a.heads()));
    });
}
