//! The glue between request-response and the core's session driver
//! ([`Sessions`](merkle_clock::sync::Sessions), one per stream).
//!
//! Sync messages are one-way. A request carries one message; its response
//! carries the receiver's reply (what the driver's `receive` returned), or
//! says there is none. A reply that arrives in a response is taken in like
//! any message, and *its* reply goes out as a new request. Each (peer,
//! stream) has at most one request outstanding: messages made meanwhile wait
//! in a small queue ([`Outbox`]) and go, in order, when the response comes.
//! Everything else (per-peer state, timeouts, back-off, caps, anti-entropy)
//! is the driver's.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use libp2p::PeerId;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use merkle_clock::sync::{Message, Received};
use merkle_clock::{Cid, StreamStore};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tracing::{debug, trace, warn};

use crate::codec::{SyncRequest, SyncResponse};
use crate::handle::{Source, Stats, Update};
use crate::node::{Node, StreamSlot};

/// What a request in flight was for.
pub(crate) enum Pending {
    /// A sync message to a peer on a stream.
    Sync(PeerId, Cid),
    /// A block fetch: the job and the indices of its CIDs asked.
    Fetch(u64, Vec<usize>),
}

/// What [`Outbox::offer`] did with a message.
pub(crate) enum Offer {
    /// Nothing is outstanding: send it now (the pair is busy from now on).
    Send(Bytes),
    /// It waits behind the outstanding request.
    Queued,
    /// The queue was full: it was dropped, with the queue.
    Full,
}

/// The (peer, stream) pairs with an exchange under way: a sync request of
/// ours outstanding (and the messages waiting behind it), or one of theirs
/// answered with a message, whose next request we expect.
#[derive(Default)]
pub(crate) struct Outbox {
    busy: HashMap<(PeerId, Cid), VecDeque<Bytes>>,
    /// Pairs whose request we answered with a message, until when we expect
    /// their next one (no request of ours to them meanwhile), and whether
    /// that message was a part that more follow.
    serving: HashMap<(PeerId, Cid), (Instant, bool)>,
}

impl Outbox {
    /// Whether a request of ours to the pair is outstanding.
    pub(crate) fn is_sending(&self, peer: PeerId, stream: Cid) -> bool {
        self.busy.contains_key(&(peer, stream))
    }

    /// Whether an exchange with the pair is under way at `now`, in either
    /// direction: then no new request of ours goes to it.
    pub(crate) fn is_busy(&self, peer: PeerId, stream: Cid, now: Instant) -> bool {
        self.is_sending(peer, stream) || self.serving.get(&(peer, stream)).is_some_and(|(t, _)| *t > now)
    }

    /// Whether we are sending the pair a long reply in parts, each answering
    /// its next request (expected before the grace ends).
    pub(crate) fn is_serving_parts(&self, peer: PeerId, stream: Cid, now: Instant) -> bool {
        self.serving.get(&(peer, stream)).is_some_and(|(t, part)| *part && *t > now)
    }

    /// We answered a request of the pair: with a message (`Some`: its next
    /// request is expected until then; `part`: the message said more
    /// follow), or with nothing (the exchange ended).
    pub(crate) fn served(&mut self, peer: PeerId, stream: Cid, until: Option<Instant>, part: bool) {
        match until {
            Some(t) => {
                self.serving.insert((peer, stream), (t, part));
            }
            None => {
                self.serving.remove(&(peer, stream));
            }
        }
    }

    /// A message for `peer` on `stream`: to send now, or queued (at most
    /// `max` waiting).
    pub(crate) fn offer(&mut self, peer: PeerId, stream: Cid, message: Bytes, max: usize) -> Offer {
        match self.busy.get_mut(&(peer, stream)) {
            None => {
                self.busy.insert((peer, stream), VecDeque::new());
                Offer::Send(message)
            }
            Some(queue) if queue.len() < max => {
                queue.push_back(message);
                Offer::Queued
            }
            Some(queue) => {
                queue.clear();
                Offer::Full
            }
        }
    }

