//! The simulated network: a queue of encoded messages with delivery times,
//! and the faults that act on it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::rng::SimRng;

/// A simulated time: one tick is one step of every node.
pub type Tick = u64;

/// A node, by its index in `0..nodes`.
pub type NodeId = usize;

/// A window of time during which some groups of nodes cannot reach each other.
///
/// Nodes in different `groups` cannot exchange messages while the partition
/// holds (`start <= t < end`); nodes listed in no group form one more group
/// together. A message is lost if the partition separates its ends when it
/// is sent or when it would be delivered. When the partition heals, the
/// nodes it separated reconnect: each resets the ephemeral part of its sync
/// state for the others, as a real transport does on a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The first tick of the partition.
    pub start: Tick,
    /// The tick at which it heals.
    pub end: Tick,
    /// Groups of nodes that can reach each other, but not the other groups.
    pub groups: Vec<Vec<NodeId>>,
}

impl Partition {
    /// Nodes `0..at` on one side, the rest on the other, from `start` to `end`.
    pub fn split(at: usize, start: Tick, end: Tick) -> Self {
        Partition { start, end, groups: vec![(0..at).collect()] }
    }

    /// Whether the partition holds at tick `t`.
    pub fn active(&self, t: Tick) -> bool {
        self.start <= t && t < self.end
    }

    /// Which group a node is in; `groups.len()` for the nodes listed in none.
    fn group(&self, node: NodeId) -> usize {
        self.groups.iter().position(|g| g.contains(&node)).unwrap_or(self.groups.len())
    }

    /// Whether `a` and `b` are on different sides (at any time).
    pub fn separates(&self, a: NodeId, b: NodeId) -> bool {
        self.group(a) != self.group(b)
    }

    /// Whether `a` and `b` cannot reach each other at tick `t`.
    pub fn cuts(&self, a: NodeId, b: NodeId, t: Tick) -> bool {
        self.active(t) && self.separates(a, b)
    }
}

/// The faults of one run. Probabilities are per message sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice (each copy with its own delay).
    pub dup: f64,
    /// The delay of every message, in ticks (at least 1).
    pub base_delay: Tick,
    /// The most extra delay added at random to a message (uniform in
    /// `0..=reorder`); messages overtake each other when it is above 0.
    pub reorder: Tick,
}

impl Faults {
    /// A perfect network: no loss, no duplicates, one tick of delay, in order.
    pub const NONE: Faults = Faults { loss: 0.0, dup: 0.0, base_delay: 1, reorder: 0 };
}

/// A message on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// When it arrives.
    pub at: Tick,
    /// Sending order, which breaks ties between messages arriving together.
    pub seq: u64,
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The encoded message.
    pub bytes: Vec<u8>,
}

/// What happened to a message handed to [`Network::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Queued once, for delivery at this tick.
    Queued(Tick),
    /// Queued twice, for delivery at these ticks.
    Duplicated(Tick, Tick),
    /// Lost at random.
    Lost,
    /// Lost because a partition separates the two nodes.
    Partitioned,
}

/// The network: a queue of messages ordered by delivery time (ties by
/// sending order), a fault model and the partitions.
///
/// Every random choice comes from the network's own [`SimRng`], in the
/// order messages are sent, so the same seed and the same sends give the
/// same deliveries.
#[derive(Debug)]
pub struct Network {
    queue: BinaryHeap<Reverse<(Tick, u64, usize)>>,
    slots: Vec<Option<Envelope>>,
    free: Vec<usize>,
    rng: SimRng,
    seq: u64,
    /// The faults in force; change them between ticks (the simulator turns
    /// them off when the fault phase ends).
    pub faults: Faults,
    /// The partitions of the run.
    pub partitions: Vec<Partition>,
}

impl Network {
    /// An empty network.
    pub fn new(rng: SimRng, faults: Faults, partitions: Vec<Partition>) -> Self {
        Network { queue: BinaryHeap::new(), slots: Vec::new(), free: Vec::new(), rng, seq: 0, faults, partitions }
    }

