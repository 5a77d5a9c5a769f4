//! Deterministic crash consistency of a replica over the redb store: the
//! idea of redb's `tests/crash_consistency.rs`, beside the SIGKILL tests of
//! `tests/crash.rs`.
//!
//! The store runs on [`CrashBackend`], a redb storage backend that keeps the
//! bytes the process sees apart from the bytes the last completed sync made
//! durable. A workload of appends runs once to count its sync points; then,
//! for every sync point `k` and every [`Crash`] there, it runs again and
//! freezes the durable image at `k`: what survives is exactly what a power
//! cut at that moment leaves. The store is reopened from that image and must
//! open, every logged block must verify, the stored heads must be the heads
//! of the log, the log must be a prefix of the full run's log (commits are
//! atomic), and every append that returned as durable before the crash must
//! be there.
//!
//! A second workload prunes in the middle (`Replica::prune`): a crash at any
//! sync point leaves either nothing pruned or exactly what the prune pruned
//! (one atomic transaction), and a prune that returned under `Immediate` is
//! there.
//!
//! A third starts a replica of a signed stream from a checkpoint and admits
//! a late event (written concurrently with the checkpoint): a crash at any
//! sync point leaves no stream, or a shallow replica that opens and judges
//! the late event as a full replica does; once admitted, it stays.
#![cfg(feature = "redb")]

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::executor::block_on;
use merkle_clock::auth::{self, Role, Signer};
use merkle_clock::checkpoint::{self, Checkpoint, CheckpointConfig};
use merkle_clock::replica::{OpenError, PrunePolicy};
use merkle_clock::store::{Durability, RedbBlockstore};
use merkle_clock::{Block, Blockstore, Cid, Event, MemoryBlockstore, Replica, ReplicaConfig, StoreError, StreamStore};
use redb::StorageBackend;

/// What a crash at sync point `k` leaves on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crash {
    /// Power is cut while sync `k` runs: nothing written since sync `k - 1`
    /// survives.
    DuringSync,
    /// As `DuringSync`, but the last write of the header (offset 0) since
    /// sync `k - 1` did reach the disk, without the rest (redb's own crash
    /// test models this: the header is one small write, and may land alone).
    DuringSyncWithTheHeader,
    /// Power is cut just after sync `k` completed: everything it made durable
    /// survives, nothing written after it.
    AfterSync,
}

impl Crash {
    const ALL: [Crash; 3] = [Crash::DuringSync, Crash::DuringSyncWithTheHeader, Crash::AfterSync];

    /// The number of completed syncs whose writes survive a crash at sync `k`.
    fn survivors(self, k: u64) -> u64 {
        match self {
            Crash::DuringSync | Crash::DuringSyncWithTheHeader => k - 1,
            Crash::AfterSync => k,
        }
    }
}

#[derive(Default)]
struct State {
    /// The bytes the process reads and writes.
    live: Vec<u8>,
    /// The bytes the last completed sync made durable (until the crash: then
    /// what the crash left).
    durable: Vec<u8>,
    /// The last write to offset 0 since the last completed sync.
    header_since_sync: Option<Vec<u8>>,
    /// Syncs called so far.
    syncs: u64,
    /// The sync point to crash at, and how.
    crash: Option<(u64, Crash)>,
    /// Set at the crash: `durable` no longer changes.
    crashed: bool,
}

/// A redb backend in memory that keeps the durable image apart from the
/// writes not yet synced. Clones share the state.
#[derive(Clone, Default)]
struct CrashBackend {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for CrashBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("CrashBackend")
            .field("live_bytes", &s.live.len())
            .field("durable_bytes", &s.durable.len())
            .field("syncs", &s.syncs)
            .field("crash", &s.crash)
            .finish()
    }
}

impl CrashBackend {
    /// A backend that crashes at sync point `k` (counting from 1).
    fn crashing_at(k: u64, crash: Crash) -> Self {
        let backend = CrashBackend::default();
        backend.lock().crash = Some((k, crash));
        backend
    }

