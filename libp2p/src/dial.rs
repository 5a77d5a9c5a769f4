//! Connections: dialing the addresses the application gave, redialing them
//! while not connected, and the bookkeeping of who is connected.

use std::collections::HashSet;

use libp2p::core::ConnectedPoint;
use libp2p::swarm::ConnectionId;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId};
use merkle_clock::StreamStore;
use tokio::time::Instant;
use tracing::{debug, trace};

use crate::handle::NodeError;
use crate::node::Node;

impl<S: ?Sized + StreamStore + 'static> Node<S> {
    /// Dials `addr` once.
    pub(crate) fn dial(&mut self, addr: Multiaddr) -> Result<(), NodeError> {
        if self.listen_addrs.contains(&addr) {
            return Err(NodeError::Dial(format!("{addr} is this node's own address")));
        }
        let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
        let id = opts.connection_id();
        self.swarm.dial(opts).map_err(|e| NodeError::Dial(e.to_string()))?;
        self.pending_dials.insert(id, addr);
        Ok(())
    }

    /// Remembers `addr` for redialing, and dials it now unless offline.
    pub(crate) fn dial_target(&mut self, addr: Multiaddr) -> Result<(), NodeError> {
        // Offline, the address is only remembered for when the node is back.
        let result = if self.offline { Ok(()) } else { self.dial(addr.clone()) };
        if result.is_ok() && !self.dial_targets.contains(&addr) {
            self.dial_targets.push(addr);
        }
        result
    }

    /// Dials again, every `redial_interval`, the targets with no connection.
    pub(crate) fn redial_due(&mut self, now: Instant) {
        if self.offline || self.last_redial.is_some_and(|t| now - t < self.config.redial_interval) {
            return;
        }
        self.last_redial = Some(now);
        let busy: HashSet<&Multiaddr> = self.pending_dials.values().collect();
        let due: Vec<Multiaddr> = self
            .dial_targets
            .iter()
            .filter(|a| !busy.contains(a) && self.target_conns.get(*a).is_none_or(HashSet::is_empty))
            .cloned()
            .collect();
        for addr in due {
            trace!(%addr, "redialing");
            if let Err(e) = self.dial(addr) {
                debug!("redial failed: {e}");
            }
        }
    }

    /// Cuts the node off (closing every connection) or lets it back.
    pub(crate) fn set_offline(&mut self, offline: bool) {
        self.offline = offline;
        if offline {
            tracing::info!("going offline");
            let peers: Vec<PeerId> = self.connected.iter().copied().collect();
            for p in peers {
                let _ = self.swarm.disconnect_peer_id(p);
            }
        } else {
            tracing::info!("going online");
            self.last_redial = None;
        }
    }

    pub(crate) fn on_connection_established(&mut self, peer: PeerId, id: ConnectionId, endpoint: &ConnectedPoint) {
        if let Some(addr) = self.pending_dials.remove(&id) {
            self.target_conns.entry(addr).or_default().insert(id);
        }
        if self.offline {
            debug!(%peer, "offline: closing a new connection");
            self.stats.offline_refusals += 1;
            let _ = self.swarm.close_connection(id);
            return;
        }
        if self.refuse_banned(peer, id) {
            return;
        }
        if self.connected.insert(peer) {
            debug!(%peer, addr = %endpoint_addr(endpoint), "connected");
        }
    }

    pub(crate) fn on_connection_closed(&mut self, peer: PeerId, id: ConnectionId, remaining: u32) {
        for conns in self.target_conns.values_mut() {
            conns.remove(&id);
        }
        if remaining == 0 && self.connected.remove(&peer) {
            debug!(%peer, "disconnected");
            self.leave(peer);
        }
    }

    pub(crate) fn on_dial_failed(&mut self, id: ConnectionId, error: &dyn std::fmt::Display) {
        if let Some(addr) = self.pending_dials.remove(&id) {
            trace!(%addr, "dial failed: {error}");
        }
    }
}

fn endpoint_addr(endpoint: &ConnectedPoint) -> &Multiaddr {
    match endpoint {
        ConnectedPoint::Dialer { address, .. } => address,
        ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr,
    }
}
