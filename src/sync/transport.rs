//! What a network offers beyond the sync sessions, as two small async
//! traits, and an in-memory network for tests and examples.
//!
//! - [`Broadcaster`]: announce heads (and new event blocks) to everyone
//!   following a stream's topic, and receive their announcements. Best
//!   effort: announcements may be lost; sync repairs what they miss.
//! - [`Fetcher`]: plain block-by-CID retrieval, many CIDs at a time (what an
//!   IPFS block exchange such as bitswap offers).
//!
//! Sync sessions themselves need no trait: a transport carries the bytes
//! that the [session driver](super::Sessions) hands it to one peer, and
//! hands it the bytes that arrive. [`MemorySyncChannel`] does that between
//! in-process endpoints; the libp2p adapter does it over request/response
//! streams and implements both traits.
//!
//! The traits are object safe (`Box<dyn Fetcher>`), `Send + Sync`, and say
//! nothing about the wire: adapters carry bytes. [`MemoryHub`] connects any
//! number of in-process endpoints through `futures` channels.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use merkle_clock::{Event, MemoryBlockstore, Replica, ReplicaConfig};
//! use merkle_clock::sync::{SessionConfig, Sessions, transport::{MemoryHub, PeerId}};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> { futures::executor::block_on(async {
//! let genesis = Event::genesis("notes").encode()?;
//! let stream = *genesis.cid();
//! let mut alice = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
//! let mut bob = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
//! alice.append(&"from alice").await?;
//! bob.append(&"from bob").await?;
//!
//! let hub = MemoryHub::new();
//! let (mut alice_net, mut bob_net) = (hub.sync_channel("alice"), hub.sync_channel("bob"));
//! let (mut a, mut b) = (Sessions::new(SessionConfig::default()), Sessions::new(SessionConfig::default()));
//! let now = Duration::ZERO;
//! a.connect(PeerId::from("bob"), now);
//! for out in a.tick(&alice, now).await?.messages {
//!     alice_net.send(&out.peer, &stream, out.message)?;
//! }
//! // Each side answers what arrives until the network is quiet.
//! loop {
//!     let mut quiet = true;
//!     while let Some(m) = bob_net.try_next() {
//!         quiet = false;
//!         if let Some(reply) = b.receive(&mut bob, &m.from, &m.message, now).await?.reply {
//!             bob_net.send(&m.from, &m.stream, reply)?;
//!         }
//!     }
//!     while let Some(m) = alice_net.try_next() {
//!         quiet = false;
//!         if let Some(reply) = a.receive(&mut alice, &m.from, &m.message, now).await?.reply {
//!             alice_net.send(&m.from, &m.stream, reply)?;
//!         }
//!     }
//!     if quiet { break; }
//! }
//! assert_eq!(alice.heads(), bob.heads());
//! assert!(a.settled(&alice, &PeerId::from("bob")) && b.settled(&bob, &PeerId::from("alice")));
//! # Ok(()) }) }
//! ```

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::channel::mpsc;
use ipld_core::cid::Cid;
use thiserror::Error;

use super::SyncError;
use crate::block::Block;
use crate::store::Blockstore;

/// A peer's name on a transport (a libp2p peer id, a URL, ...).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(Arc<str>);

impl PeerId {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for PeerId {
    fn from(s: &str) -> Self {
        PeerId(s.into())
    }
}

impl From<String> for PeerId {
    fn from(s: String) -> Self {
        PeerId(s.into())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.0)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A transport operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The transport was closed (or the peer went away mid-request).
    #[error("transport closed")]
    Closed,
    /// No such peer is reachable.
    #[error("unknown peer {0}")]
    UnknownPeer(PeerId),
    /// The sync protocol failed on a message (it did not decode, the store failed).
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The underlying network failed.
    #[error("transport failed: {0}")]
    Backend(#[source] Box<dyn StdError + Send + Sync>),
}

/// An announcement received from a [`Broadcaster`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// Who announced.
    pub from: PeerId,
    /// Its heads when it announced.
    pub heads: Vec<Cid>,
    /// New event blocks it chose to push along (bytes only; hash them with
    /// [`Block::from_bytes`] and ingest them).
    pub blocks: Vec<Bytes>,
}

/// Announces heads and new events to a stream's topic, and receives the
/// announcements of others. Best effort.
#[async_trait]
pub trait Broadcaster: Send + Sync {
    /// The topic: the stream's genesis CID.
    fn topic(&self) -> &Cid;

