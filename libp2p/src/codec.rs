//! The request-response codec that carries encoded sync messages.
//!
//! One request and one response per substream, each a frame: a 4-byte
//! big-endian length, then that many bytes. A frame longer than the codec's
//! bound is refused before it is read, so a peer cannot make us buffer more
//! than the bound.
//!
//! ```text
//! request  = version:u8 (1) | flags:u8 | stream: u16 len ++ CID bytes | message bytes (rest)
//! response = version:u8 (1) | status:u8 | message bytes (rest)
//! ```
//!
//! Request flags: bit 0 "a message follows" (without it the request asks the
//! responder for its next message).
//! Response status: 0 "a message follows", 1 "nothing to say", 2 "unknown
//! stream", 3 "your message was refused". The message bytes are the core's
//! `Message::encode` output, decoded (with its limits) by the node, not here:
//! the codec only checks the framing.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;
use merkle_clock::Cid;

/// The protocol name of the sync exchange.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/merkle-clock/sync/1");

const VERSION: u8 = 1;
const FLAG_MESSAGE: u8 = 1;
/// CIDs are far shorter than this; a longer stream id is garbage.
const MAX_CID_BYTES: usize = 256;

/// One step of a sync session, from the session's initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// The stream (its genesis CID).
    pub stream: Cid,
    /// The encoded sync message, or `None` to ask the responder whether it
    /// has something to say.
    pub message: Option<Vec<u8>>,
}

/// The responder's answer to one [`SyncRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncResponse {
    /// The responder's next encoded sync message.
    Message(Vec<u8>),
    /// The responder has nothing to say.
    Done,
    /// The responder does not replicate this stream.
    UnknownStream,
    /// The responder could not use the request (it did not decode, or the
    /// sync protocol refused it).
    Refused,
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

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(invalid(format!("frame of {len} bytes exceeds the bound of {max}")));
    }
    let mut buf = Vec::new();
    // `take` bounds the read even if the peer lies about the length.
    io.take(len as u64).read_to_end(&mut buf).await?;
    if buf.len() != len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "frame shorter than its length"));
    }
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, body: &[u8], max: usize) -> io::Result<()> {
    if body.len() > max {
        return Err(invalid(format!("frame of {} bytes exceeds the bound of {max}", body.len())));
    }
    let len = u32::try_from(body.len()).map_err(|_| invalid("frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(body).await?;
    io.close().await
}

impl SyncRequest {
    /// The request's body (without the frame length).
    pub fn encode(&self) -> Vec<u8> {
        let cid = self.stream.to_bytes();
        let mut out = Vec::with_capacity(4 + cid.len() + self.message.as_ref().map_or(0, Vec::len));
        let flags = if self.message.is_some() { FLAG_MESSAGE } else { 0 };
        out.push(VERSION);
        out.push(flags);
        out.extend_from_slice(&(cid.len() as u16).to_be_bytes());
        out.extend_from_slice(&cid);
        if let Some(m) = &self.message {
            out.extend_from_slice(m);
        }
        out
    }

    /// Parses a request body.
    ///
    /// # Errors
    /// `InvalidData` for an unknown version or flag, a bad CID, or message
    /// bytes where the flags say there are none.
    pub fn decode(body: &[u8]) -> io::Result<Self> {
        let [version, flags, l0, l1, rest @ ..] = body else { return Err(invalid("request too short")) };
        if *version != VERSION {
            return Err(invalid(format!("unknown request version {version}")));
        }
        if flags & !FLAG_MESSAGE != 0 {
            return Err(invalid(format!("unknown request flags {flags:#x}")));
        }
        let cid_len = u16::from_be_bytes([*l0, *l1]) as usize;
        if cid_len > MAX_CID_BYTES || cid_len > rest.len() {
            return Err(invalid("bad stream id length"));
        }
        let (cid, message) = rest.split_at(cid_len);
        let stream = Cid::try_from(cid).map_err(|e| invalid(format!("bad stream id: {e}")))?;
        let message = if flags & FLAG_MESSAGE != 0 {
            Some(message.to_vec())
        } else if message.is_empty() {
            None
        } else {
            return Err(invalid("message bytes without the message flag"));
        };
        Ok(SyncRequest { stream, message })
    }
}

impl SyncResponse {
    /// The response's body (without the frame length).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            SyncResponse::Message(m) => {
                let mut out = Vec::with_capacity(2 + m.len());
                out.extend_from_slice(&[VERSION, 0]);
                out.extend_from_slice(m);
                out
            }
            SyncResponse::Done => vec![VERSION, 1],
            SyncResponse::UnknownStream => vec![VERSION, 2],
            SyncResponse::Refused => vec![VERSION, 3],
        }
    }

    /// Parses a response body.
    ///
    /// # Errors
    /// `InvalidData` for an unknown version or status, or trailing bytes.
    pub fn decode(body: &[u8]) -> io::Result<Self> {
        let [version, status, rest @ ..] = body else { return Err(invalid("response too short")) };
        if *version != VERSION {
            return Err(invalid(format!("unknown response version {version}")));
        }
        let r = match status {
            0 => return Ok(SyncResponse::Message(rest.to_vec())),
            1 => SyncResponse::Done,
            2 => SyncResponse::UnknownStream,
            3 => SyncResponse::Refused,
            s => return Err(invalid(format!("unknown response status {s}"))),
        };
        if !rest.is_empty() {
            return Err(invalid("trailing bytes after the response status"));
        }
        Ok(r)
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
        write_frame(io, &req.encode(), self.max_request_bytes).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: SyncResponse) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res.encode(), self.max_response_bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use merkle_clock::Event;

    fn stream() -> Cid {
        *Event::genesis("codec test").encode().unwrap().cid()
    }

    #[test]
    fn request_round_trips() {
        for message in [None, Some(vec![1, 2, 3]), Some(Vec::new())] {
            let r = SyncRequest { stream: stream(), message };
            assert_eq!(SyncRequest::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn response_round_trips() {
        for r in
            [SyncResponse::Message(vec![9; 10]), SyncResponse::Done, SyncResponse::UnknownStream, SyncResponse::Refused]
        {
            assert_eq!(SyncResponse::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut seed = 0x1234_5678_u64;
        for len in 0..200 {
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = SyncRequest::decode(&body);
            let _ = SyncResponse::decode(&body);
        }
        assert!(SyncRequest::decode(&[1, 0, 0xff, 0xff]).is_err());
        assert!(SyncResponse::decode(&[1, 1, 0]).is_err());
        assert!(SyncResponse::decode(&[2, 0]).is_err());
    }

    #[test]
    fn frames_are_bounded() {
        futures::executor::block_on(async {
            let mut buf = Vec::new();
            write_frame(&mut buf, &[7; 100], 1000).await.unwrap();
            assert_eq!(read_frame(&mut &buf[..], 1000).await.unwrap(), vec![7; 100]);
            assert!(read_frame(&mut &buf[..], 99).await.is_err());
            assert!(write_frame(&mut Vec::new(), &[0; 11], 10).await.is_err());
            // A length that promises more than the stream holds.
            let mut short = 50u32.to_be_bytes().to_vec();
            short.extend_from_slice(&[1; 10]);
            assert!(read_frame(&mut &short[..], 1000).await.is_err());
        });
    }
}
