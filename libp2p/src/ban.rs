//! Peers that keep sending invalid events are disconnected and refused for
//! a while.
//!
//! Every block a peer sends in a sync message that the replica refuses
//! (forged or missing signatures, authors who are not members in the event's
//! past or were revoked there, blocks that are not canonical events of the
//! stream, events a validator refuses, and the waiting descendants refused
//! with them) counts against the peer. Validity is a function of the block
//! and its causal past, so an honest peer running the same rules never sends
//! one. At [`NodeConfig::max_invalid_events`](crate::NodeConfig::max_invalid_events)
//! the peer is disconnected and every connection with it is closed on
//! arrival for [`NodeConfig::ban_for`](crate::NodeConfig::ban_for); its count
//! then starts again from zero.
//!
//! Announcements carry no authority: they only make the node open a sync
//! session with a connected peer, and every block that session brings goes
//! through the replica's checks (and is counted here when refused). The
//! blocks an announcement may carry are handed to
//! [`NodeBroadcaster`](crate::NodeBroadcaster)s, never ingested by the node.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::PeerId;
use libp2p::swarm::ConnectionId;
use merkle_clock::StreamStore;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::node::Node;

/// Invalid events counted per peer, and the peers banned until when.
#[derive(Debug, Default)]
pub(crate) struct Bans {
    invalid: HashMap<PeerId, u64>,
    until: HashMap<PeerId, Instant>,
}

impl Bans {
    /// Counts `n` invalid events from `peer`; true when that makes `max`
    /// (0: never) and the peer is banned until `now + ban_for`.
    fn record(&mut self, peer: PeerId, n: u64, max: u64, ban_for: Duration, now: Instant) -> bool {
        if n == 0 || max == 0 {
            return false;
        }
        let count = self.invalid.entry(peer).or_default();
        *count += n;
        if *count < max {
            return false;
        }
        self.invalid.remove(&peer);
        self.until.insert(peer, now + ban_for);
        true
    }

    /// Whether `peer` is banned at `now` (a ban that ran out is forgotten).
    fn is_banned(&mut self, peer: &PeerId, now: Instant) -> bool {
        match self.until.get(peer) {
            Some(until) if *until > now => true,
            Some(_) => {
                self.until.remove(peer);
                false
            }
            None => false,
        }
    }
}

impl<S: ?Sized + StreamStore + 'static> Node<S> {
    /// `peer` sent `n` events the replica refused: counted, and the peer is
    /// disconnected when that makes too many.
    pub(crate) fn count_invalid(&mut self, peer: PeerId, n: usize) {
        let (max, ban_for) = (self.config.max_invalid_events, self.config.ban_for);
        if self.bans.record(peer, n as u64, max, ban_for, Instant::now()) {
            self.stats.peers_banned += 1;
            warn!(%peer, ?ban_for, "the peer sent {max} invalid events or more: disconnected and banned");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Closes a new connection with a banned peer; true when it did.
    pub(crate) fn refuse_banned(&mut self, peer: PeerId, id: ConnectionId) -> bool {
        if !self.bans.is_banned(&peer, Instant::now()) {
            return false;
        }
        debug!(%peer, "banned: closing a new connection");
        self.stats.banned_refusals += 1;
        let _ = self.swarm.close_connection(id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_banned_at_the_limit_for_the_time_configured() {
        let (peer, other) = (PeerId::random(), PeerId::random());
        let mut bans = Bans::default();
        let t0 = Instant::now();
        let ban = Duration::from_secs(60);
        assert!(!bans.record(peer, 3, 5, ban, t0));
        assert!(!bans.record(other, 4, 5, ban, t0), "counts are per peer");
        assert!(!bans.is_banned(&peer, t0));
        assert!(bans.record(peer, 2, 5, ban, t0));
        assert!(bans.is_banned(&peer, t0 + Duration::from_secs(59)));
        assert!(!bans.is_banned(&other, t0));
        assert!(!bans.is_banned(&peer, t0 + ban), "the ban runs out");
        // The count started again: 4 more are not enough.
        assert!(!bans.record(peer, 4, 5, ban, t0 + ban));
    }

    #[test]
    fn zero_disables_banning_and_valid_messages_count_nothing() {
        let peer = PeerId::random();
        let mut bans = Bans::default();
        let t0 = Instant::now();
        assert!(!bans.record(peer, 1_000, 0, Duration::from_secs(60), t0));
        assert!(!bans.record(peer, 0, 1, Duration::from_secs(60), t0));
        assert!(!bans.is_banned(&peer, t0));
    }
}
