//! Events: the DAG-CBOR envelope `{height, parents, payload}`, its canonical
//! encoding and its strict decoding.
//!
//! The envelope is written and read by hand (it is three fixed keys); the
//! payload is written by `serde_ipld_dagcbor` and checked for canonical form by
//! the iterative reader in `cbor.rs`, which also bounds its nesting depth.

// Errors name the CID they concern by value (every variant does), so they
// are larger than clippy's default 128 bytes; they are the rare path.
#![allow(clippy::result_large_err)]

use std::cmp::Ordering;
use std::ops::Range;

use ipld_core::cid::Cid;
use ipld_core::ipld::Ipld;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{AuthFields, AuthorKey, MemberOp, Role};
use crate::block::{Block, Digest, cid_from_digest, digest_of};
use crate::cbor::{
    self, CborError, LINK_BYTES, MAJOR_ARRAY, MAJOR_BYTES, MAJOR_MAP, MAJOR_TAG, MAJOR_UINT, Reader, TAG_CID,
};
use crate::error::{BlockError, DecodeError, EncodeError};

/// Limits applied to every block a replica encodes or accepts.
///
/// `#[non_exhaustive]`: start from [`Limits::default()`] and change fields.
///
/// ```
/// let mut limits = merkle_clock::Limits::default();
/// limits.max_block_bytes = 64 * 1024;
/// assert_eq!(limits.max_parents, 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest accepted block, in bytes. Default: 1 MiB (1,048,576).
    pub max_block_bytes: usize,
    /// Most parents one event may name. Default: 1024. A local append takes
    /// at most this many heads as parents; the rest stay heads.
    pub max_parents: usize,
    /// Deepest nesting of lists and maps inside a payload. Default: 64.
    /// Values above [`Limits::MAX_PAYLOAD_DEPTH`] act as that ceiling.
    pub max_payload_depth: usize,
}

impl Limits {
    /// The defaults: 1 MiB blocks, 1024 parents, payload depth 64.
    pub const DEFAULT: Limits = Limits { max_block_bytes: 1 << 20, max_parents: 1024, max_payload_depth: 64 };

    /// For blocks this process stored itself: what was accepted once stays
    /// readable even if the configured limits shrank since.
    pub(crate) const TRUSTED: Limits =
        Limits { max_block_bytes: usize::MAX, max_parents: usize::MAX, max_payload_depth: Self::MAX_PAYLOAD_DEPTH };

    /// The deepest payload nesting any [`Limits`] allows: 127, the most that
    /// `serde_ipld_dagcbor` decodes (its recursion limit). A larger
    /// `max_payload_depth` acts as this value, so that every block the strict
    /// reader accepts can also be decoded into a payload.
    pub const MAX_PAYLOAD_DEPTH: usize = 127;

    /// The payload depth actually enforced: `max_payload_depth`, at most
    /// [`Limits::MAX_PAYLOAD_DEPTH`].
    pub fn payload_depth(&self) -> usize {
        self.max_payload_depth.min(Self::MAX_PAYLOAD_DEPTH)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// One event of a stream: its height, the CIDs of its parents and a payload.
///
/// `P` is any serde type (default: [`Ipld`], any IPLD value). Parents are kept
/// sorted by CID bytes and without duplicates, as the block format requires.
///
/// ```
/// use merkle_clock::Event;
/// let genesis = Event::genesis("my stream").encode()?;
/// assert!(genesis.cid().to_string().starts_with("bafyr4i"));
/// let child = Event::new(1, vec![*genesis.cid()], 42u32).encode()?;
/// let back: Event<u32> = Event::decode(&child)?;
/// assert_eq!(back.height(), 1);
/// assert_eq!(back.parents(), &[*genesis.cid()]);
/// assert_eq!(*back.payload(), 42);
/// # Ok::<(), merkle_clock::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Event<P = Ipld> {
    height: u64,
    parents: Vec<Cid>,
    payload: P,
}

impl<P> Event<P> {
    /// The genesis event: height 0, no parents. Its CID is the stream's identity.
    pub fn genesis(payload: P) -> Self {
        Event { height: 0, parents: Vec::new(), payload }
    }

