//! A minimal HTTP/1.1 client for gateways: `GET` only, plain `http://`,
//! keep-alive connections reused, every request bounded in time and size.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::GatewayError;

/// Idle connections kept per gateway.
const MAX_IDLE: usize = 32;

/// One gateway: where to connect and what to put before `/ipfs/`.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The URL as given, for errors.
    pub url: String,
    host: String,
    port: u16,
    authority: String,
    /// The URL's path without its trailing `/` (usually empty).
    base: String,
    idle: Mutex<Vec<SendRequest<Empty<Bytes>>>>,
}

/// A response read whole: status, content type, body.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Bytes,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, GatewayError> {
        let bad = |reason: &str| GatewayError::BadUrl { url: url.to_string(), reason: reason.to_string() };
        let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => return Err(bad(&format!("scheme {other}: only http:// is supported (put TLS in front)"))),
            None => return Err(bad("no scheme: write http://host:port")),
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user information in the URL is not supported"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = authority.port_u16().unwrap_or(80);
        if uri.query().is_some() {
            return Err(bad("a gateway URL takes no query"));
        }
        Ok(Endpoint {
            url: url.to_string(),
            host,
            port,
            authority: authority.as_str().to_string(),
            base: uri.path().trim_end_matches('/').to_string(),
            idle: Mutex::new(Vec::new()),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<SendRequest<Empty<Bytes>>>> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A connection: an idle one that is still open, or a new one.
    async fn connection(&self) -> Result<SendRequest<Empty<Bytes>>, GatewayError> {
        loop {
            let Some(mut conn) = self.idle().pop() else { break };
            if !conn.is_closed() && conn.ready().await.is_ok() {
                return Ok(conn);
            }
        }
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|source| GatewayError::Connect { gateway: self.url.clone(), source })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| GatewayError::Http { gateway: self.url.clone(), source })?;
        tokio::spawn(async move {
            // Ends when the connection closes; errors show up on the request.
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// `GET {base}{target}` with `Accept: accept`; the whole body, at most
    /// `limit` bytes, within `timeout` (connecting included).
    pub async fn get(&self, target: &str, accept: &str, limit: u64, timeout: Duration) -> Result<Answer, GatewayError> {
        match tokio::time::timeout(timeout, self.get_unbounded(target, accept, limit)).await {
            Ok(result) => result,
            Err(_) => Err(GatewayError::Timeout { gateway: self.url.clone(), after: timeout }),
        }
    }

    async fn get_unbounded(&self, target: &str, accept: &str, limit: u64) -> Result<Answer, GatewayError> {
        let http = |source| GatewayError::Http { gateway: self.url.clone(), source };
        let mut conn = self.connection().await?;
        let req = Request::get(format!("{}{target}", self.base))
            .header(HOST, &self.authority)
            .header(ACCEPT, accept)
            .header(USER_AGENT, concat!("merkle-clock-gateway/", env!("CARGO_PKG_VERSION")))
            .body(Empty::new())
            .map_err(|e| GatewayError::BadUrl { url: self.url.clone(), reason: e.to_string() })?;
        let resp = conn.send_request(req).await.map_err(http)?;
        let status = resp.status();
        let content_type = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        // Not-OK bodies are a line of text at most: read little of them.
        let limit = if status == StatusCode::OK { limit } else { limit.min(4096) };
        let body = match Limited::new(resp.into_body(), usize::try_from(limit).unwrap_or(usize::MAX)).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return Err(match e.downcast::<hyper::Error>() {
                    Ok(e) => http(*e),
                    Err(_) => GatewayError::TooLarge { gateway: self.url.clone(), limit },
                });
            }
        };
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        Ok(Answer { status, content_type, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let e = Endpoint::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.base.as_str()), ("127.0.0.1", 8080, ""));
        let e = Endpoint::parse("http://[::1]/gw/").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.base.as_str()), ("::1", 80, "/gw"));
        for bad in ["https://example.org", "127.0.0.1:8080", "http://u:p@host", "http://host/?x=1", "not a url"] {
            assert!(matches!(Endpoint::parse(bad), Err(GatewayError::BadUrl { .. })), "{bad}");
        }
    }
}
