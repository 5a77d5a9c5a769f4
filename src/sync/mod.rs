//! Reconciling two replicas in about one round trip, whatever their divergence.
//!
//! The protocol is a pair of functions over a per-peer [`SyncState`]:
//! [`generate_message`] makes the next [`Message`] for the peer (or `None`
//! when there is nothing to say) and [`receive_message`] takes one in. Neither
//! does any I/O: a transport ([`transport`]) only carries
//! [`Message::encode`]d bytes. Both peers may speak at once; messages may
//! cross.
//!
//! # The algorithm
//!
//! It is the Bloom-filter reconciliation of Kleppmann & Howard ("Byzantine
//! Eventual Consistency and Efficient Sync", 2020):
//!
//! 1. **Open.** Each side sends its heads and a [`BloomFilter`] of the events
//!    it holds beyond the heads both sides last shared (the durable part of
//!    the state; with none, all its events), together with those heads
//!    (`since`).
//! 2. **Answer.** If *all* the peer's heads are in my DAG, I know exactly what
//!    it lacks: `difference(my heads, its heads)`, no filter needed (a replica
//!    joining with only the genesis gets everything in one round trip). Else
//!    the candidates are `difference(my heads, its known heads ∪ its since)`;
//!    I send every candidate its filter does not hold, and every descendant of
//!    one (in ascending height, a topological order). A false positive thus
//!    only withholds an event when all its candidate ancestors are false
//!    positives too: in practice only the *oldest* missing events are at risk.
//! 3. **Repair.** When the peer has answered my filter and some of its heads
//!    are still neither in my DAG nor pending, or pending events lack parents,
//!    I send **one batched want** of all of them. The answer is the wanted
//!    events *and all their ancestors I cannot tell the asker holds* (the
//!    difference against its heads, pruned by its filter only when its heads
//!    are not all known to me), so a repair never costs one round trip per
//!    level of history.
//! 4. **Settle.** Once I have sent everything in `difference(my heads, its
//!    heads)`, it will hold exactly my history: I record my heads as the
//!    shared heads and stay silent until something changes.
//!
//! Each filter is keyed with a fresh random 16-byte salt (bit positions are
//! `blake3::keyed_hash(salt, digest)` split into 32-bit words), so CIDs mined
//! to collide in one filter do not collide in the next, and the batched want
//! never depends on the filter when the asker's heads are known.
//!
//! ## Filter parameters
//!
//! A filter over the events *since the shared heads* uses
//! [`BITS_PER_ELEMENT`] = 10 bits and 7 hashes per event: 1.25 bytes per event
//! (under 0.5% of a 270-byte event) for a false-positive rate of 0.82%. Since
//! only the oldest missing events can be withheld by a false positive, a sync
//! needs a second round trip with probability ≈ 0.82% per side: about 1.02
//! round trips on average, as in the paper.
//!
//! A **full inventory** (no shared heads yet: a first contact or a lost state)
//! covers the whole history, most of which the peer usually holds too. Its
//! size grows with the history while what it protects (the few oldest
//! missing events) does not, so it uses [`FULL_INVENTORY_BITS_PER_ELEMENT`] = 7
//! bits and 5 hashes (3.5%): 0.875 bytes per event held, at the price of a
//! second round trip in about 7% of first contacts.
//!
//! ## Sessions
//!
//! A session starts with each side's filter and ends when both are silent.
//! Within a session nothing is sent twice unless asked for: blocks already
//! sent are remembered (with the number of the message that carried them, so
//! that a want for a block the asker had not seen yet is not answered twice).
//! If a message may have been lost, call [`SyncState::reset`]: the next
//! message starts a new session (`hello`), and the peer starts one too. A
//! message that arrives twice or late is recognised by its number: its
//! blocks, wants and filter are taken, its older heads are not. Without
//! loss, duplicates and reordering cost bytes but never need a reset.
//!
//! [`receive_message`] does not restart a session by itself when the peer's
//! numbers jump (a gap): a gap is as often a message still on its way (the
//! transport may reorder) as a lost one, restarting costs a new filter and
//! resends what the peer may hold, and the loss that matters most, the last
//! message of an exchange, leaves no gap to see. Only the caller can tell
//! "lost" from "late", with a timeout.
//!
//! # Example
//!
//! Two replicas that diverged sync in a loop until both have nothing to say:
//!
//! ```
//! use std::sync::Arc;
//! use merkle_clock::{Event, MemoryBlockstore, Replica, ReplicaConfig};
//! use merkle_clock::sync::{Message, SyncLimits, SyncState, generate_message, receive_message};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> { futures::executor::block_on(async {
//! let genesis = Event::genesis("chat").encode()?;
//! let mut alice = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
//! let mut bob = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
//! for i in 0..100u32 {
//!     alice.append(&format!("alice {i}")).await?;
//!     bob.append(&format!("bob {i}")).await?;
//! }
//! // Seeded salts make this run reproducible; a real peer uses `SyncState::new()`.
//! let (mut to_bob, mut to_alice) = (SyncState::with_seed(7), SyncState::with_seed(8));
//! let limits = SyncLimits::default();
//! let mut rounds = 0;
//! loop {
//!     // Both speak at once; then each takes in what the other said.
//!     let from_alice = generate_message(&alice, &mut to_bob).await?;
//!     let from_bob = generate_message(&bob, &mut to_alice).await?;
//!     if from_alice.is_none() && from_bob.is_none() {
//!         break;
//!     }
//!     if let Some(m) = from_alice {
//!         let m = Message::decode(&m.encode(), &limits)?; // over the wire
//!         receive_message(&mut bob, &mut to_alice, m).await?;
//!     }
//!     if let Some(m) = from_bob {
//!         receive_message(&mut alice, &mut to_bob, m).await?;
//!     }
//!     rounds += 1;
//! }
//! assert_eq!(alice.heads(), bob.heads());
//! assert_eq!(alice.len(), 201);
//! // Filters, then every missing event, then the acknowledgements: after
//! // those, both know they agree and say nothing more. (With other salts, a
//! // false positive in a filter costs one more exchange, a few times in a hundred.)
//! assert_eq!(rounds, 3);
//! // The durable part keeps the shared heads for next time.
//! assert_eq!(to_bob.shared_heads(), alice.heads().as_slice());
//! # Ok(()) }) }
//! ```
//!
//! [`naive_generate`] and [`naive_receive`] implement the naive walk (heads,
//! then missing parents one level per round trip) over the same [`Message`],
//! as the baseline the report compares against.

