//! Helia against our gateway: Helia 7's trustless-gateway client fetches a
//! 1,000-event stream block by block and as one `dag-scope=all` CAR, and
//! verifies every block with a BLAKE3 hasher added to Helia's hashers
//! (`tests/helia/gateway.mjs`, run with the Node 22 the package pins).
//!
//! Needs `npm ci` in `tests/helia` (the workspace's one Helia package). Without it the test prints why and
//! passes, except when the `CI` environment variable is set: there it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use merkle_clock::MemoryBlockstore;

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("tests").join("helia")
}

/// The pinned Node 22 (`npm ci` installs it from the `node` package).
fn node_bin() -> Option<PathBuf> {
    let bin = interop_dir().join("node_modules").join("node").join("bin").join("node");
    bin.exists().then_some(bin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helia_fetches_and_verifies_a_stream_from_our_gateway() {
    let Some(node) = node_bin() else {
        let why = format!("{} has no Node (run `cd tests/helia && npm ci`)", interop_dir().display());
        assert!(std::env::var_os("CI").is_none(), "the Helia interop test must run in CI, but {why}");
        eprintln!("SKIPPED helia_fetches_and_verifies_a_stream_from_our_gateway: {why}");
        return;
    };
    let store = Arc::new(MemoryBlockstore::new());
    let replica = common::stream(Arc::clone(&store), 1000).await;
    assert_eq!(replica.heads().len(), 1);
    let head = replica.heads()[0];
    let gw = common::serve(store).await;
    let (url, count) = (gw.url.clone(), replica.len());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(node)
            .args(["gateway.mjs", &url, &head.to_string(), &count.to_string()])
            .current_dir(interop_dir())
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "gateway.mjs failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(", 0 failed"), "{stdout}");
    assert!(stdout.contains(&format!("\"events\":{count}")), "{stdout}");
    // The figures, for whoever runs it with --nocapture.
    println!("{}", stdout.lines().next().unwrap_or_default());
    gw.stop().await;
}
