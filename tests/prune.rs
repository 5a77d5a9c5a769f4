//! Pruning keeps the clock exact: heads, the total order, `compare`,
//! ancestry and the judgement of late events are the same on a pruned
//! replica as on an unpruned one, before and after a reopen; a pruned
//! replica asked for pruned blocks says so, and the asker stops waiting.

mod auth_common;

use std::sync::Arc;

use futures::executor::block_on;
use merkle_clock::auth::Role;
use merkle_clock::replica::{PruneError, PrunePolicy};
use merkle_clock::sim::SimRng as Rng;
use merkle_clock::store::RedbBlockstore;
use merkle_clock::sync::{Message, SessionConfig, Sessions, SyncLimits, SyncState, generate_message, receive_message};
use merkle_clock::{
    Block, Cid, ClockOrder, Event, Ingest, Ipld, MemoryBlockstore, Replica, ReplicaConfig, StoreError, StreamStore,
};
use quickcheck::{QuickCheck, TestResult};

/// A random stream of `n` events after the genesis: each takes one to three
/// earlier events as parents, mostly recent ones, so there are forks, merges
/// and long edges. Blocks in a topological order, the genesis first.
fn random_stream(seed: u64, n: usize) -> Vec<Block> {
    let mut rng = Rng::new(seed);
    let genesis = Event::genesis(format!("prune {}", seed % 3)).encode().unwrap();
    let mut blocks = vec![genesis];
    let mut heights = vec![0u64];
    for i in 0..n {
        let len = blocks.len();
        let mut parents: Vec<usize> = (0..1 + rng.index(3))
            .map(|_| if rng.chance(0.2) { rng.index(len) } else { len - 1 - rng.index(len.min(4)) })
            .collect();
        parents.sort_unstable();
        parents.dedup();
        let height = 1 + parents.iter().map(|&p| heights[p]).max().unwrap();
        let cids: Vec<Cid> = parents.iter().map(|&p| *blocks[p].cid()).collect();
        blocks.push(Event::new(height, cids, Ipld::Integer(i as i128)).encode().unwrap());
        heights.push(height);
    }
    blocks
}

/// Everything the clock says about a replica: heads, order, and for every
/// pair of events `is_ancestor` and `compare`.
fn clock_of<S: ?Sized + StreamStore>(r: &Replica<S>) -> (Vec<Cid>, Vec<Cid>, Vec<bool>, Vec<ClockOrder>) {
    let order: Vec<Cid> = r.order().collect();
    let mut ancestry = Vec::new();
    let mut compare = Vec::new();
    for a in &order {
        for b in &order {
            ancestry.push(r.dag().is_ancestor(a, b).unwrap());
            compare.push(r.dag().compare(&[*a], &[*b]).unwrap());
        }
    }
    (r.heads(), order, ancestry, compare)
}

async fn replica_of<S: StreamStore + 'static>(store: S, blocks: &[Block]) -> Replica<S> {
    let mut r = Replica::create(Arc::new(store), &blocks[0], ReplicaConfig::default()).await.unwrap();
    let report = r.ingest_many(blocks[1..].to_vec()).await.unwrap();
    assert_eq!(report.accepted.len(), blocks.len() - 1);
    r
}

/// The policy drawn from `pick`: keep the newest few, or what one event covers.
fn policy(blocks: &[Block], pick: u8) -> PrunePolicy {
    if pick.is_multiple_of(2) {
        PrunePolicy::KeepNewest(usize::from(pick / 2) % blocks.len())
    } else {
        PrunePolicy::Covered(*blocks[usize::from(pick) % blocks.len()].cid())
    }
}

