//! The request-response codec that carries sync messages and block fetches.
//!
//! One request and one response per substream, each a frame: a 4-byte
//! big-endian length, then that many bytes. A frame longer than the codec's
//! bound is refused before it is read, so a peer cannot make us buffer more
//! than the bound.
//!
//! ```text
//! request  = version:u8 (2) | kind:u8 | stream: u16 len ++ CID bytes | body
//!   kind 0 (sync): body = one encoded sync message (the rest, never empty)
//!   kind 1 (get):  body = count:u16 | count × (u16 len ++ CID bytes)
//! response = version:u8 (2) | status:u8 | body
//!   status 0: the receiver's reply, one encoded sync message (the rest)
//!   status 1: no reply (the receiver has nothing to say now)
//!   status 2: unknown stream        status 3: your message was refused
//!   status 4: blocks = count:u32 | count × (present:u8 | if 1: u32 len ++ bytes)
//! ```
//!
//! Sync messages are one-way: a request carries one message, and the
//! response carries the receiver's reply to it (what [`Sessions::receive`]
//! returned), which the requester takes in like any other message. The
//! message bytes are the core's `Message::encode` output, decoded (with its
//! limits) by the session driver, not here: the codec only checks the
//! framing.
//!
//! A get asks for at most [`MAX_GET_CIDS`] blocks. The answer lists one entry
//! per CID asked, in order, possibly fewer than asked when the blocks would
//! not fit in the responder's `SyncLimits::max_message_bytes`: entries past
//! the end were not answered (ask again), an absent entry means the
//! responder does not have the block.
//!
//! [`Sessions::receive`]: merkle_clock::sync::Sessions::receive

use std::io;

use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;
use merkle_clock::Cid;

use crate::wire::{Reader, WireError, put_cid};

/// The protocol name of the sync exchange. Version 2: one-way messages and
/// block fetches (version 1 was a request/response session loop).
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/merkle-clock/sync/2");

/// Most CIDs in one [`SyncRequest::Get`].
pub const MAX_GET_CIDS: usize = 1024;

const VERSION: u8 = 2;
const KIND_SYNC: u8 = 0;
const KIND_GET: u8 = 1;

/// What one peer sends another on the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncRequest {
    /// One sync message of the session between the two peers on `stream`.
    Sync {
        /// The stream (its genesis CID).
        stream: Cid,
        /// The encoded sync message (a slice of the frame it came in: its
        /// blocks are taken in without a copy).
        message: Bytes,
    },
    /// Blocks of `stream` by CID (at most [`MAX_GET_CIDS`]).
    Get {
        /// The stream whose replica is asked.
        stream: Cid,
        /// The blocks wanted.
        cids: Vec<Cid>,
    },
}

/// The receiver's answer to one [`SyncRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncResponse {
    /// The receiver's reply to a [`SyncRequest::Sync`]: its next encoded sync
    /// message (a slice of the frame it came in).
    Message(Bytes),
    /// The receiver took the message in and has nothing to say now.
    Done,
    /// The receiver does not replicate this stream.
    UnknownStream,
    /// The receiver could not use the message (it did not decode, or the
    /// sync protocol refused it).
    Refused,
    /// The answer to a [`SyncRequest::Get`]: one entry per CID asked, in
    /// order (`None`: not held); fewer entries than asked when the rest did
    /// not fit in one response.
    Blocks(Vec<Option<Vec<u8>>>),
}

/// A [`request_response::Codec`] for [`SyncRequest`] and [`SyncResponse`]
/// with bounded frame sizes.
#[derive(Debug, Clone, Copy)]
pub struct SyncCodec {
    /// Most bytes of a request frame.
    pub max_request_bytes: usize,
    /// Most bytes of a response frame.
    pub max_response_bytes: usize,
}

