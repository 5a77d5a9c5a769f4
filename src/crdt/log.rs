//! The plain ordered log: every event, in the total order.
//!
//! The rule is documented on [`Log`] (this module is private).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use ipld_core::cid::Cid;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::fold::{FoldEvent, Reducer};
use super::resume::{Resumable, StateError, from_cbor, to_cbor};
use crate::dag::OrderKey;

/// Entries per shared chunk of a [`LogState`].
const CHUNK: usize = 256;

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry<P> {
    /// The event's CID.
    pub cid: Cid,
    /// Its height.
    pub height: u64,
    /// Its payload.
    pub payload: P,
}

/// The events folded so far, in the total order (the genesis excluded).
///
/// Stored as shared chunks of 256 entries, so cloning it (as a checkpoint
/// does) copies one pointer per chunk rather than every entry.
pub struct LogState<P> {
    chunks: Vec<Arc<Vec<LogEntry<P>>>>,
    len: usize,
}

impl<P> Clone for LogState<P> {
    fn clone(&self) -> Self {
        LogState { chunks: self.chunks.clone(), len: self.len }
    }
}

impl<P> Default for LogState<P> {
    fn default() -> Self {
        LogState { chunks: Vec::new(), len: 0 }
    }
}

impl<P: PartialEq> PartialEq for LogState<P> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<P: Eq> Eq for LogState<P> {}

impl<P: fmt::Debug> fmt::Debug for LogState<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<P> LogState<P> {
    /// The number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry at `index` (position `index + 1` of the order: the genesis is not in the log).
    pub fn get(&self, index: usize) -> Option<&LogEntry<P>> {
        self.chunks.get(index / CHUNK).and_then(|c| c.get(index % CHUNK))
    }

    /// The last entry.
    pub fn last(&self) -> Option<&LogEntry<P>> {
        self.chunks.last().and_then(|c| c.last())
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = &LogEntry<P>> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }
}

impl<P: Clone> LogState<P> {
    /// Appends an entry; copies at most one chunk when it is shared with a clone.
    pub fn push(&mut self, entry: LogEntry<P>) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => Arc::make_mut(last).push(entry),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(entry);
                self.chunks.push(Arc::new(chunk));
            }
        }
        self.len += 1;
    }

    /// Inserts an entry at its place in the order (by height, then CID
    /// bytes); an entry already there is not inserted twice. Appending is the
    /// common case (a fold delivers entries in order); an entry that sorts
    /// before the last one (a late event applied after a checkpoint's state)
    /// rebuilds the chunks from where it lands, a cost that follows the
    /// entries after it.
    pub fn insert(&mut self, entry: LogEntry<P>) {
        let key = OrderKey::new(entry.height, &entry.cid);
        let key_of = |e: &LogEntry<P>| OrderKey::new(e.height, &e.cid);
        if self.last().is_none_or(|last| key_of(last) < key) {
            return self.push(entry);
        }
        // The first chunk whose last entry sorts at or after the new one.
        let c = self.chunks.partition_point(|chunk| chunk.last().is_some_and(|e| key_of(e) < key));
        let mut tail: Vec<LogEntry<P>> =
            self.chunks.drain(c..).flat_map(|chunk| chunk.iter().cloned().collect::<Vec<_>>()).collect();
        let at = tail.partition_point(|e| key_of(e) < key);
        let duplicate = tail.get(at).is_some_and(|e| key_of(e) == key);
        if !duplicate {
            tail.insert(at, entry);
        }
        self.len = self.chunks.len() * CHUNK;
        for e in tail {
            self.push(e);
        }
    }
}

/// The plain ordered log: every event, in the total order. Any payload type
/// `P` (use [`Ipld`](crate::Ipld) for "anything"); the state is a
/// [`LogState<P>`].
///
/// **Conflict rule:** nothing is discarded. Concurrent events are all kept,
/// placed by `(height, CID bytes)`: the same sequence on every replica that
/// holds the same events. A late event is inserted where it sorts (the
/// [`Fold`](super::Fold) replays from there). This is the interpretation the
/// others are projections of: an audit trail, a chat history, the input of
/// a stricter rule decided later.
///
/// ```
/// use std::sync::Arc;
/// use merkle_clock::{Event, MemoryBlockstore, replica::{ReplicaConfig, Replica}};
/// use merkle_clock::crdt::{Fold, Log};
/// # futures::executor::block_on(async {
/// let genesis = Event::genesis("chat").encode()?;
/// let mut r = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
/// r.append(&"hello").await?;
/// r.append(&"world").await?;
/// let mut fold = Fold::new(Log::<String>::new());
/// fold.update(&r).await?;
/// let lines: Vec<&str> = fold.state().iter().map(|e| e.payload.as_str()).collect();
/// assert_eq!(lines, ["hello", "world"]);
/// # Ok::<(), merkle_clock::Error>(())
/// # })?;
/// # Ok::<(), merkle_clock::Error>(())
/// ```
pub struct Log<P>(PhantomData<fn() -> P>);

impl<P> Log<P> {
    /// The reducer.
    pub fn new() -> Self {
        Log(PhantomData)
    }
}

impl<P> Default for Log<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> Clone for Log<P> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<P> fmt::Debug for Log<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Log")
    }
}

impl<P: Clone + DeserializeOwned> Reducer for Log<P> {
    type Payload = P;
    type State = LogState<P>;

    fn init(&self) -> Self::State {
        LogState::default()
    }

    /// Appends; an event that sorts before the last entry (only a late event
    /// applied after a checkpoint's state does) goes to its place.
    fn apply(&self, state: &mut Self::State, event: &FoldEvent<P>) {
        state.insert(LogEntry { cid: event.cid, height: event.height, payload: event.payload.clone() });
    }
}

/// State block: a list of `[link, height, payload]`, in the total order.
/// The whole history's payloads: checkpointing a log saves folding time, not
/// bytes (keep the log's checkpoints for short streams, or checkpoint a
/// projection of it instead).
impl<P: Clone + Serialize + DeserializeOwned> Resumable for Log<P> {
    fn save(&self, state: &Self::State) -> Result<Vec<u8>, StateError> {
        let rows: Vec<(&Cid, u64, &P)> = state.iter().map(|e| (&e.cid, e.height, &e.payload)).collect();
        to_cbor(&rows)
    }

    fn load(&self, bytes: &[u8]) -> Result<Self::State, StateError> {
        let rows: Vec<(Cid, u64, P)> = from_cbor(bytes)?;
        let mut state = LogState::default();
        for (cid, height, payload) in rows {
            state.insert(LogEntry { cid, height, payload });
        }
        Ok(state)
    }
}
