#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod announce;
mod ban;
pub mod bitswap;
pub mod codec;
mod config;
mod dial;
mod fetch;
mod gossip;
mod handle;
mod metered;
mod node;
mod pull;
mod sessions;
mod wire;

pub use bitswap::{BitswapConfig, BitswapFetcher, BitswapStats};
pub use config::{Behaviour, BehaviourEvent, NodeConfig};
pub use fetch::StreamFetcher;
pub use gossip::NodeBroadcaster;
pub use handle::{NodeError, NodeHandle, Source, Stats, Update};
pub use libp2p;
pub use merkle_clock::sync::{SessionConfig, SessionStats, SyncLimits};
pub use node::Node;
