//! Bitswap 1.2.0 (`/ipfs/bitswap/1.2.0`): the block exchange of IPFS, so
//! any IPFS node (Kubo, Helia, ...) can fetch a stream's events by CID from
//! a merkle-clock node, and a replica can fill its missing blocks from IPFS
//! peers.
//!
//! # How it runs
//!
//! Bitswap has no requests and responses: each side sends messages when it
//! has something to say, and **every message goes on a new stream opened by
//! its sender** (a peer that wrote its wantlist on a stream does not read
//! that stream again). A message is a varint length and a protobuf
//! ([`message`]): a wantlist (want-block and want-have entries, cancels,
//! `send_dont_have`), blocks with the prefix of their CID, and HAVE /
//! DONT_HAVE presences.
//!
//! - **Serving** (in the node's task): every inbound message's wantlist
//!   goes into that peer's ledger, bounded by
//!   [`BitswapConfig::max_outstanding_wants`]. The node answers from every
//!   stream it holds: a want-block with the block, a want-have with HAVE,
//!   either with DONT_HAVE when the block is not here and the peer asked
//!   (`send_dont_have`); a want the peer did not ask DONT_HAVE for waits in
//!   the ledger and is answered when the block arrives. Answers are packed
//!   into messages of at most [`BitswapConfig::max_outgoing_message_bytes`]
//!   and written, one stream each, by one writer per peer; while a peer's
//!   writer holds twice that much, its ledger waits (a slow reader gets no
//!   more memory than that).
//! - **Fetching** ([`BitswapFetcher`], the core's
//!   [`Fetcher`](merkle_clock::sync::transport::Fetcher)): asks up to
//!   [`BitswapConfig::fetch_peers`] connected Bitswap peers at once with
//!   want-block and `send_dont_have`, at most
//!   [`BitswapConfig::fetch_window`] CIDs outstanding. A block counts only
//!   if its bytes hash to a CID we asked for ([`message::block_of`] builds
//!   the CID from the prefix and the BLAKE3 of the bytes, and
//!   [`Block::new`](merkle_clock::Block::new) checks it): a block under a
//!   wrong prefix or with wrong bytes names another CID and is dropped. A
//!   CID is `None` when every peer asked said DONT_HAVE, or when nothing
//!   arrived for [`BitswapConfig::fetch_timeout`].
//!
//! # Limits
//!
//! Every inbound message is refused (the stream is dropped, nothing in it
//! is used, [`BitswapStats::garbage`] counts it) when its length prefix
//! claims more than [`BitswapConfig::max_message_bytes`] (before a byte of
//! it is read), when it would build more than
//! [`BitswapConfig::max_message_items`] entries, blocks and presences
//! (counted before decoding), when it is not protobuf, or when it takes
//! longer than [`BitswapConfig::message_timeout`] to arrive. At most
//! [`BitswapConfig::max_inbound_streams`] inbound streams are read at once.
//! Blocks larger than [`BitswapConfig::max_block_bytes`] are neither sent
//! nor accepted.
//!
//! # Example
//!
//! Two nodes with Bitswap on (the default): one fetches the other's event
//! by CID.
//!
//! ```
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use merkle_clock::sync::transport::Fetcher;
//! use merkle_clock::{Event, MemoryBlockstore, Replica, ReplicaConfig, StreamStore};
//! use merkle_clock_libp2p::{Node, NodeConfig};
//!
//! let genesis = Event::genesis("bitswap doc").encode()?;
//! let store: Arc<dyn StreamStore> = Arc::new(MemoryBlockstore::new());
//! let server = Node::<dyn StreamStore>::spawn(NodeConfig::default())?;
//! server.add_stream(Replica::create(store, &genesis, ReplicaConfig::default()).await?).await?;
//! let cid = server.append(*genesis.cid(), "hello").await?;
//!
//! let client = Node::<dyn StreamStore>::spawn(NodeConfig::default())?;
//! client.dial(server.listen_addr().await?).await?;
//! let fetcher = client.bitswap_fetcher().expect("bitswap is on by default");
//! fetcher.wait_for_peers(1, std::time::Duration::from_secs(10)).await;
//! let got = fetcher.fetch(&[cid]).await?;
//! assert_eq!(got[0].as_ref().map(|b| *b.cid()), Some(cid));
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(run()).unwrap();
//! ```

mod client;
pub mod message;
mod server;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};
use merkle_clock::{Block, Cid};
use tokio::sync::mpsc;

pub use client::BitswapFetcher;
/// [`fill`] lives in the core ([`merkle_clock::sync::fill`]); re-exported here,
/// where it was first.
pub use merkle_clock::sync::fill::{FillError, FillReport, fill};
pub(crate) use server::Server;

/// The protocol name.
pub const BITSWAP_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");

