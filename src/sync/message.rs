//! The sync message, its limits, its errors and its wire format.
//!
//! See [`Message`] for the wire format.
//!
//! Blocks travel without their CIDs: the receiver hashes each one. Decoding
//! checks every claimed length and count against the remaining input and the
//! [`SyncLimits`] before allocating anything, and never recurses.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use ipld_core::cid::Cid;
use thiserror::Error;

use super::bloom::{BloomFilter, SALT_LENGTHS};
use crate::block::digest_of;
use crate::cbor::{self, CborError, MAJOR_ARRAY, MAJOR_BYTES, MAJOR_MAP, MAJOR_TAG, MAJOR_UINT, Reader, TAG_CID};
use crate::store::StoreError;

/// The version of the message format this library writes and reads.
pub const VERSION: u64 = 1;

const FLAG_HELLO: u64 = 1;
const FLAG_MORE: u64 = 2;
/// The smallest encoded link: tag (2) + byte-string head (2) + 0x00 + 36-byte CID.
const LINK_BYTES: usize = 41;
/// How deep an embedded block may nest. Blocks deeper than this travel as
/// byte strings; the replica's own payload limit applies when it ingests them.
const EMBED_MAX_DEPTH: usize = 256;
// Every event is embeddable ([`Message::encode_events`]): its payload nests
// at most this deep, inside the event's map.
const _: () = assert!(crate::event::Limits::MAX_PAYLOAD_DEPTH + 2 < EMBED_MAX_DEPTH);
const NULL: u8 = 0xf6;

/// Bounds on what one sync message may hold. Decoding refuses anything
/// beyond them with [`SyncError::LimitExceeded`] before allocating for it,
/// and [`generate_message`](super::generate_message) never writes a message
/// beyond them (it sends the rest of the blocks in the next one).
///
/// `#[non_exhaustive]`: start from [`SyncLimits::default()`] and change fields.
///
/// ```
/// let mut limits = merkle_clock::sync::SyncLimits::default();
/// limits.max_message_bytes = 1 << 20;
/// assert_eq!(limits.max_blocks, 100_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncLimits {
    /// Largest encoded message, in bytes. Default: 16 MiB.
    pub max_message_bytes: usize,
    /// Most blocks in one message. Default: 100,000.
    pub max_blocks: usize,
    /// Most CIDs asked for in one message. Default: 100,000.
    pub max_wants: usize,
    /// Most heads in one message, and most `since` heads of a filter. Default: 8,192.
    pub max_heads: usize,
    /// Largest filter bit array, in bytes. Default: 8 MiB (a full inventory of
    /// about 9.5 million events at 7 bits each). A sender whose filter would be
    /// larger caps it, which only raises its false-positive rate.
    pub max_filter_bytes: usize,
}

impl Default for SyncLimits {
    fn default() -> Self {
        SyncLimits {
            max_message_bytes: 16 << 20,
            max_blocks: 100_000,
            max_wants: 100_000,
            max_heads: 8192,
            max_filter_bytes: 8 << 20,
        }
    }
}

