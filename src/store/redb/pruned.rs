//! Pruned log entries, packed into rows of the `stream_pruned` table.
//!
//! A pruned entry keeps an event's skeleton: its digest, its height and its
//! parents. One row per entry would cost a 44-byte key (stream CID ++
//! position) on top of the 32-byte digest, so consecutive pruned entries of
//! a stream share a row of about [`ROW_TARGET`] bytes (a redb leaf page holds
//! one): the key is the stream CID ++ the first entry's position, the value
//!
//! ```text
//! span (varint)          the last entry's position minus the first's
//! count (varint)
//! count × entry:
//!   position delta       varint: 0 for the first entry, then ≥ 1 from the previous one
//!   digest               32 bytes (the event's CID is v1, dag-cbor, blake3-256 of it)
//!   height delta         zigzag varint from the previous entry's height (the first: from 0)
//!   parents              varint count, then per parent a varint k: k ≥ 1 is the entry k
//!                        entries earlier in this row; 0 is followed by the parent's digest
//! ```
//!
//! A chain costs 36 bytes an entry (digest, and one byte each for the
//! position, height, parent count and parent), and rows do not overlap: each covers the
//! positions from its first entry to its last, and the positions between that
//! are not pruned are in the log table.

use redb::ReadableTable;

use super::be;
use super::layout::log_key;
use crate::block::{DIGEST_LEN, Digest};
use crate::store::StoreError;

/// The encoded size a row is cut at: with its key and redb's per-entry
/// overhead, one row fills most of a 4 KiB leaf page.
pub(super) const ROW_TARGET: usize = 3_900;

/// One pruned entry: a log position and the skeleton of the event there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Skel {
    pub(super) pos: u64,
    pub(super) digest: Digest,
    pub(super) height: u64,
    /// In the order of the event's header (ascending by CID bytes).
    pub(super) parents: Vec<Digest>,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Encodes entries (ascending by position, none twice) into rows, each
/// `(first position, value)`.
pub(super) fn encode_rows(entries: &[Skel]) -> Vec<(u64, Vec<u8>)> {
    let mut rows = Vec::new();
    let mut start = 0;
    let mut body = Vec::with_capacity(ROW_TARGET + 256);
    let mut one = Vec::with_capacity(64);
    let mut i = 0;
    while i < entries.len() {
        encode_entry(&mut one, entries, start, i);
        if i > start && body.len() + one.len() > ROW_TARGET {
            rows.push(finish_row(&entries[start..i], &body));
            body.clear();
            start = i;
            continue; // encode it again as the first of the next row
        }
        body.extend_from_slice(&one);
        i += 1;
    }
    if start < entries.len() {
        rows.push(finish_row(&entries[start..], &body));
    }
    rows
}

fn finish_row(entries: &[Skel], body: &[u8]) -> (u64, Vec<u8>) {
    let first = entries[0].pos;
    let last = entries[entries.len() - 1].pos;
    let mut value = Vec::with_capacity(body.len() + 20);
    put_varint(&mut value, last - first);
    put_varint(&mut value, entries.len() as u64);
    value.extend_from_slice(body);
    (first, value)
}

/// Encodes `entries[i]` as a member of the row that starts at `entries[start]`.
fn encode_entry(out: &mut Vec<u8>, entries: &[Skel], start: usize, i: usize) {
    out.clear();
    let e = &entries[i];
    let (prev_pos, prev_height) = if i == start { (e.pos, 0) } else { (entries[i - 1].pos, entries[i - 1].height) };
    put_varint(out, e.pos - prev_pos);
    out.extend_from_slice(&e.digest);
    put_varint(out, zigzag(e.height.wrapping_sub(prev_height) as i64));
    put_varint(out, e.parents.len() as u64);
    for p in &e.parents {
        // Parents are usually among the last few entries: look back a little.
        let back = (start..i).rev().take(64).find(|&j| entries[j].digest == *p);
        match back {
            Some(j) => put_varint(out, (i - j) as u64),
            None => {
                out.push(0);
                out.extend_from_slice(p);
            }
        }
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.at)?;
            self.at += 1;
            v |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn digest(&mut self) -> Option<Digest> {
        let d = self.bytes.get(self.at..self.at + DIGEST_LEN)?;
        self.at += DIGEST_LEN;
        Digest::try_from(d).ok()
    }
}

/// The last position a row covers, from its first field alone.
pub(super) fn row_last(first: u64, value: &[u8], what: &dyn Fn() -> String) -> Result<u64, StoreError> {
    let mut c = Cursor { bytes: value, at: 0 };
    c.varint()
        .and_then(|span| first.checked_add(span))
        .ok_or_else(|| StoreError::Corrupt(format!("{}: a pruned row without a valid span", what())))
}

