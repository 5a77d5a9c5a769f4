//! The application's side: [`NodeHandle`], the commands it sends the node's
//! task, and what comes back ([`Update`], [`Stats`], [`NodeError`]).

use std::fmt;
use std::sync::Arc;

use libp2p::{Multiaddr, PeerId};
use merkle_clock::replica::AppendError;
use merkle_clock::sync::SessionStats;
use merkle_clock::sync::transport::Announcement as TransportAnnouncement;
use merkle_clock::{Block, Cid, Ipld, Replica, StoreError, StreamStore};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::bitswap::{BitswapFetcher, BitswapStats};
use crate::fetch::StreamFetcher;
use crate::gossip::NodeBroadcaster;

/// A node operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The node's task has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// The node has no replica of this stream.
    #[error("{0}: no such stream on this node")]
    UnknownStream(Cid),
    /// The node already has a replica of this stream.
    #[error("{0}: the node already has this stream")]
    DuplicateStream(Cid),
    /// The payload could not be turned into IPLD.
    #[error("the payload is not IPLD: {0}")]
    Payload(String),
    /// The replica refused the append.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Setting up the transport, the behaviour or a listener failed.
    #[error("network setup failed: {0}")]
    Setup(String),
    /// Dialing failed at once (a bad address).
    #[error("dial failed: {0}")]
    Dial(String),
    /// An announcement could not be published (no peer follows the topic,
    /// or it is larger than a gossip message).
    #[error("announcement not published: {0}")]
    Publish(String),
}

/// Where new events came from, in an [`Update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This node appended them.
    Local,
    /// They arrived in a sync message from this peer.
    Peer(PeerId),
}

/// A stream gained events. Read them with [`NodeHandle::read`] and
/// [`Replica::events_since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The stream.
    pub stream: Cid,
    /// Where the events came from.
    pub source: Source,
    /// How many events joined the DAG.
    pub added: usize,
}

/// The node's counters, from [`NodeHandle::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Announcements published (the node's own and those of
    /// [`NodeHandle::broadcaster`]s).
    pub announcements_sent: u64,
    /// Well-formed announcements received.
    pub announcements_received: u64,
    /// Bytes of those announcements (gossipsub's copies of one it already
    /// delivered, its envelope and its control messages are not in it:
    /// they are in `bytes_read` only).
    pub announcement_bytes_received: u64,
    /// Gossip messages that did not decode or named the wrong stream.
    pub gossip_garbage: u64,
    /// Requests carrying a sync message sent.
    pub requests_sent: u64,
    /// Responses to those received (whatever they said).
    pub responses_received: u64,
    /// Requests carrying a sync message answered.
    pub requests_served: u64,
    /// Sync messages made while a request to the same peer on the same
    /// stream was outstanding: they waited for its response.
    pub messages_queued: u64,
    /// Times a (peer, stream) queue was full
    /// ([`NodeConfig::max_queued_messages`](crate::NodeConfig::max_queued_messages)):
    /// the queue was dropped and the peer's session restarted.
    pub queue_overflows: u64,
    /// Sync messages or responses from peers that did not decode or were
    /// refused by the sync protocol (a request is answered `Refused`).
    pub sync_garbage: u64,
    /// Encoded sync message bytes sent (in requests and responses).
    pub sync_bytes_sent: u64,
    /// Encoded sync message bytes received (in requests and responses).
    pub sync_bytes_received: u64,
    /// Bytes of the largest sync message sent: a long catch-up goes in
    /// parts of at most [`SyncLimits::max_message_bytes`](crate::SyncLimits::max_message_bytes).
    pub largest_sync_message: u64,
    /// The session drivers' counters, summed over the streams: messages
    /// made and taken, restarts by cause (timeouts, reconnects, failures,
    /// caps, anti-entropy).
    pub sessions: SessionStats,
    /// Events added to the DAG from peers.
    pub events_received: u64,
    /// Of those, events that came inside announcements (no sync session).
    pub events_from_announcements: u64,
    /// Pulls started: fresh sessions with a peer whose announcement listed
    /// heads missing here (each head pulled from one peer at a time).
    pub pulls: u64,
    /// Bytes read from every connection (TCP payload: encryption, framing,
    /// gossip and sync together).
    pub bytes_read: u64,
    /// Bytes written to every connection.
    pub bytes_written: u64,
    /// Blocks from peers that the replica held already (the cost of syncing
    /// with several peers at once).
    pub blocks_duplicate: u64,
    /// Blocks from peers that the replica refused (not canonical events of
    /// the stream, a wrong height, a bad signature, an author who may not
    /// write, a validator said no): the invalid events each peer is counted
    /// for ([`NodeConfig::max_invalid_events`](crate::NodeConfig::max_invalid_events)).
    pub blocks_rejected: u64,
    /// Peers disconnected and banned for sending too many invalid events
    /// ([`NodeConfig::max_invalid_events`](crate::NodeConfig::max_invalid_events)).
    pub peers_banned: u64,
    /// Connections with a banned peer closed as they opened
    /// ([`NodeConfig::ban_for`](crate::NodeConfig::ban_for)).
    pub banned_refusals: u64,
    /// Block fetch requests sent ([`NodeHandle::fetcher`]).
    pub fetch_requests_sent: u64,
    /// Block fetch requests answered.
    pub fetch_requests_served: u64,
    /// Blocks fetched from peers, verified against their CIDs.
    pub blocks_fetched: u64,
    /// Fetched blocks that did not match the CID asked (dropped).
    pub blocks_fetched_bad: u64,
    /// Connections closed at once because the node was offline
    /// ([`NodeHandle::set_offline`]), and requests or gossip refused from
    /// peers it is not connected to.
    pub offline_refusals: u64,
    /// Outbound request failures reported by request-response (timeouts,
    /// closed connections, unsupported protocols).
    pub outbound_failures: u64,
    /// Inbound request failures reported by request-response (frames that
    /// did not parse, closed connections).
    pub inbound_failures: u64,
}

