//! Error types: one enum per operation, each variant naming the rule that was
//! broken and the CID it was broken by, and [`Error`], the umbrella every one
//! of them converts into.

// Variant fields (cid, offset, max, ...) are named for what they hold.
#![allow(missing_docs)]

use ipld_core::cid::Cid;
use thiserror::Error;

/// A block's bytes do not match its CID, or the CID is not one this library
/// accepts (CIDv1, DAG-CBOR, BLAKE3-256).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BlockError {
    /// The CID is not version 1.
    #[error("{cid}: unsupported CID version {version:?} (only CIDv1)")]
    UnsupportedVersion { cid: Cid, version: u64 },
    /// The CID's codec is not DAG-CBOR (0x71).
    #[error("{cid}: unsupported codec 0x{codec:x} (only dag-cbor, 0x71)")]
    UnsupportedCodec { cid: Cid, codec: u64 },
    /// The CID's multihash is not a 32-byte BLAKE3 digest (0x1e).
    #[error("{cid}: unsupported multihash 0x{code:x} of {size} bytes (only blake3-256, 0x1e)")]
    UnsupportedHash { cid: Cid, code: u64, size: u8 },
    /// The bytes hash to a different CID.
    #[error("{cid}: hash mismatch, the bytes hash to {actual}")]
    HashMismatch { cid: Cid, actual: Cid },
    /// The block is larger than [`Limits::max_block_bytes`](crate::Limits::max_block_bytes).
    #[error("{cid}: block of {size} bytes exceeds the limit of {max}")]
    TooLarge { cid: Cid, size: usize, max: usize },
}

