//! The redb-backed [`StreamStore`]: see [`RedbBlockstore`] for the table
//! layout, the in-memory keydir and the durability guarantees.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use bytes::Bytes;
use ipld_core::cid::Cid;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
    backends::InMemoryBackend,
};

mod keydir;
mod layout;
mod pruned;

use self::keydir::Keydir;
use self::layout::*;
use self::pruned::Skel;
use super::{Blockstore, LoggedEvent, PruneStats, StoreError, StreamStore};
use crate::block::{Block, DIGEST_LEN, Digest, cid_from_digest, digest_of};

type BytesTable = TableDefinition<'static, &'static [u8], &'static [u8]>;

const BLOCKS: BytesTable = TableDefinition::new("blocks");
const HEADS: BytesTable = TableDefinition::new("stream_heads");
const LOG: BytesTable = TableDefinition::new("stream_log");
const PRUNED: BytesTable = TableDefinition::new("stream_pruned");
const RECORDS: BytesTable = TableDefinition::new("stream_records");
const META: TableDefinition<'static, &'static str, u64> = TableDefinition::new("meta");

const FORMAT_KEY: &str = "format_version";
/// 4: pruned log entries live in `stream_pruned` (see [`RedbBlockstore`]).
/// (3 had no such table, and is upgraded in place on open: its files are
/// version-4 files with nothing pruned. 2 held the event CID, height and
/// parents in the log; 1 the event CID.)
const FORMAT_VERSION: u64 = 4;
/// The earliest version opened (and upgraded in place).
const FORMAT_UPGRADABLE: u64 = 3;

/// Pruned positions handled per step of a prune (bounds its memory).
const PRUNE_CHUNK: usize = 1 << 16;

/// The first byte of a log value: the block follows, after its digest.
const TAG_INLINE: u8 = 0;
/// The first byte of a log value: the CID follows, and the block is in `blocks`.
const TAG_IN_BLOCKS: u8 = 1;

/// The binary form of an event CID (v1, dag-cbor, blake3, 32 bytes) before its digest.
const EVENT_CID_PREFIX: [u8; 4] = [0x01, 0x71, 0x1e, DIGEST_LEN as u8];

/// When a write becomes durable. See [`RedbBlockstore`] for what a crash
/// may lose in each mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Each `put`, `put_many` and `commit` is fsynced before it returns: a
    /// crash loses nothing that returned `Ok`.
    #[default]
    Immediate,
    /// Writes are committed atomically but not fsynced; they become durable
    /// at the next [`RedbBlockstore::flush`] (or clean close). A crash loses
    /// every write since the last durable point, and nothing before it.
    Eventual,
}

/// How a [`RedbBlockstore`] file is opened ([`RedbBlockstore::open_config`]).
/// `#[non_exhaustive]`: start from [`RedbConfig::default()`] and change fields.
///
/// ```
/// use merkle_clock::store::{Durability, RedbConfig};
///
/// let mut config = RedbConfig::default();
/// config.durability = Durability::Eventual;
/// config.cache_bytes = 16 << 20;
/// assert_eq!(RedbConfig::default().cache_bytes, 1 << 30);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedbConfig {
    /// When a write becomes durable. Default: [`Durability::Immediate`].
    pub durability: Durability,
    /// Most memory redb's page cache holds, in bytes. Default: 1 GiB (redb's
    /// own default). The cache keeps the pages reads and writes touched,
    /// up to this bound: opening a replica over a long stream reads its
    /// whole log once, so with the default the process keeps about 40 bytes
    /// per event of cached pages after the open (`history_report`'s
    /// `resident_rest`). A smaller cache costs re-reads of pages, not
    /// correctness.
    pub cache_bytes: usize,
}

impl Default for RedbConfig {
    fn default() -> Self {
        RedbConfig { durability: Durability::Immediate, cache_bytes: 1 << 30 }
    }
}

