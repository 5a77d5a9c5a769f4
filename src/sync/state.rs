//! Per-peer sync state: a durable part (the heads both sides last shared)
//! that encodes to bytes, and an ephemeral part (the current session).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasher;

use ipld_core::cid::Cid;
use rand_core::RngCore;

use super::bloom::BloomFilter;
use super::message::{SyncError, SyncLimits};
use crate::block::{Digest, KeyedState, digest_of};
use crate::cbor::{self, MAJOR_ARRAY, MAJOR_TAG, MAJOR_UINT, Reader, TAG_CID};
use crate::dag::{Dag, EventId};

/// The version of [`SyncState::encode`]'s format.
const STATE_VERSION: u64 = 1;

/// What one replica knows of its conversation with one peer.
///
/// The **durable** part is the set of heads both sides last shared: the
/// history below them is known to be on both sides, so the next session's
/// filter only covers what was added since. [`SyncState::encode`] writes it
/// and [`SyncState::decode`] reads it back (with a fresh session).
///
/// The **ephemeral** part is the current session: the peer's last heads and
/// filter, the blocks already sent and the CIDs already asked for (neither is
/// sent twice in a session), whether a reply is owed, message numbers.
/// [`SyncState::reset`] drops it, keeping the durable part: call it when the
/// connection to the peer was lost or a message may have been, so that the
/// next message starts a new session.
///
/// Every filter is keyed with a fresh 16-byte salt drawn from a secret:
/// [`SyncState::new`] draws the secret from OS randomness,
/// [`SyncState::with_seed`] derives it from a seed (reproducible traces).
///
/// ```
/// use merkle_clock::sync::SyncState;
/// # fn main() -> Result<(), merkle_clock::sync::SyncError> {
/// let state = SyncState::with_seed(7);
/// let bytes = state.encode();
/// let back = SyncState::decode(&bytes)?;
/// assert_eq!(back.shared_heads(), state.shared_heads());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SyncState {
    // The session is boxed so that a state is small to move and to keep in
    // an enum next to other protocols' states.
    pub(crate) shared: Vec<Cid>,
    pub(crate) limits: SyncLimits,
    salts: Salts,
    pub(crate) session: Box<Session>,
    /// Events the peer said it holds only pruned, ascending: never asked of
    /// it again (kept across sessions; at most `max_wants` of them).
    pub(crate) unavailable: Vec<Cid>,
}

/// The current session with the peer.
#[derive(Clone, Default)]
pub(crate) struct Session {
    /// Our next filter message opens our session (it is not an answer to the peer's hello).
    pub hello: bool,
    /// Our filter went out in this session.
    pub filter_sent: bool,
    /// Seq of the message that carried our filter.
    pub filter_seq: u64,
    /// Our last message's number.
    pub seq: u64,
    /// The peer's last message's number (what we acknowledge).
    pub their_seq: u64,
    /// The ack of the peer's last message: our messages it had seen.
    pub their_ack: u64,
    /// The peer's last message said more blocks follow.
    pub their_more: bool,
    /// We asked the peer to go on since its last message.
    pub prompted: bool,
    /// Heads we last told the peer (only ever compared: kept as a print).
    pub last_sent_heads: Option<HeadsPrint>,
    /// Heads the peer last told us.
    pub their_heads: Option<Vec<Cid>>,
    /// The seq of the newest message whose heads we know (it sent them, or
    /// said they had not changed since the one before).
    pub their_heads_seq: u64,
    /// Our heads when we last sent the peer everything it lacked: it will
    /// hold exactly these once our messages arrive, so we need not speak
    /// again until something changes.
    pub predicted: Option<Vec<Cid>>,
    /// The peer sent blocks since our last message: acknowledge them, even
    /// with nothing else to say, so that it knows they arrived.
    pub owe_ack: bool,
    /// The peer's filter and its `since`.
    pub their_filter: Option<BloomFilter>,
    pub their_since: Vec<Cid>,
    /// The peer sent a filter we have not answered yet.
    pub owe_reply: bool,
    /// CIDs the peer asked for, not answered yet.
    pub their_wants: Vec<Cid>,
    /// Blocks sent in this session (by digest: every block sent is an
    /// event of our DAG), with the seq of the message that carried them.
    /// Keyed like the store's tables (a digest is already uniform). The
    /// blocks of a reply in parts are recorded as runs of the backlog
    /// instead ([`Backlog::runs`]); [`Session::sent_in`] reads both.
    pub sent: HashMap<Digest, u64, KeyedState>,
    /// CIDs we asked for in this session.
    pub asked: HashSet<Cid>,
    /// Something arrived since we last made a message.
    pub dirty: bool,
    /// Our heads when we last made (or declined to make) a message (only
    /// ever compared: kept as a print).
    pub last_heads: Option<HeadsPrint>,
    /// What the peer lacks, in order, while it goes out over several
    /// messages: computed once, not for every part.
    pub backlog: Option<Backlog>,
    /// Our heads when the peer's filter was last answered in full: the
    /// events at or below them were checked against it, and the next
    /// answer to the same filter checks only the events above them.
    pub filtered: Option<Vec<Cid>>,
}

