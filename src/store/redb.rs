//! The redb-backed [`StreamStore`]: see [`RedbBlockstore`] for the table
//! layout and the durability guarantees.

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use ipld_core::cid::Cid;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
    backends::InMemoryBackend,
};

use super::{Blockstore, LogEntry, StoreError, StreamStore};
use crate::block::Block;

type BytesTable = TableDefinition<'static, &'static [u8], &'static [u8]>;

const BLOCKS: BytesTable = TableDefinition::new("blocks");
const HEADS: BytesTable = TableDefinition::new("stream_heads");
const LOG: BytesTable = TableDefinition::new("stream_log");
const META: TableDefinition<'static, &'static str, u64> = TableDefinition::new("meta");

const FORMAT_KEY: &str = "format_version";
/// 2: a log value is the event CID, its height (u64 big-endian) and its parents' CIDs.
const FORMAT_VERSION: u64 = 2;

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

/// A persistent [`StreamStore`] in one [redb](https://docs.rs/redb) file (or
/// in memory, for tests): blocks shared by every stream, and per stream its heads
/// and its log.
///
/// Methods are async per the traits, but redb is synchronous: each call does
/// its I/O inline and returns a ready future (the library never spawns).
/// Its `Debug` prints the path, the durability and counts (one short read
/// transaction), not contents.
///
/// # Layout
///
/// Four tables, all keyed by raw bytes:
///
/// | table          | key                                   | value                          |
/// | -------------- | ------------------------------------- | ------------------------------ |
/// | `blocks`       | CID bytes                             | block bytes                    |
/// | `stream_heads` | stream (genesis) CID bytes            | the head CIDs' bytes, concatenated |
/// | `stream_log`   | stream CID bytes ++ position (u64 BE) | event CID bytes                |
/// | `meta`         | `"format_version"`                    | `1`                            |
///
/// Every stream shares the one `blocks` table, so a block that two streams log
/// is stored once. The log key sorts a stream's entries by position, so
/// `read_log` is one range scan and `log_len` is the position of the last key
/// plus one (a single B-tree descent, no counter to keep in step). Binary CIDs
/// are self-delimiting, so no stream's key range can contain another stream's
/// keys, and a heads value is parsed CID after CID: a value that does not split
/// exactly into CIDs is reported as [`StoreError::Corrupt`].
///
/// Reads return blocks with [`Block::new_unchecked`]: the store only ever holds
/// blocks its callers verified, and opening or reading never re-hashes.
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
/// redb keeps some bookkeeping for non-durable commits in memory until the next
/// durable one, so a long run of `Eventual` writes should `flush` now and then
/// (every few thousand commits, or on a timer).
///
/// Opening never reads or hashes blocks. Reopening a file after an unclean
/// shutdown makes redb walk the whole file to repair it, which for a large
/// store takes seconds where a clean open takes milliseconds.
pub struct RedbBlockstore {
    db: Database,
    path: Option<PathBuf>,
    durability: Durability,
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
    /// it was written by an unknown version of this store.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, Durability::Immediate)
    }

    /// Opens (or creates) the database file at `path` with the given durability.
    ///
    /// # Errors
    /// As [`RedbBlockstore::open`].
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if !path.exists() {
            create_atomically(path)?;
        }
        let db = Database::builder().create(path).map_err(be)?;
        Self::init(db, Some(path.to_path_buf()), durability)
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

    /// Creates the tables and checks the format version, in one durable
    /// transaction.
    fn init(db: Database, path: Option<PathBuf>, durability: Durability) -> Result<Self, StoreError> {
        let txn = db.begin_write().map_err(be)?;
        {
            txn.open_table(BLOCKS).map_err(be)?;
            txn.open_table(HEADS).map_err(be)?;
            txn.open_table(LOG).map_err(be)?;
            let mut meta = txn.open_table(META).map_err(be)?;
            let found = meta.get(FORMAT_KEY).map_err(be)?.map(|v| v.value());
            match found {
                None => {
                    meta.insert(FORMAT_KEY, FORMAT_VERSION).map_err(be)?;
                }
                Some(FORMAT_VERSION) => {}
                Some(v) => {
                    return Err(StoreError::Corrupt(format!(
                        "store format version {v}, this library reads version {FORMAT_VERSION}"
                    )));
                }
            }
        }
        txn.commit().map_err(be)?;
        Ok(RedbBlockstore { db, path, durability })
    }

    /// The file this store lives in (`None` for [`RedbBlockstore::in_memory`]).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The durability every write uses.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The number of blocks held (over all streams; a shared block counts once).
    ///
    /// # Errors
    /// [`StoreError::Backend`] if redb fails.
    pub fn block_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(be)?;
        txn.open_table(BLOCKS).map_err(be)?.len().map_err(be)
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
        let txn = self.begin_write()?;
        {
            let mut block_table = txn.open_table(BLOCKS).map_err(be)?;
            let mut log_table = txn.open_table(LOG).map_err(be)?;
            let mut heads_table = txn.open_table(HEADS).map_err(be)?;
            let mut pos = log_end(&log_table, &skey, stream)?;
            let mut key = Vec::with_capacity(skey.len() + 8);
            let mut value = Vec::with_capacity(128);
            for b in blocks {
                let cid = b.cid().to_bytes();
                put_block(&mut block_table, &cid, b.bytes())?;
                log_key_into(&mut key, &skey, pos);
                // The header beside the CID lets a reopen rebuild the index from the log alone.
                let entry = LogEntry::from_block(b)?;
                value.clear();
                value.extend_from_slice(&cid);
                value.extend_from_slice(&entry.height.to_be_bytes());
                for p in &entry.parents {
                    p.write_bytes(&mut value).map_err(be)?;
                }
                log_table.insert(key.as_slice(), value.as_slice()).map_err(be)?;
                pos = pos
                    .checked_add(1)
                    .ok_or_else(|| StoreError::Corrupt(format!("log of stream {stream} is at the largest position")))?;
            }
            let encoded = encode_cids(heads);
            heads_table.insert(skey.as_slice(), encoded.as_slice()).map_err(be)?;
        }
        txn.commit().map_err(be)
    }
}