    /// The outstanding request of the pair was answered (or failed): the next
    /// message to send, which keeps the pair busy, or `None` and the pair is
    /// idle.
    pub(crate) fn next(&mut self, peer: PeerId, stream: Cid) -> Option<Bytes> {
        let queue = self.busy.get_mut(&(peer, stream))?;
        let next = queue.pop_front();
        if next.is_none() {
            self.busy.remove(&(peer, stream));
        }
        next
    }

    /// Drops what waits for the pair (its session restarted).
    pub(crate) fn clear(&mut self, peer: PeerId, stream: Cid) {
        if let Some(queue) = self.busy.get_mut(&(peer, stream)) {
            queue.clear();
        }
    }

    /// Forgets everything about a peer that went away.
    pub(crate) fn remove_peer(&mut self, peer: PeerId) {
        self.busy.retain(|(p, _), _| *p != peer);
        self.serving.retain(|(p, _), _| *p != peer);
    }
}

impl<S: ?Sized + StreamStore + 'static> Node<S> {
    /// The driver's clock: time since the node started.
    pub(crate) fn now(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// `peer` follows `stream`: it joins the stream's driver (with the
    /// durable state kept from its last visit, if any).
    pub(crate) fn join(&mut self, peer: PeerId, stream: Cid) {
        let now = self.now();
        let Some(slot) = self.streams.get_mut(&stream) else { return };
        if slot.sessions.contains(&peer) {
            return;
        }
        match self.durable.remove(&(peer, stream)) {
            Some(durable) => slot.sessions.connect_with(peer, &durable, now),
            None => {
                slot.sessions.connect(peer, now);
            }
        }
        debug!(%peer, %stream, "peer joins the stream's sessions");
    }

    /// `peer` has no connection left: it leaves every driver; the durable
    /// part of its states is kept for when it comes back.
    pub(crate) fn leave(&mut self, peer: PeerId) {
        for (stream, slot) in &mut self.streams {
            if let Some(durable) = slot.sessions.disconnect(&peer) {
                self.durable.insert((peer, *stream), durable);
            }
        }
        self.outbox.remove_peer(peer);
        for slot in self.streams.values_mut() {
            slot.pulls.remove_peer(peer);
        }
        // Their failures are of no interest now.
        self.requests.retain(|_, p| !matches!(p, Pending::Sync(q, _) if *q == peer));
    }

    /// Sends a sync message, or queues it behind the pair's outstanding request.
    pub(crate) fn send_sync(&mut self, peer: PeerId, stream: Cid, message: impl Into<Bytes>) {
        if !self.connected.contains(&peer) {
            return;
        }
        match self.outbox.offer(peer, stream, message.into(), self.config.max_queued_messages) {
            Offer::Send(message) => self.request(peer, stream, message),
            Offer::Queued => self.stats.messages_queued += 1,
            Offer::Full => {
                self.stats.queue_overflows += 1;
                debug!(%peer, %stream, "sync queue full; the session restarts");
                let now = self.now();
                if let Some(slot) = self.streams.get_mut(&stream) {
                    slot.sessions.lost(&peer, now);
                }
            }
        }
    }

    fn request(&mut self, peer: PeerId, stream: Cid, message: Bytes) {
        self.stats.requests_sent += 1;
        self.stats.note_sync_sent(message.len());
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, SyncRequest::Sync { stream, message });
        self.requests.insert(id, Pending::Sync(peer, stream));
    }

    /// Asks the driver for a message now and sends it: to every peer of the
    /// stream (`None`: after a local append) or to one. Pairs with a request
    /// outstanding are skipped: what they are owed goes when it is answered.
    /// A peer not in the driver (it left, or does not have the stream) is
    /// not brought back in: only [`Node::join`] does that.
    pub(crate) async fn push(&mut self, stream: Cid, to: Option<PeerId>) {
        let now = self.now();
        let instant = Instant::now();
        let Some(slot) = self.streams.get_mut(&stream) else { return };
        let peers: Vec<PeerId> = match to {
            Some(p) => vec![p],
            None => slot.sessions.peers().copied().collect(),
        };
        let mut out = Vec::new();
        for peer in peers {
            if self.outbox.is_busy(peer, stream, instant) || !slot.sessions.contains(&peer) {
                continue;
            }
            match slot.sessions.speak(&slot.replica, &peer, now).await {
                Ok(Some(m)) => out.push((peer, m)),
                Ok(None) => {}
                Err(e) => warn!(%peer, %stream, "making a sync message failed: {e}"),
            }
        }
        for (peer, m) in out {
            self.send_sync(peer, stream, m);
        }
    }

    /// The timer: every stream's driver says what is due, and it is sent.
    /// Pairs with an exchange under way are skipped (what they are owed
    /// goes in that exchange, or at a later tick).
    pub(crate) async fn tick_sessions(&mut self) {
        let now = self.now();
        let instant = Instant::now();
        let streams: Vec<Cid> = self.streams.keys().copied().collect();
        for stream in streams {
            let Some(slot) = self.streams.get_mut(&stream) else { continue };
            let outbox = &self.outbox;
            let busy = |p: &PeerId| outbox.is_busy(*p, stream, instant);
            let due = match slot.sessions.tick_skipping(&slot.replica, now, busy).await {
                Ok(due) => due,
                Err(e) => {
                    warn!(%stream, "the session driver failed: {e}");
                    continue;
                }
            };
            for (peer, why) in due.restarts {
                debug!(%peer, %stream, "sync session restarts: {why}");
                self.outbox.clear(peer, stream);
            }
            for out in due.messages {
                self.send_sync(out.peer, stream, out.message);
            }
        }
    }

    pub(crate) async fn on_sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.on_request(peer, request, channel).await;
                }
                request_response::Message::Response { request_id, response } => {
                    self.on_response(peer, request_id, response).await;
                }
            },
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                self.stats.outbound_failures += 1;
                match self.requests.remove(&request_id) {
                    Some(Pending::Sync(p, stream)) => {
                        debug!(%peer, %stream, "sync request failed: {error}");
                        self.lost(p, stream);
                    }
                    Some(Pending::Fetch(job, _)) => {
                        debug!(%peer, "block fetch failed: {error}");
                        self.fetch_next_peer(job);
                    }
                    None => {}
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                self.stats.inbound_failures += 1;
                debug!(%peer, "inbound sync request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// A message to `peer` was lost or refused: its session restarts now,
    /// and what waited behind the request is dropped.
    fn lost(&mut self, peer: PeerId, stream: Cid) {
        let now = self.now();
        self.outbox.clear(peer, stream);
        let _ = self.outbox.next(peer, stream);
        if let Some(slot) = self.streams.get_mut(&stream) {
            slot.sessions.lost(&peer, now);
        }
    }

    async fn on_request(&mut self, peer: PeerId, request: SyncRequest, channel: ResponseChannel<SyncResponse>) {
        let response = match request {
            // A request that raced in on a connection being closed (offline).
            _ if !self.connected.contains(&peer) => {
                self.stats.offline_refusals += 1;
                SyncResponse::Refused
            }
            SyncRequest::Sync { stream, message } => {
                self.stats.requests_served += 1;
                self.stats.sync_bytes_received += message.len() as u64;
                if let Some(answer) = self.go_on(peer, stream, &message).await {
                    // A part with more to follow: answered before it is
                    // taken in, so the peer makes the next one meanwhile.
                    self.stats.note_sync_sent(answer.len());
                    let part = Message::says_more(&answer);
                    self.outbox.served(peer, stream, Some(self.serving_until(part)), part);
                    if self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, SyncResponse::Message(answer.into()))
                        .is_err()
                    {
                        debug!(%peer, "the response could not be sent (the connection closed)");
                    }
                    if let Some(SyncResponse::Message(reply)) = self.take_in(peer, stream, &message).await {
                        self.send_sync(peer, stream, reply);
                    }
                    return;
                }
                let response = self.take_in(peer, stream, &message).await;
                if let Some(SyncResponse::Message(m)) = &response {
                    self.stats.note_sync_sent(m.len());
                    // Its answer probably follows: no request of ours meanwhile.
                    let part = Message::says_more(m);
                    self.outbox.served(peer, stream, Some(self.serving_until(part)), part);
                } else {
                    self.outbox.served(peer, stream, None, false);
                }
                response.unwrap_or(SyncResponse::Done)
            }
            SyncRequest::Get { stream, cids } => self.serve_get(peer, stream, &cids).await,
        };
        if self.swarm.behaviour_mut().sync.send_response(channel, response).is_err() {
            debug!(%peer, "the response could not be sent (the connection closed)");
        }
    }

    /// Until when a pair we answered with a message is left alone (no
    /// request of ours), unless its next request comes first: the exchange
    /// grace, or, after a part that more follow, the request timeout. The
    /// peer answers a part before taking it in, but it reads our next part
    /// only once it has taken in the previous one, which on a loaded
    /// machine can take longer than the grace; a request of ours meanwhile
    /// would carry the part after it, and parts that cross arrive out of
    /// order (their blocks wait, or come twice).
    fn serving_until(&self, part: bool) -> Instant {
        let wait =
            if part { self.config.request_timeout.max(self.config.exchange_grace) } else { self.config.exchange_grace };
        Instant::now() + wait
    }

    /// Asks the stream's driver whether a message from `peer` is a part
    /// that more follow, and if so for the answer to send before it is taken
    /// in (`Sessions::go_on`).
    async fn go_on(&mut self, peer: PeerId, stream: Cid, message: &[u8]) -> Option<Vec<u8>> {
        let now = self.now();
        let slot = self.streams.get_mut(&stream)?;
        match slot.sessions.go_on(&slot.replica, &peer, message, now).await {
            Ok(answer) => answer,
            Err(e) => {
                warn!(%peer, %stream, "making a sync message failed: {e}");
                None
            }
        }
    }

    /// Gives a message from `peer` to the stream's driver. Returns the
    /// response to a request that carried it: the reply, `None` when there
    /// is none, `UnknownStream` or `Refused`.
    async fn take_in(&mut self, peer: PeerId, stream: Cid, message: &Bytes) -> Option<SyncResponse> {
        if !self.streams.contains_key(&stream) {
            debug!(%peer, %stream, "sync message for a stream this node does not have");
            return Some(SyncResponse::UnknownStream);
        }
        self.join(peer, stream);
        let now = self.now();
        let slot = self.streams.get_mut(&stream).expect("checked above");
        let before = slot.replica.len();
        let began = Instant::now();
        let result = slot.sessions.receive_shared(&mut slot.replica, &peer, message, now).await;
        let received = result.as_ref().ok().map(|r| &r.received);
        note_received(slot, &mut self.stats, &self.updates, peer, before, received);
        self.count_invalid(peer, received.map_or(0, |r| r.rejected));
        trace!(%peer, %stream, bytes = message.len(), took = ?began.elapsed(), "sync message taken in");
        match result {
            Ok(reply) => reply.reply.map(|m| SyncResponse::Message(m.into())),
            Err(e) => {
                self.stats.sync_garbage += 1;
                warn!(%peer, %stream, bytes = message.len(), "sync message refused: {e}");
                Some(SyncResponse::Refused)
            }
        }
    }

    async fn on_response(&mut self, peer: PeerId, id: OutboundRequestId, response: SyncResponse) {
        let (p, stream) = match self.requests.remove(&id) {
            Some(Pending::Sync(p, stream)) => (p, stream),
            Some(Pending::Fetch(job, asked)) => return self.on_blocks(peer, job, asked, response),
            None => return,
        };
        self.stats.responses_received += 1;
        match response {
            SyncResponse::Message(bytes) => {
                self.stats.sync_bytes_received += bytes.len() as u64;
                if let Some(answer) = self.go_on(p, stream, &bytes).await {
                    // A part with more to follow: our answer goes now (after
                    // what already waits), so the peer makes the next part
                    // while we take this one in; the pair stays busy with it.
                    let first = match self.outbox.offer(p, stream, answer.into(), usize::MAX) {
                        Offer::Send(answer) => Some(answer),
                        _ => self.outbox.next(p, stream),
                    };
                    if let Some(first) = first {
                        self.request(p, stream, first);
                    }
                    match self.take_in(p, stream, &bytes).await {
                        Some(SyncResponse::Message(reply)) => self.send_sync(p, stream, reply),
                        Some(_) => self.outbox.clear(p, stream),
                        None => {}
                    }
                    return;
                }
                if self.outbox.is_serving_parts(p, stream, Instant::now())
                    && let Some(slot) = self.streams.get_mut(&stream)
                {
                    // Our parts answer its requests: what we owe goes in the
                    // next one, not in a second exchange beside it (parts
                    // would cross and arrive out of order).
                    slot.sessions.hold_reply(&p);
                }
                match self.take_in(p, stream, &bytes).await {
                    Some(SyncResponse::Message(reply)) => {
                        // Behind what already waits (the pair is still busy).
                        if let Offer::Send(reply) = self.outbox.offer(p, stream, reply, usize::MAX) {
                            return self.request(p, stream, reply);
                        }
                    }
                    Some(_) => {
                        // Refused: the driver restarted the session.
                        self.outbox.clear(p, stream);
                    }
                    None => {}
                }
            }
            SyncResponse::Done => {}
            SyncResponse::UnknownStream => {
                debug!(%peer, %stream, "the peer does not replicate this stream; it leaves its sessions");
                self.outbox.clear(p, stream);
                if let Some(slot) = self.streams.get_mut(&stream) {
                    slot.sessions.disconnect(&p);
                }
            }
            SyncResponse::Refused => {
                debug!(%peer, %stream, "the peer refused our sync message");
                self.lost(p, stream);
                return;
            }
            SyncResponse::Blocks(_) => {
                self.stats.sync_garbage += 1;
                warn!(%peer, %stream, "blocks in answer to a sync message; the session restarts");
                self.lost(p, stream);
                return;
            }
        }
        match self.outbox.next(p, stream) {
            Some(m) => self.request(p, stream, m),
            // Idle: whatever a push skipped meanwhile goes now (pushing
            // nodes only; the others' next tick sees to it).
            None if self.config.sessions.push => self.push(stream, Some(p)).await,
            None => {}
        }
    }
}