    /// An event with the given height and parents. Parents are sorted by CID
    /// bytes and deduplicated. The height is checked against the parents'
    /// heights when the event joins a DAG, not here.
    pub fn new(height: u64, mut parents: Vec<Cid>, payload: P) -> Self {
        // Every accepted CID shares one prefix, so Cid's field order is byte order.
        parents.sort_unstable();
        parents.dedup();
        Event { height, parents, payload }
    }

    /// The height: 0 for the genesis, else 1 + the largest parent height.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The parents, ascending by CID bytes.
    pub fn parents(&self) -> &[Cid] {
        &self.parents
    }

    /// The application's payload.
    pub fn payload(&self) -> &P {
        &self.payload
    }

    /// Takes the payload out.
    pub fn into_payload(self) -> P {
        self.payload
    }

    /// Whether this is a genesis event (no parents).
    pub fn is_genesis(&self) -> bool {
        self.parents.is_empty()
    }
}

impl<P: Serialize> Event<P> {
    /// Encodes with the default [`Limits`].
    ///
    /// # Errors
    /// See [`Event::encode_with`].
    pub fn encode(&self) -> Result<Block, EncodeError> {
        self.encode_with(&Limits::DEFAULT)
    }

    /// Encodes into a canonical DAG-CBOR block and hashes it.
    ///
    /// # Errors
    /// [`EncodeError`] when the payload is not representable in DAG-CBOR or
    /// nests too deep, a limit is exceeded, a parent is not an event CID, or
    /// the height is 0 with parents (or above 0 without).
    pub fn encode_with(&self, limits: &Limits) -> Result<Block, EncodeError> {
        let bytes = encode_envelope(self.height, &self.parents, &self.payload, limits)?;
        Ok(Block::from_bytes(bytes))
    }

