use std::fmt;
use std::sync::{PoisonError, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use ipld_core::cid::Cid;

use super::{Blockstore, LoggedEvent, PruneStats, Slot, StoreError, StreamStore, table_hash};
use crate::block::{Block, Digest, KeyedState, cid_from_digest, digest_of, event_digest};

/// A [`StreamStore`] in memory. Cloning a [`Block`] is cheap, so `get` does
/// not copy bytes. Its `Debug` prints sizes, not contents.
#[derive(Default)]
pub struct MemoryBlockstore {
    inner: RwLock<Inner>,
    /// Each stream's record ([`StreamStore::put_stream_record`]).
    records: RwLock<std::collections::HashMap<Cid, Vec<u8>>>,
}

#[derive(Default)]
#[cfg_attr(any(test, feature = "testing"), derive(Clone))]
struct Inner {
    blocks: Blocks,
    streams: Streams,
}

/// The blocks: an arena in the order first put, and a table of arena
/// indices with a keyed 32-bit hash of the CID's digest beside each (so the
/// table grows, and turns away most probes, without reading the arena). Each
/// CID is held once (not as a map key and again in the block), and a
/// stream's log is a list of arena indices.
#[derive(Default)]
#[cfg_attr(any(test, feature = "testing"), derive(Clone))]
struct Blocks {
    entries: Vec<(Key, Held)>,
    index: HashTable<Slot>,
    hasher: KeyedState,
    bytes: usize,
    /// Entries whose bytes are pruned.
    pruned: usize,
}

/// What the arena holds of a block: its bytes, or, once pruned (or for an
/// entry appended as a skeleton), only the event's height and parents.
#[cfg_attr(any(test, feature = "testing"), derive(Clone))]
enum Held {
    Bytes(Bytes),
    Pruned(Box<Skeleton>),
}

#[cfg_attr(any(test, feature = "testing"), derive(Clone))]
struct Skeleton {
    height: u64,
    parents: Box<[Cid]>,
}

impl Held {
    fn bytes(&self) -> Option<&Bytes> {
        match self {
            Held::Bytes(b) => Some(b),
            Held::Pruned(_) => None,
        }
    }
}

/// A CID as the arena holds it: an event CID (the one shape this library
/// writes) by its digest alone, 32 bytes instead of a 96-byte `Cid`.
#[cfg_attr(any(test, feature = "testing"), derive(Clone))]
enum Key {
    Event(Digest),
    Other(Box<Cid>),
}

impl Key {
    fn new(cid: &Cid) -> Self {
        digest_of(cid).map_or_else(|| Key::Other(Box::new(*cid)), Key::Event)
    }

    fn is(&self, cid: &Cid) -> bool {
        match self {
            Key::Event(d) => event_digest(cid) == Some(d),
            Key::Other(c) => **c == *cid,
        }
    }

    fn cid(&self) -> Cid {
        match self {
            Key::Event(d) => cid_from_digest(d),
            Key::Other(c) => **c,
        }
    }
}

/// The streams' heads and logs by stream CID, in a table hashed by
/// [`KeyedState::hash_cid`] (a `Cid`'s derived `Hash` writes every field
/// and all 64 bytes of its multihash: a commit paid that for each append).
#[derive(Default)]
#[cfg_attr(any(test, feature = "testing"), derive(Clone))]
struct Streams {
    table: HashTable<(Cid, StreamMeta)>,
    hasher: KeyedState,
}

impl Streams {
    fn len(&self) -> usize {
        self.table.len()
    }

    fn get(&self, stream: &Cid) -> Option<&StreamMeta> {
        self.table.find(self.hasher.hash_cid(stream), |(c, _)| c == stream).map(|(_, m)| m)
    }

    /// The stream's entry, made empty if it has none.
    fn entry(&mut self, stream: &Cid) -> &mut StreamMeta {
        let hasher = &self.hasher;
        let entry = self.table.entry(hasher.hash_cid(stream), |(c, _)| c == stream, |(c, _)| hasher.hash_cid(c));
        &mut entry.or_insert_with(|| (*stream, StreamMeta::default())).into_mut().1
    }

    fn keys(&self) -> impl Iterator<Item = &Cid> {
        self.table.iter().map(|(c, _)| c)
    }
}

#[derive(Default)]
#[cfg_attr(any(test, feature = "testing"), derive(Clone))]
struct StreamMeta {
    heads: Vec<Cid>,
    /// Arena indices, in commit order.
    log: Vec<u32>,
}

impl MemoryBlockstore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// `commit`: every write of this store is done within the call.
    fn commit_in_memory(&self, stream: &Cid, blocks: &[Block], heads: &[Cid]) {
        let mut guard = self.write();
        let Inner { blocks: store, streams } = &mut *guard;
        let meta = streams.entry(stream);
        meta.log.reserve(blocks.len());
        for b in blocks {
            meta.log.push(store.put(b));
        }
        meta.heads.clear();
        meta.heads.extend_from_slice(heads);
    }

    /// A copy of the store that shares nothing with it (blocks' bytes are
    /// shared, being immutable): the model checker forks a state with it.
    #[cfg(any(test, feature = "testing"))]
    pub fn deep_copy(&self) -> Self {
        let records = self.records.read().unwrap_or_else(PoisonError::into_inner).clone();
        MemoryBlockstore { inner: RwLock::new(self.read().clone()), records: RwLock::new(records) }
    }

    /// The number of blocks held (pruned ones are not).
    pub fn len(&self) -> usize {
        let inner = self.read();
        inner.blocks.entries.len() - inner.blocks.pruned
    }

    /// Whether no block is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The total bytes of the blocks held.
    pub fn total_bytes(&self) -> usize {
        self.read().blocks.bytes
    }

    /// Every block, in no particular order.
    pub fn blocks(&self) -> Vec<Block> {
        self.read()
            .blocks
            .entries
            .iter()
            .filter_map(|(k, held)| held.bytes().map(|b| Block::new_unchecked(k.cid(), b.clone())))
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated:
        // every mutation below is a single insert or a push.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Blocks {
    fn hash(&self, cid: &Cid) -> u32 {
        let h = self.hasher.hash_cid(cid);
        (h ^ (h >> 32)) as u32
    }

    fn find(&self, cid: &Cid) -> Option<u32> {
        let hash = self.hash(cid);
        self.index.find(table_hash(hash), |s| s.hash == hash && self.entries[s.id as usize].0.is(cid)).map(|s| s.id)
    }

    fn get(&self, cid: &Cid) -> Option<Block> {
        let i = self.find(cid)?;
        self.entries[i as usize].1.bytes().map(|b| Block::new_unchecked(*cid, b.clone()))
    }

    fn has(&self, cid: &Cid) -> bool {
        self.find(cid).is_some_and(|i| self.entries[i as usize].1.bytes().is_some())
    }

    /// Stores a block unless its CID is already there: a put of a present CID
    /// changes nothing (the contract), even for a block built unchecked; a
    /// put of a pruned one gives it its bytes back. Returns its arena index.
    fn put(&mut self, block: &Block) -> u32 {
        let id = self.insert(block.cid(), || Held::Bytes(block.bytes().clone()));
        let held = &mut self.entries[id as usize].1;
        if let Held::Pruned(_) = held {
            *held = Held::Bytes(block.bytes().clone());
            self.pruned -= 1;
            self.bytes += block.len();
        }
        id
    }

    /// The arena index of `cid`, adding it with `held()` if it is new.
    fn insert(&mut self, cid: &Cid, held: impl FnOnce() -> Held) -> u32 {
        let hash = self.hash(cid);
        let id = u32::try_from(self.entries.len()).expect("fewer than 2^32 blocks in one memory store");
        let entries = &self.entries;
        match self.index.entry(
            table_hash(hash),
            |s| s.hash == hash && entries[s.id as usize].0.is(cid),
            |s| table_hash(s.hash),
        ) {
            Entry::Occupied(e) => return e.get().id,
            Entry::Vacant(e) => {
                e.insert(Slot { id, hash });
            }
        }
        let held = held();
        match &held {
            Held::Bytes(b) => self.bytes += b.len(),
            Held::Pruned(_) => self.pruned += 1,
        }
        self.entries.push((Key::new(cid), held));
        id
    }

    /// The log entry of arena index `i`.
    fn logged(&self, i: u32) -> Result<LoggedEvent, StoreError> {
        let (key, held) = &self.entries[i as usize];
        let cid = key.cid();
        match held {
            Held::Bytes(b) => LoggedEvent::from_parts(&cid, b),
            Held::Pruned(s) => Ok(LoggedEvent { cid, height: s.height, parents: s.parents.to_vec(), pruned: true }),
        }
    }
}

impl fmt::Debug for MemoryBlockstore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.read();
        f.debug_struct("MemoryBlockstore")
            .field("blocks", &(inner.blocks.entries.len() - inner.blocks.pruned))
            .field("pruned", &inner.blocks.pruned)
            .field("bytes", &inner.blocks.bytes)
            .field("streams", &inner.streams.len())
            .finish()
    }
}

