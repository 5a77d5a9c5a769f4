//! Announcements on the gossipsub topics: the node's own (when heads change,
//! when a peer subscribes, periodically), those of [`NodeBroadcaster`]s,
//! and what the node does with the announcements it receives.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use libp2p::PeerId;
use libp2p::gossipsub::{self, MessageAcceptance};
use merkle_clock::sync::transport::{
    Announcement as TransportAnnouncement, Broadcaster, PeerId as TransportPeer, TransportError,
};
use merkle_clock::{Cid, StreamStore};
use rand::Rng;
use tokio::sync::broadcast;
use tokio::time::{Duration, Instant};
use tracing::{debug, trace, warn};

use crate::announce::{Announcement, heads_digest};
use crate::handle::{Command, NodeError, NodeHandle, StreamAnnouncement};
use crate::node::Node;

impl<S: ?Sized + StreamStore + 'static> Node<S> {
    /// The announce interval with its jitter applied.
    pub(crate) fn jittered_interval(&self) -> Duration {
        let j = self.config.announce_jitter.clamp(0.0, 0.95);
        let f = if j > 0.0 { rand::thread_rng().gen_range(1.0 - j..=1.0 + j) } else { 1.0 };
        self.config.announce_interval.mul_f64(f)
    }

    /// Publishes the announcements that are due: changed streams past the
    /// debounce, and every stream whose periodic announcement is due.
    pub(crate) fn announce_due(&mut self, now: Instant) {
        if self.offline {
            return;
        }
        let due: Vec<Cid> = self
            .streams
            .iter()
            .filter(|(_, s)| {
                (s.dirty && s.last_announce.is_none_or(|t| now - t >= self.config.announce_debounce))
                    || now >= s.next_announce
            })
            .map(|(c, _)| *c)
            .collect();
        for stream in due {
            let next = now + self.jittered_interval();
            let Some(slot) = self.streams.get_mut(&stream) else { continue };
            slot.dirty = false;
            slot.last_announce = Some(now);
            slot.next_announce = next;
            let heads = slot.replica.heads();
            match self.publish(stream, heads, Vec::new()) {
                Ok(()) => {}
                Err(NodeError::Publish(e)) => trace!(%stream, "announcement not published: {e}"),
                Err(e) => debug!(%stream, "announcement not published: {e}"),
            }
        }
    }

    /// Publishes `heads` (and `blocks`) on the stream's topic: the one path
    /// of the node's own announcements and of [`NodeBroadcaster::announce`].
    pub(crate) fn publish(&mut self, stream: Cid, mut heads: Vec<Cid>, blocks: Vec<Vec<u8>>) -> Result<(), NodeError> {
        let Some(slot) = self.streams.get(&stream) else { return Err(NodeError::UnknownStream(stream)) };
        heads.sort_unstable();
        heads.dedup();
        let mut a = Announcement::new(stream, slot.replica.len() as u64, &heads, self.config.max_announced_heads);
        a.blocks = blocks;
        match self.swarm.behaviour_mut().gossipsub.publish(slot.topic.clone(), a.encode()) {
            Ok(_) => {
                self.stats.announcements_sent += 1;
                trace!(%stream, heads = heads.len(), "announced");
                Ok(())
            }
            Err(e) => Err(NodeError::Publish(e.to_string())),
        }
    }

    pub(crate) async fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message { propagation_source, message_id, message } => {
                let gossip = &mut self.swarm.behaviour_mut().gossipsub;
                if !self.connected.contains(&propagation_source) {
                    // It raced in on a connection being closed (offline).
                    self.stats.offline_refusals += 1;
                    gossip.report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        MessageAcceptance::Ignore,
                    );
                    return;
                }
                let Some(&stream) = self.topics.get(&message.topic) else {
                    gossip.report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        MessageAcceptance::Ignore,
                    );
                    return;
                };
                let announcement = match Announcement::decode(&message.data) {
                    Ok(a) if a.stream == stream => a,
                    Ok(a) => {
                        self.stats.gossip_garbage += 1;
                        warn!(peer = %propagation_source, %stream, other = %a.stream, "announcement for another stream on this topic; ignored");
                        gossip.report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Reject,
                        );
                        return;
                    }
                    Err(e) => {
                        self.stats.gossip_garbage += 1;
                        warn!(peer = %propagation_source, %stream, bytes = message.data.len(), "{e}; ignored");
                        gossip.report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Reject,
                        );
                        return;
                    }
                };
                gossip.report_message_validation_result(&message_id, &propagation_source, MessageAcceptance::Accept);
                self.stats.announcements_received += 1;
                let author = message.source.unwrap_or(propagation_source);
                if self.announcements.receiver_count() > 0 {
                    let heard = TransportAnnouncement {
                        from: TransportPeer::from(author.to_string()),
                        heads: announcement.heads.clone(),
                        blocks: announcement.blocks.iter().map(|b| Bytes::copy_from_slice(b)).collect(),
                    };
                    let _ = self.announcements.send((stream, heard));
                }
                // Sync with the announcer when connected to it, else with the
                // peer that forwarded it.
                let peer = Some(author).filter(|p| self.connected.contains(p)).unwrap_or(propagation_source);
                self.on_announcement(peer, announcement).await;
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                let Some(&stream) = self.topics.get(&topic) else { return };
                if let Some(slot) = self.streams.get_mut(&stream) {
                    trace!(%peer_id, %stream, "peer subscribed; announcing soon");
                    slot.dirty = true;
                }
                if self.connected.contains(&peer_id) {
                    self.join(peer_id, stream);
                }
            }
            _ => {}
        }
    }

    /// A peer announced its heads: it joins the stream's sessions; when its
    /// heads differ from ours, the driver is asked for a message now.
    async fn on_announcement(&mut self, peer: PeerId, a: Announcement) {
        if !self.connected.contains(&peer) {
            return;
        }
        self.join(peer, a.stream);
        let Some(slot) = self.streams.get(&a.stream) else { return };
        let mine = slot.replica.heads();
        let differs = if a.is_complete() { a.heads != mine } else { a.heads_digest != heads_digest(&mine) };
        if differs {
            trace!(%peer, stream = %a.stream, "announced heads differ");
            self.push(a.stream, Some(peer)).await;
        }
    }
}

