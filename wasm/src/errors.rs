//! Errors as JS sees them: every failure is a JS `Error` (a rejected promise
//! for async methods, a throw for the others) whose `name` is
//! `MerkleClockError` and whose `code` says what kind of failure it is:
//!
//! - `invalid_argument`: a value the API cannot take (a malformed CID string,
//!   `undefined` in a payload, a negative time, ...);
//! - `busy`: a synchronous method called while an async operation on the same
//!   replica (or driver) is in flight: await it first;
//! - `encode`: the payload cannot be encoded within the limits;
//! - `rejected`: a validator refused an appended event, or the replicas would
//!   refuse it on the grounds of its author (the error then has `reason`,
//!   and `auth`, `cid`, `author` as a rejected outcome does);
//! - `needs_signer`: an append, grant or revocation on a stream whose
//!   genesis names admins, with no signer set;
//! - `open`: the genesis block is not a genesis event, `create` of a stream
//!   the store holds, `open` of one it does not;
//! - `store`: the blockstore or the meta store failed (its error's message is
//!   included), or holds records this library did not write;
//! - `unknown_event`: a CID that is not in the replica's DAG;
//! - `sync`: a sync message did not decode or was beyond the limits;
//! - `car`: a CAR file that does not parse.

use std::fmt::Display;

use wasm_bindgen::{JsCast, JsValue};

/// A `MerkleClockError` with this code and message.
pub(crate) fn error(code: &str, message: impl Display) -> JsValue {
    let e = js_sys::Error::new(&message.to_string());
    e.set_name("MerkleClockError");
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&e, &JsValue::from_str("code"), &JsValue::from_str(code));
    e.into()
}

/// An `invalid_argument` error.
pub(crate) fn invalid(message: impl Display) -> JsValue {
    error("invalid_argument", message)
}

/// The error for a synchronous call during an async one.
pub(crate) fn busy() -> JsValue {
    error(
        "busy",
        "the replica is busy with an operation that has not finished: await it before calling a synchronous method",
    )
}

/// A JS exception as text, for wrapping in a Rust error.
pub(crate) fn describe(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}
