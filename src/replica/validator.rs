//! Application checks run on every event before it is accepted.

use ipld_core::cid::Cid;
use serde::de::DeserializeOwned;

use crate::block::{Block, cid_from_digest};
use crate::error::DecodeError;
use crate::event::Header;
#[cfg(doc)]
use crate::replica::Rejection;

/// An application check run on every event before it is accepted (received
/// or appended locally): a payload schema, a clock-drift rule, an allow-list.
///
/// Validators must be deterministic in the event alone for replicas to
/// converge: a validator that depends on local time or state can make two
/// replicas accept different sets.
pub trait Validator: Send + Sync {
    /// The name reported in [`Rejection::Validator`].
    fn name(&self) -> &str;
    /// `Err(reason)` refuses the event.
    fn validate(&self, event: &EventRef<'_>) -> Result<(), String>;
}

/// A validator made of a name and a closure.
pub struct FnValidator<F> {
    name: String,
    check: F,
}

impl<F> FnValidator<F>
where
    F: Fn(&EventRef<'_>) -> Result<(), String> + Send + Sync,
{
    /// Names a closure as a validator.
    pub fn new(name: impl Into<String>, check: F) -> Self {
        FnValidator { name: name.into(), check }
    }
}

impl<F> Validator for FnValidator<F>
where
    F: Fn(&EventRef<'_>) -> Result<(), String> + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn validate(&self, event: &EventRef<'_>) -> Result<(), String> {
        (self.check)(event)
    }
}

/// A decoded event as a validator sees it.
pub struct EventRef<'a> {
    pub(super) block: &'a Block,
    pub(super) header: &'a Header,
}

impl EventRef<'_> {
    /// The event's CID.
    pub fn cid(&self) -> &Cid {
        self.block.cid()
    }
    /// The event's height.
    pub fn height(&self) -> u64 {
        self.header.height
    }
    /// The parents' CIDs.
    pub fn parents(&self) -> Vec<Cid> {
        self.header.parents.iter().map(cid_from_digest).collect()
    }
    /// The author who signed the event (its signature is checked before any
    /// validator runs); `None` for an unsigned event.
    pub fn author(&self) -> Option<crate::auth::AuthorKey> {
        self.header.auth.as_deref().and_then(|a| a.author)
    }
    /// The whole block.
    pub fn block(&self) -> &Block {
        self.block
    }
    /// The payload, decoded as `P`.
    ///
    /// # Errors
    /// [`DecodeError::Payload`] when it is not a `P`.
    pub fn payload<P: DeserializeOwned>(&self) -> Result<P, DecodeError> {
        serde_ipld_dagcbor::from_slice(&self.block.bytes()[self.header.payload.clone()])
            .map_err(|e| DecodeError::Payload { cid: *self.block.cid(), message: e.to_string() })
    }
}
