//! Reducers whose state can be written into a checkpoint and read back.

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use super::fold::Reducer;

/// A reducer state could not be written as DAG-CBOR or read back.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StateError {
    /// The state has no DAG-CBOR form (an integer outside the 64-bit range,
    /// a float that is not finite, ...).
    #[error("the state cannot be written as DAG-CBOR: {0}")]
    Encode(String),
    /// The bytes are not a state of this reducer.
    #[error("the bytes are not a state of this reducer: {0}")]
    Decode(String),
}

/// A [`Reducer`] whose state can be saved in a checkpoint (as one DAG-CBOR
/// block) and a [`Fold`](super::Fold) resumed from it
/// ([`Fold::resume`](super::Fold::resume)).
///
/// This is how a reducer opts in: a separate trait rather than a
/// `Serialize` bound on [`Reducer::State`], because the bytes are part of the
/// format (a checkpoint's state CID is the same on every replica that folds
/// the same cut) and a state's serde form is rarely the right one (the
/// counter is an `i128`, the LWW types keep tombstones). `save` must be
/// deterministic: equal states give equal bytes.
///
/// **Late events.** A fold resumed from a checkpoint applies the checkpoint's
/// state, then every event outside the checkpoint's past in the total order.
/// An event concurrent with the checkpoint may sort *before* events already
/// in that state: it is applied after them. The result equals the fold from
/// the genesis when `apply` does not depend on the order of the events it
/// is given — when the state is a join-semilattice and `apply` a join. Every
/// ready-made reducer is: the counter and the add-wins set by nature, the
/// LWW types because a write wins only over a write that sorts before it
/// (deletes keep a tombstone), the [`Log`](super::Log) because a late entry is
/// inserted at its place in the order rather than appended.
/// `prop_fold_resumed_from_any_checkpoint_equals_fold_from_genesis`
/// (tests/checkpoint.rs) checks all of them.
pub trait Resumable: Reducer {
    /// Writes the state as one DAG-CBOR value.
    ///
    /// # Errors
    /// [`StateError::Encode`] when the state has no DAG-CBOR form.
    fn save(&self, state: &Self::State) -> Result<Vec<u8>, StateError>;

    /// Reads a state written by [`Resumable::save`].
    ///
    /// # Errors
    /// [`StateError::Decode`] when the bytes are not such a state.
    fn load(&self, bytes: &[u8]) -> Result<Self::State, StateError>;
}

/// Encodes a value as DAG-CBOR (canonical: serde_ipld_dagcbor sorts map keys).
pub(crate) fn to_cbor<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StateError> {
    serde_ipld_dagcbor::to_vec(value).map_err(|e| StateError::Encode(e.to_string()))
}

/// Decodes a DAG-CBOR value.
pub(crate) fn from_cbor<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StateError> {
    serde_ipld_dagcbor::from_slice(bytes).map_err(|e| StateError::Decode(e.to_string()))
}
