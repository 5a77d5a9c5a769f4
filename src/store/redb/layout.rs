//! The on-disk layout's keys and values: log keys (stream ++ position),
//! log values (a tag, then the block inline or its digest), CID lists.

use ipld_core::cid::Cid;
use redb::ReadableTable;

use super::{EVENT_CID_PREFIX, TAG_IN_BLOCKS, TAG_INLINE, be};
use crate::block::{DIGEST_LEN, Digest, cid_from_digest};
use crate::store::StoreError;

/// A decoded log value.
pub(super) enum Logged<'a> {
    /// The block is here.
    Inline { cid: Cid, bytes: &'a [u8] },
    /// The block is in the `blocks` table.
    InBlocks(Cid),
}

impl<'a> Logged<'a> {
    pub(super) fn decode(value: &'a [u8], what: &dyn Fn() -> String) -> Result<Self, StoreError> {
        match value.split_first() {
            Some((&TAG_INLINE, rest)) => match rest.split_first_chunk::<DIGEST_LEN>() {
                Some((digest, bytes)) => Ok(Logged::Inline { cid: cid_from_digest(digest), bytes }),
                None => Err(StoreError::Corrupt(format!("{}: an inline block value of {} bytes", what(), value.len()))),
            },
            Some((&TAG_IN_BLOCKS, rest)) => decode_cid(rest, what).map(Logged::InBlocks),
            _ => Err(StoreError::Corrupt(format!("{}: {}", what(), describe_bad_tag(value)))),
        }
    }

    pub(super) fn cid(&self) -> Cid {
        match self {
            Logged::Inline { cid, .. } | Logged::InBlocks(cid) => *cid,
        }
    }
}

pub(super) fn describe_bad_tag(value: &[u8]) -> String {
    match value.first() {
        None => "an empty value".to_owned(),
        Some(t) => format!("a value of {} bytes with the unknown tag {t}", value.len()),
    }
}

/// Names a log entry by its raw stream key and position.
pub(super) fn entry_name(skey: &[u8], pos: u64) -> String {
    match decode_cid(skey, String::new) {
        Ok(stream) => format!("log entry {pos} of stream {stream}"),
        Err(_) => format!("log entry {pos} of a stream with the key {skey:02x?}"),
    }
}

pub(super) fn corrupt_entry(skey: &[u8], pos: u64, what: String) -> StoreError {
    StoreError::Corrupt(format!("{}: {what}", entry_name(skey, pos)))
}

/// The binary form of the event CID with this digest.
pub(super) fn event_cid_bytes(digest: &Digest) -> [u8; 4 + DIGEST_LEN] {
    let mut out = [0u8; 4 + DIGEST_LEN];
    out[..4].copy_from_slice(&EVENT_CID_PREFIX);
    out[4..].copy_from_slice(digest);
    out
}

/// The digest of binary CID bytes that have an event CID's shape.
pub(super) fn event_digest_of_cid_bytes(bytes: &[u8]) -> Option<Digest> {
    bytes.strip_prefix(&EVENT_CID_PREFIX).and_then(|d| Digest::try_from(d).ok())
}

pub(super) fn log_key_into(buf: &mut Vec<u8>, stream: &[u8], pos: u64) {
    buf.clear();
    buf.extend_from_slice(stream);
    buf.extend_from_slice(&pos.to_be_bytes());
}

pub(super) fn log_key(stream: &[u8], pos: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 8);
    log_key_into(&mut k, stream, pos);
    k
}

/// Splits a log key into the stream key and the position.
pub(super) fn split_log_key(key: &[u8]) -> Option<(&[u8], u64)> {
    let (skey, pos) = key.split_last_chunk::<8>()?;
    (!skey.is_empty()).then(|| (skey, u64::from_be_bytes(*pos)))
}

/// The position after the stream's last log entry (its log length).
pub(super) fn log_end<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    skey: &[u8],
    stream: &Cid,
) -> Result<u64, StoreError> {
    let lo = log_key(skey, 0);
    let hi = log_key(skey, u64::MAX);
    let mut range = table.range::<&[u8]>(lo.as_slice()..=hi.as_slice()).map_err(be)?;
    let Some(last) = range.next_back() else { return Ok(0) };
    let (key, _) = last.map_err(be)?;
    let key = key.value();
    let pos = key
        .strip_prefix(skey)
        .and_then(|p| <[u8; 8]>::try_from(p).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt(format!("log key of stream {stream} has {} bytes", key.len())))?;
    pos.checked_add(1).ok_or_else(|| StoreError::Corrupt(format!("log of stream {stream} is at the largest position")))
}

pub(super) fn encode_cids(cids: &[Cid]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cids.iter().map(Cid::encoded_len).sum());
    for c in cids {
        out.extend_from_slice(&c.to_bytes());
    }
    out
}

/// Decodes a value that must be exactly one CID.
pub(super) fn decode_cid(bytes: &[u8], what: impl FnOnce() -> String) -> Result<Cid, StoreError> {
    let mut rest = bytes;
    match Cid::read_bytes(&mut rest) {
        Ok(cid) if rest.is_empty() => Ok(cid),
        Ok(_) => Err(StoreError::Corrupt(format!("{}: {} bytes after the CID", what(), rest.len()))),
        Err(e) => Err(StoreError::Corrupt(format!("{}: not a CID ({} bytes): {e}", what(), bytes.len()))),
    }
}

/// Decodes concatenated CIDs; the value must split exactly into CIDs.
pub(super) fn decode_cids(bytes: &[u8], what: impl Fn() -> String) -> Result<Vec<Cid>, StoreError> {
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let cid = Cid::read_bytes(&mut rest).map_err(|e| {
            StoreError::Corrupt(format!(
                "{}: {} bytes do not split into CIDs (at byte {offset}: {e})",
                what(),
                bytes.len()
            ))
        })?;
        out.push(cid);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_cid_prefix_is_the_binary_form() {
        let d = [7u8; DIGEST_LEN];
        let cid = cid_from_digest(&d);
        assert_eq!(event_cid_bytes(&d).as_slice(), cid.to_bytes().as_slice());
        assert_eq!(event_digest_of_cid_bytes(&cid.to_bytes()), Some(d));
        assert_eq!(event_digest_of_cid_bytes(&cid.to_bytes()[..30]), None);
    }
}