/// Accounts for a message taken in: counts, logs refused blocks, marks the
/// stream for announcement and tells subscribers when events joined.
fn note_received<S: ?Sized + StreamStore>(
    slot: &mut StreamSlot<S>,
    stats: &mut Stats,
    updates: &broadcast::Sender<Update>,
    peer: PeerId,
    before: usize,
    received: Option<&Received>,
) {
    let stream = *slot.replica.stream_id();
    if let Some(r) = received {
        stats.blocks_duplicate += r.duplicate as u64;
        if r.rejected > 0 {
            stats.blocks_rejected += r.rejected as u64;
            let first = r.rejections.first().map(ToString::to_string).unwrap_or_default();
            warn!(%peer, %stream, refused = r.rejected, "blocks from the peer refused (first: {first}); ignored");
        }
    }
    let added = slot.replica.len().saturating_sub(before);
    if added > 0 {
        slot.dirty = true;
        stats.events_received += added as u64;
        let _ = updates.send(Update { stream, source: Source::Peer(peer), added });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use merkle_clock::Event;
    use std::time::Duration;

    #[test]
    fn an_exchange_in_either_direction_keeps_the_pair_busy() {
        let mut o = Outbox::default();
        let peer = PeerId::random();
        let stream = *Event::genesis("outbox").encode().unwrap().cid();
        let now = Instant::now();
        assert!(!o.is_busy(peer, stream, now));
        // Our request: busy until it is answered; what comes meanwhile waits.
        assert!(matches!(o.offer(peer, stream, Bytes::from_static(&[1]), 2), Offer::Send(_)));
        assert!(o.is_busy(peer, stream, now));
        assert!(matches!(o.offer(peer, stream, Bytes::from_static(&[2]), 2), Offer::Queued));
        assert_eq!(o.next(peer, stream).as_deref(), Some(&[2][..]));
        assert_eq!(o.next(peer, stream), None);
        assert!(!o.is_busy(peer, stream, now));
        // Their request, answered with a message: busy until the grace ends
        // or the exchange ends.
        o.served(peer, stream, Some(now + Duration::from_secs(1)), false);
        assert!(o.is_busy(peer, stream, now) && !o.is_sending(peer, stream));
        assert!(!o.is_busy(peer, stream, now + Duration::from_secs(2)));
        o.served(peer, stream, None, false);
        assert!(!o.is_busy(peer, stream, now));
        o.served(peer, stream, Some(now + Duration::from_secs(1)), false);
        o.remove_peer(peer);
        assert!(!o.is_busy(peer, stream, now));
    }
}