    /// Encodes and hashes an event given by its parts, without building an
    /// [`Event`] (default [`Limits`]): the bare encode + BLAKE3 cost that the
    /// perf report measures appends against. Parents not sorted and unique
    /// take the [`Event::new`] path.
    ///
    /// # Errors
    /// As [`Event::encode_with`].
    #[doc(hidden)]
    pub fn encode_parts(height: u64, parents: &[Cid], payload: &P) -> Result<Block, EncodeError> {
        if !parents.windows(2).all(|w| w[0] < w[1]) {
            return Event::new(height, parents.to_vec(), payload).encode();
        }
        let bytes = encode_envelope(height, parents, payload, &Limits::DEFAULT)?;
        Ok(Block::from_bytes(bytes))
    }
}

pub(crate) fn encode_envelope<P: Serialize>(
    height: u64,
    parents: &[Cid],
    payload: &P,
    limits: &Limits,
) -> Result<Vec<u8>, EncodeError> {
    // The parents' digests: on the stack for the usual few, no allocation.
    const INLINE: usize = 8;
    let mut inline = [[0u8; 32]; INLINE];
    let mut heap: Vec<Digest> = Vec::new();
    let digest = |parent: &Cid| digest_of(parent).ok_or(EncodeError::UnsupportedParent { parent: *parent });
    let digests: &[Digest] = if parents.len() <= INLINE {
        for (slot, parent) in inline.iter_mut().zip(parents) {
            *slot = digest(parent)?;
        }
        &inline[..parents.len()]
    } else {
        heap.reserve_exact(parents.len());
        for parent in parents {
            heap.push(digest(parent)?);
        }
        &heap
    };
    encode_with_digests(height, digests, payload, limits).map(|(bytes, _)| bytes)
}

/// The envelope's constant parts: the map head with the first key, and the
/// other two keys (canonical order: by length, then bytes).
const MAP_AND_HEIGHT_KEY: [u8; 8] = [0xa3, 0x66, b'h', b'e', b'i', b'g', b'h', b't'];
pub(crate) const HEIGHT_KEY: [u8; 7] = [0x66, b'h', b'e', b'i', b'g', b'h', b't'];
const PARENTS_KEY: [u8; 8] = [0x67, b'p', b'a', b'r', b'e', b'n', b't', b's'];
const PAYLOAD_KEY: [u8; 8] = [0x67, b'p', b'a', b'y', b'l', b'o', b'a', b'd'];
/// Every key an envelope may hold, in canonical order. The first four are
/// for signed streams (see [`crate::auth`]).
const KEYS: [&[u8]; 7] = [b"sig", b"admins", b"author", b"height", b"member", b"parents", b"payload"];

/// Encodes an envelope whose parents are given by digest (sorted, unique).
/// Returns the bytes and where the payload starts in them.
pub(crate) fn encode_with_digests<P: Serialize>(
    height: u64,
    parents: &[Digest],
    payload: &P,
    limits: &Limits,
) -> Result<(Vec<u8>, usize), EncodeError> {
    let mut out = Vec::with_capacity(32 + parents.len() * LINK_BYTES + 160);
    let payload_start = encode_into(&mut out, height, parents, payload, limits)?;
    Ok((out, payload_start))
}

/// How a payload is written into an event: any [`Serialize`] value through
/// `serde_ipld_dagcbor`, or [`EncodedPayload`] bytes copied as they are.
/// Either way [`check_block`] then checks the written payload (canonical,
/// one item, within the depth limit), so both make the same block of the
/// same value.
pub(crate) trait WritePayload {
    /// Appends the payload's DAG-CBOR bytes to `out`.
    fn write_payload(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;
}

impl<P: Serialize> WritePayload for P {
    fn write_payload(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        serde_ipld_dagcbor::to_writer(&mut *out, self).map_err(|e| EncodeError::Payload { message: e.to_string() })
    }
}

/// A payload given as the bytes of one canonical DAG-CBOR item (what a
/// caller that encodes payloads itself has, e.g. the JS package). It goes
/// into the event as it is, with no decode and re-encode; bytes that are not
/// exactly one canonical item within the limits are refused with
/// [`EncodeError::Payload`] or [`EncodeError::TooDeep`], never rewritten.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EncodedPayload<'a>(pub &'a [u8]);

impl WritePayload for EncodedPayload<'_> {
    fn write_payload(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(self.0);
        Ok(())
    }
}

/// [`encode_with_digests`] into a buffer the caller reuses (cleared first).
/// Returns where the payload starts.
pub(crate) fn encode_into<P: WritePayload + ?Sized>(
    out: &mut Vec<u8>,
    height: u64,
    parents: &[Digest],
    payload: &P,
    limits: &Limits,
) -> Result<usize, EncodeError> {
    out.clear();
    check_shape(height, parents, limits)?;
    out.reserve(32 + parents.len() * LINK_BYTES + 160);
    // {"height": h, "parents": [...], "payload": ...} in canonical key order
    out.extend_from_slice(&MAP_AND_HEIGHT_KEY);
    cbor::write_head(out, MAJOR_UINT, height);
    let payload_start = write_parents_and_payload(out, parents, payload)?;
    check_block(out, payload_start, limits)?;
    Ok(payload_start)
}

/// The parent count within the limit, the height rule, parents sorted.
pub(crate) fn check_shape(height: u64, parents: &[Digest], limits: &Limits) -> Result<(), EncodeError> {
    if parents.len() > limits.max_parents {
        return Err(EncodeError::TooManyParents { count: parents.len(), max: limits.max_parents });
    }
    if (height == 0) != parents.is_empty() {
        return Err(EncodeError::InvalidHeight { height, parents: parents.len() });
    }
    debug_assert!(parents.windows(2).all(|w| w[0] < w[1]), "parents must be sorted and unique");
    Ok(())
}

/// Writes the envelope's last two entries, `parents` and `payload`; returns
/// where the payload starts.
pub(crate) fn write_parents_and_payload<P: WritePayload + ?Sized>(
    out: &mut Vec<u8>,
    parents: &[Digest],
    payload: &P,
) -> Result<usize, EncodeError> {
    out.extend_from_slice(&PARENTS_KEY);
    cbor::write_head(out, MAJOR_ARRAY, parents.len() as u64);
    for parent in parents {
        cbor::write_digest_link(out, parent);
    }
    out.extend_from_slice(&PAYLOAD_KEY);
    let payload_start = out.len();
    payload.write_payload(out)?;
    Ok(payload_start)
}

/// A whole encoded block within the size limit, its payload (the last value,
/// from `payload_start`) one canonical DAG-CBOR item within the depth limit
/// and the block's end (an [`EncodedPayload`] is checked here and nowhere
/// else).
pub(crate) fn check_block(block: &[u8], payload_start: usize, limits: &Limits) -> Result<(), EncodeError> {
    if block.len() > limits.max_block_bytes {
        return Err(EncodeError::TooLarge { size: block.len(), max: limits.max_block_bytes });
    }
    let mut reader = Reader::new(&block[payload_start..]);
    let max_depth = limits.payload_depth();
    reader.skip_value(max_depth).map_err(|e| match e {
        CborError::TooDeep { .. } => EncodeError::TooDeep { max: max_depth },
        CborError::Malformed { offset, reason } | CborError::NotCanonical { offset, reason } => {
            EncodeError::Payload { message: format!("{reason} at byte {offset} of the payload") }
        }
    })?;
    if reader.remaining() != 0 {
        return Err(EncodeError::Payload {
            message: format!("{} bytes after the payload's one DAG-CBOR item", reader.remaining()),
        });
    }
    Ok(())
}

impl<P: DeserializeOwned> Event<P> {
    /// Decodes and checks a block with the default [`Limits`].
    ///
    /// # Errors
    /// See [`Event::decode_with`].
    pub fn decode(block: &Block) -> Result<Self, DecodeError> {
        Self::decode_with(block, &Limits::DEFAULT)
    }

