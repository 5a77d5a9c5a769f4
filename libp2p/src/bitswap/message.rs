//! The Bitswap 1.2.0 wire format: protobuf messages, each framed by an
//! unsigned-varint length, and the CID prefix that names a block's CID
//! without its hash.
//!
//! The structs are written by hand for `prost`'s derive (field numbers and
//! types as the spec's `message.proto` gives them), so no `protoc` and no
//! build script are needed.
//!
//! [`decode`] never trusts a count: before `prost` allocates anything, a
//! scan of the message's top-level fields counts the wantlist entries,
//! blocks and presences it would build, and refuses a message with more
//! than the limit. A message of a million minimal entries costs a scan of
//! its bytes, not a million structs.

use bytes::{Buf, Bytes};
use merkle_clock::{BLAKE3, Block, Cid};
use prost::Message as _;

use super::BitswapError;

/// A Bitswap message: a wantlist update, blocks, and block presences.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    /// What the sender wants (or no longer wants).
    #[prost(message, optional, tag = "1")]
    pub wantlist: Option<Wantlist>,
    /// Bitswap 1.0.0 blocks (bytes only, CIDv0 implied). Never sent; a
    /// block here matches no want of ours and is dropped.
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub blocks: Vec<Bytes>,
    /// Blocks, each with the prefix of its CID.
    #[prost(message, repeated, tag = "3")]
    pub payload: Vec<PayloadBlock>,
    /// HAVE / DONT_HAVE answers to want-have and `send_dont_have` entries.
    #[prost(message, repeated, tag = "4")]
    pub block_presences: Vec<BlockPresence>,
    /// Bytes the sender still has queued for us (informational).
    #[prost(int32, tag = "5")]
    pub pending_bytes: i32,
}

/// A wantlist update.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Wantlist {
    /// The entries.
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    /// `true`: this is the sender's whole wantlist (replacing what it sent
    /// before); `false`: an update.
    #[prost(bool, tag = "2")]
    pub full: bool,
}

/// One wantlist entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    /// The CID's bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub block: Vec<u8>,
    /// Higher first (informational here: we answer in arrival order).
    #[prost(int32, tag = "2")]
    pub priority: i32,
    /// Removes the CID from the sender's wants.
    #[prost(bool, tag = "3")]
    pub cancel: bool,
    /// [`WantType::Block`] or [`WantType::Have`].
    #[prost(enumeration = "WantType", tag = "4")]
    pub want_type: i32,
    /// Answer DONT_HAVE when the block is not here.
    #[prost(bool, tag = "5")]
    pub send_dont_have: bool,
}

/// What a wantlist entry asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum WantType {
    /// The block itself.
    Block = 0,
    /// Only whether the peer has it (HAVE / DONT_HAVE).
    Have = 1,
}

/// A block and the prefix of its CID.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PayloadBlock {
    /// CID version, codec, multihash code and digest length, as varints
    /// ([`prefix_of`]).
    #[prost(bytes = "vec", tag = "1")]
    pub prefix: Vec<u8>,
    /// The block's bytes.
    #[prost(bytes = "bytes", tag = "2")]
    pub data: Bytes,
}

/// Whether the sender has a block.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlockPresence {
    /// The CID's bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub cid: Vec<u8>,
    /// [`PresenceType::Have`] or [`PresenceType::DontHave`].
    #[prost(enumeration = "PresenceType", tag = "2")]
    pub r#type: i32,
}

/// A presence's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PresenceType {
    /// The sender has the block.
    Have = 0,
    /// The sender does not have it.
    DontHave = 1,
}

/// The most bytes a CID in a message may take (ours take 36).
const MAX_CID_BYTES: usize = 128;

/// Appends `n` as an unsigned LEB128 varint (the frame's length prefix,
/// the prefix's fields).
pub fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads an unsigned LEB128 varint of at most 10 bytes (and minimal: no
/// trailing zero byte), advancing `buf`.
///
/// # Errors
/// [`BitswapError::Malformed`].
pub fn get_varint(buf: &mut &[u8]) -> Result<u64, BitswapError> {
    let mut n = 0u64;
    for i in 0..10 {
        let Some((&b, rest)) = buf.split_first() else { return Err(BitswapError::Malformed("truncated varint")) };
        *buf = rest;
        if i == 9 && b > 1 {
            return Err(BitswapError::Malformed("varint overflows 64 bits"));
        }
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return Err(BitswapError::Malformed("non-minimal varint"));
            }
            return Ok(n);
        }
    }
    Err(BitswapError::Malformed("varint overflows 64 bits"))
}

