#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod auth;
mod block;
pub mod car;
mod cbor;
pub mod checkpoint;
pub mod crdt;
mod dag;
mod error;
mod event;
mod merge;
pub mod replica;
// The session driver will use it; until then only `sim` does.
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
mod rng;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod sim;
pub mod store;
pub mod sync;

pub use block::{BLAKE3, Block, DAG_CBOR, cid_of, short_cid};
pub use car::CarError;
pub use checkpoint::CheckpointError;
pub use crdt::FoldError;
pub use dag::{ClockOrder, Dag, EventId, Inserted, MAX_ANCHOR_HEIGHT, OrderKey, Undecided};
pub use error::{BlockError, DecodeError, EncodeError, Error, InsertError, UnknownEvent};
pub use event::{Event, Limits};
pub use merge::{BlockSet, heads, merge, order};
pub use replica::{AppendError, Cursor, Delta, Ingest, IngestReport, OpenError, Rejection, Replica, ReplicaConfig};
pub use store::{Blockstore, LoggedEvent, MemoryBlockstore, StoreError, StreamStore};
pub use sync::SyncError;
pub use sync::transport::TransportError;

pub use ipld_core::cid::Cid;
pub use ipld_core::ipld::Ipld;