/// The events the peer lacks (`difference(our heads, its heads)`) in the
/// total order, and how far into them our messages got: a difference too
/// large for one message is computed once and sent part by part, instead of
/// computed again over the whole history for every part.
#[derive(Clone)]
pub(crate) struct Backlog {
    /// Our heads when it was computed.
    pub mine: HeadsPrint,
    /// The peer's heads it holds against (sorted).
    pub theirs: Vec<Cid>,
    /// The difference, ascending by order key.
    pub ids: Vec<EventId>,
    /// `ids[..next]` were sent.
    pub next: usize,
    /// Runs of `ids` that went out whole, each in one message of a reply
    /// in parts: `(start, end, seq)`, ascending. A catch-up's blocks are
    /// recorded here, a range a message, instead of one by one in
    /// [`Session::sent`] (each inserted, looked up and, once the peer's
    /// heads say it arrived, found by a walk and removed).
    pub runs: Vec<(usize, usize, u64)>,
}

impl Backlog {
    /// A backlog of `ids` (the difference against `theirs`, ascending by
    /// order key) with nothing sent yet.
    pub fn new(mine: HeadsPrint, theirs: Vec<Cid>, ids: Vec<EventId>) -> Self {
        Backlog { mine, theirs, ids, next: 0, runs: Vec::new() }
    }

    /// The seq of the message whose run carried `id`, if one did.
    fn sent_in(&self, dag: &Dag, id: EventId) -> Option<u64> {
        if self.runs.is_empty() {
            return None;
        }
        let key = dag.key(id);
        let at = self.ids[..self.next].binary_search_by(|x| dag.key(*x).cmp(&key)).ok()?;
        let i = self.runs.partition_point(|r| r.0 <= at).checked_sub(1)?;
        let (_, end, seq) = self.runs[i];
        (at < end).then_some(seq)
    }

    /// Records that `n` blocks went out in message `seq`: the next `n` of `ids`.
    pub fn record_run(&mut self, n: usize, seq: u64) {
        let start = self.next;
        self.next += n;
        self.runs.push((start, self.next, seq));
    }

    /// Whether `sent` (a message's blocks, in order) are the next of `ids`,
    /// to be recorded as a run: only in a reply in parts (`parts`: this
    /// message leaves some for later, or an earlier one did), so that a
    /// short exchange keeps one record per block.
    pub fn is_run(&self, sent: &[EventId], parts: bool) -> bool {
        (parts || !self.runs.is_empty())
            && !sent.is_empty()
            && self.ids.get(self.next..self.next + sent.len()) == Some(sent)
    }

    /// Moves past the events at the front that were sent.
    pub fn skip_sent(&mut self, dag: &Dag, sent: &HashMap<Digest, u64, KeyedState>) {
        while self.ids.get(self.next).is_some_and(|id| sent.contains_key(dag.digest(*id))) {
            self.next += 1;
        }
    }