    /// Decodes a block into an event, accepting only the canonical form: the
    /// exact three keys, sorted unique parents, the height rule for the
    /// genesis, canonical DAG-CBOR throughout, nothing after the map, and the
    /// limits. The block's CID is trusted to match its bytes (it was checked
    /// when the [`Block`] was built).
    ///
    /// # Errors
    /// A [`DecodeError`] variant naming the rule and the CID.
    pub fn decode_with(block: &Block, limits: &Limits) -> Result<Self, DecodeError> {
        let header = Header::parse(block, limits)?;
        let payload = serde_ipld_dagcbor::from_slice(&block.bytes()[header.payload.clone()])
            .map_err(|e| DecodeError::Payload { cid: *block.cid(), message: e.to_string() })?;
        Ok(Event { height: header.height, parents: header.parents.iter().map(cid_from_digest).collect(), payload })
    }
}

/// The envelope of a decoded event without its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub height: u64,
    pub parents: Parents,
    pub payload: Range<usize>,
    /// The keys of signed streams, when the envelope has any (boxed: an
    /// unsigned event's header stays small).
    pub auth: Option<Box<AuthFields>>,
}

/// An event's parent digests, ascending. Up to two (a chain's one parent, a
/// merge of two heads: almost every event) are held inline, so decoding a
/// header allocates nothing; more go on the heap. Derefs to a slice, and
/// compares as one.
#[derive(Clone)]
pub(crate) enum Parents {
    Inline(u8, [Digest; Parents::INLINE]),
    Heap(Vec<Digest>),
}

impl Parents {
    /// How many parents are held inline, without an allocation.
    pub(crate) const INLINE: usize = 2;

