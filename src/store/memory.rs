use std::collections::HashMap;
use std::fmt;
use std::sync::{PoisonError, RwLock};

use async_trait::async_trait;
use ipld_core::cid::Cid;

use super::{Blockstore, StoreError, StreamStore};
use crate::block::Block;

/// A [`StreamStore`] in memory. Cloning a [`Block`] is cheap, so `get` does
/// not copy bytes. Its `Debug` prints sizes, not contents.
#[derive(Default)]
pub struct MemoryBlockstore {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    blocks: HashMap<Cid, Block>,
    bytes: usize,
    streams: HashMap<Cid, StreamMeta>,
}

#[derive(Default)]
struct StreamMeta {
    heads: Vec<Cid>,
    log: Vec<Cid>,
}

impl MemoryBlockstore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of blocks held.
    pub fn len(&self) -> usize {
        self.read().blocks.len()
    }

    /// Whether no block is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The total bytes of the blocks held.
    pub fn total_bytes(&self) -> usize {
        self.read().bytes
    }

    /// Every block, in no particular order.
    pub fn blocks(&self) -> Vec<Block> {
        self.read().blocks.values().cloned().collect()
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

impl Inner {
    /// Stores a block unless its CID is already there: a put of a present CID
    /// changes nothing (the contract), even for a block built unchecked.
    fn put(&mut self, block: Block) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.blocks.entry(*block.cid()) {
            self.bytes += block.len();
            e.insert(block);
        }
    }
}

impl fmt::Debug for MemoryBlockstore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.read();
        f.debug_struct("MemoryBlockstore")
            .field("blocks", &inner.blocks.len())
            .field("bytes", &inner.bytes)
            .field("streams", &inner.streams.len())
            .finish()
    }
}

#[async_trait]
impl Blockstore for MemoryBlockstore {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        Ok(self.read().blocks.get(cid).cloned())
    }

    async fn put(&self, block: Block) -> Result<(), StoreError> {
        self.write().put(block);
        Ok(())
    }

    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.read().blocks.contains_key(cid))
    }

    async fn put_many(&self, blocks: Vec<Block>) -> Result<(), StoreError> {
        let mut inner = self.write();
        for b in blocks {
            inner.put(b);
        }
        Ok(())
    }

    async fn get_many(&self, cids: &[Cid]) -> Result<Vec<Option<Block>>, StoreError> {
        let inner = self.read();
        Ok(cids.iter().map(|c| inner.blocks.get(c).cloned()).collect())
    }

    fn atomic_put_many(&self) -> bool {
        true
    }
}

#[async_trait]
impl StreamStore for MemoryBlockstore {
    async fn commit(&self, stream: &Cid, blocks: &[Block], heads: &[Cid]) -> Result<(), StoreError> {
        let mut inner = self.write();
        for b in blocks {
            inner.put(b.clone());
        }
        let meta = inner.streams.entry(*stream).or_default();
        meta.log.extend(blocks.iter().map(|b| *b.cid()));
        meta.heads = heads.to_vec();
        Ok(())
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
        Ok(meta.log[start..end].to_vec())
    }

    async fn streams(&self) -> Result<Vec<Cid>, StoreError> {
        let mut s: Vec<Cid> = self.read().streams.keys().copied().collect();
        s.sort_unstable();
        Ok(s)
    }
}
