//! Block bytes shared by every simulated node: one [`BlockArena`] holds each
//! block once, and each node's [`ArenaStore`] holds only which of them it
//! has (a bitset), its log and its heads.
//!
//! Blocks are immutable and named by their hash, so two nodes that hold the
//! same CID hold the same bytes: sharing them changes nothing a replica can
//! see. A node's store still answers for itself alone — `get`, `has` and the
//! log see only the blocks put or committed *to that store* — so each
//! replica runs exactly as over its own [`MemoryBlockstore`](crate::store::MemoryBlockstore),
//! and the store passes the same contract suite. What it saves is the
//! bytes: a million nodes that each hold the same 64 events cost 64 blocks
//! of memory, plus a few bytes of membership per node.
//!
//! ```
//! use std::sync::Arc;
//! use merkle_clock::sim::{ArenaStore, BlockArena};
//! use merkle_clock::{Blockstore, Event};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> { futures::executor::block_on(async {
//! let arena = Arc::new(BlockArena::new());
//! let (a, b) = (ArenaStore::new(arena.clone()), ArenaStore::new(arena.clone()));
//! let block = Event::genesis("shared").encode()?;
//! a.put(block.clone()).await?;
//! b.put(block.clone()).await?;
//! assert!(a.has(block.cid()).await? && b.has(block.cid()).await?);
//! assert_eq!(arena.len(), 1); // the bytes are held once
//! let c = ArenaStore::new(arena.clone());
//! assert!(!c.has(block.cid()).await?); // membership is per store
//! # Ok(()) }) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use ipld_core::cid::Cid;

use crate::block::Block;
use crate::store::{Blockstore, StoreError, StreamStore};

/// Every block any node of a simulation stored, each once, by arena index.
#[derive(Default)]
pub struct BlockArena {
    inner: RwLock<ArenaInner>,
}

#[derive(Default)]
struct ArenaInner {
    blocks: Vec<(Cid, Bytes)>,
    index: HashMap<Cid, u32>,
    bytes: usize,
}

impl BlockArena {
    /// An empty arena.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of distinct blocks held.
    pub fn len(&self) -> usize {
        self.read().blocks.len()
    }

    /// Whether no block is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The total bytes of the distinct blocks held.
    pub fn total_bytes(&self) -> usize {
        self.read().bytes
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ArenaInner> {
        // Every mutation is one push and one insert: a panic cannot leave
        // the arena half-updated.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn find(&self, cid: &Cid) -> Option<u32> {
        self.read().index.get(cid).copied()
    }

    /// The index of `block`, stored if it was not there (a CID already held
    /// keeps its first bytes, as the store contract asks).
    fn intern(&self, block: &Block) -> u32 {
        if let Some(id) = self.find(block.cid()) {
            return id;
        }
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(&id) = inner.index.get(block.cid()) {
            return id;
        }
        let id = u32::try_from(inner.blocks.len()).expect("fewer than 2^32 blocks in one arena");
        inner.blocks.push((*block.cid(), block.bytes().clone()));
        inner.index.insert(*block.cid(), id);
        inner.bytes += block.len();
        id
    }

    fn block(&self, id: u32) -> Block {
        let inner = self.read();
        let (cid, bytes) = &inner.blocks[id as usize];
        Block::new_unchecked(*cid, bytes.clone())
    }

    fn cid(&self, id: u32) -> Cid {
        self.read().blocks[id as usize].0
    }
}

impl fmt::Debug for BlockArena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.read();
        f.debug_struct("BlockArena").field("blocks", &inner.blocks.len()).field("bytes", &inner.bytes).finish()
    }
}

/// One node's store over a shared [`BlockArena`]: a [`StreamStore`] whose
/// blocks are the arena's, and whose membership, logs and heads are its own.
pub struct ArenaStore {
    arena: Arc<BlockArena>,
    inner: Mutex<Membership>,
}

#[derive(Default)]
struct Membership {
    /// Bit `i` set: the store holds the arena's block `i`.
    held: Vec<u64>,
    /// Per stream (few per store, so a list): its heads and its log as arena indices.
    streams: Vec<(Cid, Heads, Vec<u32>)>,
}

/// A stream's heads: as arena indices when the arena holds them all (the
/// usual case: 4 bytes a head instead of a 96-byte `Cid`), else as CIDs.
enum Heads {
    Ids(Box<[u32]>),
    Cids(Box<[Cid]>),
}