/// A sync operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The bytes are not a well-formed message: `rule` says which rule they
    /// broke, `offset` where.
    #[error("malformed sync message at byte {offset}: {rule}")]
    Decode {
        /// Where in the input.
        offset: usize,
        /// The rule broken.
        rule: &'static str,
    },
    /// A count or length is beyond [`SyncLimits`].
    #[error("sync message {what} is {found}, beyond the limit of {max}")]
    LimitExceeded {
        /// What was counted.
        what: &'static str,
        /// How many the message claims.
        found: u64,
        /// The limit.
        max: u64,
    },
    /// The message is of a version this library does not speak.
    #[error("unsupported sync message version {version} (this library speaks version {VERSION})")]
    UnsupportedVersion {
        /// The version the message declares.
        version: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SyncError {
    fn decode(offset: usize, rule: &'static str) -> Self {
        SyncError::Decode { offset, rule }
    }

    fn limit(what: &'static str, found: u64, max: usize) -> Self {
        SyncError::LimitExceeded { what, found, max: max as u64 }
    }
}

impl From<CborError> for SyncError {
    fn from(e: CborError) -> Self {
        SyncError::Decode { offset: e.offset(), rule: e.reason() }
    }
}

/// One sync message from a peer: its heads, a Bloom filter of what it holds,
/// what it wants, and blocks.
///
/// Made by [`generate_message`](super::generate_message) and taken in by
/// [`receive_message`](super::receive_message); [`Message::encode`] and
/// [`Message::decode`] carry it over any transport.
///
/// # Wire format (version 1)
///
/// A message is one DAG-CBOR list of eight items, the version first:
///
/// ```text
/// [ 1,                      version (a message of another version is refused as such)
///   flags,                  1 = hello (the first message of the sender's session)
///                           2 = more  (blocks were held back by a limit; more follow)
///   seq,                    the sender's message number in its session, from 1
///   ack,                    the seq of the last message the sender had received (0: none)
///   [heads…],               the sender's heads as links; [] = unchanged since its previous message
///   [want…],                links to events the sender asks for
///   null | [ [since…],      the heads the filter counts from (the sender holds their history)
///            hashes,        1..=8
///            count,         elements inserted
///            salt,          bytes, 16 or 32
///            bits ],        bytes, the bit array
///   [block…],               each block embedded as itself (its exact DAG-CBOR bytes, so no
///                           framing is paid per block), or as a byte string holding its
///                           bytes when they are not one canonical DAG-CBOR map (the
///                           session driver also sends a part that says more follow so,
///                           which its receiver need not parse to split); a decoder
///                           takes either form
///   [pruned…] ]             optional, only when not empty: links to events the receiver
///                           asked for that the sender holds only pruned (no bytes)
/// ```
///
/// The ninth item came with pruning ([`Replica::prune`](crate::Replica::prune)):
/// a message without it is the eight-item list as before, so it costs
/// nothing until a peer asks a pruned replica for a pruned block. A decoder
/// from before it refuses a nine-item message (a decode error: the session
/// restarts), which only a want for a pruned block can cause.
///
/// The `ack` is the highest `seq` received. Blocks travel without their CIDs:
/// the receiver hashes each one, which saves 36 bytes per block, and an
/// embedded block costs no framing at all, so a message of blocks is barely
/// larger than the blocks.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// The first message of the sender's session: the receiver, if it was in
    /// the middle of a session with the sender, starts a new one.
    pub hello: bool,
    /// The sender held blocks back to stay within its limits; more follow.
    pub more: bool,
    /// The sender's message number in its session, from 1.
    pub seq: u64,
    /// The `seq` of the last message the sender had received from the
    /// receiver when it made this one (0: none yet).
    pub ack: u64,
    /// The sender's heads, or empty when they did not change since its
    /// previous message (every replica has at least one head, so empty is
    /// not a valid set of heads).
    pub heads: Vec<Cid>,
    /// A filter of the events the sender holds beyond `since`.
    pub filter: Option<BloomFilter>,
    /// The heads the filter counts from: the sender holds their whole history
    /// and the filter holds (probably) every event it has beyond them. Only
    /// meaningful with a filter, and not encoded without one.
    pub since: Vec<Cid>,
    /// Events the sender asks for.
    pub want: Vec<Cid>,
    /// Event blocks, as bytes only: the receiver hashes each one to its CID.
    pub blocks: Vec<Bytes>,
    /// Events the receiver asked for that the sender holds only pruned: it
    /// has their skeleton, not their bytes, and will not send them. Ask
    /// another peer.
    pub pruned: Vec<Cid>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shorts = |cids: &[Cid]| cids.iter().map(crate::block::short_cid).collect::<Vec<_>>();
        let mut d = f.debug_struct("Message");
        d.field("seq", &self.seq).field("ack", &self.ack);
        if self.hello {
            d.field("hello", &true);
        }
        if self.more {
            d.field("more", &true);
        }
        d.field("heads", &shorts(&self.heads));
        if let Some(filter) = &self.filter {
            d.field("filter", filter).field("since", &shorts(&self.since));
        }
        if !self.pruned.is_empty() {
            d.field("pruned", &shorts(&self.pruned));
        }
        d.field("want", &self.want.len())
            .field("blocks", &self.blocks.len())
            .field("block_bytes", &self.blocks.iter().map(Bytes::len).sum::<usize>())
            .finish()
    }
}

