#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod body;
mod car_stream;
mod client;
mod error;
mod fetcher;
mod request;
mod server;

pub use body::GatewayBody;
pub use error::GatewayError;
pub use fetcher::{FetcherConfig, FetcherStats, GatewayFetcher};
pub use request::{CAR, DagScope, Format, RAW};
pub use server::{Gateway, GatewayConfig};
