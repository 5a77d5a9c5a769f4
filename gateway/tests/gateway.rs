//! The server against the trustless gateway spec, over real HTTP, and the
//! fetcher filling replicas from it.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{ancestors, get, http, serve, stream};
use hyper::{Method, StatusCode};
use merkle_clock::car::{CarLimits, CarReader};
use merkle_clock::store::RedbBlockstore;
use merkle_clock::sync::transport::Fetcher;
use merkle_clock::{Blockstore, Cid, MemoryBlockstore, Replica, ReplicaConfig};
use merkle_clock_gateway::{DagScope, GatewayError, GatewayFetcher};

#[tokio::test]
async fn a_raw_block_comes_with_the_headers_the_spec_requires() {
    let store = Arc::new(MemoryBlockstore::new());
    let replica = stream(Arc::clone(&store), 5).await;
    let head = replica.heads()[0];
    let gw = serve(store.clone()).await;
    let r = get(gw.addr, &format!("/ipfs/{head}?format=raw")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, *store.get(&head).await.unwrap().unwrap().bytes());
    assert_eq!(r.header("content-type"), "application/vnd.ipld.raw");
    assert_eq!(r.header("content-length"), r.body.len().to_string());
    assert_eq!(r.header("etag"), format!("\"{head}.raw\""));
    assert_eq!(r.header("content-disposition"), format!("attachment; filename=\"{head}.bin\""));
    assert_eq!(r.header("x-content-type-options"), "nosniff");
    assert_eq!(r.header("cache-control"), "public, max-age=29030400, immutable");
    assert_eq!(r.header("x-ipfs-path"), format!("/ipfs/{head}"));
    assert_eq!(r.header("content-location"), "", "the format was explicit");
    // The same by Accept alone, which also names the explicit URL.
    let r =
        http(gw.addr, Method::GET, &format!("/ipfs/{head}"), &[("accept", "application/vnd.ipld.raw")]).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-location"), format!("/ipfs/{head}?format=raw"));
    // A matching Etag is 304; HEAD has the headers and no body.
    let etag = format!("\"{head}.raw\"");
    let r = http(gw.addr, Method::GET, &format!("/ipfs/{head}?format=raw"), &[("if-none-match", &etag)]).await.unwrap();
    assert_eq!((r.status, r.body.len()), (StatusCode::NOT_MODIFIED, 0));
    let r = http(gw.addr, Method::HEAD, &format!("/ipfs/{head}?format=raw"), &[]).await.unwrap();
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, 0));
    assert_eq!(r.header("etag"), etag);
    gw.stop().await;
}

#[tokio::test]
async fn a_car_of_dag_scope_all_is_the_event_and_every_ancestor_depth_first_once_each() {
    let store = Arc::new(MemoryBlockstore::new());
    let replica = stream(Arc::clone(&store), 60).await;
    let gw = serve(store.clone()).await;
    // An event in the middle: its snapshot excludes what came after it.
    let middle: Cid = replica.order().nth(31).unwrap();
    let r = get(gw.addr, &format!("/ipfs/{middle}?format=car&dag-scope=all")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "application/vnd.ipld.car; version=1; order=dfs; dups=n");
    assert_eq!(r.header("content-disposition"), format!("attachment; filename=\"{middle}.car\""));
    assert_eq!(r.header("etag"), format!("\"{middle}.car.all.dfs.n\""));
    assert_eq!(r.header("x-content-type-options"), "nosniff");
    let mut car = CarReader::new(r.body.as_ref(), CarLimits::default()).unwrap();
    assert_eq!(car.roots(), &[middle]);
    let mut got = Vec::new();
    while let Some(b) = car.next_block().unwrap() {
        got.push(*b.cid());
    }
    assert_eq!(got[0], middle, "the root first");
    let unique: HashSet<Cid> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "dups=n");
    let expected: HashSet<Cid> = ancestors(&replica, &middle).into_iter().collect();
    assert_eq!(unique, expected);
    assert!(expected.len() < replica.len());
    // The same request gives the same bytes (the Etag and the cache promise it).
    assert_eq!(get(gw.addr, &format!("/ipfs/{middle}?format=car")).await.body, r.body);
    // dag-scope=block (and entity) is the block alone.
    for scope in ["block", "entity"] {
        let r = get(gw.addr, &format!("/ipfs/{middle}?format=car&dag-scope={scope}")).await;
        let blocks: Vec<_> =
            CarReader::new(r.body.as_ref(), CarLimits::default()).unwrap().map(Result::unwrap).collect();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].cid(), &middle);
        assert_eq!(r.header("etag"), format!("\"{middle}.car.block.dfs.n\""));
    }
    // HEAD walks nothing and sends nothing.
    let r = http(gw.addr, Method::HEAD, &format!("/ipfs/{middle}?format=car"), &[]).await.unwrap();
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, 0));
    gw.stop().await;
}

