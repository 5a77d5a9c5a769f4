//! A bare swarm that speaks Bitswap by hand: it writes whatever bytes a
//! test gives it on a new stream, and hands over every message it
//! receives. The honest client and the adversary of `bitswap.rs`.

use std::time::Duration;

use bytes::Bytes;
use futures::{AsyncWriteExt, StreamExt};
use merkle_clock::Cid;
use merkle_clock_libp2p::bitswap::BITSWAP_PROTOCOL;
use merkle_clock_libp2p::bitswap::message::{self, Entry, Message, WantType, Wantlist};
use merkle_clock_libp2p::libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use merkle_clock_libp2p::libp2p::{self, Multiaddr, PeerId, identify};
use tokio::sync::mpsc;

#[derive(NetworkBehaviour)]
struct PeerBehaviour {
    stream: libp2p_stream::Behaviour,
    identify: identify::Behaviour,
}

/// A running raw Bitswap peer.
pub struct RawPeer {
    pub addr: Multiaddr,
    control: libp2p_stream::Control,
    /// Messages received, with the sender.
    pub inbox: mpsc::UnboundedReceiver<(PeerId, Message)>,
    dial: mpsc::UnboundedSender<Multiaddr>,
    connected: mpsc::UnboundedReceiver<PeerId>,
}

impl RawPeer {
    /// Starts the peer's swarm on the current runtime, listening on loopback.
    /// With `accept` false it never reads inbound streams (a peer that
    /// never answers).
    pub async fn spawn(accept: bool) -> RawPeer {
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(Default::default(), libp2p::noise::Config::new, libp2p::yamux::Config::default)
            .unwrap()
            .with_behaviour(|key| PeerBehaviour {
                stream: libp2p_stream::Behaviour::new(),
                identify: identify::Behaviour::new(identify::Config::new("ipfs/0.1.0".into(), key.public())),
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        };
        let mut control = swarm.behaviour().stream.new_control();
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let mut incoming = control.accept(BITSWAP_PROTOCOL).unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some((peer, mut stream)) = incoming.next().await {
                if !accept {
                    // Never read: the stream stays open, unread.
                    held.push(stream);
                    continue;
                }
                let tx = inbox_tx.clone();
                tokio::spawn(async move {
                    while let Ok(Some(frame)) = read_frame(&mut stream).await {
                        if let Ok(m) = message::decode(frame, usize::MAX) {
                            let _ = tx.send((peer, m));
                        }
                    }
                });
            }
        });
        let (dial, mut dials) = mpsc::unbounded_channel::<Multiaddr>();
        let (connected_tx, connected) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    event = swarm.select_next_some() => {
                        if let SwarmEvent::ConnectionEstablished { peer_id, .. } = event {
                            let _ = connected_tx.send(peer_id);
                        }
                    }
                    Some(addr) = dials.recv() => { let _ = swarm.dial(addr); }
                }
            }
        });
        RawPeer { addr, control, inbox, dial, connected }
    }

    /// Dials `addr` and waits (at most 20 s) for the connection.
    pub async fn dial(&mut self, addr: Multiaddr) {
        // Connections that came in before are not the one dialed.
        while self.connected.try_recv().is_ok() {}
        self.dial.send(addr).unwrap();
        tokio::time::timeout(Duration::from_secs(20), self.connected.recv()).await.unwrap().unwrap();
    }

    /// Opens a stream to `peer` and writes `bytes` on it (then closes it).
    pub async fn send_bytes(&self, peer: PeerId, bytes: &[u8]) -> std::io::Result<()> {
        let mut control = self.control.clone();
        let mut stream =
            control.open_stream(peer, BITSWAP_PROTOCOL).await.map_err(|e| std::io::Error::other(e.to_string()))?;
        stream.write_all(bytes).await?;
        stream.close().await
    }

    /// Opens a stream to `peer`, writes `bytes` and keeps the stream open
    /// without another byte (retrying while the connection comes up): a
    /// peer that never finishes its message.
    pub async fn stall(&self, peer: PeerId, bytes: &[u8]) -> libp2p::Stream {
        for _ in 0..200 {
            let mut control = self.control.clone();
            let open = tokio::time::timeout(Duration::from_secs(1), control.open_stream(peer, BITSWAP_PROTOCOL));
            if let Ok(Ok(mut stream)) = open.await {
                stream.write_all(bytes).await.unwrap();
                stream.flush().await.unwrap();
                return stream;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("could not open a stream to {peer}");
    }

    /// Sends a message (retrying while the connection comes up).
    pub async fn send(&self, peer: PeerId, m: &Message) {
        self.send_bytes_retrying(peer, &m.to_frame()).await;
    }

    /// Writes `bytes` on a new stream, retrying while the connection comes up.
    pub async fn send_bytes_retrying(&self, peer: PeerId, frame: &[u8]) {
        for _ in 0..200 {
            let attempt = tokio::time::timeout(Duration::from_secs(1), self.send_bytes(peer, frame));
            if let Ok(Ok(())) = attempt.await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("could not send to {peer}");
    }

    /// The next message received, at most `limit` from now.
    pub async fn next(&mut self, limit: Duration) -> Option<(PeerId, Message)> {
        tokio::time::timeout(limit, self.inbox.recv()).await.ok().flatten()
    }
}

/// A wantlist message of these entries.
pub fn wants(cids: &[Cid], want_type: WantType, send_dont_have: bool) -> Message {
    let entries = cids
        .iter()
        .map(|c| Entry { block: c.to_bytes(), priority: 1, cancel: false, want_type: want_type as i32, send_dont_have })
        .collect();
    Message { wantlist: Some(Wantlist { entries, full: false }), ..Message::default() }
}

async fn read_frame(stream: &mut libp2p::Stream) -> std::io::Result<Option<Bytes>> {
    use futures::AsyncReadExt;
    let mut len = 0u64;
    for i in 0..10 {
        let mut b = [0u8; 1];
        if stream.read(&mut b).await? == 0 {
            return Ok(None);
        }
        len |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).await?;
    Ok(Some(body.into()))
}