/// Prunes a replica of the stream over `store` and checks the clock is
/// unchanged, then reopens it from the store and checks again.
fn prunes_exactly<S: StreamStore + 'static>(store: S, blocks: &[Block], pick: u8) {
    block_on(async {
        let mut r = replica_of(store, blocks).await;
        let before = clock_of(&r);
        let report = r.prune(policy(blocks, pick)).await.unwrap();
        assert_eq!(clock_of(&r), before, "pruning changed the clock");
        let pruned: Vec<Cid> = r.order().filter(|c| r.is_pruned(c)).collect();
        assert_eq!(pruned.len() as u64, report.events);
        assert_eq!(r.metrics().pruned, report.events);
        for head in r.heads() {
            assert!(!r.is_pruned(&head), "a head was pruned");
        }
        assert!(!r.is_pruned(&r.dag().genesis()));
        for c in &pruned {
            assert!(matches!(r.get(c).await, Err(StoreError::Pruned { cid }) if cid == *c));
        }
        let again = r.prune(policy(blocks, pick)).await.unwrap();
        assert_eq!(again.events, 0, "pruning twice pruned more");
        let store = Arc::clone(r.store());
        drop(r);
        let reopened = Replica::open(store, blocks[0].cid(), ReplicaConfig::default()).await.unwrap();
        assert_eq!(clock_of(&reopened), before, "the reopened pruned replica has another clock");
        let again: Vec<Cid> = reopened.order().filter(|c| reopened.is_pruned(c)).collect();
        assert_eq!(again, pruned, "the reopened replica forgot what was pruned");
        for c in reopened.order().filter(|c| !reopened.is_pruned(c)) {
            assert!(reopened.get(&c).await.unwrap().is_some(), "{c} is neither pruned nor stored");
        }
    });
}

fn qc() -> QuickCheck {
    QuickCheck::new().tests(40).max_tests(400)
}

/// Any DAG, any horizon, memory and redb: heads, order, `compare` and
/// `is_ancestor` are unchanged by pruning, and a reopen gives the same.
#[test]
fn prop_pruning_keeps_heads_order_and_compare() {
    fn prop(seed: u64, n: u8, pick: u8) -> TestResult {
        let blocks = random_stream(seed, usize::from(n % 40));
        prunes_exactly(MemoryBlockstore::new(), &blocks, pick);
        prunes_exactly(RedbBlockstore::in_memory().unwrap(), &blocks, pick);
        TestResult::passed()
    }
    qc().quickcheck(prop as fn(u64, u8, u8) -> TestResult);
}

/// Late events (concurrent with pruned ones, or on them) are judged exactly
/// as on an unpruned replica: the same outcome for each, the same clock,
/// forged heights refused alike.
#[test]
fn prop_late_events_are_judged_as_on_an_unpruned_replica() {
    fn prop(seed: u64, n: u8, cut: u8, pick: u8) -> TestResult {
        let blocks = random_stream(seed, 2 + usize::from(n % 40));
        let cut = 1 + usize::from(cut) % (blocks.len() - 1);
        block_on(async {
            let mut pruned = replica_of(RedbBlockstore::in_memory().unwrap(), &blocks[..cut]).await;
            let mut full = replica_of(MemoryBlockstore::new(), &blocks[..cut]).await;
            pruned.prune(policy(&blocks[..cut], pick)).await.unwrap();
            // A late event whose height lies, on a (maybe pruned) event.
            let mut late = blocks[cut..].to_vec();
            let base = &blocks[usize::from(pick) % cut];
            let height = base.cid().hash().digest()[0] as u64 % 3;
            late.push(Event::new(height + 7, vec![*base.cid()], "liar").encode().unwrap());
            let mut rng = Rng::new(seed ^ 0x5eed);
            rng.shuffle(&mut late);
            for b in late {
                let a = pruned.ingest(b.clone()).await.unwrap();
                let f = full.ingest(b).await.unwrap();
                assert_eq!(a, f, "a late event was judged differently");
            }
            assert_eq!(clock_of(&pruned), clock_of(&full));
        });
        TestResult::passed()
    }
    qc().quickcheck(prop as fn(u64, u8, u8, u8) -> TestResult);
}