#[tokio::test]
async fn refusals_have_the_spec_status_codes() {
    let store = Arc::new(MemoryBlockstore::new());
    let replica = stream(Arc::clone(&store), 2).await;
    let head = replica.heads()[0];
    let gw = serve(store).await;
    let unknown = merkle_clock::cid_of(b"not stored");
    let status = |target: String, headers: Vec<(&'static str, &'static str)>| {
        let addr = gw.addr;
        async move { http(addr, Method::GET, &target, &headers).await.unwrap().status }
    };
    assert_eq!(status(format!("/ipfs/{unknown}?format=raw"), vec![]).await, StatusCode::NOT_FOUND);
    assert_eq!(status(format!("/ipfs/{unknown}?format=car"), vec![]).await, StatusCode::NOT_FOUND);
    assert_eq!(
        status(format!("/ipfs/{unknown}?format=raw"), vec![("cache-control", "only-if-cached")]).await,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(status("/ipfs/bafy-not-a-cid?format=raw".into(), vec![]).await, StatusCode::BAD_REQUEST);
    assert_eq!(status(format!("/ipfs/{head}?format=car&dag-scope=most"), vec![]).await, StatusCode::BAD_REQUEST);
    assert_eq!(status(format!("/ipfs/{head}"), vec![]).await, StatusCode::BAD_REQUEST);
    assert_eq!(status(format!("/ipfs/{head}"), vec![("accept", "text/html")]).await, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(status(format!("/ipfs/{head}/payload?format=car"), vec![]).await, StatusCode::NOT_IMPLEMENTED);
    let r = http(gw.addr, Method::POST, &format!("/ipfs/{head}?format=raw"), &[]).await.unwrap();
    assert_eq!((r.status, r.header("allow")), (StatusCode::METHOD_NOT_ALLOWED, "GET, HEAD"));
    assert_eq!(r.header("x-content-type-options"), "nosniff");
    gw.stop().await;
}

#[tokio::test]
async fn the_identity_probe_answers() {
    let gw = serve(Arc::new(MemoryBlockstore::new())).await;
    let r = get(gw.addr, "/ipfs/bafkqaaa?format=raw").await;
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, 0));
    let r = get(gw.addr, "/ipfs/bafkqaaa?format=car").await;
    assert_eq!(r.status, StatusCode::OK);
    let car = CarReader::new(r.body.as_ref(), CarLimits::default()).unwrap();
    assert_eq!(car.roots(), &["bafkqaaa".parse::<Cid>().unwrap()]);
    assert_eq!(car.count(), 0, "identity blocks are never sent");
    let r = http(gw.addr, Method::HEAD, "/ipfs/bafkqaaa?format=raw", &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    gw.stop().await;
}

/// Asks `gw` for the CAR of `head` (`dag-scope=all`): a clean 200 that the
/// fetcher refuses as incomplete, naming one block it lacks.
async fn the_car_stops_at_the_horizon(gw: &common::Running, head: &Cid) -> (usize, Cid) {
    let r = http(gw.addr, Method::GET, &format!("/ipfs/{head}?format=car&dag-scope=all"), &[]).await;
    let r = r.expect("the body ends cleanly, not in an error");
    assert_eq!(r.status, StatusCode::OK);
    let car = CarReader::new(r.body.as_ref(), CarLimits::default()).unwrap();
    assert!(car.map(Result::unwrap).any(|b| b.cid() == head), "the CAR holds what the store has");
    let fetcher = GatewayFetcher::new([gw.url.as_str()]).unwrap();
    match fetcher.car(head, DagScope::All).await {
        Err(GatewayError::Incomplete { missing, first, .. }) => (missing, first),
        other => panic!("expected the fetcher to name what the CAR lacks, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_ancestor_ends_the_car_at_the_horizon_and_the_fetcher_says_so() {
    // A store that holds an event but not its parents.
    let full = Arc::new(MemoryBlockstore::new());
    let replica = stream(Arc::clone(&full), 3).await;
    let head = replica.heads()[0];
    let partial = Arc::new(MemoryBlockstore::new());
    partial.put(full.get(&head).await.unwrap().unwrap()).await.unwrap();
    let gw = serve(partial).await;
    let (missing, first) = the_car_stops_at_the_horizon(&gw, &head).await;
    assert_eq!(missing, 1);
    assert!(ancestors(&replica, &head).contains(&first));
    assert!(GatewayFetcher::new([gw.url.as_str()]).unwrap().block(&head).await.is_ok());
    gw.stop().await;
}

#[tokio::test]
async fn a_pruned_replica_answers_404_for_a_pruned_block_and_a_car_that_stops_at_its_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbBlockstore::open(dir.path().join("a.redb")).unwrap());
    let mut replica = stream(Arc::clone(&store), 30).await;
    let order: Vec<Cid> = replica.order().collect();
    replica.prune(merkle_clock::replica::PrunePolicy::KeepNewest(10)).await.unwrap();
    let pruned: Vec<Cid> = order.iter().copied().filter(|c| replica.is_pruned(c)).collect();
    assert!(!pruned.is_empty());
    let head = replica.heads()[0];
    let gw = serve(store).await;
    for cid in &pruned {
        let r = get(gw.addr, &format!("/ipfs/{cid}?format=raw")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "a pruned block is not served");
    }
    let fetcher = GatewayFetcher::new([gw.url.as_str()]).unwrap();
    assert!(fetcher.block(&pruned[0]).await.unwrap_err().is_not_found());
    let (missing, first) = the_car_stops_at_the_horizon(&gw, &head).await;
    assert!(pruned.contains(&first), "the first block the CAR lacks is a pruned one");
    assert!(missing >= 1 && missing <= pruned.len());
    gw.stop().await;
}

#[tokio::test]
async fn the_fetcher_fills_a_redb_replica_from_our_gateway_block_by_block() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbBlockstore::open(dir.path().join("a.redb")).unwrap());
    let source = stream(Arc::clone(&store), 120).await;
    let gw = serve(store).await;
    let genesis = source.store().get(source.stream_id()).await.unwrap().unwrap();
    let mut copy =
        Replica::create(Arc::new(MemoryBlockstore::new()), &genesis, ReplicaConfig::default()).await.unwrap();
    let fetcher: Box<dyn Fetcher> = Box::new(GatewayFetcher::new([gw.url.as_str()]).unwrap());
    // Start from the heads; then whatever the replica says it lacks.
    let mut want = source.heads();
    let mut rounds = 0;
    while !want.is_empty() {
        rounds += 1;
        assert!(rounds <= 200, "the fill ends");
        let blocks: Vec<_> = fetcher.fetch(&want).await.unwrap().into_iter().map(Option::unwrap).collect();
        copy.ingest_many(blocks).await.unwrap();
        want = copy.missing();
    }
    assert_eq!(copy.heads(), source.heads());
    assert_eq!(copy.len(), source.len());
    // Unknown CIDs are None, not an error.
    let unknown = merkle_clock::cid_of(b"nobody has this");
    assert_eq!(fetcher.fetch(&[unknown]).await.unwrap(), vec![None]);
    gw.stop().await;
}

