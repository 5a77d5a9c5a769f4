//! A small, strict, iterative reader for canonical DAG-CBOR.
//!
//! It never allocates in proportion to a length the input *claims*, never
//! recurses, and accepts exactly the bytes that `serde_ipld_dagcbor` would
//! produce when re-encoding the decoded value (pinned by the property
//! `prop_validator_agrees_with_reencode`). That lets a block be checked for
//! canonical form in one pass, without building the value and encoding it
//! again.

use ipld_core::cid::Cid;

/// The bytes of an encoded link to an event CID: tag 42 (2 bytes), a byte
/// string head (2), the identity multibase prefix (1) and the CID (36:
/// version, codec, hash code, digest length, 32-byte digest).
pub(crate) const LINK_BYTES: usize = 41;

/// Why bytes are not canonical DAG-CBOR, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CborError {
    /// Not DAG-CBOR at all: truncated, invalid UTF-8, a reserved value, a
    /// non-string map key, a duplicate key, a bad link.
    Malformed { offset: usize, reason: &'static str },
    /// Valid CBOR that a canonical encoder would have written differently.
    NotCanonical { offset: usize, reason: &'static str },
    /// Lists and maps nest deeper than the reader was allowed to go.
    TooDeep { offset: usize },
}

impl CborError {
    pub(crate) fn malformed(offset: usize, reason: &'static str) -> Self {
        CborError::Malformed { offset, reason }
    }
    fn noncanonical(offset: usize, reason: &'static str) -> Self {
        CborError::NotCanonical { offset, reason }
    }
    /// Where in the input it went wrong.
    pub(crate) fn offset(&self) -> usize {
        match self {
            CborError::Malformed { offset, .. }
            | CborError::NotCanonical { offset, .. }
            | CborError::TooDeep { offset } => *offset,
        }
    }
    /// What went wrong, in a few words.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            CborError::Malformed { reason, .. } | CborError::NotCanonical { reason, .. } => reason,
            CborError::TooDeep { .. } => "nested too deep",
        }
    }
}

pub(crate) const MAJOR_UINT: u8 = 0;
pub(crate) const MAJOR_NINT: u8 = 1;
pub(crate) const MAJOR_BYTES: u8 = 2;
pub(crate) const MAJOR_TEXT: u8 = 3;
pub(crate) const MAJOR_ARRAY: u8 = 4;
pub(crate) const MAJOR_MAP: u8 = 5;
pub(crate) const MAJOR_TAG: u8 = 6;
pub(crate) const MAJOR_SIMPLE: u8 = 7;