/// The CID prefix of a block: version, codec, multihash code and digest
/// length, each a varint.
pub fn prefix_of(cid: &Cid) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    put_varint(&mut out, u64::from(cid.version()));
    put_varint(&mut out, cid.codec());
    put_varint(&mut out, cid.hash().code());
    put_varint(&mut out, u64::from(cid.hash().size()));
    out
}

/// The block a payload entry carries: its CID built from the prefix and
/// the BLAKE3 hash of the bytes, checked by [`Block::new`] (codec, hash,
/// size limit). Only CIDv1 with BLAKE3-256 can name an event.
///
/// # Errors
/// [`BitswapError::Malformed`] for a prefix that does not parse,
/// [`BitswapError::UnsupportedPrefix`] for another version or hash,
/// [`BitswapError::Block`] when the block is refused.
pub fn block_of(payload: &PayloadBlock) -> Result<Block, BitswapError> {
    let mut p = payload.prefix.as_slice();
    let version = get_varint(&mut p)?;
    let codec = get_varint(&mut p)?;
    let code = get_varint(&mut p)?;
    let len = get_varint(&mut p)?;
    if !p.is_empty() {
        return Err(BitswapError::Malformed("trailing bytes after the CID prefix"));
    }
    if version != 1 || code != BLAKE3 || len != 32 {
        return Err(BitswapError::UnsupportedPrefix { version, code, len });
    }
    let digest = blake3::hash(&payload.data);
    let hash = ipld_core::cid::multihash::Multihash::<64>::wrap(BLAKE3, digest.as_bytes())
        .map_err(|_| BitswapError::Malformed("multihash"))?;
    let cid = Cid::new_v1(codec, hash);
    Block::new(cid, payload.data.clone()).map_err(|e| BitswapError::Block(Box::new(e)))
}

/// A CID from a message's bytes: canonical, at most 128 bytes.
///
/// # Errors
/// [`BitswapError::Malformed`].
pub fn cid_from_bytes(bytes: &[u8]) -> Result<Cid, BitswapError> {
    if bytes.len() > MAX_CID_BYTES {
        return Err(BitswapError::Malformed("CID too long"));
    }
    let cid = Cid::try_from(bytes).map_err(|_| BitswapError::Malformed("bad CID"))?;
    if cid.to_bytes() != bytes {
        return Err(BitswapError::Malformed("non-canonical CID"));
    }
    Ok(cid)
}

impl Message {
    /// The message framed for the wire: its length as a varint, then the
    /// protobuf bytes.
    pub fn to_frame(&self) -> Vec<u8> {
        let len = self.encoded_len();
        let mut out = Vec::with_capacity(len + 10);
        put_varint(&mut out, len as u64);
        self.encode(&mut out).expect("a Vec grows as needed");
        out
    }

    /// Whether the message carries nothing.
    pub fn is_empty(&self) -> bool {
        self.wantlist.as_ref().is_none_or(|w| w.entries.is_empty() && !w.full)
            && self.blocks.is_empty()
            && self.payload.is_empty()
            && self.block_presences.is_empty()
    }
}

/// Decodes one message body (without its length prefix), refusing one
/// that would build more than `max_items` wantlist entries, blocks and
/// presences in all, before anything is allocated for them.
///
/// # Errors
/// [`BitswapError::TooManyItems`], [`BitswapError::Malformed`].
pub fn decode(body: Bytes, max_items: usize) -> Result<Message, BitswapError> {
    let items = count_items(&body)?;
    if items > max_items {
        return Err(BitswapError::TooManyItems { found: items, max: max_items });
    }
    Message::decode(body).map_err(|_| BitswapError::Malformed("not a bitswap protobuf message"))
}

/// Counts the repeated items of a message by walking its fields: entries
/// of the wantlist (field 1, its field 1), blocks (2), payload (3) and
/// presences (4).
fn count_items(body: &[u8]) -> Result<usize, BitswapError> {
    let mut items = 0usize;
    let mut rest = body;
    while !rest.is_empty() {
        let (field, value) = next_field(&mut rest)?;
        match (field, value) {
            (1, Some(wantlist)) => {
                let mut w = wantlist;
                while !w.is_empty() {
                    if let (1, _) = next_field(&mut w)? {
                        items += 1;
                    }
                }
            }
            (2..=4, _) => items += 1,
            _ => {}
        }
    }
    Ok(items)
}