#[tokio::test]
async fn a_snapshot_car_fills_a_replica_in_one_request() {
    let store = Arc::new(MemoryBlockstore::new());
    let source = stream(Arc::clone(&store), 200).await;
    let gw = serve(store).await;
    let fetcher = GatewayFetcher::new([gw.url.as_str()]).unwrap();
    let head = source.heads()[0];
    let blocks = fetcher.car(&head, DagScope::All).await.unwrap();
    assert_eq!(blocks.len(), source.len());
    assert_eq!(blocks[0].cid(), source.stream_id(), "parents first: the genesis leads");
    let mut copy =
        Replica::create(Arc::new(MemoryBlockstore::new()), &blocks[0], ReplicaConfig::default()).await.unwrap();
    let report = copy.ingest_many(blocks[1..].to_vec()).await.unwrap();
    assert!(report.outcomes.iter().all(|o| matches!(o, merkle_clock::Ingest::Accepted)));
    assert_eq!(copy.heads(), source.heads());
    assert_eq!(fetcher.stats().requests, 1);
    gw.stop().await;
}

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>(_: &T) {}

#[test]
fn public_types_are_send_and_sync_and_their_futures_send() {
    send_sync::<merkle_clock_gateway::Gateway>();
    send_sync::<GatewayFetcher>();
    send_sync::<GatewayError>();
    send_sync::<merkle_clock_gateway::GatewayBody>();
    let fetcher = GatewayFetcher::new(["http://127.0.0.1:1"]).unwrap();
    let cid = merkle_clock::cid_of(b"x");
    send(&fetcher.block(&cid));
    send(&fetcher.car(&cid, DagScope::All));
    let gateway = merkle_clock_gateway::Gateway::new(Arc::new(MemoryBlockstore::new()));
    let req = hyper::Request::get("/ipfs/bafkqaaa?format=raw").body(()).unwrap();
    send(&gateway.handle(&req));
}
