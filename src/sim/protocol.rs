//! What the simulator needs from a sync protocol.

use std::future::Future;

use crate::replica::Replica;
use crate::store::MemoryBlockstore;

/// A sync protocol as the simulator drives it: per-peer state, a call that
/// makes the next message for a peer and a call that takes one in, over
/// encoded bytes.
///
/// The simulator keeps one [`Protocol::State`] per ordered pair of nodes
/// (what node `a` knows of its conversation with node `b`). Every state is
/// created from a seed the simulator draws, so a protocol that needs
/// randomness (the Bloom filter's salt) stays reproducible.
///
/// Implemented by [`SyncProtocol`](super::SyncProtocol) for this crate's
/// protocols; implement it to run your own protocol through the same faults.
pub trait Protocol {
    /// Per-peer state.
    type State;

    /// A short name for traces and reports.
    fn name(&self) -> &'static str;

    /// A fresh state for a peer never met.
    fn new_state(&self, seed: u64) -> Self::State;

    /// The durable part of a state, as bytes: what survives a restart.
    fn save(&self, state: &Self::State) -> Vec<u8>;

    /// A state rebuilt from its durable part after a restart or a reconnect;
    /// its ephemeral part starts afresh from `seed`. Bytes it cannot read
    /// give [`Protocol::new_state`].
    fn restore(&self, durable: &[u8], seed: u64) -> Self::State;

    /// Whether, as far as `state` knows, the peer holds exactly what
    /// `replica` holds (it told us its heads and they are ours). The
    /// simulator times out only sessions that are not settled: a
    /// conversation that ended in agreement needs no retry. Default: `false`
    /// (every unanswered message may time out).
    fn settled(&self, replica: &Replica<MemoryBlockstore>, state: &Self::State) -> bool {
        let _ = (replica, state);
        false
    }

    /// The next message for the peer, encoded, or `None` when there is
    /// nothing to say.
    ///
    /// # Errors
    /// A description of what failed; the simulator counts it and goes on.
    fn generate(
        &self,
        replica: &Replica<MemoryBlockstore>,
        state: &mut Self::State,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, String>>;

    /// Takes in a message from the peer.
    ///
    /// # Errors
    /// A description of what failed (bytes that do not decode, a store
    /// error); the simulator counts it and goes on.
    fn receive(
        &self,
        replica: &mut Replica<MemoryBlockstore>,
        state: &mut Self::State,
        message: &[u8],
    ) -> impl Future<Output = Result<(), String>>;
}