    /// Announces our heads, and optionally new event blocks, to every other
    /// subscriber of the topic.
    async fn announce(&self, heads: Vec<Cid>, blocks: Vec<Bytes>) -> Result<(), TransportError>;

    /// The next announcement from another subscriber; `Ok(None)` once the
    /// transport is closed.
    async fn next(&mut self) -> Result<Option<Announcement>, TransportError>;
}

/// A sync message received on a [`MemorySyncChannel`].
#[derive(Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Who sent it.
    pub from: PeerId,
    /// The stream it is about.
    pub stream: Cid,
    /// The encoded message.
    pub message: Vec<u8>,
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("from", &self.from)
            .field("stream", &crate::block::short_cid(&self.stream))
            .field("bytes", &self.message.len())
            .finish()
    }
}

/// Plain block retrieval by CID from whoever has the blocks.
#[async_trait]
pub trait Fetcher: Send + Sync {
    /// One entry per CID, in order: the block, verified against its CID, or
    /// `None` when no one reachable has it.
    async fn fetch(&self, cids: &[Cid]) -> Result<Vec<Option<Block>>, TransportError>;
}

/// An in-process network: every endpoint made from one hub (or its clones)
/// reaches the others. Its `Debug` prints sizes.
#[derive(Clone, Default)]
pub struct MemoryHub {
    inner: Arc<Mutex<Hub>>,
}

#[derive(Default)]
struct Hub {
    next_id: u64,
    topics: HashMap<Cid, Vec<(u64, PeerId, mpsc::UnboundedSender<Announcement>)>>,
    channels: HashMap<PeerId, (u64, mpsc::UnboundedSender<Incoming>)>,
    stores: Vec<(u64, PeerId, Arc<dyn Blockstore>)>,
}

impl fmt::Debug for MemoryHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hub = self.lock();
        f.debug_struct("MemoryHub")
            .field("topics", &hub.topics.len())
            .field("channels", &hub.channels.len())
            .field("stores", &hub.stores.len())
            .finish()
    }
}

impl MemoryHub {
    /// A hub with no endpoints.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Hub> {
        // Every critical section is a few map operations that cannot panic halfway.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Subscribes `peer` to `topic` (a stream's genesis CID).
    pub fn broadcaster(&self, peer: impl Into<PeerId>, topic: Cid) -> MemoryBroadcaster {
        let peer = peer.into();
        let (tx, rx) = mpsc::unbounded();
        let mut hub = self.lock();
        hub.next_id += 1;
        let id = hub.next_id;
        hub.topics.entry(topic).or_default().push((id, peer.clone(), tx));
        MemoryBroadcaster { hub: self.clone(), id, peer, topic, rx }
    }

    /// The sync message endpoint of `peer` (replacing an earlier one of the same name).
    pub fn sync_channel(&self, peer: impl Into<PeerId>) -> MemorySyncChannel {
        let peer = peer.into();
        let (tx, rx) = mpsc::unbounded();
        let mut hub = self.lock();
        hub.next_id += 1;
        let id = hub.next_id;
        hub.channels.insert(peer.clone(), (id, tx));
        MemorySyncChannel { hub: self.clone(), id, peer, rx }
    }

    /// A fetcher for `peer` that serves `store` to the other fetchers and
    /// fetches from theirs.
    pub fn fetcher(&self, peer: impl Into<PeerId>, store: Arc<dyn Blockstore>) -> MemoryFetcher {
        let peer = peer.into();
        let mut hub = self.lock();
        hub.next_id += 1;
        let id = hub.next_id;
        hub.stores.push((id, peer.clone(), store));
        MemoryFetcher { hub: self.clone(), id, peer }
    }
}

/// A [`MemoryHub`] subscription to one topic. Dropping it unsubscribes.
pub struct MemoryBroadcaster {
    hub: MemoryHub,
    id: u64,
    peer: PeerId,
    topic: Cid,
    rx: mpsc::UnboundedReceiver<Announcement>,
}

impl fmt::Debug for MemoryBroadcaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBroadcaster").field("peer", &self.peer).field("topic", &self.topic).finish()
    }
}

#[async_trait]
impl Broadcaster for MemoryBroadcaster {
    fn topic(&self) -> &Cid {
        &self.topic
    }

