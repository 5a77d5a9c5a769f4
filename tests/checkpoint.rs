//! Checkpoints (`merkle_clock::checkpoint`): the resumed fold's law over
//! random histories, who may write a checkpoint, and every hostile input
//! the issue names (a checkpoint by an unauthorised key, a skeleton that
//! does not match, a state block that does not hash, a late event whose
//! height disagrees with the skeleton), each a typed error.
//!
//! A *world* is three replicas of one open stream. Each step appends a
//! random operation (counter, LWW map, LWW register, add-wins set) on one
//! replica, delivers a random part of one replica's events to another, or
//! has a replica write a checkpoint of five reducers. Replicas diverge for
//! many steps, so checkpoints are written while concurrent branches exist
//! elsewhere: those branches' events are late for that checkpoint.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;

use futures::executor::block_on;
use merkle_clock::auth::{self, Role, Signer};
use merkle_clock::checkpoint::{self, Checkpoint, CheckpointConfig, CheckpointError, SkeletonError, SkeletonShape};
use merkle_clock::crdt::{
    AddWinsSet, Counter, CounterOp, Fold, FoldError, Log, LwwMap, LwwRegister, MapOp, RegisterOp, Resumable, SetOp,
};
use merkle_clock::replica::{OpenError, PrunePolicy, RejectReason, ShallowError};
use merkle_clock::sim::SimRng as Rng;
use merkle_clock::{
    Block, Blockstore, Cid, Event, Ingest, Ipld, MemoryBlockstore, Replica, ReplicaConfig, StoreError, StreamStore,
};
use quickcheck::{Gen, QuickCheck};

type R = Replica<MemoryBlockstore>;

async fn replica(genesis: &Block) -> R {
    Replica::create(Arc::new(MemoryBlockstore::new()), genesis, ReplicaConfig::default()).await.unwrap()
}

/// The five reducers a world checkpoints, folded over one replica.
struct Folds {
    counter: Fold<Counter>,
    map: Fold<LwwMap<String, u32>>,
    register: Fold<LwwRegister<u32>>,
    set: Fold<AddWinsSet<u8>>,
    log: Fold<Log<Ipld>>,
}

impl Folds {
    async fn of(r: &R) -> Folds {
        let mut f = Folds {
            counter: Fold::new(Counter),
            map: Fold::new(LwwMap::new()),
            register: Fold::new(LwwRegister::new()),
            set: Fold::new(AddWinsSet::new()),
            log: Fold::new(Log::new()),
        };
        f.update(r).await;
        f
    }

    async fn update(&mut self, r: &R) {
        self.counter.update(r).await.unwrap();
        self.map.update(r).await.unwrap();
        self.register.update(r).await.unwrap();
        self.set.update(r).await.unwrap();
        self.log.update(r).await.unwrap();
    }

    async fn checkpoint(r: &mut R) -> Checkpoint {
        let f = Folds::of(r).await;
        let states: [(&str, &dyn checkpoint::SavedState); 5] =
            [("counter", &f.counter), ("map", &f.map), ("register", &f.register), ("set", &f.set), ("log", &f.log)];
        checkpoint::build(r, &states, &CheckpointConfig::with_shape(SkeletonShape::new(4, 3))).await.unwrap()
    }
}

struct World {
    rng: Rng,
    replicas: Vec<R>,
    /// Every add of the set, by element.
    adds: Vec<(u8, Cid)>,
    /// Each checkpoint and the replica that wrote it (whose store holds its
    /// state and skeleton blocks: sync moves events, not those).
    checkpoints: Vec<(usize, Checkpoint)>,
}

impl World {
    /// Three replicas of an open stream, or (`signed`) of a stream whose
    /// admin signs every event and checkpoint, after granting a writer on
    /// the first replica (so skeleton entries carry membership rows).
    async fn new(seed: u64, signed: bool) -> World {
        let [admin, writer, _, _] = keys();
        let genesis = match signed {
            false => Event::genesis("checkpoint properties").encode().unwrap(),
            true => auth::genesis(&"checkpoint properties", &[admin.public()]).unwrap(),
        };
        let mut replicas = Vec::new();
        for _ in 0..3 {
            let mut r = replica(&genesis).await;
            if signed {
                r.set_signer(Some(admin.clone()));
            }
            replicas.push(r);
        }
        if signed {
            replicas[0].grant(writer.public(), Role::Writer).await.unwrap();
        }
        World { rng: Rng::new(seed), replicas, adds: Vec::new(), checkpoints: Vec::new() }
    }

    /// A world of an open stream after 60 random steps.
    async fn ran(seed: u64) -> World {
        World::ran_with(seed, false).await
    }

    /// A world after 60 random steps.
    async fn ran_with(seed: u64, signed: bool) -> World {
        let mut w = World::new(seed, signed).await;
        w.run(60).await;
        w
    }

    async fn append(&mut self, i: usize) {
        let n = self.rng.below(100) as u32;
        let key = format!("k{}", self.rng.index(3));
        let elem = self.rng.index(3) as u8;
        let pick = self.rng.next_u64();
        let r = &mut self.replicas[i];
        match self.rng.index(9) {
            0 => r.append(&CounterOp::Increment(u64::from(n))).await,
            1 => r.append(&CounterOp::Decrement(u64::from(n))).await,
            2 => r.append(&MapOp::Set { key, value: n }).await,
            3 => r.append(&MapOp::<String, u32>::Delete { key }).await,
            4 => r.append(&RegisterOp::Set(n)).await,
            5 => r.append(&RegisterOp::<u32>::Clear).await,
            6 | 7 => {
                let cid = r.append(&SetOp::Add(elem)).await.unwrap();
                self.adds.push((elem, cid));
                Ok(cid)
            }
            _ => {
                // Some of the element's adds, seen here or not.
                let observed: Vec<Cid> = (self.adds.iter().filter(|(e, _)| *e == elem).enumerate())
                    .filter(|(k, _)| pick >> (k % 64) & 1 == 1)
                    .map(|(_, (_, c))| *c)
                    .collect();
                r.append(&SetOp::Remove { elem, observed }).await
            }
        }
        .unwrap();
    }

    async fn deliver(&mut self, from: usize, to: usize, all: bool) {
        let mut blocks = Vec::new();
        for cid in self.replicas[from].order().collect::<Vec<_>>() {
            if all || self.rng.chance(0.5) {
                blocks.push(self.replicas[from].get(&cid).await.unwrap().unwrap());
            }
        }
        self.rng.shuffle(&mut blocks);
        self.replicas[to].ingest_many(blocks).await.unwrap();
    }

    async fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            let i = self.rng.index(3);
            match self.rng.index(10) {
                0..=5 => self.append(i).await,
                6..=8 => {
                    let to = self.rng.index(3);
                    self.deliver(i, to, false).await;
                }
                _ => {
                    let cp = Folds::checkpoint(&mut self.replicas[i]).await;
                    self.checkpoints.push((i, cp));
                }
            }
        }
        for i in 1..3 {
            self.deliver(i, 0, true).await;
        }
    }
}

/// Feeds a new replica the events of `from` below and including the
/// checkpoint and its state block from `source`, then checks a fold of
/// `reducer` resumed from the checkpoint there (a replica that, half the
/// time, prunes everything the checkpoint covers), updated after each
/// random batch of `from`'s other events, against the fold from the genesis
/// over all of `from`.
async fn resumed_equals_genesis<Red>(
    reducer: Red,
    name: &str,
    (from, source): (&R, &MemoryBlockstore),
    cp: &Checkpoint,
    rng: &mut Rng,
) -> bool
where
    Red: Resumable + Clone,
    Red::State: PartialEq + Debug,
{
    let mut to = replica(&from.get(from.stream_id()).await.unwrap().unwrap()).await;
    let dag = from.dag();
    let past: HashSet<Cid> = dag.difference(&[cp.cid], &[]).unwrap().into_iter().map(|id| dag.cid(id)).collect();
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    for cid in from.order() {
        let block = from.get(&cid).await.unwrap().unwrap();
        if past.contains(&cid) { first.push(block) } else { rest.push(block) }
    }
    rng.shuffle(&mut first);
    to.ingest_many(first).await.unwrap();
    // The state block travels with the checkpoint.
    let state = source.get(&cp.states[name]).await.unwrap().unwrap();
    to.store().put(state).await.unwrap();
    let mut resumed = Fold::resume(reducer.clone(), &to, cp, name).await.unwrap();
    resumed.update(&to).await.unwrap();
    // Half the time the new replica also drops the payloads the checkpoint covers.
    if rng.chance(0.5) {
        to.prune(PrunePolicy::Covered(cp.cid)).await.unwrap();
    }
    rng.shuffle(&mut rest);
    while !rest.is_empty() {
        let batch: Vec<Block> = rest.drain(..rest.len().min(1 + rng.index(6))).collect();
        to.ingest_many(batch).await.unwrap();
        resumed.update(&to).await.unwrap();
    }
    assert_eq!(to.len(), from.len());
    let mut genesis = Fold::new(reducer);
    genesis.update(from).await.unwrap();
    assert_eq!(resumed.state(), genesis.state(), "{name}, resumed from {}", cp.cid);
    true
}