    /// Room for `n` parents: inline when they fit.
    pub(crate) fn with_capacity(n: usize) -> Self {
        if n <= Self::INLINE {
            Parents::Inline(0, [[0; 32]; Self::INLINE])
        } else {
            Parents::Heap(Vec::with_capacity(n))
        }
    }

    pub(crate) fn push(&mut self, digest: Digest) {
        match self {
            Parents::Inline(len, digests) if usize::from(*len) < digests.len() => {
                digests[usize::from(*len)] = digest;
                *len += 1;
            }
            Parents::Inline(_, digests) => {
                let mut v = digests.to_vec();
                v.push(digest);
                *self = Parents::Heap(v);
            }
            Parents::Heap(v) => v.push(digest),
        }
    }
}

impl std::ops::Deref for Parents {
    type Target = [Digest];

    fn deref(&self) -> &[Digest] {
        match self {
            Parents::Inline(len, digests) => &digests[..usize::from(*len)],
            Parents::Heap(v) => v,
        }
    }
}

impl From<&[Digest]> for Parents {
    fn from(digests: &[Digest]) -> Self {
        let mut p = Parents::with_capacity(digests.len());
        for d in digests {
            p.push(*d);
        }
        p
    }
}

impl PartialEq for Parents {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Parents {}

impl<'a> IntoIterator for &'a Parents {
    type Item = &'a Digest;
    type IntoIter = std::slice::Iter<'a, Digest>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl std::fmt::Debug for Parents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Header {
    /// Parses and fully validates a block (payload included) without building the payload.
    pub fn parse(block: &Block, limits: &Limits) -> Result<Header, DecodeError> {
        Self::parse_bytes(block.cid(), block.bytes(), limits)
    }

    /// As [`Header::parse`], for the bytes of the block `cid` wherever they
    /// are (a store's page, say): nothing is copied.
    pub fn parse_bytes(cid: &Cid, bytes: &[u8], limits: &Limits) -> Result<Header, DecodeError> {
        if bytes.len() > limits.max_block_bytes {
            return Err(BlockError::TooLarge { cid: *cid, size: bytes.len(), max: limits.max_block_bytes }.into());
        }
        let mut p = HeaderParser { cid: *cid, r: Reader::new(bytes), limits, max_depth: limits.payload_depth() };
        let entries = p.map_entries()?;
        let mut fields = Fields { entries: u8::try_from(entries).unwrap_or(u8::MAX), ..Fields::default() };
        let mut prev_key: Option<&[u8]> = None;
        for _ in 0..entries {
            let key = p.key(prev_key)?;
            prev_key = Some(key);
            p.field(key, &mut fields)?;
        }
        p.finish(fields)
    }
}

/// The envelope's three fields as they are read.
#[derive(Default)]
struct Fields {
    height: Option<u64>,
    parents: Option<Parents>,
    payload: Option<Range<usize>>,
    sig: Option<[u8; 64]>,
    /// Where the entry after `sig` starts.
    after_sig: usize,
    admins: Option<Vec<AuthorKey>>,
    author: Option<AuthorKey>,
    member: Option<MemberOp>,
    entries: u8,
}

/// Reads an event's envelope: one method per part, each returning the
/// [`DecodeError`] that names the rule broken.
struct HeaderParser<'a> {
    cid: Cid,
    r: Reader<'a>,
    limits: &'a Limits,
    max_depth: usize,
}

impl<'a> HeaderParser<'a> {
    /// A reader error as the event's decode error.
    fn cbor(&self, e: CborError) -> DecodeError {
        let cid = self.cid;
        match e {
            CborError::TooDeep { .. } => DecodeError::TooDeep { cid, max: self.max_depth },
            CborError::Malformed { offset, reason } => DecodeError::Malformed { cid, offset, reason },
            CborError::NotCanonical { offset, reason } => DecodeError::NotCanonical { cid, offset, reason },
        }
    }

