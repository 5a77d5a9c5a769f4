//! The redb store beyond the shared contract (which `tests/store_contract.rs`
//! runs on redb in memory and on disk, in both durability modes):
//! persistence, sharing, durability and corruption.
#![cfg(feature = "redb")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use merkle_clock::store::{Durability, RedbBlockstore};
use merkle_clock::{Block, Blockstore, Cid, Event, Replica, ReplicaConfig, StoreError, StreamStore};

/// A chain of `n` events: a genesis named by `name`, then each event the child of the last.
fn chain(name: &str, n: usize) -> Vec<Block> {
    let mut out = vec![Event::genesis(name.to_owned()).encode().expect("encodes")];
    for i in 1..n {
        let parent = *out[i - 1].cid();
        out.push(Event::new(i as u64, vec![parent], format!("{name} {i}")).encode().expect("encodes"));
    }
    out
}

fn cids(blocks: &[Block]) -> Vec<Cid> {
    blocks.iter().map(|b| *b.cid()).collect()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn reopen_keeps_blocks_heads_and_log() {
    let dir = tempdir();
    let path = dir.path().join("db.redb");
    let blocks = chain("reopen", 10);
    let stream = *blocks[0].cid();
    let loose = Event::genesis("a loose block").encode().unwrap();
    {
        let store = RedbBlockstore::open(&path).unwrap();
        block_on(store.commit(&stream, &blocks[..4], &[*blocks[3].cid()])).unwrap();
        block_on(store.commit(&stream, &blocks[4..], &[*blocks[9].cid()])).unwrap();
        block_on(store.put(loose.clone())).unwrap();
    }
    let store = RedbBlockstore::open(&path).unwrap();
    assert_eq!(store.path(), Some(path.as_path()));
    assert_eq!(block_on(store.heads(&stream)).unwrap(), Some(vec![*blocks[9].cid()]));
    assert_eq!(block_on(store.log_len(&stream)).unwrap(), 10);
    assert_eq!(block_on(store.read_log(&stream, 0, usize::MAX)).unwrap(), cids(&blocks));
    assert_eq!(block_on(store.streams()).unwrap(), vec![stream]);
    for b in blocks.iter().chain([&loose]) {
        let got = block_on(store.get(b.cid())).unwrap().expect("block survives the reopen");
        assert_eq!(&got, b);
        got.verify().expect("a stored block still verifies");
    }
    assert_eq!(store.block_count().unwrap(), 11);
    // The log continues where it stopped.
    let more = Event::new(10, vec![*blocks[9].cid()], "reopen 10".to_owned()).encode().unwrap();
    block_on(store.commit(&stream, std::slice::from_ref(&more), &[*more.cid()])).unwrap();
    assert_eq!(block_on(store.read_log(&stream, 9, 5)).unwrap(), vec![*blocks[9].cid(), *more.cid()]);
}

#[test]
fn two_streams_share_a_block() {
    let store = RedbBlockstore::in_memory().unwrap();
    let a = chain("stream a", 3);
    let b = chain("stream b", 1);
    block_on(store.commit(a[0].cid(), &a, &[*a[2].cid()])).unwrap();
    // Stream b logs a's second event too (a topic that relays it).
    block_on(store.commit(b[0].cid(), &[b[0].clone(), a[1].clone()], &[*b[0].cid(), *a[1].cid()])).unwrap();
    assert_eq!(store.block_count().unwrap(), 4, "the shared block is stored once");
    assert_eq!(block_on(store.read_log(a[0].cid(), 0, 10)).unwrap(), cids(&a));
    assert_eq!(block_on(store.read_log(b[0].cid(), 0, 10)).unwrap(), vec![*b[0].cid(), *a[1].cid()]);
    assert_eq!(block_on(store.heads(b[0].cid())).unwrap(), Some(vec![*b[0].cid(), *a[1].cid()]));
    assert_eq!(block_on(store.heads(a[0].cid())).unwrap(), Some(vec![*a[2].cid()]));
    let mut want = vec![*a[0].cid(), *b[0].cid()];
    want.sort_unstable();
    assert_eq!(block_on(store.streams()).unwrap(), want);
}

/// The keydir is built on the first lookup after an open, not by the open, the
/// log reads or a replica's open; later commits keep it up to date.
#[test]
fn logged_blocks_are_found_before_and_after_reopen() {
    let dir = tempdir();
    let path = dir.path().join("keydir.redb");
    let blocks = chain("keydir", 30);
    let stream = *blocks[0].cid();
    let missing = Event::genesis("never stored".to_owned()).encode().unwrap();
    let check = |store: &RedbBlockstore, logged: &[Block]| {
        for b in logged {
            assert!(block_on(store.has(b.cid())).unwrap());
            assert_eq!(block_on(store.get(b.cid())).unwrap().as_ref(), Some(b));
        }
        let mut want: Vec<Option<Block>> = logged.iter().rev().cloned().map(Some).collect();
        let mut asked = cids(logged);
        asked.reverse();
        asked.insert(1, *missing.cid());
        want.insert(1, None);
        assert_eq!(block_on(store.get_many(&asked)).unwrap(), want);
        assert!(!block_on(store.has(missing.cid())).unwrap());
        assert_eq!(block_on(store.get(missing.cid())).unwrap(), None);
    };
    {
        let store = RedbBlockstore::open(&path).unwrap();
        block_on(store.commit(&stream, &blocks[..10], &[*blocks[9].cid()])).unwrap();
        assert!(format!("{store:?}").contains("not built"));
        check(&store, &blocks[..10]); // builds the keydir
        assert!(format!("{store:?}").contains("keydir: 10"));
        // Commits after the build land in it.
        block_on(store.commit(&stream, &blocks[10..20], &[*blocks[19].cid()])).unwrap();
        assert!(format!("{store:?}").contains("keydir: 20"));
        check(&store, &blocks[..20]);
    }
    {
        let store = std::sync::Arc::new(RedbBlockstore::open(&path).unwrap());
        let replica = block_on(Replica::open(store.clone(), &stream, ReplicaConfig::default())).unwrap();
        assert_eq!(replica.len(), 20);
        assert_eq!(block_on(store.read_log_entries(&stream, 0, 100)).unwrap().len(), 20);
        assert!(format!("{store:?}").contains("not built"), "opening a replica builds no keydir");
        // Commits before the build are found by the build's scan.
        block_on(store.commit(&stream, &blocks[20..25], &[*blocks[24].cid()])).unwrap();
        check(&store, &blocks[..25]);
        block_on(store.commit(&stream, &blocks[25..], &[*blocks[29].cid()])).unwrap();
        check(&store, &blocks);
        assert_eq!(store.block_count().unwrap(), 30);
    }
    // A CID of another shape never needs the keydir.
    let store = RedbBlockstore::open(&path).unwrap();
    let other = Cid::new_v1(0x55, blocks[3].cid().hash().to_owned());
    assert_eq!(block_on(store.get(&other)).unwrap(), None);
    assert!(format!("{store:?}").contains("not built"));
    check(&store, &blocks);
}

/// Blocks stored with `put` live in the `blocks` table, whatever their CID,
/// and survive a reopen.
#[test]
fn put_only_blocks_are_found() {
    let dir = tempdir();
    let path = dir.path().join("put.redb");
    let event = Event::genesis("put only".to_owned()).encode().unwrap();
    // Stores do not verify: a block with a CID of another shape is kept as given.
    let raw = Block::new_unchecked(Cid::new_v1(0x55, event.cid().hash().to_owned()), b"raw bytes".to_vec());
    let logged = chain("logged beside", 3);
    for reopen in [false, true] {
        let store = RedbBlockstore::open(&path).unwrap();
        if !reopen {
            block_on(store.commit(logged[0].cid(), &logged, &[*logged[2].cid()])).unwrap();
            assert!(block_on(store.has(logged[0].cid())).unwrap()); // builds the keydir first
            block_on(store.put_many(vec![event.clone(), raw.clone()])).unwrap();
        }
        for b in [&event, &raw, &logged[1]] {
            assert!(block_on(store.has(b.cid())).unwrap(), "reopen {reopen}");
            assert_eq!(block_on(store.get(b.cid())).unwrap().as_ref(), Some(b));
        }
        let got = block_on(store.get_many(&[*raw.cid(), *logged[2].cid(), *event.cid()])).unwrap();
        assert_eq!(got, vec![Some(raw.clone()), Some(logged[2].clone()), Some(event.clone())]);
        assert_eq!(store.block_count().unwrap(), 5);
        assert!(format!("{store:?}").contains("blocks_table: 2"));
    }
}

/// A block put first and committed later stays in `blocks` (the log names
/// it), is stored once, and reads back through every path; so does a
/// logged block put again.
#[test]
fn block_put_then_committed_is_logged_by_cid() {
    let dir = tempdir();
    let path = dir.path().join("put-then-commit.redb");
    let blocks = chain("put then commit", 4);
    let stream = *blocks[0].cid();
    {
        let store = RedbBlockstore::open(&path).unwrap();
        block_on(store.put(blocks[2].clone())).unwrap();
        block_on(store.commit(&stream, &blocks[..2], &[*blocks[1].cid()])).unwrap();
        block_on(store.commit(&stream, &blocks[2..], &[*blocks[3].cid()])).unwrap();
        assert!(format!("{store:?}").contains("blocks_table: 1"), "the commit did not copy the put block");
        // Putting a logged block again changes nothing a reader sees.
        block_on(store.put(blocks[1].clone())).unwrap();
        assert_eq!(store.block_count().unwrap(), 4);
    }
    let store = std::sync::Arc::new(RedbBlockstore::open(&path).unwrap());
    assert_eq!(block_on(store.read_log(&stream, 0, 10)).unwrap(), cids(&blocks));
    let entries = block_on(store.read_log_entries(&stream, 0, 10)).unwrap();
    assert_eq!(entries[2].cid, *blocks[2].cid());
    assert_eq!((entries[2].height, entries[2].parents.clone()), (2, vec![*blocks[1].cid()]));
    let replica = block_on(Replica::open(store.clone(), &stream, ReplicaConfig::default())).unwrap();
    assert_eq!(replica.heads(), vec![*blocks[3].cid()]);
    for b in &blocks {
        assert_eq!(block_on(store.get(b.cid())).unwrap().as_ref(), Some(b));
        assert!(block_on(store.has(b.cid())).unwrap());
    }
    assert_eq!(block_on(store.get_many(&cids(&blocks))).unwrap(), blocks.iter().cloned().map(Some).collect::<Vec<_>>());
    assert_eq!(store.block_count().unwrap(), 4);
}

/// Only events can be logged (a reopen parses every logged header): a commit
/// of anything else fails and changes nothing.
#[test]
fn commit_of_a_non_event_is_refused() {
    let store = RedbBlockstore::in_memory().unwrap();
    let blocks = chain("non-event", 2);
    let stream = *blocks[0].cid();
    block_on(store.commit(&stream, &blocks[..1], &[stream])).unwrap();
    let junk = Block::from_bytes(b"not an event".to_vec());
    let r = block_on(store.commit(&stream, &[blocks[1].clone(), junk.clone()], &[*junk.cid()]));
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
    assert_eq!(block_on(store.log_len(&stream)).unwrap(), 1);
    assert_eq!(block_on(store.heads(&stream)).unwrap(), Some(vec![stream]));
    assert!(!block_on(store.has(blocks[1].cid())).unwrap());
}

/// Lookups racing commits: the keydir's build (on whichever thread looks
/// first) misses no commit and no commit misses it.
#[test]
fn lookups_racing_commits_see_every_committed_block() {
    use std::sync::{Arc, Mutex};
    for round in 0..4 {
        let store = Arc::new(RedbBlockstore::in_memory().unwrap());
        let blocks = chain(&format!("race {round}"), 400);
        let stream = *blocks[0].cid();
        let committed: Arc<Mutex<usize>> = Arc::new(Mutex::new(0));
        let writer = {
            let (store, blocks, committed) = (store.clone(), blocks.clone(), committed.clone());
            std::thread::spawn(move || {
                for chunk in blocks.chunks(8) {
                    block_on(store.commit(&stream, chunk, &[*chunk.last().unwrap().cid()])).unwrap();
                    *committed.lock().unwrap() += chunk.len();
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (store, blocks, committed) = (store.clone(), blocks.clone(), committed.clone());
                std::thread::spawn(move || {
                    loop {
                        let n = *committed.lock().unwrap();
                        for b in blocks[..n].iter().rev().skip(r).step_by(7) {
                            assert!(block_on(store.has(b.cid())).unwrap(), "round {round}: committed block not found");
                        }
                        if let Some(b) = blocks[..n].last() {
                            assert_eq!(block_on(store.get(b.cid())).unwrap().as_ref(), Some(b));
                        }
                        if n == blocks.len() {
                            break;
                        }
                    }
                })
            })
            .collect();
        writer.join().unwrap();
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(store.block_count().unwrap(), 400);
    }
}

#[test]
fn log_pages_and_bounds() {
    let store = RedbBlockstore::in_memory().unwrap();
    let blocks = chain("pages", 25);
    let stream = *blocks[0].cid();
    for chunk in blocks.chunks(7) {
        block_on(store.commit(&stream, chunk, &[*chunk.last().unwrap().cid()])).unwrap();
    }
    let mut read = Vec::new();
    let mut pos = 0;
    loop {
        let page = block_on(store.read_log(&stream, pos, 4)).unwrap();
        if page.is_empty() {
            break;
        }
        pos += page.len() as u64;
        read.extend(page);
    }
    assert_eq!(read, cids(&blocks));
    assert!(block_on(store.read_log(&stream, 25, 10)).unwrap().is_empty());
    assert!(block_on(store.read_log(&stream, u64::MAX, usize::MAX)).unwrap().is_empty());
    assert!(block_on(store.read_log(&stream, 3, 0)).unwrap().is_empty());
    // A commit with no blocks registers the stream and replaces its heads only.
    let other = chain("empty commit", 1);
    block_on(store.commit(other[0].cid(), &[], &[])).unwrap();
    assert_eq!(block_on(store.heads(other[0].cid())).unwrap(), Some(vec![]));
    assert_eq!(block_on(store.log_len(other[0].cid())).unwrap(), 0);
    assert_eq!(block_on(store.streams()).unwrap().len(), 2);
}

#[test]
fn eventual_mode_flush_round_trip() {
    let dir = tempdir();
    let path = dir.path().join("eventual.redb");
    let blocks = chain("eventual", 6);
    let stream = *blocks[0].cid();
    {
        let store = RedbBlockstore::open_with(&path, Durability::Eventual).unwrap();
        assert_eq!(store.durability(), Durability::Eventual);
        block_on(store.commit(&stream, &blocks[..3], &[*blocks[2].cid()])).unwrap();
        // Visible at once, before any flush.
        assert_eq!(block_on(store.log_len(&stream)).unwrap(), 3);
        store.flush().unwrap();
        block_on(store.commit(&stream, &blocks[3..], &[*blocks[5].cid()])).unwrap();
        store.close().unwrap();
    }
    let store = RedbBlockstore::open(&path).unwrap();
    assert_eq!(block_on(store.read_log(&stream, 0, 100)).unwrap(), cids(&blocks));
    assert_eq!(block_on(store.heads(&stream)).unwrap(), Some(vec![*blocks[5].cid()]));
    // Flush under Immediate is a harmless no-op.
    store.flush().unwrap();
}

const CHILD_ENV: &str = "MERKLE_CLOCK_REDB_CHILD_DIR";
const FLUSHED: usize = 20;
const TOTAL: usize = 50;

/// Run by `abrupt_exit_keeps_durable_commits` in a child process: commits, then
/// exits without dropping anything (no close, no destructors).
#[test]
fn abrupt_exit_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dir = PathBuf::from(dir);
    let blocks = chain("abrupt", TOTAL);
    let stream = *blocks[0].cid();
    let immediate = RedbBlockstore::open(dir.join("immediate.redb")).unwrap();
    let eventual = RedbBlockstore::open_with(dir.join("eventual.redb"), Durability::Eventual).unwrap();
    for (i, b) in blocks.iter().enumerate() {
        block_on(immediate.commit(&stream, std::slice::from_ref(b), &[*b.cid()])).unwrap();
        block_on(eventual.commit(&stream, std::slice::from_ref(b), &[*b.cid()])).unwrap();
        if i + 1 == FLUSHED {
            eventual.flush().unwrap();
        }
    }
    std::process::exit(0);
}

/// A process that exits without closing its stores (as a kill would) keeps
/// every Immediate commit, and under Eventual every commit up to the last
/// flush; whatever survives is a consistent prefix (heads match the log).
#[test]
fn abrupt_exit_keeps_durable_commits() {
    let dir = tempdir();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "abrupt_exit_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let blocks = chain("abrupt", TOTAL);
    let stream = *blocks[0].cid();

    let immediate = RedbBlockstore::open(dir.path().join("immediate.redb")).unwrap();
    assert_eq!(block_on(immediate.read_log(&stream, 0, usize::MAX)).unwrap(), cids(&blocks));
    assert_eq!(block_on(immediate.heads(&stream)).unwrap(), Some(vec![*blocks[TOTAL - 1].cid()]));

    let eventual = RedbBlockstore::open(dir.path().join("eventual.redb")).unwrap();
    let log = block_on(eventual.read_log(&stream, 0, usize::MAX)).unwrap();
    assert!(log.len() >= FLUSHED, "lost flushed commits: {} of {FLUSHED} left", log.len());
    assert_eq!(log, cids(&blocks[..log.len()]), "the surviving log is a prefix");
    assert_eq!(block_on(eventual.heads(&stream)).unwrap(), Some(vec![*blocks[log.len() - 1].cid()]));
    for b in &blocks[..log.len()] {
        assert!(block_on(eventual.has(b.cid())).unwrap());
    }
    eprintln!("eventual store kept {} of {TOTAL} commits after an abrupt exit (flushed: {FLUSHED})", log.len());
}

const HEADS_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("stream_heads");
const LOG_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("stream_log");
const META_TABLE: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");

/// Writes through raw redb, as a bug or a foreign writer would.
fn raw_write(path: &Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    f(&txn);
    txn.commit().unwrap();
}

fn corrupt(r: Result<impl std::fmt::Debug, StoreError>) -> String {
    match r {
        Err(StoreError::Corrupt(msg)) => msg,
        other => panic!("expected StoreError::Corrupt, got {other:?}"),
    }
}

#[test]
fn heads_of_bad_length_are_corrupt() {
    let dir = tempdir();
    let path = dir.path().join("corrupt.redb");
    let blocks = chain("corrupt", 3);
    let stream = *blocks[0].cid();
    let key = stream.to_bytes();
    let head = blocks[2].cid().to_bytes();
    {
        let store = RedbBlockstore::open(&path).unwrap();
        block_on(store.commit(&stream, &blocks, &[*blocks[2].cid()])).unwrap();
    }
    let bad_values: [Vec<u8>; 3] = [
        head[..head.len() - 1].to_vec(),         // truncated
        [head.as_slice(), &[0x01]].concat(),     // one stray byte
        [head.as_slice(), &head[..10]].concat(), // a CID and a part
    ];
    for bad in bad_values {
        raw_write(&path, |txn| {
            txn.open_table(HEADS_TABLE).unwrap().insert(key.as_slice(), bad.as_slice()).unwrap();
        });
        let store = RedbBlockstore::open(&path).unwrap();
        let msg = corrupt(block_on(store.heads(&stream)));
        assert!(msg.contains("heads"), "{msg}");
        // The rest of the store still reads.
        assert_eq!(block_on(store.log_len(&stream)).unwrap(), 3);
    }
}

#[test]
fn corrupt_log_values_are_corrupt_errors_naming_the_entry() {
    let dir = tempdir();
    let path = dir.path().join("corrupt-log.redb");
    let blocks = chain("corrupt log", 3);
    let stream = *blocks[0].cid();
    {
        let store = RedbBlockstore::open(&path).unwrap();
        block_on(store.commit(&stream, &blocks, &[*blocks[2].cid()])).unwrap();
    }
    let key = [stream.to_bytes().as_slice(), &1u64.to_be_bytes()].concat();
    let digest = blocks[1].cid().hash().digest().to_vec();
    let cid = blocks[1].cid().to_bytes();
    let not_an_event = Event::genesis("x".to_owned()).encode().unwrap().bytes()[..5].to_vec();
    let entry = format!("log entry 1 of stream {stream}");
    // Values no reader can make sense of: every read of the entry, and the keydir's build, refuse them.
    let unreadable: [Vec<u8>; 6] = [
        vec![],                                       // empty
        [&[7u8][..], &digest].concat(),               // an unknown tag
        [&[0u8][..], &digest[..20]].concat(),         // inline, the digest cut short
        [&[1u8][..], &cid[..cid.len() - 1]].concat(), // in `blocks`, the CID cut short
        [&[1u8][..], &cid, &[0]].concat(),            // in `blocks`, a stray byte after the CID
        [cid.as_slice(), &[0]].concat(),              // the format-2 value (the CID first)
    ];
    for bad in &unreadable {
        raw_write(&path, |txn| {
            txn.open_table(LOG_TABLE).unwrap().insert(key.as_slice(), bad.as_slice()).unwrap();
        });
        let store = RedbBlockstore::open(&path).unwrap();
        let msg = corrupt(block_on(store.read_log(&stream, 0, 10)));
        assert!(msg.contains(&entry), "{bad:?}: {msg}");
        let msg = corrupt(block_on(store.read_log_entries(&stream, 0, 10)));
        assert!(msg.contains(&entry), "{bad:?}: {msg}");
        let msg = corrupt(block_on(store.get(blocks[2].cid())));
        assert!(msg.contains(&entry), "the keydir's build: {bad:?}: {msg}");
        // The entries around it still read.
        assert_eq!(block_on(store.read_log(&stream, 2, 10)).unwrap(), vec![*blocks[2].cid()]);
        assert_eq!(block_on(store.read_log(&stream, 0, 1)).unwrap(), vec![stream]);
    }
    // Values that name the block but hold no event: the CIDs read, the headers do not.
    let headless: [Vec<u8>; 2] = [
        [&[0u8][..], &digest, &not_an_event].concat(), // inline, bytes that are no event
        [&[1u8][..], &cid].concat(),                   // in `blocks`, which does not hold it
    ];
    for bad in &headless {
        raw_write(&path, |txn| {
            txn.open_table(LOG_TABLE).unwrap().insert(key.as_slice(), bad.as_slice()).unwrap();
        });
        let store = RedbBlockstore::open(&path).unwrap();
        assert_eq!(block_on(store.read_log(&stream, 0, 10)).unwrap(), cids(&blocks));
        let msg = corrupt(block_on(store.read_log_entries(&stream, 0, 10)));
        assert!(msg.contains(&entry), "{bad:?}: {msg}");
        let opened = block_on(Replica::open(std::sync::Arc::new(store), &stream, ReplicaConfig::default()));
        assert!(opened.is_err(), "a replica opens over a corrupt log");
    }
}

#[test]
fn unknown_format_version_is_refused() {
    let dir = tempdir();
    let path = dir.path().join("future.redb");
    drop(RedbBlockstore::open(&path).unwrap());
    raw_write(&path, |txn| {
        txn.open_table(META_TABLE).unwrap().insert("format_version", 99).unwrap();
    });
    corrupt(RedbBlockstore::open(&path));
}

/// Format 2 (the log held CIDs and headers, the blocks sat in `blocks`) is
/// refused with a message that says so; there is no migration.
#[test]
fn format_version_2_is_refused() {
    let dir = tempdir();
    let path = dir.path().join("v2.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META_TABLE).unwrap().insert("format_version", 2).unwrap();
        let blocks = chain("v2", 1);
        let value = [blocks[0].cid().to_bytes().as_slice(), &0u64.to_be_bytes()].concat();
        let key = [blocks[0].cid().to_bytes().as_slice(), &0u64.to_be_bytes()].concat();
        txn.open_table(LOG_TABLE).unwrap().insert(key.as_slice(), value.as_slice()).unwrap();
        txn.commit().unwrap();
    }
    let msg = corrupt(RedbBlockstore::open(&path));
    assert!(msg.contains("version 2") && msg.contains("reads only version 4") && msg.contains("earlier"), "{msg}");
    // Refused without being changed: still version 2.
    let db = redb::Database::open(&path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    assert_eq!(txn.open_table(META_TABLE).unwrap().get("format_version").unwrap().unwrap().value(), 2);
}

/// A store file holding a chain of `n` events named `name`, then changed
/// by `edit` as an older version would have left it: its directory, path
/// and blocks.
fn older_file(
    name: &str,
    n: usize,
    edit: impl FnOnce(&redb::WriteTransaction),
) -> (tempfile::TempDir, PathBuf, Vec<Block>) {
    let dir = tempdir();
    let path = dir.path().join(format!("{name}.redb"));
    let blocks = chain(name, n);
    {
        let store = RedbBlockstore::open(&path).unwrap();
        block_on(store.commit(blocks[0].cid(), &blocks, &[*blocks[n - 1].cid()])).unwrap();
    }
    raw_write(&path, edit);
    (dir, path, blocks)
}

/// Format 3 is format 4 with nothing pruned: it is opened, upgraded in
/// place, and reads as before.
#[test]
fn format_version_3_is_upgraded_in_place() {
    let (_dir, path, blocks) = older_file("v3", 4, |txn| {
        txn.open_table(META_TABLE).unwrap().insert("format_version", 3).unwrap();
        txn.delete_table(redb::TableDefinition::<&[u8], &[u8]>::new("stream_pruned")).unwrap();
    });
    let stream = *blocks[0].cid();
    let store = RedbBlockstore::open(&path).unwrap();
    assert_eq!(block_on(store.read_log(&stream, 0, 10)).unwrap(), cids(&blocks));
    assert_eq!(block_on(store.prune(&stream, &[(1, *blocks[1].cid())])).unwrap().events, 1);
    drop(store);
    let db = redb::Database::open(&path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    assert_eq!(txn.open_table(META_TABLE).unwrap().get("format_version").unwrap().unwrap().value(), 4);
}

/// A format 4 file written before streams had records (no
/// `stream_records` table) gets the table in place when opened: it reads as
/// before, answers no record, and takes one.
#[test]
fn a_format_4_file_without_stream_records_gets_the_table_in_place() {
    let (_dir, path, blocks) = older_file("v4", 3, |txn| {
        txn.delete_table(redb::TableDefinition::<&[u8], &[u8]>::new("stream_records")).unwrap();
    });
    let stream = *blocks[0].cid();
    let store = RedbBlockstore::open(&path).unwrap();
    assert_eq!(block_on(store.read_log(&stream, 0, 10)).unwrap(), cids(&blocks));
    assert_eq!(block_on(store.stream_record(&stream)).unwrap(), None);
    block_on(store.put_stream_record(&stream, b"anchors")).unwrap();
    drop(store);
    let store = RedbBlockstore::open(&path).unwrap();
    assert_eq!(block_on(store.stream_record(&stream)).unwrap().as_deref(), Some(&b"anchors"[..]));
}

/// Pruning in several passes over a log long enough for many pruned rows
/// (every third entry, then a range across rows, then all but the newest):
/// every page of the log, from any start, reads back as the model says; the
/// keydir leaves the pruned events out; a reopened replica has the same
/// clock.
#[test]
fn pruning_in_passes_reads_back_from_any_position() {
    use merkle_clock::replica::PrunePolicy;
    let blocks = chain("rows", 3_000);
    let stream = *blocks[0].cid();
    let dir = tempdir();
    let path = dir.path().join("rows.redb");
    let store = RedbBlockstore::open(&path).unwrap();
    block_on(store.commit(&stream, &blocks, &[*blocks[2_999].cid()])).unwrap();
    assert!(block_on(store.has(blocks[5].cid())).unwrap());
    assert!(format!("{store:?}").contains("keydir: 3000"));
    let mut model: Vec<merkle_clock::LoggedEvent> =
        blocks.iter().map(|b| merkle_clock::LoggedEvent::from_block(b).unwrap()).collect();
    let passes: [Vec<u64>; 3] = [(1..3_000).step_by(3).collect(), (900..2_400).collect(), (1..2_990).collect()];
    for (n, pass) in passes.iter().enumerate() {
        let plan: Vec<(u64, Cid)> = pass.iter().map(|&p| (p, *blocks[p as usize].cid())).collect();
        let fresh = pass.iter().filter(|&&p| !model[p as usize].pruned).count() as u64;
        assert_eq!(block_on(store.prune(&stream, &plan)).unwrap().events, fresh, "pass {n}");
        for &p in pass {
            model[p as usize].pruned = true;
        }
        assert_eq!(block_on(store.log_len(&stream)).unwrap(), 3_000);
        for start in [0u64, 1, 2, 899, 900, 1_023, 2_399, 2_400, 2_989, 2_990, 2_999, 3_000] {
            for max in [1usize, 7, 500, usize::MAX] {
                let got = block_on(store.read_log_entries(&stream, start, max)).unwrap();
                let from = start as usize;
                let to = from.saturating_add(max).min(3_000);
                assert!(got == model[from..to], "pass {n}: read_log_entries({start}, {max})");
            }
        }
        let held = model.iter().filter(|e| !e.pruned).count();
        assert!(block_on(store.has(blocks[2_999].cid())).unwrap());
        assert!(format!("{store:?}").contains(&format!("keydir: {held}")), "pass {n}: {store:?}");
    }
    drop(store);
    let store = std::sync::Arc::new(RedbBlockstore::open(&path).unwrap());
    let replica = block_on(Replica::open(store, &stream, ReplicaConfig::default())).unwrap();
    // The first pass also took 2992, 2995 and 2998.
    assert_eq!(replica.metrics().pruned, 2_992);
    assert_eq!(replica.heads(), vec![*blocks[2_999].cid()]);
    assert!(replica.order().eq(blocks.iter().map(|b| *b.cid())));
    let mut replica = replica;
    assert_eq!(block_on(replica.prune(PrunePolicy::KeepNewest(1))).unwrap().events, 6);
}

#[test]
fn open_errors_are_errors_not_panics() {
    let dir = tempdir();
    let garbage = dir.path().join("garbage.redb");
    std::fs::write(&garbage, vec![0xa5; 64 * 1024]).unwrap();
    assert!(matches!(RedbBlockstore::open(&garbage), Err(StoreError::Backend(_))));

    let path = dir.path().join("locked.redb");
    let _first = RedbBlockstore::open(&path).unwrap();
    assert!(matches!(RedbBlockstore::open(&path), Err(StoreError::Backend(_))), "a second open of a live file");

    let missing_dir = dir.path().join("no such dir").join("db.redb");
    assert!(matches!(RedbBlockstore::open(missing_dir), Err(StoreError::Backend(_))));
}

#[test]
fn debug_prints_path_and_counts_not_contents() {
    let dir = tempdir();
    let path = dir.path().join("debug.redb");
    let store = RedbBlockstore::open(&path).unwrap();
    let blocks = chain("a secret payload", 2);
    block_on(store.commit(blocks[0].cid(), &blocks, &[*blocks[1].cid()])).unwrap();
    let s = format!("{store:?}");
    assert!(s.contains("debug.redb"), "{s}");
    assert!(s.contains("streams: 1") && s.contains("log_entries: 2") && s.contains("blocks_table: 0"), "{s}");
    assert!(s.contains("keydir: \"not built\""), "{s}");
    assert!(!s.contains("secret"), "{s}");
    assert!(block_on(store.has(blocks[1].cid())).unwrap());
    let s = format!("{store:?}");
    assert!(s.contains("keydir: 2"), "{s}");
    let mem = format!("{:?}", RedbBlockstore::in_memory().unwrap());
    assert!(mem.contains("<memory>") && mem.contains("log_entries: 0"), "{mem}");
}

#[test]
fn usable_as_trait_objects() {
    let store: Box<dyn StreamStore> = Box::new(RedbBlockstore::in_memory().unwrap());
    assert!(store.atomic_put_many());
    let b = chain("dyn", 1).remove(0);
    block_on(store.put_many(vec![b.clone(), b.clone()])).unwrap();
    assert_eq!(block_on(store.get_many(&[*b.cid()])).unwrap(), vec![Some(b)]);
}

/// Figures, not assertions: `cargo test --release --test store_redb -- --ignored --nocapture`.
#[test]
#[ignore = "measurement; run with --release --ignored --nocapture"]
fn measure_redb() {
    fn rate(n: usize, d: Duration) -> String {
        format!("{n} in {:.3}s = {:.0}/s", d.as_secs_f64(), n as f64 / d.as_secs_f64())
    }
    let n_imm: usize = std::env::var("IMMEDIATE_COMMITS").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let n_evt: usize = std::env::var("EVENTUAL_COMMITS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let n_log: usize = std::env::var("LOG_ENTRIES").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let dir = tempdir();
    eprintln!("tempdir: {}", dir.path().display());

    // 1-block commits, one transaction each.
    for (durability, n) in [(Durability::Immediate, n_imm), (Durability::Eventual, n_evt)] {
        let blocks = chain("bench commit", n);
        let stream = *blocks[0].cid();
        let store = RedbBlockstore::open_with(dir.path().join(format!("{durability:?}.redb")), durability).unwrap();
        let t = Instant::now();
        for b in &blocks {
            block_on(store.commit(&stream, std::slice::from_ref(b), &[*b.cid()])).unwrap();
        }
        let commits = t.elapsed();
        let t = Instant::now();
        store.flush().unwrap();
        let flush = t.elapsed();
        eprintln!(
            "{durability:?}: 1-block commits {}; final flush {:.1} ms; total incl. flush {}",
            rate(n, commits),
            flush.as_secs_f64() * 1e3,
            rate(n, commits + flush)
        );
    }

    // A 1M-entry log, committed in batches of 10k under Eventual.
    let path = dir.path().join("log.redb");
    let t = Instant::now();
    let blocks = chain("bench log", n_log);
    eprintln!("encoded {n_log} events in {:.2}s", t.elapsed().as_secs_f64());
    let stream = *blocks[0].cid();
    {
        let store = RedbBlockstore::open_with(&path, Durability::Eventual).unwrap();
        let t = Instant::now();
        for chunk in blocks.chunks(10_000) {
            block_on(store.commit(&stream, chunk, &[*chunk.last().unwrap().cid()])).unwrap();
        }
        store.close().unwrap();
        eprintln!("wrote {n_log} entries in 10k-block commits: {}", rate(n_log, t.elapsed()));
    }
    drop(blocks);
    let size = std::fs::metadata(&path).unwrap().len();
    let t = Instant::now();
    let store = RedbBlockstore::open(&path).unwrap();
    let open = t.elapsed();
    let t = Instant::now();
    let len = block_on(store.log_len(&stream)).unwrap();
    let heads = block_on(store.heads(&stream)).unwrap().unwrap();
    let meta = t.elapsed();
    eprintln!(
        "reopen {:.1} MB file: open {:.2} ms, log_len+heads {:.3} ms (len {len}, {} head)",
        size as f64 / 1e6,
        open.as_secs_f64() * 1e3,
        meta.as_secs_f64() * 1e3,
        heads.len()
    );
    let t = Instant::now();
    let all = block_on(store.read_log(&stream, 0, usize::MAX)).unwrap();
    eprintln!("read_log of {} entries in one call: {}", all.len(), rate(all.len(), t.elapsed()));
    assert_eq!(all.len(), n_log);
    let t = Instant::now();
    let mut pos = 0u64;
    let mut n = 0;
    loop {
        let page = block_on(store.read_log(&stream, pos, 10_000)).unwrap();
        if page.is_empty() {
            break;
        }
        pos += page.len() as u64;
        n += page.len();
    }
    eprintln!("read_log of {n} entries in 10k pages: {}", rate(n, t.elapsed()));
    let t = Instant::now();
    let entries = block_on(store.read_log_entries(&stream, 0, usize::MAX)).unwrap();
    eprintln!("read_log_entries of {} entries in one call: {}", entries.len(), rate(entries.len(), t.elapsed()));
    drop(entries);
    let t = Instant::now();
    assert!(block_on(store.has(&all[n_log / 2])).unwrap());
    eprintln!("first has after the reopen (builds the keydir): {:.3}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let got = block_on(store.get_many(&all)).unwrap();
    eprintln!("get_many of {} blocks: {}", got.len(), rate(got.len(), t.elapsed()));
}