/// A block is not a well-formed, canonical event.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The block itself failed verification.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// The bytes are not DAG-CBOR at all (truncated, invalid UTF-8, a tag
    /// other than 42, a non-string map key, NaN, ...).
    #[error("{cid}: malformed DAG-CBOR at byte {offset}: {reason}")]
    Malformed { cid: Cid, offset: usize, reason: &'static str },
    /// The bytes decode, but re-encoding would not give the same bytes
    /// (non-minimal integers, indefinite lengths, unsorted map keys, 16/32-bit floats).
    #[error("{cid}: not canonical DAG-CBOR at byte {offset}: {reason}")]
    NotCanonical { cid: Cid, offset: usize, reason: &'static str },
    /// Bytes follow the encoded event.
    #[error("{cid}: {extra} trailing bytes after the event")]
    TrailingBytes { cid: Cid, extra: usize },
    /// The top-level value is not a map.
    #[error("{cid}: an event must be a map")]
    NotAMap { cid: Cid },
    /// The map holds a key other than `height`, `parents` and `payload`.
    #[error("{cid}: unknown key {key:?}")]
    UnknownKey { cid: Cid, key: String },
    /// One of `height`, `parents` or `payload` is absent.
    #[error("{cid}: missing key {key:?}")]
    MissingKey { cid: Cid, key: &'static str },
    /// A key holds a value of the wrong kind.
    #[error("{cid}: `{key}` must be {expected}")]
    WrongType { cid: Cid, key: &'static str, expected: &'static str },
    /// A parent link is not a CIDv1 DAG-CBOR BLAKE3 link, so it can never name an event.
    #[error("{cid}: parent {parent} is not a dag-cbor blake3 CIDv1")]
    UnsupportedParent { cid: Cid, parent: Cid },
    /// Parents are not in strictly ascending order of their bytes.
    #[error("{cid}: parents not sorted by CID bytes (at index {index})")]
    UnsortedParents { cid: Cid, index: usize },
    /// A parent appears twice.
    #[error("{cid}: parent {parent} listed twice")]
    DuplicateParent { cid: Cid, parent: Cid },
    /// An event of height above 0 has no parents.
    #[error("{cid}: event at height {height} has no parents (only the genesis may)")]
    NoParents { cid: Cid, height: u64 },
    /// An event with parents claims height 0.
    #[error("{cid}: event with parents cannot have height 0")]
    ParentsAtHeightZero { cid: Cid },
    /// More parents than [`Limits::max_parents`](crate::Limits::max_parents).
    #[error("{cid}: {count} parents exceed the limit of {max}")]
    TooManyParents { cid: Cid, count: usize, max: usize },
    /// The payload nests lists and maps deeper than [`Limits::max_payload_depth`](crate::Limits::max_payload_depth).
    #[error("{cid}: payload nested deeper than {max}")]
    TooDeep { cid: Cid, max: usize },
    /// The payload is valid IPLD but not of the type the caller asked for.
    #[error("{cid}: payload does not match the expected type: {message}")]
    Payload { cid: Cid, message: String },
}

impl DecodeError {
    /// The CID of the block that failed to decode.
    pub fn cid(&self) -> &Cid {
        match self {
            DecodeError::Block(e) => e.cid(),
            DecodeError::Malformed { cid, .. }
            | DecodeError::NotCanonical { cid, .. }
            | DecodeError::TrailingBytes { cid, .. }
            | DecodeError::NotAMap { cid }
            | DecodeError::UnknownKey { cid, .. }
            | DecodeError::MissingKey { cid, .. }
            | DecodeError::WrongType { cid, .. }
            | DecodeError::UnsupportedParent { cid, .. }
            | DecodeError::UnsortedParents { cid, .. }
            | DecodeError::DuplicateParent { cid, .. }
            | DecodeError::NoParents { cid, .. }
            | DecodeError::ParentsAtHeightZero { cid }
            | DecodeError::TooManyParents { cid, .. }
            | DecodeError::TooDeep { cid, .. }
            | DecodeError::Payload { cid, .. } => cid,
        }
    }
}

impl BlockError {
    /// The CID the block was offered under.
    pub fn cid(&self) -> &Cid {
        match self {
            BlockError::UnsupportedVersion { cid, .. }
            | BlockError::UnsupportedCodec { cid, .. }
            | BlockError::UnsupportedHash { cid, .. }
            | BlockError::HashMismatch { cid, .. }
            | BlockError::TooLarge { cid, .. } => cid,
        }
    }
}

/// An event could not be encoded into a block.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload cannot be represented in DAG-CBOR (NaN, a non-string map key, ...).
    #[error("payload cannot be encoded as DAG-CBOR: {message}")]
    Payload { message: String },
    /// The encoded block would exceed [`Limits::max_block_bytes`](crate::Limits::max_block_bytes).
    #[error("encoded event of {size} bytes exceeds the limit of {max}")]
    TooLarge { size: usize, max: usize },
    /// More parents than [`Limits::max_parents`](crate::Limits::max_parents).
    #[error("{count} parents exceed the limit of {max}")]
    TooManyParents { count: usize, max: usize },
    /// The payload nests deeper than [`Limits::max_payload_depth`](crate::Limits::max_payload_depth).
    #[error("payload nested deeper than {max}")]
    TooDeep { max: usize },
    /// A parent is not a CIDv1 DAG-CBOR BLAKE3 link.
    #[error("parent {parent} is not a dag-cbor blake3 CIDv1")]
    UnsupportedParent { parent: Cid },
    /// The height rule (0 exactly when there are no parents) is broken.
    #[error("height {height} with {parents} parents breaks the height rule")]
    InvalidHeight { height: u64, parents: usize },
    /// A genesis with a policy must name at least one admin.
    #[error("a genesis with a policy must name at least one admin")]
    NoAdmins,
}

/// An event could not be added to a [`Dag`](crate::Dag).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InsertError {
    /// The height is not 1 + the largest parent height.
    #[error("{cid}: height {found}, but its parents require {expected}")]
    WrongHeight { cid: Cid, expected: u64, found: u64 },
    /// Some parents are not in the DAG yet.
    #[error("{cid}: {} parents missing", missing.len())]
    MissingParents { cid: Cid, missing: Vec<Cid> },
    /// A parentless event that is not this stream's genesis.
    #[error("{cid}: a parentless event that is not the stream's genesis {genesis}")]
    ForeignGenesis { cid: Cid, genesis: Cid },
    /// The CID is not a CIDv1 DAG-CBOR BLAKE3 link.
    #[error("{cid}: not a dag-cbor blake3 CIDv1")]
    UnsupportedCid { cid: Cid },
    /// An anchor ([`Dag::insert_anchor`](crate::Dag::insert_anchor)) the
    /// index already holds at another height.
    #[error("{cid}: held at height {held}, anchored at {claimed}")]
    AnchorHeight { cid: Cid, held: u64, claimed: u64 },
    /// An anchor's height is 0 (only the genesis is) or not below
    /// [`MAX_ANCHOR_HEIGHT`](crate::MAX_ANCHOR_HEIGHT).
    #[error("{cid}: an anchor at height {height}, outside 1..2^31")]
    AnchorOutOfRange { cid: Cid, height: u64 },
}

