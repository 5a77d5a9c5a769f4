#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod announce;
pub mod codec;
mod node;

/// The sync protocol this crate drives.
pub(crate) mod sync_api {
    pub use merkle_clock::sync::*;
}

pub use libp2p;
pub use node::{Behaviour, BehaviourEvent, Config, Node, NodeError, NodeHandle, Source, Stats, Update};
pub use sync_api::SyncLimits;