/// A persistent [`StreamStore`] in one [redb](https://docs.rs/redb) file (or
/// in memory, for tests): per stream its heads and its log, which holds the
/// stream's event blocks themselves, plus a table for blocks stored on their own.
///
/// Methods are async per the traits, but redb is synchronous: each call does
/// its I/O inline and returns a ready future (the library never spawns).
/// Its `Debug` prints the path, the durability and table sizes (one short read
/// transaction), not contents.
///
/// # Layout
///
/// Six tables, all keyed by raw bytes (format version 4):
///
/// | table           | key                                   | value                                       |
/// | --------------- | ------------------------------------- | ------------------------------------------- |
/// | `stream_log`    | stream CID bytes ++ position (u64 BE) | `0` ++ event digest (32 bytes) ++ block bytes, or `1` ++ CID bytes |
/// | `stream_pruned` | stream CID bytes ++ first position    | a row of pruned entries (digest, height, parents), about 3.9 KB |
/// | `stream_heads`  | stream (genesis) CID bytes            | the head CIDs' bytes, concatenated          |
/// | `blocks`        | CID bytes                             | block bytes                                 |
/// | `stream_records`| stream (genesis) CID bytes            | the replica's record of the stream (a shallow replica's anchors' membership) |
/// | `meta`          | `"format_version"`                    | `4`                                         |
///
/// Each log position is in exactly one of `stream_log` (the event's bytes
/// are here) and `stream_pruned` (only its skeleton is: it was pruned, or
/// appended as a skeleton). A pruned row packs consecutive pruned entries,
/// parents by back-reference within the row where it can: about 36 bytes an
/// entry for a chain, and under 64 on disk with redb's pages (the
/// `history_report` example measures it). Reads merge the two tables by
/// position.
///
/// A committed event block lives in its stream's log entry (the `0` form).
/// The log key grows with every append, so a commit writes only the
/// rightmost pages of the log's B-tree, where a table keyed by CID (a uniform
/// hash) would copy a random leaf page per block. `read_log` is one range
/// scan, `log_len` is the position of the last key plus one (one B-tree
/// descent, no counter to keep in step), and `read_log_entries` reads each
/// event's height and parents from the block's header, in the same scan
/// (parsing, never hashing). Binary CIDs are self-delimiting, so no stream's
/// key range can contain another stream's keys.
///
/// The `blocks` table holds the blocks stored with `put`/`put_many`, and the
/// blocks a commit logs that are already there or do not have an event's CID:
/// their log entry is then the `1` form, which names the block. A `put` does
/// not look in the logs, so putting a logged block again stores a second copy
/// in `blocks` (reads do not change). A block that two streams log is stored
/// in both logs (the replica never does this: an
/// event belongs to the stream of the genesis it descends from). A heads value
/// is parsed CID after CID: a value that does not split exactly into CIDs, or
/// a log value of neither form, is [`StoreError::Corrupt`], naming the stream
/// (and the position).
///
/// Reads return blocks with [`Block::new_unchecked`]: the store only ever holds
/// blocks its callers verified, and opening or reading never re-hashes. A
/// commit does parse each block's header (no hashing), and refuses a block
/// that is not an event with [`StoreError::Corrupt`], storing nothing: every
/// logged block must give `read_log_entries` its height and parents.
///
/// # The keydir
///
/// `get`, `has` and `get_many` find a logged block through the keydir (as in
/// Bitcask): an in-memory table from each logged event's digest to its stream
/// and position, then one B-tree lookup of that log entry; a CID the keydir
/// does not hold is looked up in `blocks`. The keydir is built by one scan of
/// the whole log table on the first `get`, `has` or `get_many` of an event CID
/// after the store is opened (a million-event log: a fraction of a second;
/// commits wait for it), and from then on every commit adds its entries. So
/// [`Replica::open`](crate::Replica::open) and appends never pay for it, and a
/// store that is only appended to never builds it.
///
/// It costs 55 to 65 bytes per logged event once built: a 44-byte entry
/// (digest, stream index, position) and, in a hash table at most 7/8 full, a
/// slot of two `u32`s (the entry's index and a keyed 32-bit hash of its
/// digest) plus a control byte; about 63 MB for a million events. The entry
/// list grows by doubling after the build, so up to 44 bytes more per event
/// until it next fills. The hash is keyed with a per-store random key, so
/// mined digests cannot crowd one bucket.
///
/// # Durability
///
/// Every write method (`put`, `put_many`, `commit`) is one redb write
/// transaction, so it is atomic in both modes: after a crash a commit is either
/// entirely there (blocks, log entries, heads) or entirely absent.
///
/// - [`Durability::Immediate`] (the default): each transaction is fsynced before
///   the method returns. A crash, including power loss, loses nothing that
///   returned `Ok`.
/// - [`Durability::Eventual`]: transactions are committed without fsync (redb's
///   `Durability::None`). They are visible at once to readers of the same
///   store, but a crash — even only the process being killed — rolls the file
///   back to the last durable point, losing every write since then. The state
///   after the crash is always one that existed (a prefix of the writes), never
///   a torn one. Durable points are: [`RedbBlockstore::flush`], a clean
///   [`RedbBlockstore::close`], and a clean drop (redb makes pending writes
///   durable when the database is dropped outside a panic, but a drop cannot
///   report a failure; call `close` to see it).
///
/// The keydir is memory only and follows the committed transactions, so it
/// never names an entry a reader cannot see; after a crash it is simply built
/// again from whatever the file holds.
///
/// redb keeps some bookkeeping for non-durable commits in memory until the next
/// durable one, so a long run of `Eventual` writes should `flush` now and then
/// (every few thousand commits, or on a timer).
///
/// Opening never reads or hashes blocks. Reopening a file after an unclean
/// shutdown makes redb walk the whole file to repair it, which for a large
/// store takes seconds where a clean open takes milliseconds. A file written
/// by an earlier format version is refused with [`StoreError::Corrupt`].
pub struct RedbBlockstore {
    db: Database,
    path: Option<PathBuf>,
    durability: Durability,
    /// Held by every commit across its transaction and its keydir update, and
    /// by the keydir's build across its scan and its installation: so the
    /// keydir misses no commit and counts none twice.
    commit_lock: Mutex<()>,
    /// `None` until the first lookup of an event CID needs it.
    keydir: RwLock<Option<Keydir>>,
}

fn be<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::backend(e)
}

