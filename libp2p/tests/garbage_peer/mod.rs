//! A raw swarm that speaks the sync protocol and the gossip topic with
//! garbage: the adversary of `garbage_peer_is_ignored`.

#[allow(dead_code)] // used by tests/ban.rs, not tests/loopback.rs
pub mod forger;

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use merkle_clock::sync::Message;
use merkle_clock::{Cid, Event};
use merkle_clock_libp2p::announce::{Announcement, topic};
use merkle_clock_libp2p::codec::{SYNC_PROTOCOL, SyncRequest, SyncResponse};
use merkle_clock_libp2p::libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use merkle_clock_libp2p::libp2p::{self, Multiaddr, PeerId, StreamProtocol, gossipsub, request_response};

/// A codec that writes and reads raw bytes on the sync protocol: whatever
/// the test hands it goes on the wire as is.
#[derive(Clone, Default)]
struct RawCodec;

async fn read_all<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(1 << 20).read_to_end(&mut buf).await?;
    Ok(buf)
}

async fn write_all<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: Vec<u8>) -> io::Result<()> {
    io.write_all(&bytes).await?;
    io.close().await
}

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_all(io).await
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_all(io).await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> io::Result<()> {
        write_all(io, r).await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> io::Result<()> {
        write_all(io, r).await
    }
}

#[derive(NetworkBehaviour)]
struct GarbageBehaviour {
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<RawCodec>,
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

struct Rng(u64);

impl Rng {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}

/// A well-formed sync message whose blocks are not events of the stream:
/// noise, a block of another stream's genesis, and a non-canonical encoding.
fn bad_blocks_message(rng: &mut Rng, stream: Cid) -> Vec<u8> {
    let mut m = Message::default();
    m.hello = true;
    m.seq = 1;
    m.heads = vec![stream];
    m.blocks = vec![
        rng.bytes(120).into(),
        Event::genesis("a foreign genesis").encode().unwrap().bytes().clone(),
        vec![0xa3, 0x61, 0x78, 0x01].into(),
    ];
    m.encode()
}

/// The kinds of garbage sent in sync requests and responses.
const GARBAGE_KINDS: usize = 7;

/// Garbage of kind `i % GARBAGE_KINDS` for a sync request or response.
fn garbage_sync_frame(rng: &mut Rng, stream: Cid, i: usize) -> Vec<u8> {
    match i % GARBAGE_KINDS {
        // Raw noise, not even a frame.
        0 => rng.bytes(64),
        // A frame of noise.
        1 => frame(&rng.bytes(200)),
        // A length prefix far above the bound.
        2 => u32::MAX.to_be_bytes().to_vec(),
        // A well-formed request whose sync message is noise.
        3 => frame(&SyncRequest::Sync { stream, message: rng.bytes(300).into() }.encode()),
        // A well-formed response whose sync message is noise.
        4 => frame(&SyncResponse::Message(rng.bytes(300).into()).encode()),
        // A well-formed request and response whose message carries bad blocks.
        5 => {
            let m = bad_blocks_message(rng, stream);
            if rng.bytes(1)[0].is_multiple_of(2) {
                frame(&SyncRequest::Sync { stream, message: m.into() }.encode())
            } else {
                frame(&SyncResponse::Message(m.into()).encode())
            }
        }
        // A frame that claims more bytes than it carries.
        _ => {
            let mut f = frame(&rng.bytes(100));
            f.truncate(50);
            f
        }
    }
}

/// Runs a swarm that subscribes to the stream's topic and, every 50 ms,
/// publishes garbage and bogus announcements, sends garbage sync requests to
/// `targets`, and answers every sync request with garbage. It stops after
/// `rounds` rounds in which its gossip reached every target (and at most 200
/// rounds), or when every node it reached has disconnected it.
pub async fn run_garbage_peer(stream: Cid, targets: Vec<Multiaddr>, rounds: usize) {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(Default::default(), libp2p::noise::Config::new, libp2p::yamux::Config::default)
        .unwrap()
        .with_behaviour(|key| {
            let config =
                gossipsub::ConfigBuilder::default().heartbeat_interval(Duration::from_millis(200)).build().unwrap();
            GarbageBehaviour {
                gossipsub: gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
                    .unwrap(),
                sync: request_response::Behaviour::with_codec(
                    RawCodec,
                    [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(Duration::from_secs(2)),
                ),
            }
        })
        .unwrap()
        .build();
    let topic = topic(&stream);
    swarm.behaviour_mut().gossipsub.subscribe(&topic).unwrap();
    let mut peers: Vec<PeerId> = Vec::new();
    let wanted = targets.len();
    for t in targets {
        swarm.dial(t).unwrap();
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut round = 0;
    let mut delivered = 0;
    while delivered < rounds && round < 200 {
        tokio::select! {
            _ = tick.tick() => {
                round += 1;
                // Raw noise, then a well-formed announcement of heads nobody has,
                // which makes the honest nodes open sync sessions with us.
                let bogus: Vec<Cid> = (0..3).map(|i| *Event::genesis(format!("bogus {round} {i}")).encode().unwrap().cid()).collect();
                let payloads = [
                    rng.bytes(1 + round % 97),
                    Announcement::new(stream, 999, &bogus, 10).encode(),
                    Announcement::new(bogus[0], 1, &bogus, 10).encode(),
                ];
                let mut published = false;
                for p in payloads {
                    published |= swarm.behaviour_mut().gossipsub.publish(topic.clone(), p).is_ok();
                }
                // Rounds count once every target is connected: on a loaded
                // machine, one connection may come long after the others.
                if published && peers.len() >= wanted {
                    delivered += 1;
                }
                for peer in &peers {
                    for kind in 0..GARBAGE_KINDS {
                        let g = garbage_sync_frame(&mut rng, stream, kind);
                        swarm.behaviour_mut().sync.send_request(peer, g);
                    }
                }
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => peers.push(peer_id),
                // Banned for its invalid blocks (`NodeConfig::max_invalid_events`).
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    peers.retain(|p| *p != peer_id);
                    if peers.is_empty() && delivered > 0 {
                        return;
                    }
                }
                SwarmEvent::Behaviour(GarbageBehaviourEvent::Sync(request_response::Event::Message {
                    message: request_response::Message::Request { channel, .. }, ..
                })) => {
                    let g = garbage_sync_frame(&mut rng, stream, round);
                    let _ = swarm.behaviour_mut().sync.send_response(channel, g);
                }
                _ => {}
            },
        }
    }
}
