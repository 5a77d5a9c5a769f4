//! Gateways that lie, truncate or stall, and clients that stall: typed
//! errors, nothing unverified handed out, and the server keeps serving.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{get, serve_gateway, stream};
use hyper::StatusCode;
use merkle_clock::car::write_car;
use merkle_clock::sync::transport::Fetcher;
use merkle_clock::{Block, BlockError, CarError, Cid, MemoryBlockstore, TransportError};
use merkle_clock_gateway::{DagScope, FetcherConfig, Gateway, GatewayConfig, GatewayError, GatewayFetcher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What a hostile gateway does with a request.
#[derive(Clone)]
enum Answer {
    /// Sends this status, content type and body (with a Content-Length).
    Send(u16, &'static str, Vec<u8>),
    /// Reads the request and never answers.
    Stall,
}

/// A gateway that answers every request the same way. Returns its URL.
async fn hostile(answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                match answer {
                    Answer::Send(status, ctype, body) => {
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = sock.write_all(head.as_bytes()).await;
                        let _ = sock.write_all(&body).await;
                        let _ = sock.shutdown().await;
                    }
                    Answer::Stall => {
                        // Hold the connection open until the client gives up.
                        let _ = sock.read(&mut buf).await;
                    }
                }
            });
        }
    });
    url
}

async fn events(n: usize) -> (Arc<MemoryBlockstore>, Vec<Block>, Cid) {
    let store = Arc::new(MemoryBlockstore::new());
    let r = stream(Arc::clone(&store), n).await;
    let blocks = common::all_blocks(&r).await;
    let head = r.heads()[0];
    (store, blocks, head)
}