/// The CBOR tag for an IPLD link.
pub(crate) const TAG_CID: u64 = 42;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self.buf.get(self.pos).ok_or_else(|| CborError::malformed(self.pos, "unexpected end of input"))?;
        self.pos += 1;
        Ok(b)
    }

    /// Takes `n` bytes, refusing lengths beyond the input before touching memory.
    pub fn take(&mut self, n: u64) -> Result<&'a [u8], CborError> {
        if n > self.remaining() as u64 {
            return Err(CborError::malformed(self.pos, "length exceeds the input"));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    /// Reads one head: (major type, additional info, argument). Rejects
    /// indefinite lengths, reserved values and non-minimal arguments, except
    /// for major type 7 where the argument is the raw float or simple value.
    pub fn head(&mut self) -> Result<(u8, u8, u64), CborError> {
        let at = self.pos;
        let first = self.byte()?;
        let major = first >> 5;
        let info = first & 0x1f;
        let arg = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let len = 1usize << (info - 24);
                let raw = self.take(len as u64)?;
                let mut v = 0u64;
                for b in raw {
                    v = (v << 8) | u64::from(*b);
                }
                if major != MAJOR_SIMPLE {
                    let minimal = match info {
                        24 => v >= 24,
                        25 => v > 0xff,
                        26 => v > 0xffff,
                        _ => v > 0xffff_ffff,
                    };
                    if !minimal {
                        return Err(CborError::noncanonical(at, "integer or length not minimally encoded"));
                    }
                }
                v
            }
            31 => return Err(CborError::noncanonical(at, "indefinite length")),
            _ => return Err(CborError::malformed(at, "reserved additional information")),
        };
        Ok((major, info, arg))
    }

    /// Reads a text string and returns its bytes (UTF-8 checked).
    pub fn text(&mut self) -> Result<Option<&'a str>, CborError> {
        let at = self.pos;
        let (major, _, len) = self.head()?;
        if major != MAJOR_TEXT {
            self.pos = at;
            return Ok(None);
        }
        let raw = self.take(len)?;
        std::str::from_utf8(raw).map(Some).map_err(|_| CborError::malformed(at, "text is not valid UTF-8"))
    }

    /// Reads a map key: a text string, returned as bytes. Its UTF-8 is
    /// checked unless it is one of `known` (valid by construction).
    /// `Ok(None)` (nothing read) when the next item is not a text string.
    pub fn key(&mut self, known: &[&[u8]]) -> Result<Option<&'a [u8]>, CborError> {
        let at = self.pos;
        let (major, _, len) = self.head()?;
        if major != MAJOR_TEXT {
            self.pos = at;
            return Ok(None);
        }
        let raw = self.take(len)?;
        if !known.contains(&raw) {
            std::str::from_utf8(raw).map_err(|_| CborError::malformed(at, "text is not valid UTF-8"))?;
        }
        Ok(Some(raw))
    }

    /// Reads a tag-42 link to an event CID (v1, dag-cbor, BLAKE3-256) in its
    /// one canonical form and returns the digest, without building a CID.
    /// `None` (nothing read) for anything else: the caller then reads it the
    /// general way, which reports what is wrong with it.
    pub fn event_link(&mut self) -> Option<[u8; 32]> {
        // tag 42, bytes(37), 0x00 multibase prefix, CIDv1, dag-cbor, blake3, 32 bytes
        const PREFIX: [u8; 9] = [0xd8, 0x2a, 0x58, 0x25, 0x00, 0x01, 0x71, 0x1e, 0x20];
        let rest = &self.buf[self.pos..];
        let (prefix, rest) = rest.split_first_chunk::<9>()?;
        debug_assert_eq!(PREFIX.len() + 32, LINK_BYTES);
        let (digest, _) = rest.split_first_chunk::<32>()?;
        if *prefix != PREFIX {
            return None;
        }
        self.pos += LINK_BYTES;
        Some(*digest)
    }

    /// Reads the body of a tag-42 link (the head of the tag already read).
    pub fn link_body(&mut self) -> Result<Cid, CborError> {
        let at = self.pos;
        let (major, _, len) = self.head()?;
        if major != MAJOR_BYTES {
            return Err(CborError::malformed(at, "a link must hold a byte string"));
        }
        let raw = self.take(len)?;
        let Some((&0, cid_bytes)) = raw.split_first() else {
            return Err(CborError::malformed(at, "a link must start with the identity multibase prefix 0x00"));
        };
        let cid = Cid::try_from(cid_bytes).map_err(|_| CborError::malformed(at, "a link holds an invalid CID"))?;
        if cid.encoded_len() != cid_bytes.len() {
            return Err(CborError::noncanonical(at, "a link holds a CID with trailing bytes"));
        }
        Ok(cid)
    }

    /// Skips over exactly one canonical DAG-CBOR value, iteratively, checking
    /// every rule of the canonical form. `max_depth` bounds nesting of lists
    /// and maps (a scalar has depth 0, `[1]` depth 1).
    pub fn skip_value(&mut self, max_depth: usize) -> Result<(), CborError> {
        let mut stack = Frames::default();
        loop {
            let at = self.pos;
            // Is this item a map key?
            let key_slot = match stack.last() {
                Some(f) if f.map => f.remaining % 2 == 0,
                _ => false,
            };
            let (major, info, arg) = self.head()?;
            if key_slot {
                if major != MAJOR_TEXT {
                    return Err(CborError::malformed(at, "map keys must be strings"));
                }
                let key = self.take(arg)?;
                std::str::from_utf8(key).map_err(|_| CborError::malformed(at, "text is not valid UTF-8"))?;
                let frame = stack.last_mut().expect("key_slot implies a frame");
                if let Some(prev) = frame.last_key {
                    match (prev.len(), prev).cmp(&(key.len(), key)) {
                        std::cmp::Ordering::Less => {}
                        std::cmp::Ordering::Equal => return Err(CborError::malformed(at, "duplicate map key")),
                        std::cmp::Ordering::Greater => {
                            return Err(CborError::noncanonical(at, "map keys not in canonical order"));
                        }
                    }
                }
                frame.last_key = Some(key);
            } else {
                match major {
                    MAJOR_UINT | MAJOR_NINT => {}
                    MAJOR_BYTES => {
                        self.take(arg)?;
                    }
                    MAJOR_TEXT => {
                        let raw = self.take(arg)?;
                        std::str::from_utf8(raw).map_err(|_| CborError::malformed(at, "text is not valid UTF-8"))?;
                    }
                    MAJOR_ARRAY | MAJOR_MAP => {
                        // Every item needs at least one byte: refuse impossible counts early.
                        let items = if major == MAJOR_MAP { arg.checked_mul(2) } else { Some(arg) };
                        let items = match items {
                            Some(n) if n <= self.remaining() as u64 => n,
                            _ => return Err(CborError::malformed(at, "length exceeds the input")),
                        };
                        if stack.len() >= max_depth {
                            return Err(CborError::TooDeep { offset: at });
                        }
                        if let Some(parent) = stack.last_mut() {
                            parent.remaining -= 1;
                        }
                        if items > 0 {
                            stack.push(Frame { remaining: items, map: major == MAJOR_MAP, last_key: None });
                            continue;
                        }
                        // An empty container is complete: fall through to unwinding without
                        // decrementing the parent a second time.
                        pop_finished(&mut stack);
                        if stack.is_empty() {
                            return Ok(());
                        }
                        continue;
                    }
                    MAJOR_TAG => {
                        if arg != TAG_CID {
                            return Err(CborError::malformed(at, "only tag 42 (link) is allowed"));
                        }
                        self.link_body()?;
                    }
                    _ => match info {
                        20..=22 => {}
                        27 => {
                            let f = f64::from_bits(arg);
                            if !f.is_finite() {
                                return Err(CborError::malformed(at, "floats must be finite"));
                            }
                            if arg == 0x8000_0000_0000_0000 {
                                return Err(CborError::noncanonical(at, "negative zero is encoded as zero"));
                            }
                        }
                        25 | 26 => return Err(CborError::noncanonical(at, "floats must be 64-bit")),
                        _ => return Err(CborError::malformed(at, "unsupported simple value")),
                    },
                }
            }
            match stack.last_mut() {
                None => return Ok(()),
                Some(frame) => frame.remaining -= 1,
            }
            pop_finished(&mut stack);
            if stack.is_empty() {
                return Ok(());
            }
        }
    }
}