fn qc(tests: u64) -> QuickCheck {
    QuickCheck::new().tests(tests).max_tests(tests * 10).rng(Gen::new(24))
}

/// A fold resumed from any checkpoint of a random history (three replicas
/// with concurrent branches; the events concurrent with the checkpoint
/// arrive after it, in random batches; the resuming replica pruned or not)
/// equals the fold from the genesis on a full replica, for each of the five
/// ready-made reducers.
#[test]
fn prop_fold_resumed_from_any_checkpoint_equals_fold_from_genesis() {
    fn p(seed: u64) -> bool {
        block_on(async {
            let w = World::ran(seed).await;
            let mut rng = Rng::new(seed ^ 0x5eed);
            let r0 = &w.replicas[0];
            for (builder, cp) in &w.checkpoints {
                let src = (r0, w.replicas[*builder].store().as_ref());
                assert!(cp.check_trust(None, &[cp.cid]).is_ok());
                cp.verify_against(r0, src.1).await.unwrap();
                resumed_equals_genesis(Counter, "counter", src, cp, &mut rng).await;
                resumed_equals_genesis(LwwMap::<String, u32>::new(), "map", src, cp, &mut rng).await;
                resumed_equals_genesis(LwwRegister::<u32>::new(), "register", src, cp, &mut rng).await;
                resumed_equals_genesis(AddWinsSet::<u8>::new(), "set", src, cp, &mut rng).await;
                resumed_equals_genesis(Log::<Ipld>::new(), "log", src, cp, &mut rng).await;
            }
            true
        })
    }
    qc(30).quickcheck(p as fn(u64) -> bool);
}

/// The worlds do what the property needs: checkpoints with events
/// concurrent to them that sort below their cut.
#[test]
fn worlds_have_late_events_below_checkpoints() {
    block_on(async {
        let mut late = 0;
        for seed in 0..10 {
            let w = World::ran(seed).await;
            let dag = w.replicas[0].dag();
            for (_, cp) in &w.checkpoints {
                let top = cp.parents.iter().map(|p| dag.height(dag.id(p).unwrap())).max().unwrap();
                let outside = dag.difference(&dag.heads(), &cp.parents).unwrap();
                late += outside.iter().filter(|id| dag.height(**id) <= top).count();
            }
        }
        assert!(late > 20, "only {late} late events");
    });
}

async fn counted(r: &mut R, n: u64) {
    for i in 0..n {
        r.append(&CounterOp::Increment(i)).await.unwrap();
    }
}

/// The resumed fold reads no event below the cut, and the log puts an event
/// concurrent with the checkpoint at its place in the order, not at the end.
#[test]
fn the_log_puts_a_late_event_at_its_place() {
    block_on(async {
        let genesis = Event::genesis("late log").encode().unwrap();
        let (mut a, mut b) = (replica(&genesis).await, replica(&genesis).await);
        let late = b.append(&"late, height 1").await.unwrap();
        counted(&mut a, 3).await;
        let mut log = Fold::new(Log::<Ipld>::new());
        log.update(&a).await.unwrap();
        let cp = checkpoint::build(&mut a, &[("log", &log)], &CheckpointConfig::default()).await.unwrap();
        let mut resumed = Fold::resume(Log::<Ipld>::new(), &a, &cp, "log").await.unwrap();
        let report = resumed.update(&a).await.unwrap();
        assert_eq!((report.covered, report.applied), (4, 1)); // genesis + 3 below; the checkpoint applied
        a.ingest(b.get(&late).await.unwrap().unwrap()).await.unwrap();
        resumed.update(&a).await.unwrap();
        let mut genesis_fold = Fold::new(Log::<Ipld>::new());
        genesis_fold.update(&a).await.unwrap();
        assert_eq!(resumed.state(), genesis_fold.state());
        let heights: Vec<u64> = resumed.state().iter().map(|e| e.height).collect();
        assert_eq!(heights, [1, 1, 2, 3, 4]);
        assert!(resumed.state().iter().any(|e| e.cid == late));
    });
}

/// A stream with an admin (key seed 1) who granted a writer (seed 2): the
/// admin, the writer, the genesis and the admin's replica.
async fn team() -> (Signer, Signer, Block, R) {
    let (admin, writer) = (Signer::from_seed(&[1; 32]), Signer::from_seed(&[2; 32]));
    let genesis = auth::genesis(&"team", &[admin.public()]).unwrap();
    let mut r = replica(&genesis).await;
    r.set_signer(Some(admin.clone()));
    r.grant(writer.public(), Role::Writer).await.unwrap();
    (admin, writer, genesis, r)
}