    /// A backend whose bytes, durable and live, are `image`: the disk as the
    /// machine finds it after the crash.
    fn from_image(image: Vec<u8>) -> Self {
        let backend = CrashBackend::default();
        {
            let mut s = backend.lock();
            s.live = image.clone();
            s.durable = image;
        }
        backend
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// What the disk holds after the crash (or, with no crash yet, after a
    /// crash now).
    fn image(&self) -> Vec<u8> {
        self.lock().durable.clone()
    }
}

impl StorageBackend for CrashBackend {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.lock().live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let s = self.lock();
        let start = usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let end = start.checked_add(out.len()).filter(|&e| e <= s.live.len());
        let Some(end) = end else {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"));
        };
        out.copy_from_slice(&s.live[start..end]);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        self.lock().live.resize(len, 0);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let mut s = self.lock();
        s.syncs += 1;
        if s.crashed {
            return Ok(());
        }
        let crash = s.crash.filter(|&(k, _)| k == s.syncs).map(|(_, c)| c);
        match crash {
            None | Some(Crash::AfterSync) => {
                s.durable = s.live.clone();
                s.header_since_sync = None;
            }
            Some(Crash::DuringSync) => {}
            Some(Crash::DuringSyncWithTheHeader) => {
                if let Some(header) = s.header_since_sync.take()
                    && header.len() <= s.durable.len()
                {
                    s.durable[..header.len()].copy_from_slice(&header);
                }
            }
        }
        s.crashed = crash.is_some();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut s = self.lock();
        let start = usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let end = start + data.len();
        if end > s.live.len() {
            s.live.resize(end, 0);
        }
        s.live[start..end].copy_from_slice(data);
        if start == 0 {
            s.header_since_sync = Some(data.to_vec());
        }
        Ok(())
    }
}

fn genesis() -> Block {
    Event::genesis("crash points").encode().expect("genesis encodes")
}

/// What a workload run reports: for each append that returned as durable,
/// its CID and the number of syncs completed by then (it is durable in any
/// image that keeps at least that many syncs), and the log it wrote.
struct Run {
    /// The syncs completed when the store's creation returned: a crash image
    /// with fewer is of a store that was never created.
    created: u64,
    durable: Vec<(Cid, u64)>,
    log: Vec<Cid>,
    /// What the prune pruned (empty for the workload without one), and the
    /// syncs completed when it returned (durable from then on, under
    /// `Immediate`).
    pruned: Vec<Cid>,
    pruned_at: u64,
}

/// Where the workload prunes, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prune {
    Never,
    /// After this round, keep the newest 4 events.
    AfterRound(u32),
}

/// Appends on a replica over `backend`: single appends and `append_many`
/// batches. Under `Immediate` an append is durable when it returns; under
/// `Eventual`, when the next `flush` returns. The store is dropped at the end
/// (a clean drop makes pending writes durable: more sync points).
fn workload(backend: &CrashBackend, durability: Durability, prune: Prune) -> Run {
    block_on(async {
        let store = Arc::new(RedbBlockstore::with_backend(backend.clone(), durability).expect("a fresh store"));
        let created = backend.syncs();
        let g = genesis();
        let mut replica = Replica::create(store.clone(), &g, ReplicaConfig::default()).await.expect("create");
        let mut durable = Vec::new();
        let (mut pruned, mut pruned_at) = (Vec::new(), u64::MAX);
        let mut unflushed = vec![*g.cid()];
        let acknowledge = |cids: &mut Vec<Cid>, durable: &mut Vec<(Cid, u64)>| {
            durable.extend(cids.drain(..).map(|c| (c, backend.syncs())));
        };
        if durability == Durability::Immediate {
            acknowledge(&mut unflushed, &mut durable);
        }
        for round in 0..4u32 {
            let single = replica.append(&format!("single {round}")).await.expect("append");
            unflushed.push(single);
            let batch =
                replica.append_many((0..5u32).map(|i| format!("batch {round}.{i}"))).await.expect("append_many");
            unflushed.extend(batch);
            match durability {
                Durability::Immediate => acknowledge(&mut unflushed, &mut durable),
                _ if round % 2 == 1 => {
                    store.flush().expect("flush");
                    acknowledge(&mut unflushed, &mut durable);
                }
                _ => {}
            }
            if prune == Prune::AfterRound(round) {
                replica.prune(PrunePolicy::KeepNewest(4)).await.expect("prune");
                pruned = replica.order().filter(|c| replica.is_pruned(c)).collect();
                // Durable when it returns only under `Immediate` (else at the next flush: not checked).
                if durability == Durability::Immediate {
                    pruned_at = backend.syncs();
                }
            }
        }
        let log = store.read_log(g.cid(), 0, usize::MAX).await.expect("read_log");
        assert_eq!(log.len(), replica.len(), "the log holds every event");
        drop(replica);
        drop(store);
        Run { created, durable, log, pruned, pruned_at }
    })
}

