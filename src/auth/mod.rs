//! Who may write: signed events, and writers as events of the stream.
//!
//! A stream's genesis names its policy ([`Policy`]): open (anyone may
//! append, as an unsigned stream always could) or a set of admin keys. On a
//! stream with admins every event is signed with Ed25519 by its author, the
//! author's key and the signature inside the block (the CID covers both), and
//! admins grant and revoke writers and admins with membership events
//! ([`MemberOp`]) that are ordinary events of the same DAG. Whether an event
//! is valid is a function of its causal past alone, so every replica decides
//! the same in any delivery order. DESIGN.md ("Who may write") gives the
//! signing input byte for byte, the rules and the hard cases.
//!
//! | item | what it is |
//! | --- | --- |
//! | [`Signer`], [`AuthorKey`] | an Ed25519 signing key and its public key |
//! | [`Policy`], [`genesis`], [`policy_of`] | the policy a genesis commits to |
//! | [`MemberOp`], [`Role`] | grant and revoke, the roles granted |
//! | [`author_of`], [`member_op_of`] | who signed a block, and what it changes |
//! | [`AuthError`] | why an event is refused |
//! | [`signed_event`], [`signing_input`] | a signed event built by hand; the exact bytes an author signs |
//!
//! ```
//! use std::sync::Arc;
//! use merkle_clock::{MemoryBlockstore, Replica, ReplicaConfig, Ingest};
//! use merkle_clock::auth::{self, Role, Signer};
//! # futures::executor::block_on(async {
//! let admin = Signer::generate();
//! let writer = Signer::generate();
//! let genesis = auth::genesis(&"team notes", &[admin.public()])?;
//! let store = Arc::new(MemoryBlockstore::new());
//! let mut a = Replica::create(store, &genesis, ReplicaConfig::default()).await?;
//! a.set_signer(Some(admin.clone()));
//! a.grant(writer.public(), Role::Writer).await?;
//! a.set_signer(Some(writer.clone()));
//! let note = a.append(&"hello").await?;
//! assert_eq!(auth::author_of(&a.get(&note).await?.expect("held"))?, Some(writer.public()));
//! a.set_signer(Some(admin));
//! a.revoke(writer.public()).await?;
//! // The revoked writer can no longer append here...
//! a.set_signer(Some(writer));
//! assert!(a.append(&"still here?").await.is_err());
//! # Ok::<(), merkle_clock::Error>(())
//! # })?;
//! # Ok::<(), merkle_clock::Error>(())
//! ```

#![allow(clippy::result_large_err)]

use std::fmt;
use std::str::FromStr;

use ipld_core::cid::Cid;
use thiserror::Error;

mod encode;
mod membership;
mod rules;

pub(crate) use encode::{Verifier, encode_signed_into};
pub use encode::{genesis, signed_event, signing_input};
pub use membership::Members;
pub(crate) use membership::{MemberIndex, StateRef};
pub(crate) use rules::authorize;

use crate::block::Block;
use crate::error::DecodeError;
use crate::event::{Header, Limits};

/// An author's Ed25519 public key, 32 bytes. Displays (and parses) as 64
/// lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuthorKey([u8; 32]);

impl AuthorKey {
    /// The key from its 32 bytes. Any 32 bytes make an `AuthorKey`; whether
    /// they are a valid Ed25519 point is checked when a signature is verified.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        AuthorKey(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for AuthorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for AuthorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthorKey({self})")
    }
}

/// An [`AuthorKey`] could not be parsed from text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("an author key is 64 hex digits: {0:?}")]
pub struct ParseKeyError(pub String);

impl FromStr for AuthorKey {
    type Err = ParseKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || ParseKeyError(s.to_string());
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(AuthorKey(out))
    }
}

/// An Ed25519 signing key: what an author holds. Keep its
/// [`seed`](Signer::seed) secret (a key file with 0600 permissions, say).
#[derive(Clone)]
pub struct Signer {
    key: ed25519_dalek::SigningKey,
    public: AuthorKey,
}

