//! Where blocks live: the [`Blockstore`] trait, the [`StreamStore`] trait for
//! a stream's heads and log, and their in-memory implementation.
//!
//! Both traits are async and object safe (`dyn Blockstore`, `dyn StreamStore`),
//! and `Send + Sync`. Every implementation must pass the shared `contract`
//! suite (`store::contract`, with the `testing` feature); this crate runs it
//! against [`MemoryBlockstore`], a fault-injecting wrapper and (with
//! the `redb` feature) the redb store.

use std::error::Error as StdError;

use async_trait::async_trait;
use ipld_core::cid::Cid;
use thiserror::Error;

use crate::block::Block;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod contract;
#[cfg(feature = "testing")]
mod fault;
mod memory;
#[cfg(feature = "redb")]
mod redb;

#[cfg(feature = "redb")]
pub use self::redb::{Durability, RedbBlockstore, RedbConfig};
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub use fault::{FaultOp, FaultPlan, FaultyStore};
pub use memory::MemoryBlockstore;

/// A storage operation failed. The operation had no effect unless the method's
/// contract says otherwise.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend reported an error (I/O, a full disk, a lock, an injected fault).
    #[error("storage backend failed: {0}")]
    Backend(#[source] Box<dyn StdError + Send + Sync>),
    /// The store holds data that cannot be what this library wrote.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// The event is in the stream, but its bytes were pruned
    /// ([`StreamStore::prune`]): only its skeleton (digest, height, parents)
    /// is kept. [`Replica::get`](crate::Replica::get) answers this for a
    /// pruned event; a store's own `get` answers `Ok(None)`.
    #[error("{cid}: pruned, only its skeleton (height, parents) is kept")]
    Pruned {
        /// The pruned event.
        cid: Cid,
    },
    /// This store does not implement the operation (a store for tests, or
    /// one written before it existed).
    #[error("this store does not support {operation}")]
    Unsupported {
        /// The operation, as the trait names it.
        operation: &'static str,
    },
}

impl StoreError {
    /// Wraps any error as [`StoreError::Backend`].
    pub fn backend(e: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        StoreError::Backend(e.into())
    }
}

/// A slot of the stores' hash tables: an index into the store's entries and
/// a keyed 32-bit hash of the entry's digest, so the table can grow, and turn
/// away most probes, without reading the entries.
#[derive(Clone, Copy)]
pub(crate) struct Slot {
    pub(crate) id: u32,
    pub(crate) hash: u32,
}

/// The table's 64-bit hash of a 32-bit one: the low half picks the bucket,
/// the top 7 bits (bits 25..32 of `hash`) are hashbrown's tag.
pub(crate) fn table_hash(hash: u32) -> u64 {
    (u64::from(hash) << 32) | u64::from(hash)
}

/// A content-addressed block store.
///
/// The contract, which the `store::contract` suite (feature `testing`) checks:
/// - `put` is idempotent: putting a block that is already there succeeds and
///   changes nothing.
/// - `get` of a CID that was never put returns `Ok(None)`, not an error.
/// - A block that was put is returned by `get` with identical bytes, and
///   `has` is true for it, until the store is dropped (a persistent store:
///   for ever, once `put` returned).
/// - `put_many` is atomic in implementations that say so
///   ([`Blockstore::atomic_put_many`]); the default implementation is a loop
///   of `put`, so after an error some of the blocks may be stored.
/// - `get_many` returns one entry per requested CID, in the same order.
/// - Stores do not verify: callers put only verified [`Block`]s, and a store
///   may return blocks built with [`Block::new_unchecked`].
#[async_trait]
pub trait Blockstore: Send + Sync {
    /// The block with this CID, or `None`.
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError>;

    /// Stores a block. Idempotent.
    async fn put(&self, block: Block) -> Result<(), StoreError>;

