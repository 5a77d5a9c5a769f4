//! The Bloom filter a sync message carries: which events the sender holds
//! beyond the heads both sides last shared.
//!
//! Bit positions come from keyed BLAKE3 of the event's 32-byte digest, keyed
//! with a salt drawn afresh for every filter: the 32-byte output is split into
//! up to eight 32-bit words, each mapped onto the bit array. Because the salt
//! changes with every message, CIDs mined to collide in one filter do not
//! collide in the next.

use std::fmt;

use ipld_core::cid::Cid;

use crate::block::{Digest, digest_of};

/// Bits per element of a filter that covers the events since the last shared
/// heads: 10 bits and 7 hashes give a false-positive rate of about 0.82%.
pub const BITS_PER_ELEMENT: usize = 10;

/// Bits per element of a *full inventory*, the filter sent when the two peers
/// share no heads yet (a first contact, or a state that was lost): 7 bits and
/// 5 hashes, about 3.5% false positives. See [`crate::sync`] for why a full
/// inventory can afford more false positives.
pub const FULL_INVENTORY_BITS_PER_ELEMENT: usize = 7;

/// Most hashes a filter may use: the 32-byte BLAKE3 output gives eight 32-bit words.
pub const MAX_HASHES: u8 = 8;

/// The lengths a salt may have, in bytes.
pub const SALT_LENGTHS: [usize; 2] = [16, 32];

/// A Bloom filter over event CIDs, with its parameters and salt.
///
/// ```
/// use merkle_clock::{Event, sync::BloomFilter};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let g = Event::genesis("s").encode()?;
/// let a = Event::new(1, vec![*g.cid()], "a").encode()?;
/// let mut filter = BloomFilter::new(&[7u8; 16], 1, 10)?;
/// filter.insert(a.cid());
/// assert!(filter.contains(a.cid()));
/// assert_eq!(filter.count(), 1);
/// assert_eq!(filter.hashes(), 7);
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BloomFilter {
    bits: Vec<u8>,
    hashes: u8,
    salt_len: u8,
    /// The salt, zero-padded to a BLAKE3 key.
    key: [u8; 32],
    count: u64,
}

impl BloomFilter {
    /// An empty filter sized for `expected` elements at `bits_per_element`
    /// bits each (rounded up to whole bytes), with the number of hashes that
    /// minimizes false positives (`bits_per_element · ln 2`, between 1 and 8).
    ///
    /// # Errors
    /// When the salt is not 16 or 32 bytes long.
    pub fn new(salt: &[u8], expected: usize, bits_per_element: usize) -> Result<Self, &'static str> {
        let bytes = expected.saturating_mul(bits_per_element).div_ceil(8);
        Self::with_bytes(salt, bytes, optimal_hashes(bits_per_element))
    }

    /// An empty filter of exactly `bytes` bytes and `hashes` hashes.
    ///
    /// # Errors
    /// When the salt is not 16 or 32 bytes long, or `hashes` is not in `1..=8`.
    pub fn with_bytes(salt: &[u8], bytes: usize, hashes: u8) -> Result<Self, &'static str> {
        Self::from_parts(vec![0; bytes], hashes, salt, 0)
    }

    /// A filter from its wire parts.
    pub(crate) fn from_parts(bits: Vec<u8>, hashes: u8, salt: &[u8], count: u64) -> Result<Self, &'static str> {
        if !SALT_LENGTHS.contains(&salt.len()) {
            return Err("a filter salt must be 16 or 32 bytes");
        }
        if hashes == 0 || hashes > MAX_HASHES {
            return Err("a filter must use 1 to 8 hashes");
        }
        let mut key = [0u8; 32];
        key[..salt.len()].copy_from_slice(salt);
        Ok(BloomFilter { bits, hashes, salt_len: salt.len() as u8, key, count })
    }

    /// Adds an event. CIDs that are not event CIDs (CIDv1, DAG-CBOR,
    /// BLAKE3-256) are hashed by their bytes instead.
    pub fn insert(&mut self, cid: &Cid) {
        self.insert_digest(&key_digest(cid));
    }

    pub(crate) fn insert_digest(&mut self, digest: &Digest) {
        self.count += 1;
        let m = self.num_bits();
        if m == 0 {
            return;
        }
        let hash = blake3::keyed_hash(&self.key, digest);
        for i in positions(hash.as_bytes(), self.hashes, m) {
            self.bits[(i / 8) as usize] |= 1 << (i % 8);
        }
    }

    /// Whether the filter (probably) holds the event. An empty filter holds nothing.
    pub fn contains(&self, cid: &Cid) -> bool {
        self.contains_digest(&key_digest(cid))
    }

    pub(crate) fn contains_digest(&self, digest: &Digest) -> bool {
        let m = self.num_bits();
        if m == 0 {
            return false;
        }
        if super::mutation::on(super::mutation::Mutation::FilterHoldsAll) {
            return true;
        }
        let hash = blake3::keyed_hash(&self.key, digest);
        positions(hash.as_bytes(), self.hashes, m).all(|i| self.bits[(i / 8) as usize] & (1 << (i % 8)) != 0)
    }

    /// The bit array, bit `i` being `bits[i / 8] >> (i % 8) & 1`.
    pub fn bits(&self) -> &[u8] {
        &self.bits
    }

    /// The number of bits.
    pub fn num_bits(&self) -> u64 {
        self.bits.len() as u64 * 8
    }

    /// The number of hashes (bit positions per element).
    pub fn hashes(&self) -> u8 {
        self.hashes
    }

    /// The salt that keys the positions (16 or 32 bytes).
    pub fn salt(&self) -> &[u8] {
        &self.key[..self.salt_len as usize]
    }

    /// How many elements were inserted, as the sender declared.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The expected false-positive rate for its element count:
    /// `(1 - e^(-k·n/m))^k`.
    pub fn false_positive_rate(&self) -> f64 {
        let m = self.num_bits() as f64;
        if m == 0.0 {
            return 0.0;
        }
        let k = f64::from(self.hashes);
        (1.0 - (-k * self.count as f64 / m).exp()).powf(k)
    }
}

