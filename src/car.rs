//! CAR v1 import and export: a small streaming reader and writer that verify
//! every block.
//!
//! A [CAR v1](https://ipld.io/specs/transport/car/carv1/) file is a header
//! followed by sections, each prefixed by its length as an unsigned varint:
//!
//! ```text
//! varint(len) | DAG-CBOR {roots: [CID, ...], version: 1}
//! varint(len) | CID bytes | block bytes        (one section per block)
//! ...
//! ```
//!
//! [`CarWriter`] writes that format; [`CarReader`] reads it one section at a
//! time and checks, before it hands out a block:
//!
//! - every length against a [`CarLimits`] bound *before* allocating for it, so
//!   a file that claims a 2^62-byte section costs nothing;
//! - that every varint is well formed (at most 9 bytes, minimally encoded, as
//!   the multiformats varint spec requires);
//! - that the header is a map of exactly `roots` (a list of CID links) and
//!   `version` (the integer 1), with definite lengths and minimal integers
//!   (the keys may come in either order; any other key is refused); a CAR v2 file (whose pragma reads as `{version: 2}`) is refused with
//!   [`CarError::UnsupportedVersion`];
//! - that each section starts with a valid CID, and that the block is a
//!   [`Block`] this library accepts: CIDv1, DAG-CBOR, BLAKE3-256, bytes that
//!   hash to the CID, at most [`CarLimits::max_block_bytes`] long
//!   ([`Block::new`] plus a size check; failures are [`CarError::Block`]).
//!
//! Write a stream's blocks in its total order ([`order`](crate::order)):
//! every parent then comes before its children, so a reader can add each event
//! as it arrives.
//!
//! The reader does not decode blocks as events: that is the job of
//! [`BlockSet`](crate::BlockSet), [`Event::decode`](crate::Event::decode) or
//! a replica. Roots may be any CIDs. Duplicate blocks are returned as they
//! appear (the format allows them).
//!
//! No input makes the reader panic; every failure is a [`CarError`] and ends
//! the stream (the iterator yields nothing after an error). The reader reads
//! varints a byte at a time, so wrap a file in a [`std::io::BufReader`]; the
//! writer writes several small pieces per block, so wrap a file in a
//! [`std::io::BufWriter`].
//!
//! ```
//! use merkle_clock::car::{CarLimits, CarReader, write_car};
//! use merkle_clock::{BlockSet, Event, heads};
//!
//! let genesis = Event::genesis("a stream").encode()?;
//! let a = Event::new(1, vec![*genesis.cid()], "from a").encode()?;
//! let b = Event::new(1, vec![*genesis.cid()], "from b").encode()?;
//! let blocks = [genesis, a, b];
//! let roots = heads(&BlockSet::from_blocks(blocks.iter().cloned())?);
//!
//! // Export: roots = heads, then every block.
//! let bytes: Vec<u8> = write_car(Vec::new(), &roots, &blocks)?;
//!
//! // Import, streaming: every block is verified as it is read.
//! let mut reader = CarReader::new(bytes.as_slice(), CarLimits::default())?;
//! assert_eq!(reader.roots(), roots.as_slice());
//! let mut read = Vec::new();
//! while let Some(block) = reader.next_block()? {
//!     read.push(block);
//! }
//! assert_eq!(read, blocks);
//!
//! // Or all at once: nothing is returned unless every block verified.
//! let (roots_back, blocks_back) = merkle_clock::car::read_car(bytes.as_slice(), CarLimits::default())?;
//! assert_eq!((roots_back, blocks_back), (roots, blocks.to_vec()));
//! # Ok::<(), merkle_clock::Error>(())
//! ```

// `CarError::Block` holds a `BlockError`, which names two CIDs (~200 bytes).
// Errors end a read, so their size costs a copy per call, not per byte; the
// crate's other error types (which also carry CIDs) are in the same position.
#![allow(clippy::result_large_err, reason = "CarError wraps BlockError, which carries two CIDs")]

use std::borrow::Borrow;
use std::fmt;
use std::io::{self, Read, Write};

use bytes::Bytes;
use ipld_core::cid::Cid;
use thiserror::Error;

use crate::block::Block;
use crate::cbor::{self, CborError, MAJOR_ARRAY, MAJOR_MAP, MAJOR_TAG, MAJOR_UINT, Reader, TAG_CID};
use crate::error::BlockError;
use crate::event::Limits;