    /// Whether a partition separates `a` and `b` at tick `t`.
    pub fn cut(&self, a: NodeId, b: NodeId, t: Tick) -> bool {
        self.partitions.iter().any(|p| p.cuts(a, b, t))
    }

    /// Sends `bytes` from `from` to `to` at tick `now`, applying the faults.
    pub fn send(&mut self, now: Tick, from: NodeId, to: NodeId, bytes: Vec<u8>) -> Sent {
        // Draw every random value whatever the outcome, so one message's fate
        // does not shift the stream for the next.
        let lost = self.rng.chance(self.faults.loss);
        let dup = self.rng.chance(self.faults.dup);
        let d1 = self.delay();
        let d2 = self.delay();
        if self.cut(from, to, now) {
            return Sent::Partitioned;
        }
        if lost {
            return Sent::Lost;
        }
        let first = now + d1;
        if dup {
            let second = now + d2;
            self.push(Envelope { at: second, seq: 0, from, to, bytes: bytes.clone() });
            self.push(Envelope { at: first, seq: 0, from, to, bytes });
            Sent::Duplicated(first, second)
        } else {
            self.push(Envelope { at: first, seq: 0, from, to, bytes });
            Sent::Queued(first)
        }
    }

    fn delay(&mut self) -> Tick {
        self.faults.base_delay.max(1) + self.rng.range(0, self.faults.reorder)
    }

    fn push(&mut self, mut envelope: Envelope) {
        envelope.seq = self.seq;
        self.seq += 1;
        let key = (envelope.at, envelope.seq);
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(envelope);
                i
            }
            None => {
                self.slots.push(Some(envelope));
                self.slots.len() - 1
            }
        };
        self.queue.push(Reverse((key.0, key.1, slot)));
    }

    /// The next message due at or before `now`, if any.
    pub fn next_due(&mut self, now: Tick) -> Option<Envelope> {
        let &Reverse((at, _, slot)) = self.queue.peek()?;
        if at > now {
            return None;
        }
        self.queue.pop();
        self.free.push(slot);
        self.slots[slot].take()
    }

    /// The number of messages in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_in_time_order() {
        let mut n = Network::new(SimRng::new(1), Faults { reorder: 5, ..Faults::NONE }, Vec::new());
        for i in 0..20u8 {
            n.send(0, 0, 1, vec![i]);
        }
        let mut last = 0;
        let mut got = 0;
        for t in 0..10 {
            while let Some(e) = n.next_due(t) {
                assert!(e.at >= last && e.at <= t);
                last = e.at;
                got += 1;
            }
        }
        assert_eq!(got, 20);
        assert_eq!(n.in_flight(), 0);
    }

    #[test]
    fn partitions_cut_and_heal() {
        let p = Partition::split(2, 10, 20);
        assert!(p.cuts(0, 3, 10) && p.cuts(3, 1, 19));
        assert!(!p.cuts(0, 1, 15) && !p.cuts(2, 3, 15));
        assert!(!p.cuts(0, 3, 9) && !p.cuts(0, 3, 20));
        let mut n = Network::new(SimRng::new(1), Faults::NONE, vec![p]);
        assert_eq!(n.send(12, 0, 3, vec![1]), Sent::Partitioned);
        assert_eq!(n.send(12, 0, 1, vec![1]), Sent::Queued(13));
    }

    #[test]
    fn loss_and_duplication() {
        let mut n = Network::new(SimRng::new(1), Faults { loss: 1.0, ..Faults::NONE }, Vec::new());
        assert_eq!(n.send(0, 0, 1, vec![]), Sent::Lost);
        n.faults = Faults { dup: 1.0, ..Faults::NONE };
        assert_eq!(n.send(0, 0, 1, vec![]), Sent::Duplicated(1, 1));
        assert_eq!(n.in_flight(), 2);
    }
}
