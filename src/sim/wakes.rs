//! Which nodes' drivers tick: the simulator visits only nodes with something to do.

use std::collections::BTreeMap;

use super::{NodeId, Tick};

/// Which nodes run their driver's tick: only those with something to do.
///
/// A node wakes when it starts, appends, receives a message or reconnects
/// a peer, and at the driver's next deadline
/// ([`Sessions::next_deadline`](crate::sync::Sessions::next_deadline): a timeout, the end of a pause, the next
/// anti-entropy). A node with none of these has nothing its driver's tick
/// would say, so it costs nothing per tick, whatever its number of peers.
#[derive(Default)]
pub(super) struct Wakes {
    flagged: Vec<bool>,
    due: Vec<NodeId>,
    timers: BTreeMap<Tick, Vec<NodeId>>,
}

impl Wakes {
    pub(super) fn new(nodes: usize) -> Self {
        Wakes { flagged: vec![false; nodes], ..Wakes::default() }
    }

    pub(super) fn wake(&mut self, n: NodeId) {
        if !std::mem::replace(&mut self.flagged[n], true) {
            self.due.push(n);
        }
    }

    pub(super) fn at(&mut self, t: Tick, n: NodeId) {
        self.timers.entry(t).or_default().push(n);
    }

    /// The nodes due at `t`, ascending, and clears them.
    pub(super) fn take(&mut self, t: Tick) -> Vec<NodeId> {
        while let Some(entry) = self.timers.first_entry() {
            if *entry.key() > t {
                break;
            }
            for n in entry.remove() {
                self.wake(n);
            }
        }
        let mut due = std::mem::take(&mut self.due);
        due.sort_unstable();
        for &n in &due {
            self.flagged[n] = false;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn woken_nodes_tick_once_in_order_and_timers_fire_when_due() {
        let mut w = Wakes::new(5);
        w.wake(3);
        w.wake(1);
        w.wake(3);
        w.at(4, 2);
        w.at(2, 0);
        assert_eq!(w.take(1), vec![1, 3]);
        assert_eq!(w.take(1), Vec::<NodeId>::new());
        assert_eq!(w.take(3), vec![0]);
        w.wake(2);
        assert_eq!(w.take(5), vec![2]); // woken and due: once
    }
}
