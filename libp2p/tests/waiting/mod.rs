//! Waiting for nodes without sleeping blindly: poll a condition, with a bound.

#![allow(dead_code)] // each test file uses its own share of these

use std::future::Future;
use std::time::Duration;

use merkle_clock::{Cid, StreamStore};
use merkle_clock_libp2p::NodeHandle;
use tokio::time::{Instant, sleep, timeout};

type Handle = NodeHandle<dyn StreamStore>;

/// How long [`wait_for`] waits for a condition.
pub const CONVERGE_LIMIT: Duration = Duration::from_secs(30);

/// Polls `check` every 50 ms until it holds, at most [`CONVERGE_LIMIT`].
pub async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    let done = timeout(CONVERGE_LIMIT, async {
        while !check().await {
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "timed out after {:?} waiting for {what}", start.elapsed());
}

/// Waits until every node holds `events` events and the same heads and order.
pub async fn converge(nodes: &[&Handle], stream: Cid, events: usize) {
    wait_for(&format!("{} nodes to hold {events} events", nodes.len()), || async {
        let mut heads = None;
        for n in nodes {
            if n.len(stream).await.unwrap() != events {
                return false;
            }
            let h = n.heads(stream).await.unwrap();
            if heads.get_or_insert_with(|| h.clone()) != &h {
                return false;
            }
        }
        true
    })
    .await;
    let first: Vec<Cid> = nodes[0].read(stream, |r| r.order().collect()).await.unwrap();
    for n in &nodes[1..] {
        let order: Vec<Cid> = n.read(stream, |r| r.order().collect()).await.unwrap();
        assert_eq!(order, first, "same blocks but a different order");
    }
}