    /// Whether the backlog still holds against the peer's heads `theirs`
    /// (sorted): each is one it held before, or an event we already sent
    /// from the backlog. The peer's history then grew only by what we sent,
    /// whose ancestors come earlier in the order: none of `ids[next..]`
    /// reached it.
    pub fn holds_for(&self, dag: &Dag, theirs: &[Cid]) -> bool {
        let sent = &self.ids[..self.next];
        theirs.iter().all(|h| {
            self.theirs.binary_search(h).is_ok()
                || dag.id(h).is_some_and(|id| {
                    let key = dag.key(id);
                    sent.binary_search_by(|x| dag.key(*x).cmp(&key)).is_ok()
                })
        })
    }
}

/// A fingerprint of a list of heads: BLAKE3 of their count and of each
/// one's codec, hash code and digest. A session keeps the heads it only
/// compares as prints, 32 bytes instead of 96 a head, times the peers (a
/// simulated node with 6 peers and 10 heads saves about 10 KB).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadsPrint([u8; 32]);

impl HeadsPrint {
    /// The fingerprint's bytes.
    #[cfg(feature = "testing")]
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn of(heads: &[Cid]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(&(heads.len() as u64).to_le_bytes());
        for c in heads {
            h.update(&c.codec().to_le_bytes());
            h.update(&c.hash().code().to_le_bytes());
            h.update(&[c.hash().size()]);
            h.update(c.hash().digest());
        }
        HeadsPrint(*h.finalize().as_bytes())
    }
}

impl Session {
    fn fresh(hello: bool) -> Self {
        Session { hello, dirty: true, ..Session::default() }
    }

    /// The seq of the message of this session that carried the block of
    /// `id`, if one did (one by one in `sent`, or in a run of the backlog).
    pub fn sent_in(&self, dag: &Dag, id: EventId) -> Option<u64> {
        self.sent.get(dag.digest(id)).copied().or_else(|| self.backlog.as_ref()?.sent_in(dag, id))
    }

    /// [`Session::sent_in`] of a CID, which may not be in the DAG.
    pub fn sent_cid(&self, dag: &Dag, cid: &Cid) -> Option<u64> {
        let digest = digest_of(cid)?;
        self.sent.get(&digest).copied().or_else(|| self.backlog.as_ref()?.sent_in(dag, dag.id(cid)?))
    }

    /// Moves what runs of `old` (a backlog being replaced) carried into
    /// `sent`, for the events `live` says the peer still lacks: their
    /// record outlives the runs.
    pub fn keep_runs(&mut self, dag: &Dag, old: &Backlog, live: impl Fn(&Digest) -> bool) {
        for &(start, end, seq) in &old.runs {
            for id in &old.ids[start..end] {
                let d = dag.digest(*id);
                if live(d) {
                    self.sent.insert(*d, seq);
                }
            }
        }
    }
}

impl Default for SyncState {
    fn default() -> Self {
        Self::new()
    }
}

impl SyncState {
    /// A state for a peer never met, with a secret for the salts from OS randomness.
    pub fn new() -> Self {
        SyncState {
            shared: Vec::new(),
            limits: SyncLimits::default(),
            salts: Salts::random(),
            session: Box::new(Session::fresh(true)),
            unavailable: Vec::new(),
        }
    }

    /// A state whose salts derive from `seed`: the same seed and the same
    /// calls give the same messages. For simulations and tests; a real peer
    /// should use [`SyncState::new`], or an attacker who knows the seed can
    /// mine CIDs that collide in its filters.
    pub fn with_seed(seed: u64) -> Self {
        SyncState { salts: Salts::seeded(seed), ..Self::new() }
    }

    /// Derives the salts from `seed` from now on (see [`SyncState::with_seed`]).
    pub fn reseed(&mut self, seed: u64) {
        self.salts = Salts::seeded(seed);
    }

    /// Replaces the limits applied to messages made and taken with this state.
    pub fn set_limits(&mut self, limits: SyncLimits) {
        self.limits = limits;
    }

    /// The limits applied to messages made and taken with this state.
    pub fn limits(&self) -> &SyncLimits {
        &self.limits
    }

    /// The heads both sides last shared (the durable part), ascending.
    pub fn shared_heads(&self) -> &[Cid] {
        &self.shared
    }

