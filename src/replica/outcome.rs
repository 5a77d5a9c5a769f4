//! What the replica's operations report: outcomes, refusals, errors, counters.

use std::collections::BTreeMap;
use std::fmt;

use ipld_core::cid::Cid;
use thiserror::Error;

use crate::auth::AuthError;
use crate::error::{DecodeError, EncodeError, InsertError};
use crate::store::StoreError;
#[cfg(doc)]
use crate::{Limits, replica::Replica};

/// Why a block was refused. The replica is unchanged by a refused block.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The block is not a canonical event within the limits.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The event does not fit the DAG (wrong height, a foreign genesis).
    #[error(transparent)]
    Insert(#[from] InsertError),
    /// An application validator refused it.
    #[error("{cid}: refused by validator {validator:?}: {reason}")]
    Validator {
        /// The refused event.
        cid: Cid,
        /// The validator's name.
        validator: String,
        /// What it said.
        reason: String,
    },
    /// Its author may not write it: no valid signature, or not a member in
    /// its causal past (see [`AuthError`]). Names the event and the author.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// One of its ancestors was rejected, so it can never be accepted.
    #[error("{cid}: its ancestor {ancestor} was rejected")]
    AncestorRejected {
        /// The refused event.
        cid: Cid,
        /// The rejected ancestor.
        ancestor: Cid,
    },
}

impl Rejection {
    /// The rule broken, the key of [`Metrics::rejected`].
    pub fn reason(&self) -> RejectReason {
        match self {
            Rejection::Decode(DecodeError::Block(_)) => RejectReason::Block,
            Rejection::Decode(DecodeError::TooManyParents { .. } | DecodeError::TooDeep { .. }) => RejectReason::Limits,
            Rejection::Decode(_) => RejectReason::Decode,
            Rejection::Insert(InsertError::WrongHeight { .. }) => RejectReason::Height,
            Rejection::Insert(InsertError::ForeignGenesis { .. }) => RejectReason::ForeignGenesis,
            Rejection::Insert(_) => RejectReason::Insert,
            Rejection::Validator { .. } => RejectReason::Validator,
            Rejection::Auth(e) if e.is_signature() => RejectReason::Signature,
            Rejection::Auth(_) => RejectReason::Unauthorized,
            Rejection::AncestorRejected { .. } => RejectReason::AncestorRejected,
        }
    }
}

/// The rule a refused block broke: the kind of a [`Rejection`], and the key
/// of [`Metrics::rejected`]. Displays as a short snake_case name
/// ([`RejectReason::as_str`]) for logs and dashboards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// The block does not match its CID, or the CID is not an event CID.
    Block,
    /// Too many parents, or a payload nested too deep ([`Limits`]).
    Limits,
    /// Not a canonical event.
    Decode,
    /// The height is not 1 + the largest parent height.
    Height,
    /// A parentless event that is not this stream's genesis.
    ForeignGenesis,
    /// Another rule of the DAG.
    Insert,
    /// An application validator refused it.
    Validator,
    /// One of its ancestors was rejected.
    AncestorRejected,
    /// Unsigned on a stream with admins, an invalid key, or a signature that
    /// does not verify: the event is forged or malformed.
    Signature,
    /// Validly signed, but its author may not write it in its causal past.
    Unauthorized,
}

