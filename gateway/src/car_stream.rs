//! A CAR of an event and its ancestors, written as the store is walked.
//!
//! The walk is depth-first from the requested event along parent links,
//! each block written the first time it is reached (`order=dfs; dups=n`):
//! an explicit stack, never recursion, and a set of the digests already
//! written. What it holds is the stack (at most one entry per parent link
//! still to visit) and 32 bytes per block written; blocks themselves go out
//! in chunks of [`GatewayConfig::car_chunk_bytes`](crate::GatewayConfig)
//! through a bounded channel, so a 100,000-event snapshot never sits in
//! memory. The order is deterministic: an event's parents are visited in
//! the order the event lists them (ascending CID bytes), so the same event
//! always gives the same bytes.

use std::collections::HashSet;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use merkle_clock::car::CarWriter;
use merkle_clock::{Block, Blockstore, Cid, LoggedEvent};
use tokio::sync::mpsc;

use crate::request::DagScope;

/// The CAR writer's output: a buffer the walk drains into the channel.
#[derive(Clone, Default)]
struct Spool(Arc<Mutex<Vec<u8>>>);

impl Spool {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The parents of a stored block: an event's parent links, or none for a
/// block that is not an event (it is a leaf of the walk).
pub(crate) fn links(block: &Block) -> Vec<Cid> {
    LoggedEvent::from_block(block).map(|e| e.parents).unwrap_or_default()
}

/// A key for the set of blocks written: the 32-byte digest (every parent
/// link is a BLAKE3 digest), or a hash of the whole CID for a root of
/// another shape (only a root can be: it is never anyone's parent, and
/// the fetcher compares whole CIDs where it matters).
pub(crate) fn key(cid: &Cid) -> [u8; 32] {
    cid.hash().digest().try_into().unwrap_or_else(|_| *blake3::hash(&cid.to_bytes()).as_bytes())
}

/// Writes the CAR of `root` (already read from the store; `None` for an
/// identity CID, which is never written as a block) into `tx`, in chunks of
/// about `chunk` bytes. Stops when the client goes away. A block missing from
/// the store (an ancestor pruned there, below the replica's horizon) is left
/// out and the walk does not go below it: the CAR ends cleanly at the
/// horizon, with every block the store holds above it, and a client that
/// verifies the CAR (as [`GatewayFetcher::car`](crate::GatewayFetcher::car)
/// does) names what it lacks. A store error ends the stream with an error.
pub(crate) async fn stream(
    store: Arc<dyn Blockstore>,
    root_cid: Cid,
    root: Option<Block>,
    scope: DagScope,
    chunk: usize,
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
) {
    if let Err(e) = walk(&store, root_cid, root, scope, chunk, &tx).await {
        tracing::debug!(root = %root_cid, error = %e, "CAR stream ended early");
        // The client may be gone already; then nobody needs to know.
        let _ = tx.send(Err(e)).await;
    }
}

async fn walk(
    store: &Arc<dyn Blockstore>,
    root_cid: Cid,
    root: Option<Block>,
    scope: DagScope,
    chunk: usize,
    tx: &mpsc::Sender<Result<Bytes, io::Error>>,
) -> io::Result<()> {
    let spool = Spool::default();
    let mut car = CarWriter::new(spool.clone(), &[root_cid]).map_err(io::Error::other)?;
    let mut written: HashSet<[u8; 32]> = HashSet::new();
    let mut stack: Vec<Cid> = Vec::new();
    if let Some(root) = root {
        car.write(&root).map_err(io::Error::other)?;
        written.insert(key(&root_cid));
        if scope == DagScope::All {
            stack.extend(links(&root).into_iter().rev());
        }
    }
    while let Some(cid) = stack.pop() {
        let k = key(&cid);
        if written.contains(&k) {
            continue;
        }
        let Some(block) = store.get(&cid).await.map_err(io::Error::other)? else {
            // Pruned here (or never held): the CAR stops at the horizon.
            tracing::debug!(root = %root_cid, %cid, "CAR: an ancestor is not in the store; left out");
            written.insert(k);
            continue;
        };
        car.write(&block).map_err(io::Error::other)?;
        written.insert(k);
        stack.extend(links(&block).into_iter().rev().filter(|p| !written.contains(&key(p))));
        if spool.len() >= chunk && tx.send(Ok(Bytes::from(spool.take()))).await.is_err() {
            return Ok(()); // the client went away
        }
    }
    car.finish().map_err(io::Error::other)?;
    let rest = spool.take();
    if !rest.is_empty() {
        let _ = tx.send(Ok(Bytes::from(rest))).await;
    }
    Ok(())
}