    /// The top-level map's head: how many entries it claims.
    fn map_entries(&mut self) -> Result<u64, DecodeError> {
        let (major, _, entries) = self.r.head().map_err(|e| self.cbor(e))?;
        if major != MAJOR_MAP {
            return Err(DecodeError::NotAMap { cid: self.cid });
        }
        if entries > self.r.remaining() as u64 {
            return Err(self.cbor(CborError::malformed(0, "length exceeds the input")));
        }
        Ok(entries)
    }

    /// The next map key, which must be a string that sorts after `prev` in
    /// canonical order (length first, then bytes).
    fn key(&mut self, prev: Option<&[u8]>) -> Result<&'a [u8], DecodeError> {
        let cid = self.cid;
        let at = self.r.pos();
        let key = self.r.key(&KEYS).map_err(|e| self.cbor(e))?.ok_or(DecodeError::Malformed {
            cid,
            offset: at,
            reason: "map keys must be strings",
        })?;
        match prev.map(|prev| (prev.len(), prev).cmp(&(key.len(), key))) {
            None | Some(Ordering::Less) => Ok(key),
            Some(Ordering::Equal) => Err(DecodeError::Malformed { cid, offset: at, reason: "duplicate map key" }),
            Some(Ordering::Greater) => {
                Err(DecodeError::NotCanonical { cid, offset: at, reason: "map keys not in canonical order" })
            }
        }
    }

    /// Reads the value of `key` into `fields`.
    fn field(&mut self, key: &[u8], fields: &mut Fields) -> Result<(), DecodeError> {
        match key {
            b"height" => fields.height = Some(self.height()?),
            b"parents" => fields.parents = Some(self.parents()?),
            b"payload" => fields.payload = Some(self.payload()?),
            b"sig" => {
                fields.sig = Some(self.fixed_bytes("sig", "64 bytes")?);
                fields.after_sig = self.r.pos();
            }
            b"author" => fields.author = Some(AuthorKey::from_bytes(self.fixed_bytes("author", "32 bytes")?)),
            b"admins" => fields.admins = Some(self.admins()?),
            b"member" => fields.member = Some(self.member()?),
            other => {
                // `key` checked its UTF-8: only the known keys skip the check.
                let key = String::from_utf8_lossy(other).into_owned();
                return Err(DecodeError::UnknownKey { cid: self.cid, key });
            }
        }
        Ok(())
    }

    fn height(&mut self) -> Result<u64, DecodeError> {
        let (major, _, h) = self.r.head().map_err(|e| self.cbor(e))?;
        if major != MAJOR_UINT {
            return Err(DecodeError::WrongType { cid: self.cid, key: "height", expected: "an unsigned integer" });
        }
        Ok(h)
    }

    /// The parent list: within the limit, strictly ascending, no duplicates.
    fn parents(&mut self) -> Result<Parents, DecodeError> {
        let cid = self.cid;
        let (major, _, n) = self.r.head().map_err(|e| self.cbor(e))?;
        if major != MAJOR_ARRAY {
            return Err(DecodeError::WrongType { cid, key: "parents", expected: "a list of links" });
        }
        if n > self.limits.max_parents as u64 {
            let count = usize::try_from(n).unwrap_or(usize::MAX);
            return Err(DecodeError::TooManyParents { cid, count, max: self.limits.max_parents });
        }
        // Each link takes at least one byte: refuse counts the input cannot
        // hold before reserving memory for them (limits may be raised).
        if n > self.r.remaining() as u64 {
            return Err(DecodeError::Malformed { cid, offset: self.r.pos(), reason: "length exceeds the input" });
        }
        let mut list = Parents::with_capacity(n as usize);
        for index in 0..n as usize {
            let digest = self.parent_link()?;
            match list.last().map(|last| last.cmp(&digest)) {
                None | Some(Ordering::Less) => list.push(digest),
                Some(Ordering::Equal) => {
                    return Err(DecodeError::DuplicateParent { cid, parent: cid_from_digest(&digest) });
                }
                Some(Ordering::Greater) => return Err(DecodeError::UnsortedParents { cid, index }),
            }
        }
        Ok(list)
    }

    /// One parent link, as a digest. The canonical link to an event CID is
    /// read straight into a digest; anything else the general way, which
    /// names what is wrong.
    fn parent_link(&mut self) -> Result<Digest, DecodeError> {
        if let Some(digest) = self.r.event_link() {
            return Ok(digest);
        }
        let cid = self.cid;
        let (major, _, tag) = self.r.head().map_err(|e| self.cbor(e))?;
        if major != MAJOR_TAG || tag != TAG_CID {
            return Err(DecodeError::WrongType { cid, key: "parents", expected: "a list of links" });
        }
        let parent = self.r.link_body().map_err(|e| self.cbor(e))?;
        digest_of(&parent).ok_or(DecodeError::UnsupportedParent { cid, parent })
    }

    /// A byte string of exactly `N` bytes.
    fn fixed_bytes<const N: usize>(
        &mut self,
        key: &'static str,
        expected: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let wrong = DecodeError::WrongType { cid: self.cid, key, expected };
        let (major, _, len) = self.r.head().map_err(|e| self.cbor(e))?;
        if major != MAJOR_BYTES || len != N as u64 {
            return Err(wrong);
        }
        let raw = self.r.take(len).map_err(|e| self.cbor(e))?;
        raw.try_into().map_err(|_| wrong)
    }

    /// The genesis' `admins`: a non-empty list of 32-byte keys, strictly ascending.
    fn admins(&mut self) -> Result<Vec<AuthorKey>, DecodeError> {
        const EXPECTED: &str = "a non-empty list of 32-byte keys, ascending";
        let cid = self.cid;
        let (major, _, n) = self.r.head().map_err(|e| self.cbor(e))?;
        if major != MAJOR_ARRAY || n == 0 || n > (self.r.remaining() / 34) as u64 {
            return Err(DecodeError::WrongType { cid, key: "admins", expected: EXPECTED });
        }
        let mut keys: Vec<AuthorKey> = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let key = AuthorKey::from_bytes(self.fixed_bytes("admins", EXPECTED)?);
            if keys.last().is_some_and(|last| *last >= key) {
                return Err(DecodeError::WrongType { cid, key: "admins", expected: EXPECTED });
            }
            keys.push(key);
        }
        Ok(keys)
    }

    /// A membership operation: `{"key": 32 bytes, "role": "admin" | "writer" | "revoked"}`.
    fn member(&mut self) -> Result<MemberOp, DecodeError> {
        const EXPECTED: &str = "{key: 32 bytes, role: \"admin\" | \"writer\" | \"revoked\"}";
        let wrong = DecodeError::WrongType { cid: self.cid, key: "member", expected: EXPECTED };
        let (major, _, n) = self.r.head().map_err(|e| self.cbor(e))?;
        if major != MAJOR_MAP || n != 2 {
            return Err(wrong);
        }
        if self.r.key(&[b"key"]).map_err(|e| self.cbor(e))? != Some(b"key".as_slice()) {
            return Err(wrong);
        }
        let key = AuthorKey::from_bytes(self.fixed_bytes("member", EXPECTED)?);
        if self.r.key(&[b"role"]).map_err(|e| self.cbor(e))? != Some(b"role".as_slice()) {
            return Err(wrong);
        }
        match self.r.text().map_err(|e| self.cbor(e))? {
            Some("admin") => Ok(MemberOp::Grant { key, role: Role::Admin }),
            Some("writer") => Ok(MemberOp::Grant { key, role: Role::Writer }),
            Some("revoked") => Ok(MemberOp::Revoke { key }),
            _ => Err(wrong),
        }
    }

    /// Checks the payload (canonical, within the depth limit) and returns
    /// where it lies in the block.
    fn payload(&mut self) -> Result<Range<usize>, DecodeError> {
        let start = self.r.pos();
        self.r.skip_value(self.max_depth).map_err(|e| self.cbor(e))?;
        Ok(start..self.r.pos())
    }

    /// Every field present, nothing after the map, and the height rule for
    /// the genesis (height 0 exactly when there are no parents).
    fn finish(self, fields: Fields) -> Result<Header, DecodeError> {
        let cid = self.cid;
        let height = fields.height.ok_or(DecodeError::MissingKey { cid, key: "height" })?;
        let parents = fields.parents.ok_or(DecodeError::MissingKey { cid, key: "parents" })?;
        let payload = fields.payload.ok_or(DecodeError::MissingKey { cid, key: "payload" })?;
        if self.r.remaining() > 0 {
            return Err(DecodeError::TrailingBytes { cid, extra: self.r.remaining() });
        }
        if height > 0 && parents.is_empty() {
            return Err(DecodeError::NoParents { cid, height });
        }
        if height == 0 && !parents.is_empty() {
            return Err(DecodeError::ParentsAtHeightZero { cid });
        }
        let auth = Self::auth_fields(
            cid,
            height,
            fields.sig,
            fields.after_sig,
            fields.author,
            fields.member,
            fields.admins,
            fields.entries,
        )?;
        Ok(Header { height, parents, payload, auth })
    }

    /// The rules of the signed-stream keys: `sig` and `author` together, a
    /// `member` only when signed, `admins` only in a genesis, no signature on
    /// a genesis.
    #[allow(clippy::too_many_arguments)]
    fn auth_fields(
        cid: Cid,
        height: u64,
        sig: Option<[u8; 64]>,
        after_sig: usize,
        author: Option<AuthorKey>,
        member: Option<MemberOp>,
        admins: Option<Vec<AuthorKey>>,
        entries: u8,
    ) -> Result<Option<Box<AuthFields>>, DecodeError> {
        if sig.is_none() && author.is_none() && member.is_none() && admins.is_none() {
            return Ok(None);
        }
        if author.is_some() && sig.is_none() {
            return Err(DecodeError::MissingKey { cid, key: "sig" });
        }
        if (sig.is_some() || member.is_some()) && author.is_none() {
            return Err(DecodeError::MissingKey { cid, key: "author" });
        }
        if height == 0 && author.is_some() {
            return Err(DecodeError::Malformed { cid, offset: 0, reason: "a genesis is not signed: it names admins" });
        }
        if height > 0 && admins.is_some() {
            return Err(DecodeError::Malformed { cid, offset: 0, reason: "only a genesis names admins" });
        }
        Ok(Some(Box::new(AuthFields { author, sig, unsigned_start: after_sig, entries, member, admins })))
    }
}

impl Block {
    /// Decodes this block as an event with payload type `P` (default limits).
    ///
    /// # Errors
    /// See [`Event::decode_with`].
    pub fn decode<P: DeserializeOwned>(&self) -> Result<Event<P>, DecodeError> {
        Event::decode(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_stay_inline_up_to_two_then_move_to_the_heap_in_order() {
        let digests: Vec<Digest> = (0u8..5).map(|i| [i; 32]).collect();
        for n in 0..=digests.len() {
            let mut p = Parents::with_capacity(n);
            for d in &digests[..n] {
                p.push(*d);
            }
            assert_eq!(&*p, &digests[..n], "{n} parents");
            assert_eq!(matches!(p, Parents::Inline(..)), n <= 2, "{n} parents");
            assert_eq!(Parents::from(&digests[..n]), p);
        }
        // More pushes than reserved still keep every digest, in order.
        let mut p = Parents::with_capacity(1);
        for d in &digests {
            p.push(*d);
        }
        assert_eq!(&*p, &digests[..]);
    }
}