impl Message {
    /// Encodes the message (see [`Message`] for the layout).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(embeddable)
    }

    /// [`Message::encode`] of blocks that are events of a replica's DAG:
    /// each joined it as one canonical DAG-CBOR map within the payload
    /// depth limit (checked on ingest, or written so by an append), so it
    /// is embedded without being parsed again. A message that says more
    /// follow (a part of a long reply: a catch-up's are 16 MiB of blocks)
    /// carries them as byte strings instead, 3 bytes more a block (about
    /// 1%): the receiver then finds each block's end from its length,
    /// where an embedded one must be parsed to be found, and parses it
    /// once, when it ingests it.
    pub(crate) fn encode_events(&self) -> Vec<u8> {
        let more = self.more;
        self.encode_with(|b| !more && b.first().is_some_and(|b| b >> 5 == MAJOR_MAP))
    }

    fn encode_with(&self, embed: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let block_bytes: usize = self.blocks.iter().map(|b| b.len() + 5).sum();
        let filter_bytes = self.filter.as_ref().map_or(1, |f| f.bits().len() + 64 + LINK_BYTES * self.since.len());
        let links = LINK_BYTES * (self.heads.len() + self.want.len() + self.pruned.len());
        let mut out = Vec::with_capacity(32 + links + filter_bytes + block_bytes);
        cbor::write_head(&mut out, MAJOR_ARRAY, if self.pruned.is_empty() { 8 } else { 9 });
        cbor::write_head(&mut out, MAJOR_UINT, VERSION);
        let flags = if self.hello { FLAG_HELLO } else { 0 } | if self.more { FLAG_MORE } else { 0 };
        cbor::write_head(&mut out, MAJOR_UINT, flags);
        cbor::write_head(&mut out, MAJOR_UINT, self.seq);
        cbor::write_head(&mut out, MAJOR_UINT, self.ack);
        write_links(&mut out, &self.heads);
        write_links(&mut out, &self.want);
        match &self.filter {
            None => out.push(NULL),
            Some(f) => {
                cbor::write_head(&mut out, MAJOR_ARRAY, 5);
                write_links(&mut out, &self.since);
                cbor::write_head(&mut out, MAJOR_UINT, u64::from(f.hashes()));
                cbor::write_head(&mut out, MAJOR_UINT, f.count());
                cbor::write_head(&mut out, MAJOR_BYTES, f.salt().len() as u64);
                out.extend_from_slice(f.salt());
                cbor::write_head(&mut out, MAJOR_BYTES, f.bits().len() as u64);
                out.extend_from_slice(f.bits());
            }
        }
        cbor::write_head(&mut out, MAJOR_ARRAY, self.blocks.len() as u64);
        for block in &self.blocks {
            if embed(block) {
                out.extend_from_slice(block);
            } else {
                cbor::write_head(&mut out, MAJOR_BYTES, block.len() as u64);
                out.extend_from_slice(block);
            }
        }
        if !self.pruned.is_empty() {
            write_links(&mut out, &self.pruned);
        }
        out
    }

    /// Decodes a message, refusing anything beyond `limits`.
    ///
    /// # Errors
    /// [`SyncError::LimitExceeded`] when the input or a count in it is beyond
    /// `limits`; [`SyncError::UnsupportedVersion`] for another version;
    /// [`SyncError::Decode`] (the rule and the offset) for anything else.
    pub fn decode(bytes: &[u8], limits: &SyncLimits) -> Result<Message, SyncError> {
        Self::decode_with(bytes, limits, |at| Bytes::copy_from_slice(&bytes[at]))
    }

    /// [`Message::decode`] of a message held in [`Bytes`] (a transport's
    /// frame): its blocks are slices of `bytes`, not copies, so they keep
    /// `bytes` alive while any of them is held. [`Sessions::receive_shared`]
    /// copies them instead when most of the message is blocks already held,
    /// so that a few new blocks never keep a large message alive.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use merkle_clock::sync::{Message, SyncLimits};
    /// use merkle_clock::Event;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let event = Event::genesis("shared").encode()?;
    /// let mut m = Message::default();
    /// m.blocks = vec![event.bytes().clone()];
    /// let frame = Bytes::from(m.encode());
    /// let back = Message::decode_shared(&frame, &SyncLimits::default())?;
    /// assert_eq!(back, m);
    /// let at = back.blocks[0].as_ptr() as usize - frame.as_ptr() as usize;
    /// assert!(at < frame.len(), "a slice of the frame");
    /// # Ok(()) }
    /// ```
    ///
    /// [`Sessions::receive_shared`]: super::Sessions::receive_shared
    ///
    /// # Errors
    /// As [`Message::decode`].
    pub fn decode_shared(bytes: &Bytes, limits: &SyncLimits) -> Result<Message, SyncError> {
        Self::decode_with(bytes, limits, |at| bytes.slice(at))
    }

    /// Decodes `bytes`, making each block's bytes from its range in them.
    fn decode_with(
        bytes: &[u8],
        limits: &SyncLimits,
        block: impl Fn(Range<usize>) -> Bytes,
    ) -> Result<Message, SyncError> {
        if bytes.len() > limits.max_message_bytes {
            return Err(SyncError::limit("size in bytes", bytes.len() as u64, limits.max_message_bytes));
        }
        let mut r = Reader::new(bytes);
        let (major, _, fields) = r.head()?;
        if major != MAJOR_ARRAY || fields == 0 {
            return Err(SyncError::decode(0, "a sync message is a non-empty list"));
        }
        let version = read_uint(&mut r, "the version must be an unsigned integer")?;
        if version != VERSION {
            return Err(SyncError::UnsupportedVersion { version });
        }
        if fields != 8 && fields != 9 {
            return Err(SyncError::decode(0, "a version 1 message is a list of 8 items (9 with pruned events)"));
        }
        let at = r.pos();
        let flags = read_uint(&mut r, "flags must be an unsigned integer")?;
        if flags & !(FLAG_HELLO | FLAG_MORE) != 0 {
            return Err(SyncError::decode(at, "unknown flags"));
        }
        let seq = read_uint(&mut r, "seq must be an unsigned integer")?;
        let ack = read_uint(&mut r, "ack must be an unsigned integer")?;
        let heads = read_links(&mut r, limits.max_heads, "heads")?;
        let want = read_links(&mut r, limits.max_wants, "wants")?;
        let (filter, since) = read_filter(&mut r, bytes, limits)?;
        let blocks = read_blocks(&mut r, bytes, limits, block)?;
        let pruned = if fields == 9 { read_links(&mut r, limits.max_wants, "pruned events")? } else { Vec::new() };
        if fields == 9 && pruned.is_empty() {
            return Err(SyncError::decode(r.pos(), "an empty pruned list is left out, not sent"));
        }
        if r.remaining() > 0 {
            return Err(SyncError::decode(r.pos(), "trailing bytes after the message"));
        }
        Ok(Message {
            hello: flags & FLAG_HELLO != 0,
            more: flags & FLAG_MORE != 0,
            seq,
            ack,
            heads,
            filter,
            since,
            want,
            blocks,
            pruned,
        })
    }

    /// Checks the counts of a message built in memory against `limits`.
    pub(crate) fn check(&self, limits: &SyncLimits) -> Result<(), SyncError> {
        let checks = [
            ("heads", self.heads.len(), limits.max_heads),
            ("filter since heads", self.since.len(), limits.max_heads),
            ("wants", self.want.len(), limits.max_wants),
            ("pruned events", self.pruned.len(), limits.max_wants),
            ("blocks", self.blocks.len(), limits.max_blocks),
            ("filter bytes", self.filter.as_ref().map_or(0, |f| f.bits().len()), limits.max_filter_bytes),
        ];
        for (what, found, max) in checks {
            if found > max {
                return Err(SyncError::limit(what, found as u64, max));
            }
        }
        Ok(())
    }

    /// Whether the encoded message `bytes` says more blocks follow (the
    /// `more` flag), read from its first three items only: a receiver may
    /// answer such a part before taking it in, so that the sender makes the
    /// next one meanwhile. Bytes that are not a message say no.
    ///
    /// ```
    /// use merkle_clock::sync::Message;
    /// let mut part = Message::default();
    /// part.more = true;
    /// assert!(Message::says_more(&part.encode()));
    /// assert!(!Message::says_more(&Message::default().encode()));
    /// assert!(!Message::says_more(b"noise"));
    /// ```
    pub fn says_more(bytes: &[u8]) -> bool {
        let mut r = Reader::new(bytes);
        matches!(r.head(), Ok((MAJOR_ARRAY, _, 1..)))
            && matches!(r.head(), Ok((MAJOR_UINT, _, VERSION)))
            && matches!(r.head(), Ok((MAJOR_UINT, _, flags)) if flags & FLAG_MORE != 0)
    }
}