/// Who may write a checkpoint on a stream with admins: an admin in its past.
/// A writer's checkpoint is an ordinary event (the stream takes it) that
/// nobody trusts; `latest` passes over it.
#[test]
fn a_checkpoint_by_a_writer_is_not_trusted() {
    block_on(async {
        let (admin, writer, _, mut r) = team().await;
        let by_admin = checkpoint::build(&mut r, &[], &CheckpointConfig::default()).await.unwrap();
        r.set_signer(Some(writer.clone()));
        let by_writer = checkpoint::build(&mut r, &[], &CheckpointConfig::default()).await.unwrap();
        assert!(r.contains(&by_writer.cid));
        by_admin.check_trust_in(&r, &[]).unwrap();
        match by_writer.check_trust_in(&r, &[]) {
            Err(CheckpointError::Unauthorized { cid, author }) => {
                assert_eq!((cid, author), (by_writer.cid, Some(writer.public())));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(checkpoint::latest(&r, &[]).await.unwrap(), Some(by_admin.clone()));
        // After the first admin is revoked, its old checkpoint stays trusted
        // (it was an admin in that checkpoint's past); a new admin's is too.
        r.set_signer(Some(admin.clone()));
        let second = Signer::from_seed(&[3; 32]);
        r.grant(second.public(), Role::Admin).await.unwrap();
        r.set_signer(Some(second.clone()));
        r.revoke(admin.public()).await.unwrap();
        let by_second = checkpoint::build(&mut r, &[], &CheckpointConfig::default()).await.unwrap();
        by_second.check_trust_in(&r, &[]).unwrap();
        by_admin.check_trust_in(&r, &[]).unwrap();
        // The user may always name a checkpoint they trust.
        by_writer.check_trust_in(&r, &[by_writer.cid]).unwrap();
    });
}

/// On an open stream a checkpoint is trusted only by its CID.
#[test]
fn an_open_stream_checkpoint_needs_its_cid() {
    block_on(async {
        let mut r = replica(&Event::genesis("open").encode().unwrap()).await;
        counted(&mut r, 2).await;
        let cp = checkpoint::build(&mut r, &[], &CheckpointConfig::default()).await.unwrap();
        assert!(matches!(cp.check_trust_in(&r, &[]), Err(CheckpointError::Untrusted { cid }) if cid == cp.cid));
        cp.check_trust_in(&r, &[cp.cid]).unwrap();
        assert_eq!(checkpoint::latest(&r, &[]).await.unwrap(), None);
        assert_eq!(checkpoint::latest(&r, &[cp.cid]).await.unwrap(), Some(cp));
    });
}

/// A replica with a checkpoint's blocks, for the hostile cases: `n` counter
/// events, a checkpoint of the counter with 4-entry leaves and 3-way
/// branches (so a lookup crosses several parts).
async fn with_checkpoint(n: u64) -> (R, Checkpoint) {
    let mut r = replica(&Event::genesis("hostile").encode().unwrap()).await;
    counted(&mut r, n).await;
    let mut counter = Fold::new(Counter);
    counter.update(&r).await.unwrap();
    let config = CheckpointConfig::with_shape(SkeletonShape::new(4, 3));
    let cp = checkpoint::build(&mut r, &[("counter", &counter)], &config).await.unwrap();
    (r, cp)
}

/// The blocks of `r`'s events it still holds (not pruned), in the order.
async fn held_blocks(r: &R) -> Vec<Block> {
    let mut out = Vec::new();
    for cid in r.order() {
        if let Ok(Some(b)) = r.get(&cid).await {
            out.push(b);
        }
    }
    out
}

/// A copy of `r`'s store where `cid` holds other bytes (a lying peer).
async fn tampered(r: &R, cid: &Cid) -> MemoryBlockstore {
    let store = MemoryBlockstore::new();
    store.put_many(held_blocks(r).await).await.unwrap();
    let mut bytes = r.store().get(cid).await.unwrap().unwrap().bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    store.put(Block::new_unchecked(*cid, bytes)).await.unwrap();
    store
}

#[test]
fn a_state_block_that_does_not_hash_is_refused() {
    block_on(async {
        let (r, cp) = with_checkpoint(5).await;
        let state = cp.states["counter"];
        let store = tampered(&r, &state).await;
        match cp.state_block(&store, "counter").await {
            Err(CheckpointError::StateHash { cid, actual }) => assert!(cid == state && actual != state),
            other => panic!("{other:?}"),
        }
        assert!(matches!(cp.state_block(&store, "nope").await, Err(CheckpointError::NoSuchState { .. })));
        let empty = MemoryBlockstore::new();
        assert!(matches!(cp.state_block(&empty, "counter").await, Err(CheckpointError::StateMissing { .. })));
        // The honest block loads, and a block of another reducer's state does not decode as this one.
        let block = cp.state_block(r.store().as_ref(), "counter").await.unwrap();
        assert_eq!(Counter.load(block.bytes()).unwrap(), 10);
        assert!(LwwMap::<String, u32>::new().load(block.bytes()).is_err());
    });
}

/// Every part of the skeleton can be fetched and checked alone, and a part
/// that does not hash to its link is refused on the way down.
#[test]
fn a_skeleton_part_that_does_not_hash_is_refused() {
    block_on(async {
        let (r, cp) = with_checkpoint(40).await;
        let store = r.store().as_ref();
        for cid in r.order().take(41) {
            let entry = checkpoint::skeleton::lookup(store, &cp.skeleton, &cid).await.unwrap().unwrap();
            let id = r.dag().id(&cid).unwrap();
            assert_eq!((entry.cid, entry.height), (cid, r.dag().height(id)));
            assert!(!entry.membership && !entry.checkpoint);
        }
        assert_eq!(checkpoint::skeleton::lookup(store, &cp.skeleton, &cp.cid).await.unwrap(), None);
        let lying = tampered(&r, &cp.skeleton).await;
        let any = r.order().nth(7).unwrap();
        match checkpoint::skeleton::lookup(&lying, &cp.skeleton, &any).await {
            Err(SkeletonError::Hash { cid, .. }) => assert_eq!(cid, cp.skeleton),
            other => panic!("{other:?}"),
        }
        let missing = MemoryBlockstore::new();
        assert!(matches!(
            checkpoint::skeleton::lookup(&missing, &cp.skeleton, &any).await,
            Err(SkeletonError::Missing { .. })
        ));
    });
}

/// A checkpoint whose skeleton is well formed but describes another history
/// (here: an older cut's skeleton under a newer cut, with the count fixed).
#[test]
fn a_skeleton_that_does_not_match_the_history_is_refused() {
    block_on(async {
        let (mut r, old) = with_checkpoint(5).await;
        old.verify_against(&r, r.store().as_ref()).await.unwrap();
        counted(&mut r, 2).await;
        let count = r.len() as u64;
        let forged = Ipld::Map(
            [(
                "checkpoint".to_string(),
                Ipld::Map(
                    [
                        ("count".to_string(), Ipld::Integer(count.into())),
                        ("flagged".to_string(), Ipld::Link(old.flagged)),
                        ("skeleton".to_string(), Ipld::Link(old.skeleton)),
                        ("states".to_string(), Ipld::Map(Default::default())),
                    ]
                    .into(),
                ),
            )]
            .into(),
        );
        let cid = r.append(&forged).await.unwrap();
        let cp = Checkpoint::from_block(&r.get(&cid).await.unwrap().unwrap()).unwrap().unwrap();
        match cp.verify_against(&r, r.store().as_ref()).await {
            Err(CheckpointError::SkeletonMismatch { checkpoint, reason }) => {
                assert_eq!(checkpoint, cid);
                assert!(reason.contains("entries"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    });
}

/// A late event (concurrent with the checkpoint) checked against the
/// skeleton alone: its parents' heights come from skeleton parts.
#[test]
fn a_late_event_whose_height_disagrees_with_the_skeleton_is_refused() {
    block_on(async {
        let (r, cp) = with_checkpoint(20).await;
        let store = r.store().as_ref();
        let parent = r.order().nth(9).unwrap(); // height 9
        let nothing_held = |_: &Cid| None;
        let honest = Event::new(10, vec![parent], "late").encode().unwrap();
        let entries = cp.check_late_event(store, &honest, nothing_held).await.unwrap();
        assert_eq!(entries.iter().map(|e| (e.cid, e.height)).collect::<Vec<_>>(), [(parent, 9)]);
        let lying = Event::new(3, vec![parent], "late").encode().unwrap();
        match cp.check_late_event(store, &lying, nothing_held).await {
            Err(CheckpointError::LateHeight { cid, claimed, expected }) => {
                assert_eq!((cid, claimed, expected), (*lying.cid(), 3, 10));
            }
            other => panic!("{other:?}"),
        }
        let stranger = Event::genesis("elsewhere").encode().unwrap();
        let orphan = Event::new(1, vec![*stranger.cid()], "late").encode().unwrap();
        assert!(matches!(
            cp.check_late_event(store, &orphan, nothing_held).await,
            Err(CheckpointError::UnknownParent { parent, .. }) if parent == *stranger.cid()
        ));
        // A parent the replica holds needs no lookup.
        let held = Event::new(10, vec![*stranger.cid()], "late").encode().unwrap();
        assert!(cp.check_late_event(store, &held, |_: &Cid| Some(9)).await.unwrap().is_empty());
    });
}

#[test]
fn a_malformed_checkpoint_payload_is_a_typed_error() {
    block_on(async {
        let mut r = replica(&Event::genesis("malformed").encode().unwrap()).await;
        let bad = Ipld::Map([("checkpoint".to_string(), Ipld::Integer(5))].into());
        let cid = r.append(&bad).await.unwrap();
        let block = r.get(&cid).await.unwrap().unwrap();
        assert!(matches!(Checkpoint::from_block(&block), Err(CheckpointError::Malformed { cid: c, .. }) if c == cid));
        let plain = r.append(&"not a checkpoint").await.unwrap();
        assert_eq!(Checkpoint::from_block(&r.get(&plain).await.unwrap().unwrap()).unwrap(), None);
    });
}

/// `build` refuses a fold that is behind, and a state over the size limit;
/// the replica gains no event either way.
#[test]
fn build_refuses_stale_or_oversized_states() {
    block_on(async {
        let mut r = replica(&Event::genesis("build").encode().unwrap()).await;
        let mut log = Fold::new(Log::<Ipld>::new());
        log.update(&r).await.unwrap();
        counted(&mut r, 3).await;
        let before = r.len();
        let err = checkpoint::build(&mut r, &[("log", &log)], &CheckpointConfig::default()).await.unwrap_err();
        assert!(matches!(err, CheckpointError::FoldBehind { folded: 1, events: 4, .. }), "{err}");
        log.update(&r).await.unwrap();
        let mut tiny = CheckpointConfig::default();
        tiny.max_state_bytes = 16;
        let err = checkpoint::build(&mut r, &[("log", &log)], &tiny).await.unwrap_err();
        assert!(matches!(err, CheckpointError::StateTooLarge { max: 16, .. }), "{err}");
        assert_eq!(r.len(), before);
        // A state with no DAG-CBOR form (a sum beyond 64 bits) is refused by `save`.
        assert!(matches!(Counter.save(&(1i128 << 70)), Err(merkle_clock::crdt::StateError::Encode(_))));
    });
}

/// More heads than an event may have parents: `build` says so and appends
/// nothing (an append first merges them).
#[test]
fn build_refuses_more_heads_than_an_event_may_have_parents() {
    block_on(async {
        let genesis = Event::genesis("heads").encode().unwrap();
        let mut config = ReplicaConfig::default();
        config.limits.max_parents = 2;
        let mut r = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, config).await.unwrap();
        for i in 0..3u32 {
            let mut other = replica(&genesis).await;
            let cid = other.append(&i).await.unwrap();
            r.ingest(other.get(&cid).await.unwrap().unwrap()).await.unwrap();
        }
        let err = checkpoint::build(&mut r, &[], &CheckpointConfig::default()).await.unwrap_err();
        assert!(matches!(err, CheckpointError::TooManyHeads { heads: 3, max: 2 }), "{err}");
        assert_eq!(r.len(), 4);
        r.append(&"merge").await.unwrap();
        r.append(&"merge again").await.unwrap();
        assert_eq!(r.heads().len(), 1);
        checkpoint::build(&mut r, &[], &CheckpointConfig::default()).await.unwrap();
    });
}

/// A replica that pruned everything a checkpoint covers cannot fold from
/// the genesis (a typed `Pruned` error), resumes from the checkpoint instead,
/// and stays equal to a full replica's fold from the genesis as events
/// concurrent with the checkpoint (forked below its cut) arrive.
#[test]
fn a_pruned_replica_folds_from_the_checkpoint_that_covers_its_history() {
    block_on(async {
        let genesis = Event::genesis("pruned").encode().unwrap();
        let (mut pruned, mut full, mut other) =
            (replica(&genesis).await, replica(&genesis).await, replica(&genesis).await);
        counted(&mut pruned, 10).await;
        // `other` forks at height 3, below the cut to come.
        let shared = held_blocks(&pruned).await.into_iter().take(4).collect();
        other.ingest_many(shared).await.unwrap();
        let mut map = Fold::new(LwwMap::<String, u32>::new());
        let mut counter = Fold::new(Counter);
        map.update(&pruned).await.unwrap();
        counter.update(&pruned).await.unwrap();
        let cp = checkpoint::build(&mut pruned, &[("counter", &counter), ("map", &map)], &CheckpointConfig::default())
            .await
            .unwrap();
        pruned.append(&MapOp::Set { key: "a".to_string(), value: 1u32 }).await.unwrap();
        full.ingest_many(held_blocks(&pruned).await).await.unwrap();
        let report = pruned.prune(PrunePolicy::Covered(cp.cid)).await.unwrap();
        assert_eq!(report.events, 10, "the ten increments; the genesis is kept");
        let err = Fold::new(Counter).update(&pruned).await.unwrap_err();
        assert!(matches!(err, FoldError::Store(StoreError::Pruned { .. })), "{err}");

        let mut resumed_counter = Fold::resume(Counter, &pruned, &cp, "counter").await.unwrap();
        let mut resumed_map = Fold::resume(LwwMap::<String, u32>::new(), &pruned, &cp, "map").await.unwrap();
        for step in 0..3u32 {
            other.append(&CounterOp::Increment(100)).await.unwrap();
            other.append(&MapOp::Set { key: "a".to_string(), value: 10 + step }).await.unwrap();
            let from_other = held_blocks(&other).await;
            full.ingest_many(from_other.clone()).await.unwrap();
            full.ingest_many(held_blocks(&pruned).await).await.unwrap();
            pruned.ingest_many(from_other).await.unwrap();
            resumed_counter.update(&pruned).await.unwrap();
            resumed_map.update(&pruned).await.unwrap();
            let (mut c, mut m) = (Fold::new(Counter), Fold::new(LwwMap::<String, u32>::new()));
            c.update(&full).await.unwrap();
            m.update(&full).await.unwrap();
            assert_eq!(full.len(), pruned.len());
            assert_eq!(resumed_counter.state(), c.state(), "step {step}");
            assert_eq!(resumed_map.state(), m.state(), "step {step}");
        }
        assert_eq!(*resumed_counter.state(), 45 + 300);

        // Prune, checkpoint, prune again: the pruned replica writes the next
        // checkpoint (its skeleton from the index where the bytes are gone),
        // which checks against the full replica's history too.
        resumed_counter.update(&pruned).await.unwrap();
        let next = checkpoint::build(&mut pruned, &[("counter", &resumed_counter)], &CheckpointConfig::default())
            .await
            .unwrap();
        next.verify_against(&pruned, pruned.store().as_ref()).await.unwrap();
        full.ingest_many(held_blocks(&pruned).await).await.unwrap();
        next.verify_against(&full, pruned.store().as_ref()).await.unwrap();
        pruned.prune(PrunePolicy::Covered(next.cid)).await.unwrap();
        let mut again = Fold::resume(Counter, &pruned, &next, "counter").await.unwrap();
        again.update(&pruned).await.unwrap();
        assert_eq!(*again.state(), 45 + 300);
    });
}

/// A skeleton part (correctly hashed) that lies about its keys, a chain of
/// parts deeper than `MAX_DEPTH`, and entries whose membership row is not
/// in its one canonical form: typed errors, no recursion.
#[test]
fn a_skeleton_tree_out_of_range_or_too_deep_is_refused() {
    block_on(async {
        let store = MemoryBlockstore::new();
        let digest = |b: u8| Ipld::Bytes(vec![b; 32]);
        let put = |node: Ipld| {
            let block = Block::from_bytes(serde_ipld_dagcbor::to_vec(&node).unwrap());
            let cid = *block.cid();
            (cid, block)
        };
        let node = |key: &str, items: Vec<Ipld>| Ipld::Map([(key.to_string(), Ipld::List(items))].into());
        // A leaf holding digest 0x05, under a branch that says it starts at 0x01.
        let (leaf, b) = put(node(
            "entries",
            vec![Ipld::List(vec![digest(5), Ipld::Integer(1), Ipld::List(vec![]), Ipld::Integer(0)])],
        ));
        store.put(b).await.unwrap();
        let (root, b) = put(node("children", vec![Ipld::List(vec![digest(1), Ipld::Link(leaf)])]));
        store.put(b).await.unwrap();
        let target = Cid::new_v1(0x71, multihash_of(&[5; 32]));
        match checkpoint::skeleton::lookup(&store, &root, &target).await {
            Err(SkeletonError::Malformed { cid, .. }) => assert_eq!(cid, leaf),
            other => panic!("{other:?}"),
        }
        // 40 branches, each with one child, over a leaf of digest 0x01.
        let (mut top, b) = put(node(
            "entries",
            vec![Ipld::List(vec![digest(1), Ipld::Integer(1), Ipld::List(vec![]), Ipld::Integer(0)])],
        ));
        store.put(b).await.unwrap();
        for _ in 0..40 {
            let (cid, b) = put(node("children", vec![Ipld::List(vec![digest(1), Ipld::Link(top)])]));
            store.put(b).await.unwrap();
            top = cid;
        }
        let target = Cid::new_v1(0x71, multihash_of(&[1; 32]));
        assert!(matches!(
            checkpoint::skeleton::lookup(&store, &top, &target).await,
            Err(SkeletonError::TooDeep { .. })
        ));
        // An entry with a membership row of 0 (written by leaving it out),
        // or with a sixth element, is not canonical.
        for extra in [vec![Ipld::Integer(0)], vec![Ipld::Integer(1), Ipld::Integer(1)]] {
            let mut entry = vec![digest(1), Ipld::Integer(1), Ipld::List(vec![]), Ipld::Integer(0)];
            entry.extend(extra);
            let (leaf, b) = put(node("entries", vec![Ipld::List(entry)]));
            store.put(b).await.unwrap();
            assert!(matches!(
                checkpoint::skeleton::lookup(&store, &leaf, &target).await,
                Err(SkeletonError::Malformed { cid, .. }) if cid == leaf
            ));
        }
        assert!(matches!(checkpoint::skeleton::entries(&store, &top).await, Err(SkeletonError::TooDeep { .. })));
    });
}

/// A BLAKE3 multihash with these digest bytes (a CID whose digest we choose).
fn multihash_of(digest: &[u8; 32]) -> multihash::Multihash<64> {
    multihash::Multihash::wrap(0x1e, digest).unwrap()
}

/// The skeleton flags membership events and checkpoints (a replica without
/// the history fetches those in full).
#[test]
fn the_skeleton_flags_membership_events_and_checkpoints() {
    block_on(async {
        let admin = Signer::from_seed(&[1; 32]);
        let mut r = replica(&auth::genesis(&"flags", &[admin.public()]).unwrap()).await;
        r.set_signer(Some(admin));
        let grant = r.grant(Signer::from_seed(&[2; 32]).public(), Role::Writer).await.unwrap();
        let first = checkpoint::build(&mut r, &[], &CheckpointConfig::default()).await.unwrap();
        let plain = r.append(&"plain").await.unwrap();
        let second = checkpoint::build(&mut r, &[], &CheckpointConfig::default()).await.unwrap();
        let store = r.store().as_ref();
        let flags = |cid: Cid| async move {
            let e = checkpoint::skeleton::lookup(store, &second.skeleton, &cid).await.unwrap().unwrap();
            (e.membership, e.checkpoint)
        };
        assert_eq!(flags(grant).await, (true, false));
        assert_eq!(flags(first.cid).await, (false, true));
        assert_eq!(flags(plain).await, (false, false));
        second.verify_against(&r, store).await.unwrap();
        // The flagged tree holds what a replica without the history fetches in full.
        let flagged: Vec<Cid> =
            second.flagged_entries(store, usize::MAX).await.unwrap().into_iter().map(|e| e.cid).collect();
        let mut want = vec![*r.stream_id(), grant, first.cid];
        want.sort_by_key(|c| c.to_bytes());
        assert_eq!(flagged, want);
    });
}

impl Folds {
    /// The five folds resumed from `cp` on `r` and brought up to date.
    async fn resumed(r: &R, cp: &Checkpoint) -> Folds {
        let mut f = Folds {
            counter: Fold::resume(Counter, r, cp, "counter").await.unwrap(),
            map: Fold::resume(LwwMap::new(), r, cp, "map").await.unwrap(),
            register: Fold::resume(LwwRegister::new(), r, cp, "register").await.unwrap(),
            set: Fold::resume(AddWinsSet::new(), r, cp, "set").await.unwrap(),
            log: Fold::resume(Log::new(), r, cp, "log").await.unwrap(),
        };
        f.update(r).await;
        f
    }

    fn assert_same(&self, other: &Folds, what: &str) {
        assert_eq!(self.counter.state(), other.counter.state(), "{what}: counter");
        assert_eq!(self.map.state(), other.map.state(), "{what}: map");
        assert_eq!(self.register.state(), other.register.state(), "{what}: register");
        assert_eq!(self.set.state(), other.set.state(), "{what}: set");
        assert_eq!(self.log.state(), other.log.state(), "{what}: log");
    }
}

/// A shallow replica of `from`'s stream started from `cp`, whose blocks
/// (skeleton, states, flagged events) `source` holds.
async fn shallow(from: &R, source: &MemoryBlockstore, cp: &Checkpoint) -> R {
    let config = ReplicaConfig::default();
    let store = Arc::new(MemoryBlockstore::new());
    let (r, fetched) = Replica::bootstrap(store, source, from.stream_id(), &cp.cid, &[cp.cid], config).await.unwrap();
    assert_eq!(fetched.checkpoint, *cp);
    r
}

/// Feeds `to` the blocks in random batches; a shallow replica looks the
/// parents of late events up in the skeleton after each batch.
async fn feed(to: &mut R, mut blocks: Vec<Block>, cp: Option<(&Checkpoint, &MemoryBlockstore)>, rng: &mut Rng) {
    rng.shuffle(&mut blocks);
    while !blocks.is_empty() {
        let batch: Vec<Block> = blocks.drain(..blocks.len().min(1 + rng.index(8))).collect();
        to.ingest_many(batch).await.unwrap();
        if let Some((cp, source)) = cp {
            to.admit_late(cp, source).await.unwrap();
        }
    }
    assert_eq!(to.pending().events, 0, "nothing waits");
}

/// Issue 17's law for differently compacted replicas: a full replica, a
/// pruned one (everything the checkpoint covers dropped) and a shallow one
/// (started from the checkpoint), of a random history, each fed every
/// event in random order and batches (the shallow one also those of the
/// checkpoint's past, which it keeps as skeletons only, and late events
/// concurrent with it), agree on the heads, on the order of the events
/// each holds, and on the state of every ready-made reducer, resumed from
/// the checkpoint, which equals the fold from the genesis; on an open
/// stream and on a signed one (an admin's events and checkpoints, a grant).
#[test]
fn prop_any_mix_of_full_pruned_and_shallow_replicas_agrees() {
    fn p(seed: u64, signed: bool) -> bool {
        block_on(async {
            let w = World::ran_with(seed, signed).await;
            let mut rng = Rng::new(seed ^ 0x5a11);
            let full = &w.replicas[0];
            let genesis_fold = Folds::of(full).await;
            let all = held_blocks(full).await;
            for (builder, cp) in &w.checkpoints {
                let source = w.replicas[*builder].store().as_ref();
                let dag = full.dag();
                let past: HashSet<Cid> =
                    dag.difference(&cp.parents, &[]).unwrap().into_iter().map(|id| dag.cid(id)).collect();
                let mut thin = shallow(full, source, cp).await;
                feed(&mut thin, all.clone(), Some((cp, source)), &mut rng).await;
                let mut pruned = replica(&all[0]).await;
                feed(&mut pruned, all.clone(), None, &mut rng).await;
                pruned.prune(PrunePolicy::Covered(cp.cid)).await.unwrap();
                for state in cp.states.values() {
                    pruned.store().put(source.get(state).await.unwrap().unwrap()).await.unwrap();
                }
                let reopened =
                    Replica::open(thin.store().clone(), thin.stream_id(), ReplicaConfig::default()).await.unwrap();
                for r in [&thin, &reopened, &pruned] {
                    assert_eq!((r.heads(), r.members()), (full.heads(), full.members()));
                    let held: Vec<Cid> = full.order().filter(|c| r.contains(c)).collect();
                    assert_eq!(r.order().collect::<Vec<_>>(), held);
                    Folds::resumed(r, cp).await.assert_same(&genesis_fold, "resumed");
                }
                // The shallow replica holds the payloads of the events
                // outside the past and of the genesis, and the skeleton of
                // the cut and of late events' parents.
                let genesis = *all[0].cid();
                assert!(thin.order().all(|c| !past.contains(&c) || thin.is_pruned(&c) || c == genesis));
                assert!(cp.parents.iter().all(|c| thin.is_pruned(c) || *c == genesis));
            }
            true
        })
    }
    qc(20).quickcheck(p as fn(u64, bool) -> bool);
}

/// A source that answers `cid` with other bytes (a lying peer).
struct Lying<'a> {
    honest: &'a MemoryBlockstore,
    cid: Cid,
}

#[async_trait::async_trait]
impl Blockstore for Lying<'_> {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        let block = self.honest.get(cid).await?;
        if *cid != self.cid {
            return Ok(block);
        }
        Ok(block.map(|b| {
            let mut bytes = b.bytes().to_vec();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            Block::new_unchecked(*cid, bytes)
        }))
    }

    async fn put(&self, _: Block) -> Result<(), StoreError> {
        unreachable!("a source is only read")
    }
}

/// A bootstrap of `genesis` from `source`, which must fail before writing
/// anything.
async fn refused(source: &Lying<'_>, genesis: Cid, cp: &Checkpoint, trusted: &[Cid]) -> ShallowError {
    let store = Arc::new(MemoryBlockstore::new());
    let out = Replica::bootstrap(store.clone(), source, &genesis, &cp.cid, trusted, ReplicaConfig::default()).await;
    assert_eq!(store.heads(&genesis).await.unwrap(), None, "nothing written");
    out.map(|_| ()).unwrap_err()
}

/// Every hostile source a shallow bootstrap meets is a typed error, found
/// before anything is written: a checkpoint nobody named, a skeleton part
/// that does not hash (the cut's lookup), a state block that does not hash,
/// a missing block, and a checkpoint event whose bytes do not hash.
#[test]
fn a_shallow_bootstrap_refuses_hostile_sources_and_writes_nothing() {
    block_on(async {
        let (r, cp) = with_checkpoint(40).await;
        let honest = r.store().as_ref();
        let genesis = *r.stream_id();
        let lie = |cid| Lying { honest, cid };
        let other = Event::genesis("unrelated").encode().unwrap();
        assert!(matches!(
            refused(&lie(*other.cid()), genesis, &cp, &[]).await,
            ShallowError::Checkpoint(CheckpointError::Untrusted { cid }) if cid == cp.cid
        ));
        assert!(matches!(
            refused(&lie(cp.skeleton), genesis, &cp, &[cp.cid]).await,
            ShallowError::Checkpoint(CheckpointError::Skeleton(SkeletonError::Hash { cid, .. })) if cid == cp.skeleton
        ));
        let state = cp.states["counter"];
        assert!(matches!(
            refused(&lie(state), genesis, &cp, &[cp.cid]).await,
            ShallowError::Checkpoint(CheckpointError::StateHash { cid, .. }) if cid == state
        ));
        assert!(matches!(refused(&lie(cp.cid), genesis, &cp, &[cp.cid]).await, ShallowError::Block(_)));
        let empty = MemoryBlockstore::new();
        let store = Arc::new(MemoryBlockstore::new());
        let missing = Replica::bootstrap(store, &empty, &genesis, &cp.cid, &[cp.cid], ReplicaConfig::default()).await;
        assert!(matches!(missing.map(|_| ()), Err(ShallowError::Missing { cid }) if cid == genesis));
        // The honest source works, and a second bootstrap into the same store is refused.
        let store = Arc::new(MemoryBlockstore::new());
        let (thin, _) =
            Replica::bootstrap(store.clone(), honest, &genesis, &cp.cid, &[cp.cid], ReplicaConfig::default())
                .await
                .unwrap();
        assert_eq!(thin.heads(), r.heads());
        let again = Replica::bootstrap(store, honest, &genesis, &cp.cid, &[cp.cid], ReplicaConfig::default()).await;
        assert!(matches!(again.map(|_| ()), Err(ShallowError::Open(OpenError::StreamExists { .. }))));
    });
}

/// A late event (concurrent with the checkpoint) reaches a shallow replica:
/// it waits, and nobody is asked for its parent (it may be below the cut);
/// `admit_late` finds the parent in the skeleton, which joins as an anchor
/// at the skeleton's height, and the event is accepted. One whose claimed
/// height disagrees with the skeleton's is rejected, naming the rule; a
/// skeleton part that does not hash is a typed error and changes nothing.
#[test]
fn a_shallow_replica_admits_late_events_by_the_skeleton_and_rejects_wrong_heights() {
    block_on(async {
        let (r, cp) = with_checkpoint(20).await;
        let source = r.store().as_ref();
        let mut thin = shallow(&r, source, &cp).await;
        let parent = r.order().nth(9).unwrap(); // height 9, below the cut
        let honest = Event::new(10, vec![parent], "late").encode().unwrap();
        let lying = Event::new(12, vec![parent], "late and lying").encode().unwrap();
        thin.ingest_many(vec![honest.clone(), lying.clone()]).await.unwrap();
        assert_eq!(thin.pending().events, 2);
        assert!(thin.missing().is_empty(), "a parent that may be below the cut is not asked for");
        let bad = Lying { honest: source, cid: cp.skeleton };
        assert!(matches!(
            thin.admit_late(&cp, &bad).await,
            Err(ShallowError::Checkpoint(CheckpointError::Skeleton(SkeletonError::Hash { .. })))
        ));
        assert_eq!((thin.pending().events, thin.contains(&parent)), (2, false), "nothing changed");
        let report = thin.admit_late(&cp, source).await.unwrap();
        assert_eq!((report.anchored, report.outside), (1, 0));
        assert!(report.parts >= 3 && report.bytes > 0);
        assert!(thin.contains(honest.cid()) && thin.is_pruned(&parent) && !thin.contains(lying.cid()));
        assert!(matches!(thin.get(&parent).await, Err(StoreError::Pruned { .. })));
        let parent_id = thin.dag().id(&parent).unwrap();
        assert_eq!(thin.dag().height(parent_id), 9);
        match thin.ingest(lying.clone()).await.unwrap() {
            Ingest::Rejected(rej) => assert_eq!(rej.reason(), RejectReason::Height),
            other => panic!("{other:?}"),
        }
        // A parent that is not below the cut is asked for after the lookup.
        let stranger = Event::new(5, vec![*honest.cid()], "elsewhere").encode().unwrap();
        let child = Event::new(6, vec![*stranger.cid()], "child").encode().unwrap();
        thin.ingest(child).await.unwrap();
        assert!(thin.missing().is_empty());
        assert_eq!(thin.admit_late(&cp, source).await.unwrap().outside, 1);
        assert_eq!(thin.missing(), vec![*stranger.cid()]);
        // Both the full replica and the shallow one take the honest event alike.
        let mut full = replica(&r.get(r.stream_id()).await.unwrap().unwrap()).await;
        full.ingest_many(held_blocks(&r).await).await.unwrap();
        full.ingest(honest).await.unwrap();
        assert_eq!(thin.heads(), full.heads());
        let mut a = Fold::resume(Counter, &thin, &cp, "counter").await.unwrap();
        a.update(&thin).await.unwrap();
        let mut b = Fold::new(Counter);
        b.update(&full).await.unwrap();
        assert_eq!(a.state(), b.state());
        // Reopening keeps the anchors.
        let reopened = Replica::open(thin.store().clone(), thin.stream_id(), ReplicaConfig::default()).await.unwrap();
        assert_eq!(reopened.order().collect::<Vec<_>>(), thin.order().collect::<Vec<_>>());
        assert!(reopened.is_pruned(&parent));
    });
}

/// Syncs `a` and `b` with the ordinary protocol until both are silent,
/// letting `thin` (which of them is shallow: `b`) admit late events after
/// each exchange; returns every CID either side wanted and every block
/// either side sent.
async fn sync_with_shallow(a: &mut R, b: &mut R, cp: &Checkpoint, source: &MemoryBlockstore) -> (Vec<Cid>, Vec<Cid>) {
    use merkle_clock::sync::{SyncState, generate_message, receive_message};
    let (mut to_b, mut to_a) = (SyncState::with_seed(1), SyncState::with_seed(2));
    let (mut wanted, mut sent) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let from_a = generate_message(a, &mut to_b).await.unwrap();
        let from_b = generate_message(b, &mut to_a).await.unwrap();
        if from_a.is_none() && from_b.is_none() {
            return (wanted, sent);
        }
        for m in from_a.iter().chain(&from_b) {
            wanted.extend(m.want.iter().copied());
            sent.extend(m.blocks.iter().map(|bytes| merkle_clock::cid_of(bytes)));
        }
        if let Some(m) = from_a {
            receive_message(b, &mut to_a, m).await.unwrap();
        }
        if let Some(m) = from_b {
            receive_message(a, &mut to_b, m).await.unwrap();
        }
        b.admit_late(cp, source).await.unwrap();
    }
    panic!("no quiescence in 20 exchanges");
}

/// Events after the cut, and a late one concurrent with the checkpoint,
/// reach a shallow replica by the ordinary sync protocol from a full peer;
/// nobody asks for or sends an event of the checkpoint's past, and both
/// end with the same heads and the same counter.
#[test]
fn a_shallow_replica_syncs_with_a_full_one_and_never_moves_the_past() {
    block_on(async {
        let (mut full, cp) = with_checkpoint(40).await;
        let source = full.store().clone(); // skeleton and states: the builder's
        let mut thin = shallow(&full, &source, &cp).await;
        counted(&mut full, 10).await;
        let below = full.order().nth(20).unwrap();
        let late = Event::new(21, vec![below], "late").encode().unwrap();
        assert_eq!(full.ingest(late.clone()).await.unwrap(), Ingest::Accepted);
        // The shallow side writes too.
        thin.append(&CounterOp::Increment(1000)).await.unwrap();
        let dag = full.dag();
        let past: HashSet<Cid> = dag.difference(&cp.parents, &[]).unwrap().into_iter().map(|id| dag.cid(id)).collect();
        let (wanted, sent) = sync_with_shallow(&mut full, &mut thin, &cp, &source).await;
        assert!(wanted.iter().chain(&sent).all(|c| !past.contains(c)), "the past never moves");
        assert!(thin.contains(late.cid()) && thin.is_pruned(&below));
        assert_eq!(thin.heads(), full.heads());
        let mut a = Fold::resume(Counter, &thin, &cp, "counter").await.unwrap();
        a.update(&thin).await.unwrap();
        let mut b = Fold::new(Counter);
        b.update(&full).await.unwrap();
        assert_eq!(a.state(), b.state());
    });
}

/// On a stream with admins, a shallow bootstrap trusts a checkpoint by an
/// admin in its past, judged by the flagged membership events alone, and
/// then judges new events by that membership: a writer granted below the
/// cut may write after it. A writer's checkpoint is refused. A late event
/// by the writer on a branch from below the cut is judged by the
/// membership its parent's skeleton entry names, and admitted, before and
/// after a reopen.
#[test]
fn a_shallow_replica_of_a_stream_with_admins_judges_authors_by_the_flagged_events() {
    block_on(async {
        let (admin, writer, genesis, mut full) = team().await;
        full.set_signer(Some(writer.clone()));
        counted(&mut full, 10).await;
        let by_writer = checkpoint::build(&mut full, &[], &CheckpointConfig::default()).await.unwrap();
        full.set_signer(Some(admin.clone()));
        let cp = checkpoint::build(&mut full, &[], &CheckpointConfig::default()).await.unwrap();
        let source = full.store().clone();
        let config = ReplicaConfig::default;
        let refused = Replica::bootstrap(
            Arc::new(MemoryBlockstore::new()),
            source.as_ref(),
            genesis.cid(),
            &by_writer.cid,
            &[],
            config(),
        )
        .await;
        assert!(matches!(
            refused.map(|_| ()),
            Err(ShallowError::Checkpoint(CheckpointError::Unauthorized { author, .. })) if author == Some(writer.public())
        ));
        let (mut thin, _) = Replica::bootstrap(
            Arc::new(MemoryBlockstore::new()),
            source.as_ref(),
            genesis.cid(),
            &cp.cid,
            &[],
            config(),
        )
        .await
        .unwrap();
        full.set_signer(Some(writer.clone()));
        let after = full.append(&CounterOp::Increment(7)).await.unwrap();
        assert_eq!(thin.ingest(full.get(&after).await.unwrap().unwrap()).await.unwrap(), Ingest::Accepted);
        // A late event by the writer, on a branch from below the cut.
        let mut side = replica(&genesis).await;
        side.ingest_many(held_blocks(&full).await.into_iter().take(4).collect()).await.unwrap();
        side.set_signer(Some(writer.clone()));
        let late = side.append(&CounterOp::Increment(5)).await.unwrap();
        let late_block = side.get(&late).await.unwrap().unwrap();
        thin.ingest(late_block.clone()).await.unwrap();
        assert_eq!(thin.pending().events, 1);
        thin.admit_late(&cp, source.as_ref()).await.unwrap();
        assert!(thin.contains(&late) && thin.pending().events == 0);
        assert_eq!(full.ingest(late_block).await.unwrap(), Ingest::Accepted);
        assert_eq!(thin.heads(), full.heads());
        let reopened = Replica::open(thin.store().clone(), thin.stream_id(), config()).await.unwrap();
        assert_eq!((reopened.heads(), reopened.members()), (thin.heads(), thin.members()));
        // It cannot list the grant below its anchors: no checkpoint of its own.
        thin.set_signer(Some(admin));
        assert!(matches!(
            checkpoint::build(&mut thin, &[], &CheckpointConfig::default()).await,
            Err(CheckpointError::MembershipBelowAnchors { .. })
        ));
        assert_eq!(thin.heads(), full.heads(), "nothing appended");
    });
}

/// A shallow store of a stream with admins written before stores kept the
/// anchors' membership (here, a redb file whose record table was removed
/// by hand) is refused at open, not judged with the wrong membership.
#[test]
fn a_shallow_signed_store_without_its_record_is_refused_at_open() {
    block_on(async {
        let (_, _, genesis, mut full) = team().await;
        counted(&mut full, 4).await;
        let cp = checkpoint::build(&mut full, &[], &CheckpointConfig::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thin.redb");
        let store = Arc::new(merkle_clock::store::RedbBlockstore::open(&path).unwrap());
        let source = full.store().as_ref();
        drop(Replica::bootstrap(store, source, genesis.cid(), &cp.cid, &[], ReplicaConfig::default()).await.unwrap());
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(redb::TableDefinition::<&[u8], &[u8]>::new("stream_records")).unwrap();
        txn.commit().unwrap();
        drop(db);
        let store = Arc::new(merkle_clock::store::RedbBlockstore::open(&path).unwrap());
        let opened = Replica::open(store, genesis.cid(), ReplicaConfig::default()).await;
        assert!(matches!(opened.map(|_| ()), Err(OpenError::ShallowSigned { stream }) if stream == *genesis.cid()));
    });
}

/// A checkpoint whose membership rows name an event that is not a
/// membership event (here, an admin's copy of an honest checkpoint's
/// payload with its row pointed at the genesis) is refused by a shallow
/// bootstrap with a typed error, before anything is written.
#[test]
fn a_checkpoint_whose_membership_rows_name_no_membership_event_is_refused() {
    block_on(async {
        let (admin, _, genesis, mut full) = team().await;
        counted(&mut full, 6).await;
        let history = held_blocks(&full).await;
        let honest = checkpoint::build(&mut full, &[], &CheckpointConfig::default()).await.unwrap();
        let source = full.store().clone();
        let flagged = honest.flagged_entries(source.as_ref(), usize::MAX).await.unwrap();
        let at_genesis = flagged.iter().position(|e| e.cid == *genesis.cid()).unwrap();
        assert_eq!(honest.members.len(), 1, "one row: the grant");
        let map = |entries: Vec<(&str, Ipld)>| Ipld::Map(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
        let forged_payload = map(vec![(
            "checkpoint",
            map(vec![
                ("count", Ipld::Integer(honest.count.into())),
                ("flagged", Ipld::Link(honest.flagged)),
                ("skeleton", Ipld::Link(honest.skeleton)),
                ("states", map(vec![])),
                ("members", Ipld::List(vec![Ipld::List(vec![Ipld::Integer(at_genesis as i128)])])),
            ]),
        )]);
        let mut other = replica(&genesis).await;
        other.ingest_many(history).await.unwrap();
        other.set_signer(Some(admin));
        let forged = other.append(&forged_payload).await.unwrap();
        source.put(other.get(&forged).await.unwrap().unwrap()).await.unwrap();
        let store = Arc::new(MemoryBlockstore::new());
        let out =
            Replica::bootstrap(store.clone(), source.as_ref(), genesis.cid(), &forged, &[], ReplicaConfig::default())
                .await;
        assert!(
            matches!(out.as_ref().map(|_| ()), Err(ShallowError::Checkpoint(CheckpointError::Malformed { cid, .. })) if *cid == forged),
            "{:?}",
            out.map(|_| ())
        );
        assert_eq!(store.heads(genesis.cid()).await.unwrap(), None, "nothing written");
    });
}

/// A checkpoint whose flagged tree lists a membership event that is not
/// valid where it stands (a stranger granting itself admin, with a row
/// that makes it look granted) is refused by a shallow bootstrap, even
/// though the checkpoint's author would be an admin by that grant and the
/// user names the checkpoint: each flagged membership event is judged
/// against the membership its own row gives its past. Nothing is written.
#[test]
fn a_checkpoint_listing_a_forged_grant_is_refused() {
    block_on(async {
        let [admin, _, _, stranger] = keys();
        let genesis = auth::genesis(&"forged", &[admin.public()]).unwrap();
        let grant = auth::MemberOp::Grant { key: stranger.public(), role: Role::Admin };
        let forged =
            auth::signed_event(genesis.cid(), 1, &[*genesis.cid()], Some(&grant), &Ipld::Null, &stranger).unwrap();
        // The skeleton and the flagged tree: one leaf each, over both events.
        let digest = |c: &Cid| Ipld::Bytes(c.hash().digest().to_vec());
        let entry = |c: &Cid, height: i128, parents: Vec<Ipld>, flags: i128, row: Option<i128>| {
            let mut e = vec![digest(c), Ipld::Integer(height), Ipld::List(parents), Ipld::Integer(flags)];
            e.extend(row.map(Ipld::Integer));
            Ipld::List(e)
        };
        let mut entries = vec![
            (*genesis.cid(), entry(genesis.cid(), 0, vec![], 0, None)),
            (*forged.cid(), entry(forged.cid(), 1, vec![digest(genesis.cid())], 1, Some(1))),
        ];
        entries.sort_by_key(|(c, _)| c.hash().digest().to_vec());
        let at = entries.iter().position(|(c, _)| c == forged.cid()).unwrap() as i128;
        let leaf =
            Ipld::Map([("entries".to_string(), Ipld::List(entries.into_iter().map(|(_, e)| e).collect()))].into());
        let leaf = Block::from_bytes(serde_ipld_dagcbor::to_vec(&leaf).unwrap());
        let map = |entries: Vec<(&str, Ipld)>| Ipld::Map(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
        let payload = map(vec![(
            "checkpoint",
            map(vec![
                ("count", Ipld::Integer(2)),
                ("flagged", Ipld::Link(*leaf.cid())),
                ("skeleton", Ipld::Link(*leaf.cid())),
                ("states", map(vec![])),
                ("members", Ipld::List(vec![Ipld::List(vec![Ipld::Integer(at)])])),
            ]),
        )]);
        let cp = auth::signed_event(genesis.cid(), 2, &[*forged.cid()], None, &payload, &stranger).unwrap();
        let source = MemoryBlockstore::new();
        source.put_many(vec![genesis.clone(), forged.clone(), leaf, cp.clone()]).await.unwrap();
        for trusted in [vec![], vec![*cp.cid()]] {
            let store = Arc::new(MemoryBlockstore::new());
            let out =
                Replica::bootstrap(store.clone(), &source, genesis.cid(), cp.cid(), &trusted, ReplicaConfig::default())
                    .await
                    .map(|_| ());
            match out {
                Err(ShallowError::Rejected(r)) => {
                    assert_eq!(
                        (r.reason(), r.to_string().contains(&forged.cid().to_string())),
                        (RejectReason::Unauthorized, true)
                    );
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(store.heads(genesis.cid()).await.unwrap(), None, "nothing written");
        }
    });
}

/// The keys of a signed world: an admin, two writers and a stranger.
fn keys() -> [Signer; 4] {
    [1, 2, 3, 4].map(|s| Signer::from_seed(&[s; 32]))
}

/// A stream with admins and its checkpoint, for the signed law: the admin
/// grants two writers; the main replica and a side one (which syncs with
/// it now and then) append as random members; the admin revokes the first
/// writer at some step, so some events' pasts hold the revocation and
/// others, concurrent with it, do not; then the admin checkpoints (on 4-entry
/// leaves, so lookups cross parts).
async fn signed_world(rng: &mut Rng) -> (Block, R, Checkpoint) {
    let [admin, w1, w2, _] = keys();
    let genesis = auth::genesis(&"signed late", &[admin.public()]).unwrap();
    let mut main = replica(&genesis).await;
    main.set_signer(Some(admin.clone()));
    main.grant(w1.public(), Role::Writer).await.unwrap();
    main.grant(w2.public(), Role::Writer).await.unwrap();
    let mut side = replica(&genesis).await;
    let members = [&admin, &w1, &w2];
    for step in 0..(8 + rng.index(24)) as u64 {
        match rng.index(8) {
            0 => {
                main.set_signer(Some(admin.clone()));
                let _ = main.revoke(w1.public()).await; // once: a second is refused
            }
            1 => drop(side.ingest_many(held_blocks(&main).await).await.unwrap()),
            2 => {
                side.set_signer(Some(members[1 + rng.index(2)].clone()));
                let _ = side.append(&step).await; // refused once the revocation is in its past
            }
            3 => drop(main.ingest_many(held_blocks(&side).await).await.unwrap()),
            _ => {
                main.set_signer(Some(members[rng.index(3)].clone()));
                let _ = main.append(&step).await;
            }
        }
    }
    main.ingest_many(held_blocks(&side).await).await.unwrap();
    main.set_signer(Some(admin));
    let cp = checkpoint::build(&mut main, &[], &CheckpointConfig::with_shape(SkeletonShape::new(4, 3))).await.unwrap();
    (genesis, main, cp)
}

/// Late events for `main`'s checkpoint `cp`, each judged by a full replica
/// as it is made: on one or two parents below the cut (or on a late event
/// the full replica accepted), by any of the keys, a quarter of them a
/// grant of the stranger. Returns the full replica, and each late event
/// with the reason it was refused (`None`: accepted).
async fn late_events(
    rng: &mut Rng,
    genesis: &Block,
    main: &R,
    cp: &Checkpoint,
) -> (R, Vec<(Block, Option<RejectReason>)>) {
    let keys = keys();
    let mut full = replica(genesis).await;
    full.ingest_many(held_blocks(main).await).await.unwrap();
    let below: Vec<Cid> = main.order().filter(|c| *c != cp.cid).collect();
    let mut accepted: Vec<Cid> = Vec::new();
    let mut out = Vec::new();
    for i in 0..(1 + rng.index(10)) as u64 {
        let mut parents = vec![below[rng.index(below.len())]];
        if !accepted.is_empty() && rng.chance(0.3) {
            parents[0] = accepted[rng.index(accepted.len())];
        }
        if rng.chance(0.25) {
            parents.push(below[rng.index(below.len())]);
            parents.dedup();
        }
        let height = 1 + parents.iter().map(|p| full.dag().height(full.dag().id(p).unwrap())).max().unwrap();
        let grant = auth::MemberOp::Grant { key: keys[3].public(), role: Role::Writer };
        let member = rng.chance(0.25).then_some(grant);
        let block = auth::signed_event(
            genesis.cid(),
            height,
            &parents,
            member.as_ref(),
            &format!("late {i}"),
            &keys[rng.index(4)],
        )
        .unwrap();
        let verdict = match full.ingest(block.clone()).await.unwrap() {
            Ingest::Accepted => {
                accepted.push(*block.cid());
                None
            }
            Ingest::Rejected(r) => Some(r.reason()),
            other => panic!("a late event on held parents: {other:?}"),
        };
        out.push((block, verdict));
    }
    (full, out)
}

/// A shallow replica of `cp` in `store` fed the late events in random
/// batches, admitting them after each, reopened from its store halfway
/// when `reopen`, then fed them all again: each late event's verdict (a
/// refused one is offered once more, its parents now known, for its reason).
async fn shallow_verdicts<S: StreamStore + 'static>(
    store: Arc<S>,
    source: &MemoryBlockstore,
    cp: &Checkpoint,
    late: &[(Block, Option<RejectReason>)],
    reopen: bool,
    rng: &mut Rng,
) -> (Replica<S>, Vec<Option<RejectReason>>) {
    let stream = *source.streams().await.unwrap().first().unwrap();
    let config = ReplicaConfig::default;
    let (mut thin, _) = Replica::bootstrap(store.clone(), source, &stream, &cp.cid, &[], config()).await.unwrap();
    let mut blocks: Vec<Block> = late.iter().map(|(b, _)| b.clone()).collect();
    rng.shuffle(&mut blocks);
    let half = blocks.len() / 2;
    for part in [&blocks[..half], &blocks[..]] {
        for batch in part.chunks(1 + rng.index(3)) {
            thin.ingest_many(batch.to_vec()).await.unwrap();
            thin.admit_late(cp, source).await.unwrap();
        }
        if reopen {
            thin = Replica::open(store.clone(), &stream, config()).await.unwrap();
        }
    }
    let mut verdicts = Vec::new();
    for (block, _) in late {
        if thin.contains(block.cid()) {
            verdicts.push(None);
            continue;
        }
        // Parked until looked up (after a reopen, again): then judged.
        let mut outcome = thin.ingest(block.clone()).await.unwrap();
        if outcome == (Ingest::Pending { missing: Vec::new() }) {
            thin.admit_late(cp, source).await.unwrap();
            outcome = thin.ingest(block.clone()).await.unwrap();
        }
        match outcome {
            Ingest::Rejected(r) => verdicts.push(Some(r.reason())),
            other => panic!("{}: {other:?}", block.cid()),
        }
    }
    (thin, verdicts)
}

/// The signed worlds are not trivial: across seeds, late events are both
/// admitted and refused as unauthorised (a revoked writer, the stranger),
/// and checkpoints name more than one membership row (pasts that differ).
#[test]
fn signed_worlds_have_late_events_of_every_verdict() {
    block_on(async {
        let (mut verdicts, mut rows) = (HashSet::new(), 0);
        for seed in 0..20 {
            let mut rng = Rng::new(seed);
            let (genesis, main, cp) = signed_world(&mut rng).await;
            rows = rows.max(cp.members.len());
            let (_, late) = late_events(&mut rng, &genesis, &main, &cp).await;
            verdicts.extend(late.into_iter().map(|(_, v)| v));
        }
        assert!(verdicts.contains(&None) && verdicts.contains(&Some(RejectReason::Unauthorized)), "{verdicts:?}");
        assert!(rows >= 2, "{rows} membership rows at most");
    });
}

/// The signed law for shallow replicas: on a stream with admins, grants and
/// a revocation (some events concurrent with it), a shallow replica started
/// from an admin's checkpoint admits exactly the late events a full replica
/// admits (by the membership their parents' skeleton entries name, with the
/// rules every replica applies) and refuses the others with the same
/// reason, ends with the same heads and membership, in memory and in redb,
/// with and without a reopen between batches.
#[test]
fn prop_a_shallow_replica_judges_late_signed_events_as_a_full_one() {
    fn p(seed: u64) -> bool {
        block_on(async {
            let mut rng = Rng::new(seed);
            let (genesis, main, cp) = signed_world(&mut rng).await;
            let (full, late) = late_events(&mut rng, &genesis, &main, &cp).await;
            let want: Vec<Option<RejectReason>> = late.iter().map(|(_, v)| *v).collect();
            let source = main.store().as_ref();
            for reopen in [false, true] {
                let (thin, got) =
                    shallow_verdicts(Arc::new(MemoryBlockstore::new()), source, &cp, &late, reopen, &mut rng).await;
                assert_eq!(got, want, "memory, reopen {reopen}");
                assert_eq!((thin.heads(), thin.members()), (full.heads(), full.members()));
                let redb = Arc::new(merkle_clock::store::RedbBlockstore::in_memory().unwrap());
                let (thin, got) = shallow_verdicts(redb, source, &cp, &late, reopen, &mut rng).await;
                assert_eq!(got, want, "redb, reopen {reopen}");
                assert_eq!((thin.heads(), thin.members()), (full.heads(), full.members()));
            }
            true
        })
    }
    qc(20).quickcheck(p as fn(u64) -> bool);
}

/// A shallow replica in a redb store (the CLI's): anchors are logged
/// without parents and read back pruned, so a reopen gives the same heads,
/// order and anchors, and a late event admitted before the reopen stays.
#[test]
fn a_shallow_replica_in_redb_reopens_with_its_anchors() {
    block_on(async {
        let (r, cp) = with_checkpoint(30).await;
        let store = Arc::new(merkle_clock::store::RedbBlockstore::in_memory().unwrap());
        let (mut thin, _) = Replica::bootstrap(
            store.clone(),
            r.store().as_ref(),
            r.stream_id(),
            &cp.cid,
            &[cp.cid],
            Default::default(),
        )
        .await
        .unwrap();
        let below = r.order().nth(12).unwrap();
        let late = Event::new(13, vec![below], "late").encode().unwrap();
        thin.ingest(late.clone()).await.unwrap();
        thin.admit_late(&cp, r.store().as_ref()).await.unwrap();
        assert!(thin.contains(late.cid()));
        let reopened = Replica::open(store, thin.stream_id(), ReplicaConfig::default()).await.unwrap();
        assert_eq!(reopened.heads(), thin.heads());
        assert_eq!(reopened.order().collect::<Vec<_>>(), thin.order().collect::<Vec<_>>());
        assert!(reopened.is_pruned(&below) && reopened.dag().is_anchor(reopened.dag().id(&below).unwrap()));
        let mut a = Fold::resume(Counter, &reopened, &cp, "counter").await.unwrap();
        a.update(&reopened).await.unwrap();
        assert_eq!(*a.state(), (0..30).sum::<i128>()); // the late event is not a counter op
    });
}

/// A checkpoint's flagged tree is read before the checkpoint is trusted, so
/// its size is bounded ([`ReplicaConfig::max_flagged_entries`]): one with
/// more entries than the replica accepts is refused with a typed error,
/// nothing written; the same bootstrap within the bound succeeds.
#[test]
fn a_flagged_tree_over_the_configured_bound_is_refused_before_anything_is_written() {
    block_on(async {
        let (_, _, genesis, mut full) = team().await;
        counted(&mut full, 4).await;
        let cp = checkpoint::build(&mut full, &[], &CheckpointConfig::default()).await.unwrap();
        let source = full.store().as_ref();
        let flagged = cp.flagged_entries(source, usize::MAX).await.unwrap().len();
        assert!(flagged >= 2, "the genesis and the grant");
        let mut config = ReplicaConfig::default();
        config.max_flagged_entries = flagged - 1;
        let store = Arc::new(MemoryBlockstore::new());
        let out = Replica::bootstrap(store.clone(), source, genesis.cid(), &cp.cid, &[], config).await;
        assert!(
            matches!(
                out.as_ref().map(|_| ()),
                Err(ShallowError::Checkpoint(CheckpointError::Skeleton(SkeletonError::TooMany { max, .. })))
                    if *max == flagged - 1
            ),
            "{:?}",
            out.map(|_| ())
        );
        assert_eq!(store.heads(genesis.cid()).await.unwrap(), None, "nothing written");
        config.max_flagged_entries = flagged;
        let store = Arc::new(MemoryBlockstore::new());
        assert!(Replica::bootstrap(store, source, genesis.cid(), &cp.cid, &[], config).await.is_ok());
    });
}