impl Membership {
    fn holds(&self, id: u32) -> bool {
        self.held.get(id as usize / 64).is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    fn hold(&mut self, id: u32) {
        let word = id as usize / 64;
        if self.held.len() <= word {
            self.held.resize(word + 1, 0);
        }
        self.held[word] |= 1 << (id % 64);
    }

    fn stream(&self, stream: &Cid) -> Option<&(Cid, Heads, Vec<u32>)> {
        self.streams.iter().find(|(s, _, _)| s == stream)
    }
}

impl ArenaStore {
    /// An empty store over `arena`.
    pub fn new(arena: Arc<BlockArena>) -> Self {
        ArenaStore { arena, inner: Mutex::new(Membership::default()) }
    }

    /// The arena the blocks live in.
    pub fn arena(&self) -> &Arc<BlockArena> {
        &self.arena
    }

    /// The number of blocks this store holds.
    pub fn len(&self) -> usize {
        self.lock().held.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether this store holds no block.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Membership> {
        // Each mutation below completes before the guard drops; a panic in
        // between leaves bits set for blocks the arena holds, which is
        // harmless.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get_one(&self, m: &Membership, cid: &Cid) -> Option<Block> {
        let id = self.arena.find(cid)?;
        m.holds(id).then(|| self.arena.block(id))
    }
}

impl fmt::Debug for ArenaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.lock();
        let blocks: u32 = m.held.iter().map(|w| w.count_ones()).sum();
        f.debug_struct("ArenaStore").field("blocks", &blocks).field("streams", &m.streams.len()).finish()
    }
}

#[async_trait]
impl Blockstore for ArenaStore {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        let m = self.lock();
        Ok(self.get_one(&m, cid))
    }

    async fn put(&self, block: Block) -> Result<(), StoreError> {
        let id = self.arena.intern(&block);
        self.lock().hold(id);
        Ok(())
    }

    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        let Some(id) = self.arena.find(cid) else { return Ok(false) };
        Ok(self.lock().holds(id))
    }

    async fn put_many(&self, blocks: Vec<Block>) -> Result<(), StoreError> {
        // Interned first (invisible to this store), then held all at once.
        let ids: Vec<u32> = blocks.iter().map(|b| self.arena.intern(b)).collect();
        let mut m = self.lock();
        for id in ids {
            m.hold(id);
        }
        Ok(())
    }

    async fn get_many(&self, cids: &[Cid]) -> Result<Vec<Option<Block>>, StoreError> {
        let m = self.lock();
        Ok(cids.iter().map(|c| self.get_one(&m, c)).collect())
    }

    fn atomic_put_many(&self) -> bool {
        true
    }
}

#[async_trait]
impl StreamStore for ArenaStore {
    async fn commit(&self, stream: &Cid, blocks: &[Block], heads: &[Cid]) -> Result<(), StoreError> {
        let ids: Vec<u32> = blocks.iter().map(|b| self.arena.intern(b)).collect();
        let head_ids: Option<Box<[u32]>> = heads.iter().map(|h| self.arena.find(h)).collect();
        let new_heads = head_ids.map_or_else(|| Heads::Cids(heads.into()), Heads::Ids);
        let mut guard = self.lock();
        let m = &mut *guard;
        for &id in &ids {
            m.hold(id);
        }
        let i = match m.streams.iter().position(|(s, _, _)| s == stream) {
            Some(i) => i,
            None => {
                m.streams.push((*stream, Heads::Ids(Box::new([])), Vec::new()));
                m.streams.len() - 1
            }
        };
        let (_, h, log) = &mut m.streams[i];
        log.extend_from_slice(&ids);
        *h = new_heads;
        Ok(())
    }

    async fn heads(&self, stream: &Cid) -> Result<Option<Vec<Cid>>, StoreError> {
        let m = self.lock();
        Ok(m.stream(stream).map(|(_, h, _)| match h {
            Heads::Ids(ids) => ids.iter().map(|&id| self.arena.cid(id)).collect(),
            Heads::Cids(cids) => cids.to_vec(),
        }))
    }

    async fn log_len(&self, stream: &Cid) -> Result<u64, StoreError> {
        Ok(self.lock().stream(stream).map_or(0, |(_, _, log)| log.len() as u64))
    }

    async fn read_log(&self, stream: &Cid, start: u64, max: usize) -> Result<Vec<Cid>, StoreError> {
        let page: Vec<u32> = {
            let m = self.lock();
            let Some((_, _, log)) = m.stream(stream) else { return Ok(Vec::new()) };
            let start = usize::try_from(start).unwrap_or(usize::MAX).min(log.len());
            let end = start.saturating_add(max).min(log.len());
            log[start..end].to_vec()
        };
        Ok(page.into_iter().map(|id| self.arena.cid(id)).collect())
    }

    async fn streams(&self) -> Result<Vec<Cid>, StoreError> {
        let mut s: Vec<Cid> = self.lock().streams.iter().map(|(s, _, _)| *s).collect();
        s.sort_unstable();
        Ok(s)
    }
}