fn pop_finished(stack: &mut Frames<'_>) {
    while stack.last().is_some_and(|f| f.remaining == 0) {
        stack.pop();
    }
}

/// One open list or map while skipping a value.
#[derive(Clone, Copy, Default)]
struct Frame<'b> {
    remaining: u64,
    map: bool,
    last_key: Option<&'b [u8]>,
}

/// Open containers held on the stack before [`Frames`] spills to the heap.
const NEAR_FRAMES: usize = 8;

/// The open containers of [`Reader::skip_value`], innermost last: the first
/// [`NEAR_FRAMES`] in an array (a payload rarely nests deeper), the rest in
/// a `Vec`, so that checking a shallow value allocates nothing (it did on
/// every append, for the payload's map).
#[derive(Default)]
struct Frames<'b> {
    near: [Frame<'b>; NEAR_FRAMES],
    len: usize,
    far: Vec<Frame<'b>>,
}

impl<'b> Frames<'b> {
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, frame: Frame<'b>) {
        match self.near.get_mut(self.len) {
            Some(slot) => *slot = frame,
            None => self.far.push(frame),
        }
        self.len += 1;
    }

    fn pop(&mut self) {
        if self.len > NEAR_FRAMES {
            self.far.pop();
        }
        self.len = self.len.saturating_sub(1);
    }

    fn last(&self) -> Option<&Frame<'b>> {
        match self.len {
            0 => None,
            n if n <= NEAR_FRAMES => self.near.get(n - 1),
            _ => self.far.last(),
        }
    }

    fn last_mut(&mut self) -> Option<&mut Frame<'b>> {
        match self.len {
            0 => None,
            n if n <= NEAR_FRAMES => self.near.get_mut(n - 1),
            _ => self.far.last_mut(),
        }
    }
}