impl RedbBlockstore {
    /// Opens the database file at `path`, creating it if it does not exist,
    /// with [`Durability::Immediate`].
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the file cannot be opened or is not a redb
    /// database (or is locked by another process); [`StoreError::Corrupt`] when
    /// it was written by another format version of this store.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, Durability::Immediate)
    }

    /// Opens (or creates) the database file at `path` with the given durability.
    ///
    /// # Errors
    /// As [`RedbBlockstore::open`].
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        Self::open_config(path, &RedbConfig { durability, ..RedbConfig::default() })
    }

    /// Opens (or creates) the database file at `path` as `config` says.
    ///
    /// # Errors
    /// As [`RedbBlockstore::open`].
    pub fn open_config(path: impl AsRef<Path>, config: &RedbConfig) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if !path.exists() {
            create_atomically(path)?;
        }
        let db = Database::builder().set_cache_size(config.cache_bytes).create(path).map_err(be)?;
        Self::init(db, Some(path.to_path_buf()), config.durability)
    }

    /// A store in memory (redb's in-memory backend), for tests. Nothing
    /// survives the drop.
    ///
    /// # Errors
    /// [`StoreError::Backend`] if redb fails to initialise the database.
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder().create_with_backend(InMemoryBackend::new()).map_err(be)?;
        Self::init(db, None, Durability::Immediate)
    }

    /// A store over any redb [`StorageBackend`](redb::StorageBackend) (the
    /// database lives wherever the backend keeps its bytes), with the given
    /// durability. [`RedbBlockstore::path`] is `None`. The tests use it to
    /// rebuild exactly what a crash leaves behind at each sync point.
    ///
    /// # Errors
    /// As [`RedbBlockstore::open`].
    pub fn with_backend(backend: impl redb::StorageBackend, durability: Durability) -> Result<Self, StoreError> {
        let db = Database::builder().create_with_backend(backend).map_err(be)?;
        Self::init(db, None, durability)
    }

    /// Creates the tables and checks the format version, in one durable
    /// transaction.
    fn init(db: Database, path: Option<PathBuf>, durability: Durability) -> Result<Self, StoreError> {
        let txn = db.begin_write().map_err(be)?;
        {
            let mut meta = txn.open_table(META).map_err(be)?;
            let found = meta.get(FORMAT_KEY).map_err(be)?.map(|v| v.value());
            match found {
                None => {
                    meta.insert(FORMAT_KEY, FORMAT_VERSION).map_err(be)?;
                }
                Some(FORMAT_VERSION) => {}
                Some(FORMAT_UPGRADABLE) => {
                    // The same layout without pruned rows: the table is created below.
                    meta.insert(FORMAT_KEY, FORMAT_VERSION).map_err(be)?;
                }
                Some(v) if v < FORMAT_VERSION => {
                    return Err(StoreError::Corrupt(format!(
                        "store format version {v} was written by an earlier version of this library, which reads \
                         only version {FORMAT_VERSION} (and upgrades version {FORMAT_UPGRADABLE}); there is no \
                         migration: create a new store"
                    )));
                }
                Some(v) => {
                    return Err(StoreError::Corrupt(format!(
                        "store format version {v}, this library reads version {FORMAT_VERSION}"
                    )));
                }
            }
            txn.open_table(BLOCKS).map_err(be)?;
            txn.open_table(HEADS).map_err(be)?;
            txn.open_table(LOG).map_err(be)?;
            txn.open_table(PRUNED).map_err(be)?;
            // Added within format 4: a file written before it gets the
            // (empty) table here, and an older library ignores it.
            txn.open_table(RECORDS).map_err(be)?;
        }
        txn.commit().map_err(be)?;
        Ok(RedbBlockstore { db, path, durability, commit_lock: Mutex::new(()), keydir: RwLock::new(None) })
    }

    /// The file this store lives in (`None` for [`RedbBlockstore::in_memory`]).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The durability every write uses.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The number of distinct blocks held (over all streams and the `blocks`
    /// table; a block stored twice counts once). Builds the keydir if it is
    /// not built yet and walks the `blocks` table.
    ///
    /// # Errors
    /// [`StoreError::Backend`] if redb fails, [`StoreError::Corrupt`] if the
    /// log holds a value this store cannot have written.
    pub fn block_count(&self) -> Result<u64, StoreError> {
        self.ensure_keydir()?;
        let keydir = self.keydir_read();
        let txn = self.db.begin_read().map_err(be)?;
        let table = txn.open_table(BLOCKS).map_err(be)?;
        let logged = keydir.as_ref().map_or(0, |k| k.entries.len());
        let mut count = logged as u64;
        for entry in table.iter().map_err(be)? {
            let (key, _) = entry.map_err(be)?;
            let in_log = event_digest_of_cid_bytes(key.value())
                .is_some_and(|d| keydir.as_ref().is_some_and(|k| k.find(&d).is_some()));
            if !in_log {
                count += 1;
            }
        }
        Ok(count)
    }

    /// Makes every write so far durable, with one fsynced (empty) commit.
    /// A no-op under [`Durability::Immediate`], where every write already is.
    /// Synchronous: it blocks for the fsync.
    ///
    /// # Errors
    /// [`StoreError::Backend`] if the commit fails; the writes are then not
    /// known to be durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        if self.durability == Durability::Immediate {
            return Ok(());
        }
        // A write transaction defaults to redb's immediate durability, and a
        // durable commit persists the non-durable commits before it.
        let txn = self.db.begin_write().map_err(be)?;
        txn.commit().map_err(be)
    }

    /// Flushes and closes the database, reporting any error that a plain drop
    /// would swallow.
    ///
    /// # Errors
    /// [`StoreError::Backend`] if the flush or the close fails.
    pub fn close(self) -> Result<(), StoreError> {
        self.flush()?;
        self.db.close().map_err(be)
    }

    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write().map_err(be)?;
        if self.durability == Durability::Eventual {
            txn.set_durability(redb::Durability::None).map_err(be)?;
        }
        Ok(txn)
    }

    fn counts(&self) -> Result<(u64, u64, u64), StoreError> {
        let txn = self.db.begin_read().map_err(be)?;
        let blocks = txn.open_table(BLOCKS).map_err(be)?.len().map_err(be)?;
        let streams = txn.open_table(HEADS).map_err(be)?.len().map_err(be)?;
        let log = txn.open_table(LOG).map_err(be)?.len().map_err(be)?;
        Ok((blocks, streams, log))
    }

    fn put_blocks<'a>(&self, blocks: impl IntoIterator<Item = &'a Block>) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut table = txn.open_table(BLOCKS).map_err(be)?;
            for b in blocks {
                put_block(&mut table, &b.cid().to_bytes(), b.bytes())?;
            }
        }
        txn.commit().map_err(be)
    }

    fn commit_sync(&self, stream: &Cid, blocks: &[Block], heads: &[Cid]) -> Result<(), StoreError> {
        let skey = stream.to_bytes();
        let _commits = self.lock_commits();
        // Only a build changes whether the keydir exists, and it waits for `commit_lock`.
        let track = self.keydir_read().is_some();
        let mut logged: Vec<(Digest, u64)> = Vec::with_capacity(if track { blocks.len() } else { 0 });
        let txn = self.begin_write()?;
        {
            let mut block_table = txn.open_table(BLOCKS).map_err(be)?;
            let mut log_table = txn.open_table(LOG).map_err(be)?;
            let mut heads_table = txn.open_table(HEADS).map_err(be)?;
            let pruned_table = txn.open_table(PRUNED).map_err(be)?;
            // Usually nothing was put on its own: no lookup per block then.
            let any_put = !block_table.is_empty().map_err(be)?;
            let mut pos = log_end(&log_table, &skey, stream)?.max(pruned_end_of(&pruned_table, &skey, stream)?);
            let mut key = Vec::with_capacity(skey.len() + 8);
            let mut value = Vec::with_capacity(512);
            for b in blocks {
                // Only events may be logged: a reopen parses every logged block's header.
                crate::event::Header::parse(b, &crate::event::Limits::TRUSTED)
                    .map_err(|e| StoreError::Corrupt(format!("{}: committed block is not an event: {e}", b.cid())))?;
                log_key_into(&mut key, &skey, pos);
                value.clear();
                let digest = digest_of(b.cid());
                let inline = match &digest {
                    Some(d) => !any_put || block_table.get(event_cid_bytes(d).as_slice()).map_err(be)?.is_none(),
                    None => false,
                };
                match digest {
                    Some(d) if inline => {
                        value.push(TAG_INLINE);
                        value.extend_from_slice(&d);
                        value.extend_from_slice(b.bytes());
                        if track {
                            logged.push((d, pos));
                        }
                    }
                    _ => {
                        let cid = b.cid().to_bytes();
                        put_block(&mut block_table, &cid, b.bytes())?;
                        value.push(TAG_IN_BLOCKS);
                        value.extend_from_slice(&cid);
                    }
                }
                log_table.insert(key.as_slice(), value.as_slice()).map_err(be)?;
                pos = pos
                    .checked_add(1)
                    .ok_or_else(|| StoreError::Corrupt(format!("log of stream {stream} is at the largest position")))?;
            }
            let encoded = encode_cids(heads);
            heads_table.insert(skey.as_slice(), encoded.as_slice()).map_err(be)?;
        }
        if let Err(e) = txn.commit() {
            // Whatever redb kept, the keydir is rebuilt from it on the next lookup.
            *self.keydir_write() = None;
            return Err(be(e));
        }
        if track {
            let mut guard = self.keydir_write();
            if let Some(keydir) = guard.as_mut()
                && keydir.add_all(&skey, &logged).is_err()
            {
                // Too many entries for the keydir: the next lookup reports it.
                *guard = None;
            }
        }
        Ok(())
    }

    fn lock_commits(&self) -> MutexGuard<'_, ()> {
        match self.commit_lock.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                // A commit panicked between its transaction and its keydir update.
                *self.keydir_write() = None;
                self.commit_lock.clear_poison();
                poisoned.into_inner()
            }
        }
    }

    fn keydir_write(&self) -> RwLockWriteGuard<'_, Option<Keydir>> {
        match self.keydir.write() {
            Ok(g) => g,
            Err(poisoned) => {
                // An update panicked half-way: forget the keydir, build it again when needed.
                let mut g = poisoned.into_inner();
                *g = None;
                self.keydir.clear_poison();
                g
            }
        }
    }

    fn keydir_read(&self) -> RwLockReadGuard<'_, Option<Keydir>> {
        if self.keydir.is_poisoned() {
            drop(self.keydir_write());
        }
        self.keydir.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Builds the keydir unless it is built: one scan of the whole log table,
    /// with commits held off until it is installed.
    fn ensure_keydir(&self) -> Result<(), StoreError> {
        if self.keydir_read().is_some() {
            return Ok(());
        }
        let _commits = self.lock_commits();
        if self.keydir_read().is_some() {
            return Ok(()); // built by another caller while this one waited
        }
        let built = self.build_keydir()?;
        *self.keydir_write() = Some(built);
        Ok(())
    }

    fn build_keydir(&self) -> Result<Keydir, StoreError> {
        let txn = self.db.begin_read().map_err(be)?;
        let table = txn.open_table(LOG).map_err(be)?;
        let n = usize::try_from(table.len().map_err(be)?).unwrap_or(usize::MAX);
        let mut keydir = Keydir::with_capacity(n.min(u32::MAX as usize));
        let mut current: Option<(Vec<u8>, u32)> = None;
        for entry in table.iter().map_err(be)? {
            let (key, value) = entry.map_err(be)?;
            let key = key.value();
            let Some((skey, pos)) = split_log_key(key) else {
                return Err(StoreError::Corrupt(format!("a log key of {} bytes", key.len())));
            };
            let value = value.value();
            match value.first() {
                Some(&TAG_INLINE) => {
                    let Some(digest) = value.get(1..1 + DIGEST_LEN).and_then(|d| Digest::try_from(d).ok()) else {
                        return Err(corrupt_entry(
                            skey,
                            pos,
                            format!("an inline block value of {} bytes", value.len()),
                        ));
                    };
                    let stream = match &current {
                        Some((s, id)) if s.as_slice() == skey => *id,
                        _ => {
                            let id = keydir.stream_id(skey)?;
                            current = Some((skey.to_vec(), id));
                            id
                        }
                    };
                    keydir.insert(&digest, stream, pos)?;
                }
                Some(&TAG_IN_BLOCKS) => {
                    decode_cid(&value[1..], || entry_name(skey, pos))?;
                }
                _ => return Err(corrupt_entry(skey, pos, describe_bad_tag(value))),
            }
        }
        Ok(keydir)
    }

    /// The log key of a logged event block, building the keydir if needed.
    fn locate(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        self.ensure_keydir()?;
        Ok(self.keydir_read().as_ref().and_then(|k| k.find(digest).map(|l| k.log_key(l))))
    }

    /// Visits up to `max` entries of a stream's log from position `start`,
    /// in one range scan of the log and one of its pruned rows, merged by
    /// position; `visit` also sees the `blocks` table of the same snapshot,
    /// and how to name the entry.
    fn scan_log(
        &self,
        stream: &Cid,
        start: u64,
        max: usize,
        mut visit: impl FnMut(Visit<'_>, &BlocksTable, &dyn Fn() -> String) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if max == 0 {
            return Ok(());
        }
        let skey = stream.to_bytes();
        let lo = log_key(&skey, start);
        let hi = log_key(&skey, u64::MAX);
        let txn = self.db.begin_read().map_err(be)?;
        let table = txn.open_table(LOG).map_err(be)?;
        let blocks = txn.open_table(BLOCKS).map_err(be)?;
        let pruned_table = txn.open_table(PRUNED).map_err(be)?;
        let mut range = table.range::<&[u8]>(lo.as_slice()..=hi.as_slice()).map_err(be)?;
        let mut rows = PrunedRows::new(&pruned_table, &skey, start, stream)?;
        let mut next_logged = range.next().transpose().map_err(be)?;
        let mut pos = start;
        for _ in 0..max {
            let logged_pos = next_logged.as_ref().map(|(k, _)| split_log_key(k.value()).map_or(u64::MAX, |(_, p)| p));
            let pruned_pos = rows.peek()?.map(|s| s.pos);
            let what = || format!("log entry {pos} of stream {stream}");
            match (logged_pos, pruned_pos) {
                (None, None) => break,
                (Some(l), p) if p.is_none_or(|p| l < p) => {
                    if l != pos {
                        return Err(StoreError::Corrupt(format!("{}: the log goes on at position {l}", what())));
                    }
                    let (_, value) = next_logged.take().expect("peeked");
                    visit(Visit::Logged(Logged::decode(value.value(), &what)?), &blocks, &what)?;
                    next_logged = range.next().transpose().map_err(be)?;
                }
                (_, Some(p)) => {
                    if p != pos {
                        return Err(StoreError::Corrupt(format!("{}: the log goes on at position {p}", what())));
                    }
                    let skel = rows.next().expect("peeked");
                    visit(Visit::Pruned(&skel), &blocks, &what)?;
                }
                (Some(_), None) => unreachable!("covered above"),
            }
            pos = pos.saturating_add(1);
        }
        Ok(())
    }

    fn read_entries(&self, stream: &Cid, start: u64, max: usize) -> Result<Vec<LoggedEvent>, StoreError> {
        let mut out = Vec::with_capacity(max.min(1 << 16));
        // Each header is parsed where redb holds the block: nothing is copied.
        self.scan_log(stream, start, max, |visit, blocks, what| {
            let entry = match visit {
                Visit::Logged(Logged::Inline { cid, bytes }) => LoggedEvent::from_parts(&cid, bytes),
                Visit::Logged(Logged::InBlocks(cid)) => {
                    let Some(v) = blocks.get(cid.to_bytes().as_slice()).map_err(be)? else {
                        return Err(StoreError::Corrupt(format!("{}: {cid} is not in the blocks table", what())));
                    };
                    LoggedEvent::from_parts(&cid, v.value())
                }
                Visit::Pruned(skel) => Ok(LoggedEvent {
                    cid: cid_from_digest(&skel.digest),
                    height: skel.height,
                    parents: skel.parents.iter().map(cid_from_digest).collect(),
                    pruned: true,
                }),
            };
            out.push(entry.map_err(|e| StoreError::Corrupt(format!("{}: {e}", what())))?);
            Ok(())
        })?;
        Ok(out)
    }

    fn prune_sync(&self, stream: &Cid, entries: &[(u64, Cid)]) -> Result<PruneStats, StoreError> {
        let mut sorted = entries.to_vec();
        sorted.sort_unstable_by_key(|(pos, _)| *pos);
        sorted.dedup();
        if let Some(w) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(StoreError::Corrupt(format!("two events for position {} of {stream}", w[0].0)));
        }
        let skey = stream.to_bytes();
        let _commits = self.lock_commits();
        let txn = self.begin_write()?;
        let mut stats = PruneStats::default();
        {
            let mut log = txn.open_table(LOG).map_err(be)?;
            let mut blocks = txn.open_table(BLOCKS).map_err(be)?;
            let mut pruned = txn.open_table(PRUNED).map_err(be)?;
            for chunk in sorted.chunks(PRUNE_CHUNK) {
                let (lo, hi) = (chunk[0].0, chunk[chunk.len() - 1].0);
                let mut skels = take_rows(&mut pruned, &skey, lo, hi, stream)?;
                let mut fresh = Vec::with_capacity(chunk.len());
                for (pos, cid) in chunk {
                    let what = || format!("log entry {pos} of stream {stream}");
                    if let Ok(i) = skels.binary_search_by_key(pos, |s| s.pos) {
                        if digest_of(cid) != Some(skels[i].digest) {
                            return Err(StoreError::Corrupt(format!("{}: pruned, and not {cid}", what())));
                        }
                        continue; // pruned before
                    }
                    let key = log_key(&skey, *pos);
                    // Removed and read in one descent; an error below drops
                    // the transaction uncommitted, so nothing changes.
                    let (skel, len, in_blocks) = {
                        let Some(value) = log.remove(key.as_slice()).map_err(be)? else {
                            return Err(StoreError::Corrupt(format!("{}: no such entry to prune {cid}", what())));
                        };
                        let logged = Logged::decode(value.value(), &what)?;
                        if logged.cid() != *cid {
                            return Err(StoreError::Corrupt(format!("{}: holds {}, not {cid}", what(), logged.cid())));
                        }
                        let Some(digest) = digest_of(cid) else {
                            return Err(StoreError::Unsupported { operation: "prune of a block without an event CID" });
                        };
                        match logged {
                            Logged::Inline { bytes, .. } => (skeleton(*pos, digest, cid, bytes)?, bytes.len(), false),
                            Logged::InBlocks(_) => {
                                let Some(v) = blocks.get(cid.to_bytes().as_slice()).map_err(be)? else {
                                    return Err(StoreError::Corrupt(format!("{}: {cid} is not stored", what())));
                                };
                                (skeleton(*pos, digest, cid, v.value())?, v.value().len(), true)
                            }
                        }
                    };
                    if in_blocks {
                        blocks.remove(cid.to_bytes().as_slice()).map_err(be)?;
                    }
                    stats.events += 1;
                    stats.bytes += len as u64;
                    fresh.push(skel);
                }
                skels.extend(fresh);
                skels.sort_unstable_by_key(|s| s.pos);
                put_rows(&mut pruned, &skey, &skels)?;
            }
        }
        if let Err(e) = txn.commit() {
            *self.keydir_write() = None;
            return Err(be(e));
        }
        if stats.events > 0 {
            // Built again, without the pruned events, by the next lookup.
            *self.keydir_write() = None;
        }
        Ok(stats)
    }

    fn append_skeleton_sync(&self, stream: &Cid, entries: &[LoggedEvent], heads: &[Cid]) -> Result<(), StoreError> {
        let skey = stream.to_bytes();
        let _commits = self.lock_commits();
        let txn = self.begin_write()?;
        {
            let log = txn.open_table(LOG).map_err(be)?;
            let mut pruned = txn.open_table(PRUNED).map_err(be)?;
            let mut heads_table = txn.open_table(HEADS).map_err(be)?;
            let end = log_end(&log, &skey, stream)?.max(pruned_end_of(&pruned, &skey, stream)?);
            let unsupported = || StoreError::Unsupported { operation: "append_skeleton of a non-event CID" };
            let mut fresh = Vec::with_capacity(entries.len());
            for (i, e) in entries.iter().enumerate() {
                let pos = end
                    .checked_add(i as u64)
                    .ok_or_else(|| StoreError::Corrupt(format!("log of stream {stream} is at the largest position")))?;
                let parents =
                    e.parents.iter().map(digest_of).collect::<Option<Vec<Digest>>>().ok_or_else(unsupported)?;
                fresh.push(Skel { pos, digest: digest_of(&e.cid).ok_or_else(unsupported)?, height: e.height, parents });
            }
            if let (Some(first), Some(last)) = (fresh.first(), fresh.last()) {
                let mut skels = take_rows(&mut pruned, &skey, first.pos, last.pos, stream)?;
                skels.extend(fresh);
                put_rows(&mut pruned, &skey, &skels)?;
            }
            let encoded = encode_cids(heads);
            heads_table.insert(skey.as_slice(), encoded.as_slice()).map_err(be)?;
        }
        txn.commit().map_err(be)
    }

    /// Compacts the database file (redb's `compact`): gives the space that
    /// pruning (or any removal) freed back to the file system, so the file
    /// shrinks. Returns whether anything was compacted. Takes a while on a
    /// large file, and needs no other handle on the store.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when redb fails or a read transaction is open.
    pub fn compact(&mut self) -> Result<bool, StoreError> {
        self.db.compact().map_err(be)
    }
}