    async fn announce(&self, heads: Vec<Cid>, blocks: Vec<Bytes>) -> Result<(), TransportError> {
        let hub = self.hub.lock();
        for (id, _, tx) in hub.topics.get(&self.topic).into_iter().flatten() {
            if *id != self.id {
                let a = Announcement { from: self.peer.clone(), heads: heads.clone(), blocks: blocks.clone() };
                // A subscriber that went away just misses it.
                let _ = tx.unbounded_send(a);
            }
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<Announcement>, TransportError> {
        Ok(self.rx.next().await)
    }
}

impl Drop for MemoryBroadcaster {
    fn drop(&mut self) {
        let mut hub = self.hub.lock();
        if let Some(subs) = hub.topics.get_mut(&self.topic) {
            subs.retain(|(id, _, _)| *id != self.id);
        }
    }
}

/// A [`MemoryHub`] endpoint for sync messages: one-way, in order, never
/// lost. Dropping it makes it unreachable.
pub struct MemorySyncChannel {
    hub: MemoryHub,
    id: u64,
    peer: PeerId,
    rx: mpsc::UnboundedReceiver<Incoming>,
}

impl fmt::Debug for MemorySyncChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySyncChannel").field("peer", &self.peer).finish()
    }
}

impl MemorySyncChannel {
    /// Our own name on the hub.
    pub fn local_peer(&self) -> &PeerId {
        &self.peer
    }

    /// Sends an encoded message about `stream` to `peer`.
    ///
    /// # Errors
    /// [`TransportError::UnknownPeer`] when no endpoint has that name;
    /// [`TransportError::Closed`] when it went away.
    pub fn send(&self, peer: &PeerId, stream: &Cid, message: Vec<u8>) -> Result<(), TransportError> {
        let hub = self.hub.lock();
        let (_, to) = hub.channels.get(peer).ok_or_else(|| TransportError::UnknownPeer(peer.clone()))?;
        let m = Incoming { from: self.peer.clone(), stream: *stream, message };
        to.unbounded_send(m).map_err(|_| TransportError::Closed)
    }

    /// The next message, waiting for one; `None` once every sender is gone.
    pub async fn next(&mut self) -> Option<Incoming> {
        self.rx.next().await
    }

    /// The next message if one is waiting.
    pub fn try_next(&mut self) -> Option<Incoming> {
        self.rx.try_recv().ok()
    }
}

impl Drop for MemorySyncChannel {
    fn drop(&mut self) {
        let mut hub = self.hub.lock();
        if hub.channels.get(&self.peer).is_some_and(|(id, _)| *id == self.id) {
            hub.channels.remove(&self.peer);
        }
    }
}

/// A [`MemoryHub`] fetcher: asks every other fetcher's store, in the order
/// they joined. Dropping it stops serving its store.
pub struct MemoryFetcher {
    hub: MemoryHub,
    id: u64,
    peer: PeerId,
}

impl fmt::Debug for MemoryFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryFetcher").field("peer", &self.peer).finish()
    }
}

#[async_trait]
impl Fetcher for MemoryFetcher {
    async fn fetch(&self, cids: &[Cid]) -> Result<Vec<Option<Block>>, TransportError> {
        let others: Vec<Arc<dyn Blockstore>> = {
            let hub = self.hub.lock();
            hub.stores.iter().filter(|(id, _, _)| *id != self.id).map(|(_, _, s)| Arc::clone(s)).collect()
        };
        let mut out: Vec<Option<Block>> = vec![None; cids.len()];
        for store in others {
            let todo: Vec<usize> = (0..cids.len()).filter(|&i| out[i].is_none()).collect();
            if todo.is_empty() {
                break;
            }
            let ask: Vec<Cid> = todo.iter().map(|&i| cids[i]).collect();
            let got = store.get_many(&ask).await.map_err(|e| TransportError::Backend(Box::new(e)))?;
            for (i, block) in todo.into_iter().zip(got) {
                // What comes from the network is checked against the CID it was asked by.
                out[i] = block.and_then(|b| Block::new(cids[i], b.into_parts().1).ok());
            }
        }
        Ok(out)
    }
}