mod bloom;
pub mod driver;
pub mod fill;
mod message;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
#[doc(hidden)]
pub mod model;
#[doc(hidden)]
pub mod mutation;
mod naive;
mod state;
pub mod transport;

use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, HashSet};

use ipld_core::cid::Cid;

use crate::block::{Block, Digest, KeyedState, digest_of};
use crate::dag::{Dag, EventId};
use crate::error::UnknownEvent;
use crate::replica::{Ingest, IngestReport, Rejection, Replica};
use crate::store::{StoreError, StreamStore};

pub use bloom::{BITS_PER_ELEMENT, BloomFilter, FULL_INVENTORY_BITS_PER_ELEMENT, MAX_HASHES};
pub use driver::{Bloom, Due, Naive, Outgoing, Protocol, Reply, Restart, SessionConfig, SessionStats, Sessions};
pub use message::{Message, SyncError, SyncLimits, VERSION};
pub use naive::{NaiveState, naive_generate, naive_receive};
pub use state::SyncState;

use state::{Backlog, HeadsPrint, Session};

/// What [`receive_message`] (or [`naive_receive`]) did with a message's blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Received {
    /// Blocks of the message that joined the DAG.
    pub accepted: usize,
    /// Blocks already held (in the DAG or pending).
    pub duplicate: usize,
    /// Blocks now waiting in the pending buffer for missing parents.
    pub pending: usize,
    /// Blocks refused (not canonical events, wrong height, a foreign genesis,
    /// a validator said no, ...): see `rejections`.
    pub rejected: usize,
    /// Every event this message added to the DAG, each after its parents:
    /// blocks of the message and pending events they released.
    pub accepted_cids: Vec<Cid>,
    /// Why each refused block was refused.
    pub rejections: Vec<Rejection>,
    /// The message was a copy or arrived after a later one: its blocks,
    /// wants and filter were taken, its heads and flags ignored.
    pub stale: bool,
}

impl Received {
    pub(crate) fn tally(report: IngestReport) -> Self {
        let mut r = Received { accepted_cids: report.accepted, ..Received::default() };
        for outcome in report.outcomes {
            match outcome {
                Ingest::Accepted => r.accepted += 1,
                Ingest::Duplicate => r.duplicate += 1,
                Ingest::Pending { .. } => r.pending += 1,
                Ingest::Rejected(why) => {
                    r.rejected += 1;
                    r.rejections.push(why);
                }
            }
        }
        r
    }
}

fn unknown(e: UnknownEvent) -> SyncError {
    SyncError::Store(StoreError::Corrupt(format!("sync walked to an event not in the DAG: {e}")))
}