/// One entry of a log scan: an entry with its bytes, or a pruned one.
enum Visit<'a> {
    Logged(Logged<'a>),
    Pruned(&'a Skel),
}

/// The skeleton of the event `cid` logged at `pos`, from its stored bytes.
fn skeleton(pos: u64, digest: Digest, cid: &Cid, bytes: &[u8]) -> Result<Skel, StoreError> {
    let header = crate::event::Header::parse_bytes(cid, bytes, &crate::event::Limits::TRUSTED)
        .map_err(|e| StoreError::Corrupt(format!("{cid}: stored block is not an event: {e}")))?;
    Ok(Skel { pos, digest, height: header.height, parents: header.parents.to_vec() })
}

/// The position after a stream's last pruned entry (0: none).
fn pruned_end_of<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    skey: &[u8],
    stream: &Cid,
) -> Result<u64, StoreError> {
    pruned::pruned_end(table, skey, &|| format!("the pruned log of stream {stream}"))
}

/// Removes and decodes the pruned rows that may hold `lo..=hi` (and the row
/// just before, so that a later prune fills the last row instead of starting
/// a small one): their entries, ascending by position.
fn take_rows(
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    skey: &[u8],
    lo: u64,
    hi: u64,
    stream: &Cid,
) -> Result<Vec<Skel>, StoreError> {
    let rows = pruned::rows_around(table, skey, lo, hi)?;
    let mut out = Vec::new();
    for (first, value) in rows {
        out.extend(pruned::decode_row(first, &value, &|| format!("the pruned log of stream {stream}"))?);
        table.remove(log_key(skey, first).as_slice()).map_err(be)?;
    }
    Ok(out)
}