/// Bitswap's limits and time-outs, [`NodeConfig::bitswap`](crate::NodeConfig::bitswap).
/// `#[non_exhaustive]`: start from [`BitswapConfig::default()`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BitswapConfig {
    /// Largest inbound message, refused from its length prefix before it is
    /// read. Default: 4 MiB (what go-bitswap accepts).
    pub max_message_bytes: usize,
    /// Largest message we send: answers are packed up to this. Default:
    /// 2 MiB (what Helia accepts by default).
    pub max_outgoing_message_bytes: usize,
    /// Most wantlist entries, blocks and presences in one inbound message,
    /// counted before decoding. Default: 16,384.
    pub max_message_items: usize,
    /// Largest block sent or accepted. Default: 1 MiB (the core's
    /// [`Limits::max_block_bytes`](merkle_clock::Limits)).
    pub max_block_bytes: usize,
    /// Most wants a peer can leave with us unanswered (blocks we do not have
    /// yet, or answers waiting for its writer); wants beyond it are dropped
    /// and counted. Default: 16,384.
    pub max_outstanding_wants: usize,
    /// Most inbound streams read at once (from all peers); more are
    /// dropped. Default: 256.
    pub max_inbound_streams: usize,
    /// How long one message may take to arrive once its stream is open, or
    /// to be written, before the stream is dropped. Default: 10 s.
    pub message_timeout: Duration,
    /// A fetch gives up on the CIDs still missing when no block or answer
    /// arrived for this long. Default: 10 s.
    pub fetch_timeout: Duration,
    /// Most peers a fetch asks at once. Default: 8.
    pub fetch_peers: usize,
    /// Most CIDs a fetch has outstanding at once (per peer; within Helia's
    /// default ledger of 1,024). Default: 512.
    pub fetch_window: usize,
}

impl Default for BitswapConfig {
    fn default() -> Self {
        BitswapConfig {
            max_message_bytes: 4 << 20,
            max_outgoing_message_bytes: 2 << 20,
            max_message_items: 16_384,
            max_block_bytes: 1 << 20,
            max_outstanding_wants: 16_384,
            max_inbound_streams: 256,
            message_timeout: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(10),
            fetch_peers: 8,
            fetch_window: 512,
        }
    }
}

/// A Bitswap message or stream failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BitswapError {
    /// The length prefix claims more than
    /// [`BitswapConfig::max_message_bytes`].
    #[error("bitswap message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The length claimed.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The message would build more entries, blocks and presences than
    /// [`BitswapConfig::max_message_items`].
    #[error("bitswap message with {found} items exceeds the limit of {max}")]
    TooManyItems {
        /// Items counted.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a Bitswap message.
    #[error("malformed bitswap message: {0}")]
    Malformed(&'static str),
    /// A block's CID prefix names a version or hash no event has.
    #[error("unsupported CID prefix: version {version}, multihash {code:#x} of {len} bytes")]
    UnsupportedPrefix {
        /// CID version.
        version: u64,
        /// Multihash code.
        code: u64,
        /// Digest length.
        len: u64,
    },
    /// A block was refused by [`Block::new`].
    #[error(transparent)]
    Block(Box<merkle_clock::BlockError>),
    /// The stream failed.
    #[error("bitswap stream: {0}")]
    Io(#[from] std::io::Error),
    /// The stream could not be opened (not connected, protocol not spoken).
    #[error("bitswap stream could not be opened: {0}")]
    Open(String),
    /// A message did not arrive or could not be written in time.
    #[error("bitswap message timed out")]
    Timeout,
}

/// Bitswap's counters, from [`NodeHandle::bitswap_stats`](crate::NodeHandle::bitswap_stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BitswapStats {
    /// Well-formed messages received.
    pub messages_received: u64,
    /// Bytes of them (frames).
    pub bytes_received: u64,
    /// Messages sent (each on a stream of its own).
    pub messages_sent: u64,
    /// Bytes of them (frames).
    pub bytes_sent: u64,
    /// Messages that failed to send (the stream did not open, the write
    /// failed or timed out).
    pub send_failures: u64,
    /// Inbound streams refused: a message too large, with too many items,
    /// not protobuf, too slow.
    pub garbage: u64,
    /// Inbound streams dropped unread because
    /// [`BitswapConfig::max_inbound_streams`] were being read.
    pub streams_refused: u64,
    /// Wantlist entries received.
    pub wants_received: u64,
    /// Wants dropped: a peer's ledger was full, or the CID did not parse.
    pub wants_dropped: u64,
    /// Blocks sent.
    pub blocks_sent: u64,
    /// HAVE presences sent.
    pub haves_sent: u64,
    /// DONT_HAVE presences sent.
    pub dont_haves_sent: u64,
    /// Wants for a block this node pruned (its bytes are gone for good):
    /// answered DONT_HAVE when the peer asked for one, else dropped (never
    /// kept waiting, never an error).
    pub pruned_wants: u64,
    /// Blocks received that a fetch wanted, verified.
    pub blocks_received: u64,
    /// Blocks received that no fetch wanted (already delivered by another
    /// peer, or bytes that do not hash to a wanted CID), or that failed to
    /// verify: dropped.
    pub blocks_unwanted: u64,
    /// Presences received.
    pub presences_received: u64,
}

/// The counters, shared by the node's task, the stream readers and the
/// fetchers.
#[derive(Default)]
pub(crate) struct Counters {
    pub messages_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub send_failures: AtomicU64,
    pub garbage: AtomicU64,
    pub streams_refused: AtomicU64,
    pub wants_received: AtomicU64,
    pub wants_dropped: AtomicU64,
    pub blocks_sent: AtomicU64,
    pub haves_sent: AtomicU64,
    pub dont_haves_sent: AtomicU64,
    pub pruned_wants: AtomicU64,
    pub blocks_received: AtomicU64,
    pub blocks_unwanted: AtomicU64,
    pub presences_received: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> BitswapStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BitswapStats {
            messages_received: g(&self.messages_received),
            bytes_received: g(&self.bytes_received),
            messages_sent: g(&self.messages_sent),
            bytes_sent: g(&self.bytes_sent),
            send_failures: g(&self.send_failures),
            garbage: g(&self.garbage),
            streams_refused: g(&self.streams_refused),
            wants_received: g(&self.wants_received),
            wants_dropped: g(&self.wants_dropped),
            blocks_sent: g(&self.blocks_sent),
            haves_sent: g(&self.haves_sent),
            dont_haves_sent: g(&self.dont_haves_sent),
            pruned_wants: g(&self.pruned_wants),
            blocks_received: g(&self.blocks_received),
            blocks_unwanted: g(&self.blocks_unwanted),
            presences_received: g(&self.presences_received),
        }
    }
}

