//! A raw swarm that sends well-formed sync messages full of signed events
//! no replica of a signed stream accepts: the adversary of
//! `a_peer_sending_forged_events_is_banned` (tests/ban.rs).

use std::time::Duration;

use futures::StreamExt;
use merkle_clock::auth::{self, AuthorKey, Signer};
use merkle_clock::sync::Message;
use merkle_clock::{Block, Cid};
use merkle_clock_libp2p::codec::{SYNC_PROTOCOL, SyncRequest};
use merkle_clock_libp2p::libp2p::identity::Keypair;
use merkle_clock_libp2p::libp2p::swarm::SwarmEvent;
use merkle_clock_libp2p::libp2p::{self, Multiaddr, PeerId, request_response};

use super::{RawCodec, frame};

/// Events on `stream` (height 1, on the genesis) that every replica refuses:
/// one signed by `intruder`, a key no admin granted, and one that claims
/// `victim` (a member) as its author but carries `intruder`'s signature.
pub fn forged_events(stream: Cid, intruder: &Signer, victim: &AuthorKey, n: u64) -> [Block; 2] {
    let unauthorised = auth::signed_event(&stream, 1, &[stream], None, &format!("forged {n}"), intruder).unwrap();
    let mut bytes = unauthorised.bytes().to_vec();
    let at = bytes.windows(32).position(|w| w == intruder.public().as_bytes()).expect("the author key is in the block");
    bytes[at..at + 32].copy_from_slice(victim.as_bytes());
    [unauthorised, Block::from_bytes(bytes)]
}

/// Runs a swarm with identity `key` that dials `targets` and, every 50 ms,
/// sends each connected peer a sync request whose blocks are
/// [`forged_events`]; when a connection closes it dials again on the next tick. Runs until
/// the task is dropped or aborted.
pub async fn run_forger(key: Keypair, stream: Cid, victim: AuthorKey, targets: Vec<Multiaddr>) {
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(Default::default(), libp2p::noise::Config::new, libp2p::yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawCodec,
                [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(2)),
            )
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    for t in &targets {
        swarm.dial(t.clone()).unwrap();
    }
    let intruder = Signer::from_seed(&[7; 32]);
    let mut peers: Vec<PeerId> = Vec::new();
    let mut redial: Vec<Multiaddr> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut n = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for addr in redial.drain(..) {
                    let _ = swarm.dial(addr);
                }
                for peer in &peers {
                    n += 1;
                    let mut m = Message::default();
                    m.hello = true;
                    m.seq = 1;
                    m.heads = vec![stream];
                    m.blocks = forged_events(stream, &intruder, &victim, n).iter().map(|b| b.bytes().clone()).collect();
                    let request = frame(&SyncRequest::Sync { stream, message: m.encode().into() }.encode());
                    swarm.behaviour_mut().send_request(peer, request);
                }
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if !peers.contains(&peer_id) => peers.push(peer_id),
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, endpoint, .. } => {
                    peers.retain(|p| *p != peer_id);
                    // Again, on the next tick: a ban is tested, not assumed.
                    redial.push(endpoint.get_remote_address().clone());
                }
                _ => {}
            },
        }
    }
}
