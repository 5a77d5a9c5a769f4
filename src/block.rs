//! Blocks: bytes and the CID that names them.

// Errors name the CID they concern by value (every variant does), so they
// are larger than clippy's default 128 bytes; they are the rare path.
#![allow(clippy::result_large_err)]

use std::fmt;

use bytes::Bytes;
use ipld_core::cid::Cid;
use multihash::Multihash;

use crate::error::BlockError;

/// Multicodec code of DAG-CBOR.
pub const DAG_CBOR: u64 = 0x71;
/// Multihash code of BLAKE3 (256-bit output).
pub const BLAKE3: u64 = 0x1e;
/// Length of a BLAKE3 digest.
pub(crate) const DIGEST_LEN: usize = 32;

/// The 32-byte BLAKE3 digest of an event. Every event CID is the fixed prefix
/// plus this digest, so comparing digests compares CID bytes.
pub(crate) type Digest = [u8; DIGEST_LEN];

/// Hashes bytes into a CIDv1 / DAG-CBOR / BLAKE3 CID.
pub fn cid_of(bytes: &[u8]) -> Cid {
    cid_from_digest(blake3::hash(bytes).as_bytes())
}

pub(crate) fn cid_from_digest(digest: &Digest) -> Cid {
    let mh = Multihash::wrap(BLAKE3, digest).expect("32 bytes fit a 64-byte multihash");
    Cid::new_v1(DAG_CBOR, mh)
}

/// The digest of a CID if it has the one shape events use (v1, dag-cbor, blake3-256).
pub(crate) fn digest_of(cid: &Cid) -> Option<Digest> {
    event_digest(cid).copied()
}

/// [`digest_of`] by reference, for a lookup (no 32-byte copy).
#[inline]
pub(crate) fn event_digest(cid: &Cid) -> Option<&Digest> {
    let mh = cid.hash();
    if cid.version() != ipld_core::cid::Version::V1 || cid.codec() != DAG_CBOR || mh.code() != BLAKE3 {
        return None;
    }
    mh.digest().try_into().ok()
}

/// Checks that a CID has the shape this library accepts.
pub(crate) fn check_cid(cid: &Cid) -> Result<(), BlockError> {
    if cid.version() != ipld_core::cid::Version::V1 {
        return Err(BlockError::UnsupportedVersion { cid: *cid, version: cid.version().into() });
    }
    if cid.codec() != DAG_CBOR {
        return Err(BlockError::UnsupportedCodec { cid: *cid, codec: cid.codec() });
    }
    let mh = cid.hash();
    if mh.code() != BLAKE3 || mh.size() as usize != DIGEST_LEN {
        return Err(BlockError::UnsupportedHash { cid: *cid, code: mh.code(), size: mh.size() });
    }
    Ok(())
}

/// The `BuildHasher` of the maps keyed by CIDs or digests (the memory store,
/// the replica's batch and pending buffer): a folded multiply per 8 bytes,
/// keyed from [`std::hash::RandomState`] per map (on the web, from
/// `crypto.getRandomValues`: see `table_keys`), so that a peer cannot mine
/// CIDs to collide in one. A digest is already uniform, so this is all the
/// mixing it needs, at a fraction of SipHash's cost.
///
/// The multiply is [`fold_mul`], which wasm32 computes without its 128-bit
/// multiply routine.
#[derive(Clone)]
pub(crate) struct KeyedState {
    k0: u64,
    k1: u64,
}

impl Default for KeyedState {
    fn default() -> Self {
        let (k0, k1) = table_keys();
        KeyedState { k0, k1: k1 | 1 }
    }
}

/// Keys from std's per-process random keys (a fresh `RandomState` each).
fn std_keys() -> (u64, u64) {
    use std::hash::BuildHasher as _;
    let s = std::hash::RandomState::new();
    (s.hash_one(0x6b65_7965_6430u64), s.hash_one(0x6b65_7965_6431u64))
}

