//! JS values ↔ IPLD, the data model that DAG-CBOR encodes.
//!
//! | JS                                        | IPLD / DAG-CBOR                       |
//! |-------------------------------------------|---------------------------------------|
//! | `null`                                    | null                                  |
//! | `true` / `false`                          | bool                                  |
//! | a number with no fraction, \|n\| ≤ 2^53−1 | integer                               |
//! | any other finite number                   | float (64-bit)                        |
//! | a `bigint` within −2^64 … 2^64−1          | integer                               |
//! | a string                                  | string                                |
//! | a `Uint8Array`                            | bytes                                 |
//! | an array                                  | list                                  |
//! | a plain object (string keys)              | map (keys sorted canonically)         |
//! | a `multiformats` `CID`, or `{"/": "bafy…"}` | link                                |
//!
//! Refused (`invalid_argument`): `undefined`, `NaN`, `±Infinity`, symbols,
//! functions, class instances other than `Uint8Array` and `CID` (a `Map`, a
//! `Date`, ...), and nesting deeper than 128 levels (which also catches
//! cycles). A float with no fraction (`1.0`) is the JS number `1` and so
//! encodes as an integer.
//!
//! Back to JS: integers within ±(2^53−1) are numbers, larger ones `bigint`s;
//! links are `multiformats` `CID`s when a CID factory was set
//! (`setCidFactory`, which the package's JS entry points do), else
//! `{"/": "bafy…"}`.

use std::cell::RefCell;

use js_sys::{Array, Function, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};

use crate::core::{Cid, Ipld};
use crate::errors::invalid;

/// Deepest nesting taken from JS (the core then applies its own limit, 64 by
/// default, when encoding an event).
const MAX_DEPTH: usize = 128;

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
    merkle_clock::cid_of(bytes).to_string()
}

/// A CID from a JS string.
pub(crate) fn parse_cid(s: &str) -> Result<Cid, JsValue> {
    Cid::try_from(s).map_err(|e| invalid(format!("{s:?} is not a CID: {e}")))
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
    cids.into_iter().map(|c| JsValue::from_str(&c.to_string())).collect()
}

/// A JS value as IPLD, per the table above.
pub(crate) fn to_ipld(v: &JsValue) -> Result<Ipld, JsValue> {
    to_ipld_at(v, 0)
}

fn to_ipld_at(v: &JsValue, depth: usize) -> Result<Ipld, JsValue> {
    if depth > MAX_DEPTH {
        return Err(invalid("the payload is nested deeper than 128 levels (or holds a cycle)"));
    }
    // The most common types first: each test is a call out of wasm.
    if v.is_string() {
        return Ok(Ipld::String(v.as_string().unwrap_or_default()));
    }
    if v.is_object() {
        return object_to_ipld(v, depth);
    }
    if let Some(n) = v.as_f64() {
        if !n.is_finite() {
            return Err(invalid("NaN and ±Infinity cannot be encoded as DAG-CBOR"));
        }
        if n.fract() == 0.0 && n.abs() <= MAX_SAFE {
            // Exact: |n| ≤ 2^53 − 1 with no fraction.
            #[allow(clippy::cast_possible_truncation)]
            return Ok(Ipld::Integer(n as i128));
        }
        return Ok(Ipld::Float(n));
    }
    if v.is_null() {
        return Ok(Ipld::Null);
    }
    if let Some(b) = v.as_bool() {
        return Ok(Ipld::Bool(b));
    }
    if v.is_undefined() {
        return Err(invalid("undefined cannot be encoded as DAG-CBOR (use null, or leave the key out)"));
    }
    if v.is_bigint() {
        let text = String::from(
            js_sys::BigInt::from(v.clone()).to_string(10).map_err(|_| invalid("a bigint that cannot be printed"))?,
        );
        let i: i128 = text.parse().map_err(|_| invalid(format!("bigint {text} is beyond 128 bits")))?;
        if i < -(1i128 << 64) || i > i128::from(u64::MAX) {
            return Err(invalid(format!("bigint {text} is beyond DAG-CBOR's integers (−2^64 … 2^64−1)")));
        }
        return Ok(Ipld::Integer(i));
    }
    Err(invalid(format!("a {} cannot be encoded as DAG-CBOR", v.js_typeof().as_string().unwrap_or_default())))
}

thread_local! {
    static AS_CID: JsValue = JsValue::from_str("asCID");
    static BYTES: JsValue = JsValue::from_str("bytes");
}

/// A non-null object: bytes, a list, a link or a map.
fn object_to_ipld(v: &JsValue, depth: usize) -> Result<Ipld, JsValue> {
    if let Some(bytes) = v.dyn_ref::<Uint8Array>() {
        return Ok(Ipld::Bytes(bytes.to_vec()));
    }
    if Array::is_array(v) {
        let a: &Array = v.unchecked_ref();
        let mut out = Vec::with_capacity(a.length() as usize);
        for x in a.iter() {
            out.push(to_ipld_at(&x, depth + 1)?);
        }
        return Ok(Ipld::List(out));
    }
    // A `multiformats` CID (any version of the package: it is recognised by
    // its `asCID` property, which is the object itself, and its `bytes`).
    let as_cid = AS_CID.with(|k| Reflect::get(v, k))?;
    if !as_cid.is_undefined() && as_cid == *v {
        let bytes = BYTES.with(|k| Reflect::get(v, k))?;
        let bytes = bytes.dyn_ref::<Uint8Array>().ok_or_else(|| invalid("a CID object without bytes"))?;
        return Cid::try_from(bytes.to_vec())
            .map(Ipld::Link)
            .map_err(|e| invalid(format!("a CID object that is not a CID: {e}")));
    }
    let obj: &Object = v.unchecked_ref();
    if !is_plain(obj) {
        return Err(invalid(format!(
            "{} cannot be encoded as DAG-CBOR: only plain objects, arrays, Uint8Array and CIDs",
            describe_type(obj)
        )));
    }
    let keys = Object::keys(obj);
    let mut map = std::collections::BTreeMap::new();
    for key in keys.iter() {
        let value = Reflect::get(obj, &key)?;
        let key = key.as_string().unwrap_or_default();
        // The DAG-JSON link form, {"/": "bafy…"}.
        if key == "/" && keys.length() == 1 && value.is_string() {
            return parse_cid(&value.as_string().unwrap_or_default()).map(Ipld::Link);
        }
        map.insert(key, to_ipld_at(&value, depth + 1)?);
    }
    Ok(Ipld::Map(map))
}

/// Whether `obj` is a plain object of some realm: `{}`, `Object.create(null)`
/// (its prototype is `Object.prototype` or null).
fn is_plain(obj: &Object) -> bool {
    let proto = Object::get_prototype_of(obj);
    proto.is_null() || Object::get_prototype_of(&proto).is_null()
}

fn describe_type(obj: &Object) -> String {
    let ctor = obj.constructor();
    let name = String::from(ctor.name());
    if name.is_empty() { "an object".to_owned() } else { format!("a {name}") }
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
        let _ = Reflect::set(&o, &JsValue::from_str("/"), &JsValue::from_str(&cid.to_string()));
        o.into()
    })
}
