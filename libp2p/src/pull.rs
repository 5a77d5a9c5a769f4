//! Pulling what announcements say we lack, from one peer at a time.
//!
//! An announcement lists the announcer's heads. After taking in the events
//! it carried, the heads still missing here are *wanted*: each is recorded
//! once per stream with the peer that announced it, and pulled from that
//! peer after [`NodeConfig::pull_delay`](crate::NodeConfig::pull_delay)
//! (the events usually arrive meanwhile, in another announcement), and not
//! while announcements keep bringing events to the stream (on a loaded
//! machine the gossip runs late, and a pull would bring twice what is on
//! its way: it brings everything the peer holds that we lack). The same
//! heads announced by other peers meanwhile are not pulled again: a node
//! never asks several peers for the same new events at once. A pull is a
//! fresh sync session ([`Sessions::resync`](merkle_clock::sync::Sessions::resync))
//! with the peer, started only when no exchange with it is under way. When
//! that exchange ends and a head is still missing, it is forgotten; the next
//! announcement of it (the peers announce periodically) wants it again,
//! possibly from another peer.

use std::collections::HashMap;

use libp2p::PeerId;
use merkle_clock::{Cid, Replica, StreamStore};
use tokio::time::Instant;
use tracing::{debug, trace, warn};

use crate::node::Node;

/// A head wanted on one stream.
struct Want {
    /// Whom to pull it from: the peer that announced it first.
    peer: PeerId,
    /// When to pull, if it has not arrived by then.
    due: Instant,
    /// The pull was started (the exchange with `peer` is under way).
    started: bool,
}

/// The heads wanted on one stream, at most
/// [`NodeConfig::max_pulls`](crate::NodeConfig::max_pulls).
#[derive(Default)]
pub(crate) struct Pulls {
    wants: HashMap<Cid, Want>,
}

impl Pulls {
    /// Records the heads of an announcement by `peer` that are not in
    /// `replica`'s DAG (a pending one lacks ancestors), unless already wanted.
    /// Returns how many were new.
    pub(crate) fn note<S: ?Sized + StreamStore>(
        &mut self,
        replica: &Replica<S>,
        heads: &[Cid],
        peer: PeerId,
        due: Instant,
        max: usize,
    ) -> usize {
        let mut added = 0;
        for head in heads {
            if self.wants.len() >= max {
                break;
            }
            if replica.contains(head) || self.wants.contains_key(head) {
                continue;
            }
            self.wants.insert(*head, Want { peer, due, started: false });
            added += 1;
        }
        added
    }

    /// Whether no head is wanted.
    pub(crate) fn is_empty(&self) -> bool {
        self.wants.is_empty()
    }

    /// Forgets what arrived (the events are in the DAG).
    fn drop_arrived<S: ?Sized + StreamStore>(&mut self, replica: &Replica<S>) {
        self.wants.retain(|cid, _| !replica.contains(cid));
    }

    /// A peer went away: what was wanted from it is forgotten.
    pub(crate) fn remove_peer(&mut self, peer: PeerId) {
        self.wants.retain(|_, w| w.peer != peer);
    }
}

impl<S: ?Sized + StreamStore + 'static> Node<S> {
    /// The pulls that are due: for every peer with wanted heads past their
    /// delay and no exchange under way (in either direction:
    /// [`NodeConfig::exchange_grace`](crate::NodeConfig::exchange_grace)),
    /// a fresh session. Pulls whose
    /// exchange ended without bringing the heads are forgotten.
    pub(crate) async fn pull_due(&mut self, now: Instant) {
        let streams: Vec<Cid> = self.streams.keys().copied().collect();
        for stream in streams {
            let Some(slot) = self.streams.get_mut(&stream) else { continue };
            // While announcements keep bringing events, what is missing is
            // most likely on its way: a pull would bring it twice.
            if slot.pulls.is_empty() || slot.last_carried.is_some_and(|t| now < t + self.config.pull_delay) {
                continue;
            }
            slot.pulls.drop_arrived(&slot.replica);
            let mut start: Vec<PeerId> = Vec::new();
            let mut ended: Vec<Cid> = Vec::new();
            for (cid, want) in &slot.pulls.wants {
                // A peer sending us a long reply in parts is busy too: a
                // pull would restart that exchange and bring its parts again.
                let busy = self.outbox.is_busy(want.peer, stream, now)
                    || slot.sessions.state(&want.peer).is_some_and(|s| s.expecting_more());
                if want.started {
                    if !busy {
                        ended.push(*cid);
                    }
                } else if want.due <= now && !busy && !start.contains(&want.peer) {
                    start.push(want.peer);
                }
            }
            for cid in ended {
                trace!(%stream, %cid, "a pull ended without the head; forgotten");
                slot.pulls.wants.remove(&cid);
            }
            let t = self.started.elapsed();
            let mut out = Vec::new();
            for peer in start {
                if !self.connected.contains(&peer) {
                    slot.pulls.remove_peer(peer);
                    continue;
                }
                for w in slot.pulls.wants.values_mut().filter(|w| w.peer == peer && w.due <= now) {
                    w.started = true;
                }
                self.stats.pulls += 1;
                slot.sessions.resync(peer, t);
                match slot.sessions.speak(&slot.replica, &peer, t).await {
                    Ok(Some(m)) => out.push((peer, m)),
                    Ok(None) => {}
                    Err(e) => warn!(%peer, %stream, "making a sync message failed: {e}"),
                }
            }
            for (peer, m) in out {
                debug!(%peer, %stream, "pulling announced heads");
                self.send_sync(peer, stream, m);
            }
        }
    }
}