/// Blocks read from the store at a time when filling a message.
const FILL_BATCH: usize = 4096;

/// Bytes kept free for everything but blocks when filling a message.
const MESSAGE_SLACK: usize = 64 << 10;

/// Makes the next message for the peer of `state`, or `None` when there is
/// nothing to say: both sides are known (or, once what was sent arrives,
/// predicted) to hold the same heads, and nothing is owed or asked.
///
/// # Errors
/// [`SyncError::Store`] when the store fails to return a block.
pub async fn generate_message<S: ?Sized + StreamStore>(
    replica: &Replica<S>,
    state: &mut SyncState,
) -> Result<Option<Message>, SyncError> {
    let dag = replica.dag();
    let my_heads = dag.heads();
    let changed = state.session.dirty || state.session.last_heads != Some(HeadsPrint::of(&my_heads));
    let mut msg = Message::default();
    if !state.session.filter_sent {
        open_session(dag, state, &my_heads, &mut msg)?;
    }
    let view = PeerView::of(dag, &state.session);
    let max = state.limits.max_blocks;
    let Lacking { ids: mut out, exact, rest } =
        if changed { lacking(dag, &mut state.session, &my_heads, &view, max)? } else { Lacking::default() };
    let mut wanted = answer_wants(dag, &mut state.session, &view, &mut out)?;
    // Never offer a block we no longer have; say so for those asked for.
    let before = out.len();
    out.retain(|id| !replica.is_pruned_id(*id));
    let skipped = out.len() != before;
    if skipped {
        msg.pruned = wanted.iter().filter(|c| replica.is_pruned(c)).copied().collect();
        wanted.retain(|c| !replica.is_pruned(c));
    }
    out.sort_unstable_by_key(|id| dag.key(*id));
    out.dedup();
    let overhead = msg.filter.as_ref().map_or(0, |f| f.bits().len()) + LINK_BYTES * (my_heads.len() + msg.since.len());
    let (blocks, cut) = fill(replica, state, &out, &wanted, overhead).await?;
    let truncated = cut || rest;
    let run = state.session.backlog.as_ref().is_some_and(|b| b.is_run(&out[..blocks.len()], truncated));
    if changed && !exact && !truncated && !skipped && state.session.their_filter.is_some() {
        // Everything its filter lacks is on its way: next time, only what is new.
        state.session.filtered = Some(my_heads.clone());
    }
    // Once everything it lacks is on its way, it will hold exactly our history
    // (not when pruned events of it could not be sent).
    let predicts = exact && !truncated && !skipped;
    if predicts {
        state.session.predicted = Some(my_heads.clone());
        if mutation::on(mutation::Mutation::HeadsOnSend) {
            (state.session.their_heads, state.shared) = (Some(my_heads.clone()), my_heads.clone());
        }
    }
    if changed {
        msg.want = our_wants(replica, &state.session, &view, state.limits.max_wants, &state.unavailable);
    }
    Ok(finish(&mut state.session, msg, blocks, my_heads, truncated, run))
}

/// The bytes of an encoded link (tag 42, a 37-byte CID with its 0 prefix, headers).
const LINK_BYTES: usize = 41;

/// Step 1: our filter of the events beyond the heads both sides last
/// shared opens the session.
fn open_session(dag: &Dag, state: &mut SyncState, my_heads: &[Cid], msg: &mut Message) -> Result<(), SyncError> {
    let mut since: Vec<Cid> = state.shared.iter().filter(|c| dag.contains(c)).copied().collect();
    // A shallow replica counts from its anchors too: the history below them
    // is a checkpoint's, which it does not want and peers need not send.
    // The highest first, within the peer's cap on `since` (an anchor left
    // out costs bytes, not correctness: a shallow replica keeps what it is
    // sent of the past as skeletons, `Replica::admit_late`).
    if dag.has_anchors() {
        let mut anchors: Vec<EventId> = dag.anchors().collect();
        anchors.sort_unstable_by_key(|id| std::cmp::Reverse(dag.height(*id)));
        let room = state.limits.max_heads.saturating_sub(since.len());
        since.extend(anchors.into_iter().take(room).map(|id| dag.cid(id)));
    }
    let mut base = since.clone();
    base.push(dag.genesis());
    let ids = beyond(dag, my_heads, &base)?;
    let bits_per_element = if since.is_empty() { FULL_INVENTORY_BITS_PER_ELEMENT } else { BITS_PER_ELEMENT };
    let bytes = ids.len().saturating_mul(bits_per_element).div_ceil(8).min(state.limits.max_filter_bytes);
    let salt = state.next_salt();
    let mut filter = BloomFilter::with_bytes(&salt, bytes, bloom::optimal_hashes(bits_per_element))
        .expect("a 16-byte salt and 1..=8 hashes");
    for id in ids {
        filter.insert_digest(dag.digest(id));
    }
    msg.filter = Some(filter);
    msg.since = since;
    msg.hello = state.session.hello;
    Ok(())
}

