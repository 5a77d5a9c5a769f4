//! Crash consistency of a replica over the redb store.
//!
//! The test binary runs itself as a child process (the `crash_child` test,
//! inert unless `MCLOCK_CRASH_DIR` is set) that appends in a loop and prints
//! `durable <cid>` after every append the store reported durable. The parent
//! kills it with SIGKILL at a random moment, then reopens the store and checks
//! that every block verifies, every head's ancestry is complete, and no
//! append reported durable is lost. Each `crash_` test runs many kill points.
//! In the `prune` mode the child also prunes every few appends (and prints
//! `pruned <count>` once a prune returned): a kill during a prune leaves the
//! old pruned set or the new one, never a part, and a returned prune stays.
#![cfg(all(unix, feature = "redb"))]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::executor::block_on;
// SplitMix64, seeded: every generated structure is a function of its seed.
use merkle_clock::replica::PrunePolicy;
use merkle_clock::sim::SimRng as Rng;
use merkle_clock::store::{Durability, RedbBlockstore};
use merkle_clock::{Blockstore, Cid, Event, Replica, ReplicaConfig, StreamStore};

const DIR_VAR: &str = "MCLOCK_CRASH_DIR";
const MODE_VAR: &str = "MCLOCK_CRASH_MODE";

fn genesis() -> merkle_clock::Block {
    Event::genesis("crash test").encode().unwrap()
}

/// The child: appends until killed. Not a real test unless spawned by one.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else { return };
    let mode = std::env::var(MODE_VAR).unwrap_or_default();
    let path = Path::new(&dir).join("store.redb");
    block_on(async {
        let durability = if mode == "batched" { Durability::Eventual } else { Durability::Immediate };
        let store = Arc::new(RedbBlockstore::open_with(&path, durability).unwrap());
        let mut replica = Replica::open_or_create(store.clone(), &genesis(), ReplicaConfig::default()).await.unwrap();
        let mut out = std::io::stdout().lock();
        let payload = vec![7u8; 100];
        for i in 0u64.. {
            match mode.as_str() {
                "batched" => {
                    let cids = replica.append_many((0..8).map(|j| (i, j, payload.clone()))).await.unwrap();
                    if i % 4 == 3 {
                        store.flush().unwrap();
                        for c in replica.heads() {
                            writeln!(out, "durable {c}").unwrap();
                        }
                    }
                    let _ = cids;
                }
                _ => {
                    let cid = replica.append(&(i, payload.clone())).await.unwrap();
                    writeln!(out, "durable {cid}").unwrap();
                    if mode == "prune" && i % 4 == 3 {
                        replica.prune(PrunePolicy::KeepNewest(5)).await.unwrap();
                        writeln!(out, "pruned {}", replica.metrics().pruned).unwrap();
                    }
                }
            }
            out.flush().unwrap();
        }
    });
}

/// Runs the child once in `dir`, kills it after `delay` (counted, when
/// `after_lines` is given, from the child's printing that many lines: a kill
/// point measured in its progress, not in a loaded machine's time), returns
/// the CIDs it reported durable and the largest pruned count it reported.
fn run_and_kill(dir: &Path, mode: &str, delay: Duration, after_lines: Option<usize>) -> (Vec<Cid>, u64) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(DIR_VAR, dir)
        .env(MODE_VAR, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let pruned = Arc::new(Mutex::new(0u64));
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let reader = {
        let (seen, pruned) = (seen.clone(), pruned.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines_tx.send(());
                if let Some(cid) = line.strip_prefix("durable ") {
                    seen.lock().unwrap().push(Cid::try_from(cid).unwrap());
                } else if let Some(n) = line.strip_prefix("pruned ") {
                    *pruned.lock().unwrap() = n.parse().unwrap();
                }
            }
        })
    };
    for _ in 0..after_lines.unwrap_or(0) {
        // Bounded: a child that stops printing is killed all the same.
        if lines.recv_timeout(Duration::from_secs(60)).is_err() {
            break;
        }
    }
    std::thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    let pruned = *pruned.lock().unwrap();
    (Arc::try_unwrap(seen).unwrap().into_inner().unwrap(), pruned)
}