/// What reaches a fetch from the stream readers.
#[derive(Debug)]
pub(crate) enum Arrival {
    /// A verified block it wants.
    Block(Block),
    /// The peer does not have it.
    DontHave(PeerId, Cid),
}

/// A wantlist received, for the node's task.
pub(crate) type InboundWants = (PeerId, Wantlist);

use message::Wantlist;

/// The fetches waiting for each CID: a fetch's id and its channel.
pub(crate) type Waiting = HashMap<Cid, Vec<(u64, mpsc::UnboundedSender<Arrival>)>>;

/// What the node's task, the stream readers, the writers and the fetchers
/// share.
pub(crate) struct Shared {
    pub(crate) config: BitswapConfig,
    pub(crate) control: libp2p_stream::Control,
    pub(crate) counters: Counters,
    /// Connected peers that said (through identify) they speak Bitswap.
    pub(crate) peers: Mutex<HashSet<PeerId>>,
    /// The fetches waiting for each CID: fetch id and its channel.
    pub(crate) wants: Mutex<Waiting>,
    pub(crate) next_fetch: AtomicU64,
    /// The node's task has ended (its [`Server`] was dropped).
    pub(crate) stopped: AtomicBool,
}

impl Shared {
    pub(crate) fn stats(&self) -> BitswapStats {
        self.counters.snapshot()
    }

    pub(crate) fn peers(&self) -> std::sync::MutexGuard<'_, HashSet<PeerId>> {
        // Every critical section is a few set operations that cannot panic halfway.
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn wants(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.wants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a stream to `peer` and writes one framed message on it.
    pub(crate) async fn send(&self, peer: PeerId, frame: &[u8]) -> Result<(), BitswapError> {
        let mut control = self.control.clone();
        let write = async {
            let mut stream =
                control.open_stream(peer, BITSWAP_PROTOCOL).await.map_err(|e| BitswapError::Open(e.to_string()))?;
            stream.write_all(frame).await?;
            stream.close().await?;
            Ok(())
        };
        let result = match tokio::time::timeout(self.config.message_timeout, write).await {
            Ok(r) => r,
            Err(_) => Err(BitswapError::Timeout),
        };
        match &result {
            Ok(()) => {
                bump(&self.counters.messages_sent, 1);
                bump(&self.counters.bytes_sent, frame.len() as u64);
            }
            Err(_) => bump(&self.counters.send_failures, 1),
        }
        result
    }
}

/// Reads the next message's body from a stream: `Ok(None)` at a clean end
/// between messages. The length prefix is checked against `max` before any
/// of the body is read.
pub(crate) async fn read_frame<R: futures::AsyncRead + Unpin>(
    io: &mut R,
    max: usize,
) -> Result<Option<Bytes>, BitswapError> {
    let mut prefix = Vec::with_capacity(10);
    loop {
        let mut b = [0u8; 1];
        if io.read(&mut b).await? == 0 {
            if prefix.is_empty() {
                return Ok(None);
            }
            return Err(BitswapError::Malformed("stream ended inside a length prefix"));
        }
        prefix.push(b[0]);
        if b[0] & 0x80 == 0 || prefix.len() == 10 {
            break;
        }
    }
    let len = message::get_varint(&mut prefix.as_slice())?;
    if len > max as u64 {
        return Err(BitswapError::TooLarge { len, max });
    }
    // The buffer grows with what arrives, not with what the prefix claims.
    let mut body = Vec::new();
    io.take(len).read_to_end(&mut body).await?;
    if body.len() as u64 != len {
        return Err(BitswapError::Malformed("stream ended inside a message"));
    }
    Ok(Some(Bytes::from(body)))
}
