//! Futures as JS promises, without a trip through the task queue when the
//! work finishes at once (the in-memory store never waits).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use js_sys::Promise;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::future_to_promise;

/// `future` as a `Promise`. It is polled once, now: if it is done, the
/// promise is already settled; if it waits (for a JS store, or for its turn
/// on the replica's lock, which a first poll joins in call order), it goes to
/// wasm-bindgen-futures, which polls it again with a real waker (that poll
/// replaces the no-op waker of the first).
pub(crate) fn promise<F>(future: F) -> Promise
where
    F: Future<Output = Result<JsValue, JsValue>> + 'static,
{
    let mut future = Box::pin(future);
    match poll_once(future.as_mut()) {
        Poll::Ready(Ok(v)) => Promise::resolve(&v),
        Poll::Ready(Err(e)) => Promise::reject(&e),
        Poll::Pending => future_to_promise(future),
    }
}

/// Polls `future` once, with a waker that does nothing: for a future that
/// may finish at once, before it is handed to an executor (or, when nothing
/// it awaits can wait, instead of one).
pub(crate) fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}
