//! The node's configuration and the swarm behaviour it builds from it.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{Multiaddr, gossipsub, identify, request_response};
use merkle_clock::sync::{SessionConfig, SyncLimits};

use crate::bitswap::BitswapConfig;
use crate::codec::{SYNC_PROTOCOL, SyncCodec};
use crate::handle::NodeError;

/// How a node behaves. `#[non_exhaustive]`: start from
/// [`NodeConfig::default()`] and change fields.
///
/// The sync sessions themselves (timeouts, back-off, session caps,
/// anti-entropy) are the core's [`Sessions`](merkle_clock::sync::Sessions)
/// driver's business: its policy is [`NodeConfig::sessions`], its message
/// limits [`NodeConfig::sync_limits`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The node's identity; a fresh Ed25519 key when `None`.
    pub keypair: Option<Keypair>,
    /// Where to listen. Default: `/ip4/127.0.0.1/tcp/0` (loopback, any port).
    pub listen: Vec<Multiaddr>,
    /// How often every stream's heads are announced even when nothing changed,
    /// so dormant streams and late joiners catch up. Default: 5 s.
    pub announce_interval: Duration,
    /// The announce interval varies by up to this fraction either way, so
    /// nodes started together do not announce in lockstep. Default: 0.25.
    pub announce_jitter: f64,
    /// Least time between two announcements of one stream when its heads
    /// change (appends and received events are batched; the first change
    /// after a quiet spell is announced at once). Each announcement costs
    /// every receiver a gossip envelope, IDONTWANTs and IHAVE entries
    /// whatever it carries, so bursts are better sent in fewer. Default: 200 ms.
    pub announce_debounce: Duration,
    /// Most heads listed in an announcement (a digest covers all). Default: 256.
    pub max_announced_heads: usize,
    /// Most bytes of new local events carried inside announcements per
    /// announcement round. The events appended since the last announcement
    /// ride along when their blocks come to at most this (all or none), in
    /// gossip messages of at most 32 KiB each; receivers take them in (each
    /// verified by their replica) without a sync session; beyond it, peers
    /// pull them. 0: announcements carry no events. Default: 1 MiB (about
    /// four thousand 270-byte events).
    pub announce_block_bytes: usize,
    /// How long a head that an announcement listed and we lack may take to
    /// arrive by itself (in another announcement) before it is pulled from
    /// the announcer; pulls also wait until no announcement brought events
    /// to the stream for this long. Longer than the gossip's delivery lag on a loaded
    /// machine, so that pulls are for what was lost, not for what is on its
    /// way (a pull brings everything the peer holds that we lack at that
    /// moment, in flight or not). Default: 2 s.
    pub pull_delay: Duration,
    /// Most announced heads wanted at once per stream (the others are
    /// ignored; a later announcement lists them again). Each is pulled from
    /// one peer only, in a fresh session started when no exchange with that
    /// peer is under way. Default: 1,024.
    pub max_pulls: usize,
    /// After answering a peer's sync request with a message, how long the
    /// node waits for that peer's next request before it may send one of
    /// its own on the stream: one exchange per (peer, stream) at a time, not
    /// two crossing. After a part that more follow (a long catch-up), the
    /// wait is `request_timeout` instead: the peer reads the next part only
    /// once it has taken in the previous one. Default: 500 ms.
    pub exchange_grace: Duration,
    /// How long an announcement received waits before gossipsub may forward
    /// it to the mesh (its events are taken in at once). Meanwhile the mesh
    /// peers that received it too say so (gossipsub's IDONTWANT) and are
    /// not sent a copy: on a densely connected network most copies are
    /// never sent. Each hop of a forwarded announcement takes this much
    /// longer (its author floods it to every peer on the topic at once, so
    /// on a dense network there is no second hop). On a loaded machine the
    /// IDONTWANTs take long: at 250 ms, 20 nodes in a full mesh were sent
    /// about 0.3 to 0.5 copies more of every event than they needed, at 1 s
    /// about 0.05 (`loopback_bench`). Default: 1 s.
    pub forward_delay: Duration,
    /// The session driver's policy, for every stream: how long an unsettled
    /// session waits for its peer before it restarts (and the back-off of
    /// repeated timeouts), the most messages in one session, how often a
    /// settled peer gets an anti-entropy session. Default:
    /// [`SessionConfig::default()`] (10 s, ×8 at most, 10,000 messages, 60 s)
    /// except `push: false`: new events go out in announcements, and the
    /// driver does not also push them to every settled peer (set it `true`
    /// to push as well: faster on a lossy network, but every peer then
    /// receives each event from several others).
    pub sessions: SessionConfig,
    /// Limits of the sync messages made and taken (the driver's
    /// [`Bloom`](merkle_clock::sync::Bloom) protocol runs with them).
    /// Request and response frames are bounded by `max_message_bytes` plus a
    /// few bytes of framing, checked before a frame is read; a block fetch
    /// answers with at most `max_message_bytes` of blocks.
    pub sync_limits: SyncLimits,
    /// How long one request (a sync message or a block fetch) may wait for
    /// its response; past it the request fails and the peer's session
    /// restarts ([`Sessions::lost`](merkle_clock::sync::Sessions::lost)).
    /// Default: 10 s.
    pub request_timeout: Duration,
    /// Most sync messages waiting for one (peer, stream) behind its
    /// outstanding request. One more restarts the peer's session instead
    /// (the queue is dropped; the restart's first message resends what is
    /// needed). Default: 32.
    pub max_queued_messages: usize,
    /// How often addresses given to [`NodeHandle::dial`](crate::NodeHandle::dial)
    /// are dialed again while not connected. Default: 1 s.
    pub redial_interval: Duration,
    /// How long a connection with nothing to do stays open. Default: 1 hour.
    pub idle_connection_timeout: Duration,
    /// The gossipsub heartbeat. Default: 500 ms.
    pub gossip_heartbeat: Duration,
    /// Bitswap 1.2.0 ([`crate::bitswap`]): `Some` serves every block of the
    /// node's streams by CID to any connected peer and enables
    /// [`NodeHandle::bitswap_fetcher`](crate::NodeHandle::bitswap_fetcher);
    /// `None` turns it off (the protocol is not listed by identify, inbound
    /// streams are refused). Default: on, with [`BitswapConfig::default()`].
    pub bitswap: Option<BitswapConfig>,
    /// Invalid events (blocks the replica refuses: bad or missing
    /// signatures, authors who may not write, non-canonical or foreign
    /// blocks, a validator's no) a peer may send in sync messages before it
    /// is disconnected and banned for [`NodeConfig::ban_for`]. An honest
    /// peer running the same rules sends none. `0`: never ban. Default: 16.
    pub max_invalid_events: u64,
    /// How long a banned peer stays refused: every connection with it is
    /// closed as it opens (its invalid-event count then starts again).
    /// Default: 10 minutes.
    pub ban_for: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            keypair: None,
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a valid multiaddr")],
            announce_interval: Duration::from_secs(5),
            announce_jitter: 0.25,
            announce_debounce: Duration::from_millis(200),
            max_announced_heads: 256,
            announce_block_bytes: 1 << 20,
            pull_delay: Duration::from_secs(2),
            max_pulls: 1024,
            exchange_grace: Duration::from_millis(500),
            forward_delay: Duration::from_secs(1),
            sessions: SessionConfig { push: false, ..SessionConfig::default() },
            sync_limits: SyncLimits::default(),
            request_timeout: Duration::from_secs(10),
            max_queued_messages: 32,
            redial_interval: Duration::from_secs(1),
            idle_connection_timeout: Duration::from_secs(3600),
            gossip_heartbeat: Duration::from_millis(500),
            bitswap: Some(BitswapConfig::default()),
            max_invalid_events: 16,
            ban_for: Duration::from_secs(600),
        }
    }
}

