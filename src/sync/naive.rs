//! The naive walk, as the baseline: exchange heads, want the unknown ones,
//! then want the missing parents of what arrived, one level of history per
//! round trip (what go-ds-crdt and darkfi do). Same [`Message`] type, no
//! filter, no ancestors in answers.

use std::collections::{HashSet, VecDeque};

use ipld_core::cid::Cid;

use super::{Message, Received, SyncError};
use crate::block::Block;
use crate::replica::{Ingest, Replica};
use crate::store::{StoreError, StreamStore};

/// Per-peer state of the naive walk (nothing durable).
///
/// Within a session nothing is asked for twice, except an event the peer is
/// known to hold (one of its heads, or a parent of a block it sent) that is
/// still missing once the peer has acknowledged the message that asked for
/// it: the peer answers every want in its next message, so the answer (or the
/// want) was lost. A new session ([`NaiveState::reset`], or the peer's
/// `hello`) asks again for everything the replica misses: the peer's unknown
/// heads and [`Replica::missing`].
#[derive(Debug, Clone, Default)]
pub struct NaiveState {
    /// Our next message opens our session.
    hello: bool,
    seq: u64,
    /// The newest message number of the peer's session: our `ack`.
    their_seq: u64,
    last_sent_heads: Option<Vec<Cid>>,
    their_heads: Option<Vec<Cid>>,
    their_wants: Vec<Cid>,
    /// Missing parents found by the last ingest: the next level to ask for.
    frontier: Vec<Cid>,
    /// The next want also asks for everything the replica misses (a new session).
    recheck: bool,
    /// CIDs asked for in this session.
    asked: HashSet<Cid>,
    /// Wants for events the peer holds, with the number of the message that
    /// carried them, oldest first: once acknowledged, what is still missing
    /// is asked for again.
    awaiting: VecDeque<(u64, Cid)>,
    dirty: bool,
}

impl NaiveState {
    /// A state for a peer never met.
    pub fn new() -> Self {
        NaiveState { hello: true, ..NaiveState::fresh() }
    }

    fn fresh() -> Self {
        NaiveState { dirty: true, recheck: true, ..NaiveState::default() }
    }

    /// Forgets the session: heads are announced again, everything missing is
    /// asked for again, and the next message (a `hello`) tells the peer to
    /// start a new session too. Call it when a message may have been lost.
    pub fn reset(&mut self) {
        *self = NaiveState::new();
    }
}

/// The next naive message: our heads when they changed, the blocks asked for
/// (exactly those, no ancestors), and a want of the peer's unknown heads and
/// of the missing parents of what arrived last (at the start of a session,
/// of everything missing; and again of what an acknowledged want did not bring).
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
    let (pruned, wanted): (Vec<Cid>, Vec<Cid>) = std::mem::take(&mut state.their_wants)
        .into_iter()
        .filter(|c| dag.contains(c))
        .partition(|c| replica.is_pruned(c));
    msg.pruned = pruned;
    let mut blocks = Vec::with_capacity(wanted.len());
    for (cid, block) in wanted.iter().zip(replica.store().get_many(&wanted).await?) {
        let block = block.ok_or_else(|| StoreError::Corrupt(format!("{cid}: in the DAG but not in the store")))?;
        blocks.push(block.into_parts().1);
    }
    // Events the peer holds: its heads and the parents of the blocks it sent.
    let mut held: HashSet<Cid> = HashSet::new();
    if state.dirty {
        held.extend(state.their_heads.iter().flatten().copied());
        held.extend(std::mem::take(&mut state.frontier));
        let mut want: Vec<Cid> = held.iter().copied().collect();
        if std::mem::take(&mut state.recheck) {
            want.extend(replica.missing());
        }
        want.retain(|c| !dag.contains(c) && !replica.is_pending(c) && !state.asked.contains(c));
        want.sort_unstable();
        want.dedup();
        msg.want = want;
    }
    state.dirty = false;
    let heads_changed = state.last_sent_heads.as_ref() != Some(&my_heads);
    let in_sync = state.their_heads.as_ref() == Some(&my_heads);
    if blocks.is_empty() && msg.want.is_empty() && msg.pruned.is_empty() && (!heads_changed || in_sync) {
        return Ok(None);
    }
    state.seq += 1;
    msg.seq = state.seq;
    msg.ack = state.their_seq;
    msg.hello = std::mem::take(&mut state.hello);
    if heads_changed {
        msg.heads.clone_from(&my_heads);
        state.last_sent_heads = Some(my_heads);
    }
    for c in &msg.want {
        state.asked.insert(*c);
        if held.contains(c) {
            state.awaiting.push_back((msg.seq, *c));
        }
    }
    msg.blocks = blocks;
    Ok(Some(msg))
}

/// Takes in a naive message: ingests its blocks, notes the missing parents
/// of those left pending (the next level to ask for), the peer's heads and
/// wants, and the wants it acknowledged that brought nothing (to ask again).
/// A `hello` in the middle of a session starts a new one.
///
/// # Errors
/// [`SyncError::Store`] when the store fails.
pub async fn naive_receive<S: ?Sized + StreamStore>(
    replica: &mut Replica<S>,
    state: &mut NaiveState,
    msg: Message,
) -> Result<Received, SyncError> {
    let report = if msg.blocks.is_empty() {
        None
    } else {
        let blocks: Vec<Block> = msg.blocks.into_iter().map(Block::from_bytes).collect();
        Some(replica.ingest_many(blocks).await?)
    };
    // The state changes only once the blocks are in: after a store error it is as it was.
    if msg.hello {
        restart_for_peer(state);
    }
    let received = match report {
        None => Received::default(),
        Some(report) => {
            for outcome in &report.outcomes {
                if let Ingest::Pending { missing } = outcome {
                    state.frontier.extend(missing.iter().copied());
                }
            }
            Received::tally(report)
        }
    };
    if !msg.heads.is_empty() {
        let mut heads = msg.heads;
        heads.sort_unstable();
        heads.dedup();
        state.their_heads = Some(heads);
    }
    state.their_seq = state.their_seq.max(msg.seq);
    state.their_wants.extend(msg.want);
    // The peer answers every want in its next message: a want it has
    // acknowledged and that is still missing was lost, or its answer was (or
    // is late). An ack beyond our last message is from an older session.
    if msg.ack <= state.seq {
        let dag = replica.dag();
        while let Some(&(seq, cid)) = state.awaiting.front() {
            if seq > msg.ack {
                break;
            }
            state.awaiting.pop_front();
            if !dag.contains(&cid) && !replica.is_pending(&cid) {
                state.asked.remove(&cid);
                state.frontier.push(cid);
            }
        }
    }
    state.dirty = true;
    Ok(received)
}

/// The peer started a new session: unless ours has only just started too
/// (both at once), so do we, without a `hello` of our own and numbering on
/// (the peer's acks stay meaningful).
fn restart_for_peer(state: &mut NaiveState) {
    let fresh_here = state.seq <= 1 && state.their_seq == 0;
    if !fresh_here {
        *state = NaiveState { seq: state.seq, ..NaiveState::fresh() };
    }
}
