//! Figures for the gateway: a `dag-scope=all` CAR of a 100,000-event stream
//! served from a redb store, against the core's CAR export of the same
//! stream (what `mclock export-car` does), in the same run.
//!
//! ```sh
//! cargo run --release -p merkle-clock-gateway --example gateway_report            # 100,000 events
//! cargo run --release -p merkle-clock-gateway --example gateway_report -- --events 10000
//! ```
//!
//! Four figures, each the median of 3 runs:
//! - **export**: `mclock export-car`'s procedure (the total order, blocks read
//!   in pages of 1,024, written by `CarWriter`) into memory;
//! - **store.get once per block**: the same blocks read one store call at a
//!   time, as a depth-first walk must (it learns a block's parents by reading
//!   it): the floor under the gateway's walk;
//! - **gateway**: `GET /ipfs/{head}?format=car&dag-scope=all` over loopback
//!   HTTP, the body read and counted (the server walks the store depth first
//!   and streams);
//! - **fetch + verify**: the same request through `GatewayFetcher::car`,
//!   which reads the CAR, hashes every block and checks the DAG is complete.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use merkle_clock::car::CarWriter;
use merkle_clock::store::{Durability, RedbBlockstore};
use merkle_clock::{Blockstore, Cid, Event, Replica, ReplicaConfig};
use merkle_clock_gateway::{DagScope, Gateway, GatewayFetcher};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let mut events = 100_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--events" => events = args.next().ok_or("--events N")?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let dir = tempfile::tempdir()?;
    let store = Arc::new(RedbBlockstore::open_with(dir.path().join("report.redb"), Durability::Eventual)?);
    let genesis = Event::genesis("gateway report").encode()?;
    let mut replica = Replica::create(Arc::clone(&store), &genesis, ReplicaConfig::default()).await?;
    let t = Instant::now();
    let mut n = 0;
    while n < events {
        let batch = (events - n).min(1000);
        let payloads: Vec<String> = (n..n + batch).map(|i| format!("event {i}: a line of a shared log")).collect();
        replica.append_many(payloads).await?;
        n += batch;
    }
    store.flush()?;
    let head = replica.heads()[0];
    eprintln!("built {} events in {:.1?} (redb, a chain)", replica.len(), t.elapsed());

    // The core's export, as `mclock export-car` does it.
    let order: Vec<Cid> = replica.order().collect();
    let mut export = Vec::new();
    let mut export_bytes = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let mut car = CarWriter::new(Vec::with_capacity(16 << 20), &[head])?;
        for page in order.chunks(1024) {
            for block in store.get_many(page).await? {
                car.write(&block.ok_or("a block of the log is missing")?)?;
            }
        }
        export_bytes = car.finish()?.len() as u64;
        export.push(t.elapsed());
    }
    let export = median(export);
    // The walk's floor: a depth-first walk learns a block's parents only by
    // reading it, so it reads one block per store call.
    let mut one_by_one = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        for cid in &order {
            store.get(cid).await?;
        }
        one_by_one.push(t.elapsed());
    }
    let one_by_one = median(one_by_one);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served: Arc<dyn Blockstore> = store.clone();
    let server = tokio::spawn(Gateway::new(served).serve(listener, async {
        let _ = stopped.await;
    }));

    // The gateway: the body over loopback HTTP, counted.
    let mut gateway = Vec::new();
    let mut gateway_bytes = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = Request::get(format!("/ipfs/{head}?format=car&dag-scope=all"))
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let mut body = send.send_request(req).await?.into_body();
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame?.data_ref() {
                bytes += data.len() as u64;
            }
        }
        gateway_bytes = bytes;
        gateway.push(t.elapsed());
    }
    let gateway = median(gateway);

    // The fetcher: the same request, every block verified, the DAG checked.
    let fetcher = GatewayFetcher::new([format!("http://{addr}")])?;
    let mut fetch = Vec::new();
    let mut fetched = 0;
    for _ in 0..3 {
        let t = Instant::now();
        fetched = fetcher.car(&head, DagScope::All).await?.len();
        fetch.push(t.elapsed());
    }
    let fetch = median(fetch);
    let _ = stop.send(());
    server.await??;

    assert_eq!(gateway_bytes, export_bytes, "the same blocks, the same header: the same size");
    assert_eq!(fetched, replica.len());
    println!(
        "gateway report: a {}-event stream (chain) in redb, {export_bytes} bytes of CAR; median of 3",
        replica.len()
    );
    println!(
        "  export (core CarWriter, `mclock export-car`'s walk)  {export:>9.1?}  {:>7.1} MB/s",
        mbps(export_bytes, export)
    );
    println!(
        "  store.get once per block (the walk's floor, no HTTP) {one_by_one:>9.1?}  {:>7.1} MB/s  {:.2}x the export's time",
        mbps(export_bytes, one_by_one),
        one_by_one.as_secs_f64() / export.as_secs_f64()
    );
    println!(
        "  gateway dag-scope=all over loopback HTTP            {gateway:>9.1?}  {:>7.1} MB/s  {:.2}x the export's time",
        mbps(gateway_bytes, gateway),
        gateway.as_secs_f64() / export.as_secs_f64()
    );
    println!(
        "  GatewayFetcher::car (+ hash every block, check DAG) {fetch:>9.1?}  {:>7.1} MB/s  {:.2}x the export's time",
        mbps(gateway_bytes, fetch),
        fetch.as_secs_f64() / export.as_secs_f64()
    );
    Ok(())
}
