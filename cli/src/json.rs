//! JSON in and out: payloads are written and shown as JSON, with the two
//! DAG-JSON forms for what JSON lacks: a link is `{"/": "<CID>"}` and bytes
//! are `{"/": {"bytes": "<base64>"}}`.

use std::collections::BTreeMap;

use merkle_clock::{Cid, Ipld};
use serde_json::{Map, Number, Value};

/// Parses a JSON text into an IPLD value.
pub fn parse(text: &str) -> Result<Ipld, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON payload: {e}"))?;
    to_ipld(&value)
}

/// Converts a JSON value into IPLD: numbers that are integers become
/// integers, other numbers floats; `{"/": "<CID>"}` is a link and
/// `{"/": {"bytes": "<base64>"}}` is bytes.
pub fn to_ipld(value: &Value) -> Result<Ipld, String> {
    Ok(match value {
        Value::Null => Ipld::Null,
        Value::Bool(b) => Ipld::Bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Ipld::Integer(i128::from(u))
            } else if let Some(i) = n.as_i64() {
                Ipld::Integer(i128::from(i))
            } else {
                // serde_json only makes finite floats.
                Ipld::Float(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => Ipld::String(s.clone()),
        Value::Array(items) => Ipld::List(items.iter().map(to_ipld).collect::<Result<_, _>>()?),
        Value::Object(map) => {
            if let Some(special) = map.get("/")
                && map.len() == 1
            {
                return reserved(special);
            }
            let mut out = BTreeMap::new();
            for (k, v) in map {
                out.insert(k.clone(), to_ipld(v)?);
            }
            Ipld::Map(out)
        }
    })
}

/// The value of a `{"/": ...}` map: a link or bytes.
fn reserved(value: &Value) -> Result<Ipld, String> {
    match value {
        Value::String(s) => {
            let cid = Cid::try_from(s.as_str()).map_err(|e| format!("invalid link {{\"/\": {s:?}}}: {e}"))?;
            Ok(Ipld::Link(cid))
        }
        Value::Object(inner) if inner.len() == 1 => match inner.get("bytes") {
            Some(Value::String(b)) => Ok(Ipld::Bytes(base64_decode(b)?)),
            _ => Err("a {\"/\": {...}} map must be {\"/\": {\"bytes\": \"<base64>\"}}".into()),
        },
        _ => Err("a map whose only key is \"/\" must be a link {\"/\": \"<CID>\"} or bytes {\"/\": {\"bytes\": \"<base64>\"}}"
            .into()),
    }
}

/// Converts an IPLD value to JSON (links and bytes in their DAG-JSON forms).
pub fn from_ipld(value: &Ipld) -> Value {
    match value {
        Ipld::Null => Value::Null,
        Ipld::Bool(b) => Value::Bool(*b),
        Ipld::Integer(i) => {
            if let Ok(u) = u64::try_from(*i) {
                Value::Number(u.into())
            } else if let Ok(s) = i64::try_from(*i) {
                Value::Number(s.into())
            } else {
                Value::String(i.to_string())
            }
        }
        Ipld::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Ipld::String(s) => Value::String(s.clone()),
        Ipld::Bytes(b) => {
            let mut inner = Map::new();
            inner.insert("bytes".into(), Value::String(base64_encode(b)));
            let mut outer = Map::new();
            outer.insert("/".into(), Value::Object(inner));
            Value::Object(outer)
        }
        Ipld::List(items) => Value::Array(items.iter().map(from_ipld).collect()),
        Ipld::Map(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), from_ipld(v))).collect()),
        Ipld::Link(cid) => {
            let mut m = Map::new();
            m.insert("/".into(), Value::String(cid.to_string()));
            Value::Object(m)
        }
    }
}

/// A compact one-line JSON rendering of an IPLD value.
pub fn compact(value: &Ipld) -> String {
    from_ipld(value).to_string()
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 without padding, as DAG-JSON writes bytes.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Standard base64, padded or not.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v =
            ALPHABET.iter().position(|&a| a == c).ok_or_else(|| format!("invalid base64 character {:?}", c as char))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return Err("invalid base64 length".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for len in 0..20 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = base64_encode(&bytes);
            assert_eq!(base64_decode(&text).unwrap(), bytes);
        }
        assert_eq!(base64_encode(b"hello"), "aGVsbG8");
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert!(base64_decode("a").is_err());
        assert!(base64_decode("a*").is_err());
    }

    #[test]
    fn json_round_trips_through_ipld() {
        let text = r#"{"a":[1,-2,3.5,null,true],"b":{"/":{"bytes":"aGVsbG8"}},"c":"x"}"#;
        let ipld = parse(text).unwrap();
        assert_eq!(compact(&ipld), text);
        let Ipld::Map(m) = &ipld else { panic!() };
        assert_eq!(m["b"], Ipld::Bytes(b"hello".to_vec()));
        assert!(parse("{\"/\": \"not a cid\"}").is_err());
        assert!(parse("{").is_err());
    }
}