/// Fresh keys for one table.
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
fn table_keys() -> (u64, u64) {
    std_keys()
}

/// Fresh keys for one table. On the web, std has no randomness: its
/// `RandomState` keys come from allocation addresses, which a page's peers
/// can predict. So a seed is read once from the browser's
/// `crypto.getRandomValues` (through `getrandom`) and each table's keys are
/// mixed from it and a counter; std's keys only if that call fails.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
fn table_keys() -> (u64, u64) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: OnceLock<(u64, u64)> = OnceLock::new();
    static TABLES: AtomicU64 = AtomicU64::new(0);
    let (a, b) = *SEED.get_or_init(|| {
        let mut bytes = [0u8; 16];
        match getrandom::getrandom(&mut bytes) {
            Ok(()) => (
                u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
                u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes")),
            ),
            Err(_) => std_keys(),
        }
    });
    let n = TABLES.fetch_add(1, Ordering::Relaxed);
    (fold_mul(a ^ n, b ^ 0x6b65_7965_6430), fold_mul(b ^ n, a ^ 0x6b65_7965_6431))
}

impl KeyedState {
    /// The keyed hash of an event's digest: one folded multiply of its first
    /// 16 bytes with the keys. A BLAKE3 digest is uniform, so those bytes
    /// are as good a key as all 32; the keys (random per table) keep a peer
    /// from mining digests that collide in it. The DAG index's table and
    /// the memory store's.
    #[inline]
    pub(crate) fn hash_digest(&self, d: &Digest) -> u64 {
        let w0 = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
        let w1 = u64::from_le_bytes(d[8..16].try_into().expect("8 bytes"));
        fold_mul(w0 ^ self.k0, w1 ^ self.k1)
    }

    /// The keyed hash of a CID by its digest: [`KeyedState::hash_digest`]
    /// for an event CID, else the whole digest through the keyed hasher
    /// (another hash function's digest may be short, or chosen: an
    /// identity multihash is its data).
    #[inline]
    pub(crate) fn hash_cid(&self, cid: &Cid) -> u64 {
        use std::hash::BuildHasher as _;
        match event_digest(cid) {
            Some(d) => self.hash_digest(d),
            None => self.hash_one(cid.hash().digest()),
        }
    }
}

impl std::hash::BuildHasher for KeyedState {
    type Hasher = KeyedHasher;

    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher { acc: self.k0, k: self.k1 }
    }
}

/// See [`KeyedState`].
pub(crate) struct KeyedHasher {
    acc: u64,
    k: u64,
}

impl KeyedHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.acc = fold_mul(self.acc ^ word, self.k);
    }
}

impl std::hash::Hasher for KeyedHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.mix(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 60));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold_mul(self.acc, self.k.rotate_left(32) | 1)
    }
}

/// The 128-bit product of `a` and `b` with its halves xor-ed: the folded
/// multiply of the keyed hashes ([`KeyedState`], the DAG index's).
///
/// On 64-bit targets one widening multiply. On others (wasm32, where `u128`
/// multiplication is a call to a library routine that returns through
/// memory, a fifth of the in-memory store's time per append) the same value
/// from four 32 × 32 → 64-bit products, which wasm's 64-bit integers compute
/// natively (`fold_mul_limbs`).
#[inline]
pub(crate) fn fold_mul(a: u64, b: u64) -> u64 {
    #[cfg(target_pointer_width = "64")]
    {
        let m = u128::from(a) * u128::from(b);
        (m as u64) ^ ((m >> 64) as u64)
    }
    #[cfg(not(target_pointer_width = "64"))]
    {
        fold_mul_limbs(a, b)
    }
}