impl Drop for MemoryFetcher {
    fn drop(&mut self) {
        self.hub.lock().stores.retain(|(id, _, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::{Replica, ReplicaConfig};
    use crate::sync::{Bloom, SessionConfig, Sessions};
    use crate::{Event, MemoryBlockstore};
    use futures::executor::block_on;
    use std::time::Duration;

    async fn replica(genesis: &Block) -> Replica<MemoryBlockstore> {
        Replica::create(Arc::new(MemoryBlockstore::new()), genesis, ReplicaConfig::default()).await.unwrap()
    }

    #[test]
    fn broadcaster_reaches_the_others_on_its_topic() {
        block_on(async {
            let hub = MemoryHub::new();
            let g = Event::genesis("t").encode().unwrap();
            let other = Event::genesis("other").encode().unwrap();
            let a: Box<dyn Broadcaster> = Box::new(hub.broadcaster("a", *g.cid()));
            let mut b = hub.broadcaster("b", *g.cid());
            let mut c = hub.broadcaster("c", *other.cid());
            a.announce(vec![*g.cid()], vec![g.bytes().clone()]).await.unwrap();
            let got = b.next().await.unwrap().unwrap();
            assert_eq!(got.from.as_str(), "a");
            assert_eq!(got.heads, vec![*g.cid()]);
            assert_eq!(Block::from_bytes(got.blocks[0].clone()), g);
            // Not to another topic, not back to the sender.
            c.announce(vec![], vec![]).await.unwrap();
            drop(a);
            let hub2 = hub.clone();
            let d = hub2.broadcaster("d", *g.cid());
            d.announce(vec![*other.cid()], vec![]).await.unwrap();
            assert_eq!(b.next().await.unwrap().unwrap().from.as_str(), "d");
            assert!(futures::FutureExt::now_or_never(c.next()).is_none());
        });
    }

    #[test]
    fn sync_channel_carries_a_whole_sync_through_the_drivers() {
        block_on(async {
            let g = Event::genesis("chan").encode().unwrap();
            let (mut a, mut b) = (replica(&g).await, replica(&g).await);
            for i in 0..20u32 {
                a.append(&i).await.unwrap();
                b.append(&(i + 100)).await.unwrap();
            }
            let hub = MemoryHub::new();
            let (mut net_a, mut net_b) = (hub.sync_channel("a"), hub.sync_channel("b"));
            let config = SessionConfig::default();
            let mut da = Sessions::with_seed(Bloom::default(), config.clone(), 1);
            let mut db = Sessions::with_seed(Bloom::default(), config, 2);
            let now = Duration::ZERO;
            da.connect(PeerId::from("b"), now);
            for out in da.tick(&a, now).await.unwrap().messages {
                net_a.send(&out.peer, g.cid(), out.message).unwrap();
            }
            let mut messages = 0;
            loop {
                let mut quiet = true;
                while let Some(m) = net_b.try_next() {
                    assert_eq!((m.from.as_str(), &m.stream), ("a", g.cid()));
                    (quiet, messages) = (false, messages + 1);
                    if let Some(r) = db.receive(&mut b, &m.from, &m.message, now).await.unwrap().reply {
                        net_b.send(&m.from, &m.stream, r).unwrap();
                    }
                }
                while let Some(m) = net_a.try_next() {
                    (quiet, messages) = (false, messages + 1);
                    if let Some(r) = da.receive(&mut a, &m.from, &m.message, now).await.unwrap().reply {
                        net_a.send(&m.from, &m.stream, r).unwrap();
                    }
                }
                if quiet {
                    break;
                }
            }
            assert_eq!(a.heads(), b.heads());
            assert_eq!(a.len(), 41);
            assert!(messages <= 6, "{messages} messages");
            assert!(matches!(net_a.send(&"nobody".into(), g.cid(), vec![]), Err(TransportError::UnknownPeer(_))));
        });
    }

    #[test]
    fn fetcher_gets_many_blocks_from_the_others() {
        block_on(async {
            let g = Event::genesis("fetch").encode().unwrap();
            let mut a = replica(&g).await;
            let x = a.append(&"x").await.unwrap();
            let y = a.append(&"y").await.unwrap();
            let hub = MemoryHub::new();
            let _serving = hub.fetcher("a", a.store().clone() as Arc<dyn Blockstore>);
            let fetcher: Box<dyn Fetcher> =
                Box::new(hub.fetcher("b", Arc::new(MemoryBlockstore::new()) as Arc<dyn Blockstore>));
            let missing = *Event::new(1, vec![*g.cid()], "nope").encode().unwrap().cid();
            let got = fetcher.fetch(&[y, missing, x]).await.unwrap();
            assert_eq!(got[0].as_ref().map(Block::cid), Some(&y));
            assert!(got[1].is_none());
            assert_eq!(got[2].as_ref().map(Block::cid), Some(&x));
        });
    }
}