/// The longest CID the reader will look for at the start of a section: four
/// varints of at most 9 bytes (version, codec, hash code, digest size) and a
/// digest of at most 64 bytes, the most the `cid` crate represents.
pub const MAX_CID_BYTES: usize = 4 * 9 + 64;

/// The longest unsigned varint the multiformats spec allows (63 bits of value).
const MAX_VARINT_BYTES: usize = 9;

/// Bounds a [`CarReader`] enforces before it allocates or reads.
///
/// `#[non_exhaustive]`: start from [`CarLimits::default()`] and change fields.
///
/// ```
/// let mut limits = merkle_clock::car::CarLimits::default();
/// limits.max_blocks = 1000;
/// assert_eq!(limits.max_header_bytes, 64 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CarLimits {
    /// Largest header (the DAG-CBOR map, without its length varint), in
    /// bytes. Default: 64 KiB (65,536), room for about 1,500 event roots.
    pub max_header_bytes: usize,
    /// Largest block, in bytes, without its CID. A section may be at most
    /// this plus [`MAX_CID_BYTES`] long. Default: 1 MiB
    /// ([`Limits::DEFAULT`]`.max_block_bytes`, the largest event a replica accepts).
    pub max_block_bytes: usize,
    /// Most blocks in one CAR. Default: 10,000,000.
    pub max_blocks: u64,
    /// Largest CAR, in bytes, counting the header and every section with its
    /// length varint. Default: 4 GiB (4,294,967,296).
    pub max_total_bytes: u64,
}

impl CarLimits {
    /// The defaults: 64 KiB header, 1 MiB blocks, 10,000,000 blocks, 4 GiB in total.
    pub const DEFAULT: CarLimits = CarLimits {
        max_header_bytes: 64 * 1024,
        max_block_bytes: Limits::DEFAULT.max_block_bytes,
        max_blocks: 10_000_000,
        max_total_bytes: 4 << 30,
    };
}

impl Default for CarLimits {
    fn default() -> Self {
        CarLimits::DEFAULT
    }
}