    /// Whether the block is stored. Default: `get(cid).is_some()`.
    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.get(cid).await?.is_some())
    }

    /// Stores several blocks. Default: `put` each in turn (not atomic).
    async fn put_many(&self, blocks: Vec<Block>) -> Result<(), StoreError> {
        for b in blocks {
            self.put(b).await?;
        }
        Ok(())
    }

    /// Fetches several blocks, one result per CID in order. Default: `get` each.
    async fn get_many(&self, cids: &[Cid]) -> Result<Vec<Option<Block>>, StoreError> {
        let mut out = Vec::with_capacity(cids.len());
        for c in cids {
            out.push(self.get(c).await?);
        }
        Ok(out)
    }

    /// Whether `put_many` stores all the blocks or none.
    fn atomic_put_many(&self) -> bool {
        false
    }
}

/// One entry of a stream's log: an event and its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    /// The event.
    pub cid: Cid,
    /// Its height.
    pub height: u64,
    /// Its parents, ascending by CID bytes.
    pub parents: Vec<Cid>,
    /// The store holds only this entry, not the event's bytes: they were
    /// dropped by [`StreamStore::prune`], or the entry was appended by
    /// [`StreamStore::append_skeleton`].
    pub pruned: bool,
}

/// What one [`StreamStore::prune`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PruneStats {
    /// Events whose bytes this call dropped (not counting those pruned before).
    pub events: u64,
    /// The bytes of those blocks. The space a file store gives back to the
    /// file system may differ (the redb store's `compact`).
    pub bytes: u64,
}

impl LoggedEvent {
    /// Reads the header of a stored (already verified) event block.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the block is not an event.
    pub fn from_block(block: &Block) -> Result<LoggedEvent, StoreError> {
        Self::from_parts(block.cid(), block.bytes())
    }

    /// As [`LoggedEvent::from_block`], for the stored bytes of the block `cid`.
    pub(crate) fn from_parts(cid: &Cid, bytes: &[u8]) -> Result<LoggedEvent, StoreError> {
        let header = crate::event::Header::parse_bytes(cid, bytes, &crate::event::Limits::TRUSTED)
            .map_err(|e| StoreError::Corrupt(format!("{cid}: stored block is not an event: {e}")))?;
        Ok(LoggedEvent {
            cid: *cid,
            height: header.height,
            parents: header.parents.iter().map(crate::block::cid_from_digest).collect(),
            pruned: false,
        })
    }
}

/// [`StreamStore::commit`], within the call when the store can
/// ([`StreamStore::commit_now`]): then no future is boxed.
pub(crate) async fn commit<S: ?Sized + StreamStore>(
    store: &S,
    stream: &Cid,
    blocks: &[Block],
    heads: &[Cid],
) -> Result<(), StoreError> {
    match store.commit_now(stream, blocks, heads) {
        Some(done) => done,
        None => store.commit(stream, blocks, heads).await,
    }
}

/// A [`Blockstore`] that also keeps, per stream (named by its genesis CID),
/// the stream's heads and the log of its events in the order they were
/// accepted (a topological order). This is what lets a replica reopen exactly
/// where it stopped.
///
/// The contract:
/// - `commit` is atomic: after it returns `Ok`, the blocks, the log entries
///   and the heads are all stored; after an error or a crash, none of them is.
///   With a durable store, `Ok` means they survive a crash.
/// - `commit` appends the CIDs of `blocks` to the log in the order given;
///   callers pass each event after its parents and never the same CID twice.
/// - `heads` of a stream never committed is `None`.
/// - `read_log(stream, start, max)` returns at most `max` CIDs from position
///   `start` on, and fewer only at the end of the log.
///
/// Pruning (optional: the defaults answer [`StoreError::Unsupported`]):
/// - `prune(stream, entries)` is atomic (all or nothing, also across a crash)
///   and idempotent: an entry already pruned is skipped. Each entry names a
///   log position and the event logged there; a mismatch, or a position past
///   the end of the log, is [`StoreError::Corrupt`] and changes nothing.
/// - After it, the log is unchanged (`log_len`, `read_log`, and
///   `read_log_entries` with the same heights and parents) except that the
///   pruned entries say `pruned`; the heads are unchanged; `get` of a pruned
///   event is `Ok(None)` and `has` is false (unless the block is also held
///   otherwise: put again, or logged by another stream of the same store).
/// - `append_skeleton` appends entries without bytes (each `pruned` when
///   read back) and replaces the heads, atomically, as `commit` does.
/// - A store that prunes must override `read_log_entries` (the default reads
///   each entry's block, which a pruned entry no longer has).
/// - `commit_now`, when it returns `Some`, has done what `commit` does.
/// - `put_stream_record` replaces the stream's record (any bytes) in one
///   atomic step; `stream_record` reads back the last one put, for ever
///   with a persistent store. A store that supports `append_skeleton`
///   supports it too (a shallow replica of a stream with admins needs both).
#[async_trait]
pub trait StreamStore: Blockstore {
    /// Atomically stores the blocks, appends their CIDs to the stream's log and
    /// replaces the stream's heads.
    async fn commit(&self, stream: &Cid, blocks: &[Block], heads: &[Cid]) -> Result<(), StoreError>;

