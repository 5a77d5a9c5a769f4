//! The wasm-bindgen layer of the `merkle-clock-wasm` npm package: merkle-clock
//! in JavaScript, for Node and the browser.
//!
//! This crate stays thin (STYLE.md, "A JS face for a Rust core"): it converts
//! between JS values and the core's types and forwards every call to
//! `merkle_clock`; it holds no logic of its own beyond
//!
//! - payloads: their DAG-CBOR bytes (written on the JS side by
//!   `wasm/js/payload.js`) decoded, and IPLD back to JS values (`values.rs`),
//! - CID strings written and read without detours (`cidtext.rs`),
//! - signing keys and membership in the forms of `@noble/curves` (`keys.rs`),
//! - a staging buffer in wasm memory for single appends' payloads and CIDs
//!   (`staging.rs`),
//! - a `StreamStore` over an async JS blockstore, with heads and log in a JS
//!   meta store so a stream can be reopened (`store.rs`), and
//! - a queue (an async mutex) per replica and per driver, so that JS may call
//!   methods without awaiting the previous one.
//!
//! The JS API (`wasm/js/`, documented in `wasm/README.md`) speaks the
//! ecosystem's types: CIDs as strings (`bafyr4i…`), payloads as plain JS values
//! encoded as DAG-CBOR, blocks as `Uint8Array`, a `Promise` for anything that
//! touches a store.
//!
//! Everything is compiled for `wasm32` only; on other targets the crate is
//! empty, so the workspace's native build does not pull in wasm-bindgen.

#[cfg(target_arch = "wasm32")]
mod cidtext;
#[cfg(target_arch = "wasm32")]
mod core;
#[cfg(target_arch = "wasm32")]
mod driver;
#[cfg(target_arch = "wasm32")]
mod errors;
#[cfg(all(target_arch = "wasm32", feature = "bench-floor"))]
mod floor;
#[cfg(target_arch = "wasm32")]
mod keys;
#[cfg(target_arch = "wasm32")]
mod replica;
#[cfg(target_arch = "wasm32")]
mod spawn;
#[cfg(target_arch = "wasm32")]
mod staging;
#[cfg(target_arch = "wasm32")]
mod store;
#[cfg(all(target_arch = "wasm32", feature = "testing"))]
mod testing;
#[cfg(target_arch = "wasm32")]
mod values;

#[cfg(target_arch = "wasm32")]
pub use crate::{driver::JsSyncDriver, replica::JsReplica};