impl Stats {
    /// A sync message of `bytes` went out (in a request or a response).
    pub(crate) fn note_sync_sent(&mut self, bytes: usize) {
        self.sync_bytes_sent += bytes as u64;
        self.largest_sync_message = self.largest_sync_message.max(bytes as u64);
    }
}

pub(crate) type ReadJob<S> = Box<dyn FnOnce(Option<&Replica<S>>) + Send>;

/// An announcement received, for [`NodeBroadcaster`]s: the stream and what
/// the core's transport trait says of it.
pub(crate) type StreamAnnouncement = (Cid, TransportAnnouncement);

pub(crate) enum Command<S: ?Sized + StreamStore> {
    AddStream(Box<Replica<S>>, oneshot::Sender<Result<(), NodeError>>),
    Append(Cid, Vec<Ipld>, oneshot::Sender<Result<Vec<Cid>, NodeError>>),
    Read(Cid, ReadJob<S>),
    Get(Cid, Vec<Cid>, oneshot::Sender<Result<Vec<Option<Block>>, NodeError>>),
    Fetch(Cid, Vec<Cid>, oneshot::Sender<Result<Vec<Option<Block>>, NodeError>>),
    Announce(Cid, Vec<Cid>, Vec<Vec<u8>>, oneshot::Sender<Result<(), NodeError>>),
    Dial(Multiaddr, oneshot::Sender<Result<(), NodeError>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Peers(oneshot::Sender<Vec<PeerId>>),
    SetOffline(bool, oneshot::Sender<()>),
    Stats(oneshot::Sender<Stats>),
    Unavailable(Cid, oneshot::Sender<Result<Vec<Cid>, NodeError>>),
    Shutdown(oneshot::Sender<Vec<Replica<S>>>),
}

/// Controls a running [`Node`](crate::Node). Cheap to clone; every clone
/// drives the same node. The node stops on [`NodeHandle::shutdown`] or when
/// every handle is dropped.
pub struct NodeHandle<S: ?Sized + StreamStore + 'static> {
    pub(crate) commands: mpsc::Sender<Command<S>>,
    pub(crate) updates: broadcast::Sender<Update>,
    pub(crate) announcements: broadcast::Sender<StreamAnnouncement>,
    pub(crate) peer_id: PeerId,
    pub(crate) bitswap: Option<Arc<crate::bitswap::Shared>>,
}