impl fmt::Debug for BloomFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BloomFilter")
            .field("bits", &self.num_bits())
            .field("hashes", &self.hashes)
            .field("count", &self.count)
            .field("salt_len", &self.salt_len)
            .finish()
    }
}

/// `round(bits_per_element · ln 2)` within `1..=8`.
pub(crate) fn optimal_hashes(bits_per_element: usize) -> u8 {
    let k = (bits_per_element as f64 * std::f64::consts::LN_2).round();
    k.clamp(1.0, f64::from(MAX_HASHES)) as u8
}

fn key_digest(cid: &Cid) -> Digest {
    digest_of(cid).unwrap_or_else(|| *blake3::hash(&cid.to_bytes()).as_bytes())
}

/// `k` positions in `0..m`: each 32-bit little-endian word of the hash,
/// scaled onto the bit array (`word · m / 2^32`).
fn positions(hash: &[u8; 32], k: u8, m: u64) -> impl Iterator<Item = u64> + '_ {
    (0..usize::from(k)).map(move |i| {
        let word = u32::from_le_bytes(hash[4 * i..4 * i + 4].try_into().expect("4 bytes"));
        ((u128::from(word) * u128::from(m)) >> 32) as u64
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;

    fn events(n: usize) -> Vec<Cid> {
        let g = Event::genesis("bloom").encode().unwrap();
        (0..n).map(|i| *Event::new(1, vec![*g.cid()], i as u64).encode().unwrap().cid()).collect()
    }

    #[test]
    fn no_false_negatives_and_rate_near_theory() {
        let all = events(4000);
        let (inside, outside) = all.split_at(2000);
        let mut f = BloomFilter::new(&[1u8; 16], inside.len(), BITS_PER_ELEMENT).unwrap();
        for c in inside {
            f.insert(c);
        }
        assert!(inside.iter().all(|c| f.contains(c)));
        let fp = outside.iter().filter(|c| f.contains(c)).count() as f64 / outside.len() as f64;
        assert!(fp < 0.02, "false positive rate {fp}");
        assert!((f.false_positive_rate() - 0.0082).abs() < 0.002, "{}", f.false_positive_rate());
    }

    #[test]
    fn salt_moves_positions() {
        let all = events(64);
        let mut a = BloomFilter::new(&[1u8; 16], 64, 10).unwrap();
        let mut b = BloomFilter::new(&[2u8; 32], 64, 10).unwrap();
        for c in &all {
            a.insert(c);
            b.insert(c);
        }
        assert_ne!(a.bits(), b.bits());
        assert_eq!(b.salt().len(), 32);
    }

    #[test]
    fn empty_filter_holds_nothing() {
        let f = BloomFilter::new(&[0u8; 16], 0, 10).unwrap();
        assert_eq!(f.num_bits(), 0);
        assert!(!f.contains(&events(1)[0]));
        assert!(BloomFilter::new(&[0u8; 15], 1, 10).is_err());
        assert!(BloomFilter::with_bytes(&[0u8; 16], 1, 9).is_err());
        assert_eq!(optimal_hashes(10), 7);
        assert_eq!(optimal_hashes(7), 5);
    }
}
