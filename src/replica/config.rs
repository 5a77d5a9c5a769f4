//! How a replica behaves.

use crate::event::Limits;

/// How a replica behaves. `#[non_exhaustive]`: start from
/// [`ReplicaConfig::default()`] and change fields.
///
/// ```
/// use merkle_clock::ReplicaConfig;
///
/// let mut config = ReplicaConfig::default();
/// config.max_pending_bytes = 8 << 20;
/// assert_eq!(config.max_pending_events, 100_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaConfig {
    /// Limits on every block appended or accepted (see [`Limits`]).
    pub limits: Limits,
    /// Most events held in the pending buffer. Default: 100,000.
    pub max_pending_events: usize,
    /// Most memory the pending buffer holds, in bytes. Default: 64 MiB.
    ///
    /// Each waiting event counts its block's bytes (copied into an allocation
    /// of their own, so a block sliced from a large message does not keep the
    /// message alive) plus the bookkeeping it costs, taken from the sizes of
    /// the buffer's real structures: its slot in the event table and in the
    /// arrival queue (counted at the largest share a table or queue reserves
    /// after it grows), its parents when they do not fit inline, and for each
    /// missing parent a slot in the waiting table and a minimal waiter list.
    /// A small one-parent event costs about 1 KiB of bookkeeping, so with the
    /// defaults the byte cap, not the count, bounds a flood of small orphans.
    /// [`Replica::pending`](crate::Replica::pending) reports the bytes counted.
    /// The allocator's own per-allocation overhead is not counted.
    pub max_pending_bytes: usize,
    /// Most entries read from a checkpoint's `flagged` tree (the membership
    /// events and checkpoints below its cut) when starting from it
    /// ([`Replica::bootstrap`](crate::Replica::bootstrap)) or judging late
    /// events ([`Replica::admit_late`](crate::Replica::admit_late)). The
    /// tree is read before the checkpoint is trusted, so this bounds what an
    /// untrusted one can make a replica fetch and verify. Default: 100,000.
    pub max_flagged_entries: usize,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            limits: Limits::DEFAULT,
            max_pending_events: 100_000,
            max_pending_bytes: 64 << 20,
            max_flagged_entries: 100_000,
        }
    }
}