/// Writes entries (ascending by position) as rows.
fn put_rows(
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    skey: &[u8],
    entries: &[Skel],
) -> Result<(), StoreError> {
    for (first, value) in pruned::encode_rows(entries) {
        table.insert(log_key(skey, first).as_slice(), value.as_slice()).map_err(be)?;
    }
    Ok(())
}

/// A stream's pruned entries from a position on, decoded a row at a time.
struct PrunedRows<'t> {
    range: redb::Range<'t, &'static [u8], &'static [u8]>,
    buffer: std::collections::VecDeque<Skel>,
    stream: &'t Cid,
}

impl<'t> PrunedRows<'t> {
    fn new(
        table: &'t redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
        skey: &[u8],
        start: u64,
        stream: &'t Cid,
    ) -> Result<Self, StoreError> {
        let mut buffer = std::collections::VecDeque::new();
        // The row that may hold `start`: the last one starting at or before it.
        if let Some((first, value)) = pruned::rows_around(table, skey, start, start)?.into_iter().next() {
            let row = pruned::decode_row(first, &value, &|| format!("the pruned log of stream {stream}"))?;
            buffer.extend(row.into_iter().filter(|s| s.pos >= start));
        }
        let lo = log_key(skey, start.saturating_add(1));
        let hi = log_key(skey, u64::MAX);
        let range = table.range::<&[u8]>(lo.as_slice()..=hi.as_slice()).map_err(be)?;
        Ok(PrunedRows { range, buffer, stream })
    }

