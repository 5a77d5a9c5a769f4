//! The crate's sync protocols as simulator [`Protocol`]s.

use super::Protocol;
use crate::replica::Replica;
use crate::store::MemoryBlockstore;
use crate::sync::{
    Message, NaiveState, Received, SyncLimits, SyncState, generate_message, naive_generate, naive_receive,
    receive_message,
};

/// Which of this crate's sync protocols a simulation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncProtocol {
    /// Bloom-filter reconciliation: [`generate_message`] and
    /// [`receive_message`] over a [`SyncState`] (the default).
    #[default]
    Bloom,
    /// [`SyncProtocol::Bloom`] with these limits on every state (small
    /// `max_message_bytes` or `max_blocks` make senders split their blocks
    /// over several messages).
    BloomWithLimits(SyncLimits),
    /// The naive walk, heads then missing parents level by level:
    /// [`naive_generate`] and [`naive_receive`] over a [`NaiveState`].
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

impl Protocol for SyncProtocol {
    type State = SyncProtocolState;

    fn name(&self) -> &'static str {
        match self {
            SyncProtocol::Bloom | SyncProtocol::BloomWithLimits(_) => "bloom",
            SyncProtocol::Naive => "naive",
        }
    }

    fn new_state(&self, seed: u64) -> SyncProtocolState {
        match self {
            SyncProtocol::Bloom => SyncProtocolState::Bloom(SyncState::with_seed(seed)),
            SyncProtocol::BloomWithLimits(limits) => {
                let mut s = SyncState::with_seed(seed);
                s.set_limits(*limits);
                SyncProtocolState::Bloom(s)
            }
            SyncProtocol::Naive => SyncProtocolState::Naive(NaiveState::new()),
        }
    }

    fn save(&self, state: &SyncProtocolState) -> Vec<u8> {
        match state {
            SyncProtocolState::Bloom(s) => s.encode(),
            SyncProtocolState::Naive(_) => Vec::new(),
        }
    }

    fn restore(&self, durable: &[u8], seed: u64) -> SyncProtocolState {
        match self {
            SyncProtocol::Bloom | SyncProtocol::BloomWithLimits(_) => match SyncState::decode(durable) {
                Ok(mut s) => {
                    s.reseed(seed);
                    if let SyncProtocol::BloomWithLimits(limits) = self {
                        s.set_limits(*limits);
                    }
                    SyncProtocolState::Bloom(s)
                }
                Err(_) => self.new_state(seed),
            },
            SyncProtocol::Naive => self.new_state(seed),
        }
    }

    fn settled(&self, replica: &Replica<MemoryBlockstore>, state: &SyncProtocolState) -> bool {
        match state {
            SyncProtocolState::Bloom(s) => s.their_heads().is_some_and(|h| h == replica.heads().as_slice()),
            SyncProtocolState::Naive(_) => false,
        }
    }

    async fn generate(
        &self,
        replica: &Replica<MemoryBlockstore>,
        state: &mut SyncProtocolState,
    ) -> Result<Option<Vec<u8>>, String> {
        let message = match state {
            SyncProtocolState::Bloom(s) => generate_message(replica, s).await,
            SyncProtocolState::Naive(s) => naive_generate(replica, s).await,
        };
        message.map(|m| m.map(|m| m.encode())).map_err(|e| e.to_string())
    }

    async fn receive(
        &self,
        replica: &mut Replica<MemoryBlockstore>,
        state: &mut SyncProtocolState,
        message: &[u8],
    ) -> Result<(), String> {
        let received = match state {
            SyncProtocolState::Bloom(s) => {
                let m = Message::decode(message, s.limits()).map_err(|e| format!("decode: {e}"))?;
                receive_message(replica, s, m).await
            }
            SyncProtocolState::Naive(s) => {
                let m = Message::decode(message, &SyncLimits::default()).map_err(|e| format!("decode: {e}"))?;
                naive_receive(replica, s, m).await
            }
        }
        .map_err(|e| e.to_string())?;
        rejected(&received)
    }
}

/// Honest peers never send a block that is refused: one is a bug.
fn rejected(received: &Received) -> Result<(), String> {
    match received.rejections.first() {
        None => Ok(()),
        Some(first) => Err(format!("{} blocks rejected, first: {first}", received.rejected)),
    }
}