impl RejectReason {
    /// The short name: `block`, `limits`, `decode`, `height`,
    /// `foreign_genesis`, `insert`, `validator`, `ancestor_rejected`,
    /// `signature` or `unauthorized`.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Block => "block",
            RejectReason::Limits => "limits",
            RejectReason::Decode => "decode",
            RejectReason::Height => "height",
            RejectReason::ForeignGenesis => "foreign_genesis",
            RejectReason::Insert => "insert",
            RejectReason::Validator => "validator",
            RejectReason::AncestorRejected => "ancestor_rejected",
            RejectReason::Signature => "signature",
            RejectReason::Unauthorized => "unauthorized",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Replica::ingest`] did with one block.
// A rejection names CIDs and an author (about 220 bytes); on 32-bit targets
// (wasm32) that crosses clippy's threshold. Boxing it would change every
// match on `Rejected(Rejection::…)`; see the issue note on outcome size.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingest {
    /// The event joined the DAG (and with it any pending descendants).
    Accepted,
    /// The event was already in the DAG.
    Duplicate,
    /// The event waits in the pending buffer for these parents.
    Pending {
        /// Its parents not yet in the DAG.
        missing: Vec<Cid>,
    },
    /// The event was refused.
    Rejected(Rejection),
}

/// What [`Replica::ingest_many`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// One outcome per block given, in the same order.
    pub outcomes: Vec<Ingest>,
    /// Every event this call added to the DAG, in the order added (each after
    /// its parents): the blocks given and pending events they released.
    pub accepted: Vec<Cid>,
}

/// Opening a replica failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The genesis block is not a canonical event.
    #[error("the genesis block is invalid: {0}")]
    Genesis(#[source] DecodeError),
    /// The block has parents, so it cannot start a stream.
    #[error("{cid}: not a genesis event (it has parents)")]
    NotGenesis {
        /// The block offered as genesis.
        cid: Cid,
    },
    /// The store holds no stream with this id.
    #[error("{stream}: no such stream in the store")]
    UnknownStream {
        /// The stream asked for.
        stream: Cid,
    },
    /// [`Replica::create`] was asked to create a stream the store already
    /// holds. [`Replica::open`] it, or use [`Replica::open_or_create`].
    #[error("{stream}: the store already holds this stream")]
    StreamExists {
        /// The stream's genesis CID.
        stream: Cid,
    },
    /// A shallow replica ([`Replica::bootstrap`]) of a stream with admins
    /// whose store holds no record of its anchors' membership
    /// ([`StreamStore::stream_record`](crate::store::StreamStore::stream_record)):
    /// written by a version of this library before it kept one. The
    /// membership below the checkpoint's cut, which judges the events after
    /// it, is not known. Bootstrap again into a fresh store.
    #[error("{stream}: a shallow replica of a stream with admins, with no record of its anchors' membership")]
    ShallowSigned {
        /// The stream's genesis CID.
        stream: Cid,
    },
}

/// A local append failed; the replica is unchanged.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The payload cannot be encoded within the limits.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A validator refused the new event, or replicas would refuse it on
    /// the grounds of its author ([`Rejection::Auth`]).
    #[error(transparent)]
    Rejected(Rejection),
    /// The stream's genesis names admins, so its events are signed: set a
    /// signer first ([`Replica::set_signer`]).
    #[error("{stream}: the stream only takes signed events; set a signer")]
    NeedsSigner {
        /// The stream.
        stream: Cid,
    },
}

/// Counters a caller reads as a plain value ([`Replica::metrics`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Events created by [`Replica::append`] and [`Replica::append_many`].
    pub appended: u64,
    /// Received events added to the DAG (released pending ones included).
    pub accepted: u64,
    /// Received events already held.
    pub duplicate: u64,
    /// Received events put in the pending buffer.
    pub pending: u64,
    /// Pending events dropped to keep the buffer within its caps.
    pub evicted: u64,
    /// Refused events by [`Rejection::reason`].
    pub rejected: BTreeMap<RejectReason, u64>,
    /// Events in the DAG whose bytes are pruned now
    /// ([`Replica::prune`](crate::Replica::prune)).
    pub pruned: u64,
}

/// What waits in the pending buffer ([`Replica::pending`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingStats {
    /// Events waiting for missing parents.
    pub events: usize,
    /// The memory they hold as the buffer counts it against
    /// [`ReplicaConfig::max_pending_bytes`](crate::ReplicaConfig::max_pending_bytes):
    /// their blocks' bytes plus each entry's bookkeeping.
    pub bytes: usize,
}