/// What we know of the peer's history.
struct PeerView {
    /// Its heads as it last told them.
    theirs: Vec<Cid>,
    /// Every one of them is in our DAG.
    all_known: bool,
    /// Events we know it holds, with their ancestors: its known heads, its
    /// `since`, the genesis.
    base: Vec<Cid>,
}

impl PeerView {
    fn of(dag: &Dag, s: &Session) -> Self {
        let theirs: Vec<Cid> = s.their_heads.clone().unwrap_or_default();
        let mut base: Vec<Cid> = theirs.iter().filter(|h| dag.contains(h)).copied().collect();
        let all_known = !theirs.is_empty() && base.len() == theirs.len();
        base.extend(s.their_since.iter().filter(|c| dag.contains(c)));
        base.push(dag.genesis());
        PeerView { theirs, all_known, base }
    }
}

/// Step 2's answer: at most `max` events the peer lacks, not sent yet in
/// this session, ascending by order key.
#[derive(Default)]
struct Lacking {
    ids: Vec<EventId>,
    /// All the peer's heads are known: `ids` and `rest` are exactly what it
    /// lacks, not the filter's guess.
    exact: bool,
    /// More than `max` lack: the rest go in later messages.
    rest: bool,
}

/// Step 2: the events the peer lacks, not sent yet in this session (at most
/// `max` of them), and whether that is exact (all its heads are known)
/// rather than the filter's guess.
///
/// The exact difference is kept (a `Backlog`) while it goes
/// out over several messages, as long as our heads are the same and the
/// peer's grew only by what we sent: a part costs what it carries, not a
/// walk of the whole difference. A filter's answer checks, once it was
/// given in full, only the events added since (`Session::filtered`).
fn lacking(dag: &Dag, s: &mut Session, my_heads: &[Cid], view: &PeerView, max: usize) -> Result<Lacking, SyncError> {
    if view.all_known {
        let mine = HeadsPrint::of(my_heads);
        if let Some(b) = &mut s.backlog {
            b.skip_sent(dag, &s.sent);
        }
        match &mut s.backlog {
            Some(b) if b.mine == mine && b.holds_for(dag, &view.theirs) => {
                if b.theirs != view.theirs {
                    // What the peer gained since (a walk of that only) has
                    // arrived: forget those blocks.
                    if !s.sent.is_empty() {
                        for id in dag.difference(&view.theirs, &b.theirs).map_err(unknown)? {
                            s.sent.remove(dag.digest(id));
                        }
                        shrink(&mut s.sent);
                    }
                    b.theirs.clone_from(&view.theirs);
                }
            }
            _ => {
                let ids = beyond(dag, my_heads, &view.theirs)?;
                let old = s.backlog.take();
                // Blocks no longer in the difference have arrived: forget them.
                if !s.sent.is_empty() || old.as_ref().is_some_and(|b| !b.runs.is_empty()) {
                    let live: HashSet<&Digest, KeyedState> = ids.iter().map(|id| dag.digest(*id)).collect();
                    s.sent.retain(|d, _| live.contains(d));
                    if let Some(old) = &old {
                        s.keep_runs(dag, old, |d| live.contains(d));
                    }
                    shrink(&mut s.sent);
                }
                s.backlog = Some(Backlog::new(mine, view.theirs.clone(), ids));
            }
        }
        let b = s.backlog.as_mut().expect("set above");
        b.skip_sent(dag, &s.sent);
        let mut rest = b.ids[b.next..].iter().filter(|id| !s.sent.contains_key(dag.digest(**id)));
        let ids: Vec<EventId> = rest.by_ref().take(max).copied().collect();
        let rest = rest.next().is_some();
        return Ok(Lacking { ids, exact: true, rest });
    }
    let Some(filter) = &s.their_filter else { return Ok(Lacking::default()) };
    let mut base = view.base.clone();
    let incremental = s.filtered.as_ref().is_some_and(|f| {
        base.extend(f.iter().filter(|c| dag.contains(c)));
        true
    });
    let candidates = dag.difference(my_heads, &base).map_err(unknown)?;
    let counted = |id| s.sent_in(dag, id).is_some();
    let mut ids = select(dag, &candidates, filter, |_| false, counted, incremental);
    let rest = ids.len() > max;
    ids.truncate(max);
    Ok(Lacking { ids, exact: false, rest })
}

