//! A store wrapper that fails on purpose, for testing what sits above a store.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use ipld_core::cid::Cid;

use super::{Blockstore, LoggedEvent, PruneStats, StoreError, StreamStore};
use crate::block::Block;

/// Which operations a [`FaultyStore`] may fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultOp {
    /// `get` and `get_many`.
    Get,
    /// `has`.
    Has,
    /// `put` and `put_many`.
    Put,
    /// `commit`.
    Commit,
    /// `heads`, `log_len`, `read_log`, `read_log_entries`, `streams`, `stream_record`.
    ReadMeta,
    /// `prune`, `append_skeleton` and `put_stream_record`.
    Prune,
}

/// When a [`FaultyStore`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultPlan {
    /// Never fail.
    Never,
    /// Let `n` operations (of any kind) succeed, then fail every one after.
    AfterOps(u64),
    /// Fail every call of this kind of operation.
    Always(FaultOp),
    /// Fail the next call of this kind of operation, then work again.
    Once(FaultOp),
}

/// Wraps a store and fails operations according to a [`FaultPlan`] (the
/// pattern of redb's fuzzing backend). A failed operation has no effect on
/// the inner store.
///
/// ```
/// use std::sync::Arc;
/// use merkle_clock::{Event, MemoryBlockstore, Replica, ReplicaConfig};
/// use merkle_clock::store::{FaultyStore, FaultPlan, FaultOp};
/// # futures::executor::block_on(async {
/// let store = Arc::new(FaultyStore::new(MemoryBlockstore::new()));
/// let genesis = Event::genesis("s").encode()?;
/// let mut replica = Replica::create(store.clone(), &genesis, ReplicaConfig::default()).await?;
/// store.set_plan(FaultPlan::Once(FaultOp::Commit));
/// assert!(replica.append(&1).await.is_err());
/// assert_eq!(replica.len(), 1); // unchanged
/// replica.append(&1).await?; // the retry succeeds
/// # Ok::<(), merkle_clock::Error>(())
/// # })?;
/// # Ok::<(), merkle_clock::Error>(())
/// ```
pub struct FaultyStore<S> {
    inner: S,
    plan: Mutex<FaultPlan>,
    ops: AtomicU64,
    failures: AtomicU64,
}

impl<S> FaultyStore<S> {
    /// Wraps a store; it does not fail until [`FaultyStore::set_plan`].
    pub fn new(inner: S) -> Self {
        FaultyStore { inner, plan: Mutex::new(FaultPlan::Never), ops: AtomicU64::new(0), failures: AtomicU64::new(0) }
    }

    /// Changes the plan and restarts the operation count.
    pub fn set_plan(&self, plan: FaultPlan) {
        *self.plan.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = plan;
        self.ops.store(0, Ordering::SeqCst);
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// How many operations were failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }

    fn check(&self, op: FaultOp) -> Result<(), StoreError> {
        let n = self.ops.fetch_add(1, Ordering::SeqCst);
        let mut plan = self.plan.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let fail = match *plan {
            FaultPlan::Never => false,
            FaultPlan::AfterOps(limit) => n >= limit,
            FaultPlan::Always(o) => o == op,
            FaultPlan::Once(o) if o == op => {
                *plan = FaultPlan::Never;
                true
            }
            FaultPlan::Once(_) => false,
        };
        if fail {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::backend(format!("injected fault in {op:?} (operation {n})")));
        }
        Ok(())
    }
}

impl<S: fmt::Debug> fmt::Debug for FaultyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore").field("inner", &self.inner).field("failures", &self.failures()).finish()
    }
}

#[async_trait]
impl<S: Blockstore> Blockstore for FaultyStore<S> {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        self.check(FaultOp::Get)?;
        self.inner.get(cid).await
    }
    async fn put(&self, block: Block) -> Result<(), StoreError> {
        self.check(FaultOp::Put)?;
        self.inner.put(block).await
    }
    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        self.check(FaultOp::Has)?;
        self.inner.has(cid).await
    }
    async fn put_many(&self, blocks: Vec<Block>) -> Result<(), StoreError> {
        self.check(FaultOp::Put)?;
        self.inner.put_many(blocks).await
    }
    async fn get_many(&self, cids: &[Cid]) -> Result<Vec<Option<Block>>, StoreError> {
        self.check(FaultOp::Get)?;
        self.inner.get_many(cids).await
    }
    fn atomic_put_many(&self) -> bool {
        self.inner.atomic_put_many()
    }
}

#[async_trait]
impl<S: StreamStore> StreamStore for FaultyStore<S> {
    async fn commit(&self, stream: &Cid, blocks: &[Block], heads: &[Cid]) -> Result<(), StoreError> {
        self.check(FaultOp::Commit)?;
        self.inner.commit(stream, blocks, heads).await
    }
    async fn heads(&self, stream: &Cid) -> Result<Option<Vec<Cid>>, StoreError> {
        self.check(FaultOp::ReadMeta)?;
        self.inner.heads(stream).await
    }
    async fn log_len(&self, stream: &Cid) -> Result<u64, StoreError> {
        self.check(FaultOp::ReadMeta)?;
        self.inner.log_len(stream).await
    }
    async fn read_log(&self, stream: &Cid, start: u64, max: usize) -> Result<Vec<Cid>, StoreError> {
        self.check(FaultOp::ReadMeta)?;
        self.inner.read_log(stream, start, max).await
    }
    async fn read_log_entries(&self, stream: &Cid, start: u64, max: usize) -> Result<Vec<LoggedEvent>, StoreError> {
        self.check(FaultOp::ReadMeta)?;
        self.inner.read_log_entries(stream, start, max).await
    }
    async fn streams(&self) -> Result<Vec<Cid>, StoreError> {
        self.check(FaultOp::ReadMeta)?;
        self.inner.streams().await
    }
    async fn prune(&self, stream: &Cid, entries: &[(u64, Cid)]) -> Result<PruneStats, StoreError> {
        self.check(FaultOp::Prune)?;
        self.inner.prune(stream, entries).await
    }
    async fn append_skeleton(&self, stream: &Cid, entries: &[LoggedEvent], heads: &[Cid]) -> Result<(), StoreError> {
        self.check(FaultOp::Prune)?;
        self.inner.append_skeleton(stream, entries, heads).await
    }
    async fn put_stream_record(&self, stream: &Cid, record: &[u8]) -> Result<(), StoreError> {
        self.check(FaultOp::Prune)?;
        self.inner.put_stream_record(stream, record).await
    }
    async fn stream_record(&self, stream: &Cid) -> Result<Option<Vec<u8>>, StoreError> {
        self.check(FaultOp::ReadMeta)?;
        self.inner.stream_record(stream).await
    }
}