/// Reopens the store from what the crash left and checks it; returns the
/// length of the surviving log.
fn check_survivor(image: Vec<u8>, full: &Run, kept_syncs: u64, what: &str) -> usize {
    let must_survive: Vec<Cid> = full.durable.iter().filter(|(_, s)| *s <= kept_syncs).map(|(c, _)| *c).collect();
    let store = match RedbBlockstore::with_backend(CrashBackend::from_image(image), Durability::Immediate) {
        Ok(store) => Arc::new(store),
        // A crash while the database was being created may leave no
        // database (a file store creates its file atomically for this): a
        // typed error, and nothing had been acknowledged.
        Err(e @ StoreError::Backend(_)) if kept_syncs < full.created => {
            assert!(must_survive.is_empty(), "{what}: {e}, but {} appends were durable", must_survive.len());
            return 0;
        }
        Err(e) => panic!("{what}: the store does not open after the crash: {e}"),
    };
    let g = genesis();
    let replica = match block_on(Replica::open(store.clone(), g.cid(), ReplicaConfig::default())) {
        Ok(r) => r,
        Err(OpenError::UnknownStream { .. }) => {
            assert!(
                must_survive.is_empty(),
                "{what}: the stream is gone, but {} appends were durable",
                must_survive.len()
            );
            return 0;
        }
        Err(e) => panic!("{what}: the replica does not open after the crash: {e}"),
    };
    block_on(async {
        let log = store.read_log(g.cid(), 0, usize::MAX).await.expect("read_log");
        assert_eq!(log, full.log[..log.len()], "{what}: the surviving log is a prefix of the full run's");
        let entries = store.read_log_entries(g.cid(), 0, usize::MAX).await.expect("read_log_entries");
        for e in &entries {
            let got = store.get(&e.cid).await.expect("get");
            match (e.pruned, got) {
                (true, None) => {}
                (false, Some(block)) => {
                    block
                        .verify()
                        .unwrap_or_else(|err| panic!("{what}: logged block {} does not verify: {err}", e.cid));
                    let header = merkle_clock::LoggedEvent::from_block(&block).expect("an event");
                    assert_eq!((header.height, &header.parents), (e.height, &e.parents), "{what}: the log's header");
                }
                (pruned, got) => panic!("{what}: {} pruned {pruned}, stored {:?}", e.cid, got.map(|b| b.len())),
            }
        }
        // Either nothing is pruned or exactly what the prune pruned; and a
        // prune that returned before the kept syncs is there.
        let pruned: Vec<Cid> = entries.iter().filter(|e| e.pruned).map(|e| e.cid).collect();
        let mut want = full.pruned.clone();
        want.sort_unstable();
        let mut got = pruned.clone();
        got.sort_unstable();
        assert!(got.is_empty() || got == want, "{what}: a torn prune: {} of {} pruned", got.len(), want.len());
        if kept_syncs >= full.pruned_at {
            assert_eq!(got, want, "{what}: a prune that returned is lost");
        }
        assert!(pruned.iter().all(|c| replica.is_pruned(c)), "{what}: the replica does not know what is pruned");
        let mut stored_heads = store.heads(g.cid()).await.expect("heads").expect("a logged stream has heads");
        stored_heads.sort_unstable();
        let referenced: std::collections::HashSet<&Cid> = entries.iter().flat_map(|e| &e.parents).collect();
        let mut log_heads: Vec<Cid> = entries.iter().map(|e| e.cid).filter(|c| !referenced.contains(c)).collect();
        log_heads.sort_unstable();
        assert_eq!(stored_heads, log_heads, "{what}: the stored heads are not the log's heads");
        let mut replica_heads = replica.heads();
        replica_heads.sort_unstable();
        assert_eq!(replica_heads, log_heads, "{what}: the reopened replica's heads");
        assert_eq!(replica.len(), log.len(), "{what}: the reopened replica holds the log");
        for cid in &must_survive {
            assert!(replica.contains(cid), "{what}: durable append {cid} lost");
            let held = store.has(cid).await.expect("has") || replica.is_pruned(cid);
            assert!(held, "{what}: durable append {cid} neither stored nor pruned");
        }
        log.len()
    })
}