/// On a signed stream, membership events are never pruned, and late events
/// concurrent with pruned ones are judged by the membership exactly as on an
/// unpruned replica, also after a reopen.
#[test]
fn late_events_on_a_pruned_signed_stream_are_judged_by_the_same_membership() {
    use auth_common::{Builder, key};
    let (admin, writer, stranger) = (key(1), key(2), key(3));
    let mut s = Builder::new(&[&admin]);
    let grant = s.grant(&[], &admin, &writer, Role::Writer);
    let mut chain = vec![s.write(&[&grant], &writer, "w0")];
    for i in 1..6 {
        let next = s.write(&[chain.last().unwrap()], &writer, &format!("w{i}"));
        chain.push(next);
    }
    // Late: one by the writer on an event about to be pruned, one by a stranger.
    let by_writer = s.write(&[&chain[1]], &writer, "late");
    let by_stranger = s.write(&[&chain[1]], &stranger, "intruder");
    let revoke = s.revoke(&[chain.last().unwrap()], &admin, &writer);
    let history: Vec<Block> =
        std::iter::once(s.genesis.clone()).chain([grant.clone()]).chain(chain).chain([revoke]).collect();
    let mut full = auth_common::replica(&history[0]);
    block_on(async {
        let store = Arc::new(RedbBlockstore::in_memory().unwrap());
        let mut pruned = Replica::create(Arc::clone(&store), &history[0], ReplicaConfig::default()).await.unwrap();
        pruned.ingest_many(history[1..].to_vec()).await.unwrap();
        full.ingest_many(history[1..].to_vec()).await.unwrap();
        let report = pruned.prune(PrunePolicy::KeepNewest(1)).await.unwrap();
        assert!(!pruned.is_pruned(grant.cid()), "a membership event was pruned");
        assert!(report.kept >= 2, "the genesis and the grant are kept: {report:?}");
        let mut reopened = Replica::open(store, &history[0].cid().to_owned(), ReplicaConfig::default()).await.unwrap();
        for late in [&by_writer, &by_stranger] {
            let want = full.ingest(late.clone()).await.unwrap();
            assert_eq!(pruned.ingest(late.clone()).await.unwrap(), want);
            assert_eq!(reopened.ingest(late.clone()).await.unwrap(), want);
        }
        assert!(matches!(full.ingest(by_writer.clone()).await.unwrap(), Ingest::Duplicate));
        assert_eq!(pruned.heads(), full.heads());
        assert_eq!(reopened.heads(), full.heads());
        assert_eq!(pruned.members(), full.members());
        assert_eq!(reopened.members(), full.members());
    });
}

#[test]
fn covering_an_unknown_event_is_a_typed_error_and_prunes_nothing() {
    let blocks = random_stream(3, 10);
    block_on(async {
        let mut r = replica_of(MemoryBlockstore::new(), &blocks).await;
        let stranger = Event::genesis("elsewhere").encode().unwrap();
        let e = r.prune(PrunePolicy::Covered(*stranger.cid())).await.unwrap_err();
        assert!(matches!(e, PruneError::UnknownEvent { cid } if cid == *stranger.cid()));
        assert_eq!(r.metrics().pruned, 0);
    });
}

/// Runs two replicas' sync until both are silent, or panics after `max` rounds.
async fn sync_until_quiet<S: StreamStore + ?Sized, T: StreamStore + ?Sized>(
    a: &mut Replica<S>,
    to_b: &mut SyncState,
    b: &mut Replica<T>,
    to_a: &mut SyncState,
    max: usize,
) -> usize {
    let limits = SyncLimits::default();
    for round in 0..max {
        let from_a = generate_message(a, to_b).await.unwrap();
        let from_b = generate_message(b, to_a).await.unwrap();
        if from_a.is_none() && from_b.is_none() {
            return round;
        }
        if let Some(m) = from_a {
            receive_message(b, to_a, Message::decode(&m.encode(), &limits).unwrap()).await.unwrap();
        }
        if let Some(m) = from_b {
            receive_message(a, to_b, Message::decode(&m.encode(), &limits).unwrap()).await.unwrap();
        }
    }
    panic!("the sync did not go quiet in {max} rounds");
}

/// Hostile for a pruned replica, harmless for the asker: a full replica
/// that syncs from a pruned one gets every event it can, is told which
/// ancestors are pruned, stops asking, and reports them as unavailable; the
/// session goes quiet and nothing either side held is lost.
#[test]
fn a_full_replica_syncing_from_a_pruned_one_is_told_what_is_pruned_and_goes_quiet() {
    let blocks = random_stream(11, 60);
    block_on(async {
        let mut pruned = replica_of(MemoryBlockstore::new(), &blocks).await;
        pruned.prune(PrunePolicy::KeepNewest(10)).await.unwrap();
        let before = clock_of(&pruned);
        let mut fresh = replica_of(MemoryBlockstore::new(), &blocks[..1]).await;
        let mine = fresh.append(&"a local event").await.unwrap();
        let (mut to_fresh, mut to_pruned) = (SyncState::with_seed(1), SyncState::with_seed(2));
        sync_until_quiet(&mut pruned, &mut to_fresh, &mut fresh, &mut to_pruned, 20).await;
        let unavailable = to_pruned.unavailable(&fresh);
        assert!(!unavailable.is_empty(), "nothing reported unavailable");
        assert_eq!(unavailable, fresh.missing(), "every missing event is one the peer pruned");
        assert!(unavailable.iter().all(|c| pruned.is_pruned(c)));
        assert_eq!(to_pruned.pruned_by_peer(), unavailable.as_slice());
        // Nothing lost: the pruned side took the fresh side's event, keeps its clock otherwise.
        assert!(pruned.contains(&mine) && fresh.contains(&mine));
        assert_eq!(clock_of(&pruned).1.len(), before.1.len() + 1);
        // Asked again in a new session, it says the same, and the asker does not ask again.
        to_pruned.reset();
        to_fresh.reset();
        sync_until_quiet(&mut pruned, &mut to_fresh, &mut fresh, &mut to_pruned, 20).await;
        assert_eq!(to_pruned.unavailable(&fresh), unavailable);
    });
}