/// Whether a block can travel embedded: exactly one canonical DAG-CBOR map.
fn embeddable(block: &[u8]) -> bool {
    if block.first().is_none_or(|b| b >> 5 != MAJOR_MAP) {
        return false;
    }
    let mut r = Reader::new(block);
    r.skip_value(EMBED_MAX_DEPTH).is_ok() && r.remaining() == 0
}

/// The most bytes a block of `len` bytes takes in an encoded message: its
/// bytes and, when it travels as a byte string, that string's head.
pub(crate) fn framed_len(len: usize) -> usize {
    let head = match len {
        0..24 => 1,
        24..256 => 2,
        256..65536 => 3,
        _ if len as u64 <= u64::from(u32::MAX) => 5,
        _ => 9,
    };
    len + head
}

fn write_links(out: &mut Vec<u8>, cids: &[Cid]) {
    cbor::write_head(out, MAJOR_ARRAY, cids.len() as u64);
    for cid in cids {
        cbor::write_link(out, cid);
    }
}

fn read_uint(r: &mut Reader<'_>, rule: &'static str) -> Result<u64, SyncError> {
    let at = r.pos();
    match r.head()? {
        (MAJOR_UINT, _, v) => Ok(v),
        _ => Err(SyncError::decode(at, rule)),
    }
}

