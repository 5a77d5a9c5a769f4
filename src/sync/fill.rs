//! A replica's blocks from any [`Fetcher`] (bitswap, trustless gateways, a
//! node's peers): [`fill`] fetches what a replica lacks, round after round;
//! [`Fetched`] reads a fetcher as a read-only [`Blockstore`], for what takes
//! one as its source ([`Replica::bootstrap`], [`Replica::admit_late`]).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::transport::{Fetcher, TransportError};
use crate::{Block, Blockstore, Cid, Replica, StoreError, StreamStore};

/// What [`fill`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FillReport {
    /// Calls to the fetcher (each one round of wants).
    pub rounds: u64,
    /// Blocks the fetcher returned (verified against their CIDs).
    pub blocks: u64,
    /// Events that joined the DAG.
    pub accepted: u64,
    /// CIDs still missing when no peer had them.
    pub missing: Vec<Cid>,
}

/// Filling a replica failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FillError {
    /// The fetcher failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The replica's store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Fetches `heads` (those the replica lacks) and then what the replica
/// reports [`missing`](Replica::missing), round after round, until nothing
/// is missing or a round brings nothing new. Every block comes from the
/// fetcher already verified against its CID, and the replica judges it
/// like any other block (a refused block is not asked again).
///
/// One round per level of missing history: a chain of `n` events costs `n`
/// rounds (each a round trip), as fetching a DAG by CID must. The sync
/// protocol ([`Sessions`](super::Sessions)) does better between
/// merkle-clock replicas; this is for peers that only serve blocks (IPFS
/// nodes, gateways).
///
/// A replica started from a checkpoint asks only for what is not below the
/// cut ([`Replica::missing`]); [`Replica::admit_late`] looks the rest up in
/// the checkpoint's skeleton, after which another `fill` fetches what that
/// found outside it.
///
/// # Errors
/// [`FillError`] when the fetcher or the store fails; what was accepted
/// before stays.
pub async fn fill<S: ?Sized + StreamStore>(
    replica: &mut Replica<S>,
    fetcher: &dyn Fetcher,
    heads: &[Cid],
) -> Result<FillReport, FillError> {
    let mut report = FillReport::default();
    let mut want: Vec<Cid> = heads.iter().filter(|c| !replica.contains(c)).copied().collect();
    while !want.is_empty() {
        report.rounds += 1;
        let got = fetcher.fetch(&want).await?;
        let blocks: Vec<_> = got.into_iter().flatten().collect();
        if blocks.is_empty() {
            report.missing = want;
            break;
        }
        report.blocks += blocks.len() as u64;
        let ingested = replica.ingest_many(blocks).await?;
        report.accepted += ingested.accepted.len() as u64;
        let next = replica.missing();
        if next == want {
            report.missing = next;
            break;
        }
        want = next;
    }
    Ok(report)
}

/// A [`Fetcher`] read as a [`Blockstore`]: `get` fetches the block (verified
/// against its CID by the fetcher), `get_many` fetches a batch in one call;
/// `put` is [`StoreError::Unsupported`]. Fetcher errors become
/// [`StoreError::Backend`].
///
/// It keeps every block it fetched until it is dropped, and reads a block
/// again from there: a block never changes under its CID, and a start from
/// a checkpoint reads some twice (the checkpoint and its flagged tree, to
/// find the genesis, then again in [`Replica::bootstrap`]; the same
/// skeleton parts in each round of [`Replica::admit_late`]). A block no one
/// had is asked for again next time. Make one per task, not one for a
/// node's lifetime: what it holds is what that task read.
///
/// ```
/// use std::sync::Arc;
/// use merkle_clock::{Blockstore, Event, MemoryBlockstore};
/// use merkle_clock::sync::fill::Fetched;
/// use merkle_clock::sync::transport::MemoryHub;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> { futures::executor::block_on(async {
/// let there = Arc::new(MemoryBlockstore::new());
/// let block = Event::genesis("notes").encode()?;
/// there.put(block.clone()).await?;
/// let hub = MemoryHub::new();
/// let _server = hub.fetcher("there", there.clone()); // serves `there`'s blocks
/// let fetcher = hub.fetcher("here", Arc::new(MemoryBlockstore::new()));
/// let source = Fetched::new(&fetcher);
/// assert_eq!(source.get(block.cid()).await?, Some(block.clone()));
/// assert_eq!(source.held(), 1); // a second `get` asks no one
/// # Ok(()) }) }
/// ```
pub struct Fetched<'a, F: ?Sized + Fetcher> {
    fetcher: &'a F,
    /// Every block fetched so far, by CID.
    held: Mutex<HashMap<Cid, Block>>,
}