/// A long session's table would otherwise keep its largest size (104 bytes
/// a slot) for as long as the session lives.
fn shrink<K: Eq + std::hash::Hash, V, H: std::hash::BuildHasher>(map: &mut HashMap<K, V, H>) {
    if map.capacity() > 4 * map.len().max(8) {
        map.shrink_to_fit();
    }
}

/// The events of `my_heads`' history (all of our heads: every event we
/// hold) that are not in `known`'s, ascending by order key.
///
/// A peer that holds only the genesis (a late joiner) lacks every other
/// event: that is the total order the DAG keeps, read as it is, instead of
/// a walk of the whole history and a sort (for a million events, the
/// largest part of what a catch-up cost the serving side). With anchors (a
/// shallow replica) the walk decides, as it stops at them.
fn beyond(dag: &Dag, my_heads: &[Cid], known: &[Cid]) -> Result<Vec<EventId>, SyncError> {
    let genesis = dag.genesis();
    if !dag.has_anchors() && known.contains(&genesis) && known.iter().all(|c| *c == genesis || !dag.contains(c)) {
        return Ok(dag.order().filter(|id| *id != EventId::GENESIS).collect());
    }
    let mut ids = dag.difference(my_heads, known).map_err(unknown)?;
    ids.sort_unstable_by_key(|id| dag.key(*id));
    Ok(ids)
}

/// Step 3: answers the peer's wants into `out` (the wanted events and their
/// ancestors it may lack); returns the wanted CIDs we hold.
fn answer_wants(dag: &Dag, s: &mut Session, view: &PeerView, out: &mut Vec<EventId>) -> Result<Vec<Cid>, SyncError> {
    if s.their_wants.is_empty() {
        return Ok(Vec::new());
    }
    let mut wanted = std::mem::take(&mut s.their_wants);
    wanted.sort_unstable();
    wanted.dedup();
    wanted.retain(|c| dag.contains(c));
    if wanted.is_empty() {
        return Ok(wanted);
    }
    let candidates = dag.difference(&wanted, &view.base).map_err(unknown)?;
    let forced: HashSet<EventId> = wanted.iter().filter_map(|c| dag.id(c)).collect();
    let picked = match (&s.their_filter, view.all_known) {
        (Some(filter), false) => select(dag, &candidates, filter, |id| forced.contains(&id), |_| false, false),
        _ => candidates,
    };
    let ack = s.their_ack;
    // Skip what is on its way: sent in a message the peer had not seen when it asked.
    out.extend(picked.into_iter().filter(|id| s.sent_in(dag, *id).is_none_or(|seq| seq <= ack)));
    Ok(wanted)
}

/// Step 4: the blocks of `out` that fit in the limits (beside `overhead`
/// bytes of filter and links), and whether some were held back. Wanted
/// blocks held back are owed again.
async fn fill<S: ?Sized + StreamStore>(
    replica: &Replica<S>,
    state: &mut SyncState,
    out: &[EventId],
    wanted: &[Cid],
    overhead: usize,
) -> Result<(Vec<Block>, bool), SyncError> {
    let limits = state.limits;
    if out.is_empty() {
        return Ok((Vec::new(), false));
    }
    let dag = replica.dag();
    let mut budget = limits.max_message_bytes.saturating_sub(MESSAGE_SLACK + overhead);
    let mut blocks = Vec::with_capacity(out.len().min(limits.max_blocks));
    let mut truncated = false;
    // Read in batches: a long difference sent over many messages is not
    // read whole for each of them.
    'fill: for ids in out.chunks(FILL_BATCH) {
        let batch: Vec<Cid> = ids.iter().map(|id| dag.cid(*id)).collect();
        for (cid, block) in batch.iter().zip(replica.store().get_many(&batch).await?) {
            let block = block.ok_or_else(|| StoreError::Corrupt(format!("{cid}: in the DAG but not in the store")))?;
            let len = message::framed_len(block.len());
            if blocks.len() == limits.max_blocks || (len > budget && !blocks.is_empty()) {
                truncated = true;
                break 'fill;
            }
            budget = budget.saturating_sub(len);
            blocks.push(block);
        }
    }
    if truncated && !wanted.is_empty() {
        // What did not fit goes next time; wanted events are asked for only once.
        let cut: HashSet<EventId> = out[blocks.len()..].iter().copied().collect();
        state.session.their_wants.extend(wanted.iter().filter(|c| dag.id(c).is_some_and(|id| cut.contains(&id))));
    }
    Ok((blocks, truncated))
}