    fn peek(&mut self) -> Result<Option<&Skel>, StoreError> {
        if self.buffer.is_empty()
            && let Some(entry) = self.range.next()
        {
            let (k, v) = entry.map_err(be)?;
            let first = split_log_key(k.value()).map_or(0, |(_, p)| p);
            let stream = self.stream;
            self.buffer.extend(pruned::decode_row(first, v.value(), &|| format!("the pruned log of stream {stream}"))?);
        }
        Ok(self.buffer.front())
    }

    fn next(&mut self) -> Option<Skel> {
        self.buffer.pop_front()
    }
}

type BlocksTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// Reads one block, from the log entry the keydir names (`at`) or else from `blocks`.
fn read_block<L, B>(log: &L, blocks: &B, cid: &Cid, at: Option<&[u8]>) -> Result<Option<Block>, StoreError>
where
    L: ReadableTable<&'static [u8], &'static [u8]>,
    B: ReadableTable<&'static [u8], &'static [u8]>,
{
    if let Some(key) = at {
        let what = || match split_log_key(key) {
            Some((skey, pos)) => entry_name(skey, pos),
            None => "a log entry".to_owned(),
        };
        let Some(value) = log.get(key).map_err(be)? else {
            return Err(StoreError::Corrupt(format!("{}, where the keydir puts {cid}, is missing", what())));
        };
        let value = value.value();
        return match value.split_first() {
            Some((&TAG_INLINE, rest)) if rest.len() >= DIGEST_LEN && rest[..DIGEST_LEN] == *cid.hash().digest() => {
                Ok(Some(Block::new_unchecked(*cid, Bytes::copy_from_slice(&rest[DIGEST_LEN..]))))
            }
            _ => Err(StoreError::Corrupt(format!("{} does not hold {cid}, where the keydir puts it", what()))),
        };
    }
    let got = blocks.get(cid.to_bytes().as_slice()).map_err(be)?;
    Ok(got.map(|v| Block::new_unchecked(*cid, Bytes::copy_from_slice(v.value()))))
}