    /// The peer's heads as it last told them (kept across [`SyncState::reset`]).
    ///
    /// This is what the peer is *known* to hold: a replica never loses an
    /// event, so heads it told stay true. A pair whose told heads equal our
    /// heads is in sync, and both sides know it: every message carries the
    /// sender's heads when they changed since its last, acknowledgements
    /// too. A prediction (what the peer will hold once our blocks arrive)
    /// never counts, because a message may be lost.
    pub fn their_heads(&self) -> Option<&[Cid]> {
        self.session.their_heads.as_deref()
    }

    /// Whether the peer's last message said more blocks follow: a long reply
    /// of its is coming in parts (starting a new session now would make it
    /// start over).
    pub fn expecting_more(&self) -> bool {
        self.session.their_more
    }

    /// Drops the session (the ephemeral part), keeping the shared heads: the
    /// next message starts a new session, which tells the peer to start one
    /// too. Call it after a reconnect, or when a message may have been lost.
    ///
    /// The peer's heads as it last told them are kept (they are what it
    /// said, whichever session it said them in): a peer whose message
    /// reached our old session need not repeat them, and the next heads it
    /// sends replace them.
    pub fn reset(&mut self) {
        let their_heads = self.session.their_heads.take();
        *self.session = Session::fresh(true);
        self.session.their_heads = their_heads;
    }

    /// Events the peer was given by other means (a gossip announcement that
    /// reached every peer): this session does not push them, as if it had
    /// sent them, but answers the peer's wants for them. Only while a
    /// session is open, and within `max_blocks` such events.
    pub(crate) fn note_delivered(&mut self, cids: &[Cid]) {
        let s = &mut self.session;
        if !s.filter_sent {
            return;
        }
        for digest in cids.iter().filter_map(digest_of) {
            if s.sent.len() >= self.limits.max_blocks {
                break;
            }
            // Number 0: a want for it is answered whatever the peer had seen.
            s.sent.entry(digest).or_insert(0);
        }
    }

    /// Events the peer said it holds only pruned (its answer to our wants):
    /// we do not ask it for them again. Ascending. Those our replica still
    /// lacks are [`SyncState::unavailable`].
    pub fn pruned_by_peer(&self) -> &[Cid] {
        &self.unavailable
    }

    /// Events our replica lacks (a pending event waits for them) that this
    /// peer said it holds only pruned: it cannot supply them, so fetch them
    /// elsewhere, or bootstrap from a checkpoint. Ascending.
    pub fn unavailable<S: ?Sized + crate::store::StreamStore>(&self, replica: &crate::Replica<S>) -> Vec<Cid> {
        replica.missing().into_iter().filter(|c| self.unavailable.binary_search(c).is_ok()).collect()
    }

    /// Records the peer's answer that it holds these only pruned.
    pub(crate) fn note_pruned(&mut self, pruned: Vec<Cid>) {
        if pruned.is_empty() {
            return;
        }
        let room = self.limits.max_wants.saturating_sub(self.unavailable.len());
        self.unavailable.extend(pruned.into_iter().take(room));
        self.unavailable.sort_unstable();
        self.unavailable.dedup();
    }

    /// Starts a new session because the peer started one (our next filter
    /// message answers its hello).
    pub(crate) fn restart_for_peer(&mut self) {
        *self.session = Session::fresh(false);
    }

    /// A fresh salt for the next filter.
    pub(crate) fn next_salt(&mut self) -> [u8; 16] {
        self.salts.next()
    }

    /// A state whose every filter uses `salt`: what a protocol *without* a
    /// per-message salt would do. Only for the tests that show the attack.
    #[cfg(test)]
    pub(crate) fn with_fixed_salt(salt: [u8; 16]) -> Self {
        SyncState { salts: Salts { fixed: Some(salt), ..Salts::seeded(0) }, ..Self::new() }
    }

