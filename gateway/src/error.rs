//! What can go wrong fetching from a gateway.

use std::time::Duration;

use merkle_clock::{BlockError, CarError, Cid};
use thiserror::Error;

/// A fetch from a trustless gateway failed. Nothing from a failed fetch
/// reaches the caller: a response either verifies whole or is this error.
///
/// Errors name the gateway (its base URL) and, where there is one, the CID.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A gateway URL is not `http://host[:port][/path]`.
    #[error("bad gateway URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong (an unsupported scheme, no host, ...).
        reason: String,
    },
    /// No gateway was configured.
    #[error("no gateway URL given")]
    NoGateway,
    /// The TCP connection could not be opened.
    #[error("{gateway}: cannot connect: {source}")]
    Connect {
        /// The gateway.
        gateway: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The gateway did not answer in time (connecting, the response head and
    /// the whole body count against [`FetcherConfig::timeout`](crate::FetcherConfig::timeout)).
    #[error("{gateway}: no complete answer within {after:?}")]
    Timeout {
        /// The gateway.
        gateway: String,
        /// The time-out that passed.
        after: Duration,
    },
    /// The HTTP exchange failed (a malformed response, a connection cut
    /// mid-body: a CAR stream the gateway gave up on ends this way).
    #[error("{gateway}: HTTP failed: {source}")]
    Http {
        /// The gateway.
        gateway: String,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// The gateway does not have the block (HTTP 404 or 410).
    #[error("{gateway}: {cid} not found")]
    NotFound {
        /// The gateway.
        gateway: String,
        /// The CID asked.
        cid: Cid,
    },
    /// Any other status than 200 and 404.
    #[error("{gateway}: HTTP status {status} for {cid}")]
    Status {
        /// The gateway.
        gateway: String,
        /// The CID asked.
        cid: Cid,
        /// The status code.
        status: u16,
    },
    /// The response is not of the media type asked for (a gateway that
    /// ignored the request and sent, say, an HTML page).
    #[error("{gateway}: answered {found:?} where {expected} was asked for")]
    WrongContentType {
        /// The gateway.
        gateway: String,
        /// What was asked.
        expected: &'static str,
        /// The `Content-Type` received.
        found: String,
    },
    /// The body is larger than the limit for its kind
    /// ([`FetcherConfig::max_block_bytes`](crate::FetcherConfig::max_block_bytes) or
    /// [`FetcherConfig::max_car_bytes`](crate::FetcherConfig::max_car_bytes)).
    #[error("{gateway}: response body over the limit of {limit} bytes")]
    TooLarge {
        /// The gateway.
        gateway: String,
        /// The limit.
        limit: u64,
    },
    /// A raw block does not hash to the CID asked (or the CID is not one
    /// this library accepts).
    #[error("{gateway}: {source}")]
    Block {
        /// The gateway.
        gateway: String,
        /// The verification failure.
        #[source]
        source: BlockError,
    },
    /// A CAR did not read: truncated, malformed, or a block that does not
    /// hash to the CID it is filed under.
    #[error("{gateway}: bad CAR: {source}")]
    Car {
        /// The gateway.
        gateway: String,
        /// The CAR reader's error.
        #[source]
        source: CarError,
    },
    /// A CAR ends before every block of the scope asked for arrived.
    #[error("{gateway}: the CAR of {root} lacks {missing} of its blocks (first: {first})")]
    Incomplete {
        /// The gateway.
        gateway: String,
        /// The root asked.
        root: Cid,
        /// How many linked blocks never came.
        missing: usize,
        /// One of them.
        first: Cid,
    },
}

impl GatewayError {
    /// Whether the gateway said it does not have the block (as opposed to
    /// failing or lying).
    pub fn is_not_found(&self) -> bool {
        matches!(self, GatewayError::NotFound { .. })
    }
}