/// Creates a new database file under a temporary name, with its tables and
/// format version committed durably, and only then renames it into place: a
/// crash during creation leaves no file, or a whole one, never a torn header
/// that every later open would refuse (found by the `crash_` tests).
fn create_atomically(path: &Path) -> Result<(), StoreError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".creating");
    let tmp = PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(be(e)),
    }
    let db = Database::builder().create(&tmp).map_err(be)?;
    RedbBlockstore::init(db, None, Durability::Immediate)?;
    std::fs::rename(&tmp, path).map_err(be)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(be)?;
    }
    Ok(())
}

/// Inserts a block unless its CID is already there (so a repeated put writes
/// no page).
fn put_block(
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    cid: &[u8],
    bytes: &[u8],
) -> Result<(), StoreError> {
    let present = table.get(cid).map_err(be)?.is_some();
    if !present {
        table.insert(cid, bytes).map_err(be)?;
    }
    Ok(())
}

impl fmt::Debug for RedbBlockstore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RedbBlockstore");
        match &self.path {
            Some(p) => d.field("path", p),
            None => d.field("path", &"<memory>"),
        };
        d.field("durability", &self.durability);
        match self.counts() {
            Ok((blocks, streams, log)) => {
                d.field("streams", &streams).field("log_entries", &log).field("blocks_table", &blocks)
            }
            Err(_) => d.field("counts", &"unavailable"),
        };
        match self.keydir.try_read().as_deref() {
            Ok(Some(k)) => d.field("keydir", &k.entries.len()),
            Ok(None) => d.field("keydir", &"not built"),
            Err(_) => d.field("keydir", &"busy"),
        };
        d.finish()
    }
}