/// Decodes a row whose first entry is at `first`.
pub(super) fn decode_row(first: u64, value: &[u8], what: &dyn Fn() -> String) -> Result<Vec<Skel>, StoreError> {
    let bad = |rule: &str| StoreError::Corrupt(format!("{}: pruned row at position {first}: {rule}", what()));
    let mut c = Cursor { bytes: value, at: 0 };
    let span = c.varint().ok_or_else(|| bad("no span"))?;
    let count = c.varint().ok_or_else(|| bad("no count"))?;
    // Each entry takes at least 35 bytes: a count beyond that is a lie.
    if count == 0 || count > (value.len() / (DIGEST_LEN + 3)) as u64 {
        return Err(bad("a count the row cannot hold"));
    }
    let mut out: Vec<Skel> = Vec::with_capacity(count as usize);
    let (mut pos, mut height) = (first, 0u64);
    for i in 0..count as usize {
        let delta = c.varint().ok_or_else(|| bad("truncated entry"))?;
        if (i == 0) != (delta == 0) {
            return Err(bad("positions not ascending"));
        }
        pos = pos.checked_add(delta).ok_or_else(|| bad("a position past the end"))?;
        let digest = c.digest().ok_or_else(|| bad("truncated digest"))?;
        height = height.wrapping_add(unzigzag(c.varint().ok_or_else(|| bad("truncated height"))?) as u64);
        let n = c.varint().ok_or_else(|| bad("truncated parents"))?;
        if n > (value.len() - c.at) as u64 {
            return Err(bad("more parents than bytes"));
        }
        let mut parents = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let k = c.varint().ok_or_else(|| bad("truncated parent"))?;
            let p = if k == 0 {
                c.digest().ok_or_else(|| bad("truncated parent digest"))?
            } else {
                let j = usize::try_from(k)
                    .ok()
                    .and_then(|k| i.checked_sub(k))
                    .ok_or_else(|| bad("a parent before the row"))?;
                out[j].digest
            };
            parents.push(p);
        }
        out.push(Skel { pos, digest, height, parents });
    }
    if c.at != value.len() {
        return Err(bad("trailing bytes"));
    }
    if pos - first != span {
        return Err(bad("a span that is not its entries'"));
    }
    Ok(out)
}

/// The rows of `skey` that may hold positions `from..=to`: the last row that
/// starts at or before `from` and every row that starts after it, up to `to`.
/// Returns their keys and values, in order.
pub(super) fn rows_around<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    skey: &[u8],
    from: u64,
    to: u64,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    let lo = log_key(skey, 0);
    let at = log_key(skey, from);
    if let Some(entry) = table.range::<&[u8]>(lo.as_slice()..=at.as_slice()).map_err(be)?.next_back() {
        let (k, v) = entry.map_err(be)?;
        out.push((key_pos(k.value()), v.value().to_vec()));
    }
    if let Some(next) = from.checked_add(1).filter(|n| *n <= to) {
        let lo = log_key(skey, next);
        let hi = log_key(skey, to);
        for entry in table.range::<&[u8]>(lo.as_slice()..=hi.as_slice()).map_err(be)? {
            let (k, v) = entry.map_err(be)?;
            out.push((key_pos(k.value()), v.value().to_vec()));
        }
    }
    Ok(out)
}

/// The position after the last pruned entry of `skey`, or 0.
pub(super) fn pruned_end<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    skey: &[u8],
    what: &dyn Fn() -> String,
) -> Result<u64, StoreError> {
    let lo = log_key(skey, 0);
    let hi = log_key(skey, u64::MAX);
    let Some(last) = table.range::<&[u8]>(lo.as_slice()..=hi.as_slice()).map_err(be)?.next_back() else {
        return Ok(0);
    };
    let (k, v) = last.map_err(be)?;
    let last = row_last(key_pos(k.value()), v.value(), what)?;
    last.checked_add(1).ok_or_else(|| StoreError::Corrupt(format!("{}: a pruned row at the largest position", what())))
}

/// The position of a key known to be a stream key ++ 8 bytes.
fn key_pos(key: &[u8]) -> u64 {
    key.last_chunk::<8>().map_or(0, |p| u64::from_be_bytes(*p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(i: u64) -> Digest {
        let mut d = [0u8; DIGEST_LEN];
        d[..8].copy_from_slice(&i.to_le_bytes());
        d[31] = 0xee;
        d
    }

    fn chain(positions: impl Iterator<Item = u64>) -> Vec<Skel> {
        let mut out: Vec<Skel> = Vec::new();
        for pos in positions {
            let parents = match out.last() {
                Some(p) => vec![p.digest, digest(u64::MAX - pos)],
                None => vec![digest(7_000_000)],
            };
            out.push(Skel { pos, digest: digest(pos), height: pos + 3, parents });
        }
        out
    }

    #[test]
    fn rows_round_trip_and_stay_near_their_target() {
        let entries = chain((10..5_000u64).filter(|p| p % 7 != 3));
        let rows = encode_rows(&entries);
        assert!(rows.len() > 10);
        let mut back = Vec::new();
        for (first, value) in &rows {
            assert!(value.len() <= ROW_TARGET, "{} bytes", value.len());
            let row = decode_row(*first, value, &String::new).unwrap();
            assert_eq!(row_last(*first, value, &String::new).unwrap(), row.last().unwrap().pos);
            back.extend(row);
        }
        assert_eq!(back, entries);
    }

    #[test]
    fn a_chain_costs_36_bytes_an_entry() {
        let entries: Vec<Skel> = (0..10_000u64)
            .map(|pos| Skel {
                pos,
                digest: digest(pos),
                height: pos + 1,
                parents: if pos == 0 { vec![digest(99_999_999)] } else { vec![digest(pos - 1)] },
            })
            .collect();
        let bytes: usize = encode_rows(&entries).iter().map(|(_, v)| v.len()).sum();
        let per = bytes as f64 / entries.len() as f64;
        assert!((36.0..36.5).contains(&per), "{per:.2} bytes an entry");
    }

    #[test]
    fn every_truncation_of_a_row_is_corrupt_not_a_panic() {
        let rows = encode_rows(&chain(0..40));
        let (first, value) = &rows[0];
        for cut in 0..value.len() {
            assert!(matches!(decode_row(*first, &value[..cut], &String::new), Err(StoreError::Corrupt(_))), "{cut}");
        }
        let mut longer = value.clone();
        longer.push(0);
        assert!(matches!(decode_row(*first, &longer, &String::new), Err(StoreError::Corrupt(_))));
    }
}