/// Reads a list head, checking the count against a limit and against what
/// the input can hold (each item needs at least `min_item` bytes).
fn read_list_head(
    r: &mut Reader<'_>,
    max: usize,
    min_item: usize,
    what: &'static str,
    rule: &'static str,
) -> Result<usize, SyncError> {
    let at = r.pos();
    let (major, _, n) = r.head()?;
    if major != MAJOR_ARRAY {
        return Err(SyncError::decode(at, rule));
    }
    if n > max as u64 {
        return Err(SyncError::limit(what, n, max));
    }
    if n.saturating_mul(min_item as u64) > r.remaining() as u64 {
        return Err(SyncError::decode(at, "length exceeds the input"));
    }
    Ok(n as usize)
}

fn read_links(r: &mut Reader<'_>, max: usize, what: &'static str) -> Result<Vec<Cid>, SyncError> {
    let n = read_list_head(r, max, LINK_BYTES, what, "expected a list of links")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let at = r.pos();
        let (major, _, tag) = r.head()?;
        if major != MAJOR_TAG || tag != TAG_CID {
            return Err(SyncError::decode(at, "expected a link (tag 42)"));
        }
        let cid = r.link_body()?;
        if digest_of(&cid).is_none() {
            return Err(SyncError::decode(at, "a link is not an event CID (CIDv1, dag-cbor, blake3-256)"));
        }
        out.push(cid);
    }
    Ok(out)
}

fn read_bytes<'a>(r: &mut Reader<'a>, rule: &'static str) -> Result<(usize, &'a [u8]), SyncError> {
    let at = r.pos();
    let (major, _, len) = r.head()?;
    if major != MAJOR_BYTES {
        return Err(SyncError::decode(at, rule));
    }
    Ok((at, r.take(len)?))
}

fn read_filter(
    r: &mut Reader<'_>,
    input: &[u8],
    limits: &SyncLimits,
) -> Result<(Option<BloomFilter>, Vec<Cid>), SyncError> {
    let at = r.pos();
    if input.get(at) == Some(&NULL) {
        r.take(1)?;
        return Ok((None, Vec::new()));
    }
    let (major, _, n) = r.head()?;
    if major != MAJOR_ARRAY || n != 5 {
        return Err(SyncError::decode(at, "a filter is null or a list of 5 items"));
    }
    let since = read_links(r, limits.max_heads, "filter since heads")?;
    let hashes_at = r.pos();
    let hashes = read_uint(r, "filter hashes must be an unsigned integer")?;
    let count = read_uint(r, "filter count must be an unsigned integer")?;
    let (salt_at, salt) = read_bytes(r, "a filter salt must be bytes")?;
    if !SALT_LENGTHS.contains(&salt.len()) {
        return Err(SyncError::decode(salt_at, "a filter salt must be 16 or 32 bytes"));
    }
    let bits_at = r.pos();
    let (major, _, len) = r.head()?;
    if major != MAJOR_BYTES {
        return Err(SyncError::decode(bits_at, "filter bits must be bytes"));
    }
    if len > limits.max_filter_bytes as u64 {
        return Err(SyncError::limit("filter bytes", len, limits.max_filter_bytes));
    }
    let bits = r.take(len)?.to_vec();
    let hashes = u8::try_from(hashes).map_err(|_| SyncError::decode(hashes_at, "a filter must use 1 to 8 hashes"))?;
    let filter =
        BloomFilter::from_parts(bits, hashes, salt, count).map_err(|rule| SyncError::decode(hashes_at, rule))?;
    Ok((Some(filter), since))
}