/// Runs the workload once to count its sync points, then crashes it at each
/// one in each way and checks what survives. Returns how many crash images
/// held each surviving log length, for the caller's sanity checks.
fn crash_at_every_sync_point(durability: Durability, prune: Prune) -> Vec<usize> {
    let probe = CrashBackend::default();
    let full = workload(&probe, durability, prune);
    let total = probe.syncs();
    assert!(total >= 2, "{durability:?}: only {total} sync points");
    assert!(!full.durable.is_empty());
    let mut survivors = vec![0; full.log.len() + 1];
    for k in 1..=total {
        for crash in Crash::ALL {
            let what = format!("{durability:?}, {crash:?} at sync {k} of {total}");
            let backend = CrashBackend::crashing_at(k, crash);
            let run = workload(&backend, durability, prune);
            assert!(backend.crashed(), "{what}: the crash point was never reached");
            // The workload is deterministic: the same syncs, the same log, the same acknowledgements.
            assert_eq!(backend.syncs(), total, "{what}: a rerun made another number of syncs");
            assert_eq!(run.log, full.log, "{what}: a rerun wrote another log");
            assert_eq!(run.durable, full.durable, "{what}: a rerun acknowledged other appends");
            let len = check_survivor(backend.image(), &full, crash.survivors(k), &what);
            survivors[len] += 1;
        }
    }
    // The last sync point keeps everything: the full log survives.
    assert!(survivors[full.log.len()] > 0, "{durability:?}: no crash image holds the full log: {survivors:?}");
    survivors
}

#[test]
fn crash_at_every_sync_point_keeps_every_immediate_append() {
    let survivors = crash_at_every_sync_point(Durability::Immediate, Prune::Never);
    // Every append is its own durable commit: crash images hold many different prefixes.
    let distinct = survivors.iter().filter(|&&n| n > 0).count();
    assert!(distinct >= 8, "only {distinct} distinct surviving logs: {survivors:?}");
}

#[test]
fn crash_at_every_sync_point_keeps_every_flushed_eventual_append() {
    let survivors = crash_at_every_sync_point(Durability::Eventual, Prune::Never);
    // Only the flushes (and the clean drop) make appends durable.
    let distinct = survivors.iter().filter(|&&n| n > 0).count();
    assert!(distinct >= 2, "only {distinct} distinct surviving logs: {survivors:?}");
}

/// A prune between appends: at every sync point and every kind of crash,
/// the image holds nothing pruned or the whole prune, never a part; once the
/// prune returned it is there (checked in `check_survivor`).
#[test]
fn crash_at_every_sync_point_leaves_a_prune_whole_or_absent() {
    for durability in [Durability::Immediate, Durability::Eventual] {
        let survivors = crash_at_every_sync_point(durability, Prune::AfterRound(1));
        assert!(survivors.iter().filter(|&&n| n > 0).count() >= 2, "{durability:?}: {survivors:?}");
    }
}