/// A CID asked about is not in the DAG.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{cid}: not in the DAG")]
pub struct UnknownEvent {
    /// The CID that was not found.
    pub cid: Cid,
}

/// Any error of this crate: each operation returns its own enum, and every
/// one of them converts into this one, so an application can use `?` across
/// operations.
///
/// ```
/// use std::sync::Arc;
/// use merkle_clock::{Event, MemoryBlockstore, Replica, ReplicaConfig};
///
/// // `encode` fails with an `EncodeError`, `create` with an `OpenError`,
/// // `append` with an `AppendError`: `?` turns each into a `merkle_clock::Error`.
/// async fn start(name: &str) -> Result<Replica<MemoryBlockstore>, merkle_clock::Error> {
///     let genesis = Event::genesis(name).encode()?;
///     let mut replica = Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await?;
///     replica.append(&"hello").await?;
///     Ok(replica)
/// }
///
/// # futures::executor::block_on(async {
/// let replica = start("greetings").await?;
/// assert_eq!(replica.len(), 2);
/// # Ok::<(), merkle_clock::Error>(())
/// # })?;
/// # Ok::<(), merkle_clock::Error>(())
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`BlockError`].
    #[error(transparent)]
    Block(#[from] BlockError),
    /// See [`DecodeError`].
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// See [`EncodeError`].
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// See [`InsertError`].
    #[error(transparent)]
    Insert(#[from] InsertError),
    /// See [`UnknownEvent`].
    #[error(transparent)]
    UnknownEvent(#[from] UnknownEvent),
    /// See [`Undecided`](crate::Undecided).
    #[error(transparent)]
    Undecided(#[from] crate::Undecided),
    /// See [`StoreError`](crate::StoreError).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// See [`OpenError`](crate::OpenError).
    #[error(transparent)]
    Open(#[from] crate::replica::OpenError),
    /// See [`AppendError`](crate::AppendError).
    #[error(transparent)]
    Append(#[from] crate::replica::AppendError),
    /// See [`Rejection`](crate::Rejection).
    #[error(transparent)]
    Rejected(#[from] crate::replica::Rejection),
    /// See [`PruneError`](crate::replica::PruneError).
    #[error(transparent)]
    Prune(#[from] crate::replica::PruneError),
    /// See [`SyncError`](crate::SyncError).
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
    /// See [`TransportError`](crate::TransportError).
    #[error(transparent)]
    Transport(#[from] crate::sync::transport::TransportError),
    /// See [`CarError`](crate::CarError).
    #[error(transparent)]
    Car(#[from] crate::car::CarError),
    /// See [`FoldError`](crate::crdt::FoldError).
    #[error(transparent)]
    Fold(#[from] crate::crdt::FoldError),
    /// See [`CheckpointError`](crate::CheckpointError).
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// See [`SimError`](crate::sim::SimError) (with the `testing` feature).
    #[cfg(feature = "testing")]
    #[error(transparent)]
    Sim(#[from] crate::sim::SimError),
}
