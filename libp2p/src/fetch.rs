//! Blocks by CID from the peers: [`StreamFetcher`], the core's
//! [`Fetcher`] over [`SyncRequest::Get`].
//!
//! A fetch asks the connected peers that follow the stream (then any other
//! connected peer), one at a time, at most [`MAX_GET_CIDS`] CIDs per
//! request, for the CIDs still missing. Every block that comes back is
//! verified against the CID it was asked by ([`Block::new`]); a block that
//! does not match is dropped and counted. What no peer has is `None`.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use async_trait::async_trait;
use libp2p::PeerId;
use merkle_clock::sync::transport::{Fetcher, TransportError};
use merkle_clock::{Block, Cid, StoreError, StreamStore};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::codec::{MAX_GET_CIDS, SyncRequest, SyncResponse};
use crate::handle::{Command, NodeError, NodeHandle};
use crate::node::Node;
use crate::sessions::Pending;

/// A [`Fetcher`] of one stream's blocks from the node's peers, from
/// [`NodeHandle::fetcher`]. Errors: [`TransportError::Closed`] when the node
/// stopped, [`TransportError::Backend`] when it has no such stream.
pub struct StreamFetcher<S: ?Sized + StreamStore + 'static> {
    handle: NodeHandle<S>,
    stream: Cid,
}

impl<S: ?Sized + StreamStore + 'static> fmt::Debug for StreamFetcher<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamFetcher").field("peer", &self.handle.peer_id).field("stream", &self.stream).finish()
    }
}

impl<S: ?Sized + StreamStore + 'static> StreamFetcher<S> {
    pub(crate) fn new(handle: NodeHandle<S>, stream: Cid) -> Self {
        StreamFetcher { handle, stream }
    }
}

#[async_trait]
impl<S: ?Sized + StreamStore + 'static> Fetcher for StreamFetcher<S> {
    async fn fetch(&self, cids: &[Cid]) -> Result<Vec<Option<Block>>, TransportError> {
        let (stream, cids) = (self.stream, cids.to_vec());
        match self.handle.call(|tx| Command::Fetch(stream, cids, tx)).await {
            Ok(Ok(blocks)) => Ok(blocks),
            Err(NodeError::Stopped) | Ok(Err(NodeError::Stopped)) => Err(TransportError::Closed),
            Ok(Err(e)) | Err(e) => Err(TransportError::Backend(Box::new(e))),
        }
    }
}

/// A fetch under way in the node.
pub(crate) struct FetchJob {
    stream: Cid,
    cids: Vec<Cid>,
    found: Vec<Option<Block>>,
    /// The peers still to ask, the current one first.
    peers: VecDeque<PeerId>,
    /// Which CIDs the current peer was asked (and answered or is answering).
    asked: Vec<bool>,
    reply: oneshot::Sender<Result<Vec<Option<Block>>, NodeError>>,
}

/// The fetches under way, by job number.
#[derive(Default)]
pub(crate) struct Fetches {
    next: u64,
    jobs: HashMap<u64, FetchJob>,
}