/// Why a CAR could not be read or written.
///
/// Every `offset` is a byte position from the start of the CAR.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CarError {
    /// The underlying reader or writer failed.
    #[error("CAR I/O error: {0}")]
    Io(#[from] io::Error),
    /// The header's length varint claims more than [`CarLimits::max_header_bytes`].
    #[error("CAR header of {claimed} bytes exceeds the limit of {limit}")]
    HeaderTooLarge {
        /// The length the varint claims.
        claimed: u64,
        /// The limit.
        limit: usize,
    },
    /// The header is missing, truncated or not `{roots: [CID...], version: 1}`.
    #[error("bad CAR header at byte {offset}: {reason}")]
    BadHeader {
        /// Where the problem was found.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The header names a version other than 1 (CAR v2 files read as version 2).
    #[error("unsupported CAR version {version} (only CAR v1)")]
    UnsupportedVersion {
        /// The version in the header.
        version: u64,
    },
    /// A length prefix is not a valid unsigned varint.
    #[error("bad varint at byte {offset}: {reason}")]
    BadVarint {
        /// Where the varint starts.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A section's length exceeds [`CarLimits::max_block_bytes`] + [`MAX_CID_BYTES`].
    #[error("CAR section at byte {offset} claims {claimed} bytes, more than the limit of {limit}")]
    SectionTooLarge {
        /// Where the section's length varint starts.
        offset: u64,
        /// The length the varint claims.
        claimed: u64,
        /// The limit.
        limit: u64,
    },
    /// The input ends inside a section.
    #[error("CAR section at byte {offset} claims {claimed} bytes but only {available} follow")]
    TruncatedSection {
        /// Where the section's length varint starts.
        offset: u64,
        /// The length the varint claims.
        claimed: u64,
        /// The bytes that were there.
        available: u64,
    },
    /// A section does not start with a valid CID (or is empty).
    #[error("CAR section at byte {offset} does not start with a valid CID: {reason}")]
    InvalidCid {
        /// Where the section's length varint starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A block failed verification: unsupported CID, hash mismatch, too large.
    #[error("CAR block rejected: {0}")]
    Block(#[from] BlockError),
    /// More blocks than [`CarLimits::max_blocks`].
    #[error("CAR holds more than {limit} blocks")]
    TooManyBlocks {
        /// The limit.
        limit: u64,
    },
    /// The CAR is longer than [`CarLimits::max_total_bytes`].
    #[error("CAR is longer than the limit of {limit} bytes")]
    TooManyBytes {
        /// The limit.
        limit: u64,
    },
}

// ---------------------------------------------------------------- varints

/// Appends `v` as an unsigned LEB128 varint.
fn encode_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads one byte, retrying on `Interrupted`. `None` at the end of the input.
fn read_byte<R: Read>(r: &mut R) -> io::Result<Option<u8>> {
    let mut b = [0u8; 1];
    loop {
        match r.read(&mut b) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(b[0])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads a varint starting at `offset`. `Ok(None)` if the input ends before
/// its first byte; otherwise the value and its length in bytes.
fn read_varint<R: Read>(r: &mut R, offset: u64) -> Result<Option<(u64, usize)>, CarError> {
    let mut value = 0u64;
    for i in 0..MAX_VARINT_BYTES {
        let Some(b) = read_byte(r)? else {
            if i == 0 {
                return Ok(None);
            }
            return Err(CarError::BadVarint { offset, reason: "the input ends inside a varint" });
        };
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return Err(CarError::BadVarint { offset, reason: "varint not minimally encoded" });
            }
            return Ok(Some((value, i + 1)));
        }
    }
    Err(CarError::BadVarint { offset, reason: "varint longer than 9 bytes" })
}

/// Reads exactly `len` bytes (already bounded by a limit), growing the buffer
/// only as bytes arrive. Returns what was there if the input ends early.
fn read_bounded<R: Read>(r: &mut R, len: usize) -> io::Result<Vec<u8>> {
    // Do not trust the claim for the allocation: a short input stays cheap.
    let mut buf = Vec::with_capacity(len.min(64 * 1024));
    r.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

// ---------------------------------------------------------------- header

fn encode_header(roots: &[Cid]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + roots.len() * 40);
    cbor::write_head(&mut out, MAJOR_MAP, 2);
    // DAG-CBOR key order is length first: "roots" (5) before "version" (7).
    cbor::write_text(&mut out, "roots");
    cbor::write_head(&mut out, MAJOR_ARRAY, roots.len() as u64);
    for root in roots {
        cbor::write_link(&mut out, root);
    }
    cbor::write_text(&mut out, "version");
    cbor::write_head(&mut out, MAJOR_UINT, 1);
    out
}

/// Parses the header bytes; `base` is the header's offset in the CAR.
fn parse_header(bytes: &[u8], base: u64) -> Result<Vec<Cid>, CarError> {
    let bad = |offset: usize, reason: &'static str| CarError::BadHeader { offset: base + offset as u64, reason };
    let cbor_err = |e: CborError| bad(e.offset(), e.reason());
    let mut r = Reader::new(bytes);
    let (major, _, entries) = r.head().map_err(cbor_err)?;
    if major != MAJOR_MAP {
        return Err(bad(0, "the header is not a map"));
    }
    if entries > r.remaining() as u64 {
        return Err(bad(0, "map length exceeds the header"));
    }
    let mut roots: Option<Vec<Cid>> = None;
    let mut version: Option<u64> = None;
    for _ in 0..entries {
        let at = r.pos();
        let key = r.text().map_err(cbor_err)?.ok_or_else(|| bad(at, "header keys must be strings"))?;
        match key {
            "roots" => {
                if roots.is_some() {
                    return Err(bad(at, "duplicate key \"roots\""));
                }
                let at = r.pos();
                let (major, _, count) = r.head().map_err(cbor_err)?;
                if major != MAJOR_ARRAY {
                    return Err(bad(at, "\"roots\" must be a list"));
                }
                if count > r.remaining() as u64 {
                    return Err(bad(at, "list length exceeds the header"));
                }
                let mut list = Vec::new();
                for _ in 0..count {
                    let at = r.pos();
                    let (major, _, tag) = r.head().map_err(cbor_err)?;
                    if major != MAJOR_TAG || tag != TAG_CID {
                        return Err(bad(at, "a root must be a CID link"));
                    }
                    list.push(r.link_body().map_err(cbor_err)?);
                }
                roots = Some(list);
            }
            "version" => {
                if version.is_some() {
                    return Err(bad(at, "duplicate key \"version\""));
                }
                let at = r.pos();
                let (major, _, v) = r.head().map_err(cbor_err)?;
                if major != MAJOR_UINT {
                    return Err(bad(at, "\"version\" must be an unsigned integer"));
                }
                version = Some(v);
            }
            _ => return Err(bad(at, "unknown header key (only \"roots\" and \"version\")")),
        }
    }
    let end = r.pos();
    // The version decides first: a CAR v2 pragma is `{version: 2}` with no roots.
    match version {
        None => return Err(bad(end, "missing key \"version\"")),
        Some(1) => {}
        Some(v) => return Err(CarError::UnsupportedVersion { version: v }),
    }
    let roots = roots.ok_or_else(|| bad(end, "missing key \"roots\""))?;
    if r.remaining() > 0 {
        return Err(bad(end, "bytes after the header map"));
    }
    Ok(roots)
}

// ---------------------------------------------------------------- writer

/// Writes a CAR v1 stream: the header on [`CarWriter::new`], one section per
/// [`CarWriter::write`], then [`CarWriter::finish`] flushes and returns the writer.
///
/// The writer trusts its blocks (a [`Block`] was verified when it was built)
/// and writes them in the order given, duplicates included.
pub struct CarWriter<W: Write> {
    inner: W,
    scratch: Vec<u8>,
    blocks: u64,
    bytes: u64,
}

impl<W: Write> CarWriter<W> {
    /// Writes the header `{roots, version: 1}`.
    ///
    /// # Errors
    /// [`CarError::Io`] if the writer fails.
    pub fn new(mut writer: W, roots: &[Cid]) -> Result<Self, CarError> {
        let header = encode_header(roots);
        let mut scratch = Vec::with_capacity(MAX_VARINT_BYTES + MAX_CID_BYTES);
        encode_varint(header.len() as u64, &mut scratch);
        writer.write_all(&scratch)?;
        writer.write_all(&header)?;
        let bytes = (scratch.len() + header.len()) as u64;
        Ok(CarWriter { inner: writer, scratch, blocks: 0, bytes })
    }

    /// Writes one block as a section: length, CID, bytes.
    ///
    /// # Errors
    /// [`CarError::Io`] if the writer fails; the stream is then incomplete.
    pub fn write(&mut self, block: &Block) -> Result<(), CarError> {
        let cid = block.cid();
        self.scratch.clear();
        encode_varint((cid.encoded_len() + block.len()) as u64, &mut self.scratch);
        cid.write_bytes(&mut self.scratch).map_err(|e| io::Error::other(e.to_string()))?;
        self.inner.write_all(&self.scratch)?;
        self.inner.write_all(block.bytes())?;
        self.blocks += 1;
        self.bytes += (self.scratch.len() + block.len()) as u64;
        Ok(())
    }

    /// The number of blocks written so far.
    pub fn blocks_written(&self) -> u64 {
        self.blocks
    }

    /// The number of bytes written so far, header included.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Flushes and returns the inner writer.
    ///
    /// # Errors
    /// [`CarError::Io`] if flushing fails.
    pub fn finish(mut self) -> Result<W, CarError> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> fmt::Debug for CarWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CarWriter").field("blocks", &self.blocks).field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

/// Writes a whole CAR v1: the header with `roots`, then every block in order.
/// Returns the writer, flushed.
///
/// # Errors
/// [`CarError::Io`] if the writer fails.
pub fn write_car<W, B>(writer: W, roots: &[Cid], blocks: impl IntoIterator<Item = B>) -> Result<W, CarError>
where
    W: Write,
    B: Borrow<Block>,
{
    let mut car = CarWriter::new(writer, roots)?;
    for block in blocks {
        car.write(block.borrow())?;
    }
    car.finish()
}

// ---------------------------------------------------------------- reader

/// Reads a CAR v1 stream one section at a time, verifying every block.
///
/// Also an [`Iterator`] of `Result<Block, CarError>` that ends after the last
/// block or after the first error.
pub struct CarReader<R: Read> {
    inner: R,
    limits: CarLimits,
    roots: Vec<Cid>,
    offset: u64,
    blocks: u64,
    done: bool,
}

impl<R: Read> CarReader<R> {
    /// Reads and validates the header.
    ///
    /// # Errors
    /// [`CarError::BadHeader`] (also for an empty input), [`CarError::BadVarint`],
    /// [`CarError::HeaderTooLarge`], [`CarError::UnsupportedVersion`],
    /// [`CarError::TooManyBytes`], [`CarError::Io`].
    pub fn new(mut reader: R, limits: CarLimits) -> Result<Self, CarError> {
        let (len, prefix) = read_varint(&mut reader, 0)?
            .ok_or(CarError::BadHeader { offset: 0, reason: "empty input: no CAR header" })?;
        if len > limits.max_header_bytes as u64 {
            return Err(CarError::HeaderTooLarge { claimed: len, limit: limits.max_header_bytes });
        }
        if len == 0 {
            return Err(CarError::BadHeader { offset: prefix as u64, reason: "empty header" });
        }
        let total = prefix as u64 + len;
        if total > limits.max_total_bytes {
            return Err(CarError::TooManyBytes { limit: limits.max_total_bytes });
        }
        let header = read_bounded(&mut reader, len as usize)?;
        if (header.len() as u64) < len {
            return Err(CarError::BadHeader {
                offset: prefix as u64 + header.len() as u64,
                reason: "the input ends inside the header",
            });
        }
        let roots = parse_header(&header, prefix as u64)?;
        Ok(CarReader { inner: reader, limits, roots, offset: total, blocks: 0, done: false })
    }

    /// The roots named in the header.
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// The limits in force.
    pub fn limits(&self) -> &CarLimits {
        &self.limits
    }

    /// The number of blocks read so far.
    pub fn blocks_read(&self) -> u64 {
        self.blocks
    }

    /// The number of bytes consumed so far, header included.
    pub fn bytes_read(&self) -> u64 {
        self.offset
    }

    /// Returns the underlying reader, positioned after the last section read
    /// (or anywhere inside a section, after an error).
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads and verifies the next block; `Ok(None)` at the end of the CAR.
    /// After an error the reader stays finished and returns `Ok(None)`.
    ///
    /// # Errors
    /// [`CarError::BadVarint`], [`CarError::SectionTooLarge`],
    /// [`CarError::TruncatedSection`], [`CarError::InvalidCid`],
    /// [`CarError::Block`], [`CarError::TooManyBlocks`],
    /// [`CarError::TooManyBytes`], [`CarError::Io`].
    pub fn next_block(&mut self) -> Result<Option<Block>, CarError> {
        if self.done {
            return Ok(None);
        }
        let result = self.read_section();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    fn read_section(&mut self) -> Result<Option<Block>, CarError> {
        let start = self.offset;
        let Some((len, prefix)) = read_varint(&mut self.inner, start)? else {
            return Ok(None);
        };
        if self.blocks >= self.limits.max_blocks {
            return Err(CarError::TooManyBlocks { limit: self.limits.max_blocks });
        }
        let limit = self.limits.max_block_bytes as u64 + MAX_CID_BYTES as u64;
        if len > limit {
            return Err(CarError::SectionTooLarge { offset: start, claimed: len, limit });
        }
        let end = start + prefix as u64 + len;
        if end > self.limits.max_total_bytes {
            return Err(CarError::TooManyBytes { limit: self.limits.max_total_bytes });
        }
        if len == 0 {
            return Err(CarError::InvalidCid { offset: start, reason: "empty section".to_string() });
        }
        let section = read_bounded(&mut self.inner, len as usize)?;
        if (section.len() as u64) < len {
            return Err(CarError::TruncatedSection { offset: start, claimed: len, available: section.len() as u64 });
        }
        self.offset = end;
        let mut rest: &[u8] = &section;
        let cid =
            Cid::read_bytes(&mut rest).map_err(|e| CarError::InvalidCid { offset: start, reason: e.to_string() })?;
        let cid_len = section.len() - rest.len();
        let size = rest.len();
        if size > self.limits.max_block_bytes {
            return Err(BlockError::TooLarge { cid, size, max: self.limits.max_block_bytes }.into());
        }
        // Shares the section's allocation: no copy of the block bytes.
        let block = Block::new(cid, Bytes::from(section).slice(cid_len..))?;
        self.blocks += 1;
        Ok(Some(block))
    }
}

impl<R: Read> fmt::Debug for CarReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CarReader")
            .field("roots", &self.roots.len())
            .field("blocks", &self.blocks)
            .field("offset", &self.offset)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Iterator for CarReader<R> {
    type Item = Result<Block, CarError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_block().transpose()
    }
}

impl<R: Read> std::iter::FusedIterator for CarReader<R> {}

/// Reads a whole CAR v1 and verifies every block before returning any: the
/// result is either every root and block, or the first error.
///
/// # Errors
/// Any [`CarError`] from [`CarReader::new`] or [`CarReader::next_block`].
pub fn read_car<R: Read>(reader: R, limits: CarLimits) -> Result<(Vec<Cid>, Vec<Block>), CarError> {
    let mut car = CarReader::new(reader, limits)?;
    let mut blocks = Vec::new();
    while let Some(block) = car.next_block()? {
        blocks.push(block);
    }
    Ok((car.roots, blocks))
}
