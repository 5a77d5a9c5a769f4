//! The redb-backed store (filled in by the redb work).

/// Placeholder until the redb store lands.
#[derive(Debug)]
pub struct RedbBlockstore;

/// Placeholder until the redb store lands.
#[derive(Debug, Clone, Copy)]
pub enum Durability {
    /// Each commit is durable.
    Immediate,
}
