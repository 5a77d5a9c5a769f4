//! What the two wire formats (sync requests and announcements) share:
//! length-prefixed CIDs and a cursor that reads a body without panicking.

use std::fmt;

use merkle_clock::Cid;

/// The longest CID either format accepts, in bytes.
pub(crate) const MAX_CID_BYTES: usize = 256;

/// Writes `cid` as a 2-byte big-endian length and its bytes.
pub(crate) fn put_cid(out: &mut Vec<u8>, cid: &Cid) {
    let b = cid.to_bytes();
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(&b);
}

/// Why a body did not read: the rule broken, and the part being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireError {
    pub reason: &'static str,
    pub what: &'static str,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.what.is_empty() { f.write_str(self.reason) } else { write!(f, "{} {}", self.reason, self.what) }
    }
}

fn bad(reason: &'static str) -> WireError {
    WireError { reason, what: "" }
}

/// A cursor over a body being parsed; what is left is `.0`.
pub(crate) struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError { reason: "truncated", what });
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }

    /// A big-endian u16.
    pub fn u16(&mut self, what: &'static str) -> Result<usize, WireError> {
        Ok(u16::from_be_bytes(self.array(what)?) as usize)
    }

    /// A big-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<usize, WireError> {
        Ok(u32::from_be_bytes(self.array(what)?) as usize)
    }

    /// A CID written by [`put_cid`], in its canonical bytes.
    pub fn cid(&mut self) -> Result<Cid, WireError> {
        let n = self.u16("CID length")?;
        if n > MAX_CID_BYTES {
            return Err(bad("CID too long"));
        }
        let bytes = self.take(n, "CID")?;
        let cid = Cid::try_from(bytes).map_err(|_| bad("bad CID"))?;
        if cid.to_bytes() != bytes {
            return Err(bad("non-canonical CID"));
        }
        Ok(cid)
    }

    /// Nothing is left.
    pub fn end(&self) -> Result<(), WireError> {
        if self.0.is_empty() { Ok(()) } else { Err(bad("trailing bytes")) }
    }
}