/// A want for pruned blocks (however many, whatever the asker's state) gets
/// no block and a `pruned` answer naming them: never an error or a panic.
#[test]
fn wants_for_pruned_blocks_are_answered_pruned() {
    let blocks = random_stream(5, 30);
    block_on(async {
        let mut pruned = replica_of(MemoryBlockstore::new(), &blocks).await;
        pruned.prune(PrunePolicy::KeepNewest(3)).await.unwrap();
        let mut gone: Vec<Cid> = pruned.order().filter(|c| pruned.is_pruned(c)).collect();
        gone.sort_unstable();
        let mut state = SyncState::with_seed(3);
        let mut want = Message::default();
        (want.want, want.seq, want.heads) = (gone.clone(), 1, vec![*blocks[0].cid()]);
        receive_message(&mut pruned, &mut state, want).await.unwrap();
        let answer = generate_message(&pruned, &mut state).await.unwrap().expect("an answer");
        let answer = Message::decode(&answer.encode(), &SyncLimits::default()).unwrap();
        assert_eq!(answer.pruned, gone);
        for b in &answer.blocks {
            assert!(!pruned.is_pruned(&merkle_clock::cid_of(b)), "a pruned block was sent");
        }
    });
}

/// The session driver surfaces it too: after the sessions go quiet, the
/// full side's `Sessions::unavailable` lists exactly the missing events,
/// every one of them pruned on the only peer.
#[test]
fn sessions_list_what_no_peer_can_supply() {
    use std::collections::VecDeque;
    use std::time::Duration;
    let blocks = random_stream(17, 40);
    block_on(async {
        let mut pruned = replica_of(MemoryBlockstore::new(), &blocks).await;
        pruned.prune(PrunePolicy::KeepNewest(5)).await.unwrap();
        let mut fresh = replica_of(MemoryBlockstore::new(), &blocks[..1]).await;
        let now = Duration::ZERO;
        let (mut at_pruned, mut at_fresh) =
            (Sessions::new(SessionConfig::default()), Sessions::new(SessionConfig::default()));
        assert!(at_fresh.unavailable(&fresh).is_empty(), "no peer, nothing listed");
        let mut to_fresh: VecDeque<Vec<u8>> =
            at_pruned.speak(&pruned, &"fresh", now).await.unwrap().into_iter().collect();
        let mut to_pruned: VecDeque<Vec<u8>> =
            at_fresh.speak(&fresh, &"pruned", now).await.unwrap().into_iter().collect();
        for _ in 0..100 {
            if let Some(m) = to_fresh.pop_front() {
                to_pruned.extend(at_fresh.receive(&mut fresh, &"pruned", &m, now).await.unwrap().reply);
            } else if let Some(m) = to_pruned.pop_front() {
                to_fresh.extend(at_pruned.receive(&mut pruned, &"fresh", &m, now).await.unwrap().reply);
            } else {
                break;
            }
        }
        assert!(to_fresh.is_empty() && to_pruned.is_empty(), "the sessions did not go quiet");
        let unavailable = at_fresh.unavailable(&fresh);
        assert!(!unavailable.is_empty());
        assert_eq!(unavailable, fresh.missing());
        assert!(unavailable.iter().all(|c| pruned.is_pruned(c)));
        // Nothing more can come from that peer: the session is settled, and
        // its timeout does not re-poll it (anti-entropy aside).
        assert!(at_fresh.settled(&fresh, &"pruned"), "a pruned peer with nothing left to give is settled");
        let later = now + SessionConfig::default().timeout.unwrap() * 3;
        let due = at_fresh.tick(&fresh, later).await.unwrap();
        assert!(due.restarts.is_empty() && due.messages.is_empty(), "re-polled: {:?}", due.restarts);
    });
}
