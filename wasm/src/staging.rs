//! The staging buffer of single appends: a byte buffer in wasm memory that
//! `append` (`wasm/js/api.js`) writes a payload's DAG-CBOR bytes into
//! directly, and that the new event's CID text comes back in. An append then
//! crosses into wasm once and passes only numbers: no `Uint8Array` copied in
//! by wasm-bindgen's glue (an allocation on each side), no string handed out
//! through it, no promise made in wasm when the append finishes at once.
//!
//! JS views the buffer as `new Uint8Array(memory.buffer, stagingReserve(n),
//! stagingLength())` and makes the view again when wasm memory grows (the old
//! one is then detached: its `byteLength` is 0) or after `stagingReserve`.

use std::cell::RefCell;

use js_sys::Promise;
use wasm_bindgen::prelude::*;

use crate::core::Cid;
use crate::errors::invalid;

/// The buffer's least length: room for any payload's first bytes and for a
/// CID's text (at most 156 bytes, see `cidtext`).
const MIN_LEN: usize = 4096;

thread_local! {
    static STAGING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static PARKED: RefCell<Option<Promise>> = const { RefCell::new(None) };
}

/// Makes the staging buffer at least `len` bytes long (keeping its bytes)
/// and returns its address in wasm memory.
#[wasm_bindgen(js_name = stagingReserve)]
pub fn staging_reserve(len: u32) -> u32 {
    STAGING.with(|s| {
        let mut s = s.borrow_mut();
        let want = (len as usize).max(MIN_LEN);
        if s.len() < want {
            s.resize(want, 0);
        }
        // Addresses in wasm32 memory are 32-bit.
        s.as_ptr() as u32
    })
}

/// The staging buffer's length.
#[wasm_bindgen(js_name = stagingLength)]
pub fn staging_length() -> u32 {
    STAGING.with(|s| s.borrow().len() as u32)
}

/// The module's `WebAssembly.Memory`, for JS to view the staging buffer.
#[wasm_bindgen(js_name = wasmMemory)]
pub fn wasm_memory() -> JsValue {
    wasm_bindgen::memory()
}

/// The promise of the last staged append that could not finish at once, or
/// failed (`Replica.appendStaged` returned 0); `undefined` once taken.
#[wasm_bindgen(js_name = takeParked)]
pub fn take_parked() -> Option<Promise> {
    PARKED.with(|p| p.borrow_mut().take())
}

/// `f` of the first `len` staged bytes.
pub(crate) fn with_payload<R>(len: u32, f: impl FnOnce(&[u8]) -> R) -> Result<R, JsValue> {
    STAGING.with(|s| match s.borrow().get(..len as usize) {
        Some(payload) => Ok(f(payload)),
        None => Err(invalid("a staged length beyond the staging buffer")),
    })
}

/// Writes `cid`'s text at the start of the staging buffer; its length.
pub(crate) fn put_cid(cid: &Cid) -> u32 {
    crate::cidtext::with_text(cid, |text| {
        STAGING.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < text.len() {
                s.resize(text.len().max(MIN_LEN), 0);
            }
            s[..text.len()].copy_from_slice(text);
        });
        text.len() as u32
    })
}

/// Keeps `promise` for `takeParked`.
pub(crate) fn park(promise: Promise) {
    PARKED.with(|p| *p.borrow_mut() = Some(promise));
}
