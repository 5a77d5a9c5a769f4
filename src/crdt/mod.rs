//! Interpretations: turning a stream's events into application state.
//!
//! The stream keeps every event; what they *mean* is decided here, by a
//! [`Reducer`] — and can be decided again later, differently, over the same
//! log. Two ways to feed a reducer:
//!
//! - [`Fold`] applies events in the stream's total order (by height, then
//!   CID bytes), identical on every replica that holds the same events. It
//!   is incremental: a late event that sorts before events already folded
//!   makes it restore a checkpoint and re-apply from the first position that
//!   moved, at a cost that follows the distance moved, not the length of the
//!   history ([`CheckpointPolicy`]). Any deterministic reducer converges.
//! - [`CausalFeed`] applies each event once, as it arrives (always after its
//!   parents), with no replay. Only for [`OrderInsensitive`] reducers.
//!
//! Ready-made reducers, each with its conflict rule in its docs:
//!
//! | type | payload | rule | feed |
//! | --- | --- | --- | --- |
//! | [`LwwRegister`] | [`RegisterOp`] | the last write in the total order wins | `Fold` |
//! | [`LwwMap`] | [`MapOp`] | per key, the last write in the total order wins | `Fold` |
//! | [`AddWinsSet`] | [`SetOp`] | present iff an add is not observed by any remove | either |
//! | [`Counter`] | [`CounterOp`] | the sum of all increments and decrements | either |
//! | [`Log`] | any | every event, in the total order | `Fold` |
//!
//! Payloads are serde enums in serde's default (externally tagged)
//! representation, which in DAG-CBOR is a one-entry map from the snake_case
//! variant name to its fields — `{"set": {"key": k, "value": v}}` — or the
//! bare name for a variant without fields (`"clear"`); the encoder writes
//! the fields in DAG-CBOR's canonical key order (shorter keys first), and
//! CIDs as links (tag 42). These bytes are part of the format: the tests pin
//! them, so renaming a variant or a field is a breaking change.
//!
//! A reducer that implements [`Resumable`] (every ready-made one does) can
//! have its state saved in a checkpoint event
//! ([`checkpoint::build`](crate::checkpoint::build)) and a fold started from
//! it ([`Fold::resume`]); each applies late events — events concurrent with
//! the checkpoint that sort before its cut — exactly (see [`Resumable`]).
//!
//! One caution for every payload type: an event's CID hashes its parents
//! and its payload, so two replicas that append the same payload on the same
//! heads create *one* event, not two. Put the author (or a nonce) in the
//! payload when two identical concurrent operations must both count (two
//! identical `Increment(1)`s from two people).
//!
//! `examples/todo.rs` reads one todo-list log two ways — last writer wins
//! per field, and "a completed todo stays completed" with a list of refused
//! un-completions — to show what the log keeps that an LWW store discards.

mod counter;
mod fold;
mod log;
mod lww;
mod resume;
mod set;

pub use counter::{Counter, CounterOp};
pub use fold::{CausalFeed, CheckpointPolicy, Fold, FoldError, FoldEvent, FoldReport, OrderInsensitive, Reducer};
pub use log::{Log, LogEntry, LogState};
pub use lww::{LwwMap, LwwRegister, MapOp, MapState, RegisterOp, RegisterState, Versioned};
pub use resume::{Resumable, StateError};
pub use set::{AddWinsSet, AddWinsState, SetOp};