/// Where the shallow workload starts from: a signed stream (an admin, a
/// writer it granted, the writer's events, a checkpoint by the admin) and
/// one event the writer wrote on a fork, concurrently with the checkpoint.
struct Shallow {
    source: Arc<MemoryBlockstore>,
    genesis: Block,
    checkpoint: Checkpoint,
    late: Block,
}

fn shallow_source() -> Shallow {
    block_on(async {
        let (admin, writer) = (Signer::from_seed(&[1; 32]), Signer::from_seed(&[2; 32]));
        let genesis = auth::genesis(&"crash shallow", &[admin.public()]).expect("a genesis");
        let config = ReplicaConfig::default();
        let source = Arc::new(MemoryBlockstore::new());
        let mut full = Replica::create(source.clone(), &genesis, config).await.expect("create");
        full.set_signer(Some(admin.clone()));
        full.grant(writer.public(), Role::Writer).await.expect("grant");
        full.set_signer(Some(writer.clone()));
        for i in 0..6 {
            full.append(&format!("w{i}")).await.expect("append");
        }
        let mut fork = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, config).await.expect("create");
        for cid in full.order().collect::<Vec<_>>() {
            fork.ingest(full.get(&cid).await.expect("get").expect("held")).await.expect("ingest");
        }
        fork.set_signer(Some(writer));
        let late = fork.append(&"late").await.expect("append");
        let late = fork.get(&late).await.expect("get").expect("held");
        full.set_signer(Some(admin));
        let checkpoint = checkpoint::build(&mut full, &[], &CheckpointConfig::default()).await.expect("checkpoint");
        Shallow { source, genesis, checkpoint, late }
    })
}

/// The syncs completed when each step of the shallow workload returned.
#[derive(Debug, PartialEq, Eq)]
struct ShallowRun {
    created: u64,
    bootstrapped: u64,
    admitted: u64,
}

/// Starts a replica over `backend` from the checkpoint, then admits the
/// late event (it waits; `admit_late` anchors its parent and lets it in).
fn shallow_workload(backend: &CrashBackend, src: &Shallow) -> ShallowRun {
    block_on(async {
        let store = Arc::new(RedbBlockstore::with_backend(backend.clone(), Durability::Immediate).expect("a store"));
        let created = backend.syncs();
        let (mut thin, _) = Replica::bootstrap(
            store,
            src.source.as_ref(),
            src.genesis.cid(),
            &src.checkpoint.cid,
            &[],
            ReplicaConfig::default(),
        )
        .await
        .expect("bootstrap");
        let bootstrapped = backend.syncs();
        thin.ingest(src.late.clone()).await.expect("ingest");
        assert!(!thin.contains(src.late.cid()), "the late event waits for its parent below the cut");
        admit(&mut thin, src).await;
        ShallowRun { created, bootstrapped, admitted: backend.syncs() }
    })
}

async fn admit<S: ?Sized + StreamStore>(thin: &mut Replica<S>, src: &Shallow) {
    thin.admit_late(&src.checkpoint, src.source.as_ref()).await.expect("admit_late");
    assert!(thin.contains(src.late.cid()), "the late event is admitted");
}

