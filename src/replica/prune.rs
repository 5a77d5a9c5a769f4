//! Pruning: dropping the bytes of old events while the clock stays exact.
//!
//! A pruned event keeps its place in the [`Dag`](crate::Dag) (digest,
//! height, parents) and its log entry in the store, so heads, the total
//! order, ancestry, `compare` and the validation of late events are exactly
//! what they were; only its payload is gone. The replica remembers which
//! events are pruned in a bitset by [`EventId`] (one bit an event), which
//! [`Replica::open`] rebuilds from the log's `pruned` flags.

use std::collections::HashSet;

use ipld_core::cid::Cid;
use thiserror::Error;

use super::Replica;
use crate::dag::EventId;
use crate::store::{StoreError, StreamStore};

/// Which events [`Replica::prune`] drops the bytes of. Whatever the policy,
/// the genesis, the current heads and the membership events (grants and
/// revocations, which judge late events) are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrunePolicy {
    /// Keep the bytes of the newest `n` events of the total order; prune the
    /// others.
    KeepNewest(usize),
    /// Prune everything this event covers: its strict ancestors (a
    /// checkpoint's cut). The event itself is kept.
    Covered(Cid),
}

/// What one [`Replica::prune`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PruneReport {
    /// Events whose bytes this call dropped.
    pub events: u64,
    /// Their bytes, as the store counted them.
    pub bytes: u64,
    /// Events the policy named that were kept anyway: the genesis, a head or
    /// a membership event.
    pub kept: u64,
    /// Events the policy named that were pruned before.
    pub already: u64,
}

/// Why [`Replica::prune`] failed. Nothing was pruned.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PruneError {
    /// [`PrunePolicy::Covered`] names an event this replica does not hold.
    #[error("{cid}: not an event of this stream, so it covers nothing here")]
    UnknownEvent {
        /// The event named.
        cid: Cid,
    },
    /// The store failed, or does not prune ([`StoreError::Unsupported`]).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The pruned events, one bit an [`EventId`].
#[derive(Debug, Default, Clone)]
pub(super) struct PrunedSet {
    words: Vec<u64>,
    count: usize,
}

impl PrunedSet {
    pub(super) fn contains(&self, id: EventId) -> bool {
        let i = id.index();
        self.words.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub(super) fn insert(&mut self, id: EventId) {
        let i = id.index();
        if self.words.len() <= i / 64 {
            self.words.resize(i / 64 + 1, 0);
        }
        let bit = 1 << (i % 64);
        if self.words[i / 64] & bit == 0 {
            self.words[i / 64] |= bit;
            self.count += 1;
        }
    }

    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// The heap bytes it holds.
    pub(super) fn heap_bytes(&self) -> usize {
        self.words.capacity() * 8
    }
}

impl<S: ?Sized + StreamStore> Replica<S> {
    /// Drops the bytes of the events `policy` names, in one atomic store
    /// operation ([`StreamStore::prune`]), keeping each one's skeleton
    /// (digest, height, parents) in the index and the store's log. Heads,
    /// the total order, ancestry, `compare` and the validation of late
    /// events do not change; [`Replica::get`] of a pruned event answers
    /// [`StoreError::Pruned`], and sync no longer offers it (a peer that asks
    /// is told it is pruned). Never pruned: the genesis, the current heads,
    /// the membership events. Pruning again is harmless.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use merkle_clock::{Event, MemoryBlockstore, Replica, ReplicaConfig, StoreError};
    /// use merkle_clock::replica::PrunePolicy;
    /// # futures::executor::block_on(async {
    /// let genesis = Event::genesis("log").encode()?;
    /// let mut r = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
    /// let cids = r.append_many(0..10u32).await?;
    /// let order_before: Vec<_> = r.order().collect();
    /// let report = r.prune(PrunePolicy::KeepNewest(4)).await?;
    /// assert_eq!(report.events, 6); // 11 events: the genesis and the newest 4 stay
    /// assert!(r.is_pruned(&cids[0]));
    /// assert!(matches!(r.get(&cids[0]).await, Err(StoreError::Pruned { .. })));
    /// assert_eq!(r.order().collect::<Vec<_>>(), order_before);
    /// assert_eq!(r.metrics().pruned, 6);
    /// # Ok::<(), merkle_clock::Error>(())
    /// # })?;
    /// # Ok::<(), merkle_clock::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`PruneError::UnknownEvent`] for a [`PrunePolicy::Covered`] event not
    /// in the DAG; [`PruneError::Store`] when the store fails or does not
    /// prune. Nothing is pruned then.
    pub async fn prune(&mut self, policy: PrunePolicy) -> Result<PruneReport, PruneError> {
        let dag = &self.dag;
        let candidates: Vec<EventId> = match &policy {
            PrunePolicy::KeepNewest(n) => {
                let drop = dag.len().saturating_sub(*n);
                dag.order().take(drop).collect()
            }
            PrunePolicy::Covered(cid) => {
                let id = dag.id(cid).ok_or(PruneError::UnknownEvent { cid: *cid })?;
                let genesis = dag.genesis();
                let mut below = dag
                    .difference(std::slice::from_ref(cid), &[genesis])
                    .map_err(|_| StoreError::Corrupt(format!("{cid}: its history walks out of the index")))?;
                below.retain(|b| *b != id);
                below
            }
        };
        let mut protected: HashSet<EventId> = dag.head_ids().into_iter().collect();
        protected.insert(EventId::GENESIS);
        if let Some(index) = &self.members {
            protected.extend(index.op_cids().filter_map(|c| dag.id(c)));
        }
        let mut report = PruneReport::default();
        let mut ids = Vec::with_capacity(candidates.len());
        for id in candidates {
            if protected.contains(&id) {
                report.kept += 1;
            } else if self.pruned.contains(id) {
                report.already += 1;
            } else {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return Ok(report);
        }
        // An event's id is its position in the stream's log: the log and
        // the index are built in the same order, the genesis first.
        let entries: Vec<(u64, Cid)> = ids.iter().map(|id| (id.index() as u64, dag.cid(*id))).collect();
        let stats = self.store.prune(&self.stream, &entries).await?;
        drop(entries);
        for id in ids {
            self.pruned.insert(id);
        }
        report.events = stats.events;
        report.bytes = stats.bytes;
        tracing::debug!(events = report.events, bytes = report.bytes, "pruned");
        Ok(report)
    }

    /// Whether the event is in the DAG with its bytes pruned.
    pub fn is_pruned(&self, cid: &Cid) -> bool {
        self.dag.id(cid).is_some_and(|id| self.pruned.contains(id))
    }

    /// Whether the event of this id has its bytes pruned.
    pub(crate) fn is_pruned_id(&self, id: EventId) -> bool {
        self.pruned.contains(id)
    }

    /// The heap bytes the replica spends on knowing which events are pruned
    /// (one bit an event).
    pub fn pruned_index_bytes(&self) -> usize {
        self.pruned.heap_bytes()
    }
}