impl Signer {
    /// A new random key, from the operating system's randomness.
    pub fn generate() -> Self {
        use rand_core::RngCore as _;
        let mut seed = [0u8; 32];
        rand_core::OsRng.fill_bytes(&mut seed);
        Signer::from_seed(&seed)
    }

    /// The key whose 32-byte secret seed is `seed` (RFC 8032's private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let public = AuthorKey(key.verifying_key().to_bytes());
        Signer { key, public }
    }

    /// The secret seed, to store the key.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public key: the author named in every event this key signs.
    pub fn public(&self) -> AuthorKey {
        self.public
    }

    /// Signs `message` (a [`signing_input`]).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.key.sign(message).to_bytes()
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({})", self.public)
    }
}

/// What a genesis says about who may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Anyone may append; events may be signed, and signatures are checked,
    /// but there is no membership. Every unsigned stream is open.
    Open,
    /// Only members may append, every event signed: these admins to begin
    /// with (ascending, unique), and whoever admins grant later.
    Admins(Vec<AuthorKey>),
}

/// A role granted to a key. An admin is also a writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// May append events.
    Writer,
    /// May append events, and grant and revoke roles.
    Admin,
}

impl Role {
    /// `writer` or `admin`, as written in a membership event.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a membership event changes. Revocation is permanent: a revoked key
/// is never a member again (grant a new key instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberOp {
    /// Makes `key` a member with `role` (the higher role wins when a key is
    /// granted twice).
    Grant {
        /// The key granted.
        key: AuthorKey,
        /// The role granted.
        role: Role,
    },
    /// Removes `key` for good.
    Revoke {
        /// The key revoked.
        key: AuthorKey,
    },
}

impl MemberOp {
    /// The key the operation is about.
    pub fn key(&self) -> AuthorKey {
        match self {
            MemberOp::Grant { key, .. } | MemberOp::Revoke { key } => *key,
        }
    }
}

/// The parts of an envelope that only signed streams use, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthFields {
    /// The `author` key, if any.
    pub author: Option<AuthorKey>,
    /// The `sig` value, if any.
    pub sig: Option<[u8; 64]>,
    /// Where the bytes after the `sig` entry start (the envelope without it).
    pub unsigned_start: usize,
    /// How many entries the envelope's map has.
    pub entries: u8,
    /// The `member` operation, if any.
    pub member: Option<MemberOp>,
    /// The genesis' `admins`, if any.
    pub admins: Option<Vec<AuthorKey>>,
}

/// Why an event is refused on the grounds of who wrote it. Every variant
/// names the event, and the author it claims where it claims one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthError {
    /// An unsigned event on a stream whose genesis names admins.
    #[error("{cid}: unsigned, but the stream only takes events signed by members")]
    Unsigned {
        /// The refused event.
        cid: Cid,
    },
    /// The author's key is not a valid Ed25519 public key.
    #[error("{cid}: author {author} is not a valid Ed25519 key")]
    InvalidKey {
        /// The refused event.
        cid: Cid,
        /// The author it claims.
        author: AuthorKey,
    },
    /// The signature does not verify for this author over this event on this
    /// stream (forged, made for other bytes, other parents or another stream).
    #[error("{cid}: the signature of author {author} does not verify")]
    BadSignature {
        /// The refused event.
        cid: Cid,
        /// The author it claims.
        author: AuthorKey,
    },
    /// The author is not a member in the event's causal past.
    #[error("{cid}: author {author} is not a member of the stream in this event's past")]
    NotAMember {
        /// The refused event.
        cid: Cid,
        /// The author.
        author: AuthorKey,
    },
    /// The author was revoked in the event's causal past.
    #[error("{cid}: author {author} was revoked by {revocation}, an ancestor of this event")]
    Revoked {
        /// The refused event.
        cid: Cid,
        /// The author.
        author: AuthorKey,
        /// The revocation (of those in the past, the lowest CID).
        revocation: Cid,
    },
    /// A membership event by an author who is not an admin in its past.
    #[error("{cid}: author {author} changes membership but is not an admin")]
    NotAnAdmin {
        /// The refused event.
        cid: Cid,
        /// The author.
        author: AuthorKey,
    },
    /// A grant to a key revoked in the event's past (revocation is permanent).
    #[error("{cid}: author {author} grants {key}, which was revoked before")]
    GrantToRevoked {
        /// The refused event.
        cid: Cid,
        /// The author.
        author: AuthorKey,
        /// The key granted.
        key: AuthorKey,
    },
    /// A revocation of the only admin left in the event's past.
    #[error("{cid}: author {author} revokes {key}, the last admin")]
    LastAdmin {
        /// The refused event.
        cid: Cid,
        /// The author.
        author: AuthorKey,
        /// The key revoked.
        key: AuthorKey,
    },
    /// A membership event on an open stream (it has no membership).
    #[error("{cid}: a membership event on an open stream")]
    OpenStream {
        /// The refused event.
        cid: Cid,
        /// The author.
        author: AuthorKey,
    },
}