impl<S: ?Sized + StreamStore + 'static> Clone for NodeHandle<S> {
    fn clone(&self) -> Self {
        NodeHandle {
            commands: self.commands.clone(),
            updates: self.updates.clone(),
            announcements: self.announcements.clone(),
            peer_id: self.peer_id,
            bitswap: self.bitswap.clone(),
        }
    }
}

impl<S: ?Sized + StreamStore + 'static> fmt::Debug for NodeHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeHandle").field("peer_id", &self.peer_id).finish()
    }
}

impl<S: ?Sized + StreamStore + 'static> NodeHandle<S> {
    pub(crate) async fn call<R>(&self, make: impl FnOnce(oneshot::Sender<R>) -> Command<S>) -> Result<R, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Starts replicating a stream: subscribes to its topic, announces its
    /// heads and syncs with the peers that follow it.
    ///
    /// # Errors
    /// [`NodeError::DuplicateStream`] if the node has it already.
    pub async fn add_stream(&self, replica: Replica<S>) -> Result<(), NodeError> {
        self.call(|tx| Command::AddStream(Box::new(replica), tx)).await?
    }

    /// Appends one event to a stream, pushes it to the stream's peers and
    /// announces the new head.
    ///
    /// # Errors
    /// [`NodeError::UnknownStream`], [`NodeError::Payload`], or what the
    /// replica's append returned.
    pub async fn append<P: Serialize + ?Sized>(&self, stream: Cid, payload: &P) -> Result<Cid, NodeError> {
        let ipld = ipld_core::serde::to_ipld(payload).map_err(|e| NodeError::Payload(e.to_string()))?;
        let cids = self.call(|tx| Command::Append(stream, vec![ipld], tx)).await??;
        cids.into_iter().next().ok_or(NodeError::Payload("nothing appended".into()))
    }

    /// Appends several events in one store commit (a chain).
    ///
    /// # Errors
    /// As [`NodeHandle::append`].
    pub async fn append_many<P: Serialize>(
        &self,
        stream: Cid,
        payloads: impl IntoIterator<Item = P>,
    ) -> Result<Vec<Cid>, NodeError> {
        let ipld = payloads
            .into_iter()
            .map(|p| ipld_core::serde::to_ipld(p).map_err(|e| NodeError::Payload(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        self.call(|tx| Command::Append(stream, ipld, tx)).await?
    }

    /// Runs `f` on the stream's replica inside the node's task and returns
    /// its result. Keep `f` short: the node does nothing else meanwhile.
    ///
    /// # Errors
    /// [`NodeError::UnknownStream`], [`NodeError::Stopped`].
    pub async fn read<R: Send + 'static>(
        &self,
        stream: Cid,
        f: impl FnOnce(&Replica<S>) -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        let (tx, rx) = oneshot::channel();
        let job: ReadJob<S> = Box::new(move |r| {
            let _ = tx.send(r.map(f));
        });
        self.commands.send(Command::Read(stream, job)).await.map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)?.ok_or(NodeError::UnknownStream(stream))
    }

    /// The stream's heads, ascending.
    ///
    /// # Errors
    /// As [`NodeHandle::read`].
    pub async fn heads(&self, stream: Cid) -> Result<Vec<Cid>, NodeError> {
        self.read(stream, |r| r.heads()).await
    }

    /// The stream's number of events, the genesis included.
    ///
    /// # Errors
    /// As [`NodeHandle::read`].
    pub async fn len(&self, stream: Cid) -> Result<usize, NodeError> {
        self.read(stream, |r| r.len()).await
    }

    /// The blocks of events of the stream held by this node (`None` for
    /// events it lacks). To ask the peers, see [`NodeHandle::fetcher`].
    ///
    /// # Errors
    /// [`NodeError::UnknownStream`], [`NodeError::Store`].
    pub async fn get(&self, stream: Cid, cids: Vec<Cid>) -> Result<Vec<Option<Block>>, NodeError> {
        self.call(|tx| Command::Get(stream, cids, tx)).await?
    }

    /// A [`Fetcher`](merkle_clock::sync::transport::Fetcher) of the stream's
    /// blocks from the connected peers that follow it (see [`StreamFetcher`]).
    pub fn fetcher(&self, stream: Cid) -> StreamFetcher<S> {
        StreamFetcher::new(self.clone(), stream)
    }

    /// A [`Fetcher`](merkle_clock::sync::transport::Fetcher) of blocks by CID
    /// from every connected peer that speaks Bitswap (see
    /// [`BitswapFetcher`]); `None` when
    /// [`NodeConfig::bitswap`](crate::NodeConfig::bitswap) is off.
    pub fn bitswap_fetcher(&self) -> Option<BitswapFetcher> {
        self.bitswap.as_ref().map(|shared| BitswapFetcher { shared: Arc::clone(shared) })
    }

    /// The node's Bitswap counters; `None` when Bitswap is off.
    pub fn bitswap_stats(&self) -> Option<BitswapStats> {
        self.bitswap.as_ref().map(|s| s.stats())
    }

    /// A [`Broadcaster`](merkle_clock::sync::transport::Broadcaster) on the
    /// stream's gossipsub topic (see [`NodeBroadcaster`]). It receives the
    /// announcements that arrive from now on.
    pub fn broadcaster(&self, stream: Cid) -> NodeBroadcaster<S> {
        NodeBroadcaster::new(self.clone(), stream, self.announcements.subscribe())
    }

    /// Dials an address now and again every
    /// [`NodeConfig::redial_interval`](crate::NodeConfig::redial_interval)
    /// whenever no connection to it is open.
    ///
    /// # Errors
    /// [`NodeError::Dial`] when the address cannot be dialed at all.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NodeError> {
        self.call(|tx| Command::Dial(addr, tx)).await?
    }

    /// The first address the node listens on (waits until it has one).
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn listen_addr(&self) -> Result<Multiaddr, NodeError> {
        self.listen_addrs().await?.into_iter().next().ok_or(NodeError::Stopped)
    }

    /// Every address the node listens on (waits until it has one).
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NodeError> {
        self.call(Command::ListenAddrs).await
    }

    /// The peers the node is connected to.
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn peers(&self) -> Result<Vec<PeerId>, NodeError> {
        self.call(Command::Peers).await
    }

    /// Cuts the node off (`true`): closes every connection, refuses new
    /// ones and stops dialing; or lets it back (`false`) and dials again.
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn set_offline(&self, offline: bool) -> Result<(), NodeError> {
        self.call(|tx| Command::SetOffline(offline, tx)).await
    }

    /// The events the stream's replica lacks that no connected peer can
    /// supply: every peer that follows the stream answered the want with
    /// `pruned` (it holds them only pruned). Nothing will bring them from
    /// these peers: fetch them elsewhere (a gateway, another peer) or start
    /// from a checkpoint. Empty with no peer, or while some peer may still
    /// send them. Ascending.
    ///
    /// # Errors
    /// [`NodeError::UnknownStream`], [`NodeError::Stopped`].
    pub async fn unavailable(&self, stream: Cid) -> Result<Vec<Cid>, NodeError> {
        self.call(|tx| Command::Unavailable(stream, tx)).await?
    }

    /// The node's counters.
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn stats(&self) -> Result<Stats, NodeError> {
        self.call(Command::Stats).await
    }

    /// Updates for every stream from now on. A receiver that lags skips
    /// updates ([`broadcast::error::RecvError::Lagged`]); the replicas stay
    /// the source of truth.
    pub fn updates(&self) -> broadcast::Receiver<Update> {
        self.updates.subscribe()
    }

    /// Stops the node: closes the swarm and returns the replicas (drop them
    /// to close their stores).
    ///
    /// # Errors
    /// [`NodeError::Stopped`] if it had stopped already.
    pub async fn shutdown(&self) -> Result<Vec<Replica<S>>, NodeError> {
        self.call(Command::Shutdown).await
    }
}