    /// `commit` done within the call, by a store whose writes never wait
    /// (the in-memory one); `None` (the default) when it must be awaited.
    /// Saves a boxed future on every append of an in-memory replica.
    fn commit_now(&self, _stream: &Cid, _blocks: &[Block], _heads: &[Cid]) -> Option<Result<(), StoreError>> {
        None
    }

    /// The stream's heads as last committed, or `None` for an unknown stream.
    async fn heads(&self, stream: &Cid) -> Result<Option<Vec<Cid>>, StoreError>;

    /// The number of entries in the stream's log.
    async fn log_len(&self, stream: &Cid) -> Result<u64, StoreError>;

    /// A page of the stream's log.
    async fn read_log(&self, stream: &Cid, start: u64, max: usize) -> Result<Vec<Cid>, StoreError>;

    /// A page of the stream's log with each event's height and parents: all a
    /// replica needs to rebuild its index. The default reads the blocks and
    /// parses their headers; a store that keeps headers beside its log (the
    /// redb store does) answers without touching the blocks, which is what
    /// makes reopening a large stream a sequential scan.
    async fn read_log_entries(&self, stream: &Cid, start: u64, max: usize) -> Result<Vec<LoggedEvent>, StoreError> {
        let cids = self.read_log(stream, start, max).await?;
        let blocks = self.get_many(&cids).await?;
        cids.iter()
            .zip(blocks)
            .map(|(cid, block)| {
                let block = block
                    .ok_or_else(|| StoreError::Corrupt(format!("{cid}: in the log of {stream} but not stored")))?;
                LoggedEvent::from_block(&block)
            })
            .collect()
    }

    /// The streams this store holds, by genesis CID.
    async fn streams(&self) -> Result<Vec<Cid>, StoreError>;

    /// Drops the bytes of the logged events `entries` names, each by its log
    /// position and its CID, keeping their log entries (height, parents), in
    /// one atomic step. See the trait's contract. Default:
    /// [`StoreError::Unsupported`].
    async fn prune(&self, stream: &Cid, entries: &[(u64, Cid)]) -> Result<PruneStats, StoreError> {
        let _ = (stream, entries);
        Err(StoreError::Unsupported { operation: "prune" })
    }

    /// Appends entries the store holds no bytes for (an event known only by
    /// its skeleton, e.g. below a checkpoint a replica bootstrapped from) to
    /// the stream's log, and replaces its heads, in one atomic step; each
    /// entry's `pruned` flag is ignored (they all read back pruned). Default:
    /// [`StoreError::Unsupported`].
    async fn append_skeleton(&self, stream: &Cid, entries: &[LoggedEvent], heads: &[Cid]) -> Result<(), StoreError> {
        let _ = (stream, entries, heads);
        Err(StoreError::Unsupported { operation: "append_skeleton" })
    }

    /// Replaces the stream's record: a small value the replica keeps beside
    /// the log (a shallow replica's anchors' membership:
    /// [`Replica::bootstrap`](crate::Replica::bootstrap)), atomically and,
    /// with a durable store, durably. The store does not read it. Default:
    /// [`StoreError::Unsupported`].
    async fn put_stream_record(&self, stream: &Cid, record: &[u8]) -> Result<(), StoreError> {
        let _ = (stream, record);
        Err(StoreError::Unsupported { operation: "put_stream_record" })
    }

    /// The stream's record as last put, or `None` (never put, or an unknown
    /// stream). Default: `None`.
    async fn stream_record(&self, stream: &Cid) -> Result<Option<Vec<u8>>, StoreError> {
        let _ = stream;
        Ok(None)
    }
}