impl RedbBlockstore {
    /// Decodes up to `max` values of a stream's log from position `start`, in one range scan.
    fn scan_log<T>(
        &self,
        stream: &Cid,
        start: u64,
        max: usize,
        decode: impl Fn(&[u8], &dyn Fn() -> String) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let skey = stream.to_bytes();
        let lo = log_key(&skey, start);
        let hi = log_key(&skey, u64::MAX);
        let txn = self.db.begin_read().map_err(be)?;
        let table = txn.open_table(LOG).map_err(be)?;
        let mut out = Vec::with_capacity(max.min(1 << 16));
        for entry in table.range::<&[u8]>(lo.as_slice()..=hi.as_slice()).map_err(be)?.take(max) {
            let (_, value) = entry.map_err(be)?;
            let pos = start.saturating_add(out.len() as u64);
            out.push(decode(value.value(), &|| format!("log entry {pos} of stream {stream}"))?);
        }
        Ok(out)
    }
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

fn log_key_into(buf: &mut Vec<u8>, stream: &[u8], pos: u64) {
    buf.clear();
    buf.extend_from_slice(stream);
    buf.extend_from_slice(&pos.to_be_bytes());
}

fn log_key(stream: &[u8], pos: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 8);
    log_key_into(&mut k, stream, pos);
    k
}

/// The position after the stream's last log entry (its log length).
fn log_end<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    skey: &[u8],
    stream: &Cid,
) -> Result<u64, StoreError> {
    let lo = log_key(skey, 0);
    let hi = log_key(skey, u64::MAX);
    let mut range = table.range::<&[u8]>(lo.as_slice()..=hi.as_slice()).map_err(be)?;
    let Some(last) = range.next_back() else { return Ok(0) };
    let (key, _) = last.map_err(be)?;
    let key = key.value();
    let pos = key
        .strip_prefix(skey)
        .and_then(|p| <[u8; 8]>::try_from(p).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt(format!("log key of stream {stream} has {} bytes", key.len())))?;
    pos.checked_add(1).ok_or_else(|| StoreError::Corrupt(format!("log of stream {stream} is at the largest position")))
}

