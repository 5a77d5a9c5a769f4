//! The response body: nothing, a block, or a CAR streamed from a task.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// A gateway response body: empty (a `HEAD`, a refusal without text), whole
/// bytes (a raw block, an error message), or a CAR written by a task as it
/// walks the store, in chunks through a bounded channel (so a slow client
/// slows the walk instead of filling memory).
///
/// A chunk that is an error ends the body with that error: hyper then
/// closes the connection without the final chunk, and the client sees an
/// incomplete response, as the trustless gateway spec asks when a block
/// goes missing mid-stream.
#[derive(Debug)]
pub struct GatewayBody(Inner);

#[derive(Debug)]
enum Inner {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Result<Bytes, io::Error>>),
}

impl GatewayBody {
    pub(crate) fn empty() -> Self {
        GatewayBody(Inner::Full(None))
    }

    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        GatewayBody(Inner::Full((!bytes.is_empty()).then_some(bytes)))
    }

    pub(crate) fn stream(rx: mpsc::Receiver<Result<Bytes, io::Error>>) -> Self {
        GatewayBody(Inner::Stream(rx))
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.0 {
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Stream(rx) => rx.poll_recv(cx).map(|chunk| chunk.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.0, Inner::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Stream(_) => SizeHint::default(),
        }
    }
}
