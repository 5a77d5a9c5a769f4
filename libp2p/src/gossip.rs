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
use merkle_clock::{Block, Cid, Ingest, StreamStore};
use rand::Rng;
use tokio::sync::broadcast;
use tokio::time::{Duration, Instant};
use tracing::{debug, trace, warn};

use crate::announce::{Announcement, heads_digest};
use crate::handle::{Command, NodeError, NodeHandle, Source, StreamAnnouncement, Update};
use crate::node::Node;

/// Most gossip validation results held for the next tick; one more reports
/// them all at once.
const MAX_DEFERRED_VALIDATIONS: usize = 1024;

/// Most bytes of events carried in one announcement (one gossip message);
/// more go in several.
pub(crate) const ANNOUNCE_PART_BYTES: usize = 32 << 10;

impl<S: ?Sized + StreamStore + 'static> Node<S> {
    /// The announce interval with its jitter applied.
    pub(crate) fn jittered_interval(&self) -> Duration {
        let j = self.config.announce_jitter.clamp(0.0, 0.95);
        let f = if j > 0.0 { rand::thread_rng().gen_range(1.0 - j..=1.0 + j) } else { 1.0 };
        self.config.announce_interval.mul_f64(f)
    }

    /// Publishes the announcements that are due: changed streams past the
    /// debounce, and every stream whose periodic announcement is due. The
    /// local events appended since the last announcement ride along when
    /// their blocks come to at most
    /// [`NodeConfig::announce_block_bytes`](crate::NodeConfig::announce_block_bytes)
    /// (all of them or none: a receiver given only the newest would pull
    /// their parents anyway), in parts of at most [`ANNOUNCE_PART_BYTES`],
    /// oldest first, each announcing the heads.
    pub(crate) async fn announce_due(&mut self, now: Instant) {
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
            let fresh = std::mem::take(&mut slot.fresh);
            let mut parts = self.fresh_blocks(&stream, &fresh).await;
            let carried = !parts.is_empty();
            if parts.is_empty() {
                parts.push(Vec::new());
            }
            let mut published = true;
            for blocks in parts {
                if let Err(e) = self.publish(stream, heads.clone(), blocks) {
                    published = false;
                    // Their blocks go with the next announcement, if they fit.
                    if let Some(slot) = self.streams.get_mut(&stream) {
                        let newer = std::mem::replace(&mut slot.fresh, fresh.clone());
                        slot.fresh.extend(newer);
                    }
                    match e {
                        NodeError::Publish(e) => trace!(%stream, "announcement not published: {e}"),
                        e => debug!(%stream, "announcement not published: {e}"),
                    }
                    break;
                }
            }
            if carried
                && published
                && let Some(slot) = self.streams.get_mut(&stream)
            {
                // Every peer on the topic gets them: no session pushes them.
                slot.sessions.delivered(&fresh);
            }
        }
    }

    /// Reports the validation results held until `now` (all of them with
    /// `None`): gossipsub forwards the accepted announcements to the mesh
    /// peers that did not say they have them.
    pub(crate) fn report_validations(&mut self, now: Option<Instant>) {
        let gossip = &mut self.swarm.behaviour_mut().gossipsub;
        while let Some((at, ..)) = self.validations.front() {
            if now.is_some_and(|now| *at > now) {
                break;
            }
            let (_, id, source, acceptance) = self.validations.pop_front().expect("checked");
            gossip.report_message_validation_result(&id, &source, acceptance);
        }
    }

    /// The blocks of `fresh` (local events not announced yet), in parts of
    /// at most [`ANNOUNCE_PART_BYTES`], when they come to at most
    /// `announce_block_bytes`; else none.
    async fn fresh_blocks(&self, stream: &Cid, fresh: &[Cid]) -> Vec<Vec<Vec<u8>>> {
        let budget = self.config.announce_block_bytes;
        let Some(slot) = self.streams.get(stream) else { return Vec::new() };
        if fresh.is_empty() || budget == 0 {
            return Vec::new();
        }
        let Ok(blocks) = slot.replica.store().get_many(fresh).await else { return Vec::new() };
        let mut size = 0usize;
        let mut parts: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut part_size = 0usize;
        for b in blocks {
            let Some(b) = b else { return Vec::new() };
            size = size.saturating_add(b.len());
            if size > budget {
                return Vec::new();
            }
            if parts.is_empty() || part_size + b.len() > ANNOUNCE_PART_BYTES {
                parts.push(Vec::new());
                part_size = 0;
            }
            part_size += b.len();
            parts.last_mut().expect("pushed above").push(b.bytes().to_vec());
        }
        parts
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
                self.stats.announcements_received += 1;
                self.stats.announcement_bytes_received += message.data.len() as u64;
                let author = message.source.unwrap_or(propagation_source);
                if self.announcements.receiver_count() > 0 {
                    let heard = TransportAnnouncement {
                        from: TransportPeer::from(author.to_string()),
                        heads: announcement.heads.clone(),
                        blocks: announcement.blocks.iter().map(|b| Bytes::copy_from_slice(b)).collect(),
                    };
                    let _ = self.announcements.send((stream, heard));
                }
                // Pull from the announcer when connected to it, else from the
                // peer that forwarded it.
                let peer = Some(author).filter(|p| self.connected.contains(p)).unwrap_or(propagation_source);
                let acceptance = self.on_announcement(peer, announcement).await;
                // Reported (and forwarded) `forward_delay` later: by then the
                // peers that got it too have said so (IDONTWANT), and are
                // not sent a copy. Refusals go at once.
                if self.validations.len() >= MAX_DEFERRED_VALIDATIONS || acceptance != MessageAcceptance::Accept {
                    self.report_validations(None);
                }
                let at = Instant::now() + self.config.forward_delay;
                self.validations.push_back((at, message_id, propagation_source, acceptance));
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

    /// A peer announced its heads: the events it carried are taken in
    /// (through the replica, which verifies each), the peer joins the
    /// stream's sessions, and the heads still missing here are wanted
    /// ([`Pulls`](crate::pull)). Returns whether gossipsub may forward the
    /// announcement: not when a carried block was refused.
    async fn on_announcement(&mut self, peer: PeerId, mut a: Announcement) -> MessageAcceptance {
        let stream = a.stream;
        let blocks = std::mem::take(&mut a.blocks);
        if !blocks.is_empty() && !self.take_announced(peer, stream, blocks).await {
            return MessageAcceptance::Reject;
        }
        if !self.connected.contains(&peer) {
            return MessageAcceptance::Accept;
        }
        self.join(peer, stream);
        let due = Instant::now() + self.config.pull_delay;
        let max = self.config.max_pulls;
        let Some(slot) = self.streams.get_mut(&stream) else { return MessageAcceptance::Accept };
        let mine = slot.replica.heads();
        let differs = if a.is_complete() { a.heads != mine } else { a.heads_digest != heads_digest(&mine) };
        if differs {
            let wanted = slot.pulls.note(&slot.replica, &a.heads, peer, due, max);
            trace!(%peer, %stream, wanted, "announced heads differ");
        }
        MessageAcceptance::Accept
    }

    /// Takes in the blocks an announcement carried. Returns `false` when one
    /// was refused (not a valid event of the stream): the announcement is
    /// garbage. Events taken in this way are not announced again (every
    /// peer on the topic gets the original).
    async fn take_announced(&mut self, peer: PeerId, stream: Cid, blocks: Vec<Vec<u8>>) -> bool {
        let Some(slot) = self.streams.get_mut(&stream) else { return true };
        let blocks: Vec<Block> = blocks.into_iter().map(Block::from_bytes).collect();
        let report = match slot.replica.ingest_many(blocks).await {
            Ok(r) => r,
            Err(e) => {
                warn!(%peer, %stream, "storing announced events failed: {e}");
                return true;
            }
        };
        let (mut refused, mut invalid) = (None, 0);
        for outcome in &report.outcomes {
            match outcome {
                Ingest::Duplicate => self.stats.blocks_duplicate += 1,
                Ingest::Rejected(why) => {
                    self.stats.blocks_rejected += 1;
                    invalid += 1;
                    refused.get_or_insert_with(|| why.to_string());
                }
                Ingest::Accepted | Ingest::Pending { .. } => {}
            }
        }
        // Every peer on the topic gets the announcement: no session pushes them.
        slot.sessions.delivered(&report.accepted);
        let added = report.accepted.len();
        if added > 0 {
            slot.last_carried = Some(Instant::now());
            self.stats.events_received += added as u64;
            self.stats.events_from_announcements += added as u64;
            let _ = self.updates.send(Update { stream, source: Source::Peer(peer), added });
        }
        if let Some(why) = refused {
            // A peer forwards an announcement only once it took it in, so
            // the refused events are the sending peer's, as in a session.
            self.count_invalid(peer, invalid);
            self.stats.gossip_garbage += 1;
            warn!(%peer, %stream, "an announcement carried a block that was refused ({why}); rejected");
            return false;
        }
        true
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