pub use behaviour::{Behaviour, BehaviourEvent};

mod behaviour {
    // The derive generates `BehaviourEvent` with one variant per field.
    #![allow(missing_docs)]
    use super::*;

    /// The swarm's behaviour: gossipsub for head announcements,
    /// request-response for sync messages and block fetches, raw streams
    /// for Bitswap, and identify (so IPFS nodes learn what we speak).
    /// [`BehaviourEvent`] has one variant per field, carrying that
    /// behaviour's events.
    #[derive(NetworkBehaviour)]
    pub struct Behaviour {
        /// Head announcements, one topic per stream.
        pub gossipsub: gossipsub::Behaviour,
        /// Sync messages and block fetches.
        pub sync: request_response::Behaviour<SyncCodec>,
        /// Bitswap's streams ([`crate::bitswap`]).
        pub stream: libp2p_stream::Behaviour,
        /// The identify protocol: our listen addresses and protocols.
        pub identify: identify::Behaviour,
    }
}

impl Behaviour {
    /// The behaviour a node with this key and configuration runs.
    ///
    /// # Errors
    /// When the gossipsub configuration is inconsistent.
    pub fn new(key: &Keypair, config: &NodeConfig) -> Result<Self, NodeError> {
        // Announcements are unsigned: they carry no authority (a CID names
        // its block, and a sync session only ever runs with a connected,
        // noise-authenticated peer), and verifying an Ed25519 signature on
        // every announcement was most of a node's CPU time. A message keeps
        // its author and sequence number (its gossipsub id); signatures that
        // other implementations add are still checked (`Permissive`).
        let gossip_config = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(config.gossip_heartbeat)
            .validation_mode(gossipsub::ValidationMode::Permissive)
            .validate_messages()
            .max_transmit_size(gossip_max_bytes(config.max_announced_heads))
            // Announcements that carry events are worth an IDONTWANT: a peer
            // that has one tells its mesh not to forward it the copies.
            .idontwant_message_size_threshold(IDONTWANT_BYTES)
            .idontwant_on_publish(true)
            .mesh_outbound_min(1)
            .mesh_n_low(2)
            .mesh_n(3)
            .mesh_n_high(6)
            .gossip_lazy(3)
            .build()
            .map_err(|e| NodeError::Setup(format!("gossipsub config: {e}")))?;
        let author = gossipsub::MessageAuthenticity::Author(key.public().to_peer_id());
        let gossipsub = gossipsub::Behaviour::new(author, gossip_config)
            .map_err(|e| NodeError::Setup(format!("gossipsub: {e}")))?;
        let frame = config.sync_limits.max_message_bytes.saturating_add(FRAME_OVERHEAD);
        let codec = SyncCodec { max_request_bytes: frame, max_response_bytes: frame };
        let rr_config = request_response::Config::default().with_request_timeout(config.request_timeout);
        let sync = request_response::Behaviour::with_codec(
            codec,
            [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
            rr_config,
        );
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL_VERSION.into(), key.public())
                .with_agent_version(format!("merkle-clock/{}", env!("CARGO_PKG_VERSION"))),
        );
        Ok(Behaviour { gossipsub, sync, stream: libp2p_stream::Behaviour::new(), identify })
    }
}

/// The protocol version identify announces (what IPFS implementations send).
const IDENTIFY_PROTOCOL_VERSION: &str = "ipfs/0.1.0";

/// Bytes a request or response adds around a sync message or a block list
/// (version, kind, the stream id, a block's flag and length) beyond
/// `max_message_bytes`; a get's list of CIDs fits in it too.
pub(crate) const FRAME_OVERHEAD: usize = 64 << 10;

/// Gossip messages larger than this are answered with IDONTWANT to the
/// mesh peers.
const IDONTWANT_BYTES: usize = 512;

/// Gossip frames hold an announcement with this many heads, a part of the
/// events carried, and the envelope around it (at least 64 KiB: room for
/// blocks pushed by a broadcaster).
pub(crate) fn gossip_max_bytes(max_heads: usize) -> usize {
    (4096 + 80 * max_heads + crate::gossip::ANNOUNCE_PART_BYTES).max(65536)
}