/// Step 5: once the peer has answered our filter, one batched want of its
/// heads we lack and of every missing parent, each asked once per session,
/// and never one the peer said it holds only pruned (`unavailable`).
fn our_wants<S: ?Sized + StreamStore>(
    replica: &Replica<S>,
    s: &Session,
    view: &PeerView,
    max: usize,
    unavailable: &[Cid],
) -> Vec<Cid> {
    if !(s.filter_sent && s.their_ack >= s.filter_seq && !s.their_more) {
        return Vec::new();
    }
    let dag = replica.dag();
    let mut want: Vec<Cid> =
        view.theirs.iter().filter(|h| !dag.contains(h) && !replica.is_pending(h)).copied().collect();
    want.extend(replica.missing());
    want.sort_unstable();
    want.dedup();
    want.retain(|c| !s.asked.contains(c) && unavailable.binary_search(c).is_err());
    want.truncate(max);
    want
}

/// Step 6: speak, or stay silent; numbers the message and records what it
/// carries.
///
/// We speak when we have a filter, blocks or wants to send, owe the peer an
/// answer, our heads changed and the peer may not hold them, or the peer
/// sent blocks since our last message: then even a message with nothing
/// else in it acknowledges them, with our heads if they changed, so that the
/// sender knows the pair is in sync ([`SyncState::their_heads`]) instead of
/// waiting for a timeout. When the peer said more follows and we have nothing to say,
/// an empty, unnumbered message asks it to go on (once per message of the
/// peer's).
fn finish(
    s: &mut Session,
    mut msg: Message,
    blocks: Vec<Block>,
    my_heads: Vec<Cid>,
    truncated: bool,
    run: bool,
) -> Option<Message> {
    let in_sync = s.predicted.as_ref().or(s.their_heads.as_ref()) == Some(&my_heads);
    let print = HeadsPrint::of(&my_heads);
    let heads_changed = s.last_sent_heads != Some(print);
    let say = msg.filter.is_some()
        || !blocks.is_empty()
        || !msg.want.is_empty()
        || !msg.pruned.is_empty()
        || (s.owe_reply && !in_sync)
        || (heads_changed && !in_sync);
    // With nothing else to say, an acknowledgement carries no heads.
    let speak = say || s.owe_ack;
    s.last_heads = Some(print);
    s.dirty = truncated;
    if !speak {
        if s.their_more && !s.prompted {
            s.prompted = true;
            return Some(Message::default());
        }
        return None;
    }
    s.owe_ack = false;
    s.seq += 1;
    msg.seq = s.seq;
    msg.ack = s.their_seq;
    msg.more = truncated;
    if heads_changed {
        msg.heads.clone_from(&my_heads);
        s.last_sent_heads = Some(print);
    }
    if msg.filter.is_some() {
        s.filter_sent = true;
        s.filter_seq = s.seq;
        s.hello = false;
    }
    // The blocks are the backlog's next (`run`): one record for them all.
    match s.backlog.as_mut().filter(|_| run) {
        Some(b) => b.record_run(blocks.len(), s.seq),
        None => {
            for block in &blocks {
                if let Some(d) = digest_of(block.cid()) {
                    s.sent.insert(d, s.seq);
                }
            }
        }
    }
    s.asked.extend(msg.want.iter().copied());
    s.owe_reply = false;
    msg.blocks = blocks.into_iter().map(|b| b.into_parts().1).collect();
    Some(msg)
}

/// Blocks that are slices of the message they came in keep all of it alive
/// while the store or the pending buffer holds any of them: when the blocks
/// not already held come to less than half of the message's bytes (most of
/// it was blocks we have, a filter, or wants), they are copied out, so that
/// a peer cannot make a few new blocks hold many large messages.
fn unshare(dag: &Dag, blocks: &mut [Block], message_bytes: usize) {
    // Counted until half is reached: a message of new blocks costs half a
    // lookup per block here.
    let mut new = 0usize;
    for b in blocks.iter() {
        if !dag.contains(b.cid()) {
            new += b.len();
            if new.saturating_mul(2) >= message_bytes {
                return;
            }
        }
    }
    for b in blocks.iter_mut().filter(|b| !dag.contains(b.cid())) {
        *b = Block::new_unchecked(*b.cid(), bytes::Bytes::copy_from_slice(b.bytes()));
    }
}