/// [`fold_mul`] from 32-bit halves: no product or sum below overflows 64 bits.
#[cfg(any(test, not(target_pointer_width = "64")))]
#[inline]
fn fold_mul_limbs(a: u64, b: u64) -> u64 {
    const LOW: u64 = 0xffff_ffff;
    let (a0, a1, b0, b1) = (a & LOW, a >> 32, b & LOW, b >> 32);
    let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    // The carry column: at most 3 (2^32 − 1), below 2^34.
    let mid = (p00 >> 32) + (p01 & LOW) + (p10 & LOW);
    let low = (p00 & LOW) | (mid << 32);
    let high = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
    low ^ high
}

/// A short, readable form of a CID for logs and pictures: the last 8
/// characters of its string form (the part that varies), e.g. `…x3kq2a7e`.
pub fn short_cid(cid: &Cid) -> String {
    let s = cid.to_string();
    let tail = &s[s.len().saturating_sub(8)..];
    format!("…{tail}")
}

/// An IPLD block: bytes and the CID that names them.
///
/// A `Block` built with [`Block::new`] or [`Block::from_bytes`] is known to
/// match its CID; [`Block::new_unchecked`] is for bytes that come from a store
/// this process wrote and trusts. Cloning is cheap (the bytes are shared).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Block {
    cid: Cid,
    bytes: Bytes,
}

impl Block {
    /// Builds a block from bytes that claim to be `cid`, verifying the claim.
    ///
    /// # Errors
    /// [`BlockError`] when the CID is not CIDv1/DAG-CBOR/BLAKE3-256 or the
    /// bytes hash to something else.
    pub fn new(cid: Cid, bytes: impl Into<Bytes>) -> Result<Self, BlockError> {
        let block = Block { cid, bytes: bytes.into() };
        block.verify()?;
        Ok(block)
    }

    /// Hashes `bytes` and names them by the resulting CID.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Block { cid: cid_of(&bytes), bytes }
    }

    /// Pairs a CID with bytes without checking them. Use only for bytes read
    /// back from a store that only ever held verified blocks; everything from
    /// the network goes through [`Block::new`] or [`Block::from_bytes`].
    pub fn new_unchecked(cid: Cid, bytes: impl Into<Bytes>) -> Self {
        Block { cid, bytes: bytes.into() }
    }

    /// Checks that the CID has the accepted shape and that the bytes hash to it.
    ///
    /// # Errors
    /// [`BlockError::UnsupportedVersion`], [`BlockError::UnsupportedCodec`],
    /// [`BlockError::UnsupportedHash`] or [`BlockError::HashMismatch`].
    pub fn verify(&self) -> Result<(), BlockError> {
        check_cid(&self.cid)?;
        // The shape is fixed, so the digests decide (no CID to build).
        let actual = blake3::hash(&self.bytes);
        if actual.as_bytes()[..] != *self.cid.hash().digest() {
            return Err(BlockError::HashMismatch { cid: self.cid, actual: cid_from_digest(actual.as_bytes()) });
        }
        Ok(())
    }

    /// The CID.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    /// The bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The number of bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the block holds no bytes (no valid event does).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Splits into CID and bytes.
    pub fn into_parts(self) -> (Cid, Bytes) {
        (self.cid, self.bytes)
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Block({}, {} bytes)", short_cid(&self.cid), self.bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::{fold_mul, fold_mul_limbs};

    /// wasm32's folded multiply is the 64-bit targets' one, so both hash alike.
    #[test]
    fn prop_fold_mul_limbs_is_the_folded_128_bit_product() {
        fn prop(a: u64, b: u64) -> bool {
            let m = u128::from(a) * u128::from(b);
            let wide = (m as u64) ^ ((m >> 64) as u64);
            fold_mul_limbs(a, b) == wide && fold_mul(a, b) == wide
        }
        quickcheck::QuickCheck::new().tests(10_000).quickcheck(prop as fn(u64, u64) -> bool);
        let edges = [0, 1, 0xffff_ffff, 1 << 32, u64::MAX, u64::MAX - 1, 0x8000_0000_0000_0000];
        for a in edges {
            for b in edges {
                assert!(prop(a, b), "{a:#x} × {b:#x}");
            }
        }
    }
}