/// A [`Broadcaster`] on one stream's gossipsub topic, from
/// [`NodeHandle::broadcaster`].
///
/// [`announce`](Broadcaster::announce) publishes an
/// [`Announcement`] through the node, the same path as the node's own
/// announcements (the event count is the node's replica's); the blocks ride
/// along in it, so the whole must fit in one gossip message (64 KiB by
/// default). It fails with [`TransportError::Backend`] when nobody follows
/// the topic yet or the message is too large, [`TransportError::Closed`]
/// when the node stopped.
///
/// [`next`](Broadcaster::next) yields every well-formed announcement that
/// arrives on the topic from the moment the broadcaster was made (the
/// announcer's peer id as a string, its listed heads, its blocks); one that
/// falls too far behind skips the oldest. `Ok(None)` once the node stopped.
pub struct NodeBroadcaster<S: ?Sized + StreamStore + 'static> {
    handle: NodeHandle<S>,
    stream: Cid,
    rx: broadcast::Receiver<StreamAnnouncement>,
}

impl<S: ?Sized + StreamStore + 'static> fmt::Debug for NodeBroadcaster<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeBroadcaster").field("peer", &self.handle.peer_id).field("stream", &self.stream).finish()
    }
}

impl<S: ?Sized + StreamStore + 'static> NodeBroadcaster<S> {
    pub(crate) fn new(handle: NodeHandle<S>, stream: Cid, rx: broadcast::Receiver<StreamAnnouncement>) -> Self {
        NodeBroadcaster { handle, stream, rx }
    }
}

fn transport_error(e: NodeError) -> TransportError {
    match e {
        NodeError::Stopped => TransportError::Closed,
        e => TransportError::Backend(Box::new(e)),
    }
}

#[async_trait]
impl<S: ?Sized + StreamStore + 'static> Broadcaster for NodeBroadcaster<S> {
    fn topic(&self) -> &Cid {
        &self.stream
    }

    async fn announce(&self, heads: Vec<Cid>, blocks: Vec<Bytes>) -> Result<(), TransportError> {
        let blocks = blocks.into_iter().map(|b| b.to_vec()).collect();
        let stream = self.stream;
        let published = self.handle.call(|tx| Command::Announce(stream, heads, blocks, tx)).await;
        published.map_err(transport_error)?.map_err(transport_error)
    }

    async fn next(&mut self) -> Result<Option<TransportAnnouncement>, TransportError> {
        loop {
            // The handle keeps the channel open: the node's end is its commands.
            let received = tokio::select! {
                r = self.rx.recv() => r,
                () = self.handle.commands.closed() => return Ok(None),
            };
            match received {
                Ok((stream, a)) if stream == self.stream => return Ok(Some(a)),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
            }
        }
    }
}
