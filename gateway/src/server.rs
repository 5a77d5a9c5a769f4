//! The server: [`Gateway`] answers requests from a blockstore; [`Gateway::serve`]
//! runs it on a TCP listener until a shutdown future resolves.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_LOCATION, CONTENT_TYPE, ETAG,
    HeaderValue, IF_NONE_MATCH, VARY,
};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use merkle_clock::{Block, Blockstore, Cid};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

use crate::body::GatewayBody;
use crate::car_stream;
use crate::request::{self, CAR, DagScope, Format, RAW, Want};

/// The multihash code of the identity "hash" (the bytes are the digest).
const IDENTITY: u64 = 0x00;

/// `Cache-Control` of every successful response: a CID names immutable
/// bytes, and so does an event's ancestry (a CAR of `dag-scope=all` is the
/// same for ever, written in a deterministic order).
const IMMUTABLE: &str = "public, max-age=29030400, immutable";

/// How a [`Gateway`] serves. `#[non_exhaustive]`: start from
/// [`GatewayConfig::default()`] and change fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// A CAR body goes out in chunks of about this many bytes. Default: 64 KiB.
    pub car_chunk_bytes: usize,
    /// Chunks a CAR walk may run ahead of a slow client before it waits.
    /// Default: 4 (so about 256 KiB per CAR response in flight).
    pub car_chunks_ahead: usize,
    /// Most connections served at once; further connections wait to be
    /// accepted. Default: 1024.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers before the
    /// connection is closed (against slow-loris clients). Default: 30 s.
    pub header_read_timeout: Duration,
    /// How long [`Gateway::serve`] lets open connections finish once the
    /// shutdown future resolves, before it drops them. Default: 5 s.
    pub shutdown_grace: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            car_chunk_bytes: 64 << 10,
            car_chunks_ahead: 4,
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// A trustless gateway over a blockstore: `GET` and `HEAD /ipfs/{cid}` as a
/// raw block or as a CAR of the block (`dag-scope=block`) or of the event
/// and all its ancestors (`dag-scope=all`). Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    store: Arc<dyn Blockstore>,
    config: GatewayConfig,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway serving every block of `store`, with the default configuration.
    pub fn new(store: Arc<dyn Blockstore>) -> Self {
        Self::with_config(store, GatewayConfig::default())
    }

    /// A gateway serving every block of `store`.
    pub fn with_config(store: Arc<dyn Blockstore>, config: GatewayConfig) -> Self {
        Gateway { store, config }
    }

    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// Answers one request. Never fails: every problem is a status code
    /// with a one-line `text/plain` reason (a store failure is 500).
    pub async fn handle<B>(&self, req: &Request<B>) -> Response<GatewayBody> {
        let want = match request::parse(req.method(), req.uri(), req.headers()) {
            Ok(want) => want,
            Err(refusal) => return text(refusal.status, &refusal.reason),
        };
        let if_none_match = req.headers().get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::to_owned);
        match self.answer(&want, if_none_match.as_deref()).await {
            Ok(resp) => resp,
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("store failed: {e}")),
        }
    }

    async fn answer(
        &self,
        want: &Want,
        if_none_match: Option<&str>,
    ) -> Result<Response<GatewayBody>, merkle_clock::StoreError> {
        let cid = want.cid;
        // An identity CID holds its bytes; `bafkqaaa` (empty) is the spec's probe.
        let identity = cid.hash().code() == IDENTITY;
        let root = if identity { None } else { self.store.get(&cid).await? };
        if !identity && root.is_none() {
            return Ok(if want.only_if_cached {
                text(StatusCode::PRECONDITION_FAILED, &format!("{cid} is not in this gateway's store"))
            } else {
                text(StatusCode::NOT_FOUND, &format!("{cid} is not in this gateway's store"))
            });
        }
        let etag = match want.format {
            Format::Raw => format!("\"{cid}.raw\""),
            Format::Car => format!("\"{cid}.car.{}.dfs.n\"", want.scope.as_str()),
        };
        let mut resp = Response::builder()
            .header(ETAG, &etag)
            .header(CACHE_CONTROL, IMMUTABLE)
            .header("X-Content-Type-Options", "nosniff")
            .header("X-Ipfs-Path", format!("/ipfs/{cid}"))
            .header("X-Ipfs-Roots", cid.to_string())
            .header(VARY, "Accept")
            .header(ACCEPT_RANGES, "none");
        resp = match want.format {
            Format::Raw => resp
                .header(CONTENT_TYPE, RAW)
                .header(CONTENT_DISPOSITION, format!("attachment; filename=\"{cid}.bin\"")),
            Format::Car => resp
                .header(CONTENT_TYPE, format!("{CAR}; version=1; order=dfs; dups=n"))
                .header(CONTENT_DISPOSITION, format!("attachment; filename=\"{cid}.car\"")),
        };
        if want.negotiated {
            let location = match want.format {
                Format::Raw => format!("/ipfs/{cid}?format=raw"),
                Format::Car => format!("/ipfs/{cid}?format=car&dag-scope={}", want.scope.as_str()),
            };
            resp = resp.header(CONTENT_LOCATION, location);
        }
        if if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*")) {
            return Ok(build(resp.status(StatusCode::NOT_MODIFIED), GatewayBody::empty()));
        }
        let body = match want.format {
            Format::Raw => {
                let bytes = match &root {
                    Some(block) => block.bytes().clone(),
                    None => bytes::Bytes::copy_from_slice(cid.hash().digest()),
                };
                resp = resp.header(CONTENT_LENGTH, bytes.len());
                if want.head { GatewayBody::empty() } else { GatewayBody::full(bytes) }
            }
            Format::Car if want.head => GatewayBody::empty(),
            Format::Car => self.car(cid, root, want.scope),
        };
        Ok(build(resp.status(StatusCode::OK), body))
    }

    /// Starts the walk that writes the CAR, and returns its body.
    fn car(&self, cid: Cid, root: Option<Block>, scope: DagScope) -> GatewayBody {
        let (tx, rx) = mpsc::channel(self.config.car_chunks_ahead.max(1));
        let store = Arc::clone(&self.store);
        tokio::spawn(car_stream::stream(store, cid, root, scope, self.config.car_chunk_bytes.max(1), tx));
        GatewayBody::stream(rx)
    }

    /// Serves HTTP/1.1 on `listener` until `shutdown` resolves; then stops
    /// accepting, lets open connections finish for
    /// [`GatewayConfig::shutdown_grace`], and returns. Runs on the caller's
    /// tokio runtime (one task per connection and per CAR walk).
    ///
    /// # Errors
    /// Only when accepting fails in a way that is not about one connection.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let graceful = GracefulShutdown::new();
        let slots = Arc::new(Semaphore::new(self.config.max_connections.max(1)));
        let gateway = Arc::new(self);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                p = Arc::clone(&slots).acquire_owned() => p.map_err(io::Error::other)?,
            };
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    // One connection's trouble (reset before accept, out of
                    // descriptors for a moment) is no reason to stop serving.
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let gw = Arc::clone(&gateway);
            let service = service_fn(move |req: Request<Incoming>| {
                let gw = Arc::clone(&gw);
                async move { Ok::<_, Infallible>(gw.handle(&req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(gateway.config.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                drop(permit);
            });
        }
        drop(listener);
        let _ = tokio::time::timeout(gateway.config.shutdown_grace, graceful.shutdown()).await;
        Ok(())
    }
}

fn build(resp: hyper::http::response::Builder, body: GatewayBody) -> Response<GatewayBody> {
    // Every header above is made from a CID, a constant or a number: valid.
    resp.body(body).unwrap_or_else(|_| Response::new(GatewayBody::empty()))
}

/// A plain-text response with one line.
fn text(status: StatusCode, reason: &str) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::full(format!("{reason}\n")));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert("X-Content-Type-Options", HeaderValue::from_static("nosniff"));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert("Allow", HeaderValue::from_static("GET, HEAD"));
    }
    resp
}