impl Default for SyncCodec {
    fn default() -> Self {
        SyncCodec { max_request_bytes: 32 << 20, max_response_bytes: 32 << 20 }
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// How far ahead of the bytes received a frame's buffer is filled in.
const READ_CHUNK: usize = 1 << 20;

/// Reads one frame into a buffer of its exact length, filled in as the
/// bytes arrive (at most [`READ_CHUNK`] ahead of them: a peer that
/// announces a large frame and sends little makes us hold little), and
/// never copied: what is decoded from it are slices of it.
async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Bytes> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(invalid(format!("frame of {len} bytes exceeds the bound of {max}")));
    }
    let mut buf = Vec::with_capacity(len.min(READ_CHUNK));
    while buf.len() < len {
        let at = buf.len();
        let end = len.min(at + READ_CHUNK);
        if at > 0 {
            // The first chunk arrived: the rest in one allocation (untouched
            // until it is filled in below).
            buf.reserve_exact(len - at);
        }
        buf.resize(end, 0);
        io.read_exact(&mut buf[at..end]).await.map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                io::Error::new(io::ErrorKind::UnexpectedEof, "frame shorter than its length")
            }
            _ => e,
        })?;
    }
    Ok(Bytes::from(buf))
}

/// Writes a frame of `head` then `body` (written as they are: a large
/// message is not copied into the frame).
async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, head: &[u8], body: &[u8], max: usize) -> io::Result<()> {
    let size = head.len() + body.len();
    if size > max {
        return Err(invalid(format!("frame of {size} bytes exceeds the bound of {max}")));
    }
    let len = u32::try_from(size).map_err(|_| invalid("frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(head).await?;
    io.write_all(body).await?;
    io.close().await
}

impl From<WireError> for io::Error {
    fn from(e: WireError) -> Self {
        invalid(e.to_string())
    }
}

impl SyncRequest {
    /// The stream the request is about.
    pub fn stream(&self) -> &Cid {
        match self {
            SyncRequest::Sync { stream, .. } | SyncRequest::Get { stream, .. } => stream,
        }
    }

    /// The request's body (without the frame length).
    pub fn encode(&self) -> Vec<u8> {
        let (mut out, message) = self.parts();
        out.extend_from_slice(message);
        out
    }

    /// The request's body in two parts, written one after the other: a
    /// header, then the sync message as it is (not copied).
    fn parts(&self) -> (Vec<u8>, &[u8]) {
        let mut out = Vec::with_capacity(64);
        match self {
            SyncRequest::Sync { stream, message } => {
                out.extend_from_slice(&[VERSION, KIND_SYNC]);
                put_cid(&mut out, stream);
                return (out, message);
            }
            SyncRequest::Get { stream, cids } => {
                out.reserve(40 * cids.len());
                out.extend_from_slice(&[VERSION, KIND_GET]);
                put_cid(&mut out, stream);
                out.extend_from_slice(&(cids.len().min(u16::MAX as usize) as u16).to_be_bytes());
                for c in cids.iter().take(u16::MAX as usize) {
                    put_cid(&mut out, c);
                }
            }
        }
        (out, &[])
    }

    /// Parses a request body; a sync message is a slice of it.
    ///
    /// # Errors
    /// `InvalidData` for an unknown version or kind, a bad CID, an empty
    /// sync message, more than [`MAX_GET_CIDS`] CIDs, or trailing bytes.
    pub fn decode(body: &Bytes) -> io::Result<Self> {
        let mut r = Reader(body);
        let [version, kind] = r.take(2, "request header")? else { unreachable!("2 bytes") };
        if *version != VERSION {
            return Err(invalid(format!("unknown request version {version}")));
        }
        let stream = r.cid()?;
        match *kind {
            KIND_SYNC if r.0.is_empty() => Err(invalid("empty sync message")),
            KIND_SYNC => Ok(SyncRequest::Sync { stream, message: body.slice(body.len() - r.0.len()..) }),
            KIND_GET => {
                let n = r.u16("CID count")?;
                if n > MAX_GET_CIDS {
                    return Err(invalid(format!("{n} CIDs asked, more than {MAX_GET_CIDS}")));
                }
                let cids = (0..n).map(|_| r.cid()).collect::<Result<Vec<_>, WireError>>()?;
                r.end()?;
                Ok(SyncRequest::Get { stream, cids })
            }
            k => Err(invalid(format!("unknown request kind {k}"))),
        }
    }
}

impl SyncResponse {
    /// Bytes a [`SyncResponse::Blocks`] spends on a block besides the block.
    pub const BLOCK_OVERHEAD: usize = 5;

    /// The response's body (without the frame length).
    pub fn encode(&self) -> Vec<u8> {
        let (mut out, message) = self.parts();
        out.extend_from_slice(message);
        out
    }

    /// The response's body in two parts, written one after the other: a
    /// header (all of it but a message), then the message as it is.
    fn parts(&self) -> (Vec<u8>, &[u8]) {
        let out = match self {
            SyncResponse::Message(m) => return (vec![VERSION, 0], m),
            SyncResponse::Done => vec![VERSION, 1],
            SyncResponse::UnknownStream => vec![VERSION, 2],
            SyncResponse::Refused => vec![VERSION, 3],
            SyncResponse::Blocks(blocks) => {
                let size: usize = blocks.iter().map(|b| Self::BLOCK_OVERHEAD + b.as_ref().map_or(0, Vec::len)).sum();
                let mut out = Vec::with_capacity(6 + size);
                out.extend_from_slice(&[VERSION, 4]);
                out.extend_from_slice(&(blocks.len() as u32).to_be_bytes());
                for b in blocks {
                    match b {
                        None => out.push(0),
                        Some(bytes) => {
                            out.push(1);
                            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                            out.extend_from_slice(bytes);
                        }
                    }
                }
                out
            }
        };
        (out, &[])
    }

    /// Parses a response body; a message is a slice of it.
    ///
    /// # Errors
    /// `InvalidData` for an unknown version or status, a malformed block
    /// list, or trailing bytes.
    pub fn decode(body: &Bytes) -> io::Result<Self> {
        let mut r = Reader(body);
        let [version, status] = r.take(2, "response header")? else { unreachable!("2 bytes") };
        if *version != VERSION {
            return Err(invalid(format!("unknown response version {version}")));
        }
        let response = match status {
            0 => return Ok(SyncResponse::Message(body.slice(2..))),
            1 => SyncResponse::Done,
            2 => SyncResponse::UnknownStream,
            3 => SyncResponse::Refused,
            4 => {
                let n = r.u32("block count")?;
                if n > MAX_GET_CIDS {
                    return Err(invalid(format!("{n} blocks, more than {MAX_GET_CIDS}")));
                }
                let mut blocks = Vec::with_capacity(n);
                for _ in 0..n {
                    blocks.push(match r.take(1, "block flag")? {
                        [0] => None,
                        [1] => {
                            let len = r.u32("block length")?;
                            Some(r.take(len, "block")?.to_vec())
                        }
                        _ => return Err(invalid("bad block flag")),
                    });
                }
                SyncResponse::Blocks(blocks)
            }
            s => return Err(invalid(format!("unknown response status {s}"))),
        };
        r.end()?;
        Ok(response)
    }
}

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        SyncRequest::decode(&read_frame(io, self.max_request_bytes).await?)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        SyncResponse::decode(&read_frame(io, self.max_response_bytes).await?)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: SyncRequest) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let (head, body) = req.parts();
        write_frame(io, &head, body, self.max_request_bytes).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: SyncResponse) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let (head, body) = res.parts();
        write_frame(io, &head, body, self.max_response_bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use merkle_clock::Event;

    fn cid(name: &str) -> Cid {
        *Event::genesis(format!("codec test {name}")).encode().unwrap().cid()
    }

    #[test]
    fn sync_requests_round_trip() {
        for message in [vec![1, 2, 3], vec![0; 1000]] {
            let r = SyncRequest::Sync { stream: cid("s"), message: message.into() };
            assert_eq!(SyncRequest::decode(&r.encode().into()).unwrap(), r);
        }
    }

    #[test]
    fn get_requests_round_trip() {
        for n in [0, 1, 3, MAX_GET_CIDS] {
            let r = SyncRequest::Get { stream: cid("s"), cids: (0..n).map(|i| cid(&i.to_string())).collect() };
            assert_eq!(SyncRequest::decode(&r.encode().into()).unwrap(), r);
        }
    }

    #[test]
    fn responses_round_trip() {
        for r in [
            SyncResponse::Message(vec![9; 10].into()),
            SyncResponse::Done,
            SyncResponse::UnknownStream,
            SyncResponse::Refused,
            SyncResponse::Blocks(Vec::new()),
            SyncResponse::Blocks(vec![Some(vec![1, 2, 3]), None, Some(Vec::new()), None]),
        ] {
            assert_eq!(SyncResponse::decode(&r.encode().into()).unwrap(), r);
        }
    }

    #[test]
    fn bad_requests_are_refused() {
        let stream = cid("s");
        // An empty sync message, a get of too many CIDs, trailing bytes after a get.
        assert!(SyncRequest::decode(&SyncRequest::Sync { stream, message: Bytes::new() }.encode().into()).is_err());
        let too_many = SyncRequest::Get { stream, cids: vec![stream; MAX_GET_CIDS + 1] };
        assert!(SyncRequest::decode(&too_many.encode().into()).is_err());
        let mut trailing = SyncRequest::Get { stream, cids: vec![stream] }.encode();
        trailing.push(0);
        assert!(SyncRequest::decode(&trailing.into()).is_err());
        // Version 1 frames are refused.
        let mut v1 = SyncRequest::Sync { stream, message: vec![1].into() }.encode();
        v1[0] = 1;
        assert!(SyncRequest::decode(&v1.into()).is_err());
        // A block list that promises more than it holds, a bad flag.
        let mut short = SyncResponse::Blocks(vec![Some(vec![1; 10])]).encode();
        short.truncate(short.len() - 1);
        assert!(SyncResponse::decode(&short.into()).is_err());
        assert!(SyncResponse::decode(&Bytes::from_static(&[VERSION, 4, 0, 0, 0, 1, 7])).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut seed = 0x1234_5678_u64;
        for len in 0..300 {
            let mut body: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = SyncRequest::decode(&body.clone().into());
            let _ = SyncResponse::decode(&body.clone().into());
            // With a valid header, the body is parsed further.
            if body.len() > 2 {
                body[0] = VERSION;
                body[1] %= 5;
                let _ = SyncRequest::decode(&body.clone().into());
                let _ = SyncResponse::decode(&body.clone().into());
            }
        }
        assert!(SyncRequest::decode(&Bytes::from_static(&[VERSION, 0, 0xff, 0xff])).is_err());
        assert!(SyncResponse::decode(&Bytes::from_static(&[VERSION, 1, 0])).is_err());
        assert!(SyncResponse::decode(&Bytes::from_static(&[1, 0])).is_err());
    }

    #[test]
    fn frames_are_bounded() {
        futures::executor::block_on(async {
            let mut buf = Vec::new();
            write_frame(&mut buf, &[7; 10], &[7; 90], 1000).await.unwrap();
            assert_eq!(read_frame(&mut &buf[..], 1000).await.unwrap(), vec![7; 100]);
            assert!(read_frame(&mut &buf[..], 99).await.is_err());
            assert!(write_frame(&mut Vec::new(), &[0; 1], &[0; 10], 10).await.is_err());
            // A length that promises more than the stream holds.
            let mut short = 50u32.to_be_bytes().to_vec();
            short.extend_from_slice(&[1; 10]);
            assert!(read_frame(&mut &short[..], 1000).await.is_err());
            // A frame of several chunks, whole and cut short in its second.
            let big: Vec<u8> = (0..READ_CHUNK * 5 / 2).map(|i| i as u8).collect();
            let mut framed = Vec::new();
            write_frame(&mut framed, &[], &big, 3 * READ_CHUNK).await.unwrap();
            assert_eq!(read_frame(&mut &framed[..], 3 * READ_CHUNK).await.unwrap(), big);
            assert!(read_frame(&mut &framed[..READ_CHUNK + 100], 3 * READ_CHUNK).await.is_err());
        });
    }

    /// A sync message is a slice of the frame it came in, not a copy.
    #[test]
    fn messages_are_slices_of_the_frame() {
        let body = Bytes::from(SyncResponse::Message(vec![5; 100].into()).encode());
        let SyncResponse::Message(m) = SyncResponse::decode(&body).unwrap() else { panic!("a message") };
        assert_eq!(m.as_ptr(), body[2..].as_ptr());
        let body = Bytes::from(SyncRequest::Sync { stream: cid("s"), message: vec![5; 100].into() }.encode());
        let SyncRequest::Sync { message, .. } = SyncRequest::decode(&body).unwrap() else { panic!("a sync request") };
        assert_eq!(message.as_ptr(), body[body.len() - 100..].as_ptr());
    }
}