/// Appends a CBOR head with the minimal argument encoding.
#[inline]
pub(crate) fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= 0xff {
        out.extend_from_slice(&[m | 24, arg as u8]);
    } else if arg <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

/// Appends a text string.
pub(crate) fn write_text(out: &mut Vec<u8>, s: &str) {
    write_head(out, MAJOR_TEXT, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends a tag-42 link to an event CID given by its digest.
#[inline]
pub(crate) fn write_digest_link(out: &mut Vec<u8>, digest: &[u8; 32]) {
    // tag 42, bytes(37): 0x00 multibase prefix, CIDv1, dag-cbor, blake3, 32 bytes
    out.extend_from_slice(&[0xd8, 0x2a, 0x58, 0x25, 0x00, 0x01, 0x71, 0x1e, 0x20]);
    out.extend_from_slice(digest);
}

/// Appends a tag-42 link.
pub(crate) fn write_link(out: &mut Vec<u8>, cid: &Cid) {
    write_head(out, MAJOR_TAG, TAG_CID);
    write_head(out, MAJOR_BYTES, cid.encoded_len() as u64 + 1);
    out.push(0);
    cid.write_bytes(&mut *out).expect("writing to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::{CborError, MAJOR_MAP, MAJOR_SIMPLE, MAJOR_TEXT, NEAR_FRAMES, Reader, write_head};

    /// `depth` maps nested in the value of key "b", the innermost holding
    /// `inner` keys ("a", "b"; or "b", "a": not canonical) with null values.
    fn nested(depth: usize, inner_sorted: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let key = |out: &mut Vec<u8>, k: &str| {
            write_head(out, MAJOR_TEXT, k.len() as u64);
            out.extend_from_slice(k.as_bytes());
        };
        for _ in 1..depth {
            write_head(&mut out, MAJOR_MAP, 1);
            key(&mut out, "b");
        }
        write_head(&mut out, MAJOR_MAP, 2);
        let keys = if inner_sorted { ["a", "b"] } else { ["b", "a"] };
        for k in keys {
            key(&mut out, k);
            write_head(&mut out, MAJOR_SIMPLE, 22);
        }
        out
    }

    /// Past the frames kept inline, nesting is followed just the same: the
    /// depth limit holds, and a map's key order is still checked.
    #[test]
    fn skip_value_follows_nesting_past_the_inline_frames() {
        for depth in 1..=3 * NEAR_FRAMES {
            let ok = nested(depth, true);
            assert!(Reader::new(&ok).skip_value(depth).is_ok(), "depth {depth}");
            assert!(
                matches!(Reader::new(&ok).skip_value(depth - 1), Err(CborError::TooDeep { .. })),
                "depth {depth} over a limit of {}",
                depth - 1
            );
            let mut reader = Reader::new(&ok);
            reader.skip_value(depth).expect("canonical");
            assert_eq!(reader.remaining(), 0, "depth {depth}: the whole value");
            let unsorted = nested(depth, false);
            assert!(
                matches!(Reader::new(&unsorted).skip_value(depth), Err(CborError::NotCanonical { .. })),
                "depth {depth}: keys out of order"
            );
        }
    }
}