fn read_blocks(
    r: &mut Reader<'_>,
    input: &[u8],
    limits: &SyncLimits,
    block: impl Fn(Range<usize>) -> Bytes,
) -> Result<Vec<Bytes>, SyncError> {
    let n = read_list_head(r, limits.max_blocks, 1, "blocks", "blocks must be a list")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let at = r.pos();
        match input.get(at).map(|b| b >> 5) {
            Some(MAJOR_MAP) => {
                r.skip_value(EMBED_MAX_DEPTH)?;
                out.push(block(at..r.pos()));
            }
            Some(MAJOR_BYTES) => {
                let (_, raw) = read_bytes(r, "a block must be a map or bytes")?;
                let end = r.pos();
                out.push(block(end - raw.len()..end));
            }
            _ => return Err(SyncError::decode(at, "a block must be a map or bytes")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;

    fn sample() -> Message {
        let g = Event::genesis("m").encode().unwrap();
        let a = Event::new(1, vec![*g.cid()], "a").encode().unwrap();
        let mut filter = BloomFilter::new(&[9u8; 16], 3, 10).unwrap();
        filter.insert(a.cid());
        Message {
            hello: true,
            more: false,
            seq: 1,
            ack: 0,
            heads: vec![*a.cid()],
            filter: Some(filter),
            since: vec![*g.cid()],
            want: vec![*g.cid()],
            blocks: vec![a.bytes().clone(), Bytes::from_static(b"not cbor"), g.bytes().clone()],
            pruned: Vec::new(),
        }
    }

    /// Pruned events travel as a ninth item, only when there are some: a
    /// message without them is byte for byte the eight-item one.
    #[test]
    fn pruned_events_travel_as_a_ninth_item() {
        let mut m = sample();
        let eight = m.encode();
        assert_eq!(eight[0], 0x88);
        m.pruned = m.since.clone();
        let nine = m.encode();
        assert_eq!(nine[0], 0x89);
        assert_eq!(nine[1..eight.len()], eight[1..]);
        assert_eq!(Message::decode(&nine, &SyncLimits::default()).unwrap(), m);
        for cut in eight.len()..nine.len() {
            assert!(matches!(Message::decode(&nine[..cut], &SyncLimits::default()), Err(SyncError::Decode { .. })));
        }
        // An empty ninth item is not how an empty list is sent.
        let mut empty_ninth = eight.clone();
        empty_ninth[0] = 0x89;
        empty_ninth.push(0x80);
        assert!(matches!(Message::decode(&empty_ninth, &SyncLimits::default()), Err(SyncError::Decode { .. })));
        let limits = SyncLimits { max_wants: 0, ..SyncLimits::default() };
        assert!(matches!(Message::decode(&nine, &limits), Err(SyncError::LimitExceeded { .. })));
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let bytes = m.encode();
        assert_eq!(bytes[1], 1, "the version comes first");
        let back = Message::decode(&bytes, &SyncLimits::default()).unwrap();
        assert_eq!(back, m);
        let empty = Message::default();
        assert_eq!(Message::decode(&empty.encode(), &SyncLimits::default()).unwrap(), empty);
    }

    #[test]
    fn embedded_blocks_cost_no_framing() {
        let m = sample();
        let mut plain = m.clone();
        plain.blocks = vec![m.blocks[0].clone()];
        let mut none = m.clone();
        none.blocks.clear();
        assert_eq!(plain.encode().len(), none.encode().len() + m.blocks[0].len());
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(matches!(Message::decode(&bytes[..cut], &SyncLimits::default()), Err(SyncError::Decode { .. })));
        }
    }

    #[test]
    fn limits_and_versions() {
        let bytes = sample().encode();
        let small = SyncLimits { max_blocks: 2, ..SyncLimits::default() };
        assert!(matches!(Message::decode(&bytes, &small), Err(SyncError::LimitExceeded { what: "blocks", .. })));
        let small = SyncLimits { max_message_bytes: 10, ..SyncLimits::default() };
        assert!(matches!(Message::decode(&bytes, &small), Err(SyncError::LimitExceeded { .. })));
        let mut v2 = bytes.clone();
        v2[1] = 2;
        assert!(matches!(
            Message::decode(&v2, &SyncLimits::default()),
            Err(SyncError::UnsupportedVersion { version: 2 })
        ));
    }
}