impl<'a, F: ?Sized + Fetcher> Fetched<'a, F> {
    /// Reads blocks from `fetcher`.
    pub fn new(fetcher: &'a F) -> Self {
        Fetched { fetcher, held: Mutex::new(HashMap::new()) }
    }

    /// How many blocks it holds (every distinct block it fetched).
    pub fn held(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Cid, Block>> {
        // Each use is one lookup or insert: a panic cannot leave it half-updated.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<F: ?Sized + Fetcher> std::fmt::Debug for Fetched<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched").field("held", &self.held()).finish()
    }
}

#[async_trait]
impl<F: ?Sized + Fetcher> Blockstore for Fetched<'_, F> {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        Ok(self.get_many(std::slice::from_ref(cid)).await?.pop().flatten())
    }

    async fn put(&self, _block: Block) -> Result<(), StoreError> {
        Err(StoreError::Unsupported { operation: "put (a fetcher is read-only)" })
    }

    async fn get_many(&self, cids: &[Cid]) -> Result<Vec<Option<Block>>, StoreError> {
        let mut out: Vec<Option<Block>> = {
            let held = self.lock();
            cids.iter().map(|c| held.get(c).cloned()).collect()
        };
        let asked: Vec<Cid> = cids.iter().zip(&out).filter(|(_, b)| b.is_none()).map(|(c, _)| *c).collect();
        if asked.is_empty() {
            return Ok(out);
        }
        let got = self.fetcher.fetch(&asked).await.map_err(StoreError::backend)?;
        if got.len() != asked.len() {
            return Err(StoreError::backend(format!("the fetcher answered {} of {} CIDs", got.len(), asked.len())));
        }
        let mut held = self.lock();
        let mut got = got.into_iter();
        for slot in out.iter_mut().filter(|b| b.is_none()) {
            *slot = got.next().flatten();
            if let Some(b) = slot {
                held.insert(*b.cid(), b.clone());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sync::transport::{MemoryFetcher, MemoryHub};
    use crate::{Event, MemoryBlockstore};

    /// A fetcher that notes every CID it is asked for.
    struct Noting {
        inner: MemoryFetcher,
        asked: Mutex<Vec<Cid>>,
    }

    #[async_trait]
    impl Fetcher for Noting {
        async fn fetch(&self, cids: &[Cid]) -> Result<Vec<Option<Block>>, TransportError> {
            self.asked.lock().expect("not poisoned").extend_from_slice(cids);
            self.inner.fetch(cids).await
        }
    }

    #[test]
    fn fetched_asks_once_for_a_block_it_got_and_again_for_one_nobody_had() -> Result<(), Box<dyn std::error::Error>> {
        futures::executor::block_on(async {
            let there = Arc::new(MemoryBlockstore::new());
            let a = Event::genesis("a").encode()?;
            let b = Event::genesis("b").encode()?;
            let nowhere = *Event::genesis("nowhere").encode()?.cid();
            there.put(a.clone()).await?;
            there.put(b.clone()).await?;
            let hub = MemoryHub::new();
            let _server = hub.fetcher("there", there);
            let fetcher =
                Noting { inner: hub.fetcher("here", Arc::new(MemoryBlockstore::new())), asked: Mutex::default() };
            let source = Fetched::new(&fetcher);
            let asked = || fetcher.asked.lock().expect("not poisoned").clone();

            assert_eq!(source.get(a.cid()).await?, Some(a.clone()));
            assert_eq!(source.get(a.cid()).await?, Some(a.clone()));
            assert_eq!(asked(), vec![*a.cid()], "the second get is answered from what it holds");

            let got = source.get_many(&[*a.cid(), nowhere, *b.cid()]).await?;
            assert_eq!(got, vec![Some(a.clone()), None, Some(b.clone())], "answers in the order asked");
            assert_eq!(asked(), vec![*a.cid(), nowhere, *b.cid()], "only what it did not hold is asked");

            assert_eq!(source.get(&nowhere).await?, None);
            assert_eq!(asked().last(), Some(&nowhere), "a block nobody had is asked for again");
            assert_eq!(source.held(), 2);
            Ok(())
        })
    }
}