    /// Encodes the durable part: `[1, [shared heads as links]]` in DAG-CBOR.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + super::LINK_BYTES * self.shared.len());
        cbor::write_head(&mut out, MAJOR_ARRAY, 2);
        cbor::write_head(&mut out, MAJOR_UINT, STATE_VERSION);
        cbor::write_head(&mut out, MAJOR_ARRAY, self.shared.len() as u64);
        for cid in &self.shared {
            cbor::write_link(&mut out, cid);
        }
        out
    }

    /// Reads back what [`SyncState::encode`] wrote, with a fresh session and
    /// a secret from OS randomness.
    ///
    /// # Errors
    /// [`SyncError::UnsupportedVersion`] or [`SyncError::Decode`].
    pub fn decode(bytes: &[u8]) -> Result<SyncState, SyncError> {
        let mut r = Reader::new(bytes);
        let bad = |offset: usize, rule: &'static str| SyncError::Decode { offset, rule };
        let (major, _, n) = r.head()?;
        if major != MAJOR_ARRAY || n == 0 {
            return Err(bad(0, "a sync state is a non-empty list"));
        }
        let at = r.pos();
        let (major, _, version) = r.head()?;
        if major != MAJOR_UINT {
            return Err(bad(at, "the version must be an unsigned integer"));
        }
        if version != STATE_VERSION {
            return Err(SyncError::UnsupportedVersion { version });
        }
        if n != 2 {
            return Err(bad(0, "a version 1 sync state is a list of 2 items"));
        }
        let at = r.pos();
        let (major, _, count) = r.head()?;
        if major != MAJOR_ARRAY {
            return Err(bad(at, "shared heads must be a list"));
        }
        if count.saturating_mul(super::LINK_BYTES as u64) > r.remaining() as u64 {
            return Err(bad(at, "length exceeds the input"));
        }
        let mut shared = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let at = r.pos();
            let (major, _, tag) = r.head()?;
            if major != MAJOR_TAG || tag != TAG_CID {
                return Err(bad(at, "expected a link (tag 42)"));
            }
            let cid = r.link_body()?;
            if digest_of(&cid).is_none() {
                return Err(bad(at, "a link is not an event CID (CIDv1, dag-cbor, blake3-256)"));
            }
            shared.push(cid);
        }
        if r.remaining() > 0 {
            return Err(bad(r.pos(), "trailing bytes after the sync state"));
        }
        shared.sort_unstable();
        shared.dedup();
        Ok(SyncState { shared, ..SyncState::new() })
    }
}

impl fmt::Debug for SyncState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.session;
        f.debug_struct("SyncState")
            .field("shared", &self.shared.iter().map(crate::block::short_cid).collect::<Vec<_>>())
            .field("seq", &s.seq)
            .field("their_seq", &s.their_seq)
            .field("their_heads", &s.their_heads.as_ref().map(Vec::len))
            .field("sent", &s.sent.len())
            .field("asked", &s.asked.len())
            .finish()
    }
}

/// Salts: keyed BLAKE3 of a counter under a secret.
#[derive(Clone)]
struct Salts {
    secret: [u8; 32],
    counter: u64,
    /// Tests only: the same salt every time.
    fixed: Option<[u8; 16]>,
}

impl Salts {
    fn random() -> Self {
        let mut secret = [0u8; 32];
        if rand_core::OsRng.try_fill_bytes(&mut secret).is_err() {
            // No OS randomness: std's per-process random keys still differ per run.
            let s = std::hash::RandomState::new();
            for (i, chunk) in secret.chunks_mut(8).enumerate() {
                chunk.copy_from_slice(&s.hash_one(i as u64).to_le_bytes());
            }
        }
        Salts { secret, counter: 0, fixed: None }
    }

    fn seeded(seed: u64) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key("merkle-clock sync salt seed v1");
        hasher.update(&seed.to_le_bytes());
        Salts { secret: *hasher.finalize().as_bytes(), counter: 0, fixed: None }
    }

    fn next(&mut self) -> [u8; 16] {
        if let Some(salt) = self.fixed {
            return salt;
        }
        self.counter += 1;
        let h = blake3::keyed_hash(&self.secret, &self.counter.to_le_bytes());
        h.as_bytes()[..16].try_into().expect("16 bytes")
    }
}
