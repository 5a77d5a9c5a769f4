//! A reader's place in the total order.

use ipld_core::cid::Cid;

use crate::dag::OrderKey;
#[cfg(doc)]
use crate::replica::Replica;

/// A reader's place in the total order, for [`Replica::events_since`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Events that had arrived when the reader last read.
    pub(super) seen: usize,
    /// How many events of the order the reader has consumed.
    pub(super) position: usize,
    /// The key of the last event consumed.
    pub(super) last: Option<OrderKey>,
}

impl Cursor {
    /// A cursor before the first event.
    pub fn start() -> Self {
        Cursor::default()
    }
    /// How many events of the order the reader has consumed.
    pub fn position(&self) -> usize {
        self.position
    }
}

/// Events to read after a [`Cursor`], from [`Replica::events_since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// `Some(p)` when events arrived that sort before what the reader already
    /// consumed: the reader must undo what it folded from position `p` on and
    /// fold `events` again from there. `None`: just continue.
    pub replay_from: Option<usize>,
    /// The position of `events[0]` in the total order.
    pub start: usize,
    /// The events to fold, in the total order.
    pub events: Vec<Cid>,
    /// The cursor to pass next time.
    pub cursor: Cursor,
}