#[async_trait]
impl Blockstore for RedbBlockstore {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        if self.keydir_read().is_none() {
            // A stream's genesis is the first entry of its own log: found
            // there without building the keydir (opening a replica reads it
            // for the stream's policy).
            let txn = self.db.begin_read().map_err(be)?;
            let log = txn.open_table(LOG).map_err(be)?;
            let first = log_key(&cid.to_bytes(), 0);
            if log.get(first.as_slice()).map_err(be)?.is_some() {
                let blocks = txn.open_table(BLOCKS).map_err(be)?;
                return read_block(&log, &blocks, cid, Some(&first));
            }
        }
        let at = match digest_of(cid) {
            Some(d) => self.locate(&d)?,
            None => None,
        };
        let txn = self.db.begin_read().map_err(be)?;
        let log = txn.open_table(LOG).map_err(be)?;
        let blocks = txn.open_table(BLOCKS).map_err(be)?;
        read_block(&log, &blocks, cid, at.as_deref())
    }

    async fn put(&self, block: Block) -> Result<(), StoreError> {
        self.put_blocks(std::iter::once(&block))
    }

    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        if let Some(d) = digest_of(cid)
            && self.locate(&d)?.is_some()
        {
            return Ok(true);
        }
        let txn = self.db.begin_read().map_err(be)?;
        let table = txn.open_table(BLOCKS).map_err(be)?;
        Ok(table.get(cid.to_bytes().as_slice()).map_err(be)?.is_some())
    }

    async fn put_many(&self, blocks: Vec<Block>) -> Result<(), StoreError> {
        if blocks.is_empty() {
            return Ok(());
        }
        self.put_blocks(&blocks)
    }

    async fn get_many(&self, cids: &[Cid]) -> Result<Vec<Option<Block>>, StoreError> {
        if cids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<Option<Vec<u8>>> = if cids.iter().any(|c| digest_of(c).is_some()) {
            self.ensure_keydir()?;
            let keydir = self.keydir_read();
            cids.iter()
                .map(|c| {
                    let d = digest_of(c)?;
                    keydir.as_ref().and_then(|k| k.find(&d).map(|l| k.log_key(l)))
                })
                .collect()
        } else {
            vec![None; cids.len()]
        };
        let txn = self.db.begin_read().map_err(be)?;
        let log = txn.open_table(LOG).map_err(be)?;
        let blocks = txn.open_table(BLOCKS).map_err(be)?;
        cids.iter().zip(&keys).map(|(cid, at)| read_block(&log, &blocks, cid, at.as_deref())).collect()
    }

    fn atomic_put_many(&self) -> bool {
        true
    }
}

#[async_trait]
impl StreamStore for RedbBlockstore {
    async fn commit(&self, stream: &Cid, blocks: &[Block], heads: &[Cid]) -> Result<(), StoreError> {
        self.commit_sync(stream, blocks, heads)
    }

    async fn heads(&self, stream: &Cid) -> Result<Option<Vec<Cid>>, StoreError> {
        let txn = self.db.begin_read().map_err(be)?;
        let table = txn.open_table(HEADS).map_err(be)?;
        let Some(value) = table.get(stream.to_bytes().as_slice()).map_err(be)? else { return Ok(None) };
        decode_cids(value.value(), || format!("heads of stream {stream}")).map(Some)
    }

    async fn log_len(&self, stream: &Cid) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(be)?;
        let table = txn.open_table(LOG).map_err(be)?;
        let pruned = txn.open_table(PRUNED).map_err(be)?;
        let skey = stream.to_bytes();
        Ok(log_end(&table, &skey, stream)?.max(pruned_end_of(&pruned, &skey, stream)?))
    }

    async fn read_log(&self, stream: &Cid, start: u64, max: usize) -> Result<Vec<Cid>, StoreError> {
        let mut out = Vec::with_capacity(max.min(1 << 16));
        self.scan_log(stream, start, max, |visit, _, _| {
            out.push(match visit {
                Visit::Logged(logged) => logged.cid(),
                Visit::Pruned(skel) => cid_from_digest(&skel.digest),
            });
            Ok(())
        })?;
        Ok(out)
    }

    async fn read_log_entries(&self, stream: &Cid, start: u64, max: usize) -> Result<Vec<LoggedEvent>, StoreError> {
        self.read_entries(stream, start, max)
    }

    async fn prune(&self, stream: &Cid, entries: &[(u64, Cid)]) -> Result<PruneStats, StoreError> {
        self.prune_sync(stream, entries)
    }

    async fn append_skeleton(&self, stream: &Cid, entries: &[LoggedEvent], heads: &[Cid]) -> Result<(), StoreError> {
        self.append_skeleton_sync(stream, entries, heads)
    }

    async fn put_stream_record(&self, stream: &Cid, record: &[u8]) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        txn.open_table(RECORDS).map_err(be)?.insert(stream.to_bytes().as_slice(), record).map_err(be)?;
        txn.commit().map_err(be)
    }

    async fn stream_record(&self, stream: &Cid) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(be)?;
        let table = txn.open_table(RECORDS).map_err(be)?;
        Ok(table.get(stream.to_bytes().as_slice()).map_err(be)?.map(|v| v.value().to_vec()))
    }

    async fn streams(&self) -> Result<Vec<Cid>, StoreError> {
        let txn = self.db.begin_read().map_err(be)?;
        let table = txn.open_table(HEADS).map_err(be)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(be)? {
            let (key, _) = entry.map_err(be)?;
            out.push(decode_cid(key.value(), || "a stream key".to_owned())?);
        }
        out.sort_unstable();
        Ok(out)
    }
}
