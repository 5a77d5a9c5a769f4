//! The naive walk, as the baseline: exchange heads, want the unknown ones,
//! then want the missing parents of what arrived, one level of history per
//! round trip (what go-ds-crdt and darkfi do). Same [`Message`] type, no
//! filter, no ancestors in answers.

use std::collections::HashSet;

use ipld_core::cid::Cid;

use super::{Message, Received, SyncError};
use crate::block::Block;
use crate::replica::{Ingest, Replica};
use crate::store::{StoreError, StreamStore};

/// Per-peer state of the naive walk (nothing durable).
#[derive(Debug, Clone, Default)]
pub struct NaiveState {
    seq: u64,
    last_sent_heads: Option<Vec<Cid>>,
    their_heads: Option<Vec<Cid>>,
    their_wants: Vec<Cid>,
    /// Missing parents found by the last ingest: the next level to ask for.
    frontier: Vec<Cid>,
    asked: HashSet<Cid>,
    dirty: bool,
}

impl NaiveState {
    /// A state for a peer never met.
    pub fn new() -> Self {
        NaiveState { dirty: true, ..NaiveState::default() }
    }

    /// Forgets the session: heads are announced again and wants asked again.
    pub fn reset(&mut self) {
        *self = NaiveState::new();
    }
}

/// The next naive message: our heads when they changed, the blocks asked for
/// (exactly those, no ancestors), and a want of the peer's unknown heads and
/// of the missing parents of what arrived last.
///
/// # Errors
/// [`SyncError::Store`] when the store fails.
pub async fn naive_generate<S: ?Sized + StreamStore>(
    replica: &Replica<S>,
    state: &mut NaiveState,
) -> Result<Option<Message>, SyncError> {
    let dag = replica.dag();
    let my_heads = dag.heads();
    let mut msg = Message::default();
    let wanted: Vec<Cid> = std::mem::take(&mut state.their_wants).into_iter().filter(|c| dag.contains(c)).collect();
    let mut blocks = Vec::with_capacity(wanted.len());
    for (cid, block) in wanted.iter().zip(replica.store().get_many(&wanted).await?) {
        let block = block.ok_or_else(|| StoreError::Corrupt(format!("{cid}: in the DAG but not in the store")))?;
        blocks.push(block.into_parts().1);
    }
    if state.dirty {
        let theirs = state.their_heads.clone().unwrap_or_default();
        let mut want: Vec<Cid> = theirs.into_iter().chain(std::mem::take(&mut state.frontier)).collect();
        want.retain(|c| !dag.contains(c) && !replica.is_pending(c) && !state.asked.contains(c));
        want.sort_unstable();
        want.dedup();
        msg.want = want;
    }
    state.dirty = false;
    let heads_changed = state.last_sent_heads.as_ref() != Some(&my_heads);
    let in_sync = state.their_heads.as_ref() == Some(&my_heads);
    if blocks.is_empty() && msg.want.is_empty() && (!heads_changed || in_sync) {
        return Ok(None);
    }
    state.seq += 1;
    msg.seq = state.seq;
    if heads_changed {
        msg.heads.clone_from(&my_heads);
        state.last_sent_heads = Some(my_heads);
    }
    state.asked.extend(msg.want.iter().copied());
    msg.blocks = blocks;
    Ok(Some(msg))
}

/// Takes in a naive message: ingests its blocks, notes the missing parents
/// of those left pending (the next level to ask for), the peer's heads and wants.
///
/// # Errors
/// [`SyncError::Store`] when the store fails.
pub async fn naive_receive<S: ?Sized + StreamStore>(
    replica: &mut Replica<S>,
    state: &mut NaiveState,
    msg: Message,
) -> Result<Received, SyncError> {
    let received = if msg.blocks.is_empty() {
        Received::default()
    } else {
        let blocks: Vec<Block> = msg.blocks.into_iter().map(Block::from_bytes).collect();
        let report = replica.ingest_many(blocks).await?;
        for outcome in &report.outcomes {
            if let Ingest::Pending { missing } = outcome {
                state.frontier.extend(missing.iter().copied());
            }
        }
        Received::tally(report)
    };
    if !msg.heads.is_empty() {
        let mut heads = msg.heads;
        heads.sort_unstable();
        heads.dedup();
        state.their_heads = Some(heads);
    }
    state.their_wants.extend(msg.want);
    state.dirty = true;
    Ok(received)
}