/// Takes in a message from the peer of `state`: ingests its blocks (each is
/// hashed to its CID here; those that fail verification are rejected and
/// counted, the others kept) and records what it says of the peer.
///
/// # Errors
/// [`SyncError::LimitExceeded`] when the message is beyond the state's
/// [`SyncLimits`] (nothing is taken); [`SyncError::Store`] when the store
/// fails (the state is unchanged, so the message can be given again).
pub async fn receive_message<S: ?Sized + StreamStore>(
    replica: &mut Replica<S>,
    state: &mut SyncState,
    msg: Message,
) -> Result<Received, SyncError> {
    receive_decoded(replica, state, msg, None).await
}

/// [`receive_message`] of a message decoded by [`Message::decode_shared`]
/// from `shared` bytes: see [`unshare`].
pub(crate) async fn receive_decoded<S: ?Sized + StreamStore>(
    replica: &mut Replica<S>,
    state: &mut SyncState,
    msg: Message,
    shared: Option<usize>,
) -> Result<Received, SyncError> {
    msg.check(&state.limits)?;
    let Message { hello, more, seq, ack, heads, filter, since, want, blocks, pruned } = msg;
    state.note_pruned(pruned);
    let mut blocks = blocks;
    if mutation::on(mutation::Mutation::DropUnasked) {
        blocks.retain(|b| state.session.asked.contains(&crate::block::cid_of(b)));
    }
    let mut received = if blocks.is_empty() {
        Received::default()
    } else {
        let mut blocks: Vec<Block> = blocks.into_iter().map(Block::from_bytes).collect();
        if let Some(message_bytes) = shared {
            unshare(replica.dag(), &mut blocks, message_bytes);
        }
        let before = state.session.filtered.is_some().then(|| replica.dag().heads());
        let received = Received::tally(replica.ingest_many(blocks).await?);
        // What the peer sent it holds: when every event added came in this
        // message, our heads are as checked against its filter as they were
        // before (a catch-up does not check each part against it again).
        if before.is_some()
            && state.session.filtered == before
            && received.accepted > 0
            && received.accepted_cids.len() == received.accepted
        {
            state.session.filtered = Some(replica.dag().heads());
        }
        received
    };

    let s = &state.session;
    let duplicate = s.their_filter.as_ref().zip(filter.as_ref()).is_some_and(|(a, b)| a.salt() == b.salt());
    // A hello starts a new session of the peer's: unless it is a copy, or our
    // own session has only just opened (both started at once), so do we.
    let fresh_here = s.seq <= 1 && s.their_seq == 0;
    if hello && !duplicate && !fresh_here {
        state.restart_for_peer();
    }
    let s = &mut state.session;
    // Messages may come twice or out of order: keep the newest of everything.
    let newest = seq > s.their_seq || s.their_seq == 0;
    received.stale = !newest;
    if !heads.is_empty() {
        if seq > s.their_heads_seq || s.their_heads.is_none() {
            let mut heads = heads;
            heads.sort_unstable();
            heads.dedup();
            s.their_heads = Some(heads);
            s.their_heads_seq = seq;
            s.predicted = None;
        }
    } else if seq == s.their_heads_seq + 1 {
        // Unchanged since the message the heads came from.
        s.their_heads_seq = seq;
    }
    if newest {
        s.their_seq = seq;
        s.their_more = more;
        s.prompted = false;
    }
    s.their_ack = s.their_ack.max(ack);
    if let Some(filter) = filter
        && !duplicate
    {
        let mut since = since;
        since.sort_unstable();
        since.dedup();
        s.their_filter = Some(filter);
        s.their_since = since;
        s.filtered = None;
        s.owe_reply = true;
    }
    for w in want {
        // A want for a block sent in a message it had not seen yet is already answered.
        if s.sent_cid(replica.dag(), &w).is_none_or(|sent_in| sent_in <= ack)
            && s.their_wants.len() < state.limits.max_wants
        {
            s.their_wants.push(w);
        }
    }
    s.dirty = true;
    s.owe_ack |= received.accepted > 0 || received.duplicate > 0 || received.pending > 0;

    // Their heads are all here: both sides hold their history.
    if let Some(theirs) = &state.session.their_heads {
        let dag = replica.dag();
        if theirs.iter().all(|h| dag.contains(h)) {
            state.shared = advance(dag, &state.shared, theirs);
        }
    }
    Ok(received)
}

/// Candidates (ascending by height) the filter does not hold, and every
/// candidate with a parent that is picked or `counted` (already sent), except
/// the `counted` ones themselves. `forced` candidates are always picked.
/// `above_checked`: the candidates are only the events above those already
/// checked against this filter, so a parent that is not a candidate but was
/// sent counts too.
fn select(
    dag: &Dag,
    candidates: &[EventId],
    filter: &BloomFilter,
    forced: impl Fn(EventId) -> bool,
    counted: impl Fn(EventId) -> bool,
    above_checked: bool,
) -> Vec<EventId> {
    let mut lacking: HashSet<EventId, KeyedState> = HashSet::default();
    let mut out = Vec::new();
    for &id in candidates {
        let lacks = forced(id)
            || dag.parents(id).any(|p| lacking.contains(&p) || (above_checked && counted(p)))
            || !filter.contains_digest(dag.digest(id));
        let already = counted(id);
        if lacks || already {
            lacking.insert(id);
        }
        if lacks && !already {
            out.push(id);
        }
    }
    out
}