/// A crash at every sync point of a shallow start and a late admission, in
/// every way: the image holds no stream or a part of the bootstrap (only
/// before it returned: the genesis alone, or the cut without the
/// checkpoint, which a second bootstrap takes up), or a shallow replica
/// that opens, holds the checkpoint, and admits the late event (again, if
/// the crash lost it) as a full replica does; once `admit_late` returned,
/// the event is there.
#[test]
fn crash_at_every_sync_point_of_a_shallow_start_leaves_a_replica_that_judges_as_before() {
    let src = shallow_source();
    let probe = CrashBackend::default();
    let full = shallow_workload(&probe, &src);
    let total = probe.syncs();
    assert!(full.bootstrapped > full.created && full.admitted > full.bootstrapped, "{full:?}");
    let (mut empty, mut partial, mut opened) = (0, 0, 0);
    for k in 1..=total {
        for crash in Crash::ALL {
            let what = format!("{crash:?} at sync {k} of {total}");
            let backend = CrashBackend::crashing_at(k, crash);
            assert_eq!(shallow_workload(&backend, &src), full, "{what}: a rerun made other syncs");
            let kept = crash.survivors(k);
            let store =
                match RedbBlockstore::with_backend(CrashBackend::from_image(backend.image()), Durability::Immediate) {
                    Ok(store) => Arc::new(store),
                    Err(StoreError::Backend(_)) if kept < full.created => {
                        empty += 1;
                        continue;
                    }
                    Err(e) => panic!("{what}: the store does not open: {e}"),
                };
            block_on(async {
                match Replica::open(store.clone(), src.genesis.cid(), ReplicaConfig::default()).await {
                    Err(OpenError::UnknownStream { .. }) => {
                        assert!(kept < full.bootstrapped, "{what}: a bootstrap that returned is lost");
                        empty += 1;
                    }
                    Err(e) => panic!("{what}: the shallow replica does not open: {e}"),
                    // The bootstrap is several commits (the genesis, the
                    // anchors, the checkpoint): a crash before it returned
                    // can leave the genesis alone, or the anchors without
                    // the checkpoint, a replica that syncs forward like any
                    // other; a second bootstrap takes it up.
                    Ok(thin) if !thin.contains(&src.checkpoint.cid) => {
                        assert!(kept < full.bootstrapped, "{what}: a bootstrap that returned lost its checkpoint");
                        let cut: Vec<Cid> = src.checkpoint.parents.clone();
                        let heads = thin.heads();
                        assert!(heads == [*src.genesis.cid()] || heads == cut, "{what}: heads {heads:?}");
                        drop(thin);
                        let config = ReplicaConfig::default();
                        let again = Replica::bootstrap(
                            store,
                            src.source.as_ref(),
                            src.genesis.cid(),
                            &src.checkpoint.cid,
                            &[],
                            config,
                        );
                        let (mut thin, _) = again.await.unwrap_or_else(|e| panic!("{what}: no second bootstrap: {e}"));
                        assert_eq!(thin.heads(), [src.checkpoint.cid], "{what}");
                        thin.ingest(src.late.clone()).await.expect("ingest");
                        admit(&mut thin, &src).await;
                        partial += 1;
                    }
                    Ok(mut thin) => {
                        if kept >= full.admitted {
                            assert!(thin.contains(src.late.cid()), "{what}: an admitted late event is lost");
                        }
                        if !thin.contains(src.late.cid()) {
                            thin.ingest(src.late.clone()).await.expect("ingest");
                            admit(&mut thin, &src).await;
                        }
                        opened += 1;
                    }
                }
            });
        }
    }
    assert!(
        empty > 0 && partial > 0 && opened > 0,
        "{empty} images without the stream, {partial} partial, {opened} whole"
    );
}

/// The backend itself: a crash during a sync keeps the previous durable
/// image, a crash after it keeps the new one, and writes after the crash
/// never reach the image.
#[test]
fn crash_backend_keeps_only_what_a_completed_sync_made_durable() {
    for (crash, want) in [
        (Crash::DuringSync, vec![1u8, 1]),
        (Crash::DuringSyncWithTheHeader, vec![2, 1]),
        (Crash::AfterSync, vec![2, 2, 2]),
    ] {
        let b = CrashBackend::crashing_at(2, crash);
        b.write(0, &[1, 1]).unwrap();
        b.sync_data().unwrap();
        b.write(0, &[2]).unwrap();
        b.write(1, &[2, 2]).unwrap();
        b.sync_data().unwrap();
        b.write(0, &[3, 3, 3, 3]).unwrap();
        b.sync_data().unwrap();
        assert!(b.crashed());
        assert_eq!(b.image(), want, "{crash:?}");
        assert_eq!(b.len().unwrap(), 4);
        let mut out = [0u8; 4];
        b.read(0, &mut out).unwrap();
        assert_eq!(out, [3, 3, 3, 3], "the process still sees its own writes");
        assert!(b.read(1, &mut out).is_err(), "a read past the end is an error");
    }
}
