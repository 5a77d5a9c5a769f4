//! Helpers shared by the gateway's tests: streams in a store, a gateway on
//! a loopback port, and a plain HTTP client that shows the headers.

#![allow(dead_code, reason = "each test file uses a part")]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use merkle_clock::{Blockstore, Cid, Event, Replica, ReplicaConfig, StreamStore};
use merkle_clock_gateway::Gateway;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running gateway: its URL; dropping `stop` (or sending on it) stops it.
pub struct Running {
    pub addr: SocketAddr,
    pub url: String,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        self.task.await.unwrap().unwrap();
    }
}

/// Serves `store` on 127.0.0.1, any port.
pub async fn serve(store: Arc<dyn Blockstore>) -> Running {
    serve_gateway(Gateway::new(store)).await
}

pub async fn serve_gateway(gateway: Gateway) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(gateway.serve(listener, async {
        let _ = stopped.await;
    }));
    Running { addr, url: format!("http://{addr}"), stop: Some(stop), task }
}

/// A stream with `n` events after the genesis, and a concurrent branch
/// merged every 10 events (so the DAG has diamonds, not only a chain).
pub async fn stream<S: ?Sized + StreamStore>(store: Arc<S>, n: usize) -> Replica<S> {
    let genesis = Event::genesis("gateway tests").encode().unwrap();
    let mut main = Replica::create(store, &genesis, ReplicaConfig::default()).await.unwrap();
    let mut side = Replica::create(Arc::new(merkle_clock::MemoryBlockstore::new()), &genesis, ReplicaConfig::default())
        .await
        .unwrap();
    let mut i = 0;
    while i < n {
        if i % 10 == 9 && i + 1 < n {
            // A concurrent event on the side, merged into main.
            side.append(&format!("side {i}")).await.unwrap();
            let blocks = all_blocks(&side).await;
            main.ingest_many(blocks).await.unwrap();
            i += 1;
        }
        main.append(&format!("event {i}")).await.unwrap();
        let blocks = all_blocks(&main).await;
        side.ingest_many(blocks).await.unwrap();
        i += 1;
    }
    main
}

/// Every block of a replica, in its total order.
pub async fn all_blocks<S: ?Sized + StreamStore>(r: &Replica<S>) -> Vec<merkle_clock::Block> {
    let order: Vec<Cid> = r.order().collect();
    r.store().get_many(&order).await.unwrap().into_iter().map(Option::unwrap).collect()
}

/// The event and its ancestors, as the replica's index computes them.
pub fn ancestors<S: ?Sized + StreamStore>(r: &Replica<S>, cid: &Cid) -> Vec<Cid> {
    let dag = r.dag();
    dag.difference(&[*cid], &[]).unwrap().into_iter().map(|id| dag.cid(id)).collect()
}

/// A response read whole.
pub struct Http {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Http {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// One request on a fresh connection.
pub async fn http(
    addr: SocketAddr,
    method: Method,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<Http, hyper::Error> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(target).header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send.send_request(req.body(Empty::<Bytes>::new()).unwrap()).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Http { status: parts.status, headers: parts.headers, body })
}

pub async fn get(addr: SocketAddr, target: &str) -> Http {
    http(addr, Method::GET, target, &[]).await.unwrap()
}