#[tokio::test]
async fn a_wrong_block_is_a_typed_error_and_never_handed_out() {
    let (store, blocks, head) = events(3).await;
    // The gateway answers every CID with the genesis' bytes.
    let liar = hostile(Answer::Send(200, "application/vnd.ipld.raw", blocks[0].bytes().to_vec())).await;
    let fetcher = GatewayFetcher::new([liar.as_str()]).unwrap();
    match fetcher.block(&head).await {
        Err(GatewayError::Block { source: BlockError::HashMismatch { cid, .. }, .. }) => assert_eq!(cid, head),
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    // Through the Fetcher trait: nobody had a good block.
    assert_eq!(fetcher.fetch(&[head]).await.unwrap(), vec![None]);
    assert_eq!(fetcher.stats().rejected, 2);
    assert_eq!(fetcher.stats().blocks_verified, 0);
    // With an honest gateway after the liar, the right block comes from it.
    let honest = serve_gateway(Gateway::new(store)).await;
    let both = GatewayFetcher::new([liar.as_str(), honest.url.as_str()]).unwrap();
    let got = both.fetch(&[head]).await.unwrap();
    assert_eq!(got[0].as_ref().map(Block::cid), Some(&head));
    assert_eq!((both.stats().rejected, both.stats().blocks_verified), (1, 1));
    honest.stop().await;
}

#[tokio::test]
async fn a_truncated_car_is_a_typed_error() {
    let (_, blocks, head) = events(5).await;
    let car = write_car(Vec::new(), &[head], blocks.iter().rev()).unwrap();
    let cut = car[..car.len() - 7].to_vec();
    let gw = hostile(Answer::Send(200, "application/vnd.ipld.car; version=1", cut)).await;
    let fetcher = GatewayFetcher::new([gw.as_str()]).unwrap();
    match fetcher.car(&head, DagScope::All).await {
        Err(GatewayError::Car { source: CarError::TruncatedSection { .. }, .. }) => {}
        other => panic!("expected a truncated section, got {other:?}"),
    }
    assert_eq!(fetcher.stats().blocks_verified, 0);
}

#[tokio::test]
async fn a_car_with_a_forged_block_or_a_missing_ancestor_is_refused_whole() {
    let (_, blocks, head) = events(5).await;
    // Every section well formed, but one block's bytes are another's.
    let mut car = write_car(Vec::new(), &[head], blocks.iter().rev()).unwrap();
    let victim = blocks[2].bytes().to_vec();
    let at = car.windows(victim.len()).position(|w| w == victim.as_slice()).unwrap();
    car[at + victim.len() - 1] ^= 1;
    let gw = hostile(Answer::Send(200, "application/vnd.ipld.car; version=1", car)).await;
    let fetcher = GatewayFetcher::new([gw.as_str()]).unwrap();
    match fetcher.car(&head, DagScope::All).await {
        Err(GatewayError::Car { source: CarError::Block(BlockError::HashMismatch { .. }), .. }) => {}
        other => panic!("expected a hash mismatch inside the CAR, got {other:?}"),
    }
    // Every block verifies, but the genesis is left out: the snapshot is incomplete.
    let car = write_car(Vec::new(), &[head], blocks[1..].iter().rev()).unwrap();
    let gw = hostile(Answer::Send(200, "application/vnd.ipld.car; version=1", car)).await;
    let fetcher = GatewayFetcher::new([gw.as_str()]).unwrap();
    match fetcher.car(&head, DagScope::All).await {
        Err(GatewayError::Incomplete { root, first, .. }) => assert_eq!((root, first), (head, *blocks[0].cid())),
        other => panic!("expected an incomplete CAR, got {other:?}"),
    }
    // Extra blocks outside the DAG asked for are dropped, the rest kept.
    let strangers = [merkle_clock::Event::genesis("another stream").encode().unwrap()];
    let car = write_car(Vec::new(), &[head], blocks.iter().rev().chain(&strangers)).unwrap();
    let gw = hostile(Answer::Send(200, "application/vnd.ipld.car; version=1", car)).await;
    let fetcher = GatewayFetcher::new([gw.as_str()]).unwrap();
    let got = fetcher.car(&head, DagScope::All).await.unwrap();
    assert_eq!(got, blocks, "parents first, the stranger dropped");
    assert_eq!(fetcher.stats().unexpected_blocks, 1);
}

#[tokio::test]
async fn a_gateway_that_never_answers_times_out() {
    let (_, _, head) = events(1).await;
    let slow = hostile(Answer::Stall).await;
    let mut config = FetcherConfig::default();
    config.timeout = Duration::from_millis(200);
    let fetcher = GatewayFetcher::with_config([slow.as_str()], config).unwrap();
    match fetcher.block(&head).await {
        Err(GatewayError::Timeout { after, .. }) => assert_eq!(after, Duration::from_millis(200)),
        other => panic!("expected a time-out, got {other:?}"),
    }
    // Through the trait, a network where no gateway answers is an error, not "nobody has it".
    match fetcher.fetch(&[head]).await {
        Err(TransportError::Backend(e)) => assert!(e.downcast_ref::<GatewayError>().is_some()),
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_media_types_and_oversize_bodies_are_refused() {
    let (_, _, head) = events(1).await;
    let html = hostile(Answer::Send(200, "text/html", b"<html>surprise</html>".to_vec())).await;
    let fetcher = GatewayFetcher::new([html.as_str()]).unwrap();
    assert!(matches!(fetcher.block(&head).await, Err(GatewayError::WrongContentType { .. })));
    let big = hostile(Answer::Send(200, "application/vnd.ipld.raw", vec![0; 4096])).await;
    let mut config = FetcherConfig::default();
    config.max_block_bytes = 1024;
    let fetcher = GatewayFetcher::with_config([big.as_str()], config).unwrap();
    assert!(matches!(fetcher.block(&head).await, Err(GatewayError::TooLarge { limit: 1024, .. })));
    let teapot = hostile(Answer::Send(418, "text/plain", b"no".to_vec())).await;
    let fetcher = GatewayFetcher::new([teapot.as_str()]).unwrap();
    assert!(matches!(fetcher.block(&head).await, Err(GatewayError::Status { status: 418, .. })));
}

#[tokio::test]
async fn a_client_that_stalls_mid_request_does_not_stop_the_server_serving_others() {
    let (store, _, head) = events(2).await;
    let mut config = GatewayConfig::default();
    config.header_read_timeout = Duration::from_millis(300);
    let gw = serve_gateway(Gateway::with_config(store, config)).await;
    // Half a request, then silence.
    let mut stalled = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stalled.write_all(b"GET /ipfs/").await.unwrap();
    let r = get(gw.addr, &format!("/ipfs/{head}?format=raw")).await;
    assert_eq!(r.status, StatusCode::OK);
    // The stalled connection is closed by the server once its time is up.
    let mut buf = [0u8; 256];
    // (Whether it says 408 first or just closes, the read ends.)
    let _ = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut buf)).await.expect("closed in time");
    gw.stop().await;
}
