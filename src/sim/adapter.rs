//! The crate's sync protocols as one [`Protocol`] the simulator can pick by
//! configuration.

use crate::replica::Replica;
use crate::store::StreamStore;
use crate::sync::{Bloom, Naive, NaiveState, Protocol, Received, SyncError, SyncLimits, SyncState};

/// Which of this crate's sync protocols a simulation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncProtocol {
    /// Bloom-filter reconciliation ([`Bloom`], the default).
    #[default]
    Bloom,
    /// [`SyncProtocol::Bloom`] with these limits on every state (small
    /// `max_message_bytes` or `max_blocks` make senders split their blocks
    /// over several messages).
    BloomWithLimits(SyncLimits),
    /// The naive walk, heads then missing parents level by level ([`Naive`]).
    Naive,
}

/// The per-peer state of a [`SyncProtocol`].
#[derive(Debug, Clone)]
pub enum SyncProtocolState {
    /// For [`SyncProtocol::Bloom`].
    Bloom(SyncState),
    /// For [`SyncProtocol::Naive`].
    Naive(NaiveState),
}

impl SyncProtocol {
    fn bloom(self) -> Bloom {
        match self {
            SyncProtocol::BloomWithLimits(limits) => Bloom { limits },
            _ => Bloom::default(),
        }
    }
}

impl Protocol for SyncProtocol {
    type State = SyncProtocolState;

    fn name(&self) -> &'static str {
        match self {
            SyncProtocol::Bloom | SyncProtocol::BloomWithLimits(_) => Bloom::default().name(),
            SyncProtocol::Naive => Naive::default().name(),
        }
    }

    fn new_state(&self, seed: Option<u64>) -> SyncProtocolState {
        match self {
            SyncProtocol::Naive => SyncProtocolState::Naive(Naive::default().new_state(seed)),
            _ => SyncProtocolState::Bloom(self.bloom().new_state(seed)),
        }
    }

    fn save(&self, state: &SyncProtocolState) -> Vec<u8> {
        match state {
            SyncProtocolState::Bloom(s) => self.bloom().save(s),
            SyncProtocolState::Naive(s) => Naive::default().save(s),
        }
    }

    fn restore(&self, durable: &[u8], seed: Option<u64>) -> SyncProtocolState {
        match self {
            SyncProtocol::Naive => SyncProtocolState::Naive(Naive::default().restore(durable, seed)),
            _ => SyncProtocolState::Bloom(self.bloom().restore(durable, seed)),
        }
    }

    fn restart(&self, state: &mut SyncProtocolState, seed: Option<u64>) {
        match state {
            SyncProtocolState::Bloom(s) => self.bloom().restart(s, seed),
            SyncProtocolState::Naive(s) => Naive::default().restart(s, seed),
        }
    }

    fn settled<S: ?Sized + StreamStore>(&self, replica: &Replica<S>, state: &SyncProtocolState) -> bool {
        match state {
            SyncProtocolState::Bloom(s) => self.bloom().settled(replica, s),
            SyncProtocolState::Naive(s) => Naive::default().settled(replica, s),
        }
    }

    async fn generate<S: ?Sized + StreamStore>(
        &self,
        replica: &Replica<S>,
        state: &mut SyncProtocolState,
    ) -> Result<Option<Vec<u8>>, SyncError> {
        match state {
            SyncProtocolState::Bloom(s) => self.bloom().generate(replica, s).await,
            SyncProtocolState::Naive(s) => Naive::default().generate(replica, s).await,
        }
    }

    async fn receive<S: ?Sized + StreamStore>(
        &self,
        replica: &mut Replica<S>,
        state: &mut SyncProtocolState,
        message: &[u8],
    ) -> Result<Received, SyncError> {
        match state {
            SyncProtocolState::Bloom(s) => self.bloom().receive(replica, s, message).await,
            SyncProtocolState::Naive(s) => Naive::default().receive(replica, s, message).await,
        }
    }
}
