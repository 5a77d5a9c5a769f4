//! CID text without detours: CIDv1 strings are multibase base32 (lower case,
//! no padding, prefix `b`), which this module writes and reads on the stack.
//! The `cid` crate's `Display` and `FromStr` take the same path through
//! several allocations and generic multibase code: in wasm, parsing a CID
//! string that way took 1.6 µs, this way 0.7 µs (most of it now the string
//! crossing from JS). Anything that is not a base32
//! CIDv1 (a CIDv0, another base) goes through the `cid` crate.

use crate::core::Cid;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Longest CID handled on the stack (a CIDv1 with a 64-byte digest is 68).
const MAX_CID: usize = 96;

/// The CID's canonical string (what `Cid::to_string` prints).
pub(crate) fn to_text(cid: &Cid) -> String {
    with_text(cid, |text| String::from_utf8_lossy(text).into_owned())
}

/// `f` of the CID's canonical string's bytes (ASCII), without a `String`.
pub(crate) fn with_text<R>(cid: &Cid, f: impl FnOnce(&[u8]) -> R) -> R {
    if let Some(digest) = event_digest(cid) {
        return f(&event_text(digest)[..EVENT_TEXT]);
    }
    let mut text = [0u8; 1 + MAX_CID * 8 / 5 + 1];
    match write_text(cid, &mut text) {
        Some(n) => f(&text[..n]),
        None => f(cid.to_string().as_bytes()),
    }
}

/// The length of an event CID's text: `b` and its 36 bytes in base32.
const EVENT_TEXT: usize = 1 + (36usize * 8).div_ceil(5);

/// An event CID's text (v1, DAG-CBOR, BLAKE3-256: `01 71 1e 20` and the
/// digest) in its first [`EVENT_TEXT`] bytes: the append's path, written
/// from the digest in small fixed arrays (the general path below zeroes
/// and fills a buffer for the longest CID).
fn event_text(digest: &[u8; 32]) -> [u8; 1 + 8 * 8] {
    // 36 bytes and 4 of zero padding: eight groups of five bytes.
    let mut raw = [0u8; 40];
    raw[..4].copy_from_slice(&EVENT_PREFIX);
    raw[4..36].copy_from_slice(digest);
    let mut out = [0u8; 1 + 8 * 8];
    out[0] = b'b';
    for (i, group) in raw.as_chunks::<5>().0.iter().enumerate() {
        out[1 + 8 * i..9 + 8 * i].copy_from_slice(&base32_group(group));
    }
    out
}

/// The CID's canonical string as a JS string, without a `String` between.
pub(crate) fn to_js(cid: &Cid) -> wasm_bindgen::JsValue {
    with_text(cid, |text| wasm_bindgen::JsValue::from_str(std::str::from_utf8(text).unwrap_or_default()))
}

/// Writes a CIDv1's base32 string into `out` (any CID but an event's, which
/// [`event_text`] writes); its length, or `None` for a CID this module
/// leaves to the `cid` crate.
fn write_text(cid: &Cid, out: &mut [u8; 1 + MAX_CID * 8 / 5 + 1]) -> Option<usize> {
    let mut raw = [0u8; MAX_CID];
    let mut cursor = &mut raw[..];
    if cid.version() == ipld_core::cid::Version::V0 || cid.write_bytes(&mut cursor).is_err() {
        return None;
    }
    let n = MAX_CID - cursor.len();
    out[0] = b'b';
    let mut at = 1;
    // Five bytes are eight characters: take them 40 bits at a time (the
    // last group padded with zero bits).
    let (groups, rest) = raw[..n].as_chunks::<5>();
    for group in groups {
        out[at..at + 8].copy_from_slice(&base32_group(group));
        at += 8;
    }
    if !rest.is_empty() {
        let mut last = [0u8; 5];
        last[..rest.len()].copy_from_slice(rest);
        let chars = (rest.len() * 8).div_ceil(5);
        out[at..at + chars].copy_from_slice(&base32_group(&last)[..chars]);
        at += chars;
    }
    Some(at)
}

/// The eight base32 characters of five bytes.
fn base32_group(bytes: &[u8; 5]) -> [u8; 8] {
    let bits = bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    std::array::from_fn(|i| ALPHABET[((bits >> (35 - 5 * i)) & 31) as usize])
}

/// An event CID's first bytes: v1, DAG-CBOR, BLAKE3, 32 bytes.
const EVENT_PREFIX: [u8; 4] = [0x01, 0x71, 0x1e, 0x20];

/// The digest of an event CID (v1, DAG-CBOR, BLAKE3-256); `None` for any
/// other CID.
fn event_digest(cid: &Cid) -> Option<&[u8; 32]> {
    let hash = cid.hash();
    if cid.version() != ipld_core::cid::Version::V1
        || cid.codec() != merkle_clock::DAG_CBOR
        || hash.code() != merkle_clock::BLAKE3
    {
        return None;
    }
    hash.digest().try_into().ok()
}

/// A CID from its string; `None` when the text is not a CID.
pub(crate) fn from_text(s: &str) -> Option<Cid> {
    let Some(body) = s.strip_prefix('b') else { return Cid::try_from(s).ok() };
    if body.len() * 5 / 8 > MAX_CID {
        return Cid::try_from(s).ok();
    }
    let mut raw = [0u8; MAX_CID];
    let (mut acc, mut bits, mut n) = (0u32, 0u32, 0usize);
    for &c in body.as_bytes() {
        let v = match c {
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            raw[n] = (acc >> bits) as u8;
            n += 1;
        }
    }
    // Leftover bits must be zero padding of less than a byte (RFC 4648 without
    // padding characters), so each CID has exactly one string.
    if bits >= 5 || acc & ((1 << bits) - 1) != 0 {
        return None;
    }
    let cid = Cid::try_from(&raw[..n]).ok()?;
    // A CIDv0 is never written in base32: leave the judgement to the cid crate.
    if cid.version() == ipld_core::cid::Version::V0 {
        return Cid::try_from(s).ok();
    }
    Some(cid)
}