/// The shared heads once both sides are known to hold `theirs` too: `theirs`
/// when the shared heads' history is within theirs, the shared heads when
/// theirs is within it, else the maximal events of both sets (ascending).
///
/// One walk ([`Ancestry`]) over the events above the lowest of these heads,
/// whatever the number of heads.
fn advance(dag: &Dag, shared: &[Cid], theirs: &[Cid]) -> Vec<Cid> {
    let known: Vec<Cid> = shared.iter().filter(|c| dag.contains(c)).copied().collect();
    if known.is_empty() {
        return theirs.to_vec();
    }
    let Some(their_ids) = theirs.iter().map(|c| dag.id(c)).collect::<Option<Vec<EventId>>>() else {
        return theirs.to_vec();
    };
    let known_ids: Vec<EventId> = known.iter().filter_map(|c| dag.id(c)).collect();
    let mut a = known_ids.clone();
    let mut b = their_ids.clone();
    a.sort_unstable();
    a.dedup();
    b.sort_unstable();
    b.dedup();
    if a == b {
        return theirs.to_vec();
    }
    let walk = Ancestry::walk(dag, &a, &b);
    // Every known head is in their history: `Equal` or `Before`.
    if a.iter().all(|&k| walk.has(k, Ancestry::UNDER_THEIRS)) {
        return theirs.to_vec();
    }
    // Every head of theirs is in the known history: `After`.
    if b.iter().all(|&t| walk.has(t, Ancestry::UNDER_KNOWN)) {
        return known;
    }
    // Concurrent: the events of both sets that are no other one's ancestor.
    let mut keep: Vec<Cid> =
        a.iter().chain(&b).filter(|&&id| !walk.has(id, Ancestry::STRICTLY_UNDER)).map(|&id| dag.cid(id)).collect();
    keep.sort_unstable();
    keep.dedup();
    keep
}

/// What one downward walk from two sets of events (`known` and `theirs`)
/// learns of the events at or above the lowest of them: whether each is in
/// the history of `known` (an ancestor of one, or one), of `theirs`, and
/// whether it is a strict ancestor of any of them.
///
/// The walk pops events by descending height, so every child is done before
/// its parents and each event's marks are final when it is popped; each event
/// is pushed once. No recursion.
struct Ancestry {
    marks: HashMap<EventId, u8, KeyedState>,
}

impl Ancestry {
    const UNDER_KNOWN: u8 = 1;
    const UNDER_THEIRS: u8 = 2;
    const STRICTLY_UNDER: u8 = 4;

    fn walk(dag: &Dag, known: &[EventId], theirs: &[EventId]) -> Self {
        let mut marks: HashMap<EventId, u8, KeyedState> =
            HashMap::with_capacity_and_hasher(known.len() + theirs.len(), KeyedState::default());
        for &k in known {
            *marks.entry(k).or_default() |= Self::UNDER_KNOWN;
        }
        for &t in theirs {
            *marks.entry(t).or_default() |= Self::UNDER_THEIRS;
        }
        let floor = marks.keys().map(|&id| dag.height(id)).min().unwrap_or(0);
        let mut heap: BinaryHeap<(u64, EventId)> = marks.keys().map(|&id| (dag.height(id), id)).collect();
        while let Some((height, id)) = heap.pop() {
            if height <= floor {
                // Nothing below the floor is one of the sets.
                break;
            }
            let down = (marks[&id] & (Self::UNDER_KNOWN | Self::UNDER_THEIRS)) | Self::STRICTLY_UNDER;
            for p in dag.parents(id) {
                let ph = dag.height(p);
                if ph < floor {
                    continue;
                }
                match marks.entry(p) {
                    Entry::Vacant(e) => {
                        e.insert(down);
                        heap.push((ph, p));
                    }
                    Entry::Occupied(mut e) => *e.get_mut() |= down,
                }
            }
        }
        Ancestry { marks }
    }

    fn has(&self, id: EventId, mark: u8) -> bool {
        self.marks.get(&id).is_some_and(|m| m & mark != 0)
    }
}

#[cfg(test)]
mod tests;