/// Reads one protobuf field: its number, and its bytes when it is
/// length-delimited. Skips varints and fixed-width values.
fn next_field<'a>(buf: &mut &'a [u8]) -> Result<(u64, Option<&'a [u8]>), BitswapError> {
    let key = get_varint(buf)?;
    let (field, wire) = (key >> 3, key & 7);
    let fixed = |buf: &mut &'a [u8], n: usize| {
        if buf.len() < n {
            return Err(BitswapError::Malformed("truncated field"));
        }
        buf.advance(n);
        Ok((field, None))
    };
    match wire {
        0 => get_varint(buf).map(|_| (field, None)),
        1 => fixed(buf, 8),
        5 => fixed(buf, 4),
        2 => {
            let len = get_varint(buf)?;
            let len = usize::try_from(len).ok().filter(|&l| l <= buf.len());
            let Some(len) = len else { return Err(BitswapError::Malformed("field longer than the message")) };
            let (value, rest) = buf.split_at(len);
            *buf = rest;
            Ok((field, Some(value)))
        }
        _ => Err(BitswapError::Malformed("unknown wire type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use merkle_clock::Event;

    #[test]
    fn a_message_round_trips_through_its_frame() {
        let block = Event::genesis("bitswap").encode().unwrap();
        let m = Message {
            wantlist: Some(Wantlist {
                entries: vec![Entry {
                    block: block.cid().to_bytes(),
                    want_type: WantType::Have as i32,
                    send_dont_have: true,
                    ..Entry::default()
                }],
                full: false,
            }),
            payload: vec![PayloadBlock { prefix: prefix_of(block.cid()), data: block.bytes().clone() }],
            ..Message::default()
        };
        let frame = m.to_frame();
        let mut f = frame.as_slice();
        let len = get_varint(&mut f).unwrap() as usize;
        assert_eq!(len, f.len());
        let back = decode(Bytes::copy_from_slice(f), 10).unwrap();
        assert_eq!(back, m);
        assert_eq!(block_of(&back.payload[0]).unwrap(), block);
        assert!(matches!(decode(Bytes::copy_from_slice(f), 1), Err(BitswapError::TooManyItems { found: 2, max: 1 })));
    }

    /// A message built from arbitrary parts: entries, legacy blocks,
    /// payload blocks and presences with arbitrary bytes.
    fn message_of(entries: Vec<(Vec<u8>, bool, bool)>, blocks: Vec<Vec<u8>>, presences: Vec<Vec<u8>>) -> Message {
        Message {
            wantlist: (!entries.is_empty()).then(|| Wantlist {
                entries: entries
                    .into_iter()
                    .map(|(block, cancel, have)| Entry {
                        block,
                        priority: 1,
                        cancel,
                        want_type: if have { WantType::Have } else { WantType::Block } as i32,
                        send_dont_have: have,
                    })
                    .collect(),
                full: false,
            }),
            blocks: blocks.iter().map(|b| Bytes::copy_from_slice(b)).collect(),
            payload: blocks.into_iter().map(|b| PayloadBlock { prefix: b.clone(), data: b.into() }).collect(),
            block_presences: presences
                .into_iter()
                .map(|cid| BlockPresence { cid, r#type: PresenceType::DontHave as i32 })
                .collect(),
            pending_bytes: 0,
        }
    }

    quickcheck::quickcheck! {
        /// The scan that enforces the item limit counts exactly what prost
        /// builds, so the limit cannot be slipped past.
        fn prop_the_item_count_is_what_prost_builds(
            entries: Vec<(Vec<u8>, bool, bool)>,
            blocks: Vec<Vec<u8>>,
            presences: Vec<Vec<u8>>
        ) -> bool {
            let m = message_of(entries, blocks, presences);
            let items = m.wantlist.as_ref().map_or(0, |w| w.entries.len())
                + m.blocks.len() + m.payload.len() + m.block_presences.len();
            let body = m.encode_to_vec();
            count_items(&body).ok() == Some(items)
                && decode(body.clone().into(), items).ok().as_ref() == Some(&m)
                && (items == 0 || matches!(decode(body.into(), items - 1), Err(BitswapError::TooManyItems { .. })))
        }

        /// Arbitrary bytes are a message within the limit or a typed error.
        fn prop_arbitrary_bytes_decode_or_fail_without_panicking(bytes: Vec<u8>) -> bool {
            match decode(bytes.into(), 8) {
                Ok(m) => m.wantlist.map_or(0, |w| w.entries.len()) + m.blocks.len() + m.payload.len()
                    + m.block_presences.len() <= 8,
                Err(_) => true,
            }
        }
    }

    #[test]
    fn varints_are_minimal_and_bounded() {
        for n in [0u64, 1, 127, 128, 300, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, n);
            assert_eq!(get_varint(&mut out.as_slice()).unwrap(), n);
        }
        assert!(get_varint(&mut [0x80u8, 0x00].as_slice()).is_err());
        assert!(get_varint(&mut [0xffu8; 11].as_slice()).is_err());
        assert!(get_varint(&mut [0x80u8].as_slice()).is_err());
    }
}
