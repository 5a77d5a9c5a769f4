//! [`fill`]: a replica's missing history from any [`Fetcher`].

use merkle_clock::sync::transport::{Fetcher, TransportError};
use merkle_clock::{Cid, Replica, StoreError, StreamStore};

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
/// protocol ([`NodeHandle::add_stream`](crate::NodeHandle::add_stream))
/// does better between merkle-clock nodes; this is for peers that only
/// serve blocks (IPFS nodes, gateways).
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