impl<S: ?Sized + StreamStore + 'static> Node<S> {
    /// Starts a fetch (answered at once when there is nothing to ask).
    pub(crate) fn fetch(
        &mut self,
        stream: Cid,
        cids: Vec<Cid>,
        reply: oneshot::Sender<Result<Vec<Option<Block>>, NodeError>>,
    ) {
        let Some(slot) = self.streams.get(&stream) else {
            let _ = reply.send(Err(NodeError::UnknownStream(stream)));
            return;
        };
        // Peers that follow the stream first, then the other connected ones.
        let mut peers: VecDeque<PeerId> = slot.sessions.peers().copied().collect();
        peers.extend(self.connected.iter().filter(|p| !slot.sessions.contains(p)));
        let n = cids.len();
        let id = self.fetches.next;
        self.fetches.next += 1;
        let job = FetchJob { stream, cids, found: vec![None; n], peers, asked: vec![false; n], reply };
        self.fetches.jobs.insert(id, job);
        self.fetch_step(id);
    }

    /// Sends the job's next request, or finishes it.
    fn fetch_step(&mut self, id: u64) {
        loop {
            let Some(job) = self.fetches.jobs.get_mut(&id) else { return };
            let Some(&peer) = job.peers.front() else {
                let job = self.fetches.jobs.remove(&id).expect("present");
                let _ = job.reply.send(Ok(job.found));
                return;
            };
            let ask: Vec<usize> =
                (0..job.cids.len()).filter(|&i| job.found[i].is_none() && !job.asked[i]).take(MAX_GET_CIDS).collect();
            if ask.is_empty() || !self.connected.contains(&peer) {
                job.peers.pop_front();
                job.asked.iter_mut().for_each(|a| *a = false);
                continue;
            }
            for &i in &ask {
                job.asked[i] = true;
            }
            let request = SyncRequest::Get { stream: job.stream, cids: ask.iter().map(|&i| job.cids[i]).collect() };
            self.stats.fetch_requests_sent += 1;
            let rid = self.swarm.behaviour_mut().sync.send_request(&peer, request);
            self.requests.insert(rid, Pending::Fetch(id, ask));
            return;
        }
    }

    /// The current peer of the job failed it: on to the next.
    pub(crate) fn fetch_next_peer(&mut self, id: u64) {
        if let Some(job) = self.fetches.jobs.get_mut(&id) {
            job.peers.pop_front();
            job.asked.iter_mut().for_each(|a| *a = false);
        }
        self.fetch_step(id);
    }

    /// The answer to one of a job's requests.
    pub(crate) fn on_blocks(&mut self, peer: PeerId, id: u64, asked: Vec<usize>, response: SyncResponse) {
        let SyncResponse::Blocks(blocks) = response else {
            debug!(%peer, "the peer did not answer a block fetch with blocks");
            return self.fetch_next_peer(id);
        };
        let Some(job) = self.fetches.jobs.get_mut(&id) else { return };
        if blocks.is_empty() && !asked.is_empty() || blocks.len() > asked.len() {
            // Nothing answered (or nonsense): this peer is done.
            return self.fetch_next_peer(id);
        }
        for (k, &i) in asked.iter().enumerate() {
            match blocks.get(k) {
                // Not answered (the response was full): ask again.
                None => job.asked[i] = false,
                Some(None) => {}
                Some(Some(bytes)) => match Block::new(job.cids[i], bytes.clone()) {
                    Ok(block) => {
                        self.stats.blocks_fetched += 1;
                        job.found[i] = Some(block);
                    }
                    Err(e) => {
                        self.stats.blocks_fetched_bad += 1;
                        warn!(%peer, cid = %job.cids[i], "fetched block does not match its CID: {e}; dropped");
                    }
                },
            }
        }
        self.fetch_step(id);
    }

    /// Answers a [`SyncRequest::Get`] from the stream's replica, within
    /// `SyncLimits::max_message_bytes` of blocks.
    pub(crate) async fn serve_get(&mut self, peer: PeerId, stream: Cid, cids: &[Cid]) -> SyncResponse {
        self.stats.fetch_requests_served += 1;
        let Some(slot) = self.streams.get(&stream) else { return SyncResponse::UnknownStream };
        let budget = self.config.sync_limits.max_message_bytes;
        let mut size = 0usize;
        let mut out = Vec::with_capacity(cids.len());
        for cid in cids {
            match slot.replica.get(cid).await {
                Ok(Some(block)) => {
                    let bytes = block.bytes();
                    size = size.saturating_add(bytes.len());
                    if size > budget {
                        break;
                    }
                    out.push(Some(bytes.to_vec()));
                }
                // A pruned block is not held: the peer looks elsewhere.
                Ok(None) | Err(StoreError::Pruned { .. }) => out.push(None),
                Err(e) => {
                    warn!(%peer, %stream, "reading a block to serve failed: {e}");
                    break;
                }
            }
        }
        SyncResponse::Blocks(out)
    }
}