fn encode_cids(cids: &[Cid]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cids.iter().map(Cid::encoded_len).sum());
    for c in cids {
        out.extend_from_slice(&c.to_bytes());
    }
    out
}

/// Decodes a value that must be exactly one CID.
fn decode_cid(bytes: &[u8], what: impl FnOnce() -> String) -> Result<Cid, StoreError> {
    let mut rest = bytes;
    match Cid::read_bytes(&mut rest) {
        Ok(cid) if rest.is_empty() => Ok(cid),
        Ok(_) => Err(StoreError::Corrupt(format!("{}: {} bytes after the CID", what(), rest.len()))),
        Err(e) => Err(StoreError::Corrupt(format!("{}: not a CID ({} bytes): {e}", what(), bytes.len()))),
    }
}

/// Decodes a log value: the event CID, its height, its parents' CIDs.
fn decode_log_value(bytes: &[u8], what: &dyn Fn() -> String) -> Result<LogEntry, StoreError> {
    let mut rest = bytes;
    let cid = Cid::read_bytes(&mut rest).map_err(|e| StoreError::Corrupt(format!("{}: not a CID: {e}", what())))?;
    let Some((height, rest)) = rest.split_first_chunk::<8>() else {
        return Err(StoreError::Corrupt(format!("{}: no height after the CID", what())));
    };
    let parents = decode_cids(rest, what)?;
    Ok(LogEntry { cid, height: u64::from_be_bytes(*height), parents })
}

/// Decodes concatenated CIDs; the value must split exactly into CIDs.
fn decode_cids(bytes: &[u8], what: impl Fn() -> String) -> Result<Vec<Cid>, StoreError> {
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let cid = Cid::read_bytes(&mut rest).map_err(|e| {
            StoreError::Corrupt(format!(
                "{}: {} bytes do not split into CIDs (at byte {offset}: {e})",
                what(),
                bytes.len()
            ))
        })?;
        out.push(cid);
    }
    Ok(out)
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
                d.field("blocks", &blocks).field("streams", &streams).field("log_entries", &log)
            }
            Err(_) => d.field("counts", &"unavailable"),
        };
        d.finish()
    }
}

#[async_trait]
impl Blockstore for RedbBlockstore {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        let txn = self.db.begin_read().map_err(be)?;
        let table = txn.open_table(BLOCKS).map_err(be)?;
        let got = table.get(cid.to_bytes().as_slice()).map_err(be)?;
        Ok(got.map(|v| Block::new_unchecked(*cid, Bytes::copy_from_slice(v.value()))))
    }

    async fn put(&self, block: Block) -> Result<(), StoreError> {
        self.put_blocks(std::iter::once(&block))
    }

    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
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
        let txn = self.db.begin_read().map_err(be)?;
        let table = txn.open_table(BLOCKS).map_err(be)?;
        let mut out = Vec::with_capacity(cids.len());
        for cid in cids {
            let got = table.get(cid.to_bytes().as_slice()).map_err(be)?;
            out.push(got.map(|v| Block::new_unchecked(*cid, Bytes::copy_from_slice(v.value()))));
        }
        Ok(out)
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
        log_end(&table, &stream.to_bytes(), stream)
    }

    async fn read_log(&self, stream: &Cid, start: u64, max: usize) -> Result<Vec<Cid>, StoreError> {
        // The whole value is checked, so a corrupt entry is reported here too.
        self.scan_log(stream, start, max, |value, what| decode_log_value(value, what).map(|e| e.cid))
    }

    async fn read_log_entries(&self, stream: &Cid, start: u64, max: usize) -> Result<Vec<LogEntry>, StoreError> {
        self.scan_log(stream, start, max, decode_log_value)
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
