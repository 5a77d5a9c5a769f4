//! The plain ordered log: every event, in the total order.
//!
//! The rule is documented on [`Log`] (this module is private).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use ipld_core::cid::Cid;
use serde::de::DeserializeOwned;

use super::fold::{FoldEvent, Reducer};

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

    fn apply(&self, state: &mut Self::State, event: &FoldEvent<P>) {
        state.push(LogEntry { cid: event.cid, height: event.height, payload: event.payload.clone() });
    }
}
