//! Payloads between JS and IPLD, the data model that DAG-CBOR encodes.
//!
//! JS values become DAG-CBOR bytes on the JS side (`wasm/js/payload.js`,
//! which holds the mapping table and its refusals); this module decodes
//! those bytes, and turns IPLD back into JS values:
//!
//! Integers within ±(2^53−1) are numbers, larger ones `bigint`s; bytes are
//! `Uint8Array`s; maps are plain objects; links are `multiformats` `CID`s
//! when a CID factory was set (`setCidFactory`, which the package's JS entry
//! points do), else `{"/": "bafy…"}`.

use std::cell::RefCell;

use js_sys::{Array, Function, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};

use crate::core::{Cid, Ipld};
use crate::errors::invalid;

/// 2^53 − 1: the largest integer a JS number holds exactly.
const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

thread_local! {
    static CID_FACTORY: RefCell<Option<Function>> = const { RefCell::new(None) };
}

/// Sets the function that turns CID bytes (a `Uint8Array`) into the CID
/// objects that payload links decode to, e.g. `CID.decode` of
/// `multiformats`; `null` goes back to `{"/": "bafy…"}` objects.
#[wasm_bindgen(js_name = setCidFactory)]
pub fn set_cid_factory(factory: Option<Function>) {
    CID_FACTORY.with(|f| *f.borrow_mut() = factory);
}

/// The CID string of DAG-CBOR/BLAKE3 block bytes (what the replica names
/// the block).
#[wasm_bindgen(js_name = cidOf)]
pub fn cid_of(bytes: &[u8]) -> String {
    crate::cidtext::to_text(&merkle_clock::cid_of(bytes))
}

/// A CID from a JS string.
pub(crate) fn parse_cid(s: &str) -> Result<Cid, JsValue> {
    crate::cidtext::from_text(s).ok_or_else(|| {
        let why = Cid::try_from(s).err().map_or_else(|| "not canonical".to_owned(), |e| e.to_string());
        invalid(format!("{s:?} is not a CID: {why}"))
    })
}

/// A CID from a JS value that must be a string.
pub(crate) fn cid_arg(v: &JsValue) -> Result<Cid, JsValue> {
    match v.as_string() {
        Some(s) => parse_cid(&s),
        None => Err(invalid("expected a CID string")),
    }
}

/// The bytes of a JS `Uint8Array` argument.
pub(crate) fn bytes_arg(v: &JsValue, what: &str) -> Result<Vec<u8>, JsValue> {
    v.dyn_ref::<Uint8Array>().map(Uint8Array::to_vec).ok_or_else(|| invalid(format!("{what} must be a Uint8Array")))
}

/// CIDs from a JS string or array of strings.
pub(crate) fn cids_arg(v: &JsValue) -> Result<Vec<Cid>, JsValue> {
    if Array::is_array(v) { Array::from(v).iter().map(|c| cid_arg(&c)).collect() } else { Ok(vec![cid_arg(v)?]) }
}

/// CIDs as a JS array of strings.
pub(crate) fn cid_strings<'a>(cids: impl IntoIterator<Item = &'a Cid>) -> Array {
    cids.into_iter().map(cid_js).collect()
}

/// A CID as a JS string.
pub(crate) fn cid_js(cid: &Cid) -> JsValue {
    crate::cidtext::to_js(cid)
}

/// A payload from its DAG-CBOR bytes (`wasm/js/payload.js` writes them).
/// The bytes are decoded in full, so anything that is not one DAG-CBOR item
/// is refused; the event is then encoded canonically by the core.
pub(crate) fn payload_from_cbor(bytes: &[u8]) -> Result<Ipld, JsValue> {
    serde_ipld_dagcbor::from_slice(bytes).map_err(|e| invalid(format!("the payload is not DAG-CBOR: {e}")))
}

/// IPLD as a JS value, per the table above. Recursion is bounded by the
/// decoder's depth limit (127).
pub(crate) fn from_ipld(ipld: &Ipld) -> JsValue {
    match ipld {
        Ipld::Null => JsValue::NULL,
        Ipld::Bool(b) => JsValue::from_bool(*b),
        Ipld::Integer(i) => {
            #[allow(clippy::cast_precision_loss)]
            let f = *i as f64;
            if f.abs() <= MAX_SAFE {
                JsValue::from_f64(f)
            } else if let Ok(i) = i64::try_from(*i) {
                JsValue::from(i)
            } else if let Ok(u) = u64::try_from(*i) {
                JsValue::from(u)
            } else {
                JsValue::from(*i)
            }
        }
        Ipld::Float(f) => JsValue::from_f64(*f),
        Ipld::String(s) => JsValue::from_str(s),
        Ipld::Bytes(b) => Uint8Array::from(&b[..]).into(),
        Ipld::List(items) => items.iter().map(from_ipld).collect::<Array>().into(),
        Ipld::Map(map) => {
            let entries: Array = map.iter().map(|(k, v)| Array::of2(&JsValue::from_str(k), &from_ipld(v))).collect();
            // fromEntries defines own properties, so a "__proto__" key is data.
            Object::from_entries(&entries).map_or(JsValue::NULL, Into::into)
        }
        Ipld::Link(cid) => link(cid),
    }
}

fn link(cid: &Cid) -> JsValue {
    let made = CID_FACTORY.with(|f| {
        f.borrow().as_ref().and_then(|f| f.call1(&JsValue::NULL, &Uint8Array::from(&cid.to_bytes()[..])).ok())
    });
    made.unwrap_or_else(|| {
        let o = Object::new();
        let _ = Reflect::set(&o, &JsValue::from_str("/"), &cid_js(cid));
        o.into()
    })
}