impl AuthError {
    /// The refused event.
    pub fn cid(&self) -> &Cid {
        match self {
            AuthError::Unsigned { cid }
            | AuthError::InvalidKey { cid, .. }
            | AuthError::BadSignature { cid, .. }
            | AuthError::NotAMember { cid, .. }
            | AuthError::Revoked { cid, .. }
            | AuthError::NotAnAdmin { cid, .. }
            | AuthError::GrantToRevoked { cid, .. }
            | AuthError::LastAdmin { cid, .. }
            | AuthError::OpenStream { cid, .. } => cid,
        }
    }

    /// The author the event claims (none for [`AuthError::Unsigned`]).
    pub fn author(&self) -> Option<&AuthorKey> {
        match self {
            AuthError::Unsigned { .. } => None,
            AuthError::InvalidKey { author, .. }
            | AuthError::BadSignature { author, .. }
            | AuthError::NotAMember { author, .. }
            | AuthError::Revoked { author, .. }
            | AuthError::NotAnAdmin { author, .. }
            | AuthError::GrantToRevoked { author, .. }
            | AuthError::LastAdmin { author, .. }
            | AuthError::OpenStream { author, .. } => Some(author),
        }
    }

    /// Whether the event itself is bad (no valid signature) rather than
    /// unauthorised: [`Unsigned`](AuthError::Unsigned),
    /// [`InvalidKey`](AuthError::InvalidKey),
    /// [`BadSignature`](AuthError::BadSignature).
    pub fn is_signature(&self) -> bool {
        matches!(self, AuthError::Unsigned { .. } | AuthError::InvalidKey { .. } | AuthError::BadSignature { .. })
    }
}

/// The policy a genesis block commits to.
///
/// # Errors
/// [`DecodeError`] when the block is not a canonical event.
pub fn policy_of(genesis: &Block) -> Result<Policy, DecodeError> {
    let header = Header::parse(genesis, &Limits::TRUSTED)?;
    Ok(match header.auth.and_then(|a| a.admins) {
        Some(admins) => Policy::Admins(admins),
        None => Policy::Open,
    })
}

/// The author a block claims (and signed for: a block whose signature does
/// not verify is never accepted by a replica). `None` for an unsigned event.
///
/// # Errors
/// [`DecodeError`] when the block is not a canonical event.
pub fn author_of(block: &Block) -> Result<Option<AuthorKey>, DecodeError> {
    let header = Header::parse(block, &Limits::TRUSTED)?;
    Ok(header.auth.and_then(|a| a.author))
}

/// The membership change a block makes, if it is a membership event.
///
/// # Errors
/// [`DecodeError`] when the block is not a canonical event.
pub fn member_op_of(block: &Block) -> Result<Option<MemberOp>, DecodeError> {
    let header = Header::parse(block, &Limits::TRUSTED)?;
    Ok(header.auth.and_then(|a| a.member))
}