#[async_trait]
impl Blockstore for MemoryBlockstore {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        Ok(self.read().blocks.get(cid))
    }

    async fn put(&self, block: Block) -> Result<(), StoreError> {
        self.write().blocks.put(&block);
        Ok(())
    }

    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.read().blocks.has(cid))
    }

    async fn put_many(&self, blocks: Vec<Block>) -> Result<(), StoreError> {
        let mut inner = self.write();
        for b in &blocks {
            inner.blocks.put(b);
        }
        Ok(())
    }

    async fn get_many(&self, cids: &[Cid]) -> Result<Vec<Option<Block>>, StoreError> {
        let inner = self.read();
        Ok(cids.iter().map(|c| inner.blocks.get(c)).collect())
    }

    fn atomic_put_many(&self) -> bool {
        true
    }
}

#[async_trait]
impl StreamStore for MemoryBlockstore {
    async fn commit(&self, stream: &Cid, blocks: &[Block], heads: &[Cid]) -> Result<(), StoreError> {
        self.commit_in_memory(stream, blocks, heads);
        Ok(())
    }

    fn commit_now(&self, stream: &Cid, blocks: &[Block], heads: &[Cid]) -> Option<Result<(), StoreError>> {
        self.commit_in_memory(stream, blocks, heads);
        Some(Ok(()))
    }