/// Reopens the store and checks it; returns the number of events. At least
/// `pruned` events must be pruned, and the pruned ones must be the oldest
/// after the genesis (what `KeepNewest` prunes of a chain), all of them.
fn check_store(dir: &Path, durable: &[Cid], pruned: u64) -> usize {
    block_on(async {
        let store = Arc::new(RedbBlockstore::open(dir.join("store.redb")).unwrap());
        let g = genesis();
        let replica = match Replica::open(store.clone(), g.cid(), ReplicaConfig::default()).await {
            Ok(r) => r,
            // Killed before the genesis commit: nothing may have been reported durable.
            Err(merkle_clock::replica::OpenError::UnknownStream { .. }) => {
                assert!(durable.is_empty());
                return 0;
            }
            Err(e) => panic!("reopen failed: {e}"),
        };
        // Every block of the log is stored and verifies; open() already checked that the
        // log is a topological order whose heads are the stored heads, so each head's
        // ancestry is complete.
        // (The first `get` builds the store's keydir from the recovered log.)
        let order: Vec<Cid> = replica.order().collect();
        let held = order.iter().position(|c| c != g.cid() && !replica.is_pruned(c)).unwrap_or(order.len());
        assert!(order[held..].iter().all(|c| !replica.is_pruned(c)), "the pruned events are not a prefix");
        assert_eq!(replica.metrics().pruned as usize, held.saturating_sub(1), "the pruned events are not a prefix");
        assert!(replica.metrics().pruned >= pruned, "a prune that returned is lost");
        for cid in order.iter().filter(|c| !replica.is_pruned(c)) {
            let block = store.get(cid).await.unwrap().expect("logged block is stored");
            block.verify().unwrap();
        }
        let kept: Vec<Cid> = order.iter().filter(|c| !replica.is_pruned(c)).copied().collect();
        let blocks = store.get_many(&kept).await.unwrap();
        assert!(blocks.iter().zip(&kept).all(|(b, c)| b.as_ref().is_some_and(|b| b.cid() == c)));
        assert_eq!(store.heads(g.cid()).await.unwrap().unwrap(), replica.heads());
        for cid in durable {
            assert!(replica.contains(cid), "append {cid} was reported durable but is lost");
        }
        replica.len()
    })
}

fn kill_points(mode: &str, seed: u64, iterations: usize) {
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut durable = Vec::new();
    let mut last_len = 0;
    let mut pruned = 0;
    for i in 0..iterations {
        // Kill early (during open/recovery) sometimes, mid-stream mostly.
        let (delay, after_lines) = if mode == "prune" {
            // After some progress, within a few milliseconds: inside a prune often.
            (Duration::from_micros(rng.next_u64() % 3_000), Some(rng.index(30)))
        } else if i % 5 == 0 {
            (Duration::from_millis(rng.next_u64() % 15), None)
        } else {
            (Duration::from_millis(20 + rng.next_u64() % 120), None)
        };
        let (reported, pruned_now) = run_and_kill(dir.path(), mode, delay, after_lines);
        durable.extend(reported);
        pruned = pruned.max(pruned_now);
        let len = check_store(dir.path(), &durable, pruned);
        assert!(len >= last_len, "the store lost events: {len} < {last_len}");
        last_len = len;
    }
    eprintln!(
        "{mode}: {iterations} kill points, {last_len} events survived, {} reported durable, {pruned} reported pruned",
        durable.len()
    );
    if mode == "prune" {
        assert!(pruned > 0, "no prune returned before a kill: the kill points missed pruning");
    }
}

#[test]
fn crash_durable_appends_survive_sigkill() {
    if std::env::var(DIR_VAR).is_ok() {
        return;
    }
    kill_points("durable", 1, 30);
}

#[test]
fn crash_pruning_survives_sigkill_whole_or_not_at_all() {
    if std::env::var(DIR_VAR).is_ok() {
        return;
    }
    kill_points("prune", 3, 25);
}

#[test]
fn crash_batched_appends_survive_sigkill_up_to_the_last_flush() {
    if std::env::var(DIR_VAR).is_ok() {
        return;
    }
    kill_points("batched", 2, 25);
}
