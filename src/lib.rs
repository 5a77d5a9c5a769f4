#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod block;
pub mod car;
mod cbor;
pub mod crdt;
mod dag;
mod error;
mod event;
mod merge;
pub mod replica;
mod rng;
pub mod sim;
pub mod store;
pub mod sync;

pub use block::{BLAKE3, Block, DAG_CBOR, cid_of, short_cid};
pub use dag::{ClockOrder, Dag, EventId, Inserted, OrderKey};
pub use error::{BlockError, DecodeError, EncodeError, InsertError, UnknownEvent};
pub use event::{Event, Limits};
pub use merge::{BlockSet, heads, merge, order};
pub use replica::{Cursor, Delta, Ingest, IngestReport, Replica, ReplicaConfig};
pub use store::{Blockstore, LoggedEvent, MemoryBlockstore, StoreError, StreamStore};

pub use ipld_core::cid::Cid;
pub use ipld_core::ipld::Ipld;