    async fn heads(&self, stream: &Cid) -> Result<Option<Vec<Cid>>, StoreError> {
        Ok(self.read().streams.get(stream).map(|m| m.heads.clone()))
    }

    async fn log_len(&self, stream: &Cid) -> Result<u64, StoreError> {
        Ok(self.read().streams.get(stream).map_or(0, |m| m.log.len() as u64))
    }

    async fn read_log(&self, stream: &Cid, start: u64, max: usize) -> Result<Vec<Cid>, StoreError> {
        let inner = self.read();
        let Some(meta) = inner.streams.get(stream) else { return Ok(Vec::new()) };
        let start = usize::try_from(start).unwrap_or(usize::MAX).min(meta.log.len());
        let end = start.saturating_add(max).min(meta.log.len());
        Ok(meta.log[start..end].iter().map(|&i| inner.blocks.entries[i as usize].0.cid()).collect())
    }

    async fn read_log_entries(&self, stream: &Cid, start: u64, max: usize) -> Result<Vec<LoggedEvent>, StoreError> {
        let inner = self.read();
        let Some(meta) = inner.streams.get(stream) else { return Ok(Vec::new()) };
        let start = usize::try_from(start).unwrap_or(usize::MAX).min(meta.log.len());
        let end = start.saturating_add(max).min(meta.log.len());
        meta.log[start..end].iter().map(|&i| inner.blocks.logged(i)).collect()
    }

    async fn prune(&self, stream: &Cid, entries: &[(u64, Cid)]) -> Result<PruneStats, StoreError> {
        let mut guard = self.write();
        let Inner { blocks, streams } = &mut *guard;
        let log = streams.get(stream).map_or(&[][..], |m| m.log.as_slice());
        // Check everything first: a mismatch changes nothing.
        let mut ids = Vec::with_capacity(entries.len());
        for (pos, cid) in entries {
            let id = usize::try_from(*pos).ok().and_then(|p| log.get(p)).copied();
            match id {
                Some(id) if blocks.entries[id as usize].0.is(cid) => ids.push(id),
                _ => {
                    return Err(StoreError::Corrupt(format!("{cid} is not at position {pos} of the log of {stream}")));
                }
            }
        }
        let mut stats = PruneStats::default();
        for id in ids {
            let (key, held) = &mut blocks.entries[id as usize];
            let Held::Bytes(bytes) = held else { continue };
            let entry = LoggedEvent::from_parts(&key.cid(), bytes)?;
            stats.events += 1;
            stats.bytes += bytes.len() as u64;
            blocks.bytes -= bytes.len();
            *held = Held::Pruned(Box::new(Skeleton { height: entry.height, parents: entry.parents.into() }));
            blocks.pruned += 1;
        }
        Ok(stats)
    }

    async fn append_skeleton(&self, stream: &Cid, entries: &[LoggedEvent], heads: &[Cid]) -> Result<(), StoreError> {
        let mut guard = self.write();
        let Inner { blocks, streams } = &mut *guard;
        let meta = streams.entry(stream);
        meta.log.reserve(entries.len());
        for e in entries {
            let id = blocks.insert(&e.cid, || {
                Held::Pruned(Box::new(Skeleton { height: e.height, parents: e.parents.as_slice().into() }))
            });
            meta.log.push(id);
        }
        meta.heads.clear();
        meta.heads.extend_from_slice(heads);
        Ok(())
    }

    async fn put_stream_record(&self, stream: &Cid, record: &[u8]) -> Result<(), StoreError> {
        self.records.write().unwrap_or_else(PoisonError::into_inner).insert(*stream, record.to_vec());
        Ok(())
    }

    async fn stream_record(&self, stream: &Cid) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.records.read().unwrap_or_else(PoisonError::into_inner).get(stream).cloned())
    }

    async fn streams(&self) -> Result<Vec<Cid>, StoreError> {
        let mut s: Vec<Cid> = self.read().streams.keys().copied().collect();
        s.sort_unstable();
        Ok(s)
    }
}
