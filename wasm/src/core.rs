//! Every item of the merkle-clock core API that this crate uses, in one
//! place, so that a rename in the core is a change to this file alone.

pub(crate) use merkle_clock::auth::{
    AuthError, AuthorKey, MemberOp, Members, Policy, Role, Signer, author_of, genesis as signed_genesis, member_op_of,
    signed_event,
};
pub(crate) use merkle_clock::car::{CarLimits, read_car, write_car};
pub(crate) use merkle_clock::replica::ReplicaConfig;
pub(crate) use merkle_clock::replica::{AppendError, OpenError, Rejection};
pub(crate) use merkle_clock::store::{Blockstore, StoreError, StreamStore};
pub(crate) use merkle_clock::sync::{Bloom, Received, SessionConfig, Sessions};
pub(crate) use merkle_clock::{Block, Cid, ClockOrder, EncodeError, Event, Ingest, Ipld, MemoryBlockstore, Replica};

/// The one replica type of the JS API: over any store, the in-memory one or a
/// JS blockstore.
pub(crate) type DynReplica = Replica<dyn StreamStore>;

/// The core's session driver with peers named by JS strings.
pub(crate) type DynSessions = Sessions<String, Bloom>;

/// Opens a new replica of the stream that `genesis` starts, in `store`.
pub(crate) async fn create(store: std::sync::Arc<dyn StreamStore>, genesis: &Block) -> Result<DynReplica, OpenError> {
    Replica::create(store, genesis, ReplicaConfig::default()).await
}

/// Opens the stream that `genesis` starts, creating it if the store has not that `genesis` starts.
pub(crate) async fn open_or_create(
    store: std::sync::Arc<dyn StreamStore>,
    genesis: &Block,
) -> Result<DynReplica, OpenError> {
    Replica::open_or_create(store, genesis, ReplicaConfig::default()).await
}

/// Reopens the stream `stream` from `store`.
pub(crate) async fn open(store: std::sync::Arc<dyn StreamStore>, stream: &Cid) -> Result<DynReplica, OpenError> {
    Replica::open(store, stream, ReplicaConfig::default()).await
}

/// The events waiting for parents and their bytes (`Replica::pending`).
pub(crate) fn pending(replica: &DynReplica) -> (usize, usize) {
    let stats = replica.pending();
    (stats.events, stats.bytes)
}
